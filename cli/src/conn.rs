//! Connecting to the bus (bounded in time) and the one gateway every daemon
//! call goes through, which also re-authenticates when bmcd asks for it.

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::sync::mpsc;
use std::time::Duration;

use bmcd_api::zbus;
use bmcd_api::{ChassisProxyBlocking, CoolingProxyBlocking, Options, SessionProxyBlocking};
use zbus::blocking::connection::Builder;
use zbus::blocking::fdo::ObjectManagerProxy;
use zbus::blocking::Connection;
use zbus::proxy::CacheProperties;
use zbus::zvariant::OwnedValue;

use crate::auth;
use crate::error::{self, names, CliError, ErrCtx, Exit};

/// The properties of one object's interface, by name.
pub type Props = HashMap<String, OwnedValue>;

/// Which bus to talk to (`--address`, `$BMCCTL_ADDRESS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusAddress {
    System,
    Session,
    /// A D-Bus address such as `unix:path=/run/dbus/system_bus_socket`.
    Address(String),
}

impl BusAddress {
    pub fn parse(s: &str) -> Self {
        match s.trim() {
            "" | "system" => BusAddress::System,
            "session" => BusAddress::Session,
            other => BusAddress::Address(other.to_owned()),
        }
    }

    /// How messages name the bus.
    pub fn describe(&self) -> String {
        match self {
            BusAddress::System => "the system bus".to_owned(),
            BusAddress::Session => "the session bus".to_owned(),
            BusAddress::Address(a) => a.clone(),
        }
    }
}

/// A connection to the bus the daemon is on.
pub struct Client {
    conn: Connection,
    cx: ErrCtx,
    auth: auth::Policy,
}

/// Connect to `address`. zbus's `build()` has no timeout of its own (a bus
/// that accepts the socket but never answers would hang it), so the connect
/// runs in a helper thread and we wait for it at most `timeout`. Each method
/// call is bounded by the same `timeout` through zbus's method timeout.
/// `auth` decides how a password is obtained when bmcd asks for one.
pub fn connect(
    address: &BusAddress,
    timeout: Duration,
    auth: auth::Policy,
) -> Result<Client, CliError> {
    let cx = ErrCtx {
        bus: address.describe(),
        timeout,
    };
    let addr = address.clone();
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("bmcctl-connect".into())
        .spawn(move || {
            let built = builder(&addr).and_then(|b| b.method_timeout(timeout).build());
            // The receiver may have given up already; nothing to do then.
            let _ = tx.send(built);
        });
    if let Err(e) = spawned {
        return Err(CliError::new(
            names::CONNECT,
            format!("cannot start the connection thread: {e}"),
            Exit::Failure,
        ));
    }
    match rx.recv_timeout(timeout) {
        Ok(Ok(conn)) => Ok(Client { conn, cx, auth }),
        Ok(Err(e)) => Err(error::from_zbus(&e, &cx)),
        Err(mpsc::RecvTimeoutError::Timeout) => Err(CliError::new(
            names::TIMEOUT,
            format!(
                "could not connect to {} within {} s",
                cx.bus,
                timeout.as_secs()
            ),
            Exit::Timeout,
        )),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(CliError::new(
            names::CONNECT,
            format!("cannot connect to {}", cx.bus),
            Exit::Failure,
        )),
    }
}

fn builder(addr: &BusAddress) -> zbus::Result<Builder<'static>> {
    match addr {
        BusAddress::System => Builder::system(),
        BusAddress::Session => Builder::session(),
        BusAddress::Address(a) => Builder::address(a.as_str()),
    }
}

impl Client {
    /// Every call to the daemon goes through here: it runs `f` on the
    /// connection and maps any failure to a [`CliError`] with its exit code.
    ///
    /// When bmcd answers `org.bmcd.Error.AuthenticationRequired`, a password
    /// is obtained as [`auth`] decides, `Session1.Authenticate` is called on
    /// this same connection (the grant belongs to it and, by default, covers
    /// one sensitive call), and `f` runs once more; a second
    /// `AuthenticationRequired` is reported as it is (exit 3).
    ///
    /// `f` may therefore run twice. bmcd refuses a sensitive call before it
    /// changes anything, so a closure whose sensitive call is its first
    /// mutating call is safe to repeat; keep it that way.
    /// The path and properties of every bmcd object that implements
    /// `iface`, from one `GetManagedObjects`; the others (intermediate
    /// nodes with empty dicts, other interfaces) are skipped.
    pub fn objects_with(&self, iface: &str) -> Result<Vec<(String, Props)>, CliError> {
        let objects = self.call(|c| {
            object_manager(c)?
                .get_managed_objects()
                .map_err(|e| bmcd_api::Error::from(zbus::Error::from(e)))
        })?;
        Ok(objects
            .into_iter()
            .filter_map(|(path, ifaces)| {
                let props = ifaces
                    .into_iter()
                    .find(|(name, _)| name.as_str() == iface)?
                    .1;
                Some((path.to_string(), props))
            })
            .collect())
    }

    pub fn call<T>(
        &self,
        mut f: impl FnMut(&Connection) -> bmcd_api::Result<T>,
    ) -> Result<T, CliError> {
        match f(&self.conn) {
            Ok(v) => Ok(v),
            Err(e) => {
                let e = error::from_api(&e, &self.cx);
                if !matches!(
                    e.as_daemon(),
                    Some(bmcd_api::Error::AuthenticationRequired(_))
                ) {
                    return Err(e);
                }
                self.reauthenticate()?;
                f(&self.conn).map_err(|e| error::from_api(&e, &self.cx))
            }
        }
    }

    /// The connection itself (for reading signals; calls go through
    /// [`Client::call`]).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Get a password and authenticate this connection with it.
    fn reauthenticate(&self) -> Result<(), CliError> {
        let mut passwords = auth::passwords(self.auth)?;
        let session = session(&self.conn).map_err(|e| error::from_zbus(&e, &self.cx))?;
        auth::reauthenticate(
            passwords.as_mut(),
            &mut || self.user_label(),
            // zbus copies the password into the message buffer it sends;
            // that buffer is freed without being wiped (out of our reach).
            &mut |password| {
                session
                    .authenticate(password, Options::new())
                    .map_err(|e| error::from_api(&e, &self.cx))
            },
            &mut io::stderr(),
        )
    }

    /// Every property of `iface` on the object at `path`, in one
    /// `org.freedesktop.DBus.Properties.GetAll` call.
    pub fn get_all(&self, path: &'static str, iface: &'static str) -> Result<Properties, CliError> {
        let values = self.call(|c| Ok(get_all(c, path, iface)?))?;
        Ok(Properties { iface, values })
    }

    /// `WhoAmI` through this connection: uid, user name, role.
    pub fn who_am_i(&self) -> Result<(u32, String, String), CliError> {
        self.call(|c| session(c)?.who_am_i())
    }

    /// The user for the password prompt: the name bmcd knows, else its uid,
    /// else our own uid. Asked directly, not through [`Client::call`]
    /// (which calls this).
    fn user_label(&self) -> String {
        let who = session(&self.conn)
            .map_err(bmcd_api::Error::from)
            .and_then(|s| s.who_am_i());
        match who {
            Ok((_, name, _)) if !name.is_empty() => name,
            Ok((uid, _, _)) => format!("uid {uid}"),
            Err(_) => match std::fs::metadata("/proc/self") {
                Ok(m) => format!("uid {}", m.uid()),
                Err(_) => "your user".to_owned(),
            },
        }
    }
}

/// The properties of one interface of one object, as one `GetAll` answered.
#[derive(Debug)]
pub struct Properties {
    iface: &'static str,
    values: HashMap<String, OwnedValue>,
}

impl Properties {
    /// Take the property `name` as a `T`. A property bmcd did not send, or
    /// sent with another type or an unknown enum word, is a protocol error
    /// naming it (a bmcd that does not match this bmcctl).
    pub fn take<T>(&mut self, name: &str) -> Result<T, CliError>
    where
        T: TryFrom<OwnedValue>,
        T::Error: std::fmt::Display,
    {
        // The generic part is kept to the conversion (one copy per type).
        let (v, signature) = self.remove(name)?;
        T::try_from(v).map_err(|e| self.unexpected(name, &signature, &e))
    }

    fn remove(&mut self, name: &str) -> Result<(OwnedValue, String), CliError> {
        match self.values.remove(name) {
            Some(v) => {
                let signature = v.value_signature().to_string();
                Ok((v, signature))
            }
            None => Err(self.protocol(name, "bmcd did not send this property")),
        }
    }

    fn unexpected(&self, name: &str, signature: &str, e: &dyn std::fmt::Display) -> CliError {
        self.protocol(
            name,
            &format!("unexpected value of type '{signature}': {e}"),
        )
    }

    fn protocol(&self, name: &str, what: &str) -> CliError {
        CliError::new(
            names::PROTOCOL,
            format!("{}.{name}: {what}", self.iface),
            Exit::Failure,
        )
    }
}

/// Proxies without property caching: a CLI reads each value once, and
/// caching would subscribe to signals and fetch everything up front.
pub fn chassis(conn: &Connection) -> zbus::Result<ChassisProxyBlocking<'static>> {
    ChassisProxyBlocking::builder(conn)
        .cache_properties(CacheProperties::No)
        .build()
}

pub fn cooling(conn: &Connection) -> zbus::Result<CoolingProxyBlocking<'static>> {
    CoolingProxyBlocking::builder(conn)
        .cache_properties(CacheProperties::No)
        .build()
}

pub fn session(conn: &Connection) -> zbus::Result<SessionProxyBlocking<'static>> {
    SessionProxyBlocking::builder(conn)
        .cache_properties(CacheProperties::No)
        .build()
}

/// A method call whose one argument is a string (`Properties.GetAll`,
/// `AddMatch`, `GetNameOwner`). One non-generic function for all of them
/// keeps a single copy of zbus's generic call code in the binary.
pub fn call_str(
    c: &Connection,
    dest: &str,
    path: &str,
    iface: &str,
    method: &str,
    arg: &str,
) -> zbus::Result<zbus::message::Message> {
    c.call_method(Some(dest), path, Some(iface), method, &(arg,))
}

/// `GetAll` of `iface` at `path` of bmcd.
pub fn get_all(
    c: &Connection,
    path: &str,
    iface: &str,
) -> zbus::Result<std::collections::HashMap<String, zbus::zvariant::OwnedValue>> {
    let m = call_str(
        c,
        bmcd_api::BUS_NAME,
        path,
        "org.freedesktop.DBus.Properties",
        "GetAll",
        iface,
    )?;
    m.body().deserialize()
}

/// Sort `v` in place, stable; a plain insertion sort (lists of a few dozen
/// entries at most), much smaller in the binary than `sort_by`.
pub fn sort_small<T>(v: &mut [T], less: impl Fn(&T, &T) -> bool) {
    for i in 1..v.len() {
        let mut j = i;
        while j > 0 && less(&v[j], &v[j - 1]) {
            v.swap(j, j - 1);
            j -= 1;
        }
    }
}

pub fn object_manager(conn: &Connection) -> zbus::Result<ObjectManagerProxy<'static>> {
    ObjectManagerProxy::builder(conn)
        .destination(bmcd_api::BUS_NAME)?
        .path(bmcd_api::ROOT_PATH)?
        .cache_properties(CacheProperties::No)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_ASK: auth::Policy = auth::Policy {
        password_stdin: false,
        no_ask_password: true,
        json: false,
        stdin_is_terminal: false,
    };

    #[test]
    fn small_sort_is_stable() {
        let mut v = [(3, 'a'), (1, 'b'), (3, 'c'), (2, 'd'), (1, 'e')];
        sort_small(&mut v, |a, b| a.0 < b.0);
        assert_eq!(v, [(1, 'b'), (1, 'e'), (2, 'd'), (3, 'a'), (3, 'c')]);
        let mut e: [u8; 0] = [];
        sort_small(&mut e, |a, b| a < b);
    }

    #[test]
    fn properties_are_taken_typed_or_named_in_the_error() {
        let mut values = HashMap::new();
        let ov = |v: zbus::zvariant::Value<'static>| v.try_into_owned().unwrap();
        values.insert("PowerState".to_owned(), ov("On".into()));
        values.insert("Rpm".to_owned(), ov(5400u32.into()));
        values.insert("Mode".to_owned(), ov("Sideways".into()));
        let mut p = Properties {
            iface: "org.bmcd.Chassis1",
            values,
        };
        assert_eq!(
            p.take::<bmcd_api::PowerState>("PowerState").ok(),
            Some(bmcd_api::PowerState::On)
        );
        let e = p.take::<String>("Rpm").err().unwrap();
        assert_eq!((e.name.as_str(), e.exit), (names::PROTOCOL, Exit::Failure));
        assert!(
            e.message
                .starts_with("org.bmcd.Chassis1.Rpm: unexpected value of type 'u'"),
            "{}",
            e.message
        );
        let e = p.take::<bmcd_api::CoolingMode>("Mode").err().unwrap();
        assert!(e.message.contains("Sideways"), "{}", e.message);
        let e = p.take::<u64>("IdentifyExpires").err().unwrap();
        assert_eq!(
            e.message,
            "org.bmcd.Chassis1.IdentifyExpires: bmcd did not send this property"
        );
    }

    #[test]
    fn addresses() {
        assert_eq!(BusAddress::parse("system"), BusAddress::System);
        assert_eq!(BusAddress::parse(""), BusAddress::System);
        assert_eq!(BusAddress::parse("session"), BusAddress::Session);
        let a = BusAddress::parse("unix:path=/tmp/x");
        assert_eq!(a.describe(), "unix:path=/tmp/x");
        assert_eq!(BusAddress::System.describe(), "the system bus");
    }

    #[test]
    fn connecting_to_a_missing_socket_fails_fast() {
        let a = BusAddress::parse("unix:path=/nonexistent/bmcctl-test-socket");
        let r = connect(&a, Duration::from_secs(5), NO_ASK);
        let e = r.err().map(|e| (e.exit, e.message));
        let (exit, msg) = e.unwrap_or((Exit::Ok, String::new()));
        assert_eq!(exit, Exit::Failure);
        assert!(msg.contains("/nonexistent/bmcctl-test-socket"), "{msg}");
    }

    #[test]
    fn connecting_to_a_silent_socket_times_out() {
        let dir = std::env::temp_dir().join(format!("bmcctl-silent-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("sock");
        let _ = std::fs::remove_file(&path);
        // Accepts connections (the kernel does) but never answers.
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let a = BusAddress::parse(&format!("unix:path={}", path.display()));
        let start = std::time::Instant::now();
        let e = connect(&a, Duration::from_millis(500), NO_ASK)
            .err()
            .unwrap();
        assert_eq!(e.exit, Exit::Timeout);
        assert!(start.elapsed() < Duration::from_secs(3));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
