//! The cross-built ARM binaries of `scripts/cross-build` under qemu-user:
//! `target/cross/<arch>/{bmcd,bmcctl}` and bmcd's sysroot
//! `target/cross/sysroot/<arch>` (Debian bookworm's glibc, libpam and
//! libpam-wrapper for that architecture).
//!
//! The dynamic bmcd runs as `qemu-<arch>-static -L SYSROOT -E
//! LD_LIBRARY_PATH=/lib/<multiarch>:/usr/lib/<multiarch> bmcd ...`: `-L`
//! makes the guest's absolute paths (its loader, libraries, PAM modules)
//! resolve in the sysroot first and on the host otherwise (the test's
//! temporary files); `LD_LIBRARY_PATH` keeps the guest loader away from the
//! host's x86_64 `/etc/ld.so.cache`. The static bmcctl needs no sysroot.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::daemon::Launcher;
use crate::process::{run, run_input, Run};
use crate::security::Pam;

/// Bound on a cross-built tool run (emulated: slower than native).
const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

/// One ARM target of `scripts/cross-build`.
#[derive(Clone, Debug)]
pub struct Cross {
    arch: &'static str,
    qemu: &'static str,
    multiarch: &'static str,
    dir: PathBuf,
}

/// `target/` (the parent of the profile directory this test runs from).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| crate::workspace_root().join("target"))
}

impl Cross {
    /// armv7 (`qemu-arm-static`, Debian armhf).
    pub fn armv7() -> Cross {
        Cross::new("armv7", "qemu-arm-static", "arm-linux-gnueabihf")
    }

    /// aarch64 (`qemu-aarch64-static`, Debian arm64).
    pub fn aarch64() -> Cross {
        Cross::new("aarch64", "qemu-aarch64-static", "aarch64-linux-gnu")
    }

    fn new(arch: &'static str, qemu: &'static str, multiarch: &'static str) -> Cross {
        Cross {
            arch,
            qemu,
            multiarch,
            dir: target_dir().join("cross"),
        }
    }

    /// The qemu-user program (`qemu-arm-static`, `qemu-aarch64-static`).
    pub fn qemu(&self) -> &'static str {
        self.qemu
    }

    /// `target/cross/<arch>/bmcd`, or `$BMCD_<ARCH>_BIN`.
    pub fn bmcd_bin(&self) -> PathBuf {
        let env = format!("BMCD_{}_BIN", self.arch.to_uppercase());
        std::env::var_os(env)
            .map(PathBuf::from)
            .unwrap_or_else(|| self.dir.join(self.arch).join("bmcd"))
    }

    /// `target/cross/<arch>/bmcctl`, or `$BMCCTL_<ARCH>_BIN`.
    pub fn bmcctl_bin(&self) -> PathBuf {
        crate::bmcctl_cross_bin(self.arch)
    }

    /// `target/cross/sysroot/<arch>`, or `$BMCD_<ARCH>_SYSROOT`.
    pub fn sysroot(&self) -> PathBuf {
        let env = format!("BMCD_{}_SYSROOT", self.arch.to_uppercase());
        std::env::var_os(env)
            .map(PathBuf::from)
            .unwrap_or_else(|| self.dir.join("sysroot").join(self.arch))
    }

    /// `/usr/lib/<multiarch>/<rel>`, a path as the guest sees it.
    fn guest_lib(&self, rel: &str) -> String {
        format!("/usr/lib/{}/{rel}", self.multiarch)
    }

    /// The armhf/arm64 pam_matrix module, as the guest sees it.
    pub fn pam_matrix(&self) -> String {
        self.guest_lib("pam_wrapper/pam_matrix.so")
    }

    /// The armhf/arm64 pam_wrapper library, as the guest sees it.
    pub fn pam_wrapper_lib(&self) -> String {
        self.guest_lib("libpam_wrapper.so")
    }

    /// Panic with what to run unless bmcd, bmcctl, the sysroot (with
    /// libpam-wrapper) and qemu-user are there.
    pub fn require(&self) {
        let sysroot = self.sysroot();
        let wrapper = sysroot.join(self.pam_wrapper_lib().trim_start_matches('/'));
        for p in [&self.bmcd_bin(), &self.bmcctl_bin(), &wrapper] {
            assert!(
                p.is_file(),
                "{} is missing: run `scripts/cross-build --target {}` (scripts/test does)",
                p.display(),
                self.arch
            );
        }
        assert!(
            Command::new(self.qemu)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success()),
            "{} is missing: apt-get install qemu-user-static (scripts/deps does)",
            self.qemu
        );
    }

    /// qemu-user with the sysroot, before the guest program.
    fn qemu_args(&self) -> Vec<OsString> {
        let m = self.multiarch;
        vec![
            "-L".into(),
            self.sysroot().into(),
            "-E".into(),
            format!("LD_LIBRARY_PATH=/lib/{m}:/usr/lib/{m}").into(),
        ]
    }

    /// The ARM bmcd under qemu-user with its sysroot, for
    /// [`crate::Daemon::start_launched`].
    pub fn bmcd_launcher(&self) -> Launcher {
        let mut args = self.qemu_args();
        args.push(self.bmcd_bin().into());
        Launcher {
            program: PathBuf::from(self.qemu),
            args,
        }
    }

    /// A [`Pam`] database whose modules are this architecture's (pam_matrix
    /// and pam_wrapper from the sysroot), every user for the service `bmcd`.
    pub fn pam_users(&self, users: &[(&str, &str)]) -> Pam {
        let entries: Vec<(&str, &str, &str)> = users
            .iter()
            .map(|(u, p)| (*u, *p, crate::security::SERVICE))
            .collect();
        Pam::with_modules(&entries, &self.pam_matrix(), &self.pam_wrapper_lib())
    }

    /// The ARM `bmcctl ARGS` under qemu-user against the bus at `address`,
    /// stdin closed (or `stdin` piped in), output captured.
    pub fn bmcctl(&self, address: &str, args: &[&str], stdin: Option<&str>) -> Run {
        let mut c = Command::new(self.qemu);
        c.arg(self.bmcctl_bin())
            .args(args)
            .env("BMCCTL_ADDRESS", address)
            .env_remove("PAGER")
            .env("NO_COLOR", "1");
        match stdin {
            Some(s) => run_input(&mut c, s.as_bytes(), TOOL_TIMEOUT),
            None => run(&mut c, TOOL_TIMEOUT),
        }
    }
}
