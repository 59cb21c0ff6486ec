//! `cfg(bmcd_cross_armv7)` / `cfg(bmcd_cross_aarch64)` when
//! `scripts/cross-build --target <arch>` has made `target/cross/<arch>/bmcd`
//! and `bmcctl` (or `$BMCD_<ARCH>_BIN` and `$BMCCTL_<ARCH>_BIN` name files):
//! without them the qemu-user tests of that ARM daemon
//! (`tests/tests/arm_bmcd.rs`) are ignored, which cargo reports as such, not
//! as passed. scripts/test always builds them.

use std::path::PathBuf;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    // OUT_DIR is <target>/<profile>/build/bmcd-tests-<hash>/out, and the
    // tests find target/cross from their own <target>/<profile>/deps.
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    let target = out.ancestors().nth(4).map(PathBuf::from);
    for arch in ["armv7", "aarch64"] {
        println!("cargo::rustc-check-cfg=cfg(bmcd_cross_{arch})");
        let Some(target) = &target else {
            continue;
        };
        let dir = target.join("cross").join(arch);
        // Watched for the binaries to appear or change; it must exist, or
        // cargo would run this script (and rebuild the tests) every time.
        if std::fs::create_dir_all(&dir).is_ok() {
            println!("cargo::rerun-if-changed={}", dir.display());
        }
        let bin = |prefix: &str, name: &str| {
            let env = format!("{prefix}_{}_BIN", arch.to_uppercase());
            println!("cargo::rerun-if-env-changed={env}");
            std::env::var_os(env)
                .map(PathBuf::from)
                .unwrap_or_else(|| dir.join(name))
        };
        if [bin("BMCD", "bmcd"), bin("BMCCTL", "bmcctl")]
            .iter()
            .all(|p| p.is_file())
        {
            println!("cargo::rustc-cfg=bmcd_cross_{arch}");
        }
    }
}
