//! The audit hook: every mutating call, allowed or refused, leaves one
//! record (today a log line, target `audit`) with the caller, the method,
//! the arguments without secrets and the result; queries leave none.

use bmcd_tests::security::{Pam, SecEnv, Who};
use bmcd_tests::{secs, wait_until};

const PW: &str = "Audit-pw.1234";

fn audit_lines(env: &SecEnv) -> Vec<String> {
    env.daemon
        .log()
        .lines()
        .filter(|l| l.contains(" sender=") && l.contains(" result="))
        .map(str::to_owned)
        .collect()
}

fn wait_audit(env: &SecEnv, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let mut found = String::new();
    wait_until(what, secs(10.0), || {
        match audit_lines(env).into_iter().find(|l| pred(l)) {
            Some(l) => {
                found = l;
                true
            }
            None => false,
        }
    });
    found
}

#[test]
fn allowed_and_refused_calls_are_audited_queries_and_secrets_are_not() {
    let env = SecEnv::open(Pam::users(&[("nobody", PW)]), |_| {});
    // Allowed, as root.
    env.busctl_call(
        &Who::root(),
        "/org/bmcd/chassis0",
        "org.bmcd.Chassis1",
        "SetIdentify",
        &["bua{sv}", "true", "30", "0"],
    )
    .success();
    let l = wait_audit(&env, "the allowed SetIdentify", |l| {
        l.contains("org.bmcd.Chassis1.SetIdentify uid=0 ")
    });
    assert!(l.contains("role=Administrator"), "{l}");
    assert!(l.contains("args=[on=true seconds=30]"), "{l}");
    assert!(l.contains("result=ok"), "{l}");

    // Refused by role, as a reader.
    let r = env.busctl_call(
        &Who::reader(),
        "/org/bmcd/chassis0",
        "org.bmcd.Chassis1",
        "PowerOn",
        &["a{sv}", "0"],
    );
    assert_ne!(r.code, 0, "{r}");
    let l = wait_audit(&env, "the refused PowerOn", |l| {
        l.contains("org.bmcd.Chassis1.PowerOn uid=65534 ")
    });
    assert!(l.contains("role=ReadOnly"), "{l}");
    assert!(l.contains("result=org.bmcd.Error.PermissionDenied"), "{l}");

    // Refused by its arguments: audited with the error.
    let r = env.busctl_call(
        &Who::root(),
        "/org/bmcd/chassis0",
        "org.bmcd.Chassis1",
        "SetRestorePolicy",
        &["sa{sv}", "Sometimes", "0"],
    );
    assert_ne!(r.code, 0, "{r}");
    wait_audit(&env, "the bad SetRestorePolicy", |l| {
        l.contains("SetRestorePolicy uid=0 ")
            && l.contains("args=[policy=Sometimes]")
            && l.contains("result=org.bmcd.Error.InvalidArgument")
    });

    // An authentication is audited, its password never appears.
    let r = env.busctl_call(
        &Who::reader(),
        "/org/bmcd",
        "org.bmcd.Session1",
        "Authenticate",
        &["sa{sv}", PW, "0"],
    );
    r.success();
    wait_audit(&env, "the Authenticate", |l| {
        l.contains("org.bmcd.Session1.Authenticate uid=65534 ") && l.contains("result=ok")
    });
    assert!(!env.daemon.log().contains(PW));

    // A query is not audited.
    env.busctl_call(
        &Who::reader(),
        "/org/bmcd",
        "org.bmcd.Session1",
        "WhoAmI",
        &[],
    )
    .success();
    // (The next audited call proves the WhoAmI had been handled before.)
    env.busctl_call(
        &Who::root(),
        "/org/bmcd/chassis0",
        "org.bmcd.Chassis1",
        "SetIdentify",
        &["bua{sv}", "false", "0", "0"],
    )
    .success();
    wait_audit(&env, "the second SetIdentify", |l| {
        l.contains("args=[on=false seconds=0]")
    });
    assert!(
        !audit_lines(&env).iter().any(|l| l.contains("WhoAmI")),
        "{:#?}",
        audit_lines(&env)
    );
}
