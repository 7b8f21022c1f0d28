//! SSM's flat `directory` layout (ssm/message_directory.py): one file per
//! message, any name, sent in mtime order, no locks, no subdirectories.
//!
//! SSM itself writes a message in place under its final name, so its reader can
//! pick up a half-written file. We never expose one: the body goes into an
//! unnamed `O_TMPFILE`, is fsynced, then linked under a uuid4 name. Where the
//! file system has no `O_TMPFILE`, a `.<uuid>.tmp` dot-file is used instead
//! (our reader skips dot-files; purge removes stale ones).

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::dirq::is_stale;
use super::{ElementId, PurgeReport, SpoolError, io_err, write_new};

/// A message name: one path component, not a dot-file (those are our
/// temporary files, or not messages at all).
pub(super) fn is_element_name(s: &str) -> bool {
    !s.is_empty() && !s.starts_with('.') && !s.contains('/') && !s.contains('\0')
}

pub(super) fn add(root: &Path, body: &[u8]) -> Result<ElementId, SpoolError> {
    let name = uuid::Uuid::new_v4().to_string();
    let target = root.join(&name);
    match add_unnamed(root, body, &target) {
        Ok(()) => return Ok(ElementId(name)),
        Err(e) if !unnamed_unsupported(&e) => return Err(io_err("write", &target)(e)),
        Err(_) => {}
    }
    add_via_dot_temp(root, body, name)
}

/// The fallback without `O_TMPFILE`: a `.<name>.tmp` dot-file, fsynced,
/// hard-linked to `<name>`, then unlinked.
pub(super) fn add_via_dot_temp(
    root: &Path,
    body: &[u8],
    name: String,
) -> Result<ElementId, SpoolError> {
    let target = root.join(&name);
    let tmp = root.join(format!(".{name}.tmp"));
    write_new(&tmp, body, true).map_err(io_err("write", &tmp))?;
    let linked = fs::hard_link(&tmp, &target);
    fs::remove_file(&tmp).map_err(io_err("remove", &tmp))?;
    linked.map_err(io_err("link", &target))?;
    Ok(ElementId(name))
}

/// Errors meaning "no O_TMPFILE here" (or no /proc to link it from).
fn unnamed_unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL | libc::ENOENT)
    )
}

fn add_unnamed(root: &Path, body: &[u8], target: &Path) -> io::Result<()> {
    let mut f: File = OpenOptions::new()
        .write(true)
        .mode(0o666)
        .custom_flags(libc::O_TMPFILE)
        .open(root)?;
    f.write_all(body)?;
    f.sync_all()?;
    let proc_path = CString::new(format!("/proc/self/fd/{}", f.as_raw_fd()))
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let dest = CString::new(target.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: both are valid NUL-terminated paths; linkat does not keep them.
    let rc = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            proc_path.as_ptr(),
            libc::AT_FDCWD,
            dest.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Regular files not starting with a dot, by mtime then name (SSM sorts by
/// mtime only; the name makes the order total).
pub(super) fn elements(root: &Path) -> Result<Vec<ElementId>, SpoolError> {
    let entries = fs::read_dir(root).map_err(io_err("list", root))?;
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err("list", root))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if !is_element_name(&name) {
            continue;
        }
        let meta = match entry.metadata() {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err("stat", &entry.path())(e)),
        };
        if !meta.is_file() {
            continue;
        }
        let mtime = meta.modified().map_err(io_err("stat", &entry.path()))?;
        found.push((mtime, name));
    }
    found.sort_unstable();
    Ok(found.into_iter().map(|(_, n)| ElementId(n)).collect())
}

/// No lock exists in this layout (SSM's `lock` returns True); we at least
/// report a message that vanished.
pub(super) fn lock(path: &Path) -> Result<bool, SpoolError> {
    match fs::metadata(path) {
        Ok(m) => Ok(m.is_file()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err("stat", path)(e)),
    }
}

/// SSM's purge does nothing; we remove our own stale temporary dot-files.
pub(super) fn purge(
    root: &Path,
    now: SystemTime,
    max_temp: Duration,
) -> Result<PurgeReport, SpoolError> {
    let mut report = PurgeReport::default();
    if max_temp.is_zero() {
        return Ok(report);
    }
    for entry in fs::read_dir(root).map_err(io_err("list", root))? {
        let entry = entry.map_err(io_err("list", root))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with('.') && name.ends_with(".tmp")) {
            continue;
        }
        let path = entry.path();
        let mtime = match entry.metadata().and_then(|m| m.modified()) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err("stat", &path)(e)),
        };
        if is_stale(mtime, now, max_temp) {
            tracing::warn!(path = %path.display(), "removing too old temporary file");
            match fs::remove_file(&path) {
                Ok(()) => report.temp_removed += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("remove", &path)(e)),
            }
        }
    }
    Ok(report)
}
