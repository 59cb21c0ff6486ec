//! The cross-built armv7 `bmcctl` (static musl, from `scripts/cross-build`)
//! under qemu-user against the daemon on a private bus: the binary that
//! ships on the BMC speaks to the real daemon.

use std::process::Command;

use bmcd_tests::bmcd_api::PowerState;
use bmcd_tests::{bmcctl_cross_bin, run, secs, Env, Run};

fn qemu_bmcctl(env: &Env, args: &[&str]) -> Run {
    let bin = bmcctl_cross_bin("armv7");
    run(
        Command::new("qemu-arm-static")
            .arg(bin)
            .args(args)
            .env("BMCCTL_ADDRESS", env.address())
            .env_remove("PAGER"),
        secs(60.0),
    )
}

#[test]
fn armv7_bmcctl_under_qemu() {
    let bin = bmcctl_cross_bin("armv7");
    let file = run(Command::new("file").arg("-L").arg(&bin), secs(10.0));
    if file.code == 0 {
        assert!(file.stdout.contains("ARM"), "not an ARM binary:\n{file}");
    }
    assert!(
        Command::new("qemu-arm-static")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "qemu-arm-static is missing: apt-get install qemu-user-static (scripts/deps --cross)"
    );

    let env = Env::new();
    let r = qemu_bmcctl(&env, &["chassis", "status", "--json"]);
    let v = r.success().json();
    assert_eq!(v["PowerState"], "Off", "{r}");
    assert_eq!(v["RestorePolicy"], "AlwaysOff", "{r}");

    let r = qemu_bmcctl(&env, &["fan", "list"]);
    r.success();
    for f in ["fan0", "fan1", "fan2", "fan3"] {
        assert!(r.stdout.contains(f), "{r}");
    }

    // It can act, too, and its exit codes are the same.
    qemu_bmcctl(&env, &["chassis", "power", "on"]).success();
    assert_eq!(env.chassis().power_state().unwrap(), PowerState::On);
    qemu_bmcctl(&env, &["fan", "show", "nope"]).expect_code(4);
}
