//! The gateway and the ingress as a tenant and its users meet them: a real HTTPS server on
//! 127.0.0.1, the real client, and (where a workload is needed) a real Docker engine.
//!
//! Tests that run containers need the engine and the images of `scripts/test-images.sh`;
//! without them they print why and pass, unless `KUMO_REQUIRE_DOCKER=1` (see `support`).

mod api;
mod docker;
mod support;
mod udp;
