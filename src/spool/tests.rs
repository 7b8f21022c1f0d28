use super::*;
use std::fs::FileTimes;

fn age(path: &Path, secs: u64) {
    let t = SystemTime::now() - Duration::from_secs(secs);
    File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_times(FileTimes::new().set_modified(t).set_accessed(t))
        .unwrap();
}

fn file_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn dirq_names_match_dirq() {
    let d = tempfile::tempdir().unwrap();
    let q = Queue::create(&d.path().join("q"), Layout::Dirq).unwrap();
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let id = q.add(b"hello").unwrap();
    let (dir, name) = id.as_str().split_once('/').unwrap();
    assert!(
        dirq::is_dir_name(dir) && dirq::is_element_name(name),
        "{id}"
    );
    let dir_secs = u64::from_str_radix(dir, 16).unwrap();
    assert_eq!(dir_secs % 60, 0);
    assert!(dir_secs <= before && before - dir_secs < 120);
    let name_secs = u64::from_str_radix(&name[..8], 16).unwrap();
    assert!(name_secs >= before);
    assert!(u32::from_str_radix(&name[8..13], 16).unwrap() < 1_000_000);
    assert_eq!(id.file_name(), name);
    // The element file and nothing else.
    assert_eq!(file_names(&q.root().join(dir)), vec![name.to_string()]);
    assert_eq!(fs::read(q.root().join(id.as_str())).unwrap(), b"hello");
}

use std::time::UNIX_EPOCH;

#[test]
fn dirq_lock_get_unlock_remove() {
    let d = tempfile::tempdir().unwrap();
    let q = Queue::create(d.path(), Layout::Dirq).unwrap();
    let a = q.add(b"a").unwrap();
    let b = q.add(b"b").unwrap();
    assert_eq!(q.elements().unwrap(), vec![a.clone(), b.clone()]);
    assert_eq!(q.count().unwrap(), 2);

    assert!(q.lock(&a).unwrap());
    assert!(!q.lock(&a).unwrap(), "a second lock fails");
    assert_eq!(q.get(&a, 100).unwrap(), b"a");
    // Locked elements are still elements (dirq counts them).
    assert_eq!(q.count().unwrap(), 2);
    q.unlock(&a).unwrap();
    assert!(q.unlock(&a).is_err(), "unlocking twice is an error");
    assert!(q.get(&a, 100).is_err(), "get needs the lock");

    assert!(q.lock(&a).unwrap());
    q.remove(&a).unwrap();
    assert!(!q.lock(&a).unwrap(), "a removed element cannot be locked");
    assert_eq!(q.elements().unwrap(), vec![b]);
}

#[test]
fn temporary_and_foreign_files_are_not_elements() {
    let d = tempfile::tempdir().unwrap();
    let q = Queue::create(d.path(), Layout::Dirq).unwrap();
    let a = q.add(b"a").unwrap();
    let dir = q.root().join(a.as_str().split_once('/').unwrap().0);
    fs::write(dir.join("0123456789abcd.tmp"), b"partial").unwrap();
    fs::write(dir.join("0123456789ABCD"), b"upper case").unwrap();
    fs::write(dir.join("0123456789abc"), b"13 digits").unwrap();
    fs::create_dir(q.root().join("notadir")).unwrap();
    fs::create_dir(q.root().join("0000000g")).unwrap();
    assert!(q.lock(&a).unwrap());
    assert_eq!(q.elements().unwrap(), vec![a]);
    assert_eq!(q.count().unwrap(), 1);
}

#[test]
fn purge_removes_stale_temp_and_locks_and_empty_dirs_but_the_newest() {
    let d = tempfile::tempdir().unwrap();
    let q = Queue::create(d.path(), Layout::Dirq).unwrap();
    for dir in ["00000010", "00000020", "00000030"] {
        fs::create_dir(q.root().join(dir)).unwrap();
    }
    let keep = q.root().join("00000020/00000020000001");
    fs::write(&keep, b"old element").unwrap();
    let old_tmp = q.root().join("00000020/00000020000002.tmp");
    let new_tmp = q.root().join("00000020/00000020000003.tmp");
    fs::write(&old_tmp, b"x").unwrap();
    fs::write(&new_tmp, b"x").unwrap();
    age(&old_tmp, 301);
    let id = ElementId("00000020/00000020000001".into());
    assert!(q.lock(&id).unwrap());
    age(&keep, 601); // same inode as the .lck: the lock is 601 s old

    let r = q
        .purge(Duration::from_secs(300), Duration::from_secs(600))
        .unwrap();
    assert_eq!(
        r,
        PurgeReport {
            temp_removed: 1,
            locks_removed: 1,
            dirs_removed: 1
        }
    );
    assert_eq!(file_names(q.root()), vec!["00000020", "00000030"]);
    assert_eq!(
        file_names(&q.root().join("00000020")),
        vec!["00000020000001", "00000020000003.tmp"]
    );
    // Unlocked by purge: lockable again.
    assert!(q.lock(&id).unwrap());
    // Zero disables: nothing else goes even when ancient.
    age(&new_tmp, 10_000);
    age(&keep, 10_000);
    let r = q.purge(Duration::ZERO, Duration::ZERO).unwrap();
    assert_eq!(r, PurgeReport::default());
}

#[test]
fn a_batch_is_invisible_until_commit_then_in_add_order() {
    let d = tempfile::tempdir().unwrap();
    let q = Queue::create(d.path(), Layout::Dirq).unwrap();
    let mut batch = q.batch();
    for i in 0..50 {
        batch.add(format!("m{i}").as_bytes()).unwrap();
    }
    assert_eq!(batch.len(), 50);
    assert!(q.elements().unwrap().is_empty(), "temporary files only");
    let ids = batch.commit().unwrap();
    assert_eq!(q.elements().unwrap(), ids, "send order = add order");
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(
            fs::read(q.root().join(id.as_str())).unwrap(),
            format!("m{i}").as_bytes()
        );
    }
    let dir = q.root().join(ids[0].as_str().split_once('/').unwrap().0);
    assert!(file_names(&dir).iter().all(|n| !n.ends_with(".tmp")));
}

#[test]
fn dropping_a_batch_removes_its_temporary_files() {
    let d = tempfile::tempdir().unwrap();
    let q = Queue::create(d.path(), Layout::Dirq).unwrap();
    let mut batch = q.batch();
    batch.add(b"x").unwrap();
    batch.add(b"y").unwrap();
    drop(batch);
    for dir in file_names(q.root()) {
        assert!(file_names(&q.root().join(dir)).is_empty());
    }
    assert_eq!(q.count().unwrap(), 0);
}

#[test]
fn a_directory_layout_batch_commits_too() {
    let d = tempfile::tempdir().unwrap();
    let q = Queue::create(d.path(), Layout::Directory).unwrap();
    let mut batch = q.batch();
    batch.add(b"x").unwrap();
    batch.add(b"y").unwrap();
    let ids = batch.commit().unwrap();
    assert_eq!(ids.len(), 2);
    assert_eq!(q.count().unwrap(), 2);
}

#[test]
fn open_needs_an_existing_root_create_makes_it() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("a/b/outgoing");
    let e = Queue::open(&root, Layout::Dirq).unwrap_err();
    assert!(matches!(e, SpoolError::MissingRoot(_)));
    assert!(e.to_string().contains(&*root.to_string_lossy()), "{e}");
    Queue::create(&root, Layout::Directory).unwrap();
    Queue::open(&root, Layout::Dirq).unwrap();
    let file = d.path().join("f");
    fs::write(&file, b"").unwrap();
    assert!(matches!(
        Queue::open(&file, Layout::Dirq),
        Err(SpoolError::NotADirectory(_))
    ));
}

#[test]
fn ids_cannot_escape_the_root() {
    let d = tempfile::tempdir().unwrap();
    let q = Queue::create(d.path(), Layout::Dirq).unwrap();
    let dq = Queue::create(d.path(), Layout::Directory).unwrap();
    for bad in ["../x", "00000000/../../etc", "abc", ""] {
        let id = ElementId(bad.into());
        assert!(matches!(
            q.lock(&id),
            Err(SpoolError::InvalidElement { .. })
        ));
    }
    for bad in ["../x", "a/b", ".hidden", ""] {
        let id = ElementId(bad.into());
        assert!(matches!(
            dq.get(&id, 100),
            Err(SpoolError::InvalidElement { .. })
        ));
    }
}

#[test]
fn io_errors_name_the_path_and_the_os_error() {
    let d = tempfile::tempdir().unwrap();
    let q = Queue::create(d.path(), Layout::Dirq).unwrap();
    let id = ElementId("00000000/00000000000000".into());
    let e = q.get(&id, 100).unwrap_err().to_string();
    assert!(e.contains("00000000: No such file or directory"), "{e}");
    fs::create_dir(q.root().join("00000000")).unwrap();
    let e = q.get(&id, 100).unwrap_err().to_string();
    assert!(e.contains("00000000/00000000000000.lck"), "{e}");
    assert!(e.contains("No such file or directory"), "{e}");
}

#[test]
fn reject_moves_a_locked_element_beside_the_queue_never_overwriting() {
    let d = tempfile::tempdir().unwrap();
    let q = Queue::create(&d.path().join("outgoing"), Layout::Dirq).unwrap();
    assert_eq!(q.reject_dir(), d.path().join("reject"));
    let a = q.add(b"bad message").unwrap();
    assert!(q.lock(&a).unwrap());
    let p = q.reject(&a, "too large").unwrap();
    assert_eq!(p, d.path().join("reject").join(a.file_name()));
    assert_eq!(fs::read(&p).unwrap(), b"bad message");
    assert_eq!(
        fs::read_to_string(
            d.path()
                .join("reject")
                .join(format!("{}.reason", a.file_name()))
        )
        .unwrap(),
        "too large\n"
    );
    assert_eq!(q.count().unwrap(), 0);
    let dir = q.root().join(a.as_str().split_once('/').unwrap().0);
    assert!(file_names(&dir).is_empty(), "no .lck left");

    // Only a locked element can be rejected; the error names its lock path.
    let c = q.add(b"unlocked").unwrap();
    let e = q.reject(&c, "x").unwrap_err().to_string();
    assert!(e.contains(&format!("{c}.lck")), "{e}");
    q.lock(&c).unwrap();
    q.remove(&c).unwrap();

    // A second message whose file name is already taken in reject/.
    let b = q.add(b"other").unwrap();
    fs::write(q.reject_dir().join(b.file_name()), b"someone else's").unwrap();
    assert!(q.lock(&b).unwrap());
    let p = q.reject(&b, "why").unwrap();
    assert_eq!(p, q.reject_dir().join(format!("{}.1", b.file_name())));
    assert_eq!(
        fs::read(q.reject_dir().join(b.file_name())).unwrap(),
        b"someone else's"
    );
    assert!(
        !file_names(&q.reject_dir())
            .iter()
            .any(|n| n.ends_with(".tmp"))
    );
}

#[test]
fn directory_layout_orders_by_mtime_and_hides_temp_files() {
    let d = tempfile::tempdir().unwrap();
    let q = Queue::create(d.path(), Layout::Directory).unwrap();
    let a = q.add(b"first").unwrap();
    let b = q.add(b"second").unwrap();
    assert!(
        uuid::Uuid::parse_str(a.as_str()).is_ok(),
        "uuid4 names as SSM"
    );
    age(&q.root().join(b.as_str()), 100); // b is older now
    fs::write(q.root().join(".x.tmp"), b"partial").unwrap();
    fs::create_dir(q.root().join("subdir")).unwrap();
    assert_eq!(q.elements().unwrap(), vec![b.clone(), a.clone()]);
    assert_eq!(q.count().unwrap(), 2);
    assert!(q.lock(&a).unwrap());
    assert!(q.lock(&a).unwrap(), "no locking in this layout");
    assert_eq!(q.get(&a, 100).unwrap(), b"first");
    q.unlock(&a).unwrap();
    q.remove(&a).unwrap();
    assert!(!q.lock(&a).unwrap(), "gone");
    age(&q.root().join(".x.tmp"), 301);
    let r = q
        .purge(Duration::from_secs(300), Duration::from_secs(600))
        .unwrap();
    assert_eq!(r.temp_removed, 1);
    assert_eq!(file_names(q.root()), vec![b.to_string(), "subdir".into()]);
}

#[test]
fn directory_layout_fallback_without_o_tmpfile_leaves_no_temp_file() {
    let d = tempfile::tempdir().unwrap();
    let q = Queue::create(d.path(), Layout::Directory).unwrap();
    let id = directory::add_via_dot_temp(&q.root_dir, d.path(), b"x", "m1".into()).unwrap();
    assert_eq!(id.as_str(), "m1");
    assert_eq!(file_names(d.path()), vec!["m1".to_string()]);
    assert_eq!(q.elements().unwrap(), vec![id]);
}

#[test]
fn remove_all_removes_locked_elements_and_reports_each() {
    for layout in [Layout::Dirq, Layout::Directory] {
        let d = tempfile::tempdir().unwrap();
        let q = Queue::create(d.path(), layout).unwrap();
        let ids: Vec<ElementId> = (0..5).map(|i| q.add(&[b'a' + i]).unwrap()).collect();
        for id in &ids[..4] {
            assert!(q.lock(id).unwrap());
        }
        let gone = q.add(b"gone").unwrap();
        assert!(q.lock(&gone).unwrap());
        q.remove(&gone).unwrap();
        let mut batch = ids[..4].to_vec();
        batch.push(gone);
        let results = q.remove_all(&batch);
        assert_eq!(results.len(), 5, "{layout}");
        assert!(
            results[..4].iter().all(Result::is_ok),
            "{layout}: {results:?}"
        );
        assert!(results[4].is_err(), "{layout}: an element already removed");
        assert_eq!(q.elements().unwrap(), vec![ids[4].clone()], "{layout}");
    }
}

/// Property tests of the name parsers (outside input: whatever a directory
/// holds), 10,000 cases each.
mod names {
    use super::*;
    use proptest::prelude::*;
    use std::cell::RefCell;

    /// `^[0-9a-f]{n}$`, spelled out independently of the parser.
    fn lower_hex(s: &str, n: usize) -> bool {
        s.chars().count() == n
            && s.chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    }

    /// A scratch queue per test thread (tmpfs when there is one): one
    /// listing per case stays cheap.
    struct Scratch {
        _dir: tempfile::TempDir,
        dirq: Queue,
        flat: Queue,
    }

    fn scratch() -> Scratch {
        let shm = Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            tempfile::tempdir_in(shm).unwrap()
        } else {
            tempfile::tempdir().unwrap()
        };
        let dirq = Queue::create(&dir.path().join("dirq"), Layout::Dirq).unwrap();
        let flat = Queue::create(&dir.path().join("flat"), Layout::Directory).unwrap();
        Scratch {
            _dir: dir,
            dirq,
            flat,
        }
    }

    thread_local! {
        static SCRATCH: RefCell<Option<Scratch>> = const { RefCell::new(None) };
    }

    fn with_scratch<T>(f: impl FnOnce(&Scratch) -> T) -> T {
        SCRATCH.with(|s| f(s.borrow_mut().get_or_insert_with(scratch)))
    }

    /// Empties a queue root between cases.
    fn clear(root: &Path) {
        for e in fs::read_dir(root).unwrap() {
            let p = e.unwrap().path();
            if fs::symlink_metadata(&p).unwrap().is_dir() {
                fs::remove_dir_all(&p).unwrap();
            } else {
                fs::remove_file(&p).unwrap();
            }
        }
    }

    /// Strings near the dirq grammar (hex of every case, slashes, dots,
    /// suffixes) and anything at all.
    fn near_dirq() -> impl Strategy<Value = String> {
        prop_oneof![
            "[0-9a-fA-F]{6,16}",
            "[0-9a-fA-G]{7,9}/[0-9a-fA-G]{13,15}",
            "[0-9a-f]{8}/[0-9a-f]{14}(\\.lck|\\.tmp|/|/x)?",
            "[0-9a-f/.]{0,30}",
            any::<String>(),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]

        #[test]
        fn dirq_parsers_accept_exactly_their_grammar(s in near_dirq()) {
            prop_assert_eq!(dirq::is_dir_name(&s), lower_hex(&s, 8));
            prop_assert_eq!(dirq::is_element_name(&s), lower_hex(&s, 14));
            let id = s
                .split_once('/')
                .is_some_and(|(d, n)| lower_hex(d, 8) && lower_hex(n, 14));
            prop_assert_eq!(dirq::is_element_id(&s), id);
            if id {
                let e = ElementId(s.clone());
                prop_assert_eq!(format!("{}/{}", dirq::split_id(&e).0, e.file_name()), s);
            }
        }

        #[test]
        fn directory_names_are_one_plain_component(s in any::<String>()) {
            if directory::is_element_name(&s) {
                prop_assert!(!s.is_empty() && s.len() <= 255);
                prop_assert!(!s.contains('/') && !s.starts_with('.'));
                prop_assert!(!s.chars().any(char::is_control));
            }
        }

        /// A valid dirq name comes back from the listing as that element;
        /// a foreign name beside it is reported as bad, never listed.
        #[test]
        fn dirq_names_round_trip_through_the_listing(
            dir in "[0-9a-f]{8}",
            name in "[0-9a-f]{14}",
            other in "[ -.0-~]{1,20}",
        ) {
            prop_assume!(other != "." && other != "..");
            with_scratch(|s| {
                let root = s.dirq.root();
                clear(root);
                fs::create_dir(root.join(&dir)).unwrap();
                fs::write(root.join(&dir).join(&name), b"m").unwrap();
                let scan = s.dirq.scan().unwrap();
                assert_eq!(scan.elements, vec![ElementId(format!("{dir}/{name}"))]);
                assert!(scan.bad.is_empty(), "{:?}", scan.bad);
                let other_path = root.join(&dir).join(&other);
                if other_path.exists() {
                    return;
                }
                fs::write(&other_path, b"x").unwrap();
                let scan = s.dirq.scan().unwrap();
                let volatile = other
                    .strip_suffix(".tmp")
                    .or_else(|| other.strip_suffix(".lck"))
                    .is_some_and(|stem| lower_hex(stem, 14));
                let mut want = vec![ElementId(format!("{dir}/{name}"))];
                if lower_hex(&other, 14) {
                    want.push(ElementId(format!("{dir}/{other}")));
                    want.sort();
                }
                assert_eq!(scan.elements, want);
                let reported = scan.bad.iter().any(|b| b.path == other_path);
                assert_eq!(reported, !volatile && !lower_hex(&other, 14), "{other:?}");
            });
        }

        /// Any file name in the directory layout is either an element (then
        /// exactly the parser's verdict) or reported, except our temporary
        /// dot-files.
        #[test]
        fn directory_names_round_trip_through_the_listing(name in "[^/\\x00]{1,40}") {
            prop_assume!(name != "." && name != ".." && name.len() <= 255);
            with_scratch(|s| {
                let root = s.flat.root();
                clear(root);
                fs::write(root.join(&name), b"m").unwrap();
                let scan = s.flat.scan().unwrap();
                let temp = name.starts_with('.') && name.ends_with(".tmp") && name.len() >= 6;
                if directory::is_element_name(&name) {
                    assert_eq!(scan.elements, vec![ElementId(name.clone())]);
                    assert!(scan.bad.is_empty());
                } else {
                    assert!(scan.elements.is_empty());
                    assert_eq!(scan.bad.len(), usize::from(!temp), "{name:?}");
                }
            });
        }
    }
}

/// The writer's side: an intermediate directory of the current minute that
/// is a symlink to an outside directory is refused, never written through.
#[test]
fn add_refuses_an_intermediate_directory_symlink() {
    let d = tempfile::tempdir().unwrap();
    let outside = d.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let q = Queue::create(&d.path().join("q"), Layout::Dirq).unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // This minute and the next: the add cannot fall between them.
    for m in 0..2 {
        let name = format!("{:08x}", now - now % 60 + 60 * m);
        std::os::unix::fs::symlink(&outside, q.root().join(name)).unwrap();
    }
    let e = q.add(b"m").unwrap_err().to_string();
    assert!(e.contains("never followed"), "{e}");
    assert!(
        fs::read_dir(&outside).unwrap().next().is_none(),
        "written through"
    );
    let e = {
        let mut b = q.batch();
        b.add(b"m").map(|()| b.len())
    };
    assert!(e.is_err());
}

/// Purge removes only regular stale temporary files and locks: a symlink
/// named like one is left (scan reports it), its target untouched.
#[test]
fn purge_never_removes_through_or_a_symlink() {
    let d = tempfile::tempdir().unwrap();
    let target = d.path().join("target");
    fs::write(&target, b"keep").unwrap();
    let q = Queue::create(&d.path().join("q"), Layout::Dirq).unwrap();
    fs::create_dir(q.root().join("00000010")).unwrap();
    let link = q.root().join("00000010/00000010000001.tmp");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    age(&target, 10_000);
    let r = q
        .purge(Duration::from_secs(300), Duration::from_secs(600))
        .unwrap();
    assert_eq!(r, PurgeReport::default());
    assert!(fs::symlink_metadata(&link).is_ok());
    assert_eq!(fs::read(&target).unwrap(), b"keep");
    let scan = q.scan().unwrap();
    assert_eq!(scan.bad.len(), 1);
    assert_eq!(scan.bad[0].path, link);
    assert_eq!(scan.bad[0].defect, Defect::NotAFile(Kind::Symlink));
}

/// What scan reports in a dirq queue, and set_aside moving each as itself.
#[test]
fn scan_reports_each_bad_entry_and_set_aside_moves_it_as_itself() {
    let d = tempfile::tempdir().unwrap();
    let q = Queue::create(&d.path().join("outgoing"), Layout::Dirq).unwrap();
    let good = q.add(b"good").unwrap();
    let dir = q.root().join(good.as_str().split_once('/').unwrap().0);
    std::os::unix::fs::symlink("/etc/passwd", dir.join("00000000000001")).unwrap();
    fs::create_dir(dir.join("00000000000002.lck")).unwrap();
    fs::write(q.root().join("0000000a"), b"file as dir").unwrap();
    fs::write(dir.join("README"), b"foreign").unwrap();
    fs::write(dir.join("00000000000003.tmp"), b"an add in progress").unwrap();
    let scan = q.scan().unwrap();
    assert_eq!(scan.elements, vec![good.clone()]);
    let got: Vec<(PathBuf, Defect)> = scan
        .bad
        .iter()
        .map(|b| (b.path.clone(), b.defect.clone()))
        .collect();
    let mut want = vec![
        (dir.join("00000000000001"), Defect::NotAFile(Kind::Symlink)),
        (dir.join("00000000000002.lck"), Defect::NotAFile(Kind::Dir)),
        (q.root().join("0000000a"), Defect::NotADirectory(Kind::File)),
        (
            dir.join("README"),
            Defect::ForeignName {
                expected: "dirq elements are named with 14 lowercase hex digits, plus .tmp or .lck for temporary files and locks",
            },
        ),
    ];
    want.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(got, want);
    for b in &scan.bad {
        let SetAside::Moved(to) = q.set_aside(b).unwrap() else {
            panic!("{b:?} not moved");
        };
        assert!(fs::symlink_metadata(&b.path).is_err());
        assert_eq!(to.parent().unwrap(), q.reject_dir());
    }
    let link = q.reject_dir().join("00000000000001");
    assert_eq!(fs::read_link(&link).unwrap(), Path::new("/etc/passwd"));
    let reason = fs::read_to_string(q.reject_dir().join("00000000000001.reason")).unwrap();
    assert!(reason.contains("a symbolic link"), "{reason}");
    assert!(q.scan().unwrap().bad.is_empty());
    assert_eq!(q.elements().unwrap(), vec![good]);
}

/// Reading is capped: limit + 1 bytes at most; a FIFO is refused at once.
#[test]
fn get_reads_at_most_the_limit_plus_one_and_never_a_fifo() {
    let d = tempfile::tempdir().unwrap();
    let q = Queue::create(d.path(), Layout::Directory).unwrap();
    let id = q.add(&[b'a'; 100]).unwrap();
    assert_eq!(q.get(&id, 10).unwrap().len(), 11);
    assert_eq!(q.get(&id, 100).unwrap().len(), 100);
    let fifo = d.path().join("fifo");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    crate::sys::mkfifo(&c, 0o600).unwrap();
    let e = q
        .get(&ElementId("fifo".into()), 10)
        .unwrap_err()
        .to_string();
    assert!(e.contains("a FIFO, not a regular file"), "{e}");
}

/// The reject directory as a symlink is refused, and the error names it.
#[test]
fn reject_refuses_a_symlinked_reject_directory() {
    let d = tempfile::tempdir().unwrap();
    let elsewhere = d.path().join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    let q = Queue::create(&d.path().join("outgoing"), Layout::Dirq).unwrap();
    std::os::unix::fs::symlink(&elsewhere, q.reject_dir()).unwrap();
    let a = q.add(b"bad").unwrap();
    assert!(q.lock(&a).unwrap());
    let e = q.reject(&a, "why").unwrap_err().to_string();
    let want = format!(
        "cannot open the reject directory {}",
        q.reject_dir().display()
    );
    assert!(e.starts_with(&want), "{e}");
    assert!(fs::read_dir(&elsewhere).unwrap().next().is_none());
}

/// A dry run's read: no lock taken, a lock of another process seen, a
/// vanished element `None`, nothing in the queue changed.
#[test]
fn peek_reads_without_locking() {
    for layout in [Layout::Dirq, Layout::Directory] {
        let d = tempfile::tempdir().unwrap();
        let q = Queue::create(&d.path().join("q"), layout).unwrap();
        let id = q.add(b"hello").unwrap();
        let other = Queue::open(q.root(), layout).unwrap();
        assert!(!q.is_locked(&id).unwrap());
        assert_eq!(q.peek(&id, 100).unwrap().as_deref(), Some(&b"hello"[..]));
        assert!(!q.is_locked(&id).unwrap(), "{layout}: peek locked it");
        assert!(other.lock(&id).unwrap());
        assert_eq!(q.is_locked(&id).unwrap(), layout == Layout::Dirq);
        assert_eq!(q.peek(&id, 3).unwrap().map(|b| b.len()), Some(4));
        other.remove(&id).unwrap();
        assert_eq!(q.peek(&id, 100).unwrap(), None);
    }
}

#[test]
fn a_scan_of_many_directories_keeps_dirqs_order_and_counts_everything() {
    // Enough intermediate directories for the listing to use threads.
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("q");
    let mut want = Vec::new();
    for i in 0..300u64 {
        let t = 1_796_212_800 - i * 60;
        let dir = format!("{:08x}", t);
        fs::create_dir_all(root.join(&dir)).unwrap();
        for n in 0..3u64 {
            let name = format!("{:08x}{:05x}{:01x}", t + n, 0, 1);
            fs::write(root.join(&dir).join(&name), b"m").unwrap();
            want.push(format!("{dir}/{name}"));
        }
        if i % 100 == 0 {
            fs::write(root.join(&dir).join("0000000000000a.tmp"), b"t").unwrap();
            let lock = format!("{:08x}{:05x}{:01x}.lck", t, 0, 1);
            fs::hard_link(
                root.join(&dir).join(&lock[..14]),
                root.join(&dir).join(lock),
            )
            .unwrap();
            fs::write(root.join(&dir).join("stray"), b"x").unwrap();
        }
    }
    want.sort();
    let q = Queue::open(&root, Layout::Dirq).unwrap();
    let scan = q.scan().unwrap();
    let got: Vec<String> = scan.elements.iter().map(ToString::to_string).collect();
    assert_eq!(got, want);
    assert_eq!(scan.temporaries, 3);
    assert_eq!(scan.locked.len(), 3);
    assert_eq!(scan.bad.len(), 3);
    let paths: Vec<&Path> = scan.bad.iter().map(|b| b.path.as_path()).collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted);
    // The first element (the oldest) is named after the earliest add.
    let first = UNIX_EPOCH + Duration::from_secs(1_796_212_800 - 299 * 60);
    assert_eq!(scan.first_added, Some(first));
    let inv = q.inventory(10).unwrap();
    assert_eq!(inv.messages, 900);
    assert_eq!(inv.locks.len(), 3);
    assert!(inv.locks.iter().all(|(_, t)| t.is_some()));
    assert_eq!(inv.rejected.count, 0);
}
