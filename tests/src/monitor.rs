//! A bus client that runs in the background (`gdbus monitor`, `busctl
//! monitor`), its output collected as it comes, so a test can wait for a
//! line it expects. Killed on drop.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub struct Monitor {
    child: Child,
    out: Arc<(Mutex<Vec<String>>, Condvar)>,
}

impl Monitor {
    /// Start `cmd` with stdout collected line by line (stderr too, into the
    /// same list, so start-up errors show).
    pub fn spawn(cmd: &mut Command) -> Monitor {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let out = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let pipes: Vec<Box<dyn std::io::Read + Send>> = vec![
            Box::new(child.stdout.take().expect("stdout is piped")),
            Box::new(child.stderr.take().expect("stderr is piped")),
        ];
        for pipe in pipes {
            let out = out.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    let (lines, cv) = &*out;
                    lines.lock().unwrap_or_else(|p| p.into_inner()).push(line);
                    cv.notify_all();
                }
            });
        }
        Monitor { child, out }
    }

    /// Every line so far.
    pub fn lines(&self) -> Vec<String> {
        self.out.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Wait until `pred` holds for the lines so far (woken by each new
    /// line), or panic naming `what` with the output.
    pub fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&[String]) -> bool) {
        if !self.holds_within(timeout, &pred) {
            panic!(
                "timed out after {timeout:?} waiting for {what}; output:\n{}",
                self.lines().join("\n")
            );
        }
    }

    /// Whether `pred` comes to hold for the lines within `timeout` (woken
    /// by each new line).
    pub fn holds_within(&self, timeout: Duration, pred: impl Fn(&[String]) -> bool) -> bool {
        let (lines, cv) = &*self.out;
        let deadline = Instant::now() + timeout;
        let mut guard = lines.lock().unwrap_or_else(|p| p.into_inner());
        while !pred(&guard) {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            guard = cv
                .wait_timeout(guard, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }

    /// Wait until a line contains `text`.
    pub fn wait_line(&self, text: &str, timeout: Duration) {
        self.wait_for(&format!("a line with {text:?}"), timeout, |l| {
            l.iter().any(|x| x.contains(text))
        });
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
