//! `org.bmcd.Log1` at `EVENT_LOG_PATH` and `AUDIT_LOG_PATH`: one object per
//! log (`crate::logs::Log`). Properties follow the log's counters watch
//! (published by the registry); [`publish_appended`] turns the same watch
//! into `Appended(first, last)` signals, coalesced (one signal may cover
//! many entries) and never going backwards.
//!
//! `GetEntries` is a query (any role) on the event log and Administrator
//! only on the audit log; its options are parsed strictly (a wrong type or
//! value is `InvalidArgument` naming the key). The page is read off the
//! runtime. `Clear` is for the event log only: the audit log answers
//! `NotAllowed` (it only rotates).

use std::collections::HashMap;
use std::sync::Arc;

use bmcd_api::log_query::{self, info};
use bmcd_api::{entry_keys, Error, LogSeverity};
use tokio::sync::watch;
use zbus::interface;
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::zvariant::{OwnedValue, Value};
use zbus::Connection;

use super::audit::{append_sync, user_of};
use super::method::{parse, Methods, Options};
use crate::auth::{Caller, Role};
use crate::clock::now_us;
use crate::logs::{Log, Logs};
use crate::logstore::{Direction, Durability, Entry, NewEntry, Page, Query, Stats, StoreError};

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Error {
        let text = e.to_string();
        match e {
            StoreError::TooLarge => Error::InvalidArgument(text),
            StoreError::Io(..) | StoreError::BadLimits(_) => Error::Internal(text),
        }
    }
}

/// One page as the method answers it.
pub type Reply = (
    Vec<HashMap<String, OwnedValue>>,
    u64,
    HashMap<String, OwnedValue>,
);

pub struct LogIface {
    pub m: Arc<Methods>,
    pub log: Arc<Log>,
    pub logs: Arc<Logs>,
    pub stats: watch::Receiver<Stats>,
}

fn owned(v: Value<'_>) -> Result<OwnedValue, Error> {
    v.try_to_owned()
        .map_err(|e| Error::Internal(format!("cannot encode a value: {e}")))
}

fn want_u64(key: &str, v: &OwnedValue) -> Result<u64, Error> {
    u64::try_from(&**v).map_err(|_| {
        Error::InvalidArgument(format!(
            "option '{key}' must be a t (u64, µs since the epoch), not {}",
            v.value_signature()
        ))
    })
}

fn want_str(key: &str, v: &OwnedValue) -> Result<String, Error> {
    let s = <&str>::try_from(&**v).map_err(|_| {
        Error::InvalidArgument(format!(
            "option '{key}' must be an s (string), not {}",
            v.value_signature()
        ))
    })?;
    if s.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "option '{key}' must not be empty"
        )));
    }
    Ok(s.to_owned())
}

/// The query of `GetEntries`' options (keys are checked by the wrapper).
pub fn parse_query(options: &Options) -> Result<Query, Error> {
    let mut q = Query::default();
    for (k, v) in options {
        match k.as_str() {
            log_query::DIRECTION => {
                q.direction = match want_str(k, v)?.as_str() {
                    log_query::NEWER => Direction::Newer,
                    log_query::OLDER => Direction::Older,
                    other => {
                        return Err(Error::InvalidArgument(format!(
                            "option '{k}': '{other}' is neither {} nor {}",
                            log_query::NEWER,
                            log_query::OLDER
                        )))
                    }
                }
            }
            log_query::SINCE => q.since_us = Some(want_u64(k, v)?),
            log_query::UNTIL => q.until_us = Some(want_u64(k, v)?),
            log_query::MIN_SEVERITY => {
                let s: LogSeverity = parse(&want_str(k, v)?).map_err(|e| {
                    Error::InvalidArgument(format!("option '{k}': {}", e.message()))
                })?;
                q.max_level = Some(s.level());
            }
            log_query::SOURCE => q.source = Some(want_str(k, v)?),
            log_query::MESSAGE_ID => q.message_id = Some(want_str(k, v)?),
            other => {
                return Err(Error::InvalidArgument(format!("unknown option '{other}'")));
            }
        }
    }
    Ok(q)
}

/// One entry as `a{sv}` with the `entry_keys`.
pub fn entry_value(e: Entry) -> Result<HashMap<String, OwnedValue>, Error> {
    let severity = LogSeverity::from_level(e.severity).unwrap_or(LogSeverity::Debug);
    let data: HashMap<String, String> = e.data.into_iter().collect();
    Ok(HashMap::from([
        (entry_keys::ID.to_owned(), owned(Value::from(e.id))?),
        (entry_keys::TIME.to_owned(), owned(Value::from(e.time_us))?),
        (
            entry_keys::SEVERITY.to_owned(),
            owned(Value::from(severity.as_str()))?,
        ),
        (entry_keys::SOURCE.to_owned(), owned(Value::from(e.source))?),
        (
            entry_keys::MESSAGE_ID.to_owned(),
            owned(Value::from(e.message_id))?,
        ),
        (
            entry_keys::MESSAGE.to_owned(),
            owned(Value::from(e.message))?,
        ),
        (entry_keys::DATA.to_owned(), owned(Value::from(data))?),
    ]))
}

fn reply(p: Page) -> Result<Reply, Error> {
    let info = HashMap::from([
        (
            info::FIRST_ID.to_owned(),
            owned(Value::from(p.stats.first_id))?,
        ),
        (
            info::LAST_ID.to_owned(),
            owned(Value::from(p.stats.last_id))?,
        ),
        (
            info::GENERATION.to_owned(),
            owned(Value::from(p.stats.generation))?,
        ),
        (info::DROPPED.to_owned(), owned(Value::from(p.dropped))?),
        (info::END.to_owned(), owned(Value::from(p.end))?),
        (info::SCANNED.to_owned(), owned(Value::from(p.scanned))?),
    ]);
    let entries = p
        .entries
        .into_iter()
        .map(entry_value)
        .collect::<Result<Vec<_>, _>>()?;
    Ok((entries, p.next_cursor, info))
}

impl LogIface {
    fn is_audit(&self) -> bool {
        self.log.name == "audit"
    }

    async fn page(
        &self,
        caller: &Caller,
        cursor: u64,
        count: u32,
        q: Query,
    ) -> Result<Reply, Error> {
        if self.is_audit() && caller.role < Role::Administrator {
            return Err(Error::PermissionDenied(format!(
                "the audit log is readable by Administrators only; uid {} has {}",
                caller.uid, caller.role
            )));
        }
        let log = self.log.clone();
        let count = count.min(log_query::MAX_PAGE);
        let page = crate::sync::off_runtime(
            move || log.store.page(cursor, count, &q),
            |e| StoreError::Io("log reader".into(), std::io::Error::other(e)),
        )
        .await?;
        reply(page)
    }

    /// Clear the event log, write `Log.Cleared` as the new generation's
    /// first entry and `Audit.LogCleared` (Sync) to the audit log.
    async fn clear_events(&self, caller: Caller) -> Result<(), Error> {
        let (log, uid) = (self.log.clone(), caller.uid);
        let (removed, generation, user) = crate::sync::off_runtime(
            move || {
                let user = user_of(Some(uid));
                let who = user.clone();
                let removed = log.clear_then_append(
                    |removed, generation| NewEntry {
                        time_us: now_us(),
                        severity: LogSeverity::Notice.level(),
                        source: "log".into(),
                        message_id: "Log.Cleared".into(),
                        message: format!(
                            "event log cleared by {who} (uid {uid}): {removed} entries removed"
                        ),
                        data: vec![
                            ("user".into(), who.clone()),
                            ("uid".into(), uid.to_string()),
                            ("generation".into(), generation.to_string()),
                            ("removed".into(), removed.to_string()),
                        ],
                    },
                    Durability::Sync,
                )?;
                let generation = log.store.stats().generation;
                log::info!("log: event log cleared by {user} (uid {uid}): {removed} entries removed [Log.Cleared]");
                Ok::<_, StoreError>((removed, generation, user))
            },
            |e| StoreError::Io("log clear worker".into(), std::io::Error::other(e)),
        )
        .await?;
        append_sync(self.logs.audit.clone(), move || NewEntry {
            time_us: now_us(),
            severity: LogSeverity::Notice.level(),
            source: "bus".into(),
            message_id: "Audit.LogCleared".into(),
            message: format!(
                "event log cleared by {user} (uid {uid}): {removed} entries removed, generation {generation}"
            ),
            data: vec![
                ("uid".into(), uid.to_string()),
                ("user".into(), user),
                ("generation".into(), generation.to_string()),
                ("removed".into(), removed.to_string()),
            ],
        })
        .await;
        Ok(())
    }
}

#[interface(name = "org.bmcd.Log1")]
impl LogIface {
    /// One page of up to `count` entries from `cursor`.
    #[zbus(out_args("entries", "next_cursor", "info"))]
    async fn get_entries(
        &self,
        cursor: u64,
        count: u32,
        options: Options,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<
        (
            Vec<HashMap<String, OwnedValue>>,
            u64,
            HashMap<String, OwnedValue>,
        ),
        Error,
    > {
        self.m
            .call(
                &hdr,
                Some(&options),
                log_query::OPTIONS,
                format!("log={} cursor={cursor} count={count}", self.log.name),
                || {
                    if count == 0 {
                        return Err(Error::InvalidArgument("count must be at least 1".into()));
                    }
                    parse_query(&options)
                },
                |caller, q| async move { self.page(&caller, cursor, count, q).await },
            )
            .await
    }

    /// Remove every entry (event log only).
    async fn clear(&self, options: Options, #[zbus(header)] hdr: Header<'_>) -> Result<(), Error> {
        let audit = self.is_audit();
        self.m
            .call(
                &hdr,
                Some(&options),
                &[],
                format!("log={}", self.log.name),
                || {
                    if audit {
                        Err(Error::NotAllowed(
                            "the audit log cannot be cleared: it only rotates (the oldest records go when it is full)"
                                .into(),
                        ))
                    } else {
                        Ok(())
                    }
                },
                |caller, ()| self.clear_events(caller),
            )
            .await
    }

    /// Entries `first..=last` were appended.
    #[zbus(signal)]
    async fn appended(emitter: &SignalEmitter<'_>, first: u64, last: u64) -> zbus::Result<()>;

    #[zbus(property(emits_changed_signal = "const"))]
    fn name(&self) -> String {
        self.log.name.to_owned()
    }
    #[zbus(property)]
    fn first_id(&self) -> u64 {
        self.stats.borrow().first_id
    }
    #[zbus(property)]
    fn last_id(&self) -> u64 {
        self.stats.borrow().last_id
    }
    #[zbus(property)]
    fn count(&self) -> u64 {
        self.stats.borrow().count
    }
    #[zbus(property)]
    fn generation(&self) -> u64 {
        self.stats.borrow().generation
    }
    #[zbus(property(emits_changed_signal = "const"))]
    fn max_entries(&self) -> u64 {
        self.stats.borrow().max_entries
    }
    #[zbus(property(emits_changed_signal = "const"))]
    fn max_bytes(&self) -> u64 {
        self.stats.borrow().max_bytes
    }
}

/// Emit `Appended(first, last)` at `path` whenever the `LastId` of the
/// log `rx` watches grows (subscribe before the object is on the bus, so
/// nothing appended meanwhile is missed); changes in between are coalesced into one signal. The last
/// emitted id is remembered, so a clear (ids go on) never makes a signal
/// go backwards.
pub async fn publish_appended(
    conn: Connection,
    path: &'static str,
    mut rx: watch::Receiver<Stats>,
) {
    let Ok(emitter) = SignalEmitter::new(&conn, path) else {
        return;
    };
    let mut last = rx.borrow_and_update().last_id;
    while rx.changed().await.is_ok() {
        let now = rx.borrow_and_update().last_id;
        if now > last {
            if let Err(e) = LogIface::appended(&emitter, last + 1, now).await {
                log::warn!("Appended signal: {e}");
            }
            last = now;
        }
    }
}

/// `Simulation1.AppendEvents`: `count` `Sim.Event` entries (Deferred), in
/// batches of [`SIM_BATCH`], off the runtime; the first and last new ids.
pub const SIM_BATCH: u32 = 1000;

pub async fn append_sim_events(log: Arc<Log>, count: u32) -> Result<(u64, u64), Error> {
    let r = crate::sync::off_runtime(
        move || {
            let mut range: Option<(u64, u64)> = None;
            let mut n = 0u32;
            while n < count {
                let end = count.min(n.saturating_add(SIM_BATCH));
                let batch = (n..end)
                    .map(|i| NewEntry {
                        time_us: now_us(),
                        severity: LogSeverity::Informational.level(),
                        source: "sim".into(),
                        message_id: "Sim.Event".into(),
                        message: format!("synthetic event {i}"),
                        data: vec![("n".into(), i.to_string())],
                    })
                    .collect();
                let (first, last) = log.append_batch(batch, Durability::Deferred)?;
                range = Some((range.map_or(first, |r| r.0), last));
                n = end;
            }
            Ok::<_, StoreError>(range.unwrap_or((0, 0)))
        },
        |e| StoreError::Io("append worker".into(), std::io::Error::other(e)),
    )
    .await?;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opt(k: &str, v: Value<'_>) -> Options {
        let mut o = Options::new();
        o.insert(
            k.to_owned(),
            v.try_to_owned().unwrap_or_else(|_| unreachable!()),
        );
        o
    }

    fn err(o: &Options) -> String {
        match parse_query(o) {
            Ok(q) => format!("accepted: {q:?}"),
            Err(e) => {
                use zbus::DBusError;
                format!("{} {}", e.name(), e.description().unwrap_or_default())
            }
        }
    }

    #[test]
    fn options_parse_strictly() {
        let q = parse_query(&Options::new()).ok();
        assert_eq!(q, Some(Query::default()));
        let q = parse_query(&opt("direction", Value::from("older"))).ok();
        assert_eq!(q.map(|q| q.direction), Some(Direction::Older));
        let q = parse_query(&opt("min-severity", Value::from("Warning"))).ok();
        assert_eq!(q.and_then(|q| q.max_level), Some(4));
        let q = parse_query(&opt("since", Value::from(7u64))).ok();
        assert_eq!(q.and_then(|q| q.since_us), Some(7));
        let q = parse_query(&opt("message-id", Value::from("Chassis."))).ok();
        assert_eq!(q.and_then(|q| q.message_id).as_deref(), Some("Chassis."));
        for (k, v) in [
            ("direction", Value::from("up")),
            ("direction", Value::from(1u32)),
            ("since", Value::from("now")),
            ("until", Value::from(-1i64)),
            ("min-severity", Value::from("warning")),
            ("source", Value::from("")),
            ("message-id", Value::from(true)),
        ] {
            let e = err(&opt(k, v));
            assert!(e.starts_with("org.bmcd.Error.InvalidArgument"), "{k}: {e}");
            assert!(e.contains(k), "{k}: {e}");
        }
    }

    #[test]
    fn an_entry_has_every_key_with_its_type() {
        let v = entry_value(Entry {
            id: 9,
            time_us: 1,
            severity: 5,
            source: "sim".into(),
            message_id: "Sim.Event".into(),
            message: "m".into(),
            data: vec![("n".into(), "0".into())],
        })
        .unwrap_or_default();
        let sig = |k: &str| v.get(k).map(|x| x.value_signature().to_string());
        assert_eq!(v.len(), 7);
        assert_eq!(sig("Id").as_deref(), Some("t"));
        assert_eq!(sig("Severity").as_deref(), Some("s"));
        assert_eq!(sig("Data").as_deref(), Some("a{ss}"));
        let sev = v.get("Severity").and_then(|x| <&str>::try_from(&**x).ok());
        assert_eq!(sev, Some("Notice"));
    }
}
