//! What the network clients ([`crate::openstack`], [`crate::ams`],
//! [`crate::stomp`], [`crate::prometheus`], [`crate::cim`]) share, so that they fail, wait and report alike:
//!
//! - [`RetryPolicy`] (`retry.rs`): how often a failed request is tried
//!   again and how long to wait in between (exponential, capped, jittered);
//! - `text.rs`: what a server or an error says, made fit for a log line:
//!   [`excerpt`], [`server_message`], [`error_chain`];
//! - `http.rs`: reading an HTTP server's answer without trusting it (bodies
//!   read capped, same-origin redirects, secrets scrubbed from error pages).

mod http;
mod retry;
mod text;

pub use http::{
    BodyError, MAX_REDIRECTS, Redirect, json_values, json_values_exceed, origin, read_body,
    same_origin, same_origin_redirects, scrub,
};
pub use retry::RetryPolicy;
pub use text::{EXCERPT_CHARS, error_chain, excerpt, excerpt_chars, server_message};
