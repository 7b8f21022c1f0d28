//! Running the real `ssmsend` binary in tests: sender.cfg files, queues to
//! send, and the APEL receiver's checks made with the `openssl` CLI.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cloud_accounting::spool::{ElementId, Layout, Queue};

pub const SSMSEND: &str = env!("CARGO_BIN_EXE_ssmsend");

/// `[section] key: value` lines of a sender.cfg, in order.
#[derive(Debug, Clone, Default)]
pub struct SenderCfg {
    sections: BTreeMap<String, Vec<(String, String)>>,
}

impl SenderCfg {
    pub fn set(mut self, section: &str, key: &str, value: impl ToString) -> SenderCfg {
        let entries = self.sections.entry(section.to_owned()).or_default();
        entries.retain(|(k, _)| k != key);
        entries.push((key.to_owned(), value.to_string()));
        self
    }

    /// STOMP to `127.0.0.1:port`, messages from `queue`, signed with
    /// `cert`/`key`, broker and server_cert checked against `capath`.
    pub fn stomp(port: u16, use_ssl: bool, destination: &str) -> SenderCfg {
        SenderCfg::default()
            .set("sender", "protocol", "STOMP")
            .set("broker", "host", "127.0.0.1")
            .set("broker", "port", port)
            .set("broker", "use_ssl", if use_ssl { "true" } else { "false" })
            .set("messaging", "destination", destination)
            .set("sender", "connect_timeout", "10s")
            .set("sender", "receipt_timeout", "20s")
            .set("logging", "level", "INFO")
            .set("logging", "console", "true")
    }

    /// AMS at `127.0.0.1` on test ports.
    pub fn ams(ams_port: u16, authn_port: u16, project: &str, topic: &str) -> SenderCfg {
        SenderCfg::default()
            .set("sender", "protocol", "AMS")
            .set("broker", "host", "127.0.0.1")
            .set("sender", "ams_port", ams_port)
            .set("sender", "ams_authn_port", authn_port)
            .set("messaging", "ams_project", project)
            .set("messaging", "destination", topic)
            .set("sender", "connect_timeout", "10s")
            .set("sender", "receipt_timeout", "20s")
            .set("logging", "level", "INFO")
            .set("logging", "console", "true")
    }

    pub fn credentials(self, cert: &Path, key: &Path, capath: &Path) -> SenderCfg {
        self.set("certificates", "certificate", cert.display())
            .set("certificates", "key", key.display())
            .set("certificates", "capath", capath.display())
    }

    pub fn queue(self, path: &Path, layout: Layout) -> SenderCfg {
        self.set("messaging", "path", path.display())
            .set("messaging", "path_type", layout)
    }

    /// Writes the file (`key: value`, as SSM's examples) to `path`.
    pub fn write(&self, path: &Path) -> PathBuf {
        let mut text = String::new();
        for (section, entries) in &self.sections {
            text.push_str(&format!("[{section}]\n"));
            for (k, v) in entries {
                text.push_str(&format!("{k}: {v}\n"));
            }
        }
        std::fs::write(path, text).unwrap();
        path.to_path_buf()
    }
}

/// What one `ssmsend -c CFG` run did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub log: String,
}

fn finished(out: Output) -> Run {
    Run {
        code: out.status.code().unwrap_or(-1),
        log: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `ssmsend -c cfg` to its end (its own timeouts bound it).
pub fn run(cfg: &Path) -> Run {
    finished(command(cfg).output().expect("run ssmsend"))
}

/// The command, without SSM_* settings from the test's environment.
pub fn command(cfg: &Path) -> Command {
    let mut cmd = Command::new(SSMSEND);
    cmd.arg("-c").arg(cfg);
    for (k, _) in std::env::vars() {
        if k.starts_with("SSM_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// Runs ssmsend as user `nobody` when the test runs as root (root reads
/// every file, so a file it cannot read only exists for another user):
/// `owned` (recursively) is given to nobody first.
pub fn run_unprivileged(cfg: &Path, owned: &[&Path]) -> Run {
    if !super::is_root() {
        return run(cfg);
    }
    for p in owned {
        let st = Command::new("chown")
            .args(["-R", "65534:65534"])
            .arg(p)
            .status()
            .unwrap();
        assert!(st.success(), "chown {}", p.display());
    }
    let mut cmd = Command::new("setpriv");
    cmd.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        SSMSEND,
        "-c",
    ])
    .arg(cfg);
    finished(cmd.output().expect("run setpriv (util-linux) with ssmsend"))
}

/// An APEL-like ASCII message of about `size` bytes, unique to `i`.
pub fn message(i: usize, size: usize) -> Vec<u8> {
    // MachineName, not a made-up key: ssmsend checks the APEL loader's rules.
    let mut m = format!("APEL-cloud-message: v0.4\nMachineName: message-{i}\n");
    let mut n = 0;
    while m.len() < size {
        m.push_str(&format!(
            "VMUUID: vm-{i:05}-{n:05}\nSiteName: TEST-Site\nWallDuration: {}\nCpuCount: 2\n%%\n",
            n * 3600
        ));
        n += 1;
    }
    m.into_bytes()
}

/// The VMUUIDs of a cloud message, in order.
pub fn vmuuids(content: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(content)
        .lines()
        .filter_map(|l| l.strip_prefix("VMUUID: "))
        .map(str::to_owned)
        .collect()
}

/// Messages in a new dirq queue, `outgoing` in a temporary directory of its
/// own (sender.cfg files go beside it).
pub struct Spooled {
    pub dir: tempfile::TempDir,
    pub queue: PathBuf,
    /// Element ids, in send order.
    pub names: Vec<String>,
    /// Each element's content, by id.
    pub queued: BTreeMap<String, Vec<u8>>,
}

impl Spooled {
    pub fn dirq(bodies: Vec<Vec<u8>>) -> Spooled {
        let dir = tempfile::tempdir().unwrap();
        let queue = dir.path().join("outgoing");
        let names = fill(&queue, Layout::Dirq, &bodies);
        let queued = names.iter().cloned().zip(bodies).collect();
        Spooled {
            dir,
            queue,
            names,
            queued,
        }
    }

    /// `name` beside the queue.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// Adds `bodies` to a new queue at `root`; returns their ids in send order.
pub fn fill(root: &Path, layout: Layout, bodies: &[Vec<u8>]) -> Vec<String> {
    let q = Queue::create(root, layout).unwrap();
    bodies
        .iter()
        .map(|b| q.add(b).unwrap().as_str().to_owned())
        .collect()
}

/// The element ids still in the queue, and whether any is still locked.
pub fn remaining(root: &Path, layout: Layout) -> Vec<String> {
    let q = Queue::open(root, layout).unwrap();
    q.elements()
        .unwrap()
        .iter()
        .map(ElementId::to_string)
        .collect()
}

/// `.lck` files left in a dirq queue.
pub fn locks(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in std::fs::read_dir(root).unwrap() {
        let dir = dir.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&dir).unwrap() {
            let f = f.unwrap().path();
            if f.extension().is_some_and(|e| e == "lck") {
                out.push(f);
            }
        }
    }
    out
}

fn openssl(args: &[&str]) -> Output {
    Command::new("openssl")
        .args(args)
        .output()
        .expect("run the openssl CLI")
}

/// What the receiver gets out of one message.
#[derive(Debug)]
pub struct Verified {
    /// The signed content, line ends as queued (LF).
    pub content: Vec<u8>,
    /// The signer's subject as `openssl x509 -subject -nameopt compat` prints it.
    pub signer_dn: String,
}

/// The APEL receiver's check with the real CLI: `openssl smime -verify`
/// against the CAs of `capath` (host certificates carry no emailProtection
/// usage, hence `-purpose any`), then the signer's DN.
pub fn openssl_verify(smime: &[u8], capath: &Path) -> Verified {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.smime");
    let signer = dir.path().join("signer.pem");
    let content = dir.path().join("content");
    std::fs::write(&input, smime).unwrap();
    let p = |p: &Path| p.to_str().unwrap().to_owned();
    let out = openssl(&[
        "smime",
        "-verify",
        "-purpose",
        "any",
        "-text",
        "-CApath",
        &p(capath),
        "-in",
        &p(&input),
        "-signer",
        &p(&signer),
        "-out",
        &p(&content),
    ]);
    assert!(
        out.status.success(),
        "openssl smime -verify: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&smime[..smime.len().min(400)])
    );
    // S/MIME signs the canonical form (CRLF), which -verify writes out; the
    // queued text had LF line ends.
    let content = String::from_utf8(std::fs::read(&content).unwrap())
        .unwrap()
        .replace("\r\n", "\n")
        .into_bytes();
    Verified {
        content,
        signer_dn: cli_subject(&signer),
    }
}

/// `openssl smime -decrypt` with the server's certificate and key.
pub fn openssl_decrypt(smime: &[u8], cert: &Path, key: &Path) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.smime");
    let output = dir.path().join("out");
    std::fs::write(&input, smime).unwrap();
    let p = |p: &Path| p.to_str().unwrap().to_owned();
    let out = openssl(&[
        "smime",
        "-decrypt",
        "-in",
        &p(&input),
        "-recip",
        &p(cert),
        "-inkey",
        &p(key),
        "-out",
        &p(&output),
    ]);
    assert!(
        out.status.success(),
        "openssl smime -decrypt: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(&output).unwrap()
}

/// `openssl x509 -noout -subject -nameopt compat` without the `subject=`.
pub fn cli_subject(cert: &Path) -> String {
    let out = openssl(&[
        "x509",
        "-noout",
        "-subject",
        "-nameopt",
        "compat",
        "-in",
        cert.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "openssl x509 -subject");
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .trim_start_matches("subject=")
        .to_owned()
}

/// Makes `path` unreadable (mode 000) for its owner.
pub fn make_unreadable(path: &Path) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o000)).unwrap();
}

/// The `(name, reason)` of every message in the reject directory.
pub fn rejected(reject_dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(reject_dir) else {
        return out;
    };
    for e in entries {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if let Some(stem) = name.strip_suffix(".reason") {
            out.insert(
                stem.to_owned(),
                std::fs::read_to_string(&path).unwrap().trim().to_owned(),
            );
        }
    }
    out
}
