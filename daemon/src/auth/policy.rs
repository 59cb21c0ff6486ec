//! The one table that decides who may call what.
//!
//! Every method of every `org.bmcd` interface has exactly one row here: the
//! least role that may call it and whether it is sensitive (needs a fresh
//! re-authentication through `org.bmcd.Session1.Authenticate`). A method
//! without a row is refused (`authorize` fails closed), and a unit test
//! compares the table with the live introspection of every interface, so a
//! new method cannot ship without a decision.
//!
//! Properties are not in the table: every property is read-only and
//! readable by everyone the bus policy lets in (`Properties.Get`/`GetAll`),
//! and `Properties.Set` always fails (zbus answers `PropertyReadOnly`; the
//! bus policy refuses it to non-root callers before that).

use std::fmt;

use bmcd_api::{
    CHASSIS_IFACE, COOLING_IFACE, DUMP_IFACE, DUMP_MANAGER_IFACE, FIRMWARE_MANAGER_IFACE,
    LOG_IFACE, SESSION_IFACE, SIMULATION_IFACE, TASK_IFACE,
};

/// What a caller may do, from least to most. `Ord` follows that order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Anyone the bus policy lets in: read properties, authenticate.
    ReadOnly,
    /// Members of the operator group: power and identify, end overrides.
    Operator,
    /// uid 0 and members of the admin group: persistent settings, overrides.
    Administrator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::ReadOnly => "ReadOnly",
            Role::Operator => "Operator",
            Role::Administrator => "Administrator",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub interface: &'static str,
    pub method: &'static str,
    /// The least role that may call it.
    pub role: Role,
    /// Needs a fresh authentication (consumed by the call, or a window).
    pub sensitive: bool,
    /// Why, in a few words (printed in the README table).
    pub why: &'static str,
    /// Changes something (state, settings, grants): every call, allowed or
    /// refused, goes to the audit hook. Only pure queries are `false`.
    pub mutating: bool,
}

const fn rule(
    interface: &'static str,
    method: &'static str,
    role: Role,
    sensitive: bool,
    why: &'static str,
) -> Rule {
    Rule {
        interface,
        method,
        role,
        sensitive,
        why,
        mutating: true,
    }
}

/// A row for a method that only reads (not audited).
const fn query(interface: &'static str, method: &'static str, why: &'static str) -> Rule {
    Rule {
        mutating: false,
        ..rule(interface, method, ReadOnly, false, why)
    }
}

use Role::{Administrator, Operator, ReadOnly};

/// The table. Order is the order of the README.
pub const POLICY: &[Rule] = &[
    rule(CHASSIS_IFACE, "PowerOn", Operator, false, "host power"),
    rule(
        CHASSIS_IFACE,
        "PowerOff",
        Operator,
        false,
        "host power (graceful or forced)",
    ),
    rule(CHASSIS_IFACE, "PowerCycle", Operator, false, "host power"),
    rule(CHASSIS_IFACE, "Reset", Operator, false, "host reset line"),
    rule(
        CHASSIS_IFACE,
        "SetIdentify",
        Operator,
        false,
        "identify LED, harmless",
    ),
    rule(
        CHASSIS_IFACE,
        "SetRestorePolicy",
        Administrator,
        true,
        "persistent setting: decides what the host does after a power loss",
    ),
    rule(
        COOLING_IFACE,
        "SetManual",
        Administrator,
        true,
        "overrides thermal control: a low level can overheat the host",
    ),
    rule(
        COOLING_IFACE,
        "SetAuto",
        Operator,
        false,
        "ends an override and returns to the safe automatic curve",
    ),
    rule(
        SIMULATION_IFACE,
        "SetAmbient",
        Administrator,
        false,
        "simulated platform only",
    ),
    rule(
        SIMULATION_IFACE,
        "SetFanFault",
        Administrator,
        false,
        "simulated platform only",
    ),
    rule(
        SIMULATION_IFACE,
        "SetSensorFault",
        Administrator,
        false,
        "simulated platform only",
    ),
    rule(
        SIMULATION_IFACE,
        "SetHostResponsive",
        Administrator,
        false,
        "simulated platform only",
    ),
    rule(
        SIMULATION_IFACE,
        "AppendEvents",
        Administrator,
        false,
        "simulated platform only",
    ),
    rule(
        SESSION_IFACE,
        "Authenticate",
        ReadOnly,
        false,
        "re-authentication for sensitive calls (rate-limited)",
    ),
    query(
        SESSION_IFACE,
        "WhoAmI",
        "the caller's own uid, user and role",
    ),
    rule(
        TASK_IFACE,
        "Cancel",
        Operator,
        false,
        "only the task's owner or an Administrator (checked per task), while Cancellable",
    ),
    rule(
        FIRMWARE_MANAGER_IFACE,
        "StartUpdate",
        Administrator,
        true,
        "replaces the BMC's firmware (signed images only, into the slot not running)",
    ),
    rule(
        FIRMWARE_MANAGER_IFACE,
        "Activate",
        Administrator,
        true,
        "decides which firmware the BMC boots next",
    ),
    rule(
        FIRMWARE_MANAGER_IFACE,
        "Rollback",
        Administrator,
        true,
        "decides which firmware the BMC boots next",
    ),
    query(
        FIRMWARE_MANAGER_IFACE,
        "Inspect",
        "reads only the image the caller itself opened; writes nothing",
    ),
    query(
        LOG_IFACE,
        "GetEntries",
        "reads the log; the audit log only for Administrators (checked per log)",
    ),
    rule(
        LOG_IFACE,
        "Clear",
        Administrator,
        true,
        "destroys the event log's history (the audit log only rotates: NotAllowed)",
    ),
    rule(
        DUMP_MANAGER_IFACE,
        "Create",
        Administrator,
        false,
        "a diagnostic dump holds the logs, the state and the configuration",
    ),
    rule(
        DUMP_IFACE,
        "Open",
        Administrator,
        false,
        "a descriptor of a dump: the logs, the state and the configuration",
    ),
    rule(DUMP_IFACE, "Delete", Administrator, false, "removes a dump"),
];

/// The row of `interface.method`, if there is one.
pub fn lookup(interface: &str, method: &str) -> Option<&'static Rule> {
    POLICY
        .iter()
        .find(|r| r.interface == interface && r.method == method)
}

/// The table as Markdown, for the README and `bmcd --print-policy`.
pub fn markdown() -> String {
    let mut s = String::from(
        "| Interface | Method | Least role | Re-authentication | Why |\n\
         |---|---|---|---|---|\n\
         | every `org.bmcd` interface | reading properties (`Get`, `GetAll`), `Introspect`, `GetManagedObjects` | ReadOnly | no | all properties are read-only |\n",
    );
    for r in POLICY {
        s.push_str(&format!(
            "| `{}` | `{}` | {} | {} | {} |\n",
            r.interface,
            r.method,
            r.role,
            if r.sensitive { "yes" } else { "no" },
            r.why
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn roles_are_ordered() {
        assert!(ReadOnly < Operator && Operator < Administrator);
        assert_eq!(Administrator.to_string(), "Administrator");
    }

    #[test]
    fn one_row_per_method() {
        let mut seen = HashSet::new();
        for r in POLICY {
            assert!(seen.insert((r.interface, r.method)), "{r:?} twice");
            assert!(r.interface.starts_with("org.bmcd."), "{r:?}");
            assert!(!r.why.is_empty() && !r.why.contains('|'), "{r:?}");
        }
    }

    #[test]
    fn decisions_of_the_issue() {
        let role = |i, m| lookup(i, m).map(|r| (r.role, r.sensitive));
        for m in ["PowerOn", "PowerOff", "PowerCycle", "Reset", "SetIdentify"] {
            assert_eq!(role(CHASSIS_IFACE, m), Some((Operator, false)), "{m}");
        }
        assert_eq!(
            role(CHASSIS_IFACE, "SetRestorePolicy"),
            Some((Administrator, true))
        );
        assert_eq!(
            role(COOLING_IFACE, "SetManual"),
            Some((Administrator, true))
        );
        assert_eq!(role(COOLING_IFACE, "SetAuto"), Some((Operator, false)));
        for m in [
            "SetAmbient",
            "SetFanFault",
            "SetSensorFault",
            "SetHostResponsive",
            "AppendEvents",
        ] {
            assert_eq!(
                role(SIMULATION_IFACE, m),
                Some((Administrator, false)),
                "{m}"
            );
        }
        assert_eq!(role(SESSION_IFACE, "Authenticate"), Some((ReadOnly, false)));
        assert_eq!(role(SESSION_IFACE, "WhoAmI"), Some((ReadOnly, false)));
        assert_eq!(role(TASK_IFACE, "Cancel"), Some((Operator, false)));
        let audited = |i, m| lookup(i, m).map(|r| r.mutating);
        assert_eq!(audited(SESSION_IFACE, "WhoAmI"), Some(false));
        assert_eq!(audited(SESSION_IFACE, "Authenticate"), Some(true));
        assert_eq!(audited(TASK_IFACE, "Cancel"), Some(true));
        for m in ["StartUpdate", "Activate", "Rollback"] {
            assert_eq!(
                role(FIRMWARE_MANAGER_IFACE, m),
                Some((Administrator, true)),
                "{m}"
            );
            assert_eq!(audited(FIRMWARE_MANAGER_IFACE, m), Some(true), "{m}");
        }
        assert_eq!(
            role(FIRMWARE_MANAGER_IFACE, "Inspect"),
            Some((ReadOnly, false))
        );
        assert_eq!(audited(FIRMWARE_MANAGER_IFACE, "Inspect"), Some(false));
        assert_eq!(role(LOG_IFACE, "GetEntries"), Some((ReadOnly, false)));
        assert_eq!(audited(LOG_IFACE, "GetEntries"), Some(false));
        assert_eq!(role(LOG_IFACE, "Clear"), Some((Administrator, true)));
        assert_eq!(audited(LOG_IFACE, "Clear"), Some(true));
        assert_eq!(
            role(DUMP_MANAGER_IFACE, "Create"),
            Some((Administrator, false))
        );
        for m in ["Open", "Delete"] {
            assert_eq!(role(DUMP_IFACE, m), Some((Administrator, false)), "{m}");
            assert_eq!(audited(DUMP_IFACE, m), Some(true), "{m}");
        }
        assert_eq!(role(CHASSIS_IFACE, "Bogus"), None);
        assert_eq!(role("org.bmcd.Fan1", "PowerOn"), None);
    }

    #[test]
    fn markdown_has_every_row() {
        let md = markdown();
        assert_eq!(md.lines().count(), POLICY.len() + 3);
        assert!(md.contains("| `org.bmcd.Chassis1` | `SetRestorePolicy` | Administrator | yes |"));
        assert!(md.contains("| `org.bmcd.Cooling1` | `SetAuto` | Operator | no |"));
    }
}
