//! ARGO Messaging Service test double: the publish API of AMS and the authx509 endpoint of the
//! ARGO authentication service, over TLS, with deterministic fault injection, an S/MIME check
//! of every stored message (as the APEL receiver makes it) and a plain-HTTP admin port.
//!
//! Binds 127.0.0.1 only. When ready it prints one JSON line on stdout:
//! `{"ams_port":N,"authn_port":N,"admin_port":N}`.
//!
//! Admin (plain HTTP): `GET /stats` (JSON counters), `GET /messages` (JSON list, no bodies),
//! `GET /messages/<seq>` (the decoded `data` of stored message `seq`, byte for byte),
//! `GET /messages/<seq>/content` (its content once the signature verified).

mod fault;
mod state;
mod verify;

use std::borrow::Cow;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use openssl::ssl::{Ssl, SslAcceptor, SslFiletype, SslMethod, SslVerifyMode};
use openssl::x509::X509;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_openssl::SslStream;

use cloud_accounting::smime::legacy_dn;
use fault::{Action, Fault};
use state::{State, Stored};
use verify::Verifier;

#[derive(Parser, Debug)]
#[command(
    name = "ams-double",
    about = "ARGO Messaging Service test double (127.0.0.1 only)"
)]
struct Args {
    /// CA that issued the client certificates accepted by authx509.
    #[arg(long)]
    ca: PathBuf,
    /// Server certificate (PEM) for both TLS ports.
    #[arg(long)]
    cert: PathBuf,
    /// Server key (PEM).
    #[arg(long)]
    key: PathBuf,
    /// The token publish requests must carry (x-api-key header or ?key=); authx509 hands it out.
    #[arg(long)]
    token: String,
    #[arg(long, default_value = "accounting")]
    project: String,
    #[arg(long, default_value = "eu-egi-cloud-accounting")]
    topic: String,
    /// DNs authx509 maps to a token (repeatable); none = any certificate the CA verifies.
    #[arg(long = "authn-dn")]
    authn_dns: Vec<String>,
    /// Fault schedule (repeatable), e.g. `500:every=5`, `503:first=3`, `stall=2s:nth=4`,
    /// `401:after=10`, `413:size>50000`. The first matching fault applies.
    #[arg(long = "fault", value_parser = Fault::parse)]
    faults: Vec<Fault>,
    /// Requests with a larger body get 413 before any message is stored, as a proxy in
    /// front of AMS may answer (AMS itself reads the body whole).
    #[arg(long, default_value_t = 1_000_000)]
    max_size: usize,
    /// AMS's own limit, per message: each message, as AMS exports it to Kafka (its JSON
    /// with `messageId` and `publishTime`), must fit Kafka's producer limit of 1,500,000
    /// bytes (argo-messaging `brokers/kafka.go`). Messages are stored one by one in request
    /// order; the first one over the limit gets 413 and those before it stay stored.
    #[arg(long, default_value_t = 1_500_000)]
    max_message_size: usize,
    /// CA to verify message signatures against (APEL receiver style); off when absent.
    #[arg(long)]
    verify_ca: Option<PathBuf>,
    /// Signer DNs accepted by the signature check (repeatable); none = any.
    #[arg(long = "allowed-dn")]
    allowed_dns: Vec<String>,
    /// Milliseconds added to every publish request before it is answered (a WAN round trip).
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    #[arg(long, default_value_t = 0)]
    ams_port: u16,
    #[arg(long, default_value_t = 0)]
    authn_port: u16,
    #[arg(long, default_value_t = 0)]
    admin_port: u16,
}

struct Ctx {
    args: Args,
    state: State,
    verifier: Option<Verifier>,
}

type Resp = Response<Full<Bytes>>;

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if let Err(e) = run(args).await {
        eprintln!("ams-double: {e}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<(), String> {
    let verifier = match &args.verify_ca {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let cas = X509::stack_from_pem(&pem).map_err(|e| format!("{}: {e}", path.display()))?;
            Some(Verifier::new(cas, args.allowed_dns.clone())?)
        }
        None => None,
    };
    let ams_tls = Arc::new(acceptor(&args, false)?);
    let authn_tls = Arc::new(acceptor(&args, true)?);
    let bind = |port: u16| TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)));
    let ams = bind(args.ams_port)
        .await
        .map_err(|e| format!("AMS port: {e}"))?;
    let authn = bind(args.authn_port)
        .await
        .map_err(|e| format!("authn port: {e}"))?;
    let admin = bind(args.admin_port)
        .await
        .map_err(|e| format!("admin port: {e}"))?;
    let port = |l: &TcpListener| l.local_addr().map(|a| a.port()).unwrap_or(0);
    println!(
        "{}",
        json!({"ams_port": port(&ams), "authn_port": port(&authn), "admin_port": port(&admin)})
    );
    let ctx = Arc::new(Ctx {
        args,
        state: State::default(),
        verifier,
    });
    tokio::select! {
        r = serve_tls(ams, ams_tls, Arc::clone(&ctx), Endpoint::Ams) => r,
        r = serve_tls(authn, authn_tls, Arc::clone(&ctx), Endpoint::Authn) => r,
        r = serve_admin(admin, Arc::clone(&ctx)) => r,
    }
}

/// TLS acceptor; for the authn port it asks for a client certificate and verifies it against
/// `--ca` when one is sent (none sent: the request gets 400, as the real service answers).
fn acceptor(args: &Args, client_cert: bool) -> Result<SslAcceptor, String> {
    let e = |e: openssl::error::ErrorStack| format!("TLS setup: {e}");
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).map_err(e)?;
    b.set_certificate_chain_file(&args.cert)
        .map_err(|x| format!("{}: {x}", args.cert.display()))?;
    b.set_private_key_file(&args.key, SslFiletype::PEM)
        .map_err(|x| format!("{}: {x}", args.key.display()))?;
    b.check_private_key().map_err(e)?;
    if client_cert {
        b.set_ca_file(&args.ca)
            .map_err(|x| format!("{}: {x}", args.ca.display()))?;
        let pem = std::fs::read(&args.ca).map_err(|x| format!("{}: {x}", args.ca.display()))?;
        let ca = X509::from_pem(&pem).map_err(|x| format!("{}: {x}", args.ca.display()))?;
        b.add_client_ca(&ca).map_err(e)?;
        b.set_verify(SslVerifyMode::PEER);
    }
    Ok(b.build())
}

#[derive(Clone, Copy)]
enum Endpoint {
    Ams,
    Authn,
}

async fn serve_tls(
    listener: TcpListener,
    tls: Arc<SslAcceptor>,
    ctx: Arc<Ctx>,
    endpoint: Endpoint,
) -> Result<(), String> {
    loop {
        let (tcp, _) = listener
            .accept()
            .await
            .map_err(|e| format!("accept: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let tls = Arc::clone(&tls);
        let ctx = Arc::clone(&ctx);
        tokio::spawn(async move {
            let Ok(ssl) = Ssl::new(tls.context()) else {
                return;
            };
            let Ok(mut stream) = SslStream::new(ssl, tcp) else {
                return;
            };
            if let Err(e) = Pin::new(&mut stream).accept().await {
                eprintln!("ams-double: TLS handshake refused: {e}");
                return;
            }
            let peer_dn = stream
                .ssl()
                .peer_certificate()
                .map(|c| legacy_dn(c.subject_name()));
            let svc = service_fn(move |req| {
                let ctx = Arc::clone(&ctx);
                let peer_dn = peer_dn.clone();
                async move {
                    // Own task: a handler runs to its end even when the client gave up (stalls).
                    let handled = tokio::spawn(async move {
                        match endpoint {
                            Endpoint::Ams => publish(&ctx, req).await,
                            Endpoint::Authn => authx509(&ctx, peer_dn, req),
                        }
                    })
                    .await;
                    Ok::<_, Infallible>(handled.unwrap_or_else(|_| {
                        error(StatusCode::INTERNAL_SERVER_ERROR, "handler failed")
                    }))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn json_reply(status: StatusCode, v: serde_json::Value) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

/// An error as AMS writes it; 502-504 as the HAProxy balancer in front of it writes them.
fn error(status: StatusCode, message: &str) -> Resp {
    let code = status.as_u16();
    if matches!(code, 502..=504) {
        let reason = status.canonical_reason().unwrap_or("");
        let mut r = Response::new(Full::new(Bytes::from(format!(
            "<html><body><h1>{code} {reason}</h1>\n{message}\n</body></html>\n"
        ))));
        *r.status_mut() = status;
        return r;
    }
    let status_name = match code {
        400 | 413 => "INVALID_ARGUMENT",
        401 => "UNAUTHORIZED",
        403 => "FORBIDDEN",
        404 => "NOT_FOUND",
        408 => "TIMEOUT",
        429 => "TOO_MANY_REQUESTS",
        _ => "INTERNAL_SERVER_ERROR",
    };
    json_reply(
        status,
        json!({"error": {"code": code, "message": message, "status": status_name}}),
    )
}

fn default_message(code: u16) -> &'static str {
    match code {
        401 => "Unauthorized",
        403 => "Access to this resource is forbidden",
        408 => "Request timed out",
        413 => "Message size too large",
        429 => "Too many requests",
        _ => "Internal error",
    }
}

fn authx509(ctx: &Ctx, peer_dn: Option<String>, req: Request<Incoming>) -> Resp {
    let reply = authx509_reply(ctx, peer_dn, &req);
    ctx.state.count("authx509", reply.status().as_u16());
    reply
}

fn authx509_reply(ctx: &Ctx, peer_dn: Option<String>, req: &Request<Incoming>) -> Resp {
    let path = req.uri().path();
    let host = path
        .strip_prefix("/v1/service-types/ams/hosts/")
        .and_then(|p| p.strip_suffix(":authx509"));
    if req.method() != Method::GET || host.is_none_or(str::is_empty) {
        return error(StatusCode::NOT_FOUND, "Not found");
    }
    let Some(dn) = peer_dn else {
        return error(StatusCode::BAD_REQUEST, "No certificate provided.");
    };
    if !ctx.args.authn_dns.is_empty() && !ctx.args.authn_dns.contains(&dn) {
        return error(StatusCode::NOT_FOUND, "Binding was not found");
    }
    let mut g = ctx.state.lock();
    g.tokens_issued += 1;
    g.authx509_dns.push(dn);
    json_reply(StatusCode::OK, json!({"token": ctx.args.token}))
}

async fn publish(ctx: &Ctx, req: Request<Incoming>) -> Resp {
    let reply = publish_reply(ctx, req).await;
    if ctx.args.latency_ms > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(ctx.args.latency_ms)).await;
    }
    ctx.state.count("publish", reply.status().as_u16());
    reply
}

async fn publish_reply(ctx: &Ctx, req: Request<Incoming>) -> Resp {
    let n = {
        let mut g = ctx.state.lock();
        g.publish_requests += 1;
        g.publish_requests
    };
    let want = format!(
        "/v1/projects/{}/topics/{}:publish",
        ctx.args.project, ctx.args.topic
    );
    if req.method() != Method::POST || req.uri().path() != want {
        return error(StatusCode::NOT_FOUND, "Topic doesn't exist");
    }
    let key_header = req
        .headers()
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let key_query = req.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("key=").map(str::to_owned))
    });
    if key_header.or(key_query).as_deref() != Some(ctx.args.token.as_str()) {
        return error(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    // Read a bit more than the limit, to tell "too large" from "exactly at the limit".
    let body = match Limited::new(req.into_body(), ctx.args.max_size + 1)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return error(StatusCode::PAYLOAD_TOO_LARGE, "Message size too large");
        }
    };
    if body.len() > ctx.args.max_size {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "Message size too large");
    }
    let messages = match parse_publish(&body) {
        Ok(m) => m,
        Err(why) => return error(StatusCode::BAD_REQUEST, &why),
    };
    let ids: Vec<String> = messages.iter().filter_map(|m| m.empaid.clone()).collect();
    if let Some(f) = ctx.args.faults.iter().find(|f| f.hits(n, body.len())) {
        match f.action {
            Action::Status(code) => {
                let mut g = ctx.state.lock();
                for id in &ids {
                    g.faulted_empaids.entry(id.clone()).or_default().push(code);
                }
                drop(g);
                let status =
                    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                return error(status, default_message(code));
            }
            Action::Stall(d) => {
                ctx.state.lock().stalled_empaids.extend(ids.iter().cloned());
                tokio::time::sleep(d).await;
            }
        }
    }
    store(ctx, messages)
}

/// One message of a publish request.
struct Received {
    empaid: Option<String>,
    /// The length of the message as AMS exports it to Kafka.
    exported: usize,
    /// `data`, base64-decoded.
    data: Vec<u8>,
}

#[derive(serde::Deserialize)]
struct PublishBody<'a> {
    #[serde(borrow)]
    messages: Vec<PublishMessage<'a>>,
}

#[derive(serde::Deserialize)]
struct PublishMessage<'a> {
    #[serde(default, borrow)]
    attributes: std::collections::HashMap<String, Cow<'a, str>>,
    /// Borrowed from the request: base64 holds nothing JSON must escape.
    #[serde(default, borrow)]
    data: Option<Cow<'a, str>>,
}

fn parse_publish(body: &[u8]) -> Result<Vec<Received>, String> {
    let parsed: PublishBody =
        serde_json::from_slice(body).map_err(|e| format!("Invalid Message Arguments: {e}"))?;
    if parsed.messages.is_empty() {
        return Err("Invalid Message Arguments: no messages".into());
    }
    let mut out = Vec::with_capacity(parsed.messages.len());
    for m in parsed.messages {
        let empaid = m.attributes.get("empaid").map(|e| e.to_string());
        let data = match m.data.as_deref() {
            Some(b64) => openssl::base64::decode_block(b64)
                .map_err(|e| format!("Invalid Message Arguments: data is not base64: {e}"))?,
            None => Vec::new(),
        };
        if data.is_empty() && m.attributes.is_empty() {
            return Err("Invalid Message Arguments: message without data or attributes".into());
        }
        // {"messageId":"<offset>","attributes":{..},"data":"..","publishTime":"<30 chars>"}
        let attributes: usize = m
            .attributes
            .iter()
            .map(|(k, v)| k.len() + v.len() + 6)
            .sum();
        let exported = 100 + attributes + m.data.as_deref().map_or(0, str::len);
        out.push(Received {
            empaid,
            exported,
            data,
        });
    }
    Ok(out)
}

fn store(ctx: &Ctx, messages: Vec<Received>) -> Resp {
    let mut g = ctx.state.lock();
    let mut ids = Vec::with_capacity(messages.len());
    for Received {
        empaid,
        exported,
        data,
    } in messages
    {
        if exported > ctx.args.max_message_size {
            drop(g);
            return error(StatusCode::PAYLOAD_TOO_LARGE, "Message size too large");
        }
        let seq = g.messages.len() as u64;
        let message_id = seq.to_string();
        ids.push(message_id.clone());
        g.messages.push(Stored {
            seq,
            empaid,
            message_id,
            bytes: data.len(),
            data: Bytes::from(data),
            checked: ctx.verifier.is_none(),
            content: None,
            signer_dn: None,
            verify_error: None,
        });
    }
    json_reply(StatusCode::OK, json!({"messageIds": ids}))
}

/// Checks the signature of every message stored since the last admin read. Kept off the
/// publish path (the real AMS does not verify; the APEL receiver does, later), so the
/// double adds no latency to publishing.
async fn verify_pending(ctx: &Arc<Ctx>) {
    if ctx.verifier.is_none() {
        return;
    }
    let pending: Vec<(usize, Bytes)> = {
        let g = ctx.state.lock();
        g.messages
            .iter()
            .enumerate()
            .filter(|(_, m)| !m.checked)
            .map(|(i, m)| (i, m.data.clone()))
            .collect()
    };
    if pending.is_empty() {
        return;
    }
    let ctx2 = Arc::clone(ctx);
    let results = tokio::task::spawn_blocking(move || {
        let Some(v) = &ctx2.verifier else {
            return Vec::new();
        };
        pending
            .into_iter()
            .map(|(i, data)| (i, v.verify(&data)))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    let mut g = ctx.state.lock();
    for (i, outcome) in results {
        let Some(m) = g.messages.get_mut(i) else {
            continue;
        };
        m.checked = true;
        match outcome {
            Ok(v) => {
                m.signer_dn = Some(v.signer_dn);
                m.content = Some(v.content);
            }
            Err(e) => m.verify_error = Some(e),
        }
    }
}

async fn serve_admin(listener: TcpListener, ctx: Arc<Ctx>) -> Result<(), String> {
    loop {
        let (tcp, _) = listener
            .accept()
            .await
            .map_err(|e| format!("accept: {e}"))?;
        let ctx = Arc::clone(&ctx);
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let ctx = Arc::clone(&ctx);
                async move {
                    verify_pending(&ctx).await;
                    Ok::<_, Infallible>(admin(&ctx, req.uri().path()))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

fn admin(ctx: &Ctx, path: &str) -> Resp {
    match path {
        "/stats" => {
            let stats = ctx.state.stats(ctx.verifier.is_some());
            json_reply(
                StatusCode::OK,
                serde_json::to_value(stats).unwrap_or_default(),
            )
        }
        "/messages" => {
            let g = ctx.state.lock();
            json_reply(
                StatusCode::OK,
                serde_json::to_value(&g.messages).unwrap_or_default(),
            )
        }
        p => {
            let rest = p.strip_prefix("/messages/").unwrap_or_default();
            let (seq, want_content) = match rest.strip_suffix("/content") {
                Some(s) => (s, true),
                None => (rest, false),
            };
            let g = ctx.state.lock();
            let found = seq.parse::<usize>().ok().and_then(|s| g.messages.get(s));
            let bytes = match found {
                Some(m) if want_content => m.content.clone(),
                Some(m) => Some(m.data.to_vec()),
                None => None,
            };
            match bytes {
                Some(b) => Response::new(Full::new(Bytes::from(b))),
                None => error(StatusCode::NOT_FOUND, "Not found"),
            }
        }
    }
}
