//! `org.bmcd.Task1` at `/org/bmcd/tasks/<id>`: one object per task of the
//! task manager (`crate::tasks`), added when the task starts (or is loaded
//! at start-up) and removed when it expires. Properties are published by
//! the registry from the task's watched snapshot, at most ten times a
//! second (progress); the final state always gets out.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bmcd_api::{task_path, Error, TaskState};
use tokio::sync::{mpsc, watch};
use zbus::interface;
use zbus::message::Header;
use zbus::zvariant::{ObjectPath, OwnedObjectPath, OwnedValue, Value};

use super::method::{Methods, Options};
use super::Registry;
use crate::auth::Role;
use crate::tasks::{ResultValue, TaskError, TaskEvent, TaskSnapshot, Tasks};

/// At most this often does one task emit `PropertiesChanged` for progress
/// alone; a change of any other property is published at once.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// The properties limited to one signal per [`MIN_INTERVAL`].
const THROTTLED: &[&str] = &["Progress", "LastProgressTime"];

impl From<TaskError> for Error {
    fn from(e: TaskError) -> Error {
        let text = e.to_string();
        match e {
            TaskError::NotFound(_) => Error::NotFound(text),
            TaskError::NotOwner => Error::PermissionDenied(text),
            TaskError::NotCancellable | TaskError::Finished(_) => Error::NotAllowed(text),
        }
    }
}

pub struct TaskIface {
    m: Arc<Methods>,
    tasks: Arc<Tasks>,
    id: u64,
    state: watch::Receiver<TaskSnapshot>,
}

#[interface(name = "org.bmcd.Task1")]
impl TaskIface {
    /// The task's owner or an Administrator, while `Cancellable` (the
    /// policy row lets Operators try; the task manager decides the rest).
    async fn cancel(&self, options: Options, #[zbus(header)] hdr: Header<'_>) -> Result<(), Error> {
        self.m
            .act(
                &hdr,
                &options,
                format!("task={}", self.id),
                |caller| async move {
                    self.tasks
                        .cancel(self.id, caller.uid, caller.role == Role::Administrator)
                },
            )
            .await
    }

    #[zbus(property(emits_changed_signal = "const"))]
    fn id(&self) -> u64 {
        self.id
    }
    #[zbus(property(emits_changed_signal = "const"))]
    fn kind(&self) -> String {
        self.state.borrow().kind.clone()
    }
    #[zbus(property)]
    fn state(&self) -> TaskState {
        self.state.borrow().state
    }
    #[zbus(property)]
    fn progress(&self) -> u8 {
        self.state.borrow().progress
    }
    #[zbus(property)]
    fn phase(&self) -> String {
        self.state.borrow().phase.clone()
    }
    #[zbus(property)]
    fn message(&self) -> String {
        self.state.borrow().message.clone()
    }
    #[zbus(property)]
    fn messages(&self) -> Vec<String> {
        self.state.borrow().messages.clone()
    }
    #[zbus(property(emits_changed_signal = "const"))]
    fn start_time(&self) -> u64 {
        self.state.borrow().start_ms
    }
    #[zbus(property)]
    fn end_time(&self) -> u64 {
        self.state.borrow().end_ms
    }
    #[zbus(property)]
    fn last_progress_time(&self) -> u64 {
        self.state.borrow().last_progress_ms
    }
    #[zbus(property)]
    fn cancellable(&self) -> bool {
        self.state.borrow().cancellable
    }
    #[zbus(property(emits_changed_signal = "const"))]
    fn owner_uid(&self) -> u32 {
        self.state.borrow().owner_uid
    }
    #[zbus(property)]
    fn error(&self) -> (String, String) {
        self.state.borrow().error.clone()
    }
    #[zbus(property)]
    fn result(&self) -> HashMap<String, OwnedValue> {
        self.state
            .borrow()
            .result
            .iter()
            .filter_map(|(k, v)| {
                let v = match v {
                    ResultValue::Str(s) => Value::from(s.as_str()),
                    ResultValue::U64(n) => Value::from(*n),
                    ResultValue::I64(n) => Value::from(*n),
                    ResultValue::Bool(b) => Value::from(*b),
                    ResultValue::Path(p) => Value::from(ObjectPath::try_from(p.as_str()).ok()?),
                };
                Some((k.clone(), v.try_to_owned().ok()?))
            })
            .collect()
    }
}

/// The task objects on the bus.
pub struct TaskObjects {
    reg: Arc<Registry>,
    m: Arc<Methods>,
    tasks: Arc<Tasks>,
}

impl TaskObjects {
    pub fn new(reg: Arc<Registry>, m: Arc<Methods>, tasks: Arc<Tasks>) -> Arc<TaskObjects> {
        Arc::new(TaskObjects { reg, m, tasks })
    }

    /// Put task `id` on the bus unless it is there already, and return its
    /// path. Methods that start a task call this before they reply, so the
    /// path they return can be used at once.
    pub async fn expose(&self, id: u64) -> Result<OwnedObjectPath, Error> {
        let path = task_path(id);
        let state = self
            .tasks
            .get(id)
            .ok_or_else(|| Error::Internal(format!("task {id} vanished before it was shown")))?;
        self.add(id, state).await?;
        OwnedObjectPath::try_from(path).map_err(|e| Error::Internal(e.to_string()))
    }

    async fn add(&self, id: u64, state: watch::Receiver<TaskSnapshot>) -> zbus::Result<()> {
        let iface = TaskIface {
            m: self.m.clone(),
            tasks: self.tasks.clone(),
            id,
            state: state.clone(),
        };
        self.reg
            .add_throttling(&task_path(id), iface, state, MIN_INTERVAL, THROTTLED)
            .await
    }

    /// Follow the task manager: add and remove task objects.
    pub async fn follow(self: Arc<Self>, mut events: mpsc::UnboundedReceiver<TaskEvent>) {
        while let Some(ev) = events.recv().await {
            let r = match ev {
                TaskEvent::Added(id, state) => self.add(id, state).await,
                TaskEvent::Removed(id) => self
                    .reg
                    .remove::<TaskIface>(&task_path(id))
                    .await
                    .map(|_| ()),
            };
            if let Err(e) = r {
                log::error!("task objects: {e}");
            }
        }
    }
}
