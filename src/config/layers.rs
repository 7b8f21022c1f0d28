//! Reading one program's configuration into layers, lowest first: built-in
//! defaults (the schema's table, plus run-time ones like `CASO_LOCK_PATH`),
//! files (later wins), environment, command-line flags; merged with figment.
//! Unknown and renamed options are handled here (warnings, or errors under
//! `--strict-config`); then interpolation and the kind check make the
//! [`Effective`] configuration.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};

use super::ini::{self, Dialect, IniDocument, IniProvider};
use super::{ConfigError, Effective, Kind, Origin, Owner, Schema, Setting, interpolate};

/// A value set on the command line (one layer above the environment).
#[derive(Clone, Debug)]
pub struct FlagValue {
    pub section: &'static str,
    pub key: &'static str,
    pub value: String,
    pub flag: &'static str,
}

/// What to read, in order.
#[derive(Clone, Debug, Default)]
pub(crate) struct Sources {
    pub files: Vec<PathBuf>,
    /// A snapshot of the environment (injected so tests need not mutate theirs).
    pub env: Vec<(String, String)>,
    /// Built-in defaults computed at run time, e.g. cASO's `CASO_LOCK_PATH`.
    pub dynamic_defaults: Vec<(&'static str, &'static str, String, Origin)>,
    pub flags: Vec<FlagValue>,
    pub strict: bool,
    /// Warnings found before loading (e.g. no default file found).
    pub notes: Vec<String>,
}

/// A figment layer holding text values with their origins.
struct Layer {
    name: String,
    values: BTreeMap<(String, String), (String, Origin)>,
    sections: BTreeSet<String>,
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name.clone())
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut root = Dict::new();
        for s in &self.sections {
            root.insert(s.clone(), Value::from(Dict::new()));
        }
        for ((s, k), (v, _)) in &self.values {
            if let Value::Dict(_, d) = root
                .entry(s.clone())
                .or_insert_with(|| Value::from(Dict::new()))
            {
                d.insert(k.clone(), Value::from(v.clone()));
            }
        }
        Ok(Profile::Default.collect(root))
    }
}

/// Collects warnings, or turns unknown options into errors under `--strict-config`.
struct Checker<'a> {
    schema: &'a Schema,
    strict: bool,
    warnings: Vec<String>,
}

impl Checker<'_> {
    fn unknown(&mut self, origin: Origin, what: String) -> Result<(), ConfigError> {
        if self.strict {
            return Err(ConfigError::Unknown { origin, what });
        }
        self.warnings.push(format!(
            "{origin}: {what} (ignored; --strict-config makes this an error)"
        ));
        Ok(())
    }

    /// Applies renames and reports unknown or ignored options; returns the
    /// (section, key) to store the value under, or None to drop it.
    fn admit(
        &mut self,
        section: &str,
        key: &str,
        origin: &Origin,
        value: &str,
    ) -> Result<Option<(String, String)>, ConfigError> {
        let (section, key) = match self.schema.rename(section, key) {
            Some(r) => {
                let to_key = if r.to.1 == "*" { key } else { r.to.1 };
                self.warnings.push(format!(
                    "{origin}: [{section}] {key} is deprecated, use [{}] {to_key}",
                    r.to.0
                ));
                (r.to.0, to_key)
            }
            None => (section, key),
        };
        if self.schema.ignored_sections.contains(&section) {
            return Ok(None);
        }
        match self.schema.spec(section, key) {
            Some(spec) if spec.owner == Owner::Ignored => {
                if spec.default != Some(value) {
                    self.warnings.push(format!(
                        "{origin}: [{section}] {key} has no effect in this implementation (ignored)"
                    ));
                }
                Ok(None)
            }
            Some(_) => Ok(Some((section.to_string(), key.to_string()))),
            None => {
                let what = if self.schema.has_section(section) {
                    format!("unknown option [{section}] {key}")
                } else {
                    format!("unknown option {key} in unknown section [{section}]")
                };
                self.unknown(origin.clone(), what)?;
                Ok(None)
            }
        }
    }
}

/// An unknown section is reported once, at its header; its options are then
/// skipped silently.
fn check_section(
    check: &mut Checker<'_>,
    path: &Path,
    h: &ini::IniSection,
) -> Result<(), ConfigError> {
    if check.schema.has_section(&h.name) {
        return Ok(());
    }
    check.unknown(
        Origin::File {
            path: path.to_path_buf(),
            line: h.line,
        },
        format!("unknown section [{}]", h.name),
    )
}

/// Loads one program's configuration from `sources`.
pub(crate) fn load(schema: &'static Schema, sources: Sources) -> Result<Effective, ConfigError> {
    let mut check = Checker {
        schema,
        strict: sources.strict,
        warnings: sources.notes,
    };
    let mut layers = Vec::new();

    let mut defaults = Layer {
        name: "built-in defaults".into(),
        values: BTreeMap::new(),
        sections: BTreeSet::new(),
    };
    for o in schema.options {
        if let Some(d) = o.default.filter(|_| o.owner != Owner::Ignored) {
            defaults.values.insert(
                (o.section.into(), o.key.into()),
                (d.into(), Origin::Default),
            );
        }
    }
    for (s, k, v, origin) in sources.dynamic_defaults {
        defaults.values.insert((s.into(), k.into()), (v, origin));
    }
    layers.push(defaults);

    // Each file becomes an IniProvider over its admitted options (renamed,
    // unknown and ignored ones dropped); the lines give origins after the merge.
    let mut file_docs = Vec::new();
    for path in &sources.files {
        let known = |s: &str, k: &str| schema.spec(s, k).is_some() || schema.rename(s, k).is_some();
        let doc = IniDocument::read_known(path, schema.dialect, &known)?;
        let mut admitted = IniDocument {
            path: path.clone(),
            sections: Vec::new(),
            entries: Vec::new(),
        };
        // Checked in line order, so --strict-config stops at the first problem.
        let mut headers = doc.sections.iter().peekable();
        for e in &doc.entries {
            while let Some(h) = headers.next_if(|h| h.line < e.line) {
                check_section(&mut check, path, h)?;
            }
            if !schema.has_section(&e.section) {
                continue;
            }
            let origin = Origin::File {
                path: path.clone(),
                line: e.line,
            };
            if let Some((section, key)) = check.admit(&e.section, &e.key, &origin, &e.value)? {
                admitted.entries.push(ini::IniEntry {
                    section,
                    key,
                    value: e.value.clone(),
                    line: e.line,
                });
            }
        }
        for h in headers {
            check_section(&mut check, path, h)?;
        }
        if schema.dialect == Dialect::ConfigParser {
            // configparser: a section may exist without options ([broker] alone).
            admitted.sections = doc
                .sections
                .iter()
                .filter(|h| schema.has_section(&h.name))
                .cloned()
                .collect();
        }
        file_docs.push(admitted);
    }

    let mut env = Layer {
        name: "environment".into(),
        values: BTreeMap::new(),
        sections: BTreeSet::new(),
    };
    let mut env_vars = sources.env;
    env_vars.sort();
    for (var, value) in env_vars {
        let Some(rest) = var.strip_prefix(schema.env_prefix) else {
            continue;
        };
        let Some((section, key)) = rest.split_once("__") else {
            continue;
        };
        let section = if section.eq_ignore_ascii_case("DEFAULT") && schema.dialect == Dialect::Oslo
        {
            "DEFAULT".to_string()
        } else {
            section.to_lowercase()
        };
        let key = key.to_lowercase();
        let origin = Origin::Env { var: var.clone() };
        if let Some((s, k)) = check.admit(&section, &key, &origin, &value)? {
            env.values.insert((s, k), (value, origin));
        }
    }
    layers.push(env);

    let mut flags = Layer {
        name: "command line".into(),
        values: BTreeMap::new(),
        sections: BTreeSet::new(),
    };
    for f in sources.flags {
        flags.values.insert(
            (f.section.into(), f.key.into()),
            (
                f.value,
                Origin::Flag {
                    flag: f.flag.into(),
                },
            ),
        );
    }
    layers.push(flags);

    // Merge with figment, lowest layer first; the tag of each winning value
    // names the provider it came from.
    let mut figment = Figment::from(&layers[0]);
    let mut file_lines: HashMap<PathBuf, BTreeMap<(String, String), usize>> = HashMap::new();
    for doc in file_docs {
        let lines = doc
            .last_values()
            .into_iter()
            .map(|(k, (_, line))| (k, line))
            .collect();
        file_lines.insert(doc.path.clone(), lines);
        figment = figment.merge(IniProvider::document(doc));
    }
    for layer in &layers[1..] {
        figment = figment.merge(layer);
    }
    let data = figment
        .data()
        .map_err(|e| ConfigError::Figment(e.to_string()))?;
    let mut values = BTreeMap::new();
    if let Some(root) = data.get(&Profile::Default) {
        for (section, v) in root {
            let Value::Dict(_, dict) = v else { continue };
            for (key, value) in dict {
                let Some(text) = value.as_str() else { continue };
                let at = (section.clone(), key.clone());
                let meta = figment.get_metadata(value.tag());
                let file = meta
                    .and_then(|m| m.source.as_ref())
                    .and_then(|s| s.file_path());
                let origin = match file {
                    Some(path) => Origin::File {
                        path: path.to_path_buf(),
                        line: file_lines
                            .get(path)
                            .and_then(|l| l.get(&at))
                            .copied()
                            .unwrap_or(0),
                    },
                    None => meta
                        .and_then(|m| layers.iter().find(|l| l.name == m.name))
                        .and_then(|l| l.values.get(&at))
                        .map(|(_, o)| o.clone())
                        .unwrap_or(Origin::Default),
                };
                let secret = schema
                    .spec(&at.0, &at.1)
                    .is_some_and(|o| matches!(o.kind, Kind::Secret));
                values.insert(
                    at,
                    Setting {
                        value: text.to_string(),
                        raw: text.to_string(),
                        origin,
                        secret,
                    },
                );
            }
        }
    }

    if schema.interpolate {
        interpolate::interpolate_all(schema, &mut values)?;
    }

    let mut eff = Effective {
        schema,
        values,
        files: sources.files,
        warnings: check.warnings,
    };
    eff.check_kinds()?;
    let mut seen = BTreeSet::new();
    eff.warnings.retain(|w| seen.insert(w.clone()));
    Ok(eff)
}

/// Sorted `*.conf` files of a `--config-dir`, as oslo.config reads them.
pub(crate) fn conf_files_in(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let read = std::fs::read_dir(dir).map_err(|error| ConfigError::Read {
        path: dir.to_path_buf(),
        error,
    })?;
    let mut files = Vec::new();
    for entry in read {
        let entry = entry.map_err(|error| ConfigError::Read {
            path: dir.to_path_buf(),
            error,
        })?;
        let p = entry.path();
        if p.extension().is_some_and(|e| e == "conf") && p.is_file() {
            files.push(p);
        }
    }
    files.sort();
    Ok(files)
}
