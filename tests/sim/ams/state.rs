//! What the double saw: every request by status, every stored message, signature results.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use bytes::Bytes;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Stored {
    pub seq: u64,
    pub empaid: Option<String>,
    pub message_id: String,
    /// The decoded `data` exactly as received.
    #[serde(skip)]
    pub data: Bytes,
    pub bytes: usize,
    /// False until the signature check ran (it runs off the publish path, on admin reads).
    pub checked: bool,
    /// The signed content after verification (`Content-Type: text/plain` header removed).
    #[serde(skip)]
    pub content: Option<Vec<u8>>,
    pub signer_dn: Option<String>,
    pub verify_error: Option<String>,
}

#[derive(Default)]
pub struct Inner {
    pub publish_requests: u64,
    pub by_status: BTreeMap<String, BTreeMap<u16, u64>>,
    pub messages: Vec<Stored>,
    pub stalled_empaids: BTreeSet<String>,
    pub faulted_empaids: BTreeMap<String, Vec<u16>>,
    pub tokens_issued: u64,
    pub authx509_dns: Vec<String>,
}

#[derive(Default)]
pub struct State {
    pub inner: Mutex<Inner>,
}

#[derive(Serialize)]
pub struct Stats {
    pub publish_requests: u64,
    /// endpoint ("publish", "authx509") -> status -> count.
    pub requests: BTreeMap<String, BTreeMap<u16, u64>>,
    pub messages: usize,
    pub distinct_empaids: usize,
    /// Stored messages beyond the first per empaid.
    pub duplicates: usize,
    pub duplicate_empaids: Vec<String>,
    /// Empaids of requests the double stalled (then processed).
    pub stalled_empaids: Vec<String>,
    /// Empaids of requests answered with an injected error (not stored).
    pub faulted_empaids: BTreeMap<String, Vec<u16>>,
    pub signatures: Signatures,
    pub tokens_issued: u64,
    pub authx509_dns: Vec<String>,
}

#[derive(Serialize)]
pub struct Signatures {
    pub checked: bool,
    /// Checking on, at least one message, and every stored message verified.
    pub all_verified: bool,
    pub verified: usize,
    pub failed: usize,
    pub failures: Vec<String>,
    pub signer_dns: Vec<String>,
}

impl State {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panicked handler cannot leave the counters half-updated in a way that matters here.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn count(&self, endpoint: &str, status: u16) {
        let mut g = self.lock();
        *g.by_status
            .entry(endpoint.to_owned())
            .or_default()
            .entry(status)
            .or_default() += 1;
    }

    pub fn stats(&self, checked: bool) -> Stats {
        let g = self.lock();
        let mut per_id: BTreeMap<&str, usize> = BTreeMap::new();
        for m in &g.messages {
            if let Some(id) = &m.empaid {
                *per_id.entry(id).or_default() += 1;
            }
        }
        let duplicate_empaids: Vec<String> = per_id
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(id, _)| (*id).to_owned())
            .collect();
        let duplicates = per_id.values().map(|n| n - 1).sum();
        let failures: Vec<String> = g
            .messages
            .iter()
            .filter_map(|m| {
                m.verify_error
                    .as_ref()
                    .map(|e| format!("{}: {e}", m.empaid.as_deref().unwrap_or("-")))
            })
            .collect();
        let verified = g.messages.iter().filter(|m| m.signer_dn.is_some()).count();
        let signer_dns: BTreeSet<String> = g
            .messages
            .iter()
            .filter_map(|m| m.signer_dn.clone())
            .collect();
        Stats {
            publish_requests: g.publish_requests,
            requests: g.by_status.clone(),
            messages: g.messages.len(),
            distinct_empaids: per_id.len(),
            duplicates,
            duplicate_empaids,
            stalled_empaids: g.stalled_empaids.iter().cloned().collect(),
            faulted_empaids: g.faulted_empaids.clone(),
            signatures: Signatures {
                checked,
                all_verified: checked && !g.messages.is_empty() && verified == g.messages.len(),
                verified,
                failed: failures.len(),
                failures,
                signer_dns: signer_dns.into_iter().collect(),
            },
            tokens_issued: g.tokens_issued,
            authx509_dns: g.authx509_dns.clone(),
        }
    }
}
