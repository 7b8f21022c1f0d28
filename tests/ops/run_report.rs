//! The run report `caso-extract` writes at the end of every run
//! (`<spooldir>/caso-extract.last-run.json`), through the real binary
//! against the OpenStack simulator: after a clean run, after one project
//! failed, and after a SIGKILL mid-run (the previous report stays whole).
//! A dry run, `--check` and `--print-config` write none; a report that
//! cannot be written is a warning.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cloud_accounting::lastrun;
use cloud_accounting::time::Timestamp;
use serde_json::Value;

use crate::support::extract::{run_ours, spool_records, text, write_conf};
use crate::support::sim;
use crate::support::sim::Sim;

/// Every lastrun starts here; runs extract up to the manifest's period end.
const BEFORE: &str = "2026-09-01T00:00:00Z";

struct Site {
    dir: tempfile::TempDir,
    /// Accounted project ids, in manifest order.
    projects: Vec<String>,
    to: Timestamp,
}

/// Scenario S (three accounted projects), seed 1, with these arguments.
async fn start_sim(dir: &std::path::Path, extra: &[&str]) -> (Sim, Vec<String>, Timestamp) {
    let voms = dir.join("voms.json");
    let mut args = vec![
        "--scenario",
        "S",
        "--seed",
        "1",
        "--write-voms-json",
        voms.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let sim = Sim::start(&args);
    let manifest = sim.manifest().await;
    let projects = sim::accounted_project_ids(&manifest);
    let to = Timestamp::parse(manifest["period"]["to"].as_str().unwrap()).unwrap();
    (sim, projects, to)
}

impl Site {
    fn new() -> Site {
        Site {
            dir: tempfile::tempdir().unwrap(),
            projects: Vec::new(),
            to: Timestamp::EPOCH,
        }
    }

    fn spooldir(&self) -> PathBuf {
        self.dir.path().join("ours/spool")
    }

    fn report_path(&self) -> PathBuf {
        self.spooldir().join("caso-extract.last-run.json")
    }

    fn report(&self) -> Value {
        let bytes = std::fs::read(self.report_path()).expect("the run report");
        serde_json::from_slice(&bytes).expect("the run report is JSON")
    }

    /// caso.conf for `sim`, every project's lastrun at [`BEFORE`].
    fn conf(&self, sim: &Sim, password: &str) -> PathBuf {
        let conf = write_conf(
            &self.dir.path().join("ours"),
            &sim.auth_url(),
            &self.dir.path().join("voms.json"),
            password,
            "timeout = 1\nconnect_retries = 1\nretry_backoff = 10ms",
        );
        for p in &self.projects {
            lastrun::write(&self.spooldir(), p, Timestamp::parse(BEFORE).unwrap()).unwrap();
        }
        conf
    }

    /// `caso-extract status ARGS --now NOW` on the files the runs left.
    fn status(&self, now: Timestamp, args: &[&str]) -> (Option<i32>, String) {
        let conf = self.dir.path().join("ours/caso.conf");
        let now = now.to_string();
        let mut all = vec!["status", "--now", &now];
        all.extend_from_slice(args);
        let out = run_ours(&conf, &all);
        (out.status.code(), text(&out.stdout))
    }

    fn run(&self, sim: &Sim, args: &[&str]) -> std::process::Output {
        self.run_with(sim, "secret", args)
    }

    fn run_with(&self, sim: &Sim, password: &str, args: &[&str]) -> std::process::Output {
        let conf = self.conf(sim, password);
        let to = self.to.to_string();
        let mut all = vec!["--extract-to", &to];
        all.extend_from_slice(args);
        tokio::task::block_in_place(|| run_ours(&conf, &all))
    }
}

/// Records of `project` in the spool, by type (LocalGroupId, LocalGroup or
/// sr LocalGroup; accelerators by their VM).
fn spooled_of(records: &Value, project: &str) -> Vec<(&'static str, u64)> {
    let mut v = Vec::new();
    for kind in ["cloud", "ip", "storage"] {
        let n = records[kind]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| {
                r.get("LocalGroupId")
                    .or_else(|| r.get("LocalGroup"))
                    .or_else(|| r.get("SubjectIdentity/LocalGroup"))
                    .and_then(Value::as_str)
                    == Some(project)
            })
            .count();
        if n > 0 {
            v.push((kind, n as u64));
        }
    }
    // Accelerator records name no project: they follow their VM's.
    let vms: Vec<&Value> = records["cloud"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["LocalGroupId"] == project)
        .map(|r| &r["VMUUID"])
        .collect();
    let n = records["accelerator"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| vms.contains(&&r["AssociatedRecord"]))
        .count();
    if n > 0 {
        v.push(("accelerator", n as u64));
    }
    v
}

fn common_fields(r: &Value, outcome: &str) {
    assert_eq!(r["schema"], 1, "{r:#}");
    assert_eq!(r["program"], "caso-extract");
    assert_eq!(r["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(r["outcome"], outcome, "{r:#}");
    let started = Timestamp::parse(r["started"].as_str().unwrap()).unwrap();
    let ended = Timestamp::parse(r["ended"].as_str().unwrap()).unwrap();
    assert!(started <= ended, "{r:#}");
    assert!(Timestamp::now().unix_seconds() - started.unix_seconds() < 600);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clean_run_reports_every_project_with_the_summarys_counts() {
    let mut site = Site::new();
    let (sim, projects, to) = start_sim(site.dir.path(), &[]).await;
    site.projects = projects;
    site.to = to;

    // A dry run writes nothing, its report included; nor do the checks.
    for args in [&["--dry-run"][..], &["--check"], &["--print-config"]] {
        let out = site.run(&sim, args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(!site.report_path().exists(), "{args:?}");
    }

    let out = site.run(&sim, &[]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let r = site.report();
    common_fields(&r, "ok");
    let records = spool_records(&site.dir.path().join("ours/outgoing"));
    let entries = r["projects"].as_array().unwrap();
    let mut ids: Vec<&str> = entries.iter().map(|p| p["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    let mut want: Vec<&str> = site.projects.iter().map(String::as_str).collect();
    want.sort_unstable();
    assert_eq!(ids, want);
    let (mut messages, mut spooled) = (0, 0);
    for p in entries {
        let id = p["id"].as_str().unwrap();
        assert_eq!(p["period"]["from"], BEFORE, "{p}");
        assert_eq!(p["period"]["to"], to.to_string(), "{p}");
        assert_eq!(p["lastrun"], to.add_seconds(1).to_string(), "{p}");
        assert_eq!(p["errors"], serde_json::json!([]), "{p}");
        let by_type: Vec<(&str, u64)> = p["records"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, n)| n.as_u64() != Some(0))
            .map(|(k, n)| (k.as_str(), n.as_u64().unwrap()))
            .collect();
        let mut want = spooled_of(&records, id);
        let mut got = by_type.clone();
        want.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, want, "{id}: records extracted = records spooled");
        assert!(p["messages"].as_u64().unwrap() > 0, "{p}");
        messages += p["messages"].as_u64().unwrap();
        spooled += p["records_spooled"].as_u64().unwrap();
    }
    // The summary line says the same.
    let line = format!("3/3 projects ok, {messages} messages ({spooled} records) spooled");
    assert!(err.contains(&line), "{line:?} not in:\n{err}");
    let q = &r["requests"];
    let total: u64 = ["identity", "compute", "image", "volume", "network"]
        .iter()
        .map(|s| q[s].as_u64().unwrap())
        .sum();
    assert!(
        err.contains(&format!(
            "OpenStack: {total} requests (keystone {} of which {} token, nova {},",
            q["identity"], q["tokens"], q["compute"]
        )),
        "{q} vs\n{err}"
    );
    assert!(q["compute"].as_u64().unwrap() > 0, "{q}");
    assert_eq!(q["prometheus"], 0, "{q}");
    // Replaced, not left beside: only the report and lastrun files.
    let tmp: Vec<_> = std::fs::read_dir(site.spooldir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(tmp.is_empty(), "{tmp:?}");

    // status reads this report: every project ok, the probe OK.
    let later = to.add_seconds(3600);
    let (code, line) = site.status(later, &["--check"]);
    assert_eq!(code, Some(0), "{line}");
    assert!(
        line.starts_with("OK - 3 projects, oldest lastrun 59m59s ago; last run ok "),
        "{line}"
    );
    let (code, json) = site.status(later, &["--json"]);
    assert_eq!(code, Some(0), "{json}");
    let st: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(st["last_run"]["outcome"], "ok", "{st:#}");
    assert_eq!(st["queue"]["messages"].as_u64(), Some(messages), "{st:#}");
    for p in st["projects"].as_array().unwrap() {
        assert_eq!(p["outcome"], "ok", "{p}");
        assert_eq!(p["period"]["from"], BEFORE, "{p}");
        assert_eq!(p["lastrun_age_seconds"], 3599, "{p}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_project_makes_a_partial_report_listing_its_error() {
    let mut site = Site::new();
    // The project ids come from the seed: read them from a first instance.
    let (probe, projects, to) = start_sim(site.dir.path(), &[]).await;
    drop(probe);
    let bad = projects[1].clone();
    let fault = format!("5xx=503:path=/compute/v2.1/servers/detail:project={bad}");
    let (sim, _, _) = start_sim(site.dir.path(), &["--fault", &fault]).await;
    site.projects = projects;
    site.to = to;

    let out = site.run(&sim, &[]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let r = site.report();
    common_fields(&r, "partial");
    for p in r["projects"].as_array().unwrap() {
        if p["id"] == bad.as_str() {
            assert_eq!(p["lastrun"], Value::Null, "{p}");
            let errors = p["errors"].as_array().unwrap();
            assert!(!errors.is_empty(), "{p}");
            for e in errors {
                assert_eq!(e["object"], "nova servers", "{e}");
                let cause = e["cause"].as_str().unwrap();
                assert!(cause.contains("HTTP 503"), "{e}");
                // The summary names the same failure.
                assert!(
                    err.contains(&format!("project {bad}: nova servers: {cause}")),
                    "{e} vs\n{err}"
                );
                assert!(!cause.contains("secret"), "{e}");
            }
        } else {
            assert_eq!(p["errors"], serde_json::json!([]), "{p}");
            assert_eq!(p["lastrun"], to.add_seconds(1).to_string(), "{p}");
        }
    }
    assert!(
        r["projects"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["id"] == bad.as_str()),
        "the failed project is listed: {r:#}"
    );

    // status names the failed project and its error; the probe is
    // CRITICAL, as that project's lastrun is still at BEFORE.
    let (code, json) = site.status(to, &["--json"]);
    assert_eq!(code, Some(0), "{json}");
    let st: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(st["last_run"]["outcome"], "partial", "{st:#}");
    assert_eq!(st["last_run"]["failed_projects"], 1, "{st:#}");
    let p = st["projects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == bad.as_str())
        .unwrap();
    assert_eq!(p["outcome"], "failed", "{p}");
    assert_eq!(p["lastrun"], BEFORE, "{p}");
    assert!(
        p["error"].as_str().unwrap().starts_with("nova servers: "),
        "{p}"
    );
    let (code, line) = site.status(to, &["--check"]);
    assert_eq!(code, Some(2), "{line}");
    assert!(
        line.starts_with(&format!("CRITICAL - project {bad} last extracted ")),
        "{line}"
    );
    assert!(line.contains("; last run partial: "), "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_mid_run_leaves_the_previous_report_intact() {
    let mut site = Site::new();
    let (sim, projects, to) = start_sim(site.dir.path(), &[]).await;
    site.projects = projects;
    site.to = to;
    let out = site.run(&sim, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let before = std::fs::read(site.report_path()).unwrap();
    drop(sim);

    // The same data, every request slow: the run is killed while it runs.
    let (slow, _, _) = start_sim(site.dir.path(), &["--latency", "200ms"]).await;
    let conf = site.conf(&slow, "secret");
    let mut child = Command::new(env!("CARGO_BIN_EXE_caso-extract"))
        .arg("--config-file")
        .arg(&conf)
        .args(["--extract-to", &to.to_string()])
        .env_remove("CASO_LOCK_PATH")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        let stats = slow.stats().await;
        if stats["by_endpoint"]["compute GET servers/detail"].as_u64() >= Some(1) {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        assert!(start.elapsed() < Duration::from_secs(60), "no extraction");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(child.try_wait().unwrap().is_none(), "the run ended early");
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    let after = std::fs::read(site.report_path()).unwrap();
    assert_eq!(after, before, "the previous report changed");
    let r: Value = serde_json::from_slice(&after).unwrap();
    common_fields(&r, "ok");
}

/// A report that cannot be written (a directory in its place) is a warning:
/// the run still exits 0 with its records spooled and lastruns advanced.
#[tokio::test(flavor = "multi_thread")]
async fn an_unwritable_report_is_a_warning_not_a_failure() {
    let mut site = Site::new();
    let (sim, projects, to) = start_sim(site.dir.path(), &[]).await;
    site.projects = projects;
    site.to = to;
    std::fs::create_dir_all(site.report_path()).unwrap();
    let out = site.run(&sim, &[]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let warning = err
        .lines()
        .find(|l| l.contains("cannot rename into place run report"))
        .unwrap_or_else(|| panic!("no warning:\n{err}"));
    assert!(warning.contains("WARN"), "{warning}");
    assert!(err.contains("3/3 projects ok"), "{err}");
    for p in &site.projects {
        assert_eq!(
            lastrun::read(&site.spooldir(), p).unwrap(),
            Some(to.add_seconds(1))
        );
    }
    assert!(site.report_path().is_dir());
}

/// Credentials Keystone rejects: nothing done, "failed" with the reason,
/// which names no password.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_that_does_nothing_reports_failed_with_its_error() {
    let mut site = Site::new();
    let (sim, projects, to) = start_sim(site.dir.path(), &[]).await;
    site.projects = projects;
    site.to = to;
    let out = site.run_with(&sim, "wrong-pass-7f3a", &[]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let r = site.report();
    common_fields(&r, "failed");
    assert_eq!(r["projects"], serde_json::json!([]), "{r:#}");
    let error = r["error"].as_str().unwrap();
    assert!(error.contains("401") || error.contains("reject"), "{error}");
    assert!(!error.contains("wrong-pass-7f3a"), "{error}");
    assert!(r["requests"]["identity"].as_u64().is_some(), "{r:#}");
}
