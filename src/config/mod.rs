//! Configuration of both programs: the files sites already have, read unchanged.
//!
//! Layers, lowest first, merged with figment: built-in defaults (cASO 5.2.2 /
//! SSM 4.0.0 plus our own options), files (later wins), environment
//! (`CASO_<SECTION>__<KEY>`, `SSM_<SECTION>__<KEY>`), command-line flags. Every
//! value is kept as text with its [`Origin`] until the final merge; then oslo
//! `$name` interpolation runs (caso.conf only), every known option is checked
//! against its kind, and [`caso::CasoSettings`] / [`sender::SenderSettings`]
//! are built from the result. `--print-config` renders the same [`Effective`]
//! view, so what is printed is what the program uses.

pub mod caso;
mod effective;
pub mod ini;
pub mod interpolate;
#[cfg(test)]
mod props;
pub mod sender;
pub mod voms;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};

pub use caso::load_caso;
pub use ini::{Dialect, IniDocument, IniProvider};
pub use sender::load_sender;

/// Everything that can be wrong with configuration. All of these end the
/// program with exit code 2 (see [`crate::exit::code_for`]).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file that cannot be read: names the path and the OS error.
    #[error("{}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// A file over [`MAX_FILE_BYTES`].
    #[error("{}: larger than {limit} bytes: not a configuration file", path.display())]
    TooLarge { path: PathBuf, limit: u64 },
    /// An invalid voms.json.
    #[error(transparent)]
    VoMap(#[from] voms::VoMapError),
    /// A malformed line.
    #[error("{}:{line}: {message}", path.display())]
    Syntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// A value that does not fit its option.
    #[error("{origin}: [{section}] {key}: {message}")]
    Invalid {
        origin: Origin,
        section: String,
        key: String,
        message: String,
    },
    /// A value the program needs and nobody set.
    #[error("[{section}] {key} is required {purpose}")]
    Missing {
        section: String,
        key: String,
        purpose: String,
    },
    /// An unknown option or section under `--strict-config`.
    #[error("{origin}: {what} (an error because of --strict-config)")]
    Unknown { origin: Origin, what: String },
    /// A configuration style we cannot honour (e.g. SSM's BDII discovery).
    #[error("{0}")]
    Unsupported(String),
    /// figment itself failed (should not happen with our providers).
    #[error("configuration: {0}")]
    Figment(String),
}

/// The largest configuration file read: caso.conf, a `--config-dir` file,
/// sender.cfg, voms.json (16 MiB; real ones are a few KiB).
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Reads a configuration file, at most [`MAX_FILE_BYTES`] (+1 to tell a
/// file that is too large), so `/dev/zero` or a runaway file cannot fill memory.
pub(crate) fn read_capped(path: &Path) -> Result<Vec<u8>, ConfigError> {
    crate::access::read_capped(path, MAX_FILE_BYTES).map_err(|error| {
        if error.kind() == std::io::ErrorKind::FileTooLarge {
            ConfigError::TooLarge {
                path: path.to_path_buf(),
                limit: MAX_FILE_BYTES,
            }
        } else {
            ConfigError::Read {
                path: path.to_path_buf(),
                error,
            }
        }
    })
}

/// Where a value came from, for messages and `--print-config`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Built-in default (cASO 5.2.2 / SSM 4.0.0, or ours).
    Default,
    /// A line of a configuration file.
    File { path: PathBuf, line: usize },
    /// An environment variable.
    Env { var: String },
    /// A command-line flag.
    Flag { flag: String },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("built-in default"),
            Origin::File { path, line } => write!(f, "{}:{line}", path.display()),
            Origin::Env { var } => write!(f, "environment variable {var}"),
            Origin::Flag { flag } => write!(f, "command-line flag {flag}"),
        }
    }
}

use crate::secret::Secret;

/// Whose option this is (shown by `--print-config` and in the README).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Owner {
    /// Same name, meaning and default as cASO 5.2.2 / SSM 4.0.0.
    Upstream,
    /// Ours: not in cASO / SSM.
    Ours,
    /// Upstream option whose upstream has no default; the default is ours.
    OurDefault,
    /// Accepted so existing files load, but has no effect here.
    Ignored,
}

/// One accepted value of an enumerated option.
#[derive(Debug)]
pub(crate) struct Choice {
    pub name: &'static str,
    /// Old spellings: accepted with a deprecation warning.
    pub aliases: &'static [&'static str],
    /// false: a cASO value we do not implement (warned about and dropped).
    pub supported: bool,
}

/// How an option's text is typed.
#[derive(Debug)]
pub(crate) enum Kind {
    Str,
    Secret,
    Path,
    Bool,
    Int {
        min: i64,
        max: i64,
    },
    /// Whole seconds or a humantime span (`30s`, `5m`).
    Duration,
    /// A date/time [`crate::time::Timestamp`] parses.
    Time,
    /// Comma-separated list of strings.
    List,
    Choice(&'static [Choice]),
    Choices(&'static [Choice]),
}

/// One option: where it lives, its kind and default.
#[derive(Debug)]
pub(crate) struct OptSpec {
    pub section: &'static str,
    pub key: &'static str,
    pub kind: Kind,
    pub default: Option<&'static str>,
    pub owner: Owner,
    pub help: &'static str,
}

/// An option of cASO's or SSM's own.
pub(crate) const fn opt(
    section: &'static str,
    key: &'static str,
    kind: Kind,
    default: Option<&'static str>,
    help: &'static str,
) -> OptSpec {
    OptSpec {
        section,
        key,
        kind,
        default,
        owner: Owner::Upstream,
        help,
    }
}

/// An option of ours, not in cASO 5.2.2 / SSM 4.0.0.
pub(crate) const fn ours(
    section: &'static str,
    key: &'static str,
    kind: Kind,
    default: Option<&'static str>,
    help: &'static str,
) -> OptSpec {
    OptSpec {
        section,
        key,
        kind,
        default,
        owner: Owner::Ours,
        help,
    }
}

/// An old option name that still works, with one warning.
#[derive(Debug)]
pub(crate) struct Rename {
    pub from: (&'static str, &'static str),
    pub to: (&'static str, &'static str),
}

/// Everything the generic loader needs to know about one program.
#[derive(Debug)]
pub(crate) struct Schema {
    pub program: &'static str,
    pub dialect: Dialect,
    pub env_prefix: &'static str,
    pub options: &'static [OptSpec],
    pub renames: &'static [Rename],
    /// Whole sections that are accepted and ignored (e.g. cASO's prometheus).
    pub ignored_sections: &'static [&'static str],
    /// oslo `$name` interpolation (caso.conf only).
    pub interpolate: bool,
}

impl Schema {
    pub(crate) fn spec(&self, section: &str, key: &str) -> Option<&'static OptSpec> {
        self.options
            .iter()
            .find(|o| o.section == section && o.key == key)
    }

    fn has_section(&self, section: &str) -> bool {
        self.options.iter().any(|o| o.section == section)
            || self.ignored_sections.contains(&section)
            || self.renames.iter().any(|r| r.from.0 == section)
    }

    fn rename(&self, section: &str, key: &str) -> Option<&'static Rename> {
        self.renames
            .iter()
            .find(|r| r.from.0 == section && (r.from.1 == key || r.from.1 == "*"))
    }
}

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

/// One final value.
#[derive(Clone, Debug)]
pub struct Setting {
    /// After interpolation.
    pub value: String,
    /// As written, before interpolation.
    pub raw: String,
    pub origin: Origin,
    /// A secret option, or a value interpolated from one: never shown.
    pub secret: bool,
}

/// The merged, interpolated and kind-checked configuration of one program.
#[derive(Debug)]
pub struct Effective {
    schema: &'static Schema,
    values: BTreeMap<(String, String), Setting>,
    files: Vec<PathBuf>,
    warnings: Vec<String>,
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

/// The README table of options that are ours or have our default (a test
/// keeps README.md in sync with it).
pub fn our_options_markdown() -> String {
    let mut out = String::from("| Program | Option | Default | Meaning |\n|---|---|---|---|\n");
    for schema in [&caso::SCHEMA, &sender::SCHEMA] {
        for o in schema.options {
            let mark = match o.owner {
                Owner::Ours => "",
                Owner::OurDefault => " (SSM option, our default)",
                _ => continue,
            };
            out.push_str(&format!(
                "| {} | `[{}] {}` | `{}` | {}{mark} |\n",
                schema.program,
                o.section,
                o.key,
                o.default.unwrap_or("unset"),
                o.help
            ));
        }
    }
    out
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

#[cfg(test)]
mod tests {
    #[test]
    fn readme_lists_our_options() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
            .unwrap_or_default();
        let table = super::our_options_markdown();
        assert!(
            readme.contains(&table),
            "README.md must contain this table of our options:\n{table}"
        );
    }
}
