//! Two processes consuming one 1,000-element dirq at once (iterate, lock, get,
//! remove): every element goes to exactly one of them. Once with two of ours,
//! once with ours against Python dirq.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::Path;

use cloud_accounting::spool::{Layout, Queue};

use crate::support::spool::{
    child_cmd, child_mode, oracle_cmd, started, tagged_lines, wait_child, wait_output,
};

const ELEMENTS: usize = 1000;

/// The child consumer: what the sender does, printing what it got.
#[test]
#[ignore = "a child process entry point: its parent test runs it with --ignored"]
fn consume_child() {
    if child_mode().as_deref() != Some("consume") {
        return;
    }
    started();
    let q = Queue::open(Path::new(&std::env::var("QUEUE").unwrap()), Layout::Dirq).unwrap();
    let mut out = std::io::stdout().lock();
    for id in q.elements().unwrap() {
        if !q.lock(&id).unwrap() {
            continue;
        }
        let body = String::from_utf8(q.get(&id, 1_000_000).unwrap()).unwrap();
        q.remove(&id).unwrap();
        writeln!(out, "GOT {id} {}", body.trim_end()).unwrap();
    }
    out.flush().unwrap();
}

fn fill(root: &Path) -> BTreeMap<String, String> {
    let q = Queue::create(root, Layout::Dirq).unwrap();
    let mut batch = q.batch();
    let bodies: Vec<String> = (0..ELEMENTS).map(|i| format!("message {i}")).collect();
    for body in &bodies {
        batch.add(body.as_bytes()).unwrap();
    }
    let ids = batch.commit().unwrap();
    ids.iter().map(|id| id.to_string()).zip(bodies).collect()
}

fn rust_consumer(root: &Path) -> std::process::Child {
    child_cmd(module_path!(), "consume_child", "consume")
        .env("QUEUE", root)
        .spawn()
        .unwrap()
}

fn parse_rust(out: &str) -> Vec<(String, String)> {
    tagged_lines(out, "GOT")
        .into_iter()
        .map(|l| {
            let (id, body) = l.split_once(' ').unwrap();
            (id.to_string(), body.to_string())
        })
        .collect()
}

fn parse_python(out: &str) -> Vec<(String, String)> {
    out.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["name"].as_str().unwrap().to_string(),
                v["body"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Disjoint, complete, and each element read with its own content.
fn check(want: &BTreeMap<String, String>, a: &[(String, String)], b: &[(String, String)]) {
    let ids_a: HashSet<&str> = a.iter().map(|(id, _)| id.as_str()).collect();
    let ids_b: HashSet<&str> = b.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids_a.len(), a.len(), "a consumer got an element twice");
    assert_eq!(ids_b.len(), b.len(), "a consumer got an element twice");
    let both: Vec<_> = ids_a.intersection(&ids_b).collect();
    assert!(both.is_empty(), "handed to both consumers: {both:?}");
    let mut all: BTreeMap<String, String> = BTreeMap::new();
    all.extend(a.iter().cloned());
    all.extend(b.iter().cloned());
    assert_eq!(&all, want);
    eprintln!("split: {} / {}", a.len(), b.len());
}

#[test]
fn two_of_our_processes_share_a_queue_without_double_handing() {
    let d = tempfile::tempdir().unwrap();
    let want = fill(d.path());
    let (c1, c2) = (rust_consumer(d.path()), rust_consumer(d.path()));
    let (o1, o2) = (wait_child(c1), wait_child(c2));
    check(&want, &parse_rust(&o1), &parse_rust(&o2));
    assert_eq!(
        Queue::open(d.path(), Layout::Dirq)
            .unwrap()
            .count()
            .unwrap(),
        0
    );
}

#[test]
fn ours_and_python_dirq_share_a_queue_without_double_handing() {
    let d = tempfile::tempdir().unwrap();
    let want = fill(d.path());
    let py = oracle_cmd(&["consume", d.path().to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let ours = rust_consumer(d.path());
    let (o_py, o_ours) = (wait_output(py), wait_child(ours));
    check(&want, &parse_rust(&o_ours), &parse_python(&o_py));
    assert_eq!(
        Queue::open(d.path(), Layout::Dirq)
            .unwrap()
            .count()
            .unwrap(),
        0
    );
}
