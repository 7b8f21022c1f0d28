//! Checks before cutover (issue 18, points 6 and 7), driving the real
//! binaries: `ssmsend --dry-run` reads, checks and signs the queue without
//! connecting or changing anything; `--check` of both programs lists every
//! problem a real run refuses; `--check-network` reaches the project's
//! doubles (the AMS double, the OpenStack simulator) or names a closed port.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cloud_accounting::spool::{ElementId, Layout, Queue};

use crate::support::ams;
use crate::support::ams::AmsDouble;
use crate::support::extract;
use crate::support::pki::{HOST_DN, Identity, Pki};
use crate::support::send;
use crate::support::send::{SenderCfg, Spooled, message};
use crate::support::sim;

const CASO: &str = env!("CARGO_BIN_EXE_caso-extract");

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn both(o: &Output) -> String {
    format!(
        "--- stdout\n{}--- stderr\n{}",
        stdout(o),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ssmsend(cfg: &Path, args: &[&str]) -> Output {
    send::command(cfg).args(args).output().expect("run ssmsend")
}

/// A port on 127.0.0.1 that listens but must never see a connection.
struct Silent(TcpListener);

impl Silent {
    fn new() -> Silent {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        Silent(l)
    }

    fn port(&self) -> u16 {
        self.0.local_addr().unwrap().port()
    }

    fn assert_untouched(&self) {
        match self.0.accept() {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("port {} saw a connection: {other:?}", self.port()),
        }
    }
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Every entry under `root`: (relative path, size, mtime in ns, is a symlink).
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (u64, i64, bool)> {
    let mut out = BTreeMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                todo.push(p.clone());
            }
            let ns = m.mtime() * 1_000_000_000 + m.mtime_nsec();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            out.insert(rel, (m.len(), ns, m.file_type().is_symlink()));
        }
    }
    out
}

/// A queue of good and bad messages plus one entry that is not a message,
/// and credentials of a test PKI.
struct Site {
    pki: Pki,
    host: Identity,
    spooled: Spooled,
}

impl Site {
    fn new(bodies: Vec<Vec<u8>>) -> Site {
        let pki = Pki::new();
        let host = pki.host();
        let spooled = Spooled::dirq(bodies);
        Site { pki, host, spooled }
    }

    fn stomp(&self, port: u16) -> SenderCfg {
        SenderCfg::stomp(port, true, "/queue/global.accounting.cloud.test")
            .credentials(&self.host.cert_path, &self.host.key_path, self.pki.capath())
            .queue(&self.spooled.queue, Layout::Dirq)
    }

    fn ams(&self, ams_port: u16, authn_port: u16) -> SenderCfg {
        SenderCfg::ams(
            ams_port,
            authn_port,
            "accounting",
            "eu-egi-cloud-accounting",
        )
        .credentials(&self.host.cert_path, &self.host.key_path, self.pki.capath())
        .queue(&self.spooled.queue, Layout::Dirq)
    }

    fn write(&self, cfg: &SenderCfg) -> PathBuf {
        cfg.write(&self.spooled.path("sender.cfg"))
    }
}

fn mixed_queue() -> Site {
    let mut bodies = vec![message(0, 600), Vec::new(), message(2, 3000)];
    bodies.push("APEL-cloud-message: v0.4\nSiteName: caf\u{e9}\n%%\n".into());
    let site = Site::new(bodies);
    std::fs::write(site.spooled.queue.join("notes.txt"), "not a message").unwrap();
    site
}

/// Good and bad messages, one entry that is not a message: each is listed
/// with what a run would do; nothing connects (neither the broker port nor
/// AMS's ports see a connection), nothing in the queue changes (no lock
/// left, same mtimes), no reject directory appears; exit 1.
#[test]
fn dry_run_lists_every_message_and_touches_nothing() {
    let site = mixed_queue();
    let names = site.spooled.names.clone();
    let before = snapshot(&site.spooled.queue);
    let broker = Silent::new();
    let (ams, authn) = (Silent::new(), Silent::new());
    for cfg in [
        site.stomp(broker.port()),
        site.ams(ams.port(), authn.port()),
    ] {
        let o = ssmsend(&site.write(&cfg), &["--dry-run"]);
        let out = stdout(&o);
        assert_eq!(o.status.code(), Some(1), "{}", both(&o));
        for (id, fate) in [
            (&names[0], "would be sent: 6"),
            (&names[1], "would be rejected: empty message"),
            (&names[2], "would be sent: 3"),
            (&names[3], "would be rejected: not ASCII text: byte 0xc3"),
        ] {
            let line = format!("{id}: {fate}");
            assert!(out.contains(&line), "missing {line:?}:\n{}", both(&o));
        }
        assert!(out.contains("notes.txt"), "{}", both(&o));
        assert!(out.contains("a run would move it to"), "{}", both(&o));
        assert!(
            out.contains("2 of 4 message(s) would be sent to destination"),
            "{}",
            both(&o)
        );
        assert!(out.contains("2 would be rejected"), "{}", both(&o));
        assert_eq!(snapshot(&site.spooled.queue), before, "the queue changed");
        assert!(send::locks(&site.spooled.queue).is_empty());
        assert!(!site.spooled.path("reject").exists(), "a reject directory");
    }
    let o = ssmsend(&site.write(&site.stomp(broker.port())), &["--dry-run"]);
    assert!(stdout(&o).contains("STOMP broker(s) stomp+ssl://127.0.0.1:"));
    broker.assert_untouched();
    ams.assert_untouched();
    authn.assert_untouched();
}

/// Only good messages: exit 0, each signed with the real signer (the
/// sealed size is a signature's), and one held by another sender is read
/// all the same, marked, and its lock left to its owner.
#[test]
fn dry_run_of_a_good_queue_exits_0_and_leaves_a_foreign_lock() {
    let site = Site::new(vec![message(0, 800), message(1, 900)]);
    let q = Queue::open(&site.spooled.queue, Layout::Dirq).unwrap();
    let held = q.elements().unwrap()[1].clone();
    assert!(q.lock(&held).unwrap());
    let broker = Silent::new();
    let cfg = site.write(&site.stomp(broker.port()));
    let o = ssmsend(&cfg, &["--dry-run"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert!(out.contains("2 of 2 message(s) would be sent"), "{out}");
    assert!(out.contains(&format!("{held}: would be sent: 9")), "{out}");
    assert!(out.contains("locked by another process now"), "{out}");
    assert_eq!(send::locks(&site.spooled.queue).len(), 1);
    // Signed: a multipart/signed envelope is well over 1 kB larger.
    let sealed: usize = out
        .lines()
        .find(|l| l.contains("would be sent: 8"))
        .and_then(|l| l.split(", ").nth(1))
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no sealed size in {out}"));
    assert!(sealed > 800 + 1000, "{out}");
    broker.assert_untouched();
    q.unlock(&held).unwrap();
    let _ = ElementId::clone(&held);
}

/// A key that does not belong to the certificate: exit 2 naming both,
/// before the queue is read.
#[test]
fn dry_run_with_a_mismatched_key_exits_2() {
    let site = Site::new(vec![message(0, 500)]);
    let bad = site.pki.mismatched_key();
    let broker = Silent::new();
    let cfg =
        site.stomp(broker.port())
            .credentials(&bad.cert_path, &bad.key_path, site.pki.capath());
    let o = ssmsend(&site.write(&cfg), &["--dry-run"]);
    assert_eq!(o.status.code(), Some(2), "{}", both(&o));
    assert!(both(&o).contains("do not match"), "{}", both(&o));
    assert!(!stdout(&o).contains("would be sent"));
    broker.assert_untouched();
}

#[test]
fn check_of_a_good_setup_says_ready() {
    let site = Site::new(vec![message(0, 500)]);
    let broker = Silent::new();
    let o = ssmsend(&site.write(&site.stomp(broker.port())), &["--check"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert_eq!(out.lines().last(), Some("ready"), "{out}");
    assert!(out.contains(HOST_DN), "{out}");
    assert!(out.contains("1 message(s) queued"), "{out}");
    broker.assert_untouched();
    assert!(!site.spooled.path("reject").exists());
    // A reject directory that is a symlink is refused by a run: an error.
    std::os::unix::fs::symlink(site.pki.dir(), site.spooled.path("reject")).unwrap();
    let o = ssmsend(&site.write(&site.stomp(broker.port())), &["--check"]);
    assert_eq!(o.status.code(), Some(2), "{}", both(&o));
    let want = format!(
        "error: reject directory (beside [messaging] path) {} is a symlink",
        site.spooled.path("reject").display()
    );
    assert!(
        stdout(&o).contains(&want),
        "missing {want:?}:\n{}",
        both(&o)
    );
}

/// An expired certificate, a capath that is not there and a server_cert
/// that is not there: each listed, exit 2; `--print-config` still exits 0.
#[test]
fn check_lists_every_certificate_problem() {
    let site = Site::new(vec![]);
    let expired = site.pki.expired();
    let broker = Silent::new();
    let missing = site.spooled.path("no-such-capath");
    let cfg = site
        .stomp(broker.port())
        .credentials(&expired.cert_path, &expired.key_path, &missing)
        .set(
            "certificates",
            "server_cert",
            site.spooled.path("nope.pem").display(),
        );
    let cfg = site.write(&cfg);
    let o = ssmsend(&cfg, &["--check"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(2), "{}", both(&o));
    let want = format!(
        "error: [certificates] certificate {} expired on",
        expired.cert_path.display()
    );
    assert!(out.contains(&want), "missing {want:?}:\n{out}");
    let want = format!(
        "error: [certificates] capath {} is not a directory",
        missing.display()
    );
    assert!(out.contains(&want), "missing {want:?}:\n{out}");
    assert!(out.contains("server_cert"), "{out}");
    assert!(
        out.lines().last().unwrap().starts_with("not ready: "),
        "{out}"
    );
    let o = ssmsend(&cfg, &["--print-config"]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
}

#[test]
fn check_names_a_key_that_does_not_match_and_an_open_key() {
    let site = Site::new(vec![]);
    let bad = site.pki.mismatched_key();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&bad.key_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let cfg =
        site.stomp(closed_port())
            .credentials(&bad.cert_path, &bad.key_path, site.pki.capath());
    let o = ssmsend(&site.write(&cfg), &["--check"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(2), "{}", both(&o));
    let want = format!(
        "error: [certificates] certificate {} and key {} do not match",
        bad.cert_path.display(),
        bad.key_path.display()
    );
    assert!(out.contains(&want), "missing {want:?}:\n{out}");
    assert!(out.contains("warning: [certificates] key"), "{out}");
    assert!(out.contains("open to other users (mode 644)"), "{out}");
}

fn chown(path: &Path, owner: &str, recursive: bool) {
    let mut c = Command::new("chown");
    if recursive {
        c.arg("-R");
    }
    assert!(c.arg(owner).arg(path).status().unwrap().success());
}

/// `bin args` as user nobody when root (root writes everywhere).
fn as_nobody(bin: &str, args: &[&std::ffi::OsStr]) -> Output {
    let mut c = if crate::support::is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", bin]);
        c
    } else {
        Command::new(bin)
    };
    for (k, _) in std::env::vars() {
        if k.starts_with("SSM_") || k.starts_with("CASO_") {
            c.env_remove(k);
        }
    }
    c.args(args).output().expect("run setpriv (util-linux)")
}

/// A queue root the sender cannot write: exit 2 naming the option, the
/// path and the uid; nothing is left in it.
#[test]
fn check_finds_an_unwritable_spool() {
    use std::os::unix::fs::PermissionsExt;
    let site = Site::new(vec![message(0, 500)]);
    let cfg = site.write(&site.stomp(closed_port()));
    if crate::support::is_root() {
        chown(site.pki.dir(), "65534:65534", true);
        chown(site.spooled.dir.path(), "65534:65534", true);
        chown(&site.spooled.queue, "0:0", false);
    }
    std::fs::set_permissions(&site.spooled.queue, std::fs::Permissions::from_mode(0o555)).unwrap();
    let before = snapshot(&site.spooled.queue);
    let o = as_nobody(
        send::SSMSEND,
        &["-c".as_ref(), cfg.as_os_str(), "--check".as_ref()],
    );
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(2), "{}", both(&o));
    let want = format!(
        "error: [messaging] path {} is not writable by uid",
        site.spooled.queue.display()
    );
    assert!(out.contains(&want), "missing {want:?}:\n{}", both(&o));
    assert!(out.contains("reject directory"), "{out}");
    assert_eq!(snapshot(&site.spooled.queue), before);
    std::fs::set_permissions(&site.spooled.queue, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// `--check-network` against the AMS double: the authx509 token request and
/// a TLS connection to the AMS port succeed (exit 0), nothing is published;
/// with AMS's port closed: exit 1 naming scheme, host and port.
#[test]
fn check_network_reaches_ams_or_names_the_closed_port() {
    let site = Site::new(vec![message(0, 500)]);
    let server = site.pki.server();
    let double = AmsDouble::start_with(
        tempfile::tempdir().unwrap(),
        site.pki.ca_file(),
        &server.cert_path,
        &server.key_path,
        HOST_DN,
        &[],
    );
    let cfg = site.write(&site.ams(double.ams_port, double.authn_port));
    let o = ssmsend(&cfg, &["--check-network"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert!(
        out.contains("a token was issued for the host certificate"),
        "{out}"
    );
    assert!(out.contains("reachable (TCP, TLS and HTTP"), "{out}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    assert!(rt.block_on(double.messages()).is_empty());
    assert_eq!(send::remaining(&site.spooled.queue, Layout::Dirq).len(), 1);

    // A configured token: no authx509 request, and the token is never shown.
    let with_token =
        site.ams(double.ams_port, double.authn_port)
            .set("messaging", "token", ams::TOKEN);
    let o = ssmsend(&site.write(&with_token), &["--check-network"]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert!(!stdout(&o).contains("authx509"), "{}", both(&o));
    assert!(!both(&o).contains(ams::TOKEN), "{}", both(&o));
    let o = ssmsend(&site.write(&with_token), &["--dry-run"]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert!(!both(&o).contains(ams::TOKEN), "{}", both(&o));

    let port = closed_port();
    let cfg = site.write(&site.ams(port, double.authn_port));
    let o = ssmsend(&cfg, &["--check", "--check-network"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    let want = format!("https://127.0.0.1:{port}/");
    assert!(
        out.lines()
            .any(|l| l.starts_with("error: AMS") && l.contains(&want)),
        "missing {want:?}:\n{out}"
    );
}

/// A STOMP broker port that is closed: exit 1, the broker named with its
/// scheme; a listening one (no TLS): reachable, and it gets no STOMP frame.
#[test]
fn check_network_names_a_closed_broker_port() {
    let site = Site::new(vec![]);
    let port = closed_port();
    let o = ssmsend(&site.write(&site.stomp(port)), &["--check-network"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    let want = format!("error: STOMP broker stomp+ssl://127.0.0.1:{port}:");
    assert!(out.contains(&want), "missing {want:?}:\n{out}");

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let plain = site
        .stomp(listener.local_addr().unwrap().port())
        .set("broker", "use_ssl", "false");
    let o = ssmsend(&site.write(&plain), &["--check-network"]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert!(stdout(&o).contains("reachable (TCP connection done, no STOMP frame sent)"));
    let (mut conn, _) = listener.accept().unwrap();
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut conn, &mut got).unwrap();
    assert!(got.is_empty(), "the broker got {got:?}");
}

/// The checks are modes of their own: combined with each other or with
/// daemon flags they are usage errors (exit 2).
#[test]
fn check_modes_do_not_combine() {
    let site = Site::new(vec![]);
    let cfg = site.write(&site.stomp(closed_port()));
    for args in [
        &["--check", "--dry-run"][..],
        &["--check", "--print-config"],
        &["--dry-run", "--interval", "6h"],
    ] {
        let o = ssmsend(&cfg, args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", both(&o));
    }
    let dir = tempfile::tempdir().unwrap();
    let conf = caso_conf(dir.path(), "http://127.0.0.1:9/identity/v3", |t| t);
    for args in [
        &["--check", "projects"][..],
        &["projects", "--check-network"],
        &["--check", "--print-config"],
        &["--check", "--interval", "1h"],
    ] {
        let o = caso(&conf, args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", both(&o));
    }
}

// --- caso-extract ---------------------------------------------------------

/// caso.conf for the simulator at `auth_url` in `dir`, with `edit` applied.
fn caso_conf(dir: &Path, auth_url: &str, edit: impl Fn(String) -> String) -> PathBuf {
    std::fs::write(
        dir.join("voms.json"),
        r#"{"vo.example": {"projects": ["p1"]}}"#,
    )
    .unwrap();
    let conf = extract::write_conf(
        dir,
        auth_url,
        &dir.join("voms.json"),
        "secret",
        "project_domain_name = Default",
    );
    let text = edit(std::fs::read_to_string(&conf).unwrap());
    std::fs::write(&conf, text).unwrap();
    conf
}

fn caso(conf: &Path, args: &[&str]) -> Output {
    let mut c = Command::new(CASO);
    c.arg("--config-file")
        .arg(conf)
        .args(args)
        .env_remove("CASO_LOCK_PATH");
    c.output().unwrap()
}

/// No site_name and no password: both named, exit 2; no secret printed.
#[test]
fn caso_check_lists_a_missing_site_name_and_credential() {
    let dir = tempfile::tempdir().unwrap();
    let conf = caso_conf(dir.path(), "http://127.0.0.1:9/identity/v3", |t| {
        t.replace("site_name = SIM-SITE\n", "")
            .replace("password = secret\n", "")
    });
    let o = caso(&conf, &["--check"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(2), "{}", both(&o));
    assert!(
        out.contains("error: configuration: [DEFAULT] site_name"),
        "{out}"
    );
    assert!(
        out.contains("error: configuration: [keystone_auth] password is required"),
        "{out}"
    );
    assert!(!dir.path().join("outgoing").exists(), "nothing is created");
}

/// A good caso.conf: ready; with --check-network against the OpenStack
/// simulator: a token (one request, no extraction); with Keystone's port
/// closed: exit 1 naming the URL.
#[tokio::test(flavor = "multi_thread")]
async fn caso_check_network_against_the_simulator() {
    let sim = sim::Sim::start(&["--scenario", "S"]);
    let dir = tempfile::tempdir().unwrap();
    let conf = caso_conf(dir.path(), &sim.auth_url(), |t| t);
    let o = caso(&conf, &["--check"]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert_eq!(stdout(&o).lines().last(), Some("ready"), "{}", both(&o));
    assert_eq!(
        sim.stats().await["total"],
        0,
        "--check alone made a request"
    );

    let o = caso(&conf, &["--check-network"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert!(
        out.contains("a token was issued for the configured credentials"),
        "{out}"
    );
    assert!(!both(&o).contains("secret"), "{}", both(&o));
    assert!(!dir.path().join("outgoing").exists(), "nothing is created");

    let port = closed_port();
    let url = format!("http://127.0.0.1:{port}/identity/v3");
    let conf = caso_conf(dir.path(), &url, |t| t);
    let o = caso(&conf, &["--check", "--check-network"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    assert!(
        out.lines()
            .any(|l| l.starts_with(&format!("error: Keystone {url}"))),
        "{out}"
    );
}

/// The APEL spool and the lock directory not writable by the user: each
/// named, exit 2.
#[test]
fn caso_check_finds_unwritable_directories() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let conf = caso_conf(dir.path(), "http://127.0.0.1:9/identity/v3", |t| {
        t.replace(
            &format!("lock_path = {d}/spool"),
            &format!("lock_path = {d}/lock"),
        )
    });
    for sub in ["outgoing", "lock"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
    }
    if crate::support::is_root() {
        chown(dir.path(), "65534:65534", true);
        chown(&dir.path().join("outgoing"), "0:0", false);
        chown(&dir.path().join("lock"), "0:0", false);
    }
    for sub in ["outgoing", "lock"] {
        std::fs::set_permissions(dir.path().join(sub), std::fs::Permissions::from_mode(0o555))
            .unwrap();
    }
    let o = as_nobody(
        CASO,
        &[
            "--config-file".as_ref(),
            conf.as_os_str(),
            "--check".as_ref(),
        ],
    );
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(2), "{}", both(&o));
    for want in [
        format!("error: [ssm] output_path (the APEL spool) {d}/outgoing is not writable by uid"),
        format!("error: [DEFAULT] lock_path (the run lock) {d}/lock is not writable by uid"),
        format!("ok: [DEFAULT] spooldir (lastrun files) {d}/spool: writable"),
    ] {
        assert!(out.contains(&want), "missing {want:?}:\n{}", both(&o));
    }
}
