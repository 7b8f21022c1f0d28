//! Prometheus metrics of both programs (issue 14, item 4), encoded by
//! `prometheus-client`, the Prometheus project's own Rust client.
//!
//! Each run ends by handing what it did ([`ExtractRun`], [`SendRun`]) to
//! its program's metrics ([`ExtractMetrics`], [`SendMetrics`]), which
//! render one exposition in the Prometheus text format 0.0.4 and publish it
//! to the [`Outputs`] configured: `--metrics-file` (node_exporter's
//! textfile collector: written atomically, mode 0644, a failure only
//! warned about) and `--metrics-listen` (daemon mode: [`serve`] answers
//! `GET /metrics` with the last exposition, [`Latest`]). The programs'
//! modules convert their reports into those plain values, so this module
//! knows neither program.

mod exposition;
pub mod extract;
pub mod send;
pub mod serve;

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

pub use exposition::to_text_format;
pub use extract::{ExtractMetrics, ExtractRun};
pub use send::{SendMetrics, SendRun};
pub use serve::Server;

/// The media type of the text format 0.0.4, which `/metrics` answers with.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Largest previous metrics file read back (ours are a few kB).
const MAX_PREVIOUS: u64 = 4 << 20;

/// The last exposition, shared by the runs and the `/metrics` server.
#[derive(Clone, Debug, Default)]
pub struct Latest(Arc<RwLock<Arc<str>>>);

impl Latest {
    pub fn set(&self, text: &str) {
        let mut slot = self.0.write().unwrap_or_else(|p| p.into_inner());
        *slot = Arc::from(text);
    }

    pub fn get(&self) -> Arc<str> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Where each run's metrics go: the file, the server, both or neither.
#[derive(Clone, Debug, Default)]
pub struct Outputs {
    file: Option<PathBuf>,
    latest: Option<Latest>,
}

impl Outputs {
    pub fn new(file: Option<PathBuf>, latest: Option<Latest>) -> Outputs {
        Outputs { file, latest }
    }

    /// A metrics file only.
    pub fn file(path: PathBuf) -> Outputs {
        Outputs::new(Some(path), None)
    }

    pub fn active(&self) -> bool {
        self.file.is_some() || self.latest.is_some()
    }

    /// The metrics file as a previous run left it, if any.
    fn previous(&self) -> Option<String> {
        let path = self.file.as_ref()?;
        let f = std::fs::File::open(path).ok()?;
        let mut text = String::new();
        match f.take(MAX_PREVIOUS).read_to_string(&mut text) {
            Ok(_) => Some(text),
            Err(e) => {
                tracing::warn!(
                    "cannot read the previous metrics file {}: {e}; the last-success times start afresh",
                    path.display()
                );
                None
            }
        }
    }

    /// To the server only (before the first run).
    fn serve(&self, text: &str) {
        if let Some(l) = &self.latest {
            l.set(text);
        }
    }

    /// To the server and the file; a file that cannot be written is a
    /// warning, never a failed run.
    fn publish(&self, text: &str) {
        self.serve(text);
        if let Some(path) = &self.file {
            write_or_warn(path, text);
        }
    }
}

fn write_or_warn(path: &Path, text: &str) {
    match crate::spool::write_atomic(path, text.as_bytes()) {
        Ok(()) => tracing::debug!("metrics written to {}", path.display()),
        Err(e) => tracing::warn!(
            "cannot write the metrics file {}: {e} (the run itself is not affected)",
            path.display()
        ),
    }
}

/// Parses `--metrics-listen`: `HOST:PORT` with an IP address (`[::1]:9101`
/// for IPv6) or `localhost`, or a bare `PORT`, which means
/// `127.0.0.1:PORT`. Names other than `localhost` are refused: what a
/// name resolves to is not checked for loopback.
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    let port = |p: &str| match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("{s:?}: the port must be 1 to 65535")),
        Ok(n) => Ok(n),
    };
    if s.bytes().all(|b| b.is_ascii_digit()) && !s.is_empty() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port(s)?));
    }
    if let Some(p) = s.strip_prefix("localhost:") {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port(p)?));
    }
    match s.parse::<SocketAddr>() {
        Ok(a) if a.port() == 0 => Err(format!("{s:?}: the port must be 1 to 65535")),
        Ok(a) => Ok(a),
        Err(_) => Err(format!(
            "{s:?}: expected HOST:PORT with an IP address or localhost (e.g. 127.0.0.1:9101, [::1]:9101), or a port"
        )),
    }
}

/// A non-loopback address serves the metrics to other hosts: only with
/// `--metrics-allow-remote`.
pub fn check_listen(addr: SocketAddr, allow_remote: bool) -> Result<(), String> {
    if addr.ip().is_loopback() || allow_remote {
        return Ok(());
    }
    Err(format!(
        "--metrics-listen {addr} is not a loopback address: /metrics would be reachable from other hosts; add --metrics-allow-remote if that is intended (e.g. in a container)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_default_to_loopback_and_refuse_names() {
        let a = |s: &str| parse_listen(s).map(|a| a.to_string());
        assert_eq!(a("9101").unwrap(), "127.0.0.1:9101");
        assert_eq!(a("localhost:9101").unwrap(), "127.0.0.1:9101");
        assert_eq!(a("[::1]:9101").unwrap(), "[::1]:9101");
        assert_eq!(a("0.0.0.0:80").unwrap(), "0.0.0.0:80");
        for bad in [
            "",
            "0",
            "127.0.0.1:0",
            "host.example:9101",
            "127.0.0.1",
            "99999",
            ":9101",
        ] {
            assert!(parse_listen(bad).is_err(), "{bad:?}");
        }
        let ok = |s: &str, allow| check_listen(parse_listen(s).unwrap(), allow);
        assert!(ok("127.0.0.1:9101", false).is_ok());
        assert!(ok("[::1]:9101", false).is_ok());
        let e = ok("0.0.0.0:9101", false).unwrap_err();
        assert!(
            e.contains("--metrics-listen") && e.contains("--metrics-allow-remote"),
            "{e}"
        );
        assert!(ok("192.0.2.1:9101", false).is_err());
        assert!(ok("0.0.0.0:9101", true).is_ok());
    }

    #[test]
    fn an_unwritable_file_is_only_a_warning() {
        let d = tempfile::tempdir().unwrap();
        let o = Outputs::new(
            Some(d.path().join("no/such/dir.prom")),
            Some(Latest::default()),
        );
        o.publish("x 1\n");
        assert_eq!(&*o.latest.as_ref().unwrap().get(), "x 1\n");
    }
}
