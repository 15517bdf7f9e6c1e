//! The node's JSON API (BRIEF §3), served with axum over a [`NodeBackend`].
//!
//! - [`types`]: request and response bodies and query strings, shared with `kumo-client`. Always
//!   built; the rest needs the `server` feature (on by default), so clients do not link axum.
//! - [`router`]: every route, JSON errors, body limit, metrics. `fn router(backend) -> Router`,
//!   so tests call it without a socket.
//! - [`NodeBackend`]: what the API needs from the node (mempool admission, block store, state,
//!   a height watch). `kumo-node` implements it over consensus.
//! - `testing` (feature `testing`): a node for tests, built from the real state machine,
//!   mempool and block store, with a timer instead of consensus.
//!
//! The JSON shapes are documented in `docs/node-api.md` and served at `GET /openapi.json`.
//!
//! ```no_run
//! # #[cfg(feature = "server")]
//! # async fn serve<B: kumo_api::NodeBackend>(backend: std::sync::Arc<B>) -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:26657").await?;
//! axum::serve(listener, kumo_api::router(backend)).await
//! # }
//! ```

pub mod types;

#[cfg(feature = "server")]
mod backend;
#[cfg(feature = "server")]
mod error;
#[cfg(feature = "server")]
mod metrics;
#[cfg(feature = "server")]
pub mod openapi;
#[cfg(feature = "server")]
mod routes;
#[cfg(feature = "server")]
mod stream;
#[cfg(feature = "testing")]
pub mod testing;

#[cfg(feature = "server")]
pub use backend::{NodeBackend, SubmitError, Waited};
#[cfg(feature = "server")]
pub use error::ApiError;
#[cfg(feature = "server")]
pub use routes::{
    BATCH_BODY_LIMIT, DEFAULT_WAIT, EVENTS_DEFAULT_LIMIT, EVENTS_MAX_LIMIT, MAX_WAIT, body_limit,
    route_table, router,
};
