//! Brute-force protection: after `max_failures` failed authentications of
//! one uid within `window`, that uid is locked out for `lock_for`; attempts
//! meanwhile are refused without running PAM. A success clears the uid's
//! failures. Time is passed in, so tests need no clock.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_failures: u32,
    pub window: Duration,
    pub lock_for: Duration,
}

/// What a failure led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// This many more failures within the window lock the uid out.
    Remaining(u32),
    /// The uid is now locked out for this long.
    Locked(Duration),
}

#[derive(Debug, Default)]
struct Entry {
    /// Times of the recent failures, oldest first, at most `max_failures`.
    failures: VecDeque<Instant>,
    locked_until: Option<Instant>,
}

#[derive(Debug)]
pub struct Lockout {
    limits: Limits,
    uids: HashMap<u32, Entry>,
}

fn later(now: Instant, d: Duration) -> Instant {
    // The configuration bounds every duration to days, so this cannot
    // overflow in practice; if it did, the lock would end now rather than
    // the daemon panic.
    now.checked_add(d).unwrap_or(now)
}

impl Lockout {
    pub fn new(limits: Limits) -> Lockout {
        Lockout {
            limits,
            uids: HashMap::new(),
        }
    }

    /// `Err(remaining)` while `uid` is locked out.
    pub fn check(&mut self, uid: u32, now: Instant) -> Result<(), Duration> {
        let Some(e) = self.uids.get_mut(&uid) else {
            return Ok(());
        };
        if let Some(until) = e.locked_until {
            if now < until {
                return Err(until.duration_since(now));
            }
            // The lock has run out: start afresh.
            self.uids.remove(&uid);
        }
        Ok(())
    }

    /// Record a failed attempt of `uid` at `now`.
    pub fn failure(&mut self, uid: u32, now: Instant) -> AfterFailure {
        let l = self.limits;
        let e = self.uids.entry(uid).or_default();
        let window_start = now.checked_sub(l.window);
        // Forget failures that have left the window.
        while e
            .failures
            .front()
            .is_some_and(|t| window_start.is_some_and(|ws| *t <= ws) || *t > now)
        {
            e.failures.pop_front();
        }
        e.failures.push_back(now);
        let n = u32::try_from(e.failures.len()).unwrap_or(u32::MAX);
        if n >= l.max_failures {
            e.failures.clear();
            e.locked_until = Some(later(now, l.lock_for));
            AfterFailure::Locked(l.lock_for)
        } else {
            AfterFailure::Remaining(l.max_failures - n)
        }
    }

    /// A successful authentication clears the uid's failures.
    pub fn success(&mut self, uid: u32) {
        self.uids.remove(&uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn five_in_300() -> Lockout {
        Lockout::new(Limits {
            max_failures: 5,
            window: S(300),
            lock_for: S(600),
        })
    }

    #[test]
    fn locks_after_n_failures_in_the_window() {
        let t0 = Instant::now();
        let mut l = five_in_300();
        for i in 0..4u32 {
            assert_eq!(l.check(7, t0 + S(u64::from(i))), Ok(()));
            assert_eq!(
                l.failure(7, t0 + S(u64::from(i))),
                AfterFailure::Remaining(4 - i)
            );
        }
        assert_eq!(l.failure(7, t0 + S(299)), AfterFailure::Locked(S(600)));
        assert_eq!(l.check(7, t0 + S(299)), Err(S(600)));
        assert_eq!(l.check(7, t0 + S(898)), Err(S(1)));
        // Other uids are not affected.
        assert_eq!(l.check(8, t0 + S(300)), Ok(()));
        // The lock runs out, and the count starts afresh.
        assert_eq!(l.check(7, t0 + S(899)), Ok(()));
        assert_eq!(l.failure(7, t0 + S(900)), AfterFailure::Remaining(4));
    }

    #[test]
    fn old_failures_leave_the_window() {
        let t0 = Instant::now();
        let mut l = five_in_300();
        for i in 0..4 {
            l.failure(7, t0 + S(i));
        }
        // 300 s after the first failure it no longer counts: 4 in the window.
        assert_eq!(l.failure(7, t0 + S(300)), AfterFailure::Remaining(1));
        // Spread out over time, failures never lock.
        let mut l = five_in_300();
        for i in 0..20 {
            assert_ne!(
                l.failure(9, t0 + S(i * 100)),
                AfterFailure::Locked(S(600)),
                "{i}"
            );
        }
    }

    #[test]
    fn success_clears() {
        let t0 = Instant::now();
        let mut l = five_in_300();
        for i in 0..4 {
            l.failure(7, t0 + S(i));
        }
        l.success(7);
        assert_eq!(l.failure(7, t0 + S(5)), AfterFailure::Remaining(4));
    }

    #[test]
    fn one_failure_limit() {
        let t0 = Instant::now();
        let mut l = Lockout::new(Limits {
            max_failures: 1,
            window: S(1),
            lock_for: Duration::from_millis(10),
        });
        assert_eq!(
            l.failure(1, t0),
            AfterFailure::Locked(Duration::from_millis(10))
        );
        assert!(l.check(1, t0 + Duration::from_millis(9)).is_err());
        assert!(l.check(1, t0 + Duration::from_millis(10)).is_ok());
    }
}
