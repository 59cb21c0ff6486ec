//! bmcctl's side of re-authentication, with the real daemon under
//! pam_wrapper (see `bmcd_tests::security`): the `Password for USER:`
//! prompt on a pseudo-terminal (`script`), `--password-stdin`,
//! `--no-ask-password`, `--json`, and the exit code 3 with one clear line
//! for a wrong password, a lockout and a missing role.

use std::path::Path;
use std::time::Duration;

use bmcd_tests::bmcd_api::{CoolingMode, RestorePolicy};
use bmcd_tests::security::{Pam, Pty, SecEnv, Who};
use bmcd_tests::{bmcctl_bin, Run};
use serde_json::json;

const ROOT_PW: &str = "Root-pw.4711";
const NOBODY_PW: &str = "Nobody-pw.0815";
const GUESS: [&str; 3] = ["Guess-1.a9", "Guess-2.b8", "Guess-3.c7"];
const T: Duration = Duration::from_secs(20);

fn pam() -> Pam {
    Pam::users(&[("root", ROOT_PW), ("nobody", NOBODY_PW)])
}

fn env() -> SecEnv {
    SecEnv::open(pam(), |_| {})
}

/// `bmcctl --no-pager ARGS` on a terminal of its own, against `env`'s bus.
fn on_tty(env: &SecEnv, args: &[&str]) -> Pty {
    let mut all = vec!["--no-pager"];
    all.extend_from_slice(args);
    Pty::spawn(&bmcctl_bin(), &all, &[("BMCCTL_ADDRESS", env.address())])
}

/// No password of the test shows anywhere in `text`.
#[track_caller]
fn assert_no_password(text: &str) {
    for pw in [ROOT_PW, NOBODY_PW].iter().chain(GUESS.iter()) {
        assert!(!text.contains(pw), "a password is shown:\n{text}");
    }
}

/// Exit 3, and exactly one line on stderr containing every one of `has`.
#[track_caller]
fn denied_one_line(r: &Run, has: &[&str]) {
    r.expect_code(3);
    assert_eq!(r.stderr.lines().count(), 1, "not one line:\n{r}");
    for h in has {
        r.stderr_has(h);
    }
    assert_no_password(&r.stdout);
    assert_no_password(&r.stderr);
}

#[test]
fn prompt_on_a_terminal_right_password() {
    let env = env();
    let mut tty = on_tty(&env, &["chassis", "policy", "set", "AlwaysOn"]);
    tty.wait_for_password_prompt("root", 1, T);
    tty.type_line(ROOT_PW);
    let (code, shown) = tty.wait(T);
    assert_eq!(code, 0, "{shown}");
    assert_eq!(shown.matches("Password for root: ").count(), 1, "{shown}");
    assert!(!shown.contains("Authentication failed"), "{shown}");
    assert_no_password(&shown);
    assert_eq!(
        env.chassis().restore_policy().unwrap(),
        RestorePolicy::AlwaysOn
    );
    assert_no_password(&env.daemon.log());
}

#[test]
fn prompt_wrong_then_right_password() {
    let env = env();
    let mut tty = on_tty(&env, &["fan", "mode", "manual", "--level", "65"]);
    tty.wait_for_password_prompt("root", 1, T);
    tty.type_line(GUESS[0]);
    // The failure is said, then the prompt comes again.
    tty.wait_for_password_prompt("root", 2, T);
    assert!(
        tty.output()
            .contains("Authentication failed: wrong password"),
        "{}",
        tty.output()
    );
    tty.type_line(ROOT_PW);
    let (code, shown) = tty.wait(T);
    assert_eq!(code, 0, "{shown}");
    assert_eq!(shown.matches("Password for root: ").count(), 2, "{shown}");
    assert_no_password(&shown);
    let z = env.cooling();
    assert_eq!(z.mode().unwrap(), CoolingMode::Manual);
    assert_eq!(z.manual_level().unwrap(), 65);
}

#[test]
fn prompt_three_failures_exit_3() {
    let env = env();
    let mut tty = on_tty(&env, &["chassis", "policy", "set", "AlwaysOn"]);
    for (i, guess) in GUESS.iter().enumerate() {
        tty.wait_for_password_prompt("root", i + 1, T);
        tty.type_line(guess);
    }
    let (code, shown) = tty.wait(T);
    assert_eq!(code, 3, "{shown}");
    // Three prompts, never a fourth; each failure said clearly.
    assert_eq!(shown.matches("Password for root: ").count(), 3, "{shown}");
    assert_eq!(
        shown
            .matches("Authentication failed: wrong password")
            .count(),
        2,
        "{shown}"
    );
    assert!(shown.contains("wrong password, 3 tries"), "{shown}");
    assert!(
        shown.contains("org.bmcd.Error.AuthenticationFailed"),
        "{shown}"
    );
    assert_no_password(&shown);
    assert_eq!(
        env.chassis().restore_policy().unwrap(),
        RestorePolicy::AlwaysOff
    );
}

#[test]
fn password_stdin_on_a_terminal_is_one_hidden_try() {
    let env = env();
    let mut tty = on_tty(
        &env,
        &["--password-stdin", "chassis", "policy", "set", "AlwaysOn"],
    );
    tty.wait_for_password_prompt("root", 1, T);
    tty.type_line(GUESS[0]);
    let (code, shown) = tty.wait(T);
    assert_eq!(code, 3, "{shown}");
    assert_eq!(shown.matches("Password for root: ").count(), 1, "{shown}");
    assert!(shown.contains("wrong password"), "{shown}");
    assert_no_password(&shown);
    assert_eq!(
        env.chassis().restore_policy().unwrap(),
        RestorePolicy::AlwaysOff
    );
}

#[test]
fn ctrl_d_at_the_prompt_gives_up() {
    let env = env();
    let mut tty = on_tty(&env, &["chassis", "policy", "set", "AlwaysOn"]);
    tty.wait_for_password_prompt("root", 1, T);
    tty.send(b"\x04");
    let (code, shown) = tty.wait(T);
    assert_eq!(code, 3, "{shown}");
    assert!(shown.contains("no password given"), "{shown}");
    assert_eq!(shown.matches("Password for root: ").count(), 1, "{shown}");
    assert_eq!(
        env.chassis().restore_policy().unwrap(),
        RestorePolicy::AlwaysOff
    );
    assert!(!env.daemon.log().contains("authentication failed"));
}

#[test]
fn lockout_ends_the_prompts_with_one_line() {
    let env = SecEnv::open(pam(), |cfg| {
        cfg["auth"]["max_failures"] = json!(2);
        cfg["auth"]["lockout_s"] = json!(600);
    });
    let mut tty = on_tty(&env, &["chassis", "policy", "set", "AlwaysOn"]);
    tty.wait_for_password_prompt("root", 1, T);
    tty.type_line(GUESS[0]);
    tty.wait_for_password_prompt("root", 2, T);
    tty.type_line(GUESS[1]);
    let (code, shown) = tty.wait(T);
    assert_eq!(code, 3, "{shown}");
    assert_eq!(shown.matches("Password for root: ").count(), 2, "{shown}");
    assert!(shown.contains("locked out"), "{shown}");
    assert!(shown.contains("org.bmcd.Error.LockedOut"), "{shown}");
    assert_no_password(&shown);

    // While locked out, scripts get one line and exit 3 too.
    let r = env.bmcctl_as(
        &Who::root(),
        &["--password-stdin", "chassis", "policy", "set", "AlwaysOn"],
        Some(&format!("{ROOT_PW}\n")),
    );
    denied_one_line(&r, &["locked out", "org.bmcd.Error.LockedOut"]);
    assert_eq!(
        env.chassis().restore_policy().unwrap(),
        RestorePolicy::AlwaysOff
    );
}

#[test]
fn password_stdin() {
    let env = env();
    let root = Who::root();
    // The first line of stdin; the rest is not read.
    let r = env.bmcctl_as(
        &root,
        &["--password-stdin", "chassis", "policy", "set", "Restore"],
        Some(&format!("{ROOT_PW}\nnot-read\n")),
    );
    r.success();
    assert!(!r.stderr.contains("Password for"), "no prompt:\n{r}");
    assert_no_password(&r.stdout);
    assert_no_password(&r.stderr);
    assert_eq!(
        env.chassis().restore_policy().unwrap(),
        RestorePolicy::Restore
    );

    // Asked for only when bmcd wants it: a call that is not sensitive
    // leaves stdin alone (and succeeds with an empty one).
    env.bmcctl_as(
        &root,
        &["--password-stdin", "chassis", "identify", "on"],
        Some(""),
    )
    .success();

    // With --json: one JSON document, no prompt.
    let r = env.bmcctl_as(
        &root,
        &[
            "--json",
            "--password-stdin",
            "fan",
            "mode",
            "manual",
            "--level",
            "70",
        ],
        Some(&format!("{ROOT_PW}\n")),
    );
    r.success().json();
    assert_eq!(env.cooling().mode().unwrap(), CoolingMode::Manual);

    // A wrong one: one try, one line, exit 3, nothing changed.
    let r = env.bmcctl_as(
        &root,
        &["--password-stdin", "chassis", "policy", "set", "AlwaysOn"],
        Some(&format!("{}\n", GUESS[0])),
    );
    denied_one_line(
        &r,
        &["wrong password", "org.bmcd.Error.AuthenticationFailed"],
    );
    assert_eq!(
        env.chassis().restore_policy().unwrap(),
        RestorePolicy::Restore
    );
    let r = env.bmcctl_as(
        &root,
        &[
            "--json",
            "--password-stdin",
            "chassis",
            "policy",
            "set",
            "AlwaysOn",
        ],
        Some(&format!("{}\n", GUESS[1])),
    );
    r.expect_code(3);
    let v = r.json();
    assert_eq!(
        v["error"]["name"], "org.bmcd.Error.AuthenticationFailed",
        "{r}"
    );
    assert_eq!(v["error"]["exit_code"], 3, "{r}");
    assert_no_password(&r.stdout);

    // Empty stdin: exit 3, naming the option.
    let r = env.bmcctl_as(
        &root,
        &["--password-stdin", "chassis", "policy", "set", "AlwaysOn"],
        Some(""),
    );
    denied_one_line(&r, &["--password-stdin"]);

    // Longer than bmcd could take: refused (exit 2) without being sent.
    let attempts = env.daemon.log().matches("authentication failed").count();
    let long = "x".repeat(600);
    let r = env.bmcctl_as(
        &root,
        &["--password-stdin", "chassis", "policy", "set", "AlwaysOn"],
        Some(&format!("{long}\n")),
    );
    r.expect_code(2).stderr_has("512 bytes");
    assert!(!r.stderr.contains(&long));
    assert_eq!(
        env.daemon.log().matches("authentication failed").count(),
        attempts,
        "the long password was sent"
    );
    assert_eq!(
        env.chassis().restore_policy().unwrap(),
        RestorePolicy::Restore
    );
    assert_no_password(&env.daemon.log());
}

#[test]
fn no_ask_password_json_and_no_terminal_exit_3() {
    let env = env();
    let root = Who::root();
    let set = ["chassis", "policy", "set", "AlwaysOn"];
    let with = |opts: &[&'static str]| {
        let mut a: Vec<&str> = opts.to_vec();
        a.extend_from_slice(&set);
        a
    };

    // --no-ask-password: names the option to use.
    let r = env.bmcctl_as(&root, &with(&["--no-ask-password"]), None);
    denied_one_line(
        &r,
        &[
            "--no-ask-password",
            "--password-stdin",
            "org.bmcd.Error.AuthenticationRequired",
        ],
    );
    // --json: one JSON error document naming the option.
    let r = env.bmcctl_as(&root, &with(&["--json"]), None);
    r.expect_code(3);
    let v = r.json();
    assert_eq!(
        v["error"]["name"], "org.bmcd.Error.AuthenticationRequired",
        "{r}"
    );
    assert_eq!(v["error"]["exit_code"], 3, "{r}");
    let msg = v["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("--password-stdin") && msg.contains("--json"),
        "{r}"
    );
    // No terminal and no option: the same, naming --password-stdin.
    let r = env.bmcctl_as(&root, &set, None);
    denied_one_line(&r, &["--password-stdin"]);

    // On a terminal, --no-ask-password and --json still never prompt.
    for opts in [&["--no-ask-password"][..], &["--json"][..]] {
        let tty = on_tty(&env, &with(opts));
        let (code, shown) = tty.wait(T);
        assert_eq!(code, 3, "{opts:?}: {shown}");
        assert!(
            !shown.contains("Password for"),
            "{opts:?} prompted: {shown}"
        );
        assert!(shown.contains("--password-stdin"), "{opts:?}: {shown}");
    }
    assert_eq!(
        env.chassis().restore_policy().unwrap(),
        RestorePolicy::AlwaysOff
    );
    // Nothing was sent to PAM.
    assert!(!env.daemon.log().contains("authentication failed"));
}

#[test]
fn missing_role_is_one_line_exit_3_and_no_password_is_sent() {
    let env = env();
    // An Operator may not set the restore policy: refused before any
    // password is asked for or read.
    let r = env.bmcctl_as(
        &Who::operator(),
        &["--password-stdin", "chassis", "policy", "set", "AlwaysOn"],
        Some(&format!("{NOBODY_PW}\n")),
    );
    denied_one_line(
        &r,
        &[
            "needs the Administrator role",
            "org.bmcd.Error.PermissionDenied",
        ],
    );
    // A reader may not power the host on.
    let r = env.bmcctl_as(&Who::reader(), &["chassis", "power", "on"], None);
    denied_one_line(
        &r,
        &["needs the Operator role", "org.bmcd.Error.PermissionDenied"],
    );
    let log = env.daemon.log();
    assert!(
        !log.contains("authentication") && !log.contains("Session1.Authenticate"),
        "an authentication was attempted:\n{log}"
    );
    assert_eq!(
        env.chassis().restore_policy().unwrap(),
        RestorePolicy::AlwaysOff
    );
    assert_eq!(
        env.chassis().power_state().unwrap(),
        bmcd_tests::bmcd_api::PowerState::Off
    );
}

#[test]
fn an_administrator_by_group_is_asked_for_their_own_password() {
    let env = env();
    // nobody + the admin group, on a terminal: the prompt names nobody,
    // and nobody's password (not root's) is what counts.
    let admin = Who::admin();
    let groups: Vec<String> = admin.groups.iter().map(u32::to_string).collect();
    let bmcctl = bmcctl_bin().display().to_string();
    let args = [
        "--reuid=65534",
        "--regid=65534",
        &format!("--groups={}", groups.join(",")),
        "--",
        &bmcctl,
        "--no-pager",
        "chassis",
        "policy",
        "set",
        "AlwaysOn",
    ];
    let mut tty = Pty::spawn(
        Path::new("setpriv"),
        &args,
        &[("BMCCTL_ADDRESS", env.address())],
    );
    tty.wait_for_password_prompt("nobody", 1, T);
    tty.type_line(ROOT_PW);
    tty.wait_for_password_prompt("nobody", 2, T);
    tty.type_line(NOBODY_PW);
    let (code, shown) = tty.wait(T);
    assert_eq!(code, 0, "{shown}");
    assert_no_password(&shown);
    assert_eq!(
        env.chassis().restore_policy().unwrap(),
        RestorePolicy::AlwaysOn
    );
    let log = env.daemon.log();
    assert!(
        log.contains("authentication failed: user=nobody uid=65534"),
        "{log}"
    );
    assert!(
        log.contains("authentication succeeded: user=nobody uid=65534"),
        "{log}"
    );
    assert_no_password(&log);
}
