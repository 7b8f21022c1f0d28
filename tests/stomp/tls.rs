//! The STOMP client's TLS against a scripted TLS broker on 127.0.0.1: the
//! broker's certificate must name the host we connected to (a DNS name or
//! the IP address), unless `verify_hostname` is off, and SNI carries names,
//! never addresses.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cloud_accounting::stomp::codec::{Command, Frame, Inbound, Outbound, StompCodec};
use cloud_accounting::stomp::{self, BrokerAddress, BrokerConfig, TlsSettings, TrustAnchors};
use futures_util::{SinkExt, StreamExt};
use openssl::ssl::{NameType, SslAcceptor, SslMethod};
use tokio::net::TcpListener;
use tokio_util::codec::Framed;

use crate::support::pki::{CertSpec, Identity, Pki};

/// A TLS broker with `identity` that answers each CONNECT with CONNECTED;
/// returns its port and the SNI name of each connection.
async fn tls_broker(identity: &Identity) -> (u16, Arc<Mutex<Vec<Option<String>>>>) {
    let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).unwrap();
    acceptor.set_certificate(&identity.cert).unwrap();
    acceptor.set_private_key(&identity.key).unwrap();
    let acceptor = acceptor.build();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let sni = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&sni);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let ssl = openssl::ssl::Ssl::new(acceptor.context()).unwrap();
            let mut tls = tokio_openssl::SslStream::new(ssl, tcp).unwrap();
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                // A client that refuses our certificate ends the handshake.
                if std::pin::Pin::new(&mut tls).accept().await.is_err() {
                    return;
                }
                let name = tls.ssl().servername(NameType::HOST_NAME).map(str::to_owned);
                seen.lock().unwrap().push(name);
                let mut framed = Framed::new(tls, StompCodec::default());
                while let Some(Ok(inbound)) = framed.next().await {
                    let Inbound::Frame(frame) = inbound else {
                        continue;
                    };
                    let reply = match frame.command {
                        Command::Connect | Command::Stomp => {
                            Frame::new(Command::Connected).header("version", "1.2")
                        }
                        Command::Disconnect => {
                            let id = frame.get("receipt").unwrap_or_default().to_owned();
                            Frame::new(Command::Receipt).header("receipt-id", &id)
                        }
                        _ => continue,
                    };
                    if framed.send(Outbound::Frame(reply)).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, sni)
}

fn config(pki: &Pki, host: &str, port: u16, verify_hostname: bool) -> BrokerConfig {
    let mut config = BrokerConfig::new(vec![BrokerAddress::new(host, port)]);
    config.timeouts.connect = Duration::from_secs(5);
    config.tls = Some(TlsSettings {
        identity: None,
        trust: TrustAnchors::CaPath(pki.capath().to_path_buf()),
        verify_hostname,
    });
    config
}

#[tokio::test]
async fn broker_certificate_must_name_the_host() {
    let pki = Pki::new();
    let named = pki.server(); // localhost, 127.0.0.1
    let (port, sni) = tls_broker(&named).await;

    for host in ["127.0.0.1", "localhost"] {
        let mut conn = stomp::connect(&config(&pki, host, port, true))
            .await
            .unwrap_or_else(|e| panic!("{host}: {e}"));
        conn.disconnect().await.unwrap();
    }
    assert_eq!(
        *sni.lock().unwrap(),
        vec![None, Some("localhost".to_string())],
        "SNI for names only"
    );

    // Trusted CA, but the certificate names another host.
    let other = pki.issue(
        "other",
        &CertSpec::new(&[("CN", "other.example.org")]).sans(&["other.example.org"]),
    );
    let (port, _) = tls_broker(&other).await;
    for host in ["127.0.0.1", "localhost"] {
        let err = stomp::connect(&config(&pki, host, port, true))
            .await
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.contains("certificate verif"), "{host}: {err}");
    }
    // verify_hostname = false checks the chain only.
    let mut conn = stomp::connect(&config(&pki, "127.0.0.1", port, false))
        .await
        .unwrap();
    conn.disconnect().await.unwrap();
}
