//! The pager, systemd-style: used only when stdout is a terminal and
//! neither `--no-pager` nor `--json` is given (decided in `output::emit`).
//!
//! The command is `$BMCCTL_PAGER` if set, else `$PAGER` if set, else
//! `less -FRX` (quit if one screen, keep colours, do not clear the screen).
//! An empty value or exactly `cat` disables paging (`cat -n` is a pager
//! like any other). The value is split on whitespace (no shell is
//! involved); if the pager cannot be started the text is printed directly.
//!
//! While the pager runs bmcctl ignores SIGINT and SIGQUIT and waits for it:
//! the pager is in the same process group and gets Ctrl-C itself (`less`
//! handles it), so bmcctl neither dies under it nor leaves it orphaned on
//! the terminal. The pager starts with the dispositions bmcctl started with.
//!
//! A pager that exits with a non-zero status or is killed by a signal other
//! than SIGINT, SIGQUIT or SIGPIPE (the user quitting) is reported: the
//! output may not have been shown ([`Paged::Failed`]).

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};

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
    if argv.is_empty() || argv == ["cat"] {
        return None;
    }
    Some(argv)
}

/// Whether `text` has more lines than the terminal on stdout shows at once
/// (a pager for a screenful only gets in the way; `less -F` would quit at
/// once anyway, but not on every terminal type). Unknown size: assume 24.
pub fn taller_than_terminal(text: &str) -> bool {
    let rows = terminal_rows().unwrap_or(24);
    text.lines().count() >= usize::from(rows.max(2)) - 1
}

/// Rows of the screen: `$LINES` if it is a number, else the terminal's
/// (stdout), else 24.
pub fn screen_rows() -> u16 {
    std::env::var("LINES")
        .ok()
        .and_then(|l| l.trim().parse::<u16>().ok())
        .filter(|&r| r > 0)
        .or_else(terminal_rows)
        .unwrap_or(24)
}

fn terminal_rows() -> Option<u16> {
    window_size(libc::STDOUT_FILENO).map(|(rows, _)| rows)
}

/// Rows and columns of the terminal on `fd`, if it is one and knows its
/// size (both non-zero).
pub fn window_size(fd: libc::c_int) -> Option<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ fills a plain `winsize` struct we own; a failing
    // ioctl leaves it untouched and returns -1.
    let r = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_row > 0 && ws.ws_col > 0).then_some((ws.ws_row, ws.ws_col))
}

/// How paging went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Paged {
    /// The pager could not be started: the caller prints the text itself.
    NotStarted,
    /// The pager ran and ended normally (or the user quit it).
    Shown,
    /// The pager failed; the message says how (`pager 'false' exited with
    /// status 1`).
    Failed(String),
}

/// Feed `text` to the pager and wait for it, with SIGINT and SIGQUIT
/// ignored meanwhile.
pub fn page(argv: &[String], text: &str) -> Paged {
    let Some(mut p) = Pager::spawn(argv) else {
        return Paged::NotStarted;
    };
    // A write error is the pager ending before reading everything (broken
    // pipe); its exit status tells whether that was a failure.
    let _ = p.write(text);
    p.finish()
}

/// A running pager fed piece by piece (`log list`): SIGINT and SIGQUIT are
/// ignored until [`Pager::finish`].
pub struct Pager {
    child: Child,
    stdin: Option<ChildStdin>,
    exited: Option<ExitStatus>,
    name: String,
    _ignored: IgnoreInterrupts,
}

impl Pager {
    /// Start the pager, or `None` if it cannot be started.
    pub fn spawn(argv: &[String]) -> Option<Pager> {
        let (prog, args) = argv.split_first()?;
        let ignored = IgnoreInterrupts::new();
        let for_child = ignored.child_actions();
        let mut cmd = Command::new(prog);
        cmd.args(args).stdin(Stdio::piped());
        // SAFETY: the closure runs in the child between fork and exec and
        // only calls signal(), which is async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                for &(sig, action) in &for_child {
                    libc::signal(sig, action);
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().ok()?;
        let stdin = child.stdin.take();
        Some(Pager {
            child,
            stdin,
            exited: None,
            name: argv.join(" "),
            _ignored: ignored,
        })
    }

    /// Write `text`; `false` once the pager is gone (broken pipe).
    pub fn write(&mut self, text: &str) -> bool {
        let ok = match self.stdin.as_mut() {
            Some(s) => s.write_all(text.as_bytes()).is_ok(),
            None => false,
        };
        if !ok {
            self.stdin = None;
        }
        ok
    }

    /// Wait until the pager has read everything written so far (it wants
    /// more): `true`; or until it has ended: `false`. A pager reads only
    /// what it shows, so an empty pipe is the sign it needs the next page;
    /// the pipe's fill is checked every 20 ms (FIONREAD; nothing else
    /// tells when a reader drains a pipe).
    pub fn wants_more(&mut self) -> bool {
        loop {
            if self.exited.is_none() {
                self.exited = self.child.try_wait().ok().flatten();
            }
            let Some(stdin) = self.stdin.as_ref().filter(|_| self.exited.is_none()) else {
                return false;
            };
            let mut unread: libc::c_int = 0;
            // SAFETY: FIONREAD stores the pipe's unread byte count in an
            // int we own.
            let r = unsafe { libc::ioctl(stdin.as_raw_fd(), libc::FIONREAD, &mut unread) };
            if r != 0 || unread == 0 {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Close the pipe and wait for the pager to end.
    pub fn finish(mut self) -> Paged {
        self.stdin = None;
        let status = match self.exited {
            Some(st) => Ok(st),
            None => self.child.wait(),
        };
        match status {
            Ok(st) => judge(&self.name, st),
            Err(e) => Paged::Failed(format!("cannot wait for pager '{}': {e}", self.name)),
        }
    }
}

/// Whether the pager's end is a failure to report.
fn judge(name: &str, st: ExitStatus) -> Paged {
    if st.success() {
        return Paged::Shown;
    }
    if let Some(code) = st.code() {
        return Paged::Failed(format!("pager '{name}' exited with status {code}"));
    }
    match st.signal() {
        Some(libc::SIGINT | libc::SIGQUIT | libc::SIGPIPE) | None => Paged::Shown,
        Some(sig) => Paged::Failed(format!("pager '{name}' was killed by signal {sig}")),
    }
}

/// SIGINT and SIGQUIT ignored until dropped; the previous dispositions are
/// put back then.
struct IgnoreInterrupts {
    previous: Vec<(libc::c_int, libc::sighandler_t)>,
}

impl IgnoreInterrupts {
    fn new() -> Self {
        let mut previous = Vec::new();
        for sig in [libc::SIGINT, libc::SIGQUIT] {
            // SAFETY: signal() with SIG_IGN installs no handler code.
            let old = unsafe { libc::signal(sig, libc::SIG_IGN) };
            if old != libc::SIG_ERR {
                previous.push((sig, old));
            }
        }
        IgnoreInterrupts { previous }
    }

    /// What the pager gets: ignored if bmcctl started with it ignored,
    /// else the default (exec resets handlers to the default anyway).
    fn child_actions(&self) -> Vec<(libc::c_int, libc::sighandler_t)> {
        self.previous
            .iter()
            .map(|&(sig, old)| {
                let a = if old == libc::SIG_IGN {
                    libc::SIG_IGN
                } else {
                    libc::SIG_DFL
                };
                (sig, a)
            })
            .collect()
    }
}

impl Drop for IgnoreInterrupts {
    fn drop(&mut self) {
        for &(sig, old) in &self.previous {
            // SAFETY: puts back the disposition signal() returned.
            unsafe {
                libc::signal(sig, old);
            }
        }
    }
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
        assert_eq!(choose(None, Some(" cat ")), None);
        assert_eq!(choose(None, Some("cat -n")), v(&["cat", "-n"]));
        assert_eq!(choose(Some("cat -A"), None), v(&["cat", "-A"]));
    }

    #[test]
    fn a_missing_pager_is_reported_as_not_started() {
        assert_eq!(
            page(&["/nonexistent/bmcctl-pager".to_owned()], "x"),
            Paged::NotStarted
        );
        assert_eq!(page(&[], "x"), Paged::NotStarted);
    }

    #[test]
    fn a_pager_that_quits_early_is_fine() {
        let big = "line\n".repeat(100_000);
        assert_eq!(page(&["true".to_owned()], &big), Paged::Shown);
    }

    #[test]
    fn a_failing_pager_is_a_failure() {
        assert_eq!(
            page(&["false".to_owned()], "x\n"),
            Paged::Failed("pager 'false' exited with status 1".into())
        );
        let sig = |s: i32| ExitStatus::from_raw(s);
        assert_eq!(judge("less", sig(libc::SIGINT)), Paged::Shown);
        assert_eq!(judge("less", sig(libc::SIGPIPE)), Paged::Shown);
        assert_eq!(
            judge("less", sig(libc::SIGKILL)),
            Paged::Failed("pager 'less' was killed by signal 9".into())
        );
        assert_eq!(judge("less", sig(0)), Paged::Shown);
    }
}
