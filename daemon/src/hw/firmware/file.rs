//! A slot that is a plain file or a block device (eMMC partition), and the
//! simulator's slot files (a plain file with a write speed limit).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{io_err, SlotDevice, SlotWriter};
use crate::hw::{HwError, HwResult};

/// How a [`FileSlot`] knows its capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capacity {
    /// A plain file: the configured size (the file may be shorter, or
    /// sparse).
    Fixed(u64),
    /// A block device: its size (seek to the end).
    Device,
}

/// A slot stored in a plain file or on a block device. Opened without
/// truncation; written from offset 0; synced in [`SlotWriter::finish`].
pub struct FileSlot {
    name: String,
    path: PathBuf,
    capacity: Capacity,
    /// The slot the BMC runs from: never opened for writing.
    booted: bool,
    /// Write speed limit, bytes per second; 0 = none (the simulator's).
    write_bytes_per_s: u64,
}

impl FileSlot {
    pub fn new(name: &str, path: &Path, capacity: Capacity, booted: bool) -> FileSlot {
        FileSlot {
            name: name.to_owned(),
            path: path.to_owned(),
            capacity,
            booted,
            write_bytes_per_s: 0,
        }
    }

    /// Limit writes to `bytes_per_s` (0 = no limit).
    pub fn throttled(mut self, bytes_per_s: u64) -> FileSlot {
        self.write_bytes_per_s = bytes_per_s;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn what(&self) -> String {
        format!("slot {} ({})", self.name, self.path.display())
    }
}

/// The size of an open block device (or file): seek to its end.
fn device_size(f: &mut File, what: &str) -> HwResult<u64> {
    f.seek(SeekFrom::End(0)).map_err(io_err(what))
}

impl SlotDevice for FileSlot {
    fn capacity(&self) -> HwResult<u64> {
        match self.capacity {
            Capacity::Fixed(n) => Ok(n),
            Capacity::Device => {
                let what = self.what();
                let mut f = File::open(&self.path).map_err(io_err(&what))?;
                device_size(&mut f, &what)
            }
        }
    }

    fn open_write(&self) -> HwResult<Box<dyn SlotWriter>> {
        let what = self.what();
        if self.booted {
            return Err(HwError::Refused(format!(
                "{what} is the booted slot: not opened for writing"
            )));
        }
        // Never truncate (a block device cannot be, a file keeps its
        // size); create only a plain file, never a node under /dev.
        let mut file = OpenOptions::new()
            .write(true)
            .create(matches!(self.capacity, Capacity::Fixed(_)))
            .truncate(false)
            .open(&self.path)
            .map_err(io_err(&what))?;
        let capacity = match self.capacity {
            Capacity::Fixed(n) => n,
            Capacity::Device => device_size(&mut file, &what)?,
        };
        file.seek(SeekFrom::Start(0)).map_err(io_err(&what))?;
        Ok(Box::new(FileWriter {
            file,
            what,
            pos: 0,
            capacity,
            throttle: Throttle::new(self.write_bytes_per_s),
        }))
    }

    fn open_read(&self) -> HwResult<Box<dyn Read + Send>> {
        let what = self.what();
        let mut f = File::open(&self.path).map_err(io_err(&what))?;
        let cap = match self.capacity {
            Capacity::Fixed(n) => n,
            Capacity::Device => {
                // Drop the device's cached pages (clean after the writer's
                // fsync), so that a read-back reads the medium, not what
                // the writer left in memory. Advice only: a failure is
                // not an error.
                let _ = nix::fcntl::posix_fadvise(
                    &f,
                    0,
                    0,
                    nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
                );
                let n = device_size(&mut f, &what)?;
                f.seek(SeekFrom::Start(0)).map_err(io_err(&what))?;
                n
            }
        };
        Ok(Box::new(f.take(cap)))
    }
}

struct FileWriter {
    file: File,
    what: String,
    pos: u64,
    capacity: u64,
    throttle: Option<Throttle>,
}

impl SlotWriter for FileWriter {
    fn write(&mut self, buf: &[u8]) -> HwResult<()> {
        let end = self.pos.saturating_add(buf.len() as u64);
        if end > self.capacity {
            return Err(HwError::Invalid(format!(
                "{}: {end} bytes do not fit the slot's {} bytes",
                self.what, self.capacity
            )));
        }
        self.file.write_all(buf).map_err(io_err(&self.what))?;
        self.pos = end;
        if let Some(t) = &mut self.throttle {
            t.wrote(buf.len() as u64);
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> HwResult<()> {
        self.file.flush().map_err(io_err(&self.what))?;
        self.file.sync_all().map_err(io_err(&self.what))
    }
}

/// Keeps the average write speed at or below a rate: after each write,
/// sleeps until the bytes written so far are due.
pub(crate) struct Throttle {
    bytes_per_s: u64,
    start: Instant,
    bytes: u64,
}

impl Throttle {
    /// `None` for 0 (no limit).
    pub(crate) fn new(bytes_per_s: u64) -> Option<Throttle> {
        (bytes_per_s > 0).then(|| Throttle {
            bytes_per_s,
            start: Instant::now(),
            bytes: 0,
        })
    }

    pub(crate) fn wrote(&mut self, n: u64) {
        self.bytes = self.bytes.saturating_add(n);
        let due = due_after(self.bytes, self.bytes_per_s);
        if let Some(wait) = due.checked_sub(self.start.elapsed()) {
            std::thread::sleep(wait);
        }
    }
}

/// When `bytes` are due at `bytes_per_s` (> 0).
fn due_after(bytes: u64, bytes_per_s: u64) -> Duration {
    let secs = bytes / bytes_per_s;
    let rest = bytes % bytes_per_s;
    // rest < bytes_per_s, so the nanoseconds are below 1e9.
    let nanos = (u128::from(rest) * 1_000_000_000 / u128::from(bytes_per_s)) as u32;
    Duration::new(secs, nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_after_is_exact() {
        assert_eq!(due_after(0, 10), Duration::ZERO);
        assert_eq!(due_after(15, 10), Duration::from_millis(1500));
        assert_eq!(due_after(u64::MAX, 1), Duration::from_secs(u64::MAX));
    }
}
