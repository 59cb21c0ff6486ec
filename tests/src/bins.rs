//! Where the binaries under test are.

use std::path::{Path, PathBuf};

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// `target/debug` (or whatever profile dir this test runs from): the test
/// executable is `<dir>/deps/<test>-<hash>`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| workspace_root().join("target/debug"))
}

fn find(env: &str, name: &str) -> PathBuf {
    crate::process::default_signal_actions();
    let p = match std::env::var_os(env) {
        Some(v) => PathBuf::from(v),
        None => profile_dir().join(name),
    };
    assert!(
        p.is_file(),
        "{name} not found at {} ({env} overrides the path): run `cargo build --workspace --bins` \
         first (scripts/test does)",
        p.display()
    );
    p
}

/// The daemon: `target/debug/bmcd`, or `$BMCD_BIN`.
pub fn bmcd_bin() -> PathBuf {
    find("BMCD_BIN", "bmcd")
}

/// The CLI: `target/debug/bmcctl`, or `$BMCCTL_BIN`.
pub fn bmcctl_bin() -> PathBuf {
    find("BMCCTL_BIN", "bmcctl")
}

/// The image tool: `target/debug/bmcimage`, or `$BMCIMAGE_BIN`.
pub fn bmcimage_bin() -> PathBuf {
    find("BMCIMAGE_BIN", "bmcimage")
}

/// A cross-built CLI: `target/cross/<arch>/bmcctl` (made by
/// `scripts/cross-build`), or `$BMCCTL_<ARCH>_BIN`.
pub fn bmcctl_cross_bin(arch: &str) -> PathBuf {
    let env = format!("BMCCTL_{}_BIN", arch.to_uppercase());
    let p = match std::env::var_os(&env) {
        Some(v) => PathBuf::from(v),
        None => profile_dir()
            .parent()
            .map(|t| t.join("cross").join(arch).join("bmcctl"))
            .unwrap_or_default(),
    };
    assert!(
        p.is_file(),
        "the {arch} bmcctl is missing at {} ({env} overrides the path): run \
         `scripts/cross-build --target {arch}` first",
        p.display()
    );
    p
}
