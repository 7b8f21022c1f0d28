//! The two command-line programs. Each `main` parses flags (clap: usage errors
//! exit 2, `--help`/`--version` exit 0), loads configuration, starts logging,
//! then hands typed settings to one function: [`extract::extract`] or
//! [`send::send`]; [`status`] is the `status` subcommand both have.

pub mod extract;
pub mod send;
pub mod status;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::anyhow;

use crate::daemon::Shutdown;
use crate::logging::LogHandle;
use crate::metrics::{Latest, Outputs, Server};

/// `--metrics-file`, `--metrics-listen` and `--metrics-allow-remote`, as
/// both programs take them.
#[derive(Clone, Debug, Default)]
pub struct MetricsFlags {
    pub file: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub allow_remote: bool,
}

impl MetricsFlags {
    /// Usage errors (exit 2): `--metrics-listen` without `--interval` (a
    /// cron run ends before any scrape), a non-loopback address without
    /// `--metrics-allow-remote`.
    pub fn check(&self, daemon: bool) -> anyhow::Result<()> {
        let Some(addr) = self.listen else {
            return Ok(());
        };
        if !daemon {
            return Err(crate::exit::usage(anyhow!(
                "--metrics-listen is for daemon mode: give --interval too (a single run: --metrics-file)"
            )));
        }
        crate::metrics::check_listen(addr, self.allow_remote)
            .map_err(|e| crate::exit::usage(anyhow!(e)))
    }

    /// Where the metrics go, the server started (listening already) when
    /// asked for; it stops on `shutdown` or when dropped.
    pub fn start(&self, shutdown: &Shutdown) -> anyhow::Result<(Outputs, Option<Server>)> {
        if let Some(f) = &self.file
            && f.extension().is_none_or(|e| e != "prom")
        {
            tracing::warn!(
                "--metrics-file {}: node_exporter's textfile collector reads only files named *.prom",
                f.display()
            );
        }
        let Some(addr) = self.listen else {
            return Ok((Outputs::new(self.file.clone(), None), None));
        };
        let latest = Latest::default();
        let server = Server::start(addr, latest.clone(), shutdown)?;
        Ok((Outputs::new(self.file.clone(), Some(latest)), Some(server)))
    }
}

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
