use std::io::Cursor;
use std::sync::atomic::{AtomicBool, Ordering as AtOrd};

use bmcd_image::{ImageMeta, PayloadSource};

use super::*;
use crate::hw::firmware::{SlotDevice, SlotWriter};
use crate::hw::HwResult;
use crate::logs::Logs;
use crate::tasks::TasksConfig;

/// A slot in memory; the booted one refuses writes, as backends must.
struct MemSlot {
    data: Arc<Mutex<Vec<u8>>>,
    cap: u64,
    booted: bool,
    fail_write: Arc<AtomicBool>,
    hold: Arc<AtomicBool>,
}

struct MemWriter {
    data: Arc<Mutex<Vec<u8>>>,
    cap: u64,
    fail: Arc<AtomicBool>,
    /// Writes wait while it is set.
    hold: Arc<AtomicBool>,
}

impl SlotDevice for MemSlot {
    fn capacity(&self) -> HwResult<u64> {
        Ok(self.cap)
    }
    fn open_write(&self) -> HwResult<Box<dyn SlotWriter>> {
        if self.booted {
            return Err(HwError::Refused("booted slot".into()));
        }
        lock(&self.data).clear();
        Ok(Box::new(MemWriter {
            data: self.data.clone(),
            cap: self.cap,
            fail: self.fail_write.clone(),
            hold: self.hold.clone(),
        }))
    }
    fn open_read(&self) -> HwResult<Box<dyn Read + Send>> {
        Ok(Box::new(Cursor::new(lock(&self.data).clone())))
    }
}

impl SlotWriter for MemWriter {
    fn write(&mut self, buf: &[u8]) -> HwResult<()> {
        while self.hold.load(AtOrd::SeqCst) {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let mut d = lock(&self.data);
        if self.fail.load(AtOrd::SeqCst) || d.len() as u64 + buf.len() as u64 > self.cap {
            return Err(HwError::Unavailable("write failed".into()));
        }
        d.extend_from_slice(buf);
        Ok(())
    }
    fn finish(self: Box<Self>) -> HwResult<()> {
        Ok(())
    }
}

struct MemBoot(Mutex<String>);

impl BootSelector for MemBoot {
    fn boot_next(&self) -> HwResult<String> {
        Ok(lock(&self.0).clone())
    }
    fn set_boot_next(&self, slot: &str) -> HwResult<()> {
        *lock(&self.0) = slot.to_owned();
        Ok(())
    }
}

struct Rig {
    dir: PathBuf,
    fw: Arc<Firmware>,
    tasks: Arc<Tasks>,
    key: bmcd_image::SigningKey,
    b: Arc<Mutex<Vec<u8>>>,
    a: Arc<Mutex<Vec<u8>>>,
    fail: Arc<AtomicBool>,
    hold: Arc<AtomicBool>,
    logs: Arc<Logs>,
    tasks_dir: PathBuf,
}

impl Drop for Rig {
    /// A failed assertion while a write is held must be reported, not hang:
    /// the test runtime's drop waits for the blocking update thread, which
    /// a set `hold` would keep waiting forever.
    fn drop(&mut self) {
        self.hold.store(false, AtOrd::SeqCst);
    }
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("bmcd-fw-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("keys")).unwrap();
    d
}

fn rig(tag: &str) -> Rig {
    let dir = tmpdir(tag);
    let key = bmcd_image::generate_signing_key().unwrap();
    bmcd_image::write_key_pair(&key, &dir.join("keys"), "t").unwrap();
    std::fs::remove_file(dir.join("keys/t.key")).unwrap();
    open_rig(
        dir,
        key,
        Arc::new(Mutex::new(vec![7u8; 1000])),
        Arc::new(Mutex::new(Vec::new())),
    )
}

fn open_rig(
    dir: PathBuf,
    key: bmcd_image::SigningKey,
    a: Arc<Mutex<Vec<u8>>>,
    b: Arc<Mutex<Vec<u8>>>,
) -> Rig {
    open_rig_with(dir, key, a, b, None)
}

/// `tasks_dir`: the task store (None: one of this run's own).
fn open_rig_with(
    dir: PathBuf,
    key: bmcd_image::SigningKey,
    a: Arc<Mutex<Vec<u8>>>,
    b: Arc<Mutex<Vec<u8>>>,
    tasks_dir: Option<PathBuf>,
) -> Rig {
    let fail = Arc::new(AtomicBool::new(false));
    let hold = Arc::new(AtomicBool::new(false));
    let slot = |name: &str, data: &Arc<Mutex<Vec<u8>>>, booted| Slot {
        name: name.into(),
        component: "bmc".into(),
        device: Arc::new(MemSlot {
            data: data.clone(),
            cap: 1 << 20,
            booted,
            fail_write: fail.clone(),
            hold: hold.clone(),
        }),
    };
    let hw = FirmwareHw {
        slots: vec![slot("bmc_a", &a, true), slot("bmc_b", &b, false)],
        boot: Arc::new(MemBoot(Mutex::new("bmc_a".into()))),
        booted: "bmc_a".into(),
        running_version: "1.0.0".into(),
    };
    let cfg = FirmwareConfig {
        keys_dir: dir.join("keys"),
        ..FirmwareConfig::default()
    };
    // Each run its own task store (the firmware state is what is shared).
    static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let run = RUNS.fetch_add(1, AtOrd::SeqCst);
    let tasks_dir = tasks_dir.unwrap_or_else(|| dir.join(format!("tasks-{run}")));
    let (tasks, _events) = Tasks::open(&tasks_dir, TasksConfig::default()).unwrap();
    let tasks_dir = tasks_dir.to_owned();
    let logs = Logs::open(&dir.join(format!("logs-{run}")), &Default::default()).unwrap();
    let fw = Firmware::open(hw, &cfg, &dir, tasks.clone(), logs.clone()).unwrap();
    Rig {
        dir,
        fw,
        tasks,
        key,
        a,
        b,
        fail,
        hold,
        logs,
        tasks_dir,
    }
}

/// The `Data` of every event with message id `id`, oldest first.
fn events(r: &Rig, id: &str) -> Vec<BTreeMap<String, String>> {
    let q = crate::logstore::Query {
        message_id: Some(id.to_owned()),
        ..Default::default()
    };
    let page = r.logs.event.store.page(0, 1000, &q).unwrap();
    page.entries
        .into_iter()
        .map(|e| {
            assert_eq!(e.source, "firmware");
            e.data.into_iter().collect()
        })
        .collect()
}

fn kv(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn updates_and_activations_are_events() {
    let r = rig("ev-ok");
    let opts = UpdateOptions {
        activate: true,
        force_version: false,
    };
    let id =
        r.fw.start_update(image(&r, "1.1.0", &[5u8; 3000], &["sim"]), opts, 0)
            .await
            .unwrap();
    assert_eq!(wait_final(&r, id).await.state, TaskState::Completed);
    assert_eq!(
        events(&r, "Firmware.UpdateCompleted"),
        vec![kv(&[
            ("slot", "bmc_b"),
            ("version", "1.1.0"),
            ("task", &id.to_string()),
            ("activated", "true"),
        ])]
    );
    assert!(events(&r, "Firmware.UpdateFailed").is_empty());
    r.fw.rollback().await.unwrap();
    r.fw.activate("bmc_b".into()).await.unwrap();
    assert_eq!(
        events(&r, "Firmware.Activated"),
        vec![
            kv(&[("slot", "bmc_a"), ("from", "bmc_b"), ("by", "rollback")]),
            kv(&[("slot", "bmc_b"), ("from", "bmc_a"), ("by", "activate")]),
        ]
    );
    // A refused activation writes nothing.
    r.fw.activate("bmc_z".into()).await.unwrap_err();
    assert_eq!(events(&r, "Firmware.Activated").len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_cancelled_and_interrupted_updates_are_events() {
    let r = rig("ev-fail");
    r.fail.store(true, AtOrd::SeqCst);
    let img = || image(&r, "1.1.0", &[3u8; 100_000], &["sim"]);
    let id =
        r.fw.start_update(img(), UpdateOptions::default(), 0)
            .await
            .unwrap();
    wait_final(&r, id).await;
    r.fail.store(false, AtOrd::SeqCst);
    let evs = events(&r, "Firmware.UpdateFailed");
    assert_eq!(evs.len(), 1, "{evs:?}");
    assert_eq!(evs[0]["slot"], "bmc_b");
    assert_eq!(evs[0]["version"], "1.1.0");
    assert_eq!(evs[0]["task"], id.to_string());
    assert_eq!(evs[0]["state"], "Failed");
    assert!(
        evs[0]["error"].starts_with("org.bmcd.Error.FlashWrite: "),
        "{evs:?}"
    );

    // Cancelled while writing (held).
    r.hold.store(true, AtOrd::SeqCst);
    let id =
        r.fw.start_update(img(), UpdateOptions::default(), 7)
            .await
            .unwrap();
    r.tasks.cancel(id, 7, false).unwrap();
    r.hold.store(false, AtOrd::SeqCst);
    assert_eq!(wait_final(&r, id).await.state, TaskState::Cancelled);
    let evs = events(&r, "Firmware.UpdateFailed");
    assert_eq!(evs.len(), 2, "{evs:?}");
    assert_eq!(evs[1]["task"], id.to_string());
    assert_eq!(evs[1]["state"], "Cancelled");

    // Interrupted by a clean stop.
    r.hold.store(true, AtOrd::SeqCst);
    let id =
        r.fw.start_update(img(), UpdateOptions::default(), 7)
            .await
            .unwrap();
    r.tasks.shutdown();
    r.hold.store(false, AtOrd::SeqCst);
    assert_eq!(wait_final(&r, id).await.state, TaskState::Interrupted);
    wait_until("a third UpdateFailed event", || {
        events(&r, "Firmware.UpdateFailed").len() >= 3
    })
    .await;
    let evs = events(&r, "Firmware.UpdateFailed");
    assert_eq!(evs.len(), 3, "{evs:?}");
    assert_eq!(evs[2]["task"], id.to_string());
    assert_eq!(evs[2]["state"], "Interrupted");
    assert!(events(&r, "Firmware.UpdateCompleted").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_update_cut_by_a_crash_is_an_event_at_the_next_start() {
    let r = rig("ev-crash");
    r.hold.store(true, AtOrd::SeqCst);
    let id =
        r.fw.start_update(
            image(&r, "1.1.0", &[3u8; 100_000], &["sim"]),
            UpdateOptions::default(),
            0,
        )
        .await
        .unwrap();
    wait_until("slot b Writing", || {
        slot_b(&r).state == FirmwareState::Writing
    })
    .await;
    // What a crash now would leave on disk: a copy of the first daemon's
    // state (firmware.json, keys) and task store (the task still Running),
    // opened by a second daemon while the first one is held. Not the same
    // directories: two live stores there would race on their files (both
    // write `.tasks.json.tmp` and rename it), which a real crash never does.
    let dir2 = tmpdir("ev-crash-after");
    let tasks2 = dir2.join("tasks-after");
    std::fs::create_dir_all(&tasks2).unwrap();
    for (from, to) in [
        (r.dir.join(STATE_FILE), dir2.join(STATE_FILE)),
        (r.dir.join("keys/t.pub"), dir2.join("keys/t.pub")),
        (r.tasks_dir.join("tasks.json"), tasks2.join("tasks.json")),
    ] {
        std::fs::copy(&from, &to).unwrap();
    }
    let r2 = open_rig_with(dir2, r.key.clone(), r.a.clone(), r.b.clone(), Some(tasks2));
    let evs = events(&r2, "Firmware.UpdateFailed");
    assert_eq!(evs.len(), 1, "{evs:?}");
    assert_eq!(evs[0]["slot"], "bmc_b");
    assert_eq!(evs[0]["task"], id.to_string());
    assert_eq!(evs[0]["state"], "Interrupted");
    assert!(evs[0]["error"].contains("now Invalid"), "{evs:?}");
    assert_eq!(slot_b(&r2).state, FirmwareState::Invalid);
    // Let the first one end (it fails).
    r.fail.store(true, AtOrd::SeqCst);
    r.hold.store(false, AtOrd::SeqCst);
    wait_final(&r, id).await;
}

fn image(r: &Rig, version: &str, payload: &[u8], machines: &[&str]) -> File {
    let meta = ImageMeta {
        component: "bmc".into(),
        version: version.into(),
        build_date: "2026-12-03".into(),
        compatible: machines.iter().map(|m| m.to_string()).collect(),
    };
    let mut src = [PayloadSource {
        name: "rootfs".into(),
        reader: Cursor::new(payload.to_vec()),
    }];
    let path = r.dir.join(format!("img-{version}-{}", payload.len()));
    let out = File::create(&path).unwrap();
    bmcd_image::pack(&meta, &mut src, &r.key, out).unwrap();
    File::open(&path).unwrap()
}

async fn wait_final(r: &Rig, id: u64) -> crate::tasks::TaskSnapshot {
    let mut rx = r.tasks.get(id).unwrap();
    let s = rx.wait_for(|s| s.state.is_final()).await.unwrap().clone();
    s
}

/// Wait (up to 20 s) until `cond` holds; state the controller changes
/// from another thread has no channel to wait on here.
async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

fn slot_b(r: &Rig) -> SlotInfo {
    r.fw.snapshot().slots[1].clone()
}

#[test]
fn versions_compare_by_parts() {
    assert_eq!(compare_versions("1.10.0", "1.9.9"), Ordering::Greater);
    assert_eq!(compare_versions("1.0.0", "1.0.0"), Ordering::Equal);
    assert_eq!(compare_versions("0.9", "1.0.0"), Ordering::Less);
    // Pre-releases are below their release (semver), build metadata is
    // ignored, missing parts count as 0.
    assert_eq!(compare_versions("1.0.0-rc1", "1.0.0"), Ordering::Less);
    assert_eq!(
        compare_versions("1.0.0-rc.2", "1.0.0-rc.10"),
        Ordering::Less
    );
    assert_eq!(compare_versions("1.0.1-rc1", "1.0.0"), Ordering::Greater);
    assert_eq!(compare_versions("1.0.0+build5", "1.0.0"), Ordering::Equal);
    assert_eq!(compare_versions("1.2", "1.2.0"), Ordering::Equal);
    assert_eq!(compare_versions("1.2.1", "1.2"), Ordering::Greater);
    assert_eq!(
        compare_versions("2.14.0-dev-12-gabc", "2.14.0"),
        Ordering::Less
    );
    assert_eq!(
        compare_versions("1.0.0-alpha", "1.0.0-alpha.1"),
        Ordering::Less
    );
    assert_eq!(compare_versions("1.0.0-1", "1.0.0-alpha"), Ordering::Less);
    assert_eq!(compare_versions("", ""), Ordering::Equal);
    assert_eq!(compare_versions("1.0", ""), Ordering::Greater);
}

#[test]
fn start_states_follow_the_record() {
    let rec = |s: FirmwareState| Record {
        state: s.as_str().into(),
        ..Record::default()
    };
    use FirmwareState::*;
    assert_eq!(start_state(Some(&rec(Writing)), false).0, Invalid);
    assert_eq!(start_state(Some(&rec(Active)), false).0, Backup);
    assert_eq!(start_state(Some(&rec(Staged)), false).0, Staged);
    assert_eq!(start_state(Some(&rec(Staged)), true), (Active, true));
    assert_eq!(start_state(None, true), (Active, false));
    assert_eq!(start_state(None, false).0, Empty);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_update_stages_the_other_slot_and_never_touches_the_booted_one() {
    let r = rig("ok");
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let opts = UpdateOptions {
        activate: true,
        force_version: false,
    };
    let id =
        r.fw.start_update(image(&r, "1.1.0", &payload, &["sim"]), opts, 0)
            .await
            .unwrap();
    let s = wait_final(&r, id).await;
    assert_eq!(s.state, TaskState::Completed, "{s:?}");
    assert_eq!(*lock(&r.b), payload);
    assert_eq!(*lock(&r.a), vec![7u8; 1000]);
    let b = slot_b(&r);
    assert_eq!(b.state, FirmwareState::Staged);
    assert_eq!(b.version, "1.1.0");
    assert_eq!(b.digest, bmcd_image::sha256_hex(&payload));
    assert_eq!(r.fw.snapshot().boot_next, "bmc_b");
    assert_eq!(r.fw.snapshot().update_task, 0);
    assert_eq!(s.result.get("activated"), Some(&ResultValue::Bool(true)));
    // On disk, and back after a restart that booted the new slot? Not
    // here: a restart with the same boot keeps it Staged.
    let key = r.key.clone();
    let (dir, a, b) = (r.dir.clone(), r.a.clone(), r.b.clone());
    drop(r);
    let r = open_rig(dir, key, a, b);
    assert_eq!(slot_b(&r).state, FirmwareState::Staged);
    assert_eq!(slot_b(&r).version, "1.1.0");
    // Rollback: BootNext (bmc_a in a fresh selector) is booted → the
    // staged slot.
    r.fw.rollback().await.unwrap();
    assert_eq!(r.fw.snapshot().boot_next, "bmc_b");
    r.fw.rollback().await.unwrap();
    assert_eq!(r.fw.snapshot().boot_next, "bmc_a");
    // Writing a slot that was to boot next takes the activation back
    // first; without activate it stays with the running slot.
    r.fw.activate("bmc_b".into()).await.unwrap();
    let id =
        r.fw.start_update(
            image(&r, "1.2.0", &payload[..1000], &["sim"]),
            UpdateOptions::default(),
            0,
        )
        .await
        .unwrap();
    assert_eq!(wait_final(&r, id).await.state, TaskState::Completed);
    assert_eq!(r.fw.snapshot().boot_next, "bmc_a");
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_write_nothing() {
    let r = rig("refuse");
    let p = vec![1u8; 5000];
    let o = UpdateOptions::default();
    let e =
        r.fw.start_update(image(&r, "1.1.0", &p, &["other"]), o, 0)
            .await
            .unwrap_err();
    assert_eq!(e.name(), "org.bmcd.Error.Incompatible", "{e}");
    let e =
        r.fw.start_update(image(&r, "0.9.0", &p, &["sim"]), o, 0)
            .await
            .unwrap_err();
    assert_eq!(e.name(), "org.bmcd.Error.Incompatible", "{e}");
    let big = vec![1u8; (1 << 20) + 1];
    let e =
        r.fw.start_update(image(&r, "1.1.0", &big, &["sim"]), o, 0)
            .await
            .unwrap_err();
    assert_eq!(e.name(), "org.bmcd.Error.NoSpace", "{e}");
    let e =
        r.fw.start_update(File::open("/dev/null").unwrap(), o, 0)
            .await
            .unwrap_err();
    assert_eq!(e.name(), "org.bmcd.Error.InvalidImage", "{e}");
    assert!(lock(&r.b).is_empty());
    assert_eq!(slot_b(&r).state, FirmwareState::Empty);
    let e = r.fw.activate("bmc_b".into()).await.unwrap_err();
    assert_eq!(e.name(), "org.bmcd.Error.NotAllowed");
    let e = r.fw.activate("bmc_z".into()).await.unwrap_err();
    assert_eq!(e.name(), "org.bmcd.Error.NotFound");
    let e = r.fw.rollback().await.unwrap_err();
    assert_eq!(e.name(), "org.bmcd.Error.NotAllowed");
    // A downgrade is accepted with force-version.
    let force = UpdateOptions {
        activate: false,
        force_version: true,
    };
    let id =
        r.fw.start_update(image(&r, "0.9.0", &p, &["sim"]), force, 0)
            .await
            .unwrap();
    assert_eq!(wait_final(&r, id).await.state, TaskState::Completed);
    assert_eq!(r.fw.snapshot().boot_next, "bmc_a");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_write_leaves_the_slot_invalid() {
    let r = rig("fail");
    r.fail.store(true, AtOrd::SeqCst);
    let id =
        r.fw.start_update(
            image(&r, "1.1.0", &[3u8; 100_000], &["sim"]),
            UpdateOptions::default(),
            0,
        )
        .await
        .unwrap();
    let s = wait_final(&r, id).await;
    assert_eq!(s.state, TaskState::Failed);
    assert_eq!(s.error.0, "org.bmcd.Error.FlashWrite");
    assert_eq!(slot_b(&r).state, FirmwareState::Invalid);
    let json = std::fs::read_to_string(r.dir.join(STATE_FILE)).unwrap();
    assert!(json.contains("Invalid"), "{json}");
}

#[tokio::test(flavor = "multi_thread")]
async fn inspect_describes_without_writing() {
    let r = rig("inspect");
    let p = vec![9u8; 3000];
    let v =
        r.fw.inspect(image(&r, "2.0.0", &p, &["sim"]), true)
            .await
            .unwrap();
    let get = |k: &str| v.iter().find(|(n, _)| *n == k).map(|(_, x)| x.clone());
    assert_eq!(get("signature"), Some(InspectValue::Str("trusted".into())));
    assert_eq!(get("installable"), Some(InspectValue::Bool(true)));
    assert_eq!(get("payload-ok"), Some(InspectValue::Bool(true)));
    assert_eq!(
        get("version-rule"),
        Some(InspectValue::Str("upgrade".into()))
    );
    let v =
        r.fw.inspect(File::open("/dev/null").unwrap(), false)
            .await
            .unwrap();
    let get = |k: &str| v.iter().find(|(n, _)| *n == k).map(|(_, x)| x.clone());
    assert_eq!(get("signature"), Some(InspectValue::Str("invalid".into())));
    assert!(lock(&r.b).is_empty());
}
