//! caso.conf's option table: every option cASO 5.2.2 reads (names,
//! defaults and old spellings from its oslo.config registrations), plus the
//! few of ours. Each default is written here once.

use crate::config::ini::Dialect;
use crate::config::schema::{Choice, Kind, OptSpec, Owner, Rename, Schema, choice, ignored, opt};

pub(super) static MESSENGERS: &[Choice] = &[
    Choice {
        name: "ssm",
        aliases: &["ssmv4"],
        supported: true,
    },
    choice("noop"),
    choice("logstash"),
    choice("greendigit_cim"),
];

pub(super) static EXTRACTORS: &[Choice] = &[
    choice("nova"),
    choice("cinder"),
    choice("neutron"),
    choice("prometheus"),
];

pub(super) static RECORD_TYPES: &[Choice] = &[
    choice("cloud"),
    choice("ip"),
    choice("accelerator"),
    choice("storage"),
    choice("energy"),
];

pub(super) static AUTH_TYPES: &[Choice] = &[
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

pub(super) static INTERFACES: &[Choice] = &[
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

/// The section of most options.
pub(crate) const D: &str = "DEFAULT";
/// Keystone credentials and client settings.
pub(crate) const KA: &str = "keystone_auth";
/// The energy extractor's Prometheus.
pub(crate) const P: &str = "prometheus";
/// The GreenDIGIT CIM messenger's service.
pub(crate) const G: &str = "greendigit_cim";

#[rustfmt::skip]
static OPTIONS: &[OptSpec] = &[
    opt(D, "messengers", Kind::Choices(MESSENGERS), Some("noop"), "Messengers that dispatch records: ssm, noop, logstash, greendigit_cim."),
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
    opt(D, "extractor", Kind::Choices(EXTRACTORS), Some("nova,cinder,neutron"), "Extractors: nova, cinder, neutron, prometheus (energy)."),
    opt(D, "region_name", Kind::Str, None, "OpenStack region to use."),
    opt(D, "debug", Kind::Bool, Some("false"), "Log at DEBUG instead of INFO."),
    opt(D, "log_file", Kind::Path, None, "Log to this file instead of stderr."),
    opt(D, "log_dir", Kind::Path, None, "Base directory of a relative log_file."),
    opt(D, "use_json", Kind::Bool, Some("false"), "Log JSON lines."),
    opt(D, "concurrency", Kind::Int { min: 1, max: 256 }, Some("8"), "Projects extracted at once (--concurrency).").ours(),
    opt(D, "lock_timeout", Kind::Duration, Some("30m"), "How long to wait for another run's lock.").ours(),
    opt(D, "default_vo", Kind::Str, None, "VO for projects with no VO mapping (else such a project is an error).").ours(),
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
    opt(KA, "interface", Kind::Choice(INTERFACES), Some("public"), "Catalog interface: public, internal, admin.").ours(),
    opt(KA, "connect_retries", Kind::Int { min: 0, max: 100 }, Some("3"), "Retries of a failed connection or 5xx.").ours(),
    opt(KA, "retry_backoff", Kind::Duration, Some("1s"), "First retry delay, doubled each retry.").ours(),
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
    OptSpec { section: "messenger_greendigit_cim", key: "record_types", kind: Kind::Choices(RECORD_TYPES), default: Some("energy"), owner: Owner::OurDefault, help: "Record types for greendigit_cim (cASO: all; the service takes energy records)." },
    opt(P, "prometheus_endpoint", Kind::Str, Some("http://localhost:9090"), "Prometheus server URL."),
    opt(P, "prometheus_metric_name", Kind::Str, Some("prometheus_value"), "Metric holding each VM's power (microwatts)."),
    opt(P, "vm_uuid_label_name", Kind::Str, Some("uuid"), "Label whose value is the VM's id."),
    opt(P, "labels", Kind::List, Some("type_instance:scaph_process_power_microwatts"), "key:value label filters of the metric."),
    opt(P, "prometheus_step_seconds", Kind::Int { min: 1, max: 86_400 }, Some("30"), "Seconds between samples (query_range step)."),
    opt(P, "prometheus_verify_ssl", Kind::Bool, Some("true"), "Verify Prometheus's TLS certificate."),
    opt(P, "cpu_normalization_factor", Kind::Float, Some("1.0"), "Factor applied to the energy of every record."),
    opt(P, "timeout", Kind::Duration, Some("60s"), "Per Prometheus request, connecting included.").ours(),
    opt(P, "concurrency", Kind::Int { min: 1, max: 64 }, Some("4"), "Prometheus requests in flight at most.").ours(),
    opt(G, "base_url", Kind::Str, Some("https://greendigit-cim.sztaki.hu"), "GreenDIGIT CIM service URL."),
    opt(G, "email", Kind::Str, None, "Account email (required with greendigit_cim)."),
    opt(G, "password", Kind::Secret, None, "Account password (required with greendigit_cim)."),
    opt(G, "verify_ssl", Kind::Bool, Some("true"), "Verify the CIM service's TLS certificate."),
    opt(G, "timeout", Kind::Duration, Some("60s"), "Per CIM request (cASO: 60 s).").ours(),
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
    ignored_sections: &["sample_remote_file_source"],
    interpolate: true,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::caso::{AuthType, Extractor, Interface, Messenger, RecordType};

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
}
