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
use std::time::{Duration, Instant};

use bmcd_image::{ImageMeta, PayloadSource, SigningKey};
use serde_json::{json, Value};

use bmcd_api::zbus::blocking::fdo::IntrospectableProxy;
use bmcd_api::zbus::proxy::CacheProperties;
use bmcd_api::zbus::zvariant::{Fd, OwnedObjectPath, Value as ZValue};
use bmcd_api::{
    FirmwareManagerProxyBlocking, FirmwareProxyBlocking, FirmwareState, TaskProxyBlocking,
    TaskState,
};

use crate::env::Env;
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

// ----- Driving updates on the bus (kill -9, RSS and other firmware tests) -----

/// `FirmwareManager1` without property caching (every read asks bmcd).
pub fn manager(env: &Env) -> FirmwareManagerProxyBlocking<'static> {
    FirmwareManagerProxyBlocking::builder(env.conn())
        .cache_properties(CacheProperties::No)
        .build()
        .unwrap_or_else(|e| panic!("firmware manager proxy: {e}"))
}

/// `Firmware1` of slot `slot` without property caching.
pub fn slot_proxy(env: &Env, slot: &str) -> FirmwareProxyBlocking<'static> {
    let path = bmcd_api::firmware_path(slot).unwrap_or_else(|| panic!("bad slot name {slot}"));
    FirmwareProxyBlocking::builder(env.conn())
        .path(path)
        .unwrap_or_else(|e| panic!("slot path: {e}"))
        .cache_properties(CacheProperties::No)
        .build()
        .unwrap_or_else(|e| panic!("firmware proxy: {e}"))
}

/// `Task1` at `path` without property caching.
pub fn task_proxy(env: &Env, path: &str) -> TaskProxyBlocking<'static> {
    TaskProxyBlocking::builder(env.conn())
        .path(path.to_owned())
        .unwrap_or_else(|e| panic!("task path {path}: {e}"))
        .cache_properties(CacheProperties::No)
        .build()
        .unwrap_or_else(|e| panic!("task proxy: {e}"))
}

/// `StartUpdate` with the image at `image` (opened here, passed as a
/// descriptor) and `activate` as the only option.
pub fn start_update(env: &Env, image: &Path, activate: bool) -> bmcd_api::Result<OwnedObjectPath> {
    let f = File::open(image).unwrap_or_else(|e| panic!("{}: {e}", image.display()));
    let mut opts = std::collections::HashMap::new();
    opts.insert(bmcd_api::update_options::ACTIVATE, ZValue::from(activate));
    manager(env).start_update(Fd::from(&f), opts)
}

/// What a slot's `Firmware1` says, read property by property (`None` where
/// a read failed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotView {
    pub slot: String,
    pub state: Option<FirmwareState>,
    pub digest: Option<String>,
    pub size: Option<u64>,
    pub version: Option<String>,
}

/// Read slot `slot`'s properties.
pub fn slot_view(env: &Env, slot: &str) -> SlotView {
    let p = slot_proxy(env, slot);
    SlotView {
        slot: slot.into(),
        state: p.state().ok(),
        digest: p.digest().ok(),
        size: p.size().ok(),
        version: p.version().ok(),
    }
}

/// Whether `v` is a bootable state (`Active`, `Backup`, `Staged`).
pub fn is_good_state(s: FirmwareState) -> bool {
    matches!(
        s,
        FirmwareState::Active | FirmwareState::Backup | FirmwareState::Staged
    )
}

/// Poll task `path` until its state is final (or `timeout` passes, a
/// panic); returns that state.
pub fn wait_task_final(env: &Env, path: &str, timeout: Duration) -> TaskState {
    let t = task_proxy(env, path);
    let start = Instant::now();
    loop {
        if let Ok(s) = t.state() {
            if s.is_final() {
                return s;
            }
        }
        if start.elapsed() > timeout {
            panic!(
                "task {path} not finished within {timeout:?} (state {:?}, phase {:?}, progress {:?})",
                t.state().ok(),
                t.phase().ok(),
                t.progress().ok()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The paths of every task object the daemon serves now.
pub fn task_paths(env: &Env) -> Vec<String> {
    let p = IntrospectableProxy::builder(env.conn())
        .destination(bmcd_api::BUS_NAME)
        .and_then(|b| b.path(bmcd_api::TASKS_PATH))
        .and_then(|b| b.build())
        .unwrap_or_else(|e| panic!("introspectable proxy: {e}"));
    // No task yet: the parent object may not exist.
    let Ok(xml) = p.introspect() else {
        return Vec::new();
    };
    crate::xml::child_nodes(&xml)
        .unwrap_or_else(|e| panic!("introspection of {}: {e}", bmcd_api::TASKS_PATH))
        .into_iter()
        .map(|n| format!("{}/{n}", bmcd_api::TASKS_PATH))
        .collect()
}

/// `VmRSS` of process `pid` in KiB (from `/proc/PID/status`).
pub fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

/// The slot's `state` as persisted in `<state_dir>/firmware.json`, read
/// without knowing the file's exact layout: an object under the slot's
/// name, or one whose `name`/`slot` is the slot's name, with a string
/// `state`. `None` if the file or the slot is missing.
pub fn persisted_state(state_dir: &Path, slot: &str) -> Option<String> {
    let text = std::fs::read_to_string(state_dir.join("firmware.json")).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    fn find(v: &Value, slot: &str, key: Option<&str>) -> Option<String> {
        match v {
            Value::Object(m) => {
                let named = key == Some(slot)
                    || m.get("name").and_then(Value::as_str) == Some(slot)
                    || m.get("slot").and_then(Value::as_str) == Some(slot);
                if named {
                    if let Some(s) = m.get("state").and_then(Value::as_str) {
                        return Some(s.to_owned());
                    }
                }
                m.iter().find_map(|(k, v)| find(v, slot, Some(k)))
            }
            Value::Array(a) => a.iter().find_map(|v| find(v, slot, None)),
            _ => None,
        }
    }
    find(&v, slot, None)
}

/// A small seeded generator (xorshift64*) for tests that pick random
/// moments: the seed comes from the environment variable `var` if set
/// (to replay a run), else from the clock; [`TestRng::seed`] tells it.
pub struct TestRng {
    seed: u64,
    state: u64,
}

impl TestRng {
    pub fn from_env(var: &str) -> TestRng {
        let seed = std::env::var(var)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
                    ^ u64::from(std::process::id())
            });
        TestRng::new(seed)
    }

    pub fn new(seed: u64) -> TestRng {
        TestRng {
            seed,
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
        }
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}
