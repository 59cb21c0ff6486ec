//! Re-authentication for real: `Session1.Authenticate` runs PAM through
//! pam_wrapper + pam_matrix (a password file of the test's own, never the
//! machine's accounts; see `bmcd_tests::security`), with re-authentication
//! at its shipped default (on).
//!
//! Root's calls go through in-process zbus connections (the tests run as
//! root, an Administrator); other uids through `gdbus` under `setpriv`
//! (gdbus names the D-Bus error, busctl does not).

use std::time::{Duration, Instant};

use bmcd_tests::bmcd_api::{
    ChassisProxyBlocking, CoolingMode, RestorePolicy, SessionProxyBlocking,
};
use bmcd_tests::security::{Pam, SecEnv, Who, SERVICE};
use bmcd_tests::zbus::blocking::Connection;
use bmcd_tests::zbus::proxy::CacheProperties;
use bmcd_tests::{expect_error, no_options, secs, wait_until, wait_value};
use serde_json::json;

const ROOT_PW: &str = "Root-pw.4711";
const NOBODY_PW: &str = "Nobody-pw.0815";
const BIN_PW: &str = "Bin-pw.2342";
/// Wrong guesses, distinct so that the log can be searched for them.
const GUESS: [&str; 4] = ["Guess-1.a9", "Guess-2.b8", "Guess-3.c7", "Guess-4.d6"];

/// root and nobody may use `bmcd`; bin only another service.
fn pam() -> Pam {
    Pam::new(&[
        ("root", ROOT_PW, SERVICE),
        ("nobody", NOBODY_PW, SERVICE),
        ("bin", BIN_PW, "sshd"),
    ])
}

fn session(conn: &Connection) -> SessionProxyBlocking<'static> {
    SessionProxyBlocking::builder(conn)
        .cache_properties(CacheProperties::No)
        .build()
        .expect("session proxy")
}

fn chassis(conn: &Connection) -> ChassisProxyBlocking<'static> {
    ChassisProxyBlocking::builder(conn)
        .cache_properties(CacheProperties::No)
        .build()
        .expect("chassis proxy")
}

/// No password of the test ever reaches the daemon's log.
#[track_caller]
fn assert_no_password_logged(env: &SecEnv) {
    let log = env.daemon.log();
    for pw in [ROOT_PW, NOBODY_PW, BIN_PW].iter().chain(GUESS.iter()) {
        assert!(!log.contains(pw), "a password is in the daemon log:\n{log}");
    }
}

#[test]
fn right_password_grants_exactly_one_sensitive_call() {
    let env = SecEnv::open(pam(), |_| {});
    let s = session(env.conn());
    let c = env.chassis();
    let z = env.cooling();

    // Re-authentication is on by default: root (Administrator) is asked.
    expect_error(
        c.set_restore_policy(RestorePolicy::AlwaysOn, no_options()),
        "AuthenticationRequired",
    );
    s.authenticate(ROOT_PW, no_options()).unwrap();
    // Calls that are not sensitive do not use the grant up.
    c.set_identify(true, 0, no_options()).unwrap();
    z.set_auto(no_options()).unwrap();
    c.set_restore_policy(RestorePolicy::AlwaysOn, no_options())
        .unwrap();
    assert_eq!(c.restore_policy().unwrap(), RestorePolicy::AlwaysOn);
    // One call only: the next one is refused and changes nothing.
    expect_error(
        c.set_restore_policy(RestorePolicy::Restore, no_options()),
        "AuthenticationRequired",
    );
    assert_eq!(c.restore_policy().unwrap(), RestorePolicy::AlwaysOn);

    // A grant is for any sensitive method, still one call.
    s.authenticate(ROOT_PW, no_options()).unwrap();
    z.set_manual(60, &[], 0, no_options()).unwrap();
    assert_eq!(z.mode().unwrap(), CoolingMode::Manual);
    assert_eq!(z.manual_level().unwrap(), 60);
    expect_error(
        z.set_manual(70, &[], 0, no_options()),
        "AuthenticationRequired",
    );
    assert_eq!(z.manual_level().unwrap(), 60);

    // Authenticating twice does not give two calls.
    s.authenticate(ROOT_PW, no_options()).unwrap();
    s.authenticate(ROOT_PW, no_options()).unwrap();
    c.set_restore_policy(RestorePolicy::Restore, no_options())
        .unwrap();
    expect_error(
        c.set_restore_policy(RestorePolicy::AlwaysOff, no_options()),
        "AuthenticationRequired",
    );
    assert_eq!(c.restore_policy().unwrap(), RestorePolicy::Restore);

    let log = env.daemon.log();
    assert_eq!(
        log.matches("authentication succeeded: user=root uid=0")
            .count(),
        4,
        "every attempt is logged with user, uid and result:\n{log}"
    );
    assert_no_password_logged(&env);
    env.assert_serving();
}

#[test]
fn wrong_password_refuses_and_grants_nothing() {
    let env = SecEnv::open(pam(), |_| {});
    let s = session(env.conn());
    let c = env.chassis();

    let m = expect_error(
        s.authenticate(GUESS[0], no_options()),
        "AuthenticationFailed",
    );
    assert!(m.contains("root") && m.contains("4 more failures"), "{m}");
    expect_error(
        c.set_restore_policy(RestorePolicy::AlwaysOn, no_options()),
        "AuthenticationRequired",
    );
    // Another user's password is not root's.
    let m = expect_error(
        s.authenticate(NOBODY_PW, no_options()),
        "AuthenticationFailed",
    );
    assert!(m.contains("3 more failures"), "{m}");
    // An empty password is refused too.
    let m = expect_error(s.authenticate("", no_options()), "AuthenticationFailed");
    assert!(m.contains("2 more failures"), "{m}");
    expect_error(
        c.set_restore_policy(RestorePolicy::AlwaysOn, no_options()),
        "AuthenticationRequired",
    );
    assert_eq!(c.restore_policy().unwrap(), RestorePolicy::AlwaysOff);
    // Nothing leaks into the error texts.
    assert!(!m.contains(NOBODY_PW) && !m.contains(GUESS[0]));

    // The right one still works, and clears the failures.
    s.authenticate(ROOT_PW, no_options()).unwrap();
    c.set_restore_policy(RestorePolicy::AlwaysOn, no_options())
        .unwrap();
    let m = expect_error(
        s.authenticate(GUESS[1], no_options()),
        "AuthenticationFailed",
    );
    assert!(m.contains("4 more failures"), "{m}");

    let log = env.daemon.log();
    assert_eq!(
        log.matches("authentication failed: user=root uid=0")
            .count(),
        4,
        "{log}"
    );
    assert_no_password_logged(&env);
}

#[test]
fn users_without_a_matrix_entry_are_refused() {
    let env = SecEnv::open(pam(), |_| {});
    // The fixture works for other uids: nobody has an entry.
    assert_eq!(env.authenticate_as(&Who::reader(), NOBODY_PW), Ok(()));
    // A caller cannot authenticate as someone else: nobody with root's
    // password is checked against nobody's entry.
    let (name, text) = env.authenticate_as(&Who::reader(), ROOT_PW).unwrap_err();
    assert_eq!(name, "org.bmcd.Error.AuthenticationFailed", "{text}");
    assert!(text.contains("nobody"), "{text}");

    let cases = [
        // A passwd entry, no matrix entry.
        (Who::uid(3, "sys"), "anything", "user=sys uid=3"),
        // An entry for another PAM service only (refused by `account`).
        (Who::uid(2, "bin"), BIN_PW, "user=bin uid=2"),
        // (A uid without a passwd entry cannot even connect to
        // dbus-daemon, so that branch of bmcd is not reachable here.)
    ];
    for (who, pw, logged) in cases {
        let (name, text) = env.authenticate_as(&who, pw).expect_err(who.label);
        assert_eq!(
            name, "org.bmcd.Error.AuthenticationFailed",
            "{}: {text}",
            who.label
        );
        let log = env.daemon.log();
        assert!(
            log.contains(&format!("authentication failed: {logged}")),
            "{}: not logged:\n{log}",
            who.label
        );
    }
    assert_no_password_logged(&env);
    env.assert_serving();
}

#[test]
fn lockout_after_n_failures_then_release() {
    let env = SecEnv::open(pam(), |cfg| {
        cfg["auth"]["max_failures"] = json!(3);
        cfg["auth"]["failure_window_s"] = json!(60);
        cfg["auth"]["lockout_s"] = json!(1);
    });
    let s = session(env.conn());
    let c = env.chassis();

    let m = expect_error(
        s.authenticate(GUESS[0], no_options()),
        "AuthenticationFailed",
    );
    assert!(m.contains("2 more failures"), "{m}");
    let m = expect_error(
        s.authenticate(GUESS[1], no_options()),
        "AuthenticationFailed",
    );
    assert!(m.contains("1 more failure will"), "{m}");
    // The third failure locks uid 0 out, with its own error.
    let m = expect_error(s.authenticate(GUESS[2], no_options()), "LockedOut");
    let locked = Instant::now();
    assert!(m.contains("locked out for 1 s"), "{m}");

    // Locked: even the right password is refused, without running PAM,
    // and no grant is given.
    let m = expect_error(s.authenticate(ROOT_PW, no_options()), "LockedOut");
    assert!(m.contains("locked out for another"), "{m}");
    expect_error(
        c.set_restore_policy(RestorePolicy::AlwaysOn, no_options()),
        "AuthenticationRequired",
    );
    // Only that uid is locked out.
    assert_eq!(env.authenticate_as(&Who::reader(), NOBODY_PW), Ok(()));

    // Released after the lockout time: poll with the right password
    // (attempts while locked do not count as failures).
    let r = wait_value(
        "the lockout of uid 0 to end",
        secs(10.0),
        || s.authenticate(ROOT_PW, no_options()),
        |r| r.is_ok(),
    );
    assert!(r.is_ok());
    let after = locked.elapsed();
    // The lock started before its reply (which came after the 20 ms
    // failure delay) and lasts 1 s; a wide margin for a loaded machine.
    assert!(
        after >= Duration::from_millis(500) && after < secs(5.0),
        "released {after:?} after the LockedOut reply; lockout_s is 1"
    );
    c.set_restore_policy(RestorePolicy::AlwaysOn, no_options())
        .unwrap();
    // The failure count starts afresh.
    let m = expect_error(
        s.authenticate(GUESS[3], no_options()),
        "AuthenticationFailed",
    );
    assert!(m.contains("2 more failures"), "{m}");

    let log = env.daemon.log();
    // PAM ran for the 3 failures, the last one, and the successes only.
    assert_eq!(
        log.matches("authentication failed: user=root uid=0")
            .count(),
        4,
        "{log}"
    );
    assert!(
        log.contains("uid 0 (root) locked out for 1 s after 3 failures"),
        "{log}"
    );
    assert!(
        log.contains("authentication refused: user=root uid=0 locked out"),
        "{log}"
    );
    assert_no_password_logged(&env);
}

#[test]
fn every_failure_answers_after_the_delay() {
    let delay = Duration::from_millis(400);
    let env = SecEnv::open(pam(), |cfg| {
        cfg["auth"]["failure_delay_ms"] = json!(400);
        cfg["auth"]["max_failures"] = json!(2);
        cfg["auth"]["lockout_s"] = json!(600);
    });
    let s = session(env.conn());
    let timed = |pw: &str, want: &str| {
        let t = Instant::now();
        expect_error(s.authenticate(pw, no_options()), want);
        t.elapsed()
    };
    let wrong = timed(GUESS[0], "AuthenticationFailed");
    assert!(
        wrong >= delay,
        "a wrong password was answered after {wrong:?}"
    );
    let locking = timed(GUESS[1], "LockedOut");
    assert!(
        locking >= delay,
        "the locking failure was answered after {locking:?}"
    );
    let locked = timed(ROOT_PW, "LockedOut");
    assert!(
        locked >= delay,
        "a locked-out attempt was answered after {locked:?}"
    );
    assert_no_password_logged(&env);
}

#[test]
fn a_grant_window_lasts_grant_seconds() {
    let env = SecEnv::open(pam(), |cfg| cfg["auth"]["grant_seconds"] = json!(1));
    let s = session(env.conn());
    let c = env.chassis();
    let z = env.cooling();
    let other = env.bus.connect();

    s.authenticate(ROOT_PW, no_options()).unwrap();
    let granted = Instant::now();
    // Several sensitive calls within the window.
    c.set_restore_policy(RestorePolicy::AlwaysOn, no_options())
        .unwrap();
    z.set_manual(55, &[], 0, no_options()).unwrap();
    c.set_restore_policy(RestorePolicy::Restore, no_options())
        .unwrap();
    // Still only for that connection.
    expect_error(
        chassis(&other).set_restore_policy(RestorePolicy::AlwaysOff, no_options()),
        "AuthenticationRequired",
    );
    // Then it ends by itself.
    let mut next = [RestorePolicy::AlwaysOn, RestorePolicy::Restore]
        .into_iter()
        .cycle();
    let r = wait_value(
        "the grant window to end",
        secs(10.0),
        || c.set_restore_policy(next.next().unwrap(), no_options()),
        |r| r.is_err(),
    );
    let after = granted.elapsed();
    expect_error(r, "AuthenticationRequired");
    assert!(
        after >= Duration::from_millis(500) && after < secs(5.0),
        "the 1 s window ended {after:?} after the Authenticate reply"
    );
    let before = c.restore_policy().unwrap();
    expect_error(
        c.set_restore_policy(RestorePolicy::AlwaysOff, no_options()),
        "AuthenticationRequired",
    );
    assert_eq!(c.restore_policy().unwrap(), before);
}

#[test]
fn a_grant_is_only_for_the_connection_that_authenticated() {
    let env = SecEnv::open(pam(), |_| {});
    let a = env.conn();
    let b = env.bus.connect();
    assert_ne!(a.unique_name(), b.unique_name());

    // Same uid (root), another connection: not elevated.
    session(a).authenticate(ROOT_PW, no_options()).unwrap();
    expect_error(
        chassis(&b).set_restore_policy(RestorePolicy::AlwaysOn, no_options()),
        "AuthenticationRequired",
    );
    assert_eq!(
        chassis(a).restore_policy().unwrap(),
        RestorePolicy::AlwaysOff
    );
    // b's refused attempt did not use a's grant.
    chassis(a)
        .set_restore_policy(RestorePolicy::AlwaysOn, no_options())
        .unwrap();

    // And the other way round.
    session(&b).authenticate(ROOT_PW, no_options()).unwrap();
    expect_error(
        chassis(a).set_restore_policy(RestorePolicy::Restore, no_options()),
        "AuthenticationRequired",
    );
    chassis(&b)
        .set_restore_policy(RestorePolicy::Restore, no_options())
        .unwrap();

    // A grant dies with its connection.
    let c = env.bus.connect();
    session(&c).authenticate(ROOT_PW, no_options()).unwrap();
    let name = c.unique_name().expect("unique name").to_string();
    drop(c);
    wait_until(
        &format!("bmcd to forget the grant of {name}"),
        secs(10.0),
        || {
            env.daemon
                .log()
                .contains(&format!("{name} left the bus: its grant is gone"))
        },
    );
    assert_no_password_logged(&env);
    env.assert_serving();
}
