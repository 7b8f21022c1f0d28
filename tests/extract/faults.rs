//! `caso-extract` against every fault mode of the OpenStack simulator, each
//! scoped to one project: the run exits 1 with a line naming that project
//! and the object that failed, never panics, leaves only whole messages in
//! the spool, keeps that project's lastrun and advances the others'.
//! Tokens revoked mid-run are renewed (exit 0); credentials Keystone rejects
//! cost one request and exit 1.

use cloud_accounting::lastrun;
use cloud_accounting::time::Timestamp;
use serde_json::Value;

use crate::support::extract::{run_ours, spool_records, text, write_conf};
use crate::support::sim;
use crate::support::sim::Sim;

/// Every lastrun starts here; the run extracts up to the manifest's period end.
const BEFORE: &str = "2026-09-01 00:00:00+00:00";

struct Run {
    dir: tempfile::TempDir,
    sim: Sim,
    /// Accounted project ids, in manifest order.
    projects: Vec<String>,
    to: Timestamp,
}

impl Run {
    /// Scenario S (three accounted projects) with these simulator arguments.
    async fn start(sim_args: &[&str]) -> Run {
        let dir = tempfile::tempdir().unwrap();
        let voms = dir.path().join("voms.json");
        let mut args = vec![
            "--scenario",
            "S",
            "--seed",
            "1",
            // Pages of 5: every list of servers spans several pages.
            "--max-limit",
            "5",
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
        }
    }

    /// Project of the manifest whose fault selector these tests use.
    async fn fault_sim(spec_for: impl Fn(&str) -> String) -> Run {
        // The project ids come from the seed: read them from a first
        // instance, then start the faulty one with the same data.
        let probe = Run::start(&[]).await;
        let spec = spec_for(&probe.projects[1]);
        drop(probe);
        Run::start(&["--fault", &spec]).await
    }

    fn spooldir(&self) -> std::path::PathBuf {
        self.dir.path().join("ours/spool")
    }

    /// Runs ours with a short timeout and few quick retries, every project
    /// starting from the same lastrun.
    fn run(&self, password: &str) -> std::process::Output {
        let conf = write_conf(
            &self.dir.path().join("ours"),
            &self.sim.auth_url(),
            &self.dir.path().join("voms.json"),
            password,
            "timeout = 1\nconnect_retries = 1\nretry_backoff = 10ms",
        );
        let before = Timestamp::parse(BEFORE).unwrap();
        for p in &self.projects {
            lastrun::write(&self.spooldir(), p, before).unwrap();
        }
        let to = self.to.to_string();
        tokio::task::block_in_place(|| run_ours(&conf, &["--extract-to", &to]))
    }

    fn lastrun(&self, project: &str) -> Option<Timestamp> {
        lastrun::read(&self.spooldir(), project).unwrap()
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
}

/// One fault against `projects[1]`; `object` is what the error must name.
async fn one_project_fails(spec_for: impl Fn(&str) -> String, object: &str, cause: &str) {
    let run = Run::fault_sim(spec_for).await;
    let out = run.run("secret");
    let err = text(&out.stderr);
    println!("{err}");
    assert_eq!(out.status.code(), Some(1), "exit code; stderr:\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    let bad = &run.projects[1];
    let line = format!("project {bad}: {object}: ");
    let named: Vec<&str> = err.lines().filter(|l| l.contains(&line)).collect();
    assert!(
        named.iter().any(|l| l.contains(cause)),
        "no line naming {line:?} with {cause:?}:\n{err}"
    );
    assert!(
        err.contains(&format!(
            "1 project(s) failed and keep their lastrun ({bad})"
        )),
        "{err}"
    );
    // Fired at all (the selector matched our requests).
    let stats = run.sim.stats().await;
    assert!(stats["faults"][0]["fired"].as_u64().unwrap() > 0, "{stats}");

    // Whole messages only, and the others' records all there.
    let records = spool_records(&run.dir.path().join("ours/outgoing"));
    let before = Timestamp::parse(BEFORE).unwrap();
    let next = run.to.add_seconds(1);
    for p in &run.projects {
        if p == bad {
            assert_eq!(run.lastrun(p), Some(before), "{p}: lastrun untouched");
        } else {
            assert_eq!(run.lastrun(p), Some(next), "{p}: lastrun advanced");
            assert!(run.records_of(&records, p) > 0, "{p} has records");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn server_errors_beyond_the_retries() {
    one_project_fails(
        |p| format!("5xx=503:path=/compute/v2.1/servers/detail:project={p}"),
        "nova servers",
        "HTTP 503",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stall_beyond_the_timeout() {
    one_project_fails(
        |p| format!("stall=20s:path=/volume:project={p}"),
        "cinder volumes",
        "timed out",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_json() {
    one_project_fails(
        |p| format!("malformed-json:path=/network:project={p}"),
        "neutron floating IPs",
        "malformed",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_truncated_page() {
    one_project_fails(
        |p| format!("truncated-page:path=/compute/v2.1/os-simple-tenant-usage:project={p}"),
        "nova usage report",
        "marker",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repeating_marker() {
    one_project_fails(
        |p| format!("repeat-marker:path=/compute/v2.1/servers/detail:project={p}"),
        "nova servers",
        "marker",
    )
    .await;
}

/// Every token revoked mid-run: we authenticate again and finish.
#[tokio::test(flavor = "multi_thread")]
async fn tokens_revoked_mid_run_are_renewed() {
    let run = Run::start(&["--fault", "401-after=12"]).await;
    let out = run.run("secret");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let stats = run.sim.stats().await;
    assert_eq!(stats["faults"][0]["fired"], 1, "{stats}");
    assert!(stats["by_status"]["401"].as_u64().unwrap() >= 1, "{stats}");
    let records = spool_records(&run.dir.path().join("ours/outgoing"));
    for p in &run.projects {
        assert_eq!(run.lastrun(p), Some(run.to.add_seconds(1)));
        assert!(run.records_of(&records, p) > 0, "{p}");
    }
}

/// Keystone refuses the password: one request, one clear line, exit 1,
/// nothing written.
#[tokio::test(flavor = "multi_thread")]
async fn rejected_credentials_cost_one_request() {
    let run = Run::start(&[]).await;
    let out = run.run("not-the-password");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(
        err.matches("Keystone rejected the credentials").count(),
        1,
        "{err}"
    );
    assert!(!err.contains("not-the-password"), "{err}");
    let stats = run.sim.stats().await;
    assert_eq!(stats["total"], 1, "{stats}");
    assert_eq!(
        stats["by_endpoint"]["identity POST auth/tokens"], 1,
        "{stats}"
    );
    let before = Timestamp::parse(BEFORE).unwrap();
    for p in &run.projects {
        assert_eq!(run.lastrun(p), Some(before));
    }
    let records = spool_records(&run.dir.path().join("ours/outgoing"));
    assert_eq!(records["messages"], 0);
}

/// Defect 10 against the simulator's Keystone, which refuses any scope
/// with an application credential: we ask none and extract.
#[tokio::test(flavor = "multi_thread")]
async fn application_credentials_work() {
    let run = Run::start(&["--app-cred-id", "ac-1", "--app-cred-secret", "ac-secret"]).await;
    let conf = write_conf(
        &run.dir.path().join("ours"),
        &run.sim.auth_url(),
        &run.dir.path().join("voms.json"),
        "unused",
        "application_credential_id = ac-1\napplication_credential_secret = ac-secret",
    );
    // The password settings of write_conf give way to the credential.
    let text_conf = std::fs::read_to_string(&conf)
        .unwrap()
        .replace(
            "auth_type = v3password",
            "auth_type = v3applicationcredential",
        )
        .replace("username = admin\n", "")
        .replace("password = unused\n", "")
        .replace("user_domain_name = Default\n", "");
    std::fs::write(&conf, text_conf).unwrap();
    let to = run.to.to_string();
    let out = tokio::task::block_in_place(|| run_ours(&conf, &["--extract-to", &to]));
    let err = text(&out.stderr);
    println!("{err}");
    assert_eq!(out.status.code(), Some(0), "{err}");
    let stats = run.sim.stats().await;
    assert_eq!(stats["by_status"].get("401"), None, "{stats}");
    let records = spool_records(&run.dir.path().join("ours/outgoing"));
    for p in &run.projects {
        assert_eq!(run.lastrun(p), Some(run.to.add_seconds(1)), "{p}");
        assert!(run.records_of(&records, p) > 0, "{p}");
    }
}

/// A caso.conf against `auth_url` with short timeouts and one retry, in a
/// fresh directory.
fn conf_for(auth_url: &str, extra_auth: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let voms = dir.path().join("voms.json");
    std::fs::write(&voms, "{}").unwrap();
    let extra = format!("timeout = 1\nconnect_retries = 1\nretry_backoff = 10ms\n{extra_auth}");
    let conf = write_conf(dir.path(), auth_url, &voms, "secret", &extra);
    (dir, conf)
}

/// Keystone on a closed port: the error names scheme, host and port besides
/// the request, never the user information of the URL; exit 1.
#[test]
fn an_unreachable_keystone_is_named_by_origin_and_request() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (_dir, conf) = conf_for(
        &format!("http://admin:s3cr3t@127.0.0.1:{port}/identity/v3"),
        "",
    );
    let out = run_ours(&conf, &[]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let want = format!(
        "cannot reach http://127.0.0.1:{port} (POST /identity/v3/auth/tokens) after 2 attempt(s): "
    );
    assert!(err.contains(&want), "{want}\n{err}");
    assert!(!err.contains("s3cr3t"), "{err}");
}

/// Keystone that accepts connections and never answers: the same, as a timeout.
#[test]
fn a_silent_keystone_is_named_by_origin_and_request() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Holds every connection open, unanswered, until the test ends.
    std::thread::spawn(move || {
        let held: Vec<_> = listener.incoming().collect();
        drop(held);
    });
    let (_dir, conf) = conf_for(&format!("http://127.0.0.1:{port}/identity/v3"), "");
    let out = run_ours(&conf, &[]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let want = format!(
        "no answer from http://127.0.0.1:{port} (POST /identity/v3/auth/tokens) after 2 attempt(s): timed out"
    );
    assert!(err.contains(&want), "{want}\n{err}");
}

/// `[keystone_auth] keyfile` the run's uid cannot read (root's, mode 0600):
/// exit 2 naming the uid and the fix. As root the run is nobody's
/// (setpriv, util-linux); otherwise the key gets mode 000.
#[test]
fn an_unreadable_keyfile_names_the_uid_and_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    use std::process::Command;
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let keys = tempfile::tempdir().unwrap();
    std::fs::set_permissions(keys.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (cert, key) = (
        keys.path().join("client.pem"),
        keys.path().join("client.key"),
    );
    std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\n").unwrap();
    std::fs::set_permissions(&cert, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&key, "-----BEGIN PRIVATE KEY-----\n").unwrap();
    let (dir, conf) = conf_for(
        "http://127.0.0.1:9/identity/v3",
        &format!("certfile = {}\nkeyfile = {}", cert.display(), key.display()),
    );
    let (out, uid) = if root {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let st = Command::new("chown")
            .args(["-R", "65534:65534"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(st.success());
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_caso-extract"))
            .arg("--config-file")
            .arg(&conf)
            .arg("projects")
            .env_remove("CASO_LOCK_PATH")
            .output()
            .expect("run setpriv (util-linux) with caso-extract");
        (out, 65534)
    } else {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o000)).unwrap();
        // SAFETY: geteuid has no preconditions.
        (run_ours(&conf, &["projects"]), unsafe { libc::geteuid() })
    };
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let k = key.display();
    for want in [
        format!("[keystone_auth] keyfile: cannot read {k}: Permission denied"),
        format!("caso-extract runs as uid {uid}, and the file belongs to uid"),
        format!("chown {uid} {k}, or point [keystone_auth] keyfile at a copy owned by uid {uid}"),
    ] {
        assert!(err.contains(&want), "{want}\n{err}");
    }
}

/// `caso-extract projects` against the simulator (one project without any
/// VO): one line per tagged project, each with balanced quotes, saying
/// where its VO comes from.
#[tokio::test(flavor = "multi_thread")]
async fn the_projects_listing_quotes_in_pairs() {
    let run = Run::start(&["--unmapped-project"]).await;
    let voms = run.dir.path().join("voms.json");
    let conf = write_conf(
        &run.dir.path().join("ours"),
        &run.sim.auth_url(),
        &voms,
        "secret",
        "",
    );
    let out = tokio::task::block_in_place(|| run_ours(&conf, &["projects"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let listed = text(&out.stdout);
    let manifest = run.sim.manifest().await;
    let mut want: Vec<String> = manifest["projects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["tags"].as_array().unwrap().contains(&Value::from("caso")))
        .map(|p| {
            let (id, name) = (p["id"].as_str().unwrap(), p["name"].as_str().unwrap());
            match (p["vo"].as_str(), p["vo_source"].as_str()) {
                (Some(vo), Some("property")) => {
                    format!("'{id}' ({name}) mapped to VO '{vo}' (from project property VO)")
                }
                (Some(vo), _) => {
                    format!(
                        "'{id}' ({name}) mapped to VO '{vo}' (from {})",
                        voms.display()
                    )
                }
                (None, _) => {
                    format!("'{id}' ({name}) mapped to no VO (no mapping: extracting it fails)")
                }
            }
        })
        .collect();
    want.sort();
    let mut got: Vec<String> = listed.lines().map(str::to_owned).collect();
    got.sort();
    assert_eq!(got, want);
    assert!(
        got.iter().any(|l| l.contains("mapped to no VO")),
        "{listed}"
    );
    for line in &got {
        assert_eq!(line.matches('\'').count() % 2, 0, "unbalanced: {line}");
    }
}
