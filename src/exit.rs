//! Exit codes shared by both programs: 0 ok, 1 runtime failure, 2 configuration
//! or usage error.
//!
//! Any error whose chain holds a [`crate::config::ConfigError`], a clap error or
//! an error marked with [`usage`] exits 2; every other error exits 1.

use std::process::ExitCode;

pub const SUCCESS: u8 = 0;
pub const FAILURE: u8 = 1;
pub const USAGE: u8 = 2;

/// Marks an error as the operator's to fix (bad configuration, unusable
/// certificate, wrong flag): exit code 2. Displays exactly as the wrapped error.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct UsageError(#[from] pub anyhow::Error);

/// Wraps `e` so that [`code_for`] returns 2, e.g.
/// `return Err(exit::usage(anyhow!("{path}: certificate and key do not match")))`.
pub fn usage(e: impl Into<anyhow::Error>) -> anyhow::Error {
    anyhow::Error::new(UsageError(e.into()))
}

/// An error the log already ends with (a run's summary line and the failures
/// before it): the programs do not log it again, they exit 1 (or 2, as its
/// chain says) and print it on stderr only when the log goes to a file.
/// Displays exactly as the wrapped error.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct Reported(#[from] pub anyhow::Error);

/// Marks `e` as already logged ([`Reported`]).
pub fn reported(e: impl Into<anyhow::Error>) -> anyhow::Error {
    anyhow::Error::new(Reported(e.into()))
}

/// Whether `e` was already logged ([`Reported`]).
pub fn is_reported(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<Reported>())
}

/// An error and its causes on one line, `context: error: cause`, each text
/// once ([`crate::net::error_chain`]): many error types print their source in
/// their own message and also return it as `source()`, so `{:#}` would print
/// it twice ("Is a directory (os error 21): Is a directory (os error 21)").
/// Both programs print fatal errors through this.
pub struct Chain<'a>(pub &'a anyhow::Error);

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::net::error_chain(self.0.as_ref()))
    }
}

/// 2 when any error in the chain is a configuration or usage error, else 1.
pub fn code_for(e: &anyhow::Error) -> ExitCode {
    ExitCode::from(if is_usage(e) { USAGE } else { FAILURE })
}

/// Whether `e` is the operator's to fix (exit 2): no retry can succeed.
pub fn is_usage(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.is::<UsageError>() || c.is::<crate::config::ConfigError>() || c.is::<clap::Error>()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::{Context, anyhow};

    fn code(e: &anyhow::Error) -> String {
        format!("{:?}", code_for(e))
    }

    #[test]
    fn codes() {
        let runtime = anyhow!("broker refused");
        assert_eq!(code(&runtime), format!("{:?}", ExitCode::from(FAILURE)));

        let marked = usage(anyhow!("cert and key do not match")).context("starting ssmsend");
        assert_eq!(code(&marked), format!("{:?}", ExitCode::from(USAGE)));
        assert_eq!(
            format!("{marked:#}"),
            "starting ssmsend: cert and key do not match"
        );

        let config: anyhow::Error = crate::config::ConfigError::Unsupported("x".into()).into();
        let config = config.context("loading");
        assert_eq!(code(&config), format!("{:?}", ExitCode::from(USAGE)));
    }

    #[test]
    fn chain_prints_each_cause_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("cannot read {path}: {source}")]
        struct Both {
            path: &'static str,
            source: std::io::Error,
        }
        let io = std::io::Error::from_raw_os_error(21);
        let text = io.to_string();
        let e = anyhow::Error::new(Both {
            path: "/tmp",
            source: io,
        })
        .context("loading");
        assert_eq!(
            Chain(&e).to_string(),
            format!("loading: cannot read /tmp: {text}")
        );
        assert_eq!(
            format!("{e:#}").matches(&text).count(),
            2,
            "anyhow repeats it"
        );
        let plain = Err::<(), _>(std::io::Error::other("disk on fire"))
            .context("reading /x")
            .unwrap_err();
        assert_eq!(Chain(&plain).to_string(), "reading /x: disk on fire");
    }

    #[test]
    fn usage_keeps_the_chain() {
        let inner = Err::<(), _>(std::io::Error::other("disk on fire"))
            .context("reading /x")
            .unwrap_err();
        let e = usage(inner);
        assert_eq!(format!("{e:#}"), "reading /x: disk on fire");
    }
}
