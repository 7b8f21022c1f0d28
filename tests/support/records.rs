//! Record builders shared by the record tests.

use cloud_accounting::record::{
    AcceleratorRecord, Benchmark, BenchmarkValue, CloudRecord, IpRecord, IpVersion, Status,
    StorageRecord, YearMonth,
};
use cloud_accounting::time::Timestamp;
use uuid::Uuid;

pub fn ts(s: &str) -> Timestamp {
    Timestamp::parse(s).unwrap()
}

/// A deterministic UUID per test index.
pub fn id(n: u32) -> Uuid {
    Uuid::from_u128(0x1f3a_5c7e_0000_4000_8000_0000_0000_0000 | u128::from(n))
}

pub fn bench(kind: &str, value: f64) -> Option<Benchmark> {
    Some(Benchmark {
        kind: kind.into(),
        value: BenchmarkValue::new(value).unwrap(),
    })
}

/// A finished server with every field set.
pub fn cloud(n: u32) -> CloudRecord {
    CloudRecord {
        vm_uuid: id(n),
        site_name: "CESGA-CLOUD".into(),
        compute_service: "https://keystone.example.org:5000/v3".into(),
        machine_name: format!("vm-{n}"),
        local_user_id: "3b1f0c1a5e8d4f7aa0c2d4e6f8a0b2c4".into(),
        local_group_id: "9d8c7b6a5f4e4d3c2b1a0f9e8d7c6b5a".into(),
        global_user_name: Some("alice".into()),
        fqan: "vo.access.egi.eu".into(),
        status: Status::Completed,
        start_time: ts("2025-10-01T08:00:00Z"),
        end_time: Some(ts("2025-10-02T09:30:15Z")),
        suspend_duration: None,
        wall_duration: None,
        cpu_duration: None,
        cpu_count: 4,
        memory: 8192,
        disk: 80,
        public_ip_count: 1,
        image_id: Some("https://appdb.egi.eu/store/vo/image/0f3e/".into()),
        benchmark: bench("HEPSPEC", 4.4),
    }
}

pub fn ip(n: u32) -> IpRecord {
    IpRecord {
        uuid: id(1000 + n),
        site_name: "CESGA-CLOUD".into(),
        compute_service: "https://keystone.example.org:5000/v3".into(),
        local_user: Some("3b1f0c1a5e8d4f7aa0c2d4e6f8a0b2c4".into()),
        global_user_name: Some("alice".into()),
        local_group: "9d8c7b6a5f4e4d3c2b1a0f9e8d7c6b5a".into(),
        fqan: "vo.access.egi.eu".into(),
        ip_version: IpVersion::V4,
        ip_count: u64::from(n) + 1,
        measurement_time: ts("2025-10-02T10:00:07.250000Z"),
    }
}

pub fn accelerator(n: u32) -> AcceleratorRecord {
    AcceleratorRecord {
        associated_record: id(n),
        site_name: "CESGA-CLOUD".into(),
        compute_service: "https://keystone.example.org:5000/v3".into(),
        global_user_name: Some("alice".into()),
        fqan: "vo.access.egi.eu".into(),
        count: 2,
        available_duration: 86_400 + u64::from(n),
        active_duration: None,
        measurement: YearMonth::new(2025, 10).unwrap(),
        accelerator_type: "GPU".into(),
        model: "NVIDIA A100".into(),
        cores: None,
        benchmark: None,
    }
}

pub fn storage(n: u32) -> StorageRecord {
    StorageRecord {
        volume_id: id(2000 + n),
        site_name: "CESGA-CLOUD".into(),
        compute_service: "https://keystone.example.org:5000/v3".into(),
        local_user: "3b1f0c1a5e8d4f7aa0c2d4e6f8a0b2c4".into(),
        local_group: "9d8c7b6a5f4e4d3c2b1a0f9e8d7c6b5a".into(),
        user_identity: Some("alice".into()),
        group: "vo.access.egi.eu".into(),
        create_time: ts("2025-10-02T10:00:07.123456Z"),
        start_time: ts("2025-10-01T00:00:00Z"),
        end_time: ts("2025-10-02T10:00:07.123456Z"),
        capacity_gib: 10 + n,
    }
}

/// Every text field stuffed with what the text rules must remove (controls)
/// or, outside cloud records, escape (non-ASCII).
pub const DIRTY: &str = "é東\t\n\u{7f}\u{1}😀";

/// People's names outside ASCII (issue 17), by what each one exercises. StAR
/// and JSON must carry them intact, minus control characters; the cloud
/// record keeps only their printable ASCII.
pub const NAMES: &[(&str, &str)] = &[
    ("Latin-1", "Jürgen Müller"),
    ("Greek", "Γιώργος Παπαδόπουλος"),
    ("Cyrillic", "Дмитрий Иванов"),
    ("CJK", "李雷 (韓梅梅)"),
    ("emoji beyond the BMP", "Ana 😀 Silva 𝄞"),
    ("combining accent", "Jose\u{301} Cafe\u{301}"),
    ("only non-ASCII", "ÅÄÖ"),
    (
        "XML and JSON specials mixed",
        "<Zoë & \"Zoé\"> O'Brien \\ ß/",
    ),
    (
        "control characters inside",
        "Jür\u{1}gen\tMül\u{7f}ler\n李\u{85}雷\r",
    ),
];

/// A name as StAR and JSON carry it: without control characters.
pub fn without_controls(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).collect()
}

/// A name as the cloud record carries it: printable ASCII only (what the
/// cloud rule has always done, written out independently of the crate).
pub fn printable_ascii(s: &str) -> String {
    s.chars().filter(|c| (' '..='~').contains(c)).collect()
}
