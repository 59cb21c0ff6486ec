//! `Fan1.Pwm` is "the duty cycle last written": on the real bus, with the
//! hwmon backend on a fake sysfs tree whose `pwm2` cannot be written (a
//! directory stands where the file was: every write fails), fan1 keeps the
//! level last written, in its property and in its `PropertiesChanged`
//! signals, while fan0 follows the curve; once `pwm2` is writable again
//! fan1 follows too. The write failure is logged once, not every period.

use std::collections::HashMap;

use bmcd_tests::bmcd_api::CoolingMode;
use bmcd_tests::zbus::zvariant::OwnedValue;
use bmcd_tests::{duty, secs, wait_value, Env, FakeHwmon, Signals};

const FAN1_PATH: &str = "/org/bmcd/fans/fan1";

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
    // Two fans whose channels have no `pwmN_enable`; a period of 100 ms.
    let sys = FakeHwmon::without_pwm_enable(2);
    let mut cfg = sys.config();
    cfg["cooling"]["interval_ms"] = 100.into();
    let env = Env::with_config(cfg);
    let z = env.cooling();
    let (fan0, fan1) = (env.fan("fan0"), env.fan("fan1"));

    // Cool: both fans written at the minimum level.
    for (f, n) in [(&fan0, 1), (&fan1, 2)] {
        wait_value("Pwm 20", secs(5.0), || f.pwm().unwrap(), |p| *p == 20);
        assert_eq!(sys.pwm(n), duty(20), "pwm{n}");
    }

    // pwm2 can no longer be written.
    let mut sigs = Signals::from_bmcd(
        env.conn(),
        Some(FAN1_PATH),
        "org.freedesktop.DBus.Properties",
        Some("PropertiesChanged"),
    );
    sys.block_pwm(2);

    // Warm: 44 °C asks for 95 %. fan0 gets it; fan1's write fails.
    sys.set_temp("44000\n");
    wait_value(
        "fan0 Pwm 95",
        secs(5.0),
        || fan0.pwm().unwrap(),
        |p| *p == 95,
    );
    assert_eq!(sys.pwm(1), duty(95));
    assert_eq!(fan1.pwm().unwrap(), 20, "fan1 was never written at 95 %");
    // Later periods fail the same way: wait for two more (fan1's tach
    // reading goes through a whole period each time), Pwm stays.
    for rpm in [5100u32, 5200] {
        sys.set_tach(2, &format!("{rpm}\n"));
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
    sys.unblock_pwm(2);
    sigs.wait_for("fan1 Pwm 95 announced", secs(5.0), |m| {
        let body: Option<(String, HashMap<String, OwnedValue>, Vec<String>)> =
            m.body().deserialize().ok();
        body.and_then(|(_, c, _)| c.get("Pwm").and_then(|v| u8::try_from(v).ok())) == Some(95)
    });
    assert_eq!(fan1.pwm().unwrap(), 95);
    assert_eq!(sys.pwm(2), duty(95));
}
