//! Nova: cloud records (one per server) and accelerator records (one per
//! server per calendar month), with cASO 5.2.2's semantics
//! (`caso/extract/openstack/nova.py`) and its defects fixed.
//!
//! [`fetch`] reads what the records need; [`build_records`] is a pure
//! function of that data, the period and the site, so the semantics are
//! tested without HTTP.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use futures_util::future::join_all;
use uuid::Uuid;

use super::{Failure, RecordContext, RunShared};
use crate::openstack::nova::{self, Flavor, Server, ServerFlavor, ServerUsage};
use crate::openstack::{OpenStackError, Target, glance};
use crate::record::{
    AcceleratorRecord, Benchmark, BenchmarkValue, CloudRecord, Record, Status, YearMonth,
};
use crate::time::Timestamp;

/// Flavor extra-spec keys (`[benchmark]`, `[accelerator]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlavorKeys {
    pub benchmark_type: String,
    pub benchmark_value: String,
    pub accelerator_type: String,
    pub accelerator_vendor: String,
    pub accelerator_model: String,
    pub accelerator_number: String,
}

impl Default for FlavorKeys {
    /// cASO's defaults.
    fn default() -> Self {
        FlavorKeys {
            benchmark_type: "accounting:benchmark_type".into(),
            benchmark_value: "accounting:benchmark_value".into(),
            accelerator_type: "Accelerator:Type".into(),
            accelerator_vendor: "Accelerator:Vendor".into(),
            accelerator_model: "Accelerator:Model".into(),
            accelerator_number: "Accelerator:Number".into(),
        }
    }
}

/// Everything the records of one project are built from.
#[derive(Clone, Debug, Default)]
pub struct NovaData {
    /// `GET /servers/detail?changes-since=from`.
    pub servers: Vec<Server>,
    /// `os-simple-tenant-usage` for the period.
    pub usages: Vec<ServerUsage>,
    /// Servers in the usage report but not in `servers` (unchanged since
    /// `from`); one the API no longer returns is simply absent.
    pub usage_servers: Vec<Server>,
    /// Flavors referenced by id (before microversion 2.47) that Nova still
    /// knows.
    pub flavors: HashMap<String, Arc<Flavor>>,
    /// Image id -> `vmcatcher_event_ad_mpuri`, for images that have one.
    pub image_mpuris: HashMap<String, String>,
    /// Keystone user id -> user name, for the users that could be read.
    pub user_names: HashMap<String, String>,
}

/// What a server's flavor says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct FlavorSpec {
    vcpus: u32,
    ram: u64,
    /// Root disk plus ephemeral disk.
    disk: u64,
    extra_specs: BTreeMap<String, String>,
    /// For log lines.
    name: String,
}

fn flavor_spec(server: &Server, flavors: &HashMap<String, Arc<Flavor>>) -> Option<FlavorSpec> {
    match &server.flavor {
        ServerFlavor::Embedded(f) => Some(FlavorSpec {
            vcpus: f.vcpus,
            ram: f.ram,
            disk: f.disk.saturating_add(f.ephemeral),
            extra_specs: f.extra_specs.clone().unwrap_or_default(),
            name: f.original_name.clone().unwrap_or_default(),
        }),
        ServerFlavor::Ref { id } => flavors.get(id).map(|f| FlavorSpec {
            vcpus: f.vcpus,
            ram: f.ram,
            disk: f.disk.saturating_add(f.ephemeral),
            extra_specs: f.extra_specs.clone(),
            name: f.name.clone(),
        }),
    }
}

/// When the server stopped counting, as cASO decides, except that a server
/// still being built (never launched, status still "started") has not ended
/// (cASO defect 11 reported it `started` with an EndTime).
pub fn server_end(server: &Server) -> Option<Timestamp> {
    if let Some(t) = server.terminated_at {
        return Some(t);
    }
    if server.launched_at.is_none() {
        return match Status::from_nova(&server.status) {
            Status::Started => None,
            _ => Some(server.created),
        };
    }
    if server.status.eq_ignore_ascii_case("deleted") {
        // Stuck deleting without terminated_at: else it would never end.
        return server.updated;
    }
    None
}

fn benchmark(spec: &FlavorSpec, keys: &FlavorKeys) -> Option<Benchmark> {
    let kind = spec.extra_specs.get(&keys.benchmark_type);
    let value = spec.extra_specs.get(&keys.benchmark_value);
    match (kind, value) {
        (Some(kind), Some(value)) => match BenchmarkValue::parse(value) {
            Ok(value) => Some(Benchmark {
                kind: kind.clone(),
                value,
            }),
            Err(e) => {
                tracing::warn!(flavor = %spec.name, "flavor benchmark ignored: {e}");
                None
            }
        },
        (None, None) => None,
        _ => {
            tracing::warn!(
                flavor = %spec.name,
                "flavor has only one of {} and {}: no benchmark in its records",
                keys.benchmark_type,
                keys.benchmark_value
            );
            None
        }
    }
}

fn cloud_record(
    server: &Server,
    vm_uuid: Uuid,
    spec: Option<&FlavorSpec>,
    data: &NovaData,
    ctx: &RecordContext,
    keys: &FlavorKeys,
) -> CloudRecord {
    let image_id = server.image.as_ref().map(|id| {
        data.image_mpuris
            .get(id)
            .cloned()
            .unwrap_or_else(|| id.clone())
    });
    CloudRecord {
        vm_uuid,
        site_name: ctx.site_name.clone(),
        compute_service: ctx.service_name.clone(),
        machine_name: server.name.clone(),
        local_user_id: server.user_id.clone(),
        local_group_id: server.tenant_id.clone(),
        global_user_name: data.user_names.get(&server.user_id).cloned(),
        fqan: ctx.vo.clone(),
        status: Status::from_nova(&server.status),
        start_time: server.created,
        end_time: None,
        suspend_duration: None,
        wall_duration: None,
        cpu_duration: None,
        cpu_count: spec.map_or(0, |s| s.vcpus),
        memory: spec.map_or(0, |s| s.ram),
        disk: spec.map_or(0, |s| s.disk),
        public_ip_count: u32::try_from(server.floating_ip_count()).unwrap_or(u32::MAX),
        image_id,
        benchmark: spec.and_then(|s| benchmark(s, keys)),
    }
}

/// Ends the record as of `to`: a server still running at `to` (or ended
/// after it, when a past period is extracted again) has no EndTime, a wall
/// time up to `to`, and is `started` rather than `completed`.
fn settle(record: &mut CloudRecord, end: Option<Timestamp>, to: Timestamp) {
    match end {
        Some(end) if end <= to => record.end_time = Some(end),
        _ => {
            record.end_time = None;
            record.wall_duration = Some(to.seconds_since(record.start_time).max(0) as u64);
            if record.status == Status::Completed {
                record.status = Status::Started;
            }
        }
    }
    // CpuDuration stays derived (wall * CpuCount) so that it uses the vCPU
    // count the usage report corrects.
}

/// Accelerator records of one server: one per calendar month from
/// max(start, from) to min(end, to), each counting the seconds of that
/// month the server existed up to `to` (cumulative within the month, as the
/// APEL repository replaces the month's record).
fn accelerator_records(
    record: &CloudRecord,
    end: Option<Timestamp>,
    spec: &FlavorSpec,
    ctx: &RecordContext,
    keys: &FlavorKeys,
) -> Vec<AcceleratorRecord> {
    let get = |k: &String| spec.extra_specs.get(k).filter(|v| !v.trim().is_empty());
    let (Some(kind), Some(vendor), Some(model), Some(number)) = (
        get(&keys.accelerator_type),
        get(&keys.accelerator_vendor),
        get(&keys.accelerator_model),
        get(&keys.accelerator_number),
    ) else {
        return Vec::new();
    };
    let count = match number.trim().parse::<u32>() {
        Ok(n) => n,
        Err(_) => {
            tracing::warn!(
                flavor = %spec.name,
                "flavor {} = {number:?} is not a count: no accelerator records",
                keys.accelerator_number
            );
            return Vec::new();
        }
    };
    let (from, to) = (ctx.period.from, ctx.period.to);
    let start = record.start_time;
    let first = YearMonth::of(start.max(from));
    let last = YearMonth::of(end.map_or(to, |e| e.min(to)));
    let mut out = Vec::new();
    let mut month = first;
    while month <= last {
        let month_start = month.start();
        let mut month_end = month.next().start().min(to);
        if let Some(e) = end {
            month_end = month_end.min(e);
        }
        let seconds = month_end.seconds_since(month_start.max(start));
        if seconds >= 0 {
            out.push(AcceleratorRecord {
                associated_record: record.vm_uuid,
                site_name: ctx.site_name.clone(),
                compute_service: ctx.service_name.clone(),
                global_user_name: record.global_user_name.clone(),
                fqan: ctx.vo.clone(),
                count,
                available_duration: seconds as u64,
                active_duration: None,
                measurement: month,
                accelerator_type: kind.clone(),
                model: format!("{vendor} {model}"),
                cores: None,
                benchmark: None,
            });
        }
        month = month.next();
    }
    out
}

/// The server's start and end are usage times (see [`RecordContext::check_time`]).
fn check_times(
    server: &Server,
    end: Option<Timestamp>,
    ctx: &RecordContext,
) -> Result<(), Failure> {
    let object = || format!("nova server {:?}", server.id);
    ctx.check_time(&object, "created", server.created)?;
    match end {
        Some(t) => ctx.check_time(&object, "end (terminated_at, updated or usage ended_at)", t),
        None => Ok(()),
    }
}

pub(super) fn vm_uuid(server: &Server, ctx: &RecordContext) -> Result<Uuid, Failure> {
    Uuid::parse_str(&server.id).map_err(|e| {
        ctx.failure(
            format!("nova server {:?}", server.id),
            format!("its id is not a UUID: {e}"),
        )
    })
}

/// The project's cloud and accelerator records, in no particular order.
///
/// 1. Servers changed since `from`: drop those started after `to` or ended
///    before `from`; build a record for the others.
/// 2. Servers in the usage report that step 1 did not record: built the
///    same way, ending at the report's `ended_at` when it has one.
/// 3. Every server in the usage report takes its vCPUs, memory and disk
///    from the report.
pub fn build_records(
    data: &NovaData,
    ctx: &RecordContext,
    keys: &FlavorKeys,
) -> Result<Vec<Record>, Failure> {
    let (from, to) = (ctx.period.from, ctx.period.to);
    let mut clouds: BTreeMap<Uuid, CloudRecord> = BTreeMap::new();
    // Keyed like the records, so a server listed twice (pages shifting
    // under us) counts once.
    let mut accelerators: BTreeMap<(Uuid, YearMonth), AcceleratorRecord> = BTreeMap::new();
    let mut add = |server: &Server,
                   end: Option<Timestamp>,
                   clouds: &mut BTreeMap<Uuid, CloudRecord>|
     -> Result<(), Failure> {
        let uuid = vm_uuid(server, ctx)?;
        let spec = flavor_spec(server, &data.flavors);
        if spec.is_none() {
            tracing::debug!(server = %server.id, "flavor unknown to Nova: resources from the usage report only");
        }
        let mut record = cloud_record(server, uuid, spec.as_ref(), data, ctx, keys);
        if let Some(spec) = &spec {
            accelerators.retain(|(id, _), _| *id != uuid);
            for a in accelerator_records(&record, end, spec, ctx, keys) {
                accelerators.insert((uuid, a.measurement), a);
            }
        }
        settle(&mut record, end, to);
        clouds.insert(uuid, record);
        Ok(())
    };

    for server in &data.servers {
        if server.tenant_id != ctx.project_id {
            // Another project's server (an admin listing gone wrong).
            continue;
        }
        let end = server_end(server);
        check_times(server, end, ctx)?;
        if server.created > to || end.is_some_and(|e| e < from) {
            continue;
        }
        add(server, end, &mut clouds)?;
    }

    let listed: HashMap<&str, &Server> = data
        .servers
        .iter()
        .chain(&data.usage_servers)
        .map(|s| (s.id.as_str(), s))
        .collect();
    let mut seen = HashSet::new();
    for usage in &data.usages {
        if !seen.insert(usage.instance_id.as_str()) {
            continue;
        }
        let Ok(uuid) = Uuid::parse_str(&usage.instance_id) else {
            tracing::warn!(server = %usage.instance_id, "usage report names a server whose id is not a UUID: skipped");
            continue;
        };
        if !clouds.contains_key(&uuid) {
            let Some(server) = listed.get(usage.instance_id.as_str()) else {
                tracing::warn!(
                    server = %usage.instance_id,
                    "server in the usage report cannot be read from the Nova API (see https://caso.readthedocs.io/en/stable/troubleshooting.html#cannot-find-vm-in-api): skipped"
                );
                continue;
            };
            if server.tenant_id != ctx.project_id {
                continue;
            }
            let end = usage.ended_at.or_else(|| server_end(server));
            check_times(server, end, ctx)?;
            if server.created > to || end.is_some_and(|e| e < from) {
                continue;
            }
            add(server, end, &mut clouds)?;
        }
        if let Some(record) = clouds.get_mut(&uuid) {
            record.memory = usage.memory_mb;
            record.cpu_count = usage.vcpus;
            record.disk = usage.local_gb;
        }
    }

    let mut records: Vec<Record> = clouds.into_values().map(Record::from).collect();
    records.extend(accelerators.into_values().map(Record::from));
    Ok(records)
}

/// Reads everything [`build_records`] needs for one project. Flavors,
/// images and user names go through the run's shared caches.
pub async fn fetch(
    shared: &RunShared,
    target: &Target,
    ctx: &RecordContext,
) -> Result<NovaData, Failure> {
    let session = &shared.session;
    let (from, to) = (ctx.period.from, ctx.period.to);
    let os = |object: &str| {
        let object = object.to_string();
        move |e: OpenStackError| ctx.failure(object, e.to_string())
    };
    // Independent: all at once (errors taken in this order, whatever
    // finishes first). Servers in the report but not changed since `from`
    // (running and unchanged: nearly always some) are found in the listing
    // of the current servers (cASO read them one by one: part of defect
    // 12), asked for at the same time so it costs no extra round trip.
    let (servers, usages, current) = tokio::join!(
        nova::list_servers(session, target, Some(from)),
        nova::simple_tenant_usage(session, target, from, to),
        nova::list_servers(session, target, None)
    );
    let servers = servers.map_err(os("nova servers"))?;
    let usages = usages.map_err(os("nova usage report"))?;
    let current = current.map_err(os("nova servers"))?;

    let known: HashSet<&str> = servers.iter().map(|s| s.id.as_str()).collect();
    let mut missing: Vec<&str> = usages
        .iter()
        .map(|u| u.instance_id.as_str())
        .filter(|id| !known.contains(id))
        .collect();
    missing.sort_unstable();
    missing.dedup();
    let wanted: HashSet<&str> = missing.iter().copied().collect();
    let mut usage_servers: Vec<Server> = current
        .into_iter()
        .filter(|s| wanted.contains(s.id.as_str()))
        .collect();
    // One neither listing has (deleted long ago, another page's race) is
    // read by id.
    let found: HashSet<String> = usage_servers.iter().map(|s| s.id.clone()).collect();
    for id in missing.into_iter().filter(|id| !found.contains(*id)) {
        match nova::get_server(session, target, id).await {
            Ok(s) => usage_servers.push(s),
            Err(e @ (OpenStackError::NotFound { .. } | OpenStackError::Forbidden { .. })) => {
                tracing::debug!(server = id, "{e}");
            }
            Err(e) => return Err(ctx.failure(format!("nova server {id:?}"), e.to_string())),
        }
    }

    let all_servers = || servers.iter().chain(&usage_servers);
    let mut flavors = HashMap::new();
    let mut flavor_ids: Vec<&str> = all_servers()
        .filter_map(|s| match &s.flavor {
            ServerFlavor::Ref { id } => Some(id.as_str()),
            ServerFlavor::Embedded(_) => None,
        })
        .collect();
    flavor_ids.sort_unstable();
    flavor_ids.dedup();
    let mut image_ids: Vec<&str> = all_servers().filter_map(|s| s.image.as_deref()).collect();
    image_ids.sort_unstable();
    image_ids.dedup();
    // Every lookup at once (each is one request per run at most, through
    // the shared caches); results are taken in id order.
    let (flavor_results, image_results, user_names) = tokio::join!(
        join_all(flavor_ids.iter().map(|id| nova::cached_flavor(
            &shared.flavors,
            session,
            &target.scope,
            id
        ))),
        join_all(image_ids.iter().map(|id| glance::cached_image(
            &shared.images,
            session,
            &target.scope,
            id
        ))),
        shared.user_names(all_servers().map(|s| s.user_id.as_str()))
    );
    for (id, result) in flavor_ids.into_iter().zip(flavor_results) {
        match result {
            Ok(Some(f)) => {
                flavors.insert(id.to_string(), f);
            }
            Ok(None) => {
                tracing::debug!(flavor = id, "flavor no longer exists")
            }
            Err(e) => return Err(ctx.failure(format!("nova flavor {id:?}"), e.to_string())),
        }
    }

    let mut image_mpuris = HashMap::new();
    for (id, result) in image_ids.into_iter().zip(image_results) {
        match result {
            Ok(Some(image)) => {
                if let Some(mpuri) = image.property("vmcatcher_event_ad_mpuri") {
                    image_mpuris.insert(id.to_string(), mpuri.to_string());
                }
            }
            Ok(None) => {}
            // An image this project may not read keeps its plain id.
            Err(e @ OpenStackError::Forbidden { .. }) => {
                tracing::debug!(image = id, "{e}")
            }
            Err(e) => return Err(ctx.failure(format!("glance image {id:?}"), e.to_string())),
        }
    }

    Ok(NovaData {
        servers,
        usages,
        usage_servers,
        flavors,
        image_mpuris,
        user_names,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::fixtures::{TO, ctx_at, t};
    use crate::openstack::nova::EmbeddedFlavor;
    use serde_json::json;

    fn ctx() -> RecordContext {
        ctx_at("2026-11-30T00:00:05Z")
    }

    fn uuid(n: u8) -> String {
        format!("00000000-0000-4000-8000-0000000000{n:02x}")
    }

    /// A launched, running server with an embedded 2-vCPU flavor.
    fn server(n: u8, created: &str) -> Server {
        serde_json::from_value(json!({
            "id": uuid(n), "name": format!("vm{n}"), "status": "ACTIVE",
            "tenant_id": "p1", "user_id": "u1",
            "created": created, "updated": created,
            "OS-SRV-USG:launched_at": created, "OS-SRV-USG:terminated_at": null,
            "image": {"id": "img1"},
            "flavor": {"vcpus": 2, "ram": 2048, "disk": 20, "ephemeral": 5,
                       "original_name": "m1", "extra_specs": {}},
            "addresses": {"net": [
                {"addr": "10.0.0.1", "version": 4, "OS-EXT-IPS:type": "fixed"},
                {"addr": "192.0.2.1", "version": 4, "OS-EXT-IPS:type": "floating"},
                {"addr": "2001:db8::1", "version": 6, "OS-EXT-IPS:type": "floating"}]}
        }))
        .unwrap()
    }

    fn usage(n: u8, vcpus: u32, ended: Option<&str>) -> ServerUsage {
        serde_json::from_value(json!({
            "instance_id": uuid(n), "vcpus": vcpus, "memory_mb": 4096, "local_gb": 40,
            "started_at": "2026-10-01T00:00:00", "ended_at": ended,
        }))
        .unwrap()
    }

    fn clouds(records: &[Record]) -> Vec<&CloudRecord> {
        records
            .iter()
            .filter_map(|r| match r {
                Record::Cloud(c) => Some(c),
                _ => None,
            })
            .collect()
    }

    fn build(data: &NovaData) -> Vec<Record> {
        build_records(data, &ctx(), &FlavorKeys::default()).unwrap()
    }

    fn one(data: &NovaData) -> CloudRecord {
        let records = build(data);
        let c = clouds(&records);
        assert_eq!(c.len(), 1, "{records:?}");
        c[0].clone()
    }

    #[test]
    fn running_server_runs_until_to() {
        let mut data = NovaData {
            servers: vec![server(1, "2026-11-10T00:00:00Z")],
            ..NovaData::default()
        };
        data.user_names.insert("u1".into(), "alice".into());
        let r = one(&data);
        assert_eq!(r.vm_uuid.to_string(), uuid(1));
        assert_eq!(r.status, Status::Started);
        assert_eq!(r.end_time, None);
        let wall = t(TO).seconds_since(t("2026-11-10T00:00:00Z")) as u64;
        assert_eq!(r.wall_duration, Some(wall));
        assert_eq!(r.effective_cpu_duration(), Some(wall * 2));
        assert_eq!((r.cpu_count, r.memory, r.disk), (2, 2048, 25));
        assert_eq!(r.public_ip_count, 2);
        assert_eq!(r.global_user_name.as_deref(), Some("alice"));
        assert_eq!(r.local_group_id, "p1");
        assert_eq!(r.fqan, "vo.example");
        assert_eq!(r.image_id.as_deref(), Some("img1"));
        assert_eq!(r.benchmark, None);
    }

    #[test]
    fn ended_servers_and_the_period_filter() {
        let mut ended = server(1, "2026-10-01T00:00:00Z");
        ended.status = "DELETED".into();
        ended.terminated_at = Some(t("2026-11-05T00:00:00Z"));
        let mut before = server(2, "2026-10-01T00:00:00Z");
        before.status = "DELETED".into();
        before.terminated_at = Some(t("2026-10-31T23:59:59Z"));
        let after = server(3, "2026-11-30T00:00:01Z");
        let mut later = server(4, "2026-11-02T00:00:00Z");
        later.status = "DELETED".into();
        later.terminated_at = Some(t("2026-12-01T00:00:00Z"));
        let mut stuck = server(5, "2026-11-03T00:00:00Z");
        stuck.status = "DELETED".into();
        stuck.updated = Some(t("2026-11-04T00:00:00Z"));
        let records = build(&NovaData {
            servers: vec![ended, before, after, later, stuck],
            ..NovaData::default()
        });
        let c = clouds(&records);
        let ids: Vec<String> = c.iter().map(|r| r.vm_uuid.to_string()).collect();
        assert_eq!(ids, [uuid(1), uuid(4), uuid(5)]);
        assert_eq!(c[0].status, Status::Completed);
        assert_eq!(c[0].end_time, Some(t("2026-11-05T00:00:00Z")));
        assert_eq!(c[0].wall_duration, None);
        assert_eq!(c[0].effective_wall_duration(), Some(35 * 86400));
        // Ended after `to`: reported as running up to `to`.
        assert_eq!(c[1].status, Status::Started);
        assert_eq!(c[1].end_time, None);
        assert_eq!(c[1].wall_duration, Some(28 * 86400));
        // Deleted without terminated_at: ends when last updated.
        assert_eq!(c[2].end_time, Some(t("2026-11-04T00:00:00Z")));
    }

    /// Defect 11: cASO reported a never-launched BUILD server `started`
    /// with an EndTime (its creation time).
    #[test]
    fn never_launched_build_server_has_not_ended() {
        let mut building = server(1, "2026-11-29T23:00:00Z");
        building.status = "BUILD".into();
        building.launched_at = None;
        let r = one(&NovaData {
            servers: vec![building],
            ..NovaData::default()
        });
        assert_eq!(r.status, Status::Started);
        assert_eq!(r.end_time, None, "a started server has no EndTime");
        assert_eq!(r.wall_duration, Some(3600));

        let mut failed = server(2, "2026-11-29T23:00:00Z");
        failed.status = "ERROR".into();
        failed.launched_at = None;
        let r = one(&NovaData {
            servers: vec![failed],
            ..NovaData::default()
        });
        assert_eq!(r.status, Status::Error);
        assert_eq!(r.end_time, Some(t("2026-11-29T23:00:00Z")));
    }

    /// The usage report adds servers the changes-since listing missed and
    /// corrects every server's resources; each server gets its own wall
    /// time (cASO reused the previous server's `wall` for an ended one).
    #[test]
    fn usage_report_adds_and_corrects() {
        let listed = server(1, "2026-11-10T00:00:00Z");
        let running = server(2, "2026-10-01T00:00:00Z");
        let mut ended = server(3, "2026-10-15T00:00:00Z");
        ended.status = "DELETED".into();
        let data = NovaData {
            servers: vec![listed],
            usages: vec![
                usage(1, 4, None),
                usage(2, 1, None),
                usage(3, 8, Some("2026-11-03T00:00:00")),
                usage(9, 1, None), // gone from the API: skipped
            ],
            usage_servers: vec![running, ended],
            ..NovaData::default()
        };
        let records = build(&data);
        let c = clouds(&records);
        assert_eq!(c.len(), 3);
        assert_eq!((c[0].cpu_count, c[0].memory, c[0].disk), (4, 4096, 40));
        let wall1 = t(TO).seconds_since(t("2026-11-10T00:00:00Z")) as u64;
        assert_eq!(c[0].effective_cpu_duration(), Some(wall1 * 4));
        let wall2 = t(TO).seconds_since(t("2026-10-01T00:00:00Z")) as u64;
        assert_eq!(c[1].wall_duration, Some(wall2));
        assert_eq!(c[1].effective_cpu_duration(), Some(wall2));
        assert_eq!(c[2].end_time, Some(t("2026-11-03T00:00:00Z")));
        assert_eq!(c[2].status, Status::Completed);
        assert_eq!(c[2].effective_wall_duration(), Some(19 * 86400));
        assert_eq!(c[2].effective_cpu_duration(), Some(19 * 86400 * 8));
    }

    #[test]
    fn flavor_image_and_benchmark() {
        let mut s = server(1, "2026-11-10T00:00:00Z");
        s.flavor = ServerFlavor::Ref { id: "f1".into() };
        let mut data = NovaData {
            servers: vec![s.clone()],
            ..NovaData::default()
        };
        data.image_mpuris
            .insert("img1".into(), "https://appdb/img1".into());
        let mut specs = BTreeMap::new();
        specs.insert("accounting:benchmark_type".to_string(), "HEPscore23".into());
        specs.insert("accounting:benchmark_value".to_string(), "12.5".into());
        data.flavors.insert(
            "f1".into(),
            Arc::new(Flavor {
                id: "f1".into(),
                name: "big".into(),
                vcpus: 8,
                ram: 16384,
                disk: 80,
                ephemeral: 20,
                extra_specs: specs.clone(),
            }),
        );
        let r = one(&data);
        assert_eq!(r.image_id.as_deref(), Some("https://appdb/img1"));
        assert_eq!((r.cpu_count, r.memory, r.disk), (8, 16384, 100));
        let b = r.benchmark.unwrap();
        assert_eq!((b.kind.as_str(), b.value.get()), ("HEPscore23", 12.5));

        // Half a benchmark is no benchmark; an unknown flavor gives zeros.
        specs.remove("accounting:benchmark_value");
        let half = Arc::new(Flavor {
            extra_specs: specs,
            ..(*data.flavors["f1"]).clone()
        });
        data.flavors.insert("f1".into(), half);
        assert_eq!(one(&data).benchmark, None);
        data.flavors.clear();
        let r = one(&data);
        assert_eq!((r.cpu_count, r.memory, r.disk), (0, 0, 0));

        // Booted from a volume: no image.
        let mut s2 = s;
        s2.image = None;
        assert_eq!(
            one(&NovaData {
                servers: vec![s2],
                ..NovaData::default()
            })
            .image_id,
            None
        );
    }

    #[test]
    fn accelerator_records_per_month_of_the_period() {
        let mut s = server(1, "2026-10-15T00:00:00Z");
        let mut specs = BTreeMap::new();
        for (k, v) in [
            ("Accelerator:Type", "GPU"),
            ("Accelerator:Vendor", "NVIDIA"),
            ("Accelerator:Model", "A100"),
            ("Accelerator:Number", "2"),
        ] {
            specs.insert(k.to_string(), v.to_string());
        }
        s.flavor = ServerFlavor::Embedded(EmbeddedFlavor {
            original_name: Some("gpu".into()),
            vcpus: 8,
            ram: 1024,
            disk: 10,
            ephemeral: 0,
            extra_specs: Some(specs.clone()),
        });
        let mut c = ctx();
        c.period.to = t("2026-12-10T00:00:00Z");
        let records = build_records(
            &NovaData {
                servers: vec![s.clone()],
                ..NovaData::default()
            },
            &c,
            &FlavorKeys::default(),
        )
        .unwrap();
        let acc: Vec<&AcceleratorRecord> = records
            .iter()
            .filter_map(|r| match r {
                Record::Accelerator(a) => Some(a),
                _ => None,
            })
            .collect();
        assert_eq!(acc.len(), 2, "{records:?}");
        assert_eq!(acc[0].measurement, YearMonth::new(2026, 11).unwrap());
        assert_eq!(acc[0].available_duration, 30 * 86400);
        assert_eq!(acc[1].measurement, YearMonth::new(2026, 12).unwrap());
        assert_eq!(acc[1].available_duration, 9 * 86400);
        assert_eq!(acc[0].count, 2);
        assert_eq!(acc[0].model, "NVIDIA A100");
        assert_eq!(acc[0].accelerator_type, "GPU");
        assert_eq!(acc[0].associated_record.to_string(), uuid(1));

        // Three of the four keys: no accelerator records.
        specs.remove("Accelerator:Vendor");
        if let ServerFlavor::Embedded(f) = &mut s.flavor {
            f.extra_specs = Some(specs);
        }
        let records = build(&NovaData {
            servers: vec![s],
            ..NovaData::default()
        });
        assert!(
            records
                .iter()
                .all(|r| r.kind() == crate::record::RecordType::Cloud)
        );
    }

    #[test]
    fn duplicates_and_other_projects_servers_are_not_counted() {
        let s = server(1, "2026-11-10T00:00:00Z");
        let mut theirs = server(2, "2026-11-10T00:00:00Z");
        theirs.tenant_id = "p2".into();
        let records = build(&NovaData {
            servers: vec![s.clone(), theirs, s],
            ..NovaData::default()
        });
        assert_eq!(records.len(), 1, "{records:?}");
    }

    /// Issue 11 class 9: a time before 1970 or far ahead is an error for the
    /// server (its project), never a record with a negative StartTime.
    #[test]
    fn a_time_out_of_range_fails_the_project_naming_the_server() {
        let keys = FlavorKeys::default();
        for (created, ended, want) in [
            (
                "0001-01-01T00:00:00Z",
                None,
                "created 0001-01-01T00:00:00Z is before 1970",
            ),
            (
                "9999-01-01T00:00:00Z",
                None,
                "created 9999-01-01T00:00:00Z is more than a day in the future",
            ),
            (
                "2026-11-10T00:00:00Z",
                Some("1969-12-31T23:59:59Z"),
                "is before 1970",
            ),
        ] {
            let mut s = server(1, created);
            if let Some(e) = ended {
                s.terminated_at = Some(t(e));
            }
            let data = NovaData {
                servers: vec![s],
                ..NovaData::default()
            };
            let f = build_records(&data, &ctx(), &keys).unwrap_err();
            assert_eq!(f.object, format!("nova server {:?}", uuid(1)));
            assert!(f.cause.contains(want), "{}", f.cause);
        }
        // A day ahead is tolerated (clock skew); the server just is not in the period.
        let data = NovaData {
            servers: vec![server(1, "2026-11-30T12:00:00Z")],
            ..NovaData::default()
        };
        assert!(build_records(&data, &ctx(), &keys).unwrap().is_empty());
    }

    #[test]
    fn a_server_id_that_is_not_a_uuid_fails_the_project_naming_it() {
        let mut s = server(1, "2026-11-10T00:00:00Z");
        s.id = "not-a-uuid".into();
        let f = build_records(
            &NovaData {
                servers: vec![s],
                ..NovaData::default()
            },
            &ctx(),
            &FlavorKeys::default(),
        )
        .unwrap_err();
        assert_eq!(f.project, "p1");
        assert_eq!(f.object, "nova server \"not-a-uuid\"");
    }
}
