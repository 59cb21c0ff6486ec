//! The D-Bus side of bmcd: thin adapters from the interfaces declared in
//! `bmcd-api` to the controllers, one file per interface, on a common core:
//!
//! - [`registry`]: adds and removes objects at run time (the ObjectManager
//!   at `/org/bmcd` announces them with `InterfacesAdded` and
//!   `InterfacesRemoved`) and publishes every property change of an object
//!   generically, from the controller state it watches;
//! - [`method`]: the one wrapper every method goes through: authorization
//!   from the message header, `options`, argument checks, typed controller
//!   errors mapped to `org.bmcd.Error.*`, and the audit hook;
//! - [`audit`]: the hook's trait and its syslog implementation;
//! - [`standard`]: [`Std`], the standard error names for protocol-level
//!   refusals (wrong signature, read-only property).
//!
//! Enum arguments are taken as strings and parsed in the adapters, so a
//! bad word is an `InvalidArgument` naming the valid ones. Nothing here
//! imports a hardware backend: the simulator is reached through
//! `hw::control::SimControl`.

pub mod audit;
pub mod chassis;
pub mod cooling;
pub mod fan;
pub mod method;
pub mod registry;
pub mod session;
pub mod simulation;
pub mod standard;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use zbus::Connection;

pub use audit::{Audit, LogAudit};
pub use method::Methods;
pub use registry::Registry;
pub use standard::Std;

use crate::auth::Auth;
use crate::chassis::Chassis;
use crate::cooling::{Cooling, Event};
use crate::hw::control::SimControl;

/// What the adapters are built from.
pub struct Parts {
    pub chassis: Arc<Chassis>,
    pub cooling: Arc<Cooling>,
    pub events: mpsc::UnboundedReceiver<Event>,
    pub sim: Option<Arc<dyn SimControl>>,
    pub auth: Arc<Auth>,
    pub audit: Arc<dyn Audit>,
}

/// Register every object on `conn` (the name is requested afterwards by
/// the caller) and start publishing their changes.
pub async fn serve(conn: &Connection, p: Parts) -> zbus::Result<Arc<Registry>> {
    let reg = Registry::new(conn);
    let m = Methods::new(p.auth, p.audit);
    let now = Duration::ZERO;
    reg.add_constant(bmcd_api::ROOT_PATH, zbus::fdo::ObjectManager)
        .await?;
    reg.add_constant(bmcd_api::ROOT_PATH, session::SessionIface { m: m.clone() })
        .await?;
    reg.add(
        bmcd_api::CHASSIS_PATH,
        chassis::ChassisIface {
            m: m.clone(),
            state: p.chassis.subscribe(),
            chassis: p.chassis.clone(),
        },
        p.chassis.subscribe(),
        now,
    )
    .await?;
    reg.add(
        bmcd_api::FANS_PATH,
        cooling::CoolingIface {
            m: m.clone(),
            state: p.cooling.subscribe(),
            cooling: p.cooling.clone(),
        },
        p.cooling.subscribe(),
        now,
    )
    .await?;
    for (index, name) in p.cooling.fan_names().iter().enumerate() {
        reg.add(
            &bmcd_api::fan_path(name),
            fan::FanIface {
                index,
                name: name.clone(),
                state: p.cooling.subscribe(),
            },
            p.cooling.subscribe(),
            now,
        )
        .await?;
    }
    if let Some(sim) = p.sim {
        let (changed, rx) = watch::channel(());
        reg.add(
            bmcd_api::SIM_PATH,
            simulation::SimIface {
                m: m.clone(),
                sim,
                changed,
            },
            rx,
            now,
        )
        .await?;
    }
    tokio::spawn(cooling::publish_events(conn.clone(), p.events));
    Ok(reg)
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
        let m = Methods::new(Auth::new(cfg.auth.clone()), Arc::new(audit::NoAudit));
        let mut xml = String::new();
        chassis::ChassisIface {
            m: m.clone(),
            state: chassis.subscribe(),
            chassis,
        }
        .introspect_to_writer(&mut xml, 0);
        cooling::CoolingIface {
            m: m.clone(),
            state: cooling.subscribe(),
            cooling: cooling.clone(),
        }
        .introspect_to_writer(&mut xml, 0);
        fan::FanIface {
            index: 0,
            name: "fan0".into(),
            state: cooling.subscribe(),
        }
        .introspect_to_writer(&mut xml, 0);
        let sim: Arc<dyn SimControl> = platform.sim.clone().unwrap();
        simulation::SimIface {
            m: m.clone(),
            sim,
            changed: watch::channel(()).0,
        }
        .introspect_to_writer(&mut xml, 0);
        session::SessionIface { m }.introspect_to_writer(&mut xml, 0);
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
