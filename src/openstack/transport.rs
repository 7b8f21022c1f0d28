//! Sending one request: the HTTP client (TLS settings, redirects followed
//! only on the same origin), bounded retries with backoff on connection
//! errors, timeouts and 5xx, one re-authentication on 401, bodies read
//! capped, credentials scrubbed from error bodies, and statuses mapped to
//! [`OpenStackError`]s that name the service and path, never a secret.

use std::sync::Once;
use std::time::Duration;

use reqwest::header::{ACCEPT, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;

use super::decode::decode;
use super::session::{Answer, Session};
use super::{AuthConfig, AuthMethod, OpenStackError, Scope, Service};
use crate::net::{
    BodyError, Redirect, RetryPolicy, error_chain, excerpt_chars, json_values_exceed, origin,
    read_body, same_origin_redirects, scrub, server_message,
};

/// Longest wait between two retries, whatever the configured backoff.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Largest response body read from any OpenStack request (64 MiB): a Nova
/// page of 1000 servers with embedded flavors is a few MB. A longer body is
/// an error for the request, given up while it is read.
pub const MAX_BODY_BYTES: usize = 64 << 20;

/// Most JSON values (numbers, strings, objects...) a successful answer may
/// hold: decoding costs memory per value (up to 30 times the bytes of a
/// dense list), so a body within [`MAX_BODY_BYTES`] could still need
/// gigabytes. A page of 1000 Nova servers holds about 150,000.
pub const MAX_JSON_VALUES: usize = 1_000_000;

/// What an error names when the server said nothing.
pub(super) const EMPTY_BODY: &str = "(empty body)";

/// Characters of a decode error kept in a `Malformed` error: serde quotes
/// the offending value whole.
pub(crate) const DETAIL_CHARS: usize = 400;

type Result<T> = std::result::Result<T, OpenStackError>;

/// A response, read whole.
#[derive(Debug)]
pub(crate) struct Raw {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
    pub service: Service,
    pub method: &'static str,
    pub path: String,
}

impl Raw {
    /// Maps any non-2xx status to an error naming the service and path.
    pub fn ok(self) -> Result<Raw> {
        if self.status.is_success() {
            return Ok(self);
        }
        let message = server_message(&self.body, EMPTY_BODY);
        Err(match self.status {
            StatusCode::FORBIDDEN => OpenStackError::Forbidden {
                service: self.service,
                path: self.path,
                message,
            },
            status => OpenStackError::Http {
                service: self.service,
                method: self.method,
                path: self.path,
                status: status.as_u16(),
                message,
            },
        })
    }

    /// Like [`Raw::ok`], but a 404 is `NotFound { what, id }`.
    pub fn found(self, what: &'static str, id: &str) -> Result<Raw> {
        if self.status == StatusCode::NOT_FOUND {
            return Err(OpenStackError::NotFound {
                what,
                id: id.to_string(),
            });
        }
        self.ok()
    }

    /// The body as a `T`; an error names `what`, the request and the field
    /// path that does not decode.
    pub fn json<T: serde::de::DeserializeOwned>(&self, what: &str) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|fast| OpenStackError::Malformed {
            what: format!("{what} from {} {}", self.service, self.path),
            detail: excerpt_chars(self.decode_error::<T>(fast).as_bytes(), DETAIL_CHARS),
        })
    }

    /// Why the body is not a `T`: with the field path when it is JSON (read
    /// again the slow way), else serde_json's line and column.
    fn decode_error<T: serde::de::DeserializeOwned>(&self, fast: serde_json::Error) -> String {
        if fast.is_syntax() || fast.is_eof() || fast.is_io() {
            return fast.to_string();
        }
        match serde_json::from_slice::<Value>(&self.body) {
            Ok(v) => match decode::<T>(&v) {
                Err(e) => e.to_string(),
                Ok(_) => fast.to_string(),
            },
            Err(_) => fast.to_string(),
        }
    }
}

static INSECURE_WARNING: Once = Once::new();

/// `field` is the `[keystone_auth]` option that names `path`.
fn read_file(field: &'static str, path: &std::path::Path) -> Result<Vec<u8>> {
    crate::access::read_capped(path, crate::access::MAX_PEM_BYTES).map_err(|e| {
        let hint = crate::access::denied_hint(
            "caso-extract",
            &format!("[keystone_auth] {field}"),
            path,
            &e,
        )
        .map(|h| format!("; {h}"))
        .unwrap_or_default();
        OpenStackError::Config {
            field,
            detail: format!("cannot read {}: {e}{hint}", path.display()),
        }
    })
}

pub(super) fn build_client(cfg: &AuthConfig) -> Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(cfg.timeout)
        .timeout(cfg.timeout)
        .redirect(same_origin_redirects())
        .user_agent(concat!("cloud-accounting/", env!("CARGO_PKG_VERSION")));
    if let Some(cafile) = &cfg.tls.cafile {
        let pem = read_file("cafile", cafile)?;
        let certs =
            reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| OpenStackError::Config {
                field: "cafile",
                detail: format!("{}: {}", cafile.display(), error_chain(&e)),
            })?;
        if certs.is_empty() {
            return Err(OpenStackError::Config {
                field: "cafile",
                detail: format!("{}: no PEM certificate in it", cafile.display()),
            });
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    if cfg.tls.insecure {
        INSECURE_WARNING.call_once(|| {
            tracing::warn!(
                "insecure = true: TLS certificates of Keystone and every OpenStack endpoint are NOT verified; anyone on the path can read the credentials and forge the accounting data. Use cafile instead."
            );
        });
        builder = builder
            .danger_accept_invalid_certs(true)
            .danger_accept_invalid_hostnames(true);
    }
    if let Some(cc) = &cfg.tls.client_cert {
        let cert = read_file("certfile", &cc.certfile)?;
        let key = read_file("keyfile", &cc.keyfile)?;
        // native-tls wants PKCS#8; sites often have PKCS#1 or SEC1 keys.
        let key = openssl::pkey::PKey::private_key_from_pem(&key)
            .and_then(|k| k.private_key_to_pem_pkcs8())
            .map_err(|e| OpenStackError::Config {
                field: "keyfile",
                detail: format!("{}: not a PEM private key: {e}", cc.keyfile.display()),
            })?;
        let identity =
            reqwest::Identity::from_pkcs8_pem(&cert, &key).map_err(|e| OpenStackError::Config {
                field: "certfile",
                detail: format!("{}: {}", cc.certfile.display(), error_chain(&e)),
            })?;
        builder = builder.identity(identity);
    }
    builder.build().map_err(|e| OpenStackError::Config {
        field: "keystone_auth",
        detail: format!("cannot build the HTTP client: {}", error_chain(&e)),
    })
}

impl Session {
    /// GET with the scope's token; a 401 drops the token and retries once
    /// with a fresh one.
    pub(crate) async fn get(
        &self,
        service: Service,
        scope: &Scope,
        url: &Url,
        headers: &[(&'static str, String)],
    ) -> Result<Raw> {
        let mut reauthenticated = false;
        loop {
            let token = self.token(scope).await?;
            let mut auth = HeaderValue::from_str(token.value.expose()).map_err(|_| {
                OpenStackError::Malformed {
                    what: "keystone token".to_string(),
                    detail: "not a valid HTTP header value".to_string(),
                }
            })?;
            auth.set_sensitive(true);
            let raw = self
                .send(service, Method::GET, url, || {
                    let mut rb = self
                        .inner
                        .client
                        .get(url.clone())
                        .header("X-Auth-Token", auth.clone())
                        .header(ACCEPT, "application/json");
                    for (name, value) in headers {
                        rb = rb.header(*name, value);
                    }
                    rb
                })
                .await?;
            if raw.status != StatusCode::UNAUTHORIZED {
                return Ok(raw);
            }
            if reauthenticated {
                return Err(OpenStackError::Unauthorized {
                    service,
                    path: raw.path.clone(),
                    scope: scope.to_string(),
                    message: format!(
                        "a fresh token was refused too: {}",
                        server_message(&raw.body, EMPTY_BODY)
                    ),
                });
            }
            tracing::info!(%service, path = %raw.path, "token refused (401), authenticating again once");
            self.invalidate(scope, &token).await;
            reauthenticated = true;
        }
    }

    /// Sends with bounded retries (exponential backoff with jitter) on connection errors,
    /// timeouts and 5xx. Every attempt is counted.
    pub(super) async fn send(
        &self,
        service: Service,
        method: Method,
        url: &Url,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Raw> {
        let cfg = &self.inner.cfg;
        let path = url.path().to_string();
        let method_name: &'static str = if method == Method::POST {
            "POST"
        } else {
            "GET"
        };
        let retry = RetryPolicy {
            max_attempts: cfg.retries.saturating_add(1),
            base_backoff: cfg.backoff,
            max_backoff: MAX_BACKOFF,
        };
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            self.count(service);
            // The token sent is a secret to scrub from error bodies too.
            let (sent, token) = match build().build() {
                Ok(request) => {
                    let token = request
                        .headers()
                        .get("X-Auth-Token")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    (self.inner.client.execute(request).await, token)
                }
                Err(e) => (Err(e), None),
            };
            self.count_answer(
                service,
                match &sent {
                    Ok(resp) => Answer::Status(resp.status().as_u16()),
                    Err(_) => Answer::NoAnswer,
                },
            );
            let failure = match sent {
                Ok(resp) => {
                    if let Some(redirect) = Redirect::from_response(&resp) {
                        return Err(OpenStackError::Redirected {
                            service,
                            method: method_name,
                            path,
                            redirect,
                        });
                    }
                    let status = resp.status();
                    let headers = resp.headers().clone();
                    match read_body(resp, MAX_BODY_BYTES).await {
                        Err(BodyError::TooLarge { limit }) => {
                            return Err(OpenStackError::TooLarge {
                                service,
                                method: method_name,
                                path,
                                limit: format!("{limit} bytes"),
                            });
                        }
                        Ok(body)
                            if status.is_success()
                                && json_values_exceed(&body, MAX_JSON_VALUES) =>
                        {
                            return Err(OpenStackError::TooLarge {
                                service,
                                method: method_name,
                                path,
                                limit: format!("{MAX_JSON_VALUES} JSON values"),
                            });
                        }
                        Ok(body) => {
                            let body = if status.is_success() {
                                body
                            } else {
                                let mut secrets = self.secrets();
                                secrets.extend(token.as_deref());
                                scrub(body, &secrets)
                            };
                            tracing::debug!(%service, method = method_name, %path, status = status.as_u16(), "OpenStack request");
                            if !status.is_server_error() || attempt > cfg.retries {
                                return Ok(Raw {
                                    status,
                                    headers,
                                    body,
                                    service,
                                    method: method_name,
                                    path,
                                });
                            }
                            format!(
                                "HTTP {}: {}",
                                status.as_u16(),
                                server_message(&body, EMPTY_BODY)
                            )
                        }
                        Err(BodyError::Transport(e)) => {
                            self.transport_failure(service, url, method_name, attempt, e)?
                        }
                    }
                }
                Err(e) => self.transport_failure(service, url, method_name, attempt, e)?,
            };
            let wait = retry.backoff(attempt, None);
            tracing::warn!(%service, origin = %origin(url), method = method_name, %path, attempt, retry_in = %humantime::format_duration(wait), "{failure}");
            tokio::time::sleep(wait).await;
        }
    }

    /// The configured credentials, scrubbed from error bodies.
    fn secrets(&self) -> Vec<&str> {
        match &self.inner.cfg.method {
            AuthMethod::Password { password, .. } => vec![password.expose()],
            AuthMethod::ApplicationCredential { secret, .. } => vec![secret.expose()],
            AuthMethod::OidcAccessToken { access_token, .. } => vec![access_token.expose()],
        }
    }

    /// Returns a description to retry with, or the final error once the
    /// retries are spent.
    /// The final error names the origin and path of `url`, never its query
    /// or user information.
    fn transport_failure(
        &self,
        service: Service,
        url: &Url,
        method: &'static str,
        attempt: u32,
        e: reqwest::Error,
    ) -> Result<String> {
        let timeout = e.is_timeout();
        let detail = error_chain(&e.without_url());
        if attempt <= self.inner.cfg.retries {
            return Ok(detail);
        }
        let (origin, path) = (origin(url), url.path().to_string());
        Err(if timeout {
            OpenStackError::Timeout {
                service,
                origin,
                method,
                path,
                attempts: attempt,
            }
        } else {
            OpenStackError::Transport {
                service,
                origin,
                method,
                path,
                attempts: attempt,
                detail,
            }
        })
    }
}
