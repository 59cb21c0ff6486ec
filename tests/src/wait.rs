//! Polling with a deadline: the only way tests synchronise.

use std::fmt::Debug;
use std::time::{Duration, Instant};

/// Interval between two looks at a condition.
pub const POLL: Duration = Duration::from_millis(20);

/// Poll `cond` every [`POLL`] until it is true; panic naming `what` if
/// `timeout` passes first.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    loop {
        if cond() {
            return;
        }
        if start.elapsed() >= timeout {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        std::thread::sleep(POLL);
    }
}

/// Poll `get` until `ok` accepts its value and return that value; on
/// timeout, panic naming `what` and the last value seen.
pub fn wait_value<T: Debug>(
    what: &str,
    timeout: Duration,
    mut get: impl FnMut() -> T,
    mut ok: impl FnMut(&T) -> bool,
) -> T {
    let start = Instant::now();
    loop {
        let v = get();
        if ok(&v) {
            return v;
        }
        if start.elapsed() >= timeout {
            panic!("timed out after {timeout:?} waiting for: {what} (last value: {v:?})");
        }
        std::thread::sleep(POLL);
    }
}

/// Check that `cond` holds throughout `period` (polled): for the few
/// assertions that something does *not* happen too early.
pub fn assert_for(what: &str, period: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < period {
        assert!(
            cond(),
            "{what}: stopped holding after {:?}",
            start.elapsed()
        );
        std::thread::sleep(POLL);
    }
}
