//! The sender's view of the queue, its [`Outbox`]: the part of a sending run
//! both transports share. Take each element of the spool (lock, read, check,
//! seal) ahead of the sender on a few blocking
//! threads, and settle each one afterwards (remove, unlock or reject) on one
//! blocking thread, counting what happened.
//!
//! An element is locked before it is read, so two senders on one dirq queue
//! never both send it; it is unlocked again whenever it is not delivered.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures_util::stream::{self, Stream, StreamExt};
use tokio::sync::Semaphore;

use crate::smime::Signer;
use crate::spool::{BadEntry, ElementId, Queue, SetAside};

/// Messages larger than this are rejected before signing: the brokers and AMS
/// take at most 1 MB, and signing adds to that.
pub const MAX_MESSAGE_BYTES: usize = 1_000_000;

/// A message ready to go: `body` is what goes on the wire (signed, maybe
/// encrypted). Its element is locked by us until it is settled.
#[derive(Debug)]
pub struct Sealed {
    pub id: ElementId,
    pub body: Vec<u8>,
}

/// What [`check`] refuses, as the reason written beside a rejected message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalid {
    Empty,
    TooLarge(usize),
    NotAscii {
        offset: usize,
        byte: u8,
    },
    /// The APEL server's loader would reject it (`[sender] loader_checks`).
    Loader(crate::record::loader::LoaderRejection),
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Invalid::Empty => f.write_str("empty message"),
            // Reading stops one byte past the limit: `n` is a lower bound.
            Invalid::TooLarge(_) => write!(
                f,
                "message larger than the limit of {MAX_MESSAGE_BYTES} bytes"
            ),
            Invalid::NotAscii { offset, byte } => write!(
                f,
                "not ASCII text: byte 0x{byte:02x} at offset {offset} (APEL messages are ASCII)"
            ),
            Invalid::Loader(why) => why.fmt(f),
        }
    }
}

/// Whether a queued message can be sent at all, the APEL loader's rules
/// included.
pub fn check(body: &[u8]) -> Result<(), Invalid> {
    check_with(body, true)
}

/// [`check`], with the APEL loader's rules only when `loader_checks`.
pub fn check_with(body: &[u8], loader_checks: bool) -> Result<(), Invalid> {
    if body.is_empty() {
        return Err(Invalid::Empty);
    }
    if body.len() > MAX_MESSAGE_BYTES {
        return Err(Invalid::TooLarge(body.len()));
    }
    // The vectorised check first: nearly every message passes it.
    if body.is_ascii() {
        if loader_checks {
            crate::record::loader::check(body).map_err(Invalid::Loader)?;
        }
        return Ok(());
    }
    let offset = body.iter().position(|b| !b.is_ascii()).unwrap_or(0);
    Err(Invalid::NotAscii {
        offset,
        byte: body[offset],
    })
}

/// What became of the elements of one run; `found` is what the run started with.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Tally {
    pub found: usize,
    /// Delivered and removed from the queue.
    pub sent: usize,
    /// Moved to the reject directory.
    pub rejected: usize,
    /// Locked by another process (or already gone): its business, not ours.
    #[serde(rename = "locked_elsewhere")]
    pub skipped: usize,
    /// Still queued for the next run (not delivered, or not attempted).
    #[serde(rename = "left")]
    pub unsent: usize,
    /// Delivered but could not be removed: will be sent again next run.
    pub not_removed: usize,
    /// Entries of the queue that are not messages (see [`crate::spool::Scan`]),
    /// moved to the reject directory.
    pub bad_set_aside: usize,
    /// Bad entries left in the queue (not movable, or the move failed).
    pub bad_left: usize,
    /// Of `sent`: sent in parts after a refusal for size (see `send::parts`).
    #[serde(skip_serializing_if = "is_zero")]
    pub sent_in_parts: usize,
    /// Records of those, each too large on its own, written to the reject
    /// directory.
    #[serde(skip_serializing_if = "is_zero")]
    pub parts_rejected: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Tally {
    /// Nothing left behind, nothing moved aside, nothing to repeat, nothing
    /// in the queue that is not a message.
    pub fn clean(&self) -> bool {
        self.unsent == 0
            && self.rejected == 0
            && self.not_removed == 0
            && self.bad() == 0
            && self.parts_rejected == 0
    }

    /// Bad entries found in the queue.
    pub fn bad(&self) -> usize {
        self.bad_set_aside + self.bad_left
    }
}

/// Reports every entry of the queue that is not a message, once, with its
/// path and what is wrong, and moves it to the reject directory where that
/// is safe (blocking). Counts them into `tally`.
pub fn set_aside_all(queue: &Queue, bad: &[BadEntry], tally: &mut Tally) {
    for entry in bad {
        let what = format!("{:?}: {}", entry.path, entry.defect);
        match queue.set_aside(entry) {
            Ok(SetAside::Moved(to)) => {
                tracing::error!("not a message: {what}; moved to {to:?}");
                tally.bad_set_aside += 1;
            }
            Ok(SetAside::Left) => {
                tracing::error!("not a message: {what}; left in place");
                tally.bad_left += 1;
            }
            // Someone else removed it meanwhile: nothing to report.
            Ok(SetAside::Gone) => {}
            Err(e) => {
                tracing::error!("not a message: {what}; left in place: {e}");
                tally.bad_left += 1;
            }
        }
    }
}

/// What to do with a settled element.
enum Settle {
    Remove(ElementId),
    /// Sent in parts, `usize` of its records rejected: remove it.
    RemoveInParts(ElementId, usize),
    Unlock(ElementId),
    Reject(ElementId, String),
    /// Could not be locked (or read, and not rejected): left as it is.
    Unsent,
    Skipped,
}

/// The sender's outbox: the queue, the signer, and the thread that settles
/// elements.
pub struct Outbox {
    queue: Arc<Queue>,
    signer: Arc<Signer>,
    settle: mpsc::Sender<Settle>,
    settler: JoinHandle<Tally>,
    /// Set when the run must stop taking elements (a fatal error).
    stop: Arc<AtomicBool>,
    /// Messages locked and sealed ahead of the sender at most.
    read_ahead: usize,
    /// Messages being read and sealed at once (one per core: signing is
    /// CPU-bound).
    sealing: Arc<Semaphore>,
    /// Check each message as the APEL loader will (`[sender] loader_checks`).
    loader_checks: bool,
}

impl Outbox {
    /// An outbox that keeps up to `read_ahead` messages sealed ahead of the
    /// sender, sealing at most `sealers` at a time.
    pub fn new(
        queue: Arc<Queue>,
        signer: Arc<Signer>,
        read_ahead: usize,
        sealers: usize,
    ) -> std::io::Result<Outbox> {
        let (settle, rx) = mpsc::channel();
        let q = Arc::clone(&queue);
        let settler = std::thread::Builder::new()
            .name("ssmsend-settle".into())
            .spawn(move || settle_all(&q, rx))?;
        Ok(Outbox {
            queue,
            signer,
            settle,
            settler,
            stop: Arc::new(AtomicBool::new(false)),
            read_ahead: read_ahead.max(1),
            sealing: Arc::new(Semaphore::new(sealers.max(1))),
            loader_checks: true,
        })
    }

    /// Whether messages are checked against the APEL loader's rules.
    pub fn with_loader_checks(mut self, on: bool) -> Outbox {
        self.loader_checks = on;
        self
    }

    /// Stops taking new elements (those already taken still come out of
    /// [`Outbox::sealed`] and must be settled).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Every element of `ids` that this process locked and sealed, in queue
    /// order. A task of its own takes the elements (up to `read_ahead` ahead
    /// of the consumer of the stream, at most `sealers` being sealed at a time
    /// on blocking threads), so signing goes on while the transport waits for
    /// the broker, and sending while a message is signed. Elements locked
    /// elsewhere, and those rejected, never come out; once [`Outbox::stop`]
    /// was called, nothing more does (what was sealed ahead is unlocked).
    /// The stream must be read to its end: every element it took is settled
    /// only then.
    pub fn sealed(&self, ids: Vec<ElementId>) -> impl Stream<Item = Sealed> + use<> {
        let stop = Arc::clone(&self.stop);
        let stop_taking = Arc::clone(&self.stop);
        let queue = Arc::clone(&self.queue);
        let signer = Arc::clone(&self.signer);
        let settle = self.settle.clone();
        let settle_dropped = self.settle.clone();
        let sealing = Arc::clone(&self.sealing);
        let loader_checks = self.loader_checks;
        let (jobs, pending) = tokio::sync::mpsc::channel(self.read_ahead);
        tokio::spawn(async move {
            for id in ids {
                if stop_taking.load(Ordering::Acquire) {
                    break;
                }
                // FIFO: elements are taken in queue order.
                let Ok(permit) = Arc::clone(&sealing).acquire_owned().await else {
                    break;
                };
                let (queue, signer) = (Arc::clone(&queue), Arc::clone(&signer));
                let job = tokio::task::spawn_blocking(move || {
                    let prepared = prepare(&queue, &signer, id, loader_checks);
                    drop(permit);
                    prepared
                });
                if let Err(unread) = jobs.send(job).await {
                    // Nobody reads the stream any more: this one is not sent.
                    if let Ok(prepared) = unread.0.await {
                        let _ = settle_dropped.send(prepared.unsent());
                    }
                    break;
                }
            }
        });
        stream::unfold(pending, |mut pending| async move {
            let job = pending.recv().await?;
            Some((job.await, pending))
        })
        .filter_map(move |joined| {
            let outcome = match joined {
                Ok(p) => p,
                Err(e) => Prepared::Fatal(None, format!("message preparation failed: {e}")),
            };
            // Once stopped, what was sealed ahead is not sent after all.
            let outcome = match outcome {
                Prepared::Ready(m) if !stop.load(Ordering::Acquire) => {
                    return std::future::ready(Some(m));
                }
                other => other,
            };
            if let Prepared::Fatal(_, why) = &outcome {
                tracing::error!("{why}; stopping");
                stop.store(true, Ordering::Release);
            }
            let _ = settle.send(outcome.unsent());
            std::future::ready(None)
        })
    }

    /// Delivered: remove it from the queue.
    pub fn delivered(&self, id: ElementId) {
        let _ = self.settle.send(Settle::Remove(id));
    }

    /// Delivered in parts (see `send::parts`), `rejected` of its records
    /// in the reject directory: remove it.
    pub fn delivered_in_parts(&self, id: ElementId, rejected: usize) {
        let _ = self.settle.send(Settle::RemoveInParts(id, rejected));
    }

    /// The message of a locked element, read again (to send it in parts).
    pub async fn read_locked(&self, id: &ElementId) -> Result<Vec<u8>, String> {
        let (queue, id) = (Arc::clone(&self.queue), id.clone());
        on_blocking_thread(move || queue.get(&id, MAX_MESSAGE_BYTES)).await
    }

    /// `body` signed (and encrypted) as every message is.
    pub async fn seal(&self, body: &[u8]) -> Result<Vec<u8>, String> {
        let (signer, body) = (Arc::clone(&self.signer), body.to_vec());
        on_blocking_thread(move || signer.seal(&body)).await
    }

    /// Writes one part of the locked element `id` to the reject directory
    /// ([`Queue::reject_part`]).
    pub async fn reject_part(
        &self,
        id: &ElementId,
        label: &str,
        body: Vec<u8>,
        reason: &str,
    ) -> Result<std::path::PathBuf, String> {
        let queue = Arc::clone(&self.queue);
        let (id, label, reason) = (id.clone(), label.to_owned(), reason.to_owned());
        on_blocking_thread(move || queue.reject_part(&id, &label, &body, &reason)).await
    }

    /// Not delivered: leave it queued for the next run.
    pub fn keep(&self, id: ElementId) {
        let _ = self.settle.send(Settle::Unlock(id));
    }

    /// Can never be delivered: move it to the reject directory.
    pub fn reject(&self, id: ElementId, reason: String) {
        let _ = self.settle.send(Settle::Reject(id, reason));
    }

    /// Waits for every element to be settled; `found` of them were listed.
    /// Every stream from [`Outbox::sealed`] must have been dropped (blocking).
    pub fn finish(self, found: usize) -> Tally {
        let Outbox {
            settle, settler, ..
        } = self;
        drop(settle);
        let mut tally = settler.join().unwrap_or_default();
        tally.found = found;
        let accounted =
            tally.sent + tally.rejected + tally.skipped + tally.unsent + tally.not_removed;
        // Never taken (the run stopped first): still queued.
        tally.unsent += found.saturating_sub(accounted);
        tally
    }
}

/// Runs `f` on a blocking thread; its error (or the thread's) as text.
async fn on_blocking_thread<T, E>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, String>
where
    T: Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// What preparing one element gave.
enum Prepared {
    Ready(Sealed),
    Skipped,
    Reject(ElementId, String),
    Unsent,
    /// The run cannot go on (signing is broken); the element, if locked, is
    /// unlocked.
    Fatal(Option<ElementId>, String),
}

impl Prepared {
    /// What becomes of an element that is not sent (or not sent after all):
    /// a sealed one is unlocked, the others settled as prepared.
    fn unsent(self) -> Settle {
        match self {
            Prepared::Ready(m) => Settle::Unlock(m.id),
            Prepared::Skipped => Settle::Skipped,
            Prepared::Reject(id, reason) => Settle::Reject(id, reason),
            Prepared::Unsent | Prepared::Fatal(None, _) => Settle::Unsent,
            Prepared::Fatal(Some(id), _) => Settle::Unlock(id),
        }
    }
}

/// Lock, read, check, seal one element (blocking).
fn prepare(queue: &Queue, signer: &Signer, id: ElementId, loader_checks: bool) -> Prepared {
    let span = crate::logging::message_span(&id);
    let _entered = span.enter();
    match queue.lock(&id) {
        Ok(true) => {}
        Ok(false) => {
            tracing::info!("locked by another sender: not sent by this one");
            return Prepared::Skipped;
        }
        Err(e) => {
            tracing::error!("cannot lock, left in the queue: {e}");
            return Prepared::Unsent;
        }
    }
    let body = match queue.get(&id, MAX_MESSAGE_BYTES) {
        Ok(b) => b,
        Err(e) => return Prepared::Reject(id, format!("unreadable: {e}")),
    };
    if let Err(why) = check_with(&body, loader_checks) {
        return Prepared::Reject(id, why.to_string());
    }
    match signer.seal(&body) {
        Ok(body) => Prepared::Ready(Sealed { id, body }),
        Err(e) => Prepared::Fatal(Some(id), e.to_string()),
    }
}

/// Removals made durable together at most, and how long the first of them
/// waits for others: confirmations arrive one by one, and one directory
/// fsync for a few dozen costs what one for each would.
const REMOVAL_BATCH: usize = 64;
const REMOVAL_LINGER: Duration = Duration::from_millis(20);

/// The settling thread: applies every decision and counts them. Removals are
/// made durable in batches (see [`REMOVAL_BATCH`]).
fn settle_all(queue: &Queue, rx: mpsc::Receiver<Settle>) -> Tally {
    let mut tally = Tally::default();
    let mut removals: Vec<ElementId> = Vec::new();
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        let mut deadline: Option<Instant> = None;
        while let Some(action) = next {
            match action {
                Settle::Remove(id) => removals.push(id),
                Settle::RemoveInParts(id, rejected) => {
                    tally.sent_in_parts += 1;
                    tally.parts_rejected += rejected;
                    removals.push(id);
                }
                other => settle_one(queue, other, &mut tally),
            }
            if removals.len() >= REMOVAL_BATCH {
                break;
            }
            next = if removals.is_empty() {
                rx.try_recv().ok()
            } else {
                let due = *deadline.get_or_insert_with(|| Instant::now() + REMOVAL_LINGER);
                rx.recv_timeout(due.saturating_duration_since(Instant::now()))
                    .ok()
            };
        }
        if !removals.is_empty() {
            let results = queue.remove_all(&removals);
            for (id, result) in removals.drain(..).zip(results) {
                match result {
                    Ok(()) => tally.sent += 1,
                    Err(e) => {
                        let _s = crate::logging::message_span(&id).entered();
                        tracing::error!(
                            "delivered, but cannot remove it from the queue (it will be sent again): {e}"
                        );
                        tally.not_removed += 1;
                    }
                }
            }
        }
    }
    tally
}

fn settle_one(queue: &Queue, action: Settle, tally: &mut Tally) {
    match action {
        Settle::Skipped => tally.skipped += 1,
        Settle::Unsent => tally.unsent += 1,
        Settle::Remove(_) | Settle::RemoveInParts(..) => {}
        Settle::Unlock(id) => {
            let _s = crate::logging::message_span(&id).entered();
            if let Err(e) = queue.unlock(&id) {
                tracing::warn!("cannot unlock (a later purge will): {e}");
            }
            tally.unsent += 1;
        }
        Settle::Reject(id, reason) => {
            let _s = crate::logging::message_span(&id).entered();
            match queue.reject(&id, &reason) {
                Ok(path) => {
                    tracing::error!("rejected: {reason}; moved to {}", path.display());
                    tally.rejected += 1;
                }
                Err(e) => {
                    tracing::error!("{reason}, and cannot move it aside: {e}");
                    if let Err(e) = queue.unlock(&id) {
                        tracing::warn!("cannot unlock (a later purge will): {e}");
                    }
                    tally.unsent += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks() {
        assert_eq!(check(b""), Err(Invalid::Empty));
        assert_eq!(check(b"APEL-cloud-message: v0.4\n"), Ok(()));
        assert_eq!(
            check("caf\u{e9}".as_bytes()),
            Err(Invalid::NotAscii {
                offset: 3,
                byte: 0xc3
            })
        );
        // The size limit alone (a line of `a` is no APEL message).
        assert_eq!(check_with(&vec![b'a'; MAX_MESSAGE_BYTES], false), Ok(()));
        assert_eq!(
            check(&vec![b'a'; MAX_MESSAGE_BYTES + 1]),
            Err(Invalid::TooLarge(MAX_MESSAGE_BYTES + 1))
        );
        assert_eq!(
            Invalid::NotAscii {
                offset: 3,
                byte: 0xc3
            }
            .to_string(),
            "not ASCII text: byte 0xc3 at offset 3 (APEL messages are ASCII)"
        );
    }
}
