//! Log store figures: `cargo run --release -p bmcd --example logstore_bench -- DIR`.
//!
//! Fills a log with 100k realistic entries (~120-byte message, 3 data
//! pairs) and reports append rates (Sync, Deferred with a group commit
//! every 200 ms, batches of 100), the time of a page of 20 at the head,
//! middle and tail in both directions (median of 100), on-disk bytes per
//! entry and VmRSS before and after. DIR is emptied first.

use std::path::Path;
use std::time::{Duration, Instant};

use bmcd::logstore::{Direction, Durability, Limits, LogStore, NewEntry, Query, GROUP_COMMIT};

const N: u64 = 100_000;

fn entry(i: u64) -> NewEntry {
    NewEntry {
        time_us: 1_700_000_000_000_000 + i * 1000,
        severity: (i % 8) as u8,
        source: "chassis".into(),
        message_id: "Chassis.PowerStateChanged".into(),
        message: format!(
            "Host power state changed from Off to On after request {i:08} by the power button; \
             sequence completed in 250 ms"
        ),
        data: vec![
            ("from".into(), "Off".into()),
            ("to".into(), "On".into()),
            ("request".into(), i.to_string()),
        ],
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .ok_or("usage: logstore_bench DIR (emptied first)")?;
    let dir = Path::new(&dir);
    let _ = std::fs::remove_dir_all(dir);
    let limits = Limits {
        max_entries: 10 * N,
        max_bytes: 1 << 30,
        segment_bytes: 256 * 1024,
    };
    let msg_len = entry(0).message.len();
    println!("entry: {msg_len}-byte message, 3 data pairs");

    // Sync: a short run (one fdatasync each).
    let sync_dir = dir.join("sync");
    let (s, _) = LogStore::open(&sync_dir, limits)?;
    let t = Instant::now();
    let mut n = 0;
    while n < 20_000 && t.elapsed() < Duration::from_secs(3) {
        s.append(entry(n), Durability::Sync)?;
        n += 1;
    }
    let el = t.elapsed();
    println!(
        "append Sync: {n} entries in {el:.2?}: {:.0} entries/s",
        n as f64 / el.as_secs_f64()
    );
    drop(s);

    let ev_dir = dir.join("deferred");
    let rss0 = rss_kib();
    let (s, _) = LogStore::open(&ev_dir, limits)?;
    let rss_open = rss_kib();
    let t = Instant::now();
    let mut last_flush = Instant::now();
    let mut flushes = 0;
    for i in 0..N {
        s.append(entry(i), Durability::Deferred)?;
        if last_flush.elapsed() >= GROUP_COMMIT {
            s.flush()?;
            flushes += 1;
            last_flush = Instant::now();
        }
    }
    s.flush()?;
    let el = t.elapsed();
    println!(
        "append Deferred: {N} entries in {el:.2?} ({flushes} group commits): {:.0} entries/s",
        N as f64 / el.as_secs_f64()
    );
    let st = s.stats();
    println!(
        "on disk: {} bytes for {} entries: {:.1} bytes/entry",
        st.disk_bytes,
        st.count,
        st.disk_bytes as f64 / st.count as f64
    );
    let rss1 = rss_kib();
    println!(
        "VmRSS: {rss0} KiB before open, {rss_open} KiB open and empty, {rss1} KiB at {N} entries (+{} KiB)",
        rss1.saturating_sub(rss_open)
    );

    // Batches.
    let (b, _) = LogStore::open(&dir.join("batch"), limits)?;
    let t = Instant::now();
    for k in 0..200 {
        b.append_batch(
            (k * 100..k * 100 + 100).map(entry).collect(),
            Durability::Sync,
        )?;
    }
    let el = t.elapsed();
    println!(
        "append_batch of 100, Sync: {:.0} entries/s",
        20_000.0 / el.as_secs_f64()
    );
    drop(b);

    let newer = Query::default();
    let older = Query {
        direction: Direction::Older,
        ..Query::default()
    };
    let filtered = Query {
        direction: Direction::Older,
        source: Some("nothing".into()),
        ..Query::default()
    };
    for (name, cursor) in [("head", 1u64), ("middle", N / 2), ("tail", N - 19)] {
        for (dname, q, c) in [
            ("newer", &newer, cursor),
            (
                "older",
                &older,
                if cursor == N - 19 {
                    u64::MAX
                } else {
                    cursor + 19
                },
            ),
        ] {
            let mut times = Vec::new();
            for _ in 0..100 {
                let t = Instant::now();
                let p = s.page(c, 20, q)?;
                times.push(t.elapsed());
                assert_eq!(p.entries.len(), 20);
            }
            println!("page of 20 at {name} ({dname}): median {:?}", median(times));
        }
    }
    let t = Instant::now();
    let p = s.page(u64::MAX, 20, &filtered)?;
    println!(
        "filtered page matching nothing (scans {}): {:?}",
        p.scanned,
        t.elapsed()
    );
    let t = Instant::now();
    drop(s);
    let (s, rep) = LogStore::open(&ev_dir, limits)?;
    println!(
        "reopen with {} entries: {:?} ({rep:?})",
        s.stats().count,
        t.elapsed()
    );
    Ok(())
}
