//! The interface files shipped in `config/dbus/org.bmcd.<Iface>.xml` are
//! what the daemon really serves (regenerate them with
//! `scripts/dump-introspection`).

use std::collections::{BTreeMap, BTreeSet};

use bmcd_tests::zbus::blocking::fdo::IntrospectableProxy;
use bmcd_tests::{workspace_root, xml, Env};

/// Every object of the daemon's tree with its introspection XML, found by
/// walking the child nodes from `/`.
fn walk(env: &Env) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut todo = vec!["/".to_owned()];
    while let Some(path) = todo.pop() {
        let p = IntrospectableProxy::builder(env.conn())
            .destination(bmcd_tests::bmcd_api::BUS_NAME)
            .unwrap()
            .path(path.clone())
            .unwrap()
            .build()
            .unwrap();
        let text = p
            .introspect()
            .unwrap_or_else(|e| panic!("Introspect {path}: {e}"));
        for child in xml::child_nodes(&text).unwrap() {
            let base = path.trim_end_matches('/');
            todo.push(format!("{base}/{child}"));
        }
        out.insert(path, text);
    }
    out
}

/// The shipped files: (file name, interface, text).
fn shipped_files() -> Vec<(String, String, String)> {
    let dir = workspace_root().join("config/dbus");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(iface) = name
            .strip_suffix(".xml")
            .filter(|n| n.starts_with("org.bmcd."))
        else {
            continue;
        };
        let text = std::fs::read_to_string(e.path()).unwrap();
        out.push((name.clone(), iface.to_owned(), text));
    }
    out
}

/// The shipped files: interface name -> canonical form.
fn shipped() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (name, iface, text) in shipped_files() {
        let iface = iface.as_str();
        let canon = xml::interface(&text, iface)
            .unwrap_or_else(|err| panic!("{name}: {err}"))
            .unwrap_or_else(|| panic!("{name} does not declare interface {iface}"));
        let all = xml::interfaces(&text).unwrap();
        assert_eq!(all.len(), 1, "{name} must declare exactly one interface");
        out.insert(iface.to_owned(), canon);
    }
    out
}

#[test]
fn live_interfaces_match_the_shipped_xml() {
    let env = Env::new();
    // A task object, for org.bmcd.Task1.
    let task = env.chassis().power_on(Default::default()).unwrap();
    // A dump object, for org.bmcd.DumpEntry1.
    bmcd_tests::bmcd_api::DumpManagerProxyBlocking::new(env.conn())
        .unwrap()
        .create(Default::default())
        .unwrap();
    let dump = bmcd_tests::bmcd_api::DumpEntryProxyBlocking::builder(env.conn())
        .path(bmcd_tests::bmcd_api::dump_path(1))
        .unwrap()
        .cache_properties(bmcd_tests::zbus::proxy::CacheProperties::No)
        .build()
        .unwrap();
    bmcd_tests::wait_until(
        "the dump object",
        std::time::Duration::from_secs(60),
        || dump.id().is_ok(),
    );
    let files = shipped();
    let tree = walk(&env);
    let mut served: BTreeSet<String> = BTreeSet::new();
    for (path, text) in &tree {
        for (iface, lines) in xml::interfaces(text).unwrap() {
            if !iface.starts_with("org.bmcd.") {
                continue;
            }
            let live = lines.join("\n");
            let Some(file) = files.get(&iface) else {
                panic!(
                    "{path} serves {iface} but config/dbus/{iface}.xml is missing: \
                     run scripts/dump-introspection"
                );
            };
            assert!(
                *file == live,
                "{path}: live {iface} differs from config/dbus/{iface}.xml (run \
                 scripts/dump-introspection)\n--- shipped ---\n{file}\n--- live ---\n{live}"
            );
            served.insert(iface);
        }
    }
    let shipped: BTreeSet<String> = files.keys().cloned().collect();
    assert_eq!(
        shipped, served,
        "config/dbus has files for interfaces the daemon does not serve (or the reverse)"
    );

    // Each interface lives where the contract says.
    let ours = |path: &str| -> Vec<String> {
        let text = tree
            .get(path)
            .unwrap_or_else(|| panic!("{path} missing from the tree"));
        xml::interfaces(text)
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .filter(|n| n.starts_with("org.bmcd."))
            .collect()
    };
    use bmcd_tests::bmcd_api as api;
    assert_eq!(ours(api::CHASSIS_PATH), [api::CHASSIS_IFACE]);
    assert_eq!(ours(api::FANS_PATH), [api::COOLING_IFACE]);
    assert_eq!(ours(api::SIM_PATH), [api::SIMULATION_IFACE]);
    for f in ["fan0", "fan1", "fan2", "fan3"] {
        assert_eq!(ours(&api::fan_path(f)), [api::FAN_IFACE], "{f}");
    }
    assert_eq!(ours(task.as_str()), [api::TASK_IFACE]);
    assert_eq!(api::task_id(task.as_str()), Some(1));
}

/// (interface, method) of every method in the shipped XML files, which the
/// test above holds to the live daemon.
fn shipped_methods() -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (_, iface, text) in shipped_files() {
        for line in text.lines() {
            if let Some(rest) = line.trim().strip_prefix("<method name=\"") {
                let m = rest.split('"').next().unwrap_or_default();
                out.insert((iface.clone(), m.to_owned()));
            }
        }
    }
    out
}

/// Every method the daemon serves has exactly one row in the policy table
/// (`bmcd::auth::policy::POLICY`), and every row names a served method.
#[test]
fn the_policy_table_covers_every_served_method() {
    let served = shipped_methods();
    assert!(served.len() >= 15, "{served:?}");
    let table: BTreeSet<(String, String)> = bmcd::auth::policy::POLICY
        .iter()
        .map(|r| (r.interface.to_owned(), r.method.to_owned()))
        .collect();
    assert_eq!(served, table, "introspection and policy table differ");
}

#[test]
fn the_dump_script_agrees() {
    // The script's own check mode, against a daemon of ours.
    let env = Env::new();
    let r = bmcd_tests::run(
        std::process::Command::new(workspace_root().join("scripts/dump-introspection"))
            .arg("--check")
            .arg("--address")
            .arg(env.address()),
        std::time::Duration::from_secs(30),
    );
    r.success();
}
