//! Signature check as the APEL receiver makes it: the S/MIME signature alone (`-noverify`),
//! then the signer's chain against the trusted CA, then the signer DN against an allow list.

// The DN form APEL and GOCDB compare: the library's, so the double and the
// sender cannot disagree on it.
use cloud_accounting::smime::legacy_dn;
use openssl::pkcs7::{Pkcs7, Pkcs7Flags};
use openssl::stack::Stack;
use openssl::x509::store::{X509Store, X509StoreBuilder};
use openssl::x509::{X509, X509StoreContext};

pub struct Verifier {
    store: X509Store,
    /// Empty: any signer with a valid chain.
    allowed_dns: Vec<String>,
}

pub struct Verified {
    pub signer_dn: String,
    /// The signed content with the `Content-Type: text/plain` header removed (as `-text`).
    pub content: Vec<u8>,
}

impl Verifier {
    pub fn new(cas: Vec<X509>, allowed_dns: Vec<String>) -> Result<Verifier, String> {
        let mut b = X509StoreBuilder::new().map_err(|e| e.to_string())?;
        for ca in cas {
            b.add_cert(ca).map_err(|e| e.to_string())?;
        }
        Ok(Verifier {
            store: b.build(),
            allowed_dns,
        })
    }

    pub fn verify(&self, smime: &[u8]) -> Result<Verified, String> {
        let (p7, detached) = Pkcs7::from_smime(smime).map_err(|e| format!("not S/MIME: {e}"))?;
        let none = Stack::<X509>::new().map_err(|e| e.to_string())?;
        let empty_store = X509StoreBuilder::new().map_err(|e| e.to_string())?.build();
        let mut content = Vec::new();
        p7.verify(
            &none,
            &empty_store,
            detached.as_deref(),
            Some(&mut content),
            Pkcs7Flags::NOVERIFY | Pkcs7Flags::TEXT,
        )
        .map_err(|e| format!("bad signature: {e}"))?;
        let signers = p7
            .signers(&none, Pkcs7Flags::empty())
            .map_err(|e| format!("no signer: {e}"))?;
        let signer = signers.get(0).ok_or("no signer certificate")?;
        let mut chain = Stack::<X509>::new().map_err(|e| e.to_string())?;
        if let Some(certs) = p7.signed().and_then(|s| s.certificates()) {
            for c in certs {
                chain.push(c.to_owned()).map_err(|e| e.to_string())?;
            }
        }
        let mut ctx = X509StoreContext::new().map_err(|e| e.to_string())?;
        let ok = ctx
            .init(&self.store, signer, &chain, |c| {
                if c.verify_cert()? {
                    Ok(None)
                } else {
                    Ok(Some(c.error().to_string()))
                }
            })
            .map_err(|e| e.to_string())?;
        if let Some(why) = ok {
            return Err(format!("signer chain: {why}"));
        }
        let signer_dn = legacy_dn(signer.subject_name());
        if !self.allowed_dns.is_empty() && !self.allowed_dns.contains(&signer_dn) {
            return Err(format!("signer {signer_dn} is not in the allowed DN list"));
        }
        Ok(Verified { signer_dn, content })
    }
}
