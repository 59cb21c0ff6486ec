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
pub mod dump;
pub mod fan;
pub mod firmware;
pub mod log;
pub mod method;
pub mod registry;
pub mod session;
pub mod simulation;
pub mod standard;
pub mod task;

use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use zbus::Connection;

pub use audit::{Audit, LogAudit, StoreAudit};
pub use method::Methods;
pub use registry::Registry;
pub use standard::Std;

use crate::auth::Auth;
use crate::chassis::Chassis;
use crate::cooling::{Cooling, Event};
use crate::firmware::Firmware;
use crate::hw::control::SimControl;
use crate::tasks::{TaskEvent, Tasks};

/// What the adapters are built from.
pub struct Parts {
    pub chassis: Arc<Chassis>,
    pub cooling: Arc<Cooling>,
    pub events: mpsc::UnboundedReceiver<Event>,
    pub sim: Option<Arc<dyn SimControl>>,
    /// `None` when the firmware storage could not be opened (logged).
    pub firmware: Option<Arc<Firmware>>,
    pub auth: Arc<Auth>,
    pub audit: Arc<dyn Audit>,
    pub tasks: Arc<Tasks>,
    pub task_events: mpsc::UnboundedReceiver<TaskEvent>,
    /// The event and audit logs (`Log1` objects; the audit hook writes
    /// to the audit log).
    pub logs: Arc<crate::logs::Logs>,
    /// `None` when the dump directory could not be opened (logged).
    pub dumps: Option<Arc<crate::dump::Dumps>>,
}

/// Register every object on `conn` (the name is requested afterwards by
/// the caller) and start publishing their changes.
pub async fn serve(conn: &Connection, p: Parts) -> zbus::Result<Arc<Registry>> {
    let reg = Registry::new(conn);
    let m = Methods::new(p.auth, p.audit);
    let tasks = task::TaskObjects::new(reg.clone(), m.clone(), p.tasks);
    reg.add_constant(bmcd_api::ROOT_PATH, zbus::fdo::ObjectManager)
        .await?;
    reg.add_constant(bmcd_api::ROOT_PATH, session::SessionIface { m: m.clone() })
        .await?;
    reg.add(
        bmcd_api::CHASSIS_PATH,
        chassis::ChassisIface {
            m: m.clone(),
            tasks: tasks.clone(),
            state: p.chassis.subscribe(),
            chassis: p.chassis.clone(),
        },
        p.chassis.subscribe(),
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
                logs: p.logs.clone(),
            },
            rx,
        )
        .await?;
    }
    if let Some(fw) = p.firmware {
        // The slots first, so that a client that sees the manager finds
        // them.
        for (index, slot) in fw.snapshot().slots.iter().enumerate() {
            let Some(path) = bmcd_api::firmware_path(&slot.name) else {
                ::log::error!("firmware slot {:?}: not a valid slot name", slot.name);
                continue;
            };
            reg.add(
                &path,
                firmware::FirmwareIface {
                    index,
                    state: fw.subscribe(),
                },
                fw.subscribe(),
            )
            .await?;
        }
        reg.add(
            bmcd_api::FIRMWARE_PATH,
            firmware::FirmwareManagerIface {
                m: m.clone(),
                tasks: tasks.clone(),
                state: fw.subscribe(),
                fw: fw.clone(),
            },
            fw.subscribe(),
        )
        .await?;
    }
    for (path, l) in [
        (bmcd_api::EVENT_LOG_PATH, &p.logs.event),
        (bmcd_api::AUDIT_LOG_PATH, &p.logs.audit),
    ] {
        reg.add(
            path,
            log::LogIface {
                m: m.clone(),
                log: l.clone(),
                logs: p.logs.clone(),
                stats: l.subscribe(),
            },
            l.subscribe(),
        )
        .await?;
        tokio::spawn(log::publish_appended(conn.clone(), path, l.clone()));
    }
    if let Some(d) = p.dumps {
        dump::serve(&reg, &m, &tasks, d).await?;
    }
    tokio::spawn(cooling::publish_events(conn.clone(), p.events));
    // Tasks loaded from disk are announced on the channel already: they
    // are on the bus before the name is requested only if this has run, so
    // register those now, then follow.
    let mut events = p.task_events;
    while let Ok(ev) = events.try_recv() {
        if let TaskEvent::Added(id, _) = ev {
            if let Err(e) = tasks.expose(id).await {
                ::log::error!("task {id}: {e}");
            }
        }
    }
    tokio::spawn(tasks.follow(events));
    Ok(reg)
}
