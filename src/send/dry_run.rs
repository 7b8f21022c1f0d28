//! `ssmsend --dry-run`: every queued message read, checked and sealed as a
//! sending run would, and nothing else. Nothing connects, nothing in the
//! queue is locked, moved or removed, and no purge is made.
//!
//! The elements are read without taking their dirq lock (a lock is a file
//! in the queue; another ssmsend may be sending the same queue meanwhile).
//! An element that sender delivers and removes while we look is reported as
//! gone, which is no failure; one it holds locked now is read all the same
//! and marked, since a run now would skip it. The report goes to stdout, one
//! line per message and per bad entry, then one summary line.
//!
//! Exit: 0 when every message would be sent, 1 when one would be rejected,
//! could not be signed or an entry of the queue is not a message, 2 for the
//! configuration and certificate problems a run refuses (the real signer and
//! transport are built as in a run; [`super::check::endpoints`]).

use std::io::Write;

use anyhow::{Context, anyhow};

use super::outbox::{MAX_MESSAGE_BYTES, check};
use crate::config::sender::SenderSettings;
use crate::exit;
use crate::smime::Signer;
use crate::spool::{Queue, SpoolError};

/// What a dry run found.
#[derive(Debug, Default)]
struct Counts {
    found: usize,
    sendable: usize,
    bytes: usize,
    sealed_bytes: usize,
    rejected: usize,
    unsealable: usize,
    gone: usize,
    locked: usize,
    bad: usize,
}

/// `ssmsend --dry-run` for checked `settings`.
pub fn dry_run(settings: &SenderSettings) -> anyhow::Result<()> {
    let signer = Signer::from_settings(&settings.certificates)
        .map_err(exit::usage)?
        .with_cipher(settings.messaging.encryption);
    let endpoints = super::check::endpoints(settings, signer.credentials(), None)?;
    let path = &settings.messaging.path;
    let mut out = std::io::stdout().lock();
    let queue = match Queue::open(path, settings.messaging.path_type) {
        Ok(q) => q,
        Err(SpoolError::MissingRoot(_)) => {
            writeln!(
                out,
                "dry run: [messaging] path {} does not exist: nothing would be sent",
                path.display()
            )
            .context("cannot write to stdout")?;
            return Ok(());
        }
        Err(e @ SpoolError::NotADirectory(_)) => return Err(exit::usage(e)),
        Err(e) => return Err(e.into()),
    };
    let scan = queue.scan()?;
    let mut n = Counts {
        found: scan.elements.len(),
        bad: scan.bad.len(),
        ..Counts::default()
    };
    let reject_dir = queue.reject_dir();
    for entry in &scan.bad {
        let fate = if entry.defect.movable() {
            format!("a run would move it to {}", reject_dir.display())
        } else {
            "a run would leave it in place".into()
        };
        writeln!(
            out,
            "not a message: {:?}: {}; {fate}",
            entry.path, entry.defect
        )
        .context("cannot write to stdout")?;
    }
    for id in &scan.elements {
        let line = message_line(&queue, &signer, id, &mut n);
        writeln!(out, "{id}: {line}").context("cannot write to stdout")?;
    }
    let sealed = if signer.recipient().is_some() {
        "signed and encrypted"
    } else {
        "signed"
    };
    writeln!(
        out,
        "dry run: {} of {} message(s) would be sent to destination {} via {} ({} bytes, {} bytes {sealed})",
        n.sendable,
        n.found,
        settings.messaging.destination,
        endpoints.describe(),
        n.bytes,
        n.sealed_bytes,
    )
    .context("cannot write to stdout")?;
    let mut others = Vec::new();
    if n.rejected > 0 {
        others.push(format!(
            "{} would be rejected (moved to {} with the reason)",
            n.rejected,
            reject_dir.display()
        ));
    }
    if n.unsealable > 0 {
        others.push(format!("{} could not be signed", n.unsealable));
    }
    if n.bad > 0 {
        others.push(not_messages(n.bad));
    }
    if n.locked > 0 {
        others.push(format!("{} locked by another process now", n.locked));
    }
    if n.gone > 0 {
        others.push(format!("{} gone meanwhile", n.gone));
    }
    others.push("nothing was sent, locked, moved or removed".into());
    writeln!(out, "dry run: {}", others.join("; ")).context("cannot write to stdout")?;
    out.flush().context("cannot write to stdout")?;
    if n.rejected + n.unsealable + n.bad == 0 {
        return Ok(());
    }
    Err(anyhow!(
        "dry run: {} message(s) would be rejected, {} could not be signed, {} (listed above)",
        n.rejected,
        n.unsealable,
        not_messages(n.bad),
    ))
}

/// "1 entry of the queue is not a message", "2 entries ... are not messages".
fn not_messages(n: usize) -> String {
    if n == 1 {
        "1 entry of the queue is not a message".into()
    } else {
        format!("{n} entries of the queue are not messages")
    }
}

/// What a run would do with one element, as [`super::queue`] prepares it
/// (read capped, checked, sealed), without its lock.
fn message_line(
    queue: &Queue,
    signer: &Signer,
    id: &crate::spool::ElementId,
    n: &mut Counts,
) -> String {
    let locked = match queue.is_locked(id) {
        Ok(true) => {
            n.locked += 1;
            " (locked by another process now: a run now would skip it)"
        }
        _ => "",
    };
    let body = match queue.peek(id, MAX_MESSAGE_BYTES) {
        Ok(Some(body)) => body,
        Ok(None) => {
            n.gone += 1;
            return "gone meanwhile (another sender delivered it)".into();
        }
        Err(e) => {
            n.rejected += 1;
            return format!("would be rejected: unreadable: {e}");
        }
    };
    if let Err(why) = check(&body) {
        n.rejected += 1;
        return format!("would be rejected: {why}{locked}");
    }
    match signer.seal(&body) {
        Ok(sealed) => {
            n.sendable += 1;
            n.bytes += body.len();
            n.sealed_bytes += sealed.len();
            format!(
                "would be sent: {} bytes, {} as sealed{locked}",
                body.len(),
                sealed.len()
            )
        }
        Err(e) => {
            n.unsealable += 1;
            format!("cannot be signed: {e}{locked}")
        }
    }
}
