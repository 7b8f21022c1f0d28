//! `image-probe`: proves, inside our FROM-scratch images, that a static build
//! of our network stack resolves host names (glibc `getaddrinfo`, as tokio and
//! reqwest call it) and verifies TLS against the image's trust store (reqwest
//! with native-tls, i.e. OpenSSL). scripts/test-images.sh builds it exactly
//! like the programs (scripts/build-static.sh) and runs it in a layer on top
//! of the caso-extract image. Once caso-extract talks to Keystone, the same
//! test runs caso-extract itself.
//!
//! Usage: `image-probe URL...`. For each URL it prints
//! `resolve HOST -> ADDR,...` then `get URL -> STATUS`, or `... error: CHAIN`
//! with the whole error chain (so "certificate verify failed" is visible).
//! Exit status 0 when every URL answered, 1 otherwise, 2 on bad usage.

use std::error::Error;
use std::process::ExitCode;

fn chain(e: &dyn Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

async fn probe(client: &reqwest::Client, url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("bad URL {url}: {e}"))?;
    let host = parsed.host_str().ok_or(format!("{url}: no host"))?;
    let port = parsed.port_or_known_default().unwrap_or(443);
    match tokio::net::lookup_host((host, port)).await {
        Ok(addrs) => {
            let list: Vec<String> = addrs.map(|a| a.ip().to_string()).collect();
            println!("resolve {host} -> {}", list.join(","));
        }
        Err(e) => return Err(format!("resolve {host} error: {}", chain(&e))),
    }
    match client.get(parsed.clone()).send().await {
        Ok(resp) => {
            println!("get {url} -> {}", resp.status().as_u16());
            Ok(())
        }
        Err(e) => Err(format!("get {url} error: {}", chain(&e))),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let urls: Vec<String> = std::env::args().skip(1).collect();
    if urls.is_empty() {
        eprintln!("usage: image-probe URL...");
        return ExitCode::from(2);
    }
    let client = match reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            println!("client error: {}", chain(&e));
            return ExitCode::from(1);
        }
    };
    let mut ok = true;
    for url in &urls {
        if let Err(msg) = probe(&client, url).await {
            println!("{msg}");
            ok = false;
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
