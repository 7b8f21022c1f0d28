//! What the tests running `caso-extract` against the OpenStack simulator
//! share: the caso.conf both cASO and we read, running our binary, and
//! parsing a spool into records with tests/oracle/spool_records.py (which
//! fails on any element that is not a whole message).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The project's Python with cASO 5.2.2; missing is a failure, never a skip.
pub fn venv_python() -> PathBuf {
    let py = root().join(".venv/bin/python");
    assert!(
        py.exists() && root().join(".venv/bin/caso-extract").exists(),
        "{} or caso-extract missing: run scripts/setup-python.sh",
        py.display()
    );
    py
}

/// Writes `<dir>/caso.conf` as scripts/run-caso-against-sim.sh does for
/// cASO (same site, credentials and voms.json), spool in `<dir>/outgoing`,
/// lastrun files in `<dir>/spool`. `extra_auth` lines go to
/// `[keystone_auth]`.
pub fn write_conf(
    dir: &Path,
    auth_url: &str,
    voms: &Path,
    password: &str,
    extra_auth: &str,
) -> PathBuf {
    std::fs::create_dir_all(dir.join("spool")).unwrap();
    let d = dir.display();
    let text = format!(
        "[DEFAULT]\nsite_name = SIM-SITE\nservice_name = SIM-SITE\nmessengers = ssm\n\
         spooldir = {d}/spool\nlock_path = {d}/spool\nmapping_file = {}\n\n\
         [keystone_auth]\nauth_type = v3password\nauth_url = {auth_url}\nusername = admin\n\
         password = {password}\nuser_domain_name = Default\n{extra_auth}\n\n\
         [ssm]\noutput_path = {d}/outgoing\n",
        voms.display()
    );
    let path = dir.join("caso.conf");
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs our `caso-extract` with that file and these arguments.
pub fn run_ours(conf: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_caso-extract"))
        .arg("--config-file")
        .arg(conf)
        .args(args)
        .env("TZ", "UTC")
        .env_remove("CASO_LOCK_PATH")
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

/// Whether the tests run as root (then every directory is writable, and a
/// permission test must run the program as another user).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Our `caso-extract` with `conf`, as user `nobody` when the tests run as
/// root (setpriv, util-linux), else as the tests' own user.
pub fn run_ours_as_nobody(conf: &Path) -> Output {
    let mut cmd = if is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_caso-extract"));
        c
    } else {
        Command::new(env!("CARGO_BIN_EXE_caso-extract"))
    };
    cmd.arg("--config-file")
        .arg(conf)
        .env_remove("CASO_LOCK_PATH")
        .output()
        .expect("run caso-extract (setpriv is util-linux)")
}

/// Every record in the spool at `queue`, by type (see spool_records.py).
/// Panics naming the element when one is not a whole message.
pub fn spool_records(queue: &Path) -> Value {
    let out = Command::new(venv_python())
        .arg(root().join("tests/oracle/spool_records.py"))
        .arg(queue)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "spool {} holds an element that is not a whole message: {}",
        queue.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
