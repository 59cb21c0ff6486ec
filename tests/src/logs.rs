//! `Log1` from the tests: proxies, one page as plain Rust values, and a
//! walk over the whole log.

use std::collections::HashMap;

use bmcd_api::zbus;
use bmcd_api::zbus::zvariant::{OwnedValue, Value};
use bmcd_api::{log_query, LogEntry, LogProxyBlocking};

/// One entry of `GetEntries`, decoded (panics on a malformed entry: the
/// test then fails, naming it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub id: u64,
    pub time_us: u64,
    pub severity: String,
    pub source: String,
    pub message_id: String,
    pub message: String,
    pub data: HashMap<String, String>,
}

/// The `info` of one page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Info {
    pub first_id: u64,
    pub last_id: u64,
    pub generation: u64,
    pub dropped: bool,
    pub end: bool,
    pub scanned: u32,
}

/// The `Log1` proxy of log `path` on `conn` (properties read from the
/// daemon at every call, not cached).
pub fn log_proxy(conn: &zbus::blocking::Connection, path: &str) -> LogProxyBlocking<'static> {
    LogProxyBlocking::builder(conn)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .path(path.to_owned())
        .and_then(|b| b.build())
        .unwrap_or_else(|e| panic!("Log1 proxy at {path}: {e}"))
}

fn get<'a>(m: &'a HashMap<String, OwnedValue>, k: &str) -> &'a Value<'static> {
    m.get(k).unwrap_or_else(|| panic!("no key {k} in {m:?}"))
}

fn u64_of(m: &HashMap<String, OwnedValue>, k: &str) -> u64 {
    u64::try_from(get(m, k)).unwrap_or_else(|e| panic!("{k}: {e}"))
}

fn str_of(m: &HashMap<String, OwnedValue>, k: &str) -> String {
    <&str>::try_from(get(m, k))
        .unwrap_or_else(|e| panic!("{k}: {e}"))
        .to_owned()
}

/// Decode one entry.
pub fn row(e: &LogEntry) -> Row {
    let data = get(e, "Data")
        .try_clone()
        .ok()
        .and_then(|v| HashMap::<String, String>::try_from(v).ok())
        .unwrap_or_else(|| panic!("Data is not a{{ss}}: {e:?}"));
    assert_eq!(e.len(), 7, "entry keys: {e:?}");
    Row {
        id: u64_of(e, "Id"),
        time_us: u64_of(e, "Time"),
        severity: str_of(e, "Severity"),
        source: str_of(e, "Source"),
        message_id: str_of(e, "MessageId"),
        message: str_of(e, "Message"),
        data,
    }
}

/// Decode `info`.
pub fn info(m: &HashMap<String, OwnedValue>) -> Info {
    Info {
        first_id: u64_of(m, log_query::info::FIRST_ID),
        last_id: u64_of(m, log_query::info::LAST_ID),
        generation: u64_of(m, log_query::info::GENERATION),
        dropped: bool::try_from(get(m, log_query::info::DROPPED)).expect("dropped"),
        end: bool::try_from(get(m, log_query::info::END)).expect("end"),
        scanned: u32::try_from(get(m, log_query::info::SCANNED)).expect("scanned"),
    }
}

/// Options for `GetEntries`.
pub type Opts = HashMap<&'static str, Value<'static>>;

/// One page, decoded.
pub fn page(
    log: &LogProxyBlocking<'_>,
    cursor: u64,
    count: u32,
    opts: Opts,
) -> bmcd_api::Result<(Vec<Row>, u64, Info)> {
    let (entries, next, i) = log.get_entries(cursor, count, opts)?;
    Ok((entries.iter().map(row).collect(), next, info(&i)))
}

/// Every entry (with `opts`), oldest first, page by page of `count`.
pub fn all(log: &LogProxyBlocking<'_>, count: u32, opts: &Opts) -> Vec<Row> {
    let mut out = Vec::new();
    let mut cursor = log_query::CURSOR_OLDEST;
    loop {
        let (rows, next, i) = page(log, cursor, count, opts.clone())
            .unwrap_or_else(|e| panic!("GetEntries({cursor}, {count}): {e}"));
        out.extend(rows);
        if i.end {
            return out;
        }
        cursor = next;
    }
}
