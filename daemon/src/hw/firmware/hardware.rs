//! Firmware storage of a real board: slots on MTD partitions, block
//! devices or files, and a boot loader selector.

use std::path::Path;
use std::sync::Arc;

use super::boot::FileBoot;
use super::file::{Capacity, FileSlot};
use super::mtd::MtdSlot;
use super::uboot::UbootBoot;
use super::{read_small, BootSelector, FirmwareHw, Slot, SlotDevice};
use crate::config::{BootConfig, HwFirmwareConfig, SlotConfig, SlotKind};
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

/// The slot the kernel was booted from, by its command line: a
/// `bmcd.slot=NAME` parameter names it; otherwise `root=` is matched
/// against each slot's configured `root`. The last occurrence of a
/// parameter counts, as in the kernel; surrounding double quotes are
/// ignored. `slots` are `(name, root)` pairs.
pub fn booted_from_cmdline(
    cmdline: &str,
    slots: &[(&str, Option<&str>)],
) -> Result<String, String> {
    let mut named = None;
    let mut root = None;
    for word in cmdline.split_ascii_whitespace() {
        if let Some(v) = word.strip_prefix("bmcd.slot=") {
            named = Some(unquote(v));
        } else if let Some(v) = word.strip_prefix("root=") {
            root = Some(unquote(v));
        }
    }
    if let Some(n) = named {
        return slots
            .iter()
            .find(|(name, _)| *name == n)
            .map(|(name, _)| (*name).to_owned())
            .ok_or_else(|| format!("bmcd.slot={} is not a configured slot", n.escape_debug()));
    }
    let Some(r) = root else {
        return Err("neither bmcd.slot= nor root= is given".into());
    };
    slots
        .iter()
        .find(|(_, sr)| *sr == Some(r))
        .map(|(name, _)| (*name).to_owned())
        .ok_or_else(|| format!("root={} is no slot's configured root", r.escape_debug()))
}

/// `VERSION_ID` of an os-release text, quotes (and shell escapes inside
/// them) removed; "" if absent. The last assignment counts.
pub fn version_id(os_release: &str) -> String {
    let mut out = String::new();
    for line in os_release.lines() {
        if let Some(v) = line.trim().strip_prefix("VERSION_ID=") {
            out = shell_unquote(v.trim());
        }
    }
    out
}

/// A value of an os-release line: `"…"` (with `\"`, `\\`, `\$`, `` \` ``
/// escapes), `'…'`, or bare.
fn shell_unquote(v: &str) -> String {
    if v.len() >= 2 && v.starts_with('\'') && v.ends_with('\'') {
        return v[1..v.len() - 1].to_owned();
    }
    if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
        let mut out = String::new();
        let mut chars = v[1..v.len() - 1].chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                match chars.next() {
                    Some(n @ ('"' | '\\' | '$' | '`')) => out.push(n),
                    Some(n) => {
                        out.push('\\');
                        out.push(n);
                    }
                    None => out.push('\\'),
                }
            } else {
                out.push(c);
            }
        }
        return out;
    }
    v.to_owned()
}

fn unquote(v: &str) -> &str {
    v.trim_matches('"')
}

pub fn build(cfg: &HwFirmwareConfig, state_dir: &Path) -> HwResult<FirmwareHw> {
    let text = read_small(&cfg.cmdline)?.ok_or_else(|| {
        HwError::NotFound(format!(
            "{}: no kernel command line to find the booted slot",
            cfg.cmdline.display()
        ))
    })?;
    let pairs: Vec<(&str, Option<&str>)> = cfg
        .slots
        .iter()
        .map(|s| (s.name.as_str(), s.root.as_deref()))
        .collect();
    let booted = booted_from_cmdline(&text, &pairs)
        .map_err(|e| HwError::Invalid(format!("{}: {e}", cfg.cmdline.display())))?;
    if !bmcd_api::BMC_SLOTS.contains(&booted.as_str()) {
        return Err(HwError::Invalid(format!(
            "{}: the booted slot '{booted}' is not a BMC slot ({})",
            cfg.cmdline.display(),
            bmcd_api::BMC_SLOTS.join(", ")
        )));
    }
    let mut slots = Vec::with_capacity(cfg.slots.len());
    for s in &cfg.slots {
        slots.push(Slot {
            name: s.name.clone(),
            component: s.component.clone(),
            device: slot_device(s, s.name == booted)?,
        });
    }
    let names: Vec<String> = cfg.slots.iter().map(|s| s.name.clone()).collect();
    let boot: Arc<dyn BootSelector> = match &cfg.boot {
        BootConfig::File(f) => Arc::new(FileBoot::new(&f.path, names, &booted)),
        BootConfig::Uboot(u) => Arc::new(UbootBoot::new(u, &names, state_dir)),
    };
    Ok(FirmwareHw {
        slots,
        boot,
        booted,
        running_version: version_id(&read_small(&cfg.os_release)?.unwrap_or_default()),
    })
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
        let back = read_all(dev.open_read().unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(back, vec![1u8; 4096]);
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

    #[test]
    fn cmdline_parser() {
        let slots = [
            ("bmc_a", Some("/dev/mtdblock4")),
            ("bmc_b", Some("PARTLABEL=rofs-b")),
            ("bios", None),
        ];
        let p = |c: &str| booted_from_cmdline(c, &slots);
        assert_eq!(
            p("console=ttyS4 root=/dev/mtdblock4 ro").as_deref(),
            Ok("bmc_a")
        );
        assert_eq!(
            p("root=PARTLABEL=rofs-b rootwait\n").as_deref(),
            Ok("bmc_b")
        );
        assert_eq!(p("root=\"PARTLABEL=rofs-b\"").as_deref(), Ok("bmc_b"));
        // bmcd.slot= wins over root=, wherever it stands.
        assert_eq!(
            p("bmcd.slot=bmc_b root=/dev/mtdblock4").as_deref(),
            Ok("bmc_b")
        );
        assert_eq!(
            p("root=/dev/mtdblock4 bmcd.slot=bmc_b").as_deref(),
            Ok("bmc_b")
        );
        // The last occurrence counts.
        assert_eq!(
            p("root=/dev/mtdblock4 root=PARTLABEL=rofs-b").as_deref(),
            Ok("bmc_b")
        );
        // A prefix is not a match.
        assert!(p("root=/dev/mtdblock44").is_err());
        assert!(p("xroot=/dev/mtdblock4").is_err());
        assert!(p("").is_err());
        assert!(p("bmcd.slot=bmc_c root=/dev/mtdblock4")
            .err()
            .unwrap_or_default()
            .contains("bmcd.slot=bmc_c"));
        assert!(p("root=").is_err());
        assert!(p("\u{0}\u{ff}root=\u{fffd}").is_err());
    }

    fn hw_cfg(dir: &Path, cmdline: &str) -> HwFirmwareConfig {
        let _ = std::fs::write(dir.join("cmdline"), cmdline);
        let mk = |name: &str, root: &str| SlotConfig {
            name: name.into(),
            component: "bmc".into(),
            kind: SlotKind::File,
            device: dir.join(format!("{name}.img")),
            size: Some(4096),
            root: Some(root.into()),
        };
        HwFirmwareConfig {
            slots: vec![mk("bmc_a", "/dev/mtdblock4"), mk("bmc_b", "/dev/mtdblock5")],
            boot: BootConfig::File(crate::config::FileBootConfig {
                path: dir.join("boot_next"),
            }),
            cmdline: dir.join("cmdline"),
            os_release: dir.join("os-release"),
        }
    }

    #[test]
    fn hardware_build_refuses_the_booted_slot() {
        let t = TempDir::new("hw-build");
        let cfg = hw_cfg(t.path(), "console=ttyS4 root=/dev/mtdblock5 rootwait\n");
        let hw = build(&cfg, t.path()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(hw.booted, "bmc_b");
        let dev = |n: &str| {
            hw.slots
                .iter()
                .find(|s| s.name == n)
                .map(|s| s.device.clone())
                .unwrap_or_else(|| panic!("no {n}"))
        };
        assert!(matches!(
            dev("bmc_b").open_write(),
            Err(HwError::Refused(_))
        ));
        assert!(dev("bmc_a").open_write().is_ok());
        // The file selector answers the booted slot until set.
        assert_eq!(hw.boot.boot_next().ok().as_deref(), Some("bmc_b"));
        assert!(hw.boot.set_boot_next("bmc_a").is_ok());
        assert_eq!(hw.boot.boot_next().ok().as_deref(), Some("bmc_a"));
        // No usable command line: an error naming the file, no guess.
        let cfg = hw_cfg(t.path(), "root=/dev/sda1");
        let e = build(&cfg, t.path())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("cmdline: root=/dev/sda1 is no slot"), "{e}");
        // A slot that is not a BMC slot cannot be the booted one.
        let mut cfg = hw_cfg(t.path(), "bmcd.slot=bios");
        cfg.slots.push(SlotConfig {
            name: "bios".into(),
            component: "bios".into(),
            kind: SlotKind::File,
            device: t.path().join("bios.img"),
            size: Some(16),
            root: None,
        });
        let e = build(&cfg, t.path())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("'bios' is not a BMC slot"), "{e}");
        let _ = std::fs::remove_file(t.path().join("cmdline"));
        assert!(matches!(build(&cfg, t.path()), Err(HwError::NotFound(_))));
    }

    #[test]
    fn os_release_version() {
        assert_eq!(version_id("NAME=x\nVERSION_ID=2.14.0\n"), "2.14.0");
        assert_eq!(
            version_id("VERSION_ID=\"2.14.0-dev\"\nID=obmc"),
            "2.14.0-dev"
        );
        assert_eq!(version_id("VERSION_ID='1.2'"), "1.2");
        assert_eq!(version_id("VERSION_ID=\"a\\\"b\\\\c\""), "a\"b\\c");
        assert_eq!(version_id("# VERSION_ID=9\nVERSION=1"), "");
        assert_eq!(version_id(""), "");
        assert_eq!(version_id("VERSION_ID=\""), "\"");
        assert_eq!(version_id("VERSION_ID=\"x\\\""), "x\\");
        assert_eq!(version_id("VERSION_ID=1\nVERSION_ID=2"), "2");
        assert_eq!(version_id("  VERSION_ID = 3"), "");
    }

    #[test]
    fn hardware_build_with_uboot_and_running_version() {
        let t = TempDir::new("hw-uboot");
        let mut cfg = hw_cfg(t.path(), "bmcd.slot=bmc_a root=/dev/mtdblock5");
        let _ = std::fs::write(
            t.path().join("os-release"),
            "ID=obmc\nVERSION_ID=\"2.3.1\"\n",
        );
        cfg.boot = BootConfig::Uboot(crate::config::UbootConfig {
            fw_printenv: "/nonexistent/fw_printenv".into(),
            fw_setenv: "/nonexistent/fw_setenv".into(),
            names: [
                ("bmc_a".to_owned(), "A".to_owned()),
                ("bmc_b".to_owned(), "B".to_owned()),
            ]
            .into_iter()
            .collect(),
            tries: 3,
        });
        let hw = build(&cfg, t.path()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(hw.booted, "bmc_a");
        assert_eq!(hw.running_version, "2.3.1");
        let e = hw
            .boot
            .boot_next()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("/nonexistent/fw_printenv"), "{e}");
        // No os-release: "".
        let _ = std::fs::remove_file(t.path().join("os-release"));
        let hw = build(&cfg, t.path()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(hw.running_version, "");
    }

    /// A block slot on a real block device: `BMCD_TEST_BLOCK_DEV=/dev/loopN`
    /// (its contents are overwritten), run with `--ignored`.
    #[test]
    #[ignore = "needs a scratch block device in BMCD_TEST_BLOCK_DEV"]
    fn block_slot_on_a_real_device() {
        let Some(p) = std::env::var_os("BMCD_TEST_BLOCK_DEV") else {
            panic!("set BMCD_TEST_BLOCK_DEV")
        };
        let dev = slot_device(&slot(SlotKind::Block, PathBuf::from(p), None), false)
            .unwrap_or_else(|e| panic!("{e}"));
        let cap = dev.capacity().unwrap_or_else(|e| panic!("{e}"));
        assert!(cap >= 1 << 20, "{cap}");
        let img: Vec<u8> = (0..(1u32 << 20) + 123).map(|i| (i % 251) as u8).collect();
        let mut w = dev.open_write().unwrap_or_else(|e| panic!("{e}"));
        for c in img.chunks(65536) {
            assert!(w.write(c).is_ok());
        }
        assert!(w.finish().is_ok());
        let back = read_all(dev.open_read().unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(back.len() as u64, cap);
        assert!(back[..img.len()] == img[..]);
    }
}
