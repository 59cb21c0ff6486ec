//! `org.bmcd.Cooling1` at `/org/bmcd/fans`, and its `Event` signal.

use std::collections::HashMap;
use std::sync::Arc;

use bmcd_api::{CoolingMode, Error, Severity};
use tokio::sync::{mpsc, watch};
use zbus::interface;
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::Connection;

use super::method::{Methods, Options};
use crate::cooling::{Cooling, CoolingState, Event};

pub struct CoolingIface {
    pub m: Arc<Methods>,
    pub cooling: Arc<Cooling>,
    pub state: watch::Receiver<CoolingState>,
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
        self.m
            .call(
                &hdr,
                Some(&options),
                &[],
                format!("level={level} fans={} timeout={timeout}", fans.join(",")),
                || self.cooling.check_manual(level, &fans, timeout),
                |_, request| async move { self.cooling.set_manual(request) },
            )
            .await
    }

    async fn set_auto(
        &self,
        options: Options,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<(), Error> {
        self.m
            .act(&hdr, &options, String::new(), |_| async move {
                self.cooling.set_auto();
                Ok::<(), Error>(())
            })
            .await
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

/// Forward the cooling controller's events as `Cooling1.Event` signals.
pub async fn publish_events(conn: Connection, mut rx: mpsc::UnboundedReceiver<Event>) {
    let Ok(emitter) = SignalEmitter::new(&conn, bmcd_api::FANS_PATH) else {
        return;
    };
    while let Some(ev) = rx.recv().await {
        if let Err(e) = CoolingIface::event(&emitter, ev.severity, &ev.source, &ev.message).await {
            log::warn!("Event signal: {e}");
        }
    }
}
