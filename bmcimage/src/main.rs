//! `bmcimage`: make signing keys, pack and sign bmcd firmware images, and
//! inspect them. A host-side tool for image builders (and the tests); it is
//! not installed on the BMC.
#![forbid(unsafe_code)]

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use bmcd_image::{
    generate_signing_key, key_id, pack_files, read_header, read_signing_key, write_key_pair,
    ImageError, ImageMeta, Keyring, PayloadStream,
};
use clap::{Parser, Subcommand};
use serde_json::json;

/// Exit status: the image is valid (and, for inspect, signed by a trusted key).
const EXIT_OK: u8 = 0;
/// Exit status: the image is invalid (format, signature, digest), or an error.
const EXIT_INVALID: u8 = 1;
/// Exit status: valid, but signed by a key that is not trusted (or no
/// --keys were given).
const EXIT_UNTRUSTED: u8 = 3;

#[derive(Parser)]
#[command(
    name = "bmcimage",
    version,
    about = "Make signing keys, pack and sign bmcd firmware images, inspect them",
    after_help = "Exit status: 0 success (inspect: valid and signed by a trusted key); \
                  1 invalid image or error (bad format, bad signature, payload digest or size \
                  mismatch, unreadable file); 2 usage error; 3 (inspect) the image is intact \
                  but its key is not trusted, or no --keys were given.\n\
                  Format: docs/image-format.md."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Generate an Ed25519 key pair: DIR/NAME.key (PKCS#8 PEM, mode 0600) and
    /// DIR/NAME.pub (SubjectPublicKeyInfo PEM, goes into bmcd's key directory)
    #[command(
        after_help = "Example: bmcimage keygen --out ~/keys --name release-2026\n\
        Keys made with `openssl genpkey -algorithm ed25519 -out k.key` and \
        `openssl pkey -in k.key -pubout -out k.pub` work too."
    )]
    Keygen {
        /// Directory for the two files (created if missing); existing files are never overwritten
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Base name of the files
        #[arg(long, default_value = "bmcimage")]
        name: String,
    },
    /// Pack payload files into a signed image
    #[command(
        after_help = "Example: bmcimage pack --key release.key --component bmc \
        --version 2.1.0 --build-date 2026-12-03 --machine board-a --payload rootfs.squashfs \
        -o bmc-2.1.0.img"
    )]
    Pack {
        /// Private key (PKCS#8 PEM)
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Component the image updates
        #[arg(long, default_value = "bmc")]
        component: String,
        /// Firmware version
        #[arg(long)]
        version: String,
        /// Build date (free text, e.g. RFC 3339)
        #[arg(long, value_name = "DATE")]
        build_date: String,
        /// A compatible machine name (repeat for several)
        #[arg(long = "machine", value_name = "NAME", required = true)]
        machines: Vec<String>,
        /// A payload file (repeat; named after the file name, in this order)
        #[arg(long = "payload", value_name = "FILE", required = true)]
        payloads: Vec<PathBuf>,
        /// Output image (written to OUT.tmp, then renamed)
        #[arg(short = 'o', long = "output", value_name = "OUT")]
        output: PathBuf,
    },
    /// Show an image's manifest, check its signature and payload digests
    #[command(after_help = "Example: bmcimage inspect --keys /etc/bmcd/keys --json bmc.img")]
    Inspect {
        /// The image
        file: PathBuf,
        /// Directory of trusted public keys (*.pub)
        #[arg(long, value_name = "DIR")]
        keys: Option<PathBuf>,
        /// One JSON document on stdout
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json_out = matches!(cli.cmd, Cmd::Inspect { json: true, .. });
    let result = match cli.cmd {
        Cmd::Keygen { out, name } => keygen(&out, &name),
        Cmd::Pack {
            key,
            component,
            version,
            build_date,
            machines,
            payloads,
            output,
        } => pack_cmd(
            &key,
            ImageMeta {
                component,
                version,
                build_date,
                compatible: machines,
            },
            &payloads,
            &output,
        ),
        Cmd::Inspect { file, keys, json } => inspect(&file, keys.as_deref(), json),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(msg) => {
            if json_out {
                println!("{}", json!({ "error": { "message": msg } }));
            } else {
                eprintln!("bmcimage: {msg}");
            }
            ExitCode::from(EXIT_INVALID)
        }
    }
}

fn keygen(dir: &Path, name: &str) -> Result<u8, String> {
    if name.is_empty() || name.contains('/') {
        return Err(format!("bad key name {name:?}"));
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let key = generate_signing_key().map_err(|e| e.to_string())?;
    let (priv_path, pub_path) = write_key_pair(&key, dir, name).map_err(|e| e.to_string())?;
    println!("private key: {}", priv_path.display());
    println!("public key:  {}", pub_path.display());
    println!("key id:      {}", key_id(&key.verifying_key()));
    Ok(EXIT_OK)
}

fn pack_cmd(
    key: &Path,
    meta: ImageMeta,
    payloads: &[PathBuf],
    output: &Path,
) -> Result<u8, String> {
    let key = read_signing_key(key).map_err(|e| e.to_string())?;
    let mut tmp = output.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let file = File::create(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    let mut out = BufWriter::new(file);
    let result = pack_files(&meta, payloads, &key, &mut out)
        .map_err(|e| e.to_string())
        .and_then(|m| {
            out.flush()
                .and_then(|()| out.get_ref().sync_all())
                .map_err(|e| format!("{}: {e}", tmp.display()))?;
            Ok(m)
        });
    let manifest = match result {
        Ok(m) => m,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    std::fs::rename(&tmp, output).map_err(|e| format!("{}: {e}", output.display()))?;
    println!(
        "{}: {} {} for {}, {} payload(s), {} bytes, key id {}",
        output.display(),
        manifest.component,
        manifest.version,
        manifest.compatible.join(","),
        manifest.payloads.len(),
        manifest.payload_len(),
        key_id(&key.verifying_key())
    );
    Ok(EXIT_OK)
}

fn inspect(file: &Path, keys: Option<&Path>, json_out: bool) -> Result<u8, String> {
    let keyring = match keys {
        Some(dir) => Some(Keyring::load_dir(dir).map_err(|e| e.to_string())?),
        None => None,
    };
    let f = File::open(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let mut r = BufReader::with_capacity(64 * 1024, f);
    let name = file.display();
    let header = read_header(&mut r).map_err(|e| format!("{name}: {e}"))?;
    // The signature verdict comes first; the manifest shown is the
    // verified one when a key verified it.
    let (signature, manifest) = match &keyring {
        Some(ring) => match header.verify(ring) {
            Ok(m) => ("trusted", Ok(m)),
            Err(ImageError::UnknownKey(_)) => ("unknown-key", header.unverified_manifest()),
            Err(ImageError::BadSignature(_)) => ("bad-signature", header.unverified_manifest()),
            Err(e) => ("trusted", Err(e)),
        },
        None => ("not-checked", header.unverified_manifest()),
    };
    let manifest = manifest.map_err(|e| match signature {
        "bad-signature" => format!("{name}: bad signature (key id {}), and {e}", header.key_id),
        _ => format!("{name}: {e}"),
    })?;
    let payloads = PayloadStream::unauthenticated(r, &manifest)
        .verify_all()
        .map(|_| ())
        .map_err(|e| e.to_string());
    let code = match (signature, &payloads) {
        ("bad-signature", _) | (_, Err(_)) => EXIT_INVALID,
        ("trusted", Ok(())) => EXIT_OK,
        _ => EXIT_UNTRUSTED,
    };
    if json_out {
        let doc = json!({
            "file": file.display().to_string(),
            "format": bmcd_image::FORMAT_VERSION,
            "manifest": manifest,
            "signature": { "key_id": header.key_id.to_string(), "status": signature },
            "payloads": match &payloads { Ok(()) => json!({"status": "ok"}),
                                          Err(e) => json!({"status": "error", "message": e}) },
            "valid": code == EXIT_OK,
        });
        println!("{doc}");
    } else {
        println!("file:       {name}");
        println!("component:  {}", manifest.component);
        println!("version:    {}", manifest.version);
        println!("build date: {}", manifest.build_date);
        println!("machines:   {}", manifest.compatible.join(", "));
        for p in &manifest.payloads {
            println!(
                "payload:    {} {} bytes sha256 {}",
                p.name, p.size, p.sha256
            );
        }
        let verdict = match signature {
            "trusted" => "trusted key",
            "unknown-key" => "UNKNOWN key (not in --keys)",
            "bad-signature" => "BAD SIGNATURE",
            _ => "not checked (no --keys)",
        };
        println!("signature:  key id {}: {verdict}", header.key_id);
        match &payloads {
            Ok(()) => println!("payloads:   ok"),
            Err(e) => println!("payloads:   {e}"),
        }
    }
    Ok(code)
}
