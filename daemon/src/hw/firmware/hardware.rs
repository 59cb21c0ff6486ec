//! Firmware storage of a real board: slots on MTD partitions, block
//! devices or files, and a boot loader selector.

use std::path::Path;
use std::sync::Arc;

use super::file::{Capacity, FileSlot};
use super::mtd::MtdSlot;
use super::{FirmwareHw, SlotDevice};
use crate::config::{HwFirmwareConfig, SlotConfig, SlotKind};
use crate::hw::{HwError, HwResult};

/// The device of one configured slot; `booted` ones refuse writing.
pub fn slot_device(cfg: &SlotConfig, booted: bool) -> HwResult<Arc<dyn SlotDevice>> {
    match cfg.kind {
        SlotKind::File => {
            let size = cfg.size.ok_or_else(|| {
                HwError::Invalid(format!("slot {}: kind file needs a size", cfg.name))
            })?;
            Ok(Arc::new(FileSlot::new(
                &cfg.name,
                &cfg.device,
                Capacity::Fixed(size),
                booted,
            )))
        }
        SlotKind::Block => Ok(Arc::new(FileSlot::new(
            &cfg.name,
            &cfg.device,
            Capacity::Device,
            booted,
        ))),
        SlotKind::Mtd => Ok(Arc::new(MtdSlot::new(&cfg.name, &cfg.device, booted))),
    }
}

pub fn build(cfg: &HwFirmwareConfig, state_dir: &Path) -> HwResult<FirmwareHw> {
    let _ = (cfg, state_dir);
    Err(HwError::NotFound(
        "firmware storage: hardware backends not built yet".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{read_all, TempDir};
    use super::*;
    use std::path::PathBuf;

    fn slot(kind: SlotKind, device: PathBuf, size: Option<u64>) -> SlotConfig {
        SlotConfig {
            name: "bmc_b".into(),
            component: "bmc".into(),
            kind,
            device,
            size,
            root: None,
        }
    }

    #[test]
    fn file_slot_is_not_truncated_and_syncs() {
        let t = TempDir::new("hw-file");
        let p = t.path().join("slot.img");
        assert!(std::fs::write(&p, vec![0xaa; 100]).is_ok());
        let dev = slot_device(&slot(SlotKind::File, p.clone(), Some(64)), false)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(dev.capacity().ok(), Some(64));
        let mut w = dev.open_write().unwrap_or_else(|e| panic!("{e}"));
        assert!(w.write(b"abc").is_ok());
        assert!(matches!(w.write(&[0; 62]), Err(HwError::Invalid(_))));
        assert!(w.finish().is_ok());
        let all = std::fs::read(&p).unwrap_or_default();
        assert_eq!(all.len(), 100, "not truncated");
        assert_eq!(&all[..4], b"abc\xaa");
        // Reads stop at the capacity.
        assert_eq!(
            read_all(dev.open_read().unwrap_or_else(|e| panic!("{e}"))).len(),
            64
        );
        // A missing plain file is created on write.
        let q = t.path().join("new.img");
        let dev = slot_device(&slot(SlotKind::File, q.clone(), Some(8)), false)
            .unwrap_or_else(|e| panic!("{e}"));
        let w = dev.open_write().unwrap_or_else(|e| panic!("{e}"));
        assert!(w.finish().is_ok());
        assert!(q.exists());
    }

    #[test]
    fn block_slot_size_is_the_device_size_and_missing_device_is_named() {
        let t = TempDir::new("hw-block");
        let p = t.path().join("disk");
        assert!(std::fs::write(&p, vec![0u8; 4096]).is_ok());
        let dev = slot_device(&slot(SlotKind::Block, p.clone(), None), false)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(dev.capacity().ok(), Some(4096));
        let mut w = dev.open_write().unwrap_or_else(|e| panic!("{e}"));
        assert!(w.write(&[1u8; 4096]).is_ok());
        assert!(w.write(&[1u8]).is_err());
        assert!(w.finish().is_ok());
        let gone = t.path().join("nodev");
        let dev = slot_device(&slot(SlotKind::Block, gone.clone(), None), false)
            .unwrap_or_else(|e| panic!("{e}"));
        let e = dev
            .open_write()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains(&gone.display().to_string()), "{e}");
        assert!(!gone.exists(), "a block slot never creates its device");
        assert!(dev.capacity().is_err());
    }

    #[test]
    fn booted_file_and_block_slots_refuse_writing() {
        let t = TempDir::new("hw-refuse");
        let p = t.path().join("slot.img");
        assert!(std::fs::write(&p, vec![0x55; 16]).is_ok());
        for kind in [SlotKind::File, SlotKind::Block] {
            let dev = slot_device(
                &slot(kind, p.clone(), (kind == SlotKind::File).then_some(16)),
                true,
            )
            .unwrap_or_else(|e| panic!("{e}"));
            assert!(matches!(dev.open_write(), Err(HwError::Refused(_))));
            assert!(dev.open_read().is_ok());
        }
        assert_eq!(std::fs::read(&p).unwrap_or_default(), vec![0x55; 16]);
    }
}
