use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use base64ct::{Base64, Encoding};
use ed25519_dalek::VerifyingKey;
use sha2::{Digest, Sha256};

use crate::manifest::hex;
use crate::{ImageError, Result};

/// A key's id: the first 8 bytes of the SHA-256 of its 32-byte public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId(pub [u8; 8]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

/// The id of `key`.
pub fn key_id(key: &VerifyingKey) -> KeyId {
    let d = Sha256::digest(key.as_bytes());
    let mut id = [0u8; 8];
    id.copy_from_slice(&d[..8]);
    KeyId(id)
}

/// Trusted public keys.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    keys: Vec<(KeyId, VerifyingKey)>,
}

impl Keyring {
    /// An empty keyring (trusts nothing).
    pub fn new() -> Self {
        Self::default()
    }

    /// Trust `key` too.
    pub fn add(&mut self, key: VerifyingKey) {
        let id = key_id(&key);
        if !self.keys.iter().any(|(i, _)| *i == id) {
            self.keys.push((id, key));
        }
    }

    /// Every `*.pub` file of `dir` (PEM SubjectPublicKeyInfo); a bad file
    /// is an error naming it. Other files are ignored.
    pub fn load_dir(dir: &Path) -> Result<Self> {
        let key_err = |path: &Path, reason: String| ImageError::KeyFile {
            path: path.to_owned(),
            reason,
        };
        let entries = fs::read_dir(dir).map_err(|e| key_err(dir, e.to_string()))?;
        let mut paths: Vec<PathBuf> = Vec::new();
        for entry in entries {
            let path = entry.map_err(|e| key_err(dir, e.to_string()))?.path();
            if path.extension().is_some_and(|e| e == "pub") {
                paths.push(path);
            }
        }
        paths.sort();
        let mut ring = Self::new();
        for p in paths {
            ring.add(read_verifying_key(&p)?);
        }
        Ok(ring)
    }

    /// The key of `id`, if trusted.
    pub fn get(&self, id: &KeyId) -> Option<&VerifyingKey> {
        self.keys.iter().find(|(i, _)| i == id).map(|(_, k)| k)
    }

    /// Ids of the trusted keys.
    pub fn ids(&self) -> impl Iterator<Item = KeyId> + '_ {
        self.keys.iter().map(|(i, _)| *i)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

fn read_text(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|e| ImageError::KeyFile {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): SEQUENCE
/// { SEQUENCE { OID 1.3.101.112 }, BIT STRING (0 unused bits) }; the
/// 32-byte key follows. The whole DER is exactly 44 bytes.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];
const SPKI_LEN: usize = 44;
const PEM_BEGIN: &str = "-----BEGIN PUBLIC KEY-----";
const PEM_END: &str = "-----END PUBLIC KEY-----";

/// The 32 key bytes of a PEM "PUBLIC KEY" block holding an Ed25519
/// SubjectPublicKeyInfo. Hand-written on purpose: the format is fixed (44
/// bytes of DER), and the general pkcs8/spki/der/pem parsers cost bmcd
/// ~84 KiB. Surrounding whitespace and LF or CRLF line ends are accepted;
/// anything else (other labels, text around the block, bad base64, another
/// algorithm or length) is refused.
pub(crate) fn parse_public_key_pem(text: &str) -> std::result::Result<[u8; 32], String> {
    let mut lines = text
        .trim()
        .lines()
        .map(|l| l.trim_end_matches([' ', '\t', '\r']));
    if lines.next() != Some(PEM_BEGIN) {
        return Err(format!("expected a PEM block starting with {PEM_BEGIN}"));
    }
    let mut body = String::new();
    let mut ended = false;
    for line in lines {
        if ended {
            return Err(format!("text after {PEM_END}"));
        }
        if line == PEM_END {
            ended = true;
        } else if line.starts_with("-----") {
            return Err(format!("unexpected PEM line {line:?}"));
        } else if body.len() + line.len() > 4 * SPKI_LEN {
            return Err(format!(
                "key longer than the {SPKI_LEN} bytes of an Ed25519 key"
            ));
        } else {
            body.push_str(line);
        }
    }
    if !ended {
        return Err(format!("missing {PEM_END}"));
    }
    let mut buf = [0u8; 3 * SPKI_LEN];
    let der = Base64::decode(body.as_bytes(), &mut buf).map_err(|e| format!("bad base64: {e}"))?;
    if der.len() != SPKI_LEN {
        return Err(format!(
            "{} bytes of DER, an Ed25519 SubjectPublicKeyInfo has {SPKI_LEN}",
            der.len()
        ));
    }
    if der[..SPKI_PREFIX.len()] != SPKI_PREFIX {
        return Err("not an Ed25519 SubjectPublicKeyInfo (wrong DER prefix)".into());
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(&der[SPKI_PREFIX.len()..]);
    Ok(key)
}

/// A public key file: PEM SubjectPublicKeyInfo (`openssl pkey -pubout`).
pub fn read_verifying_key(path: &Path) -> Result<VerifyingKey> {
    let err = |reason: String| ImageError::KeyFile {
        path: path.to_owned(),
        reason: format!("not a PEM Ed25519 public key: {reason}"),
    };
    let text = read_text(path)?;
    let bytes = parse_public_key_pem(&text).map_err(err)?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| err(e.to_string()))
}

#[cfg(feature = "keygen")]
pub use keygen::{generate_signing_key, read_signing_key, write_key_pair};

/// Private keys (PKCS#8) and key generation: for `bmcimage` and tests,
/// not linked into bmcd.
#[cfg(feature = "keygen")]
mod keygen {
    use std::fs;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    use std::path::{Path, PathBuf};

    use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
    use ed25519_dalek::pkcs8::KeypairBytes;
    use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
    use ed25519_dalek::SigningKey;

    use super::read_text;
    use crate::{ImageError, Result};

    /// A private key file: PEM PKCS#8 (`openssl genpkey -algorithm ed25519`).
    pub fn read_signing_key(path: &Path) -> Result<SigningKey> {
        let text = zeroize_string(read_text(path)?);
        SigningKey::from_pkcs8_pem(text.0.trim()).map_err(|e| ImageError::KeyFile {
            path: path.to_owned(),
            reason: format!("not a PEM PKCS#8 Ed25519 private key: {e}"),
        })
    }

    /// Clears the string's bytes when dropped.
    struct Wipe(String);
    impl Drop for Wipe {
        fn drop(&mut self) {
            let s = std::mem::take(&mut self.0);
            let mut bytes = s.into_bytes();
            bytes.iter_mut().for_each(|b| *b = 0);
            std::hint::black_box(&bytes);
        }
    }
    fn zeroize_string(s: String) -> Wipe {
        Wipe(s)
    }

    /// A new key from the operating system's random source.
    pub fn generate_signing_key() -> Result<SigningKey> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed)
            .map_err(|e| ImageError::Io(std::io::Error::other(format!("random source: {e}"))))?;
        let key = SigningKey::from_bytes(&seed);
        seed.iter_mut().for_each(|b| *b = 0);
        std::hint::black_box(&seed);
        Ok(key)
    }

    /// Write `dir/NAME.key` (PKCS#8 PEM, mode 0600) and `dir/NAME.pub`
    /// (SubjectPublicKeyInfo PEM). Neither file may exist yet. Returns the
    /// two paths.
    pub fn write_key_pair(key: &SigningKey, dir: &Path, name: &str) -> Result<(PathBuf, PathBuf)> {
        let priv_path = dir.join(format!("{name}.key"));
        let pub_path = dir.join(format!("{name}.pub"));
        let err = |path: &Path, reason: String| ImageError::KeyFile {
            path: path.to_owned(),
            reason,
        };
        // PKCS#8 v1 (no public key inside), as `openssl genpkey` writes it:
        // OpenSSL 3.0 cannot read the v2 form.
        let v1 = KeypairBytes {
            secret_key: key.to_bytes(),
            public_key: None,
        };
        let pem = v1
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| err(&priv_path, e.to_string()))?;
        let pub_pem = key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| err(&pub_path, e.to_string()))?;
        if pub_path.exists() {
            return Err(err(&pub_path, "already exists".into()));
        }
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&priv_path)
            .map_err(|e| err(&priv_path, e.to_string()))?;
        f.write_all(pem.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| err(&priv_path, e.to_string()))?;
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&pub_path)
            .map_err(|e| err(&pub_path, e.to_string()))?;
        f.write_all(pub_pem.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| err(&pub_path, e.to_string()))?;
        Ok((priv_path, pub_path))
    }
}
