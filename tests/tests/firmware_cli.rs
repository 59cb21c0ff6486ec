//! `bmcctl firmware …` against the real bmcd (issue 8): an update end to
//! end (inspect, confirmation rules, the task's progress lines, the slot's
//! bytes), refusals with exit 9 that change nothing, a payload caught at
//! write time, `--no-wait` and `Busy`, activate and rollback, `--json`,
//! and re-authentication under pam_wrapper.

use bmcd_tests::firmware::{
    payload_digest, set_firmware, sha256_file_prefix, sim_slot, FwKit, ImageSpec,
};
use bmcd_tests::security::{Pam, SecEnv, Who};
use bmcd_tests::serde_json::Value;
use bmcd_tests::{Env, Run};

const MIB: u64 = 1 << 20;
const SLOT_SIZE: u64 = 8 * MIB;

fn env(kit: &FwKit, write_bytes_per_s: u64) -> Env {
    Env::with(|cfg| set_firmware(cfg, kit, SLOT_SIZE, write_bytes_per_s))
}

fn s(p: &std::path::Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// `firmware list --json`.
fn list(env: &Env) -> Value {
    let r = env.bmcctl(&["--json", "firmware", "list"]);
    r.success();
    r.json()
}

fn slot<'a>(list: &'a Value, name: &str) -> &'a Value {
    list["Slots"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["Slot"] == name))
        .unwrap_or_else(|| panic!("no slot {name} in {list}"))
}

/// The running slot, `BootNext` and the other slot are as at first start.
#[track_caller]
fn untouched(env: &Env) {
    let l = list(env);
    assert_eq!(l["BootedNow"], "bmc_a", "{l}");
    assert_eq!(l["BootNext"], "bmc_a", "{l}");
    assert_eq!(slot(&l, "bmc_a")["State"], "Active", "{l}");
    assert_eq!(slot(&l, "bmc_b")["State"], "Empty", "{l}");
    assert!(l["UpdateTask"].is_null(), "{l}");
}

#[track_caller]
fn refused(r: &Run, name: &str) {
    r.expect_code(9);
    r.stderr_has(&format!("(org.bmcd.Error.{name})"));
}

#[test]
fn update_end_to_end() {
    let kit = FwKit::new();
    let env = env(&kit, 0);
    let spec = ImageSpec::new("2.0.0", MIB + 4321).seed(7);
    let img = kit.image(&spec);

    let l = list(&env);
    assert_eq!(l["Machine"], "sim");
    untouched(&env);
    env.bmcctl(&["firmware", "list"])
        .success()
        .stdout_has("SLOT   COMPONENT  STATE")
        .stdout_has("running, next");

    // Inspect: nothing written; exit 0 for an installable image.
    let r = env.bmcctl(&["--json", "firmware", "inspect", s(&img), "--payload"]);
    r.success();
    let i = r.json();
    assert_eq!(i["installable"], true, "{i}");
    assert_eq!(i["signature"], "trusted", "{i}");
    assert_eq!(i["payload-ok"], true, "{i}");
    assert_eq!(i["version"], "2.0.0", "{i}");
    assert_eq!(i["payloads"][0]["sha256"], payload_digest(&spec).as_str());
    assert!(i.get("error").is_none(), "{i}");
    env.bmcctl(&["firmware", "inspect", s(&img)])
        .success()
        .stdout_has("Signature:          trusted")
        .stdout_has("Installable:        yes");
    untouched(&env);

    // No terminal, no --yes: refused before anything (exit 2).
    env.bmcctl(&["firmware", "update", s(&img)])
        .expect_code(2)
        .stderr_has("--yes");
    env.bmcctl(&["--json", "firmware", "update", s(&img)])
        .expect_code(2);
    untouched(&env);

    // The update: one line per phase on stderr (no terminal), a notice.
    let r = env.bmcctl(&["--yes", "firmware", "update", s(&img)]);
    r.success()
        .stderr_has("(FirmwareUpdate): Write")
        .stdout_has("Installed bmc 2.0.0")
        .stdout_has("into bmc_b")
        .stdout_has("bmcctl firmware activate bmc_b");
    let digest = payload_digest(&spec);
    assert_eq!(
        sha256_file_prefix(&sim_slot(env.daemon.state_dir(), "bmc_b"), spec.size),
        digest
    );
    let l = list(&env);
    let b = slot(&l, "bmc_b");
    assert_eq!(
        (b["State"].as_str(), b["Version"].as_str()),
        (Some("Staged"), Some("2.0.0"))
    );
    assert!(b["InstallTime"].is_string(), "{l}");
    assert_eq!(l["BootNext"], "bmc_a", "not activated: {l}");
    let show = env.bmcctl(&["--json", "firmware", "show", "bmc_b"]);
    show.success();
    let v = show.json();
    assert_eq!(v["Digest"], digest.as_str(), "{v}");
    assert_eq!(v["Size"], spec.size, "{v}");
    assert_eq!(v["Capacity"], SLOT_SIZE, "{v}");
    assert_eq!(
        (v["Running"].as_bool(), v["BootsNext"].as_bool()),
        (Some(false), Some(false))
    );
    env.bmcctl(&["firmware", "show", "bmc_b"])
        .success()
        .stdout_has(&format!("Digest (SHA-256):  {digest}"));

    // Again with --activate and --json: the task's document with Result.
    let r = env.bmcctl(&[
        "--json",
        "--yes",
        "firmware",
        "update",
        s(&img),
        "--activate",
    ]);
    r.success();
    let doc = r.json();
    assert_eq!(doc["State"], "Completed", "{doc}");
    assert_eq!(doc["Kind"], "FirmwareUpdate", "{doc}");
    assert_eq!(doc["Result"]["slot"], "bmc_b", "{doc}");
    assert_eq!(doc["Result"]["activated"], true, "{doc}");
    assert_eq!(doc["Result"]["digest"], digest.as_str(), "{doc}");
    assert_eq!(list(&env)["BootNext"], "bmc_b");
    env.bmcctl(&["firmware", "list"])
        .success()
        .stdout_has("Boots next:    bmc_b");
}

#[test]
fn refusals_exit_9_and_change_nothing() {
    let kit = FwKit::new();
    let env = env(&kit, 0);
    let good = kit.image(&ImageSpec::new("2.0.0", 64 * 1024));
    let cases = [
        (
            kit.image_untrusted(&ImageSpec::new("2.0.0", 4096)),
            "InvalidSignature",
        ),
        (kit.tamper_manifest(&good), "InvalidSignature"),
        (
            kit.image(&ImageSpec::new("2.0.0", 4096).for_machines(&["other-board"])),
            "Incompatible",
        ),
        (kit.image(&ImageSpec::new("0.9.0", 4096)), "Incompatible"),
        (
            kit.image(&ImageSpec::new("3.0.0", SLOT_SIZE + 1)),
            "NoSpace",
        ),
    ];
    for (img, name) in &cases {
        // inspect shows the verdict and exits 9 with the reason.
        let r = env.bmcctl(&["firmware", "inspect", s(img)]);
        refused(&r, name);
        r.stdout_has("Installable:        no");
        let r = env.bmcctl(&["--json", "firmware", "inspect", s(img)]);
        r.expect_code(9);
        let v = r.json();
        assert_eq!(v["installable"], false, "{v}");
        assert_eq!(v["error"]["exit_code"], 9, "{v}");
        // update refuses before asking anything (no --yes needed to see it).
        refused(&env.bmcctl(&["firmware", "update", s(img)]), name);
        refused(&env.bmcctl(&["--yes", "firmware", "update", s(img)]), name);
        untouched(&env);
    }
    // A downgrade goes with --force-version.
    let down = &cases[3].0;
    env.bmcctl(&["firmware", "update", s(down)])
        .stderr_has("--force-version");
    env.bmcctl(&["--yes", "firmware", "update", s(down), "--force-version"])
        .success()
        .stdout_has("Installed bmc 0.9.0");

    // Not an image at all, not a regular file, no such file.
    let junk = kit.dir().join("junk.bin");
    std::fs::write(&junk, b"hello").expect("write junk");
    refused(
        &env.bmcctl(&["firmware", "inspect", s(&junk)]),
        "InvalidImage",
    );
    env.bmcctl(&["firmware", "inspect", s(kit.dir())])
        .expect_code(2)
        .stderr_has("not a regular file");
    env.bmcctl(&["firmware", "update", "/nonexistent/bmc.img", "--yes"])
        .expect_code(4)
        .stderr_has("cannot open /nonexistent/bmc.img");
    env.bmcctl(&["firmware", "show", "bmc_x"]).expect_code(4);
    env.bmcctl(&["firmware", "activate", "Bad/Name", "--yes"])
        .expect_code(2);
}

#[test]
fn tampered_payload_fails_the_task_with_exit_9() {
    let kit = FwKit::new();
    let env = env(&kit, 0);
    let img = kit.tamper_payload(&kit.image(&ImageSpec::new("2.0.0", 256 * 1024)));
    // Header, manifest and signature are fine: only --payload sees it.
    env.bmcctl(&["firmware", "inspect", s(&img)]).success();
    let r = env.bmcctl(&["firmware", "inspect", s(&img), "--payload"]);
    r.expect_code(9);
    r.stdout_has("DOES NOT match");
    let r = env.bmcctl(&["--json", "--yes", "firmware", "update", s(&img)]);
    r.expect_code(9);
    let doc = r.json();
    assert_eq!(doc["State"], "Failed", "{doc}");
    assert_eq!(doc["error"]["name"], "org.bmcd.Error.InvalidImage", "{doc}");
    let l = list(&env);
    assert_eq!(slot(&l, "bmc_b")["State"], "Invalid", "{l}");
    assert_eq!(l["BootNext"], "bmc_a", "{l}");
    assert_eq!(slot(&l, "bmc_a")["State"], "Active", "{l}");
}

#[test]
fn no_wait_busy_and_cancel() {
    let kit = FwKit::new();
    // 6 MiB at 512 KiB/s: 12 s to be caught running (it is cancelled
    // long before, so the test does not wait that long).
    let env = env(&kit, MIB / 2);
    let img = kit.image(&ImageSpec::new("2.0.0", 6 * MIB));
    let r = env.bmcctl(&["-q", "--yes", "firmware", "update", s(&img), "--no-wait"]);
    r.success();
    let id = r.stdout.trim().to_owned();
    assert!(id.parse::<u64>().is_ok(), "{r}");
    // While it runs: list names the task; a second update is Busy (5).
    let l = list(&env);
    assert_eq!(
        l["UpdateTask"],
        format!("/org/bmcd/tasks/{id}").as_str(),
        "{l}"
    );
    env.bmcctl(&["--yes", "firmware", "update", s(&img)])
        .expect_code(5)
        .stderr_has(&format!("task {id}"));
    env.bmcctl(&["task", "cancel", &id]).success();
    env.bmcctl(&["task", "wait", &id]).expect_code(7);
    let l = list(&env);
    assert_eq!(slot(&l, "bmc_b")["State"], "Invalid", "{l}");
    assert!(l["UpdateTask"].is_null(), "{l}");

    // --json --no-wait: Id and Path; then wait for it.
    let env2 = Env::with(|cfg| set_firmware(cfg, &kit, SLOT_SIZE, 0));
    let r = env2.bmcctl(&[
        "--json",
        "--yes",
        "firmware",
        "update",
        s(&img),
        "--no-wait",
    ]);
    r.success();
    let v = r.json();
    assert_eq!(v["Waited"], false, "{v}");
    let path = v["Path"].as_str().unwrap_or_default().to_owned();
    assert!(path.starts_with("/org/bmcd/tasks/"), "{v}");
    env2.bmcctl(&["task", "wait", &path]).success();
    assert_eq!(slot(&list(&env2), "bmc_b")["State"], "Staged");
}

#[test]
fn activate_and_rollback() {
    let kit = FwKit::new();
    let env = env(&kit, 0);
    // Nothing good in bmc_b yet: both are refused (NotAllowed, exit 1).
    env.bmcctl(&["--yes", "firmware", "activate", "bmc_b"])
        .expect_code(1)
        .stderr_has("org.bmcd.Error.NotAllowed");
    env.bmcctl(&["--yes", "firmware", "rollback"])
        .expect_code(1)
        .stderr_has("org.bmcd.Error.NotAllowed");
    // Confirmation rules as elsewhere.
    env.bmcctl(&["firmware", "rollback"]).expect_code(2);
    env.bmcctl(&["--json", "firmware", "activate", "bmc_a"])
        .expect_code(2);
    untouched(&env);

    let img = kit.image(&ImageSpec::new("2.0.0", 64 * 1024));
    env.bmcctl(&["--yes", "firmware", "update", s(&img)])
        .success();
    assert_eq!(list(&env)["BootNext"], "bmc_a");

    let r = env.bmcctl(&["--json", "--yes", "firmware", "activate", "bmc_b"]);
    r.success();
    let v = r.json();
    assert_eq!(
        (
            v["Action"].as_str(),
            v["BootNext"].as_str(),
            v["BootedNow"].as_str()
        ),
        (Some("activate"), Some("bmc_b"), Some("bmc_a")),
        "{v}"
    );
    // Rollback with an activation pending: back to the running slot.
    env.bmcctl(&["--yes", "firmware", "rollback"])
        .success()
        .stdout_has("bmc_a (running) boots next");
    assert_eq!(list(&env)["BootNext"], "bmc_a");
    // Rollback with none pending: the other good slot.
    let r = env.bmcctl(&["--json", "--yes", "firmware", "rollback"]);
    r.success();
    assert_eq!(r.json()["BootNext"], "bmc_b");
    env.bmcctl(&["--yes", "firmware", "activate", "bmc_a"])
        .success()
        .stdout_has("bmc_a (running) boots next");
    env.bmcctl(&["--yes", "firmware", "activate", "bmc_z"])
        .expect_code(4);
    assert_eq!(list(&env)["BootNext"], "bmc_a");
}

#[test]
fn update_activate_rollback_need_re_authentication() {
    const PW: &str = "Fw-root.4711";
    let kit = FwKit::new();
    let env = SecEnv::open(Pam::users(&[("root", PW)]), |cfg| {
        set_firmware(cfg, &kit, SLOT_SIZE, 0)
    });
    let root = Who::root();
    let img = kit.image(&ImageSpec::new("2.0.0", 64 * 1024));
    // Without a password: exit 3, nothing written.
    let r = env.bmcctl_as(
        &root,
        &["--yes", "--no-ask-password", "firmware", "update", s(&img)],
        None,
    );
    r.expect_code(3);
    r.stderr_has("--password-stdin");
    untouched(&env);
    // Inspect is a query: no password.
    env.bmcctl_as(&root, &["firmware", "inspect", s(&img)], None)
        .success();
    // With the password on stdin: the update, then activate and rollback.
    let pw = format!("{PW}\n");
    env.bmcctl_as(
        &root,
        &["--yes", "--password-stdin", "firmware", "update", s(&img)],
        Some(&pw),
    )
    .success()
    .stdout_has("Installed bmc 2.0.0");
    env.bmcctl_as(
        &root,
        &[
            "--yes",
            "--no-ask-password",
            "firmware",
            "activate",
            "bmc_b",
        ],
        None,
    )
    .expect_code(3);
    assert_eq!(list(&env)["BootNext"], "bmc_a");
    env.bmcctl_as(
        &root,
        &["--yes", "--password-stdin", "firmware", "activate", "bmc_b"],
        Some(&pw),
    )
    .success();
    assert_eq!(list(&env)["BootNext"], "bmc_b");
    env.bmcctl_as(
        &root,
        &["--yes", "--password-stdin", "firmware", "rollback"],
        Some(&pw),
    )
    .success();
    assert_eq!(list(&env)["BootNext"], "bmc_a");
}
