//! What a run reports: every [`Failure`] (one thing that went wrong with
//! one project) and the [`Report`] of the run, which [`super::summarize`]
//! turns into the line that ends the run.

use std::fmt;

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use super::Period;
use crate::metrics::ExtractRun;
use crate::openstack::RequestCounts;
use crate::record::RecordType;
use crate::report::{self, Outcome, RunReport};
use crate::time::Timestamp;

/// One thing that went wrong with one project.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Failure {
    /// The project id (or the configured entry when it could not be resolved).
    /// Not in the run report: each failure is listed under its project.
    #[serde(skip)]
    pub project: String,
    /// What failed: an OpenStack object, the spool, the lastrun file...
    pub object: String,
    pub cause: String,
}

impl Failure {
    pub fn new(
        project: impl Into<String>,
        object: impl Into<String>,
        cause: impl Into<String>,
    ) -> Self {
        Failure {
            project: project.into(),
            object: object.into(),
            cause: cause.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "project {}: {}: {}",
            self.project, self.object, self.cause
        )
    }
}

/// The result of a run, for the summary and for tests.
#[derive(Debug, Default)]
pub struct Report {
    /// Projects extracted, in order.
    pub projects: Vec<ProjectReport>,
    pub failures: Vec<Failure>,
    /// Projects not started because a stop was requested (SIGTERM): their
    /// lastrun is untouched and the next run extracts them.
    pub not_started: Vec<String>,
    /// Projects started but stopped mid-way (the stop request's grace ran
    /// out): nothing of theirs was spooled, their lastrun is untouched.
    pub stopped: Vec<String>,
    pub requests: RequestCounts,
    /// Prometheus queries (the `prometheus` extractor).
    pub prometheus_requests: u64,
    /// Where the records went: the messengers' [`super::messenger::Messenger::describe`]
    /// (empty for a dry run).
    pub messengers: Vec<String>,
    pub dry_run: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct ProjectReport {
    pub id: String,
    pub period: Option<Period>,
    /// Records extracted, by type.
    #[serde(serialize_with = "as_map")]
    pub records: Vec<(RecordType, usize)>,
    /// Messages durably added to the spool (a dry run: printed).
    pub messages: usize,
    /// The records in those messages.
    pub records_spooled: usize,
    /// Records taken by the `logstash`, `noop` and `greendigit_cim` messengers.
    pub records_pushed: usize,
    /// The same by messenger (its `describe()`), in messenger order.
    #[serde(serialize_with = "as_map")]
    pub pushed: Vec<(String, usize)>,
    /// The lastrun written, if any.
    pub lastrun: Option<Timestamp>,
}

/// Pairs as a JSON object, in their order (`{"cloud": 3, "ip": 1}`).
fn as_map<K: Serialize, S: Serializer>(pairs: &[(K, usize)], s: S) -> Result<S::Ok, S::Error> {
    let mut m = s.serialize_map(Some(pairs.len()))?;
    for (k, n) in pairs {
        m.serialize_entry(k, n)?;
    }
    m.end()
}

/// One project in the run report: what [`ProjectReport`] says and its
/// failures.
#[derive(Serialize)]
struct ProjectEntry<'a> {
    #[serde(flatten)]
    project: std::borrow::Cow<'a, ProjectReport>,
    errors: Vec<&'a Failure>,
}

#[derive(Serialize)]
struct Requests<'a> {
    #[serde(flatten)]
    openstack: &'a RequestCounts,
    prometheus: u64,
}

/// What `caso-extract` adds to the common fields of the run report.
#[derive(Serialize)]
pub struct ExtractDetails<'a> {
    projects: Vec<ProjectEntry<'a>>,
    not_started: &'a [String],
    stopped: &'a [String],
    requests: Requests<'a>,
    messengers: &'a [String],
    /// Why nothing could be done (`outcome` "failed" without a report).
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl Report {
    /// The ids of the projects with a failure, each once.
    fn failed_ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self.failures.iter().map(|f| f.project.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// How the run ended: failures make it "partial" when at least one
    /// project was done, else "failed"; a stop with no failure is "stopped".
    pub fn outcome(&self) -> Outcome {
        let failed = self.failed_ids();
        let ok = self
            .projects
            .iter()
            .filter(|p| !failed.contains(&p.id.as_str()))
            .count();
        match (failed.is_empty(), ok) {
            (false, 0) => Outcome::Failed,
            (false, _) => Outcome::Partial,
            _ if !self.stopped.is_empty() || !self.not_started.is_empty() => Outcome::Stopped,
            _ => Outcome::Ok,
        }
    }

    /// The run report's details: every extracted project in order, then
    /// every other one with a failure (an entry never resolved, the
    /// project list itself), each with its failures.
    pub fn details(&self) -> ExtractDetails<'_> {
        let errors = |id: &str| self.failures.iter().filter(|f| f.project == id).collect();
        let mut projects: Vec<ProjectEntry<'_>> = self
            .projects
            .iter()
            .map(|p| ProjectEntry {
                project: std::borrow::Cow::Borrowed(p),
                errors: errors(&p.id),
            })
            .collect();
        for f in &self.failures {
            if !projects.iter().any(|p| p.project.id == f.project) {
                projects.push(ProjectEntry {
                    project: std::borrow::Cow::Owned(ProjectReport {
                        id: f.project.clone(),
                        ..ProjectReport::default()
                    }),
                    errors: errors(&f.project),
                });
            }
        }
        ExtractDetails {
            projects,
            not_started: &self.not_started,
            stopped: &self.stopped,
            requests: Requests {
                openstack: &self.requests,
                prometheus: self.prometheus_requests,
            },
            messengers: &self.messengers,
            error: None,
        }
    }
}

/// The run report of a run that ended with `result`, written to
/// `<spooldir>/caso-extract.last-run.json` (a failure to write is a warning).
/// Returns when the run ended, as the report says.
pub fn write_run_report(
    spooldir: &std::path::Path,
    started: Timestamp,
    result: &anyhow::Result<Report>,
) -> Timestamp {
    let path = spooldir.join(report::EXTRACT_FILE);
    match result {
        Ok(r) => {
            let run = RunReport::new(PROGRAM, started, r.outcome(), r.details());
            report::write_or_warn(&path, &run);
            run.ended
        }
        Err(e) => {
            let empty = Report::default();
            let details = ExtractDetails {
                error: Some(crate::exit::Chain(e).to_string()),
                ..empty.details()
            };
            let run = RunReport::new(PROGRAM, started, Outcome::Failed, details);
            report::write_or_warn(&path, &run);
            run.ended
        }
    }
}

/// The metrics' view of a run that ended at `ended` after `duration`
/// (`Err`: nothing could be done, outcome failed, with the requests it sent
/// in `failed_requests`).
pub fn metrics_run(
    result: &anyhow::Result<Report>,
    failed_requests: &RequestCounts,
    ended: Timestamp,
    duration: std::time::Duration,
) -> ExtractRun {
    let requests = |counts: &RequestCounts| {
        counts
            .by_status
            .iter()
            .map(|c| {
                (
                    c.service.service_type().to_string(),
                    c.answer.to_string(),
                    c.requests,
                )
            })
            .collect()
    };
    let Ok(r) = result else {
        return ExtractRun {
            ended,
            duration,
            outcome: None,
            failures: 1,
            requests: requests(failed_requests),
            ..ExtractRun::default()
        };
    };
    let failed = r.failed_ids();
    ExtractRun {
        ended,
        duration,
        outcome: Some(r.outcome()),
        failures: r.failures.len() as u64,
        succeeded: r
            .projects
            .iter()
            .filter(|p| !failed.contains(&p.id.as_str()))
            .map(|p| p.id.clone())
            .collect(),
        records: r
            .projects
            .iter()
            .flat_map(|p| {
                p.records
                    .iter()
                    .map(|(t, n)| (p.id.clone(), t.as_str().to_string(), *n as u64))
            })
            .collect(),
        requests: requests(&r.requests),
    }
}

const PROGRAM: &str = "caso-extract";
