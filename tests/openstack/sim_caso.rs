//! Proof that the real cASO 5.2.2 (from `.venv`) runs unchanged against the
//! OpenStack simulator and reports what the manifest says it must, its known
//! defects included (checked by tests/oracle/caso_check.py).

use std::path::Path;
use std::process::Command;

use crate::support::extract::venv_python;
use crate::support::root;
use crate::support::sim;

/// Runs cASO against a fresh simulator, then the checker; returns its summary.
fn run_caso(work: &Path, sim_args: &[&str], storage: &str) -> serde_json::Value {
    let py = venv_python();
    let out = Command::new(root().join("scripts/run-caso-against-sim.sh"))
        .arg(work)
        .args(sim_args)
        .env("SIM", sim::binary())
        .output()
        .expect("run-caso-against-sim.sh");
    let log = std::fs::read_to_string(work.join("caso.log")).unwrap_or_default();
    assert!(
        out.status.success(),
        "caso-extract failed: {}\n{}\n{log}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let check = Command::new(&py)
        .arg(root().join("tests/oracle/caso_check.py"))
        .arg(work)
        .args(["--storage", storage])
        .output()
        .expect("caso_check.py");
    assert!(
        check.status.success(),
        "cASO's spool does not match the manifest:\n{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let stats: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(work.join("stats.json")).unwrap()).unwrap();
    println!("{} requests: {}", work.display(), stats);
    serde_json::from_slice(&check.stdout).expect("checker summary")
}

#[test]
fn real_caso_extracts_every_seeded_record() {
    let dir = tempfile::tempdir().unwrap();
    // Cinder ignores the changes-since filter (as for a non-admin reader).
    let s = run_caso(
        &dir.path().join("lenient"),
        &["--seed", "2", "--lenient-cinder-filters"],
        "expect",
    );
    assert!(s["cloud_records"].as_u64().unwrap() > 50, "{s}");
    assert!(s["accelerator_records"].as_u64().unwrap() > 0, "{s}");
    assert!(s["ip_records"].as_u64().unwrap() > 0, "{s}");
    assert!(s["storage_records"].as_u64().unwrap() > 0, "{s}");
    // Real Cinder semantics for an admin: changes-since matches no volume
    // (FORMATS.md defect 9), so cASO reports no storage at all.
    let s = run_caso(
        &dir.path().join("strict"),
        &["--seed", "3", "--scenario", "S"],
        "none",
    );
    assert!(s["cloud_records"].as_u64().unwrap() > 20, "{s}");
    assert_eq!(s["storage_records"], 0);
    // Tokens revoked mid-run (keystoneauth re-authenticates) and a usage
    // entry for a server Nova cannot show (cASO warns and goes on).
    let s = run_caso(
        &dir.path().join("faults"),
        &[
            "--seed",
            "2",
            "--lenient-cinder-filters",
            "--ghost-usage",
            "--fault",
            "401-after=60",
        ],
        "expect",
    );
    assert!(s["cloud_records"].as_u64().unwrap() > 50, "{s}");
}
