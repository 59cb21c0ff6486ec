use serde::{Deserialize, Serialize};

use crate::{ImageError, Result, FORMAT_VERSION, MAX_MANIFEST_LEN};

/// The signed description of an image. Serialized as compact JSON with the
/// fields in this order (the bytes, not the parse, are what is signed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT_VERSION`].
    pub format: u8,
    /// What the image updates, e.g. `bmc`.
    pub component: String,
    /// The firmware version.
    pub version: String,
    /// The build date, as given by the builder (e.g. RFC 3339).
    pub build_date: String,
    /// Machine names this image may be installed on.
    pub compatible: Vec<String>,
    /// The payloads, in the order their bytes follow the signature.
    pub payloads: Vec<PayloadInfo>,
}

/// One payload of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayloadInfo {
    pub name: String,
    pub size: u64,
    /// Lower-case hex SHA-256 of the payload bytes.
    pub sha256: String,
}

impl Manifest {
    /// Parse and check manifest bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let m: Manifest =
            serde_json::from_slice(bytes).map_err(|e| ImageError::BadManifest(e.to_string()))?;
        m.check()?;
        Ok(m)
    }

    /// The canonical bytes (compact JSON), checked.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        self.check()?;
        let bytes = serde_json::to_vec(self).map_err(|e| ImageError::BadManifest(e.to_string()))?;
        if bytes.len() > MAX_MANIFEST_LEN as usize {
            return Err(ImageError::ManifestTooLarge {
                len: u32::try_from(bytes.len()).unwrap_or(u32::MAX),
                max: MAX_MANIFEST_LEN,
            });
        }
        Ok(bytes)
    }

    /// The fields' rules: format 1, non-empty words, at least one machine
    /// and one payload, unique payload names, 64-hex-digit digests.
    pub fn check(&self) -> Result<()> {
        let bad = |s: String| Err(ImageError::BadManifest(s));
        if self.format != FORMAT_VERSION {
            return bad(format!(
                "format {} (expected {FORMAT_VERSION})",
                self.format
            ));
        }
        for (field, v) in [
            ("component", &self.component),
            ("version", &self.version),
            ("build_date", &self.build_date),
        ] {
            if v.is_empty() {
                return bad(format!("empty {field}"));
            }
        }
        if self.compatible.is_empty() || self.compatible.iter().any(String::is_empty) {
            return bad("no compatible machine, or an empty name".into());
        }
        if self.payloads.is_empty() {
            return bad("no payload".into());
        }
        for (i, p) in self.payloads.iter().enumerate() {
            if p.name.is_empty() {
                return bad(format!("payload {i} has no name"));
            }
            if self.payloads[..i].iter().any(|q| q.name == p.name) {
                return bad(format!("payload name {:?} repeated", p.name));
            }
            if p.sha256.len() != 64
                || !p
                    .sha256
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            {
                return bad(format!(
                    "payload {:?}: sha256 is not 64 lower-case hex digits",
                    p.name
                ));
            }
        }
        if self
            .payloads
            .iter()
            .try_fold(0u64, |acc, p| acc.checked_add(p.size))
            .is_none()
        {
            return bad("payload sizes overflow".into());
        }
        Ok(())
    }

    /// Total payload bytes.
    pub fn payload_len(&self) -> u64 {
        self.payloads.iter().map(|p| p.size).sum()
    }

    /// Fails with [`ImageError::Incompatible`] unless `machine` is listed.
    pub fn check_machine(&self, machine: &str) -> Result<()> {
        if self.compatible.iter().any(|m| m == machine) {
            Ok(())
        } else {
            Err(ImageError::Incompatible {
                machine: machine.to_owned(),
                compatible: self.compatible.clone(),
            })
        }
    }
}

/// Lower-case hex of `bytes`, as digests are spelled in manifests and on
/// the bus.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}
