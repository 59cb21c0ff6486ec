//! Firmware updates end to end on the sim platform (issue 8): through the
//! command-line tools (gdbus passes the image descriptor — busctl cannot
//! send a `h` argument — and busctl reads properties, watches the task and
//! calls Activate/Rollback) and through the `bmcd-api` proxies.
//!
//! Every refusal is checked to change nothing: the booted slot's file is
//! byte-identical and `BootNext` is unchanged.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};

use bmcd_tests::bmcd_api::{
    self as api, update_options, FirmwareManagerProxyBlocking, FirmwareProxyBlocking,
    FirmwareState, TaskProxyBlocking, TaskState,
};
use bmcd_tests::firmware::{
    payload_digest, set_firmware, sha256_file_prefix, sim_slot, FwKit, ImageSpec,
};
use bmcd_tests::security::{Pam, SecEnv, Who};
use bmcd_tests::zbus::proxy::CacheProperties;
use bmcd_tests::zbus::zvariant::{Fd, OwnedValue, Value};
use bmcd_tests::{expect_error, no_options, secs, wait_until, wait_value, Env};

const SLOT_SIZE: u64 = 8 << 20;
const BOOTED: &str = "bmc_a";
const OTHER: &str = "bmc_b";

fn fw_env(kit: &FwKit, rate: u64) -> Env {
    Env::with(|v| set_firmware(v, kit, SLOT_SIZE, rate))
}

fn manager(env: &Env) -> FirmwareManagerProxyBlocking<'static> {
    FirmwareManagerProxyBlocking::builder(env.conn())
        .cache_properties(CacheProperties::No)
        .build()
        .unwrap()
}

fn slot(env: &Env, name: &str) -> FirmwareProxyBlocking<'static> {
    FirmwareProxyBlocking::builder(env.conn())
        .path(api::firmware_path(name).unwrap())
        .unwrap()
        .cache_properties(CacheProperties::No)
        .build()
        .unwrap()
}

fn task(env: &Env, path: &str) -> TaskProxyBlocking<'static> {
    TaskProxyBlocking::builder(env.conn())
        .path(path.to_owned())
        .unwrap()
        .cache_properties(CacheProperties::No)
        .build()
        .unwrap()
}

fn opts(pairs: &[(&'static str, bool)]) -> HashMap<&'static str, Value<'static>> {
    pairs.iter().map(|(k, v)| (*k, Value::from(*v))).collect()
}

/// `StartUpdate` through the proxy.
fn start(env: &Env, image: &Path, options: &[(&'static str, bool)]) -> api::Result<String> {
    let f = File::open(image).unwrap();
    manager(env)
        .start_update(Fd::from(&f), opts(options))
        .map(|p| p.to_string())
}

fn wait_task(env: &Env, path: &str, want: TaskState) {
    let t = task(env, path);
    let got = wait_value(
        &format!("task {path} to end"),
        secs(60.0),
        || t.state().unwrap(),
        |s| s.is_final(),
    );
    assert_eq!(got, want, "task {path}: {:?}", t.error().unwrap());
}

fn busctl_prop(env: &Env, path: &str, iface: &str, prop: &str) -> String {
    let r = env.busctl(&["get-property", api::BUS_NAME, path, iface, prop]);
    r.success();
    r.stdout.trim().to_owned()
}

/// What a refusal must leave alone.
#[derive(Debug, PartialEq)]
struct Untouched {
    booted_file: String,
    boot_next: String,
}

fn untouched(env: &Env) -> Untouched {
    Untouched {
        booted_file: sha256_file_prefix(&sim_slot(env.daemon.state_dir(), BOOTED), SLOT_SIZE),
        boot_next: manager(env).boot_next().unwrap(),
    }
}

fn result(env: &Env, path: &str) -> HashMap<String, OwnedValue> {
    task(env, path).result().unwrap()
}

fn result_str(r: &HashMap<String, OwnedValue>, key: &str) -> String {
    String::try_from(r[key].try_clone().unwrap()).unwrap()
}

fn result_bool(r: &HashMap<String, OwnedValue>, key: &str) -> bool {
    bool::try_from(r[key].try_clone().unwrap()).unwrap()
}

#[test]
fn update_through_gdbus_and_busctl_then_activate_and_rollback() {
    let kit = FwKit::new();
    let env = fw_env(&kit, 0);
    let before = untouched(&env);
    assert_eq!(before.boot_next, BOOTED);
    let fw = api::FIRMWARE_PATH;
    let mgr = api::FIRMWARE_MANAGER_IFACE;
    assert_eq!(busctl_prop(&env, fw, mgr, "BootedNow"), "s \"bmc_a\"");
    assert_eq!(busctl_prop(&env, fw, mgr, "UpdateTask"), "o \"/\"");
    let other = api::firmware_path(OTHER).unwrap();
    assert_eq!(
        busctl_prop(&env, &other, api::FIRMWARE_IFACE, "State"),
        "s \"Empty\""
    );

    // StartUpdate through gdbus: its stdin is the image, passed as fd 0.
    let spec = ImageSpec::new("2.0.0", 1_500_000).seed(7);
    let image = kit.image(&spec);
    let out = Command::new("gdbus")
        .args(["call", "--address", env.address(), "--timeout", "60"])
        .args(["--dest", api::BUS_NAME, "--object-path", fw])
        .args(["--method", "org.bmcd.FirmwareManager1.StartUpdate"])
        .args(["@h 0", "{}"])
        .stdin(Stdio::from(File::open(&image).unwrap()))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "gdbus: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = stdout
        .split('\'')
        .find(|s| s.starts_with(api::TASKS_PATH))
        .unwrap_or_else(|| panic!("no task path in {stdout:?}"))
        .to_owned();
    // Watched through busctl until Completed.
    wait_value(
        "the update task to end",
        secs(60.0),
        || busctl_prop(&env, &path, api::TASK_IFACE, "State"),
        |s| s != "s \"Running\"" && s != "s \"Pending\"",
    );
    assert_eq!(
        busctl_prop(&env, &path, api::TASK_IFACE, "State"),
        "s \"Completed\""
    );
    assert_eq!(
        busctl_prop(&env, &path, api::TASK_IFACE, "Kind"),
        "s \"FirmwareUpdate\""
    );
    let digest = payload_digest(&spec);
    assert_eq!(
        busctl_prop(&env, &other, api::FIRMWARE_IFACE, "State"),
        "s \"Staged\""
    );
    assert_eq!(
        busctl_prop(&env, &other, api::FIRMWARE_IFACE, "Digest"),
        format!("s \"{digest}\"")
    );
    assert_eq!(
        busctl_prop(&env, &other, api::FIRMWARE_IFACE, "Version"),
        "s \"2.0.0\""
    );
    assert_eq!(
        busctl_prop(&env, &other, api::FIRMWARE_IFACE, "Size"),
        "t 1500000"
    );
    let r = result(&env, &path);
    assert_eq!(result_str(&r, api::update_result::SLOT), OTHER);
    assert_eq!(result_str(&r, api::update_result::VERSION), "2.0.0");
    assert_eq!(result_str(&r, api::update_result::DIGEST), digest);
    assert!(!result_bool(&r, api::update_result::ACTIVATED));
    // The bytes are in the slot file; the booted slot and BootNext are not
    // touched without activate.
    assert_eq!(
        sha256_file_prefix(&sim_slot(env.daemon.state_dir(), OTHER), 1_500_000),
        digest
    );
    assert_eq!(untouched(&env), before);
    assert_eq!(busctl_prop(&env, fw, mgr, "UpdateTask"), "o \"/\"");

    // Through the proxy, with activate: BootNext follows.
    let spec = ImageSpec::new("2.1.0", 700_000).seed(8);
    let t = start(&env, &kit.image(&spec), &[(update_options::ACTIVATE, true)]).unwrap();
    wait_task(&env, &t, TaskState::Completed);
    let r = result(&env, &t);
    assert!(result_bool(&r, api::update_result::ACTIVATED));
    let s = slot(&env, OTHER);
    assert_eq!(s.state().unwrap(), FirmwareState::Staged);
    assert_eq!(s.version().unwrap(), "2.1.0");
    assert_eq!(s.digest().unwrap(), payload_digest(&spec));
    assert!(s.install_time().unwrap() > 0);
    assert_eq!(manager(&env).boot_next().unwrap(), OTHER);
    assert_eq!(slot(&env, BOOTED).state().unwrap(), FirmwareState::Active);
    assert_eq!(untouched(&env).booted_file, before.booted_file);

    // Rollback through busctl: a pending activation goes back to the
    // running slot; again, and the staged slot boots next.
    env.busctl(&["call", api::BUS_NAME, fw, mgr, "Rollback", "a{sv}", "0"])
        .success();
    assert_eq!(manager(&env).boot_next().unwrap(), BOOTED);
    env.busctl(&["call", api::BUS_NAME, fw, mgr, "Rollback", "a{sv}", "0"])
        .success();
    assert_eq!(manager(&env).boot_next().unwrap(), OTHER);
    env.busctl(&[
        "call",
        api::BUS_NAME,
        fw,
        mgr,
        "Activate",
        "sa{sv}",
        BOOTED,
        "0",
    ])
    .success();
    assert_eq!(manager(&env).boot_next().unwrap(), BOOTED);
    expect_error(manager(&env).activate("bmc_z", no_options()), "NotFound");

    // A reboot into the new slot (the sim reads `booted` at start): it is
    // Active, the old one Backup, and Rollback targets the Backup.
    env.daemon.stop();
    std::fs::write(
        env.daemon.state_dir().join("sim-firmware").join("booted"),
        OTHER,
    )
    .unwrap();
    env.daemon.start_again();
    assert_eq!(manager(&env).booted_now().unwrap(), OTHER);
    assert_eq!(slot(&env, OTHER).state().unwrap(), FirmwareState::Active);
    assert_eq!(slot(&env, OTHER).version().unwrap(), "2.1.0");
    assert_eq!(slot(&env, BOOTED).state().unwrap(), FirmwareState::Backup);
    env.assert_serving();
}

#[test]
fn refusals_change_nothing() {
    let kit = FwKit::new();
    let env = Env::with(|v| set_firmware(v, &kit, 2 << 20, 0));
    let before = untouched(&env);
    let other_file = || sha256_file_prefix(&sim_slot(env.daemon.state_dir(), OTHER), 2 << 20);
    let other_before = other_file();
    let good = ImageSpec::new("2.0.0", 300_000);
    let signed = kit.image(&good);

    // Nothing good to boot on the other slot yet.
    expect_error(manager(&env).activate(OTHER, no_options()), "NotAllowed");
    expect_error(manager(&env).rollback(no_options()), "NotAllowed");

    // (image, options, the error expected)
    type Refusal = (
        std::path::PathBuf,
        &'static [(&'static str, bool)],
        &'static str,
    );
    let refusals: Vec<Refusal> = vec![
        (kit.tamper_manifest(&signed), &[], "InvalidSignature"),
        (kit.image_untrusted(&good), &[], "InvalidSignature"),
        (
            kit.image(&ImageSpec::new("2.0.0", 1000).for_machines(&["other"])),
            &[],
            "Incompatible",
        ),
        (
            kit.image(&ImageSpec::new("2.0.0", 1000).component("bios")),
            &[],
            "Incompatible",
        ),
        (
            kit.image(&ImageSpec::new("0.9.0", 1000)),
            &[(update_options::ACTIVATE, true)],
            "Incompatible",
        ),
        (
            kit.image(&ImageSpec::new("2.0.0", (2 << 20) + 1)),
            &[],
            "NoSpace",
        ),
    ];
    for (image, o, want) in &refusals {
        let m = expect_error(start(&env, image, o), want);
        assert_eq!(untouched(&env), before, "{want}: {m}");
        assert_eq!(
            other_file(),
            other_before,
            "{want}: {m}: the slot was written"
        );
        assert_eq!(slot(&env, OTHER).state().unwrap(), FirmwareState::Empty);
        assert_eq!(manager(&env).update_task().unwrap().as_str(), "/", "{want}");
    }
    // An unknown option and a mistyped one: refused before anything.
    let f = File::open(&signed).unwrap();
    let mut bad = opts(&[]);
    bad.insert("bogus", Value::from(true));
    expect_error(
        manager(&env).start_update(Fd::from(&f), bad),
        "InvalidArgument",
    );
    let mut bad = opts(&[]);
    bad.insert(update_options::ACTIVATE, Value::from("yes"));
    expect_error(
        manager(&env).start_update(Fd::from(&f), bad),
        "InvalidArgument",
    );
    assert_eq!(other_file(), other_before);

    // A pipe (whose writer could hold the update forever), a directory and
    // a write-only descriptor are refused before anything is read.
    let (pipe_r, pipe_w) = std::os::unix::net::UnixStream::pair().unwrap();
    let dir = File::open(kit.dir()).unwrap();
    let write_only = std::fs::OpenOptions::new()
        .append(true)
        .open(&signed)
        .unwrap();
    for fd in [Fd::from(&pipe_r), Fd::from(&dir), Fd::from(&write_only)] {
        expect_error(
            manager(&env).start_update(fd.try_to_owned().unwrap(), opts(&[])),
            "InvalidArgument",
        );
        expect_error(
            manager(&env).inspect(fd, opts(&[])).map(|_| ()),
            "InvalidArgument",
        );
    }
    drop(pipe_w);
    assert_eq!(other_file(), other_before);
    assert_eq!(manager(&env).update_task().unwrap().as_str(), "/");

    // Inspect describes, never writes.
    let f = File::open(&signed).unwrap();
    let d = manager(&env)
        .inspect(Fd::from(&f), opts(&[(api::inspect::OPT_PAYLOAD, true)]))
        .unwrap();
    let s = |k: &str| String::try_from(d[k].try_clone().unwrap()).unwrap();
    let b = |k: &str| bool::try_from(d[k].try_clone().unwrap()).unwrap();
    assert_eq!(s(api::inspect::SIGNATURE), "trusted");
    assert_eq!(s(api::inspect::VERSION_RULE), "upgrade");
    assert!(b(api::inspect::INSTALLABLE) && b(api::inspect::PAYLOAD_OK));
    let f = File::open(kit.image_untrusted(&good)).unwrap();
    let d = manager(&env).inspect(Fd::from(&f), opts(&[])).unwrap();
    assert_eq!(
        String::try_from(d[api::inspect::SIGNATURE].try_clone().unwrap()).unwrap(),
        "untrusted"
    );
    assert_eq!(other_file(), other_before);

    // A downgrade with force-version is accepted.
    let old = kit.image(&ImageSpec::new("0.9.0", 1000));
    let t = start(&env, &old, &[(update_options::FORCE_VERSION, true)]).unwrap();
    wait_task(&env, &t, TaskState::Completed);
    assert_eq!(slot(&env, OTHER).version().unwrap(), "0.9.0");
    assert_eq!(untouched(&env), before);

    // A tampered payload passes the preflight, then fails its digest: the
    // slot is Invalid, not bootable.
    let t = start(&env, &kit.tamper_payload(&signed), &[]).unwrap();
    wait_task(&env, &t, TaskState::Failed);
    assert_eq!(
        task(&env, &t).error().unwrap().0,
        "org.bmcd.Error.InvalidImage"
    );
    assert_eq!(slot(&env, OTHER).state().unwrap(), FirmwareState::Invalid);
    assert_eq!(slot(&env, OTHER).digest().unwrap(), "");
    assert_eq!(untouched(&env), before);
    expect_error(manager(&env).activate(OTHER, no_options()), "NotAllowed");
    expect_error(manager(&env).rollback(no_options()), "NotAllowed");
    assert_eq!(untouched(&env), before);
    env.assert_serving();
}

/// Wait until the update task at `path` writes and has made progress.
fn wait_writing(env: &Env, path: &str) {
    let t = task(env, path);
    wait_until("the update to be writing", secs(30.0), || {
        t.phase().unwrap() == "Write" && t.progress().unwrap() > 10
    });
}

#[test]
fn busy_then_cancel_mid_write() {
    let kit = FwKit::new();
    // 4 MiB at 1 MiB/s: seconds of writing.
    let env = fw_env(&kit, 1 << 20);
    let before = untouched(&env);
    let image = kit.image(&ImageSpec::new("2.0.0", 4 << 20));
    let t = start(&env, &image, &[(update_options::ACTIVATE, true)]).unwrap();
    assert_eq!(manager(&env).update_task().unwrap().as_str(), t);
    wait_writing(&env, &t);
    assert_eq!(slot(&env, OTHER).state().unwrap(), FirmwareState::Writing);
    assert!(task(&env, &t).cancellable().unwrap());

    // One update at a time; the slot being written cannot be activated.
    expect_error(start(&env, &image, &[]), "Busy");
    expect_error(manager(&env).activate(OTHER, no_options()), "Busy");
    assert_eq!(untouched(&env), before);

    task(&env, &t).cancel(no_options()).unwrap();
    wait_task(&env, &t, TaskState::Cancelled);
    assert_eq!(slot(&env, OTHER).state().unwrap(), FirmwareState::Invalid);
    assert_eq!(manager(&env).update_task().unwrap().as_str(), "/");
    assert_eq!(untouched(&env), before);
    env.assert_serving();
}

#[test]
fn kill_during_write_leaves_the_slot_invalid_and_the_task_interrupted() {
    let kit = FwKit::new();
    let env = fw_env(&kit, 1 << 20);
    let before = untouched(&env);
    let t = start(&env, &kit.image(&ImageSpec::new("2.0.0", 4 << 20)), &[]).unwrap();
    wait_writing(&env, &t);
    env.daemon.kill9();
    env.daemon.start_again();
    assert_eq!(task(&env, &t).state().unwrap(), TaskState::Interrupted);
    assert_eq!(slot(&env, OTHER).state().unwrap(), FirmwareState::Invalid);
    assert_eq!(manager(&env).update_task().unwrap().as_str(), "/");
    assert_eq!(untouched(&env), before);
    assert!(
        env.daemon
            .log()
            .contains("was being written when bmcd stopped"),
        "{}",
        env.daemon.log_tail(20)
    );
    // And a new update goes through.
    let spec = ImageSpec::new("2.0.1", 100_000);
    let t = start(&env, &kit.image(&spec), &[]).unwrap();
    wait_task(&env, &t, TaskState::Completed);
    assert_eq!(slot(&env, OTHER).digest().unwrap(), payload_digest(&spec));
}

#[test]
fn only_a_reauthenticated_administrator_updates() {
    let kit = FwKit::new();
    let env = SecEnv::system_like(Pam::users(&[("root", "Root-pw.4711")]), |v| {
        set_firmware(v, &kit, SLOT_SIZE, 0)
    });
    let before = untouched(&env);
    let image = kit.image(&ImageSpec::new("2.0.0", 1000));
    let call = |who: &Who| {
        let out = who
            .command("gdbus")
            .args(["call", "--address", env.address(), "--timeout", "30"])
            .args(["--dest", api::BUS_NAME, "--object-path", api::FIRMWARE_PATH])
            .args(["--method", "org.bmcd.FirmwareManager1.StartUpdate"])
            .args(["@h 0", "{}"])
            .stdin(Stdio::from(File::open(&image).unwrap()))
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = call(&Who::operator());
    assert!(e.contains("org.bmcd.Error.PermissionDenied"), "{e}");
    let e = call(&Who::admin());
    assert!(e.contains("org.bmcd.Error.AuthenticationRequired"), "{e}");
    // root, through the proxy, without authenticating first.
    expect_error(start(&env, &image, &[]), "AuthenticationRequired");
    expect_error(
        manager(&env).activate(BOOTED, no_options()),
        "AuthenticationRequired",
    );
    assert_eq!(slot(&env, OTHER).state().unwrap(), FirmwareState::Empty);
    assert_eq!(untouched(&env), before);
    // Once authenticated, root's update goes through.
    api::SessionProxyBlocking::new(env.conn())
        .unwrap()
        .authenticate("Root-pw.4711", no_options())
        .unwrap();
    let t = start(&env, &image, &[]).unwrap();
    wait_task(&env, &t, TaskState::Completed);
    assert_eq!(slot(&env, OTHER).state().unwrap(), FirmwareState::Staged);
    assert_eq!(untouched(&env), before);
}

#[test]
fn boot_next_on_a_slot_without_a_good_image_is_pointed_back_at_the_running_one() {
    let kit = FwKit::new();
    let env = fw_env(&kit, 0);
    assert_eq!(manager(&env).boot_next().unwrap(), BOOTED);
    assert_eq!(env.daemon.stop(), 0);
    // A hand-edited boot environment names the Empty slot.
    let boot_file = env.daemon.state_dir().join("sim-firmware/boot_next");
    std::fs::write(&boot_file, format!("{OTHER}\n")).unwrap();
    env.daemon.start_again();
    assert_eq!(slot(&env, OTHER).state().unwrap(), FirmwareState::Empty);
    assert_eq!(manager(&env).boot_next().unwrap(), BOOTED);
    assert_eq!(std::fs::read_to_string(&boot_file).unwrap().trim(), BOOTED);
    assert!(
        env.daemon.log().contains("which holds no good image"),
        "{}",
        env.daemon.log_tail(20)
    );
}

#[test]
fn storage_that_cannot_be_opened_is_a_config_error_event() {
    let kit = FwKit::new();
    let env = fw_env(&kit, 0);
    assert_eq!(manager(&env).boot_next().unwrap(), BOOTED);
    assert_eq!(env.daemon.stop(), 0);
    // The simulator's record of the booted slot names no slot.
    let booted = env.daemon.state_dir().join("sim-firmware/booted");
    std::fs::write(&booted, "bmc_z\n").unwrap();
    env.daemon.start_again();
    // bmcd serves the rest, without firmware objects.
    env.assert_serving();
    assert!(manager(&env).boot_next().is_err());
    let log = env.daemon.log();
    let line = log
        .lines()
        .find(|l| l.contains("[Daemon.ConfigError]"))
        .unwrap_or_else(|| panic!("no ConfigError event:\n{}", env.daemon.log_tail(20)));
    assert!(
        line.contains("firmware") && line.contains("bmc_z"),
        "{line}"
    );
    // Not doubled by the former log line.
    assert_eq!(log.matches("no firmware objects are served").count(), 1);
}
