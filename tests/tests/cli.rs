//! The real `bmcctl` against the real daemon: output, exit codes, waits,
//! confirmations, prefixes, and a bus that is absent or silent.

use std::os::unix::net::UnixListener;
use std::time::Duration;

use bmcd_tests::bmcd_api::{CoolingMode, PowerState};
use bmcd_tests::{bmcctl_at, no_options, secs, wait_value, Env, TempDir, TestBus};

#[test]
fn status_console_json_and_prefixes() {
    let env = Env::new();
    let r = env.bmcctl(&["chassis", "status"]);
    r.success()
        .stdout_has("Power state")
        .stdout_has("Off")
        .stdout_has("Restore policy")
        .stdout_has("AlwaysOff");
    assert!(r.stderr.is_empty(), "{r}");

    let j = env.bmcctl(&["chassis", "status", "--json"]);
    let v = j.success().json();
    assert_eq!(v["PowerState"], "Off", "{j}");
    assert_eq!(v["PendingTransition"], "None", "{j}");
    assert_eq!(v["RestorePolicy"], "AlwaysOff", "{j}");
    assert_eq!(v["IdentifyActive"], false, "{j}");
    assert!(v["LastStateChangeTime"].is_string(), "{j}");

    // Unique prefixes at every level give the same answer.
    let p = env.bmcctl(&["ch", "st"]);
    p.success();
    assert_eq!(p.stdout, r.stdout);
    let p = env.bmcctl(&["--json", "c", "stat"]);
    assert_eq!(p.success().json(), v);

    // An ambiguous word lists the choices.
    let a = env.bmcctl(&["ch", "p"]);
    a.expect_code(2)
        .stderr_has("ambiguous")
        .stderr_has("power")
        .stderr_has("policy");
    // An unknown one too.
    env.bmcctl(&["chassis", "bogus"])
        .expect_code(2)
        .stderr_has("status");
    // A missing one lists what is possible.
    env.bmcctl(&["fan"]).expect_code(2).stderr_has("list");
}

#[test]
fn power_on_off_cycle_reset() {
    let env = Env::new();
    let c = env.chassis();

    // Reset while off: NotAllowed, exit 1, the daemon's message.
    env.bmcctl(&["chassis", "power", "reset", "--yes"])
        .expect_code(1)
        .stderr_has("while it is off")
        .stderr_has("org.bmcd.Error.NotAllowed");

    // On: bmcctl waits until the host is on.
    env.bmcctl(&["chassis", "power", "on"]).success();
    assert_eq!(c.power_state().unwrap(), PowerState::On);

    // Off without --yes and without a terminal: refused, nothing done.
    let r = env.bmcctl(&["chassis", "power", "off"]);
    r.expect_code(2).stderr_has("--yes");
    assert_eq!(c.power_state().unwrap(), PowerState::On);

    // Cycle and reset: back on when bmcctl returns.
    env.bmcctl(&["chassis", "power", "cycle", "--yes"])
        .success();
    assert_eq!(c.power_state().unwrap(), PowerState::On);
    env.bmcctl(&["--yes", "chassis", "power", "reset"])
        .success();
    assert_eq!(c.power_state().unwrap(), PowerState::On);

    // Off with --yes (graceful; the simulated host cooperates).
    env.bmcctl(&["chassis", "power", "off", "--yes"]).success();
    assert_eq!(c.power_state().unwrap(), PowerState::Off);

    // JSON: one document describing the result.
    env.bmcctl(&["chassis", "power", "on", "--json"]).success();
    let j = env.bmcctl(&["--json", "--yes", "chassis", "power", "off", "--force"]);
    let v = j.success().json();
    assert_eq!(v["PowerState"], "Off", "{j}");
    assert_eq!(c.power_state().unwrap(), PowerState::Off);
    // --json never prompts: without --yes it refuses.
    env.bmcctl(&["chassis", "power", "on"]).success();
    let j = env.bmcctl(&["--json", "chassis", "power", "cycle"]);
    j.expect_code(2);
    assert_eq!(j.json()["error"]["exit_code"], 2, "{j}");
}

#[test]
fn busy_is_exit_5() {
    let env = Env::new();
    env.bmcctl(&["chassis", "power", "on"]).success();
    // A host that ignores the shutdown request keeps the off pending.
    env.sim()
        .set_host_responsive(false, Default::default())
        .unwrap();
    env.bmcctl(&[
        "--yes",
        "chassis",
        "power",
        "off",
        "--graceful-timeout",
        "30",
        "--no-wait",
    ])
    .success();
    env.bmcctl(&["--yes", "chassis", "power", "off"])
        .expect_code(5)
        .stderr_has("org.bmcd.Error.Busy");
    env.bmcctl(&["chassis", "power", "on"])
        .expect_code(5)
        .stderr_has("org.bmcd.Error.Busy");
}

#[test]
fn identify_turns_itself_off() {
    let env = Env::new();
    let c = env.chassis();
    env.bmcctl(&["chassis", "identify", "on", "--seconds", "2"])
        .success();
    assert!(c.identify_active().unwrap());
    let v = env.bmcctl(&["chassis", "status", "--json"]).json();
    assert_eq!(v["IdentifyActive"], true);
    assert!(v["IdentifyExpires"].is_string(), "{v}");
    wait_value(
        "identify to turn itself off",
        secs(6.0),
        || c.identify_active().unwrap(),
        |a| !a,
    );
    env.bmcctl(&["chassis", "identify", "on"]).success();
    assert!(c.identify_active().unwrap());
    assert_eq!(c.identify_expires().unwrap(), 0);
    env.bmcctl(&["chassis", "identify", "off"]).success();
    assert!(!c.identify_active().unwrap());
}

#[test]
fn policy_set_get_persists_across_restart() {
    let env = Env::new();
    env.bmcctl(&["chassis", "policy"])
        .success()
        .stdout_has("AlwaysOff");
    env.bmcctl(&["chassis", "policy", "set", "alwayson"])
        .success();
    env.bmcctl(&["chassis", "policy", "get"])
        .success()
        .stdout_has("AlwaysOn");
    env.bmcctl(&["chassis", "policy", "set", "sometimes"])
        .expect_code(2)
        .stderr_has("AlwaysOn");

    env.daemon.restart();
    let v = env.bmcctl(&["--json", "chassis", "policy"]).json();
    assert_eq!(v["RestorePolicy"], "AlwaysOn", "{v}");
    // And the policy acted: the host comes on after the restart.
    env.wait_power(PowerState::On, secs(5.0));
}

#[test]
fn fans_list_show_and_manual_override() {
    let env = Env::new();
    let r = env.bmcctl(&["fan", "list"]);
    r.success();
    for f in ["fan0", "fan1", "fan2", "fan3"] {
        assert!(r.stdout.contains(f), "{r}");
    }
    let v = env.bmcctl(&["fan", "list", "--json"]).json();
    assert_eq!(v["Fans"].as_array().map(Vec::len), Some(4), "{v}");
    assert_eq!(v["Zone"]["Mode"], "Auto", "{v}");
    env.bmcctl(&["fan", "show", "fan1"])
        .success()
        .stdout_has("fan1");
    let s = env.bmcctl(&["fan", "show", "fan1", "--json"]).json();
    assert!(s.to_string().contains("fan1"), "{s}");

    // Errors: unknown fan (4), level out of range (2; bmcctl's own check).
    env.bmcctl(&["fan", "show", "nope"]).expect_code(4);
    env.bmcctl(&["fan", "mode", "manual", "--level", "50", "--fans", "nope"])
        .expect_code(4)
        .stderr_has("nope");
    env.bmcctl(&["fan", "mode", "manual", "--level", "101"])
        .expect_code(2)
        .stderr_has("0..=100");

    // Manual with a timeout returns to Auto by itself.
    let z = env.cooling();
    env.bmcctl(&["fan", "mode", "manual", "--level", "60", "--timeout", "2"])
        .success();
    assert_eq!(z.mode().unwrap(), CoolingMode::Manual);
    assert_eq!(z.manual_level().unwrap(), 60);
    env.bmcctl(&["fan", "mode"]).success().stdout_has("Manual");
    env.wait_mode(CoolingMode::Auto, secs(6.0));

    // Manual on some fans until `fan mode auto`.
    env.bmcctl(&[
        "fan",
        "mode",
        "manual",
        "--level",
        "70",
        "--fans",
        "fan0,fan2",
    ])
    .success();
    assert_eq!(z.manual_fans().unwrap(), ["fan0", "fan2"]);
    let f2 = env.fan("fan2");
    wait_value(
        "fan2 at 70 %",
        secs(5.0),
        || f2.pwm().unwrap(),
        |p| *p == 70,
    );
    env.bmcctl(&["fan", "mode", "auto"]).success();
    assert_eq!(z.mode().unwrap(), CoolingMode::Auto);
}

#[test]
fn daemon_absent_is_a_clear_error() {
    let bus = TestBus::new();
    let r = bmcctl_at(bus.address(), &["chassis", "status"]);
    r.expect_code(1).stderr_has("not running");
    assert_eq!(r.stderr.trim().lines().count(), 1, "one line:\n{r}");
    assert!(r.elapsed < Duration::from_secs(5), "slow:\n{r}");
    // A socket that does not exist: also exit 1, at once.
    let dir = TempDir::new("nobus");
    let addr = format!("unix:path={}", dir.join("none").display());
    let r = bmcctl_at(&addr, &["fan", "list"]);
    r.expect_code(1);
    assert_eq!(r.stderr.trim().lines().count(), 1, "one line:\n{r}");
    assert!(r.elapsed < Duration::from_secs(5), "slow:\n{r}");
}

#[test]
fn silent_bus_times_out_with_exit_6() {
    // A "bus" that accepts connections and never says a word.
    let dir = TempDir::new("silent");
    let sock = dir.join("bus");
    let listener = UnixListener::bind(&sock).unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    let addr = format!("unix:path={}", sock.display());
    let r = bmcctl_at(&addr, &["--timeout", "2", "chassis", "status"]);
    r.expect_code(6);
    assert_eq!(r.stderr.trim().lines().count(), 1, "one line:\n{r}");
    assert!(
        r.elapsed >= Duration::from_millis(1500) && r.elapsed < Duration::from_secs(8),
        "should give up after about 2 s:\n{r}"
    );
}

#[test]
fn cli_and_proxy_agree() {
    // What bmcctl prints is what the daemon says.
    let env = Env::new();
    env.chassis().power_on(no_options()).unwrap();
    env.wait_power(PowerState::On, secs(5.0));
    let v = env.bmcctl(&["fan", "list", "--json"]).json();
    let z = env.cooling();
    assert_eq!(v["Zone"]["FailsafeLevel"], z.failsafe_level().unwrap());
    let names: Vec<&str> = v["Fans"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["Name"].as_str())
        .collect();
    assert_eq!(names, ["fan0", "fan1", "fan2", "fan3"]);
    let s = env.bmcctl(&["chassis", "status", "--json"]).json();
    assert_eq!(s["PowerState"], "On");
}
