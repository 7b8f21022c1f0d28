//! The energy path's sections of caso.conf: `[prometheus]` (where the
//! `prometheus` extractor reads power samples) and `[greendigit_cim]`
//! (where the `greendigit_cim` messenger publishes energy records), typed
//! and checked at load time, so a bad value is exit 2 naming the option,
//! not a failure of every project at run time.

use std::time::Duration;

use reqwest::Url;

use super::options::{G, P};
use super::{Messenger, RecordType};
use crate::config::{ConfigError, Effective};
use crate::secret::Secret;

/// `[prometheus]`.
#[derive(Clone, Debug, PartialEq)]
pub struct PrometheusSettings {
    /// `prometheus_endpoint`. Default `http://localhost:9090`.
    pub endpoint: Url,
    /// `prometheus_metric_name`. Default `prometheus_value`.
    pub metric_name: String,
    /// `vm_uuid_label_name`. Default `uuid`.
    pub uuid_label: String,
    /// `labels` as `(key, value)` pairs in order. Default
    /// `type_instance:scaph_process_power_microwatts`.
    pub labels: Vec<(String, String)>,
    /// `prometheus_step_seconds`. Default 30.
    pub step_seconds: u32,
    /// `prometheus_verify_ssl`. Default true.
    pub verify_tls: bool,
    /// `cpu_normalization_factor`. Default 1.0.
    pub cpu_normalization_factor: f64,
    /// Ours: per request. Default 60 s.
    pub timeout: Duration,
    /// Ours: requests in flight at most. Default 4.
    pub concurrency: usize,
}

/// `[greendigit_cim]`.
#[derive(Clone, Debug)]
pub struct GreenDigitCim {
    /// `base_url`. Default `https://greendigit-cim.sztaki.hu`.
    pub base_url: Url,
    /// `email`. No default; required with the greendigit_cim messenger.
    pub email: Option<String>,
    /// `password`. No default; required with the greendigit_cim messenger.
    pub password: Option<Secret>,
    /// `verify_ssl`. Default true.
    pub verify_tls: bool,
    /// Ours: per request. Default 60 s (cASO's fixed timeout).
    pub timeout: Duration,
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`: a Prometheus label name.
pub fn valid_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`: a Prometheus metric name (cASO pastes it
/// into the query unchecked; a bad one fails every query at run time).
fn valid_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// An `http(s)` URL with a host; the error never quotes more than the
/// origin (a URL may carry credentials).
fn http_url(e: &Effective, section: &str, key: &str) -> Result<Url, ConfigError> {
    let text = e.text_or_default(section, key)?;
    match Url::parse(text.trim()) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => Ok(u),
        Ok(u) => Err(e.invalid(
            section,
            key,
            format!(
                "{} is not an http(s) URL with a host",
                crate::net::origin(&u)
            ),
        )),
        Err(err) => Err(e.invalid(section, key, format!("not a URL: {err}"))),
    }
}

impl PrometheusSettings {
    /// What an empty caso.conf gives (the option table's defaults).
    pub fn defaults() -> Result<Self, ConfigError> {
        let e = crate::config::layers::load(&super::SCHEMA, Default::default())?;
        Self::from_effective(&e)
    }

    pub fn from_effective(e: &Effective) -> Result<Self, ConfigError> {
        let metric_name = e.text_or_default(P, "prometheus_metric_name")?.trim();
        if !valid_metric_name(metric_name) {
            return Err(e.invalid(
                P,
                "prometheus_metric_name",
                format!("{metric_name:?} is not a Prometheus metric name"),
            ));
        }
        let uuid_label = e.text_or_default(P, "vm_uuid_label_name")?.trim();
        if !valid_label_name(uuid_label) {
            return Err(e.invalid(
                P,
                "vm_uuid_label_name",
                format!("{uuid_label:?} is not a Prometheus label name"),
            ));
        }
        // cASO warns about an entry without `:` and drops it; a filter
        // silently gone would widen the query to other metrics' series.
        let labels = e
            .list(P, "labels")
            .iter()
            .map(|entry| match entry.split_once(':') {
                Some((k, v)) if valid_label_name(k.trim()) => {
                    Ok((k.trim().to_string(), v.trim().to_string()))
                }
                _ => Err(e.invalid(
                    P,
                    "labels",
                    format!("{entry:?} is not key:value with a Prometheus label name as key"),
                )),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PrometheusSettings {
            endpoint: http_url(e, P, "prometheus_endpoint")?,
            metric_name: metric_name.to_string(),
            uuid_label: uuid_label.to_string(),
            labels,
            step_seconds: e.int_or_default(P, "prometheus_step_seconds")? as u32,
            verify_tls: e.boolean(P, "prometheus_verify_ssl")?,
            cpu_normalization_factor: e.float_or_default(P, "cpu_normalization_factor")?,
            timeout: e.timeout_or_default(P, "timeout")?,
            concurrency: e.int_or_default(P, "concurrency")? as usize,
        })
    }
}

impl GreenDigitCim {
    pub fn from_effective(e: &Effective) -> Result<Self, ConfigError> {
        Ok(GreenDigitCim {
            base_url: http_url(e, G, "base_url")?,
            email: e.string(G, "email"),
            password: e.secret(G, "password"),
            verify_tls: e.boolean(G, "verify_ssl")?,
            timeout: e.timeout_or_default(G, "timeout")?,
        })
    }
}

/// No energy for the ssm messenger: a contradiction in the file, refused
/// when it is loaded.
pub(super) fn check(e: &Effective, ssm_types: &[RecordType]) -> Result<(), ConfigError> {
    if ssm_types.contains(&RecordType::Energy) {
        return Err(e.invalid(
            "messenger_ssm",
            "record_types",
            "energy records cannot go to APEL (it has no energy message; cASO 5.2.2 fails at push time with \"Unexpected record format!\"): send them with the greendigit_cim messenger".into(),
        ));
    }
    Ok(())
}

/// The CIM account, needed to extract with the greendigit_cim messenger
/// (like `site_name`: `--print-config` still works without it).
pub(super) fn check_account(
    messengers: &[Messenger],
    cim: &GreenDigitCim,
) -> Result<(), ConfigError> {
    if !messengers.contains(&Messenger::GreenDigitCim) {
        return Ok(());
    }
    for (key, set) in [
        ("email", cim.email.is_some()),
        ("password", cim.password.is_some()),
    ] {
        if !set {
            return Err(ConfigError::Missing {
                section: G.into(),
                key: key.into(),
                purpose: "by the greendigit_cim messenger (the CIM service's account)".into(),
            });
        }
    }
    Ok(())
}
