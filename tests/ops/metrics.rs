//! The Prometheus metrics of the real binaries: the `--metrics-file` of a
//! `caso-extract` run against the OpenStack simulator and of an `ssmsend`
//! run through the AMS double, each checked by `promtool check metrics`
//! (Debian's `prometheus` package, scripts/setup-prometheus.sh) and sample
//! by sample against the run report and the doubles' own counts; the
//! `/metrics` of a `caso-extract` daemon scraped by a real Prometheus and
//! read back through its HTTP API; the usage errors of `--metrics-listen`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cloud_accounting::lastrun;
use cloud_accounting::time::Timestamp;
use serde_json::Value;

use super::daemon::{read_log, sender_site, sigterm, ssmsend, wait};
use crate::support::ams::{AmsDouble, AmsTestPki};
use crate::support::energy::PrometheusServer;
use crate::support::extract::{run_ours, text, write_conf};
use crate::support::sim::{self, Sim};

/// Every lastrun starts here; cron runs extract up to the manifest's end.
const BEFORE: &str = "2026-09-01T00:00:00Z";

/// Installs Debian's prometheus if needed; `false` (the test is skipped,
/// saying why) only when it cannot be installed.
fn have_prometheus() -> bool {
    match PrometheusServer::install() {
        None => true,
        Some(why) => {
            eprintln!(
                "SKIPPED: Debian's prometheus package cannot be installed here, so there is no promtool or Prometheus:\n{why}"
            );
            false
        }
    }
}

/// `promtool check metrics` on the file: it parses the text format and
/// lints the names, HELP and TYPE lines; any complaint fails the test.
fn promtool_check(path: &Path) {
    let out = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(path).unwrap())
        .output()
        .unwrap();
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics {}: {}\n{said}\n{}",
        path.display(),
        out.status,
        std::fs::read_to_string(path).unwrap()
    );
}

/// The samples of a text exposition: `name{labels}` as written -> value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect()
}

fn get(m: &BTreeMap<String, f64>, key: &str) -> f64 {
    *m.get(key)
        .unwrap_or_else(|| panic!("no sample {key} in {m:#?}"))
}

/// The samples of one metric, by their label text.
fn of<'a>(m: &'a BTreeMap<String, f64>, name: &str) -> BTreeMap<&'a str, f64> {
    m.iter()
        .filter_map(|(k, v)| {
            let rest = k.strip_prefix(name)?;
            (rest.is_empty() || rest.starts_with('{')).then_some((rest, *v))
        })
        .collect()
}

fn ended(report: &Value) -> f64 {
    Timestamp::parse(report["ended"].as_str().unwrap())
        .unwrap()
        .unix_seconds() as f64
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The outcome gauge says `want` and only that.
fn assert_outcome(m: &BTreeMap<String, f64>, program: &str, want: &str) {
    for o in ["ok", "partial", "failed", "stopped"] {
        let key = format!("{program}_last_run_outcome{{outcome=\"{o}\"}}");
        assert_eq!(get(m, &key), f64::from(o == want), "{key}");
    }
}

/// A caso-extract site: scenario S (three accounted projects), seed 1.
struct Site {
    dir: tempfile::TempDir,
    projects: Vec<String>,
    to: Timestamp,
}

impl Site {
    async fn start(extra: &[&str]) -> (Site, Sim) {
        let dir = tempfile::tempdir().unwrap();
        let sim = Site::sim(dir.path(), extra);
        let manifest = sim.manifest().await;
        let site = Site {
            projects: sim::accounted_project_ids(&manifest),
            to: Timestamp::parse(manifest["period"]["to"].as_str().unwrap()).unwrap(),
            dir,
        };
        (site, sim)
    }

    fn sim(dir: &Path, extra: &[&str]) -> Sim {
        let voms = dir.join("voms.json");
        let mut args = vec!["--scenario", "S", "--seed", "1", "--write-voms-json"];
        args.push(voms.to_str().unwrap());
        args.extend_from_slice(extra);
        Sim::start(&args)
    }

    fn spooldir(&self) -> PathBuf {
        self.dir.path().join("ours/spool")
    }

    fn report(&self) -> Value {
        let bytes = std::fs::read(self.spooldir().join("caso-extract.last-run.json")).unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    /// caso.conf for `sim`, every lastrun at [`BEFORE`].
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

/// What the run report says each project extracted: (project, type) -> n.
fn reported_records(report: &Value) -> BTreeMap<(String, String), f64> {
    let mut want = BTreeMap::new();
    for p in report["projects"].as_array().unwrap() {
        for (t, n) in p["records"].as_object().unwrap() {
            let id = p["id"].as_str().unwrap().to_string();
            want.insert((id, t.clone()), n.as_f64().unwrap());
        }
    }
    want
}

fn assert_records(m: &BTreeMap<String, f64>, report: &Value) {
    let want = reported_records(report);
    let got = of(m, "caso_extract_records");
    assert_eq!(got.len(), want.len(), "{got:#?} vs {want:#?}");
    for ((p, t), n) in &want {
        let key = format!("caso_extract_records{{project=\"{p}\",type=\"{t}\"}}");
        assert_eq!(get(m, &key), *n, "{key}");
    }
    assert!(want.values().sum::<f64>() > 0.0, "{report:#}");
}

/// The requests by service add up to the run report's, and by status to
/// what the simulator answered (`extra_200`: its answers to the test).
fn assert_requests(m: &BTreeMap<String, f64>, report: &Value, sim_stats: &Value, extra_200: u64) {
    let (by_service, _) = requests(m);
    for service in ["identity", "compute", "image", "volume", "network"] {
        let want = report["requests"][service].as_f64().unwrap();
        assert_eq!(
            by_service.get(service).copied().unwrap_or(0.0),
            want,
            "{service}: {by_service:#?}"
        );
    }
    assert_statuses(m, sim_stats, extra_200);
}

/// `caso_extract_api_requests_total` summed by service and by status.
fn requests(m: &BTreeMap<String, f64>) -> (BTreeMap<String, f64>, BTreeMap<String, f64>) {
    let mut by_service: BTreeMap<String, f64> = BTreeMap::new();
    let mut by_status: BTreeMap<String, f64> = BTreeMap::new();
    for (labels, n) in of(m, "caso_extract_api_requests_total") {
        let (service, status) = labels
            .strip_prefix("{service=\"")
            .and_then(|r| r.strip_suffix("\"}"))
            .and_then(|r| r.split_once("\",status=\""))
            .unwrap_or_else(|| panic!("labels {labels}"));
        *by_service.entry(service.into()).or_default() += n;
        *by_status.entry(status.into()).or_default() += n;
    }
    (by_service, by_status)
}

/// The requests by status are what the simulator answered (`extra_200`:
/// its answers to the test).
fn assert_statuses(m: &BTreeMap<String, f64>, sim_stats: &Value, extra_200: u64) {
    let (_, by_status) = requests(m);
    let mut want: BTreeMap<String, f64> = sim_stats["by_status"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_f64().unwrap()))
        .collect();
    *want.entry("200".into()).or_default() -= extra_200 as f64;
    want.retain(|_, n| *n > 0.0);
    assert_eq!(by_status, want, "by status, ours vs the simulator's");
}

/// A clean run, then one with a project failing, then one Keystone refuses:
/// each file passes promtool and holds that run's values; a project's last
/// success survives its failures, read back from the previous file.
#[tokio::test(flavor = "multi_thread")]
async fn extract_metrics_file_holds_the_runs_values_and_carries_failed_projects() {
    if !have_prometheus() {
        return;
    }
    let (site, sim) = Site::start(&[]).await;
    let textfile = site.dir.path().join("textfile");
    std::fs::create_dir(&textfile).unwrap();
    let prom = textfile.join("caso-extract.prom");
    let prom_arg = prom.to_str().unwrap();

    // A dry run and the checks write none.
    for args in [&["--dry-run"][..], &["--check"], &["--print-config"]] {
        let mut all = args.to_vec();
        all.extend(["--metrics-file", prom_arg]);
        let out = site.run(&sim, &all);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(!prom.exists(), "{args:?} wrote metrics");
    }

    sim.reset().await;
    let out = site.run(&sim, &["--metrics-file", prom_arg]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    promtool_check(&prom);
    assert_eq!(mode(&prom), 0o644);
    let first = site.report();
    let m = samples(&std::fs::read_to_string(&prom).unwrap());
    let t1 = ended(&first);
    assert_records(&m, &first);
    // The reset's own answer is the simulator's only 200 not to us.
    assert_requests(&m, &first, &sim.stats().await, 1);
    let last_success = of(&m, "caso_extract_last_success_timestamp_seconds");
    assert_eq!(last_success.len(), site.projects.len(), "{last_success:?}");
    for p in &site.projects {
        let key = format!("caso_extract_last_success_timestamp_seconds{{project=\"{p}\"}}");
        assert_eq!(get(&m, &key), t1, "{key}");
    }
    assert_outcome(&m, "caso_extract", "ok");
    assert_eq!(get(&m, "caso_extract_run_failures"), 0.0);
    assert_eq!(get(&m, "caso_extract_runs_total{outcome=\"ok\"}"), 1.0);
    assert_eq!(get(&m, "caso_extract_last_run_timestamp_seconds"), t1);
    let d = get(&m, "caso_extract_run_duration_seconds");
    assert!(d > 0.0 && d < 600.0, "{d}");
    let started = get(&m, "caso_extract_start_time_seconds");
    assert!(started <= t1 && t1 - started < 600.0, "{started} {t1}");
    drop(sim);

    // The next run, a second later: one project's Nova fails. It keeps the
    // last success the previous file holds; the others get this run's end.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let bad = site.projects[1].clone();
    let fault = format!("5xx=503:path=/compute/v2.1/servers/detail:project={bad}");
    let sim = Site::sim(site.dir.path(), &["--fault", &fault]);
    sim.reset().await;
    let out = site.run(&sim, &["--metrics-file", prom_arg]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    promtool_check(&prom);
    let second = site.report();
    assert_eq!(second["outcome"], "partial");
    let m = samples(&std::fs::read_to_string(&prom).unwrap());
    let t2 = ended(&second);
    assert!(t2 > t1);
    for p in &site.projects {
        let key = format!("caso_extract_last_success_timestamp_seconds{{project=\"{p}\"}}");
        assert_eq!(get(&m, &key), if *p == bad { t1 } else { t2 }, "{key}");
    }
    assert_outcome(&m, "caso_extract", "partial");
    let failures: usize = second["projects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["errors"].as_array().unwrap().len())
        .sum();
    assert!(failures > 0);
    assert_eq!(get(&m, "caso_extract_run_failures"), failures as f64);
    // A counter counts the run's own in cron mode.
    assert_eq!(get(&m, "caso_extract_runs_total{outcome=\"partial\"}"), 1.0);
    assert!(
        !m.contains_key("caso_extract_runs_total{outcome=\"ok\"}"),
        "{m:#?}"
    );
    assert_records(&m, &second);
    let stats = sim.stats().await;
    assert!(stats["by_status"]["503"].as_u64() > Some(0), "{stats}");
    assert_requests(&m, &second, &stats, 1);
    assert_eq!(
        get(
            &m,
            "caso_extract_api_requests_total{service=\"compute\",status=\"503\"}"
        ),
        stats["by_status"]["503"].as_f64().unwrap()
    );

    // Keystone refuses the credentials: nothing done, every last success
    // kept, the refusals counted.
    sim.reset().await;
    let out = site.run_with(&sim, "wrong-pass", &["--metrics-file", prom_arg]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    promtool_check(&prom);
    let third = site.report();
    assert_eq!(third["outcome"], "failed");
    let m = samples(&std::fs::read_to_string(&prom).unwrap());
    for p in &site.projects {
        let key = format!("caso_extract_last_success_timestamp_seconds{{project=\"{p}\"}}");
        assert_eq!(get(&m, &key), if *p == bad { t1 } else { t2 }, "{key}");
    }
    assert_outcome(&m, "caso_extract", "failed");
    assert_eq!(get(&m, "caso_extract_run_failures"), 1.0);
    assert_eq!(
        get(&m, "caso_extract_last_run_timestamp_seconds"),
        ended(&third)
    );
    assert!(of(&m, "caso_extract_records").is_empty(), "{m:#?}");
    let stats = sim.stats().await;
    assert!(stats["by_status"]["401"].as_u64() > Some(0), "{stats}");
    assert_statuses(&m, &stats, 1);
    assert_eq!(
        get(
            &m,
            "caso_extract_api_requests_total{service=\"identity\",status=\"401\"}"
        ),
        stats["by_status"]["401"].as_f64().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ssmsend_metrics_file_holds_the_runs_values() {
    if !have_prometheus() {
        return;
    }
    let pki = AmsTestPki::generate();
    let double = AmsDouble::start(&pki, &[]);
    let (dir, queue) = sender_site(&pki, &double, 5);
    let prom = dir.path().join("ssmsend.prom");
    let prom_arg = prom.to_str().unwrap();
    let report_path = dir.path().join("ssmsend.last-run.json");
    let run = |extra: &[&str], log: &str| {
        let mut child = ssmsend(dir.path(), extra, log);
        wait(&mut child, Duration::from_secs(60))
    };

    for args in [&["--dry-run"][..], &["--check"]] {
        let mut all = args.to_vec();
        all.extend(["--metrics-file", prom_arg]);
        let status = run(&all, "check.log");
        assert!(
            status.success(),
            "{args:?}: {}",
            read_log(dir.path(), "check.log")
        );
        assert!(!prom.exists(), "{args:?} wrote metrics");
    }

    let status = run(&["--metrics-file", prom_arg], "first.log");
    assert!(status.success(), "{}", read_log(dir.path(), "first.log"));
    promtool_check(&prom);
    assert_eq!(mode(&prom), 0o644);
    let report: Value = serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    let t1 = ended(&report);
    let m = samples(&std::fs::read_to_string(&prom).unwrap());
    let want_messages = [
        ("sent", 5.0),
        ("rejected", 0.0),
        ("unsent", 0.0),
        ("locked_elsewhere", 0.0),
        ("not_removed", 0.0),
        ("not_a_message", 0.0),
    ];
    assert_eq!(of(&m, "ssmsend_messages_total").len(), want_messages.len());
    for (o, n) in want_messages {
        assert_eq!(
            get(&m, &format!("ssmsend_messages_total{{outcome=\"{o}\"}}")),
            n,
            "{o}"
        );
    }
    assert_eq!(double.stats().await["messages"], 5);
    assert_eq!(get(&m, "ssmsend_queue_depth"), 0.0);
    assert_outcome(&m, "ssmsend", "ok");
    assert_eq!(get(&m, "ssmsend_runs_total{outcome=\"ok\"}"), 1.0);
    assert_eq!(get(&m, "ssmsend_last_success_timestamp_seconds"), t1);
    assert_eq!(get(&m, "ssmsend_last_run_timestamp_seconds"), t1);
    let d = get(&m, "ssmsend_run_duration_seconds");
    assert!(d > 0.0 && d < 600.0, "{d}");
    assert!(
        !m.contains_key("ssmsend_oldest_message_age_seconds"),
        "{m:#?}"
    );

    // One good message, one rejected (not ASCII), one locked by "another
    // sender" (this test): partial; the last success stays the first
    // run's, read back from the file; the locked one is still queued.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let held = queue
        .add(b"APEL-cloud-message: v0.4\nVMUUID: 88888888-0000-4000-8000-000000000000\nSiteName: DAEMON-TEST\n")
        .unwrap();
    assert!(queue.lock(&held).unwrap());
    queue
        .add(b"APEL-cloud-message: v0.4\nVMUUID: 99999999-0000-4000-8000-000000000000\nSiteName: DAEMON-TEST\n")
        .unwrap();
    queue
        .add(b"APEL-cloud-message: v0.4\nSiteName: \xff\n")
        .unwrap();
    let status = run(&["--metrics-file", prom_arg], "second.log");
    assert_eq!(
        status.code(),
        Some(1),
        "{}",
        read_log(dir.path(), "second.log")
    );
    promtool_check(&prom);
    let report: Value = serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    assert_eq!(report["outcome"], "partial", "{report:#}");
    let t2 = ended(&report);
    let m = samples(&std::fs::read_to_string(&prom).unwrap());
    assert_eq!(get(&m, "ssmsend_messages_total{outcome=\"sent\"}"), 1.0);
    assert_eq!(get(&m, "ssmsend_messages_total{outcome=\"rejected\"}"), 1.0);
    assert_eq!(
        get(&m, "ssmsend_messages_total{outcome=\"locked_elsewhere\"}"),
        1.0
    );
    assert_eq!(get(&m, "ssmsend_queue_depth"), 1.0);
    assert_eq!(queue.count().unwrap(), 1);
    let age = get(&m, "ssmsend_oldest_message_age_seconds");
    assert!((0.0..600.0).contains(&age), "{age}");
    assert_outcome(&m, "ssmsend", "partial");
    assert_eq!(get(&m, "ssmsend_runs_total{outcome=\"partial\"}"), 1.0);
    assert_eq!(get(&m, "ssmsend_last_success_timestamp_seconds"), t1);
    assert_eq!(get(&m, "ssmsend_last_run_timestamp_seconds"), t2);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `caso-extract --interval 1h --metrics-listen 127.0.0.1:PORT`: after its
/// first run a real Prometheus scrapes it and answers
/// `caso_extract_records` with the run report's counts; SIGTERM ends the
/// daemon and its server.
#[tokio::test(flavor = "multi_thread")]
async fn a_daemons_metrics_are_scraped_by_a_real_prometheus() {
    if !have_prometheus() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(&["--scenario", "S"]);
    let voms = dir.path().join("voms.json");
    let v = sim.get_json("/_sim/voms.json").await;
    std::fs::write(&voms, v.to_string()).unwrap();
    let conf = write_conf(
        &dir.path().join("ours"),
        &sim.auth_url(),
        &voms,
        "secret",
        "",
    );
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let log = dir.path().join("daemon.log");
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_caso-extract"))
        .arg("--config-file")
        .arg(&conf)
        .args(["--interval", "1h", "--metrics-listen", &addr])
        .env_remove("CASO_LOCK_PATH")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    let start = Instant::now();
    while !log_text().contains("run done, sleeping") {
        assert!(start.elapsed() < Duration::from_secs(60), "{}", log_text());
        assert!(
            daemon.try_wait().unwrap().is_none(),
            "exited: {}",
            log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        log_text().contains(&format!("serving metrics on http://{addr}/metrics")),
        "{}",
        log_text()
    );
    let report: Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("ours/spool/caso-extract.last-run.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(report["outcome"], "ok", "{report:#}");

    // Served as the text format, the values of the run.
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let r = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let m = samples(&r.text().await.unwrap());
    assert_records(&m, &report);
    assert_outcome(&m, "caso_extract", "ok");
    let r = http.get(format!("http://{addr}/")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = http
        .post(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);

    // Scraped by Prometheus, read back through its API.
    let prometheus =
        PrometheusServer::scraping(&dir.path().join("tsdb"), &dir.path().join("prom"), &addr);
    let want = reported_records(&report);
    let query = |q: &'static str| {
        let http = http.clone();
        let url = format!("{}/api/v1/query", prometheus.endpoint());
        async move {
            let v: Value = http
                .get(url)
                .query(&[("query", q)])
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(v["status"], "success", "{v}");
            v["data"]["result"].as_array().unwrap().clone()
        }
    };
    let start = Instant::now();
    let result = loop {
        let result = query("caso_extract_records").await;
        if result.len() == want.len() {
            break result;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "Prometheus has {} series of caso_extract_records, want {}: {result:?}",
            result.len(),
            want.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for s in &result {
        let metric = &s["metric"];
        assert_eq!(metric["job"], "scrape", "{s}");
        assert_eq!(metric["instance"], addr.as_str(), "{s}");
        let key = (
            metric["project"].as_str().unwrap().to_string(),
            metric["type"].as_str().unwrap().to_string(),
        );
        let value: f64 = s["value"][1].as_str().unwrap().parse().unwrap();
        assert_eq!(Some(&value), want.get(&key), "{s}");
    }
    let up = query("up").await;
    assert_eq!(up.len(), 1, "{up:?}");
    assert_eq!(up[0]["value"][1], "1", "{up:?}");
    let ok = query("caso_extract_last_run_outcome").await;
    assert_eq!(ok.len(), 4, "{ok:?}");
    for s in &ok {
        let want = if s["metric"]["outcome"] == "ok" {
            "1"
        } else {
            "0"
        };
        assert_eq!(s["value"][1], want, "{s}");
    }

    sigterm(&daemon);
    let status = wait(&mut daemon, Duration::from_secs(10));
    assert!(status.success(), "exit {status}: {}", log_text());
    assert!(
        std::net::TcpStream::connect(&addr).is_err(),
        "the metrics server outlived the daemon"
    );
    drop(prometheus);
}

/// `--metrics-listen` needs `--interval`; a non-loopback address needs
/// `--metrics-allow-remote`; that needs `--metrics-listen`: usage errors,
/// exit 2, naming the flag.
#[test]
fn metrics_listen_usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let conf = write_conf(
        &d.join("ours"),
        "http://127.0.0.1:9/identity/v3",
        &d.join("voms.json"),
        "secret",
        "",
    );
    let sender = d.join("sender.cfg");
    std::fs::write(
        &sender,
        format!(
            "[sender]\nprotocol: AMS\n[messaging]\ndestination: x\npath: {}/outgoing\n[logging]\nconsole: true\n",
            d.display()
        ),
    )
    .unwrap();
    let port = free_port().to_string();
    let local = format!("127.0.0.1:{port}");
    let any = format!("0.0.0.0:{port}");
    let cases: [(&[&str], &[&str]); 4] = [
        (
            &["--metrics-listen", &local],
            &["--metrics-listen", "--interval"],
        ),
        (
            &["--interval", "1h", "--metrics-listen", &any],
            &["--metrics-listen 0.0.0.0", "--metrics-allow-remote"],
        ),
        (
            &["--interval", "1h", "--metrics-allow-remote"],
            &["--metrics-listen"],
        ),
        (
            &["--interval", "1h", "--metrics-listen", "host.example:1"],
            &["--metrics-listen"],
        ),
    ];
    for (args, said) in cases {
        for program in ["caso-extract", "ssmsend"] {
            let mut cmd = if program == "ssmsend" {
                let mut c = Command::new(env!("CARGO_BIN_EXE_ssmsend"));
                c.arg("--config").arg(&sender);
                c
            } else {
                let mut c = Command::new(env!("CARGO_BIN_EXE_caso-extract"));
                c.arg("--config-file")
                    .arg(&conf)
                    .env_remove("CASO_LOCK_PATH");
                c
            };
            let out = cmd.args(args).output().unwrap();
            let err = text(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{program} {args:?}: {err}");
            for s in said {
                assert!(err.contains(s), "{program} {args:?}: {s:?} not in {err}");
            }
        }
    }
    assert!(
        std::net::TcpListener::bind(&local).is_ok(),
        "nothing listened"
    );
}

/// `ssmsend --interval 1h --metrics-listen`: after its first run `/metrics`
/// says what it sent; SIGTERM ends it and its server.
#[tokio::test(flavor = "multi_thread")]
async fn an_ssmsend_daemon_serves_its_last_runs_metrics() {
    let pki = AmsTestPki::generate();
    let double = AmsDouble::start(&pki, &[]);
    let (dir, queue) = sender_site(&pki, &double, 3);
    let addr = format!("127.0.0.1:{}", free_port());
    let mut daemon = ssmsend(
        dir.path(),
        &["--interval", "1h", "--metrics-listen", &addr],
        "daemon.log",
    );
    let start = Instant::now();
    while !read_log(dir.path(), "daemon.log").contains("run done, sleeping") {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{}",
            read_log(dir.path(), "daemon.log")
        );
        assert!(daemon.try_wait().unwrap().is_none(), "ssmsend exited");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let r = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let m = samples(&r.text().await.unwrap());
    assert_eq!(get(&m, "ssmsend_messages_total{outcome=\"sent\"}"), 3.0);
    assert_eq!(get(&m, "ssmsend_messages_total{outcome=\"unsent\"}"), 0.0);
    assert_eq!(get(&m, "ssmsend_queue_depth"), 0.0);
    assert_eq!(get(&m, "ssmsend_runs_total{outcome=\"ok\"}"), 1.0);
    assert_outcome(&m, "ssmsend", "ok");
    assert_eq!(queue.count().unwrap(), 0);
    assert_eq!(double.stats().await["messages"], 3);
    sigterm(&daemon);
    let status = wait(&mut daemon, Duration::from_secs(10));
    assert!(status.success(), "{}", read_log(dir.path(), "daemon.log"));
    assert!(std::net::TcpStream::connect(&addr).is_err());
}
