//! The one place that formats output.
//!
//! Commands describe what they show with [`FieldSpec`]s (a JSON key and a
//! console label) and hand records and tables of typed [`Value`]s to this
//! module; it renders them as aligned console text or as one JSON document.
//! Commands never print.
//!
//! Roles decide what appears where:
//! - [`Role::Data`]: what the user asked to see; console and JSON, even with
//!   `--quiet`.
//! - [`Role::Notice`]: a human confirmation ("Power is On."); console only,
//!   suppressed by `--quiet`.
//! - [`Role::JsonOnly`]: the machine-readable result of an action.
//!
//! JSON keys are the D-Bus property names (`PowerState`), so scripts read
//! the same words as `busctl`. Times are ISO-8601 UTC strings; "never" /
//! "not set" is `null`.

use std::io::{self, IsTerminal, Write};

use serde_json::{Map, Number, Value as Json};

use crate::error::{CliError, Exit};
use crate::pager::Paged;
use crate::time;

/// A field: the key used in JSON and the label shown on the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSpec {
    pub key: &'static str,
    pub label: &'static str,
    pub align: Align,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

impl FieldSpec {
    pub const fn new(key: &'static str, label: &'static str) -> Self {
        FieldSpec {
            key,
            label,
            align: Align::Left,
        }
    }

    /// Right-aligned in tables (numbers).
    pub const fn num(key: &'static str, label: &'static str) -> Self {
        FieldSpec {
            key,
            label,
            align: Align::Right,
        }
    }
}

/// A typed value; each kind knows how it looks on the console and in JSON.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Absent / not applicable: `-` and `null`.
    Null,
    Text(String),
    Int(i64),
    /// `yes`/`no` and `true`/`false`.
    Bool(bool),
    /// `40%` and `40`.
    Percent(u8),
    /// Milliseconds since the Unix epoch; 0 = not set (`-` and `null`).
    Time(u64),
    /// Like `Time`, with the time left shown on the console.
    Deadline(u64),
    /// Degrees Celsius; NaN = unreadable (`unreadable` and `null`).
    Celsius(f64),
    /// A plain number; not finite = `null`.
    Float(f64),
    List(Vec<Value>),
    Map(Vec<(String, Value)>),
}

impl Value {
    pub fn text(s: impl Into<String>) -> Self {
        Value::Text(s.into())
    }

    /// Console text.
    pub fn console(&self) -> String {
        match self {
            Value::Null => "-".to_owned(),
            Value::Text(s) if s.is_empty() => "-".to_owned(),
            Value::Text(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            Value::Bool(true) => "yes".to_owned(),
            Value::Bool(false) => "no".to_owned(),
            Value::Percent(p) => format!("{p}%"),
            Value::Time(0) | Value::Deadline(0) => "-".to_owned(),
            Value::Time(ms) => time::iso8601_utc(*ms),
            Value::Deadline(ms) => time::iso8601_with_remaining(*ms, time::now_ms()),
            Value::Celsius(c) if c.is_finite() => format!("{c:.1} °C"),
            Value::Celsius(_) => "unreadable".to_owned(),
            Value::Float(f) => short_float(*f),
            Value::List(l) if l.is_empty() => "-".to_owned(),
            Value::List(l) => l.iter().map(Value::console).collect::<Vec<_>>().join(", "),
            Value::Map(m) if m.is_empty() => "-".to_owned(),
            Value::Map(m) => m
                .iter()
                .map(|(k, v)| format!("{k} {}", v.console()))
                .collect::<Vec<_>>()
                .join(", "),
        }
    }

    /// JSON value.
    pub fn json(&self) -> Json {
        match self {
            Value::Null => Json::Null,
            Value::Text(s) => Json::String(s.clone()),
            Value::Int(i) => Json::Number(Number::from(*i)),
            Value::Bool(b) => Json::Bool(*b),
            Value::Percent(p) => Json::Number(Number::from(*p)),
            Value::Time(0) | Value::Deadline(0) => Json::Null,
            Value::Time(ms) | Value::Deadline(ms) => Json::String(time::iso8601_utc(*ms)),
            Value::Celsius(c) | Value::Float(c) => {
                Number::from_f64(*c).map_or(Json::Null, Json::Number)
            }
            Value::List(l) => Json::Array(l.iter().map(Value::json).collect()),
            Value::Map(m) => Json::Object(m.iter().map(|(k, v)| (k.clone(), v.json())).collect()),
        }
    }
}

/// Up to 6 decimals, without trailing zeros (`1.5`, `2`); fixed-precision
/// formatting is already in the binary, shortest-repr formatting is not.
fn short_float(f: f64) -> String {
    let s = format!("{f:.6}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

/// One field of a record, with an optional console text that replaces the
/// value's own (e.g. "until turned off" for an expiry of 0).
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub spec: FieldSpec,
    pub value: Value,
    pub console: Option<String>,
}

/// A key-value block.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record {
    pub fields: Vec<Field>,
}

impl Record {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn field(mut self, spec: FieldSpec, value: Value) -> Self {
        self.fields.push(Field {
            spec,
            value,
            console: None,
        });
        self
    }

    /// A field whose console text is given explicitly.
    pub fn field_as(mut self, spec: FieldSpec, value: Value, console: impl Into<String>) -> Self {
        self.fields.push(Field {
            spec,
            value,
            console: Some(console.into()),
        });
        self
    }
}

/// Rows of values under column specs.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub columns: Vec<FieldSpec>,
    pub rows: Vec<Vec<Value>>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    Notice(String),
    /// A line of console data (shown with `--quiet` too), not in JSON.
    Line(String),
    Record(Record),
    Table(Table),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Data,
    Notice,
    JsonOnly,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// Member name in the JSON document; `None` merges a record's fields
    /// into the top-level object (or makes a lone table the document).
    pub key: Option<&'static str>,
    pub block: Block,
    pub role: Role,
}

/// Everything a command has to show.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Output {
    pub items: Vec<Item>,
    /// Shown like the output, then reported as this error (its line on
    /// stderr, `error` in the JSON document, its exit code): for a verdict
    /// that is itself the data asked for (`firmware inspect` of an image
    /// that cannot be installed).
    pub failure: Option<CliError>,
    /// The command wrote its data itself, as it came (`log list`, `log
    /// follow`): nothing is left to emit.
    pub printed: bool,
}

impl Output {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn record(mut self, key: Option<&'static str>, r: Record) -> Self {
        self.items.push(Item {
            key,
            block: Block::Record(r),
            role: Role::Data,
        });
        self
    }

    pub fn table(mut self, key: Option<&'static str>, t: Table) -> Self {
        self.items.push(Item {
            key,
            block: Block::Table(t),
            role: Role::Data,
        });
        self
    }

    /// A line printed on the console even with `--quiet` (e.g. a task id
    /// for scripts); JSON readers get the same in a `json_result`.
    pub fn line(mut self, text: impl Into<String>) -> Self {
        self.items.push(Item {
            key: None,
            block: Block::Line(text.into()),
            role: Role::Data,
        });
        self
    }

    pub fn notice(mut self, text: impl Into<String>) -> Self {
        self.items.push(Item {
            key: None,
            block: Block::Notice(text.into()),
            role: Role::Notice,
        });
        self
    }

    /// Show everything, then fail with `e` (see [`Output::failure`]).
    pub fn fail_with(mut self, e: CliError) -> Self {
        self.failure = Some(e);
        self
    }

    /// The result of an action for JSON readers (fields merged at top level).
    pub fn json_result(mut self, r: Record) -> Self {
        self.items.push(Item {
            key: None,
            block: Block::Record(r),
            role: Role::JsonOnly,
        });
        self
    }
}

/// Console text of an output (`quiet` drops notices).
pub fn render_console(out: &Output, quiet: bool) -> String {
    let mut s = String::new();
    let mut prev_was_notice = true;
    for item in &out.items {
        let text = match (&item.block, item.role) {
            (_, Role::JsonOnly) => continue,
            (Block::Notice(_), _) | (_, Role::Notice) if quiet => continue,
            (Block::Notice(n), _) | (Block::Line(n), _) => format!("{n}\n"),
            (Block::Record(r), _) => render_record(r),
            (Block::Table(t), _) => render_table(t),
        };
        let is_notice = matches!(item.block, Block::Notice(_) | Block::Line(_));
        // A blank line between blocks, not between consecutive notices.
        let consecutive_notices = is_notice && prev_was_notice;
        if !s.is_empty() && !consecutive_notices {
            s.push('\n');
        }
        s.push_str(&text);
        prev_was_notice = is_notice;
    }
    s
}

fn render_record(r: &Record) -> String {
    let width = r
        .fields
        .iter()
        .map(|f| f.spec.label.chars().count())
        .max()
        .unwrap_or(0);
    let mut s = String::new();
    for f in &r.fields {
        let value = f.console.clone().unwrap_or_else(|| f.value.console());
        let pad = width.saturating_sub(f.spec.label.chars().count());
        s.push_str(f.spec.label);
        s.push(':');
        s.push_str(&" ".repeat(pad + 2));
        s.push_str(&value);
        s.push('\n');
    }
    s
}

fn render_table(t: &Table) -> String {
    let cells: Vec<Vec<String>> = t
        .rows
        .iter()
        .map(|row| row.iter().map(Value::console).collect())
        .collect();
    let mut widths: Vec<usize> = t.columns.iter().map(|c| c.label.chars().count()).collect();
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut s = String::new();
    let header: Vec<String> = t.columns.iter().map(|c| c.label.to_owned()).collect();
    push_row(&mut s, &header, &t.columns, &widths);
    for row in &cells {
        push_row(&mut s, row, &t.columns, &widths);
    }
    s
}

fn push_row(s: &mut String, row: &[String], cols: &[FieldSpec], widths: &[usize]) {
    let mut line = String::new();
    let n = cols.len().min(row.len()).min(widths.len());
    for (i, ((cell, col), w)) in row.iter().zip(cols).zip(widths).enumerate() {
        let pad = w.saturating_sub(cell.chars().count());
        if i > 0 {
            line.push_str("  ");
        }
        match col.align {
            Align::Right => {
                line.push_str(&" ".repeat(pad));
                line.push_str(cell);
            }
            Align::Left => {
                line.push_str(cell);
                if i + 1 < n {
                    line.push_str(&" ".repeat(pad));
                }
            }
        }
    }
    s.push_str(line.trim_end());
    s.push('\n');
}

fn record_json(r: &Record) -> Map<String, Json> {
    r.fields
        .iter()
        .map(|f| (f.spec.key.to_owned(), f.value.json()))
        .collect()
}

fn table_json(t: &Table) -> Json {
    Json::Array(
        t.rows
            .iter()
            .map(|row| {
                Json::Object(
                    t.columns
                        .iter()
                        .zip(row)
                        .map(|(c, v)| (c.key.to_owned(), v.json()))
                        .collect(),
                )
            })
            .collect(),
    )
}

/// The JSON document of an output (always exactly one document).
pub fn render_json(out: &Output) -> String {
    let items: Vec<&Item> = out
        .items
        .iter()
        .filter(|i| i.role != Role::Notice && !matches!(i.block, Block::Notice(_) | Block::Line(_)))
        .collect();
    let doc = match items.as_slice() {
        [Item {
            key: None,
            block: Block::Table(t),
            ..
        }] => table_json(t),
        _ => {
            let mut obj = Map::new();
            for item in items {
                match (&item.block, item.key) {
                    (Block::Record(r), None) => obj.extend(record_json(r)),
                    (Block::Record(r), Some(k)) => {
                        obj.insert(k.to_owned(), Json::Object(record_json(r)));
                    }
                    (Block::Table(t), k) => {
                        obj.insert(k.unwrap_or("Items").to_owned(), table_json(t));
                    }
                    (Block::Notice(_) | Block::Line(_), _) => {}
                }
            }
            if let Some(e) = &out.failure {
                obj.insert("error".into(), error_member(e));
            }
            Json::Object(obj)
        }
    };
    let mut s = serde_json::to_string_pretty(&doc).unwrap_or_else(|_| "{}".to_owned());
    s.push('\n');
    s
}

/// The JSON document of an error.
pub fn render_error_json(e: &CliError) -> String {
    let mut doc = e.json.clone().unwrap_or_default();
    doc.insert("error".into(), error_member(e));
    let mut s =
        serde_json::to_string_pretty(&Json::Object(doc)).unwrap_or_else(|_| "{}".to_owned());
    s.push('\n');
    s
}

/// `{"name":…,"message":…,"exit_code":…}` (and the choices, if any).
fn error_member(e: &CliError) -> Json {
    let mut err = Map::new();
    err.insert("name".into(), Json::String(e.name.clone()));
    err.insert("message".into(), Json::String(e.message.clone()));
    err.insert(
        "exit_code".into(),
        Json::Number(Number::from(e.exit.code())),
    );
    if !e.choices.is_empty() {
        let choices = e
            .choices
            .iter()
            .map(|c| {
                let mut m = Map::new();
                m.insert("name".into(), Json::String(c.name.clone()));
                m.insert("description".into(), Json::String(c.about.clone()));
                Json::Object(m)
            })
            .collect();
        err.insert("choices".into(), Json::Array(choices));
    }
    Json::Object(err)
}

/// The human text of an error for stderr: one line, then the choices if any.
pub fn render_error_human(e: &CliError) -> String {
    let mut s = format!("bmcctl: error: {}\n", e.line());
    let width = e
        .choices
        .iter()
        .map(|c| c.name.chars().count())
        .max()
        .unwrap_or(0)
        .max(12);
    for c in &e.choices {
        let pad = width.saturating_sub(c.name.chars().count());
        s.push_str("    ");
        s.push_str(&c.name);
        if !c.about.is_empty() {
            s.push_str(&" ".repeat(pad + 4));
            s.push_str(&c.about);
        }
        s.push('\n');
    }
    s
}

/// How output is delivered.
#[derive(Debug, Clone, Copy)]
pub struct Mode {
    pub json: bool,
    pub quiet: bool,
    pub no_pager: bool,
}

/// Write a command's output to stdout (through the pager when it applies).
/// `Exit::Failure` if the pager failed (said on stderr), else `Exit::Ok`.
pub fn emit(out: &Output, mode: Mode) -> Exit {
    if out.printed {
        return Exit::Ok;
    }
    if mode.json {
        write_stdout(&render_json(out));
        return Exit::Ok;
    }
    let text = render_console(out, mode.quiet);
    if text.is_empty() {
        return Exit::Ok;
    }
    if !mode.no_pager && io::stdout().is_terminal() && crate::pager::taller_than_terminal(&text) {
        if let Some(cmd) = crate::pager::command_from_env() {
            match crate::pager::page(&cmd, &text) {
                Paged::Shown => return Exit::Ok,
                Paged::Failed(why) => {
                    emit_stderr(&format!("bmcctl: {why}\n"));
                    return Exit::Failure;
                }
                Paged::NotStarted => {}
            }
        }
    }
    write_stdout(&text);
    Exit::Ok
}

/// Report an error: the human text on stderr, and with `--json` the error
/// document on stdout.
pub fn emit_error(e: &CliError, json: bool) {
    if json {
        write_stdout(&render_error_json(e));
    }
    emit_stderr(&render_error_human(e));
}

/// Text for stderr (errors that are already formatted).
pub fn emit_stderr(s: &str) {
    let mut err = io::stderr().lock();
    let _ = err.write_all(s.as_bytes());
    let _ = err.flush();
}

/// Only the JSON document of an error (the caller prints the human text).
pub fn emit_error_json(e: &CliError) {
    write_stdout(&render_error_json(e));
}

/// Write to stdout; a closed pipe (`bmcctl … | head`) is not an error
/// (`false` then: the reader is gone).
pub fn write_stdout(s: &str) -> bool {
    let mut out = io::stdout().lock();
    out.write_all(s.as_bytes())
        .and_then(|()| out.flush())
        .is_ok()
}

/// A progress line on stderr (`Powering off... 3s`), drawn only when stderr
/// is a terminal and not `--quiet`.
pub struct Progress {
    enabled: bool,
    drawn: bool,
    last: String,
}

impl Progress {
    pub fn new(quiet: bool) -> Self {
        Progress {
            enabled: !quiet && io::stderr().is_terminal(),
            drawn: false,
            last: String::new(),
        }
    }

    pub fn update(&mut self, text: &str) {
        if self.enabled && text != self.last {
            self.last = text.to_owned();
            let mut err = io::stderr().lock();
            let _ = write!(err, "\r\x1b[K{text}");
            let _ = err.flush();
            self.drawn = true;
        }
    }

    /// Erase the line.
    pub fn finish(&mut self) {
        if self.drawn {
            let mut err = io::stderr().lock();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
            self.drawn = false;
            self.last.clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Choice, Exit};

    const A: FieldSpec = FieldSpec::new("PowerState", "Power state");
    const B: FieldSpec = FieldSpec::new("LastStateChangeTime", "Last change");
    const N: FieldSpec = FieldSpec::new("Name", "NAME");
    const R: FieldSpec = FieldSpec::num("Rpm", "RPM");
    const H: FieldSpec = FieldSpec::new("Health", "HEALTH");

    #[test]
    fn records_align_labels() {
        let r = Record::new()
            .field(A, Value::text("On"))
            .field(B, Value::Time(1_714_566_896_000))
            .field_as(FieldSpec::new("X", "X"), Value::Time(0), "never");
        assert_eq!(
            render_record(&r),
            "Power state:  On\nLast change:  2024-05-01T12:34:56Z\nX:            never\n"
        );
    }

    #[test]
    fn tables_align_columns_and_numbers() {
        let t = Table {
            columns: vec![N, R, H],
            rows: vec![
                vec![Value::text("fan0"), Value::Int(12000), Value::text("Ok")],
                vec![
                    Value::text("cpu_fan1"),
                    Value::Int(0),
                    Value::text("Failed"),
                ],
            ],
        };
        assert_eq!(
            render_table(&t),
            "NAME        RPM  HEALTH\nfan0      12000  Ok\ncpu_fan1      0  Failed\n"
        );
    }

    #[test]
    fn json_uses_keys_and_types() {
        let out = Output::new().notice("ignored in JSON").record(
            None,
            Record::new()
                .field(A, Value::text("On"))
                .field(B, Value::Time(0))
                .field(FieldSpec::new("T", "T"), Value::Celsius(f64::NAN)),
        );
        let v: Json = serde_json::from_str(&render_json(&out)).unwrap();
        assert_eq!(v["PowerState"], "On");
        assert!(v["LastStateChangeTime"].is_null());
        assert!(v["T"].is_null());
        assert!(v.get("ignored").is_none());
    }

    #[test]
    fn json_nests_keyed_blocks_and_lone_tables() {
        let t = Table {
            columns: vec![N, R],
            rows: vec![vec![Value::text("fan0"), Value::Int(5)]],
        };
        let out = Output::new()
            .record(Some("Zone"), Record::new().field(A, Value::Percent(40)))
            .table(Some("Fans"), t.clone());
        let v: Json = serde_json::from_str(&render_json(&out)).unwrap();
        assert_eq!(v["Zone"]["PowerState"], 40);
        assert_eq!(v["Fans"][0]["Rpm"], 5);
        let lone = render_json(&Output::new().table(None, t));
        let v: Json = serde_json::from_str(&lone).unwrap();
        assert_eq!(v[0]["Name"], "fan0");
        assert_eq!(render_json(&Output::new().notice("x")), "{}\n");
    }

    #[test]
    fn quiet_drops_notices_but_keeps_data() {
        let out = Output::new()
            .notice("Power is On.")
            .json_result(Record::new().field(A, Value::text("On")));
        assert_eq!(render_console(&out, false), "Power is On.\n");
        assert_eq!(render_console(&out, true), "");
        let data = Output::new().record(None, Record::new().field(A, Value::text("On")));
        assert_eq!(render_console(&data, true), "Power state:  On\n");
    }

    #[test]
    fn blocks_are_separated_by_one_blank_line() {
        let out = Output::new()
            .record(None, Record::new().field(A, Value::text("On")))
            .table(
                None,
                Table {
                    columns: vec![N],
                    rows: vec![],
                },
            );
        assert_eq!(render_console(&out, false), "Power state:  On\n\nNAME\n");
    }

    #[test]
    fn console_values() {
        assert_eq!(Value::Bool(true).console(), "yes");
        assert_eq!(Value::Percent(40).console(), "40%");
        assert_eq!(Value::Celsius(41.26).console(), "41.3 °C");
        assert_eq!(Value::Celsius(f64::NAN).console(), "unreadable");
        assert_eq!(Value::List(vec![]).console(), "-");
        assert_eq!(Value::text("").console(), "-");
        assert_eq!(
            Value::Map(vec![("cpu0".into(), Value::Celsius(50.0))]).console(),
            "cpu0 50.0 °C"
        );
        assert_eq!(Value::Deadline(0).console(), "-");
        assert_eq!(Value::Float(1.5).console(), "1.5");
        assert_eq!(Value::Float(2.0).console(), "2");
        assert_eq!(Value::Float(-0.25).console(), "-0.25");
    }

    #[test]
    fn errors_render_in_both_forms() {
        let mut e = CliError::new("org.bmcd.Error.Busy", "a transition is pending", Exit::Busy);
        assert_eq!(
            render_error_human(&e),
            "bmcctl: error: a transition is pending (org.bmcd.Error.Busy)\n"
        );
        let v: Json = serde_json::from_str(&render_error_json(&e)).unwrap();
        assert_eq!(v["error"]["name"], "org.bmcd.Error.Busy");
        assert_eq!(v["error"]["exit_code"], 5);
        assert!(v["error"].get("choices").is_none());
        e.choices.push(Choice {
            name: "power".into(),
            about: "Power the host".into(),
        });
        assert!(render_error_human(&e).ends_with("\n    power           Power the host\n"));
        let v: Json = serde_json::from_str(&render_error_json(&e)).unwrap();
        assert_eq!(v["error"]["choices"][0]["description"], "Power the host");
    }
}
