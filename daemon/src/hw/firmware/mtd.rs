//! A slot on an MTD partition (`/dev/mtdN`, raw NOR or NAND flash).
//!
//! Flash cannot be overwritten in place: an erase block must be erased
//! (all bytes 0xff) before it is programmed, and NAND is programmed in
//! whole pages (`writesize`). The writer therefore collects one erase
//! block, erases it (`MEMERASE`) and writes it whole; the last, partial
//! block is padded with 0xff up to a whole page. Blocks after the image
//! are left as they were (the read-back reads only the image's bytes).
//!
//! The write logic runs against the [`Flash`] trait, so that it is tested
//! with an in-memory model of NOR/NAND semantics; [`MtdDevice`] is the
//! thin ioctl layer over a real `/dev/mtdN`.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::{io_err, SlotDevice, SlotWriter};
use crate::hw::{HwError, HwResult};

/// Largest erase block accepted (the writer holds one in memory).
const MAX_ERASE_BYTES: u64 = 16 << 20;

/// `struct mtd_info_user` of `<mtd/mtd-abi.h>`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct MtdInfoUser {
    pub kind: u8,
    pub flags: u32,
    pub size: u32,
    pub erasesize: u32,
    pub writesize: u32,
    pub oobsize: u32,
    pub padding: u64,
}

/// `struct erase_info_user` of `<mtd/mtd-abi.h>`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct EraseInfoUser {
    pub start: u32,
    pub length: u32,
}

// The ioctl numbers encode these sizes; the kernel's are 32 and 8 bytes.
const _: () = assert!(std::mem::size_of::<MtdInfoUser>() == 32);
const _: () = assert!(std::mem::size_of::<EraseInfoUser>() == 8);

mod ioctl {
    use super::{EraseInfoUser, MtdInfoUser};
    // MEMGETINFO = _IOR('M', 1, struct mtd_info_user)
    nix::ioctl_read!(mem_get_info, b'M', 1, MtdInfoUser);
    // MEMERASE = _IOW('M', 2, struct erase_info_user)
    nix::ioctl_write_ptr!(mem_erase, b'M', 2, EraseInfoUser);
    // MEMGETBADBLOCK = _IOW('M', 11, __kernel_loff_t)
    nix::ioctl_write_ptr!(mem_get_bad_block, b'M', 11, i64);
}

/// The shape of a flash partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Bytes in the partition.
    pub size: u64,
    /// Bytes erased at once.
    pub erasesize: u64,
    /// Bytes programmed at once (1 on NOR, a page on NAND).
    pub writesize: u64,
}

impl Geometry {
    /// Check the numbers a driver reported: nonzero, pages dividing
    /// erase blocks dividing the partition, erase blocks of at most
    /// 16 MiB.
    pub fn checked(self, what: &str) -> HwResult<Geometry> {
        let ok = self.erasesize > 0
            && self.writesize > 0
            && self.erasesize <= MAX_ERASE_BYTES
            && self.erasesize.is_multiple_of(self.writesize)
            && self.size.is_multiple_of(self.erasesize);
        if ok {
            Ok(self)
        } else {
            Err(HwError::Invalid(format!(
                "{what}: unusable flash geometry (size {}, erase block {}, page {})",
                self.size, self.erasesize, self.writesize
            )))
        }
    }
}

/// `len` rounded up to a whole number of `unit`s (`unit` > 0).
pub fn padded_len(len: u64, unit: u64) -> u64 {
    len.div_ceil(unit).saturating_mul(unit)
}

/// The erase blocks `(start, length)` that hold bytes `[offset, offset +
/// len)`, in order.
pub fn erase_plan(offset: u64, len: u64, erasesize: u64) -> Vec<(u64, u64)> {
    if len == 0 || erasesize == 0 {
        return Vec::new();
    }
    let first = offset / erasesize;
    let last = (offset.saturating_add(len) - 1) / erasesize;
    (first..=last).map(|b| (b * erasesize, erasesize)).collect()
}

/// Erase and program operations of a flash partition.
pub trait Flash: Send {
    /// Erase `len` bytes at `start` (whole erase blocks) to 0xff.
    fn erase(&mut self, start: u64, len: u64) -> HwResult<()>;
    /// Program `buf` at `offset` (whole pages, erased before).
    fn program(&mut self, offset: u64, buf: &[u8]) -> HwResult<()>;
    /// Everything programmed is on the medium.
    fn sync(&mut self) -> HwResult<()>;
}

/// Writes a stream from offset 0, erase block by erase block.
pub struct FlashWriter<F: Flash> {
    flash: F,
    geo: Geometry,
    what: String,
    /// The erase block being collected.
    block: Vec<u8>,
    /// Its offset.
    block_start: u64,
}

impl<F: Flash> FlashWriter<F> {
    pub fn new(flash: F, geo: Geometry, what: &str) -> FlashWriter<F> {
        FlashWriter {
            flash,
            geo,
            what: what.to_owned(),
            block: Vec::new(),
            block_start: 0,
        }
    }

    /// Erase the collected block and program it, padded with 0xff to a
    /// whole page.
    fn flush_block(&mut self) -> HwResult<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        let len = padded_len(self.block.len() as u64, self.geo.writesize);
        // len <= erasesize <= 16 MiB.
        self.block.resize(len as usize, 0xff);
        for (start, n) in erase_plan(self.block_start, len, self.geo.erasesize) {
            self.flash.erase(start, n)?;
        }
        self.flash.program(self.block_start, &self.block)?;
        self.block_start += self.geo.erasesize;
        self.block.clear();
        Ok(())
    }

    pub fn write_bytes(&mut self, mut buf: &[u8]) -> HwResult<()> {
        let end = self
            .block_start
            .saturating_add(self.block.len() as u64)
            .saturating_add(buf.len() as u64);
        if end > self.geo.size {
            return Err(HwError::Invalid(format!(
                "{}: {end} bytes do not fit the slot's {} bytes",
                self.what, self.geo.size
            )));
        }
        // erasesize <= 16 MiB fits usize.
        let eb = self.geo.erasesize as usize;
        while !buf.is_empty() {
            let take = (eb - self.block.len()).min(buf.len());
            self.block.extend_from_slice(&buf[..take]);
            buf = &buf[take..];
            if self.block.len() == eb {
                self.flush_block()?;
            }
        }
        Ok(())
    }

    pub fn finish_flash(mut self) -> HwResult<F> {
        self.flush_block()?;
        self.flash.sync()?;
        Ok(self.flash)
    }
}

impl<F: Flash + 'static> SlotWriter for FlashWriter<F> {
    fn write(&mut self, buf: &[u8]) -> HwResult<()> {
        self.write_bytes(buf)
    }

    fn finish(self: Box<Self>) -> HwResult<()> {
        (*self).finish_flash().map(|_| ())
    }
}

/// A slot on `/dev/mtdN`.
pub struct MtdSlot {
    name: String,
    path: PathBuf,
    booted: bool,
}

impl MtdSlot {
    pub fn new(name: &str, path: &Path, booted: bool) -> MtdSlot {
        MtdSlot {
            name: name.to_owned(),
            path: path.to_owned(),
            booted,
        }
    }

    fn what(&self) -> String {
        format!("slot {} ({})", self.name, self.path.display())
    }
}

/// The geometry of the open MTD device `f`.
fn geometry(f: &File, what: &str) -> HwResult<Geometry> {
    let mut info = MtdInfoUser::default();
    // SAFETY: MEMGETINFO writes one `struct mtd_info_user` (layout
    // mirrored by the #[repr(C)] `MtdInfoUser`) through the pointer, which
    // points to a live, writable value of that type; the fd is open for
    // the duration of the call. On a file that is not an MTD device the
    // kernel fails with ENOTTY and writes nothing.
    unsafe { ioctl::mem_get_info(f.as_raw_fd(), &mut info) }.map_err(|e| HwError::Io {
        what: format!("{what}: MEMGETINFO (not an MTD device?)"),
        source: e.into(),
    })?;
    Geometry {
        size: info.size.into(),
        erasesize: info.erasesize.into(),
        writesize: info.writesize.into(),
    }
    .checked(what)
}

impl SlotDevice for MtdSlot {
    fn capacity(&self) -> HwResult<u64> {
        let what = self.what();
        let f = File::open(&self.path).map_err(io_err(&what))?;
        Ok(geometry(&f, &what)?.size)
    }

    fn open_write(&self) -> HwResult<Box<dyn SlotWriter>> {
        let what = self.what();
        if self.booted {
            return Err(HwError::Refused(format!(
                "{what} is the booted slot: not opened for writing"
            )));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)
            .map_err(io_err(&what))?;
        let geo = geometry(&file, &what)?;
        let dev = MtdDevice {
            file,
            what: what.clone(),
        };
        Ok(Box::new(FlashWriter::new(dev, geo, &what)))
    }

    fn open_read(&self) -> HwResult<Box<dyn Read + Send>> {
        let what = self.what();
        let f = File::open(&self.path).map_err(io_err(&what))?;
        let size = geometry(&f, &what)?.size;
        Ok(Box::new(f.take(size)))
    }
}

/// An open `/dev/mtdN`.
pub struct MtdDevice {
    file: File,
    what: String,
}

impl Flash for MtdDevice {
    fn erase(&mut self, start: u64, len: u64) -> HwResult<()> {
        let bad_at = i64::try_from(start)
            .map_err(|_| HwError::Invalid(format!("{}: offset {start} too large", self.what)))?;
        // SAFETY: MEMGETBADBLOCK reads one loff_t through the pointer, which
        // points to a live i64 for the duration of the call; the fd is open.
        match unsafe { ioctl::mem_get_bad_block(self.file.as_raw_fd(), &bad_at) } {
            Ok(0) => {}
            Ok(_) => {
                return Err(HwError::Invalid(format!(
                    "{}: erase block at {start:#x} is bad",
                    self.what
                )))
            }
            // Drivers without bad-block support.
            Err(nix::errno::Errno::EOPNOTSUPP) | Err(nix::errno::Errno::ENOTTY) => {}
            Err(e) => {
                return Err(HwError::Io {
                    what: format!("{}: MEMGETBADBLOCK at {start:#x}", self.what),
                    source: e.into(),
                })
            }
        }
        let too_big = || HwError::Invalid(format!("{}: erase at {start:#x} too large", self.what));
        let arg = EraseInfoUser {
            start: u32::try_from(start).map_err(|_| too_big())?,
            length: u32::try_from(len).map_err(|_| too_big())?,
        };
        // SAFETY: MEMERASE reads one `struct erase_info_user` (mirrored by
        // the #[repr(C)] `EraseInfoUser`) through the pointer, which points
        // to a live value for the duration of the call; the fd is open for
        // writing. The kernel checks the range against the partition.
        unsafe { ioctl::mem_erase(self.file.as_raw_fd(), &arg) }.map_err(|e| HwError::Io {
            what: format!("{}: MEMERASE at {start:#x}+{len:#x}", self.what),
            source: e.into(),
        })?;
        Ok(())
    }

    fn program(&mut self, offset: u64, buf: &[u8]) -> HwResult<()> {
        self.file
            .write_all_at(buf, offset)
            .map_err(io_err(format!("{} at {offset:#x}", self.what)))
    }

    fn sync(&mut self) -> HwResult<()> {
        self.file.sync_all().map_err(io_err(&self.what))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Flash in memory with its rules: erase whole aligned blocks to 0xff;
    /// program whole aligned pages, only bits 1 → 0, each page once per
    /// erase (NAND).
    struct FakeFlash {
        geo: Geometry,
        data: Vec<u8>,
        /// Pages programmed since their block was erased.
        programmed: Vec<bool>,
        erases: Vec<(u64, u64)>,
        synced: bool,
        fail_erase_at: Option<u64>,
    }

    impl FakeFlash {
        fn new(geo: Geometry, fill: u8) -> FakeFlash {
            FakeFlash {
                geo,
                data: vec![fill; geo.size as usize],
                programmed: vec![true; (geo.size / geo.writesize) as usize],
                erases: Vec::new(),
                synced: false,
                fail_erase_at: None,
            }
        }
    }

    impl Flash for FakeFlash {
        fn erase(&mut self, start: u64, len: u64) -> HwResult<()> {
            if Some(start) == self.fail_erase_at {
                return Err(HwError::Invalid("erase failed".into()));
            }
            assert_eq!(start % self.geo.erasesize, 0, "unaligned erase");
            assert_eq!(len % self.geo.erasesize, 0, "partial erase");
            assert!(start + len <= self.geo.size);
            self.data[start as usize..(start + len) as usize].fill(0xff);
            let ws = self.geo.writesize;
            for p in start / ws..(start + len) / ws {
                self.programmed[p as usize] = false;
            }
            self.erases.push((start, len));
            Ok(())
        }

        fn program(&mut self, offset: u64, buf: &[u8]) -> HwResult<()> {
            let ws = self.geo.writesize;
            assert_eq!(offset % ws, 0, "unaligned program");
            assert_eq!(buf.len() as u64 % ws, 0, "partial page");
            for p in offset / ws..(offset + buf.len() as u64) / ws {
                assert!(!self.programmed[p as usize], "page {p} not erased");
                self.programmed[p as usize] = true;
            }
            for (i, b) in buf.iter().enumerate() {
                self.data[offset as usize + i] &= *b;
            }
            Ok(())
        }

        fn sync(&mut self) -> HwResult<()> {
            self.synced = true;
            Ok(())
        }
    }

    const NAND: Geometry = Geometry {
        size: 64 * 1024,
        erasesize: 16 * 1024,
        writesize: 2048,
    };

    fn image(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    fn write_in_chunks(flash: FakeFlash, img: &[u8], chunk: usize) -> FakeFlash {
        let mut w = FlashWriter::new(flash, NAND, "test");
        for c in img.chunks(chunk) {
            assert!(w.write_bytes(c).is_ok());
        }
        w.finish_flash().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn pure_helpers() {
        assert_eq!(padded_len(0, 2048), 0);
        assert_eq!(padded_len(1, 2048), 2048);
        assert_eq!(padded_len(2048, 2048), 2048);
        assert_eq!(padded_len(2049, 1), 2049);
        assert_eq!(erase_plan(0, 0, 4096), vec![]);
        assert_eq!(erase_plan(0, 1, 4096), vec![(0, 4096)]);
        assert_eq!(erase_plan(4095, 2, 4096), vec![(0, 4096), (4096, 4096)]);
        assert_eq!(erase_plan(8192, 4096, 4096), vec![(8192, 4096)]);
        assert_eq!(erase_plan(0, 10, 0), vec![]);
        assert!(NAND.checked("x").is_ok());
        for bad in [
            Geometry {
                erasesize: 0,
                ..NAND
            },
            Geometry {
                writesize: 0,
                ..NAND
            },
            Geometry {
                writesize: 3000,
                ..NAND
            },
            Geometry {
                size: NAND.size + 1,
                ..NAND
            },
            Geometry {
                erasesize: 32 << 20,
                size: 64 << 20,
                ..NAND
            },
        ] {
            let e = bad.checked("/dev/mtd9").err().map(|e| e.to_string());
            assert!(e.unwrap_or_default().starts_with("/dev/mtd9: unusable"));
        }
    }

    #[test]
    fn image_is_written_over_old_data_erase_before_program() {
        // 1.5 erase blocks plus a partial page, over old non-0xff data, in
        // chunk sizes that straddle blocks and pages.
        for chunk in [1, 1000, 2048, 16 * 1024, 65536] {
            let img = image(16 * 1024 + 8 * 1024 + 100);
            let f = write_in_chunks(FakeFlash::new(NAND, 0x00), &img, chunk);
            assert!(f.synced);
            assert_eq!(&f.data[..img.len()], &img[..], "chunk {chunk}");
            // The last page is padded with 0xff.
            let page_end = padded_len(img.len() as u64, NAND.writesize) as usize;
            assert!(f.data[img.len()..page_end].iter().all(|b| *b == 0xff));
            // Erased exactly the two blocks the image touches, in order.
            assert_eq!(f.erases, vec![(0, 16384), (16384, 16384)]);
            // Blocks after the image are untouched.
            assert!(f.data[32 * 1024..].iter().all(|b| *b == 0));
        }
    }

    #[test]
    fn full_partition_and_overflow() {
        let img = image(NAND.size as usize);
        let f = write_in_chunks(FakeFlash::new(NAND, 0x5a), &img, 4096);
        assert_eq!(f.data, img);
        assert_eq!(f.erases.len(), 4);
        let mut w = FlashWriter::new(FakeFlash::new(NAND, 0), NAND, "/dev/mtd5");
        assert!(w.write_bytes(&img).is_ok());
        let e = w.write_bytes(&[1]).err().map(|e| e.to_string());
        assert!(e
            .unwrap_or_default()
            .starts_with("/dev/mtd5: 65537 bytes do not fit"));
    }

    #[test]
    fn empty_image_erases_nothing_and_erase_errors_surface() {
        let w = FlashWriter::new(FakeFlash::new(NAND, 0), NAND, "t");
        let f = w.finish_flash().unwrap_or_else(|e| panic!("{e}"));
        assert!(f.erases.is_empty());
        let mut flash = FakeFlash::new(NAND, 0);
        flash.fail_erase_at = Some(16384);
        let mut w = FlashWriter::new(flash, NAND, "t");
        assert!(w.write_bytes(&image(16384)).is_ok());
        assert!(w.write_bytes(&image(10)).is_ok());
        assert!(w.finish_flash().is_err());
    }

    #[test]
    fn regular_file_is_not_an_mtd_device_and_booted_refuses() {
        let p = std::env::temp_dir().join(format!("bmcd-fw-mtd-{}", std::process::id()));
        assert!(std::fs::write(&p, [0u8; 4096]).is_ok());
        let s = MtdSlot::new("bmc_b", &p, false);
        let e = s
            .capacity()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("MEMGETINFO") && e.contains(&p.display().to_string()),
            "{e}"
        );
        assert!(s.open_write().is_err());
        assert!(s.open_read().is_err());
        let booted = MtdSlot::new("bmc_a", &p, true);
        assert!(matches!(booted.open_write(), Err(HwError::Refused(_))));
        assert_eq!(std::fs::read(&p).unwrap_or_default(), vec![0u8; 4096]);
        let _ = std::fs::remove_file(&p);
        assert!(MtdSlot::new("bmc_b", Path::new("/nonexistent/mtd9"), false)
            .capacity()
            .is_err());
    }
}
