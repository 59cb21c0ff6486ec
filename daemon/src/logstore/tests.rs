//! Tests of the segment log: a reference model (the in-memory stand-in),
//! crash and corruption recovery, a kill -9 loop.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::*;

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("bmcd-logstore-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// On tmpfs when there is one (fsyncs cost nothing there): for the
/// tests that only check logic, not durability.
fn fast_tmpdir(tag: &str) -> PathBuf {
    let shm = Path::new("/dev/shm");
    if !shm.is_dir() {
        return tmpdir(tag);
    }
    let d = shm.join(format!("bmcd-logstore-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// xorshift64*; the seed comes from LOGSTORE_SEED or the clock, and is
/// printed so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn seeded(test: &str) -> Rng {
        let seed = std::env::var("LOGSTORE_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
        println!("{test}: LOGSTORE_SEED={seed}");
        Rng(seed | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

const SOURCES: &[&str] = &["chassis", "cooling", "firmware", "daemon", "sim"];
const MSG_IDS: &[&str] = &[
    "Chassis.PowerOn",
    "Chassis.PowerOff",
    "Cooling.FanFailed",
    "Firmware.Updated",
    "Daemon.Started",
];

fn new_entry(r: &mut Rng, t: &mut u64) -> NewEntry {
    *t += r.below(2_000_000);
    let n = r.below(200) as usize;
    NewEntry {
        time_us: *t,
        severity: r.below(8) as u8,
        source: SOURCES[r.below(SOURCES.len() as u64) as usize].into(),
        message_id: MSG_IDS[r.below(MSG_IDS.len() as u64) as usize].into(),
        message: "x".repeat(n),
        data: (0..r.below(4))
            .map(|i| (format!("k{i}"), r.below(1000).to_string()))
            .collect(),
    }
}

fn realistic(i: u64) -> NewEntry {
    NewEntry {
        time_us: 1_700_000_000_000_000 + i * 1000,
        severity: (i % 8) as u8,
        source: "chassis".into(),
        message_id: "Chassis.PowerOn".into(),
        message: format!("entry {i:08}: {}", "m".repeat(100)),
        data: vec![
            ("slot".into(), "A".into()),
            ("n".into(), i.to_string()),
            ("rail".into(), "12V".into()),
        ],
    }
}

/// The in-memory stand-in the store replaced: the reference semantics.
struct Model {
    entries: VecDeque<Entry>,
    next_id: u64,
    generation: u64,
}

impl Model {
    fn new() -> Model {
        Model {
            entries: VecDeque::new(),
            next_id: 1,
            generation: 0,
        }
    }

    fn append(&mut self, e: NewEntry) {
        self.entries.push_back(Entry {
            id: self.next_id,
            time_us: e.time_us,
            severity: e.severity,
            source: e.source,
            message_id: e.message_id,
            message: e.message,
            data: e.data,
        });
        self.next_id += 1;
    }

    fn stats(&self) -> (u64, u64, u64, u64) {
        (
            self.entries.front().map_or(self.next_id, |e| e.id),
            self.next_id - 1,
            self.entries.len() as u64,
            self.generation,
        )
    }

    fn page(&self, cursor: u64, count: u32, q: &Query) -> (Vec<Entry>, u64, bool, bool, u32) {
        let (first_id, last_id, n, _) = self.stats();
        let count = count.min(MAX_PAGE) as usize;
        let mut entries = Vec::new();
        let mut scanned = 0u32;
        let mut dropped = false;
        let mut next: u64;
        let mut end = true;
        match q.direction {
            Direction::Newer => {
                let start = if cursor < first_id {
                    dropped = cursor != 0 && cursor < first_id;
                    first_id
                } else {
                    cursor
                };
                next = start.max(cursor);
                for e in self.entries.iter().filter(|e| e.id >= start) {
                    if entries.len() >= count || scanned >= MAX_SCAN {
                        end = false;
                        break;
                    }
                    scanned += 1;
                    next = e.id + 1;
                    if q.matches(e) {
                        entries.push(e.clone());
                    }
                }
            }
            Direction::Older => {
                let start = cursor.min(last_id);
                if cursor < first_id && n > 0 && cursor != 0 {
                    dropped = true;
                }
                next = start;
                for e in self.entries.iter().rev().filter(|e| e.id <= start) {
                    if entries.len() >= count || scanned >= MAX_SCAN {
                        end = false;
                        break;
                    }
                    scanned += 1;
                    next = e.id - 1;
                    if q.matches(e) {
                        entries.push(e.clone());
                    }
                }
                if end {
                    next = 0;
                }
            }
        }
        (entries, next, dropped, end, scanned)
    }
}

fn key(s: &Stats) -> (u64, u64, u64, u64) {
    (s.first_id, s.last_id, s.count, s.generation)
}

fn random_query(r: &mut Rng, t: u64) -> Query {
    Query {
        direction: if r.chance(50) {
            Direction::Newer
        } else {
            Direction::Older
        },
        since_us: r.chance(20).then(|| r.below(t + 1)),
        until_us: r.chance(20).then(|| r.below(t + 1)),
        max_level: r.chance(20).then(|| r.below(8) as u8),
        source: r
            .chance(15)
            .then(|| SOURCES[r.below(SOURCES.len() as u64) as usize].to_string()),
        message_id: r.chance(15).then(|| {
            if r.chance(50) {
                "Chassis.".to_string()
            } else {
                MSG_IDS[r.below(MSG_IDS.len() as u64) as usize].to_string()
            }
        }),
    }
}

const SMALL: Limits = Limits {
    max_entries: 300,
    max_bytes: 48 * 1024,
    segment_bytes: 4096,
};

#[test]
fn matches_the_reference_model() {
    let dir = fast_tmpdir("model");
    let mut r = Rng::seeded("matches_the_reference_model");
    let (mut store, rep) = LogStore::open(&dir, SMALL).unwrap();
    assert_eq!(rep, OpenReport::default());
    let mut m = Model::new();
    let mut t = 1_000_000u64;
    for step in 0..3000 {
        let op = r.below(100);
        if op < 40 {
            let d = if r.chance(30) {
                Durability::Sync
            } else {
                Durability::Deferred
            };
            let e = new_entry(&mut r, &mut t);
            let id = store.append(e.clone(), d).unwrap();
            assert_eq!(id, m.next_id);
            m.append(e);
        } else if op < 55 {
            let big = r.chance(10);
            let n = r.below(if big { 200 } else { 20 });
            let es: Vec<NewEntry> = (0..n).map(|_| new_entry(&mut r, &mut t)).collect();
            let (a, b) = store
                .append_batch(es.clone(), Durability::Deferred)
                .unwrap();
            assert_eq!((a, b), (m.next_id, m.next_id + n - 1));
            for e in es {
                m.append(e);
            }
        } else if op < 57 {
            let n = store.clear().unwrap();
            assert_eq!(n, m.entries.len() as u64);
            m.entries.clear();
            m.generation += 1;
        } else if op < 61 {
            if r.chance(50) {
                store.flush().unwrap();
                assert!(!store.needs_flush());
            }
            drop(store);
            let (s, rep) = LogStore::open(&dir, SMALL).unwrap();
            assert_eq!(rep, OpenReport::default(), "step {step}");
            store = s;
        } else if op < 64 {
            let id = r.below(m.next_id + 2);
            let want = m.entries.iter().find(|e| e.id == id).cloned();
            assert_eq!(store.get(id).unwrap(), want, "get {id}");
        } else {
            let (first, last, _, _) = m.stats();
            let cursor = match r.below(6) {
                0 => 0,
                1 => u64::MAX,
                2 => first.saturating_sub(r.below(50)),
                _ => first.saturating_sub(5) + r.below((last + 10).saturating_sub(first)),
            };
            let count = match r.below(4) {
                0 => 1 + r.below(3) as u32,
                1 => 2000,
                _ => 1 + r.below(50) as u32,
            };
            let q = random_query(&mut r, t);
            let p = store.page(cursor, count, &q).unwrap();
            let (es, next, dropped, end, scanned) = m.page(cursor, count, &q);
            let ctx = format!("step {step} cursor {cursor} count {count} {q:?}");
            assert_eq!(p.entries, es, "{ctx}");
            assert_eq!(
                (p.next_cursor, p.dropped, p.end, p.scanned),
                (next, dropped, end, scanned),
                "{ctx}"
            );
        }
        // Rotation dropped whole oldest segments: follow in the model.
        let s = store.stats();
        assert!(s.first_id >= m.stats().0, "step {step}");
        while m.entries.front().is_some_and(|e| e.id < s.first_id) {
            m.entries.pop_front();
        }
        assert_eq!(key(&s), m.stats(), "step {step}");
        assert!(s.count <= SMALL.max_entries, "step {step}");
        assert!(s.disk_bytes <= SMALL.max_bytes, "step {step}");
        assert!(
            s.count == 0 || s.count + 100 >= SMALL.max_entries.min(m.next_id - s.first_id),
            "too much dropped at step {step}: {s:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn seg_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| parse_seg_name(n).is_some())
        })
        .collect();
    v.sort();
    v
}

fn all(store: &LogStore) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut c = 0;
    loop {
        let p = store.page(c, MAX_PAGE, &Query::default()).unwrap();
        out.extend(p.entries);
        if p.end {
            break;
        }
        c = p.next_cursor;
    }
    out
}

fn assert_monotonic(es: &[Entry]) {
    for w in es.windows(2) {
        assert!(w[0].id < w[1].id, "{} then {}", w[0].id, w[1].id);
    }
}

const BIG: Limits = Limits {
    max_entries: 1_000_000,
    max_bytes: 1 << 30,
    segment_bytes: 8192,
};

#[test]
fn torn_tail_at_every_offset_loses_only_that_record() {
    let dir = tmpdir("torn");
    let (store, _) = LogStore::open(&dir, BIG).unwrap();
    for i in 0..30 {
        store.append(realistic(i), Durability::Deferred).unwrap();
    }
    let before = store.stats().disk_bytes;
    store.append(realistic(30), Durability::Sync).unwrap();
    drop(store);
    let last = seg_files(&dir).pop().unwrap();
    let full = std::fs::read(&last).unwrap();
    let rec = (full.len() as u64 - (before - meta_len(&dir))) as usize;
    let start = full.len() - rec;
    for cut in start..full.len() {
        std::fs::write(&last, &full[..cut]).unwrap();
        // The meta of the previous round knows id 31 was given out.
        let _ = std::fs::remove_file(dir.join(META));
        let (s, rep) = LogStore::open(&dir, BIG).unwrap();
        assert_eq!(rep.truncated_bytes, (cut - start) as u64, "cut {cut}");
        assert!(rep.quarantined.is_empty());
        let es = all(&s);
        assert_eq!(es.len(), 30, "cut {cut}");
        assert_eq!(es.last().unwrap().id, 30);
        assert_eq!(std::fs::metadata(&last).unwrap().len(), start as u64);
        // A new append goes on from there and survives a reopen.
        let id = s.append(realistic(99), Durability::Sync).unwrap();
        assert_eq!(id, 31);
        drop(s);
        let (s, rep) = LogStore::open(&dir, BIG).unwrap();
        assert_eq!(rep, OpenReport::default());
        assert_eq!(s.get(31).unwrap().unwrap().message, realistic(99).message);
        drop(s);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn meta_len(dir: &Path) -> u64 {
    std::fs::metadata(dir.join(META)).map_or(0, |m| m.len())
}

#[test]
fn damaged_middle_segment_is_quarantined() {
    let mut r = Rng::seeded("damaged_middle_segment_is_quarantined");
    for round in 0..20 {
        let dir = tmpdir("mid");
        let (store, _) = LogStore::open(&dir, BIG).unwrap();
        for i in 0..300 {
            store.append(realistic(i), Durability::Deferred).unwrap();
        }
        store.flush().unwrap();
        drop(store);
        let segs = seg_files(&dir);
        assert!(segs.len() >= 3);
        let victim = &segs[1 + r.below(segs.len() as u64 - 2) as usize];
        let mut b = std::fs::read(victim).unwrap();
        let flips = 1 + r.below(5);
        for _ in 0..flips {
            let i = r.below(b.len() as u64) as usize;
            b[i] ^= 1 << r.below(8);
        }
        std::fs::write(victim, &b).unwrap();
        let (s, rep) = LogStore::open(&dir, BIG).unwrap();
        assert_eq!(rep.quarantined.len(), 1, "round {round}: {rep:?}");
        assert!(rep.quarantined[0]
            .0
            .to_string_lossy()
            .ends_with(".log.corrupt"));
        assert!(rep.quarantined[0].0.exists());
        let es = all(&s);
        assert_monotonic(&es);
        assert!(es.len() < 300 && es.len() > 100, "round {round}");
        assert_eq!(es.last().unwrap().id, 300);
        for e in &es {
            assert_eq!(e.message, realistic(e.id - 1).message);
        }
        // Ids go on above everything seen.
        assert_eq!(s.append(realistic(0), Durability::Sync).unwrap(), 301);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn ids_going_backwards_quarantine_the_segment() {
    let dir = tmpdir("back");
    let (store, _) = LogStore::open(&dir, BIG).unwrap();
    for i in 0..200 {
        store.append(realistic(i), Durability::Deferred).unwrap();
    }
    drop(store);
    let segs = seg_files(&dir);
    // A copy of the first segment named after the ids of the last one.
    let bogus = dir.join(seg_name(10_000));
    std::fs::copy(&segs[0], &bogus).unwrap();
    let (s, rep) = LogStore::open(&dir, BIG).unwrap();
    assert_eq!(rep.quarantined.len(), 1, "{rep:?}");
    let es = all(&s);
    assert_eq!(es.len(), 200);
    assert_monotonic(&es);
    // Its ids were seen: nothing is given out twice.
    assert_eq!(s.stats().last_id, 200);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn interrupted_clear_does_not_resurrect() {
    let dir = tmpdir("clear");
    let (store, _) = LogStore::open(&dir, BIG).unwrap();
    for i in 0..100 {
        store.append(realistic(i), Durability::Deferred).unwrap();
    }
    drop(store);
    let saved: Vec<(PathBuf, Vec<u8>)> = seg_files(&dir)
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    let (store, _) = LogStore::open(&dir, BIG).unwrap();
    assert_eq!(store.clear().unwrap(), 100);
    drop(store);
    // The crash: meta written, segments not deleted yet.
    for (p, b) in &saved {
        std::fs::write(p, b).unwrap();
    }
    let (s, rep) = LogStore::open(&dir, BIG).unwrap();
    assert!(rep.quarantined.is_empty());
    let st = s.stats();
    assert_eq!(
        (st.count, st.first_id, st.last_id, st.generation),
        (0, 101, 100, 1)
    );
    assert!(all(&s).is_empty());
    assert!(seg_files(&dir).is_empty());
    assert_eq!(s.append(realistic(0), Durability::Sync).unwrap(), 101);
    drop(s);
    // Cleared and empty: ids still go on after a reopen.
    let (s, _) = LogStore::open(&dir, BIG).unwrap();
    s.clear().unwrap();
    drop(s);
    let (s, _) = LogStore::open(&dir, BIG).unwrap();
    assert_eq!(s.append(realistic(0), Durability::Sync).unwrap(), 102);
    assert_eq!(s.stats().generation, 2);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn deferred_needs_flush_sync_does_not() {
    let dir = tmpdir("flush");
    let (s, _) = LogStore::open(&dir, BIG).unwrap();
    assert!(!s.needs_flush());
    s.append(realistic(0), Durability::Sync).unwrap();
    assert!(!s.needs_flush());
    s.append(realistic(1), Durability::Deferred).unwrap();
    assert!(s.needs_flush());
    s.flush().unwrap();
    assert!(!s.needs_flush());
    s.append(realistic(2), Durability::Deferred).unwrap();
    s.append(realistic(3), Durability::Sync).unwrap();
    assert!(!s.needs_flush());
    assert_eq!(s.append_batch(vec![], Durability::Sync).unwrap(), (5, 4));
    let mut e = realistic(0);
    e.severity = 8;
    assert!(matches!(
        s.append(e, Durability::Sync),
        Err(StoreError::TooLarge)
    ));
    let mut e = realistic(0);
    e.message = "x".repeat(70_000);
    assert!(matches!(
        s.append(e, Durability::Sync),
        Err(StoreError::TooLarge)
    ));
    assert_eq!(s.stats().count, 4);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn limits_drop_whole_oldest_segments() {
    let dir = tmpdir("limits");
    let l = Limits {
        max_entries: 1000,
        max_bytes: 1 << 30,
        segment_bytes: 1 << 20,
    };
    let (s, _) = LogStore::open(&dir, l).unwrap();
    for i in 0..5000 {
        s.append(realistic(i), Durability::Deferred).unwrap();
        let st = s.stats();
        assert!(st.count <= 1000);
    }
    let st = s.stats();
    assert!(st.count > 1000 - 125, "{st:?}");
    assert_eq!(st.last_id, 5000);
    // A bigger batch than the whole log.
    let (a, b) = s
        .append_batch((0..2500).map(realistic).collect(), Durability::Sync)
        .unwrap();
    assert_eq!((a, b), (5001, 7500));
    let st = s.stats();
    assert!(st.count <= 1000 && st.count > 875, "{st:?}");
    let es = all(&s);
    assert_eq!(es.len() as u64, st.count);
    assert_eq!(es.last().unwrap().message, realistic(2499).message);
    // Bytes.
    let l = Limits {
        max_entries: 1_000_000,
        max_bytes: 64 * 1024,
        segment_bytes: 8 * 1024,
    };
    drop(s);
    let (s, _) = LogStore::open(&dir, l).unwrap();
    assert!(s.stats().disk_bytes <= 64 * 1024);
    for i in 0..2000 {
        s.append(realistic(i), Durability::Deferred).unwrap();
        assert!(s.stats().disk_bytes <= 64 * 1024);
    }
    assert!(s.stats().disk_bytes > 64 * 1024 - 8 * 1024 - 1024);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Random damage to the files of a log (flips, cuts, garbage, copies):
/// open never panics nor fails, what it keeps is readable in order, and
/// it is stable across a second open.
#[test]
fn random_damage_fuzz() {
    let mut r = Rng::seeded("random_damage_fuzz");
    let dir = fast_tmpdir("fuzz");
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut rounds = 0;
    while Instant::now() < deadline {
        rounds += 1;
        let _ = std::fs::remove_dir_all(&dir);
        let (s, _) = LogStore::open(&dir, SMALL).unwrap();
        let mut t = 0;
        let n = r.below(200);
        for _ in 0..n {
            s.append(new_entry(&mut r, &mut t), Durability::Deferred)
                .unwrap();
        }
        if r.chance(10) {
            s.clear().unwrap();
            s.append(new_entry(&mut r, &mut t), Durability::Deferred)
                .unwrap();
        }
        let last_before = s.stats().last_id;
        drop(s);
        let mut files = seg_files(&dir);
        files.push(dir.join(META));
        for _ in 0..1 + r.below(4) {
            let p = &files[r.below(files.len() as u64) as usize];
            let Ok(mut b) = std::fs::read(p) else {
                continue;
            };
            match r.below(5) {
                0 if !b.is_empty() => {
                    for _ in 0..1 + r.below(8) {
                        let i = r.below(b.len() as u64) as usize;
                        b[i] ^= 1 << r.below(8);
                    }
                }
                1 => b.truncate(r.below(b.len() as u64 + 1) as usize),
                2 => b.extend((0..r.below(300)).map(|_| r.next() as u8)),
                3 if !b.is_empty() => {
                    let i = r.below(b.len() as u64) as usize;
                    let j = i + r.below((b.len() - i) as u64) as usize;
                    b.drain(i..j);
                }
                _ => {
                    let i = r.below(b.len() as u64 + 1) as usize;
                    let g: Vec<u8> = (0..r.below(64)).map(|_| r.next() as u8).collect();
                    b.splice(i..i, g);
                }
            }
            std::fs::write(p, &b).unwrap();
        }
        let (s, _) = LogStore::open(&dir, SMALL).unwrap();
        let es = all(&s);
        assert_monotonic(&es);
        let st = s.stats();
        assert_eq!(es.len() as u64, st.count);
        // Meta damage may lose the floor, record damage never lowers it
        // below a kept id.
        assert!(es.last().is_none_or(|e| e.id <= st.last_id));
        let older = {
            let p = s
                .page(
                    u64::MAX,
                    MAX_PAGE,
                    &Query {
                        direction: Direction::Older,
                        ..Query::default()
                    },
                )
                .unwrap();
            p.entries
        };
        let mut rev: Vec<Entry> = es.iter().rev().take(MAX_PAGE as usize).cloned().collect();
        rev.truncate(older.len());
        assert_eq!(older, rev);
        let id = s
            .append(new_entry(&mut r, &mut t), Durability::Sync)
            .unwrap();
        assert!(id > st.last_id);
        drop(s);
        let (s, rep) = LogStore::open(&dir, SMALL).unwrap();
        assert_eq!(rep, OpenReport::default(), "second open repairs nothing");
        assert_eq!(s.stats().last_id, id);
        let _ = last_before;
    }
    println!("random_damage_fuzz: {rounds} rounds");
    let _ = std::fs::remove_dir_all(&dir);
}

const CHILD_DIR: &str = "LOGSTORE_KILL_CHILD_DIR";

/// The child of `kill_9_keeps_every_acknowledged_entry` (does nothing in
/// a normal run): appends Sync entries forever, printing each id after
/// `append` returned.
#[test]
fn kill_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let (s, _) = LogStore::open(Path::new(&dir), SMALL).unwrap();
    let pid = std::process::id();
    let mut out = std::io::stdout().lock();
    for n in 0u64.. {
        let mut e = realistic(n);
        e.message = format!("{pid}/{n}");
        let batch = n % 3 == 0;
        let id = if batch {
            let mut e2 = e.clone();
            e2.message.push_str("/b");
            s.append_batch(vec![e, e2], Durability::Sync).unwrap().0
        } else {
            s.append(e, Durability::Sync).unwrap()
        };
        writeln!(out, "ACK {id} {pid}/{n}").unwrap();
        if batch {
            writeln!(out, "ACK {} {pid}/{n}/b", id + 1).unwrap();
        }
        out.flush().unwrap();
    }
}

#[test]
fn kill_9_keeps_every_acknowledged_entry() {
    let mut r = Rng::seeded("kill_9_keeps_every_acknowledged_entry");
    let dir = tmpdir("kill");
    std::fs::create_dir_all(&dir).unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut acked: Vec<(u64, String)> = Vec::new();
    let started = Instant::now();
    let cycles = 120;
    for cycle in 0..cycles {
        let mut child = Command::new(&exe)
            .args([
                "logstore::tests::kill_child",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR, &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let want = 1 + r.below(25);
        let mut got = 0;
        let mut lines = BufReader::new(stdout).lines();
        while got < want {
            let Some(Ok(line)) = lines.next() else { break };
            if let Some(rest) = line.strip_prefix("ACK ") {
                let (id, msg) = rest.split_once(' ').unwrap();
                acked.push((id.parse().unwrap(), msg.to_owned()));
                got += 1;
            }
        }
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        // Lines already printed before the kill landed were acknowledged too.
        for line in lines.map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("ACK ") {
                let (id, msg) = rest.split_once(' ').unwrap();
                acked.push((id.parse().unwrap(), msg.to_owned()));
            }
        }
        child.wait().unwrap();
        let (s, rep) = LogStore::open(&dir, SMALL).unwrap();
        assert!(rep.quarantined.is_empty(), "cycle {cycle}: {rep:?}");
        let first = s.stats().first_id;
        for (id, msg) in acked.iter().filter(|(id, _)| *id >= first) {
            let e = s.get(*id).unwrap();
            assert_eq!(
                e.map(|e| e.message),
                Some(msg.clone()),
                "cycle {cycle}: acknowledged id {id} lost"
            );
        }
        assert_monotonic(&all(&s));
        for w in acked.windows(2) {
            assert!(w[0].0 < w[1].0, "ids reused: {w:?}");
        }
    }
    println!(
        "kill_9: {cycles} cycles, {} acknowledged entries, {:?}",
        acked.len(),
        started.elapsed()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `MAX_PAGE` and `MAX_SCAN` on a log bigger than both, against the model.
#[test]
fn page_bounds_on_a_big_log() {
    let dir = fast_tmpdir("big");
    let mut r = Rng::seeded("page_bounds_on_a_big_log");
    let l = Limits {
        max_entries: 1_000_000,
        max_bytes: 1 << 30,
        segment_bytes: 64 * 1024,
    };
    let (s, _) = LogStore::open(&dir, l).unwrap();
    let mut m = Model::new();
    let mut t = 0;
    for _ in 0..25 {
        let es: Vec<NewEntry> = (0..1000).map(|_| new_entry(&mut r, &mut t)).collect();
        s.append_batch(es.clone(), Durability::Deferred).unwrap();
        for e in es {
            m.append(e);
        }
    }
    let none = |direction| Query {
        direction,
        source: Some("nobody".into()),
        ..Query::default()
    };
    let p = s.page(0, 10, &none(Direction::Newer)).unwrap();
    assert_eq!((p.scanned, p.end, p.next_cursor), (MAX_SCAN, false, 20_001));
    assert!(p.entries.is_empty());
    let p = s.page(u64::MAX, 10, &none(Direction::Older)).unwrap();
    assert_eq!((p.scanned, p.end, p.next_cursor), (MAX_SCAN, false, 5_000));
    let p = s.page(0, 5000, &Query::default()).unwrap();
    assert_eq!(p.entries.len(), MAX_PAGE as usize);
    assert_eq!((p.end, p.next_cursor), (false, 1001));
    for _ in 0..40 {
        let cursor = r.below(26_000);
        let count = 1 + r.below(1500) as u32;
        let q = random_query(&mut r, t);
        let p = s.page(cursor, count, &q).unwrap();
        let (es, next, dropped, end, scanned) = m.page(cursor, count, &q);
        assert_eq!(p.entries, es, "cursor {cursor} count {count} {q:?}");
        assert_eq!(
            (p.next_cursor, p.dropped, p.end, p.scanned),
            (next, dropped, end, scanned)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Pages read while another thread appends: newer pages see every id
/// exactly once, in order; older pages from a fixed cursor see a
/// contiguous descending run.
#[test]
fn pages_during_appends() {
    let dir = fast_tmpdir("concurrent");
    let (s, _) = LogStore::open(&dir, BIG).unwrap();
    let s = std::sync::Arc::new(s);
    const TOTAL: u64 = 20_000;
    let w = {
        let s = s.clone();
        std::thread::spawn(move || {
            let mut r = Rng(0x1234_5678);
            let mut i = 0;
            while i < TOTAL {
                let n = (1 + r.below(50)).min(TOTAL - i);
                let es = (i..i + n).map(realistic).collect();
                s.append_batch(es, Durability::Deferred).unwrap();
                i += n;
            }
        })
    };
    let mut seen = 0u64;
    let mut cursor = 0;
    while seen < TOTAL {
        let p = s.page(cursor, 37, &Query::default()).unwrap();
        for e in &p.entries {
            assert_eq!(e.id, seen + 1);
            assert_eq!(e.message, realistic(seen).message);
            seen += 1;
        }
        assert!(!p.dropped);
        cursor = p.next_cursor;
        if seen > 0 && seen % 1000 < 37 {
            let q = Query {
                direction: Direction::Older,
                ..Query::default()
            };
            let p = s.page(seen, 200, &q).unwrap();
            let want: Vec<u64> = (1..=seen).rev().take(200).collect();
            let got: Vec<u64> = p.entries.iter().map(|e| e.id).collect();
            assert_eq!(got, want);
        }
    }
    w.join().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Pages read while another thread appends into a small log (segments
/// rotate out under the reader) and clears it now and then: ids only
/// grow, contents are right, nothing panics.
#[test]
fn pages_during_rotation_and_clear() {
    let dir = fast_tmpdir("rotating");
    let (s, _) = LogStore::open(&dir, SMALL).unwrap();
    let s = std::sync::Arc::new(s);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let w = {
        let (s, stop) = (s.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut r = Rng(0x8765_4321);
            for k in 0..4000u64 {
                let n = 1 + r.below(20);
                let es = (0..n).map(|_| realistic(0)).collect();
                s.append_batch(es, Durability::Deferred).unwrap();
                if k % 500 == 499 {
                    s.clear().unwrap();
                }
            }
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
        })
    };
    let mut r = Rng(42);
    let mut pages = 0;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        let newer = r.chance(50);
        let q = Query {
            direction: if newer {
                Direction::Newer
            } else {
                Direction::Older
            },
            ..Query::default()
        };
        let cursor = if newer { 0 } else { u64::MAX };
        let p = s.page(cursor, 1 + r.below(400) as u32, &q).unwrap();
        for w in p.entries.windows(2) {
            if newer {
                assert!(w[0].id < w[1].id);
            } else {
                assert!(w[0].id > w[1].id);
            }
        }
        for e in &p.entries {
            assert!(e.id <= p.stats.last_id);
            assert_eq!(e.message, realistic(0).message);
        }
        pages += 1;
    }
    w.join().unwrap();
    assert!(pages > 0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `clear_then_append` makes its entry the new generation's first, even
/// while another thread appends all the time.
#[test]
fn clear_then_append_is_first_of_the_new_generation() {
    let dir = fast_tmpdir("clear-first");
    let (s, _) = LogStore::open(&dir, BIG).unwrap();
    let s = std::sync::Arc::new(s);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let w = {
        let (s, stop) = (s.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                s.append(realistic(i), Durability::Deferred).unwrap();
                i += 1;
            }
        })
    };
    while s.stats().count < 50 {
        std::thread::yield_now();
    }
    for round in 0..20u64 {
        let before = s.stats();
        let (removed, id) = s
            .clear_then_append(
                |removed, generation| {
                    let mut e = realistic(removed);
                    e.message_id = format!("Test.Cleared.{generation}");
                    e
                },
                Durability::Sync,
            )
            .unwrap();
        assert!(removed >= 1 || round > 0);
        assert!(id > before.last_id, "ids go on");
        let (page, _) = (s.page(0, 1, &Query::default()).unwrap(), ());
        let first = &page.entries[0];
        assert_eq!(first.id, id);
        assert_eq!(
            first.message_id,
            format!("Test.Cleared.{}", before.generation + 1)
        );
        assert_eq!(s.stats().generation, before.generation + 1);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    w.join().unwrap();
}
