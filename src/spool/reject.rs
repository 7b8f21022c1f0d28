//! The reject directory beside the queue root: messages the sender gives up
//! on, and entries of the queue that are no part of it, each with a
//! `.reason` file. It is opened without following a symlink (a link or a
//! file named `reject` is refused), and every error about it names it.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::at::Dir;
use super::scan::BadEntry;
use super::{ElementId, Queue, SpoolError, dirq, io_err, parent_of};

impl Queue {
    /// Moves a locked element out of the queue for good, into the `reject`
    /// directory beside the queue root (`/var/spool/apel/outgoing` ->
    /// `/var/spool/apel/reject/`), with the reason in `<name>.reason` beside it.
    /// Never overwrites a file there (a `.1`, `.2`... suffix is added instead).
    /// Returns the path of the rejected message.
    pub fn reject(&self, id: &ElementId, reason: &str) -> Result<PathBuf, SpoolError> {
        element(self, id, reason)
    }

    /// Writes `body`, one part of the locked element `id` (sent in parts,
    /// see `send::parts`), into the reject directory as `<name>.part-<label>`
    /// with its `.reason`; the element itself stays in the queue. Never
    /// overwrites a file there. Returns the path written.
    pub fn reject_part(
        &self,
        id: &ElementId,
        label: &str,
        body: &[u8],
        reason: &str,
    ) -> Result<PathBuf, SpoolError> {
        part(self, id, label, body, reason)
    }

    /// Moves an entry [`Queue::scan`] found bad into the reject directory
    /// (renamed as itself: a symlink stays a link, a directory a directory,
    /// nothing is read), with a `.reason` file naming where it was and why.
    /// An entry that is not [`super::Defect::movable`] is left in place.
    pub fn set_aside(&self, bad: &BadEntry) -> Result<SetAside, SpoolError> {
        set_aside(self, bad)
    }
}

/// Names tried in the reject directory: `<name>`, `<name>.1`, ...
const MAX_NAMES: u32 = 1000;

/// What [`Queue::set_aside`] did with a bad entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetAside {
    /// Moved there.
    Moved(PathBuf),
    /// Not movable (see [`super::Defect::movable`]): still in the queue.
    Left,
    /// It was gone before it could be moved.
    Gone,
}

fn reject_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SpoolError {
    let path = path.to_path_buf();
    move |error| SpoolError::RejectDir { op, path, error }
}

/// Opens (creating it if missing) `<parent of the root>/reject`. The root's
/// parent is the administrator's path, opened as configured; `reject` in it
/// must be a directory itself.
fn open_reject_dir(q: &Queue) -> Result<(Dir, PathBuf), SpoolError> {
    let path = q.reject_dir();
    let parent = parent_of(&q.root);
    let name = OsStr::new("reject");
    let p = Dir::open(parent).map_err(reject_err("open the directory holding", &path))?;
    let opened = |p: &Dir| {
        p.open_dir(name).map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP | libc::ENOTDIR) => io::Error::new(
                e.kind(),
                "not a directory (a symlink or a file in its place is never followed)",
            ),
            _ => e,
        })
    };
    match opened(&p) {
        Ok(d) => return Ok((d, path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(reject_err("open", &path)(e)),
    }
    match p.mkdir(name) {
        Ok(()) => p
            .sync()
            .map_err(reject_err("fsync the directory holding", &path))?,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(reject_err("create", &path)(e)),
    }
    let d = opened(&p).map_err(reject_err("open", &path))?;
    Ok((d, path))
}

/// `name`, `name.1`, `name.2`...
fn numbered(name: &OsStr, n: u32) -> OsString {
    let mut s = name.to_owned();
    if n > 0 {
        s.push(format!(".{n}"));
    }
    s
}

pub(super) fn reason_name(base: &OsStr) -> OsString {
    let mut s = base.to_owned();
    s.push(".reason");
    s
}

fn with_newline(reason: &str) -> String {
    let mut r = reason.to_owned();
    if !r.ends_with('\n') {
        r.push('\n');
    }
    r
}

/// [`Queue::reject`]: the locked element (its `.lck` in dirq) is linked
/// into the reject directory, its reason written beside it, then the element
/// removed from the queue.
pub(super) fn element(q: &Queue, id: &ElementId, reason: &str) -> Result<PathBuf, SpoolError> {
    let (src, name) = q.locate(id)?;
    let locked = OsString::from(q.locked_name(name));
    let locked_path = q.locked_path(id);
    let (rd, rpath) = open_reject_dir(q)?;
    let reason = with_newline(reason);
    for n in 0..MAX_NAMES {
        let base = numbered(OsStr::new(name), n);
        if !place_link(&src, &locked, &locked_path, &rd, &rpath, &base)? {
            continue;
        }
        let reason_file = reason_name(&base);
        if place_new(&rd, &rpath, &reason_file, |f| {
            f.write_all(reason.as_bytes())
        })? {
            rd.sync().map_err(reject_err("fsync", &rpath))?;
            q.remove(id)?;
            return Ok(rpath.join(base));
        }
        // A stray `.reason` without its message: leave it, try the next name.
        rd.unlink(&base)
            .map_err(reject_err("remove a message from", &rpath))?;
    }
    Err(SpoolError::NoFreeName {
        id: id.to_string(),
        dir: rpath,
    })
}

/// [`Queue::reject_part`]: the part, then its reason, each a new file.
pub(super) fn part(
    q: &Queue,
    id: &ElementId,
    label: &str,
    body: &[u8],
    reason: &str,
) -> Result<PathBuf, SpoolError> {
    let (_, name) = q.locate(id)?;
    // The label is ours ("1.2"), but a name must never leave the directory.
    if !label.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(SpoolError::InvalidElement {
            id: format!("{id} part {label}"),
            layout: q.layout,
            root: q.root.clone(),
        });
    }
    let (rd, rpath) = open_reject_dir(q)?;
    let reason = with_newline(reason);
    let part_name = OsString::from(format!("{name}.part-{label}"));
    for n in 0..MAX_NAMES {
        let base = numbered(&part_name, n);
        if !place_new(&rd, &rpath, &base, |f| f.write_all(body))? {
            continue;
        }
        if place_new(&rd, &rpath, &reason_name(&base), |f| {
            f.write_all(reason.as_bytes())
        })? {
            rd.sync().map_err(reject_err("fsync", &rpath))?;
            return Ok(rpath.join(base));
        }
        rd.unlink(&base)
            .map_err(reject_err("remove a message from", &rpath))?;
    }
    Err(SpoolError::NoFreeName {
        id: id.to_string(),
        dir: rpath,
    })
}

/// Puts `src_name` of `src` at `base` in the reject directory without
/// replacing anything: a hard link (a symlink is linked as itself), or a
/// synced copy of a regular file across file systems. `false` when `base`
/// exists there.
fn place_link(
    src: &Dir,
    src_name: &OsStr,
    src_path: &Path,
    rd: &Dir,
    rpath: &Path,
    base: &OsStr,
) -> Result<bool, SpoolError> {
    match src.link(src_name, rd, base) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            let (file, len) = src
                .open_regular(src_name)
                .map_err(io_err("read", src_path))?;
            place_new(rd, rpath, base, |out| {
                io::copy(&mut file.take(len), out).map(drop)
            })
        }
        // The source: an element that is not locked (no `.lck`).
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Err(io_err("link into the reject directory", src_path)(e))
        }
        Err(e) => Err(reject_err("link a message into", rpath)(e)),
    }
}

/// Writes a new file `target` in the reject directory atomically (temp,
/// fsync, link) without replacing anything. `false` when `target` exists.
fn place_new(
    rd: &Dir,
    rpath: &Path,
    target: &OsStr,
    write: impl FnOnce(&mut File) -> io::Result<()>,
) -> Result<bool, SpoolError> {
    let mut tmp = OsString::from(".");
    tmp.push(target);
    tmp.push(format!(".{}.tmp", uuid::Uuid::new_v4().simple()));
    let mut f = rd
        .create_new(&tmp)
        .map_err(reject_err("write a file in", rpath))?;
    if let Err(e) = write(&mut f).and_then(|()| f.sync_all()) {
        let _ = rd.unlink(&tmp);
        return Err(reject_err("write a file in", rpath)(e));
    }
    let linked = rd.link(&tmp, rd, target);
    rd.unlink(&tmp)
        .map_err(reject_err("remove a temporary file from", rpath))?;
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(reject_err("link a file in", rpath)(e)),
    }
}

/// [`Queue::set_aside`]: the reason first (so a name is taken), then the
/// entry renamed into the reject directory, never replacing anything.
pub(super) fn set_aside(q: &Queue, bad: &BadEntry) -> Result<SetAside, SpoolError> {
    if !bad.defect.movable() {
        return Ok(SetAside::Left);
    }
    let from = match &bad.parent {
        None => q.root_dir.try_clone().map_err(io_err("open", &q.root))?,
        Some(dir) => match q.root_dir.open_dir(OsStr::new(dir)) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(SetAside::Gone),
            Err(e) => return Err(dirq::dir_error(&q.root, dir, e)),
        },
    };
    let (rd, rpath) = open_reject_dir(q)?;
    let reason = format!("{:?}: {}\n", bad.path, bad.defect);
    for n in 0..MAX_NAMES {
        let base = numbered(&bad.name, n);
        let reason_file = reason_name(&base);
        if !place_new(&rd, &rpath, &reason_file, |f| {
            f.write_all(reason.as_bytes())
        })? {
            continue;
        }
        match from.rename_noreplace(&bad.name, &rd, &base) {
            Ok(()) => {
                rd.sync().map_err(reject_err("fsync", &rpath))?;
                let _ = from.sync();
                return Ok(SetAside::Moved(rpath.join(base)));
            }
            Err(e) => {
                let _ = rd.unlink(&reason_file);
                match e.kind() {
                    io::ErrorKind::AlreadyExists => continue,
                    io::ErrorKind::NotFound => return Ok(SetAside::Gone),
                    _ => return Err(reject_err("move an entry into", &rpath)(e)),
                }
            }
        }
    }
    Err(SpoolError::NoFreeName {
        id: format!("{:?}", bad.path),
        dir: rpath,
    })
}
