//! `caso-extract`: OpenStack usage to APEL records, project by project.
//!
//! One run: check the settings, take the run lock, log in to Keystone once
//! (credentials Keystone rejects end the run at once), find the projects
//! ([`projects`]), then extract up to `concurrency` projects at a time with
//! one shared [`Session`] and per-run flavor, image and user caches. Each
//! project: period from its lastrun (or `--extract-from`) to
//! `--extract-to` (or now, never later than now); records from the
//! [`nova`], [`cinder`] and [`neutron`] extractors and the energy one
//! (`energy.rs`: Prometheus, asked for several projects at once), sorted; then, in project
//! order (so the output does not depend on timing), every
//! [`messenger::Messenger`] gets them, and only when all of that project's
//! messages are durably in the spool and nothing failed is its lastrun set
//! to `to + 1 s` (cASO wrote it first: defect 3). A project that fails in
//! any way keeps its lastrun (its records are cumulative, so the next run
//! covers the period again harmlessly); the others go on, and the run
//! reports every failure and exits 1.

mod auth;
pub mod check;
pub mod cinder;
mod deliver;
mod energy;
pub mod messenger;
pub mod neutron;
pub mod nova;
mod period;
pub mod projects;
mod report;
mod summary;
mod window;

use std::collections::HashMap;
use std::io::Write;
use std::num::NonZeroUsize;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use futures_util::future::join_all;

use crate::config::caso::{self, CasoSettings, Extractor};
use crate::daemon::Shutdown;
use crate::exit;
use crate::openstack::glance::ImageCache;
use crate::openstack::keystone::UserNames;
use crate::openstack::nova::FlavorCache;
use crate::openstack::{RequestCounts, Session};
use crate::record::RecordType;
use crate::time::Timestamp;
pub use auth::auth_config;
use auth::{log_in, session};
use messenger::{LastrunStore, MessageSink, Messenger};
pub use period::Period;

/// The log target of the run's own events, wherever their stage lives
/// (operators see `cloud_accounting::extract: ...` at DEBUG, as before the
/// stages had files of their own).
const LOG_TARGET: &str = "cloud_accounting::extract";

use projects::{DiscoveryRules, ProjectInfo, VoRules};
pub use report::{ExtractDetails, Failure, ProjectReport, Report};
use summary::NO_PROJECT;
pub use summary::{summarize, summary_line};

/// What every record of one project shares.
#[derive(Clone, Debug)]
pub struct RecordContext {
    pub site_name: String,
    pub service_name: String,
    pub project_id: String,
    pub vo: String,
    pub period: Period,
    /// When the run measured (storage createTime, IP MeasurementTime).
    pub now: Timestamp,
}

impl RecordContext {
    fn failure(&self, object: impl Into<String>, cause: impl Into<String>) -> Failure {
        Failure::new(self.project_id.clone(), object, cause)
    }

    /// A time OpenStack gave for `object` that goes into a record: one
    /// before 1970 or more than a day after `now` is a failure naming the
    /// object (its project fails; the others go on).
    fn check_time(
        &self,
        object: &dyn Fn() -> String,
        field: &str,
        t: Timestamp,
    ) -> Result<(), Failure> {
        match t.out_of_range(self.now) {
            Some(why) => Err(self.failure(object(), format!("{field} {t} {why}"))),
            None => Ok(()),
        }
    }
}

/// What the extractors of every project share: one session and the
/// per-run caches.
pub struct RunShared {
    pub session: Session,
    pub flavors: FlavorCache,
    pub images: ImageCache,
    pub users: UserNames,
    /// With the `prometheus` extractor: Prometheus, asked across projects.
    pub energy: Option<energy::EnergyBatcher>,
}

impl RunShared {
    /// Names of these users, best effort (a user that cannot be read has
    /// none; empty names count as none).
    pub async fn user_names<'a>(
        &self,
        ids: impl Iterator<Item = &'a str>,
    ) -> HashMap<String, String> {
        let mut ids: Vec<&str> = ids.filter(|id| !id.is_empty()).collect();
        ids.sort_unstable();
        ids.dedup();
        // Looked up together; the cache makes each user one request per run.
        let found = join_all(ids.iter().map(|id| self.users.name(&self.session, id))).await;
        ids.into_iter()
            .zip(found)
            .filter_map(|(id, name)| Some((id.to_string(), name.filter(|n| !n.is_empty())?)))
            .collect()
    }
}

/// Where a run's records go, and its lastrun store.
#[derive(Clone)]
pub struct Stores {
    /// Needed only when the ssm messenger is configured.
    pub spool: Option<Arc<dyn MessageSink>>,
    pub lastrun: Arc<dyn LastrunStore>,
}

/// Settings that are the same for every project.
struct RunConfig {
    site_name: String,
    service_name: String,
    extractors: Vec<Extractor>,
    keys: nova::FlavorKeys,
    extract_from: Option<Timestamp>,
    to: Timestamp,
    now: Timestamp,
    vo_property: String,
    mapping_file: std::path::PathBuf,
    dry_run: bool,
    max_records: NonZeroUsize,
    messengers: Vec<Messenger>,
    /// Projects extracted at a time (at least 1).
    concurrency: usize,
}

fn vo_rules(settings: &CasoSettings) -> VoRules {
    VoRules {
        property: settings.vo_property.clone(),
        map: settings.vo_map.clone(),
        default_vo: settings.default_vo.clone(),
    }
}

/// One extraction run with the given stores, clock and dry-run output.
/// Returns the report even when projects failed ([`Report::failures`]);
/// `Err` only when nothing could be done (configuration, Keystone login).
/// Starts no project once `stop` is requested: the projects
/// already started get the grace ([`crate::daemon::STOP_GRACE`]) to finish
/// (records spooled, lastrun written) and are dropped after it, before
/// anything of theirs is written ([`Report::stopped`]); the others are
/// listed in [`Report::not_started`]. Delivery (spool, then lastrun) is
/// never interrupted.
pub async fn run(
    settings: &CasoSettings,
    stores: Stores,
    now: Timestamp,
    out: &mut (dyn Write + Send),
    stop: &Shutdown,
) -> anyhow::Result<Report> {
    let mut requests = RequestCounts::default();
    run_counting(settings, stores, now, out, stop, &mut requests).await
}

/// [`run`]; when it fails after the first request (Keystone refused us, the
/// project list failed), `requests` holds the requests it sent (for the
/// metrics: a report has them otherwise).
async fn run_counting(
    settings: &CasoSettings,
    stores: Stores,
    now: Timestamp,
    out: &mut (dyn Write + Send),
    stop: &Shutdown,
    requests: &mut RequestCounts,
) -> anyhow::Result<Report> {
    let site_name = settings.site_name()?.to_string();
    let service_name = settings.service_name()?.to_string();
    let max_records = NonZeroUsize::new(settings.ssm.max_size)
        .ok_or_else(|| exit::usage(anyhow!("[ssm] max_size must be at least 1")))?;
    let mut messengers = Vec::new();
    for kind in &settings.messengers {
        let types = settings.record_types.for_messenger(*kind).to_vec();
        messengers.push(match kind {
            caso::Messenger::Ssm => Messenger::Ssm {
                spool: match (&stores.spool, settings.dry_run) {
                    (Some(s), _) => s.clone(),
                    (None, true) => continue,
                    (None, false) => return Err(anyhow!("the ssm messenger has no spool")),
                },
                types,
            },
            caso::Messenger::Noop => Messenger::Noop { types },
            caso::Messenger::Logstash => Messenger::Logstash {
                host: settings.logstash.host.clone(),
                port: settings.logstash.port,
                types,
            },
            caso::Messenger::GreenDigitCim => {
                let other: Vec<&str> = types
                    .iter()
                    .filter(|t| **t != RecordType::Energy)
                    .map(|t| t.as_str())
                    .collect();
                if !other.is_empty() {
                    tracing::warn!(
                        "[messenger_greendigit_cim] record_types: {} not sent: the GreenDIGIT CIM service takes energy records only",
                        other.join(", ")
                    );
                }
                let cim = crate::cim::CimConfig::from_settings(&settings.greendigit_cim)
                    .and_then(crate::cim::Cim::new)
                    .map_err(|e| exit::usage(anyhow!("{e}")))?;
                Messenger::GreenDigitCim {
                    cim: Arc::new(cim),
                    types,
                }
            }
        });
    }
    let energy = if settings.extractors.contains(&Extractor::Prometheus) {
        let config = crate::prometheus::PrometheusConfig::from_settings(&settings.prometheus);
        let prometheus =
            crate::prometheus::Prometheus::new(config).map_err(|e| exit::usage(anyhow!("{e}")))?;
        Some(energy::EnergyBatcher::new(
            prometheus,
            settings.prometheus.cpu_normalization_factor,
            stop.clone(),
        ))
    } else {
        None
    };
    let session = session(settings)?;
    let to = period::period_end(settings.extract_to, now);
    let cfg = Arc::new(RunConfig {
        site_name,
        service_name,
        extractors: settings.extractors.clone(),
        keys: nova::FlavorKeys {
            benchmark_type: settings.benchmark.name_key.clone(),
            benchmark_value: settings.benchmark.value_key.clone(),
            accelerator_type: settings.accelerator.type_key.clone(),
            accelerator_vendor: settings.accelerator.vendor_key.clone(),
            accelerator_model: settings.accelerator.model_key.clone(),
            accelerator_number: settings.accelerator.number_key.clone(),
        },
        extract_from: settings.extract_from,
        to,
        now,
        vo_property: settings.vo_property.clone(),
        mapping_file: settings.mapping_file.clone(),
        dry_run: settings.dry_run,
        max_records,
        messengers,
        concurrency: settings.concurrency.max(1),
    });

    // Logging in and finding the projects start nothing: a stop ends them
    // at once.
    let found = async {
        log_in(&session).await?;
        let (admin_scope, tagged) =
            projects::admin_scope_and_tagged(&session, &settings.caso_tag).await;
        let discovery = projects::discover(
            &session,
            &DiscoveryRules {
                entries: settings.projects.clone(),
                tag: settings.caso_tag.clone(),
                vo: vo_rules(settings),
                concurrency: cfg.concurrency,
            },
            tagged,
        )
        .await;
        anyhow::Ok((admin_scope, discovery))
    };
    let (admin_scope, discovery) = tokio::select! {
        found = found => found.inspect_err(|_| *requests = session.request_counts())?,
        _ = stop.requested() => {
            tracing::warn!("stopped on request before any project was started");
            return Ok(Report {
                requests: session.request_counts(),
                prometheus_requests: energy.as_ref().map_or(0, |b| b.requests()),
                dry_run: cfg.dry_run,
                messengers: cfg.messengers.iter().map(Messenger::describe).collect(),
                ..Report::default()
            });
        }
    };
    let mut report = Report {
        failures: discovery.failures,
        ..Report::default()
    };
    for f in &report.failures {
        tracing::error!("{f}");
    }
    if discovery.projects.is_empty() && report.failures.is_empty() {
        if discovery.tags_listed {
            tracing::warn!(
                tag = %settings.caso_tag,
                "no projects to extract: set [DEFAULT] projects or tag projects in Keystone"
            );
        } else {
            report.failures.push(Failure::new(
                NO_PROJECT,
                "project list",
                format!(
                    "no projects configured and the projects tagged {:?} cannot be listed",
                    settings.caso_tag
                ),
            ));
        }
    }

    let shared = Arc::new(RunShared {
        session: session.clone(),
        flavors: FlavorCache::new(),
        images: ImageCache::new(),
        users: UserNames::new(admin_scope),
        energy: energy.clone(),
    });
    window::extract_all(
        shared,
        &cfg,
        &stores.lastrun,
        discovery.projects,
        stop,
        out,
        &mut report,
    )
    .await;
    report.requests = session.request_counts();
    report.prometheus_requests = energy.as_ref().map_or(0, |b| b.requests());
    report.dry_run = cfg.dry_run;
    report.messengers = cfg.messengers.iter().map(Messenger::describe).collect();
    Ok(report)
}

/// The production stores: the spool at `[ssm] output_path` and the
/// lastrun files in `spooldir`.
/// Nothing is created for a dry run.
pub fn open_stores(settings: &CasoSettings) -> anyhow::Result<Stores> {
    let lastrun = Arc::new(messenger::LastrunFiles {
        spooldir: settings.spooldir.clone(),
    });
    if settings.dry_run {
        return Ok(Stores {
            spool: None,
            lastrun,
        });
    }
    std::fs::create_dir_all(&settings.spooldir).with_context(|| {
        format!(
            "cannot create [DEFAULT] spooldir {}",
            settings.spooldir.display()
        )
    })?;
    check_writable(&settings.spooldir, "[DEFAULT] spooldir (lastrun files)")?;
    let spool: Option<Arc<dyn MessageSink>> = if settings.messengers.contains(&caso::Messenger::Ssm)
    {
        let q = crate::spool::Queue::create(&settings.ssm.output_path, crate::spool::Layout::Dirq)
            .context("cannot open the [ssm] output_path spool")?;
        check_writable(
            &settings.ssm.output_path,
            "[ssm] output_path (the APEL spool)",
        )?;
        Some(Arc::new(q))
    } else {
        None
    };
    Ok(Stores { spool, lastrun })
}

/// Fails before the first request when `dir` cannot take a new file (a
/// read-only mount, wrong owner): otherwise every project would be extracted
/// and then fail ([`crate::spool::check_writable`]).
fn check_writable(dir: &std::path::Path, what: &str) -> anyhow::Result<()> {
    crate::spool::check_writable(dir, what).map_err(|e| anyhow!("{e}; nothing was extracted"))
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// One `caso-extract` run, the program's entry point: checks the settings,
/// takes the run lock, opens the stores and [`run`]s, stopping gracefully
/// when `stop` is requested. Takes and releases the run lock itself, so in daemon
/// mode a cron run of cASO or of ours can go between two runs.
/// With `metrics`, the run's metrics are published where the run report is
/// written (a dry run: neither).
pub fn run_once(
    settings: &CasoSettings,
    stop: &Shutdown,
    metrics: Option<&mut crate::metrics::ExtractMetrics>,
) -> anyhow::Result<()> {
    settings.ready_to_extract()?;
    auth_config(settings)?;
    if stop.is_requested() {
        return Ok(());
    }
    // One run at a time, ours or cASO's (a dry run writes nothing: no lock).
    let _lock = if settings.dry_run {
        None
    } else {
        match run_lock(settings, stop)? {
            Some(lock) => Some(lock),
            None => return Ok(()),
        }
    };
    let stores = open_stores(settings)?;
    let rt = runtime()?;
    let mut stdout = std::io::stdout();
    let started = Timestamp::now();
    let clock = std::time::Instant::now();
    let mut requests = RequestCounts::default();
    let report = rt.block_on(run_counting(
        settings,
        stores,
        started,
        &mut stdout,
        stop,
        &mut requests,
    ));
    // A dry run writes nothing, not even its report or metrics.
    if !settings.dry_run {
        let ended = report::write_run_report(&settings.spooldir, started, &report);
        if let Some(m) = metrics {
            m.record(report::metrics_run(
                &report,
                &requests,
                ended,
                clock.elapsed(),
            ));
        }
    }
    let report = report?;
    stdout.flush().context("cannot write to stdout")?;
    summarize(&report)
}

/// The run lock, waiting up to `lock_timeout` for another run to end, in
/// slices so that a stop request ends the wait (`None`: nothing was done).
fn run_lock(
    settings: &CasoSettings,
    stop: &Shutdown,
) -> anyhow::Result<Option<crate::runlock::RunLock>> {
    use crate::runlock::{RunLock, RunLockError};
    // The wait is sliced so that a stop request ends it within a slice.
    const SLICE: std::time::Duration = std::time::Duration::from_millis(250);
    let start = std::time::Instant::now();
    let mut told = false;
    loop {
        let left = settings.lock_timeout.saturating_sub(start.elapsed());
        if !told && !left.is_zero() && start.elapsed() >= SLICE {
            // Once, so that a run that seems to hang says why.
            told = true;
            let holder = match RunLock::holder(&settings.lock_path) {
                Ok(Some(pid)) => format!("pid {pid}"),
                _ => "another process".into(),
            };
            tracing::info!(
                "waiting up to {} for the run lock {} held by {holder} (lock_timeout, --lock-timeout)",
                humantime::format_duration(settings.lock_timeout),
                settings.lock_path.join(crate::runlock::LOCK_NAME).display()
            );
        }
        match RunLock::acquire(&settings.lock_path, left.min(SLICE)) {
            Ok(lock) => return Ok(Some(lock)),
            Err(RunLockError::Timeout { .. }) if stop.is_requested() => return Ok(None),
            Err(RunLockError::Timeout { path, holder, .. }) if left <= SLICE => {
                return Err(RunLockError::Timeout {
                    path,
                    holder,
                    waited: start.elapsed(),
                }
                .into());
            }
            Err(RunLockError::Timeout { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// One line per project, as `caso-projects` prints them but with balanced
/// quotes (cASO's `'<id> (<name>) mapped to VO '<vo>'` opens one it never
/// closes), plus where the VO came from.
pub fn project_line(p: &ProjectInfo) -> String {
    match &p.vo {
        Some((vo, source)) => format!(
            "'{}' ({}) mapped to VO '{vo}' (from {source})",
            p.id, p.name
        ),
        None => format!(
            "'{}' ({}) mapped to no VO (no mapping: extracting it fails)",
            p.id, p.name
        ),
    }
}

/// `caso-extract projects`: the projects a run would extract and their VO.
/// Exit 0, or 1 when an entry cannot be resolved or Keystone refuses us.
pub fn list_projects(settings: &CasoSettings) -> anyhow::Result<()> {
    let session = session(settings)?;
    let rt = runtime()?;
    let discovery = rt.block_on(async {
        log_in(&session).await?;
        let (_, tagged) = projects::admin_scope_and_tagged(&session, &settings.caso_tag).await;
        anyhow::Ok(
            projects::discover(
                &session,
                &DiscoveryRules {
                    entries: settings.projects.clone(),
                    tag: settings.caso_tag.clone(),
                    vo: vo_rules(settings),
                    concurrency: settings.concurrency.max(1),
                },
                tagged,
            )
            .await,
        )
    })?;
    let mut stdout = std::io::stdout().lock();
    for p in &discovery.projects {
        writeln!(stdout, "{}", project_line(p)).context("cannot write to stdout")?;
    }
    for f in &discovery.failures {
        writeln!(stdout, "ERROR: {f}").context("cannot write to stdout")?;
    }
    stdout.flush().context("cannot write to stdout")?;
    if discovery.failures.is_empty() {
        Ok(())
    } else {
        Err(anyhow!(
            "{} configured project(s) could not be resolved",
            discovery.failures.len()
        ))
    }
}

/// What the record builders' unit tests share: one project of site `SITE`,
/// VO `vo.example`, extracting November 2026.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::{Period, RecordContext};
    use crate::time::Timestamp;

    pub const FROM: &str = "2026-11-01T00:00:00Z";
    pub const TO: &str = "2026-11-30T00:00:00Z";

    pub fn t(s: &str) -> Timestamp {
        Timestamp::parse(s).unwrap()
    }

    /// The context of project `p1`, measured at `now`.
    pub fn ctx_at(now: &str) -> RecordContext {
        RecordContext {
            site_name: "SITE".into(),
            service_name: "svc".into(),
            project_id: "p1".into(),
            vo: "vo.example".into(),
            period: Period {
                from: t(FROM),
                to: t(TO),
            },
            now: t(now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::extract::CasoCli;
    use clap::Parser;

    #[test]
    fn concurrency_flag_sets_the_option() {
        let cli = CasoCli::try_parse_from(["caso-extract", "--concurrency", "3"]).unwrap();
        let eff = crate::config::caso::load_caso_with_env(&cli.sources(), vec![]).unwrap();
        assert_eq!(CasoSettings::from_effective(&eff).unwrap().concurrency, 3);
        let cli = CasoCli::try_parse_from(["caso-extract", "--concurrency", "0"]).unwrap();
        assert!(crate::config::caso::load_caso_with_env(&cli.sources(), vec![]).is_err());
    }
}
