//! The daemon's servers: the HTTPS gateway (over [`crate::gateway::ProviderGateway`]) and the
//! ingress (HTTP reverse proxy by host name, TCP port forwarder), both from `kumo-gateway`.

use std::sync::Arc;

use tokio::{sync::watch, task::JoinSet};

use crate::{ProviderConfig, ProviderError, daemon::Provider};

/// The gateway's TLS material: its certificate's fingerprint (what goes on chain).
#[derive(Debug, Clone)]
pub struct GatewayTls {
    /// SHA-256 of the certificate.
    pub fingerprint: [u8; 32],
}

/// Loads or creates the gateway's certificate in the data directory.
pub fn gateway_tls(_config: &ProviderConfig) -> Result<GatewayTls, ProviderError> {
    // TODO(gateway merge): kumo_gateway::tls::GatewayCert::load_or_create.
    Ok(GatewayTls {
        fingerprint: [0; 32],
    })
}

/// Starts the gateway and the ingress.
pub async fn spawn_servers(
    _tasks: &mut JoinSet<()>,
    _p: Arc<Provider>,
    _tls: GatewayTls,
    _stop: watch::Receiver<bool>,
) -> Result<(), ProviderError> {
    // TODO(gateway merge): kumo_gateway::server::serve and the ingress.
    Ok(())
}
