//! The two logs the daemon keeps (event and audit), each a
//! [`LogStore`] plus a watch channel of its counters, and the one call
//! every source uses to write an event ([`Logs::event`]).
//!
//! Durability rule: an audit record is appended with `Durability::Sync`
//! (fsynced before the call it records is answered); events are appended
//! with `Durability::Deferred` and fsynced by the group-commit flusher
//! within `logstore::GROUP_COMMIT` (and at a clean stop). An event is
//! also forwarded to syslog, as before.
//!
//! Appends block (file I/O). Events are small writes without fsync, done
//! inline by the source; Sync appends from async code go through
//! `sync::off_runtime`.

use std::path::Path;
use std::sync::Arc;

use bmcd_api::LogSeverity;
use tokio::sync::watch;

use crate::clock::now_us;
use crate::config::LogsConfig;
use crate::logstore::{Durability, LogStore, NewEntry, OpenReport, Stats, StoreError};

/// One log and the watch of its counters (`Log1` properties and the
/// `Appended` signal follow it).
pub struct Log {
    /// `event` or `audit`.
    pub name: &'static str,
    pub store: LogStore,
    stats: watch::Sender<Stats>,
}

impl Log {
    pub fn open(
        name: &'static str,
        dir: &Path,
        limits: crate::logstore::Limits,
    ) -> Result<(Arc<Log>, OpenReport), StoreError> {
        let (store, report) = LogStore::open(dir, limits)?;
        let (stats, _) = watch::channel(store.stats());
        Ok((Arc::new(Log { name, store, stats }), report))
    }

    /// Append and publish the new counters; the new entry's id.
    pub fn append(&self, e: NewEntry, d: Durability) -> Result<u64, StoreError> {
        let r = self.store.append(e, d);
        self.publish();
        r
    }

    /// Append many (one write); first and last ids.
    pub fn append_batch(&self, es: Vec<NewEntry>, d: Durability) -> Result<(u64, u64), StoreError> {
        let r = self.store.append_batch(es, d);
        self.publish();
        r
    }

    /// Remove every entry (see `LogStore::clear`); how many went.
    pub fn clear(&self) -> Result<u64, StoreError> {
        let r = self.store.clear();
        self.publish();
        r
    }

    /// Clear, and write the entry `first(removed, generation)` makes as the
    /// new generation's first entry, with no other append in between (see
    /// `LogStore::clear_then_append`); how many entries went.
    pub fn clear_then_append(
        &self,
        first: impl FnOnce(u64, u64) -> NewEntry,
        d: Durability,
    ) -> Result<u64, StoreError> {
        let r = self.store.clear_then_append(first, d);
        self.publish();
        r.map(|(removed, _)| removed)
    }

    /// Send the store's counters to the watchers if they changed.
    pub fn publish(&self) {
        let now = self.store.stats();
        self.stats.send_if_modified(|s| {
            let changed = *s != now;
            *s = now;
            changed
        });
    }

    pub fn subscribe(&self) -> watch::Receiver<Stats> {
        self.stats.subscribe()
    }
}

/// Both logs.
pub struct Logs {
    pub event: Arc<Log>,
    pub audit: Arc<Log>,
}

impl Logs {
    /// Open both logs under `state_dir/logs/`. What recovery repaired is
    /// logged and written as `Log.Corrupt` events.
    pub fn open(state_dir: &Path, cfg: &LogsConfig) -> Result<Arc<Logs>, StoreError> {
        let base = state_dir.join("logs");
        let (event, ev_report) = Log::open("event", &base.join("event"), cfg.event.store_limits())?;
        let (audit, au_report) = Log::open("audit", &base.join("audit"), cfg.audit.store_limits())?;
        let logs = Arc::new(Logs { event, audit });
        for (name, report) in [("event", ev_report), ("audit", au_report)] {
            if report.truncated_bytes > 0 {
                log::warn!(
                    "{name} log: cut {} bytes of a torn or damaged tail",
                    report.truncated_bytes
                );
            }
            for (file, why) in report.quarantined {
                logs.event(
                    LogSeverity::Error,
                    "log",
                    "Log.Corrupt",
                    format!("{name} log: set aside {}: {why}", file.display()),
                    &[
                        ("log", name.to_owned()),
                        ("file", file.display().to_string()),
                        ("reason", why),
                    ],
                );
            }
        }
        Ok(logs)
    }

    /// Write an event (group-committed) and forward it to syslog. Never
    /// fails: a store error is logged to syslog.
    pub fn event(
        &self,
        severity: LogSeverity,
        source: &str,
        message_id: &str,
        message: String,
        data: &[(&str, String)],
    ) {
        match severity {
            LogSeverity::Emergency
            | LogSeverity::Alert
            | LogSeverity::Critical
            | LogSeverity::Error => log::error!("{source}: {message} [{message_id}]"),
            LogSeverity::Warning => log::warn!("{source}: {message} [{message_id}]"),
            LogSeverity::Notice | LogSeverity::Informational => {
                log::info!("{source}: {message} [{message_id}]")
            }
            LogSeverity::Debug => log::debug!("{source}: {message} [{message_id}]"),
        }
        let e = NewEntry {
            time_us: now_us(),
            severity: severity.level(),
            source: source.to_owned(),
            message_id: message_id.to_owned(),
            message,
            data: data
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        };
        if let Err(err) = self.event.append(e, Durability::Deferred) {
            log::error!("event log: cannot append {message_id}: {err}");
        }
    }
}

impl Logs {
    /// fsync both logs' deferred appends (at stop); errors are logged.
    pub fn flush(&self) {
        for l in [&self.event, &self.audit] {
            if let Err(e) = l.store.flush() {
                log::error!("{} log: flush: {e}", l.name);
            }
        }
    }
}

/// The group-commit flusher: every `GROUP_COMMIT`, fsync a log that has
/// deferred appends, off the runtime.
pub async fn flush_loop(logs: Arc<Logs>) {
    let mut t = tokio::time::interval(crate::logstore::GROUP_COMMIT);
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        t.tick().await;
        for l in [&logs.event, &logs.audit] {
            if l.store.needs_flush() {
                let l = l.clone();
                let r = crate::sync::off_runtime(
                    move || l.store.flush(),
                    |e| StoreError::Io("flush worker".into(), std::io::Error::other(e)),
                )
                .await;
                if let Err(e) = r {
                    log::error!("log flush: {e}");
                }
            }
        }
    }
}
