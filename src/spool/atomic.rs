//! The one writer of the small state files beside the queues (run reports,
//! lastrun files): whole or not at all, never through a symlink; and
//! [`read_small`], their reader for `status`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::at::Dir;
use super::{parent_of, sync_dir};

/// What [`write_atomic`] could not do, to which path.
#[derive(Debug, thiserror::Error)]
#[error("cannot {op} {path}: {error}")]
pub struct WriteError {
    pub op: &'static str,
    pub path: PathBuf,
    pub error: io::Error,
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> WriteError {
    let path = path.to_path_buf();
    move |error| WriteError { op, path, error }
}

/// Replaces the file at `path` with `bytes`, atomically: a temporary
/// `.<name>.tmp` beside it, fsync, rename, fsync the directory. A crash
/// leaves the old file or the new one, never a mix. A symlink at `path` is
/// replaced, never followed (rename replaces the directory entry); one at
/// the temporary name is removed, not written through. The one writer of
/// the small state files: run reports, lastrun files, metrics files.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new(""));
    let name = path
        .file_name()
        .ok_or_else(|| io_err("name", path)(io::Error::other("no file name")))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    // A leftover from a crash (or anything planted there) goes first.
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("remove the stale temporary", &tmp)(e)),
    }
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .map_err(io_err("create", &tmp))?;
    let written = f.write_all(bytes).and_then(|()| f.sync_all());
    drop(f);
    let placed = written
        .map_err(io_err("write", &tmp))
        .and_then(|()| fs::rename(&tmp, path).map_err(io_err("rename into place", path)));
    if let Err(e) = placed {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(dir).map_err(io_err("fsync the directory of", path))
}

/// Reads a small state file: `None` when it does not exist; never through a
/// symlink, never blocking on a FIFO, at most `limit` bytes (more is an
/// error of kind [`io::ErrorKind::FileTooLarge`]).
pub(crate) fn read_small(path: &Path, limit: usize) -> io::Result<Option<Vec<u8>>> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other("no file name"))?;
    let read = Dir::open(parent_of(path)).and_then(|d| d.read_capped(name, limit));
    match read {
        Ok(bytes) if bytes.len() > limit => Err(io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!("larger than {limit} bytes"),
        )),
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}
