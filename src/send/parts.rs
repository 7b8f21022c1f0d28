//! Sending an element in parts after the transport refused it for its size
//! (AMS's 413, ActiveMQ's "maximum frame size was exceeded"): its message is
//! halved at a record boundary ([`crate::record::split`]), each half signed
//! and sent, a half refused again halved again. A part that is a single
//! record and still refused goes to the reject directory with the reason.
//! The element stays whole and locked in the queue meanwhile; it is removed
//! only when every part is confirmed (or rejected), and kept whole for the
//! next run otherwise, so nothing is lost: at worst the parts already
//! confirmed are sent again.

use std::future::Future;

use tracing::Instrument;

use super::Outbox;
use crate::daemon::Shutdown;
use crate::record::split::{Unsplittable, halve};
use crate::spool::ElementId;

/// What the transport did with one part.
#[derive(Debug)]
pub enum PartOutcome<E> {
    /// Delivered (AMS gave it an id, the broker a RECEIPT).
    Confirmed,
    /// Refused for its size; the text says how.
    TooLarge(String),
    /// Any other failure: the element is kept whole, and this is returned.
    Failed(E),
}

/// What became of the element.
#[derive(Debug, PartialEq, Eq)]
pub enum InParts {
    /// Every part confirmed (or rejected as a lone record): removed.
    Delivered { parts: usize, rejected: usize },
    /// A single record from the start: rejected whole, as before splitting.
    Rejected,
    /// Not every part went: kept whole; `confirmed` parts will be sent again.
    Kept { confirmed: usize },
}

/// Sends the locked element `id`, whose message `refusal` (the
/// transport's words) refused whole, in parts through `send` (a part's
/// message id, e.g. `<id>.1.2`, and its sealed body), one part at a time, then
/// settles it. Stops between parts once `stop` is requested (the element is
/// kept). `Err` is a transport failure other than size: the element is kept
/// and the caller decides whether the run goes on.
pub async fn send_in_parts<E, F, Fut>(
    outbox: &Outbox,
    id: ElementId,
    refusal: &str,
    stop: &Shutdown,
    mut send: F,
) -> Result<InParts, E>
where
    F: FnMut(String, Vec<u8>) -> Fut,
    Fut: Future<Output = PartOutcome<E>>,
{
    let span = crate::logging::message_span(&id);
    async move {
        let whole = match outbox.read_locked(&id).await {
            Ok(body) => body,
            Err(why) => {
                tracing::error!("{refusal}; cannot read it again to split it, kept: {why}");
                outbox.keep(id);
                return Ok(InParts::Kept { confirmed: 0 });
            }
        };
        let first = match halve(&whole) {
            Ok(halves) => halves,
            Err(why) => {
                outbox.reject(id, format!("{refusal}; {why}"));
                return Ok(InParts::Rejected);
            }
        };
        tracing::warn!("{refusal}: sending it in parts, split at record boundaries");
        // Parts still to send, the next on top: records keep their order.
        let mut todo = vec![("2".to_owned(), first.1), ("1".to_owned(), first.0)];
        let (mut confirmed, mut rejected) = (0, 0);
        while let Some((label, body)) = todo.pop() {
            if stop.is_requested() {
                tracing::warn!(confirmed, "stopped on request: kept whole for the next run");
                outbox.keep(id);
                return Ok(InParts::Kept { confirmed });
            }
            let part_id = format!("{id}.{label}");
            let sealed = match outbox.seal(&body).await {
                Ok(s) => s,
                Err(why) => {
                    tracing::error!(part = %part_id, "cannot sign a part, kept whole: {why}");
                    outbox.keep(id);
                    return Ok(InParts::Kept { confirmed });
                }
            };
            match send(part_id.clone(), sealed).await {
                PartOutcome::Confirmed => {
                    tracing::info!(part = %part_id, "part sent");
                    confirmed += 1;
                }
                PartOutcome::TooLarge(how) => match halve(&body) {
                    Ok((a, b)) => {
                        todo.push((format!("{label}.2"), b));
                        todo.push((format!("{label}.1"), a));
                    }
                    Err(why) => {
                        let reason = match why {
                            Unsplittable::OneRecord(n) => format!(
                                "{how}: part {label} of message {id} is a single record of {n} bytes, too large to send on its own"
                            ),
                            Unsplittable::Unknown(w) => format!("{how}: part {label}: {w}"),
                        };
                        match outbox.reject_part(&id, &label, body, &reason).await {
                            Ok(path) => {
                                tracing::error!(
                                    "rejected: {reason}; written to {}",
                                    path.display()
                                );
                                rejected += 1;
                            }
                            Err(e) => {
                                tracing::error!(
                                    "{reason}, and cannot write it to the reject directory, kept whole: {e}"
                                );
                                outbox.keep(id);
                                return Ok(InParts::Kept { confirmed });
                            }
                        }
                    }
                },
                PartOutcome::Failed(e) => {
                    if confirmed > 0 {
                        tracing::warn!(
                            confirmed,
                            "a part was not sent: kept whole, its {confirmed} part(s) already sent will be sent again"
                        );
                    }
                    outbox.keep(id);
                    return Err(e);
                }
            }
        }
        tracing::info!(parts = confirmed, rejected, "sent in parts");
        outbox.delivered_in_parts(id, rejected);
        Ok(InParts::Delivered {
            parts: confirmed,
            rejected,
        })
    }
    .instrument(span)
    .await
}
