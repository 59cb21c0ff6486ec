//! The D-Bus adapters: thin forwarders from the interfaces declared in
//! `bmcd-api` to the controllers, plus the tasks that turn controller state
//! changes into `PropertiesChanged` and signals.
//!
//! Invariants: every method validates its `options` (unknown keys are
//! `InvalidArgument`); every error is a named `org.bmcd.Error.*`; enum
//! arguments are taken as strings and parsed here so that a bad word is an
//! `InvalidArgument` naming the valid ones.

use std::collections::HashMap;
use std::sync::Arc;

use bmcd_api::{
    CoolingMode, Error, Health, PowerOffMode, PowerState, RestorePolicy, Severity, Transition,
};
use tokio::sync::{mpsc, watch};
use zbus::object_server::SignalEmitter;
use zbus::zvariant::OwnedValue;
use zbus::{interface, Connection};

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
    chassis: Arc<Chassis>,
    state: watch::Receiver<ChassisState>,
}

#[interface(name = "org.bmcd.Chassis1")]
impl ChassisIface {
    async fn power_on(&self, options: Options) -> Result<(), Error> {
        check_options(&options)?;
        self.chassis
            .request(Transition::On, PowerOffMode::Graceful, 0)
    }

    async fn power_off(&self, mode: String, timeout: u32, options: Options) -> Result<(), Error> {
        check_options(&options)?;
        let mode: PowerOffMode = parse(&mode)?;
        self.chassis.request(Transition::Off, mode, timeout)
    }

    async fn power_cycle(&self, options: Options) -> Result<(), Error> {
        check_options(&options)?;
        self.chassis
            .request(Transition::Cycle, PowerOffMode::Force, 0)
    }

    async fn reset(&self, options: Options) -> Result<(), Error> {
        check_options(&options)?;
        self.chassis
            .request(Transition::Reset, PowerOffMode::Force, 0)
    }

    async fn set_identify(&self, on: bool, seconds: u32, options: Options) -> Result<(), Error> {
        check_options(&options)?;
        self.chassis.set_identify(on, seconds).await
    }

    async fn set_restore_policy(&self, policy: String, options: Options) -> Result<(), Error> {
        check_options(&options)?;
        let p: RestorePolicy = parse(&policy)?;
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
    ) -> Result<(), Error> {
        check_options(&options)?;
        self.cooling.set_manual(level, &fans, timeout)
    }

    async fn set_auto(&self, options: Options) -> Result<(), Error> {
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
    ) -> Result<(), Error> {
        if !(-20.0..=60.0).contains(&celsius) {
            return Err(Error::InvalidArgument(format!(
                "ambient {celsius} °C is outside -20..=60"
            )));
        }
        self.sim.set_ambient(celsius);
        self.ambient_changed(&emitter).await?;
        Ok(())
    }

    async fn set_fan_fault(&self, fan: String, failed: bool) -> Result<(), Error> {
        let i = self.fan_index(&fan)?;
        self.sim
            .set_fan_fault(i, failed)
            .map_err(|e| Error::Internal(e.to_string()))
    }

    async fn set_sensor_fault(&self, sensor: String, lost: bool) -> Result<(), Error> {
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
    ) -> Result<(), Error> {
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

/// Register every object on `conn` (the name is requested afterwards by
/// the caller), and start the tasks that publish changes.
pub async fn serve(
    conn: &Connection,
    chassis: Arc<Chassis>,
    cooling: Arc<Cooling>,
    events: mpsc::UnboundedReceiver<Event>,
    sim: Option<Arc<Sim>>,
) -> zbus::Result<()> {
    let server = conn.object_server();
    server
        .at(bmcd_api::ROOT_PATH, zbus::fdo::ObjectManager)
        .await?;
    server
        .at(
            bmcd_api::CHASSIS_PATH,
            ChassisIface {
                state: chassis.subscribe(),
                chassis: chassis.clone(),
            },
        )
        .await?;
    server
        .at(
            bmcd_api::FANS_PATH,
            CoolingIface {
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
        server.at(bmcd_api::SIM_PATH, SimIface { sim }).await?;
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
