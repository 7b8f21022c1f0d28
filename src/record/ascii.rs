//! The one text rule applied to every text field of every record type.
//!
//! SSM decodes spooled messages as ASCII, the APEL loader splits cloud
//! records on lines, and XML 1.0 forbids most control characters. cASO
//! strips non-ASCII (`str.encode("ascii", errors="ignore")`) from three cloud
//! fields only; we apply the same stripping to every text field of every
//! record, and also drop ASCII control characters (a newline in a VM name
//! would otherwise inject a line into the record).

use std::borrow::Cow;

/// Keeps printable ASCII (0x20..=0x7E) and drops every other character.
pub fn ascii_text(s: &str) -> Cow<'_, str> {
    if s.bytes().all(is_kept) {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(
            s.chars()
                .filter(|c| u8::try_from(*c).is_ok_and(is_kept))
                .collect(),
        )
    }
}

fn is_kept(b: u8) -> bool {
    (0x20..0x7f).contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_printable_ascii_untouched() {
        let s = "vm-01 %%<&>\"' ~";
        assert!(matches!(ascii_text(s), Cow::Borrowed(_)));
        assert_eq!(ascii_text(s), s);
    }

    #[test]
    fn drops_non_ascii_like_caso_and_control_characters() {
        assert_eq!(ascii_text("máquina-ñ 東京"), "mquina- ");
        assert_eq!(ascii_text("a\tb\nc\r\x00d\x7fe"), "abcde");
        assert_eq!(ascii_text("éé"), "");
    }
}
