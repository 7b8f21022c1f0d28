//! Everything that can go wrong talking STOMP, each naming the broker.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::codec::{CodecError, Command};
use crate::net::excerpt;

/// Why a broker could not be used, or a connection stopped confirming messages.
///
/// `Clone` (I/O errors are shared) so that the one cause of a failed
/// connection can be returned from every later call on it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StompError {
    #[error("no STOMP broker configured")]
    NoBrokers,
    #[error("TLS client setup: {0}")]
    TlsSetup(String),
    #[error("cannot reach STOMP broker {broker}: {source}")]
    Connect {
        broker: String,
        #[source]
        source: Arc<std::io::Error>,
    },
    #[error("TLS handshake with STOMP broker {broker} failed: {detail}")]
    Handshake { broker: String, detail: String },
    #[error("STOMP broker {broker}: no CONNECTED within {}", humantime::format_duration(*after))]
    ConnectTimeout { broker: String, after: Duration },
    #[error("STOMP broker {broker} sent ERROR: {message}{}", first_line(detail))]
    Broker {
        broker: String,
        /// The ERROR frame's `message` header.
        message: String,
        /// The ERROR frame's body (ActiveMQ puts a Java stack trace there).
        detail: String,
        /// Set when the broker says which of our frames failed.
        receipt_id: Option<String>,
    },
    #[error("connection to STOMP broker {broker} failed: {source}")]
    Io {
        broker: String,
        #[source]
        source: Arc<std::io::Error>,
    },
    #[error("STOMP broker {broker} closed the connection")]
    Closed { broker: String },
    #[error("STOMP broker {broker} sent an invalid frame: {source}")]
    Protocol {
        broker: String,
        #[source]
        source: CodecError,
    },
    #[error("cannot encode a frame for STOMP broker {broker}: {source}")]
    Encode {
        broker: String,
        #[source]
        source: CodecError,
    },
    #[error("STOMP broker {broker} sent {command} while we waited for {expected}")]
    Unexpected {
        broker: String,
        command: Command,
        expected: &'static str,
    },
    #[error("no RECEIPT from STOMP broker {broker} for {id} within {}", humantime::format_duration(*after))]
    ReceiptTimeout {
        broker: String,
        id: String,
        after: Duration,
    },
    #[error("STOMP broker {broker} silent for {} despite agreed heart-beats", humantime::format_duration(*after))]
    Idle { broker: String, after: Duration },
    #[error("message {id} is already waiting for its RECEIPT on this connection")]
    DuplicateId { id: String },
    #[error("the connection to STOMP broker {broker} was closed by us")]
    Disconnected { broker: String },
    #[error("no STOMP broker reachable: {}", Joined(.0))]
    NoBrokerReachable(Vec<StompError>),
}

impl StompError {
    /// The broker refused a frame for its size and closed the connection
    /// (ActiveMQ's `wireFormat.maxFrameSize`: "The maximum frame size was
    /// exceeded"; other brokers say "too large"). Frames after it were never
    /// read, so another connection may send them: what `ssmsend` does, the
    /// refused message split in parts.
    pub fn is_frame_too_large(&self) -> bool {
        let StompError::Broker { message, .. } = self else {
            return false;
        };
        let m = message.to_ascii_lowercase();
        m.contains("frame size") || m.contains("too large") || m.contains("too big")
    }
}

/// The first line of an ERROR body, as a short printable excerpt: a broker's
/// words reach logs by the same rule as an HTTP server's.
fn first_line(detail: &str) -> String {
    match detail.lines().map(str::trim).find(|l| !l.is_empty()) {
        Some(line) => format!(" ({})", excerpt(line.as_bytes())),
        None => String::new(),
    }
}

struct Joined<'a>(&'a [StompError]);

impl fmt::Display for Joined<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}
