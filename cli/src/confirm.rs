//! Y/N confirmation of disruptive commands (openUBMC's "Continue? [Y/N]").
//!
//! - `--yes`: no question.
//! - `--json`: never prompts; without `--yes` the command is refused.
//! - stdin is a terminal: one line saying what will happen, then
//!   `Continue? [y/N] ` on stderr; only `y`/`yes` (any case) proceeds.
//! - otherwise (scripts, pipes): refused with a message naming `--yes`.
//!
//! Refusals exit 2 (usage), a "no" exits 1.

use std::io::{self, BufRead, IsTerminal, Write};

use crate::error::{names, CliError, Exit};

/// How the confirmation may be obtained.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub yes: bool,
    pub json: bool,
    pub stdin_is_terminal: bool,
}

impl Policy {
    pub fn from_env(yes: bool, json: bool) -> Self {
        Policy {
            yes,
            json,
            stdin_is_terminal: io::stdin().is_terminal(),
        }
    }
}

/// Ask (or decide) whether to go on with `action` (e.g. "power off the
/// host"); `consequence` is the one line saying what will happen.
pub fn confirm(policy: Policy, action: &str, consequence: &str) -> Result<(), CliError> {
    confirm_with(
        policy,
        action,
        consequence,
        &mut io::stdin().lock(),
        &mut io::stderr(),
    )
}

pub fn confirm_with(
    policy: Policy,
    action: &str,
    consequence: &str,
    input: &mut impl BufRead,
    prompt: &mut impl Write,
) -> Result<(), CliError> {
    if policy.yes {
        return Ok(());
    }
    if policy.json {
        return Err(CliError::new(
            names::CONFIRMATION_REQUIRED,
            format!("refusing to {action} without confirmation: --json never prompts; add --yes"),
            Exit::Usage,
        ));
    }
    if !policy.stdin_is_terminal {
        return Err(CliError::new(
            names::CONFIRMATION_REQUIRED,
            format!(
                "refusing to {action} without confirmation: stdin is not a terminal; add --yes"
            ),
            Exit::Usage,
        ));
    }
    let _ = write!(prompt, "{consequence}\nContinue? [y/N] ");
    let _ = prompt.flush();
    let mut answer = String::new();
    let read = input.read_line(&mut answer);
    if matches!(read, Ok(0) | Err(_)) {
        // End of input: finish the prompt line.
        let _ = writeln!(prompt);
    }
    let answer = answer.trim();
    if answer.eq_ignore_ascii_case("y") || answer.eq_ignore_ascii_case("yes") {
        Ok(())
    } else {
        Err(CliError::new(
            names::ABORTED,
            "aborted; nothing was changed",
            Exit::Failure,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(policy: Policy, input: &str) -> (Result<(), CliError>, String) {
        let mut out = Vec::new();
        let r = confirm_with(
            policy,
            "power off the host",
            "The host will be powered off.",
            &mut input.as_bytes(),
            &mut out,
        );
        (r, String::from_utf8(out).unwrap())
    }

    const TTY: Policy = Policy {
        yes: false,
        json: false,
        stdin_is_terminal: true,
    };

    #[test]
    fn yes_skips_the_question() {
        let (r, out) = ask(Policy { yes: true, ..TTY }, "");
        assert!(r.is_ok());
        assert!(out.is_empty());
        let p = Policy {
            yes: true,
            json: true,
            stdin_is_terminal: false,
        };
        assert!(ask(p, "").0.is_ok());
    }

    #[test]
    fn terminal_asks_and_accepts_only_yes() {
        let (r, out) = ask(TTY, "y\n");
        assert!(r.is_ok());
        assert_eq!(out, "The host will be powered off.\nContinue? [y/N] ");
        assert!(ask(TTY, "YES\n").0.is_ok());
        for no in ["\n", "n\n", "nope\n", "", "yy\n"] {
            let e = ask(TTY, no).0.err().unwrap();
            assert_eq!(e.exit, Exit::Failure, "{no:?}");
            assert_eq!(e.name, names::ABORTED);
        }
    }

    #[test]
    fn no_terminal_or_json_refuses_naming_yes() {
        for p in [
            Policy {
                stdin_is_terminal: false,
                ..TTY
            },
            Policy { json: true, ..TTY },
        ] {
            let (r, out) = ask(p, "y\n");
            let e = r.err().unwrap();
            assert_eq!(e.exit, Exit::Usage);
            assert!(e.message.contains("--yes"), "{}", e.message);
            assert!(out.is_empty(), "must not prompt");
        }
    }
}
