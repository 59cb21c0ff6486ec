//! `bmcctl firmware …`: the firmware slots (`org.bmcd.Firmware1`), and
//! inspecting, installing, activating and rolling back images through
//! `org.bmcd.FirmwareManager1`.
//!
//! bmcctl opens the image itself, read-only, and hands bmcd the open file
//! (a Unix fd over the bus); no path crosses the bus. An update first asks
//! `Inspect` what the image is, says what goes into which slot, asks for
//! confirmation, then calls `StartUpdate` (re-authenticating when bmcd asks)
//! and waits for the task like `chassis power` does.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use bmcd_api::zbus;
use bmcd_api::{inspect, update_options, update_result, Options};
use zbus::blocking::Connection;
use zbus::zvariant::{Fd, OwnedValue, Value as ZValue};

use super::chassis::{TASK_ID, TASK_PATH, WAITED};
use super::Ctx;
use crate::cli::FirmwareCmd;
use crate::conn::{self, Client};
use crate::error::{names, CliError, Exit};
use crate::output::{FieldSpec, Output, Record, Table, Value};
use crate::wait;

type Props = HashMap<String, OwnedValue>;

// The manager's properties (top level of `list`, results of activate and
// rollback). JSON keys in snake case, as the firmware documents use.
const BOOTED_NOW: FieldSpec = FieldSpec::new("BootedNow", "Running slot");
const BOOT_NEXT: FieldSpec = FieldSpec::new("BootNext", "Boots next");
const MACHINE: FieldSpec = FieldSpec::new("Machine", "Machine");
const UPDATE_TASK: FieldSpec = FieldSpec::new("UpdateTask", "Update task");
const ACTION: FieldSpec = FieldSpec::new("Action", "Action");

// `firmware list` columns.
const COL_SLOT: FieldSpec = FieldSpec::new("Slot", "SLOT");
const COL_COMPONENT: FieldSpec = FieldSpec::new("Component", "COMPONENT");
const COL_STATE: FieldSpec = FieldSpec::new("State", "STATE");
const COL_VERSION: FieldSpec = FieldSpec::new("Version", "VERSION");
const COL_BUILD: FieldSpec = FieldSpec::new("BuildDate", "BUILD DATE");
const COL_INSTALLED: FieldSpec = FieldSpec::new("InstallTime", "INSTALLED");
const COL_BOOT: FieldSpec = FieldSpec::new("Boot", "BOOT");

// `firmware show` labels.
const SLOT: FieldSpec = FieldSpec::new("Slot", "Slot");
const PATH: FieldSpec = FieldSpec::new("Path", "Object path");
const COMPONENT: FieldSpec = FieldSpec::new("Component", "Component");
const STATE: FieldSpec = FieldSpec::new("State", "State");
const VERSION: FieldSpec = FieldSpec::new("Version", "Version");
const BUILD_DATE: FieldSpec = FieldSpec::new("BuildDate", "Build date");
const INSTALLED: FieldSpec = FieldSpec::new("InstallTime", "Installed");
const SIZE: FieldSpec = FieldSpec::new("Size", "Size");
const CAPACITY: FieldSpec = FieldSpec::new("Capacity", "Capacity");
const DIGEST: FieldSpec = FieldSpec::new("Digest", "Digest (SHA-256)");
const RUNNING: FieldSpec = FieldSpec::new("Running", "Running now");
const BOOTS_NEXT: FieldSpec = FieldSpec::new("BootsNext", "Boots next");

// `firmware inspect`: the keys of bmcd's answer, as it sends them.
const I_FILE: FieldSpec = FieldSpec::new("file", "File");
const I_COMPONENT: FieldSpec = FieldSpec::new(inspect::COMPONENT, "Component");
const I_VERSION: FieldSpec = FieldSpec::new(inspect::VERSION, "Version");
const I_BUILD_DATE: FieldSpec = FieldSpec::new(inspect::BUILD_DATE, "Build date");
const I_COMPATIBLE: FieldSpec = FieldSpec::new(inspect::COMPATIBLE, "Machines");
const I_PAYLOADS: FieldSpec = FieldSpec::new(inspect::PAYLOADS, "Payloads");
const I_SIZE: FieldSpec = FieldSpec::new(inspect::SIZE, "Size");
const I_KEY_ID: FieldSpec = FieldSpec::new(inspect::KEY_ID, "Key id");
const I_SIGNATURE: FieldSpec = FieldSpec::new(inspect::SIGNATURE, "Signature");
const I_HERE: FieldSpec = FieldSpec::new(inspect::COMPATIBLE_HERE, "Fits this machine");
const I_RULE: FieldSpec = FieldSpec::new(inspect::VERSION_RULE, "Version rule");
const I_PAYLOAD_OK: FieldSpec = FieldSpec::new(inspect::PAYLOAD_OK, "Payload digest");
const I_INSTALLABLE: FieldSpec = FieldSpec::new(inspect::INSTALLABLE, "Installable");
const I_REASON: FieldSpec = FieldSpec::new(inspect::REASON, "Reason");

pub fn run(cmd: FirmwareCmd, ctx: &Ctx) -> Result<Output, CliError> {
    match cmd {
        FirmwareCmd::List => list(ctx),
        FirmwareCmd::Show(s) => show(&s.slot, ctx),
        FirmwareCmd::Inspect { image, payload } => inspect_cmd(&image.file, payload, ctx),
        FirmwareCmd::Update {
            image,
            activate,
            force_version,
            no_wait,
        } => update(
            &image.file,
            UpdateFlags {
                activate,
                force_version,
                no_wait,
            },
            ctx,
        ),
        FirmwareCmd::Activate(s) => activate(&s.slot, ctx),
        FirmwareCmd::Rollback => rollback(ctx),
    }
}

// ---------------------------------------------------------------------------
// Reading properties. Tolerant: a property bmcd did not send (or sent with
// another type) keeps its default, so a newer bmcd still lists.

fn text(p: &Props, k: &str) -> String {
    p.get(k)
        .and_then(|v| <&str>::try_from(v).ok())
        .unwrap_or_default()
        .to_owned()
}

fn num(p: &Props, k: &str) -> Option<u64> {
    p.get(k).and_then(|v| u64::try_from(v).ok())
}

fn flag(p: &Props, k: &str) -> Option<bool> {
    p.get(k).and_then(|v| bool::try_from(v).ok())
}

fn strings(p: &Props, k: &str) -> Vec<String> {
    match p.get(k).map(|v| -> &ZValue<'_> { v }) {
        Some(ZValue::Array(a)) => a
            .iter()
            .filter_map(|m| match m {
                ZValue::Str(s) => Some(s.to_string()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// One `Firmware1` object.
#[derive(Debug, Clone, Default, PartialEq)]
struct Slot {
    path: String,
    slot: String,
    component: String,
    state: String,
    version: String,
    build_date: String,
    digest: String,
    size: u64,
    capacity: u64,
    install_time: u64,
}

impl Slot {
    fn from_props(path: &str, p: &Props) -> Slot {
        let mut slot = text(p, "Slot");
        if slot.is_empty() {
            slot = path.rsplit('/').next().unwrap_or(path).to_owned();
        }
        Slot {
            path: path.to_owned(),
            slot,
            component: text(p, "Component"),
            state: text(p, "State"),
            version: text(p, "Version"),
            build_date: text(p, "BuildDate"),
            digest: text(p, "Digest"),
            size: num(p, "Size").unwrap_or(0),
            capacity: num(p, "Capacity").unwrap_or(0),
            install_time: num(p, "InstallTime").unwrap_or(0),
        }
    }

    /// `bmc 2.0.0, Staged` (what the slot holds, for confirmations).
    fn summary(&self) -> String {
        // Nothing installed, nothing to name but the state.
        let what = match (self.component.as_str(), self.version.as_str()) {
            (_, "") => String::new(),
            ("", v) => format!("{v}, "),
            (c, v) => format!("{c} {v}, "),
        };
        let state = if self.state.is_empty() {
            "state unknown"
        } else {
            &self.state
        };
        format!("{what}{state}")
    }
}

/// `FirmwareManager1`'s properties.
#[derive(Debug, Clone, Default, PartialEq)]
struct Manager {
    booted_now: String,
    boot_next: String,
    machine: String,
    /// The running update's task path; empty when none runs (`/`).
    update_task: String,
}

impl Manager {
    fn from_props(p: &Props) -> Manager {
        let task = match p.get("UpdateTask").map(|v| -> &ZValue<'_> { v }) {
            Some(ZValue::ObjectPath(o)) if o.as_str() != "/" => o.to_string(),
            _ => String::new(),
        };
        Manager {
            booted_now: text(p, "BootedNow"),
            boot_next: text(p, "BootNext"),
            machine: text(p, "Machine"),
            update_task: task,
        }
    }

    /// The BMC slot an update writes: the one that is not running.
    fn target(&self) -> Option<&'static str> {
        if !bmcd_api::BMC_SLOTS.contains(&self.booted_now.as_str()) {
            return None;
        }
        bmcd_api::BMC_SLOTS
            .iter()
            .copied()
            .find(|s| *s != self.booted_now)
    }

    /// `running`, `next`, `running, next` or nothing.
    fn boot_word(&self, slot: &str) -> Value {
        match (slot == self.booted_now, slot == self.boot_next) {
            (true, true) => Value::text("running, next"),
            (true, false) => Value::text("running"),
            (false, true) => Value::text("next"),
            (false, false) => Value::Null,
        }
    }

    fn record(&self) -> Record {
        Record::new()
            .field(MACHINE, text_or_null(&self.machine))
            .field(BOOTED_NOW, text_or_null(&self.booted_now))
            .field(BOOT_NEXT, text_or_null(&self.boot_next))
            .field(UPDATE_TASK, text_or_null(&self.update_task))
    }
}

fn text_or_null(s: &str) -> Value {
    if s.is_empty() {
        Value::Null
    } else {
        Value::text(s)
    }
}

fn read_manager(client: &Client) -> Result<Manager, CliError> {
    let p = client.call(|c| {
        Ok(conn::get_all(
            c,
            bmcd_api::FIRMWARE_PATH,
            bmcd_api::FIRMWARE_MANAGER_IFACE,
        )?)
    })?;
    Ok(Manager::from_props(&p))
}

/// Every `Firmware1` object, sorted by slot name.
fn read_slots(client: &Client) -> Result<Vec<Slot>, CliError> {
    let mut slots: Vec<Slot> = client
        .objects_with(bmcd_api::FIRMWARE_IFACE)?
        .iter()
        .map(|(path, props)| Slot::from_props(path, props))
        .collect();
    conn::sort_small(&mut slots, |a, b| (&a.slot, &a.path) < (&b.slot, &b.path));
    Ok(slots)
}

/// The name checked locally (a malformed one cannot be an object path).
fn slot_path(slot: &str) -> Result<String, CliError> {
    bmcd_api::firmware_path(slot).ok_or_else(|| {
        CliError::usage(format!(
            "'{slot}' is not a slot name (lower-case letters, digits and _; \
             see `bmcctl firmware list`)"
        ))
    })
}

/// `GetAll` of one slot; an unknown one is "no firmware slot" (exit 4).
fn read_slot(client: &Client, slot: &str) -> Result<Slot, CliError> {
    let path = slot_path(slot)?;
    let p = client
        .call(|c| Ok(conn::get_all(c, &path, bmcd_api::FIRMWARE_IFACE)?))
        .map_err(|e| {
            if e.name == names::UNKNOWN_OBJECT
                || e.name == "org.freedesktop.DBus.Error.UnknownInterface"
            {
                CliError::daemon(bmcd_api::Error::NotFound(format!(
                    "no firmware slot '{slot}' (see `bmcctl firmware list`)"
                )))
            } else {
                e
            }
        })?;
    Ok(Slot::from_props(&path, &p))
}

// ---------------------------------------------------------------------------
// list, show

/// `1048576 (1.0 MiB)`; `0` alone.
fn bytes(n: u64) -> String {
    const MIB: u64 = 1 << 20;
    const KIB: u64 = 1 << 10;
    // In u64 (no 128-bit division in the binary): whole units, then tenths.
    let tenths = |unit: u64| format!("{}.{}", n / unit, n % unit * 10 / unit);
    if n >= MIB {
        format!("{n} ({} MiB)", tenths(MIB))
    } else if n >= KIB {
        format!("{n} ({} KiB)", tenths(KIB))
    } else {
        n.to_string()
    }
}

fn int(n: u64) -> Value {
    Value::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

fn slots_table(slots: &[Slot], m: &Manager) -> Table {
    Table {
        columns: vec![
            COL_SLOT,
            COL_COMPONENT,
            COL_STATE,
            COL_VERSION,
            COL_BUILD,
            COL_INSTALLED,
            COL_BOOT,
        ],
        rows: slots
            .iter()
            .map(|s| {
                vec![
                    Value::text(s.slot.clone()),
                    Value::text(s.component.clone()),
                    Value::text(s.state.clone()),
                    Value::text(s.version.clone()),
                    Value::text(s.build_date.clone()),
                    Value::Time(s.install_time),
                    m.boot_word(&s.slot),
                ]
            })
            .collect(),
    }
}

fn list_output(slots: &[Slot], m: &Manager) -> Output {
    Output::new()
        .record(None, m.record())
        .table(Some("Slots"), slots_table(slots, m))
}

fn list(ctx: &Ctx) -> Result<Output, CliError> {
    let client = ctx.connect()?;
    let m = read_manager(&client)?;
    let slots = read_slots(&client)?;
    Ok(list_output(&slots, &m))
}

fn slot_record(s: &Slot, m: &Manager) -> Record {
    Record::new()
        .field(SLOT, Value::text(s.slot.clone()))
        .field(PATH, Value::text(s.path.clone()))
        .field(COMPONENT, Value::text(s.component.clone()))
        .field(STATE, Value::text(s.state.clone()))
        .field(VERSION, Value::text(s.version.clone()))
        .field(BUILD_DATE, Value::text(s.build_date.clone()))
        .field(INSTALLED, Value::Time(s.install_time))
        .field_as(SIZE, int(s.size), bytes(s.size))
        .field_as(CAPACITY, int(s.capacity), bytes(s.capacity))
        .field(DIGEST, Value::text(s.digest.clone()))
        .field(RUNNING, Value::Bool(s.slot == m.booted_now))
        .field(BOOTS_NEXT, Value::Bool(s.slot == m.boot_next))
}

fn show(slot: &str, ctx: &Ctx) -> Result<Output, CliError> {
    slot_path(slot)?;
    let client = ctx.connect()?;
    let s = read_slot(&client, slot)?;
    let m = read_manager(&client)?;
    Ok(Output::new().record(None, slot_record(&s, &m)))
}

// ---------------------------------------------------------------------------
// The image file and Inspect

/// Open `path` read-only for bmcd. `O_NONBLOCK` so that a FIFO cannot hang
/// the open before the check (it changes nothing for a regular file);
/// anything but a regular file is refused.
fn open_image(path: &Path) -> Result<File, CliError> {
    let shown = path.display();
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| {
            let exit = match e.kind() {
                std::io::ErrorKind::NotFound => Exit::NotFound,
                std::io::ErrorKind::PermissionDenied => Exit::Denied,
                _ => Exit::Failure,
            };
            CliError::new(names::FILE, format!("cannot open {shown}: {e}"), exit)
        })?;
    let meta = file.metadata().map_err(|e| {
        CliError::new(
            names::FILE,
            format!("cannot stat {shown}: {e}"),
            Exit::Failure,
        )
    })?;
    if !meta.is_file() {
        return Err(CliError::usage(format!(
            "{shown} is not a regular file (give the image file itself)"
        )));
    }
    Ok(file)
}

/// Back to the start: the descriptor bmcd gets shares this file's offset.
fn rewind(file: &mut File) -> bmcd_api::Result<()> {
    file.seek(SeekFrom::Start(0))
        .map(|_| ())
        .map_err(|e| bmcd_api::Error::ZBus(zbus::Error::InputOutput(std::sync::Arc::new(e))))
}

fn manager_proxy(c: &Connection) -> zbus::Result<bmcd_api::FirmwareManagerProxyBlocking<'static>> {
    bmcd_api::FirmwareManagerProxyBlocking::builder(c)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
}

/// `Inspect` or `StartUpdate` of `file`, the reply left to the caller:
/// one copy of zbus's code for the `(h, a{sv})` call instead of one per
/// method.
fn call_with_fd(
    c: &Connection,
    method: &str,
    file: &File,
    options: Options<'_>,
) -> zbus::Result<zbus::message::Message> {
    manager_proxy(c)?
        .inner()
        .call_method(method, &(Fd::from(file), options))
}

/// One payload of the manifest: name, size, SHA-256.
type PayloadInfo = (String, u64, String);

/// `Inspect`'s answer (keys of [`bmcd_api::inspect`]).
#[derive(Debug, Clone, Default, PartialEq)]
struct Inspection {
    signature: String,
    reason: String,
    key_id: String,
    component: Option<String>,
    version: String,
    build_date: String,
    compatible: Vec<String>,
    compatible_here: Option<bool>,
    payloads: Vec<PayloadInfo>,
    size: Option<u64>,
    version_rule: String,
    installable: bool,
    payload_ok: Option<bool>,
}

impl Inspection {
    fn from_props(p: &Props) -> Inspection {
        let payloads = match p.get(inspect::PAYLOADS).map(|v| -> &ZValue<'_> { v }) {
            Some(ZValue::Array(a)) => a
                .iter()
                .filter_map(|e| match e {
                    ZValue::Structure(s) => match s.fields() {
                        [ZValue::Str(n), ZValue::U64(size), ZValue::Str(d)] => {
                            Some((n.to_string(), *size, d.to_string()))
                        }
                        _ => None,
                    },
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        Inspection {
            signature: text(p, inspect::SIGNATURE),
            reason: text(p, inspect::REASON),
            key_id: text(p, inspect::KEY_ID),
            component: p
                .get(inspect::COMPONENT)
                .and_then(|v| <&str>::try_from(v).ok())
                .map(str::to_owned),
            version: text(p, inspect::VERSION),
            build_date: text(p, inspect::BUILD_DATE),
            compatible: strings(p, inspect::COMPATIBLE),
            compatible_here: flag(p, inspect::COMPATIBLE_HERE),
            payloads,
            size: num(p, inspect::SIZE),
            version_rule: text(p, inspect::VERSION_RULE),
            installable: flag(p, inspect::INSTALLABLE).unwrap_or(false),
            payload_ok: flag(p, inspect::PAYLOAD_OK),
        }
    }

    /// `bmc 2.0.0 (built 2026-12-03)`.
    fn title(&self) -> String {
        let mut t = format!(
            "{} {}",
            self.component.as_deref().unwrap_or("image"),
            if self.version.is_empty() {
                "(version unknown)"
            } else {
                &self.version
            }
        );
        if !self.build_date.is_empty() {
            t.push_str(&format!(" (built {})", self.build_date));
        }
        t
    }

    fn record(&self, file: &Path, machine: &str) -> Record {
        let opt_text = |s: &str| text_or_null(s);
        let payloads = Value::List(
            self.payloads
                .iter()
                .map(|(n, size, d)| {
                    Value::Map(vec![
                        ("name".into(), Value::text(n.clone())),
                        ("size".into(), int(*size)),
                        ("sha256".into(), Value::text(d.clone())),
                    ])
                })
                .collect(),
        );
        let payloads_console = if self.payloads.is_empty() {
            "-".to_owned()
        } else {
            self.payloads
                .iter()
                .map(|(n, size, d)| format!("{n} {size} bytes sha256 {d}"))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let here = match (self.compatible_here, machine) {
            (None, _) => "-".to_owned(),
            (Some(b), "") => yes_no(b).to_owned(),
            (Some(b), m) => format!("{} (this machine: {m})", yes_no(b)),
        };
        let rule = match self.version_rule.as_str() {
            "downgrade" => "downgrade (needs --force-version)".to_owned(),
            "" => "-".to_owned(),
            r => r.to_owned(),
        };
        let mut r = Record::new()
            .field(I_FILE, Value::text(file.display().to_string()))
            .field(
                I_COMPONENT,
                self.component.as_deref().map_or(Value::Null, Value::text),
            )
            .field(I_VERSION, opt_text(&self.version))
            .field(I_BUILD_DATE, opt_text(&self.build_date))
            .field(
                I_COMPATIBLE,
                Value::List(self.compatible.iter().cloned().map(Value::Text).collect()),
            )
            .field_as(I_PAYLOADS, payloads, payloads_console)
            .field_as(
                I_SIZE,
                self.size.map_or(Value::Null, int),
                self.size.map_or_else(|| "-".to_owned(), bytes),
            )
            .field(I_KEY_ID, opt_text(&self.key_id))
            .field(I_SIGNATURE, opt_text(&self.signature))
            .field_as(
                I_HERE,
                self.compatible_here.map_or(Value::Null, Value::Bool),
                here,
            )
            .field_as(I_RULE, opt_text(&self.version_rule), rule);
        if let Some(ok) = self.payload_ok {
            r = r.field_as(
                I_PAYLOAD_OK,
                Value::Bool(ok),
                if ok {
                    "matches the manifest"
                } else {
                    "DOES NOT match the manifest"
                },
            );
        }
        r.field(I_INSTALLABLE, Value::Bool(self.installable))
            .field(I_REASON, opt_text(&self.reason))
    }

    /// Why this image cannot be installed (with `force_version`, a
    /// downgrade is allowed), as the error bmcd would answer
    /// `StartUpdate` with; `None` if it can. `capacity`: of the target slot.
    fn refusal(&self, force_version: bool, capacity: Option<u64>) -> Option<CliError> {
        let too_big = matches!((self.size, capacity), (Some(s), Some(c)) if c > 0 && s > c);
        let fits = || {
            if too_big {
                Some(bmcd_api::Error::NoSpace(
                    self.reason_or("the image is larger than the slot"),
                ))
            } else {
                None
            }
        };
        let refused = if self.installable {
            None
        } else if self.signature != "trusted" && self.component.is_none() && self.key_id.is_empty()
        {
            // Not even a header with a key id: not an image.
            Some(bmcd_api::Error::InvalidImage(
                self.reason_or("not a firmware image"),
            ))
        } else if self.signature != "trusted" {
            Some(bmcd_api::Error::InvalidSignature(
                self.reason_or("the image is not signed by a trusted key"),
            ))
        } else if self.compatible_here == Some(false)
            || self
                .component
                .as_deref()
                .is_some_and(|c| c != bmcd_api::BMC_COMPONENT)
        {
            Some(bmcd_api::Error::Incompatible(
                self.reason_or("the image is not for this machine"),
            ))
        } else if self.version_rule == "downgrade" {
            if force_version {
                fits()
            } else {
                Some(bmcd_api::Error::Incompatible(format!(
                    "{}; --force-version installs it anyway",
                    self.reason_or("the image is older than the running firmware")
                )))
            }
        } else if self.payload_ok == Some(false) {
            Some(bmcd_api::Error::InvalidImage(
                self.reason_or("a payload does not match the manifest"),
            ))
        } else {
            fits().or_else(|| {
                Some(bmcd_api::Error::InvalidImage(
                    self.reason_or("bmcd says the image cannot be installed"),
                ))
            })
        };
        refused.map(CliError::daemon)
    }

    fn reason_or(&self, default: &str) -> String {
        if self.reason.is_empty() {
            default.to_owned()
        } else {
            self.reason.clone()
        }
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// `Inspect` of the open image (from its start).
fn inspect_file(client: &Client, file: &mut File, payload: bool) -> Result<Inspection, CliError> {
    let p = client.call(|c| {
        rewind(file)?;
        let mut opts = Options::new();
        if payload {
            opts.insert(inspect::OPT_PAYLOAD, ZValue::Bool(true));
        }
        Ok(call_with_fd(c, "Inspect", file, opts)?
            .body()
            .deserialize::<Props>()?)
    })?;
    Ok(Inspection::from_props(&p))
}

fn inspect_cmd(path: &Path, payload: bool, ctx: &Ctx) -> Result<Output, CliError> {
    let mut file = open_image(path)?;
    let client = ctx.connect()?;
    let info = inspect_file(&client, &mut file, payload)?;
    // For the verdict's words only: the machine, the size of the slot an
    // update would write.
    let m = read_manager(&client).unwrap_or_default();
    let capacity = m
        .target()
        .and_then(|t| read_slot(&client, t).ok())
        .map(|t| t.capacity);
    let out = Output::new().record(None, info.record(path, &m.machine));
    Ok(match info.refusal(false, capacity) {
        Some(e) => out.fail_with(e),
        None => out,
    })
}

// ---------------------------------------------------------------------------
// update

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct UpdateFlags {
    activate: bool,
    force_version: bool,
    no_wait: bool,
}

/// The lines shown before "Continue? [y/N]".
fn update_question(
    info: &Inspection,
    target: Option<&Slot>,
    m: &Manager,
    flags: UpdateFlags,
) -> String {
    let into = match target {
        Some(t) => format!("{} (now {})", t.slot, t.summary()),
        None => "the slot that is not running".to_owned(),
    };
    let name = target.map_or("the new slot", |t| t.slot.as_str());
    let running = if m.booted_now.is_empty() {
        "The running slot".to_owned()
    } else {
        format!("The running slot {}", m.booted_now)
    };
    let next = if flags.activate {
        format!("{name} boots at the next BMC restart.")
    } else {
        format!("{name} boots only after `bmcctl firmware activate {name}`.")
    };
    let downgrade = if info.version_rule == "downgrade" {
        "\nThis is a downgrade (--force-version)."
    } else {
        ""
    };
    format!(
        "Install {} into {into}?{downgrade}\n{running} is not touched; {next}",
        info.title()
    )
}

fn update(path: &Path, flags: UpdateFlags, ctx: &Ctx) -> Result<Output, CliError> {
    let mut file = open_image(path)?;
    let client = ctx.connect()?;
    let m = read_manager(&client)?;
    if let Some(id) = bmcd_api::task_id(&m.update_task) {
        // bmcd would answer Busy too; say it before asking anything.
        return Err(CliError::daemon(bmcd_api::Error::Busy(format!(
            "an update is already running as task {id}; `bmcctl task wait {id}` waits for it"
        ))));
    }
    let target = match m.target() {
        Some(t) => Some(read_slot(&client, t)?),
        None => None,
    };
    let info = inspect_file(&client, &mut file, false)?;
    if let Some(e) = info.refusal(flags.force_version, target.as_ref().map(|t| t.capacity)) {
        return Err(e);
    }
    ctx.confirm(
        "install firmware",
        &update_question(&info, target.as_ref(), &m, flags),
    )?;
    let task = client.call(|c| {
        rewind(&mut file)?;
        let mut opts = Options::new();
        if flags.activate {
            opts.insert(update_options::ACTIVATE, ZValue::Bool(true));
        }
        if flags.force_version {
            opts.insert(update_options::FORCE_VERSION, ZValue::Bool(true));
        }
        Ok(call_with_fd(c, "StartUpdate", &file, opts)?
            .body()
            .deserialize::<zbus::zvariant::OwnedObjectPath>()?)
    })?;
    drop(file);
    let path = task.as_str().to_owned();
    let id = bmcd_api::task_id(&path).unwrap_or(0);
    let title = info.title();
    let into = target
        .as_ref()
        .map_or("the other slot", |t| t.slot.as_str());
    if flags.no_wait {
        let out = if ctx.quiet {
            Output::new().line(id.to_string())
        } else {
            Output::new().notice(format!(
                "Installing {title} into {into} as task {id}; `bmcctl task wait {id}` waits for it."
            ))
        };
        return Ok(out.json_result(
            Record::new()
                .field(WAITED, Value::Bool(false))
                .field(TASK_ID, int(id))
                .field(TASK_PATH, Value::text(path)),
        ));
    }
    let t = wait::wait(&client, &path, wait::Style::for_ctx(ctx))?;
    let t = wait::outcome(t)?;
    let notice = installed_notice(&t.result, &title, into);
    let mut doc = t.record();
    doc.fields.push(crate::output::Field {
        spec: WAITED,
        value: Value::Bool(true),
        console: None,
    });
    Ok(Output::new().notice(notice).json_result(doc))
}

/// What a completed update says, from its task's `Result`.
fn installed_notice(result: &[(String, Value)], title: &str, into: &str) -> String {
    let get = |k: &str| result.iter().find(|(n, _)| n == k).map(|(_, v)| v);
    let slot = match get(update_result::SLOT) {
        Some(Value::Text(s)) if !s.is_empty() => s.as_str(),
        _ => into,
    };
    let digest = match get(update_result::DIGEST) {
        Some(Value::Text(d)) if !d.is_empty() => format!(" (read back, SHA-256 {d})"),
        _ => String::new(),
    };
    let next = match get(update_result::ACTIVATED) {
        Some(Value::Bool(true)) => "it boots at the next BMC restart".to_owned(),
        _ => format!("`bmcctl firmware activate {slot}` makes it boot next"),
    };
    format!("Installed {title} into {slot}{digest}; {next}.")
}

// ---------------------------------------------------------------------------
// activate, rollback

fn boot_result(action: &str, m: &Manager) -> Record {
    Record::new()
        .field(ACTION, Value::text(action))
        .field(BOOT_NEXT, text_or_null(&m.boot_next))
        .field(BOOTED_NOW, text_or_null(&m.booted_now))
}

/// `bmc_b boots at the next BMC restart (bmc_a runs until then).`
fn boot_notice(m: &Manager) -> String {
    if m.boot_next == m.booted_now {
        format!(
            "{} (running) boots next; no slot change is pending.",
            m.boot_next
        )
    } else {
        format!(
            "{} boots at the next BMC restart ({} runs until then).",
            m.boot_next, m.booted_now
        )
    }
}

fn activate(slot: &str, ctx: &Ctx) -> Result<Output, CliError> {
    slot_path(slot)?;
    let client = ctx.connect()?;
    let s = read_slot(&client, slot)?;
    let m = read_manager(&client)?;
    let question = if slot == m.booted_now {
        format!(
            "Boot {slot} ({}) again at the next BMC restart (it runs now)?",
            s.summary()
        )
    } else {
        format!(
            "Boot {slot} ({}) at the next BMC restart? {} runs until then.",
            s.summary(),
            m.booted_now
        )
    };
    ctx.confirm(&format!("activate {slot}"), &question)?;
    client.call(|c| {
        // The same call as `chassis policy set` makes (one copy of zbus's
        // code for `(s, a{sv})`).
        c.call_method(
            Some(bmcd_api::BUS_NAME),
            bmcd_api::FIRMWARE_PATH,
            Some(bmcd_api::FIRMWARE_MANAGER_IFACE),
            "Activate",
            &(slot, Options::new()),
        )?;
        Ok(())
    })?;
    let m = read_manager(&client)?;
    Ok(Output::new()
        .notice(boot_notice(&m))
        .json_result(boot_result("activate", &m)))
}

/// What `Rollback` will do, as bmcd decides it (see the contract): cancel a
/// pending activation, or boot the other BMC slot.
fn rollback_question(m: &Manager, slots: &[Slot]) -> String {
    let find = |n: &str| slots.iter().find(|s| s.slot == n);
    let describe = |n: &str| match find(n) {
        Some(s) => format!("{n} ({})", s.summary()),
        None => n.to_owned(),
    };
    if !m.boot_next.is_empty() && m.boot_next != m.booted_now {
        return format!(
            "Cancel the pending switch to {}: {} stays the boot slot?",
            describe(&m.boot_next),
            describe(&m.booted_now)
        );
    }
    match m.target() {
        Some(other) => format!(
            "Boot {} at the next BMC restart instead of {}?",
            describe(other),
            describe(&m.booted_now)
        ),
        None => "Boot the other BMC slot at the next BMC restart?".to_owned(),
    }
}

fn rollback(ctx: &Ctx) -> Result<Output, CliError> {
    let client = ctx.connect()?;
    let m = read_manager(&client)?;
    let slots = read_slots(&client)?;
    ctx.confirm("roll back the firmware", &rollback_question(&m, &slots))?;
    client.call(|c| manager_proxy(c)?.rollback(Options::new()))?;
    let m = read_manager(&client)?;
    Ok(Output::new()
        .notice(boot_notice(&m))
        .json_result(boot_result("rollback", &m)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::{render_console, render_json};
    use zbus::zvariant::ObjectPath;

    fn ov<'a>(v: impl Into<ZValue<'a>>) -> OwnedValue {
        v.into().try_into_owned().unwrap()
    }

    fn slot_props(slot: &str, state: &str, version: &str, install: u64) -> Props {
        let mut p = Props::new();
        p.insert("Slot".into(), ov(slot));
        p.insert("Component".into(), ov("bmc"));
        p.insert("State".into(), ov(state));
        p.insert("Version".into(), ov(version));
        p.insert("BuildDate".into(), ov("2026-12-03T10:00:00Z"));
        p.insert("Digest".into(), ov("ab".repeat(32)));
        p.insert("Size".into(), ov(1_048_576u64));
        p.insert("Capacity".into(), ov(100_663_296u64));
        p.insert("InstallTime".into(), ov(install));
        p
    }

    fn manager(booted: &str, next: &str) -> Manager {
        let mut p = Props::new();
        p.insert("BootedNow".into(), ov(booted));
        p.insert("BootNext".into(), ov(next));
        p.insert("Machine".into(), ov("sim"));
        p.insert("UpdateTask".into(), ov(ObjectPath::try_from("/").unwrap()));
        Manager::from_props(&p)
    }

    fn two_slots() -> Vec<Slot> {
        vec![
            Slot::from_props(
                "/org/bmcd/firmware/bmc_a",
                &slot_props("bmc_a", "Active", "1.0.0", 0),
            ),
            Slot::from_props(
                "/org/bmcd/firmware/bmc_b",
                &slot_props("bmc_b", "Staged", "2.0.0", 1_714_566_896_000),
            ),
        ]
    }

    #[test]
    fn slots_decode_and_tolerate_missing_properties() {
        let s = &two_slots()[1];
        assert_eq!((s.slot.as_str(), s.state.as_str()), ("bmc_b", "Staged"));
        assert_eq!((s.size, s.capacity), (1_048_576, 100_663_296));
        let e = Slot::from_props("/org/bmcd/firmware/bios", &Props::new());
        assert_eq!(e.slot, "bios");
        assert_eq!(e.summary(), "state unknown");
        let m = manager("bmc_a", "bmc_a");
        assert_eq!(m.update_task, "");
        assert_eq!(m.target(), Some("bmc_b"));
        assert_eq!(manager("bmc_b", "bmc_b").target(), Some("bmc_a"));
        assert_eq!(manager("", "").target(), None);
    }

    #[test]
    fn list_marks_the_running_and_next_slots() {
        let out = list_output(&two_slots(), &manager("bmc_a", "bmc_b"));
        assert_eq!(
            render_console(&out, false),
            "Machine:       sim\n\
             Running slot:  bmc_a\n\
             Boots next:    bmc_b\n\
             Update task:   -\n\
             \n\
             SLOT   COMPONENT  STATE   VERSION  BUILD DATE            INSTALLED             BOOT\n\
             bmc_a  bmc        Active  1.0.0    2026-12-03T10:00:00Z  -                     running\n\
             bmc_b  bmc        Staged  2.0.0    2026-12-03T10:00:00Z  2024-05-01T12:34:56Z  next\n"
        );
        let v: serde_json::Value = serde_json::from_str(&render_json(&out)).unwrap();
        assert_eq!(v["BootedNow"], "bmc_a");
        assert_eq!(v["BootNext"], "bmc_b");
        assert_eq!(v["Machine"], "sim");
        assert!(v["UpdateTask"].is_null());
        assert_eq!(v["Slots"][0]["Slot"], "bmc_a");
        assert_eq!(v["Slots"][0]["Boot"], "running");
        assert_eq!(v["Slots"][1]["State"], "Staged");
        assert_eq!(v["Slots"][1]["InstallTime"], "2024-05-01T12:34:56Z");
        assert!(v["Slots"][0]["InstallTime"].is_null());
        let same = list_output(&two_slots(), &manager("bmc_a", "bmc_a"));
        assert!(render_console(&same, false).contains("running, next\n"));
    }

    #[test]
    fn show_has_every_property() {
        let s = &two_slots()[1];
        let out = Output::new().record(None, slot_record(s, &manager("bmc_a", "bmc_b")));
        let text = render_console(&out, false);
        for line in [
            "Slot:              bmc_b\n",
            "Object path:       /org/bmcd/firmware/bmc_b\n",
            "Size:              1048576 (1.0 MiB)\n",
            "Capacity:          100663296 (96.0 MiB)\n",
            "Running now:       no\n",
            "Boots next:        yes\n",
        ] {
            assert!(text.contains(line), "{line:?} in\n{text}");
        }
        assert!(text.contains(&format!("Digest (SHA-256):  {}\n", "ab".repeat(32))));
        let v: serde_json::Value = serde_json::from_str(&render_json(&out)).unwrap();
        assert_eq!(v["Size"], 1_048_576);
        assert_eq!(v["Capacity"], 100_663_296);
        assert_eq!(v["Digest"], "ab".repeat(32));
        assert_eq!(v["BootsNext"], true);
    }

    #[test]
    fn byte_counts() {
        assert_eq!(bytes(0), "0");
        assert_eq!(bytes(1000), "1000");
        assert_eq!(bytes(1536), "1536 (1.5 KiB)");
        assert_eq!(bytes(67_108_864), "67108864 (64.0 MiB)");
    }

    fn inspection(p: &[(&str, ZValue<'_>)]) -> Inspection {
        let props: Props = p
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.try_to_owned().unwrap()))
            .collect();
        Inspection::from_props(&props)
    }

    fn good() -> Vec<(&'static str, ZValue<'static>)> {
        let payload = ("rootfs".to_owned(), 1_048_576u64, "cd".repeat(32));
        vec![
            (inspect::SIGNATURE, ZValue::from("trusted")),
            (inspect::REASON, ZValue::from("")),
            (inspect::KEY_ID, ZValue::from("0123456789abcdef")),
            (inspect::COMPONENT, ZValue::from("bmc")),
            (inspect::VERSION, ZValue::from("2.0.0")),
            (inspect::BUILD_DATE, ZValue::from("2026-12-03")),
            (inspect::COMPATIBLE, ZValue::from(vec!["sim", "board-a"])),
            (inspect::COMPATIBLE_HERE, ZValue::Bool(true)),
            (inspect::PAYLOADS, ZValue::from(vec![payload])),
            (inspect::SIZE, ZValue::U64(1_048_576)),
            (inspect::VERSION_RULE, ZValue::from("upgrade")),
            (inspect::INSTALLABLE, ZValue::Bool(true)),
        ]
    }

    fn with(
        mut p: Vec<(&'static str, ZValue<'static>)>,
        k: &'static str,
        v: ZValue<'static>,
    ) -> Vec<(&'static str, ZValue<'static>)> {
        p.retain(|(n, _)| *n != k);
        p.push((k, v));
        p
    }

    #[test]
    fn inspect_answer_decodes_and_renders() {
        let i = inspection(&good());
        assert!(i.installable);
        assert_eq!(
            i.payloads,
            [("rootfs".to_owned(), 1_048_576, "cd".repeat(32))]
        );
        assert_eq!(i.title(), "bmc 2.0.0 (built 2026-12-03)");
        assert!(i.refusal(false, Some(100)).is_none(), "installable wins");
        let out = Output::new().record(None, i.record(Path::new("/tmp/x.img"), "sim"));
        let text = render_console(&out, false);
        for line in [
            "File:               /tmp/x.img\n",
            "Machines:           sim, board-a\n",
            &format!(
                "Payloads:           rootfs 1048576 bytes sha256 {}\n",
                "cd".repeat(32)
            ),
            "Key id:             0123456789abcdef\n",
            "Signature:          trusted\n",
            "Fits this machine:  yes (this machine: sim)\n",
            "Version rule:       upgrade\n",
            "Installable:        yes\n",
            "Reason:             -\n",
        ] {
            assert!(text.contains(line), "{line:?} in\n{text}");
        }
        assert!(!text.contains("Payload digest"));
        let v: serde_json::Value = serde_json::from_str(&render_json(&out)).unwrap();
        assert_eq!(v["key-id"], "0123456789abcdef");
        assert_eq!(v["compatible-here"], true);
        assert_eq!(v["payloads"][0]["sha256"], "cd".repeat(32));
        assert_eq!(v["installable"], true);
        assert!(v.get("error").is_none());
    }

    #[test]
    fn refusals_name_the_error_bmcd_would() {
        let no = |k, v| {
            let p = with(
                with(good(), inspect::INSTALLABLE, ZValue::Bool(false)),
                k,
                v,
            );
            inspection(&with(p, inspect::REASON, ZValue::from("why")))
        };
        let name =
            |i: &Inspection, force| i.refusal(force, Some(2 << 20)).map(|e| (e.name, e.exit));
        let refused = |n: &str| Some((format!("org.bmcd.Error.{n}"), Exit::ImageRefused));
        assert_eq!(
            name(&no(inspect::SIGNATURE, "untrusted".into()), false),
            refused("InvalidSignature")
        );
        let mut bad = no(inspect::SIGNATURE, "invalid".into());
        bad.component = None;
        assert_eq!(name(&bad, false), refused("InvalidSignature"));
        bad.key_id.clear();
        assert_eq!(name(&bad, false), refused("InvalidImage"), "not an image");
        assert_eq!(
            name(&no(inspect::COMPATIBLE_HERE, false.into()), true),
            refused("Incompatible")
        );
        assert_eq!(
            name(&no(inspect::COMPONENT, "bios".into()), false),
            refused("Incompatible")
        );
        let down = no(inspect::VERSION_RULE, "downgrade".into());
        assert_eq!(name(&down, false), refused("Incompatible"));
        let e = down.refusal(false, None).unwrap();
        assert_eq!(e.message, "why; --force-version installs it anyway");
        assert_eq!(
            name(&down, true),
            None,
            "--force-version allows a downgrade"
        );
        assert_eq!(
            down.refusal(true, Some(1000)).map(|e| e.name),
            Some("org.bmcd.Error.NoSpace".to_owned())
        );
        let big = no(inspect::SIZE, ZValue::U64(3 << 20));
        assert_eq!(name(&big, false), refused("NoSpace"));
        let e = no(inspect::PAYLOAD_OK, false.into())
            .refusal(false, None)
            .unwrap();
        assert_eq!(e.name, "org.bmcd.Error.InvalidImage");
        assert_eq!(e.message, "why");
    }

    #[test]
    fn inspect_of_a_refused_image_shows_it_then_fails() {
        let i = inspection(&with(
            with(good(), inspect::INSTALLABLE, ZValue::Bool(false)),
            inspect::SIGNATURE,
            ZValue::from("untrusted"),
        ));
        let out = Output::new()
            .record(None, i.record(Path::new("x"), ""))
            .fail_with(i.refusal(false, None).unwrap());
        let v: serde_json::Value = serde_json::from_str(&render_json(&out)).unwrap();
        assert_eq!(v["installable"], false);
        assert_eq!(v["error"]["exit_code"], 9);
        assert_eq!(v["error"]["name"], "org.bmcd.Error.InvalidSignature");
        assert!(render_console(&out, false).contains("Installable:        no\n"));
    }

    #[test]
    fn update_asks_what_goes_where() {
        let i = inspection(&good());
        let slots = two_slots();
        let m = manager("bmc_a", "bmc_a");
        let flags = UpdateFlags {
            activate: false,
            force_version: false,
            no_wait: false,
        };
        assert_eq!(
            update_question(&i, Some(&slots[1]), &m, flags),
            "Install bmc 2.0.0 (built 2026-12-03) into bmc_b (now bmc 2.0.0, Staged)?\n\
             The running slot bmc_a is not touched; bmc_b boots only after \
             `bmcctl firmware activate bmc_b`."
        );
        let q = update_question(
            &i,
            None,
            &m,
            UpdateFlags {
                activate: true,
                ..flags
            },
        );
        assert!(
            q.ends_with("the new slot boots at the next BMC restart."),
            "{q}"
        );
    }

    #[test]
    fn completed_update_says_where_it_went() {
        let r = vec![
            ("activated".to_owned(), Value::Bool(true)),
            ("digest".to_owned(), Value::text("ef")),
            ("slot".to_owned(), Value::text("bmc_b")),
        ];
        assert_eq!(
            installed_notice(&r, "bmc 2.0.0", "x"),
            "Installed bmc 2.0.0 into bmc_b (read back, SHA-256 ef); it boots at the next BMC restart."
        );
        assert_eq!(
            installed_notice(&[], "bmc 2.0.0", "bmc_a"),
            "Installed bmc 2.0.0 into bmc_a; `bmcctl firmware activate bmc_a` makes it boot next."
        );
    }

    #[test]
    fn rollback_says_what_it_will_do() {
        let slots = two_slots();
        assert_eq!(
            rollback_question(&manager("bmc_a", "bmc_b"), &slots),
            "Cancel the pending switch to bmc_b (bmc 2.0.0, Staged): \
             bmc_a (bmc 1.0.0, Active) stays the boot slot?"
        );
        assert_eq!(
            rollback_question(&manager("bmc_a", "bmc_a"), &slots),
            "Boot bmc_b (bmc 2.0.0, Staged) at the next BMC restart instead of bmc_a (bmc 1.0.0, Active)?"
        );
        assert_eq!(
            boot_notice(&manager("bmc_a", "bmc_b")),
            "bmc_b boots at the next BMC restart (bmc_a runs until then)."
        );
    }

    #[test]
    fn slot_names_are_checked_locally() {
        let e = slot_path("../x").unwrap_err();
        assert_eq!(e.exit, Exit::Usage);
        assert_eq!(slot_path("bmc_a").unwrap(), "/org/bmcd/firmware/bmc_a");
    }

    #[test]
    fn only_regular_files_are_opened() {
        let e = open_image(Path::new("/")).unwrap_err();
        assert_eq!(e.exit, Exit::Usage);
        assert!(e.message.contains("not a regular file"), "{}", e.message);
        let e = open_image(Path::new("/nonexistent/bmc.img")).unwrap_err();
        assert_eq!(e.exit, Exit::NotFound);
        assert!(open_image(Path::new("/proc/self/status")).is_ok());
    }
}
