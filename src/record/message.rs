//! Grouping rendered records into spool messages.

use std::num::NonZeroUsize;

use super::storage::{STAR_ROOT_CLOSE, STAR_ROOT_OPEN};
use super::{Record, RecordError, RecordType};

/// No message is larger than this: AMS refuses requests over 1 MB after
/// S/MIME signing and base64 (+1/3), and one oversized message would block
/// every message queued behind it.
pub const MAX_MESSAGE_BYTES: usize = 512 * 1024;

/// One spool element: pure ASCII text of one record type, holding at most
/// `max_records` records and at most [`MAX_MESSAGE_BYTES`] bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    kind: RecordType,
    records: usize,
    text: String,
}

impl Message {
    pub fn kind(&self) -> RecordType {
        self.kind
    }

    /// How many records the message carries.
    pub fn record_count(&self) -> usize {
        self.records
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.text.as_bytes()
    }

    pub fn into_string(self) -> String {
        self.text
    }
}

/// How a message of one type wraps its records.
struct Framing {
    header: &'static str,
    separator: &'static str,
    footer: &'static str,
}

/// `None` for energy, which is no APEL message.
fn framing(kind: RecordType) -> Option<Framing> {
    Some(match kind {
        RecordType::Cloud => Framing {
            header: "APEL-cloud-message: v0.4\n",
            separator: "\n%%\n",
            footer: "\n",
        },
        RecordType::Ip => Framing {
            header: r#"{"Type": "APEL Public IP message", "Version": "0.2", "UsageRecords": ["#,
            separator: ", ",
            footer: "]}",
        },
        RecordType::Accelerator => Framing {
            header: r#"{"Type": "APEL-accelerator-message", "Version": "0.1", "UsageRecords": ["#,
            separator: ", ",
            footer: "]}",
        },
        RecordType::Storage => Framing {
            header: STAR_ROOT_OPEN,
            separator: "",
            footer: STAR_ROOT_CLOSE,
        },
        RecordType::Energy => return None,
    })
}

/// Renders records into messages the way cASO's SSM messenger does: every
/// cloud message first, then IP, accelerator and storage ones, records in
/// their given order, a new message every `max_records` records (`[ssm]
/// max_size`) and also before a message would exceed [`MAX_MESSAGE_BYTES`].
/// A record that alone exceeds the limit is an error naming it: never
/// dropped, never truncated. Energy records are not APEL messages: they
/// are left out (the ssm messenger never gets them).
pub fn render_messages(
    records: &[Record],
    max_records: NonZeroUsize,
) -> Result<Vec<Message>, RecordError> {
    render_with_limit(records, max_records, MAX_MESSAGE_BYTES)
}

pub(super) fn render_with_limit(
    records: &[Record],
    max_records: NonZeroUsize,
    max_bytes: usize,
) -> Result<Vec<Message>, RecordError> {
    let mut messages = Vec::new();
    for kind in RecordType::APEL {
        let Some(frame) = framing(kind) else {
            continue;
        };
        let overhead = frame.header.len() + frame.footer.len();
        let mut current: Option<(String, usize)> = None;
        for record in records.iter().filter(|r| r.kind() == kind) {
            let body = render_one(record);
            if overhead + body.len() > max_bytes {
                return Err(RecordError::RecordTooLarge {
                    kind,
                    id: record.id(),
                    bytes: overhead + body.len(),
                    limit: max_bytes,
                });
            }
            if let Some((text, count)) = &current {
                let full = *count >= max_records.get();
                let too_big = text.len() + frame.separator.len() + body.len() + frame.footer.len()
                    > max_bytes;
                if full || too_big {
                    messages.push(finish(kind, current.take(), &frame));
                }
            }
            match &mut current {
                Some((text, count)) => {
                    text.push_str(frame.separator);
                    text.push_str(&body);
                    *count += 1;
                }
                None => {
                    let mut text = String::with_capacity(body.len() * 4 + overhead);
                    text.push_str(frame.header);
                    text.push_str(&body);
                    current = Some((text, 1));
                }
            }
        }
        if current.is_some() {
            messages.push(finish(kind, current, &frame));
        }
    }
    Ok(messages)
}

fn render_one(record: &Record) -> String {
    match record {
        Record::Cloud(r) => r.render(),
        Record::Ip(r) => r.render(),
        Record::Accelerator(r) => r.render(),
        Record::Storage(r) => r.render(),
        Record::Energy(r) => r.render(),
    }
}

fn finish(kind: RecordType, current: Option<(String, usize)>, frame: &Framing) -> Message {
    let (mut text, records) = current.unwrap_or_default();
    text.push_str(frame.footer);
    // Cloud text went through `ascii_text`, StAR and JSON text was escaped to
    // ASCII by their writers, and every number is ASCII.
    debug_assert!(text.is_ascii());
    Message {
        kind,
        records,
        text,
    }
}
