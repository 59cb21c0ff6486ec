//! Generic D-Bus tools against the daemon: busctl, gdbus, dbus-send. What a
//! shell user or another language's binding sees.

use bmcd_tests::bmcd_api::PowerState;
use bmcd_tests::{secs, wait_value, Daemon, Env, TestBus};

const CHASSIS: &str = "/org/bmcd/chassis0";
const CH: &str = "org.bmcd.Chassis1";

#[test]
fn busctl_introspect_get_call_and_errors() {
    let env = Env::new();
    let r = env.busctl(&["introspect", "org.bmcd", CHASSIS]);
    r.success()
        .stdout_has(".PowerOn")
        .stdout_has(".SetIdentify")
        .stdout_has("bua{sv}")
        .stdout_has(".PowerState")
        .stdout_has("emits-change");
    env.busctl(&["tree", "org.bmcd"])
        .success()
        .stdout_has("/org/bmcd/fans/fan3")
        .stdout_has("/org/bmcd/sim");

    env.busctl(&["get-property", "org.bmcd", CHASSIS, CH, "PowerState"])
        .success()
        .stdout_has("s \"Off\"");
    env.busctl(&[
        "get-property",
        "org.bmcd",
        "/org/bmcd/fans/fan1",
        "org.bmcd.Fan1",
        "Name",
    ])
    .success()
    .stdout_has("s \"fan1\"");

    // A method call with an a{sv} argument.
    env.busctl(&[
        "call",
        "org.bmcd",
        CHASSIS,
        CH,
        "SetIdentify",
        "bua{sv}",
        "true",
        "0",
        "0",
    ])
    .success();
    env.busctl(&["get-property", "org.bmcd", CHASSIS, CH, "IdentifyActive"])
        .success()
        .stdout_has("b true");
    env.busctl(&[
        "call",
        "org.bmcd",
        CHASSIS,
        CH,
        "SetRestorePolicy",
        "sa{sv}",
        "Restore",
        "0",
    ])
    .success();
    assert_eq!(
        env.chassis().restore_policy().unwrap(),
        bmcd_tests::bmcd_api::RestorePolicy::Restore
    );
    env.busctl(&["call", "org.bmcd", CHASSIS, CH, "PowerOn", "a{sv}", "0"])
        .success();
    env.wait_power(PowerState::On, secs(5.0));

    // Properties are read-only: set-property fails, nothing changes.
    let r = env.busctl(&[
        "set-property",
        "org.bmcd",
        CHASSIS,
        CH,
        "IdentifyActive",
        "b",
        "false",
    ]);
    assert_ne!(r.code, 0, "{r}");
    assert!(env.chassis().identify_active().unwrap());

    // A bad word: the daemon's message (busctl does not print error names).
    env.busctl(&[
        "call",
        "org.bmcd",
        CHASSIS,
        CH,
        "SetRestorePolicy",
        "sa{sv}",
        "Sometimes",
        "0",
    ])
    .expect_code(1)
    .stderr_has("'Sometimes' is not a valid RestorePolicy");
    // An unknown option key.
    env.busctl(&[
        "call",
        "org.bmcd",
        CHASSIS,
        CH,
        "SetIdentify",
        "bua{sv}",
        "true",
        "0",
        "1",
        "bogus",
        "u",
        "1",
    ])
    .expect_code(1)
    .stderr_has("unknown option 'bogus'");

    // Wrong argument types, wrong counts, unknown members: errors, and the
    // daemon is unaffected.
    for args in [
        &["SetIdentify", "su", "yes", "1"][..],
        &["SetIdentify", "b", "true"][..],
        &["PowerOff", "sua{sv}u", "Force", "0", "0", "7"][..],
        &["SetRestorePolicy", "u", "3"][..],
        &["NoSuchMethod"][..],
    ] {
        let mut full = vec!["call", "org.bmcd", CHASSIS, CH];
        full.extend_from_slice(args);
        let r = env.busctl(&full);
        assert_ne!(r.code, 0, "{r}");
        assert!(!r.stderr.trim().is_empty(), "{r}");
    }
    env.busctl(&[
        "call",
        "org.bmcd",
        "/org/bmcd/nothing",
        CH,
        "PowerOn",
        "a{sv}",
        "0",
    ])
    .expect_code(1);
    env.assert_serving();
}

#[test]
fn error_names_seen_by_gdbus_and_dbus_send() {
    let env = Env::new();
    let r = env.gdbus(
        "call",
        &[
            "--dest",
            "org.bmcd",
            "--object-path",
            CHASSIS,
            "--method",
            "org.bmcd.Chassis1.SetRestorePolicy",
            "Sometimes",
            "@a{sv} {}",
        ],
    );
    assert_ne!(r.code, 0, "{r}");
    r.stderr_has("org.bmcd.Error.InvalidArgument")
        .stderr_has("AlwaysOn, AlwaysOff, Restore, None");

    // Power off while off is fine; reset while off is NotAllowed.
    let r = env.gdbus(
        "call",
        &[
            "--dest",
            "org.bmcd",
            "--object-path",
            CHASSIS,
            "--method",
            "org.bmcd.Chassis1.Reset",
            "@a{sv} {}",
        ],
    );
    r.stderr_has("org.bmcd.Error.NotAllowed");
    // Unknown fan through the simulation knob: NotFound.
    let r = env.gdbus(
        "call",
        &[
            "--dest",
            "org.bmcd",
            "--object-path",
            "/org/bmcd/sim",
            "--method",
            "org.bmcd.Simulation1.SetFanFault",
            "nope",
            "true",
            "{}",
        ],
    );
    r.stderr_has("org.bmcd.Error.NotFound");
    env.assert_serving();
}

#[test]
fn gdbus_introspect_call_and_properties() {
    let env = Env::new();
    env.gdbus(
        "introspect",
        &[
            "--dest",
            "org.bmcd",
            "--object-path",
            "/org/bmcd/fans",
            "--xml",
        ],
    )
    .success()
    .stdout_has("org.bmcd.Cooling1")
    .stdout_has("name=\"SetManual\"")
    .stdout_has("name=\"Event\"");
    env.gdbus(
        "introspect",
        &[
            "--dest",
            "org.bmcd",
            "--object-path",
            "/org/bmcd",
            "--recurse",
        ],
    )
    .success()
    .stdout_has("org.bmcd.Fan1");

    let r = env.gdbus(
        "call",
        &[
            "--dest",
            "org.bmcd",
            "--object-path",
            "/org/bmcd/fans",
            "--method",
            "org.freedesktop.DBus.Properties.GetAll",
            "org.bmcd.Cooling1",
        ],
    );
    r.success()
        .stdout_has("'Mode': <'Auto'>")
        .stdout_has("'FailsafeLevel': <byte 0x64>");

    env.gdbus(
        "call",
        &[
            "--dest",
            "org.bmcd",
            "--object-path",
            "/org/bmcd/fans",
            "--method",
            "org.bmcd.Cooling1.SetManual",
            "35",
            "['fan3']",
            "0",
            "@a{sv} {}",
        ],
    )
    .success();
    let z = env.cooling();
    assert_eq!(z.manual_fans().unwrap(), ["fan3"]);
    assert_eq!(z.manual_level().unwrap(), 35);

    env.gdbus(
        "call",
        &[
            "--dest",
            "org.bmcd",
            "--object-path",
            "/org/bmcd/sim",
            "--method",
            "org.bmcd.Simulation1.SetAmbient",
            "30.5",
            "{}",
        ],
    )
    .success();
    assert_eq!(env.sim().ambient().unwrap(), 30.5);

    // GetManagedObjects as another binding sees it.
    env.gdbus(
        "call",
        &[
            "--dest",
            "org.bmcd",
            "--object-path",
            "/org/bmcd",
            "--method",
            "org.freedesktop.DBus.ObjectManager.GetManagedObjects",
        ],
    )
    .success()
    .stdout_has("'/org/bmcd/chassis0'")
    .stdout_has("'org.bmcd.Chassis1'");
    env.assert_serving();
}

/// Arguments of the wrong type are refused with the standard
/// `org.freedesktop.DBus.Error.InvalidArgs` (what sd-bus and GDBus services
/// answer, and what bmcctl maps to exit 2), and the daemon goes on.
#[test]
fn wrong_argument_types_are_refused_by_name() {
    let env = Env::new();
    let mut seen = Vec::new();
    // dbus-send cannot express an empty a{sv}: a{ss} is the wrong type.
    let r = env.dbus_send(&[
        "--dest=org.bmcd",
        "/org/bmcd/fans",
        "org.bmcd.Cooling1.SetManual",
        "byte:50",
        "array:string:nope",
        "uint32:0",
        "dict:string:string:",
    ]);
    assert_ne!(r.code, 0, "{r}");
    seen.push(("dbus-send SetManual yasua{ss}", r.stderr.trim().to_owned()));
    // (gdbus checks arguments against the introspection itself, so it
    // cannot send wrong types; a raw zbus client can.)
    let e = env
        .raw_call(CHASSIS, CH, "SetRestorePolicy", &(3u32,))
        .unwrap_err();
    seen.push((
        "zbus SetRestorePolicy u",
        format!("{}: {}", e.name, e.message),
    ));
    let e = env
        .raw_call(CHASSIS, CH, "PowerOff", &(7u32, "Force"))
        .unwrap_err();
    seen.push(("zbus PowerOff us", format!("{}: {}", e.name, e.message)));
    env.assert_serving();
    let bad: Vec<_> = seen
        .iter()
        .filter(|(_, err)| !err.contains("org.freedesktop.DBus.Error.InvalidArgs"))
        .collect();
    assert!(
        bad.is_empty(),
        "wrong argument types must be refused with InvalidArgs; got:\n{}",
        bad.iter()
            .map(|(what, err)| format!("  {what}: {err}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The system-like bus with the shipped policy (`config/dbus/org.bmcd.conf`):
/// root owns the name and may call; another uid may read but not act.
#[test]
fn shipped_bus_policy_on_a_system_like_bus() {
    let bus = TestBus::system_like();
    let daemon = Daemon::start(&bus);
    let as_nobody = |args: &[&str]| {
        bmcd_tests::run(
            std::process::Command::new("setpriv")
                .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
                .arg("busctl")
                .arg(format!("--address={}", bus.address()))
                .args(args),
            secs(30.0),
        )
    };
    // Reading is allowed.
    as_nobody(&["get-property", "org.bmcd", CHASSIS, CH, "PowerState"])
        .success()
        .stdout_has("\"Off\"");
    as_nobody(&["introspect", "org.bmcd", CHASSIS]).success();
    // Acting is refused by the bus.
    let r = as_nobody(&["call", "org.bmcd", CHASSIS, CH, "PowerOn", "a{sv}", "0"]);
    assert_ne!(r.code, 0, "{r}");
    assert!(
        r.stderr.contains("Access denied") || r.stderr.contains("AccessDenied"),
        "{r}"
    );
    // Root may.
    let conn = bus.connect();
    let c = bmcd_tests::bmcd_api::ChassisProxyBlocking::new(&conn).unwrap();
    c.power_on(bmcd_tests::no_options()).unwrap();
    wait_value(
        "power on by root",
        secs(5.0),
        || c.power_state().unwrap(),
        |p| *p == PowerState::On,
    );
    assert!(daemon.alive());
}
