//! Lastrun files against cASO 5.2.2 itself: we write byte for byte what its
//! `write_lastrun` writes, and its reader (dateutil) reads ours back to the
//! same instant; we read what cASO writes.

use cloud_accounting::lastrun;
use cloud_accounting::time::Timestamp;

use crate::support::spool::oracle;

const INSTANTS: [i64; 5] = [
    0,
    1_763_978_401_000_000,
    1_763_978_401_123_456,
    1_795_600_000_000_001,
    951_782_400_500_000, // 2000-02-29
];

fn paths(dir: &std::path::Path, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            lastrun::path(dir, &format!("p{i}"))
                .to_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[test]
fn caso_and_we_write_the_same_bytes_and_read_each_other() {
    let ours = tempfile::tempdir().unwrap();
    let theirs = tempfile::tempdir().unwrap();
    let mut caso_args = vec![
        "lastrun-write-caso".to_string(),
        theirs.path().to_str().unwrap().to_string(),
    ];
    for (i, micros) in INSTANTS.iter().enumerate() {
        lastrun::write(
            ours.path(),
            &format!("p{i}"),
            Timestamp::from_unix_micros(*micros),
        )
        .unwrap();
        // cASO writes extract_to + 1 s.
        caso_args.push(format!("p{i}={}", micros - 1_000_000));
    }
    oracle(&caso_args.iter().map(String::as_str).collect::<Vec<_>>());

    let our_paths = paths(ours.path(), INSTANTS.len());
    let mut read_args = vec!["lastrun-read"];
    read_args.extend(our_paths.iter().map(String::as_str));
    let dateutil = oracle(&read_args);
    for (i, micros) in INSTANTS.iter().enumerate() {
        let project = format!("p{i}");
        let a = std::fs::read_to_string(lastrun::path(ours.path(), &project)).unwrap();
        let b = std::fs::read_to_string(lastrun::path(theirs.path(), &project)).unwrap();
        assert_eq!(a, b, "{micros}");
        // cASO's reader (dateutil) on our file, ours on cASO's.
        assert_eq!(dateutil[i]["micros"], *micros, "{micros}");
        assert_eq!(
            lastrun::read(theirs.path(), &project).unwrap(),
            Some(Timestamp::from_unix_micros(*micros))
        );
    }
}

#[test]
fn dateutil_and_we_agree_on_other_forms() {
    let d = tempfile::tempdir().unwrap();
    let forms = [
        "2026-11-24 10:00:01+00:00",
        "2026-11-24 10:00:01.25+00:00",
        "2026-11-24T10:00:01Z",
        "2026-11-24T12:00:01+02:00",
        "2026-11-24T10:00:01",
        "2026-11-24",
        "2026-11-24 10:00:01+00:00\n",
    ];
    let all = paths(d.path(), forms.len());
    for (path, form) in all.iter().zip(forms) {
        std::fs::write(path, form).unwrap();
    }
    let mut args = vec!["lastrun-read"];
    args.extend(all.iter().map(String::as_str));
    let dateutil = oracle(&args);
    for (i, form) in forms.iter().enumerate() {
        let ours = lastrun::read(d.path(), &format!("p{i}")).unwrap().unwrap();
        assert_eq!(dateutil[i]["micros"], ours.unix_micros(), "{form:?}");
    }
}
