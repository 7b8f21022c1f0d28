//! `caso-extract status` and `ssmsend status`: is accounting flowing? From
//! the files alone (lastrun files, run reports, the queue and its reject
//! directory), without any network access and without changing anything,
//! so it is safe beside a run that is writing or sending. [`table`] prints
//! it for people, `--json` for scripts, [`probe`] judges it for monitoring
//! (`--check`, the Nagios plugin conventions ARGO uses).

pub mod probe;
mod reports;
pub mod table;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::spool::{Layout, Queue, SpoolError};
use crate::time::Timestamp;

pub use reports::{LastRun, RunCounts};

/// Rejected messages listed (all are counted).
pub const REJECTED_SHOWN: usize = 10;
/// `lastrun.*` files looked at in the spool directory, at most.
pub const MAX_PROJECTS: usize = 10_000;

/// What `caso-extract status` reports.
#[derive(Debug, Serialize)]
pub struct ExtractStatus {
    pub now: Timestamp,
    pub spooldir: PathBuf,
    /// Every project with a lastrun file or in the last run report, by id.
    pub projects: Vec<ProjectStatus>,
    /// `caso-extract.last-run.json`.
    pub last_run: Option<LastRun>,
    /// The `ssm` messenger's queue (`[ssm] output_path`), when configured.
    pub queue: Option<QueueStatus>,
    /// `ssmsend.last-run.json` beside that queue, when there is one.
    pub last_send: Option<LastRun>,
    /// Files that could not be read or understood, each naming the file.
    pub problems: Vec<String>,
}

/// What `ssmsend status` reports.
#[derive(Debug, Serialize)]
pub struct SendStatus {
    pub now: Timestamp,
    pub queue: QueueStatus,
    pub last_send: Option<LastRun>,
    pub problems: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct ProjectStatus {
    pub id: String,
    /// Where the next run starts: `None` when never extracted.
    pub lastrun: Option<Timestamp>,
    pub lastrun_age_seconds: Option<i64>,
    /// The period the last run extracted, if it got that far.
    pub period: Option<crate::extract::Period>,
    /// In the last run: `ok` or `failed`; `None` when it was not in it.
    pub outcome: Option<ProjectOutcome>,
    /// The first error of the last run (`object: cause`).
    pub error: Option<String>,
    /// Why the lastrun file cannot be read (the project then fails every
    /// run until it is fixed).
    pub lastrun_error: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProjectOutcome {
    Ok,
    Failed,
}

#[derive(Debug, Serialize)]
pub struct QueueStatus {
    pub path: PathBuf,
    pub layout: String,
    /// `false`: no queue directory yet (nothing extracted yet, or a wrong
    /// path); every count is then 0.
    pub exists: bool,
    pub messages: usize,
    /// When the next message to send (the oldest) was added.
    pub oldest_added: Option<Timestamp>,
    pub oldest_age_seconds: Option<i64>,
    pub locked: Vec<LockStatus>,
    pub temporary_files: usize,
    /// Entries that are not messages: the next send moves them aside.
    pub not_messages: Vec<String>,
    pub rejected: RejectedStatus,
}

#[derive(Debug, Serialize)]
pub struct LockStatus {
    pub id: String,
    pub since: Option<Timestamp>,
    pub age_seconds: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct RejectedStatus {
    pub dir: PathBuf,
    pub count: usize,
    /// The newest [`REJECTED_SHOWN`].
    pub newest: Vec<RejectedMessage>,
}

#[derive(Debug, Serialize)]
pub struct RejectedMessage {
    pub name: String,
    pub when: Option<Timestamp>,
    pub reason: Option<String>,
}

fn timestamp(t: std::time::SystemTime) -> Timestamp {
    match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => Timestamp::from_unix_micros(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
        Err(_) => Timestamp::EPOCH,
    }
}

fn age(now: Timestamp, t: Timestamp) -> i64 {
    now.seconds_since(t)
}

/// The status of the queue at `path`. A missing queue is a status, not an
/// error; one that cannot be listed is an error naming it.
pub fn queue_status(
    path: &Path,
    layout: Layout,
    now: Timestamp,
) -> Result<QueueStatus, SpoolError> {
    let mut status = QueueStatus {
        path: path.to_path_buf(),
        layout: layout.to_string(),
        exists: false,
        messages: 0,
        oldest_added: None,
        oldest_age_seconds: None,
        locked: Vec::new(),
        temporary_files: 0,
        not_messages: Vec::new(),
        rejected: RejectedStatus {
            dir: crate::spool::reject_dir_of(path),
            count: 0,
            newest: Vec::new(),
        },
    };
    let queue = match Queue::open(path, layout) {
        Ok(q) => q,
        Err(SpoolError::MissingRoot(_)) => return Ok(status),
        Err(e) => return Err(e),
    };
    let inv = queue.inventory(REJECTED_SHOWN)?;
    status.exists = true;
    status.messages = inv.messages;
    status.oldest_added = inv.oldest_added.map(timestamp);
    status.oldest_age_seconds = status.oldest_added.map(|t| age(now, t));
    status.locked = inv
        .locks
        .into_iter()
        .map(|(id, since)| {
            let since = since.map(timestamp);
            LockStatus {
                id: id.to_string(),
                since,
                age_seconds: since.map(|t| age(now, t)),
            }
        })
        .collect();
    status.temporary_files = inv.temporaries;
    status.not_messages = inv
        .not_messages
        .iter()
        .map(|b| format!("{:?}: {}", b.path, b.defect))
        .collect();
    status.rejected.count = inv.rejected.count;
    status.rejected.newest = inv
        .rejected
        .newest
        .into_iter()
        .map(|r| RejectedMessage {
            name: r.name,
            when: r.when.map(timestamp),
            reason: r.reason,
        })
        .collect();
    Ok(status)
}

/// `ssmsend status` for the queue at `path` (`[outgoing] path`).
pub fn send_status(path: &Path, layout: Layout, now: Timestamp) -> Result<SendStatus, SpoolError> {
    let queue = queue_status(path, layout, now)?;
    let mut problems = Vec::new();
    let last_send = reports::last_send(path, now, &mut problems);
    Ok(SendStatus {
        now,
        queue,
        last_send,
        problems,
    })
}

/// `caso-extract status`: the projects of `spooldir`, and the queue at
/// `ssm_queue` when the `ssm` messenger is configured.
pub fn extract_status(
    spooldir: &Path,
    ssm_queue: Option<&Path>,
    now: Timestamp,
) -> Result<ExtractStatus, SpoolError> {
    let mut problems = Vec::new();
    let last_run = reports::last_extract(spooldir, now, &mut problems);
    let projects = reports::projects(spooldir, last_run.as_ref(), now, &mut problems);
    let (queue, last_send) = match ssm_queue {
        Some(q) => (
            Some(queue_status(q, Layout::Dirq, now)?),
            reports::last_send(q, now, &mut problems),
        ),
        None => (None, None),
    };
    Ok(ExtractStatus {
        now,
        spooldir: spooldir.to_path_buf(),
        projects,
        last_run: last_run.map(|(run, _)| run),
        queue,
        last_send,
        problems,
    })
}

impl ProjectStatus {
    fn new(id: String) -> Self {
        ProjectStatus {
            id,
            lastrun: None,
            lastrun_age_seconds: None,
            period: None,
            outcome: None,
            error: None,
            lastrun_error: None,
        }
    }
}
