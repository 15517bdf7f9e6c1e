//! Runs a lease's services: the provider's workload layer, with no chain or gateway code.
//!
//! - [`backend`]: the [`Backend`] trait (deploy, update, teardown, status, logs, exec, leases,
//!   events) and the plain data it speaks. The provider holds an `Arc<dyn Backend>`; the Docker
//!   backend implements it today, the VM backend will too.
//! - [`docker`]: [`DockerBackend`], each lease on a Docker engine as one private network, a
//!   container per replica and a size-limited named volume per persistent mount.
//! - [`error`]: [`WorkloadError`], one error type for every backend.
//! - `fake` (feature `fake`): `FakeBackend`, in memory, for tests without an engine.
//! - [`network`]: lease networks' address pool and bridge names; [`firewall`]: the nftables
//!   rules that let a lease reach the internet and its own network, nothing else.
//! - [`storage`]: disks that hold to their size (a persistent volume as a file system image
//!   of its own) and the disk-usage count that ephemeral storage is measured with.
//!
//! ```no_run
//! # async fn run(lease: kumo_types::LeaseId, group: kumo_sdl::manifest::ManifestGroup)
//! #     -> Result<(), kumo_workload::WorkloadError> {
//! use kumo_workload::{Backend, DeployOptions, DockerBackend, DockerConfig};
//!
//! let backend = DockerBackend::connect(DockerConfig::new("kumo1provider…")).await?;
//! let status = backend.deploy(&lease, &group, &DeployOptions::default()).await?;
//! for service in &status.services {
//!     println!("{}: {}/{} running", service.name, service.running, service.replicas);
//! }
//! backend.teardown(&lease).await?;
//! # Ok(()) }
//! ```

pub mod backend;
pub mod docker;
pub mod error;
#[cfg(feature = "fake")]
pub mod fake;
pub mod firewall;
pub mod network;
pub mod storage;

pub use backend::{
    Backend, DeployOptions, DeploymentStatus, EventKind, EventStream, Eviction, ExecControl,
    ExecOutput, ExecRequest, ExecSession, GpuAssignment, HostPort, LogLine, LogOptions, LogStream,
    ReplicaState, ReplicaStatus, ServicePort, ServiceStatus, StdStream, TeardownReport,
    WorkloadEvent,
};
pub use docker::{DockerBackend, DockerConfig, ENGINE_MIN_MEMORY};
pub use error::WorkloadError;
pub use network::{AddressPool, FirewallConfig, LeaseNetwork, LeaseNetworks, NetworkConfig};
