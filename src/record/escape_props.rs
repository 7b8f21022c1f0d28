//! Property tests of the StAR and JSON text rules through the real record
//! renderers: every message is ASCII without control characters, and
//! unescaping a field gives back the input minus what the rule drops.

use proptest::prelude::*;
use uuid::Uuid;

use super::{IpRecord, IpVersion, StorageRecord};
use crate::time::Timestamp;

/// Text mixing arbitrary code points with the characters that need care:
/// XML/JSON specials, controls (C0, DEL, C1), U+FFFE/U+FFFF, a combining
/// accent, and characters of every UTF-8 length.
fn text() -> impl Strategy<Value = String> {
    let tricky = prop::sample::select(vec![
        '&',
        '<',
        '>',
        '"',
        '\'',
        '\\',
        '/',
        ';',
        '#',
        '\t',
        '\n',
        '\r',
        '\0',
        '\u{1}',
        '\u{7f}',
        '\u{85}',
        '\u{9f}',
        '\u{fffe}',
        '\u{ffff}',
        '\u{fffd}',
        'ü',
        'Ω',
        'Д',
        '李',
        '\u{301}',
        '😀',
        '\u{10ffff}',
        ' ',
    ]);
    prop::collection::vec(prop_oneof![any::<char>(), tricky, Just('a')], 0..48)
        .prop_map(|v| v.into_iter().collect())
}

fn storage(user: &str) -> StorageRecord {
    StorageRecord {
        volume_id: Uuid::nil(),
        site_name: "SITE".into(),
        compute_service: "svc".into(),
        local_user: "uid".into(),
        local_group: "pid".into(),
        user_identity: Some(user.into()),
        group: "vo".into(),
        create_time: Timestamp::EPOCH,
        start_time: Timestamp::EPOCH,
        end_time: Timestamp::EPOCH,
        capacity_gib: 1,
    }
}

fn ip(user: &str) -> IpRecord {
    IpRecord {
        uuid: Uuid::nil(),
        site_name: "SITE".into(),
        compute_service: "svc".into(),
        local_user: Some("uid".into()),
        global_user_name: Some(user.into()),
        local_group: "pid".into(),
        fqan: "vo".into(),
        ip_version: IpVersion::V4,
        ip_count: 1,
        measurement_time: Timestamp::EPOCH,
    }
}

/// XML text content back to characters: the five predefined entities and
/// decimal or hex character references; `None` for anything malformed or a
/// raw `<` or `&`, as an XML parser would reject it.
fn xml_unescape(s: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find(['&', '<']) {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let end = rest.find(';').filter(|_| rest.starts_with('&'))?;
        let entity = &rest[1..end];
        let c = match entity {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let n = match entity.strip_prefix("#x") {
                    Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                    None => entity.strip_prefix('#')?.parse().ok()?,
                };
                char::from_u32(n)?
            }
        };
        out.push(c);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

fn ascii_without_controls(s: &str) -> bool {
    s.bytes().all(|b| (0x20..0x7f).contains(&b))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn star_text_is_ascii_and_unescapes_to_the_input_minus_controls(name in text()) {
        let xml = storage(&name).render();
        prop_assert!(ascii_without_controls(&xml), "{:?}", xml);
        let want: String = name
            .chars()
            .filter(|c| !c.is_control() && !matches!(c, '\u{fffe}' | '\u{ffff}'))
            .collect();
        let open = "<sr:UserIdentity>";
        let got = match xml.find(open) {
            Some(i) => {
                let body = &xml[i + open.len()..];
                let end = body.find("</sr:UserIdentity>");
                prop_assert!(end.is_some(), "{:?}", xml);
                xml_unescape(&body[..end.unwrap_or(0)])
            }
            None => Some(String::new()), // left out when empty, as cASO does
        };
        prop_assert_eq!(got, Some(want));
    }

    #[test]
    fn json_text_is_ascii_and_parses_to_the_input_minus_controls(name in text()) {
        let json = ip(&name).render();
        prop_assert!(ascii_without_controls(&json), "{:?}", json);
        let v: serde_json::Value = serde_json::from_str(&json)
            .map_err(|e| TestCaseError::fail(format!("{e}: {json:?}")))?;
        let want: String = name.chars().filter(|c| !c.is_control()).collect();
        prop_assert_eq!(v["GlobalUserName"].as_str(), Some(want.as_str()));
    }
}
