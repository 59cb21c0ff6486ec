//! The simulated firmware storage, under `<state_dir>/sim-firmware/`:
//!
//! - `bmc_a.img`, `bmc_b.img`: the slots, sparse files of `slot_size`
//!   bytes created at the first start; the booted slot then gets the
//!   deterministic [`factory_payload`];
//! - `booted`: the slot the simulated BMC runs from, written from the
//!   configuration at the first start and read from the file afterwards
//!   (a test "reboots" the BMC by writing it between daemon runs);
//! - `boot_next`: the slot the simulated boot loader starts next.

use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::boot::FileBoot;
use super::file::{Capacity, FileSlot};
use super::{io_err, read_small, write_atomic, FirmwareHw, Slot};
use crate::config::SimFirmwareConfig;
use crate::hw::{HwError, HwResult};
use bmcd_api::{BMC_COMPONENT, BMC_SLOTS};

/// Directory of the simulated storage under the state directory.
pub const DIR: &str = "sim-firmware";
/// Size of the factory payload in the booted slot at the first start.
pub const FACTORY_BYTES: u64 = 1 << 20;

/// The file of slot `slot` in the simulator's directory `dir`.
pub fn slot_path(dir: &Path, slot: &str) -> PathBuf {
    dir.join(format!("{slot}.img"))
}

/// The factory payload's first `len` bytes: a fixed xorshift stream, the
/// same on every machine and run.
pub fn factory_payload(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let take = (len - out.len()).min(8);
        out.extend_from_slice(&x.to_le_bytes()[..take]);
    }
    out
}

/// Create what is missing under `dir` and describe the storage.
pub fn build(cfg: &SimFirmwareConfig, dir: &Path) -> HwResult<FirmwareHw> {
    fs::create_dir_all(dir).map_err(io_err(dir.display()))?;
    let booted_path = dir.join("booted");
    let booted = match read_small(&booted_path)? {
        Some(text) => {
            let name = text.trim();
            if !BMC_SLOTS.contains(&name) {
                return Err(HwError::Invalid(format!(
                    "{}: '{}' is not a slot ({})",
                    booted_path.display(),
                    name.escape_debug(),
                    BMC_SLOTS.join(", ")
                )));
            }
            name.to_owned()
        }
        None => {
            write_atomic(&booted_path, format!("{}\n", cfg.booted).as_bytes())?;
            cfg.booted.clone()
        }
    };
    let mut slots = Vec::new();
    for name in BMC_SLOTS {
        let path = slot_path(dir, name);
        prepare_slot(&path, cfg.slot_size, name == booted)?;
        let dev = FileSlot::new(name, &path, Capacity::Fixed(cfg.slot_size), name == booted)
            .throttled(cfg.write_bytes_per_s);
        slots.push(Slot {
            name: name.to_owned(),
            component: BMC_COMPONENT.to_owned(),
            device: Arc::new(dev),
        });
    }
    let boot_path = dir.join("boot_next");
    if read_small(&boot_path)?.is_none() {
        write_atomic(&boot_path, format!("{booted}\n").as_bytes())?;
    }
    let names = BMC_SLOTS.iter().map(|s| (*s).to_owned()).collect();
    Ok(FirmwareHw {
        slots,
        boot: Arc::new(FileBoot::new(&boot_path, names, &booted)),
        booted,
        running_version: cfg.version.clone(),
    })
}

/// Create the slot file at `size` bytes if it is missing (with the factory
/// payload if `factory`); grow a shorter one (a larger `slot_size`).
fn prepare_slot(path: &Path, size: u64, factory: bool) -> HwResult<()> {
    let what = path.display().to_string();
    match fs::metadata(path) {
        Ok(m) => {
            if !m.is_file() {
                return Err(HwError::Invalid(format!("{what}: not a regular file")));
            }
            if m.len() < size {
                let f = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(io_err(&what))?;
                f.set_len(size).map_err(io_err(&what))?;
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Built beside and renamed: a crash never leaves a slot file
            // without its factory payload.
            let tmp = path.with_extension("img.tmp");
            let twhat = tmp.display().to_string();
            let mut f = File::create(&tmp).map_err(io_err(&twhat))?;
            f.set_len(size).map_err(io_err(&twhat))?;
            if factory {
                let n = FACTORY_BYTES.min(size) as usize;
                f.seek(SeekFrom::Start(0)).map_err(io_err(&twhat))?;
                f.write_all(&factory_payload(n)).map_err(io_err(&twhat))?;
            }
            f.sync_all().map_err(io_err(&twhat))?;
            fs::rename(&tmp, path).map_err(io_err(&what))
        }
        Err(e) => Err(io_err(&what)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{read_all, TempDir};
    use super::super::{build as build_cfg, HwError};
    use super::*;
    use crate::config::{FirmwareConfig, FirmwareStorage};

    fn cfg(slot_size: u64, rate: u64) -> FirmwareConfig {
        FirmwareConfig {
            storage: FirmwareStorage::Sim(SimFirmwareConfig {
                slot_size,
                write_bytes_per_s: rate,
                ..SimFirmwareConfig::default()
            }),
            ..FirmwareConfig::default()
        }
    }

    fn slot<'a>(hw: &'a FirmwareHw, name: &str) -> &'a Slot {
        let found = hw.slots.iter().find(|s| s.name == name);
        assert!(found.is_some(), "no slot {name}");
        found.unwrap_or_else(|| unreachable!())
    }

    #[test]
    fn first_start_creates_slots_with_factory_payload() {
        let t = TempDir::new("sim-first");
        let hw = build_cfg(&cfg(4 << 20, 0), t.path()).map_err(|e| e.to_string());
        let hw = hw.unwrap_or_else(|e| panic!("{e}"));
        let dir = t.path().join(DIR);
        assert_eq!(hw.booted, "bmc_a");
        assert_eq!(hw.running_version, "1.0.0");
        assert_eq!(hw.slots.len(), 2);
        for s in &hw.slots {
            assert_eq!(s.component, "bmc");
            assert_eq!(s.device.capacity().ok(), Some(4 << 20));
            let m = fs::metadata(slot_path(&dir, &s.name)).map(|m| m.len()).ok();
            assert_eq!(m, Some(4 << 20));
        }
        let a = read_all(
            slot(&hw, "bmc_a")
                .device
                .open_read()
                .unwrap_or_else(|e| panic!("{e}")),
        );
        assert_eq!(a.len(), 4 << 20);
        assert_eq!(&a[..1 << 20], &factory_payload(1 << 20)[..]);
        assert!(a[1 << 20..].iter().all(|b| *b == 0));
        let b = read_all(
            slot(&hw, "bmc_b")
                .device
                .open_read()
                .unwrap_or_else(|e| panic!("{e}")),
        );
        assert!(b.iter().all(|b| *b == 0));
        assert_eq!(hw.boot.boot_next().ok().as_deref(), Some("bmc_a"));
        assert_eq!(
            fs::read_to_string(dir.join("booted")).ok().as_deref(),
            Some("bmc_a\n")
        );
        // Deterministic.
        assert_eq!(factory_payload(20), factory_payload(100)[..20].to_vec());
    }

    #[test]
    fn booted_slot_refuses_write_and_other_slot_writes() {
        let t = TempDir::new("sim-write");
        let hw = build_cfg(&cfg(1 << 16, 0), t.path()).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            slot(&hw, "bmc_a").device.open_write(),
            Err(HwError::Refused(_))
        ));
        let dev = &slot(&hw, "bmc_b").device;
        let mut w = dev.open_write().unwrap_or_else(|e| panic!("{e}"));
        assert!(w.write(b"hello ").is_ok());
        assert!(w.write(b"world").is_ok());
        assert!(w.finish().is_ok());
        let b = read_all(dev.open_read().unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(&b[..11], b"hello world");
        assert_eq!(b.len(), 1 << 16, "not truncated");
        // Past the capacity.
        let mut w = dev.open_write().unwrap_or_else(|e| panic!("{e}"));
        assert!(w.write(&vec![1u8; 1 << 16]).is_ok());
        assert!(matches!(w.write(&[1]), Err(HwError::Invalid(_))));
    }

    #[test]
    fn booted_file_wins_after_first_start_and_boot_next_persists() {
        let t = TempDir::new("sim-reboot");
        let dir = t.path().join(DIR);
        {
            let hw = build_cfg(&cfg(1 << 16, 0), t.path()).unwrap_or_else(|e| panic!("{e}"));
            assert!(hw.boot.set_boot_next("bmc_b").is_ok());
            assert!(matches!(
                hw.boot.set_boot_next("bmc_c"),
                Err(HwError::NotFound(_))
            ));
        }
        // The simulated boot loader starts bmc_b.
        assert!(fs::write(dir.join("booted"), "bmc_b\n").is_ok());
        let hw = build_cfg(&cfg(1 << 16, 0), t.path()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(hw.booted, "bmc_b");
        assert_eq!(hw.boot.boot_next().ok().as_deref(), Some("bmc_b"));
        assert!(matches!(
            slot(&hw, "bmc_b").device.open_write(),
            Err(HwError::Refused(_))
        ));
        assert!(slot(&hw, "bmc_a").device.open_write().is_ok());
        // Factory payload survives (not rewritten at later starts).
        let a = read_all(
            slot(&hw, "bmc_a")
                .device
                .open_read()
                .unwrap_or_else(|e| panic!("{e}")),
        );
        assert_eq!(&a[..16], &factory_payload(16)[..]);
    }

    #[test]
    fn garbage_state_files_are_errors_not_panics() {
        let t = TempDir::new("sim-garbage");
        let dir = t.path().join(DIR);
        assert!(fs::create_dir_all(&dir).is_ok());
        assert!(fs::write(dir.join("booted"), "../etc\n").is_ok());
        let e = build_cfg(&cfg(1 << 16, 0), t.path())
            .err()
            .map(|e| e.to_string());
        assert!(e.unwrap_or_default().contains("booted"));
        assert!(fs::write(dir.join("booted"), "bmc_a").is_ok());
        assert!(fs::write(dir.join("boot_next"), [0xff, 0, 1]).is_ok());
        let hw = build_cfg(&cfg(1 << 16, 0), t.path()).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(hw.boot.boot_next(), Err(HwError::Invalid(_))));
        assert!(hw.boot.set_boot_next("bmc_a").is_ok());
        assert_eq!(hw.boot.boot_next().ok().as_deref(), Some("bmc_a"));
    }

    #[test]
    fn throttle_limits_write_speed() {
        let t = TempDir::new("sim-throttle");
        // 64 KiB at 256 KiB/s: at least 250 ms.
        let hw = build_cfg(&cfg(1 << 20, 256 << 10), t.path()).unwrap_or_else(|e| panic!("{e}"));
        let start = std::time::Instant::now();
        let mut w = slot(&hw, "bmc_b")
            .device
            .open_write()
            .unwrap_or_else(|e| panic!("{e}"));
        for _ in 0..4 {
            assert!(w.write(&[7u8; 16 << 10]).is_ok());
        }
        assert!(w.finish().is_ok());
        assert!(start.elapsed() >= std::time::Duration::from_millis(250));
    }
}
