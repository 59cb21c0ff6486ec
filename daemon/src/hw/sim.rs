//! The simulated platform: a small physical model of an x86 server as its
//! BMC sees it, good enough to exercise power sequencing and the fan control
//! loop for real (in tests, and for people running the BMC image in QEMU).
//!
//! The model:
//! - **Power** behaves like an ATX board with a cooperative host OS. The
//!   host is off at start. Pressing and releasing the power button while off
//!   makes power-good rise `power_on_delay_ms` after the release. While on,
//!   holding the button for `force_off_hold_ms` drops power-good at that
//!   moment, even while the button is still held; a shorter press asks the
//!   host OS to shut down when it is released, and power-good drops
//!   `host_shutdown_ms` later if the host is responsive (nothing happens
//!   otherwise). Asserting the reset button while on reboots the host: power
//!   stays on, the reset counter grows and a shutdown in progress is
//!   abandoned.
//! - **Fans**: each rotor follows its target speed `max_rpm * duty / 255`
//!   with a first-order lag (time constant [`FAN_TAU_S`]); below
//!   [`STALL_DUTY`] the rotor stops. Tach readings carry ±1 % noise from a
//!   deterministic generator seeded by `seed`. A failed fan's rotor coasts
//!   to a stop. Duties start at 255, as hardware does after reset, and the
//!   rotors start at full speed.
//! - **Temperatures**: each sensor relaxes with its own time constant
//!   `tau_s` towards `ambient + heat_c * load * (1 - cooling * airflow)`,
//!   where load is 1 with power-good and [`IDLE_LOAD`] without, and airflow is
//!   the mean of `rpm / max_rpm` over the fitted fans. Sensors start at the
//!   steady state of a host that is off.
//!
//! Time is integrated lazily: every read or write first advances the model
//! from its last update to the clock's "now", in steps of at most
//! [`MAX_STEP`], split exactly at power events so that they happen at the
//! right instant. The clock is injectable ([`Sim::with_clock`]) so that tests
//! never sleep.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::{FanHw, HwError, HwResult, Percent, PowerHw, TempHw};
use crate::config::SimConfig;

/// Longest step of the numerical integration.
pub const MAX_STEP: Duration = Duration::from_millis(100);

/// Time constant of a rotor's speed following its target, in seconds.
pub const FAN_TAU_S: f64 = 1.5;

/// The lowest duty (0–255) at which a rotor turns: 21/255 is about 8 %;
/// below it the motor stalls, as real fans do.
pub const STALL_DUTY: u8 = 21;

/// Thermal load of the host while power-good is low (standby power), as a
/// fraction of the load with the host running.
pub const IDLE_LOAD: f64 = 0.1;

/// Peak relative noise of a tach reading (±1 %).
const TACH_NOISE: f64 = 0.01;

/// A rotor slowing towards 0 RPM that is slower than this is considered
/// stopped (a tachometer cannot measure such slow rotation either).
const STOP_RPM: f64 = 30.0;

/// A source of monotonic time for the simulator.
///
/// The real daemon uses [`SystemClock`]; tests use a clock they advance by
/// hand, and a daemon running under a paused tokio runtime may supply one
/// based on `tokio::time::Instant`. Instants returned must never go
/// backwards; if they do, the model simply does not advance.
pub trait Clock: Send + Sync {
    /// The current instant.
    fn now(&self) -> Instant;
}

/// The real monotonic clock, [`Instant::now`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that only moves when told to, for tests.
#[cfg(test)]
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<Instant>,
}

#[cfg(test)]
impl ManualClock {
    /// A clock standing at the current real instant.
    pub fn new() -> Arc<ManualClock> {
        Arc::new(ManualClock {
            now: Mutex::new(Instant::now()),
        })
    }

    /// Move the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        *now += d;
    }

    /// Move the clock forward by `ms` milliseconds.
    pub fn advance_ms(&self, ms: u64) {
        self.advance(Duration::from_millis(ms));
    }
}

#[cfg(test)]
impl Clock for ManualClock {
    fn now(&self) -> Instant {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The simulated platform; implements [`PowerHw`], [`FanHw`] and
/// [`TempHw`] at once, plus the knobs of the `Simulation1` interface.
///
/// All state sits behind one mutex; a panic while it was held (which the
/// code never does on purpose) does not make later calls panic.
pub struct Sim {
    clock: Arc<dyn Clock>,
    fan_names: Vec<String>,
    sensor_names: Vec<String>,
    state: Mutex<State>,
}

/// A power event scheduled for a given instant.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Pending {
    /// Power-good rises.
    PowerOn(Instant),
    /// The host OS has finished shutting down: power-good drops.
    Shutdown(Instant),
}

impl Pending {
    fn at(self) -> Instant {
        match self {
            Pending::PowerOn(t) | Pending::Shutdown(t) => t,
        }
    }
}

/// The power button being held.
#[derive(Debug, Clone, Copy)]
struct Press {
    /// When it went down.
    at: Instant,
    /// Whether the host was on (or coming on) when it went down.
    started_on: bool,
    /// Whether this press has already forced power off.
    forced: bool,
}

struct Power {
    good: bool,
    button: bool,
    press: Option<Press>,
    pending: Option<Pending>,
    reset: bool,
    resets: u64,
    identify: bool,
    responsive: bool,
    on_delay: Duration,
    shutdown_delay: Duration,
    force_hold: Duration,
}

struct Fan {
    max_rpm: f64,
    present: bool,
    failed: bool,
    duty: u8,
    rpm: f64,
}

impl Fan {
    /// The speed the rotor is heading for, RPM.
    fn target(&self) -> f64 {
        if !self.present || self.failed || self.duty < STALL_DUTY {
            0.0
        } else {
            self.max_rpm * f64::from(self.duty) / 255.0
        }
    }
}

struct Sensor {
    heat: f64,
    cooling: f64,
    tau: f64,
    lost: bool,
    temp: f64,
}

/// SplitMix64: a tiny, well-distributed, deterministic generator.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    fn symmetric(&mut self) -> f64 {
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        unit * 2.0 - 1.0
    }
}

struct State {
    /// The instant the model was last advanced to.
    now: Instant,
    ambient: f64,
    power: Power,
    fans: Vec<Fan>,
    sensors: Vec<Sensor>,
    rng: Rng,
}

impl State {
    fn load(&self) -> f64 {
        if self.power.good {
            1.0
        } else {
            IDLE_LOAD
        }
    }

    /// Mean relative rotor speed over the fitted fans, 0–1.
    fn airflow(&self) -> f64 {
        let (sum, n) = self
            .fans
            .iter()
            .filter(|f| f.present)
            .fold((0.0, 0u32), |(s, n), f| (s + f.rpm / f.max_rpm, n + 1));
        if n == 0 {
            0.0
        } else {
            (sum / f64::from(n)).clamp(0.0, 1.0)
        }
    }

    /// The temperature sensor `s` is heading for, °C.
    fn sensor_target(&self, s: &Sensor, load: f64, airflow: f64) -> f64 {
        self.ambient + s.heat * load * (1.0 - s.cooling * airflow)
    }

    /// When the power-button hold forces power off, if it is going to.
    fn force_off_at(&self) -> Option<Instant> {
        let p = &self.power;
        let press = p.press.filter(|pr| p.button && !pr.forced)?;
        if p.good || matches!(p.pending, Some(Pending::PowerOn(_))) {
            Some(press.at + p.force_hold)
        } else {
            None
        }
    }

    /// The earliest power event still to come.
    fn next_event(&self) -> Option<Instant> {
        match (self.power.pending.map(Pending::at), self.force_off_at()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Apply every power event due at `self.now`.
    fn fire_events(&mut self) {
        let now = self.now;
        if let Some(at) = self.force_off_at() {
            if at <= now {
                self.power.good = false;
                self.power.pending = None;
                if let Some(pr) = self.power.press.as_mut() {
                    pr.forced = true;
                }
            }
        }
        match self.power.pending {
            Some(Pending::PowerOn(t)) if t <= now => {
                self.power.good = true;
                self.power.pending = None;
            }
            Some(Pending::Shutdown(t)) if t <= now => {
                self.power.good = false;
                self.power.pending = None;
            }
            _ => {}
        }
    }

    /// Integrate the fans and temperatures over `dt` seconds, with the
    /// inputs (duties, power-good, ambient) held constant.
    fn integrate(&mut self, dt: f64) {
        let kf = 1.0 - (-dt / FAN_TAU_S).exp();
        for f in &mut self.fans {
            let target = f.target();
            f.rpm += (target - f.rpm) * kf;
            if target == 0.0 && f.rpm < STOP_RPM {
                f.rpm = 0.0;
            }
        }
        let load = self.load();
        let airflow = self.airflow();
        let targets: Vec<f64> = self
            .sensors
            .iter()
            .map(|s| self.sensor_target(s, load, airflow))
            .collect();
        for (s, target) in self.sensors.iter_mut().zip(targets) {
            let k = 1.0 - (-dt / s.tau).exp();
            s.temp += (target - s.temp) * k;
        }
    }

    /// Advance the model to `to`, in steps of at most [`MAX_STEP`], split
    /// at power events. Does nothing if `to` is not later than the model.
    fn advance_to(&mut self, to: Instant) {
        loop {
            self.fire_events();
            if self.now >= to {
                break;
            }
            let mut end = (self.now + MAX_STEP).min(to);
            if let Some(t) = self.next_event() {
                if t > self.now && t < end {
                    end = t;
                }
            }
            self.integrate((end - self.now).as_secs_f64());
            self.now = end;
        }
    }
}

impl Sim {
    /// A simulator of the platform `cfg` describes, on the real clock.
    ///
    /// The configuration is expected to have been validated
    /// (`crate::config`); values that would break the arithmetic
    /// (a zero `max_rpm`, a non-positive `tau_s`, a `cooling` outside 0–1,
    /// a non-finite number) are clamped to harmless ones rather than
    /// rejected.
    pub fn new(cfg: &SimConfig) -> Sim {
        Sim::with_clock(cfg, Arc::new(SystemClock))
    }

    /// Like [`Sim::new`], reading time from `clock`.
    pub fn with_clock(cfg: &SimConfig, clock: Arc<dyn Clock>) -> Sim {
        let now = clock.now();
        let finite = |v: f64, default: f64| if v.is_finite() { v } else { default };
        let fans: Vec<Fan> = cfg
            .fans
            .iter()
            .map(|f| {
                let max_rpm = f64::from(f.max_rpm.max(1));
                Fan {
                    max_rpm,
                    present: f.present,
                    failed: false,
                    duty: 255,
                    rpm: if f.present { max_rpm } else { 0.0 },
                }
            })
            .collect();
        let sensors = cfg
            .sensors
            .iter()
            .map(|s| Sensor {
                heat: finite(s.heat_c, 0.0),
                cooling: finite(s.cooling, 0.0).clamp(0.0, 1.0),
                tau: finite(s.tau_s, 1.0).max(1e-3),
                lost: false,
                temp: 0.0,
            })
            .collect();
        let ms = Duration::from_millis;
        let mut state = State {
            now,
            ambient: finite(cfg.ambient_c, 25.0),
            power: Power {
                good: false,
                button: false,
                press: None,
                pending: None,
                reset: false,
                resets: 0,
                identify: false,
                responsive: cfg.host_responsive,
                on_delay: ms(cfg.power_on_delay_ms),
                shutdown_delay: ms(cfg.host_shutdown_ms),
                force_hold: ms(cfg.force_off_hold_ms),
            },
            fans,
            sensors,
            rng: Rng(cfg.seed),
        };
        // Steady state with the host off and the fans at full speed.
        let (load, airflow) = (state.load(), state.airflow());
        let temps: Vec<f64> = state
            .sensors
            .iter()
            .map(|s| state.sensor_target(s, load, airflow))
            .collect();
        for (s, t) in state.sensors.iter_mut().zip(temps) {
            s.temp = t;
        }
        Sim {
            clock,
            fan_names: cfg.fans.iter().map(|f| f.name.clone()).collect(),
            sensor_names: cfg.sensors.iter().map(|s| s.name.clone()).collect(),
            state: Mutex::new(state),
        }
    }

    /// Lock the state and bring the model up to the clock's now.
    fn state(&self) -> MutexGuard<'_, State> {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        st.advance_to(self.clock.now());
        st
    }

    /// Names of the simulated fans, in configured order (the indexes of
    /// [`FanHw`]).
    pub fn fan_names(&self) -> Vec<String> {
        self.fan_names.clone()
    }

    /// Names of the simulated temperature sensors, in configured order (the
    /// indexes of [`TempHw`]).
    pub fn sensor_names(&self) -> Vec<String> {
        self.sensor_names.clone()
    }

    /// How many times the host has been reset (reset button asserted while
    /// power-good was high) since the simulator was created. For tests (the
    /// bus does not expose it).
    #[cfg(test)]
    pub fn host_resets(&self) -> u64 {
        self.state().power.resets
    }

    /// Whether the identify LED is lit. For tests (the bus does not expose
    /// it; the chassis controller keeps its own identify state).
    #[cfg(test)]
    pub fn identify_led(&self) -> bool {
        self.state().power.identify
    }

    /// Set the room temperature, °C. Sensors follow with their own time
    /// constants. The range is the caller's business (the bus interface
    /// accepts −20…60); a non-finite value is ignored.
    pub fn set_ambient(&self, celsius: f64) {
        if celsius.is_finite() {
            self.state().ambient = celsius;
        }
    }

    /// The room temperature, °C.
    pub fn ambient(&self) -> f64 {
        self.state().ambient
    }

    /// Make fan `fan` (index into [`Sim::fan_names`]) fail (`true`: the
    /// rotor coasts to a stop whatever its duty) or work again (`false`).
    /// A failed fan is still present. Errors with `NotFound` for an index
    /// out of range.
    pub fn set_fan_fault(&self, fan: usize, failed: bool) -> HwResult<()> {
        let mut st = self.state();
        let f = st.fans.get_mut(fan).ok_or_else(|| no_fan(fan))?;
        f.failed = failed;
        Ok(())
    }

    /// Make sensor `sensor` (index into [`Sim::sensor_names`]) unreadable
    /// (`true`: reads fail with `Unavailable`) or readable again (`false`).
    /// The modelled temperature keeps evolving meanwhile. Errors with
    /// `NotFound` for an index out of range.
    pub fn set_sensor_fault(&self, sensor: usize, lost: bool) -> HwResult<()> {
        let mut st = self.state();
        let s = st
            .sensors
            .get_mut(sensor)
            .ok_or_else(|| no_sensor(sensor))?;
        s.lost = lost;
        Ok(())
    }

    /// Whether the host OS honours later graceful shutdown requests (short
    /// power-button presses). A shutdown already under way completes
    /// either way.
    pub fn set_host_responsive(&self, responsive: bool) {
        self.state().power.responsive = responsive;
    }

    /// Whether the host OS honours graceful shutdown requests.
    pub fn host_responsive(&self) -> bool {
        self.state().power.responsive
    }
}

fn no_fan(fan: usize) -> HwError {
    HwError::NotFound(format!("no simulated fan with index {fan}"))
}

fn no_sensor(sensor: usize) -> HwError {
    HwError::NotFound(format!("no simulated sensor with index {sensor}"))
}

/// Simulated power lines. Never fails.
impl PowerHw for Sim {
    fn set_power_button(&self, pressed: bool) -> HwResult<()> {
        let mut st = self.state();
        if st.power.button == pressed {
            return Ok(());
        }
        st.power.button = pressed;
        let now = st.now;
        let p = &mut st.power;
        if pressed {
            p.press = Some(Press {
                at: now,
                started_on: p.good || matches!(p.pending, Some(Pending::PowerOn(_))),
                forced: false,
            });
            // A zero hold time forces off at once.
            st.fire_events();
        } else if let Some(press) = p.press.take() {
            if press.forced {
                // Power was forced off during this press; releasing the
                // button does not start the host again.
            } else if press.started_on {
                if p.good && p.pending.is_none() && p.responsive {
                    p.pending = Some(Pending::Shutdown(now + p.shutdown_delay));
                }
            } else if !p.good && p.pending.is_none() {
                p.pending = Some(Pending::PowerOn(now + p.on_delay));
            }
        }
        Ok(())
    }

    fn set_reset_button(&self, pressed: bool) -> HwResult<()> {
        let mut st = self.state();
        let p = &mut st.power;
        if pressed && !p.reset && p.good {
            p.resets += 1;
            if matches!(p.pending, Some(Pending::Shutdown(_))) {
                p.pending = None;
            }
        }
        p.reset = pressed;
        Ok(())
    }

    fn power_good(&self) -> HwResult<bool> {
        Ok(self.state().power.good)
    }

    fn set_identify_led(&self, on: bool) -> HwResult<()> {
        self.state().power.identify = on;
        Ok(())
    }
}

/// Simulated fans. `read_rpm` of a fan configured with `present: false`
/// fails with `NotFound`; every method fails with `NotFound` for an index
/// out of range. `write_pwm` of an absent fan is accepted (the PWM channel
/// exists without a fan, as on a real board).
impl FanHw for Sim {
    fn names(&self) -> Vec<String> {
        self.fan_names()
    }

    fn read_rpm(&self, fan: usize) -> HwResult<u32> {
        let mut st = self.state();
        let f = st.fans.get(fan).ok_or_else(|| no_fan(fan))?;
        if !f.present {
            return Err(HwError::NotFound(format!(
                "simulated fan {fan} is not fitted"
            )));
        }
        let rpm = f.rpm;
        let noise = st.rng.symmetric() * TACH_NOISE;
        // `as` saturates: never panics, never wraps.
        Ok((rpm * (1.0 + noise)).round().max(0.0) as u32)
    }

    fn write_pwm(&self, fan: usize, level: Percent) -> HwResult<()> {
        let mut st = self.state();
        let f = st.fans.get_mut(fan).ok_or_else(|| no_fan(fan))?;
        f.duty = level.to_duty();
        Ok(())
    }

    fn present(&self, fan: usize) -> HwResult<bool> {
        let st = self.state();
        Ok(st.fans.get(fan).ok_or_else(|| no_fan(fan))?.present)
    }

    /// Every duty goes back to 255 (full speed), the hardware default.
    fn release(&self) -> HwResult<()> {
        let mut st = self.state();
        for f in &mut st.fans {
            f.duty = 255;
        }
        Ok(())
    }
}

/// Simulated temperature sensors. A sensor made lost with
/// [`Sim::set_sensor_fault`] fails with `Unavailable`; an index out of
/// range fails with `NotFound`.
impl TempHw for Sim {
    fn names(&self) -> Vec<String> {
        self.sensor_names()
    }

    fn read_celsius(&self, sensor: usize) -> HwResult<f64> {
        let st = self.state();
        let s = st.sensors.get(sensor).ok_or_else(|| no_sensor(sensor))?;
        if s.lost {
            let name = self.sensor_names.get(sensor).map_or("?", String::as_str);
            return Err(HwError::Unavailable(format!(
                "simulated sensor '{name}' is not responding"
            )));
        }
        Ok(s.temp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pct(n: u8) -> Percent {
        Percent::new(n).unwrap()
    }
    use crate::config::{SimFan, SimSensor};

    fn cfg() -> SimConfig {
        SimConfig {
            fans: vec![
                SimFan {
                    name: "fan0".into(),
                    max_rpm: 12000,
                    present: true,
                },
                SimFan {
                    name: "fan1".into(),
                    max_rpm: 10000,
                    present: true,
                },
                SimFan {
                    name: "fan2".into(),
                    max_rpm: 12000,
                    present: false,
                },
            ],
            sensors: vec![
                SimSensor {
                    name: "inlet".into(),
                    heat_c: 8.0,
                    cooling: 0.5,
                    tau_s: 30.0,
                },
                SimSensor {
                    name: "cpu0".into(),
                    heat_c: 60.0,
                    cooling: 0.7,
                    tau_s: 15.0,
                },
            ],
            ambient_c: 25.0,
            power_on_delay_ms: 1000,
            host_shutdown_ms: 3000,
            force_off_hold_ms: 4000,
            host_responsive: true,
            seed: 1,
            power: None,
        }
    }

    fn sim() -> (Sim, Arc<ManualClock>) {
        let clock = ManualClock::new();
        (Sim::with_clock(&cfg(), clock.clone()), clock)
    }

    fn press(sim: &Sim, clock: &ManualClock, ms: u64) {
        sim.set_power_button(true).unwrap();
        clock.advance_ms(ms);
        sim.set_power_button(false).unwrap();
    }

    fn good(sim: &Sim) -> bool {
        sim.power_good().unwrap()
    }

    /// Power the simulated host on and wait until power-good.
    fn power_on(sim: &Sim, clock: &ManualClock) {
        press(sim, clock, 200);
        clock.advance_ms(1000);
        assert!(good(sim));
    }

    #[test]
    fn power_on_after_delay_from_release() {
        let (sim, clock) = sim();
        assert!(!good(&sim));
        sim.set_power_button(true).unwrap();
        clock.advance_ms(5000); // a long press while off does not force anything
        assert!(!good(&sim));
        sim.set_power_button(false).unwrap();
        clock.advance_ms(999);
        assert!(!good(&sim));
        clock.advance_ms(1);
        assert!(good(&sim));
        clock.advance_ms(60_000);
        assert!(good(&sim));
    }

    #[test]
    fn graceful_off_when_responsive() {
        let (sim, clock) = sim();
        power_on(&sim, &clock);
        press(&sim, &clock, 200);
        clock.advance_ms(2999);
        assert!(good(&sim));
        clock.advance_ms(1);
        assert!(!good(&sim));
        // Stays off.
        clock.advance_ms(60_000);
        assert!(!good(&sim));
    }

    #[test]
    fn graceful_off_ignored_when_unresponsive() {
        let (sim, clock) = sim();
        power_on(&sim, &clock);
        assert!(sim.host_responsive());
        sim.set_host_responsive(false);
        assert!(!sim.host_responsive());
        press(&sim, &clock, 200);
        clock.advance_ms(60_000);
        assert!(good(&sim));
        // Becoming responsive later does not replay the lost request.
        sim.set_host_responsive(true);
        clock.advance_ms(60_000);
        assert!(good(&sim));
    }

    #[test]
    fn long_hold_forces_off_while_held() {
        let (sim, clock) = sim();
        power_on(&sim, &clock);
        sim.set_power_button(true).unwrap();
        clock.advance_ms(3999);
        assert!(good(&sim));
        clock.advance_ms(1);
        assert!(!good(&sim), "power-good must drop while still held");
        clock.advance_ms(2000);
        sim.set_power_button(false).unwrap();
        clock.advance_ms(60_000);
        assert!(!good(&sim), "release after a forced off must not power on");
    }

    #[test]
    fn events_happen_at_their_instant_between_reads() {
        // One sim is looked at often, the other not at all during the hold;
        // the forced off still happens at 4 s in both, so the host heated
        // for exactly as long in both.
        let run = |peek: bool| {
            let (sim, clock) = sim();
            power_on(&sim, &clock);
            sim.set_power_button(true).unwrap();
            for _ in 0..100 {
                clock.advance_ms(100);
                if peek {
                    let _ = good(&sim);
                }
            }
            sim.set_power_button(false).unwrap();
            assert!(!good(&sim));
            temp(&sim, 1)
        };
        let (a, b) = (run(true), run(false));
        assert!((a - b).abs() < 1e-9, "{a} vs {b}");
    }

    #[test]
    fn reset_counts_and_keeps_power() {
        let (sim, clock) = sim();
        // Reset while off does nothing.
        sim.set_reset_button(true).unwrap();
        sim.set_reset_button(false).unwrap();
        assert_eq!(sim.host_resets(), 0);
        power_on(&sim, &clock);
        sim.set_reset_button(true).unwrap();
        sim.set_reset_button(true).unwrap(); // idempotent: one edge
        clock.advance_ms(200);
        sim.set_reset_button(false).unwrap();
        assert_eq!(sim.host_resets(), 1);
        assert!(good(&sim));
        // A reset abandons a shutdown in progress.
        press(&sim, &clock, 200);
        clock.advance_ms(1000);
        sim.set_reset_button(true).unwrap();
        sim.set_reset_button(false).unwrap();
        assert_eq!(sim.host_resets(), 2);
        clock.advance_ms(10_000);
        assert!(good(&sim));
    }

    #[test]
    fn identify_led_is_stored() {
        let (sim, _clock) = sim();
        assert!(!sim.identify_led());
        sim.set_identify_led(true).unwrap();
        assert!(sim.identify_led());
        sim.set_identify_led(false).unwrap();
        assert!(!sim.identify_led());
    }

    fn within(actual: u32, expected: f64, rel: f64) -> bool {
        (f64::from(actual) - expected).abs() <= expected * rel + 1.0
    }

    #[test]
    fn rpm_follows_duty_with_lag_and_noise() {
        let (sim, clock) = sim();
        assert_eq!(sim.fan_names(), vec!["fan0", "fan1", "fan2"]);
        let r = sim.read_rpm(0).unwrap();
        assert!(within(r, 12000.0, 0.01), "{r}");
        sim.write_pwm(0, pct(50)).unwrap();
        clock.advance_ms(100);
        let r = sim.read_rpm(0).unwrap();
        assert!(r > 11000, "rotor must lag behind: {r}");
        clock.advance_ms(1500); // one time constant: ~63 % of the way
        let r = f64::from(sim.read_rpm(0).unwrap());
        let target = 12000.0 * 128.0 / 255.0;
        let expected = target + (12000.0 - target) * (-1.6f64 / 1.5).exp();
        assert!((r - expected).abs() < expected * 0.02, "{r} vs {expected}");
        clock.advance_ms(10_000);
        for _ in 0..50 {
            let r = sim.read_rpm(0).unwrap();
            assert!(within(r, target, 0.011), "{r} vs {target}");
        }
        // The other fan did not move.
        assert!(within(sim.read_rpm(1).unwrap(), 10000.0, 0.011));
        // Readings are noisy.
        let set: std::collections::HashSet<u32> =
            (0..20).map(|_| sim.read_rpm(0).unwrap()).collect();
        assert!(set.len() > 1);
    }

    #[test]
    fn low_duty_stalls() {
        let (sim, clock) = sim();
        assert!(pct(8).to_duty() < STALL_DUTY && pct(9).to_duty() >= STALL_DUTY);
        sim.write_pwm(0, pct(8)).unwrap();
        clock.advance_ms(20_000);
        assert_eq!(sim.read_rpm(0).unwrap(), 0);
        sim.write_pwm(0, pct(9)).unwrap();
        clock.advance_ms(20_000);
        let target = 12000.0 * f64::from(pct(9).to_duty()) / 255.0;
        assert!(within(sim.read_rpm(0).unwrap(), target, 0.011));
        sim.write_pwm(0, pct(0)).unwrap();
        clock.advance_ms(20_000);
        assert_eq!(sim.read_rpm(0).unwrap(), 0);
    }

    #[test]
    fn failed_fan_stalls_and_recovers() {
        let (sim, clock) = sim();
        sim.set_fan_fault(1, true).unwrap();
        clock.advance_ms(500);
        let r = sim.read_rpm(1).unwrap();
        assert!(r > 0 && r < 10000, "coasting: {r}");
        clock.advance_ms(20_000);
        assert_eq!(sim.read_rpm(1).unwrap(), 0);
        assert!(sim.present(1).unwrap());
        sim.write_pwm(1, pct(100)).unwrap();
        clock.advance_ms(1000);
        assert_eq!(sim.read_rpm(1).unwrap(), 0, "duty does not help");
        sim.set_fan_fault(1, false).unwrap();
        clock.advance_ms(20_000);
        assert!(within(sim.read_rpm(1).unwrap(), 10000.0, 0.011));
        assert!(matches!(
            sim.set_fan_fault(3, true),
            Err(HwError::NotFound(_))
        ));
    }

    #[test]
    fn absent_fan_and_bad_indexes() {
        let (sim, _clock) = sim();
        assert!(!sim.present(2).unwrap());
        assert!(matches!(sim.read_rpm(2), Err(HwError::NotFound(_))));
        sim.write_pwm(2, pct(4)).unwrap();
        assert!(matches!(sim.read_rpm(3), Err(HwError::NotFound(_))));
        assert!(matches!(
            sim.write_pwm(3, pct(1)),
            Err(HwError::NotFound(_))
        ));
        assert!(matches!(sim.present(3), Err(HwError::NotFound(_))));
        assert!(matches!(sim.read_celsius(2), Err(HwError::NotFound(_))));
        assert!(matches!(
            sim.set_sensor_fault(2, true),
            Err(HwError::NotFound(_))
        ));
    }

    #[test]
    fn release_restores_full_duty() {
        let (sim, clock) = sim();
        sim.write_pwm(0, pct(0)).unwrap();
        sim.write_pwm(1, pct(20)).unwrap();
        clock.advance_ms(20_000);
        sim.release().unwrap();
        clock.advance_ms(20_000);
        assert!(within(sim.read_rpm(0).unwrap(), 12000.0, 0.011));
        assert!(within(sim.read_rpm(1).unwrap(), 10000.0, 0.011));
    }

    fn temp(sim: &Sim, i: usize) -> f64 {
        sim.read_celsius(i).unwrap()
    }

    #[test]
    fn temperatures_start_at_steady_state_for_host_off() {
        let (sim, clock) = sim();
        assert_eq!(sim.sensor_names(), vec!["inlet", "cpu0"]);
        // Two fitted fans at full speed: airflow 1.
        let cpu = 25.0 + 60.0 * IDLE_LOAD * (1.0 - 0.7);
        assert!((temp(&sim, 1) - cpu).abs() < 1e-9, "{}", temp(&sim, 1));
        clock.advance_ms(60_000);
        assert!((temp(&sim, 1) - cpu).abs() < 0.05, "{}", temp(&sim, 1));
    }

    #[test]
    fn temperature_rises_with_power_and_falls_with_airflow() {
        let (sim, clock) = sim();
        let off = temp(&sim, 1);
        power_on(&sim, &clock);
        clock.advance_ms(5_000);
        let early = temp(&sim, 1);
        assert!(early > off + 3.0, "{off} -> {early}");
        clock.advance_ms(200_000);
        let full_fans = temp(&sim, 1);
        assert!((full_fans - (25.0 + 60.0 * 0.3)).abs() < 0.1, "{full_fans}");
        // Slower fans: hotter.
        for i in 0..3 {
            sim.write_pwm(i, pct(25)).unwrap();
        }
        clock.advance_ms(200_000);
        let slow_fans = temp(&sim, 1);
        assert!(slow_fans > full_fans + 10.0, "{full_fans} -> {slow_fans}");
        // More airflow again: cooler.
        for i in 0..3 {
            sim.write_pwm(i, pct(100)).unwrap();
        }
        clock.advance_ms(200_000);
        assert!((temp(&sim, 1) - full_fans).abs() < 0.1);
        // Ambient shifts everything.
        sim.set_ambient(35.0);
        assert_eq!(sim.ambient(), 35.0);
        sim.set_ambient(f64::NAN);
        assert_eq!(sim.ambient(), 35.0);
        clock.advance_ms(300_000);
        assert!((temp(&sim, 1) - (full_fans + 10.0)).abs() < 0.1);
        assert!((temp(&sim, 0) - (35.0 + 8.0 * 0.5)).abs() < 0.1);
    }

    #[test]
    fn failed_fans_heat_the_host() {
        let (sim, clock) = sim();
        power_on(&sim, &clock);
        clock.advance_ms(200_000);
        let before = temp(&sim, 1);
        sim.set_fan_fault(0, true).unwrap();
        clock.advance_ms(200_000);
        let after = temp(&sim, 1);
        // One of two fitted fans stopped: airflow halves.
        assert!((after - (before + 60.0 * 0.7 * 0.5)).abs() < 0.2, "{after}");
    }

    #[test]
    fn lost_sensor_is_unavailable() {
        let (sim, clock) = sim();
        sim.set_sensor_fault(0, true).unwrap();
        let e = sim.read_celsius(0).unwrap_err();
        assert!(matches!(e, HwError::Unavailable(_)), "{e}");
        assert!(e.to_string().contains("inlet"), "{e}");
        assert!(sim.read_celsius(1).is_ok());
        clock.advance_ms(1000);
        sim.set_sensor_fault(0, false).unwrap();
        assert!(sim.read_celsius(0).is_ok());
    }

    #[test]
    fn noise_is_reproducible_from_the_seed() {
        let readings = |seed: u64| {
            let clock = ManualClock::new();
            let mut c = cfg();
            c.seed = seed;
            let sim = Sim::with_clock(&c, clock);
            (0..10)
                .map(|_| sim.read_rpm(0).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(readings(7), readings(7));
        assert_ne!(readings(7), readings(8));
    }

    #[test]
    fn survives_a_poisoned_lock() {
        let (sim, clock) = sim();
        let r = std::thread::scope(|s| {
            s.spawn(|| {
                let _guard = sim.state.lock();
                panic!("poison the lock on purpose");
            })
            .join()
        });
        assert!(r.is_err());
        assert!(sim.state.is_poisoned());
        clock.advance_ms(100);
        assert!(sim.read_rpm(0).is_ok());
        assert!(sim.set_power_button(true).is_ok());
    }

    #[test]
    fn long_idle_gaps_are_cheap_enough() {
        let (sim, clock) = sim();
        clock.advance(Duration::from_secs(6 * 3600));
        let t0 = Instant::now();
        assert!(sim.read_celsius(1).is_ok());
        assert!(t0.elapsed() < Duration::from_secs(2));
    }
}
