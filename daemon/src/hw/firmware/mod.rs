//! Firmware storage: the slots images are written to, and the boot
//! selector that decides which slot the boot loader starts.
//!
//! Invariant enforced here, in the backend and not by its callers: the
//! slot the BMC booted from is never opened for writing
//! ([`SlotDevice::open_write`] refuses it with [`HwError::Refused`]).
//!
//! Like the rest of `hw/`, nothing here knows zbus; every call may block
//! (flash I/O), so async callers use [`super::blocking`].
//!
//! Backends ([`build`] picks them from `firmware.storage`):
//! - [`sim`]: slot files, boot selection and the booted slot under
//!   `<state_dir>/sim-firmware/`, with an optional write speed limit;
//! - [`file::FileSlot`]: a plain file or a block device;
//! - [`mtd::MtdSlot`]: an MTD partition, erased block by block;
//! - boot selectors [`boot::FileBoot`] (a file naming the next slot) and
//!   [`uboot::UbootBoot`] (RAUC-style U-Boot environment);
//! - [`hardware`]: the booted slot from the kernel command line, the
//!   running version from os-release.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use super::{HwError, HwResult};
use crate::config::FirmwareStorage;

pub mod boot;
pub mod file;
pub mod hardware;
pub mod mtd;
pub mod sim;
pub mod uboot;

/// One slot's storage: a file, a block device or an MTD partition.
pub trait SlotDevice: Send + Sync {
    /// Bytes the slot can hold.
    fn capacity(&self) -> HwResult<u64>;
    /// Open the slot for writing from offset 0, erasing first where the
    /// medium needs it. Refused ([`HwError::Refused`]) for the booted slot.
    fn open_write(&self) -> HwResult<Box<dyn SlotWriter>>;
    /// Open the slot for reading from offset 0.
    fn open_read(&self) -> HwResult<Box<dyn Read + Send>>;
}

/// A slot open for writing. Bytes go out in order from offset 0.
pub trait SlotWriter: Send {
    /// Write all of `buf` (an error past the slot's capacity).
    fn write(&mut self, buf: &[u8]) -> HwResult<()>;
    /// Flush and sync everything written to the medium.
    fn finish(self: Box<Self>) -> HwResult<()>;
}

/// Which slot the boot loader starts next.
pub trait BootSelector: Send + Sync {
    /// The slot the boot loader will start next.
    fn boot_next(&self) -> HwResult<String>;
    /// Make `slot` boot next; persisted when this returns.
    fn set_boot_next(&self, slot: &str) -> HwResult<()>;
}

/// One slot as the configuration describes it.
pub struct Slot {
    /// `bmc_a`, `bmc_b`, … (`bmcd_api::is_slot_name`).
    pub name: String,
    /// `bmc`, or another component's word.
    pub component: String,
    pub device: Arc<dyn SlotDevice>,
}

/// The firmware storage the configuration describes.
pub struct FirmwareHw {
    /// Every slot, in the configured order.
    pub slots: Vec<Slot>,
    pub boot: Arc<dyn BootSelector>,
    /// The slot the BMC runs from now (from the kernel command line, or
    /// the simulator).
    pub booted: String,
    /// The version of the running image when no update recorded one
    /// (the simulator's configured one, or `VERSION_ID` of os-release).
    pub running_version: String,
}

/// Build the firmware storage the configuration describes; the sim keeps
/// its slot files and boot selection under `state_dir`.
pub fn build(cfg: &crate::config::FirmwareConfig, state_dir: &Path) -> HwResult<FirmwareHw> {
    match &cfg.storage {
        FirmwareStorage::Sim(s) => sim::build(s, &state_dir.join(sim::DIR)),
        FirmwareStorage::Hardware(h) => hardware::build(h, state_dir),
    }
}

/// An [`HwError::Io`] naming `what`.
pub(crate) fn io_err(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> HwError {
    let what = what.to_string();
    move |source| HwError::Io { what, source }
}

/// Replace `path` with `data` atomically ([`crate::store::write_atomic`]:
/// a temporary file beside it, synced, renamed over it, the directory
/// synced).
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> HwResult<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    crate::store::write_atomic(dir, &name, data).map_err(io_err(path.display()))
}

/// Read a small text file (at most 64 KiB), `None` if it does not exist.
pub(crate) fn read_small(path: &Path) -> HwResult<Option<String>> {
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path.display())(e)),
    };
    let mut buf = Vec::new();
    f.take(64 << 10)
        .read_to_end(&mut buf)
        .map_err(io_err(path.display()))?;
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

#[cfg(test)]
pub(crate) mod testutil {
    use std::path::{Path, PathBuf};

    /// A directory removed when dropped.
    pub struct TempDir(PathBuf);

    impl TempDir {
        pub fn new(tag: &str) -> TempDir {
            let d = std::env::temp_dir().join(format!("bmcd-fw-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).ok();
            TempDir(d)
        }
        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Everything `r` yields.
    pub fn read_all(mut r: Box<dyn std::io::Read + Send>) -> Vec<u8> {
        let mut v = Vec::new();
        r.read_to_end(&mut v).ok();
        v
    }
}
