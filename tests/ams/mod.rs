//! The AMS client against the `ams-double`, and its throughput benchmark.

mod batch;
mod bench;
mod client;
