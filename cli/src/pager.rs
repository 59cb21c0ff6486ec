//! The pager, systemd-style: used only when stdout is a terminal and
//! neither `--no-pager` nor `--json` is given (decided in `output::emit`).
//!
//! The command is `$BMCCTL_PAGER` if set, else `$PAGER` if set, else
//! `less -FRX` (quit if one screen, keep colours, do not clear the screen).
//! An empty value or `cat` disables paging. The value is split on
//! whitespace (no shell is involved); if the pager cannot be started the
//! text is printed directly.

use std::io::Write;
use std::process::{Command, Stdio};

/// The pager's argv from the environment, or `None` for no pager.
pub fn command_from_env() -> Option<Vec<String>> {
    choose(
        std::env::var("BMCCTL_PAGER").ok().as_deref(),
        std::env::var("PAGER").ok().as_deref(),
    )
}

/// The choice between `$BMCCTL_PAGER`, `$PAGER` and the default.
pub fn choose(bmcctl_pager: Option<&str>, pager: Option<&str>) -> Option<Vec<String>> {
    let value = bmcctl_pager.or(pager).unwrap_or("less -FRX");
    let argv: Vec<String> = value.split_whitespace().map(str::to_owned).collect();
    match argv.first().map(String::as_str) {
        None | Some("cat") => None,
        Some(_) => Some(argv),
    }
}

/// Whether `text` has more lines than the terminal on stdout shows at once
/// (a pager for a screenful only gets in the way; `less -F` would quit at
/// once anyway, but not on every terminal type). Unknown size: assume 24.
pub fn taller_than_terminal(text: &str) -> bool {
    let rows = terminal_rows().unwrap_or(24);
    text.lines().count() >= usize::from(rows.max(2)) - 1
}

fn terminal_rows() -> Option<u16> {
    // SAFETY: TIOCGWINSZ fills a plain `winsize` struct we own; a failing
    // ioctl leaves it untouched and returns -1.
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let r = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_row > 0).then_some(ws.ws_row)
}

/// Feed `text` to the pager and wait for it. Returns false if the pager
/// could not be started (then the caller prints the text itself).
pub fn page(argv: &[String], text: &str) -> bool {
    let Some((prog, args)) = argv.split_first() else {
        return false;
    };
    let child = Command::new(prog).args(args).stdin(Stdio::piped()).spawn();
    let Ok(mut child) = child else {
        return false;
    };
    if let Some(mut stdin) = child.stdin.take() {
        // A write error is the user quitting the pager before reading
        // everything (broken pipe): nothing to report.
        let _ = stdin.write_all(text.as_bytes());
    }
    let _ = child.wait();
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choice_order_and_disabling() {
        let v = |s: &[&str]| Some(s.iter().map(|x| x.to_string()).collect::<Vec<_>>());
        assert_eq!(choose(None, None), v(&["less", "-FRX"]));
        assert_eq!(choose(None, Some("more")), v(&["more"]));
        assert_eq!(choose(Some("most -s"), Some("more")), v(&["most", "-s"]));
        assert_eq!(choose(Some(""), Some("more")), None);
        assert_eq!(choose(Some("cat"), None), None);
        assert_eq!(choose(None, Some("  ")), None);
        assert_eq!(choose(None, Some("cat")), None);
    }

    #[test]
    fn a_missing_pager_is_reported_as_not_started() {
        assert!(!page(&["/nonexistent/bmcctl-pager".to_owned()], "x"));
        assert!(!page(&[], "x"));
    }

    #[test]
    fn a_pager_that_quits_early_is_fine() {
        let big = "line\n".repeat(100_000);
        assert!(page(&["true".to_owned()], &big));
    }
}
