//! Directory descriptors and the `*at()` calls the spool makes through them,
//! so that nothing inside a queue root is ever reached through a symlink:
//! every name is one path component resolved in a directory held open, with
//! `O_NOFOLLOW` (or `AT_SYMLINK_NOFOLLOW`), and a file's type is checked with
//! `fstat` on the descriptor it is read from, never on a path.
//!
//! `linkat` without `AT_SYMLINK_FOLLOW` and `renameat2` act on a symlink
//! itself, never on its target; `unlinkat` removes the name only.

use std::ffi::{CString, OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::sys;

/// What a directory entry is, seen without following it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
    Other,
}

impl Kind {
    fn from_mode(mode: libc::mode_t) -> Kind {
        match mode & libc::S_IFMT {
            libc::S_IFREG => Kind::File,
            libc::S_IFDIR => Kind::Dir,
            libc::S_IFLNK => Kind::Symlink,
            libc::S_IFIFO => Kind::Fifo,
            libc::S_IFSOCK => Kind::Socket,
            libc::S_IFCHR => Kind::CharDevice,
            libc::S_IFBLK => Kind::BlockDevice,
            _ => Kind::Other,
        }
    }

    /// readdir's `d_type`; `None` when the file system does not say.
    fn from_dtype(t: u8) -> Option<Kind> {
        Some(match t {
            libc::DT_REG => Kind::File,
            libc::DT_DIR => Kind::Dir,
            libc::DT_LNK => Kind::Symlink,
            libc::DT_FIFO => Kind::Fifo,
            libc::DT_SOCK => Kind::Socket,
            libc::DT_CHR => Kind::CharDevice,
            libc::DT_BLK => Kind::BlockDevice,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::File => "a regular file",
            Kind::Dir => "a directory",
            Kind::Symlink => "a symbolic link",
            Kind::Fifo => "a FIFO",
            Kind::Socket => "a socket",
            Kind::CharDevice => "a character device",
            Kind::BlockDevice => "a block device",
            Kind::Other => "a file of unknown type",
        })
    }
}

/// One name of a directory listing (never `.` or `..`).
#[derive(Debug)]
pub struct Entry {
    pub name: OsString,
    /// From readdir; `None` when the file system does not tell (ask [`Dir::lstat`]).
    pub kind: Option<Kind>,
}

/// `lstat` of an entry.
#[derive(Clone, Copy, Debug)]
pub struct Stat {
    pub kind: Kind,
    pub mtime: SystemTime,
}

/// The error for a non-regular file where one is read: never opened further.
pub fn not_regular(kind: Kind) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("it is {kind}, not a regular file (never followed or read)"),
    )
}

/// `O_NOFOLLOW` on a symlink fails with ELOOP: say what it means.
fn explain_nofollow(e: io::Error) -> io::Error {
    if e.raw_os_error() == Some(libc::ELOOP) {
        not_regular(Kind::Symlink)
    } else {
        e
    }
}

/// One path component as a C string: anything else (`a/b`, `..`) would leave
/// the directory.
fn component(name: &OsStr) -> io::Result<CString> {
    let b = name.as_bytes();
    if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a single file name",
        ));
    }
    CString::new(b).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn mtime_of(st: &libc::stat) -> SystemTime {
    let secs = u64::try_from(st.st_mtime).unwrap_or(0);
    let nanos = u32::try_from(st.st_mtime_nsec)
        .unwrap_or(0)
        .min(999_999_999);
    UNIX_EPOCH + Duration::new(secs, nanos)
}

/// An open directory (a `File`, so that std's `sync_all` is its fsync).
#[derive(Debug)]
pub struct Dir {
    fd: File,
}

const DIR_FLAGS: libc::c_int = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC;

impl Dir {
    /// Opens a directory by path, following symlinks: only for the paths the
    /// administrator configured (the queue root and its parent), never for
    /// anything inside a queue.
    pub fn open(path: &Path) -> io::Result<Dir> {
        // std adds O_RDONLY (read) and O_CLOEXEC: DIR_FLAGS.
        OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(path)
            .map(|fd| Dir { fd })
    }

    /// The subdirectory `name`: ELOOP for a symlink, ENOTDIR for anything
    /// else that is not a directory.
    pub fn open_dir(&self, name: &OsStr) -> io::Result<Dir> {
        let c = component(name)?;
        sys::openat(self.fd.as_fd(), &c, DIR_FLAGS | libc::O_NOFOLLOW, 0)
            .map(|fd| Dir { fd: fd.into() })
    }

    /// Creates the subdirectory `name` (mode 0777 minus the umask, as dirq).
    pub fn mkdir(&self, name: &OsStr) -> io::Result<()> {
        let c = component(name)?;
        sys::mkdirat(self.fd.as_fd(), &c, 0o777)
    }

    /// Every name in the directory but `.` and `..`.
    pub fn list(&self) -> io::Result<Vec<Entry>> {
        // A new open file description: its own offset, whatever other
        // threads list at the same time.
        let fd = sys::openat(self.fd.as_fd(), c".", DIR_FLAGS, 0)?;
        Ok(sys::read_dir(fd)?
            .into_iter()
            .filter(|(name, _)| name.as_bytes() != b"." && name.as_bytes() != b"..")
            .map(|(name, dtype)| Entry {
                name,
                kind: Kind::from_dtype(dtype),
            })
            .collect())
    }

    /// `fstatat(AT_SYMLINK_NOFOLLOW)`: the entry itself.
    pub fn lstat(&self, name: &OsStr) -> io::Result<Stat> {
        let c = component(name)?;
        let st = sys::fstatat(self.fd.as_fd(), &c, libc::AT_SYMLINK_NOFOLLOW)?;
        Ok(Stat {
            kind: Kind::from_mode(st.st_mode),
            mtime: mtime_of(&st),
        })
    }

    /// Opens `name` for reading only if it is a regular file: checked first
    /// on the entry (a device is never even opened), then on the descriptor.
    /// `O_NONBLOCK` keeps a FIFO swapped in between from blocking the open.
    pub fn open_regular(&self, name: &OsStr) -> io::Result<(File, u64)> {
        let kind = self.lstat(name)?.kind;
        if kind != Kind::File {
            return Err(not_regular(kind));
        }
        let c = component(name)?;
        let flags =
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC;
        let fd = sys::openat(self.fd.as_fd(), &c, flags, 0).map_err(explain_nofollow)?;
        let file = File::from(fd);
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(not_regular(Kind::from_mode(MetadataExt::mode(&meta))));
        }
        Ok((file, meta.len()))
    }

    /// The content of the regular file `name`, at most `limit + 1` bytes
    /// (read no further: one byte over says "too large").
    pub fn read_capped(&self, name: &OsStr, limit: usize) -> io::Result<Vec<u8>> {
        let (file, len) = self.open_regular(name)?;
        let cap = limit.saturating_add(1);
        let mut body = Vec::with_capacity(usize::try_from(len).unwrap_or(cap).min(cap));
        file.take(cap as u64).read_to_end(&mut body)?;
        Ok(body)
    }

    /// Creates `name` exclusively for writing (never through a symlink:
    /// `O_EXCL` refuses any existing entry).
    pub fn create_new(&self, name: &OsStr) -> io::Result<File> {
        let c = component(name)?;
        let flags =
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        sys::openat(self.fd.as_fd(), &c, flags, 0o666).map(File::from)
    }

    /// An unnamed file in this directory (`O_TMPFILE`), linked later with [`Dir::link_file`].
    pub fn tmpfile(&self) -> io::Result<File> {
        let flags = libc::O_WRONLY | libc::O_TMPFILE | libc::O_CLOEXEC;
        sys::openat(self.fd.as_fd(), c".", flags, 0o666).map(File::from)
    }

    /// Hard-links `old` here as `new` in `to`: a symlink is linked as itself.
    pub fn link(&self, old: &OsStr, to: &Dir, new: &OsStr) -> io::Result<()> {
        let (o, n) = (component(old)?, component(new)?);
        // Flags 0: never follow `old`.
        sys::linkat(Some(self.fd.as_fd()), &o, to.fd.as_fd(), &n, 0)
    }

    /// Gives the open (unnamed) `file` the name `new` here.
    pub fn link_file(&self, file: &File, new: &OsStr) -> io::Result<()> {
        let n = component(new)?;
        // Our own descriptor's magic link: following it is the point.
        let proc_path = CString::new(format!("/proc/self/fd/{}", file.as_raw_fd()))
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        sys::linkat(
            None,
            &proc_path,
            self.fd.as_fd(),
            &n,
            libc::AT_SYMLINK_FOLLOW,
        )
    }

    /// Moves `old` to `new` in `to` unless `new` exists (EEXIST): a symlink
    /// or directory is moved as itself, never read.
    pub fn rename_noreplace(&self, old: &OsStr, to: &Dir, new: &OsStr) -> io::Result<()> {
        let (o, n) = (component(old)?, component(new)?);
        sys::renameat2(
            self.fd.as_fd(),
            &o,
            to.fd.as_fd(),
            &n,
            libc::RENAME_NOREPLACE,
        )
    }

    /// Removes the name `name` (a symlink itself, never its target).
    pub fn unlink(&self, name: &OsStr) -> io::Result<()> {
        let c = component(name)?;
        sys::unlinkat(self.fd.as_fd(), &c, 0)
    }

    /// Removes the empty subdirectory `name`.
    pub fn rmdir(&self, name: &OsStr) -> io::Result<()> {
        let c = component(name)?;
        sys::unlinkat(self.fd.as_fd(), &c, libc::AT_REMOVEDIR)
    }

    /// `utimensat(name, now, AT_SYMLINK_NOFOLLOW)`: Python's `os.utime(path, None)`.
    pub fn touch(&self, name: &OsStr) -> io::Result<()> {
        let c = component(name)?;
        sys::touch_at(self.fd.as_fd(), &c, libc::AT_SYMLINK_NOFOLLOW)
    }

    /// fsync: makes the creation, link and removal of entries durable.
    pub fn sync(&self) -> io::Result<()> {
        self.fd.sync_all()
    }

    /// `syncfs(2)`: writes back every dirty page and inode of this file
    /// system, one call for a whole batch instead of an fsync per file.
    pub fn sync_fs(&self) -> io::Result<()> {
        sys::syncfs(self.fd.as_fd())
    }

    /// Another descriptor for the same directory.
    pub fn try_clone(&self) -> io::Result<Dir> {
        self.fd.try_clone().map(|fd| Dir { fd })
    }
}
