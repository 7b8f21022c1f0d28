//! Cloud accounting for EGI sites: `caso-extract` and `ssmsend` in one library.
//!
//! One module per concern; the two binaries under `src/bin` only call [`cli`].

pub mod access;
pub mod ams;
pub mod check;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod exit;
pub mod extract;
pub mod lastrun;
pub mod logging;
pub mod openstack;
pub mod record;
pub mod reply;
pub mod runlock;
pub mod send;
pub mod smime;
pub mod spool;
pub mod stomp;
pub mod time;
