//! A sending run of `ssmsend`: what APEL SSM 4's `ssmsend` does, pipelined.
//!
//! 1. The credentials are checked ([`Signer::from_settings`]): any problem is
//!    a configuration error (exit 2) and nothing is touched.
//! 2. The queue is listed. Every entry that is not a message (a symlink,
//!    FIFO, device, directory or foreign name; see [`crate::spool::Scan`]) is
//!    reported once and moved to the `reject` directory as itself, never
//!    read. The elements are locked, read, checked and sealed
//!    (signed, then encrypted if `server_cert` is set) on a few blocking
//!    threads ahead of the sender ([`Outbox`]). A message that is
//!    unreadable, empty, not ASCII or over 1 MB goes to the `reject`
//!    directory beside the queue with a `.reason` file; the others go on.
//! 3. The transport delivers them ([`stomp`]: SEND and wait for the RECEIPT;
//!    [`ams`]: publish): a message is removed from the queue only once the
//!    broker confirmed it, and unlocked (kept for the next run) otherwise.
//!    The message id (STOMP `receipt`/`empa-id`, AMS `empaid`) is the spool
//!    element name, as in SSM. A message AMS refuses for its size (413) is
//!    sent in parts split at record boundaries ([`parts`]); the element is
//!    removed once every part is confirmed.
//! 4. The queue is purged (stale locks and temporary files, dirq's defaults).
//!
//! Exit status: `Ok` only when every message found was delivered (or was
//! locked by another sender, which then owns it). Messages left in the queue,
//! rejected messages, entries that are not messages and a delivered message
//! that could not be removed all make the run fail (exit 1): each needs the
//! operator's eye, a rejected one most of all since it will never be sent.
//! SSM stops at its first failure; we send what can be sent, then report.

pub mod ams;
pub mod check;
pub mod dry_run;
pub mod outbox;
pub mod parts;
pub mod stomp;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};

use crate::config::sender::{SenderSettings, Transport};
use crate::daemon::Shutdown;
use crate::exit;
use crate::metrics::{SendMetrics, SendRun};
use crate::report::{Outcome, RunReport};
use crate::smime::Signer;
use crate::spool::{Queue, SpoolError};
use crate::time::Timestamp;
pub use outbox::Outbox;
use outbox::Tally;

/// dirq's `purge()` defaults, which SSM uses: temporary files older than
/// 300 s are removed, locks older than 600 s released.
pub const PURGE_MAX_TEMP: Duration = Duration::from_secs(300);
pub const PURGE_MAX_LOCK: Duration = Duration::from_secs(600);

/// Sends the queue of `settings`, the program's entry point. `Err` when
/// anything stayed unsent or was rejected (exit 1), or for unusable
/// credentials (exit 2). Takes no further message once `stop` is requested
/// (SIGTERM): the messages already sent get their broker's answer within the
/// grace ([`crate::daemon::STOP_GRACE`]) and are removed, or kept when none
/// came; the others stay queued for the next run, which is then no failure.
/// With `metrics`, the run's metrics are published where its run report is
/// written.
pub fn run(
    settings: &SenderSettings,
    stop: &Shutdown,
    metrics: Option<&mut SendMetrics>,
) -> anyhow::Result<()> {
    let signer = Signer::from_settings(&settings.certificates)
        .map_err(exit::usage)?
        .with_cipher(settings.messaging.encryption);
    let path = &settings.messaging.path;
    let queue = match Queue::open(path, settings.messaging.path_type) {
        Ok(q) => q,
        Err(SpoolError::MissingRoot(_)) => {
            tracing::warn!(
                "[messaging] path {} does not exist: nothing to send",
                path.display()
            );
            return Ok(());
        }
        Err(e @ SpoolError::NotADirectory(_)) => return Err(exit::usage(e)),
        Err(e) => return Err(e.into()),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    if stop.is_requested() {
        return Ok(());
    }
    runtime.block_on(send_queue(
        settings,
        Arc::new(queue),
        Arc::new(signer),
        stop,
        metrics,
    ))
}

/// How many messages are locked and sealed ahead of the transport at most
/// (about 110 kB each): enough to cover a STOMP window's worth of receipts
/// or AMS's requests in flight arriving at once.
const READ_AHEAD: usize = 64;

/// How many messages are signed at once: one per core (signing is all CPU).
fn sealers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

async fn send_queue(
    settings: &SenderSettings,
    queue: Arc<Queue>,
    signer: Arc<Signer>,
    stop: &Shutdown,
    metrics: Option<&mut SendMetrics>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let started_at = crate::time::Timestamp::now();
    let q = Arc::clone(&queue);
    let scan = blocking(move || q.scan()).await??;
    let ids = scan.elements;
    let found = ids.len();
    tracing::info!("Found {found} messages.");
    // Reported and moved aside before sending: a bad lock moved away frees
    // its element for this run.
    let q = Arc::clone(&queue);
    let bad = blocking(move || {
        let mut bad = Tally::default();
        outbox::set_aside_all(&q, &scan.bad, &mut bad);
        bad
    })
    .await?;
    let mut failure: Option<anyhow::Error> = None;
    let mut tally = if found == 0 {
        Tally::default()
    } else {
        let spool = Outbox::new(
            Arc::clone(&queue),
            Arc::clone(&signer),
            READ_AHEAD,
            sealers(),
        )
        .context("cannot start the queue thread")?
        .with_loader_checks(settings.loader_checks);
        let credentials = signer.credentials();
        let capath = &settings.certificates.capath;
        let destination = &settings.messaging.destination;
        let sent = async {
            match &settings.transport {
                Transport::Stomp(s) => {
                    let config = stomp::broker_config(s, &settings.timeouts, credentials, capath);
                    stomp::send_all(&config, destination, &spool, ids, stop)
                        .await
                        .map_err(|e| match e {
                            crate::stomp::StompError::TlsSetup(_) => exit::usage(e),
                            e => e.into(),
                        })
                }
                Transport::Ams(a) => {
                    let config =
                        ams::client_config(a, destination, &settings.timeouts, credentials, capath)
                            .map_err(exit::usage)?;
                    let client = crate::ams::Client::new(config).map_err(exit::usage)?;
                    ams::send_all(&client, &spool, ids, stop)
                        .await
                        .map_err(Into::into)
                }
            }
        };
        let sent = {
            let mut sent = std::pin::pin!(sent);
            tokio::select! {
                r = &mut sent => r,
                _ = stop.requested() => {
                    // No new element is taken; those sent get the grace
                    // (the transports end their waits themselves).
                    spool.stop();
                    sent.await
                }
            }
        };
        if let Err(e) = sent {
            failure = Some(e);
        }
        blocking(move || spool.finish(found)).await?
    };
    tally.bad_set_aside = bad.bad_set_aside;
    tally.bad_left = bad.bad_left;
    tracing::info!("Tidying message directory.");
    let q = Arc::clone(&queue);
    match blocking(move || q.purge(PURGE_MAX_TEMP, PURGE_MAX_LOCK)).await? {
        Ok(report) => tracing::debug!(?report, "purged"),
        Err(e) => tracing::warn!("purging the queue failed: {e}"),
    }
    let secs = started.elapsed().as_secs_f64();
    let stopped = stop.is_requested()
        && tally.rejected == 0
        && tally.not_removed == 0
        && tally.bad() == 0
        && failure.is_none();
    let mut line = summary_line(&tally, settings);
    if let Some(e) = &failure {
        line = format!("{line}: {}", exit::Chain(e));
    } else if stopped && tally.unsent > 0 {
        line.push_str(" (stopped on request)");
    }
    let outcome = if stopped {
        Outcome::Stopped
    } else if failure.is_none() && tally.clean() {
        Outcome::Ok
    } else if tally.sent > 0 {
        Outcome::Partial
    } else {
        Outcome::Failed
    };
    let report = RunReport::new(
        "ssmsend",
        started_at,
        outcome,
        SendDetails {
            queue: &settings.messaging.path,
            destinations: [Destination {
                destination: &settings.messaging.destination,
                via: via(settings),
                tally: &tally,
                error: failure.as_ref().map(|e| exit::Chain(e).to_string()),
            }],
            seconds: secs,
        },
    );
    let ended = report.ended;
    write_run_report(settings, report);
    if let Some(m) = metrics {
        let duration = started.elapsed();
        let path = settings.messaging.path.clone();
        let layout = settings.messaging.path_type;
        let queue = blocking(move || crate::status::queue_status(&path, layout, ended)).await?;
        m.record(metrics_run(&tally, queue, outcome, ended, duration));
    }
    macro_rules! summary {
        ($level:ident) => {
            tracing::$level!(
                target: crate::logging::SUMMARY,
                found = tally.found,
                sent = tally.sent,
                rejected = tally.rejected,
                unsent = tally.unsent,
                locked_elsewhere = tally.skipped,
                not_removed = tally.not_removed,
                not_messages = tally.bad(),
                destination = %settings.messaging.destination,
                via = %via(settings),
                seconds = format_args!("{secs:.2}"),
                "{line}"
            )
        };
    }
    if let Some(e) = failure {
        summary!(error);
        return Err(exit::reported(e.context(line)));
    }
    if stopped {
        if tally.unsent > 0 {
            summary!(warn);
        } else {
            summary!(info);
        }
        return Ok(());
    }
    if tally.clean() {
        summary!(info);
        Ok(())
    } else {
        summary!(error);
        Err(exit::reported(anyhow!(line)))
    }
}

/// The metrics' view of a run; the queue as it is after the run (else, when
/// it cannot be listed, what the tally says is left, age unknown).
fn metrics_run(
    t: &Tally,
    queue: Result<crate::status::QueueStatus, SpoolError>,
    outcome: Outcome,
    ended: Timestamp,
    duration: Duration,
) -> SendRun {
    let n = |v: usize| v as u64;
    let (queue_depth, oldest_age) = match queue {
        Ok(q) => (
            n(q.messages),
            q.oldest_age_seconds
                .map(|s| Duration::from_secs(u64::try_from(s).unwrap_or(0))),
        ),
        Err(e) => {
            tracing::warn!("metrics: cannot list the queue after the run: {e}");
            (n(t.unsent + t.not_removed + t.skipped), None)
        }
    };
    SendRun {
        ended,
        duration,
        outcome: Some(outcome),
        messages: vec![
            ("sent", n(t.sent)),
            ("rejected", n(t.rejected)),
            ("unsent", n(t.unsent)),
            ("locked_elsewhere", n(t.skipped)),
            ("not_removed", n(t.not_removed)),
            ("not_a_message", n(t.bad())),
        ],
        queue_depth,
        oldest_age,
    }
}

/// What `ssmsend` adds to the common fields of the run report.
#[derive(serde::Serialize)]
struct SendDetails<'a> {
    queue: &'a std::path::Path,
    /// One per destination (a run sends to one).
    destinations: [Destination<'a>; 1],
    seconds: f64,
}

#[derive(serde::Serialize)]
struct Destination<'a> {
    destination: &'a str,
    via: String,
    #[serde(flatten)]
    tally: &'a Tally,
    /// The transport's error that ended the sending, if any.
    error: Option<String>,
}

/// Writes the run report beside the queue's directory
/// (`[outgoing] path/../ssmsend.last-run.json`); a failure is a warning.
fn write_run_report(settings: &SenderSettings, report: RunReport<SendDetails<'_>>) {
    match crate::report::send_path(&settings.messaging.path) {
        Some(path) => crate::report::write_or_warn(&path, &report),
        None => tracing::warn!(
            "no run report: the queue {} has no parent directory",
            settings.messaging.path.display()
        ),
    }
}

/// Where the messages go, for the summary: `AMS host:port` or the
/// configured STOMP brokers.
fn via(settings: &SenderSettings) -> String {
    match &settings.transport {
        Transport::Ams(a) => format!("AMS {}:{}", a.host, a.port),
        Transport::Stomp(s) => {
            let brokers: Vec<String> = s
                .brokers
                .iter()
                .map(|b| format!("{}:{}", b.host, b.port))
                .collect();
            format!("broker {}", brokers.join(" or "))
        }
    }
}

/// The run's last line: `16/16 messages sent to DEST via AMS host:443`,
/// `12/16 messages sent to DEST via ..., 3 left in the queue for the next
/// run, 1 rejected (...)`, `nothing to send in PATH`.
fn summary_line(t: &Tally, settings: &SenderSettings) -> String {
    if t.found == 0 && t.bad() == 0 {
        return format!(
            "nothing to send: no messages in {}",
            settings.messaging.path.display()
        );
    }
    let mut parts = vec![format!(
        "{}/{} messages sent to {} via {}",
        t.sent,
        t.found,
        settings.messaging.destination,
        via(settings)
    )];
    parts.extend(problems(t));
    parts.join(", ")
}

/// What was not delivered and where it is, one part each.
fn problems(t: &Tally) -> Vec<String> {
    let mut parts = Vec::new();
    if t.unsent > 0 {
        parts.push(format!("{} left in the queue for the next run", t.unsent));
    }
    if t.rejected > 0 {
        parts.push(format!(
            "{} rejected (moved to the reject directory beside the queue, with the reason)",
            t.rejected
        ));
    }
    if t.bad() > 0 {
        let what = if t.bad() == 1 {
            "entry of the queue is not a message"
        } else {
            "entries of the queue are not messages"
        };
        parts.push(format!(
            "{} {what} ({} moved to the reject directory, {} left in place; each named above)",
            t.bad(),
            t.bad_set_aside,
            t.bad_left
        ));
    }
    if t.not_removed > 0 {
        parts.push(format!(
            "{} delivered but not removed from the queue (will be sent again)",
            t.not_removed
        ));
    }
    if t.skipped > 0 {
        parts.push(format!("{} locked by another sender", t.skipped));
    }
    if t.sent_in_parts > 0 {
        parts.push(format!(
            "{} sent in parts after a refusal for size",
            t.sent_in_parts
        ));
    }
    if t.parts_rejected > 0 {
        parts.push(format!(
            "{} record(s) too large to send on their own (written to the reject directory, with the reason)",
            t.parts_rejected
        ));
    }
    parts
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| anyhow!("a blocking task failed: {e}"))
}
