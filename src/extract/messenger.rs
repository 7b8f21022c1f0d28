//! Where one project's records go: the `ssm` spool, `noop`, `logstash` or
//! `greendigit_cim`, each with its `[messenger_*] record_types` filter;
//! `--dry-run` prints the messages instead.
//!
//! The spool and the lastrun files are reached through two small traits,
//! [`MessageSink`] and [`LastrunStore`], so the orchestration can be tested with
//! failing fakes; production uses [`crate::spool`] and [`crate::lastrun`].

use std::io::Write;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::cim::Cim;
use crate::config::caso::Messenger as MessengerKind;
use crate::record::{
    EnergyRecord, Message, Record, RecordType, render_energy_array, render_messages,
};
use crate::time::Timestamp;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Where the `ssm` messenger puts messages: a queue that takes one project's
/// messages at once (the spool in production, a failing fake in tests).
pub trait MessageSink: Send + Sync {
    /// Adds every message durably before returning; on error no message of
    /// this call may be left half-written (whole elements only).
    fn add_all(&self, messages: &[Message]) -> Result<(), BoxError>;
    /// For log lines: where the messages go.
    fn describe(&self) -> String;
}

/// Per-project lastrun dates.
pub trait LastrunStore: Send + Sync {
    /// `None` when the project has never been extracted.
    fn read(&self, project_id: &str) -> Result<Option<Timestamp>, BoxError>;
    /// Atomically replaces the project's date.
    fn write(&self, project_id: &str, next_from: Timestamp) -> Result<(), BoxError>;
}

impl MessageSink for crate::spool::Queue {
    /// One batch: every message is written, the file system synced once,
    /// then all are linked into the queue (see [`crate::spool::Batch`]).
    fn add_all(&self, messages: &[Message]) -> Result<(), BoxError> {
        let mut batch = self.batch();
        for m in messages {
            batch.add(m.as_bytes())?;
        }
        batch.commit()?;
        Ok(())
    }

    fn describe(&self) -> String {
        self.root().display().to_string()
    }
}

/// The lastrun files cASO uses: `<spooldir>/lastrun.<project id>`.
#[derive(Clone, Debug)]
pub struct LastrunFiles {
    pub spooldir: std::path::PathBuf,
}

impl LastrunStore for LastrunFiles {
    fn read(&self, project_id: &str) -> Result<Option<Timestamp>, BoxError> {
        Ok(crate::lastrun::read(&self.spooldir, project_id)?)
    }

    fn write(&self, project_id: &str, next_from: Timestamp) -> Result<(), BoxError> {
        Ok(crate::lastrun::write(
            &self.spooldir,
            project_id,
            next_from,
        )?)
    }
}

/// How long to wait for Logstash to accept a connection or the records.
const LOGSTASH_TIMEOUT: Duration = Duration::from_secs(30);

/// One configured messenger.
#[derive(Clone)]
pub enum Messenger {
    Ssm {
        spool: Arc<dyn MessageSink>,
        types: Vec<RecordType>,
    },
    Noop {
        types: Vec<RecordType>,
    },
    Logstash {
        host: String,
        port: u16,
        types: Vec<RecordType>,
    },
    /// Takes energy records only (the service's JSON has no other type).
    GreenDigitCim {
        cim: Arc<Cim>,
        types: Vec<RecordType>,
    },
}

impl std::fmt::Debug for Messenger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Messenger {
    pub fn kind(&self) -> MessengerKind {
        match self {
            Messenger::Ssm { .. } => MessengerKind::Ssm,
            Messenger::Noop { .. } => MessengerKind::Noop,
            Messenger::Logstash { .. } => MessengerKind::Logstash,
            Messenger::GreenDigitCim { .. } => MessengerKind::GreenDigitCim,
        }
    }

    pub fn types(&self) -> &[RecordType] {
        match self {
            Messenger::Ssm { types, .. }
            | Messenger::Noop { types }
            | Messenger::Logstash { types, .. }
            | Messenger::GreenDigitCim { types, .. } => types,
        }
    }

    /// For log lines and failures.
    pub fn describe(&self) -> String {
        match self {
            Messenger::Ssm { spool, .. } => format!("ssm spool {}", spool.describe()),
            Messenger::Noop { .. } => "noop messenger".into(),
            Messenger::Logstash { host, port, .. } => format!("logstash {host}:{port}"),
            Messenger::GreenDigitCim { cim, .. } => format!("greendigit_cim {}", cim.describe()),
        }
    }

    /// The spool messages of one project's records of the types this
    /// messenger takes, to be added with other projects' in one
    /// [`MessageSink::add_all`] (one sync for all); `None` for the messengers
    /// that send at once ([`Messenger::push`]).
    pub fn spool_messages(
        &self,
        records: &[Record],
        max_records: NonZeroUsize,
    ) -> Option<Result<Vec<Message>, String>> {
        let Messenger::Ssm { types, .. } = self else {
            return None;
        };
        let selected: Vec<Record> = records
            .iter()
            .filter(|r| types.contains(&r.kind()))
            .cloned()
            .collect();
        if selected.is_empty() {
            return Some(Ok(Vec::new()));
        }
        Some(render_messages(&selected, max_records).map_err(|e| e.to_string()))
    }

    /// The spool of the `ssm` messenger.
    pub fn spool(&self) -> Option<&Arc<dyn MessageSink>> {
        match self {
            Messenger::Ssm { spool, .. } => Some(spool),
            _ => None,
        }
    }

    /// Sends the records of the types this messenger takes; returns how many.
    pub async fn push(
        &self,
        records: &[Record],
        max_records: NonZeroUsize,
    ) -> Result<usize, String> {
        let selected: Vec<Record> = records
            .iter()
            .filter(|r| self.types().contains(&r.kind()))
            .cloned()
            .collect();
        if selected.is_empty() {
            return Ok(0);
        }
        match self {
            Messenger::Ssm { spool, .. } => {
                let messages =
                    render_messages(&selected, max_records).map_err(|e| e.to_string())?;
                let spool = spool.clone();
                tokio::task::spawn_blocking(move || spool.add_all(&messages))
                    .await
                    .map_err(|e| format!("spool task failed: {e}"))?
                    .map_err(|e| e.to_string())?;
            }
            Messenger::Noop { .. } => {
                tracing::info!(
                    records = selected.len(),
                    "noop messenger: records discarded"
                );
            }
            Messenger::Logstash { host, port, .. } => {
                send_logstash(host, *port, &selected).await?;
            }
            Messenger::GreenDigitCim { cim, .. } => {
                let energy = energy_records(&selected);
                let published = cim.publish(&energy).await.map_err(|e| e.to_string())?;
                tracing::debug!(
                    records = published.records,
                    status = published.status,
                    requests = published.requests,
                    "published to GreenDIGIT CIM"
                );
                return Ok(published.records);
            }
        }
        Ok(selected.len())
    }
}

/// One JSON object per line (our [`Record`] serialization: a `type` field
/// plus the record's fields), over one TCP connection.
async fn send_logstash(host: &str, port: u16, records: &[Record]) -> Result<(), String> {
    let mut payload = Vec::new();
    for r in records {
        serde_json::to_writer(&mut payload, r).map_err(|e| e.to_string())?;
        payload.push(b'\n');
    }
    let work = async {
        let mut stream = tokio::net::TcpStream::connect((host, port)).await?;
        stream.write_all(&payload).await?;
        stream.shutdown().await
    };
    match tokio::time::timeout(LOGSTASH_TIMEOUT, work).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "no answer within {}",
            humantime::format_duration(LOGSTASH_TIMEOUT)
        )),
    }
}

fn energy_records(records: &[Record]) -> Vec<EnergyRecord> {
    records
        .iter()
        .filter_map(|r| match r {
            Record::Energy(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

/// `--dry-run`: every record, rendered as the spool messages would be;
/// energy records last, as the JSON array the CIM service would get (one
/// line). Returns the messages printed (the energy array counts one).
pub fn print_messages(
    out: &mut dyn Write,
    records: &[Record],
    max_records: NonZeroUsize,
) -> Result<usize, String> {
    let messages = render_messages(records, max_records).map_err(|e| e.to_string())?;
    let failed = |e: std::io::Error| format!("cannot write to stdout: {e}");
    for m in &messages {
        let text = m.as_str();
        let newline = if text.ends_with('\n') { "" } else { "\n" };
        write!(out, "{text}{newline}").map_err(failed)?;
    }
    let energy = energy_records(records);
    if energy.is_empty() {
        return Ok(messages.len());
    }
    writeln!(out, "{}", render_energy_array(&energy)).map_err(failed)?;
    Ok(messages.len() + 1)
}
