//! Diagnostic dumps on the real bus: `Dump1.Create` as a task, the
//! `DumpEntry1` object its `Result` names, the archive read back through
//! `Open`'s descriptor (every member, the logs, no secret, the digest),
//! refusals, one dump at a time, cancel, rotation, the size cap, delete,
//! and dumps across restarts and `kill -9`.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

use bmcd_tests::bmcd_api::{
    self as api, dump_result, DumpEntryProxyBlocking, DumpManagerProxyBlocking, TaskState,
};
use bmcd_tests::firmware::task_proxy;
use bmcd_tests::security::{gdbus_result, Pam, SecEnv, Who};
use bmcd_tests::serde_json::{self, json, Value};
use bmcd_tests::zbus::zvariant::{ObjectPath, OwnedValue};
use bmcd_tests::{expect_error, no_options, wait_until, wait_value, Env};
use sha2::{Digest, Sha256};

const LONG: Duration = Duration::from_secs(60);

fn manager(env: &Env) -> DumpManagerProxyBlocking<'static> {
    DumpManagerProxyBlocking::new(env.conn()).unwrap()
}

fn entry(env: &Env, path: &str) -> DumpEntryProxyBlocking<'static> {
    DumpEntryProxyBlocking::builder(env.conn())
        .path(path.to_owned())
        .unwrap()
        .cache_properties(bmcd_tests::zbus::proxy::CacheProperties::No)
        .build()
        .unwrap()
}

fn create(env: &Env) -> String {
    manager(env).create(no_options()).unwrap().to_string()
}

fn wait_task(env: &Env, path: &str, want: TaskState) {
    let t = task_proxy(env, path);
    let got = wait_value(
        &format!("task {path} to end"),
        LONG,
        || t.state().unwrap(),
        |s| s.is_final(),
    );
    assert_eq!(got, want, "task {path}: {:?}", t.error().unwrap());
}

/// The finished task's Result: (dump path, size, truncated).
fn result(env: &Env, path: &str) -> (String, u64, bool) {
    let r: HashMap<String, OwnedValue> = task_proxy(env, path).result().unwrap();
    let dump = ObjectPath::try_from(r[dump_result::DUMP].try_clone().unwrap())
        .unwrap()
        .to_string();
    let size = u64::try_from(r[dump_result::SIZE].try_clone().unwrap()).unwrap();
    let truncated = bool::try_from(r[dump_result::TRUNCATED].try_clone().unwrap()).unwrap();
    (dump, size, truncated)
}

/// Create a dump, wait for it; its object path.
fn make(env: &Env) -> String {
    let t = create(env);
    wait_task(env, &t, TaskState::Completed);
    result(env, &t).0
}

/// The archive's bytes, through `Open`'s descriptor.
fn open_bytes(env: &Env, path: &str) -> Vec<u8> {
    let fd = entry(env, path).open(no_options()).unwrap();
    let mut f = File::from(std::os::fd::OwnedFd::from(fd));
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).unwrap();
    bytes
}

fn sha256_hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// Every member of a `.tar.gz` (all gzip members), by path; panics if the
/// archive is not valid to its end.
fn members(bytes: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut tar_bytes = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_end(&mut tar_bytes)
        .expect("a valid gzip stream");
    assert!(
        tar_bytes.len() % 512 == 0 && tar_bytes.len() >= 1024,
        "tar length {}",
        tar_bytes.len()
    );
    assert!(
        tar_bytes[tar_bytes.len() - 1024..].iter().all(|b| *b == 0),
        "the archive ends with two zero blocks"
    );
    let mut out = BTreeMap::new();
    let mut a = tar::Archive::new(tar_bytes.as_slice());
    for e in a.entries().expect("tar entries") {
        let mut e = e.expect("a tar entry");
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.insert(name, data);
    }
    out
}

/// GNU tar and gzip read the file too: `gzip -t`, and `tar -tzf` lists
/// the same members.
fn standard_tools_agree(file: &Path, m: &BTreeMap<String, Vec<u8>>) {
    bmcd_tests::run(std::process::Command::new("gzip").arg("-t").arg(file), LONG).success();
    let r = bmcd_tests::run(
        std::process::Command::new("tar").arg("-tzf").arg(file),
        LONG,
    );
    r.success();
    let listed: Vec<&str> = r.stdout.lines().collect();
    let ours: Vec<&str> = m.keys().map(String::as_str).collect();
    let mut sorted = listed.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, ours);
}

fn text(m: &BTreeMap<String, Vec<u8>>, name: &str) -> String {
    let b = m
        .get(name)
        .unwrap_or_else(|| panic!("no {name} in {:?}", m.keys().collect::<Vec<_>>()));
    String::from_utf8(b.clone()).unwrap()
}

fn jsonl(m: &BTreeMap<String, Vec<u8>>, name: &str) -> Vec<Value> {
    text(m, name)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{name}: {l}: {e}")))
        .collect()
}

fn dump_id(path: &str) -> u64 {
    path.rsplit('/').next().unwrap().parse().unwrap()
}

/// Whether `path` is served (introspection lists its DumpEntry1).
fn served(env: &Env, path: &str) -> bool {
    entry(env, path).id().is_ok()
}

/// A big sparse JSON-named file in the state directory: it costs no disk,
/// and compressing it takes minutes, so a dump that reaches it stays in
/// `Collect` until cancelled or killed.
fn slow_part(env: &Env) {
    let f = File::create(env.daemon.state_dir().join("zz-slow.json")).unwrap();
    f.set_len(64 << 30).unwrap();
}

#[test]
fn create_open_and_read_every_part() {
    let env = Env::new();
    let m = manager(&env);
    assert_eq!(m.max_dumps().unwrap(), 3);
    assert_eq!(m.max_size().unwrap(), 8 << 20);
    // The first one through gdbus.
    let r = env.gdbus(
        "call",
        &[
            "--dest",
            api::BUS_NAME,
            "--object-path",
            api::DUMPS_PATH,
            "--method",
            "org.bmcd.Dump1.Create",
            "{}",
        ],
    );
    r.success();
    let t = r
        .stdout
        .split('\'')
        .nth(1)
        .unwrap_or_else(|| panic!("gdbus: {r}"))
        .to_owned();
    assert!(t.starts_with("/org/bmcd/tasks/"), "{t}");
    assert_eq!(task_proxy(&env, &t).kind().unwrap(), "Dump");
    wait_task(&env, &t, TaskState::Completed);
    let (path, size, truncated) = result(&env, &t);
    assert_eq!(path, api::dump_path(1));
    assert!(!truncated);
    let e = entry(&env, &path);
    assert_eq!(e.id().unwrap(), 1);
    assert_eq!(e.size().unwrap(), size);
    assert!(!e.truncated().unwrap());
    let now = bmcd_tests::now_ms();
    let time = e.time().unwrap();
    assert!(
        time <= now && now - time < 120_000,
        "time {time}, now {now}"
    );
    let name = e.file_name().unwrap();
    assert!(
        name.starts_with("bmcd-dump-") && name.ends_with(".tar.gz") && name.contains("-1-"),
        "{name}"
    );
    let stamp = &name[name.len() - 23..name.len() - 7];
    assert!(
        stamp.len() == 16 && &stamp[8..9] == "T" && stamp.ends_with('Z'),
        "{name}: {stamp}"
    );

    let bytes = open_bytes(&env, &path);
    assert_eq!(bytes.len() as u64, size);
    assert_eq!(sha256_hex(&bytes), e.digest().unwrap());
    let m = members(&bytes);
    for part in [
        "summary.txt",
        "config.json",
        "sensors.json",
        "firmware.json",
        "state/firmware.json",
        "system/uname.txt",
        "system/meminfo",
        "system/loadavg",
        "system/uptime",
        "system/version",
        "system/mounts",
        "system/cpuinfo",
        "state/tasks.json",
        "logs/event.jsonl",
        "logs/audit.jsonl",
    ] {
        assert!(
            m.contains_key(&format!("bmcd-dump-1/{part}")),
            "{part} missing: {:?}",
            m.keys().collect::<Vec<_>>()
        );
    }
    assert!(
        !m.keys()
            .any(|k| k.contains("/logs/event/") || k.contains("dumps")),
        "no log or dump directory: {:?}",
        m.keys().collect::<Vec<_>>()
    );
    // The logs: oldest first, the entry keys, Daemon.Started there.
    let events = jsonl(&m, "bmcd-dump-1/logs/event.jsonl");
    assert!(
        events.iter().any(|e| e["MessageId"] == "Daemon.Started"),
        "{events:?}"
    );
    for w in events.windows(2) {
        assert!(w[0]["Id"].as_u64() < w[1]["Id"].as_u64());
    }
    for e in &events {
        for k in [
            "Id",
            "Time",
            "Severity",
            "Source",
            "MessageId",
            "Message",
            "Data",
        ] {
            assert!(e.get(k).is_some(), "{k} in {e}");
        }
    }
    // The configuration is the daemon's, re-serialized, nothing hidden
    // that is not a secret (there is none in it).
    let cfg: Value = serde_json::from_str(&text(&m, "bmcd-dump-1/config.json")).unwrap();
    let on_disk: Value =
        serde_json::from_str(&std::fs::read_to_string(env.daemon.config_path()).unwrap()).unwrap();
    assert_eq!(cfg, on_disk);
    assert!(!text(&m, "bmcd-dump-1/config.json").contains("<redacted>"));
    // Sensors and fans.
    let s: Value = serde_json::from_str(&text(&m, "bmcd-dump-1/sensors.json")).unwrap();
    assert_eq!(s["mode"], "Auto");
    assert_eq!(s["fans"].as_array().unwrap().len(), env.fan_names().len());
    assert!(s["fans"][0]["rpm"].is_u64() && s["fans"][0]["pwm"].is_u64());
    assert!(s["temperatures"][0]["celsius"].is_f64());
    let summary = text(&m, "bmcd-dump-1/summary.txt");
    assert!(summary.contains("truncated: no"), "{summary}");
    assert!(summary.contains("logs/event.jsonl"), "{summary}");
    let uname = text(&m, "bmcd-dump-1/system/uname.txt");
    assert!(uname.contains("sysname: Linux"), "{uname}");
    // The tasks file has the dump's own task.
    let tasks: Value = serde_json::from_str(&text(&m, "bmcd-dump-1/state/tasks.json")).unwrap();
    assert!(tasks["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["kind"] == "Dump"));
    // The file in the state directory is the same.
    let file = env.daemon.state_dir().join("dumps/1.tar.gz");
    assert_eq!(std::fs::read(&file).unwrap(), bytes);
    standard_tools_agree(&file, &m);
    println!("{summary}");
}

#[test]
fn only_administrators_and_no_password_in_a_dump() {
    let env = SecEnv::open(Pam::users(&[("root", "Root-pw.4711")]), |_| {});
    let call = |who: &Who, path: &str, method: &str| {
        gdbus_result(&env.gdbus_call(who, path, method, &["{}"]))
    };
    let e = call(&Who::operator(), api::DUMPS_PATH, "org.bmcd.Dump1.Create").unwrap_err();
    assert_eq!(e.0, "org.bmcd.Error.PermissionDenied", "{e:?}");
    // A failed and a passed authentication: their passwords are in no dump.
    assert!(env.authenticate_as(&Who::root(), "Wrong-pw.0815").is_err());
    assert!(env.authenticate_as(&Who::root(), "Root-pw.4711").is_ok());
    // An administrator (not root) makes one, no re-authentication needed.
    let r = env.gdbus_call(
        &Who::admin(),
        api::DUMPS_PATH,
        "org.bmcd.Dump1.Create",
        &["{}"],
    );
    gdbus_result(&r).unwrap_or_else(|e| panic!("{e:?}"));
    let t = r.stdout.split('\'').nth(1).unwrap().to_owned();
    wait_task(&env, &t, TaskState::Completed);
    let path = result(&env, &t).0;
    for method in ["org.bmcd.DumpEntry1.Open", "org.bmcd.DumpEntry1.Delete"] {
        let e = call(&Who::operator(), &path, method).unwrap_err();
        assert_eq!(e.0, "org.bmcd.Error.PermissionDenied", "{method}: {e:?}");
    }
    let bytes = open_bytes(&env, &path);
    let m = members(&bytes);
    for (name, data) in &m {
        let s = String::from_utf8_lossy(data);
        for pw in ["Root-pw.4711", "Wrong-pw.0815"] {
            assert!(!s.contains(pw), "{pw} in {name}");
        }
    }
    // The limit named after passwords is kept: it is a number.
    let cfg: Value = serde_json::from_str(&text(&m, "bmcd-dump-1/config.json")).unwrap();
    assert!(cfg["auth"]["max_password_bytes"].is_u64(), "{cfg}");
    assert!(served(&env, &path), "the operator's Delete removed nothing");
}

#[test]
fn one_at_a_time_cancel_then_again() {
    let env = Env::new();
    slow_part(&env);
    let t = create(&env);
    let tp = task_proxy(&env, &t);
    wait_until("the dump collecting", LONG, || {
        tp.phase().unwrap() == "Collect" && tp.cancellable().unwrap()
    });
    expect_error(manager(&env).create(no_options()), "Busy");
    tp.cancel(no_options()).unwrap();
    wait_task(&env, &t, TaskState::Cancelled);
    // No dump, no temp file left.
    let dir = env.daemon.state_dir().join("dumps");
    wait_until("the temp file removed", LONG, || {
        std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .all(|e| !e.file_name().to_string_lossy().ends_with(".tmp"))
    });
    assert!(!served(&env, &api::dump_path(1)));
    // The next one works (and its id is new: 1 was taken by the cancelled one).
    std::fs::remove_file(env.daemon.state_dir().join("zz-slow.json")).unwrap();
    let p = make(&env);
    assert_eq!(p, api::dump_path(2));
}

#[test]
fn the_newest_are_kept() {
    let env = Env::with(|v| v["dumps"] = json!({"max_dumps": 2}));
    assert_eq!(manager(&env).max_dumps().unwrap(), 2);
    let p1 = make(&env);
    let p2 = make(&env);
    let d1 = entry(&env, &p1).digest().unwrap();
    let bytes1 = open_bytes(&env, &p1);
    let p3 = make(&env);
    assert_eq!(
        [p1.as_str(), p2.as_str(), p3.as_str()],
        [
            api::dump_path(1).as_str(),
            api::dump_path(2).as_str(),
            api::dump_path(3).as_str()
        ]
    );
    wait_until("dump 1 removed from the bus", LONG, || !served(&env, &p1));
    assert!(served(&env, &p2) && served(&env, &p3));
    let dir = env.daemon.state_dir().join("dumps");
    assert!(!dir.join("1.tar.gz").exists() && !dir.join("1.json").exists());
    assert!(dir.join("2.tar.gz").exists() && dir.join("3.tar.gz").exists());
    assert_eq!(sha256_hex(&bytes1), d1);
    // Dump.Created of the earlier dumps is in the newest one's event log.
    let m = members(&open_bytes(&env, &p3));
    let created: Vec<Value> = jsonl(&m, "bmcd-dump-3/logs/event.jsonl")
        .into_iter()
        .filter(|e| e["MessageId"] == "Dump.Created")
        .collect();
    assert_eq!(created.len(), 2, "{created:?}");
    assert_eq!(created[0]["Data"]["dump"], api::dump_path(1));
    assert_eq!(created[0]["Source"], "dump");
    assert!(
        created[0]["Data"]["size"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 0
    );
    assert!(created[0]["Data"]["task"].as_str().is_some());
}

/// A deterministic stream of bytes that do not compress.
fn noise(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn a_small_cap_truncates_and_stays_valid() {
    let cap = 64 * 1024;
    let env = Env::with(|v| v["dumps"] = json!({"max_size": cap}));
    // 200 KiB that do not compress, among the state files.
    std::fs::write(
        env.daemon.state_dir().join("zz-noise.json"),
        noise(200 * 1024),
    )
    .unwrap();
    let t = create(&env);
    wait_task(&env, &t, TaskState::Completed);
    let (path, size, truncated) = result(&env, &t);
    assert!(truncated);
    assert!(size <= cap, "{size}");
    let e = entry(&env, &path);
    assert!(e.truncated().unwrap());
    let bytes = open_bytes(&env, &path);
    assert_eq!(sha256_hex(&bytes), e.digest().unwrap());
    let m = members(&bytes);
    let summary = text(&m, "bmcd-dump-1/summary.txt");
    assert!(summary.contains("truncated: yes"), "{summary}");
    assert!(
        summary
            .lines()
            .any(|l| l.contains("state/zz-noise.json") && l.contains("left out")),
        "{summary}"
    );
    assert!(!m.contains_key("bmcd-dump-1/state/zz-noise.json"));
    // The parts after it are still there.
    assert!(m.contains_key("bmcd-dump-1/logs/event.jsonl"), "{summary}");
    assert!(m.contains_key("bmcd-dump-1/config.json"));
    standard_tools_agree(&env.daemon.state_dir().join("dumps/1.tar.gz"), &m);
}

#[test]
fn delete_restart_and_kill() {
    let env = Env::new();
    let p1 = make(&env);
    let p2 = make(&env);
    let e1 = entry(&env, &p1);
    let before = (
        e1.file_name().unwrap(),
        e1.size().unwrap(),
        e1.time().unwrap(),
        e1.digest().unwrap(),
        e1.truncated().unwrap(),
    );
    // A descriptor opened before Delete still reads the whole dump.
    let fd = entry(&env, &p2).open(no_options()).unwrap();
    entry(&env, &p2).delete(no_options()).unwrap();
    wait_until("dump 2 removed", LONG, || !served(&env, &p2));
    let mut kept = Vec::new();
    File::from(std::os::fd::OwnedFd::from(fd))
        .read_to_end(&mut kept)
        .unwrap();
    members(&kept);
    assert!(!env.daemon.state_dir().join("dumps/2.tar.gz").exists());

    env.daemon.restart();
    let e1 = entry(&env, &p1);
    let after = (
        e1.file_name().unwrap(),
        e1.size().unwrap(),
        e1.time().unwrap(),
        e1.digest().unwrap(),
        e1.truncated().unwrap(),
    );
    assert_eq!(before, after);
    assert!(!served(&env, &p2));
    assert_eq!(sha256_hex(&open_bytes(&env, &p1)), before.3);

    // kill -9 in the middle of a dump: the temp file goes at the next
    // start, the task comes back Interrupted, ids go on.
    slow_part(&env);
    let t = create(&env);
    let tp = task_proxy(&env, &t);
    let dir = env.daemon.state_dir().join("dumps");
    let tmp = dir.join(".3.tar.gz.tmp");
    wait_until("the dump writing", LONG, || {
        tp.phase().unwrap_or_default() == "Collect" && tmp.exists()
    });
    env.daemon.kill9();
    assert!(tmp.exists());
    std::fs::remove_file(env.daemon.state_dir().join("zz-slow.json")).unwrap();
    env.daemon.start_again();
    assert!(!tmp.exists());
    assert_eq!(
        task_proxy(&env, &t).state().unwrap(),
        TaskState::Interrupted
    );
    assert!(served(&env, &p1));
    let p4 = make(&env);
    assert_eq!(p4, api::dump_path(4));
    assert_eq!(dump_id(&p4), 4);
    assert!(Path::new(&dir.join("4.tar.gz")).exists());
}
