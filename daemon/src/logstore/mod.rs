//! The log store: an append-only, crash-safe log of entries with u64
//! sequence numbers (issue 9). No zbus here: `bus/log.rs` adapts it.
//!
//! THE API BELOW IS THE CONTRACT the rest of the daemon is written
//! against. The body of this file is, for now, an in-memory stand-in with
//! the exact semantics (it keeps nothing across a restart); the segment
//! files, sparse index, recovery and durability replace it behind the same
//! signatures.
//!
//! A record on disk is `len (u32 LE, body length) ‖ CRC-32C (u32 LE) of
//! the body ‖ body` (see `record.rs`).
//!
//! Every method blocks (file I/O): async callers use `sync::off_runtime`.

mod record;

use std::collections::VecDeque;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub use record::{decode, encode, Decoded, Entry, RecordError, MAX_BODY, MAX_DATA_PAIRS};

use crate::sync::lock;

/// How big a log may grow. The oldest entries go first, whole segments at
/// a time, so a log holds between `max_entries - one segment` and
/// `max_entries`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_entries: u64,
    pub max_bytes: u64,
    /// Size at which a segment file is closed and a new one started.
    pub segment_bytes: u64,
}

/// When an append is on stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsynced before `append` returns (audit records).
    Sync,
    /// Written before `append` returns, fsynced by the next `flush`
    /// (group commit: the daemon flushes a dirty log within a short window,
    /// see `GROUP_COMMIT`), so many events cost one fsync.
    Deferred,
}

/// The longest a `Deferred` append waits for its fsync: the daemon calls
/// `flush` this often while `needs_flush` is true, and at stop.
pub const GROUP_COMMIT: std::time::Duration = std::time::Duration::from_millis(200);

/// A new entry: everything but its id, which the store assigns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    pub time_us: u64,
    /// syslog level 0 (Emergency) … 7 (Debug).
    pub severity: u8,
    pub source: String,
    pub message_id: String,
    pub message: String,
    pub data: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Id ≥ cursor, ascending.
    Newer,
    /// Id ≤ cursor, descending.
    Older,
}

/// Which entries a page holds (all `None`: every entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub direction: Direction,
    /// Time ≥ since (µs).
    pub since_us: Option<u64>,
    /// Time ≤ until (µs).
    pub until_us: Option<u64>,
    /// Only entries with severity level ≤ this (0 = Emergency).
    pub max_level: Option<u8>,
    pub source: Option<String>,
    /// Exact, or a prefix when it ends with '.'.
    pub message_id: Option<String>,
}

impl Default for Query {
    fn default() -> Self {
        Query {
            direction: Direction::Newer,
            since_us: None,
            until_us: None,
            max_level: None,
            source: None,
            message_id: None,
        }
    }
}

impl Query {
    /// Whether `e` passes the filters.
    pub fn matches(&self, e: &Entry) -> bool {
        self.since_us.is_none_or(|s| e.time_us >= s)
            && self.until_us.is_none_or(|u| e.time_us <= u)
            && self.max_level.is_none_or(|m| e.severity <= m)
            && self.source.as_ref().is_none_or(|s| e.source == *s)
            && self.message_id.as_ref().is_none_or(|m| {
                if m.ends_with('.') {
                    e.message_id.starts_with(m.as_str())
                } else {
                    e.message_id == *m
                }
            })
    }
}

/// The log's counters (the `Log1` properties).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Oldest kept id; `last_id + 1` when empty.
    pub first_id: u64,
    /// Newest id; 0 if nothing was ever appended.
    pub last_id: u64,
    pub count: u64,
    /// Grows by one at each `clear`.
    pub generation: u64,
    pub max_entries: u64,
    pub max_bytes: u64,
    /// Bytes the log takes on disk now (segments and metadata).
    pub disk_bytes: u64,
}

/// One page (see `bmcd_api::log_query` for the semantics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub entries: Vec<Entry>,
    pub next_cursor: u64,
    /// The cursor named entries that are gone; the page starts at the
    /// oldest kept one.
    pub dropped: bool,
    /// Nothing further in this direction now.
    pub end: bool,
    /// Entries examined.
    pub scanned: u32,
    pub stats: Stats,
}

/// What `open` found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// Bytes cut from a torn or corrupt tail of the last segment.
    pub truncated_bytes: u64,
    /// Segments set aside (renamed `*.corrupt`), with why.
    pub quarantined: Vec<(PathBuf, String)>,
}

#[derive(Debug)]
pub enum StoreError {
    /// A file operation failed: what was being done, and the error.
    Io(String, std::io::Error),
    /// The entry is too big to store (`MAX_BODY`, `MAX_DATA_PAIRS`,
    /// 64 KiB strings) or has a severity above 7.
    TooLarge,
    /// Limits that cannot work (0 entries, a segment bigger than the log).
    BadLimits(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Io(what, e) => write!(f, "{what}: {e}"),
            StoreError::TooLarge => f.write_str("entry too large"),
            StoreError::BadLimits(m) => write!(f, "bad limits: {m}"),
        }
    }
}

impl std::error::Error for StoreError {}

/// The most entries one `page` returns, and the most it examines.
pub use bmcd_api::log_query::{MAX_PAGE, MAX_SCAN};

struct Inner {
    entries: VecDeque<Entry>,
    next_id: u64,
    generation: u64,
}

/// One log (the event log or the audit log), in its own directory.
pub struct LogStore {
    dir: PathBuf,
    limits: Limits,
    inner: Mutex<Inner>,
}

impl LogStore {
    /// Open (creating) the log in `dir`: recover from any crash (a torn
    /// tail is cut, a damaged segment set aside), never failing because
    /// of the content of the files, only when the directory cannot be
    /// used.
    pub fn open(dir: &Path, limits: Limits) -> Result<(LogStore, OpenReport), StoreError> {
        if limits.max_entries == 0 || limits.max_bytes == 0 || limits.segment_bytes == 0 {
            return Err(StoreError::BadLimits("every limit must be above 0".into()));
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Io(format!("create {}", dir.display()), e))?;
        Ok((
            LogStore {
                dir: dir.to_owned(),
                limits,
                inner: Mutex::new(Inner {
                    entries: VecDeque::new(),
                    next_id: 1,
                    generation: 0,
                }),
            },
            OpenReport::default(),
        ))
    }

    /// The directory the log lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Append one entry; its id.
    pub fn append(&self, e: NewEntry, d: Durability) -> Result<u64, StoreError> {
        self.append_batch(vec![e], d).map(|(first, _)| first)
    }

    /// Append entries in order (one write, one fsync with `Sync`); the
    /// first and last new ids. An empty batch returns (next id, next id
    /// - 1) and writes nothing.
    pub fn append_batch(
        &self,
        es: Vec<NewEntry>,
        _d: Durability,
    ) -> Result<(u64, u64), StoreError> {
        let mut g = lock(&self.inner);
        let first = g.next_id;
        for e in es {
            if e.severity > 7 || e.data.len() > MAX_DATA_PAIRS {
                return Err(StoreError::TooLarge);
            }
            let id = g.next_id;
            g.next_id += 1;
            g.entries.push_back(Entry {
                id,
                time_us: e.time_us,
                severity: e.severity,
                source: e.source,
                message_id: e.message_id,
                message: e.message,
                data: e.data,
            });
        }
        while g.entries.len() as u64 > self.limits.max_entries {
            g.entries.pop_front();
        }
        Ok((first, g.next_id - 1))
    }

    /// Whether `Deferred` appends wait for an fsync.
    pub fn needs_flush(&self) -> bool {
        false
    }

    /// fsync what `Deferred` appends wrote.
    pub fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// One page of at most `count` (cut to `MAX_PAGE`) entries.
    pub fn page(&self, cursor: u64, count: u32, q: &Query) -> Result<Page, StoreError> {
        let g = lock(&self.inner);
        let stats = Self::stats_of(&g, &self.limits);
        let count = count.min(MAX_PAGE) as usize;
        let mut entries = Vec::new();
        let mut scanned = 0u32;
        let mut dropped = false;
        let mut next: u64;
        let mut end = true;
        match q.direction {
            Direction::Newer => {
                let start = if cursor < stats.first_id {
                    dropped = cursor != 0 && cursor < stats.first_id;
                    stats.first_id
                } else {
                    cursor
                };
                next = start.max(cursor);
                for e in g.entries.iter().filter(|e| e.id >= start) {
                    if entries.len() >= count || scanned >= MAX_SCAN {
                        end = false;
                        break;
                    }
                    scanned += 1;
                    next = e.id + 1;
                    if q.matches(e) {
                        entries.push(e.clone());
                    }
                }
            }
            Direction::Older => {
                let start = cursor.min(stats.last_id);
                if cursor < stats.first_id && stats.count > 0 && cursor != 0 {
                    dropped = true;
                }
                next = start;
                for e in g.entries.iter().rev().filter(|e| e.id <= start) {
                    if entries.len() >= count || scanned >= MAX_SCAN {
                        end = false;
                        break;
                    }
                    scanned += 1;
                    next = e.id - 1;
                    if q.matches(e) {
                        entries.push(e.clone());
                    }
                }
                if end {
                    next = 0;
                }
            }
        }
        Ok(Page {
            entries,
            next_cursor: next,
            dropped,
            end,
            scanned,
            stats,
        })
    }

    /// The entry with `id`, if kept.
    pub fn get(&self, id: u64) -> Result<Option<Entry>, StoreError> {
        Ok(lock(&self.inner)
            .entries
            .iter()
            .find(|e| e.id == id)
            .cloned())
    }

    /// Remove every entry; ids go on, the generation grows. Returns how
    /// many entries were removed.
    pub fn clear(&self) -> Result<u64, StoreError> {
        let mut g = lock(&self.inner);
        let n = g.entries.len() as u64;
        g.entries.clear();
        g.generation += 1;
        Ok(n)
    }

    pub fn stats(&self) -> Stats {
        Self::stats_of(&lock(&self.inner), &self.limits)
    }

    fn stats_of(g: &Inner, l: &Limits) -> Stats {
        Stats {
            first_id: g.entries.front().map_or(g.next_id, |e| e.id),
            last_id: g.next_id - 1,
            count: g.entries.len() as u64,
            generation: g.generation,
            max_entries: l.max_entries,
            max_bytes: l.max_bytes,
            disk_bytes: 0,
        }
    }
}
