//! bmcd: the BMC management daemon. This binary only parses its arguments
//! and runs the library (`bmcd::run`); see `lib.rs` for the start-up order.

use std::path::PathBuf;
use std::process::ExitCode;

use bmcd::{auth, config, logging, RunArgs};

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
  --release-fans       hand the configured fans back to hardware control (or
                       full speed) and exit, without the bus; the unit runs
                       it after every stop, crashes included (ExecStopPost=)
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
    release_fans: bool,
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
        release_fans: false,
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
            "--release-fans" => a.release_fans = true,
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
    if args.release_fans {
        return bmcd::release_fans(&args.config);
    }
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
    let run = RunArgs {
        config: args.config,
        bus: args.bus,
        state_dir: args.state_dir,
    };
    match rt.block_on(bmcd::run(run)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(v: &[&str]) -> Result<Parsed, String> {
        parse_args(v.iter().map(|s| s.to_string()))
    }

    fn p_run(v: &[&str]) -> Args {
        match p(v) {
            Ok(Parsed::Run(a)) => a,
            _ => panic!("parse failed"),
        }
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
        let Ok(Parsed::Run(a)) = p(&["--config", "/x.json", "--release-fans"]) else {
            panic!("parse failed")
        };
        assert!(a.release_fans && !p_run(&[]).release_fans);
    }
}
