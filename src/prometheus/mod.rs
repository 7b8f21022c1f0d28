//! Prometheus client for the energy records: the energy of many VMs at
//! once, summed by Prometheus.
//!
//! cASO 5.2.2 sends one `query_range` per VM and chunk
//! (`metric{labels,uuid="<vm>"}`, GET) and adds every point it gets. We
//! send one instant query per group of VMs and chunk that sums the very
//! same points where they are ([`query::sum_query`]: a subquery over
//! `uuid=~"id1|id2|..."`, POSTed so a long selector meets no URL limit),
//! and add each series' sum to its VM: one number per series crosses the
//! network instead of 11,000 points, and Prometheus encodes no JSON for
//! them. Sums equal cASO's to a relative 1e-12 (Prometheus adds in its own
//! order). Groups are cut at [`MAX_SAMPLES_PER_REQUEST`] points and at the
//! selector limit. Requests run at most `[prometheus] concurrency`
//! at a time (a semaphore shared by every clone of the client); bodies are
//! read capped ([`crate::net::read_body`]); a Prometheus error body is a
//! typed [`PrometheusError::Query`]; every wait ends on a stop request.
//!
//! Unlike cASO, a failed query is an error for the caller (cASO logs it and
//! sums what it got, so the record silently undercounts: defect 3).

pub mod decode;
#[cfg(test)]
mod proptests;
pub mod query;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::future::try_join_all;
use reqwest::{StatusCode, Url};
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::config::caso::{PrometheusSettings, valid_label_name};
use crate::daemon::Shutdown;
use crate::net::{BodyError, Redirect, excerpt, origin, read_body, same_origin_redirects};
use crate::time::Timestamp;
use decode::{ApiError, EnergySink, Series};
use query::{Chunk, MAX_POINTS, chunks, energy_factor, groups, selector, sum_query};

/// Largest answer read (16 MiB: a series' sum is a few hundred bytes, so
/// this is tens of thousands of series); a longer one fails the request.
pub const MAX_BODY_BYTES: usize = 16 << 20;

/// Points one request may make Prometheus read at most (VMs x points of a
/// chunk): 2 M, a 25th of Prometheus's default `--query.max-samples`.
pub const MAX_SAMPLES_PER_REQUEST: usize = 2_000_000;

/// Error bodies longer than this are only excerpted, never decoded.
const MAX_ERROR_JSON_BYTES: usize = 64 << 10;

/// Longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// caso.conf's `[prometheus]` (config's [`PrometheusSettings`]) and the
/// client's own limits.
#[derive(Clone, Debug, PartialEq)]
pub struct PrometheusConfig {
    pub settings: PrometheusSettings,
    /// Attempts after the first on connection errors, timeouts, 429 and 5xx
    /// (2).
    pub retries: u32,
    /// First wait between attempts, doubled each time (1 s).
    pub backoff: Duration,
    /// VMs per request at most; `None` (the default): as many as
    /// [`MAX_SAMPLES_PER_REQUEST`] allows.
    pub vms_per_request: Option<usize>,
}

impl PrometheusConfig {
    pub fn from_settings(settings: &PrometheusSettings) -> Self {
        PrometheusConfig {
            settings: settings.clone(),
            retries: 2,
            backoff: Duration::from_secs(1),
            vms_per_request: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PrometheusError {
    #[error("[prometheus] {field}: {detail}")]
    Config { field: &'static str, detail: String },
    #[error("Prometheus {origin} {path}: HTTP {status}, {error_type}: {message}")]
    Query {
        origin: String,
        path: String,
        status: u16,
        error_type: String,
        message: String,
    },
    #[error("Prometheus {origin} {path}: HTTP {status}: {message}")]
    Http {
        origin: String,
        path: String,
        status: u16,
        message: String,
    },
    #[error("Prometheus {origin} {path}: the answer is over {limit} bytes")]
    TooLarge {
        origin: String,
        path: String,
        limit: usize,
    },
    #[error("Prometheus {origin} {path}: malformed answer: {detail}")]
    Malformed {
        origin: String,
        path: String,
        detail: String,
    },
    #[error("Prometheus {origin} {path}: no answer within {timeout:?} ({attempts} attempts)")]
    Timeout {
        origin: String,
        path: String,
        timeout: Duration,
        attempts: u32,
    },
    #[error("Prometheus {origin} {path}: {detail} ({attempts} attempts)")]
    Transport {
        origin: String,
        path: String,
        detail: String,
        attempts: u32,
    },
    #[error("Prometheus: {0}")]
    Redirected(Redirect),
    #[error("Prometheus query stopped on request")]
    Stopped,
}

/// The energy of one VM's samples over a period.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct VmEnergy {
    /// Wh: every sample x step / 3600 / 1e6 (NaN when a sample is NaN, as
    /// cASO's sum is).
    pub wh: f64,
    /// Series sums added, over all chunks (0: the VM has no samples in the
    /// period).
    pub series: u64,
}

/// A Prometheus server; clones share the connection pool, the semaphore
/// and the request counter.
#[derive(Clone, Debug)]
pub struct Prometheus {
    client: reqwest::Client,
    cfg: Arc<PrometheusConfig>,
    permits: Arc<Semaphore>,
    requests: Arc<AtomicU64>,
    url: Url,
}

impl Prometheus {
    pub fn new(cfg: PrometheusConfig) -> Result<Prometheus, PrometheusError> {
        let s = &cfg.settings;
        if s.step_seconds == 0 {
            return Err(PrometheusError::Config {
                field: "prometheus_step_seconds",
                detail: "must be at least 1".into(),
            });
        }
        for (field, name) in [("vm_uuid_label_name", &s.uuid_label)] {
            if !valid_label_name(name) {
                return Err(PrometheusError::Config {
                    field,
                    detail: format!("{name:?} is not a Prometheus label name"),
                });
            }
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(s.timeout)
            .timeout(s.timeout)
            .redirect(same_origin_redirects())
            .user_agent(concat!("cloud-accounting/", env!("CARGO_PKG_VERSION")));
        if !s.verify_tls {
            tracing::warn!(endpoint = %origin(&s.endpoint), "prometheus_verify_ssl = false: the TLS certificate of Prometheus is NOT verified");
            builder = builder
                .danger_accept_invalid_certs(true)
                .danger_accept_invalid_hostnames(true);
        }
        let client = builder.build().map_err(|e| PrometheusError::Config {
            field: "prometheus_endpoint",
            detail: format!("cannot build the HTTP client: {e}"),
        })?;
        // `<endpoint>/api/v1/query`, keeping a path prefix.
        let mut url = s.endpoint.clone();
        let path = format!("{}/api/v1/query", url.path().trim_end_matches('/'));
        url.set_path(&path);
        url.set_query(None);
        Ok(Prometheus {
            client,
            permits: Arc::new(Semaphore::new(s.concurrency.max(1))),
            cfg: Arc::new(cfg),
            requests: Arc::default(),
            url,
        })
    }

    pub fn config(&self) -> &PrometheusConfig {
        &self.cfg
    }

    /// Requests sent so far (every attempt counts).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// One instant query at `time` (Unix seconds), decoded as a vector.
    pub async fn query(
        &self,
        query: &str,
        time: i64,
        stop: &Shutdown,
    ) -> Result<Vec<Series>, PrometheusError> {
        let body = self.send(query, time, stop).await?;
        decode::vector(&body).map_err(|e| self.malformed(e))
    }

    /// The energy of each VM of `vms` over `[from, to]`: cASO's chunks, one
    /// request per group of VMs and chunk. VMs without samples have
    /// `series == 0`. Any failed request fails the whole call.
    pub async fn energy(
        &self,
        vms: &[Uuid],
        from: Timestamp,
        to: Timestamp,
        stop: &Shutdown,
    ) -> Result<HashMap<Uuid, VmEnergy>, PrometheusError> {
        let (cfg, s) = (&self.cfg, &self.cfg.settings);
        let windows = chunks(from, to, s.step_seconds);
        let points = windows
            .first()
            .map_or(1, |c| c.points(s.step_seconds))
            .clamp(1, MAX_POINTS + 1);
        let by_samples = (MAX_SAMPLES_PER_REQUEST / points as usize).max(1);
        let per_request = cfg.vms_per_request.unwrap_or(by_samples).max(1);
        let fixed = selector(&s.metric_name, &s.labels, &s.uuid_label, &[]).len();
        let work = groups(vms, per_request, fixed)
            .into_iter()
            .map(|group| self.group_energy(group, &windows, stop));
        let mut out = HashMap::with_capacity(vms.len());
        for part in try_join_all(work).await? {
            out.extend(part);
        }
        Ok(out)
    }

    /// One group: its chunks asked at once (within the shared limit of
    /// requests in flight), each answer's sums then added in chunk order,
    /// so the result does not depend on which answer comes first.
    async fn group_energy(
        &self,
        group: &[Uuid],
        windows: &[Chunk],
        stop: &Shutdown,
    ) -> Result<Vec<(Uuid, VmEnergy)>, PrometheusError> {
        let s = &self.cfg.settings;
        let query = selector(&s.metric_name, &s.labels, &s.uuid_label, group);
        let index: HashMap<String, usize> = group
            .iter()
            .enumerate()
            .map(|(i, id)| (id.hyphenated().to_string(), i))
            .collect();
        let asks = windows
            .iter()
            .filter_map(|chunk| sum_query(&query, *chunk, s.step_seconds))
            .map(|(query, time)| {
                let index = &index;
                async move {
                    let body = self.send(&query, time, stop).await?;
                    let (mut sums, mut series) = (vec![0.0; group.len()], vec![0u64; group.len()]);
                    let mut sink = EnergySink {
                        uuid_label: &s.uuid_label,
                        index,
                        sums: &mut sums,
                        series: &mut series,
                        factor: energy_factor(s.step_seconds),
                    };
                    decode::add_energy(&body, &mut sink).map_err(|e| self.malformed(e))?;
                    Ok::<_, PrometheusError>((sums, series))
                }
            });
        let (mut sums, mut series) = (vec![0.0; group.len()], vec![0u64; group.len()]);
        for (part, counted) in try_join_all(asks).await? {
            for (i, (wh, n)) in part.into_iter().zip(counted).enumerate() {
                sums[i] += wh;
                series[i] += n;
            }
        }
        Ok(group
            .iter()
            .zip(sums.into_iter().zip(series))
            .map(|(id, (wh, series))| (*id, VmEnergy { wh, series }))
            .collect())
    }

    fn malformed(&self, detail: String) -> PrometheusError {
        PrometheusError::Malformed {
            origin: origin(&self.url),
            path: self.url.path().to_string(),
            detail: excerpt(detail.as_bytes()),
        }
    }

    /// POSTs one instant query form (waiting for a permit), with bounded
    /// retries; the body of a 2xx answer, read capped. A stop request ends
    /// the waits for a permit and the backoff at once, a request in flight
    /// after the grace.
    async fn send(
        &self,
        query: &str,
        time: i64,
        stop: &Shutdown,
    ) -> Result<bytes::Bytes, PrometheusError> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            // Waiting for a permit starts nothing: a stop ends it at once.
            let permit = tokio::select! {
                biased;
                _ = stop.requested() => return Err(PrometheusError::Stopped),
                p = self.permits.acquire() => p.map_err(|_| PrometheusError::Stopped)?,
            };
            self.requests.fetch_add(1, Ordering::Relaxed);
            // A request in flight gets the grace (daemon::STOP_GRACE).
            let outcome = tokio::select! {
                r = self.attempt(query, time, attempt) => r,
                _ = stop.grace_over() => return Err(PrometheusError::Stopped),
            };
            drop(permit);
            let failure = match outcome {
                Ok(body) => return Ok(body),
                Err(Retry::Final(e)) => return Err(e),
                Err(Retry::Again(e)) if attempt > self.cfg.retries => return Err(e),
                Err(Retry::Again(e)) => e,
            };
            let wait = self
                .cfg
                .backoff
                .saturating_mul(1u32 << (attempt - 1).min(16))
                .min(MAX_BACKOFF);
            tracing::warn!(attempt, retry_in = %humantime::format_duration(wait), "{failure}");
            tokio::select! {
                biased;
                _ = stop.requested() => return Err(PrometheusError::Stopped),
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn attempt(&self, query: &str, time: i64, attempt: u32) -> Result<bytes::Bytes, Retry> {
        let (origin, path) = (origin(&self.url), self.url.path().to_string());
        let time = time.to_string();
        let form = [("query", query), ("time", &time)];
        let resp = match self.client.post(self.url.clone()).form(&form).send().await {
            Ok(r) => r,
            Err(e) => return Err(Retry::Again(self.transport(e, attempt))),
        };
        if let Some(redirect) = Redirect::from_response(&resp) {
            return Err(Retry::Final(PrometheusError::Redirected(redirect)));
        }
        let status = resp.status();
        let body = match read_body(resp, MAX_BODY_BYTES).await {
            Ok(b) => b,
            Err(BodyError::TooLarge { limit }) => {
                return Err(Retry::Final(PrometheusError::TooLarge {
                    origin,
                    path,
                    limit,
                }));
            }
            Err(BodyError::Transport(e)) => return Err(Retry::Again(self.transport(e, attempt))),
        };
        tracing::debug!(
            status = status.as_u16(),
            bytes = body.len(),
            time,
            "Prometheus query"
        );
        if status.is_success() {
            return Ok(body);
        }
        let err = http_error(origin, path, status, &body);
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            Err(Retry::Again(err))
        } else {
            Err(Retry::Final(err))
        }
    }

    fn transport(&self, e: reqwest::Error, attempts: u32) -> PrometheusError {
        let (origin, path) = (origin(&self.url), self.url.path().to_string());
        if e.is_timeout() {
            PrometheusError::Timeout {
                origin,
                path,
                timeout: self.cfg.settings.timeout,
                attempts,
            }
        } else {
            PrometheusError::Transport {
                origin,
                path,
                detail: error_chain(&e.without_url()),
                attempts,
            }
        }
    }
}

enum Retry {
    Again(PrometheusError),
    Final(PrometheusError),
}

/// A non-2xx answer: Prometheus's own error body when it is one, else an
/// excerpt of the text.
fn http_error(origin: String, path: String, status: StatusCode, body: &[u8]) -> PrometheusError {
    if body.len() <= MAX_ERROR_JSON_BYTES
        && let Ok(e) = serde_json::from_slice::<ApiError>(body)
        && e.status == "error"
    {
        return PrometheusError::Query {
            origin,
            path,
            status: status.as_u16(),
            error_type: excerpt(e.error_type.as_bytes()),
            message: excerpt(e.error.as_bytes()),
        };
    }
    let message = excerpt(body);
    PrometheusError::Http {
        origin,
        path,
        status: status.as_u16(),
        message: if message.is_empty() {
            "(empty body)".into()
        } else {
            message
        },
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        let msg = inner.to_string();
        if !s.contains(&msg) {
            s.push_str(": ");
            s.push_str(&msg);
        }
        cur = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_become_typed_errors() {
        let e = http_error(
            "http://p:9090".into(),
            "/api/v1/query".into(),
            StatusCode::BAD_REQUEST,
            br#"{"status":"error","errorType":"bad_data","error":"1:29: parse error"}"#,
        );
        assert_eq!(
            e.to_string(),
            "Prometheus http://p:9090 /api/v1/query: HTTP 400, bad_data: 1:29: parse error"
        );
        let e = http_error(
            "o".into(),
            "/p".into(),
            StatusCode::BAD_GATEWAY,
            b"<html>\nbad gateway</html>",
        );
        assert_eq!(
            e.to_string(),
            "Prometheus o /p: HTTP 502: <html>\\nbad gateway</html>"
        );
    }

    #[test]
    fn the_endpoint_path_is_kept() {
        let settings = |endpoint: &str, step_seconds| PrometheusSettings {
            endpoint: Url::parse(endpoint).unwrap(),
            step_seconds,
            ..PrometheusSettings::defaults().unwrap()
        };
        let p = Prometheus::new(PrometheusConfig::from_settings(&settings(
            "https://mon.example/prom/?x=1",
            30,
        )))
        .unwrap();
        assert_eq!(p.url.as_str(), "https://mon.example/prom/api/v1/query");
        assert!(
            Prometheus::new(PrometheusConfig::from_settings(&settings(
                "http://p:9090",
                0
            )))
            .is_err()
        );
    }
}
