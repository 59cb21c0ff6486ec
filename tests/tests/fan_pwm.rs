//! `Fan1.Pwm` is "the duty cycle last written": on the real bus, with the
//! hwmon backend on a fake sysfs tree whose `pwm2` cannot be written (a
//! directory stands where the file was: every write fails), fan1 keeps the
//! level last written, in its property and in its `PropertiesChanged`
//! signals, while fan0 follows the curve; once `pwm2` is writable again
//! fan1 follows too. The write failure is logged once, not every period.

use std::collections::HashMap;
use std::os::unix::fs::symlink;
use std::path::PathBuf;

use bmcd_tests::bmcd_api::CoolingMode;
use bmcd_tests::serde_json::json;
use bmcd_tests::zbus::zvariant::OwnedValue;
use bmcd_tests::{secs, wait_value, Env, Signals, TempDir};

const DEV: &str = "platform/ahb/1e610000.pwm-tach-controller";
const FAN1_PATH: &str = "/org/bmcd/fans/fan1";

/// A fake `/sys` with one PWM/tach controller (`hwmon1`: two fans) and one
/// tmp75 (`hwmon0`).
struct Sysfs {
    tmp: TempDir,
}

impl Sysfs {
    fn new() -> Sysfs {
        let s = Sysfs {
            tmp: TempDir::new("sysfs-pwm"),
        };
        s.add(0, "i2c-3/3-0048", "tmp75", &[("temp1_input", "23500\n")]);
        s.add(
            1,
            DEV,
            "aspeed_g6_pwm_tach",
            &[
                ("fan1_input", "5010\n"),
                ("fan2_input", "5020\n"),
                ("pwm1", "255\n"),
                ("pwm2", "255\n"),
            ],
        );
        s
    }

    fn root(&self) -> PathBuf {
        self.tmp.join("class/hwmon")
    }

    fn add(&self, n: u32, dev: &str, name: &str, files: &[(&str, &str)]) {
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
}

/// The duty (0–255) the daemon writes for a level in percent.
fn duty(pct: u8) -> String {
    ((u32::from(pct) * 255 + 50) / 100).to_string()
}

/// The `Pwm` values in the `PropertiesChanged` signals received so far.
fn pwm_signals(sigs: &mut Signals) -> Vec<u8> {
    sigs.received()
        .iter()
        .filter_map(|m| {
            let (_, changed, _): (String, HashMap<String, OwnedValue>, Vec<String>) =
                m.body().deserialize().ok()?;
            changed.get("Pwm").and_then(|v| u8::try_from(v).ok())
        })
        .collect()
}

#[test]
fn pwm_is_published_only_after_a_successful_write() {
    let sys = Sysfs::new();
    let env = Env::with_config(json!({
        "platform": {
            "type": "hardware",
            "power": { "type": "sim" },
            "hwmon_root": sys.root(),
            "fans": [
                { "name": "fan0", "hwmon": "aspeed_g6_pwm_tach", "tach": 1, "pwm": 1 },
                { "name": "fan1", "hwmon": "aspeed_g6_pwm_tach", "tach": 2, "pwm": 2 }
            ],
            "sensors": [ { "name": "inlet", "hwmon": "tmp75", "input": 1 } ]
        },
        "cooling": {
            "interval_ms": 100,
            "min_level": 20,
            "curves": [ { "sensor": "inlet", "points": [[25.0, 20], [35.0, 50], [45.0, 100]] } ]
        },
        "auth": { "reauthenticate": false }
    }));
    let z = env.cooling();
    let (fan0, fan1) = (env.fan("fan0"), env.fan("fan1"));

    // Cool: both fans written at the minimum level.
    for (f, file) in [(&fan0, "pwm1"), (&fan1, "pwm2")] {
        wait_value("Pwm 20", secs(5.0), || f.pwm().unwrap(), |p| *p == 20);
        assert_eq!(sys.read(1, file), duty(20), "{file}");
    }

    // pwm2 can no longer be written.
    let mut sigs = Signals::from_bmcd(
        env.conn(),
        Some(FAN1_PATH),
        "org.freedesktop.DBus.Properties",
        Some("PropertiesChanged"),
    );
    std::fs::remove_file(sys.path(1, "pwm2")).unwrap();
    std::fs::create_dir(sys.path(1, "pwm2")).unwrap();

    // Warm: 44 °C asks for 95 %. fan0 gets it; fan1's write fails.
    sys.write(0, "temp1_input", "44000\n");
    wait_value(
        "fan0 Pwm 95",
        secs(5.0),
        || fan0.pwm().unwrap(),
        |p| *p == 95,
    );
    assert_eq!(sys.read(1, "pwm1"), duty(95));
    assert_eq!(fan1.pwm().unwrap(), 20, "fan1 was never written at 95 %");
    // Later periods fail the same way: wait for two more (fan1's tach
    // reading goes through a whole period each time), Pwm stays.
    for rpm in [5100u32, 5200] {
        sys.write(1, "fan2_input", &format!("{rpm}\n"));
        wait_value(
            &format!("fan1 Rpm {rpm}"),
            secs(5.0),
            || fan1.rpm().unwrap(),
            |r| *r == rpm,
        );
        assert_eq!(fan1.pwm().unwrap(), 20);
    }
    assert_eq!(z.mode().unwrap(), CoolingMode::Auto);
    assert!(
        !pwm_signals(&mut sigs).contains(&95),
        "PropertiesChanged announced a Pwm that was never written: {:?}",
        pwm_signals(&mut sigs)
    );
    // The failure is logged when it starts, not every period.
    let log = env.daemon.log();
    assert_eq!(
        log.matches("fan1: cannot set PWM").count(),
        1,
        "log:\n{log}"
    );

    // Writable again: fan1 is written, then published.
    std::fs::remove_dir(sys.path(1, "pwm2")).unwrap();
    std::fs::write(sys.path(1, "pwm2"), "255\n").unwrap();
    sigs.wait_for("fan1 Pwm 95 announced", secs(5.0), |m| {
        let body: Option<(String, HashMap<String, OwnedValue>, Vec<String>)> =
            m.body().deserialize().ok();
        body.and_then(|(_, c, _)| c.get("Pwm").and_then(|v| u8::try_from(v).ok())) == Some(95)
    });
    assert_eq!(fan1.pwm().unwrap(), 95);
    assert_eq!(sys.read(1, "pwm2"), duty(95));
}
