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
}

impl fmt::Display for HwError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HwError::Io { what, source } => write!(f, "{what}: {source}"),
            HwError::NotFound(m) | HwError::Invalid(m) | HwError::Unavailable(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for HwError {}

pub type HwResult<T> = Result<T, HwError>;

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
    /// Set the duty cycle, 0 (off) to 255 (full speed). Puts the PWM
    /// channel under software control first if needed.
    fn write_pwm(&self, fan: usize, duty: u8) -> HwResult<()>;
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

/// Convert a percentage (clamped to 0–100) into a PWM duty (0–255), rounding.
pub fn percent_to_duty(pct: u8) -> u8 {
    let p = u32::from(pct.min(100));
    ((p * 255 + 50) / 100) as u8
}

/// Convert a PWM duty (0–255) into a percentage (0–100), rounding.
pub fn duty_to_percent(duty: u8) -> u8 {
    ((u32::from(duty) * 100 + 127) / 255) as u8
}

/// Build the platform the configuration describes.
pub fn build(cfg: &crate::config::PlatformConfig) -> HwResult<Platform> {
    use crate::config::{PlatformConfig, PowerConfig};
    match cfg {
        PlatformConfig::Sim(c) => {
            let sim = Arc::new(sim::Sim::new(c));
            Ok(Platform {
                power: sim.clone(),
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
                    let sim = Arc::new(sim::Sim::new(&crate::config::SimConfig {
                        fans: Vec::new(),
                        sensors: Vec::new(),
                        ambient_c: 25.0,
                        power_on_delay_ms: p.power_on_delay_ms,
                        host_shutdown_ms: p.host_shutdown_ms,
                        force_off_hold_ms: p.force_off_hold_ms,
                        host_responsive: p.host_responsive,
                        seed: 0,
                    }));
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
    fn percent_duty_round_trip() {
        assert_eq!(percent_to_duty(0), 0);
        assert_eq!(percent_to_duty(100), 255);
        assert_eq!(percent_to_duty(200), 255);
        assert_eq!(percent_to_duty(50), 128);
        for p in 0..=100u8 {
            assert_eq!(duty_to_percent(percent_to_duty(p)), p);
        }
    }
}
