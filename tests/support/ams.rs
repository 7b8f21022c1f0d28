//! Test support for the AMS client: the test PKI it uses and the `ams-double` child process.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use openssl::pkcs7::{Pkcs7, Pkcs7Flags};
use openssl::stack::Stack;

use cloud_accounting::ams::{AmsConfig, RetryPolicy, ServerTrust};
use cloud_accounting::secret::Secret;
use cloud_accounting::smime::ClientIdentity;

use super::pki::{CertSpec, Identity, Pki};

pub use super::pki::HOST_DN;
pub const TOKEN: &str = "test-ams-token-0123456789";

/// The grid PKI of `support::pki` (CA, host certificate that signs and authenticates, server
/// certificate for 127.0.0.1 / localhost), and a second host certificate from another CA (for
/// refusals).
pub struct AmsTestPki {
    pub grid: Pki,
    pub host: Identity,
    pub server: Identity,
    pub other_host: Identity,
    /// Keeps the other CA's directory alive.
    _other: Pki,
}

impl AmsTestPki {
    pub fn generate() -> AmsTestPki {
        let grid = Pki::new();
        let (host, server) = (grid.host(), grid.server());
        let other = Pki::with_ca("Other CA");
        let intruder = [
            ("C", "XX"),
            ("O", "Elsewhere"),
            ("CN", "intruder.example.org"),
        ];
        let other_host = other.issue("intruder", &CertSpec::new(&intruder));
        AmsTestPki {
            grid,
            host,
            server,
            other_host,
            _other: other,
        }
    }

    pub fn ca(&self) -> &Identity {
        self.grid.ca()
    }

    pub fn host_identity(&self) -> ClientIdentity {
        ClientIdentity {
            certificate: self.host.cert.clone(),
            key: self.host.key.clone(),
            chain: Vec::new(),
        }
    }

    /// What `openssl smime -sign -inkey KEY -signer CERT -text` writes, via the openssl crate.
    pub fn sign(&self, content: &[u8]) -> Vec<u8> {
        let flags = Pkcs7Flags::DETACHED | Pkcs7Flags::TEXT;
        let certs = Stack::new().unwrap();
        let p7 = Pkcs7::sign(&self.host.cert, &self.host.key, &certs, content, flags).unwrap();
        p7.to_smime(content, flags).unwrap()
    }
}

/// The `ams-double` example, built on first use.
pub fn double_binary() -> PathBuf {
    super::examples::built("ams-double")
}

/// A running `ams-double`; killed on drop.
pub struct AmsDouble {
    child: Child,
    pub ams_port: u16,
    pub authn_port: u16,
    pub admin_port: u16,
    /// Holds the double's files (its CA copy) for as long as it runs.
    _dir: tempfile::TempDir,
}

impl AmsDouble {
    /// Starts the double with the PKI's CA and server certificate, the valid token [`TOKEN`],
    /// signature checking against the CA with [`HOST_DN`] allowed, and `extra` arguments.
    pub fn start(pki: &AmsTestPki, extra: &[&str]) -> AmsDouble {
        AmsDouble::start_with(
            tempfile::tempdir().unwrap(),
            pki.grid.ca_file(),
            &pki.server.cert_path,
            &pki.server.key_path,
            HOST_DN,
            extra,
        )
    }

    /// Starts the double with PEM files of any test PKI (e.g. `support::pki`): `ca` issued the
    /// client certificates authx509 accepts and is the one signatures are checked against,
    /// `cert`/`key` are its TLS identity, `allowed_dn` the signer DN it accepts.
    pub fn start_with(
        dir: tempfile::TempDir,
        ca: &Path,
        cert: &Path,
        key: &Path,
        allowed_dn: &str,
        extra: &[&str],
    ) -> AmsDouble {
        if dir.path().join("ca.pem") != ca {
            std::fs::copy(ca, dir.path().join("ca.pem")).unwrap();
        }
        let mut child = Command::new(double_binary())
            .arg("--ca")
            .arg(ca)
            .arg("--cert")
            .arg(cert)
            .arg("--key")
            .arg(key)
            .args(["--token", TOKEN])
            .arg("--verify-ca")
            .arg(ca)
            .args(["--allowed-dn", allowed_dn])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let ports: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("ams-double ready line {line:?}: {e}"));
        let port = |k: &str| ports[k].as_u64().unwrap() as u16;
        AmsDouble {
            ams_port: port("ams_port"),
            authn_port: port("authn_port"),
            admin_port: port("admin_port"),
            child,
            _dir: dir,
        }
    }

    /// A client configuration for this double: authx509 with the host certificate, the test CA
    /// trusted (and nothing else), fast retries.
    pub fn config(&self, pki: &AmsTestPki) -> AmsConfig {
        let mut cfg = AmsConfig::new("127.0.0.1", "accounting", "eu-egi-cloud-accounting");
        cfg.port = self.ams_port;
        cfg.authn_port = self.authn_port;
        cfg.identity = Some(pki.host_identity());
        cfg.trust = ServerTrust {
            system_roots: false,
            extra_roots: vec![pki.ca().cert.clone()],
            verify: true,
        };
        cfg.retry = RetryPolicy {
            max_attempts: 10,
            base_backoff: std::time::Duration::from_millis(10),
            max_backoff: std::time::Duration::from_millis(100),
        };
        // These tests count requests per message; `tests/ams/batch.rs` fills them.
        cfg.batch.max_messages = std::num::NonZeroUsize::MIN;
        cfg
    }

    pub fn config_with_token(&self, pki: &AmsTestPki, token: &str) -> AmsConfig {
        let mut cfg = self.config(pki);
        cfg.identity = None;
        cfg.token = Some(Secret::new(token));
        cfg
    }

    fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port)
    }

    pub async fn stats(&self) -> serde_json::Value {
        reqwest::get(self.admin_url("/stats"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn messages(&self) -> Vec<serde_json::Value> {
        reqwest::get(self.admin_url("/messages"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The decoded `data` of stored message `seq`, as the double received it.
    pub async fn data(&self, seq: u64) -> Vec<u8> {
        let r = reqwest::get(self.admin_url(&format!("/messages/{seq}")))
            .await
            .unwrap();
        assert!(r.status().is_success(), "message {seq}: {}", r.status());
        r.bytes().await.unwrap().to_vec()
    }
}

impl Drop for AmsDouble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
