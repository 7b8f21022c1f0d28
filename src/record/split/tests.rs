//! Halving messages: every format, the records kept verbatim and in order,
//! and the properties (no panic, bounded parts, halves that recombine).

use std::num::NonZeroUsize;

use proptest::prelude::*;

use super::{Unsplittable, halve, record_count};
use crate::record::loader::check;
use crate::record::render_messages;

const NS: &str = "http://eu-emi.eu/namespaces/2011/02/storagerecord";

fn s(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap()
}

#[test]
fn a_cloud_message_is_halved_at_its_separators() {
    let m = "APEL-cloud-message: v0.4\nVMUUID: a\nSiteName: S\n%%\nVMUUID: b\nSiteName: S\n%%\nVMUUID: c\nSiteName: S\n";
    let (a, b) = halve(m.as_bytes()).unwrap();
    assert_eq!(s(&a), "APEL-cloud-message: v0.4\nVMUUID: a\nSiteName: S\n");
    assert_eq!(
        s(&b),
        "APEL-cloud-message: v0.4\nVMUUID: b\nSiteName: S\n%%\nVMUUID: c\nSiteName: S\n"
    );
    assert_eq!(record_count(m.as_bytes()), Some(3));
}

#[test]
fn a_json_message_is_halved_by_its_usage_records() {
    let m = r#"{"Type": "APEL Public IP message", "Version": "0.2", "UsageRecords": [{"IP": "10.0.0.1", "x": "\u00e9"}, {"IP": "10.0.0.2"}]}"#;
    let (a, b) = halve(m.as_bytes()).unwrap();
    assert_eq!(
        s(&a),
        r#"{"Type": "APEL Public IP message", "Version": "0.2", "UsageRecords": [{"IP": "10.0.0.1", "x": "\u00e9"}]}"#
    );
    assert_eq!(
        s(&b),
        r#"{"Type": "APEL Public IP message", "Version": "0.2", "UsageRecords": [{"IP": "10.0.0.2"}]}"#
    );
}

#[test]
fn a_star_message_is_halved_by_its_records() {
    let rec = |id: &str| {
        format!(
            "<sr:StorageUsageRecord><sr:RecordIdentity sr:recordId=\"{id}\" x=\"a>b\"/><sr:StorageSystem>s</sr:StorageSystem></sr:StorageUsageRecord>"
        )
    };
    let m = format!(
        "<?xml version=\"1.0\"?><sr:StorageUsageRecords xmlns:sr=\"{NS}\"><!-- a <comment> -->{}{}{}</sr:StorageUsageRecords>\n",
        rec("r1"),
        rec("r2"),
        rec("r3")
    );
    let (a, b) = halve(m.as_bytes()).unwrap();
    let head = format!(
        "<?xml version=\"1.0\"?><sr:StorageUsageRecords xmlns:sr=\"{NS}\"><!-- a <comment> -->"
    );
    assert_eq!(
        s(&a),
        format!("{head}{}</sr:StorageUsageRecords>", rec("r1"))
    );
    assert_eq!(
        s(&b),
        format!("{head}{}{}</sr:StorageUsageRecords>", rec("r2"), rec("r3"))
    );
}

#[test]
fn one_record_cannot_be_halved_and_says_so() {
    let m = "APEL-cloud-message: v0.4\nVMUUID: a\nSiteName: S\n%%\n";
    let e = halve(m.as_bytes()).unwrap_err();
    assert_eq!(e, Unsplittable::OneRecord(m.trim().len()));
    assert!(e.to_string().contains("single record"), "{e}");
    let j = r#"{"Type": "APEL-accelerator-message", "UsageRecords": [{"a": 1}]}"#;
    assert!(matches!(
        halve(j.as_bytes()),
        Err(Unsplittable::OneRecord(_))
    ));
    for bad in [
        "{\"UsageRecords\": 3}",
        "{\"Type\": \"x\"}",
        "{nope",
        "<a><b>",
        "no header line",
        "\u{ff}",
    ] {
        assert!(
            matches!(halve(bad.as_bytes()), Err(Unsplittable::Unknown(_))),
            "{bad}"
        );
    }
}

/// The records of a message as the loader sees them: recombined halves
/// hold exactly the original's, in order.
fn records_of(body: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![body.to_vec()];
    while let Some(m) = todo.pop() {
        match halve(&m) {
            Ok((a, b)) => {
                todo.push(b);
                todo.push(a);
            }
            Err(_) => out.push(String::from_utf8_lossy(&m).into_owned()),
        }
    }
    out
}

proptest! {
    #[test]
    fn never_panics(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = halve(&bytes);
        let _ = record_count(&bytes);
    }

    /// Rendered messages halve into messages the loader accepts, each
    /// no larger than the original, with every record once, in order.
    #[test]
    fn halves_are_messages_with_every_record_once(
        records in crate::record::loader::tests::records(),
        max in 2usize..6,
    ) {
        let max = NonZeroUsize::new(max).unwrap_or(NonZeroUsize::MIN);
        let messages = render_messages(&records, max).map_err(|e| TestCaseError::fail(e.to_string()))?;
        for m in messages {
            let body = m.as_bytes();
            let n = record_count(body);
            prop_assert_eq!(n, Some(m.record_count()), "{}", m.as_str());
            match halve(body) {
                Ok((a, b)) => {
                    prop_assert!(a.len() < body.len() && b.len() < body.len());
                    prop_assert_eq!(check(&a), Ok(()));
                    prop_assert_eq!(check(&b), Ok(()));
                    prop_assert!(a.is_ascii() && b.is_ascii());
                    let (na, nb) = (record_count(&a).unwrap_or(0), record_count(&b).unwrap_or(0));
                    prop_assert_eq!(na + nb, m.record_count());
                    prop_assert!(na <= nb && nb - na <= 1);
                }
                Err(e) => prop_assert_eq!((m.record_count(), e), (1, Unsplittable::OneRecord(m.as_str().trim().len()))),
            }
            // Halving down to single records gives one message per record.
            prop_assert_eq!(records_of(body).len(), m.record_count());
        }
    }
}
