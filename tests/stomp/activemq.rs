//! The STOMP client against the real ActiveMQ from `scripts/setup-activemq.sh`
//! (plain and TLS with client certificates), with a watching relay in between
//! where a test needs to observe or break the link.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroUsize;
use std::time::Duration;

use bytes::Bytes;
use cloud_accounting::stomp::{
    self, BrokerAddress, Connection, Outcome, ProtocolVersion, StompError, TlsSettings,
    TrustAnchors,
};

use crate::support::activemq;
use crate::support::activemq::{Broker, Subscriber, ascii_body, identity, unique_queue};
use crate::support::stomp_proxy::{Proxy, Rule};

const WAIT: Duration = Duration::from_secs(20);
const QUIET: Duration = Duration::from_millis(500);

fn msg_id(i: usize) -> String {
    // dirq element names: 14 hex digits.
    format!("{:08x}{:05x}{:01x}", 0x6920_a6b5 + i / 100, i % 100, i % 16)
}

/// Every outcome until none is left: (confirmed, failed) in arrival order.
async fn drain(conn: &mut Connection) -> (Vec<String>, Vec<String>) {
    let (mut confirmed, mut failed) = (Vec::new(), Vec::new());
    while let Some(outcome) = conn.next_outcome().await {
        match outcome {
            Outcome::Confirmed(id) => confirmed.push(id),
            Outcome::Failed(id) => failed.push(id),
        }
    }
    (confirmed, failed)
}

/// Sends `bodies` as messages `msg_id(0..)`, taking outcomes as they come.
/// Returns (ids accepted by send, confirmed, failed, first send error).
async fn send_all(
    conn: &mut Connection,
    destination: &str,
    bodies: &[Bytes],
) -> (Vec<String>, Vec<String>, Vec<String>, Option<StompError>) {
    let (mut accepted, mut confirmed, mut failed) = (Vec::new(), Vec::new(), Vec::new());
    let mut send_error = None;
    for (i, body) in bodies.iter().enumerate() {
        let id = msg_id(i);
        match conn.send(destination, &id, body.clone()).await {
            Ok(()) => accepted.push(id),
            Err(e) => {
                send_error = Some(e);
                break;
            }
        }
        while let Some(outcome) = conn.try_next_outcome() {
            match outcome {
                Outcome::Confirmed(id) => confirmed.push(id),
                Outcome::Failed(id) => failed.push(id),
            }
        }
    }
    let (c, f) = drain(conn).await;
    confirmed.extend(c);
    failed.extend(f);
    (accepted, confirmed, failed, send_error)
}

fn by_id(received: &[activemq::Received]) -> HashMap<String, Bytes> {
    let mut map = HashMap::new();
    for r in received {
        let id = r.empa_id.clone().expect("message without empa-id");
        assert!(
            map.insert(id.clone(), r.body.clone()).is_none(),
            "{id} delivered twice"
        );
    }
    map
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_stomp_delivers_every_message_byte_identical() {
    let broker = Broker::get();
    let queue = unique_queue("plain");
    let mut subscriber = Subscriber::subscribe(&broker, &queue).await;
    // Sizes around buffer boundaries, plus bodies holding NUL, CR and LF
    // (content-length must carry them).
    let mut bodies: Vec<Bytes> = (0..200)
        .map(|i| ascii_body(i, [1, 17, 4095, 4096, 8193, 65_536][i % 6]))
        .collect();
    bodies.push(Bytes::from_static(b"nul\0inside\r\nand\nnewlines\0"));
    bodies.push(Bytes::new());

    let mut conn = stomp::connect(&broker.plain_config()).await.unwrap();
    assert_eq!(conn.version(), ProtocolVersion::V1_2);
    assert!(conn.server().unwrap_or_default().starts_with("ActiveMQ"));
    let (accepted, confirmed, failed, err) = send_all(&mut conn, &queue, &bodies).await;
    assert!(err.is_none(), "{err:?}");
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(accepted.len(), bodies.len());
    assert_eq!(
        confirmed.iter().collect::<HashSet<_>>(),
        accepted.iter().collect::<HashSet<_>>()
    );
    conn.disconnect().await.unwrap();

    let received = subscriber.collect_exactly(bodies.len(), WAIT, QUIET).await;
    let got = by_id(&received);
    for (i, body) in bodies.iter().enumerate() {
        assert_eq!(got.get(&msg_id(i)), Some(body), "message {i}");
    }
    // SSM's headers reach the consumer; no content-type was added.
    let headers = &received[0].headers;
    let names: HashSet<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains("empa-id") && names.contains("destination"));
    assert!(!names.contains("content-type"), "{headers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stomp_over_tls_with_client_certificate() {
    let broker = Broker::get();
    let queue = unique_queue("ssl");
    let mut subscriber = Subscriber::subscribe(&broker, &queue).await;
    let bodies: Vec<Bytes> = (0..50).map(|i| ascii_body(i, 60_000)).collect();

    // Trust given three ways: hashed directory, PEM file, loaded certificates;
    // by IP address and by DNS name (both in the broker's SAN).
    let mut configs = Vec::new();
    let mut by_dir = broker.ssl_config();
    by_dir.brokers = vec![BrokerAddress::new("localhost", broker.ssl_port)];
    configs.push(by_dir);
    let mut by_file = broker.ssl_config();
    by_file.tls.as_mut().unwrap().trust = TrustAnchors::CaFile(broker.ca_cert.clone());
    configs.push(by_file);
    let mut by_certs = broker.ssl_config();
    let ca = openssl::x509::X509::from_pem(&std::fs::read(&broker.ca_cert).unwrap()).unwrap();
    by_certs.tls.as_mut().unwrap().trust = TrustAnchors::Certificates(vec![ca]);
    configs.push(by_certs);

    let mut sent = Vec::new();
    for (round, config) in configs.iter().enumerate() {
        let mut conn = stomp::connect(config).await.unwrap();
        let part: Vec<Bytes> = bodies[round * 10..round * 10 + 10].to_vec();
        for (i, body) in part.iter().enumerate() {
            let id = format!("r{round}-{i}");
            conn.send(&queue, &id, body.clone()).await.unwrap();
            sent.push((id, body.clone()));
        }
        let (confirmed, failed) = drain(&mut conn).await;
        assert_eq!(
            (confirmed.len(), failed.len()),
            (10, 0),
            "{:?}",
            conn.failure()
        );
        conn.disconnect().await.unwrap();
    }
    let got = by_id(&subscriber.collect_exactly(sent.len(), WAIT, QUIET).await);
    for (id, body) in &sent {
        assert_eq!(got.get(id), Some(body), "{id}");
    }
}

#[tokio::test]
async fn tls_broker_refuses_clients_without_an_accepted_certificate() {
    let broker = Broker::get();
    // No certificate at all.
    let mut config = broker.ssl_config();
    config.tls.as_mut().unwrap().identity = None;
    let err = stomp::connect(&config).await.unwrap_err();
    eprintln!("no certificate: {err}");
    let StompError::NoBrokerReachable(errors) = &err else {
        panic!("{err}")
    };
    assert!(
        matches!(
            errors[0],
            StompError::Handshake { .. } | StompError::Io { .. } | StompError::Closed { .. }
        ),
        "{err}"
    );
    // A certificate from a CA the broker does not trust.
    let mut config = broker.ssl_config();
    config.tls.as_mut().unwrap().identity = Some(identity(
        &broker.rogue_client_cert,
        &broker.rogue_client_key,
    ));
    let err = stomp::connect(&config).await.unwrap_err();
    eprintln!("untrusted certificate: {err}");
    assert!(matches!(err, StompError::NoBrokerReachable(_)), "{err}");
}

#[tokio::test]
async fn broker_certificate_is_verified() {
    let broker = Broker::get();
    // Signed by a CA we were not told to trust.
    let mut config = broker.ssl_config();
    config.tls.as_mut().unwrap().trust = TrustAnchors::CaFile(broker.other_ca_cert.clone());
    let err = stomp::connect(&config).await.unwrap_err();
    let text = err.to_string();
    eprintln!("untrusted broker: {text}");
    assert!(text.contains("TLS handshake"), "{text}");
    assert!(text.contains("certificate verif"), "{text}");

    // A TLS client at a plain STOMP port: ActiveMQ usually waits for the end
    // of a frame that never comes, and the connect timeout ends it; when the
    // ClientHello's random bytes happen to end a STOMP command line, it
    // answers with a plain-text ERROR frame, which fails the handshake. Either
    // way the attempt ends at once with an error, never a session.
    let mut config = broker.ssl_config();
    config.brokers = vec![BrokerAddress::new("127.0.0.1", broker.stomp_port)];
    config.timeouts.connect = Duration::from_secs(1);
    let started = std::time::Instant::now();
    let err = stomp::connect(&config).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("no CONNECTED within 1s")
            || (text.contains("TLS handshake") && text.contains("wrong version number")),
        "{text}"
    );
    assert!(started.elapsed() < Duration::from_secs(5), "{text}");

    // A broken CA path is a setup error naming it.
    let mut config = broker.ssl_config();
    config.tls = Some(TlsSettings {
        identity: None,
        trust: TrustAnchors::CaPath("/nonexistent/certificates".into()),
        verify_hostname: true,
    });
    let err = stomp::connect(&config).await.unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/certificates"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_of_32_is_filled_and_never_exceeded() {
    let broker = Broker::get();
    let queue = unique_queue("window");
    let mut subscriber = Subscriber::subscribe(&broker, &queue).await;
    let proxy = Proxy::start(broker.stomp_port, Rule::Forward).await;
    let mut config = broker.plain_config();
    config.brokers = vec![BrokerAddress::new("127.0.0.1", proxy.port)];
    config.window = NonZeroUsize::new(32).unwrap();
    let bodies: Vec<Bytes> = (0..500).map(|i| ascii_body(i, 2000)).collect();

    let mut conn = stomp::connect(&config).await.unwrap();
    let (accepted, confirmed, failed, err) = send_all(&mut conn, &queue, &bodies).await;
    assert!(err.is_none() && failed.is_empty(), "{err:?} {failed:?}");
    assert_eq!(confirmed.len(), 500);
    assert_eq!(
        confirmed.iter().collect::<HashSet<_>>(),
        accepted.iter().collect::<HashSet<_>>()
    );
    conn.disconnect().await.unwrap();

    let log = proxy.log();
    assert_eq!(log.sends.len(), 500);
    assert!(
        log.max_unacknowledged <= 32,
        "{} SENDs were unacknowledged at once",
        log.max_unacknowledged
    );
    assert!(
        log.max_unacknowledged > 1,
        "the window was never used: one message at a time"
    );
    assert_eq!(
        subscriber.collect_exactly(500, WAIT, QUIET).await.len(),
        500
    );
}

#[tokio::test]
async fn window_of_one_sends_like_ssm() {
    let broker = Broker::get();
    let queue = unique_queue("window1");
    let proxy = Proxy::start(broker.stomp_port, Rule::Forward).await;
    let mut config = broker.plain_config();
    config.brokers = vec![BrokerAddress::new("127.0.0.1", proxy.port)];
    config.window = NonZeroUsize::new(1).unwrap();
    let bodies: Vec<Bytes> = (0..20).map(|i| ascii_body(i, 100)).collect();
    let mut conn = stomp::connect(&config).await.unwrap();
    let (_, confirmed, failed, err) = send_all(&mut conn, &queue, &bodies).await;
    assert!(err.is_none() && failed.is_empty());
    assert_eq!(confirmed.len(), 20);
    conn.disconnect().await.unwrap();
    assert_eq!(proxy.log().max_unacknowledged, 1);
    let mut subscriber = Subscriber::subscribe(&broker, &queue).await;
    assert_eq!(subscriber.collect_exactly(20, WAIT, QUIET).await.len(), 20);
}

#[tokio::test]
async fn broker_error_frame_fails_the_connection_with_its_message() {
    let broker = Broker::get();
    let queue = unique_queue("error");
    let mut conn = stomp::connect(&broker.plain_config()).await.unwrap();
    conn.send(&queue, "good-1", Bytes::from_static(b"fine"))
        .await
        .unwrap();
    assert_eq!(
        conn.next_outcome().await,
        Some(Outcome::Confirmed("good-1".into()))
    );
    // ActiveMQ refuses to create a temporary queue for a client that did
    // not own it, with an ERROR naming the destination.
    conn.send(
        "/remote-temp-queue/ID:nope",
        "bad-1",
        Bytes::from_static(b"x"),
    )
    .await
    .unwrap();
    assert_eq!(
        conn.next_outcome().await,
        Some(Outcome::Failed("bad-1".into()))
    );
    assert_eq!(conn.next_outcome().await, None);
    let failure = conn.failure().cloned().unwrap();
    match &failure {
        StompError::Broker {
            message,
            detail,
            receipt_id,
            ..
        } => {
            assert_eq!(message, "temp-queue://ID:nope");
            assert!(
                detail.contains("DestinationDoesNotExistException"),
                "{detail}"
            );
            assert_eq!(receipt_id.as_deref(), Some("bad-1"));
        }
        other => panic!("{other}"),
    }
    assert!(
        failure
            .to_string()
            .contains("sent ERROR: temp-queue://ID:nope")
    );
    // Nothing more goes out on a failed connection.
    let err = conn
        .send(&queue, "good-2", Bytes::from_static(b"late"))
        .await
        .unwrap_err();
    assert!(matches!(err, StompError::Broker { .. }), "{err}");
    assert!(conn.disconnect().await.is_err());
}

#[tokio::test]
async fn failover_skips_dead_brokers_in_order() {
    let broker = Broker::get();
    let dead_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut config = broker.plain_config();
    config.brokers = vec![
        BrokerAddress::new("127.0.0.1", dead_port),
        BrokerAddress::new("127.0.0.1", broker.stomp_port),
    ];
    let mut conn = stomp::connect(&config).await.unwrap();
    assert_eq!(conn.broker().port, broker.stomp_port);
    conn.send(&unique_queue("failover"), "f1", Bytes::from_static(b"x"))
        .await
        .unwrap();
    assert_eq!(
        conn.next_outcome().await,
        Some(Outcome::Confirmed("f1".into()))
    );
    conn.disconnect().await.unwrap();

    config.brokers = vec![
        BrokerAddress::new("127.0.0.1", dead_port),
        BrokerAddress::new("no-such-host.invalid", 61613),
    ];
    let err = stomp::connect(&config).await.unwrap_err();
    let StompError::NoBrokerReachable(errors) = &err else {
        panic!("{err}")
    };
    assert_eq!(errors.len(), 2);
    let text = err.to_string();
    assert!(text.contains(&format!("127.0.0.1:{dead_port}")), "{text}");
    assert!(text.contains("no-such-host.invalid:61613"), "{text}");

    config.brokers.clear();
    assert!(matches!(
        stomp::connect(&config).await,
        Err(StompError::NoBrokers)
    ));
}

/// The acceptance case: the broker dies mid-run. Every accepted message gets
/// exactly one outcome, only RECEIPTed ones are confirmed, every confirmed one
/// is at the broker, none is delivered twice, and the connection refuses to
/// send more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_dying_mid_run_loses_nothing_and_duplicates_nothing() {
    let broker = Broker::get();
    let queue = unique_queue("kill");
    let proxy = Proxy::start(broker.stomp_port, Rule::CutAfterReceipts(100)).await;
    let mut config = broker.plain_config();
    config.brokers = vec![BrokerAddress::new("127.0.0.1", proxy.port)];
    let bodies: Vec<Bytes> = (0..400).map(|i| ascii_body(i, 3000)).collect();

    let mut conn = stomp::connect(&config).await.unwrap();
    let (accepted, confirmed, failed, send_error) = send_all(&mut conn, &queue, &bodies).await;
    let log = proxy.log();
    assert!(log.cut);

    let accepted_set: HashSet<&String> = accepted.iter().collect();
    let confirmed_set: HashSet<&String> = confirmed.iter().collect();
    let failed_set: HashSet<&String> = failed.iter().collect();
    assert_eq!(confirmed_set.len(), confirmed.len(), "confirmed twice");
    assert_eq!(failed_set.len(), failed.len(), "failed twice");
    assert!(confirmed_set.is_disjoint(&failed_set));
    assert_eq!(
        confirmed_set
            .union(&failed_set)
            .copied()
            .collect::<HashSet<_>>(),
        accepted_set,
        "an accepted message got no outcome"
    );
    let receipts: HashSet<&String> = log.receipts_forwarded.iter().collect();
    assert!(
        confirmed_set.is_subset(&receipts),
        "confirmed without a RECEIPT"
    );
    assert_eq!(confirmed.len(), 100);
    assert!(!failed.is_empty());
    // The run stopped: what was never accepted stays with the caller.
    assert!(accepted.len() < bodies.len());
    assert!(send_error.is_some());
    let failure = conn.failure().cloned().unwrap();
    assert!(
        matches!(failure, StompError::Closed { .. } | StompError::Io { .. }),
        "{failure}"
    );
    assert!(conn.send(&queue, "after", Bytes::new()).await.is_err());

    // What reached the broker: every confirmed message, nothing twice, and
    // nothing that was not accepted.
    let mut subscriber = Subscriber::subscribe(&broker, &queue).await;
    let arrived = by_id(&subscriber.collect_until_quiet(Duration::from_secs(2)).await);
    for id in &confirmed {
        assert!(
            arrived.contains_key(id),
            "confirmed {id} is not at the broker"
        );
    }
    for id in arrived.keys() {
        assert!(
            accepted_set.contains(id),
            "{id} arrived but was never accepted"
        );
    }
}

#[tokio::test]
async fn missing_receipts_time_out_and_fail_every_message() {
    let broker = Broker::get();
    let queue = unique_queue("noreceipt");
    let proxy = Proxy::start(broker.stomp_port, Rule::SwallowReceipts).await;
    let mut config = broker.plain_config();
    config.brokers = vec![BrokerAddress::new("127.0.0.1", proxy.port)];
    config.timeouts.receipt = Duration::from_millis(700);
    config.window = NonZeroUsize::new(4).unwrap();
    let bodies: Vec<Bytes> = (0..10).map(|i| ascii_body(i, 100)).collect();
    let mut conn = stomp::connect(&config).await.unwrap();
    let (accepted, confirmed, failed, send_error) = send_all(&mut conn, &queue, &bodies).await;
    assert!(confirmed.is_empty());
    // The window filled, the fifth send waited in vain.
    assert_eq!(accepted.len(), 4);
    assert_eq!(failed, accepted);
    let err = send_error.unwrap();
    assert!(
        matches!(&err, StompError::ReceiptTimeout { id, .. } if id == &msg_id(0)),
        "{err}"
    );
    assert!(err.to_string().contains("no RECEIPT"), "{err}");
}

#[tokio::test]
async fn heart_beats_keep_an_idle_connection_open() {
    let broker = Broker::get();
    let mut config = broker.plain_config();
    // We offer to beat every 1 s and ask for one every 0.67 s; ActiveMQ
    // then drops a client silent for 1.5 s, and we fail on 2 s of silence.
    config.timeouts.idle = Duration::from_secs(2);
    let mut conn = stomp::connect(&config).await.unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    conn.send(
        &unique_queue("hb"),
        "hb-1",
        Bytes::from_static(b"still here"),
    )
    .await
    .unwrap();
    assert_eq!(
        conn.next_outcome().await,
        Some(Outcome::Confirmed("hb-1".into())),
        "{:?}",
        conn.failure()
    );
    conn.disconnect().await.unwrap();
}

#[tokio::test]
async fn disconnect_waits_for_its_receipt_and_closes() {
    let broker = Broker::get();
    let queue = unique_queue("disconnect");
    let mut conn = stomp::connect(&broker.plain_config()).await.unwrap();
    for i in 0..5 {
        conn.send(&queue, &msg_id(i), ascii_body(i, 10))
            .await
            .unwrap();
    }
    // Disconnecting with messages in flight: the broker answers them first,
    // and their confirmations stay available.
    conn.disconnect().await.unwrap();
    let (confirmed, failed) = drain(&mut conn).await;
    assert_eq!((confirmed.len(), failed.len()), (5, 0));
    let err = conn.send(&queue, "late", Bytes::new()).await.unwrap_err();
    assert!(matches!(err, StompError::Disconnected { .. }), "{err}");
    assert!(conn.failure().is_none());
    conn.disconnect().await.unwrap();
    let mut subscriber = Subscriber::subscribe(&broker, &queue).await;
    assert_eq!(subscriber.collect_exactly(5, WAIT, QUIET).await.len(), 5);
}

#[tokio::test]
async fn duplicate_id_in_flight_is_refused() {
    let broker = Broker::get();
    let proxy = Proxy::start(broker.stomp_port, Rule::SwallowReceipts).await;
    let mut config = broker.plain_config();
    config.brokers = vec![BrokerAddress::new("127.0.0.1", proxy.port)];
    let queue = unique_queue("dup");
    let mut conn = stomp::connect(&config).await.unwrap();
    conn.send(&queue, "same", Bytes::from_static(b"1"))
        .await
        .unwrap();
    let err = conn
        .send(&queue, "same", Bytes::from_static(b"2"))
        .await
        .unwrap_err();
    assert!(matches!(err, StompError::DuplicateId { .. }), "{err}");
    assert_eq!(conn.outstanding(), 1);
}

#[tokio::test]
async fn cancelled_send_sends_nothing_and_changes_nothing() {
    let broker = Broker::get();
    let proxy = Proxy::start(broker.stomp_port, Rule::SwallowReceipts).await;
    let mut config = broker.plain_config();
    config.brokers = vec![BrokerAddress::new("127.0.0.1", proxy.port)];
    config.window = NonZeroUsize::new(1).unwrap();
    config.timeouts.receipt = Duration::from_secs(2);
    let queue = unique_queue("cancel");
    let mut conn = stomp::connect(&config).await.unwrap();
    conn.send(&queue, "first", Bytes::from_static(b"1"))
        .await
        .unwrap();
    // The window is full: the second send waits, and is given up.
    let cancelled = tokio::time::timeout(
        Duration::from_millis(200),
        conn.send(&queue, "second", Bytes::from_static(b"2")),
    )
    .await;
    assert!(cancelled.is_err());
    assert_eq!(conn.outstanding(), 1);
    // Only the first is in flight; it fails when its receipt never comes.
    assert_eq!(drain(&mut conn).await, (vec![], vec!["first".to_owned()]));
    assert_eq!(proxy.log().sends, ["first"]);
}
