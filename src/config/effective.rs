//! [`Effective`]: the merged configuration typed on demand. Each getter
//! parses one option's text by its [`Kind`]; errors name the option and where
//! its value came from, and never quote a value that holds a secret.
//! `--print-config` ([`Effective::render`]) shows the same values.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::{Choice, ConfigError, Kind, OptSpec, Origin, Owner, Schema};
use crate::secret::Secret;

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
    pub(super) schema: &'static Schema,
    pub(super) values: BTreeMap<(String, String), Setting>,
    pub(super) files: Vec<PathBuf>,
    pub(super) warnings: Vec<String>,
}

/// Typed parsing of one value; the error text is completed with the option and
/// its origin by the caller.
fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err(format!(
            "expected a boolean (true/false, yes/no, on/off, 1/0), found {s:?}"
        )),
    }
}

fn parse_int(s: &str, min: i64, max: i64) -> Result<i64, String> {
    let n: i64 = s
        .trim()
        .parse()
        .map_err(|_| format!("expected an integer, found {s:?}"))?;
    if n < min || n > max {
        return Err(format!("{n} is out of range {min}..={max}"));
    }
    Ok(n)
}

/// A finite float, as oslo's `FloatOpt` reads it (`float()`, less NaN and
/// the infinities, which no option of ours can use).
fn parse_float(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(x) if x.is_finite() => Ok(x),
        _ => Err(format!("expected a finite number, found {s:?}")),
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if let Ok(secs) = t.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(t)
        .map_err(|e| format!("expected seconds or a duration like 30s or 5m, found {s:?} ({e})"))
}

fn parse_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

fn find_choice<'c>(choices: &'c [Choice], word: &str) -> Option<(&'c Choice, bool)> {
    choices.iter().find_map(|c| {
        if c.name.eq_ignore_ascii_case(word) {
            Some((c, false))
        } else if c.aliases.iter().any(|a| a.eq_ignore_ascii_case(word)) {
            Some((c, true))
        } else {
            None
        }
    })
}

fn choice_names(choices: &[Choice]) -> String {
    choices
        .iter()
        .filter(|c| c.supported)
        .map(|c| c.name)
        .collect::<Vec<_>>()
        .join(", ")
}

impl Effective {
    /// The files read, in the order they were applied.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Deprecations, unknown options, ignored options: to be logged once
    /// logging is set up.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The final value of an option, if anything set it.
    pub fn get(&self, section: &str, key: &str) -> Option<&Setting> {
        self.values.get(&(section.to_string(), key.to_string()))
    }

    pub(super) fn invalid(&self, section: &str, key: &str, message: String) -> ConfigError {
        let setting = self.get(section, key);
        // The messages quote the value: not one that holds a secret.
        let message = if setting.is_some_and(|s| s.secret) {
            "invalid value (not shown: it holds a secret)".to_string()
        } else {
            message
        };
        ConfigError::Invalid {
            origin: setting.map(|s| s.origin.clone()).unwrap_or(Origin::Default),
            section: section.into(),
            key: key.into(),
            message,
        }
    }

    /// Checks every set option against its kind and collects the warnings of
    /// old spellings and unsupported choices.
    pub(super) fn check_kinds(&mut self) -> Result<(), ConfigError> {
        let mut warnings = Vec::new();
        for ((section, key), setting) in &self.values {
            let Some(spec) = self.schema.spec(section, key) else {
                continue;
            };
            let v = setting.value.as_str();
            let bad = |m: String| self.invalid(section, key, m);
            match &spec.kind {
                Kind::Bool => {
                    parse_bool(v).map_err(bad)?;
                }
                Kind::Int { min, max } if !v.trim().is_empty() => {
                    parse_int(v, *min, *max).map_err(bad)?;
                }
                Kind::Float if !v.trim().is_empty() => {
                    parse_float(v).map_err(bad)?;
                }
                Kind::Duration if !v.trim().is_empty() => {
                    parse_duration(v).map_err(bad)?;
                }
                Kind::Time if !v.trim().is_empty() => {
                    crate::time::Timestamp::parse(v).map_err(|e| bad(e.to_string()))?;
                }
                Kind::Choice(choices) if !v.trim().is_empty() => {
                    let (c, alias) = find_choice(choices, v.trim()).ok_or_else(|| {
                        bad(format!(
                            "{:?} is not one of {}",
                            v.trim(),
                            choice_names(choices)
                        ))
                    })?;
                    if alias {
                        warnings.push(format!(
                            "{}: [{section}] {key}: {:?} is an old spelling of {:?}; both work here",
                            setting.origin,
                            v.trim(),
                            c.name
                        ));
                    }
                    if !c.supported {
                        return Err(bad(format!(
                            "{:?} is not supported by this implementation (use one of {})",
                            c.name,
                            choice_names(choices)
                        )));
                    }
                }
                Kind::Choices(choices) => {
                    for word in parse_list(v) {
                        let (c, alias) = find_choice(choices, &word).ok_or_else(|| {
                            bad(format!("{word:?} is not one of {}", choice_names(choices)))
                        })?;
                        if alias {
                            warnings.push(format!(
                                "{}: [{section}] {key}: {word:?} is deprecated, use {:?}",
                                setting.origin, c.name
                            ));
                        }
                        if !c.supported {
                            warnings.push(format!(
                                "{}: [{section}] {key}: {:?} is not supported by this implementation (ignored)",
                                setting.origin, c.name
                            ));
                        }
                    }
                }
                _ => {}
            }
        }
        self.warnings.extend(warnings);
        Ok(())
    }

    /// The text of an option; None when unset or empty.
    pub(crate) fn text(&self, section: &str, key: &str) -> Option<&str> {
        self.get(section, key)
            .map(|s| s.value.trim())
            .filter(|v| !v.is_empty())
    }

    pub(crate) fn string(&self, section: &str, key: &str) -> Option<String> {
        self.text(section, key).map(str::to_string)
    }

    pub(crate) fn path(&self, section: &str, key: &str) -> Option<PathBuf> {
        self.text(section, key).map(PathBuf::from)
    }

    pub(crate) fn secret(&self, section: &str, key: &str) -> Option<Secret> {
        // Secrets are not trimmed beyond what the file format already did.
        self.get(section, key)
            .map(|s| s.value.as_str())
            .filter(|v| !v.is_empty())
            .map(Secret::new)
    }

    pub(crate) fn boolean(&self, section: &str, key: &str) -> Result<bool, ConfigError> {
        match self.get(section, key) {
            Some(s) => parse_bool(&s.value).map_err(|m| self.invalid(section, key, m)),
            None => Ok(false),
        }
    }

    pub(crate) fn int(&self, section: &str, key: &str) -> Result<Option<i64>, ConfigError> {
        self.text(section, key)
            .map(|v| self.int_of(section, key, v))
            .transpose()
    }

    /// `v` as the integer option's value, within the option's range.
    fn int_of(&self, section: &str, key: &str, v: &str) -> Result<i64, ConfigError> {
        let (min, max) = match self.schema.spec(section, key).map(|s| &s.kind) {
            Some(Kind::Int { min, max }) => (*min, *max),
            _ => (i64::MIN, i64::MAX),
        };
        parse_int(v, min, max).map_err(|m| self.invalid(section, key, m))
    }

    pub(crate) fn duration(
        &self,
        section: &str,
        key: &str,
    ) -> Result<Option<Duration>, ConfigError> {
        self.text(section, key)
            .map(|v| parse_duration(v).map_err(|m| self.invalid(section, key, m)))
            .transpose()
    }

    /// A timeout: unset, or more than zero (zero would fail every wait).
    pub(crate) fn timeout(
        &self,
        section: &str,
        key: &str,
    ) -> Result<Option<Duration>, ConfigError> {
        self.duration(section, key)?
            .map(|d| self.nonzero(section, key, d))
            .transpose()
    }

    /// A timeout of zero would fail every wait.
    fn nonzero(&self, section: &str, key: &str, d: Duration) -> Result<Duration, ConfigError> {
        if d.is_zero() {
            return Err(self.invalid(
                section,
                key,
                "must be more than 0 (unset it for the default)".into(),
            ));
        }
        Ok(d)
    }

    /// The text of an option the table gives a default, else that default:
    /// an empty value means the default, as if unset. A default with a `$`
    /// placeholder is interpolated when loading, so it is not one to fall
    /// back to here (such options, like `lock_path`, say what unset means).
    pub(crate) fn text_or_default(&self, section: &str, key: &str) -> Result<&str, ConfigError> {
        self.text(section, key)
            .or_else(|| {
                self.schema
                    .spec(section, key)
                    .and_then(|s| s.default)
                    .map(str::trim)
                    .filter(|d| !d.is_empty() && !d.contains('$'))
            })
            .ok_or_else(|| ConfigError::Missing {
                section: section.into(),
                key: key.into(),
                purpose: "(no default)".into(),
            })
    }

    /// [`Self::path`], else the table's default.
    pub(crate) fn path_or_default(&self, section: &str, key: &str) -> Result<PathBuf, ConfigError> {
        self.text_or_default(section, key).map(PathBuf::from)
    }

    /// [`Self::int`], else the table's default.
    pub(crate) fn int_or_default(&self, section: &str, key: &str) -> Result<i64, ConfigError> {
        self.int_of(section, key, self.text_or_default(section, key)?)
    }

    /// A [`Kind::Float`] option, else the table's default.
    pub(crate) fn float_or_default(&self, section: &str, key: &str) -> Result<f64, ConfigError> {
        parse_float(self.text_or_default(section, key)?).map_err(|m| self.invalid(section, key, m))
    }

    /// [`Self::duration`], else the table's default.
    pub(crate) fn duration_or_default(
        &self,
        section: &str,
        key: &str,
    ) -> Result<Duration, ConfigError> {
        parse_duration(self.text_or_default(section, key)?)
            .map_err(|m| self.invalid(section, key, m))
    }

    /// [`Self::timeout`], else the table's default.
    pub(crate) fn timeout_or_default(
        &self,
        section: &str,
        key: &str,
    ) -> Result<Duration, ConfigError> {
        self.nonzero(section, key, self.duration_or_default(section, key)?)
    }

    /// [`Self::choice`], else the table's default.
    pub(crate) fn choice_or_default(
        &self,
        section: &str,
        key: &str,
    ) -> Result<&'static str, ConfigError> {
        self.canonical(section, key, self.text_or_default(section, key)?)
    }

    pub(crate) fn time(
        &self,
        section: &str,
        key: &str,
    ) -> Result<Option<crate::time::Timestamp>, ConfigError> {
        self.text(section, key)
            .map(|v| {
                crate::time::Timestamp::parse(v)
                    .map_err(|e| self.invalid(section, key, e.to_string()))
            })
            .transpose()
    }

    pub(crate) fn list(&self, section: &str, key: &str) -> Vec<String> {
        self.get(section, key)
            .map(|s| parse_list(&s.value))
            .unwrap_or_default()
    }

    /// The canonical name of a [`Kind::Choice`] value.
    pub(crate) fn choice(
        &self,
        section: &str,
        key: &str,
    ) -> Result<Option<&'static str>, ConfigError> {
        self.text(section, key)
            .map(|v| self.canonical(section, key, v))
            .transpose()
    }

    /// The canonical name of `v`, a value of the [`Kind::Choice`] option.
    fn canonical(&self, section: &str, key: &str, v: &str) -> Result<&'static str, ConfigError> {
        let Some(Kind::Choice(choices)) = self.schema.spec(section, key).map(|s| &s.kind) else {
            return Err(self.invalid(section, key, "internal: not a choice option".into()));
        };
        find_choice(choices, v).map(|(c, _)| c.name).ok_or_else(|| {
            self.invalid(
                section,
                key,
                format!("{v:?} is not one of {}", choice_names(choices)),
            )
        })
    }

    /// A canonical choice name of the option as its type, through the type's
    /// `FromStr` over the table's names: aliases are already resolved, and a
    /// name without a meaning is a bug in the table.
    pub(crate) fn typed<T: std::str::FromStr>(
        &self,
        section: &str,
        key: &str,
        name: &str,
    ) -> Result<T, ConfigError> {
        name.parse().map_err(|_| {
            self.invalid(
                section,
                key,
                format!("internal: {name:?} has no meaning here"),
            )
        })
    }

    /// The canonical names of a [`Kind::Choices`] list, unsupported ones dropped.
    pub(crate) fn choices(
        &self,
        section: &str,
        key: &str,
    ) -> Result<Vec<&'static str>, ConfigError> {
        let Some(Kind::Choices(choices)) = self.schema.spec(section, key).map(|s| &s.kind) else {
            return Err(self.invalid(section, key, "internal: not a list of choices".into()));
        };
        let mut out = Vec::new();
        for word in self.list(section, key) {
            let (c, _) = find_choice(choices, &word).ok_or_else(|| {
                self.invalid(
                    section,
                    key,
                    format!("{word:?} is not one of {}", choice_names(choices)),
                )
            })?;
            if c.supported && !out.contains(&c.name) {
                out.push(c.name);
            }
        }
        Ok(out)
    }

    /// How `--print-config` shows a value: normalised by kind, secrets masked.
    fn display(&self, spec: &OptSpec, setting: &Setting) -> String {
        let v = setting.value.as_str();
        if setting.secret && !v.is_empty() {
            return "****".into();
        }
        match &spec.kind {
            Kind::Bool => parse_bool(v)
                .map(|b| b.to_string())
                .unwrap_or_else(|_| v.into()),
            Kind::List => parse_list(v).join(","),
            Kind::Choice(_) => self
                .choice(spec.section, spec.key)
                .ok()
                .flatten()
                .map(str::to_string)
                .unwrap_or_default(),
            Kind::Choices(_) => self
                .choices(spec.section, spec.key)
                .map(|c| c.join(","))
                .unwrap_or_default(),
            Kind::Duration => match parse_duration(v) {
                Ok(d) if !v.trim().is_empty() => humantime::format_duration(d).to_string(),
                _ => v.trim().into(),
            },
            _ => v.replace('\n', "\\n"),
        }
    }

    /// The `--print-config` text: every option of the program in file order,
    /// its effective value and where it came from.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "# {} {}: effective configuration\n",
            self.schema.program,
            env!("CARGO_PKG_VERSION")
        ));
        if self.files.is_empty() {
            out.push_str("# files read: none\n");
        }
        for f in &self.files {
            out.push_str(&format!("# file read: {}\n", f.display()));
        }
        out.push_str(
            "# Each line: option = value  # origin. (ours) marks options that are not in\n\
             # cASO 5.2.2 / SSM 4.0.0; secrets print as ****; #option = <unset> is unset.\n",
        );
        let mut section = "";
        for spec in self.schema.options {
            if spec.owner == Owner::Ignored {
                continue;
            }
            if spec.section != section {
                section = spec.section;
                out.push_str(&format!("\n[{section}]\n"));
            }
            let setting = self.get(spec.section, spec.key);
            let ours = match spec.owner {
                Owner::Ours => " (ours)",
                Owner::OurDefault if setting.is_none_or(|s| s.origin == Origin::Default) => {
                    " (default ours)"
                }
                _ => "",
            };
            match setting {
                Some(s) => {
                    let shown = self.display(spec, s);
                    let via = if s.raw != s.value && spec.kind.is_plain() {
                        format!(" from {:?}", s.raw)
                    } else {
                        String::new()
                    };
                    let line = format!("{} = {shown}", spec.key);
                    out.push_str(&format!("{line:<48}  # {}{via}{ours}\n", s.origin));
                }
                None => {
                    let line = format!("#{} = <unset>", spec.key);
                    out.push_str(&format!("{line:<48}  # built-in default{ours}\n"));
                }
            }
        }
        out
    }
}

impl Kind {
    /// Kinds whose raw text may be shown (not secrets).
    fn is_plain(&self) -> bool {
        !matches!(self, Kind::Secret)
    }
}
