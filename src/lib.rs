//! Cloud accounting for EGI sites: `caso-extract` and `ssmsend` in one library.
//!
//! One module per concern; the two binaries under `src/bin` only call [`cli`].
//!
//! # Layout
//!
//! ```text
//!  caso-extract                                  ssmsend
//!   cli ─> config (caso.conf, voms.json)          cli ─> config (sender.cfg)
//!    └─> extract: period ─> window ─> deliver      └─> send: outbox ─> smime ─> stomp | ams
//!          │  openstack (Keystone, Nova, ...)              ^                      │
//!          │  record (APEL text and JSON)                  │                      v
//!          └─> spool ─> /var/spool/apel/outgoing ──────────┘           broker | ARGO AMS
//!              lastrun.<project>, runlock
//! ```
//!
//! Both programs use `cli`, `config`, `exit`, `daemon`, `logging`, `check`, `report`, `status`,
//! `metrics`, `access`, `secret`, `time`, `sys` and `spool`; only `caso-extract` uses
//! `extract`, `openstack`, `lastrun` and `runlock`; only `ssmsend`
//! uses `send`, `stomp`, `ams` and `smime`; `record` writes the messages for
//! the one and checks (`record::loader`) and splits (`record::split`) them
//! for the other; `net` serves the clients of both. Dependencies point from the programs down to the formats and never
//! back: `config` knows no program module and no transport knows `config`
//! (`tests/architecture` checks the first and that no import cycle exists).
//!
//! Code map, from the edge inwards:
//! - [`cli`]: the two programs' command lines; [`exit`]: exit codes (0, 1, 2)
//!   and how an error chain is printed; [`daemon`]: cron and daemon mode,
//!   SIGTERM; [`logging`]: log set-up and the operators' text format;
//!   [`check`]: the `--check` report; [`report`]: the JSON run report both
//!   programs write atomically at the end of every run
//!   (`caso-extract.last-run.json`, `ssmsend.last-run.json`); [`status`]:
//!   the `status` subcommand (lastrun files, run reports, the queue and
//!   its reject directory, from the files alone) and its `--check` probe;
//!   [`metrics`]: their Prometheus metrics, written at the end of every run
//!   (`--metrics-file`) or served to Prometheus (`--metrics-listen`).
//! - [`config`]: caso.conf (oslo.config dialect), sender.cfg (configparser),
//!   voms.json: layers, interpolation, typed settings, `--print-config`; all
//!   checking (`[keystone_auth]` into the client's `AuthConfig` included), so a
//!   bad value is a `ConfigError`, exit 2. It uses no program module: `cli`
//!   hands it a `CasoSources`.
//! - [`extract`]: one `caso-extract` run (projects, Nova/Cinder/Neutron to
//!   records, messengers and the `MessageSink` they write to, the
//!   summary); [`openstack`]: the Keystone, Nova, Glance, Cinder and Neutron
//!   client; [`lastrun`], [`runlock`]: cASO's lastrun files and run lock.
//! - [`send`]: one `ssmsend` run (spool to transport through its `Outbox`,
//!   a message refused for its size sent in parts, `--dry-run`); [`stomp`]: our STOMP 1.2 client; [`ams`]: the ARGO
//!   Messaging Service client; [`smime`]: signing, encryption, the host
//!   credentials and the TLS client identity both transports present.
//! - Energy (cASO's `prometheus` extractor and `greendigit_cim` messenger):
//!   [`prometheus`]: the energy of many VMs per instant query, summed by
//!   Prometheus itself; [`cim`]: the GreenDIGIT CIM client (token, submit);
//!   the records are `record::EnergyRecord`.
//! - [`net`]: what the OpenStack, AMS and STOMP clients share: retries with
//!   backoff and jitter, HTTP answers read capped, same-origin redirects,
//!   excerpts of server text, error chains on one line.
//! - [`record`]: the APEL record formats; [`spool`]: the dirq and directory
//!   queues (never through a symlink) and the one atomic writer of the
//!   small state files; [`access`]: reading the files an admin
//!   names (capped, with why a read was refused); [`time`]: timestamps;
//!   [`secret`]: passwords, credential secrets and tokens, never printed.
//! - [`sys`]: the few system calls std lacks (`*at()`, record locks,
//!   `geteuid`), the only `unsafe` code, each with its SAFETY note.

#![deny(unsafe_code)]

pub mod access;
pub mod ams;
pub mod check;
pub mod cim;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod exit;
pub mod extract;
pub mod lastrun;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod openstack;
pub mod prometheus;
pub mod record;
pub mod report;
pub mod runlock;
pub mod secret;
pub mod send;
pub mod smime;
pub mod spool;
pub mod status;
pub mod stomp;
#[allow(unsafe_code)]
pub mod sys;
pub mod time;
