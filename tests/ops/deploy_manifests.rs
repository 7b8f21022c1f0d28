//! The deployment files: the Kubernetes manifests against the real
//! Kubernetes schemas (kubernetes-validate in `.venv`, schemas bundled, strict:
//! unknown fields refused) and the policy the images need (non-root,
//! read-only root, one shared claim, Secrets and ConfigMap), docker-compose.yml
//! and the cron file (tests/deploy_check.py); and the configuration files the
//! ConfigMap ships, loaded by our own programs with `--strict-config`.
//! The running images are tested by scripts/test-images.sh.

use std::path::Path;
use std::process::Command;

use crate::support::python::{python, venv_bin};
use crate::support::root;

fn venv_python() -> std::path::PathBuf {
    venv_bin("kubernetes-validate");
    python()
}

fn deploy_check(mode: &str) -> std::process::Output {
    Command::new(venv_python())
        .arg(root().join("tests/deploy_check.py"))
        .arg(root())
        .arg(mode)
        .output()
        .expect("run tests/deploy_check.py")
}

#[test]
fn manifests_compose_and_cron_pass_the_schema_and_policy_checks() {
    let out = deploy_check("validate");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "deploy_check.py failed:\n{stdout}\n{stderr}"
    );
    for line in [
        "ok: 8 objects checked against the Kubernetes",
        "ok: CronJob caso-extract:",
        "ok: CronJob ssmsend:",
        "ok: docker-compose.yml:",
        "ok: deploy/cron/cloud-accounting",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
}

/// Runs PROGRAM ARGS with the given environment and expects exit 0.
fn run_ok(program: &str, args: &[&str], env: &[(&str, &Path)]) -> String {
    let mut cmd = Command::new(program);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run program");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{program} {args:?} exited {:?}:\n{stdout}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn the_configmap_files_load_strictly_in_both_programs() {
    let out = deploy_check("configmap");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let data: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("ConfigMap data as JSON");
    let dir = tempfile::tempdir().unwrap();
    for key in ["caso.conf", "voms.json", "sender.cfg"] {
        let text = data[key]
            .as_str()
            .unwrap_or_else(|| panic!("no {key} in the ConfigMap"));
        std::fs::write(dir.path().join(key), text).unwrap();
    }
    serde_json::from_str::<serde_json::Value>(data["voms.json"].as_str().unwrap())
        .expect("voms.json in the ConfigMap is JSON");

    let caso_conf = dir.path().join("caso.conf");
    let voms = dir.path().join("voms.json");
    let printed = run_ok(
        env!("CARGO_BIN_EXE_caso-extract"),
        &[
            "--config-file",
            caso_conf.to_str().unwrap(),
            "--strict-config",
            "--print-config",
        ],
        &[("CASO_DEFAULT__MAPPING_FILE", &voms)],
    );
    assert!(printed.contains("site_name = SITE-NAME"), "{printed}");
    assert!(printed.contains("spooldir = /var/spool/caso"), "{printed}");
    assert!(
        printed.contains("output_path = /var/spool/apel/outgoing/openstack"),
        "{printed}"
    );

    let sender_cfg = dir.path().join("sender.cfg");
    let printed = run_ok(
        env!("CARGO_BIN_EXE_ssmsend"),
        &[
            "--config",
            sender_cfg.to_str().unwrap(),
            "--strict-config",
            "--print-config",
        ],
        &[],
    );
    for want in [
        "protocol = AMS",
        "key = /etc/grid-security/hostkey.pem",
        "capath = /etc/grid-security/certificates",
        // The queue caso-extract's output_path fills, not its parent.
        "path = /var/spool/apel/outgoing/openstack ",
    ] {
        assert!(printed.contains(want), "missing {want:?} in:\n{printed}");
    }
}

/// check-jsonschema on FILE against the bundled GitHub workflow schema.
fn check_workflow(file: &Path) -> std::process::Output {
    Command::new(venv_bin("check-jsonschema"))
        .args(["--builtin-schema", "vendor.github-workflows"])
        .arg(file)
        .output()
        .expect("run check-jsonschema")
}

/// The release workflow cannot run here (no public CI): it is checked against
/// GitHub's workflow schema offline, and the check is shown to refuse a
/// broken copy, so a pass means something.
#[test]
fn the_release_workflow_passes_the_github_workflow_schema() {
    let workflow = root().join(".github/workflows/release.yml");
    let out = check_workflow(&workflow);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&workflow).unwrap();
    for want in [
        "tags: [\"v*\"]",
        "STATIC_TARGET=musl scripts/build-static.sh",
        "--target offline",
        "has NOT run",
    ] {
        assert!(text.contains(want), "release.yml lacks {want:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("release.yml");
    std::fs::write(&broken, text.replace("runs-on:", "runs_on:")).unwrap();
    assert!(
        !check_workflow(&broken).status.success(),
        "check-jsonschema accepted a workflow with no runs-on"
    );
}

/// Our own examples use the current spellings: a site that starts from them
/// gets no deprecation warning on every run.
#[test]
fn the_example_configuration_files_load_without_a_warning() {
    let examples = root().join("examples");
    for (program, args) in [
        (
            env!("CARGO_BIN_EXE_caso-extract"),
            ["--config-file", "caso.conf", "--print-config"],
        ),
        (
            env!("CARGO_BIN_EXE_ssmsend"),
            ["--config", "sender.cfg", "--print-config"],
        ),
    ] {
        let out = Command::new(program)
            .args(args)
            .current_dir(&examples)
            .output()
            .expect("run program");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{program} {args:?}: {stderr}");
        for word in ["WARN", "deprecated"] {
            assert!(
                !stderr.contains(word),
                "{program} {args:?} warned on our own example:\n{stderr}"
            );
        }
    }
}
