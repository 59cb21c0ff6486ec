//! `org.bmcd.Simulation1` at `/org/bmcd/sim`: the simulated platform's
//! knobs, through [`SimControl`] (no dependency on the sim backend).

use std::sync::Arc;

use bmcd_api::Error;
use tokio::sync::watch;
use zbus::interface;
use zbus::message::Header;

use super::method::{Methods, Options};
use crate::hw::control::{SimControl, SimError};

impl From<SimError> for Error {
    fn from(e: SimError) -> Error {
        let text = e.to_string();
        match e {
            SimError::AmbientOutOfRange(_) => Error::InvalidArgument(text),
            SimError::NoSuchFan(..) | SimError::NoSuchSensor(..) => Error::NotFound(text),
            SimError::Hardware(_) => Error::Internal(text),
        }
    }
}

/// The most entries one `AppendEvents` call appends.
pub const MAX_APPEND: u32 = 100_000;

pub struct SimIface {
    pub m: Arc<Methods>,
    pub sim: Arc<dyn SimControl>,
    /// Bumped after every change, so the registry publishes the properties.
    pub changed: watch::Sender<()>,
    /// `AppendEvents` writes to the event log.
    pub logs: Arc<crate::logs::Logs>,
}

impl SimIface {
    fn touched(&self) {
        self.changed.send_modify(|_| ());
    }
}

#[interface(name = "org.bmcd.Simulation1")]
impl SimIface {
    async fn set_ambient(
        &self,
        celsius: f64,
        options: Options,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<(), Error> {
        self.m
            .act(
                &hdr,
                &options,
                format!("celsius={celsius}"),
                |_| async move {
                    self.sim.set_ambient(celsius)?;
                    self.touched();
                    Ok::<(), SimError>(())
                },
            )
            .await
    }

    async fn set_fan_fault(
        &self,
        fan: String,
        failed: bool,
        options: Options,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<(), Error> {
        self.m
            .act(
                &hdr,
                &options,
                format!("fan={fan} failed={failed}"),
                |_| async move { self.sim.set_fan_fault(&fan, failed) },
            )
            .await
    }

    async fn set_sensor_fault(
        &self,
        sensor: String,
        lost: bool,
        options: Options,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<(), Error> {
        self.m
            .act(
                &hdr,
                &options,
                format!("sensor={sensor} lost={lost}"),
                |_| async move { self.sim.set_sensor_fault(&sensor, lost) },
            )
            .await
    }

    async fn set_host_responsive(
        &self,
        responsive: bool,
        options: Options,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<(), Error> {
        self.m
            .act(
                &hdr,
                &options,
                format!("responsive={responsive}"),
                |_| async move {
                    self.sim.set_host_responsive(responsive);
                    self.touched();
                    Ok::<(), Error>(())
                },
            )
            .await
    }

    /// Append `count` (1–100000) `Sim.Event` entries to the event log.
    #[zbus(out_args("first", "last"))]
    async fn append_events(
        &self,
        count: u32,
        options: Options,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<(u64, u64), Error> {
        self.m
            .call(
                &hdr,
                Some(&options),
                &[],
                format!("count={count}"),
                || {
                    if (1..=MAX_APPEND).contains(&count) {
                        Ok(())
                    } else {
                        Err(Error::InvalidArgument(format!(
                            "count must be 1 to {MAX_APPEND}, not {count}"
                        )))
                    }
                },
                |_, ()| super::log::append_sim_events(self.logs.event.clone(), count),
            )
            .await
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
