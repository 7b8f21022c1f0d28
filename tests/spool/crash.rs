//! Crash safety: a child process loops "add messages, write lastrun" and
//! reports each call only after it returned; we SIGKILL it at random instants,
//! hundreds of times, and check after every kill that the queue never holds a
//! partial or empty element, every reported element is there, and the lastrun
//! file always parses and never moves backward.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::time::Duration;

use cloud_accounting::lastrun;
use cloud_accounting::spool::{Layout, Queue};
use cloud_accounting::time::Timestamp;

use crate::support::spool::{STARTED, child_cmd, child_mode, random_u32, started, tagged_lines};

const KILLS: usize = 300;
const PROJECT: &str = "crash-project";
const BASE: i64 = 1_700_000_000;

/// Message `i`: a header naming `i`, then filler up to a size that varies with
/// `i` (up to ~64 KiB, so kills land inside writes too), then an end marker.
fn body(i: u64) -> Vec<u8> {
    let mut b = format!("APEL-cloud-message: v0.4\nSeq: {i}\n").into_bytes();
    let filler = (i * 7919 % 64) as usize * 1024;
    b.extend(std::iter::repeat_n(b'x', filler));
    b.extend(format!("\nEnd: {i}\n").as_bytes());
    b
}

fn seq_of(content: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(content).ok()?;
    text.lines().nth(1)?.strip_prefix("Seq: ")?.parse().ok()
}

/// The child: continue from the lastrun, forever (until killed). Rounds
/// alternate one `Queue::add` and a `Batch` of three messages; each round
/// then writes the lastrun past its messages.
fn run_child(dir: &Path) {
    let spool = dir.join("outgoing");
    let q = Queue::create(&spool, Layout::Dirq).unwrap();
    let mut i = lastrun::read(dir, PROJECT)
        .unwrap()
        .map_or(0, |t| (t.unix_seconds() - BASE) as u64);
    let mut out = std::io::stdout().lock();
    for round in 0u64.. {
        let ids = if round % 2 == 0 {
            vec![q.add(&body(i)).unwrap()]
        } else {
            let mut batch = q.batch();
            for k in 0..3 {
                batch.add(&body(i + k)).unwrap();
            }
            batch.commit().unwrap()
        };
        for id in &ids {
            writeln!(out, "ADDED {id} {i}").unwrap();
            i += 1;
        }
        out.flush().unwrap();
        let t = Timestamp::from_unix(BASE + i as i64);
        lastrun::write(dir, PROJECT, t).unwrap();
        writeln!(out, "LASTRUN {}", t.unix_seconds()).unwrap();
        out.flush().unwrap();
    }
}

#[test]
#[ignore = "a child process entry point: its parent test runs it with --ignored"]
fn crash_child() {
    if child_mode().as_deref() == Some("crash") {
        started();
        run_child(Path::new(&std::env::var("CRASH_DIR").unwrap()));
    }
}

#[test]
fn sigkill_at_random_instants_never_leaves_a_partial_element_or_lastrun() {
    // A SIGKILL tests what a crashed process leaves, not what a power loss
    // does, and tmpfs keeps the same atomicity rules (link, rename) while its
    // fsync returns at once: a kill on a busy disk would wait out the fsync.
    let shm = Path::new("/dev/shm");
    let d = if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let spool = d.path().join("outgoing");
    let mut reported: HashSet<String> = HashSet::new();
    let mut last_lastrun = i64::MIN;
    let mut kills = 0;
    let mut mid_run_kills = 0;
    let mut checked = 0;
    while kills < KILLS {
        let mut child = child_cmd(module_path!(), "crash_child", "crash")
            .env("CRASH_DIR", d.path())
            .spawn()
            .unwrap();
        // The clock starts when the child reaches its entry point, not at
        // spawn: the start-up of the test binary (one for the whole suite,
        // tens of ms) touches no queue.
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        while line.trim_end() != STARTED {
            line.clear();
            let n = stdout.read_line(&mut line).unwrap();
            assert!(n > 0, "the child exited without reaching crash_child");
        }
        // 0-30 ms: some kills land during start-up, most inside the loop.
        std::thread::sleep(Duration::from_micros(u64::from(random_u32() % 30_000)));
        child.kill().unwrap(); // SIGKILL
        let mut out = String::new();
        stdout.read_to_string(&mut out).unwrap();
        child.wait().unwrap();
        kills += 1;

        let added = tagged_lines(&out, "ADDED");
        if !added.is_empty() {
            mid_run_kills += 1;
        }
        for line in &added {
            reported.insert(line.split(' ').next().unwrap().to_string());
        }
        for line in tagged_lines(&out, "LASTRUN") {
            let v: i64 = line.parse().unwrap();
            assert!(
                v > last_lastrun,
                "reported lastrun went backward: {v} after {last_lastrun}"
            );
            last_lastrun = v;
        }

        // The lastrun file parses and is at least the last reported value.
        if let Some(t) = lastrun::read(d.path(), PROJECT).unwrap() {
            assert!(
                t.unix_seconds() >= last_lastrun,
                "lastrun file {} behind the reported {last_lastrun}",
                t.unix_seconds()
            );
            last_lastrun = t.unix_seconds();
        }

        if !spool.exists() {
            continue;
        }
        let q = Queue::open(&spool, Layout::Dirq).unwrap();
        let elements = q.elements().unwrap();
        let present: HashSet<String> = elements.iter().map(|e| e.to_string()).collect();
        for id in &reported {
            assert!(present.contains(id), "reported element {id} is missing");
        }
        for id in &elements {
            let content = std::fs::read(spool.join(id.as_str())).unwrap();
            let i = seq_of(&content).unwrap_or_else(|| {
                panic!("element {id} is partial or empty ({} bytes)", content.len())
            });
            assert!(
                content == body(i),
                "element {id} is not exactly message {i}"
            );
            // Checked: consume it, as a sender would, to bound the space used.
            assert!(q.lock(id).unwrap());
            q.remove(id).unwrap();
            checked += 1;
        }
        reported.clear();
    }
    assert!(kills >= KILLS);
    assert!(
        mid_run_kills * 2 >= kills,
        "only {mid_run_kills} of {kills} kills hit a running add loop"
    );
    assert!(checked > 0);
    // Leftover temp files are purge's business, never elements.
    let q = Queue::open(&spool, Layout::Dirq).unwrap();
    assert!(
        q.elements()
            .unwrap()
            .iter()
            .all(|e| !e.as_str().ends_with(".tmp"))
    );
    eprintln!(
        "{kills} kills ({mid_run_kills} mid-run), {checked} elements checked, lastrun {last_lastrun}"
    );
}
