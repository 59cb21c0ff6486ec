//! The hwmon backend through the whole daemon: a "hardware" platform whose
//! `hwmon_root` is a fake sysfs tree made here (an AST2600-like PWM/tach
//! controller and a tmp75), with the simulator's power sequencing (GPIO
//! cannot work in a test).

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use bmcd_tests::bmcd_api::{CoolingMode, Health, PowerState};
use bmcd_tests::serde_json::{json, Value};
use bmcd_tests::{no_options, secs, wait_value, Env, TempDir};

const PWM_DEV: &str = "platform/ahb/1e610000.pwm-tach-controller";
const I2C_DEV: &str = "platform/ahb/1e78a000.bus/1e78a100.i2c-bus/i2c-3/3-0048";

/// A fake `/sys`: `devices/<dev>/hwmon/hwmonN` (with a `device` link back),
/// listed as `class/hwmon/hwmonN`.
struct Sysfs {
    tmp: TempDir,
}

impl Sysfs {
    fn new() -> Sysfs {
        let s = Sysfs {
            tmp: TempDir::new("sysfs"),
        };
        let mut fan_files = vec![];
        for n in 1..=4 {
            fan_files.push((format!("fan{n}_input"), format!("{}\n", 5000 + n * 10)));
            fan_files.push((format!("pwm{n}"), "255\n".to_owned()));
            fan_files.push((format!("pwm{n}_enable"), "2\n".to_owned()));
        }
        s.add(
            0,
            I2C_DEV,
            "tmp75",
            &[("temp1_input".into(), "23500\n".into())],
        );
        s.add(1, PWM_DEV, "aspeed_g6_pwm_tach", &fan_files);
        s
    }

    fn root(&self) -> PathBuf {
        self.tmp.join("class/hwmon")
    }

    fn add(&self, n: u32, dev: &str, name: &str, files: &[(String, String)]) {
        let devdir = self.tmp.join("devices").join(dev);
        let dir = devdir.join(format!("hwmon/hwmon{n}"));
        std::fs::create_dir_all(&dir).unwrap();
        symlink(&devdir, dir.join("device")).unwrap();
        std::fs::write(dir.join("name"), format!("{name}\n")).unwrap();
        for (f, v) in files {
            std::fs::write(dir.join(f), v).unwrap();
        }
        std::fs::create_dir_all(self.root()).unwrap();
        symlink(&dir, self.root().join(format!("hwmon{n}"))).unwrap();
    }

    fn path(&self, n: u32, file: &str) -> PathBuf {
        self.root().join(format!("hwmon{n}")).join(file)
    }

    fn read(&self, n: u32, file: &str) -> String {
        std::fs::read_to_string(self.path(n, file))
            .unwrap_or_default()
            .trim()
            .to_owned()
    }

    /// Replace a file atomically, so the daemon never reads half of it.
    fn write(&self, n: u32, file: &str, v: &str) {
        let p = self.path(n, file);
        let tmp = p.with_extension("new");
        std::fs::write(&tmp, v).unwrap();
        std::fs::rename(&tmp, &p).unwrap();
    }

    fn remove(&self, n: u32, file: &str) {
        std::fs::remove_file(self.path(n, file)).unwrap();
    }
}

fn hardware_config(root: &Path) -> Value {
    let fans: Vec<Value> = (1..=4)
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
            "hwmon_root": root,
            "fans": fans,
            "sensors": [ { "name": "inlet", "hwmon": "tmp75", "device": "3-0048", "input": 1 } ]
        },
        "chassis": { "button_press_ms": 50, "reset_pulse_ms": 50, "cycle_off_ms": 200,
                     "power_on_timeout_ms": 5000, "force_off_timeout_ms": 5000,
                     "graceful_off_timeout_s": 10 },
        "cooling": {
            "interval_ms": 200,
            "min_level": 20,
            "failsafe_level": 100,
            "curves": [ { "sensor": "inlet", "points": [[25.0, 20], [35.0, 50], [45.0, 100]] } ]
        },
        "auth": { "reauthenticate": false }
    })
}

/// The duty (0–255) the daemon writes for a level in percent.
fn duty(pct: u8) -> String {
    ((u32::from(pct) * 255 + 50) / 100).to_string()
}

fn wait_pwm_files(sys: &Sysfs, want: &str, what: &str) {
    for n in 1..=4 {
        wait_value(
            &format!("pwm{n} = {want} ({what})"),
            secs(6.0),
            || sys.read(1, &format!("pwm{n}")),
            |v| v == want,
        );
    }
}

#[test]
fn daemon_drives_hwmon_fans_and_reads_hwmon_sensors() {
    let sys = Sysfs::new();
    let env = Env::with_config(hardware_config(&sys.root()));
    let z = env.cooling();
    assert_eq!(env.fan_names(), ["fan0", "fan1", "fan2", "fan3"]);

    // Readings come from the files.
    let f1 = env.fan("fan1");
    wait_value(
        "fan1 Rpm from fan2_input",
        secs(5.0),
        || f1.rpm().unwrap(),
        |r| *r == 5020,
    );
    assert!(f1.present().unwrap());
    assert_eq!(f1.health().unwrap(), Health::Ok);
    let t = wait_value(
        "inlet from temp1_input",
        secs(5.0),
        || z.temperatures().unwrap(),
        |t| t.get("inlet") == Some(&23.5),
    );
    assert_eq!(t.len(), 1);

    // The daemon takes the PWM channels over and writes the curve's level.
    for n in 1..=4 {
        wait_value(
            &format!("pwm{n}_enable = 1"),
            secs(5.0),
            || sys.read(1, &format!("pwm{n}_enable")),
            |v| v == "1",
        );
    }
    wait_pwm_files(&sys, &duty(20), "cool: minimum level");
    assert_eq!(f1.pwm().unwrap(), 20);

    // Warmer: 44 °C asks for 95 %.
    sys.write(0, "temp1_input", "44000\n");
    wait_value(
        "AutoLevel 95",
        secs(5.0),
        || z.auto_level().unwrap(),
        |l| *l == 95,
    );
    wait_pwm_files(&sys, &duty(95), "warm");

    // Manual override lands in the files too.
    z.set_manual(60, &["fan3"], 0, no_options()).unwrap();
    wait_value(
        "pwm4 = 60 %",
        secs(5.0),
        || sys.read(1, "pwm4"),
        |v| *v == duty(60),
    );
    assert_eq!(sys.read(1, "pwm1"), duty(95));
    z.set_auto(no_options()).unwrap();

    // A stalled fan (0 RPM while driven): failsafe, every channel at full.
    sys.write(1, "fan3_input", "0\n");
    let f2 = env.fan("fan2");
    wait_value(
        "fan2 Failed",
        secs(5.0),
        || f2.health().unwrap(),
        |h| *h == Health::Failed,
    );
    env.wait_mode(CoolingMode::Failsafe, secs(3.0));
    wait_pwm_files(&sys, "255", "failsafe");
    sys.write(1, "fan3_input", "5030\n");
    env.wait_mode(CoolingMode::Auto, secs(5.0));
    wait_pwm_files(&sys, &duty(95), "recovered");

    // An unreadable sensor: failsafe until it reads again.
    sys.write(0, "temp1_input", "garbage\n");
    env.wait_mode(CoolingMode::Failsafe, secs(5.0));
    assert!(z.failsafe_reason().unwrap().contains("inlet"));
    sys.write(0, "temp1_input", "30000\n");
    env.wait_mode(CoolingMode::Auto, secs(5.0));

    // A fan that disappears: not present, failsafe.
    sys.remove(1, "fan4_input");
    let f3 = env.fan("fan3");
    wait_value(
        "fan3 not present",
        secs(5.0),
        || f3.present().unwrap(),
        |p| !p,
    );
    env.wait_mode(CoolingMode::Failsafe, secs(5.0));
    sys.write(1, "fan4_input", "5040\n");
    env.wait_mode(CoolingMode::Auto, secs(5.0));

    // Power control is the simulator's.
    env.chassis().power_on(no_options()).unwrap();
    env.wait_power(PowerState::On, secs(5.0));

    // On SIGTERM the fans are handed back: full duty, automatic mode.
    assert_eq!(env.daemon.stop(), 0);
    for n in 1..=4 {
        assert_eq!(sys.read(1, &format!("pwm{n}")), "255", "pwm{n}");
        assert_eq!(sys.read(1, &format!("pwm{n}_enable")), "2", "pwm{n}_enable");
    }
}

#[test]
fn a_missing_hwmon_device_stops_the_start_with_a_clear_error() {
    let sys = Sysfs::new();
    let mut cfg = hardware_config(&sys.root());
    cfg["platform"]["sensors"][0]["hwmon"] = "lm75".into();
    let dir = TempDir::new("hwbad");
    cfg["state_dir"] = json!(dir.join("state"));
    let path = dir.join("bmcd.json");
    std::fs::write(&path, cfg.to_string()).unwrap();
    let bus = bmcd_tests::TestBus::new();
    let r = bmcd_tests::run(
        std::process::Command::new(bmcd_tests::bmcd_bin())
            .arg("--config")
            .arg(&path)
            .arg("--bus")
            .arg(bus.address())
            .arg("--log")
            .arg("stderr"),
        secs(10.0),
    );
    assert_eq!(r.code, 1, "{r}");
    assert!(
        r.stderr.contains("lm75") && r.stderr.contains("inlet"),
        "{r}"
    );
}
