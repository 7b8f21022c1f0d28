//! Extraction, project by project, in a sliding window: up to
//! `concurrency` projects are extracted at a time ([`extract_project`]);
//! when the oldest is extracted, it and the ones after it that are done too
//! are delivered together ([`super::deliver`], in project order, whatever
//! order they finish in) while the next ones start, so at most
//! `2 x concurrency` projects' data are in memory. After a stop request no
//! new project starts; those started get the grace to finish.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::Arc;

use futures_util::future::join_all;
use tracing::Instrument;

use super::deliver::deliver_group;
use super::energy::{self, Ticket};
use super::messenger::LastrunStore;
use super::period::{Period, period_of};
use super::projects::ProjectInfo;
use super::{Failure, RecordContext, Report, RunConfig, RunShared, cinder, neutron, nova};
use crate::config::caso::Extractor;
use crate::daemon::Shutdown;
use crate::record::{Record, RecordType};

/// Result of extracting one project, before delivery.
pub(super) struct Extracted {
    pub(super) project: ProjectInfo,
    pub(super) period: Option<Period>,
    pub(super) records: Vec<Record>,
    pub(super) failures: Vec<Failure>,
    /// Stopped mid-way (a stop request's grace ran out): nothing of it is
    /// delivered, its lastrun stays.
    pub(super) stopped: bool,
}

/// Extracts `projects` in a window of `cfg.concurrency` and delivers them
/// in project order, adding what happened to `report`: projects done,
/// failures, projects stopped mid-way and not started.
pub(super) async fn extract_all(
    shared: Arc<RunShared>,
    cfg: &Arc<RunConfig>,
    lastrun: &Arc<dyn LastrunStore>,
    projects: Vec<ProjectInfo>,
    stop: &Shutdown,
    out: &mut (dyn Write + Send),
    report: &mut Report,
) {
    let concurrency = cfg.concurrency;
    let spawn = |p: ProjectInfo| {
        let span = crate::logging::project_span(&p.name, &p.id);
        let (shared, cfg, lastrun) = (shared.clone(), cfg.clone(), lastrun.clone());
        let id = p.id.clone();
        // Taken before the task runs, so that the projects started together
        // are asked for together (see `energy.rs`).
        let ticket = shared
            .energy
            .as_ref()
            .filter(|_| cfg.extractors.contains(&Extractor::Prometheus))
            .map(|b| b.ticket());
        let task = tokio::spawn(
            extract_project(shared, cfg, lastrun, p, ticket, stop.clone()).instrument(span.clone()),
        );
        (id, span, task)
    };
    let mut queued = projects.into_iter();
    let mut window = VecDeque::with_capacity(concurrency);
    // The group collected in the previous turn: delivered once the next
    // projects have started.
    let mut group = Vec::new();
    loop {
        // After a stop request no new project starts; those started finish.
        while window.len() < concurrency
            && !stop.is_requested()
            && let Some(p) = queued.next()
        {
            window.push_back(spawn(p));
        }
        // The next projects started: these are delivered meanwhile.
        if !group.is_empty() {
            for (span, d) in deliver_group(cfg, lastrun, std::mem::take(&mut group), out).await {
                span.in_scope(|| {
                    for f in &d.failures {
                        tracing::error!(target: super::LOG_TARGET, "{}: {}", f.object, f.cause);
                    }
                    if !d.failures.is_empty() && !cfg.dry_run {
                        tracing::warn!(target: super::LOG_TARGET,
                            "lastrun left unchanged: the period is extracted again next run"
                        );
                    }
                });
                if d.stopped {
                    report.stopped.push(d.report.id);
                } else {
                    report.projects.push(d.report);
                }
                report.failures.extend(d.failures);
            }
        }
        let Some(first) = window.pop_front() else {
            break;
        };
        // The oldest project, and every one after it already finished.
        let mut next = Some(first);
        while let Some((id, span, task)) = next.take() {
            match task.await {
                Ok(x) => group.push((span, x)),
                Err(e) => {
                    let f = Failure::new(&id, "extraction task", e.to_string());
                    tracing::error!(target: super::LOG_TARGET, "{f}");
                    report.failures.push(f);
                }
            }
            if window.front().is_some_and(|(_, _, t)| t.is_finished()) {
                next = window.pop_front();
            }
        }
    }
    report.not_started.extend(queued.map(|p| p.id));
}

fn sort_key(r: &Record) -> (RecordType, String) {
    let key = match r {
        Record::Cloud(c) => c.vm_uuid.to_string(),
        Record::Accelerator(a) => format!("{} {}", a.associated_record, a.measurement),
        Record::Storage(s) => s.volume_id.to_string(),
        Record::Ip(i) => format!("{} {}", i.local_group, i.ip_version.number()),
        Record::Energy(e) => e.exec_unit_id.to_string(),
    };
    (r.kind(), key)
}

/// One project: its VO, its period, then its records from the configured
/// extractors, sorted.
async fn extract_project(
    shared: Arc<RunShared>,
    cfg: Arc<RunConfig>,
    lastrun: Arc<dyn LastrunStore>,
    project: ProjectInfo,
    mut ticket: Option<Ticket>,
    stop: Shutdown,
) -> Extracted {
    let mut out = Extracted {
        period: None,
        records: Vec::new(),
        failures: Vec::new(),
        stopped: false,
        project,
    };
    let id = out.project.id.clone();
    let Some((vo, source)) = out.project.vo.clone() else {
        out.failures.push(Failure::new(
            &id,
            "VO mapping",
            format!(
                "no VO: set the Keystone project property {:?}, map the project in {}, or set [DEFAULT] default_vo",
                cfg.vo_property,
                cfg.mapping_file.display()
            ),
        ));
        return out;
    };
    let period = match period_of(&cfg, lastrun.as_ref(), &id) {
        Ok(Some(p)) => p,
        Ok(None) => return out,
        Err(f) => {
            out.failures.push(f);
            return out;
        }
    };
    out.period = Some(period);
    tracing::info!(target: super::LOG_TARGET,
        "extracting {} to {} for VO {vo} (from {source})",
        period.from,
        period.to
    );
    let ctx = RecordContext {
        site_name: cfg.site_name.clone(),
        service_name: cfg.service_name.clone(),
        project_id: id.clone(),
        vo,
        period,
        now: cfg.now,
    };
    let target = &out.project.target;
    // The extractors of a project are independent: their requests overlap
    // (results are taken in the configured order, so the output and the
    // failures do not depend on timing).
    let extracting = join_all(cfg.extractors.iter().map(|extractor| {
        let (shared, ctx, keys) = (&*shared, &ctx, &cfg.keys);
        let ticket = match extractor {
            Extractor::Prometheus => ticket.take(),
            _ => None,
        };
        async move {
            match extractor {
                Extractor::Nova => match nova::fetch(shared, target, ctx).await {
                    Ok(data) => nova::build_records(&data, ctx, keys),
                    Err(f) => Err(f),
                },
                Extractor::Cinder => cinder::extract(shared, target, ctx).await,
                Extractor::Neutron => neutron::extract(shared, target, ctx).await,
                Extractor::Prometheus => match ticket {
                    Some(ticket) => energy::extract(shared, target, ctx, ticket).await,
                    None => Err(ctx.failure("prometheus", "no Prometheus client (a bug)")),
                },
            }
        }
    }));
    // After a stop request the project gets the grace to finish; then its
    // requests and backoff sleeps are dropped (nothing is written yet).
    let results = tokio::select! {
        r = extracting => r,
        _ = stop.grace_over() => {
            tracing::warn!(target: super::LOG_TARGET, "stopped on request before the project was extracted: nothing written, lastrun kept");
            out.stopped = true;
            return out;
        }
    };
    for result in results {
        match result {
            Ok(records) => out.records.extend(records),
            Err(f) => out.failures.push(f),
        }
    }
    out.records.sort_by_cached_key(sort_key);
    out
}
