//! The extraction run against the in-test OpenStack mock: project discovery,
//! concurrency, messengers, lastrun handling, faults and the cASO defects
//! that show only end to end.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::Arc;

use clap::Parser;
use cloud_accounting::cli::extract::CasoCli;
use cloud_accounting::config::{self, caso::CasoSettings};
use cloud_accounting::daemon::Shutdown;
use cloud_accounting::extract::messenger::{BoxError, LastrunFiles, MessageSink};
use cloud_accounting::extract::{self, Report, Stores};
use cloud_accounting::lastrun;
use cloud_accounting::record::Message;
use cloud_accounting::spool::{Layout, Queue};
use cloud_accounting::time::Timestamp;
use serde_json::{Value, json};

use crate::support::openstack_mock as mock;
use crate::support::openstack_mock::Mock;

const NOW: &str = "2026-11-30T00:00:00Z";
const A: &str = "0a000000-0000-4000-8000-000000000001";
const B: &str = "0b000000-0000-4000-8000-000000000002";
const C: &str = "0c000000-0000-4000-8000-000000000003";
const OLD: &str = "0d000000-0000-4000-8000-000000000004";
const VOL_DEMO: &str = "1a000000-0000-4000-8000-000000000001";
const VOL_OTHER: &str = "1b000000-0000-4000-8000-000000000002";

fn now() -> Timestamp {
    Timestamp::parse(NOW).unwrap()
}

/// p-demo: A running, B deleted on Nov 25, OLD running and unchanged since
/// October (only the usage report names it); a volume without a name; an
/// IPv4 and an IPv6 floating IP. p-other: C running, a volume, one IPv4.
fn populate(mock: &Mock) {
    mock.with(|s| {
        let mut b = mock::server(B, "p-demo");
        b["status"] = json!("DELETED");
        b["OS-SRV-USG:terminated_at"] = json!("2026-11-25T00:00:00.000000");
        b["updated"] = json!("2026-11-25T00:00:00Z");
        let mut old = mock::server(OLD, "p-demo");
        old["created"] = json!("2026-10-01T00:00:00Z");
        old["updated"] = json!("2026-10-01T00:05:00Z");
        s.servers = vec![
            mock::server(A, "p-demo"),
            b,
            old,
            mock::server(C, "p-other"),
        ];
        s.volumes = vec![
            mock::volume(VOL_DEMO, "p-demo"),
            mock::volume(VOL_OTHER, "p-other"),
        ];
        s.fips = vec![
            mock::fip("f1", "p-demo", "192.0.2.1"),
            mock::fip("f2", "p-demo", "2001:db8::1"),
            mock::fip("f3", "p-other", "192.0.2.3"),
        ];
    });
}

struct Env {
    mock: Mock,
    dir: tempfile::TempDir,
}

impl Env {
    async fn new() -> Env {
        let mock = Mock::start().await;
        populate(&mock);
        Env {
            mock,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, rel: &str) -> std::path::PathBuf {
        self.dir.path().join(rel)
    }

    /// caso.conf for this mock; `default` and `auth` lines are appended to
    /// their sections.
    fn conf(&self, default: &str, auth: &str) -> String {
        let d = self.dir.path().display();
        let auth = if auth.is_empty() {
            "auth_type = password\nusername = caso\nuser_domain_name = Default\npassword = s3cret"
        } else {
            auth
        };
        format!(
            "[DEFAULT]\nsite_name = TEST-SITE\nspooldir = {d}/spool\nlock_path = {d}/lock\n\
             mapping_file = {d}/voms.json\nmessengers = ssm\nprojects = other\n{default}\n\
             [ssm]\noutput_path = {d}/outgoing\n\
             [keystone_auth]\nauth_url = {}/identity/\ntimeout = 5\nconnect_retries = 1\nretry_backoff = 1\n{auth}\n",
            self.mock.base
        )
    }

    fn settings(&self, default: &str, auth: &str) -> CasoSettings {
        let path = self.path("caso.conf");
        std::fs::write(&path, self.conf(default, auth)).unwrap();
        let cli =
            CasoCli::try_parse_from(["caso-extract", "--config-file", path.to_str().unwrap()])
                .unwrap();
        CasoSettings::from_effective(&config::load_caso(&cli.sources()).unwrap()).unwrap()
    }

    async fn run(&self, settings: &CasoSettings) -> (anyhow::Result<Report>, String) {
        let stores = extract::open_stores(settings).unwrap();
        self.run_with(settings, stores).await
    }

    async fn run_with(
        &self,
        settings: &CasoSettings,
        stores: Stores,
    ) -> (anyhow::Result<Report>, String) {
        let mut out = Vec::new();
        let r = extract::run(settings, stores, now(), &mut out, &Shutdown::new()).await;
        (r, String::from_utf8(out).unwrap())
    }

    fn spool(&self) -> Vec<String> {
        let q = Queue::open(&self.path("outgoing"), Layout::Dirq).unwrap();
        q.elements()
            .unwrap()
            .iter()
            .map(|id| {
                assert!(q.lock(id).unwrap());
                let text = String::from_utf8(q.get(id, 1_000_000).unwrap()).unwrap();
                q.unlock(id).unwrap();
                text
            })
            .collect()
    }

    fn lastrun(&self, project: &str) -> Option<Timestamp> {
        lastrun::read(&self.path("spool"), project).unwrap()
    }
}

fn next_from() -> Timestamp {
    now().add_seconds(1)
}

/// The random IP record uuids, masked.
fn masked(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("\"uuid\": \"") {
        let start = i + "\"uuid\": \"".len();
        out.push_str(&rest[..start]);
        out.push_str("<uuid>");
        rest = &rest[start + 36..];
    }
    out.push_str(rest);
    out
}

#[tokio::test]
async fn a_run_spools_every_project_then_advances_its_lastrun() {
    let env = Env::new().await;
    let (report, out) = env.run(&env.settings("", "")).await;
    let report = report.unwrap();
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert!(out.is_empty());
    let ids: Vec<&str> = report.projects.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["p-demo", "p-other"], "configured by name + tagged");
    assert_eq!(env.lastrun("p-demo"), Some(next_from()));
    assert_eq!(env.lastrun("p-other"), Some(next_from()));
    let text = std::fs::read_to_string(lastrun::path(&env.path("spool"), "p-demo")).unwrap();
    assert_eq!(text, "2026-11-30 00:00:01+00:00", "cASO's format");

    let spool = env.spool();
    let all = spool.join("\n");
    // Per project in project order: cloud, ip, storage.
    assert!(
        spool[0].starts_with("APEL-cloud-message: v0.4\n"),
        "{}",
        spool[0]
    );
    for vm in [A, B, OLD, C] {
        assert!(all.contains(&format!("VMUUID: {vm}\n")), "{vm}: {all}");
    }
    assert!(all.contains("FQAN: vo.demo.example\n"));
    assert!(all.contains("FQAN: vo.other.example\n"));
    assert!(all.contains("GlobalUserName: alice\n"));
    assert!(all.contains("ImageId: https://appdb/i1\n"));
    // Defect 6: volumes without a name are reported.
    assert!(
        all.contains(&format!("sr:recordId=\"{VOL_DEMO}\"")),
        "{all}"
    );
    assert!(all.contains(&format!("sr:recordId=\"{VOL_OTHER}\"")));
    // Defect 8: storage EndTime is extract_to.
    assert!(
        all.contains("<sr:EndTime>2026-11-30T00:00:00</sr:EndTime>"),
        "{all}"
    );
    // Defect 1: an IPv4 and an IPv6 record for p-demo, one IPv4 for p-other.
    let ip: Vec<&String> = spool.iter().filter(|m| m.contains("Public IP")).collect();
    assert_eq!(ip.len(), 2);
    assert!(
        ip[0].contains("\"IPVersion\": 4, \"IPCount\": 1"),
        "{}",
        ip[0]
    );
    assert!(
        ip[0].contains("\"IPVersion\": 6, \"IPCount\": 1"),
        "{}",
        ip[0]
    );
    assert!(ip[1].contains("\"LocalGroup\": \"p-other\""));
    // Defect 9: volumes listed without changes-since; defect 2: floating
    // IPs filtered by project.
    for s in env.mock.seen_ending("/volumes/detail") {
        assert_eq!(s.q("changes-since"), None);
    }
    for s in env.mock.seen_ending("/floatingips") {
        assert!(s.q("project_id").is_some());
    }
}

/// Defect 12: one token per project (plus the login and the system scope),
/// each user read once per run, no `GET /servers/{id}` for servers only the
/// usage report names (one listing instead).
#[tokio::test]
async fn requests_are_shared_across_projects() {
    let env = Env::new().await;
    let (report, _) = env.run(&env.settings("projects = p-other", "")).await;
    let report = report.unwrap();
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(env.mock.token_posts(), 4, "login, system, p-demo, p-other");
    assert_eq!(report.requests.tokens, 4);
    assert_eq!(env.mock.seen_ending("/users/u-alice").len(), 1);
    let server_gets = env
        .mock
        .seen()
        .iter()
        .filter(|s| s.path.contains("/servers/") && !s.path.ends_with("/detail"))
        .count();
    assert_eq!(server_gets, 0);
    assert_eq!(env.mock.seen_ending("/images/i1").len(), 1);
    println!("two projects: {}", report.requests);
    assert!(report.requests.total() < 30, "{}", report.requests);
}

/// Republishing a past period (`extract_from`/`extract_to`) spools its
/// records but never moves a later lastrun back (cASO writes the past
/// date, so its next run extracts again what later runs did).
#[tokio::test]
async fn a_past_period_extracted_again_never_moves_a_lastrun_back() {
    let env = Env::new().await;
    let later = now().add_seconds(-3600);
    std::fs::create_dir_all(env.path("spool")).unwrap();
    lastrun::write(&env.path("spool"), "p-demo", later).unwrap();
    let settings = env.settings(
        "extract_from = 2026-11-01T00:00:00Z\nextract_to = 2026-11-20T00:00:00Z",
        "",
    );
    let (report, _) = env.run(&settings).await;
    let report = report.unwrap();
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(env.lastrun("p-demo"), Some(later), "kept");
    assert_eq!(
        env.lastrun("p-other"),
        Timestamp::parse("2026-11-20T00:00:01Z").ok(),
        "no later lastrun: moves forward as before"
    );
    let demo = report.projects.iter().find(|p| p.id == "p-demo").unwrap();
    assert_eq!(demo.lastrun, None);
    assert!(demo.messages > 0, "the past period's records are spooled");
}

#[tokio::test]
async fn a_failing_project_keeps_its_lastrun_and_the_run_fails() {
    let env = Env::new().await;
    let before = Timestamp::parse("2026-11-20T00:00:00Z").unwrap();
    std::fs::create_dir_all(env.path("spool")).unwrap();
    lastrun::write(&env.path("spool"), "p-other", before).unwrap();
    env.mock.fault("/os-simple-tenant-usage/p-other", &[403]);
    let (report, _) = env.run(&env.settings("", "")).await;
    let report = report.unwrap();
    assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
    let f = &report.failures[0];
    assert_eq!(
        (f.project.as_str(), f.object.as_str()),
        ("p-other", "nova usage report")
    );
    assert!(f.cause.contains("forbidden"), "{f}");
    assert_eq!(env.lastrun("p-other"), Some(before), "untouched");
    assert_eq!(env.lastrun("p-demo"), Some(next_from()), "the others go on");
    // The other extractors' records of the failed project are still sent
    // (cumulative records: sending them again next run is harmless).
    let all = env.spool().join("\n");
    assert!(all.contains(&format!("sr:recordId=\"{VOL_OTHER}\"")));
    assert!(!all.contains(&format!("VMUUID: {C}")));
    let err = extract::summarize(&report).unwrap_err().to_string();
    assert!(
        err.contains("1 project(s) failed and keep their lastrun (p-other)")
            && err.contains("project p-other: nova usage report: "),
        "{err}"
    );
}

struct BrokenSpool;

impl MessageSink for BrokenSpool {
    fn add_all(&self, _: &[Message]) -> Result<(), BoxError> {
        Err("No space left on device (os error 28)".into())
    }
    fn describe(&self) -> String {
        "/full/disk".into()
    }
}

/// Defect 3: a spool that refuses the messages leaves every lastrun as it
/// was and fails the run.
#[tokio::test]
async fn a_push_failure_keeps_the_lastrun() {
    let env = Env::new().await;
    let settings = env.settings("", "");
    let stores = Stores {
        spool: Some(Arc::new(BrokenSpool)),
        lastrun: Arc::new(LastrunFiles {
            spooldir: env.path("spool"),
        }),
    };
    let (report, _) = env.run_with(&settings, stores).await;
    let report = report.unwrap();
    assert_eq!(report.failures.len(), 2);
    for f in &report.failures {
        assert_eq!(f.object, "ssm spool /full/disk");
        assert!(f.cause.contains("No space left"));
    }
    assert_eq!(env.lastrun("p-demo"), None);
    assert_eq!(env.lastrun("p-other"), None);
    assert!(extract::summarize(&report).is_err());
}

#[tokio::test]
async fn output_is_the_same_whatever_the_concurrency() {
    let env = Env::new().await;
    let mut outputs = Vec::new();
    for c in [1, 8] {
        let s = env.settings(&format!("dry_run = true\nconcurrency = {c}"), "");
        let (report, out) = env.run(&s).await;
        assert!(report.unwrap().failures.is_empty());
        outputs.push(masked(&out));
    }
    assert!(outputs[0].contains(&format!("VMUUID: {C}")));
    assert_eq!(outputs[0], outputs[1]);
}

#[tokio::test]
async fn a_dry_run_prints_and_writes_nothing() {
    let env = Env::new().await;
    let (report, out) = env.run(&env.settings("dry_run = true", "")).await;
    let report = report.unwrap();
    assert!(report.failures.is_empty());
    assert!(report.projects.iter().all(|p| p.lastrun.is_none()));
    assert!(out.starts_with("APEL-cloud-message: v0.4\n"), "{out}");
    assert!(out.contains("<sr:StorageUsageRecords"));
    assert!(!env.path("outgoing").exists());
    assert!(!env.path("spool").exists());
}

/// A Keystone that rejects the password: one clear error, one request.
#[tokio::test]
async fn rejected_credentials_end_the_run_at_once() {
    let env = Env::new().await;
    let s = env.settings(
        "",
        "auth_type = password\nusername = caso\nuser_domain_name = Default\npassword = wrong",
    );
    let (r, _) = env.run(&s).await;
    let err = format!("{:#}", r.unwrap_err());
    assert!(
        err.starts_with("Keystone rejected the credentials in [keystone_auth]"),
        "{err}"
    );
    assert!(!err.contains("wrong"), "no secret in messages: {err}");
    assert_eq!(env.mock.seen().len(), 1);
    assert!(!env.path("outgoing").read_dir().unwrap().any(|_| true));
}

/// Defect 4: names and ids both work; an unknown entry fails only itself.
#[tokio::test]
async fn a_bad_project_entry_fails_only_itself() {
    let env = Env::new().await;
    let (report, _) = env
        .run(&env.settings("projects = other, p-demo, nosuch", ""))
        .await;
    let report = report.unwrap();
    let ids: Vec<&str> = report.projects.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["p-demo", "p-other"]);
    assert_eq!(report.failures.len(), 1);
    assert_eq!(report.failures[0].project, "nosuch");
    assert_eq!(
        report.failures[0].object,
        "keystone project (by id or name)"
    );
    assert_eq!(env.lastrun("p-other"), Some(next_from()));
}

/// Defect 5: no VO anywhere is an error for that project, unless
/// `default_vo` is set; voms.json still maps.
#[tokio::test]
async fn a_project_without_vo_fails_unless_mapped_or_defaulted() {
    let env = Env::new().await;
    env.mock.with(|s| {
        s.project_overrides
            .insert("p-other".into(), json!({"VO": null}))
    });
    let (report, _) = env.run(&env.settings("", "")).await;
    let report = report.unwrap();
    assert_eq!(report.failures.len(), 1);
    assert_eq!(report.failures[0].project, "p-other");
    assert_eq!(report.failures[0].object, "VO mapping");
    assert_eq!(env.lastrun("p-other"), None);
    assert_eq!(env.lastrun("p-demo"), Some(next_from()));

    std::fs::write(
        env.path("voms.json"),
        r#"{"vo.mapped": {"projects": ["other"]}}"#,
    )
    .unwrap();
    let (report, out) = env
        .run(&env.settings("dry_run = true\nextract_from = 2026-11-01", ""))
        .await;
    assert!(report.unwrap().failures.is_empty());
    assert!(out.contains("FQAN: vo.mapped\n"), "{out}");

    std::fs::remove_file(env.path("voms.json")).unwrap();
    let (report, out) = env
        .run(&env.settings(
            "dry_run = true\nextract_from = 2026-11-01\ndefault_vo = vo.default",
            "",
        ))
        .await;
    assert!(report.unwrap().failures.is_empty());
    assert!(out.contains("FQAN: vo.default\n"), "{out}");
}

/// Defect 10: application credentials log in without a scope and extract
/// their own project (and, with an admin role, the tagged ones).
#[tokio::test]
async fn application_credentials_work() {
    let env = Env::new().await;
    env.mock.with(|s| {
        s.servers
            .push(mock::server("0e000000-0000-4000-8000-000000000005", "p-ac"))
    });
    let s = env.settings(
        "projects = ac",
        "auth_type = v3applicationcredential\napplication_credential_id = ac-1\napplication_credential_secret = ac-secret\nproject_name = ignored\nsystem_scope = all",
    );
    let (report, _) = env.run(&s).await;
    let report = report.unwrap();
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    let ids: Vec<&str> = report.projects.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["p-ac", "p-demo"]);
    assert_eq!(env.mock.token_posts(), 1);
    for body in env.mock.with(|s| s.token_bodies.clone()) {
        assert!(body["auth"].get("scope").is_none(), "{body}");
    }
    let all = env.spool().join("\n");
    assert!(all.contains("VMUUID: 0e000000-0000-4000-8000-000000000005"));
    assert!(all.contains(&format!("VMUUID: {A}")));
}

/// Each messenger takes only its record types; Logstash gets one JSON
/// record per line.
#[tokio::test]
async fn messengers_take_their_record_types() {
    let env = Env::new().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        // One connection per project.
        for _ in 0..2 {
            let (conn, _) = listener.accept().unwrap();
            for line in BufReader::new(conn).lines() {
                lines.push(line.unwrap());
            }
        }
        lines
    });
    let s = env.settings(
        &format!(
            "messengers = ssm, logstash, noop\n[messenger_ssm]\nrecord_types = cloud\n\
             [messenger_logstash]\nrecord_types = ip, storage\n[logstash]\nhost = 127.0.0.1\nport = {port}"
        ),
        "",
    );
    let (report, _) = env.run(&s).await;
    assert!(report.unwrap().failures.is_empty());
    let spool = env.spool();
    assert_eq!(spool.len(), 2);
    assert!(spool.iter().all(|m| m.starts_with("APEL-cloud-message")));
    let lines = tokio::task::spawn_blocking(move || reader.join().unwrap())
        .await
        .unwrap();
    let kinds: Vec<String> = lines
        .iter()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["type"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(kinds, ["ip", "ip", "storage", "ip", "storage"], "{lines:?}");
}

/// Logstash down: the project fails with a line naming it, its lastrun stays.
#[tokio::test]
async fn an_unreachable_logstash_fails_the_projects() {
    let env = Env::new().await;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let s = env.settings(
        &format!("messengers = logstash\n[logstash]\nhost = 127.0.0.1\nport = {port}"),
        "",
    );
    let (report, _) = env.run(&s).await;
    let report = report.unwrap();
    assert_eq!(report.failures.len(), 2);
    assert_eq!(
        report.failures[0].object,
        format!("logstash 127.0.0.1:{port}")
    );
    assert_eq!(env.lastrun("p-demo"), None);
}

fn bin_run(env: &Env, args: &[&str], tz: &str) -> std::process::Output {
    let path = env.path("caso.conf");
    std::process::Command::new(env!("CARGO_BIN_EXE_caso-extract"))
        .arg("--config-file")
        .arg(&path)
        .args(args)
        .env("TZ", tz)
        .env_remove("CASO_LOCK_PATH")
        .output()
        .unwrap()
}

/// The binary: exit codes, and defect 7 (times are UTC whatever TZ).
#[tokio::test(flavor = "multi_thread")]
async fn the_binary_is_utc_and_exits_as_documented() {
    let env = Env::new().await;
    std::fs::write(env.path("caso.conf"), env.conf("", "")).unwrap();
    // A fixed end in the past: the binary clamps `to` to its own clock.
    let to = Timestamp::now()
        .add_seconds(-60)
        .truncate_to_second()
        .to_string();
    let args = [
        "--dry-run",
        "--extract-from",
        "2026-11-01T00:00:00Z",
        "--extract-to",
        &to,
    ];
    let mut outs = Vec::new();
    for tz in ["UTC", "Europe/Madrid", "America/Los_Angeles"] {
        let out = tokio::task::block_in_place(|| bin_run(&env, &args, tz));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        outs.push(masked(&String::from_utf8(out.stdout).unwrap()));
    }
    // A created 2026-11-24T10:00:01Z.
    assert!(outs[0].contains("StartTime: 1795514401\n"), "{}", outs[0]);
    assert!(outs[0].contains("<sr:StartTime>2026-11-20T08:00:00</sr:StartTime>"));
    let strip = |s: &str| -> String {
        s.lines()
            .filter(|l| !l.contains("MeasurementTime") && !l.contains("createTime"))
            .collect()
    };
    assert_eq!(strip(&outs[0]), strip(&outs[1]));
    assert_eq!(strip(&outs[0]), strip(&outs[2]));

    env.mock.fault("/os-simple-tenant-usage/p-other", &[403]);
    let out = tokio::task::block_in_place(|| bin_run(&env, &[], "UTC"));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("project p-other: nova usage report:"), "{err}");
    assert!(!Path::new(&lastrun::path(&env.path("spool"), "p-other")).exists());

    std::fs::write(
        env.path("caso.conf"),
        env.conf(
            "",
            "auth_type = password\nusername = caso\nuser_domain_name = Default\npassword = nope",
        ),
    )
    .unwrap();
    let out = tokio::task::block_in_place(|| bin_run(&env, &[], "UTC"));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.matches("Keystone rejected the credentials").count(),
        1,
        "{err}"
    );

    std::fs::write(env.path("caso.conf"), "[DEFAULT]\nsite_name = X\n").unwrap();
    let out = tokio::task::block_in_place(|| bin_run(&env, &[], "UTC"));
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_projects_subcommand_lists_projects_and_vo_sources() {
    let env = Env::new().await;
    env.mock.with(|s| {
        s.project_overrides
            .insert("p-other".into(), json!({"VO": null}))
    });
    std::fs::write(env.path("caso.conf"), env.conf("", "")).unwrap();
    let out = tokio::task::block_in_place(|| bin_run(&env, &["projects"], "UTC"));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "'p-demo' (demo) mapped to VO 'vo.demo.example' (from project property VO)\n\
         'p-other' (other) mapped to no VO (no mapping: extracting it fails)\n"
    );
}

/// Server errors that outlast the retries, and a corrupt lastrun file: each
/// fails its own project with the object named; whatever is spooled is whole.
#[tokio::test]
async fn faults_name_project_and_object() {
    let env = Env::new().await;
    std::fs::create_dir_all(env.path("spool")).unwrap();
    let garbage = lastrun::path(&env.path("spool"), "p-demo");
    std::fs::write(&garbage, "yesterday-ish").unwrap();
    env.mock.fault("p-other/volumes/detail", &[500, 503]);
    let (report, _) = env.run(&env.settings("", "")).await;
    let report = report.unwrap();
    let got: Vec<(&str, &str)> = report
        .failures
        .iter()
        .map(|f| (f.project.as_str(), f.object.as_str()))
        .collect();
    assert_eq!(
        got,
        [("p-demo", "lastrun file"), ("p-other", "cinder volumes")],
        "{:?}",
        report.failures
    );
    assert!(
        report.failures[1].cause.contains("HTTP 503"),
        "{:?}",
        report.failures
    );
    assert_eq!(std::fs::read_to_string(&garbage).unwrap(), "yesterday-ish");
    assert_eq!(env.lastrun("p-other"), None);
    for m in env.spool() {
        assert!(
            m.starts_with("APEL-cloud-message") || m.starts_with('{'),
            "{m}"
        );
        assert!(m.ends_with('\n') || m.ends_with("]}"), "{m}");
    }
}
