//! Loading and checking the certificates `ssmsend` refuses to start without.
//!
//! The checks are SSM's (`Ssm2.__init__` and `crypto.py`), done in process:
//! the host key matches the host certificate, neither the host nor the server
//! certificate expires within 24 hours (`openssl x509 -checkend 86400`), the
//! server certificate is not the host's own, and it verifies against the
//! hashed CA directory (`openssl verify -CApath`). Every failure is a
//! [`CredentialError`] naming the file and the problem: a configuration error.

use std::fmt;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use openssl::asn1::Asn1Time;
use openssl::error::ErrorStack;
use openssl::pkey::{PKey, Private};
use openssl::ssl::SslFiletype;
use openssl::stack::Stack;
use openssl::x509::store::{X509Lookup, X509Store, X509StoreBuilder};
use openssl::x509::{X509, X509StoreContext};

use super::dn::legacy_dn;

/// SSM refuses certificates that expire within this many seconds.
pub const EXPIRY_MARGIN_SECS: i64 = 86_400;

/// Which configured file a [`CredentialError`] is about, named as the
/// `[certificates]` option of sender.cfg that points to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertRole {
    /// `certificate`: the host certificate messages are signed with.
    Host,
    /// `server_cert`: the APEL server certificate messages are encrypted for.
    Server,
}

impl fmt::Display for CertRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CertRole::Host => "certificate",
            CertRole::Server => "server_cert",
        })
    }
}

/// Why the credentials are unusable; `ssmsend` exits 2 on any of these.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    // `error` is no `#[source]`: the hint follows it, and a chain printed
    // whole would repeat it at the end.
    #[error("cannot read {what} {path}: {error}{}", hint.as_deref().map(|h| format!("; {h}")).unwrap_or_default())]
    Read {
        what: &'static str,
        path: PathBuf,
        error: std::io::Error,
        /// For `EACCES`: the uid we run as and the fix ([`crate::access::denied_hint`]).
        hint: Option<String>,
    },
    #[error("{role} {path} is not a PEM X.509 certificate: {source}")]
    BadCertificate {
        role: CertRole,
        path: PathBuf,
        source: ErrorStack,
    },
    #[error(
        "key {path} is not an unencrypted PEM private key (RSA or EC, PKCS#1, SEC1 or PKCS#8): {source}"
    )]
    BadKey { path: PathBuf, source: ErrorStack },
    #[error(
        "key {path} is encrypted with a passphrase; ssmsend, like SSM, needs the key \
         unencrypted (protect it with file permissions, mode 0600)"
    )]
    EncryptedKey { path: PathBuf },
    #[error("certificate {cert} and key {key} do not match (different public keys)")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("{role} {path} expired on {not_after}")]
    Expired {
        role: CertRole,
        path: PathBuf,
        not_after: String,
    },
    #[error("{role} {path} expires within 24 hours (notAfter {not_after}); renew it")]
    ExpiresSoon {
        role: CertRole,
        path: PathBuf,
        not_after: String,
    },
    #[error(
        "server_cert {server} is the host certificate {host} (or has its key): it must be \
         the certificate of the final server receiving the messages, not your own"
    )]
    ServerCertIsHostCert { server: PathBuf, host: PathBuf },
    #[error("capath {path} is not a directory of hashed CA certificates: {reason}")]
    BadCaPath { path: PathBuf, reason: String },
    #[error("server_cert {path} does not verify against capath {capath}: {reason}")]
    ServerCertUnverified {
        path: PathBuf,
        capath: PathBuf,
        reason: String,
    },
    #[error("checking {path}: {source}")]
    OpenSsl { path: PathBuf, source: ErrorStack },
}

/// The host certificate and its private key, checked and loaded once; the key
/// is reused for every signature and for the client side of TLS.
pub struct Credentials {
    cert: X509,
    key: PKey<Private>,
    cert_path: PathBuf,
    subject: String,
}

// Hand-written so that no key material can end up in a log line.
impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("cert_path", &self.cert_path)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Loads `certificate` and `key` (PEM) and applies SSM's start-up checks:
    /// they match, and the certificate does not expire within 24 hours.
    /// Warns when the key file is open to others, or to its group without
    /// being root's.
    pub fn load(certificate: &Path, key: &Path) -> Result<Credentials, CredentialError> {
        let loaded = Credentials::load_unwarned(certificate, key)?;
        if let Some(w) = key_exposure_warning(key) {
            tracing::warn!("{w}");
        }
        Ok(loaded)
    }

    /// [`Credentials::load`] without the key-permission warning, for a
    /// caller that reports [`key_exposure_warning`] itself (`--check`).
    pub fn load_unwarned(certificate: &Path, key: &Path) -> Result<Credentials, CredentialError> {
        let cert = read_certificate(certificate, CertRole::Host)?;
        let pkey = read_private_key(key)?;
        let cert_key = cert
            .public_key()
            .map_err(|source| CredentialError::BadCertificate {
                role: CertRole::Host,
                path: certificate.to_path_buf(),
                source,
            })?;
        if !cert_key.public_eq(&pkey) {
            return Err(CredentialError::KeyMismatch {
                cert: certificate.to_path_buf(),
                key: key.to_path_buf(),
            });
        }
        check_expiry(&cert, certificate, CertRole::Host)?;
        Ok(Credentials {
            subject: legacy_dn(cert.subject_name()),
            cert,
            key: pkey,
            cert_path: certificate.to_path_buf(),
        })
    }

    /// The host certificate, e.g. as a TLS client certificate.
    pub fn certificate(&self) -> &X509 {
        &self.cert
    }

    /// The host private key, e.g. for a TLS client. Never log it.
    pub fn private_key(&self) -> &PKey<Private> {
        &self.key
    }

    /// The host certificate as PEM (for `reqwest::Identity::from_pkcs8_pem`).
    pub fn certificate_pem(&self) -> Result<Vec<u8>, ErrorStack> {
        self.cert.to_pem()
    }

    /// The host key as unencrypted PKCS#8 PEM (for
    /// `reqwest::Identity::from_pkcs8_pem`, which wants exactly this form).
    pub fn private_key_pkcs8_pem(&self) -> Result<Vec<u8>, ErrorStack> {
        self.key.private_key_to_pem_pkcs8()
    }

    /// The file the certificate was loaded from.
    pub fn certificate_path(&self) -> &Path {
        &self.cert_path
    }

    /// The signer DN in legacy form, `/C=IT/O=INFN/CN=host.example.org`: the
    /// "Host DN" the receiver must have registered in GOCDB.
    pub fn subject_dn(&self) -> &str {
        &self.subject
    }
}

/// A certificate messages are encrypted for (`server_cert`).
pub struct Recipient {
    certs: Stack<X509>,
    path: PathBuf,
    subject: String,
}

impl fmt::Debug for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recipient")
            .field("path", &self.path)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

impl Recipient {
    /// Loads `server_cert` and applies SSM's checks: not expiring within 24
    /// hours, not the host's own certificate (nor its key), and, when
    /// `trust` is given (`verify_server_cert = true`, the default), verifying
    /// against that CA store ([`CaDirectory`]).
    pub fn load(
        server_cert: &Path,
        host: &Credentials,
        trust: Option<&CaDirectory>,
    ) -> Result<Recipient, CredentialError> {
        let cert = read_certificate(server_cert, CertRole::Server)?;
        check_expiry(&cert, server_cert, CertRole::Server)?;
        if is_same_identity(&cert, host) {
            return Err(CredentialError::ServerCertIsHostCert {
                server: server_cert.to_path_buf(),
                host: host.certificate_path().to_path_buf(),
            });
        }
        if let Some(ca) = trust {
            ca.verify(&cert, server_cert)?;
        }
        let subject = legacy_dn(cert.subject_name());
        let mut certs = Stack::new().map_err(|source| openssl_err(server_cert, source))?;
        certs
            .push(cert)
            .map_err(|source| openssl_err(server_cert, source))?;
        Ok(Recipient {
            certs,
            path: server_cert.to_path_buf(),
            subject,
        })
    }

    /// The server DN in legacy form (SSM logs "Messages will be encrypted using ...").
    pub fn subject_dn(&self) -> &str {
        &self.subject
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn certs(&self) -> &Stack<X509> {
        &self.certs
    }
}

/// A hashed CA directory (`capath`, as `/etc/grid-security/certificates`):
/// `<subject hash>.0` files looked up on demand, as `openssl verify -CApath`.
pub struct CaDirectory {
    path: PathBuf,
    store: X509Store,
}

impl fmt::Debug for CaDirectory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaDirectory")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl CaDirectory {
    /// Opens `capath`; fails if it is not a readable directory.
    pub fn open(capath: &Path) -> Result<CaDirectory, CredentialError> {
        let store = ca_store_from_dir(capath)?;
        Ok(CaDirectory {
            path: capath.to_path_buf(),
            store,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The store, for TLS verification or [`X509StoreContext`].
    pub fn store(&self) -> &X509Store {
        &self.store
    }

    /// Verifies `cert` (read from `path`) up to a CA of this directory.
    pub fn verify(&self, cert: &X509, path: &Path) -> Result<(), CredentialError> {
        let chain = Stack::new().map_err(|source| openssl_err(path, source))?;
        let mut ctx = X509StoreContext::new().map_err(|source| openssl_err(path, source))?;
        let outcome = ctx
            .init(&self.store, cert, &chain, |c| {
                Ok(c.verify_cert()?.then_some(()).ok_or(c.error()))
            })
            .map_err(|source| openssl_err(path, source))?;
        outcome.map_err(|result| CredentialError::ServerCertUnverified {
            path: path.to_path_buf(),
            capath: self.path.clone(),
            reason: result.error_string().to_string(),
        })
    }
}

/// An [`X509Store`] that looks CA certificates up in the hashed directory
/// `capath` (what TLS clients need to verify a broker or AMS endpoint).
/// A new store per call: `X509Store` cannot be shared between TLS contexts
/// that take ownership of it.
pub fn ca_store_from_dir(capath: &Path) -> Result<X509Store, CredentialError> {
    let bad = |reason: String| CredentialError::BadCaPath {
        path: capath.to_path_buf(),
        reason,
    };
    let meta = fs::metadata(capath).map_err(|e| bad(e.to_string()))?;
    if !meta.is_dir() {
        return Err(bad("not a directory".into()));
    }
    let dir = capath
        .to_str()
        .ok_or_else(|| bad("path is not valid UTF-8".into()))?;
    let build = || -> Result<X509Store, ErrorStack> {
        let mut builder = X509StoreBuilder::new()?;
        builder
            .add_lookup(X509Lookup::hash_dir())?
            .add_dir(dir, SslFiletype::PEM)?;
        Ok(builder.build())
    };
    build().map_err(|e| bad(e.to_string()))
}

/// Every CA certificate of the hashed directory `capath` (the `<hash>.<n>`
/// files), for TLS stacks that want root certificates one by one (reqwest's
/// `add_root_certificate`). Unreadable or non-PEM entries are skipped.
pub fn ca_certificates_from_dir(capath: &Path) -> Result<Vec<X509>, CredentialError> {
    let entries = fs::read_dir(capath).map_err(|e| CredentialError::BadCaPath {
        path: capath.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut names: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(is_hashed_cert_name)
        })
        .collect();
    names.sort();
    let mut certs = Vec::new();
    for path in names {
        if let Ok(pem) = crate::access::read_capped(&path, crate::access::MAX_PEM_BYTES) {
            certs.extend(X509::stack_from_pem(&pem).unwrap_or_default());
        }
    }
    Ok(certs)
}

/// `<8 hex digits>.<digits>`: a certificate in a c_rehash directory (CRLs are `.r<n>`).
fn is_hashed_cert_name(name: &str) -> bool {
    let Some((hash, n)) = name.split_once('.') else {
        return false;
    };
    hash.len() == 8
        && hash.bytes().all(|b| b.is_ascii_hexdigit())
        && !n.is_empty()
        && n.bytes().all(|b| b.is_ascii_digit())
}

/// `what` is the `[certificates]` option that names `path`.
fn read_file(path: &Path, what: &'static str) -> Result<Vec<u8>, CredentialError> {
    crate::access::read_capped(path, crate::access::MAX_PEM_BYTES).map_err(|error| {
        CredentialError::Read {
            what,
            path: path.to_path_buf(),
            hint: crate::access::denied_hint(
                "ssmsend",
                &format!("[certificates] {what}"),
                path,
                &error,
            ),
            error,
        }
    })
}

fn read_certificate(path: &Path, role: CertRole) -> Result<X509, CredentialError> {
    let what = match role {
        CertRole::Host => "certificate",
        CertRole::Server => "server_cert",
    };
    let pem = read_file(path, what)?;
    X509::from_pem(&pem).map_err(|source| CredentialError::BadCertificate {
        role,
        path: path.to_path_buf(),
        source,
    })
}

fn read_private_key(path: &Path) -> Result<PKey<Private>, CredentialError> {
    let pem = read_file(path, "key")?;
    if is_encrypted_pem(&pem) {
        return Err(CredentialError::EncryptedKey {
            path: path.to_path_buf(),
        });
    }
    // A callback that supplies no passphrase: OpenSSL's default would prompt
    // on the terminal, which would hang a cron job.
    PKey::private_key_from_pem_callback(&pem, |_| Ok(0)).map_err(|source| CredentialError::BadKey {
        path: path.to_path_buf(),
        source,
    })
}

/// PKCS#8 `ENCRYPTED PRIVATE KEY` or a legacy `Proc-Type: 4,ENCRYPTED` header.
fn is_encrypted_pem(pem: &[u8]) -> bool {
    let text = String::from_utf8_lossy(pem);
    text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----")
        || text.contains("Proc-Type: 4,ENCRYPTED")
}

/// SSM's `openssl x509 -checkend 86400`, with the date in the message.
fn check_expiry(cert: &X509, path: &Path, role: CertRole) -> Result<(), CredentialError> {
    let now = crate::time::Timestamp::now().unix_seconds();
    let limit = |secs: i64| Asn1Time::from_unix(secs).map_err(|source| openssl_err(path, source));
    let not_after = cert.not_after();
    let describe = || not_after.to_string();
    if *not_after <= limit(now)? {
        return Err(CredentialError::Expired {
            role,
            path: path.to_path_buf(),
            not_after: describe(),
        });
    }
    if *not_after <= limit(now + EXPIRY_MARGIN_SECS)? {
        return Err(CredentialError::ExpiresSoon {
            role,
            path: path.to_path_buf(),
            not_after: describe(),
        });
    }
    if *cert.not_before() > limit(now)? {
        tracing::warn!(
            "{role} {} is not valid before {}: check the clock",
            path.display(),
            cert.not_before()
        );
    }
    Ok(())
}

/// The same certificate, or one for the host's own key pair.
fn is_same_identity(cert: &X509, host: &Credentials) -> bool {
    let same_der = match (cert.to_der(), host.certificate().to_der()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    same_der
        || cert
            .public_key()
            .is_ok_and(|k| k.public_eq(host.private_key()))
}

/// What is wrong with the host key file's permissions, if anything (SSM
/// never checked this; an exposed host key is worth a warning).
pub fn key_exposure_warning(key: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(key).ok()?;
    let mode = meta.permissions().mode() & 0o777;
    match key_exposure(mode, meta.uid())? {
        KeyExposure::Others => Some(format!(
            "key {} is open to other users (mode {mode:o}); use chmod 600",
            key.display()
        )),
        KeyExposure::Group => Some(format!(
            "key {} is open to its group (mode {mode:o}) and not owned by root; use chmod 600",
            key.display()
        )),
    }
}

/// Who, besides its owner, may use a host key file that deserves a warning.
#[derive(Debug, PartialEq, Eq)]
enum KeyExposure {
    Others,
    Group,
}

/// Others may never have the host key. Its group may when root owns the file
/// (PostgreSQL's rule for its server key): a deliberate grant, as a Kubernetes
/// secret mounted with `fsGroup` and mode 0440 is, and the only way a
/// non-root container user reads a root-owned key.
fn key_exposure(mode: u32, owner_uid: u32) -> Option<KeyExposure> {
    if mode & 0o007 != 0 {
        Some(KeyExposure::Others)
    } else if mode & 0o070 != 0 && owner_uid != 0 {
        Some(KeyExposure::Group)
    } else {
        None
    }
}

fn openssl_err(path: &Path, source: ErrorStack) -> CredentialError {
    CredentialError::OpenSsl {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_exposure_follows_the_owner() {
        use KeyExposure::{Group, Others};
        let cases = [
            (0o600, 1000, None),
            (0o400, 0, None),
            (0o640, 1000, Some(Group)),
            (0o660, 65532, Some(Group)),
            // A Kubernetes secret with fsGroup: root's file, group-readable.
            (0o440, 0, None),
            (0o640, 0, None),
            (0o644, 0, Some(Others)),
            (0o604, 1000, Some(Others)),
            (0o601, 1000, Some(Others)),
        ];
        for (mode, uid, want) in cases {
            assert_eq!(key_exposure(mode, uid), want, "mode {mode:o} uid {uid}");
        }
    }

    #[test]
    fn hashed_names() {
        assert!(is_hashed_cert_name("1a2b3c4d.0"));
        assert!(is_hashed_cert_name("1a2b3c4d.12"));
        assert!(!is_hashed_cert_name("1a2b3c4d.r0"));
        assert!(!is_hashed_cert_name("1a2b3c4d.signing_policy"));
        assert!(!is_hashed_cert_name("TestCA.pem"));
        assert!(!is_hashed_cert_name("1a2b3c4.0"));
    }

    #[test]
    fn encrypted_pem_detection() {
        assert!(is_encrypted_pem(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n"));
        assert!(is_encrypted_pem(
            b"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n"
        ));
        assert!(!is_encrypted_pem(b"-----BEGIN PRIVATE KEY-----\n"));
    }
}
