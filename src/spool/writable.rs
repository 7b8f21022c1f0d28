//! Whether a directory can take a new file, found out without leaving
//! anything a reader could see: both programs check their spools before
//! doing any work (`caso-extract` before the first request, `--check` of
//! either program).

use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// `dir` cannot take a new file (a read-only mount, wrong owner or mode).
#[derive(Debug, thiserror::Error)]
#[error("{what} {} is not writable by uid {uid}: {error}", path.display())]
pub struct NotWritable {
    /// The option that names the directory, e.g. "[messaging] path".
    pub what: String,
    pub path: PathBuf,
    pub uid: u32,
    pub error: io::Error,
}

/// Probes `dir` with an unnamed `O_TMPFILE`, which no reader of the spool
/// can ever see; where the file system has none, a dot-file removed at once.
/// `what` names the option in the error.
pub fn check_writable(dir: &Path, what: &str) -> Result<(), NotWritable> {
    probe(dir).map_err(|error| NotWritable {
        what: what.to_owned(),
        path: dir.to_path_buf(),
        uid: crate::access::effective_uid(),
        error,
    })
}

fn probe(dir: &Path) -> io::Result<()> {
    let unnamed = std::fs::OpenOptions::new()
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE)
        .open(dir);
    match unnamed {
        Ok(_) => Ok(()),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)
            ) =>
        {
            let probe = dir.join(format!(".spool-probe.{}.tmp", std::process::id()));
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&probe)
                .map(|_| {
                    let _ = std::fs::remove_file(&probe);
                })
        }
        Err(e) => Err(e),
    }
}

/// The directory a missing `dir` would be created in: its nearest existing
/// ancestor (`None` when not even `/` exists, which cannot happen).
pub fn nearest_existing(dir: &Path) -> Option<&Path> {
    dir.ancestors()
        .find(|a| !a.as_os_str().is_empty() && a.exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_leave_nothing_and_name_the_option() {
        let d = tempfile::tempdir().unwrap();
        check_writable(d.path(), "[x] y").unwrap();
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
        let missing = d.path().join("a/b");
        let e = check_writable(&missing, "[x] y").unwrap_err();
        assert!(
            e.to_string().starts_with(&format!(
                "[x] y {} is not writable by uid",
                missing.display()
            )),
            "{e}"
        );
        assert_eq!(nearest_existing(&missing), Some(d.path()));
    }
}
