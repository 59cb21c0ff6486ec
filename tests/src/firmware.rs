//! Firmware images for tests: a fresh Ed25519 key pair per kit (never a
//! key checked into the repository), images packed and signed with it by
//! the `bmcd-image` library (the same code `bmcimage pack` runs), and the
//! `firmware` section of a daemon configuration that trusts the kit's key.
//!
//! The sim platform keeps its slots as files in the daemon's state
//! directory: [`sim_slot`] names them, so tests can check the bytes.

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use bmcd_image::{ImageMeta, PayloadSource, SigningKey};
use serde_json::{json, Value};

use crate::TempDir;

/// The manifest fields and payload of one test image.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    pub component: String,
    pub version: String,
    pub build_date: String,
    pub compatible: Vec<String>,
    /// Payload bytes.
    pub size: u64,
    /// Seed of the payload's deterministic pseudo-random bytes.
    pub seed: u64,
}

impl ImageSpec {
    /// A BMC image for the sim machine: `version`, `size` payload bytes.
    pub fn new(version: &str, size: u64) -> ImageSpec {
        ImageSpec {
            component: "bmc".into(),
            version: version.into(),
            build_date: "2026-12-03T10:00:00Z".into(),
            compatible: vec!["sim".into()],
            size,
            seed: 1,
        }
    }

    /// The same image for other machines.
    pub fn for_machines(mut self, machines: &[&str]) -> ImageSpec {
        self.compatible = machines.iter().map(|m| m.to_string()).collect();
        self
    }

    pub fn seed(mut self, seed: u64) -> ImageSpec {
        self.seed = seed;
        self
    }

    pub fn component(mut self, c: &str) -> ImageSpec {
        self.component = c.into();
        self
    }
}

/// The payload bytes of `spec`, generated in blocks (xorshift64*), so a
/// 64 MiB image needs no 64 MiB buffer.
pub struct Payload {
    state: u64,
    left: u64,
}

impl Payload {
    pub fn of(spec: &ImageSpec) -> Payload {
        Payload {
            state: spec.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            left: spec.size,
        }
    }
}

impl Read for Payload {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.left) as usize;
        for chunk in buf[..n].chunks_mut(8) {
            self.state ^= self.state >> 12;
            self.state ^= self.state << 25;
            self.state ^= self.state >> 27;
            let v = self.state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// SHA-256 (hex) of the payload of `spec`.
pub fn payload_digest(spec: &ImageSpec) -> String {
    sha256_of(Payload::of(spec))
}

/// SHA-256 (hex) of everything `r` yields.
pub fn sha256_of(mut r: impl Read) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => h.update(&buf[..n]),
            Err(e) => panic!("reading: {e}"),
        }
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 (hex) of the first `len` bytes of the file at `path`.
pub fn sha256_file_prefix(path: &Path, len: u64) -> String {
    let f = File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    sha256_of(f.take(len))
}

/// A key pair made for this kit, its trust directory, and images.
pub struct FwKit {
    dir: TempDir,
    key: SigningKey,
    other: SigningKey,
    keys_dir: PathBuf,
    n: std::cell::Cell<u32>,
}

impl Default for FwKit {
    fn default() -> Self {
        FwKit::new()
    }
}

impl FwKit {
    /// A fresh key pair (from the OS random source); its public half is
    /// the only file of `keys_dir()`. A second key, never trusted, signs
    /// [`FwKit::image_untrusted`].
    pub fn new() -> FwKit {
        let dir = TempDir::new("fw");
        let keys_dir = dir.join("keys");
        std::fs::create_dir_all(&keys_dir).unwrap_or_else(|e| panic!("keys dir: {e}"));
        let key = bmcd_image::generate_signing_key().unwrap_or_else(|e| panic!("keygen: {e}"));
        let other = bmcd_image::generate_signing_key().unwrap_or_else(|e| panic!("keygen: {e}"));
        bmcd_image::write_key_pair(&key, &keys_dir, "test")
            .unwrap_or_else(|e| panic!("writing keys: {e}"));
        // The private key stays out of the trust directory.
        let _ = std::fs::rename(keys_dir.join("test.key"), dir.join("test.key"));
        FwKit {
            dir,
            key,
            other,
            keys_dir,
            n: std::cell::Cell::new(0),
        }
    }

    /// The directory to give bmcd as `firmware.keys_dir`.
    pub fn keys_dir(&self) -> &Path {
        &self.keys_dir
    }

    /// A scratch directory for the test's own files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn next_path(&self, tag: &str) -> PathBuf {
        let n = self.n.get() + 1;
        self.n.set(n);
        self.dir.join(format!("{n}-{tag}.bmcimg"))
    }

    fn pack(&self, spec: &ImageSpec, key: &SigningKey, tag: &str) -> PathBuf {
        let path = self.next_path(tag);
        // pack() reads each payload twice (size and digest, then the
        // bytes), so the payload goes through a file.
        let payload_path = self.dir.join("payload.bin");
        {
            let mut f = BufWriter::new(
                File::create(&payload_path).unwrap_or_else(|e| panic!("payload: {e}")),
            );
            std::io::copy(&mut Payload::of(spec), &mut f).unwrap_or_else(|e| panic!("{e}"));
            f.flush().unwrap_or_else(|e| panic!("{e}"));
        }
        let meta = ImageMeta {
            component: spec.component.clone(),
            version: spec.version.clone(),
            build_date: spec.build_date.clone(),
            compatible: spec.compatible.clone(),
        };
        let reader = File::open(&payload_path).unwrap_or_else(|e| panic!("{e}"));
        let mut sources = [PayloadSource {
            name: "rootfs.bin".to_string(),
            reader,
        }];
        let out = BufWriter::new(File::create(&path).unwrap_or_else(|e| panic!("{e}")));
        bmcd_image::pack(&meta, &mut sources, key, out).unwrap_or_else(|e| panic!("pack: {e}"));
        let _ = std::fs::remove_file(&payload_path);
        path
    }

    /// An image signed with the trusted key.
    pub fn image(&self, spec: &ImageSpec) -> PathBuf {
        self.pack(spec, &self.key, "signed")
    }

    /// A well-formed image signed by a key bmcd does not trust.
    pub fn image_untrusted(&self, spec: &ImageSpec) -> PathBuf {
        self.pack(spec, &self.other, "untrusted")
    }

    /// A copy of `image` with one payload byte changed (the signature
    /// still verifies; the payload digest does not).
    pub fn tamper_payload(&self, image: &Path) -> PathBuf {
        let path = self.next_path("bad-payload");
        std::fs::copy(image, &path).unwrap_or_else(|e| panic!("{e}"));
        let len = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{e}"))
            .len();
        flip_byte(&path, len - 1);
        path
    }

    /// A copy of `image` with one manifest byte changed (the signature no
    /// longer verifies).
    pub fn tamper_manifest(&self, image: &Path) -> PathBuf {
        let path = self.next_path("bad-manifest");
        std::fs::copy(image, &path).unwrap_or_else(|e| panic!("{e}"));
        // The manifest starts at offset 11 (magic 6, version 1, length 4).
        flip_byte(&path, 20);
        path
    }
}

fn flip_byte(path: &Path, at: u64) {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(at))
        .unwrap_or_else(|e| panic!("{e}"));
    f.read_exact(&mut b).unwrap_or_else(|e| panic!("{e}"));
    b[0] ^= 0x01;
    f.seek(SeekFrom::Start(at))
        .unwrap_or_else(|e| panic!("{e}"));
    f.write_all(&b).unwrap_or_else(|e| panic!("{e}"));
}

/// Set the `firmware` section of a daemon configuration: machine `sim`,
/// the kit's key trusted, sim slots of `slot_size` bytes written at
/// `write_bytes_per_s` (0 = as fast as the disk goes).
pub fn set_firmware(cfg: &mut Value, kit: &FwKit, slot_size: u64, write_bytes_per_s: u64) {
    cfg["firmware"] = json!({
        "machine": "sim",
        "keys_dir": kit.keys_dir(),
        "storage": {
            "type": "sim",
            "slot_size": slot_size,
            "write_bytes_per_s": write_bytes_per_s,
        }
    });
}

/// The file that holds sim slot `slot` under the daemon's state directory.
pub fn sim_slot(state_dir: &Path, slot: &str) -> PathBuf {
    state_dir.join("sim-firmware").join(format!("{slot}.img"))
}
