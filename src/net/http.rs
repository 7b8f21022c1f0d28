//! Reading what a remote HTTP server sends, without trusting it: the OpenStack
//! services and AMS share these rules.
//!
//! - a body is read chunk by chunk and given up at its limit plus one byte
//!   ([`read_body`]): a lying `Content-Length` or an endless chunked body
//!   costs at most the limit in memory;
//! - a redirect is followed only while it stays on the origin the request
//!   was sent to ([`same_origin_redirects`]): the token, password or client
//!   certificate of a request belongs to the origin the catalog or
//!   `sender.cfg` names, nowhere else;
//! - what a server says in an error body reaches errors and logs only as a
//!   short printable [`excerpt`](super::excerpt).

use bytes::{Bytes, BytesMut};
use reqwest::Url;

use super::excerpt;

/// Same-origin redirects followed in a row before the 3xx itself is the
/// answer (and an error for the caller).
pub const MAX_REDIRECTS: usize = 5;

/// `scheme://host:port` of a URL (the port spelt out even when it is the
/// default one): never a path, a query or user information.
pub fn origin(url: &Url) -> String {
    format!(
        "{}://{}:{}",
        url.scheme(),
        url.host_str().unwrap_or("(no host)"),
        url.port_or_known_default().unwrap_or(0)
    )
}

/// Whether two URLs share scheme, host and port.
pub fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// The redirect policy of every client that sends credentials: a redirect to
/// the origin of the first request is followed (a proxy that adds a slash
/// or moves a path stays where the credentials belong), at most
/// [`MAX_REDIRECTS`] times; any other is not followed, so the 3xx comes back
/// as the answer and the caller reports it ([`Redirect::from_response`]).
pub fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let stays = attempt
            .previous()
            .first()
            .is_some_and(|first| same_origin(first, attempt.url()));
        if stays && attempt.previous().len() <= MAX_REDIRECTS {
            attempt.follow()
        } else {
            attempt.stop()
        }
    })
}

/// A 3xx that was not followed: where it came from and where it pointed,
/// both as origins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    pub status: u16,
    pub from: String,
    /// The origin of `Location`, or why there is none to name.
    pub to: String,
}

impl Redirect {
    /// The redirect a response is, if it is one.
    pub fn from_response(resp: &reqwest::Response) -> Option<Redirect> {
        // The statuses a client follows; 300 and 304 are plain answers.
        if !matches!(resp.status().as_u16(), 301 | 302 | 303 | 307 | 308) {
            return None;
        }
        let to = match resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
        {
            None => "(no usable Location)".to_string(),
            Some(loc) => match resp.url().join(loc) {
                Ok(u) => origin(&u),
                Err(_) => format!("(unparsable Location {})", excerpt(loc.as_bytes())),
            },
        };
        Some(Redirect {
            status: resp.status().as_u16(),
            from: origin(resp.url()),
            to,
        })
    }
}

impl std::fmt::Display for Redirect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.from == self.to {
            write!(
                f,
                "HTTP {} redirect within {} not followed: more than {MAX_REDIRECTS} in a row",
                self.status, self.from
            )
        } else {
            write!(
                f,
                "HTTP {} redirect from {} to {} not followed: credentials go only to the origin they belong to",
                self.status, self.from, self.to
            )
        }
    }
}

/// Why a body could not be read whole.
#[derive(Debug)]
pub enum BodyError {
    /// More than `limit` bytes (declared or received).
    TooLarge {
        limit: usize,
    },
    Transport(reqwest::Error),
}

/// Reads the body, refusing it as soon as it is known to hold more than
/// `limit` bytes: from `Content-Length` before reading, else once limit + 1
/// bytes have arrived. Memory never exceeds the limit (plus one chunk).
pub async fn read_body(mut resp: reqwest::Response, limit: usize) -> Result<Bytes, BodyError> {
    let limit64 = u64::try_from(limit).unwrap_or(u64::MAX);
    let declared = resp.content_length();
    if declared.is_some_and(|n| n > limit64) {
        return Err(BodyError::TooLarge { limit });
    }
    // Trust the declared length only as a hint, and only up to the limit.
    let hint = declared.map_or(0, |n| usize::try_from(n).unwrap_or(limit).min(limit));
    let mut body = BytesMut::with_capacity(hint);
    while let Some(chunk) = resp.chunk().await.map_err(BodyError::Transport)? {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Whether a JSON text holds more than `limit` values: see
/// [`json_values`].
pub fn json_values_exceed(body: &[u8], limit: usize) -> bool {
    json_values(body, limit) > limit
}

/// How many values a JSON text holds, counted as the commas, colons and
/// opening brackets outside strings (one per value but the first of each
/// container), up to `stop_after` + 1. Decoding costs memory per value, up
/// to 30 times the two bytes a `0,` takes: counting first bounds it.
pub fn json_values(body: &[u8], stop_after: usize) -> usize {
    let (mut in_string, mut escaped, mut n) = (false, false, 0usize);
    for &b in body {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b',' | b':' | b'[' | b'{' => {
                n += 1;
                if n > stop_after {
                    return n;
                }
            }
            _ => {}
        }
    }
    n
}

/// The body with every occurrence of a secret replaced by `***`: a broken
/// proxy may echo the request (password, token) in its error page, and the
/// excerpt of that page goes to the logs.
pub fn scrub(body: Bytes, secrets: &[&str]) -> Bytes {
    let mut out: Option<Vec<u8>> = None;
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        let current = out.as_deref().unwrap_or(&body);
        if memchr::memmem::find(current, secret.as_bytes()).is_none() {
            continue;
        }
        let mut next = Vec::with_capacity(current.len());
        let mut rest = current;
        while let Some(i) = memchr::memmem::find(rest, secret.as_bytes()) {
            next.extend_from_slice(&rest[..i]);
            next.extend_from_slice(b"***");
            rest = &rest[i + secret.len()..];
        }
        next.extend_from_slice(rest);
        out = Some(next);
    }
    out.map_or(body, Bytes::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_spell_out_the_port_and_nothing_else() {
        let u = Url::parse("https://user:pw@nova.example/v2.1/servers?token=x").unwrap();
        assert_eq!(origin(&u), "https://nova.example:443");
        let other = Url::parse("https://nova.example:8774/").unwrap();
        assert!(!same_origin(&u, &other));
        assert!(same_origin(
            &u,
            &Url::parse("https://nova.example:443/x").unwrap()
        ));
        assert!(!same_origin(
            &u,
            &Url::parse("http://nova.example:443/").unwrap()
        ));
    }

    #[test]
    fn json_values_are_counted_outside_strings() {
        assert!(!json_values_exceed(
            br#"{"a": [1, 2, 3], "b": "x,y,z:[{"}"#,
            7
        ));
        assert!(json_values_exceed(
            br#"{"a": [1, 2, 3], "b": "x,y,z:[{"}"#,
            6
        ));
        assert!(!json_values_exceed(br#"["\",", 1]"#, 2));
        assert!(json_values_exceed(&b"0,".repeat(1000), 999));
    }

    #[test]
    fn scrub_hides_every_occurrence() {
        let b = scrub(
            Bytes::from_static(b"pw=Pw-1 and Pw-1, tok T0k"),
            &["Pw-1", "", "T0k"],
        );
        assert_eq!(&b[..], b"pw=*** and ***, tok ***");
        let same = Bytes::from_static(b"nothing here");
        assert_eq!(scrub(same.clone(), &["x1"]), same);
    }
}
