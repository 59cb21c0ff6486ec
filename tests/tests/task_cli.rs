//! bmcctl and tasks on the real bus (issue 7): power commands wait for
//! their task through signals, `task list|show|wait|cancel`, `--no-wait`,
//! `--json`, one line per phase without a terminal, cancel by the owner
//! (exit 7) and of a finished task (refused), Ctrl-C stops the
//! waiting and not the task, and bmcctl ends at once when bmcd dies while it
//! waits.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bmcd_tests::bmcd_api::{PowerState, TaskProxyBlocking};
use bmcd_tests::zbus::proxy::CacheProperties;
use bmcd_tests::{bmcctl_bin, no_options, wait_until, Env};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Bound on what should take well under a second; far below the 30 s
/// graceful timeout the slow tests use, so "at once" is told from "after
/// the transition".
const PROMPT: Duration = Duration::from_secs(5);
const T: Duration = Duration::from_secs(30);

/// A bmcctl running in the background, its output collected as it comes.
struct Bg {
    child: Child,
    out: Arc<Mutex<String>>,
    err: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

impl Bg {
    fn spawn(env: &Env, args: &[&str]) -> Bg {
        let mut child = Command::new(bmcctl_bin())
            .args(args)
            .env("BMCCTL_ADDRESS", env.address())
            .env_remove("PAGER")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn bmcctl");
        let out = Arc::new(Mutex::new(String::new()));
        let err = Arc::new(Mutex::new(String::new()));
        let mut readers = Vec::new();
        let collect = |r: Box<dyn Read + Send>, into: Arc<Mutex<String>>| {
            std::thread::spawn(move || {
                let mut r = r;
                let mut buf = [0u8; 512];
                while let Ok(n) = r.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if let Ok(mut s) = into.lock() {
                        s.push_str(&String::from_utf8_lossy(&buf[..n]));
                    }
                }
            })
        };
        if let Some(o) = child.stdout.take() {
            readers.push(collect(Box::new(o), out.clone()));
        }
        if let Some(e) = child.stderr.take() {
            readers.push(collect(Box::new(e), err.clone()));
        }
        Bg {
            child,
            out,
            err,
            readers,
        }
    }

    fn stderr(&self) -> String {
        self.err.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn stdout(&self) -> String {
        self.out.lock().map(|s| s.clone()).unwrap_or_default()
    }

    #[track_caller]
    fn wait_stderr(&self, what: &str) {
        wait_until(&format!("bmcctl to print {what:?} on stderr"), T, || {
            self.stderr().contains(what)
        });
    }

    fn signal(&self, sig: Signal) {
        let pid = i32::try_from(self.child.id()).expect("pid");
        // Our own child, not yet reaped: the pid is still its.
        kill(Pid::from_raw(pid), sig).expect("kill");
    }

    /// Wait for the exit (at most `within`); the status and the time taken.
    #[track_caller]
    fn exit(&mut self, within: Duration) -> (ExitStatus, Duration) {
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                for r in self.readers.drain(..) {
                    let _ = r.join();
                }
                return (st, start.elapsed());
            }
            if start.elapsed() > within {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "bmcctl still runs after {within:?}\n--- stdout ---\n{}--- stderr ---\n{}",
                    self.stdout(),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The number after the first `task ` in `text`.
#[track_caller]
fn task_number(text: &str) -> u64 {
    let at = text
        .find("task ")
        .unwrap_or_else(|| panic!("no task in {text:?}"))
        + 5;
    let digits: String = text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("no task number in {text:?}"))
}

/// A host that is on and ignores graceful shutdown requests: a graceful
/// power off stays in its `Graceful` phase for its whole timeout.
/// `bmcctl chassis power off` (graceful, 30 s) in the background, once it
/// shows the Graceful phase, and its task number.
fn graceful_off_in_background(env: &Env) -> (Bg, u64) {
    let b = Bg::spawn(
        env,
        &[
            "--yes",
            "chassis",
            "power",
            "off",
            "--graceful-timeout",
            "30",
        ],
    );
    b.wait_stderr("Graceful");
    let id = task_number(&b.stderr());
    (b, id)
}

fn on_and_unresponsive(env: &Env) {
    env.bmcctl(&["chassis", "power", "on"]).success();
    env.sim()
        .set_host_responsive(false, no_options())
        .expect("SetHostResponsive");
}

#[test]
fn power_on_waits_then_task_list_show_wait_cancel() {
    let env = Env::new();

    // Waits by default, one line per phase on stderr (no terminal).
    let r = env.bmcctl(&["chassis", "power", "on"]);
    r.success().stdout_has("Power is On.");
    assert_eq!(env.chassis().power_state().unwrap(), PowerState::On);
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert!(!lines.is_empty(), "no progress lines:\n{r}");
    let id = task_number(&r.stderr);
    let prefix = format!("task {id} (PowerOn): ");
    let mut phases: Vec<&str> = Vec::new();
    for l in &lines {
        let rest = l
            .strip_prefix(prefix.as_str())
            .unwrap_or_else(|| panic!("unexpected stderr line {l:?}:\n{r}"));
        let phase = rest.split(' ').next().unwrap_or("");
        assert!(!phases.contains(&phase), "phase {phase} twice:\n{r}");
        phases.push(phase);
    }
    assert_eq!(phases.last(), Some(&"WaitPowerGood"), "{r}");

    // list: a table, oldest first; --json: an array of the same.
    let r = env.bmcctl(&["task", "list"]);
    r.success()
        .stdout_has("ID")
        .stdout_has("KIND")
        .stdout_has("PowerOn")
        .stdout_has("Completed");
    env.bmcctl(&["chassis", "power", "on"]).success();
    let v = env.bmcctl(&["task", "list", "--json"]).success().json();
    let ids: Vec<u64> = v
        .as_array()
        .expect("an array")
        .iter()
        .filter_map(|t| t["Id"].as_u64())
        .collect();
    assert!(ids.len() >= 2 && ids.windows(2).all(|w| w[0] < w[1]), "{v}");
    assert!(ids.contains(&id), "{v}");

    // show: every property, by number or by path.
    env.bmcctl(&["task", "show", &id.to_string()])
        .success()
        .stdout_has("Kind:")
        .stdout_has("PowerOn")
        .stdout_has("State:")
        .stdout_has("Completed")
        .stdout_has("Owner uid:");
    let path = format!("/org/bmcd/tasks/{id}");
    let v = env
        .bmcctl(&["task", "show", &path, "--json"])
        .success()
        .json();
    assert_eq!(v["Id"], id, "{v}");
    assert_eq!(v["Path"], path.as_str(), "{v}");
    assert_eq!(v["State"], "Completed", "{v}");
    assert_eq!(v["Progress"], 100, "{v}");
    assert!(v["Error"].is_null(), "{v}");
    assert!(
        v["StartTime"].is_string() && v["EndTime"].is_string(),
        "{v}"
    );
    for key in [
        "Kind",
        "Phase",
        "Message",
        "Messages",
        "LastProgressTime",
        "Cancellable",
        "OwnerUid",
        "Result",
    ] {
        assert!(v.get(key).is_some(), "{key} missing: {v}");
    }

    // wait on a finished task: its outcome at once.
    env.bmcctl(&["task", "wait", &id.to_string()])
        .success()
        .stdout_has("completed");
    let v = env
        .bmcctl(&["--json", "task", "wait", &id.to_string()])
        .success()
        .json();
    assert_eq!(v["State"], "Completed", "{v}");

    // cancel of a finished task: refused, clearly.
    env.bmcctl(&["task", "cancel", &id.to_string()])
        .expect_code(1)
        .stderr_has(&format!("task {id} has already finished (Completed)"));

    // Unknown and malformed ids.
    env.bmcctl(&["task", "show", "999"])
        .expect_code(4)
        .stderr_has("no task 999");
    env.bmcctl(&["task", "wait", "999"]).expect_code(4);
    env.bmcctl(&["task", "show", "x"]).expect_code(2);
}

#[test]
fn json_is_one_final_document_and_no_wait_prints_the_id() {
    let env = Env::new();
    let r = env.bmcctl(&["--json", "chassis", "power", "on"]);
    let v = r.success().json();
    assert!(r.stderr.is_empty(), "progress with --json:\n{r}");
    assert_eq!(v["State"], "Completed", "{v}");
    assert_eq!(v["Kind"], "PowerOn", "{v}");
    assert_eq!(v["PowerState"], "On", "{v}");
    assert_eq!(v["Action"], "On", "{v}");

    // --no-wait: the id (alone with -q), and Id and Path in JSON.
    let r = env.bmcctl(&[
        "-q",
        "--yes",
        "chassis",
        "power",
        "off",
        "--force",
        "--no-wait",
    ]);
    r.success();
    let id: u64 = r
        .stdout
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("not an id:\n{r}"));
    let v = env
        .bmcctl(&["--json", "task", "show", &id.to_string()])
        .success()
        .json();
    assert_eq!(v["Kind"], "PowerOff", "{v}");
    let v = env
        .bmcctl(&["--json", "task", "wait", &id.to_string()])
        .success()
        .json();
    assert_eq!(v["State"], "Completed", "{v}");
    assert_eq!(env.chassis().power_state().unwrap(), PowerState::Off);

    let v = env
        .bmcctl(&["--json", "chassis", "power", "on", "--no-wait"])
        .success()
        .json();
    let id = v["Id"].as_u64().unwrap_or_else(|| panic!("no Id: {v}"));
    assert_eq!(v["Path"], format!("/org/bmcd/tasks/{id}"), "{v}");
    assert_eq!(v["Waited"], false, "{v}");
    env.bmcctl(&["task", "wait", &format!("/org/bmcd/tasks/{id}")])
        .success();
}

#[test]
fn ctrl_c_stops_the_waiting_not_the_task_and_bmcd_dying_ends_it() {
    let env = Env::new();
    on_and_unresponsive(&env);

    // Ctrl-C while the graceful phase runs: exit 130 at once, with advice.
    let (mut b, id) = graceful_off_in_background(&env);
    b.signal(Signal::SIGINT);
    let (st, took) = b.exit(PROMPT);
    assert_eq!(st.code(), Some(130), "{}", b.stderr());
    assert!(took < PROMPT);
    assert!(
        b.stderr().contains(&format!(
            "still running: wait again with `bmcctl task wait {id}`, or cancel with \
             `bmcctl task cancel {id}`"
        )),
        "{}",
        b.stderr()
    );
    // The task goes on.
    let v = env
        .bmcctl(&["--json", "task", "show", &id.to_string()])
        .success()
        .json();
    assert_eq!(v["State"], "Running", "{v}");
    assert_eq!(v["Phase"], "Graceful", "{v}");

    // bmcd killed while `task wait` waits: bmcctl says so and exits 1 at once.
    let mut w = Bg::spawn(&env, &["task", "wait", &id.to_string()]);
    w.wait_stderr("Graceful");
    env.daemon.kill9();
    let (st, _) = w.exit(PROMPT);
    assert_eq!(st.code(), Some(1), "{}", w.stderr());
    assert!(
        w.stderr()
            .contains(&format!("bmcd stopped while waiting for task {id}")),
        "{}",
        w.stderr()
    );

    // Started again, bmcd reports the task Interrupted: exit 8.
    env.daemon.start_again();
    let r = env.bmcctl(&["task", "wait", &id.to_string()]);
    r.expect_code(8).stderr_has("interrupted");
}

#[test]
fn cancel_by_its_owner_ends_the_wait_with_exit_7() {
    let env = Env::new();
    on_and_unresponsive(&env);
    let (mut b, id) = graceful_off_in_background(&env);
    // A graceful off may be cancelled during its wait for the host.
    let task = TaskProxyBlocking::builder(env.conn())
        .path(bmcd_tests::bmcd_api::task_path(id))
        .and_then(|p| p.cache_properties(CacheProperties::No).build())
        .expect("task proxy");
    wait_until("the task to be cancellable", T, || {
        task.cancellable().unwrap_or(false)
    });
    env.bmcctl(&["task", "cancel", &id.to_string()])
        .success()
        .stdout_has(&format!("Cancel of task {id} requested"));
    let (st, _) = b.exit(PROMPT);
    assert_eq!(st.code(), Some(7), "{}", b.stderr());
    assert!(b.stderr().contains("was cancelled"), "{}", b.stderr());

    // Waiting again: the same outcome; --json: the task and the error.
    env.bmcctl(&["task", "wait", &id.to_string()])
        .expect_code(7)
        .stderr_has("org.bmcd.Error.Cancelled");
    let r = env.bmcctl(&["--json", "task", "wait", &id.to_string()]);
    let v = r.expect_code(7).json();
    assert_eq!(v["State"], "Cancelled", "{v}");
    assert_eq!(v["error"]["exit_code"], 7, "{v}");
    // Once finished, cancel is refused.
    env.bmcctl(&["task", "cancel", &id.to_string()])
        .expect_code(1)
        .stderr_has(&format!("task {id} has already finished (Cancelled)"));
}
