//! The object registry: adds and removes objects at run time and publishes
//! their properties.
//!
//! Every object is an interface adapter (wrapped in [`Std`]) plus, for
//! objects whose properties move, a `watch` receiver of the controller
//! state they are read from. Whenever that state changes, the registry
//! reads the adapter's properties (the same code `GetAll` runs), compares
//! them with the values last published, and emits one `PropertiesChanged`
//! with exactly the ones that differ. No adapter keeps a list of which
//! property to announce when: a property that reads from watched state is
//! published, by construction. The `properties_changed` integration test
//! walks every property of every interface to keep it so.
//!
//! Adding an object under `/org/bmcd` makes zbus's ObjectManager emit
//! `InterfacesAdded`; removing it emits `InterfacesRemoved`.
//!
//! Invariants:
//! - the first published values are read before the object is on the bus
//!   and after the state was marked seen, so no change between the two is
//!   lost: a client that reads `GetAll` and then listens misses nothing;
//! - values are compared by their D-Bus encoding, so a NaN reading is equal
//!   to itself and does not re-announce itself every period;
//! - `add_throttling`'s `min_interval` bounds the signal rate of the
//!   throttled properties of one object (task progress and its heartbeat):
//!   their changes in between are coalesced, never dropped; the last value is always published. A
//!   change of any other property is published at once (with the throttled
//!   values pending), so a short-lived value such as a task's
//!   `Cancellable` is not swallowed by the rate limit.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use zbus::fdo::Properties;
use zbus::object_server::{Interface, InterfaceRef, SignalEmitter};
use zbus::zvariant::{serialized::Context, OwnedValue, Value, LE};
use zbus::{Connection, ObjectServer};

use super::Std;

type Values = HashMap<String, OwnedValue>;

/// The objects bmcd serves, and the tasks that publish their changes.
pub struct Registry {
    conn: Connection,
    /// (object path, interface) → the publisher of its properties.
    publishers: Mutex<HashMap<(String, String), AbortHandle>>,
    /// Held while an object is added, so that two adds of one object (a
    /// method exposing a new task, and the task manager's announcement of
    /// it) make one object, and the first to finish has it on the bus.
    adding: tokio::sync::Mutex<()>,
}

impl Registry {
    pub fn new(conn: &Connection) -> Arc<Registry> {
        Arc::new(Registry {
            conn: conn.clone(),
            publishers: Mutex::new(HashMap::new()),
            adding: tokio::sync::Mutex::new(()),
        })
    }

    fn publishers(&self) -> MutexGuard<'_, HashMap<(String, String), AbortHandle>> {
        // A panic while holding this lock cannot leave the map inconsistent
        // (inserts and removes only): go on with it.
        self.publishers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Serve `iface` at `path`, with properties that never change (or no
    /// properties).
    pub async fn add_constant<I: Interface>(&self, path: &str, iface: I) -> zbus::Result<()> {
        self.conn
            .object_server()
            .at(path, Std::new(iface))
            .await
            .map(|_| ())
    }

    /// Serve `iface` at `path` and publish its changed properties at once
    /// whenever `state` changes. Adding an interface that is already at
    /// `path` changes nothing; when this returns, the object is on the bus.
    pub async fn add<I, S>(
        &self,
        path: &str,
        iface: I,
        state: watch::Receiver<S>,
    ) -> zbus::Result<()>
    where
        I: Interface,
        S: Send + Sync + 'static,
    {
        let throttle = Throttle {
            min_interval: Duration::ZERO,
            props: &[],
        };
        self.add_throttled(path, iface, state, throttle).await
    }

    /// [`Registry::add`], with the properties named in `props` limited to
    /// one signal per `min_interval`; a change of any other property is
    /// published at once.
    pub async fn add_throttling<I, S>(
        &self,
        path: &str,
        iface: I,
        state: watch::Receiver<S>,
        min_interval: Duration,
        props: &'static [&'static str],
    ) -> zbus::Result<()>
    where
        I: Interface,
        S: Send + Sync + 'static,
    {
        let throttle = Throttle {
            min_interval,
            props,
        };
        self.add_throttled(path, iface, state, throttle).await
    }

    async fn add_throttled<I, S>(
        &self,
        path: &str,
        iface: I,
        mut state: watch::Receiver<S>,
        throttle: Throttle,
    ) -> zbus::Result<()>
    where
        I: Interface,
        S: Send + Sync + 'static,
    {
        let key = (path.to_owned(), I::name().to_string());
        let _adding = self.adding.lock().await;
        if self.publishers().contains_key(&key) {
            return Ok(());
        }
        let server = self.conn.object_server();
        let emitter = SignalEmitter::new(&self.conn, path.to_owned())?;
        let iface = Std::new(iface);
        state.borrow_and_update();
        let first = read_all(&iface, server, &self.conn, &emitter).await;
        server.at(path, iface).await?;
        let iref = server.interface::<_, Std<I>>(path).await?;
        let task = tokio::spawn(publish(self.conn.clone(), iref, state, first, throttle));
        self.publishers().insert(key, task.abort_handle());
        Ok(())
    }

    /// Stop publishing `path` and remove its interface `I`
    /// (`InterfacesRemoved`). `Ok(false)` if it was not there.
    pub async fn remove<I: Interface>(&self, path: &str) -> zbus::Result<bool> {
        let key = (path.to_owned(), I::name().to_string());
        if let Some(task) = self.publishers().remove(&key) {
            task.abort();
        }
        self.conn.object_server().remove::<Std<I>, _>(path).await
    }
}

/// Every property of `iface` as `GetAll` returns it; empty (and logged) if
/// the adapter fails, which none of ours does.
async fn read_all<I: Interface>(
    iface: &Std<I>,
    server: &ObjectServer,
    conn: &Connection,
    emitter: &SignalEmitter<'_>,
) -> Values {
    match iface.get_all(server, conn, None, emitter).await {
        Ok(v) => v,
        Err(e) => {
            log::warn!("{}: reading the properties failed: {e}", I::name());
            Values::new()
        }
    }
}

/// Equal D-Bus encodings. Unencodable values (none of ours) are unequal,
/// so they are published rather than lost.
fn same(a: &Value<'_>, b: &Value<'_>) -> bool {
    let ctxt = Context::new_dbus(LE, 0);
    match (
        zbus::zvariant::to_bytes(ctxt, a),
        zbus::zvariant::to_bytes(ctxt, b),
    ) {
        (Ok(x), Ok(y)) => x.bytes() == y.bytes(),
        _ => false,
    }
}

/// The properties of `cur` that are new or differ from `prev`.
fn changed<'a>(prev: &Values, cur: &'a Values) -> HashMap<&'a str, Value<'a>> {
    cur.iter()
        .filter(|(k, v)| prev.get(*k).is_none_or(|p| !same(p, v)))
        // A value holds no file descriptor here, so the clone cannot fail.
        .filter_map(|(k, v)| Some((k.as_str(), (**v).try_clone().ok()?)))
        .collect()
}

/// Which properties of an object are rate-limited, and to what.
#[derive(Debug, Clone, Copy)]
struct Throttle {
    /// At most one signal with only throttled changes per this interval.
    min_interval: Duration,
    /// The throttled properties.
    props: &'static [&'static str],
}

impl Throttle {
    /// Whether a change of exactly `names` may wait for the interval.
    fn may_wait<'a>(&self, mut names: impl Iterator<Item = &'a str>) -> bool {
        !self.min_interval.is_zero() && names.all(|n| self.props.contains(&n))
    }
}

async fn publish<I: Interface, S>(
    conn: Connection,
    iref: InterfaceRef<Std<I>>,
    mut state: watch::Receiver<S>,
    mut prev: Values,
    throttle: Throttle,
) {
    let server = conn.object_server();
    let mut last_sent: Option<Instant> = None;
    // A throttled change is waiting for the end of the interval.
    let mut pending = false;
    loop {
        let gone = match (pending, last_sent) {
            (true, Some(sent)) => {
                tokio::select! {
                    r = state.changed() => r.is_err(),
                    () = tokio::time::sleep_until(sent + throttle.min_interval) => false,
                }
            }
            _ => state.changed().await.is_err(),
        };
        if gone && !pending {
            return;
        }
        state.borrow_and_update();
        let emitter = iref.signal_emitter();
        let cur = {
            let iface = iref.get().await;
            read_all(&iface, server, &conn, emitter).await
        };
        let diff = changed(&prev, &cur);
        let due = last_sent.is_none_or(|t| t.elapsed() >= throttle.min_interval);
        if !diff.is_empty() && !gone && !due && throttle.may_wait(diff.keys().copied()) {
            pending = true;
            continue;
        }
        if !diff.is_empty() {
            if let Err(e) =
                Properties::properties_changed(emitter, I::name(), diff, Cow::Borrowed(&[])).await
            {
                log::warn!("{}: PropertiesChanged: {e}", I::name());
            }
            last_sent = Some(Instant::now());
        }
        prev = cur;
        pending = false;
        if gone {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(v: &[(&str, Value<'_>)]) -> Values {
        v.iter()
            .filter_map(|(k, v)| Some((k.to_string(), v.try_to_owned().ok()?)))
            .collect()
    }

    #[test]
    fn only_changed_values_are_published() {
        let prev = values(&[("A", Value::from(1u8)), ("B", Value::from("x"))]);
        let cur = values(&[("A", Value::from(1u8)), ("B", Value::from("y"))]);
        let d = changed(&prev, &cur);
        assert_eq!(d.len(), 1);
        assert_eq!(d.get("B"), Some(&Value::from("y")));
        assert!(changed(&cur, &cur).is_empty());
        // A property seen for the first time is published.
        assert_eq!(changed(&Values::new(), &cur).len(), 2);
    }

    #[test]
    fn only_the_named_properties_may_wait() {
        let t = Throttle {
            min_interval: Duration::from_millis(100),
            props: &["Progress", "LastProgressTime"],
        };
        assert!(t.may_wait(["Progress", "LastProgressTime"].into_iter()));
        assert!(!t.may_wait(["Progress", "Cancellable"].into_iter()));
        let none = Throttle {
            min_interval: Duration::ZERO,
            ..t
        };
        assert!(!none.may_wait(["Progress"].into_iter()));
    }

    #[test]
    fn nan_equals_itself_and_types_matter() {
        let nan = values(&[("T", Value::from(f64::NAN))]);
        assert!(changed(&nan, &nan).is_empty());
        let a = values(&[("N", Value::from(1u32))]);
        let b = values(&[("N", Value::from(1u64))]);
        assert_eq!(changed(&a, &b).len(), 1);
    }
}
