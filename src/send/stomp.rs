//! Delivery to a STOMP broker: SEND each sealed message with SSM's headers,
//! remove it once its RECEIPT came, keep it when the connection failed first.

use std::collections::HashMap;
use std::num::NonZeroUsize;

use futures_util::StreamExt;
use tracing::Instrument;

use super::Outbox;
use crate::config::sender::{Stomp, Timeouts};
use crate::daemon::Shutdown;
use crate::smime::{ClientIdentity, Credentials};
use crate::spool::ElementId;
use crate::stomp::{
    self, BrokerAddress, BrokerConfig, Outcome, StompError, TlsSettings, TrustAnchors,
};

/// `sender.cfg` onto the STOMP client: TLS with the host certificate as
/// client certificate and the broker checked against `capath`.
pub fn broker_config(
    settings: &Stomp,
    timeouts: &Timeouts,
    credentials: &Credentials,
    capath: &std::path::Path,
) -> BrokerConfig {
    let brokers = settings
        .brokers
        .iter()
        .map(|b| BrokerAddress::new(b.host.clone(), b.port))
        .collect();
    let mut config = BrokerConfig::new(brokers);
    config.window = NonZeroUsize::new(settings.window).unwrap_or(stomp::DEFAULT_WINDOW);
    config.timeouts = *timeouts;
    if settings.use_ssl {
        config.tls = Some(TlsSettings {
            identity: Some(ClientIdentity::from_credentials(credentials)),
            trust: TrustAnchors::CaPath(capath.to_path_buf()),
            verify_hostname: true,
        });
    }
    config
}

/// Sends every element of `ids`; `Err` is why the run stopped early (the
/// elements not delivered are back in the queue by then, or will be once the
/// spool is finished). Once `stop` is requested nothing more is sent, the
/// connection attempt ends at once, and the messages already sent get until
/// [`Shutdown::grace_over`] for their receipt; those without one are kept.
/// A stop is no failure: `Ok`.
pub async fn send_all(
    config: &BrokerConfig,
    destination: &str,
    spool: &Outbox,
    ids: Vec<ElementId>,
    stop: &Shutdown,
) -> Result<(), StompError> {
    // Signing starts while the connection is made (TCP, TLS, CONNECTED:
    // about 0.1 s against a local ActiveMQ); if no broker takes it, what was
    // taken goes back to the queue untouched.
    let mut sealed = std::pin::pin!(spool.sealed(ids));
    let connected = tokio::select! {
        c = stomp::connect(config) => Some(c),
        _ = stop.requested() => None,
    };
    let mut conn = match connected {
        Some(Ok(conn)) => conn,
        unusable => {
            spool.stop();
            while let Some(msg) = sealed.next().await {
                spool.keep(msg.id);
            }
            return match unusable {
                Some(Err(e)) => Err(e),
                _ => {
                    tracing::info!("stopped on request while connecting to the broker");
                    Ok(())
                }
            };
        }
    };
    tracing::info!(
        broker = %conn.broker(),
        server = conn.server().unwrap_or("-"),
        "Connected; will send messages to {destination}"
    );
    let mut in_flight: HashMap<String, ElementId> = HashMap::new();
    let mut failure: Option<StompError> = None;
    while let Some(msg) = sealed.next().await {
        if failure.is_some() || stop.is_requested() {
            spool.stop();
            spool.keep(msg.id);
            continue;
        }
        let key = msg.id.as_str().to_owned();
        let span = crate::logging::message_span(&msg.id);
        // `send` waits only for a window slot, and is cancel-safe: a stop
        // while waiting sends nothing.
        let sending = conn.send(destination, &key, msg.body).instrument(span);
        let sent = tokio::select! {
            r = sending => Some(r),
            _ = stop.requested() => None,
        };
        match sent {
            Some(Ok(())) => {
                in_flight.insert(key, msg.id);
            }
            Some(Err(e)) => {
                spool.keep(msg.id);
                spool.stop();
                failure = Some(e);
                continue;
            }
            None => {
                spool.keep(msg.id);
                spool.stop();
                continue;
            }
        }
        while let Some(outcome) = conn.try_next_outcome() {
            settle(spool, &mut in_flight, outcome);
        }
    }
    let mut grace = std::pin::pin!(stop.grace_over());
    let mut abandoned = false;
    loop {
        let outcome = tokio::select! {
            o = conn.next_outcome() => o,
            _ = &mut grace, if !abandoned => {
                // Settles every unconfirmed message as failed.
                conn.abandon().await;
                abandoned = true;
                continue;
            }
        };
        match outcome {
            Some(outcome) => settle(spool, &mut in_flight, outcome),
            None => break,
        }
    }
    // Every sent message had its outcome; anything left was never confirmed.
    for (_, id) in in_flight.drain() {
        spool.keep(id);
    }
    if let Some(e) = failure.or_else(|| conn.failure().cloned()) {
        return Err(e);
    }
    // The DISCONNECT receipt confirms no message: a stop does not wait for
    // it beyond the grace.
    tokio::select! {
        r = conn.disconnect() => r?,
        _ = &mut grace, if !abandoned => conn.abandon().await,
    }
    // Confirmations that came during the disconnect.
    while let Some(outcome) = conn.next_outcome().await {
        settle(spool, &mut in_flight, outcome);
    }
    Ok(())
}

fn settle(spool: &Outbox, in_flight: &mut HashMap<String, ElementId>, outcome: Outcome) {
    let (key, confirmed) = match outcome {
        Outcome::Confirmed(k) => (k, true),
        Outcome::Failed(k) => (k, false),
    };
    let Some(id) = in_flight.remove(&key) else {
        tracing::warn!("the broker answered for message {key}, which is not in flight");
        return;
    };
    let _span = crate::logging::message_span(&id).entered();
    if confirmed {
        tracing::info!("sent");
        spool.delivered(id);
    } else {
        tracing::warn!("not confirmed by the broker, kept for the next run");
        spool.keep(id);
    }
}
