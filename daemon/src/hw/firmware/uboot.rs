//! The U-Boot boot selector, RAUC-style: the environment holds
//! `BOOT_ORDER` (boot loader names of the slots, the first tried first) and
//! `BOOT_<x>_LEFT` (boot attempts left of slot `x`; the boot script
//! decrements it before it boots `x` and skips a slot at 0). Read with
//! `fw_printenv -n VAR`, written with one `fw_setenv -s SCRIPT` so that
//! the order and the attempts change together (one redundant-environment
//! write). The script's lines are `name=value`, which both U-Boot's own
//! tools (blank or `=` ends the name) and libubootenv's (`=` only) read.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{io_err, BootSelector};
use crate::config::UbootConfig;
use crate::hw::{HwError, HwResult};

pub struct UbootBoot {
    printenv: PathBuf,
    setenv: PathBuf,
    /// `(slot, boot loader name)`, in the configured slot order.
    names: Vec<(String, String)>,
    tries: u32,
    /// Where the `fw_setenv` script is written.
    script: PathBuf,
    timeout: Duration,
    lock: Mutex<()>,
}

/// Longest stderr excerpt quoted in an error.
const MAX_STDERR: usize = 200;
/// How long `fw_printenv` / `fw_setenv` may take (they lock the
/// environment; a stuck lock must not hang the caller for ever).
const TOOL_TIMEOUT: Duration = Duration::from_secs(10);

/// Run `cmd` with no stdin, collecting its output; killed and an error
/// naming `what` after `timeout`. The tools print a few lines: more than a
/// pipe holds (64 KiB) blocks them and ends in the timeout, never in
/// unbounded memory.
fn run_bounded(cmd: &mut Command, what: &str, timeout: Duration) -> HwResult<Output> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io_err(what))?;
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        if child.try_wait().map_err(io_err(what))?.is_some() {
            return child.wait_with_output().map_err(io_err(what));
        }
        if start.elapsed() >= timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Err(HwError::Unavailable(format!(
                "{what}: no answer within {} ms",
                timeout.as_millis()
            )));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

impl UbootBoot {
    /// `slots` gives the order of the names (the default `BOOT_ORDER`);
    /// the script file is written in `work_dir`.
    pub fn new(cfg: &UbootConfig, slots: &[String], work_dir: &Path) -> UbootBoot {
        let names = slots
            .iter()
            .filter_map(|s| cfg.names.get(s).map(|n| (s.clone(), n.clone())))
            .collect();
        UbootBoot {
            printenv: cfg.fw_printenv.clone(),
            setenv: cfg.fw_setenv.clone(),
            names,
            tries: cfg.tries,
            script: work_dir.join("uboot-env.script"),
            timeout: TOOL_TIMEOUT,
            lock: Mutex::new(()),
        }
    }

    /// `fw_printenv -n var`; `None` when the variable is not defined or
    /// empty (U-Boot's tool fails with "not defined", libubootenv's prints
    /// an empty line; RAUC's boot script treats empty as unset).
    fn get(&self, var: &str) -> HwResult<Option<String>> {
        let what = format!("{} -n {var}", self.printenv.display());
        let out = run_bounded(
            Command::new(&self.printenv).arg("-n").arg(var),
            &what,
            self.timeout,
        )?;
        if out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout);
            let v = text.trim_end_matches(['\n', '\r']);
            return Ok((!v.trim().is_empty()).then(|| v.to_owned()));
        }
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("not defined") {
            return Ok(None);
        }
        Err(HwError::Invalid(format!(
            "{what}: {}: {}",
            out.status,
            excerpt(&err)
        )))
    }

    /// The boot order as boot loader names: `BOOT_ORDER`'s known words,
    /// or the configured order when it is unset or names no known slot.
    fn order(&self) -> HwResult<Vec<String>> {
        let known: Vec<&str> = self.names.iter().map(|(_, n)| n.as_str()).collect();
        let env = self.get("BOOT_ORDER")?.unwrap_or_default();
        Ok(parse_order(&env, &known))
    }

    fn slot_of(&self, name: &str) -> Option<&str> {
        self.names
            .iter()
            .find(|(_, n)| n == name)
            .map(|(s, _)| s.as_str())
    }
}

/// The known names of `env` (a `BOOT_ORDER` value) in order, without
/// repeats; all of `known` if none is there.
pub fn parse_order(env: &str, known: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for w in env.split_ascii_whitespace() {
        if known.contains(&w) && !out.iter().any(|o| o == w) {
            out.push(w.to_owned());
        }
    }
    if out.is_empty() {
        out = known.iter().map(|k| (*k).to_owned()).collect();
    }
    out
}

/// Attempts left from a `BOOT_x_LEFT` value: unset counts as `tries`,
/// anything but a number as 0 (the boot script's `test -gt 0` fails).
pub fn parse_left(v: Option<&str>, tries: u32) -> u32 {
    match v {
        None => tries,
        Some(s) => s.trim().parse().unwrap_or(0),
    }
}

/// The boot order with `first` moved to the front.
pub fn order_with_first(order: &[String], first: &str) -> Vec<String> {
    let mut out = vec![first.to_owned()];
    out.extend(order.iter().filter(|n| *n != first).cloned());
    out
}

fn excerpt(s: &str) -> String {
    let s = s.trim();
    let mut end = s.len().min(MAX_STDERR);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].escape_debug().to_string()
}

impl BootSelector for UbootBoot {
    /// The first slot of `BOOT_ORDER` with attempts left; if none has,
    /// the first of the order (RAUC's boot script then resets the
    /// attempts and boots it).
    fn boot_next(&self) -> HwResult<String> {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let order = self.order()?;
        let mut chosen = None;
        for name in &order {
            let left = self.get(&format!("BOOT_{name}_LEFT"))?;
            if parse_left(left.as_deref(), self.tries) > 0 {
                chosen = Some(name.as_str());
                break;
            }
        }
        let name = chosen
            .or(order.first().map(String::as_str))
            .ok_or_else(|| HwError::Invalid("U-Boot: no slot has a boot loader name".into()))?;
        self.slot_of(name)
            .map(str::to_owned)
            .ok_or_else(|| HwError::Invalid(format!("U-Boot: '{name}' names no slot")))
    }

    fn set_boot_next(&self, slot: &str) -> HwResult<()> {
        let name = self
            .names
            .iter()
            .find(|(s, _)| s == slot)
            .map(|(_, n)| n.clone())
            .ok_or_else(|| HwError::NotFound(format!("no firmware slot '{slot}' for U-Boot")))?;
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let order = order_with_first(&self.order()?, &name);
        let script = format!(
            "BOOT_ORDER={}\nBOOT_{name}_LEFT={}\n",
            order.join(" "),
            self.tries
        );
        let swhat = self.script.display().to_string();
        {
            let mut f = std::fs::File::create(&self.script).map_err(io_err(&swhat))?;
            f.write_all(script.as_bytes()).map_err(io_err(&swhat))?;
            f.sync_all().map_err(io_err(&swhat))?;
        }
        let what = format!("{} -s {swhat}", self.setenv.display());
        let out = run_bounded(
            Command::new(&self.setenv).arg("-s").arg(&self.script),
            &what,
            self.timeout,
        );
        let _ = std::fs::remove_file(&self.script);
        let out = out?;
        if out.status.success() {
            Ok(())
        } else {
            Err(HwError::Invalid(format!(
                "{what}: {}: {}",
                out.status,
                excerpt(&String::from_utf8_lossy(&out.stderr))
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::TempDir;
    use super::*;

    const PRINTENV: &str = r###"#!/bin/sh
D=$(dirname "$0")
[ -f "$D/fail" ] && { echo "Cannot read environment" >&2; exit 1; }
[ "$1" = "-n" ] || exit 2
v=$(grep "^$2=" "$D/env" | tail -n 1)
[ -n "$v" ] || { echo "## Error: \"$2\" not defined" >&2; exit 1; }
printf '%s\n' "${v#*=}"
"###;

    const SETENV: &str = r#"#!/bin/sh
D=$(dirname "$0")
[ "$1" = "-s" ] || exit 2
echo call >> "$D/calls"
[ -f "$D/fail" ] && { echo "Cannot write environment" >&2; exit 1; }
cp "$2" "$D/last-script"
while IFS='=' read -r k v; do
  [ -n "$k" ] || continue
  grep -v "^$k=" "$D/env" > "$D/env.new"
  echo "$k=$v" >> "$D/env.new"
  mv "$D/env.new" "$D/env"
done < "$2"
"#;

    struct Rig {
        t: TempDir,
        boot: UbootBoot,
    }

    impl Rig {
        fn new(tag: &str, env: &str) -> Rig {
            let t = TempDir::new(tag);
            let d = t.path();
            for (name, text) in [("fw_printenv", PRINTENV), ("fw_setenv", SETENV)] {
                // The executable is written by another process (install):
                // a file this process had open for writing could be
                // inherited by a concurrent test's fork and fail to run
                // with ETXTBSY.
                let src = d.join(format!("{name}.src"));
                assert!(std::fs::write(&src, text).is_ok());
                let st = Command::new("install")
                    .arg("-m")
                    .arg("755")
                    .arg(&src)
                    .arg(d.join(name))
                    .status();
                assert!(st.is_ok_and(|s| s.success()));
            }
            assert!(std::fs::write(d.join("env"), env).is_ok());
            let cfg = UbootConfig {
                fw_printenv: d.join("fw_printenv"),
                fw_setenv: d.join("fw_setenv"),
                names: [("bmc_a", "A"), ("bmc_b", "B")]
                    .into_iter()
                    .map(|(a, b)| (a.to_owned(), b.to_owned()))
                    .collect(),
                tries: 3,
            };
            let slots = vec!["bmc_a".to_owned(), "bmc_b".to_owned(), "bios".to_owned()];
            let boot = UbootBoot::new(&cfg, &slots, d);
            Rig { t, boot }
        }
        fn file(&self, name: &str) -> String {
            std::fs::read_to_string(self.t.path().join(name)).unwrap_or_default()
        }
        fn next(&self) -> Option<String> {
            self.boot.boot_next().ok()
        }
    }

    #[test]
    fn pure_helpers() {
        let k = ["A", "B"];
        assert_eq!(parse_order("B A", &k), vec!["B", "A"]);
        assert_eq!(parse_order(" A  X A B ", &k), vec!["A", "B"]);
        assert_eq!(parse_order("", &k), vec!["A", "B"]);
        assert_eq!(parse_order("X Y", &k), vec!["A", "B"]);
        assert_eq!(parse_left(None, 3), 3);
        assert_eq!(parse_left(Some("0"), 3), 0);
        assert_eq!(parse_left(Some(" 2 "), 3), 2);
        assert_eq!(parse_left(Some("-1"), 3), 0);
        assert_eq!(parse_left(Some("x"), 3), 0);
        let o = vec!["A".to_owned(), "B".to_owned()];
        assert_eq!(order_with_first(&o, "B"), vec!["B", "A"]);
        assert_eq!(order_with_first(&o, "A"), vec!["A", "B"]);
        assert_eq!(excerpt("é".repeat(150).as_str()).chars().count(), 100);
    }

    #[test]
    fn boot_next_follows_order_and_attempts() {
        let r = Rig::new(
            "uboot-read",
            "BOOT_ORDER=A B\nBOOT_A_LEFT=3\nBOOT_B_LEFT=3\n",
        );
        assert_eq!(r.next().as_deref(), Some("bmc_a"));
        assert!(std::fs::write(r.t.path().join("env"), "BOOT_ORDER=B A\nBOOT_B_LEFT=1\n").is_ok());
        assert_eq!(r.next().as_deref(), Some("bmc_b"));
        // B out of attempts: A (LEFT unset counts as tries).
        assert!(std::fs::write(r.t.path().join("env"), "BOOT_ORDER=B A\nBOOT_B_LEFT=0\n").is_ok());
        assert_eq!(r.next().as_deref(), Some("bmc_a"));
        // None left: the first of the order.
        assert!(std::fs::write(
            r.t.path().join("env"),
            "BOOT_ORDER=B A\nBOOT_A_LEFT=0\nBOOT_B_LEFT=0\n"
        )
        .is_ok());
        assert_eq!(r.next().as_deref(), Some("bmc_b"));
        // Empty values count as unset (libubootenv prints "" for those).
        assert!(std::fs::write(
            r.t.path().join("env"),
            "BOOT_ORDER=\nBOOT_A_LEFT=0\nBOOT_B_LEFT=\n"
        )
        .is_ok());
        assert_eq!(r.next().as_deref(), Some("bmc_b"));
        // No BOOT_ORDER: the configured order.
        assert!(std::fs::write(r.t.path().join("env"), "").is_ok());
        assert_eq!(r.next().as_deref(), Some("bmc_a"));
        // fw_printenv fails: an error naming the command.
        assert!(std::fs::write(r.t.path().join("fail"), "").is_ok());
        let e = r
            .boot
            .boot_next()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("fw_printenv -n BOOT_ORDER") && e.contains("Cannot read"),
            "{e}"
        );
    }

    #[test]
    fn set_boot_next_is_one_script_write() {
        let r = Rig::new(
            "uboot-write",
            "BOOT_ORDER=A B\nBOOT_A_LEFT=3\nBOOT_B_LEFT=0\n",
        );
        assert!(r.boot.set_boot_next("bmc_b").is_ok());
        assert_eq!(r.file("last-script"), "BOOT_ORDER=B A\nBOOT_B_LEFT=3\n");
        assert_eq!(r.file("calls").lines().count(), 1);
        assert_eq!(r.next().as_deref(), Some("bmc_b"));
        assert!(r.file("env").contains("BOOT_A_LEFT=3"));
        // Back to A.
        assert!(r.boot.set_boot_next("bmc_a").is_ok());
        assert_eq!(r.file("last-script"), "BOOT_ORDER=A B\nBOOT_A_LEFT=3\n");
        assert_eq!(r.next().as_deref(), Some("bmc_a"));
        assert_eq!(r.file("calls").lines().count(), 2);
        // The script file is not left behind.
        assert!(!r.t.path().join("uboot-env.script").exists());
        // A slot without a boot loader name, an unknown slot.
        assert!(matches!(
            r.boot.set_boot_next("bios"),
            Err(HwError::NotFound(_))
        ));
        assert!(matches!(
            r.boot.set_boot_next("x"),
            Err(HwError::NotFound(_))
        ));
        assert_eq!(r.file("calls").lines().count(), 2);
    }

    #[test]
    fn set_boot_next_failure_is_an_error() {
        let r = Rig::new("uboot-fail", "");
        assert!(std::fs::write(r.t.path().join("fail"), "").is_ok());
        assert!(r.boot.set_boot_next("bmc_b").is_err());
        let _ = std::fs::remove_file(r.t.path().join("fail"));
        assert!(r.boot.set_boot_next("bmc_b").is_ok());
        assert_eq!(r.file("last-script"), "BOOT_ORDER=B A\nBOOT_B_LEFT=3\n");
        // Missing tools.
        let mut cfg_boot = r.boot;
        cfg_boot.setenv = PathBuf::from("/nonexistent/fw_setenv");
        cfg_boot.printenv = PathBuf::from("/nonexistent/fw_printenv");
        let e = cfg_boot
            .boot_next()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("/nonexistent/fw_printenv"), "{e}");
    }

    #[test]
    fn a_stuck_tool_times_out() {
        let mut r = Rig::new("uboot-stuck", "");
        r.boot.printenv = PathBuf::from("/bin/sleep");
        r.boot.timeout = Duration::from_millis(100);
        // `sleep -n BOOT_ORDER` fails at once (bad option): an error, quickly.
        assert!(r.boot.boot_next().is_err());
        let e = run_bounded(
            Command::new("/bin/sleep").arg("30"),
            "sleep 30",
            Duration::from_millis(100),
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert_eq!(e, "sleep 30: no answer within 100 ms");
        let out = run_bounded(
            Command::new("/bin/echo").arg("hi"),
            "echo",
            Duration::from_secs(10),
        );
        assert_eq!(out.ok().map(|o| o.stdout), Some(b"hi\n".to_vec()));
    }
}
