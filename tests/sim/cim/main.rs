//! GreenDIGIT CIM test double: the two endpoints cASO 5.2.2's
//! `greendigit_cim` messenger uses, over plain HTTP on 127.0.0.1 only.
//!
//! - `GET /gd-cim-api/v1/token?email=E&password=P`: 200
//!   `{"access_token": T}` (or `{"token": T}` with `--token-field token`)
//!   for the configured account, else 401;
//! - `POST /gd-cim-api/v1/submit` with `Authorization: Bearer T` and a JSON
//!   array: 200 `{"status": "ok", "received": N}` and the array is kept; a
//!   missing or wrong token is 401, a body that is not a JSON array 400.
//!
//! Faults (`--fault`, repeatable, or `POST /control/faults` with one spec a
//! line, replacing them): `<endpoint>=<action>[:<trigger>]`, endpoint
//! `token` or `submit`, action a 4xx/5xx status or `stall=<duration>` (the
//! answer is delayed, then given), trigger `first=N`, `nth=N` or none
//! (always); counted per endpoint, 1-based. `GET /received` answers
//! `{"token_requests", "submit_requests", "accepted": [<array>, ...]}`;
//! `--record FILE` also appends each accepted array as a JSON line.
//!
//! Prints `{"port": N}` on stdout when ready. It never writes the password,
//! the token or a request's query anywhere.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

#[derive(Parser, Debug)]
#[command(
    name = "cim-double",
    about = "GreenDIGIT CIM test double (127.0.0.1 only)"
)]
struct Args {
    #[arg(long)]
    email: String,
    #[arg(long)]
    password: String,
    /// The token handed out and required on submit.
    #[arg(long)]
    token: String,
    /// Name of the token in the token answer: access_token or token.
    #[arg(long, default_value = "access_token")]
    token_field: String,
    #[arg(long = "fault", value_parser = Fault::parse)]
    faults: Vec<Fault>,
    /// Append every accepted array here, one JSON line each.
    #[arg(long)]
    record: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Largest request body taken (413 above).
    #[arg(long, default_value_t = 16 << 20)]
    max_body: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endpoint {
    Token,
    Submit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Status(u16),
    Stall(Duration),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Trigger {
    Always,
    First(u64),
    Nth(u64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Fault {
    endpoint: Endpoint,
    action: Action,
    trigger: Trigger,
}

impl Fault {
    fn parse(spec: &str) -> Result<Fault, String> {
        let bad = |why: &str| format!("fault {spec:?}: {why}");
        let (endpoint, rest) = spec
            .split_once('=')
            .ok_or_else(|| bad("expected <endpoint>=<action>"))?;
        let endpoint = match endpoint.trim() {
            "token" => Endpoint::Token,
            "submit" => Endpoint::Submit,
            _ => return Err(bad("endpoint must be token or submit")),
        };
        let (action, trigger) = match rest.split_once(':') {
            Some((a, t)) => (a, Some(t)),
            None => (rest, None),
        };
        let action = match action.strip_prefix("stall=") {
            Some(d) => {
                Action::Stall(humantime::parse_duration(d).map_err(|e| bad(&e.to_string()))?)
            }
            None => match action.parse::<u16>() {
                Ok(s) if (400..600).contains(&s) => Action::Status(s),
                _ => return Err(bad("action must be a 4xx/5xx status or stall=<duration>")),
            },
        };
        let n = |v: &str| v.parse::<u64>().map_err(|e| bad(&e.to_string()));
        let trigger = match trigger {
            None => Trigger::Always,
            Some(t) => match t.split_once('=') {
                Some(("first", v)) => Trigger::First(n(v)?),
                Some(("nth", v)) => Trigger::Nth(n(v)?),
                _ => return Err(bad("trigger must be first=N or nth=N")),
            },
        };
        Ok(Fault {
            endpoint,
            action,
            trigger,
        })
    }

    fn applies(&self, endpoint: Endpoint, count: u64) -> bool {
        self.endpoint == endpoint
            && match self.trigger {
                Trigger::Always => true,
                Trigger::First(n) => count <= n,
                Trigger::Nth(n) => count == n,
            }
    }
}

#[derive(Default)]
struct State {
    faults: Vec<Fault>,
    token_requests: u64,
    submit_requests: u64,
    accepted: Vec<Value>,
}

struct Ctx {
    args: Args,
    state: Mutex<State>,
}

type Resp = Response<Full<Bytes>>;

fn reply(status: StatusCode, body: Value) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if let Err(e) = run(args).await {
        eprintln!("cim-double: {e}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<(), String> {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], args.port)))
        .await
        .map_err(|e| format!("bind: {e}"))?;
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let faults = args.faults.clone();
    let ctx = Arc::new(Ctx {
        args,
        state: Mutex::new(State {
            faults,
            ..State::default()
        }),
    });
    println!("{}", json!({ "port": port }));
    loop {
        let (stream, _) = listener
            .accept()
            .await
            .map_err(|e| format!("accept: {e}"))?;
        let ctx = Arc::clone(&ctx);
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let ctx = Arc::clone(&ctx);
                async move { Ok::<_, Infallible>(handle(&ctx, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The query parameters, percent-decoded.
fn query_params(query: &str) -> Vec<(String, String)> {
    match reqwest::Url::parse(&format!("http://127.0.0.1/?{query}")) {
        Ok(u) => u
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The fault for this request of `endpoint`, counting it.
fn fault_for(ctx: &Ctx, endpoint: Endpoint) -> Option<Action> {
    let mut st = ctx.state.lock().unwrap_or_else(|e| e.into_inner());
    let count = match endpoint {
        Endpoint::Token => {
            st.token_requests += 1;
            st.token_requests
        }
        Endpoint::Submit => {
            st.submit_requests += 1;
            st.submit_requests
        }
    };
    st.faults
        .iter()
        .find(|f| f.applies(endpoint, count))
        .map(|f| f.action)
}

/// Applies a fault: `Some(answer)` for a status, `None` (after the stall) to go on.
async fn apply(action: Option<Action>) -> Option<Resp> {
    match action {
        Some(Action::Status(s)) => Some(reply(
            StatusCode::from_u16(s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            json!({"detail": format!("injected fault {s}")}),
        )),
        Some(Action::Stall(d)) => {
            tokio::time::sleep(d).await;
            None
        }
        None => None,
    }
}

async fn handle(ctx: &Ctx, req: Request<Incoming>) -> Resp {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let query = req.uri().query().unwrap_or("").to_string();
    match (method, path.as_str()) {
        (Method::GET, "/gd-cim-api/v1/token") => {
            if let Some(r) = apply(fault_for(ctx, Endpoint::Token)).await {
                return r;
            }
            let params = query_params(&query);
            let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
            if get("email") == Some(ctx.args.email.as_str())
                && get("password") == Some(ctx.args.password.as_str())
            {
                let mut answer = serde_json::Map::new();
                answer.insert(
                    ctx.args.token_field.clone(),
                    Value::String(ctx.args.token.clone()),
                );
                answer.insert("token_type".into(), json!("bearer"));
                reply(StatusCode::OK, Value::Object(answer))
            } else {
                reply(
                    StatusCode::UNAUTHORIZED,
                    json!({"detail": "Invalid credentials"}),
                )
            }
        }
        (Method::POST, "/gd-cim-api/v1/submit") => {
            let action = fault_for(ctx, Endpoint::Submit);
            let bearer = req
                .headers()
                .get(hyper::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::to_string);
            let body = match Limited::new(req.into_body(), ctx.args.max_body)
                .collect()
                .await
            {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    return reply(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        json!({"detail": "too large"}),
                    );
                }
            };
            if let Some(r) = apply(action).await {
                return r;
            }
            if bearer.as_deref() != Some(ctx.args.token.as_str()) {
                return reply(
                    StatusCode::UNAUTHORIZED,
                    json!({"detail": "Not authenticated"}),
                );
            }
            let array = match serde_json::from_slice::<Value>(&body) {
                Ok(v @ Value::Array(_)) => v,
                _ => {
                    return reply(
                        StatusCode::BAD_REQUEST,
                        json!({"detail": "expected a JSON array"}),
                    );
                }
            };
            let n = array.as_array().map_or(0, Vec::len);
            if let Some(path) = &ctx.args.record {
                use std::io::Write;
                let line = format!("{array}\n");
                let written = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .and_then(|mut f| f.write_all(line.as_bytes()));
                if let Err(e) = written {
                    eprintln!("cim-double: {}: {e}", path.display());
                }
            }
            ctx.state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .accepted
                .push(array);
            reply(StatusCode::OK, json!({"status": "ok", "received": n}))
        }
        (Method::GET, "/received") => {
            let st = ctx.state.lock().unwrap_or_else(|e| e.into_inner());
            reply(
                StatusCode::OK,
                json!({"token_requests": st.token_requests, "submit_requests": st.submit_requests, "accepted": st.accepted}),
            )
        }
        (Method::POST, "/control/faults") => {
            let body = match Limited::new(req.into_body(), 64 << 10).collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    return reply(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        json!({"detail": "too large"}),
                    );
                }
            };
            let text = String::from_utf8_lossy(&body);
            let parsed: Result<Vec<Fault>, String> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(Fault::parse)
                .collect();
            match parsed {
                Ok(faults) => {
                    let mut st = ctx.state.lock().unwrap_or_else(|e| e.into_inner());
                    st.faults = faults;
                    st.token_requests = 0;
                    st.submit_requests = 0;
                    reply(StatusCode::OK, json!({"faults": st.faults.len()}))
                }
                Err(e) => reply(StatusCode::BAD_REQUEST, json!({ "detail": e })),
            }
        }
        _ => reply(StatusCode::NOT_FOUND, json!({"detail": "Not Found"})),
    }
}
