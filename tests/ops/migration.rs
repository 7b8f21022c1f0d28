//! What a site meets when it switches over (issue 18): problems found before
//! the first request rather than after extracting everything.

use std::process::Command;

use crate::support::extract;
use crate::support::sim::Sim;

/// A spool that is not writable: exit 1 before any OpenStack request, the
/// error names the option, the path and the uid; nothing is written. Both
/// the lastrun directory and the APEL spool are checked.
#[tokio::test(flavor = "multi_thread")]
async fn an_unwritable_spool_fails_before_the_first_request() {
    let sim = Sim::start(&["--scenario", "S"]);
    let voms = sim.get_json("/_sim/voms.json").await;
    for (locked, option) in [
        ("outgoing", "[ssm] output_path (the APEL spool)"),
        ("spool", "[DEFAULT] spooldir (lastrun files)"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("voms.json"), voms.to_string()).unwrap();
        let conf = extract::write_conf(
            dir.path(),
            &sim.auth_url(),
            &dir.path().join("voms.json"),
            "secret",
            "project_domain_name = Default",
        );
        // The run lock elsewhere, so that only `locked` is unwritable.
        let text = std::fs::read_to_string(&conf).unwrap();
        let d = dir.path().display();
        let text = text.replace(
            &format!("lock_path = {d}/spool"),
            &format!("lock_path = {d}/lock"),
        );
        std::fs::write(&conf, text).unwrap();
        std::fs::create_dir_all(dir.path().join("outgoing")).unwrap();
        std::fs::create_dir_all(dir.path().join("lock")).unwrap();
        // Everything the run may touch is the user's, but for one directory.
        let nobody = if crate::support::is_root() {
            "65534:65534"
        } else {
            ""
        };
        if !nobody.is_empty() {
            for p in ["", "spool", "outgoing", "lock", "caso.conf", "voms.json"] {
                let st = Command::new("chown")
                    .arg(nobody)
                    .arg(dir.path().join(p))
                    .status()
                    .unwrap();
                assert!(st.success());
            }
            let st = Command::new("chown")
                .arg("0:0")
                .arg(dir.path().join(locked))
                .status()
                .unwrap();
            assert!(st.success());
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            dir.path().join(locked),
            std::fs::Permissions::from_mode(0o555),
        )
        .unwrap();
        sim.reset().await;
        let out = extract::run_ours_as_nobody(&conf);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        let want = format!(
            "{option} {} is not writable by uid",
            dir.path().join(locked).display()
        );
        assert!(stderr.contains(&want), "missing {want:?} in:\n{stderr}");
        assert!(stderr.contains("nothing was extracted"), "{stderr}");
        assert_eq!(
            sim.stats().await["total"],
            0,
            "requests were made: {stderr}"
        );
        assert!(!stderr.contains("secret"), "{stderr}");
        let written: Vec<String> = ["spool", "outgoing"]
            .iter()
            .flat_map(|d| std::fs::read_dir(dir.path().join(d)).unwrap())
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(written.is_empty(), "written: {written:?}");
    }
}
