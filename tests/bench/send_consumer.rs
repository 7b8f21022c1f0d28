//! The consumer side of `scripts/bench-send.sh`: subscribes to a destination
//! of the test ActiveMQ (`scripts/setup-activemq.sh` first), prints `ready`,
//! then takes messages until COUNT arrived (or none came for 30 s), and
//! prints how many arrived and how many distinct `empa-id`s they carried.
//!
//!     cargo run --release --example send-bench-consumer -- DESTINATION COUNT

// Part of the integration tests' helpers: what this benchmark does not use is dead here.
#[allow(dead_code)]
#[path = "../support/activemq.rs"]
mod activemq;

use std::collections::HashSet;
use std::time::Duration;

use activemq::{Broker, Subscriber};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(destination), Some(Ok(count))) = (args.first(), args.get(1).map(|c| c.parse()))
    else {
        eprintln!("usage: send-bench-consumer DESTINATION COUNT");
        std::process::exit(2);
    };
    let broker = Broker::get();
    let mut sub = Subscriber::subscribe(&broker, destination).await;
    println!("ready");
    let mut ids = HashSet::new();
    let mut received = 0usize;
    let mut idle = Duration::ZERO;
    let tick = Duration::from_millis(200);
    while received < count && idle < Duration::from_secs(30) {
        let got = sub.collect_until_quiet(tick).await;
        if got.is_empty() {
            idle += tick;
            continue;
        }
        idle = Duration::ZERO;
        received += got.len();
        ids.extend(got.into_iter().filter_map(|m| m.empa_id));
    }
    println!("received={received} distinct={}", ids.len());
}
