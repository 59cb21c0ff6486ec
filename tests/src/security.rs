//! Fixtures of the security tests (`tests/tests/security_*.rs`):
//!
//! - [`Pam`]: PAM through `pam_wrapper` + `pam_matrix` (Debian
//!   `libpam-wrapper`), so `Session1.Authenticate` checks passwords from a
//!   file of the test's own and never the machine's real accounts;
//! - [`Who`]: a caller of another uid and other groups, run with `setpriv`
//!   (the tests run as root, which `setpriv` needs);
//! - [`policy_with_test_groups`]: the shipped bus policy with its two group
//!   names replaced by groups that exist on every Debian system, so that
//!   nothing on the machine is created or changed;
//! - [`SecEnv`]: a daemon with the shipped re-authentication default (on),
//!   under pam_wrapper, on an open or a system-like bus;
//! - [`Pty`]: a command on a pseudo-terminal (`script`), for password
//!   prompts.
//!
//! # Roles without changing the machine
//!
//! The daemon's role groups come from its configuration
//! (`auth.admin_group`, `auth.operator_group`) and the bus policy is a copy
//! of `config/dbus/org.bmcd.conf` with `bmc-admin`/`bmc-operator` replaced,
//! so the tests point both at [`ADMIN_GROUP`] (`staff`) and
//! [`OPERATOR_GROUP`] (`users`), which Debian's base-passwd always has, and
//! give them to the test user (`nobody`, uid 65534) only in the process that
//! `setpriv --groups` starts. dbus-daemon (1.14, Linux ≥ 4.13) takes a
//! connection's groups from the socket (`SO_PEERGROUPS`) both for its
//! policy and for `GetConnectionCredentials`, so the group database is
//! never consulted for them and needs no entry.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::ops::Deref;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::sys::termios::{tcgetattr, LocalFlags};
use serde_json::{json, Value};

use crate::bus::{BusConfig, BusPolicy, TestBus};
use crate::daemon::{test_config, Daemon};
use crate::env::Env;
use crate::process::{run, run_input, Run};
use crate::tmp::TempDir;
use crate::wait::POLL;

/// Bound on any tool run by a security test.
const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

/// The pam_matrix module of Debian's `libpam-wrapper`.
pub const PAM_MATRIX: &str = "/usr/lib/x86_64-linux-gnu/pam_wrapper/pam_matrix.so";
/// The preload library of Debian's `libpam-wrapper`. A full path: if a bare
/// name were not found, ld.so would carry on without it and PAM would read
/// the machine's real `/etc/pam.d`.
pub const PAM_WRAPPER_LIB: &str = "/usr/lib/x86_64-linux-gnu/libpam_wrapper.so";
/// The PAM service bmcd uses (its default `auth.pam_service`).
pub const SERVICE: &str = "bmcd";

/// Group the daemon (config) and the bus policy (copy) treat as the admin
/// group in these tests.
pub const ADMIN_GROUP: &str = "staff";
/// Group treated as the operator group in these tests.
pub const OPERATOR_GROUP: &str = "users";
/// The unprivileged test user: `nobody`.
pub const TEST_UID: u32 = 65534;
pub const TEST_USER: &str = "nobody";

/// The pam_matrix database and PAM service directory of one daemon; the
/// files are removed on drop.
pub struct Pam {
    dir: TempDir,
    wrapper_lib: String,
}

impl Pam {
    /// A service `bmcd` that checks `auth` and `account` with pam_matrix
    /// against `entries` (user, password, service), and an empty `other`
    /// (any other service has no modules and fails).
    pub fn new(entries: &[(&str, &str, &str)]) -> Pam {
        for f in [PAM_MATRIX, PAM_WRAPPER_LIB] {
            assert!(
                Path::new(f).is_file(),
                "{f} is missing: apt-get install libpam-wrapper (scripts/deps does)"
            );
        }
        Pam::with_modules(entries, PAM_MATRIX, PAM_WRAPPER_LIB)
    }

    /// Like [`Pam::new`] with another pam_matrix module and pam_wrapper
    /// library, as the daemon sees them (e.g. the armhf ones, which an ARM
    /// bmcd under qemu-user finds in its sysroot); not checked here.
    pub fn with_modules(entries: &[(&str, &str, &str)], matrix: &str, wrapper_lib: &str) -> Pam {
        let dir = TempDir::new("pam");
        let services = dir.join("services");
        std::fs::create_dir_all(&services).expect("create PAM service dir");
        std::fs::write(
            services.join(SERVICE),
            format!("auth required {matrix}\naccount required {matrix}\n"),
        )
        .expect("write PAM service");
        std::fs::write(services.join("other"), "").expect("write PAM other");
        let mut db = String::new();
        for (user, password, service) in entries {
            db.push_str(&format!("{user}:{password}:{service}\n"));
        }
        std::fs::write(dir.join("passwd"), db).expect("write pam_matrix passwd");
        Pam {
            dir,
            wrapper_lib: wrapper_lib.to_owned(),
        }
    }

    /// The same users, all for the service `bmcd`.
    pub fn users(users: &[(&str, &str)]) -> Pam {
        let entries: Vec<(&str, &str, &str)> =
            users.iter().map(|(u, p)| (*u, *p, SERVICE)).collect();
        Pam::new(&entries)
    }

    /// The environment of a daemon that should use this database.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("LD_PRELOAD".into(), self.wrapper_lib.clone()),
            ("PAM_WRAPPER".into(), "1".into()),
            (
                "PAM_WRAPPER_SERVICE_DIR".into(),
                self.dir.join("services").display().to_string(),
            ),
            (
                "PAM_MATRIX_PASSWD".into(),
                self.dir.join("passwd").display().to_string(),
            ),
        ]
    }
}

/// The gid of group `name` (NSS, through the daemon's own lookup), or a
/// panic naming it.
pub fn gid_of(name: &str) -> u32 {
    bmcd::auth::identity::group_id(name).unwrap_or_else(|| {
        panic!("group '{name}' does not exist (Debian's base-passwd always has it)")
    })
}

/// The effective uid of the test process.
pub fn euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// Panic unless the tests run as root (they start callers of other uids
/// with `setpriv`, and the daemon must own `org.bmcd` on a system-like bus).
#[track_caller]
pub fn require_root() {
    assert_eq!(
        euid(),
        0,
        "the security tests run as root (CI does): they use setpriv to become other users"
    );
}

/// Who runs a client: a uid, its primary gid and supplementary groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Who {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    /// For messages: "root", "admin", "operator", "reader"…
    pub label: &'static str,
}

impl Who {
    /// The test process itself (root): no `setpriv`.
    pub fn root() -> Who {
        Who {
            uid: 0,
            gid: 0,
            groups: Vec::new(),
            label: "root",
        }
    }

    /// `nobody` with the admin group: Administrator.
    pub fn admin() -> Who {
        Who {
            uid: TEST_UID,
            gid: TEST_UID,
            groups: vec![gid_of(ADMIN_GROUP)],
            label: "admin (nobody + staff)",
        }
    }

    /// `nobody` with the operator group: Operator.
    pub fn operator() -> Who {
        Who {
            uid: TEST_UID,
            gid: TEST_UID,
            groups: vec![gid_of(OPERATOR_GROUP)],
            label: "operator (nobody + users)",
        }
    }

    /// `nobody` without supplementary groups: ReadOnly.
    pub fn reader() -> Who {
        Who {
            uid: TEST_UID,
            gid: TEST_UID,
            groups: Vec::new(),
            label: "reader (nobody)",
        }
    }

    /// Any uid (it need not exist) with its own gid and no groups.
    pub fn uid(uid: u32, label: &'static str) -> Who {
        Who {
            uid,
            gid: uid,
            groups: Vec::new(),
            label,
        }
    }

    /// A command running `program` as this caller.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        if self.uid == euid() && self.groups.is_empty() && self.gid == 0 {
            return Command::new(program);
        }
        let mut c = Command::new("setpriv");
        c.arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid));
        if self.groups.is_empty() {
            c.arg("--clear-groups");
        } else {
            let g: Vec<String> = self.groups.iter().map(u32::to_string).collect();
            c.arg(format!("--groups={}", g.join(",")));
        }
        c.arg("--").arg(program);
        c
    }
}

/// `config/dbus/org.bmcd.conf` with the group names `bmc-admin` and
/// `bmc-operator` replaced by [`ADMIN_GROUP`] and [`OPERATOR_GROUP`],
/// written to `dir`; everything else is the shipped text.
pub fn policy_with_test_groups(dir: &Path) -> PathBuf {
    let shipped = crate::workspace_root().join("config/dbus/org.bmcd.conf");
    let text = std::fs::read_to_string(&shipped)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", shipped.display()));
    for g in ["group=\"bmc-admin\"", "group=\"bmc-operator\""] {
        assert_eq!(
            text.matches(g).count(),
            1,
            "{} should have exactly one <policy {g}>",
            shipped.display()
        );
    }
    let text = text
        .replace("group=\"bmc-admin\"", &format!("group=\"{ADMIN_GROUP}\""))
        .replace(
            "group=\"bmc-operator\"",
            &format!("group=\"{OPERATOR_GROUP}\""),
        );
    let out = dir.join("org.bmcd.conf");
    std::fs::write(&out, text).expect("write policy copy");
    out
}

/// [`test_config`] with re-authentication at its shipped default (the key
/// is removed, so the daemon's default, on, applies), the test role groups,
/// a failure delay of 20 ms, then `tweak`.
pub fn auth_config(tweak: impl FnOnce(&mut Value)) -> Value {
    // The state directory is replaced by the daemon's own when it starts.
    let mut v = test_config(Path::new("/nonexistent/bmcd-state"));
    let auth = v["auth"].as_object_mut().expect("auth section");
    auth.remove("reauthenticate");
    auth.insert("admin_group".into(), json!(ADMIN_GROUP));
    auth.insert("operator_group".into(), json!(OPERATOR_GROUP));
    auth.insert("failure_delay_ms".into(), json!(20));
    tweak(&mut v);
    v
}

/// A daemon under pam_wrapper with [`auth_config`], its bus and PAM files.
/// Derefs to [`Env`] (proxies, waits, root's `bmcctl`/`busctl`).
pub struct SecEnv {
    // Drop order: the daemon stops before its PAM files go.
    env: Env,
    _pam: Pam,
}

impl Deref for SecEnv {
    type Target = Env;
    fn deref(&self) -> &Env {
        &self.env
    }
}

impl SecEnv {
    /// On an open bus (every call reaches the daemon, which decides alone).
    pub fn open(pam: Pam, tweak: impl FnOnce(&mut Value)) -> SecEnv {
        require_root();
        let bus = TestBus::new();
        SecEnv::start(bus, pam, tweak)
    }

    /// On a system-like bus with [`policy_with_test_groups`].
    pub fn system_like(pam: Pam, tweak: impl FnOnce(&mut Value)) -> SecEnv {
        require_root();
        let policy_dir = TempDir::new("policy");
        let policy = policy_with_test_groups(policy_dir.path());
        // TestBus copies the file into its own includedir.
        let bus = TestBus::start(&BusConfig {
            policy: BusPolicy::SystemLike {
                include: vec![policy],
            },
            extra: String::new(),
        });
        SecEnv::start(bus, pam, tweak)
    }

    fn start(bus: TestBus, pam: Pam, tweak: impl FnOnce(&mut Value)) -> SecEnv {
        let daemon = Daemon::start_config_env(&bus, auth_config(tweak), pam.env());
        SecEnv {
            env: Env::from_parts(bus, daemon),
            _pam: pam,
        }
    }

    /// `bmcctl ARGS` as `who`, with `stdin` piped in (closed stdin if
    /// `None`); never a terminal.
    pub fn bmcctl_as(&self, who: &Who, args: &[&str], stdin: Option<&str>) -> Run {
        let mut c = who.command(crate::bmcctl_bin());
        c.args(args)
            .env("BMCCTL_ADDRESS", self.address())
            .env_remove("PAGER")
            .env("NO_COLOR", "1");
        match stdin {
            Some(s) => run_input(&mut c, s.as_bytes(), TOOL_TIMEOUT),
            None => run(&mut c, TOOL_TIMEOUT),
        }
    }

    /// `busctl --address=<bus> ARGS` as `who`.
    pub fn busctl_as(&self, who: &Who, args: &[&str]) -> Run {
        let mut c = who.command("busctl");
        c.arg(format!("--address={}", self.address())).args(args);
        run(&mut c, TOOL_TIMEOUT)
    }

    /// `busctl call org.bmcd PATH IFACE METHOD [SIGNATURE ARGS…]` as `who`.
    pub fn busctl_call(
        &self,
        who: &Who,
        path: &str,
        iface: &str,
        method: &str,
        args: &[&str],
    ) -> Run {
        let mut all = vec!["call", bmcd_api::BUS_NAME, path, iface, method];
        all.extend_from_slice(args);
        self.busctl_as(who, &all)
    }

    /// `gdbus call` of `IFACE.METHOD` on `PATH` as `who`, with GVariant text
    /// arguments. gdbus names the D-Bus error on failure
    /// (`GDBus.Error:org.bmcd.Error.X: text`), which busctl does not.
    pub fn gdbus_call(&self, who: &Who, path: &str, method: &str, args: &[&str]) -> Run {
        let mut c = who.command("gdbus");
        c.arg("call")
            .arg("--address")
            .arg(self.address())
            .arg("--dest")
            .arg(bmcd_api::BUS_NAME)
            .arg("--object-path")
            .arg(path)
            .arg("--method")
            .arg(method)
            .args(args);
        // stdin is an empty regular file, so that `@h 0` passes a
        // descriptor bmcd accepts (it refuses pipes and devices such as
        // /dev/null) and reads as an empty, invalid image.
        let empty = self.env.daemon.dir().join("empty-stdin");
        std::fs::write(&empty, b"").unwrap_or_else(|e| panic!("{}: {e}", empty.display()));
        let stdin = std::fs::File::open(&empty).unwrap_or_else(|e| panic!("{e}"));
        crate::process::run_stdin(&mut c, stdin.into(), TOOL_TIMEOUT)
    }

    /// `Session1.Authenticate(password, {})` as `who`, through gdbus:
    /// `Ok(())` or the D-Bus error name (`org.bmcd.Error.X`) and text.
    pub fn authenticate_as(&self, who: &Who, password: &str) -> Result<(), (String, String)> {
        let r = self.gdbus_call(
            who,
            bmcd_api::ROOT_PATH,
            "org.bmcd.Session1.Authenticate",
            &[&gvariant_string(password), "{}"],
        );
        gdbus_result(&r)
    }
}

/// `s` as a GVariant text string literal.
pub fn gvariant_string(s: &str) -> String {
    let mut out = String::from("'");
    for c in s.chars() {
        if c == '\'' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// The outcome of a `gdbus call`: `Ok(())` on success, else the error name
/// and text from `GDBus.Error:NAME: TEXT`.
pub fn gdbus_result(r: &Run) -> Result<(), (String, String)> {
    if r.code == 0 {
        return Ok(());
    }
    let line = r
        .stderr
        .lines()
        .find_map(|l| l.split_once("GDBus.Error:").map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("gdbus failed without a D-Bus error name:\n{r}"));
    let (name, text) = line.split_once(": ").unwrap_or((line, ""));
    Err((name.trim().to_owned(), text.trim().to_owned()))
}

/// Quote `s` for `sh -c`.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A command on a new pseudo-terminal: `script -qfec CMD /dev/null`. What
/// the test writes goes to the terminal's input; everything the command
/// prints on the terminal is collected.
pub struct Pty {
    child: Child,
    stdin: Option<ChildStdin>,
    out: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
    cmdline: String,
}

impl Pty {
    /// Run `program ARGS` (with `env` added) on a pseudo-terminal.
    pub fn spawn(program: &Path, args: &[&str], env: &[(&str, &str)]) -> Pty {
        crate::process::default_signal_actions();
        let mut words = vec![sh_quote(&program.display().to_string())];
        words.extend(args.iter().map(|a| sh_quote(a)));
        let cmdline = words.join(" ");
        let mut c = Command::new("script");
        c.arg("-qfec")
            .arg(&cmdline)
            .arg("/dev/null")
            .env("SHELL", "/bin/sh")
            .env("TERM", "dumb")
            .env_remove("PAGER")
            .env("NO_COLOR", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run script (apt-get install bsdutils): {e}"));
        let out = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        let sources: Vec<Box<dyn Read + Send>> = vec![
            Box::new(child.stdout.take().expect("script stdout")),
            Box::new(child.stderr.take().expect("script stderr")),
        ];
        for mut src in sources {
            let out = out.clone();
            readers.push(std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                loop {
                    match src.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => out
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .extend_from_slice(&buf[..n]),
                    }
                }
            }));
        }
        Pty {
            stdin: child.stdin.take(),
            child,
            out,
            readers,
            cmdline,
        }
    }

    /// Everything the terminal showed so far.
    pub fn output(&self) -> String {
        let b = self.out.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&b).into_owned()
    }

    /// Wait until `text` has been shown `n` times in all.
    #[track_caller]
    pub fn wait_for(&self, text: &str, n: usize, timeout: Duration) {
        let start = Instant::now();
        loop {
            let out = self.output();
            if out.matches(text).count() >= n {
                return;
            }
            if start.elapsed() >= timeout {
                panic!(
                    "`{}`: {text:?} not shown {n} time(s) within {timeout:?}; terminal:\n{out}",
                    self.cmdline
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Wait for the `n`th prompt `Password for USER: ` and until the
    /// terminal no longer echoes (rpassword prints the prompt before it
    /// turns echo off; typing earlier would show the password).
    #[track_caller]
    pub fn wait_for_password_prompt(&self, user: &str, n: usize, timeout: Duration) {
        self.wait_for(&format!("Password for {user}: "), n, timeout);
        let start = Instant::now();
        while self.echo_on() != Some(false) {
            if start.elapsed() >= timeout {
                panic!(
                    "`{}`: the terminal still echoes {timeout:?} after the prompt; terminal:\n{}",
                    self.cmdline,
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Whether the command's terminal echoes input: `None` if it cannot be
    /// told (the command has not started or has exited).
    fn echo_on(&self) -> Option<bool> {
        let pid = self.child.id();
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
        let child: u32 = children.split_whitespace().next()?.parse().ok()?;
        let tty = std::fs::read_link(format!("/proc/{child}/fd/0")).ok()?;
        if !tty.starts_with("/dev/pts") {
            return None;
        }
        // O_NOCTTY: the terminal never becomes ours; closed on return.
        let file = std::fs::File::options()
            .read(true)
            .custom_flags((OFlag::O_NOCTTY | OFlag::O_NONBLOCK).bits())
            .open(&tty)
            .ok()?;
        let t = tcgetattr(&file).ok()?;
        Some(t.local_flags.contains(LocalFlags::ECHO))
    }

    /// Type `line` and Enter.
    pub fn type_line(&mut self, line: &str) {
        self.send(format!("{line}\n").as_bytes());
    }

    /// Send raw bytes to the terminal's input (e.g. `b"\x04"`, Ctrl-D).
    pub fn send(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("terminal input already closed");
        stdin
            .write_all(bytes)
            .and_then(|_| stdin.flush())
            .expect("write to the terminal");
    }

    /// Wait for the command to exit; its exit code and everything shown.
    #[track_caller]
    pub fn wait(mut self, timeout: Duration) -> (i32, String) {
        let start = Instant::now();
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(st)) => break st,
                Ok(None) if start.elapsed() < timeout => std::thread::sleep(POLL),
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    panic!(
                        "`{}` did not exit within {timeout:?}; terminal:\n{}",
                        self.cmdline,
                        self.output()
                    );
                }
            }
        };
        self.stdin = None;
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        (status.code().unwrap_or(-1), self.output())
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
