//! kill -9 while the logs are busy (issue 9): one client appends events
//! (`Simulation1.AppendEvents`) in a loop, another makes audited calls
//! (`Chassis1.SetIdentify` with a distinct `seconds` each, noting which
//! got a reply); bmcd is killed at a random moment and started again on
//! the same state, at least 100 times. After each restart:
//!
//! - bmcd starts (the logs recover, whatever the kill cut);
//! - every audit record whose call was answered is in the audit log
//!   (audit records are fsynced before the reply);
//! - ids are strictly increasing in both logs;
//! - `LastId` never goes backwards (audit: not below what was seen before
//!   the kill; event: not below what was seen after the last restart).
//!
//! Only the moment is random; the seed is printed and `LOGKILL_SEED=<seed>`
//! replays the same choices.
//!
//! Needs the on-disk store: with the in-memory stand-in nothing survives a
//! restart and this test fails at the first round.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bmcd_tests::bmcd_api::{
    ChassisProxyBlocking, SimulationProxyBlocking, AUDIT_LOG_PATH, EVENT_LOG_PATH,
};
use bmcd_tests::firmware::TestRng;
use bmcd_tests::logs::{all, log_proxy, Opts};
use bmcd_tests::serde_json::json;
use bmcd_tests::zbus::proxy::CacheProperties;
use bmcd_tests::{no_options, Env};

const ROUNDS: u32 = 100;

/// The `seconds` of every audited call that was answered.
type Acked = Arc<Mutex<BTreeSet<u32>>>;

fn round(env: &Env, rng: &mut TestRng, next_seconds: &mut u32, acked: &Acked) -> u64 {
    let stop = Arc::new(AtomicBool::new(false));
    let appender = {
        let conn = env.bus.connect();
        let stop = stop.clone();
        let count = 1 + rng.below(3000) as u32;
        std::thread::spawn(move || {
            let s = SimulationProxyBlocking::builder(&conn)
                .cache_properties(CacheProperties::No)
                .build()
                .expect("sim proxy");
            while !stop.load(Ordering::Relaxed) {
                if s.append_events(count, no_options()).is_err() {
                    return;
                }
            }
        })
    };
    let caller = {
        let conn = env.bus.connect();
        let stop = stop.clone();
        let acked = acked.clone();
        let first = *next_seconds;
        std::thread::spawn(move || {
            let c = ChassisProxyBlocking::builder(&conn)
                .cache_properties(CacheProperties::No)
                .build()
                .expect("chassis proxy");
            let mut k = first;
            while !stop.load(Ordering::Relaxed) {
                let r = c.set_identify(true, k, no_options());
                if r.is_err() {
                    return k + 1;
                }
                acked.lock().unwrap().insert(k);
                k += 1;
            }
            k
        })
    };
    // The audit log's LastId just before the kill: what was fsynced.
    let audit = log_proxy(env.conn(), AUDIT_LOG_PATH);
    std::thread::sleep(Duration::from_millis(rng.below(400)));
    let audit_last = audit.last_id().unwrap_or(0);
    env.daemon.kill9();
    stop.store(true, Ordering::Relaxed);
    let _ = appender.join();
    *next_seconds = caller.join().unwrap_or(*next_seconds + 1000) + 1;
    audit_last
}

fn check_ids(what: &str, ids: &[u64]) {
    for w in ids.windows(2) {
        assert!(w[0] < w[1], "{what}: id {} then {}", w[0], w[1]);
    }
}

#[test]
fn kill_9_while_logging_keeps_every_acknowledged_audit_record() {
    let mut rng = TestRng::from_env("LOGKILL_SEED");
    eprintln!("LOGKILL_SEED={}", rng.seed());
    let env = Env::with(|cfg| {
        cfg["logs"] = json!({
            "event": {"max_entries": 20_000, "segment_bytes": 65536, "max_bytes": 1024 * 1024},
            "audit": {"max_entries": 100_000, "max_bytes": 64 * 1024 * 1024},
        });
        cfg["chassis"]["identify_max_s"] = json!(604_800);
    });
    let acked: Acked = Arc::new(Mutex::new(BTreeSet::new()));
    let mut next_seconds = 1u32;
    let mut event_last_seen = 0u64;
    for n in 0..ROUNDS {
        let audit_before = round(&env, &mut rng, &mut next_seconds, &acked);
        env.daemon.start_again();
        let event = log_proxy(env.conn(), EVENT_LOG_PATH);
        let audit = log_proxy(env.conn(), AUDIT_LOG_PATH);
        let (ev_last, au_last) = (event.last_id().unwrap(), audit.last_id().unwrap());
        assert!(
            au_last >= audit_before,
            "round {n} (seed {}): audit LastId {au_last} < {audit_before} before the kill",
            rng.seed()
        );
        assert!(
            ev_last >= event_last_seen,
            "round {n} (seed {}): event LastId {ev_last} < {event_last_seen}",
            rng.seed()
        );
        event_last_seen = ev_last;
        let records = all(&audit, 1000, &Opts::new());
        check_ids("audit", &records.iter().map(|r| r.id).collect::<Vec<_>>());
        let events = all(&event, 1000, &Opts::new());
        check_ids("event", &events.iter().map(|r| r.id).collect::<Vec<_>>());
        let stored: BTreeSet<u32> = records
            .iter()
            .filter(|r| {
                r.message_id == "Audit.Call"
                    && r.data.get("method").map(String::as_str) == Some("SetIdentify")
                    && r.data.get("result").map(String::as_str) == Some("ok")
            })
            .filter_map(|r| {
                r.data
                    .get("args")?
                    .strip_prefix("on=true seconds=")?
                    .parse()
                    .ok()
            })
            .collect();
        let acked = acked.lock().unwrap();
        let missing: Vec<&u32> = acked.difference(&stored).collect();
        assert!(
            missing.is_empty(),
            "round {n} (seed {}): acknowledged audit records lost: {missing:?}",
            rng.seed()
        );
    }
    eprintln!(
        "{ROUNDS} kills; {} acknowledged audit records all kept; event LastId {event_last_seen}",
        acked.lock().unwrap().len()
    );
}
