//! The run lock across processes: two of ours, and ours against cASO's own
//! lock (oslo.concurrency lockutils / fasteners, the same POSIX record lock on
//! `<lock_path>/caso_should_not_run_in_parallel`).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use cloud_accounting::runlock::{LOCK_NAME, RunLock, RunLockError};

use crate::support::spool::{child_cmd, child_mode, oracle, oracle_cmd};

/// The child holder: take the lock, say so, hold it until stdin closes.
#[test]
#[ignore = "a child process entry point: its parent test runs it with --ignored"]
fn hold_lock_child() {
    if child_mode().as_deref() != Some("hold") {
        return;
    }
    let dir = std::env::var("LOCK_DIR").unwrap();
    let _lock = RunLock::acquire(Path::new(&dir), Duration::from_secs(30)).unwrap();
    println!("LOCKED {}", std::process::id());
    std::io::stdout().flush().unwrap();
    let mut rest = String::new();
    let _ = std::io::stdin().read_line(&mut rest);
}

/// Waits for the holder's "locked" line.
fn await_line(child: &mut Child, marker: &str) -> String {
    let out = child.stdout.as_mut().unwrap();
    let mut reader = BufReader::new(out);
    loop {
        let mut line = String::new();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "holder exited early"
        );
        if line.contains(marker) {
            return line;
        }
    }
}

fn release(mut child: Child) {
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
}

fn timeout_holder(e: RunLockError) -> Option<u32> {
    match e {
        RunLockError::Timeout { holder, .. } => holder,
        other => panic!("expected a timeout, got {other}"),
    }
}

#[test]
fn a_second_process_waits_then_names_the_holder() {
    let d = tempfile::tempdir().unwrap();
    let mut holder = child_cmd(module_path!(), "hold_lock_child", "hold")
        .env("LOCK_DIR", d.path())
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    await_line(&mut holder, "LOCKED");
    let e = RunLock::acquire(d.path(), Duration::from_millis(300)).unwrap_err();
    let msg = e.to_string();
    assert_eq!(timeout_holder(e), Some(holder.id()));
    assert!(msg.contains(&format!("(pid {})", holder.id())), "{msg}");
    assert!(msg.contains(LOCK_NAME), "{msg}");
    assert_eq!(RunLock::holder(d.path()).unwrap(), Some(holder.id()));
    // Released while we wait: we get it.
    let pid = holder.id();
    let waiter = std::thread::spawn({
        let dir = d.path().to_path_buf();
        move || RunLock::acquire(&dir, Duration::from_secs(60))
    });
    std::thread::sleep(Duration::from_millis(100));
    release(holder);
    let lock = waiter.join().unwrap().unwrap();
    assert_ne!(RunLock::holder(d.path()).unwrap(), Some(pid));
    drop(lock);
}

#[test]
fn caso_holding_its_lock_keeps_us_out_and_the_reverse() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().to_str().unwrap();
    let mut caso = oracle_cmd(&["hold-lock", dir])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    await_line(&mut caso, "\"locked\": true");
    assert!(d.path().join(LOCK_NAME).is_file(), "same lock file as cASO");
    let e = RunLock::acquire(d.path(), Duration::from_millis(200)).unwrap_err();
    assert_eq!(timeout_holder(e), Some(caso.id()));
    release(caso);

    let ours = RunLock::acquire(d.path(), Duration::from_secs(10)).unwrap();
    assert_eq!(oracle(&["try-lock", dir])[0]["acquired"], false);
    drop(ours);
    assert_eq!(oracle(&["try-lock", dir])[0]["acquired"], true);
}
