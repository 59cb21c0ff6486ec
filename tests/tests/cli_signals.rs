//! bmcctl on a terminal under signals, its pager, and the small edges of
//! its command line (issue 6, defects 7, 8 and 11).
//!
//! The terminal tests run a bash snippet on a pseudo-terminal (`script`,
//! see `bmcd_tests::security::Pty`): bmcctl, then `echo rc=$?` and
//! `stty -a` on the same terminal, so the test sees bmcctl's exit status
//! and the terminal's modes after it.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bmcd_tests::bmcd_api::RestorePolicy;
use bmcd_tests::security::{Pam, Pty, SecEnv};
use bmcd_tests::{bmcctl_bin, run, wait_until, Env, TempDir};

const ROOT_PW: &str = "Root-pw.4711";
const T: Duration = Duration::from_secs(30);

/// `snippet` run by bash on a terminal of its own; `$BMCCTL` is bmcctl.
fn bash_on_tty(snippet: &str, env: &[(&str, &str)]) -> Pty {
    let bin = bmcctl_bin().display().to_string();
    let mut all: Vec<(&str, &str)> = vec![("BMCCTL", &bin)];
    all.extend_from_slice(env);
    Pty::spawn(Path::new("/bin/bash"), &["-c", snippet], &all)
}

/// The number after `key=` in `text` (first occurrence).
#[track_caller]
fn number_after(text: &str, key: &str) -> i32 {
    let rest = text
        .split_once(key)
        .unwrap_or_else(|| panic!("{key:?} not shown; terminal:\n{text}"))
        .1;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("no number after {key:?}; terminal:\n{text}"))
}

/// The local-mode words of `stty -a` printed after `after` in `text`.
fn stty_words(text: &str, after: &str) -> Vec<String> {
    let tail = text.split_once(after).map_or("", |(_, t)| t);
    tail.split(|c: char| c.is_whitespace() || c == ';')
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A signal sent to bmcctl while it prompts for a password: bmcctl ends
/// promptly with status 128+n, and the terminal echoes again, is canonical
/// and generates signals (`stty -a` shows `echo icanon isig`).
fn signal_at_the_prompt(sig: libc::c_int) {
    let env = SecEnv::open(Pam::users(&[("root", ROOT_PW)]), |_| {});
    let snippet = "ulimit -c 0
bash -c 'echo pid=$$; exec \"$BMCCTL\" --no-pager chassis policy set AlwaysOn'
echo rc=$?
stty -a
echo end-of-test";
    let tty = bash_on_tty(snippet, &[("BMCCTL_ADDRESS", env.address())]);
    tty.wait_for_password_prompt("root", 1, T);
    let pid = number_after(&tty.output(), "pid=");
    // The bmcctl we started (pid read from its own shell before it exec'd
    // bmcctl).
    let signal = nix::sys::signal::Signal::try_from(sig).unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal)
        .unwrap_or_else(|e| panic!("kill {pid}: {e}"));
    tty.wait_for("end-of-test", 1, T);
    let (_, shown) = tty.wait(T);
    assert_eq!(number_after(&shown, "rc="), 128 + sig, "{shown}");
    let words = stty_words(&shown, "rc=");
    for w in ["echo", "icanon", "isig"] {
        assert!(
            words.iter().any(|x| x == w),
            "terminal left without {w} after signal {sig}:\n{shown}"
        );
    }
    assert_eq!(
        env.chassis().restore_policy().unwrap(),
        RestorePolicy::AlwaysOff,
        "nothing may change"
    );
}

#[test]
fn sigterm_at_the_password_prompt_restores_the_terminal() {
    signal_at_the_prompt(libc::SIGTERM);
}

#[test]
fn sighup_at_the_password_prompt_restores_the_terminal() {
    signal_at_the_prompt(libc::SIGHUP);
}

#[test]
fn sigint_at_the_password_prompt_ends_bmcctl() {
    signal_at_the_prompt(libc::SIGINT);
}

#[test]
fn sigquit_at_the_password_prompt_restores_the_terminal() {
    signal_at_the_prompt(libc::SIGQUIT);
}

/// Ctrl-C while the pager runs: bmcctl does not die, waits for the pager
/// (which handles the signal itself and exits later) and exits 0.
#[test]
fn ctrl_c_in_the_pager_waits_for_the_pager() {
    let env = Env::new();
    let dir = TempDir::new("pager");
    let pager = dir.join("pager.sh");
    std::fs::write(
        &pager,
        "#!/bin/sh
trap 'echo interrupted > \"$D/int\"' INT
cat > \"$D/got\"
echo ready > \"$D/ready\"
while [ ! -e \"$D/go\" ]; do sleep 0.05; done
echo pager-exit
exit 0
",
    )
    .expect("write pager");
    chmod_x(&pager);
    let d = dir.path().display().to_string();
    let pager_s = pager.display().to_string();
    let tty = bash_on_tty(
        "stty rows 5 cols 80; \"$BMCCTL\" fan list; echo rc=$?; echo end-of-test",
        &[
            ("BMCCTL_ADDRESS", env.address()),
            ("BMCCTL_PAGER", &pager_s),
            ("D", &d),
        ],
    );
    let mut tty = tty;
    wait_until("the pager has read everything", T, || {
        dir.join("ready").exists()
    });
    tty.send(b"\x03");
    wait_until("the pager got SIGINT", T, || dir.join("int").exists());
    std::fs::write(dir.join("go"), "").expect("write go");
    tty.wait_for("end-of-test", 1, T);
    let (_, shown) = tty.wait(T);
    let got = std::fs::read_to_string(dir.join("got")).expect("pager input");
    assert!(got.contains("fan0"), "the pager got:\n{got}");
    let exit_at = shown.find("pager-exit").expect("pager-exit shown");
    let rc_at = shown.find("rc=").expect("rc shown");
    assert!(exit_at < rc_at, "bmcctl ended before its pager:\n{shown}");
    assert_eq!(number_after(&shown, "rc="), 0, "{shown}");
}

fn chmod_x(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// `BMCCTL_PAGER=false`: the output never reached the user; say so and exit 1.
#[test]
fn a_failing_pager_is_reported() {
    let env = Env::new();
    let tty = bash_on_tty(
        "stty rows 5 cols 80; \"$BMCCTL\" fan list; echo rc=$?; echo end-of-test",
        &[("BMCCTL_ADDRESS", env.address()), ("BMCCTL_PAGER", "false")],
    );
    tty.wait_for("end-of-test", 1, T);
    let (_, shown) = tty.wait(T);
    assert!(
        shown.contains("bmcctl: pager 'false' exited with status 1"),
        "{shown}"
    );
    assert_eq!(number_after(&shown, "rc="), 1, "{shown}");
}

/// A pager that quits early with status 0 (`head -n 1`), and `less`
/// quit with `q`, are fine: exit 0, no warning.
#[test]
fn quitting_the_pager_early_is_fine() {
    let env = Env::new();
    let tty = bash_on_tty(
        "stty rows 5 cols 80; \"$BMCCTL\" fan list; echo rc=$?; echo end-of-test",
        &[
            ("BMCCTL_ADDRESS", env.address()),
            ("BMCCTL_PAGER", "head -n 1"),
        ],
    );
    tty.wait_for("end-of-test", 1, T);
    let (_, shown) = tty.wait(T);
    assert!(!shown.contains("pager"), "{shown}");
    assert_eq!(number_after(&shown, "rc="), 0, "{shown}");

    let mut tty = bash_on_tty(
        "unset BMCCTL_PAGER LESS; stty rows 5 cols 80; \"$BMCCTL\" fan list; echo rc=$?; echo end-of-test",
        &[("BMCCTL_ADDRESS", env.address()), ("TERM", "xterm")],
    );
    tty.wait_for("fan", 1, T);
    tty.send(b"q");
    tty.wait_for("end-of-test", 1, T);
    let (_, shown) = tty.wait(T);
    assert!(!shown.contains("bmcctl: pager"), "{shown}");
    assert_eq!(number_after(&shown, "rc="), 0, "{shown}");
}

/// `PAGER='cat -n'` is a pager like any other; only `cat` disables paging.
#[test]
fn pager_cat_with_options_is_run() {
    let env = Env::new();
    let tty = bash_on_tty(
        "unset BMCCTL_PAGER; stty rows 5 cols 80; \"$BMCCTL\" fan list; echo rc=$?; echo end-of-test",
        &[("BMCCTL_ADDRESS", env.address()), ("PAGER", "cat -n")],
    );
    tty.wait_for("end-of-test", 1, T);
    let (_, shown) = tty.wait(T);
    assert!(
        shown.contains("     1\t"),
        "not numbered by cat -n:\n{shown}"
    );
    assert_eq!(number_after(&shown, "rc="), 0, "{shown}");
}

/// `$BMCCTL_ADDRESS` does not make the usage line show `--address` as if
/// it were required.
#[test]
fn usage_line_does_not_show_the_address_from_the_environment() {
    let r = run(
        Command::new(bmcctl_bin())
            .args(["chassis", "policy", "set"])
            .env("BMCCTL_ADDRESS", "unix:path=/nonexistent/bus"),
        T,
    );
    r.expect_code(2)
        .stderr_has("Usage: bmcctl chassis policy set <VALUE>");
    assert!(!r.stderr.contains("--address"), "{r}");
    // --address given on the line wins over the environment.
    let env = Env::new();
    let r = run(
        Command::new(bmcctl_bin())
            .args(["--address", env.address(), "chassis", "status"])
            .env("BMCCTL_ADDRESS", "unix:path=/nonexistent/bus"),
        T,
    );
    r.success().stdout_has("Off");
    let help = run(Command::new(bmcctl_bin()).arg("--help"), T);
    help.success().stdout_has("BMCCTL_ADDRESS");
}

/// `--level` is a percentage: its range error says 0..=100.
#[test]
fn level_range_is_a_percentage() {
    let r = run(
        Command::new(bmcctl_bin()).args(["fan", "mode", "manual", "--level", "101"]),
        T,
    );
    r.expect_code(2).stderr_has("0..=100");
    assert!(!r.stderr.contains("255"), "{r}");
}

/// The daemon takes exactly the documented spelling of enum words; bmcctl
/// takes any case and unique prefixes and sends the exact word.
#[test]
fn enum_words_exact_on_the_bus_any_case_in_bmcctl() {
    let env = Env::new();
    let chassis = bmcd_tests::bmcd_api::CHASSIS_PATH;
    for word in ["alwayson", "ALWAYSON", "restore"] {
        let r = env.gdbus(
            "call",
            &[
                "--dest",
                bmcd_tests::bmcd_api::BUS_NAME,
                "--object-path",
                chassis,
                "--method",
                "org.bmcd.Chassis1.SetRestorePolicy",
                word,
                "{}",
            ],
        );
        assert_ne!(r.code, 0, "{r}");
        r.stderr_has("org.bmcd.Error.InvalidArgument")
            .stderr_has("AlwaysOn, AlwaysOff, Restore, None");
    }
    assert_eq!(
        env.chassis().restore_policy().unwrap(),
        RestorePolicy::AlwaysOff
    );
    env.busctl(&[
        "call",
        bmcd_tests::bmcd_api::BUS_NAME,
        chassis,
        "org.bmcd.Chassis1",
        "SetRestorePolicy",
        "sa{sv}",
        "Restore",
        "0",
    ])
    .success();
    assert_eq!(
        env.chassis().restore_policy().unwrap(),
        RestorePolicy::Restore
    );

    for (word, want) in [
        ("alwayson", RestorePolicy::AlwaysOn),
        ("res", RestorePolicy::Restore),
        ("ALWAYSOFF", RestorePolicy::AlwaysOff),
        ("n", RestorePolicy::None),
        ("AlwaysOn", RestorePolicy::AlwaysOn),
    ] {
        env.bmcctl(&["chassis", "policy", "set", word]).success();
        assert_eq!(env.chassis().restore_policy().unwrap(), want, "{word}");
    }
    let r = env.bmcctl(&["chassis", "policy", "set", "always"]);
    r.expect_code(2)
        .stderr_has("AlwaysOn")
        .stderr_has("AlwaysOff");
    let r = env.bmcctl(&["chassis", "policy", "set", "sometimes"]);
    r.expect_code(2)
        .stderr_has("AlwaysOn, AlwaysOff, Restore, None");
    assert_eq!(
        env.chassis().restore_policy().unwrap(),
        RestorePolicy::AlwaysOn
    );
}

/// Ctrl-C typed at the prompt (a character while ISIG is off): bmcctl ends
/// as interrupted (130) and the terminal is restored.
#[test]
fn ctrl_c_typed_at_the_password_prompt_restores_the_terminal() {
    let env = SecEnv::open(Pam::users(&[("root", ROOT_PW)]), |_| {});
    let snippet = "\"$BMCCTL\" --no-pager chassis policy set AlwaysOn
echo rc=$?
stty -a
echo end-of-test";
    let mut tty = bash_on_tty(snippet, &[("BMCCTL_ADDRESS", env.address())]);
    tty.wait_for_password_prompt("root", 1, T);
    tty.send(b"abc\x03");
    tty.wait_for("end-of-test", 1, T);
    let (_, shown) = tty.wait(T);
    assert_eq!(number_after(&shown, "rc="), 130, "{shown}");
    let words = stty_words(&shown, "rc=");
    for w in ["echo", "icanon", "isig"] {
        assert!(
            words.iter().any(|x| x == w),
            "terminal left without {w}:\n{shown}"
        );
    }
    assert!(!shown.contains("abc"), "typed text shown:\n{shown}");
}
