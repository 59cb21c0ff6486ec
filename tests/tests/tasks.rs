//! Task1 objects on the real bus: a task's whole life as busctl and gdbus
//! see it, cancel (owner, another operator, an administrator), expiry,
//! `Interrupted` after `kill -9` and after a clean stop, ids never reused.

use std::process::Command;
use std::time::Duration;

use bmcd_tests::bmcd_api::{
    self, task_id, task_path, PowerOffMode, PowerState, TaskProxyBlocking, TaskState,
};
use bmcd_tests::security::{gid_of, Pam, SecEnv, Who, OPERATOR_GROUP};
use bmcd_tests::serde_json::{self, json, Value};
use bmcd_tests::{no_options, wait_until, Env, Monitor};

const LONG: Duration = Duration::from_secs(20);

fn task<'a>(env: &'a Env, path: &str) -> TaskProxyBlocking<'a> {
    TaskProxyBlocking::builder(env.conn())
        .path(path.to_owned())
        .unwrap()
        .build()
        .unwrap()
}

fn wait_state(env: &Env, path: &str, want: TaskState) {
    let t = task(env, path);
    wait_until(&format!("{path} {want}"), LONG, || {
        t.state().ok() == Some(want)
    });
}

/// A graceful power off that the simulated host ignores: a task that waits
/// (cancellable) for up to `timeout` seconds. Returns its path.
fn long_task(env: &Env) -> String {
    let c = env.chassis();
    if c.power_state().unwrap() != PowerState::On {
        c.power_on(no_options()).unwrap();
        env.wait_power(PowerState::On, LONG);
    }
    env.sim()
        .set_host_responsive(false, Default::default())
        .unwrap();
    let path = c
        .power_off(PowerOffMode::Graceful, 600, no_options())
        .unwrap()
        .to_string();
    let t = task(env, &path);
    wait_until("the graceful wait (cancellable)", LONG, || {
        t.cancellable().unwrap_or(false)
    });
    path
}

/// A `busctl monitor` of everything org.bmcd sends, as JSON lines, known
/// to be listening: it has seen a signal caused after it started.
fn busctl_monitor(env: &Env) -> Monitor {
    let m = Monitor::spawn(
        Command::new("busctl")
            .arg(format!("--address={}", env.address()))
            .args(["monitor", "--json=short", "org.bmcd"]),
    );
    m.wait_line("Monitoring bus message stream", LONG);
    listening(env, &m, "\"IdentifyActive\"");
    m
}

/// Wait until `m` is subscribed: a monitor prints its ready line before
/// its match rule is in place (gdbus subscribes only after printing "The
/// name … is owned by"), so a signal sent right then can be missed. Send a
/// new PropertiesChanged (toggle the identify LED) until `m` shows one
/// (`marker`): from the first one it shows, it misses nothing.
fn listening(env: &Env, m: &Monitor, marker: &str) {
    let c = env.chassis();
    let deadline = std::time::Instant::now() + LONG;
    loop {
        let on = !c.identify_active().unwrap();
        c.set_identify(on, 0, no_options()).unwrap();
        if m.holds_within(Duration::from_millis(500), |l| {
            l.iter().any(|x| x.contains(marker))
        }) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the monitor never showed {marker:?}:\n{}",
            m.lines().join("\n")
        );
    }
}

/// The messages of a `busctl --json=short` monitor about `path`.
fn messages_about(m: &Monitor, path: &str) -> Vec<Value> {
    m.lines()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| {
            v["path"] == path
                || v["payload"]["data"]
                    .get(0)
                    .is_some_and(|p| p == &json!(path))
        })
        .collect()
}

#[test]
fn a_task_whole_life_seen_from_busctl() {
    let env = Env::new();
    let m = busctl_monitor(&env);
    let r = env.busctl(&[
        "call",
        "org.bmcd",
        "/org/bmcd/chassis0",
        "org.bmcd.Chassis1",
        "PowerOn",
        "a{sv}",
        "0",
    ]);
    r.success();
    let path = r
        .stdout
        .trim()
        .strip_prefix("o \"")
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or_else(|| panic!("PowerOn did not return an object path: {r}"))
        .to_owned();
    let id = task_id(&path).unwrap_or_else(|| panic!("not a task path: {path}"));
    wait_state(&env, &path, TaskState::Completed);
    m.wait_line("\"Completed\"", LONG);

    let msgs = messages_about(&m, &path);
    // InterfacesAdded on the ObjectManager, with the task's properties.
    let added = msgs
        .iter()
        .find(|v| v["member"] == "InterfacesAdded")
        .unwrap_or_else(|| panic!("no InterfacesAdded for {path}: {msgs:#?}"));
    assert_eq!(added["path"], "/org/bmcd");
    let props = &added["payload"]["data"][1]["org.bmcd.Task1"];
    assert_eq!(props["Kind"]["data"], "PowerOn", "{added}");
    assert_eq!(props["Id"]["data"], id, "{added}");
    assert_eq!(props["OwnerUid"]["data"], 0, "{added}");
    // Then PropertiesChanged of the task only: states in order, progress
    // never down, ending Completed at 100 with a result.
    let changes: Vec<&Value> = msgs
        .iter()
        .filter(|v| v["member"] == "PropertiesChanged")
        .map(|v| &v["payload"]["data"][1])
        .collect();
    let states: Vec<&str> = changes
        .iter()
        .filter_map(|c| c["State"]["data"].as_str())
        .collect();
    assert_eq!(states.last(), Some(&"Completed"), "{changes:#?}");
    let mut last = 0;
    for p in changes
        .iter()
        .filter_map(|c| c["Progress"]["data"].as_u64())
    {
        assert!(p >= last, "progress went down: {last} -> {p}");
        last = p;
    }
    assert_eq!(last, 100, "{changes:#?}");

    // What any busctl user reads afterwards.
    for (prop, want) in [
        ("State", "s \"Completed\""),
        ("Kind", "s \"PowerOn\""),
        ("Progress", "y 100"),
        ("Error", "(ss) \"\" \"\""),
        ("Cancellable", "b false"),
    ] {
        let r = env.busctl(&["get-property", "org.bmcd", &path, "org.bmcd.Task1", prop]);
        assert_eq!(r.success().stdout.trim(), want, "{prop}");
    }
    let r = env.busctl(&[
        "get-property",
        "org.bmcd",
        &path,
        "org.bmcd.Task1",
        "Result",
    ]);
    r.success().stdout_has("\"PowerState\" s \"On\"");
    // A finished task cannot be cancelled.
    let r = env.busctl(&[
        "call",
        "org.bmcd",
        &path,
        "org.bmcd.Task1",
        "Cancel",
        "a{sv}",
        "0",
    ]);
    assert_ne!(r.code, 0, "{r}");
    r.stderr_has("finished");
    env.assert_serving();
}

#[test]
fn interfaces_added_and_removed_seen_by_gdbus_monitor() {
    // Keep one finished task: the next one expires the one before.
    let env = Env::with(|v| v["tasks"] = json!({"keep_count": 1}));
    let m = Monitor::spawn(Command::new("gdbus").args([
        "monitor",
        "--address",
        env.address(),
        "--dest",
        "org.bmcd",
    ]));
    m.wait_line("The name org.bmcd is owned by", LONG);
    listening(&env, &m, "IdentifyActive");
    let c = env.chassis();
    let first = c.power_on(no_options()).unwrap().to_string();
    wait_state(&env, &first, TaskState::Completed);
    m.wait_line(&format!("InterfacesAdded (objectpath '{first}'"), LONG);
    let second = c
        .power_off(PowerOffMode::Force, 0, no_options())
        .unwrap()
        .to_string();
    assert_eq!(task_id(&second), task_id(&first).map(|i| i + 1));
    wait_state(&env, &second, TaskState::Completed);
    m.wait_line(&format!("InterfacesAdded (objectpath '{second}'"), LONG);
    m.wait_line(&format!("InterfacesRemoved (objectpath '{first}'"), LONG);
    // Gone from the bus, the newer one stays.
    let r = env.busctl(&[
        "get-property",
        "org.bmcd",
        &first,
        "org.bmcd.Task1",
        "State",
    ]);
    assert_ne!(r.code, 0, "{r}");
    assert_eq!(task(&env, &second).state().unwrap(), TaskState::Completed);
}

#[test]
fn finished_tasks_expire_after_keep_s() {
    let env = Env::with(|v| v["tasks"] = json!({"keep_s": 1}));
    let path = env.chassis().power_on(no_options()).unwrap().to_string();
    wait_state(&env, &path, TaskState::Completed);
    let om = bmcd_tests::zbus::blocking::fdo::ObjectManagerProxy::builder(env.conn())
        .destination("org.bmcd")
        .unwrap()
        .path("/org/bmcd")
        .unwrap()
        .build()
        .unwrap();
    wait_until("the task to expire", LONG, || {
        om.get_managed_objects()
            .map(|o| !o.keys().any(|p| p.as_str() == path))
            .unwrap_or(false)
    });
}

#[test]
fn cancel_by_the_owner_refused_to_another_operator_allowed_to_an_administrator() {
    let env = SecEnv::system_like(Pam::users(&[]), |_| {});
    let owner = Who::operator();
    // Debian's `daemon` user (uid 1) with the operator group: an existing
    // account (the bus refuses uids it cannot resolve) other than the owner.
    let other = Who {
        uid: 1,
        gid: 1,
        groups: vec![gid_of(OPERATOR_GROUP)],
        label: "another operator (daemon + users)",
    };
    let c = env.chassis();
    c.power_on(no_options()).unwrap();
    env.wait_power(PowerState::On, LONG);
    env.sim()
        .set_host_responsive(false, Default::default())
        .unwrap();

    let start = |who: &Who| -> String {
        let r = env.busctl_call(
            who,
            "/org/bmcd/chassis0",
            "org.bmcd.Chassis1",
            "PowerOff",
            &["sua{sv}", "Graceful", "600", "0"],
        );
        let path = r
            .success()
            .stdout
            .trim()
            .trim_start_matches("o ")
            .trim_matches('"')
            .to_owned();
        let t = task(&env, &path);
        wait_until("cancellable", LONG, || t.cancellable().unwrap_or(false));
        assert_eq!(t.owner_uid().unwrap(), who.uid);
        path
    };
    let cancel = |who: &Who, path: &str| {
        env.busctl_call(who, path, "org.bmcd.Task1", "Cancel", &["a{sv}", "0"])
    };

    let path = start(&owner);
    let r = cancel(&other, &path);
    assert_ne!(r.code, 0, "{r}");
    r.stderr_has("only the user who started the task or an administrator");
    assert_eq!(task(&env, &path).state().unwrap(), TaskState::Running);
    cancel(&owner, &path).success();
    wait_state(&env, &path, TaskState::Cancelled);
    let t = task(&env, &path);
    assert_eq!(t.error().unwrap().0, "org.bmcd.Error.Cancelled");
    assert!(t.end_time().unwrap() > 0);
    // The host was left on: no forced power off after a cancel.
    assert_eq!(c.power_state().unwrap(), PowerState::On);
    assert_eq!(c.pending_transition().unwrap(), bmcd_api::Transition::None);

    // An administrator may cancel anyone's task.
    let path = start(&owner);
    cancel(&Who::admin(), &path).success();
    wait_state(&env, &path, TaskState::Cancelled);
    // Once finished: refused, also to the owner.
    let r = cancel(&owner, &path);
    assert_ne!(r.code, 0, "{r}");
    r.stderr_has("already finished");
    env.assert_serving();
}

#[test]
fn a_task_running_when_bmcd_is_killed_comes_back_interrupted_and_ids_go_on() {
    let env = Env::new();
    let path = long_task(&env);
    let id = task_id(&path).unwrap();
    env.daemon.kill9();
    env.daemon.start_again();
    let t = task(&env, &path);
    assert_eq!(t.state().unwrap(), TaskState::Interrupted);
    let (name, text) = t.error().unwrap();
    assert_eq!(name, "org.bmcd.Error.Interrupted");
    assert!(text.contains("bmcd stopped while the task ran"), "{text}");
    assert!(t.end_time().unwrap() >= t.start_time().unwrap());
    assert!(!t.cancellable().unwrap());
    // The next task gets the next id: ids are never reused.
    env.sim()
        .set_host_responsive(true, Default::default())
        .unwrap();
    let next = env
        .chassis()
        .power_off(PowerOffMode::Force, 0, no_options())
        .unwrap();
    assert_eq!(next.as_str(), task_path(id + 1));
    wait_state(&env, next.as_str(), TaskState::Completed);
}

#[test]
fn a_clean_stop_interrupts_running_tasks_too() {
    let env = Env::new();
    let path = long_task(&env);
    env.daemon.restart();
    let t = task(&env, &path);
    assert_eq!(t.state().unwrap(), TaskState::Interrupted);
    assert_eq!(t.error().unwrap().0, "org.bmcd.Error.Interrupted");
}
