//! `bmcctl log …`: the event and audit logs (`org.bmcd.Log1`), read page
//! by page with cursors (see `bmcd_api::log_query`).
//!
//! `list` and `follow` write their lines themselves as pages arrive (an
//! `Output` with `printed`): on a terminal through a pager that is fed one
//! screenful at a time, only when it has read what it had (so one screen
//! costs at most two `GetEntries` calls and quitting the pager stops the
//! reading); otherwise straight to stdout, page by page.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::mpsc;

use bmcd_api::zbus;
use bmcd_api::{entry_keys as k, log_query as q, LogEntry, LogSeverity, Options};
use zbus::blocking::Connection;
use zbus::zvariant::{OwnedValue, Value as ZValue};

use super::task::value_of;
use super::Ctx;
use crate::cli::{LogCmd, LogFilters};
use crate::conn::Client;
use crate::error::{names, CliError, Exit};
use crate::output::{self, FieldSpec, Output, Record, Value};
use crate::pager::{self, Paged, Pager};
use crate::time;
use crate::wait::{self, Event};

const ID: FieldSpec = FieldSpec::new(k::ID, "Id");
const TIME: FieldSpec = FieldSpec::new(k::TIME, "Time");
const SEVERITY: FieldSpec = FieldSpec::new(k::SEVERITY, "Severity");
const SOURCE: FieldSpec = FieldSpec::new(k::SOURCE, "Source");
const MESSAGE_ID: FieldSpec = FieldSpec::new(k::MESSAGE_ID, "MessageId");
const MESSAGE: FieldSpec = FieldSpec::new(k::MESSAGE, "Message");
const DATA: FieldSpec = FieldSpec::new(k::DATA, "Data");
const LOG: FieldSpec = FieldSpec::new("Log", "Log");

pub fn run(cmd: LogCmd, ctx: &Ctx) -> Result<Output, CliError> {
    match cmd {
        LogCmd::List {
            name,
            filters,
            reverse,
            limit,
            cursor,
        } => {
            let opts = filter_options(&filters, time::now_ms().saturating_mul(1000))?;
            list(&name.log, opts, reverse, limit, cursor, ctx)
        }
        LogCmd::Show { id, name } => show(&name.log, id, ctx),
        LogCmd::Follow { name, lines } => follow(&name.log, lines, ctx),
        LogCmd::Clear { name } => clear(&name.log, ctx),
    }
}

fn path_of(log: &str) -> Result<&'static str, CliError> {
    bmcd_api::log_path(log)
        .ok_or_else(|| CliError::usage(format!("'{log}' is not a log: event or audit")))
}

/// The `--severity` word as a `LogSeverity` name: syslog's short names
/// (`err`, `crit`, `info`, …), the full words in any case, or a unique
/// prefix of them.
fn severity_word(w: &str) -> Result<String, CliError> {
    let short = match w.to_ascii_lowercase().as_str() {
        "emerg" | "panic" => "Emergency",
        "crit" => "Critical",
        "err" | "error" => "Error",
        "warn" => "Warning",
        "info" => "Informational",
        _ => "",
    };
    if !short.is_empty() {
        return Ok(short.to_owned());
    }
    let names: Vec<&str> = LogSeverity::ALL.iter().map(|s| s.as_str()).collect();
    let word = crate::cli::enum_word(w, &names)?;
    if names.contains(&word.as_str()) {
        Ok(word)
    } else {
        Err(CliError::usage(format!(
            "'{w}' is not a severity: emerg, alert, crit, err, warning, notice, info, debug"
        )))
    }
}

fn filter_options(f: &LogFilters, now_us: u64) -> Result<Options<'static>, CliError> {
    let mut o = Options::new();
    let when = |s: &str, opt: &str| {
        time::parse_time(s, now_us).ok_or_else(|| {
            CliError::usage(format!(
                "--{opt} '{s}': not a time (2026-12-03T10:00:00Z, 2026-12-03 10:00, \
                 2026-12-03, now, -30m, -2h, -1d)"
            ))
        })
    };
    if let Some(s) = &f.since {
        o.insert(q::SINCE, ZValue::U64(when(s, "since")?));
    }
    if let Some(s) = &f.until {
        o.insert(q::UNTIL, ZValue::U64(when(s, "until")?));
    }
    if let Some(w) = &f.severity {
        o.insert(q::MIN_SEVERITY, ZValue::from(severity_word(w)?));
    }
    if let Some(s) = &f.source {
        o.insert(q::SOURCE, ZValue::from(s.clone()));
    }
    if let Some(m) = &f.message_id {
        o.insert(q::MESSAGE_ID, ZValue::from(m.clone()));
    }
    Ok(o)
}

/// One `GetEntries` answer.
struct Page {
    entries: Vec<LogEntry>,
    next: u64,
    /// Nothing further in this direction now.
    end: bool,
    last_id: u64,
}

fn get_entries(
    client: &Client,
    path: &str,
    cursor: u64,
    count: u32,
    opts: &Options<'_>,
) -> Result<Page, CliError> {
    type Answer = (Vec<LogEntry>, u64, HashMap<String, OwnedValue>);
    let (entries, next, info) = client.call(|c: &Connection| {
        let m = c.call_method(
            Some(bmcd_api::BUS_NAME),
            path,
            Some(bmcd_api::LOG_IFACE),
            "GetEntries",
            &(cursor, count, opts),
        )?;
        Ok(m.body().deserialize::<Answer>()?)
    })?;
    let flag = |key: &str| info.get(key).and_then(|v| bool::try_from(v).ok());
    let end = flag(q::info::END).unwrap_or(entries.len() < count as usize);
    let last_id = info
        .get(q::info::LAST_ID)
        .and_then(|v| u64::try_from(v).ok())
        .unwrap_or(0);
    Ok(Page {
        entries,
        next,
        end,
        last_id,
    })
}

fn num(e: &LogEntry, key: &str) -> u64 {
    e.get(key).and_then(|v| u64::try_from(v).ok()).unwrap_or(0)
}

fn text<'a>(e: &'a LogEntry, key: &str) -> &'a str {
    e.get(key)
        .and_then(|v| <&str>::try_from(v).ok())
        .unwrap_or("")
}

/// `Data` as sorted pairs.
fn data(e: &LogEntry) -> Vec<(String, Value)> {
    match e.get(k::DATA).map(|v| value_of(v)) {
        Some(Value::Map(m)) => m,
        _ => Vec::new(),
    }
}

/// Control characters (a newline in a message) would break the one line
/// per entry.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// syslog's short names, at most 7 columns.
fn short_severity(s: &str) -> &str {
    match s {
        "Emergency" => "emerg",
        "Alert" => "alert",
        "Critical" => "crit",
        "Error" => "err",
        "Warning" => "warning",
        "Notice" => "notice",
        "Informational" => "info",
        "Debug" => "debug",
        other => other,
    }
}

/// One console line: `    17 2026-12-03 14:05:09 notice  daemon
/// Daemon.Started bmcd started platform=sim version=1.0` (the Id first, for
/// `log show` and `--cursor`).
fn line(e: &LogEntry) -> String {
    let id = num(e, k::ID).to_string();
    let mut s = " ".repeat(6usize.saturating_sub(id.len()));
    s.push_str(&id);
    s.push(' ');
    s.push_str(&time::local_compact(num(e, k::TIME)));
    s.push(' ');
    push_padded(&mut s, short_severity(text(e, k::SEVERITY)), 7);
    push_padded(&mut s, text(e, k::SOURCE), 8);
    push_padded(&mut s, text(e, k::MESSAGE_ID), 0);
    s.push_str(&clean(text(e, k::MESSAGE)));
    for (key, v) in data(e) {
        s.push(' ');
        s.push_str(&clean(&key));
        s.push('=');
        s.push_str(&clean(&v.console()));
    }
    s.push('\n');
    s
}

fn push_padded(s: &mut String, word: &str, width: usize) {
    s.push_str(if word.is_empty() { "-" } else { word });
    let n = word.chars().count().max(1);
    s.push_str(&" ".repeat(width.saturating_sub(n) + 1));
}

/// An entry as JSON with its D-Bus keys.
fn entry_json(e: &LogEntry) -> serde_json::Value {
    serde_json::Value::Object(
        e.iter()
            .map(|(key, v)| (key.clone(), value_of(v).json()))
            .collect(),
    )
}

/// Where `list` writes.
enum Sink {
    Pager(Pager),
    Stdout,
    /// `--json`: entries are collected into one document.
    Json(Vec<serde_json::Value>),
}

impl Sink {
    /// Write one page; `false` when the reader is gone.
    fn page(&mut self, entries: &[LogEntry]) -> bool {
        if let Sink::Json(all) = self {
            all.extend(entries.iter().map(entry_json));
            return true;
        }
        let text: String = entries.iter().map(line).collect();
        match self {
            Sink::Pager(p) => p.write(&text) && p.wants_more(),
            _ => output::write_stdout(&text),
        }
    }
}

fn list(
    log: &str,
    opts: Options<'_>,
    reverse: bool,
    limit: Option<u64>,
    cursor: Option<u64>,
    ctx: &Ctx,
) -> Result<Output, CliError> {
    let path = path_of(log)?;
    let client = ctx.connect()?;
    let mut opts = opts;
    let (mut cursor, direction) = if reverse {
        (cursor.unwrap_or(q::CURSOR_OLDEST), q::NEWER)
    } else {
        (cursor.unwrap_or(q::CURSOR_NEWEST), q::OLDER)
    };
    opts.insert(q::DIRECTION, ZValue::from(direction));
    let paged = !ctx.json && !ctx.no_pager && std::io::stdout().is_terminal();
    let mut sink = if ctx.json {
        Sink::Json(Vec::new())
    } else if paged {
        match pager::command_from_env().and_then(|argv| Pager::spawn(&argv)) {
            Some(p) => Sink::Pager(p),
            None => Sink::Stdout,
        }
    } else {
        Sink::Stdout
    };
    // A screenful per call on a terminal; else big pages.
    let page_size = if paged {
        u32::from(pager::screen_rows()).clamp(1, q::MAX_PAGE)
    } else {
        q::MAX_PAGE
    };
    let mut left = limit.unwrap_or(u64::MAX);
    let mut end;
    loop {
        let count = u32::try_from(left.min(u64::from(page_size))).unwrap_or(page_size);
        let page = get_entries(&client, path, cursor, count, &opts)?;
        let n = page.entries.len();
        left = left.saturating_sub(n as u64);
        let progressed = page.next != cursor;
        cursor = page.next;
        end = page.end || (!reverse && cursor == 0) || !progressed;
        // Stop at the limit, at the end, or when the reader is gone.
        if !sink.page(&page.entries) || left == 0 || end {
            break;
        }
    }
    match sink {
        Sink::Json(entries) => {
            let mut doc = serde_json::Map::new();
            doc.insert("log".into(), log.into());
            doc.insert("entries".into(), serde_json::Value::Array(entries));
            doc.insert("next_cursor".into(), cursor.into());
            doc.insert("end".into(), end.into());
            let mut s = serde_json::to_string_pretty(&doc).unwrap_or_else(|_| "{}".into());
            s.push('\n');
            output::write_stdout(&s);
        }
        Sink::Pager(p) => {
            if let Paged::Failed(why) = p.finish() {
                return Err(CliError::new(names::PAGER, why, Exit::Failure));
            }
        }
        Sink::Stdout => {}
    }
    Ok(Output {
        printed: true,
        ..Output::default()
    })
}

fn show(log: &str, id: u64, ctx: &Ctx) -> Result<Output, CliError> {
    let path = path_of(log)?;
    let client = ctx.connect()?;
    let page = get_entries(&client, path, id, 1, &Options::new())?;
    let Some(e) = page.entries.first().filter(|e| num(e, k::ID) == id) else {
        return Err(CliError::daemon(bmcd_api::Error::NotFound(format!(
            "no entry {id} in the {log} log (never written, rotated out or cleared)"
        ))));
    };
    let data = data(e);
    // Data: one `key: value` per line, under the first.
    let data_console = data
        .iter()
        .map(|(key, v)| format!("{key}: {}", v.console()))
        .collect::<Vec<_>>()
        .join(&format!("\n{}", " ".repeat(12)));
    let us = num(e, k::TIME);
    let r = Record::new()
        .field(LOG, Value::text(log))
        .field(ID, Value::Int(i64::try_from(id).unwrap_or(i64::MAX)))
        .field_as(
            TIME,
            Value::Int(i64::try_from(us).unwrap_or(i64::MAX)),
            format!(
                "{} ({})",
                time::local_compact(us),
                time::iso8601_utc(us / 1000)
            ),
        )
        .field(SEVERITY, Value::text(text(e, k::SEVERITY)))
        .field(SOURCE, Value::text(text(e, k::SOURCE)))
        .field(MESSAGE_ID, Value::text(text(e, k::MESSAGE_ID)))
        .field(MESSAGE, Value::text(text(e, k::MESSAGE)))
        .field_as(DATA, Value::Map(data.clone()), data_console);
    Ok(Output::new().record(None, r))
}

fn clear(log: &str, ctx: &Ctx) -> Result<Output, CliError> {
    let path = path_of(log)?;
    if log == "event" {
        ctx.confirm(
            "clear the event log",
            "Remove every entry of the event log? The audit log records who cleared it.",
        )?;
    }
    let client = ctx.connect()?;
    client
        .call(|c| {
            c.call_method(
                Some(bmcd_api::BUS_NAME),
                path,
                Some(bmcd_api::LOG_IFACE),
                "Clear",
                &(Options::new(),),
            )?;
            Ok(())
        })
        .map_err(|mut e| {
            if matches!(e.as_daemon(), Some(bmcd_api::Error::NotAllowed(_))) && log == "audit" {
                e.message = format!(
                    "{} (the audit log is never cleared; it rotates its oldest entries out)",
                    e.message
                );
            }
            e
        })?;
    Ok(Output::new()
        .notice(format!("The {log} log was cleared."))
        .json_result(
            Record::new()
                .field(LOG, Value::text(log))
                .field(FieldSpec::new("Cleared", "Cleared"), Value::Bool(true)),
        ))
}

fn follow(log: &str, lines: u32, ctx: &Ctx) -> Result<Output, CliError> {
    let path = path_of(log)?;
    let client = ctx.connect()?;
    let (tx, rx) = mpsc::channel();
    let _sigint = wait::Sigint::install(tx.clone());
    // Every message in order, before any match is added (see `wait`).
    wait::spawn_reader(&client, path, tx)?;
    let dbus = wait::DBUS_NAME;
    wait::add_match(
        &client,
        &format!(
            "type='signal',sender='{dbus}',path='/org/freedesktop/DBus',interface='{dbus}',\
             member='NameOwnerChanged',arg0='{}'",
            bmcd_api::BUS_NAME
        ),
    )?;
    let owner = client.call(|c| {
        let m = crate::conn::call_str(
            c,
            dbus,
            "/org/freedesktop/DBus",
            dbus,
            "GetNameOwner",
            bmcd_api::BUS_NAME,
        )?;
        Ok(m.body().deserialize::<String>()?)
    })?;
    wait::add_match(
        &client,
        &format!(
            "type='signal',sender='{owner}',path='{path}',interface='{}',member='Appended'",
            bmcd_api::LOG_IFACE
        ),
    )?;
    // The last `lines` entries, oldest first; then from the one after.
    let mut opts = Options::new();
    opts.insert(q::DIRECTION, ZValue::from(q::OLDER));
    let page = get_entries(&client, path, q::CURSOR_NEWEST, lines.max(1), &opts)?;
    let mut cursor = page
        .last_id
        .max(page.entries.first().map_or(0, |e| num(e, k::ID)))
        + 1;
    if lines > 0 && !print_follow(page.entries.iter().rev(), ctx.json) {
        return Ok(printed());
    }
    let newer = Options::new();
    loop {
        match rx.recv() {
            Ok(Event::Appended { sender }) if sender == owner => loop {
                let page = get_entries(&client, path, cursor, q::MAX_PAGE, &newer)?;
                if let Some(e) = page.entries.last() {
                    cursor = num(e, k::ID) + 1;
                }
                if !print_follow(page.entries.iter(), ctx.json) {
                    return Ok(printed());
                }
                if page.end || page.entries.is_empty() {
                    break;
                }
            },
            Ok(Event::OwnerChanged { new_owner }) if new_owner != owner => {
                return Err(CliError::new(
                    names::DAEMON_STOPPED,
                    format!("bmcd stopped while following the {log} log"),
                    Exit::Failure,
                ));
            }
            Ok(Event::Interrupt) => {
                // Ctrl-C is how `follow` ends: no error line, exit 130.
                std::process::exit(Exit::WaitStopped.code());
            }
            Ok(Event::Closed) | Err(_) => {
                return Err(CliError::new(
                    names::CONNECT,
                    format!("lost the bus connection while following the {log} log"),
                    Exit::Failure,
                ));
            }
            Ok(_) => {}
        }
    }
}

fn printed() -> Output {
    Output {
        printed: true,
        ..Output::default()
    }
}

/// Print entries as they come (JSON: one document per entry); `false` when
/// stdout is gone.
fn print_follow<'a>(entries: impl Iterator<Item = &'a LogEntry>, json: bool) -> bool {
    let text: String = entries
        .map(|e| {
            if json {
                // Pretty, as every other document (one serializer in
                // the binary).
                let mut s = serde_json::to_string_pretty(&entry_json(e)).unwrap_or_default();
                s.push('\n');
                s
            } else {
                line(e)
            }
        })
        .collect();
    text.is_empty() || output::write_stdout(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ov<'a>(v: impl Into<ZValue<'a>>) -> OwnedValue {
        v.into().try_into_owned().unwrap()
    }

    fn entry() -> LogEntry {
        let mut data = HashMap::new();
        data.insert("version".to_owned(), "1.0".to_owned());
        data.insert("platform".to_owned(), "sim".to_owned());
        let mut e = LogEntry::new();
        e.insert(k::ID.into(), ov(7u64));
        e.insert(k::TIME.into(), ov(1_714_566_896_000_000u64));
        e.insert(k::SEVERITY.into(), ov("Notice"));
        e.insert(k::SOURCE.into(), ov("daemon"));
        e.insert(k::MESSAGE_ID.into(), ov("Daemon.Started"));
        e.insert(k::MESSAGE.into(), ov("bmcd\nstarted"));
        e.insert(k::DATA.into(), ov(data));
        e
    }

    #[test]
    fn one_line_per_entry() {
        let l = line(&entry());
        assert!(
            l.ends_with(" notice  daemon   Daemon.Started bmcd started platform=sim version=1.0\n"),
            "{l}"
        );
        assert_eq!(l.lines().count(), 1);
        assert!(l.starts_with("     7 2024-05-0"), "{l}");
        let j = entry_json(&entry());
        assert_eq!(j["Id"], 7);
        assert_eq!(j["Data"]["platform"], "sim");
        assert_eq!(j["MessageId"], "Daemon.Started");
    }

    #[test]
    fn severity_words() {
        assert_eq!(severity_word("err").unwrap(), "Error");
        assert_eq!(severity_word("WARNING").unwrap(), "Warning");
        assert_eq!(severity_word("warn").unwrap(), "Warning");
        assert_eq!(severity_word("info").unwrap(), "Informational");
        assert_eq!(severity_word("deb").unwrap(), "Debug");
        assert_eq!(severity_word("bad").unwrap_err().exit, Exit::Usage);
        assert_eq!(severity_word("e").unwrap_err().exit, Exit::Usage);
    }

    #[test]
    fn filters_become_options() {
        let f = LogFilters {
            since: Some("-1h".into()),
            until: None,
            severity: Some("err".into()),
            source: Some("chassis".into()),
            message_id: Some("Chassis.".into()),
        };
        let o = filter_options(&f, 7_200_000_000).unwrap();
        assert_eq!(o.get(q::SINCE), Some(&ZValue::U64(3_600_000_000)));
        assert_eq!(o.get(q::MIN_SEVERITY), Some(&ZValue::from("Error")));
        assert_eq!(o.get(q::MESSAGE_ID), Some(&ZValue::from("Chassis.")));
        let bad = LogFilters {
            until: Some("tomorrow".into()),
            ..f
        };
        assert_eq!(filter_options(&bad, 0).unwrap_err().exit, Exit::Usage);
    }
}
