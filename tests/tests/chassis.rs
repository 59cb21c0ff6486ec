//! Chassis behaviour over time: graceful and forced power off, the restore
//! policy at start, the identify timeout, and persistence across crashes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bmcd_tests::bmcd_api::{self, PowerOffMode, PowerState, RestorePolicy, Transition};
use bmcd_tests::zbus::zvariant::OwnedValue;
use bmcd_tests::{assert_for, no_options, now_ms, secs, wait_until, wait_value, Env, Signals};

#[test]
fn graceful_off_of_an_unresponsive_host_falls_back_to_forced() {
    let env = Env::new();
    let c = env.chassis();
    c.power_on(no_options()).unwrap();
    env.wait_power(PowerState::On, secs(5.0));
    env.sim()
        .set_host_responsive(false, Default::default())
        .unwrap();

    let start = Instant::now();
    c.power_off(PowerOffMode::Graceful, 1, no_options())
        .unwrap();
    assert_eq!(c.pending_transition().unwrap(), Transition::Off);
    wait_value(
        "TransitioningToOff",
        secs(2.0),
        || c.power_state().unwrap(),
        |p| *p == PowerState::TransitioningToOff,
    );
    env.wait_power(PowerState::Off, secs(8.0));
    let took = start.elapsed();
    // 1 s of graceful wait, then the button held for 0.8 s.
    assert!(took >= secs(1.5), "forced off too early: {took:?}");
    wait_until("the fallback is logged", secs(2.0), || {
        env.daemon.log().contains("forcing power off")
    });
}

#[test]
fn cycle_goes_through_off_and_back_on() {
    let env = Env::new();
    let c = env.chassis();
    c.power_on(no_options()).unwrap();
    env.wait_power(PowerState::On, secs(5.0));
    let mut sigs = Signals::from_bmcd(
        env.conn(),
        Some(bmcd_api::CHASSIS_PATH),
        "org.freedesktop.DBus.Properties",
        Some("PropertiesChanged"),
    );
    c.power_cycle(no_options()).unwrap();
    env.wait_power(PowerState::On, secs(8.0));
    // Every PowerState the change signals announced, in order.
    let mut states = Vec::new();
    let want = ["TransitioningToOff", "Off", "TransitioningToOn", "On"];
    sigs.wait_for("PowerState On after the cycle", secs(3.0), |m| {
        let Ok((_, changed, _)) = m
            .body()
            .deserialize::<(String, HashMap<String, OwnedValue>, Vec<String>)>()
        else {
            return false;
        };
        if let Some(s) = changed
            .get("PowerState")
            .and_then(|v| String::try_from(v.try_clone().ok()?).ok())
        {
            states.push(s);
        }
        states.len() >= want.len()
    });
    assert_eq!(states, want);
}

#[test]
fn always_on_powers_the_host_on_at_start() {
    let env = Env::with(|cfg| cfg["chassis"]["default_restore_policy"] = "AlwaysOn".into());
    assert_eq!(
        env.chassis().restore_policy().unwrap(),
        RestorePolicy::AlwaysOn
    );
    env.wait_power(PowerState::On, secs(5.0));
    assert!(env.daemon.log().contains("restore policy AlwaysOn"));
}

#[test]
fn restore_remembers_the_last_request() {
    let env = Env::new();
    let c = env.chassis();
    c.set_restore_policy(RestorePolicy::Restore, no_options())
        .unwrap();
    c.power_on(no_options()).unwrap();
    env.wait_power(PowerState::On, secs(5.0));

    // A new daemon starts with the (simulated) host off: Restore powers it
    // on because it was on.
    env.daemon.restart();
    assert_eq!(c.restore_policy().unwrap(), RestorePolicy::Restore);
    env.wait_power(PowerState::On, secs(5.0));

    // Off, restart: it stays off.
    c.power_off(PowerOffMode::Force, 0, no_options()).unwrap();
    env.wait_power(PowerState::Off, secs(5.0));
    env.daemon.restart();
    wait_until("Restore leaves the host off", secs(5.0), || {
        env.daemon
            .log()
            .contains("restore policy Restore: host left off")
    });
    assert_eq!(c.power_state().unwrap(), PowerState::Off);
    assert_eq!(c.pending_transition().unwrap(), Transition::None);
}

#[test]
fn identify_times_out_and_newer_requests_win() {
    let env = Env::new();
    let c = env.chassis();
    c.set_identify(true, 1, no_options()).unwrap();
    assert!(c.identify_active().unwrap());
    let exp = c.identify_expires().unwrap();
    assert!(exp > now_ms() && exp <= now_ms() + 1_500, "{exp}");
    wait_value(
        "identify off by itself",
        secs(4.0),
        || c.identify_active().unwrap(),
        |a| !a,
    );
    assert_eq!(c.identify_expires().unwrap(), 0);

    // A newer request without a limit is not cut short by the older timer.
    c.set_identify(true, 1, no_options()).unwrap();
    c.set_identify(true, 0, no_options()).unwrap();
    assert_for("identify stays on past the old timer", secs(1.6), || {
        c.identify_active().unwrap()
    });
    c.set_identify(false, 0, no_options()).unwrap();
    assert!(!c.identify_active().unwrap());
}

#[test]
fn kill_9_mid_way_keeps_the_state_file_intact() {
    let env = Env::new();
    // A transition under way when the daemon dies.
    env.chassis().power_on(no_options()).unwrap();

    // Hammer the policy from another connection while the daemon is killed.
    let policies = [
        RestorePolicy::AlwaysOn,
        RestorePolicy::Restore,
        RestorePolicy::None,
        RestorePolicy::AlwaysOff,
    ];
    let acked = Arc::new(AtomicUsize::new(0));
    let conn = env.bus.connect();
    let a = acked.clone();
    let hammer = std::thread::spawn(move || {
        let c = bmcd_api::ChassisProxyBlocking::new(&conn).unwrap();
        let mut n = 0usize;
        while c.set_restore_policy(policies[n % 4], no_options()).is_ok() {
            n += 1;
            a.store(n, Ordering::SeqCst);
        }
    });
    wait_until("20 policy writes", secs(10.0), || {
        acked.load(Ordering::SeqCst) >= 20
    });
    env.daemon.kill9();
    hammer.join().unwrap();
    let n = acked.load(Ordering::SeqCst);

    // The file is whole JSON and holds the last acknowledged value, or the
    // one in flight when the daemon died.
    let path = env.daemon.state_dir().join("state.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let v: bmcd_tests::serde_json::Value = bmcd_tests::serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is torn ({e}):\n{text}", path.display()));
    let on_disk: RestorePolicy = v["restore_policy"].as_str().unwrap().parse().unwrap();
    let last = policies[(n - 1) % 4];
    let next = policies[n % 4];
    assert!(
        on_disk == last || on_disk == next,
        "{on_disk} on disk, last acknowledged {last}"
    );

    env.daemon.start_again();
    assert_eq!(env.chassis().restore_policy().unwrap(), on_disk);
    env.assert_serving();
}
