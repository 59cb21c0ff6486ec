//! `bmcctl chassis …`: status, power, identify LED, restore policy.

use bmcd_api::zbus;
use bmcd_api::{Options, PowerOffMode, PowerState, RestorePolicy, Transition};

use super::Ctx;
use crate::cli::{ChassisCmd, IdentifyAction, PolicyAction, PowerAction, PowerArgs};
use crate::conn::{self, Client};
use crate::error::CliError;
use crate::output::{FieldSpec, Output, Record, Value};
use crate::time;
use crate::wait;

pub const POWER_STATE: FieldSpec = FieldSpec::new("PowerState", "Power state");
pub const PENDING: FieldSpec = FieldSpec::new("PendingTransition", "Pending transition");
pub const LAST_CHANGE: FieldSpec = FieldSpec::new("LastStateChangeTime", "Last state change");
pub const RESTORE_POLICY: FieldSpec = FieldSpec::new("RestorePolicy", "Restore policy");
pub const IDENTIFY_ACTIVE: FieldSpec = FieldSpec::new("IdentifyActive", "Identify LED");
pub const IDENTIFY_EXPIRES: FieldSpec = FieldSpec::new("IdentifyExpires", "Identify expires");
pub const ACTION: FieldSpec = FieldSpec::new("Action", "Action");
pub const WAITED: FieldSpec = FieldSpec::new("Waited", "Waited");
/// The task of a `--no-wait` request (`Id` and `Path`, as in `task show`).
pub const TASK_ID: FieldSpec = FieldSpec::new("Id", "Task");
pub const TASK_PATH: FieldSpec = FieldSpec::new("Path", "Task path");

pub fn run(cmd: ChassisCmd, ctx: &Ctx) -> Result<Output, CliError> {
    match cmd {
        ChassisCmd::Status => status(ctx),
        ChassisCmd::Power(p) => power(p, ctx),
        ChassisCmd::Identify { action } => identify(action, ctx),
        ChassisCmd::Policy { action } => match action {
            None | Some(PolicyAction::Get) => policy_get(ctx),
            Some(PolicyAction::Set { value }) => policy_set(&value, ctx),
        },
    }
}

struct Status {
    power_state: PowerState,
    pending: Transition,
    last_change: u64,
    policy: RestorePolicy,
    identify_active: bool,
    identify_expires: u64,
}

/// The chassis' properties, in one `GetAll`.
fn read_status(client: &Client) -> Result<Status, CliError> {
    let mut p = client.get_all(bmcd_api::CHASSIS_PATH, bmcd_api::CHASSIS_IFACE)?;
    Ok(Status {
        power_state: p.take("PowerState")?,
        pending: p.take("PendingTransition")?,
        last_change: p.take("LastStateChangeTime")?,
        policy: p.take("RestorePolicy")?,
        identify_active: p.take("IdentifyActive")?,
        identify_expires: p.take("IdentifyExpires")?,
    })
}

fn identify_fields(r: Record, active: bool, expires: u64) -> Record {
    let r = r.field_as(
        IDENTIFY_ACTIVE,
        Value::Bool(active),
        if active { "on" } else { "off" },
    );
    match (active, expires) {
        (false, _) => r.field(IDENTIFY_EXPIRES, Value::Null),
        (true, 0) => r.field_as(IDENTIFY_EXPIRES, Value::Null, "until turned off"),
        (true, ms) => r.field(IDENTIFY_EXPIRES, Value::Deadline(ms)),
    }
}

fn status_record(s: &Status) -> Record {
    let r = Record::new()
        .field(POWER_STATE, Value::text(s.power_state.as_str()))
        .field(PENDING, Value::text(s.pending.as_str()))
        .field(LAST_CHANGE, Value::Time(s.last_change))
        .field(RESTORE_POLICY, Value::text(s.policy.as_str()));
    identify_fields(r, s.identify_active, s.identify_expires)
}

fn status(ctx: &Ctx) -> Result<Output, CliError> {
    let client = ctx.connect()?;
    let s = read_status(&client)?;
    Ok(Output::new().record(None, status_record(&s)))
}

/// Everything that differs between the power actions.
struct PowerPlan {
    /// For messages: "power off the host".
    action: &'static str,
    /// JSON `Action`.
    name: &'static str,
    /// The line shown before "Continue? [y/N]"; `None` = no confirmation.
    consequence: Option<String>,
}

fn plan(action: PowerAction) -> PowerPlan {
    match action {
        PowerAction::On => PowerPlan {
            action: "power on the host",
            name: "On",
            consequence: None,
        },
        PowerAction::Off {
            force: true,
            graceful_timeout: _,
        } => PowerPlan {
            action: "power off the host",
            name: "Off",
            consequence: Some(
                "The host will be forced off now, without an OS shutdown; unsaved work is lost."
                    .to_owned(),
            ),
        },
        PowerAction::Off {
            force: false,
            graceful_timeout,
        } => {
            let after = match graceful_timeout {
                Some(s) if s > 0 => format!("after {s} s"),
                _ => "after the configured timeout".to_owned(),
            };
            PowerPlan {
                action: "power off the host",
                name: "Off",
                consequence: Some(format!(
                    "The host OS will be asked to shut down; power is forced off if it is still on {after}."
                )),
            }
        }
        PowerAction::Cycle => PowerPlan {
            action: "power-cycle the host",
            name: "Cycle",
            consequence: Some(
                "The host will be forced off, without an OS shutdown, then powered on again."
                    .to_owned(),
            ),
        },
        PowerAction::Reset => PowerPlan {
            action: "reset the host",
            name: "Reset",
            consequence: Some("The host will be reset at once, without an OS shutdown.".to_owned()),
        },
    }
}

/// Request the transition, then (unless `--no-wait`) wait for its task
/// through signals (see [`crate::wait`]) and exit with its outcome.
fn power(args: PowerArgs, ctx: &Ctx) -> Result<Output, CliError> {
    let action = args.action;
    let plan = plan(action);
    if let Some(consequence) = &plan.consequence {
        ctx.confirm(plan.action, consequence)?;
    }
    let client = ctx.connect()?;
    let path = client.call(|c| {
        let p = conn::chassis(c)?;
        match action {
            PowerAction::On => p.power_on(Options::new()),
            PowerAction::Off {
                force,
                graceful_timeout,
            } => {
                let mode = if force {
                    PowerOffMode::Force
                } else {
                    PowerOffMode::Graceful
                };
                p.power_off(mode, graceful_timeout.unwrap_or(0), Options::new())
            }
            PowerAction::Cycle => p.power_cycle(Options::new()),
            PowerAction::Reset => p.reset(Options::new()),
        }
    })?;
    let path = path.as_str().to_owned();
    let id = bmcd_api::task_id(&path).unwrap_or(0);
    let action_field = Record::new().field(ACTION, Value::text(plan.name));
    if args.no_wait {
        let out = if ctx.quiet {
            Output::new().line(id.to_string())
        } else {
            Output::new().notice(format!(
                "Request to {} accepted as task {id}; `bmcctl task wait {id}` waits for it.",
                plan.action
            ))
        };
        return Ok(out.json_result(
            action_field
                .field(WAITED, Value::Bool(false))
                .field(TASK_ID, Value::Int(i64::try_from(id).unwrap_or(i64::MAX)))
                .field(TASK_PATH, Value::text(path)),
        ));
    }
    let t = wait::wait(&client, &path, wait::Style::for_ctx(ctx))?;
    let t = wait::outcome(t).map_err(|mut e| {
        if let Some(doc) = e.json.as_mut() {
            doc.insert(ACTION.key.to_owned(), Value::text(plan.name).json());
        }
        e
    })?;
    let state: PowerState = client
        .get_all(bmcd_api::CHASSIS_PATH, bmcd_api::CHASSIS_IFACE)?
        .take("PowerState")?;
    let mut doc = t.record();
    doc.fields.extend(
        action_field
            .field(WAITED, Value::Bool(true))
            .field(POWER_STATE, Value::text(state.as_str()))
            .fields,
    );
    Ok(Output::new()
        .notice(format!("Power is {}.", state.as_str()))
        .json_result(doc))
}

fn identify(action: IdentifyAction, ctx: &Ctx) -> Result<Output, CliError> {
    let (on, seconds) = match action {
        IdentifyAction::On { seconds } => (true, seconds.unwrap_or(0)),
        IdentifyAction::Off => (false, 0),
    };
    let client = ctx.connect()?;
    let (active, expires) = client.call(|c| {
        let p = conn::chassis(c)?;
        p.set_identify(on, seconds, Options::new())?;
        Ok((p.identify_active()?, p.identify_expires()?))
    })?;
    let notice = match (active, expires) {
        (false, _) => "Identify LED is off.".to_owned(),
        (true, 0) => "Identify LED is on until turned off.".to_owned(),
        (true, ms) => {
            let left = ms.saturating_sub(time::now_ms()).div_ceil(1000);
            format!(
                "Identify LED is on for {} (until {}).",
                time::short_duration(left),
                time::iso8601_utc(ms)
            )
        }
    };
    Ok(Output::new()
        .notice(notice)
        .json_result(identify_fields(Record::new(), active, expires)))
}

fn policy_get(ctx: &Ctx) -> Result<Output, CliError> {
    let client = ctx.connect()?;
    let policy = client.call(|c| Ok(conn::chassis(c)?.restore_policy()?))?;
    Ok(Output::new().record(
        None,
        Record::new().field(RESTORE_POLICY, Value::text(policy.as_str())),
    ))
}

/// The word is matched in any case and by unique prefix against the known
/// policies and sent with its exact spelling (the daemon takes only that);
/// a word that matches none goes as typed for the daemon to judge, so a
/// newer daemon's policies work with this bmcctl.
fn policy_set(typed: &str, ctx: &Ctx) -> Result<Output, CliError> {
    let word = crate::cli::enum_word(typed, RestorePolicy::NAMES)?;
    let word = word.as_str();
    let client = ctx.connect()?;
    let policy = client.call(|c| {
        c.call_method(
            Some(bmcd_api::BUS_NAME),
            bmcd_api::CHASSIS_PATH,
            Some(bmcd_api::CHASSIS_IFACE),
            "SetRestorePolicy",
            &(word, Options::new()),
        )
        .map_err(invalid_word)?;
        Ok(conn::chassis(c)?.restore_policy()?)
    })?;
    Ok(Output::new()
        .notice(format!("Restore policy is {}.", policy.as_str()))
        .json_result(Record::new().field(RESTORE_POLICY, Value::text(policy.as_str()))))
}

/// A daemon whose method takes the typed enum rejects an unknown word while
/// decoding the arguments, before any code of its own runs; zbus answers
/// that with its generic error. Report it as the invalid argument it is.
fn invalid_word(e: zbus::Error) -> bmcd_api::Error {
    match &e {
        zbus::Error::MethodError(name, desc, _)
            if name.as_str() == "org.freedesktop.zbus.Error" =>
        {
            bmcd_api::Error::InvalidArgument(desc.clone().unwrap_or_default())
        }
        _ => bmcd_api::Error::from(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::render_console;

    #[test]
    fn status_renders_every_field() {
        let s = Status {
            power_state: PowerState::On,
            pending: Transition::None,
            last_change: 1_714_566_896_000,
            policy: RestorePolicy::AlwaysOff,
            identify_active: true,
            identify_expires: 0,
        };
        let text = render_console(&Output::new().record(None, status_record(&s)), false);
        assert_eq!(
            text,
            "Power state:         On\n\
             Pending transition:  None\n\
             Last state change:   2024-05-01T12:34:56Z\n\
             Restore policy:      AlwaysOff\n\
             Identify LED:        on\n\
             Identify expires:    until turned off\n"
        );
        let json = crate::output::render_json(&Output::new().record(None, status_record(&s)));
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["PowerState"], "On");
        assert_eq!(v["LastStateChangeTime"], "2024-05-01T12:34:56Z");
        assert_eq!(v["IdentifyActive"], true);
        assert!(v["IdentifyExpires"].is_null());
    }

    #[test]
    fn disruptive_actions_ask_first() {
        let off = |force, graceful_timeout| PowerAction::Off {
            force,
            graceful_timeout,
        };
        assert!(plan(PowerAction::On).consequence.is_none());
        let c = plan(off(false, Some(10))).consequence.unwrap_or_default();
        assert!(c.ends_with("after 10 s."), "{c}");
        for a in [off(false, None), PowerAction::Cycle, PowerAction::Reset] {
            assert!(plan(a).consequence.is_some());
        }
    }
}
