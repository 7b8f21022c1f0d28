//! Delivery of extracted projects: their records to every messenger (in
//! project order), then the lastrun of each project whose messages are all
//! durably in the spool and that nothing failed. A stop request never cuts
//! a delivery: [`deliver_group`] is awaited outside every wait on the
//! shutdown handle (keep it so), so SIGTERM cannot fall between the spool
//! commit and the lastrun write.

use std::io::Write;
use std::sync::Arc;

use futures_util::future::join_all;
use tracing::Instrument;

use super::messenger::{self, LastrunStore};
use super::window::Extracted;
use super::{Failure, ProjectReport, RunConfig};
use crate::record::{Record, RecordType};

fn counts(records: &[Record]) -> Vec<(RecordType, usize)> {
    RecordType::ALL
        .into_iter()
        .map(|t| (t, records.iter().filter(|r| r.kind() == t).count()))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// One project as delivered: its report and failures, for its span's log.
pub(super) struct Delivered {
    pub(super) report: ProjectReport,
    pub(super) failures: Vec<Failure>,
    pub(super) stopped: bool,
}

/// Sends the records of a group of extracted projects (in project order)
/// and writes the lastrun of each that went well. The spool gets every
/// message of the group in one [`messenger::MessageSink::add_all`], so the file system is
/// synced once per group, not once per project: when syncing is slow,
/// the projects that finished meanwhile share the next sync.
pub(super) async fn deliver_group(
    cfg: &RunConfig,
    lastrun: &Arc<dyn LastrunStore>,
    group: Vec<(tracing::Span, Extracted)>,
    out: &mut (dyn Write + Send),
) -> Vec<(tracing::Span, Delivered)> {
    let mut done: Vec<(tracing::Span, Delivered, Extracted)> = group
        .into_iter()
        .map(|(span, x)| {
            let d = Delivered {
                report: ProjectReport {
                    id: x.project.id.clone(),
                    period: x.period,
                    records: counts(&x.records),
                    messages: 0,
                    records_spooled: 0,
                    records_pushed: 0,
                    pushed: Vec::new(),
                    lastrun: None,
                },
                failures: Vec::new(),
                stopped: x.stopped,
            };
            (span, d, x)
        })
        .collect();
    // Projects without a period failed before extracting anything; stopped
    // ones deliver nothing.
    let active = |x: &Extracted| x.period.is_some() && !x.stopped;
    if cfg.dry_run {
        for (_, d, x) in done.iter_mut().filter(|(_, _, x)| active(x)) {
            match messenger::print_messages(out, &x.records, cfg.max_records) {
                Ok(n) => {
                    d.report.messages += n;
                    d.report.records_spooled += x.records.len();
                }
                Err(e) => x
                    .failures
                    .push(Failure::new(&x.project.id, "dry-run output", e)),
            }
        }
    } else {
        for m in &cfg.messengers {
            let mut batch = Vec::new();
            // Each project in the batch: its index, messages and records.
            let mut in_batch = Vec::new();
            for (i, (span, d, x)) in done.iter_mut().enumerate() {
                if !active(x) {
                    continue;
                }
                let id = x.project.id.clone();
                match m.spool_messages(&x.records, cfg.max_records) {
                    Some(Ok(messages)) => {
                        if !messages.is_empty() {
                            let records = messages.iter().map(|m| m.record_count()).sum::<usize>();
                            in_batch.push((i, messages.len(), records));
                            batch.extend(messages);
                        }
                    }
                    Some(Err(cause)) => x.failures.push(Failure::new(&id, m.describe(), cause)),
                    None => match m
                        .push(&x.records, cfg.max_records)
                        .instrument(span.clone())
                        .await
                    {
                        Ok(n) => {
                            d.report.records_pushed += n;
                            d.report.pushed.push((m.describe(), n));
                            span.in_scope(|| tracing::debug!(target: super::LOG_TARGET, "{n} records to {}", m.describe()))
                        }
                        Err(cause) => x.failures.push(Failure::new(&id, m.describe(), cause)),
                    },
                }
            }
            let Some(spool) = m.spool().filter(|_| !batch.is_empty()).cloned() else {
                continue;
            };
            let added = tokio::task::spawn_blocking(move || spool.add_all(&batch))
                .await
                .map_err(|e| format!("spool task failed: {e}"))
                .and_then(|r| r.map_err(|e| e.to_string()));
            for (i, messages, records) in in_batch {
                let (span, d, x) = &mut done[i];
                match &added {
                    Ok(()) => {
                        d.report.messages += messages;
                        d.report.records_spooled += records;
                        span.in_scope(|| {
                            tracing::debug!(target: super::LOG_TARGET,
                                "{messages} messages ({records} records) added to the {}",
                                m.describe()
                            )
                        })
                    }
                    Err(cause) => {
                        x.failures
                            .push(Failure::new(&x.project.id, m.describe(), cause.clone()))
                    }
                }
            }
        }
        // cASO's next start: one second after this period's end; only for
        // the projects whose messages are all durably delivered.
        let next = cfg.to.add_seconds(1);
        let writes = done
            .iter()
            .filter(|(_, _, x)| active(x) && x.failures.is_empty())
            .map(|(_, _, x)| {
                let (store, pid) = (lastrun.clone(), x.project.id.clone());
                tokio::task::spawn_blocking(move || forward(store.as_ref(), &pid, next))
            });
        let results = join_all(writes).await;
        let mut results = results.into_iter();
        for (span, d, x) in done.iter_mut() {
            if !(active(x) && x.failures.is_empty()) {
                continue;
            }
            match results.next() {
                Some(Ok(Ok(Moved::Forward))) => d.report.lastrun = Some(next),
                Some(Ok(Ok(Moved::Kept(at)))) => {
                    span.in_scope(|| tracing::info!(target: super::LOG_TARGET,
                        "lastrun kept at {at}: this period ends before it (a past period extracted again); lastrun never moves back"
                    ));
                }
                Some(Ok(Err(e))) => {
                    x.failures
                        .push(Failure::new(&x.project.id, "lastrun file", e.to_string()))
                }
                Some(Err(e)) => {
                    x.failures
                        .push(Failure::new(&x.project.id, "lastrun file", e.to_string()))
                }
                None => {}
            }
        }
    }
    done.into_iter()
        .map(|(span, mut d, x)| {
            d.failures = x.failures;
            (span, d)
        })
        .collect()
}

/// What [`forward`] did.
enum Moved {
    Forward,
    /// The lastrun was already at or after this run's: kept.
    Kept(crate::time::Timestamp),
}

/// Writes `next` as the project's lastrun unless its lastrun is already
/// later: extracting a past period again (`--extract-from`/`--extract-to`,
/// to republish a month) never makes the next run extract again what
/// later runs already did. (cASO writes the past date.)
fn forward(
    store: &dyn LastrunStore,
    project: &str,
    next: crate::time::Timestamp,
) -> Result<Moved, super::messenger::BoxError> {
    match store.read(project)? {
        Some(at) if at >= next => Ok(Moved::Kept(at)),
        _ => {
            store.write(project, next)?;
            Ok(Moved::Forward)
        }
    }
}
