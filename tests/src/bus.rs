//! A private `dbus-daemon` per test; never the host's buses.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use bmcd_api::zbus;

use crate::tmp::TempDir;

/// Who may do what on the test bus.
#[derive(Debug, Clone)]
pub enum BusPolicy {
    /// Everything allowed, for everyone (a session-like bus).
    Open,
    /// Like a system bus: method calls denied by default, owning names
    /// denied, and the policy files of `include` (e.g.
    /// `config/dbus/org.bmcd.conf`) copied into an `<includedir>`.
    SystemLike { include: Vec<PathBuf> },
}

/// The configuration of a test bus.
#[derive(Debug, Clone)]
pub struct BusConfig {
    pub policy: BusPolicy,
    /// Extra elements inserted verbatim before `</busconfig>`.
    pub extra: String,
}

impl BusConfig {
    /// Everything allowed.
    pub fn open() -> BusConfig {
        BusConfig {
            policy: BusPolicy::Open,
            extra: String::new(),
        }
    }

    /// A system-like bus with the shipped `config/dbus/org.bmcd.conf`.
    pub fn system_like() -> BusConfig {
        BusConfig {
            policy: BusPolicy::SystemLike {
                include: vec![crate::workspace_root().join("config/dbus/org.bmcd.conf")],
            },
            extra: String::new(),
        }
    }
}

const HEADER: &str = r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
"#;

/// The text of a `dbus-daemon` configuration listening on `socket`. For
/// [`BusPolicy::SystemLike`], `includedir` is the directory the included
/// policy files are copied to. No `<servicedir>`: nothing is ever
/// activated.
pub fn bus_config_xml(socket: &Path, includedir: &Path, cfg: &BusConfig) -> String {
    let mut s = String::from(HEADER);
    s.push_str("<busconfig>\n");
    let (kind, policy) = match &cfg.policy {
        BusPolicy::Open => (
            "session",
            r#"  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow receive_sender="*"/>
  </policy>
"#
            .to_owned(),
        ),
        BusPolicy::SystemLike { .. } => (
            "system",
            format!(
                r#"  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow receive_sender="*"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Peer"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus" send_member="UpdateActivationEnvironment"/>
  </policy>
  <includedir>{}</includedir>
"#,
                includedir.display()
            ),
        ),
    };
    s.push_str(&format!("  <type>{kind}</type>\n"));
    s.push_str(&format!(
        "  <listen>unix:path={}</listen>\n",
        socket.display()
    ));
    s.push_str("  <auth>EXTERNAL</auth>\n");
    s.push_str(&policy);
    s.push_str(&cfg.extra);
    s.push_str("</busconfig>\n");
    s
}

/// A running private `dbus-daemon`, killed on drop.
pub struct TestBus {
    dir: TempDir,
    child: Child,
    address: String,
    _stdout: BufReader<ChildStdout>,
}

impl TestBus {
    /// An open (session-like) bus.
    pub fn new() -> TestBus {
        crate::process::default_signal_actions();
        TestBus::start(&BusConfig::open())
    }

    /// A system-like bus with the shipped policy.
    pub fn system_like() -> TestBus {
        TestBus::start(&BusConfig::system_like())
    }

    pub fn start(cfg: &BusConfig) -> TestBus {
        let dir = TempDir::new("bus");
        let includedir = dir.join("system.d");
        std::fs::create_dir_all(&includedir).expect("create includedir");
        if let BusPolicy::SystemLike { include } = &cfg.policy {
            for f in include {
                let name = f.file_name().expect("policy file name");
                std::fs::copy(f, includedir.join(name))
                    .unwrap_or_else(|e| panic!("copy {}: {e}", f.display()));
            }
        }
        let conf = dir.join("bus.conf");
        std::fs::write(&conf, bus_config_xml(&dir.join("bus"), &includedir, cfg))
            .expect("write bus config");
        let log = std::fs::File::create(dir.join("dbus-daemon.log")).expect("bus log");
        let mut child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", conf.display()))
            .arg("--nofork")
            .arg("--print-address")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start dbus-daemon (apt-get install dbus): {e}"));
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut address = String::new();
        // dbus-daemon prints the address once it listens, or exits (EOF).
        let _ = stdout.read_line(&mut address);
        let address = address.trim().to_owned();
        if address.is_empty() {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(dir.join("dbus-daemon.log")).unwrap_or_default();
            panic!("dbus-daemon did not start:\n{log}");
        }
        TestBus {
            dir,
            child,
            address,
            _stdout: stdout,
        }
    }

    /// The address clients connect to (`unix:path=…,guid=…`).
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The directory holding the socket, config and log of the bus.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kill the bus daemon (SIGKILL) and reap it: every connection to the
    /// bus is closed under its clients' feet. Idempotent.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A new client connection (calls time out after 10 s).
    pub fn connect(&self) -> zbus::blocking::Connection {
        zbus::blocking::connection::Builder::address(self.address.as_str())
            .and_then(|b| b.method_timeout(Duration::from_secs(10)).build())
            .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", self.address))
    }
}

impl Default for TestBus {
    fn default() -> Self {
        TestBus::new()
    }
}

impl Drop for TestBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
