//! A 64 MiB image updated end to end (sim slots, writes not throttled)
//! while bmcd's resident set is sampled: it must grow by less than 2 MiB
//! (issue 8: the payload is streamed, memory does not grow with the image).
//!
//! `VmRSS` (/proc/PID/status) is read just before `StartUpdate` and then
//! every 2 ms until the task is `Completed`; the assertion is on the
//! largest sample. The written slot must then hold the payload.

use std::time::{Duration, Instant};

use bmcd_tests::bmcd_api::{self, FirmwareState, TaskState};
use bmcd_tests::firmware::{
    manager, payload_digest, set_firmware, sha256_file_prefix, sim_slot, slot_view, start_update,
    task_proxy, vm_rss_kib, FwKit, ImageSpec,
};
use bmcd_tests::Env;

const MIB: u64 = 1024 * 1024;
const PAYLOAD: u64 = 64 * MIB;
const SLOT_SIZE: u64 = 96 * MIB;
/// Allowed growth of VmRSS, KiB.
const MAX_GROWTH_KIB: u64 = 2 * 1024;
const LONG: Duration = Duration::from_secs(120);

#[test]
fn update_of_64_mib_grows_rss_by_less_than_2_mib() {
    let kit = FwKit::new();
    let env = Env::with(|cfg| set_firmware(cfg, &kit, SLOT_SIZE, 0));
    let spec = ImageSpec::new("1.1.0", PAYLOAD).seed(64);
    let image = kit.image(&spec);
    let digest = payload_digest(&spec);
    let booted = manager(&env).booted_now().expect("BootedNow");
    let target = bmcd_api::BMC_SLOTS
        .iter()
        .find(|s| **s != booted)
        .expect("a second slot")
        .to_string();

    let pid = env.daemon.pid();
    let before = vm_rss_kib(pid);
    let started = Instant::now();
    let path = start_update(&env, &image, false)
        .unwrap_or_else(|e| panic!("StartUpdate: {e:?}\n{}", env.daemon.log_tail(40)))
        .to_string();
    let task = task_proxy(&env, &path);
    let mut max = before;
    let mut samples = 0u32;
    let state = loop {
        // Several RSS samples per look at the task (a bus round trip).
        for _ in 0..5 {
            max = max.max(vm_rss_kib(pid));
            samples += 1;
            std::thread::sleep(Duration::from_millis(2));
        }
        if let Ok(s) = task.state() {
            if s.is_final() {
                break s;
            }
        }
        assert!(
            started.elapsed() < LONG,
            "the 64 MiB update did not finish within {LONG:?} (phase {:?}, progress {:?})",
            task.phase(),
            task.progress()
        );
    };
    let elapsed = started.elapsed();
    max = max.max(vm_rss_kib(pid));
    let msg = format!(
        "firmware_rss: 64 MiB update {state} in {:.2} s ({:.0} MiB/s); VmRSS before {before} KiB, \
         max {max} KiB (+{} KiB) over {samples} samples",
        elapsed.as_secs_f64(),
        64.0 / elapsed.as_secs_f64(),
        max - before
    );
    println!("{msg}");
    eprintln!("{msg}");
    assert_eq!(
        state,
        TaskState::Completed,
        "{:?}\n{}",
        task.error(),
        env.daemon.log_tail(40)
    );
    let v = slot_view(&env, &target);
    assert_eq!(v.state, Some(FirmwareState::Staged), "{v:?}");
    assert_eq!(v.size, Some(PAYLOAD), "{v:?}");
    assert_eq!(v.digest.as_deref(), Some(digest.as_str()), "{v:?}");
    assert_eq!(
        sha256_file_prefix(&sim_slot(env.daemon.state_dir(), &target), PAYLOAD),
        digest,
        "the slot file does not hold the payload"
    );
    assert!(
        max - before < MAX_GROWTH_KIB,
        "bmcd's VmRSS grew by {} KiB during a 64 MiB update (limit {MAX_GROWTH_KIB} KiB): {msg}",
        max - before
    );
}
