//! The `status` subcommand both programs have: its flags, and how its
//! answer (table, JSON, or the probe's line and plugin exit code) is printed.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use serde::Serialize;

use crate::status::probe::{self, Thresholds, Verdict};
use crate::time::Timestamp;

/// `status [--json] [--check [--warn-age D] [--crit-age D]]`.
#[derive(Args, Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusArgs {
    /// Print the status as JSON (for scripts) instead of the table.
    #[arg(long, conflicts_with = "check")]
    pub json: bool,
    /// With --check: WARNING when older than this (e.g. 3h).
    #[arg(long, value_name = "DURATION", value_parser = crate::daemon::parse_delay, requires = "check")]
    pub warn_age: Option<Duration>,
    /// With --check: CRITICAL when older than this (e.g. 26h).
    #[arg(long, value_name = "DURATION", value_parser = crate::daemon::parse_delay, requires = "check")]
    pub crit_age: Option<Duration>,
    /// Evaluate ages as of this time (RFC 3339) instead of now: for tests
    /// and for looking back.
    #[arg(long, value_name = "TIME", value_parser = parse_time, hide = true)]
    pub now: Option<Timestamp>,
}

fn parse_time(s: &str) -> Result<Timestamp, String> {
    Timestamp::parse(s).map_err(|e| e.to_string())
}

impl StatusArgs {
    pub fn now(&self) -> Timestamp {
        self.now.unwrap_or_else(Timestamp::now)
    }

    /// The flags over `default`; a warning age above the critical one is
    /// the probe's UNKNOWN.
    pub fn thresholds(&self, default: Thresholds) -> Result<Thresholds, Verdict> {
        let t = Thresholds {
            warn: self.warn_age.unwrap_or(default.warn),
            crit: self.crit_age.unwrap_or(default.crit),
        };
        if t.warn > t.crit {
            return Err(probe::unknown(&format!(
                "--warn-age {} is longer than --crit-age {}",
                humantime::format_duration(t.warn),
                humantime::format_duration(t.crit)
            )));
        }
        Ok(t)
    }
}

/// Prints the table or, with `--json`, the JSON of `status`.
pub fn print<T: Serialize>(
    args: &StatusArgs,
    status: &T,
    table: impl FnOnce(&T) -> String,
) -> anyhow::Result<()> {
    if args.json {
        println!("{}", serde_json::to_string_pretty(status)?);
    } else {
        print!("{}", table(status));
    }
    Ok(())
}

/// Prints the probe's line; its state is the exit code.
pub fn answer(verdict: &Verdict) -> ExitCode {
    println!("{}", verdict.line);
    ExitCode::from(verdict.state.code())
}

/// A command line clap refuses, when it asks for the probe: the plugin
/// guidelines want UNKNOWN (3) and one line on stdout, not a usage error.
pub fn probe_usage_error(args: &[std::ffi::OsString], e: &clap::Error) -> Option<ExitCode> {
    let has = |flag: &str| args.iter().any(|a| a == flag);
    let asked = has("status") && has("--check");
    let info = matches!(
        e.kind(),
        clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
    );
    if !asked || info {
        return None;
    }
    let text = e.to_string();
    let first = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid command line")
        .trim_start_matches("error: ");
    Some(answer(&probe::unknown(first)))
}
