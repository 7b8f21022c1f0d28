//! The test ActiveMQ started by `scripts/setup-activemq.sh`: where it listens,
//! its test PKI, client configurations for it, and a subscriber that collects
//! what arrived on a destination.
//!
//! Also included by the benchmark examples (tests/bench) with `#[path]`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use cloud_accounting::smime::ClientIdentity;
use cloud_accounting::stomp::codec::{Command, Frame, Inbound, Outbound, StompCodec};
use cloud_accounting::stomp::{BrokerAddress, BrokerConfig, TlsSettings, TrustAnchors};
use futures_util::{SinkExt, StreamExt};
use openssl::pkey::PKey;
use openssl::x509::X509;
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

/// Ports and PKI paths of the running test broker.
#[derive(Debug, Clone)]
pub struct Broker {
    pub stomp_port: u16,
    pub ssl_port: u16,
    /// Plain STOMP refusing frames over 100,000 bytes (`maxFrameSize`).
    pub small_frames_port: u16,
    pub ca_cert: PathBuf,
    pub capath: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub other_ca_cert: PathBuf,
    pub rogue_client_cert: PathBuf,
    pub rogue_client_key: PathBuf,
}

const HINT: &str = "run scripts/setup-activemq.sh (it installs and starts the test ActiveMQ)";

impl Broker {
    /// Reads `target/activemq/env`; panics with how to fix it when missing.
    pub fn get() -> Broker {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/activemq/env");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}; {HINT}", path.display()));
        let vars: HashMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
        let var = |name: &str| -> &str {
            vars.get(name)
                .copied()
                .unwrap_or_else(|| panic!("{} lacks {name}; {HINT}", path.display()))
        };
        let port = |name: &str| -> u16 {
            var(name)
                .parse()
                .unwrap_or_else(|e| panic!("{name} in {}: {e}", path.display()))
        };
        let broker = Broker {
            stomp_port: port("ACTIVEMQ_STOMP_PORT"),
            ssl_port: port("ACTIVEMQ_STOMP_SSL_PORT"),
            small_frames_port: port("ACTIVEMQ_STOMP_SMALL_FRAMES_PORT"),
            ca_cert: var("ACTIVEMQ_CA_CERT").into(),
            capath: var("ACTIVEMQ_CAPATH").into(),
            client_cert: var("ACTIVEMQ_CLIENT_CERT").into(),
            client_key: var("ACTIVEMQ_CLIENT_KEY").into(),
            other_ca_cert: var("ACTIVEMQ_OTHER_CA_CERT").into(),
            rogue_client_cert: var("ACTIVEMQ_ROGUE_CLIENT_CERT").into(),
            rogue_client_key: var("ACTIVEMQ_ROGUE_CLIENT_KEY").into(),
        };
        if std::net::TcpStream::connect(("127.0.0.1", broker.stomp_port)).is_err() {
            panic!(
                "the test ActiveMQ is not listening on 127.0.0.1:{}; {HINT}",
                broker.stomp_port
            );
        }
        broker
    }

    /// Plain STOMP, default timeouts and window.
    pub fn plain_config(&self) -> BrokerConfig {
        BrokerConfig::new(vec![BrokerAddress::new("127.0.0.1", self.stomp_port)])
    }

    /// STOMP over TLS with the test client certificate, broker verified
    /// against the hashed CA directory (like `/etc/grid-security/certificates`).
    pub fn ssl_config(&self) -> BrokerConfig {
        let mut config = BrokerConfig::new(vec![BrokerAddress::new("127.0.0.1", self.ssl_port)]);
        config.tls = Some(TlsSettings {
            identity: Some(identity(&self.client_cert, &self.client_key)),
            trust: TrustAnchors::CaPath(self.capath.clone()),
            verify_hostname: true,
        });
        config
    }
}

/// Loads a PEM certificate and key.
pub fn identity(cert: &Path, key: &Path) -> ClientIdentity {
    let read = |p: &Path| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    ClientIdentity {
        certificate: X509::from_pem(&read(cert)).unwrap(),
        key: PKey::private_key_from_pem(&read(key)).unwrap(),
        chain: Vec::new(),
    }
}

/// A queue name no other test (or run) uses.
pub fn unique_queue(label: &str) -> String {
    format!("/queue/test.{label}.{}", uuid::Uuid::new_v4().simple())
}

/// One message as a consumer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub empa_id: Option<String>,
    pub body: Bytes,
    pub headers: Vec<(String, String)>,
}

/// A consumer on a destination (plain STOMP, auto ack), standing in for the
/// APEL server's receiver.
pub struct Subscriber {
    framed: Framed<TcpStream, StompCodec>,
}

impl Subscriber {
    pub async fn subscribe(broker: &Broker, destination: &str) -> Subscriber {
        let tcp = TcpStream::connect(("127.0.0.1", broker.stomp_port))
            .await
            .unwrap_or_else(|e| panic!("subscriber cannot connect: {e}; {HINT}"));
        let mut framed = Framed::new(tcp, StompCodec::default());
        let connect = Frame::new(Command::Connect)
            .header("accept-version", "1.2")
            .header("host", "localhost")
            .header("heart-beat", "0,0");
        framed.send(Outbound::Frame(connect)).await.unwrap();
        let mut sub = Subscriber { framed };
        let connected = sub.next_frame(Duration::from_secs(10)).await.unwrap();
        assert_eq!(connected.command, Command::Connected, "{connected:?}");
        let subscribe = Frame::new(Command::Subscribe)
            .header("id", "0")
            .header("destination", destination)
            .header("ack", "auto")
            .header("receipt", "subscribed");
        sub.framed.send(Outbound::Frame(subscribe)).await.unwrap();
        let receipt = sub.next_frame(Duration::from_secs(10)).await.unwrap();
        assert_eq!(receipt.get("receipt-id"), Some("subscribed"), "{receipt:?}");
        sub
    }

    async fn next_frame(&mut self, wait: Duration) -> Option<Frame> {
        loop {
            match tokio::time::timeout(wait, self.framed.next()).await {
                Err(_) => return None,
                Ok(None) => panic!("broker closed the subscriber connection"),
                Ok(Some(Err(e))) => panic!("subscriber: {e}"),
                Ok(Some(Ok(Inbound::HeartBeat))) => continue,
                Ok(Some(Ok(Inbound::Frame(f)))) => return Some(f),
            }
        }
    }

    /// Everything that arrives until nothing more has come for `quiet`.
    pub async fn collect_until_quiet(&mut self, quiet: Duration) -> Vec<Received> {
        let mut out = Vec::new();
        while let Some(frame) = self.next_frame(quiet).await {
            assert_eq!(frame.command, Command::Message, "{frame:?}");
            out.push(Received {
                empa_id: frame.get("empa-id").map(str::to_owned),
                body: frame.body.clone(),
                headers: frame.headers,
            });
        }
        out
    }

    /// Exactly `n` messages (waiting up to `wait` for each), then makes sure
    /// no further one follows within `quiet`.
    pub async fn collect_exactly(
        &mut self,
        n: usize,
        wait: Duration,
        quiet: Duration,
    ) -> Vec<Received> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let frame = self
                .next_frame(wait)
                .await
                .unwrap_or_else(|| panic!("only {} of {n} messages arrived", out.len()));
            assert_eq!(frame.command, Command::Message, "{frame:?}");
            out.push(Received {
                empa_id: frame.get("empa-id").map(str::to_owned),
                body: frame.body.clone(),
                headers: frame.headers,
            });
        }
        let extra = self.collect_until_quiet(quiet).await;
        assert!(
            extra.is_empty(),
            "{} unexpected extra messages",
            extra.len()
        );
        out
    }
}

/// A buffer of `len` printable bytes unique to `seed` (signed messages are
/// ASCII text).
pub fn ascii_body(seed: usize, len: usize) -> Bytes {
    let mut b = BytesMut::with_capacity(len);
    let header = format!("message {seed}\n");
    b.extend_from_slice(header.as_bytes());
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/\n";
    let mut i = seed;
    while b.len() < len {
        b.extend_from_slice(&[alphabet[i % alphabet.len()]]);
        i = i.wrapping_mul(31).wrapping_add(7);
    }
    b.truncate(len.max(header.len()));
    b.freeze()
}
