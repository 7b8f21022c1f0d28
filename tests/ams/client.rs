//! AMS client against the `ams-double` (TLS, authx509 with client certificate, faults).
//!
//! The double runs as a child process (the `ams-double` example, built on first use); each test
//! starts its own on free ports, with a PKI generated at test time.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use cloud_accounting::ams::{AmsError, Client, Outgoing, TokenSource};
use futures_util::StreamExt;

use crate::support::ams::{AmsDouble, AmsTestPki, HOST_DN, TOKEN};
use crate::support::send;

/// An APEL-like message of roughly `size` bytes, distinct per `i`.
pub(super) fn message(i: usize, size: usize) -> Vec<u8> {
    let mut m = format!("APEL-cloud-message: v0.4\nVMUUID: vm-{i:06}\nSiteName: TEST-SITE\n");
    let mut n = 0;
    while m.len() < size {
        m.push_str(&format!(
            "%%\nVMUUID: vm-{i:06}-{n}\nSiteName: TEST-SITE\nWallDuration: {n}\n"
        ));
        n += 1;
    }
    m.into_bytes()
}

pub(super) fn msg_id(i: usize) -> String {
    format!("{:08x}{:05x}{:01x}", 0x6900_0000 + i, i % 100_000, i % 16)
}

/// Signs `n` messages of about `size` bytes; returns (id, plain content, signed) per message.
pub(super) fn batch(pki: &AmsTestPki, n: usize, size: usize) -> Vec<(String, Vec<u8>, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let content = message(i, size);
            let signed = pki.sign(&content);
            (msg_id(i), content, signed)
        })
        .collect()
}

pub(super) async fn publish_batch(
    client: &Client,
    batch: &[(String, Vec<u8>, Vec<u8>)],
) -> BTreeMap<String, Result<String, AmsError>> {
    let outgoing = futures_util::stream::iter(batch.iter().map(|(id, _, signed)| Outgoing {
        key: id.clone(),
        msg_id: id.clone(),
        body: signed.clone(),
    }));
    client
        .publish_all(outgoing)
        .collect::<BTreeMap<_, _>>()
        .await
}

/// Every id stored exactly once (a stalled request is never repeated).
pub(super) async fn assert_each_stored_once(double: &AmsDouble, ids: &[String]) {
    let stats = double.stats().await;
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for m in double.messages().await {
        *count
            .entry(m["empaid"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    for id in ids {
        let n = count.get(id).copied().unwrap_or(0);
        assert!(n >= 1, "{id} lost: {stats}");
        assert!(n == 1, "{id} stored {n} times: {stats}");
    }
    assert_eq!(count.len(), ids.len(), "unexpected ids stored: {stats}");
}

/// The content stored for every message is byte-identical to what was signed and sent, it
/// verifies with `openssl smime -verify` against the test CA, and its signer is the host DN.
pub(super) async fn assert_delivered_intact(
    double: &AmsDouble,
    pki: &AmsTestPki,
    batch: &[(String, Vec<u8>, Vec<u8>)],
) {
    let by_id: BTreeMap<&str, (&Vec<u8>, &Vec<u8>)> = batch
        .iter()
        .map(|(id, c, s)| (id.as_str(), (c, s)))
        .collect();
    for m in double.messages().await {
        let id = m["empaid"].as_str().unwrap();
        let (content, signed) = by_id[id];
        let data = double.data(m["seq"].as_u64().unwrap()).await;
        assert!(
            data == *signed,
            "{id}: stored data differs from what was sent"
        );
        assert_eq!(m["signer_dn"], HOST_DN, "{id}: {m}");
        // The real receiver's check, with the real openssl CLI.
        let verified = send::openssl_verify(&data, pki.grid.capath());
        assert!(
            verified.content == *content,
            "{id}: verified content differs from the original"
        );
        assert_eq!(verified.signer_dn, HOST_DN, "{id}: signer is not the host");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn happy_path_authx509_every_message_intact_and_verified() {
    let pki = AmsTestPki::generate();
    let double = AmsDouble::start(&pki, &[]);
    let client = Client::new(double.config(&pki)).unwrap();
    let batch = batch(&pki, 40, 3000);
    let results = publish_batch(&client, &batch).await;
    for (id, r) in &results {
        assert!(r.is_ok(), "{id}: {r:?}");
    }
    let ams_ids: BTreeSet<&String> = results.values().map(|r| r.as_ref().unwrap()).collect();
    assert_eq!(ams_ids.len(), 40, "AMS message ids must be distinct");
    let stats = double.stats().await;
    assert_eq!(stats["messages"], 40, "{stats}");
    assert_eq!(stats["duplicates"], 0, "{stats}");
    assert_eq!(stats["signatures"]["verified"], 40, "{stats}");
    assert_eq!(stats["signatures"]["failed"], 0, "{stats}");
    assert_eq!(
        stats["tokens_issued"], 1,
        "token fetched once and reused: {stats}"
    );
    assert_eq!(stats["authx509_dns"][0], HOST_DN, "{stats}");
    assert_eq!(
        stats["publish_requests"], 40,
        "one request per message: {stats}"
    );
    assert_delivered_intact(&double, &pki, &batch).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_token_skips_authx509() {
    let pki = AmsTestPki::generate();
    let double = AmsDouble::start(&pki, &[]);
    let client = Client::new(double.config_with_token(&pki, TOKEN)).unwrap();
    let batch = batch(&pki, 5, 1000);
    let results = publish_batch(&client, &batch).await;
    assert!(results.values().all(Result::is_ok), "{results:?}");
    let stats = double.stats().await;
    assert_eq!(stats["tokens_issued"], 0, "{stats}");
    assert!(stats["requests"].get("authx509").is_none(), "{stats}");
    assert_eq!(stats["messages"], 5, "{stats}");
}

/// Each retryable fault kind: everything arrives, nothing twice (the double rejects before
/// storing, so a retry is never a duplicate), and the fault really happened.
async fn retried_fault(spec: &str, status: u64) {
    let pki = AmsTestPki::generate();
    let double = AmsDouble::start(&pki, &["--fault", spec]);
    let client = Client::new(double.config(&pki)).unwrap();
    let batch = batch(&pki, 30, 2000);
    let results = publish_batch(&client, &batch).await;
    for (id, r) in &results {
        assert!(r.is_ok(), "{spec}: {id}: {r:?}");
    }
    let stats = double.stats().await;
    assert!(
        stats["requests"]["publish"][status.to_string()]
            .as_u64()
            .unwrap_or(0)
            > 0,
        "{spec}: fault never fired: {stats}"
    );
    assert_eq!(stats["duplicates"], 0, "{spec}: {stats}");
    let ids: Vec<String> = batch.iter().map(|b| b.0.clone()).collect();
    assert_each_stored_once(&double, &ids).await;
    assert_delivered_intact(&double, &pki, &batch).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_500_is_retried() {
    retried_fault("500:every=4", 500).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_503_from_the_balancer_is_retried() {
    retried_fault("503:first=5", 503).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_408_is_retried() {
    retried_fault("408:every=4", 408).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_429_is_retried() {
    retried_fault("429:every=5", 429).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_faults_lose_nothing() {
    let pki = AmsTestPki::generate();
    let double = AmsDouble::start(
        &pki,
        &[
            "--fault",
            "500:every=9",
            "--fault",
            "502:every=11",
            "--fault",
            "504:every=13",
            "--fault",
            "429:every=17",
        ],
    );
    let client = Client::new(double.config(&pki)).unwrap();
    let batch = batch(&pki, 60, 1500);
    let results = publish_batch(&client, &batch).await;
    assert!(results.values().all(Result::is_ok), "{results:?}");
    let ids: Vec<String> = batch.iter().map(|b| b.0.clone()).collect();
    assert_each_stored_once(&double, &ids).await;
    assert_eq!(double.stats().await["duplicates"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_exhausted_is_transient_and_nothing_stored() {
    let pki = AmsTestPki::generate();
    let double = AmsDouble::start(&pki, &["--fault", "503"]);
    let mut cfg = double.config(&pki);
    cfg.retry.max_attempts = 3;
    let client = Client::new(cfg).unwrap();
    let err = client
        .publish("00000001", &pki.sign(b"x\n"))
        .await
        .unwrap_err();
    match &err {
        AmsError::Transient {
            attempts: 3, last, ..
        } => assert!(last.contains("503"), "{err}"),
        other => panic!("expected Transient after 3 attempts, got {other:?}"),
    }
    assert!(!err.is_fatal());
    let stats = double.stats().await;
    assert_eq!(stats["publish_requests"], 3, "{stats}");
    assert_eq!(stats["messages"], 0, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ams_down_after_every_retry_stops_the_batch_and_keeps_the_rest_unsent() {
    let pki = AmsTestPki::generate();
    let double = AmsDouble::start(&pki, &["--fault", "503:after=2"]);
    let mut cfg = double.config(&pki);
    cfg.retry.max_attempts = 3;
    cfg.concurrency = std::num::NonZeroUsize::new(1).unwrap();
    let client = Client::new(cfg).unwrap();
    let batch = batch(&pki, 10, 500);
    let results = publish_batch(&client, &batch).await;
    let count =
        |f: fn(&Result<String, AmsError>) -> bool| results.values().filter(|r| f(r)).count();
    assert_eq!(count(|r| r.is_ok()), 2, "{results:?}");
    assert_eq!(
        count(|r| matches!(r, Err(AmsError::Transient { attempts: 3, .. }))),
        1,
        "{results:?}"
    );
    assert_eq!(
        count(|r| matches!(r, Err(AmsError::NotAttempted { .. }))),
        7,
        "{results:?}"
    );
    let stats = double.stats().await;
    assert_eq!(stats["publish_requests"], 5, "{stats}");
    assert_eq!(stats["messages"], 2, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stall_beyond_the_request_timeout_is_not_repeated() {
    let pki = AmsTestPki::generate();
    let double = AmsDouble::start(&pki, &["--fault", "stall=1500ms:nth=2"]);
    let mut cfg = double.config(&pki);
    cfg.request_timeout = Duration::from_millis(500);
    cfg.concurrency = std::num::NonZeroUsize::new(1).unwrap();
    let client = Client::new(cfg).unwrap();
    let batch = batch(&pki, 5, 1000);
    let results = publish_batch(&client, &batch).await;
    // The stalled request may have been stored (it is, once its stall ends): repeating it could
    // store it twice, so it is reported unconfirmed and the rest of the run stops.
    let ids: Vec<&String> = batch.iter().map(|b| &b.0).collect();
    assert!(results[ids[0]].is_ok(), "{results:?}");
    assert!(
        matches!(results[ids[1]], Err(AmsError::Unconfirmed { .. })),
        "{results:?}"
    );
    for id in &ids[2..] {
        assert!(
            matches!(results[*id], Err(AmsError::NotAttempted { .. })),
            "{results:?}"
        );
    }
    let mut stats = double.stats().await;
    for _ in 0..100 {
        if stats["messages"].as_u64().unwrap() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        stats = double.stats().await;
    }
    assert_eq!(stats["publish_requests"], 2, "{stats}");
    assert_eq!(stats["duplicates"], 0, "{stats}");
    assert_each_stored_once(&double, &[ids[0].clone(), ids[1].clone()]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_token_is_unauthorized_with_the_token_hint_and_not_retried() {
    let pki = AmsTestPki::generate();
    let double = AmsDouble::start(&pki, &[]);
    let mut cfg = double.config_with_token(&pki, "not-the-token");
    cfg.concurrency = std::num::NonZeroUsize::new(1).unwrap();
    let client = Client::new(cfg).unwrap();
    let batch = batch(&pki, 10, 500);
    let results = publish_batch(&client, &batch).await;
    let unauthorized: Vec<_> = results
        .values()
        .filter(|r| {
            matches!(
                r,
                Err(AmsError::Unauthorized {
                    status: 401,
                    token: TokenSource::Configured,
                    ..
                })
            )
        })
        .collect();
    assert_eq!(unauthorized.len(), 1, "{results:?}");
    // A configured token: GOCDB (authx509's registry) is no part of it.
    let text = unauthorized[0].as_ref().unwrap_err().to_string();
    assert!(
        text.contains("AMS refused the configured token") && !text.contains("GOCDB"),
        "{text}"
    );
    assert!(
        results
            .values()
            .filter(|r| matches!(r, Err(AmsError::NotAttempted { .. })))
            .count()
            == 9,
        "the others are not sent once access is refused: {results:?}"
    );
    let stats = double.stats().await;
    assert_eq!(stats["publish_requests"], 1, "no retry after 401: {stats}");
    assert_eq!(stats["messages"], 0, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authx509_token_refused_once_is_fetched_again() {
    let pki = AmsTestPki::generate();
    let double = AmsDouble::start(&pki, &["--fault", "401:first=1"]);
    let mut cfg = double.config(&pki);
    cfg.concurrency = std::num::NonZeroUsize::new(1).unwrap();
    let client = Client::new(cfg).unwrap();
    let batch = batch(&pki, 3, 500);
    let results = publish_batch(&client, &batch).await;
    assert!(results.values().all(Result::is_ok), "{results:?}");
    let stats = double.stats().await;
    assert_eq!(stats["tokens_issued"], 2, "{stats}");
    assert_eq!(stats["messages"], 3, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_401_after_some_stops_the_run_and_keeps_the_rest_unsent() {
    let pki = AmsTestPki::generate();
    let double = AmsDouble::start(&pki, &["--fault", "401:after=3"]);
    let mut cfg = double.config(&pki);
    cfg.concurrency = std::num::NonZeroUsize::new(1).unwrap();
    let client = Client::new(cfg).unwrap();
    let batch = batch(&pki, 8, 500);
    let results = publish_batch(&client, &batch).await;
    let ok = results.values().filter(|r| r.is_ok()).count();
    let unauthorized = results
        .values()
        .filter(|r| matches!(r, Err(AmsError::Unauthorized { .. })))
        .count();
    let not_attempted = results
        .values()
        .filter(|r| matches!(r, Err(AmsError::NotAttempted { .. })))
        .count();
    assert_eq!((ok, unauthorized, not_attempted), (3, 1, 4), "{results:?}");
    let stats = double.stats().await;
    // 3 published, then one 401, a new token, one more 401: no further retry.
    assert_eq!(stats["publish_requests"], 5, "{stats}");
    assert_eq!(stats["tokens_issued"], 2, "{stats}");
    assert_eq!(stats["messages"], 3, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_403_is_unauthorized_without_refetch() {
    let pki = AmsTestPki::generate();
    let double = AmsDouble::start(&pki, &["--fault", "403"]);
    let client = Client::new(double.config(&pki)).unwrap();
    let err = client
        .publish("00000001", &pki.sign(b"x\n"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, AmsError::Unauthorized { status: 403, .. }),
        "{err:?}"
    );
    let stats = double.stats().await;
    assert_eq!(stats["publish_requests"], 1, "{stats}");
    assert_eq!(stats["tokens_issued"], 1, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_large_rejects_that_message_only() {
    let pki = AmsTestPki::generate();
    let double = AmsDouble::start(&pki, &["--max-size", "20000"]);
    let client = Client::new(double.config(&pki)).unwrap();
    let batch: Vec<_> = (0..12)
        .map(|i| {
            let content = message(i, if i % 4 == 0 { 30_000 } else { 3_000 });
            let signed = pki.sign(&content);
            (msg_id(i), content, signed)
        })
        .collect();
    let results = publish_batch(&client, &batch).await;
    for (i, (id, _, _)) in batch.iter().enumerate() {
        let r = &results[id];
        if i % 4 == 0 {
            match r {
                Err(AmsError::TooLarge {
                    msg_id,
                    request_bytes,
                    ..
                }) => {
                    assert_eq!(msg_id, id);
                    assert!(*request_bytes > 20_000);
                }
                other => panic!("{id}: expected TooLarge, got {other:?}"),
            }
        } else {
            assert!(r.is_ok(), "{id}: {r:?}");
        }
    }
    let stats = double.stats().await;
    assert_eq!(stats["messages"], 9, "{stats}");
    assert_eq!(
        stats["requests"]["publish"]["413"], 3,
        "413 is not retried: {stats}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_fault_413_is_too_large() {
    let pki = AmsTestPki::generate();
    let double = AmsDouble::start(&pki, &["--fault", "413:size>5000"]);
    let client = Client::new(double.config(&pki)).unwrap();
    let err = client
        .publish("big", &pki.sign(&message(1, 8000)))
        .await
        .unwrap_err();
    assert!(matches!(err, AmsError::TooLarge { .. }), "{err:?}");
    assert!(
        client
            .publish("small", &pki.sign(&message(2, 500)))
            .await
            .is_ok()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authx509_without_client_certificate_is_refused() {
    let pki = AmsTestPki::generate();
    let double = AmsDouble::start(&pki, &[]);
    let http = reqwest::Client::builder()
        .use_native_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_der(&pki.ca().cert.to_der().unwrap()).unwrap(),
        )
        .build()
        .unwrap();
    let url = format!(
        "https://127.0.0.1:{}/v1/service-types/ams/hosts/127.0.0.1:authx509",
        double.authn_port
    );
    let resp = http.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["message"], "No certificate provided.");
    assert_eq!(double.stats().await["tokens_issued"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authx509_unknown_dn_is_unauthorized_with_gocdb_hint() {
    let pki = AmsTestPki::generate();
    let double = AmsDouble::start(
        &pki,
        &["--authn-dn", "/C=XX/O=Somebody/CN=else.example.org"],
    );
    let client = Client::new(double.config(&pki)).unwrap();
    let err = client.token().await.unwrap_err();
    match &err {
        AmsError::Unauthorized { status: 404, .. } => {
            assert!(err.to_string().contains("GOCDB"), "{err}")
        }
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    let stats = double.stats().await;
    assert_eq!(
        stats["requests"]["authx509"]["404"], 1,
        "not retried: {stats}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signature_from_an_unknown_ca_is_counted_as_failed() {
    let pki = AmsTestPki::generate();
    let double = AmsDouble::start(&pki, &[]);
    let client = Client::new(double.config(&pki)).unwrap();
    let content = b"APEL-cloud-message: v0.4\n";
    let flags = openssl::pkcs7::Pkcs7Flags::DETACHED | openssl::pkcs7::Pkcs7Flags::TEXT;
    let p7 = openssl::pkcs7::Pkcs7::sign(
        &pki.other_host.cert,
        &pki.other_host.key,
        &openssl::stack::Stack::new().unwrap(),
        content,
        flags,
    )
    .unwrap();
    let signed = p7.to_smime(content, flags).unwrap();
    client.publish("intruder", &signed).await.unwrap();
    client.publish("honest", &pki.sign(content)).await.unwrap();
    let stats = double.stats().await;
    assert_eq!(stats["signatures"]["verified"], 1, "{stats}");
    assert_eq!(stats["signatures"]["failed"], 1, "{stats}");
    assert_eq!(stats["signatures"]["all_verified"], false, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_topic_is_rejected_without_retry() {
    let pki = AmsTestPki::generate();
    let double = AmsDouble::start(&pki, &[]);
    let mut cfg = double.config(&pki);
    cfg.topic = "no-such-topic".into();
    let client = Client::new(cfg).unwrap();
    let err = client.publish("1", &pki.sign(b"x\n")).await.unwrap_err();
    assert!(
        matches!(err, AmsError::Rejected { status: 404, .. }),
        "{err:?}"
    );
    assert_eq!(double.stats().await["publish_requests"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_certificate_from_an_unknown_ca_is_refused() {
    let pki = AmsTestPki::generate();
    let double = AmsDouble::start(&pki, &[]);
    let mut cfg = double.config_with_token(&pki, TOKEN);
    cfg.trust.extra_roots = vec![pki.other_host.cert.clone()];
    cfg.retry.max_attempts = 1;
    let client = Client::new(cfg).unwrap();
    let err = client.publish("1", &pki.sign(b"x\n")).await.unwrap_err();
    assert!(matches!(err, AmsError::Transient { .. }), "{err:?}");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
    assert_eq!(double.stats().await["publish_requests"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashed_ca_directory_is_trusted() {
    let pki = AmsTestPki::generate();
    let double = AmsDouble::start(&pki, &[]);
    let capath = tempfile::tempdir().unwrap();
    let hash = pki.ca().cert.subject_name_hash();
    std::fs::write(
        capath.path().join(format!("{hash:08x}.0")),
        pki.ca().cert.to_pem().unwrap(),
    )
    .unwrap();
    // What an IGTF capath also holds, none of it certificates.
    std::fs::write(
        capath.path().join(format!("{hash:08x}.r0")),
        "not a certificate",
    )
    .unwrap();
    std::fs::write(
        capath.path().join(format!("{hash:08x}.signing_policy")),
        "x",
    )
    .unwrap();
    let roots = cloud_accounting::smime::ca_certificates_from_dir(capath.path()).unwrap();
    assert_eq!(roots.len(), 1);
    let mut cfg = double.config(&pki);
    cfg.trust.extra_roots = roots;
    let client = Client::new(cfg).unwrap();
    client.publish("1", &pki.sign(b"x\n")).await.unwrap();
}

/// The sender spawns publishes on the runtime: the futures must be `Send`.
#[allow(dead_code)]
fn publish_futures_are_send(client: &Client) {
    fn send<T: Send>(_: T) {}
    send(client.publish("id", b"x"));
    send(client.token());
    send(client.publish_all(futures_util::stream::iter(Vec::<Outgoing<u32>>::new())));
}
