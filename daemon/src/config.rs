//! Configuration: one JSON file, unknown fields rejected, every error naming
//! the file and the field.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use bmcd_api::RestorePolicy;
use serde::Deserialize;

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
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/bmcd")
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum PlatformConfig {
    /// The simulated platform.
    Sim(SimConfig),
    /// A real board: GPIO power lines and hwmon fans/sensors.
    Hardware(HardwareConfig),
}

impl PlatformConfig {
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

/// Power control of a hardware platform.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChassisConfig {
    /// Policy used until an operator sets one (then the state file wins).
    #[serde(default = "d_policy")]
    pub default_restore_policy: RestorePolicy,
    /// Length of a short power-button press, ms.
    #[serde(default = "d_press_ms")]
    pub button_press_ms: u64,
    /// Length of a reset pulse, ms.
    #[serde(default = "d_press_ms")]
    pub reset_pulse_ms: u64,
    /// How long power-good may take to rise after power on, ms.
    #[serde(default = "d_power_on_timeout")]
    pub power_on_timeout_ms: u64,
    /// Default graceful phase of PowerOff before forcing, seconds.
    #[serde(default = "d_graceful_s")]
    pub graceful_off_timeout_s: u32,
    /// Longest accepted graceful timeout, seconds.
    #[serde(default = "d_graceful_max_s")]
    pub graceful_off_timeout_max_s: u32,
    /// How long the button is held at most to force power off, ms.
    #[serde(default = "d_force_timeout")]
    pub force_off_timeout_ms: u64,
    /// Time the host stays off during a power cycle, ms.
    #[serde(default = "d_cycle_off_ms")]
    pub cycle_off_ms: u64,
    /// Longest accepted identify duration, seconds.
    #[serde(default = "d_identify_max")]
    pub identify_max_s: u32,
}

impl Default for ChassisConfig {
    fn default() -> Self {
        ChassisConfig {
            default_restore_policy: d_policy(),
            button_press_ms: d_press_ms(),
            reset_pulse_ms: d_press_ms(),
            power_on_timeout_ms: d_power_on_timeout(),
            graceful_off_timeout_s: d_graceful_s(),
            graceful_off_timeout_max_s: d_graceful_max_s(),
            force_off_timeout_ms: d_force_timeout(),
            cycle_off_ms: d_cycle_off_ms(),
            identify_max_s: d_identify_max(),
        }
    }
}

fn d_policy() -> RestorePolicy {
    RestorePolicy::AlwaysOff
}
fn d_press_ms() -> u64 {
    200
}
fn d_power_on_timeout() -> u64 {
    10_000
}
fn d_graceful_s() -> u32 {
    60
}
fn d_graceful_max_s() -> u32 {
    3600
}
fn d_force_timeout() -> u64 {
    10_000
}
fn d_cycle_off_ms() -> u64 {
    2000
}
fn d_identify_max() -> u32 {
    86_400
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
    pub min_level: u8,
    /// Level of every fan in Failsafe, percent.
    #[serde(default = "d_failsafe")]
    pub failsafe_level: u8,
    /// Temperature must fall this much below a point before the level drops, °C.
    #[serde(default = "d_hysteresis")]
    pub hysteresis_c: f64,
    /// A fan driven at or above `fan_fail_min_level` percent that reads
    /// below this many RPM is not spinning.
    #[serde(default = "d_fail_rpm")]
    pub fan_fail_rpm: u32,
    #[serde(default = "d_fail_min_level")]
    pub fan_fail_min_level: u8,
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
fn d_min_level() -> u8 {
    20
}
fn d_failsafe() -> u8 {
    100
}
fn d_hysteresis() -> f64 {
    2.0
}
fn d_fail_rpm() -> u32 {
    300
}
fn d_fail_min_level() -> u8 {
    20
}
fn d_fail_after() -> u32 {
    3
}
fn d_manual_max() -> u32 {
    100_000_000
}

/// Who may do what, and how re-authentication works. Every number is
/// configurable so that tests can run with short delays.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// PAM service (a file in /etc/pam.d) used by `Session1.Authenticate`.
    #[serde(default = "d_pam_service")]
    pub pam_service: String,
    /// Members of this group are Administrators (uid 0 always is).
    #[serde(default = "d_admin_group")]
    pub admin_group: String,
    /// Members of this group are Operators.
    #[serde(default = "d_operator_group")]
    pub operator_group: String,
    /// Sensitive calls need a fresh authentication. `false` turns the
    /// requirement off (roles are still enforced): for test rigs only.
    #[serde(default = "d_true")]
    pub reauthenticate: bool,
    /// How long a successful authentication lets the connection make
    /// sensitive calls, seconds; 0 = exactly one sensitive call.
    #[serde(default)]
    pub grant_seconds: u32,
    /// Every failed authentication answers only after this delay, ms.
    #[serde(default = "d_failure_delay")]
    pub failure_delay_ms: u64,
    /// This many failures of one uid within `failure_window_s` lock it out.
    #[serde(default = "d_max_failures")]
    pub max_failures: u32,
    #[serde(default = "d_failure_window")]
    pub failure_window_s: u32,
    /// How long a lockout lasts, seconds.
    #[serde(default = "d_lockout")]
    pub lockout_s: u32,
    /// Longer passwords are refused without running PAM, bytes.
    #[serde(default = "d_max_password")]
    pub max_password_bytes: usize,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            pam_service: d_pam_service(),
            admin_group: d_admin_group(),
            operator_group: d_operator_group(),
            reauthenticate: true,
            grant_seconds: 0,
            failure_delay_ms: d_failure_delay(),
            max_failures: d_max_failures(),
            failure_window_s: d_failure_window(),
            lockout_s: d_lockout(),
            max_password_bytes: d_max_password(),
        }
    }
}

fn d_pam_service() -> String {
    "bmcd".into()
}
fn d_admin_group() -> String {
    "bmc-admin".into()
}
fn d_operator_group() -> String {
    "bmc-operator".into()
}
fn d_failure_delay() -> u64 {
    2000
}
fn d_max_failures() -> u32 {
    5
}
fn d_failure_window() -> u32 {
    300
}
fn d_lockout() -> u32 {
    300
}
fn d_max_password() -> usize {
    512
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
    pub points: Vec<(f64, u8)>,
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

impl Config {
    /// Read, parse and validate `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let err = |msg: String| ConfigError {
            file: path.to_owned(),
            msg,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
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
        let c = &self.cooling;
        if c.interval_ms < 50 || c.interval_ms > 60_000 {
            return Err(format!(
                "cooling.interval_ms: {} is outside 50..=60000",
                c.interval_ms
            ));
        }
        for (field, v) in [
            ("cooling.min_level", c.min_level),
            ("cooling.failsafe_level", c.failsafe_level),
            ("cooling.fan_fail_min_level", c.fan_fail_min_level),
        ] {
            if v > 100 {
                return Err(format!("{field}: {v} is more than 100 percent"));
            }
        }
        if c.fail_after == 0 || c.recover_after == 0 {
            return Err("cooling.fail_after/recover_after: must be at least 1".into());
        }
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
            if curve.points.is_empty() {
                return Err(format!("{f}.points: at least one point is required"));
            }
            let mut prev: Option<f64> = None;
            for (j, (t, l)) in curve.points.iter().enumerate() {
                if !t.is_finite() {
                    return Err(format!("{f}.points[{j}]: temperature is not a number"));
                }
                if *l > 100 {
                    return Err(format!("{f}.points[{j}]: level {l} is more than 100"));
                }
                if prev.is_some_and(|p| *t <= p) {
                    return Err(format!(
                        "{f}.points[{j}]: temperatures must increase strictly"
                    ));
                }
                prev = Some(*t);
            }
        }
        if let PlatformConfig::Sim(s) = &self.platform {
            if !(-20.0..=60.0).contains(&s.ambient_c) {
                return Err(format!(
                    "platform.ambient_c: {} is outside -20..=60",
                    s.ambient_c
                ));
            }
            for (i, sen) in s.sensors.iter().enumerate() {
                if !(0.0..=1.0).contains(&sen.cooling) || sen.tau_s <= 0.0 || sen.heat_c < 0.0 {
                    return Err(format!(
                        "platform.sensors[{i}]: need 0 <= cooling <= 1, tau_s > 0, heat_c >= 0"
                    ));
                }
            }
            if s.fans.iter().any(|f| f.max_rpm == 0) {
                return Err("platform.fans: max_rpm must be positive".into());
            }
        }
        let ch = &self.chassis;
        if ch.button_press_ms == 0 || ch.button_press_ms > 5000 {
            return Err("chassis.button_press_ms: must be 1..=5000".into());
        }
        if ch.graceful_off_timeout_s > ch.graceful_off_timeout_max_s {
            return Err(
                "chassis.graceful_off_timeout_s: exceeds graceful_off_timeout_max_s".into(),
            );
        }
        self.auth.validate()?;
        Ok(())
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
            format!("{path}: {}", e.inner())
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

    #[test]
    fn load_names_the_file() {
        let e = Config::load(Path::new("/nonexistent/bmcd.json"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.starts_with("/nonexistent/bmcd.json: cannot read"), "{e}");
    }
}
