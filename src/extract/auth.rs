//! Logging in: `[keystone_auth]` checked into the client's [`AuthConfig`]
//! (anything missing or contradictory is a configuration error, exit 2),
//! the [`Session`] built from it, and the login that ends a run whose
//! credentials Keystone rejects before any project is touched.

use anyhow::anyhow;

use crate::config::caso::{AuthType, CasoSettings, KeystoneAuth};
use crate::exit;
use crate::openstack::{
    AppCredentialRef, AuthConfig, AuthMethod, ClientCert, DomainRef, OpenStackError, Scope,
    Session, TlsConfig, UserRef,
};
use crate::secret::Secret;

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

fn secret(s: &Option<Secret>, key: &str) -> anyhow::Result<Secret> {
    s.clone()
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
            tracing::warn!(target: super::LOG_TARGET,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::extract::CasoCli;
    use clap::Parser;

    fn settings(text: &str) -> CasoSettings {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("caso.conf");
        std::fs::write(&path, text).unwrap();
        let cli =
            CasoCli::try_parse_from(["caso-extract", "--config-file", path.to_str().unwrap()])
                .unwrap();
        let eff = crate::config::caso::load_caso_with_env(&cli.sources(), vec![]).unwrap();
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
}
