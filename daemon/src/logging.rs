//! Logging: to syslog (`/dev/log`, RFC 3164 datagrams) when it exists,
//! otherwise to stderr (which journald captures under systemd anyway).
//!
//! Records whose target is `auth` go to the authpriv facility (issue: every
//! authentication attempt is logged there); everything else to daemon.

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::sync::Mutex;

use log::{Level, LevelFilter, Log, Metadata, Record};

const DEV_LOG: &str = "/dev/log";
const FACILITY_DAEMON: u8 = 3;
const FACILITY_AUTHPRIV: u8 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Auto,
    Stderr,
    Syslog,
}

struct Logger {
    syslog: Option<Mutex<UnixDatagram>>,
    pid: u32,
}

impl Log for Logger {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        if let Some(sock) = &self.syslog {
            let severity = match r.level() {
                Level::Error => 3,
                Level::Warn => 4,
                Level::Info => 6,
                Level::Debug | Level::Trace => 7,
            };
            let facility = if r.target() == "auth" {
                FACILITY_AUTHPRIV
            } else {
                FACILITY_DAEMON
            };
            let msg = format!(
                "<{}>bmcd[{}]: {}",
                u32::from(facility) * 8 + severity,
                self.pid,
                r.args()
            );
            let sock = sock.lock().unwrap_or_else(|p| p.into_inner());
            if sock.send(msg.as_bytes()).is_ok() {
                return;
            }
        }
        let mut err = std::io::stderr().lock();
        let _ = writeln!(
            err,
            "bmcd: {}: {}",
            r.level().as_str().to_lowercase(),
            r.args()
        );
    }

    fn flush(&self) {}
}

/// Install the logger. Never fails: without syslog it writes to stderr.
pub fn init(target: Target, level: LevelFilter) {
    let syslog = match target {
        Target::Stderr => None,
        Target::Auto | Target::Syslog => UnixDatagram::unbound()
            .and_then(|s| s.connect(DEV_LOG).map(|()| s))
            .ok()
            .map(Mutex::new),
    };
    let missing = target == Target::Syslog && syslog.is_none();
    let logger = Logger {
        syslog,
        pid: std::process::id(),
    };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(level);
    }
    if missing {
        log::warn!("{DEV_LOG} is not available; logging to stderr");
    }
}
