//! How an AMS request fails, and whether the run may go on after it.

/// Why authx509 or AMS refuses the host certificate's token.
const GOCDB_HINT: &str = "the DN of the host certificate must be registered in GOCDB as the \
Host DN of a production service of type eu.egi.cloud.accounting (eu.egi.storage.accounting \
for storage records)";

/// Why AMS refuses a configured token: GOCDB plays no part in it.
const TOKEN_HINT: &str = "AMS refused the configured token ([messaging] token in sender.cfg, \
or SSM_MESSAGING__TOKEN): it is expired, revoked or wrong, or not allowed to publish to this \
topic. Ask whoever issued it for a new one (for EGI: a GGUS ticket to the ARGO or APEL \
support unit), or remove the token so that ssmsend gets one from authx509 with the host \
certificate";

#[derive(Debug, Clone, thiserror::Error)]
pub enum AmsError {
    #[error("AMS client configuration: {0}")]
    Config(String),
    /// 401/403 from AMS or refusal by the authentication service. Never retried.
    #[error("{url}: access refused (HTTP {status}: {message}); {}", match token {
        TokenSource::Configured => TOKEN_HINT,
        TokenSource::Authx509 => GOCDB_HINT,
    })]
    Unauthorized {
        url: String,
        status: u16,
        message: String,
        /// Which token was refused: the hint differs.
        token: TokenSource,
    },
    /// 413: this message can never be published; the caller moves it aside, the others go on.
    #[error(
        "message {msg_id}: AMS refused it as too large (HTTP 413, request of {request_bytes} bytes: {message})"
    )]
    TooLarge {
        msg_id: String,
        request_bytes: usize,
        message: String,
    },
    /// Connection errors, timeouts, 408, 429, 5xx, still failing after every attempt.
    #[error("{url}: still failing after {attempts} attempt(s), last error: {last}")]
    Transient {
        url: String,
        attempts: u32,
        last: String,
    },
    /// Any other HTTP error (400, 404 for a wrong project or topic, ...). Not retried.
    #[error("{url}: HTTP {status}: {message}")]
    Rejected {
        url: String,
        status: u16,
        message: String,
    },
    /// The request may have reached AMS but no reply came (timeout, connection lost): not
    /// repeated, so that AMS never stores the message twice in one run; it stays queued.
    #[error(
        "message {msg_id}: {url}: no reply, AMS may or may not have stored it (kept for the next run): {error}"
    )]
    Unconfirmed {
        url: String,
        msg_id: String,
        error: String,
    },
    /// A reply that does not follow the AMS API.
    #[error("{url}: unexpected reply: {detail}")]
    Protocol { url: String, detail: String },
    /// A redirect to another origin than `sender.cfg` names: not followed, so
    /// neither the token nor the host certificate goes there.
    #[error("{url}: {redirect}")]
    Redirected {
        url: String,
        redirect: crate::net::Redirect,
    },
    /// Not sent: an earlier message of the same [`Client::publish_all`] failed for a reason
    /// that would fail this one too (refused access, AMS unreachable after every retry, ...).
    #[error("message {msg_id}: not sent, an earlier message of this run could not be delivered")]
    NotAttempted { msg_id: String },
}

impl AmsError {
    /// True when no later request can succeed either (stop sending, exit non-zero).
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            AmsError::Config(_)
                | AmsError::Unauthorized { .. }
                | AmsError::NotAttempted { .. }
                | AmsError::Redirected { .. }
        )
    }

    /// The failure of a request of several messages, as one of them sees it: the ids
    /// the error names become `msg_id`.
    pub fn for_message(&self, msg_id: &str) -> AmsError {
        let mut e = self.clone();
        match &mut e {
            AmsError::TooLarge { msg_id: id, .. }
            | AmsError::Unconfirmed { msg_id: id, .. }
            | AmsError::NotAttempted { msg_id: id } => msg_id.clone_into(id),
            _ => {}
        }
        e
    }

    /// True when the failure belongs to this message alone (413): the others may go on.
    pub fn is_message_specific(&self) -> bool {
        matches!(self, AmsError::TooLarge { .. })
    }
}

/// Where the current token came from: decides whether a 401 may be cured by
/// fetching again, and what a refusal asks the operator to fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    /// `[messaging] token`.
    Configured,
    /// Fetched from the authentication service with the host certificate.
    Authx509,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unauthorized_names_gocdb_for_authx509_and_the_token_for_a_configured_one() {
        let refused = |token| AmsError::Unauthorized {
            url: "u".into(),
            status: 401,
            message: "Unauthorized".into(),
            token,
        };
        let e = refused(TokenSource::Authx509);
        let s = e.to_string();
        assert!(
            s.contains("GOCDB") && s.contains("eu.egi.cloud.accounting"),
            "{s}"
        );
        assert!(e.is_fatal());
        let e = refused(TokenSource::Configured);
        let s = e.to_string();
        assert!(
            !s.contains("GOCDB") && s.contains("[messaging] token"),
            "{s}"
        );
        assert!(e.is_fatal());
    }
}
