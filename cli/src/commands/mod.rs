//! Commands: each turns parsed arguments into daemon calls (through
//! [`crate::conn::Client::call`]) and returns an [`Output`] for the output
//! module. No command prints.

pub mod chassis;
pub mod diag;
pub mod fan;
pub mod firmware;
pub mod log;
pub mod task;
pub mod whoami;

use std::time::Duration;

use crate::auth;
use crate::cli::Cmd;
use crate::confirm;
use crate::conn::{self, BusAddress, Client};
use crate::error::CliError;
use crate::output::Output;

/// What every command needs from the global options.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub json: bool,
    pub quiet: bool,
    pub yes: bool,
    /// `--no-pager` (`log list` pages itself).
    pub no_pager: bool,
    pub address: BusAddress,
    pub timeout: Duration,
    /// How to get a password when bmcd asks for re-authentication.
    pub auth: auth::Policy,
}

impl Ctx {
    /// Connect to the daemon's bus (bounded by `--timeout`).
    pub fn connect(&self) -> Result<Client, CliError> {
        conn::connect(&self.address, self.timeout, self.auth)
    }

    /// Confirm a disruptive action (see [`confirm`]).
    pub fn confirm(&self, action: &str, consequence: &str) -> Result<(), CliError> {
        confirm::confirm(
            confirm::Policy::from_env(self.yes, self.json),
            action,
            consequence,
        )
    }
}

pub fn run(cmd: Cmd, ctx: &Ctx) -> Result<Output, CliError> {
    match cmd {
        Cmd::Chassis { cmd } => chassis::run(cmd, ctx),
        Cmd::Fan { cmd } => fan::run(cmd, ctx),
        Cmd::Task { cmd } => task::run(cmd, ctx),
        Cmd::Firmware { cmd } => firmware::run(cmd, ctx),
        Cmd::Log { cmd } => log::run(cmd, ctx),
        Cmd::Diag { cmd } => diag::run(cmd, ctx),
        Cmd::Whoami => whoami::run(ctx),
    }
}
