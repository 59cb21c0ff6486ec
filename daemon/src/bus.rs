//! The D-Bus adapters: thin forwarders from the interfaces declared in
//! `bmcd-api` to the controllers, plus the tasks that turn controller state
//! changes into `PropertiesChanged` and signals.
//!
//! Invariants: every method starts with `self.auth.authorize(&hdr, IFACE,
//! "Method")` (roles and re-authentication, see `auth`), before it reads its
//! arguments or acts, so a refused call changes nothing; every method
//! validates its `options` (unknown keys are
//! `InvalidArgument`); every error is a named `org.bmcd.Error.*`; enum
//! arguments are taken as strings and parsed here so that a bad word is an
//! `InvalidArgument` naming the valid ones.

use std::collections::HashMap;
use std::sync::Arc;

use bmcd_api::{
    CoolingMode, Error, Health, PowerOffMode, PowerState, RestorePolicy, Severity, Transition,
    CHASSIS_IFACE, COOLING_IFACE, SESSION_IFACE, SIMULATION_IFACE,
};
use tokio::sync::{mpsc, watch};
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::zvariant::OwnedValue;
use zbus::{interface, Connection};
use zeroize::Zeroizing;

use crate::auth::Auth;

use crate::chassis::{Chassis, ChassisState};
use crate::cooling::{Cooling, CoolingState, Event};
use crate::hw::sim::Sim;

type Options = HashMap<String, OwnedValue>;

/// No option is defined yet: refuse any, so that a client relying on one
/// learns it is not supported instead of being silently ignored.
fn check_options(options: &Options) -> Result<(), Error> {
    match options.keys().next() {
        None => Ok(()),
        Some(k) => Err(Error::InvalidArgument(format!("unknown option '{k}'"))),
    }
}

fn parse<T: std::str::FromStr<Err = bmcd_api::UnknownVariant>>(s: &str) -> Result<T, Error> {
    s.parse()
        .map_err(|e: bmcd_api::UnknownVariant| Error::InvalidArgument(e.to_string()))
}

pub struct ChassisIface {
    auth: Arc<Auth>,
    chassis: Arc<Chassis>,
    state: watch::Receiver<ChassisState>,
}

#[interface(name = "org.bmcd.Chassis1")]
impl ChassisIface {
    async fn power_on(
        &self,
        options: Options,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<(), Error> {
        self.auth.authorize(&hdr, CHASSIS_IFACE, "PowerOn").await?;
        check_options(&options)?;
        self.chassis
            .request(Transition::On, PowerOffMode::Graceful, 0)
    }

    async fn power_off(
        &self,
        mode: String,
        timeout: u32,
        options: Options,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<(), Error> {
        self.auth.authorize(&hdr, CHASSIS_IFACE, "PowerOff").await?;
        check_options(&options)?;
        let mode: PowerOffMode = parse(&mode)?;
        self.chassis.request(Transition::Off, mode, timeout)
    }

    async fn power_cycle(
        &self,
        options: Options,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<(), Error> {
        self.auth
            .authorize(&hdr, CHASSIS_IFACE, "PowerCycle")
            .await?;
        check_options(&options)?;
        self.chassis
            .request(Transition::Cycle, PowerOffMode::Force, 0)
    }

    async fn reset(&self, options: Options, #[zbus(header)] hdr: Header<'_>) -> Result<(), Error> {
        self.auth.authorize(&hdr, CHASSIS_IFACE, "Reset").await?;
        check_options(&options)?;
        self.chassis
            .request(Transition::Reset, PowerOffMode::Force, 0)
    }

    async fn set_identify(
        &self,
        on: bool,
        seconds: u32,
        options: Options,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<(), Error> {
        self.auth
            .authorize(&hdr, CHASSIS_IFACE, "SetIdentify")
            .await?;
        check_options(&options)?;
        self.chassis.set_identify(on, seconds).await
    }

    async fn set_restore_policy(
        &self,
        policy: String,
        options: Options,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<(), Error> {
        let (_, p) = self
            .auth
            .authorize_with(&hdr, CHASSIS_IFACE, "SetRestorePolicy", || {
                check_options(&options)?;
                parse::<RestorePolicy>(&policy)
            })
            .await?;
        self.chassis.set_policy(p)
    }

    #[zbus(property)]
    fn power_state(&self) -> PowerState {
        self.state.borrow().power
    }
    #[zbus(property)]
    fn pending_transition(&self) -> Transition {
        self.state.borrow().pending
    }
    #[zbus(property)]
    fn last_state_change_time(&self) -> u64 {
        self.state.borrow().last_change_ms
    }
    #[zbus(property)]
    fn restore_policy(&self) -> RestorePolicy {
        self.state.borrow().policy
    }
    #[zbus(property)]
    fn identify_active(&self) -> bool {
        self.state.borrow().identify
    }
    #[zbus(property)]
    fn identify_expires(&self) -> u64 {
        self.state.borrow().identify_expires_ms
    }
}

pub struct FanIface {
    index: usize,
    name: String,
    state: watch::Receiver<CoolingState>,
}

impl FanIface {
    fn get<T>(&self, f: impl Fn(&crate::cooling::FanState) -> T, default: T) -> T {
        self.state
            .borrow()
            .fans
            .get(self.index)
            .map(f)
            .unwrap_or(default)
    }
}

#[interface(name = "org.bmcd.Fan1")]
impl FanIface {
    #[zbus(property)]
    fn name(&self) -> String {
        self.name.clone()
    }
    #[zbus(property)]
    fn rpm(&self) -> u32 {
        self.get(|f| f.rpm, 0)
    }
    #[zbus(property)]
    fn pwm(&self) -> u8 {
        self.get(|f| f.pwm, 0)
    }
    #[zbus(property)]
    fn present(&self) -> bool {
        self.get(|f| f.present, false)
    }
    #[zbus(property)]
    fn health(&self) -> Health {
        self.get(|f| f.health, Health::Failed)
    }
}

pub struct CoolingIface {
    auth: Arc<Auth>,
    cooling: Arc<Cooling>,
    state: watch::Receiver<CoolingState>,
}

#[interface(name = "org.bmcd.Cooling1")]
impl CoolingIface {
    async fn set_manual(
        &self,
        level: u8,
        fans: Vec<String>,
        timeout: u32,
        options: Options,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<(), Error> {
        let (_, request) = self
            .auth
            .authorize_with(&hdr, COOLING_IFACE, "SetManual", || {
                check_options(&options)?;
                self.cooling.check_manual(level, &fans, timeout)
            })
            .await?;
        self.cooling.set_manual(request)
    }

    async fn set_auto(
        &self,
        options: Options,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<(), Error> {
        self.auth.authorize(&hdr, COOLING_IFACE, "SetAuto").await?;
        check_options(&options)?;
        self.cooling.set_auto();
        Ok(())
    }

    #[zbus(signal)]
    async fn event(
        emitter: &SignalEmitter<'_>,
        severity: Severity,
        source: &str,
        message: &str,
    ) -> zbus::Result<()>;

    #[zbus(property)]
    fn mode(&self) -> CoolingMode {
        self.state.borrow().mode
    }
    #[zbus(property)]
    fn manual_level(&self) -> u8 {
        self.state.borrow().manual_level
    }
    #[zbus(property)]
    fn manual_fans(&self) -> Vec<String> {
        self.state.borrow().manual_fans.clone()
    }
    #[zbus(property)]
    fn manual_expires(&self) -> u64 {
        self.state.borrow().manual_expires_ms
    }
    #[zbus(property)]
    fn auto_level(&self) -> u8 {
        self.state.borrow().auto_level
    }
    #[zbus(property)]
    fn failsafe_level(&self) -> u8 {
        self.state.borrow().failsafe_level
    }
    #[zbus(property)]
    fn failsafe_reason(&self) -> String {
        self.state.borrow().failsafe_reason.clone()
    }
    #[zbus(property)]
    fn temperatures(&self) -> HashMap<String, f64> {
        self.state.borrow().temps.iter().cloned().collect()
    }
}

pub struct SimIface {
    auth: Arc<Auth>,
    sim: Arc<Sim>,
}

impl SimIface {
    fn fan_index(&self, fan: &str) -> Result<usize, Error> {
        let names = self.sim.fan_names();
        names.iter().position(|n| n == fan).ok_or_else(|| {
            Error::NotFound(format!("no fan named '{fan}' (fans: {})", names.join(", ")))
        })
    }
}

#[interface(name = "org.bmcd.Simulation1")]
impl SimIface {
    async fn set_ambient(
        &self,
        celsius: f64,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<(), Error> {
        self.auth
            .authorize(&hdr, SIMULATION_IFACE, "SetAmbient")
            .await?;
        if !(-20.0..=60.0).contains(&celsius) {
            return Err(Error::InvalidArgument(format!(
                "ambient {celsius} °C is outside -20..=60"
            )));
        }
        self.sim.set_ambient(celsius);
        self.ambient_changed(&emitter).await?;
        Ok(())
    }

    async fn set_fan_fault(
        &self,
        fan: String,
        failed: bool,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<(), Error> {
        self.auth
            .authorize(&hdr, SIMULATION_IFACE, "SetFanFault")
            .await?;
        let i = self.fan_index(&fan)?;
        self.sim
            .set_fan_fault(i, failed)
            .map_err(|e| Error::Internal(e.to_string()))
    }

    async fn set_sensor_fault(
        &self,
        sensor: String,
        lost: bool,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<(), Error> {
        self.auth
            .authorize(&hdr, SIMULATION_IFACE, "SetSensorFault")
            .await?;
        let names = self.sim.sensor_names();
        let i = names.iter().position(|n| *n == sensor).ok_or_else(|| {
            Error::NotFound(format!(
                "no sensor named '{sensor}' (sensors: {})",
                names.join(", ")
            ))
        })?;
        self.sim
            .set_sensor_fault(i, lost)
            .map_err(|e| Error::Internal(e.to_string()))
    }

    async fn set_host_responsive(
        &self,
        responsive: bool,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<(), Error> {
        self.auth
            .authorize(&hdr, SIMULATION_IFACE, "SetHostResponsive")
            .await?;
        self.sim.set_host_responsive(responsive);
        self.host_responsive_changed(&emitter).await?;
        Ok(())
    }

    #[zbus(property)]
    fn ambient(&self) -> f64 {
        self.sim.ambient()
    }
    #[zbus(property)]
    fn host_responsive(&self) -> bool {
        self.sim.host_responsive()
    }
}

/// `org.bmcd.Session1` at `/org/bmcd`: re-authentication and identity.
pub struct SessionIface {
    auth: Arc<Auth>,
}

#[interface(name = "org.bmcd.Session1")]
impl SessionIface {
    /// Run PAM for the caller's own user; on success the caller's
    /// connection may make sensitive calls (one, or for a while).
    async fn authenticate(
        &self,
        password: String,
        options: Options,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<(), Error> {
        // Wiped when dropped, whichever way this returns.
        let password = Zeroizing::new(password);
        let caller = self
            .auth
            .authorize(&hdr, SESSION_IFACE, "Authenticate")
            .await?;
        check_options(&options)?;
        self.auth.authenticate(&caller, password).await
    }

    /// The caller's uid, user name ("" if it has none) and role.
    #[zbus(name = "WhoAmI")]
    async fn who_am_i(
        &self,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<(u32, String, String), Error> {
        let caller = self.auth.authorize(&hdr, SESSION_IFACE, "WhoAmI").await?;
        Ok(self.auth.who(&caller))
    }
}

/// Register every object on `conn` (the name is requested afterwards by
/// the caller), and start the tasks that publish changes.
pub async fn serve(
    conn: &Connection,
    chassis: Arc<Chassis>,
    cooling: Arc<Cooling>,
    events: mpsc::UnboundedReceiver<Event>,
    sim: Option<Arc<Sim>>,
    auth: Arc<Auth>,
) -> zbus::Result<()> {
    let server = conn.object_server();
    server
        .at(bmcd_api::ROOT_PATH, zbus::fdo::ObjectManager)
        .await?;
    server
        .at(bmcd_api::ROOT_PATH, SessionIface { auth: auth.clone() })
        .await?;
    server
        .at(
            bmcd_api::CHASSIS_PATH,
            ChassisIface {
                auth: auth.clone(),
                state: chassis.subscribe(),
                chassis: chassis.clone(),
            },
        )
        .await?;
    server
        .at(
            bmcd_api::FANS_PATH,
            CoolingIface {
                auth: auth.clone(),
                state: cooling.subscribe(),
                cooling: cooling.clone(),
            },
        )
        .await?;
    for (index, name) in cooling.fan_names().iter().enumerate() {
        server
            .at(
                bmcd_api::fan_path(name),
                FanIface {
                    index,
                    name: name.clone(),
                    state: cooling.subscribe(),
                },
            )
            .await?;
    }
    if let Some(sim) = sim {
        server
            .at(bmcd_api::SIM_PATH, SimIface { auth, sim })
            .await?;
    }

    tokio::spawn(publish_chassis(conn.clone(), chassis.subscribe()));
    tokio::spawn(publish_cooling(
        conn.clone(),
        cooling.subscribe(),
        cooling.fan_names().to_vec(),
    ));
    tokio::spawn(publish_events(conn.clone(), events));
    Ok(())
}

macro_rules! emit_if_changed {
    ($iface:expr, $emitter:expr, $prev:expr, $cur:expr, $( $field:ident => $method:ident ),+ $(,)?) => {
        $(
            if $prev.$field != $cur.$field {
                if let Err(e) = $iface.$method($emitter).await {
                    log::warn!("PropertiesChanged: {e}");
                }
            }
        )+
    };
}

async fn publish_chassis(conn: Connection, mut rx: watch::Receiver<ChassisState>) {
    let Ok(iref) = conn
        .object_server()
        .interface::<_, ChassisIface>(bmcd_api::CHASSIS_PATH)
        .await
    else {
        log::error!("chassis interface missing; no PropertiesChanged");
        return;
    };
    let mut prev = rx.borrow_and_update().clone();
    while rx.changed().await.is_ok() {
        let cur = rx.borrow_and_update().clone();
        let iface = iref.get().await;
        let em = iref.signal_emitter();
        emit_if_changed!(iface, em, prev, cur,
            power => power_state_changed,
            pending => pending_transition_changed,
            last_change_ms => last_state_change_time_changed,
            policy => restore_policy_changed,
            identify => identify_active_changed,
            identify_expires_ms => identify_expires_changed,
        );
        prev = cur;
    }
}

async fn publish_cooling(
    conn: Connection,
    mut rx: watch::Receiver<CoolingState>,
    fan_names: Vec<String>,
) {
    let server = conn.object_server();
    let Ok(zone) = server
        .interface::<_, CoolingIface>(bmcd_api::FANS_PATH)
        .await
    else {
        log::error!("cooling interface missing; no PropertiesChanged");
        return;
    };
    let mut fans = Vec::new();
    for n in &fan_names {
        match server.interface::<_, FanIface>(bmcd_api::fan_path(n)).await {
            Ok(r) => fans.push(r),
            Err(e) => log::error!("fan {n}: {e}"),
        }
    }
    let mut prev = rx.borrow_and_update().clone();
    while rx.changed().await.is_ok() {
        let cur = rx.borrow_and_update().clone();
        {
            let iface = zone.get().await;
            let em = zone.signal_emitter();
            emit_if_changed!(iface, em, prev, cur,
                mode => mode_changed,
                manual_level => manual_level_changed,
                manual_fans => manual_fans_changed,
                manual_expires_ms => manual_expires_changed,
                auto_level => auto_level_changed,
                failsafe_level => failsafe_level_changed,
                failsafe_reason => failsafe_reason_changed,
            );
            // NaN != NaN: compare the bit patterns so an unreadable sensor
            // does not re-announce itself every period.
            let same_temps = prev.temps.len() == cur.temps.len()
                && prev
                    .temps
                    .iter()
                    .zip(&cur.temps)
                    .all(|(a, b)| a.0 == b.0 && a.1.to_bits() == b.1.to_bits());
            if !same_temps {
                if let Err(e) = iface.temperatures_changed(em).await {
                    log::warn!("PropertiesChanged: {e}");
                }
            }
        }
        for (i, fref) in fans.iter().enumerate() {
            let (Some(p), Some(c)) = (prev.fans.get(i), cur.fans.get(i)) else {
                continue;
            };
            if p == c {
                continue;
            }
            let iface = fref.get().await;
            let em = fref.signal_emitter();
            emit_if_changed!(iface, em, p, c,
                rpm => rpm_changed,
                pwm => pwm_changed,
                present => present_changed,
                health => health_changed,
            );
        }
        prev = cur;
    }
}

async fn publish_events(conn: Connection, mut rx: mpsc::UnboundedReceiver<Event>) {
    let Ok(emitter) = SignalEmitter::new(&conn, bmcd_api::FANS_PATH) else {
        return;
    };
    while let Some(ev) = rx.recv().await {
        if let Err(e) = CoolingIface::event(&emitter, ev.severity, &ev.source, &ev.message).await {
            log::warn!("Event signal: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::policy::POLICY;
    use std::collections::BTreeSet;
    use zbus::object_server::Interface;

    /// (interface, method) pairs of introspection XML.
    fn methods(xml: &str) -> BTreeSet<(String, String)> {
        let attr = |line: &str, tag: &str| {
            line.trim()
                .strip_prefix(tag)
                .and_then(|r| r.split('"').next())
                .map(str::to_owned)
        };
        let mut iface = String::new();
        let mut out = BTreeSet::new();
        for line in xml.lines() {
            if let Some(i) = attr(line, "<interface name=\"") {
                iface = i;
            } else if let Some(m) = attr(line, "<method name=\"") {
                out.insert((iface.clone(), m));
            }
        }
        out
    }

    /// Every method the daemon serves has exactly one row in the policy
    /// table, and every row names a served method.
    #[tokio::test]
    async fn policy_covers_every_served_method() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../config/bmcd.json"))
                .unwrap();
        let cfg = crate::config::Config::parse(&text).unwrap();
        let platform = crate::hw::build(&cfg.platform).unwrap();
        let dir = std::env::temp_dir().join(format!("bmcd-policy-test-{}", std::process::id()));
        let store = Arc::new(crate::store::Store::open(&dir).unwrap());
        let chassis = Chassis::new(platform.power.clone(), cfg.chassis.clone(), store)
            .await
            .unwrap();
        let (cooling, _events) = Cooling::new(
            platform.fans.clone(),
            platform.temps.clone(),
            cfg.cooling.clone(),
        );
        let auth = Auth::new(cfg.auth.clone());
        let mut xml = String::new();
        ChassisIface {
            auth: auth.clone(),
            state: chassis.subscribe(),
            chassis,
        }
        .introspect_to_writer(&mut xml, 0);
        CoolingIface {
            auth: auth.clone(),
            state: cooling.subscribe(),
            cooling: cooling.clone(),
        }
        .introspect_to_writer(&mut xml, 0);
        FanIface {
            index: 0,
            name: "fan0".into(),
            state: cooling.subscribe(),
        }
        .introspect_to_writer(&mut xml, 0);
        SimIface {
            auth: auth.clone(),
            sim: platform.sim.clone().unwrap(),
        }
        .introspect_to_writer(&mut xml, 0);
        SessionIface { auth }.introspect_to_writer(&mut xml, 0);
        let _ = std::fs::remove_dir_all(&dir);

        let served = methods(&xml);
        assert!(served.len() >= 10, "{xml}");
        let table: BTreeSet<(String, String)> = POLICY
            .iter()
            .map(|r| (r.interface.to_owned(), r.method.to_owned()))
            .collect();
        assert_eq!(served, table, "introspection and policy table differ");
    }
}
