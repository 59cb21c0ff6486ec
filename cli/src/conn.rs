//! Connecting to the bus (bounded in time) and the one gateway every daemon
//! call goes through.

use std::sync::mpsc;
use std::time::Duration;

use bmcd_api::zbus;
use bmcd_api::{ChassisProxyBlocking, CoolingProxyBlocking};
use zbus::blocking::connection::Builder;
use zbus::blocking::fdo::ObjectManagerProxy;
use zbus::blocking::Connection;
use zbus::proxy::CacheProperties;

use crate::error::{self, names, CliError, ErrCtx, Exit};

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
}

/// Connect to `address`. zbus's `build()` has no timeout of its own (a bus
/// that accepts the socket but never answers would hang it), so the connect
/// runs in a helper thread and we wait for it at most `timeout`. Each method
/// call is bounded by the same `timeout` through zbus's method timeout.
pub fn connect(address: &BusAddress, timeout: Duration) -> Result<Client, CliError> {
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
        Ok(Ok(conn)) => Ok(Client { conn, cx }),
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
    /// This is the place for policies that apply to every call (a later
    /// change retries once after password re-authentication when the daemon
    /// answers `org.bmcd.Error.AuthenticationRequired`).
    pub fn call<T>(
        &self,
        mut f: impl FnMut(&Connection) -> bmcd_api::Result<T>,
    ) -> Result<T, CliError> {
        f(&self.conn).map_err(|e| error::from_api(&e, &self.cx))
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
        let r = connect(&a, Duration::from_secs(5));
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
        let e = connect(&a, Duration::from_millis(500)).err().unwrap();
        assert_eq!(e.exit, Exit::Timeout);
        assert!(start.elapsed() < Duration::from_secs(3));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
