//! Throughput of the AMS client against the `ams-double` on loopback. A benchmark, not a check:
//! run with `cargo test --release --test main -- --ignored --nocapture ams::bench`; prints figures.

use std::time::Instant;

use cloud_accounting::ams::{Client, Outgoing};
use futures_util::StreamExt;

use crate::support::ams::{AmsDouble, AmsTestPki};

#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: prints messages/s"]
async fn publish_1000_messages_of_60k() {
    const N: usize = 1000;
    let pki = AmsTestPki::generate();
    let double = AmsDouble::start(&pki, &[]);
    let mut record = String::from("APEL-cloud-message: v0.4\n");
    let mut i = 0;
    while record.len() < 60_000 {
        record.push_str(&format!(
            "VMUUID: {i:08}-0000-0000-0000-000000000000\nSiteName: BENCH\nWallDuration: {i}\n%%\n"
        ));
        i += 1;
    }
    let signed = pki.sign(record.as_bytes());
    let messages: Vec<_> = (0..N)
        .map(|i| Outgoing {
            key: i,
            msg_id: format!("{i:014x}"),
            body: signed.clone(),
        })
        .collect();
    for concurrency in [8usize, 1, 16] {
        let double = if concurrency == 8 {
            &double
        } else {
            &AmsDouble::start(&pki, &[])
        };
        let mut cfg = double.config(&pki);
        cfg.concurrency = std::num::NonZeroUsize::new(concurrency).unwrap();
        let client = Client::new(cfg).unwrap();
        client.token().await.unwrap();
        let start = Instant::now();
        let ok = client
            .publish_all(futures_util::stream::iter(messages.clone()))
            .filter(|(_, r)| std::future::ready(r.is_ok()))
            .count()
            .await;
        let secs = start.elapsed().as_secs_f64();
        assert_eq!(ok, N);
        let stats = double.stats().await;
        assert_eq!(stats["messages"], N, "{stats}");
        println!(
            "AMS publish: {N} messages of {} bytes signed, concurrency {concurrency}: {:.2} s, {:.0} messages/s, {:.1} MB/s (double verified {} signatures)",
            signed.len(),
            secs,
            N as f64 / secs,
            (N * signed.len()) as f64 / secs / 1e6,
            stats["signatures"]["verified"]
        );
    }
}
