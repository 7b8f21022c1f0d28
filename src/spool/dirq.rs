//! Python dirq 1.8 `QueueSimple`, byte for byte on disk (see dirq/QueueSimple.py
//! and dirq/QueueBase.py), plus fsync of each element before it is linked.
//! Every call goes through directory descriptors ([`super::at`]): nothing
//! under the root is reached through a symlink.

use std::ffi::{OsStr, OsString};
use std::io::{self, Write};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::at::{Dir, Kind};
use super::scan::{BadEntry, Defect, Scan};
use super::{ElementId, PurgeReport, SpoolError, io_err};

/// Seconds per intermediate directory (dirq's default `granularity`).
const GRANULARITY: u64 = 60;
const TEMPORARY_SUFFIX: &str = ".tmp";
const LOCKED_SUFFIX: &str = ".lck";
/// Give up on a name clash storm or a directory that keeps vanishing.
const MAX_ATTEMPTS: u32 = 1000;
const EXPECTED_IN_ROOT: &str =
    "dirq intermediate directories are named with 8 lowercase hex digits";
const EXPECTED_IN_DIR: &str = "dirq elements are named with 14 lowercase hex digits, plus .tmp or .lck for temporary files and locks";

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

/// An id's intermediate directory and element name (the id is valid).
pub(super) fn split_id(id: &ElementId) -> (&str, &str) {
    id.as_str().split_once('/').unwrap_or(("", id.as_str()))
}

pub(super) fn lock_name(name: &str) -> String {
    format!("{name}{LOCKED_SUFFIX}")
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

/// The error for an intermediate directory that cannot be opened: a symlink
/// or anything else that is not a directory is refused (ELOOP, ENOTDIR),
/// never followed.
pub(super) fn dir_error(root_path: &Path, dir: &str, e: io::Error) -> SpoolError {
    let e = match e.raw_os_error() {
        Some(libc::ELOOP | libc::ENOTDIR) => io::Error::new(
            e.kind(),
            "not a directory (a symlink or a file in its place is never followed)",
        ),
        _ => e,
    };
    io_err("open the intermediate directory", &root_path.join(dir))(e)
}

/// Opens the intermediate directory `dir` (see [`dir_error`]).
pub(super) fn open_dir(root: &Dir, root_path: &Path, dir: &str) -> Result<Dir, SpoolError> {
    root.open_dir(OsStr::new(dir))
        .map_err(|e| dir_error(root_path, dir, e))
}

/// First half of dirq's add: writes `<dir>/<name>.tmp` (fsynced if `sync`),
/// creating the intermediate directory as needed. Returns the directory name
/// and the temporary file's name; [`publish`] makes it an element.
pub(super) fn write_temp(
    root: &Dir,
    root_path: &Path,
    rndhex: u8,
    body: &[u8],
    sync: bool,
) -> Result<(String, String), SpoolError> {
    let dir = dir_name(SystemTime::now());
    let dir_path = root_path.join(&dir);
    for _ in 0..MAX_ATTEMPTS {
        let d = match root.open_dir(OsStr::new(&dir)) {
            Ok(d) => d,
            // A new minute, or a purge removed the directory: (re)create it.
            Err(e) if e.kind() == io::ErrorKind::NotFound => match root.mkdir(OsStr::new(&dir)) {
                Ok(()) => continue,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_err("create directory", &dir_path)(e)),
            },
            Err(e) => return Err(dir_error(root_path, &dir, e)),
        };
        let tmp = format!("{}{TEMPORARY_SUFFIX}", element_name(rndhex));
        match write_new(&d, &tmp, body, sync) {
            Ok(()) => return Ok((dir, tmp)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err("write", &dir_path.join(&tmp))(e)),
        }
    }
    Err(SpoolError::NoFreeName {
        id: "(new)".into(),
        dir: dir_path,
    })
}

/// Creates `name` in `dir` exclusively, writes `body` and, if `sync`, fsyncs
/// it. On a write error the half-written file is removed.
pub(super) fn write_new(dir: &Dir, name: &str, body: &[u8], sync: bool) -> io::Result<()> {
    let mut f = dir.create_new(OsStr::new(name))?;
    let written = f
        .write_all(body)
        .and_then(|()| if sync { f.sync_all() } else { Ok(()) });
    if written.is_err() {
        let _ = dir.unlink(OsStr::new(name));
    }
    written
}

/// Second half of dirq's add: hard-links the temporary file to a free
/// `<dir>/<name>` (a reader sees the whole element or nothing), then unlinks
/// it. The caller fsyncs the directory.
pub(super) fn publish(
    d: &Dir,
    root_path: &Path,
    rndhex: u8,
    dir: &str,
    tmp: &str,
) -> Result<ElementId, SpoolError> {
    let dir_path = root_path.join(dir);
    for _ in 0..MAX_ATTEMPTS {
        let name = element_name(rndhex);
        match d.link(OsStr::new(tmp), d, OsStr::new(&name)) {
            Ok(()) => {
                d.unlink(OsStr::new(tmp))
                    .map_err(io_err("remove", &dir_path.join(tmp)))?;
                return Ok(ElementId(format!("{dir}/{name}")));
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err("link", &dir_path.join(tmp))(e)),
        }
    }
    Err(SpoolError::NoFreeName {
        id: dir_path.join(tmp).display().to_string(),
        dir: dir_path,
    })
}

/// The kind of an entry: readdir's when it says, else lstat (`None`: gone).
fn kind_of(dir: &Dir, entry: &super::at::Entry) -> io::Result<Option<Kind>> {
    if let Some(k) = entry.kind {
        return Ok(Some(k));
    }
    match dir.lstat(&entry.name) {
        Ok(st) => Ok(Some(st.kind)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The names of the intermediate directories, sorted; entries of the root
/// that cannot be one go to `bad`.
fn intermediate_names(
    root: &Dir,
    root_path: &Path,
    bad: &mut Vec<BadEntry>,
) -> Result<Vec<String>, SpoolError> {
    let mut names = Vec::new();
    for entry in root.list().map_err(io_err("list", root_path))? {
        let mut flag =
            |defect| bad.push(BadEntry::new(root_path, None, entry.name.clone(), defect));
        match entry.name.to_str() {
            None => flag(Defect::NotUtf8),
            Some(name) if !is_dir_name(name) => flag(Defect::ForeignName {
                expected: EXPECTED_IN_ROOT,
            }),
            Some(name) => names.push(name.to_owned()),
        }
    }
    names.sort_unstable();
    Ok(names)
}

/// Opens the intermediate directory `name`; `None` when it is gone (a
/// concurrent purge) or is no directory (then in `bad`).
fn open_intermediate(
    root: &Dir,
    root_path: &Path,
    name: &str,
    bad: &mut Vec<BadEntry>,
) -> Option<Dir> {
    let os = OsStr::new(name);
    let mut flag = |defect| bad.push(BadEntry::new(root_path, None, os.to_owned(), defect));
    match root.open_dir(os) {
        Ok(d) => return Some(d),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) => {
            match root.lstat(os) {
                Ok(st) => flag(Defect::NotADirectory(st.kind)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => flag(Defect::Unlistable(e.to_string())),
            }
        }
        Err(e) => flag(Defect::Unlistable(e.to_string())),
    }
    None
}

/// The intermediate directories, sorted, each open; entries of the root
/// that are not one go to `bad`.
fn intermediate_dirs(
    root: &Dir,
    root_path: &Path,
    bad: &mut Vec<BadEntry>,
) -> Result<Vec<(String, Dir)>, SpoolError> {
    let names = intermediate_names(root, root_path, bad)?;
    Ok(names
        .into_iter()
        .filter_map(|n| open_intermediate(root, root_path, &n, bad).map(|d| (n, d)))
        .collect())
}

/// One intermediate directory's entries, sorted and classified; elements
/// and locks by their id (`dir/name`), made once (a scan of 100,000
/// messages is mostly these strings).
#[derive(Default)]
struct Listing {
    elements: Vec<String>,
    locks: Vec<String>,
    temporaries: usize,
    bad: Vec<BadEntry>,
}

fn list_one(root: &Dir, root_path: &Path, dir: &str) -> Listing {
    let mut listing = Listing::default();
    let Some(d) = open_intermediate(root, root_path, dir, &mut listing.bad) else {
        return listing;
    };
    let d = &d;
    let entries = match d.list() {
        Ok(e) => e,
        Err(e) => {
            listing.bad.push(BadEntry::new(
                root_path,
                None,
                OsString::from(dir),
                Defect::Unlistable(e.to_string()),
            ));
            return listing;
        }
    };
    let id = |name: &str| {
        let mut id = String::with_capacity(dir.len() + 1 + name.len());
        id.push_str(dir);
        id.push('/');
        id.push_str(name);
        id
    };
    listing.elements.reserve(entries.len());
    for entry in entries {
        let defect = match classify(d, &entry) {
            Ok(Ok(Found::Element(name))) => {
                listing.elements.push(id(name));
                continue;
            }
            Ok(Ok(Found::Lock(name))) => {
                listing.locks.push(id(name));
                continue;
            }
            Ok(Ok(Found::Temporary)) => {
                listing.temporaries += 1;
                continue;
            }
            Ok(Ok(Found::Gone)) => continue,
            Ok(Err(defect)) => defect,
            // Its type cannot even be read.
            Err(_) => Defect::NotAFile(Kind::Other),
        };
        listing
            .bad
            .push(BadEntry::new(root_path, Some(dir), entry.name, defect));
    }
    listing.elements.sort_unstable();
    listing.locks.sort_unstable();
    listing
}

/// Intermediate directories each lister thread takes at least: a busy
/// queue has thousands, and reading them is most of a scan's time.
const DIRS_PER_LISTER: usize = 64;
const MAX_LISTERS: usize = 4;

/// [`list_one`] for every directory, in order, on up to [`MAX_LISTERS`]
/// threads (one per core); on one thread if a thread cannot be started.
fn list_all(root: &Dir, root_path: &Path, dirs: &[String]) -> Vec<Listing> {
    let serial = |part: &[String]| -> Vec<Listing> {
        part.iter().map(|n| list_one(root, root_path, n)).collect()
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let listers = cores.min(MAX_LISTERS).min(dirs.len() / DIRS_PER_LISTER);
    if listers < 2 {
        return serial(dirs);
    }
    std::thread::scope(|s| {
        let chunks: Vec<&[String]> = dirs.chunks(dirs.len().div_ceil(listers)).collect();
        let handles: Vec<_> = chunks
            .iter()
            .map(|&part| std::thread::Builder::new().spawn_scoped(s, move || serial(part)))
            .collect();
        let mut out = Vec::with_capacity(dirs.len());
        for (part, handle) in chunks.into_iter().zip(handles) {
            match handle {
                Ok(h) => match h.join() {
                    Ok(listings) => out.extend(listings),
                    Err(panic) => std::panic::resume_unwind(panic),
                },
                Err(_) => out.extend(serial(part)),
            }
        }
        out
    })
}

/// Lists the queue: dirq's iteration order (sorted directories, sorted
/// names), and every entry that is not part of the layout.
pub(super) fn scan(root: &Dir, root_path: &Path) -> Result<Scan, SpoolError> {
    let mut scan = Scan::default();
    let dirs = intermediate_names(root, root_path, &mut scan.bad)?;
    let listings = list_all(root, root_path, &dirs);
    scan.elements
        .reserve(listings.iter().map(|l| l.elements.len()).sum());
    for listing in listings {
        scan.elements
            .extend(listing.elements.into_iter().map(ElementId));
        scan.locked.extend(listing.locks.into_iter().map(ElementId));
        scan.temporaries += listing.temporaries;
        scan.bad.extend(listing.bad);
    }
    scan.bad.sort_by(|a, b| a.path.cmp(&b.path));
    scan.first_added = scan.elements.first().and_then(added_at);
    Ok(scan)
}

/// What one entry of an intermediate directory is.
enum Found<'a> {
    Element(&'a str),
    /// `<element>.lck`, by its element's name.
    Lock(&'a str),
    Temporary,
    /// Removed while we looked.
    Gone,
}

/// What one entry of an intermediate directory is, or its defect.
fn classify<'a>(d: &Dir, entry: &'a super::at::Entry) -> io::Result<Result<Found<'a>, Defect>> {
    let Some(name) = entry.name.to_str() else {
        return Ok(Err(Defect::NotUtf8));
    };
    let lock = name
        .strip_suffix(LOCKED_SUFFIX)
        .filter(|n| is_element_name(n));
    let temporary = name
        .strip_suffix(TEMPORARY_SUFFIX)
        .is_some_and(is_element_name);
    if lock.is_none() && !temporary && !is_element_name(name) {
        return Ok(Err(Defect::ForeignName {
            expected: EXPECTED_IN_DIR,
        }));
    }
    Ok(match kind_of(d, entry)? {
        None => Ok(Found::Gone),
        Some(Kind::File) => Ok(match lock {
            Some(element) => Found::Lock(element),
            None if temporary => Found::Temporary,
            None => Found::Element(name),
        }),
        Some(kind) => Err(Defect::NotAFile(kind)),
    })
}

/// When an element was added, from its name (`%08x` seconds, `%05x` µs).
pub(super) fn added_at(id: &ElementId) -> Option<SystemTime> {
    let name = split_id(id).1;
    let secs = u64::from_str_radix(name.get(..8)?, 16).ok()?;
    let micros = u64::from_str_radix(name.get(8..13)?, 16).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(secs) + Duration::from_micros(micros))
}

/// dirq `lock(name, permissive=True)`: link to `.lck`, then touch the element
/// (the lock's age, which purge reads, is the element's mtime: same inode).
/// `linkat` does not follow: an element that became a symlink is locked as a
/// link, and reading it then fails.
pub(super) fn lock(root: &Dir, root_path: &Path, id: &ElementId) -> Result<bool, SpoolError> {
    let (dir, name) = split_id(id);
    let d = match root.open_dir(OsStr::new(dir)) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(dir_error(root_path, dir, e)),
    };
    let lock = lock_name(name);
    match d.link(OsStr::new(name), &d, OsStr::new(&lock)) {
        Ok(()) => {}
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::AlreadyExists | io::ErrorKind::NotFound
            ) =>
        {
            return Ok(false);
        }
        Err(e) => return Err(io_err("lock (link)", &root_path.join(dir).join(&lock))(e)),
    }
    match d.touch(OsStr::new(name)) {
        Ok(()) => Ok(true),
        // Another process locked and removed it while we linked.
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let _ = d.unlink(OsStr::new(&lock));
            Ok(false)
        }
        Err(e) => Err(io_err("touch", &root_path.join(id.as_str()))(e)),
    }
}

/// True when `mtime` is older than `max` before `now`; `max` zero = never.
pub(super) fn is_stale(mtime: SystemTime, now: SystemTime, max: Duration) -> bool {
    !max.is_zero() && mtime + max < now
}

/// dirq `purge(maxtemp, maxlock)`. Unlike dirq, a directory that is no longer
/// empty when we remove it (an add racing us) is left alone, not an error,
/// and only regular temporary files and locks are removed: anything else is
/// what [`scan`] reports.
pub(super) fn purge(
    root: &Dir,
    root_path: &Path,
    now: SystemTime,
    max_temp: Duration,
    max_lock: Duration,
) -> Result<PurgeReport, SpoolError> {
    let mut report = PurgeReport::default();
    let dirs = intermediate_dirs(root, root_path, &mut Vec::new())?;
    if !max_temp.is_zero() || !max_lock.is_zero() {
        for (dir, d) in &dirs {
            let dir_path = root_path.join(dir);
            let Ok(entries) = d.list() else { continue };
            for entry in entries {
                let Some(name) = entry.name.to_str() else {
                    continue;
                };
                let (max, is_temp) = if name.ends_with(TEMPORARY_SUFFIX) {
                    (max_temp, true)
                } else if name.ends_with(LOCKED_SUFFIX) {
                    (max_lock, false)
                } else {
                    continue;
                };
                let path = dir_path.join(name);
                let st = match d.lstat(&entry.name) {
                    Ok(st) => st,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io_err("stat", &path)(e)),
                };
                if st.kind != Kind::File || !is_stale(st.mtime, now, max) {
                    continue;
                }
                tracing::warn!(path = %path.display(), "removing too old volatile file");
                match d.unlink(&entry.name) {
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
        for (dir, d) in older {
            if !d.list().is_ok_and(|e| e.is_empty()) {
                continue;
            }
            match root.rmdir(OsStr::new(dir)) {
                Ok(()) => report.dirs_removed += 1,
                Err(e)
                    if e.kind() == io::ErrorKind::NotFound
                        || e.kind() == io::ErrorKind::DirectoryNotEmpty => {}
                Err(e) => return Err(io_err("remove directory", &root_path.join(dir))(e)),
            }
        }
    }
    Ok(report)
}
