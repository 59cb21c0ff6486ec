//! The cross-built ARM daemon (`scripts/cross-build`: glibc 2.36, linked
//! against Debian bookworm's armhf/arm64 libpam) under qemu-user with its
//! sysroot, on a private host dbus-daemon, driven by the cross-built ARM
//! `bmcctl` under qemu-user and by the host's busctl: the binaries that ship
//! on an ARM BMC, together. Re-authentication goes through the real PAM
//! stack of the sysroot (the target's libpam) with the target's pam_wrapper
//! and pam_matrix preloaded into the guest.
//!
//! Each arch's test is ignored (reported as such by cargo) when its
//! binaries were not built (see tests/build.rs); scripts/test always builds
//! them.

use bmcd_tests::bmcd_api::{self, PowerState, RestorePolicy};
use bmcd_tests::cross::Cross;
use bmcd_tests::firmware::{set_firmware, FwKit, ImageSpec};
use bmcd_tests::security::auth_config;
use bmcd_tests::{pam_wrapper_dir_of, Daemon, Env, Run, TestBus};

const ROOT_PW: &str = "Root-pw.4711";
const GUESS: &str = "Guess-1.a9";

/// The ARM bmcctl against `env`'s bus.
fn bmcctl(arm: &Cross, env: &Env, args: &[&str]) -> Run {
    arm.bmcctl(env.address(), args, None)
}

#[test]
#[cfg_attr(
    not(bmcd_cross_armv7),
    ignore = "no target/cross/armv7/{bmcd,bmcctl}: run scripts/cross-build --target armv7"
)]
fn armv7_bmcd_and_bmcctl_under_qemu() {
    bmcd_and_bmcctl_under_qemu(&Cross::armv7());
}

/// The same for aarch64.
#[test]
#[cfg_attr(
    not(bmcd_cross_aarch64),
    ignore = "no target/cross/aarch64/{bmcd,bmcctl}: run scripts/cross-build --target aarch64"
)]
fn aarch64_bmcd_and_bmcctl_under_qemu() {
    bmcd_and_bmcctl_under_qemu(&Cross::aarch64());
}

fn bmcd_and_bmcctl_under_qemu(arm: &Cross) {
    arm.require();

    // The shipped re-authentication default (on), pam_matrix for root, and
    // sim firmware slots (their keys made by the test).
    let kit = FwKit::new();
    let cfg = auth_config(|cfg| set_firmware(cfg, &kit, 4 << 20, 0));
    let pam = arm.pam_users(&[("root", ROOT_PW)]);
    let bus = TestBus::new();
    let daemon = Daemon::start_launched(&bus, cfg, pam.env(), arm.bmcd_launcher());
    let env = Env::from_parts(bus, daemon);

    // It is the ARM binary that serves the bus: the pid that owns org.bmcd
    // is qemu-user's (checked by the harness at start), running bmcd.
    let cmdline =
        std::fs::read(format!("/proc/{}/cmdline", env.daemon.pid())).expect("daemon cmdline");
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    assert!(
        cmdline.contains(arm.qemu()) && cmdline.contains(&arm.bmcd_bin().display().to_string()),
        "{cmdline}"
    );

    // Chassis status, as JSON, from the ARM bmcctl.
    let r = bmcctl(arm, &env, &["chassis", "status", "--json"]);
    let v = r.success().json();
    assert_eq!(v["PowerState"], "Off", "{r}");
    assert_eq!(v["RestorePolicy"], "AlwaysOff", "{r}");

    // Power on as a task: bmcctl waits for it through the task's signals,
    // one line per phase.
    let r = bmcctl(arm, &env, &["chassis", "power", "on"]);
    r.success().stdout_has("Power is On.");
    assert!(r.stderr.contains("(PowerOn): "), "no task progress:\n{r}");
    assert_eq!(env.chassis().power_state().unwrap(), PowerState::On);
    let r = env.busctl(&[
        "get-property",
        bmcd_api::BUS_NAME,
        bmcd_api::CHASSIS_PATH,
        "org.bmcd.Chassis1",
        "PowerState",
    ]);
    r.success().stdout_has("\"On\"");

    // Graceful power off, a task too (the simulated host shuts down).
    let r = bmcctl(arm, &env, &["--yes", "chassis", "power", "off"]);
    r.success();
    assert!(r.stderr.contains("(PowerOff): "), "no task progress:\n{r}");
    assert_eq!(env.chassis().power_state().unwrap(), PowerState::Off);
    let r = bmcctl(arm, &env, &["--json", "task", "list"]);
    let tasks = r.success().json();
    let kinds: Vec<&str> = tasks
        .as_array()
        .map(|a| a.iter().filter_map(|t| t["Kind"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        kinds.contains(&"PowerOn") && kinds.contains(&"PowerOff"),
        "{r}"
    );

    // Fans, firmware slots, the event log.
    let r = bmcctl(arm, &env, &["--json", "fan", "list"]);
    let fans = r.success().json();
    let names: Vec<&str> = fans["Fans"]
        .as_array()
        .map(|a| a.iter().filter_map(|f| f["Name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["fan0", "fan1", "fan2", "fan3"], "{r}");

    let r = bmcctl(arm, &env, &["--json", "firmware", "list"]);
    let fw = r.success().json();
    assert_eq!(fw["BootedNow"], "bmc_a", "{r}");
    assert_eq!(fw["Slots"].as_array().map(Vec::len), Some(2), "{r}");

    let r = bmcctl(arm, &env, &["--json", "log", "list"]);
    let log = r.success().json();
    let messages: Vec<&str> = log["entries"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["MessageId"].as_str()).collect())
        .unwrap_or_default();
    for id in ["Daemon.Started", "Chassis.TransitionCompleted"] {
        assert!(messages.contains(&id), "no {id} in the log:\n{r}");
    }
    let r = env.busctl(&["tree", "org.bmcd"]);
    r.success().stdout_has(bmcd_api::CHASSIS_PATH);

    // Re-authentication through the armhf PAM stack: a wrong password is
    // refused (exit 3, nothing changed), the right one goes through.
    let set_policy = ["--password-stdin", "chassis", "policy", "set", "AlwaysOn"];
    let r = arm.bmcctl(env.address(), &set_policy, Some(&format!("{GUESS}\n")));
    r.expect_code(3);
    assert!(r.stderr.contains("wrong password"), "{r}");
    assert_eq!(
        env.chassis().restore_policy().unwrap(),
        RestorePolicy::AlwaysOff
    );
    let r = arm.bmcctl(env.address(), &set_policy, Some(&format!("{ROOT_PW}\n")));
    r.success();
    assert_eq!(
        env.chassis().restore_policy().unwrap(),
        RestorePolicy::AlwaysOn
    );

    // A signed firmware update: the ARM daemon checks the Ed25519 signature
    // and the SHA-256 of the payload, writes the other slot and reads it
    // back, a task again (re-authenticated with the password on stdin).
    let img = kit.image(&ImageSpec::new("2.0.0", 256 * 1024).seed(3));
    let img = img.to_str().expect("utf-8 path");
    let r = arm.bmcctl(
        env.address(),
        &["--yes", "--password-stdin", "firmware", "update", img],
        Some(&format!("{ROOT_PW}\n")),
    );
    r.success()
        .stderr_has("(FirmwareUpdate): ")
        .stdout_has("Installed bmc 2.0.0");
    let r = bmcctl(arm, &env, &["--json", "firmware", "list"]);
    let fw = r.success().json();
    let b = fw["Slots"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["Slot"] == "bmc_b"))
        .unwrap_or_else(|| panic!("no slot bmc_b:\n{r}"));
    assert_eq!(b["Version"], "2.0.0", "{r}");

    // A clean stop: SIGTERM reaches the guest through qemu-user; the
    // harness removes the pam_wrapper directory that the 32-bit guest's
    // pam_wrapper cannot (see `Daemon`).
    let pid = env.daemon.pid();
    assert_eq!(env.daemon.stop(), 0, "{}", env.daemon.log_tail(20));
    assert_eq!(pam_wrapper_dir_of(pid), None);
}
