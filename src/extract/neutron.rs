//! Neutron: public IP records, one per IP version with the number of the
//! project's floating IPs created by `to`.
//!
//! cASO 5.2.2 counted every floating IP under user `None` and keyed its
//! records by user only, so the IPv6 record overwrote the IPv4 one (defect
//! 1), and it asked Neutron for every floating IP of the cloud (defect 2).
//! A floating IP belongs to a project, not to a user (Neutron records no
//! user), so IPs are counted per owner project and IP version, and only
//! the project's own (the request filters by project, and this code drops
//! any other owner a server might return anyway).

use std::collections::BTreeMap;
use std::net::IpAddr;

use uuid::Uuid;

use super::{Failure, RecordContext, RunShared};
use crate::openstack::Target;
use crate::openstack::neutron::{self, FloatingIp};
use crate::record::{IpRecord, IpVersion, Record};

/// One record per IP version in use, measured at `ctx.now`, each with a
/// fresh uuid4.
pub fn build_records(fips: &[FloatingIp], ctx: &RecordContext) -> Vec<Record> {
    let mut counts: BTreeMap<u8, (IpVersion, u64)> = BTreeMap::new();
    for f in fips {
        if f.project_id.as_deref().is_some_and(|p| p != ctx.project_id) {
            continue;
        }
        if f.created_at.is_some_and(|t| t > ctx.period.to) {
            continue;
        }
        let version = match f.floating_ip_address.parse::<IpAddr>() {
            Ok(IpAddr::V4(_)) => IpVersion::V4,
            Ok(IpAddr::V6(_)) => IpVersion::V6,
            Err(_) => {
                tracing::warn!(
                    floating_ip = %f.id,
                    "floating IP address {:?} is not an IP address: not counted",
                    f.floating_ip_address
                );
                continue;
            }
        };
        counts.entry(version.number()).or_insert((version, 0)).1 += 1;
    }
    counts
        .into_values()
        .map(|(ip_version, ip_count)| {
            Record::Ip(IpRecord {
                uuid: Uuid::new_v4(),
                site_name: ctx.site_name.clone(),
                compute_service: ctx.service_name.clone(),
                local_user: None,
                global_user_name: None,
                local_group: ctx.project_id.clone(),
                fqan: ctx.vo.clone(),
                ip_version,
                ip_count,
                measurement_time: ctx.now,
            })
        })
        .collect()
}

pub async fn extract(
    shared: &RunShared,
    target: &Target,
    ctx: &RecordContext,
) -> Result<Vec<Record>, Failure> {
    let fips = neutron::list_floating_ips(&shared.session, target)
        .await
        .map_err(|e| ctx.failure("neutron floating IPs", e.to_string()))?;
    Ok(build_records(&fips, ctx))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::fixtures::{ctx_at, t};
    use serde_json::json;

    fn ctx() -> RecordContext {
        ctx_at("2026-12-02T00:00:00Z")
    }

    fn fip(addr: &str, project: &str, created: &str) -> FloatingIp {
        serde_json::from_value(json!({"id": addr, "floating_ip_address": addr,
            "project_id": project, "created_at": created}))
        .unwrap()
    }

    fn ips(records: &[Record]) -> Vec<(u8, u64)> {
        records
            .iter()
            .map(|r| match r {
                Record::Ip(i) => (i.ip_version.number(), i.ip_count),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    /// Defects 1 and 2: both IP versions get a record (cASO kept one per
    /// user, the IPv6 one overwriting IPv4), and another project's IPs are
    /// never counted.
    #[test]
    fn one_record_per_version_for_the_project_only() {
        let fips = [
            fip("192.0.2.1", "p1", "2026-11-01T00:00:00Z"),
            fip("192.0.2.2", "p1", "2026-01-01T00:00:00Z"),
            fip("2001:db8::1", "p1", "2026-11-29T00:00:00Z"),
            fip("192.0.2.3", "p2", "2026-11-01T00:00:00Z"),
            fip("192.0.2.4", "p1", "2026-11-30T00:00:01Z"),
        ];
        let records = build_records(&fips, &ctx());
        assert_eq!(ips(&records), [(4, 2), (6, 1)]);
        for r in &records {
            let Record::Ip(i) = r else { unreachable!() };
            assert_eq!(i.local_group, "p1");
            assert_eq!(i.fqan, "vo.example");
            assert_eq!(i.measurement_time, t("2026-12-02T00:00:00Z"));
            assert_eq!(i.local_user, None);
        }
        let Record::Ip(a) = &records[0] else {
            unreachable!()
        };
        let Record::Ip(b) = &records[1] else {
            unreachable!()
        };
        assert_ne!(a.uuid, b.uuid);
        assert!(build_records(&[], &ctx()).is_empty());
    }
}
