//! STOMP frames on the wire (1.0, 1.1 and 1.2), as a `tokio_util` codec.
//!
//! Decoding skips the end-of-line heart-beats a broker sends between frames
//! (reported as [`Inbound::HeartBeat`] so idle detection sees them), honours
//! `content-length`, unescapes header values (STOMP 1.1+, never for
//! CONNECT/CONNECTED) and refuses frames over a size limit before buffering
//! them. Encoding always writes `content-length` on frames with a body and on
//! SEND, so a body may contain NUL bytes.

use std::fmt;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// The largest inbound frame accepted by default. Brokers only send us
/// CONNECTED, RECEIPT and ERROR frames (a test subscriber also MESSAGE frames
/// of at most 1 MB), so anything larger is a broken or hostile peer.
pub const DEFAULT_MAX_FRAME: usize = 2 * 1024 * 1024;

/// A command and header block (with its blank line) longer than this is
/// refused even below the frame limit: no legitimate header needs it and it
/// bounds the work of scanning for a body.
pub const MAX_HEADER_BLOCK: usize = 64 * 1024;

/// A STOMP command: the first line of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    Connect,
    Stomp,
    Connected,
    Send,
    Subscribe,
    Unsubscribe,
    Ack,
    Nack,
    Begin,
    Commit,
    Abort,
    Disconnect,
    Message,
    Receipt,
    Error,
}

impl Command {
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Connect => "CONNECT",
            Command::Stomp => "STOMP",
            Command::Connected => "CONNECTED",
            Command::Send => "SEND",
            Command::Subscribe => "SUBSCRIBE",
            Command::Unsubscribe => "UNSUBSCRIBE",
            Command::Ack => "ACK",
            Command::Nack => "NACK",
            Command::Begin => "BEGIN",
            Command::Commit => "COMMIT",
            Command::Abort => "ABORT",
            Command::Disconnect => "DISCONNECT",
            Command::Message => "MESSAGE",
            Command::Receipt => "RECEIPT",
            Command::Error => "ERROR",
        }
    }

    fn parse(line: &[u8]) -> Option<Command> {
        Some(match line {
            b"CONNECT" => Command::Connect,
            b"STOMP" => Command::Stomp,
            b"CONNECTED" => Command::Connected,
            b"SEND" => Command::Send,
            b"SUBSCRIBE" => Command::Subscribe,
            b"UNSUBSCRIBE" => Command::Unsubscribe,
            b"ACK" => Command::Ack,
            b"NACK" => Command::Nack,
            b"BEGIN" => Command::Begin,
            b"COMMIT" => Command::Commit,
            b"ABORT" => Command::Abort,
            b"DISCONNECT" => Command::Disconnect,
            b"MESSAGE" => Command::Message,
            b"RECEIPT" => Command::Receipt,
            b"ERROR" => Command::Error,
            _ => return None,
        })
    }

    /// The STOMP 1.2 spec exempts these from header escaping, for
    /// compatibility with 1.0 peers during negotiation.
    fn escapes_headers(self) -> bool {
        !matches!(self, Command::Connect | Command::Connected)
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One STOMP frame. Headers keep their wire order; repeated names are allowed
/// and the first occurrence wins (STOMP 1.2, section "Repeated Header Entries").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub command: Command,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Frame {
    pub fn new(command: Command) -> Frame {
        Frame {
            command,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// Appends a header (builder style).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Frame {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn with_body(mut self, body: impl Into<Bytes>) -> Frame {
        self.body = body.into();
        self
    }

    /// The value of the first header called `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What the decoder yields: a frame, or a heart-beat (one bare end-of-line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    Frame(Frame),
    HeartBeat,
}

/// What the encoder accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    Frame(Frame),
    /// A single `\n`, sent when heart-beats were negotiated and we are idle.
    HeartBeat,
}

impl From<Frame> for Outbound {
    fn from(frame: Frame) -> Outbound {
        Outbound::Frame(frame)
    }
}

/// Why bytes could not be read or written as STOMP.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CodecError {
    #[error("frame larger than the limit of {limit} bytes")]
    FrameTooLarge { limit: usize },
    #[error("command and headers larger than the limit of {limit} bytes")]
    HeadersTooLarge { limit: usize },
    #[error("unknown STOMP command {0:?}")]
    UnknownCommand(String),
    #[error("header line {0:?} has no ':'")]
    HeaderWithoutColon(String),
    #[error("header line {line:?} holds the undefined escape sequence {sequence:?}")]
    BadEscape { line: String, sequence: String },
    #[error("{what} is not valid UTF-8")]
    NotUtf8 { what: &'static str },
    #[error("content-length {0:?} is not a byte count")]
    BadContentLength(String),
    #[error("frame body of content-length {0} is not followed by NUL")]
    MissingNul(usize),
    #[error("{command} header {name:?} contains a byte that cannot be sent")]
    Unencodable { command: Command, name: String },
    #[error("stream ended inside a frame ({0} bytes buffered)")]
    Truncated(usize),
    #[error("{0}")]
    Io(Arc<std::io::Error>),
}

impl From<std::io::Error> for CodecError {
    fn from(e: std::io::Error) -> CodecError {
        CodecError::Io(Arc::new(e))
    }
}

/// The STOMP codec. One per connection: header escaping depends on the
/// negotiated protocol version (see [`StompCodec::set_escaping`]).
#[derive(Debug, Clone)]
pub struct StompCodec {
    max_frame: usize,
    escaping: bool,
}

impl Default for StompCodec {
    fn default() -> StompCodec {
        StompCodec::new(DEFAULT_MAX_FRAME)
    }
}

impl StompCodec {
    pub fn new(max_frame: usize) -> StompCodec {
        StompCodec {
            max_frame,
            escaping: true,
        }
    }

    /// Header escaping exists from STOMP 1.1 on; a 1.0 broker sends and
    /// expects backslashes verbatim. On by default (we offer 1.2).
    pub fn set_escaping(&mut self, on: bool) {
        self.escaping = on;
    }

    fn too_large(&self) -> CodecError {
        CodecError::FrameTooLarge {
            limit: self.max_frame,
        }
    }
}

/// Position of the first `\n` in `buf`.
fn find_eol(buf: &[u8]) -> Option<usize> {
    buf.iter().position(|&b| b == b'\n')
}

/// A line without its `\n` and optional preceding `\r`.
fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn unescape(raw: &[u8], line: &[u8]) -> Result<String, CodecError> {
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.iter();
    while let Some(&b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match bytes.next() {
            Some(b'r') => out.push(b'\r'),
            Some(b'n') => out.push(b'\n'),
            Some(b'c') => out.push(b':'),
            Some(b'\\') => out.push(b'\\'),
            other => {
                return Err(CodecError::BadEscape {
                    line: String::from_utf8_lossy(line).into_owned(),
                    sequence: match other {
                        Some(&c) => format!("\\{}", char::from(c)),
                        None => "\\".to_owned(),
                    },
                });
            }
        }
    }
    String::from_utf8(out).map_err(|_| CodecError::NotUtf8 {
        what: "header line",
    })
}

fn escape_into(value: &str, dst: &mut BytesMut) {
    for b in value.bytes() {
        match b {
            b'\r' => dst.put_slice(b"\\r"),
            b'\n' => dst.put_slice(b"\\n"),
            b':' => dst.put_slice(b"\\c"),
            b'\\' => dst.put_slice(b"\\\\"),
            other => dst.put_u8(other),
        }
    }
}

impl Decoder for StompCodec {
    type Item = Inbound;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Inbound>, CodecError> {
        // Heart-beats: EOLs between frames.
        if src.first() == Some(&b'\n') {
            src.advance(1);
            return Ok(Some(Inbound::HeartBeat));
        }
        if src.starts_with(b"\r\n") {
            src.advance(2);
            return Ok(Some(Inbound::HeartBeat));
        }
        if src.as_ref() == b"\r" {
            return Ok(None);
        }

        // Command line and headers end with an empty line. The limits are
        // checked so that the verdict does not depend on how the bytes were
        // split into reads: a partial block of `header_limit` bytes can only
        // complete above the limit.
        let header_limit = self.max_frame.min(MAX_HEADER_BLOCK);
        let headers_too_large = || {
            if header_limit < self.max_frame {
                CodecError::HeadersTooLarge {
                    limit: header_limit,
                }
            } else {
                self.too_large()
            }
        };
        let Some(header_end) = find_header_end(src) else {
            if src.len() >= header_limit {
                return Err(headers_too_large());
            }
            return Ok(None);
        };
        let (head_len, body_start) = header_end;
        if body_start > header_limit {
            return Err(headers_too_large());
        }

        let head = &src[..head_len];
        let mut lines = head.split(|&b| b == b'\n').map(trim_cr);
        let command_line = lines.next().unwrap_or_default();
        let command = Command::parse(command_line).ok_or_else(|| {
            CodecError::UnknownCommand(String::from_utf8_lossy(command_line).into_owned())
        })?;
        let escaping = self.escaping && command.escapes_headers();
        let mut headers = Vec::new();
        for line in lines {
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                return Err(CodecError::HeaderWithoutColon(
                    String::from_utf8_lossy(line).into_owned(),
                ));
            };
            let (name, value) = (&line[..colon], &line[colon + 1..]);
            let (name, value) = if escaping {
                (unescape(name, line)?, unescape(value, line)?)
            } else {
                let utf8 = |b: &[u8]| {
                    String::from_utf8(b.to_vec()).map_err(|_| CodecError::NotUtf8 {
                        what: "header line",
                    })
                };
                (utf8(name)?, utf8(value)?)
            };
            headers.push((name, value));
        }

        let content_length = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map(|(_, v)| {
                v.trim()
                    .parse::<usize>()
                    .map_err(|_| CodecError::BadContentLength(v.clone()))
            })
            .transpose()?;

        let body_len = match content_length {
            Some(len) => {
                let total = body_start
                    .checked_add(len)
                    .and_then(|n| n.checked_add(1))
                    .ok_or_else(|| self.too_large())?;
                if total > self.max_frame {
                    return Err(self.too_large());
                }
                if src.len() < total {
                    src.reserve(total - src.len());
                    return Ok(None);
                }
                if src[body_start + len] != 0 {
                    return Err(CodecError::MissingNul(len));
                }
                len
            }
            None => match src[body_start..].iter().position(|&b| b == 0) {
                Some(len) if body_start + len < self.max_frame => len,
                Some(_) => return Err(self.too_large()),
                // The NUL, when it comes, is beyond the limit.
                None if src.len() >= self.max_frame => return Err(self.too_large()),
                None => return Ok(None),
            },
        };

        let mut frame_bytes = src.split_to(body_start + body_len + 1);
        frame_bytes.advance(body_start);
        frame_bytes.truncate(body_len);
        Ok(Some(Inbound::Frame(Frame {
            command,
            headers,
            body: frame_bytes.freeze(),
        })))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Inbound>, CodecError> {
        match self.decode(src)? {
            Some(item) => Ok(Some(item)),
            None if src.is_empty() => Ok(None),
            None => Err(CodecError::Truncated(src.len())),
        }
    }
}

/// `(length of command + header lines, offset of the body)`, once the blank
/// line ending the headers is buffered.
fn find_header_end(src: &[u8]) -> Option<(usize, usize)> {
    let mut start = 0;
    loop {
        let eol = start + find_eol(&src[start..])?;
        let line = trim_cr(&src[start..eol]);
        if line.is_empty() && start > 0 {
            // `start - 1` is the previous line's `\n`; drop a `\r` before it.
            let head_end = start - 1;
            let head_end = if head_end > 0 && src[head_end - 1] == b'\r' {
                head_end - 1
            } else {
                head_end
            };
            return Some((head_end, eol + 1));
        }
        start = eol + 1;
    }
}

impl Encoder<Outbound> for StompCodec {
    type Error = CodecError;

    fn encode(&mut self, item: Outbound, dst: &mut BytesMut) -> Result<(), CodecError> {
        match item {
            Outbound::HeartBeat => {
                dst.put_u8(b'\n');
                Ok(())
            }
            Outbound::Frame(frame) => self.encode_frame(&frame, dst),
        }
    }
}

impl StompCodec {
    /// Writes one frame (the encoder's work, usable without a sink).
    pub fn encode_frame(&self, frame: &Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
        let escaping = self.escaping && frame.command.escapes_headers();
        let mut size = frame.command.as_str().len() + frame.body.len() + 32;
        for (n, v) in &frame.headers {
            size += n.len() + v.len() + 2;
        }
        dst.reserve(size);
        dst.put_slice(frame.command.as_str().as_bytes());
        dst.put_u8(b'\n');
        for (name, value) in &frame.headers {
            if name == "content-length" {
                continue; // always computed from the body below
            }
            if escaping {
                escape_into(name, dst);
                dst.put_u8(b':');
                escape_into(value, dst);
            } else {
                // Unescaped frames cannot carry these bytes at all.
                let bad = |s: &str| s.bytes().any(|b| matches!(b, b'\n' | b'\r'));
                if bad(name) || bad(value) || name.contains(':') {
                    return Err(CodecError::Unencodable {
                        command: frame.command,
                        name: name.clone(),
                    });
                }
                dst.put_slice(name.as_bytes());
                dst.put_u8(b':');
                dst.put_slice(value.as_bytes());
            }
            dst.put_u8(b'\n');
        }
        if !frame.body.is_empty() || frame.command == Command::Send {
            dst.put_slice(b"content-length:");
            dst.put_slice(frame.body.len().to_string().as_bytes());
            dst.put_u8(b'\n');
        }
        dst.put_u8(b'\n');
        dst.put_slice(&frame.body);
        dst.put_u8(0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(codec: &mut StompCodec, bytes: &[u8]) -> Result<Vec<Inbound>, CodecError> {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(item) = codec.decode(&mut buf)? {
            out.push(item);
        }
        assert!(buf.is_empty(), "left over: {buf:?}");
        Ok(out)
    }

    fn encode(codec: &mut StompCodec, frame: &Frame) -> BytesMut {
        let mut buf = BytesMut::new();
        codec.encode_frame(frame, &mut buf).unwrap();
        buf
    }

    fn only_frame(items: Vec<Inbound>) -> Frame {
        let frames: Vec<Frame> = items
            .into_iter()
            .filter_map(|i| match i {
                Inbound::Frame(f) => Some(f),
                Inbound::HeartBeat => None,
            })
            .collect();
        assert_eq!(frames.len(), 1, "{frames:?}");
        frames.into_iter().next().unwrap()
    }

    #[test]
    fn send_frame_has_exact_headers_and_content_length() {
        let frame = Frame::new(Command::Send)
            .header("destination", "/queue/global.accounting.cloud")
            .header("receipt", "6920a6b5000001")
            .header("empa-id", "6920a6b5000001")
            .with_body(&b"APEL-cloud-message: v0.4\n"[..]);
        let wire = encode(&mut StompCodec::default(), &frame);
        assert_eq!(
            &wire[..],
            &b"SEND\ndestination:/queue/global.accounting.cloud\nreceipt:6920a6b5000001\n\
empa-id:6920a6b5000001\ncontent-length:25\n\nAPEL-cloud-message: v0.4\n\0"[..]
        );
    }

    #[test]
    fn empty_send_still_carries_content_length() {
        let wire = encode(
            &mut StompCodec::default(),
            &Frame::new(Command::Send).header("destination", "/queue/a"),
        );
        assert_eq!(
            &wire[..],
            &b"SEND\ndestination:/queue/a\ncontent-length:0\n\n\0"[..]
        );
    }

    #[test]
    fn round_trip_with_binary_body_and_escaped_headers() {
        let mut codec = StompCodec::default();
        let frame = Frame::new(Command::Message)
            .header("destination", "/queue/a")
            .header("odd:name", "line1\nline2\r\\ and : colon")
            .header("dup", "first")
            .header("dup", "second")
            .with_body(vec![0u8, 1, 2, 0, b'\n', 255]);
        let wire = encode(&mut codec, &frame);
        let escaped: &[u8] = b"\nodd\\cname:line1\\nline2\\r\\\\ and \\c colon\n";
        assert!(
            wire.windows(escaped.len()).any(|w| w == escaped),
            "{wire:?}"
        );
        let decoded = only_frame(decode_all(&mut codec, &wire).unwrap());
        assert_eq!(decoded.get("dup"), Some("first"));
        let mut expected = frame.clone();
        expected.headers.push(("content-length".into(), "6".into()));
        assert_eq!(decoded, expected);
    }

    #[test]
    fn connect_frames_are_not_escaped() {
        let mut codec = StompCodec::default();
        let wire = encode(
            &mut codec,
            &Frame::new(Command::Connect).header("passcode", "a\\b:c"),
        );
        assert_eq!(&wire[..], &b"CONNECT\npasscode:a\\b:c\n\n\0"[..]);
        let f = only_frame(
            decode_all(&mut codec, b"CONNECTED\nversion:1.2\nserver:x\\y\n\n\0").unwrap(),
        );
        assert_eq!(f.get("server"), Some("x\\y"));
        // A header value may contain ':' after the first one.
        let f = only_frame(decode_all(&mut codec, b"CONNECTED\nsession:ID:a:b\n\n\0").unwrap());
        assert_eq!(f.get("session"), Some("ID:a:b"));
    }

    #[test]
    fn newline_in_unescaped_frame_is_refused() {
        let mut buf = BytesMut::new();
        let err = StompCodec::default()
            .encode_frame(
                &Frame::new(Command::Connect).header("host", "a\nb"),
                &mut buf,
            )
            .unwrap_err();
        assert!(matches!(err, CodecError::Unencodable { .. }), "{err}");
    }

    #[test]
    fn stomp_1_0_broker_headers_are_taken_verbatim() {
        let mut codec = StompCodec::default();
        codec.set_escaping(false);
        let f =
            only_frame(decode_all(&mut codec, b"ERROR\nmessage:bad \\q thing\n\nbody\0").unwrap());
        assert_eq!(f.get("message"), Some("bad \\q thing"));
        assert_eq!(&f.body[..], b"body");
    }

    #[test]
    fn activemq_error_frame() {
        let wire = b"ERROR\ncontent-type:text/plain\nreceipt-id:m1\n\
message:temp-queue\\c//ID\\cnope\n\norg.apache.activemq.DestinationDoesNotExistException\n\0\n";
        let items = decode_all(&mut StompCodec::default(), wire).unwrap();
        assert_eq!(items.last(), Some(&Inbound::HeartBeat));
        let f = only_frame(items);
        assert_eq!(f.command, Command::Error);
        assert_eq!(f.get("message"), Some("temp-queue://ID:nope"));
        assert_eq!(f.get("receipt-id"), Some("m1"));
    }

    #[test]
    fn crlf_lines_and_heart_beats_between_frames() {
        let wire = b"\n\r\n\nRECEIPT\r\nreceipt-id:a\r\n\r\n\0\r\n\nRECEIPT\nreceipt-id:b\n\n\0";
        let items = decode_all(&mut StompCodec::default(), wire).unwrap();
        let beats = items.iter().filter(|i| **i == Inbound::HeartBeat).count();
        assert_eq!(beats, 5);
        let ids: Vec<_> = items
            .iter()
            .filter_map(|i| match i {
                Inbound::Frame(f) => f.get("receipt-id").map(str::to_owned),
                Inbound::HeartBeat => None,
            })
            .collect();
        assert_eq!(ids, ["a", "b"]);
    }

    #[test]
    fn frames_split_at_every_byte_boundary() {
        let mut codec = StompCodec::default();
        let frame = Frame::new(Command::Message)
            .header("message-id", "x:1")
            .with_body(&b"hello\0world"[..]);
        let mut wire = encode(&mut codec, &frame).to_vec();
        wire.extend_from_slice(b"\nRECEIPT\nreceipt-id:r\n\n\0");
        for split in 0..wire.len() {
            let mut buf = BytesMut::from(&wire[..split]);
            let mut got = Vec::new();
            while let Some(item) = codec.decode(&mut buf).unwrap() {
                got.push(item);
            }
            buf.extend_from_slice(&wire[split..]);
            while let Some(item) = codec.decode(&mut buf).unwrap() {
                got.push(item);
            }
            assert!(buf.is_empty());
            assert_eq!(got.len(), 3, "split at {split}: {got:?}");
            match &got[0] {
                Inbound::Frame(f) => assert_eq!(&f.body[..], b"hello\0world"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn body_without_content_length_ends_at_nul() {
        let f = only_frame(
            decode_all(
                &mut StompCodec::default(),
                b"MESSAGE\ndestination:/q\n\nabc\0",
            )
            .unwrap(),
        );
        assert_eq!(&f.body[..], b"abc");
    }

    #[test]
    fn oversize_frames_are_refused_early() {
        let mut codec = StompCodec::new(1024);
        // Declared too large: refused before the body is buffered.
        let mut buf = BytesMut::from(&b"MESSAGE\ncontent-length:5000\n\n"[..]);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(CodecError::FrameTooLarge { limit: 1024 })
        ));
        // Undeclared and unterminated: refused once the buffer passes the limit.
        let mut buf = BytesMut::from(&b"MESSAGE\n\n"[..]);
        buf.extend_from_slice(&[b'x'; 2000]);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(CodecError::FrameTooLarge { .. })
        ));
        // Endless header block.
        let mut buf = BytesMut::from(&b"MESSAGE\nx:"[..]);
        buf.extend_from_slice(&[b'y'; 2000]);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(CodecError::FrameTooLarge { .. })
        ));
        let mut buf = BytesMut::from(&b"MESSAGE\nx:"[..]);
        buf.extend_from_slice(&[b'y'; MAX_HEADER_BLOCK]);
        assert!(matches!(
            StompCodec::default().decode(&mut buf),
            Err(CodecError::HeadersTooLarge { .. })
        ));
        // Absurd content-length does not overflow.
        let mut buf = BytesMut::from(&b"MESSAGE\ncontent-length:18446744073709551615\n\n"[..]);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(CodecError::FrameTooLarge { .. })
        ));
    }

    #[test]
    fn malformed_frames_are_errors() {
        let cases: &[&[u8]] = &[
            b"HELLO\n\n\0",
            b"SEND\nno colon here\n\n\0",
            b"MESSAGE\nbad:esc\\t\n\n\0",
            b"MESSAGE\nbad:trailing\\\n\n\0",
            b"MESSAGE\ncontent-length:x\n\n\0",
            b"MESSAGE\ncontent-length:2\n\nabc\0",
            b"MESSAGE\nname:\xff\xfe\n\n\0",
            b"\xff\n\n\0",
        ];
        for case in cases {
            let mut buf = BytesMut::from(*case);
            assert!(
                StompCodec::default().decode(&mut buf).is_err(),
                "accepted {:?}",
                String::from_utf8_lossy(case)
            );
        }
    }

    #[test]
    fn truncated_stream_is_an_error_at_eof() {
        let mut buf = BytesMut::from(&b"RECEIPT\nreceipt-id:a\n"[..]);
        let mut codec = StompCodec::default();
        assert!(codec.decode(&mut buf).unwrap().is_none());
        assert!(matches!(
            codec.decode_eof(&mut buf),
            Err(CodecError::Truncated(_))
        ));
    }

    /// Random and mutated input never panics, never loops, and never yields
    /// more than the bytes it consumed.
    #[test]
    fn random_bytes_never_panic() {
        let seed_frames: &[&[u8]] = &[
            b"RECEIPT\nreceipt-id:abc\n\n\0",
            b"MESSAGE\ncontent-length:3\nx\\c:y\\n\n\na\0b\0\n",
            b"CONNECTED\nversion:1.2\n\n\0",
            b"ERROR\r\nmessage:m\r\n\r\nbody\0",
        ];
        let mut noise = [0u8; 4096];
        openssl::rand::rand_bytes(&mut noise).unwrap();
        let mut pos = 0;
        let mut next = |n: usize| {
            let v = usize::from(noise[pos % noise.len()]) % n.max(1);
            pos += 1;
            v
        };
        for round in 0..3000 {
            let mut input: Vec<u8> = seed_frames[round % seed_frames.len()].to_vec();
            for _ in 0..next(6) {
                let at = next(input.len() + 1);
                match next(3) {
                    0 if !input.is_empty() => {
                        input.remove(at.min(input.len() - 1));
                    }
                    1 => input.insert(at, next(256) as u8),
                    _ => input.insert(at, b"\n\0:\\\r"[next(5)]),
                }
            }
            if round % 5 == 0 {
                input = (0..next(64)).map(|_| next(256) as u8).collect();
            }
            let mut codec = StompCodec::new(256);
            let mut buf = BytesMut::from(&input[..]);
            let mut steps = 0;
            loop {
                let before = buf.len();
                match codec.decode(&mut buf) {
                    Ok(Some(_)) => assert!(buf.len() < before, "no progress"),
                    Ok(None) | Err(_) => break,
                }
                steps += 1;
                assert!(steps <= input.len() + 1);
            }
        }
    }

    mod properties {
        //! The decoder against arbitrary bytes, near-valid frames and every
        //! chunking: no panic, bounded output and buffering, the same verdict
        //! however the bytes were split, and encode then decode is identity.

        use super::super::*;
        use proptest::prelude::*;

        const COMMANDS: [Command; 15] = [
            Command::Connect,
            Command::Stomp,
            Command::Connected,
            Command::Send,
            Command::Subscribe,
            Command::Unsubscribe,
            Command::Ack,
            Command::Nack,
            Command::Begin,
            Command::Commit,
            Command::Abort,
            Command::Disconnect,
            Command::Message,
            Command::Receipt,
            Command::Error,
        ];

        /// What decoding `input` split at `cuts` gives: the items, then the
        /// error that ended it, if any.
        fn feed(
            escaping: bool,
            max_frame: usize,
            input: &[u8],
            cuts: &[usize],
        ) -> (Vec<Inbound>, Option<String>) {
            let mut codec = StompCodec::new(max_frame);
            codec.set_escaping(escaping);
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
            cuts.push(input.len());
            cuts.sort_unstable();
            let mut buf = BytesMut::new();
            let mut items = Vec::new();
            let mut at = 0;
            for cut in cuts {
                buf.extend_from_slice(&input[at..cut]);
                at = cut;
                loop {
                    match codec.decode(&mut buf) {
                        Ok(Some(item)) => items.push(item),
                        Ok(None) => {
                            // Never asks to keep more than one frame's worth.
                            assert!(buf.len() < max_frame.max(2), "{} buffered", buf.len());
                            break;
                        }
                        Err(e) => return (items, Some(e.to_string())),
                    }
                }
            }
            loop {
                match codec.decode_eof(&mut buf) {
                    Ok(Some(item)) => items.push(item),
                    Ok(None) => return (items, None),
                    Err(e) => return (items, Some(e.to_string())),
                }
            }
        }

        /// Output bounded by the input and the frame limit.
        fn assert_bounded(items: &[Inbound], input: &[u8], max_frame: usize) {
            assert!(items.len() <= input.len());
            for item in items {
                if let Inbound::Frame(f) = item {
                    let size: usize = f.body.len()
                        + f.headers
                            .iter()
                            .map(|(n, v)| n.len() + v.len())
                            .sum::<usize>();
                    assert!(
                        size <= max_frame,
                        "a frame of {size} bytes over {max_frame}"
                    );
                }
            }
        }

        fn text() -> impl Strategy<Value = String> {
            let chars = prop::sample::select(vec![
                'a', 'z', '-', ' ', ':', '\\', '\n', '\r', '\0', '\u{e9}',
            ]);
            prop::collection::vec(chars, 0..8).prop_map(|c| c.into_iter().collect())
        }

        fn frame() -> impl Strategy<Value = Frame> {
            let name = prop_oneof![4 => text(), 1 => Just("content-length".to_owned())];
            (
                prop::sample::select(COMMANDS.to_vec()),
                prop::collection::vec((name, text()), 0..5),
                prop::collection::vec(any::<u8>(), 0..48),
            )
                .prop_map(|(command, headers, body)| Frame {
                    command,
                    headers,
                    body: body.into(),
                })
        }

        /// What a peer decodes from `frame` as we encode it: our
        /// content-length replaces any given one, last.
        fn as_decoded(frame: &Frame) -> Frame {
            let mut want = frame.clone();
            want.headers.retain(|(n, _)| n != "content-length");
            if !frame.body.is_empty() || frame.command == Command::Send {
                want.headers
                    .push(("content-length".into(), frame.body.len().to_string()));
            }
            want
        }

        fn encoded(frame: &Frame, escaping: bool) -> Result<Vec<u8>, CodecError> {
            let mut codec = StompCodec::default();
            codec.set_escaping(escaping);
            let mut buf = BytesMut::new();
            codec.encode_frame(frame, &mut buf).map(|()| buf.to_vec())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(10_000))]

            #[test]
            fn arbitrary_bytes_in_any_chunks(
                input in prop::collection::vec(
                    prop_oneof![3 => any::<u8>(), 2 => prop::sample::select(b"\n\r\0:\\".to_vec())],
                    0..256,
                ),
                cuts in prop::collection::vec(any::<usize>(), 0..8),
                escaping in any::<bool>(),
                max_frame in 1usize..300,
            ) {
                let whole = feed(escaping, max_frame, &input, &[]);
                assert_bounded(&whole.0, &input, max_frame);
                let chunked = feed(escaping, max_frame, &input, &cuts);
                prop_assert_eq!(whole, chunked);
            }

            #[test]
            fn near_valid_frames_in_any_chunks(
                frames in prop::collection::vec(frame(), 1..4),
                edits in prop::collection::vec((any::<usize>(), any::<u8>(), 0..3u8), 0..4),
                cuts in prop::collection::vec(any::<usize>(), 0..8),
                max_frame in 16usize..200,
            ) {
                let mut input = Vec::new();
                for f in &frames {
                    input.extend(encoded(f, true).unwrap_or_default());
                    input.push(b'\n');
                }
                for (at, byte, op) in edits {
                    let at = at % (input.len() + 1);
                    match op {
                        0 if at < input.len() => { input.remove(at); }
                        1 if at < input.len() => input[at] = byte,
                        _ => input.insert(at, byte),
                    }
                }
                let whole = feed(true, max_frame, &input, &[]);
                assert_bounded(&whole.0, &input, max_frame);
                prop_assert_eq!(whole, feed(true, max_frame, &input, &cuts));
            }

            #[test]
            fn encode_then_decode_is_identity(
                frame in frame(),
                escaping in any::<bool>(),
                beats in prop::collection::vec(prop::sample::select(vec!["\n", "\r\n"]), 0..3),
                cuts in prop::collection::vec(any::<usize>(), 0..8),
            ) {
                let wire = match encoded(&frame, escaping) {
                    Ok(wire) => wire,
                    Err(CodecError::Unencodable { .. }) => {
                        // Only where the frame is not escaped, and only for
                        // bytes that cannot be sent unescaped.
                        prop_assert!(!(escaping && frame.command.escapes_headers()));
                        let unsendable = |(n, v): &(String, String)| {
                            n.contains(':') || (n.clone() + v).contains(['\n', '\r'])
                        };
                        prop_assert!(frame.headers.iter().any(unsendable), "{:?}", frame);
                        return Ok(());
                    }
                    Err(e) => panic!("{e}"),
                };
                let mut input: Vec<u8> = beats.concat().into_bytes();
                input.extend(&wire);
                let (items, error) = feed(escaping, DEFAULT_MAX_FRAME, &input, &cuts);
                prop_assert_eq!(error, None);
                let mut want = vec![Inbound::HeartBeat; beats.len()];
                want.push(Inbound::Frame(as_decoded(&frame)));
                prop_assert_eq!(items, want);
            }

            #[test]
            fn a_frame_over_the_limit_is_an_error(
                frame in frame(),
                slack in -3i64..3,
                cuts in prop::collection::vec(any::<usize>(), 0..8),
            ) {
                let Ok(wire) = encoded(&frame, true) else { return Ok(()) };
                let max_frame = usize::try_from(wire.len() as i64 + slack).unwrap_or(1).max(1);
                let (items, error) = feed(true, max_frame, &wire, &cuts);
                if wire.len() <= max_frame {
                    prop_assert_eq!(error, None);
                    prop_assert_eq!(items, vec![Inbound::Frame(as_decoded(&frame))]);
                } else {
                    prop_assert!(items.is_empty());
                    let too_large = CodecError::FrameTooLarge { limit: max_frame }.to_string();
                    prop_assert_eq!(error, Some(too_large));
                }
            }
        }

        #[test]
        fn a_header_block_over_its_limit_is_refused_however_it_arrives() {
            let mut wire = b"MESSAGE\n".to_vec();
            while wire.len() < MAX_HEADER_BLOCK {
                wire.extend_from_slice(b"x:y\n");
            }
            wire.extend_from_slice(b"\n\0");
            let too_large = CodecError::HeadersTooLarge {
                limit: MAX_HEADER_BLOCK,
            }
            .to_string();
            let whole = feed(true, DEFAULT_MAX_FRAME, &wire, &[]);
            assert_eq!(whole, (Vec::new(), Some(too_large)));
            assert_eq!(whole, feed(true, DEFAULT_MAX_FRAME, &wire, &[100, 70_000]));
        }
    }
}
