//! The command line: clap definitions, and the resolution of command words
//! by unique prefix (`bmcctl ch st` = `bmcctl chassis status`).
//!
//! An unknown, ambiguous or missing command word is answered openUBMC-style
//! with the choices at that level and their one-line descriptions (exit 2).

use std::ffi::{OsStr, OsString};

use clap::{Arg, ArgAction, Args, Command, CommandFactory, Parser, Subcommand};

use crate::error::{Choice, CliError};

/// Default bound for connecting and for each call, seconds.
pub const DEFAULT_TIMEOUT_S: u32 = 25;

/// Help heading of the options accepted at every level.
const GLOBAL: &str = "Global options";

/// Id of the call timeout argument (see [`command`]).
const CALL_TIMEOUT: &str = "call_timeout";

const ROOT_EXAMPLES: &str = "\
Examples:
  bmcctl chassis status
  bmcctl ch st                          (unique prefixes work at every level)
  bmcctl chassis power on
  bmcctl --yes chassis power off --graceful-timeout 120
  bmcctl fan list --json
  bmcctl fan mode manual --level 60 --timeout 300
  bmcctl task list
  bmcctl task wait 12
  bmcctl firmware list
  bmcctl firmware update /tmp/bmc-2.0.0.img --activate
  bmcctl log list --severity warning
  bmcctl diag dump -o /tmp/
  bmcctl --password-stdin chassis policy set AlwaysOn < password-file
  BMCCTL_ADDRESS=unix:path=/tmp/bus bmcctl chassis status

Re-authentication: sensitive changes (power restore policy, manual fan
override, firmware update, activate, rollback, log clear) need your password again; bmcd asks for it per change. On a
terminal bmcctl prompts `Password for USER:` (3 tries). Scripts pass
--password-stdin (the first line of stdin, read only when bmcd asks). With
--no-ask-password, --json or no terminal, and without --password-stdin, such a
change fails with exit 3. A password longer than 512 bytes is refused
(exit 2) without being sent.

Exit codes: 0 ok, 1 failure, 2 invalid argument or usage, 3 permission or
authentication denied (also wrong password, locked out), 4 not found, 5 busy,
6 timeout, 7 the task was cancelled, 8 the task was interrupted (bmcd stopped
while it ran), 9 firmware image refused, 10 writing a firmware slot failed,
130 Ctrl-C while waiting for a task (the task goes on) or ending `log follow`. A task that failed
exits with the code of its error.";

/// Command-line client of bmcd, the BMC management daemon.
#[derive(Debug, Parser)]
#[command(
    name = "bmcctl",
    version,
    about = "Control the server's chassis power, fans and BMC firmware, read its logs, through bmcd",
    after_help = ROOT_EXAMPLES,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Cmd,
}

/// Options accepted anywhere on the line. The call timeout (`--timeout`) is
/// added by [`command`] to every level but `fan mode manual`, where
/// `--timeout` is the override's duration.
#[derive(Debug, Args)]
pub struct Global {
    /// Print exactly one JSON document on stdout (errors too); never prompt
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub json: bool,
    /// Do not ask for confirmation
    #[arg(short = 'y', long, global = true, help_heading = GLOBAL)]
    pub yes: bool,
    /// Do not pipe output into a pager
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub no_pager: bool,
    /// Bus of bmcd: system, session or a D-Bus address (unix:path=...)
    /// [default: $BMCCTL_ADDRESS, else system]
    // Not clap's `env`: clap counts a value from the environment as given
    // and shows `--address <ADDR>` in every usage line; see `address()`.
    #[arg(long, global = true, help_heading = GLOBAL, value_name = "ADDR")]
    pub address: Option<String>,
    /// No output on success except the data asked for
    #[arg(short, long, global = true, help_heading = GLOBAL)]
    pub quiet: bool,
    /// When bmcd asks for re-authentication, read the password from the
    /// first line of stdin (for scripts; never put it in argv)
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub password_stdin: bool,
    /// Never prompt for a password: a change that needs re-authentication
    /// fails (exit 3) unless --password-stdin is given
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub no_ask_password: bool,
}

impl Global {
    /// `--address`, else a non-empty `$BMCCTL_ADDRESS`, else `system`.
    pub fn address(&self) -> String {
        address_from(
            self.address.as_deref(),
            std::env::var("BMCCTL_ADDRESS").ok().as_deref(),
        )
    }
}

fn address_from(option: Option<&str>, env: Option<&str>) -> String {
    option
        .or(env.filter(|e| !e.is_empty()))
        .unwrap_or("system")
        .to_owned()
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Host power, identify LED and power restore policy
    #[command(after_help = "\
Examples:
  bmcctl chassis status
  bmcctl chassis power cycle --yes
  bmcctl chassis identify on --seconds 60
  bmcctl chassis policy set AlwaysOn")]
    Chassis {
        #[command(subcommand)]
        cmd: ChassisCmd,
    },
    /// Fans and the cooling zone
    #[command(after_help = "\
Examples:
  bmcctl fan list
  bmcctl fan show fan0
  bmcctl fan mode manual --level 80 --fans fan0,fan1 --timeout 600
  bmcctl fan mode auto")]
    Fan {
        #[command(subcommand)]
        cmd: FanCmd,
    },
    /// Long-running work (power transitions): list, show, wait, cancel
    #[command(after_help = "\
ID is the task's number (as in `task list`) or its object path
(/org/bmcd/tasks/12). Finished tasks stay for a while (by default 24 h or the
last 32), then they are removed.

Examples:
  bmcctl task list
  bmcctl task show 12
  bmcctl task wait 12
  bmcctl task cancel 12")]
    Task {
        #[command(subcommand)]
        cmd: TaskCmd,
    },
    /// BMC firmware: slots, signed updates, boot selection, rollback
    #[command(after_help = "\
The BMC has two firmware slots, bmc_a and bmc_b: one runs, the other takes
updates. An update writes the signed image into the slot that is not running
and reads it back; `activate` (or `update --activate`) makes a slot boot at
the next BMC restart, `rollback` goes back to the other one.

Examples:
  bmcctl firmware list
  bmcctl firmware show bmc_b
  bmcctl firmware inspect /tmp/bmc-2.0.0.img
  bmcctl firmware update /tmp/bmc-2.0.0.img --activate
  bmcctl firmware activate bmc_b
  bmcctl firmware rollback")]
    Firmware {
        #[command(subcommand)]
        cmd: FirmwareCmd,
    },
    /// Event and audit logs: list, show, follow, clear
    #[command(after_help = "\
LOG is event (what happened: power, cooling, firmware, bmcd) or audit (who
did what; Administrators only). Entries have an Id that never changes; it is
the cursor of `--cursor` and the ID of `log show`.

Examples:
  bmcctl log list
  bmcctl log list --severity warning --since -1h
  bmcctl log list audit --reverse --limit 50 --json
  bmcctl log show 1234
  bmcctl log follow
  bmcctl log clear")]
    Log {
        #[command(subcommand)]
        cmd: LogCmd,
    },
    /// Diagnostics: collect a dump of logs, state and configuration
    #[command(after_help = "\
Examples:
  bmcctl diag dump
  bmcctl diag dump -o /tmp/")]
    Diag {
        #[command(subcommand)]
        cmd: DiagCmd,
    },
    /// Show who bmcd sees calling: uid, user name and role
    #[command(after_help = "\
Roles: Administrator (root or the admin group), Operator (the operator
group), ReadOnly (anyone else).

Examples:
  bmcctl whoami
  bmcctl whoami --json")]
    Whoami,
}

#[derive(Debug, Subcommand)]
pub enum ChassisCmd {
    /// Show power state, pending transition, restore policy and identify LED
    #[command(after_help = "\
Times are ISO-8601 in UTC.

Examples:
  bmcctl chassis status
  bmcctl chassis status --json")]
    Status,
    /// Power the host on or off, power-cycle or reset it
    #[command(after_help = "\
off, cycle and reset ask for confirmation when stdin is a terminal; give --yes
in scripts (without a terminal or with --json they refuse otherwise).

bmcd carries each request out as a task; bmcctl waits for it to end, showing
its phase and progress (see `bmcctl task wait --help`), and exits with the
task's outcome. Ctrl-C stops the waiting, not the task. --no-wait prints the
task's number and returns at once.

Examples:
  bmcctl chassis power on
  bmcctl chassis power off --graceful-timeout 120
  bmcctl chassis power off --force --yes
  bmcctl chassis power cycle --yes --no-wait")]
    Power(PowerArgs),
    /// Turn the identify LED on or off
    #[command(after_help = "\
Examples:
  bmcctl chassis identify on
  bmcctl chassis identify on --seconds 60
  bmcctl chassis identify off")]
    Identify {
        #[command(subcommand)]
        action: IdentifyAction,
    },
    /// Show or set the power restore policy
    #[command(after_help = "\
Policies: AlwaysOn, AlwaysOff, Restore, None (any case, or a unique prefix).
Setting it needs the Administrator role and your password again
(re-authentication; see `bmcctl --help`).

Examples:
  bmcctl chassis policy
  bmcctl chassis policy set alwayson")]
    Policy {
        #[command(subcommand)]
        action: Option<PolicyAction>,
    },
}

#[derive(Debug, Args)]
pub struct PowerArgs {
    /// Print the task's number and return once bmcd has accepted the request
    #[arg(long, global = true)]
    pub no_wait: bool,
    #[command(subcommand)]
    pub action: PowerAction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub enum PowerAction {
    /// Power the host on
    #[command(after_help = "Example:\n  bmcctl chassis power on")]
    On,
    /// Power the host off: ask the OS to shut down, force off after a timeout
    #[command(after_help = "\
Without --force, the host OS is asked to shut down; if power is still on after
the graceful timeout (default: the daemon's configuration), it is forced off.

Examples:
  bmcctl chassis power off
  bmcctl chassis power off --graceful-timeout 300
  bmcctl chassis power off --force --yes")]
    Off {
        /// Force power off at once (hold the power button); no OS shutdown
        #[arg(long)]
        force: bool,
        /// Seconds the OS gets to shut down before power is forced off
        #[arg(long, value_name = "S", conflicts_with = "force")]
        graceful_timeout: Option<u32>,
    },
    /// Force the host off, then on again
    #[command(after_help = "Example:\n  bmcctl chassis power cycle --yes")]
    Cycle,
    /// Pulse the host's reset line (no OS shutdown)
    #[command(after_help = "Example:\n  bmcctl chassis power reset --yes")]
    Reset,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub enum IdentifyAction {
    /// Light the identify LED (until turned off, or for --seconds)
    #[command(after_help = "\
Examples:
  bmcctl chassis identify on
  bmcctl chassis identify on --seconds 120")]
    On {
        /// Turn the LED off by itself after N seconds (0 = until turned off)
        #[arg(long, value_name = "N")]
        seconds: Option<u32>,
    },
    /// Turn the identify LED off
    #[command(after_help = "Example:\n  bmcctl chassis identify off")]
    Off,
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum PolicyAction {
    /// Show the power restore policy (the default)
    #[command(after_help = "Example:\n  bmcctl chassis policy get")]
    Get,
    /// Set the power restore policy (asks for your password again)
    #[command(after_help = "\
VALUE is one of AlwaysOn, AlwaysOff, Restore, None (any case, or a unique
prefix: `res` is Restore; bmcctl sends the exact word).

Needs the Administrator role, and re-authentication: on a terminal bmcctl
prompts for your password (3 tries); in scripts give --password-stdin.

Examples:
  bmcctl chassis policy set AlwaysOn
  bmcctl chassis policy set restore
  bmcctl --password-stdin chassis policy set AlwaysOff < password-file")]
    Set {
        /// AlwaysOn, AlwaysOff, Restore or None
        #[arg(value_name = "VALUE")]
        value: String,
    },
}

/// The `ID` of `task show|wait|cancel` (one definition, one copy of its
/// clap code).
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct TaskId {
    /// The task's number or object path
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum TaskCmd {
    /// List the tasks, oldest first
    #[command(after_help = "\
Columns: ID, KIND, STATE, PROGRESS, PHASE, OWNER (uid), STARTED (UTC).

Examples:
  bmcctl task list
  bmcctl task list --json")]
    List,
    /// Show every property of a task
    #[command(after_help = "\
Examples:
  bmcctl task show 12
  bmcctl task show /org/bmcd/tasks/12 --json")]
    Show(TaskId),
    /// Wait until a task ends; exit with its outcome
    #[command(after_help = "\
On a terminal a progress bar shows the phase and percent; without one, a line
per phase change goes to stderr; with --json only the final document (the
task's properties) is printed. bmcctl follows the task's signals and sets no
time limit of its own (--timeout bounds each call only).

Exit codes: 0 Completed; Failed: the code of its error (e.g. 6 for
org.bmcd.Error.Timeout); 7 Cancelled; 8 Interrupted; 1 if bmcd stops while
bmcctl waits; 4 if the task does not exist (or is removed); 130 on Ctrl-C,
which stops the waiting, not the task.

Examples:
  bmcctl task wait 12
  bmcctl task wait 12 --json")]
    Wait(TaskId),
    /// Ask a running task to stop (its owner or an Administrator)
    #[command(after_help = "\
The task goes Cancelling, then Cancelled at its next safe point; follow it
with `bmcctl task wait ID`. A finished task, or one that is not cancellable,
is refused (exit 1).

Examples:
  bmcctl task cancel 12")]
    Cancel(TaskId),
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum FanCmd {
    /// Show the cooling zone and every fan
    #[command(after_help = "\
Examples:
  bmcctl fan list
  bmcctl fan list --json")]
    List,
    /// Show one fan
    #[command(after_help = "Example:\n  bmcctl fan show fan0")]
    Show {
        /// Name of the fan (as in `bmcctl fan list`)
        name: String,
    },
    /// Show or change who drives the fans (auto curve or manual override)
    #[command(after_help = "\
Examples:
  bmcctl fan mode
  bmcctl fan mode manual --level 70 --timeout 600
  bmcctl fan mode auto")]
    Mode {
        #[command(subcommand)]
        action: Option<ModeAction>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum ModeAction {
    /// Show the cooling mode and levels (the default)
    #[command(after_help = "Example:\n  bmcctl fan mode get")]
    Get,
    /// Return the fans to the automatic curve
    #[command(after_help = "Example:\n  bmcctl fan mode auto")]
    Auto,
    /// Drive fans at a fixed level until `fan mode auto` or the timeout
    /// (asks for your password again)
    #[command(after_help = "\
The level is a percentage (0-100); the daemon checks the timeout range and
may refuse levels below its minimum. Here --timeout is the
override's duration; give the call timeout before `manual` if needed
(bmcctl --timeout 5 fan mode manual ...).

Needs the Administrator role, and re-authentication: on a terminal bmcctl
prompts for your password (3 tries); in scripts give --password-stdin.

Examples:
  bmcctl fan mode manual --level 60
  bmcctl fan mode manual --level 100 --fans fan0,fan1 --timeout 300
  bmcctl --password-stdin fan mode manual --level 80 < password-file")]
    Manual {
        /// Duty cycle in percent (0-100)
        #[arg(long, value_name = "PCT", value_parser = clap::value_parser!(u8).range(0..=100))]
        level: u8,
        /// Only these fans (comma-separated); the others stay automatic
        #[arg(long, value_name = "FAN,...", value_delimiter = ',')]
        fans: Vec<String>,
        /// Return to auto after S seconds (0 = no expiry)
        #[arg(long = "timeout", id = "override_timeout", value_name = "S")]
        timeout: Option<u32>,
    },
}

/// A firmware image file (opened by bmcctl, read-only; bmcd gets the open
/// file, never the path).
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct ImageFile {
    /// The signed image file (made with `bmcimage pack`)
    #[arg(value_name = "FILE")]
    pub file: std::path::PathBuf,
}

/// The `SLOT` of `firmware show|activate`.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct SlotName {
    /// The slot's name, as in `bmcctl firmware list` (bmc_a, bmc_b)
    #[arg(value_name = "SLOT")]
    pub slot: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum FirmwareCmd {
    /// List the firmware slots, the running one and the one that boots next
    #[command(after_help = "\
Columns: SLOT, COMPONENT, STATE (Active: running; Backup: a good image, the
rollback target; Staged: updated, not booted yet; Writing; Invalid; Empty),
VERSION, BUILD DATE, INSTALLED (UTC), BOOT (running, next).

Examples:
  bmcctl firmware list
  bmcctl firmware list --json")]
    List,
    /// Show every property of a firmware slot (digest, size, capacity...)
    #[command(after_help = "\
Examples:
  bmcctl firmware show bmc_a
  bmcctl firmware show bmc_b --json")]
    Show(SlotName),
    /// Check an image without installing it: manifest, signature, fit
    #[command(after_help = "\
bmcd checks the signature against its trusted keys, the machine, the version
against the running one and the size against the slot; nothing is written.
With --payload it also reads every payload and checks its SHA-256 (reads the
whole file).

Exit codes: 0 the image can be installed; 9 it cannot (the reason is on
stderr; with --json in the document too).

Examples:
  bmcctl firmware inspect /tmp/bmc-2.0.0.img
  bmcctl firmware inspect /tmp/bmc-2.0.0.img --payload --json")]
    Inspect {
        #[command(flatten)]
        image: ImageFile,
        /// Also read the payload and check its digest
        #[arg(long)]
        payload: bool,
    },
    /// Install a signed image into the slot that is not running
    #[command(after_help = "\
bmcctl opens FILE, asks bmcd what it is, says what will be installed where
and asks for confirmation (--yes in scripts; without a terminal or with
--json it refuses otherwise). Needs the Administrator role and your password
again (re-authentication; see `bmcctl --help`).

bmcd runs the update as a task (phases Verify, Write, ReadBack); bmcctl waits
for it with a progress bar (see `bmcctl task wait --help`). Ctrl-C stops the
waiting, not the update; `bmcctl task cancel ID` cancels it until the slot is
Staged. The running slot is never written.

Exit codes: 0 installed; 9 image refused (signature, machine, downgrade
without --force-version, too large, content not matching its manifest);
10 writing or reading back the slot failed; 5 another update runs; 7
cancelled; 8 interrupted.

Examples:
  bmcctl firmware update /tmp/bmc-2.0.0.img
  bmcctl firmware update /tmp/bmc-2.0.0.img --activate --yes
  bmcctl firmware update /tmp/bmc-1.9.0.img --force-version
  bmcctl --password-stdin firmware update bmc.img --yes --no-wait < password-file")]
    Update {
        #[command(flatten)]
        image: ImageFile,
        /// After a good write and read-back, boot the new slot at the next
        /// BMC restart
        #[arg(long)]
        activate: bool,
        /// Allow a version lower than the running one (a downgrade)
        #[arg(long)]
        force_version: bool,
        /// Print the task's number and return once bmcd has accepted the image
        #[arg(long)]
        no_wait: bool,
    },
    /// Boot a slot at the next BMC restart
    #[command(after_help = "\
The slot must hold a good image (Active, Backup or Staged). Asks for
confirmation and needs the Administrator role and re-authentication.

Examples:
  bmcctl firmware activate bmc_b
  bmcctl --yes --password-stdin firmware activate bmc_a < password-file")]
    Activate(SlotName),
    /// Boot the other slot next, or cancel a pending activation
    #[command(after_help = "\
If another slot than the running one is to boot next, it goes back to the
running one; otherwise the other BMC slot (Backup or Staged) boots next.
Asks for confirmation and needs the Administrator role and
re-authentication.

Examples:
  bmcctl firmware rollback
  bmcctl firmware rollback --yes --json")]
    Rollback,
}

/// Which log (`event` or `audit`), as a positional word.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct LogName {
    /// event or audit
    #[arg(value_name = "LOG", default_value = "event", value_parser = ["event", "audit"])]
    pub log: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct LogFilters {
    /// Only entries at or after this time: RFC 3339 (2026-12-03T10:00:00Z),
    /// local `2026-12-03 10:00[:00]`, a date, `now` or relative (-30m, -2h, -1d)
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub since: Option<String>,
    /// Only entries at or before this time (same forms as --since)
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub until: Option<String>,
    /// Only entries at least this severe: emerg, alert, crit, err, warning,
    /// notice, info, debug (or the full words, any case)
    #[arg(long, value_name = "WORD")]
    pub severity: Option<String>,
    /// Only entries from this source (chassis, cooling, firmware, daemon, ...)
    #[arg(long, value_name = "NAME")]
    pub source: Option<String>,
    /// Only this MessageId; a prefix when it ends with '.' (Chassis.)
    #[arg(long, value_name = "ID")]
    pub message_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum LogCmd {
    /// List entries, newest first (through the pager on a terminal)
    #[command(after_help = "\
One line per entry: Id, local time, severity, source, MessageId, message and its
data (key=value). On a terminal the list goes through the pager ($BMCCTL_PAGER,
$PAGER, else less -FRX) and bmcd is asked for one screenful at a time, only
when the pager needs more; quitting the pager stops the listing. Without a
terminal every matching entry is written (or --limit of them).

--json prints one document: {\"entries\": [...], \"next_cursor\": N, \"end\": B}
with the D-Bus keys (Id, Time in microseconds since the epoch, Severity,
Source, MessageId, Message, Data); next_cursor continues with --cursor.

Examples:
  bmcctl log list
  bmcctl log list --severity err --source chassis
  bmcctl log list --message-id Firmware. --since 2026-12-01
  bmcctl log list audit --reverse --limit 100 --json")]
    List {
        #[command(flatten)]
        name: LogName,
        #[command(flatten)]
        filters: LogFilters,
        /// Oldest first
        #[arg(long)]
        reverse: bool,
        /// Print at most N entries
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        limit: Option<u64>,
        /// Start at this entry Id (as next_cursor gives it)
        #[arg(long, value_name = "ID")]
        cursor: Option<u64>,
    },
    /// Show one entry with all its data
    #[command(after_help = "\
Exit code 4 if there is no entry ID (never written, rotated out or cleared).

Examples:
  bmcctl log show 1234
  bmcctl log show 17 audit --json")]
    Show {
        /// The entry's Id
        id: u64,
        #[command(flatten)]
        name: LogName,
    },
    /// Print the last entries, then new ones as they come, until Ctrl-C
    #[command(after_help = "\
Ctrl-C ends it (exit 130); bmcd stopping ends it with exit 1. With --json each
entry is one JSON document.

Examples:
  bmcctl log follow
  bmcctl log follow audit --lines 0")]
    Follow {
        #[command(flatten)]
        name: LogName,
        /// How many of the last entries to print first
        #[arg(long, short = 'n', value_name = "N", default_value_t = 10,
              value_parser = clap::value_parser!(u32).range(0..=1000))]
        lines: u32,
    },
    /// Remove every entry of the event log (the audit log only rotates)
    #[command(after_help = "\
Asks for confirmation (--yes in scripts) and needs the Administrator role and
your password again (re-authentication; see `bmcctl --help`). Entry Ids go on
from where they were; the audit log records who cleared the event log. The
audit log cannot be cleared (exit 1).

Examples:
  bmcctl log clear
  bmcctl --yes --password-stdin log clear < password-file")]
    Clear {
        #[command(flatten)]
        name: LogName,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum DiagCmd {
    /// Make a diagnostic dump (.tar.gz) and download it
    #[command(after_help = "\
bmcd collects both logs, its state, the configuration without secrets, the
firmware inventory, sensor and fan readings as a task; bmcctl waits for it
with a progress bar, then copies the file. OUTPUT is a file, or a directory
for bmcd's file name (default: the current directory). An existing file is
not overwritten unless --force. Needs the Administrator role.

Examples:
  bmcctl diag dump
  bmcctl diag dump -o /tmp/
  bmcctl diag dump -o dump.tar.gz --force")]
    Dump {
        /// Where to write it: a file, or a directory
        #[arg(short, long, value_name = "FILE|DIR")]
        output: Option<std::path::PathBuf>,
        /// Overwrite an existing file
        #[arg(long)]
        force: bool,
        /// Print the task's number and return once bmcd has started the dump
        #[arg(long)]
        no_wait: bool,
    },
}

/// The call timeout, added to every level (see [`Global`]).
fn call_timeout_arg() -> Arg {
    Arg::new(CALL_TIMEOUT)
        .long("timeout")
        .value_name("SECONDS")
        .help(format!(
            "Bound for connecting and for each call, seconds [default: {DEFAULT_TIMEOUT_S}]"
        ))
        .help_heading(GLOBAL)
        .action(ArgAction::Set)
        .value_parser(clap::value_parser!(u32).range(1..=3600))
}

fn add_call_timeout(cmd: Command) -> Command {
    let subs: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_owned())
        .collect();
    let has_own = cmd.get_arguments().any(|a| a.get_long() == Some("timeout"));
    let mut cmd = if has_own {
        cmd
    } else {
        cmd.arg(call_timeout_arg())
    };
    for name in subs {
        cmd = cmd.mut_subcommand(name, add_call_timeout);
    }
    cmd
}

/// The complete, built command tree.
pub fn command() -> Command {
    let mut cmd = add_call_timeout(Cli::command());
    cmd.build();
    cmd
}

/// The call timeout as given at the deepest level that has it.
pub fn call_timeout(m: &clap::ArgMatches) -> Option<u32> {
    let mut found = None;
    let mut cur = Some(m);
    while let Some(level) = cur {
        if let Ok(Some(v)) = level.try_get_one::<u32>(CALL_TIMEOUT) {
            found = Some(*v);
        }
        cur = level.subcommand().map(|(_, sub)| sub);
    }
    found
}

/// Whether `--json` was given (before `--`), for reporting errors that
/// happen before clap has parsed the line.
pub fn wants_json(args: &[OsString]) -> bool {
    args.iter()
        .skip(1)
        .take_while(|a| a.as_os_str() != OsStr::new("--"))
        .any(|a| a.as_os_str() == OsStr::new("--json"))
}

/// Replace each command word by the full name it uniquely abbreviates.
///
/// Options are skipped (with their values, when they take one); words after
/// the leaf command and after `--` are left alone. A word that matches no
/// command, or more than one, or a missing command where one is required,
/// gives a usage error listing the choices at that level.
pub fn resolve(root: &Command, args: &[OsString]) -> Result<Vec<OsString>, CliError> {
    let mut out: Vec<OsString> = Vec::with_capacity(args.len());
    let mut it = args.iter();
    if let Some(argv0) = it.next() {
        out.push(argv0.clone());
    }
    let mut cur = root;
    let mut path: Vec<String> = vec![root.get_name().to_owned()];
    let mut in_help = false;
    let mut help_or_version = false;
    while let Some(arg) = it.next() {
        out.push(arg.clone());
        let Some(s) = arg.to_str() else {
            continue;
        };
        if s == "--" {
            out.extend(it.cloned());
            return Ok(out);
        }
        if let Some(long) = s.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, _)) => (n, true),
                None => (long, false),
            };
            if name == "help" || name == "version" {
                help_or_version = true;
            }
            if !inline && takes_value(cur.get_arguments().find(|a| a.get_long() == Some(name))) {
                if let Some(v) = it.next() {
                    out.push(v.clone());
                }
            }
            continue;
        }
        if let Some(shorts) = s.strip_prefix('-').filter(|r| !r.is_empty()) {
            for (i, c) in shorts.char_indices() {
                if c == 'h' || c == 'V' {
                    help_or_version = true;
                }
                if takes_value(cur.get_arguments().find(|a| a.get_short() == Some(c))) {
                    // The value is the rest of this word, or the next word.
                    if i + c.len_utf8() == shorts.len() {
                        if let Some(v) = it.next() {
                            out.push(v.clone());
                        }
                    }
                    break;
                }
            }
            continue;
        }
        if !cur.has_subcommands() {
            // A leaf: the rest are its arguments.
            out.extend(it.cloned());
            return Ok(out);
        }
        let sub = match_word(cur, s, in_help, &path)?;
        out.pop();
        out.push(OsString::from(sub.get_name()));
        if sub.get_name() == "help" && !in_help {
            // `help WORD...` names commands of this level.
            in_help = true;
        } else {
            path.push(sub.get_name().to_owned());
            cur = sub;
        }
    }
    let chose_nothing = !in_help && !help_or_version;
    if chose_nothing && cur.has_subcommands() && cur.is_subcommand_required_set() {
        let mut e = CliError::usage(format!(
            "missing command for '{}'; choose one of:",
            path.join(" ")
        ));
        e.choices = choices(cur, in_help, |_| true);
        return Err(e);
    }
    Ok(out)
}

/// The word of `names` (a bmcd enum's wire names) that `typed` means: the
/// one equal to it in any case, else the one it is a unique prefix of, in
/// any case (`alwayson`, `res`). A word that matches none is returned as
/// typed, for the daemon to judge (a newer daemon may know more words); an
/// ambiguous prefix is a usage error listing the candidates.
pub fn enum_word(typed: &str, names: &[&str]) -> Result<String, CliError> {
    let lower = typed.to_ascii_lowercase();
    if let Some(exact) = names.iter().find(|n| n.eq_ignore_ascii_case(typed)) {
        return Ok((*exact).to_owned());
    }
    let candidates: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| !typed.is_empty() && n.to_ascii_lowercase().starts_with(&lower))
        .collect();
    match candidates.as_slice() {
        [one] => Ok((*one).to_owned()),
        [] => Ok(typed.to_owned()),
        many => Err(CliError::usage(format!(
            "'{typed}' is ambiguous: it may be {}",
            many.join(", ")
        ))),
    }
}

fn takes_value(arg: Option<&Arg>) -> bool {
    arg.is_some_and(|a| a.get_action().takes_values())
}

fn visible(cmd: &Command, in_help: bool) -> impl Iterator<Item = &Command> {
    // Under `help`, the help command itself is not a choice.
    let skip = move |s: &Command| s.is_hide_set() || (in_help && s.get_name() == "help");
    cmd.get_subcommands().filter(move |s| !skip(s))
}

fn choices(cmd: &Command, in_help: bool, keep: impl Fn(&Command) -> bool) -> Vec<Choice> {
    visible(cmd, in_help)
        .filter(|s| keep(s))
        .map(|s| Choice {
            name: s.get_name().to_owned(),
            about: s.get_about().map(|a| a.to_string()).unwrap_or_default(),
        })
        .collect()
}

fn match_word<'a>(
    cmd: &'a Command,
    word: &str,
    in_help: bool,
    path: &[String],
) -> Result<&'a Command, CliError> {
    let exact = visible(cmd, in_help)
        .find(|s| s.get_name() == word || s.get_all_aliases().any(|a| a == word));
    if let Some(s) = exact {
        return Ok(s);
    }
    let candidates: Vec<&Command> = if word.is_empty() {
        Vec::new()
    } else {
        visible(cmd, in_help)
            .filter(|s| s.get_name().starts_with(word))
            .collect()
    };
    match candidates.as_slice() {
        [one] => Ok(one),
        [] => {
            let mut e = CliError::usage(format!(
                "unknown command '{word}' for '{}'; choose one of:",
                path.join(" ")
            ));
            e.choices = choices(cmd, in_help, |_| true);
            Err(e)
        }
        _ => {
            let mut e = CliError::usage(format!(
                "'{word}' is ambiguous for '{}'; it may be:",
                path.join(" ")
            ));
            e.choices = choices(cmd, in_help, |s| s.get_name().starts_with(word));
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Exit;

    fn args(s: &str) -> Vec<OsString> {
        std::iter::once("bmcctl")
            .chain(s.split_whitespace())
            .map(OsString::from)
            .collect()
    }

    fn res(s: &str) -> Result<String, CliError> {
        resolve(&command(), &args(s)).map(|v| {
            v.iter()
                .skip(1)
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
    }

    #[test]
    fn definitions_are_consistent() {
        command().debug_assert();
    }

    #[test]
    fn unique_prefixes_expand() {
        assert_eq!(res("ch st").unwrap(), "chassis status");
        assert_eq!(
            res("c pow of --force").unwrap(),
            "chassis power off --force"
        );
        assert_eq!(res("fa l").unwrap(), "fan list");
        assert_eq!(res("fi l").unwrap(), "firmware list");
        assert_eq!(
            res("fi u /tmp/x.img --act").unwrap(),
            "firmware update /tmp/x.img --act"
        );
        assert_eq!(res("fi ro").unwrap(), "firmware rollback");
        assert_eq!(
            res("fa mo ma --level 5").unwrap(),
            "fan mode manual --level 5"
        );
        assert_eq!(
            res("ch pol s alwayson").unwrap(),
            "chassis policy set alwayson"
        );
        assert_eq!(res("ch pol").unwrap(), "chassis policy");
        assert_eq!(res("fan show f").unwrap(), "fan show f");
        assert_eq!(res("t w 12").unwrap(), "task wait 12");
        assert_eq!(
            res("ta c /org/bmcd/tasks/3").unwrap(),
            "task cancel /org/bmcd/tasks/3"
        );
        assert_eq!(res("t l --json").unwrap(), "task list --json");
    }

    #[test]
    fn option_values_are_not_taken_for_commands() {
        assert_eq!(
            res("--address unix:path=/x --timeout 5 ch st").unwrap(),
            "--address unix:path=/x --timeout 5 chassis status"
        );
        assert_eq!(
            res("--timeout=5 -yq ch st").unwrap(),
            "--timeout=5 -yq chassis status"
        );
        assert_eq!(
            res("ch pow --no-wait of --graceful-timeout 5").unwrap(),
            "chassis power --no-wait off --graceful-timeout 5"
        );
        assert_eq!(res("-- ch").unwrap(), "-- ch");
    }

    #[test]
    fn ambiguity_lists_the_matching_choices() {
        let e = res("ch p").unwrap_err();
        assert_eq!(e.exit, Exit::Usage);
        assert_eq!(
            e.message,
            "'p' is ambiguous for 'bmcctl chassis'; it may be:"
        );
        let names: Vec<&str> = e.choices.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["power", "policy"]);
        assert!(e.choices.iter().all(|c| !c.about.is_empty()));
    }

    #[test]
    fn unknown_words_list_every_choice() {
        let e = res("chassis x").unwrap_err();
        assert_eq!(e.exit, Exit::Usage);
        assert!(e
            .message
            .starts_with("unknown command 'x' for 'bmcctl chassis'"));
        let names: Vec<&str> = e.choices.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["status", "power", "identify", "policy", "help"]);
        let e = res("zz").unwrap_err();
        let names: Vec<&str> = e.choices.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            ["chassis", "fan", "task", "firmware", "log", "diag", "whoami", "help"]
        );
        // `f` is fan or firmware: both are listed.
        let e = res("f l").unwrap_err();
        let names: Vec<&str> = e.choices.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["fan", "firmware"]);
    }

    #[test]
    fn missing_commands_list_the_choices() {
        let e = res("chassis power").unwrap_err();
        assert!(e
            .message
            .contains("missing command for 'bmcctl chassis power'"));
        let names: Vec<&str> = e.choices.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["on", "off", "cycle", "reset", "help"]);
        assert!(res("").is_err());
        assert!(res("--help").is_ok());
        assert!(res("chassis -h").is_ok());
        assert!(res("fan mode").is_ok());
    }

    #[test]
    fn help_words_resolve_against_the_level() {
        assert_eq!(res("help ch pow").unwrap(), "help chassis power");
        assert!(res("help ch po").is_err());
        assert_eq!(res("ch he pow").unwrap(), "chassis help power");
    }

    fn parse(s: &str) -> Result<(Cli, clap::ArgMatches), clap::Error> {
        use clap::FromArgMatches;
        let a = resolve(&command(), &args(s)).unwrap();
        let m = command().try_get_matches_from(a)?;
        Ok((Cli::from_arg_matches(&m)?, m))
    }

    #[test]
    fn globals_work_anywhere() {
        let (cli, m) = parse("ch st --json -y --address session --timeout 7").unwrap();
        assert!(cli.global.json && cli.global.yes);
        assert_eq!(cli.global.address.as_deref(), Some("session"));
        assert_eq!(call_timeout(&m), Some(7));
        let (_, m) = parse("--timeout 3 ch st").unwrap();
        assert_eq!(call_timeout(&m), Some(3));
        let (_, m) = parse("ch st").unwrap();
        assert_eq!(call_timeout(&m), None);
    }

    #[test]
    fn password_options_are_global_flags() {
        let (cli, _) = parse("ch pol set AlwaysOn --password-stdin").unwrap();
        assert!(cli.global.password_stdin && !cli.global.no_ask_password);
        let (cli, _) = parse("--no-ask-password fa mo ma --level 5").unwrap();
        assert!(cli.global.no_ask_password && !cli.global.password_stdin);
        let (cli, _) = parse("fan --password-stdin mode --no-ask-password auto").unwrap();
        assert!(cli.global.password_stdin && cli.global.no_ask_password);
        // Flags: the word after them is still a command word.
        assert_eq!(
            res("--password-stdin ch pol s x").unwrap(),
            "--password-stdin chassis policy set x"
        );
        // There is no option that takes a password on the command line.
        let rejected = |s: &str| match resolve(&command(), &args(s)) {
            Ok(a) => command().try_get_matches_from(a).is_err(),
            Err(_) => true,
        };
        assert!(rejected("--password secret ch st"));
        assert!(rejected("--password-stdin=secret ch st"));
        assert!(!rejected("--password-stdin ch st"));
        let (cli, _) = parse("w").unwrap();
        assert!(matches!(cli.command, Cmd::Whoami));
    }

    #[test]
    fn help_mentions_re_authentication() {
        let mut cmd = command();
        let root = cmd.render_long_help().to_string();
        assert!(root.contains("--password-stdin"), "{root}");
        assert!(root.contains("--no-ask-password"), "{root}");
        assert!(root.contains("Re-authentication"), "{root}");
        for path in [["chassis", "policy", "set"], ["fan", "mode", "manual"]] {
            let mut c = command();
            let mut sub = &mut c;
            for p in path {
                sub = sub.find_subcommand_mut(p).unwrap();
            }
            let help = sub.render_long_help().to_string();
            assert!(help.contains("re-authentication"), "{help}");
            assert!(help.contains("--password-stdin"), "{help}");
        }
    }

    #[test]
    fn manual_timeout_is_the_override_duration() {
        let (cli, m) =
            parse("--timeout 4 fan mode manual --level 60 --timeout 300 --fans a,b").unwrap();
        assert_eq!(call_timeout(&m), Some(4));
        let Cmd::Fan {
            cmd:
                FanCmd::Mode {
                    action:
                        Some(ModeAction::Manual {
                            level,
                            fans,
                            timeout,
                        }),
                },
        } = cli.command
        else {
            panic!("wrong command");
        };
        assert_eq!((level, timeout), (60, Some(300)));
        assert_eq!(fans, ["a", "b"]);
    }

    #[test]
    fn syntax_is_checked_by_clap() {
        assert!(parse("fan mode manual --level 256").is_err());
        assert!(parse("fan mode manual --level x").is_err());
        assert!(parse("fan mode manual --level 100").is_ok());
        assert!(parse("fan mode manual --level 0").is_ok());
        let e = parse("fan mode manual --level 101")
            .unwrap_err()
            .to_string();
        assert!(e.contains("0..=100"), "{e}");
        assert!(parse("fan mode manual").is_err());
        assert!(parse("ch pow off --force --graceful-timeout 3").is_err());
        let (cli, _) = parse("ch pow of --no-wait").unwrap();
        let Cmd::Chassis {
            cmd: ChassisCmd::Power(p),
        } = cli.command
        else {
            panic!("wrong command");
        };
        assert!(p.no_wait);
    }

    #[test]
    fn firmware_commands_parse() {
        let fw = |s: &str| match parse(s) {
            Ok((
                Cli {
                    command: Cmd::Firmware { cmd },
                    global,
                },
                _,
            )) => Some((cmd, global.yes, global.json)),
            _ => None,
        };
        assert_eq!(
            fw("firmware update /tmp/a.img --activate --force-version --no-wait --yes"),
            Some((
                FirmwareCmd::Update {
                    image: ImageFile {
                        file: "/tmp/a.img".into()
                    },
                    activate: true,
                    force_version: true,
                    no_wait: true,
                },
                true,
                false
            ))
        );
        assert_eq!(
            fw("fi ins a.img --payload --json"),
            Some((
                FirmwareCmd::Inspect {
                    image: ImageFile {
                        file: "a.img".into()
                    },
                    payload: true,
                },
                false,
                true
            ))
        );
        assert_eq!(
            fw("fi sh bmc_b").map(|f| f.0),
            Some(FirmwareCmd::Show(SlotName {
                slot: "bmc_b".into()
            }))
        );
        assert_eq!(
            fw("fi act bmc_a -y").map(|f| (f.0, f.1)),
            Some((
                FirmwareCmd::Activate(SlotName {
                    slot: "bmc_a".into()
                }),
                true
            ))
        );
        assert_eq!(fw("fi rollback").map(|f| f.0), Some(FirmwareCmd::Rollback));
        assert!(fw("firmware update").is_none(), "FILE is required");
        assert!(fw("firmware activate").is_none(), "SLOT is required");
        assert!(fw("firmware rollback extra").is_none());
        for path in [["firmware", "update"], ["firmware", "activate"]] {
            let mut c = command();
            let mut sub = &mut c;
            for p in path {
                sub = sub.find_subcommand_mut(p).unwrap();
            }
            let help = sub.render_long_help().to_string();
            assert!(help.contains("re-authentication"), "{help}");
        }
    }

    #[test]
    fn address_option_then_environment_then_system() {
        assert_eq!(
            address_from(Some("session"), Some("unix:path=/x")),
            "session"
        );
        assert_eq!(address_from(None, Some("unix:path=/x")), "unix:path=/x");
        assert_eq!(address_from(None, Some("")), "system");
        assert_eq!(address_from(None, None), "system");
    }

    #[test]
    fn enum_words_any_case_and_unique_prefixes() {
        let names = ["AlwaysOn", "AlwaysOff", "Restore", "None"];
        let w = |t: &str| enum_word(t, &names);
        assert_eq!(w("alwayson").unwrap(), "AlwaysOn");
        assert_eq!(w("ALWAYSOFF").unwrap(), "AlwaysOff");
        assert_eq!(w("res").unwrap(), "Restore");
        assert_eq!(w("n").unwrap(), "None");
        assert_eq!(w("sometimes").unwrap(), "sometimes");
        assert_eq!(w("").unwrap(), "");
        let e = w("always").unwrap_err();
        assert_eq!(e.exit, Exit::Usage);
        assert_eq!(
            e.message,
            "'always' is ambiguous: it may be AlwaysOn, AlwaysOff"
        );
    }

    #[test]
    fn json_is_detected_before_parsing() {
        assert!(wants_json(&args("ch x --json")));
        assert!(!wants_json(&args("ch x -- --json")));
        assert!(!wants_json(&args("ch x")));
    }
}
