//! A throw-away grid PKI generated at test time: a test CA, its hashed CA
//! directory (the layout of `/etc/grid-security/certificates`), and host,
//! server, expired, expiring, EC and mismatched credentials, all as PEM files
//! in a temporary directory that disappears with the [`Pki`].
//!
//! Nothing is committed: every key is generated when a test runs. Tests use it
//! as `crate::support::pki`.
//!
//! ```ignore
//! let pki = Pki::new();
//! let host = pki.host();            // CN=host.example.org, RSA, PKCS#1 key
//! let server = pki.server();        // SAN localhost + 127.0.0.1, for TLS doubles
//! let p12 = pki.pkcs12(&server, "changeit"); // for ActiveMQ keystores
//! assert!(pki.capath().join(format!("{:08x}.0", pki.ca().cert.subject_name_hash())).exists());
//! ```

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkcs12::Pkcs12;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::symm::Cipher;
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
    SubjectKeyIdentifier,
};
use openssl::x509::{X509, X509Name, X509NameBuilder};

/// Subject of the host certificate, in the order the RDNs are encoded.
pub const HOST_SUBJECT: &[(&str, &str)] = &[
    ("C", "IT"),
    ("O", "INFN"),
    ("OU", "Host"),
    ("L", "CNAF"),
    ("CN", "host.example.org"),
];
/// [`HOST_SUBJECT`] in OpenSSL's legacy one-line form, as SSM logs it and as
/// the APEL receiver's allow list spells it.
pub const HOST_DN: &str = "/C=IT/O=INFN/OU=Host/L=CNAF/CN=host.example.org";
/// Subject of the APEL server certificate messages are encrypted for.
pub const SERVER_SUBJECT: &[(&str, &str)] = &[("C", "UK"), ("O", "eScience"), ("CN", "localhost")];
pub const SERVER_DN: &str = "/C=UK/O=eScience/CN=localhost";

const DAY: i64 = 86_400;

/// A certificate, its private key and where both were written.
pub struct Identity {
    pub cert: X509,
    pub key: PKey<Private>,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

/// Private key algorithm of a generated identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// RSA 2048 (what grid host certificates use).
    Rsa,
    /// ECDSA on P-256.
    Ec,
}

/// PEM flavour of a private key file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyFormat {
    /// `BEGIN RSA PRIVATE KEY` / `BEGIN EC PRIVATE KEY` (PKCS#1 / SEC1).
    Traditional,
    /// `BEGIN PRIVATE KEY` (PKCS#8).
    Pkcs8,
}

/// What [`Pki::issue`] puts in a certificate.
#[derive(Clone, Debug)]
pub struct CertSpec {
    pub subject: Vec<(String, String)>,
    /// Seconds relative to now (negative = in the past).
    pub not_before: i64,
    pub not_after: i64,
    pub key: KeyKind,
    pub key_format: KeyFormat,
    /// DNS names and IP addresses for subjectAltName (an IP if it parses as one).
    pub sans: Vec<String>,
}

impl CertSpec {
    /// An RSA end-entity certificate valid from a day ago for a year.
    pub fn new(subject: &[(&str, &str)]) -> CertSpec {
        CertSpec {
            subject: subject
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            not_before: -DAY,
            not_after: 365 * DAY,
            key: KeyKind::Rsa,
            key_format: KeyFormat::Traditional,
            sans: Vec::new(),
        }
    }

    /// Validity window, in seconds relative to now.
    pub fn valid(mut self, not_before: i64, not_after: i64) -> CertSpec {
        self.not_before = not_before;
        self.not_after = not_after;
        self
    }

    pub fn key(mut self, kind: KeyKind, format: KeyFormat) -> CertSpec {
        self.key = kind;
        self.key_format = format;
        self
    }

    pub fn sans(mut self, sans: &[&str]) -> CertSpec {
        self.sans = sans.iter().map(|s| s.to_string()).collect();
        self
    }
}

/// A test CA with its hashed CA directory, in a temporary directory.
pub struct Pki {
    dir: tempfile::TempDir,
    ca: Identity,
    capath: PathBuf,
}

impl Pki {
    /// A CA called "Test Grid CA" with its capath already populated.
    pub fn new() -> Pki {
        Pki::with_ca("Test Grid CA")
    }

    /// A CA with the given CN (use two to get certificates that don't verify).
    pub fn with_ca(cn: &str) -> Pki {
        let dir = tempfile::tempdir().expect("temp dir");
        let key = generate_key(KeyKind::Rsa);
        let cert = self_signed_ca(cn, &key);
        let cert_path = dir.path().join("ca.pem");
        let key_path = dir.path().join("ca.key");
        fs::write(&cert_path, cert.to_pem().unwrap()).unwrap();
        write_key(&key_path, &key, KeyFormat::Pkcs8);
        let ca = Identity {
            cert,
            key,
            cert_path,
            key_path,
        };
        let capath = dir.path().join("certificates");
        fs::create_dir(&capath).unwrap();
        let pki = Pki { dir, ca, capath };
        pki.trust(&pki.ca.cert, "TestGridCA");
        pki
    }

    /// The temporary directory everything is written to.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The hashed CA directory (`capath` in sender.cfg).
    pub fn capath(&self) -> &Path {
        &self.capath
    }

    /// The CA certificate as a single PEM file (for `-CAfile`).
    pub fn ca_file(&self) -> &Path {
        &self.ca.cert_path
    }

    pub fn ca(&self) -> &Identity {
        &self.ca
    }

    /// Adds `cert` to the capath as `<name>.pem` plus `<subject hash>.0`, as
    /// the IGTF distribution lays it out.
    pub fn trust(&self, cert: &X509, name: &str) {
        let pem = cert.to_pem().unwrap();
        fs::write(self.capath.join(format!("{name}.pem")), &pem).unwrap();
        let hashed = self
            .capath
            .join(format!("{:08x}.0", cert.subject_name_hash()));
        fs::write(hashed, &pem).unwrap();
    }

    /// Issues a certificate signed by this CA and writes `<stem>.pem` and
    /// `<stem>.key` (mode 0600).
    pub fn issue(&self, stem: &str, spec: &CertSpec) -> Identity {
        let key = generate_key(spec.key);
        let cert = self.sign_cert(spec, &key);
        self.write_identity(stem, cert, key, spec.key_format)
    }

    /// The site's host certificate: [`HOST_SUBJECT`], RSA, PKCS#1 key file.
    pub fn host(&self) -> Identity {
        self.issue("hostcert", &CertSpec::new(HOST_SUBJECT))
    }

    /// A host certificate with an EC P-256 key in a PKCS#8 file.
    pub fn ec_host(&self) -> Identity {
        let spec = CertSpec::new(HOST_SUBJECT).key(KeyKind::Ec, KeyFormat::Pkcs8);
        self.issue("hostcert-ec", &spec)
    }

    /// The server's certificate ([`SERVER_SUBJECT`]) with subjectAltName
    /// `localhost` and `127.0.0.1`: the APEL server for encryption, and the TLS
    /// identity of the local broker and AMS doubles.
    pub fn server(&self) -> Identity {
        let spec = CertSpec::new(SERVER_SUBJECT).sans(&["localhost", "127.0.0.1"]);
        self.issue("servercert", &spec)
    }

    /// A host certificate that expired yesterday.
    pub fn expired(&self) -> Identity {
        let spec = CertSpec::new(HOST_SUBJECT).valid(-30 * DAY, -DAY);
        self.issue("expired", &spec)
    }

    /// A host certificate that expires in one hour (inside SSM's 24 h margin).
    pub fn expiring_in_one_hour(&self) -> Identity {
        let spec = CertSpec::new(HOST_SUBJECT).valid(-30 * DAY, 3600);
        self.issue("expiring", &spec)
    }

    /// A host certificate paired with a key file holding some other key.
    pub fn mismatched_key(&self) -> Identity {
        let mut id = self.issue("mismatched", &CertSpec::new(HOST_SUBJECT));
        id.key = generate_key(KeyKind::Rsa);
        write_key(&id.key_path, &id.key, KeyFormat::Traditional);
        id
    }

    /// Exports `id` with the CA chain as PKCS#12 (`<cert stem>.p12`), e.g. for
    /// an ActiveMQ keystore.
    pub fn pkcs12(&self, id: &Identity, password: &str) -> PathBuf {
        let mut chain = openssl::stack::Stack::new().unwrap();
        chain.push(self.ca.cert.clone()).unwrap();
        let p12 = Pkcs12::builder()
            .name("test")
            .pkey(&id.key)
            .cert(&id.cert)
            .ca(chain)
            .build2(password)
            .unwrap();
        let path = id.cert_path.with_extension("p12");
        fs::write(&path, p12.to_der().unwrap()).unwrap();
        path
    }

    fn sign_cert(&self, spec: &CertSpec, key: &PKey<Private>) -> X509 {
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        b.set_serial_number(&random_serial()).unwrap();
        b.set_subject_name(&name(&spec.subject)).unwrap();
        b.set_issuer_name(self.ca.cert.subject_name()).unwrap();
        b.set_pubkey(key).unwrap();
        b.set_not_before(&relative_time(spec.not_before)).unwrap();
        b.set_not_after(&relative_time(spec.not_after)).unwrap();
        b.append_extension(BasicConstraints::new().critical().build().unwrap())
            .unwrap();
        let usage = KeyUsage::new()
            .critical()
            .digital_signature()
            .key_encipherment()
            .build()
            .unwrap();
        b.append_extension(usage).unwrap();
        let eku = ExtendedKeyUsage::new()
            .server_auth()
            .client_auth()
            .build()
            .unwrap();
        b.append_extension(eku).unwrap();
        let ski = SubjectKeyIdentifier::new()
            .build(&b.x509v3_context(Some(&self.ca.cert), None))
            .unwrap();
        b.append_extension(ski).unwrap();
        let aki = AuthorityKeyIdentifier::new()
            .keyid(true)
            .build(&b.x509v3_context(Some(&self.ca.cert), None))
            .unwrap();
        b.append_extension(aki).unwrap();
        if !spec.sans.is_empty() {
            let san = subject_alt_name(&spec.sans, &b.x509v3_context(Some(&self.ca.cert), None));
            b.append_extension(san).unwrap();
        }
        b.sign(&self.ca.key, MessageDigest::sha256()).unwrap();
        b.build()
    }

    fn write_identity(
        &self,
        stem: &str,
        cert: X509,
        key: PKey<Private>,
        format: KeyFormat,
    ) -> Identity {
        let cert_path = self.dir().join(format!("{stem}.pem"));
        let key_path = self.dir().join(format!("{stem}.key"));
        fs::write(&cert_path, cert.to_pem().unwrap()).unwrap();
        write_key(&key_path, &key, format);
        Identity {
            cert,
            key,
            cert_path,
            key_path,
        }
    }
}

impl Default for Pki {
    fn default() -> Self {
        Pki::new()
    }
}

/// A fresh private key.
pub fn generate_key(kind: KeyKind) -> PKey<Private> {
    match kind {
        KeyKind::Rsa => PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap(),
        KeyKind::Ec => {
            let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
            PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
        }
    }
}

/// Writes `key` as PEM with mode 0600 (replacing the file if it exists).
pub fn write_key(path: &Path, key: &PKey<Private>, format: KeyFormat) {
    write_private(path, &key_pem(key, format));
}

/// Writes `key` as a passphrase-protected PKCS#8 PEM file, mode 0600.
pub fn write_encrypted_key(path: &Path, key: &PKey<Private>, passphrase: &str) {
    let pem = key
        .private_key_to_pem_pkcs8_passphrase(Cipher::aes_128_cbc(), passphrase.as_bytes())
        .unwrap();
    write_private(path, &pem);
}

fn key_pem(key: &PKey<Private>, format: KeyFormat) -> Vec<u8> {
    match (format, key.id()) {
        (KeyFormat::Pkcs8, _) => key.private_key_to_pem_pkcs8().unwrap(),
        (KeyFormat::Traditional, openssl::pkey::Id::RSA) => {
            key.rsa().unwrap().private_key_to_pem().unwrap()
        }
        (KeyFormat::Traditional, _) => key.ec_key().unwrap().private_key_to_pem().unwrap(),
    }
}

fn write_private(path: &Path, bytes: &[u8]) {
    let _ = fs::remove_file(path);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    f.write_all(bytes).unwrap();
}

fn self_signed_ca(cn: &str, key: &PKey<Private>) -> X509 {
    let subject = name(&[
        ("C".into(), "NL".into()),
        ("O".into(), "Test Grid".into()),
        ("CN".into(), cn.into()),
    ]);
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(&random_serial()).unwrap();
    b.set_subject_name(&subject).unwrap();
    b.set_issuer_name(&subject).unwrap();
    b.set_pubkey(key).unwrap();
    b.set_not_before(&relative_time(-DAY)).unwrap();
    b.set_not_after(&relative_time(10 * 365 * DAY)).unwrap();
    b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
        .unwrap();
    let usage = KeyUsage::new()
        .critical()
        .key_cert_sign()
        .crl_sign()
        .build()
        .unwrap();
    b.append_extension(usage).unwrap();
    let ski = SubjectKeyIdentifier::new()
        .build(&b.x509v3_context(None, None))
        .unwrap();
    b.append_extension(ski).unwrap();
    b.sign(key, MessageDigest::sha256()).unwrap();
    b.build()
}

fn subject_alt_name(
    sans: &[String],
    ctx: &openssl::x509::X509v3Context<'_>,
) -> openssl::x509::X509Extension {
    let mut san = SubjectAlternativeName::new();
    for s in sans {
        if s.parse::<std::net::IpAddr>().is_ok() {
            san.ip(s);
        } else {
            san.dns(s);
        }
    }
    san.build(ctx).unwrap()
}

fn name(entries: &[(String, String)]) -> X509Name {
    let mut b = X509NameBuilder::new().unwrap();
    for (field, value) in entries {
        b.append_entry_by_text(field, value).unwrap();
    }
    b.build()
}

fn random_serial() -> Asn1Integer {
    let mut bn = BigNum::new().unwrap();
    bn.rand(64, MsbOption::MAYBE_ZERO, false).unwrap();
    bn.to_asn1_integer().unwrap()
}

fn relative_time(offset_secs: i64) -> Asn1Time {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    Asn1Time::from_unix(now + offset_secs).unwrap()
}
