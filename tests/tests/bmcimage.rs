//! The real `bmcimage` binary: keygen, pack, inspect (with and without the
//! key directory), tampered images, and keys made by the openssl CLI. Keys
//! are generated per run, in a temporary directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bmcd_tests::bmcimage_bin;

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("bmcimage-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("mkdir");
        Dir(p)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(args: &[&str], cwd: &Path) -> Output {
    Command::new(bmcimage_bin())
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run bmcimage")
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn payload(dir: &Path) {
    let bytes: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(7) % 253) as u8)
        .collect();
    std::fs::write(dir.join("rootfs.bin"), bytes).expect("payload");
    std::fs::write(dir.join("kernel.bin"), b"a kernel").expect("payload");
}

fn pack(dir: &Path, key: &str, out: &str) {
    let o = run(
        &[
            "pack",
            "--key",
            key,
            "--component",
            "bmc",
            "--version",
            "2.1.0",
            "--build-date",
            "2026-12-03",
            "--machine",
            "sim",
            "--machine",
            "board-a",
            "--payload",
            "rootfs.bin",
            "--payload",
            "kernel.bin",
            "-o",
            out,
        ],
        dir,
    );
    assert!(
        o.status.success(),
        "pack: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn keygen_pack_inspect_and_tamper() {
    let d = Dir::new("flow");
    let dir = &d.0;
    let o = run(&["keygen", "--out", "keys", "--name", "release"], dir);
    assert!(
        o.status.success(),
        "keygen: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.join("keys/release.key"))
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "private key mode");
    // keygen never overwrites.
    let o = run(&["keygen", "--out", "keys", "--name", "release"], dir);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("release"));

    payload(dir);
    pack(dir, "keys/release.key", "bmc.img");

    // With the key directory: trusted, exit 0.
    let o = run(&["inspect", "--keys", "keys", "--json", "bmc.img"], dir);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let v = json(&o);
    assert_eq!(v["signature"]["status"], "trusted");
    assert_eq!(v["payloads"]["status"], "ok");
    assert_eq!(v["valid"], true);
    assert_eq!(v["manifest"]["version"], "2.1.0");
    assert_eq!(
        v["manifest"]["compatible"],
        serde_json::json!(["sim", "board-a"])
    );
    assert_eq!(v["manifest"]["payloads"][0]["name"], "rootfs.bin");
    assert_eq!(v["manifest"]["payloads"][0]["size"], 300_000);
    assert_eq!(v["manifest"]["payloads"][1]["name"], "kernel.bin");

    // Without it: not checked, exit 3.
    let o = run(&["inspect", "--json", "bmc.img"], dir);
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(json(&o)["signature"]["status"], "not-checked");

    // Another key's directory: unknown key, exit 3.
    let o = run(&["keygen", "--out", "other", "--name", "other"], dir);
    assert!(o.status.success());
    let o = run(&["inspect", "--keys", "other", "--json", "bmc.img"], dir);
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(json(&o)["signature"]["status"], "unknown-key");

    let img = std::fs::read(dir.join("bmc.img")).expect("image");
    let mlen = u32::from_le_bytes([img[7], img[8], img[9], img[10]]) as usize;

    // A tampered manifest byte (inside "2.1.0"): bad signature, exit 1.
    let mut t = img.clone();
    let pos = 11
        + t[11..]
            .windows(5)
            .position(|w| w == b"2.1.0")
            .expect("version");
    t[pos] = b'9';
    std::fs::write(dir.join("manifest.img"), &t).expect("write");
    let o = run(
        &["inspect", "--keys", "keys", "--json", "manifest.img"],
        dir,
    );
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(json(&o)["signature"]["status"], "bad-signature");

    // A tampered payload byte: signature fine, digest mismatch, exit 1.
    let mut t = img.clone();
    t[11 + mlen + 72 + 12_345] ^= 1;
    std::fs::write(dir.join("payload.img"), &t).expect("write");
    let o = run(&["inspect", "--keys", "keys", "--json", "payload.img"], dir);
    assert_eq!(o.status.code(), Some(1));
    let v = json(&o);
    assert_eq!(v["signature"]["status"], "trusted");
    assert_eq!(v["payloads"]["status"], "error");
    assert!(
        v["payloads"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("rootfs.bin"),
        "{v}"
    );
    assert_eq!(v["valid"], false);

    // Truncated, and not an image at all: errors naming the file.
    std::fs::write(dir.join("short.img"), &img[..11 + mlen / 2]).expect("write");
    let o = run(&["inspect", "--keys", "keys", "--json", "short.img"], dir);
    assert_eq!(o.status.code(), Some(1));
    assert!(json(&o)["error"]["message"]
        .as_str()
        .unwrap_or("")
        .contains("short.img"));
    let o = run(&["inspect", "kernel.bin"], dir);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("kernel.bin") && err.contains("magic"), "{err}");

    // A bad key file in --keys is named.
    std::fs::write(dir.join("keys/broken.pub"), "garbage").expect("write");
    let o = run(&["inspect", "--keys", "keys", "bmc.img"], dir);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("broken.pub"));

    // A missing payload file is named, and no output is left behind.
    let o = run(
        &[
            "pack",
            "--key",
            "keys/release.key",
            "--version",
            "1",
            "--build-date",
            "d",
            "--machine",
            "sim",
            "--payload",
            "missing.bin",
            "-o",
            "x.img",
        ],
        dir,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("missing.bin"));
    assert!(!dir.join("x.img").exists() && !dir.join("x.img.tmp").exists());
}

/// Keys made by `openssl genpkey -algorithm ed25519` sign images that
/// bmcimage trusts, and bmcimage's keys are readable by openssl.
#[test]
fn openssl_keys_interoperate() {
    let have_openssl = Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_openssl {
        eprintln!("SKIPPED: no openssl CLI on this machine");
        return;
    }
    let d = Dir::new("openssl");
    let dir = &d.0;
    std::fs::create_dir_all(dir.join("keys")).expect("mkdir");
    let ok = |args: &[&str]| {
        let o = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl");
        assert!(
            o.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    ok(&["genpkey", "-algorithm", "ed25519", "-out", "ossl.key"]);
    ok(&[
        "pkey",
        "-in",
        "ossl.key",
        "-pubout",
        "-out",
        "keys/ossl.pub",
    ]);
    payload(dir);
    pack(dir, "ossl.key", "bmc.img");
    let o = run(&["inspect", "--keys", "keys", "--json", "bmc.img"], dir);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert_eq!(json(&o)["signature"]["status"], "trusted");

    // The other way: openssl reads bmcimage's key files.
    let o = run(&["keygen", "--out", ".", "--name", "ours"], dir);
    assert!(o.status.success());
    ok(&["pkey", "-in", "ours.key", "-noout"]);
    ok(&["pkey", "-pubin", "-in", "ours.pub", "-noout"]);
}
