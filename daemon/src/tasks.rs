//! The task manager: long-running work (a power transition, a firmware
//! update, a dump) that clients watch as `org.bmcd.Task1` objects. Pure
//! Rust and tokio; the bus adapter publishes what this module holds.
//!
//! # Life of a task
//!
//! [`Tasks::start`] allocates the next id and returns a [`TaskHandle`] owned
//! by the work. A task starts `Pending` and becomes `Running` when the work
//! enters its first phase (or reports progress). `Cancel` (allowed to the
//! owner and to administrators, only while `Cancellable`) makes it
//! `Cancelling` and wakes [`TaskHandle::cancel_requested`]; the work then
//! ends it with [`TaskHandle::cancelled`] at its next safe point (or
//! completes or fails anyway). The handle ends the task exactly once:
//! `complete` → `Completed`, `fail` → `Failed`, `cancelled` → `Cancelled`;
//! a handle dropped without a result → `Failed`
//! (`org.bmcd.Error.Internal`). [`Tasks::shutdown`] (clean stop) and a
//! restart after a crash make every unfinished task `Interrupted`.
//!
//! # Invariants
//!
//! - Ids start at 1 and are never reused, even across restarts and
//!   `kill -9`: `next_id` is on disk before a new task's id is returned.
//! - A final state (Completed, Failed, Cancelled, Interrupted) never
//!   changes again; later calls on its handle do nothing.
//! - `Progress` never goes down. It is computed from the declared phases'
//!   weights (entering phase *i* gives the sum of the weights before it, as
//!   a percent of all weights) plus the fraction reported within the
//!   current phase. It stays at most 99 until the task is `Completed`,
//!   which sets 100: 100 means done.
//! - `EndTime` is 0 exactly while the task is not final; `Error` is two
//!   empty strings unless the task failed, was cancelled or interrupted.
//! - Texts are bounded: kind [`MAX_KIND_LEN`], phase and messages
//!   [`MAX_TEXT_LEN`], error texts [`MAX_ERROR_LEN`] bytes (cut at a char
//!   boundary); `Messages` keeps the last `MAX_TASK_MESSAGES` in a
//!   fixed-capacity `heapless::Deque`.
//! - Events on the channel: `Added` once per task, before any `Removed` for
//!   it; both are sent under the same lock, so they arrive in order.
//!
//! # Persistence
//!
//! `tasks.json` in the state directory (`{"version":1,"next_id":…,
//! "tasks":[…]}`), written atomically with [`crate::store::write_atomic`]:
//! when a task starts (before its id is returned), on every change of
//! state, on every phase change, when tasks expire and at shutdown. Progress
//! ticks, messages and heartbeats change only the in-memory snapshot (they
//! reach the disk with the next write), so a chatty task does not wear the
//! flash. Writes happen on the caller's thread (a small file, one fsync)
//! and are serialized by their own lock, taken before the state lock and
//! never under it. A missing file is a fresh start; an unreadable, oversize
//! or corrupt one is set aside as `tasks.json.corrupt-<n>` (n from 1 to
//! [`MAX_CORRUPT_FILES`], the last one replaced when all are taken) and
//! bmcd starts without old tasks, with a `next_id` that cannot collide: the
//! `next_id` (and ids) still readable in the damaged bytes when there is
//! one, else the current time in milliseconds.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bmcd_api::{TaskState, MAX_TASK_MESSAGES};
use heapless::Deque;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch, Notify};

use crate::clock::now_ms;
use crate::store::write_atomic;
use crate::sync::lock;

/// The state file in the state directory.
pub const FILE: &str = "tasks.json";
const VERSION: u32 = 1;
/// Largest state file read (1000 tasks with full message buffers fit).
pub const MAX_FILE_BYTES: u64 = 8 << 20;
/// How many set-aside corrupt files are kept at most.
pub const MAX_CORRUPT_FILES: u32 = 8;
/// Longest kept `Kind`, in bytes.
pub const MAX_KIND_LEN: usize = 64;
/// Longest kept `Phase`, `Message` and entry of `Messages`, in bytes.
pub const MAX_TEXT_LEN: usize = 256;
/// Longest kept error name and error text, in bytes.
pub const MAX_ERROR_LEN: usize = 1024;
/// The expiry loop re-reads the clock at least this often (a wall clock
/// set backwards would otherwise delay expiry by as much).
const MAX_EXPIRY_WAIT: Duration = Duration::from_secs(3600);

/// Error names a task carries (checked against `bmcd_api::ERROR_NAMES`).
pub const ERROR_INTERRUPTED: &str = "org.bmcd.Error.Interrupted";
pub const ERROR_CANCELLED: &str = "org.bmcd.Error.Cancelled";
pub const ERROR_INTERNAL: &str = "org.bmcd.Error.Internal";

/// Upper bounds of [`TasksConfig`].
pub const MAX_KEEP_S: u64 = 30 * 86_400;
pub const MAX_KEEP_COUNT: usize = 1000;

/// Configuration section `tasks`: how long finished tasks stay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TasksConfig {
    /// A finished task is removed this many seconds after it ended.
    pub keep_s: u64,
    /// At most this many finished tasks are kept (the newest ones).
    pub keep_count: usize,
}

impl Default for TasksConfig {
    fn default() -> Self {
        TasksConfig {
            keep_s: 86_400,
            keep_count: 32,
        }
    }
}

impl TasksConfig {
    /// Range checks; the error names the field (within section `tasks`).
    pub fn validate(&self) -> Result<(), String> {
        if self.keep_s == 0 || self.keep_s > MAX_KEEP_S {
            return Err(format!(
                "keep_s: {} is out of range 1..={MAX_KEEP_S} (seconds, at most 30 days)",
                self.keep_s
            ));
        }
        if self.keep_count == 0 || self.keep_count > MAX_KEEP_COUNT {
            return Err(format!(
                "keep_count: {} is out of range 1..={MAX_KEEP_COUNT}",
                self.keep_count
            ));
        }
        Ok(())
    }
}

/// A value of a task's `Result` (the bus maps it to a variant).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ResultValue {
    Str(String),
    U64(u64),
    I64(i64),
    Bool(bool),
    /// An object path (`o`), e.g. the dump a `Dump` task made.
    Path(String),
}

/// Everything a `Task1` object shows; times in ms since the Unix epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskSnapshot {
    pub id: u64,
    pub kind: String,
    pub state: TaskState,
    pub progress: u8,
    pub phase: String,
    pub message: String,
    pub messages: Vec<String>,
    pub start_ms: u64,
    pub end_ms: u64,
    pub last_progress_ms: u64,
    pub cancellable: bool,
    pub owner_uid: u32,
    /// Error name and text; both empty when none.
    pub error: (String, String),
    pub result: BTreeMap<String, ResultValue>,
}

/// What the bus side learns about the set of tasks.
#[derive(Debug)]
pub enum TaskEvent {
    /// A task exists (started, or loaded at open): register its object.
    Added(u64, watch::Receiver<TaskSnapshot>),
    /// A finished task expired: remove its object.
    Removed(u64),
}

/// Why `Cancel` was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskError {
    NotFound(u64),
    NotOwner,
    NotCancellable,
    Finished(TaskState),
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskError::NotFound(id) => write!(
                f,
                "there is no task {id} (finished tasks are removed after a while; list them \
                 to see which remain)"
            ),
            TaskError::NotOwner => {
                f.write_str("only the user who started the task or an administrator may cancel it")
            }
            TaskError::NotCancellable => f.write_str(
                "the task cannot be cancelled at this step; wait for it to finish, or retry \
                 when its Cancellable property is true",
            ),
            TaskError::Finished(state) => {
                write!(
                    f,
                    "the task has already finished ({state}); nothing to cancel"
                )
            }
        }
    }
}

impl std::error::Error for TaskError {}

type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// What the work declared and did, beside the published snapshot.
struct Work {
    phases: Vec<(&'static str, u32)>,
    current: Option<usize>,
    messages: Deque<String, MAX_TASK_MESSAGES>,
    /// Who asked for the cancel, for the Cancelled error text.
    canceller: Option<u32>,
}

impl Work {
    fn new(phases: &[(&'static str, u32)]) -> Work {
        Work {
            phases: phases.to_vec(),
            current: None,
            messages: Deque::new(),
            canceller: None,
        }
    }

    /// Overall percent (0..=99) at `fraction` (0.0..=1.0) of the current phase.
    fn percent(&self, fraction: f64) -> u8 {
        let total: u64 = self.phases.iter().map(|p| u64::from(p.1)).sum();
        let pct = if total == 0 {
            fraction * 100.0
        } else {
            let Some(i) = self.current else { return 0 };
            let before: u64 = self.phases[..i].iter().map(|p| u64::from(p.1)).sum();
            let w = self.phases.get(i).map_or(0, |p| u64::from(p.1));
            (before as f64 + fraction * w as f64) * 100.0 / total as f64
        };
        // The epsilon keeps 0.29 * 100 at 29, not 28.999….
        (pct + 1e-9).floor().clamp(0.0, 99.0) as u8
    }
}

struct Entry {
    tx: watch::Sender<TaskSnapshot>,
    work: Work,
    /// `Added` was sent (so `Removed` may be).
    announced: bool,
}

struct Inner {
    next_id: u64,
    tasks: BTreeMap<u64, Entry>,
    /// After `shutdown`: no new task.
    stopped: bool,
}

/// What an update did, which decides persisting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    None,
    /// Snapshot changed; in memory only.
    Quiet,
    /// State or phase changed: write the file.
    Persist,
    /// The task reached a final state: write, and wake the expiry loop.
    Finish,
}

/// The task manager, shared as `Arc<Tasks>`.
pub struct Tasks {
    dir: PathBuf,
    cfg: TasksConfig,
    clock: Clock,
    inner: Mutex<Inner>,
    /// Serializes file writes; taken before `inner`, never under it.
    io: Mutex<()>,
    events: mpsc::UnboundedSender<TaskEvent>,
    finished: Notify,
}

/// `s` cut to at most `max` bytes at a char boundary.
fn bounded(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

#[derive(Serialize)]
struct FileOut<'a> {
    version: u32,
    next_id: u64,
    tasks: Vec<&'a TaskSnapshot>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileIn {
    version: u32,
    next_id: u64,
    tasks: Vec<TaskSnapshot>,
}

/// Read the state file: `Ok(None)` when missing, `Err(reason)` when it
/// cannot be used (with whatever bytes were read, for salvage).
fn read_file(path: &Path) -> Result<Option<FileIn>, (String, Vec<u8>)> {
    use std::os::unix::fs::OpenOptionsExt;
    let check = |m: &fs::Metadata| {
        if !m.is_file() {
            Err("is not a regular file".to_owned())
        } else if m.len() > MAX_FILE_BYTES {
            Err(format!("is larger than {MAX_FILE_BYTES} bytes"))
        } else {
            Ok(())
        }
    };
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err((e.to_string(), Vec::new())),
        Ok(m) => check(&m).map_err(|e| (e, Vec::new()))?,
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| (e.to_string(), Vec::new()))?;
    check(&file.metadata().map_err(|e| (e.to_string(), Vec::new()))?)
        .map_err(|e| (e, Vec::new()))?;
    let mut buf = Vec::new();
    if let Err(e) = file.take(MAX_FILE_BYTES + 1).read_to_end(&mut buf) {
        return Err((e.to_string(), buf));
    }
    if buf.len() as u64 > MAX_FILE_BYTES {
        return Err((format!("is larger than {MAX_FILE_BYTES} bytes"), buf));
    }
    match serde_json::from_slice::<FileIn>(&buf) {
        Ok(f) if f.version == VERSION => Ok(Some(f)),
        Ok(f) => Err((format!("unknown version {}", f.version), buf)),
        Err(e) => Err((e.to_string(), buf)),
    }
}

/// The largest number written after `"key"` and a colon in `bytes`.
fn salvage_number(bytes: &[u8], key: &str) -> Option<u64> {
    let pat = format!("\"{key}\"");
    let pat = pat.as_bytes();
    let mut best = None;
    let mut i = 0;
    while i + pat.len() <= bytes.len() {
        if &bytes[i..i + pat.len()] != pat {
            i += 1;
            continue;
        }
        let mut j = i + pat.len();
        while j < bytes.len() && bytes[j].is_ascii_whitespace() {
            j += 1;
        }
        if j < bytes.len() && bytes[j] == b':' {
            j += 1;
            while j < bytes.len() && bytes[j].is_ascii_whitespace() {
                j += 1;
            }
            let start = j;
            while j < bytes.len() && bytes[j].is_ascii_digit() {
                j += 1;
            }
            let n = std::str::from_utf8(&bytes[start..j])
                .ok()
                .and_then(|s| s.parse::<u64>().ok());
            if let Some(n) = n {
                best = best.max(Some(n));
            }
        }
        i = j.max(i + 1);
    }
    best
}

/// A `next_id` that no id of a damaged file can have used.
fn salvage_next_id(bytes: &[u8], now: u64) -> u64 {
    let after_ids = salvage_number(bytes, "id").map(|id| id.saturating_add(1));
    match salvage_number(bytes, "next_id") {
        Some(n) => n.max(after_ids.unwrap_or(1)).max(1),
        // No next_id left: the clock in ms is above any count of tasks
        // a BMC has started.
        None => now.max(after_ids.unwrap_or(1)).max(1),
    }
}

/// Move a damaged state file out of the way, as `tasks.json.corrupt-<n>`.
fn set_aside(dir: &Path) -> io::Result<PathBuf> {
    let mut target = dir.join(format!("{FILE}.corrupt-{MAX_CORRUPT_FILES}"));
    for n in 1..=MAX_CORRUPT_FILES {
        let p = dir.join(format!("{FILE}.corrupt-{n}"));
        if fs::symlink_metadata(&p).is_err() {
            target = p;
            break;
        }
    }
    if fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir()) {
        fs::remove_dir_all(&target)?;
    }
    fs::rename(dir.join(FILE), &target)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", target.display())))?;
    Ok(target)
}

/// A loaded task as it comes back: bounded texts; unfinished → Interrupted.
/// Returns whether it changed.
fn revive(t: &mut TaskSnapshot, now: u64) -> bool {
    let before = t.clone();
    t.kind = bounded(&t.kind, MAX_KIND_LEN);
    t.phase = bounded(&t.phase, MAX_TEXT_LEN);
    t.message = bounded(&t.message, MAX_TEXT_LEN);
    let skip = t.messages.len().saturating_sub(MAX_TASK_MESSAGES);
    t.messages = t.messages[skip..]
        .iter()
        .map(|m| bounded(m, MAX_TEXT_LEN))
        .collect();
    t.error = (
        bounded(&t.error.0, MAX_ERROR_LEN),
        bounded(&t.error.1, MAX_ERROR_LEN),
    );
    t.progress = t.progress.min(100);
    if t.state.is_final() && t.end_ms == 0 {
        t.end_ms = now.max(1);
    }
    if !t.state.is_final() {
        let at = if t.phase.is_empty() {
            "before its first phase".to_owned()
        } else {
            format!("at {}, {}%", t.phase, t.progress)
        };
        t.state = TaskState::Interrupted;
        t.error = (
            ERROR_INTERRUPTED.to_owned(),
            format!("bmcd stopped while the task ran ({at})"),
        );
        t.end_ms = now.max(1);
        t.cancellable = false;
    }
    *t != before
}

impl Tasks {
    /// Load `state_dir/tasks.json` (see the module doc), bring unfinished
    /// tasks back `Interrupted`, and announce every task as `Added` on the
    /// returned channel. Fails on an invalid `cfg`, or when the state
    /// directory cannot be created or the file can neither be read nor be
    /// set aside and rewritten (ids could not be kept unique).
    pub fn open(
        state_dir: &Path,
        cfg: TasksConfig,
    ) -> io::Result<(Arc<Tasks>, mpsc::UnboundedReceiver<TaskEvent>)> {
        Tasks::open_with_clock(state_dir, cfg, Arc::new(now_ms))
    }

    fn open_with_clock(
        state_dir: &Path,
        cfg: TasksConfig,
        clock: Clock,
    ) -> io::Result<(Arc<Tasks>, mpsc::UnboundedReceiver<TaskEvent>)> {
        cfg.validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("tasks.{e}")))?;
        fs::create_dir_all(state_dir)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", state_dir.display())))?;
        let now = clock();
        let path = state_dir.join(FILE);
        let (mut next_id, loaded, mut dirty) = match read_file(&path) {
            Ok(None) => (1, Vec::new(), false),
            Ok(Some(f)) => (f.next_id, f.tasks, false),
            Err((why, bytes)) => {
                let next_id = salvage_next_id(&bytes, now);
                let aside = set_aside(state_dir)?;
                log::error!(
                    "{}: {why}; set aside as {}, starting without old tasks (next task id \
                     {next_id})",
                    path.display(),
                    aside.display()
                );
                (next_id, Vec::new(), true)
            }
        };
        let (events, rx) = mpsc::unbounded_channel();
        let mut tasks = BTreeMap::new();
        for mut t in loaded {
            if t.id == 0 {
                dirty = true;
                continue;
            }
            dirty |= revive(&mut t, now);
            if t.id >= next_id {
                next_id = t.id.saturating_add(1);
                dirty = true;
            }
            let mut work = Work::new(&[]);
            for m in &t.messages {
                let _ = work.messages.push_back(m.clone());
            }
            let id = t.id;
            let (tx, trx) = watch::channel(t);
            if tasks
                .insert(
                    id,
                    Entry {
                        tx,
                        work,
                        announced: true,
                    },
                )
                .is_some()
            {
                dirty = true;
            }
            let _ = events.send(TaskEvent::Added(id, trx));
        }
        let me = Arc::new(Tasks {
            dir: state_dir.to_owned(),
            cfg,
            clock,
            inner: Mutex::new(Inner {
                next_id: next_id.max(1),
                tasks,
                stopped: false,
            }),
            io: Mutex::new(()),
            events,
            finished: Notify::new(),
        });
        if dirty {
            me.persist()?;
        }
        Ok((me, rx))
    }

    /// Write the current state (see "Persistence" in the module doc).
    fn persist(&self) -> io::Result<()> {
        let _io = lock(&self.io);
        let bytes = {
            let inner = lock(&self.inner);
            let snaps: Vec<TaskSnapshot> = inner
                .tasks
                .values()
                .map(|e| e.tx.borrow().clone())
                .collect();
            serde_json::to_vec(&FileOut {
                version: VERSION,
                next_id: inner.next_id,
                tasks: snaps.iter().collect(),
            })
            .map_err(io::Error::other)?
        };
        write_atomic(&self.dir, FILE, &bytes)
    }

    fn persist_logged(&self, id: u64) {
        if let Err(e) = self.persist() {
            log::error!("task {id}: cannot save the task state: {e}");
        }
    }

    /// Start a task: `Pending` until the work enters its first phase.
    /// `phases` are the phase names with their weights (relative shares of
    /// the progress). The task and the new `next_id` are on disk before
    /// this returns, and `Added` has been sent.
    pub fn start(
        self: &Arc<Self>,
        kind: &str,
        owner_uid: u32,
        phases: &[(&'static str, u32)],
        cancellable: bool,
    ) -> io::Result<TaskHandle> {
        let now = (self.clock)();
        let (id, rx) = {
            let mut inner = lock(&self.inner);
            if inner.stopped {
                return Err(io::Error::other("bmcd is stopping: no new task is started"));
            }
            let id = inner.next_id;
            inner.next_id = id
                .checked_add(1)
                .ok_or_else(|| io::Error::other("task ids are exhausted"))?;
            let snap = TaskSnapshot {
                id,
                kind: bounded(kind, MAX_KIND_LEN),
                state: TaskState::Pending,
                progress: 0,
                phase: String::new(),
                message: String::new(),
                messages: Vec::new(),
                start_ms: now,
                end_ms: 0,
                last_progress_ms: now,
                cancellable,
                owner_uid,
                error: (String::new(), String::new()),
                result: BTreeMap::new(),
            };
            let (tx, rx) = watch::channel(snap);
            inner.tasks.insert(
                id,
                Entry {
                    tx,
                    work: Work::new(phases),
                    announced: false,
                },
            );
            (id, rx)
        };
        if let Err(e) = self.persist() {
            lock(&self.inner).tasks.remove(&id);
            return Err(e);
        }
        {
            let mut inner = lock(&self.inner);
            if let Some(e) = inner.tasks.get_mut(&id) {
                e.announced = true;
                let _ = self.events.send(TaskEvent::Added(id, rx));
            }
        }
        Ok(TaskHandle {
            tasks: Arc::clone(self),
            id,
            done: false,
        })
    }

    /// Apply `f` to task `id`'s work and snapshot, publish, and persist as
    /// the returned change says. `None` if there is no such task.
    fn update(
        &self,
        id: u64,
        f: impl FnOnce(&mut Work, &mut TaskSnapshot, u64) -> Change,
    ) -> Option<Change> {
        let now = (self.clock)();
        let change = {
            let mut inner = lock(&self.inner);
            let Entry { tx, work, .. } = inner.tasks.get_mut(&id)?;
            let mut change = Change::None;
            tx.send_if_modified(|s| {
                change = f(work, s, now);
                change != Change::None
            });
            change
        };
        match change {
            Change::Persist => self.persist_logged(id),
            Change::Finish => {
                self.persist_logged(id);
                self.finished.notify_one();
            }
            Change::None | Change::Quiet => {}
        }
        Some(change)
    }

    /// A watch on task `id`'s snapshot.
    pub fn get(&self, id: u64) -> Option<watch::Receiver<TaskSnapshot>> {
        lock(&self.inner).tasks.get(&id).map(|e| e.tx.subscribe())
    }

    /// Every task's snapshot, by id.
    pub fn list(&self) -> Vec<TaskSnapshot> {
        lock(&self.inner)
            .tasks
            .values()
            .map(|e| e.tx.borrow().clone())
            .collect()
    }

    /// `Cancel`: allowed to the owner and to administrators, while the
    /// task is cancellable and not final. Sets `Cancelling` (persisted) and
    /// wakes the work. Asking again while `Cancelling` is accepted and
    /// changes nothing.
    pub fn cancel(&self, id: u64, caller_uid: u32, caller_is_admin: bool) -> Result<(), TaskError> {
        let mut refused = None;
        let change = self.update(id, |work, s, _now| {
            if !caller_is_admin && caller_uid != s.owner_uid {
                refused = Some(TaskError::NotOwner);
                return Change::None;
            }
            if s.state.is_final() {
                refused = Some(TaskError::Finished(s.state));
                return Change::None;
            }
            if s.state == TaskState::Cancelling {
                return Change::None;
            }
            if !s.cancellable {
                refused = Some(TaskError::NotCancellable);
                return Change::None;
            }
            s.state = TaskState::Cancelling;
            work.canceller = Some(caller_uid);
            Change::Persist
        });
        match (change, refused) {
            (None, _) => Err(TaskError::NotFound(id)),
            (Some(_), Some(e)) => Err(e),
            (Some(_), None) => Ok(()),
        }
    }

    /// Clean stop: every unfinished task becomes `Interrupted`, persisted;
    /// no task starts afterwards.
    pub fn shutdown(&self) {
        let now = (self.clock)();
        let any = {
            let mut inner = lock(&self.inner);
            inner.stopped = true;
            let mut any = false;
            for e in inner.tasks.values_mut() {
                e.tx.send_if_modified(|s| {
                    if s.state.is_final() {
                        return false;
                    }
                    s.state = TaskState::Interrupted;
                    s.error = (
                        ERROR_INTERRUPTED.to_owned(),
                        "bmcd was stopped while the task ran".to_owned(),
                    );
                    s.end_ms = now.max(1);
                    s.cancellable = false;
                    any = true;
                    true
                });
            }
            any
        };
        if any {
            if let Err(e) = self.persist() {
                log::error!("cannot save the interrupted tasks: {e}");
            }
        }
    }

    /// Remove what has expired now; the next deadline (ms) if any task
    /// is waiting to expire.
    fn expire_once(&self) -> Option<u64> {
        let now = (self.clock)();
        let keep_ms = self.cfg.keep_s.saturating_mul(1000);
        let mut removed = Vec::new();
        let next = {
            let mut inner = lock(&self.inner);
            let mut done: Vec<(u64, u64)> = inner
                .tasks
                .iter()
                .filter_map(|(id, e)| {
                    let s = e.tx.borrow();
                    s.state.is_final().then_some((s.end_ms, *id))
                })
                .collect();
            // Newest first: by end time, then by id.
            done.sort_unstable_by(|a, b| b.cmp(a));
            let mut next: Option<u64> = None;
            for (rank, (end, id)) in done.into_iter().enumerate() {
                let deadline = end.saturating_add(keep_ms);
                if rank >= self.cfg.keep_count || deadline <= now {
                    if let Some(e) = inner.tasks.remove(&id) {
                        if e.announced {
                            let _ = self.events.send(TaskEvent::Removed(id));
                        }
                        removed.push(id);
                    }
                } else {
                    next = Some(next.map_or(deadline, |n| n.min(deadline)));
                }
            }
            next
        };
        if !removed.is_empty() {
            log::debug!("tasks expired: {removed:?}");
            if let Err(e) = self.persist() {
                log::error!("cannot save the task list after expiry: {e}");
            }
        }
        next
    }

    /// Runs forever: removes finished tasks older than `keep_s` (by their
    /// end time) or beyond the newest `keep_count` finished ones, sending
    /// `Removed`. Sleeps until the next deadline or until a task finishes.
    pub async fn expire(self: Arc<Self>) {
        loop {
            let next = self.expire_once();
            let wait = next.map_or(MAX_EXPIRY_WAIT, |d| {
                Duration::from_millis(d.saturating_sub((self.clock)())).min(MAX_EXPIRY_WAIT)
            });
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.finished.notified() => {}
            }
        }
    }
}

/// The work's side of a task. Dropping it without a result fails the task.
pub struct TaskHandle {
    tasks: Arc<Tasks>,
    id: u64,
    done: bool,
}

impl fmt::Debug for TaskHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskHandle").field("id", &self.id).finish()
    }
}

impl TaskHandle {
    pub fn id(&self) -> u64 {
        self.id
    }

    fn update(&self, f: impl FnOnce(&mut Work, &mut TaskSnapshot, u64) -> Change) {
        self.tasks.update(self.id, |w, s, now| {
            if s.state.is_final() {
                return Change::None;
            }
            f(w, s, now)
        });
    }

    /// Enter the declared phase `name` (persisted): progress becomes at
    /// least the weights of the earlier phases; `Pending` → `Running`. An
    /// undeclared name is shown but moves no progress (and is logged).
    pub fn phase(&self, name: &str) {
        let id = self.id;
        self.update(|work, s, now| {
            match work.phases.iter().position(|p| p.0 == name) {
                Some(i) => {
                    work.current = Some(i);
                    s.progress = s.progress.max(work.percent(0.0));
                }
                None => log::warn!("task {id}: phase '{name}' was not declared"),
            }
            let name = bounded(name, MAX_TEXT_LEN);
            s.last_progress_ms = now;
            let mut change = Change::Quiet;
            if s.phase != name {
                s.phase = name;
                change = Change::Persist;
            }
            if s.state == TaskState::Pending {
                s.state = TaskState::Running;
                change = Change::Persist;
            }
            change
        });
    }

    /// `fraction` (0.0..=1.0, clamped; NaN counts as 0) of the current
    /// phase is done. Progress never decreases. Not persisted (unless it
    /// moves a `Pending` task to `Running`).
    pub fn progress(&self, fraction: f64) {
        let fraction = if fraction.is_nan() {
            0.0
        } else {
            fraction.clamp(0.0, 1.0)
        };
        self.update(|work, s, now| {
            s.progress = s.progress.max(work.percent(fraction));
            s.last_progress_ms = now;
            if s.state == TaskState::Pending {
                s.state = TaskState::Running;
                return Change::Persist;
            }
            Change::Quiet
        });
    }

    /// Set `Message` and append it to `Messages` (the last
    /// `MAX_TASK_MESSAGES` are kept). Not persisted by itself.
    pub fn message(&self, text: &str) {
        let text = bounded(text, MAX_TEXT_LEN);
        self.update(|work, s, now| {
            if work.messages.is_full() {
                work.messages.pop_front();
            }
            let _ = work.messages.push_back(text.clone());
            s.messages = work.messages.iter().cloned().collect();
            s.message = text;
            s.last_progress_ms = now;
            Change::Quiet
        });
    }

    /// A sign of life during a long step (`LastProgressTime`).
    pub fn heartbeat(&self) {
        self.update(|_, s, now| {
            s.last_progress_ms = now;
            Change::Quiet
        });
    }

    pub fn set_cancellable(&self, on: bool) {
        self.update(|_, s, _| {
            s.cancellable = on;
            Change::Quiet
        });
    }

    /// Whether `Cancel` was accepted.
    pub fn is_cancelling(&self) -> bool {
        self.tasks
            .get(self.id)
            .is_some_and(|rx| rx.borrow().state == TaskState::Cancelling)
    }

    /// Resolves when `Cancel` was accepted, or when the task was ended from
    /// outside (shutdown): either way the work should stop. Use it in a
    /// `select!` beside the work.
    pub async fn cancel_requested(&self) {
        let Some(mut rx) = self.tasks.get(self.id) else {
            return;
        };
        let _ = rx
            .wait_for(|s| s.state == TaskState::Cancelling || s.state.is_final())
            .await;
    }

    fn finish(
        mut self,
        state: TaskState,
        error: Option<(&str, String)>,
        result: BTreeMap<String, ResultValue>,
    ) {
        self.done = true;
        self.tasks.update(self.id, |work, s, now| {
            if s.state.is_final() {
                return Change::None;
            }
            s.state = state;
            if state == TaskState::Completed {
                s.progress = 100;
            }
            s.error = match error {
                Some((name, text)) => (bounded(name, MAX_ERROR_LEN), bounded(&text, MAX_ERROR_LEN)),
                None => (String::new(), String::new()),
            };
            s.result = result;
            s.end_ms = now.max(1);
            s.last_progress_ms = now;
            s.cancellable = false;
            work.phases.clear();
            Change::Finish
        });
    }

    /// `Completed` with `result`; progress 100.
    pub fn complete(self, result: BTreeMap<String, ResultValue>) {
        self.finish(TaskState::Completed, None, result);
    }

    /// `Failed` with error `name` (`org.bmcd.Error.*`) and `text`.
    pub fn fail(self, name: &str, text: &str) {
        self.finish(
            TaskState::Failed,
            Some((name, text.to_owned())),
            BTreeMap::new(),
        );
    }

    /// `Cancelled`, with error `org.bmcd.Error.Cancelled`.
    pub fn cancelled(self) {
        let canceller = {
            let inner = lock(&self.tasks.inner);
            inner.tasks.get(&self.id).and_then(|e| e.work.canceller)
        };
        let text = match canceller {
            Some(uid) => format!("cancelled by uid {uid}"),
            None => "cancelled by the work itself".to_owned(),
        };
        self.finish(
            TaskState::Cancelled,
            Some((ERROR_CANCELLED, text)),
            BTreeMap::new(),
        );
    }
}

impl Drop for TaskHandle {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        self.tasks.update(self.id, |_, s, now| {
            if s.state.is_final() {
                return Change::None;
            }
            s.state = TaskState::Failed;
            s.error = (
                ERROR_INTERNAL.to_owned(),
                "the task ended without a result".to_owned(),
            );
            s.end_ms = now.max(1);
            s.last_progress_ms = now;
            s.cancellable = false;
            Change::Finish
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    const T0: u64 = 1_700_000_000_000;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("bmcd-tasks-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    /// A wall clock that follows tokio's (paused) time from T0.
    fn tokio_clock() -> Clock {
        let start = tokio::time::Instant::now();
        Arc::new(move || T0 + start.elapsed().as_millis() as u64)
    }

    /// A clock the test sets by hand.
    fn manual_clock() -> (Arc<AtomicU64>, Clock) {
        let t = Arc::new(AtomicU64::new(T0));
        let c = t.clone();
        (t, Arc::new(move || c.load(Ordering::SeqCst)))
    }

    fn open(dir: &Path, cfg: TasksConfig, clock: Clock) -> (Arc<Tasks>, Vec<TaskEvent>) {
        let (t, mut rx) = Tasks::open_with_clock(dir, cfg, clock).unwrap();
        let mut ev = Vec::new();
        while let Ok(e) = rx.try_recv() {
            ev.push(e);
        }
        (t, ev)
    }

    fn on_disk(dir: &Path) -> serde_json::Value {
        serde_json::from_slice(&fs::read(dir.join(FILE)).unwrap()).unwrap()
    }

    fn snap(t: &Tasks, id: u64) -> TaskSnapshot {
        t.get(id).unwrap().borrow().clone()
    }

    const PHASES: &[(&str, u32)] = &[("prepare", 1), ("write", 3)];

    #[tokio::test]
    async fn start_is_on_disk_before_it_returns_and_comes_back_interrupted() {
        let d = tmpdir("start");
        let (clock_t, clock) = manual_clock();
        let (t, mut rx) =
            Tasks::open_with_clock(&d, TasksConfig::default(), clock.clone()).unwrap();
        assert!(rx.try_recv().is_err(), "nothing to announce");
        let h = t.start("FirmwareUpdate", 1000, PHASES, true).unwrap();
        assert_eq!(h.id(), 1);
        assert!(matches!(rx.try_recv(), Ok(TaskEvent::Added(1, _))));
        let f = on_disk(&d);
        assert_eq!(f["version"], 1);
        assert_eq!(f["next_id"], 2);
        assert_eq!(f["tasks"][0]["id"], 1);
        assert_eq!(f["tasks"][0]["state"], "Pending");
        assert_eq!(snap(&t, 1).state, TaskState::Pending);
        h.phase("write");
        h.progress(0.5);
        assert_eq!(snap(&t, 1).progress, 62);
        assert_eq!(on_disk(&d)["tasks"][0]["phase"], "write");
        // As after kill -9: the handle is never dropped, the file stays.
        std::mem::forget(h);
        clock_t.store(T0 + 5000, Ordering::SeqCst);

        let (t, ev) = open(&d, TasksConfig::default(), clock.clone());
        assert!(matches!(ev.as_slice(), [TaskEvent::Added(1, _)]));
        let s = snap(&t, 1);
        assert_eq!(s.state, TaskState::Interrupted);
        assert_eq!(s.end_ms, T0 + 5000);
        assert!(!s.cancellable);
        assert_eq!(
            s.error,
            (
                ERROR_INTERRUPTED.to_owned(),
                // Progress ticks are not persisted: the last write was at the phase change.
                "bmcd stopped while the task ran (at write, 25%)".to_owned()
            )
        );
        // The revived state is written at once: another crash keeps the end time.
        assert_eq!(on_disk(&d)["tasks"][0]["state"], "Interrupted");
        clock_t.store(T0 + 9000, Ordering::SeqCst);
        let (t, _) = open(&d, TasksConfig::default(), clock);
        assert_eq!(snap(&t, 1).end_ms, T0 + 5000);
        assert_eq!(t.start("PowerOff", 0, &[], false).unwrap().id(), 2);
        let _ = fs::remove_dir_all(&d);
    }

    #[tokio::test]
    async fn ids_are_never_reused_even_after_expiry() {
        let d = tmpdir("ids");
        let (t, _) = open(
            &d,
            TasksConfig {
                keep_s: 1,
                keep_count: 1,
            },
            tokio_clock(),
        );
        for want in 1..=3 {
            let h = t.start("Dump", 0, &[], false).unwrap();
            assert_eq!(h.id(), want);
            h.complete(BTreeMap::new());
        }
        t.expire_once();
        assert_eq!(t.list().len(), 1);
        let (t, _) = open(&d, TasksConfig::default(), tokio_clock());
        assert_eq!(t.start("Dump", 0, &[], false).unwrap().id(), 4);
        let _ = fs::remove_dir_all(&d);
    }

    #[tokio::test]
    async fn progress_follows_weighted_phases_and_never_goes_down() {
        let d = tmpdir("progress");
        let (clock_t, clock) = manual_clock();
        let (t, _) = open(&d, TasksConfig::default(), clock);
        let h = t.start("FirmwareUpdate", 0, PHASES, true).unwrap();
        let mut rx = t.get(1).unwrap();
        let mut seen = vec![rx.borrow_and_update().progress];
        let mut step = |f: &dyn Fn()| {
            f();
            if rx.has_changed().unwrap() {
                seen.push(rx.borrow_and_update().progress);
            }
        };
        step(&|| h.progress(0.5)); // no phase entered yet: nothing to count
        assert_eq!(snap(&t, 1).state, TaskState::Running);
        step(&|| h.phase("prepare"));
        assert_eq!(snap(&t, 1).progress, 0);
        step(&|| h.progress(0.5));
        assert_eq!(snap(&t, 1).progress, 12);
        step(&|| h.phase("write"));
        assert_eq!(snap(&t, 1).progress, 25);
        step(&|| h.progress(0.5));
        assert_eq!(snap(&t, 1).progress, 62);
        step(&|| h.progress(0.2));
        assert_eq!(snap(&t, 1).progress, 62, "never down");
        step(&|| h.phase("prepare"));
        assert_eq!(
            snap(&t, 1).progress,
            62,
            "an earlier phase again: never down"
        );
        assert_eq!(snap(&t, 1).phase, "prepare");
        step(&|| h.phase("write"));
        step(&|| h.progress(f64::NAN));
        step(&|| h.progress(-3.0));
        assert_eq!(snap(&t, 1).progress, 62);
        clock_t.store(T0 + 70, Ordering::SeqCst);
        step(&|| h.progress(7.0));
        assert_eq!(snap(&t, 1).progress, 99, "100 only when completed");
        assert_eq!(snap(&t, 1).last_progress_ms, T0 + 70);
        step(&|| h.phase("no such phase"));
        assert_eq!(snap(&t, 1).phase, "no such phase");
        assert_eq!(snap(&t, 1).progress, 99);
        h.complete(BTreeMap::from([(
            "version".to_owned(),
            ResultValue::Str("1.2".into()),
        )]));
        let s = snap(&t, 1);
        seen.push(s.progress);
        assert_eq!(s.progress, 100);
        assert_eq!(s.state, TaskState::Completed);
        assert_eq!(s.result["version"], ResultValue::Str("1.2".into()));
        assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
        let _ = fs::remove_dir_all(&d);
    }

    #[tokio::test]
    async fn progress_without_phases_is_the_fraction() {
        let d = tmpdir("nophases");
        let (t, _) = open(&d, TasksConfig::default(), tokio_clock());
        let h = t.start("Dump", 0, &[], false).unwrap();
        h.progress(0.29);
        assert_eq!(snap(&t, 1).progress, 29);
        h.progress(1.0);
        assert_eq!(snap(&t, 1).progress, 99);
        let zero = t.start("Dump", 0, &[("a", 0), ("b", 0)], false).unwrap();
        zero.phase("b");
        zero.progress(0.5);
        assert_eq!(snap(&t, 2).progress, 50);
        let _ = fs::remove_dir_all(&d);
    }

    #[tokio::test]
    async fn messages_are_bounded_and_not_persisted_alone() {
        let d = tmpdir("messages");
        let (t, _) = open(&d, TasksConfig::default(), tokio_clock());
        let h = t.start("Dump", 0, &[], false).unwrap();
        for i in 0..20 {
            h.message(&format!("m{i}"));
        }
        let s = snap(&t, 1);
        assert_eq!(s.message, "m19");
        let want: Vec<String> = (20 - MAX_TASK_MESSAGES..20)
            .map(|i| format!("m{i}"))
            .collect();
        assert_eq!(s.messages, want);
        assert_eq!(on_disk(&d)["tasks"][0]["message"], "");
        // Cut at a char boundary, never in the middle of 'é' (2 bytes).
        let long = "é".repeat(MAX_TEXT_LEN);
        h.message(&long);
        let m = snap(&t, 1).message;
        assert!(m.len() <= MAX_TEXT_LEN && m.len() >= MAX_TEXT_LEN - 1);
        assert!(m.chars().all(|c| c == 'é'));
        h.fail("org.bmcd.Error.Unavailable", &"x".repeat(5000));
        let s = snap(&t, 1);
        assert_eq!(s.error.1.len(), MAX_ERROR_LEN);
        // The final write carries the messages.
        assert_eq!(
            on_disk(&d)["tasks"][0]["messages"]
                .as_array()
                .unwrap()
                .len(),
            MAX_TASK_MESSAGES
        );
        let _ = fs::remove_dir_all(&d);
    }

    #[tokio::test]
    async fn cancel_rules() {
        let d = tmpdir("cancel");
        let (t, _) = open(&d, TasksConfig::default(), tokio_clock());
        let h = t.start("PowerCycle", 1000, PHASES, false).unwrap();
        assert_eq!(t.cancel(99, 0, true), Err(TaskError::NotFound(99)));
        assert_eq!(t.cancel(1, 1001, false), Err(TaskError::NotOwner));
        assert_eq!(t.cancel(1, 1000, false), Err(TaskError::NotCancellable));
        assert_eq!(t.cancel(1, 0, true), Err(TaskError::NotCancellable));
        h.set_cancellable(true);
        assert_eq!(t.cancel(1, 1001, false), Err(TaskError::NotOwner));
        assert!(!h.is_cancelling());
        assert_eq!(t.cancel(1, 1000, false), Ok(()));
        assert!(h.is_cancelling());
        assert_eq!(snap(&t, 1).state, TaskState::Cancelling);
        assert_eq!(on_disk(&d)["tasks"][0]["state"], "Cancelling");
        assert_eq!(
            t.cancel(1, 0, true),
            Ok(()),
            "again while Cancelling: accepted"
        );
        h.cancel_requested().await;
        h.cancelled();
        let s = snap(&t, 1);
        assert_eq!(s.state, TaskState::Cancelled);
        assert_eq!(
            s.error,
            (
                ERROR_CANCELLED.to_owned(),
                "cancelled by uid 1000".to_owned()
            )
        );
        assert!(s.end_ms > 0 && !s.cancellable);
        assert_eq!(
            t.cancel(1, 1000, false),
            Err(TaskError::Finished(TaskState::Cancelled))
        );
        // A non-owner learns nothing more than NotOwner.
        assert_eq!(t.cancel(1, 1001, false), Err(TaskError::NotOwner));
        for e in [
            TaskError::NotFound(3),
            TaskError::NotOwner,
            TaskError::NotCancellable,
            TaskError::Finished(TaskState::Completed),
        ] {
            assert!(!e.to_string().is_empty());
        }
        let _ = fs::remove_dir_all(&d);
    }

    #[tokio::test(start_paused = true)]
    async fn cancel_wakes_the_work_at_its_safe_point() {
        let d = tmpdir("cancel-work");
        let (t, _) = open(&d, TasksConfig::default(), tokio_clock());
        let h = t.start("FirmwareUpdate", 1000, PHASES, true).unwrap();
        let work = tokio::spawn(async move {
            h.phase("prepare");
            tokio::select! {
                _ = h.cancel_requested() => h.cancelled(),
                _ = tokio::time::sleep(Duration::from_secs(3600)) => h.complete(BTreeMap::new()),
            }
        });
        let mut rx = t.get(1).unwrap();
        rx.wait_for(|s| s.state == TaskState::Running)
            .await
            .unwrap();
        t.cancel(1, 0, true).unwrap();
        work.await.unwrap();
        let s = snap(&t, 1);
        assert_eq!(s.state, TaskState::Cancelled);
        assert_eq!(s.error.1, "cancelled by uid 0");
        assert!(
            s.end_ms < T0 + 3_600_000,
            "ended by the cancel, not by the timer"
        );
        let _ = fs::remove_dir_all(&d);
    }

    #[tokio::test]
    async fn a_dropped_handle_fails_the_task_and_final_states_stay() {
        let d = tmpdir("drop");
        let (t, _) = open(&d, TasksConfig::default(), tokio_clock());
        drop(t.start("Dump", 0, &[], true).unwrap());
        let s = snap(&t, 1);
        assert_eq!(s.state, TaskState::Failed);
        assert_eq!(
            s.error,
            (
                ERROR_INTERNAL.to_owned(),
                "the task ended without a result".to_owned()
            )
        );
        assert!(!s.cancellable);
        let h = t.start("Dump", 0, &[], true).unwrap();
        h.fail("org.bmcd.Error.Timeout", "no power-good");
        let s = snap(&t, 2);
        assert_eq!(s.state, TaskState::Failed);
        assert_eq!(s.error.0, "org.bmcd.Error.Timeout");
        assert_eq!(on_disk(&d)["tasks"][1]["state"], "Failed");
        let _ = fs::remove_dir_all(&d);
    }

    #[tokio::test]
    async fn shutdown_interrupts_what_runs_and_refuses_new_tasks() {
        let d = tmpdir("shutdown");
        let (t, _) = open(&d, TasksConfig::default(), tokio_clock());
        let done = t.start("Dump", 0, &[], false).unwrap();
        done.complete(BTreeMap::new());
        let running = t.start("FirmwareUpdate", 0, PHASES, true).unwrap();
        running.phase("write");
        t.shutdown();
        let s = snap(&t, 2);
        assert_eq!(s.state, TaskState::Interrupted);
        assert_eq!(
            s.error,
            (
                ERROR_INTERRUPTED.to_owned(),
                "bmcd was stopped while the task ran".to_owned()
            )
        );
        assert!(s.end_ms > 0);
        // The work notices, and its late result changes nothing.
        running.cancel_requested().await;
        running.complete(BTreeMap::new());
        assert_eq!(snap(&t, 2).state, TaskState::Interrupted);
        assert_eq!(snap(&t, 1).state, TaskState::Completed);
        assert!(t.start("Dump", 0, &[], false).is_err());
        let (t, ev) = open(&d, TasksConfig::default(), tokio_clock());
        assert_eq!(ev.len(), 2);
        assert_eq!(snap(&t, 2).error.1, "bmcd was stopped while the task ran");
        assert_eq!(snap(&t, 1).state, TaskState::Completed);
        let _ = fs::remove_dir_all(&d);
    }

    #[tokio::test]
    async fn a_corrupt_file_is_set_aside_and_ids_stay_unique() {
        let d = tmpdir("corrupt");
        fs::create_dir_all(&d).unwrap();
        // Truncated: next_id survives.
        fs::write(
            d.join(FILE),
            br#"{"version":1,"next_id":41,"tasks":[{"id":40,"ki"#,
        )
        .unwrap();
        let (t, ev) = open(&d, TasksConfig::default(), tokio_clock());
        assert!(ev.is_empty());
        assert!(d.join(format!("{FILE}.corrupt-1")).exists());
        assert_eq!(on_disk(&d)["next_id"], 41, "written at once");
        assert_eq!(t.start("Dump", 0, &[], false).unwrap().id(), 41);
        // Garbage: the clock is the floor.
        fs::write(d.join(FILE), b"\x00\xffgarbage").unwrap();
        let (t, _) = open(&d, TasksConfig::default(), tokio_clock());
        assert!(d.join(format!("{FILE}.corrupt-2")).exists());
        assert!(t.start("Dump", 0, &[], false).unwrap().id() >= T0);
        // A newer version is not guessed at.
        fs::write(d.join(FILE), br#"{"version":2,"next_id":7,"tasks":[]}"#).unwrap();
        let (t, _) = open(&d, TasksConfig::default(), tokio_clock());
        assert_eq!(t.start("Dump", 0, &[], false).unwrap().id(), 7);
        // Ids above next_id (a hand edit) move it.
        fs::write(
            d.join(FILE),
            br#"{"version":1,"next_id":2,"tasks":[{"id":9,"kind":"Dump","state":"Completed",
            "progress":100,"phase":"","message":"","messages":[],"start_ms":1,"end_ms":2,
            "last_progress_ms":2,"cancellable":false,"owner_uid":0,"error":["",""],
            "result":{"n":{"U64":3}}}]}"#,
        )
        .unwrap();
        let (t, ev) = open(&d, TasksConfig::default(), tokio_clock());
        assert_eq!(ev.len(), 1);
        assert_eq!(snap(&t, 9).result["n"], ResultValue::U64(3));
        assert_eq!(t.start("Dump", 0, &[], false).unwrap().id(), 10);
        // Not a regular file.
        fs::remove_file(d.join(FILE)).unwrap();
        fs::create_dir(d.join(FILE)).unwrap();
        let (t, _) = open(&d, TasksConfig::default(), tokio_clock());
        assert!(t.start("Dump", 0, &[], false).unwrap().id() >= T0);
        // Every slot taken: the last one is replaced, no unbounded growth.
        for _ in 0..MAX_CORRUPT_FILES + 2 {
            fs::write(d.join(FILE), b"{").unwrap();
            open(&d, TasksConfig::default(), tokio_clock());
        }
        let n = fs::read_dir(&d)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().contains(".corrupt-"))
            })
            .count();
        assert_eq!(n, MAX_CORRUPT_FILES as usize);
        let _ = fs::remove_dir_all(&d);
    }

    #[tokio::test]
    async fn a_start_that_cannot_be_saved_fails_and_leaves_no_task() {
        let d = tmpdir("nosave");
        let (t, mut rx) =
            Tasks::open_with_clock(&d, TasksConfig::default(), tokio_clock()).unwrap();
        // The temp file of the atomic write cannot be created.
        fs::create_dir(d.join(format!(".{FILE}.tmp"))).unwrap();
        assert!(t.start("Dump", 0, &[], false).is_err());
        assert!(t.list().is_empty());
        assert!(rx.try_recv().is_err(), "never announced");
        fs::remove_dir(d.join(format!(".{FILE}.tmp"))).unwrap();
        assert_eq!(t.start("Dump", 0, &[], false).unwrap().id(), 2);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn concurrent_starts_get_distinct_ids_all_on_disk() {
        let d = tmpdir("concurrent");
        let (t, _) = open(&d, TasksConfig::default(), manual_clock().1);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let t = t.clone();
                std::thread::spawn(move || {
                    (0..5)
                        .map(|_| {
                            let h = t.start("Dump", 0, &[("a", 1)], false).unwrap();
                            h.phase("a");
                            let id = h.id();
                            std::mem::forget(h);
                            id
                        })
                        .collect::<Vec<u64>>()
                })
            })
            .collect();
        let mut ids: Vec<u64> = threads
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        ids.sort_unstable();
        assert_eq!(ids, (1..=20).collect::<Vec<u64>>());
        let f = on_disk(&d);
        assert_eq!(f["next_id"], 21);
        assert_eq!(f["tasks"].as_array().unwrap().len(), 20);
        assert!(f["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["state"] == "Running"));
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_task_that_never_began_says_so_when_interrupted() {
        let d = tmpdir("never-began");
        let (t, _) = open(&d, TasksConfig::default(), manual_clock().1);
        std::mem::forget(t.start("PowerOn", 0, PHASES, true).unwrap());
        let (t, _) = open(&d, TasksConfig::default(), manual_clock().1);
        assert_eq!(
            snap(&t, 1).error.1,
            "bmcd stopped while the task ran (before its first phase)"
        );
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn salvage_reads_the_largest_numbers() {
        assert_eq!(
            salvage_next_id(br#"{"next_id" : 5, "tasks":[{"id":12"#, 99),
            13
        );
        assert_eq!(
            salvage_next_id(br#"{"next_id":50,"tasks":[{"id":12"#, 99),
            50
        );
        assert_eq!(salvage_next_id(br#"{"tasks":[{"id":12"#, 99), 99);
        assert_eq!(salvage_next_id(b"", 99), 99);
        assert_eq!(salvage_next_id(br#""id":99999999999999999999999"#, 7), 7);
    }

    #[tokio::test(start_paused = true)]
    async fn finished_tasks_expire_by_age() {
        let d = tmpdir("expire-age");
        let (t, mut rx) = Tasks::open_with_clock(
            &d,
            TasksConfig {
                keep_s: 10,
                keep_count: 32,
            },
            tokio_clock(),
        )
        .unwrap();
        tokio::spawn(t.clone().expire());
        let h = t.start("Dump", 0, &[], false).unwrap();
        assert!(matches!(rx.recv().await, Some(TaskEvent::Added(1, _))));
        tokio::time::sleep(Duration::from_secs(100)).await;
        let running = t.start("Dump", 0, &[], false).unwrap();
        assert!(matches!(rx.recv().await, Some(TaskEvent::Added(2, _))));
        let t0 = tokio::time::Instant::now();
        h.complete(BTreeMap::new());
        assert!(matches!(rx.recv().await, Some(TaskEvent::Removed(1))));
        let waited = t0.elapsed();
        assert!(
            waited >= Duration::from_secs(10) && waited < Duration::from_secs(11),
            "{waited:?}"
        );
        assert_eq!(t.list().len(), 1, "a running task never expires");
        assert_eq!(on_disk(&d)["tasks"].as_array().unwrap().len(), 1);
        drop(running);
        assert!(matches!(rx.recv().await, Some(TaskEvent::Removed(2))));
        assert!(t.list().is_empty());
        let _ = fs::remove_dir_all(&d);
    }

    #[tokio::test(start_paused = true)]
    async fn finished_tasks_expire_by_count_newest_kept() {
        let d = tmpdir("expire-count");
        let (t, mut rx) = Tasks::open_with_clock(
            &d,
            TasksConfig {
                keep_s: 3600,
                keep_count: 2,
            },
            tokio_clock(),
        )
        .unwrap();
        tokio::spawn(t.clone().expire());
        for _ in 0..3 {
            t.start("Dump", 0, &[], false)
                .unwrap()
                .complete(BTreeMap::new());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let t0 = tokio::time::Instant::now();
        let mut removed = Vec::new();
        while removed.is_empty() {
            match rx.recv().await {
                Some(TaskEvent::Removed(id)) => removed.push(id),
                Some(TaskEvent::Added(..)) => {}
                None => break,
            }
        }
        assert_eq!(removed, [1]);
        assert!(
            t0.elapsed() < Duration::from_secs(1),
            "no waiting for the age limit"
        );
        let ids: Vec<u64> = t.list().iter().map(|s| s.id).collect();
        assert_eq!(ids, [2, 3]);
        let _ = fs::remove_dir_all(&d);
    }

    #[tokio::test(start_paused = true)]
    async fn expiry_sleeps_when_there_is_nothing_to_do() {
        let d = tmpdir("expire-idle");
        let (t, _) = open(&d, TasksConfig::default(), tokio_clock());
        let _h = t.start("Dump", 0, &[], false).unwrap();
        assert_eq!(t.expire_once(), None);
        let done = t.start("Dump", 0, &[], false).unwrap();
        done.complete(BTreeMap::new());
        let end = snap(&t, 2).end_ms;
        assert_eq!(t.expire_once(), Some(end + 86_400_000));
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn config_defaults_unknown_fields_and_ranges() {
        let c: TasksConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(
            c,
            TasksConfig {
                keep_s: 86_400,
                keep_count: 32
            }
        );
        assert_eq!(c, TasksConfig::default());
        assert!(c.validate().is_ok());
        let c: TasksConfig = serde_json::from_str(r#"{"keep_count": 5}"#).unwrap();
        assert_eq!(c.keep_s, 86_400);
        assert!(serde_json::from_str::<TasksConfig>(r#"{"keep": 5}"#).is_err());
        for (keep_s, keep_count, field) in [
            (0, 32, "keep_s"),
            (MAX_KEEP_S + 1, 32, "keep_s"),
            (60, 0, "keep_count"),
            (60, 1001, "keep_count"),
        ] {
            let e = TasksConfig { keep_s, keep_count }.validate().unwrap_err();
            assert!(e.starts_with(field), "{e}");
        }
        assert!(TasksConfig {
            keep_s: MAX_KEEP_S,
            keep_count: 1000
        }
        .validate()
        .is_ok());
        let d = tmpdir("badcfg");
        assert!(Tasks::open(
            &d,
            TasksConfig {
                keep_s: 0,
                keep_count: 1
            }
        )
        .is_err());
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn error_names_are_the_contracts() {
        for n in [ERROR_INTERRUPTED, ERROR_CANCELLED, ERROR_INTERNAL] {
            assert!(bmcd_api::ERROR_NAMES.contains(&n), "{n}");
        }
    }

    #[test]
    fn handle_is_send_and_static() {
        fn check<T: Send + 'static>() {}
        check::<TaskHandle>();
        fn shared<T: Send + Sync>() {}
        shared::<Tasks>();
    }
}
