//! The contract of `bmcd-api`, through its blocking proxies: every method
//! and every property of every interface, the object tree, and the signals.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::mpsc;
use std::time::Duration;

use bmcd_tests::bmcd_api::{
    self, CoolingMode, CoolingProxyBlocking, Health, PowerOffMode, PowerState, RestorePolicy,
    Severity, Transition,
};
use bmcd_tests::zbus::zvariant::OwnedValue;
use bmcd_tests::{expect_error, no_options, now_ms, secs, wait_value, Env, Signals};

const FANS: [&str; 4] = ["fan0", "fan1", "fan2", "fan3"];

/// A Unix-epoch-ms timestamp `expected_in` from now (± slack).
#[track_caller]
fn assert_deadline(ms: u64, expected_in: Duration) {
    let want = now_ms() + expected_in.as_millis() as u64;
    let slack = 3_000;
    assert!(
        ms + slack >= want && ms <= want + slack,
        "deadline {ms} is not about {want} (now {})",
        now_ms()
    );
}

#[test]
fn chassis_every_method_and_property() {
    let env = Env::new();
    let c = env.chassis();

    // Initial properties.
    assert_eq!(c.power_state().unwrap(), PowerState::Off);
    assert_eq!(c.pending_transition().unwrap(), Transition::None);
    let t0 = c.last_state_change_time().unwrap();
    assert!(t0 <= now_ms() && t0 + 60_000 > now_ms(), "{t0}");
    assert_eq!(c.restore_policy().unwrap(), RestorePolicy::AlwaysOff);
    assert!(!c.identify_active().unwrap());
    assert_eq!(c.identify_expires().unwrap(), 0);

    // PowerOn: accepted at once, pending until power-good.
    c.power_on(no_options()).unwrap();
    let pending = c.pending_transition().unwrap();
    let state = c.power_state().unwrap();
    assert!(
        pending == Transition::On || state == PowerState::On,
        "right after PowerOn: {pending} / {state}"
    );
    env.wait_power(PowerState::On, secs(5.0));
    let t1 = c.last_state_change_time().unwrap();
    assert!(t1 > t0, "LastStateChangeTime did not move: {t0} -> {t1}");
    // On while on: a no-op.
    c.power_on(no_options()).unwrap();
    env.wait_power(PowerState::On, secs(5.0));

    // Reset keeps the host on.
    c.reset(no_options()).unwrap();
    env.wait_power(PowerState::On, secs(5.0));

    // Cycle: off, then on again.
    c.power_cycle(no_options()).unwrap();
    assert_eq!(c.pending_transition().unwrap(), Transition::Cycle);
    // A second request meanwhile is Busy.
    expect_error(c.power_on(no_options()), "Busy");
    env.wait_power(PowerState::On, secs(8.0));

    // Forced off.
    c.power_off(PowerOffMode::Force, 0, no_options()).unwrap();
    env.wait_power(PowerState::Off, secs(5.0));
    // Off while off: a no-op; reset and cycle are refused.
    c.power_off(PowerOffMode::Force, 0, no_options()).unwrap();
    env.wait_power(PowerState::Off, secs(5.0));
    let m = expect_error(c.reset(no_options()), "NotAllowed");
    assert!(m.contains("off"), "{m}");
    expect_error(c.power_cycle(no_options()), "NotAllowed");
    assert_eq!(c.pending_transition().unwrap(), Transition::None);

    // Graceful off with a cooperative host.
    c.power_on(no_options()).unwrap();
    env.wait_power(PowerState::On, secs(5.0));
    c.power_off(PowerOffMode::Graceful, 5, no_options())
        .unwrap();
    env.wait_power(PowerState::Off, secs(8.0));

    // Identify: until turned off, then for a while, then off.
    c.set_identify(true, 0, no_options()).unwrap();
    assert!(c.identify_active().unwrap());
    assert_eq!(c.identify_expires().unwrap(), 0);
    c.set_identify(true, 30, no_options()).unwrap();
    assert!(c.identify_active().unwrap());
    assert_deadline(c.identify_expires().unwrap(), Duration::from_secs(30));
    c.set_identify(false, 0, no_options()).unwrap();
    assert!(!c.identify_active().unwrap());
    assert_eq!(c.identify_expires().unwrap(), 0);
    expect_error(c.set_identify(false, 5, no_options()), "InvalidArgument");

    // Every restore policy round-trips.
    for p in RestorePolicy::ALL {
        c.set_restore_policy(*p, no_options()).unwrap();
        assert_eq!(c.restore_policy().unwrap(), *p);
    }
    env.assert_serving();
}

#[test]
fn fans_and_cooling_every_method_and_property() {
    let env = Env::new();
    assert_eq!(env.fan_names(), FANS);
    for name in FANS {
        let f = env.fan(name);
        assert_eq!(f.name().unwrap(), name);
        assert!(f.present().unwrap(), "{name}");
        assert_eq!(f.health().unwrap(), Health::Ok, "{name}");
        assert!(f.pwm().unwrap() <= 100, "{name}");
        wait_value(
            &format!("{name} Rpm > 0"),
            secs(5.0),
            || f.rpm().unwrap(),
            |r| *r > 0,
        );
    }

    let z = env.cooling();
    assert_eq!(z.mode().unwrap(), CoolingMode::Auto);
    assert_eq!(z.manual_level().unwrap(), 0);
    assert!(z.manual_fans().unwrap().is_empty());
    assert_eq!(z.manual_expires().unwrap(), 0);
    assert_eq!(z.failsafe_level().unwrap(), 100);
    assert_eq!(z.failsafe_reason().unwrap(), "");
    let auto = z.auto_level().unwrap();
    assert!((20..=100).contains(&auto), "AutoLevel {auto}");
    let temps = wait_value(
        "Temperatures of inlet and cpu0, readable",
        secs(5.0),
        || z.temperatures().unwrap(),
        |t| t.len() == 2 && t.values().all(|v| v.is_finite()),
    );
    for (name, t) in &temps {
        assert!(["inlet", "cpu0"].contains(&name.as_str()), "{name}");
        assert!((0.0..100.0).contains(t), "{name}: {t}");
    }
    // Every fan follows the zone's level in Auto.
    for name in FANS {
        let f = env.fan(name);
        wait_value(
            &format!("{name} Pwm == AutoLevel"),
            secs(5.0),
            || (f.pwm().unwrap(), z.auto_level().unwrap()),
            |(p, a)| p == a,
        );
    }

    // Manual on one fan, no expiry: the others stay automatic.
    z.set_manual(55, &["fan1"], 0, no_options()).unwrap();
    assert_eq!(z.mode().unwrap(), CoolingMode::Manual);
    assert_eq!(z.manual_level().unwrap(), 55);
    assert_eq!(z.manual_fans().unwrap(), vec!["fan1".to_owned()]);
    assert_eq!(z.manual_expires().unwrap(), 0);
    let f1 = env.fan("fan1");
    wait_value("fan1 Pwm 55", secs(5.0), || f1.pwm().unwrap(), |p| *p == 55);
    let f0 = env.fan("fan0");
    wait_value(
        "fan0 Pwm still AutoLevel",
        secs(5.0),
        || (f0.pwm().unwrap(), z.auto_level().unwrap()),
        |(p, a)| p == a,
    );

    // Manual on every fan (empty list), with an expiry.
    z.set_manual(40, &[], 30, no_options()).unwrap();
    assert_eq!(z.manual_fans().unwrap(), FANS.map(String::from).to_vec());
    assert_deadline(z.manual_expires().unwrap(), Duration::from_secs(30));
    for name in FANS {
        let f = env.fan(name);
        wait_value(
            &format!("{name} Pwm 40"),
            secs(5.0),
            || f.pwm().unwrap(),
            |p| *p == 40,
        );
    }

    // Back to Auto.
    z.set_auto(no_options()).unwrap();
    assert_eq!(z.mode().unwrap(), CoolingMode::Auto);
    assert_eq!(z.manual_level().unwrap(), 0);
    assert!(z.manual_fans().unwrap().is_empty());
    assert_eq!(z.manual_expires().unwrap(), 0);
    // SetAuto in Auto: a no-op.
    z.set_auto(no_options()).unwrap();
    env.assert_serving();
}

#[test]
fn simulation_every_method_and_property() {
    let env = Env::new();
    let s = env.sim();
    assert_eq!(s.ambient().unwrap(), 25.0);
    s.set_ambient(31.5, Default::default()).unwrap();
    assert_eq!(s.ambient().unwrap(), 31.5);
    expect_error(s.set_ambient(61.0, Default::default()), "InvalidArgument");
    expect_error(s.set_ambient(-21.0, Default::default()), "InvalidArgument");
    assert_eq!(s.ambient().unwrap(), 31.5);

    assert!(s.host_responsive().unwrap());
    s.set_host_responsive(false, Default::default()).unwrap();
    assert!(!s.host_responsive().unwrap());
    s.set_host_responsive(true, Default::default()).unwrap();
    assert!(s.host_responsive().unwrap());

    s.set_fan_fault("fan3", true, Default::default()).unwrap();
    s.set_fan_fault("fan3", false, Default::default()).unwrap();
    let m = expect_error(
        s.set_fan_fault("nope", true, Default::default()),
        "NotFound",
    );
    assert!(m.contains("nope"), "{m}");

    s.set_sensor_fault("inlet", true, Default::default())
        .unwrap();
    s.set_sensor_fault("inlet", false, Default::default())
        .unwrap();
    let m = expect_error(
        s.set_sensor_fault("nope", true, Default::default()),
        "NotFound",
    );
    assert!(m.contains("nope"), "{m}");
    env.assert_serving();
}

#[test]
fn object_manager_lists_every_object() {
    let env = Env::new();
    let om = bmcd_tests::zbus::blocking::fdo::ObjectManagerProxy::builder(env.conn())
        .destination(bmcd_api::BUS_NAME)
        .unwrap()
        .path(bmcd_api::ROOT_PATH)
        .unwrap()
        .build()
        .unwrap();
    let objects = om.get_managed_objects().unwrap();
    // Intermediate nodes may be listed with no interface: skip them.
    let mut seen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, ifaces) in &objects {
        let ours: BTreeSet<String> = ifaces
            .keys()
            .map(|i| i.to_string())
            .filter(|i| i.starts_with("org.bmcd."))
            .collect();
        if !ours.is_empty() {
            seen.insert(path.to_string(), ours);
        }
    }
    let mut want: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let one = |i: &str| BTreeSet::from([i.to_owned()]);
    want.insert(bmcd_api::CHASSIS_PATH.into(), one(bmcd_api::CHASSIS_IFACE));
    want.insert(bmcd_api::FANS_PATH.into(), one(bmcd_api::COOLING_IFACE));
    want.insert(bmcd_api::SIM_PATH.into(), one(bmcd_api::SIMULATION_IFACE));
    for f in FANS {
        want.insert(bmcd_api::fan_path(f), one(bmcd_api::FAN_IFACE));
    }
    want.insert(
        bmcd_api::FIRMWARE_PATH.into(),
        one(bmcd_api::FIRMWARE_MANAGER_IFACE),
    );
    for s in bmcd_api::BMC_SLOTS {
        want.insert(
            bmcd_api::firmware_path(s).unwrap(),
            one(bmcd_api::FIRMWARE_IFACE),
        );
    }
    want.insert(bmcd_api::EVENT_LOG_PATH.into(), one(bmcd_api::LOG_IFACE));
    want.insert(bmcd_api::AUDIT_LOG_PATH.into(), one(bmcd_api::LOG_IFACE));
    want.insert(
        bmcd_api::DUMPS_PATH.into(),
        one(bmcd_api::DUMP_MANAGER_IFACE),
    );
    assert_eq!(seen, want);

    // The properties come along and are the real values.
    let props = |path: &str, iface: &str| -> BTreeMap<String, OwnedValue> {
        objects
            .iter()
            .find(|(p, _)| p.as_str() == path)
            .and_then(|(_, i)| i.iter().find(|(n, _)| n.as_str() == iface))
            .map(|(_, p)| {
                p.iter()
                    .map(|(k, v)| (k.clone(), v.try_clone().unwrap()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let ch = props(bmcd_api::CHASSIS_PATH, bmcd_api::CHASSIS_IFACE);
    assert_eq!(
        ch.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "IdentifyActive",
            "IdentifyExpires",
            "LastStateChangeTime",
            "PendingTransition",
            "PowerState",
            "RestorePolicy"
        ]
    );
    assert_eq!(
        PowerState::try_from(ch["PowerState"].try_clone().unwrap()).unwrap(),
        PowerState::Off
    );
    let fan = props(&bmcd_api::fan_path("fan2"), bmcd_api::FAN_IFACE);
    assert_eq!(
        String::try_from(fan["Name"].try_clone().unwrap()).unwrap(),
        "fan2"
    );
    assert_eq!(fan.len(), 5, "{fan:?}");
    let zone = props(bmcd_api::FANS_PATH, bmcd_api::COOLING_IFACE);
    assert_eq!(zone.len(), 8, "{zone:?}");
    let sim = props(bmcd_api::SIM_PATH, bmcd_api::SIMULATION_IFACE);
    assert_eq!(sim.len(), 2, "{sim:?}");
}

#[test]
fn properties_changed_is_emitted() {
    let env = Env::new();
    let mut sigs = Signals::from_bmcd(
        env.conn(),
        Some(bmcd_api::CHASSIS_PATH),
        "org.freedesktop.DBus.Properties",
        Some("PropertiesChanged"),
    );
    // A caching proxy only learns of changes through PropertiesChanged.
    let cached = bmcd_api::ChassisProxyBlocking::new(env.conn()).unwrap();
    assert_eq!(cached.power_state().unwrap(), PowerState::Off);

    env.chassis().power_on(no_options()).unwrap();
    let power_is = |want: &'static str| {
        move |m: &bmcd_tests::zbus::message::Message| {
            let Ok((iface, changed, _)) = m.body().deserialize::<(
                String,
                std::collections::HashMap<String, OwnedValue>,
                Vec<String>,
            )>() else {
                return false;
            };
            iface == bmcd_api::CHASSIS_IFACE
                && changed
                    .get("PowerState")
                    .and_then(|v| String::try_from(v.try_clone().ok()?).ok())
                    .is_some_and(|s| s == want)
        }
    };
    sigs.wait_for(
        "PowerState -> TransitioningToOn",
        secs(5.0),
        power_is("TransitioningToOn"),
    );
    sigs.wait_for("PowerState -> On", secs(5.0), power_is("On"));
    wait_value(
        "the caching proxy sees On",
        secs(5.0),
        || cached.power_state().unwrap(),
        |p| *p == PowerState::On,
    );

    // The proxy's own change stream works too.
    let (tx, rx) = mpsc::channel();
    let mut stream = cached.receive_identify_active_changed();
    std::thread::spawn(move || {
        for ch in &mut stream {
            if let Ok(v) = ch.get() {
                if tx.send(v).is_err() {
                    break;
                }
            }
        }
    });
    env.chassis().set_identify(true, 0, no_options()).unwrap();
    let deadline = std::time::Instant::now() + secs(5.0);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(true) => break,
            Ok(false) => continue,
            Err(e) => panic!("no IdentifyActive change to true: {e}"),
        }
    }
}

#[test]
fn event_signal_when_a_fan_fails() {
    let env = Env::new();
    let proxy = CoolingProxyBlocking::new(env.conn()).unwrap();
    let events = proxy.receive_event().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for ev in events {
            if let Ok(a) = ev.args() {
                let item = (a.severity, a.source.to_owned(), a.message.to_owned());
                if tx.send(item).is_err() {
                    break;
                }
            }
        }
    });
    env.sim()
        .set_fan_fault("fan2", true, Default::default())
        .unwrap();
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + secs(10.0);
    while !(got
        .iter()
        .any(|(s, src, _): &(Severity, String, String)| *s == Severity::Critical && src == "fan2")
        && got
            .iter()
            .any(|(_, src, m)| src == "cooling" && m.contains("failsafe")))
    {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(e) => got.push(e),
            Err(e) => panic!("missing Event signals ({e}); got {got:?}"),
        }
    }
    let (_, _, msg) = got.iter().find(|(_, src, _)| src == "fan2").unwrap();
    assert!(msg.contains("fail"), "{msg}");
    env.wait_mode(CoolingMode::Failsafe, secs(5.0));
}

#[test]
fn session_who_am_i_and_authenticate_limits() {
    let env = Env::new();
    let s = bmcd_api::SessionProxyBlocking::new(env.conn()).unwrap();
    // The tests run as root: uid 0 is always an Administrator.
    let uid = unsafe_free_uid();
    let (u, name, role) = s.who_am_i().unwrap();
    assert_eq!(u, uid);
    if uid == 0 {
        assert_eq!(name, "root");
        assert_eq!(role, "Administrator");
    }
    // Refused before PAM runs (PAM itself is exercised with pam_wrapper
    // elsewhere, never against the machine's accounts).
    let long = "x".repeat(4096);
    expect_error(s.authenticate(&long, no_options()), "InvalidArgument");
    env.assert_serving();
}

/// Our uid, as the daemon should see it (from /proc, no libc call).
fn unsafe_free_uid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|u| u.parse().ok())
        .unwrap()
}

#[test]
fn sensitive_calls_need_reauthentication_by_default() {
    // The shipped default: re-authentication on.
    let env = Env::with(|cfg| cfg["auth"]["reauthenticate"] = true.into());
    let c = env.chassis();
    let z = env.cooling();
    let m = expect_error(
        c.set_restore_policy(RestorePolicy::AlwaysOn, no_options()),
        "AuthenticationRequired",
    );
    assert!(m.contains("Authenticate"), "{m}");
    expect_error(
        z.set_manual(50, &[], 0, no_options()),
        "AuthenticationRequired",
    );
    // Refused calls changed nothing.
    assert_eq!(c.restore_policy().unwrap(), RestorePolicy::AlwaysOff);
    assert_eq!(z.mode().unwrap(), CoolingMode::Auto);
    // Calls that are not sensitive go through.
    c.set_identify(true, 0, no_options()).unwrap();
    z.set_auto(no_options()).unwrap();
    c.power_on(no_options()).unwrap();
    env.wait_power(PowerState::On, secs(5.0));
}

/// The README's MessageId table lists exactly `bmcd_api::message_ids::ALL`,
/// in order (a new id is documented or this fails).
#[test]
fn readme_message_id_table_matches_the_api() {
    let path = bmcd_tests::workspace_root().join("README.md");
    let readme = std::fs::read_to_string(&path).expect("read README.md");
    let head = "| MessageId | Severity | meaning | Data keys |\n|---|---|---|---|\n";
    let want: String = bmcd_api::message_ids::ALL
        .iter()
        .map(|(id, sev, what, data)| {
            let data = if data.is_empty() { "-" } else { data };
            format!("| `{id}` | {sev} | {what} | {data} |\n")
        })
        .collect();
    let start = readme.find(head).expect("README.md has no MessageId table") + head.len();
    let got: String = readme[start..]
        .lines()
        .take_while(|l| l.starts_with('|'))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(
        got, want,
        "README.md's MessageId table differs; replace it with:\n{want}"
    );
    for (id, sev, ..) in bmcd_api::message_ids::ALL {
        assert!(
            sev.parse::<bmcd_api::LogSeverity>().is_ok(),
            "{id}: severity {sev} is not a LogSeverity word"
        );
    }
}

/// `Log1` (both logs), `Dump1` and `DumpEntry1` through their proxies: every
/// method, property and the `Appended` signal.
#[test]
fn logs_and_dumps_every_method_and_property() {
    use bmcd_api::{log_query, DumpEntryProxyBlocking, DumpManagerProxyBlocking, LogProxyBlocking};
    use bmcd_tests::firmware::wait_task_final;

    let env = Env::new();
    let log = |path: &'static str| {
        LogProxyBlocking::builder(env.conn())
            .path(path)
            .unwrap()
            .build()
            .unwrap()
    };
    let ev = log(bmcd_api::EVENT_LOG_PATH);
    let au = log(bmcd_api::AUDIT_LOG_PATH);
    assert_eq!(ev.name().unwrap(), "event");
    assert_eq!(au.name().unwrap(), "audit");
    assert!(ev.max_entries().unwrap() > 0);
    assert!(ev.max_bytes().unwrap() > 0);
    // Daemon.Started is in already.
    assert!(ev.count().unwrap() >= 1);
    let gen0 = ev.generation().unwrap();

    let appended = ev.receive_appended().unwrap();
    let (first, last) = env.sim().append_events(5, no_options()).unwrap();
    assert_eq!(last, first + 4);
    // One or more Appended signals cover the new ids.
    let mut covered = 0;
    for sig in appended {
        let a = sig.args().unwrap();
        assert!(a.first <= a.last);
        covered = covered.max(a.last);
        if covered >= last {
            break;
        }
    }
    assert!(ev.last_id().unwrap() >= last);

    let (page, next, info) = ev.get_entries(first, 5, no_options()).unwrap();
    assert_eq!(page.len(), 5);
    assert_eq!(next, last + 1);
    for (i, e) in page.iter().enumerate() {
        let keys: BTreeSet<&str> = e.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            BTreeSet::from([
                "Data",
                "Id",
                "Message",
                "MessageId",
                "Severity",
                "Source",
                "Time"
            ])
        );
        assert_eq!(
            u64::try_from(e["Id"].try_clone().unwrap()).unwrap(),
            first + i as u64
        );
        assert_eq!(
            String::try_from(e["MessageId"].try_clone().unwrap()).unwrap(),
            "Sim.Event"
        );
        let sev = String::try_from(e["Severity"].try_clone().unwrap()).unwrap();
        assert!(sev.parse::<bmcd_api::LogSeverity>().is_ok(), "{sev}");
    }
    for k in ["first-id", "last-id", "generation", "end"] {
        assert!(info.contains_key(k), "info lacks {k}: {info:?}");
    }
    // Newest first.
    let mut older = std::collections::HashMap::new();
    older.insert(
        log_query::DIRECTION,
        bmcd_tests::zbus::zvariant::Value::from(log_query::OLDER),
    );
    let (page, ..) = ev.get_entries(log_query::CURSOR_NEWEST, 1, older).unwrap();
    assert_eq!(
        u64::try_from(page[0]["Id"].try_clone().unwrap()).unwrap(),
        ev.last_id().unwrap()
    );
    expect_error(ev.get_entries(0, 0, no_options()), "InvalidArgument");

    // Clear: ids go on, the generation grows, Log.Cleared comes first.
    ev.clear(no_options()).unwrap();
    assert_eq!(ev.generation().unwrap(), gen0 + 1);
    let (page, ..) = ev.get_entries(0, 10, no_options()).unwrap();
    assert!(!page.is_empty());
    assert!(u64::try_from(page[0]["Id"].try_clone().unwrap()).unwrap() > last);
    assert_eq!(
        String::try_from(page[0]["MessageId"].try_clone().unwrap()).unwrap(),
        "Log.Cleared"
    );
    expect_error(au.clear(no_options()), "NotAllowed");
    let (page, ..) = au
        .get_entries(log_query::CURSOR_NEWEST, 50, {
            let mut o = std::collections::HashMap::new();
            o.insert(
                log_query::DIRECTION,
                bmcd_tests::zbus::zvariant::Value::from(log_query::OLDER),
            );
            o
        })
        .unwrap();
    assert!(
        page.iter().any(
            |e| String::try_from(e["MessageId"].try_clone().unwrap()).unwrap()
                == "Audit.LogCleared"
        ),
        "no Audit.LogCleared in {page:?}"
    );

    // A dump, opened and deleted.
    let dm = DumpManagerProxyBlocking::new(env.conn()).unwrap();
    assert!(dm.max_dumps().unwrap() >= 1);
    assert!(dm.max_size().unwrap() > 0);
    let task = dm.create(no_options()).unwrap();
    assert_eq!(
        wait_task_final(&env, task.as_str(), secs(60.0)),
        bmcd_api::TaskState::Completed
    );
    let t = bmcd_tests::firmware::task_proxy(&env, task.as_str());
    let result = t.result().unwrap();
    let path = bmcd_tests::zbus::zvariant::OwnedObjectPath::try_from(
        result[bmcd_api::dump_result::DUMP].try_clone().unwrap(),
    )
    .unwrap();
    let d = DumpEntryProxyBlocking::builder(env.conn())
        .path(path.clone())
        .unwrap()
        .cache_properties(bmcd_tests::zbus::proxy::CacheProperties::No)
        .build()
        .unwrap();
    assert!(d.id().unwrap() >= 1);
    assert!(d.file_name().unwrap().ends_with(".tar.gz"));
    assert!(d.time().unwrap() <= now_ms());
    assert_eq!(d.digest().unwrap().len(), 64);
    assert!(!d.truncated().unwrap());
    let fd = d.open(no_options()).unwrap();
    let file = std::fs::File::from(std::os::fd::OwnedFd::from(fd));
    assert_eq!(file.metadata().unwrap().len(), d.size().unwrap());
    d.delete(no_options()).unwrap();
    assert!(d.size().is_err(), "the deleted dump is still on the bus");
    env.assert_serving();
}
