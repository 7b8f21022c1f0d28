//! The test doubles that run as child processes are Cargo examples
//! (`openstack-sim`, `ams-double`): built on first use, once per test
//! process, since `cargo test --test main` alone does not build examples.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

/// `cargo build --example <name>` (in the test executable's profile; a
/// no-op when it is up to date), then the example's path beside the test
/// executable's profile directory.
pub fn built(name: &str) -> PathBuf {
    static BUILT: Mutex<Option<HashMap<String, PathBuf>>> = Mutex::new(None);
    // Held across the build: two tests needing the same example wait for one build.
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(bin) = built.get_or_insert_default().get(name) {
        return bin.clone();
    }
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test>-<hash>
    let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "--example", name, "--manifest-path"])
        .arg(super::root().join("Cargo.toml"));
    if release {
        cmd.arg("--release");
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("run cargo to build the {name} example: {e}"));
    assert!(status.success(), "cargo build --example {name} failed");
    let bin = profile_dir.join("examples").join(name);
    assert!(bin.exists(), "{} missing after the build", bin.display());
    built
        .get_or_insert_default()
        .insert(name.to_string(), bin.clone());
    bin
}
