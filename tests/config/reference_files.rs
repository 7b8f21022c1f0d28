//! The two binaries against the reference configuration files sites have
//! (copied to tests/fixtures/config): values, warnings, errors and exit codes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const CASO: &str = env!("CARGO_BIN_EXE_caso-extract");
const SSMSEND: &str = env!("CARGO_BIN_EXE_ssmsend");

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/config")
        .join(name)
        .display()
        .to_string()
}

/// Runs a binary with a clean CASO_*/SSM_* environment plus `env`, and HOME
/// pointing at an empty directory so no default caso.conf is picked up.
fn run(bin: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let home = tempfile::tempdir().unwrap();
    command(bin, home.path())
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

/// `bin` with HOME set and no CASO_*/SSM_* variables inherited.
fn command(bin: &str, home: &Path) -> Command {
    let mut cmd = Command::new(bin);
    cmd.env("HOME", home);
    for (k, _) in std::env::vars() {
        if k.starts_with("CASO_") || k.starts_with("SSM_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap()
}

/// The line of `--print-config` for `key` inside `[section]`: (value, origin).
fn printed(out: &str, section: &str, key: &str) -> (String, String) {
    let mut in_section = false;
    for line in out.lines() {
        if line.starts_with('[') {
            in_section = line == format!("[{section}]");
            continue;
        }
        if !in_section {
            continue;
        }
        if let Some(rest) = line.strip_prefix(&format!("{key} =")) {
            let (value, origin) = rest.split_once("  # ").unwrap();
            return (value.trim().to_string(), origin.trim().to_string());
        }
    }
    panic!("[{section}] {key} not printed in:\n{out}");
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[test]
fn appliance_caso_conf_loads_unchanged() {
    let conf = fixture("caso.conf");
    let o = run(CASO, &["--config-file", &conf, "--print-config"], &[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = stdout(&o);
    assert_eq!(
        printed(&out, "DEFAULT", "site_name"),
        ("SITE-NAME".into(), format!("{conf}:12"))
    );
    assert_eq!(
        printed(&out, "DEFAULT", "projects"),
        ("demo".into(), format!("{conf}:20"))
    );
    assert_eq!(
        printed(&out, "DEFAULT", "messengers"),
        ("ssm".into(), format!("{conf}:3"))
    );
    assert_eq!(
        printed(&out, "DEFAULT", "spooldir"),
        ("/var/spool/caso".into(), "built-in default".into())
    );
    assert_eq!(printed(&out, "DEFAULT", "service_name").0, "SITE-NAME");
    assert_eq!(
        printed(&out, "keystone_auth", "auth_type"),
        ("password".into(), format!("{conf}:29"))
    );
    assert_eq!(
        printed(&out, "keystone_auth", "auth_url").0,
        "https://yourkeystone/v3"
    );
    assert_eq!(
        printed(&out, "DEFAULT", "concurrency"),
        ("8".into(), "built-in default (ours)".into())
    );
    let err = stderr(&o);
    assert_eq!(
        err.matches("\"ssmv4\" is deprecated, use \"ssm\"").count(),
        1,
        "{err}"
    );
    assert!(
        err.contains(&format!("{conf}:3: [DEFAULT] messengers")),
        "{err}"
    );
    assert!(
        err.contains("\"v3password\" is an old spelling of \"password\""),
        "{err}"
    );
    assert!(!err.contains("unknown"), "{err}");
}

#[test]
fn caso_conf_sample_loads_with_cases_defaults() {
    let o = run(
        CASO,
        &[
            "--config-file",
            &fixture("caso.conf.sample"),
            "--print-config",
        ],
        &[],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = stdout(&o);
    assert_eq!(printed(&out, "DEFAULT", "messengers").0, "noop");
    assert_eq!(
        printed(&out, "DEFAULT", "extractor").0,
        "nova,cinder,neutron"
    );
    assert_eq!(
        printed(&out, "ssm", "output_path").0,
        "/var/spool/apel/outgoing/openstack"
    );
    assert_eq!(
        printed(&out, "messenger_ssm", "record_types").0,
        "cloud,ip,accelerator,storage"
    );
    assert!(out.contains("#site_name = <unset>"), "{out}");
    assert!(stderr(&o).contains("not ready to extract: [DEFAULT] site_name is required"));
}

#[test]
fn sender_cfg_loads_unchanged() {
    let cfg = fixture("sender.cfg");
    let o = run(SSMSEND, &["-c", &cfg, "--print-config"], &[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = stdout(&o);
    for (section, key, value, line) in [
        ("sender", "protocol", "AMS", 3),
        ("broker", "port", "443", 10),
        ("broker", "use_ssl", "true", 14),
        ("messaging", "destination", "gLite-APEL", 31),
        ("messaging", "path", "/var/spool/apel/outgoing", 37),
        ("messaging", "path_type", "dirq", 44),
        ("messaging", "ams_project", "accounting", 28),
        (
            "certificates",
            "certificate",
            "/etc/grid-security/hostcert.pem",
            17,
        ),
        ("logging", "level", "INFO", 50),
    ] {
        assert_eq!(
            printed(&out, section, key),
            (value.to_string(), format!("{cfg}:{line}")),
            "[{section}] {key}"
        );
    }
    assert_eq!(
        printed(&out, "sender", "window"),
        ("64".into(), "built-in default (ours)".into())
    );
    // The shipped file has an empty host: loading works, sending would not.
    assert!(stderr(&o).contains("not ready to send: [broker] host is required to send with AMS"));
}

#[test]
fn legacy_stomp_bdii_file_is_refused_clearly() {
    let cfg = fixture("sender-stomp-legacy.cfg");
    for args in [vec!["-c", &cfg, "--print-config"], vec!["-c", &cfg]] {
        let o = run(SSMSEND, &args, &[]);
        assert_eq!(code(&o), 2);
        let err = stderr(&o);
        assert!(
            err.contains(&format!(
                "{cfg}: [broker] bdii/network: broker discovery through a BDII was removed in SSM 4"
            )),
            "{err}"
        );
        assert!(err.contains("set [broker] host and port"), "{err}");
    }
}

#[test]
fn malformed_line_names_file_and_line() {
    let d = tempfile::tempdir().unwrap();
    let conf = write(
        &d,
        "caso.conf",
        "[DEFAULT]\nsite_name = X\nthis line is wrong\n",
    );
    let o = run(CASO, &["--config-file", &conf], &[]);
    assert_eq!(code(&o), 2);
    assert_eq!(
        stderr(&o),
        format!(
            "caso-extract: error: {conf}:3: expected 'key = value' or 'key: value' (the line is not shown: it may hold a secret)\n"
        )
    );
    let cfg = write(&d, "sender.cfg", "[broker]\nhost: h\n[messaging\n");
    let o = run(SSMSEND, &["-c", &cfg], &[]);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains(&format!("{cfg}:3: invalid section header")),
        "{}",
        stderr(&o)
    );
}

#[test]
fn bad_value_names_file_line_section_option() {
    let d = tempfile::tempdir().unwrap();
    let conf = write(
        &d,
        "caso.conf",
        "[DEFAULT]\nsite_name = X\n[ssm]\nmax_size = lots\n",
    );
    let o = run(CASO, &["--config-file", &conf, "--print-config"], &[]);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains(&format!(
            "{conf}:4: [ssm] max_size: expected an integer, found \"lots\""
        )),
        "{}",
        stderr(&o)
    );
}

#[test]
fn missing_required_values_name_section_and_option() {
    let o = run(CASO, &["--config-file", &fixture("caso.conf.sample")], &[]);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains("[DEFAULT] site_name is required to extract records"),
        "{}",
        stderr(&o)
    );

    let o = run(SSMSEND, &["-c", &fixture("sender.cfg")], &[]);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains("[broker] host is required to send with AMS"),
        "{}",
        stderr(&o)
    );

    let d = tempfile::tempdir().unwrap();
    let cfg = write(
        &d,
        "s.cfg",
        "[sender]\nprotocol: STOMP\n[broker]\nhost: b:6163\n[certificates]\ncertificate: /c\n[messaging]\ndestination: q\npath: /p\n",
    );
    let o = run(SSMSEND, &["-c", &cfg], &[]);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains("[certificates] key is required to sign messages"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn unreadable_file_names_path_and_os_error() {
    let o = run(CASO, &["--config-file", "/nonexistent/caso.conf"], &[]);
    assert_eq!(code(&o), 2);
    assert_eq!(
        stderr(&o),
        "caso-extract: error: /nonexistent/caso.conf: No such file or directory (os error 2)\n"
    );
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().display().to_string();
    let o = run(SSMSEND, &["-c", &dir], &[]);
    assert_eq!(code(&o), 2);
    assert_eq!(
        stderr(&o),
        format!("ssmsend: error: {dir}: Is a directory (os error 21)\n")
    );
    // ssmsend's default path, absent here.
    if !Path::new("/etc/apel/sender.cfg").exists() {
        let o = run(SSMSEND, &[], &[]);
        assert_eq!(code(&o), 2);
        assert!(stderr(&o).contains("/etc/apel/sender.cfg: No such file or directory"));
    }
}

#[test]
fn unknown_option_warns_with_line_and_strict_refuses() {
    let d = tempfile::tempdir().unwrap();
    let conf = write(
        &d,
        "caso.conf",
        "[DEFAULT]\nsite_name = X\nsite_nmae = typo\n[nosuch]\na = 1\n",
    );
    let o = run(CASO, &["--config-file", &conf, "--print-config"], &[]);
    assert_eq!(code(&o), 0);
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "{conf}:3: unknown option [DEFAULT] site_nmae (ignored"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("{conf}:4: unknown section [nosuch]")),
        "{err}"
    );

    let o = run(
        CASO,
        &["--config-file", &conf, "--print-config", "--strict-config"],
        &[],
    );
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains(&format!(
            "{conf}:3: unknown option [DEFAULT] site_nmae (an error because of --strict-config)"
        )),
        "{}",
        stderr(&o)
    );

    let cfg = write(&d, "sender.cfg", "[messaging]\ndestination: q\nqueue: x\n");
    let o = run(SSMSEND, &["-c", &cfg, "--print-config"], &[]);
    assert_eq!(code(&o), 0);
    assert!(stderr(&o).contains(&format!("{cfg}:3: unknown option [messaging] queue")));
    let o = run(
        SSMSEND,
        &["-c", &cfg, "--print-config", "--strict-config"],
        &[],
    );
    assert_eq!(code(&o), 2);

    // An unknown environment variable names itself.
    let o = run(
        SSMSEND,
        &["-c", &cfg, "--print-config"],
        &[("SSM_BROKER__HOTS", "x")],
    );
    assert!(
        stderr(&o).contains("environment variable SSM_BROKER__HOTS: unknown option [broker] hots")
    );
}

/// default < file < second file < env < flag, seen through --print-config.
#[test]
fn precedence_through_the_binary() {
    let d = tempfile::tempdir().unwrap();
    let a = write(
        &d,
        "a.conf",
        "[DEFAULT]\nsite_name = A\nregion_name = RA\ncaso_tag = TA\nvo_property = PA\n",
    );
    let b = write(
        &d,
        "b.conf",
        "[DEFAULT]\nregion_name = RB\ncaso_tag = TB\nvo_property = PB\n",
    );
    let o = run(
        CASO,
        &[
            "--config-file",
            &a,
            "--config-file",
            &b,
            "--vo-property",
            "PF",
            "--print-config",
        ],
        &[
            ("CASO_DEFAULT__CASO_TAG", "TE"),
            ("CASO_DEFAULT__VO_PROPERTY", "PE"),
        ],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = stdout(&o);
    assert_eq!(
        printed(&out, "DEFAULT", "spooldir"),
        ("/var/spool/caso".into(), "built-in default".into())
    );
    assert_eq!(
        printed(&out, "DEFAULT", "site_name"),
        ("A".into(), format!("{a}:2"))
    );
    assert_eq!(
        printed(&out, "DEFAULT", "region_name"),
        ("RB".into(), format!("{b}:2"))
    );
    assert_eq!(
        printed(&out, "DEFAULT", "caso_tag"),
        (
            "TE".into(),
            "environment variable CASO_DEFAULT__CASO_TAG".into()
        )
    );
    assert_eq!(
        printed(&out, "DEFAULT", "vo_property"),
        ("PF".into(), "command-line flag --vo-property".into())
    );
}

#[test]
fn secrets_are_masked_in_print_config() {
    let d = tempfile::tempdir().unwrap();
    let conf = write(
        &d,
        "caso.conf",
        "[DEFAULT]\nsite_name = X\n[keystone_auth]\npassword = 'hunter2'\n",
    );
    let o = run(
        CASO,
        &["--config-file", &conf, "--print-config"],
        &[(
            "CASO_KEYSTONE_AUTH__APPLICATION_CREDENTIAL_SECRET",
            "sekrit",
        )],
    );
    assert_eq!(code(&o), 0);
    let out = stdout(&o);
    assert_eq!(
        printed(&out, "keystone_auth", "password"),
        ("****".into(), format!("{conf}:4"))
    );
    assert_eq!(
        printed(&out, "keystone_auth", "application_credential_secret").0,
        "****"
    );
    assert!(!out.contains("hunter2") && !out.contains("sekrit"));
    assert!(!stderr(&o).contains("hunter2"));
}

#[test]
fn config_dir_and_default_locations() {
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join(".caso/caso.conf.d")).unwrap();
    std::fs::write(
        home.path().join(".caso/caso.conf"),
        "[DEFAULT]\nsite_name = HOME\nregion_name = R\n",
    )
    .unwrap();
    std::fs::write(
        home.path().join(".caso/caso.conf.d/50-site.conf"),
        "[DEFAULT]\nsite_name = DIR\n",
    )
    .unwrap();
    let o = command(CASO, home.path())
        .arg("--print-config")
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = stdout(&o);
    let dropin: PathBuf = home.path().join(".caso/caso.conf.d/50-site.conf");
    assert_eq!(
        printed(&out, "DEFAULT", "site_name"),
        ("DIR".into(), format!("{}:2", dropin.display()))
    );
    assert_eq!(printed(&out, "DEFAULT", "region_name").0, "R");
}

#[test]
fn not_yet_implemented_paths_exit_1() {
    let d = tempfile::tempdir().unwrap();
    let conf = write(&d, "caso.conf", "[DEFAULT]\nsite_name = X\n");
    // Extraction and `projects` need Keystone settings: a configuration error.
    for args in [
        &["--config-file", &conf][..],
        &["--config-file", &conf, "projects"],
    ] {
        let o = run(CASO, args, &[]);
        assert_eq!(code(&o), 2);
        assert!(
            stderr(&o).contains("[keystone_auth] auth_url is required to extract"),
            "{}",
            stderr(&o)
        );
    }
    let o = run(
        CASO,
        &["projects", "--config-file", &conf, "--print-config"],
        &[],
    );
    assert_eq!(
        code(&o),
        0,
        "global flags work after the subcommand: {}",
        stderr(&o)
    );

    let cfg = write(
        &d,
        "s.cfg",
        "[sender]\nprotocol: AMS\n[broker]\nhost: msg.example\n[certificates]\ncertificate: /c\nkey: /k\n[messaging]\ndestination: t\npath: /p\nams_project: accounting\n[logging]\nconsole: true\n",
    );
    // Checked settings go on to the credential checks: a missing host
    // certificate is the operator's to fix (exit 2).
    let o = run(SSMSEND, &["-c", &cfg], &[]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("cannot read certificate /c"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn help_version_and_usage_errors() {
    for bin in [CASO, SSMSEND] {
        let o = run(bin, &["--help"], &[]);
        assert_eq!(code(&o), 0);
        assert!(stdout(&o).contains("--print-config"));
        let o = run(bin, &["--version"], &[]);
        assert_eq!(code(&o), 0);
        assert!(stdout(&o).contains(env!("CARGO_PKG_VERSION")));
        let o = run(bin, &["--no-such-flag"], &[]);
        assert_eq!(code(&o), 2);
    }
    let o = run(CASO, &["--help"], &[]);
    for flag in [
        "--config-file",
        "--config-dir",
        "--dry-run",
        "--extract-from",
        "--extract-to",
        "--projects",
        "--extractor",
        "--debug",
        "--log-file",
        "--strict-config",
        "projects",
    ] {
        assert!(stdout(&o).contains(flag), "{flag}");
    }
}

#[test]
fn json_log_lines_on_request() {
    let o = run(
        CASO,
        &[
            "--config-file",
            &fixture("caso.conf"),
            "--print-config",
            "--log-format",
            "json",
        ],
        &[],
    );
    assert_eq!(code(&o), 0);
    let err = stderr(&o);
    let lines: Vec<serde_json::Value> = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!lines.is_empty());
    assert!(lines.iter().all(|l| l["level"] == "WARN"));
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"].as_str().unwrap().contains("ssmv4"))
    );
}

#[test]
fn caso_log_file_gets_the_log() {
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("caso.log");
    let conf = write(
        &d,
        "caso.conf",
        &format!(
            "[DEFAULT]\nsite_name = X\nmessengers = ssmv4\nlog_file = {}\n",
            log.display()
        ),
    );
    let o = run(CASO, &["--config-file", &conf], &[]);
    assert_eq!(code(&o), 2);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("\"ssmv4\" is deprecated"), "{logged}");
    assert!(
        logged.contains("[keystone_auth] auth_url is required to extract"),
        "{logged}"
    );
    // oslo.log semantics: with a log file nothing is logged on stderr; the
    // fatal error is still reported there once.
    assert_eq!(
        stderr(&o),
        "caso-extract: error: [keystone_auth] auth_url is required to extract\n"
    );
}

#[test]
fn sender_logfile_that_cannot_be_opened_falls_back_to_console() {
    let d = tempfile::tempdir().unwrap();
    let cfg = write(
        &d,
        "s.cfg",
        "[sender]\nprotocol: AMS\n[broker]\nhost: h\n[certificates]\ncertificate: /c\nkey: /k\n[messaging]\ndestination: t\npath: /p\nams_project: a\n[logging]\nlogfile: /nonexistent/dir/ssmsend.log\nlevel: INFO\nconsole: false\n",
    );
    let o = run(SSMSEND, &["-c", &cfg], &[]);
    assert_eq!(code(&o), 2);
    let err = stderr(&o);
    assert!(
        err.contains(
            "cannot open log file /nonexistent/dir/ssmsend.log: No such file or directory"
        ),
        "{err}"
    );
    assert!(err.contains("cannot read certificate /c"), "{err}");
}
