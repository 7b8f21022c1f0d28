//! `ssmsend`'s metrics: gauges of the last completed run, counters since
//! the process started (cron mode: the run's own), as for `caso-extract`.
//!
//! `ssmsend_last_success_timestamp_seconds` is the end of the last run with
//! outcome `ok`; a run that is not `ok` keeps the previous value (from this
//! process, or on start-up from the previous metrics file).

use std::collections::BTreeMap;
use std::time::Duration;

use super::Outputs;
use super::exposition::{Exposition, label, samples};
use super::extract::{clamp, outcome_name};
use crate::report::Outcome;
use crate::time::Timestamp;

const LAST_SUCCESS: &str = "ssmsend_last_success_timestamp_seconds";

/// What one sending run did, as the metrics need it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SendRun {
    pub ended: Timestamp,
    pub duration: Duration,
    pub outcome: Option<Outcome>,
    /// Messages by what became of them (`sent`, `rejected`, `unsent`...).
    pub messages: Vec<(&'static str, u64)>,
    /// Messages in the queue after the run.
    pub queue_depth: u64,
    /// Age of the oldest message in the queue after the run, when known
    /// (none when the queue is empty).
    pub oldest_age: Option<Duration>,
}

/// The state of `ssmsend`'s metrics, and where they go.
#[derive(Debug)]
pub struct SendMetrics {
    outputs: Outputs,
    start: Timestamp,
    last_success: Option<f64>,
    messages: BTreeMap<&'static str, u64>,
    runs: BTreeMap<&'static str, u64>,
    last: Option<SendRun>,
}

impl SendMetrics {
    /// Before the first run: the previous last-success time from the
    /// previous metrics file, and (when served) the start-up exposition.
    pub fn new(outputs: Outputs) -> SendMetrics {
        let last_success = outputs
            .previous()
            .and_then(|text| samples(&text, LAST_SUCCESS).into_iter().next())
            .map(|(_, v)| v);
        let m = SendMetrics {
            outputs,
            start: Timestamp::now(),
            last_success,
            messages: BTreeMap::new(),
            runs: BTreeMap::new(),
            last: None,
        };
        m.outputs.serve(&m.render());
        m
    }

    pub fn active(&self) -> bool {
        self.outputs.active()
    }

    /// Takes in a completed run and publishes the metrics.
    pub fn record(&mut self, run: SendRun) {
        if run.outcome == Some(Outcome::Ok) {
            self.last_success = Some(run.ended.unix_seconds() as f64);
        }
        for (outcome, n) in &run.messages {
            *self.messages.entry(outcome).or_default() += n;
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
            "ssmsend_start_time_seconds",
            "When this ssmsend process started, in seconds since the epoch.",
            [(vec![], self.start.unix_seconds() as f64)],
        );
        e.counter(
            "ssmsend_runs",
            "Runs completed by this process, by outcome (cron mode: 1, the run itself).",
            self.runs
                .iter()
                .map(|(o, n)| (vec![label("outcome", o)], *n)),
        );
        e.counter(
            "ssmsend_messages",
            "Messages by what became of them (sent, rejected, unsent, locked_elsewhere, not_removed, not_a_message); since the process started (cron mode: in the run).",
            self.messages
                .iter()
                .map(|(o, n)| (vec![label("outcome", o)], *n)),
        );
        if let Some(t) = self.last_success {
            e.gauge(
                LAST_SUCCESS,
                "End of the last run that sent everything it found (outcome ok), in seconds since the epoch.",
                [(vec![], t)],
            );
        }
        let Some(run) = &self.last else {
            return e.render();
        };
        let outcome = run.outcome.unwrap_or(Outcome::Failed);
        e.gauge_int(
            "ssmsend_last_run_outcome",
            "1 for the outcome of the last run (ok, partial, failed, stopped), 0 for the others.",
            [
                Outcome::Ok,
                Outcome::Partial,
                Outcome::Failed,
                Outcome::Stopped,
            ]
            .map(|o| {
                (
                    vec![label("outcome", outcome_name(o))],
                    i64::from(o == outcome),
                )
            }),
        );
        e.gauge(
            "ssmsend_last_run_timestamp_seconds",
            "End of the last run, whatever its outcome, in seconds since the epoch.",
            [(vec![], run.ended.unix_seconds() as f64)],
        );
        e.gauge(
            "ssmsend_run_duration_seconds",
            "How long the last run took.",
            [(vec![], run.duration.as_secs_f64())],
        );
        e.gauge_int(
            "ssmsend_queue_depth",
            "Messages left in the queue after the last run.",
            [(vec![], clamp(run.queue_depth))],
        );
        if let Some(age) = run.oldest_age {
            e.gauge(
                "ssmsend_oldest_message_age_seconds",
                "Age of the oldest message in the queue after the last run (none when it is empty).",
                [(vec![], age.as_secs_f64())],
            );
        }
        e.render()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(outcome: Outcome, ended: i64, sent: u64, unsent: u64) -> SendRun {
        SendRun {
            ended: Timestamp::from_unix(ended),
            duration: Duration::from_millis(750),
            outcome: Some(outcome),
            messages: vec![("sent", sent), ("unsent", unsent), ("rejected", 0)],
            queue_depth: unsent,
            oldest_age: None,
        }
    }

    #[test]
    fn renders_the_last_run_counts_since_start_and_keeps_the_last_success() {
        let mut m = SendMetrics::new(Outputs::default());
        m.start = Timestamp::from_unix(1_700_000_000);
        assert!(!m.render().contains("ssmsend_last_success"));
        m.record(run(Outcome::Ok, 1_700_000_100, 3, 0));
        m.record(run(Outcome::Partial, 1_700_003_700, 1, 2));
        let want = "\
# HELP ssmsend_start_time_seconds When this ssmsend process started, in seconds since the epoch.
# TYPE ssmsend_start_time_seconds gauge
ssmsend_start_time_seconds 1700000000.0
# HELP ssmsend_runs_total Runs completed by this process, by outcome (cron mode: 1, the run itself).
# TYPE ssmsend_runs_total counter
ssmsend_runs_total{outcome=\"ok\"} 1
ssmsend_runs_total{outcome=\"partial\"} 1
# HELP ssmsend_messages_total Messages by what became of them (sent, rejected, unsent, locked_elsewhere, not_removed, not_a_message); since the process started (cron mode: in the run).
# TYPE ssmsend_messages_total counter
ssmsend_messages_total{outcome=\"rejected\"} 0
ssmsend_messages_total{outcome=\"sent\"} 4
ssmsend_messages_total{outcome=\"unsent\"} 2
# HELP ssmsend_last_success_timestamp_seconds End of the last run that sent everything it found (outcome ok), in seconds since the epoch.
# TYPE ssmsend_last_success_timestamp_seconds gauge
ssmsend_last_success_timestamp_seconds 1700000100.0
# HELP ssmsend_last_run_outcome 1 for the outcome of the last run (ok, partial, failed, stopped), 0 for the others.
# TYPE ssmsend_last_run_outcome gauge
ssmsend_last_run_outcome{outcome=\"failed\"} 0
ssmsend_last_run_outcome{outcome=\"ok\"} 0
ssmsend_last_run_outcome{outcome=\"partial\"} 1
ssmsend_last_run_outcome{outcome=\"stopped\"} 0
# HELP ssmsend_last_run_timestamp_seconds End of the last run, whatever its outcome, in seconds since the epoch.
# TYPE ssmsend_last_run_timestamp_seconds gauge
ssmsend_last_run_timestamp_seconds 1700003700.0
# HELP ssmsend_run_duration_seconds How long the last run took.
# TYPE ssmsend_run_duration_seconds gauge
ssmsend_run_duration_seconds 0.75
# HELP ssmsend_queue_depth Messages left in the queue after the last run.
# TYPE ssmsend_queue_depth gauge
ssmsend_queue_depth 2
";
        assert_eq!(m.render(), want);
    }

    #[test]
    fn the_previous_file_carries_the_last_success() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("ssmsend.prom");
        let mut m = SendMetrics::new(Outputs::file(path.clone()));
        m.record(run(Outcome::Ok, 1_700_000_100, 3, 0));
        let mut m = SendMetrics::new(Outputs::file(path.clone()));
        m.record(run(Outcome::Failed, 1_700_003_700, 0, 3));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("ssmsend_last_success_timestamp_seconds 1700000100.0\n"),
            "{text}"
        );
        assert!(
            text.contains("ssmsend_messages_total{outcome=\"unsent\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("ssmsend_queue_depth 3\n"), "{text}");
    }
}
