//! What the tests running `caso-extract` against the OpenStack simulator
//! share: the caso.conf both cASO and we read, running our binary, and
//! parsing a spool into records with tests/oracle/spool_records.py (which
//! fails on any element that is not a whole message).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use super::{is_root, python, root};

/// The project's Python with cASO 5.2.2.
pub fn venv_python() -> PathBuf {
    python::venv_bin("caso-extract");
    python::python()
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
