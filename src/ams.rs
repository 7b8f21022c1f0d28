//! ARGO Messaging Service (AMS) publisher, as `ssmsend` uses it with `protocol: AMS`.
//!
//! Wire behaviour follows `argo-ams-library` 1.0.0 (what SSM 4 uses):
//! - token: `[messaging] token`, else `GET https://<host>:8443/v1/service-types/ams/hosts/<host>:authx509`
//!   with the host certificate as TLS client certificate, reply `{"token": "..."}`;
//! - publish: `POST https://<host>/v1/projects/<project>/topics/<topic>:publish`, header
//!   `x-api-key: <token>`, body `{"messages":[{"attributes":{"empaid":"<id>"},"data":"<base64>"}]}`,
//!   reply `{"messageIds":["..."]}`; errors `{"error":{"code":..,"message":..,"status":..}}`.
//!
//! Differences from the Python client, on purpose:
//! - one message per request: a multi-message publish is not atomic on the AMS side (a failure
//!   halfway leaves the first ones published), so per-message outcomes are the only honest ones;
//! - several requests in flight on reused keep-alive connections ([`Client::publish_all`]);
//! - retries with exponential backoff and jitter on connection errors, 408, 429 and every 5xx
//!   (the library retries 408, 502, 503, 504 and connection errors only when asked to); a
//!   publish that timed out or lost its connection after the request went out is not repeated
//!   ([`AmsError::Unconfirmed`]), since AMS would store a repeat as a second message;
//! - an authx509 token is fetched again once when AMS answers 401 (tokens can be rotated).

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{Stream, StreamExt};
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::reply::{BodyError, Redirect, excerpt, read_body, scrub};

/// Port of the AMS API when the configuration names none.
pub const DEFAULT_PORT: u16 = 443;
/// Port of the ARGO authentication service (`authn_port` of argo-ams-library).
pub const DEFAULT_AUTHN_PORT: u16 = 8443;
/// Requests in flight at once when the configuration names no other number.
pub const DEFAULT_CONCURRENCY: usize = 8;
/// Largest reply body read from AMS or the authentication service (1 MiB):
/// their replies are a token or one message id.
pub const MAX_REPLY_BYTES: usize = 1 << 20;

/// Why authx509 or AMS refuses the host certificate's token.
const GOCDB_HINT: &str = "the DN of the host certificate must be registered in GOCDB as the \
Host DN of a production service of type eu.egi.cloud.accounting (eu.egi.storage.accounting \
for storage records)";

/// Why AMS refuses a configured token: GOCDB plays no part in it.
const TOKEN_HINT: &str = "AMS refused the configured token ([messaging] token in sender.cfg, \
or SSM_MESSAGING__TOKEN): it is expired, revoked or wrong, or not allowed to publish to this \
topic. Ask whoever issued it for a new one (for EGI: a GGUS ticket to the ARGO or APEL \
support unit), or remove the token so that ssmsend gets one from authx509 with the host \
certificate";

/// An AMS token. Never printed: `Debug` masks it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    pub fn new(token: impl Into<String>) -> Self {
        Token(token.into())
    }

    /// The token itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(***)")
    }
}

/// The host certificate and key, presented as TLS client identity (authx509 needs it).
#[derive(Clone)]
pub struct ClientIdentity {
    pub cert: X509,
    pub key: PKey<Private>,
    /// Intermediate certificates sent after `cert`, if any.
    pub chain: Vec<X509>,
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("subject", &self.cert.subject_name())
            .field("key", &"***")
            .field("chain", &self.chain.len())
            .finish()
    }
}

/// How the AMS server certificate is checked.
#[derive(Debug, Clone)]
pub struct ServerTrust {
    /// Trust the system's root certificates (the real AMS has a public certificate).
    pub system_roots: bool,
    /// Further trusted CA certificates (a test CA, or every certificate of a capath: see
    /// [`crate::smime::ca_certificates_from_dir`]).
    pub extra_roots: Vec<X509>,
    /// Off only for tests against a server with an unverifiable certificate. Default on.
    pub verify: bool,
}

impl Default for ServerTrust {
    fn default() -> Self {
        ServerTrust {
            system_roots: true,
            extra_roots: Vec::new(),
            verify: true,
        }
    }
}

/// When and how often a failed request is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per message in total (first one included); at least 1.
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubles each time, up to `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The pause before attempt `attempt + 1` (attempt counts from 1): exponential with "equal
    /// jitter" (between half and all of the exponential value) so that many senders that failed
    /// together do not come back together. A server's `Retry-After` wins if it is longer, capped
    /// by `max_backoff`.
    pub fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .base_backoff
            .saturating_mul(
                1u32.checked_shl(attempt.saturating_sub(1))
                    .unwrap_or(u32::MAX),
            )
            .min(self.max_backoff);
        let half = exp / 2;
        let jitter = half.mul_f64(random_unit());
        let pause = half + jitter;
        match retry_after {
            Some(ra) => pause.max(ra.min(self.max_backoff)),
            None => pause,
        }
    }
}

/// A uniform number in [0, 1) from the OpenSSL random generator (no extra dependency).
fn random_unit() -> f64 {
    let mut b = [0u8; 4];
    match openssl::rand::rand_bytes(&mut b) {
        Ok(()) => f64::from(u32::from_le_bytes(b)) / (f64::from(u32::MAX) + 1.0),
        Err(_) => 0.5,
    }
}

/// Everything the AMS client needs; `sender.cfg` maps onto it.
#[derive(Debug, Clone)]
pub struct AmsConfig {
    /// `[broker] host`: AMS host name (also the `<host>` of the authx509 path).
    pub host: String,
    /// `[broker] port` (SSM ignores it for AMS and always uses 443).
    pub port: u16,
    /// `[messaging] ams_project`.
    pub project: String,
    /// `[messaging] destination`.
    pub topic: String,
    /// `[messaging] token`: when set, authx509 is never asked.
    pub token: Option<Token>,
    /// Host of the authentication service; `None` = `host`.
    pub authn_host: Option<String>,
    pub authn_port: u16,
    /// Host certificate and key; required unless `token` is set.
    pub identity: Option<ClientIdentity>,
    pub trust: ServerTrust,
    pub connect_timeout: Duration,
    /// Whole request (send and reply) timeout; a stalled server counts as a connection error.
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
    /// Publish requests in flight at once in [`Client::publish_all`].
    pub concurrency: NonZeroUsize,
}

impl AmsConfig {
    /// A configuration with every default, for `host`, `project` and `topic`.
    pub fn new(
        host: impl Into<String>,
        project: impl Into<String>,
        topic: impl Into<String>,
    ) -> Self {
        AmsConfig {
            host: host.into(),
            port: DEFAULT_PORT,
            project: project.into(),
            topic: topic.into(),
            token: None,
            authn_host: None,
            authn_port: DEFAULT_AUTHN_PORT,
            identity: None,
            trust: ServerTrust::default(),
            connect_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(120),
            retry: RetryPolicy::default(),
            concurrency: NonZeroUsize::new(DEFAULT_CONCURRENCY).unwrap_or(NonZeroUsize::MIN),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AmsError {
    #[error("AMS client configuration: {0}")]
    Config(String),
    /// 401/403 from AMS or refusal by the authentication service. Never retried.
    #[error("{url}: access refused (HTTP {status}: {message}); {}", match token {
        TokenSource::Configured => TOKEN_HINT,
        TokenSource::Authx509 => GOCDB_HINT,
    })]
    Unauthorized {
        url: String,
        status: u16,
        message: String,
        /// Which token was refused: the hint differs.
        token: TokenSource,
    },
    /// 413: this message can never be published; the caller moves it aside, the others go on.
    #[error(
        "message {msg_id}: AMS refused it as too large (HTTP 413, request of {request_bytes} bytes: {message})"
    )]
    TooLarge {
        msg_id: String,
        request_bytes: usize,
        message: String,
    },
    /// Connection errors, timeouts, 408, 429, 5xx, still failing after every attempt.
    #[error("{url}: still failing after {attempts} attempt(s), last error: {last}")]
    Transient {
        url: String,
        attempts: u32,
        last: String,
    },
    /// Any other HTTP error (400, 404 for a wrong project or topic, ...). Not retried.
    #[error("{url}: HTTP {status}: {message}")]
    Rejected {
        url: String,
        status: u16,
        message: String,
    },
    /// The request may have reached AMS but no reply came (timeout, connection lost): not
    /// repeated, so that AMS never stores the message twice in one run; it stays queued.
    #[error(
        "message {msg_id}: {url}: no reply, AMS may or may not have stored it (kept for the next run): {error}"
    )]
    Unconfirmed {
        url: String,
        msg_id: String,
        error: String,
    },
    /// A reply that does not follow the AMS API.
    #[error("{url}: unexpected reply: {detail}")]
    Protocol { url: String, detail: String },
    /// A redirect to another origin than `sender.cfg` names: not followed, so
    /// neither the token nor the host certificate goes there.
    #[error("{url}: {redirect}")]
    Redirected {
        url: String,
        redirect: crate::reply::Redirect,
    },
    /// Not sent: an earlier message of the same [`Client::publish_all`] failed for a reason
    /// that would fail this one too (refused access, AMS unreachable after every retry, ...).
    #[error("message {msg_id}: not sent, an earlier message of this run could not be delivered")]
    NotAttempted { msg_id: String },
}

impl AmsError {
    /// True when no later request can succeed either (stop sending, exit non-zero).
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            AmsError::Config(_)
                | AmsError::Unauthorized { .. }
                | AmsError::NotAttempted { .. }
                | AmsError::Redirected { .. }
        )
    }

    /// True when the failure belongs to this message alone (413): the others may go on.
    pub fn is_message_specific(&self) -> bool {
        matches!(self, AmsError::TooLarge { .. })
    }
}

/// One message to publish: `key` comes back with the outcome (e.g. the spool element name).
#[derive(Debug, Clone)]
pub struct Outgoing<K> {
    pub key: K,
    /// Sent as the `empaid` attribute (SSM uses the spool message id).
    pub msg_id: String,
    /// The signed (and possibly encrypted) message text, sent base64-encoded.
    pub body: Vec<u8>,
}

/// Where the current token came from: decides whether a 401 may be cured by
/// fetching again, and what a refusal asks the operator to fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    /// `[messaging] token`.
    Configured,
    /// Fetched from the authentication service with the host certificate.
    Authx509,
}

#[derive(Debug)]
struct TokenState {
    /// Counts fetches, so that many requests failing with 401 together fetch once.
    generation: u64,
    token: Option<Token>,
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

#[derive(Deserialize)]
struct ErrorReply {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    message: Option<String>,
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
            .redirect(crate::reply::same_origin_redirects());
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
    pub async fn token(&self) -> Result<Token, AmsError> {
        Ok(self.current_token().await?.1)
    }

    async fn current_token(&self) -> Result<(u64, Token), AmsError> {
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

    async fn fetch_token(&self) -> Result<Token, AmsError> {
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
                        message: error_message(&body),
                    },
                    _ => classify_status(url, status, &body, retry_after),
                }
            })
            .await?;
        Ok(Token(reply.token))
    }

    /// Publishes one message (one request, retried as the policy says) and returns the id AMS
    /// gave it. A 401 with an authx509 token fetches a new token once and tries again.
    pub async fn publish(&self, msg_id: &str, signed: &[u8]) -> Result<String, AmsError> {
        let body = publish_body(msg_id, signed)?;
        let url = &self.publish_url;
        let mut refetched = false;
        loop {
            let (generation, token) = self.current_token().await?;
            let result = self
                .with_retries(url, |_| self.publish_attempt(url, msg_id, &token, &body))
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

    async fn publish_attempt(
        &self,
        url: &str,
        msg_id: &str,
        token: &Token,
        body: &Bytes,
    ) -> Attempt<String> {
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
            Err(e) => return publish_transport_error(url, msg_id, e),
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
            Err(BodyError::Transport(e)) => return publish_transport_error(url, msg_id, e),
        };
        // An error page may echo the request, token included.
        let reply = if status == 200 {
            reply
        } else {
            scrub(reply, &[token.expose()])
        };
        match status {
            200 => match serde_json::from_slice::<PublishReply>(&reply) {
                Ok(r) if r.message_ids.len() == 1 => {
                    Attempt::Done(r.message_ids.into_iter().next().unwrap_or_default())
                }
                Ok(r) => Attempt::Fail(AmsError::Protocol {
                    url: url.to_owned(),
                    detail: format!(
                        "{} message ids for one published message",
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
                message: error_message(&reply),
            },
            413 => Attempt::Fail(AmsError::TooLarge {
                msg_id: msg_id.to_owned(),
                request_bytes: body.len(),
                message: error_message(&reply),
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

    /// Publishes every message with at most `concurrency` requests in flight and yields each
    /// outcome as soon as it is known (in completion order), so the caller can remove a
    /// message from the spool the moment it is published.
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
        messages
            .map(move |m| {
                let stopped = Arc::clone(&stopped);
                async move {
                    if stopped.load(Ordering::Acquire) {
                        return (m.key, Err(AmsError::NotAttempted { msg_id: m.msg_id }));
                    }
                    let result = self.publish(&m.msg_id, &m.body).await;
                    if let Err(e) = &result
                        && !e.is_message_specific()
                    {
                        stopped.store(true, Ordering::Release);
                    }
                    (m.key, result)
                }
            })
            .buffer_unordered(self.concurrency.get())
    }
}

/// The JSON body of a one-message publish request.
fn publish_body(msg_id: &str, signed: &[u8]) -> Result<Bytes, AmsError> {
    let data = openssl::base64::encode_block(signed);
    serde_json::to_vec(&serde_json::json!({
        "messages": [{"attributes": {"empaid": msg_id}, "data": data}]
    }))
    .map(Bytes::from)
    .map_err(|e| AmsError::Config(format!("message {msg_id}: cannot encode: {e}")))
}

fn reqwest_identity(id: &ClientIdentity) -> Result<reqwest::Identity, AmsError> {
    let bad = |e: &dyn fmt::Display| AmsError::Config(format!("host certificate or key: {e}"));
    let mut cert_pem = id.cert.to_pem().map_err(|e| bad(&e))?;
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

/// reqwest's message and its sources: its own ("error sending request") hides the cause.
fn error_chain(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Statuses other than success, 401, 403 and 413.
fn classify_status<T>(
    url: &str,
    status: u16,
    body: &[u8],
    retry_after: Option<Duration>,
) -> Attempt<T> {
    let message = error_message(body);
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

/// The `error.message` of an AMS error reply, else the start of the body as text.
fn error_message(body: &[u8]) -> String {
    if let Ok(ErrorReply {
        error: ErrorBody { message: Some(m) },
    }) = serde_json::from_slice(body)
    {
        return excerpt(m.as_bytes());
    }
    match excerpt(body) {
        text if text.is_empty() => "(empty reply)".to_owned(),
        text => text,
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
    fn token_debug_is_masked() {
        let t = Token::new("s3cret");
        assert_eq!(format!("{t:?}"), "Token(***)");
        let mut cfg = AmsConfig::new("h", "p", "t");
        cfg.token = Some(t);
        assert!(!format!("{cfg:?}").contains("s3cret"));
    }

    #[test]
    fn backoff_grows_is_jittered_and_capped() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
        };
        for _ in 0..100 {
            let b1 = p.backoff(1, None);
            assert!(b1 >= Duration::from_millis(50) && b1 <= Duration::from_millis(100));
            let b3 = p.backoff(3, None);
            assert!(b3 >= Duration::from_millis(200) && b3 <= Duration::from_millis(400));
            let b9 = p.backoff(9, None);
            assert!(b9 >= Duration::from_millis(500) && b9 <= Duration::from_millis(1000));
            assert!(p.backoff(40, None) <= Duration::from_millis(1000));
        }
        let ra = p.backoff(1, Some(Duration::from_millis(700)));
        assert!(ra >= Duration::from_millis(700));
        assert!(p.backoff(1, Some(Duration::from_secs(3600))) <= Duration::from_millis(1000));
    }

    #[test]
    fn publish_body_is_what_argo_ams_library_sends() {
        let body = publish_body("00a1b2c3d4e5f6", b"hello\n").unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"messages":[{"attributes":{"empaid":"00a1b2c3d4e5f6"},"data":"aGVsbG8K"}]})
        );
    }

    #[test]
    fn error_message_prefers_the_ams_error_field() {
        assert_eq!(
            error_message(br#"{"error":{"code":413,"message":"Message size too large","status":"INVALID_ARGUMENT"}}"#),
            "Message size too large"
        );
        assert_eq!(
            error_message(b"<html>bad gateway</html>"),
            "<html>bad gateway</html>"
        );
        assert_eq!(error_message(b""), "(empty reply)");
    }

    #[test]
    fn config_needs_a_token_or_an_identity() {
        let err = Client::new(AmsConfig::new("h", "p", "t")).unwrap_err();
        assert!(err.to_string().contains("authx509"), "{err}");
    }

    #[test]
    fn unauthorized_names_gocdb_for_authx509_and_the_token_for_a_configured_one() {
        let refused = |token| AmsError::Unauthorized {
            url: "u".into(),
            status: 401,
            message: "Unauthorized".into(),
            token,
        };
        let e = refused(TokenSource::Authx509);
        let s = e.to_string();
        assert!(
            s.contains("GOCDB") && s.contains("eu.egi.cloud.accounting"),
            "{s}"
        );
        assert!(e.is_fatal());
        let e = refused(TokenSource::Configured);
        let s = e.to_string();
        assert!(
            !s.contains("GOCDB") && s.contains("[messaging] token"),
            "{s}"
        );
        assert!(e.is_fatal());
    }

    #[test]
    fn the_publish_url_names_the_port() {
        let mut cfg = AmsConfig::new("msg.example.org", "p", "t");
        cfg.token = Some(Token::new("x"));
        let c = Client::new(cfg).unwrap();
        assert_eq!(
            c.publish_url(),
            "https://msg.example.org:443/v1/projects/p/topics/t:publish"
        );
    }
}
