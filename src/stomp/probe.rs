//! Reaching a broker without talking STOMP: what `ssmsend --check` needs.

use tokio::time::timeout;

use super::config::{BrokerAddress, BrokerConfig};
use super::error::StompError;
use super::tls;

/// Builds the TLS client context `config` asks for, as [`super::connect`]
/// does first: a CA path or client certificate it refuses is found without
/// any connection. `Ok` without TLS.
pub fn check_tls(config: &BrokerConfig) -> Result<(), StompError> {
    config
        .tls
        .as_ref()
        .map(tls::connector)
        .transpose()
        .map(drop)
}

/// TCP to `broker`, then the TLS handshake when `config` has TLS (the
/// broker's certificate checked and ours presented as in a real run), and
/// nothing more: no STOMP frame is sent. Bounded by `config.timeouts.connect`.
pub async fn probe(config: &BrokerConfig, broker: &BrokerAddress) -> Result<(), StompError> {
    let connector = config.tls.as_ref().map(tls::connector).transpose()?;
    let attempt = async {
        super::handshake::open_transport(config, broker, connector.as_ref())
            .await
            .map(drop)
    };
    timeout(config.timeouts.connect, attempt)
        .await
        .unwrap_or_else(|_| {
            Err(StompError::ConnectTimeout {
                broker: broker.to_string(),
                after: config.timeouts.connect,
            })
        })
}
