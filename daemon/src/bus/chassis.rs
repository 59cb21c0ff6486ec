//! `org.bmcd.Chassis1` at `/org/bmcd/chassis0`.

use std::sync::Arc;

use bmcd_api::{Error, PowerOffMode, PowerState, RestorePolicy, Transition};
use tokio::sync::watch;
use zbus::interface;
use zbus::message::Header;
use zbus::zvariant::OwnedObjectPath;

use super::method::{parse, Methods, Options};
use super::task::TaskObjects;
use crate::chassis::{Chassis, ChassisError, ChassisState};

/// The named error of each chassis refusal or failure (spelled here once).
impl From<ChassisError> for Error {
    fn from(e: ChassisError) -> Error {
        let text = e.to_string();
        match e {
            ChassisError::Busy(_) => Error::Busy(text),
            ChassisError::HostOff(_) => Error::NotAllowed(text),
            ChassisError::TooLong { .. } | ChassisError::SecondsWithOff => {
                Error::InvalidArgument(text)
            }
            ChassisError::Hardware(_) => Error::Unavailable(text),
            ChassisError::PowerGoodTimeout { .. } => Error::Timeout(text),
            ChassisError::Persist(_) | ChassisError::Task(_) => Error::Internal(text),
            ChassisError::Cancelled => Error::Cancelled(text),
        }
    }
}

pub struct ChassisIface {
    pub m: Arc<Methods>,
    pub tasks: Arc<TaskObjects>,
    pub chassis: Arc<Chassis>,
    pub state: watch::Receiver<ChassisState>,
}

impl ChassisIface {
    async fn transition(
        &self,
        hdr: &Header<'_>,
        options: &Options,
        t: Transition,
        mode: &str,
        timeout: u32,
    ) -> Result<OwnedObjectPath, Error> {
        let args = if t == Transition::Off {
            format!("mode={mode} timeout={timeout}")
        } else {
            String::new()
        };
        self.m
            .call(
                hdr,
                Some(options),
                &[],
                args,
                || match t {
                    Transition::Off => parse::<PowerOffMode>(mode),
                    Transition::On => Ok(PowerOffMode::Graceful),
                    _ => Ok(PowerOffMode::Force),
                },
                |caller, mode| async move {
                    let id = self.chassis.request(t, mode, timeout, caller.uid)?;
                    self.tasks.expose(id).await
                },
            )
            .await
    }
}

#[interface(name = "org.bmcd.Chassis1")]
impl ChassisIface {
    async fn power_on(
        &self,
        options: Options,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<OwnedObjectPath, Error> {
        self.transition(&hdr, &options, Transition::On, "", 0).await
    }

    async fn power_off(
        &self,
        mode: String,
        timeout: u32,
        options: Options,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<OwnedObjectPath, Error> {
        self.transition(&hdr, &options, Transition::Off, &mode, timeout)
            .await
    }

    async fn power_cycle(
        &self,
        options: Options,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<OwnedObjectPath, Error> {
        self.transition(&hdr, &options, Transition::Cycle, "", 0)
            .await
    }

    async fn reset(
        &self,
        options: Options,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<OwnedObjectPath, Error> {
        self.transition(&hdr, &options, Transition::Reset, "", 0)
            .await
    }

    async fn set_identify(
        &self,
        on: bool,
        seconds: u32,
        options: Options,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<(), Error> {
        self.m
            .act(&hdr, &options, format!("on={on} seconds={seconds}"), |_| {
                self.chassis.set_identify(on, seconds)
            })
            .await
    }

    async fn set_restore_policy(
        &self,
        policy: String,
        options: Options,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<(), Error> {
        self.m
            .call(
                &hdr,
                Some(&options),
                &[],
                format!("policy={policy}"),
                || parse::<RestorePolicy>(&policy),
                |_, p| async move { self.chassis.set_policy(p) },
            )
            .await
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
