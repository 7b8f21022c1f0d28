//! `energy-series`: deterministic power series of VMs in OpenMetrics, for
//! `promtool tsdb create-blocks-from openmetrics` (the energy tests and the
//! benchmark backfill a real Prometheus with them).
//!
//! `energy-series --projects P --vms V --from T --to T [--step S] [--seed N]
//! [--out FILE] [--vms-json FILE]` writes, for each project and VM, the
//! metric cASO reads (`prometheus_value{type_instance="scaph_process_power_microwatts",uuid="<vm>"}`
//! by default), one sample every step (at an offset of its own, as scrapes
//! are), in time order per series, ending with `# EOF`. Streamed: a week of
//! 2,000 series (40M samples) costs no memory.
//!
//! Roles by VM index in each project (so every project has each case):
//! 0 no samples at all (project 0 only), 1 deleted in the middle of the
//! period (samples stop), 2 gaps longer than Prometheus's 5-minute
//! lookback, 3 a NaN sample, 4 negative samples, 5 created a third into the
//! period; every third VM also has a series the `labels` filter must
//! exclude (same uuid, `type_instance="scaph_host_power_microwatts"`).
//! `--plain` turns the roles off (every VM a full series, for benchmarks).
//!
//! `--slice-seconds S --out DIR` writes one file per S seconds instead (the
//! same samples), for backfills of a week: promtool holds a block of samples
//! in memory and reads its input once per block.
//!
//! `--manifest FILE` takes the VMs from the OpenStack simulator's manifest
//! (`/_sim/manifest`, or its `--write-manifest` file) instead of generating
//! them: each accounted project's servers, with their ids, vCPUs, start and
//! end (`expected.start`, `expected.end`; samples only while the server
//! exists; with `--plain` every VM a full series over the period, as the
//! benchmark's 40M samples); `--projects` and `--vms` are then ignored, the
//! roles still apply by index in each project unless `--plain`.
//!
//! `--vms-json FILE` writes the VMs, `[{"uuid", "project", "created",
//! "deleted", "vcpus", "role"}]` (times in Unix seconds), for the OpenStack
//! simulator and the tests.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use clap::Parser;
use serde_json::json;

#[derive(Parser, Debug)]
#[command(
    name = "energy-series",
    about = "Deterministic VM power series in OpenMetrics"
)]
struct Args {
    #[arg(long, default_value_t = 3)]
    projects: usize,
    /// VMs per project.
    #[arg(long, default_value_t = 8)]
    vms: usize,
    /// Period start, Unix seconds.
    #[arg(long)]
    from: i64,
    /// Period end, Unix seconds.
    #[arg(long)]
    to: i64,
    #[arg(long, default_value_t = 30)]
    step: i64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value = "prometheus_value")]
    metric: String,
    #[arg(long, default_value = "uuid")]
    uuid_label: String,
    /// The label set cASO selects (`labels` = `type_instance:<this>`).
    #[arg(long, default_value = "scaph_process_power_microwatts")]
    type_instance: String,
    /// OpenMetrics output (default: stdout).
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long)]
    vms_json: Option<PathBuf>,
    /// The simulator's manifest JSON: its accounted servers are the VMs.
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// No special cases: every VM a full series, no extra label sets.
    #[arg(long)]
    plain: bool,
    /// Write one file per slice of this many seconds into the directory
    /// `--out` (`slice-00000.om`, ...), each a complete OpenMetrics text.
    #[arg(long, value_parser = clap::value_parser!(i64).range(1..))]
    slice_seconds: Option<i64>,
}

/// splitmix64: small, seeded, the same on every platform.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn uuid(&mut self) -> uuid::Uuid {
        let b = (u128::from(self.next()) << 64 | u128::from(self.next())).to_be_bytes();
        uuid::Builder::from_random_bytes(b).into_uuid()
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    Full,
    Silent,
    Deleted,
    Gaps,
    Nan,
    Negative,
    Late,
}

impl Role {
    fn of(plain: bool, project: usize, vm: usize) -> Role {
        if plain {
            return Role::Full;
        }
        match vm {
            0 if project == 0 => Role::Silent,
            1 => Role::Deleted,
            2 => Role::Gaps,
            3 => Role::Nan,
            4 => Role::Negative,
            5 => Role::Late,
            _ => Role::Full,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Role::Full => "full",
            Role::Silent => "no-samples",
            Role::Deleted => "deleted",
            Role::Gaps => "gaps",
            Role::Nan => "nan",
            Role::Negative => "negative",
            Role::Late => "created-late",
        }
    }
}

struct Vm {
    uuid: uuid::Uuid,
    project: String,
    created: i64,
    deleted: Option<i64>,
    vcpus: u32,
    role: Role,
    /// Base power, µW.
    base: u64,
    /// Seconds after each step at which the VM's samples fall.
    offset: i64,
    extra: bool,
}

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("energy-series: {e}");
        std::process::exit(1);
    }
}

fn run(a: Args) -> Result<(), String> {
    if a.step <= 0 || a.to <= a.from {
        return Err("need --step > 0 and --to > --from".into());
    }
    let mut rng = Rng(a.seed);
    let vms = match &a.manifest {
        Some(path) => manifest_vms(path, &a, &mut rng)?,
        None => generated_vms(&a, &mut rng),
    };
    if let Some(path) = &a.vms_json {
        let list: Vec<_> = vms
            .iter()
            .map(|v| {
                json!({"uuid": v.uuid.hyphenated().to_string(), "project": v.project, "created": v.created,
                       "deleted": v.deleted, "vcpus": v.vcpus, "role": v.role.name()})
            })
            .collect();
        std::fs::write(
            path,
            serde_json::to_vec_pretty(&list).map_err(|e| e.to_string())?,
        )
        .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let (lo, hi) = (a.from - 600, a.to + a.step + 1);
    let Some(slice) = a.slice_seconds else {
        let out: Box<dyn Write> = match &a.out {
            Some(p) => Box::new(File::create(p).map_err(|e| format!("{}: {e}", p.display()))?),
            None => Box::new(std::io::stdout().lock()),
        };
        let mut w = BufWriter::with_capacity(1 << 20, out);
        let samples = write_series(&mut w, &a, &vms, lo, hi).map_err(|e| e.to_string())?;
        eprintln!("energy-series: {samples} samples of {} VMs", vms.len());
        return w.flush().map_err(|e| e.to_string());
    };
    // One file per slice of time, so promtool backfills a slice at a time
    // (its memory is about one block of samples; it reads its input once
    // per block).
    let dir = a.out.clone().ok_or("--slice-seconds needs --out DIR")?;
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut start = lo;
    let (mut n, mut samples) = (0, 0);
    while start < hi {
        let path = dir.join(format!("slice-{n:05}.om"));
        let f = File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut w = BufWriter::with_capacity(1 << 20, f);
        let end = start.saturating_add(slice).min(hi);
        samples += write_series(&mut w, &a, &vms, start, end).map_err(|e| e.to_string())?;
        w.flush().map_err(|e| e.to_string())?;
        start = end;
        n += 1;
    }
    eprintln!(
        "energy-series: {samples} samples of {} VMs in {n} files",
        vms.len()
    );
    Ok(())
}

fn generated_vms(a: &Args, rng: &mut Rng) -> Vec<Vm> {
    let span = a.to - a.from;
    let mut vms = Vec::with_capacity(a.projects * a.vms);
    for p in 0..a.projects {
        let project = rng.uuid().simple().to_string();
        for v in 0..a.vms {
            let role = Role::of(a.plain, p, v);
            let created = match role {
                Role::Late => a.from + span / 3,
                _ => a.from - 86_400 - (rng.next() % 86_400) as i64,
            };
            let deleted = (role == Role::Deleted).then_some(a.from + span / 2 + 7);
            vms.push(Vm {
                uuid: rng.uuid(),
                project: project.clone(),
                created,
                deleted,
                vcpus: [1, 2, 4, 8][(rng.next() % 4) as usize],
                role,
                base: 2_000_000 + rng.next() % 40_000_000,
                offset: (rng.next() % a.step as u64) as i64,
                extra: !a.plain && v % 3 == 0,
            });
        }
    }
    vms
}

/// The accounted servers of the simulator's manifest, as VMs (their power
/// and sample offsets from the seed).
fn manifest_vms(path: &std::path::Path, a: &Args, rng: &mut Rng) -> Result<Vec<Vm>, String> {
    use std::io::Read;
    let mut text = Vec::new();
    File::open(path)
        .and_then(|f| f.take(256 << 20).read_to_end(&mut text))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let m: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let bad = |what: &str| format!("{}: not a simulator manifest ({what})", path.display());
    let mut vms = Vec::new();
    let projects = m["projects"].as_array().ok_or_else(|| bad("no projects"))?;
    for (p, project) in projects.iter().enumerate() {
        if project["accounted"] != serde_json::Value::Bool(true) {
            continue;
        }
        let id = project["id"].as_str().ok_or_else(|| bad("project id"))?;
        let servers = project["servers"]
            .as_array()
            .ok_or_else(|| bad("servers"))?;
        for (v, s) in servers.iter().enumerate() {
            let uuid = s["id"]
                .as_str()
                .and_then(|u| uuid::Uuid::parse_str(u).ok())
                .ok_or_else(|| bad("server id"))?;
            let mut created = s["expected"]["start"]
                .as_i64()
                .ok_or_else(|| bad("start"))?;
            let mut end = s["expected"]["end"].as_i64().unwrap_or(0);
            if a.plain {
                (created, end) = (a.from - 86_400, 0);
            }
            vms.push(Vm {
                uuid,
                project: id.to_string(),
                created,
                deleted: (end > 0).then_some(end),
                vcpus: s["vcpus"]
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .unwrap_or(1),
                role: Role::of(a.plain, p, v),
                base: 2_000_000 + rng.next() % 40_000_000,
                offset: (rng.next() % a.step as u64) as i64,
                extra: !a.plain && v % 3 == 0,
            });
        }
    }
    Ok(vms)
}

/// Samples of every VM with `lo <= t < hi`, as one OpenMetrics text.
/// Returns how many samples it wrote.
fn write_series(
    w: &mut impl Write,
    a: &Args,
    vms: &[Vm],
    lo: i64,
    hi: i64,
) -> std::io::Result<u64> {
    let mut samples = 0;
    writeln!(w, "# TYPE {} gauge", a.metric)?;
    // Samples from 10 minutes before the period (the lookback at its start)
    // to a step after it.
    let (first, last) = (a.from - 600, a.to + a.step);
    let extra_type = "scaph_host_power_microwatts";
    for (n, vm) in vms.iter().enumerate() {
        if vm.role == Role::Silent {
            continue;
        }
        let start = first.max(vm.created).max(lo);
        let end = vm.deleted.map_or(last, |d| d.min(last)).min(hi - 1);
        for (type_instance, scale) in [(a.type_instance.as_str(), 1u64), (extra_type, 3)] {
            if scale != 1 && !vm.extra {
                continue;
            }
            let labels = format!(
                "{}{{type_instance=\"{}\",{}=\"{}\"}}",
                a.metric,
                type_instance,
                a.uuid_label,
                vm.uuid.hyphenated()
            );
            let mut t = start - start.rem_euclid(a.step) + vm.offset;
            while t <= end {
                if t >= start && !in_gap(vm.role, t, a) {
                    // Up to 1 W of noise, in mW: three decimals of µW; a
                    // function of (seed, VM, series, time) only, so slices
                    // hold the same values as one file.
                    let key = a.seed ^ ((n as u64) << 40) ^ (scale << 36) ^ (t as u64);
                    let noise = Rng(key).next() % 1_000_000_000;
                    let mut value =
                        format!("{}.{:03}", vm.base * scale + noise / 1000, noise % 1000);
                    let k = (t - a.from).div_euclid(a.step);
                    if vm.role == Role::Nan && k == 100 {
                        value = "NaN".into();
                    }
                    if vm.role == Role::Negative && k.rem_euclid(50) == 7 {
                        value = format!("-{value}");
                    }
                    writeln!(w, "{labels} {value} {t}")?;
                    samples += 1;
                }
                t += a.step;
            }
        }
    }
    writeln!(w, "# EOF")?;
    Ok(samples)
}

/// A 20-minute hole every 6 hours (longer than the 5-minute lookback).
fn in_gap(role: Role, t: i64, a: &Args) -> bool {
    role == Role::Gaps && (t - a.from).rem_euclid(6 * 3600) < 1200
}
