//! `openstack-sim`: an OpenStack API simulator for tests, the demo and
//! benchmarks. It serves Keystone v3, Nova (v2.1 with microversions), Glance
//! v2, Cinder v3 and Neutron v2.0 on one loopback port under path prefixes
//! (`/identity`, `/compute/v2.1`, `/image`, `/volume/v3`, `/network`), with
//! deterministic data generated from a seed and a scenario, latency, fault
//! injection and request counters. The real cASO 5.2.2 and its Python
//! clients run against it unchanged.
//!
//! On ready it prints one JSON line on stdout:
//! `{"ready":true,"url":"http://127.0.0.1:PORT","auth_url":".../identity/v3",...}`
//! and serves until killed.
//!
//! Simulator endpoints (outside the OpenStack path space):
//! - `GET /_sim/stats`: `{"total", "by_endpoint", "by_status", "faults", "live_tokens"}`
//! - `POST /_sim/reset`: zero the counters and fault schedules
//! - `POST /_sim/revoke-tokens`: forget every token (clients must re-authenticate)
//! - `GET /_sim/manifest`: the ground truth (see `model::Cloud::manifest`)
//! - `GET /_sim/voms.json`: the voms.json mapping for the projects that need it
//!
//! Credentials: every user's password is `--password`; the admin user
//! (`--user`) has the admin role on every project and may take a system
//! scope (unless `--no-system-scope`). Other users may scope only to the
//! projects they are members of (see the manifest). An application
//! credential (`--app-cred-id`/`--app-cred-secret`) belongs to the admin and
//! is bound to `--app-cred-project` (default: the first project); any
//! explicit scope with it is refused with 401, as Keystone does. An OIDC
//! access token (`--oidc-access-token`) is accepted by
//! `POST /identity/v3/OS-FEDERATION/identity_providers/{idp}/protocols/{proto}/auth`
//! (`Authorization: Bearer`), giving an unscoped admin token to rescope.
//!
//! Fault spec: see `faults.rs` (`--fault KIND[=VALUE][:KEY=VALUE]...`).

mod faults;
mod model;
mod render;
mod server;

use clap::Parser;
use cloud_accounting::time::Timestamp;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Duration;

const FAULT_HELP: &str = "\
Fault spec: KIND[=VALUE][:KEY=VALUE]...  (repeat --fault for several)
  kinds:     5xx=CODE | stall=DURATION | latency=DURATION | malformed-json |
             huge-body=SIZE | endless-body | dense-json=SIZE | lying-length |
             endless-pages | redirect=PORT|same | 401-garbage=SIZE |
             truncated-page | repeat-marker | 401-after=N
  selectors: path=PREFIX  project=ID  method=GET  every=N  nth=N  after=N  times=N
  examples:  5xx=503:path=/compute:every=10
             stall=30s:path=/compute/v2.1/servers/detail:nth=3
             malformed-json:path=/image:times=1
             truncated-page:path=/volume
             repeat-marker:path=/compute/v2.1/servers/detail
             401-after=50
Scenarios (projects x servers): S 3x20, M 20x100, L 100x200, demo/custom 4x30;
2 volumes and 1 floating IP (demo: 2) per 10 servers, one untagged project.";

#[derive(Parser, Debug)]
#[command(name = "openstack-sim", about = "OpenStack API simulator (loopback only)", after_help = FAULT_HELP)]
struct Cli {
    /// Seed of the generated data.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// S, M, L, demo or custom.
    #[arg(long, default_value = "demo")]
    scenario: String,
    /// Accounted (tagged) projects.
    #[arg(long)]
    projects: Option<usize>,
    /// Servers per accounted project.
    #[arg(long)]
    servers: Option<usize>,
    /// Volumes per 10 servers.
    #[arg(long)]
    volumes_per_10: Option<usize>,
    /// Floating IPs per 10 servers.
    #[arg(long)]
    fips_per_10: Option<usize>,
    /// Untagged projects (never reported).
    #[arg(long)]
    untagged_projects: Option<usize>,
    /// Ordinary users.
    #[arg(long)]
    users: Option<usize>,
    /// Add a tagged project without any VO mapping.
    #[arg(long)]
    unmapped_project: bool,
    /// Add, per accounted project, a usage entry for a server Nova cannot show.
    #[arg(long)]
    ghost_usage: bool,
    /// The instant the data describes (RFC 3339); default: period end + 1 day.
    #[arg(long)]
    now: Option<String>,
    /// Start of the accounting period of the manifest (default 2026-09-01T00:00:00Z).
    #[arg(long)]
    period_from: Option<String>,
    /// End of the accounting period of the manifest (default 2026-10-01T00:00:00Z).
    #[arg(long)]
    period_to: Option<String>,
    /// Address to bind (loopback only).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Latency added to every OpenStack request, e.g. 20ms.
    #[arg(long)]
    latency: Option<String>,
    /// Fault to inject (repeatable), see below.
    #[arg(long = "fault")]
    faults: Vec<String>,
    /// Admin user name.
    #[arg(long, default_value = "admin")]
    user: String,
    /// Password of every user.
    #[arg(long, default_value = "secret")]
    password: String,
    #[arg(long)]
    app_cred_id: Option<String>,
    #[arg(long)]
    app_cred_secret: Option<String>,
    /// Project (id or name) the application credential is bound to.
    #[arg(long)]
    app_cred_project: Option<String>,
    /// Access token accepted by the OS-FEDERATION auth endpoint.
    #[arg(long)]
    oidc_access_token: Option<String>,
    /// Refuse system-scoped tokens (even for the admin).
    #[arg(long)]
    no_system_scope: bool,
    /// Token lifetime, e.g. 1h or 30s.
    #[arg(long, default_value = "1h")]
    token_ttl: String,
    /// Cinder: ignore unknown list filters for admins too (real Cinder returns
    /// no volume when an admin passes e.g. changes-since).
    #[arg(long)]
    lenient_cinder_filters: bool,
    /// Largest page of any list (Nova's `[api] max_limit`); small values
    /// make every list span several pages.
    #[arg(long, default_value_t = 1000)]
    max_limit: usize,
    /// Write the voms.json mapping here before serving.
    #[arg(long)]
    write_voms_json: Option<std::path::PathBuf>,
    /// Write the manifest here before serving.
    #[arg(long)]
    write_manifest: Option<std::path::PathBuf>,
    /// Worker threads (default: the number of CPUs).
    #[arg(long)]
    threads: Option<usize>,
}

fn usage_error(msg: impl std::fmt::Display) -> ! {
    eprintln!("openstack-sim: {msg}");
    std::process::exit(2);
}

fn time_arg(name: &str, v: &Option<String>) -> Option<Timestamp> {
    v.as_ref()
        .map(|s| Timestamp::parse(s).unwrap_or_else(|e| usage_error(format!("--{name}: {e}"))))
}

fn main() {
    let cli = Cli::parse();
    let mut params = model::Params::preset(&cli.scenario, cli.seed).unwrap_or_else(|| {
        usage_error(format!(
            "unknown scenario {:?} (S, M, L, demo, custom)",
            cli.scenario
        ))
    });
    if let Some(v) = cli.projects {
        params.projects = v;
    }
    if let Some(v) = cli.servers {
        params.servers_per_project = v;
    }
    if let Some(v) = cli.volumes_per_10 {
        params.volumes_per_10_servers = v;
    }
    if let Some(v) = cli.fips_per_10 {
        params.fips_per_10_servers = v;
    }
    if let Some(v) = cli.untagged_projects {
        params.untagged_projects = v;
    }
    if let Some(v) = cli.users {
        params.users = v;
    }
    params.unmapped_project = cli.unmapped_project;
    params.ghost_usage = cli.ghost_usage;
    if let Some(t) = time_arg("period-from", &cli.period_from) {
        params.period_from = t;
    }
    if let Some(t) = time_arg("period-to", &cli.period_to) {
        params.period_to = t;
    }
    params.now = time_arg("now", &cli.now).unwrap_or(params.period_to.add_seconds(86_400));
    if params.period_from >= params.period_to || params.now < params.period_to {
        usage_error("need period-from < period-to <= now");
    }
    let latency = cli
        .latency
        .as_deref()
        .map(|s| {
            faults::parse_duration(s).unwrap_or_else(|e| usage_error(format!("--latency: {e}")))
        })
        .unwrap_or(Duration::ZERO);
    let faults: Vec<faults::Fault> = cli
        .faults
        .iter()
        .map(|s| faults::Fault::parse(s).unwrap_or_else(|e| usage_error(e)))
        .collect();
    let token_ttl = faults::parse_duration(&cli.token_ttl)
        .unwrap_or_else(|e| usage_error(format!("--token-ttl: {e}")));
    let addr: std::net::SocketAddr = cli
        .listen
        .parse()
        .unwrap_or_else(|e| usage_error(format!("--listen {:?}: {e}", cli.listen)));
    if !addr.ip().is_loopback() {
        usage_error("--listen must be a loopback address");
    }

    let mut cloud = model::Cloud::generate(params);
    if let Some(u) = cloud.users.get_mut(cloud.admin) {
        u.name = cli.user.clone();
    }
    let app_cred_project = match &cli.app_cred_project {
        None => 0,
        Some(p) => cloud
            .projects
            .iter()
            .position(|x| &x.id == p || &x.name == p)
            .unwrap_or_else(|| usage_error(format!("--app-cred-project {p:?}: no such project"))),
    };
    let app_cred = match (cli.app_cred_id, cli.app_cred_secret) {
        (Some(id), Some(secret)) => Some((id, secret)),
        (None, None) => None,
        _ => usage_error("--app-cred-id and --app-cred-secret go together"),
    };
    let write = |path: &Option<std::path::PathBuf>, what: &str, v: serde_json::Value| {
        if let Some(path) = path {
            let text = serde_json::to_string_pretty(&v).unwrap_or_default();
            if let Err(e) = std::fs::write(path, text) {
                eprintln!("openstack-sim: cannot write {what} {}: {e}", path.display());
                std::process::exit(1);
            }
        }
    };
    write(&cli.write_voms_json, "voms.json", cloud.voms_json());

    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = cli.threads {
        rt.worker_threads(n.max(1));
    }
    let rt = rt.enable_all().build().unwrap_or_else(|e| {
        eprintln!("openstack-sim: cannot start the runtime: {e}");
        std::process::exit(1);
    });
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap_or_else(|e| {
            eprintln!("openstack-sim: cannot bind {addr}: {e}");
            std::process::exit(1);
        });
        let local = listener.local_addr().unwrap_or(addr);
        let base = format!("http://{local}");
        let counts = (cloud.projects.len(), cloud.servers.len(), cloud.volumes.len(), cloud.fips.len());
        let state = server::State::new(
            cloud,
            base.clone(),
            server::AuthConfig {
                admin_password: cli.password,
                app_cred,
                app_cred_project,
                oidc_token: cli.oidc_access_token,
                allow_system_scope: !cli.no_system_scope,
                token_ttl,
            },
            faults,
            latency,
            cli.lenient_cinder_filters,
            cli.max_limit,
        );
        if let Some(path) = &cli.write_manifest
            && let Err(e) = std::fs::write(path, state.manifest())
        {
            eprintln!("openstack-sim: cannot write manifest {}: {e}", path.display());
            std::process::exit(1);
        }
        let state = Arc::new(state);
        let ready = serde_json::json!({
            "ready": true,
            "url": base,
            "auth_url": format!("{base}/identity/v3"),
            "endpoints": {
                "identity": format!("{base}/identity"),
                "compute": format!("{base}/compute/v2.1"),
                "image": format!("{base}/image"),
                "volumev3": format!("{base}/volume/v3"),
                "network": format!("{base}/network"),
            },
            "region": "RegionOne",
            "stats": format!("{base}/_sim/stats"),
            "manifest": format!("{base}/_sim/manifest"),
            "projects": counts.0, "servers": counts.1, "volumes": counts.2, "floating_ips": counts.3,
        });
        println!("{ready}");
        use std::io::Write;
        let _ = std::io::stdout().flush();
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("openstack-sim: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let state = state.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| server::handle(state.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
}
