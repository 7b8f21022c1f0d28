//! The run report both programs write at the end of every run: a small
//! versioned JSON file beside their state (`<spooldir>/caso-extract.last-run.json`,
//! `<[outgoing] path>/../ssmsend.last-run.json`) so that an operator or a
//! probe can tell what the last run did without reading logs.
//!
//! Written atomically (temporary file in the same directory, fsync, rename,
//! fsync the directory): a crash leaves the previous report whole. A report
//! that cannot be written is a warning ([`write_or_warn`]), never a failed
//! run. [`SCHEMA`] changes only when a field changes meaning or goes away;
//! new fields keep it.

use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::time::Timestamp;

/// The report's schema version (`"schema"`).
pub const SCHEMA: u32 = 1;

/// `caso-extract`'s report, in `[DEFAULT] spooldir`.
pub const EXTRACT_FILE: &str = "caso-extract.last-run.json";
/// `ssmsend`'s report, in the directory holding the queue.
pub const SEND_FILE: &str = "ssmsend.last-run.json";

/// `ssmsend`'s report for the queue at `queue`: in the directory holding
/// it (`None` for a queue at `/`).
pub fn send_path(queue: &Path) -> Option<PathBuf> {
    queue.parent().map(|dir| dir.join(SEND_FILE))
}

#[derive(Debug, thiserror::Error)]
#[error("cannot {op} run report {path}: {error}")]
pub struct ReportError {
    op: &'static str,
    path: PathBuf,
    error: io::Error,
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ReportError {
    let path = path.to_path_buf();
    move |error| ReportError { op, path, error }
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Everything done.
    Ok,
    /// Some projects (destinations' messages) done, some failed.
    Partial,
    /// Nothing done, or every project failed.
    Failed,
    /// A stop request (SIGTERM) ended the run early, nothing failed.
    Stopped,
}

impl Outcome {
    /// Whether something failed in that run.
    pub fn is_bad(self) -> bool {
        matches!(self, Outcome::Partial | Outcome::Failed)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Partial => "partial",
            Outcome::Failed => "failed",
            Outcome::Stopped => "stopped",
        }
    }
}

/// The fields every report shares, then the program's own (`details`).
#[derive(Debug, Serialize)]
pub struct RunReport<T: Serialize> {
    pub schema: u32,
    pub program: &'static str,
    pub version: &'static str,
    pub started: Timestamp,
    pub ended: Timestamp,
    pub outcome: Outcome,
    #[serde(flatten)]
    pub details: T,
}

impl<T: Serialize> RunReport<T> {
    /// A report of `program` ending now.
    pub fn new(program: &'static str, started: Timestamp, outcome: Outcome, details: T) -> Self {
        RunReport {
            schema: SCHEMA,
            program,
            version: env!("CARGO_PKG_VERSION"),
            started,
            ended: Timestamp::now(),
            outcome,
            details,
        }
    }
}

/// Writes `bytes` to `path` atomically ([`crate::spool::write_atomic`]):
/// a crash leaves the previous report whole; a symlink is never followed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    crate::spool::write_atomic(path, bytes).map_err(|e| ReportError {
        op: e.op,
        path: e.path,
        error: e.error,
    })
}

/// Serializes `report` (one JSON object and a newline) and writes it.
pub fn write<T: Serialize>(path: &Path, report: &RunReport<T>) -> Result<(), ReportError> {
    let mut bytes = serde_json::to_vec_pretty(report)
        .map_err(|e| io_err("serialize", path)(io::Error::other(e)))?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

/// [`write`], a failure only logged: the run's outcome stays what it was.
pub fn write_or_warn<T: Serialize>(path: &Path, report: &RunReport<T>) {
    match write(path, report) {
        Ok(()) => tracing::debug!("run report written to {}", path.display()),
        Err(e) => tracing::warn!("{e} (the run itself is not affected)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn report() -> RunReport<serde_json::Value> {
        RunReport::new(
            "caso-extract",
            Timestamp::from_unix(1_763_978_401),
            Outcome::Partial,
            serde_json::json!({"projects": []}),
        )
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn writes_the_common_fields_and_leaves_no_temporary() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join(EXTRACT_FILE);
        write(&path, &report()).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(v["schema"], 1);
        assert_eq!(v["program"], "caso-extract");
        assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(v["started"], "2025-11-24T10:00:01Z");
        assert_eq!(v["outcome"], "partial");
        assert_eq!(v["projects"], serde_json::json!([]));
        assert!(Timestamp::parse(v["ended"].as_str().unwrap()).is_ok());
        assert_eq!(names(d.path()), vec![EXTRACT_FILE.to_string()]);
    }

    #[test]
    fn a_symlink_at_the_destination_is_replaced_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        fs::write(&victim, "keep").unwrap();
        let path = d.path().join(SEND_FILE);
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        // And one planted at the temporary name.
        std::os::unix::fs::symlink(&victim, d.path().join(".ssmsend.last-run.json.tmp")).unwrap();
        write_atomic(&path, b"{}\n").unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "keep");
        let meta = fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_file(), "{meta:?}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "{}\n");
        assert_eq!(
            names(d.path()),
            vec![SEND_FILE.to_string(), "victim".into()]
        );
    }

    #[test]
    fn an_unusable_directory_is_an_error_value() {
        let d = tempfile::tempdir().unwrap();
        let missing = d.path().join("nope").join(EXTRACT_FILE);
        let e = write(&missing, &report()).unwrap_err().to_string();
        assert!(e.starts_with("cannot create run report"), "{e}");
        assert!(e.contains("nope"), "{e}");
        // A regular file where the directory should be.
        fs::write(d.path().join("file"), "").unwrap();
        assert!(write_atomic(&d.path().join("file").join("r.json"), b"x").is_err());
        // A directory at the destination: the rename fails, nothing is left.
        let dest = d.path().join("dir");
        fs::create_dir(&dest).unwrap();
        let e = write_atomic(&dest, b"x").unwrap_err().to_string();
        assert!(e.contains("rename into place"), "{e}");
        assert_eq!(names(d.path()), vec!["dir".to_string(), "file".into()]);
    }

    #[test]
    fn a_read_only_directory_is_an_error_value() {
        use std::os::unix::fs::PermissionsExt;
        if crate::sys::geteuid() == 0 {
            // root writes anyway; the cases above cover the error path.
            return;
        }
        let d = tempfile::tempdir().unwrap();
        fs::set_permissions(d.path(), fs::Permissions::from_mode(0o500)).unwrap();
        let r = write_atomic(&d.path().join(EXTRACT_FILE), b"x");
        fs::set_permissions(d.path(), fs::Permissions::from_mode(0o700)).unwrap();
        assert!(r.is_err());
    }
}
