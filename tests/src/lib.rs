//! Harness of the integration tests: the real `bmcd` and `bmcctl` binaries
//! on a private `dbus-daemon`, driven synchronously through the blocking
//! proxies of `bmcd-api` and through `busctl`/`gdbus`.
//!
//! Every test builds its own [`Env`] (a bus, a daemon, their temporary
//! directories); everything is torn down by `Drop`, also when the test
//! panics, so tests are independent and may run in parallel threads.
//! Nothing sleeps a fixed time to synchronise: [`wait_until`] polls a
//! condition with a deadline and names it when the deadline passes.

mod bins;
mod bus;
pub mod cross;
mod daemon;
mod env;
pub mod fake_hwmon;
pub mod firmware;
pub mod logs;
mod monitor;
mod process;
pub mod security;
mod signals;
mod tmp;
mod wait;
pub mod xml;

pub use bins::{bmcctl_bin, bmcctl_cross_bin, bmcd_bin, bmcimage_bin, workspace_root};
pub use bus::{bus_config_xml, BusConfig, BusPolicy, TestBus};
pub use daemon::{pam_wrapper_dir_of, test_config, Daemon, Launcher};
pub use env::{bmcctl_at, no_options, raw_call, Env, RawError};
pub use fake_hwmon::{duty, FakeHwmon};
pub use monitor::Monitor;
pub use process::{default_signal_actions, run, run_input, Run};
pub use signals::Signals;
pub use tmp::TempDir;
pub use wait::{assert_for, wait_until, wait_value, POLL};

pub use bmcd_api;
pub use bmcd_api::zbus;
pub use serde_json;

use std::time::Duration;

/// `secs(1.5)` = 1.5 s, for readable timeouts.
pub fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// Milliseconds since the Unix epoch, as the daemon's time properties.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Assert that `r` is the named daemon error `org.bmcd.Error.<short>`
/// (e.g. `"NotFound"`) and return its text.
#[track_caller]
pub fn expect_error<T: std::fmt::Debug>(r: bmcd_api::Result<T>, short: &str) -> String {
    use zbus::DBusError;
    match r {
        Ok(v) => panic!("expected org.bmcd.Error.{short}, got Ok({v:?})"),
        Err(e) => {
            let name = e.name().to_string();
            assert_eq!(
                name,
                format!("{}.{short}", bmcd_api::ERROR_PREFIX),
                "unexpected error: {e:?}"
            );
            let msg = e.message();
            assert!(!msg.trim().is_empty(), "{name} without a message");
            msg
        }
    }
}
