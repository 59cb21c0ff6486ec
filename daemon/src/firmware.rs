//! The firmware controller: signed A/B updates of the BMC's own firmware,
//! boot selection (`Activate`, `Rollback`) and image inspection, over the
//! storage of `hw::firmware`.
//!
//! Invariants:
//! - at most one update runs at a time (`updating` is claimed before
//!   anything else is checked, and freed before the task ends);
//! - an image is verified (signature, manifest, component, machine,
//!   version, size) before its task exists and before a byte is written;
//! - only the BMC slot that is not booted is written (the backend also
//!   refuses the booted one), and it is marked `Writing` on disk before
//!   the first byte goes out: a crash leaves `Writing`, which the next
//!   start turns into `Invalid`;
//! - the payload is streamed through fixed 64 KiB buffers, hashed while
//!   read (`bmcd_image::PayloadStream`), read back and hashed again before
//!   the slot is `Staged`;
//! - every slot state change is written to `<state_dir>/firmware.json`
//!   atomically (`store::write_atomic`) before it is published.
//!
//! All flash and image I/O runs on blocking threads, never on the async
//! runtime. Nothing here knows zbus: the bus side is `bus/firmware.rs`.
//!
//! Events (`crate::logs`): every update task ends with one
//! `Firmware.UpdateCompleted` or `Firmware.UpdateFailed` (failed,
//! cancelled, or interrupted by a stop of bmcd; an update cut by a crash
//! is written at the next start, from its `Writing` slot and its task);
//! `Activate` and `Rollback` write `Firmware.Activated`.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bmcd_api::{FirmwareState, LogSeverity, TaskState, BMC_COMPONENT};
use bmcd_image::{ImageError, ImageReader, Keyring, Manifest, PayloadStream};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::clock::now_ms;
use crate::config::FirmwareConfig;
use crate::hw::firmware::{BootSelector, FirmwareHw, Slot};
use crate::hw::HwError;
use crate::logs::Logs;
use crate::sync::lock;
use crate::tasks::{ResultValue, TaskHandle, Tasks};

/// The events' source.
const SOURCE: &str = "firmware";

/// The file that keeps the slots' states under the state directory.
pub const STATE_FILE: &str = "firmware.json";
/// The kind of an update's task.
pub const TASK_KIND: &str = "FirmwareUpdate";
/// The phases of an update and their weights.
const PHASES: &[(&str, u32)] = &[("Verify", 5), ("Write", 80), ("ReadBack", 15)];
/// What `updating` holds while an image is verified, before its slot is
/// known.
const VERIFYING: &str = "";
/// The one buffer an update streams through.
const CHUNK: usize = 64 * 1024;

/// One slot as the bus shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotInfo {
    pub name: String,
    pub component: String,
    pub state: FirmwareState,
    pub version: String,
    pub build_date: String,
    /// SHA-256 (hex) of the payload as read back; "" if not known.
    pub digest: String,
    pub size: u64,
    pub capacity: u64,
    pub install_time_ms: u64,
}

impl SlotInfo {
    fn good(&self) -> bool {
        matches!(
            self.state,
            FirmwareState::Active | FirmwareState::Backup | FirmwareState::Staged
        )
    }

    fn clear(&mut self, state: FirmwareState) {
        self.state = state;
        self.version.clear();
        self.build_date.clear();
        self.digest.clear();
        self.size = 0;
        self.install_time_ms = 0;
    }
}

/// Everything `FirmwareManager1` and the `Firmware1` objects show.
#[derive(Debug, Clone, PartialEq)]
pub struct FirmwareView {
    pub slots: Vec<SlotInfo>,
    pub boot_next: String,
    pub booted: String,
    pub machine: String,
    /// The running update's task id; 0 when none runs.
    pub update_task: u64,
}

/// One slot in `firmware.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
struct Record {
    state: String,
    version: String,
    build_date: String,
    digest: String,
    size: u64,
    install_time_ms: u64,
    component: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct Persisted {
    slots: BTreeMap<String, Record>,
}

/// Why a firmware request was refused or an update failed. The bus maps
/// each to its `org.bmcd.Error.*` name ([`FirmwareError::name`]).
#[derive(Debug)]
pub enum FirmwareError {
    /// An update runs already (or writes the slot asked for).
    Busy(String),
    /// No such slot.
    NotFound(String),
    /// Not possible in the slots' current states.
    NotAllowed(String),
    /// Unknown key or bad signature.
    InvalidSignature(String),
    /// Another machine or component, or a downgrade without force-version.
    Incompatible(String),
    /// Not an image, a bad manifest, or a payload that does not match it.
    InvalidImage(String),
    /// The payload does not fit the target slot.
    NoSpace(String),
    /// Writing or reading back the slot failed.
    FlashWrite(String),
    /// The update was cancelled.
    Cancelled,
    /// The storage or boot selector failed outside a write.
    Hardware(HwError),
    /// The image could not be read at all (Inspect).
    Unreadable(String),
    /// The state could not be written to disk, or a task recorded.
    Persist(io::Error),
    /// A blocking worker ended without an answer.
    Internal(String),
}

impl FirmwareError {
    /// The `org.bmcd.Error.*` name (a failed task's `Error`; the bus maps
    /// the refusals through it too).
    pub fn name(&self) -> &'static str {
        match self {
            FirmwareError::Busy(_) => "org.bmcd.Error.Busy",
            FirmwareError::NotFound(_) => "org.bmcd.Error.NotFound",
            FirmwareError::NotAllowed(_) => "org.bmcd.Error.NotAllowed",
            FirmwareError::InvalidSignature(_) => "org.bmcd.Error.InvalidSignature",
            FirmwareError::Incompatible(_) => "org.bmcd.Error.Incompatible",
            FirmwareError::InvalidImage(_) => "org.bmcd.Error.InvalidImage",
            FirmwareError::NoSpace(_) => "org.bmcd.Error.NoSpace",
            FirmwareError::FlashWrite(_) => "org.bmcd.Error.FlashWrite",
            FirmwareError::Cancelled => "org.bmcd.Error.Cancelled",
            FirmwareError::Hardware(_) => "org.bmcd.Error.Unavailable",
            FirmwareError::Unreadable(_) => "org.bmcd.Error.InvalidArgument",
            FirmwareError::Persist(_) | FirmwareError::Internal(_) => "org.bmcd.Error.Internal",
        }
    }

    fn image(e: ImageError) -> FirmwareError {
        if e.is_signature() {
            FirmwareError::InvalidSignature(e.to_string())
        } else if let ImageError::Incompatible { .. } = e {
            FirmwareError::Incompatible(e.to_string())
        } else if let ImageError::Io(io) = &e {
            FirmwareError::InvalidImage(format!("cannot read the image: {io}"))
        } else {
            FirmwareError::InvalidImage(e.to_string())
        }
    }
}

impl fmt::Display for FirmwareError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FirmwareError::Busy(m)
            | FirmwareError::NotFound(m)
            | FirmwareError::NotAllowed(m)
            | FirmwareError::InvalidSignature(m)
            | FirmwareError::Incompatible(m)
            | FirmwareError::InvalidImage(m)
            | FirmwareError::NoSpace(m)
            | FirmwareError::FlashWrite(m)
            | FirmwareError::Unreadable(m)
            | FirmwareError::Internal(m) => f.write_str(m),
            FirmwareError::Cancelled => f.write_str("the update was cancelled"),
            FirmwareError::Hardware(e) => write!(f, "firmware storage: {e}"),
            FirmwareError::Persist(e) => write!(f, "cannot record the firmware state: {e}"),
        }
    }
}

/// `StartUpdate`'s options.
#[derive(Debug, Clone, Copy, Default)]
pub struct UpdateOptions {
    pub activate: bool,
    pub force_version: bool,
}

/// A value of `Inspect`'s answer (the bus maps it to a variant).
#[derive(Debug, Clone, PartialEq)]
pub enum InspectValue {
    Str(String),
    Bool(bool),
    U64(u64),
    List(Vec<String>),
    /// Each payload's name, size and SHA-256.
    Payloads(Vec<(String, u64, String)>),
}

/// An accepted image, between the preflight and the write.
struct Prepared {
    target: usize,
    manifest: Manifest,
    stream: PayloadStream<File>,
    opts: UpdateOptions,
}

pub struct Firmware {
    slots: Vec<Slot>,
    boot: Arc<dyn BootSelector>,
    keys_dir: PathBuf,
    state_dir: PathBuf,
    tasks: Arc<Tasks>,
    state: watch::Sender<FirmwareView>,
    /// Held while a state change is written and published.
    commit: Mutex<()>,
    /// The slot an update writes, while one runs.
    updating: Mutex<Option<String>>,
    logs: Arc<Logs>,
}

/// How an update's task is to end.
enum UpdateEnd {
    Completed(BTreeMap<String, ResultValue>),
    /// Error name and text.
    Failed(&'static str, String),
    Cancelled,
}

/// Write `Firmware.UpdateFailed`; `state` is the task's final state (or
/// `Interrupted`), `error` its error name and text.
fn update_failed(
    logs: &Logs,
    slot: &str,
    version: &str,
    task: &str,
    state: TaskState,
    error: &str,
) {
    let what = match state {
        TaskState::Cancelled => "cancelled",
        TaskState::Interrupted => "interrupted",
        _ => "failed",
    };
    let to = if version.is_empty() {
        String::new()
    } else {
        format!(" to {version}")
    };
    logs.event(
        LogSeverity::Error,
        SOURCE,
        "Firmware.UpdateFailed",
        format!("update{to} of slot {slot} {what} (task {task}): {error}"),
        &[
            ("slot", slot.to_owned()),
            ("version", version.to_owned()),
            ("task", task.to_owned()),
            ("state", state.to_string()),
            ("error", error.to_owned()),
        ],
    );
}

async fn off_runtime<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, FirmwareError> + Send + 'static,
) -> Result<T, FirmwareError> {
    crate::sync::off_runtime(f, |e| {
        FirmwareError::Internal(format!("firmware worker: {e}"))
    })
    .await
}

/// Compare two version strings with semantic-versioning precedence,
/// tolerant of what BMC images really carry:
/// - build metadata after `+` is ignored;
/// - the release (before the first `-`) is compared part by part (`.` or
///   `_`), numbers numerically, other parts as text (a number is lower
///   than text); missing parts count as 0, so `1.2` equals `1.2.0`;
/// - with equal releases, a pre-release (`1.0.0-rc1`, `2.14.0-dev-5-gabc`)
///   is lower than the release itself, and two pre-releases compare part
///   by part in the same way.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    fn part(x: &str, y: &str) -> Ordering {
        // An empty part (an unknown running version "") counts as 0.
        let num = |p: &str| {
            if p.is_empty() {
                Ok(0)
            } else {
                p.parse::<u64>()
            }
        };
        match (num(x), num(y)) {
            (Ok(m), Ok(n)) => m.cmp(&n),
            (Ok(_), Err(_)) => Ordering::Less,
            (Err(_), Ok(_)) => Ordering::Greater,
            (Err(_), Err(_)) => x.cmp(y),
        }
    }
    fn parts(x: &str, y: &str, pad: bool) -> Ordering {
        let (mut px, mut py) = (x.split(['.', '_']), y.split(['.', '_']));
        loop {
            match (px.next(), py.next()) {
                (None, None) => return Ordering::Equal,
                (Some(p), Some(q)) => match part(p, q) {
                    Ordering::Equal => {}
                    o => return o,
                },
                (Some(p), None) if pad => match part(p, "0") {
                    Ordering::Equal => {}
                    o => return o,
                },
                (None, Some(q)) if pad => match part("0", q) {
                    Ordering::Equal => {}
                    o => return o,
                },
                // Pre-releases: more parts is higher (semver).
                (Some(_), None) => return Ordering::Greater,
                (None, Some(_)) => return Ordering::Less,
            }
        }
    }
    let strip = |v: &str| v.split('+').next().unwrap_or("").to_owned();
    let (a, b) = (strip(a), strip(b));
    let (ra, pa) = a
        .split_once('-')
        .map_or((a.as_str(), None), |(r, p)| (r, Some(p)));
    let (rb, pb) = b
        .split_once('-')
        .map_or((b.as_str(), None), |(r, p)| (r, Some(p)));
    match parts(ra, rb, true) {
        Ordering::Equal => {}
        o => return o,
    }
    match (pa, pb) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(x), Some(y)) => parts(x, y, false),
    }
}

/// A slot's state at start-up from its record: an interrupted write is
/// `Invalid`, the booted slot `Active`, a good other slot `Backup` (or
/// still `Staged` if it was never booted), no record `Empty`.
fn start_state(rec: Option<&Record>, booted: bool) -> (FirmwareState, bool /* keep metadata */) {
    let was = rec.and_then(|r| r.state.parse::<FirmwareState>().ok());
    let good_before = matches!(
        was,
        Some(FirmwareState::Active | FirmwareState::Backup | FirmwareState::Staged)
    );
    if booted {
        return (FirmwareState::Active, good_before);
    }
    match was {
        Some(FirmwareState::Staged) => (FirmwareState::Staged, true),
        Some(FirmwareState::Active | FirmwareState::Backup) => (FirmwareState::Backup, true),
        Some(FirmwareState::Writing | FirmwareState::Invalid) => (FirmwareState::Invalid, false),
        Some(FirmwareState::Empty) | None => (FirmwareState::Empty, false),
    }
}

impl Firmware {
    /// Load `firmware.json`, settle the slots' states (an interrupted
    /// write becomes `Invalid`, logged) and write them back. Blocking.
    pub fn open(
        hw: FirmwareHw,
        cfg: &FirmwareConfig,
        state_dir: &Path,
        tasks: Arc<Tasks>,
        logs: Arc<Logs>,
    ) -> Result<Arc<Firmware>, FirmwareError> {
        let path = state_dir.join(STATE_FILE);
        let persisted: Persisted = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                log::error!(
                    "{}: unreadable ({e}); slots not booted start as Invalid",
                    path.display()
                );
                let mut p = Persisted::default();
                for s in &hw.slots {
                    p.slots.insert(
                        s.name.clone(),
                        Record {
                            state: FirmwareState::Invalid.as_str().into(),
                            ..Record::default()
                        },
                    );
                }
                p
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Persisted::default(),
            Err(e) => return Err(FirmwareError::Persist(e)),
        };
        let mut slots = Vec::with_capacity(hw.slots.len());
        // Updates a crash cut short: the slot left `Writing`, and the task
        // this open brought back `Interrupted` (at most one of each runs).
        let mut cut_slot: Option<String> = None;
        let cut_task = tasks
            .interrupted_at_open()
            .iter()
            .filter(|t| t.kind == TASK_KIND)
            .max_by_key(|t| t.id)
            .map(|t| (t.id, t.error.1.clone()));
        for s in &hw.slots {
            let capacity = s.device.capacity().map_err(FirmwareError::Hardware)?;
            let rec = persisted.slots.get(&s.name);
            let booted = s.name == hw.booted;
            let (state, keep) = start_state(rec, booted);
            if rec.is_some_and(|r| r.state == FirmwareState::Writing.as_str()) {
                cut_slot = Some(s.name.clone());
            }
            let mut info = SlotInfo {
                name: s.name.clone(),
                component: s.component.clone(),
                state,
                version: String::new(),
                build_date: String::new(),
                digest: String::new(),
                size: 0,
                capacity,
                install_time_ms: 0,
            };
            if let (true, Some(r)) = (keep, rec) {
                info.version = r.version.clone();
                info.build_date = r.build_date.clone();
                info.digest = r.digest.clone();
                info.size = r.size;
                info.install_time_ms = r.install_time_ms;
            }
            if booted && info.version.is_empty() {
                info.version = hw.running_version.clone();
            }
            slots.push(info);
        }
        let mut boot_next = hw.boot.boot_next().map_err(FirmwareError::Hardware)?;
        // The boot loader must never be pointed at a slot whose content is
        // not known good (bmcd never does that itself; a hand-edited
        // environment or an older state could). Point it back at the
        // running slot, which is good by definition.
        let next_good = slots.iter().any(|s| s.name == boot_next && s.good());
        if !next_good && boot_next != hw.booted {
            log::warn!(
                "firmware: the boot loader would start slot {boot_next:?}, which holds no good \
                 image: boot slot {} next instead",
                hw.booted
            );
            hw.boot
                .set_boot_next(&hw.booted)
                .map_err(FirmwareError::Hardware)?;
            boot_next = hw.boot.boot_next().map_err(FirmwareError::Hardware)?;
        }
        let view = FirmwareView {
            slots,
            boot_next,
            booted: hw.booted.clone(),
            machine: cfg.machine.clone(),
            update_task: 0,
        };
        if cut_slot.is_some() || cut_task.is_some() {
            let slot = cut_slot.unwrap_or_default();
            let (task, why) = cut_task.map_or((String::new(), String::new()), |(id, why)| {
                (id.to_string(), why)
            });
            let why = if why.is_empty() {
                "bmcd stopped while the update ran".to_owned()
            } else {
                why
            };
            let why = if slot.is_empty() {
                why
            } else {
                format!("{why}; slot {slot} was being written when bmcd stopped: now Invalid")
            };
            update_failed(&logs, &slot, "", &task, TaskState::Interrupted, &why);
        }
        let (state, _) = watch::channel(view);
        let fw = Arc::new(Firmware {
            slots: hw.slots,
            boot: hw.boot,
            keys_dir: cfg.keys_dir.clone(),
            state_dir: state_dir.to_owned(),
            tasks,
            state,
            commit: Mutex::new(()),
            updating: Mutex::new(None),
            logs,
        });
        fw.commit(|_| {}).map_err(FirmwareError::Persist)?;
        Ok(fw)
    }

    pub fn subscribe(&self) -> watch::Receiver<FirmwareView> {
        self.state.subscribe()
    }

    pub fn snapshot(&self) -> FirmwareView {
        self.state.borrow().clone()
    }

    /// Apply `f`, write the slots to disk, publish. The new state is
    /// published even if the write failed (the error is returned).
    fn commit(&self, f: impl FnOnce(&mut FirmwareView)) -> io::Result<()> {
        let _g = lock(&self.commit);
        let mut next = self.state.borrow().clone();
        f(&mut next);
        let p = Persisted {
            slots: next
                .slots
                .iter()
                .map(|s| {
                    (
                        s.name.clone(),
                        Record {
                            state: s.state.as_str().into(),
                            version: s.version.clone(),
                            build_date: s.build_date.clone(),
                            digest: s.digest.clone(),
                            size: s.size,
                            install_time_ms: s.install_time_ms,
                            component: s.component.clone(),
                        },
                    )
                })
                .collect(),
        };
        let r = serde_json::to_vec_pretty(&p)
            .map_err(io::Error::other)
            .and_then(|bytes| crate::store::write_atomic(&self.state_dir, STATE_FILE, &bytes));
        self.state.send_if_modified(|cur| {
            if *cur == next {
                return false;
            }
            *cur = next;
            true
        });
        r
    }

    fn set_slot(&self, index: usize, f: impl FnOnce(&mut SlotInfo)) -> io::Result<()> {
        self.commit(|v| {
            if let Some(s) = v.slots.get_mut(index) {
                f(s)
            }
        })
    }

    fn index_of(&self, slot: &str) -> Option<usize> {
        self.slots.iter().position(|s| s.name == slot)
    }

    /// The BMC slot that is not booted: the one an update writes.
    fn target(&self) -> Result<usize, FirmwareError> {
        let booted = self.state.borrow().booted.clone();
        self.slots
            .iter()
            .position(|s| s.component == BMC_COMPONENT && s.name != booted)
            .ok_or_else(|| {
                FirmwareError::NotAllowed("there is no BMC slot besides the running one".into())
            })
    }

    fn running_version(&self) -> String {
        let v = self.state.borrow();
        v.slots
            .iter()
            .find(|s| s.name == v.booted)
            .map(|s| s.version.clone())
            .unwrap_or_default()
    }

    /// The trusted keys, read now (a key added or removed counts at the
    /// next call). A missing directory trusts nothing.
    fn keyring(&self) -> Result<Keyring, FirmwareError> {
        if !self.keys_dir.is_dir() {
            log::warn!(
                "firmware: key directory {} is missing: no image is trusted",
                self.keys_dir.display()
            );
            return Ok(Keyring::new());
        }
        Keyring::load_dir(&self.keys_dir).map_err(|e| {
            FirmwareError::Hardware(HwError::Unavailable(format!("trusted keys: {e}")))
        })
    }

    /// Verify everything that can be verified before writing. Blocking.
    fn preflight(&self, image: File, opts: UpdateOptions) -> Result<Prepared, FirmwareError> {
        let target = self.target()?;
        let keyring = self.keyring()?;
        let (verified, stream) =
            ImageReader::open(image, &keyring).map_err(FirmwareError::image)?;
        let m = verified.manifest;
        let slot = &self.slots[target];
        if m.component != slot.component {
            return Err(FirmwareError::Incompatible(format!(
                "the image is for component {:?}, slot {} holds {:?}",
                m.component, slot.name, slot.component
            )));
        }
        let machine = self.state.borrow().machine.clone();
        m.check_machine(&machine).map_err(FirmwareError::image)?;
        if m.payloads.len() != 1 {
            return Err(FirmwareError::InvalidImage(format!(
                "a BMC image has exactly one payload; this one has {}",
                m.payloads.len()
            )));
        }
        let running = self.running_version();
        if compare_versions(&m.version, &running) == Ordering::Less && !opts.force_version {
            return Err(FirmwareError::Incompatible(format!(
                "version {} is lower than the running {running} (a downgrade needs the \
                 force-version option)",
                m.version
            )));
        }
        let capacity = slot.device.capacity().map_err(FirmwareError::Hardware)?;
        if m.payload_len() > capacity {
            return Err(FirmwareError::NoSpace(format!(
                "the payload is {} bytes; slot {} holds {capacity}",
                m.payload_len(),
                slot.name
            )));
        }
        Ok(Prepared {
            target,
            manifest: m,
            stream,
            opts,
        })
    }

    fn release(&self) {
        *lock(&self.updating) = None;
        self.state.send_if_modified(|v| {
            let was = v.update_task;
            v.update_task = 0;
            was != 0
        });
    }

    /// Check `image` and start writing it into the slot that is not
    /// running, as a task; returns the task's id. Refusals (nothing
    /// written): Busy first, then the preflight's.
    pub async fn start_update(
        self: &Arc<Self>,
        image: File,
        opts: UpdateOptions,
        owner_uid: u32,
    ) -> Result<u64, FirmwareError> {
        {
            let mut u = lock(&self.updating);
            match u.as_deref() {
                Some(VERIFYING) => {
                    return Err(FirmwareError::Busy(
                        "another image is being verified for an update".into(),
                    ))
                }
                Some(slot) => {
                    return Err(FirmwareError::Busy(format!(
                        "an update is writing slot {slot}"
                    )))
                }
                None => {}
            }
            // Claimed for the preflight; the slot name comes after it.
            *u = Some(VERIFYING.to_owned());
        }
        let me = self.clone();
        let prepared = match off_runtime(move || me.preflight(image, opts)).await {
            Ok(p) => p,
            Err(e) => {
                self.release();
                return Err(e);
            }
        };
        let task = match self.tasks.start(TASK_KIND, owner_uid, PHASES, true) {
            Ok(t) => t,
            Err(e) => {
                self.release();
                return Err(FirmwareError::Persist(e));
            }
        };
        let id = task.id();
        let slot = self.slots[prepared.target].name.clone();
        *lock(&self.updating) = Some(slot.clone());
        self.state.send_if_modified(|v| {
            v.update_task = id;
            true
        });
        log::info!(
            "firmware: update to {} into slot {slot} started (task {id})",
            prepared.manifest.version
        );
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.run_update(task, prepared));
        Ok(id)
    }

    /// Whether the task was cancelled, or ended from outside (shutdown).
    fn stop_requested(&self, task: &TaskHandle) -> bool {
        self.tasks.get(task.id()).is_none_or(|rx| {
            let s = rx.borrow().state;
            s == TaskState::Cancelling || s.is_final()
        })
    }

    /// The update's work, on a blocking thread.
    fn run_update(self: Arc<Self>, task: TaskHandle, p: Prepared) {
        let slot = self.slots[p.target].name.clone();
        let version = p.manifest.version.clone();
        let end = self.run_update_task(&task, p);
        self.end_update(task, &slot, &version, end);
    }

    /// Write the update's end event, then end its task (so the event is
    /// in the log once the task shows its end). A task already ended from
    /// outside (interrupted by a stop) keeps its state, and the event says
    /// so.
    fn end_update(&self, task: TaskHandle, slot: &str, version: &str, end: UpdateEnd) {
        let id = task.id();
        let ended = self
            .tasks
            .get(id)
            .map(|rx| rx.borrow().clone())
            .filter(|t| t.state.is_final());
        let failed = |state: TaskState, error: String| {
            update_failed(&self.logs, slot, version, &id.to_string(), state, &error);
        };
        match (ended, &end) {
            (Some(t), _) => failed(t.state, format!("{}: {}", t.error.0, t.error.1)),
            (None, UpdateEnd::Completed(result)) => {
                let activated = matches!(
                    result.get(bmcd_api::update_result::ACTIVATED),
                    Some(ResultValue::Bool(true))
                );
                let digest = match result.get(bmcd_api::update_result::DIGEST) {
                    Some(ResultValue::Str(d)) => d.as_str(),
                    _ => "",
                };
                self.logs.event(
                    LogSeverity::Notice,
                    SOURCE,
                    "Firmware.UpdateCompleted",
                    format!(
                        "slot {slot} staged with {version} (sha256 {digest}, task {id}){}",
                        if activated { "; it boots next" } else { "" }
                    ),
                    &[
                        ("slot", slot.to_owned()),
                        ("version", version.to_owned()),
                        ("task", id.to_string()),
                        ("activated", activated.to_string()),
                    ],
                );
            }
            (None, UpdateEnd::Failed(name, text)) => {
                failed(TaskState::Failed, format!("{name}: {text}"))
            }
            (None, UpdateEnd::Cancelled) => failed(
                TaskState::Cancelled,
                format!(
                    "{}: {}",
                    crate::tasks::ERROR_CANCELLED,
                    FirmwareError::Cancelled
                ),
            ),
        }
        match end {
            UpdateEnd::Completed(result) => task.complete(result),
            UpdateEnd::Failed(name, text) => task.fail(name, &text),
            UpdateEnd::Cancelled => task.cancelled(),
        }
    }

    /// The update's work; how its task is to end.
    fn run_update_task(&self, task: &TaskHandle, mut p: Prepared) -> UpdateEnd {
        let target = p.target;
        let name = self.slots[target].name.clone();
        let r = self.write_and_check(task, &mut p).and_then(|digest| {
            // The commit point: no Cancel after this. One accepted just
            // before it still wins.
            task.set_cancellable(false);
            if self.stop_requested(task) {
                return Err(FirmwareError::Cancelled);
            }
            Ok(digest)
        });
        match r {
            Ok(digest) => {
                let m = &p.manifest;
                let size = m.payload_len();
                let staged = self.set_slot(target, |s| {
                    s.state = FirmwareState::Staged;
                    s.version = m.version.clone();
                    s.build_date = m.build_date.clone();
                    s.digest = digest.clone();
                    s.size = size;
                    s.install_time_ms = now_ms();
                });
                if let Err(e) = staged {
                    log::error!("firmware: slot {name}: {e}");
                    let _ = self.set_slot(target, |s| s.clear(FirmwareState::Invalid));
                    self.release();
                    let e = FirmwareError::Persist(e);
                    return UpdateEnd::Failed(e.name(), e.to_string());
                }
                let mut activated = false;
                let mut activate_err = None;
                if p.opts.activate {
                    match self.boot.set_boot_next(&name) {
                        Ok(()) => activated = true,
                        Err(e) => activate_err = Some(FirmwareError::Hardware(e)),
                    }
                }
                self.refresh_boot_next();
                self.release();
                if let Some(e) = activate_err {
                    return UpdateEnd::Failed(
                        e.name(),
                        format!("slot {name} is staged, but it could not be made BootNext: {e}"),
                    );
                }
                let result = [
                    (
                        bmcd_api::update_result::SLOT,
                        ResultValue::Str(name.clone()),
                    ),
                    (
                        bmcd_api::update_result::VERSION,
                        ResultValue::Str(m.version.clone()),
                    ),
                    (bmcd_api::update_result::DIGEST, ResultValue::Str(digest)),
                    (
                        bmcd_api::update_result::ACTIVATED,
                        ResultValue::Bool(activated),
                    ),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
                UpdateEnd::Completed(result)
            }
            Err(e) => {
                // Whatever was written cannot be trusted.
                if let Err(pe) = self.set_slot(target, |s| s.clear(FirmwareState::Invalid)) {
                    log::error!("firmware: slot {name}: {pe}");
                }
                self.release();
                match e {
                    FirmwareError::Cancelled => UpdateEnd::Cancelled,
                    e => UpdateEnd::Failed(e.name(), e.to_string()),
                }
            }
        }
    }

    fn refresh_boot_next(&self) {
        match self.boot.boot_next() {
            Ok(next) => {
                self.state.send_if_modified(|v| {
                    if v.boot_next == next {
                        return false;
                    }
                    v.boot_next = next;
                    true
                });
            }
            Err(e) => log::error!("firmware: boot selection: {e}"),
        }
    }

    /// Mark the target Writing, stream, finish, read back. Returns the
    /// digest read back.
    fn write_and_check(
        &self,
        task: &TaskHandle,
        p: &mut Prepared,
    ) -> Result<String, FirmwareError> {
        let slot = &self.slots[p.target];
        task.phase("Verify");
        task.message(&format!(
            "verified {} {} (signature, machine, version, size)",
            p.manifest.component, p.manifest.version
        ));
        // A pending activation of the slot about to be overwritten is
        // undone first: a reboot in the middle must not start half an image.
        // Before the slot is marked Writing, so that no crash in between
        // leaves BootNext on a slot the restart finds Invalid.
        let booted = self.state.borrow().booted.clone();
        let next = self.boot.boot_next().map_err(FirmwareError::Hardware)?;
        if next == slot.name {
            self.boot
                .set_boot_next(&booted)
                .map_err(FirmwareError::Hardware)?;
            log::info!(
                "firmware: slot {} was to boot next; {booted} boots next while it is written",
                slot.name
            );
            self.refresh_boot_next();
        }
        self.set_slot(p.target, |s| s.clear(FirmwareState::Writing))
            .map_err(FirmwareError::Persist)?;
        task.phase("Write");
        task.message(&format!("writing slot {}", slot.name));
        let total = p.manifest.payload_len();
        let want = p
            .manifest
            .payloads
            .first()
            .map(|x| x.sha256.clone())
            .unwrap_or_default();
        let flash = |e: HwError| FirmwareError::FlashWrite(format!("slot {}: {e}", slot.name));
        let mut writer = slot.device.open_write().map_err(flash)?;
        let mut buf = vec![0u8; CHUNK];
        let mut written = 0u64;
        loop {
            if self.stop_requested(task) {
                return Err(FirmwareError::Cancelled);
            }
            let n = match p.stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(FirmwareError::image(ImageError::from_io(e))),
            };
            writer.write(&buf[..n]).map_err(flash)?;
            written += n as u64;
            task.progress(fraction(written, total));
        }
        if !p.stream.is_verified() {
            return Err(FirmwareError::InvalidImage(
                "the payload stream ended unverified".into(),
            ));
        }
        writer.finish().map_err(flash)?;
        task.phase("ReadBack");
        task.message(&format!("reading back slot {}", slot.name));
        let mut reader = slot.device.open_read().map_err(flash)?.take(total);
        let mut h = Sha256::new();
        let mut read = 0u64;
        loop {
            if self.stop_requested(task) {
                return Err(FirmwareError::Cancelled);
            }
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(FirmwareError::FlashWrite(format!(
                        "reading back slot {}: {e}",
                        slot.name
                    )))
                }
            };
            h.update(&buf[..n]);
            read += n as u64;
            task.progress(fraction(read, total));
        }
        if read != total {
            return Err(FirmwareError::FlashWrite(format!(
                "slot {}: read back {read} of {total} bytes",
                slot.name
            )));
        }
        let got = bmcd_image::hex(&h.finalize());
        if got != want {
            return Err(FirmwareError::FlashWrite(format!(
                "slot {}: read back SHA-256 {got}, the image says {want}",
                slot.name
            )));
        }
        Ok(got)
    }

    /// Boot `slot` next.
    pub async fn activate(self: &Arc<Self>, slot: String) -> Result<(), FirmwareError> {
        let Some(index) = self.index_of(&slot) else {
            return Err(FirmwareError::NotFound(format!(
                "no firmware slot {slot:?}"
            )));
        };
        if lock(&self.updating).as_deref() == Some(slot.as_str()) {
            return Err(FirmwareError::Busy(format!(
                "an update is writing slot {slot}"
            )));
        }
        let st = self.state.borrow().slots[index].state;
        if !self.state.borrow().slots[index].good() {
            return Err(FirmwareError::NotAllowed(format!(
                "slot {slot} is {st}: only an Active, Backup or Staged slot can boot"
            )));
        }
        self.set_boot_next(slot, "activate").await
    }

    /// `what`: `activate` or `rollback` (the event's `Data`).
    async fn set_boot_next(
        self: &Arc<Self>,
        slot: String,
        what: &'static str,
    ) -> Result<(), FirmwareError> {
        let me = self.clone();
        off_runtime(move || {
            let from = me.state.borrow().boot_next.clone();
            me.boot
                .set_boot_next(&slot)
                .map_err(FirmwareError::Hardware)?;
            me.refresh_boot_next();
            me.logs.event(
                LogSeverity::Notice,
                SOURCE,
                "Firmware.Activated",
                format!("slot {slot} boots next ({what}; it was {from})"),
                &[
                    ("slot", slot.clone()),
                    ("from", from),
                    ("by", what.to_owned()),
                ],
            );
            Ok(())
        })
        .await
    }

    /// Undo a pending activation, or else boot the other good BMC slot.
    pub async fn rollback(self: &Arc<Self>) -> Result<(), FirmwareError> {
        let v = self.snapshot();
        if v.boot_next != v.booted {
            return self.set_boot_next(v.booted.clone(), "rollback").await;
        }
        let other = v
            .slots
            .iter()
            .find(|s| s.component == BMC_COMPONENT && s.name != v.booted);
        match other {
            Some(s) if matches!(s.state, FirmwareState::Backup | FirmwareState::Staged) => {
                if lock(&self.updating).as_deref() == Some(s.name.as_str()) {
                    return Err(FirmwareError::Busy(format!(
                        "an update is writing slot {}",
                        s.name
                    )));
                }
                self.set_boot_next(s.name.clone(), "rollback").await
            }
            Some(s) => Err(FirmwareError::NotAllowed(format!(
                "slot {} is {}: there is no good image to roll back to",
                s.name, s.state
            ))),
            None => Err(FirmwareError::NotAllowed(
                "there is no other BMC slot to roll back to".into(),
            )),
        }
    }

    /// Describe `image` without writing anything (see
    /// `bmcd_api::inspect`). Only an unreadable image is an error.
    pub async fn inspect(
        self: &Arc<Self>,
        image: File,
        payload: bool,
    ) -> Result<Vec<(&'static str, InspectValue)>, FirmwareError> {
        let me = self.clone();
        off_runtime(move || me.inspect_blocking(image, payload)).await
    }

    fn inspect_blocking(
        &self,
        mut image: File,
        payload: bool,
    ) -> Result<Vec<(&'static str, InspectValue)>, FirmwareError> {
        use bmcd_api::inspect as k;
        use InspectValue::{Bool, List, Payloads, Str, U64};
        let mut out: Vec<(&'static str, InspectValue)> = Vec::new();
        let header = match bmcd_image::read_header(&mut image) {
            Ok(h) => h,
            Err(ImageError::Io(e)) => {
                return Err(FirmwareError::Unreadable(format!(
                    "cannot read the image: {e}"
                )))
            }
            Err(e) => {
                out.push((k::SIGNATURE, Str("invalid".into())));
                out.push((k::REASON, Str(e.to_string())));
                out.push((k::INSTALLABLE, Bool(false)));
                return Ok(out);
            }
        };
        out.push((k::KEY_ID, Str(header.key_id.to_string())));
        let keyring = self.keyring()?;
        let (signature, mut reason, manifest) = match header.verify(&keyring) {
            Ok(m) => ("trusted", String::new(), Some(m)),
            Err(e @ ImageError::UnknownKey(_)) => (
                "untrusted",
                e.to_string(),
                header.unverified_manifest().ok(),
            ),
            Err(e) => ("invalid", e.to_string(), None),
        };
        out.push((k::SIGNATURE, Str(signature.into())));
        let Some(m) = manifest else {
            out.push((k::REASON, Str(reason)));
            out.push((k::INSTALLABLE, Bool(false)));
            return Ok(out);
        };
        let machine = self.state.borrow().machine.clone();
        let here = m.compatible.contains(&machine);
        let running = self.running_version();
        let rule = match compare_versions(&m.version, &running) {
            Ordering::Greater => "upgrade",
            Ordering::Equal => "same",
            Ordering::Less => "downgrade",
        };
        let target = self.target().ok();
        let capacity = target
            .and_then(|t| self.slots[t].device.capacity().ok())
            .unwrap_or(0);
        let component_ok = target.is_some_and(|t| self.slots[t].component == m.component);
        let mut why = |cond: bool, text: String| {
            if !cond && reason.is_empty() {
                reason = text;
            }
            cond
        };
        let mut installable = signature == "trusted";
        installable &= why(
            component_ok,
            format!("component {:?} is not this BMC's", m.component),
        );
        installable &= why(here, format!("not built for this machine ({machine})"));
        installable &= why(
            m.payloads.len() == 1,
            format!("{} payloads (a BMC image has one)", m.payloads.len()),
        );
        installable &= why(
            rule != "downgrade",
            format!("a downgrade from {running} (needs force-version)"),
        );
        installable &= why(
            m.payload_len() <= capacity,
            format!("{} bytes do not fit the slot ({capacity})", m.payload_len()),
        );
        if payload {
            let ok = match PayloadStream::unauthenticated(&mut image, &m).verify_all() {
                Ok(_) => true,
                Err(ImageError::Io(e)) => {
                    return Err(FirmwareError::Unreadable(format!(
                        "cannot read the image: {e}"
                    )))
                }
                Err(e) => {
                    why(false, e.to_string());
                    false
                }
            };
            installable &= ok;
            out.push((k::PAYLOAD_OK, Bool(ok)));
        }
        out.push((k::COMPONENT, Str(m.component.clone())));
        out.push((k::VERSION, Str(m.version.clone())));
        out.push((k::BUILD_DATE, Str(m.build_date.clone())));
        out.push((k::COMPATIBLE, List(m.compatible.clone())));
        out.push((k::COMPATIBLE_HERE, Bool(here)));
        out.push((
            k::PAYLOADS,
            Payloads(
                m.payloads
                    .iter()
                    .map(|p| (p.name.clone(), p.size, p.sha256.clone()))
                    .collect(),
            ),
        ));
        out.push((k::SIZE, U64(m.payload_len())));
        out.push((k::VERSION_RULE, Str(rule.into())));
        out.push((k::INSTALLABLE, Bool(installable)));
        out.push((k::REASON, Str(reason)));
        Ok(out)
    }
}

fn fraction(done: u64, total: u64) -> f64 {
    if total == 0 {
        1.0
    } else {
        done as f64 / total as f64
    }
}

#[cfg(test)]
mod tests;
