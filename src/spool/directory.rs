//! SSM's flat `directory` layout (ssm/message_directory.py): one file per
//! message, any name, sent in mtime order, no locks, no subdirectories.
//!
//! SSM itself writes a message in place under its final name, so its reader can
//! pick up a half-written file. We never expose one: the body goes into an
//! unnamed `O_TMPFILE`, is fsynced, then linked under a uuid4 name. Where the
//! file system has no `O_TMPFILE`, a `.<uuid>.tmp` dot-file is used instead
//! (our reader skips dot-files; purge removes stale ones).
//!
//! SSM follows symlinks and sends whatever `os.path.isfile` accepts; we never
//! follow one (see [`super::at`]) and report every entry that is not a
//! regular file with a message name.

use std::ffi::OsStr;
use std::io::{self, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::at::{Dir, Kind};
use super::dirq::{is_stale, write_new};
use super::scan::{BadEntry, Defect, Scan};
use super::{ElementId, PurgeReport, SpoolError, io_err};

/// The longest file name Linux file systems take.
const MAX_NAME_BYTES: usize = 255;
const EXPECTED: &str =
    "a message is a file whose name does not start with a dot and holds no control character";

/// A message name: one path component, not a dot-file (those are our
/// temporary files, or not messages at all), no control characters (the
/// name is the message id in headers and logs).
pub(super) fn is_element_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME_BYTES
        && !s.starts_with('.')
        && !s.contains('/')
        && !s.chars().any(char::is_control)
}

/// Our temporary file: `.<name>.tmp`.
fn is_temp_name(s: &str) -> bool {
    s.len() >= ".x.tmp".len() && s.starts_with('.') && s.ends_with(".tmp")
}

pub(super) fn add(root: &Dir, root_path: &Path, body: &[u8]) -> Result<ElementId, SpoolError> {
    let name = uuid::Uuid::new_v4().to_string();
    let target = root_path.join(&name);
    match add_unnamed(root, body, &name) {
        Ok(()) => return Ok(ElementId(name)),
        Err(e) if !unnamed_unsupported(&e) => return Err(io_err("write", &target)(e)),
        Err(_) => {}
    }
    add_via_dot_temp(root, root_path, body, name)
}

/// The fallback without `O_TMPFILE`: a `.<name>.tmp` dot-file, fsynced,
/// hard-linked to `<name>`, then unlinked.
pub(super) fn add_via_dot_temp(
    root: &Dir,
    root_path: &Path,
    body: &[u8],
    name: String,
) -> Result<ElementId, SpoolError> {
    let tmp = format!(".{name}.tmp");
    write_new(root, &tmp, body, true).map_err(io_err("write", &root_path.join(&tmp)))?;
    let linked = root.link(OsStr::new(&tmp), root, OsStr::new(&name));
    root.unlink(OsStr::new(&tmp))
        .map_err(io_err("remove", &root_path.join(&tmp)))?;
    linked.map_err(io_err("link", &root_path.join(&name)))?;
    Ok(ElementId(name))
}

/// Errors meaning "no O_TMPFILE here" (or no /proc to link it from).
fn unnamed_unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL | libc::ENOENT)
    )
}

fn add_unnamed(root: &Dir, body: &[u8], name: &str) -> io::Result<()> {
    let mut f = root.tmpfile()?;
    f.write_all(body)?;
    f.sync_all()?;
    root.link_file(&f, OsStr::new(name))
}

/// Regular files with a message name, by mtime then name (SSM sorts by
/// mtime only; the name makes the order total), and every other entry but
/// our regular temporary dot-files.
pub(super) fn scan(root: &Dir, root_path: &Path) -> Result<Scan, SpoolError> {
    let mut found = Vec::new();
    let mut scan = Scan::default();
    for entry in root.list().map_err(io_err("list", root_path))? {
        let st = match root.lstat(&entry.name) {
            Ok(st) => st,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err("stat", &root_path.join(&entry.name))(e)),
        };
        let defect = match entry.name.to_str() {
            None => Defect::NotUtf8,
            Some(n) if is_temp_name(n) && st.kind == Kind::File => {
                scan.temporaries += 1;
                continue;
            }
            Some(n) if !is_element_name(n) => Defect::ForeignName { expected: EXPECTED },
            Some(n) if st.kind == Kind::File => {
                found.push((st.mtime, n.to_owned()));
                continue;
            }
            Some(_) => Defect::NotAFile(st.kind),
        };
        scan.bad
            .push(BadEntry::new(root_path, None, entry.name, defect));
    }
    found.sort_unstable();
    scan.first_added = found.first().map(|(t, _)| *t);
    scan.elements = found.into_iter().map(|(_, n)| ElementId(n)).collect();
    scan.bad.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(scan)
}

/// No lock exists in this layout (SSM's `lock` returns True); we at least
/// report a message that vanished. What is there is checked when read.
pub(super) fn lock(root: &Dir, root_path: &Path, name: &str) -> Result<bool, SpoolError> {
    match root.lstat(OsStr::new(name)) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err("stat", &root_path.join(name))(e)),
    }
}

/// SSM's purge does nothing; we remove our own stale temporary dot-files.
pub(super) fn purge(
    root: &Dir,
    root_path: &Path,
    now: SystemTime,
    max_temp: Duration,
) -> Result<PurgeReport, SpoolError> {
    let mut report = PurgeReport::default();
    if max_temp.is_zero() {
        return Ok(report);
    }
    for entry in root.list().map_err(io_err("list", root_path))? {
        if !entry.name.to_str().is_some_and(is_temp_name) {
            continue;
        }
        let path = root_path.join(&entry.name);
        let st = match root.lstat(&entry.name) {
            Ok(st) => st,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err("stat", &path)(e)),
        };
        if st.kind == Kind::File && is_stale(st.mtime, now, max_temp) {
            tracing::warn!(path = %path.display(), "removing too old temporary file");
            match root.unlink(&entry.name) {
                Ok(()) => report.temp_removed += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("remove", &path)(e)),
            }
        }
    }
    Ok(report)
}
