//! One segment file: its in-memory summary (sparse index, counters), the
//! recovery scan, and block reads.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::record::{decode, Entry, RecordError, MAX_BODY};
use super::StoreError;

/// One index point every this many records of a segment.
pub const INDEX_EVERY: u64 = 64;

const HEADER: usize = 8;

/// `seg-<first id, 20 digits>.log`.
pub fn seg_name(first_id: u64) -> String {
    format!("seg-{first_id:020}.log")
}

/// The first id a segment file name gives, if it is one.
pub fn parse_seg_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("seg-")?.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> StoreError {
    move |e| StoreError::Io(what, e)
}

/// What memory holds of one segment: never its entries.
pub struct Seg {
    pub path: PathBuf,
    pub first_id: u64,
    pub last_id: u64,
    pub count: u64,
    /// Valid bytes (the file's length).
    pub bytes: u64,
    pub min_time: u64,
    pub max_time: u64,
    /// (id, offset) of records 0, 64, 128, … of the segment.
    pub index: Vec<(u64, u32)>,
    /// Open lazily (read + append).
    file: Option<File>,
}

impl Seg {
    pub fn new(path: PathBuf, first_id: u64) -> Seg {
        Seg {
            path,
            first_id,
            last_id: first_id.saturating_sub(1),
            count: 0,
            bytes: 0,
            min_time: u64::MAX,
            max_time: 0,
            index: Vec::new(),
            file: None,
        }
    }

    /// Account a record of `len` bytes written at the current end.
    pub fn note(&mut self, id: u64, time_us: u64, len: u64) {
        if self.count.is_multiple_of(INDEX_EVERY) {
            // Offsets fit: a segment is closed near `segment_bytes` (≤ 64 MiB).
            self.index
                .push((id, u32::try_from(self.bytes).unwrap_or(u32::MAX)));
        }
        if self.count == 0 {
            self.first_id = id;
        }
        self.last_id = id;
        self.count += 1;
        self.bytes += len;
        self.min_time = self.min_time.min(time_us);
        self.max_time = self.max_time.max(time_us);
    }

    pub fn file(&mut self) -> Result<&File, StoreError> {
        if self.file.is_none() {
            let f = OpenOptions::new()
                .read(true)
                .append(true)
                .open(&self.path)
                .map_err(io(format!("open {}", self.path.display())))?;
            self.file = Some(f);
        }
        self.file
            .as_ref()
            .ok_or_else(|| StoreError::Io("segment".into(), std::io::ErrorKind::Other.into()))
    }

    /// Drop the file handle (reopened on demand).
    pub fn close(&mut self) {
        self.file = None;
    }

    /// Number of blocks (index intervals).
    pub fn blocks(&self) -> usize {
        self.index.len()
    }

    /// The block holding `id` (the last index point ≤ id), or 0.
    pub fn block_of(&self, id: u64) -> usize {
        self.index.partition_point(|p| p.0 <= id).saturating_sub(1)
    }

    /// The bytes of block `b`.
    pub fn block_bytes(&mut self, b: usize) -> Result<Vec<u8>, StoreError> {
        let Some(&(_, start)) = self.index.get(b) else {
            return Ok(Vec::new());
        };
        let end = self.index.get(b + 1).map_or(self.bytes, |p| u64::from(p.1));
        let start = u64::from(start);
        let len = usize::try_from(end.saturating_sub(start)).unwrap_or(0);
        let mut buf = vec![0u8; len];
        let path = self.path.display().to_string();
        let f = self.file()?;
        read_exact_at(f, &mut buf, start).map_err(io(format!("read {path}")))?;
        Ok(buf)
    }

    /// Decode every record of block `b`, in order. A record that no
    /// longer decodes (damaged after open) ends the block.
    pub fn read_block(&mut self, b: usize, out: &mut Vec<Entry>) -> Result<(), StoreError> {
        let buf = self.block_bytes(b)?;
        let mut at = 0;
        while at < buf.len() {
            match decode(&buf[at..]) {
                Ok(d) => {
                    at += d.len;
                    out.push(d.entry);
                }
                Err(_) => break,
            }
        }
        Ok(())
    }
}

/// Read exactly `buf.len()` bytes at `off`; a short file leaves the rest
/// zero (decoding then stops there).
fn read_exact_at(f: &File, buf: &mut [u8], mut off: u64) -> std::io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match f.read_at(&mut buf[done..], off) {
            Ok(0) => break,
            Ok(n) => {
                done += n;
                off += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// How a segment's scan ended.
pub enum ScanEnd {
    /// Every byte is a valid record.
    Clean,
    /// Bad bytes from `at` to the end, with no valid record after them: a
    /// torn or damaged tail.
    Tail { at: u64, why: String },
    /// Damage followed by valid records, or ids that go backwards.
    Corrupt { why: String },
}

/// The result of scanning one segment file.
pub struct Scan {
    pub seg: Seg,
    pub end: ScanEnd,
    /// The highest id of any record with a good CRC, anywhere in the file
    /// (also past damage): ids are never given out again.
    pub max_id_seen: u64,
}

fn why(e: &RecordError) -> &'static str {
    match e {
        RecordError::Truncated => "torn record",
        RecordError::BadLength => "bad record length",
        RecordError::BadCrc => "CRC mismatch",
        RecordError::BadBody => "malformed record",
        RecordError::TooLarge => "record too large",
    }
}

/// The largest segment file read at open: the largest `segment_bytes`
/// (64 MiB) plus one record.
pub const MAX_FILE: u64 = 64 * 1024 * 1024 + 2 * MAX_BODY as u64;

/// Scan `path` (first id from its name): every record must decode and
/// ids must grow, starting above `after`. A file over `MAX_FILE` is an
/// error (quarantined, never read into memory).
pub fn scan(path: &Path, after: u64) -> Result<Scan, StoreError> {
    let len = std::fs::metadata(path)
        .map_err(io(format!("stat {}", path.display())))?
        .len();
    if len > MAX_FILE {
        return Err(StoreError::Io(
            format!(
                "{}: {len} bytes, more than a segment can hold",
                path.display()
            ),
            std::io::ErrorKind::InvalidData.into(),
        ));
    }
    let buf = std::fs::read(path).map_err(io(format!("read {}", path.display())))?;
    let mut seg = Seg::new(path.to_owned(), 0);
    let mut prev = after;
    let mut at = 0usize;
    let mut max_id_seen = 0;
    let end = loop {
        if at == buf.len() {
            break ScanEnd::Clean;
        }
        match decode(&buf[at..]) {
            Ok(d) => {
                max_id_seen = max_id_seen.max(d.entry.id);
                if d.entry.id <= prev {
                    break ScanEnd::Corrupt {
                        why: format!(
                            "ids go backwards at byte {at} ({} after {prev})",
                            d.entry.id
                        ),
                    };
                }
                prev = d.entry.id;
                seg.note(d.entry.id, d.entry.time_us, d.len as u64);
                at += d.len;
            }
            Err(e) => {
                let later = resync_max_id(&buf, at + 1);
                max_id_seen = max_id_seen.max(later.unwrap_or(0));
                break match later {
                    Some(id) if id > prev => ScanEnd::Corrupt {
                        why: format!("{} at byte {at}, valid records after it", why(&e)),
                    },
                    _ => ScanEnd::Tail {
                        at: at as u64,
                        why: why(&e).into(),
                    },
                };
            }
        }
    };
    Ok(Scan {
        seg,
        end,
        max_id_seen,
    })
}

/// The highest id of a record with a good CRC found at any offset from
/// `from` on (used only for damaged files).
fn resync_max_id(buf: &[u8], from: usize) -> Option<u64> {
    let mut best = None;
    let mut at = from;
    while at + HEADER <= buf.len() {
        let len = u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]) as usize;
        if (17..=MAX_BODY).contains(&len) && at + HEADER + len <= buf.len() {
            if let Ok(d) = decode(&buf[at..]) {
                best = Some(best.map_or(d.entry.id, |b: u64| b.max(d.entry.id)));
                at += d.len;
                continue;
            }
        }
        at += 1;
    }
    best
}
