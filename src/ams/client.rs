//! The AMS publisher: the token (configured, or fetched via authx509), publishes with
//! retries, and [`Client::publish_all`]: filled requests, several in flight.

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use tokio::sync::Mutex;

use super::batch::{Encoded, batches, request_body};
use super::{AmsConfig, AmsError, BatchLimits, RetryPolicy, TokenSource};
use crate::net::{BodyError, Redirect, error_chain, excerpt, read_body, scrub, server_message};
use crate::secret::Secret;
use crate::smime::ClientIdentity;

/// Largest reply body read from AMS or the authentication service (1 MiB):
/// their replies are a token or one message id.
pub const MAX_REPLY_BYTES: usize = 1 << 20;

/// What an error names when AMS said nothing.
const EMPTY_REPLY: &str = "(empty reply)";

/// One message to publish: `key` comes back with the outcome (e.g. the spool element name).
#[derive(Debug, Clone)]
pub struct Outgoing<K> {
    pub key: K,
    /// Sent as the `empaid` attribute (SSM uses the spool message id).
    pub msg_id: String,
    /// The signed (and possibly encrypted) message text, sent base64-encoded.
    pub body: Vec<u8>,
}

#[derive(Debug)]
struct TokenState {
    /// Counts fetches, so that many requests failing with 401 together fetch once.
    generation: u64,
    token: Option<Secret>,
}

/// AMS publisher. Cheap to share: one connection pool, one token for all requests.
#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    publish_url: String,
    authx509_url: String,
    source: TokenSource,
    token: Mutex<TokenState>,
    retry: RetryPolicy,
    concurrency: NonZeroUsize,
    batch: BatchLimits,
}

#[derive(Deserialize)]
struct TokenReply {
    token: String,
}

#[derive(Deserialize)]
struct PublishReply {
    #[serde(rename = "messageIds")]
    message_ids: Vec<String>,
}

/// The outcome of one HTTP attempt, classified.
enum Attempt<T> {
    Done(T),
    /// Worth another attempt (connection error, timeout, 408, 429, 5xx).
    Retry {
        error: String,
        retry_after: Option<Duration>,
    },
    Unauthorized {
        status: u16,
        message: String,
    },
    Fail(AmsError),
}

impl Client {
    pub fn new(cfg: AmsConfig) -> Result<Client, AmsError> {
        if cfg.host.is_empty() || cfg.project.is_empty() || cfg.topic.is_empty() {
            return Err(AmsError::Config(
                "host, project and topic must all be set".into(),
            ));
        }
        if cfg.token.is_none() && cfg.identity.is_none() {
            return Err(AmsError::Config(
                "no token configured and no host certificate to fetch one via authx509".into(),
            ));
        }
        if cfg.retry.max_attempts == 0 {
            return Err(AmsError::Config(
                "retry max_attempts must be at least 1".into(),
            ));
        }
        let mut builder = reqwest::Client::builder()
            .use_native_tls()
            .connect_timeout(cfg.connect_timeout)
            .timeout(cfg.request_timeout)
            .tcp_nodelay(true)
            .pool_max_idle_per_host(cfg.concurrency.get())
            .tls_built_in_root_certs(cfg.trust.system_roots)
            .danger_accept_invalid_certs(!cfg.trust.verify)
            .redirect(crate::net::same_origin_redirects());
        for ca in &cfg.trust.extra_roots {
            let der = ca
                .to_der()
                .map_err(|e| AmsError::Config(format!("CA certificate: {e}")))?;
            let cert = reqwest::Certificate::from_der(&der)
                .map_err(|e| AmsError::Config(format!("CA certificate: {e}")))?;
            builder = builder.add_root_certificate(cert);
        }
        if let Some(id) = &cfg.identity {
            builder = builder.identity(reqwest_identity(id)?);
        }
        let http = builder
            .build()
            .map_err(|e| AmsError::Config(format!("HTTP client: {e}")))?;
        // The port spelt out even when it is 443: errors and logs name it.
        let publish_url = format!(
            "https://{}:{}/v1/projects/{}/topics/{}:publish",
            cfg.host, cfg.port, cfg.project, cfg.topic
        );
        let authn_host = cfg.authn_host.as_deref().unwrap_or(&cfg.host);
        let authx509_url = format!(
            "https://{authn_host}:{}/v1/service-types/ams/hosts/{}:authx509",
            cfg.authn_port, cfg.host
        );
        let source = if cfg.token.is_some() {
            TokenSource::Configured
        } else {
            TokenSource::Authx509
        };
        Ok(Client {
            http,
            publish_url,
            authx509_url,
            source,
            token: Mutex::new(TokenState {
                generation: 0,
                token: cfg.token,
            }),
            retry: cfg.retry,
            concurrency: cfg.concurrency,
            batch: cfg.batch,
        })
    }

    /// The publish endpoint (for logs: it holds no secret).
    pub fn publish_url(&self) -> &str {
        &self.publish_url
    }

    /// The authx509 endpoint the token is fetched from (no secret in it).
    pub fn authx509_url(&self) -> &str {
        &self.authx509_url
    }

    /// Whether the token comes from `[messaging] token` (not from authx509).
    pub fn has_configured_token(&self) -> bool {
        self.source == TokenSource::Configured
    }

    /// One `GET /` to the publish origin, without the token and never
    /// retried: any HTTP answer means TCP, TLS (AMS's certificate checked,
    /// the host certificate presented) and HTTP work. What `ssmsend
    /// --check-network` tries; returns the HTTP status.
    pub async fn probe(&self) -> Result<u16, AmsError> {
        let origin = match self.publish_url.find("/v1/") {
            Some(i) => &self.publish_url[..i],
            None => &self.publish_url,
        };
        let url = format!("{origin}/");
        match self.http.get(&url).send().await {
            Ok(resp) => Ok(resp.status().as_u16()),
            Err(e) if e.is_builder() => Err(AmsError::Config(format!("{url}: {e}"))),
            Err(e) => Err(AmsError::Transient {
                url,
                attempts: 1,
                last: error_chain(&e),
            }),
        }
    }

    /// The token: the configured one, or fetched once via authx509 and reused.
    pub async fn token(&self) -> Result<Secret, AmsError> {
        Ok(self.current_token().await?.1)
    }

    async fn current_token(&self) -> Result<(u64, Secret), AmsError> {
        let mut state = self.token.lock().await;
        if let Some(t) = &state.token {
            return Ok((state.generation, t.clone()));
        }
        let fetched = self.fetch_token().await?;
        state.generation += 1;
        state.token = Some(fetched.clone());
        Ok((state.generation, fetched))
    }

    /// Forgets the token of `generation` (if nobody replaced it yet) so the next use fetches.
    async fn invalidate(&self, generation: u64) {
        let mut state = self.token.lock().await;
        if state.generation == generation {
            state.token = None;
        }
    }

    async fn fetch_token(&self) -> Result<Secret, AmsError> {
        let url = &self.authx509_url;
        let reply: TokenReply = self
            .with_retries(url, |_| async {
                let resp = match self.http.get(url).send().await {
                    Ok(r) => r,
                    Err(e) => return transport_error(url, e),
                };
                if let Some(redirect) = Redirect::from_response(&resp) {
                    return Attempt::Fail(AmsError::Redirected {
                        url: url.clone(),
                        redirect,
                    });
                }
                let status = resp.status().as_u16();
                let retry_after = retry_after(&resp);
                let body = match read_body(resp, MAX_REPLY_BYTES).await {
                    Ok(b) => b,
                    Err(BodyError::TooLarge { limit }) => return too_large(url, limit),
                    Err(BodyError::Transport(e)) => return transport_error(url, e),
                };
                match status {
                    200 => match serde_json::from_slice::<TokenReply>(&body) {
                        Ok(t) if !t.token.is_empty() => Attempt::Done(t),
                        _ => Attempt::Fail(AmsError::Protocol {
                            url: url.clone(),
                            detail: "authx509 reply holds no token".into(),
                        }),
                    },
                    // The authentication service answers 400 without a client certificate and
                    // 404 when no binding maps the certificate's DN to an AMS user.
                    400 | 401 | 403 | 404 => Attempt::Unauthorized {
                        status,
                        message: server_message(&body, EMPTY_REPLY),
                    },
                    _ => classify_status(url, status, &body, retry_after),
                }
            })
            .await?;
        Ok(Secret::new(reply.token))
    }

    /// Publishes one message (one request, retried as the policy says) and returns the id AMS
    /// gave it.
    pub async fn publish(&self, msg_id: &str, signed: &[u8]) -> Result<String, AmsError> {
        let m = Encoded::new(Outgoing {
            key: (),
            msg_id: msg_id.to_owned(),
            body: signed.to_vec(),
        });
        let mut ids = self.publish_request(std::slice::from_ref(&m)).await?;
        ids.pop().ok_or_else(|| AmsError::Protocol {
            url: self.publish_url.clone(),
            detail: "no message id for the published message".into(),
        })
    }

    /// One request for `batch` (retried as the policy says): AMS's ids, one per message in
    /// order. A 401 with an authx509 token fetches a new token once and tries again.
    async fn publish_request<K>(&self, batch: &[Encoded<K>]) -> Result<Vec<String>, AmsError> {
        let body = request_body(batch);
        let label = label(batch);
        let url = &self.publish_url;
        let mut refetched = false;
        loop {
            let (generation, token) = self.current_token().await?;
            let result = self
                .with_retries(url, |_| {
                    self.publish_attempt(url, &label, batch.len(), &token, &body)
                })
                .await;
            match result {
                Err(AmsError::Unauthorized { status: 401, .. })
                    if self.source == TokenSource::Authx509 && !refetched =>
                {
                    tracing::warn!(url = %url, "AMS refused the token (401), fetching a new one");
                    self.invalidate(generation).await;
                    refetched = true;
                }
                other => return other,
            }
        }
    }

    /// Publishes `batch`, one outcome per message in order. A request of several messages
    /// that AMS refuses as too large (413) is sent again as two halves, down to single
    /// messages: only a message too large on its own gets [`AmsError::TooLarge`].
    async fn publish_splitting<K>(&self, batch: &[Encoded<K>]) -> Vec<Result<String, AmsError>> {
        let mut outcomes: Vec<Option<Result<String, AmsError>>> =
            std::iter::repeat_with(|| None).take(batch.len()).collect();
        // Ranges still to publish, the first on top: order is kept.
        let mut todo = vec![(0, batch.len())];
        while let Some((start, end)) = todo.pop() {
            let part = &batch[start..end];
            match self.publish_request(part).await {
                Ok(ids) => {
                    for (slot, id) in outcomes[start..end].iter_mut().zip(ids) {
                        *slot = Some(Ok(id));
                    }
                }
                Err(AmsError::TooLarge { request_bytes, .. }) if part.len() > 1 => {
                    // AMS stores a request's messages one by one and stops at one over its
                    // limit: those before it may be stored already and arrive twice.
                    tracing::warn!(
                        messages = part.len(),
                        request_bytes,
                        "AMS refused a request as too large (413): sending it in halves; \
                         messages AMS stored before the refusal may arrive twice"
                    );
                    let mid = start + part.len() / 2;
                    todo.push((mid, end));
                    todo.push((start, mid));
                }
                Err(e) => {
                    for (slot, m) in outcomes[start..end].iter_mut().zip(part) {
                        *slot = Some(Err(e.for_message(&m.msg_id)));
                    }
                }
            }
        }
        outcomes
            .into_iter()
            .zip(batch)
            .map(|(o, m)| {
                o.unwrap_or_else(|| {
                    Err(AmsError::NotAttempted {
                        msg_id: m.msg_id.clone(),
                    })
                })
            })
            .collect()
    }

    async fn publish_attempt(
        &self,
        url: &str,
        label: &str,
        messages: usize,
        token: &Secret,
        body: &Bytes,
    ) -> Attempt<Vec<String>> {
        let resp = match self
            .http
            .post(url)
            .header("x-api-key", token.expose())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.clone())
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => return publish_transport_error(url, label, e),
        };
        if let Some(redirect) = Redirect::from_response(&resp) {
            return Attempt::Fail(AmsError::Redirected {
                url: url.to_owned(),
                redirect,
            });
        }
        let status = resp.status().as_u16();
        let retry_after = retry_after(&resp);
        let reply = match read_body(resp, MAX_REPLY_BYTES).await {
            Ok(b) => b,
            Err(BodyError::TooLarge { limit }) => return too_large(url, limit),
            Err(BodyError::Transport(e)) => return publish_transport_error(url, label, e),
        };
        // An error page may echo the request, token included.
        let reply = if status == 200 {
            reply
        } else {
            scrub(reply, &[token.expose()])
        };
        match status {
            200 => match serde_json::from_slice::<PublishReply>(&reply) {
                Ok(r) if r.message_ids.len() == messages => Attempt::Done(r.message_ids),
                Ok(r) => Attempt::Fail(AmsError::Protocol {
                    url: url.to_owned(),
                    detail: format!(
                        "{} message ids for {messages} published message(s)",
                        r.message_ids.len()
                    ),
                }),
                Err(e) => Attempt::Fail(AmsError::Protocol {
                    url: url.to_owned(),
                    detail: format!(
                        "publish reply is not {{\"messageIds\": [...]}}: {}",
                        excerpt(e.to_string().as_bytes())
                    ),
                }),
            },
            401 | 403 => Attempt::Unauthorized {
                status,
                message: server_message(&reply, EMPTY_REPLY),
            },
            413 => Attempt::Fail(AmsError::TooLarge {
                msg_id: label.to_owned(),
                request_bytes: body.len(),
                message: server_message(&reply, EMPTY_REPLY),
            }),
            // AMS's own "Backend Error": it may have stored the first messages of the
            // request already, so a repeat could store them twice.
            500 if messages > 1 => Attempt::Fail(AmsError::Unconfirmed {
                url: url.to_owned(),
                msg_id: label.to_owned(),
                error: format!(
                    "HTTP 500: {} (AMS stores a request's messages one by one)",
                    server_message(&reply, EMPTY_REPLY)
                ),
            }),
            _ => classify_status(url, status, &reply, retry_after),
        }
    }

    /// Runs `attempt` until it is done, fails for good, or the policy's attempts are spent.
    async fn with_retries<T, F, Fut>(&self, url: &str, mut attempt: F) -> Result<T, AmsError>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Attempt<T>>,
    {
        let mut n = 1;
        loop {
            match attempt(n).await {
                Attempt::Done(v) => return Ok(v),
                Attempt::Fail(e) => return Err(e),
                Attempt::Unauthorized { status, message } => {
                    return Err(AmsError::Unauthorized {
                        url: url.to_owned(),
                        status,
                        message,
                        token: self.source,
                    });
                }
                Attempt::Retry { error, retry_after } => {
                    if n >= self.retry.max_attempts {
                        return Err(AmsError::Transient {
                            url: url.to_owned(),
                            attempts: n,
                            last: error,
                        });
                    }
                    let pause = self.retry.backoff(n, retry_after);
                    tracing::warn!(url = %url, attempt = n, pause = ?pause, error = %error, "AMS request failed, retrying");
                    tokio::time::sleep(pause).await;
                    n += 1;
                }
            }
        }
    }

    /// Publishes every message in requests filled up to the configured [`BatchLimits`], with
    /// at most `concurrency` requests in flight, and yields each message's outcome as soon as
    /// its request is answered (in completion order), so the caller can remove a message from
    /// the spool the moment it is published.
    ///
    /// Any failure other than [`AmsError::TooLarge`] (refused access, AMS still unreachable
    /// after every retry, a wrong topic, ...) would repeat for every later message, so once one
    /// is seen the messages not yet started are not sent ([`AmsError::NotAttempted`]): they
    /// stay queued for the next run instead of each waiting through its own retries.
    pub fn publish_all<'a, K, S>(
        &'a self,
        messages: S,
    ) -> impl Stream<Item = (K, Result<String, AmsError>)> + 'a
    where
        K: 'a,
        S: Stream<Item = Outgoing<K>> + 'a,
    {
        let stopped = Arc::new(AtomicBool::new(false));
        batches(messages, self.batch)
            .map(move |batch| {
                let stopped = Arc::clone(&stopped);
                async move {
                    let outcomes = if stopped.load(Ordering::Acquire) {
                        batch
                            .iter()
                            .map(|m| {
                                Err(AmsError::NotAttempted {
                                    msg_id: m.msg_id.clone(),
                                })
                            })
                            .collect()
                    } else {
                        let outcomes = self.publish_splitting(&batch).await;
                        if outcomes
                            .iter()
                            .any(|o| o.as_ref().is_err_and(|e| !e.is_message_specific()))
                        {
                            stopped.store(true, Ordering::Release);
                        }
                        outcomes
                    };
                    stream::iter(batch.into_iter().map(|m| m.key).zip(outcomes))
                }
            })
            .buffer_unordered(self.concurrency.get())
            .flatten()
    }
}

/// How errors name a request: its message id, or its first and how many more.
fn label<K>(batch: &[Encoded<K>]) -> String {
    match batch {
        [one] => one.msg_id.clone(),
        [first, rest @ ..] => format!(
            "{} (and {} more in the same request)",
            first.msg_id,
            rest.len()
        ),
        [] => String::new(),
    }
}

fn reqwest_identity(id: &ClientIdentity) -> Result<reqwest::Identity, AmsError> {
    let bad = |e: &dyn fmt::Display| AmsError::Config(format!("host certificate or key: {e}"));
    let mut cert_pem = id.certificate.to_pem().map_err(|e| bad(&e))?;
    for c in &id.chain {
        cert_pem.extend(c.to_pem().map_err(|e| bad(&e))?);
    }
    let key_pem = id.key.private_key_to_pem_pkcs8().map_err(|e| bad(&e))?;
    reqwest::Identity::from_pkcs8_pem(&cert_pem, &key_pem).map_err(|e| bad(&e))
}

/// A reply body over the limit: not an AMS reply, and not worth a retry.
fn too_large<T>(url: &str, limit: usize) -> Attempt<T> {
    Attempt::Fail(AmsError::Protocol {
        url: url.to_owned(),
        detail: format!("reply body over the {limit} byte limit; not read further"),
    })
}

fn transport_error<T>(url: &str, e: reqwest::Error) -> Attempt<T> {
    if e.is_builder() {
        return Attempt::Fail(AmsError::Config(format!("{url}: {e}")));
    }
    Attempt::Retry {
        error: error_chain(&e),
        retry_after: None,
    }
}

/// A publish that failed after its request may have reached AMS (a timeout, a connection lost
/// mid-request) is not repeated: AMS has no idempotency key, so a retry could store the
/// message twice. Only a connection that was never made is retried.
fn publish_transport_error<T>(url: &str, msg_id: &str, e: reqwest::Error) -> Attempt<T> {
    if e.is_builder() || e.is_connect() {
        return transport_error(url, e);
    }
    Attempt::Fail(AmsError::Unconfirmed {
        url: url.to_owned(),
        msg_id: msg_id.to_owned(),
        error: error_chain(&e),
    })
}

/// Statuses other than success, 401, 403 and 413.
fn classify_status<T>(
    url: &str,
    status: u16,
    body: &[u8],
    retry_after: Option<Duration>,
) -> Attempt<T> {
    let message = server_message(body, EMPTY_REPLY);
    if status == 408 || status == 429 || (500..600).contains(&status) {
        Attempt::Retry {
            error: format!("HTTP {status}: {message}"),
            retry_after,
        }
    } else {
        Attempt::Fail(AmsError::Rejected {
            url: url.to_owned(),
            status,
            message,
        })
    }
}

fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    resp.headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_body_is_what_argo_ams_library_sends() {
        let m = Encoded::new(Outgoing {
            key: (),
            msg_id: "00a1b2c3d4e5f6".into(),
            body: b"hello\n".to_vec(),
        });
        let body = request_body(&[m]);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"messages":[{"attributes":{"empaid":"00a1b2c3d4e5f6"},"data":"aGVsbG8K"}]})
        );
    }

    #[test]
    fn server_message_prefers_the_ams_error_field() {
        assert_eq!(
            server_message(br#"{"error":{"code":413,"message":"Message size too large","status":"INVALID_ARGUMENT"}}"#, EMPTY_REPLY),
            "Message size too large"
        );
        assert_eq!(
            server_message(b"<html>bad gateway</html>", EMPTY_REPLY),
            "<html>bad gateway</html>"
        );
        assert_eq!(server_message(b"", EMPTY_REPLY), "(empty reply)");
    }

    #[test]
    fn config_needs_a_token_or_an_identity() {
        let err = Client::new(AmsConfig::new("h", "p", "t")).unwrap_err();
        assert!(err.to_string().contains("authx509"), "{err}");
    }

    #[test]
    fn the_publish_url_names_the_port() {
        let mut cfg = AmsConfig::new("msg.example.org", "p", "t");
        cfg.token = Some(Secret::new("x"));
        let c = Client::new(cfg).unwrap();
        assert_eq!(
            c.publish_url(),
            "https://msg.example.org:443/v1/projects/p/topics/t:publish"
        );
    }
}
