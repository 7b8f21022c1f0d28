//! `ssmsend --check` (and `--check-network`): everything a sending run
//! refuses before its first message, found without sending, locking or
//! moving anything ([`crate::check::Report`]).
//!
//! Checked: the configuration as a run types it; the host certificate and
//! key (they match, not expiring within 24 hours) and the key's permissions
//! (a warning); `capath`; `server_cert` (expiry, not the host's own, verified
//! against `capath`); one test message signed (and encrypted) with them; the
//! transport built as a run builds it (STOMP's TLS context, the AMS client);
//! the queue at `[messaging] path` and the reject directory beside it can
//! take new files (an unnamed `O_TMPFILE` probe). With `network`: a TCP and
//! TLS handshake with each STOMP broker (no STOMP frame is sent), or, for
//! AMS, one `GET /` to the AMS host and, when no `[messaging] token` is
//! configured, one authx509 token request, each waiting at most
//! [`crate::check::NETWORK_TIMEOUT`].

use std::time::Duration;

use anyhow::Context;

use super::{ams, stomp};
use crate::check::{NETWORK_TIMEOUT, Report, writable_dir};
use crate::config::Effective;
use crate::config::sender::{SenderSettings, Transport};
use crate::exit;
use crate::smime::{
    CaDirectory, Credentials, Recipient, Signer, ca_certificates_from_dir, key_exposure_warning,
};
use crate::spool::{Queue, SpoolError};

/// Where a run would deliver, built as the run builds it (nothing connects).
pub enum Endpoints {
    Stomp(crate::stomp::BrokerConfig),
    Ams(crate::ams::Client),
}

/// The transport of `settings`, built with the checked `credentials` as a
/// real run builds it before connecting; what the run refuses here is a
/// configuration error (exit 2). `connect_timeout`: instead of the
/// configured timeouts, wait at most that long and try once.
pub fn endpoints(
    settings: &SenderSettings,
    credentials: &Credentials,
    connect_timeout: Option<Duration>,
) -> anyhow::Result<Endpoints> {
    let capath = &settings.certificates.capath;
    let mut timeouts = settings.timeouts;
    if let Some(t) = connect_timeout {
        timeouts.connect = t;
        timeouts.receipt = t;
    }
    match &settings.transport {
        Transport::Stomp(s) => {
            let config = stomp::broker_config(s, &timeouts, credentials, capath);
            crate::stomp::check_tls(&config).map_err(exit::usage)?;
            Ok(Endpoints::Stomp(config))
        }
        Transport::Ams(a) => {
            let destination = &settings.messaging.destination;
            let mut config = ams::client_config(a, destination, &timeouts, credentials, capath)
                .map_err(exit::usage)?;
            if connect_timeout.is_some() {
                config.retry.max_attempts = 1;
            }
            let client = crate::ams::Client::new(config).map_err(exit::usage)?;
            Ok(Endpoints::Ams(client))
        }
    }
}

impl Endpoints {
    /// Where messages go, for a line of output (no secret: the token is
    /// never part of a URL here).
    pub fn describe(&self) -> String {
        match self {
            Endpoints::Stomp(config) => {
                let scheme = stomp_scheme(config);
                let brokers: Vec<String> = config
                    .brokers
                    .iter()
                    .map(|b| format!("{scheme}://{b}"))
                    .collect();
                format!("STOMP broker(s) {}", brokers.join(", "))
            }
            Endpoints::Ams(client) => {
                let token = if client.has_configured_token() {
                    "the token of [messaging] token".to_owned()
                } else {
                    format!("a token from {}", client.authx509_url())
                };
                format!("AMS {} with {token}", client.publish_url())
            }
        }
    }

    /// `--check-network`: reaches every endpoint once (see the module doc).
    async fn probe(&self, report: &mut Report) {
        match self {
            Endpoints::Stomp(config) => {
                let scheme = stomp_scheme(config);
                let handshake = if config.tls.is_some() {
                    "TCP and TLS handshake"
                } else {
                    "TCP connection"
                };
                for broker in &config.brokers {
                    let what = format!("STOMP broker {scheme}://{broker}");
                    match crate::stomp::probe(config, broker).await {
                        Ok(()) => report.ok(format_args!(
                            "{what}: reachable ({handshake} done, no STOMP frame sent)"
                        )),
                        Err(e @ crate::stomp::StompError::TlsSetup(_)) => {
                            report.failed(what, &exit::usage(e))
                        }
                        Err(e) => report.failed(what, &e.into()),
                    }
                }
            }
            Endpoints::Ams(client) => {
                if !client.has_configured_token() {
                    let what = format!("AMS authx509 {}", client.authx509_url());
                    match client.token().await {
                        Ok(_) => report.ok(format_args!(
                            "{what}: a token was issued for the host certificate"
                        )),
                        Err(e) => report.failed(what, &e.into()),
                    }
                }
                match client.probe().await {
                    Ok(status) => report.ok(format_args!(
                        "AMS {}: reachable (TCP, TLS and HTTP; GET / answered {status}; the token is not tried)",
                        client.publish_url()
                    )),
                    Err(e) => report.failed("AMS", &e.into()),
                }
            }
        }
    }
}

fn stomp_scheme(config: &crate::stomp::BrokerConfig) -> &'static str {
    if config.tls.is_some() {
        "stomp+ssl"
    } else {
        "stomp"
    }
}

/// `ssmsend --check`: prints the report; `Err` (exit 2, or 1 when only an
/// endpoint is unreachable) when a run would not send.
pub fn check(eff: &Effective, network: bool) -> anyhow::Result<()> {
    let mut report = Report::default();
    match SenderSettings::from_effective(eff) {
        Ok(settings) => check_settings(&settings, network, &mut report)?,
        Err(e) => report.failed("configuration", &e.into()),
    }
    report.finish()
}

fn check_settings(
    settings: &SenderSettings,
    network: bool,
    report: &mut Report,
) -> anyhow::Result<()> {
    let protocol = match settings.transport.protocol() {
        crate::config::sender::Protocol::Stomp => "STOMP",
        crate::config::sender::Protocol::Ams => "AMS",
    };
    report.ok(format_args!(
        "configuration: {protocol} to destination {}",
        settings.messaging.destination
    ));
    let signer = credentials(settings, report);
    match &signer {
        None => report.warning("the transport is not checked: it needs the host certificate"),
        Some(signer) => {
            let timeout = network.then_some(NETWORK_TIMEOUT);
            match endpoints(settings, signer.credentials(), timeout) {
                Ok(ep) => {
                    report.ok(format_args!("messages go to {}", ep.describe()));
                    if network {
                        let rt = tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                            .context("cannot start the async runtime")?;
                        rt.block_on(ep.probe(report));
                    }
                }
                Err(e) => report.failed("transport", &e),
            }
        }
    }
    spool(settings, report);
    Ok(())
}

/// The `[certificates]` checks; the signer when every one passed.
fn credentials(settings: &SenderSettings, report: &mut Report) -> Option<Signer> {
    let c = &settings.certificates;
    let host = match Credentials::load_unwarned(&c.certificate, &c.key) {
        Ok(host) => {
            report.ok(format_args!(
                "[certificates] certificate {} ({}, valid until {}) and key {} match",
                c.certificate.display(),
                host.subject_dn(),
                host.certificate().not_after(),
                c.key.display()
            ));
            Some(host)
        }
        Err(e) => {
            report.error(format_args!("[certificates] {e}"));
            None
        }
    };
    if let Some(w) = key_exposure_warning(&c.key) {
        report.warning(format_args!("[certificates] {w}"));
    }
    let tls = match &settings.transport {
        Transport::Stomp(s) => s.use_ssl,
        Transport::Ams(_) => true,
    };
    let verifies = c.server_cert.is_some() && c.verify_server_cert;
    match ca_certificates_from_dir(&c.capath) {
        Ok(cas) if cas.is_empty() && (tls || verifies) => report.warning(format_args!(
            "[certificates] capath {} holds no hashed CA certificate (<hash>.0): nothing it should verify will verify",
            c.capath.display()
        )),
        Ok(cas) => report.ok(format_args!(
            "[certificates] capath {}: {} CA certificate(s)",
            c.capath.display(),
            cas.len()
        )),
        Err(e) if tls || verifies => report.error(format_args!("[certificates] {e}")),
        Err(e) => report.warning(format_args!("[certificates] {e} (not used by this configuration)")),
    }
    let recipient = match (&c.server_cert, &host) {
        (None, _) => None,
        (Some(server_cert), None) => {
            report.warning(format_args!(
                "[certificates] server_cert {} is not checked: it needs the host certificate",
                server_cert.display()
            ));
            None
        }
        (Some(server_cert), Some(host)) => {
            let loaded = if c.verify_server_cert {
                CaDirectory::open(&c.capath).map(Some)
            } else {
                Ok(None)
            }
            .and_then(|trust| Recipient::load(server_cert, host, trust.as_ref()));
            match loaded {
                Ok(r) => {
                    report.ok(format_args!(
                        "[certificates] server_cert {} ({}): messages are encrypted for it",
                        server_cert.display(),
                        r.subject_dn()
                    ));
                    Some(r)
                }
                Err(e) => {
                    report.error(format_args!("[certificates] {e}"));
                    return None;
                }
            }
        }
    };
    let signer = match Signer::new(host?, recipient, Default::default()) {
        Ok(s) => s.with_cipher(settings.messaging.encryption),
        Err(e) => {
            report.error(format_args!("[certificates] {e}"));
            return None;
        }
    };
    // A run seals every message the same way: a key that loads but cannot
    // sign (or a server_cert that cannot be encrypted for) shows here.
    match signer.seal(b"APEL-cloud-message: v0.4\n%%\n") {
        Ok(_) => {
            report.ok(if signer.recipient().is_some() {
                "a test message was signed and encrypted as a run does it"
            } else {
                "a test message was signed as a run does it"
            });
            Some(signer)
        }
        Err(e) => {
            report.error(format_args!("[certificates] {e}"));
            None
        }
    }
}

/// The queue and the reject directory beside it.
fn spool(settings: &SenderSettings, report: &mut Report) {
    let path = &settings.messaging.path;
    const WHAT: &str = "[messaging] path";
    let queue = match Queue::open(path, settings.messaging.path_type) {
        Ok(q) => q,
        Err(SpoolError::MissingRoot(_)) => {
            report.warning(format_args!(
                "{WHAT} {} does not exist: a run has nothing to send (caso-extract creates it)",
                path.display()
            ));
            return;
        }
        Err(e) => {
            report.error(format_args!("{WHAT}: {e}"));
            return;
        }
    };
    match crate::spool::check_writable(path, WHAT) {
        Ok(()) => match queue.scan() {
            Ok(scan) => {
                report.ok(format_args!(
                    "{WHAT} {} ({}): writable, {} message(s) queued",
                    path.display(),
                    queue.layout(),
                    scan.elements.len()
                ));
                if !scan.bad.is_empty() {
                    report.warning(format_args!(
                        "{WHAT} {}: {} entr{} not a message (a run reports each and moves it to the reject directory; ssmsend --dry-run lists them)",
                        path.display(),
                        scan.bad.len(),
                        if scan.bad.len() == 1 { "y is" } else { "ies are" }
                    ));
                }
            }
            Err(e) => report.error(format_args!("{WHAT}: {e}")),
        },
        Err(e) => report.error(e),
    }
    const REJECT: &str = "reject directory (beside [messaging] path)";
    let reject = queue.reject_dir();
    // A run opens it without following a symlink, and refuses one.
    if std::fs::symlink_metadata(&reject).is_ok_and(|m| m.file_type().is_symlink()) {
        report.error(format_args!(
            "{REJECT} {} is a symlink: a run never follows it and cannot reject or set aside anything",
            reject.display()
        ));
    } else {
        writable_dir(report, &reject, REJECT);
    }
}
