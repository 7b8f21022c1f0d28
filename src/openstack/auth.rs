//! Keystone v3 authentication: the request bodies for a password, an
//! application credential (never with a scope: cASO defect 10) and an OIDC
//! access token (exchanged for an unscoped token, then rescoped), with the
//! scope each asks for, and reading the token Keystone answers with.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::catalog::{CatalogEntry, join};
use super::session::{Session, Token, TokenProject};
use super::transport::{EMPTY_BODY, Raw};
use super::{
    AppCredentialRef, AuthMethod, DomainRef, OpenStackError, Scope, Secret, Service, UserRef,
};
use crate::net::server_message;
use crate::time::Timestamp;

/// A token is renewed when it has less than this left (keystoneauth uses
/// the same margin), so no request starts with a token about to expire.
/// Tokens issued for less than twice that are renewed at half their life.
const MIN_TOKEN_LIFE_MICROS: i64 = 120_000_000;

type Result<T> = std::result::Result<T, OpenStackError>;

#[derive(Debug, Deserialize)]
struct TokenBody {
    token: TokenData,
}

#[derive(Debug, Deserialize)]
struct TokenData {
    #[serde(default)]
    expires_at: Option<Timestamp>,
    #[serde(default)]
    catalog: Vec<CatalogEntry>,
    #[serde(default)]
    project: Option<TokenProject>,
}

fn domain_json(d: &DomainRef) -> Value {
    match d {
        DomainRef::Id(id) => json!({ "id": id }),
        DomainRef::Name(name) => json!({ "name": name }),
    }
}

fn user_json(u: &UserRef) -> Value {
    match u {
        UserRef::Id(id) => json!({ "id": id }),
        UserRef::Name { name, domain } => json!({ "name": name, "domain": domain_json(domain) }),
    }
}

fn scope_json(scope: &Scope) -> Option<Value> {
    match scope {
        Scope::Project { id } => Some(json!({ "project": { "id": id } })),
        Scope::ProjectName { name, domain } => {
            Some(json!({ "project": { "name": name, "domain": domain_json(domain) } }))
        }
        Scope::Domain(d) => Some(json!({ "domain": domain_json(d) })),
        Scope::System => Some(json!({ "system": { "all": true } })),
        Scope::Unscoped => None,
    }
}

impl Session {
    pub(super) async fn authenticate(&self, scope: &Scope) -> Result<Token> {
        let identity = match &self.inner.cfg.method {
            AuthMethod::Password { user, password } => {
                let mut u = user_json(user);
                u["password"] = json!(password.expose());
                json!({ "methods": ["password"], "password": { "user": u } })
            }
            AuthMethod::ApplicationCredential { credential, secret } => {
                let mut c = match credential {
                    AppCredentialRef::Id(id) => json!({ "id": id }),
                    AppCredentialRef::Name { name, user } => {
                        json!({ "name": name, "user": user_json(user) })
                    }
                };
                c["secret"] = json!(secret.expose());
                // No scope: Keystone answers 401 to any (cASO defect 10).
                let body = json!({ "auth": { "identity": {
                    "methods": ["application_credential"],
                    "application_credential": c,
                } } });
                return self.post_token(&body, &Scope::Unscoped).await;
            }
            AuthMethod::OidcAccessToken { .. } => return self.oidc_token(scope).await,
        };
        let mut auth = json!({ "identity": identity });
        if let Some(s) = scope_json(scope) {
            auth["scope"] = s;
        }
        self.post_token(&json!({ "auth": auth }), scope).await
    }

    async fn oidc_token(&self, scope: &Scope) -> Result<Token> {
        let mut fed = self.inner.federated.lock().await;
        let reused = fed.as_ref().is_some_and(|t| !t.expires_soon());
        let unscoped = match fed.as_ref() {
            Some(t) if reused => t.clone(),
            _ => {
                let t = Arc::new(self.federated_auth().await?);
                *fed = Some(t.clone());
                t
            }
        };
        let Some(scope_body) = scope_json(scope) else {
            return self.rescope(&unscoped, None, scope).await;
        };
        match self
            .rescope(&unscoped, Some(scope_body.clone()), scope)
            .await
        {
            Err(OpenStackError::Unauthorized { .. }) if reused => {
                // A cached unscoped token may have been revoked: one fresh try.
                let t = Arc::new(self.federated_auth().await?);
                *fed = Some(t.clone());
                self.rescope(&t, Some(scope_body), scope).await
            }
            other => other,
        }
    }

    async fn rescope(
        &self,
        unscoped: &Token,
        scope_body: Option<Value>,
        scope: &Scope,
    ) -> Result<Token> {
        let mut auth = json!({ "identity": {
            "methods": ["token"],
            "token": { "id": unscoped.value.expose() },
        } });
        if let Some(s) = scope_body {
            auth["scope"] = s;
        }
        self.post_token(&json!({ "auth": auth }), scope).await
    }

    /// Exchanges the OIDC access token for an unscoped Keystone token.
    async fn federated_auth(&self) -> Result<Token> {
        let AuthMethod::OidcAccessToken {
            identity_provider,
            protocol,
            access_token,
        } = &self.inner.cfg.method
        else {
            return Err(OpenStackError::Config {
                field: "auth_type",
                detail: "federated authentication without an OIDC access token".to_string(),
            });
        };
        let url = join(
            &self.inner.auth_base,
            &[
                "OS-FEDERATION",
                "identity_providers",
                identity_provider,
                "protocols",
                protocol,
                "auth",
            ],
        )?;
        let mut bearer = HeaderValue::from_str(&format!("Bearer {}", access_token.expose()))
            .map_err(|_| OpenStackError::Config {
                field: "access_token",
                detail: "contains characters not allowed in an HTTP header".to_string(),
            })?;
        bearer.set_sensitive(true);
        let raw = self
            .post_identity(&url, |post| {
                post.header(reqwest::header::AUTHORIZATION, bearer.clone())
            })
            .await?;
        self.token_from(raw, &Scope::Unscoped)
    }

    async fn post_token(&self, body: &Value, scope: &Scope) -> Result<Token> {
        let url = join(&self.inner.auth_base, &["auth", "tokens"])?;
        let body = serde_json::to_vec(body).map_err(|e| OpenStackError::Config {
            field: "keystone_auth",
            detail: e.to_string(),
        })?;
        let raw = self
            .post_identity(&url, |post| {
                post.header(CONTENT_TYPE, "application/json")
                    .body(body.clone())
            })
            .await?;
        self.token_from(raw, scope)
    }

    /// A token request: a POST to Keystone asking for JSON, counted in
    /// [`RequestCounts::tokens`](super::RequestCounts); `finish` adds the
    /// credentials.
    async fn post_identity(
        &self,
        url: &reqwest::Url,
        finish: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<Raw> {
        self.inner.token_requests.fetch_add(1, Ordering::Relaxed);
        self.send(Service::Identity, Method::POST, url, || {
            finish(
                self.inner
                    .client
                    .post(url.clone())
                    .header(ACCEPT, "application/json"),
            )
        })
        .await
    }

    fn token_from(&self, raw: Raw, scope: &Scope) -> Result<Token> {
        if raw.status == StatusCode::UNAUTHORIZED {
            return Err(OpenStackError::Unauthorized {
                service: Service::Identity,
                path: raw.path.clone(),
                scope: scope.to_string(),
                message: server_message(&raw.body, EMPTY_BODY),
            });
        }
        let raw = raw.ok()?;
        let value = raw
            .headers
            .get("X-Subject-Token")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| OpenStackError::Malformed {
                what: format!("keystone token response for {scope}"),
                detail: "no X-Subject-Token header".to_string(),
            })?
            .to_string();
        let body: TokenBody = raw.json(&format!("keystone token for {scope}"))?;
        tracing::debug!(%scope, expires_at = ?body.token.expires_at.map(|t| t.to_string()), "got a Keystone token");
        // Measured against our clock, not Keystone's issued_at: skew-proof.
        let now = Timestamp::now();
        let renew_at = body.token.expires_at.map(|expires| {
            let life = expires.unix_micros() - now.unix_micros();
            let margin = MIN_TOKEN_LIFE_MICROS.min(life / 2).max(0);
            Timestamp::from_unix_micros(expires.unix_micros() - margin)
        });
        Ok(Token {
            value: Secret::new(value),
            renew_at,
            catalog: body.token.catalog,
            project: body.token.project,
        })
    }
}
