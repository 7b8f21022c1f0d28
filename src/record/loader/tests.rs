//! The loader rules, case by case (docs/research/apel-loader-rules.md §4
//! numbers in the comments), and the no-false-positive properties.

use std::num::NonZeroUsize;

use proptest::prelude::*;
use uuid::Uuid;

use super::check;
use crate::record::{
    AcceleratorRecord, CloudRecord, IpRecord, IpVersion, Record, Status, StorageRecord, YearMonth,
    render_messages,
};
use crate::time::Timestamp;

const H: &str = "APEL-cloud-message: v0.4\n";
const REC: &str = "VMUUID: vm-1\nSiteName: SITE\nStartTime: 1600000000\nWallDuration: 3600";
const NS: &str = "http://eu-emi.eu/namespaces/2011/02/storagerecord";

fn cloud(extra: &str) -> String {
    format!("{H}{REC}\n{extra}\n%%\n")
}

fn star(inner: &str) -> String {
    format!("<sr:StorageUsageRecords xmlns:sr=\"{NS}\">{inner}</sr:StorageUsageRecords>")
}

const STAR_OK: &str = "<sr:StorageUsageRecord><sr:RecordIdentity sr:createTime=\"2020-01-01T00:00:00\" sr:recordId=\"r1\" /><sr:StorageSystem>s</sr:StorageSystem><sr:StartTime>2020-01-01T00:00:00</sr:StartTime><sr:EndTime>2020-01-02T00:00:00</sr:EndTime><sr:ResourceCapacityUsed>10</sr:ResourceCapacityUsed></sr:StorageUsageRecord>";

fn acc(record: &str) -> String {
    format!(
        r#"{{"Type": "APEL-accelerator-message", "Version": "0.1", "UsageRecords": [{record}]}}"#
    )
}

const ACC_OK: &str = r#"{"SiteName": "S", "AssociatedRecord": "a1", "FQAN": "vo", "Count": 1, "AvailableDuration": 3600, "MeasurementMonth": 5, "MeasurementYear": 2025, "AssociatedRecordType": "cloud", "Type": "GPU"}"#;

/// (case, message, expected reason; "" = accepted).
fn cases() -> Vec<(&'static str, String, &'static str)> {
    vec![
        ("C01 base record", cloud(""), ""),
        (
            "C02 two records",
            format!("{H}{REC}\n%%\n{}\n%%\n", REC.replace("vm-1", "vm-2")),
            "",
        ),
        ("C03 no trailing %%", format!("{H}{REC}"), ""),
        ("C45 header only", H.to_string(), ""),
        ("C46 empty chunk", format!("{H}{REC}\n%%\n%%\n"), ""),
        (
            "C48 CRLF",
            format!("{H}{REC}\n%%\n").replace('\n', "\r\n"),
            "",
        ),
        ("C49 leading blanks", format!("\n  {H}{REC}"), ""),
        (
            "C06 other version",
            format!("APEL-cloud-message: v0.2\n{REC}"),
            "",
        ),
        ("C11 no space", cloud("MachineName:x"), ""),
        ("C13 ignored field", cloud("MeasurementTime: 123"), ""),
        ("C24 None int", cloud("CpuDuration: None"), ""),
        ("C41 empty int", cloud("Memory: "), ""),
        ("C22 negative", cloud("SuspendDuration: -5"), ""),
        ("C27 ISO time", cloud("EndTime: 2020-09-13T12:26:40Z"), ""),
        ("C50 colons in value", cloud("MachineName: a:b:c"), ""),
        ("C52 padded int", cloud("Disk:   3600  "), ""),
        ("C54 underscore int", cloud("Disk: 3_600"), ""),
        ("C32 float CpuCount", cloud("CpuCount: 1.5"), ""),
        ("C38 nan Benchmark", cloud("Benchmark: nan"), ""),
        (
            "summary header known",
            "APEL-summary-job-message: v0.2\nSite: X\n%%\n".into(),
            "",
        ),
        (
            "C04 missing %% merges",
            format!("{H}{REC}\n{}\n%%\n", REC.replace("vm-1", "vm-2")),
            "APEL loader would reject record 1 of 1 (VMUUID \"vm-1\"): VMUUID given twice: a missing %% between two records merges them and the server keeps only the last",
        ),
        (
            "C05 unknown header",
            format!("APEL-cloud-msg: v0.4\n{REC}"),
            "APEL loader would reject the message: message type \"APEL-cloud-msg: v0.4\" not recognised (the header must be APEL-cloud-message: v0.4)",
        ),
        (
            "C07 header without colon",
            format!("APEL-cloud-message v0.4\n{REC}"),
            "APEL loader would reject the message: header line \"APEL-cloud-message v0.4\" has no ':' (the server: Message header is incorrect)",
        ),
        (
            "C08 header case",
            format!("apel-cloud-message: v0.4\n{REC}"),
            "APEL loader would reject the message: message type \"apel-cloud-message: v0.4\" not recognised (the header must be APEL-cloud-message: v0.4)",
        ),
        (
            "C09 no header",
            REC.to_string(),
            "APEL loader would reject the message: message type \"VMUUID: vm-1\" not recognised (the header must be APEL-cloud-message: v0.4)",
        ),
        (
            "C10 line without colon",
            cloud("garbage line"),
            "APEL loader would reject record 1 of 1 (VMUUID \"vm-1\"): line \"garbage line\" is not a Key: value pair",
        ),
        (
            "C12 unknown key",
            cloud("Foo: bar"),
            "APEL loader would reject record 1 of 1 (VMUUID \"vm-1\"): unknown field \"Foo\"",
        ),
        (
            "C56 lower-case key",
            cloud("sitename: x"),
            "APEL loader would reject record 1 of 1 (VMUUID \"vm-1\"): unknown field \"sitename\"",
        ),
        (
            "C15 missing VMUUID, second record",
            format!("{H}{REC}\n%%\nSiteName: S\n%%\n"),
            "APEL loader would reject record 2 of 2: mandatory field VMUUID is missing",
        ),
        (
            "C16 VMUUID None",
            format!("{H}VMUUID: None\nSiteName: S"),
            "APEL loader would reject record 1 of 1 (VMUUID \"None\"): mandatory field VMUUID is null (\"None\")",
        ),
        (
            "C18 missing SiteName",
            format!("{H}VMUUID: abc\nStartTime: 1"),
            "APEL loader would reject record 1 of 1 (VMUUID \"abc\"): mandatory field SiteName is missing",
        ),
        (
            "C19 SiteName NULL",
            format!("{H}VMUUID: abc\nSiteName: NULL"),
            "APEL loader would reject record 1 of 1 (VMUUID \"abc\"): mandatory field SiteName is null (\"NULL\")",
        ),
        (
            "C21 fractional duration",
            cloud("CpuDuration: 3600.5"),
            "APEL loader would reject record 1 of 1 (VMUUID \"vm-1\"): CpuDuration \"3600.5\" is not an integer",
        ),
        (
            "C40 exponent int",
            cloud("Memory: 1e3"),
            "APEL loader would reject record 1 of 1 (VMUUID \"vm-1\"): Memory \"1e3\" is not an integer",
        ),
        (
            "C25 bad time",
            cloud("EndTime: 12x"),
            "APEL loader would reject record 1 of 1 (VMUUID \"vm-1\"): EndTime \"12x\" is not an integer (epoch seconds) nor YYYY-MM-DDTHH:MM:SSZ",
        ),
        (
            "C51 ISO without zone",
            cloud("EndTime: 2020-09-13T12:26:40"),
            "APEL loader would reject record 1 of 1 (VMUUID \"vm-1\"): EndTime \"2020-09-13T12:26:40\" is not an integer (epoch seconds) nor YYYY-MM-DDTHH:MM:SSZ",
        ),
        (
            "C29 time out of range",
            cloud("EndTime: 99999999999999"),
            "APEL loader would reject record 1 of 1 (VMUUID \"vm-1\"): EndTime \"99999999999999\" is out of the server's range (years 1 to 9999)",
        ),
        (
            "C33 CpuCount word",
            cloud("CpuCount: two"),
            "APEL loader would reject record 1 of 1 (VMUUID \"vm-1\"): CpuCount \"two\" is not a number",
        ),
        ("S01 StAR ok", star(STAR_OK), ""),
        (
            "S23 lone record root",
            STAR_OK.replace(
                "<sr:StorageUsageRecord>",
                &format!("<sr:StorageUsageRecord xmlns:sr=\"{NS}\">"),
            ),
            "",
        ),
        (
            "S18b unknown element",
            star(&STAR_OK.replace("<sr:StartTime>", "<sr:Bogus>1</sr:Bogus><sr:StartTime>")),
            "",
        ),
        (
            "S02 no namespace",
            STAR_OK.to_string(),
            "APEL loader would reject the message: the root element <sr:StorageUsageRecord> is not in the StAR namespace http://eu-emi.eu/namespaces/2011/02/storagerecord (XML format not recognised)",
        ),
        (
            "S03 wrong namespace",
            star(STAR_OK).replace(NS, "http://example.org/ns"),
            "APEL loader would reject the message: the root element <sr:StorageUsageRecords> is not in the StAR namespace http://eu-emi.eu/namespaces/2011/02/storagerecord (XML format not recognised)",
        ),
        (
            "S21 comment first",
            format!("<!-- hi -->{}", star(STAR_OK)),
            "APEL loader would reject the message: a comment before the root element: the server reads the first node's namespace (XML format not recognised)",
        ),
        (
            "S05 no record",
            star(""),
            "APEL loader would reject the message: no sr:StorageUsageRecord in the StAR namespace (the server: File does not contain StAR records!)",
        ),
        (
            "S06 truncated",
            star(STAR_OK)[..200].to_string(),
            "APEL loader would reject the message: unclosed element: the XML is truncated (not well-formed XML)",
        ),
        (
            "S18 mismatched tag",
            star(&STAR_OK.replace("</sr:StorageSystem>", "</sr:Site>")),
            "APEL loader would reject the message: mismatched tag </sr:Site> (not well-formed XML)",
        ),
        (
            "S10 unprefixed recordId",
            star(&STAR_OK.replace("sr:recordId", "recordId")),
            "APEL loader would reject record 1 of 1: sr:RecordIdentity has no sr:recordId (the attribute must carry the StAR prefix)",
        ),
        (
            "S07 second record without StorageSystem",
            star(&format!(
                "{STAR_OK}{}",
                STAR_OK
                    .replace("r1", "r2")
                    .replace("<sr:StorageSystem>s</sr:StorageSystem>", "")
            )),
            "APEL loader would reject record 2 of 2 (recordId \"r2\"): mandatory field sr:StorageSystem is missing",
        ),
        (
            "S20 epoch StartTime",
            star(&STAR_OK.replace(
                "<sr:StartTime>2020-01-01T00:00:00",
                "<sr:StartTime>1577836800",
            )),
            "APEL loader would reject record 1 of 1 (recordId \"r1\"): sr:StartTime \"1577836800\" is not an ISO 8601 time (StAR takes no epoch seconds)",
        ),
        (
            "S11 bad createTime",
            star(&STAR_OK.replace(
                "sr:createTime=\"2020-01-01T00:00:00\"",
                "sr:createTime=\"yesterday\"",
            )),
            "APEL loader would reject record 1 of 1 (recordId \"r1\"): sr:createTime \"yesterday\" is not an ISO 8601 time (StAR takes no epoch seconds)",
        ),
        (
            "S15 fractional capacity",
            star(&STAR_OK.replace(">10<", ">10.5<")),
            "APEL loader would reject record 1 of 1 (recordId \"r1\"): sr:ResourceCapacityUsed \"10.5\" is not an integer",
        ),
        ("A01 accelerator ok", acc(ACC_OK), ""),
        (
            "A16 integral float",
            acc(&ACC_OK.replace("3600", "3600.0")),
            "",
        ),
        (
            "A02 no Type",
            r#"{"Version": "0.1", "UsageRecords": []}"#.into(),
            "APEL loader would reject the message: the JSON message has no \"Type\"",
        ),
        (
            "A03 unknown Type",
            acc(ACC_OK).replace("APEL-accelerator-message", "APEL-gpu-message"),
            "APEL loader would reject the message: unsupported JSON message type \"APEL-gpu-message\"",
        ),
        (
            "A05 Version v0.1",
            acc(ACC_OK).replace("\"0.1\"", "\"v0.1\""),
            "APEL loader would reject the message: an accelerator message's \"Version\" must be \"0.1\"",
        ),
        (
            "A06 no records",
            acc(""),
            "APEL loader would reject the message: \"UsageRecords\" holds 0 records, not 1 to 1000",
        ),
        (
            "A08 no SiteName",
            acc(&ACC_OK.replace(r#""SiteName": "S", "#, "")),
            "APEL loader would reject record 1 of 1 (AssociatedRecord \"a1\"): required field SiteName is missing",
        ),
        (
            "A10 month as string",
            acc(&ACC_OK.replace("\"MeasurementMonth\": 5", "\"MeasurementMonth\": \"5\"")),
            "APEL loader would reject record 1 of 1 (AssociatedRecord \"a1\"): MeasurementMonth \"5\" is not an integer",
        ),
        (
            "A18 unknown key",
            acc(&ACC_OK.replace("{", "{\"Foo\": 1, ")),
            "APEL loader would reject record 1 of 1 (AssociatedRecord \"a1\"): unknown field \"Foo\"",
        ),
        (
            "A21 SiteName None",
            acc(&ACC_OK.replace("\"S\"", "\"None\"")),
            "APEL loader would reject record 1 of 1 (AssociatedRecord \"a1\"): SiteName \"None\" is not a non-null string",
        ),
        (
            "A22 truncated JSON",
            acc(ACC_OK)[..40].to_string(),
            "APEL loader would reject the message: malformed JSON: EOF while parsing a string at line 1 column 40",
        ),
    ]
}

#[test]
fn every_case_gives_its_reason() {
    let mut wrong = Vec::new();
    for (case, msg, want) in cases() {
        let got = match check(msg.as_bytes()) {
            Ok(()) => String::new(),
            Err(e) => e.to_string(),
        };
        if got != want {
            wrong.push(format!("{case}:\n  got:  {got}\n  want: {want}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

fn ts(s: i64) -> Timestamp {
    Timestamp::from_unix(s)
}

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("None".to_string()),
        Just("a%%b: c".to_string()),
        "[ -~]{0,20}",
        any::<String>(),
    ]
}

fn site() -> impl Strategy<Value = String> {
    "[A-Za-z][A-Za-z0-9-]{0,15}"
}

/// Random records of every APEL type (also used by `record::split`'s tests).
pub(crate) fn records() -> impl Strategy<Value = Vec<Record>> {
    let cloud = (
        site(),
        word(),
        word(),
        any::<u128>(),
        0i64..4_000_000_000,
        any::<Option<u32>>(),
    )
        .prop_map(|(site, text, name, id, start, wall)| {
            Record::Cloud(CloudRecord {
                vm_uuid: Uuid::from_u128(id),
                site_name: site,
                compute_service: text.clone(),
                machine_name: text.clone(),
                local_user_id: text.clone(),
                local_group_id: text.clone(),
                global_user_name: Some(name).filter(|n| !n.is_empty()),
                fqan: text.clone(),
                status: Status::Started,
                start_time: ts(start),
                end_time: wall.map(|w| ts(start + i64::from(w))),
                suspend_duration: None,
                wall_duration: wall.map(u64::from),
                cpu_duration: None,
                cpu_count: 1,
                memory: 512,
                disk: 0,
                public_ip_count: 0,
                image_id: Some(text),
                benchmark: None,
            })
        });
    let storage =
        (site(), word(), any::<u128>(), 0i64..4_000_000_000).prop_map(|(site, text, id, start)| {
            Record::Storage(StorageRecord {
                volume_id: Uuid::from_u128(id),
                site_name: site,
                compute_service: format!("svc{text}"),
                local_user: text.clone(),
                local_group: text.clone(),
                user_identity: Some(text.clone()),
                group: text,
                create_time: ts(start),
                start_time: ts(start),
                end_time: ts(start + 10),
                capacity_gib: 1,
            })
        });
    let ip = (site(), word(), any::<u128>()).prop_map(|(site, text, id)| {
        Record::Ip(IpRecord {
            uuid: Uuid::from_u128(id),
            site_name: site,
            compute_service: text.clone(),
            local_user: Some(text.clone()).filter(|t| !t.is_empty()),
            global_user_name: None,
            local_group: format!("g{text}"),
            fqan: format!("vo{text}"),
            ip_version: IpVersion::V6,
            ip_count: 3,
            measurement_time: ts(1_700_000_000),
        })
    });
    let accelerator = (site(), word(), any::<u128>()).prop_map(|(site, text, id)| {
        Record::Accelerator(AcceleratorRecord {
            associated_record: Uuid::from_u128(id),
            site_name: site,
            compute_service: text.clone(),
            global_user_name: Some(text.clone()),
            fqan: format!("vo{text}"),
            count: 1,
            available_duration: 3600,
            active_duration: None,
            measurement: YearMonth::new(2025, 10).unwrap(),
            accelerator_type: "GPU".into(),
            model: text,
            cores: None,
            benchmark: None,
        })
    });
    prop::collection::vec(prop_oneof![cloud, storage, ip, accelerator], 1..6)
}

proptest! {
    /// The fast paths agree with the std functions they replace.
    #[test]
    fn byte_strip_and_record_split_agree_with_std(s in "[ %\\t\\n\\x0b\\x0c\\x1c-\\x1fa_\u{e9}\u{2003}]{0,24}") {
        use super::PyStrip;
        let by_char = s.trim_matches(|c: char| {
            matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c' | '\x1c'..='\x1f')
        });
        prop_assert_eq!(s.py_strip(), by_char);
        let split: Vec<&str> = super::split_records(&s).collect();
        prop_assert_eq!(split, s.split("%%").collect::<Vec<_>>());
    }

    #[test]
    fn never_panics(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = check(&bytes);
    }

    #[test]
    fn never_panics_near_valid(cut in 0usize..600, s in 0usize..4) {
        let msgs = [cloud(""), star(STAR_OK), acc(ACC_OK), format!("{H}{REC}")];
        let m = &msgs[s];
        let _ = check(&m.as_bytes()[..cut.min(m.len())]);
    }

    /// No false positive: what we render always passes.
    #[test]
    fn rendered_messages_pass(records in records(), max in 1usize..4) {
        let max = NonZeroUsize::new(max).unwrap_or(NonZeroUsize::MIN);
        let messages = render_messages(&records, max).map_err(|e| TestCaseError::fail(e.to_string()))?;
        for m in messages {
            prop_assert_eq!(check(m.as_bytes()), Ok(()), "{}", m.as_str());
        }
    }
}

/// `kv_record` keeps the keys seen as bits of a u64.
#[test]
fn cloud_keys_fit_the_seen_bitmask() {
    assert!(super::CLOUD.fields.len() + super::CLOUD.ignored.len() <= 64);
}
