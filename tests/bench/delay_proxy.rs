//! Delaying TCP proxy for the WAN benchmark (scripts/bench-send.sh --wan): listens on
//! 127.0.0.1, forwards every connection to a target and delivers each chunk read a fixed
//! time after it was read, per direction, order kept. A latency, not a throughput throttle:
//! chunks in flight overlap. Prints `port=N` when listening; exits on SIGTERM.
//! Usage: delay-proxy TARGET_HOST:PORT DELAY_MS
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut a = std::env::args().skip(1);
    let (Some(target), Some(ms)) = (a.next(), a.next()) else {
        anyhow::bail!("usage: delay-proxy TARGET_HOST:PORT DELAY_MS");
    };
    let delay = Duration::from_millis(ms.parse()?);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("port={}", listener.local_addr()?.port());
    let mut term = signal(SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(()),
            accepted = listener.accept() => {
                let (client, _) = accepted?;
                let target = target.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(&target).await {
                        let _ = client.set_nodelay(true);
                        let _ = server.set_nodelay(true);
                        let (cr, cw) = client.into_split();
                        let (sr, sw) = server.into_split();
                        tokio::join!(pipe(cr, sw, delay), pipe(sr, cw, delay));
                    }
                });
            }
        }
    }
}

/// One direction: a reader stamps each chunk with its delivery time, a writer waits for it.
async fn pipe(
    mut r: tokio::net::tcp::OwnedReadHalf,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = r.read(&mut buf).await {
            if n == 0
                || tx
                    .send((Instant::now() + delay, buf[..n].to_vec()))
                    .is_err()
            {
                break;
            }
        }
    };
    let writer = async move {
        while let Some((at, chunk)) = rx.recv().await {
            sleep_until(at).await;
            if w.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = w.shutdown().await;
    };
    tokio::join!(reader, writer);
}
