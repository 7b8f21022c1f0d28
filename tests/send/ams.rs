//! `ssmsend` end to end over AMS against the `ams-double` (TLS, authx509,
//! fault injection): what it stored is checked with the `openssl smime` CLI.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use cloud_accounting::spool::Layout;

use crate::support::ams::AmsDouble;
use crate::support::pki::{HOST_DN, Identity, Pki};
use crate::support::send;
use crate::support::send::{SenderCfg, Spooled, message, openssl_verify, vmuuids};

/// A test PKI, an AMS double trusting it, and a queue of messages.
struct Setup {
    pki: Pki,
    host: Identity,
    server: Identity,
    double: AmsDouble,
    dir: tempfile::TempDir,
    queue: PathBuf,
    names: Vec<String>,
    queued: BTreeMap<String, Vec<u8>>,
}

impl Setup {
    fn new(double_args: &[&str], bodies: Vec<Vec<u8>>) -> Setup {
        let pki = Pki::new();
        let host = pki.host();
        let server = pki.server();
        let double = AmsDouble::start_with(
            tempfile::tempdir().unwrap(),
            pki.ca_file(),
            &server.cert_path,
            &server.key_path,
            HOST_DN,
            double_args,
        );
        let Spooled {
            dir,
            queue,
            names,
            queued,
        } = Spooled::dirq(bodies);
        Setup {
            pki,
            host,
            server,
            double,
            dir,
            queue,
            names,
            queued,
        }
    }

    fn with_messages(double_args: &[&str], n: usize, size: usize) -> Setup {
        Setup::new(double_args, (0..n).map(|i| message(i, size)).collect())
    }

    /// AMS on the double's ports, token from authx509, capath of the test CA.
    fn cfg(&self) -> SenderCfg {
        SenderCfg::ams(
            self.double.ams_port,
            self.double.authn_port,
            "accounting",
            "eu-egi-cloud-accounting",
        )
        .credentials(&self.host.cert_path, &self.host.key_path, self.pki.capath())
        .queue(&self.queue, Layout::Dirq)
    }

    fn run(&self, cfg: SenderCfg) -> send::Run {
        send::run(&cfg.write(&self.dir.path().join("sender.cfg")))
    }

    fn remaining(&self) -> Vec<String> {
        send::remaining(&self.queue, Layout::Dirq)
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Every message the double stored verifies against the test CA with the
/// CLI, was signed by the host DN, and holds its queued content; each empaid
/// was stored once. Returns the empaids stored.
fn assert_stored_intact(s: &Setup) -> BTreeSet<String> {
    rt().block_on(async {
        let stats = s.double.stats().await;
        assert_eq!(stats["duplicates"], 0, "{stats}");
        let mut stored = BTreeSet::new();
        for m in s.double.messages().await {
            let id = m["empaid"].as_str().unwrap().to_owned();
            let data = s.double.data(m["seq"].as_u64().unwrap()).await;
            let v = openssl_verify(&data, s.pki.capath());
            assert_eq!(v.signer_dn, HOST_DN, "{id}");
            assert!(v.content == s.queued[&id], "{id}: content differs");
            stored.insert(id);
        }
        if !stored.is_empty() {
            assert_eq!(stats["signatures"]["all_verified"], true, "{stats}");
        }
        stored
    })
}

fn stats(s: &Setup) -> serde_json::Value {
    rt().block_on(s.double.stats())
}

#[test]
fn delivers_every_message_verified_signed_by_the_host_and_intact() {
    let s = Setup::with_messages(&[], 30, 4_000);
    let outcome = s.run(s.cfg());
    assert_eq!(outcome.code, 0, "{}", outcome.log);
    let stored = assert_stored_intact(&s);
    assert_eq!(stored, s.names.iter().cloned().collect());
    let st = stats(&s);
    assert_eq!(st["tokens_issued"], 1, "one authx509 token per run: {st}");
    assert_eq!(st["authx509_dns"][0], HOST_DN, "{st}");
    assert!(s.remaining().is_empty());
    assert!(send::locks(&s.queue).is_empty());
    assert!(outcome.log.contains("Argo ID"), "{}", outcome.log);
}

/// Every retryable fault (500, 502, 503, 504, 408, 429, a short stall):
/// retried, everything arrives, once.
#[test]
fn transient_faults_are_retried_and_everything_arrives_once() {
    for fault in [
        "500:first=6",
        "502:nth=2",
        "503:first=3",
        "504:nth=1",
        "408:nth=4",
        "429:first=4",
        "stall=300ms:nth=3",
    ] {
        let s = Setup::with_messages(&["--fault", fault], 12, 2_000);
        // SSM's one message per request: a 500 for a request of several
        // is not repeated (see `a_500_for_a_filled_request_is_not_repeated`).
        let outcome = s.run(s.cfg().set("sender", "ams_max_messages_per_request", 1));
        assert_eq!(outcome.code, 0, "{fault}: {}", outcome.log);
        let stored = assert_stored_intact(&s);
        assert_eq!(stored.len(), 12, "{fault}");
        assert!(s.remaining().is_empty(), "{fault}");
        let st = stats(&s);
        let publishes = st["publish_requests"].as_u64().unwrap();
        assert!(
            publishes > 12 || fault.starts_with("stall"),
            "{fault}: {st}"
        );
    }
}

/// AMS refuses the token after 5 messages: the run stops, those 5 are
/// removed, the rest stay queued and unlocked, exit 1.
#[test]
fn unauthorized_midway_stops_and_keeps_the_rest_queued() {
    let s = Setup::with_messages(&["--fault", "401:after=5"], 20, 1_000);
    let outcome = s.run(s.cfg().set("sender", "ams_concurrency", 1).set(
        "sender",
        "ams_max_messages_per_request",
        1,
    ));
    assert_eq!(outcome.code, 1, "{}", outcome.log);
    assert!(outcome.log.contains("GOCDB"), "{}", outcome.log);
    let stored = assert_stored_intact(&s);
    assert_eq!(stored, s.names[..5].iter().cloned().collect());
    assert_eq!(s.remaining(), s.names[5..]);
    assert!(send::locks(&s.queue).is_empty());
    assert!(
        outcome.log.contains("15 left in the queue"),
        "{}",
        outcome.log
    );
}

/// A configured token AMS does not know, or a host certificate authx509
/// maps to no user: nothing is locked, nothing published, exit 1.
#[test]
fn refused_credentials_publish_nothing() {
    let s = Setup::with_messages(&[], 5, 1_000);
    let outcome = s.run(s.cfg().set("messaging", "token", "not-the-token"));
    assert_eq!(outcome.code, 1, "{}", outcome.log);
    assert!(!outcome.log.contains("not-the-token"), "token logged");
    // The configured token was refused: GOCDB has nothing to do with it.
    assert!(
        outcome
            .log
            .contains("AMS refused the configured token ([messaging] token in sender.cfg"),
        "{}",
        outcome.log
    );
    assert!(!outcome.log.contains("GOCDB"), "{}", outcome.log);
    assert_eq!(s.remaining(), s.names);
    assert!(send::locks(&s.queue).is_empty());
    assert_eq!(stats(&s)["messages"], 0);

    let s = Setup::with_messages(&["--authn-dn", "/CN=someone else"], 5, 1_000);
    let outcome = s.run(s.cfg());
    assert_eq!(outcome.code, 1, "{}", outcome.log);
    // authx509 refused the host certificate: its DN must be in GOCDB.
    assert!(
        outcome.log.contains("registered in GOCDB"),
        "{}",
        outcome.log
    );
    assert!(!outcome.log.contains("configured token"), "{}", outcome.log);
    assert_eq!(s.remaining(), s.names);
    assert!(send::locks(&s.queue).is_empty());
    assert_eq!(stats(&s)["publish_requests"], 0);
}

/// AMS unreachable: the error names scheme, host and port, not only a path.
#[test]
fn an_unreachable_ams_is_named_with_host_and_port() {
    let s = Setup::with_messages(&[], 2, 1_000);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let outcome = s.run(s.cfg().set("sender", "ams_port", port).set(
        "messaging",
        "token",
        "a-token",
    ));
    assert_eq!(outcome.code, 1, "{}", outcome.log);
    let want = format!(
        "https://127.0.0.1:{port}/v1/projects/accounting/topics/eu-egi-cloud-accounting:publish: \
         still failing after 5 attempt(s)"
    );
    assert!(outcome.log.contains(&want), "{want}\n{}", outcome.log);
    assert!(!outcome.log.contains("a-token"), "token logged");
    assert_eq!(s.remaining(), s.names);
}

/// The uid the run below gets: nobody's under setpriv, else our own.
fn run_uid() -> u32 {
    if crate::support::is_root() {
        65534
    } else {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() }
    }
}

/// Runs ssmsend so that reading `unreadable` fails with EACCES: as root,
/// as nobody with the test's own files given to nobody (a root file of
/// mode 0600, or in a root directory of mode 0700, stays out of reach);
/// otherwise with `unreadable` set to mode 000.
fn run_denied(s: &Setup, cfg: SenderCfg, unreadable: &std::path::Path) -> send::Run {
    let cfg = cfg.write(&s.dir.path().join("sender.cfg"));
    if crate::support::is_root() {
        send::run_unprivileged(&cfg, &[s.dir.path(), s.pki.dir()])
    } else {
        let before = std::fs::metadata(unreadable).unwrap().permissions();
        send::make_unreadable(unreadable);
        let run = send::run(&cfg);
        std::fs::set_permissions(unreadable, before).unwrap();
        run
    }
}

/// A host key the sender's uid cannot read (root's, mode 0600, as on a
/// migrated host): exit 2 naming the uid and the fix; nothing is sent.
#[test]
fn an_unreadable_key_names_the_uid_and_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    let s = Setup::with_messages(&[], 2, 1_000);
    let keys = tempfile::tempdir().unwrap();
    std::fs::set_permissions(keys.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let key = keys.path().join("hostkey.pem");
    std::fs::copy(&s.host.key_path, &key).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let cfg = s.cfg().set("certificates", "key", key.display());
    let outcome = run_denied(&s, cfg, &key);
    assert_eq!(outcome.code, 2, "{}", outcome.log);
    let uid = run_uid();
    let k = key.display();
    for want in [
        format!("cannot read key {k}: Permission denied"),
        format!("ssmsend runs as uid {uid}"),
        format!("chown {uid} {k}, or point [certificates] key at a copy owned by uid {uid}"),
        "README: Migrating from the Python images".to_owned(),
    ] {
        assert!(outcome.log.contains(&want), "{want}\n{}", outcome.log);
    }
    assert_eq!(s.remaining(), s.names);
    assert_eq!(stats(&s)["publish_requests"], 0);
}

/// A host certificate in a directory the sender's uid may not enter: the
/// error names that directory, not the file's owner.
#[test]
fn a_certificate_behind_a_closed_directory_names_the_directory() {
    use std::os::unix::fs::PermissionsExt;
    let s = Setup::with_messages(&[], 1, 1_000);
    // Root's (or ours), mode 0700.
    let closed = tempfile::tempdir().unwrap();
    std::fs::set_permissions(closed.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let cert = closed.path().join("hostcert.pem");
    std::fs::copy(&s.host.cert_path, &cert).unwrap();
    let cfg = s.cfg().set("certificates", "certificate", cert.display());
    let outcome = run_denied(&s, cfg, closed.path());
    assert_eq!(outcome.code, 2, "{}", outcome.log);
    let uid = run_uid();
    let d = closed.path().display();
    for want in [
        format!(
            "cannot read certificate {}: Permission denied",
            cert.display()
        ),
        format!("ssmsend runs as uid {uid}, which may not enter {d}"),
        format!("point [certificates] certificate at a copy uid {uid} can reach"),
    ] {
        assert!(outcome.log.contains(&want), "{want}\n{}", outcome.log);
    }
    assert_eq!(s.remaining(), s.names);
}

/// A publish with no reply within the receipt timeout may have been stored:
/// it is not repeated in this run (it stays queued), the run stops, exit 1.
#[test]
fn stall_beyond_the_timeout_is_not_repeated() {
    let s = Setup::with_messages(&["--fault", "stall=3s:nth=4"], 10, 1_000);
    let outcome = s.run(
        s.cfg()
            .set("sender", "ams_concurrency", 1)
            .set("sender", "ams_max_messages_per_request", 1)
            .set("sender", "receipt_timeout", "1s"),
    );
    assert_eq!(outcome.code, 1, "{}", outcome.log);
    assert!(outcome.log.contains("may or may not"), "{}", outcome.log);
    assert_eq!(s.remaining(), s.names[3..]);
    assert!(send::locks(&s.queue).is_empty());
    // Once its stall is over the double stores the 4th message, once.
    std::thread::sleep(Duration::from_secs(3));
    let stored = assert_stored_intact(&s);
    assert_eq!(stored, s.names[..4].iter().cloned().collect());
    assert_eq!(stats(&s)["publish_requests"], 4);
}

/// What the double stored for the parts of element `name` (empaid
/// `<name>.<label>`), by label in record order: each verified with the CLI.
fn stored_parts(s: &Setup, name: &str) -> Vec<(String, Vec<u8>)> {
    rt().block_on(async {
        let mut parts = Vec::new();
        for m in s.double.messages().await {
            let id = m["empaid"].as_str().unwrap();
            let Some(label) = id.strip_prefix(&format!("{name}.")) else {
                continue;
            };
            let data = s.double.data(m["seq"].as_u64().unwrap()).await;
            let v = openssl_verify(&data, s.pki.capath());
            assert_eq!(v.signer_dn, HOST_DN, "{id}");
            parts.push((label.to_owned(), v.content));
        }
        // "1.2" before "2": labels in record order.
        parts.sort_by_key(|(l, _)| {
            l.split('.')
                .map(|n| n.parse::<u32>().unwrap())
                .collect::<Vec<_>>()
        });
        parts
    })
}

/// AMS refuses a message as too large (413, AMS's own per-message limit
/// set low): it is sent in parts split at its `%%` separators, each signed,
/// every record once and in order; the element is removed, the others sent
/// whole, exit 0.
#[test]
fn a_message_too_large_for_ams_is_sent_in_parts() {
    let mut bodies: Vec<Vec<u8>> = (0..8).map(|i| message(i, 1_000)).collect();
    bodies.insert(3, message(99, 80_000));
    let s = Setup::new(&["--max-message-size", "30000"], bodies);
    let outcome = s.run(s.cfg());
    assert_eq!(outcome.code, 0, "{}", outcome.log);
    let big = &s.names[3];
    let parts = stored_parts(&s, big);
    assert!(parts.len() >= 4, "{} parts", parts.len());
    let mut records = Vec::new();
    for (label, content) in &parts {
        assert!(
            content.starts_with(b"APEL-cloud-message: v0.4\n"),
            "part {label}"
        );
        records.extend(vmuuids(content));
    }
    assert_eq!(records, vmuuids(&s.queued[big]));
    let stats = stats(&s);
    assert_eq!(stats["duplicates"], 0, "{stats}");
    assert_eq!(stats["signatures"]["all_verified"], true, "{stats}");
    let whole: BTreeSet<String> = rt()
        .block_on(s.double.messages())
        .iter()
        .map(|m| m["empaid"].as_str().unwrap().to_owned())
        .filter(|id| !id.starts_with(&format!("{big}.")))
        .collect();
    let mut want: BTreeSet<String> = s.names.iter().cloned().collect();
    want.remove(big);
    assert_eq!(whole, want);
    assert!(s.remaining().is_empty());
    assert!(send::rejected(&s.dir.path().join("reject")).is_empty());
    assert!(
        summary_of(&outcome.log).contains("1 sent in parts after a refusal for size"),
        "{}",
        outcome.log
    );
}

/// One record too large for AMS on its own, among small ones: it goes to
/// reject/ as a part of its message, with the reason, every other record
/// is sent, the element is removed, exit 1 (a record needs the operator).
/// A message that is one record only is rejected whole, as before.
#[test]
fn a_record_too_large_on_its_own_goes_to_reject_and_the_rest_is_sent() {
    let mut big = String::from("APEL-cloud-message: v0.4\n");
    for n in 0..40 {
        big.push_str(&format!("VMUUID: vm-{n}\nSiteName: S\n"));
        if n == 25 {
            big.push_str(&format!("MachineName: {}\n", "x".repeat(40_000)));
        }
        big.push_str("%%\n");
    }
    let alone = format!(
        "APEL-cloud-message: v0.4\nVMUUID: alone\nSiteName: S\nMachineName: {}\n%%\n",
        "y".repeat(40_000)
    );
    let bodies = vec![message(0, 1_000), big.into_bytes(), alone.into_bytes()];
    let s = Setup::new(&["--max-message-size", "30000"], bodies);
    let outcome = s.run(s.cfg());
    assert_eq!(outcome.code, 1, "{}", outcome.log);
    let parts = stored_parts(&s, &s.names[1]);
    let sent: Vec<String> = parts.iter().flat_map(|(_, c)| vmuuids(c)).collect();
    let want: Vec<String> = (0..40)
        .filter(|&n| n != 25)
        .map(|n| format!("vm-{n}"))
        .collect();
    assert_eq!(sent, want);
    let reasons = send::rejected(&s.dir.path().join("reject"));
    let file = |i: usize| s.names[i].split('/').nth(1).unwrap().to_owned();
    let (part, reason) = reasons
        .iter()
        .find(|(k, _)| k.starts_with(&format!("{}.part-", file(1))))
        .unwrap_or_else(|| panic!("{reasons:?}"));
    assert!(
        reason.contains("HTTP 413") && reason.contains("a single record of"),
        "{reason}"
    );
    let rejected = std::fs::read(s.dir.path().join("reject").join(part)).unwrap();
    assert_eq!(vmuuids(&rejected), ["vm-25"]);
    // The lone record: rejected whole.
    assert!(
        reasons[&file(2)].contains("HTTP 413")
            && reasons[&file(2)].contains("holds a single record"),
        "{reasons:?}"
    );
    assert!(s.remaining().is_empty());
    let line = summary_of(&outcome.log);
    assert!(
        line.contains("1 rejected") && line.contains("1 record(s) too large to send on their own"),
        "{line}"
    );
}

/// AMS refuses access while parts are being sent: the element is kept
/// whole in the queue for the next run (nothing lost), the parts already
/// sent are counted (they will be sent again), exit 1.
#[test]
fn a_failure_between_parts_keeps_the_element_whole() {
    // Request 1: the whole (413); 2: part 1 (413); 3, 4: parts 1.1, 1.2;
    // then refused.
    let s = Setup::new(
        &["--max-message-size", "30000", "--fault", "403:after=4"],
        vec![message(7, 80_000)],
    );
    let outcome = s.run(s.cfg());
    assert_eq!(outcome.code, 1, "{}", outcome.log);
    assert_eq!(s.remaining(), s.names);
    let parts = stored_parts(&s, &s.names[0]);
    assert!(!parts.is_empty(), "{}", outcome.log);
    assert!(
        outcome.log.contains("already sent will be sent again"),
        "{}",
        outcome.log
    );
    assert!(send::rejected(&s.dir.path().join("reject")).is_empty());
}

/// Two ssmsend processes on one queue: every empaid stored once.
#[test]
fn two_senders_on_one_queue_publish_each_message_once() {
    let s = Setup::with_messages(&[], 300, 1_500);
    let cfg = s.cfg().write(&s.dir.path().join("sender.cfg"));
    let spawn = || {
        send::command(&cfg)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    for o in [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()] {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    // 300 CLI runs would only repeat the other tests: the double's own check
    // (the receiver's, in process) covers every message here.
    let st = stats(&s);
    assert_eq!(st["duplicates"], 0, "{st}");
    assert_eq!(st["messages"], 300, "{st}");
    assert_eq!(st["distinct_empaids"], 300, "{st}");
    assert_eq!(st["signatures"]["all_verified"], true, "{st}");
    assert_eq!(st["signatures"]["signer_dns"][0], HOST_DN, "{st}");
    assert!(s.remaining().is_empty());
}

/// With server_cert the published data is an S/MIME envelope that the
/// server's key opens, holding the host-signed message.
#[test]
fn encrypted_messages_decrypt_with_the_server_key_then_verify() {
    let s = Setup::with_messages(&[], 5, 3_000);
    let outcome = s.run(
        s.cfg()
            .set("certificates", "server_cert", s.server.cert_path.display()),
    );
    assert_eq!(outcome.code, 0, "{}", outcome.log);
    rt().block_on(async {
        let messages = s.double.messages().await;
        assert_eq!(messages.len(), 5);
        for m in messages {
            let id = m["empaid"].as_str().unwrap();
            let data = s.double.data(m["seq"].as_u64().unwrap()).await;
            let signed = send::openssl_decrypt(&data, &s.server.cert_path, &s.server.key_path);
            let v = openssl_verify(&signed, s.pki.capath());
            assert_eq!(v.signer_dn, HOST_DN);
            assert!(v.content == s.queued[id], "{id}: content differs");
        }
    });
}

/// The log's last line, without its time and level.
fn summary_of(log: &str) -> &str {
    let last = log.lines().last().unwrap_or("");
    last.split_once("  INFO ")
        .or_else(|| last.split_once(" ERROR "))
        .or_else(|| last.split_once("  WARN "))
        .map_or(last, |(_, m)| m)
}

/// Issue 18, points 11-12: operator lines (no module path, each message id
/// once, as `message ID:`) and one summary line: all sent, to where, via
/// which AMS.
#[test]
fn all_sent_ends_with_one_summary_line() {
    let s = Setup::with_messages(&[], 6, 1_000);
    let outcome = s.run(s.cfg());
    assert_eq!(outcome.code, 0, "{}", outcome.log);
    for line in outcome.log.lines() {
        assert!(!line.contains("cloud_accounting::"), "module path: {line}");
        assert!(!line.contains("msg{"), "span syntax: {line}");
    }
    for id in &s.names {
        let lines: Vec<&str> = outcome
            .log
            .lines()
            .filter(|l| l.contains(id.as_str()))
            .collect();
        assert_eq!(lines.len(), 1, "{id}: {}", outcome.log);
        assert_eq!(lines[0].matches(id.as_str()).count(), 1, "{}", lines[0]);
        assert!(
            lines[0].contains(&format!("INFO message {id}: sent, Argo ID ")),
            "{}",
            lines[0]
        );
    }
    assert_eq!(
        summary_of(&outcome.log),
        format!(
            "6/6 messages sent to eu-egi-cloud-accounting via AMS 127.0.0.1:{}",
            s.double.ams_port
        ),
        "{}",
        outcome.log
    );
}

/// A message that is not ASCII is rejected: the summary counts it, exit 1,
/// and the line is not repeated as an error after it.
#[test]
fn some_rejected_summary_line() {
    let mut bodies: Vec<Vec<u8>> = (0..4).map(|i| message(i, 500)).collect();
    bodies[2] = b"APEL-cloud-message: v0.4\nVMUUID: caf\xc3\xa9\n%%\n".to_vec();
    let s = Setup::new(&[], bodies);
    let outcome = s.run(s.cfg());
    assert_eq!(outcome.code, 1, "{}", outcome.log);
    let summary = summary_of(&outcome.log);
    assert!(
        summary.starts_with(&format!(
            "3/4 messages sent to eu-egi-cloud-accounting via AMS 127.0.0.1:{}, 1 rejected (",
            s.double.ams_port
        )),
        "{}",
        outcome.log
    );
    assert!(
        outcome.log.lines().last().unwrap().contains(" ERROR "),
        "{}",
        outcome.log
    );
    assert_eq!(
        outcome.log.matches("3/4 messages sent").count(),
        1,
        "{}",
        outcome.log
    );
    let rejected = &s.names[2];
    assert!(
        outcome.log.contains(&format!(
            "ERROR message {rejected}: rejected: not ASCII text"
        )),
        "{}",
        outcome.log
    );
}

/// An empty queue: nothing to send, said once, exit 0, nothing asked of AMS.
#[test]
fn nothing_to_send_summary_line() {
    let s = Setup::new(&[], Vec::new());
    let outcome = s.run(s.cfg());
    assert_eq!(outcome.code, 0, "{}", outcome.log);
    assert_eq!(
        summary_of(&outcome.log),
        format!("nothing to send: no messages in {}", s.queue.display()),
        "{}",
        outcome.log
    );
    assert_eq!(stats(&s)["publish_requests"], 0);
}

/// The run report beside the queue's directory: the summary's counts, per
/// destination; "ok" after a clean run, "partial" when one was rejected.
#[test]
fn the_run_report_beside_the_queue_has_the_counts() {
    let mut bodies: Vec<Vec<u8>> = (0..4).map(|i| message(i, 1_000)).collect();
    // One record too large for AMS: it cannot be sent in parts.
    let one = format!(
        "APEL-cloud-message: v0.4\nVMUUID: big\nSiteName: S\nMachineName: {}\n%%\n",
        "x".repeat(80_000)
    );
    bodies.insert(1, one.into_bytes());
    let s = Setup::new(&["--fault", "413:size>50000"], bodies);
    let path = s.queue.parent().unwrap().join("ssmsend.last-run.json");
    let outcome = s.run(s.cfg());
    assert_eq!(outcome.code, 1, "{}", outcome.log);
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(r["schema"], 1, "{r:#}");
    assert_eq!(r["program"], "ssmsend");
    assert_eq!(r["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(r["outcome"], "partial", "{r:#}");
    assert_eq!(r["queue"], s.queue.to_str().unwrap());
    let d = &r["destinations"][0];
    assert_eq!(d["destination"], "eu-egi-cloud-accounting", "{d}");
    assert_eq!(
        (&d["found"], &d["sent"], &d["rejected"], &d["left"]),
        (&5.into(), &4.into(), &1.into(), &0.into()),
        "{d}"
    );
    assert_eq!(d["error"], serde_json::Value::Null, "{d}");
    assert!(
        summary_of(&outcome.log).starts_with(&format!(
            "4/5 messages sent to eu-egi-cloud-accounting via {}",
            d["via"].as_str().unwrap()
        )),
        "{}",
        outcome.log
    );

    // Nothing left: "ok", the report replaced.
    let outcome = s.run(s.cfg());
    assert_eq!(outcome.code, 0, "{}", outcome.log);
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(r["outcome"], "ok", "{r:#}");
    assert_eq!(r["destinations"][0]["found"], 0, "{r:#}");
}

/// A message the APEL loader would reject (record 2 has no SiteName) goes to
/// reject/ with a reason naming the record; the good ones are published.
/// With `loader_checks = false` it is sent as it is.
#[test]
fn a_message_the_apel_loader_would_reject_is_not_sent() {
    let bad =
        b"APEL-cloud-message: v0.4\nVMUUID: ok-1\nSiteName: S\n%%\nVMUUID: no-site\n%%\n".to_vec();
    let mut bodies: Vec<Vec<u8>> = (0..3).map(|i| message(i, 500)).collect();
    bodies.insert(1, bad.clone());
    let s = Setup::new(&[], bodies);
    let outcome = s.run(s.cfg());
    assert_eq!(outcome.code, 1, "{}", outcome.log);
    let stored = assert_stored_intact(&s);
    let mut want: BTreeSet<String> = s.names.iter().cloned().collect();
    want.remove(&s.names[1]);
    assert_eq!(stored, want);
    let reasons = send::rejected(&s.dir.path().join("reject"));
    let file = s.names[1].split('/').nth(1).unwrap();
    assert!(
        reasons[file].contains(
            "APEL loader would reject record 2 of 2 (VMUUID \"no-site\"): mandatory field SiteName is missing"
        ),
        "{reasons:?}"
    );

    let s = Setup::new(&[], vec![bad]);
    let outcome = s.run(s.cfg().set("sender", "loader_checks", "false"));
    assert_eq!(outcome.code, 0, "{}", outcome.log);
    assert_eq!(assert_stored_intact(&s).len(), 1);
}

/// SIGKILL while filled requests are in flight (each stalls 400 ms at the
/// double): nothing is lost, every message is stored or still queued. A
/// message both stored and still queued will be sent again by the next run:
/// only messages of requests in flight at the kill can be (2 requests of 10
/// at most), and the count is printed.
#[test]
fn sigkill_during_filled_requests_loses_nothing() {
    let s = Setup::with_messages(&["--fault", "stall=400ms:every=1"], 120, 2_000);
    let cfg = s
        .cfg()
        .set("sender", "ams_concurrency", 2)
        .set("sender", "ams_max_messages_per_request", 10)
        .write(&s.dir.path().join("sender.cfg"));
    let mut child = send::command(&cfg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // About three rounds of requests in: some answered, two in flight.
    std::thread::sleep(Duration::from_millis(1_500));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // The double may still be answering a stalled request: let it finish.
    std::thread::sleep(Duration::from_millis(600));
    let stored = assert_stored_intact(&s);
    let queued: BTreeSet<String> = s.remaining().into_iter().collect();
    let all: BTreeSet<String> = s.names.iter().cloned().collect();
    let union: BTreeSet<String> = stored.union(&queued).cloned().collect();
    assert_eq!(union, all, "lost: {:?}", all.difference(&union));
    assert!(
        !stored.is_empty() && !queued.is_empty(),
        "killed too early or late"
    );
    let again = stored.intersection(&queued).count();
    eprintln!(
        "SIGKILL: {} stored, {} queued, {again} stored and still queued (would be sent again)",
        stored.len(),
        queued.len()
    );
    assert!(again <= 20, "{again} messages would be sent twice");
}
