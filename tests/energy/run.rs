//! Energy records through the programs, as a site runs them: our
//! `caso-extract` with `extractor = prometheus` and `messengers =
//! greendigit_cim` from a caso.conf that cASO 5.2.2's own `caso-extract`
//! (from the .venv) reads too, both against the OpenStack simulator (demo
//! scenario), one real Prometheus backfilled with power series of the
//! simulator's servers (`energy-series --manifest`), and a GreenDIGIT CIM
//! double each. What each CIM double received is compared record by
//! record: equal except for the named differences of
//! `record::ENERGY_DIFFERENCES`, each checked to occur. Then the other
//! paths: `--dry-run`, energy beside cloud records (ssm and greendigit_cim
//! together), a CIM that fails, a Prometheus that is down or answers
//! garbage, and energy refused for the ssm messenger before any request.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cloud_accounting::record::{CLOUD_TYPE, ENERGY_DIFFERENCES};
use cloud_accounting::time::Timestamp;
use serde_json::{Value, json};

use crate::support::energy::{CimDouble, PrometheusServer, setup_prometheus, take_sums};
use crate::support::extract::{spool_records, text, venv_python};
use crate::support::{examples, root, sim};

/// Two days of the demo scenario's September: servers are deleted in it.
const FROM: &str = "2026-09-14T00:00:00Z";
const TO: &str = "2026-09-16T00:00:00Z";
const EMAIL: &str = "site@example.org";
const PASSWORD: &str = "Pw-e2e-5ecret";
const TOKEN: &str = "Tok-e2e-5ecret";

fn unix(t: &str) -> i64 {
    Timestamp::parse(t).unwrap().unix_micros() / 1_000_000
}

fn cim_double() -> CimDouble {
    CimDouble::start(&["--email", EMAIL, "--password", PASSWORD, "--token", TOKEN])
}

/// caso.conf for the simulator, with the energy sections; `default` lines
/// go to `[DEFAULT]`.
fn conf(dir: &Path, auth_url: &str, voms: &Path, default: &str, energy: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("spool")).unwrap();
    let d = dir.display();
    let text = format!(
        "[DEFAULT]\nsite_name = SIM-SITE\nservice_name = SIM-SITE\n{default}\n\
         spooldir = {d}/spool\nlock_path = {d}/spool\nmapping_file = {}\n\n\
         [keystone_auth]\nauth_type = v3password\nauth_url = {auth_url}\nusername = admin\n\
         password = secret\nuser_domain_name = Default\n\n\
         [ssm]\noutput_path = {d}/outgoing\n\n{energy}",
        voms.display()
    );
    let path = dir.join("caso.conf");
    std::fs::write(&path, text).unwrap();
    path
}

fn energy_sections(prometheus: &str, cim: &str) -> String {
    format!(
        "[prometheus]\nprometheus_endpoint = {prometheus}\n\n\
         [greendigit_cim]\nbase_url = {cim}\nemail = {EMAIL}\npassword = {PASSWORD}\n"
    )
}

fn ours(conf: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_caso-extract"))
        .arg("--config-file")
        .arg(conf)
        .args(["--extract-from", FROM, "--extract-to", TO])
        .args(extra)
        .env("TZ", "UTC")
        .env_remove("CASO_LOCK_PATH")
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn lastruns(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir.join("spool"))
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with("lastrun."))
                .collect()
        })
        .unwrap_or_default()
}

/// cASO 5.2.2's own caso-extract (scripts/run-caso-against-sim.sh: its
/// own simulator, the same data) with the prometheus extractor over
/// [FROM, TO], to `messengers`, `extra` appended to its caso.conf.
fn caso(work: &Path, messengers: &str, extra: &str) -> Output {
    venv_python();
    Command::new(root().join("scripts/run-caso-against-sim.sh"))
        .arg(work)
        .args(["--scenario", "demo"])
        .env("SIM", sim::binary())
        .env("CASO_FROM", FROM)
        .env("CASO_TO", TO)
        .env("CASO_EXTRACTOR", "prometheus")
        .env("CASO_MESSENGERS", messengers)
        .env("CASO_CONF_EXTRA", extra)
        .output()
        .unwrap()
}

fn caso_log(work: &Path) -> String {
    std::fs::read_to_string(work.join("caso.log")).unwrap_or_default()
}

/// Every record the double accepted, by ExecUnitID (each once).
fn accepted(cim: &CimDouble) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for array in cim.received()["accepted"].as_array().unwrap() {
        for r in array.as_array().unwrap() {
            let id = r["ExecUnitID"].as_str().unwrap().to_string();
            assert!(out.insert(id.clone(), r.clone()).is_none(), "{id} twice");
        }
    }
    out
}

/// The simulator, its manifest and a real Prometheus holding power series
/// of its servers over [FROM, TO].
/// Fields drop in order: the servers before `dir`, since Prometheus is
/// stopped through the state directory inside it (dropping `dir` first
/// left one Prometheus running after every test run).
struct Stack {
    sim: sim::Sim,
    manifest: Value,
    voms: PathBuf,
    prom: PrometheusServer,
    dir: tempfile::TempDir,
}

fn stack() -> Option<Stack> {
    if let Some(why) = PrometheusServer::install() {
        eprintln!(
            "SKIPPED: Debian's prometheus package cannot be installed here, so there is no real Prometheus to test against:\n{why}"
        );
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let (voms, manifest_path) = (dir.path().join("voms.json"), dir.path().join("m.json"));
    let sim = sim::Sim::start(&[
        "--scenario",
        "demo",
        "--write-voms-json",
        voms.to_str().unwrap(),
        "--write-manifest",
        manifest_path.to_str().unwrap(),
    ]);
    let manifest: Value = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    let (series, tsdb) = (dir.path().join("s.om"), dir.path().join("tsdb"));
    let status = Command::new(examples::built("energy-series"))
        .arg("--manifest")
        .arg(&manifest_path)
        .args([
            "--from",
            &unix(FROM).to_string(),
            "--to",
            &unix(TO).to_string(),
        ])
        .arg("--out")
        .arg(&series)
        .status()
        .unwrap();
    assert!(status.success());
    setup_prometheus(&[Path::new("backfill"), &series, &tsdb]).unwrap();
    let prom = PrometheusServer::start(&tsdb, &dir.path().join("prom"));
    Some(Stack {
        sim,
        manifest,
        voms,
        prom,
        dir,
    })
}

/// The manifest's server `id`: (status, vCPUs, end if it ended).
fn server(manifest: &Value, id: &str) -> (String, u64, Option<i64>) {
    let s = manifest["projects"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["servers"].as_array().unwrap())
        .find(|s| s["id"] == json!(id))
        .unwrap_or_else(|| panic!("{id} is no server of the simulator"));
    let end = s["expected"]["end"].as_i64().filter(|e| *e > 0);
    (
        s["status"].as_str().unwrap().to_string(),
        s["vcpus"].as_u64().unwrap(),
        end,
    )
}

fn iso(t: i64) -> String {
    Timestamp::from_unix(t).to_string()
}

#[test]
fn energy_through_caso_extract_equals_casos_but_for_the_named_fixes() {
    let Some(st) = stack() else { return };
    let work = st.dir.path();
    let accounted = sim::accounted_project_ids(&st.manifest);

    // cASO 5.2.2's own caso-extract, same simulator data and Prometheus.
    let cim_caso = cim_double();
    let before = st.prom.query_requests();
    let out = caso(
        &work.join("caso"),
        "greendigit_cim",
        &energy_sections(&st.prom.endpoint(), &cim_caso.base()),
    );
    assert!(
        out.status.success(),
        "cASO failed: {}",
        caso_log(&work.join("caso"))
    );
    let caso_requests = st.prom.query_requests() - before;
    let theirs = accepted(&cim_caso);

    // Defect 5: cASO takes energy for the ssm messenger, then fails at push.
    let out = caso(
        &work.join("caso-ssm"),
        "ssm",
        &format!(
            "{}\n[messenger_ssm]\nrecord_types = cloud,energy\n",
            energy_sections(&st.prom.endpoint(), &cim_caso.base())
        ),
    );
    let log = caso_log(&work.join("caso-ssm"));
    assert!(
        log.contains("Unexpected record format"),
        "{:?}\n{log}",
        out.status
    );

    // --dry-run first: the records printed, nothing sent, no lastrun.
    let cim = cim_double();
    let energy = energy_sections(&st.prom.endpoint(), &cim.base());
    let one = work.join("ours");
    let c = conf(
        &one,
        &st.sim.auth_url(),
        &st.voms,
        "extractor = prometheus\nmessengers = greendigit_cim",
        &energy,
    );
    let before = st.prom.query_requests();
    let dry = ours(&c, &["--dry-run"]);
    let our_requests = st.prom.query_requests() - before;
    assert!(dry.status.success(), "{}", text(&dry.stderr));
    let printed: Vec<Value> = text(&dry.stdout)
        .lines()
        .filter(|l| l.starts_with('['))
        .flat_map(|l| serde_json::from_str::<Vec<Value>>(l).unwrap())
        .collect();
    assert!(lastruns(&one).is_empty());
    assert_eq!(cim.received()["submit_requests"], json!(0));

    // The run: every project's records published, every lastrun written.
    let run = ours(&c, &[]);
    let log = text(&run.stderr);
    assert!(run.status.success(), "{log}");
    let mine = accepted(&cim);
    assert_eq!(printed.len(), mine.len(), "--dry-run printed what is sent");
    let expected_lastruns: BTreeSet<String> =
        accounted.iter().map(|p| format!("lastrun.{p}")).collect();
    assert_eq!(lastruns(&one), expected_lastruns);
    // Every project's VMs asked for together: the requests of one batch.
    let requests: u64 = log
        .lines()
        .find_map(|l| {
            l.split("Prometheus: ")
                .nth(1)?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no Prometheus request count in:\n{log}"));
    assert_eq!(requests, 1, "every project in one batch, one chunk\n{log}");
    // Defect 6: cASO asks once per VM (one chunk: two days at 30 s).
    assert_eq!(our_requests, requests, "as Prometheus counted them");
    assert!(
        caso_requests >= 50 * requests,
        "cASO {caso_requests}, ours {requests}"
    );
    assert!(
        log.contains(&format!(
            "{} projects ok, {} records to the greendigit_cim http://127.0.0.1:",
            format_args!("{0}/{0}", accounted.len()),
            mine.len()
        )),
        "{log}"
    );
    let cim_log = cim.stop();
    assert!(!cim_log.contains(PASSWORD) && !cim_log.contains(TOKEN));
    assert!(!log.contains(PASSWORD) && !log.contains(TOKEN), "{log}");

    // Record by record.
    let (from, to) = (unix(FROM), unix(TO));
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for id in theirs.keys() {
        assert!(mine.contains_key(id), "cASO has {id}, we do not");
    }
    for (id, o) in &mine {
        let (status, vcpus, end) = server(&st.manifest, id);
        assert_eq!(o["CloudType"], json!(CLOUD_TYPE));
        *seen.entry("cloud-type").or_default() += 1;
        let Some(c) = theirs.get(id) else {
            // cASO lists current servers only.
            assert_eq!(status, "DELETED", "{id}: cASO lacks a {status} server");
            *seen.entry("deleted-vms").or_default() += 1;
            if let Some(end) = end.filter(|e| *e < to) {
                assert_eq!(o["EndExecTime"], json!(iso(end)), "{id}");
                assert_eq!(o["ExecUnitFinished"], json!(1));
                *seen.entry("real-end").or_default() += 1;
            }
            continue;
        };
        let mut c = c.clone();
        c["CloudType"] = o["CloudType"].clone();
        if c["CpuDuration_s"] != o["CpuDuration_s"] {
            // cASO: 1 vCPU for a flavor it cannot list.
            assert_eq!(c["CpuDuration_s"], c["WallClockTime_s"], "{id}");
            assert_eq!(
                o["CpuDuration_s"],
                json!(o["WallClockTime_s"].as_i64().unwrap() * vcpus as i64)
            );
            c["CpuDuration_s"] = o["CpuDuration_s"].clone();
            c["Work"] = o["Work"].clone();
            *seen.entry("embedded-flavor").or_default() += 1;
        }
        if take_sums(&mut c, o) {
            *seen.entry("prometheus-sum").or_default() += 1;
        }
        assert_eq!(&c, o, "{id}");
        assert!(from <= unix(o["StartExecTime"].as_str().unwrap()));
    }
    for name in ["cloud-type", "deleted-vms", "real-end", "embedded-flavor"] {
        assert!(seen.contains_key(name), "{name} never occurred: {seen:?}");
        assert!(ENERGY_DIFFERENCES.iter().any(|(n, _)| *n == name));
    }
    eprintln!(
        "energy: cASO {} records in {caso_requests} requests, ours {} ({seen:?}) in {requests}",
        theirs.len(),
        mine.len()
    );

    // Beside the cloud records: ssm and greendigit_cim from one run.
    let cim = cim_double();
    let both = work.join("both");
    let c = conf(
        &both,
        &st.sim.auth_url(),
        &st.voms,
        "extractor = nova,prometheus\nmessengers = ssm,greendigit_cim",
        &energy_sections(&st.prom.endpoint(), &cim.base()),
    );
    let run = ours(&c, &[]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert_eq!(
        accepted(&cim).keys().collect::<Vec<_>>(),
        mine.keys().collect::<Vec<_>>()
    );
    let spooled = spool_records(&both.join("outgoing"));
    assert!(!spooled["cloud"].as_array().unwrap().is_empty());
    assert!(spooled.get("energy").is_none(), "{spooled}");
    assert_eq!(lastruns(&both), expected_lastruns);

    // A CIM that fails: exit 1, no lastrun (the next run sends again).
    let cim = cim_double();
    cim.set_faults("submit=503");
    let failing = work.join("cim-5xx");
    let c = conf(
        &failing,
        &st.sim.auth_url(),
        &st.voms,
        "extractor = prometheus\nmessengers = greendigit_cim",
        &energy_sections(&st.prom.endpoint(), &cim.base()),
    );
    let run = ours(&c, &[]);
    let log = text(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{log}");
    assert!(log.contains("GreenDIGIT CIM POST"), "{log}");
    assert!(log.contains("HTTP 503"), "{log}");
    assert!(lastruns(&failing).is_empty());
    assert!(!log.contains(PASSWORD) && !log.contains(TOKEN), "{log}");
}

/// A cut JSON body, 200: what a Prometheus dying mid-answer sends.
const CUT: (&str, &str) = (
    "200 OK",
    r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"uuid":"#,
);
/// Prometheus's own refusal of a query.
const REFUSED: (&str, &str) = (
    "400 Bad Request",
    r#"{"status":"error","errorType":"bad_data","error":"refused by the test"}"#,
);

/// A Prometheus that gives every request the same answer, then closes.
fn fake_prometheus((status, body): (&'static str, &'static str)) -> u16 {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    // Detached: it ends with the test process.
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { break };
            let mut buf = [0u8; 65536];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

#[test]
fn a_failing_prometheus_fails_the_projects_and_energy_for_apel_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let voms = dir.path().join("voms.json");
    let sim = sim::Sim::start(&[
        "--scenario",
        "demo",
        "--write-voms-json",
        voms.to_str().unwrap(),
    ]);
    let cim = cim_double();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    // Energy for APEL: exit 2 before any request.
    let c = conf(
        &dir.path().join("apel"),
        &sim.auth_url(),
        &voms,
        "extractor = prometheus\nmessengers = ssm",
        "[messenger_ssm]\nrecord_types = cloud,energy\n",
    );
    let run = ours(&c, &[]);
    let log = text(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{log}");
    assert!(
        log.contains("[messenger_ssm] record_types: energy records cannot go to APEL"),
        "{log}"
    );
    assert_eq!(rt.block_on(sim.stats())["total"], json!(0), "{log}");

    // Prometheus down (nothing listens): exit 1, no lastrun, nothing sent.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    for (name, endpoint, want) in [
        ("down", format!("http://127.0.0.1:{port}"), "connect"),
        (
            "cut",
            format!("http://127.0.0.1:{}", fake_prometheus(CUT)),
            "malformed answer",
        ),
        (
            "refused",
            format!("http://127.0.0.1:{}", fake_prometheus(REFUSED)),
            "bad_data: refused by the test",
        ),
    ] {
        let d = dir.path().join(name);
        let c = conf(
            &d,
            &sim.auth_url(),
            &voms,
            "extractor = prometheus\nmessengers = greendigit_cim",
            &energy_sections(&endpoint, &cim.base()),
        );
        let run = ours(&c, &[]);
        let log = text(&run.stderr);
        assert_eq!(run.status.code(), Some(1), "{name}: {log}");
        assert!(log.contains("prometheus energy"), "{name}: {log}");
        assert!(log.to_lowercase().contains(want), "{name}: {log}");
        assert!(lastruns(&d).is_empty(), "{name}");
        assert!(!log.contains("panicked"), "{name}: {log}");
    }
    assert_eq!(cim.received()["submit_requests"], json!(0));

    // Defect 3: cASO, its queries refused, logs each failure, exits 0 and
    // advances every lastrun (that period's energy is never sent). (Not
    // with Prometheus down: its client retries each VM for seconds.)
    let out = caso(
        &dir.path().join("caso-down"),
        "noop",
        &format!(
            "[prometheus]\nprometheus_endpoint = http://127.0.0.1:{}\n",
            fake_prometheus(REFUSED)
        ),
    );
    let log = caso_log(&dir.path().join("caso-down"));
    assert!(out.status.success(), "{log}");
    assert!(log.contains("Error querying Prometheus"), "{log}");
    assert!(!lastruns(&dir.path().join("caso-down")).is_empty(), "{log}");
}
