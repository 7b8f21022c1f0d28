//! Cloud usage record, APEL `APEL-cloud-message: v0.4`.

use std::fmt;

use uuid::Uuid;

use super::{Benchmark, CLOUD_TYPE, ascii_text};
use crate::time::Timestamp;

/// The VM states an APEL cloud record can carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Started,
    Completed,
    Error,
    Paused,
    Suspended,
    Stopped,
    Unknown,
}

impl Status {
    /// cASO's mapping of a Nova server status (any case); anything it does
    /// not know is `unknown`.
    pub fn from_nova(status: &str) -> Status {
        match status.to_ascii_lowercase().as_str() {
            "active" | "build" | "confirming_resize" | "hard_reboot" | "migrating" | "reboot"
            | "rebuild" | "rescue" | "resize" | "revert_resize" | "verify_resize" | "saving"
            | "password" => Status::Started,
            "deleted" | "shutoff" | "terminated" => Status::Completed,
            "error" => Status::Error,
            "paused" => Status::Paused,
            "suspended" => Status::Suspended,
            "stopped" => Status::Stopped,
            _ => Status::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Started => "started",
            Status::Completed => "completed",
            Status::Error => "error",
            Status::Paused => "paused",
            Status::Suspended => "suspended",
            Status::Stopped => "stopped",
            Status::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One VM's usage. Field comments give the APEL key.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudRecord {
    /// VMUUID: the Nova server id.
    pub vm_uuid: Uuid,
    /// SiteName.
    pub site_name: String,
    /// CloudComputeService (`service_name`, default the site name).
    pub compute_service: String,
    /// MachineName: the server name.
    pub machine_name: String,
    /// LocalUserId: the Keystone user id.
    pub local_user_id: String,
    /// LocalGroupId: the project id.
    pub local_group_id: String,
    /// GlobalUserName: the Keystone user name, when known.
    pub global_user_name: Option<String>,
    /// FQAN: the VO.
    pub fqan: String,
    /// Status.
    pub status: Status,
    /// StartTime.
    pub start_time: Timestamp,
    /// EndTime; `None` (written `0`) while the server runs.
    pub end_time: Option<Timestamp>,
    /// SuspendDuration in seconds, when known.
    pub suspend_duration: Option<u64>,
    /// WallDuration in seconds; `None` = `end_time - start_time` when the
    /// server has ended, else omitted (as cASO).
    pub wall_duration: Option<u64>,
    /// CpuDuration in seconds; `None` = wall * cpu_count when both are
    /// known and non-zero, else omitted (as cASO).
    pub cpu_duration: Option<u64>,
    /// CpuCount (vCPUs).
    pub cpu_count: u32,
    /// Memory in MB.
    pub memory: u64,
    /// Disk in GB (root + ephemeral).
    pub disk: u64,
    /// PublicIPCount: floating IPs attached.
    pub public_ip_count: u32,
    /// ImageId (the image's `vmcatcher_event_ad_mpuri` when it has one).
    pub image_id: Option<String>,
    /// BenchmarkType and Benchmark.
    pub benchmark: Option<Benchmark>,
}

impl CloudRecord {
    /// The wall duration as written before the 0 -> 1 rule (cASO's
    /// `wall_duration` property). A server that "ended" before it started
    /// counts 0 s, not a negative duration.
    pub fn effective_wall_duration(&self) -> Option<u64> {
        self.wall_duration.or_else(|| {
            self.end_time
                .map(|end| end.seconds_since(self.start_time).max(0) as u64)
        })
    }

    /// cASO's `cpu_duration` property.
    pub fn effective_cpu_duration(&self) -> Option<u64> {
        self.cpu_duration.or_else(|| {
            let wall = self.effective_wall_duration()?;
            (self.cpu_count != 0).then(|| wall.saturating_mul(u64::from(self.cpu_count)))
        })
    }

    /// The record's lines, sorted like cASO (`Key: value`, plain byte order,
    /// unknown values omitted), without a trailing newline. The fields are
    /// written straight in that order: this runs once per record, a million
    /// times in a large run, so it allocates nothing per field.
    pub(super) fn render(&self) -> String {
        use std::fmt::Write;
        // CpuDuration and WallDuration of 0 are written as 1, as cASO does.
        let wall = self.effective_wall_duration().map(|d| d.max(1));
        let cpu = self.effective_cpu_duration().map(|d| d.max(1));
        let mut out = String::with_capacity(640);
        // Writing into a String cannot fail.
        let num = |out: &mut String, key: &str, n: &dyn std::fmt::Display| {
            let _ = writeln!(out, "{key}: {n}");
        };
        if let Some(b) = &self.benchmark {
            num(&mut out, "Benchmark", &b.value);
            put_text(&mut out, "BenchmarkType", &b.kind);
        }
        put_text(&mut out, "CloudComputeService", &self.compute_service);
        put_text(&mut out, "CloudType", CLOUD_TYPE);
        num(&mut out, "CpuCount", &self.cpu_count);
        if let Some(d) = cpu {
            num(&mut out, "CpuDuration", &d);
        }
        num(&mut out, "Disk", &self.disk);
        let end = self.end_time.map_or(0, Timestamp::unix_seconds);
        num(&mut out, "EndTime", &end);
        put_text(&mut out, "FQAN", &self.fqan);
        if let Some(name) = &self.global_user_name {
            put_text(&mut out, "GlobalUserName", name);
        }
        if let Some(image) = &self.image_id {
            put_text(&mut out, "ImageId", image);
        }
        put_text(&mut out, "LocalGroupId", &self.local_group_id);
        put_text(&mut out, "LocalUserId", &self.local_user_id);
        put_text(&mut out, "MachineName", &self.machine_name);
        num(&mut out, "Memory", &self.memory);
        num(&mut out, "PublicIPCount", &self.public_ip_count);
        put_text(&mut out, "SiteName", &self.site_name);
        num(&mut out, "StartTime", &self.start_time.unix_seconds());
        put_text(&mut out, "Status", self.status.as_str());
        if let Some(d) = self.suspend_duration {
            num(&mut out, "SuspendDuration", &d);
        }
        let _ = writeln!(out, "VMUUID: {}", self.vm_uuid.hyphenated());
        if let Some(d) = wall {
            num(&mut out, "WallDuration", &d);
        }
        out.pop(); // the last newline: records are joined by the message framing
        out
    }
}

/// `Key: value\n` for a text value, through the cloud text rule (printable ASCII). A value
/// holding "%%" would split the record in two at the APEL loader (it splits
/// the message on "%%" before anything else), so runs of `%` become one.
fn put_text(out: &mut String, key: &str, value: &str) {
    out.push_str(key);
    out.push_str(": ");
    let value = ascii_text(value);
    if value.contains("%%") {
        let mut last_percent = false;
        for c in value.chars() {
            if !(c == '%' && last_percent) {
                out.push(c);
            }
            last_percent = c == '%';
        }
    } else {
        out.push_str(&value);
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::BenchmarkValue;

    fn record() -> CloudRecord {
        CloudRecord {
            vm_uuid: Uuid::parse_str("0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0").unwrap(),
            site_name: "SITE".into(),
            compute_service: "svc".into(),
            machine_name: "vm".into(),
            local_user_id: "u".into(),
            local_group_id: "g".into(),
            global_user_name: None,
            fqan: "vo".into(),
            status: Status::Started,
            start_time: Timestamp::from_unix(1000),
            end_time: None,
            suspend_duration: None,
            wall_duration: None,
            cpu_duration: None,
            cpu_count: 2,
            memory: 512,
            disk: 1,
            public_ip_count: 0,
            image_id: None,
            benchmark: None,
        }
    }

    #[test]
    fn nova_statuses_map_like_caso() {
        for (nova, s) in [
            ("ACTIVE", Status::Started),
            ("build", Status::Started),
            ("SHUTOFF", Status::Completed),
            ("DELETED", Status::Completed),
            ("ERROR", Status::Error),
            ("PAUSED", Status::Paused),
            ("SUSPENDED", Status::Suspended),
            ("stopped", Status::Stopped),
            ("SHELVED_OFFLOADED", Status::Unknown),
            ("", Status::Unknown),
        ] {
            assert_eq!(Status::from_nova(nova), s, "{nova}");
        }
    }

    #[test]
    fn running_server_without_wall_omits_durations() {
        let text = record().render();
        assert!(!text.contains("WallDuration"), "{text}");
        assert!(text.contains("EndTime: 0\n"), "{text}");
        assert!(text.starts_with("CloudComputeService: svc\nCloudType: "));
    }

    #[test]
    fn durations_derive_from_end_and_zero_becomes_one() {
        let mut r = record();
        r.end_time = Some(Timestamp::from_unix(1000));
        let text = r.render();
        assert!(text.contains("WallDuration: 1"), "{text}");
        assert!(text.contains("CpuDuration: 1"), "{text}");
        r.end_time = Some(Timestamp::from_unix(1100));
        let text = r.render();
        assert!(text.contains("WallDuration: 100"), "{text}");
        assert!(text.contains("CpuDuration: 200"), "{text}");
        r.end_time = Some(Timestamp::from_unix(900));
        assert_eq!(r.effective_wall_duration(), Some(0));
    }

    #[test]
    fn values_cannot_break_the_record_format() {
        let mut r = record();
        r.machine_name = "a\nVMUUID: x %%%\tb é".into();
        r.benchmark = Some(Benchmark {
            kind: "HEPSPEC".into(),
            value: BenchmarkValue::new(10.0).unwrap(),
        });
        let text = r.render();
        assert!(text.contains("\nMachineName: aVMUUID: x %b \n"), "{text}");
        assert!(text.starts_with("Benchmark: 10.0\nBenchmarkType: HEPSPEC\n"));
        assert!(text.is_ascii());
    }
}
