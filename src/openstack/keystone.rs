//! Keystone (identity v3): projects (with tags and properties) and users.
//!
//! Scopes: tagged projects are listed and users read with
//! [`Session::admin_scope`] (system scope when configured, else the configured
//! scope). A project's own properties can always be read with a token scoped
//! to that project ([`Session::project_scope`]), which is how an unprivileged
//! account works with just its configured projects.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::catalog::join;
use super::decode::{required, take};
use super::paging::{Collection, NextLink, PlainGet, collect};
use super::{Cache, OpenStackError, Scope, Service, Session};

type Result<T> = std::result::Result<T, OpenStackError>;

/// A project. Keystone returns custom properties (e.g. `VO`) at the top level.
#[derive(Clone, Debug, PartialEq)]
pub struct Project {
    pub id: String,
    pub name: String,
    pub domain_id: Option<String>,
    /// `true` when absent.
    pub enabled: bool,
    pub tags: Vec<String>,
    /// Every other key.
    pub properties: Map<String, Value>,
}

/// By hand rather than with `#[serde(flatten)]`, whose errors do not name
/// the field.
impl<'de> Deserialize<'de> for Project {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let mut m = Map::<String, Value>::deserialize(d)?;
        Ok(Project {
            id: required(take(&mut m, "id")?, "id")?,
            name: required(take(&mut m, "name")?, "name")?,
            domain_id: take::<Option<String>, _>(&mut m, "domain_id")?.flatten(),
            enabled: take(&mut m, "enabled")?.unwrap_or(true),
            tags: take(&mut m, "tags")?.unwrap_or_default(),
            properties: m,
        })
    }
}

impl Project {
    /// A string property such as the VO (`vo_property`).
    pub fn property(&self, key: &str) -> Option<&str> {
        self.properties.get(key).and_then(Value::as_str)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct User {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub domain_id: Option<String>,
}

fn projects_query(url: &mut reqwest::Url, pairs: &[(&str, &str)]) {
    url.query_pairs_mut().extend_pairs(pairs);
}

async fn list_projects(
    session: &Session,
    scope: &Scope,
    filter: &[(&str, &str)],
) -> Result<Vec<Project>> {
    let endpoint = session.endpoint(Service::Identity, scope).await?;
    let mut url = join(&endpoint, &["projects"])?;
    projects_query(&mut url, filter);
    collect(
        session,
        Collection {
            service: Service::Identity,
            scope,
            url,
            items: &["projects"],
            items_optional: false,
            next: NextLink::Keystone,
            what: "keystone project",
        },
        &PlainGet,
    )
    .await
}

/// Projects carrying `tag` (`GET /v3/projects?tags=<tag>`). Needs a scope
/// allowed to list projects (system or admin); `Forbidden` otherwise.
pub async fn list_projects_by_tag(
    session: &Session,
    scope: &Scope,
    tag: &str,
) -> Result<Vec<Project>> {
    list_projects(session, scope, &[("tags", tag)]).await
}

/// Projects named `name` (`GET /v3/projects?name=<name>`).
pub async fn find_projects_by_name(
    session: &Session,
    scope: &Scope,
    name: &str,
) -> Result<Vec<Project>> {
    list_projects(session, scope, &[("name", name)]).await
}

/// `GET /v3/projects/{id}`: a token scoped to the project itself may read it.
pub async fn get_project(session: &Session, scope: &Scope, id: &str) -> Result<Project> {
    let endpoint = session.endpoint(Service::Identity, scope).await?;
    let url = join(&endpoint, &["projects", id])?;
    let raw = session
        .get(Service::Identity, scope, &url, &[])
        .await?
        .found("keystone project", id)?;
    #[derive(Deserialize)]
    struct Body {
        project: Project,
    }
    Ok(raw
        .json::<Body>(&format!("keystone project {id:?}"))?
        .project)
}

/// A configured `projects` entry, id or name (cASO defect 4): by id, then
/// by name. Several projects with that name is an error, not a guess.
pub async fn lookup_project(session: &Session, scope: &Scope, id_or_name: &str) -> Result<Project> {
    match get_project(session, scope, id_or_name).await {
        Err(OpenStackError::NotFound { .. }) => {}
        other => return other,
    }
    let mut found = find_projects_by_name(session, scope, id_or_name).await?;
    match found.len() {
        0 => Err(OpenStackError::NotFound {
            what: "keystone project (by id or name)",
            id: id_or_name.to_string(),
        }),
        1 => Ok(found.remove(0)),
        count => Err(OpenStackError::Ambiguous {
            what: "keystone project name",
            name: id_or_name.to_string(),
            count,
        }),
    }
}

/// `GET /v3/users/{id}`.
pub async fn get_user(session: &Session, scope: &Scope, id: &str) -> Result<User> {
    let endpoint = session.endpoint(Service::Identity, scope).await?;
    let url = join(&endpoint, &["users", id])?;
    let raw = session
        .get(Service::Identity, scope, &url, &[])
        .await?
        .found("keystone user", id)?;
    #[derive(Deserialize)]
    struct Body {
        user: User,
    }
    Ok(raw.json::<Body>(&format!("keystone user {id:?}"))?.user)
}

/// User names, best effort: each user is read once per run; a user that
/// cannot be read (deleted, forbidden, Keystone trouble) has no name, is
/// logged once, and never costs a record.
#[derive(Debug)]
pub struct UserNames {
    scope: Scope,
    cache: Cache<Option<String>>,
}

impl UserNames {
    /// Reads users with `scope` (usually [`Session::admin_scope`]).
    pub fn new(scope: Scope) -> Self {
        UserNames {
            scope,
            cache: Cache::new(),
        }
    }

    pub async fn name(&self, session: &Session, user_id: &str) -> Option<String> {
        let fetch = || async {
            Ok(match get_user(session, &self.scope, user_id).await {
                Ok(user) => Some(user.name),
                Err(e) => {
                    tracing::warn!("no user name for the records: {e}");
                    None
                }
            })
        };
        match self.cache.get_or_fetch(user_id, fetch).await {
            Ok(Some(name)) => Option::clone(&name),
            _ => None,
        }
    }

    /// How many distinct users were looked up.
    pub fn len(&self) -> usize {
        self.cache.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }
}

/// Shared handle for concurrent extractors.
pub type SharedUserNames = Arc<UserNames>;
