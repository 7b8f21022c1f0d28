//! The certificate a transport presents as TLS client certificate: the STOMP
//! broker and the ARGO authentication service both want the host certificate.

use std::fmt;

use openssl::pkey::{PKey, Private};
use openssl::x509::X509;

use super::Credentials;

/// The host certificate and key, presented as TLS client identity (STOMP
/// brokers, and AMS's authx509 which needs it for a token).
#[derive(Clone)]
pub struct ClientIdentity {
    pub certificate: X509,
    pub key: PKey<Private>,
    /// Intermediate CA certificates sent along with `certificate`, if any.
    pub chain: Vec<X509>,
}

impl ClientIdentity {
    /// The host certificate and key of `credentials`, with no intermediates
    /// (what SSM presents).
    pub fn from_credentials(credentials: &Credentials) -> ClientIdentity {
        ClientIdentity {
            certificate: credentials.certificate().clone(),
            key: credentials.private_key().clone(),
            chain: Vec::new(),
        }
    }
}

impl fmt::Debug for ClientIdentity {
    // Never print key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("subject", &self.certificate.subject_name())
            .field("chain", &self.chain.len())
            .finish_non_exhaustive()
    }
}
