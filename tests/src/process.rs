//! Running a command with captured output and a deadline.

use std::fmt;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The outcome of a finished command.
#[derive(Debug, Clone)]
pub struct Run {
    /// What was run, for messages.
    pub cmdline: String,
    /// Exit code; -1 when killed by a signal.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` exited {} after {:?}\n--- stdout ---\n{}--- stderr ---\n{}--------------",
            self.cmdline, self.code, self.elapsed, self.stdout, self.stderr
        )
    }
}

impl Run {
    /// Assert the exit code, showing everything when it differs.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(self.code, code, "unexpected exit code:\n{self}");
        self
    }

    /// Assert success.
    #[track_caller]
    pub fn success(&self) -> &Run {
        self.expect_code(0)
    }

    /// Assert that stdout contains `s`.
    #[track_caller]
    pub fn stdout_has(&self, s: &str) -> &Run {
        assert!(self.stdout.contains(s), "stdout lacks {s:?}:\n{self}");
        self
    }

    /// Assert that stderr contains `s`.
    #[track_caller]
    pub fn stderr_has(&self, s: &str) -> &Run {
        assert!(self.stderr.contains(s), "stderr lacks {s:?}:\n{self}");
        self
    }

    /// Stdout parsed as exactly one JSON document.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{self}"))
    }
}

/// Run `cmd` with stdin closed (no terminal) and stdout/stderr captured;
/// kill it and panic if it has not finished within `timeout`.
pub fn run(cmd: &mut Command, timeout: Duration) -> Run {
    run_inner(cmd, None, timeout)
}

/// Like [`run`], with `stdin` (e.g. a file, whose descriptor gdbus can
/// pass as `@h 0`).
pub fn run_stdin(cmd: &mut Command, stdin: Stdio, timeout: Duration) -> Run {
    cmd.stdin(stdin);
    run_inner(cmd, Some(Input::Given), timeout)
}

/// Like [`run`], with `input` on stdin (a pipe, closed after `input`).
pub fn run_input(cmd: &mut Command, input: &[u8], timeout: Duration) -> Run {
    run_inner(cmd, Some(Input::Bytes(input.to_vec())), timeout)
}

enum Input {
    /// Written to a pipe on stdin.
    Bytes(Vec<u8>),
    /// stdin was set by the caller.
    Given,
}

fn run_inner(cmd: &mut Command, input: Option<Input>, timeout: Duration) -> Run {
    let cmdline = format!("{cmd:?}");
    match input {
        Some(Input::Bytes(_)) => {
            cmd.stdin(Stdio::piped());
        }
        Some(Input::Given) => {}
        None => {
            cmd.stdin(Stdio::null());
        }
    }
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let input = match input {
        Some(Input::Bytes(b)) => Some(b),
        _ => None,
    };
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmdline}: {e}"));
    if let (Some(mut stdin), Some(input)) = (child.stdin.take(), input) {
        // A writer thread: the command may exit without reading it all.
        std::thread::spawn(move || {
            use std::io::Write;
            let _ = stdin.write_all(&input);
        });
    }
    let reader = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = child.stdout.take().map(|s| reader(Box::new(s)));
    let err = child.stderr.take().map(|s| reader(Box::new(s)));
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) if start.elapsed() < timeout => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) | Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let elapsed = start.elapsed();
    let stdout = out.and_then(|h| h.join().ok()).unwrap_or_default();
    let stderr = err.and_then(|h| h.join().ok()).unwrap_or_default();
    let r = Run {
        cmdline,
        code: status.and_then(|s| s.code()).unwrap_or(-1),
        stdout,
        stderr,
        elapsed,
    };
    if status.is_none() {
        panic!("killed after {timeout:?}:\n{r}");
    }
    r
}

/// Put SIGHUP, SIGINT and SIGQUIT back to their default action in this
/// test process, and so in every child it starts (an action of "ignore"
/// survives fork and exec). A CI runner that starts the suite as a
/// background job of a non-interactive shell hands it these signals
/// ignored; bmcctl then keeps ignoring them, as a background job should,
/// and every test of Ctrl-C, SIGHUP or SIGQUIT at a terminal fails. Called
/// by the harness before it starts anything (binary lookups, buses,
/// terminals); idempotent.
pub fn default_signal_actions() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for sig in [libc::SIGHUP, libc::SIGINT, libc::SIGQUIT] {
            // SAFETY: signal(2) with SIG_DFL, no handler involved.
            unsafe {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
    });
}
