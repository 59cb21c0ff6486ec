//! The fan control loop against the simulated platform.

use bmcd_tests::bmcd_api::{self, CoolingMode, Health};
use bmcd_tests::zbus::message::Message;
use bmcd_tests::{expect_error, no_options, secs, wait_value, Env, Signals};

const FANS: [&str; 4] = ["fan0", "fan1", "fan2", "fan3"];

fn events(env: &Env) -> Signals {
    Signals::from_bmcd(
        env.conn(),
        Some(bmcd_api::FANS_PATH),
        bmcd_api::COOLING_IFACE,
        Some("Event"),
    )
}

/// An `Event` from `source` whose message contains `text`.
fn event(source: &'static str, text: &'static str) -> impl FnMut(&Message) -> bool {
    move |m| {
        m.body()
            .deserialize::<(String, String, String)>()
            .is_ok_and(|(_, s, msg)| s == source && msg.contains(text))
    }
}

fn severity(m: &Message) -> String {
    m.body()
        .deserialize::<(String, String, String)>()
        .map(|b| b.0)
        .unwrap_or_default()
}

/// Every fan's Pwm equals `level`.
fn wait_all_fans(env: &Env, level: u8, what: &str) {
    for f in FANS {
        let p = env.fan(f);
        wait_value(
            &format!("{f} Pwm {level} ({what})"),
            secs(6.0),
            || p.pwm().unwrap(),
            |v| *v == level,
        );
    }
}

#[test]
fn auto_follows_temperature() {
    let env = Env::new();
    let z = env.cooling();
    let s = env.sim();
    let base = wait_value(
        "a settled AutoLevel near the minimum",
        secs(6.0),
        || z.auto_level().unwrap(),
        |l| *l <= 30,
    );
    let f0 = env.fan("fan0");
    let rpm_low = wait_value(
        "fan0 slowed down to the auto level",
        secs(6.0),
        || (f0.pwm().unwrap(), f0.rpm().unwrap()),
        |(p, r)| *p == base && *r < 6000,
    )
    .1;

    // A hot room: the inlet curve asks for more, up to 100 %.
    s.set_ambient(50.0, Default::default()).unwrap();
    wait_value(
        "AutoLevel up to 100",
        secs(10.0),
        || z.auto_level().unwrap(),
        |l| *l == 100,
    );
    wait_all_fans(&env, 100, "hot room");
    wait_value(
        "fan0 spins faster",
        secs(6.0),
        || f0.rpm().unwrap(),
        |r| *r > rpm_low * 2,
    );
    let t = z.temperatures().unwrap();
    assert!(t["inlet"] > 45.0, "{t:?}");

    // Cool again: back down to the minimum.
    s.set_ambient(20.0, Default::default()).unwrap();
    let low = wait_value(
        "AutoLevel back down",
        secs(10.0),
        || z.auto_level().unwrap(),
        |l| *l <= 25,
    );
    wait_all_fans(&env, low, "cool room");
    assert_eq!(z.mode().unwrap(), CoolingMode::Auto);
}

#[test]
fn manual_override_expires_back_to_auto() {
    let env = Env::new();
    let z = env.cooling();
    let mut ev = events(&env);
    z.set_manual(60, &[], 2, no_options()).unwrap();
    assert_eq!(z.mode().unwrap(), CoolingMode::Manual);
    wait_all_fans(&env, 60, "manual 60");
    env.wait_mode(CoolingMode::Auto, secs(5.0));
    assert_eq!(z.manual_level().unwrap(), 0);
    assert!(z.manual_fans().unwrap().is_empty());
    assert_eq!(z.manual_expires().unwrap(), 0);
    let auto = z.auto_level().unwrap();
    assert!(auto < 60, "{auto}");
    ev.wait_for(
        "override expired event",
        secs(3.0),
        event("cooling", "expired"),
    );
    wait_value(
        "fans back on the curve",
        secs(6.0),
        || (env.fan("fan0").pwm().unwrap(), z.auto_level().unwrap()),
        |(p, a)| p == a,
    );
}

#[test]
fn failed_fan_means_failsafe_until_it_recovers() {
    let env = Env::new();
    let z = env.cooling();
    let mut ev = events(&env);
    let failsafe = z.failsafe_level().unwrap();
    assert_eq!(failsafe, 100);
    let f2 = env.fan("fan2");

    env.sim()
        .set_fan_fault("fan2", true, Default::default())
        .unwrap();
    wait_value(
        "fan2 Failed",
        secs(8.0),
        || f2.health().unwrap(),
        |h| *h == Health::Failed,
    );
    env.wait_mode(CoolingMode::Failsafe, secs(3.0));
    let reason = z.failsafe_reason().unwrap();
    assert!(reason.contains("fan2"), "{reason}");
    wait_all_fans(&env, failsafe, "failsafe");
    wait_value("fan2 stopped", secs(6.0), || f2.rpm().unwrap(), |r| *r == 0);
    let m = ev.wait_for("fan2 failure event", secs(3.0), event("fan2", "fail"));
    assert_eq!(severity(&m), "Critical");
    let m = ev.wait_for("failsafe entered", secs(3.0), event("cooling", "failsafe"));
    assert_eq!(severity(&m), "Critical");
    // Manual control is refused in failsafe.
    let msg = expect_error(z.set_manual(30, &[], 0, no_options()), "NotAllowed");
    assert!(msg.contains("failsafe"), "{msg}");
    assert_eq!(z.mode().unwrap(), CoolingMode::Failsafe);

    // The fan spins again: recovery, then back to Auto.
    env.sim()
        .set_fan_fault("fan2", false, Default::default())
        .unwrap();
    wait_value(
        "fan2 Ok again",
        secs(8.0),
        || f2.health().unwrap(),
        |h| *h == Health::Ok,
    );
    env.wait_mode(CoolingMode::Auto, secs(5.0));
    assert_eq!(z.failsafe_reason().unwrap(), "");
    ev.wait_for("fan2 recovered", secs(3.0), event("fan2", "recovered"));
    ev.wait_for("failsafe cleared", secs(3.0), event("cooling", "cleared"));
    z.set_manual(30, &[], 0, no_options()).unwrap();
    assert_eq!(z.mode().unwrap(), CoolingMode::Manual);
}

#[test]
fn lost_sensor_means_failsafe() {
    let env = Env::new();
    let z = env.cooling();
    let mut ev = events(&env);
    env.sim()
        .set_sensor_fault("cpu0", true, Default::default())
        .unwrap();
    env.wait_mode(CoolingMode::Failsafe, secs(5.0));
    let reason = z.failsafe_reason().unwrap();
    assert!(reason.contains("cpu0"), "{reason}");
    let t = z.temperatures().unwrap();
    assert!(t["cpu0"].is_nan(), "{t:?}");
    assert!(t["inlet"].is_finite(), "{t:?}");
    wait_all_fans(&env, z.failsafe_level().unwrap(), "sensor lost");
    ev.wait_for("sensor lost event", secs(3.0), event("cpu0", "lost"));
    expect_error(z.set_manual(50, &["fan0"], 10, no_options()), "NotAllowed");

    env.sim()
        .set_sensor_fault("cpu0", false, Default::default())
        .unwrap();
    env.wait_mode(CoolingMode::Auto, secs(5.0));
    let t = z.temperatures().unwrap();
    assert!(t["cpu0"].is_finite(), "{t:?}");
}

#[test]
fn manual_override_while_a_fault_starts_yields_to_failsafe() {
    let env = Env::new();
    let z = env.cooling();
    z.set_manual(40, &["fan0", "fan1"], 0, no_options())
        .unwrap();
    wait_value(
        "fan1 at 40",
        secs(5.0),
        || env.fan("fan1").pwm().unwrap(),
        |p| *p == 40,
    );
    env.sim()
        .set_sensor_fault("inlet", true, Default::default())
        .unwrap();
    env.wait_mode(CoolingMode::Failsafe, secs(5.0));
    wait_all_fans(&env, 100, "failsafe over manual");
    env.sim()
        .set_sensor_fault("inlet", false, Default::default())
        .unwrap();
    // The override was not cancelled by the failsafe: it resumes.
    env.wait_mode(CoolingMode::Manual, secs(5.0));
    wait_value(
        "fan1 back at 40",
        secs(5.0),
        || env.fan("fan1").pwm().unwrap(),
        |p| *p == 40,
    );
    z.set_auto(no_options()).unwrap();
    env.wait_mode(CoolingMode::Auto, secs(3.0));
}
