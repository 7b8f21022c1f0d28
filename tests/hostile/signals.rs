//! Hostile peers that make the programs wait, and SIGTERM in the middle of
//! the wait (issue 11, class 5, and the SIGTERM half of class 3): the real
//! binaries against scripted servers on 127.0.0.1 and the project's doubles.
//! Every case sends SIGTERM 1-2 s into the wait and asserts: the process
//! ends within 3 s of the signal with exit 0 (a graceful stop), nothing is
//! lost (messages still queued and unlocked, lastrun of a stopped project
//! unchanged, nothing of it spooled), nothing outside the spool went out,
//! and no secret is in the output.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cloud_accounting::lastrun;
use cloud_accounting::spool::{Layout, Queue};

use crate::support::ams::{AmsDouble, AmsTestPki, TOKEN};
use crate::support::pki::{Identity, Pki};
use crate::support::send;
use crate::support::send::{SenderCfg, fill, locks, message, remaining};
use crate::support::sim;
use crate::support::sim::Sim;

/// How long after SIGTERM the process must be gone.
const BOUND: Duration = Duration::from_secs(3);
/// The password of the OpenStack double's users: never in any output.
const PASSWORD: &str = "Pw-S3cr3t-hostile";

fn sigterm(child: &Child) {
    // SAFETY: kill(2) on our own child's pid.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0, "kill -TERM {}", child.id());
}

/// SIGTERM, then the exit status and how long the process took to end
/// (killed, and the test failed, after 30 s).
fn terminate(child: &mut Child) -> (ExitStatus, Duration) {
    sigterm(child);
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status, start.elapsed());
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("still running 30 s after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The graceful stop every case expects: exit 0 within [`BOUND`].
fn assert_stopped(status: ExitStatus, took: Duration, log: &str) {
    eprintln!("ended {took:?} after SIGTERM");
    assert!(took < BOUND, "took {took:?} after SIGTERM:\n{log}");
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(
        log.contains("SIGTERM: finishing the work in progress"),
        "{log}"
    );
}

fn assert_no_secret(log: &str, secrets: &[&str]) {
    assert!(!log.contains("PRIVATE KEY"), "key material in the output");
    for s in secrets {
        assert!(!log.contains(s), "secret {s:?} in the output:\n{log}");
    }
}

/// Waits until `ready` (polled every 20 ms), at most 60 s.
fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < Duration::from_secs(60), "never: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// A file outside the spool whose content must never be sent.
fn plant_marker(dir: &Path) -> (PathBuf, String) {
    let text = format!("MARKER-{}-outside-the-spool", std::process::id());
    let path = dir.join("outside-marker");
    std::fs::write(&path, &text).unwrap();
    (path, text)
}

/// Every byte a scripted server received, per connection.
type Received = Arc<Mutex<Vec<u8>>>;

/// What a scripted STOMP broker does with each connection.
#[derive(Clone, Copy, PartialEq)]
enum Broker {
    /// Accepts TCP, reads, never answers (not even a TLS ServerHello).
    Silent,
    /// Completes TLS (when `tls`), reads CONNECT, never answers.
    NoConnected,
    /// Answers CONNECTED, takes every SEND, never sends a RECEIPT.
    NoReceipt,
}

/// Serves connections on 127.0.0.1 with `script` (TLS with `tls` as its
/// identity); returns the port, the bytes received and how many
/// connections came.
fn scripted_broker(script: Broker, tls: Option<&Identity>) -> (u16, Received, Arc<Mutex<usize>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let received: Received = Arc::default();
    let connections: Arc<Mutex<usize>> = Arc::default();
    let acceptor = tls.map(|id| {
        let mut b = openssl::ssl::SslAcceptor::mozilla_intermediate_v5(
            openssl::ssl::SslMethod::tls_server(),
        )
        .unwrap();
        b.set_certificate(&id.cert).unwrap();
        b.set_private_key(&id.key).unwrap();
        b.build()
    });
    let (rx, conns) = (Arc::clone(&received), Arc::clone(&connections));
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(tcp) = tcp else { return };
            *conns.lock().unwrap() += 1;
            let (rx, acceptor) = (Arc::clone(&rx), acceptor.clone());
            std::thread::spawn(move || {
                if script == Broker::Silent {
                    serve(tcp, &rx, |_, _| false);
                    return;
                }
                let answer = move |stream: &mut dyn Write, seen: &[u8]| {
                    // CONNECT is the first frame: answer it once.
                    if script == Broker::NoReceipt && seen.contains(&0) {
                        let _ = stream.write_all(b"CONNECTED\nversion:1.2\nheart-beat:0,0\n\n\0");
                        return true;
                    }
                    false
                };
                match acceptor {
                    Some(a) => {
                        if let Ok(tls) = a.accept(tcp) {
                            serve(tls, &rx, answer);
                        }
                    }
                    None => serve(tcp, &rx, answer),
                }
            });
        }
    });
    (port, received, connections)
}

/// Reads until EOF, recording every byte; `answer` may write once.
fn serve<S: Read + Write>(
    mut stream: S,
    received: &Received,
    mut answer: impl FnMut(&mut dyn Write, &[u8]) -> bool,
) {
    let mut answered = false;
    let mut seen = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            return;
        }
        seen.extend_from_slice(&buf[..n]);
        received.lock().unwrap().extend_from_slice(&buf[..n]);
        if !answered {
            answered = answer(&mut stream, &seen);
        }
    }
}

/// A sender site: a dirq queue of `n` messages, the test PKI's host
/// certificate, a marker outside the queue.
struct SenderSite {
    dir: tempfile::TempDir,
    queue: PathBuf,
    names: Vec<String>,
    marker: String,
    marker_path: PathBuf,
}

impl SenderSite {
    fn new(n: usize) -> SenderSite {
        let dir = tempfile::Builder::new()
            .prefix("hostile-signals")
            .tempdir()
            .unwrap();
        let queue = dir.path().join("outgoing");
        let bodies: Vec<Vec<u8>> = (0..n).map(|i| message(i, 400)).collect();
        let mut names = if n == 0 {
            Queue::create(&queue, Layout::Dirq).unwrap();
            Vec::new()
        } else {
            fill(&queue, Layout::Dirq, &bodies)
        };
        names.sort();
        let (marker_path, marker) = plant_marker(dir.path());
        SenderSite {
            dir,
            queue,
            names,
            marker,
            marker_path,
        }
    }

    fn ssmsend(&self, cfg: SenderCfg, extra: &[&str]) -> Child {
        let cfg = cfg
            .queue(&self.queue, Layout::Dirq)
            .set("sender", "connect_timeout", "60s")
            .set("sender", "receipt_timeout", "60s")
            .write(&self.dir.path().join("sender.cfg"));
        send::command(&cfg)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.log_path()).unwrap())
            .spawn()
            .unwrap()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("ssmsend.log")
    }

    fn log(&self) -> String {
        read(&self.log_path())
    }

    /// Every message still queued, none locked, the marker untouched and
    /// not in what the peer received.
    fn assert_nothing_lost(&self, received: &[u8]) {
        let mut left = remaining(&self.queue, Layout::Dirq);
        left.sort();
        assert_eq!(left, self.names, "{}", self.log());
        assert_eq!(locks(&self.queue), Vec::<PathBuf>::new(), "{}", self.log());
        assert_eq!(read(&self.marker_path), self.marker);
        let marker = self.marker.as_bytes();
        assert!(!received.windows(marker.len()).any(|w| w == marker));
    }
}

fn stomp_cfg(pki: &Pki, host: &Identity, port: u16, use_ssl: bool) -> SenderCfg {
    SenderCfg::stomp(port, use_ssl, "/queue/hostile").credentials(
        &host.cert_path,
        &host.key_path,
        pki.capath(),
    )
}

/// A broker that accepts TCP and never sends CONNECTED (plain): SIGTERM ends
/// the 60 s connect wait at once.
#[test]
fn stomp_broker_that_never_sends_connected() {
    let pki = Pki::new();
    let host = pki.host();
    let (port, received, conns) = scripted_broker(Broker::NoConnected, None);
    let site = SenderSite::new(3);
    let mut child = site.ssmsend(stomp_cfg(&pki, &host, port, false), &[]);
    wait_for("CONNECT at the broker", || {
        received.lock().unwrap().starts_with(b"CONNECT\n")
    });
    std::thread::sleep(Duration::from_millis(1000));
    let (status, took) = terminate(&mut child);
    let log = site.log();
    assert_stopped(status, took, &log);
    assert_eq!(*conns.lock().unwrap(), 1);
    assert!(!received.lock().unwrap().windows(4).any(|w| w == b"SEND"));
    site.assert_nothing_lost(&received.lock().unwrap());
    assert_no_secret(&log, &[]);
}

/// A TLS listener that accepts TCP and never answers the ClientHello.
#[test]
fn tls_listener_that_never_completes_the_handshake() {
    let pki = Pki::new();
    let host = pki.host();
    let (port, received, _) = scripted_broker(Broker::Silent, None);
    let site = SenderSite::new(3);
    let mut child = site.ssmsend(stomp_cfg(&pki, &host, port, true), &[]);
    // A ClientHello is a TLS handshake record: 0x16 0x03.
    wait_for("a ClientHello", || {
        received.lock().unwrap().starts_with(&[0x16, 0x03])
    });
    std::thread::sleep(Duration::from_millis(1000));
    let (status, took) = terminate(&mut child);
    let log = site.log();
    assert_stopped(status, took, &log);
    site.assert_nothing_lost(&received.lock().unwrap());
    assert_no_secret(&log, &[]);
}

/// A TLS broker that completes the handshake, reads CONNECT and never sends
/// CONNECTED.
#[test]
fn tls_broker_that_never_sends_connected() {
    let pki = Pki::new();
    let (host, server) = (pki.host(), pki.server());
    let (port, received, _) = scripted_broker(Broker::NoConnected, Some(&server));
    let site = SenderSite::new(3);
    let mut child = site.ssmsend(stomp_cfg(&pki, &host, port, true), &[]);
    wait_for("CONNECT over TLS", || {
        received.lock().unwrap().starts_with(b"CONNECT\n")
    });
    std::thread::sleep(Duration::from_millis(1000));
    let (status, took) = terminate(&mut child);
    let log = site.log();
    assert_stopped(status, took, &log);
    site.assert_nothing_lost(&received.lock().unwrap());
    assert_no_secret(&log, &[]);
}

/// A broker that takes every SEND and never sends a RECEIPT: the messages
/// sent get the grace (1.5 s) for their receipt, then are unlocked and stay
/// queued (the broker has them: the next run sends them again).
#[test]
fn broker_that_never_sends_receipt() {
    const N: usize = 4;
    let pki = Pki::new();
    let host = pki.host();
    let (port, received, _) = scripted_broker(Broker::NoReceipt, None);
    let site = SenderSite::new(N);
    let mut child = site.ssmsend(stomp_cfg(&pki, &host, port, false), &[]);
    let sends = || {
        let r = received.lock().unwrap();
        r.windows(5).filter(|w| w == b"SEND\n").count()
    };
    wait_for("every SEND at the broker", || sends() == N);
    std::thread::sleep(Duration::from_millis(1000));
    let (status, took) = terminate(&mut child);
    let log = site.log();
    assert_stopped(status, took, &log);
    assert!(log.contains("messages without a receipt are kept"), "{log}");
    site.assert_nothing_lost(&received.lock().unwrap());
    assert_no_secret(&log, &[]);
}

/// A second SIGTERM does not wait for the grace: exit 1 at once. The
/// elements locked then are the next purge's (the spool is crash-safe):
/// still all queued.
#[test]
fn a_second_sigterm_exits_at_once() {
    let pki = Pki::new();
    let host = pki.host();
    let (port, received, _) = scripted_broker(Broker::NoReceipt, None);
    let site = SenderSite::new(2);
    let mut child = site.ssmsend(stomp_cfg(&pki, &host, port, false), &[]);
    wait_for("the SENDs", || {
        received
            .lock()
            .unwrap()
            .windows(5)
            .filter(|w| w == b"SEND\n")
            .count()
            == 2
    });
    sigterm(&child);
    std::thread::sleep(Duration::from_millis(200));
    let (status, took) = terminate(&mut child);
    let log = site.log();
    assert!(took < Duration::from_millis(1000), "took {took:?}: {log}");
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("SIGTERM again: exiting at once"), "{log}");
    let mut left = remaining(&site.queue, Layout::Dirq);
    left.sort();
    assert_eq!(left, site.names);
}

/// An AMS sender site for `ams_port`/`authn_port`.
fn ams_cfg(pki: &AmsTestPki, ams_port: u16, authn_port: u16) -> SenderCfg {
    SenderCfg::ams(
        ams_port,
        authn_port,
        "accounting",
        "eu-egi-cloud-accounting",
    )
    .credentials(&pki.host.cert_path, &pki.host.key_path, pki.grid.capath())
    .set("sender", "ams_concurrency", 2)
}

/// The AMS double holds every publish for a minute: the publishes in flight
/// get the grace for their answer, then every message is unlocked.
#[tokio::test(flavor = "multi_thread")]
async fn ams_that_never_answers_a_publish() {
    let pki = AmsTestPki::generate();
    let double = AmsDouble::start(&pki, &["--fault", "stall=60s"]);
    let site = SenderSite::new(4);
    let mut child = site.ssmsend(ams_cfg(&pki, double.ams_port, double.authn_port), &[]);
    wait_for("publishing", || site.log().contains("Will publish to"));
    std::thread::sleep(Duration::from_millis(1000));
    let (status, took) = terminate(&mut child);
    let log = site.log();
    assert_stopped(status, took, &log);
    assert!(log.contains("messages without an answer are kept"), "{log}");
    assert_eq!(double.stats().await["messages"], 0);
    site.assert_nothing_lost(&[]);
    assert_no_secret(&log, &[TOKEN]);
}

/// The ARGO authentication service accepts TCP and never answers: the
/// token request ends on SIGTERM and nothing was locked.
#[test]
fn authx509_that_stalls() {
    let pki = AmsTestPki::generate();
    let (authn_port, authn_received, _) = scripted_broker(Broker::Silent, None);
    let (ams_port, ams_received, ams_conns) = scripted_broker(Broker::Silent, None);
    let site = SenderSite::new(3);
    let mut child = site.ssmsend(ams_cfg(&pki, ams_port, authn_port), &[]);
    wait_for("the token request", || {
        !authn_received.lock().unwrap().is_empty()
    });
    std::thread::sleep(Duration::from_millis(1500));
    let (status, took) = terminate(&mut child);
    let log = site.log();
    assert_stopped(status, took, &log);
    assert_eq!(*ams_conns.lock().unwrap(), 0, "published without a token");
    site.assert_nothing_lost(&ams_received.lock().unwrap());
    assert_no_secret(&log, &[]);
}

/// ssmsend --interval 1h sleeping between runs: SIGTERM ends the sleep.
#[test]
fn ssmsend_daemon_sleeping_between_runs() {
    let pki = Pki::new();
    let host = pki.host();
    let site = SenderSite::new(0);
    // Nothing queued: no broker is asked, the run ends, the sleep begins.
    let mut child = site.ssmsend(stomp_cfg(&pki, &host, 9, false), &["--interval", "1h"]);
    wait_for("the sleep", || site.log().contains("run done, sleeping"));
    std::thread::sleep(Duration::from_millis(1000));
    let (status, took) = terminate(&mut child);
    let log = site.log();
    assert_stopped(status, took, &log);
    assert!(log.contains("stopped on request"), "{log}");
    assert_no_secret(&log, &[]);
}

/// A caso-extract site against `sim`: every tagged project, ssm messenger.
struct ExtractSite {
    dir: tempfile::TempDir,
}

impl ExtractSite {
    async fn new(sim: &Sim, extra_default: &str) -> ExtractSite {
        let dir = tempfile::Builder::new()
            .prefix("hostile-extract")
            .tempdir()
            .unwrap();
        let d = dir.path().display();
        std::fs::write(
            dir.path().join("caso.conf"),
            format!(
                "[DEFAULT]\nsite_name = HOSTILE-SIGNALS\nspooldir = {d}/state\nlock_path = {d}/state\n\
                 mapping_file = {d}/voms.json\nmessengers = ssm\nconcurrency = 2\n{extra_default}\
                 [ssm]\noutput_path = {d}/outgoing\n\
                 [keystone_auth]\nauth_type = password\nauth_url = {}\nusername = admin\n\
                 password = {PASSWORD}\nuser_domain_name = Default\nproject_domain_name = Default\n\
                 timeout = 60\n",
                sim.auth_url()
            ),
        )
        .unwrap();
        let voms = sim.get_json("/_sim/voms.json").await;
        std::fs::write(dir.path().join("voms.json"), voms.to_string()).unwrap();
        plant_marker(dir.path());
        ExtractSite { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn extract(&self, extra: &[&str]) -> Child {
        Command::new(env!("CARGO_BIN_EXE_caso-extract"))
            .arg("--config-file")
            .arg(self.path("caso.conf"))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.path("extract.log")).unwrap())
            .spawn()
            .unwrap()
    }

    fn log(&self) -> String {
        read(&self.path("extract.log"))
    }

    fn lastrun(&self, project: &str) -> Option<cloud_accounting::time::Timestamp> {
        lastrun::read(&self.path("state"), project).unwrap()
    }

    /// The text of every spooled message (none locked).
    fn messages(&self) -> Vec<String> {
        let Ok(q) = Queue::open(&self.path("outgoing"), Layout::Dirq) else {
            return Vec::new();
        };
        q.elements()
            .unwrap()
            .iter()
            .map(|id| {
                assert!(q.lock(id).unwrap(), "{id} is locked");
                let text = String::from_utf8(q.get(id, 1_000_000).unwrap()).unwrap();
                q.unlock(id).unwrap();
                text
            })
            .collect()
    }

    /// Nothing outside the spool was read into it, no secret was output.
    fn assert_clean(&self) {
        let marker = read(&self.path("outside-marker"));
        assert!(marker.starts_with("MARKER-"));
        assert!(self.messages().iter().all(|m| !m.contains(&marker)));
        assert_no_secret(&self.log(), &[PASSWORD]);
    }
}

fn sim(extra: &[&str]) -> Sim {
    let mut args = vec!["--scenario", "S", "--password", PASSWORD];
    args.extend_from_slice(extra);
    Sim::start(&args)
}

async fn accounted_projects(sim: &Sim) -> Vec<String> {
    sim::accounted_project_ids(&sim.manifest().await)
}

async fn requests(sim: &Sim, endpoint: &str) -> u64 {
    sim.stats().await["by_endpoint"][endpoint]
        .as_u64()
        .unwrap_or(0)
}

/// Keystone accepts the token request and never answers: SIGTERM ends the
/// login; nothing is extracted, exit 0.
#[tokio::test(flavor = "multi_thread")]
async fn keystone_token_request_that_stalls() {
    let sim = sim(&["--fault", "stall=120s:path=/identity/v3/auth/tokens"]);
    let projects = accounted_projects(&sim).await;
    let site = ExtractSite::new(&sim, "").await;
    let mut child = site.extract(&[]);
    let start = Instant::now();
    while sim.stats().await["total"].as_u64() < Some(1) {
        assert!(start.elapsed() < Duration::from_secs(60), "{}", site.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, took) = terminate(&mut child);
    let log = site.log();
    assert_stopped(status, took, &log);
    assert!(log.contains("before any project was started"), "{log}");
    for p in &projects {
        assert_eq!(site.lastrun(p), None, "{p}");
    }
    assert!(site.messages().is_empty());
    site.assert_clean();
}

/// Nova's server list of one of two projects stalls: SIGTERM stops that
/// project after the grace (no message, no lastrun); the other one, already
/// extracted, is delivered whole with its lastrun.
#[tokio::test(flavor = "multi_thread")]
async fn nova_list_that_stalls_for_one_project() {
    let probe = sim(&["--projects", "2"]);
    let projects = accounted_projects(&probe).await;
    assert_eq!(projects.len(), 2);
    drop(probe);
    let stalled = &projects[1];
    let fault = format!("stall=120s:path=/compute/v2.1/servers/detail:project={stalled}");
    let sim = sim(&["--projects", "2", "--fault", &fault]);
    assert_eq!(
        accounted_projects(&sim).await,
        projects,
        "a deterministic model"
    );
    let site = ExtractSite::new(&sim, "").await;
    let mut child = site.extract(&[]);
    let start = Instant::now();
    while requests(&sim, "compute GET servers/detail").await < 2 {
        assert!(start.elapsed() < Duration::from_secs(60), "{}", site.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, took) = terminate(&mut child);
    let log = site.log();
    assert_stopped(status, took, &log);
    assert!(log.contains("1 stopped mid-way"), "{log}");
    // The run ends with its summary (issue 18, point 12): what was spooled
    // came from the project that finished.
    let last = log.lines().last().unwrap_or("");
    assert!(
        last.contains(" WARN 1/2 projects ok, 1 stopped, ") && last.ends_with(" records) spooled"),
        "{log}"
    );
    assert_eq!(site.lastrun(stalled), None, "{log}");
    let messages = site.messages();
    assert!(messages.iter().all(|m| !m.contains(stalled.as_str())));
    let done = &projects[0];
    assert!(site.lastrun(done).is_some(), "{log}");
    assert!(messages.iter().any(|m| m.contains(done.as_str())), "{log}");
    site.assert_clean();
}

/// A server list that goes on page after page (one server a page, thousands
/// of servers, slow pages): SIGTERM ends it after the grace; the project
/// writes nothing and keeps its lastrun.
#[tokio::test(flavor = "multi_thread")]
async fn endless_pagination_ends_on_sigterm() {
    let sim = sim(&[
        "--projects",
        "1",
        "--servers",
        "3000",
        "--max-limit",
        "1",
        "--fault",
        "latency=20ms:path=/compute",
    ]);
    let projects = accounted_projects(&sim).await;
    let site = ExtractSite::new(&sim, "").await;
    let mut child = site.extract(&[]);
    let start = Instant::now();
    while requests(&sim, "compute GET servers/detail").await < 30 {
        assert!(start.elapsed() < Duration::from_secs(60), "{}", site.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, took) = terminate(&mut child);
    let log = site.log();
    assert_stopped(status, took, &log);
    let pages = requests(&sim, "compute GET servers/detail").await;
    assert!(pages < 1000, "{pages} pages: the list ran to its end");
    for p in &projects {
        assert_eq!(site.lastrun(p), None, "{p}: {log}");
    }
    assert!(site.messages().is_empty(), "{log}");
    site.assert_clean();
}

/// caso-extract (cron mode) waiting for the run lock another process holds:
/// SIGTERM ends the wait; nothing is asked of OpenStack.
#[tokio::test(flavor = "multi_thread")]
async fn run_lock_wait_ends_on_sigterm() {
    let sim = sim(&[]);
    let site = ExtractSite::new(&sim, "lock_timeout = 10m\n").await;
    std::fs::create_dir_all(site.path("state")).unwrap();
    // Another process: a child holding the POSIX lock as cASO does.
    let holder = Command::new("python3")
        .arg("-c")
        .arg(
            "import fcntl,sys,time\n\
             f=open(sys.argv[1],'a'); fcntl.lockf(f, fcntl.LOCK_EX|fcntl.LOCK_NB)\n\
             print('held', flush=True); time.sleep(120)",
        )
        .arg(
            site.path("state")
                .join(cloud_accounting::runlock::LOCK_NAME),
        )
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut holder = KillOnDrop(holder);
    let mut line = [0u8; 5];
    holder
        .0
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut line)
        .unwrap();
    assert_eq!(&line, b"held\n");
    let mut child = site.extract(&[]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(child.try_wait().unwrap().is_none(), "{}", site.log());
    let (status, took) = terminate(&mut child);
    let log = site.log();
    assert_stopped(status, took, &log);
    assert_eq!(sim.stats().await["total"], 0, "extracted without the lock");
    assert!(site.messages().is_empty());
    site.assert_clean();
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// caso-extract --interval 1h sleeping between runs: SIGTERM ends the sleep
/// within the bound; the run before it was complete.
#[tokio::test(flavor = "multi_thread")]
async fn extract_daemon_sleeping_between_runs() {
    let sim = sim(&[]);
    let projects = accounted_projects(&sim).await;
    let site = ExtractSite::new(&sim, "").await;
    let mut child = site.extract(&["--interval", "1h"]);
    let start = Instant::now();
    while !site.log().contains("run done, sleeping") {
        assert!(start.elapsed() < Duration::from_secs(60), "{}", site.log());
        assert!(child.try_wait().unwrap().is_none(), "{}", site.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (status, took) = terminate(&mut child);
    let log = site.log();
    assert_stopped(status, took, &log);
    for p in &projects {
        assert!(site.lastrun(p).is_some(), "{p}: {log}");
    }
    assert!(!site.messages().is_empty());
    site.assert_clean();
}
