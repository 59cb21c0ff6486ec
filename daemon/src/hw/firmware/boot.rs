//! Boot selectors: a file holding the slot to boot next (the simulator's,
//! and boards whose boot loader reads a file).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{read_small, write_atomic, BootSelector};
use crate::hw::{HwError, HwResult};

/// The slot to boot next, by name, in a file written atomically.
pub struct FileBoot {
    path: PathBuf,
    slots: Vec<String>,
    /// The answer while the file does not exist.
    default: String,
    lock: Mutex<()>,
}

impl FileBoot {
    pub fn new(path: &Path, slots: Vec<String>, default: &str) -> FileBoot {
        FileBoot {
            path: path.to_owned(),
            slots,
            default: default.to_owned(),
            lock: Mutex::new(()),
        }
    }
}

impl BootSelector for FileBoot {
    fn boot_next(&self) -> HwResult<String> {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let Some(text) = read_small(&self.path)? else {
            return Ok(self.default.clone());
        };
        let name = text.trim();
        if self.slots.iter().any(|s| s == name) {
            Ok(name.to_owned())
        } else {
            Err(HwError::Invalid(format!(
                "{}: '{}' is not a slot ({})",
                self.path.display(),
                name.escape_debug(),
                self.slots.join(", ")
            )))
        }
    }

    fn set_boot_next(&self, slot: &str) -> HwResult<()> {
        if !self.slots.iter().any(|s| s == slot) {
            return Err(HwError::NotFound(format!("no firmware slot '{slot}'")));
        }
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        write_atomic(&self.path, format!("{slot}\n").as_bytes())
    }
}
