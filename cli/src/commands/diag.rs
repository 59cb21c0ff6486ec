//! `bmcctl diag dump`: `Dump1.Create` as a task, waited for like a power
//! transition, then the `.tar.gz` copied from the descriptor
//! `DumpEntry1.Open` hands over (bmcctl never reads bmcd's state
//! directory) into a local file.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use bmcd_api::zbus;
use bmcd_api::{dump_result, Options};
use zbus::zvariant::OwnedObjectPath;

use super::chassis::{TASK_ID, TASK_PATH, WAITED};
use super::Ctx;
use crate::cli::DiagCmd;
use crate::conn;
use crate::error::{names, CliError, Exit};
use crate::output::{FieldSpec, Output, Record, Value};
use crate::wait;

const DUMP: FieldSpec = FieldSpec::new("Dump", "Dump");
const FILE: FieldSpec = FieldSpec::new("File", "File");
const SIZE: FieldSpec = FieldSpec::new("Size", "Size");
const TRUNCATED: FieldSpec = FieldSpec::new("Truncated", "Truncated");
const DIGEST: FieldSpec = FieldSpec::new("Digest", "Digest");

pub fn run(cmd: DiagCmd, ctx: &Ctx) -> Result<Output, CliError> {
    match cmd {
        DiagCmd::Dump {
            output,
            force,
            no_wait,
        } => dump(output.as_deref(), force, no_wait, ctx),
    }
}

fn file_error(what: &str, p: &Path, e: &io::Error) -> CliError {
    let exit = match e.kind() {
        io::ErrorKind::NotFound => Exit::NotFound,
        io::ErrorKind::PermissionDenied => Exit::Denied,
        _ => Exit::Failure,
    };
    CliError::new(
        names::FILE,
        format!("cannot {what} {}: {e}", p.display()),
        exit,
    )
}

fn exists_error(p: &Path) -> CliError {
    CliError::new(
        names::FILE,
        format!("{} exists; give --force to overwrite it", p.display()),
        Exit::Failure,
    )
}

/// The file to write: `output` if it is not a directory, else
/// `<output or .>/<file_name>` (a name with a `/` or `..` is not used).
fn destination(output: Option<&Path>, file_name: &str, id: u64) -> PathBuf {
    let name = if file_name.is_empty() || file_name.contains('/') || file_name.starts_with('.') {
        format!("bmcd-dump-{id}.tar.gz")
    } else {
        file_name.to_owned()
    };
    match output {
        Some(o) if !o.is_dir() && !o.as_os_str().to_string_lossy().ends_with('/') => o.to_owned(),
        Some(dir) => dir.join(name),
        None => PathBuf::from(".").join(name),
    }
}

fn dump(output: Option<&Path>, force: bool, no_wait: bool, ctx: &Ctx) -> Result<Output, CliError> {
    // Refuse before bmcd works for nothing.
    if let Some(o) = output.filter(|o| !o.is_dir()) {
        if !force && o.exists() {
            return Err(exists_error(o));
        }
    }
    let client = ctx.connect()?;
    let task = client.call(|c| {
        let m = c.call_method(
            Some(bmcd_api::BUS_NAME),
            bmcd_api::DUMPS_PATH,
            Some(bmcd_api::DUMP_MANAGER_IFACE),
            "Create",
            &(Options::new(),),
        )?;
        Ok(m.body().deserialize::<OwnedObjectPath>()?)
    })?;
    let path = task.as_str().to_owned();
    let id = bmcd_api::task_id(&path).unwrap_or(0);
    let int = |n: u64| Value::Int(i64::try_from(n).unwrap_or(i64::MAX));
    if no_wait {
        let out = if ctx.quiet {
            Output::new().line(id.to_string())
        } else {
            Output::new().notice(format!(
                "Collecting a diagnostic dump as task {id}; `bmcctl task wait {id}` waits for it."
            ))
        };
        return Ok(out.json_result(
            Record::new()
                .field(WAITED, Value::Bool(false))
                .field(TASK_ID, int(id))
                .field(TASK_PATH, Value::text(path)),
        ));
    }
    let t = wait::outcome(wait::wait(&client, &path, wait::Style::for_ctx(ctx))?)?;
    let dump_path = t
        .result
        .iter()
        .find(|(key, _)| key == dump_result::DUMP)
        .and_then(|(_, v)| match v {
            Value::Text(p) if p.starts_with(bmcd_api::DUMPS_PATH) => Some(p.clone()),
            _ => None,
        })
        .ok_or_else(|| {
            CliError::new(
                names::PROTOCOL,
                format!("task {id} completed without naming its dump"),
                Exit::Failure,
            )
        })?;
    let props = client.call(|c| Ok(conn::get_all(c, &dump_path, bmcd_api::DUMP_IFACE)?))?;
    let text = |key: &str| {
        props
            .get(key)
            .and_then(|v| <&str>::try_from(v).ok())
            .unwrap_or("")
            .to_owned()
    };
    let size = props
        .get("Size")
        .and_then(|v| u64::try_from(v).ok())
        .unwrap_or(0);
    let truncated = props
        .get("Truncated")
        .and_then(|v| bool::try_from(v).ok())
        .unwrap_or(false);
    let dump_id = props
        .get("Id")
        .and_then(|v| u64::try_from(v).ok())
        .unwrap_or(0);
    let dest = destination(output, &text("FileName"), dump_id);
    let fd = client.call(|c| {
        let m = c.call_method(
            Some(bmcd_api::BUS_NAME),
            dump_path.as_str(),
            Some(bmcd_api::DUMP_IFACE),
            "Open",
            &(Options::new(),),
        )?;
        let fd: zbus::zvariant::OwnedFd = m.body().deserialize()?;
        Ok(OwnedFd::from(fd))
    })?;
    let copied = copy_to(File::from(fd), &dest, force)?;
    if copied != size {
        let _ = std::fs::remove_file(&dest);
        return Err(CliError::new(
            names::FILE,
            format!(
                "dump {dump_id}: copied {copied} bytes but bmcd says it has {size}; {} removed",
                dest.display()
            ),
            Exit::Failure,
        ));
    }
    let shown = dest.display().to_string();
    let more = if truncated {
        " (truncated: the size cap was reached)"
    } else {
        ""
    };
    Ok(Output::new()
        .notice(format!(
            "Downloaded diagnostic dump {dump_id} ({size} bytes) to {shown} successfully{more}."
        ))
        .json_result(
            Record::new()
                .field(WAITED, Value::Bool(true))
                .field(TASK_ID, int(id))
                .field(DUMP, Value::text(dump_path))
                .field(FILE, Value::text(shown))
                .field(SIZE, int(size))
                .field(TRUNCATED, Value::Bool(truncated))
                .field(DIGEST, Value::text(text("Digest"))),
        ))
}

/// Copy `from` into a new file `dest` (an existing one only with `force`);
/// a failed copy leaves no file behind. Returns the bytes copied.
fn copy_to(mut from: File, dest: &Path, force: bool) -> Result<u64, CliError> {
    let mut o = OpenOptions::new();
    o.write(true);
    if force {
        o.create(true).truncate(true);
    } else {
        o.create_new(true);
    }
    let mut to = o.open(dest).map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            exists_error(dest)
        } else {
            file_error("create", dest, &e)
        }
    })?;
    copy(&mut from, &mut to).map_err(|e| {
        let _ = std::fs::remove_file(dest);
        file_error("write", dest, &e)
    })
}

/// A plain read/write loop (`io::copy` would bring std's
/// `copy_file_range`/`sendfile` machinery into the binary), then fsync.
fn copy(from: &mut File, to: &mut File) -> io::Result<u64> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut n = 0u64;
    loop {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(r) => {
                to.write_all(buf.get(..r).unwrap_or_default())?;
                n += r as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    to.sync_all()?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations() {
        let n = "bmcd-dump-h-3-20261203T100000Z.tar.gz";
        assert_eq!(destination(None, n, 3), PathBuf::from(".").join(n));
        assert_eq!(
            destination(Some(Path::new("/tmp")), n, 3),
            PathBuf::from("/tmp").join(n)
        );
        assert_eq!(
            destination(Some(Path::new("/nonexistent-dir/")), n, 3),
            PathBuf::from("/nonexistent-dir/").join(n)
        );
        assert_eq!(
            destination(Some(Path::new("/tmp/x.tgz")), n, 3),
            PathBuf::from("/tmp/x.tgz")
        );
        assert_eq!(
            destination(None, "../evil", 4),
            PathBuf::from("./bmcd-dump-4.tar.gz")
        );
    }
}
