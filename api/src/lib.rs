//! The D-Bus contract of bmcd.
//!
//! This crate is the single source of truth for the bus name, interface
//! names, object paths, wire types, errors and client proxies. The daemon
//! serves exactly what is declared here and `bmcctl` consumes it; outside
//! clients in Rust can depend on it too (it needs only zbus and serde).
//!
//! Stability: interfaces carry a version suffix (`Chassis1`). Within a
//! version members are only ever added; every mutating method takes an
//! `options: a{sv}` argument so it can grow without a new signature.
//! Unknown option keys are rejected with `InvalidArgument`.

pub mod types;

use std::collections::HashMap;

pub use types::{
    CoolingMode, FirmwareState, Health, LogSeverity, PowerOffMode, PowerState, RestorePolicy,
    Severity, TaskState, Transition, UnknownVariant,
};
pub use zbus;
use zbus::zvariant::{OwnedObjectPath, OwnedValue, Value};

/// Well-known bus name owned by the daemon.
pub const BUS_NAME: &str = "org.bmcd";
/// Root of the object tree; the ObjectManager lives here.
pub const ROOT_PATH: &str = "/org/bmcd";
/// The one chassis.
pub const CHASSIS_PATH: &str = "/org/bmcd/chassis0";
/// The cooling zone (`Cooling1`); fans are children of it.
pub const FANS_PATH: &str = "/org/bmcd/fans";
/// Simulation controls; present only when the daemon runs the `sim` platform.
pub const SIM_PATH: &str = "/org/bmcd/sim";
/// Parent of the `Task1` objects, `/org/bmcd/tasks/<id>`.
pub const TASKS_PATH: &str = "/org/bmcd/tasks";
/// The firmware manager (`FirmwareManager1`); one `Firmware1` child per
/// slot, `/org/bmcd/firmware/<slot>`.
pub const FIRMWARE_PATH: &str = "/org/bmcd/firmware";
/// Parent of the logs (`Log1` objects at `log_path(name)`).
pub const LOGS_PATH: &str = "/org/bmcd/logs";
/// The event log: what happened (power, cooling, firmware, daemon).
pub const EVENT_LOG_PATH: &str = "/org/bmcd/logs/event";
/// The audit log: who did what (every mutating call and every
/// authentication attempt). It is never cleared over D-Bus; it rotates.
pub const AUDIT_LOG_PATH: &str = "/org/bmcd/logs/audit";
/// The log names, as in their paths and in `bmcctl log list NAME`.
pub const LOG_NAMES: [&str; 2] = ["event", "audit"];
/// The dump manager (`Dump1`); dumps are children (`dump_path(id)`).
pub const DUMPS_PATH: &str = "/org/bmcd/dumps";

pub const CHASSIS_IFACE: &str = "org.bmcd.Chassis1";
pub const FAN_IFACE: &str = "org.bmcd.Fan1";
pub const COOLING_IFACE: &str = "org.bmcd.Cooling1";
pub const SIMULATION_IFACE: &str = "org.bmcd.Simulation1";
/// Re-authentication and identity; served at `ROOT_PATH`.
pub const SESSION_IFACE: &str = "org.bmcd.Session1";
/// Long-running work; one object per task under `TASKS_PATH`.
pub const TASK_IFACE: &str = "org.bmcd.Task1";
/// One firmware slot; one object per slot under `FIRMWARE_PATH`.
pub const FIRMWARE_IFACE: &str = "org.bmcd.Firmware1";
/// Updates, boot selection and rollback; served at `FIRMWARE_PATH`.
pub const FIRMWARE_MANAGER_IFACE: &str = "org.bmcd.FirmwareManager1";
/// One log (event or audit): cursor-paged entries.
pub const LOG_IFACE: &str = "org.bmcd.Log1";
/// The dump manager at `DUMPS_PATH`: makes diagnostic dumps as tasks.
pub const DUMP_MANAGER_IFACE: &str = "org.bmcd.Dump1";
/// One finished dump at `dump_path(id)`.
pub const DUMP_IFACE: &str = "org.bmcd.DumpEntry1";
/// Prefix of every error name the daemon returns.
pub const ERROR_PREFIX: &str = "org.bmcd.Error";

/// Longest fan or sensor name the daemon accepts (config and bus input).
pub const MAX_NAME_LEN: usize = 64;

/// The `options: a{sv}` argument of mutating methods.
pub type Options<'a> = HashMap<&'a str, Value<'a>>;

/// Object path of the fan called `name`.
///
/// Names are limited by the daemon's config to `[A-Za-z0-9_-]`; anything
/// outside `[A-Za-z0-9_]` is escaped as `_xx` (two lowercase hex digits, as
/// systemd's `bus_path_encode` does), so every name maps to a valid, distinct
/// path element.
pub fn fan_path(name: &str) -> String {
    let mut p = String::with_capacity(FANS_PATH.len() + 1 + name.len());
    p.push_str(FANS_PATH);
    p.push('/');
    if name.is_empty() {
        p.push('_');
    }
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() {
            p.push(b as char);
        } else {
            p.push('_');
            p.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
            p.push(char::from_digit(u32::from(b & 0xf), 16).unwrap_or('0'));
        }
    }
    p
}

/// The BMC's own firmware slots (A/B). Other components (a host BIOS)
/// get their own slot names; a slot name is `[a-z0-9_]`, 1–32 characters.
pub const BMC_SLOTS: [&str; 2] = ["bmc_a", "bmc_b"];
/// The `component` of BMC images and slots (the image manifest's word).
pub const BMC_COMPONENT: &str = "bmc";

/// Whether `name` is a well-formed slot name (`[a-z0-9_]`, 1–32
/// characters), which is also a valid object path element.
pub fn is_slot_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Object path of firmware slot `slot`, or `None` for a malformed name.
pub fn firmware_path(slot: &str) -> Option<String> {
    is_slot_name(slot).then(|| format!("{FIRMWARE_PATH}/{slot}"))
}

/// Option keys of `FirmwareManager1.StartUpdate`.
pub mod update_options {
    /// `b`: after a good write and read-back, make the new slot `BootNext`.
    pub const ACTIVATE: &str = "activate";
    /// `b`: allow a version lower than the running one (a downgrade).
    /// Installing the same version again is always allowed.
    pub const FORCE_VERSION: &str = "force-version";
    pub const ALL: &[&str] = &[ACTIVATE, FORCE_VERSION];
}

/// Option keys of `FirmwareManager1.Inspect`, and the keys of its answer.
pub mod inspect {
    /// Option `b`: also read every payload and check its digest (reads the
    /// whole image; default false: header, manifest and signature only).
    pub const OPT_PAYLOAD: &str = "payload";
    pub const OPTIONS: &[&str] = &[OPT_PAYLOAD];

    /// `s`: `trusted` (signed by a key in the daemon's key directory),
    /// `untrusted` (well-formed, but the key id is unknown), `invalid`
    /// (bad signature, or not an image at all).
    pub const SIGNATURE: &str = "signature";
    /// `s`: why the image is not `trusted` or not installable ("" if it is).
    pub const REASON: &str = "reason";
    /// `s`: the signer's key id, 16 hex digits.
    pub const KEY_ID: &str = "key-id";
    /// `s`, `s`, `s`: from the manifest (absent if it could not be read).
    pub const COMPONENT: &str = "component";
    pub const VERSION: &str = "version";
    pub const BUILD_DATE: &str = "build-date";
    /// `as`: machine names the image is built for.
    pub const COMPATIBLE: &str = "compatible";
    /// `b`: this machine is among them.
    pub const COMPATIBLE_HERE: &str = "compatible-here";
    /// `a(sts)`: each payload's name, size and SHA-256 (hex).
    pub const PAYLOADS: &str = "payloads";
    /// `t`: total payload bytes.
    pub const SIZE: &str = "size";
    /// `s`: against the running version: `upgrade`, `same` or `downgrade`.
    pub const VERSION_RULE: &str = "version-rule";
    /// `b`: `StartUpdate` would accept it with no options (trusted,
    /// compatible, not a downgrade, fits the slot).
    pub const INSTALLABLE: &str = "installable";
    /// `b`: present with the `payload` option: every payload digest matched.
    pub const PAYLOAD_OK: &str = "payload-ok";
}

/// Keys of a completed `FirmwareUpdate` task's `Result`.
pub mod update_result {
    /// `s`: the slot written.
    pub const SLOT: &str = "slot";
    /// `s`: the version installed.
    pub const VERSION: &str = "version";
    /// `s`: SHA-256 (hex) read back from the slot.
    pub const DIGEST: &str = "digest";
    /// `b`: the slot is now `BootNext`.
    pub const ACTIVATED: &str = "activated";
}

/// Object path of the log called `name` (`event` or `audit`), or `None`.
pub fn log_path(name: &str) -> Option<&'static str> {
    match name {
        "event" => Some(EVENT_LOG_PATH),
        "audit" => Some(AUDIT_LOG_PATH),
        _ => None,
    }
}

/// Object path of dump `id` (ids start at 1 and are never reused).
pub fn dump_path(id: u64) -> String {
    format!("{DUMPS_PATH}/{id}")
}

/// `Log1.GetEntries`: cursors, the page cap and the option keys.
///
/// A cursor is an entry `Id` (a position, never an offset): a page read
/// with it is the same whatever is appended meanwhile. Ids start at 1,
/// grow by one per entry and are never reused, not even after `Clear`.
/// With `direction` `newer` (the default) a page holds the entries with
/// `Id >= cursor`, oldest first, and `next_cursor` is the last one's
/// `Id + 1`; with `older`, `Id <= cursor`, newest first, and
/// `next_cursor` is the last one's `Id - 1` (0: nothing older is left).
/// So `GetEntries(CURSOR_OLDEST, n, {})` starts at the oldest entry and
/// `GetEntries(CURSOR_NEWEST, n, {direction: older})` at the newest.
/// A cursor older than the oldest kept entry starts at the oldest one and
/// `info` carries `dropped: true`.
pub mod log_query {
    /// Start at the oldest kept entry (direction `newer`).
    pub const CURSOR_OLDEST: u64 = 0;
    /// Start at the newest entry (direction `older`).
    pub const CURSOR_NEWEST: u64 = u64::MAX;
    /// The most entries one page returns; a larger `count` is cut to it
    /// (`count` 0 is `InvalidArgument`).
    pub const MAX_PAGE: u32 = 1000;
    /// With filters, one call examines at most this many entries; it then
    /// returns what it found (maybe fewer than `count`, maybe none) with a
    /// `next_cursor` to go on from and `info` `end: false`. This bounds the
    /// time of one call on a big log.
    pub const MAX_SCAN: u32 = 20_000;

    /// `s`: `newer` (default) or `older`.
    pub const DIRECTION: &str = "direction";
    pub const NEWER: &str = "newer";
    pub const OLDER: &str = "older";
    /// `t`: only entries with `Time >= since` (µs since the epoch).
    pub const SINCE: &str = "since";
    /// `t`: only entries with `Time <= until` (µs since the epoch).
    pub const UNTIL: &str = "until";
    /// `s`: a `LogSeverity` word; only entries at least this severe.
    pub const MIN_SEVERITY: &str = "min-severity";
    /// `s`: only entries whose `Source` is exactly this.
    pub const SOURCE: &str = "source";
    /// `s`: only entries whose `MessageId` is exactly this, or, when it
    /// ends with `.` (`Chassis.`), starts with it.
    pub const MESSAGE_ID: &str = "message-id";
    pub const OPTIONS: &[&str] = &[DIRECTION, SINCE, UNTIL, MIN_SEVERITY, SOURCE, MESSAGE_ID];

    /// `info` keys of the answer.
    pub mod info {
        /// `t`: the log's `FirstId`, `LastId` and `Generation` when the
        /// page was read.
        pub const FIRST_ID: &str = "first-id";
        pub const LAST_ID: &str = "last-id";
        pub const GENERATION: &str = "generation";
        /// `b`: the cursor named entries that are gone (rotated out or
        /// cleared); the page starts at the oldest kept one.
        pub const DROPPED: &str = "dropped";
        /// `b`: nothing further in this direction now (`newer`: the page
        /// reached `LastId`; `older`: it reached `FirstId`).
        pub const END: &str = "end";
        /// `u`: how many entries the call examined (filters).
        pub const SCANNED: &str = "scanned";
    }
}

/// The keys of one entry in `GetEntries` (`a{sv}`).
pub mod entry_keys {
    /// `t`: the entry's sequence number; its cursor.
    pub const ID: &str = "Id";
    /// `t`: microseconds since the Unix epoch.
    pub const TIME: &str = "Time";
    /// `s`: a `LogSeverity` word.
    pub const SEVERITY: &str = "Severity";
    /// `s`: what produced it: `chassis`, `cooling`, `firmware`, `daemon`,
    /// `log`, `dump`, `sim`; in the audit log `bus` or `auth`.
    pub const SOURCE: &str = "Source";
    /// `s`: a stable dotted id (`message_ids`).
    pub const MESSAGE_ID: &str = "MessageId";
    /// `s`: for people.
    pub const MESSAGE: &str = "Message";
    /// `a{ss}`: structured details; the keys depend on `MessageId`.
    pub const DATA: &str = "Data";
}

/// Every `MessageId` bmcd writes, with its severity and `Data` keys (the
/// README table is generated from the same list by a test).
pub mod message_ids {
    /// (id, severity word, meaning, data keys)
    pub const ALL: &[(&str, &str, &str, &str)] = &[
        (
            "Daemon.Started",
            "Notice",
            "bmcd started",
            "version, platform",
        ),
        ("Daemon.Stopped", "Notice", "bmcd stopped cleanly", "signal"),
        (
            "Daemon.ConfigError",
            "Error",
            "a configuration or hardware part could not be used",
            "part, error",
        ),
        (
            "Chassis.PowerStateChanged",
            "Notice",
            "host power changed",
            "from, to",
        ),
        (
            "Chassis.TransitionCompleted",
            "Informational",
            "a power transition task completed",
            "transition, task",
        ),
        (
            "Chassis.TransitionFailed",
            "Error",
            "a power transition task failed, was cancelled or interrupted",
            "transition, task, state, error",
        ),
        (
            "Chassis.RestorePolicyApplied",
            "Notice",
            "the restore policy acted at start (action PowerOn, LeaveOff or None)",
            "policy, action, task, error",
        ),
        (
            "Cooling.ModeChanged",
            "Notice",
            "cooling mode changed (Auto, Manual, Failsafe)",
            "from, to",
        ),
        (
            "Cooling.FailsafeEntered",
            "Critical",
            "fans forced to the failsafe level",
            "reason, level",
        ),
        ("Cooling.FailsafeLeft", "Notice", "failsafe ended", ""),
        (
            "Cooling.FanLost",
            "Error",
            "a fan stopped or cannot be read",
            "fan",
        ),
        ("Cooling.FanRestored", "Notice", "a fan is back", "fan"),
        (
            "Cooling.SensorLost",
            "Error",
            "a temperature sensor cannot be read",
            "sensor",
        ),
        (
            "Cooling.SensorRestored",
            "Notice",
            "a temperature sensor is back",
            "sensor",
        ),
        (
            "Cooling.CriticalTemperature",
            "Critical",
            "a sensor reached its critical temperature: all fans at 100 %",
            "sensor, celsius, limit",
        ),
        (
            "Cooling.CriticalCleared",
            "Notice",
            "a sensor is below its critical temperature again",
            "sensor, celsius, limit",
        ),
        (
            "Firmware.UpdateCompleted",
            "Notice",
            "a firmware update wrote and verified a slot",
            "slot, version, task, activated",
        ),
        (
            "Firmware.UpdateFailed",
            "Error",
            "a firmware update failed, was cancelled or interrupted",
            "slot, version, task, state, error",
        ),
        (
            "Firmware.Activated",
            "Notice",
            "BootNext changed (activate or rollback)",
            "slot, from, by",
        ),
        (
            "Log.Cleared",
            "Notice",
            "the event log was cleared (first entry after a clear)",
            "user, uid, generation, removed",
        ),
        (
            "Log.Corrupt",
            "Error",
            "a damaged log segment was set aside",
            "log, file, reason",
        ),
        (
            "Dump.Created",
            "Informational",
            "a diagnostic dump was made",
            "dump, size, task",
        ),
        (
            "Sim.Event",
            "Informational",
            "a synthetic event from Simulation1.AppendEvents",
            "n",
        ),
        (
            "Audit.Call",
            "Notice",
            "a mutating bus call, allowed (Notice) or refused (Warning)",
            "uid, user, role, interface, method, args, result, sender",
        ),
        (
            "Audit.Authentication",
            "Notice",
            "an authentication attempt, passed (Notice) or failed (Warning)",
            "uid, user, result",
        ),
        (
            "Audit.LogCleared",
            "Notice",
            "the event log was cleared",
            "uid, user, generation, removed",
        ),
    ];
}

/// `Dump1` and `DumpEntry1`: the `Result` keys of a finished `Dump` task.
pub mod dump_result {
    /// `o`: the `DumpEntry1` object.
    pub const DUMP: &str = "dump";
    /// `t`: bytes of the `.tar.gz`.
    pub const SIZE: &str = "size";
    /// `b`: the size cap was reached; the dump lacks its last parts.
    pub const TRUNCATED: &str = "truncated";
}

/// How many of a task's recent messages `Task1.Messages` keeps.
pub const MAX_TASK_MESSAGES: usize = 8;

/// Object path of task `id` (ids start at 1 and are never reused).
pub fn task_path(id: u64) -> String {
    format!("{TASKS_PATH}/{id}")
}

/// The id in a task's object path, or `None` if `path` is not one.
pub fn task_id(path: &str) -> Option<u64> {
    let id = path.strip_prefix(TASKS_PATH)?.strip_prefix('/')?;
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) || id.starts_with('0') {
        return None;
    }
    id.parse().ok()
}

/// Every error the daemon returns, as named D-Bus errors
/// (`org.bmcd.Error.<Variant>`); the text is for humans.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.bmcd.Error")]
pub enum Error {
    /// A transport or protocol error from zbus (never sent by the daemon).
    #[zbus(error)]
    ZBus(zbus::Error),
    /// An argument is out of range, malformed, or an unknown option was given.
    InvalidArgument(String),
    /// The named object (fan, sensor, …) does not exist.
    NotFound(String),
    /// The caller's role does not allow this call.
    PermissionDenied(String),
    /// The call is sensitive and the caller has not re-authenticated.
    AuthenticationRequired(String),
    /// The password was wrong, or the account may not log in.
    AuthenticationFailed(String),
    /// Too many failed authentications: the caller is locked out for a while.
    LockedOut(String),
    /// Another operation is under way; retry when it has finished.
    Busy(String),
    /// The request is impossible in the current state (e.g. reset while off).
    NotAllowed(String),
    /// The hardware or a service the daemon needs is not available.
    Unavailable(String),
    /// The hardware did not reach the requested state in time.
    Timeout(String),
    /// A bug or an unexpected failure inside the daemon.
    Internal(String),
    /// The work was cancelled (a task's `Error` after `Cancel`).
    Cancelled(String),
    /// bmcd stopped or died while the work ran (a task's `Error` after a
    /// restart).
    Interrupted(String),
    /// A firmware image's signature is bad, or no trusted key signed it.
    InvalidSignature(String),
    /// A firmware image is for another machine or component, or a lower
    /// version without `force-version`.
    Incompatible(String),
    /// Not a firmware image, or its content does not match its signed
    /// manifest (a payload digest, size or the read-back).
    InvalidImage(String),
    /// The image does not fit the target slot.
    NoSpace(String),
    /// Writing or reading back the target slot failed.
    FlashWrite(String),
}

impl Error {
    /// The error called `name` (`org.bmcd.Error.<Variant>`) with `text`, or
    /// `None` for any other name: how a client turns a name it was given
    /// as a string (a task's `Error` property) into the enum to match.
    pub fn from_name(name: &str, text: impl Into<String>) -> Option<Error> {
        let variant = name.strip_prefix(ERROR_PREFIX)?.strip_prefix('.')?;
        let t = text.into();
        Some(match variant {
            "InvalidArgument" => Error::InvalidArgument(t),
            "NotFound" => Error::NotFound(t),
            "PermissionDenied" => Error::PermissionDenied(t),
            "AuthenticationRequired" => Error::AuthenticationRequired(t),
            "AuthenticationFailed" => Error::AuthenticationFailed(t),
            "LockedOut" => Error::LockedOut(t),
            "Busy" => Error::Busy(t),
            "NotAllowed" => Error::NotAllowed(t),
            "Unavailable" => Error::Unavailable(t),
            "Timeout" => Error::Timeout(t),
            "Internal" => Error::Internal(t),
            "Cancelled" => Error::Cancelled(t),
            "Interrupted" => Error::Interrupted(t),
            "InvalidSignature" => Error::InvalidSignature(t),
            "Incompatible" => Error::Incompatible(t),
            "InvalidImage" => Error::InvalidImage(t),
            "NoSpace" => Error::NoSpace(t),
            "FlashWrite" => Error::FlashWrite(t),
            _ => return None,
        })
    }

    /// The human text of the error without its name.
    pub fn message(&self) -> String {
        match self {
            Error::ZBus(e) => e.to_string(),
            Error::InvalidArgument(m)
            | Error::NotFound(m)
            | Error::PermissionDenied(m)
            | Error::AuthenticationRequired(m)
            | Error::AuthenticationFailed(m)
            | Error::LockedOut(m)
            | Error::Busy(m)
            | Error::NotAllowed(m)
            | Error::Unavailable(m)
            | Error::Timeout(m)
            | Error::Internal(m)
            | Error::Cancelled(m)
            | Error::Interrupted(m)
            | Error::InvalidSignature(m)
            | Error::Incompatible(m)
            | Error::InvalidImage(m)
            | Error::NoSpace(m)
            | Error::FlashWrite(m) => m.clone(),
        }
    }
}

/// Every error name the daemon can return, for documentation and tests.
pub const ERROR_NAMES: &[&str] = &[
    "org.bmcd.Error.InvalidArgument",
    "org.bmcd.Error.NotFound",
    "org.bmcd.Error.PermissionDenied",
    "org.bmcd.Error.AuthenticationRequired",
    "org.bmcd.Error.AuthenticationFailed",
    "org.bmcd.Error.LockedOut",
    "org.bmcd.Error.Busy",
    "org.bmcd.Error.NotAllowed",
    "org.bmcd.Error.Unavailable",
    "org.bmcd.Error.Timeout",
    "org.bmcd.Error.Internal",
    "org.bmcd.Error.Cancelled",
    "org.bmcd.Error.Interrupted",
    "org.bmcd.Error.InvalidSignature",
    "org.bmcd.Error.Incompatible",
    "org.bmcd.Error.InvalidImage",
    "org.bmcd.Error.NoSpace",
    "org.bmcd.Error.FlashWrite",
];

pub type Result<T> = std::result::Result<T, Error>;

/// `org.bmcd.Chassis1`: host power, identify LED and power restore policy.
///
/// Transitions are tasks: `PowerOn`, `PowerOff`, `PowerCycle` and `Reset`
/// return once the transition has been accepted, with the path of the
/// `Task1` object that carries it out; watch it (or `PendingTransition`,
/// which returns to `None`, and `PowerState`) to learn how it ended. A
/// request that needs no work (on while on) returns a task that is already
/// `Completed`. A transition requested while another is pending fails with
/// `Busy`.
#[zbus::proxy(
    interface = "org.bmcd.Chassis1",
    default_service = "org.bmcd",
    default_path = "/org/bmcd/chassis0",
    gen_blocking = true
)]
pub trait Chassis {
    /// Power the host on. No-op if it is already on.
    fn power_on(&self, options: Options<'_>) -> Result<OwnedObjectPath>;
    /// Power the host off. `mode` is a `PowerOffMode`; `timeout` (seconds)
    /// bounds the graceful phase before the forced fallback, 0 = the
    /// configured default. No-op if the host is already off.
    fn power_off(
        &self,
        mode: PowerOffMode,
        timeout: u32,
        options: Options<'_>,
    ) -> Result<OwnedObjectPath>;
    /// Forced off, then on. `NotAllowed` while off.
    fn power_cycle(&self, options: Options<'_>) -> Result<OwnedObjectPath>;
    /// Pulse the reset line. `NotAllowed` while off.
    fn reset(&self, options: Options<'_>) -> Result<OwnedObjectPath>;
    /// Identify LED on (for `seconds`, 0 = until turned off) or off.
    fn set_identify(&self, on: bool, seconds: u32, options: Options<'_>) -> Result<()>;
    /// Set and persist the power restore policy.
    fn set_restore_policy(&self, policy: RestorePolicy, options: Options<'_>) -> Result<()>;

    #[zbus(property)]
    fn power_state(&self) -> zbus::Result<PowerState>;
    #[zbus(property)]
    fn pending_transition(&self) -> zbus::Result<Transition>;
    /// Milliseconds since the Unix epoch of the last `PowerState` change.
    #[zbus(property)]
    fn last_state_change_time(&self) -> zbus::Result<u64>;
    #[zbus(property)]
    fn restore_policy(&self) -> zbus::Result<RestorePolicy>;
    #[zbus(property)]
    fn identify_active(&self) -> zbus::Result<bool>;
    /// Milliseconds since the Unix epoch when the identify LED turns itself
    /// off; 0 when it is off or lit without limit.
    #[zbus(property)]
    fn identify_expires(&self) -> zbus::Result<u64>;
}

/// `org.bmcd.Fan1`: one object per fan at `fan_path(name)`.
#[zbus::proxy(
    interface = "org.bmcd.Fan1",
    default_service = "org.bmcd",
    gen_blocking = true
)]
pub trait Fan {
    #[zbus(property)]
    fn name(&self) -> zbus::Result<String>;
    /// Measured speed; 0 when stopped or unreadable.
    #[zbus(property)]
    fn rpm(&self) -> zbus::Result<u32>;
    /// Duty cycle last written, in percent (0–100).
    #[zbus(property)]
    fn pwm(&self) -> zbus::Result<u8>;
    #[zbus(property)]
    fn present(&self) -> zbus::Result<bool>;
    #[zbus(property)]
    fn health(&self) -> zbus::Result<Health>;
}

/// `org.bmcd.Cooling1` at `/org/bmcd/fans`: the fan control zone.
#[zbus::proxy(
    interface = "org.bmcd.Cooling1",
    default_service = "org.bmcd",
    default_path = "/org/bmcd/fans",
    gen_blocking = true
)]
pub trait Cooling {
    /// Manual override: `level` percent (0–100) on `fans` (empty = every
    /// fan; the others stay automatic) for `timeout` seconds (0 = no expiry),
    /// after which the zone returns to Auto by itself.
    fn set_manual(
        &self,
        level: u8,
        fans: &[&str],
        timeout: u32,
        options: Options<'_>,
    ) -> Result<()>;
    /// End a manual override now.
    fn set_auto(&self, options: Options<'_>) -> Result<()>;

    /// An event worth an operator's attention (fan failed, sensor lost,
    /// failsafe entered or left, override expired).
    #[zbus(signal)]
    fn event(&self, severity: Severity, source: &str, message: &str) -> zbus::Result<()>;

    #[zbus(property)]
    fn mode(&self) -> zbus::Result<CoolingMode>;
    /// Level of the manual override in percent; 0 outside Manual.
    #[zbus(property)]
    fn manual_level(&self) -> zbus::Result<u8>;
    /// Fans under the manual override (empty outside Manual).
    #[zbus(property)]
    fn manual_fans(&self) -> zbus::Result<Vec<String>>;
    /// Milliseconds since the Unix epoch when the override expires; 0 = never
    /// or not in Manual.
    #[zbus(property)]
    fn manual_expires(&self) -> zbus::Result<u64>;
    /// Level the curve asks for now, in percent.
    #[zbus(property)]
    fn auto_level(&self) -> zbus::Result<u8>;
    /// Level every fan is driven at in Failsafe, in percent.
    #[zbus(property)]
    fn failsafe_level(&self) -> zbus::Result<u8>;
    /// Why the zone is in Failsafe; empty otherwise.
    #[zbus(property)]
    fn failsafe_reason(&self) -> zbus::Result<String>;
    /// Latest reading of each temperature sensor in °C (NaN if unreadable).
    #[zbus(property)]
    fn temperatures(&self) -> zbus::Result<HashMap<String, f64>>;
}

/// `org.bmcd.Simulation1` at `/org/bmcd/sim`: knobs of the simulated
/// platform, for tests and demos. Absent on real hardware.
#[zbus::proxy(
    interface = "org.bmcd.Simulation1",
    default_service = "org.bmcd",
    default_path = "/org/bmcd/sim",
    gen_blocking = true
)]
pub trait Simulation {
    /// Room temperature in °C (−20…60).
    fn set_ambient(&self, celsius: f64, options: Options<'_>) -> Result<()>;
    /// Make a fan's rotor stall (`failed`) or spin again.
    fn set_fan_fault(&self, fan: &str, failed: bool, options: Options<'_>) -> Result<()>;
    /// Make a temperature sensor unreadable (`lost`) or readable again.
    fn set_sensor_fault(&self, sensor: &str, lost: bool, options: Options<'_>) -> Result<()>;
    /// Whether the simulated host OS honours a graceful shutdown request.
    fn set_host_responsive(&self, responsive: bool, options: Options<'_>) -> Result<()>;
    /// Append `count` (1–100000) synthetic `Sim.Event` entries to the
    /// event log, as fast as the store takes them (tests and benchmarks).
    /// Returns the first and last new `Id`.
    fn append_events(&self, count: u32, options: Options<'_>) -> Result<(u64, u64)>;

    #[zbus(property)]
    fn ambient(&self) -> zbus::Result<f64>;
    #[zbus(property)]
    fn host_responsive(&self) -> zbus::Result<bool>;
}

/// `org.bmcd.Session1` at `/org/bmcd`: who the caller is, and
/// re-authentication for sensitive calls.
///
/// Sensitive methods (see the README's policy table) fail with
/// `AuthenticationRequired` until the calling connection has authenticated.
/// A grant belongs to the connection that authenticated: by default it is
/// consumed by the next sensitive call, or it lasts for the daemon's
/// configured number of seconds; it ends when the connection closes.
#[zbus::proxy(
    interface = "org.bmcd.Session1",
    default_service = "org.bmcd",
    default_path = "/org/bmcd",
    gen_blocking = true
)]
pub trait Session {
    /// Check `password` for the caller's own user (found from its uid) with
    /// PAM. Errors: `AuthenticationFailed` (after a delay), `LockedOut`
    /// (too many failures; the text says for how long), `InvalidArgument`
    /// (password too long). Clients should wipe the password afterwards.
    fn authenticate(&self, password: &str, options: Options<'_>) -> Result<()>;
    /// The caller's uid, user name ("" if it has none) and role
    /// (`Administrator`, `Operator` or `ReadOnly`).
    #[zbus(name = "WhoAmI")]
    fn who_am_i(&self) -> Result<(u32, String, String)>;
}

/// `org.bmcd.Task1` at `task_path(id)`: one piece of long-running work
/// (a power transition, a firmware update, a dump).
///
/// Every change emits `PropertiesChanged` (progress at most about ten
/// times a second), so clients watch a task without polling. A finished
/// task stays for the daemon's configured time and count (default 24 h or
/// the last 32), then its object is removed (`InterfacesRemoved`). A task
/// that was running when bmcd stopped or died comes back `Interrupted`.
#[zbus::proxy(
    interface = "org.bmcd.Task1",
    default_service = "org.bmcd",
    gen_blocking = true
)]
pub trait Task {
    /// Ask the work to stop. Allowed to the task's owner and to
    /// Administrators, only while `Cancellable`; the task goes
    /// `Cancelling`, then `Cancelled` at the work's next safe point.
    fn cancel(&self, options: Options<'_>) -> Result<()>;

    /// The task's number, as in its path.
    #[zbus(property)]
    fn id(&self) -> zbus::Result<u64>;
    /// What the task does, a stable word such as `PowerOn` or `FirmwareUpdate`.
    #[zbus(property)]
    fn kind(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn state(&self) -> zbus::Result<TaskState>;
    /// 0–100; never goes down.
    #[zbus(property)]
    fn progress(&self) -> zbus::Result<u8>;
    /// The current step, a short word such as `Graceful` or `Write`.
    #[zbus(property)]
    fn phase(&self) -> zbus::Result<String>;
    /// The latest human-readable line about the work.
    #[zbus(property)]
    fn message(&self) -> zbus::Result<String>;
    /// The last few messages (at most `MAX_TASK_MESSAGES`), oldest first.
    #[zbus(property)]
    fn messages(&self) -> zbus::Result<Vec<String>>;
    /// Milliseconds since the Unix epoch; the task was accepted.
    #[zbus(property)]
    fn start_time(&self) -> zbus::Result<u64>;
    /// Milliseconds since the Unix epoch the task finished; 0 while it runs.
    #[zbus(property)]
    fn end_time(&self) -> zbus::Result<u64>;
    /// Milliseconds since the Unix epoch of the last sign of life of the
    /// work, a heartbeat during long steps.
    #[zbus(property)]
    fn last_progress_time(&self) -> zbus::Result<u64>;
    #[zbus(property)]
    fn cancellable(&self) -> zbus::Result<bool>;
    /// The uid of the caller that started it.
    #[zbus(property)]
    fn owner_uid(&self) -> zbus::Result<u32>;
    /// Why it failed or was interrupted: an error name
    /// (`org.bmcd.Error.*`) and a text; two empty strings otherwise.
    #[zbus(property)]
    fn error(&self) -> zbus::Result<(String, String)>;
    /// What a completed task produced; its keys depend on `Kind`.
    #[zbus(property)]
    fn result(&self) -> zbus::Result<HashMap<String, OwnedValue>>;
}

/// `org.bmcd.Firmware1` at `firmware_path(slot)`: one firmware slot.
///
/// Every property changes only through bmcd (an update, activation,
/// rollback, or the start-up that finds an interrupted write), and every
/// change emits `PropertiesChanged`.
#[zbus::proxy(
    interface = "org.bmcd.Firmware1",
    default_service = "org.bmcd",
    gen_blocking = true
)]
pub trait Firmware {
    /// What the slot holds firmware for: `bmc` for the BMC's own slots.
    #[zbus(property)]
    fn component(&self) -> zbus::Result<String>;
    /// The slot's name, as in its path (`bmc_a`).
    #[zbus(property)]
    fn slot(&self) -> zbus::Result<String>;
    /// The installed version; "" when `Empty` or unknown.
    #[zbus(property)]
    fn version(&self) -> zbus::Result<String>;
    /// The image's build date as its manifest gives it; "" if unknown.
    #[zbus(property)]
    fn build_date(&self) -> zbus::Result<String>;
    /// SHA-256 (64 hex digits) of the installed payload as read back from
    /// the slot; "" when not known.
    #[zbus(property)]
    fn digest(&self) -> zbus::Result<String>;
    /// Bytes of the installed payload; 0 when `Empty`.
    #[zbus(property)]
    fn size(&self) -> zbus::Result<u64>;
    /// Bytes the slot can hold.
    #[zbus(property)]
    fn capacity(&self) -> zbus::Result<u64>;
    /// Milliseconds since the Unix epoch the payload was installed; 0 if
    /// unknown (the image the BMC was delivered with).
    #[zbus(property)]
    fn install_time(&self) -> zbus::Result<u64>;
    #[zbus(property)]
    fn state(&self) -> zbus::Result<FirmwareState>;
}

/// `org.bmcd.FirmwareManager1` at `FIRMWARE_PATH`: signed A/B updates of
/// the BMC's firmware, boot selection and rollback.
///
/// Images are passed as a file descriptor open for reading (bmcd never
/// opens a caller's path). An image must be signed by a key in the
/// daemon's key directory and list this machine; it is verified before a
/// byte is written, streamed into the slot that is not running, read back
/// and checked again. The running slot is never opened for writing.
#[zbus::proxy(
    interface = "org.bmcd.FirmwareManager1",
    default_service = "org.bmcd",
    default_path = "/org/bmcd/firmware",
    gen_blocking = true
)]
pub trait FirmwareManager {
    /// Install `image` into the slot that is not running, as a
    /// `FirmwareUpdate` task (phases `Verify`, `Write`, `ReadBack`; it can be
    /// cancelled until the slot is marked `Staged`). Refusals before the
    /// task starts: `InvalidSignature`, `Incompatible`, `InvalidImage`,
    /// `NoSpace`, `Busy` (an update is running). Options: see
    /// [`update_options`].
    fn start_update(
        &self,
        image: zbus::zvariant::Fd<'_>,
        options: Options<'_>,
    ) -> Result<OwnedObjectPath>;
    /// Boot `slot` next. It must hold a good image (`Active`, `Backup` or
    /// `Staged`); `NotAllowed` otherwise.
    fn activate(&self, slot: &str, options: Options<'_>) -> Result<()>;
    /// Boot the other BMC slot next (the `Backup`, or a `Staged` one);
    /// `NotAllowed` when it holds no good image. If `BootNext` already
    /// names another slot than the running one, it goes back to the
    /// running one (cancelling a pending activation).
    fn rollback(&self, options: Options<'_>) -> Result<()>;
    /// What `image` is, without writing anything: see [`inspect`] for the
    /// keys. Only an unreadable descriptor is an error; a bad image is
    /// described (`signature`, `reason`).
    fn inspect(
        &self,
        image: zbus::zvariant::Fd<'_>,
        options: Options<'_>,
    ) -> Result<HashMap<String, OwnedValue>>;

    /// The slot the boot loader will start next.
    #[zbus(property)]
    fn boot_next(&self) -> zbus::Result<String>;
    /// The slot the BMC runs now.
    #[zbus(property)]
    fn booted_now(&self) -> zbus::Result<String>;
    /// This machine's name, as images list it in `compatible`.
    #[zbus(property)]
    fn machine(&self) -> zbus::Result<String>;
    /// The running `FirmwareUpdate` task, or `/` when none runs.
    #[zbus(property)]
    fn update_task(&self) -> zbus::Result<OwnedObjectPath>;
}

/// One log entry as `GetEntries` returns it (keys: [`entry_keys`]).
pub type LogEntry = HashMap<String, OwnedValue>;

/// `org.bmcd.Log1` at `EVENT_LOG_PATH` and `AUDIT_LOG_PATH`: one
/// append-only, crash-safe log, read page by page with stable cursors.
///
/// Entries are kept up to `MaxEntries` (and a byte limit); the oldest go
/// first, whole segments at a time. The event log is readable by every
/// role; the audit log by Administrators.
#[zbus::proxy(
    interface = "org.bmcd.Log1",
    default_service = "org.bmcd",
    gen_blocking = true
)]
pub trait Log {
    /// One page: up to `count` entries from `cursor` (see [`log_query`]
    /// for cursors, directions, filters and `info`).
    #[allow(clippy::type_complexity)]
    fn get_entries(
        &self,
        cursor: u64,
        count: u32,
        options: Options<'_>,
    ) -> Result<(Vec<LogEntry>, u64, HashMap<String, OwnedValue>)>;
    /// Remove every entry (event log only: Administrator, with
    /// re-authentication). Ids go on from where they were; `Generation`
    /// grows by one; the audit log records who cleared it, and the event
    /// log starts again with a `Log.Cleared` entry. The audit log answers
    /// `NotAllowed`: it only rotates.
    fn clear(&self, options: Options<'_>) -> Result<()>;

    /// Entries with `first..=last` were appended (one signal may cover
    /// many entries).
    #[zbus(signal)]
    fn appended(&self, first: u64, last: u64) -> zbus::Result<()>;

    /// `event` or `audit`.
    #[zbus(property)]
    fn name(&self) -> zbus::Result<String>;
    /// The oldest kept entry's Id; `LastId + 1` when the log is empty.
    #[zbus(property)]
    fn first_id(&self) -> zbus::Result<u64>;
    /// The newest entry's Id; 0 if nothing was ever appended.
    #[zbus(property)]
    fn last_id(&self) -> zbus::Result<u64>;
    /// How many entries are kept.
    #[zbus(property)]
    fn count(&self) -> zbus::Result<u64>;
    /// Grows by one at each `Clear`.
    #[zbus(property)]
    fn generation(&self) -> zbus::Result<u64>;
    /// The most entries kept.
    #[zbus(property)]
    fn max_entries(&self) -> zbus::Result<u64>;
    /// The most bytes the log takes on disk.
    #[zbus(property)]
    fn max_bytes(&self) -> zbus::Result<u64>;
}

/// `org.bmcd.Dump1` at `DUMPS_PATH`: diagnostic dumps (a `.tar.gz` of
/// both logs, the daemon's state, the configuration without secrets, the
/// firmware inventory, sensor and fan readings, and system basics).
#[zbus::proxy(
    interface = "org.bmcd.Dump1",
    default_service = "org.bmcd",
    default_path = "/org/bmcd/dumps",
    gen_blocking = true
)]
pub trait DumpManager {
    /// Make a dump as a `Dump` task (phases `Collect`, `Finish`); its
    /// `Result` names the new `DumpEntry1` object ([`dump_result`]). One
    /// dump at a time (`Busy`). Administrator.
    fn create(&self, options: Options<'_>) -> Result<OwnedObjectPath>;

    /// The most dumps kept; the oldest goes when a new one is made.
    #[zbus(property)]
    fn max_dumps(&self) -> zbus::Result<u32>;
    /// The most bytes one dump may take; a dump stops adding parts there.
    #[zbus(property)]
    fn max_size(&self) -> zbus::Result<u64>;
}

/// `org.bmcd.DumpEntry1` at `dump_path(id)`: one finished dump.
#[zbus::proxy(
    interface = "org.bmcd.DumpEntry1",
    default_service = "org.bmcd",
    gen_blocking = true
)]
pub trait DumpEntry {
    /// A read-only descriptor of the `.tar.gz` (Administrator), so a
    /// client copies it without access to bmcd's state directory.
    fn open(&self, options: Options<'_>) -> Result<zbus::zvariant::OwnedFd>;
    /// Remove the dump (Administrator).
    fn delete(&self, options: Options<'_>) -> Result<()>;

    #[zbus(property)]
    fn id(&self) -> zbus::Result<u64>;
    /// A file name for it: `bmcd-dump-<host>-<id>-<UTC time>.tar.gz`.
    #[zbus(property)]
    fn file_name(&self) -> zbus::Result<String>;
    /// Bytes.
    #[zbus(property)]
    fn size(&self) -> zbus::Result<u64>;
    /// Milliseconds since the Unix epoch it was made.
    #[zbus(property)]
    fn time(&self) -> zbus::Result<u64>;
    /// SHA-256 of the file, 64 hex digits.
    #[zbus(property)]
    fn digest(&self) -> zbus::Result<String>;
    /// The size cap was reached; the dump lacks its last parts.
    #[zbus(property)]
    fn truncated(&self) -> zbus::Result<bool>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use zbus::zvariant::Type;

    #[test]
    fn fan_paths_are_valid_and_distinct() {
        assert_eq!(fan_path("fan0"), "/org/bmcd/fans/fan0");
        assert_eq!(fan_path("cpu_fan-1"), "/org/bmcd/fans/cpu_5ffan_2d1");
        assert_ne!(fan_path("a_b"), fan_path("a-b"));
        for n in ["fan0", "x-y", "_", ""] {
            assert!(
                zbus::zvariant::ObjectPath::try_from(fan_path(n)).is_ok(),
                "{n}"
            );
        }
    }

    #[test]
    fn error_names_follow_the_prefix() {
        use zbus::DBusError;
        let e = Error::Busy("x".into());
        assert_eq!(e.name().as_str(), "org.bmcd.Error.Busy");
        for n in ERROR_NAMES {
            assert!(n.starts_with(ERROR_PREFIX));
        }
        assert_eq!(Error::NotAllowed("m".into()).message(), "m");
        // Every name comes back as the variant that has it, and nothing else
        // does.
        for n in ERROR_NAMES {
            let e = Error::from_name(n, "t").unwrap_or_else(|| panic!("{n}"));
            assert_eq!(e.name().as_str(), *n);
            assert_eq!(e.message(), "t");
        }
        assert!(Error::from_name("org.bmcd.Error.Nope", "").is_none());
        assert!(Error::from_name("org.freedesktop.DBus.Error.Failed", "").is_none());
    }

    #[test]
    fn task_paths_round_trip() {
        assert_eq!(task_path(7), "/org/bmcd/tasks/7");
        assert_eq!(task_id(&task_path(7)), Some(7));
        assert_eq!(task_id(&task_path(u64::MAX)), Some(u64::MAX));
        for bad in [
            "/org/bmcd/tasks",
            "/org/bmcd/tasks/",
            "/org/bmcd/tasks/07",
            "/org/bmcd/tasks/x",
            "/org/bmcd/fans/1",
        ] {
            assert_eq!(task_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn options_signature() {
        assert_eq!(Options::SIGNATURE.to_string(), "a{sv}");
    }
}
