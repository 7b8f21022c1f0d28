//! What a run reports: every [`Failure`] (one thing that went wrong with
//! one project) and the [`Report`] of the run, which [`super::summarize`]
//! turns into the line that ends the run.

use std::fmt;

use super::Period;
use crate::openstack::RequestCounts;
use crate::record::RecordType;
use crate::time::Timestamp;

/// One thing that went wrong with one project.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The project id (or the configured entry when it could not be resolved).
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectReport {
    pub id: String,
    pub period: Option<Period>,
    /// Records extracted, by type.
    pub records: Vec<(RecordType, usize)>,
    /// Messages durably added to the spool (a dry run: printed).
    pub messages: usize,
    /// The records in those messages.
    pub records_spooled: usize,
    /// Records taken by the `logstash`, `noop` and `greendigit_cim` messengers.
    pub records_pushed: usize,
    /// The same by messenger (its `describe()`), in messenger order.
    pub pushed: Vec<(String, usize)>,
    /// The lastrun written, if any.
    pub lastrun: Option<Timestamp>,
}
