//! Daemons under pam_wrapper that start at the same moment each keep a
//! working PAM stack, also after the others exit.
//!
//! Regression test of a CI failure: pam_wrapper picks each process's
//! `/tmp/pam.X` directory with `lstat` then `mkdir` (not atomically), so
//! two processes starting together could share one directory, and the
//! first to exit deleted it under the other, whose `Authenticate` then
//! failed with `org.bmcd.Error.Unavailable` ("PAM service 'bmcd'
//! failed", logged as "pam_start: Critical error - immediate abort").
//! The harness serializes such starts and checks that each daemon got a
//! directory of its own (see `PamWrapperStart` in `tests/src/daemon.rs`).
//! Without that, this test failed in 2 of 5 runs.

use std::sync::{Arc, Barrier};
use std::thread;

use bmcd_tests::bmcd_api::SessionProxyBlocking;
use bmcd_tests::security::{auth_config, require_root, Pam};
use bmcd_tests::zbus::proxy::CacheProperties;
use bmcd_tests::{no_options, Daemon, TestBus};

const ROOT_PW: &str = "Root-pw.4711";
/// Pairs started in lockstep (two threads doing the same work, as two
/// test threads starting alike tests do).
const PAIRS: usize = 40;

#[test]
fn pairs_started_in_lockstep_get_their_own_directories() {
    require_root();
    for _ in 0..PAIRS {
        let barrier = Arc::new(Barrier::new(2));
        let starts: Vec<_> = (0..2)
            .map(|_| {
                let barrier = barrier.clone();
                thread::spawn(move || {
                    let pam = Pam::users(&[("root", ROOT_PW)]);
                    let bus = TestBus::new();
                    barrier.wait();
                    let daemon = Daemon::start_config_env(&bus, auth_config(|_| {}), pam.env());
                    (daemon, bus, pam)
                })
            })
            .collect();
        let mut pair: Vec<_> = starts
            .into_iter()
            .map(|h| h.join().expect("a daemon did not start"))
            .collect();
        // The first stops (pam_wrapper's destructor deletes its directory);
        // the second must still authenticate.
        if let Some((first, _, _)) = pair.first() {
            assert_eq!(first.stop(), 0, "log:\n{}", first.log_tail(40));
        }
        if let Some((second, bus, _)) = pair.get(1) {
            assert_authenticates(second, bus);
        }
        pair.clear();
    }
}

#[track_caller]
fn assert_authenticates(daemon: &Daemon, bus: &TestBus) {
    let conn = bus.connect();
    let session = SessionProxyBlocking::builder(&conn)
        .cache_properties(CacheProperties::No)
        .build()
        .expect("session proxy");
    let r = session.authenticate(ROOT_PW, no_options());
    assert!(
        r.is_ok(),
        "Authenticate on bmcd pid {} failed: {r:?}; log:\n{}",
        daemon.pid(),
        daemon.log_tail(40)
    );
}
