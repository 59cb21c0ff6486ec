//! `bmcctl fan …`: the cooling zone and its fans.

use std::collections::HashMap;

use bmcd_api::zbus;
use bmcd_api::{CoolingMode, Options};
use zbus::zvariant::OwnedValue;

use super::Ctx;
use crate::cli::{FanCmd, ModeAction};
use crate::conn::{self, Client};
use crate::error::CliError;
use crate::output::{FieldSpec, Output, Record, Table, Value};
use crate::time;

// Zone fields.
pub const MODE: FieldSpec = FieldSpec::new("Mode", "Mode");
pub const AUTO_LEVEL: FieldSpec = FieldSpec::new("AutoLevel", "Auto level");
pub const MANUAL_LEVEL: FieldSpec = FieldSpec::new("ManualLevel", "Manual level");
pub const MANUAL_FANS: FieldSpec = FieldSpec::new("ManualFans", "Manual fans");
pub const MANUAL_EXPIRES: FieldSpec = FieldSpec::new("ManualExpires", "Manual expires");
pub const FAILSAFE_LEVEL: FieldSpec = FieldSpec::new("FailsafeLevel", "Failsafe level");
pub const FAILSAFE_REASON: FieldSpec = FieldSpec::new("FailsafeReason", "Failsafe reason");
pub const TEMPERATURES: FieldSpec = FieldSpec::new("Temperatures", "Temperatures");

// Fan fields: table columns, and the labels of `fan show`.
pub const NAME: FieldSpec = FieldSpec::new("Name", "NAME");
pub const RPM: FieldSpec = FieldSpec::num("Rpm", "RPM");
pub const PWM: FieldSpec = FieldSpec::num("Pwm", "PWM%");
pub const PRESENT: FieldSpec = FieldSpec::new("Present", "PRESENT");
pub const HEALTH: FieldSpec = FieldSpec::new("Health", "HEALTH");
const SHOW_NAME: FieldSpec = FieldSpec::new("Name", "Name");
const SHOW_PATH: FieldSpec = FieldSpec::new("Path", "Object path");
const SHOW_RPM: FieldSpec = FieldSpec::new("Rpm", "Speed (RPM)");
const SHOW_PWM: FieldSpec = FieldSpec::new("Pwm", "PWM");
const SHOW_PRESENT: FieldSpec = FieldSpec::new("Present", "Present");
const SHOW_HEALTH: FieldSpec = FieldSpec::new("Health", "Health");

pub fn run(cmd: FanCmd, ctx: &Ctx) -> Result<Output, CliError> {
    match cmd {
        FanCmd::List => list(ctx),
        FanCmd::Show { name } => show(&name, ctx),
        FanCmd::Mode { action } => match action {
            None | Some(ModeAction::Get) => mode_get(ctx),
            Some(ModeAction::Auto) => mode_auto(ctx),
            Some(ModeAction::Manual {
                level,
                fans,
                timeout,
            }) => mode_manual(level, &fans, timeout.unwrap_or(0), ctx),
        },
    }
}

/// One fan as read from the ObjectManager; a property the daemon did not
/// send (or sent with another type) is `None`.
#[derive(Debug, Clone, PartialEq)]
struct Fan {
    path: String,
    name: String,
    rpm: Option<u32>,
    pwm: Option<u8>,
    present: Option<bool>,
    health: Option<String>,
}

type Props = HashMap<String, OwnedValue>;

fn fan_from_props(path: &str, props: &Props) -> Fan {
    let get = |k: &str| props.get(k);
    let name = get("Name")
        .and_then(|v| <&str>::try_from(v).ok())
        .map(str::to_owned)
        .unwrap_or_else(|| path.rsplit('/').next().unwrap_or(path).to_owned());
    Fan {
        path: path.to_owned(),
        name,
        rpm: get("Rpm").and_then(|v| u32::try_from(v).ok()),
        pwm: get("Pwm").and_then(|v| u8::try_from(v).ok()),
        present: get("Present").and_then(|v| bool::try_from(v).ok()),
        health: get("Health")
            .and_then(|v| <&str>::try_from(v).ok())
            .map(str::to_owned),
    }
}

/// Every object implementing `org.bmcd.Fan1`, sorted by name. Objects
/// without it (the intermediate nodes come back with empty dicts, the zone,
/// the chassis) are skipped.
fn read_fans(client: &Client) -> Result<Vec<Fan>, CliError> {
    let mut fans: Vec<Fan> = client
        .objects_with(bmcd_api::FAN_IFACE)?
        .iter()
        .map(|(path, props)| fan_from_props(path, props))
        .collect();
    fans.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.path.cmp(&b.path)));
    Ok(fans)
}

fn opt<T>(v: Option<T>, f: impl FnOnce(T) -> Value) -> Value {
    v.map_or(Value::Null, f)
}

fn fans_table(fans: &[Fan]) -> Table {
    Table {
        columns: vec![NAME, RPM, PWM, PRESENT, HEALTH],
        rows: fans
            .iter()
            .map(|f| {
                vec![
                    Value::text(f.name.clone()),
                    opt(f.rpm, |v| Value::Int(i64::from(v))),
                    opt(f.pwm, |v| Value::Int(i64::from(v))),
                    opt(f.present, Value::Bool),
                    opt(f.health.clone(), Value::Text),
                ]
            })
            .collect(),
    }
}

fn fan_record(f: &Fan) -> Record {
    Record::new()
        .field(SHOW_NAME, Value::text(f.name.clone()))
        .field(SHOW_PATH, Value::text(f.path.clone()))
        .field(SHOW_RPM, opt(f.rpm, |v| Value::Int(i64::from(v))))
        .field(SHOW_PWM, opt(f.pwm, Value::Percent))
        .field(SHOW_PRESENT, opt(f.present, Value::Bool))
        .field(SHOW_HEALTH, opt(f.health.clone(), Value::Text))
}

/// The cooling zone's properties.
#[derive(Debug, Clone, PartialEq)]
struct Zone {
    mode: CoolingMode,
    auto_level: u8,
    manual_level: u8,
    manual_fans: Vec<String>,
    manual_expires: u64,
    failsafe_level: u8,
    failsafe_reason: String,
    temperatures: HashMap<String, f64>,
}

/// The zone's properties, in one `GetAll`.
fn read_zone(client: &Client) -> Result<Zone, CliError> {
    let mut p = client.get_all(bmcd_api::FANS_PATH, bmcd_api::COOLING_IFACE)?;
    Ok(Zone {
        mode: p.take("Mode")?,
        auto_level: p.take("AutoLevel")?,
        manual_level: p.take("ManualLevel")?,
        manual_fans: p.take("ManualFans")?,
        manual_expires: p.take("ManualExpires")?,
        failsafe_level: p.take("FailsafeLevel")?,
        failsafe_reason: p.take("FailsafeReason")?,
        temperatures: p.take("Temperatures")?,
    })
}

fn zone_record(z: &Zone, with_temperatures: bool) -> Record {
    let manual = z.mode == CoolingMode::Manual;
    let mut r = Record::new()
        .field(MODE, Value::text(z.mode.as_str()))
        .field(AUTO_LEVEL, Value::Percent(z.auto_level));
    r = if manual {
        r.field(MANUAL_LEVEL, Value::Percent(z.manual_level))
    } else {
        r.field_as(MANUAL_LEVEL, Value::Percent(z.manual_level), "-")
    };
    // As sent: the fans under the override in Manual, empty otherwise.
    let fans = Value::List(z.manual_fans.iter().cloned().map(Value::Text).collect());
    r = r.field(MANUAL_FANS, fans);
    r = if manual && z.manual_expires == 0 {
        r.field_as(MANUAL_EXPIRES, Value::Null, "never")
    } else {
        r.field(MANUAL_EXPIRES, Value::Deadline(z.manual_expires))
    };
    r = r
        .field(FAILSAFE_LEVEL, Value::Percent(z.failsafe_level))
        .field(FAILSAFE_REASON, Value::text(z.failsafe_reason.clone()));
    if with_temperatures {
        let mut temps: Vec<(String, Value)> = z
            .temperatures
            .iter()
            .map(|(k, v)| (k.clone(), Value::Celsius(*v)))
            .collect();
        temps.sort_by(|a, b| a.0.cmp(&b.0));
        r = r.field(TEMPERATURES, Value::Map(temps));
    }
    r
}

fn list(ctx: &Ctx) -> Result<Output, CliError> {
    let client = ctx.connect()?;
    let zone = read_zone(&client)?;
    let fans = read_fans(&client)?;
    Ok(Output::new()
        .record(Some("Zone"), zone_record(&zone, true))
        .table(Some("Fans"), fans_table(&fans)))
}

fn find<'a>(fans: &'a [Fan], name: &str) -> Result<&'a Fan, CliError> {
    let path = bmcd_api::fan_path(name);
    fans.iter()
        .find(|f| f.name == name)
        .or_else(|| fans.iter().find(|f| f.path == path))
        .ok_or_else(|| {
            let known: Vec<&str> = fans.iter().map(|f| f.name.as_str()).collect();
            let known = if known.is_empty() {
                "there are none".to_owned()
            } else {
                format!("fans: {}", known.join(", "))
            };
            CliError::daemon(bmcd_api::Error::NotFound(format!(
                "no fan named '{name}' ({known})"
            )))
        })
}

fn show(name: &str, ctx: &Ctx) -> Result<Output, CliError> {
    let client = ctx.connect()?;
    let fans = read_fans(&client)?;
    let fan = find(&fans, name)?;
    Ok(Output::new().record(None, fan_record(fan)))
}

fn mode_get(ctx: &Ctx) -> Result<Output, CliError> {
    let client = ctx.connect()?;
    let zone = read_zone(&client)?;
    Ok(Output::new().record(None, zone_record(&zone, false)))
}

fn mode_auto(ctx: &Ctx) -> Result<Output, CliError> {
    let client = ctx.connect()?;
    client.call(|c| conn::cooling(c)?.set_auto(Options::new()))?;
    let zone = read_zone(&client)?;
    Ok(Output::new()
        .notice(format!("Fan mode is {}.", zone.mode.as_str()))
        .json_result(zone_record(&zone, false)))
}

fn mode_manual(level: u8, fans: &[String], timeout: u32, ctx: &Ctx) -> Result<Output, CliError> {
    let client = ctx.connect()?;
    let names: Vec<&str> = fans.iter().map(String::as_str).collect();
    client.call(|c| conn::cooling(c)?.set_manual(level, &names, timeout, Options::new()))?;
    let zone = read_zone(&client)?;
    let which = if fans.is_empty() {
        "All fans".to_owned()
    } else {
        format!("Fans {}", fans.join(", "))
    };
    let until = if timeout == 0 {
        "until `bmcctl fan mode auto`".to_owned()
    } else {
        format!("for {}", time::short_duration(u64::from(timeout)))
    };
    Ok(Output::new()
        .notice(format!(
            "{which} at {level}% {until} (mode {}).",
            zone.mode.as_str()
        ))
        .json_result(zone_record(&zone, false)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::{render_console, render_json};
    use zbus::zvariant::Value as ZValue;

    fn ov<'a>(v: impl Into<ZValue<'a>>) -> OwnedValue {
        v.into().try_into_owned().unwrap()
    }

    fn props(name: &str, rpm: u32) -> Props {
        let mut p = Props::new();
        p.insert("Name".into(), ov(name));
        p.insert("Rpm".into(), ov(rpm));
        p.insert("Pwm".into(), ov(40u8));
        p.insert("Present".into(), ov(true));
        p.insert("Health".into(), ov("Ok"));
        p
    }

    #[test]
    fn fans_decode_and_tolerate_missing_properties() {
        let f = fan_from_props("/org/bmcd/fans/fan0", &props("fan0", 5400));
        assert_eq!(f.rpm, Some(5400));
        assert_eq!(f.health.as_deref(), Some("Ok"));
        let g = fan_from_props("/org/bmcd/fans/cpu", &Props::new());
        assert_eq!(g.name, "cpu");
        assert_eq!(g.rpm, None);
        let mut wrong = Props::new();
        wrong.insert("Rpm".into(), ov("fast"));
        assert_eq!(fan_from_props("/x", &wrong).rpm, None);
    }

    fn two_fans() -> Vec<Fan> {
        vec![
            fan_from_props("/org/bmcd/fans/fan0", &props("fan0", 5400)),
            fan_from_props("/org/bmcd/fans/fan10", &Props::new()),
        ]
    }

    #[test]
    fn fan_table() {
        let text = render_console(&Output::new().table(None, fans_table(&two_fans())), false);
        assert_eq!(
            text,
            "NAME    RPM  PWM%  PRESENT  HEALTH\n\
             fan0   5400    40  yes      Ok\n\
             fan10     -     -  -        -\n"
        );
    }

    #[test]
    fn unknown_fan_is_not_found_with_the_known_names() {
        let fans = two_fans();
        assert_eq!(
            find(&fans, "fan10").map(|f| f.path.as_str()).ok(),
            Some("/org/bmcd/fans/fan10")
        );
        let e = find(&fans, "fan9").err().unwrap();
        assert_eq!(e.exit, crate::error::Exit::NotFound);
        assert_eq!(e.name, "org.bmcd.Error.NotFound");
        assert_eq!(e.message, "no fan named 'fan9' (fans: fan0, fan10)");
    }

    fn zone(mode: CoolingMode) -> Zone {
        Zone {
            mode,
            auto_level: 35,
            manual_level: 0,
            manual_fans: vec![],
            manual_expires: 0,
            failsafe_level: 100,
            failsafe_reason: String::new(),
            temperatures: HashMap::from([("inlet".into(), 25.04), ("cpu0".into(), f64::NAN)]),
        }
    }

    #[test]
    fn zone_summary() {
        let text = render_console(
            &Output::new().record(None, zone_record(&zone(CoolingMode::Auto), true)),
            false,
        );
        assert_eq!(
            text,
            "Mode:             Auto\n\
             Auto level:       35%\n\
             Manual level:     -\n\
             Manual fans:      -\n\
             Manual expires:   -\n\
             Failsafe level:   100%\n\
             Failsafe reason:  -\n\
             Temperatures:     cpu0 unreadable, inlet 25.0 °C\n"
        );
        let mut z = zone(CoolingMode::Manual);
        z.manual_fans = vec!["fan0".into(), "fan1".into()];
        let manual = zone_record(&z, false);
        let text = render_console(&Output::new().record(None, manual.clone()), false);
        assert!(text.contains("Manual fans:      fan0, fan1\n"), "{text}");
        assert!(text.contains("Manual expires:   never\n"), "{text}");
        let v: serde_json::Value =
            serde_json::from_str(&render_json(&Output::new().record(None, manual))).unwrap();
        assert_eq!(v["Mode"], "Manual");
        assert_eq!(v["ManualFans"], serde_json::json!(["fan0", "fan1"]));
        assert!(v["ManualExpires"].is_null());
    }
}
