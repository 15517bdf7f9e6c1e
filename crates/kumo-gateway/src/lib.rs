//! The provider's gateway (BRIEF §4): what a tenant talks to once it holds a lease.
//!
//! Always built (the daemon, the CLI and tests share them):
//! - [`types`]: the JSON shapes the gateway serves (lease status with URIs and forwarded ports,
//!   the provider's public status). The tenant CLI prints the same shapes.
//! - [`backend`]: [`GatewayBackend`], what the gateway needs from the provider daemon (lease
//!   lookups against the chain, accepting a manifest, the workload's status, logs, shell and
//!   events). The daemon (`kumo-provider`) implements it; the gateway never talks to the chain
//!   or the engine itself.
//! - [`routes`]: [`routes::RouteTable`], host names and host ports to replica addresses, filled
//!   by the daemon and read by the ingress proxies.
//! - [`error`]: [`GatewayError`], mapped to HTTP status codes by the server.
//! - [`auth`]: bearer tokens (JWT, EdDSA, signed by the tenant's account key): minting and the
//!   strict verifier.
//! - [`tls`]: certificate fingerprints and the client config that pins one; with `server`, the
//!   gateway's self-signed certificate.
//! - [`shell`]: the binary framing of a shell session over WebSocket.
//!
//! Feature `server` (the provider daemon):
//! - `server`: the HTTPS API (axum over rustls), routes as Akash's.
//! - `ingress`: the HTTP reverse proxy by host name and the TCP and UDP port forwarder.
//!
//! Feature `client` (the tenant CLI, tests):
//! - `client`: `GatewayClient`, typed calls that mint a short-lived token each.
//!
//! `docs/gateway.md` describes the wire formats (tokens, errors, log streams, shell frames).

pub mod auth;
pub mod backend;
pub mod error;
pub mod routes;
pub mod shell;
pub mod tls;
pub mod types;

#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "server")]
pub mod ingress;
#[cfg(feature = "server")]
pub mod server;

pub use backend::GatewayBackend;
pub use error::GatewayError;
