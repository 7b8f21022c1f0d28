//! Property tests of the configuration parsers (issue 11): both INI
//! dialects, oslo interpolation and voms.json never panic, give bounded
//! output, and parse back what a renderer writes.

use std::collections::BTreeMap;
use std::path::Path;

use proptest::prelude::*;

use super::ini::{self, Dialect};
use super::interpolate::{MAX_EXPANDED_BYTES, interpolate_all};
use super::voms::VoMap;
use super::{ConfigError, Origin, Setting, caso};

const CASES: u32 = 10_000;

/// Bytes of INI-ish text: brackets, separators, quotes, comments,
/// indentation, line ends, `$`, a BOM, and any other character.
fn ini_text() -> impl Strategy<Value = String> {
    const PIECES: &[&str] = &[
        "[", "]", "=", ":", "\n", "\n", "\r\n", "  ", "\t", "#", ";", "\"", "'", "$", "\u{feff}",
        "DEFAULT", "password", "a", "k", "v", "x y",
    ];
    let piece = prop_oneof![
        4 => prop::sample::select(PIECES).prop_map(String::from),
        1 => any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..48).prop_map(|p| p.concat())
}

fn ident() -> impl Strategy<Value = String> {
    (
        prop::char::range('a', 'z'),
        prop::collection::vec(
            prop::sample::select(&b"abcdefghijklmnopqrstuvwxyz0123456789_."[..]),
            0..8,
        ),
    )
        .prop_map(|(c, rest)| {
            let mut s = c.to_string();
            s.extend(rest.into_iter().map(char::from));
            s
        })
}

/// A value as both parsers keep it: one line, no surrounding whitespace,
/// not wrapped in a pair of quotes (oslo would drop them).
fn value() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            prop::sample::select(&b"abcXYZ019 =:#;$%[]'\"/.,-_"[..]).prop_map(char::from),
            any::<char>().prop_filter("one line", |c| !c.is_control() && *c != '\u{feff}'),
        ],
        0..20,
    )
    .prop_map(|c| c.into_iter().collect::<String>().trim().to_string())
    .prop_filter("not quoted", |v| {
        let b = v.as_bytes();
        !(b.len() >= 2 && (b[0] == b'"' || b[0] == b'\'') && b[0] == b[b.len() - 1])
    })
}

/// Sections of options, as a renderer would write them.
fn option_set() -> impl Strategy<Value = BTreeMap<(String, String), String>> {
    prop::collection::btree_map((ident(), ident()), value(), 0..12)
}

fn render(set: &BTreeMap<(String, String), String>) -> String {
    let mut out = String::new();
    let mut section = None;
    for ((s, k), v) in set {
        if section != Some(s) {
            out.push_str(&format!("[{s}]\n"));
            section = Some(s);
        }
        out.push_str(&format!("{k} = {v}\n"));
    }
    out
}

/// No panic; what comes out is no bigger than what went in; an error is
/// one short line.
fn parses_bounded(text: &str, dialect: Dialect) -> Result<(), TestCaseError> {
    match ini::parse(text, Path::new("t.conf"), dialect) {
        Ok(doc) => {
            let size: usize = doc
                .entries
                .iter()
                .map(|e| e.key.len() + e.value.len())
                .sum();
            prop_assert!(size <= text.len());
        }
        Err(e) => {
            let m = e.to_string();
            prop_assert!(m.len() < 200, "{m}");
            prop_assert!(!m.contains('\n'), "{m}");
            prop_assert!(matches!(e, ConfigError::Syntax { .. }), "a syntax error");
        }
    }
    Ok(())
}

/// Interpolation inputs: options of caso.conf whose values mix text, `$$`,
/// `$name`, `${name}` and `$group.name`, some repeated to make bombs.
fn interpolation_set() -> impl Strategy<Value = BTreeMap<(String, String), String>> {
    const KEYS: &[(&str, &str)] = &[
        ("DEFAULT", "site_name"),
        ("DEFAULT", "service_name"),
        ("DEFAULT", "region_name"),
        ("DEFAULT", "caso_tag"),
        ("keystone_auth", "username"),
        ("keystone_auth", "project_name"),
        ("keystone_auth", "password"),
        ("keystone_auth", "auth_url"),
    ];
    let reference = prop::sample::select(KEYS).prop_flat_map(|(s, k)| {
        prop_oneof![
            Just(format!("${k}")),
            Just(format!("${{{k}}}")),
            Just(format!("${s}.{k}")),
        ]
    });
    let token = prop_oneof![
        reference,
        Just("$$".to_string()),
        Just("\\$".to_string()),
        Just("$".to_string()),
        Just("${".to_string()),
        Just("$nosuch".to_string()),
        value(),
    ];
    let text = (prop::collection::vec(token, 0..6), 1usize..5)
        .prop_map(|(t, times)| t.concat().repeat(times));
    prop::collection::btree_map(prop::sample::select(KEYS), text, 0..KEYS.len()).prop_map(|m| {
        m.into_iter()
            .map(|((s, k), v)| ((s.into(), k.into()), v))
            .collect()
    })
}

/// The password's value in [`settings`]: no generated value holds it.
const PASSWORD: &str = "\u{1}PW\u{1}";

fn settings(set: &BTreeMap<(String, String), String>) -> BTreeMap<(String, String), Setting> {
    set.iter()
        .map(|((s, k), v)| {
            let v = if k == "password" { PASSWORD } else { v };
            let setting = Setting {
                value: v.to_string(),
                raw: v.to_string(),
                origin: Origin::File {
                    path: "t.conf".into(),
                    line: 1,
                },
                secret: k == "password",
            };
            ((s.clone(), k.clone()), setting)
        })
        .collect()
}

/// Arbitrary JSON, nested a few levels.
fn json() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<String>().prop_map(Value::String),
        prop::sample::select(&["", " ", "ops", "p1", "\n"][..]).prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    prop::sample::select(&["projects", "tenants", "tenant", "", "vo"][..])
                        .prop_map(String::from),
                    any::<String>(),
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn oslo_parses_any_text_bounded(text in ini_text()) {
        parses_bounded(&text, Dialect::Oslo)?;
    }

    #[test]
    fn configparser_parses_any_text_bounded(text in ini_text()) {
        parses_bounded(&text, Dialect::ConfigParser)?;
    }

    #[test]
    fn oslo_reads_back_what_is_rendered(set in option_set()) {
        let doc = ini::parse(&render(&set), Path::new("t.conf"), Dialect::Oslo).unwrap();
        let got: BTreeMap<_, _> = doc.last_values().into_iter().map(|(k, (v, _))| (k, v)).collect();
        prop_assert_eq!(got, set);
    }

    #[test]
    fn configparser_reads_back_what_is_rendered(set in option_set()) {
        let doc = ini::parse(&render(&set), Path::new("t.cfg"), Dialect::ConfigParser).unwrap();
        let got: BTreeMap<_, _> = doc.last_values().into_iter().map(|(k, (v, _))| (k, v)).collect();
        prop_assert_eq!(got, set);
    }

    /// A malformed line never appears in its error, in either dialect.
    #[test]
    fn a_malformed_line_is_never_echoed(
        word in ident(),
        secret in prop::collection::vec(prop::sample::select(&b"ABCxyz0189"[..]), 8..16)
            .prop_map(|b| String::from_utf8(b).unwrap_or_default()),
    ) {
        for dialect in [Dialect::Oslo, Dialect::ConfigParser] {
            let text = format!("[DEFAULT]\n{word} S{secret}\n");
            let e = ini::parse(&text, Path::new("t"), dialect).unwrap_err().to_string();
            prop_assert!(!e.contains(&format!("S{secret}")), "{}", e);
            let known = |_: &str, _: &str| true;
            let e = ini::parse_known(&text, Path::new("t"), dialect, &known).unwrap_err().to_string();
            prop_assert!(!e.contains(&format!("S{secret}")), "{}", e);
        }
    }

    #[test]
    fn interpolation_is_bounded_and_keeps_secrets_secret(set in interpolation_set()) {
        let mut values = settings(&set);
        match interpolate_all(&caso::SCHEMA, &mut values) {
            Ok(()) => {
                for ((s, k), v) in &values {
                    prop_assert!(v.value.len() <= MAX_EXPANDED_BYTES);
                    if !v.raw.contains('$') {
                        prop_assert_eq!(&v.value, &v.raw);
                    }
                    if v.value.contains(PASSWORD) {
                        prop_assert!(v.secret, "[{}] {} holds the password", s, k);
                    }
                }
            }
            Err(e) => {
                let m = e.to_string();
                prop_assert!(matches!(e, ConfigError::Invalid { .. }), "an invalid value");
                prop_assert!(m.len() < 1000, "{}", m);
            }
        }
    }

    #[test]
    fn voms_json_never_panics(v in json(), raw in any::<String>()) {
        for text in [v.to_string(), raw] {
            match VoMap::parse(Path::new("voms.json"), &text) {
                Ok(_) => {
                    // Accepted: every VO name is a usable FQAN.
                    if let Ok(serde_json::Value::Object(vos)) = serde_json::from_str(&text) {
                        for vo in vos.keys() {
                            prop_assert!(!vo.is_empty() && vo.trim() == vo && !vo.chars().any(char::is_control));
                        }
                    }
                }
                Err(e) => {
                    let m = e.to_string();
                    prop_assert!(m.len() < 400, "{}", m);
                }
            }
        }
    }
}
