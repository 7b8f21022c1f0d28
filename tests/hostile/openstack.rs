//! `caso-extract` against an OpenStack that attacks it (issue 11): bodies of
//! a gigabyte, chunked bodies that never end, lying `Content-Length`s,
//! lists whose every page links to a new one, redirects to another origin
//! and 401 pages full of garbage and echoed credentials.
//!
//! Every case scopes the attack to one project of scenario S and asserts:
//! the exit code; a line naming that project, what failed and why; the
//! healthy projects' records and advanced lastrun (nothing lost); no
//! password or token in stdout/stderr; that the run ended within a bound,
//! under `ulimit -v` where memory is the point. Attacks on a request every
//! project needs (Keystone's token or project list) fail the whole run with
//! exit 1 and change nothing.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cloud_accounting::lastrun;
use cloud_accounting::time::Timestamp;
use serde_json::Value;

use crate::support::extract::{spool_records, text, write_conf};
use crate::support::sim;
use crate::support::sim::Sim;

/// Every lastrun starts here; the run extracts up to the manifest's period end.
const BEFORE: &str = "2026-09-01 00:00:00+00:00";
/// Every user's password in these runs: it must never be printed.
const PASSWORD: &str = "Pw-S3cr3t-9f2e";
/// The simulator's tokens start so; none may be printed.
const TOKEN_PREFIX: &str = "gAAAAA";
/// Virtual memory the binary may use (KiB), where memory is the point: a
/// body of 1 GB cannot fit, a 64 MiB cap does.
const VMEM_KB: u64 = 1_000_000;
/// No run may take longer.
const BOUND: Duration = Duration::from_secs(120);

struct Run {
    dir: tempfile::TempDir,
    sim: Sim,
    /// Accounted project ids, in manifest order.
    projects: Vec<String>,
    to: Timestamp,
    /// Index of the attacked project in `projects`.
    bad_index: usize,
    /// More arguments of caso-extract.
    extra_args: Vec<&'static str>,
}

/// What one run printed and how it ended.
struct Outcome {
    out: Output,
    err: String,
    took: Duration,
}

impl Run {
    async fn start(sim_args: &[&str]) -> Run {
        let dir = tempfile::tempdir().unwrap();
        let voms = dir.path().join("voms.json");
        let mut args = vec![
            "--scenario",
            "S",
            "--seed",
            "1",
            "--max-limit",
            "5",
            "--password",
            PASSWORD,
            "--write-voms-json",
            voms.to_str().unwrap(),
        ];
        args.extend_from_slice(sim_args);
        let sim = Sim::start(&args);
        let manifest = sim.manifest().await;
        let projects = sim::accounted_project_ids(&manifest);
        let to = Timestamp::parse(manifest["period"]["to"].as_str().unwrap()).unwrap();
        Run {
            dir,
            sim,
            projects,
            to,
            bad_index: 1,
            extra_args: Vec::new(),
        }
    }

    /// A simulator whose fault names `projects[1]` (ids come from the seed:
    /// read from a first instance).
    async fn against_one(spec_for: impl Fn(&str) -> String) -> Run {
        Run::against(1, spec_for).await
    }

    async fn against(index: usize, spec_for: impl Fn(&str) -> String) -> Run {
        let probe = Run::start(&[]).await;
        let spec = spec_for(&probe.projects[index]);
        drop(probe);
        let mut run = Run::start(&["--fault", &spec]).await;
        run.bad_index = index;
        run
    }

    /// Images are read once per run for every project: the attacked
    /// project must be the first to ask, so projects go one at a time and
    /// the first one is attacked (scenario S, seed 1: `projects[1]` comes
    /// first; the fault must fire, which `only_the_attacked_project_failed`
    /// checks).
    async fn against_first_image_reader(spec_for: impl Fn(&str) -> String) -> Run {
        let mut run = Run::against(1, spec_for).await;
        run.extra_args = vec!["--concurrency", "1"];
        run
    }

    fn bad(&self) -> &str {
        &self.projects[self.bad_index]
    }

    fn spooldir(&self) -> std::path::PathBuf {
        self.dir.path().join("ours/spool")
    }

    /// Runs the real binary, under `ulimit -v` when `limit_memory`.
    fn run(&self, limit_memory: bool) -> Outcome {
        let conf = write_conf(
            &self.dir.path().join("ours"),
            &self.sim.auth_url(),
            &self.dir.path().join("voms.json"),
            PASSWORD,
            "timeout = 20\nconnect_retries = 1\nretry_backoff = 10ms",
        );
        let before = Timestamp::parse(BEFORE).unwrap();
        for p in &self.projects {
            lastrun::write(&self.spooldir(), p, before).unwrap();
        }
        let to = self.to.to_string();
        let mut args = vec!["--extract-to", to.as_str()];
        args.extend_from_slice(&self.extra_args);
        let started = Instant::now();
        let out = tokio::task::block_in_place(|| run_binary(&conf, &args, limit_memory));
        let took = started.elapsed();
        let err = text(&out.stderr);
        println!("took {took:?}, stderr:\n{err}");
        Outcome { out, err, took }
    }

    fn lastrun(&self, project: &str) -> Option<Timestamp> {
        lastrun::read(&self.spooldir(), project).unwrap()
    }

    fn records(&self) -> Value {
        spool_records(&self.dir.path().join("ours/outgoing"))
    }

    /// Records per project id (LocalGroupId, LocalGroup or sr LocalGroup).
    fn records_of(&self, records: &Value, project: &str) -> usize {
        let mut n = 0;
        for kind in ["cloud", "ip", "storage"] {
            for r in records[kind].as_array().unwrap() {
                let group = r
                    .get("LocalGroupId")
                    .or_else(|| r.get("LocalGroup"))
                    .or_else(|| r.get("SubjectIdentity/LocalGroup"));
                if group.and_then(Value::as_str) == Some(project) {
                    n += 1;
                }
            }
        }
        n
    }

    /// The attacked project failed naming `object` and `cause` on one line;
    /// every other project has its records and its lastrun advanced.
    async fn only_the_attacked_project_failed(&self, o: &Outcome, object: &str, cause: &str) {
        common_checks(o);
        assert_eq!(
            o.out.status.code(),
            Some(1),
            "exit code; stderr:\n{}",
            o.err
        );
        let bad = self.bad();
        let line = format!("project {bad}: {object}");
        assert!(
            o.err
                .lines()
                .any(|l| l.contains(&line) && l.contains(cause)),
            "no line naming {line:?} with {cause:?}:\n{}",
            o.err
        );
        assert!(
            o.err.contains(&format!(
                "1 project(s) failed and keep their lastrun ({bad})"
            )),
            "{}",
            o.err
        );
        let stats = self.sim.stats().await;
        assert!(stats["faults"][0]["fired"].as_u64().unwrap() > 0, "{stats}");
        let records = self.records();
        let before = Timestamp::parse(BEFORE).unwrap();
        let next = self.to.add_seconds(1);
        for p in &self.projects {
            if p == bad {
                assert_eq!(self.lastrun(p), Some(before), "{p}: lastrun untouched");
            } else {
                assert_eq!(self.lastrun(p), Some(next), "{p}: lastrun advanced");
                assert!(self.records_of(&records, p) > 0, "{p} has records");
            }
        }
    }

    /// A request every project needs failed: exit 1 naming `cause`, no
    /// lastrun moved, no message written.
    fn nothing_extracted(&self, o: &Outcome, cause: &str) {
        common_checks(o);
        assert_eq!(
            o.out.status.code(),
            Some(1),
            "exit code; stderr:\n{}",
            o.err
        );
        assert!(o.err.contains(cause), "no {cause:?} in:\n{}", o.err);
        let before = Timestamp::parse(BEFORE).unwrap();
        for p in &self.projects {
            assert_eq!(self.lastrun(p), Some(before), "{p}: lastrun untouched");
        }
        assert_eq!(self.records()["messages"], 0);
    }

    /// Every project extracted: exit 0, every lastrun advanced.
    fn all_extracted(&self, o: &Outcome) {
        common_checks(o);
        assert_eq!(
            o.out.status.code(),
            Some(0),
            "exit code; stderr:\n{}",
            o.err
        );
        let records = self.records();
        for p in &self.projects {
            assert_eq!(self.lastrun(p), Some(self.to.add_seconds(1)), "{p}");
            assert!(self.records_of(&records, p) > 0, "{p}");
        }
    }
}

/// `caso-extract` with the test environment, optionally under `ulimit -v`.
fn run_binary(conf: &Path, args: &[&str], limit_memory: bool) -> Output {
    let bin = env!("CARGO_BIN_EXE_caso-extract");
    let mut cmd = if limit_memory {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(format!("ulimit -v {VMEM_KB}; exec \"$0\" \"$@\""))
            .arg(bin);
        c
    } else {
        Command::new(bin)
    };
    cmd.arg("--config-file")
        .arg(conf)
        .args(args)
        .env("TZ", "UTC")
        .env_remove("CASO_LOCK_PATH")
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

/// What every case asserts: no panic or abort, no secret, short printable
/// lines, within the bound.
fn common_checks(o: &Outcome) {
    let out = format!("{}{}", text(&o.out.stdout), o.err);
    assert!(
        o.out.status.code().is_some(),
        "killed by a signal: {:?}",
        o.out.status
    );
    assert!(!out.contains("panicked"), "{out}");
    assert!(!out.contains("memory allocation"), "{out}");
    assert!(!out.contains(PASSWORD), "the password is printed:\n{out}");
    assert!(!out.contains(TOKEN_PREFIX), "a token is printed:\n{out}");
    for line in out.lines() {
        assert!(
            line.len() < 2_000,
            "a line of {} bytes: {line:.300}",
            line.len()
        );
        assert!(
            !line.chars().any(|c| c.is_control() && c != '\t'),
            "a control character in {line:?}"
        );
    }
    assert!(o.took < BOUND, "took {:?}", o.took);
}

/// Another origin (127.0.0.1, another port): records every byte any client
/// sends it and answers each request with a plausible empty success.
struct Elsewhere {
    port: u16,
    received: Arc<Mutex<Vec<u8>>>,
    connections: Arc<Mutex<usize>>,
}

impl Elsewhere {
    fn start() -> Elsewhere {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(Mutex::new(0));
        let (r, c) = (received.clone(), connections.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                *c.lock().unwrap() += 1;
                let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
                let mut buf = [0u8; 65536];
                if let Ok(n) = stream.read(&mut buf) {
                    r.lock().unwrap().extend_from_slice(&buf[..n]);
                }
                let body = br#"{"servers": [], "volumes": [], "floatingips": [], "projects": [], "token": {}}"#;
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Subject-Token: stolen\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(body);
            }
        });
        Elsewhere {
            port,
            received,
            connections,
        }
    }

    /// Nothing reached it: no connection, no byte, so no token, password or
    /// certificate either.
    fn assert_untouched(&self) {
        let got = self.received.lock().unwrap().clone();
        let text = String::from_utf8_lossy(&got);
        assert!(!text.contains(PASSWORD), "the password went elsewhere");
        assert!(
            !text.to_ascii_lowercase().contains("x-auth-token"),
            "a token went elsewhere:\n{text}"
        );
        assert_eq!(*self.connections.lock().unwrap(), 0, "received:\n{text}");
    }
}

// ------------------------------------------------------------ class 2: bodies

#[tokio::test(flavor = "multi_thread")]
async fn a_1gb_nova_servers_body_fails_that_project_only() {
    let run =
        Run::against_one(|p| format!("huge-body=1G:path=/compute/v2.1/servers/detail:project={p}"))
            .await;
    let o = run.run(true);
    run.only_the_attacked_project_failed(&o, "nova servers", "over the limit of")
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_endless_chunked_cinder_body_fails_that_project_only() {
    let run = Run::against_one(|p| format!("endless-body:path=/volume:project={p}")).await;
    let o = run.run(true);
    run.only_the_attacked_project_failed(&o, "cinder volumes", "over the limit of")
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lying_content_length_from_neutron_fails_that_project_only() {
    let run = Run::against_one(|p| format!("lying-length:path=/network:project={p}")).await;
    let o = run.run(true);
    run.only_the_attacked_project_failed(&o, "neutron floating IPs", "over the limit of")
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_endless_nova_usage_body_fails_that_project_only() {
    let run = Run::against_one(|p| {
        format!("endless-body:path=/compute/v2.1/os-simple-tenant-usage:project={p}")
    })
    .await;
    let o = run.run(true);
    run.only_the_attacked_project_failed(&o, "nova usage report", "over the limit of")
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_1gb_glance_image_body_fails_that_project_only() {
    let run =
        Run::against_first_image_reader(|p| format!("huge-body=1G:path=/image:project={p}")).await;
    let o = run.run(true);
    run.only_the_attacked_project_failed(&o, "glance image", "over the limit of")
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_1gb_keystone_project_list_stops_the_run_cleanly() {
    let run = Run::start(&["--fault", "huge-body=1G:path=/identity/v3/projects"]).await;
    let o = run.run(true);
    run.nothing_extracted(&o, "over the limit of");
}

/// 60 MB of `0,` costs about a gigabyte decoded: refused before decoding.
#[tokio::test(flavor = "multi_thread")]
async fn a_dense_keystone_project_list_is_not_decoded() {
    let run = Run::start(&["--fault", "dense-json=60M:path=/identity/v3/projects"]).await;
    let o = run.run(true);
    run.nothing_extracted(&o, "JSON values");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dense_nova_servers_page_fails_that_project_only() {
    let run = Run::against_one(|p| {
        format!("dense-json=60M:path=/compute/v2.1/servers/detail:project={p}")
    })
    .await;
    let o = run.run(true);
    run.only_the_attacked_project_failed(&o, "nova servers", "JSON values")
        .await;
}

// -------------------------------------------------------- class 3: pagination

#[tokio::test(flavor = "multi_thread")]
async fn endless_nova_server_pages_fail_that_project_only() {
    let run = Run::against_one(|p| {
        format!("endless-pages:path=/compute/v2.1/servers/detail:project={p}")
    })
    .await;
    let o = run.run(true);
    run.only_the_attacked_project_failed(&o, "nova servers", "pages is the limit")
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn endless_cinder_volume_pages_fail_that_project_only() {
    let run = Run::against_one(|p| format!("endless-pages:path=/volume:project={p}")).await;
    let o = run.run(true);
    run.only_the_attacked_project_failed(&o, "cinder volumes", "pages is the limit")
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn endless_neutron_floating_ip_pages_fail_that_project_only() {
    let run = Run::against_one(|p| format!("endless-pages:path=/network:project={p}")).await;
    let o = run.run(true);
    run.only_the_attacked_project_failed(&o, "neutron floating IPs", "pages is the limit")
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn endless_nova_usage_pages_fail_that_project_only() {
    let run = Run::against_one(|p| {
        format!("endless-pages:path=/compute/v2.1/os-simple-tenant-usage:project={p}")
    })
    .await;
    let o = run.run(true);
    run.only_the_attacked_project_failed(&o, "nova usage report", "pages is the limit")
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn endless_keystone_project_pages_stop_the_run_cleanly() {
    let run = Run::start(&["--fault", "endless-pages:path=/identity/v3/projects"]).await;
    let o = run.run(true);
    run.nothing_extracted(&o, "keystone project list");
    assert!(o.err.contains("pages is the limit"), "{}", o.err);
    let stats = run.sim.stats().await;
    assert!(
        stats["by_endpoint"]["identity GET projects"]
            .as_u64()
            .unwrap()
            >= cloud_accounting::openstack::MAX_PAGES as u64,
        "{stats}"
    );
}

/// caso-extract never lists Glance images: the library call is driven
/// against the same simulator fault.
#[tokio::test(flavor = "multi_thread")]
async fn endless_glance_image_pages_end_with_an_error_naming_the_list() {
    use cloud_accounting::openstack::{
        AuthConfig, AuthMethod, DomainRef, Scope, Session, UserRef, glance,
    };
    let run = Run::start(&["--fault", "endless-pages:path=/image/v2/images"]).await;
    let mut cfg = AuthConfig::new(
        run.sim.auth_url(),
        AuthMethod::Password {
            user: UserRef::Name {
                name: "admin".into(),
                domain: DomainRef::Name("Default".into()),
            },
            password: PASSWORD.into(),
        },
        Scope::Project {
            id: run.projects[0].clone(),
        },
    );
    cfg.retries = 0;
    let session = Session::new(cfg).unwrap();
    let started = Instant::now();
    let scope = session.default_scope().clone();
    let err = glance::list_images(&session, &scope).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("glance image list") && msg.contains("pages is the limit"),
        "{msg}"
    );
    assert!(started.elapsed() < BOUND);
    assert_eq!(
        session.request_counts().image,
        cloud_accounting::openstack::MAX_PAGES as u64
    );
}

// ---------------------------------------------------------- class 4: redirects

#[tokio::test(flavor = "multi_thread")]
async fn a_keystone_token_redirect_elsewhere_is_refused() {
    let elsewhere = Elsewhere::start();
    let spec = format!("redirect={}:path=/identity/v3/auth/tokens", elsewhere.port);
    let run = Run::start(&["--fault", &spec]).await;
    let o = run.run(false);
    run.nothing_extracted(
        &o,
        &format!("to http://127.0.0.1:{} not followed", elsewhere.port),
    );
    elsewhere.assert_untouched();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_nova_redirect_elsewhere_is_refused() {
    let elsewhere = Elsewhere::start();
    let port = elsewhere.port;
    let run = Run::against_one(|p| {
        format!("redirect={port}:path=/compute/v2.1/servers/detail:project={p}")
    })
    .await;
    let o = run.run(false);
    run.only_the_attacked_project_failed(&o, "nova servers", "not followed")
        .await;
    elsewhere.assert_untouched();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_glance_redirect_elsewhere_is_refused() {
    let elsewhere = Elsewhere::start();
    let port = elsewhere.port;
    let run =
        Run::against_first_image_reader(|p| format!("redirect={port}:path=/image:project={p}"))
            .await;
    let o = run.run(false);
    run.only_the_attacked_project_failed(&o, "glance image", "not followed")
        .await;
    elsewhere.assert_untouched();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cinder_redirect_elsewhere_is_refused() {
    let elsewhere = Elsewhere::start();
    let port = elsewhere.port;
    let run = Run::against_one(|p| format!("redirect={port}:path=/volume:project={p}")).await;
    let o = run.run(false);
    run.only_the_attacked_project_failed(&o, "cinder volumes", "not followed")
        .await;
    elsewhere.assert_untouched();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_neutron_redirect_elsewhere_is_refused() {
    let elsewhere = Elsewhere::start();
    let port = elsewhere.port;
    let run = Run::against_one(|p| format!("redirect={port}:path=/network:project={p}")).await;
    let o = run.run(false);
    run.only_the_attacked_project_failed(&o, "neutron floating IPs", "not followed")
        .await;
    elsewhere.assert_untouched();
}

/// A redirect to the same origin stays where the token belongs: followed.
#[tokio::test(flavor = "multi_thread")]
async fn a_same_origin_redirect_is_followed() {
    let run = Run::start(&[
        "--fault",
        "redirect=same:path=/compute/v2.1/servers/detail:times=2",
    ])
    .await;
    let o = run.run(false);
    run.all_extracted(&o);
    let stats = run.sim.stats().await;
    assert_eq!(stats["faults"][0]["fired"], 2, "{stats}");
}

/// A same-origin redirect loop ends after a few hops, as an error for the
/// project.
#[tokio::test(flavor = "multi_thread")]
async fn a_same_origin_redirect_loop_fails_that_project_only() {
    let run = Run::against_one(|p| {
        format!("redirect=same:path=/compute/v2.1/servers/detail:project={p}")
    })
    .await;
    let o = run.run(false);
    run.only_the_attacked_project_failed(&o, "nova servers", "more than 5 in a row")
        .await;
}

// ------------------------------------------------- class 7: error bodies

/// A 401 of a megabyte echoing the token, with escapes and control bytes:
/// the project fails with a short printable excerpt and no token.
#[tokio::test(flavor = "multi_thread")]
async fn a_garbage_401_from_nova_is_excerpted() {
    let run = Run::against_one(|p| {
        format!("401-garbage=1M:path=/compute/v2.1/servers/detail:project={p}")
    })
    .await;
    let o = run.run(true);
    run.only_the_attacked_project_failed(&o, "nova servers", "bytes in all")
        .await;
    assert!(o.err.contains("\\u{1b}[31mPWNED"), "{}", o.err);
}

/// Keystone's 401 to the password echoes the request (the password): the
/// run fails on the credentials without printing it.
#[tokio::test(flavor = "multi_thread")]
async fn a_garbage_keystone_401_echoing_the_password_is_excerpted() {
    let run = Run::start(&["--fault", "401-garbage=1M:path=/identity/v3/auth/tokens"]).await;
    let o = run.run(true);
    run.nothing_extracted(&o, "Keystone rejected the credentials");
    assert!(o.err.contains("***"), "the password is replaced: {}", o.err);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_garbage_401_from_cinder_is_excerpted() {
    let run = Run::against_one(|p| format!("401-garbage=64K:path=/volume:project={p}")).await;
    let o = run.run(false);
    run.only_the_attacked_project_failed(&o, "cinder volumes", "bytes in all")
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_garbage_401_from_neutron_is_excerpted() {
    let run = Run::against_one(|p| format!("401-garbage=64K:path=/network:project={p}")).await;
    let o = run.run(false);
    run.only_the_attacked_project_failed(&o, "neutron floating IPs", "bytes in all")
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_garbage_401_from_glance_is_excerpted() {
    let run =
        Run::against_first_image_reader(|p| format!("401-garbage=64K:path=/image:project={p}"))
            .await;
    let o = run.run(false);
    run.only_the_attacked_project_failed(&o, "glance image", "bytes in all")
        .await;
}
