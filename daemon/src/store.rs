//! Persistent state: one small JSON file in the state directory, replaced
//! atomically (write a temp file, fsync it, rename over the old one, fsync
//! the directory), so a `kill -9` or power loss at any instant leaves either
//! the old or the new version, never a torn one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bmcd_api::RestorePolicy;
use serde::{Deserialize, Serialize};

const FILE: &str = "state.json";

/// What survives a restart of the daemon or of the BMC.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Persistent {
    /// Set by an operator; `None` until then (the config default applies).
    pub restore_policy: Option<RestorePolicy>,
    /// Whether `Restore` brings the host back on: the end state of the last
    /// requested transition (written before the request is acknowledged,
    /// so a crash in the middle of it follows the request), replaced by
    /// the settled state when the transition ends or when the host changes
    /// by itself while idle.
    pub host_on: bool,
}

pub struct Store {
    dir: PathBuf,
    current: Mutex<Persistent>,
}

impl Store {
    /// Open the state directory (created if missing) and read the state.
    /// A missing file is a fresh start; an unreadable or corrupt one is
    /// reported in the log and replaced by defaults on the next write,
    /// never a reason not to start.
    pub fn open(dir: &Path) -> io::Result<Store> {
        fs::create_dir_all(dir)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
        let path = dir.join(FILE);
        let current = match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                log::error!("{}: corrupt state ignored: {e}", path.display());
                Persistent::default()
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Persistent::default(),
            Err(e) => {
                log::error!("{}: {e}; starting from defaults", path.display());
                Persistent::default()
            }
        };
        Ok(Store {
            dir: dir.to_owned(),
            current: Mutex::new(current),
        })
    }

    pub fn get(&self) -> Persistent {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Apply `f` and write the result durably before returning. On error
    /// the in-memory state is left unchanged, so what callers see was
    /// acknowledged by the disk.
    pub fn update(&self, f: impl FnOnce(&mut Persistent)) -> io::Result<()> {
        let mut guard = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = guard.clone();
        f(&mut next);
        if next == *guard {
            return Ok(());
        }
        let bytes = serde_json::to_vec_pretty(&next).map_err(io::Error::other)?;
        write_atomic(&self.dir, FILE, &bytes)?;
        *guard = next;
        Ok(())
    }
}

/// Replace `dir/name` with `bytes` atomically and durably.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let target = dir.join(name);
    let ctx = |e: io::Error, p: &Path| io::Error::new(e.kind(), format!("{}: {e}", p.display()));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| ctx(e, &tmp))?;
    f.write_all(bytes).map_err(|e| ctx(e, &tmp))?;
    f.sync_all().map_err(|e| ctx(e, &tmp))?;
    drop(f);
    fs::rename(&tmp, &target).map_err(|e| ctx(e, &target))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ctx(e, dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("bmcd-store-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn survives_reopen_and_ignores_corruption() {
        let d = tmpdir("a");
        let s = Store::open(&d).unwrap();
        assert_eq!(s.get(), Persistent::default());
        s.update(|p| {
            p.restore_policy = Some(RestorePolicy::AlwaysOn);
            p.host_on = true;
        })
        .unwrap();
        let s2 = Store::open(&d).unwrap();
        assert_eq!(s2.get().restore_policy, Some(RestorePolicy::AlwaysOn));
        assert!(s2.get().host_on);
        // A torn temp file left by a crash does not matter.
        fs::write(d.join(".state.json.tmp"), b"{\"restore_po").unwrap();
        assert!(Store::open(&d).unwrap().get().host_on);
        // A corrupt state file gives defaults, not a failure to start.
        fs::write(d.join(FILE), b"garbage").unwrap();
        assert_eq!(Store::open(&d).unwrap().get(), Persistent::default());
        let _ = fs::remove_dir_all(&d);
    }
}
