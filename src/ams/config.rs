//! What the AMS client needs: where AMS is, which token or host certificate, how the
//! server is trusted, timeouts and limits.
//!
//! The token is a [`Secret`]. Built by the caller (the sender maps `sender.cfg` onto it); no file parsing here.

use std::num::NonZeroUsize;
use std::time::Duration;

use openssl::x509::X509;

use super::{BatchLimits, RetryPolicy};
use crate::secret::Secret;
use crate::smime::ClientIdentity;

/// Port of the AMS API when the configuration names none.
pub const DEFAULT_PORT: u16 = 443;
/// Port of the ARGO authentication service (`authn_port` of argo-ams-library).
pub const DEFAULT_AUTHN_PORT: u16 = 8443;
/// Requests in flight at once when the configuration names no other number.
pub const DEFAULT_CONCURRENCY: usize = 8;

/// How the AMS server certificate is checked.
#[derive(Debug, Clone)]
pub struct ServerTrust {
    /// Trust the system's root certificates (the real AMS has a public certificate).
    pub system_roots: bool,
    /// Further trusted CA certificates (a test CA, or every certificate of a capath: see
    /// [`crate::smime::ca_certificates_from_dir`]).
    pub extra_roots: Vec<X509>,
    /// Off only for tests against a server with an unverifiable certificate. Default on.
    pub verify: bool,
}

impl Default for ServerTrust {
    fn default() -> Self {
        ServerTrust {
            system_roots: true,
            extra_roots: Vec::new(),
            verify: true,
        }
    }
}

/// Everything the AMS client needs; `sender.cfg` maps onto it.
#[derive(Debug, Clone)]
pub struct AmsConfig {
    /// `[broker] host`: AMS host name (also the `<host>` of the authx509 path).
    pub host: String,
    /// `[broker] port` (SSM ignores it for AMS and always uses 443).
    pub port: u16,
    /// `[messaging] ams_project`.
    pub project: String,
    /// `[messaging] destination`.
    pub topic: String,
    /// `[messaging] token`: when set, authx509 is never asked.
    pub token: Option<Secret>,
    /// Host of the authentication service; `None` = `host`.
    pub authn_host: Option<String>,
    pub authn_port: u16,
    /// Host certificate and key; required unless `token` is set.
    pub identity: Option<ClientIdentity>,
    pub trust: ServerTrust,
    pub connect_timeout: Duration,
    /// Whole request (send and reply) timeout; a stalled server counts as a connection error.
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
    /// Publish requests in flight at once in [`Client::publish_all`].
    pub concurrency: NonZeroUsize,
    /// How [`Client::publish_all`] fills its requests.
    pub batch: BatchLimits,
}

impl AmsConfig {
    /// A configuration with every default, for `host`, `project` and `topic`.
    pub fn new(
        host: impl Into<String>,
        project: impl Into<String>,
        topic: impl Into<String>,
    ) -> Self {
        AmsConfig {
            host: host.into(),
            port: DEFAULT_PORT,
            project: project.into(),
            topic: topic.into(),
            token: None,
            authn_host: None,
            authn_port: DEFAULT_AUTHN_PORT,
            identity: None,
            trust: ServerTrust::default(),
            connect_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(120),
            retry: RetryPolicy::default(),
            concurrency: NonZeroUsize::new(DEFAULT_CONCURRENCY).unwrap_or(NonZeroUsize::MIN),
            batch: BatchLimits::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_debug_is_masked() {
        let t = Secret::new("s3cret");
        let mut cfg = AmsConfig::new("h", "p", "t");
        cfg.token = Some(t);
        assert!(!format!("{cfg:?}").contains("s3cret"));
    }
}
