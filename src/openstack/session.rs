//! The [`Session`]: one HTTP client, Keystone tokens cached per scope
//! (renewed near expiry, one request at a time per scope, one token for an
//! application credential whatever is asked), project scoping and request
//! counting. Authentication bodies are in `auth`, endpoint selection in
//! `catalog`, sending with retries in `transport`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use reqwest::Url;
use serde::Deserialize;

use super::catalog::{CatalogEntry, ends_with_version, join};
use super::transport::build_client;
use super::{AuthConfig, AuthMethod, DomainRef, OpenStackError, Scope, Secret, Service, UserRef};
use crate::time::Timestamp;

type Result<T> = std::result::Result<T, OpenStackError>;

/// How many HTTP requests a session has sent (every attempt counts,
/// retries included), by service. `tokens` counts the Keystone
/// authentication requests among the `identity` ones; `by_status` splits
/// the same attempts by service and answer (not in the run report).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RequestCounts {
    pub identity: u64,
    pub compute: u64,
    pub image: u64,
    pub volume: u64,
    pub network: u64,
    pub tokens: u64,
    /// Every attempt by service and answer, sorted; its counts add up to
    /// [`RequestCounts::total`] once the requests in flight have ended.
    #[serde(skip)]
    pub by_status: Vec<StatusCount>,
}

/// What came back for one attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Answer {
    /// The HTTP status of the response (whatever its body turned out to be).
    Status(u16),
    /// No response: connection refused or reset, timeout, TLS failure.
    NoAnswer,
}

impl fmt::Display for Answer {
    /// The status code, or `error` when no answer came.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Answer::Status(code) => write!(f, "{code}"),
            Answer::NoAnswer => f.write_str("error"),
        }
    }
}

/// The attempts to one service that got one answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct StatusCount {
    pub service: Service,
    pub answer: Answer,
    pub requests: u64,
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

/// A Keystone token with what came with it.
#[derive(Debug)]
pub(crate) struct Token {
    pub(super) value: Secret,
    /// When to stop using it (before `expires_at`); `None`: never expires.
    pub(super) renew_at: Option<Timestamp>,
    pub(super) catalog: Vec<CatalogEntry>,
    pub(super) project: Option<TokenProject>,
}

impl Token {
    pub(super) fn expires_soon(&self) -> bool {
        self.renew_at.is_some_and(|t| Timestamp::now() >= t)
    }
}

type TokenSlot = Arc<tokio::sync::Mutex<Option<Arc<Token>>>>;

pub(super) struct Inner {
    pub(super) cfg: AuthConfig,
    pub(super) client: reqwest::Client,
    /// Keystone v3 root from `auth_url`.
    pub(super) auth_base: Url,
    tokens: Mutex<HashMap<Scope, TokenSlot>>,
    /// OIDC: the unscoped federated token, rescoped to each scope.
    pub(super) federated: tokio::sync::Mutex<Option<Arc<Token>>>,
    counts: [AtomicU64; 5],
    answers: Mutex<BTreeMap<(Service, Answer), u64>>,
    pub(super) token_requests: AtomicU64,
    /// Index into the Nova microversion ladder (see `nova`).
    nova_version: AtomicUsize,
}

/// One per run; cheap to clone (shared state).
#[derive(Clone)]
pub struct Session {
    pub(super) inner: Arc<Inner>,
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
                answers: Mutex::new(BTreeMap::new()),
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
            by_status: self
                .answers()
                .iter()
                .map(|(&(service, answer), &requests)| StatusCount {
                    service,
                    answer,
                    requests,
                })
                .collect(),
        }
    }

    fn answers(&self) -> std::sync::MutexGuard<'_, BTreeMap<(Service, Answer), u64>> {
        self.inner
            .answers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
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

    pub(super) fn count(&self, service: Service) {
        self.inner.counts[service.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts what came back for an attempt [`Session::count`] counted.
    pub(super) fn count_answer(&self, service: Service, answer: Answer) {
        *self.answers().entry((service, answer)).or_default() += 1;
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
    pub(super) async fn invalidate(&self, scope: &Scope, stale: &Arc<Token>) {
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
}
