//! ARGO Messaging Service (AMS) publisher, as `ssmsend` uses it with `protocol: AMS`.
//!
//! Wire behaviour follows `argo-ams-library` 1.0.0 (what SSM 4 uses):
//! - token: `[messaging] token`, else `GET https://<host>:8443/v1/service-types/ams/hosts/<host>:authx509`
//!   with the host certificate as TLS client certificate, reply `{"token": "..."}`;
//! - publish: `POST https://<host>/v1/projects/<project>/topics/<topic>:publish`, header
//!   `x-api-key: <token>`, body `{"messages":[{"attributes":{"empaid":"<id>"},"data":"<base64>"}]}`,
//!   reply `{"messageIds":["..."]}`; errors `{"error":{"code":..,"message":..,"status":..}}`.
//!
//! Differences from the Python client, on purpose:
//! - requests filled with as many messages as fit under [`BatchLimits`] ([`Client::publish_all`];
//!   `ams_max_messages_per_request: 1` gives SSM's one per request). A multi-message publish
//!   is not atomic on the AMS side: AMS stores the messages one by one and a failure halfway
//!   (its 500 "Backend Error", or 413 for one message over its limit) leaves the first ones
//!   stored, so a 500 for a request of several messages is not repeated
//!   ([`AmsError::Unconfirmed`]) and a 413 splits the request in halves (`batch.rs`);
//! - several requests in flight on reused keep-alive connections ([`Client::publish_all`]);
//! - retries with exponential backoff and jitter on connection errors, 408, 429 and every 5xx
//!   (the library retries 408, 502, 503, 504 and connection errors only when asked to); a
//!   publish that timed out or lost its connection after the request went out is not repeated
//!   ([`AmsError::Unconfirmed`]), since AMS would store a repeat as a second message;
//! - an authx509 token is fetched again once when AMS answers 401 (tokens can be rotated).
//!
//! The parts:
//! - [`AmsConfig`] (`config.rs`): what the client needs (host, project, topic, token or host
//!   certificate, trust, timeouts), built by the caller; [`RetryPolicy`] (from [`crate::net`]):
//!   when a failed request is tried again;
//! - [`Client`] (`client.rs`): the token, publishes, [`Client::publish_all`]; `batch.rs`:
//!   how requests are filled ([`BatchLimits`]);
//! - [`AmsError`] (`error.rs`): every way a request fails, and whether the run may go on.

mod batch;
mod client;
mod config;
mod error;

/// The retry rule AMS requests follow (also the OpenStack client's).
pub use crate::net::RetryPolicy;
pub use batch::{BatchLimits, DEFAULT_MAX_MESSAGES, DEFAULT_MAX_REQUEST_BYTES};
pub use client::{Client, MAX_REPLY_BYTES, Outgoing};
pub use config::{AmsConfig, DEFAULT_AUTHN_PORT, DEFAULT_CONCURRENCY, DEFAULT_PORT, ServerTrust};
pub use error::{AmsError, TokenSource};
