//! `caso-extract`: cASO's flags, plus `projects` (what `caso-projects` does).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::anyhow;
use clap::{Parser, Subcommand};

use crate::config::caso::{CasoLogging, CasoSettings, CasoSources, flag};
use crate::config::{self, FlagValue};
use crate::daemon::{self, Shutdown};
use crate::exit;
use crate::logging::{self, LogFormat, LogHandle, LogSettings};

/// Extract OpenStack usage into APEL accounting records (a cASO 5.2.2
/// replacement that reads the same caso.conf).
#[derive(Parser, Debug, Clone)]
#[command(name = "caso-extract", version)]
pub struct CasoCli {
    /// Configuration file; repeat for several (later wins). Default: the first
    /// caso.conf in ~/.caso, ~, /etc/caso, /etc.
    #[arg(long = "config-file", value_name = "PATH", global = true)]
    pub config_file: Vec<PathBuf>,
    /// Directory whose *.conf files are read (sorted) after the config files.
    #[arg(long = "config-dir", value_name = "DIR", global = true)]
    pub config_dir: Vec<PathBuf>,
    /// Extract and print, but push nothing and do not update lastrun.
    #[arg(long, global = true, overrides_with = "nodry_run")]
    pub dry_run: bool,
    /// Undo --dry-run / dry_run = true (oslo spelling).
    #[arg(long, global = true, overrides_with = "dry_run", hide = true)]
    pub nodry_run: bool,
    /// Extract records that changed after this date (default: lastrun).
    #[arg(long, value_name = "DATE", global = true)]
    pub extract_from: Option<String>,
    /// Extract records until this date (default: now).
    #[arg(long, value_name = "DATE", global = true)]
    pub extract_to: Option<String>,
    /// Projects (ids or names), comma-separated; repeatable.
    #[arg(long, value_name = "LIST", global = true)]
    pub projects: Vec<String>,
    /// Extractors: nova, cinder, neutron (comma-separated; repeatable).
    #[arg(long, value_name = "LIST", global = true)]
    pub extractor: Vec<String>,
    /// Keystone tag marking projects to extract.
    #[arg(long, alias = "caso_tag", value_name = "TAG", global = true)]
    pub caso_tag: Option<String>,
    /// Project property holding the VO.
    #[arg(long, alias = "vo_property", value_name = "NAME", global = true)]
    pub vo_property: Option<String>,
    /// Projects extracted at the same time (ours; default 8).
    #[arg(long, value_name = "N", global = true)]
    pub concurrency: Option<String>,
    /// How long to wait for another run's lock, e.g. 30m, 0s (ours;
    /// [DEFAULT] lock_timeout).
    #[arg(long, value_name = "DURATION", global = true)]
    pub lock_timeout: Option<String>,
    /// Deprecated VO <-> project JSON mapping file.
    #[arg(long, alias = "mapping_file", value_name = "PATH", global = true)]
    pub mapping_file: Option<PathBuf>,
    /// Log at DEBUG level.
    #[arg(short = 'd', long, global = true, overrides_with = "nodebug")]
    pub debug: bool,
    /// Undo --debug / debug = true (oslo spelling).
    #[arg(long, global = true, overrides_with = "debug", hide = true)]
    pub nodebug: bool,
    /// Log to this file instead of stderr.
    #[arg(long, alias = "log_file", value_name = "PATH", global = true)]
    pub log_file: Option<PathBuf>,
    /// Base directory of a relative log file.
    #[arg(long, alias = "log_dir", value_name = "DIR", global = true)]
    pub log_dir: Option<PathBuf>,
    /// Log JSON lines (oslo.log spelling of --log-format json).
    #[arg(long, alias = "use_json", global = true)]
    pub use_json: bool,
    /// Log line format (wins over use_json).
    #[arg(long, value_enum, value_name = "FORMAT", global = true)]
    pub log_format: Option<LogFormat>,
    /// Make unknown options in files or environment an error (exit 2).
    #[arg(long, global = true)]
    pub strict_config: bool,
    /// Print the effective settings and where each came from, then exit.
    #[arg(long, global = true)]
    pub print_config: bool,
    /// Check everything a run refuses before extracting (configuration,
    /// voms.json, site_name, [keystone_auth], spool, lastrun and lock
    /// directories) without extracting or writing anything; print each
    /// finding, then "ready" (exit 0) or "not ready" (exit 2).
    #[arg(long, global = true, conflicts_with = "print_config")]
    pub check: bool,
    /// With --check (implies it): also ask Keystone for a token with the
    /// configured credentials, waiting at most 5 s; Keystone unreachable
    /// exits 1.
    #[arg(long, global = true, conflicts_with = "print_config")]
    pub check_network: bool,
    /// Daemon mode (ours): extract now, then again every DURATION (e.g. 1h,
    /// 30m), with a small random jitter, until SIGTERM. Without it: one run.
    #[arg(long, value_name = "DURATION", value_parser = daemon::parse_interval)]
    pub interval: Option<Duration>,
    /// With --interval (ours): wait DURATION before the first run, e.g. to
    /// let another program run first (default: run at once).
    #[arg(long, value_name = "DURATION", value_parser = daemon::parse_delay)]
    pub initial_delay: Option<Duration>,
    /// Write Prometheus metrics to PATH at the end of every run (ours;
    /// node_exporter's textfile collector format, atomically, mode 0644;
    /// not for a dry run).
    #[arg(long, value_name = "PATH", global = true)]
    pub metrics_file: Option<PathBuf>,
    /// With --interval (ours): serve the last run's metrics on
    /// http://ADDR/metrics. ADDR: HOST:PORT with an IP address or
    /// localhost, or a PORT alone (127.0.0.1:PORT); a loopback address
    /// unless --metrics-allow-remote.
    #[arg(long, value_name = "ADDR", value_parser = crate::metrics::parse_listen)]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Let --metrics-listen use an address other hosts can reach, e.g.
    /// 0.0.0.0:9101 in a container (ours).
    #[arg(long, requires = "metrics_listen")]
    pub metrics_allow_remote: bool,
    #[command(subcommand)]
    pub command: Option<CasoCommand>,
}

#[derive(Subcommand, Debug, Clone, Copy, PartialEq, Eq)]
pub enum CasoCommand {
    /// List the projects to extract and their VO (what caso-projects does).
    Projects,
    /// What was extracted when, the queue and the last send, from the files
    /// alone (no network); with --check, a monitoring probe (Nagios plugin
    /// exit codes: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN; default ages
    /// --warn-age 3h --crit-age 26h for each project's lastrun).
    Status(super::status::StatusArgs),
}

impl CasoCli {
    /// The metrics flags.
    pub fn metrics(&self) -> super::MetricsFlags {
        super::MetricsFlags {
            file: self.metrics_file.clone(),
            listen: self.metrics_listen,
            allow_remote: self.metrics_allow_remote,
        }
    }

    /// What to read: the files, directories and option flags of this command
    /// line, as config's own [`CasoSources`].
    pub fn sources(&self) -> CasoSources {
        CasoSources {
            files: self.config_file.clone(),
            dirs: self.config_dir.clone(),
            flags: self.flag_values(),
            strict: self.strict_config,
        }
    }

    /// The flags that set caso.conf options (the highest layer).
    fn flag_values(&self) -> Vec<FlagValue> {
        const D: &str = "DEFAULT";
        let mut v = Vec::new();
        if self.dry_run {
            v.push(flag(D, "dry_run", "--dry-run", "true".into()));
        }
        if self.nodry_run {
            v.push(flag(D, "dry_run", "--nodry-run", "false".into()));
        }
        if let Some(s) = &self.extract_from {
            v.push(flag(D, "extract_from", "--extract-from", s.clone()));
        }
        if let Some(s) = &self.extract_to {
            v.push(flag(D, "extract_to", "--extract-to", s.clone()));
        }
        if !self.projects.is_empty() {
            v.push(flag(D, "projects", "--projects", self.projects.join(",")));
        }
        if !self.extractor.is_empty() {
            v.push(flag(
                D,
                "extractor",
                "--extractor",
                self.extractor.join(","),
            ));
        }
        if let Some(s) = &self.caso_tag {
            v.push(flag(D, "caso_tag", "--caso-tag", s.clone()));
        }
        if let Some(s) = &self.vo_property {
            v.push(flag(D, "vo_property", "--vo-property", s.clone()));
        }
        if let Some(d) = &self.lock_timeout {
            v.push(flag(D, "lock_timeout", "--lock-timeout", d.clone()));
        }
        if let Some(n) = &self.concurrency {
            v.push(flag(D, "concurrency", "--concurrency", n.clone()));
        }
        if let Some(p) = &self.mapping_file {
            v.push(flag(
                D,
                "mapping_file",
                "--mapping-file",
                p.display().to_string(),
            ));
        }
        if self.debug {
            v.push(flag(D, "debug", "--debug", "true".into()));
        }
        if self.nodebug {
            v.push(flag(D, "debug", "--nodebug", "false".into()));
        }
        if let Some(p) = &self.log_file {
            v.push(flag(D, "log_file", "--log-file", p.display().to_string()));
        }
        if let Some(p) = &self.log_dir {
            v.push(flag(D, "log_dir", "--log-dir", p.display().to_string()));
        }
        if self.use_json {
            v.push(flag(D, "use_json", "--use-json", "true".into()));
        }
        v
    }
}

/// The `caso-extract` program.
pub fn main() -> ExitCode {
    let cli: CasoCli = match super::parse() {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let (true, Some(CasoCommand::Status(args))) = (cli.check, cli.command) {
        return probe(&cli, &args);
    }
    let mut log = None;
    match run(&cli, &mut log) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => super::fail("caso-extract", &e, log.as_ref()),
    }
}

fn run(cli: &CasoCli, log: &mut Option<LogHandle>) -> anyhow::Result<()> {
    let eff = config::load_caso(&cli.sources())?;
    let mut log_settings =
        LogSettings::from_caso(&CasoLogging::from_effective(&eff)?, cli.log_format);
    let check = cli.check || cli.check_network;
    let status = matches!(cli.command, Some(CasoCommand::Status(_)));
    if cli.print_config || check || status {
        log_settings = log_settings.console_only();
    }
    *log = Some(logging::init(&log_settings));
    for w in eff.warnings() {
        tracing::warn!("{w}");
    }
    cli.metrics().check(cli.interval.is_some())?;
    if let Some(CasoCommand::Status(args)) = cli.command {
        if cli.check_network
            || cli.print_config
            || cli.interval.is_some()
            || cli.initial_delay.is_some()
        {
            return Err(exit::usage(anyhow!(
                "status reads files only: not with --check-network, --print-config, --interval or --initial-delay"
            )));
        }
        let settings = CasoSettings::from_effective(&eff)?;
        let st = extract_status(&settings, &args)?;
        return super::status::print(&args, &st, crate::status::table::extract);
    }
    if check {
        if cli.command.is_some() || cli.interval.is_some() || cli.initial_delay.is_some() {
            return Err(exit::usage(anyhow!(
                "--check and --check-network check once: not with the projects subcommand, --interval or --initial-delay"
            )));
        }
        return crate::extract::check::check(&eff, cli.check_network);
    }
    let settings = CasoSettings::from_effective(&eff)?;
    if cli.print_config {
        print!("{}", eff.render());
        if let Err(e) = settings.ready_to_extract() {
            tracing::warn!("not ready to extract: {e}");
        }
        return Ok(());
    }
    match cli.command {
        Some(CasoCommand::Projects) if cli.interval.is_some() || cli.initial_delay.is_some() => {
            Err(exit::usage(anyhow!(
                "--interval and --initial-delay are for extraction, not for the projects subcommand"
            )))
        }
        Some(CasoCommand::Projects) => crate::extract::list_projects(&settings),
        // Handled above, before --print-config.
        Some(CasoCommand::Status(_)) => Ok(()),
        None => extract(
            settings,
            daemon::Schedule::from_flags(cli.interval, cli.initial_delay)?,
            &cli.metrics(),
        ),
    }
}

fn extract_status(
    settings: &CasoSettings,
    args: &super::status::StatusArgs,
) -> Result<crate::status::ExtractStatus, crate::spool::SpoolError> {
    let ssm = settings
        .messengers
        .contains(&crate::config::caso::Messenger::Ssm)
        .then_some(settings.ssm.output_path.as_path());
    crate::status::extract_status(&settings.spooldir, ssm, args.now())
}

/// `caso-extract status --check`: every failure is the probe's UNKNOWN.
fn probe(cli: &CasoCli, args: &super::status::StatusArgs) -> ExitCode {
    use crate::status::probe;
    let verdict = (|| {
        if cli.check_network || cli.print_config || cli.interval.is_some() {
            return probe::unknown(
                "status --check reads files only: not with --check-network, --print-config or --interval",
            );
        }
        let thresholds = match args.thresholds(probe::EXTRACT) {
            Ok(t) => t,
            Err(v) => return v,
        };
        let settings = match config::load_caso(&cli.sources())
            .map_err(anyhow::Error::from)
            .and_then(|eff| Ok(CasoSettings::from_effective(&eff)?))
        {
            Ok(s) => s,
            Err(e) => return probe::unknown(&format!("configuration: {}", exit::Chain(&e))),
        };
        match extract_status(&settings, args) {
            Ok(st) => probe::extract(&st, thresholds),
            Err(e) => probe::unknown(&e.to_string()),
        }
    })();
    super::status::answer(&verdict)
}

/// Extraction with checked settings: one run ([`crate::extract::run_once`])
/// or, with a `schedule`, daemon mode ([`daemon::run`]). SIGTERM/SIGINT stop
/// gracefully in both modes. Each run's metrics go where `metrics` says.
pub fn extract(
    settings: CasoSettings,
    schedule: Option<daemon::Schedule>,
    metrics: &super::MetricsFlags,
) -> anyhow::Result<()> {
    metrics.check(schedule.is_some())?;
    if schedule.is_some() {
        // Each run extracts from each project's lastrun up to now; a fixed
        // period would be extracted again and again.
        for (set, flag) in [
            (settings.extract_from.is_some(), "extract_from"),
            (settings.extract_to.is_some(), "extract_to"),
        ] {
            if set {
                return Err(exit::usage(anyhow!(
                    "--interval repeats runs from each project's lastrun up to now: unset {flag} (--{})",
                    flag.replace('_', "-")
                )));
            }
        }
    }
    let shutdown = Shutdown::on_signals()?;
    let (outputs, server) = metrics.start(&shutdown)?;
    let mut metrics = outputs
        .active()
        .then(|| crate::metrics::ExtractMetrics::new(outputs));
    let result = daemon::run(schedule, &shutdown, |stop| {
        crate::extract::run_once(&settings, stop, metrics.as_mut())
    });
    drop(server);
    result
}
