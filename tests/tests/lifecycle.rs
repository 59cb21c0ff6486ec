//! How bmcd ends, and what it leaves the fans at: every terminating
//! signal stops it cleanly (fans handed back, exit 0) or is handled on
//! purpose (SIGHUP is ignored), a lost bus connection is noticed (fans
//! handed back, exit non-zero), and after a crash `bmcd --release-fans`
//! (the unit's `ExecStopPost=`) hands the fans back.
//!
//! The fans are hwmon fans in a fake sysfs tree ([`FakeHwmon`], as in
//! `hwmon.rs`: four channels that start under automatic control at full
//! duty, and a tmp75 at 23.5 °C, for which the curve asks 20 %), so what
//! the daemon leaves behind can be read from files.

use std::process::Command;

use bmcd_tests::{bmcd_bin, duty, run, secs, wait_until, wait_value, Env, FakeHwmon, TempDir};

const FANS: u32 = 4;

/// Every channel under software control at 20 % (duty 51).
fn driven() -> Vec<(String, String)> {
    vec![(duty(20), "1".to_owned()); FANS as usize]
}

fn released() -> Vec<(String, String)> {
    vec![("255".to_owned(), "2".to_owned()); FANS as usize]
}

/// Wait until the daemon has every channel under software control at 20 %.
fn wait_driven(sys: &FakeHwmon) {
    wait_value(
        "every channel driven by bmcd (pwm 51, enable 1)",
        secs(15.0),
        || sys.channels(),
        |c| *c == driven(),
    );
}

/// A daemon on the fake tree, driving the fans.
fn start() -> (FakeHwmon, Env) {
    let sys = FakeHwmon::new(FANS);
    let env = Env::with_config(sys.config());
    wait_driven(&sys);
    (sys, env)
}

/// Wait for the daemon to exit by itself; panic with its log otherwise.
fn wait_exit(env: &Env, what: &str) -> i32 {
    env.daemon.wait_exit(secs(15.0)).unwrap_or_else(|| {
        panic!(
            "bmcd still runs 15 s after {what}; log:\n{}",
            env.daemon.log_tail(40)
        )
    })
}

/// `sig` stops the daemon the clean way: exit 0, the stop logged with the
/// signal's name, every channel handed back (full duty, automatic).
fn stops_cleanly(env: &Env, sys: &FakeHwmon, sig: i32, name: &str) {
    env.daemon.send_signal(sig);
    let code = wait_exit(env, name);
    let log = env.daemon.log();
    assert_eq!(code, 0, "bmcd did not exit 0 on {name}; log:\n{log}");
    assert!(
        log.contains(&format!("{name}: stopping")),
        "the stop is not logged with {name}; log:\n{log}"
    );
    assert_eq!(sys.channels(), released(), "fans not handed back on {name}");
}

fn stop_test(sig: i32, name: &str) {
    let (sys, env) = start();
    stops_cleanly(&env, &sys, sig, name);
}

#[test]
fn sigquit_stops_cleanly_and_hands_the_fans_back() {
    stop_test(libc::SIGQUIT, "SIGQUIT");
}

#[test]
fn sigusr1_stops_cleanly_and_hands_the_fans_back() {
    stop_test(libc::SIGUSR1, "SIGUSR1");
}

#[test]
fn sigusr2_stops_cleanly_and_hands_the_fans_back() {
    stop_test(libc::SIGUSR2, "SIGUSR2");
}

/// The rest of the signals whose default action ends a process (and that
/// are not faults of the process itself), one after another on one tree.
#[test]
fn every_other_terminating_signal_stops_cleanly() {
    let (sys, env) = start();
    let signals = [
        (libc::SIGINT, "SIGINT"),
        (libc::SIGALRM, "SIGALRM"),
        (libc::SIGVTALRM, "SIGVTALRM"),
        (libc::SIGPROF, "SIGPROF"),
        (libc::SIGXCPU, "SIGXCPU"),
        (libc::SIGXFSZ, "SIGXFSZ"),
        (libc::SIGIO, "SIGIO"),
        (libc::SIGPWR, "SIGPWR"),
    ];
    for (i, (sig, name)) in signals.into_iter().enumerate() {
        if i > 0 {
            env.daemon.start_again();
            wait_driven(&sys);
        }
        stops_cleanly(&env, &sys, sig, name);
    }
}

#[test]
fn sighup_is_ignored_and_bmcd_keeps_serving() {
    let (sys, env) = start();
    env.daemon.send_signal(libc::SIGHUP);
    let said = "SIGHUP: configuration reload is not supported; restart bmcd to apply a new \
                configuration";
    wait_until(
        "the SIGHUP log line, or the daemon's end",
        secs(15.0),
        || env.daemon.log().contains(said) || !env.daemon.alive(),
    );
    assert!(
        env.daemon.alive(),
        "SIGHUP ended bmcd; log:\n{}",
        env.daemon.log_tail(40)
    );
    // Still serving and still driving the fans.
    env.cooling().mode().expect("Mode after SIGHUP");
    assert_eq!(sys.channels(), driven());
    assert_eq!(env.daemon.stop(), 0);
    assert_eq!(sys.channels(), released());
}

/// SIGPIPE is ignored (the Rust runtime sets it to SIG_IGN before `main`),
/// so a client or syslog closing a socket under bmcd cannot end it.
#[test]
fn sigpipe_is_ignored() {
    let (sys, env) = start();
    let status = std::fs::read_to_string(format!("/proc/{}/status", env.daemon.pid()))
        .expect("/proc/PID/status");
    let ignored = status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .expect("SigIgn in /proc/PID/status");
    assert_ne!(
        ignored & (1 << (libc::SIGPIPE - 1)),
        0,
        "SIGPIPE is not ignored: SigIgn {ignored:x}"
    );
    env.daemon.send_signal(libc::SIGPIPE);
    env.cooling().mode().expect("Mode after SIGPIPE");
    assert!(env.daemon.alive());
    assert_eq!(sys.channels(), driven());
}

/// A crash (here SIGKILL) leaves the channels as the daemon last drove
/// them; `bmcd --release-fans` with the same configuration, which the unit
/// runs as `ExecStopPost=`, hands them back.
#[test]
fn after_kill_9_release_fans_hands_the_fans_back() {
    let (sys, env) = start();
    env.daemon.kill9();
    assert_eq!(
        sys.channels(),
        driven(),
        "a killed daemon cannot have touched the fans"
    );
    let r = run(
        Command::new(bmcd_bin())
            .arg("--config")
            .arg(env.daemon.config_path())
            .arg("--release-fans")
            .arg("--log")
            .arg("stderr"),
        secs(30.0),
    );
    r.success();
    assert_eq!(sys.channels(), released(), "{r}");
    assert!(r.stderr.contains("fans handed back"), "{r}");
}

/// On the sim platform the simulated fans died with the daemon's process:
/// `--release-fans` has nothing to do and says so. No bus is needed.
#[test]
fn release_fans_on_the_sim_platform_succeeds_without_a_bus() {
    let dir = TempDir::new("simrel");
    let cfg = bmcd_tests::test_config(&dir.join("state"));
    let path = dir.join("bmcd.json");
    std::fs::write(&path, cfg.to_string()).unwrap();
    let r = run(
        Command::new(bmcd_bin())
            .arg("--config")
            .arg(&path)
            .arg("--release-fans")
            .arg("--log")
            .arg("stderr")
            .env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent"),
        secs(30.0),
    );
    r.success().stderr_has("sim platform");
}

/// The bus daemon dies: bmcd notices, says so once, hands the fans back and
/// exits non-zero (so that `Restart=on-failure` restarts it).
#[test]
fn a_lost_bus_is_noticed_once_and_the_fans_handed_back() {
    let (sys, mut env) = start();
    env.bus.kill();
    let code = wait_exit(&env, "the bus daemon was killed");
    let log = env.daemon.log();
    assert_ne!(code, 0, "bmcd exited 0 after losing the bus; log:\n{log}");
    assert_ne!(code, -1, "bmcd was killed by a signal; log:\n{log}");
    assert_eq!(
        log.matches("lost the connection to the bus").count(),
        1,
        "the loss must be logged exactly once; log:\n{log}"
    );
    assert_eq!(sys.channels(), released(), "fans not handed back");
}

/// SIGTERM sent the moment `org.bmcd` appears (as a service manager or a
/// test may) stops bmcd cleanly: its handlers are in place before the name
/// is requested. They used to be installed only after the name and the
/// restore policy, and one SIGTERM in that window killed bmcd the default
/// way (seen once in `pam_wrapper_starts`).
#[test]
fn sigterm_as_soon_as_the_name_appears_stops_cleanly() {
    let env = Env::new();
    for _ in 0..25 {
        // restart(): SIGTERM right after the name was seen, assert exit 0,
        // start again and wait for the name.
        env.daemon.restart();
    }
    env.assert_serving();
}
