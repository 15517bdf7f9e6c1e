//! The provider's gateway (BRIEF §4): what a tenant talks to once it holds a lease.
//!
//! - [`types`]: the JSON shapes the gateway serves (lease status with URIs and forwarded ports,
//!   the provider's public status). The tenant CLI prints the same shapes.
//! - [`backend`]: [`GatewayBackend`], what the gateway needs from the provider daemon (lease
//!   lookups against the chain, accepting a manifest, the workload's status, logs, shell and
//!   events). The daemon (`kumo-provider`) implements it; the gateway never talks to the chain
//!   or the engine itself.
//! - [`routes`]: [`routes::RouteTable`], host names and host ports to replica addresses, filled
//!   by the daemon and read by the ingress proxies.
//! - [`error`]: [`GatewayError`], mapped to HTTP status codes by the server.

pub mod backend;
pub mod error;
pub mod routes;
pub mod types;

pub use backend::GatewayBackend;
pub use error::GatewayError;
