//! `caso-extract`'s metrics.
//!
//! Gauges describe the last completed run; counters (`_total`) count since
//! the process started: in daemon mode across its runs, in cron mode (one
//! run per process, `--metrics-file`) the run's own, which Prometheus's
//! `rate()` and `increase()` read as a counter reset each run.
//!
//! `caso_extract_last_success_timestamp_seconds{project}` is the end of the
//! last run in which that project succeeded. A project that failed, was
//! stopped or not started in this run keeps its previous value: from the
//! previous runs of this process, and on start-up from the previous metrics
//! file (`--metrics-file`), if there is one. A run in which every project
//! succeeded (outcome `ok`) keeps only this run's projects, so a project
//! taken out of the configuration drops out then.

use std::collections::BTreeMap;
use std::time::Duration;

use super::Outputs;
use super::exposition::{Exposition, label, samples};
use crate::report::Outcome;
use crate::time::Timestamp;

const LAST_SUCCESS: &str = "caso_extract_last_success_timestamp_seconds";

/// What one run did, as the metrics need it (the extract module's `Report`
/// turned into plain values).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExtractRun {
    pub ended: Timestamp,
    pub duration: Duration,
    /// `None`: the run did nothing (Keystone refused us, no spool...); it is
    /// `failed` then.
    pub outcome: Option<Outcome>,
    /// Failures in the run (a project may have several).
    pub failures: u64,
    /// The projects extracted without a failure, in this run.
    pub succeeded: Vec<String>,
    /// Records extracted, by project and record type (`cloud`, `ip`...).
    pub records: Vec<(String, String, u64)>,
    /// OpenStack requests by service type and answer (`200`, `error`).
    pub requests: Vec<(String, String, u64)>,
}

/// The state of `caso-extract`'s metrics, and where they go.
#[derive(Debug)]
pub struct ExtractMetrics {
    outputs: Outputs,
    start: Timestamp,
    last_success: BTreeMap<String, f64>,
    requests: BTreeMap<(String, String), u64>,
    runs: BTreeMap<&'static str, u64>,
    last: Option<ExtractRun>,
}

const OUTCOMES: [Outcome; 4] = [
    Outcome::Ok,
    Outcome::Partial,
    Outcome::Failed,
    Outcome::Stopped,
];

impl ExtractMetrics {
    /// Before the first run: the previous last-success values from the
    /// previous metrics file, and (when served) the start-up exposition.
    pub fn new(outputs: Outputs) -> ExtractMetrics {
        let mut last_success = BTreeMap::new();
        if let Some(text) = outputs.previous() {
            for (labels, v) in samples(&text, LAST_SUCCESS) {
                if let Some((_, project)) = labels.into_iter().find(|(k, _)| k == "project") {
                    last_success.insert(project, v);
                }
            }
        }
        let m = ExtractMetrics {
            outputs,
            start: Timestamp::now(),
            last_success,
            requests: BTreeMap::new(),
            runs: BTreeMap::new(),
            last: None,
        };
        m.outputs.serve(&m.render());
        m
    }

    /// Whether any output is configured (else nothing needs computing).
    pub fn active(&self) -> bool {
        self.outputs.active()
    }

    /// Takes in a completed run and publishes the metrics.
    pub fn record(&mut self, run: ExtractRun) {
        let ended = run.ended.unix_seconds() as f64;
        if run.outcome == Some(Outcome::Ok) {
            self.last_success.clear();
        }
        for p in &run.succeeded {
            self.last_success.insert(p.clone(), ended);
        }
        for (service, status, n) in &run.requests {
            *self
                .requests
                .entry((service.clone(), status.clone()))
                .or_default() += n;
        }
        *self
            .runs
            .entry(outcome_name(run.outcome.unwrap_or(Outcome::Failed)))
            .or_default() += 1;
        self.last = Some(run);
        self.outputs.publish(&self.render());
    }

    /// The exposition of the current state.
    pub fn render(&self) -> String {
        let mut e = Exposition::new();
        e.gauge(
            "caso_extract_start_time_seconds",
            "When this caso-extract process started, in seconds since the epoch.",
            [(vec![], self.start.unix_seconds() as f64)],
        );
        e.counter(
            "caso_extract_runs",
            "Runs completed by this process, by outcome (cron mode: 1, the run itself).",
            self.runs
                .iter()
                .map(|(o, n)| (vec![label("outcome", o)], *n)),
        );
        e.counter(
            "caso_extract_api_requests",
            "OpenStack API requests (every attempt) by service type and HTTP status, error when no answer came; since the process started (cron mode: in the run).",
            self.requests
                .iter()
                .map(|((s, c), n)| (vec![label("service", s), label("status", c)], *n)),
        );
        e.gauge(
            LAST_SUCCESS,
            "End of the last run in which the project was extracted without failure, in seconds since the epoch.",
            self.last_success
                .iter()
                .map(|(p, t)| (vec![label("project", p)], *t)),
        );
        let Some(run) = &self.last else {
            return e.render();
        };
        let outcome = run.outcome.unwrap_or(Outcome::Failed);
        e.gauge_int(
            "caso_extract_last_run_outcome",
            "1 for the outcome of the last run (ok, partial, failed, stopped), 0 for the others.",
            OUTCOMES.map(|o| {
                (
                    vec![label("outcome", outcome_name(o))],
                    i64::from(o == outcome),
                )
            }),
        );
        e.gauge(
            "caso_extract_last_run_timestamp_seconds",
            "End of the last run, whatever its outcome, in seconds since the epoch.",
            [(vec![], run.ended.unix_seconds() as f64)],
        );
        e.gauge(
            "caso_extract_run_duration_seconds",
            "How long the last run took.",
            [(vec![], run.duration.as_secs_f64())],
        );
        e.gauge_int(
            "caso_extract_run_failures",
            "Failures in the last run (a project can have several; see the run report).",
            [(vec![], clamp(run.failures))],
        );
        e.gauge_int(
            "caso_extract_records",
            "Records extracted in the last run, by project and record type.",
            run.records
                .iter()
                .map(|(p, t, n)| (vec![label("project", p), label("type", t)], clamp(*n))),
        );
        e.render()
    }
}

pub(super) fn outcome_name(o: Outcome) -> &'static str {
    match o {
        Outcome::Ok => "ok",
        Outcome::Partial => "partial",
        Outcome::Failed => "failed",
        Outcome::Stopped => "stopped",
    }
}

pub(super) fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(outcome: Outcome, ended: i64, succeeded: &[&str]) -> ExtractRun {
        ExtractRun {
            ended: Timestamp::from_unix(ended),
            duration: Duration::from_millis(2500),
            outcome: Some(outcome),
            failures: if outcome == Outcome::Ok { 0 } else { 1 },
            succeeded: succeeded.iter().map(|s| s.to_string()).collect(),
            records: vec![
                ("p1".into(), "cloud".into(), 4),
                ("p1".into(), "ip".into(), 1),
            ],
            requests: vec![
                ("compute".into(), "200".into(), 5),
                ("identity".into(), "201".into(), 1),
                ("compute".into(), "error".into(), 2),
            ],
        }
    }

    #[test]
    fn renders_the_last_run_and_the_counters_since_start() {
        let mut m = ExtractMetrics::new(Outputs::default());
        m.start = Timestamp::from_unix(1_700_000_000);
        let before = m.render();
        assert!(
            before.contains("caso_extract_start_time_seconds 1700000000.0\n"),
            "{before}"
        );
        assert!(!before.contains("caso_extract_records"), "{before}");
        m.record(run(Outcome::Ok, 1_700_000_100, &["p1", "p2"]));
        m.record(run(Outcome::Partial, 1_700_003_700, &["p2"]));
        let text = m.render();
        let want = "\
# HELP caso_extract_start_time_seconds When this caso-extract process started, in seconds since the epoch.
# TYPE caso_extract_start_time_seconds gauge
caso_extract_start_time_seconds 1700000000.0
# HELP caso_extract_runs_total Runs completed by this process, by outcome (cron mode: 1, the run itself).
# TYPE caso_extract_runs_total counter
caso_extract_runs_total{outcome=\"ok\"} 1
caso_extract_runs_total{outcome=\"partial\"} 1
# HELP caso_extract_api_requests_total OpenStack API requests (every attempt) by service type and HTTP status, error when no answer came; since the process started (cron mode: in the run).
# TYPE caso_extract_api_requests_total counter
caso_extract_api_requests_total{service=\"compute\",status=\"200\"} 10
caso_extract_api_requests_total{service=\"compute\",status=\"error\"} 4
caso_extract_api_requests_total{service=\"identity\",status=\"201\"} 2
# HELP caso_extract_last_success_timestamp_seconds End of the last run in which the project was extracted without failure, in seconds since the epoch.
# TYPE caso_extract_last_success_timestamp_seconds gauge
caso_extract_last_success_timestamp_seconds{project=\"p1\"} 1700000100.0
caso_extract_last_success_timestamp_seconds{project=\"p2\"} 1700003700.0
# HELP caso_extract_last_run_outcome 1 for the outcome of the last run (ok, partial, failed, stopped), 0 for the others.
# TYPE caso_extract_last_run_outcome gauge
caso_extract_last_run_outcome{outcome=\"failed\"} 0
caso_extract_last_run_outcome{outcome=\"ok\"} 0
caso_extract_last_run_outcome{outcome=\"partial\"} 1
caso_extract_last_run_outcome{outcome=\"stopped\"} 0
# HELP caso_extract_last_run_timestamp_seconds End of the last run, whatever its outcome, in seconds since the epoch.
# TYPE caso_extract_last_run_timestamp_seconds gauge
caso_extract_last_run_timestamp_seconds 1700003700.0
# HELP caso_extract_run_duration_seconds How long the last run took.
# TYPE caso_extract_run_duration_seconds gauge
caso_extract_run_duration_seconds 2.5
# HELP caso_extract_run_failures Failures in the last run (a project can have several; see the run report).
# TYPE caso_extract_run_failures gauge
caso_extract_run_failures 1
# HELP caso_extract_records Records extracted in the last run, by project and record type.
# TYPE caso_extract_records gauge
caso_extract_records{project=\"p1\",type=\"cloud\"} 4
caso_extract_records{project=\"p1\",type=\"ip\"} 1
";
        assert_eq!(text, want);
        // A clean run keeps only its own projects.
        m.record(run(Outcome::Ok, 1_700_007_300, &["p2"]));
        let text = m.render();
        assert!(!text.contains("project=\"p1\"} 17"), "{text}");
        assert!(
            text.contains(
                "caso_extract_last_success_timestamp_seconds{project=\"p2\"} 1700007300.0\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn the_previous_file_carries_the_last_success_of_projects_that_failed() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("caso.prom");
        let mut m = ExtractMetrics::new(Outputs::file(path.clone()));
        m.record(run(Outcome::Ok, 1_700_000_100, &["p1", "p2"]));
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o7777 & !0o022, 0o644, "{mode:o}");
        // The next process: p2 fails.
        let mut m = ExtractMetrics::new(Outputs::file(path.clone()));
        m.record(run(Outcome::Partial, 1_700_003_700, &["p1"]));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains(
                "caso_extract_last_success_timestamp_seconds{project=\"p1\"} 1700003700.0\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "caso_extract_last_success_timestamp_seconds{project=\"p2\"} 1700000100.0\n"
            ),
            "{text}"
        );
        // The counters are the run's own.
        assert!(
            text.contains("caso_extract_runs_total{outcome=\"partial\"} 1\n"),
            "{text}"
        );
        assert!(!text.contains("outcome=\"ok\"} 1"), "{text}");
    }
}
