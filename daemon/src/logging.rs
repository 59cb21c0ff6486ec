//! Logging: to syslog (`/dev/log`, RFC 3164 datagrams through the `syslog`
//! crate) when it exists, otherwise to stderr (which journald captures under
//! systemd anyway).
//!
//! Records whose target is `auth` (every authentication attempt) or `audit`
//! (every mutating bus call, `bus::audit::LogAudit`) go to the authpriv
//! facility; everything else to daemon. Each
//! line is tagged `bmcd[PID]`.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use log::{Level, LevelFilter, Log, Metadata, Record};
use syslog::{Facility, Formatter3164, LoggerBackend};

const DEV_LOG: &str = "/dev/log";
const IDENT: &str = "bmcd";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Auto,
    Stderr,
    Syslog,
}

type Syslog = syslog::Logger<LoggerBackend, Formatter3164>;

struct Logger {
    syslog: Option<Mutex<Syslog>>,
}

impl Logger {
    /// A logger writing to the syslog socket at `path`, or to stderr when
    /// `target` says so or that socket cannot be reached.
    fn new(target: Target, path: &Path) -> Logger {
        let syslog = match target {
            Target::Stderr => None,
            Target::Auto | Target::Syslog => {
                let formatter = Formatter3164 {
                    facility: Facility::LOG_DAEMON,
                    hostname: None,
                    process: IDENT.to_owned(),
                    pid: std::process::id(),
                };
                syslog::unix_custom(formatter, path).ok().map(Mutex::new)
            }
        };
        Logger { syslog }
    }

    /// Send to syslog; false if there is none or the send failed.
    fn to_syslog(&self, r: &Record) -> bool {
        let Some(sock) = &self.syslog else {
            return false;
        };
        let mut sock = sock.lock().unwrap_or_else(|p| p.into_inner());
        sock.formatter.facility = if matches!(r.target(), "auth" | "audit") {
            Facility::LOG_AUTHPRIV
        } else {
            Facility::LOG_DAEMON
        };
        let msg = r.args();
        match r.level() {
            Level::Error => sock.err(msg),
            Level::Warn => sock.warning(msg),
            Level::Info => sock.info(msg),
            Level::Debug | Level::Trace => sock.debug(msg),
        }
        .is_ok()
    }
}

impl Log for Logger {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) || self.to_syslog(r) {
            return;
        }
        let mut err = std::io::stderr().lock();
        let _ = writeln!(
            err,
            "{IDENT}: {}: {}",
            r.level().as_str().to_lowercase(),
            r.args()
        );
    }

    fn flush(&self) {}
}

/// Install the logger. Never fails: without syslog it writes to stderr.
pub fn init(target: Target, level: LevelFilter) {
    let logger = Logger::new(target, Path::new(DEV_LOG));
    let missing = target == Target::Syslog && logger.syslog.is_none();
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(level);
    }
    if missing {
        log::warn!("{DEV_LOG} is not available; logging to stderr");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    fn recv(sock: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn syslog_lines_carry_facility_severity_ident_and_pid() {
        let dir = std::env::temp_dir().join(format!("bmcd-logging-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log");
        let _ = std::fs::remove_file(&path);
        let server = UnixDatagram::bind(&path).unwrap();
        let logger = Logger::new(Target::Syslog, &path);
        assert!(logger.syslog.is_some());
        let tag = format!(" bmcd[{}]: ", std::process::id());

        // authpriv (10) * 8 + warning (4)
        assert!(logger.to_syslog(
            &Record::builder()
                .target("auth")
                .level(Level::Warn)
                .args(format_args!("login failed for {}", "u"))
                .build(),
        ));
        let line = recv(&server);
        assert!(line.starts_with("<84>"), "{line}");
        assert!(
            line.ends_with(&format!("{tag}login failed for u")),
            "{line}"
        );

        // daemon (3) * 8 + info (6)
        assert!(logger.to_syslog(
            &Record::builder()
                .target("bmcd::cooling")
                .level(Level::Info)
                .args(format_args!("fans ok"))
                .build(),
        ));
        let line = recv(&server);
        assert!(line.starts_with("<30>"), "{line}");
        assert!(line.ends_with(&format!("{tag}fans ok")), "{line}");

        // daemon (3) * 8 + error (3)
        assert!(logger.to_syslog(
            &Record::builder()
                .target("bmcd")
                .level(Level::Error)
                .args(format_args!("bad"))
                .build(),
        ));
        assert!(recv(&server).starts_with("<27>"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stderr_target_or_no_socket_means_no_syslog() {
        let missing = Path::new("/nonexistent/bmcd-test/log");
        assert!(Logger::new(Target::Stderr, missing).syslog.is_none());
        assert!(Logger::new(Target::Auto, missing).syslog.is_none());
        assert!(Logger::new(Target::Syslog, missing).syslog.is_none());
    }
}
