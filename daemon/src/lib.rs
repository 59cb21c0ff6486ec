//! bmcd: the BMC management daemon, as a library; `main.rs` only parses
//! the arguments and calls [`run`] or [`release_fans`].
//!
//! Start-up order (each step must succeed before the next):
//! stop-signal handlers (a signal during start-up is kept, not fatal) →
//! config → state store → hardware → controllers → connect to the bus →
//! register every object → request `org.bmcd` → READY=1 → apply the
//! power restore policy.
//!
//! Ending: SIGTERM, SIGINT and every other signal whose default action would
//! end the process (see [`STOP_SIGNALS`]) stop it cleanly: fans handed back,
//! name released, exit 0. SIGHUP is ignored (logged): reloading the
//! configuration is not supported. A lost bus connection hands the fans
//! back and exits 1, for `Restart=on-failure`. After a crash, the unit's
//! `ExecStopPost=` runs `bmcd --release-fans` (see [`release_fans`]).

pub mod auth;
pub mod bus;
pub mod chassis;
pub mod clock;
pub mod config;
pub mod cooling;
pub mod dump;
pub mod firmware;
pub mod hw;
pub mod logging;
pub mod logs;
pub mod logstore;
pub mod notify;
pub mod store;
pub mod sync;
pub mod tasks;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::signal::unix::{signal, SignalKind};
use zbus::fdo::{RequestNameFlags, RequestNameReply};

/// What [`run`] needs from the command line.
#[derive(Debug, Clone)]
pub struct RunArgs {
    /// The configuration file.
    pub config: PathBuf,
    /// `system`, `session` or a D-Bus address.
    pub bus: String,
    /// Overrides the configuration's `state_dir`.
    pub state_dir: Option<PathBuf>,
}

/// `bmcd --release-fans`: load the configuration as a normal start does,
/// open only the fans (no power lines, no sensors, no bus, no PAM) and hand
/// them back (`FanHw::release`: hwmon writes full duty to every `pwmN` and
/// gives `pwmN_enable` back to automatic control where the driver has it).
/// The unit runs this as `ExecStopPost=`, so fans are safe after any stop,
/// a crash or SIGKILL included; after a clean stop it is a harmless repeat.
pub fn release_fans(config: &Path) -> ExitCode {
    let cfg = match config::Config::load(config) {
        Ok(c) => c,
        Err(e) => {
            log::error!("--release-fans: {e}");
            return ExitCode::FAILURE;
        }
    };
    match hw::build_fans(&cfg.platform) {
        Ok(None) => {
            log::info!(
                "--release-fans: sim platform: the simulated fans ended with the daemon, \
                 nothing to hand back"
            );
            ExitCode::SUCCESS
        }
        Ok(Some(fans)) => match fans.release() {
            Ok(()) => {
                log::info!(
                    "--release-fans: {} fans handed back (hardware control, or full speed)",
                    fans.names().len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                log::error!("--release-fans: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            log::error!("--release-fans: hardware: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Signals whose default action would end bmcd without handing the fans
/// back. Each one takes SIGTERM's path: a clean stop, exit 0.
///
/// Handled apart: SIGHUP is ignored with a log line (no reload), SIGPIPE is
/// ignored by the Rust runtime before `main`. Left at their default:
/// SIGKILL and SIGSTOP (cannot be caught), the faults of the process itself
/// (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGSYS, SIGTRAP) and the
/// real-time signals; after them the unit's `ExecStopPost=` hands the fans
/// back, as after any crash.
const STOP_SIGNALS: [Signal; 12] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGALRM,
    Signal::SIGVTALRM,
    Signal::SIGPROF,
    Signal::SIGXCPU,
    Signal::SIGXFSZ,
    Signal::SIGIO,
    Signal::SIGPWR,
];

/// Install the handlers: the receiver yields the name of the first stop
/// signal received (signals that arrive before anyone waits are kept);
/// SIGHUP is only logged.
fn handle_signals() -> Result<tokio::sync::mpsc::Receiver<&'static str>, String> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    for stop in STOP_SIGNALS {
        let name = stop.as_str();
        let mut sig = signal(SignalKind::from_raw(stop as i32))
            .map_err(|e| format!("cannot handle {name}: {e}"))?;
        let tx = tx.clone();
        tokio::spawn(async move {
            if sig.recv().await.is_some() {
                // Full: a stop is already on its way.
                let _ = tx.try_send(name);
            }
        });
    }
    let mut hup = signal(SignalKind::hangup()).map_err(|e| format!("cannot handle SIGHUP: {e}"))?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            log::warn!(
                "SIGHUP: configuration reload is not supported; restart bmcd to apply a new \
                 configuration"
            );
        }
    });
    Ok(rx)
}

/// The firmware storage and its controller, opened off the runtime. A
/// failure is logged and leaves bmcd without firmware objects: power and
/// cooling matter more than updates.
async fn open_firmware(
    cfg: &config::Config,
    tasks: Arc<tasks::Tasks>,
) -> Option<Arc<firmware::Firmware>> {
    let fw_cfg = cfg.firmware.clone();
    let state_dir = cfg.state_dir.clone();
    let r = tokio::task::spawn_blocking(move || {
        let hw =
            hw::firmware::build(&fw_cfg, &state_dir).map_err(firmware::FirmwareError::Hardware)?;
        firmware::Firmware::open(hw, &fw_cfg, &state_dir, tasks)
    })
    .await;
    match r {
        Ok(Ok(fw)) => Some(fw),
        Ok(Err(e)) => {
            log::error!("firmware: {e}; no firmware objects are served");
            None
        }
        Err(e) => {
            log::error!("firmware: start-up worker failed: {e}");
            None
        }
    }
}

async fn connect(bus: &str) -> zbus::Result<zbus::Connection> {
    let b = match bus {
        "system" => zbus::connection::Builder::system()?,
        "session" => zbus::connection::Builder::session()?,
        addr => zbus::connection::Builder::address(addr)?,
    };
    // No name yet: objects are registered first, then the name is requested.
    b.build().await
}

/// Serve until a stop signal (Ok) or the loss of the bus (Err).
pub async fn run(args: RunArgs) -> Result<(), String> {
    // First of all: a stop signal that arrives while bmcd starts (a
    // service manager or test may send SIGTERM as soon as the name
    // appears) is kept and handled at the end of the start-up, instead of
    // killing the process the default way.
    let mut stop_signals = handle_signals()?;
    let mut cfg = config::Config::load(&args.config).map_err(|e| e.to_string())?;
    if let Some(d) = args.state_dir {
        cfg.state_dir = d;
    }
    let store =
        Arc::new(store::Store::open(&cfg.state_dir).map_err(|e| format!("state directory: {e}"))?);
    let logs = {
        let (dir, logs_cfg) = (cfg.state_dir.clone(), cfg.logs.clone());
        sync::off_runtime(
            move || logs::Logs::open(&dir, &logs_cfg).map_err(|e| format!("logs: {e}")),
            |e| format!("logs: start-up worker failed: {e}"),
        )
        .await?
    };
    let platform = hw::build(&cfg.platform).map_err(|e| format!("hardware: {e}"))?;
    // Tasks that were running when bmcd last stopped come back Interrupted.
    let (tasks, task_events) =
        tasks::Tasks::open(&cfg.state_dir, cfg.tasks.clone()).map_err(|e| format!("tasks: {e}"))?;
    let chassis = chassis::Chassis::new(
        platform.power.clone(),
        cfg.chassis.clone(),
        store,
        tasks.clone(),
    )
    .await
    .map_err(|e| format!("chassis: {e}"))?;
    let (cooling, events) = cooling::Cooling::new(
        platform.fans.clone(),
        platform.temps.clone(),
        cfg.cooling.clone(),
    );

    let firmware = open_firmware(&cfg, tasks.clone()).await;
    let dumps = dump::Dumps::open(
        cfg.dumps,
        tasks.clone(),
        dump::Sources {
            logs: logs.clone(),
            cooling: cooling.clone(),
            firmware: firmware.clone(),
            config_path: args.config.clone(),
            state_dir: cfg.state_dir.clone(),
        },
    )
    .map_err(|e| log::error!("dumps: {e}; no dump objects are served"))
    .ok();

    let auth = auth::Auth::new(cfg.auth.clone());
    auth.set_audit_log(logs.audit.clone());

    let conn = connect(&args.bus)
        .await
        .map_err(|e| format!("cannot connect to the {} bus: {e}", args.bus))?;
    auth.attach(&conn)
        .await
        .map_err(|e| format!("cannot watch the bus for departing callers: {e}"))?;
    let _registry = bus::serve(
        &conn,
        bus::Parts {
            chassis: chassis.clone(),
            cooling: cooling.clone(),
            events,
            sim: platform
                .sim
                .clone()
                .map(|s| s as Arc<dyn hw::control::SimControl>),
            firmware,
            auth,
            audit: Arc::new(bus::StoreAudit {
                log: logs.audit.clone(),
            }),
            tasks: tasks.clone(),
            task_events,
            logs: logs.clone(),
            dumps,
        },
    )
    .await
    .map_err(|e| format!("cannot register objects: {e}"))?;

    // Only now, with every object in place, does the name appear.
    match conn
        .request_name_with_flags(bmcd_api::BUS_NAME, RequestNameFlags::DoNotQueue.into())
        .await
    {
        Ok(RequestNameReply::PrimaryOwner) | Ok(RequestNameReply::AlreadyOwner) => {}
        Ok(r) => return Err(format!("{} is already owned ({r:?})", bmcd_api::BUS_NAME)),
        Err(e) => return Err(format!("cannot own {}: {e}", bmcd_api::BUS_NAME)),
    }
    log::info!(
        "bmcd {} serving {} on the {} bus",
        env!("CARGO_PKG_VERSION"),
        bmcd_api::BUS_NAME,
        args.bus
    );

    // From here on the fans are driven: every way out hands them back.
    logs.event(
        bmcd_api::LogSeverity::Notice,
        "daemon",
        "Daemon.Started",
        format!("bmcd {} started", env!("CARGO_PKG_VERSION")),
        &[
            ("version", env!("CARGO_PKG_VERSION").to_owned()),
            ("platform", cfg.platform.kind().to_owned()),
        ],
    );
    let flusher = tokio::spawn(logs::flush_loop(logs.clone()));
    let control = tokio::spawn(cooling.clone().run());
    let expiry = tokio::spawn(tasks.clone().expire());
    let monitor = tokio::spawn(chassis.clone().monitor());
    notify::ready();
    if let Some(period) = notify::watchdog_interval() {
        let c = cooling.clone();
        let stale = Duration::from_millis(cfg.cooling.interval_ms.saturating_mul(3))
            .max(Duration::from_secs(5));
        tokio::spawn(async move {
            let mut t = tokio::time::interval(period);
            loop {
                t.tick().await;
                // Ping only while the control loop is alive: a stuck loop
                // must get the daemon restarted.
                if c.last_tick().elapsed() <= stale {
                    notify::watchdog();
                }
            }
        });
    }
    chassis.apply_restore_policy();

    // zbus marks the connection closed when reading its socket fails (the
    // bus daemon died or dropped us): nobody can reach bmcd any more.
    let (bus_lost, why) = tokio::select! {
        name = stop_signals.recv() => {
            let name = name.unwrap_or("signal handling ended");
            log::info!("{name}: stopping");
            (false, name)
        }
        _ = conn.closed() => (true, "lost the bus"),
    };
    logs.event(
        bmcd_api::LogSeverity::Notice,
        "daemon",
        "Daemon.Stopped",
        format!("bmcd stopping ({why})"),
        &[("signal", why.to_owned())],
    );
    if !bus_lost {
        notify::stopping();
    }
    control.abort();
    monitor.abort();
    expiry.abort();
    // Unfinished tasks are recorded Interrupted: a client that reads them
    // after the restart learns the work did not finish.
    tasks.shutdown();
    let c = cooling.clone();
    let _ = tokio::task::spawn_blocking(move || c.release()).await;
    flusher.abort();
    let l = logs.clone();
    let _ = tokio::task::spawn_blocking(move || l.flush()).await;
    if bus_lost {
        // Logged once, by main; a non-zero exit gets bmcd restarted
        // (Restart=on-failure).
        return Err(format!(
            "lost the connection to the bus ({}): fans released; exiting with \
             failure so that the service manager restarts bmcd",
            args.bus
        ));
    }
    let _ = conn.release_name(bmcd_api::BUS_NAME).await;
    Ok(())
}
