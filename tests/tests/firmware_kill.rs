//! kill -9 at random moments of many firmware updates (issue 8).
//!
//! Each round starts an update of the slot that is not booted (sim slots,
//! writes throttled so that an update lasts about half a second), kills
//! bmcd at a moment picked at random, starts it again on the same state
//! and checks what must hold whatever the moment was:
//!
//! - the booted slot's file is byte-identical to what it was at the start
//!   (SHA-256 of the whole file);
//! - no slot is `Writing`; a slot that firmware.json showed `Writing` at
//!   the kill is now `Invalid`; every `Active`/`Backup`/`Staged` slot has
//!   a `Digest` equal to the SHA-256 of the first `Size` bytes of its file;
//! - `BootNext` (and the sim boot loader's `boot_next` file) names such a
//!   good slot;
//! - the round's task (if the call got its path) is `Interrupted` or
//!   `Completed`, no `FirmwareUpdate` task runs, `UpdateTask` is `/`;
//! - bmcd owns its name and answers `WhoAmI`, and the next round's
//!   `StartUpdate` is accepted; the last update runs to completion.
//!
//! The moments: while the `StartUpdate` call is in flight (before the task
//! exists), a random delay after it returned, once `Progress` reached a
//! random value (Verify, Write, ReadBack), once `Phase` is `ReadBack`, and
//! once the task finished or the slot was `Staged` (around the end);
//! `activate` is on in about half of the rounds. The booted slot's image
//! may have no known digest (the factory image): its whole file is
//! compared instead.
//!
//! Only the moment is random; no assertion depends on where it fell, so
//! the verdict is deterministic. A "replay" runs the same moments, not the
//! same timing: the seed is printed, `FWKILL_SEED=<seed>` picks the same
//! moments again (`FWKILL_ROUNDS` changes the number of rounds per test,
//! 26 by default; the two tests make 54 kills together). The summary line
//! counts where the kills fell (the target slot's persisted state, the
//! task's phase just before the kill, the task's state after restart).

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bmcd_tests::bmcd_api::zbus::zvariant::{Fd, Value as ZValue};
use bmcd_tests::bmcd_api::{
    self, FirmwareManagerProxyBlocking, FirmwareState, SessionProxyBlocking, TaskState,
};
use bmcd_tests::firmware::{
    is_good_state, manager, payload_digest, persisted_state, set_firmware, sha256_file_prefix,
    sim_slot, slot_view, task_paths, task_proxy, wait_task_final, FwKit, ImageSpec, TestRng,
};
use bmcd_tests::{wait_until, Env};

const MIB: u64 = 1024 * 1024;
/// Sim slot size: small, so the whole booted file is hashed quickly.
const SLOT_SIZE: u64 = 2 * MIB;
/// Payload of every update.
const PAYLOAD: u64 = MIB;
/// Throttled sim writes: the Write phase lasts about 0.5 s.
const WRITE_BYTES_PER_S: u64 = 2 * MIB;
/// Rounds (kills) per test; two tests run: at least 50 kills in total.
const ROUNDS: u32 = 26;
/// Bound on anything a round waits for.
const LONG: Duration = Duration::from_secs(30);

/// When a round kills bmcd.
#[derive(Debug, Clone, Copy)]
enum Moment {
    /// This many ms after the `StartUpdate` call was sent, without waiting
    /// for its reply (mostly before the task exists).
    InFlight(u64),
    /// This many ms after `StartUpdate` returned (anywhere in the update,
    /// or after it).
    Delay(u64),
    /// Once the task's `Progress` reached this value (or it finished).
    Progress(u8),
    /// Once the task's `Phase` is `ReadBack` (or it finished).
    ReadBack,
    /// Once the task finished or the target slot shows `Staged` with the
    /// round's digest.
    Done,
}

impl Moment {
    fn pick(rng: &mut TestRng) -> Moment {
        match rng.below(100) {
            0..=11 => Moment::InFlight(rng.below(40)),
            12..=41 => Moment::Delay(rng.below(900)),
            42..=69 => Moment::Progress(rng.below(100) as u8),
            70..=84 => Moment::ReadBack,
            _ => Moment::Done,
        }
    }
}

/// What one kill found, for the summary.
#[derive(Debug, Default)]
struct Tally {
    kills: u32,
    /// Persisted state of the target slot at the kill.
    persisted: std::collections::BTreeMap<String, u32>,
    /// The round's task after the restart.
    task_after: std::collections::BTreeMap<String, u32>,
    /// The task's phase (or final state) seen just before the kill.
    phase_before: std::collections::BTreeMap<String, u32>,
}

fn bump(m: &mut std::collections::BTreeMap<String, u32>, k: impl Into<String>) {
    *m.entry(k.into()).or_insert(0) += 1;
}

struct Fixture {
    env: Env,
    kit: FwKit,
    booted: String,
    target: String,
    booted_file: PathBuf,
    booted_sha: String,
}

impl Fixture {
    fn new() -> Fixture {
        let kit = FwKit::new();
        let env = Env::with(|cfg| set_firmware(cfg, &kit, SLOT_SIZE, WRITE_BYTES_PER_S));
        let m = manager(&env);
        let booted = m.booted_now().expect("BootedNow");
        let target = bmcd_api::BMC_SLOTS
            .iter()
            .find(|s| **s != booted)
            .expect("a second BMC slot")
            .to_string();
        let booted_file = sim_slot(env.daemon.state_dir(), &booted);
        let booted_sha = sha256_file_prefix(&booted_file, u64::MAX);
        Fixture {
            env,
            kit,
            booted,
            target,
            booted_file,
            booted_sha,
        }
    }
}

/// `StartUpdate` on its own thread (so that bmcd can be killed while the
/// call is in flight); the receiver gets its result.
fn start_update_async(
    env: &Env,
    image: &Path,
    activate: bool,
) -> mpsc::Receiver<bmcd_api::Result<String>> {
    let conn = env.conn().clone();
    let image = image.to_owned();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let f = std::fs::File::open(&image).unwrap_or_else(|e| panic!("{}: {e}", image.display()));
        let mut opts = std::collections::HashMap::new();
        opts.insert(bmcd_api::update_options::ACTIVATE, ZValue::from(activate));
        let m = FirmwareManagerProxyBlocking::new(&conn).unwrap_or_else(|e| panic!("proxy: {e}"));
        let r = m.start_update(Fd::from(&f), opts).map(|p| p.to_string());
        let _ = tx.send(r);
    });
    rx
}

/// Everything that must hold after a restart; `ctx` names the round (with
/// the seed) in failures.
fn check_after_restart(
    fx: &Fixture,
    ctx: &str,
    persisted_target: Option<&str>,
    task: Option<&str>,
    expect_digest: &str,
    activate: bool,
    tally: &mut Tally,
) {
    let env = &fx.env;
    let log = || env.daemon.log_tail(40);
    // A clean start: the name is ours (start_again waited), a call answers.
    let who = SessionProxyBlocking::new(env.conn())
        .expect("session proxy")
        .who_am_i();
    assert!(
        who.is_ok(),
        "{ctx}: WhoAmI after restart: {who:?}\n{}",
        log()
    );

    // The booted slot is byte-identical.
    assert_eq!(
        sha256_file_prefix(&fx.booted_file, u64::MAX),
        fx.booted_sha,
        "{ctx}: the booted slot's file changed"
    );
    let m = manager(env);
    assert_eq!(
        m.booted_now().ok().as_deref(),
        Some(fx.booted.as_str()),
        "{ctx}"
    );

    // Slots: none Writing, the good ones hold what their Digest says.
    let mut good = Vec::new();
    for slot in bmcd_api::BMC_SLOTS {
        let v = slot_view(env, slot);
        let state = v
            .state
            .unwrap_or_else(|| panic!("{ctx}: {slot} State unreadable: {v:?}\n{}", log()));
        assert_ne!(state, FirmwareState::Writing, "{ctx}: {v:?} after restart");
        if slot == fx.booted {
            assert_eq!(state, FirmwareState::Active, "{ctx}: booted slot {v:?}");
        }
        // The image the BMC was delivered with may have no known digest
        // ("" and size 0): the running slot, whose whole file is compared
        // above. Any other good slot went through an update's read-back.
        let unknown_factory =
            slot == fx.booted && state == FirmwareState::Active && v.digest.as_deref() == Some("");
        if is_good_state(state) && unknown_factory {
            good.push(slot.to_string());
        } else if is_good_state(state) {
            let size = v.size.unwrap_or(0);
            assert!(size > 0, "{ctx}: {v:?} is good but has no size");
            let file = sim_slot(env.daemon.state_dir(), slot);
            let actual = sha256_file_prefix(&file, size);
            assert_eq!(
                v.digest.as_deref(),
                Some(actual.as_str()),
                "{ctx}: {v:?}: its Digest is not the SHA-256 of its first {size} bytes"
            );
            good.push(slot.to_string());
        }
    }
    if persisted_target == Some("Writing") {
        let v = slot_view(env, &fx.target);
        assert_eq!(
            v.state,
            Some(FirmwareState::Invalid),
            "{ctx}: {} was Writing at the kill; after restart {v:?}\n{}",
            fx.target,
            log()
        );
    }

    // BootNext (property and the boot loader's file) names a good slot.
    let boot_next = m.boot_next().unwrap_or_default();
    assert!(
        good.contains(&boot_next),
        "{ctx}: BootNext {boot_next:?} is not a good slot (good: {good:?})"
    );
    let bn_file = env.daemon.state_dir().join("sim-firmware/boot_next");
    if let Ok(text) = std::fs::read_to_string(&bn_file) {
        let text = text.trim();
        assert!(
            good.iter().any(|g| g == text),
            "{ctx}: the sim boot loader's boot_next {text:?} is not a good slot (good: {good:?})"
        );
    }

    // No update runs; every FirmwareUpdate task is final.
    let ut = m.update_task().map(|p| p.to_string()).unwrap_or_default();
    assert_eq!(ut, "/", "{ctx}: UpdateTask after restart");
    for p in task_paths(env) {
        let t = task_proxy(env, &p);
        if t.kind().ok().as_deref() == Some("FirmwareUpdate") {
            let s = t.state();
            assert!(
                s.as_ref().is_ok_and(|s| s.is_final()),
                "{ctx}: {p} is {s:?} after restart"
            );
        }
    }
    let Some(task) = task else {
        bump(&mut tally.task_after, "(no path)");
        return;
    };
    let t = task_proxy(env, task);
    let state = t
        .state()
        .unwrap_or_else(|e| panic!("{ctx}: task {task} after restart: {e}\n{}", log()));
    bump(&mut tally.task_after, state.to_string());
    match state {
        TaskState::Interrupted => {
            let (name, _) = t.error().unwrap_or_default();
            assert_eq!(name, "org.bmcd.Error.Interrupted", "{ctx}: {task} Error");
        }
        TaskState::Completed => {
            let v = slot_view(env, &fx.target);
            assert_eq!(
                v.state,
                Some(FirmwareState::Staged),
                "{ctx}: completed, {v:?}"
            );
            assert_eq!(v.digest.as_deref(), Some(expect_digest), "{ctx}: {v:?}");
            if activate {
                assert_eq!(boot_next, fx.target, "{ctx}: completed with activate");
            }
        }
        other => panic!("{ctx}: task {task} is {other:?} after restart\n{}", log()),
    }
}

/// Poll (every 5 ms) until `done` says the kill moment came, or `timeout`.
fn poll_until(timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() && start.elapsed() < timeout {
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn run_rounds(which: u64) {
    let rng = TestRng::from_env("FWKILL_SEED");
    let seed = rng.seed();
    // Each test of this file gets its own stream from the one seed.
    let mut rng = TestRng::new(seed ^ which.wrapping_mul(0x5851_F42D_4C95_7F2D));
    let rounds = std::env::var("FWKILL_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(ROUNDS);
    println!("firmware_kill[{which}]: FWKILL_SEED={seed} rounds={rounds}");
    eprintln!("firmware_kill[{which}]: FWKILL_SEED={seed} rounds={rounds}");

    let fx = Fixture::new();
    let env = &fx.env;
    let mut tally = Tally::default();
    let started = Instant::now();
    for round in 0..rounds {
        let spec = ImageSpec::new(&format!("1.1.{round}"), PAYLOAD)
            .seed(which * 1000 + u64::from(round) + 7);
        let image = fx.kit.image(&spec);
        let digest = payload_digest(&spec);
        let activate = rng.chance(50);
        let moment = Moment::pick(&mut rng);
        let ctx = format!(
            "FWKILL_SEED={seed} test {which} round {round} ({moment:?}, activate {activate})"
        );

        let rx = start_update_async(env, &image, activate);
        let mut task: Option<String> = None;
        let mut last_phase = String::from("(none)");
        match moment {
            Moment::InFlight(ms) => {
                std::thread::sleep(Duration::from_millis(ms));
            }
            _ => {
                let r = rx
                    .recv_timeout(LONG)
                    .unwrap_or_else(|e| panic!("{ctx}: StartUpdate did not return: {e}"));
                let path = r.unwrap_or_else(|e| {
                    panic!(
                        "{ctx}: StartUpdate refused: {e:?}\n{}",
                        env.daemon.log_tail(40)
                    )
                });
                let t = task_proxy(env, &path);
                match moment {
                    Moment::Delay(ms) => std::thread::sleep(Duration::from_millis(ms)),
                    Moment::Progress(p) => poll_until(LONG, || {
                        t.progress().is_ok_and(|v| v >= p)
                            || t.state().is_ok_and(TaskState::is_final)
                    }),
                    Moment::ReadBack => poll_until(LONG, || {
                        t.phase().is_ok_and(|p| p == "ReadBack")
                            || t.state().is_ok_and(TaskState::is_final)
                    }),
                    Moment::Done => {
                        let slot = bmcd_tests::firmware::slot_proxy(env, &fx.target);
                        // Staged by this round (an earlier round may
                        // have left it Staged with another digest).
                        poll_until(LONG, || {
                            t.state().is_ok_and(TaskState::is_final)
                                || (slot.state().ok() == Some(FirmwareState::Staged)
                                    && slot.digest().ok().as_deref() == Some(digest.as_str()))
                        })
                    }
                    Moment::InFlight(_) => {}
                }
                // For the summary only (a look just before the kill).
                last_phase = match t.state() {
                    Ok(s) if s.is_final() => s.to_string(),
                    _ => t.phase().unwrap_or_else(|_| "?".into()),
                };
                task = Some(path);
            }
        }
        env.daemon.kill9();
        tally.kills += 1;
        bump(&mut tally.phase_before, last_phase);
        if task.is_none() {
            // The call was in flight: it got a reply or an error (the
            // daemon left the bus); either way it has finished now.
            if let Ok(Ok(p)) = rx.recv_timeout(LONG) {
                task = Some(p);
            }
        }
        let persisted = persisted_state(env.daemon.state_dir(), &fx.target);
        bump(
            &mut tally.persisted,
            persisted.clone().unwrap_or_else(|| "(none)".into()),
        );
        env.daemon.start_again();
        check_after_restart(
            &fx,
            &ctx,
            persisted.as_deref(),
            task.as_deref(),
            &digest,
            activate,
            &mut tally,
        );
    }

    // A last update runs to the end, then one more kill while idle.
    let spec = ImageSpec::new("1.2.0", PAYLOAD).seed(which * 1000 + 999);
    let image = fx.kit.image(&spec);
    let digest = payload_digest(&spec);
    let ctx = format!("FWKILL_SEED={seed} test {which} final update");
    let path = bmcd_tests::firmware::start_update(env, &image, true)
        .unwrap_or_else(|e| panic!("{ctx}: {e:?}\n{}", env.daemon.log_tail(40)))
        .to_string();
    let t0 = Instant::now();
    let state = wait_task_final(env, &path, LONG);
    let update_s = t0.elapsed().as_secs_f64();
    assert_eq!(
        state,
        TaskState::Completed,
        "{ctx}: {:?}",
        task_proxy(env, &path).error()
    );
    let result = task_proxy(env, &path).result().unwrap_or_default();
    let got: Option<String> = result
        .get(bmcd_api::update_result::DIGEST)
        .and_then(|v| String::try_from(v.clone()).ok());
    assert_eq!(
        got.as_deref(),
        Some(digest.as_str()),
        "{ctx}: Result {result:?}"
    );
    wait_until("BootNext = target", LONG, || {
        manager(env).boot_next().ok().as_deref() == Some(fx.target.as_str())
    });
    env.daemon.kill9();
    tally.kills += 1;
    let persisted = persisted_state(env.daemon.state_dir(), &fx.target);
    env.daemon.start_again();
    check_after_restart(
        &fx,
        &ctx,
        persisted.as_deref(),
        Some(&path),
        &digest,
        true,
        &mut tally,
    );
    let msg = format!(
        "firmware_kill[{which}]: FWKILL_SEED={seed}: {} kills in {:.1} s; target persisted at kill: \
         {:?}; phase seen before kill: {:?}; round task after restart: {:?}; an uninterrupted \
         update took {update_s:.2} s",
        tally.kills,
        started.elapsed().as_secs_f64(),
        tally.persisted,
        tally.phase_before,
        tally.task_after
    );
    println!("{msg}");
    eprintln!("{msg}");
}

#[test]
fn kill9_during_updates_first_half() {
    run_rounds(1);
}

#[test]
fn kill9_during_updates_second_half() {
    run_rounds(2);
}
