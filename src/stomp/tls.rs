//! The OpenSSL client context for STOMP over TLS.

use std::path::Path;
use std::pin::Pin;

use openssl::ssl::{
    Ssl, SslContext, SslContextBuilder, SslFiletype, SslMethod, SslMode, SslOptions, SslVerifyMode,
    SslVersion,
};
use openssl::x509::store::{X509Lookup, X509StoreBuilder};
use openssl::x509::verify::X509CheckFlags;
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

/// The client side of TLS: one context per [`crate::stomp::connect`] call,
/// shared by every broker tried.
pub(crate) struct Connector(SslContext);

/// Builds the context: `SslConnector`'s settings, but trusting only what
/// was configured. (`SslConnector::builder` first loads the system's whole
/// CA bundle, some 50 ms per run, only for it to be replaced.)
pub(crate) fn connector(tls: &TlsSettings) -> Result<Connector, StompError> {
    let mut builder =
        SslContextBuilder::new(SslMethod::tls_client()).map_err(setup_err("TLS context"))?;
    let mut options = SslOptions::ALL | SslOptions::NO_COMPRESSION;
    options.remove(SslOptions::DONT_INSERT_EMPTY_FRAGMENTS);
    builder.set_options(options);
    builder.set_mode(
        SslMode::AUTO_RETRY | SslMode::ACCEPT_MOVING_WRITE_BUFFER | SslMode::ENABLE_PARTIAL_WRITE,
    );
    builder
        .set_cipher_list("DEFAULT:!aNULL:!eNULL:!MD5:!3DES:!DES:!RC4:!IDEA:!SEED:!aDSS:!SRP:!PSK")
        .map_err(setup_err("cipher list"))?;
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

    // Trust only what was configured.
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
            let pem =
                crate::access::read_capped(file, crate::access::MAX_PEM_BYTES).map_err(|e| {
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
    } else {
        builder
            .set_default_verify_paths()
            .map_err(setup_err("system CA store"))?;
    }
    Ok(Connector(builder.build()))
}

impl Connector {
    /// A connection to `host`: SNI for a name, and with `verify_hostname`
    /// the certificate must name it (a DNS name, or the IP address given),
    /// as `SslConnector::configure().into_ssl(host)` sets it up.
    fn ssl_for(
        &self,
        host: &str,
        verify_hostname: bool,
    ) -> Result<Ssl, openssl::error::ErrorStack> {
        let mut ssl = Ssl::new(&self.0)?;
        let ip = host.parse::<std::net::IpAddr>().ok();
        if ip.is_none() {
            ssl.set_hostname(host)?;
        }
        if verify_hostname {
            let param = ssl.param_mut();
            param.set_hostflags(X509CheckFlags::NO_PARTIAL_WILDCARDS);
            match ip {
                Some(ip) => param.set_ip(ip)?,
                None => param.set_host(host)?,
            }
        }
        Ok(ssl)
    }
}

/// TLS handshake over an established TCP connection.
pub(crate) async fn handshake(
    connector: &Connector,
    tls: &TlsSettings,
    broker: &BrokerAddress,
    tcp: TcpStream,
) -> Result<SslStream<TcpStream>, StompError> {
    let fail = |detail: String| StompError::Handshake {
        broker: broker.to_string(),
        detail,
    };
    let ssl = connector
        .ssl_for(&broker.host, tls.verify_hostname)
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
