//! The provider daemon (BRIEF §4): bids on orders, runs leases on a Docker engine (and, with
//! `[vm]` enabled, `runtime: vm` services as QEMU virtual machines), serves the tenant gateway
//! and routes traffic in.
//!
//! - [`config`]: the TOML file with its documented defaults (`kumo provider init` writes it).
//! - [`state`]: the daemon's own records in one redb file: leases and their manifests, host
//!   names and host ports, bid reservations, the last processed height.
//! - [`inventory`]: what the engine and the disk offer, capped and overcommitted, minus what
//!   leases and open bids hold.
//! - [`gpus`]: the host's GPUs (NVML or declared) and which of them a bid or lease gets.
//! - [`pricing`]: linear prices per resource, or an external command.
//! - [`bidengine`]: on `OrderCreated`, match, reserve, price and bid.
//! - [`lease`]: a lease's life: manifest accepted (hash checked), deployed, routed; closed on
//!   chain → torn down; no manifest in time → closed; earnings withdrawn; reconciliation at
//!   start and every `reconcile_interval`.
//! - [`closed_logs`]: the last logs of a closed lease, kept (bounded) for its owner for
//!   `closed_logs_retention`; the gateway serves them and answers `Gone` to anything else.
//! - [`lifecycle`]: one owner (an actor) per lease; every change to a lease's workload is a
//!   message in its mailbox, handled in order, so a refresh never redeploys a closed lease.
//! - [`manifest_check`]: a manifest group must ask for exactly its lease's units, counts and
//!   endpoints.
//! - [`metrics`]: the Prometheus counters and gauges behind `GET /metrics`.
//! - [`backends`]: one workload backend over Docker and the VMs, each service routed by its
//!   runtime.
//! - [`gateway`]: the [`kumo_gateway::GatewayBackend`] the gateway serves tenants through.
//! - [`daemon`]: [`daemon::run`], everything above together until SIGTERM/SIGINT.
//! - [`register`]: `CreateProvider`/`UpdateProvider` from the config.

pub mod backends;
pub mod bidengine;
pub mod closed_logs;
pub mod config;
pub mod daemon;
pub mod error;
pub mod gateway;
pub mod gpus;
pub mod inventory;
pub mod lease;
pub mod lifecycle;
pub mod manifest_check;
pub mod metrics;
pub mod pricing;
pub mod register;
pub mod serve;
pub mod state;

pub use config::ProviderConfig;
pub use error::ProviderError;
