//! Daemon mode (`--interval`) of the real binaries, stopped by SIGTERM in
//! the middle of a run: exit 0, nothing partial, nothing lost, lastruns
//! consistent with the spool.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use cloud_accounting::lastrun;
use cloud_accounting::spool::{Layout, Queue};

use crate::support::ams::{AmsDouble, AmsTestPki};
use crate::support::sim;
use crate::support::sim::Sim;

pub(super) fn sigterm(child: &Child) {
    // SAFETY: kill(2) on our own child's pid.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0, "kill -TERM {}", child.id());
}

/// Waits for the child, killing it (and failing) after `limit`.
pub(super) fn wait(child: &mut Child, limit: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("the program did not exit within {limit:?} of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub(super) fn read_log(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_default()
}

/// Every element of the dirq spool at `path`, whole (the text of each).
fn spool_messages(path: &Path) -> Vec<String> {
    let Ok(q) = Queue::open(path, Layout::Dirq) else {
        return Vec::new();
    };
    q.elements()
        .unwrap()
        .iter()
        .map(|id| {
            assert!(q.lock(id).unwrap(), "element {id} is locked");
            let text = String::from_utf8(q.get(id, 1_000_000).unwrap()).unwrap();
            q.unlock(id).unwrap();
            assert_whole(&id.to_string(), &text);
            text
        })
        .collect()
}

/// A message of one of the four APEL formats, complete.
fn assert_whole(id: &str, text: &str) {
    if let Some(body) = text.strip_prefix("APEL-cloud-message: v0.4\n") {
        assert!(text.ends_with('\n'), "{id}: cloud message cut short");
        for rec in body.split("%%\n") {
            for field in ["VMUUID: ", "SiteName: ", "LocalGroupId: ", "Status: "] {
                assert!(rec.contains(field), "{id}: a cloud record without {field}");
            }
        }
    } else if text.starts_with('<') {
        assert!(
            text.trim_end().ends_with("</sr:StorageUsageRecords>"),
            "{id}: StAR message cut short"
        );
    } else {
        let v: serde_json::Value = serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("{id}: not a whole JSON message: {e}"));
        assert!(v["UsageRecords"].as_array().is_some_and(|r| !r.is_empty()));
    }
}

/// Messages per project (each message belongs to one project and names it).
fn per_project(messages: &[String], projects: &[String]) -> BTreeMap<String, usize> {
    projects
        .iter()
        .map(|p| {
            let n = messages.iter().filter(|m| m.contains(p.as_str())).count();
            (p.clone(), n)
        })
        .collect()
}

struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn new(sim: &Sim, name: &str, concurrency: usize) -> Site {
        let dir = tempfile::Builder::new().prefix(name).tempdir().unwrap();
        let d = dir.path().display();
        std::fs::write(
            dir.path().join("caso.conf"),
            format!(
                "[DEFAULT]\nsite_name = DAEMON-TEST\nspooldir = {d}/state\nlock_path = {d}/state\n\
                 mapping_file = {d}/voms.json\nmessengers = ssm\nconcurrency = {concurrency}\n\
                 [ssm]\noutput_path = {d}/outgoing\n\
                 [keystone_auth]\nauth_type = password\nauth_url = {}\nusername = admin\n\
                 password = secret\nuser_domain_name = Default\nproject_domain_name = Default\n",
                sim.auth_url()
            ),
        )
        .unwrap();
        Site { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn extract(&self, extra: &[&str], log: &str) -> Child {
        Command::new(env!("CARGO_BIN_EXE_caso-extract"))
            .arg("--config-file")
            .arg(self.path("caso.conf"))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.path(log)).unwrap())
            .spawn()
            .unwrap()
    }

    fn lastrun(&self, project: &str) -> Option<cloud_accounting::time::Timestamp> {
        lastrun::read(&self.path("state"), project).unwrap()
    }

    fn messages(&self) -> Vec<String> {
        spool_messages(&self.path("outgoing"))
    }
}

/// caso-extract --interval 2s, SIGTERM while it is extracting the third of
/// ten projects (one at a time, 100 ms per API request): it exits 0; every
/// project either was finished (lastrun advanced, all its messages spooled)
/// or not started (lastrun absent, nothing spooled); a cron run then
/// extracts exactly the rest.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_mid_extraction_finishes_the_project_in_progress() {
    let sim = Sim::start(&["--scenario", "demo", "--projects", "10", "--servers", "5"]);
    let manifest = sim.manifest().await;
    let projects = sim::accounted_project_ids(&manifest);
    assert_eq!(projects.len(), 10);
    let voms = sim.get_json("/_sim/voms.json").await;

    // What a complete run spools, per project.
    let reference = Site::new(&sim, "reference", 8);
    std::fs::write(reference.path("voms.json"), voms.to_string()).unwrap();
    let status = reference.extract(&[], "extract.log").wait().unwrap();
    assert!(
        status.success(),
        "{}",
        read_log(reference.dir.path(), "extract.log")
    );
    let want = per_project(&reference.messages(), &projects);
    assert!(want.values().all(|n| *n > 0), "{want:?}");

    let slow = Sim::start(&[
        "--scenario",
        "demo",
        "--projects",
        "10",
        "--servers",
        "5",
        "--latency",
        "100ms",
    ]);
    let site = Site::new(&slow, "daemon", 1);
    std::fs::write(site.path("voms.json"), voms.to_string()).unwrap();
    let mut daemon = site.extract(&["--interval", "2s"], "daemon.log");
    let start = Instant::now();
    loop {
        let stats = slow.stats().await;
        if stats["by_endpoint"]["compute GET servers/detail"].as_u64() >= Some(3) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the daemon did not start extracting: {}",
            read_log(site.dir.path(), "daemon.log")
        );
        assert!(daemon.try_wait().unwrap().is_none(), "the daemon exited");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sigterm(&daemon);
    let status = wait(&mut daemon, Duration::from_secs(60));
    let log = read_log(site.dir.path(), "daemon.log");
    assert!(status.success(), "exit {status}: {log}");
    assert!(
        log.contains("SIGTERM: finishing the work in progress"),
        "{log}"
    );
    assert!(log.contains("stopped on request"), "{log}");

    let got = per_project(&site.messages(), &projects);
    let (mut finished, mut not_started) = (0, 0);
    for p in &projects {
        match site.lastrun(p) {
            Some(_) => {
                assert_eq!(
                    got[p], want[p],
                    "project {p} has a lastrun but not all its messages"
                );
                finished += 1;
            }
            None => {
                assert_eq!(got[p], 0, "project {p} has messages but no lastrun");
                not_started += 1;
            }
        }
    }
    assert!(
        not_started > 0,
        "SIGTERM came too late to leave a project unstarted: {log}"
    );
    assert!(
        log.contains(&format!(
            "stopped on request: {not_started} project(s) not started"
        )),
        "{log}"
    );
    eprintln!("at SIGTERM: {finished} projects finished, {not_started} not started");

    // A cron run takes over: the projects not started get their messages,
    // once.
    let before: BTreeMap<String, _> = projects
        .iter()
        .map(|p| (p.clone(), site.lastrun(p)))
        .collect();
    let status = site.extract(&[], "cron.log").wait().unwrap();
    assert!(
        status.success(),
        "{}",
        read_log(site.dir.path(), "cron.log")
    );
    let after = per_project(&site.messages(), &projects);
    for p in &projects {
        let lastrun = site
            .lastrun(p)
            .unwrap_or_else(|| panic!("{p}: no lastrun after the cron run"));
        match before[p] {
            None => assert_eq!(after[p], want[p], "project {p}"),
            // Finished before SIGTERM: extracted again if time has moved on
            // since, skipped as up to date if the cron run started within
            // moments of the daemon's run; never moved back.
            Some(old) => {
                assert!(lastrun >= old, "project {p}: lastrun moved back");
                assert!(after[p] >= want[p], "project {p}");
            }
        }
    }
}

/// Between runs the daemon sleeps; SIGTERM ends the sleep at once (exit 0)
/// and an interval with --extract-from is refused (exit 2): it would
/// extract the same period again and again.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_while_sleeping_exits_0_and_fixed_periods_are_refused() {
    let sim = Sim::start(&["--scenario", "S"]);
    let site = Site::new(&sim, "sleeping", 8);
    let voms = sim.get_json("/_sim/voms.json").await;
    std::fs::write(site.path("voms.json"), voms.to_string()).unwrap();
    let mut daemon = site.extract(&["--interval", "1h"], "daemon.log");
    let start = Instant::now();
    while !read_log(site.dir.path(), "daemon.log").contains("run done, sleeping") {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{}",
            read_log(site.dir.path(), "daemon.log")
        );
        assert!(daemon.try_wait().unwrap().is_none(), "the daemon exited");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sigterm(&daemon);
    let status = wait(&mut daemon, Duration::from_secs(10));
    assert!(
        status.success(),
        "{}",
        read_log(site.dir.path(), "daemon.log")
    );
    assert!(!site.messages().is_empty());

    let out = site
        .extract(
            &["--interval", "1h", "--extract-from", "2026-01-01"],
            "refused.log",
        )
        .wait()
        .unwrap();
    let log = read_log(site.dir.path(), "refused.log");
    assert_eq!(out.code(), Some(2), "{log}");
    assert!(log.contains("unset extract_from (--extract-from)"), "{log}");
}

/// A sender site: the PKI's host certificate and capath, a dirq spool
/// of `n` messages and a sender.cfg for `double`, one message per AMS
/// request (SSM's): slow enough that a SIGTERM finds messages queued.
pub(super) fn sender_site(
    pki: &AmsTestPki,
    double: &AmsDouble,
    n: usize,
) -> (tempfile::TempDir, Queue) {
    let dir = tempfile::Builder::new().prefix("sender").tempdir().unwrap();
    let p = |f: &str| dir.path().join(f);
    let d = dir.path().display();
    std::fs::write(
        p("sender.cfg"),
        format!(
            "[sender]\nprotocol: AMS\nams_port: {}\nams_authn_port: {}\nams_concurrency: 2\n\
             ams_max_messages_per_request: 1\n\
             [broker]\nhost: 127.0.0.1\n\
             [certificates]\ncertificate: {}\nkey: {}\ncapath: {}\n\
             [messaging]\nams_project: accounting\ndestination: eu-egi-cloud-accounting\n\
             path: {d}/outgoing\npath_type: dirq\n\
             [logging]\nlevel: INFO\nconsole: true\n",
            double.ams_port,
            double.authn_port,
            pki.host.cert_path.display(),
            pki.host.key_path.display(),
            pki.grid.capath().display(),
        ),
    )
    .unwrap();
    let q = Queue::create(&p("outgoing"), Layout::Dirq).unwrap();
    for i in 0..n {
        let body = format!(
            "APEL-cloud-message: v0.4\nVMUUID: {i:08}-0000-4000-8000-000000000000\nSiteName: DAEMON-TEST\n"
        );
        q.add(body.as_bytes()).unwrap();
    }
    (dir, q)
}

pub(super) fn ssmsend(dir: &Path, extra: &[&str], log: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_ssmsend"))
        .arg("--config")
        .arg(dir.join("sender.cfg"))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(log)).unwrap())
        .spawn()
        .unwrap()
}

/// ssmsend --interval 2s against an AMS double that stalls every publish
/// for 300 ms, SIGTERM after a few messages: exit 0; every message is
/// either at the double (once, signature verified) or still queued, none
/// locked; a cron run then sends exactly the rest.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_mid_send_loses_and_duplicates_nothing() {
    const N: usize = 40;
    let pki = AmsTestPki::generate();
    let double = AmsDouble::start(&pki, &["--fault", "stall=300ms"]);
    let (dir, queue) = sender_site(&pki, &double, N);
    let mut daemon = ssmsend(dir.path(), &["--interval", "2s"], "daemon.log");
    let start = Instant::now();
    while double.stats().await["messages"].as_u64() < Some(4) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "ssmsend did not start sending: {}",
            read_log(dir.path(), "daemon.log")
        );
        assert!(
            daemon.try_wait().unwrap().is_none(),
            "ssmsend exited: {}",
            read_log(dir.path(), "daemon.log")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sigterm(&daemon);
    let status = wait(&mut daemon, Duration::from_secs(60));
    let log = read_log(dir.path(), "daemon.log");
    assert!(status.success(), "exit {status}: {log}");
    assert!(
        log.contains("SIGTERM: finishing the work in progress"),
        "{log}"
    );

    let stats = double.stats().await;
    let sent = stats["messages"].as_u64().unwrap() as usize;
    let queued = queue.count().unwrap();
    eprintln!("at SIGTERM: {sent} sent, {queued} still queued");
    assert_eq!(sent + queued, N, "lost messages: {stats}");
    assert!(
        queued > 0,
        "SIGTERM came too late to leave a message queued: {log}"
    );
    assert_eq!(stats["duplicates"], 0, "{stats}");
    assert_eq!(stats["signatures"]["all_verified"], true, "{stats}");
    for id in queue.elements().unwrap() {
        assert!(queue.lock(&id).unwrap(), "{id} was left locked");
        queue.unlock(&id).unwrap();
    }

    let status = ssmsend(dir.path(), &[], "cron.log").wait().unwrap();
    assert!(status.success(), "{}", read_log(dir.path(), "cron.log"));
    let stats = double.stats().await;
    assert_eq!(stats["messages"], N, "{stats}");
    assert_eq!(stats["distinct_empaids"], N, "{stats}");
    assert_eq!(stats["duplicates"], 0, "{stats}");
    assert_eq!(stats["signatures"]["all_verified"], true, "{stats}");
    assert_eq!(queue.count().unwrap(), 0);
}

/// The run lock is taken per run: while another run (here: this test) holds
/// it, a daemon waits for it without extracting, and SIGTERM ends the wait
/// (exit 0, nothing written); a cron run gives up after lock_timeout.
#[tokio::test(flavor = "multi_thread")]
async fn a_daemon_waits_for_the_run_lock_and_sigterm_ends_the_wait() {
    let sim = Sim::start(&["--scenario", "S"]);
    let site = Site::new(&sim, "locked", 8);
    let voms = sim.get_json("/_sim/voms.json").await;
    std::fs::write(site.path("voms.json"), voms.to_string()).unwrap();
    let held =
        cloud_accounting::runlock::RunLock::acquire(&site.path("state"), Duration::ZERO).unwrap();
    let mut daemon = site.extract(&["--interval", "1h"], "daemon.log");
    // Logged in to nothing yet: it is waiting for the lock.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(daemon.try_wait().unwrap().is_none(), "the daemon exited");
    assert_eq!(
        sim.stats().await["total"],
        0,
        "it extracted without the lock"
    );
    sigterm(&daemon);
    let status = wait(&mut daemon, Duration::from_secs(10));
    let log = read_log(site.dir.path(), "daemon.log");
    assert!(status.success(), "{log}");
    assert!(site.messages().is_empty());
    // It said what it waits for, and who holds it.
    assert_eq!(
        log.matches("waiting up to 30m for the run lock").count(),
        1,
        "{log}"
    );
    assert!(
        log.contains(&format!("held by pid {}", std::process::id())),
        "{log}"
    );

    // --lock-timeout is a flag too (it sets [DEFAULT] lock_timeout).
    let status = site
        .extract(&["--lock-timeout", "1s"], "flag.log")
        .wait()
        .unwrap();
    let log = read_log(site.dir.path(), "flag.log");
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains(&format!("(pid {})", std::process::id()))
            && log.contains("gave up after waiting 1s"),
        "{log}"
    );

    let conf = site.path("caso.conf");
    let text = std::fs::read_to_string(&conf).unwrap();
    std::fs::write(
        &conf,
        text.replace("[DEFAULT]\n", "[DEFAULT]\nlock_timeout = 1s\n"),
    )
    .unwrap();
    let status = site.extract(&[], "cron.log").wait().unwrap();
    let log = read_log(site.dir.path(), "cron.log");
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains("another extraction run holds the lock"),
        "{log}"
    );
    assert!(
        log.contains(&format!("(pid {})", std::process::id())),
        "{log}"
    );
    drop(held);
}

/// `--initial-delay` (docker-compose starts ssmsend 15 min after the
/// extractor): no run before the delay, SIGTERM during it exits 0 at once
/// with nothing sent; after it, the run sends everything. Without
/// `--interval` it is a usage error (exit 2).
#[tokio::test(flavor = "multi_thread")]
async fn an_initial_delay_holds_the_first_run_and_sigterm_ends_it() {
    let pki = AmsTestPki::generate();
    let double = AmsDouble::start(&pki, &[]);
    let (dir, queue) = sender_site(&pki, &double, 3);

    let status = ssmsend(dir.path(), &["--initial-delay", "1s"], "usage.log")
        .wait()
        .unwrap();
    let log = read_log(dir.path(), "usage.log");
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(log.contains("give --interval too"), "{log}");

    let mut daemon = ssmsend(
        dir.path(),
        &["--interval", "1h", "--initial-delay", "1h"],
        "delayed.log",
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(daemon.try_wait().unwrap().is_none(), "ssmsend exited");
    assert_eq!(
        double.stats().await["messages"],
        0,
        "it sent before the delay"
    );
    sigterm(&daemon);
    let start = Instant::now();
    let status = wait(&mut daemon, Duration::from_secs(5));
    let log = read_log(dir.path(), "delayed.log");
    assert!(status.success(), "exit {status}: {log}");
    assert!(start.elapsed() < Duration::from_secs(3), "{log}");
    assert!(
        log.contains("the first run after the initial delay"),
        "{log}"
    );
    assert!(
        !log.contains("Found "),
        "a run started during the delay: {log}"
    );
    assert_eq!(queue.count().unwrap(), 3);

    let mut daemon = ssmsend(
        dir.path(),
        &["--interval", "1h", "--initial-delay", "1s"],
        "short.log",
    );
    let start = Instant::now();
    while queue.count().unwrap() > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{}",
            read_log(dir.path(), "short.log")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "sent before the delay"
    );
    sigterm(&daemon);
    let status = wait(&mut daemon, Duration::from_secs(10));
    assert!(status.success(), "{}", read_log(dir.path(), "short.log"));
    assert_eq!(double.stats().await["messages"], 3);
}
