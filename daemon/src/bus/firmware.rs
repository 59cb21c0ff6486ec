//! `org.bmcd.FirmwareManager1` at `/org/bmcd/firmware` and one
//! `org.bmcd.Firmware1` per slot at `/org/bmcd/firmware/<slot>`.
//!
//! Images come as file descriptors the caller opened; bmcd never opens a
//! caller's path. The controller (`crate::firmware`) reads them on a
//! blocking thread.

use std::collections::HashMap;
use std::fs::File;
use std::sync::Arc;

use bmcd_api::{inspect, task_path, update_options, Error, FirmwareState};
use tokio::sync::watch;
use zbus::interface;
use zbus::message::Header;
use zbus::zvariant::{OwnedFd, OwnedObjectPath, OwnedValue, Value};

use super::method::{Methods, Options};
use super::task::TaskObjects;
use crate::firmware::{Firmware, FirmwareError, FirmwareView, InspectValue, UpdateOptions};

/// The named error of each firmware refusal or failure: the controller
/// names it once ([`FirmwareError::name`]).
impl From<FirmwareError> for Error {
    fn from(e: FirmwareError) -> Error {
        let text = e.to_string();
        Error::from_name(e.name(), text.clone()).unwrap_or(Error::Internal(text))
    }
}

/// A boolean option: absent is false, another type is `InvalidArgument`.
fn opt_bool(options: &Options, key: &str) -> Result<bool, Error> {
    match options.get(key) {
        None => Ok(false),
        Some(v) => match &**v {
            Value::Bool(b) => Ok(*b),
            other => Err(Error::InvalidArgument(format!(
                "option '{key}' must be a boolean (b), not {}",
                other.value_signature()
            ))),
        },
    }
}

fn file(fd: OwnedFd) -> File {
    File::from(std::os::fd::OwnedFd::from(fd))
}

pub struct FirmwareManagerIface {
    pub m: Arc<Methods>,
    pub tasks: Arc<TaskObjects>,
    pub fw: Arc<Firmware>,
    pub state: watch::Receiver<FirmwareView>,
}

#[interface(name = "org.bmcd.FirmwareManager1")]
impl FirmwareManagerIface {
    async fn start_update(
        &self,
        image: OwnedFd,
        options: Options,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<OwnedObjectPath, Error> {
        let args = format!(
            "activate={} force-version={}",
            opt_bool(&options, update_options::ACTIVATE).unwrap_or(false),
            opt_bool(&options, update_options::FORCE_VERSION).unwrap_or(false)
        );
        self.m
            .call(
                &hdr,
                Some(&options),
                update_options::ALL,
                args,
                || {
                    Ok(UpdateOptions {
                        activate: opt_bool(&options, update_options::ACTIVATE)?,
                        force_version: opt_bool(&options, update_options::FORCE_VERSION)?,
                    })
                },
                |caller, opts| async move {
                    let id = self.fw.start_update(file(image), opts, caller.uid).await?;
                    self.tasks.expose(id).await
                },
            )
            .await
    }

    async fn activate(
        &self,
        slot: String,
        options: Options,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<(), Error> {
        self.m
            .act(&hdr, &options, format!("slot={slot}"), |_| {
                self.fw.activate(slot.clone())
            })
            .await
    }

    async fn rollback(
        &self,
        options: Options,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<(), Error> {
        self.m
            .act(&hdr, &options, String::new(), |_| self.fw.rollback())
            .await
    }

    async fn inspect(
        &self,
        image: OwnedFd,
        options: Options,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<HashMap<String, OwnedValue>, Error> {
        let answer = self
            .m
            .call(
                &hdr,
                Some(&options),
                inspect::OPTIONS,
                String::new(),
                || opt_bool(&options, inspect::OPT_PAYLOAD),
                |_, payload| self.fw.inspect(file(image), payload),
            )
            .await?;
        Ok(answer
            .into_iter()
            .filter_map(|(k, v)| {
                let v = match v {
                    InspectValue::Str(s) => Value::from(s),
                    InspectValue::Bool(b) => Value::from(b),
                    InspectValue::U64(n) => Value::from(n),
                    InspectValue::List(l) => Value::from(l),
                    InspectValue::Payloads(p) => Value::from(p),
                };
                Some((k.to_owned(), v.try_to_owned().ok()?))
            })
            .collect())
    }

    #[zbus(property)]
    fn boot_next(&self) -> String {
        self.state.borrow().boot_next.clone()
    }
    /// Fixed while bmcd runs (a reboot restarts it).
    #[zbus(property(emits_changed_signal = "const"))]
    fn booted_now(&self) -> String {
        self.state.borrow().booted.clone()
    }
    #[zbus(property(emits_changed_signal = "const"))]
    fn machine(&self) -> String {
        self.state.borrow().machine.clone()
    }
    #[zbus(property)]
    fn update_task(&self) -> OwnedObjectPath {
        let id = self.state.borrow().update_task;
        let path = if id == 0 {
            "/".to_owned()
        } else {
            task_path(id)
        };
        OwnedObjectPath::try_from(path).unwrap_or_default()
    }
}

/// One slot; `index` into the controller's slots.
pub struct FirmwareIface {
    pub index: usize,
    pub state: watch::Receiver<FirmwareView>,
}

impl FirmwareIface {
    fn with<T: Default>(&self, f: impl FnOnce(&crate::firmware::SlotInfo) -> T) -> T {
        self.state
            .borrow()
            .slots
            .get(self.index)
            .map(f)
            .unwrap_or_default()
    }
}

#[interface(name = "org.bmcd.Firmware1")]
impl FirmwareIface {
    #[zbus(property(emits_changed_signal = "const"))]
    fn component(&self) -> String {
        self.with(|s| s.component.clone())
    }
    #[zbus(property(emits_changed_signal = "const"))]
    fn slot(&self) -> String {
        self.with(|s| s.name.clone())
    }
    #[zbus(property)]
    fn version(&self) -> String {
        self.with(|s| s.version.clone())
    }
    #[zbus(property)]
    fn build_date(&self) -> String {
        self.with(|s| s.build_date.clone())
    }
    #[zbus(property)]
    fn digest(&self) -> String {
        self.with(|s| s.digest.clone())
    }
    #[zbus(property)]
    fn size(&self) -> u64 {
        self.with(|s| s.size)
    }
    #[zbus(property(emits_changed_signal = "const"))]
    fn capacity(&self) -> u64 {
        self.with(|s| s.capacity)
    }
    #[zbus(property)]
    fn install_time(&self) -> u64 {
        self.with(|s| s.install_time_ms)
    }
    #[zbus(property)]
    fn state(&self) -> FirmwareState {
        self.state
            .borrow()
            .slots
            .get(self.index)
            .map_or(FirmwareState::Invalid, |s| s.state)
    }
}
