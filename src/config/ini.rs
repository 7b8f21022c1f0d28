//! INI reading for the two dialects sites already have, and a figment provider.
//!
//! - [`Dialect::Oslo`]: what oslo.config reads for `caso.conf` (its
//!   `iniparser.BaseParser`): the separator is whichever of `=`/`:` comes first,
//!   a value in matching quotes loses them, an indented line continues the
//!   previous value (even one starting with `#`), a blank or comment line ends
//!   it, `#`/`;` only start a comment at column 0 (`key = a # b` keeps `a # b`),
//!   keys are case-sensitive, section names other than `DEFAULT` are lowercased.
//! - [`Dialect::ConfigParser`]: Python's `configparser` for `sender.cfg`: keys are
//!   lowercased, quotes are kept, comment lines may be indented, a continuation
//!   must be indented deeper than its key and may follow blank lines.
//!
//! We are more lenient than Python in two ways, both documented: a UTF-8 BOM is
//! skipped, and a duplicate key or section in one file is merged (last value wins)
//! instead of being refused by `configparser`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider, Source};

use super::ConfigError;

/// Which Python parser a file is written for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// oslo.config (`caso.conf`).
    Oslo,
    /// Python `configparser` (`sender.cfg`).
    ConfigParser,
}

/// One `key = value` of a file, after continuation lines are joined.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IniEntry {
    pub section: String,
    pub key: String,
    pub value: String,
    /// 1-based line of the key.
    pub line: usize,
}

/// A `[section]` header and its 1-based line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IniSection {
    pub name: String,
    pub line: usize,
}

/// A parsed file: every assignment in file order (duplicates kept; the last wins
/// when the document becomes a provider).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IniDocument {
    pub path: PathBuf,
    pub sections: Vec<IniSection>,
    pub entries: Vec<IniEntry>,
}

/// Which `(section, key)` names an option: lets a malformed line's error
/// name the option it starts with (anything else on it may be a secret).
pub type KnownOption<'a> = &'a dyn Fn(&str, &str) -> bool;

/// No option is known: a malformed line's error shows nothing of it.
fn none_known(_: &str, _: &str) -> bool {
    false
}

impl IniDocument {
    /// Reads and parses `path`; an unreadable file is an error naming the path
    /// and the OS error.
    pub fn read(path: &Path, dialect: Dialect) -> Result<Self, ConfigError> {
        Self::read_known(path, dialect, &none_known)
    }

    /// [`IniDocument::read`], naming the option a malformed line starts with
    /// when `known` says it is one.
    pub fn read_known(
        path: &Path,
        dialect: Dialect,
        known: KnownOption<'_>,
    ) -> Result<Self, ConfigError> {
        let bytes = super::read_capped(path)?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let line = 1 + e.as_bytes()[..e.utf8_error().valid_up_to()]
                .iter()
                .filter(|b| **b == b'\n')
                .count();
            ConfigError::Syntax {
                path: path.to_path_buf(),
                line,
                message: "not valid UTF-8".into(),
            }
        })?;
        parse_known(&text, path, dialect, known)
    }

    /// The value each `(section, key)` ends with and the line it came from.
    pub fn last_values(&self) -> BTreeMap<(String, String), (String, usize)> {
        let mut out = BTreeMap::new();
        for e in &self.entries {
            out.insert(
                (e.section.clone(), e.key.clone()),
                (e.value.clone(), e.line),
            );
        }
        out
    }
}

/// Parses `text` (the contents of `path`, used in error messages).
pub fn parse(text: &str, path: &Path, dialect: Dialect) -> Result<IniDocument, ConfigError> {
    parse_known(text, path, dialect, &none_known)
}

/// [`parse`] with the options a malformed line's error may name.
pub fn parse_known(
    text: &str,
    path: &Path,
    dialect: Dialect,
    known: KnownOption<'_>,
) -> Result<IniDocument, ConfigError> {
    let mut p = Parser {
        path,
        dialect,
        known,
        doc: IniDocument {
            path: path.to_path_buf(),
            sections: Vec::new(),
            entries: Vec::new(),
        },
        section: None,
        pending: None,
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (i, raw) in text.split('\n').enumerate() {
        p.line(i + 1, raw)?;
    }
    p.flush();
    Ok(p.doc)
}

/// An assignment whose continuation lines may still follow.
struct Pending {
    key: String,
    parts: Vec<String>,
    line: usize,
    indent: usize,
    /// configparser: blank lines seen since the last part (kept only when a
    /// continuation follows).
    blanks: usize,
}

struct Parser<'a> {
    path: &'a Path,
    dialect: Dialect,
    known: KnownOption<'a>,
    doc: IniDocument,
    section: Option<String>,
    pending: Option<Pending>,
}

impl Parser<'_> {
    fn err(&self, line: usize, message: impl Into<String>) -> ConfigError {
        ConfigError::Syntax {
            path: self.path.to_path_buf(),
            line,
            message: message.into(),
        }
    }

    /// A line without separator may be a secret on its own (`password
    /// Pw-S3cr3t`, a pasted token): its error names the option it starts
    /// with only when that is a known option, and never shows the rest.
    fn malformed(&self, content: &str) -> String {
        let first = content.split_whitespace().next().unwrap_or("");
        let first = match self.dialect {
            Dialect::Oslo => first.to_string(),
            Dialect::ConfigParser => first.to_lowercase(),
        };
        match &self.section {
            Some(section) if (self.known)(section, &first) => format!(
                "[{section}] {first}: expected '{first} = value' or '{first}: value' (the rest of the line is not shown)"
            ),
            _ => "expected 'key = value' or 'key: value' (the line is not shown: it may hold a secret)"
                .to_string(),
        }
    }

    fn flush(&mut self) {
        if let (Some(p), Some(section)) = (self.pending.take(), self.section.as_ref()) {
            let mut value = p.parts.join("\n");
            if self.dialect == Dialect::ConfigParser {
                value.truncate(value.trim_end().len());
            }
            self.doc.entries.push(IniEntry {
                section: section.clone(),
                key: p.key,
                value,
                line: p.line,
            });
        }
    }

    fn line(&mut self, no: usize, raw: &str) -> Result<(), ConfigError> {
        // Both Python parsers strip trailing whitespace, which also drops the
        // '\r' of CRLF files.
        let line = raw.trim_end();
        let content = line.trim_start();
        let indent = line.len() - content.len();
        if content.is_empty() {
            match self.dialect {
                Dialect::Oslo => self.flush(),
                Dialect::ConfigParser => {
                    if let Some(p) = self.pending.as_mut() {
                        p.blanks += 1;
                    }
                }
            }
            return Ok(());
        }
        match self.dialect {
            Dialect::Oslo => {
                if indent > 0 {
                    return match self.pending.as_mut() {
                        Some(p) => {
                            p.parts.push(content.to_string());
                            Ok(())
                        }
                        None => Err(self.err(no, "unexpected continuation line")),
                    };
                }
                self.flush();
                if content.starts_with('#') || content.starts_with(';') {
                    return Ok(());
                }
            }
            Dialect::ConfigParser => {
                if content.starts_with('#') || content.starts_with(';') {
                    // A comment ends a multi-line value in configparser.
                    self.flush();
                    return Ok(());
                }
                if let Some(p) = self.pending.as_mut()
                    && indent > p.indent
                {
                    for _ in 0..p.blanks {
                        p.parts.push(String::new());
                    }
                    p.blanks = 0;
                    p.parts.push(content.to_string());
                    return Ok(());
                }
                self.flush();
            }
        }
        if content.starts_with('[') {
            let Some(inner) = content.strip_suffix(']') else {
                return Err(self.err(no, "invalid section header (must end with ']')"));
            };
            let inner = &inner[1..];
            if inner.is_empty() {
                return Err(self.err(no, "empty section name"));
            }
            // oslo lowercases group names (except DEFAULT); configparser keeps them.
            let name = match self.dialect {
                Dialect::Oslo if inner != "DEFAULT" => inner.to_lowercase(),
                _ => inner.to_string(),
            };
            self.doc.sections.push(IniSection {
                name: name.clone(),
                line: no,
            });
            self.section = Some(name);
            return Ok(());
        }
        let Some((key, value)) = split_key_value(content) else {
            return Err(self.err(no, self.malformed(content)));
        };
        if key.is_empty() {
            return Err(self.err(no, "empty option name"));
        }
        if self.section.is_none() {
            return Err(self.err(no, format!("option {key:?} before any [section] header")));
        }
        let (key, value) = match self.dialect {
            Dialect::Oslo => (key.to_string(), unquote(value).to_string()),
            Dialect::ConfigParser => (key.to_lowercase(), value.to_string()),
        };
        self.pending = Some(Pending {
            key,
            parts: vec![value],
            line: no,
            indent,
            blanks: 0,
        });
        Ok(())
    }
}

/// Splits on whichever of `=` and `:` comes first; both sides trimmed.
fn split_key_value(line: &str) -> Option<(&str, &str)> {
    let at = line.find(['=', ':'])?;
    Some((line[..at].trim(), line[at + 1..].trim()))
}

/// oslo drops one pair of matching quotes around a whole value.
fn unquote(value: &str) -> &str {
    let b = value.as_bytes();
    if b.len() >= 2 && (b[0] == b'"' || b[0] == b'\'') && b[0] == b[b.len() - 1] {
        &value[1..value.len() - 1]
    } else {
        value
    }
}

/// A figment provider for one INI file: a dictionary of sections holding string
/// values (lists, booleans and numbers are typed later, as oslo and configparser
/// do, so that the error can name the option and where it came from).
#[derive(Clone, Debug)]
pub struct IniProvider {
    source: ProviderSource,
}

#[derive(Clone, Debug)]
enum ProviderSource {
    File(PathBuf, Dialect),
    Document(IniDocument),
}

impl IniProvider {
    /// Reads `path` when figment asks for the data.
    pub fn file(path: impl Into<PathBuf>, dialect: Dialect) -> Self {
        IniProvider {
            source: ProviderSource::File(path.into(), dialect),
        }
    }

    /// Uses an already parsed (and possibly normalised) document.
    pub fn document(doc: IniDocument) -> Self {
        IniProvider {
            source: ProviderSource::Document(doc),
        }
    }

    fn path(&self) -> &Path {
        match &self.source {
            ProviderSource::File(p, _) => p,
            ProviderSource::Document(d) => &d.path,
        }
    }
}

impl Provider for IniProvider {
    fn metadata(&self) -> Metadata {
        Metadata::from(
            format!("INI file {}", self.path().display()),
            Source::File(self.path().to_path_buf()),
        )
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let doc;
        let doc = match &self.source {
            ProviderSource::File(p, dialect) => {
                doc = IniDocument::read(p, *dialect)
                    .map_err(|e| figment::Error::from(e.to_string()))?;
                &doc
            }
            ProviderSource::Document(d) => d,
        };
        let mut root = Dict::new();
        for e in &doc.entries {
            if let Value::Dict(_, section) = root
                .entry(e.section.clone())
                .or_insert_with(|| Value::from(Dict::new()))
            {
                section.insert(e.key.clone(), Value::from(e.value.clone()));
            }
        }
        // A section with no options still exists (configparser has_section).
        for s in &doc.sections {
            root.entry(s.name.clone())
                .or_insert_with(|| Value::from(Dict::new()));
        }
        Ok(Profile::Default.collect(root))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    enum Want {
        /// (section, key, value) triples, after last-wins merging.
        Values(&'static [(&'static str, &'static str, &'static str)]),
        /// The exact error message.
        Error(&'static str),
    }

    fn run(dialect: Dialect, text: &str) -> Result<BTreeMap<(String, String), String>, String> {
        let doc = parse(text, Path::new("t.conf"), dialect).map_err(|e| e.to_string())?;
        Ok(doc
            .last_values()
            .into_iter()
            .map(|(k, (v, _))| (k, v))
            .collect())
    }

    use Dialect::{ConfigParser as Cp, Oslo};
    use Want::{Error as Err_, Values as V};

    /// (name, dialect, input, expected)
    #[allow(clippy::type_complexity)]
    #[rustfmt::skip]
    const CASES: &[(&str, Dialect, &str, Want)] = &[
        ("equals", Oslo, "[DEFAULT]\na = 1\n", V(&[("DEFAULT", "a", "1")])),
        ("colon", Oslo, "[DEFAULT]\na: 1\n", V(&[("DEFAULT", "a", "1")])),
        ("first separator wins (=)", Oslo, "[DEFAULT]\nurl = http://x:5000\n", V(&[("DEFAULT", "url", "http://x:5000")])),
        ("first separator wins (:)", Oslo, "[DEFAULT]\nk: a=b\n", V(&[("DEFAULT", "k", "a=b")])),
        ("double quotes dropped", Oslo, "[DEFAULT]\na = \"x y\"\n", V(&[("DEFAULT", "a", "x y")])),
        ("single quotes dropped", Oslo, "[DEFAULT]\na = 'x'\n", V(&[("DEFAULT", "a", "x")])),
        ("unmatched quotes kept", Oslo, "[DEFAULT]\na = \"x'\n", V(&[("DEFAULT", "a", "\"x'")])),
        ("configparser keeps quotes", Cp, "[s]\na = \"x\"\n", V(&[("s", "a", "\"x\"")])),
        ("CRLF endings", Oslo, "[DEFAULT]\r\na = 1\r\nb = 2\r\n", V(&[("DEFAULT", "a", "1"), ("DEFAULT", "b", "2")])),
        ("CRLF configparser", Cp, "[s]\r\nhost: h\r\n", V(&[("s", "host", "h")])),
        ("UTF-8 BOM", Oslo, "\u{feff}[DEFAULT]\na = 1\n", V(&[("DEFAULT", "a", "1")])),
        ("tabs around separator", Oslo, "[DEFAULT]\na\t=\t1\t\n", V(&[("DEFAULT", "a", "1")])),
        ("tab continuation", Oslo, "[DEFAULT]\na = x\n\ty\n", V(&[("DEFAULT", "a", "x\ny")])),
        ("empty value", Oslo, "[DEFAULT]\na =\n", V(&[("DEFAULT", "a", "")])),
        ("empty value configparser", Cp, "[broker]\nhost:\nport: 443\n", V(&[("broker", "host", ""), ("broker", "port", "443")])),
        ("duplicate key last wins", Oslo, "[DEFAULT]\na = 1\na = 2\n", V(&[("DEFAULT", "a", "2")])),
        ("duplicate key configparser", Cp, "[s]\na = 1\na = 2\n", V(&[("s", "a", "2")])),
        ("repeated sections merged", Oslo, "[x]\na = 1\n[DEFAULT]\nb = 2\n[x]\nc = 3\n", V(&[("DEFAULT", "b", "2"), ("x", "a", "1"), ("x", "c", "3")])),
        ("continuation lines", Oslo, "[DEFAULT]\na = one\n  two\n  three\n", V(&[("DEFAULT", "a", "one\ntwo\nthree")])),
        ("blank line ends value", Oslo, "[DEFAULT]\na = one\n\nb = 2\n", V(&[("DEFAULT", "a", "one"), ("DEFAULT", "b", "2")])),
        ("configparser continuation after blank", Cp, "[s]\na = one\n\n  two\n", V(&[("s", "a", "one\n\ntwo")])),
        ("configparser trailing blanks dropped", Cp, "[s]\na = one\n\n\nb = 2\n", V(&[("s", "a", "one"), ("s", "b", "2")])),
        ("comment after value kept (oslo)", Oslo, "[DEFAULT]\nkey = a # b\n", V(&[("DEFAULT", "key", "a # b")])),
        ("comment after value kept (configparser)", Cp, "[s]\nkey = a ; b\n", V(&[("s", "key", "a ; b")])),
        ("hash and semicolon comments", Oslo, "# c\n; c\n[DEFAULT]\n#a = 1\n;b = 2\nc = 3\n", V(&[("DEFAULT", "c", "3")])),
        ("indented hash continues in oslo", Oslo, "[DEFAULT]\na = x\n  # y\n", V(&[("DEFAULT", "a", "x\n# y")])),
        ("indented comment in configparser", Cp, "[s]\na = x\n  # y\nb = 1\n", V(&[("s", "a", "x"), ("s", "b", "1")])),
        ("configparser keys lowercased", Cp, "[logging]\nLevel: DEBUG\n", V(&[("logging", "level", "DEBUG")])),
        ("oslo keys keep case", Oslo, "[DEFAULT]\nSite_Name = X\n", V(&[("DEFAULT", "Site_Name", "X")])),
        ("oslo groups lowercased", Oslo, "[Keystone_Auth]\nauth_url = u\n", V(&[("keystone_auth", "auth_url", "u")])),
        ("configparser sections keep case", Cp, "[Broker]\nhost = h\n", V(&[("Broker", "host", "h")])),
        ("interpolation markers kept raw", Oslo, "[DEFAULT]\nservice_name = $site_name\n", V(&[("DEFAULT", "service_name", "$site_name")])),
        ("no trailing newline", Oslo, "[DEFAULT]\na = 1", V(&[("DEFAULT", "a", "1")])),
        ("no separator", Oslo, "[DEFAULT]\njunk\n", Err_("t.conf:2: expected 'key = value' or 'key: value' (the line is not shown: it may hold a secret)")),
        ("empty key", Oslo, "[DEFAULT]\n= 1\n", Err_("t.conf:2: empty option name")),
        ("unterminated section", Oslo, "[DEFAULT\na = 1\n", Err_("t.conf:1: invalid section header (must end with ']')")),
        ("empty section", Cp, "[]\n", Err_("t.conf:1: empty section name")),
        ("continuation without key", Oslo, "[DEFAULT]\n  x\n", Err_("t.conf:2: unexpected continuation line")),
        ("option before section", Cp, "# top\nhost: h\n", Err_("t.conf:2: option \"host\" before any [section] header")),
        ("error line counts CRLF", Oslo, "[DEFAULT]\r\na = 1\r\n\r\nbad\r\n", Err_("t.conf:4: expected 'key = value' or 'key: value' (the line is not shown: it may hold a secret)")),
    ];

    #[test]
    fn parser_table() {
        assert!(CASES.len() >= 25);
        let mut failures = Vec::new();
        for (name, dialect, input, want) in CASES {
            let got = run(*dialect, input);
            match (want, got) {
                (V(expected), Ok(got)) => {
                    let expected: BTreeMap<(String, String), String> = expected
                        .iter()
                        .map(|(s, k, v)| ((s.to_string(), k.to_string()), v.to_string()))
                        .collect();
                    if expected != got {
                        failures.push(format!("{name}: want {expected:?}, got {got:?}"));
                    }
                }
                (Err_(msg), Err(got)) if *msg == got => {}
                (want, got) => failures.push(format!(
                    "{name}: want {}, got {got:?}",
                    match want {
                        V(v) => format!("{v:?}"),
                        Err_(e) => format!("error {e:?}"),
                    }
                )),
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn lines_point_at_the_key() {
        let doc = parse("[DEFAULT]\n\na = x\n  y\nb = 2\n", Path::new("t"), Oslo).unwrap();
        let lines: Vec<_> = doc
            .entries
            .iter()
            .map(|e| (e.key.as_str(), e.line))
            .collect();
        assert_eq!(lines, [("a", 3), ("b", 5)]);
    }

    #[test]
    fn provider_gives_figment_sections() {
        let doc = parse(
            "[DEFAULT]\na = 1\n[x]\nb = 2\n[empty]\n",
            Path::new("t"),
            Oslo,
        )
        .unwrap();
        let fig = figment::Figment::from(IniProvider::document(doc));
        assert_eq!(fig.extract_inner::<String>("DEFAULT.a").unwrap(), "1");
        assert_eq!(fig.extract_inner::<String>("x.b").unwrap(), "2");
        assert!(fig.contains("empty"));
    }

    #[test]
    fn provider_reports_unreadable_file() {
        let fig = figment::Figment::from(IniProvider::file("/nonexistent/x.conf", Oslo));
        let err = fig.extract::<Dict>().unwrap_err().to_string();
        assert!(err.contains("/nonexistent/x.conf: No such file"), "{err}");
    }
}
