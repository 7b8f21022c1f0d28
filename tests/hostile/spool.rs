//! A hostile spool, driven through the real `ssmsend` binary against the AMS
//! double: symlinks anywhere in the queue (issue 11, class 1), elements that
//! cannot be read in bounded time or memory (class 2: FIFOs, devices, huge
//! files), entries that are no part of the layout (class 6), and a reject
//! directory that cannot be written (class 10).
//!
//! Every case plants a marker in files outside the spool and asserts: the
//! exit code; the marker in no published byte and in no log line; the files
//! outside untouched; the good messages published (or, where said, still
//! queued); each bad entry reported once with its path; the run ended
//! within a bound, under `ulimit -v`.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cloud_accounting::spool::{Layout, Queue};

use crate::support::ams::AmsDouble;
use crate::support::pki::{HOST_DN, Identity, Pki};
use crate::support::send;
use crate::support::send::{SSMSEND, SenderCfg};
use crate::support::spool;

/// Each run must end within this, hostile spool or not.
const RUN_BOUND: Duration = Duration::from_secs(60);
/// `ulimit -v` for every run, in KiB: far below what reading a /dev/zero or
/// 10 GiB element whole would take.
const ULIMIT_V_KB: u64 = 1_000_000;

/// What one bounded run did.
struct Run {
    code: i32,
    log: String,
    elapsed: Duration,
}

/// A spool (`<dir>/spool/outgoing`, reject directory `<dir>/spool/reject`)
/// with good messages, files outside it holding the marker, and an AMS
/// double to publish to.
struct World {
    pki: Pki,
    host: Identity,
    double: AmsDouble,
    dir: tempfile::TempDir,
    layout: Layout,
    queue: PathBuf,
    outside: PathBuf,
    marker: String,
    /// Token in each good message's body, by element id.
    good: BTreeMap<String, String>,
}

impl World {
    fn new(layout: Layout) -> World {
        let pki = Pki::new();
        let host = pki.host();
        let server = pki.server();
        let double = AmsDouble::start_with(
            tempfile::tempdir().unwrap(),
            pki.ca_file(),
            &server.cert_path,
            &server.key_path,
            HOST_DN,
            &[],
        );
        let dir = tempfile::tempdir().unwrap();
        let queue = dir.path().join("spool/outgoing");
        let outside = dir.path().join("outside");
        let marker = format!("MARKER-{}", uuid::Uuid::new_v4().simple());
        // Outside files are valid messages: only never reading them keeps
        // the marker off the wire.
        let secret = format!("APEL-cloud-message: v0.4\nVMUUID: {marker}\nSiteName: HOSTILE\n");
        fs::create_dir_all(outside.join("dirq")).unwrap();
        fs::create_dir_all(outside.join("rejectdir")).unwrap();
        fs::write(outside.join("secret.txt"), &secret).unwrap();
        for name in ["60000000000001", "60000000000002"] {
            fs::write(outside.join("dirq").join(name), &secret).unwrap();
        }
        fs::write(outside.join("rejectdir/keep.txt"), &secret).unwrap();
        let q = Queue::create(&queue, layout).unwrap();
        let mut good = BTreeMap::new();
        for i in 0..3 {
            let token = format!("good-{i}-{}", uuid::Uuid::new_v4().simple());
            let id = q.add(
                format!("APEL-cloud-message: v0.4\nVMUUID: {token}\nSiteName: HOSTILE\n")
                    .as_bytes(),
            );
            good.insert(id.unwrap().to_string(), token);
        }
        World {
            pki,
            host,
            double,
            dir,
            layout,
            queue,
            outside,
            marker,
            good,
        }
    }

    fn secret(&self) -> PathBuf {
        self.outside.join("secret.txt")
    }

    fn reject_dir(&self) -> PathBuf {
        self.dir.path().join("spool/reject")
    }

    /// The intermediate directory of the good messages (dirq).
    fn good_dir(&self) -> PathBuf {
        let id = self.good.keys().next().unwrap();
        self.queue.join(id.split('/').next().unwrap())
    }

    fn cfg(&self) -> PathBuf {
        SenderCfg::ams(
            self.double.ams_port,
            self.double.authn_port,
            "accounting",
            "eu-egi-cloud-accounting",
        )
        .credentials(&self.host.cert_path, &self.host.key_path, self.pki.capath())
        .queue(&self.queue, self.layout)
        // About the queue's entries, not their content: the Python writer
        // queues plain text, which the loader check would reject.
        .set("sender", "loader_checks", false)
        .write(&self.dir.path().join("sender.cfg"))
    }

    /// Runs ssmsend under `ulimit -v` and [`RUN_BOUND`] (killed and failed
    /// past it).
    fn run(&self) -> Run {
        run_bounded(&self.cfg(), &[])
    }

    /// As user nobody when root (root may open anything): the spool and the
    /// PKI are given to nobody first, then `after_chown` runs.
    fn run_as_nobody(&self, after_chown: impl FnOnce()) -> Run {
        let cfg = self.cfg();
        if !crate::support::is_root() {
            after_chown();
            return run_bounded(&cfg, &[]);
        }
        for p in [self.dir.path(), self.pki.dir()] {
            let st = Command::new("chown")
                .args(["-R", "65534:65534"])
                .arg(p)
                .status()
                .unwrap();
            assert!(st.success());
        }
        after_chown();
        run_bounded(
            &cfg,
            &[
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
            ],
        )
    }

    /// Every message the double stored, as received.
    fn published(&self) -> Vec<Vec<u8>> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut out = Vec::new();
            for m in self.double.messages().await {
                out.push(self.double.data(m["seq"].as_u64().unwrap()).await);
            }
            out
        })
    }

    fn remaining(&self) -> Vec<String> {
        send::remaining(&self.queue, self.layout)
    }

    /// The assertions every case makes. `queued`: good element ids that must
    /// still be in the queue instead of published.
    fn check(&self, run: &Run, outside_before: &Snapshot, bad: &[PathBuf], queued: &[&str]) {
        let log = &run.log;
        if std::env::var_os("HOSTILE_PEEK").is_some() {
            eprintln!("{log}");
        }
        assert_eq!(run.code, 1, "{log}");
        assert!(run.elapsed < RUN_BOUND, "{:?}", run.elapsed);
        let published = self.published();
        for data in &published {
            assert!(
                !contains(data, self.marker.as_bytes()),
                "the marker was published:\n{}",
                String::from_utf8_lossy(data)
            );
        }
        assert!(!log.contains(&self.marker), "the marker was logged:\n{log}");
        assert_eq!(&snapshot(&self.outside), outside_before, "outside changed");
        let remaining = self.remaining();
        for (id, token) in &self.good {
            let sent = published.iter().any(|d| contains(d, token.as_bytes()));
            if queued.contains(&id.as_str()) {
                assert!(!sent && remaining.contains(id), "{id} not kept\n{log}");
            } else {
                assert!(sent, "good message {id} not published\n{log}");
                assert!(!remaining.contains(id), "{id} sent but still queued");
            }
        }
        assert_eq!(published.len(), self.good.len() - queued.len(), "{log}");
        for path in bad {
            let line = format!("not a message: {path:?}");
            assert_eq!(log.matches(&line).count(), 1, "{line}\n{log}");
        }
        let summary = match bad.len() {
            1 => "1 entry of the queue is not a message".to_string(),
            n => format!("{n} entries of the queue are not messages"),
        };
        assert!(log.contains(&summary), "{log}");
    }

    /// `path` was moved (as itself, `kind` by lstat) into the reject
    /// directory, with a reason naming where it was.
    fn assert_moved(&self, path: &Path, kind: fn(&fs::Metadata) -> bool) {
        assert!(fs::symlink_metadata(path).is_err(), "{path:?} still there");
        let name = path.file_name().unwrap();
        let moved = self.reject_dir().join(name);
        let meta = fs::symlink_metadata(&moved).unwrap_or_else(|e| panic!("{moved:?}: {e}"));
        assert!(kind(&meta), "{moved:?}: {meta:?}");
        let mut reason = self.reject_dir().join(name).into_os_string();
        reason.push(".reason");
        let reason = fs::read(&reason).unwrap();
        assert!(
            contains(&reason, format!("{path:?}").as_bytes()),
            "{}",
            String::from_utf8_lossy(&reason)
        );
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Every entry below a directory, never followed: content of files, target
/// of links, mode and mtime.
type Snapshot = BTreeMap<PathBuf, (u32, i64, Vec<u8>)>;

fn snapshot(root: &Path) -> Snapshot {
    let mut out = BTreeMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(p) = todo.pop() {
        let m = fs::symlink_metadata(&p).unwrap();
        let content = if m.is_dir() {
            for e in fs::read_dir(&p).unwrap() {
                todo.push(e.unwrap().path());
            }
            Vec::new()
        } else if m.file_type().is_symlink() {
            fs::read_link(&p).unwrap().into_os_string().into_vec()
        } else if m.is_file() {
            fs::read(&p).unwrap()
        } else {
            Vec::new()
        };
        out.insert(p, (m.mode(), m.mtime(), content));
    }
    out
}

/// `prefix... ssmsend -c cfg` under `ulimit -v`, killed past [`RUN_BOUND`].
fn run_bounded(cfg: &Path, prefix: &[&str]) -> Run {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("ulimit -v {ULIMIT_V_KB}; exec \"$0\" \"$@\""));
    match prefix.split_first() {
        Some((first, rest)) => cmd.arg(first).args(rest).arg(SSMSEND),
        None => cmd.arg(SSMSEND),
    };
    cmd.arg("-c").arg(cfg);
    for (k, _) in std::env::vars() {
        if k.starts_with("SSM_") {
            cmd.env_remove(k);
        }
    }
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stderr.read_to_end(&mut s);
        String::from_utf8_lossy(&s).into_owned()
    });
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if started.elapsed() > RUN_BOUND {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ssmsend still running after {RUN_BOUND:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        code: status.code().unwrap_or(-1),
        log: reader.join().unwrap(),
        elapsed: started.elapsed(),
    }
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(
        unsafe { libc::mkfifo(c.as_ptr(), 0o666) },
        0,
        "mkfifo {path:?}"
    );
}

/// A character device like /dev/zero (1,5) when root may make one (mknod),
/// else a symlink to /dev/zero; which one it made.
fn dev_zero_at(path: &Path) -> &'static str {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    let rc = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 5)) };
    if rc == 0 {
        "device"
    } else {
        eprintln!("mknod not permitted here: a symlink to /dev/zero instead");
        symlink("/dev/zero", path).unwrap();
        "symlink"
    }
}

fn socket_at(path: &Path) -> std::os::unix::net::UnixListener {
    std::os::unix::net::UnixListener::bind(path).unwrap()
}

fn is_symlink(m: &fs::Metadata) -> bool {
    m.file_type().is_symlink()
}

fn is_dir(m: &fs::Metadata) -> bool {
    m.is_dir()
}

fn is_file(m: &fs::Metadata) -> bool {
    m.is_file()
}

fn is_fifo(m: &fs::Metadata) -> bool {
    std::os::unix::fs::FileTypeExt::is_fifo(&m.file_type())
}

// --- class 1: the spool never follows a symlink ---------------------------

/// An element that is a symlink to a file outside: moved to reject/ as a
/// link, never read; the outside file stays.
#[test]
fn element_symlink_to_an_outside_file_is_moved_aside_as_a_link() {
    let w = World::new(Layout::Dirq);
    let link = w.good_dir().join("60000000000003");
    symlink(w.secret(), &link).unwrap();
    let before = snapshot(&w.outside);
    let run = w.run();
    w.check(&run, &before, std::slice::from_ref(&link), &[]);
    w.assert_moved(&link, is_symlink);
}

/// An intermediate directory that is a symlink to an outside directory of
/// element-named files: none is published or deleted.
#[test]
fn intermediate_directory_symlink_is_never_entered() {
    let w = World::new(Layout::Dirq);
    let link = w.queue.join("60000000");
    symlink(w.outside.join("dirq"), &link).unwrap();
    let before = snapshot(&w.outside);
    let run = w.run();
    w.check(&run, &before, std::slice::from_ref(&link), &[]);
    w.assert_moved(&link, is_symlink);
}

/// A `.lck` that is a symlink (it would make its element "locked elsewhere"
/// forever): moved aside, and the element is sent in the same run.
#[test]
fn lock_symlink_is_moved_aside_and_its_element_sent() {
    let w = World::new(Layout::Dirq);
    let id = w.good.keys().next().unwrap().clone();
    let lock = w.queue.join(format!("{id}.lck"));
    symlink(w.secret(), &lock).unwrap();
    let before = snapshot(&w.outside);
    let run = w.run();
    w.check(&run, &before, std::slice::from_ref(&lock), &[]);
    w.assert_moved(&lock, is_symlink);
}

/// A `reject` directory that is a symlink to an outside directory is never
/// written through: bad entries stay where they are, an unsendable message
/// stays queued, and the error names the reject directory.
#[test]
fn reject_directory_symlink_is_never_written_through() {
    let w = World::new(Layout::Dirq);
    symlink(w.outside.join("rejectdir"), w.reject_dir()).unwrap();
    let link = w.good_dir().join("60000000000003");
    symlink(w.secret(), &link).unwrap();
    let empty = Queue::open(&w.queue, Layout::Dirq)
        .unwrap()
        .add(b"")
        .unwrap()
        .to_string();
    let before = snapshot(&w.outside);
    let run = w.run();
    assert!(w.remaining().contains(&empty), "{}", run.log);
    let mut w = w;
    let token = "(empty)".to_string();
    w.good.insert(empty.clone(), token);
    w.check(&run, &before, std::slice::from_ref(&link), &[&empty]);
    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let named = format!("the reject directory {}", w.reject_dir().display());
    assert!(run.log.contains(&named), "{}", run.log);
    assert!(run.log.contains("never followed"), "{}", run.log);
}

/// A temporary file that is a symlink (purge would have unlinked only the
/// link, but it is no dirq temporary file): moved aside, target untouched.
#[test]
fn temporary_file_symlink_is_moved_aside() {
    let w = World::new(Layout::Dirq);
    let link = w.good_dir().join("60000000000003.tmp");
    symlink(w.secret(), &link).unwrap();
    let before = snapshot(&w.outside);
    let run = w.run();
    w.check(&run, &before, std::slice::from_ref(&link), &[]);
    w.assert_moved(&link, is_symlink);
}

/// Directory layout: a symlink to an outside file and one to an outside
/// directory, both with message names.
#[test]
fn directory_layout_symlinks_are_moved_aside_as_links() {
    let w = World::new(Layout::Directory);
    let file_link = w.queue.join("evil-file");
    let dir_link = w.queue.join("evil-dir");
    symlink(w.secret(), &file_link).unwrap();
    symlink(w.outside.join("dirq"), &dir_link).unwrap();
    let before = snapshot(&w.outside);
    let run = w.run();
    w.check(&run, &before, &[dir_link.clone(), file_link.clone()], &[]);
    w.assert_moved(&file_link, is_symlink);
    w.assert_moved(&dir_link, is_symlink);
}

// --- class 2: no element read blocks or is read whole ---------------------

/// A FIFO element: never opened for a blocking read; the run ends at once.
#[test]
fn fifo_element_never_blocks_the_run() {
    let w = World::new(Layout::Dirq);
    let fifo = w.good_dir().join("60000000000003");
    mkfifo(&fifo);
    let before = snapshot(&w.outside);
    let run = w.run();
    assert!(run.elapsed < Duration::from_secs(20), "{:?}", run.elapsed);
    w.check(&run, &before, std::slice::from_ref(&fifo), &[]);
    w.assert_moved(&fifo, is_fifo);
}

/// A FIFO where a lock should be, and one in the directory layout.
#[test]
fn fifo_lock_and_directory_layout_fifo_never_block() {
    let w = World::new(Layout::Dirq);
    let id = w.good.keys().next().unwrap().clone();
    let lock = w.queue.join(format!("{id}.lck"));
    mkfifo(&lock);
    let before = snapshot(&w.outside);
    let run = w.run();
    assert!(run.elapsed < Duration::from_secs(20), "{:?}", run.elapsed);
    w.check(&run, &before, std::slice::from_ref(&lock), &[]);
    w.assert_moved(&lock, is_fifo);

    let w = World::new(Layout::Directory);
    let fifo = w.queue.join("a-fifo");
    mkfifo(&fifo);
    let before = snapshot(&w.outside);
    let run = w.run();
    assert!(run.elapsed < Duration::from_secs(20), "{:?}", run.elapsed);
    w.check(&run, &before, std::slice::from_ref(&fifo), &[]);
    w.assert_moved(&fifo, is_fifo);
}

/// A /dev/zero-like element (a character device when mknod is allowed,
/// else a symlink to /dev/zero), under `ulimit -v`: never read.
#[test]
fn dev_zero_element_is_never_read() {
    for layout in [Layout::Dirq, Layout::Directory] {
        let w = World::new(layout);
        let zero = match layout {
            Layout::Dirq => w.good_dir().join("60000000000003"),
            Layout::Directory => w.queue.join("zero"),
        };
        let made = dev_zero_at(&zero);
        let before = snapshot(&w.outside);
        let run = w.run();
        w.check(&run, &before, std::slice::from_ref(&zero), &[]);
        if made == "symlink" {
            w.assert_moved(&zero, is_symlink);
        } else {
            w.assert_moved(&zero, |m| {
                std::os::unix::fs::FileTypeExt::is_char_device(&m.file_type())
            });
        }
    }
}

/// A 10 GiB (sparse) element under `ulimit -v 1 GB`: read no further than
/// the limit + 1 byte, rejected as too large, the others sent.
#[test]
fn huge_element_is_read_only_to_the_limit_and_rejected() {
    let w = World::new(Layout::Dirq);
    let huge = w.good_dir().join("60000000000003");
    let f = fs::File::create(&huge).unwrap();
    f.set_len(10 << 30).unwrap();
    drop(f);
    let before = snapshot(&w.outside);
    let run = w.run();
    assert_eq!(run.code, 1, "{}", run.log);
    assert!(run.elapsed < Duration::from_secs(30), "{:?}", run.elapsed);
    assert!(
        run.log
            .contains("message larger than the limit of 1000000 bytes"),
        "{}",
        run.log
    );
    assert!(run.log.contains("1 rejected"), "{}", run.log);
    let published = w.published();
    assert_eq!(published.len(), w.good.len());
    assert_eq!(snapshot(&w.outside), before);
    let moved = w.reject_dir().join("60000000000003");
    assert_eq!(fs::metadata(&moved).unwrap().len(), 10 << 30, "moved whole");
    assert!(w.remaining().is_empty());
}

/// A socket element, and a socket at the root of the directory layout.
#[test]
fn socket_elements_are_moved_aside() {
    let w = World::new(Layout::Dirq);
    let sock = w.good_dir().join("60000000000003");
    let _l = socket_at(&sock);
    let before = snapshot(&w.outside);
    let run = w.run();
    w.check(&run, &before, std::slice::from_ref(&sock), &[]);
    w.assert_moved(&sock, |m| {
        std::os::unix::fs::FileTypeExt::is_socket(&m.file_type())
    });

    let w = World::new(Layout::Directory);
    let sock = w.queue.join("sock");
    let _l = socket_at(&sock);
    let before = snapshot(&w.outside);
    let run = w.run();
    w.check(&run, &before, std::slice::from_ref(&sock), &[]);
}

// --- class 6: one bad entry never blocks the queue ------------------------

/// A plain file where an intermediate directory should be: the good
/// messages are still sent, the file is moved aside.
#[test]
fn plain_file_as_intermediate_directory_does_not_block_the_queue() {
    let w = World::new(Layout::Dirq);
    let file = w.queue.join("60000000");
    fs::copy(w.secret(), &file).unwrap();
    let before = snapshot(&w.outside);
    let run = w.run();
    w.check(&run, &before, std::slice::from_ref(&file), &[]);
    w.assert_moved(&file, is_file);
}

/// An intermediate directory that cannot be listed (mode 000, run as
/// nobody): left in place with its message, the others sent.
#[test]
fn unlistable_intermediate_directory_is_reported_and_left_in_place() {
    let w = World::new(Layout::Dirq);
    let locked_dir = w.queue.join("60000000");
    fs::create_dir(&locked_dir).unwrap();
    let kept = locked_dir.join("60000000000001");
    fs::write(
        &kept,
        "APEL-cloud-message: v0.4\nVMUUID: kept\nSiteName: HOSTILE\n",
    )
    .unwrap();
    let before = snapshot(&w.outside);
    let run = w.run_as_nobody(|| {
        fs::set_permissions(&locked_dir, fs::Permissions::from_mode(0o000)).unwrap();
    });
    fs::set_permissions(&locked_dir, fs::Permissions::from_mode(0o755)).unwrap();
    w.check(&run, &before, std::slice::from_ref(&locked_dir), &[]);
    assert!(run.log.contains("left in place"), "{}", run.log);
    assert!(run.log.contains("Permission denied"), "{}", run.log);
    assert_eq!(
        fs::read(&kept).unwrap(),
        b"APEL-cloud-message: v0.4\nVMUUID: kept\nSiteName: HOSTILE\n"
    );
}

/// Names that are not dirq names, at the root and in an intermediate
/// directory: each reported and moved aside, never read.
#[test]
fn foreign_names_are_reported_and_moved_aside() {
    let w = World::new(Layout::Dirq);
    let bad = [
        w.queue.join("notes.txt"),
        w.queue.join("6000000G"),
        w.good_dir().join("6000000000000A"),
        w.good_dir().join("600000000000"),
        w.good_dir().join("60000000000003.bak"),
    ];
    for p in &bad {
        fs::copy(w.secret(), p).unwrap();
    }
    let before = snapshot(&w.outside);
    let run = w.run();
    let mut sorted = bad.to_vec();
    sorted.sort();
    w.check(&run, &before, &sorted, &[]);
    for p in &bad {
        w.assert_moved(p, is_file);
    }
}

/// A `.lck` that is a directory: moved aside, its element sent this run.
#[test]
fn lock_that_is_a_directory_is_moved_aside_and_its_element_sent() {
    let w = World::new(Layout::Dirq);
    let id = w.good.keys().nth(1).unwrap().clone();
    let lock = w.queue.join(format!("{id}.lck"));
    fs::create_dir(&lock).unwrap();
    fs::copy(w.secret(), lock.join("inside")).unwrap();
    let before = snapshot(&w.outside);
    let run = w.run();
    w.check(&run, &before, std::slice::from_ref(&lock), &[]);
    w.assert_moved(&lock, is_dir);
}

/// Names that are not UTF-8, in dirq (root and intermediate directory) and
/// in the directory layout.
#[test]
fn non_utf8_names_are_reported_and_moved_aside() {
    let w = World::new(Layout::Dirq);
    let in_dir = w
        .good_dir()
        .join(OsStr::from_bytes(b"6000000000\xff\xfe03"));
    let at_root = w.queue.join(OsStr::from_bytes(b"600000\xc3\x28"));
    fs::copy(w.secret(), &in_dir).unwrap();
    fs::create_dir(&at_root).unwrap();
    let before = snapshot(&w.outside);
    let run = w.run();
    let mut bad = vec![in_dir.clone(), at_root.clone()];
    bad.sort();
    w.check(&run, &before, &bad, &[]);
    w.assert_moved(&in_dir, is_file);
    w.assert_moved(&at_root, is_dir);

    let w = World::new(Layout::Directory);
    let name = w.queue.join(OsStr::from_bytes(b"msg-\xff"));
    fs::copy(w.secret(), &name).unwrap();
    let before = snapshot(&w.outside);
    let run = w.run();
    w.check(&run, &before, std::slice::from_ref(&name), &[]);
    w.assert_moved(&name, is_file);
}

/// Directory layout: a subdirectory (with a message-like file in it), a
/// hidden file and a name with a newline: reported, moved aside, the
/// messages sent.
#[test]
fn directory_layout_subdirectories_and_odd_names_are_moved_aside() {
    let w = World::new(Layout::Directory);
    let sub = w.queue.join("subdir");
    fs::create_dir(&sub).unwrap();
    fs::copy(w.secret(), sub.join("message")).unwrap();
    let hidden = w.queue.join(".hidden");
    fs::copy(w.secret(), &hidden).unwrap();
    let newline = w.queue.join("two\nlines");
    fs::copy(w.secret(), &newline).unwrap();
    let before = snapshot(&w.outside);
    let run = w.run();
    let mut bad = vec![sub.clone(), hidden.clone(), newline.clone()];
    bad.sort();
    w.check(&run, &before, &bad, &[]);
    w.assert_moved(&sub, is_dir);
    w.assert_moved(&hidden, is_file);
    w.assert_moved(&newline, is_file);
    assert!(!run.log.contains("two\nlines"), "raw newline logged");
}

/// What Python writers and senders leave while they work is not bad: a
/// regular `.tmp` of an add in progress and another sender's `.lck`. The
/// run exits 0; the locked element stays for its owner.
#[test]
fn python_writers_temporary_files_and_locks_are_not_reported() {
    let w = World::new(Layout::Dirq);
    let dir = w.good_dir();
    fs::write(dir.join("60000000000004.tmp"), b"half an add").unwrap();
    let id = w.good.keys().next().unwrap().clone();
    fs::hard_link(w.queue.join(&id), w.queue.join(format!("{id}.lck"))).unwrap();
    let run = w.run();
    assert_eq!(run.code, 0, "{}", run.log);
    assert!(!run.log.contains("not a message"), "{}", run.log);
    assert_eq!(w.remaining(), vec![id]);
    assert_eq!(w.published().len(), w.good.len() - 1);
    assert!(dir.join("60000000000004.tmp").exists());
}

/// A Python dirq writer (what cASO does) and a Python consumer (what SSM
/// does) on the same queue while ssmsend runs: their temporary files and
/// locks are never reported, the run exits 0, and every message is
/// published by us, consumed by Python or still queued, exactly once.
#[test]
fn concurrent_python_writer_and_consumer_cause_no_report() {
    let w = World::new(Layout::Dirq);
    let root = w.queue.to_str().unwrap().to_owned();
    let mut adder = spool::oracle_cmd(&["add", &root, "3000", "py"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Let the writer get going, so the run overlaps its adds.
    let started = Instant::now();
    while Queue::open(&w.queue, Layout::Dirq)
        .unwrap()
        .count()
        .unwrap()
        < 200
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "Python adds stalled"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // The consumer starts once ssmsend has listed the queue (its start-up
    // takes a moment), so both take elements from the same listing.
    let consumer = {
        let root = root.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(400));
            let child = spool::oracle_cmd(&["consume", &root])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            spool::wait_output(child)
        })
    };
    let run = w.run();
    assert!(adder.wait().unwrap().success());
    let consumed: Vec<String> = consumer
        .join()
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["name"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(run.code, 0, "{}", run.log);
    assert!(!run.log.contains("not a message"), "{}", run.log);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let published: Vec<String> = rt
        .block_on(w.double.messages())
        .iter()
        .map(|m| m["empaid"].as_str().unwrap().to_owned())
        .collect();
    let remaining = w.remaining();
    let mut all: Vec<&String> = published
        .iter()
        .chain(&consumed)
        .chain(&remaining)
        .collect();
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), n, "a message handled twice");
    assert_eq!(
        n,
        3003,
        "published {}, consumed {}, queued {}",
        published.len(),
        consumed.len(),
        remaining.len()
    );
    assert!(!published.is_empty(), "ssmsend published nothing");
    eprintln!(
        "published {}, consumed {}, queued {}",
        published.len(),
        consumed.len(),
        remaining.len()
    );
}

// --- class 10: the reject error names the reject directory ----------------

/// A reject directory the sender may not write (owned by root, run as
/// nobody): the error names the reject directory, not the lock file; the
/// unsendable message stays queued; the bad entry stays in place.
#[test]
fn unwritable_reject_directory_is_named_in_the_error() {
    let w = World::new(Layout::Dirq);
    let empty = Queue::open(&w.queue, Layout::Dirq)
        .unwrap()
        .add(b"")
        .unwrap()
        .to_string();
    let fifo = w.good_dir().join("60000000000003");
    mkfifo(&fifo);
    fs::create_dir(w.reject_dir()).unwrap();
    let before = snapshot(&w.outside);
    let reject = w.reject_dir();
    let run = w.run_as_nobody(|| {
        if crate::support::is_root() {
            let st = Command::new("chown")
                .args(["0:0"])
                .arg(&reject)
                .status()
                .unwrap();
            assert!(st.success());
        }
        fs::set_permissions(&reject, fs::Permissions::from_mode(0o555)).unwrap();
    });
    fs::set_permissions(&reject, fs::Permissions::from_mode(0o755)).unwrap();
    let mut w = w;
    w.good.insert(empty.clone(), "(empty)".into());
    w.check(&run, &before, std::slice::from_ref(&fifo), &[&empty]);
    let named = format!(
        "the reject directory {}: Permission denied",
        reject.display()
    );
    assert_eq!(run.log.matches(&named).count(), 2, "{}", run.log);
    assert!(!run.log.contains(".lck"), "{}", run.log);
    assert!(fs::symlink_metadata(&fifo).is_ok(), "left in place");
}

// --- property: random trees ----------------------------------------------

mod random_trees {
    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    /// One planted entry of a dirq tree.
    #[derive(Clone, Debug)]
    enum Plant {
        /// A good message in intermediate directory 0 or 1.
        Good(u8),
        /// An element that is a symlink to the outside secret.
        ElementSymlink(u8),
        /// An intermediate directory that is a symlink to an outside directory.
        DirSymlink,
        Fifo(u8),
        /// A directory where an element should be (holding the marker).
        ElementDir(u8),
        /// A regular file with a name that is no dirq name (in directory 0
        /// or 1, or at the root when 2), holding the marker.
        BadName(u8, String),
        NonUtf8(u8),
        /// A regular file where an intermediate directory should be.
        FileAsDir,
        /// A good message whose `.lck` is a symlink to the outside secret.
        GoodWithLinkedLock(u8),
        Socket(u8),
    }

    fn plant() -> impl Strategy<Value = Plant> {
        prop_oneof![
            4 => (0u8..2).prop_map(Plant::Good),
            1 => (0u8..2).prop_map(Plant::ElementSymlink),
            1 => Just(Plant::DirSymlink),
            1 => (0u8..2).prop_map(Plant::Fifo),
            1 => (0u8..2).prop_map(Plant::ElementDir),
            1 => ((0u8..3), "[A-Za-z0-9_.-]{1,16}").prop_map(|(d, s)| Plant::BadName(d, s)),
            1 => (0u8..3).prop_map(Plant::NonUtf8),
            1 => Just(Plant::FileAsDir),
            1 => (0u8..2).prop_map(Plant::GoodWithLinkedLock),
            1 => (0u8..2).prop_map(Plant::Socket),
        ]
    }

    /// One AMS double and PKI for every case.
    struct Fixture {
        pki: Pki,
        host: Identity,
        double: AmsDouble,
        rt: tokio::runtime::Runtime,
        /// Messages of the double already looked at.
        seen: std::cell::Cell<usize>,
    }

    impl Fixture {
        fn new() -> Fixture {
            let pki = Pki::new();
            let host = pki.host();
            let server = pki.server();
            let double = AmsDouble::start_with(
                tempfile::tempdir().unwrap(),
                pki.ca_file(),
                &server.cert_path,
                &server.key_path,
                HOST_DN,
                &[],
            );
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            Fixture {
                pki,
                host,
                double,
                rt,
                seen: std::cell::Cell::new(0),
            }
        }

        /// What the double stored since the last call.
        fn new_messages(&self) -> Vec<Vec<u8>> {
            self.rt.block_on(async {
                let all = self.double.messages().await;
                let mut out = Vec::new();
                for m in &all[self.seen.get()..] {
                    out.push(self.double.data(m["seq"].as_u64().unwrap()).await);
                }
                self.seen.set(all.len());
                out
            })
        }

        fn case(&self, plants: &[Plant]) {
            let dir = tempfile::tempdir().unwrap();
            let queue = dir.path().join("spool/outgoing");
            let outside = dir.path().join("outside");
            let marker = format!("MARKER-{}", uuid::Uuid::new_v4().simple());
            let secret = format!("APEL-cloud-message: v0.4\nVMUUID: {marker}\nSiteName: HOSTILE\n");
            fs::create_dir_all(outside.join("dirq")).unwrap();
            fs::write(outside.join("secret.txt"), &secret).unwrap();
            fs::write(outside.join("dirq/61000000000001"), &secret).unwrap();
            fs::create_dir_all(&queue).unwrap();
            let dirs = [
                queue.join("61000000"),
                queue.join("62000000"),
                queue.clone(),
            ];
            for d in &dirs[..2] {
                fs::create_dir(d).unwrap();
            }
            let mut good = BTreeMap::new();
            let mut bad = Vec::new();
            let mut sockets = Vec::new();
            for (i, p) in plants.iter().enumerate() {
                let element = |d: &u8| dirs[usize::from(*d)].join(format!("6{i:013x}"));
                match p {
                    Plant::Good(d) => {
                        let token = format!("good-{i}-{}", uuid::Uuid::new_v4().simple());
                        let path = element(d);
                        fs::write(
                            &path,
                            format!(
                                "APEL-cloud-message: v0.4\nVMUUID: {token}\nSiteName: HOSTILE\n"
                            ),
                        )
                        .unwrap();
                        good.insert(path, token);
                    }
                    Plant::ElementSymlink(d) => {
                        symlink(outside.join("secret.txt"), element(d)).unwrap();
                        bad.push(element(d));
                    }
                    Plant::DirSymlink => {
                        let path = queue.join(format!("7{i:07x}"));
                        symlink(outside.join("dirq"), &path).unwrap();
                        bad.push(path);
                    }
                    Plant::Fifo(d) => {
                        mkfifo(&element(d));
                        bad.push(element(d));
                    }
                    Plant::ElementDir(d) => {
                        fs::create_dir(element(d)).unwrap();
                        fs::write(element(d).join("inside"), &secret).unwrap();
                        bad.push(element(d));
                    }
                    Plant::BadName(d, s) => {
                        // A '-' makes it no dirq name at any level.
                        let path = dirs[usize::from(*d)].join(format!("{s}-{i}"));
                        fs::write(&path, &secret).unwrap();
                        bad.push(path);
                    }
                    Plant::NonUtf8(d) => {
                        let mut name = b"\xff".to_vec();
                        name.extend(format!("{i}").as_bytes());
                        let path = dirs[usize::from(*d)].join(OsStr::from_bytes(&name));
                        fs::write(&path, &secret).unwrap();
                        bad.push(path);
                    }
                    Plant::FileAsDir => {
                        let path = queue.join(format!("8{i:07x}"));
                        fs::write(&path, &secret).unwrap();
                        bad.push(path);
                    }
                    Plant::GoodWithLinkedLock(d) => {
                        let token = format!("good-{i}-{}", uuid::Uuid::new_v4().simple());
                        let path = element(d);
                        fs::write(
                            &path,
                            format!(
                                "APEL-cloud-message: v0.4\nVMUUID: {token}\nSiteName: HOSTILE\n"
                            ),
                        )
                        .unwrap();
                        let mut lock = path.clone().into_os_string();
                        lock.push(".lck");
                        symlink(outside.join("secret.txt"), &lock).unwrap();
                        good.insert(path, token);
                        bad.push(PathBuf::from(lock));
                    }
                    Plant::Socket(d) => {
                        sockets.push(socket_at(&element(d)));
                        bad.push(element(d));
                    }
                }
            }
            let before = snapshot(&outside);
            let cfg = SenderCfg::ams(
                self.double.ams_port,
                self.double.authn_port,
                "accounting",
                "eu-egi-cloud-accounting",
            )
            .credentials(&self.host.cert_path, &self.host.key_path, self.pki.capath())
            .queue(&queue, Layout::Dirq)
            .write(&dir.path().join("sender.cfg"));
            let run = run_bounded(&cfg, &[]);
            drop(sockets);
            let log = &run.log;
            let want = if bad.is_empty() { 0 } else { 1 };
            assert_eq!(run.code, want, "{plants:?}\n{log}");
            let published = self.new_messages();
            for data in &published {
                assert!(!contains(data, marker.as_bytes()), "marker published");
            }
            assert!(!log.contains(&marker), "marker logged");
            assert_eq!(snapshot(&outside), before, "outside changed");
            for (path, token) in &good {
                let sent = published.iter().any(|d| contains(d, token.as_bytes()));
                assert!(
                    sent || path.exists(),
                    "{path:?} neither published nor queued\n{log}"
                );
            }
            assert_eq!(published.len(), good.len(), "{log}");
            for path in &bad {
                let line = format!("not a message: {path:?}");
                assert_eq!(log.matches(&line).count(), 1, "{line}\n{log}");
            }
        }
    }

    /// Random dirq trees of good messages, symlinks, FIFOs, directories and
    /// bad names: one ssmsend run publishes every good message (as many
    /// messages as good ones: none twice; cases reuse element names, so the
    /// double's duplicate count says nothing here),
    /// never touches or publishes anything outside, reports every bad entry
    /// once, and exits 1 exactly when there was one.
    #[test]
    fn random_trees_publish_the_good_and_report_the_bad() {
        let fixture = Fixture::new();
        let mut runner = TestRunner::new(Config {
            cases: 32,
            failure_persistence: None,
            ..Config::default()
        });
        runner
            .run(&proptest::collection::vec(plant(), 0..10), |plants| {
                fixture.case(&plants);
                Ok(())
            })
            .unwrap();
    }
}
