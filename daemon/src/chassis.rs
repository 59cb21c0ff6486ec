//! The chassis controller: power sequencing over `PowerHw`, the identify
//! LED with its timeout, and the power restore policy.
//!
//! Invariants:
//! - at most one transition runs at a time; `pending != None` exactly while
//!   one runs, and a request made meanwhile fails with `Busy`;
//! - when no transition runs, `power` mirrors power-good (a monitor polls
//!   it, so a host that shuts itself down is seen as Off);
//! - the restore policy is written to disk before the setter returns;
//! - what `Restore` brings back is on disk before a transition is
//!   acknowledged: the requested end state (off for PowerOff, on for
//!   PowerOn, PowerCycle and Reset), replaced by the settled state when the
//!   transition ends or when power-good changes while idle. An intermediate
//!   state (the off phase of a cycle) is never persisted.
//!
//! Every transition is a task (`crate::tasks`): `request` returns its id
//! once the transition is accepted and recorded; the task's phases, progress
//! and outcome follow the work. `pending` stays for old clients.
//! Transition tasks are not cancellable, except a graceful power off
//! during its wait for the host: cancelling it skips the forced fallback
//! (the host OS, already asked, may still shut down).
//!
//! State is published through a `watch` channel; the bus layer turns
//! changes into `PropertiesChanged`. Nothing here knows zbus.
//!
//! Events (`crate::logs`): `Chassis.PowerStateChanged` on every change of
//! the published power state (a host that turns itself off included);
//! `Chassis.TransitionCompleted` or `Chassis.TransitionFailed` (failed,
//! cancelled, or interrupted by a stop or crash of bmcd: at the clean stop
//! through [`Chassis::stopped`], after a crash at the next start) exactly
//! once per transition task; `Chassis.RestorePolicyApplied` at start.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::fmt;
use std::io;

use bmcd_api::{LogSeverity, PowerOffMode, PowerState, RestorePolicy, TaskState, Transition};
use tokio::sync::watch;
use tokio::time::{sleep, Instant};

use crate::clock::now_ms;
use crate::config::ChassisConfig;
use crate::hw::{blocking, HwError, PowerHw};
use crate::logs::Logs;
use crate::store::Store;
use crate::sync::lock;
use crate::tasks::{ResultValue, TaskHandle, Tasks};

/// How often power-good is sampled, while idle and while waiting for it.
const POLL: Duration = Duration::from_millis(50);
/// The task kinds of the transitions (see [`Chassis::plan`]).
pub const TASK_KINDS: [&str; 4] = ["PowerOn", "PowerOff", "PowerCycle", "Reset"];
/// The events' source.
const SOURCE: &str = "chassis";

#[derive(Debug, Clone, PartialEq)]
pub struct ChassisState {
    pub power: PowerState,
    pub pending: Transition,
    pub last_change_ms: u64,
    pub policy: RestorePolicy,
    pub identify: bool,
    pub identify_expires_ms: u64,
}

pub struct Chassis {
    hw: Arc<dyn PowerHw>,
    tasks: Arc<Tasks>,
    cfg: ChassisConfig,
    store: Arc<Store>,
    state: watch::Sender<ChassisState>,
    /// Bumped on every identify request so an older timer does not turn off
    /// a newer request's LED.
    identify_gen: AtomicU64,
    /// `host_on` as persisted by the previous run, read before anything of
    /// this run can overwrite it: what `Restore` brings back.
    restore_on: bool,
    logs: Arc<Logs>,
    /// Task id and kind of each transition whose end event is not
    /// written yet (one, or two for a moment when a new transition starts
    /// as the previous one ends). Whoever removes an entry (the transition
    /// when it ends, or [`Chassis::stopped`]) writes that event, so it is
    /// written once.
    running: Mutex<Vec<(u64, &'static str)>>,
}

/// Why the chassis refused a request or a transition failed. The bus maps
/// each to its `org.bmcd.Error.*` name (`bus/chassis.rs`).
#[derive(Debug)]
pub enum ChassisError {
    /// Another transition is under way.
    Busy(Transition),
    /// Reset or power cycle while the host is off.
    HostOff(Transition),
    /// A time argument above its configured maximum.
    TooLong {
        what: &'static str,
        given: u32,
        max: u32,
    },
    /// `SetIdentify(false, seconds > 0)`.
    SecondsWithOff,
    /// The power-control hardware failed.
    Hardware(HwError),
    /// Power-good did not reach the wanted level in time.
    PowerGoodTimeout { rise: bool, ms: u64 },
    /// A setting could not be written to disk.
    Persist(io::Error),
    /// The task that would carry the transition could not be recorded.
    Task(io::Error),
    /// The graceful wait was cancelled: no forced power off.
    Cancelled,
}

impl fmt::Display for ChassisError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChassisError::Busy(t) => write!(
                f,
                "a power {} is already under way",
                t.as_str().to_lowercase()
            ),
            ChassisError::HostOff(t) => write!(
                f,
                "cannot {} the host while it is off; use power on",
                if *t == Transition::Reset {
                    "reset"
                } else {
                    "power cycle"
                }
            ),
            ChassisError::TooLong { what, given, max } => {
                write!(f, "{what} {given} s is more than the maximum of {max} s")
            }
            ChassisError::SecondsWithOff => {
                f.write_str("seconds applies only when turning identify on")
            }
            ChassisError::Hardware(e) => write!(f, "power control hardware: {e}"),
            ChassisError::PowerGoodTimeout { rise: true, ms } => {
                write!(f, "power-good did not rise within {ms} ms")
            }
            ChassisError::PowerGoodTimeout { rise: false, ms } => write!(
                f,
                "power-good still high after holding the power button {ms} ms"
            ),
            ChassisError::Persist(e) => write!(f, "cannot persist the setting: {e}"),
            ChassisError::Task(e) => write!(f, "cannot record the task: {e}"),
            ChassisError::Cancelled => f.write_str(
                "cancelled during the graceful wait: no forced power off (the host OS \
                 may still shut down)",
            ),
        }
    }
}

impl From<HwError> for ChassisError {
    fn from(e: HwError) -> Self {
        ChassisError::Hardware(e)
    }
}

impl Chassis {
    /// Read power-good once to start from the truth.
    /// Transitions that a crash of the previous run interrupted are
    /// written as `Chassis.TransitionFailed` events.
    pub async fn new(
        hw: Arc<dyn PowerHw>,
        cfg: ChassisConfig,
        store: Arc<Store>,
        tasks: Arc<Tasks>,
        logs: Arc<Logs>,
    ) -> Result<Arc<Chassis>, HwError> {
        let h = hw.clone();
        let on = blocking(move || h.power_good()).await?;
        let persisted = store.get();
        let policy = persisted
            .restore_policy
            .unwrap_or(cfg.default_restore_policy);
        let (state, _) = watch::channel(ChassisState {
            power: if on { PowerState::On } else { PowerState::Off },
            pending: Transition::None,
            last_change_ms: now_ms(),
            policy,
            identify: false,
            identify_expires_ms: 0,
        });
        let h = hw.clone();
        if let Err(e) = blocking(move || h.set_identify_led(false)).await {
            log::warn!("identify LED: {e}");
        }
        for t in tasks.interrupted_at_open() {
            if let Some(kind) = TASK_KINDS.iter().find(|k| **k == t.kind) {
                transition_failed(&logs, kind, t.id, t.state, &t.error.0, &t.error.1);
            }
        }
        Ok(Arc::new(Chassis {
            hw,
            tasks,
            cfg,
            store,
            state,
            identify_gen: AtomicU64::new(0),
            restore_on: persisted.host_on,
            logs,
            running: Mutex::new(Vec::new()),
        }))
    }

    /// Write `Chassis.PowerStateChanged`.
    fn power_changed(&self, from: PowerState, to: PowerState) {
        self.logs.event(
            LogSeverity::Notice,
            SOURCE,
            "Chassis.PowerStateChanged",
            format!("host power {from} -> {to}"),
            &[("from", from.to_string()), ("to", to.to_string())],
        );
    }

    /// Write the end event of transition task `id` (before the task
    /// shows its end), unless it was written already: `planned` is the
    /// state the work is about to give it, with its error name and text;
    /// a task already ended from outside (interrupted) keeps its own.
    fn transition_ended(&self, id: u64, planned: TaskState, error: (&str, &str)) {
        let Some(snap) = self.tasks.get(id).map(|rx| rx.borrow().clone()) else {
            return;
        };
        let kind = {
            let mut running = lock(&self.running);
            let Some(i) = running.iter().position(|r| r.0 == id) else {
                return;
            };
            running.swap_remove(i).1
        };
        let (state, name, text) = if snap.state.is_final() {
            (snap.state, snap.error.0.as_str(), snap.error.1.as_str())
        } else {
            (planned, error.0, error.1)
        };
        if state == TaskState::Completed {
            self.logs.event(
                LogSeverity::Informational,
                SOURCE,
                "Chassis.TransitionCompleted",
                format!("{kind} completed (task {id})"),
                &[("transition", kind.to_owned()), ("task", id.to_string())],
            );
        } else {
            transition_failed(&self.logs, kind, id, state, name, text);
        }
    }

    /// bmcd stops (after `Tasks::shutdown`): a transition still running
    /// was interrupted; write its end event.
    pub fn stopped(&self) {
        let ids: Vec<u64> = lock(&self.running).iter().map(|r| r.0).collect();
        for id in ids {
            self.transition_ended(
                id,
                TaskState::Interrupted,
                (crate::tasks::ERROR_INTERRUPTED, "bmcd was stopped"),
            );
        }
    }

    pub fn subscribe(&self) -> watch::Receiver<ChassisState> {
        self.state.subscribe()
    }

    pub fn snapshot(&self) -> ChassisState {
        self.state.borrow().clone()
    }

    /// Publish `p`; persists nothing (see [`Chassis::persist_host_on`]).
    fn set_power(&self, p: PowerState) {
        let mut from = None;
        self.state.send_if_modified(|s| {
            if s.power == p {
                return false;
            }
            from = Some(s.power);
            s.power = p;
            s.last_change_ms = now_ms();
            true
        });
        if let Some(from) = from {
            self.power_changed(from, p);
        }
    }

    /// Record durably whether `Restore` should bring the host back on. A
    /// failure is logged, not returned: power control must keep working on
    /// a BMC whose flash is full or read-only, and `Restore` then follows
    /// the previous record.
    fn persist_host_on(&self, on: bool, why: &str) {
        if let Err(e) = self.store.update(|st| st.host_on = on) {
            log::error!("chassis: cannot persist the host state ({why}): {e}");
        }
    }

    /// A transition has ended and its slot is still held: publish the
    /// settled state and persist it.
    fn settled(&self, on: bool) {
        self.persist_host_on(on, "settled");
        self.set_power(if on { PowerState::On } else { PowerState::Off });
    }

    /// Power-good seen while idle: publish and persist it, unless a
    /// transition was claimed meanwhile. The check, the write and the
    /// publication happen under the state's lock, which `claim` takes too,
    /// so a request's record is never overwritten by an older observation.
    fn observed_idle(&self, on: bool) {
        let p = if on { PowerState::On } else { PowerState::Off };
        let mut from = None;
        self.state.send_if_modified(|s| {
            if s.pending != Transition::None {
                return false;
            }
            // A no-op (nothing written) unless the record changes.
            self.persist_host_on(on, "observed");
            if s.power == p {
                return false;
            }
            from = Some(s.power);
            s.power = p;
            s.last_change_ms = now_ms();
            true
        });
        if let Some(from) = from {
            self.power_changed(from, p);
        }
    }

    fn finish(&self) {
        self.state.send_modify(|s| s.pending = Transition::None);
    }

    /// Claim the single transition slot, or fail with `Busy`.
    fn claim(&self, t: Transition) -> Result<PowerState, ChassisError> {
        let mut result = Err(ChassisError::Busy(t));
        self.state.send_if_modified(|s| {
            if s.pending != Transition::None {
                result = Err(ChassisError::Busy(s.pending));
                return false;
            }
            result = Ok(s.power);
            s.pending = t;
            true
        });
        result
    }

    async fn power_good(&self) -> Result<bool, HwError> {
        let h = self.hw.clone();
        blocking(move || h.power_good()).await
    }

    async fn button(&self, reset: bool, pressed: bool) -> Result<(), HwError> {
        let h = self.hw.clone();
        blocking(move || {
            if reset {
                h.set_reset_button(pressed)
            } else {
                h.set_power_button(pressed)
            }
        })
        .await
    }

    /// Press and release a button; the release is attempted even when the
    /// press failed, so a line is never left asserted.
    async fn press(&self, reset: bool, ms: u64) -> Result<(), HwError> {
        let r = self.button(reset, true).await;
        if r.is_ok() {
            sleep(Duration::from_millis(ms)).await;
        }
        let r2 = self.button(reset, false).await;
        r.and(r2)
    }

    /// Wait until power-good equals `want` or `timeout` passes, reporting
    /// the elapsed share of `timeout` as the progress of the task's phase.
    async fn wait_power(
        &self,
        want: bool,
        timeout: Duration,
        task: &TaskHandle,
    ) -> Result<bool, HwError> {
        let start = Instant::now();
        let deadline = start + timeout;
        loop {
            if self.power_good().await? == want {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            task.progress(now.duration_since(start).as_secs_f64() / timeout.as_secs_f64());
            sleep(POLL).await;
        }
    }

    /// The task kind and weighted phases of a transition.
    fn plan(t: Transition, mode: PowerOffMode) -> (&'static str, &'static [(&'static str, u32)]) {
        match (t, mode) {
            (Transition::On | Transition::None, _) => {
                ("PowerOn", &[("Press", 10), ("WaitPowerGood", 90)])
            }
            (Transition::Off, PowerOffMode::Graceful) => (
                "PowerOff",
                &[("Press", 5), ("Graceful", 70), ("ForceOff", 25)],
            ),
            (Transition::Off, PowerOffMode::Force) => ("PowerOff", &[("ForceOff", 100)]),
            (Transition::Cycle, _) => (
                "PowerCycle",
                &[
                    ("ForceOff", 40),
                    ("OffDelay", 20),
                    ("Press", 5),
                    ("WaitPowerGood", 35),
                ],
            ),
            (Transition::Reset, _) => ("Reset", &[("Reset", 100)]),
        }
    }

    /// Validate and start a transition for `owner_uid`; returns the id of
    /// its task once it has been accepted and recorded.
    pub fn request(
        self: &Arc<Self>,
        t: Transition,
        mode: PowerOffMode,
        graceful_timeout_s: u32,
        owner_uid: u32,
    ) -> Result<u64, ChassisError> {
        if graceful_timeout_s > self.cfg.graceful_off_timeout_max_s {
            return Err(ChassisError::TooLong {
                what: "timeout",
                given: graceful_timeout_s,
                max: self.cfg.graceful_off_timeout_max_s,
            });
        }
        let current = self.claim(t)?;
        let off = matches!(current, PowerState::Off | PowerState::TransitioningToOn);
        if off && matches!(t, Transition::Reset | Transition::Cycle) {
            self.finish();
            return Err(ChassisError::HostOff(t));
        }
        let (kind, phases) = Self::plan(t, mode);
        let task = match self.tasks.start(kind, owner_uid, phases, false) {
            Ok(task) => task,
            Err(e) => {
                self.finish();
                return Err(ChassisError::Task(e));
            }
        };
        let id = task.id();
        lock(&self.running).push((id, kind));
        // What `Restore` brings back after a crash or power loss from now
        // on: the request, on disk before the request is acknowledged.
        self.persist_host_on(t != Transition::Off, "requested");
        let graceful = if graceful_timeout_s == 0 {
            self.cfg.graceful_off_timeout_s
        } else {
            graceful_timeout_s
        };
        let me = self.clone();
        tokio::spawn(async move {
            let what = t.as_str().to_lowercase();
            log::info!("chassis: power {what} requested (task {id})");
            let r = match t {
                Transition::On => me.do_on(&task).await,
                Transition::Off => me.do_off(mode, graceful, &task).await,
                Transition::Cycle => me.do_cycle(&task).await,
                Transition::Reset => me.do_reset(&task).await,
                Transition::None => Ok(()),
            };
            // Whatever happened, report (and record) what the hardware says
            // now, and free the slot, before the task says it has ended.
            let now = me.power_good().await;
            match now {
                Ok(on) => me.settled(on),
                Err(ref e) => log::error!("chassis: power-good: {e}"),
            }
            me.finish();
            // The transition's event first, then the task's end.
            match r {
                Ok(()) => {
                    me.transition_ended(id, TaskState::Completed, ("", ""));
                    let state = me.snapshot().power;
                    task.complete(
                        [(
                            "PowerState".to_owned(),
                            ResultValue::Str(state.as_str().to_owned()),
                        )]
                        .into_iter()
                        .collect(),
                    );
                }
                Err(ChassisError::Cancelled) => {
                    let text = ChassisError::Cancelled.to_string();
                    me.transition_ended(
                        id,
                        TaskState::Cancelled,
                        (crate::tasks::ERROR_CANCELLED, &text),
                    );
                    task.cancelled();
                }
                Err(e) => {
                    let e = bmcd_api::Error::from(e);
                    let name = zbus::DBusError::name(&e);
                    let text = e.message();
                    me.transition_ended(id, TaskState::Failed, (name.as_str(), &text));
                    task.fail(name.as_str(), &text);
                }
            }
        });
        Ok(id)
    }

    async fn do_on(&self, task: &TaskHandle) -> Result<(), ChassisError> {
        if self.power_good().await? {
            task.message("the host is already on");
            return Ok(());
        }
        self.set_power(PowerState::TransitioningToOn);
        task.phase("Press");
        self.press(false, self.cfg.button_press_ms).await?;
        task.phase("WaitPowerGood");
        task.message("power button pressed; waiting for power-good");
        let t = Duration::from_millis(self.cfg.power_on_timeout_ms);
        if !self.wait_power(true, t, task).await? {
            return Err(ChassisError::PowerGoodTimeout {
                rise: true,
                ms: self.cfg.power_on_timeout_ms,
            });
        }
        task.message("power-good is high: the host is on");
        Ok(())
    }

    async fn do_off(
        &self,
        mode: PowerOffMode,
        graceful_s: u32,
        task: &TaskHandle,
    ) -> Result<(), ChassisError> {
        if !self.power_good().await? {
            task.message("the host is already off");
            return Ok(());
        }
        self.set_power(PowerState::TransitioningToOff);
        if mode == PowerOffMode::Graceful {
            task.phase("Press");
            self.press(false, self.cfg.button_press_ms).await?;
            task.phase("Graceful");
            task.message(&format!(
                "asked the host OS to shut down; waiting up to {graceful_s} s"
            ));
            task.set_cancellable(true);
            let t = Duration::from_secs(u64::from(graceful_s));
            let gone = tokio::select! {
                r = self.wait_power(false, t, task) => r?,
                () = task.cancel_requested() => return Err(ChassisError::Cancelled),
            };
            task.set_cancellable(false);
            if gone {
                task.message("the host shut down");
                return Ok(());
            }
            log::warn!("chassis: host did not shut down within {graceful_s} s; forcing power off");
            task.message(&format!(
                "the host did not shut down within {graceful_s} s; forcing power off"
            ));
        }
        self.force_off(task).await
    }

    /// Hold the power button until power-good drops (or the limit passes).
    async fn force_off(&self, task: &TaskHandle) -> Result<(), ChassisError> {
        task.phase("ForceOff");
        self.button(false, true).await?;
        let t = Duration::from_millis(self.cfg.force_off_timeout_ms);
        let r = self.wait_power(false, t, task).await;
        let released = self.button(false, false).await;
        match (r, released) {
            (Ok(true), Ok(())) => Ok(()),
            (Ok(false), _) => Err(ChassisError::PowerGoodTimeout {
                rise: false,
                ms: self.cfg.force_off_timeout_ms,
            }),
            (Err(e), _) | (_, Err(e)) => Err(e.into()),
        }
    }

    async fn do_cycle(&self, task: &TaskHandle) -> Result<(), ChassisError> {
        self.set_power(PowerState::TransitioningToOff);
        self.force_off(task).await?;
        self.set_power(PowerState::Off);
        task.phase("OffDelay");
        task.message("power is off; waiting before powering on again");
        sleep(Duration::from_millis(self.cfg.cycle_off_ms)).await;
        self.do_on(task).await
    }

    async fn do_reset(&self, task: &TaskHandle) -> Result<(), ChassisError> {
        task.phase("Reset");
        self.press(true, self.cfg.reset_pulse_ms).await?;
        task.message("reset line pulsed");
        Ok(())
    }

    /// Light the identify LED for `seconds` (0 = until turned off), or put
    /// it out.
    pub async fn set_identify(
        self: &Arc<Self>,
        on: bool,
        seconds: u32,
    ) -> Result<(), ChassisError> {
        if seconds > self.cfg.identify_max_s {
            return Err(ChassisError::TooLong {
                what: "seconds",
                given: seconds,
                max: self.cfg.identify_max_s,
            });
        }
        if !on && seconds != 0 {
            return Err(ChassisError::SecondsWithOff);
        }
        let gen = self.identify_gen.fetch_add(1, Ordering::SeqCst) + 1;
        let expires = if on && seconds > 0 {
            now_ms().saturating_add(u64::from(seconds) * 1000)
        } else {
            0
        };
        self.identify_led(on, expires).await?;
        if expires != 0 {
            let me = self.clone();
            tokio::spawn(async move {
                sleep(Duration::from_secs(u64::from(seconds))).await;
                if me.identify_gen.load(Ordering::SeqCst) == gen {
                    log::info!("chassis: identify timed out");
                    if let Err(e) = me.identify_led(false, 0).await {
                        log::error!("chassis: identify off: {e}");
                    }
                }
            });
        }
        Ok(())
    }

    /// Drive the LED and publish the new state.
    async fn identify_led(&self, on: bool, expires_ms: u64) -> Result<(), ChassisError> {
        let h = self.hw.clone();
        blocking(move || h.set_identify_led(on)).await?;
        self.state.send_if_modified(|s| {
            let changed = s.identify != on || s.identify_expires_ms != expires_ms;
            s.identify = on;
            s.identify_expires_ms = expires_ms;
            changed
        });
        Ok(())
    }

    pub fn set_policy(&self, p: RestorePolicy) -> Result<(), ChassisError> {
        self.store
            .update(|s| s.restore_policy = Some(p))
            .map_err(ChassisError::Persist)?;
        self.state.send_if_modified(|s| {
            let changed = s.policy != p;
            s.policy = p;
            changed
        });
        log::info!("chassis: power restore policy set to {p}");
        Ok(())
    }

    /// Apply the restore policy: called once at start, after the bus is up.
    /// A host that is already on is never touched (the BMC restarted, the
    /// host did not lose power). `Restore` follows the record of the
    /// previous run: its last request, or the state it last settled in.
    pub fn apply_restore_policy(self: &Arc<Self>) {
        let s = self.snapshot();
        let applied = |action: &str, message: String, extra: Option<(&str, String)>| {
            let mut data = vec![
                ("policy", s.policy.to_string()),
                ("action", action.to_owned()),
            ];
            data.extend(extra);
            self.logs.event(
                LogSeverity::Notice,
                SOURCE,
                "Chassis.RestorePolicyApplied",
                message,
                &data,
            );
        };
        if s.power != PowerState::Off {
            applied(
                "None",
                format!(
                    "restore policy {}: the host is on at start, left as it is",
                    s.policy
                ),
                None,
            );
            return;
        }
        let on = match s.policy {
            RestorePolicy::AlwaysOn => true,
            RestorePolicy::Restore => self.restore_on,
            RestorePolicy::AlwaysOff | RestorePolicy::None => false,
        };
        if !on {
            applied(
                "LeaveOff",
                format!("restore policy {}: host left off", s.policy),
                None,
            );
            return;
        }
        // Owned by root: the daemon acts on its own behalf.
        match self.request(Transition::On, PowerOffMode::Graceful, 0, 0) {
            Ok(id) => applied(
                "PowerOn",
                format!("restore policy {}: host powered on (task {id})", s.policy),
                Some(("task", id.to_string())),
            ),
            Err(e) => applied(
                "PowerOn",
                format!("restore policy {}: cannot power on: {e}", s.policy),
                Some(("error", e.to_string())),
            ),
        }
    }

    /// Follow power-good while no transition runs (the host may shut
    /// itself down, or someone may press the real button).
    pub async fn monitor(self: Arc<Self>) {
        let mut last_err = false;
        loop {
            sleep(POLL * 2).await;
            if self.state.borrow().pending != Transition::None {
                continue;
            }
            match self.power_good().await {
                Ok(on) => {
                    last_err = false;
                    // Re-checks, under the lock: a transition may have
                    // started meanwhile.
                    self.observed_idle(on);
                }
                Err(e) => {
                    if !last_err {
                        log::error!("chassis: power-good unreadable: {e}");
                    }
                    last_err = true;
                }
            }
        }
    }
}

/// Write `Chassis.TransitionFailed` for transition task `id` of `kind`
/// that ended `state` (not `Completed`) with error `name` and `text`.
fn transition_failed(logs: &Logs, kind: &str, id: u64, state: TaskState, name: &str, text: &str) {
    logs.event(
        LogSeverity::Error,
        SOURCE,
        "Chassis.TransitionFailed",
        format!(
            "{kind} {} (task {id}): {text}",
            state.as_str().to_lowercase()
        ),
        &[
            ("transition", kind.to_owned()),
            ("task", id.to_string()),
            ("state", state.to_string()),
            ("error", format!("{name}: {text}")),
        ],
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::AtomicBool;

    /// Power-good is whatever the test says; buttons do nothing, so a
    /// transition runs until its timeout.
    struct FakePower {
        good: AtomicBool,
    }

    impl PowerHw for FakePower {
        fn set_power_button(&self, _: bool) -> crate::hw::HwResult<()> {
            Ok(())
        }
        fn set_reset_button(&self, _: bool) -> crate::hw::HwResult<()> {
            Ok(())
        }
        fn power_good(&self) -> crate::hw::HwResult<bool> {
            Ok(self.good.load(Ordering::SeqCst))
        }
        fn set_identify_led(&self, _: bool) -> crate::hw::HwResult<()> {
            Ok(())
        }
    }

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("bmcd-chassis-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    /// A chassis on a fake board whose power-good is `on`, with a state
    /// directory recording `host_on` and the `Restore` policy.
    async fn chassis(dir: &Path, on: bool, host_on: bool) -> (Arc<Chassis>, Arc<FakePower>) {
        let (c, hw, _) = chassis_logged(dir, dir, on, host_on).await;
        (c, hw)
    }

    /// [`chassis`], with its event log under `logs_dir`.
    async fn chassis_logged(
        dir: &Path,
        logs_dir: &Path,
        on: bool,
        host_on: bool,
    ) -> (Arc<Chassis>, Arc<FakePower>, Arc<Logs>) {
        let store = Store::open(dir).unwrap();
        store
            .update(|s| {
                s.host_on = host_on;
                s.restore_policy = Some(RestorePolicy::Restore);
            })
            .unwrap();
        let hw = Arc::new(FakePower {
            good: AtomicBool::new(on),
        });
        let cfg = ChassisConfig {
            button_press_ms: 1,
            force_off_timeout_ms: 60_000,
            power_on_timeout_ms: 60_000,
            ..ChassisConfig::default()
        };
        let (tasks, _events) = Tasks::open(dir, Default::default()).unwrap();
        let logs = Logs::open(logs_dir, &Default::default()).unwrap();
        let c = Chassis::new(hw.clone(), cfg, Arc::new(store), tasks, logs.clone())
            .await
            .unwrap();
        (c, hw, logs)
    }

    /// The event log's entries with message id `id`, oldest first, as
    /// (message, data).
    fn events(logs: &Logs, id: &str) -> Vec<BTreeMap<String, String>> {
        let q = crate::logstore::Query {
            message_id: Some(id.to_owned()),
            ..Default::default()
        };
        let page = logs.event.store.page(0, 1000, &q).unwrap();
        page.entries
            .into_iter()
            .map(|e| {
                assert_eq!(e.source, "chassis");
                e.data.into_iter().collect()
            })
            .collect()
    }

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// What a restarted daemon would read.
    fn on_disk(dir: &Path) -> bool {
        Store::open(dir).unwrap().get().host_on
    }

    async fn wait(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn a_request_is_on_disk_before_it_is_acknowledged() {
        let dir = tmpdir("request");
        let (c, _hw) = chassis(&dir, true, true).await;
        c.request(Transition::Off, PowerOffMode::Force, 0, 0)
            .unwrap();
        // The fake host never drops power-good: the transition still runs.
        assert_eq!(c.snapshot().pending, Transition::Off);
        assert!(!on_disk(&dir), "a PowerOff under way must restore off");
        let _ = std::fs::remove_dir_all(&dir);

        let dir = tmpdir("request-on");
        let (c, _hw) = chassis(&dir, false, false).await;
        c.request(Transition::On, PowerOffMode::Graceful, 0, 0)
            .unwrap();
        assert_eq!(c.snapshot().pending, Transition::On);
        assert!(on_disk(&dir), "a PowerOn under way must restore on");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_host_that_shuts_itself_down_is_recorded_off() {
        let dir = tmpdir("self-off");
        let (c, hw) = chassis(&dir, true, true).await;
        tokio::spawn(c.clone().monitor());
        hw.good.store(false, Ordering::SeqCst);
        wait("PowerState Off", || c.snapshot().power == PowerState::Off).await;
        wait("the record", || !on_disk(&dir)).await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn restore_follows_the_previous_run_not_this_one() {
        // The previous run left the host on; the board lost power.
        let dir = tmpdir("previous");
        let (c, _hw) = chassis(&dir, false, true).await;
        tokio::spawn(c.clone().monitor());
        // This run has already seen (and recorded) the host off…
        wait("the record of this run", || !on_disk(&dir)).await;
        // …yet Restore follows the previous run.
        c.apply_restore_policy();
        assert_eq!(c.snapshot().pending, Transition::On);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_transition_writes_its_power_changes_and_its_outcome() {
        let dir = tmpdir("ev-on");
        let (c, hw, logs) = chassis_logged(&dir, &dir, false, false).await;
        let id = c
            .request(Transition::On, PowerOffMode::Graceful, 0, 0)
            .unwrap();
        wait("TransitioningToOn", || {
            c.snapshot().power == PowerState::TransitioningToOn
        })
        .await;
        hw.good.store(true, Ordering::SeqCst);
        wait("the outcome", || {
            !events(&logs, "Chassis.TransitionCompleted").is_empty()
        })
        .await;
        assert_eq!(
            events(&logs, "Chassis.PowerStateChanged"),
            vec![
                data(&[("from", "Off"), ("to", "TransitioningToOn")]),
                data(&[("from", "TransitioningToOn"), ("to", "On")]),
            ]
        );
        assert_eq!(
            events(&logs, "Chassis.TransitionCompleted"),
            vec![data(&[
                ("transition", "PowerOn"),
                ("task", &id.to_string())
            ])]
        );
        assert!(events(&logs, "Chassis.TransitionFailed").is_empty());

        // The host turns itself off: seen while idle.
        tokio::spawn(c.clone().monitor());
        hw.good.store(false, Ordering::SeqCst);
        wait("the host-initiated off", || {
            events(&logs, "Chassis.PowerStateChanged").len() == 3
        })
        .await;
        assert_eq!(
            events(&logs, "Chassis.PowerStateChanged")[2],
            data(&[("from", "On"), ("to", "Off")])
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_cancelled_or_interrupted_transition_is_a_failure_event() {
        let dir = tmpdir("ev-cancel");
        let (c, _hw, logs) = chassis_logged(&dir, &dir, true, true).await;
        let id = c
            .request(Transition::Off, PowerOffMode::Graceful, 60, 1000)
            .unwrap();
        let tasks = c.tasks.clone();
        wait("cancellable", || {
            tasks.get(id).is_some_and(|rx| rx.borrow().cancellable)
        })
        .await;
        tasks.cancel(id, 1000, false).unwrap();
        wait("the outcome", || {
            !events(&logs, "Chassis.TransitionFailed").is_empty()
        })
        .await;
        let ev = &events(&logs, "Chassis.TransitionFailed")[0];
        assert_eq!(ev["transition"], "PowerOff");
        assert_eq!(ev["task"], id.to_string());
        assert_eq!(ev["state"], "Cancelled");
        assert!(
            ev["error"].starts_with(crate::tasks::ERROR_CANCELLED),
            "{ev:?}"
        );
        assert!(events(&logs, "Chassis.TransitionCompleted").is_empty());

        // A clean stop during a transition (the fake host never goes off).
        let id = c
            .request(Transition::Off, PowerOffMode::Force, 0, 0)
            .unwrap();
        tasks.shutdown();
        c.stopped();
        c.stopped();
        wait("the second outcome", || {
            events(&logs, "Chassis.TransitionFailed").len() >= 2
        })
        .await;
        let evs = events(&logs, "Chassis.TransitionFailed");
        assert_eq!(evs.len(), 2, "{evs:?}");
        assert_eq!(evs[1]["task"], id.to_string());
        assert_eq!(evs[1]["state"], "Interrupted");
        assert!(evs[1]["error"].starts_with(crate::tasks::ERROR_INTERRUPTED));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_transition_cut_by_a_crash_is_written_at_the_next_start() {
        let dir = tmpdir("ev-crash");
        let (c, _hw) = chassis(&dir, false, false).await;
        let id = c
            .request(Transition::On, PowerOffMode::Graceful, 0, 0)
            .unwrap();
        let tasks = c.tasks.clone();
        wait("running", || {
            tasks
                .get(id)
                .is_some_and(|rx| rx.borrow().state == TaskState::Running)
        })
        .await;
        // "Restart" without a clean stop: a second daemon on the same state.
        let logs_dir = dir.join("second");
        let (_c2, _hw2, logs) = chassis_logged(&dir, &logs_dir, false, false).await;
        let evs = events(&logs, "Chassis.TransitionFailed");
        assert_eq!(evs.len(), 1, "{evs:?}");
        assert_eq!(evs[0]["transition"], "PowerOn");
        assert_eq!(evs[0]["task"], id.to_string());
        assert_eq!(evs[0]["state"], "Interrupted");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn the_restore_policy_is_an_event() {
        let dir = tmpdir("ev-restore");
        let (c, _hw, logs) = chassis_logged(&dir, &dir, false, true).await;
        c.apply_restore_policy();
        let evs = events(&logs, "Chassis.RestorePolicyApplied");
        assert_eq!(evs.len(), 1, "{evs:?}");
        assert_eq!(evs[0]["policy"], "Restore");
        assert_eq!(evs[0]["action"], "PowerOn");
        assert!(evs[0].contains_key("task"));
        let _ = std::fs::remove_dir_all(&dir);

        let dir = tmpdir("ev-restore-on");
        let (c, _hw, logs) = chassis_logged(&dir, &dir, true, true).await;
        c.apply_restore_policy();
        let evs = events(&logs, "Chassis.RestorePolicyApplied");
        assert_eq!(evs[0]["action"], "None");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
