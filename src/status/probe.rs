//! `status --check`: a monitoring probe following the Nagios plugin
//! guidelines that EGI's ARGO uses. One line,
//! `OK|WARNING|CRITICAL|UNKNOWN - summary | perfdata`, and the exit code
//! 0, 1, 2 or 3. This is the only place the programs use those codes.

use std::fmt::Write;
use std::time::Duration;

use super::table::age_text;
use super::{ExtractStatus, RunCounts, SendStatus};

/// Ages that make a probe WARNING, then CRITICAL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    pub warn: Duration,
    pub crit: Duration,
}

/// Extraction (cron: hourly): a project not extracted for 3 h is late, for
/// 26 h (a day and a missed run) it is lost for the day.
pub const EXTRACT: Thresholds = Thresholds {
    warn: Duration::from_secs(3 * 3600),
    crit: Duration::from_secs(26 * 3600),
};

/// The oldest queued message (the appliance sends every 6 h): one missed
/// send is late, a day and more is an outage.
pub const QUEUE: Thresholds = Thresholds {
    warn: Duration::from_secs(7 * 3600),
    crit: Duration::from_secs(30 * 3600),
};

/// A plugin state; the order is severity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum State {
    Ok = 0,
    Warning = 1,
    Critical = 2,
    Unknown = 3,
}

impl State {
    fn label(self) -> &'static str {
        match self {
            State::Ok => "OK",
            State::Warning => "WARNING",
            State::Critical => "CRITICAL",
            State::Unknown => "UNKNOWN",
        }
    }

    /// The plugin exit code.
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// The probe's answer: its state and the one line to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub state: State,
    pub line: String,
}

/// UNKNOWN: the probe could not judge (bad configuration, unreadable
/// queue). Only the first line of `why` is kept.
pub fn unknown(why: &str) -> Verdict {
    let first = why.lines().next().unwrap_or("").trim();
    Verdict {
        state: State::Unknown,
        line: format!("UNKNOWN - {}", sanitize(first)),
    }
}

/// `|` separates perfdata: never in the summary.
fn sanitize(s: &str) -> String {
    s.replace('|', "/")
}

impl Thresholds {
    /// The state an age gives and the threshold it is over (`None`: OK).
    fn exceeded(&self, age_secs: i64) -> Option<(State, Duration)> {
        let age = u64::try_from(age_secs).unwrap_or(0);
        if age > self.crit.as_secs() {
            Some((State::Critical, self.crit))
        } else if age > self.warn.as_secs() {
            Some((State::Warning, self.warn))
        } else {
            None
        }
    }

    /// `;warn;crit;0` for an age in seconds.
    fn perf(&self) -> String {
        format!(";{};{};0", self.warn.as_secs(), self.crit.as_secs())
    }
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// A threshold as given: `3h`, `26h`, `90m`, else [`age_text`].
fn limit(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        s if s > 0 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s > 0 && s % 60 == 0 => format!("{}m", s / 60),
        s => age_text(i64::try_from(s).unwrap_or(i64::MAX)),
    }
}

/// The findings, worst first, as one summary: at most three, then a count.
fn verdict(mut findings: Vec<(State, String)>, ok_summary: String, perfdata: String) -> Verdict {
    findings.sort_by_key(|f| std::cmp::Reverse(f.0));
    let state = findings.first().map_or(State::Ok, |f| f.0);
    let summary = if findings.is_empty() {
        ok_summary
    } else {
        let mut s: Vec<String> = findings.iter().take(3).map(|f| f.1.clone()).collect();
        if findings.len() > 3 {
            s.push(format!("and {} more", findings.len() - 3));
        }
        s.join("; ")
    };
    Verdict {
        state,
        line: format!("{} - {} | {perfdata}", state.label(), sanitize(&summary)),
    }
}

/// `caso-extract status --check`: every project's lastrun against `t`;
/// a last run that failed, or a file that cannot be read, is WARNING.
pub fn extract(st: &ExtractStatus, t: Thresholds) -> Verdict {
    let mut findings = Vec::new();
    if st.projects.is_empty() {
        findings.push((
            State::Critical,
            format!(
                "nothing extracted yet: no lastrun file in {}",
                st.spooldir.display()
            ),
        ));
    }
    let mut never = 0;
    let mut oldest: Option<i64> = None;
    for p in &st.projects {
        if let Some(e) = &p.lastrun_error {
            findings.push((State::Critical, format!("project {}: {e}", p.id)));
            continue;
        }
        match p.lastrun_age_seconds {
            None => {
                never += 1;
                findings.push((State::Critical, format!("project {} never extracted", p.id)));
            }
            Some(age) => {
                oldest = Some(oldest.map_or(age, |o| o.max(age)));
                if let Some((state, over)) = t.exceeded(age) {
                    findings.push((
                        state,
                        format!(
                            "project {} last extracted {} ago (more than {})",
                            p.id,
                            age_text(age),
                            limit(over)
                        ),
                    ));
                }
            }
        }
    }
    let mut failed = 0;
    if let Some(run) = &st.last_run {
        if let RunCounts::Extract {
            failed_projects, ..
        } = run.counts
        {
            failed = failed_projects;
        }
        if run.outcome.is_bad() {
            let why = run.error.clone().or_else(|| {
                st.projects
                    .iter()
                    .find_map(|p| p.error.as_ref().map(|e| format!("{}: {e}", p.id)))
            });
            findings.push((
                State::Warning,
                match why {
                    Some(w) => format!("last run {}: {w}", run.outcome.as_str()),
                    None => format!("last run {}", run.outcome.as_str()),
                },
            ));
        }
    }
    for p in &st.problems {
        findings.push((State::Warning, p.clone()));
    }
    let ok = format!(
        "{}, oldest lastrun {} ago{}",
        plural(st.projects.len(), "project"),
        oldest.map_or_else(|| "-".into(), age_text),
        st.last_run.as_ref().map_or_else(String::new, |r| format!(
            "; last run {} {} ago",
            r.outcome.as_str(),
            age_text(r.age_seconds)
        ))
    );
    let mut perf = format!(
        "projects={};;;0 never_extracted={never};;;0 oldest_lastrun_age={}s{} failed_projects={failed};;;0",
        st.projects.len(),
        oldest.unwrap_or(0).max(0),
        t.perf()
    );
    if let Some(r) = &st.last_run {
        let _ = write!(perf, " last_run_age={}s;;;0", r.age_seconds.max(0));
    }
    verdict(findings, ok, perf)
}

/// `ssmsend status --check`: the oldest queued message against `t`; any
/// rejected message, an entry that is not a message, a last send that
/// failed, or a file that cannot be read is WARNING.
pub fn send(st: &SendStatus, t: Thresholds) -> Verdict {
    let q = &st.queue;
    if !q.exists {
        return unknown(&format!("queue {} does not exist", q.path.display()));
    }
    let mut findings = Vec::new();
    if let Some(age) = q.oldest_age_seconds
        && let Some((state, over)) = t.exceeded(age)
    {
        findings.push((
            state,
            format!(
                "{} queued, the oldest added {} ago (more than {})",
                plural(q.messages, "message"),
                age_text(age),
                limit(over)
            ),
        ));
    }
    if q.rejected.count > 0 {
        let newest = q.rejected.newest.first().and_then(|m| m.reason.clone());
        findings.push((
            State::Warning,
            format!(
                "{} rejected in {}{}",
                q.rejected.count,
                q.rejected.dir.display(),
                newest.map_or_else(String::new, |r| format!(" (newest: {r})"))
            ),
        ));
    }
    if !q.not_messages.is_empty() {
        findings.push((
            State::Warning,
            format!(
                "{} entries in the queue are not messages",
                q.not_messages.len()
            ),
        ));
    }
    if let Some(run) = &st.last_send
        && run.outcome.is_bad()
    {
        findings.push((
            State::Warning,
            match &run.error {
                Some(e) => format!("last send {}: {e}", run.outcome.as_str()),
                None => format!("last send {}", run.outcome.as_str()),
            },
        ));
    }
    for p in &st.problems {
        findings.push((State::Warning, p.clone()));
    }
    let queued = match q.oldest_age_seconds {
        Some(age) if q.messages > 0 => {
            format!(
                "{} queued, oldest added {} ago",
                plural(q.messages, "message"),
                age_text(age)
            )
        }
        _ => "queue empty".to_owned(),
    };
    let ok = format!(
        "{queued}{}",
        st.last_send.as_ref().map_or_else(String::new, |r| format!(
            "; last send {} {} ago",
            r.outcome.as_str(),
            age_text(r.age_seconds)
        ))
    );
    let mut perf = format!(
        "queued={};;;0 oldest_age={}s{} rejected={};0;;0 locked={};;;0 not_messages={};0;;0",
        q.messages,
        q.oldest_age_seconds.unwrap_or(0).max(0),
        t.perf(),
        q.rejected.count,
        q.locked.len(),
        q.not_messages.len()
    );
    if let Some(r) = &st.last_send {
        let _ = write!(perf, " last_send_age={}s;;;0", r.age_seconds.max(0));
    }
    verdict(findings, ok, perf)
}
