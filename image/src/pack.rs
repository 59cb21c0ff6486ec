use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use ed25519_dalek::{Signer, SigningKey};
use sha2::{Digest, Sha256};

use crate::manifest::hex;
use crate::{
    key_id, ImageError, Manifest, PayloadInfo, Result, FORMAT_VERSION, MAGIC, SIGNATURE_BLOCK_LEN,
};

/// The manifest fields given by the image builder.
#[derive(Debug, Clone)]
pub struct ImageMeta {
    pub component: String,
    pub version: String,
    pub build_date: String,
    pub compatible: Vec<String>,
}

/// A payload to pack: its name and a readable, seekable source (read twice).
pub struct PayloadSource<R> {
    pub name: String,
    pub reader: R,
}

const BUF: usize = 64 * 1024;

/// Hash and size of `r` from its current position to its end.
fn digest_of(r: &mut impl Read) -> io::Result<(u64, [u8; 32])> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; BUF];
    let mut total = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        h.update(&buf[..n]);
        total += n as u64;
    }
    Ok((total, h.finalize().into()))
}

/// Pack and sign an image, streaming: a first pass over each source
/// computes its size and SHA-256, then the header, signed manifest and
/// payloads are written to `out`. A source that changes between the passes
/// is an error. Returns the manifest written.
pub fn pack<R: Read + Seek, W: Write>(
    meta: &ImageMeta,
    payloads: &mut [PayloadSource<R>],
    key: &SigningKey,
    mut out: W,
) -> Result<Manifest> {
    let mut infos = Vec::with_capacity(payloads.len());
    let mut digests = Vec::with_capacity(payloads.len());
    for p in payloads.iter_mut() {
        let start = p.reader.stream_position()?;
        let (size, d) = digest_of(&mut p.reader)?;
        p.reader.seek(SeekFrom::Start(start))?;
        infos.push(PayloadInfo {
            name: p.name.clone(),
            size,
            sha256: hex(&d),
        });
        digests.push((size, d));
    }
    let manifest = Manifest {
        format: FORMAT_VERSION,
        component: meta.component.clone(),
        version: meta.version.clone(),
        build_date: meta.build_date.clone(),
        compatible: meta.compatible.clone(),
        payloads: infos,
    };
    let bytes = manifest.to_bytes()?;
    let sig = key.sign(&bytes);
    let len = u32::try_from(bytes.len()).map_err(|_| ImageError::ManifestTooLarge {
        len: u32::MAX,
        max: crate::MAX_MANIFEST_LEN,
    })?;
    out.write_all(MAGIC)?;
    out.write_all(&[FORMAT_VERSION])?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(&bytes)?;
    let mut block = [0u8; SIGNATURE_BLOCK_LEN];
    block[..8].copy_from_slice(&key_id(&key.verifying_key()).0);
    block[8..].copy_from_slice(&sig.to_bytes());
    out.write_all(&block)?;
    for (p, (size, d)) in payloads.iter_mut().zip(digests) {
        let mut h = HashingWriter {
            inner: &mut out,
            hasher: Sha256::new(),
        };
        let copied = io::copy(&mut p.reader, &mut h)?;
        let again: [u8; 32] = h.hasher.finalize().into();
        if copied != size {
            return Err(ImageError::SizeMismatch {
                payload: p.name.clone(),
                expected: size,
                actual: copied,
            });
        }
        if again != d {
            return Err(ImageError::DigestMismatch {
                payload: p.name.clone(),
            });
        }
    }
    out.flush()?;
    Ok(manifest)
}

struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// [`pack`] with payload files; a payload is named after its file name.
/// Errors opening a file name it.
pub fn pack_files<W: Write>(
    meta: &ImageMeta,
    files: &[PathBuf],
    key: &SigningKey,
    out: W,
) -> Result<Manifest> {
    let mut sources = Vec::with_capacity(files.len());
    for path in files {
        let reader = File::open(path).map_err(|e| {
            ImageError::Io(io::Error::new(e.kind(), format!("{}: {e}", path.display())))
        })?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        sources.push(PayloadSource { name, reader });
    }
    pack(meta, &mut sources, key, out)
}
