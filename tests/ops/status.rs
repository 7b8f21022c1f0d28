//! `caso-extract status` and `ssmsend status`, through the real binaries,
//! on spools built file by file: empty, healthy, stale and broken (exact
//! tables, `--json`), the `--check` probe's lines, perfdata and exit codes
//! for each threshold, and status beside a writer adding and removing
//! messages. Every run passes the hidden `--now`, so ages are exact.

use std::fs::{self, File};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cloud_accounting::spool::{Layout, Queue};
use cloud_accounting::time::Timestamp;
use serde_json::Value;

use crate::support::send::{SSMSEND, SenderCfg};

const NOW: &str = "2026-12-02T12:00:00Z";

fn at(s: &str) -> Timestamp {
    Timestamp::parse(s).unwrap()
}

fn system_time(s: &str) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(at(s).unix_seconds() as u64)
}

/// A site's files under one temporary directory: caso.conf (spooldir
/// `caso/`, the ssm messenger's queue `apel/outgoing`) and sender.cfg
/// (the same queue).
struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn new() -> Site {
        let site = Site {
            dir: tempfile::tempdir().unwrap(),
        };
        let d = site.dir.path().display();
        fs::write(
            site.path("caso.conf"),
            format!(
                "[DEFAULT]\nsite_name = TEST-SITE\nmessengers = ssm\nspooldir = {d}/caso\n\n\
                 [ssm]\noutput_path = {d}/apel/outgoing\n"
            ),
        )
        .unwrap();
        SenderCfg::stomp(61613, false, "eu-egi-cloud-accounting")
            .queue(&site.queue(), Layout::Dirq)
            .write(&site.path("sender.cfg"));
        site
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn spooldir(&self) -> PathBuf {
        self.path("caso")
    }

    fn queue(&self) -> PathBuf {
        self.path("apel/outgoing")
    }

    /// The temporary directory's path shown as `$D` in expected output.
    fn redact(&self, s: &str) -> String {
        s.replace(&self.dir.path().display().to_string(), "$D")
    }

    fn lastrun(&self, project: &str, t: &str) {
        fs::create_dir_all(self.spooldir()).unwrap();
        fs::write(
            self.spooldir().join(format!("lastrun.{project}")),
            at(t).to_python_str(),
        )
        .unwrap();
    }

    fn extract_report(&self, v: Value) {
        fs::create_dir_all(self.spooldir()).unwrap();
        fs::write(
            self.spooldir().join("caso-extract.last-run.json"),
            serde_json::to_vec_pretty(&v).unwrap(),
        )
        .unwrap();
    }

    fn send_report(&self, v: Value) {
        fs::create_dir_all(self.path("apel")).unwrap();
        fs::write(
            self.path("apel/ssmsend.last-run.json"),
            serde_json::to_vec_pretty(&v).unwrap(),
        )
        .unwrap();
    }

    /// A dirq element added at `t` (as Python dirq names it, `n` its
    /// random digit), returning its id.
    fn message(&self, t: &str, n: u32) -> String {
        let secs = at(t).unix_seconds() as u64;
        let dir = format!("{:08x}", secs / 60 * 60);
        let name = format!("{secs:08x}00000{n:01x}");
        fs::create_dir_all(self.queue().join(&dir)).unwrap();
        fs::write(
            self.queue().join(&dir).join(&name),
            b"APEL-cloud-message: v0.4\n",
        )
        .unwrap();
        format!("{dir}/{name}")
    }

    /// Locks `id` as dirq does (hard link `.lck`) at time `t`.
    fn lock(&self, id: &str, t: &str) {
        let element = self.queue().join(id);
        let lock = self.queue().join(format!("{id}.lck"));
        fs::hard_link(&element, &lock).unwrap();
        File::options()
            .write(true)
            .open(&lock)
            .unwrap()
            .set_modified(system_time(t))
            .unwrap();
    }

    fn reject(&self, name: &str, t: &str, reason: Option<&str>) {
        let dir = self.path("apel/reject");
        fs::create_dir_all(&dir).unwrap();
        let f = File::create(dir.join(name)).unwrap();
        f.set_modified(system_time(t)).unwrap();
        if let Some(r) = reason {
            fs::write(dir.join(format!("{name}.reason")), format!("{r}\n")).unwrap();
        }
    }

    /// `caso-extract status --now NOW ARGS` on this site.
    fn caso_command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_caso-extract"));
        c.arg("--config-file")
            .arg(self.path("caso.conf"))
            .arg("status")
            .args(["--now", NOW])
            .args(args)
            .env_remove("RUST_LOG");
        c
    }

    /// `ssmsend status --now NOW ARGS` on this site.
    fn ssmsend_command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(SSMSEND);
        c.arg("-c")
            .arg(self.path("sender.cfg"))
            .arg("status")
            .args(["--now", NOW])
            .args(args)
            .env_remove("RUST_LOG");
        c
    }

    fn caso(&self, args: &[&str]) -> (i32, String) {
        self.output(self.caso_command(args))
    }

    fn ssmsend(&self, args: &[&str]) -> (i32, String) {
        self.output(self.ssmsend_command(args))
    }

    /// Exit code and stdout (the site's path redacted); no panic on stderr.
    fn output(&self, mut cmd: Command) -> (i32, String) {
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{stderr}");
        (
            out.status.code().unwrap_or(-1),
            self.redact(&String::from_utf8_lossy(&out.stdout)),
        )
    }

    fn caso_json(&self) -> Value {
        let (code, out) = self.caso(&["--json"]);
        assert_eq!(code, 0, "{out}");
        serde_json::from_str(&out).unwrap()
    }

    fn ssmsend_json(&self) -> Value {
        let (code, out) = self.ssmsend(&["--json"]);
        assert_eq!(code, 0, "{out}");
        serde_json::from_str(&out).unwrap()
    }
}

fn extract_report_ok(projects: &[(&str, &str, &str)]) -> Value {
    let projects: Vec<Value> = projects
        .iter()
        .map(|(id, from, to)| {
            serde_json::json!({
                "id": id,
                "period": {"from": from, "to": to},
                "records": {"cloud": 3, "ip": 1},
                "messages": 1, "records_spooled": 4, "records_pushed": 0, "pushed": {},
                "lastrun": to, "errors": []
            })
        })
        .collect();
    serde_json::json!({
        "schema": 1, "program": "caso-extract", "version": "0.1.0",
        "started": "2026-12-02T11:00:01Z", "ended": "2026-12-02T11:00:05Z",
        "outcome": "ok", "projects": projects, "not_started": [], "stopped": [],
        "requests": {"identity": 3, "compute": 3, "image": 1, "volume": 0, "network": 0, "tokens": 1, "prometheus": 0},
        "messengers": ["ssm spool x"]
    })
}

fn send_report(outcome: &str, sent: u64, left: u64, error: Option<&str>) -> Value {
    serde_json::json!({
        "schema": 1, "program": "ssmsend", "version": "0.1.0",
        "started": "2026-12-02T11:30:00Z", "ended": "2026-12-02T11:30:02Z",
        "outcome": outcome, "queue": "x",
        "destinations": [{"destination": "eu-egi-cloud-accounting", "via": "broker 127.0.0.1:61613",
            "found": sent + left, "sent": sent, "rejected": 0, "locked_elsewhere": 0, "left": left,
            "not_removed": 0, "bad_set_aside": 0, "bad_left": 0, "error": error}],
        "seconds": 2.0
    })
}

fn same(actual: (i32, String), code: i32, expected: &str) {
    assert_eq!(actual, (code, expected.to_owned()), "\n{}", actual.1);
}

#[test]
fn an_empty_site() {
    let site = Site::new();
    same(
        site.caso(&[]),
        0,
        r#"caso-extract status at 2026-12-02T12:00:00Z (spooldir $D/caso)
Projects: none extracted yet
Last run: none recorded
Queue $D/apel/outgoing (dirq): does not exist (nothing spooled yet?)
Last send: none recorded
"#,
    );
    // The whole JSON, exactly.
    same(
        site.caso(&["--json"]),
        0,
        r#"{
  "now": "2026-12-02T12:00:00Z",
  "spooldir": "$D/caso",
  "projects": [],
  "last_run": null,
  "queue": {
    "path": "$D/apel/outgoing",
    "layout": "dirq",
    "exists": false,
    "messages": 0,
    "oldest_added": null,
    "oldest_age_seconds": null,
    "locked": [],
    "temporary_files": 0,
    "not_messages": [],
    "rejected": {
      "dir": "$D/apel/reject",
      "count": 0,
      "newest": []
    }
  },
  "last_send": null,
  "problems": []
}
"#,
    );
    let v = site.caso_json();
    assert_eq!(v["projects"], serde_json::json!([]));
    assert_eq!(v["queue"]["exists"], false);
    assert_eq!(v["last_run"], Value::Null);
    same(
        site.caso(&["--check"]),
        2,
        r#"CRITICAL - nothing extracted yet: no lastrun file in $D/caso | projects=0;;;0 never_extracted=0;;;0 oldest_lastrun_age=0s;10800;93600;0 failed_projects=0;;;0
"#,
    );
    same(
        site.ssmsend(&[]),
        0,
        r#"ssmsend status at 2026-12-02T12:00:00Z
Queue $D/apel/outgoing (dirq): does not exist (nothing spooled yet?)
Last send: none recorded
"#,
    );
    same(
        site.ssmsend(&["--check"]),
        3,
        r#"UNKNOWN - queue $D/apel/outgoing does not exist
"#,
    );
}

#[test]
fn a_healthy_site() {
    let site = Site::new();
    site.lastrun("p1", "2026-12-02T11:00:00Z");
    site.lastrun("p2", "2026-12-02T11:00:00Z");
    site.extract_report(extract_report_ok(&[
        ("p1", "2026-12-02T10:00:00Z", "2026-12-02T11:00:00Z"),
        ("p2", "2026-12-02T10:00:00Z", "2026-12-02T11:00:00Z"),
    ]));
    site.message("2026-12-02T11:00:03Z", 1);
    site.message("2026-12-02T11:00:04Z", 2);
    site.send_report(send_report("ok", 5, 0, None));
    same(
        site.caso(&[]),
        0,
        r#"caso-extract status at 2026-12-02T12:00:00Z (spooldir $D/caso)
Projects:
  PROJECT  LASTRUN               AGE    LAST PERIOD                                   LAST RUN
  p1       2026-12-02T11:00:00Z  1h00m  2026-12-02T10:00:00Z to 2026-12-02T11:00:00Z  ok
  p2       2026-12-02T11:00:00Z  1h00m  2026-12-02T10:00:00Z to 2026-12-02T11:00:00Z  ok
Last run: ok, ended 2026-12-02T11:00:05Z (59m55s ago): 2 projects, 0 failed, 8 records extracted
Queue $D/apel/outgoing (dirq): 2 messages, oldest added 2026-12-02T11:00:03Z (59m57s ago)
  locked: 0, temporary files: 0, not messages: 0
Rejected $D/apel/reject: 0
Last send: ok, ended 2026-12-02T11:30:02Z (29m58s ago): 5 found, 5 sent, 0 rejected, 0 left (eu-egi-cloud-accounting via broker 127.0.0.1:61613)
"#,
    );
    same(
        site.caso(&["--check"]),
        0,
        r#"OK - 2 projects, oldest lastrun 1h00m ago; last run ok 59m55s ago | projects=2;;;0 never_extracted=0;;;0 oldest_lastrun_age=3600s;10800;93600;0 failed_projects=0;;;0 last_run_age=3595s;;;0
"#,
    );
    same(
        site.ssmsend(&[]),
        0,
        r#"ssmsend status at 2026-12-02T12:00:00Z
Queue $D/apel/outgoing (dirq): 2 messages, oldest added 2026-12-02T11:00:03Z (59m57s ago)
  locked: 0, temporary files: 0, not messages: 0
Rejected $D/apel/reject: 0
Last send: ok, ended 2026-12-02T11:30:02Z (29m58s ago): 5 found, 5 sent, 0 rejected, 0 left (eu-egi-cloud-accounting via broker 127.0.0.1:61613)
"#,
    );
    same(
        site.ssmsend(&["--check"]),
        0,
        r#"OK - 2 messages queued, oldest added 59m57s ago; last send ok 29m58s ago | queued=2;;;0 oldest_age=3597s;25200;108000;0 rejected=0;0;;0 locked=0;;;0 not_messages=0;0;;0 last_send_age=1798s;;;0
"#,
    );
    let v = site.caso_json();
    assert_eq!(v["projects"][0]["id"], "p1");
    assert_eq!(v["projects"][0]["lastrun_age_seconds"], 3600);
    assert_eq!(v["projects"][1]["outcome"], "ok");
    assert_eq!(v["last_run"]["outcome"], "ok");
    assert_eq!(
        v["last_run"]["records"],
        serde_json::json!({"cloud": 6, "ip": 2})
    );
    assert_eq!(v["queue"]["messages"], 2);
    assert_eq!(v["queue"]["oldest_age_seconds"], 3597);
    assert_eq!(v["last_send"]["sent"], 5);
    same(
        site.ssmsend(&["--json"]),
        0,
        r#"{
  "now": "2026-12-02T12:00:00Z",
  "queue": {
    "path": "$D/apel/outgoing",
    "layout": "dirq",
    "exists": true,
    "messages": 2,
    "oldest_added": "2026-12-02T11:00:03Z",
    "oldest_age_seconds": 3597,
    "locked": [],
    "temporary_files": 0,
    "not_messages": [],
    "rejected": {
      "dir": "$D/apel/reject",
      "count": 0,
      "newest": []
    }
  },
  "last_send": {
    "file": "$D/apel/ssmsend.last-run.json",
    "started": "2026-12-02T11:30:00Z",
    "ended": "2026-12-02T11:30:02Z",
    "age_seconds": 1798,
    "outcome": "ok",
    "error": null,
    "destination": "eu-egi-cloud-accounting",
    "via": "broker 127.0.0.1:61613",
    "found": 5,
    "sent": 5,
    "rejected": 0,
    "left": 0
  },
  "problems": []
}
"#,
    );
    same(
        site.caso(&["--json"]),
        0,
        r#"{
  "now": "2026-12-02T12:00:00Z",
  "spooldir": "$D/caso",
  "projects": [
    {
      "id": "p1",
      "lastrun": "2026-12-02T11:00:00Z",
      "lastrun_age_seconds": 3600,
      "period": {
        "from": "2026-12-02T10:00:00Z",
        "to": "2026-12-02T11:00:00Z"
      },
      "outcome": "ok",
      "error": null,
      "lastrun_error": null
    },
    {
      "id": "p2",
      "lastrun": "2026-12-02T11:00:00Z",
      "lastrun_age_seconds": 3600,
      "period": {
        "from": "2026-12-02T10:00:00Z",
        "to": "2026-12-02T11:00:00Z"
      },
      "outcome": "ok",
      "error": null,
      "lastrun_error": null
    }
  ],
  "last_run": {
    "file": "$D/caso/caso-extract.last-run.json",
    "started": "2026-12-02T11:00:01Z",
    "ended": "2026-12-02T11:00:05Z",
    "age_seconds": 3595,
    "outcome": "ok",
    "error": null,
    "projects": 2,
    "failed_projects": 0,
    "records": {
      "cloud": 6,
      "ip": 2
    }
  },
  "queue": {
    "path": "$D/apel/outgoing",
    "layout": "dirq",
    "exists": true,
    "messages": 2,
    "oldest_added": "2026-12-02T11:00:03Z",
    "oldest_age_seconds": 3597,
    "locked": [],
    "temporary_files": 0,
    "not_messages": [],
    "rejected": {
      "dir": "$D/apel/reject",
      "count": 0,
      "newest": []
    }
  },
  "last_send": {
    "file": "$D/apel/ssmsend.last-run.json",
    "started": "2026-12-02T11:30:00Z",
    "ended": "2026-12-02T11:30:02Z",
    "age_seconds": 1798,
    "outcome": "ok",
    "error": null,
    "destination": "eu-egi-cloud-accounting",
    "via": "broker 127.0.0.1:61613",
    "found": 5,
    "sent": 5,
    "rejected": 0,
    "left": 0
  },
  "problems": []
}
"#,
    );
    let s = site.ssmsend_json();
    assert_eq!(s["queue"]["messages"], 2);
    assert_eq!(s["queue"]["oldest_added"], "2026-12-02T11:00:03Z");
    assert_eq!(s["last_send"]["outcome"], "ok");
}

#[test]
fn a_stale_site_crosses_each_threshold() {
    let site = Site::new();
    site.lastrun("fresh", "2026-12-02T10:00:00Z");
    same(
        site.caso(&["--check"]),
        0,
        r#"OK - 1 project, oldest lastrun 2h00m ago | projects=1;;;0 never_extracted=0;;;0 oldest_lastrun_age=7200s;10800;93600;0 failed_projects=0;;;0
"#,
    );
    site.lastrun("late", "2026-12-02T08:00:00Z");
    same(
        site.caso(&["--check"]),
        1,
        r#"WARNING - project late last extracted 4h00m ago (more than 3h) | projects=2;;;0 never_extracted=0;;;0 oldest_lastrun_age=14400s;10800;93600;0 failed_projects=0;;;0
"#,
    );
    site.lastrun("lost", "2026-12-01T09:00:00Z");
    same(
        site.caso(&["--check"]),
        2,
        r#"CRITICAL - project lost last extracted 1d03h ago (more than 26h); project late last extracted 4h00m ago (more than 3h) | projects=3;;;0 never_extracted=0;;;0 oldest_lastrun_age=97200s;10800;93600;0 failed_projects=0;;;0
"#,
    );
    same(
        site.caso(&["--check", "--warn-age", "30h", "--crit-age", "2d"]),
        0,
        r#"OK - 3 projects, oldest lastrun 1d03h ago | projects=3;;;0 never_extracted=0;;;0 oldest_lastrun_age=97200s;108000;172800;0 failed_projects=0;;;0
"#,
    );
    same(
        site.caso(&["--check", "--warn-age", "1h", "--crit-age", "90m"]),
        2,
        r#"CRITICAL - project fresh last extracted 2h00m ago (more than 90m); project late last extracted 4h00m ago (more than 90m); project lost last extracted 1d03h ago (more than 90m) | projects=3;;;0 never_extracted=0;;;0 oldest_lastrun_age=97200s;3600;5400;0 failed_projects=0;;;0
"#,
    );
    same(
        site.caso(&["--check", "--warn-age", "2h", "--crit-age", "1h"]),
        3,
        r#"UNKNOWN - --warn-age 2h is longer than --crit-age 1h
"#,
    );
    same(
        site.caso(&[]),
        0,
        r#"caso-extract status at 2026-12-02T12:00:00Z (spooldir $D/caso)
Projects:
  PROJECT  LASTRUN               AGE    LAST PERIOD  LAST RUN
  fresh    2026-12-02T10:00:00Z  2h00m  -            -
  late     2026-12-02T08:00:00Z  4h00m  -            -
  lost     2026-12-01T09:00:00Z  1d03h  -            -
Last run: none recorded
Queue $D/apel/outgoing (dirq): does not exist (nothing spooled yet?)
Last send: none recorded
"#,
    );

    site.message("2026-12-02T06:00:00Z", 1);
    same(
        site.ssmsend(&["--check"]),
        0,
        r#"OK - 1 message queued, oldest added 6h00m ago | queued=1;;;0 oldest_age=21600s;25200;108000;0 rejected=0;0;;0 locked=0;;;0 not_messages=0;0;;0
"#,
    );
    site.message("2026-12-02T04:30:00Z", 1);
    same(
        site.ssmsend(&["--check"]),
        1,
        r#"WARNING - 2 messages queued, the oldest added 7h30m ago (more than 7h) | queued=2;;;0 oldest_age=27000s;25200;108000;0 rejected=0;0;;0 locked=0;;;0 not_messages=0;0;;0
"#,
    );
    site.message("2026-12-01T05:00:00Z", 1);
    same(
        site.ssmsend(&["--check"]),
        2,
        r#"CRITICAL - 3 messages queued, the oldest added 1d07h ago (more than 30h) | queued=3;;;0 oldest_age=111600s;25200;108000;0 rejected=0;0;;0 locked=0;;;0 not_messages=0;0;;0
"#,
    );
    same(
        site.ssmsend(&["--check", "--crit-age", "2d"]),
        1,
        r#"WARNING - 3 messages queued, the oldest added 1d07h ago (more than 7h) | queued=3;;;0 oldest_age=111600s;25200;172800;0 rejected=0;0;;0 locked=0;;;0 not_messages=0;0;;0
"#,
    );
    same(
        site.ssmsend(&[]),
        0,
        r#"ssmsend status at 2026-12-02T12:00:00Z
Queue $D/apel/outgoing (dirq): 3 messages, oldest added 2026-12-01T05:00:00Z (1d07h ago)
  locked: 0, temporary files: 0, not messages: 0
Rejected $D/apel/reject: 0
Last send: none recorded
"#,
    );
}

#[test]
fn a_broken_site_says_what_is_wrong() {
    let site = Site::new();
    site.lastrun("good", "2026-12-02T11:00:00Z");
    fs::write(site.spooldir().join("lastrun.bad"), "yesterday").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", site.spooldir().join("lastrun.link")).unwrap();
    fs::write(
        site.spooldir().join("caso-extract.last-run.json"),
        "{\"schema\": 1, \"prog",
    )
    .unwrap();
    let a = site.message("2026-12-02T10:00:00Z", 1);
    site.message("2026-12-02T10:00:00Z", 2);
    site.lock(&a, "2026-12-02T11:55:00Z");
    let dir = a.split('/').next().unwrap().to_owned();
    fs::write(site.queue().join(&dir).join("6930f5c000003a.tmp"), b"half").unwrap();
    fs::write(site.queue().join(&dir).join("notes.txt"), b"x").unwrap();
    std::os::unix::fs::symlink(
        "/etc/shadow",
        site.queue().join(&dir).join("6930f5c0000040"),
    )
    .unwrap();
    site.reject(
        "6930f5c0000050",
        "2026-12-01T10:00:00Z",
        Some("not a message: no APEL header line"),
    );
    site.reject(
        "6930f5c0000060",
        "2026-12-02T09:00:00Z",
        Some("refused by the broker: too large"),
    );
    site.reject("stray", "2026-11-30T10:00:00Z", None);
    site.send_report(send_report(
        "failed",
        0,
        2,
        Some("connection refused by 127.0.0.1:61613"),
    ));
    same(
        site.caso(&[]),
        0,
        r#"caso-extract status at 2026-12-02T12:00:00Z (spooldir $D/caso)
Projects:
  PROJECT  LASTRUN               AGE    LAST PERIOD  LAST RUN
  bad      never                 -      -            -
  good     2026-12-02T11:00:00Z  1h00m  -            -
  link     never                 -      -            -
  bad: invalid lastrun file $D/caso/lastrun.bad: invalid date/time "yesterday": expected a 4-digit year
  link: invalid lastrun file $D/caso/lastrun.link: a symbolic link (never followed or read)
Last run: none recorded
Queue $D/apel/outgoing (dirq): 2 messages, oldest added 2026-12-02T10:00:00Z (2h00m ago)
  locked: 1, temporary files: 1, not messages: 2
  locked 6b0fec20/6b0fec20000001  since 2026-12-02T11:55:00Z  (5m00s ago)
  not a message: "$D/apel/outgoing/6b0fec20/6930f5c0000040": a symbolic link where a message (or its lock or temporary file) should be, not a regular file: never followed or read
  not a message: "$D/apel/outgoing/6b0fec20/notes.txt": not a name of this queue (dirq elements are named with 14 lowercase hex digits, plus .tmp or .lck for temporary files and locks): never read
Rejected $D/apel/reject: 3
  2026-12-02T09:00:00Z  6930f5c0000060  refused by the broker: too large
  2026-12-01T10:00:00Z  6930f5c0000050  not a message: no APEL header line
  2026-11-30T10:00:00Z  stray           (no reason file)
Last send: failed, ended 2026-12-02T11:30:02Z (29m58s ago): 2 found, 0 sent, 0 rejected, 2 left (eu-egi-cloud-accounting via broker 127.0.0.1:61613)
  error: connection refused by 127.0.0.1:61613
Problem: invalid run report $D/caso/caso-extract.last-run.json: EOF while parsing a string at line 1 column 19
"#,
    );
    same(
        site.caso(&["--check"]),
        2,
        r#"CRITICAL - project bad: invalid lastrun file $D/caso/lastrun.bad: invalid date/time "yesterday": expected a 4-digit year; project link: invalid lastrun file $D/caso/lastrun.link: a symbolic link (never followed or read); invalid run report $D/caso/caso-extract.last-run.json: EOF while parsing a string at line 1 column 19 | projects=3;;;0 never_extracted=0;;;0 oldest_lastrun_age=3600s;10800;93600;0 failed_projects=0;;;0
"#,
    );
    same(
        site.ssmsend(&[]),
        0,
        r#"ssmsend status at 2026-12-02T12:00:00Z
Queue $D/apel/outgoing (dirq): 2 messages, oldest added 2026-12-02T10:00:00Z (2h00m ago)
  locked: 1, temporary files: 1, not messages: 2
  locked 6b0fec20/6b0fec20000001  since 2026-12-02T11:55:00Z  (5m00s ago)
  not a message: "$D/apel/outgoing/6b0fec20/6930f5c0000040": a symbolic link where a message (or its lock or temporary file) should be, not a regular file: never followed or read
  not a message: "$D/apel/outgoing/6b0fec20/notes.txt": not a name of this queue (dirq elements are named with 14 lowercase hex digits, plus .tmp or .lck for temporary files and locks): never read
Rejected $D/apel/reject: 3
  2026-12-02T09:00:00Z  6930f5c0000060  refused by the broker: too large
  2026-12-01T10:00:00Z  6930f5c0000050  not a message: no APEL header line
  2026-11-30T10:00:00Z  stray           (no reason file)
Last send: failed, ended 2026-12-02T11:30:02Z (29m58s ago): 2 found, 0 sent, 0 rejected, 2 left (eu-egi-cloud-accounting via broker 127.0.0.1:61613)
  error: connection refused by 127.0.0.1:61613
"#,
    );
    same(
        site.ssmsend(&["--check"]),
        1,
        r#"WARNING - 3 rejected in $D/apel/reject (newest: refused by the broker: too large); 2 entries in the queue are not messages; last send failed: connection refused by 127.0.0.1:61613 | queued=2;;;0 oldest_age=7200s;25200;108000;0 rejected=3;0;;0 locked=1;;;0 not_messages=2;0;;0 last_send_age=1798s;;;0
"#,
    );
    same(
        site.ssmsend(&["--json"]),
        0,
        r#"{
  "now": "2026-12-02T12:00:00Z",
  "queue": {
    "path": "$D/apel/outgoing",
    "layout": "dirq",
    "exists": true,
    "messages": 2,
    "oldest_added": "2026-12-02T10:00:00Z",
    "oldest_age_seconds": 7200,
    "locked": [
      {
        "id": "6b0fec20/6b0fec20000001",
        "since": "2026-12-02T11:55:00Z",
        "age_seconds": 300
      }
    ],
    "temporary_files": 1,
    "not_messages": [
      "\"$D/apel/outgoing/6b0fec20/6930f5c0000040\": a symbolic link where a message (or its lock or temporary file) should be, not a regular file: never followed or read",
      "\"$D/apel/outgoing/6b0fec20/notes.txt\": not a name of this queue (dirq elements are named with 14 lowercase hex digits, plus .tmp or .lck for temporary files and locks): never read"
    ],
    "rejected": {
      "dir": "$D/apel/reject",
      "count": 3,
      "newest": [
        {
          "name": "6930f5c0000060",
          "when": "2026-12-02T09:00:00Z",
          "reason": "refused by the broker: too large"
        },
        {
          "name": "6930f5c0000050",
          "when": "2026-12-01T10:00:00Z",
          "reason": "not a message: no APEL header line"
        },
        {
          "name": "stray",
          "when": "2026-11-30T10:00:00Z",
          "reason": null
        }
      ]
    }
  },
  "last_send": {
    "file": "$D/apel/ssmsend.last-run.json",
    "started": "2026-12-02T11:30:00Z",
    "ended": "2026-12-02T11:30:02Z",
    "age_seconds": 1798,
    "outcome": "failed",
    "error": "connection refused by 127.0.0.1:61613",
    "destination": "eu-egi-cloud-accounting",
    "via": "broker 127.0.0.1:61613",
    "found": 2,
    "sent": 0,
    "rejected": 0,
    "left": 2
  },
  "problems": []
}
"#,
    );
    let s = site.ssmsend_json();
    assert_eq!(s["queue"]["locked"][0]["age_seconds"], 300);
    assert_eq!(s["queue"]["temporary_files"], 1);
    assert_eq!(s["queue"]["rejected"]["count"], 3);
}

#[test]
fn status_reads_a_queue_being_written_and_sent() {
    let site = Site::new();
    site.lastrun("p1", "2026-12-02T11:00:00Z");
    let queue = Queue::create(&site.queue(), Layout::Dirq).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut rounds = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut batch = queue.batch();
                for _ in 0..20 {
                    batch.add(b"APEL-cloud-message: v0.4\n").unwrap();
                }
                let ids = batch.commit().unwrap();
                // A sender's work: lock, then remove half of them.
                for id in ids.iter().step_by(2) {
                    if queue.lock(id).unwrap() {
                        queue.remove(id).unwrap();
                    }
                }
                rounds += 1;
            }
            rounds
        })
    };
    for _ in 0..15 {
        let (code, out) = site.ssmsend(&["--json"]);
        assert_eq!(code, 0, "{out}");
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["queue"]["not_messages"], serde_json::json!([]), "{out}");
        assert_eq!(v["problems"], serde_json::json!([]), "{out}");
        let (code, out) =
            site.ssmsend(&["--check", "--crit-age", "100000d", "--warn-age", "99999d"]);
        assert_eq!(code, 0, "{out}");
        let (code, out) = site.caso(&[]);
        assert_eq!(code, 0, "{out}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(writer.join().unwrap() > 0);
}

#[test]
fn status_refuses_what_it_cannot_do() {
    let site = Site::new();
    // Not the probe: usage errors exit 2.
    let (code, _) = site.caso(&["--check-network"]);
    assert_eq!(code, 2);
    let (code, _) = site.ssmsend(&["--warn-age", "3h"]);
    assert_eq!(code, 2);
    // The probe: UNKNOWN (3), one line on stdout.
    same(
        site.ssmsend(&["--check", "--json"]),
        3,
        r#"UNKNOWN - the argument '--check' cannot be used with '--json'
"#,
    );
    same(
        site.caso(&["--check", "--warn-age", "soon"]),
        3,
        r#"UNKNOWN - invalid value 'soon' for '--warn-age <DURATION>': "soon": expected number at 0
"#,
    );
    fs::write(
        site.path("caso.conf"),
        "[DEFAULT]\nmessengers = carrier-pigeon\n",
    )
    .unwrap();
    same(
        site.caso(&["--check"]),
        3,
        r#"UNKNOWN - configuration: $D/caso.conf:2: [DEFAULT] messengers: "carrier-pigeon" is not one of ssm, noop, logstash, greendigit_cim
"#,
    );
    fs::write(site.path("sender.cfg"), "[messaging]\ndestination: x\n").unwrap();
    same(
        site.ssmsend(&["--check"]),
        3,
        r#"UNKNOWN - configuration: [messaging] path is required (the outgoing message queue)
"#,
    );
    let (code, out) = site.ssmsend(&[]);
    assert_eq!((code, out.as_str()), (2, ""));
}

/// Runs `cmd` (stdout captured) for at most 20 s: a status that blocks on
/// what it reads fails the test instead of hanging it.
fn run_bounded(mut cmd: Command) -> (i32, String) {
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("status still running after 20 s: it blocked on a planted file");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let all = format!("{}{stderr}", String::from_utf8_lossy(&out.stdout));
    (out.status.code().unwrap_or(-1), all)
}

/// Hostile files where status reads: run reports that are a symlink to a
/// secret, a FIFO, or over 4 MiB, and `.reason` files that are a symlink to
/// the secret or 5 MiB long. Status never follows, never blocks, never
/// prints the secret, names what it could not read, and its output stays
/// small.
#[test]
fn status_never_follows_blocks_on_or_prints_planted_files() {
    use std::os::unix::fs::symlink;
    let site = Site::new();
    let secret = site.path("secret.txt");
    fs::write(&secret, "TOPSECRET-7d1f\n").unwrap();
    fs::create_dir_all(site.spooldir()).unwrap();
    fs::create_dir_all(site.queue()).unwrap();
    let fifo = site.spooldir().join("caso-extract.last-run.json");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    symlink(&secret, site.path("apel/ssmsend.last-run.json")).unwrap();
    site.reject("m1", "2026-12-02T09:00:00Z", None);
    symlink(&secret, site.path("apel/reject/m1.reason")).unwrap();
    site.reject("m2", "2026-12-02T09:00:00Z", None);
    fs::write(site.path("apel/reject/m2.reason"), vec![b'x'; 5 << 20]).unwrap();
    let caso = |args: &[&str]| run_bounded(site.caso_command(args));
    let ssmsend = |args: &[&str]| run_bounded(site.ssmsend_command(args));
    for round in ["planted", "oversized"] {
        if round == "oversized" {
            for report in [fifo.clone(), site.path("apel/ssmsend.last-run.json")] {
                fs::remove_file(&report).unwrap();
                fs::write(&report, vec![b' '; (4 << 20) + 10]).unwrap();
            }
        }
        for args in [&[][..], &["--json"], &["--check"]] {
            for (who, (_, out)) in [("caso-extract", caso(args)), ("ssmsend", ssmsend(args))] {
                assert!(!out.contains("TOPSECRET"), "{round} {who} {args:?}: {out}");
                assert!(
                    out.len() < 64 * 1024,
                    "{round} {who} {args:?}: {} bytes",
                    out.len()
                );
                assert!(
                    out.contains("run report"),
                    "{round} {who} {args:?}: the unreadable report is not named: {out}"
                );
            }
        }
    }
}
