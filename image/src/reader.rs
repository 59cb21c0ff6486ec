use std::io::{self, Read};

use ed25519_dalek::Signature;
use sha2::{Digest, Sha256};

use crate::manifest::hex;
use crate::{
    ImageError, KeyId, Keyring, Manifest, Result, FORMAT_VERSION, HEADER_LEN, MAGIC,
    MAX_MANIFEST_LEN,
};

/// The parts of an image before the payloads, not yet verified.
#[derive(Debug, Clone)]
pub struct Header {
    /// The exact signed bytes.
    pub manifest_bytes: Vec<u8>,
    pub key_id: KeyId,
    pub signature: [u8; 64],
}

impl Header {
    /// Check the signature with the keyring (`verify_strict`), then parse
    /// the manifest.
    pub fn verify(&self, keyring: &Keyring) -> Result<Manifest> {
        let key = keyring
            .get(&self.key_id)
            .ok_or(ImageError::UnknownKey(self.key_id))?;
        let sig = Signature::from_bytes(&self.signature);
        key.verify_strict(&self.manifest_bytes, &sig)
            .map_err(|_| ImageError::BadSignature(self.key_id))?;
        Manifest::from_bytes(&self.manifest_bytes)
    }

    /// The manifest, parsed WITHOUT checking the signature (for display).
    pub fn unverified_manifest(&self) -> Result<Manifest> {
        Manifest::from_bytes(&self.manifest_bytes)
    }
}

fn read_exact_or(r: &mut impl Read, buf: &mut [u8], what: &'static str) -> Result<()> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => ImageError::Truncated(what),
        _ => ImageError::from_io(e),
    })
}

/// Read the header, manifest and signature block (nothing after them).
/// The manifest length is checked before anything is allocated for it.
pub fn read_header(r: &mut impl Read) -> Result<Header> {
    let mut fixed = [0u8; HEADER_LEN];
    // Magic first, so that a short non-image is BadMagic, not Truncated.
    let mut got = 0;
    while got < fixed.len() {
        match r.read(&mut fixed[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ImageError::from_io(e)),
        }
    }
    let magic_len = MAGIC.len().min(got);
    if fixed[..magic_len] != MAGIC[..magic_len] || got == 0 {
        return Err(ImageError::BadMagic);
    }
    if got < MAGIC.len() + 1 {
        return Err(ImageError::Truncated("header"));
    }
    if fixed[6] != FORMAT_VERSION {
        return Err(ImageError::UnsupportedVersion(fixed[6]));
    }
    if got < HEADER_LEN {
        return Err(ImageError::Truncated("header"));
    }
    let len = u32::from_le_bytes([fixed[7], fixed[8], fixed[9], fixed[10]]);
    if len > MAX_MANIFEST_LEN {
        return Err(ImageError::ManifestTooLarge {
            len,
            max: MAX_MANIFEST_LEN,
        });
    }
    let mut manifest_bytes = vec![0u8; len as usize];
    read_exact_or(r, &mut manifest_bytes, "manifest")?;
    let mut key_id = [0u8; 8];
    read_exact_or(r, &mut key_id, "signature block")?;
    let mut signature = [0u8; 64];
    read_exact_or(r, &mut signature, "signature block")?;
    Ok(Header {
        manifest_bytes,
        key_id: KeyId(key_id),
        signature,
    })
}

/// What [`ImageReader::open`] has checked.
#[derive(Debug, Clone)]
pub struct VerifiedImage {
    pub manifest: Manifest,
    /// The trusted key that signed it.
    pub key_id: KeyId,
}

/// Opens images.
pub struct ImageReader;

impl ImageReader {
    /// Read and verify the header, signature and manifest; only then return
    /// the payload stream. Nothing of the payloads has been read yet.
    pub fn open<R: Read>(mut r: R, keyring: &Keyring) -> Result<(VerifiedImage, PayloadStream<R>)> {
        let header = read_header(&mut r)?;
        let manifest = header.verify(keyring)?;
        let stream = PayloadStream::new(r, &manifest);
        Ok((
            VerifiedImage {
                manifest,
                key_id: header.key_id,
            },
            stream,
        ))
    }
}

/// The payload bytes of a verified image, hashed while read.
///
/// `read` returns the payloads' bytes in manifest order. The read that
/// completes a payload fails (`InvalidData` wrapping
/// [`ImageError::DigestMismatch`]; see [`ImageError::from_io`]) if its
/// SHA-256 differs; an early end is [`ImageError::SizeMismatch`], and bytes
/// after the last payload are [`ImageError::TrailingData`]. Only a stream
/// that returned `Ok(0)` has been fully verified ([`PayloadStream::is_verified`]).
pub struct PayloadStream<R> {
    inner: R,
    payloads: Vec<(String, u64, [u8; 32])>,
    index: usize,
    remaining: u64,
    hasher: Sha256,
    failed: bool,
    verified: bool,
}

impl<R: Read> PayloadStream<R> {
    /// A stream over payloads described by a manifest whose signature was
    /// NOT checked, for display tools (`bmcimage inspect` without keys).
    /// Never write these bytes anywhere that matters; use
    /// [`ImageReader::open`].
    pub fn unauthenticated(inner: R, manifest: &Manifest) -> Self {
        Self::new(inner, manifest)
    }

    fn new(inner: R, manifest: &Manifest) -> Self {
        let payloads: Vec<_> = manifest
            .payloads
            .iter()
            .map(|p| {
                let mut d = [0u8; 32];
                for (i, byte) in d.iter_mut().enumerate() {
                    *byte = u8::from_str_radix(p.sha256.get(2 * i..2 * i + 2).unwrap_or("zz"), 16)
                        .unwrap_or(0);
                }
                (p.name.clone(), p.size, d)
            })
            .collect();
        let remaining = payloads.first().map_or(0, |p| p.1);
        Self {
            inner,
            payloads,
            index: 0,
            remaining,
            hasher: Sha256::new(),
            failed: false,
            verified: false,
        }
    }

    /// The name and size of the payload being read (None at the end).
    pub fn current_payload(&self) -> Option<(&str, u64)> {
        self.payloads.get(self.index).map(|p| (p.0.as_str(), p.1))
    }

    /// Whether every payload was read and matched, and nothing followed.
    pub fn is_verified(&self) -> bool {
        self.verified
    }

    /// Read to the end, discarding the bytes: verify the whole image.
    pub fn verify_all(&mut self) -> Result<u64> {
        io::copy(self, &mut io::sink()).map_err(ImageError::from_io)
    }

    fn fail(&mut self, e: ImageError) -> io::Error {
        self.failed = true;
        e.into_io()
    }

    /// Finish the current payload (remaining == 0) and move to the next.
    fn finish_payload(&mut self) -> io::Result<()> {
        let digest = std::mem::take(&mut self.hasher).finalize();
        let Some((name, _, want)) = self.payloads.get(self.index) else {
            return Ok(());
        };
        if digest.as_slice() != want {
            let payload = name.clone();
            return Err(self.fail(ImageError::DigestMismatch { payload }));
        }
        self.index += 1;
        self.remaining = self.payloads.get(self.index).map_or(0, |p| p.1);
        Ok(())
    }

    /// Move past finished (and empty) payloads; at the end, check that the
    /// input has nothing more.
    fn settle(&mut self) -> io::Result<bool> {
        while self.remaining == 0 && self.index < self.payloads.len() {
            self.finish_payload()?;
        }
        if self.index < self.payloads.len() {
            return Ok(false);
        }
        if !self.verified {
            let mut one = [0u8; 1];
            loop {
                match self.inner.read(&mut one) {
                    Ok(0) => break,
                    Ok(_) => return Err(self.fail(ImageError::TrailingData)),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            self.verified = true;
        }
        Ok(true)
    }
}

impl<R: Read> Read for PayloadStream<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.failed {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "image payload stream already failed",
            ));
        }
        if buf.is_empty() {
            return Ok(0);
        }
        if self.settle()? {
            return Ok(0);
        }
        let want = usize::try_from(self.remaining)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = loop {
            match self.inner.read(&mut buf[..want]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => break other?,
            }
        };
        if n == 0 {
            let (payload, expected) = self
                .payloads
                .get(self.index)
                .map(|p| (p.0.clone(), p.1))
                .unwrap_or_default();
            let actual = expected - self.remaining;
            return Err(self.fail(ImageError::SizeMismatch {
                payload,
                expected,
                actual,
            }));
        }
        self.hasher.update(&buf[..n]);
        self.remaining -= n as u64;
        if self.remaining == 0 {
            // The read that completes a payload fails if its digest differs.
            self.finish_payload()?;
        }
        Ok(n)
    }
}

/// Lower-case hex SHA-256 of `bytes` (for tools and tests).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}
