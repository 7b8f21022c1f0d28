//! What the client needs to reach a broker: addresses, TLS material, limits.
//!
//! Built by the caller (the sender maps `sender.cfg` onto it); no file
//! parsing here, so the types only admit settings the client can honour.

use std::fmt;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use openssl::x509::X509;

use crate::smime::ClientIdentity;

/// One broker to try, in configuration order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddress {
    pub host: String,
    pub port: u16,
}

impl BrokerAddress {
    pub fn new(host: impl Into<String>, port: u16) -> BrokerAddress {
        BrokerAddress {
            host: host.into(),
            port,
        }
    }
}

impl fmt::Display for BrokerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// What the broker's certificate chain is verified against.
#[derive(Debug, Clone)]
pub enum TrustAnchors {
    /// An OpenSSL hashed directory such as `/etc/grid-security/certificates`
    /// (`[certificates] capath`). Only these CAs are trusted.
    CaPath(PathBuf),
    /// A PEM file of one or more CA certificates. Only these are trusted.
    CaFile(PathBuf),
    /// CA certificates already loaded. Only these are trusted.
    Certificates(Vec<X509>),
    /// OpenSSL's default locations (`SSL_CERT_FILE`, `SSL_CERT_DIR`).
    SystemDefault,
}

/// TLS towards the broker (`[broker] use_ssl = true`). The broker's chain is
/// always verified; `verify_hostname` additionally matches its name or IP.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub identity: Option<ClientIdentity>,
    pub trust: TrustAnchors,
    pub verify_hostname: bool,
}

/// Every wait the client does is bounded by one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connect + TLS handshake + CONNECTED, per broker tried.
    pub connect: Duration,
    /// The longest wait for the next RECEIPT while messages are in flight
    /// (also bounds a blocked write: a full window frees only on receipts).
    pub receipt: Duration,
    /// Heart-beats: we offer to send one every `idle/2` and ask for one every
    /// `idle/3`. When the broker agrees to send, a silence longer than
    /// `max(idle, 3 x agreed interval)` fails the connection. Zero disables
    /// heart-beats.
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            // SSM's CONNECTION_TIMEOUT.
            connect: Duration::from_secs(10),
            receipt: Duration::from_secs(30),
            idle: Duration::from_secs(60),
        }
    }
}

/// The default number of SENDs that may await their RECEIPT at once.
pub const DEFAULT_WINDOW: NonZeroUsize = match NonZeroUsize::new(64) {
    Some(n) => n,
    None => unreachable!(),
};

/// Everything [`crate::stomp::connect`] needs.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Tried in order until one accepts (failover).
    pub brokers: Vec<BrokerAddress>,
    /// `None` = plain TCP.
    pub tls: Option<TlsSettings>,
    pub timeouts: Timeouts,
    /// Unacknowledged SENDs allowed in flight; 1 behaves like SSM.
    pub window: NonZeroUsize,
    /// The largest frame accepted from the broker.
    pub max_inbound_frame: usize,
}

impl BrokerConfig {
    /// Plain TCP, default timeouts and window.
    pub fn new(brokers: Vec<BrokerAddress>) -> BrokerConfig {
        BrokerConfig {
            brokers,
            tls: None,
            timeouts: Timeouts::default(),
            window: DEFAULT_WINDOW,
            max_inbound_frame: super::codec::DEFAULT_MAX_FRAME,
        }
    }
}
