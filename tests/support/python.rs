//! The project's `.venv` (scripts/setup-python.sh): Python with the oracles
//! (cASO 5.2.2, dirq 1.8, the APEL server's parsers, kubernetes-validate).
//! A missing one fails the test with the fix, never skips it.

use std::path::PathBuf;

/// `.venv/bin/<name>`, checked to exist.
pub fn venv_bin(name: &str) -> PathBuf {
    let path = super::root().join(".venv/bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: run scripts/setup-python.sh (the venv holds the interop oracles: cASO 5.2.2, Python dirq 1.8, kubernetes-validate)",
        path.display()
    );
    path
}

/// The venv's Python.
pub fn python() -> PathBuf {
    venv_bin("python")
}
