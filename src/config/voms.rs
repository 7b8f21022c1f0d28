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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_voms_json_maps_projects() {
        let text = include_str!("../../tests/fixtures/config/voms.json");
        let map = VoMap::parse(Path::new("voms.json"), text).unwrap();
        assert_eq!(map.lookup("ops", "x").unwrap(), Some("ops"));
        assert_eq!(map.lookup("x", "bar").unwrap(), Some("fedcloud.egi.eu"));
        assert_eq!(map.lookup("x", "y").unwrap(), None);
    }

    #[test]
    fn old_keys_and_projects_key_wins() {
        let map = VoMap::parse(
            Path::new("m.json"),
            r#"{"a": {"tenant": "t1"}, "b": {"tenants": ["t2", "t3"], "tenant": "t4"},
                "c": {"projects": ["p1"], "tenants": ["ignored"]}, "d": {}}"#,
        )
        .unwrap();
        for (p, vo) in [
            ("t1", "a"),
            ("t2", "b"),
            ("t3", "b"),
            ("t4", "b"),
            ("p1", "c"),
        ] {
            assert_eq!(map.lookup(p, "").unwrap(), Some(vo), "{p}");
        }
        assert_eq!(map.lookup("ignored", "").unwrap(), None);
    }

    #[test]
    fn a_project_in_two_vos_is_an_error_not_a_guess() {
        let map = VoMap::parse(
            Path::new("m.json"),
            r#"{"a": {"projects": ["p"]}, "b": {"projects": ["p"]}}"#,
        )
        .unwrap();
        let err = map.lookup("p", "name").unwrap_err();
        assert!(err.contains("several VOs (a, b)"), "{err}");
    }

    #[test]
    fn bad_files_name_the_file() {
        for text in ["[1]", "{\"a\": 1}", "{\"a\": {\"projects\": [1]}}", "{"] {
            let e = VoMap::parse(Path::new("/x/voms.json"), text).unwrap_err();
            assert!(
                e.to_string()
                    .starts_with("invalid VO mapping file /x/voms.json: "),
                "{e}"
            );
        }
        let missing = VoMap::load(Path::new("/nonexistent/voms.json")).unwrap();
        assert!(missing.is_empty());
    }

    #[test]
    fn impossible_names_name_the_key() {
        for (text, want) in [
            (
                r#"{"": {"projects": ["p"]}}"#,
                "VO \"\": the VO name is empty",
            ),
            (r#"{" ops": {}}"#, "VO \" ops\": the VO name has leading"),
            (
                r#"{"ops": {"projects": ["\t"]}}"#,
                "VO \"ops\": projects[0]: the project name is empty",
            ),
            (
                r#"{"ops": {"tenant": "a\u0000b"}}"#,
                "VO \"ops\": tenant[0]: the project name contains a control",
            ),
        ] {
            let e = VoMap::parse(Path::new("/x/voms.json"), text)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
        let long = format!("{{{:?}: 1}}", "v".repeat(100_000));
        let e = VoMap::parse(Path::new("/x/voms.json"), &long)
            .unwrap_err()
            .to_string();
        assert!(
            e.len() < 200,
            "a hostile key is quoted short: {} bytes",
            e.len()
        );
    }
}
