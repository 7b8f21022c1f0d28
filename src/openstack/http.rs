//! The [`Session`]: one HTTP client, Keystone tokens cached per scope,
//! retries, re-authentication and request counting.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde_json::{Value, json};

use super::decode::decode;
use super::{
    AppCredentialRef, AuthConfig, AuthMethod, DomainRef, Interface, OpenStackError, Scope, Secret,
    Service, UserRef,
};
use crate::reply::{
    BodyError, Redirect, excerpt, excerpt_chars, json_values_exceed, origin, read_body,
    same_origin_redirects, scrub,
};
use crate::time::Timestamp;

/// A token is renewed when it has less than this left (keystoneauth uses
/// the same margin), so no request starts with a token about to expire.
/// Tokens issued for less than twice that are renewed at half their life.
const MIN_TOKEN_LIFE_MICROS: i64 = 120_000_000;

/// Longest wait between two retries, whatever the configured backoff.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Largest response body read from any OpenStack request (64 MiB): a Nova
/// page of 1000 servers with embedded flavors is a few MB. A longer body is
/// an error for the request, given up while it is read.
pub const MAX_BODY_BYTES: usize = 64 << 20;

/// Most JSON values (numbers, strings, objects...) a successful answer may
/// hold: decoding costs memory per value (up to 30 times the bytes of a
/// dense list), so a body within [`MAX_BODY_BYTES`] could still need
/// gigabytes. A page of 1000 Nova servers holds about 150,000.
pub const MAX_JSON_VALUES: usize = 1_000_000;

/// Error bodies longer than this are only excerpted, never decoded.
const MAX_ERROR_JSON_BYTES: usize = 64 << 10;

/// Characters of a decode error kept in a `Malformed` error: serde quotes
/// the offending value whole.
pub(crate) const DETAIL_CHARS: usize = 400;

type Result<T> = std::result::Result<T, OpenStackError>;

/// How many HTTP requests a session has sent (every attempt counts,
/// retries included), by service. `tokens` counts the Keystone
/// authentication requests among the `identity` ones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestCounts {
    pub identity: u64,
    pub compute: u64,
    pub image: u64,
    pub volume: u64,
    pub network: u64,
    pub tokens: u64,
}

impl RequestCounts {
    pub fn total(&self) -> u64 {
        self.identity + self.compute + self.image + self.volume + self.network
    }

    pub fn get(&self, service: Service) -> u64 {
        match service {
            Service::Identity => self.identity,
            Service::Compute => self.compute,
            Service::Image => self.image,
            Service::Volume => self.volume,
            Service::Network => self.network,
        }
    }
}

impl fmt::Display for RequestCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} requests (keystone {} of which {} token, nova {}, glance {}, cinder {}, neutron {})",
            self.total(),
            self.identity,
            self.tokens,
            self.compute,
            self.image,
            self.volume,
            self.network
        )
    }
}

/// The project a token is scoped to, as Keystone reports it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct TokenProject {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub domain: Option<TokenDomain>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct TokenDomain {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct CatalogEntry {
    #[serde(rename = "type")]
    service_type: String,
    #[serde(default)]
    endpoints: Vec<CatalogEndpoint>,
}

#[derive(Debug, Deserialize)]
struct CatalogEndpoint {
    interface: String,
    url: String,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    region_id: Option<String>,
}

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

/// A Keystone token with what came with it.
#[derive(Debug)]
pub(crate) struct Token {
    value: Secret,
    /// When to stop using it (before `expires_at`); `None`: never expires.
    renew_at: Option<Timestamp>,
    catalog: Vec<CatalogEntry>,
    project: Option<TokenProject>,
}

impl Token {
    fn expires_soon(&self) -> bool {
        self.renew_at.is_some_and(|t| Timestamp::now() >= t)
    }
}

/// A response, read whole.
#[derive(Debug)]
pub(crate) struct Raw {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
    pub service: Service,
    pub method: &'static str,
    pub path: String,
}

impl Raw {
    /// Maps any non-2xx status to an error naming the service and path.
    pub fn ok(self) -> Result<Raw> {
        if self.status.is_success() {
            return Ok(self);
        }
        let message = server_message(&self.body);
        Err(match self.status {
            StatusCode::FORBIDDEN => OpenStackError::Forbidden {
                service: self.service,
                path: self.path,
                message,
            },
            status => OpenStackError::Http {
                service: self.service,
                method: self.method,
                path: self.path,
                status: status.as_u16(),
                message,
            },
        })
    }

    /// Like [`Raw::ok`], but a 404 is `NotFound { what, id }`.
    pub fn found(self, what: &'static str, id: &str) -> Result<Raw> {
        if self.status == StatusCode::NOT_FOUND {
            return Err(OpenStackError::NotFound {
                what,
                id: id.to_string(),
            });
        }
        self.ok()
    }

    /// The body as a `T`; an error names `what`, the request and the field
    /// path that does not decode.
    pub fn json<T: serde::de::DeserializeOwned>(&self, what: &str) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|fast| OpenStackError::Malformed {
            what: format!("{what} from {} {}", self.service, self.path),
            detail: excerpt_chars(self.decode_error::<T>(fast).as_bytes(), DETAIL_CHARS),
        })
    }

    /// Why the body is not a `T`: with the field path when it is JSON (read
    /// again the slow way), else serde_json's line and column.
    fn decode_error<T: serde::de::DeserializeOwned>(&self, fast: serde_json::Error) -> String {
        if fast.is_syntax() || fast.is_eof() || fast.is_io() {
            return fast.to_string();
        }
        match serde_json::from_slice::<Value>(&self.body) {
            Ok(v) => match decode::<T>(&v) {
                Err(e) => e.to_string(),
                Ok(_) => fast.to_string(),
            },
            Err(_) => fast.to_string(),
        }
    }
}

/// The server's own words from an error body: OpenStack services wrap them
/// as `{"<kind>": {"message": ...}}` (Nova, Cinder, Keystone's `error`,
/// Neutron's `NeutronError`), some as a bare `message`, Glance as text.
/// Only ever a short printable [`excerpt`] of it.
fn server_message(body: &[u8]) -> String {
    if body.len() <= MAX_ERROR_JSON_BYTES
        && let Ok(v) = serde_json::from_slice::<Value>(body)
    {
        if let Some(m) = v.get("message").and_then(Value::as_str) {
            return excerpt(m.as_bytes());
        }
        if let Some(obj) = v.as_object() {
            for inner in obj.values() {
                if let Some(m) = inner.get("message").and_then(Value::as_str) {
                    return excerpt(m.as_bytes());
                }
            }
        }
    }
    let text = excerpt(body);
    if text.is_empty() {
        "(empty body)".to_string()
    } else {
        text
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        let msg = inner.to_string();
        if !s.contains(&msg) {
            s.push_str(": ");
            s.push_str(&msg);
        }
        cur = inner.source();
    }
    s
}

/// Appends path segments (percent-encoded) to a base URL.
pub(crate) fn join(base: &Url, segments: &[&str]) -> Result<Url> {
    let mut url = base.clone();
    url.set_query(None);
    url.path_segments_mut()
        .map_err(|()| OpenStackError::Config {
            field: "endpoint",
            detail: format!("{base} cannot take a path"),
        })?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

/// Whether the URL's path already ends with the version segment (`v3`,
/// `v2`, `v2.0`), as some catalogs register it and others do not.
pub(crate) fn ends_with_version(url: &Url, version: &str) -> bool {
    url.path()
        .trim_end_matches('/')
        .ends_with(&format!("/{version}"))
}

type TokenSlot = Arc<tokio::sync::Mutex<Option<Arc<Token>>>>;

struct Inner {
    cfg: AuthConfig,
    client: reqwest::Client,
    /// Keystone v3 root from `auth_url`.
    auth_base: Url,
    tokens: Mutex<HashMap<Scope, TokenSlot>>,
    /// OIDC: the unscoped federated token, rescoped to each scope.
    federated: tokio::sync::Mutex<Option<Arc<Token>>>,
    counts: [AtomicU64; 5],
    token_requests: AtomicU64,
    /// Index into the Nova microversion ladder (see `nova`).
    nova_version: AtomicUsize,
}

/// One per run; cheap to clone (shared state).
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("auth_url", &self.inner.cfg.auth_url)
            .field("method", &self.inner.cfg.method)
            .field("scope", &self.inner.cfg.scope)
            .finish_non_exhaustive()
    }
}

static INSECURE_WARNING: Once = Once::new();

/// `field` is the `[keystone_auth]` option that names `path`.
fn read_file(field: &'static str, path: &std::path::Path) -> Result<Vec<u8>> {
    crate::access::read_capped(path, crate::access::MAX_PEM_BYTES).map_err(|e| {
        let hint = crate::access::denied_hint(
            "caso-extract",
            &format!("[keystone_auth] {field}"),
            path,
            &e,
        )
        .map(|h| format!("; {h}"))
        .unwrap_or_default();
        OpenStackError::Config {
            field,
            detail: format!("cannot read {}: {e}{hint}", path.display()),
        }
    })
}

fn build_client(cfg: &AuthConfig) -> Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(cfg.timeout)
        .timeout(cfg.timeout)
        .redirect(same_origin_redirects())
        .user_agent(concat!("cloud-accounting/", env!("CARGO_PKG_VERSION")));
    if let Some(cafile) = &cfg.tls.cafile {
        let pem = read_file("cafile", cafile)?;
        let certs =
            reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| OpenStackError::Config {
                field: "cafile",
                detail: format!("{}: {}", cafile.display(), error_chain(&e)),
            })?;
        if certs.is_empty() {
            return Err(OpenStackError::Config {
                field: "cafile",
                detail: format!("{}: no PEM certificate in it", cafile.display()),
            });
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    if cfg.tls.insecure {
        INSECURE_WARNING.call_once(|| {
            tracing::warn!(
                "insecure = true: TLS certificates of Keystone and every OpenStack endpoint are NOT verified; anyone on the path can read the credentials and forge the accounting data. Use cafile instead."
            );
        });
        builder = builder
            .danger_accept_invalid_certs(true)
            .danger_accept_invalid_hostnames(true);
    }
    if let Some(cc) = &cfg.tls.client_cert {
        let cert = read_file("certfile", &cc.certfile)?;
        let key = read_file("keyfile", &cc.keyfile)?;
        // native-tls wants PKCS#8; sites often have PKCS#1 or SEC1 keys.
        let key = openssl::pkey::PKey::private_key_from_pem(&key)
            .and_then(|k| k.private_key_to_pem_pkcs8())
            .map_err(|e| OpenStackError::Config {
                field: "keyfile",
                detail: format!("{}: not a PEM private key: {e}", cc.keyfile.display()),
            })?;
        let identity =
            reqwest::Identity::from_pkcs8_pem(&cert, &key).map_err(|e| OpenStackError::Config {
                field: "certfile",
                detail: format!("{}: {}", cc.certfile.display(), error_chain(&e)),
            })?;
        builder = builder.identity(identity);
    }
    builder.build().map_err(|e| OpenStackError::Config {
        field: "keystone_auth",
        detail: format!("cannot build the HTTP client: {}", error_chain(&e)),
    })
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
    /// Builds the HTTP client (TLS settings are checked here). No request is
    /// sent until a token is needed.
    pub fn new(cfg: AuthConfig) -> Result<Session> {
        let trimmed = cfg.auth_url.trim_end_matches('/');
        let mut auth_base = Url::parse(trimmed).map_err(|e| OpenStackError::Config {
            field: "auth_url",
            detail: format!("{:?}: {e}", cfg.auth_url),
        })?;
        if !matches!(auth_base.scheme(), "http" | "https") {
            return Err(OpenStackError::Config {
                field: "auth_url",
                detail: format!("{:?}: not an http(s) URL", cfg.auth_url),
            });
        }
        if !ends_with_version(&auth_base, "v3") {
            auth_base = join(&auth_base, &["v3"])?;
        }
        let client = build_client(&cfg)?;
        Ok(Session {
            inner: Arc::new(Inner {
                cfg,
                client,
                auth_base,
                tokens: Mutex::new(HashMap::new()),
                federated: tokio::sync::Mutex::new(None),
                counts: Default::default(),
                token_requests: AtomicU64::new(0),
                nova_version: AtomicUsize::new(0),
            }),
        })
    }

    pub fn config(&self) -> &AuthConfig {
        &self.inner.cfg
    }

    /// The scope the credentials were configured with.
    pub fn default_scope(&self) -> &Scope {
        &self.inner.cfg.scope
    }

    /// The scope to list tagged projects and read users with: system scope
    /// when configured, the configured scope otherwise.
    pub fn admin_scope(&self) -> Scope {
        if self.inner.cfg.system_scope && !self.is_app_credential() {
            Scope::System
        } else {
            self.inner.cfg.scope.clone()
        }
    }

    pub fn is_app_credential(&self) -> bool {
        matches!(
            self.inner.cfg.method,
            AuthMethod::ApplicationCredential { .. }
        )
    }

    pub fn request_counts(&self) -> RequestCounts {
        let c = |s: Service| self.inner.counts[s.index()].load(Ordering::Relaxed);
        RequestCounts {
            identity: c(Service::Identity),
            compute: c(Service::Compute),
            image: c(Service::Image),
            volume: c(Service::Volume),
            network: c(Service::Network),
            tokens: self.inner.token_requests.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn nova_version_index(&self) -> usize {
        self.inner.nova_version.load(Ordering::Relaxed)
    }

    /// Steps the Nova microversion down from `from` (once, even if many
    /// requests saw the same 406).
    pub(crate) fn lower_nova_version(&self, from: usize) {
        let _ = self.inner.nova_version.compare_exchange(
            from,
            from + 1,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// The project a token for `scope` is scoped to (for application
    /// credentials: the credential's own project).
    pub async fn token_project(&self, scope: &Scope) -> Result<Option<TokenProject>> {
        Ok(self.token(scope).await?.project.clone())
    }

    /// Scopes to a configured project as cASO does, by id first and by name
    /// when Keystone refuses the id (`projects = demo` in the appliance's
    /// caso.conf: defect 4), and returns its id and name. The token is kept
    /// under `Scope::Project { id }` for every later call.
    pub async fn project_scope(&self, id_or_name: &str) -> Result<TokenProject> {
        if self.is_app_credential() {
            // One token, bound to one project: it must be that one.
            let token = self.token(&Scope::Unscoped).await?;
            let project = self.project_of(&token, &Scope::Unscoped)?;
            if project.id == id_or_name || project.name == id_or_name {
                return Ok(project);
            }
            return Err(OpenStackError::ScopeNotAllowed {
                requested: format!("project {id_or_name:?}"),
                bound: format!("{:?} ({})", project.name, project.id),
            });
        }
        let by_id = Scope::Project {
            id: id_or_name.to_string(),
        };
        match self.token(&by_id).await {
            Ok(token) => return self.project_of(&token, &by_id),
            // Keystone answers 401 to a scope on an unknown project id.
            Err(OpenStackError::Unauthorized { .. }) => {}
            Err(e) => return Err(e),
        }
        let by_name = Scope::ProjectName {
            name: id_or_name.to_string(),
            domain: self.project_domain(),
        };
        tracing::debug!(
            project = id_or_name,
            "no project with this id, trying it as a name"
        );
        let token = match self.token(&by_name).await {
            Ok(t) => t,
            Err(OpenStackError::Unauthorized {
                service,
                path,
                message,
                ..
            }) => {
                return Err(OpenStackError::Unauthorized {
                    service,
                    path,
                    scope: format!("project {id_or_name:?} as an id and as a name"),
                    message,
                });
            }
            Err(e) => return Err(e),
        };
        let project = self.project_of(&token, &by_name)?;
        // Reuse this token for the id scope too: one token per project.
        let slot = self.slot(&Scope::Project {
            id: project.id.clone(),
        });
        *slot.lock().await = Some(token);
        Ok(project)
    }

    fn project_of(&self, token: &Token, scope: &Scope) -> Result<TokenProject> {
        token
            .project
            .clone()
            .ok_or_else(|| OpenStackError::Malformed {
                what: format!("keystone token for {scope}"),
                detail: "the token carries no project".to_string(),
            })
    }

    /// The domain project names are looked up in: the configured project
    /// domain, else the user's, else Keystone's `default`.
    fn project_domain(&self) -> DomainRef {
        if let Scope::ProjectName { domain, .. } = &self.inner.cfg.scope {
            return domain.clone();
        }
        if let AuthMethod::Password {
            user: UserRef::Name { domain, .. },
            ..
        } = &self.inner.cfg.method
        {
            return domain.clone();
        }
        DomainRef::Id("default".to_string())
    }

    /// The catalog URL of a service for the configured interface and region.
    pub async fn endpoint(&self, service: Service, scope: &Scope) -> Result<Url> {
        let token = self.token(scope).await?;
        self.endpoint_in(&token, service)
    }

    fn endpoint_in(&self, token: &Token, service: Service) -> Result<Url> {
        let cfg = &self.inner.cfg;
        let interface: Interface = cfg.interface;
        let region = cfg.region_name.as_deref();
        for wanted in service.catalog_types() {
            for entry in token.catalog.iter().filter(|e| e.service_type == *wanted) {
                let found = entry.endpoints.iter().find(|ep| {
                    ep.interface.trim_end_matches("URL") == interface.as_str()
                        && region.is_none_or(|r| {
                            ep.region_id.as_deref() == Some(r) || ep.region.as_deref() == Some(r)
                        })
                });
                if let Some(ep) = found {
                    let url = Url::parse(ep.url.trim_end_matches('/')).map_err(|e| {
                        OpenStackError::Malformed {
                            what: format!("{service} endpoint URL in the service catalog"),
                            detail: format!("{:?}: {e}", excerpt(ep.url.as_bytes())),
                        }
                    })?;
                    if service == Service::Identity && !ends_with_version(&url, "v3") {
                        return join(&url, &["v3"]);
                    }
                    return Ok(url);
                }
            }
        }
        if service == Service::Identity {
            // Some clouds leave Keystone out of the catalog: auth_url is it.
            return Ok(self.inner.auth_base.clone());
        }
        Err(OpenStackError::NoEndpoint {
            service,
            interface: interface.as_str(),
            region: region.map(str::to_string),
        })
    }

    fn count(&self, service: Service) {
        self.inner.counts[service.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Application credentials get one token whatever is asked: key them all
    /// under `Unscoped`.
    fn slot(&self, scope: &Scope) -> TokenSlot {
        let key = if self.is_app_credential() {
            Scope::Unscoped
        } else {
            scope.clone()
        };
        let mut map = self
            .inner
            .tokens
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        map.entry(key).or_default().clone()
    }

    /// A valid token for the scope: the cached one until near expiry, else a
    /// new one (one request at a time per scope).
    pub(crate) async fn token(&self, scope: &Scope) -> Result<Arc<Token>> {
        let slot = self.slot(scope);
        let mut guard = slot.lock().await;
        let token = match guard.as_ref() {
            Some(t) if !t.expires_soon() => t.clone(),
            _ => {
                let t = Arc::new(self.authenticate(scope).await?);
                *guard = Some(t.clone());
                t
            }
        };
        drop(guard);
        if self.is_app_credential() {
            self.check_app_credential_scope(scope, &token)?;
        }
        Ok(token)
    }

    fn check_app_credential_scope(&self, scope: &Scope, token: &Token) -> Result<()> {
        let project = token.project.as_ref();
        let ok = match scope {
            Scope::Unscoped => true,
            Scope::Project { id } => project.is_some_and(|p| &p.id == id),
            Scope::ProjectName { name, .. } => project.is_some_and(|p| &p.name == name),
            Scope::Domain(_) | Scope::System => false,
        };
        if ok {
            Ok(())
        } else {
            Err(OpenStackError::ScopeNotAllowed {
                requested: scope.to_string(),
                bound: project
                    .map(|p| format!("{:?} ({})", p.name, p.id))
                    .unwrap_or_else(|| "(none)".to_string()),
            })
        }
    }

    /// Forgets `stale` (if it is still the cached token) after a 401.
    async fn invalidate(&self, scope: &Scope, stale: &Arc<Token>) {
        let slot = self.slot(scope);
        let mut guard = slot.lock().await;
        if guard.as_ref().is_some_and(|t| Arc::ptr_eq(t, stale)) {
            *guard = None;
        }
        drop(guard);
        if matches!(self.inner.cfg.method, AuthMethod::OidcAccessToken { .. }) {
            // The unscoped token may be the revoked one.
            *self.inner.federated.lock().await = None;
        }
    }

    async fn authenticate(&self, scope: &Scope) -> Result<Token> {
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
        self.inner.token_requests.fetch_add(1, Ordering::Relaxed);
        let raw = self
            .send(Service::Identity, Method::POST, &url, || {
                self.inner
                    .client
                    .post(url.clone())
                    .header(ACCEPT, "application/json")
                    .header(reqwest::header::AUTHORIZATION, bearer.clone())
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
        self.inner.token_requests.fetch_add(1, Ordering::Relaxed);
        let raw = self
            .send(Service::Identity, Method::POST, &url, || {
                self.inner
                    .client
                    .post(url.clone())
                    .header(ACCEPT, "application/json")
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.clone())
            })
            .await?;
        self.token_from(raw, scope)
    }

    fn token_from(&self, raw: Raw, scope: &Scope) -> Result<Token> {
        if raw.status == StatusCode::UNAUTHORIZED {
            return Err(OpenStackError::Unauthorized {
                service: Service::Identity,
                path: raw.path.clone(),
                scope: scope.to_string(),
                message: server_message(&raw.body),
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

    /// GET with the scope's token; a 401 drops the token and retries once
    /// with a fresh one.
    pub(crate) async fn get(
        &self,
        service: Service,
        scope: &Scope,
        url: &Url,
        headers: &[(&'static str, String)],
    ) -> Result<Raw> {
        let mut reauthenticated = false;
        loop {
            let token = self.token(scope).await?;
            let mut auth = HeaderValue::from_str(token.value.expose()).map_err(|_| {
                OpenStackError::Malformed {
                    what: "keystone token".to_string(),
                    detail: "not a valid HTTP header value".to_string(),
                }
            })?;
            auth.set_sensitive(true);
            let raw = self
                .send(service, Method::GET, url, || {
                    let mut rb = self
                        .inner
                        .client
                        .get(url.clone())
                        .header("X-Auth-Token", auth.clone())
                        .header(ACCEPT, "application/json");
                    for (name, value) in headers {
                        rb = rb.header(*name, value);
                    }
                    rb
                })
                .await?;
            if raw.status != StatusCode::UNAUTHORIZED {
                return Ok(raw);
            }
            if reauthenticated {
                return Err(OpenStackError::Unauthorized {
                    service,
                    path: raw.path.clone(),
                    scope: scope.to_string(),
                    message: format!(
                        "a fresh token was refused too: {}",
                        server_message(&raw.body)
                    ),
                });
            }
            tracing::info!(%service, path = %raw.path, "token refused (401), authenticating again once");
            self.invalidate(scope, &token).await;
            reauthenticated = true;
        }
    }

    /// Sends with bounded retries (exponential backoff) on connection errors,
    /// timeouts and 5xx. Every attempt is counted.
    async fn send(
        &self,
        service: Service,
        method: Method,
        url: &Url,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Raw> {
        let cfg = &self.inner.cfg;
        let path = url.path().to_string();
        let method_name: &'static str = if method == Method::POST {
            "POST"
        } else {
            "GET"
        };
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            self.count(service);
            // The token sent is a secret to scrub from error bodies too.
            let (sent, token) = match build().build() {
                Ok(request) => {
                    let token = request
                        .headers()
                        .get("X-Auth-Token")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    (self.inner.client.execute(request).await, token)
                }
                Err(e) => (Err(e), None),
            };
            let failure = match sent {
                Ok(resp) => {
                    if let Some(redirect) = Redirect::from_response(&resp) {
                        return Err(OpenStackError::Redirected {
                            service,
                            method: method_name,
                            path,
                            redirect,
                        });
                    }
                    let status = resp.status();
                    let headers = resp.headers().clone();
                    match read_body(resp, MAX_BODY_BYTES).await {
                        Err(BodyError::TooLarge { limit }) => {
                            return Err(OpenStackError::TooLarge {
                                service,
                                method: method_name,
                                path,
                                limit: format!("{limit} bytes"),
                            });
                        }
                        Ok(body)
                            if status.is_success()
                                && json_values_exceed(&body, MAX_JSON_VALUES) =>
                        {
                            return Err(OpenStackError::TooLarge {
                                service,
                                method: method_name,
                                path,
                                limit: format!("{MAX_JSON_VALUES} JSON values"),
                            });
                        }
                        Ok(body) => {
                            let body = if status.is_success() {
                                body
                            } else {
                                let mut secrets = self.secrets();
                                secrets.extend(token.as_deref());
                                scrub(body, &secrets)
                            };
                            tracing::debug!(%service, method = method_name, %path, status = status.as_u16(), "OpenStack request");
                            if !status.is_server_error() || attempt > cfg.retries {
                                return Ok(Raw {
                                    status,
                                    headers,
                                    body,
                                    service,
                                    method: method_name,
                                    path,
                                });
                            }
                            format!("HTTP {}: {}", status.as_u16(), server_message(&body))
                        }
                        Err(BodyError::Transport(e)) => {
                            self.transport_failure(service, url, method_name, attempt, e)?
                        }
                    }
                }
                Err(e) => self.transport_failure(service, url, method_name, attempt, e)?,
            };
            let wait = cfg
                .backoff
                .saturating_mul(1u32 << (attempt - 1).min(16))
                .min(MAX_BACKOFF);
            tracing::warn!(%service, origin = %origin(url), method = method_name, %path, attempt, retry_in = %humantime::format_duration(wait), "{failure}");
            tokio::time::sleep(wait).await;
        }
    }

    /// The configured credentials, scrubbed from error bodies.
    fn secrets(&self) -> Vec<&str> {
        match &self.inner.cfg.method {
            AuthMethod::Password { password, .. } => vec![password.expose()],
            AuthMethod::ApplicationCredential { secret, .. } => vec![secret.expose()],
            AuthMethod::OidcAccessToken { access_token, .. } => vec![access_token.expose()],
        }
    }

    /// Returns a description to retry with, or the final error once the
    /// retries are spent.
    /// The final error names the origin and path of `url`, never its query
    /// or user information.
    fn transport_failure(
        &self,
        service: Service,
        url: &Url,
        method: &'static str,
        attempt: u32,
        e: reqwest::Error,
    ) -> Result<String> {
        let timeout = e.is_timeout();
        let detail = error_chain(&e.without_url());
        if attempt <= self.inner.cfg.retries {
            return Ok(detail);
        }
        let (origin, path) = (origin(url), url.path().to_string());
        Err(if timeout {
            OpenStackError::Timeout {
                service,
                origin,
                method,
                path,
                attempts: attempt,
            }
        } else {
            OpenStackError::Transport {
                service,
                origin,
                method,
                path,
                attempts: attempt,
                detail,
            }
        })
    }
}
