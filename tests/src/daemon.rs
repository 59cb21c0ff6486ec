//! The daemon under test: `bmcd` with a quick test configuration, its own
//! state directory and log, on a [`TestBus`].

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bmcd_api::zbus;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

use crate::bus::TestBus;
use crate::tmp::TempDir;
use crate::wait::{wait_until, POLL};

/// How long the daemon may take to own its name.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the daemon may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// `config/bmcd.json` with the timings shortened so that tests are quick,
/// re-authentication off (see `auth.reauthenticate`), and `state_dir` set
/// to `state_dir`.
pub fn test_config(state_dir: &Path) -> Value {
    let path = crate::workspace_root().join("config/bmcd.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut v: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    v["state_dir"] = json!(state_dir);
    let p = &mut v["platform"];
    p["power_on_delay_ms"] = json!(300);
    p["host_shutdown_ms"] = json!(500);
    p["force_off_hold_ms"] = json!(800);
    if let Some(sensors) = p["sensors"].as_array_mut() {
        for s in sensors {
            // Fast thermal response: temperature steps settle in seconds.
            s["tau_s"] = json!(1.5);
        }
    }
    let c = &mut v["chassis"];
    c["button_press_ms"] = json!(50);
    c["reset_pulse_ms"] = json!(50);
    c["cycle_off_ms"] = json!(200);
    c["power_on_timeout_ms"] = json!(5000);
    c["force_off_timeout_ms"] = json!(5000);
    c["graceful_off_timeout_s"] = json!(10);
    v["cooling"]["interval_ms"] = json!(200);
    // Tests run as root (Administrator) without PAM: no re-authentication
    // for sensitive calls, unless a test turns it back on.
    if v.get("auth").is_none() {
        v["auth"] = json!({});
    }
    v["auth"]["reauthenticate"] = json!(false);
    v["auth"]["failure_delay_ms"] = json!(100);
    v
}

/// How a daemon is started: `program ARGS... --config ...`. By default the
/// program is [`crate::bmcd_bin`] with no arguments before bmcd's own; a
/// cross-built bmcd runs through qemu-user
/// (`qemu-arm-static -L SYSROOT ... target/cross/armv7/bmcd`). Signals,
/// the process id and the bus credentials are the launcher's, which for
/// qemu-user are the guest's (one process).
#[derive(Clone, Debug)]
pub struct Launcher {
    pub program: PathBuf,
    pub args: Vec<OsString>,
}

impl Launcher {
    /// [`crate::bmcd_bin`], run directly.
    pub fn native() -> Launcher {
        Launcher {
            program: crate::bmcd_bin(),
            args: Vec::new(),
        }
    }
}

/// A running `bmcd`; stopped with SIGTERM (then SIGKILL) on drop.
pub struct Daemon {
    dir: TempDir,
    config: PathBuf,
    state_dir: PathBuf,
    log: PathBuf,
    address: String,
    conn: zbus::blocking::Connection,
    child: Mutex<Option<Child>>,
    /// Extra environment variables of the daemon process.
    env: Vec<(String, String)>,
    launcher: Launcher,
    /// The pam_wrapper directory of the running daemon and its pid.
    pam_dir: Mutex<Option<(u32, PathBuf)>>,
}

impl Daemon {
    /// Start with [`test_config`].
    pub fn start(bus: &TestBus) -> Daemon {
        Daemon::start_with(bus, |_| {})
    }

    /// Start with [`test_config`] changed by `tweak`.
    pub fn start_with(bus: &TestBus, tweak: impl FnOnce(&mut Value)) -> Daemon {
        let dir = TempDir::new("bmcd");
        let mut cfg = test_config(&dir.join("state"));
        tweak(&mut cfg);
        Daemon::start_in(bus, dir, cfg, Vec::new(), Launcher::native())
    }

    /// Start with a complete configuration of the test's own (its
    /// `state_dir` is replaced by the daemon's temporary one).
    pub fn start_config(bus: &TestBus, cfg: Value) -> Daemon {
        Daemon::start_in(
            bus,
            TempDir::new("bmcd"),
            cfg,
            Vec::new(),
            Launcher::native(),
        )
    }

    /// Like [`Daemon::start_config`], with extra environment variables for
    /// the daemon process (e.g. pam_wrapper's, see [`crate::security::Pam::env`]);
    /// they apply to every (re)start.
    pub fn start_config_env(bus: &TestBus, cfg: Value, env: Vec<(String, String)>) -> Daemon {
        Daemon::start_in(bus, TempDir::new("bmcd"), cfg, env, Launcher::native())
    }

    /// Like [`Daemon::start_config_env`], started through `launcher` (e.g.
    /// an ARM bmcd under qemu-user); the variables in `env` are set on the
    /// launcher's process (qemu-user hands its environment to the guest).
    pub fn start_launched(
        bus: &TestBus,
        cfg: Value,
        env: Vec<(String, String)>,
        launcher: Launcher,
    ) -> Daemon {
        Daemon::start_in(bus, TempDir::new("bmcd"), cfg, env, launcher)
    }

    fn start_in(
        bus: &TestBus,
        dir: TempDir,
        mut cfg: Value,
        env: Vec<(String, String)>,
        launcher: Launcher,
    ) -> Daemon {
        let state_dir = dir.join("state");
        cfg["state_dir"] = json!(state_dir);
        let config = dir.join("bmcd.json");
        std::fs::write(
            &config,
            serde_json::to_string_pretty(&cfg).expect("serialise config"),
        )
        .expect("write config");
        let d = Daemon {
            log: dir.join("bmcd.log"),
            dir,
            config,
            state_dir,
            address: bus.address().to_owned(),
            conn: bus.connect(),
            child: Mutex::new(None),
            env,
            launcher,
            pam_dir: Mutex::new(None),
        };
        d.start_again();
        d
    }

    fn child(&self) -> MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Start the daemon again after [`Daemon::stop`] or [`Daemon::kill9`],
    /// with the same configuration and state directory, and wait until it
    /// owns `org.bmcd`.
    pub fn start_again(&self) {
        let pam_start;
        {
            let mut child = self.child();
            assert!(child.is_none(), "bmcd is already running");
            let mut log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.log)
                .expect("open daemon log");
            let _ = writeln!(log, "===== harness: starting bmcd =====");
            // Held until the daemon owns its name (see `PamWrapperStart`).
            pam_start = self.under_pam_wrapper().then(PamWrapperStart::lock);
            let c = Command::new(&self.launcher.program)
                .args(&self.launcher.args)
                .arg("--config")
                .arg(&self.config)
                .arg("--bus")
                .arg(&self.address)
                .arg("--state-dir")
                .arg(&self.state_dir)
                .arg("--log")
                .arg("stderr")
                .arg("--verbose")
                .envs(self.env.iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log fd"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start bmcd: {e}"));
            *child = Some(c);
        }
        self.wait_ready();
        if let Some(lock) = pam_start {
            let pid = self.pid();
            let dir = lock.check_private_dir(pid, || self.log_tail(40));
            *self.pam_dir.lock().unwrap_or_else(|p| p.into_inner()) = Some((pid, dir));
        }
    }

    /// Remove the pam_wrapper directory of the daemon that has just exited,
    /// if it is still there and still names that process. pam_wrapper's
    /// destructor removes it on a normal exit, but not after SIGKILL, nor
    /// under qemu-user for a 32-bit ARM guest: its non-LFS `readdir` gets
    /// EOVERFLOW from the host's 64-bit ext4 directory offsets, so the
    /// directory looks empty and its `rmdir` fails (ENOTEMPTY).
    fn remove_pam_dir(&self) {
        let taken = self
            .pam_dir
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some((pid, dir)) = taken {
            if pam_wrapper_dir_of(pid).as_deref() == Some(dir.as_path()) {
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
    }

    /// Whether the daemon runs under pam_wrapper (`LD_PRELOAD` of it).
    fn under_pam_wrapper(&self) -> bool {
        self.env
            .iter()
            .any(|(k, v)| k == "LD_PRELOAD" && v.contains("pam_wrapper"))
    }

    /// Wait until `org.bmcd` is owned by our process.
    fn wait_ready(&self) {
        let dbus = zbus::blocking::fdo::DBusProxy::new(&self.conn).expect("DBusProxy");
        let pid = self.pid();
        let start = Instant::now();
        loop {
            if let Some(code) = self.exit_code_now() {
                panic!(
                    "bmcd exited with {code:?} before owning {}; log:\n{}",
                    bmcd_api::BUS_NAME,
                    self.log_tail(40)
                );
            }
            let owner = dbus
                .get_connection_unix_process_id(bmcd_api::BUS_NAME.try_into().expect("bus name"))
                .ok();
            if owner == Some(pid) {
                return;
            }
            if start.elapsed() > READY_TIMEOUT {
                panic!(
                    "bmcd did not own {} within {READY_TIMEOUT:?}; log:\n{}",
                    bmcd_api::BUS_NAME,
                    self.log_tail(40)
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// `Some(code)` if the process has exited (code -1 = killed by a
    /// signal), `None` if it runs.
    fn exit_code_now(&self) -> Option<i32> {
        let mut child = self.child();
        match child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(Some(st))) => Some(st.code().unwrap_or(-1)),
            Some(Ok(None)) => None,
            Some(Err(_)) | None => Some(-1),
        }
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child()
            .as_ref()
            .map(Child::id)
            .expect("bmcd is not running")
    }

    /// Whether the process is still running.
    pub fn alive(&self) -> bool {
        self.exit_code_now().is_none()
    }

    /// The whole log (stderr) of every run of this daemon.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Its state directory (`state.json` lives there).
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Its configuration file.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// Its temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn signal(&self, sig: Signal) {
        // Our own child's pid, not reaped yet (we hold the Child), so it
        // cannot have been reused. An error (it has exited) is for the
        // caller's wait to see.
        let pid = Pid::from_raw(i32::try_from(self.pid()).expect("pid fits a pid_t"));
        let _ = kill(pid, sig);
    }

    /// Wait until nobody owns `org.bmcd` (the bus has seen the exit).
    fn wait_name_released(&self) {
        let dbus = zbus::blocking::fdo::DBusProxy::new(&self.conn).expect("DBusProxy");
        wait_until("org.bmcd to be released", READY_TIMEOUT, || {
            !dbus
                .name_has_owner(bmcd_api::BUS_NAME.try_into().expect("bus name"))
                .unwrap_or(true)
        });
    }

    /// Reap the child, with a deadline; returns its exit code (-1 = signal).
    fn reap(&self, timeout: Duration) -> Option<i32> {
        let start = Instant::now();
        loop {
            if let Some(code) = self.exit_code_now() {
                *self.child() = None;
                self.remove_pam_dir();
                return Some(code);
            }
            if start.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Send signal `sig` (e.g. `libc::SIGHUP`) to the running daemon.
    pub fn send_signal(&self, sig: i32) {
        self.signal(Signal::try_from(sig).unwrap_or_else(|e| panic!("signal {sig}: {e}")));
    }

    /// Wait up to `timeout` for the daemon to exit by itself and reap it;
    /// returns its exit code (-1 = killed by a signal), or `None` if it
    /// still runs. Unlike [`Daemon::stop`] it sends nothing and does not
    /// ask the bus, which may be gone.
    pub fn wait_exit(&self, timeout: Duration) -> Option<i32> {
        self.reap(timeout)
    }

    /// SIGTERM, wait for the exit and for the name to be released; returns
    /// the exit code (the daemon should exit 0).
    pub fn stop(&self) -> i32 {
        self.signal(Signal::SIGTERM);
        let code = self.reap(STOP_TIMEOUT).unwrap_or_else(|| {
            self.signal(Signal::SIGKILL);
            let _ = self.reap(STOP_TIMEOUT);
            panic!(
                "bmcd did not exit within {STOP_TIMEOUT:?} of SIGTERM; log:\n{}",
                self.log_tail(40)
            )
        });
        self.wait_name_released();
        code
    }

    /// SIGKILL (no chance to clean up), then wait for the name to go.
    pub fn kill9(&self) {
        self.signal(Signal::SIGKILL);
        let _ = self.reap(STOP_TIMEOUT);
        self.wait_name_released();
    }

    /// A clean stop (asserting exit code 0) and a start on the same state.
    pub fn restart(&self) {
        let code = self.stop();
        assert_eq!(
            code,
            0,
            "bmcd did not exit 0 on SIGTERM; log:\n{}",
            self.log_tail(40)
        );
        self.start_again();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // A failing test shows what the daemon said (cargo test prints a
        // failed test's captured output).
        if std::thread::panicking() {
            eprintln!(
                "----- bmcd log ({}) -----\n{}\n----- end of bmcd log -----",
                self.log.display(),
                self.log_tail(200)
            );
        }
        if self.child().is_none() {
            return;
        }
        self.signal(Signal::SIGTERM);
        if self.reap(STOP_TIMEOUT).is_none() {
            if let Some(c) = self.child().as_mut() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// Serializes the start of daemons under pam_wrapper, across the threads of
/// a test binary (a mutex) and across processes (`flock` on a file in
/// `/tmp`, which `scripts/run-sim` takes too).
///
/// Why: pam_wrapper (Debian's libpam-wrapper 1.1.4) gives each process a
/// directory `/tmp/pam.X` (the same length as `/etc/pam.d`, which it
/// patches into a private copy of libpam), choosing X by trying letters
/// with `lstat` and only later calling `mkdir`, whose `EEXIST` it logs and
/// ignores. Two processes that start together can thus pick the same
/// directory; when the first exits, its destructor deletes the directory,
/// and every later PAM transaction of the second fails
/// (`pam_start`: "PAM service failed", which bmcd reports as
/// `org.bmcd.Error.Unavailable`). Seen in CI under load in
/// `every_role_boundary_through_bmcctl`; reproduced outside bmcd with
/// 300 pairs of `sleep` under pam_wrapper started together: 30 collisions.
/// With starts serialized until the new process's directory holds its pid,
/// no two processes can pick the same letter.
struct PamWrapperStart {
    _file: Flock<std::fs::File>,
    _guard: MutexGuard<'static, ()>,
}

/// The lock file shared with `scripts/run-sim`.
pub const PAM_WRAPPER_LOCK: &str = "/tmp/bmcd-pam_wrapper-start.lock";

impl PamWrapperStart {
    fn lock() -> PamWrapperStart {
        static THREADS: Mutex<()> = Mutex::new(());
        let guard = THREADS.lock().unwrap_or_else(|p| p.into_inner());
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(PAM_WRAPPER_LOCK)
            .unwrap_or_else(|e| panic!("cannot open {PAM_WRAPPER_LOCK}: {e}"));
        // The lock is released when the file is closed (on drop).
        let mut file = file;
        let file = loop {
            match Flock::lock(file, FlockArg::LockExclusive) {
                Ok(locked) => break locked,
                Err((f, Errno::EINTR)) => file = f,
                Err((_, e)) => panic!("flock {PAM_WRAPPER_LOCK}: {e}"),
            }
        };
        PamWrapperStart {
            _file: file,
            _guard: guard,
        }
    }

    /// Assert that pam_wrapper gave `pid` a directory of its own: a
    /// `/tmp/pam.?` whose `pid` file names it (a shared directory names the
    /// other process). pam_wrapper sets it up in a library constructor,
    /// before `main`, so it is there once the daemon owns its name.
    fn check_private_dir(self, pid: u32, log: impl Fn() -> String) -> PathBuf {
        pam_wrapper_dir_of(pid).unwrap_or_else(|| {
            panic!(
                "no pam_wrapper directory /tmp/pam.?/pid holds bmcd's pid {pid}: another \
                 process shares its directory (one that started under pam_wrapper without \
                 taking {PAM_WRAPPER_LOCK}?); pam_wrapper directories:\n{}log:\n{}",
                pam_wrapper_dirs_report(),
                log()
            )
        })
    }
}

/// Every `/tmp/pam.?` with the pid in it and that process's executable.
fn pam_wrapper_dirs_report() -> String {
    let mut out = String::new();
    for e in std::fs::read_dir("/tmp").into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.len() != "pam.X".len() || !name.starts_with("pam.") {
            continue;
        }
        let pid = std::fs::read_to_string(e.path().join("pid")).unwrap_or_default();
        let exe = std::fs::read_link(format!("/proc/{}/exe", pid.trim()))
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "(no such process)".into());
        out.push_str(&format!("  /tmp/{name}: pid {} {exe}\n", pid.trim()));
    }
    out
}

/// The pam_wrapper directory (`/tmp/pam.?`) whose `pid` file holds `pid`.
pub fn pam_wrapper_dir_of(pid: u32) -> Option<PathBuf> {
    std::fs::read_dir("/tmp").ok()?.flatten().find_map(|e| {
        let name = e.file_name();
        let name = name.to_str()?;
        if name.len() != "pam.X".len() || !name.starts_with("pam.") {
            return None;
        }
        let text = std::fs::read_to_string(e.path().join("pid")).ok()?;
        (text.trim().parse::<u32>().ok()? == pid).then(|| e.path())
    })
}
