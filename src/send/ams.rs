//! Delivery to the ARGO Messaging Service: publish the sealed messages, in
//! filled requests, each with its element name as `empaid`; remove each once
//! AMS gave it an id. One AMS refuses as too large (413) is sent in parts
//! once the others are ([`super::parts`]).

use std::collections::HashSet;
use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use futures_util::StreamExt;

use super::Outbox;
use super::parts::{PartOutcome, send_in_parts};
use crate::ams::{AmsConfig, AmsError, BatchLimits, Client, Outgoing, ServerTrust};
use crate::config::sender::{Ams, Timeouts};
use crate::daemon::Shutdown;
use crate::smime::{ClientIdentity, CredentialError, Credentials, ca_certificates_from_dir};
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
    config.token = settings.token.clone();
    config.identity = Some(ClientIdentity::from_credentials(credentials));
    config.trust = ServerTrust {
        system_roots: true,
        extra_roots: ca_certificates_from_dir(capath)?,
        verify: true,
    };
    config.connect_timeout = timeouts.connect;
    config.request_timeout = timeouts.receipt;
    config.concurrency = NonZeroUsize::new(settings.concurrency).unwrap_or(NonZeroUsize::MIN);
    config.batch = BatchLimits {
        max_bytes: settings.max_request_bytes,
        max_messages: NonZeroUsize::new(settings.max_messages_per_request)
            .unwrap_or(NonZeroUsize::MIN),
    };
    Ok(config)
}

/// Publishes every element of `ids`; `Err` is the first failure that stopped
/// the run (the elements not published are back in the queue by then, or
/// will be once the spool is finished). Once `stop` is requested nothing
/// more is published, the token request ends at once, and the publishes in
/// flight get until [`Shutdown::grace_over`] for AMS's answer; those without
/// one are kept. A stop is no failure: `Ok`.
pub async fn send_all(
    client: &Client,
    spool: &Outbox,
    ids: Vec<ElementId>,
    stop: &Shutdown,
) -> Result<(), AmsError> {
    // The token first: refused credentials lock nothing.
    tokio::select! {
        t = client.token() => t?,
        _ = stop.requested() => {
            tracing::info!("stopped on request while fetching the AMS token");
            return Ok(());
        }
    };
    tracing::info!("Will publish to {}", client.publish_url());
    // Handed to the client and not yet answered: kept if the grace runs out.
    let unanswered: Mutex<HashSet<ElementId>> = Mutex::default();
    let pending = || unanswered.lock().unwrap_or_else(PoisonError::into_inner);
    let mut outgoing = std::pin::pin!(
        spool
            .sealed(ids)
            .map(|m| {
                pending().insert(m.id.clone());
                Outgoing {
                    msg_id: m.id.as_str().to_owned(),
                    key: m.id,
                    body: m.body,
                }
            })
            .fuse()
    );
    let mut failure = None;
    // Refused whole for their size (413): sent in parts once the rest is.
    let mut oversize = Vec::new();
    {
        let mut results = std::pin::pin!(client.publish_all(outgoing.as_mut()));
        let mut grace = std::pin::pin!(stop.grace_over());
        loop {
            let next = tokio::select! {
                r = results.next() => r,
                _ = &mut grace => {
                    tracing::warn!(
                        unanswered = pending().len(),
                        "stopped waiting for AMS: messages without an answer are kept"
                    );
                    break;
                }
            };
            let Some((id, result)) = next else { break };
            pending().remove(&id);
            let _span = crate::logging::message_span(&id).entered();
            match result {
                Ok(argo_id) => {
                    tracing::info!("sent, Argo ID {argo_id}");
                    spool.delivered(id);
                }
                Err(e) if e.is_message_specific() => oversize.push((id, e.to_string())),
                Err(AmsError::NotAttempted { .. }) => spool.keep(id),
                Err(e) => {
                    tracing::error!("not published, kept for the next run: {e}");
                    spool.keep(id);
                    spool.stop();
                    failure.get_or_insert(e);
                }
            }
        }
    }
    // The stream must be read to its end (after a stop it only unlocks
    // what was sealed ahead); what went out unanswered is kept.
    spool.stop();
    while outgoing.next().await.is_some() {}
    for id in pending().drain() {
        spool.keep(id);
    }
    for (id, refusal) in oversize {
        if failure.is_some() || stop.is_requested() {
            spool.keep(id);
            continue;
        }
        let sent = send_in_parts(spool, id, &refusal, stop, |part_id, sealed| async move {
            tokio::select! {
                r = client.publish(&part_id, &sealed) => match r {
                    Ok(_) => PartOutcome::Confirmed,
                    Err(e) if e.is_message_specific() => PartOutcome::TooLarge(e.to_string()),
                    Err(e) => PartOutcome::Failed(Some(e)),
                },
                // Stopped, and AMS did not answer within the grace.
                _ = stop.grace_over() => PartOutcome::Failed(None),
            }
        })
        .await;
        if let Err(Some(e)) = sent {
            tracing::error!("not published, kept for the next run: {e}");
            failure = Some(e);
        }
    }
    failure.map_or(Ok(()), Err)
}
