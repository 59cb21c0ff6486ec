//! The simulator's control knobs as a trait, so the bus adapter
//! (`bus/simulation.rs`) drives any simulated platform without knowing the
//! `sim` backend; names are checked here, with typed errors.

use std::fmt;

use super::sim::Sim;
use super::HwError;

/// The range `SetAmbient` accepts, in °C.
pub const AMBIENT_RANGE: std::ops::RangeInclusive<f64> = -20.0..=60.0;

/// Why a simulation knob was refused.
#[derive(Debug)]
pub enum SimError {
    /// The ambient temperature is outside [`AMBIENT_RANGE`] (or NaN).
    AmbientOutOfRange(f64),
    /// No fan by that name; the names there are.
    NoSuchFan(String, Vec<String>),
    /// No sensor by that name; the names there are.
    NoSuchSensor(String, Vec<String>),
    /// The simulated hardware refused.
    Hardware(HwError),
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimError::AmbientOutOfRange(c) => write!(
                f,
                "ambient {c} °C is outside {}..={}",
                AMBIENT_RANGE.start(),
                AMBIENT_RANGE.end()
            ),
            SimError::NoSuchFan(n, all) => {
                write!(f, "no fan named '{n}' (fans: {})", all.join(", "))
            }
            SimError::NoSuchSensor(n, all) => {
                write!(f, "no sensor named '{n}' (sensors: {})", all.join(", "))
            }
            SimError::Hardware(e) => write!(f, "simulated hardware: {e}"),
        }
    }
}

/// What `org.bmcd.Simulation1` can do to a simulated platform.
pub trait SimControl: Send + Sync {
    fn ambient(&self) -> f64;
    fn set_ambient(&self, celsius: f64) -> Result<(), SimError>;
    fn set_fan_fault(&self, fan: &str, failed: bool) -> Result<(), SimError>;
    fn set_sensor_fault(&self, sensor: &str, lost: bool) -> Result<(), SimError>;
    fn host_responsive(&self) -> bool;
    fn set_host_responsive(&self, responsive: bool);
}

impl SimControl for Sim {
    fn ambient(&self) -> f64 {
        Sim::ambient(self)
    }

    fn set_ambient(&self, celsius: f64) -> Result<(), SimError> {
        if !AMBIENT_RANGE.contains(&celsius) {
            return Err(SimError::AmbientOutOfRange(celsius));
        }
        Sim::set_ambient(self, celsius);
        Ok(())
    }

    fn set_fan_fault(&self, fan: &str, failed: bool) -> Result<(), SimError> {
        let names = self.fan_names();
        let i = names
            .iter()
            .position(|n| n == fan)
            .ok_or_else(|| SimError::NoSuchFan(fan.to_owned(), names.clone()))?;
        Sim::set_fan_fault(self, i, failed).map_err(SimError::Hardware)
    }

    fn set_sensor_fault(&self, sensor: &str, lost: bool) -> Result<(), SimError> {
        let names = self.sensor_names();
        let i = names
            .iter()
            .position(|n| n == sensor)
            .ok_or_else(|| SimError::NoSuchSensor(sensor.to_owned(), names.clone()))?;
        Sim::set_sensor_fault(self, i, lost).map_err(SimError::Hardware)
    }

    fn host_responsive(&self) -> bool {
        Sim::host_responsive(self)
    }

    fn set_host_responsive(&self, responsive: bool) {
        Sim::set_host_responsive(self, responsive)
    }
}
