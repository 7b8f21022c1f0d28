//! Issue 11's hostile input, class by class, driving the real binaries:
//! every case asserts the exit code, the error text, that no secret leaks,
//! and a time bound.

mod ams;
mod config;
mod openstack;
mod signals;
mod spool;
