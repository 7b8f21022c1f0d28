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
//! A consumer iterates [`Queue::elements`], then for each: [`Queue::lock`] (skip
//! on `false`), [`Queue::get`], then [`Queue::remove`] once delivered,
//! [`Queue::unlock`] to leave it for the next run, or [`Queue::reject`] to move
//! it aside for good. After a run, [`Queue::purge`] cleans what crashed
//! processes left behind.
//!
//! All calls are blocking file-system calls: from async code run them in
//! `tokio::task::spawn_blocking`.

mod directory;
mod dirq;

use std::collections::HashSet;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

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

/// Creates `path` exclusively (never replacing anything), writes `body` and,
/// if `sync`, fsyncs it. On a write error the half-written file is removed.
fn write_new(path: &Path, body: &[u8], sync: bool) -> io::Result<()> {
    let mut f = OpenOptions::new().write(true).create_new(true).open(path)?;
    let written = f
        .write_all(body)
        .and_then(|()| if sync { f.sync_all() } else { Ok(()) });
    if written.is_err() {
        let _ = fs::remove_file(path);
    }
    written
}

/// A message queue on disk in one [`Layout`].
#[derive(Debug)]
pub struct Queue {
    root: PathBuf,
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
    /// naming it; nothing is created.
    pub fn open(root: &Path, layout: Layout) -> Result<Queue, SpoolError> {
        match fs::metadata(root) {
            Ok(m) if m.is_dir() => Ok(Queue::new(root, layout)),
            Ok(_) => Err(SpoolError::NotADirectory(root.to_path_buf())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(SpoolError::MissingRoot(root.to_path_buf()))
            }
            Err(e) => Err(io_err("stat", root)(e)),
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

    fn new(root: &Path, layout: Layout) -> Queue {
        Queue {
            root: root.to_path_buf(),
            layout,
            rndhex: uuid::Uuid::new_v4().as_bytes()[0] & 0x0f,
            synced_dirs: Mutex::new(HashSet::new()),
        }
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

    /// Every element, in the order to send them: dirq by directory then name
    /// (Python dirq's iteration order), directory layout by mtime then name.
    /// Temporary files and lock links are never elements.
    pub fn elements(&self) -> Result<Vec<ElementId>, SpoolError> {
        match self.layout {
            Layout::Dirq => dirq::elements(&self.root),
            Layout::Directory => directory::elements(&self.root),
        }
    }

    /// The number of elements, locked or not (temporary files excluded).
    pub fn count(&self) -> Result<usize, SpoolError> {
        match self.layout {
            Layout::Dirq => dirq::count(&self.root),
            Layout::Directory => Ok(directory::elements(&self.root)?.len()),
        }
    }

    /// Takes the element for this process. `false`: another process holds it,
    /// or it was removed meanwhile; skip it. Directory layout: no lock at all,
    /// `true` whenever the file still exists.
    pub fn lock(&self, id: &ElementId) -> Result<bool, SpoolError> {
        let path = self.element_path(id)?;
        match self.layout {
            Layout::Dirq => dirq::lock(&path),
            Layout::Directory => directory::lock(&path),
        }
    }

    /// The content of an element this process locked.
    pub fn get(&self, id: &ElementId) -> Result<Vec<u8>, SpoolError> {
        let path = self.locked_path(id)?;
        fs::read(&path).map_err(io_err("read", &path))
    }

    /// Releases a lock, leaving the element in the queue.
    pub fn unlock(&self, id: &ElementId) -> Result<(), SpoolError> {
        match self.layout {
            Layout::Dirq => {
                let lock = self.locked_path(id)?;
                fs::remove_file(&lock).map_err(io_err("unlock (remove)", &lock))
            }
            Layout::Directory => self.element_path(id).map(drop),
        }
    }

    /// Removes a locked element for good (after delivery), durably.
    pub fn remove(&self, id: &ElementId) -> Result<(), SpoolError> {
        let path = self.element_path(id)?;
        fs::remove_file(&path).map_err(io_err("remove", &path))?;
        if self.layout == Layout::Dirq {
            let lock = self.locked_path(id)?;
            fs::remove_file(&lock).map_err(io_err("remove", &lock))?;
        }
        // A removal lost in a crash means sending the message twice.
        let dir = parent_of(&path);
        sync_dir(dir).map_err(io_err("fsync", dir))
    }

    /// [`Queue::remove`] for many elements at once, with one directory fsync
    /// per directory instead of one per element (a sender removes the
    /// messages whose confirmations arrived together). One result per id, in
    /// order: `Ok` only once the removal is durable.
    pub fn remove_all(&self, ids: &[ElementId]) -> Vec<Result<(), SpoolError>> {
        let mut results = Vec::with_capacity(ids.len());
        let mut dirs: Vec<PathBuf> = Vec::new();
        for id in ids {
            let removed = self.element_path(id).and_then(|path| {
                fs::remove_file(&path).map_err(io_err("remove", &path))?;
                if self.layout == Layout::Dirq {
                    let lock = self.locked_path(id)?;
                    fs::remove_file(&lock).map_err(io_err("remove", &lock))?;
                }
                Ok(parent_of(&path).to_path_buf())
            });
            results.push(removed.map(|dir| {
                if !dirs.contains(&dir) {
                    dirs.push(dir);
                }
            }));
        }
        for dir in &dirs {
            if let Err(e) = sync_dir(dir) {
                let kind = e.kind();
                for (id, r) in ids.iter().zip(results.iter_mut()) {
                    let in_dir = self
                        .element_path(id)
                        .is_ok_and(|p| parent_of(&p) == dir.as_path());
                    if r.is_ok() && in_dir {
                        *r = Err(io_err("fsync", dir)(io::Error::from(kind)));
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
    /// duration disables that cleanup, as in dirq.
    pub fn purge(&self, max_temp: Duration, max_lock: Duration) -> Result<PurgeReport, SpoolError> {
        let now = SystemTime::now();
        match self.layout {
            Layout::Dirq => dirq::purge(&self.root, now, max_temp, max_lock),
            Layout::Directory => directory::purge(&self.root, now, max_temp),
        }
    }

    /// Moves a locked element out of the queue for good, into the `reject`
    /// directory beside the queue root (`/var/spool/apel/outgoing` ->
    /// `/var/spool/apel/reject/`), with the reason in `<name>.reason` beside it.
    /// Never overwrites a file there (a `.1`, `.2`... suffix is added instead).
    /// Returns the path of the rejected message.
    pub fn reject(&self, id: &ElementId, reason: &str) -> Result<PathBuf, SpoolError> {
        let content = self.locked_path(id)?;
        let reject_dir = self.reject_dir();
        if !reject_dir.is_dir() {
            fs::create_dir_all(&reject_dir).map_err(io_err("create directory", &reject_dir))?;
            let parent = parent_of(&reject_dir);
            sync_dir(parent).map_err(io_err("fsync", parent))?;
        }
        let mut reason = reason.to_string();
        if !reason.ends_with('\n') {
            reason.push('\n');
        }
        let name = id.file_name();
        let mut placed = None;
        for n in 0..1000u32 {
            let base = if n == 0 {
                name.to_string()
            } else {
                format!("{name}.{n}")
            };
            let target = reject_dir.join(&base);
            if !place_copy(&content, &target)? {
                continue;
            }
            let reason_path = reject_dir.join(format!("{base}.reason"));
            if place_new(&reason_path, reason.as_bytes())? {
                placed = Some(target);
                break;
            }
            // A stray `.reason` without its message: leave it, try the next name.
            fs::remove_file(&target).map_err(io_err("remove", &target))?;
        }
        let target = placed.ok_or_else(|| SpoolError::NoFreeName {
            id: id.to_string(),
            dir: reject_dir.clone(),
        })?;
        sync_dir(&reject_dir).map_err(io_err("fsync", &reject_dir))?;
        self.remove(id)?;
        Ok(target)
    }

    /// `<parent of the root>/reject`.
    pub fn reject_dir(&self) -> PathBuf {
        parent_of(&self.root).join("reject")
    }

    /// The element's file, after checking the id belongs to this layout (ids
    /// are plain strings: never let one escape the root).
    fn element_path(&self, id: &ElementId) -> Result<PathBuf, SpoolError> {
        let valid = match self.layout {
            Layout::Dirq => dirq::is_element_id(id.as_str()),
            Layout::Directory => directory::is_element_name(id.as_str()),
        };
        if valid {
            Ok(self.root.join(id.as_str()))
        } else {
            Err(SpoolError::InvalidElement {
                id: id.to_string(),
                layout: self.layout,
                root: self.root.clone(),
            })
        }
    }

    /// Where a locked element is read from: dirq reads the `.lck` link.
    fn locked_path(&self, id: &ElementId) -> Result<PathBuf, SpoolError> {
        let path = self.element_path(id)?;
        Ok(match self.layout {
            Layout::Dirq => dirq::lock_path(&path),
            Layout::Directory => path,
        })
    }
}

fn parent_of(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new("."))
}

/// Puts a copy of `src` at `target` without replacing anything: a hard link,
/// or a synced copy across file systems. `false` when `target` exists.
fn place_copy(src: &Path, target: &Path) -> Result<bool, SpoolError> {
    match fs::hard_link(src, target) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            let body = fs::read(src).map_err(io_err("read", src))?;
            place_new(target, &body)
        }
        // Most likely the source: an element that is not locked (no `.lck`).
        Err(e) => Err(io_err("link into the reject directory", src)(e)),
    }
}

/// Writes a new file at `target` atomically (temp, fsync, link) without
/// replacing anything. `false` when `target` exists.
fn place_new(target: &Path, body: &[u8]) -> Result<bool, SpoolError> {
    let dir = parent_of(target);
    let file = target.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{file}.{}.tmp", uuid::Uuid::new_v4().simple()));
    write_new(&tmp, body, true).map_err(io_err("write", &tmp))?;
    let linked = fs::hard_link(&tmp, target);
    fs::remove_file(&tmp).map_err(io_err("remove", &tmp))?;
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(io_err("link", target)(e)),
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
    /// dirq: (intermediate directory, temporary file, already fsynced).
    pending: Vec<(String, PathBuf, bool)>,
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
                let (dir, tmp) = dirq::write_temp(&q.root, q.rndhex, body, sync)?;
                self.pending.push((dir, tmp, sync));
            }
            Layout::Directory => self.added.push(directory::add(&q.root, body)?),
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
            sync_dir(&q.root).map_err(io_err("fsync", &q.root))?;
            return Ok(std::mem::take(&mut self.added));
        }
        let pending = std::mem::take(&mut self.pending);
        if pending.iter().any(|(_, _, synced)| !synced) {
            sync_fs(&q.root).map_err(io_err("sync the file system of", &q.root))?;
        }
        let mut ids = Vec::with_capacity(pending.len());
        let mut dirs: Vec<&str> = Vec::new();
        for (i, (dir, tmp, _)) in pending.iter().enumerate() {
            match dirq::publish(&q.root, q.rndhex, dir, tmp) {
                Ok(id) => ids.push(id),
                Err(e) => {
                    // Don't leave the rest behind as temporary files.
                    for (_, rest, _) in &pending[i..] {
                        let _ = fs::remove_file(rest);
                    }
                    return Err(e);
                }
            }
            if !dirs.contains(&dir.as_str()) {
                dirs.push(dir);
            }
        }
        let mut synced = q.synced_dirs.lock().unwrap_or_else(PoisonError::into_inner);
        for dir in &dirs {
            let path = q.root.join(dir);
            sync_dir(&path).map_err(io_err("fsync", &path))?;
        }
        // A directory another process created may not be durable in the root.
        if dirs.iter().any(|d| !synced.contains(*d)) {
            sync_dir(&q.root).map_err(io_err("fsync", &q.root))?;
            synced.extend(dirs.iter().map(|d| d.to_string()));
        }
        Ok(ids)
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        for (_, tmp, _) in &self.pending {
            let _ = fs::remove_file(tmp);
        }
    }
}

/// `syncfs(2)`: writes back every dirty page and inode of the file system
/// holding `path`, one call for a whole batch instead of an fsync per file.
fn sync_fs(path: &Path) -> io::Result<()> {
    let f = File::open(path)?;
    // SAFETY: a valid open file descriptor.
    if unsafe { libc::syncfs(f.as_raw_fd()) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests;
