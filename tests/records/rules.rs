//! Message rules that cASO does not have: the size cap, the text rules on
//! every record type (printable ASCII in cloud records, no control
//! characters anywhere, non-ASCII escaped in StAR and JSON), and refusing
//! (not truncating) an oversized record.

use std::num::NonZeroUsize;

use cloud_accounting::record::{
    MAX_MESSAGE_BYTES, Record, RecordError, RecordType, render_messages,
};

use crate::support::records;
use crate::support::records::*;

fn n(x: usize) -> NonZeroUsize {
    NonZeroUsize::new(x).unwrap()
}

/// Records per message, in order, recovered from the message text.
fn cloud_vm_ids(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("VMUUID: "))
        .map(str::to_string)
        .collect()
}

#[test]
fn messages_are_split_by_size_as_well_as_by_count() {
    // 1000 records of ~1.3 KB: one 1.3 MB message for cASO at max_size 1000.
    let records: Vec<Record> = (0..1000)
        .map(|i| {
            let mut r = cloud(i);
            r.machine_name = format!("{i:04}-{}", "x".repeat(250));
            r.global_user_name = Some("u".repeat(255));
            r.image_id = Some("i".repeat(255));
            r.into()
        })
        .collect();
    let messages = render_messages(&records, n(1000)).unwrap();
    assert!(messages.len() >= 3, "{} messages", messages.len());
    let mut seen = Vec::new();
    for m in &messages {
        assert!(
            m.as_bytes().len() <= MAX_MESSAGE_BYTES,
            "{}",
            m.as_bytes().len()
        );
        assert!(m.as_str().is_ascii());
        assert!(m.as_str().starts_with("APEL-cloud-message: v0.4\n"));
        assert!(m.as_str().ends_with('\n') && !m.as_str().ends_with("%%\n"));
        let ids = cloud_vm_ids(m.as_str());
        assert_eq!(ids.len(), m.record_count());
        assert_eq!(m.as_str().matches("\n%%\n").count() + 1, m.record_count());
        seen.extend(ids);
    }
    // Every record exactly once, in the given order.
    let want: Vec<String> = (0..1000).map(|i| id(i).to_string()).collect();
    assert_eq!(seen, want);
    // Greedy: each message but the last is too full to take the next record.
    for pair in messages.windows(2) {
        let next_record = pair[1].as_str().split("\n%%\n").next().unwrap().len();
        assert!(pair[0].as_bytes().len() + next_record > MAX_MESSAGE_BYTES - 2000);
    }
    println!(
        "1000 records of ~1.3 KB -> {} messages of {:?} records",
        messages.len(),
        messages
            .iter()
            .map(|m| m.record_count())
            .collect::<Vec<_>>()
    );
}

#[test]
fn every_type_respects_the_size_cap() {
    let mut records: Vec<Record> = Vec::new();
    for i in 0..3000 {
        let mut s = storage(i);
        s.user_identity = Some("&".repeat(200)); // 5x growth when escaped
        records.push(s.into());
        let mut a = accelerator(i);
        a.model = "m".repeat(300);
        records.push(a.into());
        let mut p = ip(i);
        p.global_user_name = Some("\"".repeat(300)); // 2x growth when escaped
        records.push(p.into());
    }
    let messages = render_messages(&records, n(100_000)).unwrap();
    for kind in [RecordType::Ip, RecordType::Accelerator, RecordType::Storage] {
        let of_kind: Vec<_> = messages.iter().filter(|m| m.kind() == kind).collect();
        assert!(of_kind.len() >= 2, "{kind}: {} messages", of_kind.len());
        assert_eq!(
            of_kind.iter().map(|m| m.record_count()).sum::<usize>(),
            3000
        );
        for m in of_kind {
            assert!(m.as_bytes().len() <= MAX_MESSAGE_BYTES, "{kind}");
            if kind != RecordType::Storage {
                let v: serde_json::Value = serde_json::from_str(m.as_str()).unwrap();
                assert_eq!(
                    v["UsageRecords"].as_array().unwrap().len(),
                    m.record_count()
                );
            } else {
                assert_eq!(
                    m.as_str().matches("<sr:StorageUsageRecord>").count(),
                    m.record_count()
                );
            }
        }
    }
}

/// Escaping makes a record longer than its input (李: 3 bytes of UTF-8,
/// `&#26446;` 8 in StAR; 😀: 4 bytes, `\ud83d\ude00` 12 in JSON): messages
/// are cut by the bytes really written, so none exceeds the cap.
#[test]
fn escaped_names_count_at_their_rendered_size() {
    let mut records: Vec<Record> = Vec::new();
    for i in 0..2000 {
        let mut s = storage(i);
        s.user_identity = Some("李".repeat(200));
        records.push(s.into());
        let mut p = ip(i);
        p.global_user_name = Some("😀".repeat(100));
        records.push(p.into());
    }
    let messages = render_messages(&records, n(100_000)).unwrap();
    for kind in [RecordType::Ip, RecordType::Storage] {
        let of_kind: Vec<_> = messages.iter().filter(|m| m.kind() == kind).collect();
        assert_eq!(
            of_kind.iter().map(|m| m.record_count()).sum::<usize>(),
            2000
        );
        let total: usize = of_kind.iter().map(|m| m.as_bytes().len()).sum();
        // Counted by their UTF-8 input the names would fit in fewer messages.
        assert!(total > 2 * MAX_MESSAGE_BYTES, "{kind}: {total} bytes");
        assert!(of_kind.len() >= total.div_ceil(MAX_MESSAGE_BYTES), "{kind}");
        for m in &of_kind {
            assert!(m.as_str().is_ascii(), "{kind}");
            assert!(m.as_bytes().len() <= MAX_MESSAGE_BYTES, "{kind}");
        }
        // Greedy: each message but the last could not take one more record.
        let one = of_kind[0].as_bytes().len() / of_kind[0].record_count();
        for m in &of_kind[..of_kind.len() - 1] {
            assert!(m.as_bytes().len() + one > MAX_MESSAGE_BYTES, "{kind}");
        }
    }
    // A record over the cap only once escaped is refused, not truncated.
    let mut big = storage(9);
    big.user_identity = Some("李".repeat(MAX_MESSAGE_BYTES / 4));
    let err = render_messages(&[big.into()], n(1)).unwrap_err();
    match err {
        RecordError::RecordTooLarge { bytes, .. } => assert!(bytes > 2 * MAX_MESSAGE_BYTES),
        other => panic!("unexpected error {other:?}"),
    }
}

#[test]
fn a_record_too_large_for_any_message_is_an_error_naming_it() {
    let mut big = cloud(7);
    big.machine_name = "x".repeat(MAX_MESSAGE_BYTES);
    let records: Vec<Record> = vec![cloud(1).into(), big.into(), cloud(2).into()];
    let err = render_messages(&records, n(100)).unwrap_err();
    match &err {
        RecordError::RecordTooLarge {
            kind,
            id,
            bytes,
            limit,
        } => {
            assert_eq!(*kind, RecordType::Cloud);
            assert_eq!(id, &format!("VMUUID {}", records::id(7)));
            assert!(*bytes > *limit);
            assert_eq!(*limit, MAX_MESSAGE_BYTES);
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(
        err.to_string().contains(&records::id(7).to_string()),
        "{err}"
    );
}

#[test]
fn max_size_counts_records_per_message() {
    let records: Vec<Record> = (0..7).map(|i| ip(i).into()).collect();
    for (max, sizes) in [
        (1, vec![1; 7]),
        (2, vec![2, 2, 2, 1]),
        (7, vec![7]),
        (100, vec![7]),
    ] {
        let got: Vec<usize> = render_messages(&records, n(max))
            .unwrap()
            .iter()
            .map(|m| m.record_count())
            .collect();
        assert_eq!(got, sizes, "max_size {max}");
    }
    assert!(render_messages(&[], n(100)).unwrap().is_empty());
}

/// The text rules reach every text field of every record type: the cloud
/// record keeps printable ASCII, StAR and JSON escape the rest, and control
/// characters are gone from all of them.
#[test]
fn every_text_field_of_every_type_is_printable_ascii() {
    let mut c = cloud(1);
    for f in [
        &mut c.site_name,
        &mut c.compute_service,
        &mut c.machine_name,
        &mut c.local_user_id,
        &mut c.local_group_id,
        &mut c.fqan,
    ] {
        f.push_str(DIRTY);
    }
    c.global_user_name = Some(format!("alice{DIRTY}"));
    c.image_id = Some(format!("img{DIRTY}"));
    c.benchmark = bench(&format!("HEPSPEC{DIRTY}"), 1.0);

    let mut p = ip(1);
    for f in [
        &mut p.site_name,
        &mut p.compute_service,
        &mut p.local_group,
        &mut p.fqan,
    ] {
        f.push_str(DIRTY);
    }
    p.local_user = Some(format!("uid{DIRTY}"));
    p.global_user_name = Some(format!("alice{DIRTY}"));

    let mut a = accelerator(1);
    for f in [
        &mut a.site_name,
        &mut a.compute_service,
        &mut a.fqan,
        &mut a.accelerator_type,
        &mut a.model,
    ] {
        f.push_str(DIRTY);
    }
    a.global_user_name = Some(format!("alice{DIRTY}"));
    a.benchmark = bench(&format!("HEPscore{DIRTY}"), 2.0);

    let mut s = storage(1);
    for f in [
        &mut s.site_name,
        &mut s.compute_service,
        &mut s.local_user,
        &mut s.local_group,
        &mut s.group,
    ] {
        f.push_str(DIRTY);
    }
    s.user_identity = Some(format!("alice{DIRTY}"));

    let records: Vec<Record> = vec![c.into(), p.into(), a.into(), s.into()];
    let messages = render_messages(&records, n(100)).unwrap();
    assert_eq!(messages.len(), 4);
    for m in &messages {
        let text = m.as_str();
        assert!(
            text.bytes()
                .all(|b| b == b'\n' || (0x20..0x7f).contains(&b)),
            "{}: {text:?}",
            m.kind()
        );
        // Newlines are the cloud format's own, nowhere else.
        if m.kind() != RecordType::Cloud {
            assert!(!text.contains('\n'), "{}: {text:?}", m.kind());
        }
    }
    let cloud_text = messages[0].as_str();
    assert!(
        cloud_text.contains("\nSiteName: CESGA-CLOUD\n"),
        "{cloud_text}"
    );
    assert!(cloud_text.contains("\nGlobalUserName: alice\n"));
    assert!(cloud_text.contains("\nBenchmarkType: HEPSPEC\n"));
    // Header + 21 keys (all but SuspendDuration): no line was injected.
    assert_eq!(cloud_text.lines().count(), 1 + 21);
    // DIRTY is "é東\t\n\u{7f}\u{1}😀": the three non-control characters stay.
    assert!(
        messages[1]
            .as_str()
            .contains(r#""GlobalUserName": "alice\u00e9\u6771\ud83d\ude00""#),
        "{}",
        messages[1].as_str()
    );
    assert!(
        messages[2]
            .as_str()
            .contains(r#""Model": "NVIDIA A100\u00e9\u6771\ud83d\ude00""#)
    );
    assert!(
        messages[3]
            .as_str()
            .contains("<sr:UserIdentity>alice&#233;&#26481;&#128512;</sr:UserIdentity>"),
        "{}",
        messages[3].as_str()
    );
}

#[test]
fn records_round_trip_through_serde() {
    let records: Vec<Record> = vec![
        cloud(1).into(),
        ip(1).into(),
        accelerator(1).into(),
        storage(1).into(),
    ];
    let json = serde_json::to_string(&records).unwrap();
    let back: Vec<Record> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, records);
    let bad = json.replace(r#""month":10"#, r#""month":13"#);
    assert!(serde_json::from_str::<Vec<Record>>(&bad).is_err());
    let bad = json.replace(r#""ip_version":4"#, r#""ip_version":5"#);
    assert!(serde_json::from_str::<Vec<Record>>(&bad).is_err());
}
