//! The authorization policy for real: bmcd on a private dbus-daemon
//! configured like a system bus with the shipped `config/dbus/org.bmcd.conf`
//! included, and clients (`bmcctl` and `busctl`) run with `setpriv` as the
//! unprivileged `nobody` (uid 65534), with the admin group, with the
//! operator group, or with no group.
//!
//! Groups: instead of creating `bmc-admin`/`bmc-operator` on the machine,
//! the daemon's configuration names `staff` and `users` (groups every
//! Debian system has) and the bus gets a copy of the shipped policy with
//! those two names replaced and nothing else changed
//! (`bmcd_tests::security::policy_with_test_groups`). The groups are given
//! to `nobody` only by `setpriv --groups`; nothing on the machine changes.
//!
//! Every row of the policy table (`bmcd --print-policy`, the same table as
//! the README's) is tested both ways: allowed for a caller with the row's
//! least role and denied, changing nothing, for a caller with the role just
//! below. A row without a case here fails the tests, so a new method cannot
//! ship untested. Sensitive rows are allowed through bmcctl with
//! `--password-stdin` (nobody's own password, through pam_wrapper); busctl
//! makes one call per process and so can only show that the role check
//! passed (`AuthenticationRequired`, not `PermissionDenied`).

use std::process::Command;

use bmcd_tests::bmcd_api::{
    self, CoolingMode, PowerOffMode, PowerState, RestorePolicy, Transition, CHASSIS_IFACE,
    CHASSIS_PATH, COOLING_IFACE, DUMPS_PATH, DUMP_IFACE, DUMP_MANAGER_IFACE, EVENT_LOG_PATH,
    FANS_PATH, FIRMWARE_MANAGER_IFACE, FIRMWARE_PATH, LOG_IFACE, ROOT_PATH, SESSION_IFACE,
    SIMULATION_IFACE, SIM_PATH, TASKS_PATH, TASK_IFACE,
};
use bmcd_tests::security::{Pam, SecEnv, Who, ADMIN_GROUP, OPERATOR_GROUP};
use bmcd_tests::{bmcd_bin, no_options, run, secs, workspace_root, Run};

const ROOT_PW: &str = "Root-pw.4711";
const NOBODY_PW: &str = "Nobody-pw.0815";

fn pam() -> Pam {
    Pam::users(&[("root", ROOT_PW), ("nobody", NOBODY_PW)])
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Role {
    ReadOnly,
    Operator,
    Administrator,
}

impl Role {
    fn parse(s: &str) -> Role {
        match s {
            "ReadOnly" => Role::ReadOnly,
            "Operator" => Role::Operator,
            "Administrator" => Role::Administrator,
            other => panic!("unknown role {other:?} in the policy table"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Role::ReadOnly => "ReadOnly",
            Role::Operator => "Operator",
            Role::Administrator => "Administrator",
        }
    }

    /// The test caller that has exactly this role.
    fn caller(self) -> Who {
        match self {
            Role::ReadOnly => Who::reader(),
            Role::Operator => Who::operator(),
            Role::Administrator => Who::admin(),
        }
    }

    /// The role just below, if any.
    fn below(self) -> Option<Role> {
        match self {
            Role::ReadOnly => None,
            Role::Operator => Some(Role::ReadOnly),
            Role::Administrator => Some(Role::Operator),
        }
    }
}

/// One row of `bmcd --print-policy`.
#[derive(Debug, Clone)]
struct Row {
    iface: String,
    method: String,
    role: Role,
    sensitive: bool,
}

fn print_policy() -> String {
    let r = run(Command::new(bmcd_bin()).arg("--print-policy"), secs(30.0));
    r.success();
    r.stdout
}

/// The method rows of the table (the first row, about reading, is checked
/// by `readers_may_read_introspect_and_authenticate`).
fn table() -> Vec<Row> {
    let text = print_policy();
    let mut rows = Vec::new();
    for line in text.lines().filter(|l| l.starts_with("| `org.bmcd.")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        assert!(cells.len() >= 6, "bad table line {line:?}");
        let unquote = |s: &str| s.trim_matches('`').to_owned();
        rows.push(Row {
            iface: unquote(cells[1]),
            method: unquote(cells[2]),
            role: Role::parse(cells[3]),
            sensitive: match cells[4] {
                "yes" => true,
                "no" => false,
                other => panic!("bad re-authentication cell {other:?} in {line:?}"),
            },
        });
    }
    assert!(rows.len() >= 14, "too few rows in:\n{text}");
    rows
}

/// How to call a method, and what to set up before and check after an
/// allowed call.
struct Case {
    iface: &'static str,
    method: &'static str,
    path: &'static str,
    /// busctl's signature and arguments.
    busctl: &'static [&'static str],
    /// bmcctl's arguments, or why bmcctl has no command for it.
    bmcctl: Result<&'static [&'static str], &'static str>,
    /// The host must be on (true) or off (false) before an allowed call.
    host_on: Option<bool>,
}

/// Every method, in an order that keeps the allowed calls meaningful
/// (manual before auto, power on before the others, simulated faults
/// last).
const CASES: &[Case] = &[
    Case {
        iface: SESSION_IFACE,
        method: "WhoAmI",
        path: ROOT_PATH,
        busctl: &[],
        bmcctl: Ok(&["whoami"]),
        host_on: None,
    },
    Case {
        iface: SESSION_IFACE,
        method: "Authenticate",
        path: ROOT_PATH,
        busctl: &["sa{sv}", NOBODY_PW, "0"],
        bmcctl: Err(
            "bmcctl authenticates only when a sensitive call asks (the Administrator rows)",
        ),
        host_on: None,
    },
    Case {
        iface: CHASSIS_IFACE,
        method: "SetIdentify",
        path: CHASSIS_PATH,
        busctl: &["bua{sv}", "true", "0", "0"],
        bmcctl: Ok(&["chassis", "identify", "on"]),
        host_on: None,
    },
    Case {
        iface: CHASSIS_IFACE,
        method: "PowerOn",
        path: CHASSIS_PATH,
        busctl: &["a{sv}", "0"],
        bmcctl: Ok(&["chassis", "power", "on"]),
        host_on: Some(false),
    },
    Case {
        iface: CHASSIS_IFACE,
        method: "Reset",
        path: CHASSIS_PATH,
        busctl: &["a{sv}", "0"],
        bmcctl: Ok(&["--yes", "chassis", "power", "reset"]),
        host_on: Some(true),
    },
    Case {
        iface: CHASSIS_IFACE,
        method: "PowerCycle",
        path: CHASSIS_PATH,
        busctl: &["a{sv}", "0"],
        bmcctl: Ok(&["--yes", "chassis", "power", "cycle"]),
        host_on: Some(true),
    },
    Case {
        iface: CHASSIS_IFACE,
        method: "PowerOff",
        path: CHASSIS_PATH,
        busctl: &["sua{sv}", "Force", "0", "0"],
        bmcctl: Ok(&["--yes", "chassis", "power", "off", "--force"]),
        host_on: Some(true),
    },
    Case {
        iface: CHASSIS_IFACE,
        method: "SetRestorePolicy",
        path: CHASSIS_PATH,
        busctl: &["sa{sv}", "AlwaysOn", "0"],
        bmcctl: Ok(&["--password-stdin", "chassis", "policy", "set", "AlwaysOn"]),
        host_on: None,
    },
    Case {
        iface: COOLING_IFACE,
        method: "SetManual",
        path: FANS_PATH,
        busctl: &["yasua{sv}", "60", "0", "0", "0"],
        bmcctl: Ok(&["--password-stdin", "fan", "mode", "manual", "--level", "60"]),
        host_on: None,
    },
    Case {
        iface: COOLING_IFACE,
        method: "SetAuto",
        path: FANS_PATH,
        busctl: &["a{sv}", "0"],
        bmcctl: Ok(&["fan", "mode", "auto"]),
        host_on: None,
    },
    Case {
        iface: SIMULATION_IFACE,
        method: "SetAmbient",
        path: SIM_PATH,
        busctl: &["da{sv}", "31.5", "0"],
        bmcctl: Err("bmcctl has no command for the simulation knobs"),
        host_on: None,
    },
    Case {
        iface: SIMULATION_IFACE,
        method: "SetHostResponsive",
        path: SIM_PATH,
        busctl: &["ba{sv}", "false", "0"],
        bmcctl: Err("bmcctl has no command for the simulation knobs"),
        host_on: None,
    },
    Case {
        iface: SIMULATION_IFACE,
        method: "SetFanFault",
        path: SIM_PATH,
        busctl: &["sba{sv}", "fan0", "true", "0"],
        bmcctl: Err("bmcctl has no command for the simulation knobs"),
        host_on: None,
    },
    Case {
        iface: SIMULATION_IFACE,
        method: "SetSensorFault",
        path: SIM_PATH,
        busctl: &["sba{sv}", "inlet", "true", "0"],
        bmcctl: Err("bmcctl has no command for the simulation knobs"),
        host_on: None,
    },
    Case {
        iface: SIMULATION_IFACE,
        method: "AppendEvents",
        path: SIM_PATH,
        busctl: &["ua{sv}", "3", "0"],
        bmcctl: Err("bmcctl has no command for the simulation knobs"),
        host_on: None,
    },
    Case {
        iface: LOG_IFACE,
        method: "GetEntries",
        path: EVENT_LOG_PATH,
        busctl: &["tua{sv}", "0", "10", "0"],
        bmcctl: Err("tests/tests/logs.rs covers reading the logs"),
        host_on: None,
    },
    Case {
        iface: LOG_IFACE,
        method: "Clear",
        path: EVENT_LOG_PATH,
        busctl: &["a{sv}", "0"],
        bmcctl: Err("tests/tests/logs.rs covers Clear with re-authentication"),
        host_on: None,
    },
    // Dumps: DumpEntry1's `path` stands for the newest dump (one is made
    // as root first if there is none).
    Case {
        iface: DUMP_MANAGER_IFACE,
        method: "Create",
        path: DUMPS_PATH,
        busctl: &["a{sv}", "0"],
        bmcctl: Err("tests/tests/dump.rs covers dumps"),
        host_on: None,
    },
    Case {
        iface: DUMP_IFACE,
        method: "Open",
        path: DUMPS_PATH,
        busctl: &["a{sv}", "0"],
        bmcctl: Err("tests/tests/dump.rs covers dumps"),
        host_on: None,
    },
    Case {
        iface: DUMP_IFACE,
        method: "Delete",
        path: DUMPS_PATH,
        busctl: &["a{sv}", "0"],
        bmcctl: Err("tests/tests/dump.rs covers dumps"),
        host_on: None,
    },
    // Firmware: busctl cannot pass a descriptor, so the `h` methods go
    // through gdbus, which passes its own stdin (an empty file here) for
    // `@h 0` (see busctl_call below). The sensitive ones stop at the
    // re-authentication; Inspect describes the empty file as an invalid
    // image.
    Case {
        iface: FIRMWARE_MANAGER_IFACE,
        method: "Inspect",
        path: FIRMWARE_PATH,
        busctl: &["ha{sv}", "@h 0", "{}"],
        bmcctl: Err("tests/tests/firmware.rs covers Inspect with real images"),
        host_on: None,
    },
    Case {
        iface: FIRMWARE_MANAGER_IFACE,
        method: "StartUpdate",
        path: FIRMWARE_PATH,
        busctl: &["ha{sv}", "@h 0", "{}"],
        bmcctl: Err("tests/tests/firmware.rs covers updates with real images"),
        host_on: None,
    },
    Case {
        iface: FIRMWARE_MANAGER_IFACE,
        method: "Activate",
        path: FIRMWARE_PATH,
        busctl: &["sa{sv}", "bmc_a", "0"],
        bmcctl: Err("tests/tests/firmware.rs covers Activate"),
        host_on: None,
    },
    Case {
        iface: FIRMWARE_MANAGER_IFACE,
        method: "Rollback",
        path: FIRMWARE_PATH,
        busctl: &["a{sv}", "0"],
        bmcctl: Err("tests/tests/firmware.rs covers Rollback"),
        host_on: None,
    },
    // Last: it needs a cancellable task of the caller's own (a graceful
    // power off that the unresponsive simulated host makes wait); `path`
    // stands for the newest task.
    Case {
        iface: TASK_IFACE,
        method: "Cancel",
        path: TASKS_PATH,
        busctl: &["a{sv}", "0"],
        bmcctl: Err("the task id is only known at run time; tests/tests/task_cli.rs covers it"),
        host_on: Some(true),
    },
];

/// The cases in order, each with its row; panics if the table and the
/// cases differ.
fn cases_with_rows() -> Vec<(&'static Case, Row)> {
    let rows = table();
    for r in &rows {
        assert!(
            CASES
                .iter()
                .any(|c| c.iface == r.iface && c.method == r.method),
            "the policy table has {}.{} but this test has no case for it: add one to CASES",
            r.iface,
            r.method
        );
    }
    CASES
        .iter()
        .map(|c| {
            let row = rows
                .iter()
                .find(|r| r.iface == c.iface && r.method == c.method)
                .unwrap_or_else(|| {
                    panic!(
                        "{}.{} is not in the policy table any more",
                        c.iface, c.method
                    )
                })
                .clone();
            (c, row)
        })
        .collect()
}

/// What can be seen of the daemon's state; denied calls must not change it.
#[derive(Debug, PartialEq)]
struct Snapshot {
    power: PowerState,
    pending: Transition,
    last_change: u64,
    restore: RestorePolicy,
    identify: bool,
    mode: CoolingMode,
    manual_level: u8,
    ambient: f64,
    host_responsive: bool,
}

fn snapshot(env: &SecEnv) -> Snapshot {
    let c = env.chassis();
    let z = env.cooling();
    let s = env.sim();
    Snapshot {
        power: c.power_state().unwrap(),
        pending: c.pending_transition().unwrap(),
        last_change: c.last_state_change_time().unwrap(),
        restore: c.restore_policy().unwrap(),
        identify: c.identify_active().unwrap(),
        mode: z.mode().unwrap(),
        manual_level: z.manual_level().unwrap(),
        ambient: s.ambient().unwrap(),
        host_responsive: s.host_responsive().unwrap(),
    }
}

/// Bring the host to `on` as root and wait until it has settled.
fn host(env: &SecEnv, on: bool) {
    let c = env.chassis();
    if on {
        c.power_on(no_options()).unwrap();
        env.wait_power(PowerState::On, secs(10.0));
    } else {
        c.power_off(PowerOffMode::Force, 0, no_options()).unwrap();
        env.wait_power(PowerState::Off, secs(10.0));
    }
}

/// Check the effect of an allowed (non-sensitive, or sensitive through
/// bmcctl) call of `method`, then undo what would disturb later cases.
fn check_effect(env: &SecEnv, method: &str, before: &Snapshot, sensitive_done: bool) {
    let c = env.chassis();
    let z = env.cooling();
    let s = env.sim();
    match method {
        "PowerOn" | "Reset" => {
            env.wait_power(PowerState::On, secs(10.0));
        }
        "PowerCycle" => {
            env.wait_power(PowerState::On, secs(10.0));
            assert!(c.last_state_change_time().unwrap() > before.last_change);
        }
        "PowerOff" => {
            env.wait_power(PowerState::Off, secs(10.0));
        }
        "SetIdentify" => {
            assert!(c.identify_active().unwrap());
            c.set_identify(false, 0, no_options()).unwrap();
        }
        "SetRestorePolicy" if sensitive_done => {
            assert_eq!(c.restore_policy().unwrap(), RestorePolicy::AlwaysOn);
            // Back, as root (which needs its own fresh authentication).
            bmcd_api::SessionProxyBlocking::new(env.conn())
                .unwrap()
                .authenticate(ROOT_PW, no_options())
                .unwrap();
            c.set_restore_policy(RestorePolicy::AlwaysOff, no_options())
                .unwrap();
        }
        "SetManual" if sensitive_done => {
            assert_eq!(z.mode().unwrap(), CoolingMode::Manual);
            assert_eq!(z.manual_level().unwrap(), 60);
        }
        "SetAuto" => {
            assert_eq!(z.mode().unwrap(), CoolingMode::Auto);
        }
        "SetAmbient" => {
            assert_eq!(s.ambient().unwrap(), 31.5);
            s.set_ambient(before.ambient, Default::default()).unwrap();
        }
        "SetHostResponsive" => {
            assert!(!s.host_responsive().unwrap());
            s.set_host_responsive(true, Default::default()).unwrap();
        }
        "SetFanFault" => {
            s.set_fan_fault("fan0", false, Default::default()).unwrap();
        }
        "SetSensorFault" => {
            s.set_sensor_fault("inlet", false, Default::default())
                .unwrap();
        }
        "Create" => {
            bmcd_tests::wait_until("the dump object", secs(60.0), || newest_dump(env).is_some());
        }
        "Cancel" => {
            let task = bmcd_api::TaskProxyBlocking::builder(env.conn())
                .path(newest_task(env))
                .unwrap()
                .build()
                .unwrap();
            bmcd_tests::wait_until("the task to be cancelled", secs(10.0), || {
                task.state().ok() == Some(bmcd_api::TaskState::Cancelled)
            });
            s.set_host_responsive(true, Default::default()).unwrap();
        }
        _ => {}
    }
}

/// Which gate refuses `who` calling `case`: the bus policy lets only root
/// and the two groups reach the mutating interfaces; bmcd decides the rest.
fn expected_denial(case: &Case, row: &Row, system_like: bool, who_role: Role) -> String {
    let mutating = [
        CHASSIS_IFACE,
        COOLING_IFACE,
        SIMULATION_IFACE,
        TASK_IFACE,
        FIRMWARE_MANAGER_IFACE,
        LOG_IFACE,
    ]
    .contains(&case.iface);
    // The dumps: only root and the admin group get through the bus.
    let admin_only = [DUMP_MANAGER_IFACE, DUMP_IFACE].contains(&case.iface);
    if system_like && ((mutating && who_role == Role::ReadOnly) || admin_only) {
        "bus".into()
    } else {
        format!("needs the {} role", row.role.name())
    }
}

/// The paths of every object the ObjectManager lists now.
fn object_paths(env: &SecEnv) -> Vec<String> {
    let om = bmcd_tests::zbus::blocking::fdo::ObjectManagerProxy::builder(env.conn())
        .destination(bmcd_api::BUS_NAME)
        .unwrap()
        .path(ROOT_PATH)
        .unwrap()
        .build()
        .unwrap();
    om.get_managed_objects()
        .unwrap()
        .into_keys()
        .map(|p| p.to_string())
        .collect()
}

/// The newest task's object path.
fn newest_task(env: &SecEnv) -> String {
    object_paths(env)
        .iter()
        .filter_map(|p| bmcd_api::task_id(p))
        .max()
        .map(bmcd_api::task_path)
        .expect("no task object")
}

/// Before the allowed call of `case` by `who`: for `Task1.Cancel`, a task
/// of `who`'s own that can be cancelled.
fn prepare(env: &SecEnv, who: &Who, case: &Case) {
    if case.method != "Cancel" {
        return;
    }
    env.sim()
        .set_host_responsive(false, Default::default())
        .unwrap();
    env.busctl_call(
        who,
        CHASSIS_PATH,
        CHASSIS_IFACE,
        "PowerOff",
        &["sua{sv}", "Graceful", "60", "0"],
    )
    .success();
    let task = bmcd_api::TaskProxyBlocking::builder(env.conn())
        .path(newest_task(env))
        .unwrap()
        .build()
        .unwrap();
    bmcd_tests::wait_until("the task to become cancellable", secs(10.0), || {
        task.cancellable().unwrap_or(false)
    });
}

/// The newest dump's object path, if there is a dump.
fn newest_dump(env: &SecEnv) -> Option<String> {
    object_paths(env)
        .iter()
        .filter_map(|p| {
            p.strip_prefix(DUMPS_PATH)?
                .strip_prefix('/')?
                .parse::<u64>()
                .ok()
        })
        .max()
        .map(bmcd_api::dump_path)
}

/// The newest dump, made as root (and waited for) if there is none.
fn a_dump(env: &SecEnv) -> String {
    if let Some(p) = newest_dump(env) {
        return p;
    }
    bmcd_api::DumpManagerProxyBlocking::new(env.conn())
        .unwrap()
        .create(no_options())
        .unwrap();
    let mut found = None;
    bmcd_tests::wait_until("a dump object", secs(60.0), || {
        found = newest_dump(env);
        found.is_some()
    });
    found.unwrap_or_default()
}

fn busctl_call(env: &SecEnv, who: &Who, case: &Case) -> Run {
    let path = if case.iface == TASK_IFACE {
        newest_task(env)
    } else if case.iface == DUMP_IFACE {
        a_dump(env)
    } else {
        case.path.to_owned()
    };
    if let Some(("ha{sv}", args)) = case.busctl.split_first().map(|(s, a)| (*s, a)) {
        let method = format!("{}.{}", case.iface, case.method);
        let mut r = env.gdbus_call(who, &path, &method, args);
        // The same words busctl uses for a refusal by the bus policy.
        if r.stderr.contains("org.freedesktop.DBus.Error.AccessDenied") {
            r.stderr.push_str("\n(Access denied)");
        }
        return r;
    }
    env.busctl_call(who, &path, case.iface, case.method, case.busctl)
}

/// Every boundary through busctl; `system_like` tells which gate to expect.
fn boundaries_through_busctl(env: &SecEnv, system_like: bool) {
    let cases = cases_with_rows();
    // A task object for Task1 (a power on, as root).
    host(env, true);
    // Denied for the role just below: nothing changes.
    for (case, row) in &cases {
        let Some(below) = row.role.below() else {
            continue;
        };
        let before = snapshot(env);
        let r = busctl_call(env, &below.caller(), case);
        let what = format!("{}.{} as {}", case.iface, case.method, below.name());
        assert_ne!(r.code, 0, "{what} was allowed:\n{r}");
        match expected_denial(case, row, system_like, below).as_str() {
            "bus" => assert!(
                r.stderr.contains("Access denied"),
                "{what}: not refused by the bus policy:\n{r}"
            ),
            text => assert!(r.stderr.contains(text), "{what}: not refused by bmcd:\n{r}"),
        }
        assert_eq!(snapshot(env), before, "{what} changed something");
    }
    // Allowed for the least role.
    for (case, row) in &cases {
        if let Some(on) = case.host_on {
            host(env, on);
        }
        let who = row.role.caller();
        prepare(env, &who, case);
        let before = snapshot(env);
        let r = busctl_call(env, &who, case);
        let what = format!("{}.{} as {}", case.iface, case.method, row.role.name());
        if row.sensitive {
            // Past the role check; busctl cannot hold a grant for the call.
            assert_ne!(r.code, 0, "{what} went through without a password:\n{r}");
            assert!(
                r.stderr.contains("authenticate first"),
                "{what}: not AuthenticationRequired:\n{r}"
            );
            assert_eq!(snapshot(env), before, "{what} changed something");
        } else {
            assert_eq!(r.code, 0, "{what} was refused:\n{r}");
            check_effect(env, case.method, &before, false);
        }
        if case.method == "WhoAmI" {
            assert!(r.stdout.contains("\"ReadOnly\""), "{r}");
        }
    }
}

#[test]
fn every_role_boundary_through_busctl() {
    let env = SecEnv::system_like(pam(), |_| {});
    boundaries_through_busctl(&env, true);
    env.assert_serving();
}

#[test]
fn every_role_boundary_without_the_bus_policy_bmcd_alone() {
    // The bus policy is only the first gate: on an open bus every call
    // reaches bmcd, which refuses by role on its own.
    let env = SecEnv::open(pam(), |_| {});
    boundaries_through_busctl(&env, false);
    env.assert_serving();
}

#[test]
fn every_role_boundary_through_bmcctl() {
    let env = SecEnv::system_like(pam(), |_| {});
    let cases = cases_with_rows();
    let stdin = format!("{NOBODY_PW}\n");
    let mut covered = 0;
    for (case, row) in &cases {
        let args = match case.bmcctl {
            Ok(a) => a,
            Err(why) => {
                eprintln!("{}.{}: busctl only: {why}", case.iface, case.method);
                continue;
            }
        };
        covered += 1;
        // Denied for the role just below: exit 3, one line, nothing changed.
        if let Some(below) = row.role.below() {
            let before = snapshot(&env);
            let r = env.bmcctl_as(&below.caller(), args, Some(&stdin));
            let what = format!("bmcctl {} as {}", args.join(" "), below.name());
            assert_eq!(r.code, 3, "{what}:\n{r}");
            assert_eq!(r.stderr.lines().count(), 1, "{what}: not one line:\n{r}");
            match expected_denial(case, row, true, below).as_str() {
                "bus" => assert!(
                    r.stderr.contains("org.freedesktop.DBus.Error.AccessDenied"),
                    "{what}: not refused by the bus policy:\n{r}"
                ),
                text => assert!(
                    r.stderr.contains(text) && r.stderr.contains("org.bmcd.Error.PermissionDenied"),
                    "{what}: not refused by bmcd:\n{r}"
                ),
            }
            assert_eq!(snapshot(&env), before, "{what} changed something");
        }
        // Allowed for the least role (sensitive ones with nobody's own
        // password on stdin).
        if let Some(on) = case.host_on {
            host(&env, on);
        }
        let before = snapshot(&env);
        let r = env.bmcctl_as(&row.role.caller(), args, Some(&stdin));
        let what = format!("bmcctl {} as {}", args.join(" "), row.role.name());
        assert_eq!(r.code, 0, "{what} was refused:\n{r}");
        check_effect(&env, case.method, &before, true);
        if case.method == "WhoAmI" {
            r.stdout_has("ReadOnly").stdout_has("nobody");
        }
    }
    assert!(covered >= 9, "only {covered} rows through bmcctl");
    // The Administrator rows made nobody authenticate with its password.
    let log = env.daemon.log();
    assert_eq!(
        log.matches("authentication succeeded: user=nobody uid=65534")
            .count(),
        2,
        "{log}"
    );
    assert!(!log.contains(NOBODY_PW) && !log.contains(ROOT_PW));
    env.assert_serving();
}

#[test]
fn roles_come_from_the_callers_groups() {
    let env = SecEnv::system_like(pam(), |_| {});
    for (who, role) in [
        (Who::root(), "Administrator"),
        (Who::admin(), "Administrator"),
        (Who::operator(), "Operator"),
        (Who::reader(), "ReadOnly"),
    ] {
        let r = env.busctl_call(&who, ROOT_PATH, SESSION_IFACE, "WhoAmI", &[]);
        r.success();
        let name = if who.uid == 0 { "root" } else { "nobody" };
        assert_eq!(
            r.stdout.trim(),
            format!("uss {} \"{name}\" \"{role}\"", who.uid),
            "{}",
            who.label
        );
        let r = env.bmcctl_as(&who, &["--json", "whoami"], None);
        let v = r.success().json();
        assert_eq!(v["Role"], role, "{}: {r}", who.label);
        assert_eq!(v["Uid"], who.uid, "{}: {r}", who.label);
    }
    // Both groups at once: the higher role.
    let both = Who {
        groups: vec![
            bmcd_tests::security::gid_of(OPERATOR_GROUP),
            bmcd_tests::security::gid_of(ADMIN_GROUP),
        ],
        ..Who::reader()
    };
    let r = env.busctl_call(&both, ROOT_PATH, SESSION_IFACE, "WhoAmI", &[]);
    r.success().stdout_has("\"Administrator\"");
}

#[test]
fn readers_may_read_introspect_and_authenticate() {
    let env = SecEnv::system_like(pam(), |_| {});
    let reader = Who::reader();

    let ok = |args: &[&str]| {
        let r = env.busctl_as(&reader, args);
        assert_eq!(r.code, 0, "a reader was refused:\n{r}");
        r
    };
    ok(&["introspect", bmcd_api::BUS_NAME, CHASSIS_PATH])
        .stdout_has("org.bmcd.Chassis1")
        .stdout_has(".SetRestorePolicy");
    ok(&[
        "get-property",
        bmcd_api::BUS_NAME,
        CHASSIS_PATH,
        CHASSIS_IFACE,
        "PowerState",
    ])
    .stdout_has("\"Off\"");
    ok(&[
        "call",
        bmcd_api::BUS_NAME,
        FANS_PATH,
        "org.freedesktop.DBus.Properties",
        "GetAll",
        "s",
        COOLING_IFACE,
    ])
    .stdout_has("Mode");
    ok(&[
        "call",
        bmcd_api::BUS_NAME,
        ROOT_PATH,
        "org.freedesktop.DBus.ObjectManager",
        "GetManagedObjects",
    ])
    .stdout_has("org.bmcd.Fan1");
    ok(&[
        "call",
        bmcd_api::BUS_NAME,
        ROOT_PATH,
        "org.freedesktop.DBus.Peer",
        "Ping",
    ]);
    ok(&[
        "call",
        bmcd_api::BUS_NAME,
        ROOT_PATH,
        SESSION_IFACE,
        "WhoAmI",
    ])
    .stdout_has("ReadOnly");
    ok(&[
        "call",
        bmcd_api::BUS_NAME,
        ROOT_PATH,
        SESSION_IFACE,
        "Authenticate",
        "sa{sv}",
        NOBODY_PW,
        "0",
    ]);
    // Everything bmcctl reads.
    for args in [
        &["chassis", "status"][..],
        &["chassis", "policy"],
        &["fan", "list"],
        &["fan", "show", "fan0"],
        &["fan", "mode"],
        &["whoami"],
    ] {
        let r = env.bmcctl_as(&reader, args, None);
        assert_eq!(r.code, 0, "a reader was refused:\n{r}");
    }
}

#[test]
fn only_root_owns_the_name_and_nobody_sets_properties() {
    let env = SecEnv::system_like(pam(), |_| {});
    let before = snapshot(&env);
    // Setting a property: denied by the bus to everyone but root, and
    // read-only for root too.
    for who in [Who::admin(), Who::operator(), Who::reader()] {
        let r = env.busctl_as(
            &who,
            &[
                "set-property",
                bmcd_api::BUS_NAME,
                CHASSIS_PATH,
                CHASSIS_IFACE,
                "RestorePolicy",
                "s",
                "AlwaysOn",
            ],
        );
        assert_ne!(r.code, 0, "{}:\n{r}", who.label);
        r.stderr_has("Access denied");
    }
    let r = env.busctl(&[
        "set-property",
        bmcd_api::BUS_NAME,
        CHASSIS_PATH,
        CHASSIS_IFACE,
        "RestorePolicy",
        "s",
        "AlwaysOn",
    ]);
    assert_ne!(r.code, 0, "root set a read-only property:\n{r}");
    assert_eq!(snapshot(&env), before);
    // Owning org.bmcd: not even an Administrator by group.
    for who in [Who::admin(), Who::reader()] {
        let r = env.busctl_as(
            &who,
            &[
                "call",
                "org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus",
                "RequestName",
                "su",
                bmcd_api::BUS_NAME,
                "4",
            ],
        );
        assert_ne!(r.code, 0, "{} may own org.bmcd:\n{r}", who.label);
        r.stderr_has("Access denied");
    }
    env.assert_serving();
}

/// The README shows the same table as `bmcd --print-policy`, between
/// `<!-- policy-table -->` and `<!-- /policy-table -->`.
#[test]
fn readme_policy_table_matches_the_code() {
    let want = print_policy();
    let path = workspace_root().join("README.md");
    let readme = std::fs::read_to_string(&path).expect("read README.md");
    let (start, end) = ("<!-- policy-table -->", "<!-- /policy-table -->");
    let section = readme
        .split_once(start)
        .and_then(|(_, rest)| rest.split_once(end))
        .map(|(table, _)| table)
        .unwrap_or_else(|| {
            panic!(
                "README.md has no policy table between {start} and {end}; paste this \
                 (the output of `bmcd --print-policy`):\n{start}\n{want}{end}"
            )
        });
    let norm = |s: &str| -> Vec<String> {
        s.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        norm(section),
        norm(&want),
        "README.md's policy table differs from `bmcd --print-policy`; replace it with:\n{want}"
    );
}
