//! `bmcctl chassis …`: status, power, identify LED, restore policy.

use std::thread;
use std::time::{Duration, Instant};

use bmcd_api::zbus;
use bmcd_api::{Options, PowerOffMode, PowerState, RestorePolicy, Transition};

use super::Ctx;
use crate::cli::{ChassisCmd, IdentifyAction, PolicyAction, PowerAction, PowerArgs};
use crate::conn::{self, Client};
use crate::error::{names, CliError, Exit};
use crate::output::{FieldSpec, Output, Progress, Record, Value};
use crate::time;

pub const POWER_STATE: FieldSpec = FieldSpec::new("PowerState", "Power state");
pub const PENDING: FieldSpec = FieldSpec::new("PendingTransition", "Pending transition");
pub const LAST_CHANGE: FieldSpec = FieldSpec::new("LastStateChangeTime", "Last state change");
pub const RESTORE_POLICY: FieldSpec = FieldSpec::new("RestorePolicy", "Restore policy");
pub const IDENTIFY_ACTIVE: FieldSpec = FieldSpec::new("IdentifyActive", "Identify LED");
pub const IDENTIFY_EXPIRES: FieldSpec = FieldSpec::new("IdentifyExpires", "Identify expires");
pub const ACTION: FieldSpec = FieldSpec::new("Action", "Action");
pub const WAITED: FieldSpec = FieldSpec::new("Waited", "Waited");

/// Interval between two looks at the transition.
const POLL: Duration = Duration::from_millis(250);
/// Extra time on top of the daemon's own hardware timeouts.
const MARGIN: Duration = Duration::from_secs(60);
/// Graceful phase assumed when `--graceful-timeout` is not given (the daemon
/// uses its configured default, 60 s as shipped; allow for longer ones).
const ASSUMED_GRACEFUL_S: u64 = 300;
/// How long a request may take to show up as a pending transition before a
/// settled, wrong state counts as a failure.
const SETTLE_GRACE: Duration = Duration::from_secs(2);

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
    /// Progress label.
    doing: &'static str,
    target: PowerState,
    bound: Duration,
}

fn plan(action: PowerAction) -> PowerPlan {
    match action {
        PowerAction::On => PowerPlan {
            action: "power on the host",
            name: "On",
            consequence: None,
            doing: "Powering on",
            target: PowerState::On,
            bound: MARGIN,
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
            doing: "Powering off",
            target: PowerState::Off,
            bound: MARGIN,
        },
        PowerAction::Off {
            force: false,
            graceful_timeout,
        } => {
            let after = match graceful_timeout {
                Some(s) if s > 0 => format!("after {s} s"),
                _ => "after the configured timeout".to_owned(),
            };
            let graceful = match graceful_timeout {
                Some(s) if s > 0 => u64::from(s),
                _ => ASSUMED_GRACEFUL_S,
            };
            PowerPlan {
                action: "power off the host",
                name: "Off",
                consequence: Some(format!(
                    "The host OS will be asked to shut down; power is forced off if it is still on {after}."
                )),
                doing: "Powering off",
                target: PowerState::Off,
                bound: Duration::from_secs(graceful) + MARGIN,
            }
        }
        PowerAction::Cycle => PowerPlan {
            action: "power-cycle the host",
            name: "Cycle",
            consequence: Some(
                "The host will be forced off, without an OS shutdown, then powered on again."
                    .to_owned(),
            ),
            doing: "Power cycling",
            target: PowerState::On,
            bound: MARGIN + Duration::from_secs(30),
        },
        PowerAction::Reset => PowerPlan {
            action: "reset the host",
            name: "Reset",
            consequence: Some("The host will be reset at once, without an OS shutdown.".to_owned()),
            doing: "Resetting",
            target: PowerState::On,
            bound: MARGIN,
        },
    }
}

fn power(args: PowerArgs, ctx: &Ctx) -> Result<Output, CliError> {
    let action = args.action;
    let plan = plan(action);
    if let Some(consequence) = &plan.consequence {
        ctx.confirm(plan.action, consequence)?;
    }
    let client = ctx.connect()?;
    client.call(|c| {
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
    let result = Record::new().field(ACTION, Value::text(plan.name));
    if args.no_wait {
        return Ok(Output::new()
            .notice(format!("Request to {} accepted.", plan.action))
            .json_result(result.field(WAITED, Value::Bool(false))));
    }
    let state = wait_for(&client, &plan, ctx.quiet || ctx.json)?;
    Ok(Output::new()
        .notice(format!("Power is {}.", state.as_str()))
        .json_result(
            result
                .field(WAITED, Value::Bool(true))
                .field(POWER_STATE, Value::text(state.as_str()))
                .field(PENDING, Value::text(Transition::None.as_str())),
        ))
}

fn is_transitioning(s: PowerState) -> bool {
    matches!(
        s,
        PowerState::TransitioningToOn | PowerState::TransitioningToOff
    )
}

/// Poll until the transition has finished in the target state, it has
/// finished in another state (exit 1), or the bound passes (exit 6).
fn wait_for(client: &Client, plan: &PowerPlan, quiet: bool) -> Result<PowerState, CliError> {
    let start = Instant::now();
    let mut progress = Progress::new(quiet);
    let mut seen_pending = false;
    loop {
        let (pending, state) = client.call(|c| {
            let p = conn::chassis(c)?;
            Ok((p.pending_transition()?, p.power_state()?))
        })?;
        let elapsed = start.elapsed();
        if pending != Transition::None {
            seen_pending = true;
        } else if state == plan.target {
            progress.finish();
            return Ok(state);
        } else if !is_transitioning(state) && (seen_pending || elapsed > SETTLE_GRACE) {
            progress.finish();
            return Err(CliError::new(
                names::UNEXPECTED_STATE,
                format!(
                    "could not {}: power is {} after the transition",
                    plan.action,
                    state.as_str()
                ),
                Exit::Failure,
            ));
        }
        if elapsed >= plan.bound {
            progress.finish();
            return Err(CliError::new(
                names::TIMEOUT,
                format!(
                    "gave up waiting to {} after {} s (PowerState {}, PendingTransition {})",
                    plan.action,
                    plan.bound.as_secs(),
                    state.as_str(),
                    pending.as_str()
                ),
                Exit::Timeout,
            ));
        }
        progress.update(&format!("{}... {}s", plan.doing, elapsed.as_secs()));
        thread::sleep(POLL.min(plan.bound.saturating_sub(elapsed)));
    }
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
    fn wait_bounds() {
        assert_eq!(plan(PowerAction::On).bound, Duration::from_secs(60));
        let off = |force, graceful_timeout| PowerAction::Off {
            force,
            graceful_timeout,
        };
        assert_eq!(plan(off(true, None)).bound, Duration::from_secs(60));
        assert_eq!(plan(off(false, Some(10))).bound, Duration::from_secs(70));
        assert_eq!(plan(off(false, None)).bound, Duration::from_secs(360));
        assert_eq!(plan(off(false, Some(0))).bound, Duration::from_secs(360));
        assert!(plan(PowerAction::On).consequence.is_none());
        for a in [off(false, None), PowerAction::Cycle, PowerAction::Reset] {
            assert!(plan(a).consequence.is_some());
        }
    }
}
