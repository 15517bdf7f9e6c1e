//! The Docker backend against a real engine: what a tenant and a provider would notice.
//!
//! Needs a Docker engine and the images and registries of `scripts/test-images.sh`; without
//! them every test prints why and passes, unless `KUMO_REQUIRE_DOCKER=1` (see `support`).
//! Each test uses its own provider instance (and so its own lease firewall table) and leases,
//! so they run in parallel, and tears them down when it ends.

mod containment;
mod images;
mod io;
mod lifecycle;
mod network;
#[path = "../../../../tests/skip.rs"]
mod skip;
mod storage;
mod support;
