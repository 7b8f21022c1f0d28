//! A STOMP producer connection with a window of SENDs awaiting RECEIPTs.
//!
//! The connection is opened in `handshake.rs`; its socket is then owned by
//! a reader and a writer task (`io.rs`). The [`Connection`] handle the
//! caller drives (here: the send window, outcomes, disconnect) only
//! exchanges messages with the two tasks.
//!
//! The delivery contract: every message [`Connection::send`] accepted gets
//! exactly one [`Outcome`] from [`Connection::next_outcome`]:
//! `Confirmed` only after the broker's RECEIPT for it arrived, `Failed` when
//! the connection ended first. Nothing is ever sent twice: after a failure the
//! connection refuses further sends and the caller keeps the failed messages
//! for its next run.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout;

use super::codec::{Command, Frame, Outbound};
use super::config::{BrokerAddress, Timeouts};
use super::error::StompError;
use super::io::{Event, Shared, Tasks};

/// How long a connection whose write failed waits for the reader to read
/// what the broker sent before closing (its ERROR frame, the reason).
const READ_TAIL: Duration = Duration::from_secs(1);

/// The fate of one message handed to [`Connection::send`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The broker sent a RECEIPT for this message id: it is safe to remove
    /// the message from the queue.
    Confirmed(String),
    /// The connection ended before a RECEIPT came ([`Connection::failure`]
    /// says why): keep the message queued. The broker may or may not have it.
    Failed(String),
}

/// The STOMP version the broker chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolVersion {
    V1_0,
    V1_1,
    V1_2,
}

/// An open producer connection to one broker. See the module documentation
/// for the delivery contract.
pub struct Connection {
    broker: BrokerAddress,
    version: ProtocolVersion,
    server: Option<String>,
    timeouts: Timeouts,
    shared: Arc<Shared>,
    /// To the writer task; `None` once closed.
    outbound: Option<mpsc::Sender<Outbound>>,
    events: mpsc::UnboundedReceiver<Event>,
    /// The I/O tasks; taken when awaited (a finished handle must not be
    /// polled again).
    reader: Option<JoinHandle<()>>,
    writer: Option<JoinHandle<()>>,
    /// Outcomes settled but not yet handed to the caller.
    ready: VecDeque<Outcome>,
    /// Messages accepted by `send` whose outcome the caller has not taken.
    outstanding: usize,
    /// A failure seen by the non-blocking path, to be acted on next.
    pending_failure: Option<StompError>,
    failure: Option<StompError>,
    /// The I/O tasks have ended and every outstanding id is in `ready`.
    stopped: bool,
    /// `disconnect` completed.
    closed: bool,
}

impl Connection {
    /// The handle of a connection whose handshake is done and whose tasks run.
    pub(super) fn new(
        broker: BrokerAddress,
        version: ProtocolVersion,
        server: Option<String>,
        timeouts: Timeouts,
        tasks: Tasks,
    ) -> Connection {
        Connection {
            broker,
            version,
            server,
            timeouts,
            shared: tasks.shared,
            outbound: Some(tasks.outbound),
            events: tasks.events,
            reader: Some(tasks.reader),
            writer: Some(tasks.writer),
            ready: VecDeque::new(),
            outstanding: 0,
            pending_failure: None,
            failure: None,
            stopped: false,
            closed: false,
        }
    }

    pub fn broker(&self) -> &BrokerAddress {
        &self.broker
    }

    pub fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// The broker's `server` header, e.g. `ActiveMQ/5.17.2`.
    pub fn server(&self) -> Option<&str> {
        self.server.as_deref()
    }

    /// Why the connection failed, once it has (`None` after a clean
    /// [`Connection::disconnect`]).
    pub fn failure(&self) -> Option<&StompError> {
        self.failure.as_ref()
    }

    /// Messages accepted by [`Connection::send`] whose outcome has not been
    /// taken yet.
    pub fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// Sends one message: SEND with `destination`, `receipt: <msg_id>`,
    /// `empa-id: <msg_id>` and `content-length` (exactly SSM's headers).
    ///
    /// Returns once the frame is queued for writing; waits only while the
    /// window of unconfirmed messages is full. `Ok` means the message will get
    /// an [`Outcome`]; `Err` means it was not sent (keep it) and the
    /// connection is unusable (or `DuplicateId`: that id is already in flight).
    /// Cancel-safe: a dropped `send` future sent nothing and changed nothing.
    pub async fn send(
        &mut self,
        destination: &str,
        msg_id: &str,
        body: impl Into<Bytes>,
    ) -> Result<(), StompError> {
        self.check_usable().await?;
        let (shared, outbound) = match &self.outbound {
            Some(outbound) => (Arc::clone(&self.shared), outbound.clone()),
            None => return Err(self.stop(None).await),
        };
        // Both waits come before any change of state, so dropping this
        // future (cancellation) leaves the connection as it was.
        let waited = timeout(self.timeouts.receipt, async {
            let window_slot = shared.window.acquire().await.ok()?;
            let queue_slot = outbound.reserve().await.ok()?;
            Some((window_slot, queue_slot))
        })
        .await;
        let (window_slot, queue_slot) = match waited {
            Ok(Some(slots)) => slots,
            // Window closed or writer gone: a task failed; its event says why.
            Ok(None) => return Err(self.stop(None).await),
            Err(_) => {
                let e = self.receipt_timeout();
                return Err(self.stop(Some(e)).await);
            }
        };
        {
            let mut in_flight = shared.in_flight();
            if in_flight.iter().any(|id| id == msg_id) {
                return Err(StompError::DuplicateId {
                    id: msg_id.to_owned(),
                });
            }
            // Before the write: the RECEIPT may beat us back.
            in_flight.push_back(msg_id.to_owned());
        }
        // The reader gives the window slot back on RECEIPT.
        window_slot.forget();
        queue_slot.send(Outbound::Frame(
            Frame::new(Command::Send)
                .header("destination", destination)
                .header("receipt", msg_id)
                .header("empa-id", msg_id)
                .with_body(body),
        ));
        tracing::debug!(broker = %self.broker, id = msg_id, "SEND");
        self.outstanding += 1;
        Ok(())
    }

    /// The next settled message without waiting: confirmations that already
    /// arrived, or (after a failure) the messages that failed.
    pub fn try_next_outcome(&mut self) -> Option<Outcome> {
        if let Some(outcome) = self.ready.pop_front() {
            self.outstanding = self.outstanding.saturating_sub(1);
            return Some(outcome);
        }
        if self.stopped || self.pending_failure.is_some() {
            return None;
        }
        loop {
            match self.events.try_recv() {
                Ok(Event::Confirmed(id)) => {
                    self.outstanding = self.outstanding.saturating_sub(1);
                    return Some(Outcome::Confirmed(id));
                }
                Ok(Event::Receipt(_)) => continue,
                Ok(Event::Failed(e)) => {
                    self.pending_failure = Some(e);
                    return None;
                }
                Err(_) => return None,
            }
        }
    }

    /// The next settled message, waiting for the broker if needed; `None`
    /// once every sent message has had its outcome. Waiting longer than the
    /// receipt timeout fails the connection (and its messages).
    pub async fn next_outcome(&mut self) -> Option<Outcome> {
        loop {
            if let Some(outcome) = self.try_next_outcome() {
                return Some(outcome);
            }
            if self.outstanding == 0 {
                return None;
            }
            if let Some(e) = self.pending_failure.take() {
                self.stop(Some(e)).await;
                continue;
            }
            if self.stopped {
                // Unreachable by construction: stop() settles everything.
                tracing::error!(broker = %self.broker, lost = self.outstanding, "outcomes missing");
                self.outstanding = 0;
                return None;
            }
            match timeout(self.timeouts.receipt, self.events.recv()).await {
                Ok(Some(Event::Confirmed(id))) => {
                    self.outstanding = self.outstanding.saturating_sub(1);
                    return Some(Outcome::Confirmed(id));
                }
                Ok(Some(Event::Receipt(_))) => {}
                Ok(Some(Event::Failed(e))) => {
                    self.stop(Some(e)).await;
                }
                Ok(None) => {
                    self.stop(None).await;
                }
                Err(_) => {
                    let e = self.receipt_timeout();
                    self.stop(Some(e)).await;
                }
            }
        }
    }

    /// Ends the session politely: DISCONNECT with a receipt, wait for it
    /// (receipt timeout), close the socket. Confirmations that arrive
    /// meanwhile stay available from [`Connection::next_outcome`]. After this,
    /// `send` refuses.
    pub async fn disconnect(&mut self) -> Result<(), StompError> {
        if self.closed {
            return Ok(());
        }
        self.check_usable().await?;
        let Some(outbound) = self.outbound.as_ref() else {
            return Ok(());
        };
        let receipt = format!("disconnect-{}", uuid::Uuid::new_v4());
        let frame = Frame::new(Command::Disconnect).header("receipt", receipt.clone());
        if outbound.send(Outbound::Frame(frame)).await.is_err() {
            return Err(self.stop(None).await);
        }
        let waited = timeout(self.timeouts.receipt, async {
            loop {
                match self.events.recv().await {
                    Some(Event::Confirmed(id)) => self.ready.push_back(Outcome::Confirmed(id)),
                    Some(Event::Receipt(id)) if id == receipt => return Ok(()),
                    Some(Event::Receipt(_)) => {}
                    Some(Event::Failed(e)) => return Err(Some(e)),
                    None => return Err(None),
                }
            }
        })
        .await;
        match waited {
            Ok(Ok(())) => {}
            Ok(Err(cause)) => return Err(self.stop(cause).await),
            Err(_) => {
                let e = StompError::ReceiptTimeout {
                    broker: self.broker.to_string(),
                    id: receipt,
                    after: self.timeouts.receipt,
                };
                return Err(self.stop(Some(e)).await);
            }
        }
        // Dropping the sender lets the writer flush and close the stream.
        self.outbound = None;
        if let Some(mut writer) = self.writer.take()
            && timeout(self.timeouts.receipt, &mut writer).await.is_err()
        {
            writer.abort();
            let _ = writer.await;
        }
        // The broker closes its side after the receipt: not a failure.
        self.finish_tasks(false).await;
        self.closed = true;
        tracing::info!(broker = %self.broker, "disconnected from STOMP broker");
        Ok(())
    }

    /// Gives up on the connection at once, without DISCONNECT (a stop
    /// request whose grace is over): every message still unconfirmed gets
    /// [`Outcome::Failed`] from [`Connection::next_outcome`] (the broker may
    /// or may not have it), and `send` refuses from now on. Not a failure:
    /// [`Connection::failure`] stays as it was.
    pub async fn abandon(&mut self) {
        if !self.stopped {
            self.outbound = None;
            if let Some(writer) = &self.writer {
                writer.abort();
            }
            self.finish_tasks(false).await;
            let unconfirmed = self
                .ready
                .iter()
                .filter(|o| matches!(o, Outcome::Failed(_)))
                .count();
            tracing::warn!(
                broker = %self.broker,
                unconfirmed,
                "stopped waiting for the broker: messages without a receipt are kept"
            );
        }
        self.closed = true;
    }

    /// Err when the connection can no longer send.
    async fn check_usable(&mut self) -> Result<(), StompError> {
        if self.closed {
            return Err(StompError::Disconnected {
                broker: self.broker.to_string(),
            });
        }
        if let Some(e) = self.pending_failure.take() {
            return Err(self.stop(Some(e)).await);
        }
        match &self.failure {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    fn receipt_timeout(&self) -> StompError {
        StompError::ReceiptTimeout {
            broker: self.broker.to_string(),
            id: self.shared.in_flight().front().cloned().unwrap_or_default(),
            after: self.timeouts.receipt,
        }
    }

    /// Ends the connection after a failure: stops both tasks, keeps the
    /// confirmations that arrived, marks everything else failed. Returns the
    /// failure: `cause` (what the caller saw first) or else the first one the
    /// tasks reported.
    async fn stop(&mut self, cause: Option<StompError>) -> StompError {
        // A failure noticed by try_next_outcome came before anything else.
        let pending = self.pending_failure.take();
        if let Some(cause) = pending.or(cause) {
            self.failure.get_or_insert(cause);
        }
        self.outbound = None;
        if let Some(writer) = &self.writer {
            writer.abort();
        }
        self.finish_tasks(true).await;
        let failure = self
            .failure
            .get_or_insert_with(|| StompError::Closed {
                broker: self.broker.to_string(),
            })
            .clone();
        tracing::warn!(
            broker = %self.broker,
            error = %failure,
            unconfirmed = self.ready.iter().filter(|o| matches!(o, Outcome::Failed(_))).count(),
            "STOMP connection failed"
        );
        failure
    }

    /// Stops the reader (and waits for both tasks), then settles every
    /// outstanding message: queued confirmations first, the rest failed.
    async fn finish_tasks(&mut self, record_failure: bool) {
        self.shared.window.close();
        if let Some(mut reader) = self.reader.take() {
            // A write that failed because the broker closed the connection:
            // the ERROR frame it sent first is still to be read, and says why.
            let lost_link =
                record_failure && matches!(self.failure, None | Some(StompError::Io { .. }));
            let ended = lost_link && timeout(READ_TAIL, &mut reader).await.is_ok();
            if !ended {
                reader.abort();
                let _ = reader.await;
            }
        }
        if let Some(writer) = self.writer.take() {
            let _ = writer.await;
        }
        // No task runs now: the queue and the in-flight list are final.
        while let Ok(event) = self.events.try_recv() {
            match event {
                Event::Confirmed(id) => self.ready.push_back(Outcome::Confirmed(id)),
                Event::Receipt(_) => {}
                Event::Failed(e) => {
                    // The broker's own words beat the broken pipe they caused.
                    let better = matches!(
                        (&self.failure, &e),
                        (None, _) | (Some(StompError::Io { .. }), StompError::Broker { .. })
                    );
                    if record_failure && better {
                        self.failure = Some(e);
                    }
                }
            }
        }
        let unconfirmed: Vec<String> = self.shared.in_flight().drain(..).collect();
        self.ready
            .extend(unconfirmed.into_iter().map(Outcome::Failed));
        self.stopped = true;
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        for task in [&self.reader, &self.writer].into_iter().flatten() {
            task.abort();
        }
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("broker", &self.broker)
            .field("version", &self.version)
            .field("outstanding", &self.outstanding)
            .field("failure", &self.failure)
            .finish_non_exhaustive()
    }
}
