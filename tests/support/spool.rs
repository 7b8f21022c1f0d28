//! Shared by the spool, lastrun and run-lock integration tests: the Python
//! oracle (tests/oracle/dirq_oracle.py in the project's .venv) and child
//! processes made by re-running the test binary itself.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::python::python;
use super::test_name;

pub fn oracle_cmd(args: &[&str]) -> Command {
    let mut c = Command::new(python());
    c.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracle/dirq_oracle.py"));
    c.args(args);
    c
}

/// Runs the oracle to completion; its JSON output lines.
pub fn oracle(args: &[&str]) -> Vec<serde_json::Value> {
    let o = oracle_cmd(args).output().unwrap();
    assert!(
        o.status.success(),
        "oracle {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Re-runs this test binary as a child executing only the test `name` of the
/// module `module` (its `module_path!()`), with `CHILD_MODE=mode` (the child
/// test does nothing when the variable is unset).
pub fn child_cmd(module: &str, name: &str, mode: &str) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    // The child entry points are #[ignore]d, so that a plain `cargo test`
    // does not count them as tests that pass: --ignored runs exactly this one.
    c.args([
        test_name(module, name).as_str(),
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
        "-q",
    ])
    .env("CHILD_MODE", mode)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    c
}

pub fn child_mode() -> Option<String> {
    std::env::var("CHILD_MODE").ok()
}

/// The line a child entry point prints first ([`started`]): its parent
/// checks for it, since an `--exact` name that matches no test runs nothing
/// and exits 0.
pub const STARTED: &str = "CHILD STARTED";

/// Says on stdout that this child entry point runs.
pub fn started() {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{STARTED}").unwrap();
    out.flush().unwrap();
}

/// Waits for a child entry point to exit; its stdout, once checked that it
/// reached the entry point.
pub fn wait_child(child: Child) -> String {
    let out = wait_output(child);
    assert!(
        out.lines().any(|l| l == STARTED),
        "the child never reached its entry point:\n{out}"
    );
    out
}

/// Lines a child printed with `prefix ` before it, prefix removed.
pub fn tagged_lines(out: &str, prefix: &str) -> Vec<String> {
    let tag = format!("{prefix} ");
    out.lines()
        .filter_map(|l| l.strip_prefix(&tag).map(str::to_string))
        .collect()
}

pub fn wait_output(child: Child) -> String {
    let o = child.wait_with_output().unwrap();
    String::from_utf8(o.stdout).unwrap()
}

/// A random u32 (the project takes its randomness from uuid/openssl).
pub fn random_u32() -> u32 {
    let b = uuid::Uuid::new_v4().into_bytes();
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}
