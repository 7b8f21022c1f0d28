//! Thin OpenStack API clients on reqwest: exactly the calls the extractor needs.
//!
//! One [`Session`] per run: one HTTP client, one token per scope reused by every
//! extractor and every project (cASO asks for about 11 tokens per project:
//! defect 12), retries with backoff on connection errors, timeouts and 5xx, one
//! re-authentication on 401, and a request counter for the benchmark.
//!
//! Which token each call uses is the caller's choice, spelt out by a
//! [`Target`]: either a token scoped to the project itself (works for every
//! role on every policy set: what cASO does, but with one token per project
//! instead of eleven) or an admin token with `all_tenants=1&project_id=`
//! filters (one token for the whole run).
//!
//! Per-run caches ([`cache::Cache`], e.g. [`nova::FlavorCache`],
//! [`keystone::UserNames`], [`glance::ImageCache`]) fetch every flavor, image
//! and user at most once per run, even when asked concurrently.

mod auth;
pub mod cache;
mod catalog;
pub mod cinder;
mod decode;
pub mod glance;
pub mod keystone;
pub mod neutron;
pub mod nova;
mod paging;
#[cfg(test)]
mod proptests;
mod session;
mod transport;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

pub use cache::Cache;
pub use paging::{MAX_LIST_VALUES, MAX_PAGES};
pub use session::{Answer, RequestCounts, Session, StatusCount};
pub use transport::{MAX_BODY_BYTES, MAX_JSON_VALUES};

use crate::secret::Secret;

/// A Keystone domain, by id or by name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum DomainRef {
    Id(String),
    Name(String),
}

/// A user named for authentication: by id (globally unique), or by name within
/// a domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserRef {
    Id(String),
    Name { name: String, domain: DomainRef },
}

/// How we authenticate to Keystone v3 (cASO's `auth_type`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    /// `v3password`.
    Password { user: UserRef, password: Secret },
    /// `v3applicationcredential`. The token is always scoped to the project the
    /// credential was created in; Keystone refuses any explicit scope with a
    /// 401 (cASO defect 10), so none is ever sent.
    ApplicationCredential {
        credential: AppCredentialRef,
        secret: Secret,
    },
    /// `v3oidcaccesstoken` (EGI Check-in): the access token is exchanged at
    /// `OS-FEDERATION/identity_providers/{idp}/protocols/{protocol}/auth` for
    /// an unscoped token, which is then rescoped as needed.
    OidcAccessToken {
        identity_provider: String,
        protocol: String,
        access_token: Secret,
    },
}

/// An application credential: by id, or by name plus its owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppCredentialRef {
    Id(String),
    Name { name: String, user: UserRef },
}

/// What a token is scoped to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    Project {
        id: String,
    },
    ProjectName {
        name: String,
        domain: DomainRef,
    },
    Domain(DomainRef),
    /// `system: {all: true}`: lists tagged projects and reads users on clouds
    /// whose policies require it. Unprivileged accounts cannot get it.
    System,
    /// No explicit scope (what an application credential always uses).
    Unscoped,
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Project { id } => write!(f, "project id {id}"),
            Scope::ProjectName { name, domain } => write!(f, "project {name:?} in {domain}"),
            Scope::Domain(d) => write!(f, "{d}"),
            Scope::System => f.write_str("system scope"),
            Scope::Unscoped => f.write_str("no explicit scope"),
        }
    }
}

impl fmt::Display for DomainRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DomainRef::Id(id) => write!(f, "domain id {id}"),
            DomainRef::Name(n) => write!(f, "domain {n:?}"),
        }
    }
}

/// Which catalog endpoint to use (keystoneauth's `interface`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Interface {
    #[default]
    Public,
    Internal,
    Admin,
}

impl Interface {
    pub fn as_str(self) -> &'static str {
        match self {
            Interface::Public => "public",
            Interface::Internal => "internal",
            Interface::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Interface {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        // keystoneauth accepts both "public" and "publicURL".
        match s.trim_end_matches("URL") {
            "public" => Ok(Interface::Public),
            "internal" => Ok(Interface::Internal),
            "admin" => Ok(Interface::Admin),
            _ => Err(format!(
                "unknown interface {s:?}: expected public, internal or admin"
            )),
        }
    }
}

/// TLS settings of the one HTTP client (keystone_auth `cafile`, `insecure`,
/// `certfile`, `keyfile`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM bundle of extra trusted CAs.
    pub cafile: Option<PathBuf>,
    /// Skip certificate verification. Logged loudly.
    pub insecure: bool,
    /// PEM client certificate and its key (PKCS#1, SEC1 or PKCS#8).
    pub client_cert: Option<ClientCert>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCert {
    pub certfile: PathBuf,
    pub keyfile: PathBuf,
}

/// Everything a [`Session`] needs, filled by the integrator from `caso.conf`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthConfig {
    /// Keystone, with or without the trailing `/v3`.
    pub auth_url: String,
    pub method: AuthMethod,
    /// The scope the configured credentials name (`project_id`,
    /// `project_name` + `project_domain_*`, `domain_*`, or none).
    pub scope: Scope,
    /// Whether to use a system-scoped token to list tagged projects and read
    /// users (`system_scope = all`). Off for unprivileged accounts.
    pub system_scope: bool,
    pub interface: Interface,
    pub region_name: Option<String>,
    pub tls: TlsConfig,
    /// Per-request timeout (connect + response).
    pub timeout: Duration,
    /// How many times a request is retried after a connection error, a
    /// timeout or a 5xx (so at most `retries + 1` attempts).
    pub retries: u32,
    /// Wait before the first retry; doubled for each further one.
    pub backoff: Duration,
}

impl AuthConfig {
    /// A configuration with the defaults for everything but the credentials:
    /// public interface, no region, 60 s timeout, 3 retries from 1 s backoff.
    pub fn new(auth_url: impl Into<String>, method: AuthMethod, scope: Scope) -> Self {
        AuthConfig {
            auth_url: auth_url.into(),
            method,
            scope,
            system_scope: false,
            interface: Interface::Public,
            region_name: None,
            tls: TlsConfig::default(),
            timeout: Duration::from_secs(60),
            retries: 3,
            backoff: Duration::from_secs(1),
        }
    }
}

/// The OpenStack services we call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    Identity,
    Compute,
    Image,
    Volume,
    Network,
}

impl Service {
    pub const ALL: [Service; 5] = [
        Service::Identity,
        Service::Compute,
        Service::Image,
        Service::Volume,
        Service::Network,
    ];

    /// The project name, for messages and counters.
    pub fn name(self) -> &'static str {
        match self {
            Service::Identity => "keystone",
            Service::Compute => "nova",
            Service::Image => "glance",
            Service::Volume => "cinder",
            Service::Network => "neutron",
        }
    }

    /// The service type (the run report's and the metrics' name for it).
    pub fn service_type(self) -> &'static str {
        match self {
            Service::Identity => "identity",
            Service::Compute => "compute",
            Service::Image => "image",
            Service::Volume => "volume",
            Service::Network => "network",
        }
    }

    /// Catalog `type`s, preferred first.
    pub fn catalog_types(self) -> &'static [&'static str] {
        match self {
            Service::Identity => &["identity"],
            Service::Compute => &["compute"],
            Service::Image => &["image"],
            Service::Volume => &["block-storage", "volumev3", "volumev2", "volume"],
            Service::Network => &["network"],
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whose resources a per-project call reads, and with which token.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    pub project_id: String,
    pub scope: Scope,
    /// Add `all_tenants=1&project_id=<id>` (Nova, Cinder): for an admin token
    /// scoped elsewhere.
    pub all_tenants: bool,
}

impl Target {
    /// Use a token scoped to the project itself: any role, any policy.
    pub fn own(project_id: impl Into<String>) -> Self {
        let project_id = project_id.into();
        Target {
            scope: Scope::Project {
                id: project_id.clone(),
            },
            project_id,
            all_tenants: false,
        }
    }

    /// Use an admin token of another scope and filter by project.
    pub fn admin(project_id: impl Into<String>, scope: Scope) -> Self {
        Target {
            project_id: project_id.into(),
            scope,
            all_tenants: true,
        }
    }
}

/// Everything that can go wrong talking to OpenStack. Messages name the
/// service, the URL path (never a token or a query with secrets) and what the
/// server said.
#[derive(Debug, thiserror::Error)]
pub enum OpenStackError {
    /// Keystone rejected the credentials (or a token twice in a row). Never
    /// retried: a wrong password must fail fast.
    #[error("{service}: unauthorized at {path} ({scope}): {message}")]
    Unauthorized {
        service: Service,
        path: String,
        scope: String,
        message: String,
    },
    #[error("{service}: forbidden at {path}: {message}")]
    Forbidden {
        service: Service,
        path: String,
        message: String,
    },
    #[error("{what} {id:?} not found")]
    NotFound { what: &'static str, id: String },
    #[error("{service}: HTTP {status} from {method} {path}: {message}")]
    Http {
        service: Service,
        method: &'static str,
        path: String,
        status: u16,
        message: String,
    },
    #[error("malformed {what}: {detail}")]
    Malformed { what: String, detail: String },
    #[error("{what}: the server returned marker {marker:?} twice; stopping instead of looping")]
    RepeatingMarker { what: String, marker: String },
    /// A list still linking to a next page after [`MAX_PAGES`] pages, or
    /// holding more than [`MAX_LIST_VALUES`] JSON values in all.
    #[error("{what}: {detail}; stopping instead of following it")]
    EndlessList { what: String, detail: String },
    /// A body over [`MAX_BODY_BYTES`] (given up while read) or holding
    /// more than [`MAX_JSON_VALUES`] (not decoded).
    #[error(
        "{service}: the answer to {method} {path} is over the limit of {limit}; not read further"
    )]
    TooLarge {
        service: Service,
        method: &'static str,
        path: String,
        /// The limit with its unit ("67108864 bytes").
        limit: String,
    },
    /// A redirect to another origin (or too many on the same one): never
    /// followed with the token.
    #[error("{service}: {method} {path}: {redirect}")]
    Redirected {
        service: Service,
        method: &'static str,
        path: String,
        redirect: crate::net::Redirect,
    },
    /// `origin` is `scheme://host:port` ([`crate::net::origin`]): never
    /// user information or a query, which may hold secrets.
    #[error(
        "{service}: no answer from {origin} ({method} {path}) after {attempts} attempt(s): timed out"
    )]
    Timeout {
        service: Service,
        origin: String,
        method: &'static str,
        path: String,
        attempts: u32,
    },
    #[error(
        "{service}: cannot reach {origin} ({method} {path}) after {attempts} attempt(s): {detail}"
    )]
    Transport {
        service: Service,
        origin: String,
        method: &'static str,
        path: String,
        attempts: u32,
        detail: String,
    },
    #[error(
        "no {service} endpoint in the service catalog for interface {interface}{}",
        region.as_deref().map(|r| format!(" in region {r:?}")).unwrap_or_default()
    )]
    NoEndpoint {
        service: Service,
        interface: &'static str,
        region: Option<String>,
    },
    #[error("{what} is ambiguous: {count} projects are named {name:?}")]
    Ambiguous {
        what: &'static str,
        name: String,
        count: usize,
    },
    /// Application credentials carry their own project scope; nothing else
    /// can be asked for.
    #[error(
        "application credentials are bound to project {bound}; cannot use {requested} (use an admin target with all_tenants instead)"
    )]
    ScopeNotAllowed { requested: String, bound: String },
    /// A setting that cannot be used (unreadable CA file, bad URL...).
    #[error("{field}: {detail}")]
    Config { field: &'static str, detail: String },
}

impl OpenStackError {
    /// Whether a fresh run may succeed (network, server trouble), as opposed to
    /// a problem a human must fix (credentials, configuration).
    pub fn is_transient(&self) -> bool {
        match self {
            OpenStackError::Timeout { .. } | OpenStackError::Transport { .. } => true,
            OpenStackError::Http { status, .. } => *status >= 500,
            _ => false,
        }
    }
}
