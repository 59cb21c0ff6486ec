//! `bmcctl`, the command-line client of bmcd.
//!
//! Flow: resolve abbreviated command words ([`cli::resolve`]), parse with
//! clap, run the command ([`commands`]), hand its output to [`output`], exit
//! with the code of [`error::Exit`] (documented in [`error`]).

mod auth;
mod cli;
mod commands;
mod confirm;
mod conn;
mod error;
mod output;
mod pager;
mod time;
mod wait;

use std::ffi::OsString;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::FromArgMatches;

use crate::error::{CliError, Exit};

fn main() {
    let args: Vec<OsString> = std::env::args_os().collect();
    std::process::exit(run(args));
}

fn run(args: Vec<OsString>) -> i32 {
    let json = cli::wants_json(&args);
    let mut cmd = cli::command();
    let args = match cli::resolve(&cmd, &args) {
        Ok(a) => a,
        Err(e) => return fail(&e, json),
    };
    let matches = match cmd.try_get_matches_from_mut(args) {
        Ok(m) => m,
        Err(e) => return clap_error(e, json),
    };
    let parsed = match cli::Cli::from_arg_matches(&matches) {
        Ok(p) => p,
        Err(e) => return clap_error(e, json),
    };
    let g = &parsed.global;
    let ctx = commands::Ctx {
        json: g.json,
        quiet: g.quiet,
        yes: g.yes,
        no_pager: g.no_pager,
        address: conn::BusAddress::parse(&g.address()),
        timeout: Duration::from_secs(u64::from(
            cli::call_timeout(&matches).unwrap_or(cli::DEFAULT_TIMEOUT_S),
        )),
        auth: auth::Policy::from_env(g.password_stdin, g.no_ask_password, g.json),
    };
    let mode = output::Mode {
        json: g.json,
        quiet: g.quiet,
        no_pager: g.no_pager,
    };
    match commands::run(parsed.command, &ctx) {
        Ok(out) => {
            let shown = output::emit(&out, mode);
            match &out.failure {
                // The document already carries the error (`render_json`).
                Some(e) => {
                    output::emit_stderr(&output::render_error_human(e));
                    e.exit.code()
                }
                None => shown.code(),
            }
        }
        Err(e) => fail(&e, g.json),
    }
}

fn fail(e: &CliError, json: bool) -> i32 {
    output::emit_error(e, json);
    e.exit.code()
}

/// clap's help and version go to stdout with exit 0. Its usage errors exit
/// 2 and keep clap's text (usage line, hint) after our one-line prefix.
fn clap_error(e: clap::Error, json: bool) -> i32 {
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            Exit::Ok.code()
        }
        _ => {
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("invalid usage");
            let msg = first.strip_prefix("error: ").unwrap_or(first);
            if json {
                // The first paragraph, e.g. "… not provided: --level <PCT>".
                let para: Vec<&str> = text
                    .lines()
                    .skip(1)
                    .take_while(|l| !l.trim().is_empty())
                    .map(str::trim)
                    .collect();
                let full = std::iter::once(msg)
                    .chain(para)
                    .collect::<Vec<_>>()
                    .join(" ");
                output::emit_error_json(&CliError::usage(full));
            }
            let rest = text.split_once('\n').map_or("", |(_, r)| r);
            output::emit_stderr(&format!("bmcctl: error: {msg}\n{rest}"));
            Exit::Usage.code()
        }
    }
}
