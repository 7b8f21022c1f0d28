//! What is in a queue and its reject directory, from the file system alone
//! and without changing anything: what `status` shows. Safe on a queue
//! being written or sent concurrently (an entry that goes while we look is
//! skipped), and like every read of the spool it never follows a symlink.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::SystemTime;

use super::at::Dir;
use super::scan::BadEntry;
use super::{ElementId, Layout, Queue, SpoolError, dirq, io_err, parent_of, reject};

/// Reasons are read up to this size (ours are one line).
const MAX_REASON_BYTES: usize = 4096;

/// What [`Queue::inventory`] found.
#[derive(Debug)]
pub struct Inventory {
    /// Messages queued (locked ones included).
    pub messages: usize,
    /// When the next message to send was added (the oldest, as the sender
    /// takes them oldest first).
    pub oldest_added: Option<SystemTime>,
    /// dirq: locked messages and when they were locked (`None`: the lock
    /// went while we looked).
    pub locks: Vec<(ElementId, Option<SystemTime>)>,
    /// Adds in progress, or temporary files a crash left (purge removes them).
    pub temporaries: usize,
    /// Entries that are not messages (the next send moves them aside).
    pub not_messages: Vec<BadEntry>,
    pub rejected: Rejected,
}

/// The reject directory (`<parent of the queue>/reject`).
#[derive(Debug, Default)]
pub struct Rejected {
    pub dir: PathBuf,
    /// Entries there, `.reason` files not counted.
    pub count: usize,
    /// The newest first, at most the `limit` given to [`Queue::inventory`].
    pub newest: Vec<RejectedEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedEntry {
    /// Its name in the reject directory (lossy if not UTF-8).
    pub name: String,
    /// When it was rejected (its mtime).
    pub when: Option<SystemTime>,
    /// The first line of its `.reason` file, if there is one.
    pub reason: Option<String>,
}

impl Queue {
    /// Lists the queue ([`Queue::scan`]), the age of each lock and the
    /// reject directory (its `limit` newest entries with their reasons).
    /// Reads no message and creates nothing: a missing reject directory is
    /// an empty one.
    pub fn inventory(&self, limit: usize) -> Result<Inventory, SpoolError> {
        let scan = self.scan()?;
        let locks = match self.layout {
            Layout::Dirq => scan
                .locked
                .into_iter()
                .map(|id| {
                    let when = self.lock_time(&id);
                    (id, when)
                })
                .collect(),
            Layout::Directory => Vec::new(),
        };
        Ok(Inventory {
            messages: scan.elements.len(),
            oldest_added: scan.first_added,
            locks,
            temporaries: scan.temporaries,
            not_messages: scan.bad,
            rejected: self.rejected(limit)?,
        })
    }

    /// The mtime of a dirq lock: the element was touched when locked.
    fn lock_time(&self, id: &ElementId) -> Option<SystemTime> {
        let (dir, name) = dirq::split_id(id);
        let d = self.root_dir.open_dir(OsStr::new(dir)).ok()?;
        let st = d.lstat(OsStr::new(&dirq::lock_name(name))).ok()?;
        Some(st.mtime)
    }

    fn rejected(&self, limit: usize) -> Result<Rejected, SpoolError> {
        let path = self.reject_dir();
        let mut rejected = Rejected {
            dir: path.clone(),
            ..Rejected::default()
        };
        let parent = parent_of(&self.root);
        let d = match Dir::open(parent).and_then(|p| p.open_dir(OsStr::new("reject"))) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(rejected),
            Err(e) => return Err(io_err("open", &path)(e)),
        };
        let mut entries: Vec<(Option<SystemTime>, OsString)> = Vec::new();
        for entry in d.list().map_err(io_err("list", &path))? {
            if entry.name.as_bytes().ends_with(b".reason") {
                continue;
            }
            match d.lstat(&entry.name) {
                Ok(st) => entries.push((Some(st.mtime), entry.name)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(_) => entries.push((None, entry.name)),
            }
        }
        rejected.count = entries.len();
        // Newest first; the name breaks ties so the order is total.
        entries.sort_unstable_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        entries.truncate(limit);
        rejected.newest = entries
            .into_iter()
            .map(|(when, name)| RejectedEntry {
                reason: first_line(&d, &reject::reason_name(&name)),
                name: name.to_string_lossy().into_owned(),
                when,
            })
            .collect();
        Ok(rejected)
    }
}

/// The first non-empty line of a small regular file, never followed.
fn first_line(d: &Dir, name: &OsStr) -> Option<String> {
    let bytes = d.read_capped(name, MAX_REASON_BYTES).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_owned)
}
