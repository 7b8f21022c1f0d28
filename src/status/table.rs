//! `status` for people: short sections, aligned columns, ages next to times.

use std::fmt::Write;

use super::{ExtractStatus, LastRun, ProjectOutcome, QueueStatus, RunCounts, SendStatus};
use crate::time::Timestamp;

/// An age in the largest two units: `45s`, `12m05s`, `3h05m`, `2d04h`;
/// negative ages (a clock that went back) say so.
pub fn age_text(secs: i64) -> String {
    if secs < 0 {
        return format!("{} in the future", age_text(secs.saturating_neg()));
    }
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d{h:02}h")
    } else if h > 0 {
        format!("{h}h{m:02}m")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{s}s")
    }
}

fn time(t: Option<Timestamp>) -> String {
    t.map_or_else(|| "-".to_owned(), |t| t.truncate_to_second().to_rfc3339())
}

fn ago(age: Option<i64>) -> String {
    age.map_or_else(|| "-".to_owned(), age_text)
}

/// Rows as columns padded to the widest cell, two spaces apart, indented.
fn columns(rows: &[Vec<String>]) -> String {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..n)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::from("  ");
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let pad = widths[i] - cell.chars().count();
                let _ = write!(line, "{cell}{:pad$}  ", "");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn last_run(label: &str, run: Option<&LastRun>) -> String {
    let Some(r) = run else {
        return format!("{label}: none recorded\n");
    };
    let counts = match &r.counts {
        RunCounts::Extract {
            projects,
            failed_projects,
            records,
        } => {
            let total: u64 = records.values().sum();
            format!("{projects} projects, {failed_projects} failed, {total} records extracted")
        }
        RunCounts::Send {
            destination,
            via,
            found,
            sent,
            rejected,
            left,
        } => format!(
            "{found} found, {sent} sent, {rejected} rejected, {left} left ({destination} via {via})"
        ),
    };
    let mut s = format!(
        "{label}: {}, ended {} ({} ago): {counts}\n",
        r.outcome.as_str(),
        time(Some(r.ended)),
        age_text(r.age_seconds)
    );
    if let Some(e) = &r.error {
        let _ = writeln!(s, "  error: {e}");
    }
    s
}

fn queue(q: &QueueStatus) -> String {
    let mut s = format!("Queue {} ({}): ", q.path.display(), q.layout);
    if !q.exists {
        s.push_str("does not exist (nothing spooled yet?)\n");
        return s;
    }
    match q.oldest_added {
        Some(t) => {
            let _ = writeln!(
                s,
                "{} messages, oldest added {} ({} ago)",
                q.messages,
                time(Some(t)),
                ago(q.oldest_age_seconds)
            );
        }
        None => {
            let _ = writeln!(s, "{} messages", q.messages);
        }
    }
    let _ = writeln!(
        s,
        "  locked: {}, temporary files: {}, not messages: {}",
        q.locked.len(),
        q.temporary_files,
        q.not_messages.len()
    );
    let mut rows = Vec::new();
    for l in &q.locked {
        rows.push(vec![
            format!("locked {}", l.id),
            format!("since {}", time(l.since)),
            format!("({} ago)", ago(l.age_seconds)),
        ]);
    }
    s.push_str(&columns(&rows));
    for bad in &q.not_messages {
        let _ = writeln!(s, "  not a message: {bad}");
    }
    let r = &q.rejected;
    let _ = writeln!(s, "Rejected {}: {}", r.dir.display(), r.count);
    let rows: Vec<Vec<String>> = r
        .newest
        .iter()
        .map(|m| {
            vec![
                time(m.when),
                m.name.clone(),
                m.reason
                    .clone()
                    .unwrap_or_else(|| "(no reason file)".into()),
            ]
        })
        .collect();
    s.push_str(&columns(&rows));
    if r.count > r.newest.len() {
        let _ = writeln!(s, "  ... and {} older", r.count - r.newest.len());
    }
    s
}

fn problems(list: &[String]) -> String {
    let mut s = String::new();
    for p in list {
        let _ = writeln!(s, "Problem: {p}");
    }
    s
}

/// `caso-extract status`.
pub fn extract(st: &ExtractStatus) -> String {
    let mut s = format!(
        "caso-extract status at {} (spooldir {})\n",
        time(Some(st.now)),
        st.spooldir.display()
    );
    if st.projects.is_empty() {
        s.push_str("Projects: none extracted yet\n");
    } else {
        let mut rows = vec![vec![
            "PROJECT".to_owned(),
            "LASTRUN".to_owned(),
            "AGE".to_owned(),
            "LAST PERIOD".to_owned(),
            "LAST RUN".to_owned(),
        ]];
        for p in &st.projects {
            let period = p.period.map_or_else(
                || "-".to_owned(),
                |p| format!("{} to {}", time(Some(p.from)), time(Some(p.to))),
            );
            let outcome = match (p.outcome, &p.error) {
                (_, Some(e)) => format!("failed: {e}"),
                (Some(ProjectOutcome::Ok), None) => "ok".to_owned(),
                (Some(ProjectOutcome::Failed), None) => "failed".to_owned(),
                (None, None) => "-".to_owned(),
            };
            rows.push(vec![
                p.id.clone(),
                p.lastrun
                    .map_or_else(|| "never".to_owned(), |t| time(Some(t))),
                ago(p.lastrun_age_seconds),
                period,
                outcome,
            ]);
        }
        s.push_str("Projects:\n");
        s.push_str(&columns(&rows));
        for p in &st.projects {
            if let Some(e) = &p.lastrun_error {
                let _ = writeln!(s, "  {}: {e}", p.id);
            }
        }
    }
    s.push_str(&last_run("Last run", st.last_run.as_ref()));
    if let Some(q) = &st.queue {
        s.push_str(&queue(q));
        s.push_str(&last_run("Last send", st.last_send.as_ref()));
    }
    s.push_str(&problems(&st.problems));
    s
}

/// `ssmsend status`.
pub fn send(st: &SendStatus) -> String {
    let mut s = format!("ssmsend status at {}\n", time(Some(st.now)));
    s.push_str(&queue(&st.queue));
    s.push_str(&last_run("Last send", st.last_send.as_ref()));
    s.push_str(&problems(&st.problems));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_use_the_two_largest_units() {
        assert_eq!(age_text(0), "0s");
        assert_eq!(age_text(59), "59s");
        assert_eq!(age_text(61), "1m01s");
        assert_eq!(age_text(3600 + 300), "1h05m");
        assert_eq!(age_text(26 * 3600), "1d02h");
        assert_eq!(age_text(-90), "1m30s in the future");
        assert_eq!(age_text(i64::MIN), age_text(i64::MAX) + " in the future");
    }

    #[test]
    fn columns_align_on_the_widest_cell() {
        let rows = vec![
            vec!["a".to_owned(), "bb".to_owned(), "c".to_owned()],
            vec!["aaa".to_owned(), "b".to_owned(), "last".to_owned()],
        ];
        assert_eq!(columns(&rows), "  a    bb  c\n  aaa  b   last\n");
    }
}
