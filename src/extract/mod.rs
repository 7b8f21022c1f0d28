//! `caso-extract`: OpenStack usage to APEL records, project by project.
//!
//! One run: check the settings, take the run lock, log in to Keystone once
//! (credentials Keystone rejects end the run at once), find the projects
//! ([`projects`]), then extract up to `concurrency` projects at a time with
//! one shared [`Session`] and per-run flavor, image and user caches. Each
//! project: period from its lastrun (or `--extract-from`) to
//! `--extract-to` (or now, never later than now); records from the
//! [`nova`], [`cinder`] and [`neutron`] extractors, sorted; then, in project
//! order (so the output does not depend on timing), every
//! [`messenger::Messenger`] gets them, and only when all of that project's
//! messages are durably in the spool and nothing failed is its lastrun set
//! to `to + 1 s` (cASO wrote it first: defect 3). A project that fails in
//! any way keeps its lastrun (its records are cumulative, so the next run
//! covers the period again harmlessly); the others go on, and the run
//! reports every failure and exits 1.

pub mod check;
pub mod cinder;
pub mod messenger;
pub mod neutron;
pub mod nova;
pub mod projects;
mod summary;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io::Write;
use std::num::NonZeroUsize;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use futures_util::future::join_all;
use tracing::Instrument;

use crate::config::caso::{self, AuthType, CasoSettings, Extractor, KeystoneAuth};
use crate::daemon::Shutdown;
use crate::exit;
use crate::openstack::glance::ImageCache;
use crate::openstack::keystone::UserNames;
use crate::openstack::nova::FlavorCache;
use crate::openstack::{
    self, AppCredentialRef, AuthConfig, AuthMethod, ClientCert, DomainRef, OpenStackError,
    RequestCounts, Scope, Session, TlsConfig, UserRef,
};
use crate::record::{Record, RecordType};
use crate::time::Timestamp;
use messenger::{LastrunStore, Messenger, Spool};
use projects::{DiscoveryRules, ProjectInfo, VoRules};
use summary::NO_PROJECT;
pub use summary::{summarize, summary_line};

/// The period one project's records cover.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Period {
    pub from: Timestamp,
    pub to: Timestamp,
}

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

/// One thing that went wrong with one project.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The project id (or the configured entry when it could not be resolved).
    pub project: String,
    /// What failed: an OpenStack object, the spool, the lastrun file...
    pub object: String,
    pub cause: String,
}

impl Failure {
    pub fn new(
        project: impl Into<String>,
        object: impl Into<String>,
        cause: impl Into<String>,
    ) -> Self {
        Failure {
            project: project.into(),
            object: object.into(),
            cause: cause.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "project {}: {}: {}",
            self.project, self.object, self.cause
        )
    }
}

/// What the extractors of every project share: one session and the
/// per-run caches.
pub struct RunShared {
    pub session: Session,
    pub flavors: FlavorCache,
    pub images: ImageCache,
    pub users: UserNames,
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

/// The result of a run, for the summary and for tests.
#[derive(Debug, Default)]
pub struct Report {
    /// Projects extracted, in order.
    pub projects: Vec<ProjectReport>,
    pub failures: Vec<Failure>,
    /// Projects not started because a stop was requested (SIGTERM): their
    /// lastrun is untouched and the next run extracts them.
    pub not_started: Vec<String>,
    /// Projects started but stopped mid-way (the stop request's grace ran
    /// out): nothing of theirs was spooled, their lastrun is untouched.
    pub stopped: Vec<String>,
    pub requests: RequestCounts,
    /// Where the records went: the messengers' [`Messenger::describe`]
    /// (empty for a dry run).
    pub messengers: Vec<String>,
    pub dry_run: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectReport {
    pub id: String,
    pub period: Option<Period>,
    /// Records extracted, by type.
    pub records: Vec<(RecordType, usize)>,
    /// Messages durably added to the spool (a dry run: printed).
    pub messages: usize,
    /// The records in those messages.
    pub records_spooled: usize,
    /// Records taken by the `logstash` and `noop` messengers.
    pub records_pushed: usize,
    /// The lastrun written, if any.
    pub lastrun: Option<Timestamp>,
}

/// Spool and lastrun store of a run.
#[derive(Clone)]
pub struct Stores {
    /// Needed only when the ssm messenger is configured.
    pub spool: Option<Arc<dyn Spool>>,
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
}

/// Result of extracting one project, before delivery.
struct Extracted {
    project: ProjectInfo,
    period: Option<Period>,
    records: Vec<Record>,
    failures: Vec<Failure>,
    /// Stopped mid-way (a stop request's grace ran out): nothing of it is
    /// delivered, its lastrun stays.
    stopped: bool,
}

fn usage_err(msg: String) -> anyhow::Error {
    exit::usage(anyhow!(msg))
}

fn user_ref(ka: &KeystoneAuth, what: &str) -> anyhow::Result<UserRef> {
    if let Some(id) = &ka.user_id {
        return Ok(UserRef::Id(id.clone()));
    }
    let Some(name) = &ka.username else {
        return Err(usage_err(format!(
            "[keystone_auth] username or user_id is required for {what}"
        )));
    };
    let domain = if let Some(id) = ka.user_domain_id.as_ref().or(ka.default_domain_id.as_ref()) {
        DomainRef::Id(id.clone())
    } else if let Some(n) = ka
        .user_domain_name
        .as_ref()
        .or(ka.default_domain_name.as_ref())
    {
        DomainRef::Name(n.clone())
    } else {
        return Err(usage_err(format!(
            "[keystone_auth] user_domain_name or user_domain_id is required with username {name:?}"
        )));
    };
    Ok(UserRef::Name {
        name: name.clone(),
        domain,
    })
}

fn secret(s: &Option<crate::config::Secret>, key: &str) -> anyhow::Result<openstack::Secret> {
    s.as_ref()
        .map(|s| openstack::Secret::new(s.expose()))
        .ok_or_else(|| usage_err(format!("[keystone_auth] {key} is required")))
}

/// Maps `[keystone_auth]` to the client's configuration. Anything missing
/// or contradictory is a configuration error (exit 2).
pub fn auth_config(settings: &CasoSettings) -> anyhow::Result<AuthConfig> {
    let ka = &settings.keystone_auth;
    let auth_url = ka
        .auth_url
        .clone()
        .ok_or_else(|| usage_err("[keystone_auth] auth_url is required to extract".into()))?;
    let auth_type = ka.auth_type.ok_or_else(|| {
        usage_err(
            "[keystone_auth] auth_type is required: password, applicationcredential or oidcaccesstoken"
                .into(),
        )
    })?;
    let method = match auth_type {
        AuthType::Password => AuthMethod::Password {
            user: user_ref(ka, "password authentication")?,
            password: secret(&ka.password, "password")?,
        },
        AuthType::ApplicationCredential => {
            let credential = match (
                &ka.application_credential_id,
                &ka.application_credential_name,
            ) {
                (Some(id), _) => AppCredentialRef::Id(id.clone()),
                (None, Some(name)) => AppCredentialRef::Name {
                    name: name.clone(),
                    user: user_ref(ka, "an application credential given by name")?,
                },
                (None, None) => {
                    return Err(usage_err(
                        "[keystone_auth] application_credential_id or application_credential_name is required".into(),
                    ));
                }
            };
            AuthMethod::ApplicationCredential {
                credential,
                secret: secret(
                    &ka.application_credential_secret,
                    "application_credential_secret",
                )?,
            }
        }
        AuthType::OidcAccessToken => AuthMethod::OidcAccessToken {
            identity_provider: ka.identity_provider.clone().ok_or_else(|| {
                usage_err(
                    "[keystone_auth] identity_provider is required for oidcaccesstoken".into(),
                )
            })?,
            protocol: ka.protocol.clone().ok_or_else(|| {
                usage_err("[keystone_auth] protocol is required for oidcaccesstoken".into())
            })?,
            access_token: secret(&ka.access_token, "access_token")?,
        },
    };
    let app_cred = auth_type == AuthType::ApplicationCredential;
    let project_domain = || -> Option<DomainRef> {
        ka.project_domain_id
            .as_ref()
            .or(ka.default_domain_id.as_ref())
            .map(|d| DomainRef::Id(d.clone()))
            .or_else(|| {
                ka.project_domain_name
                    .as_ref()
                    .or(ka.default_domain_name.as_ref())
                    .map(|d| DomainRef::Name(d.clone()))
            })
    };
    let scope = if app_cred {
        // Keystone refuses any scope for application credentials (defect 10).
        if ka.project_id.is_some() || ka.project_name.is_some() || ka.system_scope.is_some() {
            tracing::warn!(
                "[keystone_auth] project and system scope are ignored with application credentials: the credential's own project is used"
            );
        }
        Scope::Unscoped
    } else if let Some(id) = &ka.project_id {
        Scope::Project { id: id.clone() }
    } else if let Some(name) = &ka.project_name {
        Scope::ProjectName {
            name: name.clone(),
            domain: project_domain().ok_or_else(|| {
                usage_err(format!(
                    "[keystone_auth] project_domain_name or project_domain_id is required with project_name {name:?}"
                ))
            })?,
        }
    } else if let Some(id) = &ka.domain_id {
        Scope::Domain(DomainRef::Id(id.clone()))
    } else if let Some(name) = &ka.domain_name {
        Scope::Domain(DomainRef::Name(name.clone()))
    } else {
        Scope::Unscoped
    };
    let system_scope = match ka.system_scope.as_deref() {
        None => false,
        Some(s) if s.eq_ignore_ascii_case("all") => !app_cred,
        Some(other) => {
            return Err(usage_err(format!(
                "[keystone_auth] system_scope = {other:?}: only \"all\" is supported"
            )));
        }
    };
    let client_cert = match (&ka.certfile, &ka.keyfile) {
        (Some(c), Some(k)) => Some(ClientCert {
            certfile: c.clone(),
            keyfile: k.clone(),
        }),
        (None, None) => None,
        _ => {
            return Err(usage_err(
                "[keystone_auth] certfile and keyfile go together: set both or neither".into(),
            ));
        }
    };
    let mut cfg = AuthConfig::new(auth_url, method, scope);
    cfg.system_scope = system_scope;
    cfg.interface = ka.interface;
    cfg.region_name = settings.region_name.clone();
    cfg.tls = TlsConfig {
        cafile: ka.cafile.clone(),
        insecure: ka.insecure,
        client_cert,
    };
    if let Some(t) = ka.timeout {
        cfg.timeout = t;
    }
    cfg.retries = ka.connect_retries;
    cfg.backoff = ka.retry_backoff;
    Ok(cfg)
}

/// Builds the session; a setting the client refuses is a configuration error.
fn session(settings: &CasoSettings) -> anyhow::Result<Session> {
    session_for(auth_config(settings)?)
}

/// [`session`] for an [`auth_config`] the caller adjusted (`--check-network`
/// waits less).
pub(crate) fn session_for(cfg: AuthConfig) -> anyhow::Result<Session> {
    Session::new(cfg).map_err(|e| match e {
        OpenStackError::Config { .. } => exit::usage(anyhow!("[keystone_auth] {e}")),
        other => anyhow!(other),
    })
}

/// Logs in with the configured credentials. A rejection ends the run here,
/// before any project is touched.
pub(crate) async fn log_in(session: &Session) -> anyhow::Result<()> {
    let scope = if session.is_app_credential() {
        Scope::Unscoped
    } else {
        session.default_scope().clone()
    };
    match session.token_project(&scope).await {
        Ok(_) => Ok(()),
        Err(e @ OpenStackError::Unauthorized { .. }) => Err(anyhow!(
            "Keystone rejected the credentials in [keystone_auth] ({e}); nothing was extracted"
        )),
        Err(e) => Err(anyhow!(e).context("cannot log in to Keystone; nothing was extracted")),
    }
}

fn vo_rules(settings: &CasoSettings) -> VoRules {
    VoRules {
        property: settings.vo_property.clone(),
        map: settings.vo_map.clone(),
        default_vo: settings.default_vo.clone(),
    }
}

fn sort_key(r: &Record) -> (RecordType, String) {
    let key = match r {
        Record::Cloud(c) => c.vm_uuid.to_string(),
        Record::Accelerator(a) => format!("{} {}", a.associated_record, a.measurement),
        Record::Storage(s) => s.volume_id.to_string(),
        Record::Ip(i) => format!("{} {}", i.local_group, i.ip_version.number()),
    };
    (r.kind(), key)
}

/// From the lastrun (or `--extract-from`) to the run's `to`; `None` when the
/// project is already extracted up to now.
fn period_of(
    cfg: &RunConfig,
    lastrun: &dyn LastrunStore,
    project: &str,
) -> Result<Option<Period>, Failure> {
    let from = match cfg.extract_from {
        Some(t) => t,
        None => match lastrun.read(project) {
            Ok(Some(t)) => t,
            Ok(None) => {
                tracing::info!("no lastrun file, extracting from 1970-01-01");
                Timestamp::EPOCH
            }
            Err(e) => return Err(Failure::new(project, "lastrun file", e.to_string())),
        },
    };
    // A run that starts within a second or two of the previous one finds
    // that run's lastrun (its `to` + 1 s, as cASO writes it) at or just after
    // its own `to`: nothing to extract yet, not an error. Further ahead is a
    // wrong clock or file, which the admin must see.
    if cfg.extract_from.is_none() && from >= cfg.to && from.seconds_since(cfg.to) <= 2 {
        tracing::info!("up to date: the previous run ended moments ago (lastrun {from})");
        return Ok(None);
    }
    if from >= cfg.now {
        return Err(Failure::new(
            project,
            "period",
            format!(
                "cannot extract from the future (from {from}, now {}): check --extract-from or the lastrun file",
                cfg.now
            ),
        ));
    }
    if from > cfg.to {
        return Err(Failure::new(
            project,
            "period",
            format!("extract-from {from} is after extract-to {}", cfg.to),
        ));
    }
    Ok(Some(Period { from, to: cfg.to }))
}

async fn extract_project(
    shared: Arc<RunShared>,
    cfg: Arc<RunConfig>,
    lastrun: Arc<dyn LastrunStore>,
    project: ProjectInfo,
    stop: Shutdown,
) -> Extracted {
    let mut out = Extracted {
        period: None,
        records: Vec::new(),
        failures: Vec::new(),
        stopped: false,
        project,
    };
    let id = out.project.id.clone();
    let Some((vo, source)) = out.project.vo.clone() else {
        out.failures.push(Failure::new(
            &id,
            "VO mapping",
            format!(
                "no VO: set the Keystone project property {:?}, map the project in {}, or set [DEFAULT] default_vo",
                cfg.vo_property,
                cfg.mapping_file.display()
            ),
        ));
        return out;
    };
    let period = match period_of(&cfg, lastrun.as_ref(), &id) {
        Ok(Some(p)) => p,
        Ok(None) => return out,
        Err(f) => {
            out.failures.push(f);
            return out;
        }
    };
    out.period = Some(period);
    tracing::info!(
        "extracting {} to {} for VO {vo} (from {source})",
        period.from,
        period.to
    );
    let ctx = RecordContext {
        site_name: cfg.site_name.clone(),
        service_name: cfg.service_name.clone(),
        project_id: id.clone(),
        vo,
        period,
        now: cfg.now,
    };
    let target = &out.project.target;
    // The extractors of a project are independent: their requests overlap
    // (results are taken in the configured order, so the output and the
    // failures do not depend on timing).
    let extracting = join_all(cfg.extractors.iter().map(|extractor| {
        let (shared, ctx, keys) = (&*shared, &ctx, &cfg.keys);
        async move {
            match extractor {
                Extractor::Nova => match nova::fetch(shared, target, ctx).await {
                    Ok(data) => nova::build_records(&data, ctx, keys),
                    Err(f) => Err(f),
                },
                Extractor::Cinder => cinder::extract(shared, target, ctx).await,
                Extractor::Neutron => neutron::extract(shared, target, ctx).await,
            }
        }
    }));
    // After a stop request the project gets the grace to finish; then its
    // requests and backoff sleeps are dropped (nothing is written yet).
    let results = tokio::select! {
        r = extracting => r,
        _ = stop.grace_over() => {
            tracing::warn!("stopped on request before the project was extracted: nothing written, lastrun kept");
            out.stopped = true;
            return out;
        }
    };
    for result in results {
        match result {
            Ok(records) => out.records.extend(records),
            Err(f) => out.failures.push(f),
        }
    }
    out.records.sort_by_cached_key(sort_key);
    out
}

fn counts(records: &[Record]) -> Vec<(RecordType, usize)> {
    RecordType::ALL
        .into_iter()
        .map(|t| (t, records.iter().filter(|r| r.kind() == t).count()))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// One project as delivered: its report and failures, for its span's log.
struct Delivered {
    report: ProjectReport,
    failures: Vec<Failure>,
    stopped: bool,
}

/// Sends the records of a group of extracted projects (in project order)
/// and writes the lastrun of each that went well. The spool gets every
/// message of the group in one [`Spool::add_all`], so the file system is
/// synced once per group, not once per project: when syncing is slow,
/// the projects that finished meanwhile share the next sync.
async fn deliver_group(
    cfg: &RunConfig,
    lastrun: &Arc<dyn LastrunStore>,
    group: Vec<(tracing::Span, Extracted)>,
    out: &mut (dyn Write + Send),
) -> Vec<(tracing::Span, Delivered)> {
    let mut done: Vec<(tracing::Span, Delivered, Extracted)> = group
        .into_iter()
        .map(|(span, x)| {
            let d = Delivered {
                report: ProjectReport {
                    id: x.project.id.clone(),
                    period: x.period,
                    records: counts(&x.records),
                    messages: 0,
                    records_spooled: 0,
                    records_pushed: 0,
                    lastrun: None,
                },
                failures: Vec::new(),
                stopped: x.stopped,
            };
            (span, d, x)
        })
        .collect();
    // Projects without a period failed before extracting anything; stopped
    // ones deliver nothing.
    let active = |x: &Extracted| x.period.is_some() && !x.stopped;
    if cfg.dry_run {
        for (_, d, x) in done.iter_mut().filter(|(_, _, x)| active(x)) {
            match messenger::print_messages(out, &x.records, cfg.max_records) {
                Ok(n) => {
                    d.report.messages += n;
                    d.report.records_spooled += x.records.len();
                }
                Err(e) => x
                    .failures
                    .push(Failure::new(&x.project.id, "dry-run output", e)),
            }
        }
    } else {
        for m in &cfg.messengers {
            let mut batch = Vec::new();
            // Each project in the batch: its index, messages and records.
            let mut in_batch = Vec::new();
            for (i, (span, d, x)) in done.iter_mut().enumerate() {
                if !active(x) {
                    continue;
                }
                let id = x.project.id.clone();
                match m.spool_messages(&x.records, cfg.max_records) {
                    Some(Ok(messages)) => {
                        if !messages.is_empty() {
                            let records = messages.iter().map(|m| m.record_count()).sum::<usize>();
                            in_batch.push((i, messages.len(), records));
                            batch.extend(messages);
                        }
                    }
                    Some(Err(cause)) => x.failures.push(Failure::new(&id, m.describe(), cause)),
                    None => match m
                        .push(&x.records, cfg.max_records)
                        .instrument(span.clone())
                        .await
                    {
                        Ok(n) => {
                            d.report.records_pushed += n;
                            span.in_scope(|| tracing::debug!("{n} records to {}", m.describe()))
                        }
                        Err(cause) => x.failures.push(Failure::new(&id, m.describe(), cause)),
                    },
                }
            }
            let Some(spool) = m.spool().filter(|_| !batch.is_empty()).cloned() else {
                continue;
            };
            let added = tokio::task::spawn_blocking(move || spool.add_all(&batch))
                .await
                .map_err(|e| format!("spool task failed: {e}"))
                .and_then(|r| r.map_err(|e| e.to_string()));
            for (i, messages, records) in in_batch {
                let (span, d, x) = &mut done[i];
                match &added {
                    Ok(()) => {
                        d.report.messages += messages;
                        d.report.records_spooled += records;
                        span.in_scope(|| {
                            tracing::debug!(
                                "{messages} messages ({records} records) added to the {}",
                                m.describe()
                            )
                        })
                    }
                    Err(cause) => {
                        x.failures
                            .push(Failure::new(&x.project.id, m.describe(), cause.clone()))
                    }
                }
            }
        }
        // cASO's next start: one second after this period's end; only for
        // the projects whose messages are all durably delivered.
        let next = cfg.to.add_seconds(1);
        let writes = done
            .iter()
            .filter(|(_, _, x)| active(x) && x.failures.is_empty())
            .map(|(_, _, x)| {
                let (store, pid) = (lastrun.clone(), x.project.id.clone());
                tokio::task::spawn_blocking(move || store.write(&pid, next))
            });
        let results = join_all(writes).await;
        let mut results = results.into_iter();
        for (_, d, x) in done.iter_mut() {
            if !(active(x) && x.failures.is_empty()) {
                continue;
            }
            match results.next() {
                Some(Ok(Ok(()))) => d.report.lastrun = Some(next),
                Some(Ok(Err(e))) => {
                    x.failures
                        .push(Failure::new(&x.project.id, "lastrun file", e.to_string()))
                }
                Some(Err(e)) => {
                    x.failures
                        .push(Failure::new(&x.project.id, "lastrun file", e.to_string()))
                }
                None => {}
            }
        }
    }
    done.into_iter()
        .map(|(span, mut d, x)| {
            d.failures = x.failures;
            (span, d)
        })
        .collect()
}

/// One extraction run with the given stores, clock and dry-run output.
/// Returns the report even when projects failed ([`Report::failures`]);
/// `Err` only when nothing could be done (configuration, Keystone login).
pub async fn run(
    settings: &CasoSettings,
    stores: Stores,
    now: Timestamp,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<Report> {
    run_until(settings, stores, now, out, &Shutdown::new()).await
}

/// [`run`] that starts no project once `stop` is requested: the projects
/// already started get the grace ([`crate::daemon::STOP_GRACE`]) to finish
/// (records spooled, lastrun written) and are dropped after it, before
/// anything of theirs is written ([`Report::stopped`]); the others are
/// listed in [`Report::not_started`]. Delivery (spool, then lastrun) is
/// never interrupted.
pub async fn run_until(
    settings: &CasoSettings,
    stores: Stores,
    now: Timestamp,
    out: &mut (dyn Write + Send),
    stop: &Shutdown,
) -> anyhow::Result<Report> {
    let site_name = settings.site_name()?.to_string();
    let service_name = settings.service_name()?.to_string();
    let max_records = NonZeroUsize::new(settings.ssm.max_size)
        .ok_or_else(|| usage_err("[ssm] max_size must be at least 1".into()))?;
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
        });
    }
    let session = session(settings)?;
    let to = match settings.extract_to {
        Some(t) if t > now => {
            tracing::warn!(extract_to = %t, now = %now, "extract-to is in the future: extracting up to now");
            now
        }
        Some(t) => t,
        None => now,
    };
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
    });

    let concurrency = settings.concurrency.max(1);
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
                concurrency,
            },
            tagged,
        )
        .await;
        anyhow::Ok((admin_scope, discovery))
    };
    let (admin_scope, discovery) = tokio::select! {
        found = found => found?,
        _ = stop.requested() => {
            tracing::warn!("stopped on request before any project was started");
            return Ok(Report {
                requests: session.request_counts(),
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
    });
    // A window of `concurrency` projects: when the oldest is extracted, it
    // and the ones after it that are done too are delivered together (in
    // project order, whatever order they finish in) while the next ones
    // start, so at most `2 x concurrency` projects' data are in memory.
    let spawn = |p: ProjectInfo| {
        let span = crate::logging::project_span(&p.name, &p.id);
        let (shared, cfg, lastrun) = (shared.clone(), cfg.clone(), stores.lastrun.clone());
        let id = p.id.clone();
        let task = tokio::spawn(
            extract_project(shared, cfg, lastrun, p, stop.clone()).instrument(span.clone()),
        );
        (id, span, task)
    };
    let mut queued = discovery.projects.into_iter();
    let mut window = VecDeque::with_capacity(concurrency);
    loop {
        // After a stop request no new project starts; those started finish.
        while window.len() < concurrency
            && !stop.is_requested()
            && let Some(p) = queued.next()
        {
            window.push_back(spawn(p));
        }
        let Some(first) = window.pop_front() else {
            break;
        };
        // The oldest project, and every one after it already finished.
        let mut group = Vec::new();
        let mut next = Some(first);
        while let Some((id, span, task)) = next.take() {
            match task.await {
                Ok(x) => group.push((span, x)),
                Err(e) => {
                    let f = Failure::new(&id, "extraction task", e.to_string());
                    tracing::error!("{f}");
                    report.failures.push(f);
                }
            }
            if window.front().is_some_and(|(_, _, t)| t.is_finished()) {
                next = window.pop_front();
            }
        }
        // The next projects start while these are delivered.
        // After a stop request no new project starts; those started finish.
        while window.len() < concurrency
            && !stop.is_requested()
            && let Some(p) = queued.next()
        {
            window.push_back(spawn(p));
        }
        for (span, d) in deliver_group(&cfg, &stores.lastrun, group, out).await {
            span.in_scope(|| {
                for f in &d.failures {
                    tracing::error!("{}: {}", f.object, f.cause);
                }
                if !d.failures.is_empty() && !cfg.dry_run {
                    tracing::warn!(
                        "lastrun left unchanged: the period is extracted again next run"
                    );
                }
            });
            if d.stopped {
                report.stopped.push(d.report.id);
            } else {
                report.projects.push(d.report);
            }
            report.failures.extend(d.failures);
        }
    }
    report.not_started.extend(queued.map(|p| p.id));
    report.requests = session.request_counts();
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
    let spool: Option<Arc<dyn Spool>> = if settings.messengers.contains(&caso::Messenger::Ssm) {
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

/// `caso-extract`.
pub fn main(settings: CasoSettings) -> anyhow::Result<()> {
    main_until(&settings, &Shutdown::new())
}

/// One `caso-extract` run that stops gracefully when `stop` is requested
/// ([`run_until`]). Takes and releases the run lock itself, so in daemon
/// mode a cron run of cASO or of ours can go between two runs.
pub fn main_until(settings: &CasoSettings, stop: &Shutdown) -> anyhow::Result<()> {
    settings.site_name()?;
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
    let report = rt.block_on(run_until(
        settings,
        stores,
        Timestamp::now(),
        &mut stdout,
        stop,
    ))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::extract::CasoCli;
    use clap::Parser;
    use std::sync::Mutex;

    fn settings(text: &str) -> CasoSettings {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("caso.conf");
        std::fs::write(&path, text).unwrap();
        let cli =
            CasoCli::try_parse_from(["caso-extract", "--config-file", path.to_str().unwrap()])
                .unwrap();
        let eff = crate::config::caso::load_caso_with_env(&cli, vec![]).unwrap();
        CasoSettings::from_effective(&eff).unwrap()
    }

    fn code(e: &anyhow::Error) -> String {
        format!("{:?}", exit::code_for(e))
    }

    #[test]
    fn the_appliance_file_needs_credentials_exit_2() {
        let s = settings(include_str!("../../tests/fixtures/config/caso.conf"));
        let e = auth_config(&s).unwrap_err();
        assert_eq!(code(&e), format!("{:?}", std::process::ExitCode::from(2)));
        assert!(
            e.to_string().contains("username or user_id is required"),
            "{e}"
        );
    }

    #[test]
    fn password_scopes_and_their_domains() {
        let base = "[DEFAULT]\nsite_name = S\n[keystone_auth]\nauth_type = password\nauth_url = https://k/v3\nusername = caso\nuser_domain_name = Default\npassword = pw\n";
        let cfg = auth_config(&settings(base)).unwrap();
        assert_eq!(cfg.scope, Scope::Unscoped);
        assert!(!cfg.system_scope);
        let cfg = auth_config(&settings(&format!(
            "{base}project_name = admin\nproject_domain_id = default\nsystem_scope = all\n"
        )))
        .unwrap();
        assert_eq!(
            cfg.scope,
            Scope::ProjectName {
                name: "admin".into(),
                domain: DomainRef::Id("default".into())
            }
        );
        assert!(cfg.system_scope);
        let e = auth_config(&settings(&format!("{base}project_name = admin\n"))).unwrap_err();
        assert!(
            e.to_string()
                .contains("project_domain_name or project_domain_id"),
            "{e}"
        );
        assert_eq!(code(&e), format!("{:?}", std::process::ExitCode::from(2)));
        let e = auth_config(&settings(&format!("{base}certfile = /c.pem\n"))).unwrap_err();
        assert!(
            e.to_string().contains("certfile and keyfile go together"),
            "{e}"
        );
    }

    /// Defect 10: application credentials never ask for a scope, whatever
    /// else the file says.
    #[test]
    fn application_credentials_are_never_scoped() {
        let cfg = auth_config(&settings(
            "[keystone_auth]\nauth_type = v3applicationcredential\nauth_url = https://k/v3\napplication_credential_id = ac\napplication_credential_secret = s\nproject_name = x\nsystem_scope = all\n",
        ))
        .unwrap();
        assert_eq!(cfg.scope, Scope::Unscoped);
        assert!(!cfg.system_scope);
        assert!(matches!(
            cfg.method,
            AuthMethod::ApplicationCredential {
                credential: AppCredentialRef::Id(_),
                ..
            }
        ));
        let e = auth_config(&settings(
            "[keystone_auth]\nauth_type = applicationcredential\nauth_url = https://k/v3\napplication_credential_id = ac\n",
        ))
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("application_credential_secret is required"),
            "{e}"
        );
    }

    #[test]
    fn concurrency_flag_sets_the_option() {
        let cli = CasoCli::try_parse_from(["caso-extract", "--concurrency", "3"]).unwrap();
        let eff = crate::config::caso::load_caso_with_env(&cli, vec![]).unwrap();
        assert_eq!(CasoSettings::from_effective(&eff).unwrap().concurrency, 3);
        let cli = CasoCli::try_parse_from(["caso-extract", "--concurrency", "0"]).unwrap();
        assert!(crate::config::caso::load_caso_with_env(&cli, vec![]).is_err());
    }

    #[derive(Default)]
    struct Lastruns(Mutex<HashMap<String, Result<Timestamp, String>>>);

    impl LastrunStore for Lastruns {
        fn read(&self, p: &str) -> Result<Option<Timestamp>, messenger::BoxError> {
            match self.0.lock().unwrap().get(p) {
                None => Ok(None),
                Some(Ok(t)) => Ok(Some(*t)),
                Some(Err(e)) => Err(e.clone().into()),
            }
        }
        fn write(&self, p: &str, t: Timestamp) -> Result<(), messenger::BoxError> {
            self.0.lock().unwrap().insert(p.into(), Ok(t));
            Ok(())
        }
    }

    fn cfg(extract_from: Option<Timestamp>, to: Timestamp, now: Timestamp) -> RunConfig {
        RunConfig {
            site_name: "S".into(),
            service_name: "S".into(),
            extractors: vec![],
            keys: nova::FlavorKeys::default(),
            extract_from,
            to,
            now,
            vo_property: "VO".into(),
            mapping_file: "/etc/caso/voms.json".into(),
            dry_run: false,
            max_records: NonZeroUsize::MIN,
            messengers: vec![],
        }
    }

    #[test]
    fn period_from_lastrun_or_flag() {
        let t = |s: &str| Timestamp::parse(s).unwrap();
        let now = t("2026-11-30T12:00:00Z");
        let store = Lastruns::default();
        store
            .0
            .lock()
            .unwrap()
            .insert("p1".into(), Ok(t("2026-11-24 10:00:01+00:00")));
        store
            .0
            .lock()
            .unwrap()
            .insert("bad".into(), Err("invalid lastrun file x".into()));
        store
            .0
            .lock()
            .unwrap()
            .insert("future".into(), Ok(t("2026-12-01T00:00:00Z")));
        let c = cfg(None, now, now);
        assert_eq!(
            period_of(&c, &store, "p1").unwrap().unwrap(),
            Period {
                from: t("2026-11-24T10:00:01Z"),
                to: now
            }
        );
        assert_eq!(
            period_of(&c, &store, "new").unwrap().unwrap().from,
            Timestamp::EPOCH
        );
        let f = period_of(&c, &store, "bad").unwrap_err();
        assert_eq!(
            (f.project.as_str(), f.object.as_str()),
            ("bad", "lastrun file")
        );
        let f = period_of(&c, &store, "future").unwrap_err();
        assert!(f.cause.contains("cannot extract from the future"), "{f}");
        // The previous run's `to` was a moment ago: its lastrun (`to` + 1 s)
        // is just ahead of this run's `to`. Up to date, not an error.
        store
            .0
            .lock()
            .unwrap()
            .insert("just-done".into(), Ok(now.add_seconds(1)));
        assert_eq!(period_of(&c, &store, "just-done").unwrap(), None);
        let c = cfg(
            Some(t("2026-11-01T00:00:00Z")),
            t("2026-10-01T00:00:00Z"),
            now,
        );
        let f = period_of(&c, &store, "p1").unwrap_err();
        assert!(f.cause.contains("is after extract-to"), "{f}");
    }
}
