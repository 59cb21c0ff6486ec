//! The signed firmware image format of bmcd, version 1 (see
//! `docs/image-format.md`).
//!
//! ```text
//! "BMCIMG" | version u8 (1) | manifest length u32 LE (<= 64 KiB)
//! | manifest (canonical JSON) | key id (8 bytes) | Ed25519 signature (64 bytes)
//! | payload bytes, concatenated in manifest order
//! ```
//!
//! The signature covers the manifest bytes only; the manifest lists each
//! payload's size and SHA-256. [`ImageReader::open`] reads and checks the
//! header, the signature and the manifest before it hands out a
//! [`PayloadStream`], which hashes the payloads as they are read and fails
//! at the end of a payload whose digest or size differs. Memory does not
//! grow with the image size. Used by bmcd (later) and by `bmcimage`.
#![forbid(unsafe_code)]

mod error;
mod keys;
mod manifest;
mod pack;
mod reader;

pub use error::ImageError;
#[cfg(feature = "keygen")]
pub use keys::{generate_signing_key, read_signing_key, write_key_pair};
pub use keys::{key_id, read_verifying_key, KeyId, Keyring};
pub use manifest::{hex, Manifest, PayloadInfo};
pub use pack::{pack, pack_files, ImageMeta, PayloadSource};
pub use reader::{read_header, sha256_hex, Header, ImageReader, PayloadStream, VerifiedImage};

pub use ed25519_dalek::{SigningKey, VerifyingKey};

/// The first bytes of every image.
pub const MAGIC: &[u8; 6] = b"BMCIMG";
/// The format version this crate reads and writes.
pub const FORMAT_VERSION: u8 = 1;
/// The largest manifest accepted (and written).
pub const MAX_MANIFEST_LEN: u32 = 64 * 1024;
/// Length of the fixed header: magic, version, manifest length.
pub const HEADER_LEN: usize = 6 + 1 + 4;
/// Length of the signature block: key id and signature.
pub const SIGNATURE_BLOCK_LEN: usize = 8 + 64;

/// Result with [`ImageError`].
pub type Result<T, E = ImageError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests;
