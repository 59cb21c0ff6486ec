//! bmcd: the BMC management daemon.
//!
//! Start-up order (each step must succeed before the next):
//! config → state store → hardware → controllers → connect to the bus →
//! register every object → request `org.bmcd` → READY=1 → apply the
//! power restore policy. SIGTERM/SIGINT stop it cleanly (exit 0).

mod auth;
mod bus;
mod chassis;
mod config;
mod cooling;
mod hw;
mod logging;
mod notify;
mod store;
mod util;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use zbus::fdo::{RequestNameFlags, RequestNameReply};

const USAGE: &str = "\
Usage: bmcd [OPTIONS]

Options:
  --config PATH        configuration file (default /etc/bmcd/bmcd.json)
  --bus BUS            system (default), session, or a D-Bus address
                       such as unix:path=/run/test-bus
  --state-dir DIR      override the configuration's state_dir
  --log TARGET         auto (syslog if /dev/log exists, default), stderr, syslog
  --verbose            log debug messages too
  --print-policy       print the authorization table (Markdown) and exit
  -h, --help           show this help
  -V, --version        show the version
";

#[derive(Debug)]
struct Args {
    config: PathBuf,
    bus: String,
    state_dir: Option<PathBuf>,
    log: logging::Target,
    verbose: bool,
}

enum Parsed {
    Run(Args),
    Exit(ExitCode),
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Parsed, String> {
    let mut a = Args {
        config: PathBuf::from(config::DEFAULT_PATH),
        bus: "system".into(),
        state_dir: None,
        log: logging::Target::Auto,
        verbose: false,
    };
    while let Some(arg) = it.next() {
        let (key, inline) = match arg.split_once('=') {
            Some((k, v)) if k.starts_with("--") => (k.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match key.as_str() {
            "--config" => a.config = PathBuf::from(value("--config")?),
            "--bus" => a.bus = value("--bus")?,
            "--state-dir" => a.state_dir = Some(PathBuf::from(value("--state-dir")?)),
            "--log" => {
                a.log = match value("--log")?.as_str() {
                    "auto" => logging::Target::Auto,
                    "stderr" => logging::Target::Stderr,
                    "syslog" => logging::Target::Syslog,
                    v => return Err(format!("--log: '{v}' is not auto, stderr or syslog")),
                }
            }
            "--verbose" | "-v" => a.verbose = true,
            "--print-policy" => {
                print!("{}", auth::policy::markdown());
                return Ok(Parsed::Exit(ExitCode::SUCCESS));
            }
            "-h" | "--help" => {
                print!("{USAGE}");
                return Ok(Parsed::Exit(ExitCode::SUCCESS));
            }
            "-V" | "--version" => {
                println!("bmcd {}", env!("CARGO_PKG_VERSION"));
                return Ok(Parsed::Exit(ExitCode::SUCCESS));
            }
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    Ok(Parsed::Run(a))
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Parsed::Run(a)) => a,
        Ok(Parsed::Exit(code)) => return code,
        Err(e) => {
            eprintln!("bmcd: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    logging::init(
        args.log,
        if args.verbose {
            log::LevelFilter::Debug
        } else {
            log::LevelFilter::Info
        },
    );
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            log::error!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
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

async fn run(args: Args) -> Result<(), String> {
    let mut cfg = config::Config::load(&args.config).map_err(|e| e.to_string())?;
    if let Some(d) = args.state_dir {
        cfg.state_dir = d;
    }
    let store =
        Arc::new(store::Store::open(&cfg.state_dir).map_err(|e| format!("state directory: {e}"))?);
    let platform = hw::build(&cfg.platform).map_err(|e| format!("hardware: {e}"))?;
    let chassis = chassis::Chassis::new(platform.power.clone(), cfg.chassis.clone(), store)
        .await
        .map_err(|e| format!("chassis: {e}"))?;
    let (cooling, events) = cooling::Cooling::new(
        platform.fans.clone(),
        platform.temps.clone(),
        cfg.cooling.clone(),
    );

    let auth = auth::Auth::new(cfg.auth.clone());

    let conn = connect(&args.bus)
        .await
        .map_err(|e| format!("cannot connect to the {} bus: {e}", args.bus))?;
    auth.attach(&conn)
        .await
        .map_err(|e| format!("cannot watch the bus for departing callers: {e}"))?;
    bus::serve(
        &conn,
        chassis.clone(),
        cooling.clone(),
        events,
        platform.sim.clone(),
        auth,
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

    let control = tokio::spawn(cooling.clone().run());
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

    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    tokio::select! {
        _ = term.recv() => log::info!("SIGTERM: stopping"),
        _ = int.recv() => log::info!("SIGINT: stopping"),
    }
    notify::stopping();
    control.abort();
    monitor.abort();
    let c = cooling.clone();
    let _ = tokio::task::spawn_blocking(move || c.release()).await;
    let _ = conn.release_name(bmcd_api::BUS_NAME).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(v: &[&str]) -> Result<Parsed, String> {
        parse_args(v.iter().map(|s| s.to_string()))
    }

    #[test]
    fn args() {
        let Ok(Parsed::Run(a)) = p(&["--config=/x.json", "--bus", "session", "--log", "stderr"])
        else {
            panic!("parse failed")
        };
        assert_eq!(a.config, PathBuf::from("/x.json"));
        assert_eq!(a.bus, "session");
        assert_eq!(a.log, logging::Target::Stderr);
        assert!(p(&["--bogus"]).is_err());
        assert!(p(&["--bus"]).is_err());
        assert!(p(&["--log", "x"]).is_err());
        assert!(matches!(p(&["--print-policy"]), Ok(Parsed::Exit(_))));
    }
}
