//! The hardware boundary.
//!
//! Architecture invariant: nothing in `hw/` knows zbus or the bus contract.
//! Every trait here is small, synchronous and cheap to call (a sysfs read, a
//! GPIO ioctl, a lock on the simulator's state); callers on the async side
//! run them with `tokio::task::spawn_blocking` when they may block on I/O.
//!
//! Backends:
//! - `sim`: a physical model (power sequencing with delays, fans whose RPM
//!   follows PWM with lag and noise, temperatures that follow power and
//!   airflow), the default platform, fully testable;
//! - `hwmon`: fans and temperatures through Linux hwmon sysfs files;
//! - `gpio`: power/reset buttons, power-good and identify LED on a GPIO
//!   character device.

use std::fmt;
use std::io;
use std::sync::Arc;

pub mod control;
pub mod firmware;
pub mod gpio;
pub mod hwmon;
pub mod sim;

/// An error from a hardware backend. The text names the file, line or
/// device involved so that a log line is enough to find the fault.
#[derive(Debug)]
pub enum HwError {
    /// An I/O operation on `what` (a path, a GPIO line) failed.
    Io { what: String, source: io::Error },
    /// Something the configuration names does not exist on this machine.
    NotFound(String),
    /// A value read from the hardware could not be understood.
    Invalid(String),
    /// The device is present but the reading is not available right now
    /// (for example a simulated sensor that was told to fail).
    Unavailable(String),
    /// The blocking task that ran the call ended without an answer (it
    /// panicked or was cancelled); see [`blocking`].
    Lost(String),
    /// The backend refuses the operation by design (opening the booted
    /// firmware slot for writing).
    Refused(String),
}

impl fmt::Display for HwError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HwError::Io { what, source } => write!(f, "{what}: {source}"),
            HwError::NotFound(m)
            | HwError::Invalid(m)
            | HwError::Unavailable(m)
            | HwError::Lost(m)
            | HwError::Refused(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for HwError {}

pub type HwResult<T> = Result<T, HwError>;

/// Run a hardware call off the async executor (the traits here may block
/// on I/O).
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> HwResult<T> + Send + 'static,
) -> HwResult<T> {
    crate::sync::off_runtime(f, |e| HwError::Lost(format!("hardware task failed: {e}"))).await
}

/// A fan level in percent, 0 (off) to 100 (full speed); no other value can
/// be built. Levels are checked once where they enter the daemon (a bus
/// call, the configuration file) and travel as `Percent` from then on; only
/// the backend that writes a PWM channel turns one into a duty cycle
/// ([`Percent::to_duty`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Percent(u8);

impl Percent {
    pub const ZERO: Percent = Percent::of::<0>();
    pub const FULL: Percent = Percent::of::<100>();

    /// `None` above 100.
    pub const fn new(pct: u8) -> Option<Percent> {
        if pct <= 100 {
            Some(Percent(pct))
        } else {
            None
        }
    }

    /// A constant level, checked when the program is compiled.
    pub const fn of<const N: u8>() -> Percent {
        const { assert!(N <= 100, "a Percent is at most 100") };
        Percent(N)
    }

    pub const fn get(self) -> u8 {
        self.0
    }

    /// The level a fraction `f` of the way from `a` to `b` (`f` clamped to
    /// 0–1, NaN counts as 0), rounded: always between the two.
    pub fn lerp(a: Percent, b: Percent, f: f64) -> Percent {
        let f = if f.is_nan() { 0.0 } else { f.clamp(0.0, 1.0) };
        let l = f64::from(a.0) + f * (f64::from(b.0) - f64::from(a.0));
        // Between a.0 and b.0, both at most 100.
        Percent(l.round().clamp(0.0, 100.0) as u8)
    }

    /// The PWM duty cycle, 0–255, rounded: what a backend writes.
    pub fn to_duty(self) -> u8 {
        // At most (100 * 255 + 50) / 100 = 255.
        ((u32::from(self.0) * 255 + 50) / 100) as u8
    }
}

impl std::fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.0)
    }
}

/// From the configuration file: an integer 0–100.
impl<'de> serde::Deserialize<'de> for Percent {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u8::deserialize(d)?;
        Percent::new(v).ok_or_else(|| {
            serde::de::Error::custom(format_args!("level {v} is outside 0..=100 percent"))
        })
    }
}

/// The chassis' power control lines, as on an x86 server board: the BMC
/// "presses" the front-panel buttons and watches power-good.
///
/// The trait carries levels, not timing: the chassis controller decides how
/// long a press lasts (a short press asks the host OS to shut down, a long
/// press forces power off, as on ATX). All methods are idempotent.
pub trait PowerHw: Send + Sync {
    /// Assert (`true`) or release (`false`) the power button.
    fn set_power_button(&self, pressed: bool) -> HwResult<()>;
    /// Assert (`true`) or release (`false`) the reset button.
    fn set_reset_button(&self, pressed: bool) -> HwResult<()>;
    /// Whether the host's power supplies report power-good.
    fn power_good(&self) -> HwResult<bool>;
    /// Light or extinguish the chassis identify LED.
    fn set_identify_led(&self, on: bool) -> HwResult<()>;
}

/// The fans of one cooling zone. Fans are addressed by their index in
/// `names()`, which never changes while the daemon runs.
pub trait FanHw: Send + Sync {
    /// Fan names, in the configured order.
    fn names(&self) -> Vec<String>;
    /// Tachometer reading in RPM; 0 means the rotor is not turning.
    fn read_rpm(&self, fan: usize) -> HwResult<u32>;
    /// Drive the fan at `level` (the backend turns it into its own duty
    /// cycle). Puts the PWM channel under software control first if needed.
    fn write_pwm(&self, fan: usize, level: Percent) -> HwResult<()>;
    /// Whether the fan is fitted (a tach reading is possible at all).
    fn present(&self, fan: usize) -> HwResult<bool>;
    /// Hand the PWM channels back to the hardware's own control, or leave
    /// them at full speed where there is none. Called on daemon shutdown so
    /// that fans are never left slow with nobody watching.
    fn release(&self) -> HwResult<()>;
}

/// Temperature sensors, addressed by their index in `names()`.
pub trait TempHw: Send + Sync {
    /// Sensor names, in the configured order.
    fn names(&self) -> Vec<String>;
    /// The temperature in degrees Celsius.
    fn read_celsius(&self, sensor: usize) -> HwResult<f64>;
}

/// Everything the daemon drives, assembled from the configuration.
pub struct Platform {
    pub power: Arc<dyn PowerHw>,
    pub fans: Arc<dyn FanHw>,
    pub temps: Arc<dyn TempHw>,
    /// The simulator's control knobs, on the sim platform only.
    pub sim: Option<Arc<sim::Sim>>,
}

/// Build the platform the configuration describes.
pub fn build(cfg: &crate::config::PlatformConfig) -> HwResult<Platform> {
    use crate::config::{PlatformConfig, PowerConfig};
    match cfg {
        PlatformConfig::Sim(c) => {
            let sim = Arc::new(sim::Sim::new(c));
            let power: Arc<dyn PowerHw> = match &c.power {
                // Board bring-up: real power lines, simulated fans and
                // sensors.
                Some(PowerConfig::Gpio(g)) => Arc::new(gpio::GpioPower::open(g)?),
                // `sim` is refused by the configuration's validation; it
                // would mean the simulator's own sequencing anyway.
                Some(PowerConfig::Sim(_)) | None => sim.clone(),
            };
            Ok(Platform {
                power,
                fans: sim.clone(),
                temps: sim.clone(),
                sim: Some(sim),
            })
        }
        PlatformConfig::Hardware(c) => {
            let (power, sim): (Arc<dyn PowerHw>, _) = match &c.power {
                PowerConfig::Gpio(g) => (Arc::new(gpio::GpioPower::open(g)?), None),
                PowerConfig::Sim(p) => {
                    // Power sequencing only: the simulator's fans and
                    // sensors are unused, real hwmon ones drive the zone.
                    let sim = Arc::new(sim::Sim::new(&crate::config::SimConfig::power_only(p)));
                    (sim.clone() as Arc<dyn PowerHw>, Some(sim))
                }
            };
            Ok(Platform {
                power,
                fans: Arc::new(hwmon::HwmonFans::open(&c.hwmon_root, &c.fans)?),
                temps: Arc::new(hwmon::HwmonTemps::open(&c.hwmon_root, &c.sensors)?),
                sim,
            })
        }
    }
}

/// Only the fans the configuration describes, for `bmcd --release-fans`
/// after a crash: unlike [`build`] it opens no power lines (requesting the
/// GPIO lines would set the identify LED and buttons) and no sensors.
/// `None` on the sim platform, whose fans exist only inside a running
/// daemon.
pub fn build_fans(cfg: &crate::config::PlatformConfig) -> HwResult<Option<Arc<dyn FanHw>>> {
    use crate::config::PlatformConfig;
    match cfg {
        PlatformConfig::Sim(_) => Ok(None),
        PlatformConfig::Hardware(c) => Ok(Some(Arc::new(hwmon::HwmonFans::open(
            &c.hwmon_root,
            &c.fans,
        )?))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_is_checked_once_and_converted_by_rounding() {
        assert_eq!(Percent::new(101), None);
        assert_eq!(Percent::new(100), Some(Percent::FULL));
        assert_eq!(Percent::ZERO.to_duty(), 0);
        assert_eq!(Percent::FULL.to_duty(), 255);
        assert_eq!(Percent::new(50).map(Percent::to_duty), Some(128));
        // Every level has its own duty.
        let duties: std::collections::HashSet<u8> = (0..=100)
            .filter_map(Percent::new)
            .map(Percent::to_duty)
            .collect();
        assert_eq!(duties.len(), 101);
    }

    #[test]
    fn lerp_stays_between_its_ends() {
        let (a, b) = (Percent(20), Percent(60));
        assert_eq!(Percent::lerp(a, b, 0.5), Percent(40));
        assert_eq!(Percent::lerp(b, a, 0.25), Percent(50));
        assert_eq!(Percent::lerp(a, b, 7.0), b);
        assert_eq!(Percent::lerp(a, b, -1.0), a);
        assert_eq!(Percent::lerp(a, b, f64::NAN), a);
        assert_eq!(
            Percent::lerp(Percent::ZERO, Percent::FULL, 1.0),
            Percent::FULL
        );
    }

    #[test]
    fn percent_from_config() {
        let p: Result<Percent, _> = serde_json::from_str("42");
        assert_eq!(p.ok(), Some(Percent(42)));
        let e = serde_json::from_str::<Percent>("101")
            .err()
            .map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("101 is outside 0..=100")));
        assert!(serde_json::from_str::<Percent>("-1").is_err());
    }

    /// The sim platform with GPIO power opens the chip: a missing one is a
    /// named error at start, not a silent fallback to simulated power.
    #[test]
    fn sim_platform_with_gpio_power_needs_its_chip() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../config/bmcd.json"))
                .unwrap_or_default();
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        v["platform"]["power"] = serde_json::json!({
            "type": "gpio",
            "chip": "/nonexistent/gpiochip9",
            "power_button": {"name": "pwr"},
            "reset_button": {"name": "rst"},
            "power_good": {"name": "pgood"}
        });
        let cfg = crate::config::Config::parse(&v.to_string());
        let Ok(cfg) = cfg else {
            panic!("{:?}", cfg.err())
        };
        match build(&cfg.platform) {
            Err(HwError::NotFound(m)) => assert!(m.contains("/nonexistent/gpiochip9"), "{m}"),
            Err(e) => panic!("wrong error: {e}"),
            Ok(_) => panic!("built without its GPIO chip"),
        }
        // Without the block, the simulator powers the host as before.
        if let Some(o) = v["platform"].as_object_mut() {
            o.remove("power");
        }
        let cfg = crate::config::Config::parse(&v.to_string());
        let Ok(cfg) = cfg else {
            panic!("{:?}", cfg.err())
        };
        assert!(build(&cfg.platform).is_ok_and(|p| p.sim.is_some()));
    }
}
