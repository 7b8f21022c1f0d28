//! What a listing of a queue finds: the elements to send, and every entry
//! that is no part of the layout, with what is wrong with it.
//!
//! Not bad (what Python dirq, cASO and SSM leave while they work, or after a
//! crash; purge removes the stale ones): a regular `<14 hex>.tmp` (an add in
//! progress) or `<14 hex>.lck` (another sender's lock, or a removal half
//! done) in a dirq intermediate directory, and our own regular `.<name>.tmp`
//! in the directory layout. Everything else that is not an element is bad.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::time::SystemTime;

use super::ElementId;
use super::at::Kind;

/// One listing of a queue. Not bad, never reported (what Python dirq,
/// cASO and SSM leave while they work, or after a crash; purge removes the
/// stale ones): a regular `<14 hex>.tmp` or `<14 hex>.lck` in a dirq
/// intermediate directory, our regular `.<name>.tmp` in the directory layout.
#[derive(Debug, Default)]
pub struct Scan {
    /// In send order.
    pub elements: Vec<ElementId>,
    /// In path order.
    pub bad: Vec<BadEntry>,
    /// dirq: the elements that hold a `.lck` (another sender's lock, or a
    /// removal half done), in path order; always empty in the directory
    /// layout, which has no locks.
    pub locked: Vec<ElementId>,
    /// Temporary files (adds in progress, or left by a crash).
    pub temporaries: usize,
    /// When the first element (the next to send) was added: dirq from its
    /// name, the directory layout from its mtime.
    pub first_added: Option<SystemTime>,
}

/// An entry of the queue that is not a message: never read; moved to the
/// reject directory by [`super::Queue::set_aside`] where that is safe.
#[derive(Debug)]
pub struct BadEntry {
    /// Where it is (for messages: print with `{:?}`, names may hold anything).
    pub path: PathBuf,
    pub defect: Defect,
    /// The intermediate directory holding it (a valid dirq directory name),
    /// `None` for an entry of the root.
    pub(super) parent: Option<String>,
    pub(super) name: OsString,
}

/// What is wrong with a [`BadEntry`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Defect {
    /// Where an element, lock or temporary file should be: not a regular file.
    NotAFile(Kind),
    /// Where a dirq intermediate directory should be: not a directory.
    NotADirectory(Kind),
    /// An intermediate directory that cannot be opened or listed (the OS
    /// error). Left in place: what it holds may be good messages.
    Unlistable(String),
    /// A name that is not a name of the layout (`expected` says which are).
    ForeignName { expected: &'static str },
    /// A name that is not UTF-8 (no element name ever is).
    NotUtf8,
}

impl Defect {
    /// Whether moving it aside (renaming the entry itself) is right.
    pub fn movable(&self) -> bool {
        !matches!(self, Defect::Unlistable(_))
    }
}

impl fmt::Display for Defect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Defect::NotAFile(kind) => write!(
                f,
                "{kind} where a message (or its lock or temporary file) should be, not a regular file: never followed or read"
            ),
            Defect::NotADirectory(kind) => write!(
                f,
                "{kind} where a dirq intermediate directory should be: never followed or read"
            ),
            Defect::Unlistable(e) => write!(
                f,
                "intermediate directory that cannot be listed ({e}): its messages are not sent"
            ),
            Defect::ForeignName { expected } => {
                write!(f, "not a name of this queue ({expected}): never read")
            }
            Defect::NotUtf8 => {
                f.write_str("file name is not UTF-8 (no message name is): never read")
            }
        }
    }
}

impl BadEntry {
    pub(super) fn new(
        root: &std::path::Path,
        parent: Option<&str>,
        name: OsString,
        defect: Defect,
    ) -> BadEntry {
        let mut path = root.to_path_buf();
        if let Some(p) = parent {
            path.push(p);
        }
        path.push(&name);
        BadEntry {
            path,
            defect,
            parent: parent.map(str::to_owned),
            name,
        }
    }
}
