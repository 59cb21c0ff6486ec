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

mod pem {
    use crate::keys::parse_public_key_pem;

    // `openssl genpkey -algorithm ed25519 | openssl pkey -pubout`
    const OPENSSL: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAoRD7XlGPCVWuZvq+eUQRlETuWa6zXF+tP859qhNvYzg=\n-----END PUBLIC KEY-----\n";
    const KEY: [u8; 32] = [
        0xa1, 0x10, 0xfb, 0x5e, 0x51, 0x8f, 0x09, 0x55, 0xae, 0x66, 0xfa, 0xbe, 0x79, 0x44, 0x11,
        0x94, 0x44, 0xee, 0x59, 0xae, 0xb3, 0x5c, 0x5f, 0xad, 0x3f, 0xce, 0x7d, 0xaa, 0x13, 0x6f,
        0x63, 0x38,
    ];

    fn pem(der: &[u8]) -> String {
        use base64ct::{Base64, Encoding};
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            Base64::encode_string(der)
        )
    }

    fn der() -> Vec<u8> {
        let mut d = vec![
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ];
        d.extend_from_slice(&KEY);
        d
    }

    #[test]
    fn openssl_key_parses() {
        assert_eq!(parse_public_key_pem(OPENSSL), Ok(KEY));
        assert_eq!(parse_public_key_pem(&pem(&der())), Ok(KEY));
        assert_eq!(parse_public_key_pem(&format!("\n  {OPENSSL}\n\n")), Ok(KEY));
    }

    #[test]
    fn crlf_line_endings_parse() {
        assert_eq!(
            parse_public_key_pem(&OPENSSL.replace('\n', "\r\n")),
            Ok(KEY)
        );
    }

    #[test]
    fn wrong_prefix_is_refused() {
        let mut d = der();
        d[8] = 0x71; // OID 1.3.101.113 (Ed448)
        assert!(parse_public_key_pem(&pem(&d)).is_err());
        let mut d = der();
        d[11] = 0x01; // unused bits in the BIT STRING
        assert!(parse_public_key_pem(&pem(&d)).is_err());
    }

    #[test]
    fn wrong_length_is_refused() {
        let d = der();
        assert!(parse_public_key_pem(&pem(&d[..43])).is_err());
        let mut long = d.clone();
        long.push(0);
        assert!(parse_public_key_pem(&pem(&long)).is_err());
        assert!(parse_public_key_pem(&pem(&[0u8; 400])).is_err());
        assert!(parse_public_key_pem(&pem(&[])).is_err());
    }

    #[test]
    fn bad_base64_is_refused() {
        let bad = OPENSSL.replace("MCow", "MC*w");
        assert!(parse_public_key_pem(&bad).is_err());
        // Non-canonical trailing bits.
        let bad = OPENSSL.replace("Yzg=", "Yzh=");
        assert!(parse_public_key_pem(&bad).is_err());
        let bad = OPENSSL.replace("Yzg=", "Yzg");
        assert!(parse_public_key_pem(&bad).is_err());
    }

    #[test]
    fn other_labels_are_refused() {
        for label in ["PRIVATE KEY", "RSA PUBLIC KEY", "CERTIFICATE", "public key"] {
            let t = OPENSSL.replace("PUBLIC KEY", label);
            assert!(parse_public_key_pem(&t).is_err(), "{label}");
        }
        let mixed = OPENSSL.replace("END PUBLIC KEY", "END PRIVATE KEY");
        assert!(parse_public_key_pem(&mixed).is_err());
        assert!(parse_public_key_pem("").is_err());
        assert!(parse_public_key_pem("not a key").is_err());
    }

    #[test]
    fn trailing_garbage_is_refused() {
        assert!(parse_public_key_pem(&format!("{OPENSSL}garbage\n")).is_err());
        assert!(parse_public_key_pem(&format!("{OPENSSL}{OPENSSL}")).is_err());
        assert!(parse_public_key_pem(&format!("text\n{OPENSSL}")).is_err());
        let missing_end = OPENSSL.replace("-----END PUBLIC KEY-----\n", "");
        assert!(parse_public_key_pem(&missing_end).is_err());
    }
}
