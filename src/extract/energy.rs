//! The `prometheus` extractor: one energy record per VM of a project that
//! drew power in the period (cASO 5.2.2's `EnergyConsumptionExtractor`,
//! with its defects fixed: see [`crate::record::ENERGY_DIFFERENCES`]).
//!
//! Per project: the servers Nova has now and those changed since the
//! period's start (deleted ones included, so a VM deleted mid-period keeps
//! its energy and ends when it ended), the vCPUs of each from its embedded
//! flavor (or the flavor it names), then the energy of all of them from
//! Prometheus.
//!
//! Prometheus is asked across projects: the [`EnergyBatcher`] collects the
//! VMs of the projects being extracted at the same time (up to
//! `concurrency`) and asks for them together, one `uuid=~` selector per
//! group and chunk ([`crate::prometheus::Prometheus::energy`]), so a run
//! costs a few dozen requests where cASO sends one per VM and chunk. A
//! failed request fails every project whose VMs it asked for (their
//! lastrun is kept; the next run asks again).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use futures_util::future::join_all;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::nova::{server_end, vm_uuid};
use super::{Failure, RecordContext, RunShared};
use crate::daemon::Shutdown;
use crate::openstack::Target;
use crate::openstack::nova::{self, Server, ServerFlavor};
use crate::prometheus::{Prometheus, VmEnergy};
use crate::record::{EnergyContext, EnergyRecord, EnergyVm, Record};
use crate::time::Timestamp;

/// A batch is asked for at once when it reaches this many VMs, even if
/// projects are still listing theirs (bounds what one batch holds).
const MAX_BATCH_VMS: usize = 5_000;

type Answer = Result<HashMap<Uuid, VmEnergy>, String>;

/// VMs waiting for one period's energy, and who waits for them.
#[derive(Default)]
struct Pending {
    vms: Vec<Uuid>,
    projects: usize,
    waiters: Vec<(Vec<Uuid>, oneshot::Sender<Answer>)>,
}

#[derive(Default)]
struct State {
    /// Projects being extracted that have not yet given their VMs.
    expected: usize,
    /// By period (from, to in microseconds): only VMs of the same period
    /// share a query.
    pending: BTreeMap<(i64, i64), Pending>,
}

/// Collects the VMs of the projects extracted at the same time and asks
/// Prometheus for them together. Each project takes a [`Ticket`] when it is
/// started, before anything of it runs; a batch is asked for once every
/// ticket holder has given its VMs or given up (or the batch is large).
#[derive(Clone)]
pub struct EnergyBatcher {
    prometheus: Prometheus,
    cpu_normalization_factor: f64,
    state: Arc<Mutex<State>>,
    stop: Shutdown,
}

/// One project's place in the next batch; dropping it unused (the project
/// failed before asking) lets the batch go without it.
pub struct Ticket {
    batcher: EnergyBatcher,
    used: bool,
}

impl EnergyBatcher {
    pub fn new(prometheus: Prometheus, cpu_normalization_factor: f64, stop: Shutdown) -> Self {
        EnergyBatcher {
            prometheus,
            cpu_normalization_factor,
            state: Arc::default(),
            stop,
        }
    }

    /// Requests sent to Prometheus so far.
    pub fn requests(&self) -> u64 {
        self.prometheus.requests()
    }

    pub fn ticket(&self) -> Ticket {
        self.lock().expected += 1;
        Ticket {
            batcher: self.clone(),
            used: false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain counters: go on.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts every batch that is complete (no project left to give VMs)
    /// or large; called with the state changed.
    fn release(&self, state: &mut State) {
        let ready: Vec<(i64, i64)> = state
            .pending
            .iter()
            .filter(|(_, p)| state.expected == 0 || p.vms.len() >= MAX_BATCH_VMS)
            .map(|(k, _)| *k)
            .collect();
        for key in ready {
            let Some(batch) = state.pending.remove(&key) else {
                continue;
            };
            let this = self.clone();
            let (from, to) = (
                Timestamp::from_unix_micros(key.0),
                Timestamp::from_unix_micros(key.1),
            );
            // No runtime: it is shutting down, and nobody waits any more.
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move { this.ask(batch, from, to).await });
            }
        }
    }

    async fn ask(&self, batch: Pending, from: Timestamp, to: Timestamp) {
        tracing::debug!(
            vms = batch.vms.len(),
            projects = batch.projects,
            "asking Prometheus for the energy of {} VMs of {} project(s)",
            batch.vms.len(),
            batch.projects
        );
        let answer = self
            .prometheus
            .energy(&batch.vms, from, to, &self.stop)
            .await;
        for (vms, reply) in batch.waiters {
            let mine = match &answer {
                Ok(all) => Ok(vms
                    .iter()
                    .filter_map(|id| Some((*id, *all.get(id)?)))
                    .collect()),
                Err(e) if batch.projects > 1 => Err(format!(
                    "{e} (the request asked for the VMs of {} projects)",
                    batch.projects
                )),
                Err(e) => Err(e.to_string()),
            };
            // A project that stopped waiting has gone: nothing to tell.
            let _ = reply.send(mine);
        }
    }
}

impl Ticket {
    /// The energy of `vms` over `[from, to]`, asked together with the
    /// other projects' of the same period.
    async fn energy(mut self, vms: Vec<Uuid>, from: Timestamp, to: Timestamp) -> Answer {
        let (reply, answer) = oneshot::channel();
        {
            let batcher = self.batcher.clone();
            let mut state = batcher.lock();
            self.used = true;
            state.expected = state.expected.saturating_sub(1);
            let p = state
                .pending
                .entry((from.unix_micros(), to.unix_micros()))
                .or_default();
            p.vms.extend_from_slice(&vms);
            p.projects += 1;
            p.waiters.push((vms, reply));
            batcher.release(&mut state);
        }
        answer
            .await
            .unwrap_or_else(|_| Err("the Prometheus query was stopped".into()))
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.used {
            let mut state = self.batcher.lock();
            state.expected = state.expected.saturating_sub(1);
            self.batcher.release(&mut state);
        }
    }
}

/// The servers whose energy counts: every current one and every one
/// changed since `from` (deleted ones included), once each, minus those
/// created at or after `to` or ended before `from`.
async fn servers(
    shared: &RunShared,
    target: &Target,
    ctx: &RecordContext,
) -> Result<Vec<Server>, Failure> {
    let (from, to) = (ctx.period.from, ctx.period.to);
    let (changed, current) = tokio::join!(
        nova::list_servers(&shared.session, target, Some(from)),
        nova::list_servers(&shared.session, target, None)
    );
    let changed = changed.map_err(|e| ctx.failure("nova servers", e.to_string()))?;
    let current = current.map_err(|e| ctx.failure("nova servers", e.to_string()))?;
    let mut seen = HashSet::new();
    Ok(changed
        .into_iter()
        .chain(current)
        .filter(|s| seen.insert(s.id.clone()))
        .filter(|s| s.created < to && server_end(s).is_none_or(|end| end >= from))
        .collect())
}

/// vCPUs of each server: its embedded flavor's, else the flavor it names
/// if Nova still has it (none: the record counts 1, as cASO).
async fn vcpus(
    shared: &RunShared,
    target: &Target,
    ctx: &RecordContext,
    servers: &[Server],
) -> Result<HashMap<String, u32>, Failure> {
    let mut out = HashMap::new();
    let mut ids: Vec<&str> = Vec::new();
    for s in servers {
        match &s.flavor {
            ServerFlavor::Embedded(f) => {
                out.insert(s.id.clone(), f.vcpus);
            }
            ServerFlavor::Ref { id } => ids.push(id),
        }
    }
    ids.sort_unstable();
    ids.dedup();
    let found = join_all(
        ids.iter()
            .map(|id| nova::cached_flavor(&shared.flavors, &shared.session, &target.scope, id)),
    )
    .await;
    let mut by_flavor = HashMap::new();
    for (id, f) in ids.into_iter().zip(found) {
        match f {
            Ok(Some(f)) => {
                by_flavor.insert(id.to_string(), f.vcpus);
            }
            Ok(None) => tracing::debug!(flavor = id, "flavor no longer exists: 1 vCPU"),
            Err(e) => return Err(ctx.failure(format!("nova flavor {id:?}"), e.to_string())),
        }
    }
    for s in servers {
        if let ServerFlavor::Ref { id } = &s.flavor
            && let Some(n) = by_flavor.get(id)
        {
            out.insert(s.id.clone(), *n);
        }
    }
    Ok(out)
}

/// The project's energy records, by VM id.
pub(super) async fn extract(
    shared: &RunShared,
    target: &Target,
    ctx: &RecordContext,
    ticket: Ticket,
) -> Result<Vec<Record>, Failure> {
    let batcher = ticket.batcher.clone();
    let servers = servers(shared, target, ctx).await?;
    let vcpus = vcpus(shared, target, ctx, &servers).await?;
    let mut vms = Vec::with_capacity(servers.len());
    for s in &servers {
        vms.push(EnergyVm {
            id: vm_uuid(s, ctx)?,
            status: s.status.clone(),
            created: s.created,
            ended: server_end(s),
            vcpus: vcpus.get(&s.id).copied(),
        });
    }
    let energy = ticket
        .energy(
            vms.iter().map(|v| v.id).collect(),
            ctx.period.from,
            ctx.period.to,
        )
        .await
        .map_err(|e| ctx.failure("prometheus energy", e))?;
    let ectx = EnergyContext {
        site_name: ctx.site_name.clone(),
        service_name: ctx.service_name.clone(),
        vo: ctx.vo.clone(),
        from: ctx.period.from,
        to: ctx.period.to,
        cpu_normalization_factor: batcher.cpu_normalization_factor,
    };
    let mut records = Vec::new();
    for vm in &vms {
        // A VM without samples has no energy: no record, as in cASO.
        let e = energy.get(&vm.id).copied().unwrap_or_default();
        if let Some(r) = EnergyRecord::build(vm, e.wh, &ectx) {
            records.push(Record::Energy(r));
        }
    }
    Ok(records)
}
