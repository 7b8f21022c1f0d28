//! `ssmsend`: SSM's `-c/--config`, plus `--print-config`, `--check` and
//! `--dry-run`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config::sender::{SenderLogging, SenderSettings};
use crate::config::{self, ConfigError};
use crate::daemon::{self, Shutdown};
use crate::logging::{self, LogFormat, LogHandle, LogSettings};

/// Sign the spooled APEL messages and deliver them to a STOMP broker or the
/// ARGO Messaging Service (an APEL SSM 4 ssmsend replacement that reads the
/// same sender.cfg).
#[derive(Parser, Debug, Clone)]
#[command(name = "ssmsend", version)]
pub struct SenderCli {
    /// Location of the configuration file.
    #[arg(
        short = 'c',
        long = "config",
        value_name = "PATH",
        default_value = "/etc/apel/sender.cfg",
        global = true
    )]
    pub config: PathBuf,
    /// SSM's logging configuration file: accepted and ignored ([logging] in
    /// sender.cfg configures logging).
    #[arg(
        short = 'l',
        long = "log_config",
        alias = "log-config",
        value_name = "PATH"
    )]
    pub log_config: Option<PathBuf>,
    /// Log line format.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Make unknown options in the file or environment an error (exit 2).
    #[arg(long)]
    pub strict_config: bool,
    /// Print the effective settings and where each came from, then exit.
    #[arg(long)]
    pub print_config: bool,
    /// Check everything a run refuses before sending (configuration,
    /// certificates, key permissions, spool and reject directory) without
    /// sending or changing anything; print each finding, then "ready" (exit
    /// 0) or "not ready" (exit 2).
    #[arg(long, conflicts_with_all = ["print_config", "dry_run", "interval", "initial_delay"])]
    pub check: bool,
    /// With --check (implies it): also reach each broker (TCP and TLS
    /// handshake) or AMS, waiting at most 5 s each; an endpoint that cannot
    /// be reached exits 1.
    #[arg(long, conflicts_with_all = ["print_config", "dry_run", "interval", "initial_delay"])]
    pub check_network: bool,
    /// Read, check and sign every queued message and say what would be sent
    /// where, without connecting, locking, moving or removing anything; exit 1
    /// when a message would be rejected or an entry is not a message.
    #[arg(long, conflicts_with_all = ["print_config", "interval", "initial_delay"])]
    pub dry_run: bool,
    /// Daemon mode (ours): send now, then again every DURATION (e.g. 6h,
    /// 30m), with a small random jitter, until SIGTERM. Without it: one run.
    #[arg(long, value_name = "DURATION", value_parser = daemon::parse_interval)]
    pub interval: Option<Duration>,
    /// With --interval (ours): wait DURATION before the first run, e.g. to
    /// let another program run first (default: run at once).
    #[arg(long, value_name = "DURATION", value_parser = daemon::parse_delay)]
    pub initial_delay: Option<Duration>,
    /// Write Prometheus metrics to PATH at the end of every run (ours;
    /// node_exporter's textfile collector format, atomically, mode 0644;
    /// not for --dry-run or --check).
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
    /// With --interval (ours): serve the last run's metrics on
    /// http://ADDR/metrics. ADDR: HOST:PORT with an IP address or
    /// localhost, or a PORT alone (127.0.0.1:PORT); a loopback address
    /// unless --metrics-allow-remote.
    #[arg(long, value_name = "ADDR", value_parser = crate::metrics::parse_listen)]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Let --metrics-listen use an address other hosts can reach, e.g.
    /// 0.0.0.0:9102 in a container (ours).
    #[arg(long, requires = "metrics_listen")]
    pub metrics_allow_remote: bool,
    #[command(subcommand)]
    pub command: Option<SendCommand>,
}

impl SenderCli {
    /// The metrics flags.
    pub fn metrics(&self) -> super::MetricsFlags {
        super::MetricsFlags {
            file: self.metrics_file.clone(),
            listen: self.metrics_listen,
            allow_remote: self.metrics_allow_remote,
        }
    }
}

#[derive(Subcommand, Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendCommand {
    /// The queue (depth, oldest message, locks, rejected messages and their
    /// reasons) and the last send, from the files alone (no network); with
    /// --check, a monitoring probe (Nagios plugin exit codes: 0 OK, 1
    /// WARNING, 2 CRITICAL, 3 UNKNOWN; default ages --warn-age 7h
    /// --crit-age 30h for the oldest queued message).
    Status {
        /// Monitoring probe: one line `STATE - summary | perfdata`, exit 0-3.
        #[arg(long)]
        check: bool,
        #[command(flatten)]
        args: super::status::StatusArgs,
    },
}

/// The `ssmsend` program.
pub fn main() -> ExitCode {
    let cli: SenderCli = match super::parse() {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Some(SendCommand::Status { check: true, args }) = cli.command {
        return probe(&cli, &args);
    }
    let mut log = None;
    match run(&cli, &mut log) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => super::fail("ssmsend", &e, log.as_ref()),
    }
}

fn run(cli: &SenderCli, log: &mut Option<LogHandle>) -> anyhow::Result<()> {
    let eff = config::load_sender(&cli.config, cli.strict_config)?;
    let mut log_settings =
        LogSettings::from_sender(&SenderLogging::from_effective(&eff)?, cli.log_format);
    let check = cli.check || cli.check_network;
    if cli.print_config || check || cli.dry_run || cli.command.is_some() {
        log_settings = log_settings.console_only();
    }
    *log = Some(logging::init(&log_settings));
    for w in eff.warnings() {
        tracing::warn!("{w}");
    }
    cli.metrics().check(cli.interval.is_some())?;
    if let Some(p) = &cli.log_config {
        tracing::warn!(
            "-l/--log_config {} is ignored: logging is configured by [logging] in {}",
            p.display(),
            cli.config.display()
        );
    }
    if let Some(SendCommand::Status { args, .. }) = cli.command {
        if cli.print_config
            || check
            || cli.dry_run
            || cli.interval.is_some()
            || cli.initial_delay.is_some()
        {
            return Err(crate::exit::usage(anyhow::anyhow!(
                "status reads files only: not with --print-config, --check, --check-network, --dry-run, --interval or --initial-delay (status --check is the probe)"
            )));
        }
        let st = send_status(&eff, &args)?;
        return super::status::print(&args, &st, crate::status::table::send);
    }
    if cli.print_config {
        print!("{}", eff.render());
        match SenderSettings::from_effective(&eff) {
            Ok(_) => {}
            Err(e @ ConfigError::Missing { .. }) => tracing::warn!("not ready to send: {e}"),
            Err(e) => return Err(e.into()),
        }
        return Ok(());
    }
    if check {
        return crate::send::check::check(&eff, cli.check_network);
    }
    if cli.dry_run {
        return crate::send::dry_run::dry_run(&SenderSettings::from_effective(&eff)?);
    }
    let schedule = daemon::Schedule::from_flags(cli.interval, cli.initial_delay)?;
    send(
        SenderSettings::from_effective(&eff)?,
        schedule,
        &cli.metrics(),
    )
}

fn send_status(
    eff: &crate::config::Effective,
    args: &super::status::StatusArgs,
) -> anyhow::Result<crate::status::SendStatus> {
    let (path, layout) = crate::config::sender::outgoing_queue(eff)?;
    Ok(crate::status::send_status(&path, layout, args.now())?)
}

/// `ssmsend status --check`: every failure is the probe's UNKNOWN.
fn probe(cli: &SenderCli, args: &super::status::StatusArgs) -> ExitCode {
    use crate::status::probe;
    let verdict = (|| {
        if cli.print_config
            || cli.check
            || cli.check_network
            || cli.dry_run
            || cli.interval.is_some()
        {
            return probe::unknown(
                "status --check reads files only: not with --print-config, --check, --check-network, --dry-run or --interval",
            );
        }
        let thresholds = match args.thresholds(probe::QUEUE) {
            Ok(t) => t,
            Err(v) => return v,
        };
        let eff = match config::load_sender(&cli.config, cli.strict_config) {
            Ok(eff) => eff,
            Err(e) => return probe::unknown(&format!("configuration: {e}")),
        };
        let (path, layout) = match crate::config::sender::outgoing_queue(&eff) {
            Ok(q) => q,
            Err(e) => return probe::unknown(&format!("configuration: {e}")),
        };
        match crate::status::send_status(&path, layout, args.now()) {
            Ok(st) => probe::send(&st, thresholds),
            Err(e) => probe::unknown(&e.to_string()),
        }
    })();
    super::status::answer(&verdict)
}

/// Sending with checked settings: one run ([`crate::send::run`]) or,
/// with a `schedule`, daemon mode ([`daemon::run`]). SIGTERM/SIGINT stop
/// gracefully in both modes. Each run's metrics go where `metrics` says.
pub fn send(
    settings: SenderSettings,
    schedule: Option<daemon::Schedule>,
    metrics: &super::MetricsFlags,
) -> anyhow::Result<()> {
    metrics.check(schedule.is_some())?;
    let shutdown = Shutdown::on_signals()?;
    let (outputs, server) = metrics.start(&shutdown)?;
    let mut metrics = outputs
        .active()
        .then(|| crate::metrics::SendMetrics::new(outputs));
    let result = daemon::run(schedule, &shutdown, |stop| {
        crate::send::run(&settings, stop, metrics.as_mut())
    });
    drop(server);
    result
}
