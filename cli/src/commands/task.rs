//! `bmcctl task …`: list, show, wait for and cancel `org.bmcd.Task1`
//! objects; and [`TaskInfo`], a task's properties as bmcctl reads them.

use std::collections::HashMap;

use bmcd_api::zbus;
use bmcd_api::{Options, TaskState};
use zbus::zvariant::{OwnedValue, Value as ZValue};

use super::Ctx;
use crate::cli::TaskCmd;
use crate::conn::{self, Client};
use crate::error::{names, CliError, Exit};
use crate::output::{FieldSpec, Output, Record, Table, Value};
use crate::wait;

// `task show` labels; the keys are the D-Bus property names.
const ID: FieldSpec = FieldSpec::new("Id", "Id");
const PATH: FieldSpec = FieldSpec::new("Path", "Object path");
const KIND: FieldSpec = FieldSpec::new("Kind", "Kind");
const STATE: FieldSpec = FieldSpec::new("State", "State");
const PROGRESS: FieldSpec = FieldSpec::new("Progress", "Progress");
const PHASE: FieldSpec = FieldSpec::new("Phase", "Phase");
const MESSAGE: FieldSpec = FieldSpec::new("Message", "Message");
const MESSAGES: FieldSpec = FieldSpec::new("Messages", "Messages");
const START: FieldSpec = FieldSpec::new("StartTime", "Started");
const END: FieldSpec = FieldSpec::new("EndTime", "Ended");
const LAST_PROGRESS: FieldSpec = FieldSpec::new("LastProgressTime", "Last progress");
const CANCELLABLE: FieldSpec = FieldSpec::new("Cancellable", "Cancellable");
const OWNER: FieldSpec = FieldSpec::new("OwnerUid", "Owner uid");
const ERROR: FieldSpec = FieldSpec::new("Error", "Error");
const RESULT: FieldSpec = FieldSpec::new("Result", "Result");

// `task list` columns.
const COL_ID: FieldSpec = FieldSpec::num("Id", "ID");
const COL_KIND: FieldSpec = FieldSpec::new("Kind", "KIND");
const COL_STATE: FieldSpec = FieldSpec::new("State", "STATE");
const COL_PROGRESS: FieldSpec = FieldSpec::num("Progress", "PROGRESS");
const COL_PHASE: FieldSpec = FieldSpec::new("Phase", "PHASE");
const COL_OWNER: FieldSpec = FieldSpec::num("OwnerUid", "OWNER");
const COL_STARTED: FieldSpec = FieldSpec::new("StartTime", "STARTED");

type Props = HashMap<String, OwnedValue>;

/// A task's properties. Values the daemon did not send (or sent with
/// another type) keep their defaults; `State` is kept as the word sent, so
/// a newer daemon's states show as they are.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskInfo {
    pub path: String,
    pub id: u64,
    pub kind: String,
    pub state: String,
    pub progress: u8,
    pub phase: String,
    pub message: String,
    pub messages: Vec<String>,
    pub start_time: u64,
    pub end_time: u64,
    pub last_progress_time: u64,
    pub cancellable: bool,
    pub owner_uid: Option<u32>,
    /// Error name and text; empty unless Failed or Interrupted.
    pub error: (String, String),
    pub result: Vec<(String, Value)>,
}

impl TaskInfo {
    /// A task known only by its path (properties come with [`apply`]).
    ///
    /// [`apply`]: TaskInfo::apply
    pub fn new(path: &str) -> Self {
        TaskInfo {
            path: path.to_owned(),
            id: bmcd_api::task_id(path).unwrap_or(0),
            ..TaskInfo::default()
        }
    }

    pub fn from_props(path: &str, props: &Props) -> Self {
        let mut t = TaskInfo::new(path);
        t.apply(props);
        t
    }

    /// Take the values of `props` (a `GetAll` answer, or the changed
    /// properties of a `PropertiesChanged` signal).
    pub fn apply(&mut self, props: &Props) {
        for (k, v) in props {
            let v: &ZValue<'_> = v;
            match k.as_str() {
                "Id" => set(&mut self.id, v),
                "Kind" => set_str(&mut self.kind, v),
                "State" => set_str(&mut self.state, v),
                "Progress" => set(&mut self.progress, v),
                "Phase" => set_str(&mut self.phase, v),
                "Message" => set_str(&mut self.message, v),
                "Messages" => {
                    if let ZValue::Array(a) = v {
                        self.messages = a
                            .iter()
                            .filter_map(|m| match m {
                                ZValue::Str(s) => Some(s.to_string()),
                                _ => None,
                            })
                            .collect();
                    }
                }
                "StartTime" => set(&mut self.start_time, v),
                "EndTime" => set(&mut self.end_time, v),
                "LastProgressTime" => set(&mut self.last_progress_time, v),
                "Cancellable" => set(&mut self.cancellable, v),
                "OwnerUid" => self.owner_uid = u32::try_from(v).ok(),
                "Error" => {
                    if let ZValue::Structure(s) = v {
                        if let [ZValue::Str(n), ZValue::Str(m)] = s.fields() {
                            self.error = (n.to_string(), m.to_string());
                        }
                    }
                }
                "Result" => {
                    if let Value::Map(m) = value_of(v) {
                        self.result = m;
                    }
                }
                _ => {}
            }
        }
    }

    /// The state, if it is one this bmcctl knows.
    pub fn state(&self) -> Option<TaskState> {
        self.state.parse().ok()
    }

    /// Completed, Failed, Cancelled or Interrupted.
    pub fn is_final(&self) -> bool {
        self.state().is_some_and(TaskState::is_final)
    }

    /// `task 12 (PowerOn)`, for messages.
    pub fn label(&self) -> String {
        if self.kind.is_empty() {
            format!("task {}", self.id)
        } else {
            format!("task {} ({})", self.id, self.kind)
        }
    }

    /// Every property, for `task show` and the final `--json` document.
    pub fn record(&self) -> Record {
        let error = if self.error.0.is_empty() && self.error.1.is_empty() {
            Record::new().field(ERROR, Value::Null)
        } else {
            let (n, m) = &self.error;
            Record::new().field_as(
                ERROR,
                Value::Map(vec![
                    ("Name".into(), Value::text(n.clone())),
                    ("Message".into(), Value::text(m.clone())),
                ]),
                format!("{m} ({n})"),
            )
        };
        let messages = if self.messages.is_empty() {
            "-".to_owned()
        } else {
            self.messages.join(" | ")
        };
        let mut r = Record::new()
            .field(ID, Value::Int(i64::try_from(self.id).unwrap_or(i64::MAX)))
            .field(PATH, Value::text(self.path.clone()))
            .field(KIND, Value::text(self.kind.clone()))
            .field(STATE, Value::text(self.state.clone()))
            .field(PROGRESS, Value::Percent(self.progress))
            .field(PHASE, Value::text(self.phase.clone()))
            .field(MESSAGE, Value::text(self.message.clone()))
            .field_as(
                MESSAGES,
                Value::List(self.messages.iter().cloned().map(Value::Text).collect()),
                messages,
            )
            .field(START, Value::Time(self.start_time))
            .field(END, Value::Time(self.end_time))
            .field(LAST_PROGRESS, Value::Time(self.last_progress_time))
            .field(CANCELLABLE, Value::Bool(self.cancellable))
            .field(
                OWNER,
                self.owner_uid
                    .map_or(Value::Null, |u| Value::Int(i64::from(u))),
            );
        r.fields.extend(error.fields);
        r.field(RESULT, Value::Map(self.result.clone()))
    }

    /// The record as a JSON object (for documents built outside `output`).
    pub fn json(&self) -> serde_json::Map<String, serde_json::Value> {
        self.record()
            .fields
            .iter()
            .map(|f| (f.spec.key.to_owned(), f.value.json()))
            .collect()
    }
}

fn set<'a, T>(slot: &mut T, v: &'a ZValue<'a>)
where
    T: TryFrom<&'a ZValue<'a>>,
{
    if let Ok(x) = T::try_from(v) {
        *slot = x;
    }
}

fn set_str(slot: &mut String, v: &ZValue<'_>) {
    if let ZValue::Str(s) = v {
        *slot = s.to_string();
    }
}

/// A D-Bus value as an output value (for `Result`, whose keys and types
/// depend on the task's kind).
pub fn value_of(v: &ZValue<'_>) -> Value {
    match v {
        ZValue::U8(x) => Value::Int(i64::from(*x)),
        ZValue::Bool(b) => Value::Bool(*b),
        ZValue::I16(x) => Value::Int(i64::from(*x)),
        ZValue::U16(x) => Value::Int(i64::from(*x)),
        ZValue::I32(x) => Value::Int(i64::from(*x)),
        ZValue::U32(x) => Value::Int(i64::from(*x)),
        ZValue::I64(x) => Value::Int(*x),
        ZValue::U64(x) => i64::try_from(*x).map_or_else(|_| Value::text(x.to_string()), Value::Int),
        ZValue::F64(x) => Value::Float(*x),
        ZValue::Str(s) => Value::text(s.to_string()),
        ZValue::Signature(s) => Value::text(s.to_string()),
        ZValue::ObjectPath(p) => Value::text(p.to_string()),
        ZValue::Value(inner) => value_of(inner),
        ZValue::Array(a) => Value::List(a.iter().map(value_of).collect()),
        ZValue::Dict(d) => {
            let mut m: Vec<(String, Value)> = d
                .iter()
                .map(|(k, v)| {
                    let key = match value_of(k) {
                        Value::Text(s) => s,
                        other => other.console(),
                    };
                    (key, value_of(v))
                })
                .collect();
            conn::sort_small(&mut m, |a, b| a.0 < b.0);
            Value::Map(m)
        }
        ZValue::Structure(s) => Value::List(s.fields().iter().map(value_of).collect()),
        // A file descriptor (never in a task's Result).
        #[allow(unreachable_patterns)]
        _ => Value::Null,
    }
}

/// The task path an `ID` argument names: a number (`12`) or a full path
/// (`/org/bmcd/tasks/12`).
pub fn parse_id(arg: &str) -> Result<String, CliError> {
    let arg = arg.trim();
    if let Some(id) = bmcd_api::task_id(arg) {
        return Ok(bmcd_api::task_path(id));
    }
    match arg.parse::<u64>() {
        Ok(id) if id > 0 => Ok(bmcd_api::task_path(id)),
        _ => Err(CliError::usage(format!(
            "'{arg}' is not a task: give its number (12) or its path ({})",
            bmcd_api::task_path(12)
        ))),
    }
}

pub fn run(cmd: TaskCmd, ctx: &Ctx) -> Result<Output, CliError> {
    match cmd {
        TaskCmd::List => list(ctx),
        TaskCmd::Show(t) => show(&parse_id(&t.id)?, ctx),
        TaskCmd::Wait(t) => wait_cmd(&parse_id(&t.id)?, ctx),
        TaskCmd::Cancel(t) => cancel(&parse_id(&t.id)?, ctx),
    }
}

/// Every `Task1` object, oldest first.
fn read_tasks(client: &Client) -> Result<Vec<TaskInfo>, CliError> {
    let mut tasks: Vec<TaskInfo> = client
        .objects_with(bmcd_api::TASK_IFACE)?
        .iter()
        .map(|(path, props)| TaskInfo::from_props(path, props))
        .collect();
    conn::sort_small(&mut tasks, |a, b| (a.id, &a.path) < (b.id, &b.path));
    Ok(tasks)
}

fn tasks_table(tasks: &[TaskInfo]) -> Table {
    Table {
        columns: vec![
            COL_ID,
            COL_KIND,
            COL_STATE,
            COL_PROGRESS,
            COL_PHASE,
            COL_OWNER,
            COL_STARTED,
        ],
        rows: tasks
            .iter()
            .map(|t| {
                vec![
                    Value::Int(i64::try_from(t.id).unwrap_or(i64::MAX)),
                    Value::text(t.kind.clone()),
                    Value::text(t.state.clone()),
                    Value::Percent(t.progress),
                    Value::text(t.phase.clone()),
                    t.owner_uid
                        .map_or(Value::Null, |u| Value::Int(i64::from(u))),
                    Value::Time(t.start_time),
                ]
            })
            .collect(),
    }
}

fn list(ctx: &Ctx) -> Result<Output, CliError> {
    let client = ctx.connect()?;
    let tasks = read_tasks(&client)?;
    Ok(Output::new().table(None, tasks_table(&tasks)))
}

/// `GetAll` of one task; an unknown path is "no task N" (exit 4).
pub fn read_task(client: &Client, path: &str) -> Result<TaskInfo, CliError> {
    let props = client
        .call(|c| Ok(conn::get_all(c, path, bmcd_api::TASK_IFACE)?))
        .map_err(|e| no_such_task(e, path))?;
    Ok(TaskInfo::from_props(path, &props))
}

/// Say "no task N" for an unknown object (zbus's text names the path only).
pub fn no_such_task(e: CliError, path: &str) -> CliError {
    if e.name == names::UNKNOWN_OBJECT || e.name == "org.freedesktop.DBus.Error.UnknownInterface" {
        let id = bmcd_api::task_id(path).unwrap_or(0);
        return CliError::new(
            names::UNKNOWN_OBJECT,
            format!("no task {id} (finished tasks expire; see `bmcctl task list`)"),
            Exit::NotFound,
        );
    }
    e
}

fn show(path: &str, ctx: &Ctx) -> Result<Output, CliError> {
    let client = ctx.connect()?;
    let t = read_task(&client, path)?;
    Ok(Output::new().record(None, t.record()))
}

fn wait_cmd(path: &str, ctx: &Ctx) -> Result<Output, CliError> {
    let client = ctx.connect()?;
    let t = wait::wait(&client, path, wait::Style::for_ctx(ctx))?;
    let t = wait::outcome(t)?;
    Ok(Output::new()
        .notice(format!("{} completed.", capitalized(&t.label())))
        .json_result(t.record()))
}

fn cancel(path: &str, ctx: &Ctx) -> Result<Output, CliError> {
    let client = ctx.connect()?;
    let id = bmcd_api::task_id(path).unwrap_or(0);
    // Through the generated proxy: its call shares zbus's code with the
    // other `(a{sv}) -> ()` calls (Cooling1.SetAuto).
    let sent = client.call(|c| {
        bmcd_api::TaskProxyBlocking::builder(c)
            .path(path)?
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()?
            .cancel(Options::new())
    });
    if let Err(e) = sent {
        let e = no_such_task(e, path);
        if !matches!(e.as_daemon(), Some(bmcd_api::Error::NotAllowed(_))) {
            return Err(e);
        }
        // Say why in our words when the task has already ended.
        return Err(match read_task(&client, path) {
            Ok(t) if t.is_final() => CliError::daemon(bmcd_api::Error::NotAllowed(format!(
                "task {id} has already finished ({}); nothing to cancel",
                t.state
            ))),
            _ => e,
        });
    }
    let t = read_task(&client, path)?;
    Ok(Output::new()
        .notice(format!(
            "Cancel of task {id} requested (state {}); `bmcctl task wait {id}` waits for the end.",
            t.state
        ))
        .json_result(t.record()))
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::{render_console, render_json};
    use zbus::zvariant::{Str, StructureBuilder};

    fn ov(v: ZValue<'_>) -> OwnedValue {
        v.try_into_owned().unwrap()
    }

    fn props() -> Props {
        let mut p = Props::new();
        p.insert("Id".into(), ov(ZValue::U64(12)));
        p.insert("Kind".into(), ov(ZValue::from("PowerOff")));
        p.insert("State".into(), ov(ZValue::from("Failed")));
        p.insert("Progress".into(), ov(ZValue::U8(40)));
        p.insert("Phase".into(), ov(ZValue::from("Graceful")));
        p.insert(
            "Message".into(),
            ov(ZValue::from("the host did not go off")),
        );
        p.insert(
            "Messages".into(),
            ov(ZValue::from(vec![
                "asked the OS",
                "the host did not go off",
            ])),
        );
        p.insert("StartTime".into(), ov(ZValue::U64(1_714_566_896_000)));
        p.insert("EndTime".into(), ov(ZValue::U64(1_714_566_906_000)));
        p.insert("LastProgressTime".into(), ov(ZValue::U64(0)));
        p.insert("Cancellable".into(), ov(ZValue::Bool(false)));
        p.insert("OwnerUid".into(), ov(ZValue::U32(0)));
        let err = StructureBuilder::new()
            .add_field(Str::from("org.bmcd.Error.Timeout"))
            .add_field(Str::from("still on after 10 s"))
            .build()
            .unwrap();
        p.insert("Error".into(), ov(ZValue::Structure(err)));
        let mut result: HashMap<&str, ZValue<'_>> = HashMap::new();
        result.insert("PowerState", ZValue::new(ZValue::from("On")));
        result.insert("Seconds", ZValue::new(ZValue::F64(1.5)));
        p.insert("Result".into(), ov(ZValue::from(result)));
        p
    }

    #[test]
    fn properties_parse_and_render() {
        let t = TaskInfo::from_props("/org/bmcd/tasks/12", &props());
        assert_eq!(t.id, 12);
        assert_eq!(t.state(), Some(TaskState::Failed));
        assert!(t.is_final());
        assert_eq!(t.messages.len(), 2);
        assert_eq!(t.error.0, "org.bmcd.Error.Timeout");
        assert_eq!(t.label(), "task 12 (PowerOff)");
        let text = render_console(&Output::new().record(None, t.record()), false);
        assert!(text.contains("State:          Failed\n"), "{text}");
        assert!(text.contains("Progress:       40%\n"), "{text}");
        assert!(
            text.contains("Error:          still on after 10 s (org.bmcd.Error.Timeout)\n"),
            "{text}"
        );
        assert!(
            text.contains("Messages:       asked the OS | the host did not go off\n"),
            "{text}"
        );
        assert!(
            text.contains("Result:         PowerState On, Seconds 1.5\n"),
            "{text}"
        );
        assert!(text.contains("Last progress:  -\n"), "{text}");
        let v: serde_json::Value =
            serde_json::from_str(&render_json(&Output::new().record(None, t.record()))).unwrap();
        assert_eq!(v["Id"], 12);
        assert_eq!(v["Path"], "/org/bmcd/tasks/12");
        assert_eq!(v["Error"]["Name"], "org.bmcd.Error.Timeout");
        assert_eq!(v["Result"]["PowerState"], "On");
        assert_eq!(v["Result"]["Seconds"], 1.5);
        assert_eq!(v["StartTime"], "2024-05-01T12:34:56Z");
        assert!(v["LastProgressTime"].is_null());
        assert_eq!(v["Messages"][1], "the host did not go off");
        assert_eq!(serde_json::Value::Object(t.json()), v);
    }

    #[test]
    fn changes_apply_on_top() {
        let mut t = TaskInfo::new("/org/bmcd/tasks/3");
        assert_eq!(t.id, 3);
        assert!(!t.is_final());
        let mut p = Props::new();
        p.insert("State".into(), ov(ZValue::from("Running")));
        p.insert("Progress".into(), ov(ZValue::U8(10)));
        // A wrong type is ignored, not a failure.
        p.insert("EndTime".into(), ov(ZValue::from("soon")));
        t.apply(&p);
        assert_eq!(
            (t.state.as_str(), t.progress, t.end_time),
            ("Running", 10, 0)
        );
        let mut p = Props::new();
        p.insert("State".into(), ov(ZValue::from("Sleeping")));
        t.apply(&p);
        assert_eq!(t.state(), None);
        assert!(!t.is_final(), "an unknown state is not final");
        // No error: null in JSON, `-` on the console.
        let v = serde_json::Value::Object(t.json());
        assert!(v["Error"].is_null());
        assert!(v["OwnerUid"].is_null());
    }

    #[test]
    fn list_is_a_table_newest_last() {
        let mut a = TaskInfo::from_props("/org/bmcd/tasks/12", &props());
        a.start_time = 0;
        let b = TaskInfo {
            state: "Running".into(),
            kind: "PowerOn".into(),
            progress: 5,
            ..TaskInfo::new("/org/bmcd/tasks/13")
        };
        let text = render_console(&Output::new().table(None, tasks_table(&[a, b])), false);
        assert_eq!(
            text,
            "ID  KIND      STATE    PROGRESS  PHASE     OWNER  STARTED\n\
             12  PowerOff  Failed        40%  Graceful      0  -\n\
             13  PowerOn   Running        5%  -             -  -\n"
        );
    }

    #[test]
    fn ids_are_numbers_or_paths() {
        assert_eq!(parse_id("12").unwrap(), "/org/bmcd/tasks/12");
        assert_eq!(parse_id("/org/bmcd/tasks/7").unwrap(), "/org/bmcd/tasks/7");
        for bad in ["0", "-1", "x", "/org/bmcd/tasks/x", "/org/bmcd/fans/1", ""] {
            let e = parse_id(bad).unwrap_err();
            assert_eq!(e.exit, Exit::Usage, "{bad}");
        }
    }

    #[test]
    fn unknown_objects_say_no_task() {
        let e = CliError::new(names::UNKNOWN_OBJECT, "Unknown object", Exit::NotFound);
        let e = no_such_task(e, "/org/bmcd/tasks/9");
        assert_eq!(e.exit, Exit::NotFound);
        assert!(e.message.starts_with("no task 9 "), "{}", e.message);
        let busy = CliError::new("org.bmcd.Error.Busy", "b", Exit::Busy);
        assert_eq!(no_such_task(busy.clone(), "/org/bmcd/tasks/9"), busy);
    }
}
