//! The two tasks of an open connection. After CONNECTED the socket is
//! split: the writer task owns the write half (frames are batched and
//! flushed without waiting for receipts, heart-beats go out when idle), the
//! reader task owns the read half (RECEIPTs free window slots the moment
//! they arrive, ERROR, silence or a lost link ends the connection). Both
//! report to the [`super::Connection`] handle through [`Event`]s.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{ReadHalf, WriteHalf};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_util::codec::{FramedRead, FramedWrite};

use super::codec::{Command, Frame, Inbound, Outbound, StompCodec};
use super::error::StompError;
use super::handshake::BoxedTransport;
use crate::net::excerpt;

/// What the I/O tasks tell the [`Connection`] handle, in the order it happened.
#[derive(Debug)]
pub(super) enum Event {
    /// RECEIPT for a message in flight (already removed from the window).
    Confirmed(String),
    /// RECEIPT for a frame that was not a message (DISCONNECT).
    Receipt(String),
    /// The connection is unusable; the task that saw it has stopped.
    Failed(StompError),
}

/// State the caller's handle shares with the reader task.
pub(super) struct Shared {
    /// Ids sent and not yet confirmed, oldest first.
    pub(super) in_flight: Mutex<VecDeque<String>>,
    /// One permit per free window slot.
    pub(super) window: Semaphore,
}

impl Shared {
    pub(super) fn in_flight(&self) -> MutexGuard<'_, VecDeque<String>> {
        // A poisoned lock only means a task panicked mid-update of a plain
        // list; its contents are still the best record we have.
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Removes `id` from the window; false when it was not in flight.
    fn confirm(&self, id: &str) -> bool {
        let mut q = self.in_flight();
        match q.iter().position(|x| x == id) {
            Some(i) => {
                q.remove(i);
                true
            }
            None => false,
        }
    }
}

/// The running tasks of one connection and the ends of their channels that
/// the handle keeps.
pub(super) struct Tasks {
    pub shared: Arc<Shared>,
    pub outbound: mpsc::Sender<Outbound>,
    pub events: mpsc::UnboundedReceiver<Event>,
    pub reader: JoinHandle<()>,
    pub writer: JoinHandle<()>,
}

/// Starts the reader and writer over the two halves of a connection that
/// has just completed its handshake, with a window of `window` messages.
pub(super) fn start(
    frames_in: FramedRead<ReadHalf<BoxedTransport>, StompCodec>,
    frames_out: FramedWrite<WriteHalf<BoxedTransport>, StompCodec>,
    window: usize,
    silence_limit: Option<Duration>,
    send_every: Option<Duration>,
    broker: String,
) -> Tasks {
    let shared = Arc::new(Shared {
        in_flight: Mutex::new(VecDeque::with_capacity(window)),
        window: Semaphore::new(window),
    });
    let (events_tx, events) = mpsc::unbounded_channel();
    let (outbound, outbound_rx) = mpsc::channel(window + 1);
    let reader = tokio::spawn(read_loop(
        frames_in,
        Arc::clone(&shared),
        events_tx.clone(),
        silence_limit,
        broker.clone(),
    ));
    let writer = tokio::spawn(write_loop(
        frames_out,
        outbound_rx,
        events_tx,
        send_every,
        broker,
    ));
    Tasks {
        shared,
        outbound,
        events,
        reader,
        writer,
    }
}

pub(super) fn io_or_protocol(
    broker: &str,
    e: super::codec::CodecError,
    writing: bool,
) -> StompError {
    use super::codec::CodecError;
    match e {
        CodecError::Io(source) => StompError::Io {
            broker: broker.to_owned(),
            source,
        },
        source if writing => StompError::Encode {
            broker: broker.to_owned(),
            source,
        },
        source => StompError::Protocol {
            broker: broker.to_owned(),
            source,
        },
    }
}

pub(super) fn broker_error(broker: &str, frame: &Frame) -> StompError {
    StompError::Broker {
        broker: broker.to_owned(),
        message: frame.get("message").map_or_else(
            || "(no message header)".to_owned(),
            |m| excerpt(m.as_bytes()),
        ),
        detail: String::from_utf8_lossy(&frame.body).into_owned(),
        receipt_id: frame.get("receipt-id").map(str::to_owned),
    }
}

async fn read_loop(
    mut frames: FramedRead<ReadHalf<BoxedTransport>, StompCodec>,
    shared: Arc<Shared>,
    events: mpsc::UnboundedSender<Event>,
    silence_limit: Option<Duration>,
    broker: String,
) {
    let failure = loop {
        let next = match silence_limit {
            Some(limit) => match timeout(limit, frames.next()).await {
                Ok(next) => next,
                Err(_) => {
                    break StompError::Idle {
                        broker,
                        after: limit,
                    };
                }
            },
            None => frames.next().await,
        };
        let frame = match next {
            None => break StompError::Closed { broker },
            Some(Err(e)) => break io_or_protocol(&broker, e, false),
            Some(Ok(Inbound::HeartBeat)) => continue,
            Some(Ok(Inbound::Frame(frame))) => frame,
        };
        match frame.command {
            Command::Receipt => {
                let Some(id) = frame.get("receipt-id") else {
                    tracing::warn!(%broker, "RECEIPT without receipt-id ignored");
                    continue;
                };
                // Window slot, removal and event in one step (no await in
                // between), so a cancelled reader never loses a confirmation.
                let event = if shared.confirm(id) {
                    shared.window.add_permits(1);
                    tracing::debug!(%broker, id, "RECEIPT");
                    Event::Confirmed(id.to_owned())
                } else {
                    Event::Receipt(id.to_owned())
                };
                if events.send(event).is_err() {
                    return; // the handle is gone
                }
            }
            Command::Error => break broker_error(&broker, &frame),
            command => {
                tracing::warn!(%broker, %command, "unexpected frame ignored");
            }
        }
    };
    shared.window.close();
    let _ = events.send(Event::Failed(failure));
}

async fn write_loop(
    mut frames: FramedWrite<WriteHalf<BoxedTransport>, StompCodec>,
    mut outbound: mpsc::Receiver<Outbound>,
    events: mpsc::UnboundedSender<Event>,
    heart_beat: Option<Duration>,
    broker: String,
) {
    let result: Result<(), StompError> = async {
        loop {
            let next = match heart_beat {
                Some(every) => match timeout(every, outbound.recv()).await {
                    Ok(next) => next,
                    Err(_) => Some(Outbound::HeartBeat),
                },
                None => outbound.recv().await,
            };
            let Some(first) = next else {
                // The handle closed the channel: flush, then TLS close_notify
                // and FIN.
                frames
                    .close()
                    .await
                    .map_err(|e| io_or_protocol(&broker, e, true))?;
                return Ok(());
            };
            // Queue every frame already waiting, then flush once: the window
            // is filled without a round trip per message.
            frames
                .feed(first)
                .await
                .map_err(|e| io_or_protocol(&broker, e, true))?;
            while let Ok(more) = outbound.try_recv() {
                frames
                    .feed(more)
                    .await
                    .map_err(|e| io_or_protocol(&broker, e, true))?;
            }
            frames
                .flush()
                .await
                .map_err(|e| io_or_protocol(&broker, e, true))?;
        }
    }
    .await;
    if let Err(failure) = result {
        let _ = events.send(Event::Failed(failure));
    }
}
