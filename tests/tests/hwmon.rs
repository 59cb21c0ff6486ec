//! The hwmon backend through the whole daemon: a "hardware" platform whose
//! `hwmon_root` is a fake sysfs tree ([`FakeHwmon`]: an AST2600-like
//! PWM/tach controller with four fans and a tmp75), with the simulator's power sequencing (GPIO
//! cannot work in a test).

use bmcd_tests::bmcd_api::{CoolingMode, Health, PowerState};
use bmcd_tests::serde_json::{json, Value};
use bmcd_tests::{duty, no_options, secs, wait_value, Env, FakeHwmon, TempDir};

/// The fake tree's configuration, with quick chassis timings.
fn hardware_config(sys: &FakeHwmon) -> Value {
    let mut cfg = sys.config();
    cfg["chassis"] = json!({ "button_press_ms": 50, "reset_pulse_ms": 50, "cycle_off_ms": 200,
                             "power_on_timeout_ms": 5000, "force_off_timeout_ms": 5000,
                             "graceful_off_timeout_s": 10 });
    cfg
}

fn wait_pwm_files(sys: &FakeHwmon, want: &str, what: &str) {
    for n in 1..=sys.fans() {
        wait_value(
            &format!("pwm{n} = {want} ({what})"),
            secs(6.0),
            || sys.pwm(n),
            |v| v == want,
        );
    }
}

#[test]
fn daemon_drives_hwmon_fans_and_reads_hwmon_sensors() {
    let sys = FakeHwmon::new(4);
    let env = Env::with_config(hardware_config(&sys));
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
    for n in 1..=sys.fans() {
        wait_value(
            &format!("pwm{n}_enable = 1"),
            secs(5.0),
            || sys.pwm_enable(n),
            |v| v == "1",
        );
    }
    wait_pwm_files(&sys, &duty(20), "cool: minimum level");
    assert_eq!(f1.pwm().unwrap(), 20);

    // Warmer: 44 °C asks for 95 %.
    sys.set_temp("44000\n");
    wait_value(
        "AutoLevel 95",
        secs(5.0),
        || z.auto_level().unwrap(),
        |l| *l == 95,
    );
    wait_pwm_files(&sys, &duty(95), "warm");

    // Manual override lands in the files too.
    z.set_manual(60, &["fan3"], 0, no_options()).unwrap();
    wait_value("pwm4 = 60 %", secs(5.0), || sys.pwm(4), |v| *v == duty(60));
    assert_eq!(sys.pwm(1), duty(95));
    z.set_auto(no_options()).unwrap();

    // A stalled fan (0 RPM while driven): failsafe, every channel at full.
    sys.set_tach(3, "0\n");
    let f2 = env.fan("fan2");
    wait_value(
        "fan2 Failed",
        secs(5.0),
        || f2.health().unwrap(),
        |h| *h == Health::Failed,
    );
    env.wait_mode(CoolingMode::Failsafe, secs(3.0));
    wait_pwm_files(&sys, "255", "failsafe");
    sys.set_tach(3, "5030\n");
    env.wait_mode(CoolingMode::Auto, secs(5.0));
    wait_pwm_files(&sys, &duty(95), "recovered");

    // An unreadable sensor: failsafe until it reads again.
    sys.set_temp("garbage\n");
    env.wait_mode(CoolingMode::Failsafe, secs(5.0));
    assert!(z.failsafe_reason().unwrap().contains("inlet"));
    sys.set_temp("30000\n");
    env.wait_mode(CoolingMode::Auto, secs(5.0));

    // A fan that disappears: not present, failsafe.
    sys.remove_tach(4);
    let f3 = env.fan("fan3");
    wait_value(
        "fan3 not present",
        secs(5.0),
        || f3.present().unwrap(),
        |p| !p,
    );
    env.wait_mode(CoolingMode::Failsafe, secs(5.0));
    sys.set_tach(4, "5040\n");
    env.wait_mode(CoolingMode::Auto, secs(5.0));

    // Power control is the simulator's.
    env.chassis().power_on(no_options()).unwrap();
    env.wait_power(PowerState::On, secs(5.0));

    // On SIGTERM the fans are handed back: full duty, automatic mode.
    assert_eq!(env.daemon.stop(), 0);
    for n in 1..=sys.fans() {
        assert_eq!(sys.pwm(n), "255", "pwm{n}");
        assert_eq!(sys.pwm_enable(n), "2", "pwm{n}_enable");
    }
}

#[test]
fn a_missing_hwmon_device_stops_the_start_with_a_clear_error() {
    let sys = FakeHwmon::new(4);
    let mut cfg = hardware_config(&sys);
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
