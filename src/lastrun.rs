//! Lastrun files: `<spooldir>/lastrun.<project>`, the instant the next
//! extraction of that project starts from.
//!
//! Compatible both ways with cASO 5.2.2: we read what cASO writes
//! (`str(datetime)`, e.g. `2026-11-24 10:00:01+00:00`, or anything else in the
//! forms [`Timestamp::parse`] accepts: ISO-8601 with `T`/`Z`, with or without
//! fraction and offset, a bare date), and write exactly what cASO writes (no
//! trailing newline), which cASO reads back with `dateutil.parser.parse`.
//! Unlike cASO, the write is atomic and durable: a crash leaves either the old
//! or the new date, never an empty or partial file.

use std::fs::OpenOptions;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::time::{TimeError, Timestamp, excerpt};

/// A lastrun file holds one date (about 25 bytes): a longer one is not read.
pub const MAX_BYTES: u64 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum LastrunError {
    #[error("cannot {op} lastrun file {path}: {error}")]
    Io {
        op: &'static str,
        path: PathBuf,
        error: io::Error,
    },
    #[error("invalid lastrun file {path}: {error}")]
    Invalid { path: PathBuf, error: TimeError },
    #[error("invalid lastrun file {path}: not UTF-8 text")]
    NotText { path: PathBuf },
    #[error("invalid lastrun file {path}: more than {MAX_BYTES} bytes, starting {start:?}")]
    TooLarge { path: PathBuf, start: String },
    #[error("invalid lastrun file {path}: {what} (never followed or read)")]
    NotRegular { path: PathBuf, what: &'static str },
    #[error("invalid lastrun file {path}: {t} is before 1970")]
    BeforeEpoch { path: PathBuf, t: Timestamp },
    #[error("project id {project:?} cannot name a lastrun file (empty, or contains '/' or NUL)")]
    BadProject { project: String },
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> LastrunError {
    let path = path.to_path_buf();
    move |error| LastrunError::Io { op, path, error }
}

/// `<spooldir>/lastrun.<project>`, cASO's name.
pub fn path(spooldir: &Path, project: &str) -> PathBuf {
    spooldir.join(format!("lastrun.{project}"))
}

fn checked_path(spooldir: &Path, project: &str) -> Result<PathBuf, LastrunError> {
    if project.is_empty() || project.contains(['/', '\0']) {
        return Err(LastrunError::BadProject {
            project: project.to_string(),
        });
    }
    Ok(path(spooldir, project))
}

/// The project's lastrun; `None` when there is no file (the caller starts from
/// [`Timestamp::EPOCH`], as cASO does). An unreadable or unparsable file is an
/// error naming it: fail that project, go on with the others.
///
/// The file is opened without following a symlink (it lives in the spool
/// directory) and without blocking on a FIFO; anything but a regular file,
/// or more than [`MAX_BYTES`], is an error quoting at most a short excerpt.
pub fn read(spooldir: &Path, project: &str) -> Result<Option<Timestamp>, LastrunError> {
    let path = checked_path(spooldir, project)?;
    let f = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(LastrunError::NotRegular {
                path,
                what: "a symbolic link",
            });
        }
        Err(e) => return Err(io_err("open", &path)(e)),
    };
    // The type of what was opened, not of whatever the path names now.
    let meta = f.metadata().map_err(io_err("stat", &path))?;
    if !meta.file_type().is_file() {
        return Err(LastrunError::NotRegular {
            path,
            what: "not a regular file",
        });
    }
    let mut bytes = Vec::new();
    f.take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err("read", &path))?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(LastrunError::TooLarge {
            start: excerpt(&String::from_utf8_lossy(&bytes)),
            path,
        });
    }
    let text =
        String::from_utf8(bytes).map_err(|_| LastrunError::NotText { path: path.clone() })?;
    let t = Timestamp::parse(&text).map_err(|error| LastrunError::Invalid {
        path: path.clone(),
        error,
    })?;
    if t < Timestamp::EPOCH {
        return Err(LastrunError::BeforeEpoch { path, t });
    }
    Ok(Some(t))
}

/// Writes `t` as cASO does (`Timestamp::to_python_str`, no newline),
/// atomically: a temporary file beside it, fsync, rename, fsync the directory.
pub fn write(spooldir: &Path, project: &str, t: Timestamp) -> Result<(), LastrunError> {
    let path = checked_path(spooldir, project)?;
    // The dot-name temporary cannot clash with another project's `lastrun.*`.
    crate::spool::write_atomic(&path, t.to_python_str().as_bytes()).map_err(|e| LastrunError::Io {
        op: e.op,
        path: e.path,
        error: e.error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn round_trips_and_writes_exactly_what_caso_writes() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(read(d.path(), "p1").unwrap(), None);
        let t = Timestamp::from_unix(1_763_978_401);
        write(d.path(), "p1", t).unwrap();
        assert_eq!(
            fs::read_to_string(path(d.path(), "p1")).unwrap(),
            "2025-11-24 10:00:01+00:00"
        );
        assert_eq!(read(d.path(), "p1").unwrap(), Some(t));
        let t2 = Timestamp::from_unix_micros(1_763_978_402_000_007);
        write(d.path(), "p1", t2).unwrap();
        assert_eq!(read(d.path(), "p1").unwrap(), Some(t2));
        // Only the lastrun file remains: no temporary file left behind.
        let names: Vec<_> = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["lastrun.p1".to_string()]);
    }

    #[test]
    fn reads_every_form_caso_or_an_admin_may_leave() {
        let d = tempfile::tempdir().unwrap();
        let t = 1_763_978_401;
        for s in [
            "2025-11-24 10:00:01+00:00",
            "2025-11-24 10:00:01+00:00\n",
            "2025-11-24 10:00:01",
            "2025-11-24T10:00:01Z",
            "2025-11-24T11:00:01+01:00",
            "2025-11-24 10:00:01.000000+00:00",
        ] {
            fs::write(path(d.path(), "p"), s).unwrap();
            assert_eq!(
                read(d.path(), "p").unwrap().unwrap().unix_seconds(),
                t,
                "{s:?}"
            );
        }
        fs::write(path(d.path(), "p"), "2025-11-24").unwrap();
        assert_eq!(
            read(d.path(), "p").unwrap().unwrap().unix_seconds(),
            1_763_942_400
        );
    }

    #[test]
    fn an_invalid_file_is_an_error_naming_it() {
        let d = tempfile::tempdir().unwrap();
        for bad in [&b""[..], b"yesterday", b"\xff\xfe"] {
            fs::write(path(d.path(), "p"), bad).unwrap();
            let e = read(d.path(), "p").unwrap_err().to_string();
            assert!(e.contains(&*path(d.path(), "p").to_string_lossy()), "{e}");
            assert!(e.starts_with("invalid lastrun file"), "{e}");
        }
        assert!(matches!(
            read(d.path(), "a/b"),
            Err(LastrunError::BadProject { .. })
        ));
        let missing = d.path().join("nope");
        let e = write(&missing, "p", Timestamp::EPOCH)
            .unwrap_err()
            .to_string();
        assert!(e.contains(&*missing.to_string_lossy()), "{e}");
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        /// Up to 9999-12-31T23:59:59.999999Z, what the format can hold.
        const MAX_MICROS: i64 = 253_402_300_799_999_999;

        /// Lastrun-like text: digits and the separators of dates, and anything.
        fn contents() -> impl Strategy<Value = Vec<u8>> {
            prop_oneof![
                prop::collection::vec(prop::sample::select(&b"0123456789-: T.+Z\n"[..]), 0..40),
                prop::collection::vec(any::<u8>(), 0..64),
                (any::<u8>(), 4000usize..5000).prop_map(|(b, n)| vec![b; n]),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(10_000))]

            /// Any contents: no panic, and an error is one short line.
            #[test]
            fn any_contents_read_bounded(bytes in contents()) {
                let d = tempfile::tempdir().unwrap();
                fs::write(path(d.path(), "p"), &bytes).unwrap();
                match read(d.path(), "p") {
                    Ok(t) => prop_assert!(t.is_some_and(|t| t >= Timestamp::EPOCH)),
                    Err(e) => {
                        let m = e.to_string();
                        // 40 characters, each at most 10 when escaped.
                        prop_assert!(m.len() < 600 + d.path().as_os_str().len(), "{}", m);
                        prop_assert!(!m.contains('\n'), "{}", m);
                    }
                }
            }

            /// What cASO and we write reads back as the same instant.
            #[test]
            fn rendered_times_read_back(micros in 0..=MAX_MICROS) {
                let t = Timestamp::from_unix_micros(micros);
                prop_assert_eq!(Timestamp::parse(&t.to_python_str()), Ok(t));
                prop_assert_eq!(Timestamp::parse(&t.to_rfc3339()), Ok(t));
            }
        }

        // Through the file, fewer cases: each writes and fsyncs.
        proptest! {
            #![proptest_config(ProptestConfig::with_cases(200))]
            #[test]
            fn written_times_read_back(micros in 0..=MAX_MICROS) {
                let d = tempfile::tempdir().unwrap();
                let t = Timestamp::from_unix_micros(micros);
                write(d.path(), "p", t).unwrap();
                prop_assert_eq!(read(d.path(), "p").unwrap(), Some(t));
            }
        }
    }
}
