//! Firmware storage of a real board: slots on MTD partitions, block
//! devices or files, and a boot loader selector.

use std::path::Path;

use super::FirmwareHw;
use crate::config::HwFirmwareConfig;
use crate::hw::{HwError, HwResult};

pub fn build(cfg: &HwFirmwareConfig, state_dir: &Path) -> HwResult<FirmwareHw> {
    let _ = (cfg, state_dir);
    Err(HwError::NotFound(
        "firmware storage: hardware backends not built yet".into(),
    ))
}
