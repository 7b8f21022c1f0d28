//! A TCP relay between our client and the test ActiveMQ that watches the
//! STOMP traffic and can break the link the way a dying broker does.

use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use cloud_accounting::stomp::codec::{Command, Inbound, StompCodec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::codec::Decoder;

/// What the relay does with the broker's frames.
#[derive(Debug, Clone, Copy)]
pub enum Rule {
    Forward,
    /// Close both connections right after forwarding this many RECEIPTs.
    CutAfterReceipts(usize),
    /// Forward CONNECTED and heart-beats, drop every RECEIPT.
    SwallowReceipts,
}

/// What crossed the relay.
#[derive(Debug, Default, Clone)]
pub struct Log {
    /// `receipt` header of each SEND from the client, in order.
    pub sends: Vec<String>,
    /// `receipt-id` of each RECEIPT forwarded to the client, in order.
    pub receipts_forwarded: Vec<String>,
    /// Largest number of SENDs seen without a forwarded RECEIPT.
    pub max_unacknowledged: usize,
    pub cut: bool,
}

pub struct Proxy {
    pub port: u16,
    log: Arc<Mutex<Log>>,
    acceptor: JoinHandle<()>,
    relays: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    pub async fn start(upstream_port: u16, rule: Rule) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(Log::default()));
        let relays = Arc::new(Mutex::new(Vec::new()));
        let acceptor = {
            let (log, relays) = (Arc::clone(&log), Arc::clone(&relays));
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let log = Arc::clone(&log);
                    let relay = tokio::spawn(relay(client, upstream_port, rule, log));
                    relays.lock().unwrap().push(relay);
                }
            })
        };
        Proxy {
            port,
            log,
            acceptor,
            relays,
        }
    }

    pub fn log(&self) -> Log {
        self.log.lock().unwrap().clone()
    }

    /// Drops every connection at once, like a broker process being killed.
    pub fn kill(&self) {
        self.acceptor.abort();
        for relay in self.relays.lock().unwrap().drain(..) {
            relay.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn relay(client: TcpStream, upstream_port: u16, rule: Rule, log: Arc<Mutex<Log>>) {
    let upstream = TcpStream::connect(("127.0.0.1", upstream_port))
        .await
        .unwrap();
    let (client_read, client_write) = client.into_split();
    let (upstream_read, upstream_write) = upstream.into_split();
    // When either direction ends, both sockets are dropped (closed).
    tokio::select! {
        _ = client_to_broker(client_read, upstream_write, Arc::clone(&log)) => {}
        _ = broker_to_client(upstream_read, client_write, rule, log) => {}
    }
}

async fn client_to_broker(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, log: Arc<Mutex<Log>>) {
    let mut codec = StompCodec::new(16 * 1024 * 1024);
    let mut pending = BytesMut::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        pending.extend_from_slice(&chunk[..n]);
        // Account for the SENDs in this chunk before it can reach the broker.
        while let Some(item) = codec.decode(&mut pending).unwrap() {
            if let Inbound::Frame(frame) = item {
                if frame.command == Command::Connect {
                    continue;
                }
                if frame.command == Command::Send {
                    let mut log = log.lock().unwrap();
                    log.sends
                        .push(frame.get("receipt").unwrap_or_default().to_owned());
                    let open = log.sends.len() - log.receipts_forwarded.len();
                    log.max_unacknowledged = log.max_unacknowledged.max(open);
                }
            }
        }
        if to.write_all(&chunk[..n]).await.is_err() {
            return;
        }
    }
}

async fn broker_to_client(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    rule: Rule,
    log: Arc<Mutex<Log>>,
) {
    let mut codec = StompCodec::default();
    let mut pending = BytesMut::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        pending.extend_from_slice(&chunk[..n]);
        let mut out = BytesMut::new();
        let mut cut = false;
        while let Some(item) = codec.decode(&mut pending).unwrap() {
            let frame = match item {
                Inbound::HeartBeat => {
                    out.extend_from_slice(b"\n");
                    continue;
                }
                Inbound::Frame(frame) => frame,
            };
            if frame.command == Command::Receipt {
                if matches!(rule, Rule::SwallowReceipts) {
                    continue;
                }
                let mut log = log.lock().unwrap();
                log.receipts_forwarded
                    .push(frame.get("receipt-id").unwrap_or_default().to_owned());
                if let Rule::CutAfterReceipts(k) = rule
                    && log.receipts_forwarded.len() >= k
                {
                    log.cut = true;
                    cut = true;
                }
            }
            codec.encode_frame(&frame, &mut out).unwrap();
            if cut {
                break;
            }
        }
        if to.write_all(&out).await.is_err() || cut {
            return;
        }
    }
}
