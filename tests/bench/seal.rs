//! Signing cost per message: `seal-bench CERT KEY MESSAGE_FILE [N=200]`
//! seals the message N times on one thread and prints ms per message.

use std::time::Instant;

use cloud_accounting::smime::{Credentials, Signer};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        eprintln!("usage: seal-bench CERT KEY MESSAGE_FILE [N]");
        std::process::exit(2);
    }
    let n: usize = args.get(3).map_or(200, |s| s.parse().expect("N"));
    let creds = Credentials::load(args[0].as_ref(), args[1].as_ref()).expect("credentials");
    let signer = Signer::new(creds, None, Default::default()).expect("signer");
    let message = std::fs::read(&args[2]).expect("message");
    let start = Instant::now();
    let mut bytes = 0;
    for _ in 0..n {
        bytes += signer.seal(&message).expect("seal").len();
    }
    let per = start.elapsed().as_secs_f64() * 1000.0 / n as f64;
    println!(
        "{} bytes -> {} bytes signed: {per:.3} ms per message ({:.0}/s on one thread)",
        message.len(),
        bytes / n,
        1000.0 / per
    );
}
