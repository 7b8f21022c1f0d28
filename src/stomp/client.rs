//! A STOMP producer connection with a window of SENDs awaiting RECEIPTs.
//!
//! After CONNECTED the socket is split: a writer task owns the write half
//! (frames are batched and flushed without waiting for receipts, heart-beats
//! go out when idle) and a reader task owns the read half (RECEIPTs free
//! window slots the moment they arrive, ERROR or a lost link ends the
//! connection). The [`Connection`] handle the caller drives only exchanges
//! messages with the two tasks.
//!
//! The delivery contract: every message [`Connection::send`] accepted gets
//! exactly one [`Outcome`] from [`Connection::next_outcome`]:
//! `Confirmed` only after the broker's RECEIPT for it arrived, `Failed` when
//! the connection ended first. Nothing is ever sent twice: after a failure the
//! connection refuses further sends and the caller keeps the failed messages
//! for its next run.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_util::codec::{FramedRead, FramedWrite};

use super::codec::{Command, Frame, Inbound, Outbound, StompCodec};
use super::config::{BrokerAddress, BrokerConfig, Timeouts};
use super::error::StompError;
use super::tls;

/// The byte stream under the codec: plain TCP or TLS.
pub(super) trait Transport: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Transport for T {}
pub(super) type BoxedTransport = Box<dyn Transport>;

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

/// What the I/O tasks tell the [`Connection`] handle, in the order it happened.
#[derive(Debug)]
enum Event {
    /// RECEIPT for a message in flight (already removed from the window).
    Confirmed(String),
    /// RECEIPT for a frame that was not a message (DISCONNECT).
    Receipt(String),
    /// The connection is unusable; the task that saw it has stopped.
    Failed(StompError),
}

/// State the caller's handle shares with the reader task.
struct Shared {
    /// Ids sent and not yet confirmed, oldest first.
    in_flight: Mutex<VecDeque<String>>,
    /// One permit per free window slot.
    window: Semaphore,
}

impl Shared {
    fn in_flight(&self) -> MutexGuard<'_, VecDeque<String>> {
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

/// Connects to the first broker of `config.brokers` that completes TCP, TLS
/// (when configured) and the STOMP handshake, trying them in order.
/// Cancel-safe: dropping the future closes whatever was half open.
pub async fn connect(config: &BrokerConfig) -> Result<Connection, StompError> {
    if config.brokers.is_empty() {
        return Err(StompError::NoBrokers);
    }
    let connector = config.tls.as_ref().map(tls::connector).transpose()?;
    let mut failures = Vec::new();
    for broker in &config.brokers {
        let attempt = timeout(
            config.timeouts.connect,
            connect_one(config, broker, connector.as_ref()),
        )
        .await;
        let error = match attempt {
            Ok(Ok(connection)) => return Ok(connection),
            Ok(Err(e)) => e,
            Err(_) => StompError::ConnectTimeout {
                broker: broker.to_string(),
                after: config.timeouts.connect,
            },
        };
        tracing::warn!(%broker, error = %error, "STOMP broker unusable");
        failures.push(error);
    }
    Err(StompError::NoBrokerReachable(failures))
}

async fn connect_one(
    config: &BrokerConfig,
    broker: &BrokerAddress,
    connector: Option<&tls::Connector>,
) -> Result<Connection, StompError> {
    let transport = open_transport(config, broker, connector).await?;
    handshake(config, broker, transport).await
}

/// The TCP connection to `broker` and, with TLS, the handshake (the
/// broker's certificate checked, ours presented): everything before the
/// first STOMP frame. `--check-network` stops here ([`super::probe`]).
pub(super) async fn open_transport(
    config: &BrokerConfig,
    broker: &BrokerAddress,
    connector: Option<&tls::Connector>,
) -> Result<BoxedTransport, StompError> {
    let tcp = TcpStream::connect((broker.host.as_str(), broker.port))
        .await
        .map_err(|e| StompError::Connect {
            broker: broker.to_string(),
            source: Arc::new(e),
        })?;
    // Small frames (CONNECT, heart-beats) must not wait for Nagle.
    let _ = tcp.set_nodelay(true);
    Ok(match (connector, &config.tls) {
        (Some(connector), Some(settings)) => {
            Box::new(tls::handshake(connector, settings, broker, tcp).await?)
        }
        _ => Box::new(tcp),
    })
}

/// Heart-beat intervals we offer, in milliseconds: `(send, receive)`.
/// We send every idle/2 (a broker allows some grace beyond the interval);
/// we ask for one every idle/3 so that three missed beats fit in `idle`
/// (ActiveMQ's first beat comes only after two intervals).
fn offered_heart_beat(idle: Duration) -> (u64, u64) {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    (ms(idle / 2), ms(idle / 3))
}

/// `(our send interval, the broker's send interval)` both sides agreed to.
fn agreed_heart_beat(
    offered: (u64, u64),
    header: Option<&str>,
) -> (Option<Duration>, Option<Duration>) {
    let (server_send, server_receive) = header
        .and_then(|h| h.split_once(','))
        .and_then(|(a, b)| Some((a.trim().parse::<u64>().ok()?, b.trim().parse::<u64>().ok()?)))
        .unwrap_or((0, 0));
    let agree = |ours: u64, theirs: u64| {
        (ours > 0 && theirs > 0).then(|| Duration::from_millis(ours.max(theirs)))
    };
    (
        agree(offered.0, server_receive),
        agree(offered.1, server_send),
    )
}

async fn handshake(
    config: &BrokerConfig,
    broker: &BrokerAddress,
    transport: BoxedTransport,
) -> Result<Connection, StompError> {
    let name = broker.to_string();
    // Split from the start: the reader task takes over `frames_in` with
    // whatever it has buffered beyond CONNECTED.
    let codec = StompCodec::new(config.max_inbound_frame);
    let (read_half, write_half) = tokio::io::split(transport);
    let mut frames_in = FramedRead::new(read_half, codec.clone());
    let mut frames_out = FramedWrite::new(write_half, codec);
    // Let a few large frames gather before a write, not one 8 KiB at a time.
    frames_out.set_backpressure_boundary(256 * 1024);
    let offered = offered_heart_beat(config.timeouts.idle);
    let connect = Frame::new(Command::Connect)
        .header("accept-version", "1.0,1.1,1.2")
        .header("host", broker.host.clone())
        .header("heart-beat", format!("{},{}", offered.0, offered.1));
    frames_out
        .send(Outbound::Frame(connect))
        .await
        .map_err(|e| io_or_protocol(&name, e, true))?;

    let connected = loop {
        match frames_in.next().await {
            None => return Err(StompError::Closed { broker: name }),
            Some(Err(e)) => return Err(io_or_protocol(&name, e, false)),
            Some(Ok(Inbound::HeartBeat)) => continue,
            Some(Ok(Inbound::Frame(f))) => match f.command {
                Command::Connected => break f,
                Command::Error => return Err(broker_error(&name, &f)),
                command => {
                    return Err(StompError::Unexpected {
                        broker: name,
                        command,
                        expected: "CONNECTED",
                    });
                }
            },
        }
    };
    let version = match connected.get("version") {
        None | Some("1.0") => ProtocolVersion::V1_0,
        Some("1.1") => ProtocolVersion::V1_1,
        Some(_) => ProtocolVersion::V1_2,
    };
    let server = connected.get("server").map(str::to_owned);
    let (send_every, receive_every) = agreed_heart_beat(offered, connected.get("heart-beat"));
    tracing::info!(
        %broker,
        ?version,
        server = server.as_deref().unwrap_or("unknown"),
        ?send_every,
        ?receive_every,
        "connected to STOMP broker"
    );

    // Header escaping exists from STOMP 1.1 on.
    let escaping = version != ProtocolVersion::V1_0;
    frames_in.decoder_mut().set_escaping(escaping);
    frames_out.encoder_mut().set_escaping(escaping);

    let window = config.window.get();
    let shared = Arc::new(Shared {
        in_flight: Mutex::new(VecDeque::with_capacity(window)),
        window: Semaphore::new(window),
    });
    let (events_tx, events) = mpsc::unbounded_channel();
    let (outbound, outbound_rx) = mpsc::channel(window + 1);
    let silence_limit = receive_every.map(|every| config.timeouts.idle.max(every * 3));
    let reader = tokio::spawn(read_loop(
        frames_in,
        Arc::clone(&shared),
        events_tx.clone(),
        silence_limit,
        name.clone(),
    ));
    let writer = tokio::spawn(write_loop(
        frames_out,
        outbound_rx,
        events_tx,
        send_every,
        name,
    ));
    Ok(Connection {
        broker: broker.clone(),
        version,
        server,
        timeouts: config.timeouts,
        shared,
        outbound: Some(outbound),
        events,
        reader: Some(reader),
        writer: Some(writer),
        ready: VecDeque::new(),
        outstanding: 0,
        pending_failure: None,
        failure: None,
        stopped: false,
        closed: false,
    })
}

fn io_or_protocol(broker: &str, e: super::codec::CodecError, writing: bool) -> StompError {
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

fn broker_error(broker: &str, frame: &Frame) -> StompError {
    StompError::Broker {
        broker: broker.to_owned(),
        message: frame
            .get("message")
            .unwrap_or("(no message header)")
            .to_owned(),
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

impl Connection {
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
        if let Some(reader) = self.reader.take() {
            reader.abort();
            let _ = reader.await;
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
                    if record_failure && self.failure.is_none() {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heart_beat_negotiation() {
        let offered = offered_heart_beat(Duration::from_secs(60));
        assert_eq!(offered, (30_000, 20_000));
        // Broker wants ours every 10 s and sends every 50 s: the larger wins.
        assert_eq!(
            agreed_heart_beat(offered, Some("50000,10000")),
            (Some(Duration::from_secs(30)), Some(Duration::from_secs(50)))
        );
        // ActiveMQ echoes our offer.
        assert_eq!(
            agreed_heart_beat(offered, Some("20000,30000")),
            (Some(Duration::from_secs(30)), Some(Duration::from_secs(20)))
        );
        // Broker does not send, or a 1.0 broker says nothing.
        assert_eq!(
            agreed_heart_beat(offered, Some("0,10000")),
            (Some(Duration::from_secs(30)), None)
        );
        assert_eq!(agreed_heart_beat(offered, None), (None, None));
        assert_eq!(agreed_heart_beat(offered, Some("garbage")), (None, None));
        // Disabled on our side.
        assert_eq!(
            agreed_heart_beat(offered_heart_beat(Duration::ZERO), Some("1000,1000")),
            (None, None)
        );
    }
}
