//! Delivery to a STOMP broker: SEND each sealed message with SSM's headers,
//! remove it once its RECEIPT came, keep it when the connection failed first.
//!
//! One failure does not end the run: a broker that refuses a frame for its
//! size (ActiveMQ's `maxFrameSize`) closes the connection having read
//! nothing after that frame. The messages it left unconfirmed are sent again
//! one at a time on a new connection, the refused one in parts
//! ([`super::parts`]); then the rest of the queue follows.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::pin::Pin;

use futures_util::stream::{FusedStream, Stream, StreamExt};
use tokio::sync::Mutex;
use tracing::Instrument;

use super::Outbox;
use super::outbox::Sealed;
use super::parts::{PartOutcome, send_in_parts};
use crate::config::sender::{Stomp, Timeouts};
use crate::daemon::Shutdown;
use crate::smime::{ClientIdentity, Credentials};
use crate::spool::ElementId;
use crate::stomp::{
    self, BrokerAddress, BrokerConfig, Connection, Outcome, StompError, TlsSettings, TrustAnchors,
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
    let mut sealed = std::pin::pin!(spool.sealed(ids).fuse());
    // Taken from the stream but not sent: first on the next connection.
    let mut carry: Option<Sealed> = None;
    let mut again = false;
    loop {
        let connected = tokio::select! {
            c = stomp::connect(config) => Some(c),
            _ = stop.requested() => None,
        };
        let mut conn = match connected {
            Some(Ok(conn)) => conn,
            unusable => {
                keep_all(spool, carry.take(), sealed.as_mut()).await;
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
            "{}; will send messages to {destination}",
            if again { "Connected again" } else { "Connected" }
        );
        again = true;
        let suspects = match deliver(
            &mut conn,
            destination,
            spool,
            sealed.as_mut(),
            &mut carry,
            stop,
        )
        .await
        {
            Delivered::Done(result) => return result,
            Delivered::RefusedForSize(suspects) => suspects,
        };
        drop(conn);
        if let Err(e) = resend_alone(config, destination, spool, suspects, stop).await {
            keep_all(spool, carry.take(), sealed.as_mut()).await;
            return Err(e);
        }
        if stop.is_requested() {
            keep_all(spool, carry.take(), sealed.as_mut()).await;
            return Ok(());
        }
        if carry.is_none() && sealed.is_terminated() {
            return Ok(());
        }
    }
}

/// Stops taking elements and keeps every one taken but not sent.
async fn keep_all<S: Stream<Item = Sealed>>(
    spool: &Outbox,
    carry: Option<Sealed>,
    mut sealed: Pin<&mut S>,
) {
    spool.stop();
    if let Some(m) = carry {
        spool.keep(m.id);
    }
    while let Some(msg) = sealed.next().await {
        spool.keep(msg.id);
    }
}

/// How one connection's sending ended.
enum Delivered {
    /// The run is over: every element taken is settled.
    Done(Result<(), StompError>),
    /// The broker refused a frame for its size: these were unconfirmed (in
    /// send order, still locked); the stream (and `carry`) hold the rest.
    RefusedForSize(Vec<ElementId>),
}

/// Sends from `sealed` (after `carry`) on `conn`, windowed, until the
/// stream ends or the connection fails.
async fn deliver<S: Stream<Item = Sealed> + FusedStream>(
    conn: &mut Connection,
    destination: &str,
    spool: &Outbox,
    mut sealed: Pin<&mut S>,
    carry: &mut Option<Sealed>,
    stop: &Shutdown,
) -> Delivered {
    let mut unsettled = Unsettled::default();
    let mut failure: Option<StompError> = None;
    loop {
        let msg = match carry.take() {
            Some(m) => m,
            None => match sealed.next().await {
                Some(m) => m,
                None => break,
            },
        };
        if failure.is_some() || stop.is_requested() {
            spool.stop();
            spool.keep(msg.id);
            continue;
        }
        let Sealed { id, body } = msg;
        let key = id.as_str().to_owned();
        let span = crate::logging::message_span(&id);
        // Shared, not copied: kept for another connection if this one fails.
        let body = bytes::Bytes::from(body);
        // `send` waits only for a window slot, and is cancel-safe: a stop
        // while waiting sends nothing.
        let sending = conn.send(destination, &key, body.clone()).instrument(span);
        let sent = tokio::select! {
            r = sending => Some(r),
            _ = stop.requested() => None,
        };
        match sent {
            Some(Ok(())) => {
                unsettled.in_flight.insert(key, id);
            }
            Some(Err(e)) if e.is_frame_too_large() => {
                // Not sent: first on the next connection.
                *carry = Some(Sealed {
                    id,
                    body: Vec::from(body),
                });
                failure = Some(e);
                break;
            }
            Some(Err(e)) => {
                spool.keep(id);
                spool.stop();
                failure = Some(e);
                continue;
            }
            None => {
                spool.keep(id);
                spool.stop();
                continue;
            }
        }
        while let Some(outcome) = conn.try_next_outcome() {
            unsettled.settle(spool, conn.failure(), outcome);
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
            Some(outcome) => unsettled.settle(spool, conn.failure(), outcome),
            None => break,
        }
    }
    // Every sent message had its outcome; anything left was never confirmed.
    for (_, id) in unsettled.in_flight.drain() {
        spool.keep(id);
    }
    if let Some(e) = failure.or_else(|| conn.failure().cloned()) {
        if e.is_frame_too_large() && !unsettled.suspects.is_empty() {
            tracing::warn!(
                unconfirmed = unsettled.suspects.len(),
                "{e}: sending the unconfirmed messages again one at a time, the refused one in parts"
            );
            return Delivered::RefusedForSize(unsettled.suspects);
        }
        for id in unsettled.suspects {
            spool.keep(id);
        }
        keep_all(spool, carry.take(), sealed).await;
        return Delivered::Done(Err(e));
    }
    // The DISCONNECT receipt confirms no message: a stop does not wait for
    // it beyond the grace.
    let disconnected = tokio::select! {
        r = conn.disconnect() => r,
        _ = &mut grace, if !abandoned => {
            conn.abandon().await;
            Ok(())
        }
    };
    // Confirmations that came during the disconnect.
    while let Some(outcome) = conn.next_outcome().await {
        unsettled.settle(spool, conn.failure(), outcome);
    }
    for id in unsettled.suspects {
        spool.keep(id);
    }
    Delivered::Done(disconnected)
}

/// The messages of one connection awaiting their outcome, and those a size
/// refusal left unconfirmed.
#[derive(Default)]
struct Unsettled {
    in_flight: HashMap<String, ElementId>,
    /// In send order, still locked: sent again by [`resend_alone`].
    suspects: Vec<ElementId>,
}

impl Unsettled {
    fn settle(&mut self, spool: &Outbox, failure: Option<&StompError>, outcome: Outcome) {
        let (key, confirmed) = match outcome {
            Outcome::Confirmed(k) => (k, true),
            Outcome::Failed(k) => (k, false),
        };
        let Some(id) = self.in_flight.remove(&key) else {
            tracing::warn!("the broker answered for message {key}, which is not in flight");
            return;
        };
        let _span = crate::logging::message_span(&id).entered();
        if confirmed {
            tracing::info!("sent");
            spool.delivered(id);
        } else if failure.is_some_and(StompError::is_frame_too_large) {
            // Failed outcomes come in send order: the refused one is among them.
            self.suspects.push(id);
        } else {
            tracing::warn!("not confirmed by the broker, kept for the next run");
            spool.keep(id);
        }
    }
}

/// The messages a size refusal left unconfirmed, each sent again alone (a
/// refused one in parts), on connections of their own. `Err` is a failure
/// other than size: the rest are kept.
async fn resend_alone(
    config: &BrokerConfig,
    destination: &str,
    spool: &Outbox,
    suspects: Vec<ElementId>,
    stop: &Shutdown,
) -> Result<(), StompError> {
    let slot: Mutex<Option<Connection>> = Mutex::new(None);
    let mut result = Ok(());
    for id in suspects {
        if result.is_err() || stop.is_requested() {
            spool.keep(id);
            continue;
        }
        let span = crate::logging::message_span(&id);
        let body = match spool.read_locked(&id).await {
            Ok(raw) => spool.seal(&raw).await,
            Err(why) => Err(why),
        };
        let body = match body {
            Ok(b) => b,
            Err(why) => {
                span.in_scope(|| tracing::error!("cannot sign it again, kept: {why}"));
                spool.keep(id);
                continue;
            }
        };
        let key = id.as_str().to_owned();
        let outcome = send_one(&slot, config, destination, key, body, stop)
            .instrument(span.clone())
            .await;
        match outcome {
            PartOutcome::Confirmed => {
                span.in_scope(|| tracing::info!("sent"));
                spool.delivered(id);
            }
            PartOutcome::TooLarge(how) => {
                let sent = send_in_parts(spool, id, &how, stop, |part, body| {
                    send_one(&slot, config, destination, part, body, stop)
                })
                .await;
                if let Err(Some(e)) = sent {
                    result = Err(e);
                }
            }
            PartOutcome::Failed(e) => {
                spool.keep(id);
                if let Some(e) = e {
                    result = Err(e);
                }
            }
        }
    }
    if let Some(mut conn) = slot.into_inner() {
        let _ = conn.disconnect().await;
    }
    result
}

/// Sends one message and waits for its RECEIPT, connecting first if `slot`
/// holds no connection (a failed one is dropped). `Failed(None)`: stopped.
async fn send_one(
    slot: &Mutex<Option<Connection>>,
    config: &BrokerConfig,
    destination: &str,
    key: String,
    body: Vec<u8>,
    stop: &Shutdown,
) -> PartOutcome<Option<StompError>> {
    let mut slot = slot.lock().await;
    let conn = match slot.as_mut() {
        Some(c) => c,
        None => {
            let connected = tokio::select! {
                c = stomp::connect(config) => c,
                _ = stop.requested() => return PartOutcome::Failed(None),
            };
            match connected {
                Ok(c) => slot.insert(c),
                Err(e) => return PartOutcome::Failed(Some(e)),
            }
        }
    };
    let answered = match conn.send(destination, &key, body).await {
        Ok(()) => tokio::select! {
            o = conn.next_outcome() => Some(o),
            _ = stop.grace_over() => None,
        },
        Err(e) => {
            *slot = None;
            return refused(e);
        }
    };
    match answered {
        Some(Some(Outcome::Confirmed(k))) if k == key => PartOutcome::Confirmed,
        Some(_) => {
            let e = conn
                .failure()
                .cloned()
                .unwrap_or_else(|| StompError::Closed {
                    broker: conn.broker().to_string(),
                });
            *slot = None;
            refused(e)
        }
        None => {
            conn.abandon().await;
            *slot = None;
            PartOutcome::Failed(None)
        }
    }
}

fn refused(e: StompError) -> PartOutcome<Option<StompError>> {
    if e.is_frame_too_large() {
        PartOutcome::TooLarge(e.to_string())
    } else {
        PartOutcome::Failed(Some(e))
    }
}
