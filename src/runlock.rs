//! The run lock: one `caso-extract` at a time, ours or cASO's.
//!
//! cASO 5.2.2 wraps its run in `oslo_concurrency.lockutils.synchronized(
//! "caso_should_not_run_in_parallel", lock_path=..., external=True)`, which is
//! fasteners' `InterProcessLock`: the file `<lock_path>/caso_should_not_run_in_parallel`
//! opened for append and locked with `fcntl.lockf(LOCK_EX | LOCK_NB)`, i.e. a
//! POSIX record lock (`F_SETLK`, `F_WRLCK`, whole file), polled until it is
//! free. We take the very same lock, so our extractor and a Python cASO exclude
//! each other. (Rust's `File::lock` is `flock(2)`, which does not conflict with
//! POSIX locks on Linux: it would not exclude cASO.)
//!
//! `F_GETLK` tells a waiter the holder's pid, for cASO holders as for ours, so
//! nothing is written into the file (cASO never writes to it either).
//!
//! POSIX locks belong to the process, not the file descriptor: a second lock
//! taken by the same process would silently succeed, and closing any other
//! descriptor of the file would drop the lock. A process-wide registry of held
//! lock files prevents the first, and this module is the only one opening the
//! file, which prevents the second.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::sys;

/// cASO's lock name (the file name inside `lock_path`).
pub const LOCK_NAME: &str = "caso_should_not_run_in_parallel";

/// Lock files held by this process.
static HELD: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);

#[derive(Debug, thiserror::Error)]
pub enum RunLockError {
    #[error("cannot {op} run lock {path}: {error}")]
    Io {
        op: &'static str,
        path: PathBuf,
        error: io::Error,
    },
    #[error(
        "another extraction run holds the lock {path}{holder}; gave up after waiting {waited}",
        holder = match .holder {
            Some(p) => format!(" (pid {p})"),
            None => " (its pid is not visible here: another pid namespace, e.g. a container)".into(),
        },
        waited = humantime::format_duration(*.waited)
    )]
    Timeout {
        path: PathBuf,
        holder: Option<u32>,
        waited: Duration,
    },
}

/// The held run lock; dropping it releases the lock.
#[derive(Debug)]
pub struct RunLock {
    file: File,
    path: PathBuf,
}

impl RunLock {
    /// Takes the lock in `lock_path` (created if missing), waiting up to
    /// `timeout` (zero: one attempt) with a backoff from 10 ms to 1 s.
    pub fn acquire(lock_path: &Path, timeout: Duration) -> Result<RunLock, RunLockError> {
        let path = lock_path.join(LOCK_NAME);
        let io_err = |op, error| RunLockError::Io {
            op,
            path: path.clone(),
            error,
        };
        fs::create_dir_all(lock_path).map_err(|e| io_err("create the directory of", e))?;
        let start = Instant::now();
        let mut delay = Duration::from_millis(10);
        loop {
            if let Some(lock) = Self::try_acquire(&path)? {
                return Ok(lock);
            }
            let waited = start.elapsed();
            if waited >= timeout {
                // Ask again now: the holder may have changed while we waited.
                let holder = File::open(&path)
                    .ok()
                    .and_then(|f| holder_pid(&f).ok().flatten());
                return Err(RunLockError::Timeout {
                    path,
                    holder,
                    waited,
                });
            }
            std::thread::sleep(delay.min(timeout - waited));
            delay = (delay * 2).min(Duration::from_secs(1));
        }
    }

    /// One attempt: `None` when someone else holds it.
    fn try_acquire(path: &Path) -> Result<Option<RunLock>, RunLockError> {
        let mut held = HELD.lock().unwrap_or_else(PoisonError::into_inner);
        let held = held.get_or_insert_with(HashSet::new);
        if held.contains(path) {
            return Ok(None);
        }
        // Append mode, as fasteners opens it: never truncates what is there.
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .map_err(|error| RunLockError::Io {
                op: "open",
                path: path.to_path_buf(),
                error,
            })?;
        match set_lock(&file, libc::F_WRLCK as libc::c_short) {
            Ok(()) => {
                held.insert(path.to_path_buf());
                Ok(Some(RunLock {
                    file,
                    path: path.to_path_buf(),
                }))
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) => Ok(None),
            Err(error) => Err(RunLockError::Io {
                op: "lock",
                path: path.to_path_buf(),
                error,
            }),
        }
    }

    /// The lock file, `<lock_path>/caso_should_not_run_in_parallel`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Who holds the lock file at `lock_path` right now, if anyone and if the
    /// kernel can tell (a holder in another pid namespace reads as unknown).
    pub fn holder(lock_path: &Path) -> Result<Option<u32>, RunLockError> {
        let path = lock_path.join(LOCK_NAME);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => {
                return Err(RunLockError::Io {
                    op: "open",
                    path,
                    error,
                });
            }
        };
        holder_pid(&file).map_err(|error| RunLockError::Io {
            op: "query",
            path,
            error,
        })
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Closing the file would release it too; unlock explicitly anyway so
        // the registry and the kernel agree at every instant.
        let _ = set_lock(&self.file, libc::F_UNLCK as libc::c_short);
        HELD.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert_with(HashSet::new)
            .remove(&self.path);
    }
}

fn whole_file(kind: libc::c_short) -> libc::flock {
    let mut fl = sys::flock_zeroed();
    fl.l_type = kind;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = 0;
    fl.l_len = 0; // to the end of the file, however it grows: what lockf(fd, 0) locks
    fl
}

/// `F_SETLK`, non-blocking, on the whole file.
fn set_lock(file: &File, kind: libc::c_short) -> io::Result<()> {
    let fl = whole_file(kind);
    sys::set_record_lock(file.as_fd(), &fl)
}

/// `F_GETLK`: the pid of a process holding a conflicting lock.
fn holder_pid(file: &File) -> io::Result<Option<u32>> {
    let mut fl = whole_file(libc::F_WRLCK as libc::c_short);
    sys::get_record_lock(file.as_fd(), &mut fl)?;
    if fl.l_type == libc::F_UNLCK as libc::c_short || fl.l_pid <= 0 {
        return Ok(None);
    }
    Ok(u32::try_from(fl.l_pid).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_acquire_in_the_same_process_waits_then_times_out() {
        let d = tempfile::tempdir().unwrap();
        let lock = RunLock::acquire(d.path(), Duration::ZERO).unwrap();
        assert_eq!(lock.path(), d.path().join(LOCK_NAME));
        let e = RunLock::acquire(d.path(), Duration::from_millis(30)).unwrap_err();
        assert!(matches!(e, RunLockError::Timeout { .. }), "{e}");
        assert!(e.to_string().contains(LOCK_NAME), "{e}");
        drop(lock);
        let again = RunLock::acquire(d.path(), Duration::ZERO).unwrap();
        drop(again);
    }

    #[test]
    fn creates_a_missing_lock_directory() {
        let d = tempfile::tempdir().unwrap();
        let sub = d.path().join("a/b");
        let lock = RunLock::acquire(&sub, Duration::ZERO).unwrap();
        assert!(sub.join(LOCK_NAME).is_file());
        // Our own lock is not "held by someone else" for F_GETLK.
        assert_eq!(RunLock::holder(&sub).unwrap(), None);
        drop(lock);
    }
}
