//! Throughput of the STOMP client against the test ActiveMQ
//! (`scripts/setup-activemq.sh` first):
//!
//!     cargo run --release --example stomp-bench -- [COUNT] [BYTES] [WINDOW] [plain|ssl] [ROUNDS]
//!
//! Defaults: 3 rounds of 1000 messages of 60,000 bytes, window 32, STOMP over
//! TLS with client certificate. Prints messages/s from the first SEND to the
//! last RECEIPT per round (the broker's JIT warms up in the first), then
//! checks with a subscriber that every message arrived once.

// Part of the integration tests' helpers: what this benchmark does not use is dead here.
#[allow(dead_code)]
#[path = "../support/activemq.rs"]
mod activemq;

use std::collections::HashSet;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use activemq::{Broker, Subscriber, ascii_body, unique_queue};
use cloud_accounting::stomp::{self, Outcome};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: usize| -> usize {
        args.get(i)
            .map(|a| a.parse().expect("numeric argument"))
            .unwrap_or(default)
    };
    let (count, size, window) = (arg(0, 1000), arg(1, 60_000), arg(2, 32));
    let tls = args.get(3).map(String::as_str) != Some("plain");
    let rounds = arg(4, 3);
    for round in 1..=rounds {
        print!("round {round}: ");
        run(count, size, window, tls).await;
    }
}

async fn run(count: usize, size: usize, window: usize, tls: bool) {
    let broker = Broker::get();
    let mut config = if tls {
        broker.ssl_config()
    } else {
        broker.plain_config()
    };
    config.window = NonZeroUsize::new(window).expect("window > 0");
    let queue = unique_queue("bench");
    let bodies: Vec<_> = (0..count).map(|i| ascii_body(i, size)).collect();

    let mut conn = stomp::connect(&config).await.expect("connect");
    let started = Instant::now();
    let mut confirmed = 0usize;
    let mut count_outcome = |o: Outcome| match o {
        Outcome::Confirmed(_) => confirmed += 1,
        Outcome::Failed(id) => panic!("{id} failed"),
    };
    for (i, body) in bodies.iter().enumerate() {
        conn.send(&queue, &format!("{i:014x}"), body.clone())
            .await
            .expect("send");
        while let Some(o) = conn.try_next_outcome() {
            count_outcome(o);
        }
    }
    while let Some(o) = conn.next_outcome().await {
        count_outcome(o);
    }
    let elapsed = started.elapsed();
    conn.disconnect().await.expect("disconnect");
    assert_eq!(confirmed, count);
    let rate = count as f64 / elapsed.as_secs_f64();
    println!(
        "{count} messages of {size} bytes over {}, window {window}: {:.2} s, {rate:.0} messages/s, {:.1} MB/s",
        if tls { "STOMP+TLS" } else { "STOMP" },
        elapsed.as_secs_f64(),
        rate * size as f64 / 1e6,
    );

    let mut subscriber = Subscriber::subscribe(&broker, &queue).await;
    let received = subscriber
        .collect_exactly(count, Duration::from_secs(30), Duration::from_millis(500))
        .await;
    let ids: HashSet<_> = received.iter().map(|r| r.empa_id.clone()).collect();
    assert_eq!(ids.len(), count);
    println!("subscriber received all {count} messages once");
}
