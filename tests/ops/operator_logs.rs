//! The log an operator reads every hour (issue 18, points 11 and 12), from
//! the real `caso-extract` against the OpenStack simulator: no module paths
//! at INFO, each project's name and id once per line, and one honest summary
//! line ending every run (all ok, a failed project, an unwritable spool, a
//! dry run). ssmsend's are in tests/send/ams.rs, a stopped run's in
//! tests/hostile/signals.rs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::support::extract;
use crate::support::sim::Sim;

struct Site {
    dir: tempfile::TempDir,
    conf: PathBuf,
}

impl Site {
    async fn new(sim: &Sim) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let voms = sim.get_json("/_sim/voms.json").await;
        std::fs::write(dir.path().join("voms.json"), voms.to_string()).unwrap();
        let conf = extract::write_conf(
            dir.path(),
            &sim.auth_url(),
            &dir.path().join("voms.json"),
            "secret",
            "project_domain_name = Default",
        );
        Site { dir, conf }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn run(&self, args: &[&str]) -> (Option<i32>, String) {
        let out = extract::run_ours(&self.conf, args);
        (out.status.code(), stderr(&out))
    }

    /// Elements in the APEL spool.
    fn spooled(&self) -> usize {
        cloud_accounting::spool::Queue::open(
            &self.path("outgoing"),
            cloud_accounting::spool::Layout::Dirq,
        )
        .map_or(0, |q| q.count().unwrap())
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn last_line(log: &str) -> &str {
    log.lines().last().unwrap_or("")
}

/// (id, name) of the projects a run extracts.
async fn projects(sim: &Sim) -> Vec<(String, String)> {
    sim.manifest().await["projects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["accounted"] == true)
        .map(|p| {
            (
                p["id"].as_str().unwrap().to_owned(),
                p["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Every line: no module path, no `project{...}` span syntax, and a line
/// that names a project names it once as `project NAME (ID)`, with no field
/// repeating the id (a request path in a message may hold it: it names the
/// request).
fn assert_operator_lines(log: &str, projects: &[(String, String)]) {
    for line in log.lines() {
        assert!(!line.contains("cloud_accounting::"), "module path: {line}");
        assert!(!line.contains("project{"), "span syntax: {line}");
        assert!(!line.contains("project="), "repeated field: {line}");
        for (id, name) in projects {
            // The failure recap (`N project(s) failed ...` and a line per
            // failure) names failures as the error message does; the
            // summary's cause may quote a request path.
            if !line.contains(id.as_str())
                || line.contains("project(s) failed")
                || line.contains(" projects ok, ")
                || line.starts_with("  project ")
            {
                continue;
            }
            let label = format!("project {name} ({id}): ");
            assert_eq!(line.matches(&label).count(), 1, "no label once: {line}");
            let rest = line.replacen(&label, "", 1);
            assert!(
                !rest.contains(&format!("={id}")) && !rest.contains(&format!("\"{id}\"")),
                "the id again as a field: {line}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn all_ok_text_lines_and_summary() {
    let sim = Sim::start(&["--scenario", "S"]);
    let projects = projects(&sim).await;
    let site = Site::new(&sim).await;
    let (code, log) = site.run(&[]);
    assert_eq!(code, Some(0), "{log}");
    assert_operator_lines(&log, &projects);
    for (id, name) in &projects {
        assert!(
            log.contains(&format!(
                "INFO project {name} ({id}): no lastrun file, extracting from 1970-01-01"
            )),
            "{log}"
        );
    }
    let n = projects.len();
    let messages = site.spooled();
    assert!(messages > 0);
    let want = format!("INFO {n}/{n} projects ok, {messages} messages (");
    assert!(last_line(&log).contains(&want), "want {want:?}:\n{log}");
    assert!(last_line(&log).ends_with(" records) spooled"), "{log}");
    assert!(!log.contains("run finished"), "{log}");
}

/// JSON keeps the structure: span fields name the project, the summary line
/// carries its counts, which match the spool.
#[tokio::test(flavor = "multi_thread")]
async fn json_lines_keep_span_and_summary_fields() {
    let sim = Sim::start(&["--scenario", "S"]);
    let projects = projects(&sim).await;
    let site = Site::new(&sim).await;
    let (code, log) = site.run(&["--log-format", "json"]);
    assert_eq!(code, Some(0), "{log}");
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    for (id, name) in &projects {
        assert!(
            lines.iter().any(|l| l["span"]["name"] == "project"
                && l["span"]["project_id"] == id.as_str()
                && l["span"]["project_name"] == name.as_str()),
            "no line in the span of {id}:\n{log}"
        );
    }
    let last = lines.last().unwrap();
    assert_eq!(last["target"], "summary", "{last}");
    let f = &last["fields"];
    assert_eq!(f["projects"], projects.len(), "{last}");
    assert_eq!(f["ok"], projects.len(), "{last}");
    assert_eq!(f["failed"], 0, "{last}");
    assert_eq!(f["messages"], site.spooled(), "{last}");
    assert_eq!(
        f["records"], f["records_extracted"],
        "ssm takes every type: {last}"
    );
    assert_eq!(f["dry_run"], false, "{last}");
}

/// Debug level shows module paths (for developers).
#[tokio::test(flavor = "multi_thread")]
async fn module_paths_only_at_debug() {
    let sim = Sim::start(&["--scenario", "S"]);
    let site = Site::new(&sim).await;
    let (code, log) = site.run(&["--debug", "--dry-run"]);
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains(" cloud_accounting::extract: "), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_summary_says_nothing_was_spooled() {
    let sim = Sim::start(&["--scenario", "S"]);
    let n = projects(&sim).await.len();
    let site = Site::new(&sim).await;
    let out = extract::run_ours(&site.conf, &["--dry-run"]);
    let log = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert_eq!(site.spooled(), 0);
    // What the dry run printed is what a real run spools.
    let (code, real) = site.run(&[]);
    assert_eq!(code, Some(0), "{real}");
    let printed = site.spooled();
    assert!(printed > 0);
    let line = last_line(&log);
    assert!(
        line.contains(&format!("INFO {n}/{n} projects ok, {printed} messages ("))
            && line.ends_with(" records) printed (dry run: nothing spooled)"),
        "{log}"
    );
    let records = |l: &str| {
        let after = l.split(" messages (").nth(1)?;
        after.split(" records)").next().map(str::to_owned)
    };
    assert_eq!(
        records(line),
        records(last_line(&real)),
        "dry run:\n{log}\nreal run:\n{real}"
    );
}

/// One project's usage report is refused: the summary counts it failed and
/// says why, the others' messages spooled; exit 1, the line is not repeated.
#[tokio::test(flavor = "multi_thread")]
async fn partial_failure_summary() {
    let probe = Sim::start(&["--scenario", "S"]);
    let projects = projects(&probe).await;
    drop(probe);
    let (bad_id, bad_name) = &projects[0];
    let fault = format!("5xx=503:path=/compute/v2.1/os-simple-tenant-usage:project={bad_id}");
    let sim = Sim::start(&["--scenario", "S", "--fault", &fault]);
    let site = Site::new(&sim).await;
    let (code, log) = site.run(&[]);
    assert_eq!(code, Some(1), "{log}");
    assert_operator_lines(&log, &projects);
    assert!(
        log.contains(&format!(
            "ERROR project {bad_name} ({bad_id}): nova usage report: "
        )),
        "{log}"
    );
    let n = projects.len();
    let line = last_line(&log);
    let want = format!(
        "ERROR {}/{n} projects ok, 1 failed (nova usage report: ",
        n - 1
    );
    assert!(line.contains(&want), "want {want:?}:\n{log}");
    assert!(
        line.contains(&format!("{} messages (", site.spooled())),
        "{log}"
    );
    assert_eq!(log.matches(&want).count(), 1, "summary repeated:\n{log}");
}

fn chown_nobody(p: &Path) {
    if crate::support::is_root() {
        let st = Command::new("chown")
            .arg("-R")
            .arg("65534:65534")
            .arg(p)
            .status()
            .unwrap();
        assert!(st.success());
    }
}

/// The spool itself is not writable: the run's last line is the one error
/// saying nothing was extracted (no summary claiming records).
#[tokio::test(flavor = "multi_thread")]
async fn unwritable_spool_ends_with_one_error() {
    let sim = Sim::start(&["--scenario", "S"]);
    let site = Site::new(&sim).await;
    std::fs::create_dir_all(site.path("outgoing")).unwrap();
    chown_nobody(site.dir.path());
    use std::os::unix::fs::PermissionsExt;
    if crate::support::is_root() {
        let st = Command::new("chown")
            .arg("0:0")
            .arg(site.path("outgoing"))
            .status()
            .unwrap();
        assert!(st.success());
    }
    std::fs::set_permissions(
        site.path("outgoing"),
        std::fs::Permissions::from_mode(0o555),
    )
    .unwrap();
    let out = extract::run_ours_as_nobody(&site.conf);
    let log = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    let line = last_line(&log);
    assert!(
        line.contains(" ERROR [ssm] output_path (the APEL spool) ")
            && line.ends_with("nothing was extracted"),
        "{log}"
    );
    assert!(!log.contains("projects ok"), "{log}");
}

/// The spool's root is writable but the directory the messages go to is
/// not (found only when adding): every project fails, nothing is spooled,
/// and the summary says so and why.
#[tokio::test(flavor = "multi_thread")]
async fn spool_failing_midway_summary_counts_nothing_spooled() {
    if !crate::support::is_root() {
        eprintln!("needs root to run as nobody: skipped");
        return;
    }
    let sim = Sim::start(&["--scenario", "S"]);
    let n = projects(&sim).await.len();
    let site = Site::new(&sim).await;
    let outgoing = site.path("outgoing");
    std::fs::create_dir_all(&outgoing).unwrap();
    chown_nobody(site.dir.path());
    // dirq's intermediate directories (one per minute) for the next minutes,
    // root's and read-only.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    use std::os::unix::fs::PermissionsExt;
    for m in 0..5 {
        let t = now - now % 60 + m * 60;
        let d = outgoing.join(format!("{t:08x}"));
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o555)).unwrap();
    }
    let out = extract::run_ours_as_nobody(&site.conf);
    let log = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    let line = last_line(&log);
    let want = format!(
        "ERROR 0/{n} projects ok, {n} failed (ssm spool {}: ",
        outgoing.display()
    );
    assert!(line.contains(&want), "want {want:?}:\n{log}");
    assert!(line.contains("Permission denied"), "{log}");
    assert!(line.ends_with(", nothing spooled"), "{log}");
}
