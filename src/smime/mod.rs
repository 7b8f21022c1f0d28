//! S/MIME signing and encryption of outgoing messages, in process, byte for
//! byte what APEL SSM 4 sends.
//!
//! SSM runs `openssl smime -sign -inkey KEY -signer CERT -text` and, when
//! `server_cert` is set, pipes the result through `openssl smime -encrypt
//! -aes128 SERVER_CERT`, reading both outputs as Python text
//! (`universal_newlines=True`), which turns every CRLF the CLI writes into LF.
//! [`Signer::seal`] produces the same bytes in process (`PKCS7_sign` on the
//! text canonicalised as `PKCS7_TEXT` does, the `multipart/signed` envelope
//! of `SMIME_write_PKCS7`, `PKCS7_encrypt`) with the same newline
//! translation, so the receiver (`openssl smime -verify`, which canonicalises
//! line ends before checking the digest) sees what it has always seen; unit
//! tests compare it with libcrypto's own text mode. The key is loaded once,
//! not once per message.

mod credentials;
mod dn;
mod identity;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use openssl::error::ErrorStack;
use openssl::pkcs7::{Pkcs7, Pkcs7Flags};
use openssl::stack::Stack;
use openssl::x509::X509;

pub use credentials::{
    CaDirectory, CertRole, CredentialError, Credentials, EXPIRY_MARGIN_SECS, Recipient,
    ca_certificates_from_dir, ca_store_from_dir, key_exposure_warning,
};
pub use dn::legacy_dn;
pub use identity::ClientIdentity;

/// Content cipher for encrypted messages; SSM accepts these three and uses
/// aes128.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Cipher {
    #[default]
    Aes128,
    Aes192,
    Aes256,
}

impl Cipher {
    fn openssl(self) -> openssl::symm::Cipher {
        match self {
            Cipher::Aes128 => openssl::symm::Cipher::aes_128_cbc(),
            Cipher::Aes192 => openssl::symm::Cipher::aes_192_cbc(),
            Cipher::Aes256 => openssl::symm::Cipher::aes_256_cbc(),
        }
    }
}

impl fmt::Display for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Cipher::Aes128 => "aes128",
            Cipher::Aes192 => "aes192",
            Cipher::Aes256 => "aes256",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cipher {0:?}: expected aes128, aes192 or aes256")]
pub struct UnknownCipher(pub String);

impl FromStr for Cipher {
    type Err = UnknownCipher;

    /// SSM's names (`crypto.CIPHERS`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "aes128" => Ok(Cipher::Aes128),
            "aes192" => Ok(Cipher::Aes192),
            "aes256" => Ok(Cipher::Aes256),
            other => Err(UnknownCipher(other.to_string())),
        }
    }
}

/// A message could not be signed or encrypted (a runtime failure, exit 1).
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("signing the message with {cert} failed: {source}")]
    Sign { cert: PathBuf, source: ErrorStack },
    #[error("encrypting the message for {cert} failed: {source}")]
    Encrypt { cert: PathBuf, source: ErrorStack },
}

/// The `[certificates]` section of sender.cfg, as SSM reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateSettings {
    /// `certificate`: host certificate (PEM).
    pub certificate: PathBuf,
    /// `key`: host private key (PEM, unencrypted).
    pub key: PathBuf,
    /// `capath`: hashed CA directory.
    pub capath: PathBuf,
    /// `server_cert`: encrypt for this certificate when set.
    pub server_cert: Option<PathBuf>,
    /// `verify_server_cert` (default true): check `server_cert` against `capath`.
    pub verify_server_cert: bool,
}

/// Signs (and, with a recipient, encrypts) outgoing messages.
pub struct Signer {
    host: Credentials,
    recipient: Option<Recipient>,
    cipher: Cipher,
    no_extra_certs: Stack<X509>,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("host", &self.host)
            .field("recipient", &self.recipient)
            .field("cipher", &self.cipher)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// Does all of SSM's start-up checks for `settings` (see
    /// [`Credentials::load`] and [`Recipient::load`]) and logs, as SSM does,
    /// who signs and who messages are encrypted for.
    pub fn from_settings(settings: &CertificateSettings) -> Result<Signer, CredentialError> {
        let host = Credentials::load(&settings.certificate, &settings.key)?;
        tracing::info!("Messages will be signed using {}", host.subject_dn());
        let recipient = match &settings.server_cert {
            None => {
                tracing::info!("No server certificate supplied.  Will not encrypt messages.");
                None
            }
            Some(server_cert) => {
                let trust = if settings.verify_server_cert {
                    Some(CaDirectory::open(&settings.capath)?)
                } else {
                    tracing::warn!(
                        "verify_server_cert is false: {} is not checked against {}",
                        server_cert.display(),
                        settings.capath.display()
                    );
                    None
                };
                let r = Recipient::load(server_cert, &host, trust.as_ref())?;
                tracing::info!("Messages will be encrypted using {}", r.subject_dn());
                Some(r)
            }
        };
        Signer::new(host, recipient, Cipher::default())
    }

    /// A signer from already checked parts.
    pub fn new(
        host: Credentials,
        recipient: Option<Recipient>,
        cipher: Cipher,
    ) -> Result<Signer, CredentialError> {
        let no_extra_certs = Stack::new().map_err(|source| CredentialError::OpenSsl {
            path: host.certificate_path().to_path_buf(),
            source,
        })?;
        Ok(Signer {
            host,
            recipient,
            cipher,
            no_extra_certs,
        })
    }

    /// The same signer, encrypting with `cipher` (`[messaging] encryption`).
    pub fn with_cipher(mut self, cipher: Cipher) -> Signer {
        self.cipher = cipher;
        self
    }

    pub fn credentials(&self) -> &Credentials {
        &self.host
    }

    pub fn recipient(&self) -> Option<&Recipient> {
        self.recipient.as_ref()
    }

    /// What SSM sends for `message`: signed, then encrypted if there is a
    /// recipient.
    pub fn seal(&self, message: &[u8]) -> Result<Vec<u8>, SealError> {
        let signed = self.sign(message)?;
        match &self.recipient {
            None => Ok(signed),
            Some(recipient) => encrypt(&signed, recipient, self.cipher),
        }
    }

    /// `openssl smime -sign -inkey KEY -signer CERT -text`, as SSM reads it:
    /// a clear-signed `multipart/signed` whose first part is
    /// `Content-Type: text/plain` plus `message`.
    ///
    /// Byte for byte what `PKCS7_sign` + `SMIME_write_PKCS7` with
    /// `PKCS7_TEXT | PKCS7_DETACHED` write (except the random MIME boundary),
    /// at a fraction of the cost. libcrypto canonicalises the text line by
    /// line through a chain of BIOs, twice, and writes the envelope into a
    /// memory BIO that grows by copy-and-wipe; here the text is canonicalised
    /// once ([`canonical_text`]) and digested and signed once by `PKCS7_sign`,
    /// and the envelope around it is written straight into one buffer
    /// ([`multipart_signed`]), in the form SSM reads (LF line ends).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SealError> {
        let err = |source| SealError::Sign {
            cert: self.host.certificate_path().to_path_buf(),
            source,
        };
        let canonical = canonical_text(message, TEXT_PLAIN_HEADER);
        let p7 = Pkcs7::sign(
            self.host.certificate(),
            self.host.private_key(),
            &self.no_extra_certs,
            &canonical,
            Pkcs7Flags::BINARY | Pkcs7Flags::DETACHED,
        )
        .map_err(err)?;
        let der = p7.to_der().map_err(err)?;
        let boundary = mime_boundary().map_err(err)?;
        Ok(multipart_signed(&boundary, message, &canonical, &der))
    }
}

/// What `PKCS7_TEXT` puts before the content (inside the signature).
const TEXT_PLAIN_HEADER: &[u8] = b"Content-Type: text/plain\r\n\r\n";

/// The digest `PKCS7_sign` picks for RSA and EC keys (their default digest
/// in OpenSSL 3), as `SMIME_write_PKCS7` names it in `micalg`.
const MICALG: &str = "sha-256";

/// `SMIME_write_ASN1`'s boundary: 32 random nibbles as upper-case hex.
fn mime_boundary() -> Result<String, ErrorStack> {
    let mut bytes = [0u8; 32];
    openssl::rand::rand_bytes(&mut bytes)?;
    Ok(bytes
        .iter()
        .map(|b| char::from(b"0123456789ABCDEF"[usize::from(b & 0x0f)]))
        .collect())
}

/// `SMIME_write_ASN1` for a detached signature (`mime_eol` "\n", the
/// old `x-pkcs7` MIME names, as the CLI writes them), read with Python's
/// universal newlines: the canonical content's CRLFs (and lone CRs) become
/// LFs, the rest has none. `canonical` is `message` as [`canonical_text`]
/// made it. `der` is the signature (`PKCS7` in DER), written
/// as `B64_write_ASN1` does: 64 characters per line.
fn multipart_signed(boundary: &str, message: &[u8], canonical: &[u8], der: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(canonical.len() + der.len() * 4 / 3 + der.len() / 48 + 512);
    let head = format!(
        "MIME-Version: 1.0\nContent-Type: multipart/signed; \
         protocol=\"application/x-pkcs7-signature\"; micalg=\"{MICALG}\"; \
         boundary=\"----{boundary}\"\n\nThis is an S/MIME signed message\n\n------{boundary}\n"
    );
    out.extend_from_slice(head.as_bytes());
    if memchr::memchr(b'\r', message).is_none() {
        // Without CRs, canonicalising then reading back with universal
        // newlines gives the message itself (APEL messages are LF text).
        out.extend_from_slice(b"Content-Type: text/plain\n\n");
        out.extend_from_slice(message);
    } else {
        push_universal_newlines(&mut out, canonical);
    }
    let signature_head = format!(
        "\n------{boundary}\nContent-Type: application/x-pkcs7-signature; name=\"smime.p7s\"\n\
         Content-Transfer-Encoding: base64\n\
         Content-Disposition: attachment; filename=\"smime.p7s\"\n\n"
    );
    out.extend_from_slice(signature_head.as_bytes());
    for line in der.chunks(48) {
        out.extend_from_slice(openssl::base64::encode_block(line).as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(format!("\n------{boundary}--\n\n").as_bytes());
    out
}

/// OpenSSL's line buffer in `SMIME_crlf_copy` (`MAX_SMLEN`): `BIO_gets`
/// returns at most 1023 bytes of a longer line at a time.
const MAX_SMLEN: usize = 1024;

/// `header` followed by `text` as `SMIME_crlf_copy` canonicalises it without
/// `PKCS7_BINARY`: read in `BIO_gets` pieces (through the next LF, at most
/// 1023 bytes), each stripped of its trailing CRs and LFs and, if it held an
/// LF, ended with CRLF. Everything else is copied as is (a CR inside a line
/// stays, unless a piece of a long line happens to end with it).
fn canonical_text(text: &[u8], header: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(header.len() + text.len() + text.len() / 16 + 2);
    out.extend_from_slice(header);
    let mut rest = text;
    while !rest.is_empty() {
        let max = rest.len().min(MAX_SMLEN - 1);
        let len = memchr::memchr(b'\n', &rest[..max]).map_or(max, |i| i + 1);
        let (piece, tail) = rest.split_at(len);
        rest = tail;
        let mut end = piece.len();
        let mut eol = false;
        while end > 0 {
            match piece[end - 1] {
                b'\n' => eol = true,
                b'\r' => {}
                _ => break,
            }
            end -= 1;
        }
        out.extend_from_slice(&piece[..end]);
        if eol {
            out.extend_from_slice(b"\r\n");
        }
    }
    out
}

/// `openssl smime -encrypt -<cipher> SERVER_CERT`, as SSM reads it.
fn encrypt(signed: &[u8], recipient: &Recipient, cipher: Cipher) -> Result<Vec<u8>, SealError> {
    // The CLI without -binary canonicalises the content's line ends to CRLF
    // inside the envelope; done here once, then encrypted as is.
    let flags = Pkcs7Flags::BINARY;
    let err = |source| SealError::Encrypt {
        cert: recipient.path().to_path_buf(),
        source,
    };
    let canonical = canonical_text(signed, b"");
    let p7 = Pkcs7::encrypt(recipient.certs(), &canonical, cipher.openssl(), flags).map_err(err)?;
    let smime = p7.to_smime(&canonical, flags).map_err(err)?;
    Ok(universal_newlines(&smime))
}

/// Python's universal-newlines decoding of the CLI's output: `\r\n` and a
/// lone `\r` both become `\n`.
fn universal_newlines(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    push_universal_newlines(&mut out, bytes);
    out
}

/// [`universal_newlines`] appended to `out`, copying the runs between CRs
/// whole.
fn push_universal_newlines(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut rest = bytes;
    while let Some(cr) = memchr::memchr(b'\r', rest) {
        out.extend_from_slice(&rest[..cr]);
        out.push(b'\n');
        let skip = if rest.get(cr + 1) == Some(&b'\n') {
            2
        } else {
            1
        };
        rest = &rest[cr + skip..];
    }
    out.extend_from_slice(rest);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn universal_newlines_like_python() {
        assert_eq!(universal_newlines(b"a\r\nb\rc\n\r\n\r"), b"a\nb\nc\n\n\n");
        assert_eq!(universal_newlines(b""), b"");
    }

    #[test]
    fn cipher_names_are_ssms() {
        for c in [Cipher::Aes128, Cipher::Aes192, Cipher::Aes256] {
            assert_eq!(c.to_string().parse::<Cipher>(), Ok(c));
        }
        assert_eq!(Cipher::default(), Cipher::Aes128);
        assert!("des3".parse::<Cipher>().is_err());
    }

    /// A throw-away host certificate and RSA key, loaded as `Credentials`.
    fn credentials(dir: &std::path::Path) -> Credentials {
        use openssl::pkey::PKey;
        use openssl::rsa::Rsa;
        credentials_with(dir, PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap())
    }

    /// A throw-away self-signed host certificate for `key`.
    fn credentials_with(
        dir: &std::path::Path,
        key: openssl::pkey::PKey<openssl::pkey::Private>,
    ) -> Credentials {
        use openssl::asn1::Asn1Time;
        use openssl::hash::MessageDigest;
        use openssl::x509::{X509, X509NameBuilder};
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", "host.example.org").unwrap();
        let name = name.build();
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::days_from_now(30).unwrap())
            .unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        let cert = b.build();
        let (c, k) = (dir.join("host.pem"), dir.join("host.key"));
        std::fs::write(&c, cert.to_pem().unwrap()).unwrap();
        std::fs::write(&k, key.private_key_to_pem_pkcs8().unwrap()).unwrap();
        Credentials::load(&c, &k).unwrap()
    }

    /// What `sign` did before it canonicalised the text itself: libcrypto in
    /// text mode, signing in `Pkcs7::sign` and again in `to_smime`.
    fn reference_sign(host: &Credentials, message: &[u8]) -> Vec<u8> {
        let flags = Pkcs7Flags::TEXT | Pkcs7Flags::DETACHED;
        let certs = Stack::new().unwrap();
        let p7 = Pkcs7::sign(
            host.certificate(),
            host.private_key(),
            &certs,
            message,
            flags,
        )
        .unwrap();
        universal_newlines(&p7.to_smime(message, flags).unwrap())
    }

    /// The random MIME boundary replaced by a fixed word.
    fn fixed_boundary(smime: &[u8]) -> Vec<u8> {
        let text = String::from_utf8(smime.to_vec()).unwrap();
        let at = text.find("boundary=\"----").unwrap() + "boundary=\"----".len();
        let boundary = text[at..at + 32].to_string();
        text.replace(&boundary, "BOUNDARY").into_bytes()
    }

    /// Inputs that exercise every branch of `SMIME_crlf_copy`: CR, LF and
    /// CRLF line ends, runs of them, trailing spaces, NULs, no final newline,
    /// and lines around the 1023-byte `BIO_gets` limit with a CR at the cut.
    fn tricky_inputs() -> Vec<Vec<u8>> {
        let mut v: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"a".to_vec(),
            b"\n".to_vec(),
            b"\r".to_vec(),
            b"\r\n\r\n".to_vec(),
            b"a\nb\n".to_vec(),
            b"a\r\nb\r\n".to_vec(),
            b"a\rb\rc".to_vec(),
            b"a\r\r\nb\n\n\nc  \n \t\n".to_vec(),
            b"no newline at the end".to_vec(),
            b"nul\0inside\n\0\n".to_vec(),
            b"APEL-cloud-message: v0.4\nVMUUID: x\n%%\n".to_vec(),
        ];
        for len in [1021, 1022, 1023, 1024, 1025, 2045, 2046, 2047, 3000] {
            let line = vec![b'x'; len];
            for end in [&b"\n"[..], b"\r\n", b"\r", b"", b"\r\r\n"] {
                let mut m = line.clone();
                m.extend_from_slice(end);
                m.extend_from_slice(b"next\n");
                v.push(m);
            }
            // A CR exactly where BIO_gets cuts the line, then more text.
            let mut m = vec![b'y'; len];
            m[len.min(1023) - 1] = b'\r';
            m.extend_from_slice(b"tail\n");
            v.push(m);
        }
        // Pseudo-random ASCII with frequent line ends (fixed seed).
        let mut seed: u64 = 0x5eed;
        for _ in 0..60 {
            let mut m = Vec::new();
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let len = (seed >> 33) as usize % 5000;
            for _ in 0..len {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let r = (seed >> 33) as u32;
                m.push(match r % 40 {
                    0 => b'\r',
                    1..=3 => b'\n',
                    4 => b' ',
                    _ => b' ' + (r % 95) as u8,
                });
            }
            v.push(m);
        }
        v
    }

    #[test]
    fn sign_is_byte_identical_to_libcrypto_text_mode() {
        let dir = tempfile::tempdir().unwrap();
        let signer = Signer::new(credentials(dir.path()), None, Cipher::default()).unwrap();
        for input in tricky_inputs() {
            assert_signs_like_libcrypto(&signer, &input);
        }
    }

    /// EC host keys (P-256, P-384) get the same envelope, `micalg` included.
    #[test]
    fn sign_is_byte_identical_to_libcrypto_for_ec_keys() {
        use openssl::ec::{EcGroup, EcKey};
        use openssl::nid::Nid;
        use openssl::pkey::PKey;
        for curve in [Nid::X9_62_PRIME256V1, Nid::SECP384R1] {
            let dir = tempfile::tempdir().unwrap();
            let group = EcGroup::from_curve_name(curve).unwrap();
            let key = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
            let signer =
                Signer::new(credentials_with(dir.path(), key), None, Cipher::default()).unwrap();
            // ECDSA signatures are randomised: compare all but the signature.
            let input = b"APEL-cloud-message: v0.4\nVMUUID: x\n%%\n";
            let ours = fixed_boundary(&signer.sign(input).unwrap());
            let reference = fixed_boundary(&reference_sign(signer.credentials(), input));
            let envelope = |s: &[u8]| {
                let text = String::from_utf8(s.to_vec()).unwrap();
                let cut = text.find("filename=\"smime.p7s\"").unwrap();
                (
                    text[..cut].to_string(),
                    text.ends_with("\n------BOUNDARY--\n\n"),
                )
            };
            assert_eq!(envelope(&ours), envelope(&reference), "{curve:?}");
        }
    }

    fn assert_signs_like_libcrypto(signer: &Signer, input: &[u8]) {
        // Two signatures are identical when made in the same second
        // (signingTime is signed); retry across a second boundary.
        let same = (0..3).any(|_| {
            let ours = fixed_boundary(&signer.sign(input).unwrap());
            let reference = fixed_boundary(&reference_sign(signer.credentials(), input));
            ours == reference
        });
        assert!(
            same,
            "differs for {:?}",
            String::from_utf8_lossy(&input[..input.len().min(80)])
        );
    }

    #[test]
    fn encrypted_content_is_what_libcrypto_text_mode_encrypts() {
        use openssl::pkcs7::Pkcs7;
        let dir = tempfile::tempdir().unwrap();
        let host = credentials(dir.path());
        let server = credentials(&{
            let d = dir.path().join("server");
            std::fs::create_dir(&d).unwrap();
            d
        });
        let recipient = Recipient::load(&dir.path().join("server/host.pem"), &host, None).unwrap();
        for input in tricky_inputs().into_iter().take(40) {
            let ours = encrypt(&input, &recipient, Cipher::Aes128).unwrap();
            let mut rcerts = Stack::new().unwrap();
            rcerts.push(server.certificate().clone()).unwrap();
            let reference = {
                let p7 = Pkcs7::encrypt(
                    &rcerts,
                    &input,
                    openssl::symm::Cipher::aes_128_cbc(),
                    Pkcs7Flags::empty(),
                )
                .unwrap();
                universal_newlines(&p7.to_smime(&input, Pkcs7Flags::empty()).unwrap())
            };
            let open = |smime: &[u8]| {
                let (p7, _) = Pkcs7::from_smime(smime).unwrap();
                p7.decrypt(
                    server.private_key(),
                    server.certificate(),
                    Pkcs7Flags::empty(),
                )
                .unwrap()
            };
            assert_eq!(open(&ours), open(&reference));
            let header = |s: &[u8]| {
                let t = String::from_utf8(s.to_vec()).unwrap();
                t[..t.find("\n\n").unwrap()].to_string()
            };
            assert_eq!(header(&ours), header(&reference));
        }
    }

    #[test]
    fn signer_is_shareable_between_tasks() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Signer>();
    }
}
