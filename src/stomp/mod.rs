//! Our own STOMP client for delivering signed messages to a broker, as
//! `ssmsend` does with stomp.py, but pipelined.
//!
//! - [`codec`]: frames on the wire (STOMP 1.0 to 1.2) for `tokio_util`.
//! - [`connect`]: tries the configured brokers in order (failover), over TCP
//!   or TLS with our host certificate as client certificate and the broker
//!   verified against the configured CAs; CONNECT offers 1.0, 1.1 and 1.2,
//!   `host` and heart-beats.
//! - [`Connection`]: SEND with exactly SSM's headers; up to
//!   [`BrokerConfig::window`] messages await their RECEIPT at once; every sent
//!   message gets one [`Outcome`]. A failed connection is never retried
//!   within the run, so no message is sent twice; the one exception is the
//!   broker's refusal of a frame for its size
//!   ([`StompError::is_frame_too_large`]), after which it read nothing more.
//!
//! ```no_run
//! # async fn demo(config: cloud_accounting::stomp::BrokerConfig) -> Result<(), Box<dyn std::error::Error>> {
//! use cloud_accounting::stomp::{self, Outcome};
//! let mut conn = stomp::connect(&config).await?;
//! for (id, body) in [("6920a6b5000001", b"signed message".to_vec())] {
//!     if conn.send("/queue/global.accounting.cloud", id, body).await.is_err() {
//!         break; // not sent: stays queued
//!     }
//!     while let Some(outcome) = conn.try_next_outcome() { /* remove or keep */ }
//! }
//! while let Some(outcome) = conn.next_outcome().await {
//!     match outcome {
//!         Outcome::Confirmed(id) => { /* remove from the queue */ }
//!         Outcome::Failed(id) => { /* keep it for the next run */ }
//!     }
//! }
//! match conn.failure() {
//!     Some(e) => return Err(e.clone().into()),
//!     None => conn.disconnect().await?,
//! }
//! # Ok(()) }
//! ```

mod client;
pub mod codec;
mod config;
mod error;
mod handshake;
mod io;
mod probe;
mod tls;

pub use client::{Connection, Outcome, ProtocolVersion};
pub use config::{
    BrokerAddress, BrokerConfig, DEFAULT_WINDOW, Timeouts, TlsSettings, TrustAnchors,
};
pub use error::StompError;
pub use handshake::connect;
pub use probe::{check_tls, probe};
