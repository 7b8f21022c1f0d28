//! Support of the energy tests (tests/energy): the doubles they run
//! (`energy-series`, `cim-double`), a real Prometheus
//! (scripts/setup-prometheus.sh) and cASO's own energy code
//! (tests/oracle/caso_energy.py, in the .venv).

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use super::examples::built;
use super::python::python;
use super::root;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// `scripts/setup-prometheus.sh` with `args`; `Err` with its stderr.
pub fn setup_prometheus(args: &[&Path]) -> Result<String, String> {
    let out = Command::new(root().join("scripts/setup-prometheus.sh"))
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success() {
        Ok(stderr)
    } else {
        Err(stderr)
    }
}

/// A Prometheus of our own on 127.0.0.1, stopped (by its pid) on drop.
pub struct PrometheusServer {
    pub port: u16,
    state: PathBuf,
    pub startup_log: String,
}

impl PrometheusServer {
    /// Installs the package if needed; `None` (the caller skips, saying
    /// why) only when it cannot be installed.
    pub fn install() -> Option<String> {
        setup_prometheus(&[Path::new("install")]).err()
    }

    pub fn start(tsdb: &Path, state: &Path) -> PrometheusServer {
        PrometheusServer::start_with(tsdb, state, &[])
    }

    /// One that scrapes `target` (`HOST:PORT`, its `/metrics`) every
    /// second, as job `scrape`.
    pub fn scraping(tsdb: &Path, state: &Path, target: &str) -> PrometheusServer {
        PrometheusServer::start_with(tsdb, state, &[Path::new("--scrape"), Path::new(target)])
    }

    fn start_with(tsdb: &Path, state: &Path, extra: &[&Path]) -> PrometheusServer {
        let mut args = vec![Path::new("start"), tsdb, state];
        args.extend_from_slice(extra);
        let log = setup_prometheus(&args).unwrap_or_else(|e| panic!("prometheus start: {e}"));
        let port = std::fs::read_to_string(state.join("port"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        PrometheusServer {
            port,
            state: state.to_path_buf(),
            startup_log: log,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        let _ = setup_prometheus(&[Path::new("stop"), &self.state]);
    }
}

/// The .venv's Python, running caso_energy.py on `input`.
pub fn caso(input: &Value, dir: &Path) -> Value {
    let py = python();
    let (inp, out) = (dir.join("caso-in.json"), dir.join("caso-out.json"));
    std::fs::write(&inp, serde_json::to_vec(input).unwrap()).unwrap();
    let run = Command::new(py)
        .arg(root().join("tests/oracle/caso_energy.py"))
        .arg(&inp)
        .arg(&out)
        .env("TZ", "UTC")
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "caso_energy.py failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap()
}

/// A running `cim-double`; killed on drop. Its stderr is kept for the
/// no-secret check.
pub struct CimDouble {
    child: Child,
    pub port: u16,
}

impl CimDouble {
    pub fn start(args: &[&str]) -> CimDouble {
        let mut child = Command::new(built("cim-double"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let v: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("cim-double said {line:?}: {e}"));
        CimDouble {
            port: v["port"].as_u64().unwrap() as u16,
            child,
        }
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `GET /received`.
    pub fn received(&self) -> Value {
        http("GET", self.port, "/received", "")
    }

    pub fn set_faults(&self, specs: &str) {
        let v = http("POST", self.port, "/control/faults", specs);
        assert!(v.get("faults").is_some(), "{v}");
    }

    /// Stops it and returns what it wrote on stderr.
    pub fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut s = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut s);
        }
        s
    }
}

impl Drop for CimDouble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tiny blocking HTTP/1.1 exchange with the double's control endpoints.
pub fn http(method: &str, port: u16, path: &str, body: &str) -> Value {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    let (_, body) = reply.split_once("\r\n\r\n").unwrap();
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{reply}: {e}"))
}

impl PrometheusServer {
    /// Queries (instant and range: ours and cASO's) Prometheus has answered
    /// so far, from its own `prometheus_http_requests_total` on /metrics
    /// (HTTP/1.0: an answer delimited by the close, never chunked).
    pub fn query_requests(&self) -> u64 {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(s, "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        reply
            .lines()
            .filter(|l| {
                l.starts_with("prometheus_http_requests_total{")
                    && (l.contains("handler=\"/api/v1/query_range\"")
                        || l.contains("handler=\"/api/v1/query\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }
}

/// Prometheus sums the points itself, in its own order: an energy equals
/// cASO's to a relative 1e-12, not bit for bit ("prometheus-sum").
pub fn same_energy(ours: f64, theirs: f64) -> bool {
    (ours.is_nan() && theirs.is_nan())
        || ours == theirs
        || (ours - theirs).abs() <= 1e-12 * ours.abs().max(theirs.abs())
}

/// `theirs` (a cASO record as JSON) with the fields that hold a sum
/// (EnergyWh, and Work, CPU time over it) taken from `ours` once they are
/// the same energy; whether any differed at all.
pub fn take_sums(theirs: &mut Value, ours: &Value) -> bool {
    let mut differed = false;
    for k in ["EnergyWh", "Work"] {
        let (o, t) = (ours[k].as_f64(), theirs[k].as_f64());
        if let (Some(o), Some(t)) = (o, t) {
            assert!(same_energy(o, t), "{k}: ours {o:e}, cASO {t:e}");
            differed |= o != t;
            theirs[k] = ours[k].clone();
        }
    }
    differed
}
