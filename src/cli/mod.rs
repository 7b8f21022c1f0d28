//! The two command-line programs. Each `main` parses flags (clap: usage errors
//! exit 2, `--help`/`--version` exit 0), loads configuration, starts logging,
//! then hands typed settings to one function: [`extract::extract`] or
//! [`send::send`]; [`status`] is the `status` subcommand both have.

pub mod extract;
pub mod send;
pub mod status;

use std::process::ExitCode;

use crate::logging::LogHandle;

/// Reports a fatal error once: through the log when the console gets log lines,
/// else on stderr (and in the log file, if there is one). Returns the exit code.
fn fail(program: &str, e: &anyhow::Error, log: Option<&LogHandle>) -> ExitCode {
    let e_line = crate::exit::Chain(e);
    // A run's summary is already the log's last line.
    let logged = crate::exit::is_reported(e);
    match log {
        Some(l) if l.console => {
            if !logged {
                tracing::error!("{e_line}");
            }
        }
        Some(l) => {
            if l.file.is_some() && !logged {
                tracing::error!("{e_line}");
            }
            eprintln!("{program}: error: {e_line}");
        }
        None => eprintln!("{program}: error: {e_line}"),
    }
    crate::exit::code_for(e)
}

/// Parses the command line; clap's own errors exit 2 (help and version 0),
/// except under `status --check`, which answers UNKNOWN (3).
fn parse<C: clap::Parser>() -> Result<C, ExitCode> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    match C::try_parse_from(&args) {
        Ok(c) => Ok(c),
        Err(e) => match status::probe_usage_error(&args, &e) {
            Some(code) => Err(code),
            None => e.exit(),
        },
    }
}
