//! Python dirq 1.8 `QueueSimple`, byte for byte on disk (see dirq/QueueSimple.py
//! and dirq/QueueBase.py), plus fsync of each element before it is linked.

use std::ffi::CString;
use std::fs::{self, DirEntry};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{ElementId, PurgeReport, SpoolError, io_err, write_new};

/// Seconds per intermediate directory (dirq's default `granularity`).
const GRANULARITY: u64 = 60;
const TEMPORARY_SUFFIX: &str = ".tmp";
const LOCKED_SUFFIX: &str = ".lck";
/// Give up on a name clash storm or a directory that keeps vanishing.
const MAX_ATTEMPTS: u32 = 1000;

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `^[0-9a-f]{8}$`: an intermediate directory.
pub(super) fn is_dir_name(s: &str) -> bool {
    is_lower_hex(s, 8)
}

/// `^[0-9a-f]{14}$`: an element file.
pub(super) fn is_element_name(s: &str) -> bool {
    is_lower_hex(s, 14)
}

/// `8hex/14hex`, what dirq returns from `add` and iterates.
pub(super) fn is_element_id(s: &str) -> bool {
    s.split_once('/')
        .is_some_and(|(d, n)| is_dir_name(d) && is_element_name(n))
}

pub(super) fn lock_path(element: &Path) -> PathBuf {
    let mut s = element.as_os_str().to_owned();
    s.push(LOCKED_SUFFIX);
    PathBuf::from(s)
}

fn since_epoch(t: SystemTime) -> Duration {
    t.duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// dirq `_name`: `%08x%05x%01x` of seconds, microseconds and the queue's digit.
fn element_name(rndhex: u8) -> String {
    let now = since_epoch(SystemTime::now());
    format!(
        "{:08x}{:05x}{:01x}",
        now.as_secs(),
        now.subsec_micros(),
        rndhex & 0x0f
    )
}

/// dirq `_add_dir`: the add time rounded down to the granularity.
fn dir_name(now: SystemTime) -> String {
    let secs = since_epoch(now).as_secs();
    format!("{:08x}", secs - secs % GRANULARITY)
}

/// First half of dirq's add: writes `<dir>/<name>.tmp` (fsynced if `sync`),
/// creating the intermediate directory as needed. Returns the directory name
/// and the temporary file; [`publish`] makes it an element.
pub(super) fn write_temp(
    root: &Path,
    rndhex: u8,
    body: &[u8],
    sync: bool,
) -> Result<(String, PathBuf), SpoolError> {
    let dir = dir_name(SystemTime::now());
    let dir_path = root.join(&dir);
    for _ in 0..MAX_ATTEMPTS {
        let path = dir_path.join(format!("{}{TEMPORARY_SUFFIX}", element_name(rndhex)));
        match write_new(&path, body, sync) {
            Ok(()) => return Ok((dir, path)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            // A new minute, or a purge removed the directory: (re)create it.
            Err(e) if e.kind() == io::ErrorKind::NotFound => match fs::create_dir(&dir_path) {
                Ok(()) => continue,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_err("create directory", &dir_path)(e)),
            },
            Err(e) => return Err(io_err("write", &path)(e)),
        }
    }
    Err(SpoolError::NoFreeName {
        id: "(new)".into(),
        dir: dir_path,
    })
}

/// Second half of dirq's add: hard-links the temporary file to a free
/// `<dir>/<name>` (a reader sees the whole element or nothing), then unlinks
/// it. The caller fsyncs the directory.
pub(super) fn publish(
    root: &Path,
    rndhex: u8,
    dir: &str,
    tmp: &Path,
) -> Result<ElementId, SpoolError> {
    let dir_path = root.join(dir);
    for _ in 0..MAX_ATTEMPTS {
        let name = element_name(rndhex);
        let path = dir_path.join(&name);
        match fs::hard_link(tmp, &path) {
            Ok(()) => {
                fs::remove_file(tmp).map_err(io_err("remove", tmp))?;
                return Ok(ElementId(format!("{dir}/{name}")));
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err("link", tmp)(e)),
        }
    }
    Err(SpoolError::NoFreeName {
        id: tmp.display().to_string(),
        dir: dir_path,
    })
}

/// Names in `dir` (UTF-8 only: dirq names are ASCII), tolerating a directory
/// that vanished under a concurrent purge.
fn names(dir: &Path) -> Result<Vec<String>, SpoolError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("list", dir)(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry: DirEntry = entry.map_err(io_err("list", dir))?;
        if let Ok(name) = entry.file_name().into_string() {
            out.push(name);
        }
    }
    Ok(out)
}

fn intermediate_dirs(root: &Path) -> Result<Vec<String>, SpoolError> {
    let mut dirs: Vec<String> = names(root)?
        .into_iter()
        .filter(|n| is_dir_name(n))
        .collect();
    dirs.sort_unstable();
    Ok(dirs)
}

pub(super) fn elements(root: &Path) -> Result<Vec<ElementId>, SpoolError> {
    let mut out = Vec::new();
    for dir in intermediate_dirs(root)? {
        let mut elts: Vec<String> = names(&root.join(&dir))?
            .into_iter()
            .filter(|n| is_element_name(n))
            .collect();
        elts.sort_unstable();
        out.extend(elts.into_iter().map(|n| ElementId(format!("{dir}/{n}"))));
    }
    Ok(out)
}

pub(super) fn count(root: &Path) -> Result<usize, SpoolError> {
    let mut n = 0;
    for dir in intermediate_dirs(root)? {
        n += names(&root.join(&dir))?
            .iter()
            .filter(|n| is_element_name(n))
            .count();
    }
    Ok(n)
}

/// dirq `lock(name, permissive=True)`: link to `.lck`, then touch the element
/// (the lock's age, which purge reads, is the element's mtime: same inode).
pub(super) fn lock(element: &Path) -> Result<bool, SpoolError> {
    let lock = lock_path(element);
    match fs::hard_link(element, &lock) {
        Ok(()) => {}
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::AlreadyExists | io::ErrorKind::NotFound
            ) =>
        {
            return Ok(false);
        }
        Err(e) => return Err(io_err("lock (link)", &lock)(e)),
    }
    match touch(element) {
        Ok(()) => Ok(true),
        // Another process locked and removed it while we linked.
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let _ = fs::remove_file(&lock);
            Ok(false)
        }
        Err(e) => Err(io_err("touch", element)(e)),
    }
}

/// `os.utime(path, None)`: atime and mtime to now.
fn touch(path: &Path) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a valid NUL-terminated path; a null `times` means "now".
    let rc = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), std::ptr::null(), 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// True when `mtime` is older than `max` before `now`; `max` zero = never.
pub(super) fn is_stale(mtime: SystemTime, now: SystemTime, max: Duration) -> bool {
    !max.is_zero() && mtime + max < now
}

/// dirq `purge(maxtemp, maxlock)`. Unlike dirq, a directory that is no longer
/// empty when we remove it (an add racing us) is left alone, not an error.
pub(super) fn purge(
    root: &Path,
    now: SystemTime,
    max_temp: Duration,
    max_lock: Duration,
) -> Result<PurgeReport, SpoolError> {
    let mut report = PurgeReport::default();
    let dirs = intermediate_dirs(root)?;
    if !max_temp.is_zero() || !max_lock.is_zero() {
        for dir in &dirs {
            let dir_path = root.join(dir);
            for name in names(&dir_path)? {
                let (max, is_temp) = if name.ends_with(TEMPORARY_SUFFIX) {
                    (max_temp, true)
                } else if name.ends_with(LOCKED_SUFFIX) {
                    (max_lock, false)
                } else {
                    continue;
                };
                let path = dir_path.join(&name);
                let mtime = match fs::metadata(&path).and_then(|m| m.modified()) {
                    Ok(t) => t,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io_err("stat", &path)(e)),
                };
                if !is_stale(mtime, now, max) {
                    continue;
                }
                tracing::warn!(path = %path.display(), "removing too old volatile file");
                match fs::remove_file(&path) {
                    Ok(()) if is_temp => report.temp_removed += 1,
                    Ok(()) => report.locks_removed += 1,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err("remove", &path)(e)),
                }
            }
        }
    }
    // Every intermediate directory but the newest, if empty.
    if let Some((_newest, older)) = dirs.split_last() {
        for dir in older {
            let dir_path = root.join(dir);
            if !names(&dir_path)?.is_empty() {
                continue;
            }
            match fs::remove_dir(&dir_path) {
                Ok(()) => report.dirs_removed += 1,
                Err(e)
                    if e.kind() == io::ErrorKind::NotFound
                        || e.kind() == io::ErrorKind::DirectoryNotEmpty => {}
                Err(e) => return Err(io_err("remove directory", &dir_path)(e)),
            }
        }
    }
    Ok(report)
}
