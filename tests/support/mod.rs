//! Helpers shared by the integration tests: `mod common;` in a test crate.

pub mod pki;
