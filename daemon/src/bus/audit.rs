//! The audit hook: every mutating call, allowed or refused, is handed to an
//! [`Audit`] implementation by the method wrapper (`method.rs`) once its
//! outcome is known. Today's implementation writes one syslog line per
//! call (target `audit`, the authpriv facility); the log issue gives the
//! hook a persistent, crash-safe store behind the same trait.

use bmcd_api::Error;
use zbus::DBusError;

use crate::auth::Caller;

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

/// Where audit records go. Implementations must not block for long: they
/// run on the daemon's bus task, after the call and before its reply.
pub trait Audit: Send + Sync {
    fn record(&self, r: &AuditRecord<'_>);
}

/// Audit to the log: `info` for calls carried out, `warn` for refusals.
pub struct LogAudit;

impl Audit for LogAudit {
    fn record(&self, r: &AuditRecord<'_>) {
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

/// No audit at all (unit tests).
pub struct NoAudit;

impl Audit for NoAudit {
    fn record(&self, _: &AuditRecord<'_>) {}
}
