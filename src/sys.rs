//! Every system call std does not offer, as a small safe function: the only
//! module allowed `unsafe` (`src/lib.rs` denies it everywhere else).
//!
//! The wrappers are thin on purpose: each makes one call and turns `-1` into
//! [`io::Error::last_os_error`]. Policy (which flags, never following a
//! symlink) stays with the callers: `spool::at` for the `*at()` calls,
//! `runlock` for the record lock, `access` for the uid and search checks.
//! Descriptors come in as [`BorrowedFd`] and names as [`CStr`], so the two
//! things every SAFETY note relies on, an open descriptor and a
//! NUL-terminated string alive for the call, hold by type.

use std::ffi::{CStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn owned(fd: libc::c_int) -> io::Result<OwnedFd> {
    if fd < 0 {
        Err(io::Error::last_os_error())
    } else {
        // SAFETY: a descriptor the kernel just gave us, owned by nobody else.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

/// `openat(2)`; `mode` matters only with `O_CREAT` or `O_TMPFILE`.
pub fn openat(
    dir: BorrowedFd<'_>,
    name: &CStr,
    flags: libc::c_int,
    mode: libc::mode_t,
) -> io::Result<OwnedFd> {
    // SAFETY: an open descriptor and a NUL-terminated name, both alive for
    // the call; the variadic mode is passed as the promoted `c_uint`.
    owned(unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags, mode as libc::c_uint) })
}

/// `mkdirat(2)`.
pub fn mkdirat(dir: BorrowedFd<'_>, name: &CStr, mode: libc::mode_t) -> io::Result<()> {
    // SAFETY: an open descriptor and a NUL-terminated name.
    check(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode) })
}

/// Every name of the directory open as `dir` (`.` and `..` included) with
/// its `d_type`, read with `getdents64(2)` into a buffer of our own: no
/// `DIR` stream, whose `fdopendir` costs an `fcntl` and an `fstat` per
/// directory (thousands in a busy dirq queue). The descriptor's offset
/// must be the caller's own (a fresh `openat(".")`); it is closed on return.
pub fn read_dir(dir: OwnedFd) -> io::Result<Vec<(OsString, u8)>> {
    // `struct linux_dirent64`: d_ino u64, d_off i64, d_reclen u16, d_type u8,
    // then the NUL-terminated name. u64 words keep the buffer 8-byte aligned.
    const NAME: usize = 19;
    let mut buf = vec![0u64; 4096];
    let len = buf.len() * std::mem::size_of::<u64>();
    let mut out = Vec::new();
    loop {
        // SAFETY: an open descriptor and a live, writable buffer of `len` bytes.
        let n = unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                dir.as_raw_fd(),
                buf.as_mut_ptr().cast::<libc::c_void>(),
                len,
            )
        };
        let n = match usize::try_from(n) {
            Ok(0) => return Ok(out),
            Ok(n) => n.min(len),
            Err(_) => return Err(io::Error::last_os_error()),
        };
        // SAFETY: the first `n <= len` bytes of the initialized buffer.
        let bytes = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n) };
        let mut at = 0;
        while at < n {
            let record = bytes.get(at..).unwrap_or_default();
            let reclen = match record.get(16..18) {
                Some(&[a, b]) => usize::from(u16::from_ne_bytes([a, b])),
                _ => 0,
            };
            let (Some(&dtype), Some(name)) = (record.get(18), record.get(NAME..reclen)) else {
                return Err(io::Error::other("getdents64 returned a malformed record"));
            };
            let name = name.split(|&b| b == 0).next().unwrap_or_default();
            out.push((OsString::from_vec(name.to_vec()), dtype));
            at += reclen;
        }
    }
}

/// `fstatat(2)` with `flags` (e.g. `AT_SYMLINK_NOFOLLOW`).
pub fn fstatat(dir: BorrowedFd<'_>, name: &CStr, flags: libc::c_int) -> io::Result<libc::stat> {
    // SAFETY: an all-zero stat is a valid buffer for fstatat to fill.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: an open descriptor, a NUL-terminated name and a live buffer.
    check(unsafe { libc::fstatat(dir.as_raw_fd(), name.as_ptr(), &mut st, flags) })?;
    Ok(st)
}

/// `linkat(2)`; `old_dir` is `None` for `AT_FDCWD` (an absolute `old`).
pub fn linkat(
    old_dir: Option<BorrowedFd<'_>>,
    old: &CStr,
    new_dir: BorrowedFd<'_>,
    new: &CStr,
    flags: libc::c_int,
) -> io::Result<()> {
    let old_fd = old_dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    // SAFETY: open descriptors (or AT_FDCWD) and NUL-terminated names.
    check(unsafe {
        libc::linkat(
            old_fd,
            old.as_ptr(),
            new_dir.as_raw_fd(),
            new.as_ptr(),
            flags,
        )
    })
}

/// `renameat2(2)` with `flags` (e.g. `RENAME_NOREPLACE`).
pub fn renameat2(
    old_dir: BorrowedFd<'_>,
    old: &CStr,
    new_dir: BorrowedFd<'_>,
    new: &CStr,
    flags: libc::c_uint,
) -> io::Result<()> {
    // SAFETY: open descriptors and NUL-terminated names.
    check(unsafe {
        libc::renameat2(
            old_dir.as_raw_fd(),
            old.as_ptr(),
            new_dir.as_raw_fd(),
            new.as_ptr(),
            flags,
        )
    })
}

/// `unlinkat(2)`; `flags` 0 or `AT_REMOVEDIR`.
pub fn unlinkat(dir: BorrowedFd<'_>, name: &CStr, flags: libc::c_int) -> io::Result<()> {
    // SAFETY: an open descriptor and a NUL-terminated name.
    check(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), flags) })
}

/// `utimensat(2)` to "now" (a null `times`), with `flags` (e.g.
/// `AT_SYMLINK_NOFOLLOW`). Not `File::set_times`: that needs the entry
/// opened, and a symlink, FIFO or device must be touched as itself, never opened.
pub fn touch_at(dir: BorrowedFd<'_>, name: &CStr, flags: libc::c_int) -> io::Result<()> {
    // SAFETY: an open descriptor and a NUL-terminated name; a null `times`
    // means "now" and is never read.
    check(unsafe { libc::utimensat(dir.as_raw_fd(), name.as_ptr(), std::ptr::null(), flags) })
}

/// `syncfs(2)` of the file system holding `fd`.
pub fn syncfs(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: an open descriptor.
    check(unsafe { libc::syncfs(fd.as_raw_fd()) })
}

/// An all-zero `flock` for the caller to fill (its fields differ by target).
pub fn flock_zeroed() -> libc::flock {
    // SAFETY: `flock` is a plain C struct for which all-zero is valid.
    unsafe { std::mem::zeroed() }
}

/// `fcntl(F_SETLK)`: set or clear a POSIX record lock, never waiting.
pub fn set_record_lock(fd: BorrowedFd<'_>, lock: &libc::flock) -> io::Result<()> {
    // SAFETY: an open descriptor and a pointer to a live, initialised flock.
    let rc = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETLK, lock) };
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `fcntl(F_GETLK)`: `lock` becomes the first conflicting lock, or `F_UNLCK`.
pub fn get_record_lock(fd: BorrowedFd<'_>, lock: &mut libc::flock) -> io::Result<()> {
    // SAFETY: an open descriptor and a pointer to a live, initialised flock it fills in.
    let rc = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETLK, lock) };
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `geteuid(2)`.
pub fn geteuid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// `faccessat(AT_FDCWD, path, mode, flags)` (e.g. `X_OK`, `AT_EACCESS`).
pub fn faccessat(path: &CStr, mode: libc::c_int, flags: libc::c_int) -> io::Result<()> {
    // SAFETY: a NUL-terminated string that outlives the call.
    check(unsafe { libc::faccessat(libc::AT_FDCWD, path.as_ptr(), mode, flags) })
}

/// `mkfifo(3)`, for tests that plant a FIFO.
#[cfg(test)]
pub fn mkfifo(path: &CStr, mode: libc::mode_t) -> io::Result<()> {
    // SAFETY: a NUL-terminated path.
    check(unsafe { libc::mkfifo(path.as_ptr(), mode) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn read_dir_returns_every_name_over_many_buffers() {
        let d = tempfile::tempdir().unwrap();
        let mut want = BTreeSet::new();
        // 3,000 names up to 255 bytes: several getdents64 calls of 32 KiB.
        for i in 0..3000usize {
            let name = format!("{i:05}{}", "x".repeat(i % 251));
            std::fs::write(d.path().join(&name), b"").unwrap();
            want.insert(name);
        }
        std::fs::create_dir(d.path().join("sub")).unwrap();
        let fd: OwnedFd = std::fs::File::open(d.path()).unwrap().into();
        let got = read_dir(fd).unwrap();
        let mut names = BTreeSet::new();
        for (name, dtype) in &got {
            let n = name.as_bytes();
            if n == b"." || n == b".." {
                continue;
            }
            let expect = if n == b"sub" {
                libc::DT_DIR
            } else {
                libc::DT_REG
            };
            assert_eq!(*dtype, expect, "{name:?}");
            names.insert(name.to_str().unwrap().to_owned());
        }
        want.insert("sub".into());
        assert_eq!(names, want);
        assert_eq!(got.len(), want.len() + 2);
    }
}
