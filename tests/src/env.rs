//! A test environment: a private bus, a daemon on it, a client connection,
//! and the tools (proxies, bmcctl, busctl, gdbus) pointed at them.

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use bmcd_api::zbus;
use bmcd_api::{ChassisProxyBlocking, CoolingProxyBlocking, FanProxyBlocking};
use bmcd_api::{CoolingMode, PowerState, SimulationProxyBlocking, Transition};
use serde_json::Value;
use zbus::blocking::Connection;
use zbus::proxy::CacheProperties;
use zbus::zvariant::DynamicType;

use crate::bus::TestBus;
use crate::daemon::Daemon;
use crate::process::{run, Run};

/// Bound on any tool run by a test.
const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

/// A bus, a daemon and a client connection. Fields drop in order: the
/// daemon is stopped before its bus goes away.
pub struct Env {
    pub daemon: Daemon,
    conn: Connection,
    pub bus: TestBus,
}

/// An error reply: its D-Bus name and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawError {
    pub name: String,
    pub message: String,
}

/// Call `method` with `body` and return the error, if any, as a name and
/// a text (for calls the typed proxies cannot make: bad enum words,
/// unknown options…).
pub fn raw_call<B>(
    conn: &Connection,
    path: &str,
    iface: &str,
    method: &str,
    body: &B,
) -> Result<(), RawError>
where
    B: serde::ser::Serialize + DynamicType,
{
    match conn.call_method(Some(bmcd_api::BUS_NAME), path, Some(iface), method, body) {
        Ok(_) => Ok(()),
        Err(zbus::Error::MethodError(name, text, _)) => Err(RawError {
            name: name.to_string(),
            message: text.unwrap_or_default(),
        }),
        Err(e) => Err(RawError {
            name: "(transport)".into(),
            message: e.to_string(),
        }),
    }
}

impl Env {
    /// A daemon with the default test configuration.
    pub fn new() -> Env {
        Env::with(|_| {})
    }

    /// A daemon with the test configuration changed by `tweak`.
    pub fn with(tweak: impl FnOnce(&mut Value)) -> Env {
        let bus = TestBus::new();
        let daemon = Daemon::start_with(&bus, tweak);
        Env {
            conn: bus.connect(),
            daemon,
            bus,
        }
    }

    /// A daemon with a complete configuration of the test's own.
    pub fn with_config(cfg: Value) -> Env {
        let bus = TestBus::new();
        let daemon = Daemon::start_config(&bus, cfg);
        Env {
            conn: bus.connect(),
            daemon,
            bus,
        }
    }

    /// A daemon already started on `bus` (e.g. a system-like bus, or a
    /// daemon with extra environment variables).
    pub fn from_parts(bus: TestBus, daemon: Daemon) -> Env {
        Env {
            conn: bus.connect(),
            daemon,
            bus,
        }
    }

    /// The client connection of the test.
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// The bus address.
    pub fn address(&self) -> &str {
        self.bus.address()
    }

    /// `Chassis1` without property caching (every read asks the daemon).
    pub fn chassis(&self) -> ChassisProxyBlocking<'static> {
        ChassisProxyBlocking::builder(&self.conn)
            .cache_properties(CacheProperties::No)
            .build()
            .expect("chassis proxy")
    }

    /// `Cooling1` without property caching.
    pub fn cooling(&self) -> CoolingProxyBlocking<'static> {
        CoolingProxyBlocking::builder(&self.conn)
            .cache_properties(CacheProperties::No)
            .build()
            .expect("cooling proxy")
    }

    /// `Simulation1` without property caching.
    pub fn sim(&self) -> SimulationProxyBlocking<'static> {
        SimulationProxyBlocking::builder(&self.conn)
            .cache_properties(CacheProperties::No)
            .build()
            .expect("simulation proxy")
    }

    /// `Fan1` of the fan called `name`, without property caching.
    pub fn fan(&self, name: &str) -> FanProxyBlocking<'static> {
        FanProxyBlocking::builder(&self.conn)
            .path(bmcd_api::fan_path(name))
            .expect("fan path")
            .cache_properties(CacheProperties::No)
            .build()
            .expect("fan proxy")
    }

    /// Run the real `bmcctl` with `BMCCTL_ADDRESS` set to this bus, stdin
    /// closed (no terminal), output captured.
    pub fn bmcctl(&self, args: &[&str]) -> Run {
        bmcctl_at(self.address(), args)
    }

    /// `busctl --address=<bus> ARGS`.
    pub fn busctl(&self, args: &[&str]) -> Run {
        run(
            Command::new("busctl")
                .arg(format!("--address={}", self.address()))
                .args(args),
            TOOL_TIMEOUT,
        )
    }

    /// `gdbus SUBCOMMAND --address <bus> ARGS`.
    pub fn gdbus(&self, sub: &str, args: &[&str]) -> Run {
        run(
            Command::new("gdbus")
                .arg(sub)
                .arg("--address")
                .arg(self.address())
                .args(args),
            TOOL_TIMEOUT,
        )
    }

    /// `dbus-send --bus=<bus> --print-reply ARGS`.
    pub fn dbus_send(&self, args: &[&str]) -> Run {
        run(
            Command::new("dbus-send")
                .arg(format!("--bus={}", self.address()))
                .arg("--print-reply")
                .args(args),
            TOOL_TIMEOUT,
        )
    }

    /// Raw method call on the daemon, for inputs the proxies cannot send.
    pub fn raw_call<B>(
        &self,
        path: &str,
        iface: &str,
        method: &str,
        body: &B,
    ) -> Result<(), RawError>
    where
        B: serde::ser::Serialize + DynamicType,
    {
        raw_call(&self.conn, path, iface, method, body)
    }

    /// Assert that the daemon still runs and answers: a Ping and a
    /// property read on every interface.
    #[track_caller]
    pub fn assert_serving(&self) {
        assert!(
            self.daemon.alive(),
            "bmcd died; log:\n{}",
            self.daemon.log_tail(40)
        );
        let peer = zbus::blocking::fdo::PeerProxy::builder(&self.conn)
            .destination(bmcd_api::BUS_NAME)
            .and_then(|b| b.path(bmcd_api::CHASSIS_PATH))
            .and_then(|b| b.build())
            .expect("peer proxy");
        peer.ping().expect("bmcd does not answer Ping");
        self.chassis()
            .power_state()
            .expect("bmcd does not answer PowerState");
        self.cooling().mode().expect("bmcd does not answer Mode");
    }

    /// Every fan's name, from the daemon's object tree.
    pub fn fan_names(&self) -> Vec<String> {
        let om = zbus::blocking::fdo::ObjectManagerProxy::builder(&self.conn)
            .destination(bmcd_api::BUS_NAME)
            .and_then(|b| b.path(bmcd_api::ROOT_PATH))
            .and_then(|b| b.build())
            .expect("object manager proxy");
        let objects = om.get_managed_objects().expect("GetManagedObjects");
        let mut names: Vec<String> = objects
            .iter()
            .filter(|(_, ifaces)| ifaces.keys().any(|i| i.as_str() == bmcd_api::FAN_IFACE))
            .filter_map(|(path, _)| self.fan_by_path(path.as_str()).name().ok())
            .collect();
        names.sort();
        names
    }

    /// Wait until the chassis has settled (no pending transition) in
    /// `want`; returns the time it took.
    #[track_caller]
    pub fn wait_power(&self, want: PowerState, timeout: Duration) -> Duration {
        let start = std::time::Instant::now();
        let c = self.chassis();
        crate::wait_value(
            &format!("PowerState {want} with no pending transition"),
            timeout,
            || (c.power_state().ok(), c.pending_transition().ok()),
            |(p, t)| *p == Some(want) && *t == Some(Transition::None),
        );
        start.elapsed()
    }

    /// Wait until the cooling zone is in `want`.
    #[track_caller]
    pub fn wait_mode(&self, want: CoolingMode, timeout: Duration) {
        let c = self.cooling();
        crate::wait_value(
            &format!("cooling Mode {want}"),
            timeout,
            || c.mode().ok(),
            |m| *m == Some(want),
        );
    }

    fn fan_by_path(&self, path: &str) -> FanProxyBlocking<'static> {
        FanProxyBlocking::builder(&self.conn)
            .path(path.to_owned())
            .expect("fan path")
            .cache_properties(CacheProperties::No)
            .build()
            .expect("fan proxy")
    }
}

impl Default for Env {
    fn default() -> Self {
        Env::new()
    }
}

/// Run `bmcctl` against the bus at `address` (see [`Env::bmcctl`]).
pub fn bmcctl_at(address: &str, args: &[&str]) -> Run {
    run(
        Command::new(crate::bmcctl_bin())
            .args(args)
            .env("BMCCTL_ADDRESS", address)
            .env_remove("PAGER")
            .env("NO_COLOR", "1"),
        TOOL_TIMEOUT,
    )
}

/// An empty `a{sv}`.
pub fn no_options() -> HashMap<&'static str, zbus::zvariant::Value<'static>> {
    HashMap::new()
}
