//! The deprecated voms.json: `{"<vo>": {"projects": [...]}}`, with the old
//! keys `tenants` (a list) and `tenant` (one) read when `projects` is absent,
//! as cASO does. Loaded with the configuration, before any request: a file
//! that cannot be read or says something impossible (an empty VO name, an
//! empty project name) is a configuration error naming the file and the key.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::ConfigError;
use crate::time::excerpt;

/// Project -> VO, from voms.json.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VoMap {
    path: PathBuf,
    by_project: HashMap<String, String>,
    /// Projects mapped to more than one VO: never guessed.
    conflicts: HashMap<String, Vec<String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum VoMapError {
    #[error("cannot read VO mapping file {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("invalid VO mapping file {path}: {detail}")]
    Invalid { path: PathBuf, detail: String },
}

/// Whether `name` can be a VO (an FQAN in the records) or a project name:
/// not empty, no surrounding whitespace, no control characters (a newline
/// would end the APEL record field).
fn bad_name(name: &str) -> Option<&'static str> {
    if name.trim().is_empty() {
        Some("is empty")
    } else if name.trim() != name {
        Some("has leading or trailing whitespace")
    } else if name.chars().any(char::is_control) {
        Some("contains a control character")
    } else {
        None
    }
}

impl VoMap {
    /// Loads the map; a missing file is an empty map (as cASO).
    pub fn load(path: &Path) -> Result<VoMap, VoMapError> {
        let invalid = |detail: String| VoMapError::Invalid {
            path: path.to_path_buf(),
            detail,
        };
        match super::read_capped(path) {
            Ok(bytes) => {
                let text =
                    String::from_utf8(bytes).map_err(|_| invalid("not UTF-8 text".into()))?;
                VoMap::parse(path, &text)
            }
            Err(ConfigError::Read { error, .. })
                if error.kind() == std::io::ErrorKind::NotFound =>
            {
                Ok(VoMap {
                    path: path.to_path_buf(),
                    ..VoMap::default()
                })
            }
            Err(ConfigError::Read { error, .. }) => Err(VoMapError::Read {
                path: path.to_path_buf(),
                error,
            }),
            Err(other) => Err(invalid(other.to_string())),
        }
    }

    pub fn parse(path: &Path, text: &str) -> Result<VoMap, VoMapError> {
        let invalid = |detail: String| VoMapError::Invalid {
            path: path.to_path_buf(),
            detail,
        };
        let root: Value = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let Value::Object(vos) = root else {
            return Err(invalid("expected a JSON object of VOs".into()));
        };
        let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (vo, entry) in &vos {
            // Quoted in errors: a short excerpt of a hostile key.
            let vo_q = excerpt(vo);
            if let Some(why) = bad_name(vo) {
                return Err(invalid(format!("VO {vo_q:?}: the VO name {why}")));
            }
            let Value::Object(entry) = entry else {
                return Err(invalid(format!("VO {vo_q:?}: expected an object")));
            };
            let list = |key: &str| -> Result<Vec<String>, VoMapError> {
                let items = match entry.get(key) {
                    None | Some(Value::Null) => Vec::new(),
                    Some(Value::Array(items)) => items
                        .iter()
                        .map(|i| {
                            i.as_str().map(str::to_string).ok_or_else(|| {
                                invalid(format!("VO {vo_q:?}: {key} must list strings"))
                            })
                        })
                        .collect::<Result<_, _>>()?,
                    Some(Value::String(s)) if key == "tenant" => vec![s.clone()],
                    Some(_) => {
                        return Err(invalid(format!("VO {vo_q:?}: {key} has the wrong type")));
                    }
                };
                for (i, p) in items.iter().enumerate() {
                    if let Some(why) = bad_name(p) {
                        return Err(invalid(format!(
                            "VO {vo_q:?}: {key}[{i}]: the project name {why}"
                        )));
                    }
                }
                Ok(items)
            };
            let projects = if entry.contains_key("projects") {
                list("projects")?
            } else {
                let mut old = list("tenants")?;
                old.extend(list("tenant")?);
                if !old.is_empty() {
                    tracing::warn!(
                        file = %path.display(),
                        vo,
                        "VO mapping uses the deprecated \"tenant\"/\"tenants\" keys: use \"projects\""
                    );
                }
                old
            };
            if projects.is_empty() {
                tracing::warn!(file = %path.display(), vo, "no project mapping found for this VO");
            }
            for p in projects {
                let vos = seen.entry(p).or_default();
                if !vos.contains(vo) {
                    vos.push(vo.clone());
                }
            }
        }
        let mut map = VoMap {
            path: path.to_path_buf(),
            ..VoMap::default()
        };
        for (project, mut vos) in seen {
            if vos.len() == 1 {
                map.by_project.insert(project, vos.remove(0));
            } else {
                map.conflicts.insert(project, vos);
            }
        }
        Ok(map)
    }

    /// The file the map came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The VO of a project, looked up by id, then by name.
    pub fn lookup(&self, id: &str, name: &str) -> Result<Option<&str>, String> {
        for key in [id, name] {
            if let Some(vos) = self.conflicts.get(key) {
                return Err(format!(
                    "{} maps project {key:?} to several VOs ({})",
                    self.path.display(),
                    vos.join(", ")
                ));
            }
            if let Some(vo) = self.by_project.get(key) {
                return Ok(Some(vo));
            }
        }
        Ok(None)
    }

    pub fn is_empty(&self) -> bool {
        self.by_project.is_empty() && self.conflicts.is_empty()
    }
}
