//! HTTP front: routing, Keystone auth and scopes, the four services, faults,
//! counters and the `/_sim` admin endpoints.

use crate::faults::{Fault, Kind};
use crate::model::Cloud;
use crate::render::{Views, naive_micro};
use bytes::Bytes;
use cloud_accounting::time::Timestamp;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::Frame;
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, RwLock};
use std::time::Duration;

pub const MAX_MICROVERSION: (u32, u32) = (2, 96);
const REGION: &str = "RegionOne";

pub struct AuthConfig {
    pub admin_password: String,
    pub app_cred: Option<(String, String)>,
    /// Project index the application credential is bound to.
    pub app_cred_project: usize,
    pub oidc_token: Option<String>,
    pub allow_system_scope: bool,
    pub token_ttl: Duration,
}

#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Scope {
    Unscoped,
    Project(usize),
    Domain,
    System,
}

pub struct Token {
    pub user: usize,
    pub scope: Scope,
    pub methods: Vec<&'static str>,
    pub app_cred: bool,
    pub issued: Timestamp,
    pub expires: Timestamp,
}

pub struct State {
    pub cloud: Cloud,
    pub views: Views,
    pub base: String,
    pub auth: AuthConfig,
    pub faults: Vec<Fault>,
    pub latency: Duration,
    /// Cinder, admin, unknown filter such as `changes-since`: real Cinder
    /// returns nothing (cASO defect 9); lenient mode ignores the filter.
    pub cinder_lenient: bool,
    /// Largest page any list returns (Nova's `[api] max_limit`, default
    /// 1000): small values make every list span several pages.
    pub max_limit: usize,
    /// Rendered on first use (about a second for the L scenario).
    manifest: OnceLock<Bytes>,
    tokens: RwLock<HashMap<String, Token>>,
    stats: Mutex<BTreeMap<&'static str, u64>>,
    statuses: Mutex<BTreeMap<u16, u64>>,
    total: AtomicU64,
    token_seq: AtomicU64,
}

impl State {
    pub fn new(
        cloud: Cloud,
        base: String,
        auth: AuthConfig,
        faults: Vec<Fault>,
        latency: Duration,
        cinder_lenient: bool,
        max_limit: usize,
    ) -> State {
        let views = Views::render(&cloud, &base);
        State {
            cloud,
            views,
            base,
            auth,
            faults,
            latency,
            cinder_lenient,
            max_limit: max_limit.max(1),
            manifest: OnceLock::new(),
            tokens: RwLock::new(HashMap::new()),
            stats: Mutex::new(BTreeMap::new()),
            statuses: Mutex::new(BTreeMap::new()),
            total: AtomicU64::new(0),
            token_seq: AtomicU64::new(0),
        }
    }

    pub fn manifest(&self) -> &Bytes {
        self.manifest
            .get_or_init(|| Bytes::from(self.cloud.manifest().to_string()))
    }

    fn count(&self, endpoint: &'static str) {
        self.total.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut m) = self.stats.lock() {
            *m.entry(endpoint).or_default() += 1;
        }
    }

    fn stats_json(&self) -> Value {
        let by_endpoint: serde_json::Map<String, Value> = self
            .stats
            .lock()
            .map(|m| m.iter().map(|(k, v)| (k.to_string(), json!(v))).collect())
            .unwrap_or_default();
        let by_status: serde_json::Map<String, Value> = self
            .statuses
            .lock()
            .map(|m| m.iter().map(|(k, v)| (k.to_string(), json!(v))).collect())
            .unwrap_or_default();
        let faults: Vec<Value> = self
            .faults
            .iter()
            .map(|f| json!({"spec": f.spec, "kind": f.kind.name(), "fired": f.fired()}))
            .collect();
        let tokens = self.tokens.read().map(|t| t.len()).unwrap_or(0);
        json!({
            "total": self.total.load(Ordering::Relaxed),
            "by_endpoint": by_endpoint,
            "by_status": by_status,
            "faults": faults,
            "live_tokens": tokens,
        })
    }

    fn reset(&self) {
        self.total.store(0, Ordering::Relaxed);
        if let Ok(mut m) = self.stats.lock() {
            m.clear();
        }
        if let Ok(mut m) = self.statuses.lock() {
            m.clear();
        }
        for f in &self.faults {
            f.reset();
        }
    }

    fn new_token(
        &self,
        user: usize,
        scope: Scope,
        methods: Vec<&'static str>,
        app_cred: bool,
    ) -> String {
        let seq = self.token_seq.fetch_add(1, Ordering::Relaxed);
        let id = format!("gAAAAA{}{:08x}", uuid::Uuid::new_v4().simple(), seq);
        let now = Timestamp::now().truncate_to_second();
        let ttl = i64::try_from(self.auth.token_ttl.as_secs()).unwrap_or(3600);
        let token = Token {
            user,
            scope,
            methods,
            app_cred,
            issued: now,
            expires: now.add_seconds(ttl),
        };
        if let Ok(mut t) = self.tokens.write() {
            t.insert(id.clone(), token);
        }
        id
    }

    fn revoke_all(&self) {
        if let Ok(mut t) = self.tokens.write() {
            t.clear();
        }
    }

    fn is_admin(&self, t: &Token) -> bool {
        t.user == self.cloud.admin
    }
}

/// What a handler produces; faults may still rewrite it.
pub struct Reply {
    status: StatusCode,
    body: Bytes,
    headers: Vec<(&'static str, String)>,
    /// A streamed body instead of `body` (the hostile body faults).
    stream: Option<Stream>,
}

/// The bodies no client should read whole.
#[derive(Clone, Copy)]
enum Stream {
    /// This many bytes, announced honestly.
    Sized(u64),
    /// Chunked, forever.
    Endless,
    /// Announced as 1 TiB, streamed as long as the client reads.
    Lying,
}

pub type Body = BoxBody<Bytes, std::convert::Infallible>;

const CHUNK: usize = 64 << 10;

/// The body of a reply: whole, or streamed in 64 KiB chunks of JSON-ish
/// filler (an open list of zeros).
fn body_of(body: Bytes, stream: Option<Stream>) -> (Body, Option<u64>) {
    let chunk = Bytes::from("0,".repeat(CHUNK / 2));
    let frames = |n: Option<u64>| {
        let chunk = chunk.clone();
        let mut sent = 0u64;
        futures_util::stream::iter(std::iter::from_fn(move || {
            let left = n.map_or(u64::MAX, |n| n - sent);
            if left == 0 {
                return None;
            }
            let take = left.min(CHUNK as u64) as usize;
            sent += take as u64;
            Some(Ok(Frame::data(chunk.slice(..take))))
        }))
    };
    match stream {
        None => (Full::new(body).boxed(), None),
        Some(Stream::Sized(n)) => (StreamBody::new(frames(Some(n))).boxed(), Some(n)),
        Some(Stream::Endless) => (StreamBody::new(frames(None)).boxed(), None),
        Some(Stream::Lying) => (StreamBody::new(frames(None)).boxed(), Some(1 << 40)),
    }
}

impl Reply {
    fn json(status: StatusCode, v: &Value) -> Reply {
        Reply::raw(status, v.to_string())
    }
    fn raw(status: StatusCode, body: String) -> Reply {
        Reply {
            status,
            body: Bytes::from(body),
            headers: Vec::new(),
            stream: None,
        }
    }
    fn header(mut self, k: &'static str, v: String) -> Reply {
        self.headers.push((k, v));
        self
    }
}

fn error(status: StatusCode, message: &str) -> Reply {
    let title = status.canonical_reason().unwrap_or("Error");
    Reply::json(
        status,
        &json!({"error": {"code": status.as_u16(), "title": title, "message": message}}),
    )
}

/// Nova's error shape: `{"itemNotFound": {"code": 404, "message": ...}}`.
fn nova_error(status: StatusCode, message: &str) -> Reply {
    let key = match status.as_u16() {
        400 => "badRequest",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "itemNotFound",
        _ => "computeFault",
    };
    Reply::json(
        status,
        &json!({ key: {"code": status.as_u16(), "message": message} }),
    )
}

struct Req {
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
}

impl Req {
    fn q(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
    fn header(&self, key: &str) -> Option<&str> {
        self.headers.get(key).and_then(|v| v.to_str().ok())
    }
}

/// `application/x-www-form-urlencoded` query parsing (`+` is a space).
fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                Some(v) => {
                    out.push(v);
                    i += 2;
                }
                None => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn encode(s: &str) -> String {
    let mut out = String::new();
    for &c in s.as_bytes() {
        if c.is_ascii_alphanumeric() || b"-_.~".contains(&c) {
            out.push(c as char);
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}

pub async fn handle(
    state: std::sync::Arc<State>,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Body>, std::convert::Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let req = Req {
        method: parts.method,
        path: parts.uri.path().to_string(),
        query: parse_query(parts.uri.query().unwrap_or("")),
        headers: parts.headers,
        body,
    };
    let reply = if req.path.starts_with("/_sim/") {
        admin(&state, &req)
    } else {
        openstack(&state, &req).await
    };
    if let Ok(mut m) = state.statuses.lock() {
        *m.entry(reply.status.as_u16()).or_default() += 1;
    }
    let (body, length) = body_of(reply.body, reply.stream);
    let mut resp = Response::new(body);
    *resp.status_mut() = reply.status;
    let h = resp.headers_mut();
    if let Some(n) = length {
        h.insert("content-length", HeaderValue::from(n));
    }
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h.insert(
        "x-openstack-request-id",
        HeaderValue::from_str(&format!("req-{}", uuid::Uuid::new_v4()))
            .unwrap_or(HeaderValue::from_static("req-0")),
    );
    for (k, v) in reply.headers {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    }
    Ok(resp)
}

fn admin(state: &State, req: &Req) -> Reply {
    match (&req.method, req.path.as_str()) {
        (&Method::GET, "/_sim/stats") => Reply::json(StatusCode::OK, &state.stats_json()),
        (&Method::POST, "/_sim/reset") => {
            state.reset();
            Reply::json(StatusCode::OK, &json!({"reset": true}))
        }
        (&Method::POST, "/_sim/revoke-tokens") => {
            state.revoke_all();
            Reply::json(StatusCode::OK, &json!({"revoked": true}))
        }
        (&Method::GET, "/_sim/manifest") => Reply {
            status: StatusCode::OK,
            body: state.manifest().clone(),
            headers: Vec::new(),
            stream: None,
        },
        (&Method::GET, "/_sim/voms.json") => Reply::json(StatusCode::OK, &state.cloud.voms_json()),
        _ => error(StatusCode::NOT_FOUND, "unknown simulator endpoint"),
    }
}

/// A list page tweak decided by faults before the handler runs.
#[derive(Default, Clone, Copy)]
struct ListFault {
    truncated: bool,
    repeat_marker: bool,
    endless: bool,
}

/// The project ids a request concerns, for `project=` fault selectors.
fn request_projects<'a>(state: &'a State, req: &'a Req) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    if let Some(tok) = req.header("x-auth-token")
        && let Ok(tokens) = state.tokens.read()
        && let Some(t) = tokens.get(tok)
        && let Scope::Project(p) = t.scope
    {
        out.push(state.cloud.projects[p].id.as_str());
    }
    for seg in req.path.split('/') {
        if seg.len() == 32 && seg.bytes().all(|b| b.is_ascii_hexdigit()) {
            out.push(seg);
        }
    }
    for (k, v) in &req.query {
        if k == "project_id" || k == "tenant_id" {
            out.push(v.as_str());
        }
    }
    out
}

async fn openstack(state: &State, req: &Req) -> Reply {
    let endpoint = classify(req);
    state.count(endpoint);
    let mut wait = state.latency;
    let mut list_fault = ListFault::default();
    let mut malformed = false;
    let mut fail: Option<Reply> = None;
    let mut stream: Option<Stream> = None;
    if !state.faults.is_empty() {
        let projects = request_projects(state, req);
        let method = req.method.as_str();
        for f in &state.faults {
            if !f.check(method, &req.path, &projects) {
                continue;
            }
            match &f.kind {
                Kind::Status(code) => {
                    let status =
                        StatusCode::from_u16(*code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                    fail.get_or_insert_with(|| error(status, "injected fault"));
                }
                Kind::Stall(d) | Kind::Latency(d) => wait += *d,
                Kind::MalformedJson => malformed = true,
                Kind::TruncatedPage => list_fault.truncated = true,
                Kind::RepeatMarker => list_fault.repeat_marker = true,
                // Revocation, not refusal: this request's own token is now
                // unknown (401), but a fresh authentication still works.
                Kind::RevokeAfter(_) => state.revoke_all(),
                Kind::HugeBody(n) => stream = Some(Stream::Sized(*n)),
                Kind::EndlessBody => stream = Some(Stream::Endless),
                Kind::DenseJson(n) => {
                    fail.get_or_insert_with(|| dense_json(&req.path, *n));
                }
                Kind::LyingLength => stream = Some(Stream::Lying),
                Kind::EndlessPages => list_fault.endless = true,
                Kind::Redirect(port) => {
                    let origin = match port {
                        Some(p) => format!("http://127.0.0.1:{p}"),
                        None => state.base.clone(),
                    };
                    let query: Vec<String> = req
                        .query
                        .iter()
                        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
                        .collect();
                    let mut location = format!("{origin}{}", req.path);
                    if !query.is_empty() {
                        location = format!("{location}?{}", query.join("&"));
                    }
                    fail.get_or_insert_with(|| {
                        error(StatusCode::FOUND, "moved").header("location", location)
                    });
                }
                Kind::Garbage401(n) => {
                    fail.get_or_insert_with(|| garbage_401(req, *n));
                }
            }
        }
    }
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    if let Some(r) = fail {
        return r;
    }
    if let Some(stream) = stream {
        let mut r = Reply::raw(StatusCode::OK, String::new());
        r.stream = Some(stream);
        return r;
    }
    let mut reply = route(state, req, list_fault);
    if malformed && reply.status.is_success() && !reply.body.is_empty() {
        let cut = reply.body.len() / 2;
        let mut b = reply.body.slice(..cut).to_vec();
        b.extend_from_slice(b"\x00<html>");
        reply.body = Bytes::from(b);
    }
    reply
}

/// `{"<list>": [{"id": "a", "name": "b", "x": [0,0,...]}]}` of `size` bytes.
fn dense_json(path: &str, size: u64) -> Reply {
    let list = ["projects", "servers", "volumes", "floatingips", "images"]
        .into_iter()
        .find(|l| path.contains(l))
        .unwrap_or("items");
    let head = format!(r#"{{"{list}":[{{"id":"a","name":"b","x":["#);
    let tail = "0]}]}";
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    let zeros = size.saturating_sub(head.len() + tail.len()) / 2;
    let mut body = String::with_capacity(size);
    body.push_str(&head);
    body.push_str(&"0,".repeat(zeros));
    body.push_str(tail);
    Reply::raw(StatusCode::OK, body)
}

/// A 401 whose body echoes what the client sent (request body, token),
/// then terminal escapes, control bytes and invalid UTF-8, `size` bytes in
/// all: what a broken proxy in front of Keystone may send.
fn garbage_401(req: &Req, size: u64) -> Reply {
    let mut body = Vec::new();
    body.extend_from_slice(&req.body);
    body.extend_from_slice(req.header("x-auth-token").unwrap_or("").as_bytes());
    let filler: &[u8] = b"\x1b[2J\x1b[31mPWNED\r\n\x00\x07\xff\xfe<html>\n";
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    while body.len() < size {
        body.extend_from_slice(filler);
    }
    body.truncate(size.max(req.body.len()));
    Reply {
        status: StatusCode::UNAUTHORIZED,
        body: Bytes::from(body),
        headers: Vec::new(),
        stream: None,
    }
}

/// The counter name of a request: service and operation, ids elided.
fn classify(req: &Req) -> &'static str {
    let p = req.path.as_str();
    let segs: Vec<&str> = p.split('/').filter(|s| !s.is_empty()).collect();
    let get = req.method == Method::GET;
    match segs.as_slice() {
        ["identity"] | ["identity", "v3"] => "identity discovery",
        ["identity", "v3", "auth", "tokens"] if req.method == Method::POST => {
            "identity POST auth/tokens"
        }
        ["identity", "v3", "auth", "tokens"] => "identity auth/tokens (other)",
        ["identity", "v3", "OS-FEDERATION", ..] => "identity federation auth",
        ["identity", "v3", "auth", "projects"] => "identity GET auth/projects",
        ["identity", "v3", "projects"] => "identity GET projects",
        ["identity", "v3", "projects", _] => "identity GET projects/{id}",
        ["identity", "v3", "users", _] => "identity GET users/{id}",
        ["identity", "v3", "users"] => "identity GET users",
        ["identity", ..] => "identity other",
        ["compute"] | ["compute", "v2.1"] | ["compute", "v2"] => "compute discovery",
        ["compute", _, rest @ ..] => {
            let rest: Vec<&str> = if rest.first().is_some_and(|s| is_hex32(s)) {
                rest[1..].to_vec()
            } else {
                rest.to_vec()
            };
            match rest.as_slice() {
                ["servers", "detail"] => "compute GET servers/detail",
                ["servers"] => "compute GET servers",
                ["servers", _] => "compute GET servers/{id}",
                ["flavors", "detail"] => "compute GET flavors/detail",
                ["flavors"] => "compute GET flavors",
                ["flavors", _, "os-extra_specs"] => "compute GET flavors/{id}/os-extra_specs",
                ["flavors", _] => "compute GET flavors/{id}",
                ["os-simple-tenant-usage", _] => "compute GET os-simple-tenant-usage/{id}",
                ["os-simple-tenant-usage"] => "compute GET os-simple-tenant-usage",
                _ => "compute other",
            }
        }
        ["image"] | ["image", "versions"] => "image discovery",
        ["image", "v2", "images"] => "image GET images",
        ["image", "v2", "images", _] => "image GET images/{id}",
        ["image", "v2", "schemas", ..] => "image GET schemas",
        ["image", ..] => "image other",
        ["volume"] | ["volume", "v3"] => "volume discovery",
        ["volume", "v3", .., "volumes", "detail"] => "volume GET volumes/detail",
        ["volume", "v3", .., "volumes"] => "volume GET volumes",
        ["volume", "v3", _, "volumes", _] | ["volume", "v3", "volumes", _] => {
            "volume GET volumes/{id}"
        }
        ["volume", ..] => "volume other",
        ["network"] | ["network", "v2.0"] => "network discovery",
        ["network", "v2.0", "floatingips"] => "network GET floatingips",
        ["network", "v2.0", "floatingips", _] => "network GET floatingips/{id}",
        ["network", ..] => "network other",
        _ if get => "unknown GET",
        _ => "unknown",
    }
}

fn is_hex32(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn route(state: &State, req: &Req, lf: ListFault) -> Reply {
    let segs: Vec<&str> = req.path.split('/').filter(|s| !s.is_empty()).collect();
    match segs.first().copied() {
        Some("identity") => identity(state, req, &segs[1..], lf),
        Some("compute") => with_token(state, req, |t| compute(state, req, t, &segs[1..], lf)),
        Some("image") => with_token_or_discovery(state, req, &segs[1..], |t| {
            image(state, req, t, &segs[1..], lf)
        }),
        Some("volume") => with_token_or_discovery(state, req, &segs[1..], |t| {
            volume(state, req, t, &segs[1..], lf)
        }),
        Some("network") => with_token_or_discovery(state, req, &segs[1..], |t| {
            network(state, req, t, &segs[1..], lf)
        }),
        _ => error(StatusCode::NOT_FOUND, "The resource could not be found."),
    }
}

/// A token for a service call, or why not (version documents need none).
enum Caller<'a> {
    Anonymous,
    Token(&'a Token),
}

fn with_token(state: &State, req: &Req, f: impl FnOnce(Caller<'_>) -> Reply) -> Reply {
    let Some(id) = req.header("x-auth-token") else {
        return f(Caller::Anonymous);
    };
    let Ok(tokens) = state.tokens.read() else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "token table poisoned");
    };
    match tokens.get(id) {
        Some(t) if t.expires > Timestamp::now() => f(Caller::Token(t)),
        _ => error(
            StatusCode::UNAUTHORIZED,
            "The request you have made requires authentication.",
        ),
    }
}

fn with_token_or_discovery(
    state: &State,
    req: &Req,
    _rest: &[&str],
    f: impl FnOnce(Caller<'_>) -> Reply,
) -> Reply {
    with_token(state, req, f)
}

fn unauthorized() -> Reply {
    error(
        StatusCode::UNAUTHORIZED,
        "The request you have made requires authentication.",
    )
}

/// The project a service call lists by default, and whether it may see all.
struct Access {
    project: Option<usize>,
    admin: bool,
}

fn service_access(state: &State, t: &Token) -> Result<Access, Reply> {
    let admin = state.is_admin(t);
    match t.scope {
        Scope::Project(p) => Ok(Access {
            project: Some(p),
            admin,
        }),
        Scope::System if admin => Ok(Access {
            project: None,
            admin,
        }),
        _ => Err(error(
            StatusCode::UNAUTHORIZED,
            "a project-scoped token is required",
        )),
    }
}

fn project_index(state: &State, id: &str) -> Option<usize> {
    state.cloud.projects.iter().position(|p| p.id == id)
}

fn truthy(v: Option<&str>) -> bool {
    matches!(
        v.map(str::to_ascii_lowercase).as_deref(),
        Some("1" | "true" | "yes" | "on")
    )
}

// ---------------------------------------------------------------- pagination

struct Page {
    items: Vec<usize>,
    next_marker: Option<String>,
}

/// `limit`/`marker` over an ordered list; a full page gets a next marker
/// (as Nova, Cinder and Neutron do, so the last link leads to an empty page).
fn paginate(
    order: &[usize],
    id_of: impl Fn(usize) -> String,
    marker: Option<&str>,
    limit: usize,
    lf: ListFault,
) -> Result<Page, String> {
    let endless = if lf.endless {
        Some(endless_marker(marker).map_or(1, |n| n + 1))
    } else {
        None
    };
    let start = match marker {
        None => 0,
        // The endless pages hold the first page again.
        Some(_) if endless.is_some() => 0,
        Some(m) => match order.iter().position(|&i| id_of(i) == m) {
            Some(pos) => pos + 1,
            None => return Err(format!("marker [{m}] not found")),
        },
    };
    let end = start.saturating_add(limit).min(order.len());
    let mut items: Vec<usize> = order[start..end].to_vec();
    let mut next_marker = if items.len() == limit && limit > 0 {
        items.last().map(|&i| id_of(i))
    } else {
        None
    };
    if lf.truncated {
        items.truncate(items.len() / 2);
        next_marker = Some(uuid::Uuid::new_v4().to_string());
    }
    if lf.repeat_marker {
        next_marker = match marker {
            Some(m) => Some(m.to_string()),
            None => next_marker.or_else(|| order.last().map(|&i| id_of(i))),
        };
    }
    if let Some(n) = endless {
        next_marker = Some(format!("endless-{n}"));
    }
    Ok(Page { items, next_marker })
}

/// The page number of an `endless-pages` marker.
fn endless_marker(marker: Option<&str>) -> Option<u64> {
    marker?.strip_prefix("endless-")?.parse().ok()
}

fn limit_param(state: &State, req: &Req, default: usize, max: usize) -> Result<usize, String> {
    let max = max.min(state.max_limit);
    match req.q("limit") {
        None => Ok(default.min(max)),
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n >= 0 => Ok((n as usize).min(max)),
            _ => Err(format!("limit must be a non-negative integer, got {v:?}")),
        },
    }
}

/// The request's own URL with `marker` (and `limit`) replaced.
fn next_href(base_path: &str, req: &Req, marker: &str, limit: usize) -> String {
    let mut q: Vec<String> = req
        .query
        .iter()
        .filter(|(k, _)| k != "marker" && k != "limit")
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    q.push(format!("limit={limit}"));
    q.push(format!("marker={}", encode(marker)));
    format!("{base_path}?{}", q.join("&"))
}

fn join_items(views: &[String], items: &[usize]) -> String {
    let mut s = String::with_capacity(items.iter().map(|&i| views[i].len() + 1).sum::<usize>() + 2);
    s.push('[');
    for (n, &i) in items.iter().enumerate() {
        if n > 0 {
            s.push(',');
        }
        s.push_str(&views[i]);
    }
    s.push(']');
    s
}

// ------------------------------------------------------------------ identity

fn identity(state: &State, req: &Req, rest: &[&str], lf: ListFault) -> Reply {
    let v3 = format!("{}/identity/v3/", state.base);
    let version = json!({
        "id": "v3.14",
        "status": "stable",
        "updated": "2020-04-07T00:00:00Z",
        "links": [{"rel": "self", "href": v3}],
        "media-types": [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}],
    });
    match (&req.method, rest) {
        (&Method::GET, []) => Reply::json(
            StatusCode::MULTIPLE_CHOICES,
            &json!({"versions": {"values": [version]}}),
        ),
        (&Method::GET, ["v3"]) => Reply::json(StatusCode::OK, &json!({ "version": version })),
        (&Method::POST, ["v3", "auth", "tokens"]) => authenticate(state, req),
        (
            &Method::POST,
            [
                "v3",
                "OS-FEDERATION",
                "identity_providers",
                _idp,
                "protocols",
                _proto,
                "auth",
            ],
        )
        | (
            &Method::GET,
            [
                "v3",
                "OS-FEDERATION",
                "identity_providers",
                _idp,
                "protocols",
                _proto,
                "auth",
            ],
        ) => federated(state, req),
        (&Method::GET, ["v3", "auth", "tokens"]) | (&Method::HEAD, ["v3", "auth", "tokens"]) => {
            with_token(state, req, |caller| {
                if matches!(caller, Caller::Anonymous) {
                    return unauthorized();
                }
                let Some(subject) = req.header("x-subject-token") else {
                    return error(StatusCode::BAD_REQUEST, "X-Subject-Token missing");
                };
                let Ok(tokens) = state.tokens.read() else {
                    return unauthorized();
                };
                match tokens.get(subject) {
                    Some(t) if t.expires > Timestamp::now() => {
                        Reply::json(StatusCode::OK, &token_body(state, t))
                            .header("x-subject-token", subject.to_string())
                    }
                    _ => error(StatusCode::NOT_FOUND, "Could not find token"),
                }
            })
        }
        (&Method::DELETE, ["v3", "auth", "tokens"]) => {
            if let Some(subject) = req.header("x-subject-token")
                && let Ok(mut tokens) = state.tokens.write()
            {
                tokens.remove(subject);
            }
            Reply::raw(StatusCode::NO_CONTENT, String::new())
        }
        (&Method::GET, ["v3", ..]) => with_token(state, req, |caller| {
            let Caller::Token(t) = caller else {
                return unauthorized();
            };
            identity_read(state, req, t, &rest[1..], lf)
        }),
        _ => error(StatusCode::NOT_FOUND, "The resource could not be found."),
    }
}

fn identity_read(state: &State, req: &Req, t: &Token, rest: &[&str], lf: ListFault) -> Reply {
    let admin =
        state.is_admin(t) && matches!(t.scope, Scope::System | Scope::Project(_) | Scope::Domain);
    let member_of =
        |p: usize| state.is_admin(t) || state.cloud.projects[p].members.contains(&t.user);
    match rest {
        ["projects"] => {
            if !admin {
                return error(
                    StatusCode::FORBIDDEN,
                    "You are not authorized to perform the requested action: identity:list_projects.",
                );
            }
            let tags: Vec<&str> = req
                .q("tags")
                .map(|s| s.split(',').collect())
                .unwrap_or_default();
            let tags_any: Vec<&str> = req
                .q("tags-any")
                .map(|s| s.split(',').collect())
                .unwrap_or_default();
            let list: Vec<&Value> = state
                .cloud
                .projects
                .iter()
                .zip(&state.views.projects)
                .filter(|(p, _)| tags.iter().all(|t| p.tags.iter().any(|pt| pt == t)))
                .filter(|(p, _)| {
                    tags_any.is_empty() || tags_any.iter().any(|t| p.tags.iter().any(|pt| pt == t))
                })
                .filter(|(p, _)| req.q("name").is_none_or(|n| n == p.name))
                .filter(|(_, _)| req.q("domain_id").is_none_or(|d| d == "default"))
                .map(|(_, v)| v)
                .collect();
            let next = lf.endless.then(|| {
                let n = endless_marker(req.q("marker")).map_or(1, |n| n + 1);
                format!(
                    "{}{}",
                    state.base,
                    next_href("/identity/v3/projects", req, &format!("endless-{n}"), 1000)
                )
            });
            Reply::json(
                StatusCode::OK,
                &json!({"projects": list, "links": {"self": format!("{}/identity/v3/projects", state.base), "previous": null, "next": next}}),
            )
        }
        ["projects", id] => match project_index(state, id) {
            Some(p) if member_of(p) && !matches!(t.scope, Scope::Unscoped) => {
                Reply::json(StatusCode::OK, &json!({"project": state.views.projects[p]}))
            }
            Some(_) => error(
                StatusCode::FORBIDDEN,
                "You are not authorized to perform the requested action: identity:get_project.",
            ),
            None => error(
                StatusCode::NOT_FOUND,
                &format!("Could not find project: {id}."),
            ),
        },
        ["users", id] => {
            let Some(u) = state.cloud.users.iter().position(|u| u.id == *id) else {
                return error(
                    StatusCode::NOT_FOUND,
                    &format!("Could not find user: {id}."),
                );
            };
            if !admin && u != t.user {
                return error(
                    StatusCode::FORBIDDEN,
                    "You are not authorized to perform the requested action: identity:get_user.",
                );
            }
            if state.cloud.users[u].deleted {
                return error(
                    StatusCode::NOT_FOUND,
                    &format!("Could not find user: {id}."),
                );
            }
            Reply::json(StatusCode::OK, &json!({"user": state.views.users[u]}))
        }
        ["users"] => {
            if !admin {
                return error(
                    StatusCode::FORBIDDEN,
                    "You are not authorized to perform the requested action: identity:list_users.",
                );
            }
            let list: Vec<&Value> = state
                .cloud
                .users
                .iter()
                .zip(&state.views.users)
                .filter(|(u, _)| !u.deleted && req.q("name").is_none_or(|n| n == u.name))
                .map(|(_, v)| v)
                .collect();
            Reply::json(
                StatusCode::OK,
                &json!({"users": list, "links": {"self": null, "previous": null, "next": null}}),
            )
        }
        ["auth", "projects"] => {
            let list: Vec<&Value> = (0..state.cloud.projects.len())
                .filter(|&p| member_of(p))
                .map(|p| &state.views.projects[p])
                .collect();
            Reply::json(
                StatusCode::OK,
                &json!({"projects": list, "links": {"self": null, "previous": null, "next": null}}),
            )
        }
        ["domains", "default"] => Reply::json(
            StatusCode::OK,
            &json!({"domain": {"id": "default", "name": "Default", "enabled": true, "description": "", "tags": [], "options": {}}}),
        ),
        _ => error(StatusCode::NOT_FOUND, "The resource could not be found."),
    }
}

fn find_user(state: &State, u: &Value) -> Option<usize> {
    if let Some(id) = u.get("id").and_then(Value::as_str) {
        return state
            .cloud
            .users
            .iter()
            .position(|x| x.id == id && !x.deleted);
    }
    let name = u.get("name").and_then(Value::as_str)?;
    let domain = u.get("domain")?;
    let domain_ok = domain.get("id").and_then(Value::as_str) == Some("default")
        || domain.get("name").and_then(Value::as_str) == Some("Default");
    if !domain_ok {
        return None;
    }
    state
        .cloud
        .users
        .iter()
        .position(|x| x.name == name && !x.deleted)
}

fn authenticate(state: &State, req: &Req) -> Reply {
    let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "Expecting to find JSON in request body.",
        );
    };
    let auth = &body["auth"];
    let identity = &auth["identity"];
    let methods: Vec<&str> = identity["methods"]
        .as_array()
        .map(|m| m.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let scope = auth.get("scope");
    // (user, scope when none is asked, methods, application credential?)
    let (user, default_scope, used, app_cred) = match methods.as_slice() {
        ["password"] => {
            let pw = &identity["password"]["user"];
            let Some(u) = find_user(state, pw) else {
                return unauthorized();
            };
            if pw["password"].as_str() != Some(state.auth.admin_password.as_str()) {
                return unauthorized();
            }
            (u, Scope::Unscoped, vec!["password"], false)
        }
        ["application_credential"] => {
            let ac = &identity["application_credential"];
            let Some((id, secret)) = &state.auth.app_cred else {
                return unauthorized();
            };
            let id_ok = ac["id"].as_str() == Some(id.as_str())
                || (ac["name"].as_str() == Some("sim-app-cred") && ac.get("user").is_some());
            if !id_ok || ac["secret"].as_str() != Some(secret.as_str()) {
                return unauthorized();
            }
            // Keystone: an application credential token cannot be rescoped.
            if scope.is_some() {
                return unauthorized();
            }
            (
                state.cloud.admin,
                Scope::Project(state.auth.app_cred_project),
                vec!["application_credential"],
                true,
            )
        }
        ["token"] => {
            let Some(id) = identity["token"]["id"].as_str() else {
                return unauthorized();
            };
            let Ok(tokens) = state.tokens.read() else {
                return unauthorized();
            };
            match tokens.get(id) {
                Some(t) if t.expires > Timestamp::now() && !t.app_cred => {
                    let mut m = t.methods.clone();
                    if !m.contains(&"token") {
                        m.push("token");
                    }
                    (t.user, Scope::Unscoped, m, false)
                }
                _ => return unauthorized(),
            }
        }
        _ => return unauthorized(),
    };
    let scope = match scope {
        None => default_scope,
        Some(s) => match resolve_scope(state, s, user) {
            Ok(s) => s,
            Err(r) => return r,
        },
    };
    let id = state.new_token(user, scope, used, app_cred);
    let Ok(tokens) = state.tokens.read() else {
        return unauthorized();
    };
    let Some(t) = tokens.get(&id) else {
        return unauthorized();
    };
    let mut body = token_body(state, t);
    if req.q("nocatalog").is_some() {
        body["token"].as_object_mut().map(|o| o.remove("catalog"));
    }
    Reply::json(StatusCode::CREATED, &body).header("x-subject-token", id)
}

fn resolve_scope(state: &State, s: &Value, user: usize) -> Result<Scope, Reply> {
    let admin = user == state.cloud.admin;
    if let Some(sys) = s.get("system") {
        if sys.get("all").and_then(Value::as_bool) == Some(true)
            && admin
            && state.auth.allow_system_scope
        {
            return Ok(Scope::System);
        }
        return Err(unauthorized());
    }
    if let Some(d) = s.get("domain") {
        let ok = d.get("id").and_then(Value::as_str) == Some("default")
            || d.get("name").and_then(Value::as_str) == Some("Default");
        return if ok && admin {
            Ok(Scope::Domain)
        } else {
            Err(unauthorized())
        };
    }
    if let Some(p) = s.get("project") {
        let idx = if let Some(id) = p.get("id").and_then(Value::as_str) {
            project_index(state, id)
        } else {
            let name = p.get("name").and_then(Value::as_str);
            let d = p.get("domain");
            let domain_ok = d.is_some_and(|d| {
                d.get("id").and_then(Value::as_str) == Some("default")
                    || d.get("name").and_then(Value::as_str) == Some("Default")
            });
            if !domain_ok {
                return Err(unauthorized());
            }
            state
                .cloud
                .projects
                .iter()
                .position(|x| Some(x.name.as_str()) == name)
        };
        return match idx {
            Some(p) if admin || state.cloud.projects[p].members.contains(&user) => {
                Ok(Scope::Project(p))
            }
            _ => Err(unauthorized()),
        };
    }
    Err(unauthorized())
}

fn federated(state: &State, req: &Req) -> Reply {
    let bearer = req
        .header("authorization")
        .and_then(|h| h.strip_prefix("Bearer "));
    match (&state.auth.oidc_token, bearer) {
        (Some(want), Some(got)) if want == got => {
            let id = state.new_token(state.cloud.admin, Scope::Unscoped, vec!["mapped"], false);
            let Ok(tokens) = state.tokens.read() else {
                return unauthorized();
            };
            match tokens.get(&id) {
                Some(t) => Reply::json(StatusCode::CREATED, &token_body(state, t))
                    .header("x-subject-token", id.clone()),
                None => unauthorized(),
            }
        }
        _ => unauthorized(),
    }
}

fn catalog(state: &State, scope: Scope) -> Value {
    let b = &state.base;
    let volume = match scope {
        Scope::Project(p) => format!("{b}/volume/v3/{}", state.cloud.projects[p].id),
        _ => format!("{b}/volume/v3"),
    };
    let svc = |ty: &str, name: &str, url: &str| {
        let eps: Vec<Value> = ["public", "internal", "admin"]
            .iter()
            .map(|i| {
                json!({"id": format!("{name}-{i}"), "interface": i, "region": REGION, "region_id": REGION, "url": url})
            })
            .collect();
        json!({"type": ty, "name": name, "id": format!("{name}-svc"), "endpoints": eps})
    };
    json!([
        svc("identity", "keystone", &format!("{b}/identity")),
        svc("compute", "nova", &format!("{b}/compute/v2.1")),
        svc("image", "glance", &format!("{b}/image")),
        svc("volumev3", "cinderv3", &volume),
        svc("block-storage", "cinder", &volume),
        svc("network", "neutron", &format!("{b}/network")),
    ])
}

fn token_body(state: &State, t: &Token) -> Value {
    let user = &state.cloud.users[t.user];
    let admin = state.is_admin(t);
    let roles = if admin {
        json!([{"id": "r-admin", "name": "admin"}, {"id": "r-member", "name": "member"}, {"id": "r-reader", "name": "reader"}])
    } else {
        json!([{"id": "r-member", "name": "member"}, {"id": "r-reader", "name": "reader"}])
    };
    let mut tok = json!({
        "methods": t.methods,
        "user": {"id": user.id, "name": user.name, "domain": {"id": "default", "name": "Default"}, "password_expires_at": null},
        "audit_ids": [format!("{:x}", t.issued.unix_seconds())],
        "expires_at": format!("{}Z", naive_micro(t.expires)),
        "issued_at": format!("{}Z", naive_micro(t.issued)),
    });
    match t.scope {
        Scope::Unscoped => {}
        Scope::Project(p) => {
            let pr = &state.cloud.projects[p];
            tok["project"] = json!({"id": pr.id, "name": pr.name, "domain": {"id": "default", "name": "Default"}});
            tok["is_domain"] = json!(false);
        }
        Scope::Domain => tok["domain"] = json!({"id": "default", "name": "Default"}),
        Scope::System => tok["system"] = json!({"all": true}),
    }
    if t.scope != Scope::Unscoped {
        tok["roles"] = roles;
        tok["catalog"] = catalog(state, t.scope);
    }
    if t.app_cred {
        tok["application_credential"] = json!({"id": state.auth.app_cred.as_ref().map(|a| a.0.clone()), "name": "sim-app-cred", "restricted": true});
    }
    json!({ "token": tok })
}

// ------------------------------------------------------------------- compute

/// The compute microversion a request asks for (`None` = 2.1 base).
fn microversion(req: &Req) -> Result<(u32, u32), Reply> {
    let raw = req
        .header("openstack-api-version")
        .and_then(|v| v.trim().strip_prefix("compute").map(str::trim))
        .or_else(|| req.header("x-openstack-nova-api-version").map(str::trim));
    let Some(raw) = raw else {
        return Ok((2, 1));
    };
    if raw.eq_ignore_ascii_case("latest") {
        return Ok(MAX_MICROVERSION);
    }
    let parsed = raw
        .split_once('.')
        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)));
    match parsed {
        Some(v) if v >= (2, 1) && v <= MAX_MICROVERSION => Ok(v),
        Some((2, 0)) => Ok((2, 1)),
        _ => Err(Reply::json(
            StatusCode::NOT_ACCEPTABLE,
            &json!({"computeFault": {"code": 406, "message": format!("Version {raw} is not supported by the API.")}}),
        )),
    }
}

fn compute_versions(state: &State) -> (Value, Value) {
    let b = &state.base;
    let v21 = json!({
        "id": "v2.1", "status": "CURRENT",
        "version": format!("{}.{}", MAX_MICROVERSION.0, MAX_MICROVERSION.1), "min_version": "2.1",
        "updated": "2013-07-23T11:33:21Z",
        "links": [{"rel": "self", "href": format!("{b}/compute/v2.1/")}],
        "media-types": [{"base": "application/json", "type": "application/vnd.openstack.compute+json;version=2.1"}],
    });
    let v20 = json!({
        "id": "v2.0", "status": "SUPPORTED", "version": "", "min_version": "",
        "updated": "2011-01-21T11:33:21Z",
        "links": [{"rel": "self", "href": format!("{b}/compute/v2/")}],
    });
    (v20, v21)
}

fn compute(state: &State, req: &Req, caller: Caller<'_>, rest: &[&str], lf: ListFault) -> Reply {
    match rest {
        [] => {
            let (v20, v21) = compute_versions(state);
            return Reply::json(StatusCode::OK, &json!({"versions": [v20, v21]}));
        }
        ["v2.1"] => {
            return Reply::json(
                StatusCode::OK,
                &json!({"version": compute_versions(state).1}),
            );
        }
        ["v2"] => {
            return Reply::json(
                StatusCode::OK,
                &json!({"version": compute_versions(state).0}),
            );
        }
        _ => {}
    }
    let Caller::Token(t) = caller else {
        return unauthorized();
    };
    if rest.first() != Some(&"v2.1") {
        return nova_error(StatusCode::NOT_FOUND, "Unknown API version");
    }
    let mut rest = &rest[1..];
    let mut url_project: Option<usize> = None;
    if let Some(first) = rest.first()
        && is_hex32(first)
    {
        url_project = project_index(state, first);
        if url_project.is_none() {
            return nova_error(StatusCode::NOT_FOUND, "project not found");
        }
        rest = &rest[1..];
    }
    let mv = match microversion(req) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let access = match service_access(state, t) {
        Ok(a) => a,
        Err(r) => return r,
    };
    if let (Some(up), false) = (url_project, access.admin)
        && Some(up) != access.project
    {
        return nova_error(StatusCode::FORBIDDEN, "Policy doesn't allow this project.");
    }
    let vs = format!("{}.{}", mv.0, mv.1);
    let reply = match (&req.method, rest) {
        (&Method::GET, ["servers", "detail"]) => list_servers(state, req, &access, mv, true, lf),
        (&Method::GET, ["servers"]) => list_servers(state, req, &access, mv, false, lf),
        (&Method::GET, ["servers", id]) => show_server(state, &access, mv, id),
        (&Method::GET, ["flavors", "detail"]) => list_flavors(state, req, &access, true, lf),
        (&Method::GET, ["flavors"]) => list_flavors(state, req, &access, false, lf),
        (&Method::GET, ["flavors", id]) => {
            match state.cloud.flavors.iter().position(|f| f.id == *id) {
                Some(f) => Reply::raw(
                    StatusCode::OK,
                    format!("{{\"flavor\":{}}}", state.views.flavors[f]),
                ),
                None => nova_error(
                    StatusCode::NOT_FOUND,
                    &format!("Flavor {id} could not be found."),
                ),
            }
        }
        (&Method::GET, ["flavors", id, "os-extra_specs"]) => {
            match state.cloud.flavors.iter().position(|f| f.id == *id) {
                Some(f) => Reply::raw(StatusCode::OK, state.views.extra_specs[f].clone()),
                None => nova_error(
                    StatusCode::NOT_FOUND,
                    &format!("Flavor {id} could not be found."),
                ),
            }
        }
        (&Method::GET, ["os-simple-tenant-usage", tenant]) => {
            tenant_usage(state, req, &access, mv, tenant, lf)
        }
        _ => nova_error(StatusCode::NOT_FOUND, "The resource could not be found."),
    };
    reply
        .header("openstack-api-version", format!("compute {vs}"))
        .header("x-openstack-nova-api-version", vs)
        .header(
            "vary",
            "OpenStack-API-Version, X-OpenStack-Nova-API-Version".into(),
        )
}

fn list_servers(
    state: &State,
    req: &Req,
    access: &Access,
    mv: (u32, u32),
    detail: bool,
    lf: ListFault,
) -> Reply {
    let all_tenants = truthy(req.q("all_tenants"));
    if all_tenants && !access.admin {
        return nova_error(
            StatusCode::FORBIDDEN,
            "Policy doesn't allow os_compute_api:servers:detail:get_all_tenants to be performed.",
        );
    }
    // Project filter: all_tenants (admin) with optional project_id/tenant_id;
    // else the token's project. A system token without all_tenants sees all.
    let filter_project = req.q("project_id").or_else(|| req.q("tenant_id"));
    let scope: Option<usize> = if all_tenants || access.project.is_none() {
        match filter_project {
            Some(id) => match project_index(state, id) {
                Some(p) => Some(p),
                None => return Reply::raw(StatusCode::OK, "{\"servers\":[]}".into()),
            },
            None => None,
        }
    } else {
        access.project
    };
    let changes_since = match req.q("changes-since").or_else(|| req.q("changes_since")) {
        None => None,
        Some(v) => match Timestamp::parse(v) {
            Ok(t) => Some(t),
            Err(e) => {
                return nova_error(
                    StatusCode::BAD_REQUEST,
                    &format!("Invalid filter field: changes-since. {e}"),
                );
            }
        },
    };
    let deleted_ok = changes_since.is_some() || (access.admin && truthy(req.q("deleted")));
    let base_list: &[usize] = match scope {
        Some(p) => &state.views.servers_by_project[p],
        None => &state.views.servers_all,
    };
    let servers = &state.cloud.servers;
    let status = req.q("status").map(str::to_ascii_uppercase);
    let filtered: Vec<usize> = base_list
        .iter()
        .copied()
        .filter(|&i| {
            let s = &servers[i];
            (deleted_ok || s.status != "DELETED")
                && changes_since.is_none_or(|cs| s.updated >= cs)
                && status.as_deref().is_none_or(|st| st == s.status)
        })
        .collect();
    let limit = match limit_param(state, req, 1000, 1000) {
        Ok(l) => l,
        Err(e) => return nova_error(StatusCode::BAD_REQUEST, &e),
    };
    let page = match paginate(
        &filtered,
        |i| servers[i].id.clone(),
        req.q("marker"),
        limit,
        lf,
    ) {
        Ok(p) => p,
        Err(e) => return nova_error(StatusCode::BAD_REQUEST, &e),
    };
    let items = if detail {
        let views = if mv >= (2, 47) {
            &state.views.server_v247
        } else {
            &state.views.server_v20
        };
        join_items(views, &page.items)
    } else {
        let brief: Vec<Value> = page
            .items
            .iter()
            .map(|&i| json!({"id": servers[i].id, "name": servers[i].name, "links": [{"rel": "self", "href": format!("{}/compute/v2.1/servers/{}", state.base, servers[i].id)}]}))
            .collect();
        Value::Array(brief).to_string()
    };
    let mut body = format!("{{\"servers\":{items}");
    if let Some(m) = page.next_marker {
        let path = format!(
            "{}/compute/v2.1/servers{}",
            state.base,
            if detail { "/detail" } else { "" }
        );
        let href = next_href(&path, req, &m, limit);
        body.push_str(&format!(
            ",\"servers_links\":[{{\"rel\":\"next\",\"href\":{}}}]",
            json!(href)
        ));
    }
    body.push('}');
    Reply::raw(StatusCode::OK, body)
}

fn show_server(state: &State, access: &Access, mv: (u32, u32), id: &str) -> Reply {
    match state.cloud.servers.iter().position(|s| s.id == id) {
        Some(i) if access.admin || Some(state.cloud.servers[i].project) == access.project => {
            let v = if mv >= (2, 47) {
                &state.views.server_v247[i]
            } else {
                &state.views.server_v20[i]
            };
            Reply::raw(StatusCode::OK, format!("{{\"server\":{v}}}"))
        }
        _ => nova_error(
            StatusCode::NOT_FOUND,
            &format!("Instance {id} could not be found."),
        ),
    }
}

fn list_flavors(state: &State, req: &Req, access: &Access, detail: bool, lf: ListFault) -> Reply {
    // Nova: public flavors unless an admin asks is_public=none|false.
    let want_public: Option<bool> = match req.q("is_public").map(str::to_ascii_lowercase).as_deref()
    {
        Some("none") if access.admin => None,
        Some("false" | "0" | "no") if access.admin => Some(false),
        _ => Some(true),
    };
    let flavors = &state.cloud.flavors;
    let filtered: Vec<usize> = state
        .views
        .flavor_order
        .iter()
        .copied()
        .filter(|&i| want_public.is_none_or(|p| flavors[i].is_public == p))
        .collect();
    let limit = match limit_param(state, req, 1000, 1000) {
        Ok(l) => l,
        Err(e) => return nova_error(StatusCode::BAD_REQUEST, &e),
    };
    let page = match paginate(
        &filtered,
        |i| flavors[i].id.clone(),
        req.q("marker"),
        limit,
        lf,
    ) {
        Ok(p) => p,
        Err(e) => return nova_error(StatusCode::BAD_REQUEST, &e),
    };
    let items = if detail {
        join_items(&state.views.flavors, &page.items)
    } else {
        Value::Array(
            page.items
                .iter()
                .map(|&i| json!({"id": flavors[i].id, "name": flavors[i].name}))
                .collect(),
        )
        .to_string()
    };
    let mut body = format!("{{\"flavors\":{items}");
    if let Some(m) = page.next_marker {
        let path = format!(
            "{}/compute/v2.1/flavors{}",
            state.base,
            if detail { "/detail" } else { "" }
        );
        body.push_str(&format!(
            ",\"flavors_links\":[{{\"rel\":\"next\",\"href\":{}}}]",
            json!(next_href(&path, req, &m, limit))
        ));
    }
    body.push('}');
    Reply::raw(StatusCode::OK, body)
}

fn tenant_usage(
    state: &State,
    req: &Req,
    access: &Access,
    mv: (u32, u32),
    tenant: &str,
    lf: ListFault,
) -> Reply {
    let Some(p) = project_index(state, tenant) else {
        // Nova answers an unknown tenant with an empty usage.
        return Reply::json(StatusCode::OK, &json!({"tenant_usage": {}}));
    };
    if !access.admin && access.project != Some(p) {
        return nova_error(
            StatusCode::FORBIDDEN,
            "Policy doesn't allow os_compute_api:os-simple-tenant-usage:show to be performed.",
        );
    }
    let parse = |k: &str| -> Result<Timestamp, Reply> {
        match req.q(k) {
            None => Ok(Timestamp::now()),
            Some(v) => Timestamp::parse(v)
                .map_err(|e| nova_error(StatusCode::BAD_REQUEST, &format!("Invalid {k}: {e}"))),
        }
    };
    let (start, end) = match (parse("start"), parse("end")) {
        (Ok(s), Ok(e)) => (s, e),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    if start > end {
        return nova_error(
            StatusCode::BAD_REQUEST,
            "Invalid start time. The start time cannot occur after the end time.",
        );
    }
    let servers = &state.cloud.servers;
    // Nova orders usage by instance id when paginating (2.40+).
    let mut entries: Vec<(String, Value, f64, u32, u32, u32)> = Vec::new();
    for &i in &state.views.servers_by_project[p] {
        let s = &servers[i];
        if !s.in_usage_window(start, end) {
            continue;
        }
        let f = &state.cloud.flavors[s.flavor];
        let launched = s.launched_at.unwrap_or(s.created);
        let from = launched.max(start);
        let to = s.terminated_at.map_or(end, |t| t.min(end));
        let hours = (to.seconds_since(from).max(0) as f64) / 3600.0;
        let state_name = if s.terminated_at.is_some() {
            "terminated"
        } else {
            s.vm_state
        };
        let uptime = s
            .terminated_at
            .unwrap_or(Timestamp::now())
            .seconds_since(launched)
            .max(0);
        let v = json!({
            "instance_id": s.id,
            "name": s.name,
            "hours": hours,
            "memory_mb": f.ram_mb,
            "local_gb": f.disk_gb + f.ephemeral_gb,
            "vcpus": f.vcpus,
            "tenant_id": state.cloud.projects[p].id,
            "flavor": f.name,
            "started_at": naive_micro(launched),
            "ended_at": s.terminated_at.map(naive_micro),
            "state": state_name,
            "uptime": uptime,
        });
        entries.push((
            s.id.clone(),
            v,
            hours,
            f.ram_mb,
            f.disk_gb + f.ephemeral_gb,
            f.vcpus,
        ));
    }
    for g in state.cloud.ghosts.iter().filter(|g| g.project == p) {
        if g.started_at < end {
            let f = &state.cloud.flavors[g.flavor];
            let hours = (end.seconds_since(g.started_at.max(start)).max(0) as f64) / 3600.0;
            entries.push((
                g.instance_id.clone(),
                json!({
                    "instance_id": g.instance_id, "name": "ghost", "hours": hours,
                    "memory_mb": f.ram_mb, "local_gb": f.disk_gb, "vcpus": f.vcpus,
                    "tenant_id": state.cloud.projects[p].id, "flavor": f.name,
                    "started_at": naive_micro(g.started_at), "ended_at": null, "state": "active", "uptime": 0,
                }),
                hours,
                f.ram_mb,
                f.disk_gb,
                f.vcpus,
            ));
        }
    }
    let mut next = None;
    if mv >= (2, 40) {
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let order: Vec<usize> = (0..entries.len()).collect();
        let limit = match limit_param(state, req, 1000, 1000) {
            Ok(l) => l,
            Err(e) => return nova_error(StatusCode::BAD_REQUEST, &e),
        };
        let page = match paginate(&order, |i| entries[i].0.clone(), req.q("marker"), limit, lf) {
            Ok(p) => p,
            Err(e) => return nova_error(StatusCode::BAD_REQUEST, &e),
        };
        if let Some(m) = &page.next_marker {
            let path = format!(
                "{}/compute/v2.1/os-simple-tenant-usage/{tenant}",
                state.base
            );
            next = Some(next_href(&path, req, m, limit));
        }
        let keep: Vec<(String, Value, f64, u32, u32, u32)> =
            page.items.iter().map(|&i| entries[i].clone()).collect();
        entries = keep;
    }
    if entries.is_empty() && next.is_none() {
        return Reply::json(StatusCode::OK, &json!({"tenant_usage": {}}));
    }
    let total_hours: f64 = entries.iter().map(|e| e.2).sum();
    let usage = json!({
        "tenant_id": state.cloud.projects[p].id,
        "start": naive_micro(start),
        "stop": naive_micro(end),
        "total_hours": total_hours,
        "total_memory_mb_usage": entries.iter().map(|e| e.2 * f64::from(e.3)).sum::<f64>(),
        "total_local_gb_usage": entries.iter().map(|e| e.2 * f64::from(e.4)).sum::<f64>(),
        "total_vcpus_usage": entries.iter().map(|e| e.2 * f64::from(e.5)).sum::<f64>(),
        "server_usages": entries.into_iter().map(|e| e.1).collect::<Vec<_>>(),
    });
    let mut body = json!({ "tenant_usage": usage });
    if let Some(href) = next {
        body["tenant_usage_links"] = json!([{"rel": "next", "href": href}]);
    }
    Reply::json(StatusCode::OK, &body)
}

// --------------------------------------------------------------------- image

fn image(state: &State, req: &Req, caller: Caller<'_>, rest: &[&str], lf: ListFault) -> Reply {
    let b = &state.base;
    if matches!(rest, [] | ["versions"]) {
        let v = |id: &str, status: &str| json!({"id": id, "status": status, "links": [{"rel": "self", "href": format!("{b}/image/v2/")}]});
        return Reply::json(
            StatusCode::MULTIPLE_CHOICES,
            &json!({"versions": [v("v2.16", "CURRENT"), v("v2.15", "SUPPORTED"), v("v2.9", "SUPPORTED"), v("v2.0", "SUPPORTED")]}),
        );
    }
    let Caller::Token(t) = caller else {
        return unauthorized();
    };
    if let Err(r) = service_access(state, t) {
        return r;
    }
    match (&req.method, rest) {
        (&Method::GET, ["v2", "images"]) => {
            let limit = match limit_param(state, req, 25, 1000) {
                Ok(l) => l,
                Err(e) => return error(StatusCode::BAD_REQUEST, &e),
            };
            let images = &state.cloud.images;
            let page = match paginate(
                &state.views.image_order,
                |i| images[i].id.clone(),
                req.q("marker"),
                limit,
                lf,
            ) {
                Ok(p) => p,
                Err(e) => return error(StatusCode::BAD_REQUEST, &e),
            };
            let mut body = format!(
                "{{\"images\":{},\"first\":\"/v2/images\",\"schema\":\"/v2/schemas/images\"",
                join_items(&state.views.images, &page.items)
            );
            // Glance: a next link only while more images follow.
            let more = page.next_marker.is_some()
                && (lf.truncated
                    || lf.repeat_marker
                    || lf.endless
                    || page
                        .items
                        .last()
                        .is_some_and(|&l| state.views.image_order.last() != Some(&l)));
            if let (true, Some(m)) = (more, page.next_marker) {
                body.push_str(&format!(
                    ",\"next\":{}",
                    json!(next_href("/v2/images", req, &m, limit))
                ));
            }
            body.push('}');
            Reply::raw(StatusCode::OK, body)
        }
        (&Method::GET, ["v2", "images", id]) => {
            match state.cloud.images.iter().position(|i| i.id == *id) {
                Some(i) => Reply::raw(StatusCode::OK, state.views.images[i].clone()),
                None => error(
                    StatusCode::NOT_FOUND,
                    &format!("No image found with ID {id}"),
                ),
            }
        }
        (&Method::GET, ["v2", "schemas", "image"]) => Reply::json(StatusCode::OK, &image_schema()),
        (&Method::GET, ["v2", "schemas", "images"]) => Reply::json(
            StatusCode::OK,
            &json!({"name": "images", "properties": {"images": {"type": "array", "items": image_schema()}, "schema": {"type": "string"}, "first": {"type": "string"}, "next": {"type": "string"}}, "links": [{"rel": "first", "href": "{first}"}, {"rel": "next", "href": "{next}"}, {"rel": "describedby", "href": "{schema}"}]}),
        ),
        _ => error(StatusCode::NOT_FOUND, "The resource could not be found."),
    }
}

fn image_schema() -> Value {
    let s = |t: &str| json!({"type": t});
    let ns = || json!({"type": ["null", "string"]});
    json!({
        "name": "image",
        "additionalProperties": {"type": "string"},
        "properties": {
            "id": s("string"), "name": ns(), "status": s("string"), "visibility": s("string"),
            "protected": s("boolean"), "os_hidden": s("boolean"), "checksum": ns(), "owner": ns(),
            "size": {"type": ["null", "integer"]}, "virtual_size": {"type": ["null", "integer"]},
            "container_format": ns(), "disk_format": ns(), "created_at": s("string"), "updated_at": s("string"),
            "tags": {"type": "array", "items": {"type": "string"}}, "direct_url": s("string"),
            "min_ram": {"type": "integer"}, "min_disk": {"type": "integer"},
            "self": s("string"), "file": s("string"), "schema": s("string"),
            "locations": {"type": "array"},
        },
        "links": [
            {"rel": "self", "href": "{self}"}, {"rel": "enclosure", "href": "{file}"},
            {"rel": "describedby", "href": "{schema}"},
        ],
    })
}

// -------------------------------------------------------------------- volume

fn volume(state: &State, req: &Req, caller: Caller<'_>, rest: &[&str], lf: ListFault) -> Reply {
    let b = &state.base;
    let v3 = json!({
        "id": "v3.0", "status": "CURRENT", "version": "3.71", "min_version": "3.0",
        "updated": "2023-08-31T00:00:00Z",
        "links": [{"rel": "self", "href": format!("{b}/volume/v3/")}],
        "media-types": [{"base": "application/json", "type": "application/vnd.openstack.volume+json;version=3"}],
    });
    match rest {
        [] => return Reply::json(StatusCode::MULTIPLE_CHOICES, &json!({"versions": [v3]})),
        ["v3"] => return Reply::json(StatusCode::OK, &json!({"version": v3})),
        _ => {}
    }
    let Caller::Token(t) = caller else {
        return unauthorized();
    };
    let access = match service_access(state, t) {
        Ok(a) => a,
        Err(r) => return r,
    };
    if rest.first() != Some(&"v3") {
        return error(StatusCode::NOT_FOUND, "Unknown API version");
    }
    let mut rest = &rest[1..];
    let mut project = access.project;
    if let Some(first) = rest.first()
        && is_hex32(first)
    {
        match project_index(state, first) {
            Some(p) if access.admin || Some(p) == access.project => project = Some(p),
            _ => return error(StatusCode::FORBIDDEN, "Policy doesn't allow this project."),
        }
        rest = &rest[1..];
    }
    let reply = match (&req.method, rest) {
        (&Method::GET, ["volumes", "detail"]) => {
            list_volumes(state, req, &access, project, true, lf)
        }
        (&Method::GET, ["volumes"]) => list_volumes(state, req, &access, project, false, lf),
        (&Method::GET, ["volumes", id]) => {
            match state.cloud.volumes.iter().position(|v| v.id == *id) {
                Some(i)
                    if access.admin || Some(state.cloud.volumes[i].project) == access.project =>
                {
                    Reply::raw(
                        StatusCode::OK,
                        format!("{{\"volume\":{}}}", state.views.volumes[i]),
                    )
                }
                _ => error(
                    StatusCode::NOT_FOUND,
                    &format!("Volume {id} could not be found."),
                ),
            }
        }
        _ => error(StatusCode::NOT_FOUND, "The resource could not be found."),
    };
    reply.header("openstack-api-version", "volume 3.0".into())
}

/// Cinder list filters that are real volume attributes.
const CINDER_FILTERS: &[&str] = &[
    "name",
    "status",
    "all_tenants",
    "project_id",
    "limit",
    "marker",
    "sort",
    "sort_key",
    "sort_dir",
    "offset",
    "with_count",
    "bootable",
    "metadata",
    "availability_zone",
];

fn list_volumes(
    state: &State,
    req: &Req,
    access: &Access,
    project: Option<usize>,
    detail: bool,
    lf: ListFault,
) -> Reply {
    let all_tenants = access.admin && truthy(req.q("all_tenants"));
    let scope: Option<usize> = if all_tenants || project.is_none() {
        match req.q("project_id") {
            Some(id) => match project_index(state, id) {
                Some(p) => Some(p),
                None => return Reply::raw(StatusCode::OK, "{\"volumes\":[]}".into()),
            },
            None => None,
        }
    } else {
        project
    };
    // Real Cinder drops unknown filters for non-admins; for admins they reach
    // the database query, which then matches nothing.
    let unknown = req
        .query
        .iter()
        .any(|(k, _)| !CINDER_FILTERS.contains(&k.as_str()));
    if unknown && access.admin && !state.cinder_lenient {
        return Reply::raw(StatusCode::OK, "{\"volumes\":[]}".into());
    }
    let base_list: &[usize] = match scope {
        Some(p) => &state.views.volumes_by_project[p],
        None => &state.views.volumes_all,
    };
    let vols = &state.cloud.volumes;
    let status = req.q("status");
    let filtered: Vec<usize> = base_list
        .iter()
        .copied()
        .filter(|&i| status.is_none_or(|s| s == vols[i].status))
        .collect();
    let limit = match limit_param(state, req, 1000, 1000) {
        Ok(l) => l,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    let page = match paginate(
        &filtered,
        |i| vols[i].id.clone(),
        req.q("marker"),
        limit,
        lf,
    ) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    let items = if detail {
        join_items(&state.views.volumes, &page.items)
    } else {
        Value::Array(
            page.items
                .iter()
                .map(|&i| json!({"id": vols[i].id, "name": vols[i].name}))
                .collect(),
        )
        .to_string()
    };
    let mut body = format!("{{\"volumes\":{items}");
    if let Some(m) = page.next_marker {
        let proj = project
            .map(|p| format!("/{}", state.cloud.projects[p].id))
            .unwrap_or_default();
        let path = format!(
            "{}/volume/v3{proj}/volumes{}",
            state.base,
            if detail { "/detail" } else { "" }
        );
        body.push_str(&format!(
            ",\"volumes_links\":[{{\"rel\":\"next\",\"href\":{}}}]",
            json!(next_href(&path, req, &m, limit))
        ));
    }
    body.push('}');
    Reply::raw(StatusCode::OK, body)
}

// ------------------------------------------------------------------- network

fn network(state: &State, req: &Req, caller: Caller<'_>, rest: &[&str], lf: ListFault) -> Reply {
    let b = &state.base;
    match rest {
        [] => {
            return Reply::json(
                StatusCode::OK,
                &json!({"versions": [{"id": "v2.0", "status": "CURRENT", "links": [{"rel": "self", "href": format!("{b}/network/v2.0/")}]}]}),
            );
        }
        ["v2.0"] => {
            return Reply::json(
                StatusCode::OK,
                &json!({"resources": [{"name": "floatingip", "collection": "floatingips", "links": [{"rel": "self", "href": format!("{b}/network/v2.0/floatingips")}]}]}),
            );
        }
        _ => {}
    }
    let Caller::Token(t) = caller else {
        return unauthorized();
    };
    let access = match service_access(state, t) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let fips = &state.cloud.fips;
    match (&req.method, rest) {
        (&Method::GET, ["v2.0", "floatingips"]) => {
            // Neutron: admins see every project's IPs unless they filter.
            let filter = req.q("project_id").or_else(|| req.q("tenant_id"));
            let only: Option<Option<usize>> = match (access.admin, filter) {
                (true, None) => None,
                (true, Some(id)) => Some(project_index(state, id)),
                (false, _) => Some(access.project),
            };
            let addr = req.q("floating_ip_address");
            let filtered: Vec<usize> = state
                .views
                .fip_order
                .iter()
                .copied()
                .filter(|&i| only.is_none_or(|p| p == Some(fips[i].project)))
                .filter(|&i| addr.is_none_or(|a| a == fips[i].address))
                .collect();
            let limit = match req.q("limit") {
                None => usize::MAX,
                Some(_) => match limit_param(state, req, usize::MAX, 10_000) {
                    Ok(l) => l,
                    Err(e) => return error(StatusCode::BAD_REQUEST, &e),
                },
            };
            let page = match paginate(
                &filtered,
                |i| fips[i].id.clone(),
                req.q("marker"),
                limit,
                lf,
            ) {
                Ok(p) => p,
                Err(e) => return error(StatusCode::NOT_FOUND, &e),
            };
            let mut body = format!(
                "{{\"floatingips\":{}",
                join_items(&state.views.fips, &page.items)
            );
            if let Some(m) = page.next_marker {
                let path = format!("{b}/network/v2.0/floatingips");
                let lim = if limit == usize::MAX {
                    filtered.len()
                } else {
                    limit
                };
                body.push_str(&format!(
                    ",\"floatingips_links\":[{{\"rel\":\"next\",\"href\":{}}}]",
                    json!(next_href(&path, req, &m, lim))
                ));
            }
            body.push('}');
            Reply::raw(StatusCode::OK, body)
        }
        (&Method::GET, ["v2.0", "floatingips", id]) => {
            match fips.iter().position(|f| f.id == *id) {
                Some(i) if access.admin || Some(fips[i].project) == access.project => Reply::raw(
                    StatusCode::OK,
                    format!("{{\"floatingip\":{}}}", state.views.fips[i]),
                ),
                _ => Reply::json(
                    StatusCode::NOT_FOUND,
                    &json!({"NeutronError": {"type": "FloatingIPNotFound", "message": format!("Floating IP {id} could not be found"), "detail": ""}}),
                ),
            }
        }
        _ => error(StatusCode::NOT_FOUND, "The resource could not be found."),
    }
}
