//! Names outside ASCII (issue 17): StAR and JSON messages carry them intact,
//! as cASO does, and stay pure ASCII; the cloud record is unchanged.
//!
//! Our messages are parsed by the parsers the APEL server uses,
//! `xml.dom.minidom` and `json.loads`, from the `.venv` that
//! `scripts/setup-python.sh` creates (`tests/oracle/names_parse.py`).

use std::num::NonZeroUsize;
use std::path::Path;
use std::process::Command;

use cloud_accounting::record::{Message, Record, RecordType, render_messages};
use cloud_accounting::send::queue;
use serde_json::{Value, json};

use crate::support::python::python;
use crate::support::records::*;

/// One record of each type per name of the table, every name field set to it.
fn records() -> Vec<Record> {
    let mut out = Vec::new();
    for (i, (_, name)) in NAMES.iter().enumerate() {
        let n = i as u32;
        let mut c = cloud(n);
        c.machine_name = (*name).into();
        c.global_user_name = Some((*name).into());
        c.fqan = (*name).into();
        out.push(c.into());
        let mut p = ip(n);
        p.global_user_name = Some((*name).into());
        p.local_user = Some((*name).into());
        out.push(p.into());
        let mut a = accelerator(n);
        a.global_user_name = Some((*name).into());
        a.model = (*name).into();
        out.push(a.into());
        let mut s = storage(n);
        s.user_identity = Some((*name).into());
        s.local_user = (*name).into();
        s.group = (*name).into();
        out.push(s.into());
    }
    out
}

fn messages(records: &[Record]) -> Vec<Message> {
    render_messages(records, NonZeroUsize::new(100).unwrap()).unwrap()
}

fn of_kind(messages: &[Message], kind: RecordType) -> Vec<String> {
    messages
        .iter()
        .filter(|m| m.kind() == kind)
        .map(|m| m.as_str().to_string())
        .collect()
}

/// Runs the APEL server's parsers over our StAR and JSON messages.
fn parse_like_apel(star: &[String], json_messages: &[String]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.json"), dir.path().join("out.json"));
    let body = json!({"star": star, "json": json_messages});
    std::fs::write(&input, serde_json::to_vec(&body).unwrap()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracle/names_parse.py");
    let run = Command::new(python())
        .arg(&script)
        .arg(&input)
        .arg(&output)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "parser failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    serde_json::from_slice(&std::fs::read(&output).unwrap()).unwrap()
}

#[test]
fn every_message_is_ascii_and_sendable() {
    for m in messages(&records()) {
        assert!(m.as_str().is_ascii(), "{}: {}", m.kind(), m.as_str());
        // The very check ssmsend applies before sending a spooled message.
        queue::check(m.as_bytes()).unwrap_or_else(|e| panic!("{}: {e}", m.kind()));
        let controls =
            |b: &u8| b.is_ascii_control() && !(m.kind() == RecordType::Cloud && *b == b'\n');
        assert!(
            !m.as_bytes().iter().any(controls),
            "{}: {:?}",
            m.kind(),
            m.as_str()
        );
    }
}

#[test]
fn star_and_json_parse_back_to_the_names_minus_control_characters() {
    let all = messages(&records());
    let star = of_kind(&all, RecordType::Storage);
    let ip = of_kind(&all, RecordType::Ip);
    let accelerator = of_kind(&all, RecordType::Accelerator);
    assert_eq!((star.len(), ip.len(), accelerator.len()), (1, 1, 1));
    let parsed = parse_like_apel(&star, &[ip[0].clone(), accelerator[0].clone()]);

    let star_records = parsed["star"][0].as_array().unwrap();
    let ip_records = parsed["json"][0].as_array().unwrap();
    let accelerator_records = parsed["json"][1].as_array().unwrap();
    for records in [star_records, ip_records, accelerator_records] {
        assert_eq!(records.len(), NAMES.len());
    }
    for (i, (what, name)) in NAMES.iter().enumerate() {
        let want = without_controls(name);
        let s = &star_records[i];
        for field in ["UserIdentity", "LocalUser", "Group"] {
            assert_eq!(
                s[field].as_str(),
                Some(want.as_str()),
                "StAR {field}: {what}"
            );
        }
        for field in ["GlobalUserName", "LocalUser"] {
            assert_eq!(
                ip_records[i][field].as_str(),
                Some(want.as_str()),
                "IP {field}: {what}"
            );
        }
        for field in ["GlobalUserName", "Model"] {
            assert_eq!(
                accelerator_records[i][field].as_str(),
                Some(want.as_str()),
                "accelerator {field}: {what}"
            );
        }
    }
}

/// The issue's own examples, written as cASO writes them.
#[test]
fn star_writes_character_references_and_json_u_escapes_like_caso() {
    let mut s = storage(1);
    s.user_identity = Some("Jürgen Müller".into());
    s.group = "李雷".into();
    let mut p = ip(1);
    p.global_user_name = Some("Jürgen 😀".into());
    let all = messages(&[s.into(), p.into()]);
    let star = &of_kind(&all, RecordType::Storage)[0];
    assert!(
        star.contains("<sr:UserIdentity>J&#252;rgen M&#252;ller</sr:UserIdentity>"),
        "{star}"
    );
    assert!(
        star.contains("<sr:Group>&#26446;&#38647;</sr:Group>"),
        "{star}"
    );
    let ip = &of_kind(&all, RecordType::Ip)[0];
    assert!(
        ip.contains(r#""GlobalUserName": "J\u00fcrgen \ud83d\ude00""#),
        "{ip}"
    );
}

/// The cloud message is what it always was: every name field reduced to
/// its printable ASCII, the same bytes as rendering pre-stripped names.
#[test]
fn cloud_output_is_unchanged() {
    let named: Vec<Record> = records()
        .into_iter()
        .filter(|r| r.kind() == RecordType::Cloud)
        .collect();
    let stripped: Vec<Record> = named
        .iter()
        .map(|r| match r {
            Record::Cloud(c) => {
                let mut c = c.clone();
                c.machine_name = printable_ascii(&c.machine_name);
                c.global_user_name = c.global_user_name.as_deref().map(printable_ascii);
                c.fqan = printable_ascii(&c.fqan);
                Record::Cloud(c)
            }
            other => other.clone(),
        })
        .collect();
    let (ours, before) = (messages(&named), messages(&stripped));
    assert_eq!(ours, before);
    let text = ours[0].as_str();
    assert!(text.contains("\nMachineName: Jrgen Mller\n"), "{text}");
    assert!(text.contains("\nGlobalUserName: JrgenMller\n"), "{text}");
    assert!(text.contains("\nFQAN:  ()\n"), "{text}"); // CJK: nothing printable left
}
