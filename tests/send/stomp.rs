//! `ssmsend` end to end over STOMP against the private ActiveMQ of
//! `scripts/setup-activemq.sh`: a consumer receives every message and checks
//! it as the APEL receiver does, with the `openssl smime` CLI.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use cloud_accounting::spool::Layout;

use crate::support::activemq::{Broker, Received, Subscriber, unique_queue};
use crate::support::pki::{HOST_DN, Pki};
use crate::support::send;
use crate::support::send::{SenderCfg, Spooled, message, openssl_verify, vmuuids};
use crate::support::stomp_proxy::{Proxy, Rule};

const WAIT: Duration = Duration::from_secs(60);
const QUIET: Duration = Duration::from_secs(2);

/// sender.cfg for STOMP+SSL to the test broker, signing with its client
/// certificate (the "host certificate" of these tests).
fn ssl_cfg(broker: &Broker, destination: &str, queue: &Path, layout: Layout) -> SenderCfg {
    SenderCfg::stomp(broker.ssl_port, true, destination)
        .credentials(&broker.client_cert, &broker.client_key, &broker.capath)
        .queue(queue, layout)
}

async fn run(cfg: PathBuf) -> send::Run {
    tokio::task::spawn_blocking(move || send::run(&cfg))
        .await
        .unwrap()
}

/// Every message verifies against the test CA with the CLI, was signed by
/// `signer_dn`, carries its element name as `empa-id`, and its content is the
/// queued message, byte for byte.
fn assert_intact(
    received: &[Received],
    queued: &BTreeMap<String, Vec<u8>>,
    capath: &Path,
    signer_dn: &str,
) {
    for r in received {
        let id = r.empa_id.as_deref().expect("empa-id header");
        let receipt = r.headers.iter().find(|(k, _)| k == "receipt");
        assert!(
            receipt.is_none(),
            "the receipt header is the broker's: {r:?}"
        );
        let v = openssl_verify(&r.body, capath);
        assert_eq!(v.signer_dn, signer_dn, "{id}");
        let want = queued
            .get(id)
            .unwrap_or_else(|| panic!("{id} was never queued"));
        assert!(v.content == *want, "{id}: content differs from the queue");
    }
}

fn ids(received: &[Received]) -> Vec<String> {
    received
        .iter()
        .map(|r| r.empa_id.clone().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_delivers_every_message_signed_by_the_host_and_intact() {
    let broker = Broker::get();
    let dest = unique_queue("send-ssl");
    let mut bodies: Vec<Vec<u8>> = (0..24).map(|i| message(i, 200 + i * 2_500)).collect();
    // A 300 kB message and one with lines longer than OpenSSL's 1023-byte
    // line buffer.
    bodies.push(message(100, 300_000));
    let mut long = b"APEL-cloud-message: v0.4\nMachineName: ".to_vec();
    long.extend(vec![b'L'; 2500]);
    long.extend(b"\nVMUUID: end\nSiteName: S\n");
    bodies.push(long);
    let s = Spooled::dirq(bodies);

    let mut sub = Subscriber::subscribe(&broker, &dest).await;
    let cfg = ssl_cfg(&broker, &dest, &s.queue, Layout::Dirq).write(&s.path("sender.cfg"));
    let outcome = run(cfg).await;
    assert_eq!(outcome.code, 0, "{}", outcome.log);
    let received = sub.collect_exactly(s.queued.len(), WAIT, QUIET).await;
    // Sent in queue order, each once.
    assert_eq!(ids(&received), s.names);
    assert_intact(
        &received,
        &s.queued,
        &broker.capath,
        &send::cli_subject(&broker.client_cert),
    );
    assert!(send::remaining(&s.queue, Layout::Dirq).is_empty());
    assert!(send::locks(&s.queue).is_empty());
    assert!(
        outcome.log.contains("26/26 messages sent to"),
        "{}",
        outcome.log
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_messages_decrypt_with_the_server_key_then_verify() {
    let broker = Broker::get();
    let dest = unique_queue("send-encrypted");
    let s = Spooled::dirq((0..6).map(|i| message(i, 5_000 + i * 9_000)).collect());
    // The broker's certificate stands in for the APEL server's.
    let pki_dir = broker.ca_cert.parent().unwrap();
    let (server_cert, server_key) = (pki_dir.join("broker.pem"), pki_dir.join("broker.key"));

    let mut sub = Subscriber::subscribe(&broker, &dest).await;
    let cfg = ssl_cfg(&broker, &dest, &s.queue, Layout::Dirq)
        .set("certificates", "server_cert", server_cert.display())
        .set("messaging", "encryption", "aes256")
        .write(&s.path("sender.cfg"));
    let outcome = run(cfg).await;
    assert_eq!(outcome.code, 0, "{}", outcome.log);
    let received = sub.collect_exactly(s.queued.len(), WAIT, QUIET).await;
    let host_dn = send::cli_subject(&broker.client_cert);
    for r in &received {
        let text = String::from_utf8_lossy(&r.body);
        assert!(
            text.contains("smime-type=enveloped-data"),
            "not encrypted: {text:.200}"
        );
        let signed = send::openssl_decrypt(&r.body, &server_cert, &server_key);
        let v = openssl_verify(&signed, &broker.capath);
        assert_eq!(v.signer_dn, host_dn);
        let id = r.empa_id.as_deref().unwrap();
        assert!(v.content == s.queued[id], "{id}: content differs");
    }
}

/// The broker goes away after confirming 10 messages: those are removed,
/// every other one stays queued (none sent twice in the run), exit 1; the
/// next run sends the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_lost_mid_run_keeps_the_unconfirmed_queued() {
    let broker = Broker::get();
    let dest = unique_queue("send-cut");
    let s = Spooled::dirq((0..60).map(|i| message(i, 3_000)).collect());
    let pki = Pki::new();
    let host = pki.host();

    let mut sub = Subscriber::subscribe(&broker, &dest).await;
    let proxy = Proxy::start(broker.stomp_port, Rule::CutAfterReceipts(10)).await;
    let cfg = SenderCfg::stomp(proxy.port, false, &dest)
        .credentials(&host.cert_path, &host.key_path, pki.capath())
        .queue(&s.queue, Layout::Dirq)
        .set("sender", "window", 8);
    let first = run(cfg.write(&s.path("cut.cfg"))).await;
    assert_eq!(first.code, 1, "{}", first.log);
    let left = send::remaining(&s.queue, Layout::Dirq);
    assert_eq!(left.len(), 50, "{}", first.log);
    assert!(send::locks(&s.queue).is_empty(), "every lock released");
    let got_first = sub.collect_until_quiet(QUIET).await;
    let first_ids = ids(&got_first);
    let distinct: BTreeSet<&String> = first_ids.iter().collect();
    assert_eq!(distinct.len(), first_ids.len(), "sent twice in one run");
    // Removed = confirmed, so certainly received.
    let removed: BTreeSet<&String> = s.names.iter().filter(|n| !left.contains(n)).collect();
    assert!(removed.is_subset(&distinct));
    assert!(first.log.contains("50 left in the queue"), "{}", first.log);

    let direct = cfg
        .set("broker", "port", broker.stomp_port)
        .write(&s.path("direct.cfg"));
    let second = run(direct).await;
    assert_eq!(second.code, 0, "{}", second.log);
    assert!(send::remaining(&s.queue, Layout::Dirq).is_empty());
    let got_second = sub.collect_until_quiet(QUIET).await;
    let all: BTreeSet<String> = first_ids.into_iter().chain(ids(&got_second)).collect();
    assert_eq!(all, s.names.iter().cloned().collect(), "nothing lost");
    let second_ids = ids(&got_second);
    let distinct2: BTreeSet<&String> = second_ids.iter().collect();
    assert_eq!(distinct2.len(), second_ids.len(), "sent twice in one run");
}

/// An expired host certificate or a key of another certificate: exit 2
/// before the queue is touched or the broker contacted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_exit_2_and_send_nothing() {
    let broker = Broker::get();
    let pki = Pki::new();
    for (label, id) in [
        ("expired", pki.expired()),
        ("wrong key", pki.mismatched_key()),
    ] {
        let dest = unique_queue("send-badcred");
        let s = Spooled::dirq(vec![message(1, 500), message(2, 500)]);
        let mut sub = Subscriber::subscribe(&broker, &dest).await;
        let cfg = SenderCfg::stomp(broker.stomp_port, false, &dest)
            .credentials(&id.cert_path, &id.key_path, pki.capath())
            .queue(&s.queue, Layout::Dirq)
            .write(&s.path("sender.cfg"));
        let outcome = run(cfg).await;
        assert_eq!(outcome.code, 2, "{label}: {}", outcome.log);
        let why = if label == "expired" {
            "expired on"
        } else {
            "do not match"
        };
        assert!(outcome.log.contains(why), "{label}: {}", outcome.log);
        assert_eq!(send::remaining(&s.queue, Layout::Dirq), s.names, "{label}");
        assert!(send::locks(&s.queue).is_empty(), "{label}");
        assert!(sub.collect_until_quiet(QUIET).await.is_empty(), "{label}");
    }
}

/// Unreadable, empty, non-ASCII and over-1-MB messages go to `reject/`
/// beside the queue with the reason; all the others are sent; exit 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsendable_messages_are_rejected_and_the_rest_sent() {
    let broker = Broker::get();
    let dest = unique_queue("send-reject");
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let queue = spool.join("outgoing");
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("unreadable", message(1, 800)),
        ("empty", Vec::new()),
        (
            "not ASCII",
            "APEL-cloud-message: v0.4\nSiteName: Zürich\n".into(),
        ),
        ("over the limit", {
            let mut big = message(3, 990_000);
            big.resize(1_000_001, b'x');
            big
        }),
    ];
    let mut bodies: Vec<Vec<u8>> = bad.iter().map(|(_, b)| b.clone()).collect();
    bodies.extend((10..16).map(|i| message(i, 1_000)));
    let names = send::fill(&queue, Layout::Dirq, &bodies);
    send::make_unreadable(&queue.join(&names[0]));
    let pki = Pki::new();
    let host = pki.host();

    let mut sub = Subscriber::subscribe(&broker, &dest).await;
    let cfg = SenderCfg::stomp(broker.stomp_port, false, &dest)
        .credentials(&host.cert_path, &host.key_path, pki.capath())
        .queue(&queue, Layout::Dirq)
        .write(&dir.path().join("sender.cfg"));
    let (work, pki_dir) = (dir.path().to_path_buf(), pki.dir().to_path_buf());
    let outcome =
        tokio::task::spawn_blocking(move || send::run_unprivileged(&cfg, &[&work, &pki_dir]))
            .await
            .unwrap();
    assert_eq!(outcome.code, 1, "{}", outcome.log);
    let received = sub.collect_exactly(6, WAIT, QUIET).await;
    assert_eq!(ids(&received), names[4..]);
    let queued: BTreeMap<String, Vec<u8>> = names.iter().cloned().zip(bodies).collect();
    assert_intact(&received, &queued, pki.capath(), HOST_DN);

    let reasons = send::rejected(&spool.join("reject"));
    let want = [
        "unreadable: cannot read",
        "empty message",
        "not ASCII text: byte 0xc3 at offset 36",
        "message larger than the limit of 1000000 bytes",
    ];
    assert_eq!(reasons.len(), 4, "{reasons:?}\n{}", outcome.log);
    for ((label, _), (name, want)) in bad.iter().zip(names.iter().zip(want)) {
        let file = name.split('/').nth(1).unwrap();
        let reason = &reasons[file];
        assert!(reason.starts_with(want), "{label}: {reason}");
    }
    assert!(send::remaining(&queue, Layout::Dirq).is_empty());
    assert!(outcome.log.contains("4 rejected"), "{}", outcome.log);
}

/// A queue written by Python dirq 1.8 (what cASO writes) is sent completely.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_dirq_queue_is_sent_completely() {
    let broker = Broker::get();
    let dest = unique_queue("send-pydirq");
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("outgoing");
    let python = crate::support::python::python();
    let oracle = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracle/dirq_oracle.py");
    let out = std::process::Command::new(&python)
        .arg(&oracle)
        .arg("add")
        .arg(&queue)
        .args(["40", "record from python"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut queued = BTreeMap::new();
    for (i, line) in String::from_utf8(out.stdout).unwrap().lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        queued.insert(
            v["name"].as_str().unwrap().to_owned(),
            format!("record from python {i}\n").into_bytes(),
        );
    }
    assert_eq!(queued.len(), 40);

    let mut sub = Subscriber::subscribe(&broker, &dest).await;
    // The bodies are Python's text, not APEL records: only the layout is tested.
    let cfg = ssl_cfg(&broker, &dest, &queue, Layout::Dirq)
        .set("sender", "loader_checks", "false")
        .write(&dir.path().join("sender.cfg"));
    let outcome = run(cfg).await;
    assert_eq!(outcome.code, 0, "{}", outcome.log);
    let received = sub.collect_exactly(40, WAIT, QUIET).await;
    assert_intact(
        &received,
        &queued,
        &broker.capath,
        &send::cli_subject(&broker.client_cert),
    );
    assert!(send::remaining(&queue, Layout::Dirq).is_empty());
    // Python dirq sees an empty queue too.
    let out = std::process::Command::new(&python)
        .arg(&oracle)
        .arg("count")
        .arg(&queue)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        r#"{"count": 0}"#
    );
}

/// SSM's flat `directory` layout: sent oldest (mtime) first, whatever the
/// names, and removed once confirmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_layout_is_sent_in_mtime_order() {
    let broker = Broker::get();
    let dest = unique_queue("send-directory");
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("outgoing");
    std::fs::create_dir(&queue).unwrap();
    let base = SystemTime::now() - Duration::from_secs(3600);
    let mut queued = BTreeMap::new();
    let mut order = Vec::new();
    // Names sort in the opposite order of their mtimes.
    for i in 0..12u64 {
        let name = format!("msg-{:02}", 99 - i);
        let path = queue.join(&name);
        let body = message(i as usize, 700);
        std::fs::write(&path, &body).unwrap();
        let t = base + Duration::from_secs(i * 10);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(t)
            .unwrap();
        queued.insert(name.clone(), body);
        order.push(name);
    }

    let mut sub = Subscriber::subscribe(&broker, &dest).await;
    let cfg =
        ssl_cfg(&broker, &dest, &queue, Layout::Directory).write(&dir.path().join("sender.cfg"));
    let outcome = run(cfg).await;
    assert_eq!(outcome.code, 0, "{}", outcome.log);
    let received = sub.collect_exactly(12, WAIT, QUIET).await;
    assert_eq!(ids(&received), order);
    assert_intact(
        &received,
        &queued,
        &broker.capath,
        &send::cli_subject(&broker.client_cert),
    );
    assert_eq!(std::fs::read_dir(&queue).unwrap().count(), 0);
}

/// Two ssmsend processes on one dirq queue at once: every message arrives
/// exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_senders_on_one_queue_send_each_message_once() {
    let broker = Broker::get();
    let dest = unique_queue("send-two");
    let s = Spooled::dirq((0..300).map(|i| message(i, 2_000)).collect());

    let mut sub = Subscriber::subscribe(&broker, &dest).await;
    let cfg = ssl_cfg(&broker, &dest, &s.queue, Layout::Dirq)
        .set("sender", "window", 4)
        .write(&s.path("sender.cfg"));
    let spawn = || {
        send::command(&cfg)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (ra, rb) = tokio::task::spawn_blocking(move || {
        (a.wait_with_output().unwrap(), b.wait_with_output().unwrap())
    })
    .await
    .unwrap();
    let log = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(ra.status.success(), "{}", log(&ra));
    assert!(rb.status.success(), "{}", log(&rb));
    let received = sub.collect_exactly(300, WAIT, QUIET).await;
    let got: BTreeSet<String> = ids(&received).into_iter().collect();
    assert_eq!(got.len(), 300, "a message was sent twice");
    assert_eq!(got, s.names.iter().cloned().collect());
    assert!(send::remaining(&s.queue, Layout::Dirq).is_empty());
}

/// No broker listening: nothing is locked or sent, exit 1, the queue is
/// intact for the next run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_broker_exit_1_and_queue_intact() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let s = Spooled::dirq(vec![message(1, 500), message(2, 500)]);
    let pki = Pki::new();
    let host = pki.host();
    let cfg = SenderCfg::stomp(port, false, "/queue/nowhere")
        .credentials(&host.cert_path, &host.key_path, pki.capath())
        .queue(&s.queue, Layout::Dirq)
        .write(&s.path("sender.cfg"));
    let outcome = run(cfg).await;
    assert_eq!(outcome.code, 1, "{}", outcome.log);
    // Host and port, not only "the broker".
    let named = format!("cannot reach STOMP broker 127.0.0.1:{port}: ");
    assert!(outcome.log.contains(&named), "{named}\n{}", outcome.log);
    assert!(
        outcome.log.contains("2 left in the queue"),
        "{}",
        outcome.log
    );
    assert_eq!(send::remaining(&s.queue, Layout::Dirq), s.names);
    assert!(send::locks(&s.queue).is_empty());
}

/// ActiveMQ with `wireFormat.maxFrameSize=100000` refuses a 250 kB message
/// (ERROR, connection closed): the unconfirmed messages are sent again one at
/// a time on a new connection, the big one in parts split at its `%%`
/// separators, every record once and in order, then the rest of the queue;
/// nothing sent twice. A message that is one record over the limit is
/// rejected with the broker's words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_over_the_brokers_limit_is_sent_in_parts() {
    let broker = Broker::get();
    let dest = unique_queue("send-frame-limit");
    let mut bodies: Vec<Vec<u8>> = (0..12).map(|i| message(i, 2_000)).collect();
    bodies.insert(4, message(99, 250_000));
    let one = format!(
        "APEL-cloud-message: v0.4\nVMUUID: alone\nSiteName: S\nMachineName: {}\n%%\n",
        "y".repeat(150_000)
    );
    bodies.insert(9, one.into_bytes());
    let s = Spooled::dirq(bodies);
    let pki = Pki::new();
    let host = pki.host();

    let mut sub = Subscriber::subscribe(&broker, &dest).await;
    let cfg = SenderCfg::stomp(broker.small_frames_port, false, &dest)
        .credentials(&host.cert_path, &host.key_path, pki.capath())
        .queue(&s.queue, Layout::Dirq)
        .write(&s.path("sender.cfg"));
    let outcome = run(cfg).await;
    assert_eq!(outcome.code, 1, "{}", outcome.log);
    let received = sub.collect_until_quiet(QUIET).await;
    let got = ids(&received);
    let distinct: BTreeSet<&String> = got.iter().collect();
    assert_eq!(distinct.len(), got.len(), "sent twice in one run: {got:?}");
    let (big, alone) = (&s.names[4], &s.names[9]);
    let mut whole: Vec<&String> = got
        .iter()
        .filter(|id| !id.starts_with(&format!("{big}.")))
        .collect();
    whole.sort();
    let mut want: Vec<&String> = s
        .names
        .iter()
        .filter(|n| *n != big && *n != alone)
        .collect();
    want.sort();
    assert_eq!(whole, want, "{}", outcome.log);
    // The parts: signed by the host, in record order.
    let mut parts: Vec<(Vec<u32>, Vec<u8>)> = received
        .iter()
        .filter_map(|r| {
            let label = r.empa_id.as_deref()?.strip_prefix(&format!("{big}."))?;
            let v = openssl_verify(&r.body, pki.capath());
            assert_eq!(v.signer_dn, HOST_DN);
            Some((
                label.split('.').map(|n| n.parse().unwrap()).collect(),
                v.content,
            ))
        })
        .collect();
    assert!(parts.len() >= 3, "{} parts\n{}", parts.len(), outcome.log);
    parts.sort();
    let records: Vec<String> = parts.iter().flat_map(|(_, c)| vmuuids(c)).collect();
    assert_eq!(records, vmuuids(&s.queued[big]));
    let others: BTreeMap<String, Vec<u8>> = s
        .queued
        .iter()
        .filter(|(k, _)| *k != big)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let whole_received: Vec<Received> = received
        .iter()
        .filter(|r| others.contains_key(r.empa_id.as_deref().unwrap_or("")))
        .cloned()
        .collect();
    assert_intact(&whole_received, &others, pki.capath(), HOST_DN);
    // The lone record: rejected, with the broker's words.
    let reasons = send::rejected(&s.queue.parent().unwrap().join("reject"));
    let file = alone.split('/').nth(1).unwrap();
    assert!(
        reasons[file].contains("maximum frame size") && reasons[file].contains("single record"),
        "{reasons:?}"
    );
    assert!(
        send::remaining(&s.queue, Layout::Dirq).is_empty(),
        "{}",
        outcome.log
    );
    assert!(send::locks(&s.queue).is_empty());
    assert!(
        outcome
            .log
            .contains("1 sent in parts after a refusal for size"),
        "{}",
        outcome.log
    );
}
