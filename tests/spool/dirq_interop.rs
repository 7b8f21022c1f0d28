//! Our dirq layout against the real Python dirq 1.8, both ways: what one side
//! adds the other iterates, locks, reads and removes; locks taken on one side
//! hold on the other; purge on either side leaves the other's view consistent.

use std::fs::{self, File, FileTimes};
use std::path::Path;
use std::time::{Duration, SystemTime};

use cloud_accounting::spool::{ElementId, Layout, Queue};

use crate::support::spool::oracle;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn age(path: &Path, secs: u64) {
    let t = SystemTime::now() - Duration::from_secs(secs);
    File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_times(FileTimes::new().set_modified(t).set_accessed(t))
        .unwrap();
}

fn python_names(root: &Path) -> Vec<String> {
    let v = oracle(&["list", s(root)]);
    v[0]["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect()
}

fn ids(q: &Queue) -> Vec<String> {
    q.elements()
        .unwrap()
        .iter()
        .map(|e| e.to_string())
        .collect()
}

#[test]
fn what_we_add_python_iterates_locks_reads_and_removes() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("outgoing");
    let q = Queue::create(&root, Layout::Dirq).unwrap();
    let mut added = Vec::new();
    let mut batch = q.batch();
    let bodies: Vec<String> = (0..30)
        .map(|i| format!("APEL-cloud-message: v0.4\nVMUUID: vm-{i}\n"))
        .collect();
    for body in &bodies {
        batch.add(body.as_bytes()).unwrap();
    }
    added.extend(batch.commit().unwrap().into_iter().zip(bodies));
    let single = q.add(b"last\n").unwrap();
    added.push((single, "last\n".to_string()));

    // Python sees them all, in our send order.
    let want: Vec<String> = added.iter().map(|(id, _)| id.to_string()).collect();
    assert_eq!(python_names(&root), want);
    assert_eq!(oracle(&["count", s(&root)])[0]["count"], 31);

    // A lock we hold keeps Python away from that element.
    let held = &added[0].0;
    assert!(q.lock(held).unwrap());
    let consumed = oracle(&["consume", s(&root)]);
    let got: Vec<(String, String)> = consumed
        .iter()
        .map(|v| {
            (
                v["name"].as_str().unwrap().to_string(),
                v["body"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want_rest: Vec<(String, String)> = added[1..]
        .iter()
        .map(|(id, b)| (id.to_string(), b.clone()))
        .collect();
    assert_eq!(got, want_rest);
    assert_eq!(ids(&q), vec![held.to_string()]);
    q.remove(held).unwrap();
    assert_eq!(q.count().unwrap(), 0);
    assert_eq!(oracle(&["count", s(&root)])[0]["count"], 0);
}

#[test]
fn what_python_adds_we_read_lock_and_remove() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("q");
    let names: Vec<String> = oracle(&["add", s(&root), "25", "py"])
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_string())
        .collect();
    let q = Queue::open(&root, Layout::Dirq).unwrap();
    assert_eq!(ids(&q), names);
    assert_eq!(q.count().unwrap(), 25);

    // Python holds one; we must not get it.
    let r = oracle(&["lock", s(&root), &names[3]]);
    assert_eq!(r[0]["locked"][0], true);
    let mut got = Vec::new();
    for id in q.elements().unwrap() {
        if !q.lock(&id).unwrap() {
            continue;
        }
        got.push((
            id.to_string(),
            String::from_utf8(q.get(&id, 1_000_000).unwrap()).unwrap(),
        ));
        q.remove(&id).unwrap();
    }
    let want: Vec<(String, String)> = names
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3)
        .map(|(i, n)| (n.clone(), format!("py {i}\n")))
        .collect();
    assert_eq!(got, want);
    // Python still holds and reads its element, then removes it.
    assert_eq!(oracle(&["get", s(&root), &names[3]])[0]["body"], "py 3\n");
    oracle(&["remove", s(&root), &names[3]]);
    assert_eq!(q.count().unwrap(), 0);
}

#[test]
fn a_lock_python_holds_is_held_for_us_and_the_reverse() {
    let d = tempfile::tempdir().unwrap();
    let q = Queue::create(d.path(), Layout::Dirq).unwrap();
    let a = q.add(b"a").unwrap();
    let b = q.add(b"b").unwrap();
    assert!(q.lock(&a).unwrap());
    let r = oracle(&["lock", s(d.path()), a.as_str(), b.as_str()]);
    assert_eq!(r[0]["locked"], serde_json::json!([false, true]));
    assert!(!q.lock(&b).unwrap());
    // Python unlocks b: ours to take.
    oracle(&["unlock", s(d.path()), b.as_str()]);
    assert!(q.lock(&b).unwrap());
    assert_eq!(q.get(&b, 1_000_000).unwrap(), b"b");
}

/// Builds a queue with: an old empty directory, an old directory holding a
/// stale lock, a stale and a fresh temp file, and a fresh lock. Returns the
/// stale-locked and fresh-locked ids.
fn messy_queue(root: &Path, lock_with_python: bool) -> (ElementId, ElementId) {
    let q = Queue::create(root, Layout::Dirq).unwrap();
    fs::create_dir(root.join("00000010")).unwrap(); // old, empty
    fs::create_dir(root.join("00000020")).unwrap();
    fs::write(root.join("00000020/00000020000001"), b"stale locked").unwrap();
    fs::write(root.join("00000020/00000020000002.tmp"), b"crashed add").unwrap();
    age(&root.join("00000020/00000020000002.tmp"), 400);
    let stale = q
        .elements()
        .unwrap()
        .into_iter()
        .find(|e| e.as_str() == "00000020/00000020000001")
        .unwrap();
    let fresh = q.add(b"fresh locked").unwrap();
    let fresh_dir = fresh.as_str().split_once('/').unwrap().0.to_string();
    fs::write(root.join(&fresh_dir).join("00000030000001.tmp"), b"adding").unwrap();
    if lock_with_python {
        let r = oracle(&["lock", s(root), stale.as_str(), fresh.as_str()]);
        assert_eq!(r[0]["locked"], serde_json::json!([true, true]));
    } else {
        assert!(q.lock(&stale).unwrap());
        assert!(q.lock(&fresh).unwrap());
    }
    age(&root.join(stale.as_str()), 700); // the lock's age is the element's mtime
    (stale, fresh)
}

fn check_purged(root: &Path, stale: &ElementId, fresh: &ElementId) {
    let q = Queue::open(root, Layout::Dirq).unwrap();
    let fresh_dir = fresh.as_str().split_once('/').unwrap().0;
    // Old empty directory gone, the stale temp file gone, the fresh one kept.
    let mut dirs: Vec<String> = fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    dirs.sort();
    assert_eq!(dirs, vec!["00000020".to_string(), fresh_dir.to_string()]);
    assert_eq!(
        fs::read_dir(root.join("00000020")).unwrap().count(),
        1,
        "only the element: stale .lck and .tmp removed"
    );
    assert!(root.join(fresh_dir).join("00000030000001.tmp").exists());
    // Both sides agree on the elements.
    assert_eq!(ids(&q), python_names(root));
    assert_eq!(ids(&q), vec![stale.to_string(), fresh.to_string()]);
    // The stale lock is gone for both sides, the fresh one holds for both.
    let r = oracle(&["lock", s(root), fresh.as_str()]);
    assert_eq!(r[0]["locked"][0], false);
    assert!(!q.lock(fresh).unwrap());
    assert!(q.lock(stale).unwrap());
    assert_eq!(q.get(stale, 1_000_000).unwrap(), b"stale locked");
}

#[test]
fn python_purge_leaves_our_view_consistent() {
    let d = tempfile::tempdir().unwrap();
    let (stale, fresh) = messy_queue(d.path(), false);
    oracle(&["purge", s(d.path()), "300", "600"]);
    check_purged(d.path(), &stale, &fresh);
}

#[test]
fn our_purge_leaves_pythons_view_consistent() {
    let d = tempfile::tempdir().unwrap();
    let (stale, fresh) = messy_queue(d.path(), true);
    let q = Queue::open(d.path(), Layout::Dirq).unwrap();
    let r = q
        .purge(Duration::from_secs(300), Duration::from_secs(600))
        .unwrap();
    assert_eq!((r.temp_removed, r.locks_removed, r.dirs_removed), (1, 1, 1));
    check_purged(d.path(), &stale, &fresh);
    // Python takes the element whose stale lock we purged.
    q.unlock(&stale).unwrap();
    let r = oracle(&["lock", s(d.path()), stale.as_str()]);
    assert_eq!(r[0]["locked"][0], true);
}
