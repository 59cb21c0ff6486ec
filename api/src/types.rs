//! Wire types. Every enum travels as a D-Bus string (`s`) holding the
//! variant's name, so busctl/gdbus users read and write plain words and new
//! variants can be added without changing a signature.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zbus::zvariant::{OwnedValue, Signature, Str, Type, Value};

/// The value did not name a variant of the enum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownVariant {
    pub type_name: &'static str,
    pub value: String,
    pub expected: &'static [&'static str],
}

impl fmt::Display for UnknownVariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "'{}' is not a valid {} (expected one of: {})",
            self.value,
            self.type_name,
            self.expected.join(", ")
        )?;
        match self
            .expected
            .iter()
            .find(|e| e.eq_ignore_ascii_case(&self.value))
        {
            Some(exact) => write!(f, "; words are case-sensitive: did you mean {exact}?"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for UnknownVariant {}

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// Every variant's wire name, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$(stringify!($variant)),+];

            /// The wire name of this variant.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => stringify!($variant)),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownVariant;
            /// Only the exact wire name (`AlwaysOn`, not `alwayson`): one
            /// spelling on the bus, in the config and in state files.
            /// Friendlier matching for people is the CLI's business.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $(if s == stringify!($variant) {
                    return Ok($name::$variant);
                })+
                Err(UnknownVariant {
                    type_name: stringify!($name),
                    value: s.to_owned(),
                    expected: Self::NAMES,
                })
            }
        }

        impl Type for $name {
            const SIGNATURE: &'static Signature = &Signature::Str;
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }

        impl From<$name> for Value<'static> {
            fn from(v: $name) -> Self {
                Value::Str(Str::from_static(v.as_str()))
            }
        }

        impl TryFrom<$name> for OwnedValue {
            type Error = zbus::zvariant::Error;
            fn try_from(v: $name) -> Result<Self, Self::Error> {
                Value::from(v).try_into_owned()
            }
        }

        impl<'a> TryFrom<Value<'a>> for $name {
            type Error = zbus::zvariant::Error;
            fn try_from(v: Value<'a>) -> Result<Self, zbus::zvariant::Error> {
                match v {
                    Value::Str(s) => s
                        .as_str()
                        .parse()
                        .map_err(|e: UnknownVariant| zbus::zvariant::Error::Message(e.to_string())),
                    _ => Err(zbus::zvariant::Error::IncorrectType),
                }
            }
        }

        impl TryFrom<OwnedValue> for $name {
            type Error = zbus::zvariant::Error;
            fn try_from(v: OwnedValue) -> Result<Self, zbus::zvariant::Error> {
                Value::from(v).try_into()
            }
        }
    };
}

string_enum! {
    /// The host's power state as the chassis sees it (OpenBMC's vocabulary).
    PowerState { Off, TransitioningToOn, On, TransitioningToOff }
}

string_enum! {
    /// The transition the chassis is carrying out; `None` when idle.
    Transition { None, On, Off, Cycle, Reset }
}

string_enum! {
    /// How `PowerOff` takes the host down.
    PowerOffMode {
        /// Ask the host OS to shut down (a short power-button press); if power
        /// is still on after the timeout, fall back to a forced off.
        Graceful,
        /// Hold the power button until power-good drops.
        Force,
    }
}

string_enum! {
    /// What the chassis does with power when the BMC starts and the host is off.
    RestorePolicy {
        /// Power the host on.
        AlwaysOn,
        /// Leave the host off.
        AlwaysOff,
        /// Power on if the host was last asked to be on.
        Restore,
        /// Take no action (same as AlwaysOff on this chassis, kept for OpenBMC parity).
        None,
    }
}

string_enum! {
    /// Health of a fan.
    Health {
        Ok,
        /// Spinning, but slower than the model of its duty cycle allows.
        Degraded,
        /// No tachometer signal while driven, or not readable at all.
        Failed,
    }
}

string_enum! {
    /// Who decides the fan duty cycle.
    CoolingMode {
        /// The control loop maps temperatures to a level through the curve.
        Auto,
        /// An operator override (with an optional expiry).
        Manual,
        /// A fan failed or a sensor was lost: every fan at the failsafe level.
        Failsafe,
    }
}

string_enum! {
    /// Severity of an event.
    Severity { Critical, Warning, Info }
}

string_enum! {
    /// Severity of a log entry: the eight syslog levels (RFC 5424), most
    /// severe first. On the wire a word; in the store its number 0–7
    /// (`LogSeverity::ALL` index).
    LogSeverity {
        Emergency,
        Alert,
        Critical,
        Error,
        Warning,
        Notice,
        Informational,
        Debug,
    }
}

impl LogSeverity {
    /// The syslog number: 0 (Emergency) … 7 (Debug).
    pub fn level(self) -> u8 {
        self as u8
    }
    /// The severity of syslog number `n`, `None` above 7.
    pub fn from_level(n: u8) -> Option<LogSeverity> {
        LogSeverity::ALL.get(usize::from(n)).copied()
    }
}

string_enum! {
    /// Where a `Task1` is in its life. The last four are final: a finished
    /// task never changes again.
    TaskState {
        /// Accepted, not started yet.
        Pending,
        /// At work; `Progress`, `Phase` and `Message` move.
        Running,
        /// Cancel was asked; the work stops at its next safe point.
        Cancelling,
        /// Done; `Result` holds what it produced.
        Completed,
        /// Stopped by an error; `Error` says which.
        Failed,
        /// Stopped by `Cancel`.
        Cancelled,
        /// bmcd stopped or died while the task ran; `Error` says why.
        Interrupted,
    }
}

string_enum! {
    /// What a firmware slot holds. A slot is bootable only when it is
    /// `Active`, `Backup` or `Staged`: its content was read back and its
    /// digest matched the signed manifest.
    FirmwareState {
        /// The slot the BMC runs now (`BootedNow`).
        Active,
        /// A good image that is not running: the rollback target.
        Backup,
        /// Written and verified by an update, not booted yet.
        Staged,
        /// An update is writing it (or was, when bmcd stopped: the next
        /// start makes it `Invalid`).
        Writing,
        /// Its content cannot be trusted (a write failed, was cancelled or
        /// interrupted, or read-back found another digest). Never bootable.
        Invalid,
        /// Nothing was ever installed.
        Empty,
    }
}

impl TaskState {
    /// Completed, Failed, Cancelled or Interrupted: nothing changes any more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            TaskState::Completed
                | TaskState::Failed
                | TaskState::Cancelled
                | TaskState::Interrupted
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_are_strings_on_the_wire() {
        for sig in [
            PowerState::SIGNATURE,
            Transition::SIGNATURE,
            PowerOffMode::SIGNATURE,
            RestorePolicy::SIGNATURE,
            Health::SIGNATURE,
            CoolingMode::SIGNATURE,
            Severity::SIGNATURE,
            TaskState::SIGNATURE,
            LogSeverity::SIGNATURE,
        ] {
            assert_eq!(sig.to_string(), "s");
        }
    }

    #[test]
    fn round_trip_through_value() {
        for p in RestorePolicy::ALL {
            let v = Value::from(*p);
            assert_eq!(RestorePolicy::try_from(v).ok(), Some(*p));
        }
        let bad = RestorePolicy::try_from(Value::from("Sometimes"));
        assert!(bad.is_err());
        assert!(RestorePolicy::try_from(Value::from(3u32)).is_err());
    }

    #[test]
    fn parse_takes_the_exact_wire_name_only() {
        assert_eq!(
            "AlwaysOn".parse::<RestorePolicy>().ok(),
            Some(RestorePolicy::AlwaysOn)
        );
        assert!("always".parse::<RestorePolicy>().is_err());
        let e = "alwayson"
            .parse::<RestorePolicy>()
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some(
                "'alwayson' is not a valid RestorePolicy (expected one of: AlwaysOn, \
                 AlwaysOff, Restore, None); words are case-sensitive: did you mean AlwaysOn?"
            )
        );
        let e = "x".parse::<CoolingMode>().err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("'x' is not a valid CoolingMode (expected one of: Auto, Manual, Failsafe)")
        );
    }
}
