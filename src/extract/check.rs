//! `caso-extract --check` (and `--check-network`): everything an extraction
//! run refuses before its first request, found without extracting, writing
//! or locking anything ([`crate::check::Report`]).
//!
//! Checked with the run's own code: the configuration (voms.json included,
//! which loading reads), `site_name`, `[keystone_auth]` as the run maps it
//! onto the client ([`super::auth::auth_config`], [`super::auth::session_for`]); then
//! that `spooldir`, `[ssm] output_path` (with the ssm messenger) and
//! `lock_path` can take new files, or be created (an unnamed `O_TMPFILE`
//! probe; nothing is created). With `network`: one Keystone token request
//! with the configured credentials and TLS settings ([`super::auth::log_in`]),
//! waiting at most [`crate::check::NETWORK_TIMEOUT`], never retried.

use crate::check::{NETWORK_TIMEOUT, Report, writable_dir};
use crate::config::Effective;
use crate::config::caso::{CasoSettings, Messenger};

/// `caso-extract --check`: prints the report; `Err` (exit 2, or 1 when
/// only Keystone cannot be reached) when a run would not extract.
pub fn check(eff: &Effective, network: bool) -> anyhow::Result<()> {
    let mut report = Report::default();
    match CasoSettings::from_effective(eff) {
        Ok(settings) => check_settings(&settings, network, &mut report)?,
        Err(e) => report.failed("configuration", &e.into()),
    }
    report.finish()
}

fn check_settings(
    settings: &CasoSettings,
    network: bool,
    report: &mut Report,
) -> anyhow::Result<()> {
    match settings.site_name() {
        Ok(site) => report.ok(format_args!("[DEFAULT] site_name: {site}")),
        Err(e) => report.failed("configuration", &e.into()),
    }
    let mapping = &settings.mapping_file;
    if settings.vo_map.is_empty() && !mapping.exists() {
        report.ok(format_args!(
            "[DEFAULT] mapping_file {}: not present (VOs come from the {} project property or default_vo)",
            mapping.display(),
            settings.vo_property
        ));
    } else {
        report.ok(format_args!(
            "[DEFAULT] mapping_file {}: read",
            mapping.display()
        ));
    }
    let session = super::auth::auth_config(settings).and_then(|mut cfg| {
        let url = cfg.auth_url.clone();
        if network {
            cfg.timeout = NETWORK_TIMEOUT;
            cfg.retries = 0;
        }
        super::auth::session_for(cfg).map(|s| (url, s))
    });
    match session {
        Ok((url, session)) => {
            report.ok(format_args!("[keystone_auth]: complete (auth_url {url})"));
            if network {
                let rt = super::runtime()?;
                match rt.block_on(super::auth::log_in(&session)) {
                    Ok(()) => report.ok(format_args!(
                        "Keystone {url}: a token was issued for the configured credentials"
                    )),
                    Err(e) => report.failed(format_args!("Keystone {url}"), &e),
                }
            }
        }
        Err(e) => report.failed("configuration", &e),
    }
    if settings.dry_run {
        report.ok("dry_run is set: a run writes no spool, lastrun or lock");
        return Ok(());
    }
    writable_dir(
        report,
        &settings.spooldir,
        "[DEFAULT] spooldir (lastrun files)",
    );
    if settings.messengers.contains(&Messenger::Ssm) {
        writable_dir(
            report,
            &settings.ssm.output_path,
            "[ssm] output_path (the APEL spool)",
        );
    }
    writable_dir(
        report,
        &settings.lock_path,
        "[DEFAULT] lock_path (the run lock)",
    );
    match crate::runlock::RunLock::holder(&settings.lock_path) {
        Ok(Some(pid)) => report.warning(format_args!(
            "the run lock in {} is held by pid {pid} now: a run would wait up to lock_timeout ({})",
            settings.lock_path.display(),
            humantime::format_duration(settings.lock_timeout)
        )),
        Ok(None) => {}
        Err(e) => report.warning(e),
    }
    Ok(())
}
