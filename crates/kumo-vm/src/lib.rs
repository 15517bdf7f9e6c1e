//! The provider's VM backend: each replica of a `runtime: vm` service (docs/sdl-extensions.md)
//! runs as a `qemu-system-x86_64` process, behind the same [`kumo_workload::Backend`] trait as
//! the Docker backend.
//!
//! - [`backend`]: [`VmBackend`] (deploy, update, teardown, status, logs, restart, …) and its
//!   [`VmConfig`].
//! - [`accel`]: KVM probed with a timeout, TCG as the fallback (with a warning in status).
//! - [`image`]: cloud images downloaded once, SHA-256-verified, cached by hash.
//! - [`seed`]: the cloud-init NoCloud seed (an ISO 9660 `cidata` disk written here).
//! - [`instance`]: one VM's files (overlay disk, seed, QMP socket, pid file, console log,
//!   `vm.json`) and its QEMU command line.
//! - [`cgroup`]: each VM's QEMU in a cgroup of its own: a CPU quota of what the lease pays
//!   for, the guest's memory plus QEMU's overhead, a pids limit (v1 or v2).
//! - [`netns`]: each VM's network namespace on its lease's network (veth on the lease bridge,
//!   an address of the lease subnet), where QEMU and its user-mode network run, inside the
//!   lease firewall.
//! - [`forward`]: the relay from a VM's host ports to its lease address.
//! - [`qmp`]: a small QMP client (capabilities, status, power button, reset, quit).
//! - [`bench`]: lease-to-SSH time, for `kumo bench vm`.
//!
//! ```no_run
//! # async fn run(lease: kumo_types::LeaseId, group: kumo_sdl::manifest::ManifestGroup)
//! #     -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//!
//! use kumo_vm::{VmBackend, VmConfig};
//! use kumo_workload::{Backend, DeployOptions, DockerBackend, DockerConfig, HostPort};
//! use kumo_sdl::manifest::Proto;
//!
//! // VMs on their leases' Docker networks (a provider always does this).
//! let docker = Arc::new(DockerBackend::connect(DockerConfig::new("kumo1provider…")).await?);
//! let backend = VmBackend::new(VmConfig::new("/var/lib/kumo/vm"))
//!     .await?
//!     .with_networks(docker)
//!     .await?;
//! println!("VMs run with {}", backend.accel().accel);
//! let opts = DeployOptions {
//!     host_ports: vec![HostPort { service: "box".into(), replica: 0, port: 22, proto: Proto::Tcp, host_port: 32022 }],
//!     ..Default::default()
//! };
//! backend.deploy(&lease, &group, &opts).await?;
//! backend.restart(&lease, Some("box")).await?; // reboot, disk kept
//! backend.teardown(&lease).await?;             // QEMU, namespace, disk, seed and ports gone
//! # Ok(()) }
//! ```

pub mod accel;
pub mod backend;
pub mod bench;
pub mod cgroup;
pub mod error;
pub mod forward;
pub mod image;
pub mod instance;
pub mod netns;
pub mod qmp;
pub mod seed;

pub use accel::{Accel, AccelChoice, AccelProbe};
pub use backend::{VmBackend, VmConfig, VmInfo};
pub use error::VmError;
