//! The cooling zone: one control loop for all fans.
//!
//! Every period the loop reads every sensor and tachometer, decides each
//! fan's level and writes it:
//! - Auto: the level is the highest any sensor's curve asks for (linear
//!   between points, with hysteresis on the way down), never below
//!   `min_level`;
//! - Manual: the operator's level on the chosen fans (others stay on
//!   Auto) until the override expires, then Auto again by itself;
//! - Failsafe: entered when a fan fails (not turning while driven, or not
//!   present) or a sensor is lost for `fail_after` periods in a row; every
//!   fan at `failsafe_level` until everything has been good for
//!   `recover_after` periods. Failsafe overrides Manual.
//! - Thermal guard: a sensor at or above its curve's critical temperature
//!   (`critical_c`) puts the zone in Failsafe at once (no debounce) with
//!   every fan at 100 %, whatever the mode and `failsafe_level`; a manual
//!   override active then is ended, not suspended (a Critical event from
//!   the sensor says so), and new ones are refused until every sensor is
//!   `hysteresis_c` below its limit again.
//!
//! Invariant: once the loop has run, the fans are always driven by it;
//! on shutdown they are handed back to the hardware (`FanHw::release`).
//! State is published through a `watch` channel and events through an
//! mpsc channel; nothing here knows zbus. Every event is also written to
//! the event log (`crate::logs`, which forwards it to syslog) with its
//! `MessageId`: `Cooling.ModeChanged` (every change of `Mode`, Failsafe
//! included), `Cooling.FailsafeEntered`/`FailsafeLeft`,
//! `Cooling.FanLost`/`FanRestored`, `Cooling.SensorLost`/`SensorRestored`,
//! `Cooling.CriticalTemperature`/`CriticalCleared`. A mode change into or
//! out of Failsafe is only written to the log: its `Event` signal is the
//! failsafe one.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bmcd_api::{CoolingMode, Health, LogSeverity, Severity};
use tokio::sync::{mpsc, watch};
use tokio::time::{interval, Instant, MissedTickBehavior};

use crate::clock::now_ms;
use crate::config::{CoolingConfig, Curve};
use crate::hw::{FanHw, HwResult, Percent, TempHw};
use crate::logs::Logs;

/// The event log's source of every cooling event.
const SOURCE: &str = "cooling";

/// Why the cooling zone refused a request. The bus maps each to its
/// `org.bmcd.Error.*` name (`bus/cooling.rs`).
#[derive(Debug, Clone, PartialEq)]
pub enum CoolingError {
    /// A level above 100 %.
    LevelOutOfRange(u8),
    /// A timeout above the configured maximum.
    TimeoutTooLong { given: u32, max: u32 },
    /// No fan by that name; the names there are.
    NoSuchFan(String, Vec<String>),
    /// The zone is in failsafe (the reason), so manual control is refused.
    Failsafe(String),
}

impl std::fmt::Display for CoolingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CoolingError::LevelOutOfRange(l) => {
                write!(f, "level {l} is outside 0..=100 percent")
            }
            CoolingError::TimeoutTooLong { given, max } => {
                write!(f, "timeout {given} s is more than the maximum of {max} s")
            }
            CoolingError::NoSuchFan(n, all) => {
                write!(f, "no fan named '{n}' (fans: {})", all.join(", "))
            }
            CoolingError::Failsafe(why) => write!(
                f,
                "the fans are in failsafe ({why}); manual control is refused until it clears"
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct FanState {
    pub name: String,
    pub rpm: u32,
    /// The level last written to the fan, in percent: it changes only
    /// when a write succeeds.
    pub pwm: u8,
    pub present: bool,
    pub health: Health,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CoolingState {
    pub mode: CoolingMode,
    pub manual_level: u8,
    pub manual_fans: Vec<String>,
    pub manual_expires_ms: u64,
    pub auto_level: u8,
    pub failsafe_level: u8,
    pub failsafe_reason: String,
    /// (sensor, °C or NaN)
    pub temps: Vec<(String, f64)>,
    pub fans: Vec<FanState>,
}

/// One event: the `Cooling1.Event` signal carries severity, source and
/// message; the event log entry has the `MessageId` and `Data` too.
#[derive(Debug, Clone)]
pub struct Event {
    pub severity: Severity,
    /// `cooling`, or the fan or sensor concerned.
    pub source: String,
    pub message: String,
    /// A `bmcd_api::message_ids` id.
    pub message_id: &'static str,
    pub data: Vec<(&'static str, String)>,
}

/// An operator's override.
#[derive(Debug, Clone)]
struct Manual {
    level: Percent,
    /// Indexes into the fan list; all fans when the request named none.
    fans: Vec<usize>,
    expires: Option<Instant>,
}

/// A manual override request that passed validation.
#[derive(Debug, Clone)]
pub struct ManualRequest {
    level: Percent,
    fans: Vec<usize>,
    timeout_s: u32,
}

/// Consecutive good/bad counter with a latched verdict.
#[derive(Debug, Clone, Default)]
struct Debounce {
    bad: u32,
    good: u32,
    failed: bool,
}

impl Debounce {
    /// Feed one observation; returns Some(new verdict) when it flips.
    fn observe(&mut self, ok: bool, fail_after: u32, recover_after: u32) -> Option<bool> {
        if ok {
            self.bad = 0;
            self.good = self.good.saturating_add(1);
            if self.failed && self.good >= recover_after {
                self.failed = false;
                return Some(false);
            }
        } else {
            self.good = 0;
            self.bad = self.bad.saturating_add(1);
            if !self.failed && self.bad >= fail_after {
                self.failed = true;
                return Some(true);
            }
        }
        None
    }
}

/// Level a curve asks for at `t` °C.
pub fn interpolate(points: &[(f64, Percent)], t: f64) -> Percent {
    let Some(&(t0, l0)) = points.first() else {
        return Percent::FULL;
    };
    if !t.is_finite() {
        return Percent::FULL;
    }
    if t <= t0 {
        return l0;
    }
    for w in points.windows(2) {
        let (a, la) = w[0];
        let (b, lb) = w[1];
        if t <= b {
            return Percent::lerp(la, lb, (t - a) / (b - a));
        }
    }
    points.last().map(|p| p.1).unwrap_or(Percent::FULL)
}

/// The curve's level with hysteresis: rises at once, falls only when the
/// temperature is `h` °C below what the current level needs.
pub fn curve_level(curve: &Curve, t: f64, last: Percent, h: f64) -> Percent {
    let up = interpolate(&curve.points, t);
    if up >= last {
        return up;
    }
    let down = interpolate(&curve.points, t + h);
    down.min(last)
}

struct Inner {
    manual: Option<Manual>,
    fans: Vec<Debounce>,
    sensors: Vec<Debounce>,
    curve_levels: Vec<Percent>,
    /// For each curve, whether its sensor is at its critical temperature.
    critical: Vec<bool>,
    in_failsafe: bool,
    last_tick: Instant,
}

pub struct Cooling {
    fans_hw: Arc<dyn FanHw>,
    temps_hw: Arc<dyn TempHw>,
    cfg: CoolingConfig,
    fan_names: Vec<String>,
    sensor_names: Vec<String>,
    /// For each curve, the index of its sensor.
    curve_sensor: Vec<usize>,
    inner: Mutex<Inner>,
    state: watch::Sender<CoolingState>,
    events: mpsc::UnboundedSender<Event>,
    logs: Arc<Logs>,
}

/// One period's readings.
struct Readings {
    temps: Vec<HwResult<f64>>,
    rpms: Vec<HwResult<u32>>,
    present: Vec<bool>,
}

impl Cooling {
    pub fn new(
        fans_hw: Arc<dyn FanHw>,
        temps_hw: Arc<dyn TempHw>,
        cfg: CoolingConfig,
        logs: Arc<Logs>,
    ) -> (Arc<Cooling>, mpsc::UnboundedReceiver<Event>) {
        let fan_names = fans_hw.names();
        let sensor_names = temps_hw.names();
        let curve_sensor = cfg
            .curves
            .iter()
            .map(|c| {
                sensor_names
                    .iter()
                    .position(|n| *n == c.sensor)
                    .unwrap_or(usize::MAX)
            })
            .collect();
        let (events, rx) = mpsc::unbounded_channel();
        let (state, _) = watch::channel(CoolingState {
            mode: CoolingMode::Auto,
            manual_level: 0,
            manual_fans: Vec::new(),
            manual_expires_ms: 0,
            auto_level: 100,
            failsafe_level: cfg.failsafe_level.get(),
            failsafe_reason: String::new(),
            temps: sensor_names.iter().map(|n| (n.clone(), f64::NAN)).collect(),
            fans: fan_names
                .iter()
                .map(|n| FanState {
                    name: n.clone(),
                    rpm: 0,
                    pwm: 100,
                    present: true,
                    health: Health::Ok,
                })
                .collect(),
        });
        let inner = Inner {
            manual: None,
            fans: vec![Debounce::default(); fan_names.len()],
            sensors: vec![Debounce::default(); sensor_names.len()],
            curve_levels: vec![Percent::ZERO; cfg.curves.len()],
            critical: vec![false; cfg.curves.len()],
            in_failsafe: false,
            last_tick: Instant::now(),
        };
        let c = Arc::new(Cooling {
            fans_hw,
            temps_hw,
            cfg,
            fan_names,
            sensor_names,
            curve_sensor,
            inner: Mutex::new(inner),
            state,
            events,
            logs,
        });
        (c, rx)
    }

    pub fn subscribe(&self) -> watch::Receiver<CoolingState> {
        self.state.subscribe()
    }

    pub fn fan_names(&self) -> &[String] {
        &self.fan_names
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// When the loop last completed a period (for the watchdog).
    pub fn last_tick(&self) -> Instant {
        self.lock().last_tick
    }

    /// Write `ev` to the event log (with the table's severity `level`;
    /// this also reaches syslog) and send it as the `Event` signal.
    fn event(&self, level: LogSeverity, ev: Event) {
        self.log_event(level, &ev);
        let _ = self.events.send(ev);
    }

    /// Only the event log (and syslog), no signal.
    fn log_event(&self, level: LogSeverity, ev: &Event) {
        let message = if ev.source == SOURCE {
            ev.message.clone()
        } else {
            format!("{}: {}", ev.source, ev.message)
        };
        self.logs
            .event(level, SOURCE, ev.message_id, message, &ev.data);
    }

    /// A `Cooling.ModeChanged` event.
    fn mode_event(from: CoolingMode, to: CoolingMode, message: String) -> Event {
        Event {
            severity: Severity::Info,
            source: SOURCE.to_owned(),
            message,
            message_id: "Cooling.ModeChanged",
            data: vec![("from", from.to_string()), ("to", to.to_string())],
        }
    }

    /// Validate a manual override request without acting on it. This is
    /// where a level from the bus becomes a [`Percent`], the one check.
    pub fn check_manual(
        &self,
        level: u8,
        fans: &[String],
        timeout_s: u32,
    ) -> Result<ManualRequest, CoolingError> {
        let Some(level) = Percent::new(level) else {
            return Err(CoolingError::LevelOutOfRange(level));
        };
        if timeout_s > self.cfg.manual_timeout_max_s {
            return Err(CoolingError::TimeoutTooLong {
                given: timeout_s,
                max: self.cfg.manual_timeout_max_s,
            });
        }
        let mut idx = Vec::new();
        for f in fans {
            match self.fan_names.iter().position(|n| n == f) {
                Some(i) if !idx.contains(&i) => idx.push(i),
                Some(_) => {}
                None => return Err(CoolingError::NoSuchFan(f.clone(), self.fan_names.to_vec())),
            }
        }
        if idx.is_empty() {
            idx = (0..self.fan_names.len()).collect();
        }
        Ok(ManualRequest {
            level,
            fans: idx,
            timeout_s,
        })
    }

    /// Start a validated manual override. Takes effect at the next period.
    pub fn set_manual(&self, req: ManualRequest) -> Result<(), CoolingError> {
        let ManualRequest {
            level,
            fans: idx,
            timeout_s,
        } = req;
        let mut inner = self.lock();
        if inner.in_failsafe {
            return Err(CoolingError::Failsafe(
                self.state.borrow().failsafe_reason.clone(),
            ));
        }
        let (expires, expires_ms) = if timeout_s == 0 {
            (None, 0)
        } else {
            let d = Duration::from_secs(u64::from(timeout_s));
            (
                Some(Instant::now() + d),
                now_ms().saturating_add(d.as_millis() as u64),
            )
        };
        let names: Vec<String> = idx
            .iter()
            .filter_map(|i| self.fan_names.get(*i).cloned())
            .collect();
        inner.manual = Some(Manual {
            level,
            fans: idx,
            expires,
        });
        drop(inner);
        let mut from = CoolingMode::Auto;
        self.state.send_modify(|s| {
            from = s.mode;
            s.mode = CoolingMode::Manual;
            s.manual_level = level.get();
            s.manual_fans = names.clone();
            s.manual_expires_ms = expires_ms;
        });
        self.event(
            LogSeverity::Notice,
            Self::mode_event(
                from,
                CoolingMode::Manual,
                format!(
                    "manual override: {level} on {} for {}",
                    names.join(","),
                    if timeout_s == 0 {
                        "ever".to_owned()
                    } else {
                        format!("{timeout_s} s")
                    }
                ),
            ),
        );
        Ok(())
    }

    /// End a manual override (no-op in Auto).
    pub fn set_auto(&self) {
        let had = self.lock().manual.take().is_some();
        if had {
            let (from, to) = self.clear_manual_state();
            self.event(
                LogSeverity::Notice,
                Self::mode_event(from, to, "manual override ended".into()),
            );
        }
    }

    /// Forget the override in the published state; the mode before and
    /// after.
    fn clear_manual_state(&self) -> (CoolingMode, CoolingMode) {
        let mut change = (CoolingMode::Manual, CoolingMode::Auto);
        self.state.send_modify(|s| {
            let from = s.mode;
            if s.mode == CoolingMode::Manual {
                s.mode = CoolingMode::Auto;
            }
            change = (from, s.mode);
            s.manual_level = 0;
            s.manual_fans.clear();
            s.manual_expires_ms = 0;
        });
        change
    }

    fn read_all(&self) -> Readings {
        let temps = (0..self.sensor_names.len())
            .map(|i| self.temps_hw.read_celsius(i))
            .collect();
        let rpms = (0..self.fan_names.len())
            .map(|i| self.fans_hw.read_rpm(i))
            .collect();
        let present = (0..self.fan_names.len())
            .map(|i| self.fans_hw.present(i).unwrap_or(false))
            .collect();
        Readings {
            temps,
            rpms,
            present,
        }
    }

    /// One control period: decide and return the level of every fan.
    /// `Pwm` is not published here but by [`Cooling::write`], once written.
    fn step(&self, r: &Readings) -> Vec<Percent> {
        let cfg = &self.cfg;
        let now = Instant::now();
        let mut inner = self.lock();
        let prev = self.state.borrow().clone();

        // Manual expiry.
        if inner
            .manual
            .as_ref()
            .and_then(|m| m.expires)
            .is_some_and(|e| now >= e)
        {
            inner.manual = None;
            drop(inner);
            let (from, to) = self.clear_manual_state();
            self.event(
                LogSeverity::Notice,
                Self::mode_event(
                    from,
                    to,
                    "manual override expired; back to automatic control".into(),
                ),
            );
            inner = self.lock();
        }

        // Sensors.
        let mut temps = Vec::with_capacity(r.temps.len());
        for (i, t) in r.temps.iter().enumerate() {
            let name = self.sensor_names.get(i).cloned().unwrap_or_default();
            let ok = matches!(t, Ok(v) if v.is_finite());
            if let Some(d) = inner.sensors.get_mut(i) {
                match d.observe(ok, cfg.fail_after, cfg.recover_after) {
                    Some(true) => self.event(
                        LogSeverity::Error,
                        Event {
                            severity: Severity::Critical,
                            source: name.clone(),
                            message: match t {
                                Err(e) => format!("temperature sensor lost: {e}"),
                                Ok(_) => "temperature sensor reads nonsense".into(),
                            },
                            message_id: "Cooling.SensorLost",
                            data: vec![("sensor", name.clone())],
                        },
                    ),
                    Some(false) => self.event(
                        LogSeverity::Notice,
                        Event {
                            severity: Severity::Info,
                            source: name.clone(),
                            message: "temperature sensor recovered".into(),
                            message_id: "Cooling.SensorRestored",
                            data: vec![("sensor", name.clone())],
                        },
                    ),
                    None => {}
                }
            }
            temps.push((name, t.as_ref().ok().copied().unwrap_or(f64::NAN)));
        }

        // Auto level.
        let mut auto = cfg.min_level;
        for (ci, curve) in cfg.curves.iter().enumerate() {
            let si = self.curve_sensor.get(ci).copied().unwrap_or(usize::MAX);
            let t = temps.get(si).map(|x| x.1).unwrap_or(f64::NAN);
            let last = inner.curve_levels.get(ci).copied().unwrap_or(Percent::ZERO);
            let l = if t.is_finite() {
                curve_level(curve, t, last, cfg.hysteresis_c)
            } else {
                // Unreadable this period: keep the last level (a lost sensor
                // sends the zone to failsafe once debounced).
                last
            };
            if let Some(slot) = inner.curve_levels.get_mut(ci) {
                *slot = l;
            }
            auto = auto.max(l);
        }

        // Thermal guard: critical temperatures, with hysteresis on the way
        // out; an unreadable sensor keeps its verdict (losing it is failsafe
        // anyway once debounced).
        let mut critical: Vec<String> = Vec::new();
        let mut manual_ended = false;
        for (ci, curve) in cfg.curves.iter().enumerate() {
            let si = self.curve_sensor.get(ci).copied().unwrap_or(usize::MAX);
            let (name, t) = temps
                .get(si)
                .map(|(n, t)| (n.as_str(), *t))
                .unwrap_or(("?", f64::NAN));
            let limit = curve.critical();
            let was = inner.critical.get(ci).copied().unwrap_or(false);
            let hot = if t.is_finite() {
                t >= limit || (was && t > limit - cfg.hysteresis_c)
            } else {
                was
            };
            if let Some(slot) = inner.critical.get_mut(ci) {
                *slot = hot;
            }
            if hot {
                critical.push(format!("{name} at {t:.1} °C, critical {limit:.1} °C"));
            }
            let data = || {
                vec![
                    ("sensor", name.to_owned()),
                    ("celsius", format!("{t:.1}")),
                    ("limit", format!("{limit:.1}")),
                ]
            };
            if hot && !was {
                let ended = inner.manual.take().is_some();
                manual_ended |= ended;
                self.event(
                    LogSeverity::Critical,
                    Event {
                        severity: Severity::Critical,
                        source: name.to_owned(),
                        message: format!(
                            "{t:.1} °C reached the critical temperature of {limit:.1} °C; all \
                             fans at 100%{}",
                            if ended { "; manual override ended" } else { "" }
                        ),
                        message_id: "Cooling.CriticalTemperature",
                        data: data(),
                    },
                );
            } else if was && !hot {
                self.event(
                    LogSeverity::Notice,
                    Event {
                        severity: Severity::Info,
                        source: name.to_owned(),
                        message: format!(
                            "{t:.1} °C, below the critical temperature of {limit:.1} °C again"
                        ),
                        message_id: "Cooling.CriticalCleared",
                        data: data(),
                    },
                );
            }
        }

        // Fans: health from the duty written last period.
        let mut fans = Vec::with_capacity(self.fan_names.len());
        let rpms: Vec<u32> = r.rpms.iter().map(|x| *x.as_ref().unwrap_or(&0)).collect();
        for (i, name) in self.fan_names.iter().enumerate() {
            let present = r.present.get(i).copied().unwrap_or(false);
            let rpm = rpms.get(i).copied().unwrap_or(0);
            let pwm = prev.fans.get(i).map(|f| f.pwm).unwrap_or(100);
            let readable = r.rpms.get(i).is_some_and(|x| x.is_ok());
            let driven = pwm >= cfg.fan_fail_min_level.get();
            let ok = present && readable && (!driven || rpm >= cfg.fan_fail_rpm);
            if let Some(d) = inner.fans.get_mut(i) {
                match d.observe(ok, cfg.fail_after, cfg.recover_after) {
                    Some(true) => self.event(
                        LogSeverity::Error,
                        Event {
                            severity: Severity::Critical,
                            source: name.clone(),
                            message: if !present {
                                "fan not present".into()
                            } else if !readable {
                                "fan tachometer unreadable".into()
                            } else {
                                format!("fan failed: {rpm} RPM at {pwm}% duty")
                            },
                            message_id: "Cooling.FanLost",
                            data: vec![("fan", name.clone())],
                        },
                    ),
                    Some(false) => self.event(
                        LogSeverity::Notice,
                        Event {
                            severity: Severity::Info,
                            source: name.clone(),
                            message: "fan recovered".into(),
                            message_id: "Cooling.FanRestored",
                            data: vec![("fan", name.clone())],
                        },
                    ),
                    None => {}
                }
            }
            let failed = inner.fans.get(i).is_some_and(|d| d.failed);
            // Degraded: well below fans driven at the same duty.
            let peers: Vec<u32> = prev
                .fans
                .iter()
                .enumerate()
                .filter(|(j, f)| *j != i && f.pwm == pwm && f.health == Health::Ok)
                .filter_map(|(j, _)| rpms.get(j).copied())
                .collect();
            let degraded = !peers.is_empty() && {
                let mean = peers.iter().map(|x| u64::from(*x)).sum::<u64>() / peers.len() as u64;
                u64::from(rpm) * 2 < mean
            };
            let health = if failed {
                Health::Failed
            } else if degraded && driven {
                Health::Degraded
            } else {
                Health::Ok
            };
            fans.push(FanState {
                name: name.clone(),
                rpm,
                pwm,
                present,
                health,
            });
        }

        // Failsafe.
        let mut reasons: Vec<String> = Vec::new();
        for (i, d) in inner.fans.iter().enumerate() {
            if d.failed {
                reasons.push(format!(
                    "fan {} failed",
                    self.fan_names.get(i).map(String::as_str).unwrap_or("?")
                ));
            }
        }
        for (i, d) in inner.sensors.iter().enumerate() {
            if d.failed {
                reasons.push(format!(
                    "sensor {} lost",
                    self.sensor_names.get(i).map(String::as_str).unwrap_or("?")
                ));
            }
        }
        let failsafe_level = if critical.is_empty() {
            cfg.failsafe_level
        } else {
            Percent::FULL
        };
        reasons.append(&mut critical);
        let failsafe = !reasons.is_empty();
        let reason = reasons.join(", ");
        if failsafe != inner.in_failsafe {
            inner.in_failsafe = failsafe;
            if failsafe {
                self.event(
                    LogSeverity::Critical,
                    Event {
                        severity: Severity::Critical,
                        source: SOURCE.to_owned(),
                        message: format!(
                            "entering failsafe: {reason}; all fans at {failsafe_level}"
                        ),
                        message_id: "Cooling.FailsafeEntered",
                        data: vec![
                            ("reason", reason.clone()),
                            ("level", failsafe_level.get().to_string()),
                        ],
                    },
                );
            } else {
                self.event(
                    LogSeverity::Notice,
                    Event {
                        severity: Severity::Info,
                        source: SOURCE.to_owned(),
                        message: "failsafe cleared".into(),
                        message_id: "Cooling.FailsafeLeft",
                        data: Vec::new(),
                    },
                );
            }
        }

        // Decide levels.
        let levels: Vec<Percent> = (0..self.fan_names.len())
            .map(|i| {
                if failsafe {
                    failsafe_level
                } else {
                    match &inner.manual {
                        Some(m) if m.fans.contains(&i) => m.level,
                        _ => auto,
                    }
                }
            })
            .collect();
        let mode = if failsafe {
            CoolingMode::Failsafe
        } else if inner.manual.is_some() {
            CoolingMode::Manual
        } else {
            CoolingMode::Auto
        };
        inner.last_tick = now;
        drop(inner);
        let mut mode_change = None;
        self.state.send_if_modified(|s| {
            if s.mode != mode {
                mode_change = Some(s.mode);
            }
            let mut next = CoolingState {
                mode,
                auto_level: auto.get(),
                failsafe_level: failsafe_level.get(),
                failsafe_reason: reason,
                temps,
                fans,
                ..s.clone()
            };
            if manual_ended {
                next.manual_level = 0;
                next.manual_fans.clear();
                next.manual_expires_ms = 0;
            }
            if *s == next {
                return false;
            }
            *s = next;
            true
        });
        // Into or out of Failsafe (Auto and Manual changes were written
        // where they happened).
        if let Some(from) =
            mode_change.filter(|f| *f == CoolingMode::Failsafe || mode == CoolingMode::Failsafe)
        {
            self.log_event(
                LogSeverity::Notice,
                &Self::mode_event(from, mode, format!("cooling mode {from} -> {mode}")),
            );
        }
        levels
    }

    /// Write every fan's level, then publish as its `Pwm` each level that
    /// was written; a fan whose write failed keeps the last level written.
    /// Returns each write's result.
    fn write(&self, levels: &[Percent]) -> Vec<HwResult<()>> {
        let results: Vec<HwResult<()>> = levels
            .iter()
            .enumerate()
            .map(|(i, l)| self.fans_hw.write_pwm(i, *l))
            .collect();
        self.state.send_if_modified(|s| {
            let mut changed = false;
            for ((f, l), r) in s.fans.iter_mut().zip(levels).zip(&results) {
                if r.is_ok() && f.pwm != l.get() {
                    f.pwm = l.get();
                    changed = true;
                }
            }
            changed
        });
        results
    }

    /// The control loop; runs until the task is dropped.
    pub async fn run(self: Arc<Self>) {
        let mut tick = interval(Duration::from_millis(self.cfg.interval_ms));
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut write_errors = vec![false; self.fan_names.len()];
        loop {
            tick.tick().await;
            let me = self.clone();
            let readings = match tokio::task::spawn_blocking(move || me.read_all()).await {
                Ok(r) => r,
                Err(e) => {
                    log::error!("cooling: reading task failed: {e}");
                    continue;
                }
            };
            let levels = self.step(&readings);
            let me = self.clone();
            let results = tokio::task::spawn_blocking(move || me.write(&levels))
                .await
                .unwrap_or_default();
            for (i, r) in results.into_iter().enumerate() {
                let failed = r.is_err();
                if let (Err(e), Some(false)) = (&r, write_errors.get(i)) {
                    let name = self.fan_names.get(i).map(String::as_str).unwrap_or("?");
                    log::error!("{name}: cannot set PWM: {e}");
                }
                if let Some(w) = write_errors.get_mut(i) {
                    *w = failed;
                }
            }
        }
    }

    /// Hand the fans back to the hardware (full speed or hardware control).
    pub fn release(&self) {
        if let Err(e) = self.fans_hw.release() {
            log::error!("cooling: releasing fans: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pct(n: u8) -> Percent {
        Percent::new(n).unwrap_or_else(|| panic!("{n}"))
    }

    fn curve() -> Curve {
        Curve {
            sensor: "s".into(),
            points: vec![(30.0, pct(20)), (50.0, pct(60)), (70.0, pct(100))],
            critical_c: None,
        }
    }

    #[test]
    fn interpolation() {
        let c = curve();
        assert_eq!(interpolate(&c.points, 10.0), pct(20));
        assert_eq!(interpolate(&c.points, 40.0), pct(40));
        assert_eq!(interpolate(&c.points, 60.0), pct(80));
        assert_eq!(interpolate(&c.points, 99.0), pct(100));
        assert_eq!(interpolate(&c.points, f64::NAN), pct(100));
        assert_eq!(interpolate(&[], 10.0), Percent::FULL);
    }

    #[test]
    fn hysteresis_holds_then_falls() {
        let c = curve();
        assert_eq!(curve_level(&c, 50.0, pct(20), 2.0), pct(60));
        // 1 °C lower: not enough to drop with 2 °C hysteresis.
        assert_eq!(curve_level(&c, 49.0, pct(60), 2.0), pct(60));
        // 5 °C lower: drops to the level of 47 °C.
        assert_eq!(curve_level(&c, 45.0, pct(60), 2.0), pct(54));
    }

    /// Two fans; writes to `f1` fail while `fail_f1` is set.
    #[derive(Default)]
    struct Fans {
        fail_f1: std::sync::atomic::AtomicBool,
    }
    impl FanHw for Fans {
        fn names(&self) -> Vec<String> {
            vec!["f0".into(), "f1".into()]
        }
        fn read_rpm(&self, _: usize) -> HwResult<u32> {
            Ok(5000)
        }
        fn write_pwm(&self, fan: usize, _: Percent) -> HwResult<()> {
            if fan == 1 && self.fail_f1.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(crate::hw::HwError::Unavailable("f1: read-only".into()));
            }
            Ok(())
        }
        fn present(&self, _: usize) -> HwResult<bool> {
            Ok(true)
        }
        fn release(&self) -> HwResult<()> {
            Ok(())
        }
    }
    struct Temps;
    impl TempHw for Temps {
        fn names(&self) -> Vec<String> {
            vec!["cpu".into()]
        }
        fn read_celsius(&self, _: usize) -> HwResult<f64> {
            Ok(25.0)
        }
    }

    fn zone(failsafe_level: u8) -> (Arc<Cooling>, mpsc::UnboundedReceiver<Event>) {
        zone_with(failsafe_level, Arc::new(Fans::default()))
    }

    fn zone_with(
        failsafe_level: u8,
        fans: Arc<Fans>,
    ) -> (Arc<Cooling>, mpsc::UnboundedReceiver<Event>) {
        let cfg: CoolingConfig = serde_json::from_value(serde_json::json!({
            "failsafe_level": failsafe_level,
            "hysteresis_c": 2.0,
            "curves": [{ "sensor": "cpu", "points": [[40.0, 20], [80.0, 100]],
                         "critical_c": 83.0 }]
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("bmcd-cooling-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let logs = Logs::open(&dir, &Default::default()).unwrap_or_else(|e| panic!("{e}"));
        Cooling::new(fans, Arc::new(Temps), cfg, logs)
    }

    /// The event log: (MessageId, Data) of every entry, oldest first.
    fn logged(z: &Cooling) -> Vec<(String, Vec<(String, String)>)> {
        let page = z
            .logs
            .event
            .store
            .page(0, 1000, &Default::default())
            .unwrap_or_else(|e| panic!("{e}"));
        page.entries
            .into_iter()
            .map(|e| {
                assert_eq!(e.source, "cooling");
                (e.message_id, e.data)
            })
            .collect()
    }

    fn ids(z: &Cooling) -> Vec<String> {
        logged(z).into_iter().map(|(id, _)| id).collect()
    }

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn manual_and_auto_are_mode_changes() {
        let (z, mut ev) = zone(60);
        let req = z.check_manual(30, &[], 0).unwrap_or_else(|e| panic!("{e}"));
        assert!(z.set_manual(req).is_ok());
        z.set_auto();
        assert_eq!(
            logged(&z),
            vec![
                (
                    "Cooling.ModeChanged".to_owned(),
                    kv(&[("from", "Auto"), ("to", "Manual")])
                ),
                (
                    "Cooling.ModeChanged".to_owned(),
                    kv(&[("from", "Manual"), ("to", "Auto")])
                ),
            ]
        );
        // The signals are as before.
        let e = ev.try_recv().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((e.severity, e.source.as_str()), (Severity::Info, "cooling"));
        assert!(
            e.message.starts_with("manual override: 30%"),
            "{}",
            e.message
        );
        let e = ev.try_recv().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(e.message, "manual override ended");
        assert!(ev.try_recv().is_err());
    }

    #[test]
    fn a_lost_fan_and_sensor_are_logged_with_failsafe() {
        let (z, mut ev) = zone(60);
        let cfg = z.cfg.clone();
        z.step(&at(50.0));
        assert!(logged(&z).is_empty());
        // f1 gone; the sensor unreadable.
        let bad = || Readings {
            temps: vec![Err(crate::hw::HwError::Unavailable("gone".into()))],
            rpms: vec![Ok(5000), Ok(5000)],
            present: vec![true, false],
        };
        for _ in 0..cfg.fail_after {
            z.step(&bad());
        }
        assert_eq!(z.subscribe().borrow().mode, CoolingMode::Failsafe);
        let got = logged(&z);
        assert_eq!(
            got.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(),
            [
                "Cooling.SensorLost",
                "Cooling.FanLost",
                "Cooling.FailsafeEntered",
                "Cooling.ModeChanged"
            ],
            "{got:?}"
        );
        assert_eq!(got[0].1, kv(&[("sensor", "cpu")]));
        assert_eq!(got[1].1, kv(&[("fan", "f1")]));
        assert_eq!(
            got[2].1,
            kv(&[
                ("reason", "fan f1 failed, sensor cpu lost"),
                ("level", "60")
            ])
        );
        assert_eq!(got[3].1, kv(&[("from", "Auto"), ("to", "Failsafe")]));
        for _ in 0..cfg.recover_after {
            z.step(&at(50.0));
        }
        assert_eq!(z.subscribe().borrow().mode, CoolingMode::Auto);
        let got = logged(&z);
        assert_eq!(
            got[4..].iter().map(|e| e.0.as_str()).collect::<Vec<_>>(),
            [
                "Cooling.SensorRestored",
                "Cooling.FanRestored",
                "Cooling.FailsafeLeft",
                "Cooling.ModeChanged"
            ],
            "{got:?}"
        );
        assert_eq!(got[7].1, kv(&[("from", "Failsafe"), ("to", "Auto")]));
        // Signals: the same six as before (the mode changes into and out
        // of Failsafe are the failsafe events).
        let mut sig = Vec::new();
        while let Ok(e) = ev.try_recv() {
            sig.push((e.source, e.message_id));
        }
        assert_eq!(
            sig,
            [
                ("cpu".to_owned(), "Cooling.SensorLost"),
                ("f1".to_owned(), "Cooling.FanLost"),
                ("cooling".to_owned(), "Cooling.FailsafeEntered"),
                ("cpu".to_owned(), "Cooling.SensorRestored"),
                ("f1".to_owned(), "Cooling.FanRestored"),
                ("cooling".to_owned(), "Cooling.FailsafeLeft"),
            ]
        );
    }

    #[test]
    fn critical_temperature_is_logged() {
        let (z, _ev) = zone(60);
        z.step(&at(90.0));
        z.step(&at(50.0));
        assert_eq!(
            ids(&z),
            [
                "Cooling.CriticalTemperature",
                "Cooling.FailsafeEntered",
                "Cooling.ModeChanged",
                "Cooling.CriticalCleared",
                "Cooling.FailsafeLeft",
                "Cooling.ModeChanged"
            ]
        );
        assert_eq!(
            logged(&z)[0].1,
            kv(&[("sensor", "cpu"), ("celsius", "90.0"), ("limit", "83.0")])
        );
    }

    fn at(t: f64) -> Readings {
        Readings {
            temps: vec![Ok(t)],
            rpms: vec![Ok(5000), Ok(5000)],
            present: vec![true, true],
        }
    }

    #[test]
    fn critical_temperature_ends_manual_and_forces_full_speed() {
        let (z, mut ev) = zone(60);
        let req = z.check_manual(0, &[], 0);
        assert!(z.set_manual(req.unwrap_or_else(|e| panic!("{e}"))).is_ok());
        assert_eq!(z.step(&at(70.0)), vec![Percent::ZERO; 2]);
        assert_eq!(z.subscribe().borrow().mode, CoolingMode::Manual);
        while ev.try_recv().is_ok() {}

        // At the limit: manual ends, every fan at 100 % (not failsafe_level).
        assert_eq!(z.step(&at(83.0)), vec![Percent::FULL; 2]);
        let st = z.subscribe().borrow().clone();
        assert_eq!(st.mode, CoolingMode::Failsafe);
        assert_eq!((st.manual_level, st.manual_fans.len()), (0, 0));
        assert_eq!(st.failsafe_level, 100);
        assert!(
            st.failsafe_reason.contains("cpu at 83.0"),
            "{}",
            st.failsafe_reason
        );
        let e = ev.try_recv().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((e.severity, e.source.as_str()), (Severity::Critical, "cpu"));
        assert!(e.message.contains("manual override ended"), "{}", e.message);
        let r = z.check_manual(50, &[], 0).and_then(|r| z.set_manual(r));
        assert!(
            matches!(r, Err(CoolingError::Failsafe(ref m)) if m.contains("cpu")),
            "{r:?}"
        );

        // Within the hysteresis: still critical; below it: Auto again,
        // and the override is gone for good.
        assert_eq!(z.step(&at(81.5)), vec![Percent::FULL; 2]);
        z.step(&at(80.5));
        let st = z.subscribe().borrow().clone();
        assert_eq!((st.mode, st.failsafe_level), (CoolingMode::Auto, 60));
        let r = z.check_manual(50, &[], 0).and_then(|r| z.set_manual(r));
        assert!(r.is_ok(), "{r:?}");
    }

    #[test]
    fn critical_temperature_in_auto_forces_full_speed() {
        let (z, _ev) = zone(60);
        assert_eq!(z.step(&at(50.0)), vec![pct(40); 2]);
        assert_eq!(z.step(&at(90.0)), vec![Percent::FULL; 2]);
        assert_eq!(z.subscribe().borrow().mode, CoolingMode::Failsafe);
        // An unreadable sensor keeps the verdict (and is lost once debounced).
        let mut r = at(0.0);
        r.temps = vec![Err(crate::hw::HwError::Unavailable("gone".into()))];
        assert_eq!(z.step(&r), vec![Percent::FULL; 2]);
    }

    fn pwms(z: &Cooling) -> Vec<u8> {
        z.subscribe().borrow().fans.iter().map(|f| f.pwm).collect()
    }

    #[test]
    fn pwm_is_published_only_once_written() {
        let fans = Arc::new(Fans::default());
        let (z, _ev) = zone_with(60, fans.clone());
        // Deciding is not writing: Pwm still holds the start value.
        let levels = z.step(&at(50.0));
        assert_eq!(levels, vec![pct(40); 2]);
        assert_eq!(pwms(&z), vec![100, 100]);
        assert!(z.write(&levels).iter().all(Result::is_ok));
        assert_eq!(pwms(&z), vec![40, 40]);

        // A failed write keeps the last level written.
        fans.fail_f1
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let levels = z.step(&at(60.0));
        assert_eq!(levels, vec![pct(60); 2]);
        let r = z.write(&levels);
        assert!(r[0].is_ok() && r[1].is_err(), "{r:?}");
        assert_eq!(pwms(&z), vec![60, 40]);

        fans.fail_f1
            .store(false, std::sync::atomic::Ordering::SeqCst);
        let levels = z.step(&at(60.0));
        assert!(z.write(&levels).iter().all(Result::is_ok));
        assert_eq!(pwms(&z), vec![60, 60]);
    }

    #[test]
    fn debounce() {
        let mut d = Debounce::default();
        assert_eq!(d.observe(false, 3, 2), None);
        assert_eq!(d.observe(false, 3, 2), None);
        assert_eq!(d.observe(false, 3, 2), Some(true));
        assert_eq!(d.observe(true, 3, 2), None);
        assert_eq!(d.observe(false, 3, 2), None);
        assert_eq!(d.observe(true, 3, 2), None);
        assert_eq!(d.observe(true, 3, 2), Some(false));
    }
}
