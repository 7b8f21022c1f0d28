//! `caso.conf`: every option cASO 5.2.2 reads (names, defaults and old spellings
//! from its oslo.config registrations), plus the few of ours, and the typed
//! [`CasoSettings`] extraction runs with.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::voms::VoMap;
use super::{
    Choice, ConfigError, Effective, FlagValue, Kind, OptSpec, Origin, Owner, Rename, Schema,
    Secret, Sources, conf_files_in, ini::Dialect, opt, ours,
};
pub use crate::openstack::Interface;
pub use crate::record::RecordType;
use crate::time::Timestamp;

/// Accepted so that files written for cASO load, but without effect here.
const fn ignored(
    section: &'static str,
    key: &'static str,
    default: Option<&'static str>,
) -> OptSpec {
    OptSpec {
        section,
        key,
        kind: Kind::Str,
        default,
        owner: Owner::Ignored,
        help: "accepted for compatibility; no effect",
    }
}

const fn choice(name: &'static str) -> Choice {
    Choice {
        name,
        aliases: &[],
        supported: true,
    }
}

const fn unsupported(name: &'static str) -> Choice {
    Choice {
        name,
        aliases: &[],
        supported: false,
    }
}

static MESSENGERS: &[Choice] = &[
    Choice {
        name: "ssm",
        aliases: &["ssmv4"],
        supported: true,
    },
    choice("noop"),
    choice("logstash"),
    unsupported("greendigit_cim"),
];

static EXTRACTORS: &[Choice] = &[
    choice("nova"),
    choice("cinder"),
    choice("neutron"),
    unsupported("prometheus"),
];

static RECORD_TYPES: &[Choice] = &[
    choice("cloud"),
    choice("ip"),
    choice("accelerator"),
    choice("storage"),
    unsupported("energy"),
];

static AUTH_TYPES: &[Choice] = &[
    Choice {
        name: "password",
        aliases: &["v3password"],
        supported: true,
    },
    Choice {
        name: "applicationcredential",
        aliases: &["v3applicationcredential"],
        supported: true,
    },
    Choice {
        name: "oidcaccesstoken",
        aliases: &["v3oidcaccesstoken"],
        supported: true,
    },
];

static INTERFACES: &[Choice] = &[
    Choice {
        name: "public",
        aliases: &["publicURL"],
        supported: true,
    },
    Choice {
        name: "internal",
        aliases: &["internalURL"],
        supported: true,
    },
    Choice {
        name: "admin",
        aliases: &["adminURL"],
        supported: true,
    },
];

const D: &str = "DEFAULT";
const KA: &str = "keystone_auth";

#[rustfmt::skip]
static OPTIONS: &[OptSpec] = &[
    opt(D, "messengers", Kind::Choices(MESSENGERS), Some("noop"), "Messengers that dispatch records: ssm, noop, logstash."),
    opt(D, "spooldir", Kind::Path, Some("/var/spool/caso"), "Spool directory (lastrun files)."),
    opt(D, "lock_path", Kind::Path, Some("$spooldir"), "Directory of the run lock; default $CASO_LOCK_PATH or $spooldir."),
    opt(D, "dry_run", Kind::Bool, Some("false"), "Extract and print, push nothing, do not update lastrun."),
    opt(D, "site_name", Kind::Str, None, "Site name as in GOCDB (required to extract)."),
    opt(D, "service_name", Kind::Str, Some("$site_name"), "Service name within the site."),
    opt(D, "projects", Kind::List, Some(""), "Projects (ids or names) to extract, besides those tagged caso_tag."),
    opt(D, "caso_tag", Kind::Str, Some("caso"), "Keystone tag marking projects to extract."),
    opt(D, "vo_property", Kind::Str, Some("VO"), "Project property holding its VO."),
    opt(D, "mapping_file", Kind::Path, Some("/etc/caso/voms.json"), "Deprecated VO <-> project JSON mapping."),
    opt(D, "extract_to", Kind::Time, None, "Extract until this date (default now; UTC if no zone)."),
    opt(D, "extract_from", Kind::Time, None, "Extract from this date (default: the project's lastrun)."),
    opt(D, "extractor", Kind::Choices(EXTRACTORS), Some("nova,cinder,neutron"), "Extractors: nova, cinder, neutron."),
    opt(D, "region_name", Kind::Str, None, "OpenStack region to use."),
    opt(D, "debug", Kind::Bool, Some("false"), "Log at DEBUG instead of INFO."),
    opt(D, "log_file", Kind::Path, None, "Log to this file instead of stderr."),
    opt(D, "log_dir", Kind::Path, None, "Base directory of a relative log_file."),
    opt(D, "use_json", Kind::Bool, Some("false"), "Log JSON lines."),
    ours(D, "concurrency", Kind::Int { min: 1, max: 256 }, Some("8"), "Projects extracted at once (--concurrency)."),
    ours(D, "lock_timeout", Kind::Duration, Some("30m"), "How long to wait for another run's lock."),
    ours(D, "default_vo", Kind::Str, None, "VO for projects with no VO mapping (else such a project is an error)."),
    ignored(D, "config_source", None),
    ignored(D, "log_config_append", None),
    ignored(D, "log_date_format", Some("%Y-%m-%d %H:%M:%S")),
    ignored(D, "watch_log_file", Some("false")),
    ignored(D, "use_syslog", Some("false")),
    ignored(D, "use_journal", Some("false")),
    ignored(D, "syslog_log_facility", Some("LOG_USER")),
    ignored(D, "use_stderr", Some("false")),
    ignored(D, "use_eventlog", Some("false")),
    ignored(D, "log_color", Some("false")),
    ignored(D, "log_rotate_interval", Some("1")),
    ignored(D, "log_rotate_interval_type", Some("days")),
    ignored(D, "max_logfile_count", Some("30")),
    ignored(D, "max_logfile_size_mb", Some("200")),
    ignored(D, "log_rotation_type", Some("none")),
    ignored(D, "logging_context_format_string", None),
    ignored(D, "logging_default_format_string", None),
    ignored(D, "logging_debug_format_suffix", None),
    ignored(D, "logging_exception_prefix", None),
    ignored(D, "logging_user_identity_format", None),
    ignored(D, "default_log_levels", None),
    ignored(D, "publish_errors", Some("false")),
    ignored(D, "instance_format", None),
    ignored(D, "instance_uuid_format", None),
    ignored(D, "rate_limit_interval", Some("0")),
    ignored(D, "rate_limit_burst", Some("0")),
    ignored(D, "rate_limit_except_level", Some("CRITICAL")),
    ignored(D, "fatal_deprecations", Some("false")),
    opt(KA, "auth_type", Kind::Choice(AUTH_TYPES), None, "password, applicationcredential or oidcaccesstoken."),
    opt(KA, "auth_url", Kind::Str, None, "Keystone URL, e.g. https://keystone:5000/v3."),
    opt(KA, "system_scope", Kind::Str, None, "System scope (not used with application credentials)."),
    opt(KA, "domain_id", Kind::Str, None, "Domain ID to scope to."),
    opt(KA, "domain_name", Kind::Str, None, "Domain name to scope to."),
    opt(KA, "project_id", Kind::Str, None, "Project ID to scope to."),
    opt(KA, "project_name", Kind::Str, None, "Project name to scope to."),
    opt(KA, "project_domain_id", Kind::Str, None, "Domain ID containing the project."),
    opt(KA, "project_domain_name", Kind::Str, None, "Domain name containing the project."),
    opt(KA, "default_domain_id", Kind::Str, None, "Domain ID for both user and project."),
    opt(KA, "default_domain_name", Kind::Str, None, "Domain name for both user and project."),
    opt(KA, "user_id", Kind::Str, None, "User ID."),
    opt(KA, "username", Kind::Str, None, "User name."),
    opt(KA, "user_domain_id", Kind::Str, None, "User's domain ID."),
    opt(KA, "user_domain_name", Kind::Str, None, "User's domain name."),
    opt(KA, "password", Kind::Secret, None, "User's password."),
    opt(KA, "application_credential_id", Kind::Str, None, "Application credential ID."),
    opt(KA, "application_credential_name", Kind::Str, None, "Application credential name."),
    opt(KA, "application_credential_secret", Kind::Secret, None, "Application credential secret."),
    opt(KA, "identity_provider", Kind::Str, None, "OIDC identity provider (oidcaccesstoken)."),
    opt(KA, "protocol", Kind::Str, None, "OIDC federation protocol (oidcaccesstoken)."),
    opt(KA, "access_token", Kind::Secret, None, "OIDC access token (oidcaccesstoken)."),
    opt(KA, "cafile", Kind::Path, None, "PEM CA bundle for HTTPS verification."),
    opt(KA, "certfile", Kind::Path, None, "PEM client certificate."),
    opt(KA, "keyfile", Kind::Path, None, "PEM client key."),
    opt(KA, "insecure", Kind::Bool, Some("false"), "Skip HTTPS verification (never in production)."),
    opt(KA, "timeout", Kind::Duration, None, "HTTP request timeout (seconds)."),
    ours(KA, "interface", Kind::Choice(INTERFACES), Some("public"), "Catalog interface: public, internal, admin."),
    ours(KA, "connect_retries", Kind::Int { min: 0, max: 100 }, Some("3"), "Retries of a failed connection or 5xx."),
    ours(KA, "retry_backoff", Kind::Duration, Some("1s"), "First retry delay, doubled each retry."),
    ignored(KA, "auth_section", None),
    ignored(KA, "trust_id", None),
    ignored(KA, "collect_timing", Some("false")),
    ignored(KA, "split_loggers", Some("false")),
    ignored(KA, "tls_ciphers", None),
    ignored(KA, "tls_min_version", None),
    opt("ssm", "output_path", Kind::Path, Some("/var/spool/apel/outgoing/openstack"), "dirq spool the records go to."),
    opt("ssm", "max_size", Kind::Int { min: 1, max: 100_000 }, Some("100"), "Records per message."),
    opt("benchmark", "name_key", Kind::Str, Some("accounting:benchmark_type"), "Flavor extra spec with the benchmark type."),
    opt("benchmark", "value_key", Kind::Str, Some("accounting:benchmark_value"), "Flavor extra spec with the benchmark value."),
    opt("accelerator", "type_key", Kind::Str, Some("Accelerator:Type"), "Flavor extra spec with the accelerator type."),
    opt("accelerator", "vendor_key", Kind::Str, Some("Accelerator:Vendor"), "Flavor extra spec with the vendor."),
    opt("accelerator", "model_key", Kind::Str, Some("Accelerator:Model"), "Flavor extra spec with the model."),
    opt("accelerator", "number_key", Kind::Str, Some("Accelerator:Number"), "Flavor extra spec with the count."),
    opt("logstash", "host", Kind::Str, Some("localhost"), "Logstash host."),
    opt("logstash", "port", Kind::Int { min: 1, max: 65535 }, Some("5000"), "Logstash port."),
    opt("messenger_ssm", "record_types", Kind::Choices(RECORD_TYPES), Some("cloud,ip,accelerator,storage"), "Record types the ssm messenger publishes."),
    opt("messenger_noop", "record_types", Kind::Choices(RECORD_TYPES), Some(""), "Record types for noop (empty: all)."),
    opt("messenger_logstash", "record_types", Kind::Choices(RECORD_TYPES), Some(""), "Record types for logstash (empty: all)."),
];

#[rustfmt::skip]
static RENAMES: &[Rename] = &[
    Rename { from: (D, "tenants"), to: (D, "projects") },
    Rename { from: ("extractor", "mapping_file"), to: (D, "mapping_file") },
    Rename { from: (KA, "auth_plugin"), to: (KA, "auth_type") },
    Rename { from: (KA, "tenant_id"), to: (KA, "project_id") },
    Rename { from: (KA, "tenant_name"), to: (KA, "project_name") },
    Rename { from: (KA, "user_name"), to: (KA, "username") },
    Rename { from: ("messenger_ssmv4", "*"), to: ("messenger_ssm", "*") },
];

pub(crate) static SCHEMA: Schema = Schema {
    program: "caso-extract",
    dialect: Dialect::Oslo,
    env_prefix: "CASO_",
    options: OPTIONS,
    renames: RENAMES,
    ignored_sections: &[
        "prometheus",
        "greendigit_cim",
        "messenger_greendigit_cim",
        "sample_remote_file_source",
    ],
    interpolate: true,
};

/// Where records go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Messenger {
    /// APEL messages in a dirq spool for `ssmsend` (`ssmv4` is its old name).
    Ssm,
    /// Discard.
    Noop,
    /// JSON lines to a Logstash TCP input.
    Logstash,
}

/// Which OpenStack service records are extracted from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extractor {
    Nova,
    Cinder,
    Neutron,
}

/// Keystone authentication method (`v3password` etc. are old spellings).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthType {
    Password,
    ApplicationCredential,
    OidcAccessToken,
}

// Each enum above from the canonical names of its option's table
// (MESSENGERS, EXTRACTORS, AUTH_TYPES; INTERFACES is the catalog's own
// `openstack::Interface`, RECORD_TYPES the record module's): aliases are already
// resolved, and a name without a variant is a bug in the table.
impl std::str::FromStr for Messenger {
    type Err = ();
    fn from_str(name: &str) -> Result<Self, ()> {
        match name {
            "ssm" => Ok(Messenger::Ssm),
            "noop" => Ok(Messenger::Noop),
            "logstash" => Ok(Messenger::Logstash),
            _ => Err(()),
        }
    }
}

impl std::str::FromStr for Extractor {
    type Err = ();
    fn from_str(name: &str) -> Result<Self, ()> {
        match name {
            "nova" => Ok(Extractor::Nova),
            "cinder" => Ok(Extractor::Cinder),
            "neutron" => Ok(Extractor::Neutron),
            _ => Err(()),
        }
    }
}

impl std::str::FromStr for AuthType {
    type Err = ();
    fn from_str(name: &str) -> Result<Self, ()> {
        match name {
            "password" => Ok(AuthType::Password),
            "applicationcredential" => Ok(AuthType::ApplicationCredential),
            "oidcaccesstoken" => Ok(AuthType::OidcAccessToken),
            _ => Err(()),
        }
    }
}

/// A canonical choice name as its enum (see above).
fn typed<T: std::str::FromStr>(
    e: &Effective,
    section: &str,
    key: &str,
    name: &str,
) -> Result<T, ConfigError> {
    name.parse().map_err(|_| {
        e.invalid(
            section,
            key,
            format!("internal: {name:?} has no meaning here"),
        )
    })
}

/// A list option's canonical choice names as their enums.
fn typed_list<T: std::str::FromStr>(
    e: &Effective,
    section: &str,
    key: &str,
) -> Result<Vec<T>, ConfigError> {
    e.choices(section, key)?
        .into_iter()
        .map(|name| typed(e, section, key, name))
        .collect()
}

/// `[keystone_auth]`: how to authenticate to Keystone. All optional fields
/// default to unset; which ones are needed depends on `auth_type`.
#[derive(Clone, Debug)]
pub struct KeystoneAuth {
    /// Default unset (cASO fails then too).
    pub auth_type: Option<AuthType>,
    pub auth_url: Option<String>,
    pub system_scope: Option<String>,
    pub domain_id: Option<String>,
    pub domain_name: Option<String>,
    pub project_id: Option<String>,
    pub project_name: Option<String>,
    pub project_domain_id: Option<String>,
    pub project_domain_name: Option<String>,
    pub default_domain_id: Option<String>,
    pub default_domain_name: Option<String>,
    pub user_id: Option<String>,
    pub username: Option<String>,
    pub user_domain_id: Option<String>,
    pub user_domain_name: Option<String>,
    pub password: Option<Secret>,
    pub application_credential_id: Option<String>,
    pub application_credential_name: Option<String>,
    pub application_credential_secret: Option<Secret>,
    pub identity_provider: Option<String>,
    pub protocol: Option<String>,
    pub access_token: Option<Secret>,
    pub cafile: Option<PathBuf>,
    pub certfile: Option<PathBuf>,
    pub keyfile: Option<PathBuf>,
    /// Default false.
    pub insecure: bool,
    /// Default unset (no timeout beyond the OS's).
    pub timeout: Option<Duration>,
    /// Ours. Default public.
    pub interface: Interface,
    /// Ours. Default 3.
    pub connect_retries: u32,
    /// Ours. Default 1 s, doubled each retry.
    pub retry_backoff: Duration,
}

/// `[ssm]`: the spool the ssm messenger writes.
#[derive(Clone, Debug)]
pub struct Ssm {
    /// Default `/var/spool/apel/outgoing/openstack`.
    pub output_path: PathBuf,
    /// Records per message. Default 100.
    pub max_size: usize,
}

/// `[benchmark]`: flavor extra-spec keys.
#[derive(Clone, Debug)]
pub struct Benchmark {
    /// Default `accounting:benchmark_type`.
    pub name_key: String,
    /// Default `accounting:benchmark_value`.
    pub value_key: String,
}

/// `[accelerator]`: flavor extra-spec keys.
#[derive(Clone, Debug)]
pub struct Accelerator {
    /// Default `Accelerator:Type`.
    pub type_key: String,
    /// Default `Accelerator:Vendor`.
    pub vendor_key: String,
    /// Default `Accelerator:Model`.
    pub model_key: String,
    /// Default `Accelerator:Number`.
    pub number_key: String,
}

/// `[logstash]`.
#[derive(Clone, Debug)]
pub struct Logstash {
    /// Default `localhost`.
    pub host: String,
    /// Default 5000.
    pub port: u16,
}

/// `[messenger_*] record_types`, with "empty = all" already applied.
#[derive(Clone, Debug)]
pub struct MessengerRecordTypes {
    /// Default cloud, ip, accelerator, storage.
    pub ssm: Vec<RecordType>,
    /// Default all.
    pub noop: Vec<RecordType>,
    /// Default all.
    pub logstash: Vec<RecordType>,
}

impl MessengerRecordTypes {
    pub fn for_messenger(&self, m: Messenger) -> &[RecordType] {
        match m {
            Messenger::Ssm => &self.ssm,
            Messenger::Noop => &self.noop,
            Messenger::Logstash => &self.logstash,
        }
    }
}

/// Logging options of caso.conf (oslo.log).
#[derive(Clone, Debug)]
pub struct CasoLogging {
    /// `debug`: DEBUG instead of INFO. Default false.
    pub debug: bool,
    /// `log_file` joined to `log_dir` (oslo: `log_dir` alone means
    /// `<log_dir>/caso-extract.log`). Default unset: stderr.
    pub file: Option<PathBuf>,
    /// `use_json`. Default false.
    pub use_json: bool,
}

/// Everything `caso-extract` acts on.
#[derive(Clone, Debug)]
pub struct CasoSettings {
    /// Default `noop` (the appliance sets `ssmv4`, i.e. ssm). Never empty.
    pub messengers: Vec<Messenger>,
    /// Default `/var/spool/caso`.
    pub spooldir: PathBuf,
    /// Default `$CASO_LOCK_PATH`, else `$spooldir`.
    pub lock_path: PathBuf,
    /// Default false.
    pub dry_run: bool,
    /// GOCDB site name. No default; required to extract ([`Self::site_name`]).
    pub site_name: Option<String>,
    /// Default `$site_name`.
    pub service_name: Option<String>,
    /// Default empty (only projects tagged `caso_tag`).
    pub projects: Vec<String>,
    /// Default `caso`.
    pub caso_tag: String,
    /// Default `VO`.
    pub vo_property: String,
    /// Default `/etc/caso/voms.json` (used only if it exists).
    pub mapping_file: PathBuf,
    /// `mapping_file` as loaded (empty when there is no such file).
    pub vo_map: VoMap,
    /// Default unset: each project's lastrun.
    pub extract_from: Option<Timestamp>,
    /// Default unset: now.
    pub extract_to: Option<Timestamp>,
    /// Default nova, cinder, neutron. Never empty.
    pub extractors: Vec<Extractor>,
    /// Default unset.
    pub region_name: Option<String>,
    /// Ours. Default 8.
    pub concurrency: usize,
    /// Ours. Default 30 min.
    pub lock_timeout: Duration,
    /// Ours. Default unset: an unmapped project is an error.
    pub default_vo: Option<String>,
    pub logging: CasoLogging,
    pub keystone_auth: KeystoneAuth,
    pub ssm: Ssm,
    pub benchmark: Benchmark,
    pub accelerator: Accelerator,
    pub logstash: Logstash,
    pub record_types: MessengerRecordTypes,
}

fn required(e: &Effective, section: &str, key: &str) -> Result<String, ConfigError> {
    e.string(section, key).ok_or_else(|| ConfigError::Missing {
        section: section.into(),
        key: key.into(),
        purpose: "(no default)".into(),
    })
}

/// `extract_from` and `extract_to`, checked against each other and the clock:
/// either before 1970, or `extract_from` after `now` (nothing could be
/// extracted), is a configuration error, not a failure of every project.
pub(crate) fn period(
    e: &Effective,
    now: Timestamp,
) -> Result<(Option<Timestamp>, Option<Timestamp>), ConfigError> {
    let from = e.time(D, "extract_from")?;
    let to = e.time(D, "extract_to")?;
    for (key, t) in [("extract_from", from), ("extract_to", to)] {
        if let Some(t) = t.filter(|t| *t < Timestamp::EPOCH) {
            return Err(e.invalid(D, key, format!("{t} is before 1970-01-01")));
        }
    }
    if let Some(t) = from.filter(|t| *t > now) {
        return Err(e.invalid(
            D,
            "extract_from",
            format!("{t} is in the future (now {now})"),
        ));
    }
    if let (Some(f), Some(t)) = (from, to)
        && f > t
    {
        return Err(e.invalid(D, "extract_from", format!("{f} is after extract_to {t}")));
    }
    Ok((from, to))
}

fn record_types(e: &Effective, section: &str) -> Result<Vec<RecordType>, ConfigError> {
    let types: Vec<RecordType> = typed_list(e, section, "record_types")?;
    if types.is_empty() && e.list(section, "record_types").is_empty() {
        // cASO: an empty list means every record type.
        return Ok(RecordType::ALL.to_vec());
    }
    Ok(types)
}

impl CasoLogging {
    /// Only the logging options, so logging can start before the rest is checked.
    pub fn from_effective(e: &Effective) -> Result<Self, ConfigError> {
        let file = match (e.path(D, "log_file"), e.path(D, "log_dir")) {
            (Some(f), Some(dir)) => Some(dir.join(f)),
            (Some(f), None) => Some(f),
            (None, Some(dir)) => Some(dir.join("caso-extract.log")),
            (None, None) => None,
        };
        Ok(CasoLogging {
            debug: e.boolean(D, "debug")?,
            file,
            use_json: e.boolean(D, "use_json")?,
        })
    }
}

impl CasoSettings {
    /// Types every option of the effective configuration.
    pub fn from_effective(e: &Effective) -> Result<Self, ConfigError> {
        let messengers: Vec<Messenger> = typed_list(e, D, "messengers")?;
        if messengers.is_empty() {
            return Err(ConfigError::Missing {
                section: D.into(),
                key: "messengers".into(),
                purpose: "(at least one of ssm, noop, logstash)".into(),
            });
        }
        let extractors: Vec<Extractor> = typed_list(e, D, "extractor")?;
        if extractors.is_empty() {
            return Err(ConfigError::Missing {
                section: D.into(),
                key: "extractor".into(),
                purpose: "(at least one of nova, cinder, neutron)".into(),
            });
        }
        let auth_type = e
            .choice(KA, "auth_type")?
            .map(|n| typed(e, KA, "auth_type", n))
            .transpose()?;
        let interface = match e.choice(KA, "interface")? {
            Some(n) => typed(e, KA, "interface", n)?,
            None => Interface::Public,
        };
        let int = |s: &str, k: &str, default: i64| -> Result<i64, ConfigError> {
            Ok(e.int(s, k)?.unwrap_or(default))
        };
        let (extract_from, extract_to) = period(e, Timestamp::now())?;
        let mapping_file = e
            .path(D, "mapping_file")
            .unwrap_or_else(|| "/etc/caso/voms.json".into());
        Ok(CasoSettings {
            messengers,
            spooldir: e
                .path(D, "spooldir")
                .unwrap_or_else(|| "/var/spool/caso".into()),
            lock_path: e
                .path(D, "lock_path")
                .or_else(|| e.path(D, "spooldir"))
                .unwrap_or_else(|| "/var/spool/caso".into()),
            dry_run: e.boolean(D, "dry_run")?,
            site_name: e.string(D, "site_name"),
            service_name: e.string(D, "service_name"),
            projects: e.list(D, "projects"),
            caso_tag: required(e, D, "caso_tag")?,
            vo_property: required(e, D, "vo_property")?,
            vo_map: VoMap::load(&mapping_file)?,
            mapping_file,
            extract_from,
            extract_to,
            extractors,
            region_name: e.string(D, "region_name"),
            concurrency: int(D, "concurrency", 8)? as usize,
            lock_timeout: e
                .duration(D, "lock_timeout")?
                .unwrap_or(Duration::from_secs(1800)),
            default_vo: e.string(D, "default_vo"),
            logging: CasoLogging::from_effective(e)?,
            keystone_auth: KeystoneAuth {
                auth_type,
                auth_url: e.string(KA, "auth_url"),
                system_scope: e.string(KA, "system_scope"),
                domain_id: e.string(KA, "domain_id"),
                domain_name: e.string(KA, "domain_name"),
                project_id: e.string(KA, "project_id"),
                project_name: e.string(KA, "project_name"),
                project_domain_id: e.string(KA, "project_domain_id"),
                project_domain_name: e.string(KA, "project_domain_name"),
                default_domain_id: e.string(KA, "default_domain_id"),
                default_domain_name: e.string(KA, "default_domain_name"),
                user_id: e.string(KA, "user_id"),
                username: e.string(KA, "username"),
                user_domain_id: e.string(KA, "user_domain_id"),
                user_domain_name: e.string(KA, "user_domain_name"),
                password: e.secret(KA, "password"),
                application_credential_id: e.string(KA, "application_credential_id"),
                application_credential_name: e.string(KA, "application_credential_name"),
                application_credential_secret: e.secret(KA, "application_credential_secret"),
                identity_provider: e.string(KA, "identity_provider"),
                protocol: e.string(KA, "protocol"),
                access_token: e.secret(KA, "access_token"),
                cafile: e.path(KA, "cafile"),
                certfile: e.path(KA, "certfile"),
                keyfile: e.path(KA, "keyfile"),
                insecure: e.boolean(KA, "insecure")?,
                timeout: e.timeout(KA, "timeout")?,
                interface,
                connect_retries: int(KA, "connect_retries", 3)? as u32,
                retry_backoff: e
                    .duration(KA, "retry_backoff")?
                    .unwrap_or(Duration::from_secs(1)),
            },
            ssm: Ssm {
                output_path: e
                    .path("ssm", "output_path")
                    .unwrap_or_else(|| "/var/spool/apel/outgoing/openstack".into()),
                max_size: int("ssm", "max_size", 100)? as usize,
            },
            benchmark: Benchmark {
                name_key: required(e, "benchmark", "name_key")?,
                value_key: required(e, "benchmark", "value_key")?,
            },
            accelerator: Accelerator {
                type_key: required(e, "accelerator", "type_key")?,
                vendor_key: required(e, "accelerator", "vendor_key")?,
                model_key: required(e, "accelerator", "model_key")?,
                number_key: required(e, "accelerator", "number_key")?,
            },
            logstash: Logstash {
                host: required(e, "logstash", "host")?,
                port: int("logstash", "port", 5000)? as u16,
            },
            record_types: MessengerRecordTypes {
                ssm: record_types(e, "messenger_ssm")?,
                noop: record_types(e, "messenger_noop")?,
                logstash: record_types(e, "messenger_logstash")?,
            },
        })
    }

    /// The site name, which extraction cannot do without.
    pub fn site_name(&self) -> Result<&str, ConfigError> {
        self.site_name
            .as_deref()
            .ok_or_else(|| ConfigError::Missing {
                section: D.into(),
                key: "site_name".into(),
                purpose: "to extract records: set it to the site's GOCDB name in caso.conf".into(),
            })
    }

    /// `service_name`, which defaults to the site name.
    pub fn service_name(&self) -> Result<&str, ConfigError> {
        match self.service_name.as_deref() {
            Some(s) => Ok(s),
            None => self.site_name(),
        }
    }
}

/// The files oslo.config reads when no `--config-file` is given: the first
/// `caso.conf` and the first `caso-extract.conf` found in `~/.caso`, `~`,
/// `/etc/caso`, `/etc`; likewise the `.conf.d` directories.
fn default_locations(home: Option<&Path>, suffix: &str) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(h) = home {
        dirs.push(h.join(".caso"));
        dirs.push(h.to_path_buf());
    }
    dirs.push("/etc/caso".into());
    dirs.push("/etc".into());
    ["caso", "caso-extract"]
        .iter()
        .filter_map(|name| {
            dirs.iter()
                .map(|d| d.join(format!("{name}{suffix}")))
                .find(|p| p.exists())
        })
        .collect()
}

/// What `caso-extract` was told to read: config's own view of its command
/// line, which `cli` builds (config never sees the flags themselves).
#[derive(Clone, Debug, Default)]
pub struct CasoSources {
    /// `--config-file`, in order; empty: the oslo default locations.
    pub files: Vec<PathBuf>,
    /// `--config-dir`, read after the files; empty: the oslo default locations.
    pub dirs: Vec<PathBuf>,
    /// The flags that set caso.conf options (the highest layer).
    pub flags: Vec<FlagValue>,
    /// `--strict-config`: unknown options are errors.
    pub strict: bool,
}

/// Loads caso.conf as `caso-extract` does: files from `--config-file` (or the
/// oslo default locations), then `--config-dir` `*.conf` files, environment,
/// flags.
pub fn load_caso(sources: &CasoSources) -> Result<Effective, ConfigError> {
    load_caso_with_env(sources, std::env::vars().collect())
}

/// [`load_caso`] with an explicit environment (tests).
pub(crate) fn load_caso_with_env(
    sources: &CasoSources,
    env: Vec<(String, String)>,
) -> Result<Effective, ConfigError> {
    let home = env
        .iter()
        .find(|(k, _)| k == "HOME")
        .map(|(_, v)| PathBuf::from(v));
    let mut notes = Vec::new();
    let mut files = if sources.files.is_empty() {
        default_locations(home.as_deref(), ".conf")
    } else {
        sources.files.clone()
    };
    let dirs = if sources.dirs.is_empty() {
        default_locations(home.as_deref(), ".conf.d")
    } else {
        sources.dirs.clone()
    };
    for d in &dirs {
        files.extend(conf_files_in(d)?);
    }
    // Only when nothing at all was read: a --config-dir file is a file.
    if files.is_empty() {
        let dirs: Vec<String> = sources
            .dirs
            .iter()
            .map(|d| format!("{}/*.conf", d.display()))
            .collect();
        let also = if dirs.is_empty() {
            String::new()
        } else {
            format!(" nor {}", dirs.join(", "))
        };
        notes.push(format!(
            "no configuration file given or found (looked for caso.conf in ~/.caso, ~, /etc/caso, /etc{also}); using defaults"
        ));
    }
    let mut dynamic_defaults = Vec::new();
    if let Some((_, v)) = env.iter().find(|(k, _)| k == "CASO_LOCK_PATH") {
        dynamic_defaults.push((
            D,
            "lock_path",
            v.clone(),
            Origin::Env {
                var: "CASO_LOCK_PATH".into(),
            },
        ));
    }
    super::load(
        &SCHEMA,
        Sources {
            files,
            env,
            dynamic_defaults,
            flags: sources.flags.clone(),
            strict: sources.strict,
            notes,
        },
    )
}

/// Flags that set caso.conf options: `(section, key, flag)`.
pub(crate) fn flag(
    section: &'static str,
    key: &'static str,
    flag: &'static str,
    value: String,
) -> FlagValue {
    FlagValue {
        section,
        key,
        value,
        flag,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn every_supported_choice_has_a_variant() {
        fn without<T: std::str::FromStr>(table: &[Choice]) -> Vec<&'static str> {
            table
                .iter()
                .filter(|c| c.supported && c.name.parse::<T>().is_err())
                .map(|c| c.name)
                .collect()
        }
        assert_eq!(without::<Messenger>(MESSENGERS), Vec::<&str>::new());
        assert_eq!(without::<Extractor>(EXTRACTORS), Vec::<&str>::new());
        assert_eq!(without::<RecordType>(RECORD_TYPES), Vec::<&str>::new());
        assert_eq!(without::<AuthType>(AUTH_TYPES), Vec::<&str>::new());
        assert_eq!(without::<Interface>(INTERFACES), Vec::<&str>::new());
    }

    /// `--config-file` / `--config-dir` as the command line gives them, and
    /// the two option flags these tests use (cli's own tests cover the rest).
    fn cli(args: &[&str]) -> CasoSources {
        let mut sources = CasoSources::default();
        let mut args = args.iter();
        while let Some(a) = args.next() {
            match *a {
                "--config-file" => sources.files.push(args.next().unwrap().into()),
                "--config-dir" => sources.dirs.push(args.next().unwrap().into()),
                "--projects" => sources.flags.push(flag(
                    D,
                    "projects",
                    "--projects",
                    args.next().unwrap().to_string(),
                )),
                "--nodebug" => sources
                    .flags
                    .push(flag(D, "debug", "--nodebug", "false".into())),
                other => panic!("not a flag these tests know: {other}"),
            }
        }
        sources
    }

    fn file(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
        let p = dir.path().join(name);
        std::fs::File::create(&p)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        p.display().to_string()
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn load(args: &[&str], e: &[(&str, &str)]) -> Effective {
        load_caso_with_env(&cli(args), env(e)).unwrap()
    }

    /// default < file < second file < env < flag, one option each step.
    #[test]
    fn precedence() {
        let d = tempfile::tempdir().unwrap();
        let a = file(
            &d,
            "a.conf",
            "[DEFAULT]\nregion_name = file1\nsite_name = S1\nprojects = p1\nspooldir = /a\n",
        );
        let b = file(&d, "b.conf", "[DEFAULT]\nsite_name = S2\nprojects = p2\n");
        let ev = [
            ("CASO_DEFAULT__PROJECTS", "p3"),
            ("CASO_DEFAULT__DEBUG", "yes"),
        ];

        // An empty --config-dir: no file at all, only defaults.
        let empty = tempfile::tempdir().unwrap();
        let e0 = load(&["--config-dir", empty.path().to_str().unwrap()], &[]);
        let s0 = CasoSettings::from_effective(&e0).unwrap();
        assert_eq!(s0.spooldir, PathBuf::from("/var/spool/caso"));
        assert_eq!(e0.get(D, "spooldir").unwrap().origin, Origin::Default);

        let e1 = load(&["--config-file", &a], &[]);
        assert_eq!(e1.text(D, "site_name"), Some("S1"));
        assert_eq!(e1.text(D, "spooldir"), Some("/a"));

        let e2 = load(&["--config-file", &a, "--config-file", &b], &[]);
        assert_eq!(e2.text(D, "site_name"), Some("S2"));
        assert_eq!(
            e2.text(D, "region_name"),
            Some("file1"),
            "first file still counts"
        );
        assert_eq!(
            e2.get(D, "site_name").unwrap().origin,
            Origin::File {
                path: b.clone().into(),
                line: 2
            }
        );

        let e3 = load(&["--config-file", &a, "--config-file", &b], &ev);
        let s3 = CasoSettings::from_effective(&e3).unwrap();
        assert_eq!(s3.projects, ["p3"]);
        assert!(s3.logging.debug);
        assert_eq!(s3.site_name.as_deref(), Some("S2"));
        assert_eq!(
            e3.get(D, "projects").unwrap().origin,
            Origin::Env {
                var: "CASO_DEFAULT__PROJECTS".into()
            }
        );

        let e4 = load(
            &[
                "--config-file",
                &a,
                "--config-file",
                &b,
                "--projects",
                "p4,p5",
                "--nodebug",
            ],
            &ev,
        );
        let s4 = CasoSettings::from_effective(&e4).unwrap();
        assert_eq!(s4.projects, ["p4", "p5"]);
        assert!(!s4.logging.debug);
        assert_eq!(
            e4.get(D, "projects").unwrap().origin,
            Origin::Flag {
                flag: "--projects".into()
            }
        );
    }

    #[test]
    fn config_dir_files_come_after_config_files_sorted() {
        let d = tempfile::tempdir().unwrap();
        let main = file(
            &d,
            "main.conf",
            "[DEFAULT]\nsite_name = MAIN\nregion_name = r\n",
        );
        let sub = tempfile::tempdir().unwrap();
        file(&sub, "20-b.conf", "[DEFAULT]\nsite_name = B\n");
        file(
            &sub,
            "10-a.conf",
            "[DEFAULT]\nsite_name = A\ncaso_tag = t\n",
        );
        file(&sub, "ignored.txt", "[DEFAULT]\nsite_name = TXT\n");
        let e = load(
            &[
                "--config-file",
                &main,
                "--config-dir",
                sub.path().to_str().unwrap(),
            ],
            &[],
        );
        assert_eq!(e.text(D, "site_name"), Some("B"));
        assert_eq!(e.text(D, "caso_tag"), Some("t"));
        assert_eq!(e.text(D, "region_name"), Some("r"));
    }

    #[test]
    fn interpolation_after_all_layers() {
        let d = tempfile::tempdir().unwrap();
        let a = file(
            &d,
            "a.conf",
            "[DEFAULT]\nsite_name = FILE\nspooldir = /srv/caso\n[ssm]\noutput_path = ${spooldir}/out\n",
        );
        let e = load(
            &["--config-file", &a],
            &[("CASO_DEFAULT__SITE_NAME", "ENV")],
        );
        let s = CasoSettings::from_effective(&e).unwrap();
        assert_eq!(s.service_name.as_deref(), Some("ENV"));
        assert_eq!(s.lock_path, PathBuf::from("/srv/caso"));
        assert_eq!(s.ssm.output_path, PathBuf::from("/srv/caso/out"));
    }

    #[test]
    fn interpolation_chain_literal_and_loop() {
        let d = tempfile::tempdir().unwrap();
        let a = file(
            &d,
            "a.conf",
            "[DEFAULT]\nsite_name = $region_name\nregion_name = ${caso_tag}-x\ncaso_tag = $$tag\n",
        );
        let s = CasoSettings::from_effective(&load(&["--config-file", &a], &[])).unwrap();
        assert_eq!(s.site_name.as_deref(), Some("$tag-x"));
        assert_eq!(s.service_name.as_deref(), Some("$tag-x"));

        let b = file(
            &d,
            "b.conf",
            "[DEFAULT]\nsite_name = $region_name\nregion_name = $site_name\n",
        );
        let err = load_caso_with_env(&cli(&["--config-file", &b]), vec![])
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with("b.conf:3: [DEFAULT] region_name: interpolation loop: [DEFAULT] region_name -> [DEFAULT] site_name -> [DEFAULT] region_name"),
            "{err}"
        );

        let c = file(&d, "c.conf", "[DEFAULT]\nsite_name = $nosuch\n");
        let err = load_caso_with_env(&cli(&["--config-file", &c]), vec![])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("c.conf:2: [DEFAULT] site_name: $nosuch does not name an option"),
            "{err}"
        );
    }

    #[test]
    fn interpolation_error_does_not_echo_a_secret() {
        let d = tempfile::tempdir().unwrap();
        let a = file(&d, "a.conf", "[keystone_auth]\npassword = abc$xyz\n");
        let err = load_caso_with_env(&cli(&["--config-file", &a]), vec![])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "a.conf:2: [keystone_auth] password: a $ placeholder does not name an option"
            ),
            "{err}"
        );
        assert!(!err.contains("xyz"), "{err}");
    }

    #[test]
    fn group_interpolation_and_unset_is_empty() {
        let d = tempfile::tempdir().unwrap();
        let a = file(
            &d,
            "a.conf",
            "[DEFAULT]\nsite_name = x${region_name}y\nregion_name =\n[keystone_auth]\nproject_name = $DEFAULT.site_name-$username\n",
        );
        let s = CasoSettings::from_effective(&load(&["--config-file", &a], &[])).unwrap();
        assert_eq!(s.site_name.as_deref(), Some("xy"));
        assert_eq!(s.keystone_auth.project_name.as_deref(), Some("xy-"));
    }

    #[test]
    fn old_spellings_work_with_one_warning_each() {
        let d = tempfile::tempdir().unwrap();
        let a = file(
            &d,
            "a.conf",
            "[DEFAULT]\nmessengers = ssmv4, noop\ntenants = a,b\n[keystone_auth]\nauth_type = v3applicationcredential\n[messenger_ssmv4]\nrecord_types = cloud\n",
        );
        let b = file(&d, "b.conf", "[DEFAULT]\nmessengers = ssmv4\n");
        let e = load(&["--config-file", &a, "--config-file", &b], &[]);
        let s = CasoSettings::from_effective(&e).unwrap();
        assert_eq!(s.messengers, [Messenger::Ssm]);
        assert_eq!(s.projects, ["a", "b"]);
        assert_eq!(
            s.keystone_auth.auth_type,
            Some(AuthType::ApplicationCredential)
        );
        assert_eq!(s.record_types.ssm, [RecordType::Cloud]);
        let w = e.warnings().join("\n");
        assert_eq!(w.matches("\"ssmv4\" is deprecated").count(), 1, "{w}");
        assert!(
            w.contains("a.conf:3: [DEFAULT] tenants is deprecated, use [DEFAULT] projects"),
            "{w}"
        );
        assert!(
            w.contains("old spelling of \"applicationcredential\""),
            "{w}"
        );
        assert!(
            w.contains("[messenger_ssmv4] record_types is deprecated"),
            "{w}"
        );
    }

    #[test]
    fn unsupported_choices_are_dropped_with_a_warning() {
        let d = tempfile::tempdir().unwrap();
        let a = file(
            &d,
            "a.conf",
            "[DEFAULT]\nextractor = nova,prometheus\n[messenger_noop]\nrecord_types = energy\n[prometheus]\nprometheus_endpoint = http://x\n",
        );
        let e = load(&["--config-file", &a], &[]);
        let s = CasoSettings::from_effective(&e).unwrap();
        assert_eq!(s.extractors, [Extractor::Nova]);
        assert!(s.record_types.noop.is_empty());
        assert_eq!(s.record_types.logstash, RecordType::ALL);
        assert!(
            e.warnings()
                .iter()
                .any(|w| w.contains("\"prometheus\" is not supported"))
        );
    }

    #[test]
    fn bad_values_name_option_and_line() {
        let d = tempfile::tempdir().unwrap();
        for (text, want) in [
            (
                "[DEFAULT]\n\ndry_run = maybe\n",
                "a.conf:3: [DEFAULT] dry_run: expected a boolean",
            ),
            (
                "[ssm]\nmax_size = 0\n",
                "a.conf:2: [ssm] max_size: 0 is out of range 1..=100000",
            ),
            (
                "[DEFAULT]\nmessengers = ssm,carrier_pigeon\n",
                "a.conf:2: [DEFAULT] messengers: \"carrier_pigeon\" is not one of ssm, noop, logstash",
            ),
            (
                "[DEFAULT]\nextract_from = yesterday\n",
                "a.conf:2: [DEFAULT] extract_from: invalid date/time",
            ),
            (
                "[keystone_auth]\nauth_type = token\n",
                "a.conf:2: [keystone_auth] auth_type: \"token\" is not one of password",
            ),
        ] {
            let a = file(&d, "a.conf", text);
            let err = load_caso_with_env(&cli(&["--config-file", &a]), vec![])
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn booleans_in_any_case() {
        let d = tempfile::tempdir().unwrap();
        for (v, want) in [
            ("TRUE", true),
            ("Yes", true),
            ("on", true),
            ("1", true),
            ("False", false),
            ("NO", false),
            ("Off", false),
            ("0", false),
        ] {
            let a = file(&d, "a.conf", &format!("[DEFAULT]\ndry_run = {v}\n"));
            let s = CasoSettings::from_effective(&load(&["--config-file", &a], &[])).unwrap();
            assert_eq!(s.dry_run, want, "{v}");
        }
    }

    #[test]
    fn caso_lock_path_env_is_the_default() {
        let d = tempfile::tempdir().unwrap();
        let a = file(&d, "a.conf", "[DEFAULT]\nspooldir = /s\n");
        let s = CasoSettings::from_effective(&load(
            &["--config-file", &a],
            &[("CASO_LOCK_PATH", "/locks")],
        ))
        .unwrap();
        assert_eq!(s.lock_path, PathBuf::from("/locks"));
    }

    #[test]
    fn secrets_are_masked() {
        let d = tempfile::tempdir().unwrap();
        let a = file(&d, "a.conf", "[keystone_auth]\npassword = hunter2\n");
        let e = load(&["--config-file", &a], &[]);
        let s = CasoSettings::from_effective(&e).unwrap();
        assert_eq!(format!("{:?}", s.keystone_auth.password), "Some(****)");
        assert_eq!(
            s.keystone_auth.password.as_ref().unwrap().expose(),
            "hunter2"
        );
        assert!(!e.render().contains("hunter2"));
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
