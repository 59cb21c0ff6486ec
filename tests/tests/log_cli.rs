//! `bmcctl log …` and `bmcctl diag dump` against the real bmcd (issue 9):
//! listing (console, `--json`, filters, `--reverse`, `--limit`,
//! `--cursor`), `show`, `clear` with confirmation and re-authentication
//! under pam_wrapper, the audit log refusing `Clear`, `follow` printing an
//! appended entry until SIGINT, a dump downloaded as a valid `.tar.gz`,
//! and the pager on a pseudo-terminal fed one screenful at a time (a bus
//! monitor counts the `GetEntries` calls).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bmcd_tests::security::{Pam, Pty, SecEnv, Who};
use bmcd_tests::serde_json::Value;
use bmcd_tests::{bmcctl_bin, no_options, run, wait_until, Env, Monitor, TempDir};

const T: Duration = Duration::from_secs(30);

/// `log list --json ARGS`: the document.
fn list_json(env: &Env, args: &[&str]) -> Value {
    let mut a = vec!["--json", "log", "list"];
    a.extend_from_slice(args);
    let r = env.bmcctl(&a);
    r.success();
    r.json()
}

fn entries(doc: &Value) -> Vec<Value> {
    doc["entries"]
        .as_array()
        .unwrap_or_else(|| panic!("no entries in {doc}"))
        .clone()
}

fn ids(doc: &Value) -> Vec<u64> {
    entries(doc)
        .iter()
        .map(|e| e["Id"].as_u64().unwrap_or_else(|| panic!("no Id in {e}")))
        .collect()
}

/// Append `n` `Sim.Event` entries; their first and last Id.
fn append(env: &Env, n: u32) -> (u64, u64) {
    env.sim()
        .append_events(n, no_options())
        .expect("AppendEvents")
}

#[test]
fn list_filters_json_and_show() {
    let env = Env::new();
    let (first, last) = append(&env, 30);
    assert_eq!(last - first, 29);

    // Newest first; one valid document with the cursor to go on from.
    let doc = list_json(&env, &[]);
    let all = ids(&doc);
    assert_eq!(all.first(), Some(&last), "{doc}");
    assert!(all.windows(2).all(|w| w[0] > w[1]), "{all:?}");
    assert!(all.len() >= 31, "Daemon.Started and 30 events: {all:?}");
    assert!(doc["next_cursor"].is_u64(), "{doc}");
    assert_eq!(doc["end"], true, "{doc}");
    let e = &entries(&doc)[0];
    assert_eq!(e["MessageId"], "Sim.Event", "{e}");
    for key in ["Time", "Severity", "Source", "Message", "Data"] {
        assert!(e.get(key).is_some(), "{key} missing in {e}");
    }

    // --reverse: oldest first; --limit.
    let doc = list_json(&env, &["--reverse", "--limit", "5"]);
    let r = ids(&doc);
    assert_eq!(r.len(), 5, "{doc}");
    assert!(r.windows(2).all(|w| w[0] < w[1]), "{r:?}");
    assert_eq!(r[0], *all.last().unwrap_or(&0));
    // --cursor goes on from next_cursor.
    let next = doc["next_cursor"].as_u64().unwrap_or(0);
    let doc = list_json(
        &env,
        &["--reverse", "--limit", "2", "--cursor", &next.to_string()],
    );
    assert_eq!(ids(&doc), [r[4] + 1, r[4] + 2], "{doc}");
    let doc = list_json(&env, &["--limit", "2", "--cursor", &(last - 3).to_string()]);
    assert_eq!(ids(&doc), [last - 3, last - 4], "{doc}");

    // Filters.
    let doc = list_json(&env, &["--message-id", "Daemon."]);
    assert!(!entries(&doc).is_empty(), "{doc}");
    assert!(
        entries(&doc).iter().all(|e| e["MessageId"]
            .as_str()
            .is_some_and(|m| m.starts_with("Daemon."))),
        "{doc}"
    );
    let doc = list_json(&env, &["--message-id", "Sim.Event", "--limit", "1000"]);
    assert_eq!(ids(&doc).len(), 30, "{doc}");
    let doc = list_json(&env, &["--source", "daemon"]);
    assert!(
        entries(&doc).iter().all(|e| e["Source"] == "daemon"),
        "{doc}"
    );
    let doc = list_json(&env, &["--severity", "NOTICE"]);
    let severe = [
        "Emergency",
        "Alert",
        "Critical",
        "Error",
        "Warning",
        "Notice",
    ];
    assert!(
        entries(&doc)
            .iter()
            .all(|e| severe.iter().any(|s| e["Severity"] == *s)),
        "{doc}"
    );
    assert_eq!(
        ids(&list_json(&env, &["--since", "2999-01-01T00:00:00Z"])).len(),
        0
    );
    assert_eq!(ids(&list_json(&env, &["--until", "1971-01-01"])).len(), 0);
    assert_eq!(ids(&list_json(&env, &["--since", "-1h"])), all);
    env.bmcctl(&["log", "list", "--since", "yesterday"])
        .expect_code(2)
        .stderr_has("not a time");
    env.bmcctl(&["log", "list", "--severity", "loud"])
        .expect_code(2);

    // Console: one line per entry, without a terminal no pager.
    let r = env.bmcctl(&["log", "list", "--limit", "3"]);
    r.success();
    assert_eq!(r.stdout.lines().count(), 3, "{r}");
    assert!(r.stdout.lines().all(|l| l.contains("Sim.Event")), "{r}");
    assert!(r.stdout.starts_with(&format!("{last:>6} ")), "{r}");

    // show: full detail; an unknown Id is exit 4.
    let r = env.bmcctl(&["log", "show", &last.to_string()]);
    r.success().stdout_has("Sim.Event").stdout_has("MessageId:");
    let r = env.bmcctl(&["--json", "log", "show", &first.to_string()]);
    r.success();
    assert_eq!(r.json()["Id"], first);
    env.bmcctl(&["log", "show", "999999"])
        .expect_code(4)
        .stderr_has("no entry 999999");
}

#[test]
fn clear_needs_confirmation_and_re_authentication_and_audit_refuses() {
    const PW: &str = "Log-root.4711";
    let env = SecEnv::open(Pam::users(&[("root", PW)]), |_| {});
    let root = Who::root();
    append(&env, 5);
    // No terminal and no --yes: refused before anything is asked.
    env.bmcctl_as(&root, &["log", "clear"], None)
        .expect_code(2)
        .stderr_has("--yes");
    // No password may be asked: exit 3, nothing removed.
    env.bmcctl_as(&root, &["--yes", "--no-ask-password", "log", "clear"], None)
        .expect_code(3);
    assert!(ids(&list_json(&env, &[])).len() >= 6);
    let pw = format!("{PW}\n");
    env.bmcctl_as(
        &root,
        &["--yes", "--password-stdin", "log", "clear"],
        Some(&pw),
    )
    .success()
    .stdout_has("cleared");
    let doc = list_json(&env, &[]);
    let left = entries(&doc);
    assert!(left.len() <= 2, "{doc}");
    assert!(
        left.iter().any(|e| e["MessageId"] == "Log.Cleared"),
        "{doc}"
    );
    // The audit log only rotates.
    let r = env.bmcctl_as(
        &root,
        &["--yes", "--password-stdin", "log", "clear", "audit"],
        Some(&pw),
    );
    r.expect_code(1).stderr_has("NotAllowed");
    let audit = list_json(&env, &["audit"]);
    assert!(!entries(&audit).is_empty(), "{audit}");
}

#[test]
fn follow_prints_appended_entries_until_sigint() {
    let env = Env::new();
    let (_, last) = append(&env, 3);
    let mut child = Command::new(bmcctl_bin())
        .args(["--address", env.address(), "log", "follow", "--lines", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start bmcctl log follow");
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let out = child.stdout.take().expect("piped");
    let sink = lines.clone();
    let reader = std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            sink.lock().unwrap_or_else(|p| p.into_inner()).push(l);
        }
    });
    let seen = || lines.lock().unwrap_or_else(|p| p.into_inner()).clone();
    wait_until("the last 2 entries", T, || seen().len() >= 2);
    let first_two = seen();
    assert!(
        first_two[1].starts_with(&format!("{last:>6} ")),
        "{first_two:?}"
    );
    // Appended after follow subscribed (it printed already): shown.
    let (new, _) = append(&env, 1);
    wait_until("the appended entry", T, || {
        seen()
            .iter()
            .any(|l| l.starts_with(&format!("{new:>6} ")) && l.contains("Sim.Event"))
    });
    assert_eq!(seen().len(), 3, "{:?}", seen());
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let mut code = None;
    wait_until("bmcctl log follow ends", T, || {
        code = child.try_wait().ok().flatten();
        code.is_some()
    });
    let _ = reader.join();
    assert_eq!(code.and_then(|c| c.code()), Some(130), "{:?}", seen());

    // bmcd leaving the bus ends it with exit 1 and says so.
    let mut child = Command::new(bmcctl_bin())
        .args(["--address", env.address(), "log", "follow", "--lines", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start bmcctl log follow");
    let mut out = BufReader::new(child.stdout.take().expect("piped"));
    let mut first = String::new();
    out.read_line(&mut first).expect("the last entry");
    assert!(!first.is_empty());
    env.daemon.kill9();
    drop(out);
    let r = child.wait_with_output().expect("bmcctl log follow ends");
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{err}");
    assert!(err.contains("bmcd stopped while following"), "{err}");
}

#[test]
fn diag_dump_downloads_a_tar_gz() {
    let env = Env::new();
    let dir = TempDir::new("dump");
    let file = dir.join("d.tar.gz");
    let f = file.display().to_string();
    let r = env.bmcctl(&["diag", "dump", "-o", &f]);
    r.success().stdout_has("successfully");
    let size = std::fs::metadata(&file).expect("dump file").len();
    assert!(size > 0);
    let t = run(Command::new("tar").args(["tzf", &f]), T);
    t.success();
    assert!(!t.stdout.trim().is_empty(), "{t}");
    // Not overwritten without --force.
    env.bmcctl(&["diag", "dump", "-o", &f])
        .expect_code(1)
        .stderr_has("--force");
    let r = env.bmcctl(&["--json", "diag", "dump", "-o", &f, "--force"]);
    r.success();
    let doc = r.json();
    assert_eq!(doc["File"], f.as_str(), "{doc}");
    assert_eq!(doc["Size"], std::fs::metadata(&file).expect("dump").len());
    // A directory: bmcd's file name in it.
    let d = dir.path().display().to_string();
    let r = env.bmcctl(&["--json", "diag", "dump", "-o", &d]);
    r.success();
    let doc = r.json();
    let name = doc["File"].as_str().unwrap_or("").to_owned();
    assert!(name.starts_with(&d) && name.contains("bmcd-dump-"), "{doc}");
    assert!(Path::new(&name).is_file(), "{doc}");
    // --no-wait: the task only.
    let r = env.bmcctl(&["--json", "diag", "dump", "--no-wait"]);
    r.success();
    assert_eq!(r.json()["Waited"], false);
}

/// The number after `key=` in `text` (first occurrence).
fn number_after(text: &str, key: &str) -> i32 {
    let at = text
        .find(key)
        .unwrap_or_else(|| panic!("no {key} in:\n{text}"));
    text[at + key.len()..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .unwrap_or_else(|_| panic!("no number after {key} in:\n{text}"))
}

/// On a terminal with 10 rows, a pager that reads one screen and then
/// stops reading: bmcctl asks bmcd for at most two pages, and for none
/// after the pager quit.
#[test]
fn the_pager_gets_one_screen_per_page_read() {
    let env = Env::new();
    append(&env, 200);
    let m = Monitor::spawn(
        Command::new("busctl")
            .arg(format!("--address={}", env.address()))
            .args(["monitor", "--json=short", "org.bmcd"]),
    );
    m.wait_line("Monitoring bus message stream", T);
    let calls = || {
        m.lines()
            .iter()
            .filter(|l| l.contains("\"method_call\"") && l.contains("\"GetEntries\""))
            .count()
    };
    let dir = TempDir::new("pager");
    let pager = dir.join("pager.sh");
    std::fs::write(
        &pager,
        "#!/bin/sh\necho $$ > \"$D/pid.tmp\" && mv \"$D/pid.tmp\" \"$D/pid\"\n\
         head -n 10 > \"$D/got\"\necho ready > \"$D/ready\"\nexec sleep 600\n",
    )
    .expect("write pager");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&pager, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let bin = bmcctl_bin().display().to_string();
    let d = dir.path().display().to_string();
    let pager_s = pager.display().to_string();
    let tty = Pty::spawn(
        Path::new("/bin/bash"),
        &[
            "-c",
            "stty rows 10 cols 200; \"$BMCCTL\" log list; echo rc=$?; echo end-of-test",
        ],
        &[
            ("BMCCTL", &bin),
            ("BMCCTL_ADDRESS", env.address()),
            ("BMCCTL_PAGER", &pager_s),
            ("LINES", "10"),
            ("D", &d),
        ],
    );
    wait_until("the pager read one screen", T, || {
        dir.join("ready").exists()
    });
    let got = std::fs::read_to_string(dir.join("got")).expect("pager input");
    assert_eq!(got.lines().count(), 10, "{got}");
    assert!(got.lines().all(|l| l.contains("Sim.Event")), "{got}");
    // The pager read page 1 and stopped reading: bmcctl fetched page 2
    // (to have it ready), then waits.
    wait_until("two GetEntries calls", T, || calls() >= 2);
    let pid: i32 = std::fs::read_to_string(dir.join("pid"))
        .expect("pager pid")
        .trim()
        .parse()
        .expect("pid");
    // SAFETY: kill(2) on the pager (a test process).
    unsafe {
        libc::kill(pid, libc::SIGINT);
    }
    tty.wait_for("end-of-test", 1, T);
    let (_, shown) = tty.wait(T);
    assert_eq!(number_after(&shown, "rc="), 0, "{shown}");
    // One more call of our own, seen after anything bmcctl could have
    // sent: bmcctl made exactly two.
    env.bmcctl(&["log", "show", "1"]);
    wait_until("the marker call", T, || calls() >= 3);
    assert_eq!(calls(), 3, "{:?}", m.lines());
}
