//! The AMS client against the `ams-double`, and its throughput benchmark.

mod bench;
mod client;
