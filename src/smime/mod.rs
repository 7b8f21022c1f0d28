//! S/MIME signing and encryption of outgoing messages, in process, byte for
//! byte what APEL SSM 4 sends.
//!
//! SSM runs `openssl smime -sign -inkey KEY -signer CERT -text` and, when
//! `server_cert` is set, pipes the result through `openssl smime -encrypt
//! -aes128 SERVER_CERT`, reading both outputs as Python text
//! (`universal_newlines=True`), which turns every CRLF the CLI writes into LF.
//! [`Signer::seal`] makes the same calls to libcrypto (`PKCS7_sign` with
//! `PKCS7_TEXT | PKCS7_DETACHED`, `SMIME_write_PKCS7`, `PKCS7_encrypt`) and
//! applies the same newline translation, so the receiver (`openssl smime
//! -verify`, which canonicalises line ends before checking the digest) sees
//! what it has always seen. The key is loaded once, not once per message.

mod credentials;
mod dn;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use openssl::error::ErrorStack;
use openssl::pkcs7::{Pkcs7, Pkcs7Flags};
use openssl::stack::Stack;
use openssl::x509::X509;

pub use credentials::{
    CaDirectory, CertRole, CredentialError, Credentials, EXPIRY_MARGIN_SECS, Recipient,
    ca_certificates_from_dir, ca_store_from_dir,
};
pub use dn::legacy_dn;

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
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SealError> {
        let flags = Pkcs7Flags::TEXT | Pkcs7Flags::DETACHED;
        let err = |source| SealError::Sign {
            cert: self.host.certificate_path().to_path_buf(),
            source,
        };
        let p7 = Pkcs7::sign(
            self.host.certificate(),
            self.host.private_key(),
            &self.no_extra_certs,
            message,
            flags,
        )
        .map_err(err)?;
        let smime = p7.to_smime(message, flags).map_err(err)?;
        Ok(universal_newlines(&smime))
    }
}

/// `openssl smime -encrypt -<cipher> SERVER_CERT`, as SSM reads it.
fn encrypt(signed: &[u8], recipient: &Recipient, cipher: Cipher) -> Result<Vec<u8>, SealError> {
    // No flags, like the CLI without -binary: the content's line ends are
    // canonicalised to CRLF inside the envelope.
    let flags = Pkcs7Flags::empty();
    let err = |source| SealError::Encrypt {
        cert: recipient.path().to_path_buf(),
        source,
    };
    let p7 = Pkcs7::encrypt(recipient.certs(), signed, cipher.openssl(), flags).map_err(err)?;
    let smime = p7.to_smime(signed, flags).map_err(err)?;
    Ok(universal_newlines(&smime))
}

/// Python's universal-newlines decoding of the CLI's output: `\r\n` and a
/// lone `\r` both become `\n`.
fn universal_newlines(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut iter = bytes.iter().copied().peekable();
    while let Some(b) = iter.next() {
        if b == b'\r' {
            iter.next_if_eq(&b'\n');
            out.push(b'\n');
        } else {
            out.push(b);
        }
    }
    out
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

    #[test]
    fn signer_is_shareable_between_tasks() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Signer>();
    }
}
