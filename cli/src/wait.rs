//! Waiting for a task to finish, through signals only.
//!
//! Order matters, so that no change is missed and nothing is polled:
//! 1. read every message the connection receives, in bus order, in a
//!    thread (before any match is added);
//! 2. subscribe to `NameOwnerChanged` of `org.bmcd`, then ask who owns it;
//! 3. subscribe to the task's `PropertiesChanged` and to `InterfacesRemoved`
//!    from that owner;
//! 4. `GetAll` the task, then react to signals only.
//!
//! No time bound is guessed: `--timeout` bounds each reply, not the work.
//! The wait ends when the task reaches a final state, when bmcd loses its
//! name (`bmcd stopped while waiting for task N`, exit 1, at once), when the
//! task object goes away, or on Ctrl-C, which stops the waiting and not the
//! task (exit 130, saying how to wait again or cancel).
//!
//! Progress goes to stderr: on a terminal a one-line bar redrawn in place,
//! otherwise one line per phase change, nothing with `--json` or `--quiet`.

use std::collections::HashMap;
use std::io::{self, IsTerminal, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc::{self, Sender};

use bmcd_api::zbus;
use bmcd_api::TaskState;
use zbus::blocking::MessageIterator;
use zbus::message::{Message, Type as MsgType};
use zbus::zvariant::{OwnedObjectPath, OwnedValue};

use crate::commands::task::{self, TaskInfo};
use crate::commands::Ctx;
use crate::conn::{self, Client};
use crate::error::{exit_for_name, names, CliError, Exit};
use crate::output::Progress;

pub const DBUS_NAME: &str = "org.freedesktop.DBus";
const PROPERTIES_IFACE: &str = "org.freedesktop.DBus.Properties";
const OBJECT_MANAGER_IFACE: &str = "org.freedesktop.DBus.ObjectManager";

/// How progress is shown while waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// stderr is a terminal: one bar redrawn in place.
    Bar,
    /// No terminal: one line per phase change.
    Lines,
    /// `--json` or `--quiet`: nothing.
    Silent,
}

impl Style {
    pub fn for_ctx(ctx: &Ctx) -> Style {
        if ctx.json || ctx.quiet {
            Style::Silent
        } else if io::stderr().is_terminal() {
            Style::Bar
        } else {
            Style::Lines
        }
    }
}

/// What the message thread and the SIGINT handler report (for task waits
/// and `log follow`).
#[derive(Debug)]
pub enum Event {
    Changed {
        sender: String,
        props: HashMap<String, OwnedValue>,
        invalidated: bool,
    },
    OwnerChanged {
        new_owner: String,
    },
    Removed {
        sender: String,
    },
    /// `Log1.Appended` of the log being followed.
    Appended {
        sender: String,
    },
    Interrupt,
    Closed,
}

/// Wait until the task at `path` is in a final state and return its
/// properties then (whatever the state; see [`outcome`]).
pub fn wait(client: &Client, path: &str, style: Style) -> Result<TaskInfo, CliError> {
    let id = bmcd_api::task_id(path).unwrap_or(0);
    let (tx, rx) = mpsc::channel();
    let _sigint = Sigint::install(tx.clone());
    spawn_reader(client, path, tx)?;

    add_match(
        client,
        &format!(
            "type='signal',sender='{DBUS_NAME}',path='/org/freedesktop/DBus',\
             interface='{DBUS_NAME}',member='NameOwnerChanged',arg0='{}'",
            bmcd_api::BUS_NAME
        ),
    )?;
    let owner = client.call(|c| {
        let m = conn::call_str(
            c,
            DBUS_NAME,
            "/org/freedesktop/DBus",
            DBUS_NAME,
            "GetNameOwner",
            bmcd_api::BUS_NAME,
        )?;
        Ok(m.body().deserialize::<String>()?)
    })?;
    // Unique names and task paths hold no quotes or backslashes.
    add_match(
        client,
        &format!(
            "type='signal',sender='{owner}',path='{path}',interface='{PROPERTIES_IFACE}',\
             member='PropertiesChanged',arg0='{}'",
            bmcd_api::TASK_IFACE
        ),
    )?;
    add_match(
        client,
        &format!(
            "type='signal',sender='{owner}',path='{}',interface='{OBJECT_MANAGER_IFACE}',\
             member='InterfacesRemoved'",
            bmcd_api::ROOT_PATH
        ),
    )?;

    let mut t = task::read_task(client, path)?;
    let mut report = Reporter::new(style);
    report.show(&t);
    let mut waited = false;
    while !t.is_final() {
        waited = true;
        match rx.recv() {
            Ok(Event::Changed {
                sender,
                props,
                invalidated,
            }) if sender == owner => {
                t.apply(&props);
                if invalidated {
                    t = task::read_task(client, path)?;
                }
                report.show(&t);
            }
            Ok(Event::OwnerChanged { new_owner }) if new_owner != owner => {
                return Err(CliError::new(
                    names::DAEMON_STOPPED,
                    format!("bmcd stopped while waiting for task {id}"),
                    Exit::Failure,
                ));
            }
            Ok(Event::Removed { sender }) if sender == owner => {
                return Err(CliError::new(
                    names::TASK_GONE,
                    format!(
                        "task {id} was removed while waiting for it (last seen {}); \
                         its outcome is unknown",
                        if t.state.is_empty() { "-" } else { &t.state }
                    ),
                    Exit::NotFound,
                ));
            }
            Ok(Event::Interrupt) => return Err(stopped_waiting(id)),
            Ok(Event::Closed) | Err(_) => {
                return Err(CliError::new(
                    names::CONNECT,
                    format!("lost the bus connection while waiting for task {id}"),
                    Exit::Failure,
                ));
            }
            Ok(_) => {}
        }
    }
    report.finish();
    if waited {
        // The signal that said "final" may not carry every property that
        // changed with it (Error, Result, the last Progress): read them all
        // once more; if the task or bmcd is gone by now, keep what we saw.
        if let Ok(last) = task::read_task(client, path) {
            t = last;
        }
    }
    Ok(t)
}

/// Ctrl-C while waiting.
fn stopped_waiting(id: u64) -> CliError {
    CliError::new(
        names::WAIT_STOPPED,
        format!(
            "task {id} still running: wait again with `bmcctl task wait {id}`, \
             or cancel with `bmcctl task cancel {id}`"
        ),
        Exit::WaitStopped,
    )
}

/// A finished task as a result: Completed is success; Failed, Cancelled
/// and Interrupted are errors with their exit codes (see `error`), carrying
/// the task's properties for the `--json` document.
pub fn outcome(t: TaskInfo) -> Result<TaskInfo, CliError> {
    let (name, text) = &t.error;
    let label = t.label();
    let mut e = match t.state() {
        Some(TaskState::Failed) => {
            let name = if name.is_empty() {
                names::TASK_FAILED
            } else {
                name
            };
            let exit = exit_for_name(name);
            CliError::new(name, format!("{label} failed: {}", or_dash(text)), exit)
        }
        Some(TaskState::Cancelled) => {
            CliError::daemon(bmcd_api::Error::Cancelled(match text.as_str() {
                "" => format!("{label} was cancelled"),
                m => format!("{label} was cancelled: {m}"),
            }))
        }
        Some(TaskState::Interrupted) => {
            CliError::daemon(bmcd_api::Error::Interrupted(match text.as_str() {
                "" => format!("{label} was interrupted"),
                m => format!("{label} was interrupted: {m}"),
            }))
        }
        _ => return Ok(t),
    };
    e.json = Some(t.json());
    Err(e)
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() {
        "no reason given"
    } else {
        s
    }
}

/// `AddMatch` with `rule` (a match rule string).
pub fn add_match(client: &Client, rule: &str) -> Result<(), CliError> {
    client.call(|c| {
        conn::call_str(
            c,
            DBUS_NAME,
            "/org/freedesktop/DBus",
            DBUS_NAME,
            "AddMatch",
            rule,
        )?;
        Ok(())
    })
}

/// Read every message of the connection, in order, in a thread; forward
/// the ones about the wait (`path`: the task, or the log followed).
/// Started before any match is added.
pub fn spawn_reader(client: &Client, path: &str, tx: Sender<Event>) -> Result<(), CliError> {
    let it = MessageIterator::from(client.connection().clone());
    let path = path.to_owned();
    std::thread::Builder::new()
        .name("bmcctl-wait".into())
        .spawn(move || {
            for msg in it {
                let Ok(msg) = msg else { continue };
                if let Some(ev) = classify(&msg, &path) {
                    if tx.send(ev).is_err() {
                        return;
                    }
                }
            }
            let _ = tx.send(Event::Closed);
        })
        .map(|_| ())
        .map_err(|e| {
            CliError::new(
                names::CONNECT,
                format!("cannot start the waiting thread: {e}"),
                Exit::Failure,
            )
        })
}

fn classify(msg: &Message, path: &str) -> Option<Event> {
    if msg.message_type() != MsgType::Signal {
        return None;
    }
    let hdr = msg.header();
    let sender = hdr.sender().map(|s| s.to_string()).unwrap_or_default();
    let at = hdr.path()?.as_str();
    match (hdr.interface()?.as_str(), hdr.member()?.as_str()) {
        (DBUS_NAME, "NameOwnerChanged") if sender == DBUS_NAME => {
            let (name, _old, new_owner): (String, String, String) =
                msg.body().deserialize().ok()?;
            (name == bmcd_api::BUS_NAME).then_some(Event::OwnerChanged { new_owner })
        }
        (PROPERTIES_IFACE, "PropertiesChanged") if at == path => {
            let (iface, props, invalidated): (String, HashMap<String, OwnedValue>, Vec<String>) =
                msg.body().deserialize().ok()?;
            (iface == bmcd_api::TASK_IFACE).then_some(Event::Changed {
                sender,
                props,
                invalidated: !invalidated.is_empty(),
            })
        }
        (bmcd_api::LOG_IFACE, "Appended") if at == path => Some(Event::Appended { sender }),
        (OBJECT_MANAGER_IFACE, "InterfacesRemoved") if at == bmcd_api::ROOT_PATH => {
            let (object, ifaces): (OwnedObjectPath, Vec<String>) = msg.body().deserialize().ok()?;
            (object.as_str() == path && ifaces.iter().any(|i| i == bmcd_api::TASK_IFACE))
                .then_some(Event::Removed { sender })
        }
        _ => None,
    }
}

/// Draws the progress of a task as [`Style`] says.
struct Reporter {
    style: Style,
    bar: Progress,
    last_phase: Option<String>,
}

impl Reporter {
    fn new(style: Style) -> Self {
        Reporter {
            style,
            bar: Progress::new(style != Style::Bar),
            last_phase: None,
        }
    }

    fn show(&mut self, t: &TaskInfo) {
        match self.style {
            Style::Silent => {}
            Style::Bar => self.bar.update(&fit(&bar_line(t), stderr_columns())),
            Style::Lines => {
                if let Some(line) = phase_line(&mut self.last_phase, t) {
                    let mut err = io::stderr().lock();
                    let _ = writeln!(err, "{line}");
                    let _ = err.flush();
                }
            }
        }
    }

    fn finish(&mut self) {
        self.bar.finish();
    }
}

const BAR_WIDTH: usize = 20;

/// `task 12 (PowerOff) [########------------]  40% Graceful`.
fn bar_line(t: &TaskInfo) -> String {
    let pct = usize::from(t.progress.min(100));
    let filled = pct * BAR_WIDTH / 100;
    let phase = if t.phase.is_empty() {
        &t.state
    } else {
        &t.phase
    };
    format!(
        "{} [{}{}] {pct:>3}% {phase}",
        t.label(),
        "#".repeat(filled),
        "-".repeat(BAR_WIDTH - filled)
    )
}

/// `task 12 (PowerOff): Graceful (10%)`, once per phase; `None` while the
/// phase stays the same (or before there is one).
fn phase_line(last: &mut Option<String>, t: &TaskInfo) -> Option<String> {
    if t.phase.is_empty() || last.as_deref() == Some(t.phase.as_str()) {
        return None;
    }
    *last = Some(t.phase.clone());
    Some(format!("{}: {} ({}%)", t.label(), t.phase, t.progress))
}

/// Cut `line` to fit in `cols` columns (a wrapped line cannot be redrawn).
fn fit(line: &str, cols: Option<u16>) -> String {
    match cols {
        Some(c) if c > 1 && line.chars().count() >= usize::from(c) => {
            line.chars().take(usize::from(c) - 1).collect()
        }
        _ => line.to_owned(),
    }
}

fn stderr_columns() -> Option<u16> {
    crate::pager::window_size(libc::STDERR_FILENO).map(|(_, cols)| cols)
}

/// Write end of the socket pair the SIGINT handler writes to; -1 when none.
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);

/// While waiting, SIGINT (Ctrl-C) becomes an [`Event::Interrupt`]: the
/// handler writes one byte to a socket pair (async-signal-safe), a thread
/// reads it and sends the event. A SIGINT ignored at start stays ignored.
/// Dropping the guard puts the previous action back and closes the pair
/// (the thread then reads EOF and ends).
pub struct Sigint {
    previous: Option<libc::sigaction>,
    wake: Option<UnixStream>,
}

impl Sigint {
    pub fn install(tx: Sender<Event>) -> Sigint {
        let mut guard = Sigint {
            previous: None,
            wake: None,
        };
        if sigint_ignored() {
            return guard;
        }
        let Ok((wake, mut woken)) = UnixStream::pair() else {
            return guard;
        };
        let spawned = std::thread::Builder::new()
            .name("bmcctl-sigint".into())
            .spawn(move || {
                let mut b = [0u8; 1];
                loop {
                    match woken.read(&mut b) {
                        Ok(1) => {
                            let _ = tx.send(Event::Interrupt);
                            break;
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        _ => break, // EOF: the guard was dropped
                    }
                }
            });
        if spawned.is_err() {
            return guard;
        }
        WAKE_FD.store(wake.as_raw_fd(), Ordering::SeqCst);
        guard.wake = Some(wake);
        // SAFETY: sigaction with structs we own; the handler only loads an
        // atomic and calls write(2) (see `on_sigint`); the previous action
        // is kept to be put back.
        unsafe {
            let mut new: libc::sigaction = std::mem::zeroed();
            new.sa_sigaction = on_sigint as extern "C" fn(libc::c_int) as usize;
            new.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut new.sa_mask);
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGINT, &new, &mut old) == 0 {
                guard.previous = Some(old);
            }
        }
        guard
    }
}

/// Whether SIGINT is ignored (e.g. a background job of a shell): then it
/// stays ignored.
fn sigint_ignored() -> bool {
    // SAFETY: queries the current action into a struct we own.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGINT, std::ptr::null(), &mut old) != 0
            || old.sa_sigaction == libc::SIG_IGN
    }
}

impl Drop for Sigint {
    fn drop(&mut self) {
        if let Some(old) = self.previous.take() {
            // SAFETY: puts back the action sigaction returned.
            unsafe {
                libc::sigaction(libc::SIGINT, &old, std::ptr::null_mut());
            }
        }
        // The handler no longer writes; then the socket may close.
        WAKE_FD.store(-1, Ordering::SeqCst);
        self.wake = None;
    }
}

/// The SIGINT handler of [`Sigint`]: async-signal-safe calls only.
extern "C" fn on_sigint(_sig: libc::c_int) {
    let fd = WAKE_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: write(2) is async-signal-safe; the byte is a static.
        unsafe {
            libc::write(fd, b"!".as_ptr().cast(), 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(state: &str, progress: u8, phase: &str) -> TaskInfo {
        TaskInfo {
            kind: "PowerOff".into(),
            state: state.into(),
            progress,
            phase: phase.into(),
            ..TaskInfo::new("/org/bmcd/tasks/12")
        }
    }

    #[test]
    fn the_bar_shows_phase_and_percent() {
        assert_eq!(
            bar_line(&task("Running", 40, "Graceful")),
            "task 12 (PowerOff) [########------------]  40% Graceful"
        );
        assert_eq!(
            bar_line(&task("Pending", 0, "")),
            "task 12 (PowerOff) [--------------------]   0% Pending"
        );
        assert_eq!(
            bar_line(&task("Completed", 100, "Done")),
            "task 12 (PowerOff) [####################] 100% Done"
        );
        assert_eq!(fit("abcdef", Some(4)), "abc");
        assert_eq!(fit("abc", Some(4)), "abc");
        assert_eq!(fit("abcdef", None), "abcdef");
    }

    #[test]
    fn one_line_per_phase_change() {
        let mut last = None;
        let seen: Vec<String> = [
            task("Pending", 0, ""),
            task("Running", 5, "Graceful"),
            task("Running", 30, "Graceful"),
            task("Running", 60, "Force"),
            task("Completed", 100, "Force"),
        ]
        .iter()
        .filter_map(|t| phase_line(&mut last, t))
        .collect();
        assert_eq!(
            seen,
            [
                "task 12 (PowerOff): Graceful (5%)",
                "task 12 (PowerOff): Force (60%)"
            ]
        );
    }

    #[test]
    fn final_states_map_to_exit_codes() {
        let done = task("Completed", 100, "Done");
        assert_eq!(outcome(done.clone()), Ok(done));

        let mut failed = task("Failed", 40, "Graceful");
        failed.error = (
            "org.bmcd.Error.Timeout".into(),
            "still on after 10 s".into(),
        );
        let e = outcome(failed).unwrap_err();
        assert_eq!(e.exit, Exit::Timeout);
        assert_eq!(
            e.line(),
            "task 12 (PowerOff) failed: still on after 10 s (org.bmcd.Error.Timeout)"
        );
        let doc = e.json.clone().unwrap_or_default();
        assert_eq!(doc["State"], "Failed");
        let v: serde_json::Value =
            serde_json::from_str(&crate::output::render_error_json(&e)).unwrap();
        assert_eq!(v["error"]["exit_code"], 6);
        assert_eq!(v["Error"]["Name"], "org.bmcd.Error.Timeout");
        assert_eq!(v["Id"], 12);

        let mut failed = task("Failed", 40, "Graceful");
        failed.error = ("org.bmcd.Error.Busy".into(), "x".into());
        assert_eq!(outcome(failed).unwrap_err().exit, Exit::Busy);
        let e = outcome(task("Failed", 40, "Graceful")).unwrap_err();
        assert_eq!(
            (e.exit, e.name.as_str()),
            (Exit::Failure, names::TASK_FAILED)
        );

        let e = outcome(task("Cancelled", 40, "Graceful")).unwrap_err();
        assert_eq!(e.exit.code(), 7);
        assert_eq!(
            e.line(),
            "task 12 (PowerOff) was cancelled (org.bmcd.Error.Cancelled)"
        );
        let mut intr = task("Interrupted", 40, "Graceful");
        intr.error = ("org.bmcd.Error.Interrupted".into(), "bmcd restarted".into());
        let e = outcome(intr).unwrap_err();
        assert_eq!(e.exit.code(), 8);
        assert!(e.message.ends_with("was interrupted: bmcd restarted"));
    }

    #[test]
    fn ctrl_c_says_how_to_go_on() {
        let e = stopped_waiting(12);
        assert_eq!(e.exit.code(), 130);
        assert_eq!(
            e.line(),
            "task 12 still running: wait again with `bmcctl task wait 12`, \
             or cancel with `bmcctl task cancel 12`"
        );
    }
}
