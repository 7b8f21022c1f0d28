//! Configuration of both programs: the files sites already have, read unchanged,
//! and checked here, so that what leaves this module can run: a missing or
//! contradictory value is a [`ConfigError`] (exit 2), wherever it is found.
//!
//! Layers, lowest first, merged with figment: built-in defaults (cASO 5.2.2 /
//! SSM 4.0.0 plus our own options), files (later wins), environment
//! (`CASO_<SECTION>__<KEY>`, `SSM_<SECTION>__<KEY>`), command-line flags. Every
//! value is kept as text with its [`Origin`] until the final merge; then oslo
//! `$name` interpolation runs (caso.conf only), every known option is checked
//! against its kind, and [`caso::CasoSettings`] / [`sender::SenderSettings`]
//! are built from the result. `--print-config` renders the same [`Effective`]
//! view, so what is printed is what the program uses.
//!
//! # Layout
//! One job per file:
//! - `schema.rs`: what an option is (`OptSpec`: its kind and its one default).
//! - `layers.rs`: reading files, directories, environment and flags into
//!   layers and merging them ([`FlagValue`], the generic loader).
//! - `interpolate.rs`: oslo `$name` interpolation.
//! - `effective.rs`: [`Effective`], typed getters that fall back to the
//!   table's default, and the `--print-config` rendering.
//! - `ini.rs`: the two file dialects (oslo.config, configparser).
//! - `voms.rs`: the deprecated voms.json VO mapping.
//! - `caso/`: caso.conf for `caso-extract`: `options.rs` (its table),
//!   `auth.rs` (`[keystone_auth]` checked into the client's
//!   [`crate::openstack::AuthConfig`]), `mod.rs` ([`caso::CasoSettings`],
//!   [`caso::CasoSources`], [`load_caso`]).
//! - `sender/`: sender.cfg for `ssmsend`: `options.rs` (its table), `mod.rs`
//!   ([`sender::SenderSettings`] in the types of `smime`, `spool` and
//!   `stomp`, [`load_sender`]).
//!
//! `config` depends on no program module (`cli`, `extract`, `send`,
//! `daemon`): the command line reaches it as [`caso::CasoSources`].

pub mod caso;
mod effective;
pub mod ini;
pub mod interpolate;
mod layers;
#[cfg(test)]
mod props;
mod schema;
pub mod sender;
pub mod voms;

use std::fmt;
use std::path::{Path, PathBuf};

pub use caso::load_caso;
pub use effective::{Effective, Setting};
pub use ini::{Dialect, IniDocument, IniProvider};
pub use layers::FlagValue;
pub(crate) use layers::{Sources, conf_files_in, load};
pub(crate) use schema::{Choice, Kind, OptSpec, Owner, Schema};
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
    /// `[keystone_auth]` that cannot log in: a credential missing, or two
    /// settings that contradict each other.
    #[error("[keystone_auth] {0}")]
    KeystoneAuth(String),
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

/// The README table of options that are ours or have our default (a test
/// keeps README.md in sync with it).
pub fn our_options_markdown() -> String {
    let mut out = String::from("| Program | Option | Default | Meaning |\n|---|---|---|---|\n");
    for schema in [&caso::SCHEMA, &sender::SCHEMA] {
        for o in schema.options {
            let mark = match o.owner {
                Owner::Ours => "",
                Owner::OurDefault if schema.dialect == ini::Dialect::Oslo => {
                    " (cASO option, our default)"
                }
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
