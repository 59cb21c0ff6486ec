//! Bad input on every entry point: each refused with a named error, nothing
//! changed, and the daemon still serving afterwards.

use std::collections::HashMap;
use std::process::Command;

use bmcd_tests::bmcd_api::{self, CoolingMode, PowerOffMode, PowerState, RestorePolicy};
use bmcd_tests::zbus::zvariant::Value;
use bmcd_tests::{bmcd_bin, expect_error, no_options, run, secs, Env, RawError, TempDir};

const CH: &str = bmcd_api::CHASSIS_IFACE;
const CO: &str = bmcd_api::COOLING_IFACE;
const SI: &str = bmcd_api::SIMULATION_IFACE;

fn bogus_option() -> HashMap<&'static str, Value<'static>> {
    HashMap::from([("bogus", Value::from(1u32))])
}

#[track_caller]
fn named(r: Result<(), RawError>, short: &str) -> String {
    let e = r.expect_err("the call should fail");
    assert_eq!(e.name, format!("org.bmcd.Error.{short}"), "{e:?}");
    e.message
}

#[test]
fn out_of_range_and_unknown_names() {
    let env = Env::with(|cfg| {
        cfg["cooling"]["manual_timeout_max_s"] = 3600.into();
        cfg["chassis"]["graceful_off_timeout_max_s"] = 600.into();
        cfg["chassis"]["identify_max_s"] = 300.into();
    });
    let c = env.chassis();
    let z = env.cooling();
    let s = env.sim();

    // Unknown fans, sensors.
    let m = expect_error(
        z.set_manual(50, &["fan0", "nope"], 0, no_options()),
        "NotFound",
    );
    assert!(m.contains("nope") && m.contains("fan0"), "{m}");
    let long = "f".repeat(100_000);
    expect_error(
        z.set_manual(50, &[long.as_str()], 0, no_options()),
        "NotFound",
    );
    expect_error(z.set_manual(50, &[""], 0, no_options()), "NotFound");
    expect_error(s.set_fan_fault("", true, Default::default()), "NotFound");
    expect_error(
        s.set_sensor_fault(&long, true, Default::default()),
        "NotFound",
    );
    expect_error(
        s.set_fan_fault("../fan0", true, Default::default()),
        "NotFound",
    );

    // Out of range.
    let m = expect_error(z.set_manual(101, &[], 0, no_options()), "InvalidArgument");
    assert!(m.contains("101"), "{m}");
    expect_error(z.set_manual(255, &[], 0, no_options()), "InvalidArgument");
    let m = expect_error(z.set_manual(50, &[], 3601, no_options()), "InvalidArgument");
    assert!(m.contains("3600"), "{m}");
    expect_error(
        z.set_manual(50, &[], u32::MAX, no_options()),
        "InvalidArgument",
    );
    expect_error(
        c.power_off(PowerOffMode::Graceful, 601, no_options()),
        "InvalidArgument",
    );
    expect_error(
        c.power_off(PowerOffMode::Force, u32::MAX, no_options()),
        "InvalidArgument",
    );
    expect_error(c.set_identify(true, 301, no_options()), "InvalidArgument");
    expect_error(
        c.set_identify(true, u32::MAX, no_options()),
        "InvalidArgument",
    );
    expect_error(c.set_identify(false, 1, no_options()), "InvalidArgument");
    for t in [
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        60.5,
        -20.5,
        1e308,
    ] {
        expect_error(s.set_ambient(t, Default::default()), "InvalidArgument");
    }

    // Nothing changed.
    assert_eq!(z.mode().unwrap(), CoolingMode::Auto);
    assert_eq!(c.power_state().unwrap(), PowerState::Off);
    assert!(!c.identify_active().unwrap());
    assert_eq!(s.ambient().unwrap(), 25.0);
    env.assert_serving();
}

#[test]
fn bad_enum_words_and_unknown_options() {
    let env = Env::new();
    let chassis = bmcd_api::CHASSIS_PATH;
    let fans = bmcd_api::FANS_PATH;
    let none = HashMap::<&str, Value>::new();

    for word in [
        "Sometimes",
        "",
        "always",
        "AlwaysOn ",
        "AlwaysOnn",
        "\u{1F4A9}",
    ] {
        let m = named(
            env.raw_call(chassis, CH, "SetRestorePolicy", &(word, &none)),
            "InvalidArgument",
        );
        assert!(m.contains("AlwaysOn, AlwaysOff, Restore, None"), "{m}");
    }
    let m = named(
        env.raw_call(chassis, CH, "PowerOff", &("Gently", 0u32, &none)),
        "InvalidArgument",
    );
    assert!(m.contains("Graceful") && m.contains("Force"), "{m}");
    // Only the exact spelling is accepted (bmcctl maps any case for people).
    let m = named(
        env.raw_call(chassis, CH, "SetRestorePolicy", &("alwayson", &none)),
        "InvalidArgument",
    );
    assert!(m.contains("did you mean AlwaysOn?"), "{m}");
    env.raw_call(chassis, CH, "SetRestorePolicy", &("AlwaysOn", &none))
        .unwrap();
    assert_eq!(
        env.chassis().restore_policy().unwrap(),
        RestorePolicy::AlwaysOn
    );

    // An unknown option key is refused by every mutating method, before
    // anything happens.
    let o = bogus_option();
    let calls: Vec<(&str, &str, Result<(), RawError>)> = vec![
        (CH, "PowerOn", env.raw_call(chassis, CH, "PowerOn", &(&o,))),
        (
            CH,
            "PowerOff",
            env.raw_call(chassis, CH, "PowerOff", &("Force", 0u32, &o)),
        ),
        (
            CH,
            "PowerCycle",
            env.raw_call(chassis, CH, "PowerCycle", &(&o,)),
        ),
        (CH, "Reset", env.raw_call(chassis, CH, "Reset", &(&o,))),
        (
            CH,
            "SetIdentify",
            env.raw_call(chassis, CH, "SetIdentify", &(true, 0u32, &o)),
        ),
        (
            CH,
            "SetRestorePolicy",
            env.raw_call(chassis, CH, "SetRestorePolicy", &("Restore", &o)),
        ),
        (
            CO,
            "SetManual",
            env.raw_call(fans, CO, "SetManual", &(50u8, Vec::<&str>::new(), 0u32, &o)),
        ),
        (CO, "SetAuto", env.raw_call(fans, CO, "SetAuto", &(&o,))),
    ];
    for (iface, method, r) in calls {
        let m = named(r, "InvalidArgument");
        assert!(m.contains("bogus"), "{iface}.{method}: {m}");
    }
    let c = env.chassis();
    assert_eq!(c.power_state().unwrap(), PowerState::Off);
    assert!(!c.identify_active().unwrap());
    assert_eq!(c.restore_policy().unwrap(), RestorePolicy::AlwaysOn);
    assert_eq!(env.cooling().mode().unwrap(), CoolingMode::Auto);
    env.assert_serving();
}

#[test]
fn wrong_types_unknown_members_and_objects() {
    let env = Env::new();
    let chassis = bmcd_api::CHASSIS_PATH;
    // Wrong types and counts, through busctl and raw calls: an error each
    // (its name is checked in interop.rs), never a crash.
    for args in [
        &["SetIdentify", "su", "yes", "1"][..],
        &["SetIdentify", "bu", "true", "1"][..],
        &["PowerOff", "ua{sv}", "1", "0"][..],
        &["SetRestorePolicy", "ay", "3", "1", "2", "3"][..],
        &["PowerOn", "a{ss}", "1", "a", "b"][..],
        &["PowerOn"][..],
    ] {
        let mut full = vec!["call", "org.bmcd", chassis, CH];
        full.extend_from_slice(args);
        let r = env.busctl(&full);
        assert_ne!(r.code, 0, "{r}");
    }
    assert!(env
        .raw_call(bmcd_api::FANS_PATH, CO, "SetManual", &(500u32, "x"))
        .is_err());
    assert!(env
        .raw_call(bmcd_api::SIM_PATH, SI, "SetAmbient", &("hot",))
        .is_err());

    // Unknown members, interfaces and objects: the standard errors.
    let e = env.raw_call(chassis, CH, "Explode", &()).unwrap_err();
    assert_eq!(e.name, "org.freedesktop.DBus.Error.UnknownMethod", "{e:?}");
    let e = env
        .raw_call(chassis, "org.bmcd.Nope1", "PowerOn", &())
        .unwrap_err();
    assert_eq!(
        e.name, "org.freedesktop.DBus.Error.UnknownInterface",
        "{e:?}"
    );
    let e = env
        .raw_call("/org/bmcd/fans/nope", bmcd_api::FAN_IFACE, "Ping", &())
        .unwrap_err();
    assert_eq!(e.name, "org.freedesktop.DBus.Error.UnknownObject", "{e:?}");
    // Properties are read-only.
    let e = env
        .raw_call(
            chassis,
            "org.freedesktop.DBus.Properties",
            "Set",
            &(CH, "PowerState", Value::from("On")),
        )
        .unwrap_err();
    assert_eq!(
        e.name, "org.freedesktop.DBus.Error.PropertyReadOnly",
        "{e:?}"
    );
    assert_eq!(env.chassis().power_state().unwrap(), PowerState::Off);
    env.assert_serving();
}

type Tweak = Box<dyn Fn(&mut bmcd_tests::serde_json::Value)>;

#[test]
fn bad_configurations_are_refused_with_the_field_named() {
    let dir = TempDir::new("badcfg");
    let base = bmcd_tests::test_config(&dir.join("state"));
    let cases: Vec<(&str, Tweak)> = vec![
        ("cooling", Box::new(|v| v["cooling"]["bogus"] = 1.into())),
        (
            "cooling.interval_ms",
            Box::new(|v| v["cooling"]["interval_ms"] = 1.into()),
        ),
        (
            "nope",
            Box::new(|v| v["cooling"]["curves"][0]["sensor"] = "nope".into()),
        ),
        (
            "platform.fans",
            Box::new(|v| v["platform"]["fans"][1]["name"] = "fan0".into()),
        ),
        (
            "platform.fans",
            Box::new(|v| v["platform"]["fans"][0]["name"] = "fan 0".into()),
        ),
    ];
    for (i, (needle, tweak)) in cases.iter().enumerate() {
        let mut cfg = base.clone();
        tweak(&mut cfg);
        let path = dir.join(format!("bad{i}.json"));
        std::fs::write(&path, cfg.to_string()).unwrap();
        let r = run(
            Command::new(bmcd_bin())
                .arg("--config")
                .arg(&path)
                .arg("--bus")
                .arg("unix:path=/nonexistent/never-used")
                .arg("--log")
                .arg("stderr"),
            secs(10.0),
        );
        assert_eq!(r.code, 1, "{needle}:\n{r}");
        assert!(
            r.stderr.contains(needle),
            "error does not name {needle}:\n{r}"
        );
        assert!(
            r.stderr.contains(&path.display().to_string()),
            "error does not name the file:\n{r}"
        );
    }
    // Not JSON at all; a missing file.
    let path = dir.join("garbage.json");
    std::fs::write(&path, "{ this is not json").unwrap();
    for p in [path, dir.join("missing.json")] {
        let r = run(
            Command::new(bmcd_bin())
                .arg("--config")
                .arg(&p)
                .arg("--log")
                .arg("stderr"),
            secs(10.0),
        );
        assert_eq!(r.code, 1, "{r}");
        assert!(r.stderr.contains(&p.display().to_string()), "{r}");
    }
    // Bad command lines: usage, exit 2.
    for args in [&["--bogus"][..], &["--log", "loud"][..], &["--config"][..]] {
        let r = run(Command::new(bmcd_bin()).args(args), secs(10.0));
        assert_eq!(r.code, 2, "{r}");
    }
}

#[test]
fn a_corrupt_state_file_is_not_a_reason_to_fail() {
    let env = Env::new();
    env.chassis()
        .set_restore_policy(RestorePolicy::AlwaysOn, no_options())
        .unwrap();
    assert_eq!(env.daemon.stop(), 0);
    std::fs::write(env.daemon.state_dir().join("state.json"), b"\0\xff garbage").unwrap();
    env.daemon.start_again();
    // Defaults again, and a complaint in the log.
    assert_eq!(
        env.chassis().restore_policy().unwrap(),
        RestorePolicy::AlwaysOff
    );
    assert!(
        env.daemon.log().contains("corrupt"),
        "{}",
        env.daemon.log_tail(20)
    );
    env.assert_serving();
}
