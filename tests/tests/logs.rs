//! `org.bmcd.Log1` on the private bus with the real bmcd (issue 9):
//! paging with stable cursors while another client appends, a cursor that
//! fell off the end, every filter and bad option, `Clear` (roles,
//! re-authentication, generation, `Log.Cleared`, `Audit.LogCleared`), the
//! audit log (allowed and refused calls, authentication attempts, no
//! password anywhere), third-party clients (busctl, gdbus) and the
//! `Appended` signal.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use bmcd_tests::bmcd_api::log_query::{self, CURSOR_NEWEST, CURSOR_OLDEST, MAX_PAGE};
use bmcd_tests::bmcd_api::zbus::zvariant::Value;
use bmcd_tests::bmcd_api::{
    SessionProxyBlocking, SimulationProxyBlocking, AUDIT_LOG_PATH, EVENT_LOG_PATH,
};
use bmcd_tests::logs::{all, log_proxy, page, Opts, Row};
use bmcd_tests::security::{gdbus_result, Pam, SecEnv, Who};
use bmcd_tests::serde_json::{self, json};
use bmcd_tests::zbus::proxy::CacheProperties;
use bmcd_tests::{expect_error, no_options, wait_until, Env};

const LONG: Duration = Duration::from_secs(30);
const ROOT_PW: &str = "Root-logs.4711";
const NOBODY_PW: &str = "Nobody-logs.0815";
const WRONG_PW: &str = "Wrong-logs.9999";

fn opts(kv: &[(&'static str, Value<'static>)]) -> Opts {
    kv.iter().cloned().collect()
}

fn sim(conn: &bmcd_tests::zbus::blocking::Connection) -> SimulationProxyBlocking<'static> {
    SimulationProxyBlocking::builder(conn)
        .cache_properties(CacheProperties::No)
        .build()
        .expect("sim proxy")
}

/// A big event log, so that nothing rotates during the test.
fn big_logs(cfg: &mut serde_json::Value) {
    cfg["logs"] = json!({
        "event": {"max_entries": 1_000_000, "max_bytes": 512u64 * 1024 * 1024},
        "audit": {"max_entries": 100_000},
    });
}

#[test]
fn paging_10k_entries_while_another_client_appends() {
    let env = Env::with(big_logs);
    let log = log_proxy(env.conn(), EVENT_LOG_PATH);
    let (first, last) = env.sim().append_events(10_000, no_options()).unwrap();
    assert_eq!(last - first + 1, 10_000, "one call, one contiguous range");
    assert!(log.last_id().unwrap() >= last);

    // Another client appends all the time.
    let stop = Arc::new(AtomicBool::new(false));
    let other = env.bus.connect();
    let appender = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let s = sim(&other);
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                s.append_events(37, no_options()).unwrap();
                n += 37;
            }
            n
        })
    };

    // Newer, pages of 100, up to `last` at least: consecutive ids.
    let mut cursor = CURSOR_OLDEST;
    let mut newer: Vec<u64> = Vec::new();
    let mut sims = BTreeSet::new();
    loop {
        let (rows, next, info) = page(&log, cursor, 100, Opts::new()).unwrap();
        assert!(rows.len() <= 100);
        assert!(!info.dropped);
        for r in &rows {
            if let Some(&p) = newer.last() {
                assert_eq!(r.id, p + 1, "newer: missed or repeated after {p}");
            }
            newer.push(r.id);
            if r.message_id == "Sim.Event" {
                sims.insert(r.id);
            }
        }
        if let Some(r) = rows.last() {
            assert_eq!(next, r.id + 1);
        }
        cursor = next;
        if newer.last().is_some_and(|&id| id >= last) {
            break;
        }
        assert!(
            !rows.is_empty() || !info.end,
            "the walk stalled at {cursor}"
        );
    }
    assert_eq!(newer[0], 1, "the log starts at id 1");
    for id in first..=last {
        assert!(sims.contains(&id), "Sim.Event {id} missing");
    }

    // Older, pages of 100, from the newest down to the first: consecutive
    // descending ids, the same entries.
    let mut cursor = CURSOR_NEWEST;
    let mut older: Vec<u64> = Vec::new();
    loop {
        let (rows, next, info) = page(
            &log,
            cursor,
            100,
            opts(&[(log_query::DIRECTION, Value::from(log_query::OLDER))]),
        )
        .unwrap();
        for r in &rows {
            if let Some(&p) = older.last() {
                assert_eq!(r.id, p - 1, "older: missed or repeated after {p}");
            }
            older.push(r.id);
        }
        if info.end {
            assert_eq!(next, 0);
            break;
        }
        assert_eq!(next, rows.last().map(|r| r.id - 1).unwrap_or(next));
        cursor = next;
    }
    stop.store(true, Ordering::Relaxed);
    let appended = appender.join().unwrap();
    assert!(appended > 0, "the other client appended nothing");
    assert_eq!(*older.last().unwrap(), 1);
    let top = older[0];
    assert!(top >= *newer.last().unwrap());
    // Older covers every id newer saw.
    let older_set: BTreeSet<u64> = older.iter().copied().collect();
    assert!(newer.iter().all(|id| older_set.contains(id)));
    // A page read again is the same, whatever was appended meanwhile.
    let a = page(&log, 5000, 100, Opts::new()).unwrap().0;
    env.sim().append_events(500, no_options()).unwrap();
    let b = page(&log, 5000, 100, Opts::new()).unwrap().0;
    assert_eq!(a, b, "a cursor is a position");
}

#[test]
fn a_cursor_that_fell_off_the_end_starts_at_first_id() {
    let env = Env::with(|cfg| {
        cfg["logs"] = json!({
            "event": {"max_entries": 100, "segment_bytes": 4096, "max_bytes": 8192},
        });
    });
    let log = log_proxy(env.conn(), EVENT_LOG_PATH);
    let (rows, _, info) = page(&log, CURSOR_OLDEST, 10, Opts::new()).unwrap();
    let old = rows[0].id;
    assert!(!info.dropped);
    assert_eq!(log.max_entries().unwrap(), 100);
    let (_, last) = env.sim().append_events(1000, no_options()).unwrap();
    let first_id = log.first_id().unwrap();
    assert!(first_id > old, "nothing rotated: FirstId {first_id}");
    assert!(log.count().unwrap() <= 100);
    assert_eq!(log.last_id().unwrap(), last);
    let (rows, next, info) = page(&log, old, 10, Opts::new()).unwrap();
    assert!(info.dropped, "{info:?}");
    assert_eq!(info.first_id, first_id);
    assert_eq!(rows[0].id, first_id, "starts at the oldest kept entry");
    assert_eq!(next, rows[9].id + 1);
    // The next page from there is not dropped.
    let (_, _, info) = page(&log, next, 10, Opts::new()).unwrap();
    assert!(!info.dropped);
    // Cursor 0 is "the oldest", never dropped.
    let (rows, _, info) = page(&log, CURSOR_OLDEST, 10, Opts::new()).unwrap();
    assert!(!info.dropped);
    assert_eq!(rows[0].id, first_id);
}

#[test]
fn every_filter_and_every_bad_option() {
    let env = Env::with(big_logs);
    let log = log_proxy(env.conn(), EVENT_LOG_PATH);
    let s = env.sim();
    let (a1, a2) = s.append_events(1500, no_options()).unwrap();
    let everything = all(&log, MAX_PAGE, &Opts::new());
    assert!(everything.len() as u64 > a2 - a1);

    // The entry format.
    let e = everything.iter().find(|r| r.id == a1).unwrap();
    assert_eq!(e.message_id, "Sim.Event");
    assert_eq!(e.source, "sim");
    assert_eq!(e.severity, "Informational");
    assert_eq!(e.data.get("n").map(String::as_str), Some("0"));
    let started = everything
        .iter()
        .find(|r| r.message_id == "Daemon.Started")
        .expect("Daemon.Started");
    assert_eq!(started.severity, "Notice");
    assert_eq!(started.source, "daemon");

    let only = |o: Opts| all(&log, 300, &o);
    let ids = |rows: &[Row]| rows.iter().map(|r| r.id).collect::<Vec<_>>();

    // since / until.
    let mid = everything
        .iter()
        .find(|r| r.id == a1 + 700)
        .unwrap()
        .time_us;
    let since = only(opts(&[(log_query::SINCE, Value::from(mid))]));
    assert!(!since.is_empty() && since.iter().all(|r| r.time_us >= mid));
    assert_eq!(
        ids(&since),
        ids(&everything
            .iter()
            .filter(|r| r.time_us >= mid)
            .cloned()
            .collect::<Vec<_>>())
    );
    let until = only(opts(&[(log_query::UNTIL, Value::from(mid))]));
    assert!(!until.is_empty() && until.iter().all(|r| r.time_us <= mid));
    assert_eq!(
        until.len() + since.len() - everything.iter().filter(|r| r.time_us == mid).count(),
        everything.len()
    );
    let none = only(opts(&[
        (log_query::SINCE, Value::from(mid + 1)),
        (log_query::UNTIL, Value::from(mid)),
    ]));
    assert!(none.is_empty());

    // min-severity.
    let notice = only(opts(&[(log_query::MIN_SEVERITY, Value::from("Notice"))]));
    assert!(notice.iter().any(|r| r.message_id == "Daemon.Started"));
    assert!(
        notice.iter().all(|r| r.message_id != "Sim.Event"),
        "Informational is below Notice"
    );
    let info = only(opts(&[(
        log_query::MIN_SEVERITY,
        Value::from("Informational"),
    )]));
    assert!(info.iter().any(|r| r.message_id == "Sim.Event"));
    let emerg = only(opts(&[(log_query::MIN_SEVERITY, Value::from("Emergency"))]));
    assert!(emerg.iter().all(|r| r.severity == "Emergency"));

    // source.
    let sim_rows = only(opts(&[(log_query::SOURCE, Value::from("sim"))]));
    assert_eq!(sim_rows.len() as u64, a2 - a1 + 1);
    assert!(sim_rows.iter().all(|r| r.source == "sim"));
    let daemon_rows = only(opts(&[(log_query::SOURCE, Value::from("daemon"))]));
    assert!(daemon_rows.iter().all(|r| r.source == "daemon") && !daemon_rows.is_empty());
    assert!(only(opts(&[(log_query::SOURCE, Value::from("si"))])).is_empty());

    // message-id, exact and prefix.
    let exact = only(opts(&[(log_query::MESSAGE_ID, Value::from("Sim.Event"))]));
    assert_eq!(ids(&exact), ids(&sim_rows));
    let prefix = only(opts(&[(log_query::MESSAGE_ID, Value::from("Sim."))]));
    assert_eq!(ids(&prefix), ids(&sim_rows));
    let daemon = only(opts(&[(log_query::MESSAGE_ID, Value::from("Daemon."))]));
    assert!(daemon.iter().all(|r| r.message_id.starts_with("Daemon.")) && !daemon.is_empty());
    assert!(
        only(opts(&[(log_query::MESSAGE_ID, Value::from("Sim"))])).is_empty(),
        "no '.': exact"
    );

    // Filters combine, also going older.
    let combo = only(opts(&[
        (log_query::SOURCE, Value::from("sim")),
        (log_query::SINCE, Value::from(mid)),
        (log_query::DIRECTION, Value::from("newer")),
    ]));
    assert!(combo.iter().all(|r| r.source == "sim" && r.time_us >= mid));
    let (rows, _, _) = page(
        &log,
        CURSOR_NEWEST,
        5,
        opts(&[
            (log_query::DIRECTION, Value::from(log_query::OLDER)),
            (log_query::MESSAGE_ID, Value::from("Daemon.Started")),
        ]),
    )
    .unwrap();
    assert_eq!(ids(&rows), vec![started.id]);

    // count: 0 refused, big cut to MAX_PAGE.
    expect_error(log.get_entries(0, 0, no_options()), "InvalidArgument");
    let (rows, _, _) = page(&log, CURSOR_OLDEST, 5000, Opts::new()).unwrap();
    assert_eq!(rows.len() as u32, MAX_PAGE);

    // Bad options: InvalidArgument naming the key.
    let bad: Vec<(&str, Opts)> = vec![
        (
            "direction",
            opts(&[(log_query::DIRECTION, Value::from("sideways"))]),
        ),
        (
            "direction",
            opts(&[(log_query::DIRECTION, Value::from(1u32))]),
        ),
        (
            "since",
            opts(&[(log_query::SINCE, Value::from("yesterday"))]),
        ),
        ("since", opts(&[(log_query::SINCE, Value::from(-1i64))])),
        ("until", opts(&[(log_query::UNTIL, Value::from(5u32))])),
        (
            "min-severity",
            opts(&[(log_query::MIN_SEVERITY, Value::from("Loud"))]),
        ),
        (
            "min-severity",
            opts(&[(log_query::MIN_SEVERITY, Value::from("notice"))]),
        ),
        (
            "min-severity",
            opts(&[(log_query::MIN_SEVERITY, Value::from(3u8))]),
        ),
        ("source", opts(&[(log_query::SOURCE, Value::from(true))])),
        ("source", opts(&[(log_query::SOURCE, Value::from(""))])),
        (
            "message-id",
            opts(&[(log_query::MESSAGE_ID, Value::from(7u64))]),
        ),
        ("bogus", opts(&[("bogus", Value::from(1u32))])),
    ];
    for (key, o) in bad {
        let msg = expect_error(log.get_entries(0, 10, o.clone()), "InvalidArgument");
        assert!(msg.contains(key), "{o:?}: {msg}");
    }
    // AppendEvents checks its count.
    expect_error(s.append_events(0, no_options()), "InvalidArgument");
    expect_error(s.append_events(100_001, no_options()), "InvalidArgument");
}

fn pam() -> Pam {
    Pam::users(&[("root", ROOT_PW), ("nobody", NOBODY_PW)])
}

fn session(conn: &bmcd_tests::zbus::blocking::Connection) -> SessionProxyBlocking<'static> {
    SessionProxyBlocking::builder(conn)
        .cache_properties(CacheProperties::No)
        .build()
        .expect("session proxy")
}

#[test]
fn clear_needs_an_administrator_with_reauthentication() {
    let env = SecEnv::open(pam(), |_| {});
    let log = log_proxy(env.conn(), EVENT_LOG_PATH);
    let audit = log_proxy(env.conn(), AUDIT_LOG_PATH);
    env.sim().append_events(50, no_options()).unwrap();
    let before_gen = log.generation().unwrap();
    let before_last = log.last_id().unwrap();
    let before_count = log.count().unwrap();
    assert!(before_count >= 50);

    // Without re-authentication.
    expect_error(log.clear(no_options()), "AuthenticationRequired");
    // An operator.
    let r = env.gdbus_call(
        &Who::operator(),
        EVENT_LOG_PATH,
        "org.bmcd.Log1.Clear",
        &["{}"],
    );
    let (name, _) = gdbus_result(&r).unwrap_err();
    assert_eq!(name, "org.bmcd.Error.PermissionDenied", "{r}");
    // The audit log never: NotAllowed, saying it rotates (no grant used).
    let msg = expect_error(audit.clear(no_options()), "NotAllowed");
    assert!(msg.contains("rotate"), "{msg}");
    assert_eq!(log.generation().unwrap(), before_gen);
    assert_eq!(
        log.count().unwrap(),
        before_count,
        "a refusal changes nothing"
    );

    session(env.conn())
        .authenticate(ROOT_PW, no_options())
        .unwrap();
    let msg = expect_error(audit.clear(no_options()), "NotAllowed");
    assert!(msg.contains("rotate"), "{msg}");
    log.clear(no_options()).unwrap();
    assert_eq!(log.generation().unwrap(), before_gen + 1);
    let rows = all(&log, 100, &Opts::new());
    let first = &rows[0];
    assert_eq!(first.message_id, "Log.Cleared", "{rows:?}");
    assert_eq!(first.id, before_last + 1, "ids go on");
    assert_eq!(first.id, log.first_id().unwrap());
    assert_eq!(first.data.get("uid").map(String::as_str), Some("0"));
    assert_eq!(first.data.get("user").map(String::as_str), Some("root"));
    assert_eq!(
        first.data.get("generation").map(String::as_str),
        Some((before_gen + 1).to_string().as_str())
    );
    let removed: u64 = first.data["removed"].parse().unwrap();
    assert!(removed >= before_count, "{removed} < {before_count}");
    // The grant was one call.
    expect_error(log.clear(no_options()), "AuthenticationRequired");
    // New entries go on from there.
    let (f, _) = env.sim().append_events(3, no_options()).unwrap();
    assert!(f > first.id);

    let records = all(&audit, 1000, &Opts::new());
    let cleared: Vec<&Row> = records
        .iter()
        .filter(|r| r.message_id == "Audit.LogCleared")
        .collect();
    assert_eq!(cleared.len(), 1, "{records:?}");
    assert_eq!(cleared[0].data.get("uid").map(String::as_str), Some("0"));
    assert_eq!(
        cleared[0].data.get("user").map(String::as_str),
        Some("root")
    );
    // The Clear calls are audited, refused and allowed.
    let clears: Vec<&str> = records
        .iter()
        .filter(|r| {
            r.message_id == "Audit.Call"
                && r.data.get("method").map(String::as_str) == Some("Clear")
        })
        .map(|r| r.data["result"].as_str())
        .collect();
    assert!(clears.contains(&"ok"), "{clears:?}");
    assert!(
        clears.contains(&"org.bmcd.Error.AuthenticationRequired"),
        "{clears:?}"
    );
    assert!(clears.contains(&"org.bmcd.Error.NotAllowed"), "{clears:?}");
    assert!(
        clears.contains(&"org.bmcd.Error.PermissionDenied"),
        "{clears:?}"
    );
}

#[test]
fn audit_records_calls_and_authentications_and_never_a_password() {
    let env = SecEnv::open(pam(), |_| {});
    let audit = log_proxy(env.conn(), AUDIT_LOG_PATH);
    let c = env.chassis();

    // Allowed: the record is there as soon as the reply is (Sync).
    c.set_identify(true, 30, no_options()).unwrap();
    let recs = all(&audit, 1000, &Opts::new());
    let ok = recs
        .iter()
        .rev()
        .find(|r| r.message_id == "Audit.Call" && r.data["method"] == "SetIdentify")
        .unwrap_or_else(|| panic!("no SetIdentify record: {recs:?}"));
    assert_eq!(ok.severity, "Notice");
    assert_eq!(ok.source, "bus");
    assert_eq!(ok.data["uid"], "0");
    assert_eq!(ok.data["user"], "root");
    assert_eq!(ok.data["role"], "Administrator");
    assert_eq!(ok.data["interface"], "org.bmcd.Chassis1");
    assert_eq!(ok.data["args"], "on=true seconds=30");
    assert_eq!(ok.data["result"], "ok");
    assert!(ok.data["sender"].starts_with(':'), "{ok:?}");
    assert!(!ok.message.is_empty() && !ok.message.contains('\n'));

    // Refused: a reader powering on.
    let r = env.gdbus_call(
        &Who::reader(),
        "/org/bmcd/chassis0",
        "org.bmcd.Chassis1.PowerOn",
        &["{}"],
    );
    assert!(gdbus_result(&r).is_err());
    let recs = all(&audit, 1000, &Opts::new());
    let refused = recs
        .iter()
        .find(|r| r.message_id == "Audit.Call" && r.data["method"] == "PowerOn")
        .unwrap_or_else(|| panic!("no PowerOn record: {recs:?}"));
    assert_eq!(refused.severity, "Warning");
    assert_eq!(refused.data["result"], "org.bmcd.Error.PermissionDenied");
    assert_eq!(refused.data["uid"], "65534");
    assert_eq!(refused.data["user"], "nobody");
    assert_eq!(refused.data["role"], "ReadOnly");

    // Authentication: failed, then ok.
    let (name, _) = env.authenticate_as(&Who::reader(), WRONG_PW).unwrap_err();
    assert_eq!(name, "org.bmcd.Error.AuthenticationFailed");
    assert_eq!(env.authenticate_as(&Who::reader(), NOBODY_PW), Ok(()));
    session(env.conn())
        .authenticate(ROOT_PW, no_options())
        .unwrap();
    let recs = all(&audit, 1000, &Opts::new());
    let auths: Vec<&Row> = recs
        .iter()
        .filter(|r| r.message_id == "Audit.Authentication")
        .collect();
    assert_eq!(auths.len(), 3, "{auths:?}");
    assert_eq!(auths[0].data["result"], "failed");
    assert_eq!(auths[0].severity, "Warning");
    assert_eq!(auths[0].data["user"], "nobody");
    assert_eq!(auths[1].data["result"], "ok");
    assert_eq!(auths[2].data["result"], "ok");
    assert_eq!(auths[2].data["uid"], "0");
    assert!(auths.iter().all(|r| r.source == "auth"));
    // The Authenticate calls themselves: no argument recorded.
    assert!(recs
        .iter()
        .filter(|r| r.message_id == "Audit.Call" && r.data["method"] == "Authenticate")
        .all(|r| r.data["args"].is_empty()));

    // Queries are not audited.
    let n = audit.count().unwrap();
    let _ = all(&audit, 1000, &Opts::new());
    let _ = c.identify_active().unwrap();
    assert_eq!(audit.count().unwrap(), n);

    // No password anywhere: entries, and the store's files.
    let text = format!("{recs:?}");
    for pw in [ROOT_PW, NOBODY_PW, WRONG_PW] {
        assert!(!text.contains(pw), "a password is in the audit log");
        assert!(
            !env.daemon.log().contains(pw),
            "a password is in the daemon log"
        );
    }
    let mut files = 0;
    let mut stack = vec![env.daemon.state_dir().join("logs")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files += 1;
                let bytes = std::fs::read(&p).unwrap();
                for pw in [ROOT_PW, NOBODY_PW, WRONG_PW] {
                    assert!(
                        !bytes.windows(pw.len()).any(|w| w == pw.as_bytes()),
                        "a password is in {}",
                        p.display()
                    );
                }
            }
        }
    }
    eprintln!("searched {files} store files for passwords");

    // The audit log is for Administrators; the event log for everyone.
    let r = env.gdbus_call(
        &Who::reader(),
        AUDIT_LOG_PATH,
        "org.bmcd.Log1.GetEntries",
        &["0", "10", "{}"],
    );
    let (name, _) = gdbus_result(&r).unwrap_err();
    assert_eq!(name, "org.bmcd.Error.PermissionDenied");
    let r = env.gdbus_call(
        &Who::operator(),
        AUDIT_LOG_PATH,
        "org.bmcd.Log1.GetEntries",
        &["0", "10", "{}"],
    );
    assert!(gdbus_result(&r).is_err());
    let r = env.gdbus_call(
        &Who::admin(),
        AUDIT_LOG_PATH,
        "org.bmcd.Log1.GetEntries",
        &["0", "10", "{}"],
    );
    assert_eq!(gdbus_result(&r), Ok(()), "{r}");
    let r = env.gdbus_call(
        &Who::reader(),
        EVENT_LOG_PATH,
        "org.bmcd.Log1.GetEntries",
        &["0", "10", "{}"],
    );
    assert_eq!(gdbus_result(&r), Ok(()), "{r}");
    assert!(r.stdout.contains("Daemon.Started"), "{r}");
}

#[test]
fn busctl_and_gdbus_read_entries() {
    let env = Env::new();
    env.sim().append_events(3, no_options()).unwrap();
    let r = env.busctl(&[
        "--json=short",
        "call",
        "org.bmcd",
        EVENT_LOG_PATH,
        "org.bmcd.Log1",
        "GetEntries",
        "tua{sv}",
        "0",
        "50",
        "1",
        "message-id",
        "s",
        "Sim.",
    ]);
    r.success();
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(v["type"], "aa{sv}ta{sv}", "{v}");
    let entries = v["data"][0].as_array().unwrap();
    assert_eq!(entries.len(), 3, "{v}");
    for e in entries {
        assert_eq!(e["MessageId"]["data"], "Sim.Event");
        assert_eq!(e["Severity"]["data"], "Informational");
        assert_eq!(e["Data"]["type"], "a{ss}");
    }
    assert_eq!(v["data"][2]["end"]["data"], true);
    let r = env.gdbus(
        "call",
        &[
            "--dest",
            "org.bmcd",
            "--object-path",
            EVENT_LOG_PATH,
            "--method",
            "org.bmcd.Log1.GetEntries",
            "18446744073709551615",
            "2",
            "{'direction': <'older'>}",
        ],
    );
    r.success();
    assert!(r.stdout.contains("'Sim.Event'"), "{}", r.stdout);
    assert!(r.stdout.contains("'Informational'"), "{}", r.stdout);
}

#[test]
fn appended_signal_seen_through_a_proxy() {
    let env = Env::new();
    let conn = env.bus.connect();
    let log = log_proxy(&conn, EVENT_LOG_PATH);
    let mut signals = log.receive_appended().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for s in &mut signals {
            if let Ok(a) = s.args() {
                if tx.send((a.first, a.last)).is_err() {
                    return;
                }
            }
        }
    });
    let start = log.last_id().unwrap();
    let mut ranges = Vec::new();
    let mut want = 0;
    for n in [1u32, 10, 2500] {
        let (_, last) = env.sim().append_events(n, no_options()).unwrap();
        want = last;
        while ranges.last().is_none_or(|&(_, l): &(u64, u64)| l < want) {
            let r = rx.recv_timeout(LONG).expect("an Appended signal");
            ranges.push(r);
        }
    }
    // Contiguous, never backwards, covering everything after `start`.
    let mut next = ranges[0].0;
    assert!(next <= start + 1, "{ranges:?} from {start}");
    for &(f, l) in &ranges {
        assert!(f <= l, "{ranges:?}");
        assert_eq!(f, next, "{ranges:?}");
        next = l + 1;
    }
    assert_eq!(next, want + 1);
    // The properties follow.
    wait_until("LastId", LONG, || log.last_id().ok() == Some(want));
}
