//! Every property of every `org.bmcd` interface is published: a change to
//! it emits `PropertiesChanged` carrying the new value (issue 7).
//!
//! The test reads the live introspection of the daemon's tree and holds
//! every property against [`TABLE`], which names the action that changes
//! it. A live property that is not annotated
//! `org.freedesktop.DBus.Property.EmitsChangedSignal = const` and has no
//! row fails the test, so a new property cannot ship unpublished; a row
//! for a property the daemon does not serve fails it too. After each
//! action, each of its properties must arrive in a `PropertiesChanged` of
//! its interface and object, and the last value published must equal a
//! fresh `Get`. Const properties must never appear in any
//! `PropertiesChanged`.
//!
//! `Fan1.Present` cannot change at run time on the sim platform; it is
//! checked on a daemon driving a fake hwmon tree, whose fan disappears.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use bmcd_tests::bmcd_api::{self as api, PowerOffMode, PowerState, RestorePolicy};
use bmcd_tests::firmware::{set_firmware, FwKit, ImageSpec};
use bmcd_tests::serde_json::json;
use bmcd_tests::zbus::blocking::fdo::{IntrospectableProxy, PropertiesProxy};
use bmcd_tests::zbus::blocking::{Connection, MessageIterator};
use bmcd_tests::zbus::names::InterfaceName;
use bmcd_tests::zbus::zvariant::{self, serialized::Context, OwnedValue, Value, LE};
use bmcd_tests::zbus::MatchRule;
use bmcd_tests::{no_options, secs, wait_value, xml, Env, FakeHwmon};

const EMITS: &str = "org.freedesktop.DBus.Property.EmitsChangedSignal";
/// Bound on the wait for one property's signal after its action.
const SIGNAL_TIMEOUT: Duration = Duration::from_secs(10);
/// The fan whose `Fan1` object is watched.
const FAN: &str = "fan0";

/// What makes a property change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Action {
    /// `Chassis1.PowerOn` while off, until its task has completed.
    PowerOn,
    /// `Chassis1.SetRestorePolicy` to another policy.
    SetRestorePolicy,
    /// `Chassis1.SetIdentify(true, 60)`.
    SetIdentify,
    /// `Chassis1.PowerCycle`, until its task has completed (its phases
    /// change long after the task object appeared).
    PowerCycle,
    /// `Simulation1.SetHostResponsive(false)`.
    SetHostResponsive,
    /// A graceful `PowerOff` the unresponsive host does not honour (a
    /// cancellable wait), then `Task1.Cancel`, until it is `Cancelled`.
    CancelGracefulOff,
    /// `Cooling1.SetManual` of fan0 at a level far from its current one.
    SetManual,
    /// `Simulation1.SetAmbient` 10 °C warmer.
    SetAmbient,
    /// `Simulation1.SetFanFault(fan0, true)`.
    SetFanFault,
    /// `Simulation1.SetSensorFault(cpu0, true)`.
    SetSensorFault,
    /// A room hot enough for inlet's critical temperature: the thermal
    /// guard drives every fan at 100 % instead of the configured
    /// `failsafe_level` (80 in this test).
    ThermalGuard,
    /// On a fake hwmon tree: the fan's `fanN_input` file disappears.
    HwmonFanRemoved,
    /// `FirmwareManager1.StartUpdate` of a signed image with `activate`,
    /// written slowly enough that `UpdateTask` is seen set, until its task
    /// has completed.
    FirmwareUpdate,
    /// `Log1.Clear` of the event log (root, re-authentication off).
    ClearEventLog,
}
use Action::*;

/// (interface, property) → the action that changes it. Every live
/// property that is not `const` must have a row.
const TABLE: &[(&str, &str, Action)] = &[
    ("org.bmcd.Chassis1", "PowerState", PowerOn),
    ("org.bmcd.Chassis1", "PendingTransition", PowerOn),
    ("org.bmcd.Chassis1", "LastStateChangeTime", PowerOn),
    ("org.bmcd.Chassis1", "RestorePolicy", SetRestorePolicy),
    ("org.bmcd.Chassis1", "IdentifyActive", SetIdentify),
    ("org.bmcd.Chassis1", "IdentifyExpires", SetIdentify),
    ("org.bmcd.Task1", "State", PowerOn),
    ("org.bmcd.Task1", "Progress", PowerOn),
    ("org.bmcd.Task1", "Message", PowerOn),
    ("org.bmcd.Task1", "Messages", PowerOn),
    ("org.bmcd.Task1", "EndTime", PowerOn),
    ("org.bmcd.Task1", "LastProgressTime", PowerOn),
    ("org.bmcd.Task1", "Result", PowerOn),
    ("org.bmcd.Task1", "Phase", PowerCycle),
    ("org.bmcd.Task1", "Cancellable", CancelGracefulOff),
    ("org.bmcd.Task1", "Error", CancelGracefulOff),
    ("org.bmcd.Simulation1", "HostResponsive", SetHostResponsive),
    ("org.bmcd.Simulation1", "Ambient", SetAmbient),
    ("org.bmcd.Cooling1", "Mode", SetManual),
    ("org.bmcd.Cooling1", "ManualLevel", SetManual),
    ("org.bmcd.Cooling1", "ManualFans", SetManual),
    ("org.bmcd.Cooling1", "ManualExpires", SetManual),
    ("org.bmcd.Cooling1", "Temperatures", SetAmbient),
    ("org.bmcd.Cooling1", "AutoLevel", SetAmbient),
    ("org.bmcd.Cooling1", "FailsafeReason", SetSensorFault),
    ("org.bmcd.Cooling1", "FailsafeLevel", ThermalGuard),
    ("org.bmcd.Fan1", "Pwm", SetManual),
    ("org.bmcd.Fan1", "Rpm", SetManual),
    ("org.bmcd.Fan1", "Health", SetFanFault),
    ("org.bmcd.Fan1", "Present", HwmonFanRemoved),
    ("org.bmcd.FirmwareManager1", "BootNext", FirmwareUpdate),
    ("org.bmcd.FirmwareManager1", "UpdateTask", FirmwareUpdate),
    ("org.bmcd.Firmware1", "Version", FirmwareUpdate),
    ("org.bmcd.Firmware1", "BuildDate", FirmwareUpdate),
    ("org.bmcd.Firmware1", "Digest", FirmwareUpdate),
    ("org.bmcd.Firmware1", "Size", FirmwareUpdate),
    ("org.bmcd.Firmware1", "InstallTime", FirmwareUpdate),
    ("org.bmcd.Firmware1", "State", FirmwareUpdate),
    ("org.bmcd.Log1", "FirstId", ClearEventLog),
    ("org.bmcd.Log1", "LastId", ClearEventLog),
    ("org.bmcd.Log1", "Count", ClearEventLog),
    ("org.bmcd.Log1", "Generation", ClearEventLog),
];

/// The order the sim test runs the actions in: each leaves the daemon in
/// a state where the next one changes its properties (the host on before
/// the cycle and the graceful off; the manual override before the faults,
/// which put the zone in Failsafe; cpu0 lost before the hot room, so only
/// inlet can reach its critical temperature).
const SIM_SEQUENCE: &[Action] = &[
    PowerOn,
    SetRestorePolicy,
    SetIdentify,
    PowerCycle,
    SetHostResponsive,
    CancelGracefulOff,
    SetManual,
    SetAmbient,
    SetFanFault,
    SetSensorFault,
    ThermalGuard,
    FirmwareUpdate,
    ClearEventLog,
];

// ---------------------------------------------------------------------------
// Introspection

/// How a property announces its changes (its `EmitsChangedSignal`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Prop {
    name: String,
    emits: String,
}

impl Prop {
    fn is_const(&self) -> bool {
        self.emits == "const"
    }
}

/// `key="value"` in a canonical tag line.
fn attr(line: &str, key: &str) -> Option<String> {
    line.split(&format!(" {key}=\""))
        .nth(1)?
        .split('"')
        .next()
        .map(str::to_owned)
}

/// The properties of one interface from its canonical lines, with their
/// `EmitsChangedSignal` (the property's annotation, else the interface's,
/// else "true").
fn properties(lines: &[String]) -> Vec<Prop> {
    let member = |t: &str| {
        t.starts_with("<property ") || t.starts_with("<method ") || t.starts_with("<signal ")
    };
    let closes = |t: &str| matches!(t, "</property>" | "</method>" | "</signal>");
    // The interface's own annotation (outside every member).
    let mut default = "true".to_owned();
    let mut inside = false;
    for l in lines {
        let t = l.trim();
        if member(t) {
            inside = true;
        } else if closes(t) {
            inside = false;
        } else if !inside
            && t.starts_with("<annotation ")
            && attr(t, "name").as_deref() == Some(EMITS)
        {
            default = attr(t, "value").unwrap_or_default();
        }
    }
    let mut out = Vec::new();
    let mut cur: Option<Prop> = None;
    for l in lines {
        let t = l.trim();
        if t.starts_with("<property ") {
            cur = Some(Prop {
                name: attr(t, "name").unwrap_or_default(),
                emits: default.clone(),
            });
        } else if t == "</property>" {
            out.extend(cur.take());
        } else if t.starts_with("<annotation ") && attr(t, "name").as_deref() == Some(EMITS) {
            if let Some(p) = cur.as_mut() {
                p.emits = attr(t, "value").unwrap_or_default();
            }
        }
    }
    out
}

/// Every `org.bmcd` interface served under `/org/bmcd`, with the first
/// object (in path order) that carries it and its properties, found by
/// walking the child nodes.
fn live_interfaces(conn: &Connection) -> BTreeMap<String, (String, Vec<Prop>)> {
    let mut out: BTreeMap<String, (String, Vec<Prop>)> = BTreeMap::new();
    let mut todo = vec![api::ROOT_PATH.to_owned()];
    let mut seen = BTreeMap::new();
    while let Some(path) = todo.pop() {
        let text = IntrospectableProxy::builder(conn)
            .destination(api::BUS_NAME)
            .unwrap()
            .path(path.clone())
            .unwrap()
            .build()
            .unwrap()
            .introspect()
            .unwrap_or_else(|e| panic!("Introspect {path}: {e}"));
        for child in xml::child_nodes(&text).unwrap() {
            todo.push(format!("{}/{child}", path.trim_end_matches('/')));
        }
        seen.insert(path, text);
    }
    for (path, text) in &seen {
        for (iface, lines) in xml::interfaces(text).unwrap() {
            if iface.starts_with("org.bmcd.") && !out.contains_key(&iface) {
                out.insert(iface, (path.clone(), properties(&lines)));
            }
        }
    }
    out
}

/// Hold the live properties against [`TABLE`]: every non-const property
/// has exactly one row, every row a live non-const property, and no
/// property uses an `EmitsChangedSignal` this test cannot check.
fn check_table(live: &BTreeMap<String, (String, Vec<Prop>)>) {
    let mut problems = Vec::new();
    for (iface, (path, props)) in live {
        for p in props {
            let rows = TABLE
                .iter()
                .filter(|(i, n, _)| i == iface && *n == p.name)
                .count();
            match (p.emits.as_str(), rows) {
                ("const", 0) | ("true", 1) => {}
                ("const", _) => problems.push(format!(
                    "{iface}.{} is const (at {path}) but has a row in TABLE",
                    p.name
                )),
                ("true", 0) => problems.push(format!(
                    "{iface}.{} (at {path}) is not const and has no row in TABLE: add the \
                     action that changes it, so that the test checks it is published",
                    p.name
                )),
                ("true", n) => problems.push(format!("{iface}.{} has {n} rows", p.name)),
                (other, _) => problems.push(format!(
                    "{iface}.{} has {EMITS} = {other}: bmcd publishes values (true) or \
                     nothing (const)",
                    p.name
                )),
            }
        }
    }
    for (iface, name, action) in TABLE {
        let served = live
            .get(*iface)
            .is_some_and(|(_, props)| props.iter().any(|p| p.name == *name));
        if !served {
            problems.push(format!(
                "TABLE has {iface}.{name} ({action:?}) but the daemon does not serve it"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------
// Signals

/// One `PropertiesChanged`.
#[derive(Debug)]
struct Change {
    path: String,
    iface: String,
    changed: HashMap<String, OwnedValue>,
    invalidated: Vec<String>,
}

/// Every `PropertiesChanged` sent by `org.bmcd`, in arrival order, from
/// the moment [`Changes::subscribe`] returned.
struct Changes {
    rx: Receiver<Change>,
    seen: Vec<Change>,
}

impl Changes {
    fn subscribe(conn: &Connection) -> Changes {
        let rule = MatchRule::builder()
            .msg_type(bmcd_tests::zbus::message::Type::Signal)
            .sender(api::BUS_NAME)
            .and_then(|b| b.interface("org.freedesktop.DBus.Properties"))
            .and_then(|b| b.member("PropertiesChanged"))
            .unwrap()
            .build();
        let it = MessageIterator::for_match_rule(rule, conn, Some(4096))
            .unwrap_or_else(|e| panic!("AddMatch failed: {e}"));
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for m in it.flatten() {
                let path = m.header().path().map(|p| p.to_string()).unwrap_or_default();
                let Ok((iface, changed, invalidated)) =
                    m.body()
                        .deserialize::<(String, HashMap<String, OwnedValue>, Vec<String>)>()
                else {
                    continue;
                };
                let c = Change {
                    path,
                    iface,
                    changed,
                    invalidated,
                };
                if tx.send(c).is_err() {
                    break;
                }
            }
        });
        Changes {
            rx,
            seen: Vec::new(),
        }
    }

    /// Take in what has arrived; the number of changes seen so far.
    fn drain(&mut self) -> usize {
        while let Ok(c) = self.rx.try_recv() {
            self.seen.push(c);
        }
        self.seen.len()
    }

    /// Wait up to `timeout` for one more change; false if none came.
    fn next(&mut self, timeout: Duration) -> bool {
        match self.rx.recv_timeout(timeout) {
            Ok(c) => {
                self.seen.push(c);
                true
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => panic!("the signal connection closed"),
        }
    }

    /// The values of `prop` published for `iface` at `path` by the changes
    /// from index `from` on, in order.
    fn values(&self, from: usize, path: &str, iface: &str, prop: &str) -> Vec<&OwnedValue> {
        self.seen
            .iter()
            .skip(from)
            .filter(|c| c.path == path && c.iface == iface)
            .filter_map(|c| c.changed.get(prop))
            .collect()
    }
}

/// Equal D-Bus encodings (so NaN equals itself, as the daemon compares).
fn same(a: &Value<'_>, b: &Value<'_>) -> bool {
    let ctxt = Context::new_dbus(LE, 0);
    match (zvariant::to_bytes(ctxt, a), zvariant::to_bytes(ctxt, b)) {
        (Ok(x), Ok(y)) => x.bytes() == y.bytes(),
        _ => false,
    }
}

/// `Properties.Get` of `iface.prop` at `path`.
fn get(conn: &Connection, path: &str, iface: &str, prop: &str) -> OwnedValue {
    PropertiesProxy::builder(conn)
        .destination(api::BUS_NAME)
        .unwrap()
        .path(path.to_owned())
        .unwrap()
        .build()
        .unwrap()
        .get(InterfaceName::try_from(iface.to_owned()).unwrap(), prop)
        .unwrap_or_else(|e| panic!("Get {path} {iface}.{prop}: {e}"))
}

/// After `action` (begun when `from` changes had been seen), a change of
/// `iface` at `path` carries `prop`, and the last value published equals
/// a fresh `Get`. Values that move all the time (a tachometer's noise) are
/// compared again after each new signal until they agree.
fn check_published(
    conn: &Connection,
    changes: &mut Changes,
    action: Action,
    from: usize,
    path: &str,
    iface: &str,
    prop: &str,
) {
    let what = format!("{iface}.{prop} at {path} after {action:?}");
    let deadline = Instant::now() + SIGNAL_TIMEOUT;
    changes.drain();
    while changes.values(from, path, iface, prop).is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || !changes.next(left) {
            let at_path: Vec<&Change> = changes
                .seen
                .iter()
                .skip(from)
                .filter(|c| c.path == path && c.iface == iface)
                .collect();
            panic!(
                "no PropertiesChanged carrying {what} within {SIGNAL_TIMEOUT:?}: the property \
                 is not published (now {:?}); the changes of {iface} at {path} since the action: \
                 {at_path:#?}",
                get(conn, path, iface, prop)
            );
        }
        changes.drain();
    }
    let deadline = Instant::now() + SIGNAL_TIMEOUT;
    loop {
        let fresh = get(conn, path, iface, prop);
        changes.drain();
        let last = changes.values(from, path, iface, prop);
        let last = last.last().copied();
        if last.is_some_and(|v| same(v, &fresh)) {
            return;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            panic!("{what}: the last value published, {last:?}, is not what Get says, {fresh:?}");
        }
        // A signal for the value Get has just read may still be on its way.
        changes.next(left.min(secs(0.5)));
    }
}

/// No change ever carried a `const` property.
fn check_consts(changes: &mut Changes, live: &BTreeMap<String, (String, Vec<Prop>)>) {
    changes.drain();
    for c in &changes.seen {
        let Some((_, props)) = live.get(&c.iface) else {
            continue;
        };
        for p in props.iter().filter(|p| p.is_const()) {
            assert!(
                !c.changed.contains_key(&p.name) && !c.invalidated.contains(&p.name),
                "{}.{} is const but a PropertiesChanged at {} carries it: {c:?}",
                c.iface,
                p.name,
                c.path
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Actions

/// `Task1.State` of the task at `path`.
fn task_state(env: &Env, path: &str) -> String {
    String::try_from(get(env.conn(), path, api::TASK_IFACE, "State")).unwrap()
}

fn task(env: &Env, path: &str) -> api::TaskProxyBlocking<'static> {
    api::TaskProxyBlocking::builder(env.conn())
        .path(path.to_owned())
        .unwrap()
        .cache_properties(bmcd_tests::zbus::proxy::CacheProperties::No)
        .build()
        .unwrap()
}

fn wait_task(env: &Env, path: &str, want: &str) {
    wait_value(
        &format!("task {path} {want}"),
        secs(15.0),
        || task_state(env, path),
        |s| s == want,
    );
}

/// Wait for a `PropertiesChanged` of the task at `path` that sets `prop`
/// to `want`.
fn wait_signal(changes: &mut Changes, path: &str, prop: &str, want: &Value<'_>) {
    let deadline = Instant::now() + SIGNAL_TIMEOUT;
    loop {
        changes.drain();
        if changes
            .values(0, path, api::TASK_IFACE, prop)
            .iter()
            .any(|v| same(v, want))
        {
            return;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero() && changes.next(left),
            "{path}: no PropertiesChanged with {prop} = {want:?} within {SIGNAL_TIMEOUT:?}"
        );
    }
}

/// Do `action` on the sim daemon; the path of the task it started, if any.
fn run(env: &Env, changes: &mut Changes, action: Action, image: &Path) -> Option<String> {
    let ch = env.chassis();
    let sim = env.sim();
    let z = env.cooling();
    match action {
        PowerOn => {
            assert_eq!(ch.power_state().unwrap(), PowerState::Off);
            let t = ch.power_on(no_options()).unwrap().to_string();
            wait_task(env, &t, "Completed");
            env.wait_power(PowerState::On, secs(10.0));
            return Some(t);
        }
        SetRestorePolicy => {
            let next = match ch.restore_policy().unwrap() {
                RestorePolicy::AlwaysOn => RestorePolicy::AlwaysOff,
                _ => RestorePolicy::AlwaysOn,
            };
            ch.set_restore_policy(next, no_options()).unwrap();
        }
        SetIdentify => {
            assert!(!ch.identify_active().unwrap());
            ch.set_identify(true, 60, no_options()).unwrap();
        }
        PowerCycle => {
            let t = ch.power_cycle(no_options()).unwrap().to_string();
            wait_task(env, &t, "Completed");
            env.wait_power(PowerState::On, secs(10.0));
            return Some(t);
        }
        SetHostResponsive => {
            assert!(sim.host_responsive().unwrap());
            sim.set_host_responsive(false, no_options()).unwrap();
        }
        CancelGracefulOff => {
            assert!(!sim.host_responsive().unwrap());
            let t = ch
                .power_off(PowerOffMode::Graceful, 60, no_options())
                .unwrap()
                .to_string();
            // As a client would: cancel once the signal said it may. (A
            // `Get` can see the value before the publisher has read it, and
            // a value replaced before it is read is coalesced away.)
            wait_signal(changes, &t, "Cancellable", &Value::from(true));
            task(env, &t).cancel(no_options()).unwrap();
            wait_task(env, &t, "Cancelled");
            env.wait_power(PowerState::On, secs(10.0));
            return Some(t);
        }
        SetManual => {
            let now = env.fan(FAN).pwm().unwrap();
            let level = if now >= 60 { 30 } else { 95 };
            z.set_manual(level, &[FAN], 60, no_options()).unwrap();
        }
        SetAmbient => {
            let a = sim.ambient().unwrap();
            sim.set_ambient(a + 10.0, no_options()).unwrap();
        }
        SetFanFault => sim.set_fan_fault(FAN, true, no_options()).unwrap(),
        SetSensorFault => sim.set_sensor_fault("cpu0", true, no_options()).unwrap(),
        ThermalGuard => {
            assert_eq!(z.failsafe_level().unwrap(), 80);
            sim.set_ambient(55.0, no_options()).unwrap();
        }
        HwmonFanRemoved => unreachable!("not on the sim platform"),
        FirmwareUpdate => {
            let f = std::fs::File::open(image).unwrap();
            let opts = HashMap::from([(api::update_options::ACTIVATE, Value::from(true))]);
            let t = api::FirmwareManagerProxyBlocking::new(env.conn())
                .unwrap()
                .start_update(zvariant::Fd::from(&f), opts)
                .unwrap()
                .to_string();
            wait_task(env, &t, "Completed");
            return Some(t);
        }
        ClearEventLog => {
            let log = api::LogProxyBlocking::builder(env.conn())
                .path(api::EVENT_LOG_PATH)
                .unwrap()
                .build()
                .unwrap();
            // More than the one entry a clear leaves, so Count changes.
            sim.append_events(5, no_options()).unwrap();
            assert!(log.count().unwrap() > 1);
            log.clear(no_options()).unwrap();
        }
    }
    None
}

/// The object whose `iface` an action changes.
fn target(iface: &str, task: Option<&str>) -> String {
    match iface {
        api::CHASSIS_IFACE => api::CHASSIS_PATH.to_owned(),
        api::COOLING_IFACE => api::FANS_PATH.to_owned(),
        api::FAN_IFACE => api::fan_path(FAN),
        api::SIMULATION_IFACE => api::SIM_PATH.to_owned(),
        api::FIRMWARE_MANAGER_IFACE => api::FIRMWARE_PATH.to_owned(),
        // The slot an update writes (bmc_a runs).
        api::FIRMWARE_IFACE => api::firmware_path("bmc_b").unwrap(),
        api::LOG_IFACE => api::EVENT_LOG_PATH.to_owned(),
        api::TASK_IFACE => task
            .unwrap_or_else(|| panic!("the action of a Task1 property must start a task"))
            .to_owned(),
        other => panic!("no object to watch for {other}: add it to target()"),
    }
}

/// The test configuration with inlet critical at 50 °C and a failsafe
/// level below 100, so the thermal guard changes `FailsafeLevel`, and a
/// power-on that takes a second, so a task's values change well after its
/// object appeared (its first values are read then, not announced).
fn sim_env() -> Env {
    sim_env_with(|_| {})
}

fn sim_env_with(more: impl FnOnce(&mut bmcd_tests::serde_json::Value)) -> Env {
    Env::with(|v| {
        v["platform"]["power_on_delay_ms"] = json!(1000);
        v["cooling"]["failsafe_level"] = json!(80);
        for c in v["cooling"]["curves"].as_array_mut().unwrap() {
            if c["sensor"] == "inlet" {
                c["critical_c"] = json!(50.0);
            }
        }
        more(v);
    })
}

#[test]
fn every_property_change_is_published() {
    // 1 MiB written at 2 MiB/s: the update runs long enough for its
    // UpdateTask to be published before it is "/" again.
    let kit = FwKit::new();
    let env = sim_env_with(|v| set_firmware(v, &kit, 4 << 20, 2 << 20));
    let image = kit.image(&ImageSpec::new("2.0.0", 1 << 20));
    let mut changes = Changes::subscribe(env.conn());

    let mut live = None;
    let mut tasks = HashMap::new();
    let mut checked = 0;
    for &action in SIM_SEQUENCE {
        let from = changes.drain();
        let task = run(&env, &mut changes, action, &image);
        // The first action made a task: every interface is on the bus now.
        live.get_or_insert_with(|| {
            let l = live_interfaces(env.conn());
            check_table(&l);
            l
        });
        if let Some(t) = &task {
            tasks.insert(action, t.clone());
        }
        for (iface, prop, _) in TABLE.iter().filter(|r| r.2 == action) {
            let path = target(iface, task.as_deref());
            check_published(env.conn(), &mut changes, action, from, &path, iface, prop);
            checked += 1;
        }
    }
    // Every row is checked here or by the hwmon test below.
    let hwmon = TABLE.iter().filter(|r| r.2 == HwmonFanRemoved).count();
    let unchecked: Vec<_> = TABLE
        .iter()
        .filter(|r| r.2 != HwmonFanRemoved && !SIM_SEQUENCE.contains(&r.2))
        .collect();
    assert!(unchecked.is_empty(), "rows no test runs: {unchecked:?}");
    assert_eq!(checked + hwmon, TABLE.len());

    // What the tasks ended with.
    let result = task_result(&env, &tasks[&PowerOn]);
    assert_eq!(result, [("PowerState".to_owned(), "On".to_owned())].into());
    let error = task(&env, &tasks[&CancelGracefulOff]).error().unwrap();
    assert_eq!(error.0, "org.bmcd.Error.Cancelled", "{error:?}");

    check_consts(&mut changes, live.as_ref().unwrap());
    env.assert_serving();
}

/// `Task1.Result` as strings.
fn task_result(env: &Env, path: &str) -> BTreeMap<String, String> {
    task(env, path)
        .result()
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k, String::try_from(v).unwrap_or_else(|e| format!("{e}"))))
        .collect()
}

/// The `Progress` of a task never goes down across its `PropertiesChanged`,
/// and ends at 100 (power on, a graceful off that falls back to force
/// after its timeout, a cycle).
#[test]
fn task_progress_never_goes_down() {
    let env = sim_env();
    let mut changes = Changes::subscribe(env.conn());
    let ch = env.chassis();
    env.sim().set_host_responsive(false, no_options()).unwrap();
    let mut tasks = vec![ch.power_on(no_options()).unwrap().to_string()];
    wait_task(&env, &tasks[0], "Completed");
    tasks.push(
        ch.power_off(PowerOffMode::Graceful, 2, no_options())
            .unwrap()
            .to_string(),
    );
    wait_task(&env, &tasks[1], "Completed");
    env.wait_power(PowerState::Off, secs(10.0));
    tasks.push(ch.power_on(no_options()).unwrap().to_string());
    wait_task(&env, &tasks[2], "Completed");
    tasks.push(ch.power_cycle(no_options()).unwrap().to_string());
    wait_task(&env, &tasks[3], "Completed");

    for t in &tasks {
        // The final state's signal, then every progress published before it.
        wait_signal(&mut changes, t, "State", &Value::from("Completed"));
        let progress: Vec<u8> = changes
            .values(0, t, api::TASK_IFACE, "Progress")
            .into_iter()
            .map(|v| u8::try_from(v.try_clone().unwrap()).unwrap())
            .collect();
        assert!(
            progress.windows(2).all(|w| w[0] <= w[1]),
            "{t}: progress went down: {progress:?}"
        );
        assert_eq!(progress.last(), Some(&100), "{t}: {progress:?}");
        assert_eq!(task(&env, t).progress().unwrap(), 100);
    }
    // The graceful off reports its waiting as progress, step by step.
    let off: Vec<&OwnedValue> = changes.values(0, &tasks[1], api::TASK_IFACE, "Progress");
    assert!(off.len() >= 5, "{} progress signals: {off:?}", off.len());
}

// ---------------------------------------------------------------------------
// Fan1.Present, on a fake hwmon tree

#[test]
fn fan_presence_change_is_published_on_hwmon() {
    let sys = FakeHwmon::new(2);
    let env = Env::with_config(sys.config());
    let mut changes = Changes::subscribe(env.conn());
    let f = env.fan(FAN);
    wait_value("fan0 present", secs(5.0), || f.present().unwrap(), |p| *p);
    let live = live_interfaces(env.conn());
    check_table_rows_live(&live);

    let rows: Vec<_> = TABLE.iter().filter(|r| r.2 == HwmonFanRemoved).collect();
    assert!(!rows.is_empty());
    let from = changes.drain();
    sys.remove_tach(1);
    for (iface, prop, action) in rows {
        let path = target(iface, None);
        check_published(env.conn(), &mut changes, *action, from, &path, iface, prop);
    }
    assert!(!f.present().unwrap());
    check_consts(&mut changes, &live);
}

/// The hwmon daemon serves the `Fan1` properties of the table (it has no
/// `Simulation1` and no task yet, so the full check is the sim test's).
fn check_table_rows_live(live: &BTreeMap<String, (String, Vec<Prop>)>) {
    let (_, props) = live.get(api::FAN_IFACE).expect("Fan1 served");
    for (iface, name, _) in TABLE.iter().filter(|r| r.0 == api::FAN_IFACE) {
        assert!(props.iter().any(|p| p.name == *name), "{iface}.{name}");
    }
}

#[test]
fn introspection_properties_are_parsed_with_their_annotations() {
    let doc = r#"<node><interface name="org.x.A">
      <annotation name="org.freedesktop.DBus.Property.EmitsChangedSignal" value="const"/>
      <method name="M"><annotation name="org.freedesktop.DBus.Property.EmitsChangedSignal" value="false"/></method>
      <property name="P" type="s" access="read"/>
      <property name="Q" type="s" access="read">
        <annotation name="org.freedesktop.DBus.Property.EmitsChangedSignal" value="true"/>
      </property></interface>
      <interface name="org.x.B"><property name="R" type="u" access="read"/></interface></node>"#;
    let ifs = xml::interfaces(doc).unwrap();
    let a = properties(&ifs[0].1);
    let b = properties(&ifs[1].1);
    let p = |n: &str, e: &str| Prop {
        name: n.into(),
        emits: e.into(),
    };
    assert_eq!(a, [p("P", "const"), p("Q", "true")]);
    assert_eq!(b, [p("R", "true")]);
}
