//! Diagnostic dumps (issue 9): a `.tar.gz` of both logs, the daemon's
//! state files, the configuration without secrets, the firmware inventory,
//! the cooling readings and system basics, made as a `Dump` task. No zbus
//! here: `bus/dump.rs` adapts it.
//!
//! # Files
//!
//! `state_dir/dumps/`:
//! - `<id>.tar.gz`: a finished dump; `<id>.json` its description
//!   ([`DumpInfo`]: file name, size, time, SHA-256, truncated), written
//!   before the archive is renamed into place;
//! - `.<id>.tar.gz.tmp`: a dump being written (removed at start: a crash
//!   left it);
//! - `meta.json`: `{"next_id": n}`, on disk (with `store::write_atomic`)
//!   before id `n - 1` is used, so ids are never reused, even after every
//!   dump was deleted.
//!
//! At start the list is derived from the directory: every `<id>.tar.gz`
//! comes back (its description is rebuilt from the file if missing or
//! damaged), descriptions without an archive and temp files are removed,
//! and only the newest `max_dumps` are kept.
//!
//! # The archive
//!
//! Everything sits in the directory `bmcd-dump-<id>/`. The archive is
//! streamed: the logs are read page by page (`LogStore::page`), never all
//! at once. It is one tar stream, compressed as one gzip member per part
//! (concatenated members are a valid gzip file: `gzip -d`, `tar xzf` and
//! Python read them; with flate2 use `MultiGzDecoder`). The output goes
//! through a counting writer that refuses to pass the size cap; a part that
//! would pass it is cut back to the end of the previous member (the file
//! is truncated there) and left out, listed in `summary.txt`, and the dump
//! is `Truncated`; later, smaller parts are still tried. The last
//! [`RESERVE`] bytes of the cap are kept for `summary.txt` and the end of
//! the archive, so a truncated dump is still a valid `.tar.gz`.
//!
//! Parts, in order: `config.json`, `sensors.json`, `firmware.json`,
//! `system/uname.txt`, `state/*.json` (the JSON files at the top of
//! `state_dir`: restore policy, tasks, firmware; not the logs and dumps
//! directories), `logs/event.jsonl`, `logs/audit.jsonl` (oldest first, one
//! JSON object per line with the `entry_keys` names), `system/{meminfo,
//! loadavg,uptime,version,mounts,cpuinfo}` from `/proc` (a missing file is
//! noted in the summary), and `summary.txt` last.
//!
//! # Secrets
//!
//! `config.json` is the configuration file as it is on disk when the dump
//! is made, parsed and re-serialized: the value of every key whose name,
//! in lower case, contains `password`, `passwd`, `secret`, `token`,
//! `credential`, `private` or `key` becomes `"<redacted>"` (whatever its
//! type, except a number or a boolean: a limit or a switch such as
//! `auth.max_password_bytes` is no secret); keys ending in `_dir` are kept
//! (`firmware.keys_dir` is the directory of the trusted *public* keys: a
//! path, not a secret). A file that cannot be read or parsed is
//! left out (never copied raw).

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bmcd_api::{dump_result, LogSeverity};
use flate2::write::GzEncoder;
use flate2::Compression;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::clock::now_ms;
use crate::config::DumpsConfig;
use crate::cooling::Cooling;
use crate::firmware::Firmware;
use crate::logs::{Log, Logs};
use crate::logstore::{Entry, Query, MAX_PAGE};
use crate::store::write_atomic;
use crate::sync::lock;
use crate::tasks::{ResultValue, TaskHandle, Tasks, ERROR_INTERNAL};

/// The task kind.
pub const KIND: &str = "Dump";
/// The task's phases and their weights.
pub const PHASES: &[(&str, u32)] = &[("Collect", 90), ("Finish", 10)];
/// Bytes of the cap kept for `summary.txt` and the end of the archive.
pub const RESERVE: u64 = 16 * 1024;
/// The largest configuration or `/proc` file read.
const MAX_SMALL_FILE: u64 = 1 << 20;
const META: &str = "meta.json";
/// How long a finished dump waits for its object to be on the bus before
/// the task completes anyway.
const BUS_WAIT: Duration = Duration::from_secs(5);
/// The `/proc` files copied to `system/`.
const PROC_FILES: &[&str] = &[
    "meminfo", "loadavg", "uptime", "version", "mounts", "cpuinfo",
];

/// One finished dump (also its `<id>.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpInfo {
    pub id: u64,
    /// `bmcd-dump-<host>-<id>-<YYYYMMDDTHHMMSSZ>.tar.gz`.
    pub file_name: String,
    pub size: u64,
    /// ms since the Unix epoch.
    pub time_ms: u64,
    /// SHA-256 of the archive, hex.
    pub digest: String,
    pub truncated: bool,
}

/// Why a dump call was refused or failed.
#[derive(Debug)]
pub enum DumpError {
    /// A dump is being made (its task id).
    Busy(u64),
    NotFound(u64),
    /// A file operation failed: what, and the error.
    Io(String, io::Error),
    /// The task could not be started (bmcd stopping, disk).
    Task(io::Error),
}

impl DumpError {
    /// The D-Bus error name (`org.bmcd.Error.*`).
    pub fn name(&self) -> &'static str {
        match self {
            DumpError::Busy(_) => "org.bmcd.Error.Busy",
            DumpError::NotFound(_) => "org.bmcd.Error.NotFound",
            DumpError::Io(..) | DumpError::Task(_) => "org.bmcd.Error.Internal",
        }
    }
}

impl fmt::Display for DumpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DumpError::Busy(task) => write!(
                f,
                "a dump is already being made (task {task}); wait for it to finish"
            ),
            DumpError::NotFound(id) => write!(
                f,
                "there is no dump {id} (the oldest are removed when new ones are made)"
            ),
            DumpError::Io(what, e) => write!(f, "{what}: {e}"),
            DumpError::Task(e) => write!(f, "cannot start the dump task: {e}"),
        }
    }
}

impl std::error::Error for DumpError {}

fn io_ctx(what: impl Into<String>) -> impl FnOnce(io::Error) -> DumpError {
    let what = what.into();
    move |e| DumpError::Io(what, e)
}

/// What a dump reads from.
pub struct Sources {
    pub logs: Arc<Logs>,
    pub cooling: Arc<Cooling>,
    pub firmware: Option<Arc<Firmware>>,
    /// The configuration file bmcd was started with.
    pub config_path: PathBuf,
    pub state_dir: PathBuf,
}

struct Inner {
    next_id: u64,
    /// The running dump's task id.
    running: Option<u64>,
    list: BTreeMap<u64, DumpInfo>,
}

/// The dump controller.
pub struct Dumps {
    dir: PathBuf,
    cfg: DumpsConfig,
    tasks: Arc<Tasks>,
    src: Sources,
    inner: Mutex<Inner>,
    list: watch::Sender<BTreeMap<u64, DumpInfo>>,
    /// Dump ids whose objects are on the bus (set by the bus follower).
    on_bus: watch::Sender<BTreeSet<u64>>,
    followed: AtomicBool,
}

#[derive(Serialize, Deserialize)]
struct Meta {
    next_id: u64,
}

fn archive_name(id: u64) -> String {
    format!("{id}.tar.gz")
}
fn info_name(id: u64) -> String {
    format!("{id}.json")
}
fn temp_name(id: u64) -> String {
    format!(".{id}.tar.gz.tmp")
}

impl Dumps {
    /// Open `state_dir/dumps` (created if missing): see the module
    /// documentation for what is repaired. Blocks (file I/O).
    pub fn open(
        cfg: DumpsConfig,
        tasks: Arc<Tasks>,
        src: Sources,
    ) -> Result<Arc<Dumps>, DumpError> {
        let dir = src.state_dir.join("dumps");
        fs::create_dir_all(&dir).map_err(io_ctx(format!("create {}", dir.display())))?;
        let mut next_id = match fs::read(dir.join(META)) {
            Ok(b) => serde_json::from_slice::<Meta>(&b).map_or_else(
                |e| {
                    log::error!("{}: {e}; ids continue after the dumps found", META);
                    1
                },
                |m| m.next_id,
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => 1,
            Err(e) => {
                log::error!("{}/{META}: {e}", dir.display());
                1
            }
        };
        let mut archives = BTreeSet::new();
        let mut infos = BTreeSet::new();
        let rd = fs::read_dir(&dir).map_err(io_ctx(format!("read {}", dir.display())))?;
        for ent in rd.flatten() {
            let name = ent.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.ends_with(".tmp") {
                log::warn!("dumps: removing {name}, left by an interrupted dump");
                if let Err(e) = fs::remove_file(ent.path()) {
                    log::error!("dumps: remove {name}: {e}");
                }
            } else if let Some(id) = name.strip_suffix(".tar.gz").and_then(|s| s.parse().ok()) {
                archives.insert(id);
            } else if let Some(id) = name
                .strip_suffix(".json")
                .and_then(|s| s.parse::<u64>().ok())
            {
                infos.insert(id);
            }
        }
        for id in infos.difference(&archives) {
            let _ = fs::remove_file(dir.join(info_name(*id)));
        }
        let mut list = BTreeMap::new();
        for &id in &archives {
            match load_info(&dir, id) {
                Ok(info) => {
                    list.insert(id, info);
                }
                Err(e) => log::error!("dump {id}: {e}; left out"),
            }
            next_id = next_id.max(id.saturating_add(1));
        }
        let (tx, _) = watch::channel(BTreeMap::new());
        let (on_bus, _) = watch::channel(BTreeSet::new());
        let d = Arc::new(Dumps {
            dir,
            cfg,
            tasks,
            src,
            inner: Mutex::new(Inner {
                next_id,
                running: None,
                list,
            }),
            list: tx,
            on_bus,
            followed: AtomicBool::new(false),
        });
        d.rotate();
        Ok(d)
    }

    pub fn max_dumps(&self) -> u32 {
        self.cfg.max_dumps
    }

    pub fn max_size(&self) -> u64 {
        self.cfg.max_size
    }

    /// The finished dumps, by id.
    pub fn subscribe(&self) -> watch::Receiver<BTreeMap<u64, DumpInfo>> {
        self.list.subscribe()
    }

    /// The bus side follows the list: a finished dump's task completes
    /// once its object is on the bus (see [`Dumps::on_bus`]).
    pub fn set_followed(&self) {
        self.followed.store(true, Ordering::SeqCst);
    }

    /// The bus side: these dumps have objects now.
    pub fn on_bus(&self, ids: BTreeSet<u64>) {
        self.on_bus.send_replace(ids);
    }

    fn publish(&self) {
        let list = lock(&self.inner).list.clone();
        self.list.send_if_modified(|l| {
            let changed = *l != list;
            *l = list;
            changed
        });
    }

    /// Keep the newest `max_dumps`; remove the others' files.
    fn rotate(&self) {
        let gone: Vec<u64> = {
            let mut g = lock(&self.inner);
            let keep = usize::try_from(self.cfg.max_dumps).unwrap_or(usize::MAX);
            let extra = g.list.len().saturating_sub(keep);
            let ids: Vec<u64> = g.list.keys().take(extra).copied().collect();
            for id in &ids {
                g.list.remove(id);
            }
            ids
        };
        for id in gone {
            self.remove_files(id);
            log::info!(
                "dump {id}: removed (only the newest {} are kept)",
                self.cfg.max_dumps
            );
        }
        self.publish();
    }

    fn remove_files(&self, id: u64) {
        for name in [archive_name(id), info_name(id)] {
            match fs::remove_file(self.dir.join(&name)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => log::error!("dumps: remove {name}: {e}"),
            }
        }
    }

    /// Start a dump as a task owned by `uid`; the task id. Refused with
    /// `Busy` while one is being made. Must be called within the tokio
    /// runtime (the work runs on a blocking thread).
    pub fn create(self: &Arc<Self>, uid: u32) -> Result<u64, DumpError> {
        let (id, handle) = {
            let mut g = lock(&self.inner);
            if let Some(task) = g.running {
                return Err(DumpError::Busy(task));
            }
            let id = g.next_id;
            let next = id
                .checked_add(1)
                .ok_or_else(|| DumpError::Io("dump ids".into(), io::Error::other("exhausted")))?;
            let meta = serde_json::to_vec(&Meta { next_id: next })
                .map_err(|e| DumpError::Io("dump ids".into(), io::Error::other(e)))?;
            write_atomic(&self.dir, META, &meta).map_err(io_ctx("save the next dump id"))?;
            g.next_id = next;
            let handle = self
                .tasks
                .start(KIND, uid, PHASES, true)
                .map_err(DumpError::Task)?;
            g.running = Some(handle.id());
            (id, handle)
        };
        let task = handle.id();
        let this = Arc::clone(self);
        tokio::spawn(async move { this.run(id, handle).await });
        Ok(task)
    }

    async fn run(self: Arc<Self>, id: u64, handle: TaskHandle) {
        let this = Arc::clone(&self);
        let worker = tokio::task::spawn_blocking(move || {
            let r = this.make(id, &handle);
            (handle, r)
        })
        .await;
        let (handle, r) = match worker {
            Ok(v) => v,
            Err(e) => {
                // The handle went with the worker: dropping it failed the task.
                log::error!("dump {id}: worker ended: {e}");
                let _ = fs::remove_file(self.dir.join(temp_name(id)));
                lock(&self.inner).running = None;
                return;
            }
        };
        let task = handle.id();
        match r {
            Ok(info) => {
                {
                    let mut g = lock(&self.inner);
                    g.list.insert(id, info.clone());
                    g.running = None;
                }
                self.rotate();
                if self.followed.load(Ordering::SeqCst) {
                    let mut rx = self.on_bus.subscribe();
                    let _ = tokio::time::timeout(BUS_WAIT, rx.wait_for(|s| s.contains(&id))).await;
                }
                self.src.logs.event(
                    LogSeverity::Informational,
                    "dump",
                    "Dump.Created",
                    format!(
                        "dump {id} made: {} bytes{}",
                        info.size,
                        if info.truncated { ", truncated" } else { "" }
                    ),
                    &[
                        ("dump", bmcd_api::dump_path(id)),
                        ("size", info.size.to_string()),
                        ("task", task.to_string()),
                    ],
                );
                let mut result = BTreeMap::new();
                result.insert(
                    dump_result::DUMP.to_owned(),
                    ResultValue::Path(bmcd_api::dump_path(id)),
                );
                result.insert(dump_result::SIZE.to_owned(), ResultValue::U64(info.size));
                result.insert(
                    dump_result::TRUNCATED.to_owned(),
                    ResultValue::Bool(info.truncated),
                );
                handle.complete(result);
            }
            Err(stop) => {
                let _ = fs::remove_file(self.dir.join(temp_name(id)));
                lock(&self.inner).running = None;
                match stop {
                    Stop::Cancelled => {
                        log::info!("dump {id}: cancelled");
                        handle.cancelled();
                    }
                    Stop::Failed(e) => {
                        log::error!("dump {id}: {e}");
                        handle.fail(ERROR_INTERNAL, &e);
                    }
                }
            }
        }
    }

    /// Write, fsync and rename the archive and its description (blocking).
    fn make(&self, id: u64, handle: &TaskHandle) -> Result<DumpInfo, Stop> {
        let time_ms = now_ms();
        let host = hostname();
        handle.phase("Collect");
        let tmp = self.dir.join(temp_name(id));
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| Stop::Failed(format!("{}: {e}", tmp.display())))?;
        let stop = || self.stopping(handle);
        let truncated = collect(
            &file,
            &self.src,
            id,
            &host,
            time_ms,
            self.cfg.max_size,
            handle,
            &stop,
        )?;
        handle.set_cancellable(false);
        handle.phase("Finish");
        file.sync_all()
            .map_err(|e| Stop::Failed(format!("{}: {e}", tmp.display())))?;
        drop(file);
        let (size, digest) =
            sha256_file(&tmp).map_err(|e| Stop::Failed(format!("{}: {e}", tmp.display())))?;
        let info = DumpInfo {
            id,
            file_name: file_name(&host, id, time_ms),
            size,
            time_ms,
            digest,
            truncated,
        };
        let bytes = serde_json::to_vec_pretty(&info).map_err(|e| Stop::Failed(e.to_string()))?;
        write_atomic(&self.dir, &info_name(id), &bytes)
            .map_err(|e| Stop::Failed(format!("save dump {id}'s description: {e}")))?;
        let target = self.dir.join(archive_name(id));
        fs::rename(&tmp, &target)
            .and_then(|()| File::open(&self.dir).and_then(|d| d.sync_all()))
            .map_err(|e| Stop::Failed(format!("{}: {e}", target.display())))?;
        Ok(info)
    }

    fn stopping(&self, handle: &TaskHandle) -> bool {
        handle.is_cancelling()
            || self
                .tasks
                .get(handle.id())
                .is_none_or(|rx| rx.borrow().state.is_final())
    }

    /// A finished dump.
    pub fn info(&self, id: u64) -> Option<DumpInfo> {
        lock(&self.inner).list.get(&id).cloned()
    }

    /// A read-only descriptor of dump `id` (`O_RDONLY | O_CLOEXEC`).
    pub fn open_file(&self, id: u64) -> Result<File, DumpError> {
        if !lock(&self.inner).list.contains_key(&id) {
            return Err(DumpError::NotFound(id));
        }
        match File::open(self.dir.join(archive_name(id))) {
            Ok(f) => Ok(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(DumpError::NotFound(id)),
            Err(e) => Err(DumpError::Io(format!("open dump {id}"), e)),
        }
    }

    /// Remove dump `id` (a descriptor already open keeps working).
    pub fn delete(&self, id: u64) -> Result<(), DumpError> {
        if lock(&self.inner).list.remove(&id).is_none() {
            return Err(DumpError::NotFound(id));
        }
        self.remove_files(id);
        log::info!("dump {id}: deleted");
        self.publish();
        Ok(())
    }
}

/// Read `<id>.json`; rebuild it from the archive when missing or damaged.
fn load_info(dir: &Path, id: u64) -> Result<DumpInfo, String> {
    if let Ok(b) = fs::read(dir.join(info_name(id))) {
        match serde_json::from_slice::<DumpInfo>(&b) {
            Ok(info) if info.id == id => return Ok(info),
            Ok(_) => log::error!("dump {id}: description names another id; rebuilt"),
            Err(e) => log::error!("dump {id}: description damaged ({e}); rebuilt"),
        }
    }
    let path = dir.join(archive_name(id));
    let time_ms = fs::metadata(&path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let (size, digest) = sha256_file(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let info = DumpInfo {
        id,
        file_name: file_name(&hostname(), id, time_ms),
        size,
        time_ms,
        digest,
        truncated: false,
    };
    if let Ok(bytes) = serde_json::to_vec_pretty(&info) {
        if let Err(e) = write_atomic(dir, &info_name(id), &bytes) {
            log::error!("dump {id}: save its description: {e}");
        }
    }
    Ok(info)
}

fn sha256_file(path: &Path) -> io::Result<(u64, String)> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, bmcd_image::hex(&h.finalize())))
}

/// This machine's name, for file names: `[A-Za-z0-9.-]`, others `_`.
fn hostname() -> String {
    let raw = nix::sys::utsname::uname()
        .map(|u| u.nodename().to_string_lossy().into_owned())
        .unwrap_or_default();
    let s: String = raw
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        "bmc".to_owned()
    } else {
        s
    }
}

/// `bmcd-dump-<host>-<id>-<YYYYMMDDTHHMMSSZ>.tar.gz`.
pub fn file_name(host: &str, id: u64, time_ms: u64) -> String {
    let (y, mo, d, h, mi, s) = civil(time_ms / 1000);
    format!("bmcd-dump-{host}-{id}-{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z.tar.gz")
}

/// UTC date and time of `secs` since the epoch (days-from-civil inverse,
/// H. Hinnant).
fn civil(secs: u64) -> (i64, u32, u32, u32, u32, u32) {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
    )
}

fn iso(time_ms: u64) -> String {
    let (y, mo, d, h, mi, s) = civil(time_ms / 1000);
    format!(
        "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:03}Z",
        time_ms % 1000
    )
}

/// Why the work stopped early.
enum Stop {
    Cancelled,
    Failed(String),
}

// ---------------------------------------------------------------------
// The capped, rollback-able output.

/// The output file as seen by one gzip member: counts what is written and
/// refuses to pass `limit` (then every later write fails too, until the
/// member is rolled back).
struct Counter {
    file: File,
    count: Rc<Cell<u64>>,
    limit: u64,
    refused: Rc<Cell<bool>>,
}

fn cap_error() -> io::Error {
    io::Error::other("the dump's size cap is reached")
}

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.refused.get() {
            return Err(cap_error());
        }
        let c = self.count.get();
        if c.saturating_add(buf.len() as u64) > self.limit {
            self.refused.set(true);
            return Err(cap_error());
        }
        let n = self.file.write(buf)?;
        self.count.set(c + n as u64);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// The tar builder's writer: one gzip member per part.
struct Members {
    file: File,
    enc: Option<GzEncoder<Counter>>,
    count: Rc<Cell<u64>>,
    refused: Rc<Cell<bool>>,
    mark: u64,
}

impl Write for Members {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.enc.as_mut() {
            Some(e) => e.write(buf),
            None => Err(io::Error::other("no gzip member is open")),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self.enc.as_mut() {
            Some(e) => e.flush(),
            None => Ok(()),
        }
    }
}

impl Members {
    fn new(file: &File) -> io::Result<Members> {
        Ok(Members {
            file: file.try_clone()?,
            enc: None,
            count: Rc::new(Cell::new(0)),
            refused: Rc::new(Cell::new(false)),
            mark: 0,
        })
    }

    /// Open a member that may end at most at byte `limit` of the file.
    fn begin(&mut self, limit: u64) -> io::Result<()> {
        self.mark = self.count.get();
        self.refused.set(false);
        let out = Counter {
            file: self.file.try_clone()?,
            count: self.count.clone(),
            limit,
            refused: self.refused.clone(),
        };
        self.enc = Some(GzEncoder::new(out, Compression::default()));
        Ok(())
    }

    /// Close the member: `Ok(true)` kept, `Ok(false)` it passed the cap
    /// and was cut off (the file ends where it began). `written` is the
    /// outcome of writing the part.
    fn end(&mut self, written: io::Result<()>) -> io::Result<bool> {
        let Some(enc) = self.enc.take() else {
            return Err(io::Error::other("no gzip member is open"));
        };
        let r = written.and_then(|()| enc.finish().map(|_| ()));
        match r {
            Ok(()) => Ok(true),
            Err(_) if self.refused.get() => {
                // The encoder is gone (its drop wrote nothing: refused).
                self.file.set_len(self.mark)?;
                self.file.seek(SeekFrom::Start(self.mark))?;
                self.count.set(self.mark);
                self.refused.set(false);
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }
}

/// Exactly `size` bytes of `inner`: cut there, padded with `pad` if it
/// ends early (a file that shrank, a log entry rotated out), so the tar
/// header's size is always right.
struct Exact<R> {
    inner: R,
    left: u64,
    pad: u8,
    ended: bool,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = usize::try_from(self.left)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = if self.ended {
            0
        } else {
            self.inner.read(&mut buf[..want])?
        };
        let n = if n == 0 {
            self.ended = true;
            buf[..want].fill(self.pad);
            want
        } else {
            n
        };
        self.left -= n as u64;
        Ok(n)
    }
}

/// `inner`, asking `stop` every [`CHECK_EVERY`] bytes, so a cancel is
/// seen within a big part.
struct Checked<'a, R> {
    inner: R,
    stop: &'a dyn Fn() -> bool,
    since: u64,
}

const CHECK_EVERY: u64 = 1 << 20;

impl<R: Read> Read for Checked<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.since >= CHECK_EVERY {
            self.since = 0;
            if (self.stop)() {
                return Err(io::Error::other("dump cancelled"));
            }
        }
        let n = self.inner.read(buf)?;
        self.since += n as u64;
        Ok(n)
    }
}

// ---------------------------------------------------------------------
// The logs as JSON lines.

fn entry_json(e: &Entry) -> Value {
    use bmcd_api::entry_keys as k;
    let data: Map<String, Value> = e
        .data
        .iter()
        .map(|(a, b)| (a.clone(), Value::String(b.clone())))
        .collect();
    let mut m = Map::new();
    m.insert(k::ID.into(), json!(e.id));
    m.insert(k::TIME.into(), json!(e.time_us));
    m.insert(
        k::SEVERITY.into(),
        json!(LogSeverity::from_level(e.severity).map_or("Debug", |s| s.as_str())),
    );
    m.insert(k::SOURCE.into(), json!(e.source));
    m.insert(k::MESSAGE_ID.into(), json!(e.message_id));
    m.insert(k::MESSAGE.into(), json!(e.message));
    m.insert(k::DATA.into(), Value::Object(data));
    Value::Object(m)
}

/// The entries of `log` with ids in `cursor..=last`, a page at a time.
struct LogLines<'a> {
    log: &'a Log,
    cursor: u64,
    last: u64,
    done: bool,
    buf: Vec<u8>,
    pos: usize,
    stop: &'a dyn Fn() -> bool,
    /// Entries emitted.
    entries: u64,
}

impl<'a> LogLines<'a> {
    fn new(log: &'a Log, first: u64, last: u64, stop: &'a dyn Fn() -> bool) -> Self {
        LogLines {
            log,
            cursor: first,
            last,
            done: first > last,
            buf: Vec::new(),
            pos: 0,
            stop,
            entries: 0,
        }
    }

    /// The next page's lines, or `None` at the end.
    fn next_page(&mut self) -> io::Result<Option<Vec<u8>>> {
        if self.done {
            return Ok(None);
        }
        if (self.stop)() {
            return Err(io::Error::other("dump cancelled"));
        }
        let page = self
            .log
            .store
            .page(self.cursor, MAX_PAGE, &Query::default())
            .map_err(|e| io::Error::other(format!("{} log: {e}", self.log.name)))?;
        let mut out = Vec::new();
        for e in &page.entries {
            if e.id > self.last {
                self.done = true;
                break;
            }
            serde_json::to_writer(&mut out, &entry_json(e)).map_err(io::Error::other)?;
            out.push(b'\n');
            self.entries += 1;
        }
        if page.end || page.next_cursor <= self.cursor || page.next_cursor > self.last {
            self.done = true;
        }
        self.cursor = page.next_cursor;
        Ok(Some(out))
    }
}

impl Read for LogLines<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.buf.len() {
            match self.next_page()? {
                Some(b) => {
                    self.buf = b;
                    self.pos = 0;
                }
                None => return Ok(0),
            }
        }
        let n = (self.buf.len() - self.pos).min(buf.len());
        buf[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

// ---------------------------------------------------------------------
// Collecting.

/// How one part went, for the summary.
struct PartNote {
    name: String,
    bytes: u64,
    status: String,
}

/// Redact secrets in the configuration (see the module documentation).
pub fn redact(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, val) in m.iter_mut() {
                // A number or a boolean is a limit or a switch
                // (`max_password_bytes`), never a secret.
                if is_secret_key(k) && !matches!(val, Value::Number(_) | Value::Bool(_)) {
                    *val = Value::String("<redacted>".into());
                } else {
                    redact(val);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact),
        _ => {}
    }
}

/// Whether the value of config key `k` is withheld from dumps.
pub fn is_secret_key(k: &str) -> bool {
    let k = k.to_ascii_lowercase();
    if k.ends_with("_dir") {
        return false;
    }
    [
        "password",
        "passwd",
        "secret",
        "token",
        "credential",
        "private",
        "key",
    ]
    .iter()
    .any(|w| k.contains(w))
}

/// Open `path` for reading if it is a regular file: opened non-blocking
/// (a FIFO swapped in cannot stall the dump) and checked on the open file.
fn open_regular(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    Ok(f)
}

/// A small file, whole (at most `MAX_SMALL_FILE` bytes).
fn read_small(path: &Path) -> io::Result<Vec<u8>> {
    let f = open_regular(path)?;
    let mut buf = Vec::new();
    f.take(MAX_SMALL_FILE + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > MAX_SMALL_FILE {
        return Err(io::Error::other("larger than 1 MiB"));
    }
    Ok(buf)
}

fn config_part(path: &Path) -> Result<Vec<u8>, String> {
    let bytes = read_small(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut v: Value = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{}: not JSON ({e}); left out", path.display()))?;
    redact(&mut v);
    serde_json::to_vec_pretty(&v).map_err(|e| e.to_string())
}

fn sensors_part(cooling: &Cooling) -> Vec<u8> {
    let s = cooling.subscribe().borrow().clone();
    let temps: Vec<Value> = s
        .temps
        .iter()
        .map(|(n, t)| json!({"sensor": n, "celsius": if t.is_finite() { json!(t) } else { Value::Null }}))
        .collect();
    let fans: Vec<Value> = s
        .fans
        .iter()
        .map(|f| {
            json!({"fan": f.name, "rpm": f.rpm, "pwm": f.pwm, "present": f.present,
                   "health": f.health.as_str()})
        })
        .collect();
    let v = json!({
        "mode": s.mode.as_str(),
        "manual_level": s.manual_level,
        "manual_fans": s.manual_fans,
        "manual_expires_ms": s.manual_expires_ms,
        "auto_level": s.auto_level,
        "failsafe_level": s.failsafe_level,
        "failsafe_reason": s.failsafe_reason,
        "temperatures": temps,
        "fans": fans,
    });
    serde_json::to_vec_pretty(&v).unwrap_or_default()
}

fn firmware_part(fw: &Firmware) -> Vec<u8> {
    let s = fw.snapshot();
    let slots: Vec<Value> = s
        .slots
        .iter()
        .map(|x| {
            json!({"slot": x.name, "component": x.component, "state": x.state.as_str(),
                   "version": x.version, "build_date": x.build_date, "digest": x.digest,
                   "size": x.size, "capacity": x.capacity, "install_time_ms": x.install_time_ms})
        })
        .collect();
    let v = json!({
        "machine": s.machine,
        "booted": s.booted,
        "boot_next": s.boot_next,
        "update_task": s.update_task,
        "slots": slots,
    });
    serde_json::to_vec_pretty(&v).unwrap_or_default()
}

fn uname_part() -> Result<Vec<u8>, String> {
    let u = nix::sys::utsname::uname().map_err(|e| e.to_string())?;
    Ok(format!(
        "sysname: {}\nnodename: {}\nrelease: {}\nversion: {}\nmachine: {}\n",
        u.sysname().to_string_lossy(),
        u.nodename().to_string_lossy(),
        u.release().to_string_lossy(),
        u.version().to_string_lossy(),
        u.machine().to_string_lossy()
    )
    .into_bytes())
}

/// The JSON files at the top of the state directory, by name.
fn state_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.ends_with(".json") && !n.starts_with('.'))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// One part to write.
enum Body<'a> {
    Bytes(Vec<u8>),
    File(File, u64),
    Log(&'a Log),
}

struct Writer<'a> {
    tar: tar::Builder<Members>,
    root: String,
    mtime: u64,
    cap: u64,
    notes: Vec<PartNote>,
    truncated: bool,
    stop: &'a dyn Fn() -> bool,
}

impl Writer<'_> {
    fn add_raw(
        &mut self,
        name: &str,
        size: u64,
        body: &mut dyn Read,
        limit: u64,
    ) -> Result<bool, Stop> {
        let mut h = tar::Header::new_gnu();
        h.set_size(size);
        h.set_mode(0o644);
        h.set_mtime(self.mtime);
        h.set_entry_type(tar::EntryType::Regular);
        let path = format!("{}/{name}", self.root);
        let fail = |e: io::Error| Stop::Failed(format!("writing the dump: {e}"));
        self.tar.get_mut().begin(limit).map_err(fail)?;
        let body = Exact {
            inner: Checked {
                inner: body,
                stop: self.stop,
                since: 0,
            },
            left: size,
            pad: b'\n',
            ended: false,
        };
        let written = self.tar.append_data(&mut h, &path, body);
        if (self.stop)() {
            let _ = self.tar.get_mut().end(Err(io::Error::other("cancelled")));
            return Err(Stop::Cancelled);
        }
        self.tar.get_mut().end(written).map_err(fail)
    }

    /// Add one part; a part that would pass the cap is left out.
    fn add(&mut self, name: &str, body: Result<Body<'_>, String>) -> Result<(), Stop> {
        if (self.stop)() {
            return Err(Stop::Cancelled);
        }
        let limit = self.cap.saturating_sub(RESERVE);
        let (size, kept, extra) = match body {
            Err(why) => {
                self.notes.push(PartNote {
                    name: name.into(),
                    bytes: 0,
                    status: format!("missing: {why}"),
                });
                return Ok(());
            }
            Ok(Body::Bytes(b)) => {
                let n = b.len() as u64;
                (
                    n,
                    self.add_raw(name, n, &mut b.as_slice(), limit)?,
                    String::new(),
                )
            }
            Ok(Body::File(mut f, n)) => (n, self.add_raw(name, n, &mut f, limit)?, String::new()),
            Ok(Body::Log(log)) => {
                // Two passes over the same ids: the size first (the tar
                // header precedes the data), then the lines. An entry
                // rotated out in between leaves blank lines at the end.
                let stats = log.store.stats();
                let (first, last) = (stats.first_id, stats.last_id);
                let mut counter = LogLines::new(log, first, last, self.stop);
                let size = io::copy(&mut counter, &mut io::sink()).map_err(|e| {
                    if (self.stop)() {
                        Stop::Cancelled
                    } else {
                        Stop::Failed(e.to_string())
                    }
                })?;
                let n = counter.entries;
                let mut lines = LogLines::new(log, first, last, self.stop);
                let kept = self.add_raw(name, size, &mut lines, limit)?;
                let extra = if n == 0 {
                    " (no entries)".to_owned()
                } else {
                    format!(
                        " ({n} {}, ids {first}..={last})",
                        if n == 1 { "entry" } else { "entries" }
                    )
                };
                (size, kept, extra)
            }
        };
        let status = if kept {
            format!("included{extra}")
        } else {
            self.truncated = true;
            format!(
                "left out: the size cap ({} bytes) would be passed{extra}",
                self.cap
            )
        };
        self.notes.push(PartNote {
            name: name.into(),
            bytes: size,
            status,
        });
        Ok(())
    }
}

/// Write the archive into `file`; whether it was truncated.
#[allow(clippy::too_many_arguments)]
fn collect(
    file: &File,
    src: &Sources,
    id: u64,
    host: &str,
    time_ms: u64,
    cap: u64,
    handle: &TaskHandle,
    stop: &dyn Fn() -> bool,
) -> Result<bool, Stop> {
    let members = Members::new(file).map_err(|e| Stop::Failed(e.to_string()))?;
    let mut w = Writer {
        tar: tar::Builder::new(members),
        root: format!("bmcd-dump-{id}"),
        mtime: time_ms / 1000,
        cap,
        notes: Vec::new(),
        truncated: false,
        stop,
    };
    let state = state_files(&src.state_dir);
    let total = 6 + state.len() + PROC_FILES.len();
    let mut done = 0usize;
    let mut tick = || {
        done += 1;
        handle.progress(done as f64 / total as f64);
    };

    w.add(
        "config.json",
        config_part(&src.config_path).map(Body::Bytes),
    )?;
    tick();
    w.add("sensors.json", Ok(Body::Bytes(sensors_part(&src.cooling))))?;
    tick();
    w.add(
        "firmware.json",
        src.firmware
            .as_ref()
            .map(|fw| Body::Bytes(firmware_part(fw)))
            .ok_or_else(|| "no firmware storage (see bmcd's log)".to_owned()),
    )?;
    tick();
    w.add("system/uname.txt", uname_part().map(Body::Bytes))?;
    tick();
    for p in &state {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let body = open_regular(p)
            .and_then(|f| {
                let n = f.metadata()?.len();
                Ok(Body::File(f, n))
            })
            .map_err(|e| e.to_string());
        w.add(&format!("state/{name}"), body)?;
        tick();
    }
    w.add("logs/event.jsonl", Ok(Body::Log(&src.logs.event)))?;
    tick();
    w.add("logs/audit.jsonl", Ok(Body::Log(&src.logs.audit)))?;
    tick();
    for name in PROC_FILES {
        let p = Path::new("/proc").join(name);
        let body = read_small(&p)
            .map(Body::Bytes)
            .map_err(|e| format!("{}: {e}", p.display()));
        w.add(&format!("system/{name}"), body)?;
        tick();
    }

    let summary = summary(&w, id, host, time_ms);
    let fail = |e: io::Error| Stop::Failed(format!("writing the dump: {e}"));
    let n = summary.len() as u64;
    let limit = cap.saturating_sub(1024);
    if !w.add_raw("summary.txt", n, &mut summary.as_slice(), limit)? {
        w.truncated = true;
        log::error!("dump {id}: summary.txt passed the size cap; left out");
    }
    // The end of the archive (two zero blocks), in its own member.
    w.tar.get_mut().begin(cap).map_err(fail)?;
    let r = w.tar.finish();
    if !w.tar.get_mut().end(r).map_err(fail)? {
        return Err(Stop::Failed(
            "the end of the archive does not fit in the size cap".into(),
        ));
    }
    Ok(w.truncated)
}

fn summary(w: &Writer, id: u64, host: &str, time_ms: u64) -> Vec<u8> {
    let now = now_ms();
    let mut s = String::new();
    s.push_str(&format!("bmcd diagnostic dump {id}\n"));
    s.push_str(&format!("host: {host}\n"));
    s.push_str(&format!("bmcd version: {}\n", env!("CARGO_PKG_VERSION")));
    s.push_str(&format!("started: {} ({time_ms} ms)\n", iso(time_ms)));
    s.push_str(&format!("collected: {} ({now} ms)\n", iso(now)));
    s.push_str(&format!(
        "size cap: {} bytes (compressed; {RESERVE} kept for this summary and the end)\n",
        w.cap
    ));
    s.push_str(&format!(
        "truncated: {}\n\n",
        if w.truncated { "yes" } else { "no" }
    ));
    s.push_str("parts (uncompressed bytes, status):\n");
    for n in &w.notes {
        s.push_str(&format!("  {}  {}  {}\n", n.name, n.bytes, n.status));
    }
    let left: Vec<&str> = w
        .notes
        .iter()
        .filter(|n| n.status.starts_with("left out"))
        .map(|n| n.name.as_str())
        .collect();
    if !left.is_empty() {
        s.push_str(&format!(
            "\nleft out by the size cap: {}\n",
            left.join(", ")
        ));
    }
    s.push_str(
        "\nnotes:\n\
         - config.json: the configuration file as on disk now, re-serialized; the value of\n\
         \x20 every key whose name contains password, passwd, secret, token, credential,\n\
         \x20 private or key is \"<redacted>\" unless it is a number or a boolean; keys\n\
         \x20 ending in _dir are kept (keys_dir is a directory of public keys).\n\
         - logs/*.jsonl: every kept entry, oldest first, one JSON object per line (Id, Time\n\
         \x20 in µs, Severity, Source, MessageId, Message, Data).\n\
         - state/: the JSON state files at the top of the state directory.\n\
         - the archive is one gzip member per part (a valid gzip stream).\n",
    );
    s.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), (1970, 1, 1, 0, 0, 0));
        // 2026-12-03T13:00:41Z
        assert_eq!(civil(1_796_302_841), (2026, 12, 3, 13, 0, 41));
        // 2000-02-29T23:59:59Z
        assert_eq!(civil(951_868_799), (2000, 2, 29, 23, 59, 59));
        assert_eq!(
            file_name("h", 7, 1_796_302_841_000),
            "bmcd-dump-h-7-20261203T130041Z.tar.gz"
        );
    }

    #[test]
    fn secrets_are_redacted_but_not_key_dirs() {
        let mut v = json!({"auth": {"pam_service": "bmcd", "password": "x",
            "max_password_bytes": 512, "keys": ["a"]},
            "firmware": {"keys_dir": "/etc/bmcd/keys", "private_key": "p", "api_token": "t"},
            "list": [{"Secret": "s", "secret_len": 4}]});
        redact(&mut v);
        assert_eq!(v["auth"]["password"], "<redacted>");
        assert_eq!(v["auth"]["pam_service"], "bmcd");
        assert_eq!(v["auth"]["max_password_bytes"], 512);
        assert_eq!(v["auth"]["keys"], "<redacted>");
        assert_eq!(v["firmware"]["keys_dir"], "/etc/bmcd/keys");
        assert_eq!(v["firmware"]["private_key"], "<redacted>");
        assert_eq!(v["firmware"]["api_token"], "<redacted>");
        assert_eq!(v["list"][0]["Secret"], "<redacted>");
        assert_eq!(v["list"][0]["secret_len"], 4);
    }

    #[test]
    fn error_names_are_the_contract_names() {
        for e in [
            DumpError::Busy(1),
            DumpError::NotFound(1),
            DumpError::Task(io::Error::other("x")),
        ] {
            assert!(bmcd_api::Error::from_name(e.name(), "").is_some(), "{e}");
        }
    }

    /// The log reader pages through more than one page, oldest first, and
    /// stops at the last id it was given (entries appended later are left
    /// for the next dump).
    #[test]
    fn log_lines_page_through_every_entry() {
        use crate::logstore::{Durability, Limits, NewEntry};
        let dir = std::env::temp_dir().join(format!("bmcd-dump-lines-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let limits = Limits {
            max_entries: 10_000,
            max_bytes: 64 << 20,
            segment_bytes: 1 << 20,
        };
        let (log, _) = Log::open("event", &dir, limits).unwrap();
        let n = u64::from(MAX_PAGE) * 2 + 500;
        let e = |i: u64| NewEntry {
            time_us: i,
            severity: 5,
            source: "sim".into(),
            message_id: "Sim.Event".into(),
            message: format!("event {i}"),
            data: vec![("n".into(), i.to_string())],
        };
        log.append_batch((1..=n).map(e).collect(), Durability::Deferred)
            .unwrap();
        let stats = log.store.stats();
        log.append(e(n + 1), Durability::Deferred).unwrap();
        let stop = || false;
        let mut r = LogLines::new(&log, stats.first_id, stats.last_id, &stop);
        let mut text = String::new();
        r.read_to_string(&mut text).unwrap();
        let ids: Vec<u64> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["Id"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(ids, (1..=n).collect::<Vec<_>>());
        assert_eq!(r.entries, n);
        let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(first["Severity"], "Notice");
        assert_eq!(first["Data"]["n"], "1");
        // A cancel is seen at the next page.
        let stop = || true;
        let mut r = LogLines::new(&log, stats.first_id, stats.last_id, &stop);
        assert!(r.read_to_string(&mut String::new()).is_err());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn exact_pads_and_cuts() {
        let mut out = Vec::new();
        let mut r = Exact {
            inner: &b"abc"[..],
            left: 5,
            pad: b'\n',
            ended: false,
        };
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"abc\n\n");
        let mut out = Vec::new();
        let mut r = Exact {
            inner: &b"abcdef"[..],
            left: 2,
            pad: b'\n',
            ended: false,
        };
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"ab");
    }
}
