//! Firmware storage: the slots images are written to, and the boot
//! selector that decides which slot the boot loader starts.
//!
//! Invariant enforced here, in the backend and not by its callers: the
//! slot the BMC booted from is never opened for writing
//! ([`SlotDevice::open_write`] refuses it with [`HwError::Refused`]).
//!
//! Like the rest of `hw/`, nothing here knows zbus; every call may block
//! (flash I/O), so async callers use [`super::blocking`].

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use super::{HwError, HwResult};

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
    let _ = (cfg, state_dir);
    Err(HwError::NotFound("firmware storage: not built yet".into()))
}
