//! The OpenSSL client context for STOMP over TLS.

use std::path::Path;
use std::pin::Pin;

use openssl::ssl::{SslConnector, SslFiletype, SslMethod, SslVerifyMode, SslVersion};
use openssl::x509::store::{X509Lookup, X509StoreBuilder};
use openssl::x509::{X509, X509VerifyResult};
use tokio::net::TcpStream;
use tokio_openssl::SslStream;

use super::config::{BrokerAddress, TlsSettings, TrustAnchors};
use super::error::StompError;

fn setup_err(
    what: impl std::fmt::Display,
) -> impl FnOnce(openssl::error::ErrorStack) -> StompError {
    move |e| StompError::TlsSetup(format!("{what}: {e}"))
}

fn utf8_path(path: &Path) -> Result<&str, StompError> {
    path.to_str()
        .filter(|s| !s.contains('\0'))
        .ok_or_else(|| StompError::TlsSetup(format!("unusable path {}", path.display())))
}

/// Builds the context once per [`crate::stomp::connect`] call; every broker
/// tried shares it.
pub(crate) fn connector(tls: &TlsSettings) -> Result<SslConnector, StompError> {
    let mut builder =
        SslConnector::builder(SslMethod::tls_client()).map_err(setup_err("TLS context"))?;
    builder
        .set_min_proto_version(Some(SslVersion::TLS1_2))
        .map_err(setup_err("minimum TLS version"))?;
    builder.set_verify(SslVerifyMode::PEER);

    if let Some(id) = &tls.identity {
        builder
            .set_certificate(&id.certificate)
            .map_err(setup_err("client certificate"))?;
        for extra in &id.chain {
            builder
                .add_extra_chain_cert(extra.clone())
                .map_err(setup_err("client certificate chain"))?;
        }
        builder
            .set_private_key(&id.key)
            .map_err(setup_err("client key"))?;
        builder
            .check_private_key()
            .map_err(setup_err("client certificate and key do not match"))?;
    }

    // Trust only what was configured: a verify store replaces the defaults
    // SslConnector::builder loaded.
    let mut store = X509StoreBuilder::new().map_err(setup_err("CA store"))?;
    let custom = match &tls.trust {
        TrustAnchors::CaPath(dir) => {
            if !dir.is_dir() {
                return Err(StompError::TlsSetup(format!(
                    "CA path {} is not a directory",
                    dir.display()
                )));
            }
            store
                .add_lookup(X509Lookup::hash_dir())
                .map_err(setup_err("CA path lookup"))?
                .add_dir(utf8_path(dir)?, SslFiletype::PEM)
                .map_err(setup_err(format!("CA path {}", dir.display())))?;
            true
        }
        TrustAnchors::CaFile(file) => {
            let pem = std::fs::read(file).map_err(|e| {
                StompError::TlsSetup(format!("cannot read CA file {}: {e}", file.display()))
            })?;
            let certs = X509::stack_from_pem(&pem)
                .map_err(setup_err(format!("CA file {}", file.display())))?;
            if certs.is_empty() {
                return Err(StompError::TlsSetup(format!(
                    "CA file {} holds no certificate",
                    file.display()
                )));
            }
            for cert in certs {
                store
                    .add_cert(cert)
                    .map_err(setup_err(format!("CA file {}", file.display())))?;
            }
            true
        }
        TrustAnchors::Certificates(certs) => {
            for cert in certs {
                store
                    .add_cert(cert.clone())
                    .map_err(setup_err("CA certificate"))?;
            }
            true
        }
        TrustAnchors::SystemDefault => false,
    };
    if custom {
        builder
            .set_verify_cert_store(store.build())
            .map_err(setup_err("CA store"))?;
    }
    Ok(builder.build())
}

/// TLS handshake over an established TCP connection.
pub(crate) async fn handshake(
    connector: &SslConnector,
    tls: &TlsSettings,
    broker: &BrokerAddress,
    tcp: TcpStream,
) -> Result<SslStream<TcpStream>, StompError> {
    let fail = |detail: String| StompError::Handshake {
        broker: broker.to_string(),
        detail,
    };
    let ssl = connector
        .configure()
        .map_err(|e| fail(e.to_string()))?
        .verify_hostname(tls.verify_hostname)
        .into_ssl(&broker.host)
        .map_err(|e| fail(e.to_string()))?;
    let mut stream = SslStream::new(ssl, tcp).map_err(|e| fail(e.to_string()))?;
    if let Err(e) = Pin::new(&mut stream).connect().await {
        let verify = stream.ssl().verify_result();
        let detail = if verify == X509VerifyResult::OK {
            e.to_string()
        } else {
            format!("{e} (certificate verification: {})", verify.error_string())
        };
        return Err(fail(detail));
    }
    Ok(stream)
}
