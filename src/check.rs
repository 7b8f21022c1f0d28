//! `--check` of both programs: every problem a real run would refuse, listed
//! at once, then one verdict.
//!
//! Lines go to stdout as `ok: ...`, `warning: ...` or `error: ...`, each
//! naming the file, option or endpoint; the last line is `ready` (exit 0) or
//! `not ready: ...` (exit 2 when any problem is the operator's to fix, as in
//! a real run; exit 1 when the only problems are endpoints that cannot be
//! reached now, which a real run also reports as a runtime failure). No
//! secret is ever part of a line: each comes from an error or a setting that
//! is already safe to log.

use std::fmt::Display;
use std::io::Write;

use anyhow::{Context, anyhow};

use crate::exit;

/// How the connection checks of `--check-network` wait at most per endpoint.
pub const NETWORK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// What one check found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Warning,
    /// A real run would refuse it as a configuration error (exit 2).
    Error,
    /// A real run would fail on it at run time (an unreachable endpoint: exit 1).
    Failure,
}

/// The lines of one `--check`.
#[derive(Debug, Default)]
pub struct Report {
    lines: Vec<(Outcome, String)>,
}

impl Report {
    pub fn ok(&mut self, line: impl Display) {
        self.lines.push((Outcome::Ok, line.to_string()));
    }

    pub fn warning(&mut self, line: impl Display) {
        self.lines.push((Outcome::Warning, line.to_string()));
    }

    pub fn error(&mut self, line: impl Display) {
        self.lines.push((Outcome::Error, line.to_string()));
    }

    /// An error of a real run, filed as that run would exit: a configuration
    /// or usage error ([`exit::is_usage`]) as an error, anything else as a
    /// runtime failure. `context` says what was checked.
    pub fn failed(&mut self, context: impl Display, e: &anyhow::Error) {
        let outcome = if exit::is_usage(e) {
            Outcome::Error
        } else {
            Outcome::Failure
        };
        self.lines
            .push((outcome, format!("{context}: {}", exit::Chain(e))));
    }

    pub fn count(&self, outcome: Outcome) -> usize {
        self.lines.iter().filter(|(o, _)| *o == outcome).count()
    }

    /// Prints every line and the verdict to stdout; `Err` (exit 2 or 1) when
    /// anything would stop a real run.
    pub fn finish(&self) -> anyhow::Result<()> {
        let mut out = std::io::stdout().lock();
        for (outcome, line) in &self.lines {
            let tag = match outcome {
                Outcome::Ok => "ok",
                Outcome::Warning => "warning",
                Outcome::Error | Outcome::Failure => "error",
            };
            writeln!(out, "{tag}: {line}").context("cannot write to stdout")?;
        }
        let (errors, failures, warnings) = (
            self.count(Outcome::Error),
            self.count(Outcome::Failure),
            self.count(Outcome::Warning),
        );
        let problems = errors + failures;
        let warned = match warnings {
            0 => String::new(),
            1 => " (1 warning)".into(),
            n => format!(" ({n} warnings)"),
        };
        if problems == 0 {
            writeln!(out, "ready{warned}").context("cannot write to stdout")?;
            return out.flush().context("cannot write to stdout");
        }
        let verdict = format!(
            "not ready: {problems} problem{} listed above{warned}",
            if problems == 1 { "" } else { "s" }
        );
        writeln!(out, "{verdict}").context("cannot write to stdout")?;
        out.flush().context("cannot write to stdout")?;
        if errors > 0 {
            Err(exit::usage(anyhow!(verdict)))
        } else {
            Err(anyhow!(verdict))
        }
    }
}

/// Checks that the spool directory `dir` (named by the option `what`) can
/// take new files, or, when it does not exist yet, that it can be created
/// in its nearest existing ancestor.
pub fn writable_dir(report: &mut Report, dir: &std::path::Path, what: &str) {
    if dir.is_dir() {
        match crate::spool::check_writable(dir, what) {
            Ok(()) => report.ok(format_args!("{what} {}: writable", dir.display())),
            Err(e) => report.error(e),
        }
        return;
    }
    if dir.exists() {
        report.error(format_args!("{what} {} is not a directory", dir.display()));
        return;
    }
    let Some(parent) = crate::spool::nearest_existing(dir) else {
        report.error(format_args!(
            "{what} {}: no part of it exists",
            dir.display()
        ));
        return;
    };
    match crate::spool::check_writable(parent, "the directory it would be created in") {
        Ok(()) => report.ok(format_args!(
            "{what} {}: does not exist yet, can be created in {}",
            dir.display(),
            parent.display()
        )),
        Err(e) => report.error(format_args!(
            "{what} {} does not exist and cannot be created: {e}",
            dir.display()
        )),
    }
}
