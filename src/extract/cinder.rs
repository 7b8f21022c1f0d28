//! Cinder: one StAR storage record per volume, as cASO 5.2.2 builds them
//! (`caso/extract/openstack/cinder.py`), with its defects fixed: every
//! volume is listed (no `changes-since`, defect 9) and filtered here; a
//! volume created after `to` is left out and EndTime is `to` (defect 8); a
//! volume without a name is reported like any other (defect 6).

use std::collections::HashMap;

use uuid::Uuid;

use super::{Failure, RecordContext, RunShared};
use crate::openstack::Target;
use crate::openstack::cinder::{self, Volume};
use crate::record::{Record, StorageRecord};

/// The project's storage records, one per volume created by `to`:
/// StartTime = max(created, from), EndTime = to, measured at `ctx.now`.
pub fn build_records(
    volumes: &[Volume],
    user_names: &HashMap<String, String>,
    ctx: &RecordContext,
) -> Result<Vec<Record>, Failure> {
    let (from, to) = (ctx.period.from, ctx.period.to);
    let mut out = Vec::new();
    for v in volumes {
        let object = || format!("cinder volume {:?}", v.id);
        ctx.check_time(&object, "created_at", v.created_at)?;
        if v.created_at > to {
            continue;
        }
        if v.project_id.as_deref().is_some_and(|p| p != ctx.project_id) {
            // Only an admin sees the owner; never count another project's.
            continue;
        }
        let volume_id = Uuid::parse_str(&v.id).map_err(|e| {
            ctx.failure(
                format!("cinder volume {:?}", v.id),
                format!("its id is not a UUID: {e}"),
            )
        })?;
        let capacity_gib = u32::try_from(v.size).map_err(|_| {
            ctx.failure(
                format!("cinder volume {:?}", v.id),
                format!("size {} GiB is out of range", v.size),
            )
        })?;
        let user = v.user_id.clone().unwrap_or_default();
        out.push(Record::Storage(StorageRecord {
            volume_id,
            site_name: ctx.site_name.clone(),
            compute_service: ctx.service_name.clone(),
            user_identity: user_names.get(&user).cloned(),
            local_user: user,
            local_group: ctx.project_id.clone(),
            group: ctx.vo.clone(),
            create_time: ctx.now,
            start_time: v.created_at.max(from),
            end_time: to,
            capacity_gib,
        }));
    }
    Ok(out)
}

/// Lists every volume of the project, reads its owners' names, builds the
/// records.
pub async fn extract(
    shared: &RunShared,
    target: &Target,
    ctx: &RecordContext,
) -> Result<Vec<Record>, Failure> {
    let volumes = cinder::list_volumes(&shared.session, target)
        .await
        .map_err(|e| ctx.failure("cinder volumes", e.to_string()))?;
    let names = shared
        .user_names(volumes.iter().filter_map(|v| v.user_id.as_deref()))
        .await;
    build_records(&volumes, &names, ctx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::fixtures::{ctx_at, t};
    use serde_json::json;

    fn ctx() -> RecordContext {
        ctx_at("2026-12-02T00:00:00Z")
    }

    fn volume(n: u8, name: Option<&str>, created: &str, project: Option<&str>) -> Volume {
        serde_json::from_value(json!({
            "id": format!("00000000-0000-4000-8000-0000000000{n:02x}"), "name": name,
            "status": "available", "size": 10, "created_at": created, "user_id": "u1",
            "os-vol-tenant-attr:tenant_id": project, "attachments": []
        }))
        .unwrap()
    }

    fn storage(records: &[Record]) -> Vec<&StorageRecord> {
        records
            .iter()
            .map(|r| match r {
                Record::Storage(s) => s,
                other => panic!("{other:?}"),
            })
            .collect()
    }

    /// Defects 6 and 8: a volume without a name is reported; a volume
    /// created after `to` is not; EndTime is `to`, not the run's clock.
    #[test]
    fn volumes_by_time_with_or_without_names() {
        let volumes = [
            volume(1, None, "2026-10-01T00:00:00", None),
            volume(2, Some("data"), "2026-11-10T00:00:00", Some("p1")),
            volume(3, Some("late"), "2026-11-30T00:00:01", None),
            volume(4, Some("theirs"), "2026-10-01T00:00:00", Some("p2")),
        ];
        let mut names = HashMap::new();
        names.insert("u1".to_string(), "alice".to_string());
        let records = build_records(&volumes, &names, &ctx()).unwrap();
        let s = storage(&records);
        assert_eq!(s.len(), 2, "{records:?}");
        assert_eq!(
            s[0].start_time,
            t("2026-11-01T00:00:00Z"),
            "max(created, from)"
        );
        assert_eq!(s[1].start_time, t("2026-11-10T00:00:00Z"));
        for r in &s {
            assert_eq!(r.end_time, t("2026-11-30T00:00:00Z"));
            assert_eq!(r.create_time, t("2026-12-02T00:00:00Z"));
            assert_eq!(r.capacity_gib, 10);
            assert_eq!(r.local_user, "u1");
            assert_eq!(r.user_identity.as_deref(), Some("alice"));
            assert_eq!(r.local_group, "p1");
            assert_eq!(r.group, "vo.example");
        }
    }

    #[test]
    fn a_creation_time_out_of_range_names_the_volume() {
        for created in ["0001-01-01T00:00:00Z", "3000-01-01T00:00:00Z"] {
            let v = volume(1, None, created, None);
            let f = build_records(&[v], &HashMap::new(), &ctx()).unwrap_err();
            assert_eq!(
                f.object,
                "cinder volume \"00000000-0000-4000-8000-000000000001\""
            );
            assert!(f.cause.starts_with("created_at "), "{}", f.cause);
        }
    }

    #[test]
    fn a_bad_volume_id_names_the_volume() {
        let mut v = volume(1, None, "2026-10-01T00:00:00", None);
        v.id = "v-1".into();
        let f = build_records(&[v], &HashMap::new(), &ctx()).unwrap_err();
        assert_eq!(f.object, "cinder volume \"v-1\"");
    }
}
