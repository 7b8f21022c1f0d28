//! Which projects to extract, and the VO of each.
//!
//! Projects = the configured `projects` entries (ids or names: cASO
//! defect 4) plus every Keystone project tagged `caso_tag`, once each by
//! id. VO = the project's `vo_property` property, else the deprecated
//! voms.json map, else `default_vo`; a project with none is an error for
//! that project (cASO dropped its records and advanced its lastrun: defect 5).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use futures_util::{StreamExt, stream};

use super::Failure;
use crate::openstack::keystone::{self, Project};
use crate::openstack::{OpenStackError, Scope, Session, Target};

/// Where a project's VO came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VoSource {
    /// The Keystone project property named so (`vo_property`).
    Property(String),
    /// The deprecated voms.json mapping file.
    MappingFile(PathBuf),
    /// `default_vo`.
    Default,
}

impl fmt::Display for VoSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VoSource::Property(p) => write!(f, "project property {p}"),
            VoSource::MappingFile(p) => write!(f, "{}", p.display()),
            VoSource::Default => f.write_str("default_vo"),
        }
    }
}

/// A project to extract.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProjectInfo {
    pub id: String,
    pub name: String,
    /// The VO and where it came from; `None` when nothing maps it.
    pub vo: Option<(String, VoSource)>,
    /// How its resources are read.
    pub target: Target,
}

pub use crate::config::voms::{VoMap, VoMapError};

/// What decides a project's VO.
#[derive(Clone, Debug)]
pub struct VoRules {
    pub property: String,
    /// Loaded and checked with the configuration.
    pub map: VoMap,
    pub default_vo: Option<String>,
}

impl VoRules {
    /// The VO of `project`: its property, else the map, else the default.
    /// `Err` when the map gives the project several VOs.
    pub fn vo_of(&self, project: &Project) -> Result<Option<(String, VoSource)>, String> {
        if let Some(vo) = project.property(&self.property).map(str::trim)
            && !vo.is_empty()
        {
            return Ok(Some((
                vo.to_string(),
                VoSource::Property(self.property.clone()),
            )));
        }
        let map = &self.map;
        if let Some(vo) = map.lookup(&project.id, &project.name)? {
            let _about = crate::logging::project_span(&project.name, &project.id).entered();
            tracing::warn!(
                "VO from the deprecated mapping file {}: set the project property {} instead",
                map.path().display(),
                self.property
            );
            return Ok(Some((
                vo.to_string(),
                VoSource::MappingFile(map.path().to_path_buf()),
            )));
        }
        Ok(self
            .default_vo
            .as_ref()
            .map(|vo| (vo.clone(), VoSource::Default)))
    }
}

/// How projects are discovered.
#[derive(Clone, Debug)]
pub struct DiscoveryRules {
    /// Configured entries (ids or names), in configuration order.
    pub entries: Vec<String>,
    pub tag: String,
    pub vo: VoRules,
    pub concurrency: usize,
}

/// The outcome of discovery.
#[derive(Debug, Default)]
pub struct Discovery {
    /// Sorted by id, each once.
    pub projects: Vec<ProjectInfo>,
    /// Entries that could not be resolved.
    pub failures: Vec<Failure>,
    /// Whether tagged projects could be listed.
    pub tags_listed: bool,
}

/// The scope to list tagged projects and read users with: the first of
/// system scope (as cASO asks; not for application credentials) and the
/// configured scope that may list projects tagged `tag`. Returns the scope
/// and the tagged projects, or the configured scope and `None`.
pub async fn admin_scope_and_tagged(session: &Session, tag: &str) -> (Scope, Option<Vec<Project>>) {
    let mut candidates = Vec::new();
    if !session.is_app_credential() {
        candidates.push(Scope::System);
    }
    let configured = if session.is_app_credential() {
        Scope::Unscoped
    } else {
        session.default_scope().clone()
    };
    if !candidates.contains(&configured) {
        candidates.push(configured.clone());
    }
    let mut last = None;
    for scope in candidates {
        match keystone::list_projects_by_tag(session, &scope, tag).await {
            Ok(found) => return (scope, Some(found)),
            // A scope that may not list is expected; anything else (a
            // hostile answer, Keystone trouble) is worth saying.
            Err(e @ (OpenStackError::Forbidden { .. } | OpenStackError::Unauthorized { .. })) => {
                tracing::debug!(%scope, "cannot list tagged projects with this scope: {e}");
                last = Some(e);
            }
            Err(e) => {
                tracing::warn!(%scope, "cannot list tagged projects with this scope: {e}");
                last = Some(e);
            }
        }
    }
    if let Some(e) = last {
        tracing::warn!(
            tag,
            "cannot list the projects tagged {tag:?} in Keystone, extracting the configured projects only: {e}"
        );
    }
    (configured, None)
}

/// The bound project of application credentials, if that is how we log in.
async fn bound_project(session: &Session) -> Result<Option<(String, String)>, OpenStackError> {
    if !session.is_app_credential() {
        return Ok(None);
    }
    Ok(session
        .token_project(&Scope::Unscoped)
        .await?
        .map(|p| (p.id, p.name)))
}

fn target_for(id: &str, bound: Option<&(String, String)>) -> Target {
    match bound {
        // Application credentials read other projects with their one token,
        // filtering by project (needs an admin role).
        Some((bound_id, _)) if bound_id != id => Target::admin(id, Scope::Unscoped),
        _ => Target::own(id),
    }
}

/// A configured entry, by id or by name, with its properties.
async fn resolve_entry(
    session: &Session,
    entry: &str,
    bound: Option<&(String, String)>,
) -> Result<Project, OpenStackError> {
    match bound {
        Some((id, name)) if entry == id || entry == name => {
            keystone::get_project(session, &Scope::Unscoped, id).await
        }
        Some(_) => keystone::lookup_project(session, &Scope::Unscoped, entry).await,
        None => {
            let p = session.project_scope(entry).await?;
            keystone::get_project(session, &Scope::Project { id: p.id.clone() }, &p.id).await
        }
    }
}

/// Resolves the configured entries and adds the tagged projects; each
/// project once, sorted by id.
pub async fn discover(
    session: &Session,
    rules: &DiscoveryRules,
    tagged: Option<Vec<Project>>,
) -> Discovery {
    let bound = match bound_project(session).await {
        Ok(b) => b,
        Err(e) => {
            return Discovery {
                failures: vec![Failure::new(
                    "(all)",
                    "application credential's project",
                    e.to_string(),
                )],
                ..Discovery::default()
            };
        }
    };
    let bound = bound.as_ref();
    let resolved: Vec<(String, Result<Project, OpenStackError>)> =
        stream::iter(rules.entries.iter())
            .map(|entry| async move { (entry.clone(), resolve_entry(session, entry, bound).await) })
            .buffered(rules.concurrency.max(1))
            .collect()
            .await;
    let mut failures = Vec::new();
    let mut by_id: BTreeMap<String, Project> = BTreeMap::new();
    for (entry, result) in resolved {
        match result {
            Ok(p) => {
                by_id.entry(p.id.clone()).or_insert(p);
            }
            Err(e) => failures.push(Failure::new(
                entry.clone(),
                "keystone project (by id or name)",
                e.to_string(),
            )),
        }
    }
    let tags_listed = tagged.is_some();
    for p in tagged.into_iter().flatten() {
        by_id.entry(p.id.clone()).or_insert(p);
    }
    let mut projects = Vec::new();
    for (id, p) in by_id {
        if !p.enabled {
            let _about = crate::logging::project_span(&p.name, &id).entered();
            tracing::info!("project is disabled in Keystone; extracting it anyway");
        }
        match rules.vo.vo_of(&p) {
            Ok(vo) => projects.push(ProjectInfo {
                target: target_for(&id, bound),
                id,
                name: p.name,
                vo,
            }),
            Err(cause) => failures.push(Failure::new(id, "VO mapping", cause)),
        }
    }
    Discovery {
        projects,
        failures,
        tags_listed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::path::Path;

    fn project(id: &str, name: &str, props: Value) -> Project {
        let mut v = serde_json::json!({"id": id, "name": name});
        if let (Value::Object(o), Value::Object(p)) = (&mut v, props) {
            o.extend(p);
        }
        serde_json::from_value(v).unwrap()
    }

    fn rules(map: &str, default_vo: Option<&str>) -> VoRules {
        VoRules {
            property: "VO".into(),
            map: VoMap::parse(Path::new("/etc/caso/voms.json"), map).unwrap(),
            default_vo: default_vo.map(str::to_string),
        }
    }

    /// Defect 5: a project with no mapping has no VO (an error for it, made
    /// by the caller), unless default_vo is set; the property wins.
    #[test]
    fn vo_from_property_then_map_then_default() {
        let map = r#"{"vo.map": {"projects": ["p2", "named"]}}"#;
        let r = rules(map, None);
        let with_prop = project("p1", "one", serde_json::json!({"VO": "vo.prop"}));
        assert_eq!(
            r.vo_of(&with_prop).unwrap(),
            Some(("vo.prop".into(), VoSource::Property("VO".into())))
        );
        let mapped = project("p2", "two", serde_json::json!({"VO": "  "}));
        assert_eq!(r.vo_of(&mapped).unwrap().unwrap().0, "vo.map");
        let by_name = project("p3", "named", serde_json::json!({}));
        assert_eq!(r.vo_of(&by_name).unwrap().unwrap().0, "vo.map");
        let unmapped = project("p4", "four", serde_json::json!({"VO": 7}));
        assert_eq!(r.vo_of(&unmapped).unwrap(), None);
        assert_eq!(
            rules(map, Some("vo.default")).vo_of(&unmapped).unwrap(),
            Some(("vo.default".into(), VoSource::Default))
        );
    }
}
