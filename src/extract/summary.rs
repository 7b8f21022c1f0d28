//! The line that ends every extraction run, counting what really happened
//! (projects ok, failed, stopped; messages and records spooled, printed or
//! pushed), logged with the target [`crate::logging::SUMMARY`] and, in JSON,
//! its counts as fields.

use anyhow::anyhow;

use super::report::{ProjectReport, Report};
use crate::exit;

/// Logs the outcome and ends the run with its [`summary_line`] (target
/// [`crate::logging::SUMMARY`]); `Err` (exit 1, already logged: see
/// [`exit::reported`]) naming every failure when any.
pub fn summarize(report: &Report) -> anyhow::Result<()> {
    tracing::info!("OpenStack: {}", report.requests);
    if report.prometheus_requests > 0 {
        tracing::info!("Prometheus: {} queries", report.prometheus_requests);
    }
    if !report.not_started.is_empty() || !report.stopped.is_empty() {
        let ids: Vec<&str> = report
            .stopped
            .iter()
            .chain(&report.not_started)
            .map(String::as_str)
            .collect();
        tracing::warn!(
            "stopped on request: {} project(s) not started or not finished ({} stopped mid-way) keep their lastrun for the next run: {}",
            ids.len(),
            report.stopped.len(),
            ids.join(", ")
        );
    }
    let recap = (!report.failures.is_empty()).then(|| {
        let failed = failed_projects(report);
        let lines: Vec<String> = report.failures.iter().map(|f| format!("  {f}")).collect();
        format!(
            "{} project(s) failed and keep their lastrun ({}):\n{}",
            failed.len(),
            failed.join(", "),
            lines.join("\n")
        )
    });
    if let Some(recap) = &recap {
        tracing::error!("{recap}");
    }
    let c = SummaryCounts::of(report);
    let line = summary_line(report);
    macro_rules! summary {
        ($level:ident) => {
            tracing::$level!(
                target: crate::logging::SUMMARY,
                projects = c.total,
                ok = c.ok,
                failed = c.failed,
                stopped = c.stopped,
                messages = c.messages,
                records = c.records_spooled,
                records_pushed = c.records_pushed,
                records_extracted = c.records_extracted,
                dry_run = report.dry_run,
                requests = report.requests.total(),
                "{line}"
            )
        };
    }
    match &recap {
        Some(recap) => {
            summary!(error);
            Err(exit::reported(anyhow!("{line}\n{recap}")))
        }
        None if c.stopped > 0 => {
            summary!(warn);
            Ok(())
        }
        None => {
            summary!(info);
            Ok(())
        }
    }
}

/// The distinct projects (ids, or entries that were never resolved) with a
/// failure, sorted; "(none)" (no project list at all) is no project.
fn failed_projects(report: &Report) -> Vec<&str> {
    let mut failed: Vec<&str> = report.failures.iter().map(|f| f.project.as_str()).collect();
    failed.sort_unstable();
    failed.dedup();
    failed
}

/// What a run did, counted for its summary line.
#[derive(Debug, Default, PartialEq, Eq)]
struct SummaryCounts {
    total: usize,
    ok: usize,
    failed: usize,
    stopped: usize,
    messages: usize,
    records_spooled: usize,
    records_pushed: usize,
    records_extracted: usize,
}

impl SummaryCounts {
    fn of(report: &Report) -> Self {
        let failed: Vec<&str> = failed_projects(report)
            .into_iter()
            .filter(|p| *p != NO_PROJECT)
            .collect();
        let stopped = report.stopped.len() + report.not_started.len();
        let ok = report
            .projects
            .iter()
            .filter(|p| !failed.contains(&p.id.as_str()))
            .count();
        let sum = |f: fn(&ProjectReport) -> usize| report.projects.iter().map(f).sum();
        SummaryCounts {
            total: ok + failed.len() + stopped,
            ok,
            failed: failed.len(),
            stopped,
            messages: sum(|p| p.messages),
            records_spooled: sum(|p| p.records_spooled),
            records_pushed: sum(|p| p.records_pushed),
            records_extracted: sum(|p| p.records.iter().map(|(_, n)| n).sum()),
        }
    }
}

/// The project of a failure that is about no project (the list itself).
pub(super) const NO_PROJECT: &str = "(none)";

/// The run's last line, counting what really happened: `4/4 projects ok, 16
/// messages (163 records) spooled`, `2/4 projects ok, 1 failed (nova usage
/// report), 1 stopped, 8 messages (80 records) spooled`, `4/4 projects ok,
/// 16 messages (163 records) printed (dry run: nothing spooled)`.
pub fn summary_line(report: &Report) -> String {
    let c = SummaryCounts::of(report);
    let mut parts = vec![match c.total {
        0 => "no projects".to_string(),
        n => format!("{}/{n} projects ok", c.ok),
    }];
    if c.failed > 0 {
        parts.push(format!("{} failed ({})", c.failed, failure_causes(report)));
    }
    if c.stopped > 0 {
        parts.push(format!("{} stopped", c.stopped));
    }
    if report.failures.iter().any(|f| f.project == NO_PROJECT) {
        parts.push(format!("no project list ({})", failure_causes(report)));
    }
    let spooled = |what: &str| match c.messages {
        0 => format!("nothing {what}"),
        n => format!("{n} messages ({} records) {what}", c.records_spooled),
    };
    if report.dry_run {
        parts.push(format!("{} (dry run: nothing spooled)", spooled("printed")));
    } else {
        for m in &report.messengers {
            if m.starts_with("ssm ") {
                parts.push(spooled("spooled"));
            } else {
                let n: usize = report
                    .projects
                    .iter()
                    .flat_map(|p| &p.pushed)
                    .filter(|(to, _)| to == m)
                    .map(|(_, n)| n)
                    .sum();
                parts.push(format!("{n} records to the {m}"));
            }
        }
    }
    parts.join(", ")
}

/// What failed, short: when all failures are about one object (the spool,
/// say), it and the first cause; else the distinct objects (at most three).
fn failure_causes(report: &Report) -> String {
    let first = &report.failures[..report.failures.len().min(1)];
    if let [f] = first
        && report.failures.iter().all(|g| g.object == f.object)
    {
        let mut cause = f.cause.clone();
        if cause.chars().count() > 120 {
            cause = cause.chars().take(120).collect::<String>() + "...";
        }
        return format!("{}: {cause}", f.object);
    }
    let mut objects: Vec<&str> = Vec::new();
    for f in &report.failures {
        if !objects.contains(&f.object.as_str()) {
            objects.push(&f.object);
        }
    }
    let more = objects.len().saturating_sub(3);
    objects.truncate(3);
    let mut text = objects.join(", ");
    if more > 0 {
        text.push_str(&format!(" and {more} more"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::Failure;

    fn project(id: &str, messages: usize, records: usize) -> ProjectReport {
        ProjectReport {
            id: id.into(),
            period: None,
            records: Vec::new(),
            messages,
            records_spooled: records,
            records_pushed: 0,
            pushed: Vec::new(),
            lastrun: None,
        }
    }

    fn ssm() -> Vec<String> {
        vec!["ssm spool /var/spool/apel/outgoing".into()]
    }

    #[test]
    fn all_ok_and_partial() {
        let mut r = Report {
            projects: vec![project("a", 4, 40), project("b", 4, 41)],
            messengers: ssm(),
            ..Report::default()
        };
        assert_eq!(
            summary_line(&r),
            "2/2 projects ok, 8 messages (81 records) spooled"
        );
        r.failures
            .push(Failure::new("b", "nova usage report", "HTTP 503"));
        r.stopped.push("c".into());
        r.not_started.push("d".into());
        assert_eq!(
            summary_line(&r),
            "1/4 projects ok, 1 failed (nova usage report: HTTP 503), 2 stopped, 8 messages (81 records) spooled"
        );
    }

    #[test]
    fn every_project_failing_at_the_spool() {
        let spool = "ssm spool /s";
        let r = Report {
            projects: vec![project("a", 0, 0), project("b", 0, 0)],
            failures: vec![
                Failure::new("a", spool, "cannot write /s/1.tmp: Permission denied"),
                Failure::new("b", spool, "cannot write /s/2.tmp: Permission denied"),
            ],
            messengers: ssm(),
            ..Report::default()
        };
        assert_eq!(
            summary_line(&r),
            "0/2 projects ok, 2 failed (ssm spool /s: cannot write /s/1.tmp: Permission denied), nothing spooled"
        );
    }

    #[test]
    fn dry_run_other_messengers_and_no_projects() {
        let r = Report {
            projects: vec![project("a", 3, 30)],
            dry_run: true,
            ..Report::default()
        };
        assert_eq!(
            summary_line(&r),
            "1/1 projects ok, 3 messages (30 records) printed (dry run: nothing spooled)"
        );
        let mut p = project("a", 0, 0);
        p.records_pushed = 9;
        p.pushed = vec![
            ("logstash h:5000".into(), 7),
            ("greendigit_cim http://c".into(), 2),
        ];
        let r = Report {
            projects: vec![p],
            messengers: vec!["logstash h:5000".into(), "greendigit_cim http://c".into()],
            ..Report::default()
        };
        assert_eq!(
            summary_line(&r),
            "1/1 projects ok, 7 records to the logstash h:5000, 2 records to the greendigit_cim http://c"
        );
        let r = Report {
            failures: vec![Failure::new(NO_PROJECT, "project list", "cannot list")],
            messengers: ssm(),
            ..Report::default()
        };
        assert_eq!(
            summary_line(&r),
            "no projects, no project list (project list: cannot list), nothing spooled"
        );
    }

    #[test]
    fn many_distinct_failures_are_shortened() {
        let r = Report {
            projects: vec![project("a", 0, 0)],
            failures: (0..5)
                .map(|i| Failure::new("a", format!("server {i}"), "bad"))
                .collect(),
            messengers: ssm(),
            ..Report::default()
        };
        assert_eq!(
            summary_line(&r),
            "0/1 projects ok, 1 failed (server 0, server 1, server 2 and 2 more), nothing spooled"
        );
    }
}
