//! `[keystone_auth]`: read from the effective configuration, and checked
//! into the client's [`AuthConfig`]. Anything missing or contradictory is a
//! [`ConfigError::KeystoneAuth`] (exit 2 by its type), found before any
//! request.

use std::path::PathBuf;
use std::time::Duration;

use super::options::KA;
use super::{AuthType, CasoSettings, Interface};
use crate::config::{ConfigError, Effective};
use crate::openstack::{
    AppCredentialRef, AuthConfig, AuthMethod, ClientCert, DomainRef, Scope, TlsConfig, UserRef,
};
use crate::secret::Secret;

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

impl KeystoneAuth {
    /// `[keystone_auth]` as set; nothing is required yet (see [`Self::check`]).
    pub(super) fn from_effective(e: &Effective) -> Result<Self, ConfigError> {
        Ok(KeystoneAuth {
            auth_type: e
                .choice(KA, "auth_type")?
                .map(|n| e.typed(KA, "auth_type", n))
                .transpose()?,
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
            interface: e.typed(KA, "interface", e.choice_or_default(KA, "interface")?)?,
            connect_retries: e.int_or_default(KA, "connect_retries")? as u32,
            retry_backoff: e.duration_or_default(KA, "retry_backoff")?,
        })
    }

    /// The warning for a scope that has no effect with this `auth_type`
    /// (the caller logs it where the run logs).
    pub fn ignored_scope(&self) -> Option<&'static str> {
        // Keystone refuses any scope for application credentials (defect 10).
        let scoped =
            self.project_id.is_some() || self.project_name.is_some() || self.system_scope.is_some();
        (self.auth_type == Some(AuthType::ApplicationCredential) && scoped).then_some(
            "[keystone_auth] project and system scope are ignored with application credentials: the credential's own project is used",
        )
    }

    /// Checks `[keystone_auth]` into the client's configuration, for
    /// `region_name` (`[DEFAULT]`). Anything missing or contradictory is a
    /// configuration error (exit 2).
    pub fn check(&self, region_name: Option<&str>) -> Result<AuthConfig, ConfigError> {
        let ka = self;
        let auth_url = ka
            .auth_url
            .clone()
            .ok_or_else(|| invalid("auth_url is required to extract".into()))?;
        let auth_type = ka.auth_type.ok_or_else(|| {
            invalid(
                "auth_type is required: password, applicationcredential or oidcaccesstoken".into(),
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
                        return Err(invalid(
                            "application_credential_id or application_credential_name is required"
                                .into(),
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
                    invalid("identity_provider is required for oidcaccesstoken".into())
                })?,
                protocol: ka
                    .protocol
                    .clone()
                    .ok_or_else(|| invalid("protocol is required for oidcaccesstoken".into()))?,
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
            Scope::Unscoped
        } else if let Some(id) = &ka.project_id {
            Scope::Project { id: id.clone() }
        } else if let Some(name) = &ka.project_name {
            Scope::ProjectName {
                name: name.clone(),
                domain: project_domain().ok_or_else(|| {
                    invalid(format!(
                        "project_domain_name or project_domain_id is required with project_name {name:?}"
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
                return Err(invalid(format!(
                    "system_scope = {other:?}: only \"all\" is supported"
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
                return Err(invalid(
                    "certfile and keyfile go together: set both or neither".into(),
                ));
            }
        };
        let mut cfg = AuthConfig::new(auth_url, method, scope);
        cfg.system_scope = system_scope;
        cfg.interface = ka.interface;
        cfg.region_name = region_name.map(str::to_string);
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
}

impl CasoSettings {
    /// `[keystone_auth]` checked into the client's configuration
    /// ([`KeystoneAuth::check`] with `[DEFAULT] region_name`).
    pub fn auth_config(&self) -> Result<AuthConfig, ConfigError> {
        self.keystone_auth.check(self.region_name.as_deref())
    }
}

/// A `[keystone_auth]` error.
fn invalid(message: String) -> ConfigError {
    ConfigError::KeystoneAuth(message)
}

fn user_ref(ka: &KeystoneAuth, what: &str) -> Result<UserRef, ConfigError> {
    if let Some(id) = &ka.user_id {
        return Ok(UserRef::Id(id.clone()));
    }
    let Some(name) = &ka.username else {
        return Err(invalid(format!(
            "username or user_id is required for {what}"
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
        return Err(invalid(format!(
            "user_domain_name or user_domain_id is required with username {name:?}"
        )));
    };
    Ok(UserRef::Name {
        name: name.clone(),
        domain,
    })
}

fn secret(s: &Option<Secret>, key: &str) -> Result<Secret, ConfigError> {
    s.clone()
        .ok_or_else(|| invalid(format!("{key} is required")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::caso::{CasoSources, load_caso_with_env};

    fn settings(text: &str) -> CasoSettings {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("caso.conf");
        std::fs::write(&path, text).unwrap();
        let sources = CasoSources {
            files: vec![path],
            ..CasoSources::default()
        };
        let eff = load_caso_with_env(&sources, vec![]).unwrap();
        CasoSettings::from_effective(&eff).unwrap()
    }

    fn auth(text: &str) -> Result<AuthConfig, ConfigError> {
        settings(text).auth_config()
    }

    /// The exit code the programs give this error (2: by its type alone).
    fn code(e: ConfigError) -> String {
        format!("{:?}", crate::exit::code_for(&e.into()))
    }

    #[test]
    fn the_appliance_file_needs_credentials_exit_2() {
        let s = settings(include_str!("../../../tests/fixtures/config/caso.conf"));
        let e = s.auth_config().unwrap_err();
        assert!(
            e.to_string().contains("username or user_id is required"),
            "{e}"
        );
        assert_eq!(code(e), format!("{:?}", std::process::ExitCode::from(2)));
    }

    #[test]
    fn password_scopes_and_their_domains() {
        let base = "[DEFAULT]\nsite_name = S\n[keystone_auth]\nauth_type = password\nauth_url = https://k/v3\nusername = caso\nuser_domain_name = Default\npassword = pw\n";
        let cfg = auth(base).unwrap();
        assert_eq!(cfg.scope, Scope::Unscoped);
        assert!(!cfg.system_scope);
        let cfg = auth(&format!(
            "{base}project_name = admin\nproject_domain_id = default\nsystem_scope = all\n"
        ))
        .unwrap();
        assert_eq!(
            cfg.scope,
            Scope::ProjectName {
                name: "admin".into(),
                domain: DomainRef::Id("default".into())
            }
        );
        assert!(cfg.system_scope);
        assert_eq!(
            settings(&format!(
                "{base}project_name = admin\nproject_domain_id = default\n"
            ))
            .keystone_auth
            .ignored_scope(),
            None
        );
        let e = auth(&format!("{base}project_name = admin\n")).unwrap_err();
        assert!(
            e.to_string()
                .contains("project_domain_name or project_domain_id"),
            "{e}"
        );
        assert_eq!(code(e), format!("{:?}", std::process::ExitCode::from(2)));
        let e = auth(&format!("{base}certfile = /c.pem\n")).unwrap_err();
        assert!(
            e.to_string().contains("certfile and keyfile go together"),
            "{e}"
        );
    }

    /// Defect 10: application credentials never ask for a scope, whatever
    /// else the file says.
    #[test]
    fn application_credentials_are_never_scoped() {
        let cfg = auth(
            "[keystone_auth]\nauth_type = v3applicationcredential\nauth_url = https://k/v3\napplication_credential_id = ac\napplication_credential_secret = s\nproject_name = x\nsystem_scope = all\n",
        )
        .unwrap();
        assert_eq!(cfg.scope, Scope::Unscoped);
        assert!(!cfg.system_scope);
        let s = settings("[keystone_auth]\nauth_type = applicationcredential\nproject_name = x\n");
        assert!(
            s.keystone_auth
                .ignored_scope()
                .is_some_and(|w| w.contains("ignored with application credentials"))
        );
        assert!(matches!(
            cfg.method,
            AuthMethod::ApplicationCredential {
                credential: AppCredentialRef::Id(_),
                ..
            }
        ));
        let e = auth(
            "[keystone_auth]\nauth_type = applicationcredential\nauth_url = https://k/v3\napplication_credential_id = ac\n",
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("application_credential_secret is required"),
            "{e}"
        );
    }
}
