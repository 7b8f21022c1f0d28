//! GreenDIGIT CIM client: publishes energy records as cASO 5.2.2's
//! `greendigit_cim` messenger does.
//!
//! - token: `GET <base>/gd-cim-api/v1/token?email=..&password=..`, the
//!   answer's `access_token` (or `token`);
//! - publish: `POST <base>/gd-cim-api/v1/submit`, `Authorization: Bearer`,
//!   a JSON array of the records ([`crate::record::render_energy_array`]).
//!
//! The token URL carries the password: it is never logged nor put in an
//! error (errors name `<base>/gd-cim-api/v1/token`, without the query), and
//! a server's error text is scrubbed of the password and token before an
//! excerpt of it is shown. Replies are read capped.
//!
//! Like cASO, a token is fetched for every publish. Unlike cASO, a 401 on
//! submit fetches a fresh token and tries once more (cASO gives up), and a
//! failed publish is an error for the caller, whose records are then not
//! lost (cASO logs it and moves on: the caller keeps lastrun).

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use reqwest::{StatusCode, Url};

use crate::config::caso::GreenDigitCim;
use crate::net::{BodyError, Redirect, excerpt, read_body, same_origin_redirects, scrub};
use crate::record::{EnergyRecord, render_energy_array};
use crate::secret::Secret;

/// Largest token answer read.
const MAX_TOKEN_BYTES: usize = 64 << 10;
/// Largest submit answer read.
const MAX_SUBMIT_REPLY_BYTES: usize = 1 << 20;

/// `[greendigit_cim]` of caso.conf.
#[derive(Clone, Debug)]
pub struct CimConfig {
    /// `base_url` (https://greendigit-cim.sztaki.hu).
    pub base_url: Url,
    pub email: String,
    pub password: Secret,
    /// `verify_ssl` (true).
    pub verify_tls: bool,
    /// Per request (cASO: 60 s).
    pub timeout: Duration,
}

impl CimConfig {
    /// caso.conf's `[greendigit_cim]`; the account is required (the
    /// configuration check already refused a file without it).
    pub fn from_settings(s: &GreenDigitCim) -> Result<Self, CimError> {
        let (Some(email), Some(password)) = (&s.email, &s.password) else {
            return Err(CimError::Config {
                field: "email",
                detail: "greendigit_cim.email and greendigit_cim.password must be set".into(),
            });
        };
        Ok(CimConfig {
            base_url: s.base_url.clone(),
            email: email.clone(),
            password: password.clone(),
            verify_tls: s.verify_tls,
            timeout: s.timeout,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CimError {
    #[error("[greendigit_cim] {field}: {detail}")]
    Config { field: &'static str, detail: String },
    /// `url` never has a query.
    #[error("GreenDIGIT CIM {method} {url}: HTTP {status}: {message}")]
    Http {
        method: &'static str,
        url: String,
        status: u16,
        message: String,
    },
    #[error("GreenDIGIT CIM {method} {url}: {detail}")]
    Transport {
        method: &'static str,
        url: String,
        detail: String,
    },
    #[error("GreenDIGIT CIM {method} {url}: the answer is over {limit} bytes")]
    TooLarge {
        method: &'static str,
        url: String,
        limit: usize,
    },
    #[error("GreenDIGIT CIM GET {url}: {detail}")]
    BadToken { url: String, detail: String },
    #[error("GreenDIGIT CIM: {0}")]
    Redirected(Redirect),
}

/// What a successful publish was answered.
#[derive(Clone, Debug, PartialEq)]
pub struct Published {
    pub records: usize,
    pub status: u16,
    /// Requests sent (token and submit, retries included).
    pub requests: u32,
}

#[derive(Clone, Debug)]
pub struct Cim {
    client: reqwest::Client,
    email: String,
    password: Secret,
    /// `<base>/gd-cim-api/v1/token`, no query.
    token_url: Url,
    submit_url: Url,
}

impl Cim {
    pub fn new(cfg: CimConfig) -> Result<Cim, CimError> {
        if cfg.email.is_empty() || cfg.password.expose().is_empty() {
            return Err(CimError::Config {
                field: "email",
                detail: "greendigit_cim.email and greendigit_cim.password must be set".into(),
            });
        }
        if !matches!(cfg.base_url.scheme(), "http" | "https") || cfg.base_url.host_str().is_none() {
            return Err(CimError::Config {
                field: "base_url",
                detail: format!(
                    "{} is not an http(s) URL",
                    crate::net::origin(&cfg.base_url)
                ),
            });
        }
        // cASO: base_url.rstrip("/") + "/gd-cim-api/v1/...".
        let base = cfg.base_url.as_str().trim_end_matches('/');
        let join = |p: &str| {
            Url::parse(&format!("{base}{p}")).map_err(|e| CimError::Config {
                field: "base_url",
                detail: e.to_string(),
            })
        };
        let (mut token_url, mut submit_url) = (
            join("/gd-cim-api/v1/token")?,
            join("/gd-cim-api/v1/submit")?,
        );
        token_url.set_query(None);
        submit_url.set_query(None);
        let mut builder = reqwest::Client::builder()
            .connect_timeout(cfg.timeout)
            .timeout(cfg.timeout)
            .redirect(same_origin_redirects())
            .user_agent(concat!("cloud-accounting/", env!("CARGO_PKG_VERSION")));
        if !cfg.verify_tls {
            tracing::warn!(
                "[greendigit_cim] verify_ssl = false: the CIM service's TLS certificate is NOT verified; anyone on the path can read the password"
            );
            builder = builder
                .danger_accept_invalid_certs(true)
                .danger_accept_invalid_hostnames(true);
        }
        let client = builder.build().map_err(|e| CimError::Config {
            field: "base_url",
            detail: format!("cannot build the HTTP client: {e}"),
        })?;
        Ok(Cim {
            client,
            email: cfg.email,
            password: cfg.password,
            token_url,
            submit_url,
        })
    }

    /// For log lines: where records go (no path, no query).
    pub fn describe(&self) -> String {
        crate::net::origin(&self.submit_url)
    }

    /// A bearer token for the configured account.
    pub async fn token(&self) -> Result<Secret, CimError> {
        let url = self.token_url.to_string();
        let resp = self
            .client
            .get(self.token_url.clone())
            .query(&[
                ("email", self.email.as_str()),
                ("password", self.password.expose()),
            ])
            .send()
            .await
            .map_err(|e| self.transport("GET", &self.token_url, e))?;
        let (status, body) = self
            .read("GET", &self.token_url, resp, MAX_TOKEN_BYTES)
            .await?;
        if !status.is_success() {
            return Err(CimError::Http {
                method: "GET",
                url,
                status: status.as_u16(),
                message: self.message(body, None),
            });
        }
        let bad = |detail: &str| CimError::BadToken {
            url: url.clone(),
            detail: detail.into(),
        };
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|_| bad("the answer is not JSON"))?;
        // cASO: data.get("access_token") or data.get("token"): the first
        // that is there and not empty.
        let token = ["access_token", "token"]
            .iter()
            .filter_map(|k| v.get(k))
            .find(|t| truthy(t))
            .ok_or_else(|| bad("no access_token or token in the answer"))?;
        match token.as_str() {
            Some(t) if HeaderValue::from_str(&format!("Bearer {t}")).is_ok() => Ok(Secret::new(t)),
            _ => Err(bad("the token is not a string fit for an HTTP header")),
        }
    }

    /// Publishes `records` (one JSON array); an empty list sends nothing.
    pub async fn publish(&self, records: &[EnergyRecord]) -> Result<Published, CimError> {
        if records.is_empty() {
            return Ok(Published {
                records: 0,
                status: 0,
                requests: 0,
            });
        }
        let body = render_energy_array(records);
        let mut requests = 0;
        let mut retried = false;
        loop {
            requests += 1;
            let token = self.token().await?;
            requests += 1;
            let mut auth =
                HeaderValue::from_str(&format!("Bearer {}", token.expose())).map_err(|_| {
                    CimError::BadToken {
                        url: self.token_url.to_string(),
                        detail: "not an HTTP header value".into(),
                    }
                })?;
            auth.set_sensitive(true);
            let resp = self
                .client
                .post(self.submit_url.clone())
                .header(AUTHORIZATION, auth)
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send()
                .await
                .map_err(|e| self.transport("POST", &self.submit_url, e))?;
            let (status, reply) = self
                .read("POST", &self.submit_url, resp, MAX_SUBMIT_REPLY_BYTES)
                .await?;
            if status.is_success() {
                tracing::info!(records = records.len(), status = status.as_u16(), url = %self.submit_url, "published to GreenDIGIT CIM");
                return Ok(Published {
                    records: records.len(),
                    status: status.as_u16(),
                    requests,
                });
            }
            if status == StatusCode::UNAUTHORIZED && !retried {
                tracing::info!(url = %self.submit_url, "token refused (401), fetching a fresh one once");
                retried = true;
                continue;
            }
            return Err(CimError::Http {
                method: "POST",
                url: self.submit_url.to_string(),
                status: status.as_u16(),
                message: self.message(reply, Some(&token)),
            });
        }
    }

    async fn read(
        &self,
        method: &'static str,
        url: &Url,
        resp: reqwest::Response,
        limit: usize,
    ) -> Result<(StatusCode, bytes::Bytes), CimError> {
        if let Some(r) = Redirect::from_response(&resp) {
            return Err(CimError::Redirected(r));
        }
        let status = resp.status();
        match read_body(resp, limit).await {
            Ok(b) => Ok((status, b)),
            Err(BodyError::TooLarge { limit }) => Err(CimError::TooLarge {
                method,
                url: url.to_string(),
                limit,
            }),
            Err(BodyError::Transport(e)) => Err(self.transport(method, url, e)),
        }
    }

    /// A short excerpt of a server's error text, without our secrets.
    fn message(&self, body: bytes::Bytes, token: Option<&Secret>) -> String {
        let mut secrets = vec![self.password.expose()];
        secrets.extend(token.map(Secret::expose));
        let text = excerpt(&scrub(body, &secrets));
        if text.is_empty() {
            "(empty body)".into()
        } else {
            text
        }
    }

    /// A transport error, without its URL (the token URL has the password).
    fn transport(&self, method: &'static str, url: &Url, e: reqwest::Error) -> CimError {
        let timeout = e.is_timeout();
        let e = e.without_url();
        let mut detail = e.to_string();
        let mut cur = std::error::Error::source(&e);
        while let Some(inner) = cur {
            let m = inner.to_string();
            if !detail.contains(&m) {
                detail.push_str(": ");
                detail.push_str(&m);
            }
            cur = inner.source();
        }
        if timeout {
            detail = format!("no answer in time ({detail})");
        }
        // Belt and braces: no secret in the text, whatever a library puts there.
        let detail = String::from_utf8_lossy(&scrub(
            detail.into_bytes().into(),
            &[self.password.expose()],
        ))
        .into_owned();
        CimError::Transport {
            method,
            url: url.to_string(),
            detail,
        }
    }
}

/// Python's truthiness of a JSON value (`or` in cASO's token lookup).
fn truthy(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Null => false,
        serde_json::Value::Bool(b) => *b,
        serde_json::Value::String(s) => !s.is_empty(),
        serde_json::Value::Number(n) => n.as_f64().is_some_and(|x| x != 0.0),
        serde_json::Value::Array(a) => !a.is_empty(),
        serde_json::Value::Object(o) => !o.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(base: &str) -> CimConfig {
        CimConfig {
            base_url: Url::parse(base).unwrap(),
            email: "site@example.org".into(),
            password: Secret::new("pw-S3cr3t"),
            verify_tls: true,
            timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn urls_are_casos() {
        let c = Cim::new(cfg("https://cim.example/prefix/")).unwrap();
        assert_eq!(
            c.token_url.as_str(),
            "https://cim.example/prefix/gd-cim-api/v1/token"
        );
        assert_eq!(
            c.submit_url.as_str(),
            "https://cim.example/prefix/gd-cim-api/v1/submit"
        );
        let mut none = cfg("https://cim.example");
        none.password = Secret::new("");
        assert!(Cim::new(none).is_err());
        assert!(format!("{:?}", Cim::new(cfg("https://cim.example")).unwrap()).contains("****"));
        assert!(
            !format!("{:?}", Cim::new(cfg("https://cim.example")).unwrap()).contains("pw-S3cr3t")
        );
    }

    #[tokio::test]
    async fn a_refused_connection_names_the_url_without_the_password() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let c = Cim::new(cfg(&format!("http://127.0.0.1:{port}"))).unwrap();
        let e = c.token().await.unwrap_err().to_string();
        assert!(
            e.contains(&format!("GET http://127.0.0.1:{port}/gd-cim-api/v1/token:")),
            "{e}"
        );
        assert!(
            !e.contains("pw-S3cr3t") && !e.contains("password") && !e.contains('?'),
            "{e}"
        );
    }

    #[test]
    fn python_truthiness() {
        use serde_json::json;
        assert!(!truthy(&json!("")) && !truthy(&json!(null)) && !truthy(&json!(0)));
        assert!(truthy(&json!("t")));
    }
}
