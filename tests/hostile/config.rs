//! Issue 11, classes 7-10: hostile configuration and local files, driving
//! the real binaries. Every case asserts the exit code, the exact error text
//! naming file:line (or flag, variable, voms.json key), that no secret is in
//! any output or log, and a time bound; the memory cases run under
//! `ulimit -v`. Where a configuration error must stop the run before any
//! request, Keystone is a listener that counts connections, and the count
//! must be 0.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::openstack_mock as mock;

const CASO: &str = env!("CARGO_BIN_EXE_caso-extract");
const SSMSEND: &str = env!("CARGO_BIN_EXE_ssmsend");
/// Every run ends well within this (debug build, shared machine).
const BOUND: Duration = Duration::from_secs(30);
/// Address space for the memory cases: 1 GB.
const ULIMIT_V_KB: u64 = 1_000_000;
const SECRET: &str = "Pw-S3cr3t-7f3a";

/// A finished run.
struct Ran {
    code: i32,
    out: String,
    err: String,
    log: String,
    took: Duration,
}

impl Ran {
    /// Everything the run wrote: stdout, stderr and the log file.
    fn all(&self) -> String {
        format!("{}\n{}\n{}", self.out, self.err, self.log)
    }

    /// Exit code, an exact substring of stderr, no secret anywhere, in time.
    fn expect(&self, name: &str, code: i32, want: &str) {
        assert_eq!(self.code, code, "{name}: exit code; stderr:\n{}", self.err);
        assert!(
            self.err.contains(want),
            "{name}: stderr lacks {want:?}:\n{}",
            self.err
        );
        self.no_secret(name);
    }

    fn no_secret(&self, name: &str) {
        let all = self.all();
        assert!(
            !all.contains(SECRET) && !all.contains("S3cr3t") && !all.contains(mock::PASSWORD),
            "{name}: a secret was printed:\n{}",
            self.all()
        );
        assert!(self.took < BOUND, "{name}: took {:?}", self.took);
    }
}

/// A scratch directory with HOME, spool and files.
struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn new() -> Site {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        std::fs::create_dir_all(dir.path().join("spool")).unwrap();
        Site { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn write(&self, rel: &str, text: &str) -> String {
        let p = self.path(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }

    /// A caso.conf that could extract from `auth_url`, logging to
    /// `<dir>/caso.log`; `default` and `auth` lines are added to their sections.
    fn caso_conf(&self, auth_url: &str, default: &str, auth: &str) -> String {
        let d = self.dir.path().display();
        self.write(
            "caso.conf",
            &format!(
                "[DEFAULT]\nsite_name = TEST-SITE\nspooldir = {d}/spool\nlock_path = {d}/spool\n\
                 mapping_file = {d}/voms.json\nmessengers = ssm\nprojects = other\n\
                 log_file = {d}/caso.log\n{default}\n\
                 [ssm]\noutput_path = {d}/outgoing\n\
                 [keystone_auth]\nauth_type = password\nauth_url = {auth_url}\nusername = caso\n\
                 user_domain_name = Default\npassword = {SECRET}\ntimeout = 5\n\
                 connect_retries = 0\n{auth}\n"
            ),
        )
    }

    /// Runs `bin` with HOME here and no CASO_*/SSM_* variables inherited;
    /// `ulimit` puts it under `ulimit -v`.
    fn run(&self, bin: &str, args: &[&str], env: &[(&str, &str)], ulimit: bool) -> Ran {
        let mut cmd = if ulimit {
            let mut c = Command::new("sh");
            c.arg("-c")
                .arg(format!("ulimit -v {ULIMIT_V_KB}; exec \"$0\" \"$@\""))
                .arg(bin);
            c
        } else {
            Command::new(bin)
        };
        cmd.args(args)
            .env("HOME", self.path("home"))
            .env("TZ", "UTC")
            .env_remove("RUST_LOG")
            .env_remove("CASO_LOCK_PATH");
        for (k, _) in std::env::vars() {
            if k.starts_with("CASO_") || k.starts_with("SSM_") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(env.iter().copied());
        let start = Instant::now();
        let o: Output = cmd.output().unwrap();
        let took = start.elapsed();
        Ran {
            code: o.status.code().unwrap_or(-1),
            out: String::from_utf8_lossy(&o.stdout).into_owned(),
            err: String::from_utf8_lossy(&o.stderr).into_owned(),
            log: std::fs::read_to_string(self.path("caso.log")).unwrap_or_default(),
            took,
        }
    }

    /// [`Site::caso_conf`] with the mock's password.
    fn mock_conf(&self, m: &mock::Mock) -> String {
        let conf = self.caso_conf(&format!("{}/identity/", m.base), "", "");
        let text = std::fs::read_to_string(&conf).unwrap();
        self.write("caso.conf", &text.replace(SECRET, mock::PASSWORD))
    }

    fn caso(&self, args: &[&str]) -> Ran {
        self.run(CASO, args, &[], false)
    }
}

/// A Keystone that only counts the connections made to it.
struct Counter {
    url: String,
    count: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Counter {
    fn start() -> Counter {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let url = format!("http://{}/identity/v3", l.local_addr().unwrap());
        let count = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (count.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok(_) => {
                        c.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Counter { url, count, stop }
    }

    fn connections(&self) -> usize {
        // Let a connection made just before exit be counted.
        std::thread::sleep(Duration::from_millis(50));
        self.count.load(Ordering::SeqCst)
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The line of `needle` in `text`, 1-based.
fn line_of(text: &str, needle: &str) -> usize {
    1 + text
        .lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in {text}"))
}

fn sender_cfg(site: &Site, extra: &str) -> String {
    let d = site.dir.path().display();
    std::fs::create_dir_all(site.path("queue")).unwrap();
    format!(
        "[sender]\nprotocol: AMS\n[broker]\nhost: 127.0.0.1\n[certificates]\n\
         certificate: {d}/none.pem\nkey: {d}/none.key\n[messaging]\ndestination: d\n\
         ams_project: accounting\npath: {d}/queue\n[logging]\nconsole: true\n{extra}"
    )
}

// ---- class 7: secrets in errors ------------------------------------------

#[test]
fn class7_a_malformed_line_never_shows_its_value() {
    let site = Site::new();
    let k = Counter::start();
    // (name, where, text added, expected error after "<file>:<line>: ")
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "password without separator",
            "auth",
            "password Pw-S3cr3t-7f3a",
            "[keystone_auth] password: expected 'password = value' or 'password: value' (the rest of the line is not shown)",
        ),
        (
            "application credential secret with a tab",
            "auth",
            "application_credential_secret\tPw-S3cr3t-7f3a",
            "[keystone_auth] application_credential_secret: expected",
        ),
        (
            "a bare secret in [DEFAULT]",
            "default",
            "Pw-S3cr3t-7f3a",
            "expected 'key = value' or 'key: value' (the line is not shown: it may hold a secret)",
        ),
        (
            "a non-secret option too: the line may be anything",
            "default",
            "region_name Pw-S3cr3t-7f3a",
            "[DEFAULT] region_name: expected 'region_name = value'",
        ),
    ];
    for (name, at, line, want) in cases {
        let (default, auth) = if *at == "auth" {
            ("", *line)
        } else {
            (*line, "")
        };
        let conf = site.caso_conf(&k.url, default, auth);
        let text = std::fs::read_to_string(&conf).unwrap();
        let n = line_of(&text, line);
        let r = site.caso(&["--config-file", &conf]);
        r.expect(name, 2, &format!("{conf}:{n}: {want}"));
    }
    // In a --config-dir file, with no --config-file.
    let d = site.path("conf.d");
    site.write(
        "conf.d/50-secret.conf",
        "[keystone_auth]\n\naccess_token Pw-S3cr3t-7f3a\n",
    );
    let r = site.caso(&["--config-dir", d.to_str().unwrap(), "--print-config"]);
    r.expect(
        "config-dir file",
        2,
        &format!(
            "{}:3: [keystone_auth] access_token: expected",
            d.join("50-secret.conf").display()
        ),
    );
    assert_eq!(k.connections(), 0);
}

#[test]
fn class7_sender_cfg_malformed_lines_never_show_their_value() {
    let site = Site::new();
    for (name, extra, want) in [
        (
            "token without separator",
            "[messaging]\ntoken Pw-S3cr3t-7f3a\n",
            "[messaging] token: expected 'token = value' or 'token: value'",
        ),
        (
            "uppercase key is still the token (configparser lowercases)",
            "[messaging]\nTOKEN Pw-S3cr3t-7f3a\n",
            "[messaging] token: expected",
        ),
        (
            "a bare secret",
            "[broker]\nPw-S3cr3t-7f3a\n",
            "expected 'key = value' or 'key: value' (the line is not shown: it may hold a secret)",
        ),
    ] {
        let text = sender_cfg(&site, extra);
        let cfg = site.write("sender.cfg", &text);
        let n = line_of(&text, "S3cr3t");
        let r = site.run(SSMSEND, &["-c", &cfg], &[], false);
        r.expect(name, 2, &format!("{cfg}:{n}: {want}"));
        let r = site.run(SSMSEND, &["-c", &cfg, "--print-config"], &[], false);
        r.expect(name, 2, &format!("{cfg}:{n}: {want}"));
    }
}

#[test]
fn class7_a_value_interpolated_from_a_secret_is_a_secret() {
    let site = Site::new();
    let k = Counter::start();
    // --print-config masks it, wherever it lands.
    let conf = site.caso_conf(
        &k.url,
        "service_name = $keystone_auth.password",
        "project_name = x-${password}-y",
    );
    let r = site.caso(&["--config-file", &conf, "--print-config"]);
    assert_eq!(r.code, 0, "{}", r.err);
    r.no_secret("print-config");
    assert!(r.out.contains("service_name = ****"), "{}", r.out);
    assert!(r.out.contains("project_name = ****"), "{}", r.out);
    assert!(
        r.out.contains("from \"$keystone_auth.password\""),
        "the reference itself may be shown: {}",
        r.out
    );

    // An error about such a value does not quote it (and nothing is sent).
    let conf = site.caso_conf(&k.url, "dry_run = $keystone_auth.password", "");
    let n = line_of(&std::fs::read_to_string(&conf).unwrap(), "dry_run");
    let r = site.caso(&["--config-file", &conf]);
    r.expect(
        "bool from a secret",
        2,
        &format!("{conf}:{n}: [DEFAULT] dry_run: invalid value (not shown: it holds a secret)"),
    );

    // The secret from the environment, the reference in the file.
    let conf = site.caso_conf(&k.url, "concurrency = $keystone_auth.access_token", "");
    let r = site.run(
        CASO,
        &["--config-file", &conf],
        &[("CASO_KEYSTONE_AUTH__ACCESS_TOKEN", SECRET)],
        false,
    );
    r.expect(
        "int from an env secret",
        2,
        "[DEFAULT] concurrency: invalid value (not shown: it holds a secret)",
    );
    assert_eq!(k.connections(), 0);
}

// ---- class 8: interpolation bombs -----------------------------------------

/// String options of [keystone_auth], to chain.
const KA_STRINGS: [&str; 18] = [
    "auth_url",
    "system_scope",
    "domain_id",
    "domain_name",
    "project_id",
    "project_name",
    "project_domain_id",
    "project_domain_name",
    "default_domain_id",
    "default_domain_name",
    "user_id",
    "username",
    "user_domain_id",
    "user_domain_name",
    "application_credential_id",
    "application_credential_name",
    "identity_provider",
    "protocol",
];

/// `[keystone_auth]` where each option refers to the next `times` times; the
/// last holds `seed`.
fn chain(times: usize, n: usize, seed: &str) -> String {
    let mut s = String::from("[keystone_auth]\n");
    for i in 0..n {
        let next = KA_STRINGS[i + 1];
        s.push_str(&format!(
            "{} = {}\n",
            KA_STRINGS[i],
            format!("${{{next}}}").repeat(times)
        ));
    }
    s.push_str(&format!("{} = {seed}\n", KA_STRINGS[n]));
    s
}

#[test]
fn class8_interpolation_bombs_end_with_exit_2_naming_the_option() {
    let site = Site::new();
    let big = "x".repeat(5000);
    let cases: Vec<(&str, String, String)> = vec![
        (
            "doubling, 17 levels",
            chain(2, 17, &big),
            "interpolation expands this value beyond 65536 bytes".into(),
        ),
        (
            "eightfold, 12 levels (68 GB unbounded)",
            chain(8, 12, "abcdefgh"),
            "interpolation expands this value beyond 65536 bytes".into(),
        ),
        (
            "a deep chain",
            chain(1, 17, "end"),
            "[keystone_auth] auth_url: interpolation nests references more than 16 deep (via $system_scope)".into(),
        ),
        (
            "a cycle",
            "[DEFAULT]\nsite_name = $region_name\nregion_name = ${default_vo}\ndefault_vo = $site_name\n".into(),
            "interpolation loop: [DEFAULT] default_vo -> [DEFAULT] site_name -> [DEFAULT] region_name -> [DEFAULT] default_vo".into(),
        ),
        (
            "cross-section doubling",
            format!(
                "[DEFAULT]\nsite_name = ${{region_name}}${{region_name}}${{region_name}}${{region_name}}\nregion_name = {}\n\
                 [keystone_auth]\nusername = $DEFAULT.site_name$DEFAULT.site_name$DEFAULT.site_name$DEFAULT.site_name\n",
                "y".repeat(10_000)
            ),
            "[keystone_auth] username: interpolation expands this value beyond 65536 bytes".into(),
        ),
        (
            "self reference",
            "[DEFAULT]\ncaso_tag = a$caso_tag\n".into(),
            "[DEFAULT] caso_tag: interpolation loop: [DEFAULT] caso_tag -> [DEFAULT] caso_tag".into(),
        ),
    ];
    for (name, text, want) in cases {
        let conf = site.write("bomb.conf", &text);
        let r = site.run(CASO, &["--config-file", &conf, "--print-config"], &[], true);
        r.expect(name, 2, &want);
        // file:line and the option: "<conf>:<line>: [section] key: interpolation".
        let line = r
            .err
            .lines()
            .find(|l| l.contains("interpolation"))
            .unwrap_or_else(|| panic!("{name}: {}", r.err));
        let at = line.find(&format!("{conf}:")).expect("names the file");
        let rest = &line[at + conf.len() + 1..];
        let (n, rest) = rest.split_once(": [").expect("line then option");
        let n: usize = n.parse().expect("a line number");
        let key = rest.split_once("] ").unwrap().1.split(':').next().unwrap();
        let on_line = text.lines().nth(n - 1).unwrap();
        assert!(
            on_line.starts_with(&format!("{key} =")),
            "{name}: line {n} is {on_line:?}, error names {key}"
        );
        assert!(
            r.err.len() < 4096,
            "{name}: {} bytes of stderr",
            r.err.len()
        );
    }
}

#[test]
fn class8_configuration_files_are_read_with_a_cap() {
    let site = Site::new();
    let k = Counter::start();
    // A caso.conf that never ends.
    let r = site.run(
        CASO,
        &["--config-file", "/dev/zero", "--print-config"],
        &[],
        true,
    );
    r.expect(
        "caso.conf /dev/zero",
        2,
        "/dev/zero: larger than 16777216 bytes: not a configuration file",
    );
    // A voms.json that never ends: before any request.
    let conf = site.caso_conf(&k.url, "", "");
    let r = site.run(
        CASO,
        &["--config-file", &conf, "--mapping-file", "/dev/zero"],
        &[],
        true,
    );
    r.expect(
        "voms.json /dev/zero",
        2,
        "invalid VO mapping file /dev/zero: /dev/zero: larger than 16777216 bytes",
    );
    // A sender.cfg that never ends.
    let r = site.run(SSMSEND, &["-c", "/dev/zero"], &[], true);
    r.expect(
        "sender.cfg /dev/zero",
        2,
        "/dev/zero: larger than 16777216 bytes",
    );
    assert_eq!(k.connections(), 0);
}

// ---- class 9: configuration errors before any request --------------------

#[test]
fn class9_bad_settings_exit_2_before_any_request() {
    let site = Site::new();
    let k = Counter::start();
    let soon = cloud_accounting::time::Timestamp::now()
        .add_seconds(7200)
        .truncate_to_second()
        .to_string();
    let soon_args = ["--extract-from", soon.as_str()];
    // "@" in the expected text: "<caso.conf>:<line of the option>".
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a str,
        &'a [&'a str],
        &'a [(&'a str, &'a str)],
        String,
    );
    let cases: Vec<Case> = vec![
        (
            "extract_from in the future",
            "extract_from = 2999-01-01",
            "",
            &[],
            &[],
            "@ [DEFAULT] extract_from: 2999-01-01T00:00:00Z is in the future".into(),
        ),
        (
            "--extract-from two hours ahead",
            "",
            "",
            &soon_args,
            &[],
            format!("command-line flag --extract-from: [DEFAULT] extract_from: {soon} is in the future"),
        ),
        (
            "--extract-to before 1970",
            "",
            "",
            &["--extract-to", "1969-12-31T23:59:59Z"],
            &[],
            "command-line flag --extract-to: [DEFAULT] extract_to: 1969-12-31T23:59:59Z is before 1970-01-01".into(),
        ),
        (
            "extract_from before 1970 from the environment",
            "",
            "",
            &[],
            &[("CASO_DEFAULT__EXTRACT_FROM", "0001-01-01")],
            "environment variable CASO_DEFAULT__EXTRACT_FROM: [DEFAULT] extract_from: 0001-01-01T00:00:00Z is before 1970-01-01".into(),
        ),
        (
            "extract_from after extract_to",
            "extract_from = 2026-11-02\nextract_to = 2026-11-01",
            "",
            &[],
            &[],
            "@ [DEFAULT] extract_from: 2026-11-02T00:00:00Z is after extract_to 2026-11-01T00:00:00Z".into(),
        ),
        (
            "timeout = 0",
            "",
            "timeout = 0",
            &[],
            &[],
            "@ [keystone_auth] timeout: must be more than 0".into(),
        ),
        (
            "timeout = 0s",
            "",
            "timeout = 0s",
            &[],
            &[],
            "@ [keystone_auth] timeout: must be more than 0".into(),
        ),
    ];
    for (name, default, auth, args, env, want) in cases {
        let conf = site.caso_conf(&k.url, default, auth);
        let mut a = vec!["--config-file", conf.as_str()];
        a.extend_from_slice(args);
        let r = site.run(CASO, &a, env, false);
        let text = std::fs::read_to_string(&conf).unwrap();
        let needle = if auth.is_empty() {
            default.lines().next().unwrap_or("")
        } else {
            auth
        };
        let want = if needle.is_empty() {
            want
        } else {
            // The last line setting it wins (the conf has a default timeout).
            let n = text
                .lines()
                .collect::<Vec<_>>()
                .iter()
                .rposition(|l| *l == needle)
                .unwrap()
                + 1;
            want.replace('@', &format!("{conf}:{n}:"))
        };
        r.expect(name, 2, &want);
        assert_eq!(k.connections(), 0, "{name}: a request was made");
    }
}

#[test]
fn class9_a_bad_voms_json_exits_2_naming_the_key_before_any_request() {
    let site = Site::new();
    let k = Counter::start();
    let voms = site.path("voms.json").display().to_string();
    for (name, json, want) in [
        (
            "empty VO name",
            json!({"": {"projects": ["p-demo"]}}),
            "VO \"\": the VO name is empty",
        ),
        (
            "blank VO name",
            json!({"   ": {"projects": ["p-demo"]}}),
            "VO \"   \": the VO name is empty",
        ),
        (
            "a VO name that would inject an APEL field",
            json!({"vo\nSiteName: EVIL": {"projects": ["p-demo"]}}),
            "VO \"vo\\nSiteName: EVIL\": the VO name contains a control character",
        ),
        (
            "an empty project name",
            json!({"vo.ok": {"projects": ["p-demo", ""]}}),
            "VO \"vo.ok\": projects[1]: the project name is empty",
        ),
        (
            "old key with a padded name",
            json!({"vo.ok": {"tenants": [" p-demo"]}}),
            "VO \"vo.ok\": tenants[0]: the project name has leading or trailing whitespace",
        ),
        (
            "not JSON at all",
            json!("just a string"),
            "expected a JSON object of VOs",
        ),
    ] {
        std::fs::write(site.path("voms.json"), json.to_string()).unwrap();
        let conf = site.caso_conf(&k.url, "", "");
        let r = site.caso(&["--config-file", &conf]);
        r.expect(name, 2, &format!("invalid VO mapping file {voms}: {want}"));
        let r = site.caso(&["--config-file", &conf, "projects"]);
        r.expect(name, 2, &format!("invalid VO mapping file {voms}: {want}"));
        assert_eq!(k.connections(), 0, "{name}: a request was made");
    }
}

#[test]
fn class9_sender_timeouts_of_zero_are_configuration_errors() {
    let site = Site::new();
    for key in ["connect_timeout", "receipt_timeout", "idle_timeout"] {
        let text = sender_cfg(&site, "").replace(
            "[sender]\nprotocol: AMS\n",
            &format!("[sender]\nprotocol: AMS\n{key}: 0\n"),
        );
        let cfg = site.write("sender.cfg", &text);
        let r = site.run(SSMSEND, &["-c", &cfg], &[], false);
        r.expect(
            key,
            2,
            &format!("{cfg}:3: [sender] {key}: must be more than 0"),
        );
    }
}

/// The in-test OpenStack with two projects; caso-extract runs against it
/// with the real clock. p-demo holds `demo_server`.
async fn mock_with(demo_server: serde_json::Value) -> mock::Mock {
    let m = mock::Mock::start().await;
    m.with(|s| {
        s.servers = vec![
            demo_server,
            mock::server("0c000000-0000-4000-8000-000000000003", "p-other"),
        ];
        s.volumes = vec![];
        s.fips = vec![];
    });
    m
}

fn run_blocking(site: &Site, args: &[&str]) -> Ran {
    tokio::task::block_in_place(|| site.caso(args))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn class9_record_times_out_of_range_fail_that_project_only() {
    for (name, field, value, want) in [
        (
            "created in year 1",
            "created",
            "0001-01-01T00:00:00Z",
            "created 0001-01-01T00:00:00Z is before 1970",
        ),
        (
            "created in 9999",
            "created",
            "9999-12-31T23:59:59Z",
            "created 9999-12-31T23:59:59Z is more than a day in the future",
        ),
        (
            "terminated before 1970",
            "OS-SRV-USG:terminated_at",
            "1960-01-01T00:00:00Z",
            "end (terminated_at, updated or usage ended_at) 1960-01-01T00:00:00Z is before 1970",
        ),
    ] {
        let site = Site::new();
        let id = "0a000000-0000-4000-8000-000000000001";
        let mut s = mock::server(id, "p-demo");
        s[field] = json!(value);
        let m = mock_with(s).await;
        let conf = site.mock_conf(&m);
        let r = run_blocking(&site, &["--config-file", &conf]);
        r.expect(name, 1, &format!("p-demo: nova server \"{id}\": {want}"));
        assert!(!r.err.contains("p-other:"), "{name}: {}", r.err);
        let spool = site.path("spool");
        assert!(
            cloud_accounting::lastrun::read(&spool, "p-demo")
                .unwrap()
                .is_none(),
            "{name}: p-demo keeps its lastrun"
        );
        assert!(
            cloud_accounting::lastrun::read(&spool, "p-other")
                .unwrap()
                .is_some(),
            "{name}: p-other goes on"
        );
        let published = spool_text(&site.path("outgoing"));
        assert!(
            published.contains("0c000000-0000-4000-8000-000000000003"),
            "{name}"
        );
        assert!(
            !published.contains(id),
            "{name}: a record of the bad server"
        );
        assert!(!published.contains("StartTime: -"), "{name}");
    }
}

/// Every byte in the dirq spool at `dir`.
fn spool_text(dir: &Path) -> String {
    let mut out = String::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push_str(&String::from_utf8_lossy(&std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn class9_hostile_lastrun_files_fail_that_project_with_a_short_error() {
    let outside = tempfile::tempdir().unwrap();
    let marker = outside.path().join("marker");
    std::fs::write(&marker, "MARKER-6b1d outside the spool").unwrap();
    let garbage = "G4rb4ge!".repeat(50 * 1024 * 1024 / 8);
    type Plant = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Plant, &str)> = vec![
        (
            "50 MB of garbage",
            Box::new(move |p: &Path| std::fs::write(p, &garbage).unwrap()),
            "more than 4096 bytes, starting \"G4rb4ge!G4rb4ge!G4rb4ge!G4rb4ge!G4rb4ge!...\"",
        ),
        (
            "a symlink out of the spool",
            Box::new({
                let m = marker.clone();
                move |p: &Path| std::os::unix::fs::symlink(&m, p).unwrap()
            }),
            "a symbolic link (never followed or read)",
        ),
        (
            "a FIFO",
            Box::new(|p: &Path| {
                let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
                assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
            }),
            "not a regular file (never followed or read)",
        ),
        (
            "a date before 1970",
            Box::new(|p: &Path| std::fs::write(p, "0001-01-01 00:00:00+00:00").unwrap()),
            "0001-01-01T00:00:00Z is before 1970",
        ),
        (
            "a long line with a control character",
            Box::new(|p: &Path| {
                std::fs::write(p, format!("\u{1b}[2J{}", "9".repeat(3000))).unwrap()
            }),
            "invalid date/time \"\\u{1b}[2J999999999999999999999999999999999999...\": expected a 4-digit year",
        ),
    ];
    for (name, plant, want) in cases {
        let site = Site::new();
        let m = mock_with(mock::server(
            "0a000000-0000-4000-8000-000000000001",
            "p-demo",
        ))
        .await;
        let lastrun = cloud_accounting::lastrun::path(&site.path("spool"), "p-demo");
        plant(&lastrun);
        let conf = site.mock_conf(&m);
        let r = run_blocking(&site, &["--config-file", &conf]);
        r.expect(
            name,
            1,
            &format!(
                "p-demo: lastrun file: invalid lastrun file {}: {want}",
                lastrun.display()
            ),
        );
        assert!(
            r.all().len() < 16 * 1024,
            "{name}: {} bytes of output",
            r.all().len()
        );
        assert!(
            !r.all().contains("MARKER-6b1d"),
            "{name}: read outside the spool"
        );
        assert!(
            cloud_accounting::lastrun::read(&site.path("spool"), "p-other")
                .unwrap()
                .is_some(),
            "{name}: p-other goes on"
        );
        assert!(!spool_text(&site.path("outgoing")).contains("MARKER-6b1d"));
        assert_eq!(
            std::fs::read_to_string(&marker).unwrap(),
            "MARKER-6b1d outside the spool"
        );
    }
}

// ---- class 10: messages that mislead ----------------------------------------

#[test]
fn class10_messages_say_what_happened() {
    let site = Site::new();
    // --config-dir alone: its file was read, so no "no configuration file" warning.
    let d = site.path("conf.d");
    site.write("conf.d/a.conf", "[DEFAULT]\nsite_name = FROM-DIR\n");
    let r = site.caso(&["--config-dir", d.to_str().unwrap(), "--print-config"]);
    assert_eq!(r.code, 0, "{}", r.err);
    assert!(!r.err.contains("no configuration file"), "{}", r.err);
    assert!(
        r.out
            .contains(&format!("# file read: {}/a.conf", d.display()))
    );
    assert!(r.out.contains("site_name = FROM-DIR"), "{}", r.out);
    r.no_secret("config-dir");

    // An empty --config-dir alone: the warning names it.
    let empty = site.path("empty.d");
    std::fs::create_dir_all(&empty).unwrap();
    let r = site.caso(&["--config-dir", empty.to_str().unwrap(), "--print-config"]);
    assert_eq!(r.code, 0, "{}", r.err);
    assert!(
        r.err
            .contains(&format!("nor {}/*.conf); using defaults", empty.display())),
        "{}",
        r.err
    );

    // A bad $ref in [DEFAULT] names [DEFAULT] once.
    let conf = site.write("ref.conf", "[DEFAULT]\nsite_name = $nosuch\n");
    let r = site.caso(&["--config-file", &conf, "--print-config"]);
    r.expect(
        "bad ref in DEFAULT",
        2,
        &format!("{conf}:2: [DEFAULT] site_name: $nosuch does not name an option of [DEFAULT] (write $$ for a literal $)"),
    );
    assert!(!r.err.contains("[DEFAULT] or [DEFAULT]"));
    // ... and in another section, both.
    let conf = site.write("ref2.conf", "[keystone_auth]\n\nusername = ${nosuch}\n");
    let r = site.caso(&["--config-file", &conf, "--print-config"]);
    r.expect(
        "bad ref in keystone_auth",
        2,
        &format!("{conf}:3: [keystone_auth] username: $nosuch does not name an option of [keystone_auth] or [DEFAULT]"),
    );
}

#[test]
fn class10_each_cause_is_printed_once() {
    let site = Site::new();
    let dir = site.path("a-directory");
    std::fs::create_dir_all(&dir).unwrap();
    let dir_s = dir.display().to_string();
    let eisdir = std::io::Error::from_raw_os_error(libc::EISDIR).to_string();
    let once = |name: &str, r: &Ran, want: &str| {
        r.expect(name, 2, want);
        assert_eq!(r.err.matches(&eisdir).count(), 1, "{name}: {}", r.err);
    };
    let r = site.caso(&["--config-file", &dir_s]);
    once(
        "caso.conf is a directory",
        &r,
        &format!("caso-extract: error: {dir_s}: {eisdir}"),
    );
    let r = site.run(SSMSEND, &["-c", &dir_s], &[], false);
    once(
        "sender.cfg is a directory",
        &r,
        &format!("ssmsend: error: {dir_s}: {eisdir}"),
    );
    // The certificate: an error type that prints its source and returns it.
    let text = sender_cfg(&site, "").replace(
        &format!("certificate: {}/none.pem", site.dir.path().display()),
        &format!("certificate: {dir_s}"),
    );
    let cfg = site.write("sender.cfg", &text);
    let r = site.run(SSMSEND, &["-c", &cfg], &[], false);
    once(
        "certificate is a directory",
        &r,
        &format!("cannot read certificate {dir_s}: {eisdir}"),
    );
    let k = Counter::start();
    let conf = site.caso_conf(&k.url, "", "");
    let r = site.caso(&["--config-file", &conf, "--mapping-file", &dir_s]);
    once(
        "voms.json is a directory",
        &r,
        &format!("cannot read VO mapping file {dir_s}: {eisdir}"),
    );
    assert_eq!(k.connections(), 0);
}
