//! The integration tests, one binary (`autotests = false`, `[[test]] main` in
//! Cargo.toml): the crate and the helpers are compiled and linked once, not
//! once per file. One module per area, the helpers they share in [`support`].
//!
//! - `cargo test --test main spool::` runs one area; a test's name is its
//!   module path (`records::oracle::messages_match_caso_byte_for_byte`).
//! - The benchmarks are ignored tests: `cargo test --release --test main --
//!   --ignored --nocapture bench` runs both (`ams::bench`,
//!   `send::smime::bench_seal_throughput`).
//! - Child-process entry points are ignored tests too, run only by their
//!   parent test ([`support::spool::child_cmd`]).

mod support;

mod ams;
mod architecture;
mod config;
mod energy;
mod extract;
mod hostile;
mod openstack;
mod ops;
mod real_openstack;
mod records;
mod send;
mod spool;
mod stomp;
