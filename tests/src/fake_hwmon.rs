//! A fake hwmon sysfs tree, for a daemon on the `hardware` platform in a
//! test: an AST2600-like PWM/tach controller and a tmp75, laid out as the
//! kernel does (`devices/<dev>/hwmon/hwmonN` with a `device` link back,
//! listed as `class/hwmon/hwmonN`), and the configuration that points the
//! daemon at it.
//!
//! - `hwmon0` is the tmp75 (`temp1_input` = 23.5 °C), the sensor `inlet`;
//! - `hwmon1` is the controller: channel `n` (1-based) has `fan<n>_input`
//!   (5000 + 10·n RPM), `pwm<n>` (255) and, unless left out,
//!   `pwm<n>_enable` (2: automatic control), and drives the fan named
//!   `fan<n-1>`.
//!
//! Files are written atomically ([`FakeHwmon::write`]) so that the daemon
//! never reads half of one. Helpers panic with the path on any I/O error:
//! a broken fixture is a failed test.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::TempDir;

/// `hwmonN` of the tmp75.
pub const SENSOR_HWMON: u32 = 0;
/// `hwmonN` of the PWM/tach controller.
pub const FAN_HWMON: u32 = 1;
/// The controller's device, below `devices/`.
const PWM_DEV: &str = "platform/ahb/1e610000.pwm-tach-controller";
/// The tmp75's device, below `devices/`.
const I2C_DEV: &str = "platform/ahb/1e78a000.bus/1e78a100.i2c-bus/i2c-3/3-0048";

/// The duty (0–255) the daemon writes for a level in percent.
pub fn duty(pct: u8) -> String {
    ((u32::from(pct) * 255 + 50) / 100).to_string()
}

/// A fake `/sys` (see the module's documentation), removed on drop.
pub struct FakeHwmon {
    tmp: TempDir,
    fans: u32,
}

impl FakeHwmon {
    /// A tree with `fans` channels, each with its `pwmN_enable`.
    pub fn new(fans: u32) -> FakeHwmon {
        FakeHwmon::build(fans, true)
    }

    /// A tree with `fans` channels and no `pwmN_enable` files (a driver
    /// without an automatic mode).
    pub fn without_pwm_enable(fans: u32) -> FakeHwmon {
        FakeHwmon::build(fans, false)
    }

    fn build(fans: u32, pwm_enable: bool) -> FakeHwmon {
        let s = FakeHwmon {
            tmp: TempDir::new("sysfs"),
            fans,
        };
        let mut fan_files = vec![];
        for n in 1..=fans {
            fan_files.push((format!("fan{n}_input"), format!("{}\n", 5000 + n * 10)));
            fan_files.push((format!("pwm{n}"), "255\n".to_owned()));
            if pwm_enable {
                fan_files.push((format!("pwm{n}_enable"), "2\n".to_owned()));
            }
        }
        let temp = [("temp1_input".to_owned(), "23500\n".to_owned())];
        s.add(SENSOR_HWMON, I2C_DEV, "tmp75", &temp);
        s.add(FAN_HWMON, PWM_DEV, "aspeed_g6_pwm_tach", &fan_files);
        s
    }

    fn add(&self, n: u32, dev: &str, name: &str, files: &[(String, String)]) {
        let devdir = self.tmp.join("devices").join(dev);
        let dir = devdir.join(format!("hwmon/hwmon{n}"));
        create_dir_all(&dir);
        link(&devdir, &dir.join("device"));
        write_file(&dir.join("name"), &format!("{name}\n"));
        for (f, v) in files {
            write_file(&dir.join(f), v);
        }
        create_dir_all(&self.root());
        link(&dir, &self.root().join(format!("hwmon{n}")));
    }

    /// The `hwmon_root` of the configuration: `class/hwmon`.
    pub fn root(&self) -> PathBuf {
        self.tmp.join("class/hwmon")
    }

    /// The number of fan channels.
    pub fn fans(&self) -> u32 {
        self.fans
    }

    /// `hwmon<n>/<file>`.
    pub fn path(&self, n: u32, file: &str) -> PathBuf {
        self.root().join(format!("hwmon{n}")).join(file)
    }

    /// The trimmed content of `hwmon<n>/<file>`; empty if it cannot be read.
    pub fn read(&self, n: u32, file: &str) -> String {
        std::fs::read_to_string(self.path(n, file))
            .unwrap_or_default()
            .trim()
            .to_owned()
    }

    /// Replace `hwmon<n>/<file>` atomically, so the daemon never reads half
    /// of it.
    pub fn write(&self, n: u32, file: &str, v: &str) {
        let p = self.path(n, file);
        let tmp = p.with_extension("new");
        write_file(&tmp, v);
        std::fs::rename(&tmp, &p)
            .unwrap_or_else(|e| panic!("cannot rename {} to {}: {e}", tmp.display(), p.display()));
    }

    /// Remove `hwmon<n>/<file>`.
    pub fn remove(&self, n: u32, file: &str) {
        let p = self.path(n, file);
        std::fs::remove_file(&p).unwrap_or_else(|e| panic!("cannot remove {}: {e}", p.display()));
    }

    /// The tmp75's `temp1_input` (a raw value, e.g. `"44000\n"` or garbage).
    pub fn set_temp(&self, raw: &str) {
        self.write(SENSOR_HWMON, "temp1_input", raw);
    }

    /// Channel `n`'s `fan<n>_input` (a raw value, e.g. `"5100\n"`); creates
    /// it again if it was removed.
    pub fn set_tach(&self, n: u32, raw: &str) {
        self.write(FAN_HWMON, &format!("fan{n}_input"), raw);
    }

    /// Remove channel `n`'s `fan<n>_input`: the fan disappears.
    pub fn remove_tach(&self, n: u32) {
        self.remove(FAN_HWMON, &format!("fan{n}_input"));
    }

    /// Channel `n`'s `pwm<n>`, trimmed.
    pub fn pwm(&self, n: u32) -> String {
        self.read(FAN_HWMON, &format!("pwm{n}"))
    }

    /// Channel `n`'s `pwm<n>_enable`, trimmed.
    pub fn pwm_enable(&self, n: u32) -> String {
        self.read(FAN_HWMON, &format!("pwm{n}_enable"))
    }

    /// `(pwmN, pwmN_enable)` of every channel.
    pub fn channels(&self) -> Vec<(String, String)> {
        (1..=self.fans)
            .map(|n| (self.pwm(n), self.pwm_enable(n)))
            .collect()
    }

    /// Make `pwm<n>` unwritable: a directory stands where the file was, so
    /// every write fails.
    pub fn block_pwm(&self, n: u32) {
        let p = self.path(FAN_HWMON, &format!("pwm{n}"));
        std::fs::remove_file(&p).unwrap_or_else(|e| panic!("cannot remove {}: {e}", p.display()));
        create_dir_all(&p);
    }

    /// Undo [`FakeHwmon::block_pwm`]: `pwm<n>` is a file again, at 255.
    pub fn unblock_pwm(&self, n: u32) {
        let p = self.path(FAN_HWMON, &format!("pwm{n}"));
        std::fs::remove_dir(&p).unwrap_or_else(|e| panic!("cannot remove {}: {e}", p.display()));
        write_file(&p, "255\n");
    }

    /// A complete daemon configuration: the `hardware` platform on this
    /// tree (fan `fan<n-1>` on channel `n`, sensor `inlet` on the tmp75)
    /// with the simulator's power sequencing (GPIO cannot work in a test),
    /// and a cooling curve for which 23.5 °C asks for the minimum, 20 %
    /// (25 → 20 %, 35 → 50 %, 45 → 100 %), every 200 ms. Tests change what
    /// they need in the returned value.
    pub fn config(&self) -> Value {
        let fans: Vec<Value> = (1..=self.fans)
            .map(|n| {
                json!({ "name": format!("fan{}", n - 1), "hwmon": "aspeed_g6_pwm_tach",
                        "device": "1e610000.pwm-tach-controller", "tach": n, "pwm": n })
            })
            .collect();
        json!({
            "platform": {
                "type": "hardware",
                "power": { "type": "sim", "power_on_delay_ms": 300, "host_shutdown_ms": 500,
                           "force_off_hold_ms": 800 },
                "hwmon_root": self.root(),
                "fans": fans,
                "sensors": [ { "name": "inlet", "hwmon": "tmp75", "device": "3-0048", "input": 1 } ]
            },
            "cooling": {
                "interval_ms": 200,
                "min_level": 20,
                "failsafe_level": 100,
                "curves": [ { "sensor": "inlet", "points": [[25.0, 20], [35.0, 50], [45.0, 100]] } ]
            },
            "auth": { "reauthenticate": false }
        })
    }
}

fn create_dir_all(p: &Path) {
    std::fs::create_dir_all(p).unwrap_or_else(|e| panic!("cannot create {}: {e}", p.display()));
}

fn write_file(p: &Path, v: &str) {
    std::fs::write(p, v).unwrap_or_else(|e| panic!("cannot write {}: {e}", p.display()));
}

fn link(target: &Path, at: &Path) {
    symlink(target, at)
        .unwrap_or_else(|e| panic!("cannot link {} to {}: {e}", at.display(), target.display()));
}
