//! Delivery to the ARGO Messaging Service: publish each sealed message with
//! its element name as `empaid`, remove it once AMS gave it an id.

use std::num::NonZeroUsize;
use std::path::Path;

use futures_util::StreamExt;

use super::queue::Spool;
use crate::ams::{self, AmsConfig, AmsError, Client, Outgoing, ServerTrust, Token};
use crate::config::sender::{Ams, Timeouts};
use crate::smime::{CredentialError, Credentials, ca_certificates_from_dir};
use crate::spool::ElementId;

/// `sender.cfg` onto the AMS client: the host certificate for authx509, the
/// system roots plus every CA of `capath` trusted.
pub fn client_config(
    settings: &Ams,
    topic: &str,
    timeouts: &Timeouts,
    credentials: &Credentials,
    capath: &Path,
) -> Result<AmsConfig, CredentialError> {
    let mut config = AmsConfig::new(settings.host.clone(), settings.project.clone(), topic);
    config.port = settings.port;
    config.authn_port = settings.authn_port;
    config.token = settings.token.as_ref().map(|t| Token::new(t.expose()));
    config.identity = Some(ams::ClientIdentity {
        cert: credentials.certificate().clone(),
        key: credentials.private_key().clone(),
        chain: Vec::new(),
    });
    config.trust = ServerTrust {
        system_roots: true,
        extra_roots: ca_certificates_from_dir(capath)?,
        verify: true,
    };
    config.connect_timeout = timeouts.connect;
    config.request_timeout = timeouts.receipt;
    config.concurrency = NonZeroUsize::new(settings.concurrency).unwrap_or(NonZeroUsize::MIN);
    Ok(config)
}

/// Publishes every element of `ids`; `Err` is the first failure that stopped
/// the run (the elements not published are back in the queue by then, or
/// will be once the spool is finished).
pub async fn send_all(client: &Client, spool: &Spool, ids: Vec<ElementId>) -> Result<(), AmsError> {
    // The token first: refused credentials lock nothing.
    client.token().await?;
    tracing::info!("Will publish to {}", client.publish_url());
    let outgoing = spool.sealed(ids).map(|m| Outgoing {
        msg_id: m.id.as_str().to_owned(),
        key: m.id,
        body: m.body,
    });
    let mut results = std::pin::pin!(client.publish_all(outgoing));
    let mut failure = None;
    while let Some((id, result)) = results.next().await {
        let _span = tracing::info_span!("msg", msg = %id).entered();
        match result {
            Ok(argo_id) => {
                tracing::info!("Sent {id}, Argo ID: {argo_id}");
                spool.delivered(id);
            }
            Err(e) if e.is_message_specific() => spool.reject(id, e.to_string()),
            Err(AmsError::NotAttempted { .. }) => spool.keep(id),
            Err(e) => {
                tracing::error!("not published, kept for the next run: {e}");
                spool.keep(id);
                spool.stop();
                failure.get_or_insert(e);
            }
        }
    }
    failure.map_or(Ok(()), Err)
}
