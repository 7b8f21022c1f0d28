//! Helpers the integration tests share, one module tree included once from
//! tests/main.rs (`use crate::support::...`).

pub mod activemq;
pub mod ams;
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

/// Whether the tests run as root (then every directory is writable, and a
/// permission test must run the program as another user).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
