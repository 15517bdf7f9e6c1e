//! The daemon's servers, from `kumo-gateway`: the HTTPS gateway (over
//! [`crate::gateway::ProviderGateway`], with the self-signed certificate kept in the data
//! directory) and the ingress (HTTP reverse proxy by host name; TCP port forwarder following the
//! route table).

use std::sync::Arc;

use kumo_gateway::{
    ingress::{self, PortForwarder},
    server,
    tls::GatewayCert,
};
use tokio::{net::TcpListener, sync::watch, task::JoinSet};
use tracing::{info, warn};

use crate::{
    ProviderConfig, ProviderError,
    daemon::{Provider, stopped},
    gateway::ProviderGateway,
};

/// The gateway's certificate, created on first use as `<data_dir>/gateway.crt` and
/// `<data_dir>/gateway.key` for the host of `gateway.host_uri`.
pub fn gateway_cert(config: &ProviderConfig) -> Result<GatewayCert, ProviderError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        ProviderError::Other(format!("cannot create {}: {e}", config.data_dir.display()))
    })?;
    let host = config
        .gateway
        .host_uri
        .split("://")
        .nth(1)
        .unwrap_or(&config.gateway.host_uri)
        .split(['/', ':'])
        .next()
        .unwrap_or("localhost")
        .to_string();
    GatewayCert::load_or_create(
        &config.data_dir.join("gateway.crt"),
        &config.data_dir.join("gateway.key"),
        &host,
    )
    .map_err(|e| ProviderError::Other(format!("gateway certificate: {e}")))
}

async fn bind(addr: std::net::SocketAddr, what: &str) -> Result<TcpListener, ProviderError> {
    TcpListener::bind(addr).await.map_err(|e| {
        ProviderError::Other(format!(
            "cannot listen on {addr} for the {what}: {e}; pick another address in the config"
        ))
    })
}

/// Starts the gateway and the ingress; they stop when `stop` turns true.
pub async fn spawn_servers(
    tasks: &mut JoinSet<()>,
    p: Arc<Provider>,
    cert: GatewayCert,
    stop: watch::Receiver<bool>,
) -> Result<(), ProviderError> {
    let tls = cert
        .server_config()
        .map_err(|e| ProviderError::Other(format!("gateway TLS: {e}")))?;
    let gw = bind(p.config.gateway.listen, "gateway").await?;
    let http = bind(p.config.ingress.http_listen, "ingress").await?;
    info!(gateway = %p.config.gateway.listen, ingress = %p.config.ingress.http_listen, "listening");
    let app = server::app(
        Arc::new(ProviderGateway(p.clone())),
        server::GatewayConfig::default(),
    );
    let s = stop.clone();
    tasks.spawn(async move {
        if let Err(e) = server::serve(gw, tls, app, stopped(s)).await {
            warn!("gateway stopped: {e}");
        }
    });
    let table = p.routes.clone();
    let s = stop.clone();
    tasks.spawn(async move {
        if let Err(e) = ingress::serve_http(http, table, stopped(s)).await {
            warn!("ingress stopped: {e}");
        }
    });
    let forwarder = PortForwarder::new(p.routes.clone(), p.config.ingress.http_listen.ip());
    let handle = forwarder.start();
    tasks.spawn(async move {
        stopped(stop).await;
        handle.abort();
        forwarder.close().await;
    });
    Ok(())
}
