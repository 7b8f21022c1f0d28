//! Helpers the integration tests share, one module tree included once from
//! tests/main.rs (`use crate::support::...`).

pub mod activemq;
pub mod ams;
pub mod energy;
pub mod examples;
pub mod extract;
pub mod openstack_mock;
pub mod pki;
pub mod python;
pub mod records;
pub mod send;
pub mod sim;
pub mod spool;
pub mod stomp_proxy;

use std::path::PathBuf;

/// The project's root (where Cargo.toml is).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The name libtest gives the test `name` of the module whose
/// `module_path!()` is `module`: the path without the crate's name
/// (`spool::crash::crash_child`), what `--exact` needs to run a child
/// process entry point.
pub fn test_name(module: &str, name: &str) -> String {
    match module.split_once("::") {
        Some((_crate, path)) => format!("{path}::{name}"),
        None => name.to_string(),
    }
}

/// Whether the tests run as root (then every directory is writable, and a
/// permission test must run the program as another user).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
