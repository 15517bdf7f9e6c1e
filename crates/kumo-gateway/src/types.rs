//! JSON shapes the gateway serves and the tenant CLI prints (`kumo lease status -o json` and
//! `kumo deploy -o json` print a [`LeaseStatusView`]).

use kumo_sdl::manifest::Proto;
use kumo_types::Address;
use serde::{Deserialize, Serialize};

/// The state of a lease's workload as its provider sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseState {
    /// The lease is active on chain but no manifest arrived yet.
    AwaitingManifest,
    /// The manifest was accepted; not every replica runs yet.
    Starting,
    /// Every replica of every service runs.
    Running,
    /// Something runs but not everything (a replica exited, is restarting or was OOM-killed).
    Degraded,
    /// The lease is closed; its workload is gone or going.
    Closed,
}

/// One lease's status: what `GET /lease/{dseq}/{gseq}/{oseq}/status` returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseStatusView {
    /// Deployment sequence.
    pub dseq: u64,
    /// Group sequence.
    pub gseq: u32,
    /// Order sequence.
    pub oseq: u32,
    /// The tenant.
    pub owner: Address,
    /// The provider.
    pub provider: Address,
    /// What the workload is doing.
    pub state: LeaseState,
    /// Its services, in name order.
    pub services: Vec<ServiceView>,
    /// Anything the tenant should know, e.g. "VMs run without KVM (TCG emulation)".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// One service of a lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceView {
    /// Service name.
    pub name: String,
    /// Replicas the manifest asks for.
    pub replicas: u32,
    /// Replicas running now.
    pub available: u32,
    /// Full URLs of its HTTP ingress (`http://<host>:<port>/`), one per host name.
    pub uris: Vec<String>,
    /// Global non-HTTP ports mapped to ports of the provider's host.
    pub forwarded_ports: Vec<ForwardedPort>,
    /// How to log in, for a VM service whose port 22 is forwarded (absent for containers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshAccess>,
}

/// Where and as whom a tenant logs into a VM: `ssh -p {port} {user}@{host}` with one of the
/// keys of the service's `vm.ssh_keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshAccess {
    /// The login user (the manifest's `vm.user`).
    pub user: String,
    /// The host name or address to connect to.
    pub host: String,
    /// The host port forwarded to the guest's port 22 (replica 0).
    pub port: u16,
}

/// A service port reachable on a port of the provider's host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardedPort {
    /// The port inside the service.
    pub port: u16,
    /// The host name or address to connect to.
    pub host: String,
    /// The port on that host.
    pub external_port: u16,
    /// TCP or UDP.
    pub proto: Proto,
}

/// What `GET /status` returns to anyone: the provider's capacity and load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderStatusView {
    /// The provider's account.
    pub provider: Address,
    /// Active leases with a workload here.
    pub leases: u32,
    /// Open bids.
    pub bids: u32,
    /// Capacity in total, held, and free, per resource.
    pub inventory: InventoryView,
    /// Whether VMs run here and how: absent when the provider runs containers only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm: Option<VmSupportView>,
}

/// How a provider runs VMs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmSupportView {
    /// `kvm` (hardware virtualisation) or `tcg` (software emulation, several times slower).
    pub accel: String,
    /// Why VMs run slower than they could, when they do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// Capacity per resource.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryView {
    /// What the provider offers in total (after overcommit).
    pub total: ResourceAmounts,
    /// What active leases and open bids hold.
    pub held: ResourceAmounts,
    /// What is left for new bids.
    pub free: ResourceAmounts,
}

/// Amounts of each resource.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceAmounts {
    /// CPU in thousandths of a core.
    pub cpu_millis: u64,
    /// Memory in bytes.
    pub memory_bytes: u64,
    /// Storage in bytes, per class (`ephemeral`, `beta2`, `ram`, ...).
    pub storage_bytes: std::collections::BTreeMap<String, u64>,
    /// GPUs, per model (`h100`, ...).
    pub gpus: std::collections::BTreeMap<String, u32>,
    /// Lease networks (subnets of the provider's address pool): each lease and open bid
    /// holds one.
    #[serde(default)]
    pub networks: u64,
}
