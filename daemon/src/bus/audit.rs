//! The audit hook: every mutating call, allowed or refused, is handed to an
//! [`Audit`] implementation by the method wrapper (`method.rs`) once its
//! outcome is known, and the wrapper waits for the returned future before
//! it answers the call.
//!
//! [`StoreAudit`] writes one `Audit.Call` record to the audit log with
//! `Durability::Sync` (fsynced off the runtime, before the reply goes out)
//! and forwards the same line to syslog ([`LogAudit`]: target `audit`, the
//! authpriv facility). A record that cannot be stored is logged as an
//! error; the call is not failed for it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bmcd_api::{Error, LogSeverity};
use zbus::DBusError;

use crate::auth::Caller;
use crate::clock::now_us;
use crate::logs::Log;
use crate::logstore::{Durability, NewEntry, StoreError};

/// One audited call.
pub struct AuditRecord<'a> {
    /// Who called, if the bus driver could tell (`None`: refused before).
    pub caller: Option<&'a Caller>,
    /// The unique bus name of the sender (`:1.42`), or "" if none.
    pub sender: &'a str,
    pub interface: &'a str,
    pub method: &'a str,
    /// The arguments, in `key=value` words, never a secret.
    pub args: &'a str,
    /// `Ok` if the call was carried out, else the error it was answered with.
    pub outcome: Result<(), &'a Error>,
}

/// What the wrapper waits for before it answers.
pub type Pending = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Where audit records go. `record` takes what it needs from `r` at once
/// and returns the (possibly blocking, so off-runtime) rest as a future,
/// which the wrapper awaits before the reply is sent.
pub trait Audit: Send + Sync {
    fn record(&self, r: &AuditRecord<'_>) -> Pending;
}

fn done() -> Pending {
    Box::pin(std::future::ready(()))
}

/// Audit to the log: `info` for calls carried out, `warn` for refusals.
pub struct LogAudit;

impl LogAudit {
    fn line(r: &AuditRecord<'_>) {
        let who = match r.caller {
            Some(c) => format!("uid={} role={}", c.uid, c.role),
            None => "uid=? role=?".to_owned(),
        };
        let args = if r.args.is_empty() { "-" } else { r.args };
        match r.outcome {
            Ok(()) => log::info!(
                target: "audit",
                "{}.{} {who} sender={} args=[{args}] result=ok",
                r.interface, r.method, r.sender
            ),
            Err(e) => log::warn!(
                target: "audit",
                "{}.{} {who} sender={} args=[{args}] result={}",
                r.interface, r.method, r.sender, e.name()
            ),
        }
    }
}

impl Audit for LogAudit {
    fn record(&self, r: &AuditRecord<'_>) -> Pending {
        LogAudit::line(r);
        done()
    }
}

/// No audit at all (unit tests).
pub struct NoAudit;

impl Audit for NoAudit {
    fn record(&self, _: &AuditRecord<'_>) -> Pending {
        done()
    }
}

/// Audit to the audit log (Sync) and to syslog.
pub struct StoreAudit {
    pub log: Arc<Log>,
}

/// Append `e` to `log` with `Durability::Sync`, off the runtime; an error
/// is logged (never returned: an audit failure does not fail the call).
pub async fn append_sync(log: Arc<Log>, make: impl FnOnce() -> NewEntry + Send + 'static) {
    let r = crate::sync::off_runtime(
        move || log.append(make(), Durability::Sync),
        |e| StoreError::Io("audit worker".into(), std::io::Error::other(e)),
    )
    .await;
    if let Err(e) = r {
        log::error!(target: "audit", "audit log: cannot append a record: {e}");
    }
}

/// The user name of `uid`, "?" if it has none (reads the user database:
/// call off the runtime).
pub fn user_of(uid: Option<u32>) -> String {
    uid.and_then(crate::auth::identity::user_name)
        .unwrap_or_else(|| "?".into())
}

impl Audit for StoreAudit {
    fn record(&self, r: &AuditRecord<'_>) -> Pending {
        LogAudit::line(r);
        let uid = r.caller.map(|c| c.uid);
        let role = r.caller.map_or("?".to_owned(), |c| c.role.to_string());
        let (severity, result) = match r.outcome {
            Ok(()) => (LogSeverity::Notice, "ok".to_owned()),
            Err(e) => (LogSeverity::Warning, e.name().to_string()),
        };
        let interface = r.interface.to_owned();
        let method = r.method.to_owned();
        let args = r.args.to_owned();
        let sender = r.sender.to_owned();
        Box::pin(append_sync(self.log.clone(), move || {
            let user = user_of(uid);
            let uid_s = uid.map_or("?".to_owned(), |u| u.to_string());
            let short = interface.strip_prefix("org.bmcd.").unwrap_or(&interface);
            let message = format!(
                "{short}.{method} by {user} (uid {uid_s}, {role}): {result}{}",
                if args.is_empty() {
                    String::new()
                } else {
                    format!(" [{args}]")
                }
            );
            NewEntry {
                time_us: now_us(),
                severity: severity.level(),
                source: "bus".into(),
                message_id: "Audit.Call".into(),
                message,
                data: vec![
                    ("uid".into(), uid_s),
                    ("user".into(), user),
                    ("role".into(), role),
                    ("interface".into(), interface),
                    ("method".into(), method),
                    ("args".into(), args),
                    ("result".into(), result),
                    ("sender".into(), sender),
                ],
            }
        }))
    }
}
