//! Configuration: one JSON file, unknown fields rejected, every error naming
//! the file and the field.

use std::collections::HashSet;
use std::fmt;
use std::io::Read;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use bmcd_api::RestorePolicy;
use serde::de::value::{MapAccessDeserializer, StrDeserializer, StringDeserializer};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use crate::hw::Percent;

/// Where the daemon looks when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/bmcd/bmcd.json";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Directory for persistent state (restore policy, last power request).
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    pub platform: PlatformConfig,
    #[serde(default)]
    pub chassis: ChassisConfig,
    pub cooling: CoolingConfig,
    /// Roles, re-authentication and brute-force limits.
    #[serde(default)]
    pub auth: AuthConfig,
    /// How long finished tasks stay (`crate::tasks`).
    #[serde(default)]
    pub tasks: crate::tasks::TasksConfig,
    /// Firmware slots, boot selection, trusted keys.
    #[serde(default)]
    pub firmware: FirmwareConfig,
    /// Size limits of the event and audit logs.
    #[serde(default)]
    pub logs: LogsConfig,
    /// Diagnostic dumps: how many are kept and how big one may grow.
    #[serde(default)]
    pub dumps: DumpsConfig,
}

/// The `logs` section: one limit set per log. The logs live in
/// `state_dir/logs/{event,audit}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsConfig {
    #[serde(default)]
    pub event: LogLimits,
    #[serde(default)]
    pub audit: LogLimits,
}

/// How big one log may grow; the oldest segment goes first.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogLimits {
    #[serde(default = "d_log_entries")]
    pub max_entries: u64,
    #[serde(default = "d_log_bytes")]
    pub max_bytes: u64,
    #[serde(default = "d_segment_bytes")]
    pub segment_bytes: u64,
}

fn d_log_entries() -> u64 {
    20_000
}
fn d_log_bytes() -> u64 {
    4 * 1024 * 1024
}
fn d_segment_bytes() -> u64 {
    256 * 1024
}

impl Default for LogLimits {
    fn default() -> Self {
        LogLimits {
            max_entries: d_log_entries(),
            max_bytes: d_log_bytes(),
            segment_bytes: d_segment_bytes(),
        }
    }
}

impl LogLimits {
    fn validate(&self, field: &str) -> Result<(), String> {
        range(
            &format!("{field}.max_entries"),
            self.max_entries,
            100,
            10_000_000,
        )?;
        range(
            &format!("{field}.segment_bytes"),
            self.segment_bytes,
            4096,
            64 * 1024 * 1024,
        )?;
        // At least two segments, so rotation never empties the log.
        range(
            &format!("{field}.max_bytes"),
            self.max_bytes,
            self.segment_bytes.saturating_mul(2),
            4 * 1024 * 1024 * 1024,
        )
        .map_err(|e| format!("{e} (at least two segments)"))
    }

    pub fn store_limits(&self) -> crate::logstore::Limits {
        crate::logstore::Limits {
            max_entries: self.max_entries,
            max_bytes: self.max_bytes,
            segment_bytes: self.segment_bytes,
        }
    }
}

/// The `dumps` section. Dumps live in `state_dir/dumps`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DumpsConfig {
    /// The newest this many are kept (1–16).
    #[serde(default = "d_max_dumps")]
    pub max_dumps: u32,
    /// Compressed bytes one dump may take; it stops adding parts there.
    #[serde(default = "d_dump_bytes")]
    pub max_size: u64,
}

fn d_max_dumps() -> u32 {
    3
}
fn d_dump_bytes() -> u64 {
    8 * 1024 * 1024
}

impl Default for DumpsConfig {
    fn default() -> Self {
        DumpsConfig {
            max_dumps: d_max_dumps(),
            max_size: d_dump_bytes(),
        }
    }
}

/// The `firmware` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirmwareConfig {
    /// This machine's name, as images list it in `compatible`.
    #[serde(default = "d_machine")]
    pub machine: String,
    /// Directory of trusted public keys (`*.pub`, PEM).
    #[serde(default = "d_keys_dir")]
    pub keys_dir: PathBuf,
    /// Where the slots are and how the boot loader is told which to
    /// start; default: the simulator.
    #[serde(default)]
    pub storage: FirmwareStorage,
}

impl Default for FirmwareConfig {
    fn default() -> Self {
        FirmwareConfig {
            machine: d_machine(),
            keys_dir: d_keys_dir(),
            storage: FirmwareStorage::default(),
        }
    }
}

fn d_machine() -> String {
    "sim".into()
}
fn d_keys_dir() -> PathBuf {
    PathBuf::from("/etc/bmcd/keys")
}

/// Firmware storage, tagged by `type` (`sim` or `hardware`), deserialized
/// by [`Tagged`].
#[derive(Debug, Clone)]
pub enum FirmwareStorage {
    /// Slot files and boot selection under `<state_dir>/sim-firmware/`.
    Sim(SimFirmwareConfig),
    /// Real slots (MTD partitions, block devices, files) and a boot loader.
    Hardware(HwFirmwareConfig),
}

impl Default for FirmwareStorage {
    fn default() -> Self {
        FirmwareStorage::Sim(SimFirmwareConfig::default())
    }
}

/// The simulated firmware storage: the two BMC slots `bmc_a` and `bmc_b`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimFirmwareConfig {
    /// Size of each slot file, bytes (sparse).
    pub slot_size: u64,
    /// Write speed of a slot, bytes per second; 0 = as fast as the disk.
    pub write_bytes_per_s: u64,
    /// The slot the simulated BMC boots from at the first start (later
    /// starts read `<state_dir>/sim-firmware/booted`).
    pub booted: String,
    /// Version of the factory image in the booted slot.
    pub version: String,
}

/// Default size of a simulated slot: 96 MiB.
pub const SIM_SLOT_SIZE: u64 = 96 << 20;

impl Default for SimFirmwareConfig {
    fn default() -> Self {
        SimFirmwareConfig {
            slot_size: SIM_SLOT_SIZE,
            write_bytes_per_s: 0,
            booted: bmcd_api::BMC_SLOTS[0].into(),
            version: "1.0.0".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HwFirmwareConfig {
    /// Every slot, BMC ones (`bmc_a`, `bmc_b`) and any other component's.
    pub slots: Vec<SlotConfig>,
    pub boot: BootConfig,
    /// The kernel command line (`bmcd.slot=NAME` or `root=`), to find the
    /// booted slot.
    #[serde(default = "d_cmdline")]
    pub cmdline: PathBuf,
    /// `VERSION_ID` of this file is the running image's version.
    #[serde(default = "d_os_release")]
    pub os_release: PathBuf,
}

fn d_cmdline() -> PathBuf {
    PathBuf::from("/proc/cmdline")
}
fn d_os_release() -> PathBuf {
    PathBuf::from("/etc/os-release")
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotConfig {
    /// `bmc_a`, `bmc_b`, … (`bmcd_api::is_slot_name`).
    pub name: String,
    /// The image component the slot holds (`bmc`).
    #[serde(default = "d_component")]
    pub component: String,
    pub kind: SlotKind,
    /// `/dev/mtd4`, `/dev/mmcblk0p2`, or a plain file.
    pub device: PathBuf,
    /// Capacity in bytes: required for kind `file`, not allowed otherwise
    /// (the device tells).
    #[serde(default)]
    pub size: Option<u64>,
    /// The kernel's `root=` when this slot is booted (e.g. `/dev/mtdblock4`).
    #[serde(default)]
    pub root: Option<String>,
}

fn d_component() -> String {
    bmcd_api::BMC_COMPONENT.into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlotKind {
    /// An MTD partition (`/dev/mtdN`): erased before it is written.
    Mtd,
    /// A block device (eMMC partition).
    Block,
    /// A plain file of `size` bytes.
    File,
}

/// The boot selector, tagged by `type` (`uboot` or `file`), deserialized
/// by [`Tagged`].
#[derive(Debug, Clone)]
pub enum BootConfig {
    /// U-Boot environment, RAUC-style `BOOT_ORDER` / `BOOT_x_LEFT`.
    Uboot(UbootConfig),
    /// A file holding the name of the slot to boot next.
    File(FileBootConfig),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UbootConfig {
    #[serde(default = "d_fw_printenv")]
    pub fw_printenv: PathBuf,
    #[serde(default = "d_fw_setenv")]
    pub fw_setenv: PathBuf,
    /// Slot name → the boot loader's name of it (`bmc_a` → `A`).
    pub names: std::collections::BTreeMap<String, String>,
    /// Boot attempts a slot gets when it is made to boot next.
    #[serde(default = "d_tries")]
    pub tries: u32,
}

fn d_fw_printenv() -> PathBuf {
    PathBuf::from("/usr/bin/fw_printenv")
}
fn d_fw_setenv() -> PathBuf {
    PathBuf::from("/usr/bin/fw_setenv")
}
fn d_tries() -> u32 {
    3
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileBootConfig {
    pub path: PathBuf,
}

/// Largest accepted slot, bytes (1 TiB).
const MAX_SLOT_BYTES: u64 = 1 << 40;
/// Smallest accepted simulated slot, bytes.
const MIN_SIM_SLOT_BYTES: u64 = 4096;

impl FirmwareConfig {
    fn validate(&self) -> Result<(), String> {
        let m = &self.machine;
        if m.is_empty()
            || m.len() > bmcd_api::MAX_NAME_LEN
            || !m
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        {
            return Err(format!(
                "firmware.machine: '{m}' must be 1-{} characters of A-Z a-z 0-9 _ - .",
                bmcd_api::MAX_NAME_LEN
            ));
        }
        absolute("firmware.keys_dir", &self.keys_dir)?;
        match &self.storage {
            FirmwareStorage::Sim(s) => s.validate(),
            FirmwareStorage::Hardware(h) => h.validate(),
        }
    }
}

impl SimFirmwareConfig {
    fn validate(&self) -> Result<(), String> {
        range(
            "firmware.storage.slot_size",
            self.slot_size,
            MIN_SIM_SLOT_BYTES,
            MAX_SLOT_BYTES,
        )?;
        if !bmcd_api::BMC_SLOTS.contains(&self.booted.as_str()) {
            return Err(format!(
                "firmware.storage.booted: '{}' is not one of {}",
                self.booted,
                bmcd_api::BMC_SLOTS.join(", ")
            ));
        }
        check_version("firmware.storage.version", &self.version)
    }
}

/// A version string: 1–64 printable ASCII characters without spaces.
fn check_version(field: &str, v: &str) -> Result<(), String> {
    if v.is_empty() || v.len() > 64 || !v.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "{field}: '{v}' must be 1-64 printable characters without spaces"
        ));
    }
    Ok(())
}

fn absolute(field: &str, p: &Path) -> Result<(), String> {
    if p.is_absolute() {
        Ok(())
    } else {
        Err(format!(
            "{field}: '{}' is not an absolute path",
            p.display()
        ))
    }
}

impl HwFirmwareConfig {
    fn validate(&self) -> Result<(), String> {
        let at = "firmware.storage";
        absolute(&format!("{at}.cmdline"), &self.cmdline)?;
        absolute(&format!("{at}.os_release"), &self.os_release)?;
        let mut names = HashSet::new();
        let mut devices = HashSet::new();
        let mut roots = HashSet::new();
        for (i, s) in self.slots.iter().enumerate() {
            let f = format!("{at}.slots[{i}]");
            if !bmcd_api::is_slot_name(&s.name) {
                return Err(format!(
                    "{f}.name: '{}' must be 1-32 characters of a-z 0-9 _",
                    s.name
                ));
            }
            if !names.insert(s.name.as_str()) {
                return Err(format!("{f}.name: '{}' is used twice", s.name));
            }
            if !bmcd_api::is_slot_name(&s.component) {
                return Err(format!(
                    "{f}.component: '{}' must be 1-32 characters of a-z 0-9 _",
                    s.component
                ));
            }
            if bmcd_api::BMC_SLOTS.contains(&s.name.as_str())
                && s.component != bmcd_api::BMC_COMPONENT
            {
                return Err(format!(
                    "{f}.component: slot '{}' must hold component '{}'",
                    s.name,
                    bmcd_api::BMC_COMPONENT
                ));
            }
            absolute(&format!("{f}.device"), &s.device)?;
            if !devices.insert(s.device.as_path()) {
                return Err(format!(
                    "{f}.device: '{}' is used twice",
                    s.device.display()
                ));
            }
            match (s.kind, s.size) {
                (SlotKind::File, None) => {
                    return Err(format!("{f}.size: required for kind 'file'"));
                }
                (SlotKind::File, Some(n)) => range(&format!("{f}.size"), n, 1, MAX_SLOT_BYTES)?,
                (_, Some(_)) => {
                    return Err(format!(
                        "{f}.size: only for kind 'file' (the device tells its size)"
                    ));
                }
                (_, None) => {}
            }
            if let Some(r) = &s.root {
                if r.is_empty() || r.len() > 256 || !r.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(format!(
                        "{f}.root: '{r}' must be 1-256 printable characters without spaces"
                    ));
                }
                if !roots.insert(r.as_str()) {
                    return Err(format!("{f}.root: '{r}' is used twice"));
                }
            }
        }
        for bmc in bmcd_api::BMC_SLOTS {
            if !names.contains(bmc) {
                return Err(format!("{at}.slots: slot '{bmc}' is required"));
            }
        }
        match &self.boot {
            BootConfig::File(b) => absolute(&format!("{at}.boot.path"), &b.path),
            BootConfig::Uboot(u) => {
                let f = format!("{at}.boot");
                absolute(&format!("{f}.fw_printenv"), &u.fw_printenv)?;
                absolute(&format!("{f}.fw_setenv"), &u.fw_setenv)?;
                range(&format!("{f}.tries"), u.tries.into(), 1, 100)?;
                let mut seen = HashSet::new();
                for (slot, name) in &u.names {
                    if !names.contains(slot.as_str()) {
                        return Err(format!("{f}.names.{slot}: not a configured slot"));
                    }
                    if name.is_empty()
                        || name.len() > 32
                        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                    {
                        return Err(format!(
                            "{f}.names.{slot}: '{name}' must be 1-32 characters of A-Z a-z 0-9 _"
                        ));
                    }
                    if !seen.insert(name.as_str()) {
                        return Err(format!("{f}.names.{slot}: '{name}' is used twice"));
                    }
                }
                for bmc in bmcd_api::BMC_SLOTS {
                    if !u.names.contains_key(bmc) {
                        return Err(format!("{f}.names: slot '{bmc}' needs a name"));
                    }
                }
                Ok(())
            }
        }
    }
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/bmcd")
}

/// Internally tagged by `type` (`sim` or `hardware`); deserialized by
/// [`Tagged`] so that errors inside keep their JSON path.
#[derive(Debug, Clone)]
pub enum PlatformConfig {
    /// The simulated platform.
    Sim(SimConfig),
    /// A real board: GPIO power lines and hwmon fans/sensors.
    Hardware(HardwareConfig),
}

impl PlatformConfig {
    /// `sim` or `hardware`, as in the file.
    pub fn kind(&self) -> &'static str {
        match self {
            PlatformConfig::Sim(_) => "sim",
            PlatformConfig::Hardware(_) => "hardware",
        }
    }

    pub fn fan_names(&self) -> Vec<&str> {
        match self {
            PlatformConfig::Sim(c) => c.fans.iter().map(|f| f.name.as_str()).collect(),
            PlatformConfig::Hardware(c) => c.fans.iter().map(|f| f.name.as_str()).collect(),
        }
    }
    pub fn sensor_names(&self) -> Vec<&str> {
        match self {
            PlatformConfig::Sim(c) => c.sensors.iter().map(|s| s.name.as_str()).collect(),
            PlatformConfig::Hardware(c) => c.sensors.iter().map(|s| s.name.as_str()).collect(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimConfig {
    pub fans: Vec<SimFan>,
    pub sensors: Vec<SimSensor>,
    /// Room temperature at start, °C.
    #[serde(default = "d_ambient")]
    pub ambient_c: f64,
    /// Time from a power-button press to power-good, ms.
    #[serde(default = "d_power_on_ms")]
    pub power_on_delay_ms: u64,
    /// Time the simulated host OS takes to shut down after a short press, ms.
    #[serde(default = "d_shutdown_ms")]
    pub host_shutdown_ms: u64,
    /// How long the power button must be held to force power off, ms.
    #[serde(default = "d_force_hold_ms")]
    pub force_off_hold_ms: u64,
    /// Whether the host OS honours a graceful shutdown request at start.
    #[serde(default = "d_true")]
    pub host_responsive: bool,
    /// Seed of the tach noise generator (reproducible runs).
    #[serde(default)]
    pub seed: u64,
    /// Real power lines in place of the simulator's power sequencing, for
    /// board bring-up with the power lines wired before the fan controller:
    /// only `{"type": "gpio", …}` (as under a hardware platform). With it,
    /// the `power_on_delay_ms`, `host_shutdown_ms`, `force_off_hold_ms` and
    /// `host_responsive` settings are unused, and the simulated sensors see
    /// the host off. The mirror image of a hardware platform with
    /// `power.type` `sim`.
    #[serde(default)]
    pub power: Option<PowerConfig>,
}

impl SimConfig {
    /// The simulator with power sequencing only (no fans, no sensors), for
    /// a hardware platform whose power control is simulated.
    pub fn power_only(p: &SimPowerConfig) -> SimConfig {
        SimConfig {
            fans: Vec::new(),
            sensors: Vec::new(),
            ambient_c: d_ambient(),
            power_on_delay_ms: p.power_on_delay_ms,
            host_shutdown_ms: p.host_shutdown_ms,
            force_off_hold_ms: p.force_off_hold_ms,
            host_responsive: p.host_responsive,
            seed: 0,
            power: None,
        }
    }
}

fn d_ambient() -> f64 {
    25.0
}
fn d_power_on_ms() -> u64 {
    1000
}
fn d_shutdown_ms() -> u64 {
    3000
}
fn d_force_hold_ms() -> u64 {
    4000
}
fn d_true() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimFan {
    pub name: String,
    /// RPM at 100 % duty.
    #[serde(default = "d_max_rpm")]
    pub max_rpm: u32,
    /// Whether the fan is fitted.
    #[serde(default = "d_true")]
    pub present: bool,
}

fn d_max_rpm() -> u32 {
    12000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimSensor {
    pub name: String,
    /// Temperature rise over ambient with the host on and no airflow, °C.
    #[serde(default = "d_heat")]
    pub heat_c: f64,
    /// Fraction of the rise that full airflow removes (0–1).
    #[serde(default = "d_cooling")]
    pub cooling: f64,
    /// Thermal time constant, seconds.
    #[serde(default = "d_tau")]
    pub tau_s: f64,
}

fn d_heat() -> f64 {
    50.0
}
fn d_cooling() -> f64 {
    0.7
}
fn d_tau() -> f64 {
    20.0
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HardwareConfig {
    pub power: PowerConfig,
    /// Root of the hwmon class directory (tests point it at a fake tree).
    #[serde(default = "d_hwmon_root")]
    pub hwmon_root: PathBuf,
    pub fans: Vec<HwmonFan>,
    pub sensors: Vec<HwmonSensor>,
}

fn d_hwmon_root() -> PathBuf {
    PathBuf::from("/sys/class/hwmon")
}

/// Power control of a hardware platform, tagged by `type` (`gpio` or
/// `sim`), deserialized by [`Tagged`].
#[derive(Debug, Clone)]
pub enum PowerConfig {
    /// Buttons and power-good on a GPIO character device.
    Gpio(GpioPowerConfig),
    /// The simulator's power sequencing (for board bring-up of fans and
    /// sensors before power control is wired, and for tests of the hwmon
    /// backend through the whole daemon).
    Sim(SimPowerConfig),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimPowerConfig {
    #[serde(default = "d_power_on_ms")]
    pub power_on_delay_ms: u64,
    #[serde(default = "d_shutdown_ms")]
    pub host_shutdown_ms: u64,
    #[serde(default = "d_force_hold_ms")]
    pub force_off_hold_ms: u64,
    #[serde(default = "d_true")]
    pub host_responsive: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpioPowerConfig {
    /// GPIO character device, e.g. `/dev/gpiochip0`.
    pub chip: PathBuf,
    pub power_button: GpioLine,
    pub reset_button: GpioLine,
    pub power_good: GpioLine,
    #[serde(default)]
    pub identify_led: Option<GpioLine>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpioLine {
    /// Line name as in the device tree's `gpio-line-names`.
    pub name: String,
    /// The line is asserted when low (front-panel buttons usually are).
    #[serde(default)]
    pub active_low: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HwmonFan {
    pub name: String,
    /// Content of the hwmon device's `name` file, e.g. `aspeed_g6_pwm_tach`.
    pub hwmon: String,
    /// Substring of the device's canonical sysfs path, to tell apart several
    /// devices with the same `name` (e.g. `1e610000.pwm-tach-controller`).
    #[serde(default)]
    pub device: Option<String>,
    /// N of `fanN_input`.
    pub tach: u32,
    /// N of `pwmN` / `pwmN_enable`.
    pub pwm: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HwmonSensor {
    pub name: String,
    /// Content of the hwmon device's `name` file, e.g. `tmp75`.
    pub hwmon: String,
    /// Substring of the device's canonical sysfs path.
    #[serde(default)]
    pub device: Option<String>,
    /// N of `tempN_input`.
    pub input: u32,
}

/// Every field is optional: a missing one takes its value from
/// [`ChassisConfig::default`], the one place the defaults are written.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChassisConfig {
    /// Policy used until an operator sets one (then the state file wins).
    pub default_restore_policy: RestorePolicy,
    /// Length of a short power-button press, ms.
    pub button_press_ms: u64,
    /// Length of a reset pulse, ms.
    pub reset_pulse_ms: u64,
    /// How long power-good may take to rise after power on, ms.
    pub power_on_timeout_ms: u64,
    /// Default graceful phase of PowerOff before forcing, seconds.
    pub graceful_off_timeout_s: u32,
    /// Longest accepted graceful timeout, seconds.
    pub graceful_off_timeout_max_s: u32,
    /// How long the button is held at most to force power off, ms.
    pub force_off_timeout_ms: u64,
    /// Time the host stays off during a power cycle, ms.
    pub cycle_off_ms: u64,
    /// Longest accepted identify duration, seconds.
    pub identify_max_s: u32,
}

impl Default for ChassisConfig {
    fn default() -> Self {
        ChassisConfig {
            default_restore_policy: RestorePolicy::AlwaysOff,
            button_press_ms: 200,
            reset_pulse_ms: 200,
            power_on_timeout_ms: 10_000,
            graceful_off_timeout_s: 60,
            graceful_off_timeout_max_s: 3600,
            force_off_timeout_ms: 10_000,
            cycle_off_ms: 2000,
            identify_max_s: 86_400,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoolingConfig {
    /// Control period, ms.
    #[serde(default = "d_interval")]
    pub interval_ms: u64,
    /// One curve per sensor; the zone level is the highest any curve asks.
    pub curves: Vec<Curve>,
    /// Lowest level Auto ever sets, percent.
    #[serde(default = "d_min_level")]
    pub min_level: Percent,
    /// Level of every fan in Failsafe, percent.
    #[serde(default = "d_failsafe")]
    pub failsafe_level: Percent,
    /// Temperature must fall this much below a point before the level drops, °C.
    #[serde(default = "d_hysteresis")]
    pub hysteresis_c: f64,
    /// A fan driven at or above `fan_fail_min_level` percent that reads
    /// below this many RPM is not spinning.
    #[serde(default = "d_fail_rpm")]
    pub fan_fail_rpm: u32,
    #[serde(default = "d_fail_min_level")]
    pub fan_fail_min_level: Percent,
    /// Consecutive bad periods before a fan is Failed or a sensor lost.
    #[serde(default = "d_fail_after")]
    pub fail_after: u32,
    /// Consecutive good periods before a failed fan or lost sensor counts as recovered.
    #[serde(default = "d_fail_after")]
    pub recover_after: u32,
    /// Longest accepted manual override timeout, seconds (0 = no expiry is
    /// still allowed).
    #[serde(default = "d_manual_max")]
    pub manual_timeout_max_s: u32,
}

fn d_interval() -> u64 {
    1000
}
fn d_min_level() -> Percent {
    Percent::of::<20>()
}
fn d_failsafe() -> Percent {
    Percent::FULL
}
fn d_hysteresis() -> f64 {
    2.0
}
fn d_fail_rpm() -> u32 {
    300
}
fn d_fail_min_level() -> Percent {
    Percent::of::<20>()
}
fn d_fail_after() -> u32 {
    3
}
fn d_manual_max() -> u32 {
    100_000_000
}

/// Who may do what, and how re-authentication works. Every number is
/// configurable so that tests can run with short delays. Every field is
/// optional: a missing one takes its value from [`AuthConfig::default`],
/// the one place the defaults are written.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// PAM service (a file in /etc/pam.d) used by `Session1.Authenticate`.
    pub pam_service: String,
    /// Members of this group are Administrators (uid 0 always is).
    pub admin_group: String,
    /// Members of this group are Operators.
    pub operator_group: String,
    /// Sensitive calls need a fresh authentication. `false` turns the
    /// requirement off (roles are still enforced): for test rigs only.
    pub reauthenticate: bool,
    /// How long a successful authentication lets the connection make
    /// sensitive calls, seconds; 0 = exactly one sensitive call.
    pub grant_seconds: u32,
    /// Every failed authentication answers only after this delay, ms.
    pub failure_delay_ms: u64,
    /// This many failures of one uid within `failure_window_s` lock it out.
    pub max_failures: u32,
    pub failure_window_s: u32,
    /// How long a lockout lasts, seconds.
    pub lockout_s: u32,
    /// Longer passwords are refused without running PAM, bytes.
    pub max_password_bytes: usize,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            pam_service: "bmcd".into(),
            admin_group: "bmc-admin".into(),
            operator_group: "bmc-operator".into(),
            reauthenticate: true,
            grant_seconds: 0,
            failure_delay_ms: 2000,
            max_failures: 5,
            failure_window_s: 300,
            lockout_s: 300,
            max_password_bytes: 512,
        }
    }
}

/// Longest accepted duration of a grant, window or lockout: one day.
const MAX_AUTH_SECONDS: u32 = 86_400;

impl AuthConfig {
    fn validate(&self) -> Result<(), String> {
        let s = &self.pam_service;
        if s.is_empty()
            || s.len() > 64
            || s.starts_with('.')
            || !s
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        {
            return Err(format!(
                "auth.pam_service: '{s}' must be 1-64 characters of A-Z a-z 0-9 _ - . (a file name in /etc/pam.d)"
            ));
        }
        for (field, g) in [
            ("auth.admin_group", &self.admin_group),
            ("auth.operator_group", &self.operator_group),
        ] {
            if g.is_empty()
                || g.len() > 64
                || g.bytes()
                    .any(|b| b == 0 || b == b':' || b.is_ascii_whitespace())
            {
                return Err(format!("{field}: '{g}' is not a valid group name"));
            }
        }
        if self.admin_group == self.operator_group {
            return Err("auth.operator_group: must differ from auth.admin_group".into());
        }
        for (field, v) in [
            ("auth.grant_seconds", self.grant_seconds),
            ("auth.failure_window_s", self.failure_window_s),
            ("auth.lockout_s", self.lockout_s),
        ] {
            if v > MAX_AUTH_SECONDS {
                return Err(format!(
                    "{field}: {v} is more than {MAX_AUTH_SECONDS} seconds"
                ));
            }
        }
        if self.failure_window_s == 0 || self.lockout_s == 0 {
            return Err("auth.failure_window_s/lockout_s: must be at least 1".into());
        }
        if self.max_failures == 0 || self.max_failures > 1000 {
            return Err(format!(
                "auth.max_failures: {} is outside 1..=1000",
                self.max_failures
            ));
        }
        if self.failure_delay_ms > 60_000 {
            return Err(format!(
                "auth.failure_delay_ms: {} is more than 60000",
                self.failure_delay_ms
            ));
        }
        if self.max_password_bytes == 0 || self.max_password_bytes > 65_536 {
            return Err(format!(
                "auth.max_password_bytes: {} is outside 1..=65536",
                self.max_password_bytes
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Curve {
    pub sensor: String,
    /// `[temperature °C, level %]` pairs, temperatures strictly increasing;
    /// linear between points, flat beyond the ends.
    pub points: Vec<(f64, Percent)>,
    /// Critical temperature of the sensor, °C: at or above it every fan
    /// runs at 100 % and a manual override ends (see `cooling.rs`). Must
    /// be above the first point; default: the last point + 5 °C.
    #[serde(default)]
    pub critical_c: Option<f64>,
}

/// Margin of the default critical temperature over a curve's last point, °C.
pub const DEFAULT_CRITICAL_MARGIN_C: f64 = 5.0;

impl Curve {
    /// The sensor's critical temperature, °C.
    pub fn critical(&self) -> f64 {
        self.critical_c.unwrap_or_else(|| {
            self.points
                .last()
                .map(|p| p.0 + DEFAULT_CRITICAL_MARGIN_C)
                .unwrap_or(f64::INFINITY)
        })
    }
}

/// A configuration error, naming the file and the field.
#[derive(Debug)]
pub struct ConfigError {
    pub file: PathBuf,
    pub msg: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.msg)
    }
}

impl std::error::Error for ConfigError {}

/// Largest accepted configuration file.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// Read a configuration file: a regular file (not a FIFO, device or
/// directory, which could block or never end) of at most [`MAX_FILE_BYTES`].
/// Checked before opening (so a device is never opened) and again on the
/// open file (it may have been replaced in between); opened non-blocking so
/// that a FIFO swapped in cannot block, and read through a bounded reader.
fn read_bounded(path: &Path) -> Result<String, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let check = |m: &std::fs::Metadata| {
        if !m.is_file() {
            Err("is not a regular file".to_owned())
        } else if m.len() > MAX_FILE_BYTES {
            Err(format!("is larger than 1 MiB ({} bytes)", m.len()))
        } else {
            Ok(())
        }
    };
    check(&std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| format!("cannot read: {e}"))?;
    check(&file.metadata().map_err(|e| format!("cannot read: {e}"))?)?;
    let mut buf = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read: {e}"))?;
    if buf.len() as u64 > MAX_FILE_BYTES {
        return Err("is larger than 1 MiB".into());
    }
    String::from_utf8(buf).map_err(|e| format!("is not UTF-8: {e}"))
}

impl Config {
    /// Read, parse and validate `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let err = |msg: String| ConfigError {
            file: path.to_owned(),
            msg,
        };
        let text = read_bounded(path).map_err(err)?;
        Config::parse(&text).map_err(err)
    }

    /// Parse and validate a JSON document; the error names the field.
    pub fn parse(text: &str) -> Result<Config, String> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let cfg: Config = deserialize_with_path(de)?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), String> {
        let fans = self.platform.fan_names();
        let sensors = self.platform.sensor_names();
        if fans.is_empty() {
            return Err("platform.fans: at least one fan is required".into());
        }
        check_names("platform.fans", &fans)?;
        check_names("platform.sensors", &sensors)?;
        self.validate_cooling(&sensors)?;
        self.validate_chassis()?;
        self.validate_platform()?;
        self.auth.validate()?;
        self.tasks.validate().map_err(|e| format!("tasks.{e}"))?;
        self.firmware.validate()?;
        self.logs.event.validate("logs.event")?;
        self.logs.audit.validate("logs.audit")?;
        range("dumps.max_dumps", self.dumps.max_dumps.into(), 1, 16)?;
        range(
            "dumps.max_size",
            self.dumps.max_size,
            64 * 1024,
            1024 * 1024 * 1024,
        )?;
        Ok(())
    }

    fn validate_cooling(&self, sensors: &[&str]) -> Result<(), String> {
        let c = &self.cooling;
        range("cooling.interval_ms", c.interval_ms, 50, 60_000)?;
        range(
            "cooling.manual_timeout_max_s",
            c.manual_timeout_max_s.into(),
            1,
            MAX_MANUAL_TIMEOUT_S,
        )?;
        // Levels are `Percent`s, 0..=100 by construction. The lower bound
        // of failsafe_level is the cross-field rules below (at least 1, as
        // fan_fail_min_level is).
        // 0 would judge a fan meant to stand still, failing it at once.
        range(
            "cooling.fan_fail_min_level",
            c.fan_fail_min_level.get().into(),
            1,
            100,
        )?;
        if c.failsafe_level < c.min_level {
            return Err(format!(
                "cooling.failsafe_level: {} is below cooling.min_level ({})",
                c.failsafe_level.get(),
                c.min_level.get()
            ));
        }
        if c.failsafe_level < c.fan_fail_min_level {
            return Err(format!(
                "cooling.failsafe_level: {} is below cooling.fan_fail_min_level ({}): fans in \
                 failsafe would not be checked, so a failed fan would count as recovered and \
                 the zone would flap",
                c.failsafe_level.get(),
                c.fan_fail_min_level.get()
            ));
        }
        range("cooling.fan_fail_rpm", c.fan_fail_rpm.into(), 1, 100_000)?;
        range("cooling.fail_after", c.fail_after.into(), 1, 1000)?;
        range("cooling.recover_after", c.recover_after.into(), 1, 1000)?;
        if !(0.0..=20.0).contains(&c.hysteresis_c) {
            return Err(format!(
                "cooling.hysteresis_c: {} is outside 0..=20",
                c.hysteresis_c
            ));
        }
        if c.curves.is_empty() {
            return Err("cooling.curves: at least one curve is required".into());
        }
        for (i, curve) in c.curves.iter().enumerate() {
            let f = format!("cooling.curves[{i}]");
            if !sensors.contains(&curve.sensor.as_str()) {
                return Err(format!(
                    "{f}.sensor: '{}' is not a sensor of the platform",
                    curve.sensor
                ));
            }
            let Some(&(first, _)) = curve.points.first() else {
                return Err(format!("{f}.points: at least one point is required"));
            };
            let mut prev: Option<f64> = None;
            for (j, (t, _)) in curve.points.iter().enumerate() {
                if !(-100.0..=MAX_CRITICAL_C).contains(t) {
                    return Err(format!(
                        "{f}.points[{j}]: temperature {t} is outside -100..=200"
                    ));
                }
                if prev.is_some_and(|p| *t <= p) {
                    return Err(format!(
                        "{f}.points[{j}]: temperatures must increase strictly"
                    ));
                }
                prev = Some(*t);
            }
            if let Some(crit) = curve.critical_c {
                if !crit.is_finite() || crit > MAX_CRITICAL_C {
                    return Err(format!(
                        "{f}.critical_c: {crit} is not a temperature up to {MAX_CRITICAL_C} °C"
                    ));
                }
                if crit <= first {
                    return Err(format!(
                        "{f}.critical_c: {crit} is not above the curve's first point ({first} °C)"
                    ));
                }
            }
        }
        Ok(())
    }

    fn validate_chassis(&self) -> Result<(), String> {
        let ch = &self.chassis;
        range("chassis.button_press_ms", ch.button_press_ms, 1, 5000)?;
        range("chassis.reset_pulse_ms", ch.reset_pulse_ms, 1, 5000)?;
        range(
            "chassis.power_on_timeout_ms",
            ch.power_on_timeout_ms,
            100,
            600_000,
        )?;
        range(
            "chassis.force_off_timeout_ms",
            ch.force_off_timeout_ms,
            100,
            60_000,
        )?;
        range("chassis.cycle_off_ms", ch.cycle_off_ms, 100, 600_000)?;
        range(
            "chassis.graceful_off_timeout_max_s",
            ch.graceful_off_timeout_max_s.into(),
            1,
            86_400,
        )?;
        range(
            "chassis.graceful_off_timeout_s",
            ch.graceful_off_timeout_s.into(),
            1,
            ch.graceful_off_timeout_max_s.into(),
        )
        .map_err(|e| format!("{e} (chassis.graceful_off_timeout_max_s)"))?;
        range(
            "chassis.identify_max_s",
            ch.identify_max_s.into(),
            1,
            604_800,
        )?;
        Ok(())
    }

    fn validate_platform(&self) -> Result<(), String> {
        match &self.platform {
            PlatformConfig::Sim(s) => {
                if !(-20.0..=60.0).contains(&s.ambient_c) {
                    return Err(format!(
                        "platform.ambient_c: {} is outside -20..=60",
                        s.ambient_c
                    ));
                }
                for (i, sen) in s.sensors.iter().enumerate() {
                    let f = format!("platform.sensors[{i}]");
                    if !(0.0..=200.0).contains(&sen.heat_c) {
                        return Err(format!("{f}.heat_c: {} is outside 0..=200", sen.heat_c));
                    }
                    if !(0.0..=1.0).contains(&sen.cooling) {
                        return Err(format!("{f}.cooling: {} is outside 0..=1", sen.cooling));
                    }
                    if !(sen.tau_s > 0.0 && sen.tau_s <= 3600.0) {
                        return Err(format!("{f}.tau_s: {} is outside (0, 3600]", sen.tau_s));
                    }
                }
                for (i, fan) in s.fans.iter().enumerate() {
                    range(
                        &format!("platform.fans[{i}].max_rpm"),
                        fan.max_rpm.into(),
                        1,
                        100_000,
                    )?;
                }
                if let Some(PowerConfig::Sim(_)) = s.power {
                    return Err("platform.power.type: `sim` is not accepted on the sim \
                                platform, whose power is simulated already; use `gpio` \
                                or leave `power` out"
                        .into());
                }
                self.validate_sim_power(
                    "platform",
                    s.power_on_delay_ms,
                    s.host_shutdown_ms,
                    s.force_off_hold_ms,
                )
            }
            PlatformConfig::Hardware(h) => match &h.power {
                PowerConfig::Sim(p) => self.validate_sim_power(
                    "platform.power",
                    p.power_on_delay_ms,
                    p.host_shutdown_ms,
                    p.force_off_hold_ms,
                ),
                PowerConfig::Gpio(_) => Ok(()),
            },
        }
    }

    /// The simulated power sequencing must fit the chassis' timeouts, or a
    /// power on or forced off could never succeed.
    fn validate_sim_power(
        &self,
        at: &str,
        power_on_delay_ms: u64,
        host_shutdown_ms: u64,
        force_off_hold_ms: u64,
    ) -> Result<(), String> {
        let ch = &self.chassis;
        range(
            &format!("{at}.power_on_delay_ms"),
            power_on_delay_ms,
            0,
            600_000,
        )?;
        range(
            &format!("{at}.host_shutdown_ms"),
            host_shutdown_ms,
            0,
            3_600_000,
        )?;
        range(
            &format!("{at}.force_off_hold_ms"),
            force_off_hold_ms,
            0,
            60_000,
        )?;
        if power_on_delay_ms >= ch.power_on_timeout_ms {
            return Err(format!(
                "{at}.power_on_delay_ms: {power_on_delay_ms} is not below \
                 chassis.power_on_timeout_ms ({})",
                ch.power_on_timeout_ms
            ));
        }
        if force_off_hold_ms >= ch.force_off_timeout_ms {
            return Err(format!(
                "{at}.force_off_hold_ms: {force_off_hold_ms} is not below \
                 chassis.force_off_timeout_ms ({})",
                ch.force_off_timeout_ms
            ));
        }
        Ok(())
    }
}

/// Longest accepted `cooling.manual_timeout_max_s` (about three years).
const MAX_MANUAL_TIMEOUT_S: u64 = 100_000_000;
/// Highest accepted curve point or critical temperature, °C.
const MAX_CRITICAL_C: f64 = 200.0;

/// `field: v is outside lo..=hi` unless `v` is within.
fn range(field: &str, v: u64, lo: u64, hi: u64) -> Result<(), String> {
    if (lo..=hi).contains(&v) {
        Ok(())
    } else {
        Err(format!("{field}: {v} is outside {lo}..={hi}"))
    }
}

fn check_names(field: &str, names: &[&str]) -> Result<(), String> {
    let mut seen = HashSet::new();
    for (i, n) in names.iter().enumerate() {
        if n.is_empty()
            || n.len() > bmcd_api::MAX_NAME_LEN
            || !n
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(format!(
                "{field}[{i}].name: '{n}' must be 1-{} characters of A-Z a-z 0-9 _ -",
                bmcd_api::MAX_NAME_LEN
            ));
        }
        if !seen.insert(*n) {
            return Err(format!("{field}[{i}].name: '{n}' is used twice"));
        }
    }
    Ok(())
}

/// An enum tagged by a `type` field inside its object (`{"type": "sim",
/// …}`). serde's `#[serde(tag = "type")]` buffers the whole object before
/// it looks at the tag, and errors found in the buffer lose their path (all
/// of them read `platform: …`). Here the object's fields go straight from
/// the file to the variant's struct once the tag is known, so the path
/// tracker sees every field; the rare fields written before `type` are
/// buffered and their errors are given the full path explicitly.
trait Tagged: Sized {
    /// Where the enum sits in the file (`platform`), for buffered fields.
    const AT: &'static str;
    /// Values of `type`.
    const VARIANTS: &'static [&'static str];
    /// Deserialize the variant named `tag` from the object's other fields.
    fn variant<'de, A: MapAccess<'de>>(tag: &str, rest: Rest<A>) -> Result<Self, A::Error>;
}

struct TaggedVisitor<T>(PhantomData<T>);

impl<'de, T: Tagged> Visitor<'de> for TaggedVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "an object with \"type\": one of {}",
            T::VARIANTS.join(", ")
        )
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
        let mut buffered = Vec::new();
        let tag = loop {
            match map.next_key::<String>()? {
                Some(k) if k == "type" => break map.next_value_seed(TagSeed(T::VARIANTS))?,
                Some(k) => {
                    let v: serde_json::Value = map.next_value()?;
                    buffered.push((k, v));
                }
                None => return Err(de::Error::missing_field("type")),
            }
        };
        T::variant(
            tag,
            Rest {
                map,
                buffered: buffered.into_iter(),
                value: None,
                at: T::AT,
            },
        )
    }
}

/// The value of `type`, one of the given words.
struct TagSeed(&'static [&'static str]);

impl<'de> DeserializeSeed<'de> for TagSeed {
    type Value = &'static str;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<&'static str, D::Error> {
        let s = String::deserialize(d)?;
        self.0
            .iter()
            .find(|v| **v == s)
            .copied()
            .ok_or_else(|| de::Error::unknown_variant(&s, self.0))
    }
}

/// The fields of a tagged object other than `type`: first those buffered
/// before the tag, then the rest straight from the file.
struct Rest<A> {
    map: A,
    buffered: std::vec::IntoIter<(String, serde_json::Value)>,
    /// The buffered value whose key was just handed out.
    value: Option<(String, serde_json::Value)>,
    at: &'static str,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Rest<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        if let Some((k, v)) = self.buffered.next() {
            let key = seed.deserialize(StrDeserializer::<A::Error>::new(&k))?;
            self.value = Some((k, v));
            return Ok(Some(key));
        }
        match self.map.next_key::<String>()? {
            None => Ok(None),
            Some(k) if k == "type" => Err(de::Error::duplicate_field("type")),
            Some(k) => seed
                .deserialize(StringDeserializer::<A::Error>::new(k))
                .map(Some),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        let Some((k, v)) = self.value.take() else {
            return self.map.next_value_seed(seed);
        };
        let mut track = serde_path_to_error::Track::new();
        match seed.deserialize(serde_path_to_error::Deserializer::new(v, &mut track)) {
            Ok(x) => Ok(x),
            Err(e) => {
                let sub = track.path().to_string();
                let path = match sub.as_str() {
                    "." => format!("{}.{k}", self.at),
                    s if s.starts_with('[') => format!("{}.{k}{s}", self.at),
                    s => format!("{}.{k}.{s}", self.at),
                };
                Err(de::Error::custom(at_path(&path, &e.to_string())))
            }
        }
    }
}

/// `path: msg`, unless `msg` already names a path below `path` (an error
/// of a buffered field of a [`Tagged`] enum).
fn at_path(path: &str, msg: &str) -> String {
    let below = msg
        .strip_prefix(path)
        .is_some_and(|r| r.starts_with(['.', '[', ':']));
    if below {
        msg.to_owned()
    } else {
        format!("{path}: {msg}")
    }
}

impl Tagged for PlatformConfig {
    const AT: &'static str = "platform";
    const VARIANTS: &'static [&'static str] = &["sim", "hardware"];

    fn variant<'de, A: MapAccess<'de>>(tag: &str, rest: Rest<A>) -> Result<Self, A::Error> {
        let d = MapAccessDeserializer::new(rest);
        if tag == "sim" {
            SimConfig::deserialize(d).map(PlatformConfig::Sim)
        } else {
            HardwareConfig::deserialize(d).map(PlatformConfig::Hardware)
        }
    }
}

impl Tagged for PowerConfig {
    const AT: &'static str = "platform.power";
    const VARIANTS: &'static [&'static str] = &["gpio", "sim"];

    fn variant<'de, A: MapAccess<'de>>(tag: &str, rest: Rest<A>) -> Result<Self, A::Error> {
        let d = MapAccessDeserializer::new(rest);
        if tag == "gpio" {
            GpioPowerConfig::deserialize(d).map(PowerConfig::Gpio)
        } else {
            SimPowerConfig::deserialize(d).map(PowerConfig::Sim)
        }
    }
}

impl Tagged for FirmwareStorage {
    const AT: &'static str = "firmware.storage";
    const VARIANTS: &'static [&'static str] = &["sim", "hardware"];

    fn variant<'de, A: MapAccess<'de>>(tag: &str, rest: Rest<A>) -> Result<Self, A::Error> {
        let d = MapAccessDeserializer::new(rest);
        if tag == "sim" {
            SimFirmwareConfig::deserialize(d).map(FirmwareStorage::Sim)
        } else {
            HwFirmwareConfig::deserialize(d).map(FirmwareStorage::Hardware)
        }
    }
}

impl Tagged for BootConfig {
    const AT: &'static str = "firmware.storage.boot";
    const VARIANTS: &'static [&'static str] = &["uboot", "file"];

    fn variant<'de, A: MapAccess<'de>>(tag: &str, rest: Rest<A>) -> Result<Self, A::Error> {
        let d = MapAccessDeserializer::new(rest);
        if tag == "uboot" {
            UbootConfig::deserialize(d).map(BootConfig::Uboot)
        } else {
            FileBootConfig::deserialize(d).map(BootConfig::File)
        }
    }
}

impl<'de> Deserialize<'de> for FirmwareStorage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(TaggedVisitor(PhantomData))
    }
}

impl<'de> Deserialize<'de> for BootConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(TaggedVisitor(PhantomData))
    }
}

impl<'de> Deserialize<'de> for PlatformConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(TaggedVisitor(PhantomData))
    }
}

impl<'de> Deserialize<'de> for PowerConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(TaggedVisitor(PhantomData))
    }
}

/// Deserialize, naming the JSON path of the offending field on error
/// (`cooling.curves[0].points: invalid length …`).
fn deserialize_with_path<'de, R: serde_json::de::Read<'de>>(
    de: &mut serde_json::Deserializer<R>,
) -> Result<Config, String> {
    let cfg: Config = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            e.inner().to_string()
        } else {
            at_path(&path, &e.inner().to_string())
        }
    })?;
    de.end().map_err(|e| format!("invalid JSON: {e}"))?;
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_text() -> String {
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../config/bmcd.json"))
            .unwrap_or_default()
    }

    #[test]
    fn shipped_configs_parse() {
        let c = Config::parse(&default_text());
        assert!(c.is_ok(), "{:?}", c.err());
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/examples");
        let mut n = 0;
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            let c = Config::parse(&text);
            assert!(c.is_ok(), "{}: {:?}", e.path().display(), c.err());
            n += 1;
        }
        assert!(n >= 1);
    }

    #[test]
    fn unknown_field_is_named() {
        let text = default_text().replacen("\"cooling\": {", "\"cooling\": {\"bogus\": 1,", 1);
        let e = Config::parse(&text).err().unwrap_or_default();
        assert!(e.contains("cooling") && e.contains("bogus"), "{e}");
    }

    #[test]
    fn bad_curve_is_named() {
        let text = default_text().replacen("\"sensor\": \"cpu0\"", "\"sensor\": \"nope\"", 1);
        let e = Config::parse(&text).err().unwrap_or_default();
        assert!(e.contains("cooling.curves[") && e.contains("nope"), "{e}");
    }

    #[test]
    fn auth_defaults_and_limits() {
        // A file without an `auth` section gets the defaults.
        let text = default_text();
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.remove("auth");
        }
        let c = Config::parse(&v.to_string());
        assert!(c.is_ok(), "{:?}", c.err());
        let a = c.map(|c| c.auth).unwrap_or_default();
        assert_eq!(a.pam_service, "bmcd");
        assert_eq!(
            (a.admin_group.as_str(), a.operator_group.as_str()),
            ("bmc-admin", "bmc-operator")
        );
        assert_eq!(
            (a.max_failures, a.failure_window_s, a.lockout_s),
            (5, 300, 300)
        );
        assert_eq!(
            (a.failure_delay_ms, a.grant_seconds, a.max_password_bytes),
            (2000, 0, 512)
        );
        assert!(a.reauthenticate);

        for (bad, field) in [
            (r#"{"pam_service": "../shadow"}"#, "auth.pam_service"),
            (r#"{"pam_service": ""}"#, "auth.pam_service"),
            (r#"{"max_failures": 0}"#, "auth.max_failures"),
            (r#"{"lockout_s": 0}"#, "auth.failure_window_s/lockout_s"),
            (r#"{"grant_seconds": 90000}"#, "auth.grant_seconds"),
            (r#"{"max_password_bytes": 0}"#, "auth.max_password_bytes"),
            (
                r#"{"admin_group": "x", "operator_group": "x"}"#,
                "auth.operator_group",
            ),
            (r#"{"bogus": 1}"#, "auth"),
        ] {
            if let Some(o) = v.as_object_mut() {
                o.insert("auth".into(), serde_json::from_str(bad).unwrap_or_default());
            }
            let e = Config::parse(&v.to_string()).err().unwrap_or_default();
            assert!(e.starts_with(field), "{bad}: {e}");
        }
    }

    fn example_text() -> String {
        std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../config/examples/ast2600-hwmon-gpio.json"
        ))
        .unwrap_or_default()
    }

    type Tweak = Box<dyn FnOnce(&mut serde_json::Value)>;

    /// The error of `text` with `tweak` applied to its JSON value (which
    /// sorts every object's keys, so `type` comes after the other fields).
    fn error_of(text: &str, tweak: impl FnOnce(&mut serde_json::Value)) -> String {
        let mut v: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
        tweak(&mut v);
        Config::parse(&v.to_string()).err().unwrap_or_default()
    }

    #[test]
    fn errors_inside_platform_name_the_full_path() {
        use serde_json::json;
        let sim = default_text();
        let hw = example_text();
        let cases: Vec<(&str, &str, Tweak)> = vec![
            (
                &sim,
                "platform.fans[2].max_rpm: invalid type: string \"x\", expected u32",
                Box::new(|v| v["platform"]["fans"][2]["max_rpm"] = json!("x")),
            ),
            (
                &sim,
                "platform.sensors[1].heat_c: invalid type: string \"hot\", expected f64",
                Box::new(|v| v["platform"]["sensors"][1]["heat_c"] = json!("hot")),
            ),
            (
                &hw,
                "platform.fans[1].tach: invalid type: string \"x\", expected u32",
                Box::new(|v| v["platform"]["fans"][1]["tach"] = json!("x")),
            ),
            (
                &hw,
                "platform.sensors[0].input: invalid value: integer `-1`, expected u32",
                Box::new(|v| v["platform"]["sensors"][0]["input"] = json!(-1)),
            ),
            (
                &hw,
                "platform.power.power_good.active_low: invalid type: string \"yes\"",
                Box::new(|v| v["platform"]["power"]["power_good"]["active_low"] = json!("yes")),
            ),
            (
                &hw,
                "platform.power.reset_button: missing field `name`",
                Box::new(|v| v["platform"]["power"]["reset_button"] = json!({})),
            ),
            (
                &sim,
                "platform: unknown field `bogus`",
                Box::new(|v| v["platform"]["bogus"] = json!(1)),
            ),
            (
                &hw,
                "platform.power: unknown field `bogus`",
                Box::new(|v| v["platform"]["power"]["bogus"] = json!(1)),
            ),
            (
                &sim,
                "platform.fans[0].tach: unknown field `tach`",
                Box::new(|v| v["platform"]["fans"][0]["tach"] = json!(1)),
            ),
            (
                &hw,
                "platform.fans[0]: missing field `pwm`",
                Box::new(|v| {
                    if let Some(o) = v["platform"]["fans"][0].as_object_mut() {
                        o.remove("pwm");
                    }
                }),
            ),
            (
                &hw,
                "platform.power: missing field `chip`",
                Box::new(|v| {
                    if let Some(o) = v["platform"]["power"].as_object_mut() {
                        o.remove("chip");
                    }
                }),
            ),
            (
                &sim,
                "platform: missing field `type`",
                Box::new(|v| {
                    if let Some(o) = v["platform"].as_object_mut() {
                        o.remove("type");
                    }
                }),
            ),
            (
                &sim,
                "platform.type: unknown variant `simulated`, expected `sim` or `hardware`",
                Box::new(|v| v["platform"]["type"] = json!("simulated")),
            ),
            (
                &hw,
                "platform.power.type: unknown variant `i2c`",
                Box::new(|v| v["platform"]["power"]["type"] = json!("i2c")),
            ),
        ];
        for (text, want, tweak) in cases {
            let e = error_of(text, tweak);
            assert!(e.starts_with(want), "want {want:?}, got {e:?}");
        }
    }

    #[test]
    fn errors_inside_platform_name_the_path_when_type_comes_first() {
        // The shipped files put `type` first: fields go straight through.
        let e = Config::parse(&default_text().replacen(
            "{ \"name\": \"fan2\", \"max_rpm\": 12000 }",
            "{ \"name\": \"fan2\", \"max_rpm\": \"x\" }",
            1,
        ))
        .err()
        .unwrap_or_default();
        assert!(
            e.starts_with(
                "platform.fans[2].max_rpm: invalid type: string \"x\", expected u32 at line"
            ),
            "{e}"
        );
        let e = Config::parse(&example_text().replacen(
            "\"power_good\": { \"name\": \"power-chassis-good\", \"active_low\": false }",
            "\"power_good\": { \"name\": 7, \"active_low\": false }",
            1,
        ))
        .err()
        .unwrap_or_default();
        assert!(
            e.starts_with("platform.power.power_good.name: invalid type: integer `7`"),
            "{e}"
        );
        let e = Config::parse(&default_text().replacen(
            "\"type\": \"sim\",",
            "\"type\": \"sim\", \"type\": \"sim\",",
            1,
        ))
        .err()
        .unwrap_or_default();
        assert!(e.starts_with("platform: duplicate field `type`"), "{e}");
    }

    #[test]
    fn unsafe_values_are_refused_naming_the_fields() {
        use serde_json::json;
        let sim = default_text();
        let hw = example_text();
        let cases: Vec<(&str, &str, Tweak)> = vec![
            (
                &sim,
                "cooling.failsafe_level: 0 is below cooling.fan_fail_min_level (20)",
                Box::new(|v| {
                    v["cooling"]["failsafe_level"] = json!(0);
                    v["cooling"]["min_level"] = json!(0);
                }),
            ),
            (
                &sim,
                "cooling.failsafe_level: 10 is below cooling.min_level (20)",
                Box::new(|v| v["cooling"]["failsafe_level"] = json!(10)),
            ),
            (
                &sim,
                "cooling.failsafe_level: 30 is below cooling.fan_fail_min_level (50)",
                Box::new(|v| {
                    v["cooling"]["failsafe_level"] = json!(30);
                    v["cooling"]["fan_fail_min_level"] = json!(50);
                }),
            ),
            (
                &sim,
                "cooling.min_level: level 150 is outside 0..=100 percent",
                Box::new(|v| v["cooling"]["min_level"] = json!(150)),
            ),
            (
                &sim,
                "cooling.curves[0].points[1][1]: level 101 is outside 0..=100 percent",
                Box::new(|v| v["cooling"]["curves"][0]["points"][1][1] = json!(101)),
            ),
            (
                &sim,
                "cooling.fan_fail_min_level: 0 is outside 1..=100",
                Box::new(|v| v["cooling"]["fan_fail_min_level"] = json!(0)),
            ),
            (
                &sim,
                "cooling.manual_timeout_max_s: 4294967295 is outside",
                Box::new(|v| v["cooling"]["manual_timeout_max_s"] = json!(u32::MAX)),
            ),
            (
                &sim,
                "cooling.interval_ms: 18446744073709551615 is outside 50..=60000",
                Box::new(|v| v["cooling"]["interval_ms"] = json!(u64::MAX)),
            ),
            (
                &sim,
                "chassis.reset_pulse_ms: 0 is outside 1..=5000",
                Box::new(|v| v["chassis"]["reset_pulse_ms"] = json!(0)),
            ),
            (
                &sim,
                "chassis.identify_max_s: 0 is outside 1..=604800",
                Box::new(|v| v["chassis"]["identify_max_s"] = json!(0)),
            ),
            (
                &sim,
                "chassis.power_on_timeout_ms: 18446744073709551615 is outside",
                Box::new(|v| v["chassis"]["power_on_timeout_ms"] = json!(u64::MAX)),
            ),
            (
                &sim,
                "chassis.force_off_timeout_ms: 18446744073709551615 is outside",
                Box::new(|v| v["chassis"]["force_off_timeout_ms"] = json!(u64::MAX)),
            ),
            (
                &sim,
                "chassis.cycle_off_ms: 0 is outside",
                Box::new(|v| v["chassis"]["cycle_off_ms"] = json!(0)),
            ),
            (
                &sim,
                "chassis.graceful_off_timeout_s: 0 is outside 1..=3600",
                Box::new(|v| v["chassis"]["graceful_off_timeout_s"] = json!(0)),
            ),
            (
                &sim,
                "platform.host_shutdown_ms: 18446744073709551615 is outside",
                Box::new(|v| v["platform"]["host_shutdown_ms"] = json!(u64::MAX)),
            ),
            (
                &sim,
                "platform.force_off_hold_ms: 4000 is not below chassis.force_off_timeout_ms (3000)",
                Box::new(|v| v["chassis"]["force_off_timeout_ms"] = json!(3000)),
            ),
            (
                &hw,
                "platform.power.power_on_delay_ms: 20000 is not below chassis.power_on_timeout_ms (10000)",
                Box::new(|v| {
                    v["platform"]["power"] = json!({"type": "sim", "power_on_delay_ms": 20000})
                }),
            ),
            (
                &sim,
                "cooling.curves[1].critical_c: 40 is not above the curve's first point (40 °C)",
                Box::new(|v| v["cooling"]["curves"][1]["critical_c"] = json!(40.0)),
            ),
            (
                &sim,
                "cooling.curves[0].critical_c: 1000 is not a temperature",
                Box::new(|v| v["cooling"]["curves"][0]["critical_c"] = json!(1000.0)),
            ),
        ];
        for (text, want, tweak) in cases {
            let e = error_of(text, tweak);
            assert!(e.starts_with(want), "want {want:?}, got {e:?}");
        }
    }

    #[test]
    fn critical_defaults_to_the_last_point_plus_a_margin() {
        let c = Curve {
            sensor: "s".into(),
            points: vec![(40.0, Percent::of::<20>()), (80.0, Percent::FULL)],
            critical_c: None,
        };
        assert_eq!(c.critical(), 85.0);
        let c = Curve {
            critical_c: Some(83.0),
            ..c
        };
        assert_eq!(c.critical(), 83.0);
    }

    #[test]
    fn load_refuses_devices_fifos_and_big_files() {
        let msg = |p: &Path| {
            Config::load(p)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert_eq!(
            msg(Path::new("/dev/zero")),
            "/dev/zero: is not a regular file"
        );
        let dir = std::env::temp_dir().join(format!("bmcd-config-test-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let fifo = dir.join("fifo");
        use nix::sys::stat::Mode;
        nix::unistd::mkfifo(&fifo, Mode::S_IRUSR | Mode::S_IWUSR).unwrap();
        assert!(
            msg(&fifo).ends_with(": is not a regular file"),
            "{}",
            msg(&fifo)
        );
        assert!(msg(&dir).ends_with(": is not a regular file"));
        let big = dir.join("big.json");
        let mut text = default_text();
        text.push_str(&" ".repeat(MAX_FILE_BYTES as usize));
        let _ = std::fs::write(&big, &text);
        assert!(
            msg(&big).contains(": is larger than 1 MiB ("),
            "{}",
            msg(&big)
        );
        // Exactly at the cap is fine.
        text.truncate(MAX_FILE_BYTES as usize);
        let _ = std::fs::write(&big, &text);
        assert!(Config::load(&big).is_ok(), "{}", msg(&big));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn load_names_the_file() {
        let e = Config::load(Path::new("/nonexistent/bmcd.json"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.starts_with("/nonexistent/bmcd.json: cannot read"), "{e}");
    }

    /// The shipped configuration with `firmware` replaced by `fw`.
    fn with_firmware(fw: serde_json::Value) -> Result<Config, String> {
        let mut v: serde_json::Value =
            serde_json::from_str(&default_text()).unwrap_or(serde_json::Value::Null);
        v["firmware"] = fw;
        Config::parse(&v.to_string())
    }

    fn hw_storage() -> serde_json::Value {
        serde_json::json!({
            "type": "hardware",
            "slots": [
                {"name": "bmc_a", "kind": "mtd", "device": "/dev/mtd4", "root": "/dev/mtdblock4"},
                {"name": "bmc_b", "component": "bmc", "kind": "mtd", "device": "/dev/mtd5",
                 "root": "/dev/mtdblock5"},
                {"name": "bios", "component": "bios", "kind": "file", "device": "/var/bios.img",
                 "size": 65536}
            ],
            "boot": {"type": "uboot", "names": {"bmc_a": "A", "bmc_b": "B"}},
        })
    }

    #[test]
    fn firmware_storage_defaults_to_sim() {
        let c = with_firmware(serde_json::json!({})).unwrap_or_else(|e| panic!("{e}"));
        let FirmwareStorage::Sim(s) = &c.firmware.storage else {
            panic!("not sim")
        };
        assert_eq!(s.slot_size, 100_663_296);
        assert_eq!(s.write_bytes_per_s, 0);
        assert_eq!(s.booted, "bmc_a");
        assert_eq!(s.version, "1.0.0");
        let c = with_firmware(
            serde_json::json!({"storage": {"type": "sim", "slot_size": 8192,
            "write_bytes_per_s": 1000, "booted": "bmc_b", "version": "2.1"}}),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let FirmwareStorage::Sim(s) = &c.firmware.storage else {
            panic!("not sim")
        };
        assert_eq!((s.slot_size, s.write_bytes_per_s), (8192, 1000));
        assert_eq!((s.booted.as_str(), s.version.as_str()), ("bmc_b", "2.1"));
    }

    #[test]
    fn firmware_hardware_parses_with_defaults() {
        let c =
            with_firmware(serde_json::json!({"machine": "ast2600-evb", "storage": hw_storage()}))
                .unwrap_or_else(|e| panic!("{e}"));
        let FirmwareStorage::Hardware(h) = &c.firmware.storage else {
            panic!("not hardware")
        };
        assert_eq!(h.cmdline, Path::new("/proc/cmdline"));
        assert_eq!(h.os_release, Path::new("/etc/os-release"));
        assert_eq!(h.slots.len(), 3);
        assert_eq!(h.slots[0].component, "bmc");
        assert_eq!(h.slots[0].kind, SlotKind::Mtd);
        assert_eq!(h.slots[2].size, Some(65536));
        let BootConfig::Uboot(u) = &h.boot else {
            panic!("not uboot")
        };
        assert_eq!(u.tries, 3);
        assert_eq!(u.fw_printenv, Path::new("/usr/bin/fw_printenv"));
        assert_eq!(u.fw_setenv, Path::new("/usr/bin/fw_setenv"));
        assert_eq!(u.names.get("bmc_b").map(String::as_str), Some("B"));
        let mut fb = hw_storage();
        fb["boot"] = serde_json::json!({"type": "file", "path": "/var/lib/bmcd/boot_next"});
        let c = with_firmware(serde_json::json!({"storage": fb})).unwrap_or_else(|e| panic!("{e}"));
        let FirmwareStorage::Hardware(h) = &c.firmware.storage else {
            panic!("not hardware")
        };
        assert!(
            matches!(&h.boot, BootConfig::File(f) if f.path == Path::new("/var/lib/bmcd/boot_next"))
        );
    }

    #[test]
    fn firmware_errors_name_the_field() {
        let cases: Vec<(serde_json::Value, &str)> = vec![
            (
                serde_json::json!({"storage": {"type": "flash"}}),
                "firmware.storage.type: unknown variant `flash`",
            ),
            (
                serde_json::json!({"storage": {"type": "sim", "slot_size": 10}}),
                "firmware.storage.slot_size: 10 is outside",
            ),
            (
                serde_json::json!({"storage": {"type": "sim", "slot_size": "x"}}),
                "firmware.storage.slot_size: invalid type",
            ),
            (
                serde_json::json!({"storage": {"slot_size": "x", "type": "sim"}}),
                "firmware.storage.slot_size: invalid type",
            ),
            (
                serde_json::json!({"storage": {"type": "sim", "bogus": 1}}),
                "firmware.storage: unknown field `bogus`",
            ),
            (
                serde_json::json!({"storage": {"type": "sim", "booted": "bmc_c"}}),
                "firmware.storage.booted: 'bmc_c'",
            ),
            (
                serde_json::json!({"storage": {"type": "sim", "version": "1 0"}}),
                "firmware.storage.version:",
            ),
            (
                serde_json::json!({"storage": {"type": "sim", "version": ""}}),
                "firmware.storage.version:",
            ),
            (serde_json::json!({"machine": "a b"}), "firmware.machine:"),
            (
                serde_json::json!({"keys_dir": "keys"}),
                "firmware.keys_dir:",
            ),
        ];
        for (fw, want) in cases {
            let e = with_firmware(fw.clone()).err().unwrap_or_default();
            assert!(e.contains(want), "{fw}: {e}");
        }
        type Edit = fn(&mut serde_json::Value);
        let hw_cases: Vec<(Edit, &str)> = vec![
            (
                |v| v["slots"][1]["name"] = "bmc_a".into(),
                "firmware.storage.slots[1].name: 'bmc_a' is used twice",
            ),
            (
                |v| v["slots"][1]["name"] = "Bmc-B".into(),
                "firmware.storage.slots[1].name: 'Bmc-B'",
            ),
            (
                |v| v["slots"][1]["device"] = "/dev/mtd4".into(),
                "firmware.storage.slots[1].device: '/dev/mtd4' is used twice",
            ),
            (
                |v| v["slots"][1]["device"] = "mtd5".into(),
                "firmware.storage.slots[1].device: 'mtd5' is not an absolute",
            ),
            (
                |v| v["slots"][1]["kind"] = "nand".into(),
                "firmware.storage.slots[1].kind: unknown variant `nand`",
            ),
            (
                |v| v["slots"][1]["component"] = "bios".into(),
                "firmware.storage.slots[1].component: slot 'bmc_b' must hold",
            ),
            (
                |v| v["slots"][1]["root"] = "/dev/mtdblock4".into(),
                "firmware.storage.slots[1].root: '/dev/mtdblock4' is used twice",
            ),
            (
                |v| v["slots"][1]["size"] = 5.into(),
                "firmware.storage.slots[1].size: only for kind 'file'",
            ),
            (
                |v| {
                    if let Some(o) = v["slots"][2].as_object_mut() {
                        o.remove("size");
                    }
                },
                "firmware.storage.slots[2].size: required",
            ),
            (
                |v| v["slots"][2]["size"] = 0.into(),
                "firmware.storage.slots[2].size: 0 is outside",
            ),
            (
                |v| {
                    if let Some(a) = v["slots"].as_array_mut() {
                        a.remove(1);
                    }
                },
                "firmware.storage.slots: slot 'bmc_b' is required",
            ),
            (
                |v| v["boot"]["tries"] = 0.into(),
                "firmware.storage.boot.tries: 0 is outside",
            ),
            (
                |v| v["boot"]["names"]["bmc_b"] = "A".into(),
                "firmware.storage.boot.names.bmc_b: 'A' is used twice",
            ),
            (
                |v| v["boot"]["names"]["bmc_c"] = "C".into(),
                "firmware.storage.boot.names.bmc_c: not a configured slot",
            ),
            (
                |v| v["boot"]["names"]["bmc_b"] = "B B".into(),
                "firmware.storage.boot.names.bmc_b: 'B B'",
            ),
            (
                |v| {
                    if let Some(o) = v["boot"]["names"].as_object_mut() {
                        o.remove("bmc_b");
                    }
                },
                "firmware.storage.boot.names: slot 'bmc_b' needs a name",
            ),
            (
                |v| v["boot"]["fw_setenv"] = "fw_setenv".into(),
                "firmware.storage.boot.fw_setenv:",
            ),
            (
                |v| v["boot"]["bogus"] = 1.into(),
                "firmware.storage.boot: unknown field `bogus`",
            ),
            (
                |v| v["boot"] = serde_json::json!({"type": "file"}),
                "firmware.storage.boot: missing field `path`",
            ),
            (
                |v| v["boot"] = serde_json::json!({"type": "file", "path": 3}),
                "firmware.storage.boot.path: invalid type",
            ),
            (
                |v| v["cmdline"] = "cmdline".into(),
                "firmware.storage.cmdline:",
            ),
            (
                |v| v["slots"][0]["bogus"] = 1.into(),
                "firmware.storage.slots[0].bogus: unknown field `bogus`",
            ),
        ];
        for (edit, want) in hw_cases {
            let mut st = hw_storage();
            edit(&mut st);
            let e = with_firmware(serde_json::json!({"storage": st}))
                .err()
                .unwrap_or_default();
            assert!(e.contains(want), "{want}: {e}");
        }
    }

    /// The sim platform with real GPIO power (board bring-up: power lines
    /// before the fan controller): the hardware example's `power` block
    /// moved under the default sim platform.
    #[test]
    fn sim_platform_takes_gpio_power_only() {
        use serde_json::json;
        let hw: serde_json::Value = serde_json::from_str(&example_text()).unwrap_or_default();
        let gpio = hw["platform"]["power"].clone();
        assert_eq!(gpio["type"], json!("gpio"));
        let with_power = |power: serde_json::Value| {
            let mut v: serde_json::Value =
                serde_json::from_str(&default_text()).unwrap_or_default();
            v["platform"]["power"] = power;
            Config::parse(&v.to_string())
        };

        let c = with_power(gpio.clone());
        assert!(c.is_ok(), "{:?}", c.err());
        let Ok(Config {
            platform: PlatformConfig::Sim(s),
            ..
        }) = c
        else {
            panic!("not a sim platform")
        };
        let Some(PowerConfig::Gpio(g)) = &s.power else {
            panic!("no gpio power: {:?}", s.power)
        };
        assert_eq!(g.chip, PathBuf::from("/dev/gpiochip0"));
        assert_eq!(g.power_good.name, "power-chassis-good");
        assert!(g.power_button.active_low);
        assert!(g.identify_led.is_some());
        assert!(!s.fans.is_empty(), "the fans stay simulated");

        // Without `power`, the simulator's own sequencing, as before.
        let c = Config::parse(&default_text());
        assert!(
            matches!(&c, Ok(Config { platform: PlatformConfig::Sim(s), .. }) if s.power.is_none())
        );

        // `sim` would be the simulator twice over: refused, by path.
        let e = with_power(json!({"type": "sim"})).err().unwrap_or_default();
        assert!(
            e.starts_with("platform.power.type: `sim` is not accepted"),
            "{e}"
        );

        // Errors inside the block name their full path, as on hardware.
        let mut bad = gpio.clone();
        if let Some(o) = bad.as_object_mut() {
            o.remove("chip");
        }
        let e = with_power(bad).err().unwrap_or_default();
        assert!(e.contains("platform.power: missing field `chip`"), "{e}");
        let mut bad = gpio;
        bad["power_good"]["active_low"] = json!("yes");
        let e = with_power(bad).err().unwrap_or_default();
        assert!(
            e.contains("platform.power.power_good.active_low: invalid type"),
            "{e}"
        );
        let e = with_power(json!({"type": "i2c"})).err().unwrap_or_default();
        assert!(
            e.contains("platform.power.type: unknown variant `i2c`"),
            "{e}"
        );

        // The AST2600 VM leg's board config (scripts/vm/ast2600/run) is one.
        let ast = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../scripts/vm/ast2600/bmcd.json"
        ))
        .unwrap_or_default();
        let c = Config::parse(&ast);
        assert!(
            matches!(&c, Ok(Config { platform: PlatformConfig::Sim(s), .. })
                if matches!(s.power, Some(PowerConfig::Gpio(_)))),
            "{:?}",
            c.err()
        );
    }
}
