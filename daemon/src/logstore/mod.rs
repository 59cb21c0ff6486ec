//! The log store: an append-only, crash-safe log of entries with u64
//! sequence numbers (issue 9). No zbus here: `bus/log.rs` adapts it.
//!
//! Every method blocks (file I/O): async callers use `sync::off_runtime`.
//!
//! # On-disk format
//!
//! One directory per log:
//!
//! - `seg-<first id as 20 digits>.log`: segment files, records appended
//!   back to back. A record is `len (u32 LE, body length) ‖ CRC-32C
//!   (u32 LE) of the body ‖ body` (see `record.rs`; the body starts with
//!   the id and the time). Ids grow strictly within a segment and from one
//!   segment to the next (gaps are allowed: a cleared or quarantined
//!   range). The newest segment is the active one; a new one is started
//!   when the next record would take the active one past `segment_bytes`
//!   (or past `max_entries / 8` records), after the old one was fsynced
//!   and before the directory is fsynced.
//! - `meta.json`: `{"next_id", "generation", "cleared_below"}`, replaced
//!   atomically (temp file, fsync, rename, directory fsync). `next_id` is
//!   a floor for the next id; `cleared_below`: every record with a lower id
//!   was cleared.
//! - `seg-….log.corrupt`: quarantined segments (the newest
//!   `MAX_QUARANTINED` are kept).
//!
//! Memory holds no entry: per segment, its first and last id, count,
//! bytes, time range and a sparse index (id and offset of every 64th
//! record). A page finds its segment and block by binary search and
//! reads one block (≤ 64 records) at a time, forwards or backwards; the
//! lock is held only while a block is read (`pread`), filters are checked
//! on the CRC-checked record head and only returned entries are decoded.
//!
//! # Limits
//!
//! After each append, whole oldest segments are deleted while the log has
//! more than `max_entries` entries or `max_bytes` bytes (segments and
//! metadata), never the active segment.
//!
//! # Durability
//!
//! One `write` per batch (a batch that does not fit the active segment is
//! split at the segment boundary). `Sync`: `fdatasync` before returning.
//! `Deferred`: written only; `needs_flush` is true until `flush` fsyncs
//! the active segment (without holding the lock during the fsync). A
//! write that fails is cut back (`ftruncate`) so no partial record stays.
//!
//! # Recovery (open)
//!
//! Never fails because of file contents; only when the directory cannot
//! be used.
//!
//! - Segments are scanned in id order; every record must decode and its id
//!   must be above the previous record's (also across segments).
//! - A bad record with no valid record after it in the LAST segment is a
//!   torn or damaged tail: the file is cut there (`ftruncate` + `fsync`),
//!   reported in `OpenReport::truncated_bytes`.
//! - Damage followed by valid records, damage in any other segment, ids
//!   that go backwards, a first id that differs from the file name, or an
//!   unreadable file: the segment is renamed `*.corrupt` and reported in
//!   `OpenReport::quarantined`; the other segments stay readable.
//! - Segments whose records are all below `cleared_below` are deleted (a
//!   clear interrupted after its meta write); empty segments are deleted.
//! - The next id is the largest of the meta floor, `cleared_below`, and
//!   one above every id seen with a good CRC (also in quarantined files):
//!   an id is never given out twice.
//! - An unreadable `meta.json` is set aside as `meta.json.corrupt`.
//!
//! Clear bumps the generation and writes the meta with `cleared_below =
//! next_id` BEFORE deleting segments, so a crash in between resurrects
//! nothing.

mod record;
mod segment;
#[cfg(test)]
mod tests;

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

pub use record::{decode, encode, Decoded, Entry, RecordError, MAX_BODY, MAX_DATA_PAIRS};

use record::{peek, Head};
use segment::{parse_seg_name, scan, seg_name, ScanEnd, Seg};

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
        self.matches_head(&Head {
            id: e.id,
            time_us: e.time_us,
            severity: e.severity,
            source: &e.source,
            message_id: &e.message_id,
            len: 0,
        })
    }

    fn matches_head(&self, e: &Head<'_>) -> bool {
        self.since_us.is_none_or(|s| e.time_us >= s)
            && self.until_us.is_none_or(|u| e.time_us <= u)
            && self.max_level.is_none_or(|m| e.severity <= m)
            && self.source.as_ref().is_none_or(|s| e.source == s)
            && self.message_id.as_ref().is_none_or(|m| {
                if m.ends_with('.') {
                    e.message_id.starts_with(m.as_str())
                } else {
                    e.message_id == m
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

/// How many quarantined segments are kept (the newest).
pub const MAX_QUARANTINED: usize = 4;

const META: &str = "meta.json";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Meta {
    next_id: u64,
    generation: u64,
    cleared_below: u64,
}

struct Inner {
    segs: Vec<Seg>,
    next_id: u64,
    generation: u64,
    cleared_below: u64,
    /// Entries in all segments.
    count: u64,
    /// Bytes of all segments.
    seg_bytes: u64,
    meta_bytes: u64,
    /// Deferred writes done / fsynced (counters).
    write_seq: u64,
    synced_seq: u64,
}

/// One log (the event log or the audit log), in its own directory.
pub struct LogStore {
    dir: PathBuf,
    limits: Limits,
    inner: Mutex<Inner>,
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> StoreError {
    move |e| StoreError::Io(what, e)
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(format!("fsync {}", dir.display())))
}

fn write_meta(dir: &Path, m: &Meta) -> Result<u64, StoreError> {
    let bytes = serde_json::to_vec(m).map_err(|e| {
        StoreError::Io(
            "encode meta".into(),
            std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
        )
    })?;
    crate::store::write_atomic(dir, META, &bytes)
        .map_err(io(format!("write {}", dir.join(META).display())))?;
    Ok(bytes.len() as u64)
}

/// Rename `path` to `*.corrupt` (deleting it if that fails), keep the
/// newest `MAX_QUARANTINED`; the new path.
fn quarantine(dir: &Path, path: &Path) -> PathBuf {
    let mut to = PathBuf::from(format!("{}.corrupt", path.display()));
    let mut n = 1;
    while to.exists() && n < 100 {
        to = PathBuf::from(format!("{}.{n}.corrupt", path.display()));
        n += 1;
    }
    if let Err(e) = std::fs::rename(path, &to) {
        log::warn!("cannot rename {}: {e}; deleting it", path.display());
        let _ = std::fs::remove_file(path);
        return path.to_owned();
    }
    if let Ok(rd) = std::fs::read_dir(dir) {
        let mut old: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("seg-") && n.ends_with(".corrupt"))
            })
            .collect();
        old.sort();
        let extra = old.len().saturating_sub(MAX_QUARANTINED);
        for p in old.into_iter().take(extra) {
            let _ = std::fs::remove_file(p);
        }
    }
    to
}

impl Inner {
    fn stats(&self, l: &Limits) -> Stats {
        Stats {
            first_id: self.segs.first().map_or(self.next_id, |s| s.first_id),
            last_id: self.next_id.saturating_sub(1),
            count: self.count,
            generation: self.generation,
            max_entries: l.max_entries,
            max_bytes: l.max_bytes,
            disk_bytes: self.seg_bytes + self.meta_bytes,
        }
    }

    fn dirty(&self) -> bool {
        self.write_seq != self.synced_seq
    }

    /// Drop the file handles of every segment but the active one.
    fn close_readers(&mut self) {
        let n = self.segs.len();
        for s in self.segs.iter_mut().take(n.saturating_sub(1)) {
            s.close();
        }
    }

    /// Delete whole oldest segments (never the active one) while a limit
    /// is passed.
    fn enforce(&mut self, l: &Limits) {
        while self.segs.len() > 1
            && (self.count > l.max_entries || self.seg_bytes + self.meta_bytes > l.max_bytes)
        {
            let s = self.segs.remove(0);
            match std::fs::remove_file(&s.path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    log::warn!("cannot delete {}: {e}", s.path.display());
                    self.segs.insert(0, s);
                    return;
                }
            }
            self.count -= s.count;
            self.seg_bytes -= s.bytes;
        }
    }

    /// Start a new active segment whose first id is `first`: fsync the old
    /// one if it has unsynced writes, create the file, fsync the directory.
    fn rotate(&mut self, dir: &Path, first: u64) -> Result<(), StoreError> {
        if self.dirty() {
            if let Some(s) = self.segs.last_mut() {
                let path = s.path.display().to_string();
                s.file()?.sync_data().map_err(io(format!("fsync {path}")))?;
            }
            self.synced_seq = self.write_seq;
        }
        if let Some(s) = self.segs.last_mut() {
            s.close();
        }
        let path = dir.join(seg_name(first));
        File::create(&path).map_err(io(format!("create {}", path.display())))?;
        sync_dir(dir)?;
        self.segs.push(Seg::new(path, first));
        Ok(())
    }
}

/// The (offset, id, passes `q`) of the records of a block whose id
/// `keep`s, in order; a record that does not decode ends the block.
fn heads(bytes: &[u8], q: &Query, keep: impl Fn(u64) -> bool, out: &mut Vec<(usize, u64, bool)>) {
    out.clear();
    let mut at = 0;
    while at < bytes.len() {
        let Ok(h) = peek(&bytes[at..]) else { break };
        if keep(h.id) {
            out.push((at, h.id, q.matches_head(&h)));
        }
        at += h.len;
    }
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
        let mut report = OpenReport::default();
        let meta_path = dir.join(META);
        let meta_file = match std::fs::read(&meta_path) {
            Ok(b) => match serde_json::from_slice::<Meta>(&b) {
                Ok(m) => Some(m),
                Err(e) => {
                    let to = dir.join("meta.json.corrupt");
                    let _ = std::fs::rename(&meta_path, &to);
                    report
                        .quarantined
                        .push((to, format!("unreadable meta: {e}")));
                    None
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(StoreError::Io(format!("read {}", meta_path.display()), e)),
        };
        let meta = meta_file.unwrap_or_default();

        let mut files = Vec::new();
        let rd = std::fs::read_dir(dir).map_err(io(format!("list {}", dir.display())))?;
        for ent in rd {
            let ent = ent.map_err(io(format!("list {}", dir.display())))?;
            let name = ent.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(id) = parse_seg_name(name) {
                files.push((id, ent.path()));
            } else if name == ".meta.json.tmp" {
                let _ = std::fs::remove_file(ent.path());
            }
        }
        files.sort();

        let mut segs: Vec<Seg> = Vec::new();
        let mut floor = meta.next_id.max(meta.cleared_below).max(1);
        let mut prev = 0u64;
        let mut changed = false;
        let n = files.len();
        for (k, (name_id, path)) in files.into_iter().enumerate() {
            let last_file = k + 1 == n;
            let sc = match scan(&path, prev) {
                Ok(sc) => sc,
                Err(e) => {
                    let to = quarantine(dir, &path);
                    report.quarantined.push((to, format!("unreadable: {e}")));
                    changed = true;
                    continue;
                }
            };
            floor = floor.max(sc.max_id_seen.saturating_add(1));
            let mut seg = sc.seg;
            let top = seg.last_id.max(sc.max_id_seen);
            if top < meta.cleared_below && (seg.count > 0 || name_id < meta.cleared_below) {
                // An interrupted clear: finish it.
                let _ = std::fs::remove_file(&path);
                changed = true;
                continue;
            }
            let bad = match sc.end {
                ScanEnd::Clean => None,
                ScanEnd::Tail { at, why } if last_file => {
                    let f = OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .map_err(io(format!("open {}", path.display())))?;
                    let len = f
                        .metadata()
                        .map_err(io(format!("stat {}", path.display())))?
                        .len();
                    f.set_len(at)
                        .and_then(|()| f.sync_all())
                        .map_err(io(format!("truncate {}", path.display())))?;
                    log::warn!("{}: cut {} bytes at {at}: {why}", path.display(), len - at);
                    report.truncated_bytes += len.saturating_sub(at);
                    None
                }
                ScanEnd::Tail { at, why } => Some(format!(
                    "{why} at byte {at} of a segment that is not the last"
                )),
                ScanEnd::Corrupt { why } => Some(why),
            }
            .or_else(|| {
                (seg.count > 0 && seg.first_id != name_id).then(|| {
                    format!(
                        "first id {} does not match the file name ({name_id})",
                        seg.first_id
                    )
                })
            })
            .or_else(|| {
                (seg.count > 0 && seg.first_id < meta.cleared_below).then(|| {
                    format!(
                        "ids {}..={} straddle the clear point {}",
                        seg.first_id, seg.last_id, meta.cleared_below
                    )
                })
            });
            if let Some(why) = bad {
                let to = quarantine(dir, &path);
                report.quarantined.push((to, why));
                changed = true;
                continue;
            }
            if seg.count == 0 {
                let _ = std::fs::remove_file(&path);
                changed = true;
                continue;
            }
            seg.close();
            prev = seg.last_id;
            segs.push(seg);
        }
        let next_id = floor.max(prev.saturating_add(1));
        let want = Meta {
            next_id,
            generation: meta.generation,
            cleared_below: meta.cleared_below,
        };
        let meta_bytes = if meta_file != Some(want) {
            write_meta(dir, &want)?
        } else {
            std::fs::metadata(&meta_path).map_or(0, |m| m.len())
        };
        if changed || report.truncated_bytes > 0 {
            sync_dir(dir)?;
        }
        let mut inner = Inner {
            count: segs.iter().map(|s| s.count).sum(),
            seg_bytes: segs.iter().map(|s| s.bytes).sum(),
            segs,
            next_id,
            generation: meta.generation,
            cleared_below: meta.cleared_below,
            meta_bytes,
            write_seq: 0,
            synced_seq: 0,
        };
        inner.enforce(&limits);
        Ok((
            LogStore {
                dir: dir.to_owned(),
                limits,
                inner: Mutex::new(inner),
            },
            report,
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

    /// Records per segment at most.
    fn seg_cap(&self) -> u64 {
        (self.limits.max_entries / 8).max(1)
    }

    /// Append entries in order (one write, one fsync with `Sync`); the
    /// first and last new ids. An empty batch returns (next id, next id
    /// - 1) and writes nothing.
    pub fn append_batch(&self, es: Vec<NewEntry>, d: Durability) -> Result<(u64, u64), StoreError> {
        self.append_locked(&mut lock(&self.inner), es, d)
    }

    fn append_locked(
        &self,
        g: &mut Inner,
        es: Vec<NewEntry>,
        d: Durability,
    ) -> Result<(u64, u64), StoreError> {
        let first = g.next_id;
        if es.is_empty() {
            return Ok((first, first.saturating_sub(1)));
        }
        // Encode everything first: a bad entry writes nothing.
        let mut buf = Vec::with_capacity(es.len() * 256);
        let mut recs = Vec::with_capacity(es.len());
        for (i, e) in es.into_iter().enumerate() {
            let id = first.saturating_add(i as u64);
            let time_us = e.time_us;
            let at = buf.len();
            let entry = Entry {
                id,
                time_us,
                severity: e.severity,
                source: e.source,
                message_id: e.message_id,
                message: e.message,
                data: e.data,
            };
            encode(&entry, &mut buf).map_err(|_| StoreError::TooLarge)?;
            recs.push((id, time_us, (buf.len() - at) as u64));
        }
        let cap = self.seg_cap();
        let (mut i, mut off) = (0usize, 0usize);
        while i < recs.len() {
            let (id0, _, len0) = recs[i];
            let full = g.segs.last().is_none_or(|s| {
                s.count > 0 && (s.bytes + len0 > self.limits.segment_bytes || s.count >= cap)
            });
            if full {
                g.rotate(&self.dir, id0)?;
            }
            let Some(seg) = g.segs.last_mut() else {
                return Err(StoreError::Io(
                    "no active segment".into(),
                    std::io::ErrorKind::Other.into(),
                ));
            };
            let mut j = i;
            let mut bytes = 0u64;
            while j < recs.len()
                && (j == i
                    || (seg.bytes + bytes + recs[j].2 <= self.limits.segment_bytes
                        && seg.count + ((j - i) as u64) < cap))
            {
                bytes += recs[j].2;
                j += 1;
            }
            let chunk = &buf[off..off + bytes as usize];
            let path = seg.path.display().to_string();
            let known = seg.bytes;
            let new_seg = seg.count == 0;
            let written = {
                let f = seg.file()?;
                let mut w: &File = f;
                match w.write_all(chunk) {
                    Ok(()) => Ok((d == Durability::Sync).then(|| f.sync_data())),
                    Err(e) => {
                        // Leave no partial record behind.
                        let _ = f.set_len(known);
                        Err(e)
                    }
                }
            };
            let sync = match written {
                Ok(sync) => sync,
                Err(e) => {
                    if new_seg {
                        let _ = std::fs::remove_file(&seg.path);
                        g.segs.pop();
                    }
                    return Err(StoreError::Io(format!("write {path}"), e));
                }
            };
            for &(id, t, len) in &recs[i..j] {
                seg.note(id, t, len);
            }
            g.count += (j - i) as u64;
            g.seg_bytes += bytes;
            g.next_id = recs[j - 1].0.saturating_add(1);
            g.write_seq += 1;
            match sync {
                Some(Ok(())) => g.synced_seq = g.write_seq,
                Some(Err(e)) => return Err(StoreError::Io(format!("fsync {path}"), e)),
                None => {}
            }
            i = j;
            off += bytes as usize;
        }
        g.enforce(&self.limits);
        Ok((first, g.next_id.saturating_sub(1)))
    }

    /// Whether `Deferred` appends wait for an fsync.
    pub fn needs_flush(&self) -> bool {
        lock(&self.inner).dirty()
    }

    /// fsync what `Deferred` appends wrote (the lock is not held during
    /// the fsync).
    pub fn flush(&self) -> Result<(), StoreError> {
        let (f, seq, path) = {
            let mut g = lock(&self.inner);
            if !g.dirty() {
                return Ok(());
            }
            let seq = g.write_seq;
            let Some(s) = g.segs.last_mut() else {
                g.synced_seq = seq;
                return Ok(());
            };
            let path = s.path.display().to_string();
            let f = s.file()?.try_clone().map_err(io(format!("dup {path}")))?;
            (f, seq, path)
        };
        f.sync_data().map_err(io(format!("fsync {path}")))?;
        let mut g = lock(&self.inner);
        if g.synced_seq < seq {
            g.synced_seq = seq;
        }
        Ok(())
    }

    /// One page of at most `count` (cut to `MAX_PAGE`) entries.
    ///
    /// The lock is held only to read one block (≤ 64 records) at a time:
    /// checking filters and decoding run without it, so a long filtered
    /// scan does not hold appends up. The page shows the entries up to the
    /// `stats` read at its start; a segment rotated out meanwhile is skipped.
    pub fn page(&self, cursor: u64, count: u32, q: &Query) -> Result<Page, StoreError> {
        let r = self.page_unlocked(cursor, count, q);
        lock(&self.inner).close_readers();
        r
    }

    fn page_unlocked(&self, cursor: u64, count: u32, q: &Query) -> Result<Page, StoreError> {
        let newer = q.direction == Direction::Newer;
        // Where the next block is: (first id of its segment, block).
        let (stats, mut pos) = {
            let g = lock(&self.inner);
            let stats = g.stats(&self.limits);
            let pos = if newer {
                let start = cursor.max(stats.first_id);
                let s = g.segs.partition_point(|x| x.last_id < start);
                g.segs.get(s).map(|x| (x.first_id, x.block_of(start)))
            } else {
                let start = cursor.min(stats.last_id);
                let s = g.segs.partition_point(|x| x.first_id <= start);
                s.checked_sub(1)
                    .and_then(|k| g.segs.get(k))
                    .map(|x| (x.first_id, x.block_of(start)))
            };
            (stats, pos)
        };
        let count = count.min(MAX_PAGE) as usize;
        let mut entries = Vec::new();
        let mut scanned = 0u32;
        let mut end = true;
        let (start, dropped) = if newer {
            if cursor < stats.first_id {
                (stats.first_id, cursor != 0)
            } else {
                (cursor, false)
            }
        } else {
            (
                cursor.min(stats.last_id),
                cursor < stats.first_id && stats.count > 0 && cursor != 0,
            )
        };
        let (lo, hi) = if newer {
            (start, stats.last_id)
        } else {
            (0, start)
        };
        let mut next = start;
        // The current block: its bytes and, next one last, (offset, id,
        // passes the filters) of the records still to examine. Only the
        // entries that pass are decoded.
        let mut bytes: Vec<u8> = Vec::new();
        let mut recs: Vec<(usize, u64, bool)> = Vec::new();
        loop {
            let Some((off, id, pass)) = recs.pop() else {
                let Some(at) = pos else { break };
                bytes = self.load_block(at, newer, &mut pos)?;
                heads(&bytes, q, |id| (lo..=hi).contains(&id), &mut recs);
                if newer {
                    recs.reverse();
                }
                continue;
            };
            if entries.len() >= count || scanned >= MAX_SCAN {
                end = false;
                break;
            }
            scanned += 1;
            next = if newer {
                id.saturating_add(1)
            } else {
                id.saturating_sub(1)
            };
            if pass {
                if let Ok(d) = decode(&bytes[off..]) {
                    entries.push(d.entry);
                }
            }
        }
        if end && !newer {
            next = 0;
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

    /// Under the lock: the bytes of block `at` and, in `pos`, the block
    /// after it in the direction (`None`: none now). A segment that is
    /// gone (rotated out or cleared) is skipped: newer goes on with the
    /// next one, older ends (everything before it is gone too).
    fn load_block(
        &self,
        (first, b): (u64, usize),
        newer: bool,
        pos: &mut Option<(u64, usize)>,
    ) -> Result<Vec<u8>, StoreError> {
        let mut g = lock(&self.inner);
        *pos = None;
        if newer {
            let k = g.segs.partition_point(|x| x.first_id < first);
            let Some(seg) = g.segs.get_mut(k) else {
                return Ok(Vec::new());
            };
            let b = if seg.first_id == first { b } else { 0 };
            let bytes = seg.block_bytes(b)?;
            *pos = if b + 1 < seg.blocks() {
                Some((seg.first_id, b + 1))
            } else {
                g.segs.get(k + 1).map(|x| (x.first_id, 0))
            };
            Ok(bytes)
        } else {
            let k = g.segs.partition_point(|x| x.first_id <= first);
            let Some(k) = k.checked_sub(1) else {
                return Ok(Vec::new());
            };
            let Some(seg) = g.segs.get_mut(k).filter(|x| x.first_id == first) else {
                return Ok(Vec::new());
            };
            let bytes = seg.block_bytes(b)?;
            *pos = if b > 0 {
                Some((first, b - 1))
            } else {
                k.checked_sub(1)
                    .and_then(|j| g.segs.get(j))
                    .map(|x| (x.first_id, x.blocks().saturating_sub(1)))
            };
            Ok(bytes)
        }
    }

    /// The entry with `id`, if kept.
    pub fn get(&self, id: u64) -> Result<Option<Entry>, StoreError> {
        let mut g = lock(&self.inner);
        let s = g.segs.partition_point(|x| x.last_id < id);
        let mut out = Vec::new();
        if let Some(seg) = g.segs.get_mut(s) {
            if seg.first_id <= id {
                let b = seg.block_of(id);
                seg.read_block(b, &mut out)?;
            }
        }
        g.close_readers();
        Ok(out.into_iter().find(|e| e.id == id))
    }

    /// Remove every entry; ids go on, the generation grows. Returns how
    /// many entries were removed. The meta (new generation, `cleared_below`)
    /// is durable before any segment is deleted.
    pub fn clear(&self) -> Result<u64, StoreError> {
        self.clear_locked(&mut lock(&self.inner))
    }

    /// Clear, then append the entry `first(removed, generation)` makes,
    /// under one lock: no other append can come between, so it is the new
    /// generation's first entry. Returns how many entries went and the new
    /// entry's id.
    pub fn clear_then_append(
        &self,
        first: impl FnOnce(u64, u64) -> NewEntry,
        d: Durability,
    ) -> Result<(u64, u64), StoreError> {
        let mut g = lock(&self.inner);
        let removed = self.clear_locked(&mut g)?;
        let e = first(removed, g.generation);
        let (id, _) = self.append_locked(&mut g, vec![e], d)?;
        Ok((removed, id))
    }

    fn clear_locked(&self, g: &mut Inner) -> Result<u64, StoreError> {
        let n = g.count;
        let m = Meta {
            next_id: g.next_id,
            generation: g.generation + 1,
            cleared_below: g.next_id,
        };
        g.meta_bytes = write_meta(&self.dir, &m)?;
        g.generation = m.generation;
        g.cleared_below = m.cleared_below;
        for s in g.segs.drain(..) {
            if let Err(e) = std::fs::remove_file(&s.path) {
                // Open removes it (its ids are below cleared_below).
                log::warn!("cannot delete {}: {e}", s.path.display());
            }
        }
        g.count = 0;
        g.seg_bytes = 0;
        g.synced_seq = g.write_seq;
        Ok(n)
    }

    pub fn stats(&self) -> Stats {
        lock(&self.inner).stats(&self.limits)
    }
}
