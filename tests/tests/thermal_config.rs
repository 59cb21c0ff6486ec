//! The thermal guard (a critical temperature ends a manual override and
//! drives the fans to 100 %) and the configuration file's limits (bounded
//! reads, unsafe values refused with the fields named), on the real bmcd.

use std::process::Command;

use bmcd_tests::bmcd_api::{self, CoolingMode, PowerState};
use bmcd_tests::zbus::message::Message;
use bmcd_tests::{
    bmcd_bin, expect_error, no_options, run, secs, test_config, wait_value, Env, Run, Signals,
    TempDir,
};

const FANS: [&str; 4] = ["fan0", "fan1", "fan2", "fan3"];

/// The (severity, source, message) of a `Cooling1.Event`.
fn body(m: &Message) -> (String, String, String) {
    m.body()
        .deserialize::<(String, String, String)>()
        .unwrap_or_default()
}

#[test]
fn critical_temperature_ends_manual_override_and_raises_the_fans() {
    // cpu0 does not profit from airflow here, so it stays hot at any fan
    // level until the room cools: the guard's state is deterministic.
    let env = Env::with(|v| {
        for s in v["platform"]["sensors"].as_array_mut().expect("sensors") {
            if s["name"] == "cpu0" {
                s["cooling"] = 0.0.into();
            }
        }
    });
    let z = env.cooling();
    let mut ev = Signals::from_bmcd(
        env.conn(),
        Some(bmcd_api::FANS_PATH),
        bmcd_api::COOLING_IFACE,
        Some("Event"),
    );
    // A cool room first: cpu0 settles near 15 + 60 °C, below its limit.
    env.sim().set_ambient(15.0, Default::default()).unwrap();
    env.chassis().power_on(no_options()).unwrap();
    env.wait_power(PowerState::On, secs(10.0));
    z.set_manual(0, &[], 0, no_options()).unwrap();
    assert_eq!(z.mode().unwrap(), CoolingMode::Manual);

    // A warm room: cpu0 heads for 35 + 60 °C, above its critical 83 °C.
    env.sim().set_ambient(35.0, Default::default()).unwrap();
    let m = ev.wait_for("a Critical event from cpu0", secs(20.0), |m| {
        let (sev, src, msg) = body(m);
        sev == "Critical" && src == "cpu0" && msg.contains("critical")
    });
    let (_, _, msg) = body(&m);
    assert!(
        msg.contains("83.0 °C") && msg.contains("manual override ended"),
        "{msg}"
    );
    env.wait_mode(CoolingMode::Failsafe, secs(5.0));
    assert_eq!(z.manual_level().unwrap(), 0);
    assert!(z.manual_fans().unwrap().is_empty());
    let reason = z.failsafe_reason().unwrap();
    assert!(
        reason.contains("cpu0") && reason.contains("critical"),
        "{reason}"
    );
    for f in FANS {
        let p = env.fan(f);
        wait_value(
            &format!("{f} at 100 %"),
            secs(6.0),
            || p.pwm().unwrap(),
            |v| *v == 100,
        );
    }
    assert_eq!(z.failsafe_level().unwrap(), 100);
    // A new override is refused while cpu0 is above its limit.
    let msg = expect_error(z.set_manual(0, &[], 0, no_options()), "NotAllowed");
    assert!(msg.contains("cpu0"), "{msg}");
    let log = env.daemon.log();
    assert!(
        log.contains("cpu0") && log.contains("manual override ended"),
        "{}",
        env.daemon.log_tail(30)
    );

    // The room cools: cpu0 falls below its limit, back to Auto, and an
    // override is accepted again.
    env.sim().set_ambient(15.0, Default::default()).unwrap();
    env.wait_mode(CoolingMode::Auto, secs(20.0));
    ev.wait_for("cpu0 back below critical", secs(5.0), |m| {
        let (sev, src, msg) = body(m);
        sev == "Info" && src == "cpu0" && msg.contains("below")
    });
    z.set_manual(30, &[], 0, no_options()).unwrap();
    assert_eq!(z.mode().unwrap(), CoolingMode::Manual);
}

/// Run bmcd with `--config path` under a 1 GiB address-space limit (so a
/// daemon that reads without bound fails fast instead of eating the
/// machine's memory), with a deadline.
fn bmcd_with_config(path: &str) -> Run {
    run(
        Command::new("sh")
            .arg("-c")
            .arg("ulimit -v 1048576; exec \"$0\" --config \"$1\" --bus unix:path=/nonexistent/never-used --log stderr")
            .arg(bmcd_bin())
            .arg(path),
        secs(30.0),
    )
}

#[test]
fn config_must_be_a_regular_file_under_1_mib() {
    let r = bmcd_with_config("/dev/zero");
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stderr.contains("/dev/zero: is not a regular file"), "{r}");

    let dir = TempDir::new("cfgfifo");
    let fifo = dir.join("fifo.json");
    let st = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(st.success());
    let r = bmcd_with_config(&fifo.display().to_string());
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stderr.contains("is not a regular file"), "{r}");

    // A valid document padded past the cap.
    let big = dir.join("big.json");
    let mut text = test_config(&dir.join("state")).to_string();
    text.push_str(&" ".repeat(1 << 20));
    std::fs::write(&big, text).unwrap();
    let r = bmcd_with_config(&big.display().to_string());
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stderr.contains("is larger than 1 MiB"), "{r}");
}

type Tweak = Box<dyn Fn(&mut bmcd_tests::serde_json::Value)>;

#[test]
fn unsafe_and_misplaced_config_values_are_refused_with_the_fields_named() {
    let dir = TempDir::new("unsafecfg");
    let base = test_config(&dir.join("state"));
    let cases: Vec<(&str, Tweak)> = vec![
        (
            "cooling.failsafe_level: 0 is below cooling.min_level (20)",
            Box::new(|v| v["cooling"]["failsafe_level"] = 0.into()),
        ),
        (
            "cooling.failsafe_level: 15 is below cooling.min_level (20)",
            Box::new(|v| v["cooling"]["failsafe_level"] = 15.into()),
        ),
        (
            "cooling.failsafe_level: 30 is below cooling.fan_fail_min_level (40)",
            Box::new(|v| {
                v["cooling"]["failsafe_level"] = 30.into();
                v["cooling"]["fan_fail_min_level"] = 40.into();
            }),
        ),
        (
            "chassis.reset_pulse_ms: 0 is outside",
            Box::new(|v| v["chassis"]["reset_pulse_ms"] = 0.into()),
        ),
        (
            "chassis.identify_max_s: 0 is outside",
            Box::new(|v| v["chassis"]["identify_max_s"] = 0.into()),
        ),
        (
            "chassis.power_on_timeout_ms: 18446744073709551615 is outside",
            Box::new(|v| v["chassis"]["power_on_timeout_ms"] = u64::MAX.into()),
        ),
        (
            "cooling.curves[1].critical_c",
            Box::new(|v| v["cooling"]["curves"][1]["critical_c"] = 30.0.into()),
        ),
        (
            "platform.fans[2].max_rpm: invalid type: string \"x\", expected u32",
            Box::new(|v| v["platform"]["fans"][2]["max_rpm"] = "x".into()),
        ),
        (
            "platform.sensors[1].heat_c: invalid type",
            Box::new(|v| v["platform"]["sensors"][1]["heat_c"] = "hot".into()),
        ),
    ];
    for (i, (needle, tweak)) in cases.iter().enumerate() {
        let mut cfg = base.clone();
        tweak(&mut cfg);
        let path = dir.join(format!("bad{i}.json"));
        std::fs::write(&path, cfg.to_string()).unwrap();
        let r = bmcd_with_config(&path.display().to_string());
        assert_eq!(r.code, 1, "{needle}:\n{r}");
        assert!(r.stderr.contains(needle), "error lacks {needle:?}:\n{r}");
        assert!(
            r.stderr.contains(&path.display().to_string()),
            "error does not name the file:\n{r}"
        );
    }
}
