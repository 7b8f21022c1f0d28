//! What each message format keeps of a text field.
//!
//! Every spooled message is pure ASCII (SSM decodes it as ASCII), but the
//! formats differ in what they can carry within that:
//! - cloud `Key: value` lines have no escape, so [`ascii_text`] keeps only
//!   printable ASCII (cASO strips non-ASCII from three cloud fields with
//!   `str.encode("ascii", errors="ignore")`; we do it for every field, and
//!   also drop control characters: a newline in a VM name would inject a
//!   line into the record);
//! - StAR XML and the JSON messages escape non-ASCII losslessly (numeric
//!   character references, `\uXXXX`), as cASO's ElementTree and `json.dumps`
//!   do, so [`xml_text`] and [`json_text`] drop only control characters
//!   (and, for XML, the two code points XML 1.0 cannot hold at all); the
//!   escaping itself is the writer's (`storage.rs`, `pyfmt.rs`).

use std::borrow::Cow;

/// Keeps printable ASCII (0x20..=0x7E) and drops every other character:
/// the cloud record rule.
pub fn ascii_text(s: &str) -> Cow<'_, str> {
    keep(s, |c| (' '..='~').contains(&c))
}

/// Drops control characters (Unicode `Cc`: C0, DEL and C1), keeps the rest
/// for the JSON writer to escape: the IP and accelerator record rule.
pub fn json_text(s: &str) -> Cow<'_, str> {
    keep(s, |c| !c.is_control())
}

/// [`json_text`], and also U+FFFE and U+FFFF, which XML 1.0 forbids even as
/// character references (an XML parser rejects the whole message): the
/// StAR rule.
pub fn xml_text(s: &str) -> Cow<'_, str> {
    keep(s, |c| {
        !c.is_control() && !matches!(c, '\u{fffe}' | '\u{ffff}')
    })
}

fn keep(s: &str, kept: impl Fn(char) -> bool) -> Cow<'_, str> {
    if s.chars().all(&kept) {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(s.chars().filter(|c| kept(*c)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_printable_ascii_untouched() {
        let s = "vm-01 %%<&>\"' ~";
        for rule in [ascii_text, json_text, xml_text] {
            assert!(matches!(rule(s), Cow::Borrowed(_)));
            assert_eq!(rule(s), s);
        }
    }

    #[test]
    fn cloud_drops_non_ascii_like_caso_and_control_characters() {
        assert_eq!(ascii_text("máquina-ñ 東京"), "mquina- ");
        assert_eq!(ascii_text("a\tb\nc\r\x00d\x7fe"), "abcde");
        assert_eq!(ascii_text("éé"), "");
    }

    #[test]
    fn json_and_xml_keep_non_ascii_and_drop_control_characters() {
        let name = "Jür\tgen\n李\u{7f}😀e\u{301}\u{85}\u{0}";
        assert!(matches!(json_text("Jürgen 李😀"), Cow::Borrowed(_)));
        assert_eq!(json_text(name), "Jürgen李😀e\u{301}");
        assert_eq!(xml_text(name), "Jürgen李😀e\u{301}");
        assert_eq!(json_text("a\u{fffe}\u{ffff}"), "a\u{fffe}\u{ffff}");
        assert_eq!(xml_text("a\u{fffe}b\u{ffff}\u{fffd}"), "ab\u{fffd}");
    }
}
