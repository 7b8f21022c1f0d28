//! Logging in: the [`Session`] built from `[keystone_auth]` as config checked
//! it into the client's [`AuthConfig`], and the login that ends a run whose
//! credentials Keystone rejects before any project is touched.

use anyhow::anyhow;

use crate::config::caso::CasoSettings;
use crate::exit;
use crate::openstack::{AuthConfig, OpenStackError, Scope, Session};

/// `[keystone_auth]` as config checks it ([`CasoSettings::auth_config`]:
/// anything missing or contradictory is a configuration error, exit 2), with
/// its warning logged where the run logs.
pub fn auth_config(settings: &CasoSettings) -> anyhow::Result<AuthConfig> {
    let cfg = settings.auth_config()?;
    if let Some(w) = settings.keystone_auth.ignored_scope() {
        tracing::warn!(target: super::LOG_TARGET, "{w}");
    }
    Ok(cfg)
}

/// Builds the session; a setting the client refuses is a configuration error.
pub(super) fn session(settings: &CasoSettings) -> anyhow::Result<Session> {
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
