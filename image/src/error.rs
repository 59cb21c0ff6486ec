use std::fmt;
use std::io;
use std::path::PathBuf;

/// Everything that can be wrong with an image, a key or a key file.
///
/// The daemon maps these to its D-Bus errors: [`ImageError::is_signature`]
/// → `InvalidSignature`, [`ImageError::Incompatible`] → `Incompatible`,
/// I/O errors as such, and the rest → `InvalidImage`.
#[derive(Debug)]
#[non_exhaustive]
pub enum ImageError {
    /// The file does not start with `BMCIMG`.
    BadMagic,
    /// A format version this code does not know.
    UnsupportedVersion(u8),
    /// The image ends early (`what` was being read).
    Truncated(&'static str),
    /// The manifest length field is above the limit.
    ManifestTooLarge { len: u32, max: u32 },
    /// The manifest is not valid (JSON, fields, payload entries).
    BadManifest(String),
    /// The signature's key id is not in the keyring.
    UnknownKey(crate::KeyId),
    /// The signature does not verify with the key of its key id.
    BadSignature(crate::KeyId),
    /// A payload's SHA-256 differs from the manifest.
    DigestMismatch { payload: String },
    /// A payload's size differs from the manifest (or a source changed
    /// between the two passes of packing).
    SizeMismatch {
        payload: String,
        expected: u64,
        actual: u64,
    },
    /// Bytes after the last payload.
    TrailingData,
    /// The image is not for this machine.
    Incompatible {
        machine: String,
        compatible: Vec<String>,
    },
    /// A key file could not be read, parsed or written.
    KeyFile { path: PathBuf, reason: String },
    /// Reading or writing the image.
    Io(io::Error),
}

impl ImageError {
    /// Whether the daemon should report this as a signature problem.
    pub fn is_signature(&self) -> bool {
        matches!(self, Self::UnknownKey(_) | Self::BadSignature(_))
    }

    /// Wrap as an `io::Error` (for [`std::io::Read`] implementations);
    /// [`ImageError::from_io`] gets it back.
    pub fn into_io(self) -> io::Error {
        match self {
            Self::Io(e) => e,
            other => io::Error::new(io::ErrorKind::InvalidData, other),
        }
    }

    /// Unwrap an `io::Error` made by [`ImageError::into_io`]; other I/O
    /// errors become [`ImageError::Io`].
    pub fn from_io(e: io::Error) -> Self {
        if e.get_ref().is_some_and(|inner| inner.is::<ImageError>()) {
            if let Some(inner) = e.into_inner() {
                if let Ok(img) = inner.downcast::<ImageError>() {
                    return *img;
                }
            }
            return Self::BadManifest("lost error".into());
        }
        Self::Io(e)
    }
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadMagic => write!(f, "not a bmcd image (bad magic)"),
            Self::UnsupportedVersion(v) => write!(f, "unsupported image format version {v}"),
            Self::Truncated(what) => write!(f, "image truncated (in the {what})"),
            Self::ManifestTooLarge { len, max } => {
                write!(f, "manifest length {len} is above the limit of {max} bytes")
            }
            Self::BadManifest(why) => write!(f, "invalid manifest: {why}"),
            Self::UnknownKey(id) => write!(f, "signed by an untrusted key (key id {id})"),
            Self::BadSignature(id) => write!(f, "bad signature (key id {id})"),
            Self::DigestMismatch { payload } => {
                write!(f, "payload {payload:?}: SHA-256 differs from the manifest")
            }
            Self::SizeMismatch {
                payload,
                expected,
                actual,
            } => write!(
                f,
                "payload {payload:?}: size {actual} differs from the expected {expected}"
            ),
            Self::TrailingData => write!(f, "unexpected bytes after the last payload"),
            Self::Incompatible {
                machine,
                compatible,
            } => write!(
                f,
                "image is for {} and not for this machine ({machine})",
                compatible.join(", ")
            ),
            Self::KeyFile { path, reason } => write!(f, "key file {}: {reason}", path.display()),
            Self::Io(e) => write!(f, "I/O error: {e}"),
        }
    }
}

impl std::error::Error for ImageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for ImageError {
    fn from(e: io::Error) -> Self {
        Self::from_io(e)
    }
}
