//! Filled publish requests against the `ams-double`: many messages per
//! request, AMS's ids matched in order, 413 and failures of a whole request.

use std::collections::BTreeSet;
use std::num::NonZeroUsize;

use cloud_accounting::ams::{AmsConfig, AmsError, BatchLimits, Client};

use super::client::{
    assert_delivered_intact, assert_each_stored_once, batch, message, msg_id, publish_batch,
};
use crate::support::ams::{AmsDouble, AmsTestPki};

fn filled(mut cfg: AmsConfig, max_bytes: usize, max_messages: usize) -> AmsConfig {
    cfg.batch = BatchLimits {
        max_bytes,
        max_messages: NonZeroUsize::new(max_messages).unwrap(),
    };
    cfg
}

/// 200 messages of about 4 kB (about 6 kB each in the request) in requests
/// of at most 50,000 bytes: every message is stored once and intact, each
/// under the id AMS answered for it in its request, in few requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_carry_many_messages_and_each_gets_its_own_id() {
    let pki = AmsTestPki::generate();
    let double = AmsDouble::start(&pki, &[]);
    let client = Client::new(filled(double.config(&pki), 50_000, 100)).unwrap();
    let batch = batch(&pki, 200, 4_000);
    let results = publish_batch(&client, &batch).await;
    let ids: Vec<String> = batch.iter().map(|(id, _, _)| id.clone()).collect();
    assert_each_stored_once(&double, &ids).await;
    assert_delivered_intact(&double, &pki, &batch).await;
    // The id each message was given is the one AMS stored it under.
    for m in double.messages().await {
        let empaid = m["empaid"].as_str().unwrap();
        let given = results[empaid].as_ref().unwrap();
        assert_eq!(m["message_id"].as_str().unwrap(), given, "{m}");
    }
    let stats = double.stats().await;
    let requests = stats["publish_requests"].as_u64().unwrap();
    // 200 messages of about 6 kB fit 8 to a 50 kB request: at least 25.
    assert!(
        (25..=60).contains(&requests),
        "{requests} requests: {stats}"
    );
}

/// The double's proxy limit (413 for the whole request, nothing stored) set
/// below what a full request holds: requests are halved until they pass,
/// the one message too large on its own gets `TooLarge`, nothing is lost
/// and nothing stored twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_413_for_a_request_halves_it_and_only_the_big_message_fails() {
    let pki = AmsTestPki::generate();
    let double = AmsDouble::start(&pki, &["--max-size", "30000"]);
    let client = Client::new(filled(double.config(&pki), 200_000, 50)).unwrap();
    let batch: Vec<_> = (0..30)
        .map(|i| {
            let content = message(i, if i == 17 { 40_000 } else { 3_000 });
            let signed = pki.sign(&content);
            (msg_id(i), content, signed)
        })
        .collect();
    let results = publish_batch(&client, &batch).await;
    for (i, (id, _, _)) in batch.iter().enumerate() {
        match (&results[id], i) {
            (Err(AmsError::TooLarge { msg_id, .. }), 17) => assert_eq!(msg_id, id),
            (r, 17) => panic!("{id}: expected TooLarge, got {r:?}"),
            (r, _) => assert!(r.is_ok(), "{id}: {r:?}"),
        }
    }
    let sent: Vec<String> = batch
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 17)
        .map(|(_, (id, _, _))| id.clone())
        .collect();
    assert_each_stored_once(&double, &sent).await;
    let stats = double.stats().await;
    assert!(
        stats["requests"]["publish"]["413"].as_u64().unwrap() >= 2,
        "{stats}"
    );
}

/// AMS's own per-message limit: AMS stores a request's messages one by one
/// and answers 413 at the first one over its limit, the ones before it
/// stored. The request is halved: the big message fails alone, every other
/// is stored, and the only duplicates are of messages before the big one
/// in a refused request (AMS's own behaviour, counted here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amss_per_message_413_leaves_only_earlier_messages_of_that_request_twice() {
    let pki = AmsTestPki::generate();
    let double = AmsDouble::start(
        &pki,
        &["--max-size", "10000000", "--max-message-size", "20000"],
    );
    let client = Client::new(filled(double.config(&pki), 1_000_000, 8)).unwrap();
    let batch: Vec<_> = (0..8)
        .map(|i| {
            let content = message(i, if i == 5 { 30_000 } else { 2_000 });
            (msg_id(i), content.clone(), pki.sign(&content))
        })
        .collect();
    let results = publish_batch(&client, &batch).await;
    assert!(matches!(
        results[&msg_id(5)],
        Err(AmsError::TooLarge { .. })
    ));
    let stored: Vec<String> = double
        .messages()
        .await
        .iter()
        .map(|m| m["empaid"].as_str().unwrap().to_owned())
        .collect();
    let distinct: BTreeSet<&String> = stored.iter().collect();
    let want: BTreeSet<String> = (0..8).filter(|&i| i != 5).map(msg_id).collect();
    assert_eq!(distinct, want.iter().collect(), "{stored:?}");
    // Refused whole (0..8): 0..5 stored; halved, 0..4 then 4..8: 4 stored
    // again, then 4..6 (4 again) and 6..8; then 4..5 and 5..6 alone.
    let twice: Vec<&String> = distinct
        .iter()
        .copied()
        .filter(|id| stored.iter().filter(|s| s == id).count() > 1)
        .collect();
    for id in &twice {
        let i = (0..8).find(|&i| msg_id(i) == **id).unwrap();
        assert!(i < 5, "{id} stored twice but was after the big message");
    }
    assert!(!twice.is_empty(), "AMS's prefix behaviour not exercised");
}

/// A 500 for a request of several messages may have stored some of them
/// (AMS's "Backend Error" halfway): not repeated, every message of it is
/// unconfirmed, later requests are not attempted, nothing stored twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_for_a_filled_request_is_not_repeated() {
    let pki = AmsTestPki::generate();
    let double = AmsDouble::start(&pki, &["--fault", "500:nth=2"]);
    let mut cfg = filled(double.config(&pki), 1_000_000, 10);
    cfg.concurrency = NonZeroUsize::MIN;
    let client = Client::new(cfg).unwrap();
    let batch = batch(&pki, 40, 2_000);
    let results = publish_batch(&client, &batch).await;
    let ok: Vec<String> = batch
        .iter()
        .filter(|(id, _, _)| results[id].is_ok())
        .map(|(id, _, _)| id.clone())
        .collect();
    assert_eq!(ok, (0..10).map(msg_id).collect::<Vec<_>>());
    for (id, _, _) in &batch[10..20] {
        match &results[id] {
            Err(AmsError::Unconfirmed { msg_id, error, .. }) => {
                assert_eq!(msg_id, id);
                assert!(error.contains("HTTP 500"), "{error}");
            }
            r => panic!("{id}: {r:?}"),
        }
    }
    for (id, _, _) in &batch[20..] {
        assert!(
            matches!(results[id], Err(AmsError::NotAttempted { .. })),
            "{id}: {:?}",
            results[id]
        );
    }
    assert_each_stored_once(&double, &ok).await;
    assert_eq!(double.stats().await["publish_requests"], 2);
}
