//! Errors of `bmcctl` and its exit codes.
//!
//! # Exit codes
//!
//! | code | meaning |
//! |-----:|---------|
//! | 0 | success (also `--help`, `--version`) |
//! | 1 | failure: `org.bmcd.Error.NotAllowed`, `Unavailable`, `Internal`, bmcd not running, bmcd stopped while bmcctl waited for a task, cannot connect to the bus, the operator answered "no", `diag dump` would overwrite a file (no `--force`) or copied fewer bytes than the dump has, `log follow` when bmcd stops, the pager failed (exited non-zero or was killed, other than by SIGINT, SIGQUIT or SIGPIPE; said on stderr) |
//! | 2 | invalid argument or usage: command-line errors (unknown/ambiguous/missing command, bad option), a confirmation that cannot be asked (no terminal, `--json`) without `--yes`, a password bmcd could never accept (longer than 512 bytes, not UTF-8, a NUL byte; refused without sending it), `org.bmcd.Error.InvalidArgument`, `org.freedesktop.DBus.Error.InvalidArgs`, a firmware image that is not a regular file, a malformed slot name |
//! | 3 | permission or authentication denied: `org.bmcd.Error.PermissionDenied`, `AuthenticationRequired` (also when no password may be asked for: no terminal, `--json` or `--no-ask-password` without `--password-stdin`), `AuthenticationFailed` (wrong password, after the last try), `LockedOut`, `org.freedesktop.DBus.Error.AccessDenied` (bus policy), a firmware image bmcctl may not open |
//! | 4 | not found: `org.bmcd.Error.NotFound` (e.g. `fan show` of an unknown fan), `org.freedesktop.DBus.Error.UnknownObject` (e.g. `task show` of an unknown or expired task), `log show` of an entry that does not exist (any more), a task removed while bmcctl waited for it, a firmware image file that does not exist, an unknown firmware slot |
//! | 5 | busy: `org.bmcd.Error.Busy` (another transition or firmware update is under way) |
//! | 6 | timeout: `org.bmcd.Error.Timeout`, no reply within `--timeout`, connecting took longer than `--timeout` |
//! | 7 | cancelled: the task bmcctl waited for ended `Cancelled` (`org.bmcd.Error.Cancelled`) |
//! | 8 | interrupted: the task bmcctl waited for ended `Interrupted`, bmcd stopped or died while it ran (`org.bmcd.Error.Interrupted`) |
//! | 9 | firmware image refused: `org.bmcd.Error.InvalidSignature` (bad signature or no trusted key), `Incompatible` (another machine or component, a downgrade without `--force-version`), `InvalidImage` (not an image, or its content does not match its manifest), `NoSpace` (larger than the slot) |
//! | 10 | flash failure: `org.bmcd.Error.FlashWrite` (writing or reading back the slot failed) |
//! | 130 | Ctrl-C (SIGINT) while waiting for a task: the waiting stopped, the task goes on (`wait::Waiting`); Ctrl-C ending `log follow` (its normal end, no error line) |
//! | 128+n | killed by signal n at the password prompt, after the terminal was restored (`auth::PromptSignals`) |
//!
//! A task that ends `Failed` exits with the code of its `Error` name, as if
//! the call had failed with it (e.g. `org.bmcd.Error.Timeout` exits 6).
//!
//! Every error is printed as one line on stderr,
//! `bmcctl: error: <message> (<D-Bus error name>)`; with `--json` stdout also
//! carries `{"error":{"name":…,"message":…,"exit_code":…}}`. Errors raised by
//! bmcctl itself are named `bmcctl.Error.*` in JSON and printed without a name.

use std::fmt;
use std::io::ErrorKind;
use std::time::Duration;

use bmcd_api::zbus;
use zbus::DBusError;

/// Process exit status; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    Failure = 1,
    Usage = 2,
    Denied = 3,
    NotFound = 4,
    Busy = 5,
    Timeout = 6,
    Cancelled = 7,
    Interrupted = 8,
    /// A firmware image was refused (signature, compatibility, content, size).
    ImageRefused = 9,
    /// Writing or reading back a firmware slot failed.
    FlashWrite = 10,
    /// Ctrl-C while waiting for a task (128 + SIGINT).
    WaitStopped = 130,
}

impl Exit {
    pub fn code(self) -> i32 {
        self as i32
    }
}

/// One choice of an unknown, ambiguous or missing command word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub name: String,
    pub about: String,
}

/// An error ready to be reported: a name (a D-Bus error name or
/// `bmcctl.Error.*`), one line of text and an exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError {
    pub name: String,
    pub message: String,
    pub exit: Exit,
    /// Choices to list under the error line (openUBMC-style prompt).
    pub choices: Vec<Choice>,
    /// Members merged into the `--json` error document beside `error`
    /// (a failed task's properties).
    pub json: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Names of the errors bmcctl raises itself.
pub mod names {
    pub const USAGE: &str = "bmcctl.Error.Usage";
    pub const CONFIRMATION_REQUIRED: &str = "bmcctl.Error.ConfirmationRequired";
    pub const ABORTED: &str = "bmcctl.Error.Aborted";
    pub const CONNECT: &str = "bmcctl.Error.Connect";
    pub const TIMEOUT: &str = "bmcctl.Error.Timeout";
    /// bmcd lost its bus name while bmcctl waited for a task.
    pub const DAEMON_STOPPED: &str = "bmcctl.Error.DaemonStopped";
    /// Ctrl-C while waiting: the waiting stopped, not the task.
    pub const WAIT_STOPPED: &str = "bmcctl.Error.WaitStopped";
    /// The task object went away while bmcctl waited for it.
    pub const TASK_GONE: &str = "bmcctl.Error.TaskGone";
    /// A task ended Failed without an error name.
    pub const TASK_FAILED: &str = "bmcctl.Error.TaskFailed";
    pub const UNKNOWN_OBJECT: &str = "org.freedesktop.DBus.Error.UnknownObject";
    pub const PROTOCOL: &str = "bmcctl.Error.Protocol";
    /// A local file (a firmware image) could not be opened or read.
    pub const FILE: &str = "bmcctl.Error.File";
    /// A password refused locally (too long, not UTF-8, NUL); never sent.
    pub const PASSWORD: &str = "bmcctl.Error.Password";
    /// The pager of `log list` failed.
    pub const PAGER: &str = "bmcctl.Error.Pager";
    pub const SERVICE_UNKNOWN: &str = "org.freedesktop.DBus.Error.ServiceUnknown";
    pub const NAME_HAS_NO_OWNER: &str = "org.freedesktop.DBus.Error.NameHasNoOwner";
}

impl CliError {
    pub fn new(name: &str, message: impl Into<String>, exit: Exit) -> Self {
        CliError {
            name: name.to_owned(),
            message: message.into(),
            exit,
            choices: Vec::new(),
            json: None,
        }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(names::USAGE, message, Exit::Usage)
    }

    /// Whether the name is worth showing to a human: names that came from
    /// the bus are, bmcctl's own are not.
    pub fn shows_name(&self) -> bool {
        !self.name.starts_with("bmcctl.")
            && self.name != names::SERVICE_UNKNOWN
            && self.name != names::NAME_HAS_NO_OWNER
    }

    /// The one human line (without the `bmcctl: error: ` prefix).
    pub fn line(&self) -> String {
        if self.shows_name() {
            format!("{} ({})", self.message, self.name)
        } else {
            self.message.clone()
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.line())
    }
}

impl CliError {
    /// One of bmcd's errors, named and coded from the contract's enum.
    pub fn daemon(e: bmcd_api::Error) -> CliError {
        CliError::new(e.name().as_str(), e.message(), exit_for_error(&e))
    }

    /// This error as the contract's enum, if it is one of bmcd's: what
    /// callers match on, never the name's spelling.
    pub fn as_daemon(&self) -> Option<bmcd_api::Error> {
        bmcd_api::Error::from_name(&self.name, self.message.clone())
    }
}

/// The exit code of one of bmcd's errors (the enum of the contract, so a
/// new variant is a compile error here until it has its code).
pub fn exit_for_error(e: &bmcd_api::Error) -> Exit {
    use bmcd_api::Error as E;
    match e {
        E::InvalidArgument(_) => Exit::Usage,
        E::PermissionDenied(_)
        | E::AuthenticationRequired(_)
        | E::AuthenticationFailed(_)
        | E::LockedOut(_) => Exit::Denied,
        E::NotFound(_) => Exit::NotFound,
        E::Busy(_) => Exit::Busy,
        E::Timeout(_) => Exit::Timeout,
        E::Cancelled(_) => Exit::Cancelled,
        E::Interrupted(_) => Exit::Interrupted,
        E::InvalidSignature(_) | E::Incompatible(_) | E::InvalidImage(_) | E::NoSpace(_) => {
            Exit::ImageRefused
        }
        E::FlashWrite(_) => Exit::FlashWrite,
        E::NotAllowed(_) | E::Unavailable(_) | E::Internal(_) | E::ZBus(_) => Exit::Failure,
    }
}

/// The exit code for an error name returned by the daemon (through
/// [`exit_for_error`]) or by the bus.
pub fn exit_for_name(name: &str) -> Exit {
    if let Some(e) = bmcd_api::Error::from_name(name, "") {
        return exit_for_error(&e);
    }
    match name {
        "org.freedesktop.DBus.Error.InvalidArgs" => Exit::Usage,
        "org.freedesktop.DBus.Error.AccessDenied"
        | "org.freedesktop.DBus.Error.AuthFailed"
        | "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired" => Exit::Denied,
        "org.freedesktop.DBus.Error.UnknownObject" => Exit::NotFound,
        "org.freedesktop.DBus.Error.Timeout"
        | "org.freedesktop.DBus.Error.TimedOut"
        | "org.freedesktop.DBus.Error.NoReply" => Exit::Timeout,
        _ => Exit::Failure,
    }
}

/// What an error message needs to know about the connection.
#[derive(Debug, Clone)]
pub struct ErrCtx {
    /// The bus as a human reads it (`the system bus`, `unix:path=/tmp/x`).
    pub bus: String,
    pub timeout: Duration,
}

/// Turn a named error into a [`CliError`], replacing the bus's text for the
/// cases a user needs to read differently.
pub fn from_named(name: &str, message: &str, cx: &ErrCtx) -> CliError {
    match name {
        names::SERVICE_UNKNOWN | names::NAME_HAS_NO_OWNER => CliError::new(
            name,
            format!("bmcd is not running on {}", cx.bus),
            Exit::Failure,
        ),
        // dbus-daemon's own refusal text ("Rejected send message, 2 matched
        // rules; type=…") tells an admin nothing useful.
        "org.freedesktop.DBus.Error.AccessDenied" => CliError::new(
            name,
            "permission denied by the D-Bus policy: changes need root or membership in the \
             bmc-operator or bmc-admin group (see `bmcctl whoami`)"
                .to_owned(),
            Exit::Denied,
        ),
        "org.freedesktop.DBus.Error.NoReply"
        | "org.freedesktop.DBus.Error.Timeout"
        | "org.freedesktop.DBus.Error.TimedOut" => CliError::new(
            name,
            format!("bmcd did not answer within {} s", cx.timeout.as_secs()),
            Exit::Timeout,
        ),
        _ => {
            let message = if message.is_empty() {
                "the call failed"
            } else {
                message
            };
            CliError::new(name, one_line(message), exit_for_name(name))
        }
    }
}

/// Map a zbus error (transport, protocol or an error reply).
pub fn from_zbus(e: &zbus::Error, cx: &ErrCtx) -> CliError {
    match e {
        zbus::Error::MethodError(name, desc, _) => {
            from_named(name.as_str(), desc.as_deref().unwrap_or(""), cx)
        }
        zbus::Error::FDO(f) => from_fdo(f, cx),
        zbus::Error::InputOutput(io) if io.kind() == ErrorKind::TimedOut => CliError::new(
            names::TIMEOUT,
            format!("bmcd did not answer within {} s", cx.timeout.as_secs()),
            Exit::Timeout,
        ),
        zbus::Error::InputOutput(io) => CliError::new(
            names::CONNECT,
            format!("D-Bus connection to {} failed: {io}", cx.bus),
            Exit::Failure,
        ),
        zbus::Error::Connection(io, _) => CliError::new(
            names::CONNECT,
            format!("cannot connect to {}: {io}", cx.bus),
            Exit::Failure,
        ),
        zbus::Error::Address(m) => {
            CliError::usage(format!("invalid D-Bus address '{}': {m}", cx.bus))
        }
        zbus::Error::Handshake(m) => CliError::new(
            names::CONNECT,
            format!("cannot authenticate to {}: {m}", cx.bus),
            Exit::Failure,
        ),
        other => CliError::new(names::PROTOCOL, one_line(&other.to_string()), Exit::Failure),
    }
}

/// Map an error of a standard interface proxy (ObjectManager, Properties).
pub fn from_fdo(e: &zbus::fdo::Error, cx: &ErrCtx) -> CliError {
    match e {
        zbus::fdo::Error::ZBus(z) => from_zbus(z, cx),
        other => from_named(other.name().as_str(), other.description().unwrap_or(""), cx),
    }
}

/// Map an error of a bmcd proxy call.
pub fn from_api(e: &bmcd_api::Error, cx: &ErrCtx) -> CliError {
    match e {
        bmcd_api::Error::ZBus(z) => from_zbus(z, cx),
        other => from_named(other.name().as_str(), &other.message(), cx),
    }
}

/// Keep messages to one line whatever the daemon sent.
fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for part in s.split(['\n', '\r']).filter(|p| !p.trim().is_empty()) {
        if !out.is_empty() {
            out.push_str("; ");
        }
        out.push_str(part.trim());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx() -> ErrCtx {
        ErrCtx {
            bus: "unix:path=/tmp/x".into(),
            timeout: Duration::from_secs(25),
        }
    }

    #[test]
    fn every_daemon_error_has_its_exit_code() {
        let want = [
            ("org.bmcd.Error.InvalidArgument", 2),
            ("org.bmcd.Error.NotFound", 4),
            ("org.bmcd.Error.PermissionDenied", 3),
            ("org.bmcd.Error.AuthenticationRequired", 3),
            ("org.bmcd.Error.AuthenticationFailed", 3),
            ("org.bmcd.Error.LockedOut", 3),
            ("org.bmcd.Error.Busy", 5),
            ("org.bmcd.Error.NotAllowed", 1),
            ("org.bmcd.Error.Unavailable", 1),
            ("org.bmcd.Error.Timeout", 6),
            ("org.bmcd.Error.Internal", 1),
            ("org.bmcd.Error.Cancelled", 7),
            ("org.bmcd.Error.Interrupted", 8),
            ("org.bmcd.Error.InvalidSignature", 9),
            ("org.bmcd.Error.Incompatible", 9),
            ("org.bmcd.Error.InvalidImage", 9),
            ("org.bmcd.Error.NoSpace", 9),
            ("org.bmcd.Error.FlashWrite", 10),
        ];
        assert_eq!(want.len(), bmcd_api::ERROR_NAMES.len());
        for (name, code) in want {
            assert!(bmcd_api::ERROR_NAMES.contains(&name), "{name}");
            assert_eq!(exit_for_name(name).code(), code, "{name}");
        }
        assert_eq!(exit_for_name("org.example.Whatever"), Exit::Failure);
        assert_eq!(
            exit_for_name("org.freedesktop.DBus.Error.AccessDenied"),
            Exit::Denied
        );
    }

    #[test]
    fn api_errors_map_by_variant() {
        let e = from_api(
            &bmcd_api::Error::Busy("a power cycle is under way".into()),
            &cx(),
        );
        assert_eq!(e.exit, Exit::Busy);
        assert_eq!(e.name, "org.bmcd.Error.Busy");
        assert_eq!(e.line(), "a power cycle is under way (org.bmcd.Error.Busy)");
    }

    #[test]
    fn absent_daemon_is_one_clear_line() {
        let f = zbus::fdo::Error::ServiceUnknown("The name is not activatable".into());
        let e = from_api(&bmcd_api::Error::ZBus(zbus::Error::FDO(Box::new(f))), &cx());
        assert_eq!(e.line(), "bmcd is not running on unix:path=/tmp/x");
        assert_eq!(e.exit, Exit::Failure);
        let e = from_named(names::NAME_HAS_NO_OWNER, "x", &cx());
        assert_eq!(e.line(), "bmcd is not running on unix:path=/tmp/x");
    }

    #[test]
    fn io_timeout_is_exit_6() {
        let io = std::io::Error::new(ErrorKind::TimedOut, "timed out");
        let e = from_zbus(&zbus::Error::from(io), &cx());
        assert_eq!(e.exit, Exit::Timeout);
        assert_eq!(e.line(), "bmcd did not answer within 25 s");
        let e = from_named(
            "org.freedesktop.DBus.Error.NoReply",
            "Did not receive",
            &cx(),
        );
        assert_eq!(e.exit, Exit::Timeout);
    }

    #[test]
    fn messages_stay_on_one_line() {
        let e = from_named("org.bmcd.Error.Internal", "first\nsecond\n", &cx());
        assert_eq!(e.line(), "first; second (org.bmcd.Error.Internal)");
        let e = from_named("org.bmcd.Error.Internal", "", &cx());
        assert_eq!(e.message, "the call failed");
    }
}
