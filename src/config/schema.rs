//! The option schema of both programs: what an option is ([`OptSpec`]: its
//! section, key, [`Kind`], owner and its one default), the old names that
//! still work ([`Rename`]), and a program's whole table ([`Schema`]). The
//! tables themselves are `caso/options.rs` and `sender/options.rs`; every
//! default is written there once, and the typed getters
//! ([`super::Effective`]) fall back to it.

use super::ini::Dialect;

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
    /// A finite floating-point number (cASO's `FloatOpt`).
    Float,
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

impl OptSpec {
    /// This option as one of ours, not in cASO 5.2.2 / SSM 4.0.0:
    /// `opt(...).ours()`.
    pub(crate) const fn ours(self) -> OptSpec {
        OptSpec {
            owner: Owner::Ours,
            ..self
        }
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

    pub(super) fn has_section(&self, section: &str) -> bool {
        self.options.iter().any(|o| o.section == section)
            || self.ignored_sections.contains(&section)
            || self.renames.iter().any(|r| r.from.0 == section)
    }

    pub(super) fn rename(&self, section: &str, key: &str) -> Option<&'static Rename> {
        self.renames
            .iter()
            .find(|r| r.from.0 == section && (r.from.1 == key || r.from.1 == "*"))
    }
}

/// Accepted so that files written for the upstream program load, but without
/// effect here.
pub(crate) const fn ignored(
    section: &'static str,
    key: &'static str,
    default: Option<&'static str>,
) -> OptSpec {
    OptSpec {
        section,
        key,
        kind: Kind::Str,
        default,
        owner: Owner::Ignored,
        help: "accepted for compatibility; no effect",
    }
}

/// A supported value without old spellings.
pub(crate) const fn choice(name: &'static str) -> Choice {
    Choice {
        name,
        aliases: &[],
        supported: true,
    }
}
