//! Reading the local files an admin names (certificates, keys, CA files,
//! configuration): capped while read ([`read_capped`]), and when a read is
//! refused, why, said so that an operator can fix it: the images run as uid
//! 65532, and a migrated host's key is root's, mode 0600.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::sys;

/// Where the README explains the ways to give the images' user the host key.
const README_SECTION: &str = "README: Migrating from the Python images, Host key";

/// The largest certificate, key or CA file read (1 MiB; a PEM bundle of
/// every public CA is about 200 KiB).
pub const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// Reads at most `limit` bytes of `path` (+1 to tell a longer file), so that
/// a path naming `/dev/zero` or a runaway file cannot fill memory. Too long:
/// an error of kind [`io::ErrorKind::FileTooLarge`] saying the limit.
pub fn read_capped(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(limit + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!("larger than {limit} bytes"),
        ));
    }
    Ok(bytes)
}

/// The effective uid of this process (the one the kernel checks).
pub fn effective_uid() -> u32 {
    sys::geteuid()
}

/// For a read of `path` (set by `option`, e.g. `[certificates] key`) that
/// failed with `EACCES`: which uid `program` runs as, what stops it (the
/// file's owner and mode, or a directory it may not enter) and the fix.
/// `None` for any other error.
pub fn denied_hint(program: &str, option: &str, path: &Path, error: &io::Error) -> Option<String> {
    if error.kind() != io::ErrorKind::PermissionDenied {
        return None;
    }
    let uid = effective_uid();
    let file = path.display();
    if let Some(dir) = unsearchable_directory(path) {
        let owner = std::fs::metadata(&dir)
            .map(|m| format!(" (owner uid {}, mode {:04o})", m.uid(), m.mode() & 0o7777))
            .unwrap_or_default();
        return Some(format!(
            "{program} runs as uid {uid}, which may not enter {}{owner}: let uid {uid} search it \
             (chmod o+x {}), or point {option} at a copy uid {uid} can reach ({README_SECTION})",
            dir.display(),
            dir.display()
        ));
    }
    let owner = std::fs::metadata(path)
        .map(|m| {
            format!(
                ", and the file belongs to uid {} with mode {:04o}",
                m.uid(),
                m.mode() & 0o7777
            )
        })
        .unwrap_or_default();
    Some(format!(
        "{program} runs as uid {uid}{owner}: chown {uid} {file}, or point {option} at a copy \
         owned by uid {uid} ({README_SECTION})"
    ))
}

/// The first directory on the way to `path` this process may not search
/// (enter), if any.
fn unsearchable_directory(path: &Path) -> Option<std::path::PathBuf> {
    let mut dirs: Vec<&Path> = path
        .ancestors()
        .skip(1)
        .filter(|d| !d.as_os_str().is_empty())
        .collect();
    dirs.reverse();
    dirs.into_iter()
        .find(|d| !may_search(d))
        .map(Path::to_path_buf)
}

/// False only when the kernel says `EACCES` (a missing directory is not
/// what denied the read).
fn may_search(dir: &Path) -> bool {
    let Ok(c) = CString::new(dir.as_os_str().as_bytes()) else {
        return true;
    };
    match sys::faccessat(&c, libc::X_OK, libc::AT_EACCESS) {
        Ok(()) => true,
        Err(e) => e.raw_os_error() != Some(libc::EACCES),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_permission_denied_gets_a_hint() {
        let missing = io::Error::from(io::ErrorKind::NotFound);
        assert_eq!(
            denied_hint("ssmsend", "[certificates] key", Path::new("/x"), &missing),
            None
        );
        let denied = io::Error::from_raw_os_error(libc::EACCES);
        let hint = denied_hint(
            "ssmsend",
            "[certificates] key",
            Path::new("/nonexistent/k.pem"),
            &denied,
        )
        .unwrap();
        let uid = effective_uid();
        assert!(
            hint.starts_with(&format!("ssmsend runs as uid {uid}")),
            "{hint}"
        );
        assert!(
            hint.contains(&format!("chown {uid} /nonexistent/k.pem")),
            "{hint}"
        );
        assert!(
            hint.contains("point [certificates] key at a copy"),
            "{hint}"
        );
    }
}
