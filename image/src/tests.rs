use std::io::{Cursor, Read};

use super::*;

fn meta() -> ImageMeta {
    ImageMeta {
        component: "bmc".into(),
        version: "1.2.3".into(),
        build_date: "2026-12-03T08:00:00Z".into(),
        compatible: vec!["sim".into(), "board-a".into()],
    }
}

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn payload_a() -> Vec<u8> {
    (0..200_000u32).map(|i| (i % 251) as u8).collect()
}

fn image(k: &SigningKey) -> Vec<u8> {
    let mut out = Vec::new();
    let mut sources = vec![
        PayloadSource {
            name: "rootfs".into(),
            reader: Cursor::new(payload_a()),
        },
        PayloadSource {
            name: "empty".into(),
            reader: Cursor::new(Vec::new()),
        },
        PayloadSource {
            name: "kernel".into(),
            reader: Cursor::new(b"kernel!".to_vec()),
        },
    ];
    pack(&meta(), &mut sources, k, &mut out).expect("pack");
    out
}

fn ring(k: &SigningKey) -> Keyring {
    let mut r = Keyring::new();
    r.add(k.verifying_key());
    r
}

fn manifest_len(img: &[u8]) -> usize {
    u32::from_le_bytes([img[7], img[8], img[9], img[10]]) as usize
}

/// Read the whole stream with a small buffer; the error, if any.
fn drain(mut s: impl Read) -> (Vec<u8>, Option<ImageError>) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (got, None),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => return (got, Some(ImageError::from_io(e))),
        }
    }
}

#[test]
fn round_trip() {
    let k = key(1);
    let img = image(&k);
    let (v, mut s) = ImageReader::open(Cursor::new(&img), &ring(&k)).expect("open");
    assert_eq!(v.key_id, key_id(&k.verifying_key()));
    assert_eq!(v.manifest.payloads.len(), 3);
    assert_eq!(v.manifest.payloads[0].sha256, sha256_hex(&payload_a()));
    v.manifest.check_machine("board-a").expect("compatible");
    assert!(matches!(
        v.manifest.check_machine("other"),
        Err(ImageError::Incompatible { .. })
    ));
    let mut got = Vec::new();
    s.read_to_end(&mut got).expect("payloads");
    let mut want = payload_a();
    want.extend_from_slice(b"kernel!");
    assert_eq!(got, want);
    assert!(s.is_verified());
}

#[test]
fn tampered_manifest_is_refused_before_any_payload_byte() {
    let k = key(1);
    let mut img = image(&k);
    // A byte inside the version string.
    let pos = 11
        + img[11..]
            .windows(5)
            .position(|w| w == b"1.2.3")
            .expect("version")
        + 2;
    img[pos] = b'9';
    let mut cursor = Cursor::new(&img);
    let err = ImageReader::open(&mut cursor, &ring(&k))
        .err()
        .expect("refused");
    assert!(matches!(err, ImageError::BadSignature(_)), "{err}");
    // Nothing past the signature block was consumed.
    assert_eq!(cursor.position() as usize, 11 + manifest_len(&img) + 72);
}

#[test]
fn tampered_signature_is_refused() {
    let k = key(1);
    let mut img = image(&k);
    let pos = 11 + manifest_len(&img) + 8 + 5;
    img[pos] ^= 1;
    let err = ImageReader::open(Cursor::new(&img), &ring(&k))
        .err()
        .expect("refused");
    assert!(matches!(err, ImageError::BadSignature(_)), "{err}");
}

#[test]
fn tampered_payload_fails_at_the_end_of_the_payload() {
    let k = key(1);
    let mut img = image(&k);
    let start = 11 + manifest_len(&img) + 72;
    img[start + 1000] ^= 0x40;
    let (_, s) = ImageReader::open(Cursor::new(&img), &ring(&k)).expect("header is fine");
    let (got, err) = drain(s);
    assert!(
        matches!(&err, Some(ImageError::DigestMismatch { payload }) if payload == "rootfs"),
        "{err:?}"
    );
    // Every byte but the failing read's was handed out; none of the next payload.
    assert!(got.len() < payload_a().len());
}

#[test]
fn unknown_key() {
    let img = image(&key(1));
    let err = ImageReader::open(Cursor::new(&img), &ring(&key(2)))
        .err()
        .expect("refused");
    assert!(matches!(err, ImageError::UnknownKey(id) if id == key_id(&key(1).verifying_key())));
    assert!(err.is_signature());
    let err = ImageReader::open(Cursor::new(&img), &Keyring::new())
        .err()
        .expect("refused");
    assert!(matches!(err, ImageError::UnknownKey(_)));
}

#[test]
fn wrong_magic_and_version() {
    let k = key(1);
    let mut img = image(&k);
    img[6] = 2;
    let err = ImageReader::open(Cursor::new(&img), &ring(&k))
        .err()
        .expect("refused");
    assert!(matches!(err, ImageError::UnsupportedVersion(2)), "{err}");
    img[0] = b'X';
    let err = ImageReader::open(Cursor::new(&img), &ring(&k))
        .err()
        .expect("refused");
    assert!(matches!(err, ImageError::BadMagic), "{err}");
    let err = ImageReader::open(Cursor::new(b"hello"), &ring(&k))
        .err()
        .expect("refused");
    assert!(matches!(err, ImageError::BadMagic), "{err}");
    let err = ImageReader::open(Cursor::new(b""), &ring(&k))
        .err()
        .expect("refused");
    assert!(matches!(err, ImageError::BadMagic), "{err}");
}

#[test]
fn truncated_anywhere() {
    let k = key(1);
    let img = image(&k);
    let header_end = 11 + manifest_len(&img) + 72;
    for cut in [3, 6, 7, 10, 11, 50, header_end - 1] {
        let err = ImageReader::open(Cursor::new(&img[..cut]), &ring(&k))
            .err()
            .expect("refused");
        assert!(
            matches!(err, ImageError::Truncated(_) | ImageError::BadMagic),
            "cut {cut}: {err}"
        );
        if cut >= 7 {
            assert!(matches!(err, ImageError::Truncated(_)), "cut {cut}: {err}");
        }
    }
    for cut in [header_end, header_end + 10, img.len() - 1] {
        let (_, s) = ImageReader::open(Cursor::new(&img[..cut]), &ring(&k)).expect("header");
        let (_, err) = drain(s);
        assert!(
            matches!(err, Some(ImageError::SizeMismatch { .. })),
            "cut {cut}: {err:?}"
        );
    }
}

#[test]
fn trailing_bytes_are_refused() {
    let k = key(1);
    let mut img = image(&k);
    img.push(0);
    let (_, s) = ImageReader::open(Cursor::new(&img), &ring(&k)).expect("header");
    let (_, err) = drain(s);
    assert!(matches!(err, Some(ImageError::TrailingData)), "{err:?}");
}

/// A reader that claims a 4 GiB manifest and then fails any read: the
/// length is refused before anything is allocated or read for it.
#[test]
fn huge_manifest_length_is_refused_without_allocating() {
    struct Header([u8; 11], usize);
    impl Read for Header {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.1 >= self.0.len() {
                return Err(std::io::Error::other("read past the header"));
            }
            let n = buf.len().min(self.0.len() - self.1);
            buf[..n].copy_from_slice(&self.0[self.1..self.1 + n]);
            self.1 += n;
            Ok(n)
        }
    }
    let mut h = [0u8; 11];
    h[..6].copy_from_slice(MAGIC);
    h[6] = 1;
    h[7..].copy_from_slice(&u32::MAX.to_le_bytes());
    let err = ImageReader::open(Header(h, 0), &Keyring::new())
        .err()
        .expect("refused");
    assert!(
        matches!(err, ImageError::ManifestTooLarge { len: u32::MAX, .. }),
        "{err}"
    );
    h[7..].copy_from_slice(&(MAX_MANIFEST_LEN + 1).to_le_bytes());
    let err = ImageReader::open(Header(h, 0), &Keyring::new())
        .err()
        .expect("refused");
    assert!(matches!(err, ImageError::ManifestTooLarge { .. }), "{err}");
}

#[test]
fn signed_but_invalid_manifest_is_bad_manifest() {
    let k = key(1);
    let body = br#"{"format":1,"component":"bmc"}"#;
    let mut img = Vec::new();
    img.extend_from_slice(MAGIC);
    img.push(1);
    img.extend_from_slice(&(body.len() as u32).to_le_bytes());
    img.extend_from_slice(body);
    img.extend_from_slice(&key_id(&k.verifying_key()).0);
    img.extend_from_slice(&ed25519_dalek::Signer::sign(&k, body).to_bytes());
    let err = ImageReader::open(Cursor::new(&img), &ring(&k))
        .err()
        .expect("refused");
    assert!(matches!(err, ImageError::BadManifest(_)), "{err}");
}

#[test]
fn key_files_round_trip_and_bad_files_are_named() {
    let dir = std::env::temp_dir().join(format!("bmcd-image-keys-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let k = generate_signing_key().expect("key");
    let (priv_path, pub_path) = write_key_pair(&k, &dir, "test").expect("write");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&priv_path)
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        read_signing_key(&priv_path).expect("priv").to_bytes(),
        k.to_bytes()
    );
    assert_eq!(
        read_verifying_key(&pub_path).expect("pub"),
        k.verifying_key()
    );
    assert!(
        write_key_pair(&k, &dir, "test").is_err(),
        "never overwrites"
    );
    let ring = Keyring::load_dir(&dir).expect("ring");
    assert_eq!(ring.len(), 1);
    std::fs::write(dir.join("junk.pub"), "not a key").expect("write");
    let err = Keyring::load_dir(&dir).expect_err("bad file");
    assert!(matches!(&err, ImageError::KeyFile { path, .. } if path.ends_with("junk.pub")));
    assert!(err.to_string().contains("junk.pub"));
    let _ = std::fs::remove_dir_all(&dir);
}
