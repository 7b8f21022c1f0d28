//! Filling AMS publish requests: each request carries as many messages as
//! fit under [`BatchLimits`], counted on the exact JSON body AMS receives
//! (base64 data included).
//!
//! Why a limit on the request and not only on the message: AMS itself stores
//! a request's messages one by one, each under its Kafka producer's limit of
//! 1,500,000 bytes (`brokers/kafka.go`, `Producer.MaxMessageBytes`), and
//! reads the body whole; the proxies in front of it may refuse a large body
//! (413) before AMS sees it. Our default (1,000,000 bytes a request) keeps
//! every request under both.

use std::num::NonZeroUsize;
use std::pin::Pin;
use std::task::Poll;

use bytes::Bytes;
use futures_util::stream::{self, Stream, StreamExt};

use super::Outgoing;

/// `{"messages":[` and `]}`: what a request adds around its messages.
const ENVELOPE_BYTES: usize = 15;

/// Default `ams_max_request_bytes`.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 1_000_000;
/// Default `ams_max_messages_per_request`.
pub const DEFAULT_MAX_MESSAGES: usize = 100;

/// How full a publish request may be. A message larger than `max_bytes` on
/// its own is sent alone: AMS, not we, decides whether it is too large.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// JSON bytes of the whole request body at most.
    pub max_bytes: usize,
    /// Messages per request at most; 1 is SSM's one message per request.
    pub max_messages: NonZeroUsize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        BatchLimits {
            max_bytes: DEFAULT_MAX_REQUEST_BYTES,
            max_messages: NonZeroUsize::new(DEFAULT_MAX_MESSAGES).unwrap_or(NonZeroUsize::MIN),
        }
    }
}

/// One message as it appears in the request's `messages` list:
/// `{"attributes":{"empaid":"<id>"},"data":"<base64>"}`.
#[derive(Debug, Clone)]
pub struct Encoded<K> {
    pub key: K,
    pub msg_id: String,
    pub json: Bytes,
}

impl<K> Encoded<K> {
    pub fn new(m: Outgoing<K>) -> Encoded<K> {
        let data = openssl::base64::encode_block(&m.body);
        // A JSON string through serde_json: the id is escaped whatever it holds.
        let id = serde_json::Value::String(m.msg_id.clone());
        let json = format!(r#"{{"attributes":{{"empaid":{id}}},"data":"{data}"}}"#);
        Encoded {
            key: m.key,
            msg_id: m.msg_id,
            json: Bytes::from(json),
        }
    }
}

/// The exact body length of a request holding messages of these JSON sizes.
pub fn request_len(sizes: impl IntoIterator<Item = usize>) -> usize {
    let (n, sum) = sizes
        .into_iter()
        .fold((0usize, 0usize), |(n, s), len| (n + 1, s + len));
    ENVELOPE_BYTES + sum + n.saturating_sub(1)
}

/// The body of one publish request.
pub fn request_body<K>(batch: &[Encoded<K>]) -> Bytes {
    let mut body = Vec::with_capacity(request_len(batch.iter().map(|m| m.json.len())));
    body.extend_from_slice(br#"{"messages":["#);
    for (i, m) in batch.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&m.json);
    }
    body.extend_from_slice(b"]}");
    Bytes::from(body)
}

/// A request being filled.
#[derive(Debug)]
pub struct Filling<K> {
    limits: BatchLimits,
    messages: Vec<Encoded<K>>,
    /// [`request_len`] of `messages`.
    bytes: usize,
}

impl<K> Filling<K> {
    pub fn new(limits: BatchLimits) -> Self {
        Filling {
            limits,
            messages: Vec::new(),
            bytes: ENVELOPE_BYTES,
        }
    }

    /// Whether `m` may join: always when the request is empty.
    pub fn fits(&self, m: &Encoded<K>) -> bool {
        if self.messages.is_empty() {
            return true;
        }
        self.messages.len() < self.limits.max_messages.get()
            && self.bytes + 1 + m.json.len() <= self.limits.max_bytes
    }

    pub fn full(&self) -> bool {
        self.messages.len() >= self.limits.max_messages.get()
    }

    pub fn push(&mut self, m: Encoded<K>) {
        if !self.messages.is_empty() {
            self.bytes += 1;
        }
        self.bytes += m.json.len();
        self.messages.push(m);
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    pub fn take(&mut self) -> Vec<Encoded<K>> {
        self.bytes = ENVELOPE_BYTES;
        std::mem::take(&mut self.messages)
    }
}

/// The messages of `messages` in requests, in order. A request goes as soon
/// as it is full or no further message is ready yet: a slow signer never
/// holds back a message that could already be on its way.
pub fn batches<'a, K: 'a, S>(
    messages: S,
    limits: BatchLimits,
) -> impl Stream<Item = Vec<Encoded<K>>> + 'a
where
    S: Stream<Item = Outgoing<K>> + 'a,
{
    let mut messages: Pin<Box<_>> = Box::pin(messages.fuse());
    let mut filling = Filling::new(limits);
    // The message that did not fit: it opens the next request.
    let mut carry: Option<Encoded<K>> = None;
    stream::poll_fn(move |cx| {
        if let Some(m) = carry.take() {
            filling.push(m);
        }
        loop {
            if filling.full() {
                return Poll::Ready(Some(filling.take()));
            }
            match messages.as_mut().poll_next(cx) {
                Poll::Ready(Some(m)) => {
                    let m = Encoded::new(m);
                    if filling.fits(&m) {
                        filling.push(m);
                    } else {
                        carry = Some(m);
                        return Poll::Ready(Some(filling.take()));
                    }
                }
                Poll::Ready(None) if filling.is_empty() => return Poll::Ready(None),
                Poll::Pending if filling.is_empty() => return Poll::Pending,
                Poll::Ready(None) | Poll::Pending => return Poll::Ready(Some(filling.take())),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn outgoing(i: usize, len: usize) -> Outgoing<usize> {
        Outgoing {
            key: i,
            msg_id: format!("{i:08x}"),
            body: vec![b'x'; len],
        }
    }

    #[test]
    fn the_counted_length_is_the_body_length() {
        let batch: Vec<_> = [0, 1, 2, 3000]
            .iter()
            .enumerate()
            .map(|(i, &n)| Encoded::new(outgoing(i, n)))
            .collect();
        let body = request_body(&batch);
        assert_eq!(body.len(), request_len(batch.iter().map(|m| m.json.len())));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["messages"].as_array().unwrap().len(), 4);
        assert_eq!(v["messages"][1]["attributes"]["empaid"], "00000001");
        assert_eq!(v["messages"][1]["data"], "eA==");
    }

    proptest! {
        /// Every message is sent once, in order; no request of two or more
        /// messages is over either limit, and no request could have taken
        /// the message that opens the next one.
        #[test]
        fn requests_never_exceed_the_limits(
            sizes in prop::collection::vec(0usize..40_000, 0..200),
            max_bytes in 10_000usize..200_000,
            max_messages in 1usize..20,
        ) {
            let limits = BatchLimits {
                max_bytes,
                max_messages: NonZeroUsize::new(max_messages).unwrap(),
            };
            let input = stream::iter(sizes.iter().enumerate().map(|(i, &n)| outgoing(i, n)));
            let out: Vec<Vec<Encoded<usize>>> =
                tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap()
                    .block_on(batches(input, limits).collect());
            let keys: Vec<usize> = out.iter().flatten().map(|m| m.key).collect();
            prop_assert_eq!(keys, (0..sizes.len()).collect::<Vec<_>>());
            for (i, b) in out.iter().enumerate() {
                prop_assert!(!b.is_empty());
                prop_assert!(b.len() <= max_messages);
                let len = request_body(b).len();
                if b.len() > 1 {
                    prop_assert!(len <= max_bytes, "{} > {}", len, max_bytes);
                }
                if let Some(next) = out.get(i + 1) {
                    let with_next = request_len(b.iter().chain(&next[..1]).map(|m| m.json.len()));
                    prop_assert!(b.len() == max_messages || with_next > max_bytes);
                }
            }
        }
    }
}
