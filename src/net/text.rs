//! What a server or an error says, made fit for one log line: printable
//! excerpts of a server's text, the server's own words from an HTTP error
//! body, and an error with its causes on one line.

use serde_json::Value;

/// Characters of a server's text kept in an error or a log line.
pub const EXCERPT_CHARS: usize = 200;

/// Error bodies longer than this are only excerpted, never decoded.
const MAX_ERROR_JSON_BYTES: usize = 64 << 10;

/// A short printable excerpt of a server's text: at most [`EXCERPT_CHARS`]
/// characters, control characters escaped (`\n`, `\u{1b}`), invalid UTF-8
/// replaced, and the full length said when cut.
pub fn excerpt(text: &[u8]) -> String {
    excerpt_chars(text, EXCERPT_CHARS)
}

/// [`excerpt`] with another length.
pub fn excerpt_chars(text: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(text);
    let text = text.trim();
    let mut out = String::new();
    for (n, c) in text.chars().enumerate() {
        if n >= max {
            out.push_str(&format!("... ({} bytes in all)", text.len()));
            return out;
        }
        if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{202e}') {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The server's own words from an HTTP error body, as a short [`excerpt`];
/// `empty` when there are none. OpenStack services wrap them as
/// `{"<kind>": {"message": ...}}` (Nova, Cinder, Keystone's and AMS's
/// `error`, Neutron's `NeutronError`), some as a bare `message`, Glance as
/// text.
pub fn server_message(body: &[u8], empty: &str) -> String {
    if body.len() <= MAX_ERROR_JSON_BYTES
        && let Ok(v) = serde_json::from_slice::<Value>(body)
    {
        if let Some(m) = v.get("message").and_then(Value::as_str) {
            return excerpt(m.as_bytes());
        }
        if let Some(obj) = v.as_object() {
            for inner in obj.values() {
                if let Some(m) = inner.get("message").and_then(Value::as_str) {
                    return excerpt(m.as_bytes());
                }
            }
        }
    }
    let text = excerpt(body);
    if text.is_empty() {
        empty.to_string()
    } else {
        text
    }
}

/// An error and its causes on one line, `error: cause: cause`, each text
/// once. Many error types print their source in their own message and also
/// return it as `source()` (reqwest's "error sending request" does not, and
/// hides the cause), so a cause whose text the line already holds is not
/// repeated.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut line = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        let text = inner.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cur = inner.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn excerpts_are_short_and_printable() {
        assert_eq!(excerpt(b"  plain words \n"), "plain words");
        assert_eq!(excerpt(b"a\x1b[31mb\nc"), "a\\u{1b}[31mb\\nc");
        let long = excerpt(&[b'x'; 10_000]);
        assert!(long.starts_with(&"x".repeat(EXCERPT_CHARS)));
        assert!(long.ends_with("(10000 bytes in all)"), "{long}");
        assert_eq!(excerpt(b"\xff\xfe"), "\u{fffd}\u{fffd}");
    }

    #[test]
    fn server_words_are_found_in_each_wrapping() {
        let nova =
            br#"{"itemNotFound": {"code": 404, "message": "Instance x could not be found."}}"#;
        assert_eq!(server_message(nova, "-"), "Instance x could not be found.");
        let ams = br#"{"error": {"code": 500, "message": "Internal\nerror", "status": "X"}}"#;
        assert_eq!(server_message(ams, "-"), "Internal\\nerror");
        assert_eq!(server_message(br#"{"message": "bare"}"#, "-"), "bare");
        assert_eq!(
            server_message(b"<html>Bad gateway</html>", "-"),
            "<html>Bad gateway</html>"
        );
        assert_eq!(server_message(b"  ", "(empty body)"), "(empty body)");
    }

    #[test]
    fn chain_prints_each_cause_once() {
        // Says its source, and returns it.
        #[derive(Debug, thiserror::Error)]
        #[error("reading {0}: {1}")]
        struct Both(&'static str, #[source] std::io::Error);
        #[derive(Debug, thiserror::Error)]
        #[error("error sending request")]
        struct Hides(#[source] std::io::Error);
        let io = std::io::Error::from_raw_os_error(21);
        let text = io.to_string();
        let both = Both("/tmp", io);
        assert_eq!(error_chain(&both), format!("reading /tmp: {text}"));
        let hides = Hides(std::io::Error::other("connection refused"));
        assert_eq!(
            error_chain(&hides),
            "error sending request: connection refused"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]
        #[test]
        fn excerpt_is_bounded_and_has_no_control_character(body in proptest::collection::vec(any::<u8>(), 0..600)) {
            let e = excerpt(&body);
            prop_assert!(e.chars().count() <= EXCERPT_CHARS * 10 + 40);
            prop_assert!(!e.chars().any(char::is_control));
        }
    }
}
