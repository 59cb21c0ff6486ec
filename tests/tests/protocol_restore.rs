//! Protocol-level error names (what a raw D-Bus client sees when it gets
//! the call itself wrong) and the restore policy after a daemon crash in
//! the middle of a power transition.

use std::collections::HashMap;

use bmcd_tests::bmcd_api::{
    ChassisProxyBlocking, PowerOffMode, PowerState, RestorePolicy, Transition,
};
use bmcd_tests::zbus::zvariant::Value;
use bmcd_tests::{no_options, secs, wait_value, Daemon, Env};

const CHASSIS: &str = "/org/bmcd/chassis0";
const CH: &str = "org.bmcd.Chassis1";
const FANS: &str = "/org/bmcd/fans";
const COOLING: &str = "org.bmcd.Cooling1";
const PROPS: &str = "org.freedesktop.DBus.Properties";

const INVALID_ARGS: &str = "org.freedesktop.DBus.Error.InvalidArgs";
const READ_ONLY: &str = "org.freedesktop.DBus.Error.PropertyReadOnly";
const UNKNOWN_PROPERTY: &str = "org.freedesktop.DBus.Error.UnknownProperty";

/// A call whose arguments do not match the method's signature is refused
/// with `InvalidArgs`, naming both signatures, and changes nothing.
#[test]
fn wrong_signature_is_invalid_args() {
    let env = Env::new();
    let empty: HashMap<&str, Value> = HashMap::new();
    let cases: Vec<(&str, &str, Result<(), bmcd_tests::RawError>)> = vec![
        (
            "SetRestorePolicy(u)",
            "sa{sv}",
            env.raw_call(CHASSIS, CH, "SetRestorePolicy", &(3u32,)),
        ),
        (
            "PowerOff(us)",
            "sua{sv}",
            env.raw_call(CHASSIS, CH, "PowerOff", &(7u32, "Force")),
        ),
        (
            "PowerOn()",
            "a{sv}",
            env.raw_call(CHASSIS, CH, "PowerOn", &()),
        ),
        (
            "PowerOn(a{sv}s): one argument too many",
            "a{sv}",
            env.raw_call(CHASSIS, CH, "PowerOn", &(&empty, "extra")),
        ),
        (
            "SetManual(ua{sv})",
            "yasua{sv}",
            env.raw_call(FANS, COOLING, "SetManual", &(50u32, &empty)),
        ),
    ];
    for (what, want_sig, r) in &cases {
        let e = r.as_ref().expect_err(what);
        assert_eq!(e.name, INVALID_ARGS, "{what}: {e:?}");
        assert!(e.message.contains(want_sig), "{what}: {e:?}");
    }
    // The ObjectManager is ours too.
    let e = env
        .raw_call(
            "/org/bmcd",
            "org.freedesktop.DBus.ObjectManager",
            "GetManagedObjects",
            &(1u32,),
        )
        .unwrap_err();
    assert_eq!(e.name, INVALID_ARGS, "GetManagedObjects(u): {e:?}");
    // dbus-send (a{ss} where a{sv} is expected): the name as a shell user
    // sees it.
    let r = env.dbus_send(&[
        "--dest=org.bmcd",
        FANS,
        "org.bmcd.Cooling1.SetManual",
        "byte:50",
        "array:string:fan0",
        "uint32:0",
        "dict:string:string:",
    ]);
    assert_ne!(r.code, 0, "{r}");
    r.stderr_has(INVALID_ARGS);
    // Nothing ran.
    let c = env.chassis();
    assert_eq!(c.power_state().unwrap(), PowerState::Off);
    assert_eq!(c.pending_transition().unwrap(), Transition::None);
    assert_eq!(c.restore_policy().unwrap(), RestorePolicy::AlwaysOff);
    assert_eq!(
        env.cooling().mode().unwrap(),
        bmcd_tests::bmcd_api::CoolingMode::Auto
    );
    // A right call still works.
    c.power_on(no_options()).unwrap();
    env.wait_power(PowerState::On, secs(10.0));
    env.assert_serving();
}

/// Properties: `Set` of a read-only property is `PropertyReadOnly`, `Get`
/// and `Set` of an unknown one `UnknownProperty`; unknown methods and
/// interfaces keep their standard names.
#[test]
fn property_and_member_errors_have_standard_names() {
    let env = Env::new();
    let set = |iface: &str, prop: &str, v: Value<'static>| {
        env.raw_call(CHASSIS, PROPS, "Set", &(iface, prop, v))
    };
    let e = set(CH, "PowerState", Value::from("On")).unwrap_err();
    assert_eq!(e.name, READ_ONLY, "{e:?}");
    assert!(e.message.contains("PowerState"), "{e:?}");
    // Whatever the value's type.
    let e = set(CH, "RestorePolicy", Value::from(7u32)).unwrap_err();
    assert_eq!(e.name, READ_ONLY, "{e:?}");
    let e = env
        .raw_call(
            "/org/bmcd/fans/fan0",
            PROPS,
            "Set",
            &("org.bmcd.Fan1", "Pwm", Value::from(10u8)),
        )
        .unwrap_err();
    assert_eq!(e.name, READ_ONLY, "{e:?}");
    // dbus-send shows the name to a shell user.
    let r = env.dbus_send(&[
        "--dest=org.bmcd",
        CHASSIS,
        "org.freedesktop.DBus.Properties.Set",
        "string:org.bmcd.Chassis1",
        "string:IdentifyActive",
        "variant:boolean:true",
    ]);
    assert_ne!(r.code, 0, "{r}");
    r.stderr_has(READ_ONLY);

    let e = set(CH, "NoSuchProperty", Value::from("x")).unwrap_err();
    assert_eq!(e.name, UNKNOWN_PROPERTY, "{e:?}");
    let e = env
        .raw_call(CHASSIS, PROPS, "Get", &(CH, "NoSuchProperty"))
        .unwrap_err();
    assert_eq!(e.name, UNKNOWN_PROPERTY, "{e:?}");

    let e = env.raw_call(CHASSIS, CH, "Explode", &()).unwrap_err();
    assert_eq!(e.name, "org.freedesktop.DBus.Error.UnknownMethod", "{e:?}");
    // An unknown method stays unknown whatever its arguments.
    let e = env
        .raw_call(CHASSIS, CH, "Explode", &(1u32, "x"))
        .unwrap_err();
    assert_eq!(e.name, "org.freedesktop.DBus.Error.UnknownMethod", "{e:?}");
    let e = env
        .raw_call(CHASSIS, "org.bmcd.Nope1", "PowerOn", &())
        .unwrap_err();
    assert_eq!(
        e.name, "org.freedesktop.DBus.Error.UnknownInterface",
        "{e:?}"
    );
    let e = set("org.bmcd.Nope1", "PowerState", Value::from("On")).unwrap_err();
    assert_eq!(
        e.name, "org.freedesktop.DBus.Error.UnknownInterface",
        "{e:?}"
    );

    // Nothing changed; reading still works.
    let c = env.chassis();
    assert_eq!(c.power_state().unwrap(), PowerState::Off);
    assert!(!c.identify_active().unwrap());
    assert_eq!(c.restore_policy().unwrap(), RestorePolicy::AlwaysOff);
    env.assert_serving();
}

/// The log of the daemon's current run only.
fn current_run_log(d: &Daemon) -> String {
    let log = d.log();
    match log.rfind("===== harness: starting bmcd =====") {
        Some(i) => log.get(i..).unwrap_or_default().to_owned(),
        None => log,
    }
}

/// Wait for the restore decision of the current run and return whether
/// it powered the host on.
fn restore_decision(d: &Daemon) -> bool {
    let line = wait_value(
        "the restore policy decision in the log",
        secs(20.0),
        || {
            current_run_log(d)
                .lines()
                .find(|l| l.contains("restore policy Restore: host"))
                .map(str::to_owned)
        },
        Option::is_some,
    )
    .unwrap_or_default();
    line.contains("powered on")
}

/// Set `Restore`, run `begin` (which starts a transition), wait until the
/// chassis shows `under_way` (`what` names it), then kill -9 and start the
/// daemon again: its restore decision must power the host on or not as
/// `want_on` says.
fn kill_during_transition(
    env: &Env,
    begin: impl FnOnce(&ChassisProxyBlocking<'static>),
    what: &str,
    under_way: (PowerState, Transition),
    want_on: bool,
) {
    let c = env.chassis();
    c.set_restore_policy(RestorePolicy::Restore, no_options())
        .unwrap();
    begin(&c);
    wait_value(
        what,
        secs(10.0),
        || (c.power_state().ok(), c.pending_transition().ok()),
        |s| *s == (Some(under_way.0), Some(under_way.1)),
    );
    env.daemon.kill9();
    env.daemon.start_again();
    assert_eq!(
        restore_decision(&env.daemon),
        want_on,
        "kill -9 during {what}: Restore should have {} the host; log:\n{}",
        if want_on { "powered on" } else { "left off" },
        env.daemon.log_tail(30)
    );
}

/// `Restore`, then kill -9 while a graceful PowerOff is under way: the
/// operator asked for off, so the restarted daemon leaves the host off
/// (before the fix it followed the last observed state, On).
#[test]
fn kill_during_power_off_restores_off() {
    let env = Env::new();
    let begin = |c: &ChassisProxyBlocking<'static>| {
        c.power_on(no_options()).unwrap();
        env.wait_power(PowerState::On, secs(10.0));
        // The host OS ignores the button: the graceful off waits its whole
        // timeout, so the transition is surely still running at the kill.
        env.sim()
            .set_host_responsive(false, Default::default())
            .unwrap();
        c.power_off(PowerOffMode::Graceful, 600, no_options())
            .unwrap();
    };
    let under_way = (PowerState::TransitioningToOff, Transition::Off);
    kill_during_transition(&env, begin, "a power off under way", under_way, false);
    let c = env.chassis();
    assert_eq!(c.pending_transition().unwrap(), Transition::None);
    assert_eq!(c.power_state().unwrap(), PowerState::Off);
}

/// `Restore`, then kill -9 while a PowerOn is under way (the simulated
/// board takes long to raise power-good): the host comes back on.
#[test]
fn kill_during_power_on_restores_on() {
    let env = Env::with(|cfg| {
        cfg["platform"]["power_on_delay_ms"] = 20_000.into();
        cfg["chassis"]["power_on_timeout_ms"] = 60_000.into();
    });
    let begin = |c: &ChassisProxyBlocking<'static>| {
        c.power_on(no_options()).unwrap();
    };
    let under_way = (PowerState::TransitioningToOn, Transition::On);
    kill_during_transition(&env, begin, "a power on under way", under_way, true);
    let c = env.chassis();
    wait_value(
        "the restored power on",
        secs(10.0),
        || c.pending_transition().ok(),
        |t| *t == Some(Transition::On),
    );
}

/// `Restore`, then kill -9 in the off phase of a PowerCycle: a cycle ends
/// on, so the host comes back on (before the fix the off phase was
/// persisted as the host's state).
#[test]
fn kill_during_power_cycle_restores_on() {
    let env = Env::with(|cfg| cfg["chassis"]["cycle_off_ms"] = 30_000.into());
    let begin = |c: &ChassisProxyBlocking<'static>| {
        c.power_on(no_options()).unwrap();
        env.wait_power(PowerState::On, secs(10.0));
        c.power_cycle(no_options()).unwrap();
    };
    let under_way = (PowerState::Off, Transition::Cycle);
    kill_during_transition(
        &env,
        begin,
        "the off phase of a power cycle",
        under_way,
        true,
    );
}

/// The whole board loses power (BMC included) while the host is on and
/// idle: `Restore` powers it on again.
#[test]
fn power_loss_while_on_and_idle_restores_on() {
    let env = Env::new();
    let c = env.chassis();
    c.set_restore_policy(RestorePolicy::Restore, no_options())
        .unwrap();
    c.power_on(no_options()).unwrap();
    env.wait_power(PowerState::On, secs(10.0));
    env.daemon.kill9();
    env.daemon.start_again();
    assert!(
        restore_decision(&env.daemon),
        "Restore left the host off after a power loss while on; log:\n{}",
        env.daemon.log_tail(30)
    );
    env.wait_power(PowerState::On, secs(10.0));
}
