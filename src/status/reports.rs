//! The files `status` reads besides the queue: the run reports
//! ([`crate::report`]) and the lastrun files ([`crate::lastrun`]). What
//! cannot be read or understood becomes a problem naming the file, never a
//! failed status.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{ProjectOutcome, ProjectStatus, age};
use crate::report::{self, Outcome};
use crate::time::Timestamp;

/// The largest run report read (ours are a few KiB per hundred projects).
const MAX_REPORT_BYTES: usize = 4 << 20;

/// What `status` shows of a run report.
#[derive(Debug, Serialize)]
pub struct LastRun {
    pub file: PathBuf,
    pub started: Timestamp,
    pub ended: Timestamp,
    pub age_seconds: i64,
    pub outcome: Outcome,
    /// Why nothing could be done (extract), or the transport error (send).
    pub error: Option<String>,
    #[serde(flatten)]
    pub counts: RunCounts,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum RunCounts {
    Extract {
        projects: usize,
        failed_projects: usize,
        /// Records extracted, by type, over every project.
        records: BTreeMap<String, u64>,
    },
    Send {
        destination: String,
        via: String,
        found: u64,
        sent: u64,
        rejected: u64,
        left: u64,
    },
}

/// The part of a run report (schema 1) that status reads; unknown fields
/// are ignored, as the schema policy asks of readers.
#[derive(Deserialize)]
struct ReportFile {
    schema: u32,
    program: String,
    started: Timestamp,
    ended: Timestamp,
    outcome: Outcome,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    projects: Vec<ReportProject>,
    #[serde(default)]
    destinations: Vec<ReportDestination>,
}

#[derive(Deserialize)]
pub(super) struct ReportProject {
    id: String,
    #[serde(default)]
    period: Option<crate::extract::Period>,
    #[serde(default)]
    records: BTreeMap<String, u64>,
    #[serde(default)]
    errors: Vec<ReportError>,
}

#[derive(Deserialize)]
struct ReportError {
    object: String,
    cause: String,
}

#[derive(Deserialize, Default)]
struct ReportDestination {
    destination: String,
    via: String,
    found: u64,
    sent: u64,
    rejected: u64,
    left: u64,
    #[serde(default)]
    error: Option<String>,
}

/// Reads the report at `path` written by `program`; `None` when there is
/// none (never run) or it cannot be used (a problem is recorded).
fn read(path: &Path, program: &str, problems: &mut Vec<String>) -> Option<ReportFile> {
    let bytes = match crate::spool::read_small(path, MAX_REPORT_BYTES) {
        Ok(Some(b)) => b,
        Ok(None) => return None,
        Err(e) => {
            problems.push(format!("cannot read run report {}: {e}", path.display()));
            return None;
        }
    };
    let file: ReportFile = match serde_json::from_slice(&bytes) {
        Ok(f) => f,
        Err(e) => {
            problems.push(format!("invalid run report {}: {e}", path.display()));
            return None;
        }
    };
    if file.schema != report::SCHEMA || file.program != program {
        problems.push(format!(
            "run report {} is schema {} of {:?}; this {program} reads schema {} of {program:?}",
            path.display(),
            file.schema,
            file.program,
            report::SCHEMA
        ));
        return None;
    }
    Some(file)
}

/// `caso-extract.last-run.json` in `spooldir`, with its projects.
pub(super) fn last_extract(
    spooldir: &Path,
    now: Timestamp,
    problems: &mut Vec<String>,
) -> Option<(LastRun, Vec<ReportProject>)> {
    let path = spooldir.join(report::EXTRACT_FILE);
    let file = read(&path, "caso-extract", problems)?;
    let mut records = BTreeMap::new();
    for p in &file.projects {
        for (kind, n) in &p.records {
            *records.entry(kind.clone()).or_insert(0) += n;
        }
    }
    let run = LastRun {
        file: path,
        started: file.started,
        ended: file.ended,
        age_seconds: age(now, file.ended),
        outcome: file.outcome,
        error: file.error,
        counts: RunCounts::Extract {
            projects: file.projects.len(),
            failed_projects: file
                .projects
                .iter()
                .filter(|p| !p.errors.is_empty())
                .count(),
            records,
        },
    };
    Some((run, file.projects))
}

/// `ssmsend.last-run.json` beside the queue at `queue`.
pub(super) fn last_send(
    queue: &Path,
    now: Timestamp,
    problems: &mut Vec<String>,
) -> Option<LastRun> {
    let path = report::send_path(queue)?;
    let file = read(&path, "ssmsend", problems)?;
    // A run sends to one destination; none listed reads as nothing sent.
    let d = file.destinations.into_iter().next().unwrap_or_default();
    Some(LastRun {
        file: path,
        started: file.started,
        ended: file.ended,
        age_seconds: age(now, file.ended),
        outcome: file.outcome,
        error: d.error.or(file.error),
        counts: RunCounts::Send {
            destination: d.destination,
            via: d.via,
            found: d.found,
            sent: d.sent,
            rejected: d.rejected,
            left: d.left,
        },
    })
}

/// Every project with a lastrun file in `spooldir` or in the last run
/// report, sorted by id, with what the report says of it.
pub(super) fn projects(
    spooldir: &Path,
    last: Option<&(LastRun, Vec<ReportProject>)>,
    now: Timestamp,
    problems: &mut Vec<String>,
) -> Vec<ProjectStatus> {
    let mut by_id: BTreeMap<String, ProjectStatus> = BTreeMap::new();
    match std::fs::read_dir(spooldir) {
        Ok(entries) => {
            for entry in entries.flatten().take(super::MAX_PROJECTS) {
                let name = entry.file_name();
                let Some(id) = name.to_str().and_then(|n| n.strip_prefix("lastrun.")) else {
                    continue;
                };
                if id.is_empty() || id.starts_with('.') || id.ends_with(".tmp") {
                    continue;
                }
                by_id.insert(id.to_owned(), ProjectStatus::new(id.to_owned()));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => problems.push(format!("cannot list {}: {e}", spooldir.display())),
    }
    if let Some((_, reported)) = last {
        for p in reported {
            let status = by_id
                .entry(p.id.clone())
                .or_insert_with(|| ProjectStatus::new(p.id.clone()));
            status.period = p.period;
            status.outcome = Some(if p.errors.is_empty() {
                ProjectOutcome::Ok
            } else {
                ProjectOutcome::Failed
            });
            status.error = p
                .errors
                .first()
                .map(|e| format!("{}: {}", e.object, e.cause));
        }
    }
    for status in by_id.values_mut() {
        match crate::lastrun::read(spooldir, &status.id) {
            Ok(t) => {
                status.lastrun = t;
                status.lastrun_age_seconds = t.map(|t| age(now, t));
            }
            // Unresolved configured entries and "(none)" have no file.
            Err(crate::lastrun::LastrunError::BadProject { .. }) => {}
            Err(e) => status.lastrun_error = Some(e.to_string()),
        }
    }
    by_id.into_values().collect()
}
