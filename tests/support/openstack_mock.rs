//! A small in-test OpenStack: Keystone v3 (password, application credential,
//! token rescope, OIDC federation), Nova, Glance, Cinder and Neutron, shaped
//! as the API reference describes them, with knobs for faults.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use cloud_accounting::time::Timestamp;
use reqwest::Url;
use serde_json::{Value, json};

pub const PASSWORD: &str = "s3cret";
pub const APP_CRED_ID: &str = "ac-1";
pub const APP_CRED_SECRET: &str = "ac-secret";
pub const OIDC_TOKEN: &str = "oidc-access-token";
/// Project ids: "p-demo" (name "demo"), "p-other" (name "other"), "p-ac" (the
/// application credential's).
pub const PROJECTS: [(&str, &str); 3] = [("p-demo", "demo"), ("p-other", "other"), ("p-ac", "ac")];

#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub microversion: Option<String>,
}

impl Seen {
    pub fn q(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone, Debug)]
struct TokenInfo {
    project: Option<&'static str>,
    federated_unscoped: bool,
}

pub struct State {
    pub base: String,
    pub seen: Vec<Seen>,
    pub token_bodies: Vec<Value>,
    tokens: HashMap<String, TokenInfo>,
    next_token: u32,
    /// Token lifetime; under 120 s the client renews before every call.
    pub token_ttl_secs: i64,
    /// Statuses to answer, in order, for a path suffix before anything else.
    pub faults: HashMap<String, VecDeque<u16>>,
    /// Refuse every token on service calls (401).
    pub refuse_all_tokens: bool,
    pub page_size: usize,
    /// Nova's newest microversion (minor of 2.x).
    pub nova_max_minor: u32,
    /// Servers' next links always carry the same marker.
    pub repeat_marker: bool,
    pub omit_network: bool,
    pub servers: Vec<Value>,
    pub volumes: Vec<Value>,
    pub fips: Vec<Value>,
    pub images: Vec<Value>,
    /// Delay answers to flavor GETs (to make concurrent fetches overlap).
    pub flavor_delay: Duration,
    /// Fields replacing those of a project's JSON (e.g. `"VO": null`), by id.
    pub project_overrides: HashMap<String, Value>,
}

pub type Shared = Arc<Mutex<State>>;

pub struct Mock {
    pub state: Shared,
    pub base: String,
}

impl Mock {
    pub async fn start() -> Mock {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State {
            base: base.clone(),
            seen: Vec::new(),
            token_bodies: Vec::new(),
            tokens: HashMap::new(),
            next_token: 0,
            token_ttl_secs: 3600,
            faults: HashMap::new(),
            refuse_all_tokens: false,
            page_size: 2,
            nova_max_minor: 90,
            repeat_marker: false,
            omit_network: false,
            servers: (1..=5).map(|i| server(&format!("s{i}"), "p-demo")).collect(),
            volumes: (1..=3).map(|i| volume(&format!("v{i}"), "p-demo")).collect(),
            fips: vec![fip("f1", "p-demo", "192.0.2.1"), fip("f2", "p-demo", "2001:db8::1"), fip("f3", "p-demo", "192.0.2.3")],
            images: (1..=3).map(|i| json!({"id": format!("i{i}"), "name": format!("img{i}"), "status": "active", "vmcatcher_event_ad_mpuri": format!("https://appdb/i{i}")})).collect(),
            flavor_delay: Duration::ZERO,
            project_overrides: HashMap::new(),
        }));
        let app = Router::new().fallback(handler).with_state(state.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Mock { state, base }
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.with(|s| s.seen.clone())
    }

    /// Requests whose path ends with `suffix`.
    pub fn seen_ending(&self, suffix: &str) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.path.ends_with(suffix))
            .collect()
    }

    pub fn token_posts(&self) -> usize {
        self.seen_ending("/auth/tokens").len()
    }

    pub fn fault(&self, path_suffix: &str, statuses: &[u16]) {
        self.with(|s| {
            s.faults
                .entry(path_suffix.to_string())
                .or_default()
                .extend(statuses)
        });
    }

    /// Forget every token issued so far (as a Keystone restart with new
    /// fernet keys would).
    pub fn revoke_tokens(&self) {
        self.with(|s| s.tokens.clear());
    }
}

pub fn server(id: &str, project: &str) -> Value {
    json!({
        "id": id, "name": format!("vm-{id}"), "status": "ACTIVE",
        "tenant_id": project, "user_id": "u-alice",
        "created": "2026-11-24T10:00:01Z", "updated": "2026-11-24T10:05:00Z",
        "OS-SRV-USG:launched_at": "2026-11-24T10:00:30.000000",
        "OS-SRV-USG:terminated_at": null,
        "image": {"id": "i1", "links": []},
        "flavor_id": "fl-1",
        "addresses": {"net": [
            {"addr": "10.0.0.5", "version": 4, "OS-EXT-IPS:type": "fixed"},
            {"addr": "192.0.2.9", "version": 4, "OS-EXT-IPS:type": "floating"}
        ]}
    })
}

pub fn volume(id: &str, project: &str) -> Value {
    json!({
        "id": id, "name": null, "status": "in-use", "size": 10,
        "created_at": "2026-11-20T08:00:00.000000", "updated_at": null,
        "user_id": "u-alice", "os-vol-tenant-attr:tenant_id": project,
        "attachments": [{"server_id": "s1", "attached_at": "2026-11-20T08:01:00.000000"}]
    })
}

pub fn fip(id: &str, project: &str, addr: &str) -> Value {
    json!({"id": id, "floating_ip_address": addr, "project_id": project, "tenant_id": project,
           "status": "ACTIVE", "created_at": "2026-11-01T00:00:00Z", "port_id": null})
}

fn flavor(version_minor: u32) -> Value {
    let mut f = json!({"id": "fl-1", "name": "m1.small", "vcpus": 2, "ram": 2048, "disk": 20,
                       "OS-FLV-EXT-DATA:ephemeral": 5, "swap": ""});
    if version_minor >= 61 {
        f["extra_specs"] = extra_specs();
    }
    f
}

fn extra_specs() -> Value {
    json!({"accounting:benchmark_type": "HEPscore23", "accounting:benchmark_value": "12.5"})
}

fn reply(status: u16, body: Value) -> Response {
    Response::builder()
        .status(status)
        .header("Content-Type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn error(status: u16, message: &str) -> Response {
    reply(
        status,
        json!({"error": {"code": status, "message": message, "title": "Error"}}),
    )
}

fn catalog(base: &str, project: Option<&str>, omit_network: bool) -> Value {
    let ep = |interface: &str, region: &str, url: String| json!({"id": format!("{interface}-{region}"), "interface": interface, "region": region, "region_id": region, "url": url});
    let mut cat = vec![
        json!({"type": "identity", "name": "keystone", "endpoints": [ep("public", "RegionOne", format!("{base}/identity"))]}),
        json!({"type": "compute", "name": "nova", "endpoints": [
            ep("public", "RegionOne", format!("{base}/r1/compute/v2.1")),
            ep("internal", "RegionOne", format!("{base}/r1i/compute/v2.1")),
            ep("public", "RegionTwo", format!("{base}/r2/compute/v2.1")),
        ]}),
        json!({"type": "image", "name": "glance", "endpoints": [ep("public", "RegionOne", format!("{base}/image"))]}),
    ];
    if let Some(p) = project {
        cat.push(json!({"type": "volumev3", "name": "cinderv3", "endpoints": [ep("public", "RegionOne", format!("{base}/volume/v3/{p}"))]}));
    }
    if !omit_network {
        cat.push(json!({"type": "network", "name": "neutron", "endpoints": [ep("public", "RegionOne", format!("{base}/network"))]}));
    }
    Value::Array(cat)
}

fn project_by_id(id: &str) -> Option<&'static str> {
    PROJECTS
        .iter()
        .find(|(pid, _)| *pid == id)
        .map(|(pid, _)| *pid)
}

fn project_by_name(name: &str) -> Option<&'static str> {
    PROJECTS
        .iter()
        .find(|(_, n)| *n == name)
        .map(|(pid, _)| *pid)
}

impl State {
    fn project(&self, id: &str) -> Value {
        let mut p = project_json(id);
        if let (Some(Value::Object(o)), Value::Object(fields)) =
            (self.project_overrides.get(id), &mut p)
        {
            fields.extend(o.clone());
        }
        p
    }
}

fn project_json(id: &str) -> Value {
    let name = PROJECTS
        .iter()
        .find(|(p, _)| *p == id)
        .map(|(_, n)| *n)
        .unwrap_or("?");
    json!({"id": id, "name": name, "domain_id": "default", "enabled": true,
           "tags": if id == "p-demo" { vec!["caso"] } else { vec![] },
           "VO": format!("vo.{name}.example"), "description": "", "is_domain": false, "parent_id": "default"})
}

impl State {
    fn issue(&mut self, info: TokenInfo) -> Response {
        self.next_token += 1;
        let token = format!("tok-{}", self.next_token);
        let expires = Timestamp::now().add_seconds(self.token_ttl_secs);
        let project = info.project.map(|p| {
            let name = PROJECTS.iter().find(|(id, _)| *id == p).unwrap().1;
            json!({"id": p, "name": name, "domain": {"id": "default", "name": "Default"}})
        });
        let body = json!({"token": {
            "methods": ["password"], "expires_at": expires.to_string(),
            "issued_at": Timestamp::now().to_string(),
            "user": {"id": "u-caso", "name": "caso", "domain": {"id": "default", "name": "Default"}},
            "project": project,
            "catalog": catalog(&self.base, info.project, self.omit_network),
        }});
        self.tokens.insert(token.clone(), info);
        Response::builder()
            .status(201)
            .header("Content-Type", "application/json")
            .header("X-Subject-Token", token)
            .body(Body::from(body.to_string()))
            .unwrap()
    }

    fn auth_tokens(&mut self, body: &Value) -> Response {
        self.token_bodies.push(body.clone());
        let identity = &body["auth"]["identity"];
        let scope = body["auth"].get("scope");
        let method = identity["methods"][0].as_str().unwrap_or("");
        let mut bound_project = None;
        let mut federated = false;
        match method {
            "password" => {
                let user = &identity["password"]["user"];
                let known = user["name"] == "caso" && user["domain"]["name"] == "Default"
                    || user["id"] == "u-caso";
                if !known || user["password"] != PASSWORD {
                    return error(401, "The request you have made requires authentication.");
                }
            }
            "application_credential" => {
                let ac = &identity["application_credential"];
                if ac["id"] != APP_CRED_ID || ac["secret"] != APP_CRED_SECRET {
                    return error(401, "The request you have made requires authentication.");
                }
                if scope.is_some() {
                    // What Keystone does (cASO defect 10).
                    return error(401, "Application credentials cannot request a scope.");
                }
                bound_project = Some("p-ac");
            }
            "token" => {
                let id = identity["token"]["id"].as_str().unwrap_or("");
                match self.tokens.get(id) {
                    Some(t) if t.federated_unscoped => federated = true,
                    _ => return error(401, "The request you have made requires authentication."),
                }
            }
            _ => return error(401, "unsupported method"),
        }
        let _ = federated;
        let project = match scope {
            None => bound_project,
            Some(s) if s.get("system").is_some() => None,
            Some(s) if s.get("domain").is_some() => None,
            Some(s) => {
                let p = &s["project"];
                let found = if let Some(id) = p["id"].as_str() {
                    project_by_id(id)
                } else {
                    let in_default =
                        p["domain"]["id"] == "default" || p["domain"]["name"] == "Default";
                    p["name"]
                        .as_str()
                        .filter(|_| in_default)
                        .and_then(project_by_name)
                };
                match found {
                    Some(id) => Some(id),
                    None => return error(401, "Could not find project."),
                }
            }
        };
        self.issue(TokenInfo {
            project,
            federated_unscoped: false,
        })
    }

    fn page(&self, items: Vec<Value>, query: &[(String, String)]) -> (Vec<Value>, Option<String>) {
        let marker = query
            .iter()
            .find(|(k, _)| k == "marker")
            .map(|(_, v)| v.clone());
        let start = match marker {
            Some(m) => items
                .iter()
                .position(|i| i["id"] == m.as_str() || i["instance_id"] == m.as_str())
                .map(|p| p + 1)
                .unwrap_or(items.len()),
            None => 0,
        };
        let page: Vec<Value> = items.into_iter().skip(start).take(self.page_size).collect();
        let full = page.len() == self.page_size;
        let last = page
            .last()
            .and_then(|i| i.get("id").or(i.get("instance_id")))
            .and_then(Value::as_str)
            .map(str::to_string);
        (page, if full { last } else { None })
    }
}

/// A next link as services write it: their own idea of the host, every
/// original parameter, the new marker.
fn next_link(host_path: &str, query: &[(String, String)], marker: &str) -> String {
    let mut url = Url::parse(&format!("http://internal-host:8774{host_path}")).unwrap();
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in query.iter().filter(|(k, _)| k != "marker") {
            q.append_pair(k, v);
        }
        q.append_pair("marker", marker);
    }
    url.to_string()
}

async fn handler(
    axum::extract::State(state): axum::extract::State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let query: Vec<(String, String)> = Url::parse(&format!("http://x{uri}"))
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let microversion = headers
        .get("OpenStack-API-Version")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let delay = {
        let mut st = state.lock().unwrap();
        st.seen.push(Seen {
            method: method.to_string(),
            path: path.clone(),
            query: query.clone(),
            microversion: microversion.clone(),
        });
        let fault = st
            .faults
            .iter_mut()
            .find(|(suffix, q)| path.ends_with(suffix.as_str()) && !q.is_empty())
            .and_then(|(_, q)| q.pop_front());
        if let Some(status) = fault {
            return error(status, "injected fault");
        }
        if path.contains("/flavors/") {
            st.flavor_delay
        } else {
            Duration::ZERO
        }
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut st = state.lock().unwrap();
    if method == Method::POST && path == "/identity/v3/auth/tokens" {
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        return st.auth_tokens(&body);
    }
    if method == Method::POST
        && path.starts_with(
            "/identity/v3/OS-FEDERATION/identity_providers/egi.eu/protocols/openid/auth",
        )
    {
        let bearer = headers.get("Authorization").and_then(|v| v.to_str().ok());
        if bearer != Some(&format!("Bearer {OIDC_TOKEN}")) {
            return error(401, "bad access token");
        }
        return st.issue(TokenInfo {
            project: None,
            federated_unscoped: true,
        });
    }
    // Every other call needs a valid token.
    let token = headers
        .get("X-Auth-Token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(info) = st.tokens.get(token).cloned() else {
        return error(401, "The request you have made requires authentication.");
    };
    if st.refuse_all_tokens {
        return error(401, "The request you have made requires authentication.");
    }
    let q = |k: &str| query.iter().find(|(qk, _)| qk == k).map(|(_, v)| v.clone());
    // Which project a listing is for: the token's, or the admin filter.
    let list_project = if q("all_tenants").as_deref() == Some("1") {
        q("project_id")
    } else {
        info.project.map(str::to_string)
    };

    if let Some(rest) = path.strip_prefix("/identity/v3/") {
        let parts: Vec<&str> = rest.split('/').collect();
        return match parts.as_slice() {
            ["projects"] => {
                let mut items: Vec<Value> = PROJECTS.iter().map(|(id, _)| st.project(id)).collect();
                if let Some(tag) = q("tags") {
                    items.retain(|p| {
                        p["tags"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|t| t == tag.as_str())
                    });
                }
                if let Some(name) = q("name") {
                    items.retain(|p| p["name"] == name.as_str());
                }
                reply(
                    200,
                    json!({"projects": items, "links": {"self": "x", "next": null, "previous": null}}),
                )
            }
            ["projects", id] => match project_by_id(id) {
                Some(id) => reply(200, json!({"project": st.project(id)})),
                None => error(404, &format!("Could not find project: {id}.")),
            },
            ["users", "u-alice"] => reply(
                200,
                json!({"user": {"id": "u-alice", "name": "alice", "domain_id": "default", "enabled": true}}),
            ),
            ["users", id] => error(404, &format!("Could not find user: {id}.")),
            _ => error(404, "no such keystone path"),
        };
    }

    if let Some(idx) = path.find("/compute/v2.1/") {
        let rest = &path[idx + "/compute/v2.1/".len()..];
        let minor = match microversion
            .as_deref()
            .and_then(|v| v.strip_prefix("compute 2."))
        {
            Some(m) => m.parse::<u32>().unwrap(),
            None => 1,
        };
        if minor > st.nova_max_minor {
            return reply(
                406,
                json!({"computeFault": {"code": 406, "message": format!("Version 2.{minor} is not supported by the API. Minimum is 2.1 and maximum is 2.{}.", st.nova_max_minor)}}),
            );
        }
        let parts: Vec<&str> = rest.split('/').collect();
        return match parts.as_slice() {
            ["servers", "detail"] => {
                // Nova's changes-since: servers updated at or after it.
                let since = q("changes-since").map(|t| Timestamp::parse(&t).unwrap());
                let items: Vec<Value> = st
                    .servers
                    .iter()
                    .filter(|s| Some(s["tenant_id"].as_str().unwrap()) == list_project.as_deref())
                    .filter(|s| {
                        since.is_none_or(|since| {
                            s["updated"]
                                .as_str()
                                .is_none_or(|u| Timestamp::parse(u).unwrap() >= since)
                        })
                    })
                    .map(|s| {
                        let mut s = s.clone();
                        let fid = s.as_object_mut().unwrap().remove("flavor_id").unwrap();
                        s["flavor"] = if minor >= 47 {
                            json!({"vcpus": 2, "ram": 2048, "disk": 20, "ephemeral": 5, "swap": 0,
                                   "original_name": "m1.small", "extra_specs": extra_specs()})
                        } else {
                            json!({"id": fid, "links": []})
                        };
                        s
                    })
                    .collect();
                let (page, next) = st.page(items, &query);
                let mut body = json!({"servers": page});
                if let Some(m) = next {
                    let marker = if st.repeat_marker {
                        "s2".to_string()
                    } else {
                        m
                    };
                    body["servers_links"] = json!([{"rel": "next", "href": next_link("/v2.1/servers/detail", &query, &marker)}]);
                }
                reply(200, body)
            }
            ["servers", id] => match st.servers.iter().find(|s| s["id"] == *id) {
                Some(s) => {
                    let mut s = s.clone();
                    s["flavor"] = json!({"id": "fl-1", "links": []});
                    reply(200, json!({"server": s}))
                }
                None => reply(
                    404,
                    json!({"itemNotFound": {"code": 404, "message": format!("Instance {id} could not be found.")}}),
                ),
            },
            ["os-simple-tenant-usage", pid] => {
                let items: Vec<Value> = st
                    .servers
                    .iter()
                    .filter(|s| s["tenant_id"] == *pid)
                    .map(|s| json!({"instance_id": s["id"], "name": s["name"], "flavor": "m1.small",
                        "hours": 1.0, "local_gb": 25, "memory_mb": 2048, "vcpus": 2,
                        "started_at": "2026-11-24T10:00:30.000000", "ended_at": null, "state": "active",
                        "tenant_id": pid, "uptime": 3600}))
                    .collect();
                if items.is_empty() {
                    return reply(200, json!({"tenant_usage": {}}));
                }
                let (page, next) = st.page(items, &query);
                let mut body = json!({"tenant_usage": {"server_usages": page, "tenant_id": pid,
                    "start": q("start"), "stop": q("end")}});
                if let Some(m) = next {
                    body["tenant_usage_links"] = json!([{"rel": "next", "href": next_link(&format!("/v2.1/os-simple-tenant-usage/{pid}"), &query, &m)}]);
                }
                reply(200, body)
            }
            ["flavors", "fl-1"] => reply(200, json!({"flavor": flavor(minor)})),
            ["flavors", "fl-1", "os-extra_specs"] => {
                reply(200, json!({"extra_specs": extra_specs()}))
            }
            ["flavors", id] => reply(
                404,
                json!({"itemNotFound": {"code": 404, "message": format!("Flavor {id} could not be found.")}}),
            ),
            _ => error(404, "no such nova path"),
        };
    }

    if let Some(rest) = path.strip_prefix("/image/v2/images") {
        if rest.is_empty() {
            let (page, next) = st.page(st.images.clone(), &query);
            let mut body =
                json!({"images": page, "first": "/v2/images", "schema": "/v2/schemas/images"});
            if let Some(m) = next {
                body["next"] = json!(format!(
                    "/v2/images?limit={}&marker={m}",
                    q("limit").unwrap_or_default()
                ));
            }
            return reply(200, body);
        }
        let id = rest.trim_start_matches('/');
        if id == "broken" {
            return Response::builder()
                .status(200)
                .body(Body::from("{\"id\": \"broken\", "))
                .unwrap();
        }
        return match st.images.iter().find(|i| i["id"] == id) {
            Some(i) => reply(200, i.clone()),
            None => Response::builder()
                .status(404)
                .body(Body::from("<html>404 Not Found</html>"))
                .unwrap(),
        };
    }

    if let Some(rest) = path.strip_prefix("/volume/v3/") {
        let mut parts = rest.splitn(2, '/');
        let url_project = parts.next().unwrap_or("");
        if Some(url_project) != info.project {
            return error(400, "project in URL does not match the token");
        }
        if parts.next() == Some("volumes/detail") {
            let items: Vec<Value> = st
                .volumes
                .iter()
                .filter(|v| {
                    Some(v["os-vol-tenant-attr:tenant_id"].as_str().unwrap())
                        == list_project.as_deref()
                })
                .cloned()
                .collect();
            let (page, next) = st.page(items, &query);
            let mut body = json!({"volumes": page});
            if let Some(m) = next {
                body["volumes_links"] = json!([{"rel": "next", "href": next_link(&format!("/v3/{url_project}/volumes/detail"), &query, &m)}]);
            }
            return reply(200, body);
        }
        return error(404, "no such cinder path");
    }

    if path == "/network/v2.0/floatingips" {
        let items: Vec<Value> = st
            .fips
            .iter()
            .filter(|f| q("project_id").is_none_or(|p| f["project_id"] == p.as_str()))
            .cloned()
            .collect();
        let (page, next) = st.page(items, &query);
        let mut body = json!({"floatingips": page});
        if let Some(m) = next {
            body["floatingips_links"] =
                json!([{"rel": "next", "href": next_link("/v2.0/floatingips", &query, &m)}]);
        }
        return reply(200, body);
    }

    error(404, "no such path")
}
