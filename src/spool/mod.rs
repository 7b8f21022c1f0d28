//! The spool: every byte either program reads from or writes to a message queue
//! on disk goes through [`Queue`].
//!
//! Two layouts, both readable and writable by the Python tools at the same time:
//!
//! * [`Layout::Dirq`]: Python `dirq` 1.8 `QueueSimple`, what cASO writes and the
//!   default `path_type` of `ssmsend`. Intermediate directories named `%08x` after
//!   the add time rounded down to 60 s, elements named `%08x%05x%01x` (seconds,
//!   microseconds, one random hex digit fixed per [`Queue`]), added as
//!   `<name>.tmp` + hard link + unlink, locked by hard-linking `<name>.lck` and
//!   touching the element. Unlike dirq, adding is durable: [`Queue::add`]
//!   fsyncs the element before linking it and the directory before returning;
//!   a [`Batch`] syncs the file system once for all its elements before linking
//!   them. An element reported as added survives a crash or power loss, and no
//!   reader ever sees a partial one.
//! * [`Layout::Directory`]: SSM's flat `directory` path type, any file name (we
//!   use a uuid4 as SSM does), sent in mtime order. There is no locking in this
//!   layout: [`Queue::lock`] only checks that the file is still there, so two
//!   senders working on one flat directory may both send a message. Use `dirq`
//!   whenever more than one process may read the queue.
//!
//! A producer (the extractor) adds one project's messages in a [`Batch`] and
//! writes that project's lastrun only after [`Batch::commit`] returned.
//! A consumer lists the queue with [`Queue::scan`], moves each entry that is
//! not a message aside with [`Queue::set_aside`], then for each element:
//! [`Queue::lock`] (skip on `false`), [`Queue::get`], then [`Queue::remove`]
//! once delivered, [`Queue::unlock`] to leave it for the next run, or
//! [`Queue::reject`] to move it aside for good. After a run, [`Queue::purge`] cleans what crashed
//! processes left behind.
//!
//! All calls are blocking file-system calls: from async code run them in
//! `tokio::task::spawn_blocking`.

mod at;
mod atomic;
mod directory;
mod dirq;
mod inventory;
mod reject;
mod scan;
mod writable;

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fmt;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use at::Dir;
pub use at::Kind;
pub(crate) use atomic::{read_small, write_atomic};
pub use inventory::{Inventory, Rejected, RejectedEntry};
pub use reject::SetAside;
pub use scan::{BadEntry, Defect, Scan};
pub use writable::{NotWritable, check_writable, nearest_existing};

/// How messages are laid out under the queue root (`[messaging] path_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layout {
    /// Python dirq `QueueSimple` (`path_type = dirq`, the default).
    Dirq,
    /// SSM's flat directory (`path_type = directory`).
    Directory,
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layout::Dirq => "dirq",
            Layout::Directory => "directory",
        })
    }
}

/// The name of one message in a queue: `8hex/14hex` for dirq (what Python dirq
/// calls an element name), the file name for the directory layout. Only a
/// [`Queue`] makes them; it is also the message id SSM logs and sends.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ElementId(String);

impl ElementId {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The last path component: the dirq element name without its directory.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }
}

impl fmt::Display for ElementId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What [`Queue::purge`] removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PurgeReport {
    /// Temporary files of adds that never finished (crashed writers).
    pub temp_removed: usize,
    /// Stale locks removed, i.e. elements unlocked (dirq only).
    pub locks_removed: usize,
    /// Empty intermediate directories removed (dirq only).
    pub dirs_removed: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// An OS call failed; names the operation, the path and the OS error.
    #[error("cannot {op} {path}: {error}")]
    Io {
        op: &'static str,
        path: PathBuf,
        error: io::Error,
    },
    /// The reject directory is missing, not a directory, or not writable.
    #[error("cannot {op} the reject directory {path}: {error}")]
    RejectDir {
        op: &'static str,
        path: PathBuf,
        error: io::Error,
    },
    #[error("spool directory {0} does not exist")]
    MissingRoot(PathBuf),
    #[error("spool path {0} is not a directory")]
    NotADirectory(PathBuf),
    #[error("{id:?} is not an element name of the {layout} queue {root}")]
    InvalidElement {
        id: String,
        layout: Layout,
        root: PathBuf,
    },
    #[error("cannot find a free name for element {id} in {dir}")]
    NoFreeName { id: String, dir: PathBuf },
}

/// Wraps an `io::Error` with the operation and path, for `map_err`.
pub(crate) fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SpoolError {
    let path = path.to_path_buf();
    move |error| SpoolError::Io { op, path, error }
}

/// fsync a directory, making the creation, link and removal of its entries durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    // `Path::new("")` is what `parent()` gives for a bare relative name.
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    File::open(dir)?.sync_all()
}

/// A message queue on disk in one [`Layout`].
///
/// Everything below the root is reached through directory descriptors with
/// no-follow semantics (`openat` and friends): a symlink, FIFO, device or socket in the
/// queue is never followed, opened for reading or waited on; [`Queue::scan`]
/// reports it and [`Queue::set_aside`] moves it (as itself) to the reject
/// directory.
#[derive(Debug)]
pub struct Queue {
    root: PathBuf,
    /// The root, held open: every name below it is resolved from here.
    root_dir: Dir,
    layout: Layout,
    /// dirq's "random digit" closing every element name, fixed per queue
    /// object as dirq does.
    rndhex: u8,
    /// Intermediate directories whose entry in the root we have fsynced (a
    /// directory another process created may not be durable yet).
    synced_dirs: Mutex<HashSet<String>>,
}

impl Queue {
    /// Opens an existing queue (the sender's side). A missing root is an error
    /// naming it; nothing is created. The root is the path the administrator
    /// configured: a symlink there is followed like any configured path;
    /// nothing below it ever is.
    pub fn open(root: &Path, layout: Layout) -> Result<Queue, SpoolError> {
        match Dir::open(root) {
            Ok(root_dir) => Ok(Queue {
                root: root.to_path_buf(),
                root_dir,
                layout,
                rndhex: uuid::Uuid::new_v4().as_bytes()[0] & 0x0f,
                synced_dirs: Mutex::new(HashSet::new()),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(SpoolError::MissingRoot(root.to_path_buf()))
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
                Err(SpoolError::NotADirectory(root.to_path_buf()))
            }
            Err(e) => Err(io_err("open", root)(e)),
        }
    }

    /// Opens a queue for adding, creating the root and its missing parents
    /// (mode 0777 minus the umask, as dirq and cASO do).
    pub fn create(root: &Path, layout: Layout) -> Result<Queue, SpoolError> {
        if !root.is_dir() {
            fs::create_dir_all(root).map_err(io_err("create directory", root))?;
            if let Some(parent) = root.parent() {
                sync_dir(parent).map_err(io_err("fsync", parent))?;
            }
        }
        Queue::open(root, layout)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Adds one message durably: when this returns, the element is complete on
    /// disk, fsynced, and its directory entry too.
    pub fn add(&self, body: &[u8]) -> Result<ElementId, SpoolError> {
        let mut batch = self.batch();
        batch.push(body, true)?;
        batch.commit()?.pop().ok_or_else(|| SpoolError::Io {
            op: "add to",
            path: self.root.clone(),
            error: io::Error::other("no element was added"),
        })
    }

    /// Starts adding many messages durably with one file-system sync for all
    /// of them (see [`Batch`]).
    pub fn batch(&self) -> Batch<'_> {
        Batch {
            queue: self,
            pending: Vec::new(),
            added: Vec::new(),
        }
    }

    /// Lists the queue: every element, in the order to send them (dirq by
    /// directory then name, Python dirq's iteration order; directory layout
    /// by mtime then name), and every entry that is no part of the layout
    /// (see [`Scan`] for what Python writers may leave and is not reported).
    /// Only regular files are elements; nothing is read or followed.
    pub fn scan(&self) -> Result<Scan, SpoolError> {
        match self.layout {
            Layout::Dirq => dirq::scan(&self.root_dir, &self.root),
            Layout::Directory => directory::scan(&self.root_dir, &self.root),
        }
    }

    /// The elements of [`Queue::scan`].
    pub fn elements(&self) -> Result<Vec<ElementId>, SpoolError> {
        self.scan().map(|s| s.elements)
    }

    /// The number of elements, locked or not (temporary files excluded).
    pub fn count(&self) -> Result<usize, SpoolError> {
        self.scan().map(|s| s.elements.len())
    }

    /// Takes the element for this process. `false`: another process holds it,
    /// or it was removed meanwhile; skip it. Directory layout: no lock at all,
    /// `true` whenever the entry still exists.
    pub fn lock(&self, id: &ElementId) -> Result<bool, SpoolError> {
        self.check_id(id)?;
        match self.layout {
            Layout::Dirq => dirq::lock(&self.root_dir, &self.root, id),
            Layout::Directory => directory::lock(&self.root_dir, &self.root, id.as_str()),
        }
    }

    /// The content of an element this process locked, if it is a regular
    /// file: at most `limit + 1` bytes are read (more says "too large"
    /// without reading it all). A FIFO, device or symlink is never read.
    pub fn get(&self, id: &ElementId, limit: usize) -> Result<Vec<u8>, SpoolError> {
        let (dir, name) = self.locate(id)?;
        dir.read_capped(OsStr::new(&self.locked_name(name)), limit)
            .map_err(io_err("read", &self.locked_path(id)))
    }

    /// The content of an element as it is, without locking it (a dry run:
    /// nothing in the queue changes), read as [`Queue::get`] reads. `None`:
    /// it is gone (another sender delivered it meanwhile).
    pub fn peek(&self, id: &ElementId, limit: usize) -> Result<Option<Vec<u8>>, SpoolError> {
        let (dir, name) = self.locate(id)?;
        match dir.read_capped(OsStr::new(name), limit) {
            Ok(body) => Ok(Some(body)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("read", &self.root.join(id.as_str()))(e)),
        }
    }

    /// Whether another process holds the element now (dirq; the directory
    /// layout has no locks). Nothing is changed.
    pub fn is_locked(&self, id: &ElementId) -> Result<bool, SpoolError> {
        if self.layout == Layout::Directory {
            return Ok(false);
        }
        let (dir, name) = self.locate(id)?;
        match dir.lstat(OsStr::new(&dirq::lock_name(name))) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err("look at", &self.locked_path(id))(e)),
        }
    }

    /// Releases a lock, leaving the element in the queue.
    pub fn unlock(&self, id: &ElementId) -> Result<(), SpoolError> {
        match self.layout {
            Layout::Dirq => {
                let (dir, name) = self.locate(id)?;
                dir.unlink(OsStr::new(&dirq::lock_name(name)))
                    .map_err(io_err("unlock (remove)", &self.locked_path(id)))
            }
            Layout::Directory => self.check_id(id),
        }
    }

    /// Removes a locked element for good (after delivery), durably.
    pub fn remove(&self, id: &ElementId) -> Result<(), SpoolError> {
        let (dir, name) = self.locate(id)?;
        self.unlink_element(&dir, id, name)?;
        // A removal lost in a crash means sending the message twice.
        dir.sync().map_err(io_err("fsync", &self.dir_path(id)))
    }

    /// The element's name, then (dirq) its lock.
    fn unlink_element(&self, dir: &Dir, id: &ElementId, name: &str) -> Result<(), SpoolError> {
        dir.unlink(OsStr::new(name))
            .map_err(io_err("remove", &self.root.join(id.as_str())))?;
        if self.layout == Layout::Dirq {
            dir.unlink(OsStr::new(&dirq::lock_name(name)))
                .map_err(io_err("remove", &self.locked_path(id)))?;
        }
        Ok(())
    }

    /// [`Queue::remove`] for many elements at once, with one directory fsync
    /// per directory instead of one per element (a sender removes the
    /// messages whose confirmations arrived together). One result per id, in
    /// order: `Ok` only once the removal is durable.
    pub fn remove_all(&self, ids: &[ElementId]) -> Vec<Result<(), SpoolError>> {
        let mut results = Vec::with_capacity(ids.len());
        let mut dirs: Vec<(PathBuf, Dir)> = Vec::new();
        let mut dir_of: Vec<Option<usize>> = Vec::with_capacity(ids.len());
        for id in ids {
            let removed = self.locate(id).and_then(|(dir, name)| {
                self.unlink_element(&dir, id, name)?;
                Ok(dir)
            });
            match removed {
                Ok(dir) => {
                    let path = self.dir_path(id);
                    let i = match dirs.iter().position(|(p, _)| *p == path) {
                        Some(i) => i,
                        None => {
                            dirs.push((path, dir));
                            dirs.len() - 1
                        }
                    };
                    dir_of.push(Some(i));
                    results.push(Ok(()));
                }
                Err(e) => {
                    dir_of.push(None);
                    results.push(Err(e));
                }
            }
        }
        for (i, (path, dir)) in dirs.iter().enumerate() {
            if let Err(e) = dir.sync() {
                let kind = e.kind();
                for (r, d) in results.iter_mut().zip(&dir_of) {
                    if *d == Some(i) {
                        *r = Err(io_err("fsync", path)(io::Error::from(kind)));
                    }
                }
            }
        }
        results
    }

    /// Cleans up after crashed processes, as dirq's `purge(maxtemp, maxlock)`:
    /// removes temporary files older than `max_temp`, unlocks elements locked
    /// longer than `max_lock` (ssmsend uses 300 s and 600 s, dirq's defaults)
    /// and removes empty intermediate directories except the newest. A zero
    /// duration disables that cleanup, as in dirq. Only regular files are
    /// removed; whatever else is there is [`Queue::scan`]'s to report.
    pub fn purge(&self, max_temp: Duration, max_lock: Duration) -> Result<PurgeReport, SpoolError> {
        let now = SystemTime::now();
        match self.layout {
            Layout::Dirq => dirq::purge(&self.root_dir, &self.root, now, max_temp, max_lock),
            Layout::Directory => directory::purge(&self.root_dir, &self.root, now, max_temp),
        }
    }

    /// `<parent of the root>/reject`.
    pub fn reject_dir(&self) -> PathBuf {
        reject_dir_of(&self.root)
    }

    /// Checks the id belongs to this layout (ids are plain strings: never let
    /// one escape the root).
    fn check_id(&self, id: &ElementId) -> Result<(), SpoolError> {
        let valid = match self.layout {
            Layout::Dirq => dirq::is_element_id(id.as_str()),
            Layout::Directory => directory::is_element_name(id.as_str()),
        };
        if valid {
            Ok(())
        } else {
            Err(SpoolError::InvalidElement {
                id: id.to_string(),
                layout: self.layout,
                root: self.root.clone(),
            })
        }
    }

    /// The directory holding the element, open, and its name there.
    fn locate<'i>(&self, id: &'i ElementId) -> Result<(Dir, &'i str), SpoolError> {
        self.check_id(id)?;
        match self.layout {
            Layout::Dirq => {
                let (dir, name) = dirq::split_id(id);
                Ok((dirq::open_dir(&self.root_dir, &self.root, dir)?, name))
            }
            Layout::Directory => {
                let dir = self
                    .root_dir
                    .try_clone()
                    .map_err(io_err("open", &self.root))?;
                Ok((dir, id.as_str()))
            }
        }
    }

    /// The name a locked element is read from: dirq reads the `.lck` link.
    fn locked_name(&self, name: &str) -> String {
        match self.layout {
            Layout::Dirq => dirq::lock_name(name),
            Layout::Directory => name.to_owned(),
        }
    }

    fn locked_path(&self, id: &ElementId) -> PathBuf {
        self.root.join(self.locked_name(id.as_str()))
    }

    /// The directory an element is in (for messages).
    fn dir_path(&self, id: &ElementId) -> PathBuf {
        match self.layout {
            Layout::Dirq => self.root.join(dirq::split_id(id).0),
            Layout::Directory => self.root.clone(),
        }
    }
}

/// The reject directory of the queue at `root`: `<parent of root>/reject`.
pub fn reject_dir_of(root: &Path) -> PathBuf {
    parent_of(root).join("reject")
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Adds many messages with one durability cost for all: what the extractor
/// does with one project's messages before writing its lastrun.
///
/// dirq layout: [`Batch::add`] only writes the message to a temporary file
/// (invisible to readers, removed by purge if we crash); [`Batch::commit`]
/// syncs the file system once (`syncfs`), links every message into the queue
/// in add order, and fsyncs the directories. A reader sees all of them from
/// then on, never a partial one. Directory layout: each add is fsynced and
/// visible at once; commit fsyncs the directory.
///
/// Dropping a batch without committing removes its temporary files. Commit
/// soon after the adds: a purge (ours or dirq's) removes temporary files
/// older than its `max_temp`, 300 s in ssmsend, and commit then fails.
#[must_use = "nothing is added until commit() returns"]
pub struct Batch<'q> {
    queue: &'q Queue,
    /// dirq: (intermediate directory, temporary file name, already fsynced).
    pending: Vec<(String, String, bool)>,
    /// Directory layout: already linked.
    added: Vec<ElementId>,
}

impl Batch<'_> {
    pub fn add(&mut self, body: &[u8]) -> Result<(), SpoolError> {
        self.push(body, false)
    }

    fn push(&mut self, body: &[u8], sync: bool) -> Result<(), SpoolError> {
        let q = self.queue;
        match q.layout {
            Layout::Dirq => {
                let (dir, tmp) = dirq::write_temp(&q.root_dir, &q.root, q.rndhex, body, sync)?;
                self.pending.push((dir, tmp, sync));
            }
            Layout::Directory => self.added.push(directory::add(&q.root_dir, &q.root, body)?),
        }
        Ok(())
    }

    /// How many messages this batch holds so far.
    pub fn len(&self) -> usize {
        self.pending.len() + self.added.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes every message of the batch a durable element; returns their ids
    /// in add order (which is also their send order).
    pub fn commit(mut self) -> Result<Vec<ElementId>, SpoolError> {
        let q = self.queue;
        if q.layout == Layout::Directory {
            q.root_dir.sync().map_err(io_err("fsync", &q.root))?;
            return Ok(std::mem::take(&mut self.added));
        }
        if self.pending.iter().any(|(_, _, synced)| !synced) {
            q.root_dir
                .sync_fs()
                .map_err(io_err("sync the file system of", &q.root))?;
        }
        let pending = std::mem::take(&mut self.pending);
        let mut ids = Vec::with_capacity(pending.len());
        let mut dirs: Vec<(String, Dir)> = Vec::new();
        for (i, (dir, tmp, _)) in pending.iter().enumerate() {
            let open = match dirs.iter().position(|(d, _)| d == dir) {
                Some(at) => Ok(at),
                None => dirq::open_dir(&q.root_dir, &q.root, dir).map(|d| {
                    dirs.push((dir.clone(), d));
                    dirs.len() - 1
                }),
            };
            match open.and_then(|at| dirq::publish(&dirs[at].1, &q.root, q.rndhex, dir, tmp)) {
                Ok(id) => ids.push(id),
                Err(e) => {
                    // Don't leave the rest behind as temporary files (Drop).
                    self.pending = pending[i..].to_vec();
                    return Err(e);
                }
            }
        }
        let mut synced = q.synced_dirs.lock().unwrap_or_else(PoisonError::into_inner);
        for (dir, d) in &dirs {
            d.sync().map_err(io_err("fsync", &q.root.join(dir)))?;
        }
        // A directory another process created may not be durable in the root.
        if dirs.iter().any(|(d, _)| !synced.contains(d)) {
            q.root_dir.sync().map_err(io_err("fsync", &q.root))?;
            synced.extend(dirs.into_iter().map(|(d, _)| d));
        }
        Ok(ids)
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        for (dir, tmp, _) in &self.pending {
            if let Ok(d) = self.queue.root_dir.open_dir(OsStr::new(dir)) {
                let _ = d.unlink(OsStr::new(tmp));
            }
        }
    }
}

#[cfg(test)]
mod tests;
