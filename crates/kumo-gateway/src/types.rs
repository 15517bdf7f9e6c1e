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

/// The storage pool every disk-backed class draws from (one pool, whatever the class).
pub const DISK: &str = "disk";
/// The storage class backed by memory (`ram` volumes count as memory).
pub const RAM: &str = "ram";

impl ResourceAmounts {
    /// What a placement group holds on a provider: its units times their counts, `ram` volumes
    /// as memory, every other storage class from the one [`DISK`] pool, and one lease network.
    /// The provider reserves this for a bid; the tenant compares it with a provider's free
    /// capacity to say why it did not bid.
    pub fn of_group(spec: &kumo_types::GroupSpec) -> ResourceAmounts {
        let mut out = ResourceAmounts {
            networks: 1,
            ..Default::default()
        };
        for unit in &spec.resources {
            let n = u64::from(unit.count);
            let r = &unit.resources;
            out.cpu_millis += r.cpu.millis * n;
            out.memory_bytes += r.memory.bytes * n;
            for s in &r.storage {
                if s.attribute("class") == Some(RAM) {
                    out.memory_bytes += s.bytes * n;
                } else {
                    *out.storage_bytes.entry(DISK.to_string()).or_default() += s.bytes * n;
                }
            }
        }
        out
    }

    /// Whether these amounts fit in `free`; else the first resource short, in words (memory
    /// and storage in MiB).
    pub fn fits_in(&self, free: &ResourceAmounts) -> Result<(), String> {
        const MIB: u64 = 1 << 20;
        if self.cpu_millis > free.cpu_millis {
            return Err(format!(
                "needs {} mCPU, {} free",
                self.cpu_millis, free.cpu_millis
            ));
        }
        if self.memory_bytes > free.memory_bytes {
            return Err(format!(
                "needs {} MiB of memory, {} MiB free",
                self.memory_bytes.div_ceil(MIB),
                free.memory_bytes / MIB
            ));
        }
        for (class, bytes) in &self.storage_bytes {
            let have = free.storage_bytes.get(class).copied().unwrap_or(0);
            if *bytes > have {
                return Err(format!(
                    "needs {} MiB of {class} storage, {} MiB free",
                    bytes.div_ceil(MIB),
                    have / MIB
                ));
            }
        }
        if self.networks > free.networks {
            return Err(format!(
                "needs {} lease network(s), {} free (the provider's [network] lease_pool is used up)",
                self.networks, free.networks
            ));
        }
        Ok(())
    }
}
