//! Opening a STOMP connection: TCP to each configured broker in turn, TLS
//! when configured, then CONNECT / CONNECTED with the version and the
//! heart-beats agreed. The connection that comes out has its I/O tasks
//! running ([`super::io`]) and is driven through [`Connection`].

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_util::codec::{FramedRead, FramedWrite};

use super::client::{Connection, ProtocolVersion};
use super::codec::{Command, Frame, Inbound, Outbound, StompCodec};
use super::config::{BrokerAddress, BrokerConfig};
use super::error::StompError;
use super::{io, tls};

/// The byte stream under the codec: plain TCP or TLS.
pub(super) trait Transport: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Transport for T {}
pub(super) type BoxedTransport = Box<dyn Transport>;

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
        .map_err(|e| io::io_or_protocol(&name, e, true))?;

    let connected = loop {
        match frames_in.next().await {
            None => return Err(StompError::Closed { broker: name }),
            Some(Err(e)) => return Err(io::io_or_protocol(&name, e, false)),
            Some(Ok(Inbound::HeartBeat)) => continue,
            Some(Ok(Inbound::Frame(f))) => match f.command {
                Command::Connected => break f,
                Command::Error => return Err(io::broker_error(&name, &f)),
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

    let silence_limit = receive_every.map(|every| config.timeouts.idle.max(every * 3));
    let tasks = io::start(
        frames_in,
        frames_out,
        config.window.get(),
        silence_limit,
        send_every,
        name,
    );
    Ok(Connection::new(
        broker.clone(),
        version,
        server,
        config.timeouts,
        tasks,
    ))
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
