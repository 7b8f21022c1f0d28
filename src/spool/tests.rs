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
