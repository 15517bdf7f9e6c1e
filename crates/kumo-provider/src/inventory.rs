//! What the provider can offer: discovered from the Docker engine (CPUs, memory) and the disk
//! (free space of the data directory), capped by the config's limits, multiplied by the
//! overcommit factors; minus what active leases and open bids hold.
//!
//! Storage is one disk pool (key `disk`) shared by every class except `ram`, which is memory
//! (tmpfs). GPUs are specific devices ([`Inventory::devices`]); amounts count them by kind
//! (`h100 80Gi sxm`), and which devices a bid takes is decided in [`crate::gpus`]. Lease
//! networks are the subnets of the `[network]` address pool: every lease and open bid holds
//! one, so an exhausted pool means no bid rather than a manifest that fails.

use std::{collections::BTreeMap, path::Path};

use kumo_gateway::types::{InventoryView, ResourceAmounts};

use crate::{ProviderError, config::CapacityConfig};

pub use kumo_gateway::types::{DISK, RAM};

/// The provider's total capacity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inventory {
    /// After limits and overcommit.
    pub total: ResourceAmounts,
    /// The host's GPUs (never overcommitted).
    pub devices: Vec<kumo_gpu::GpuDevice>,
}

impl Inventory {
    /// Discovers the engine's CPUs and memory and the disk's free space under `data_dir`.
    pub async fn discover(
        docker: &bollard::Docker,
        data_dir: &Path,
        cap: &CapacityConfig,
    ) -> Result<Inventory, ProviderError> {
        let info = docker
            .info()
            .await
            .map_err(|e| ProviderError::Other(format!("docker info failed: {e}")))?;
        let cpus = info.ncpu.unwrap_or(1).max(1) as u64 * 1000;
        let memory = info.mem_total.unwrap_or(0).max(0) as u64;
        let disk = rustix::fs::statvfs(data_dir)
            .map(|s| s.f_bavail * s.f_frsize)
            .map_err(|e| {
                ProviderError::Other(format!(
                    "cannot read the free space of {}: {e}",
                    data_dir.display()
                ))
            })?;
        Ok(Inventory::from_discovered(cpus, memory, disk, cap))
    }

    /// Capacity from discovered amounts, limits and overcommit.
    pub fn from_discovered(cpu_millis: u64, memory: u64, disk: u64, cap: &CapacityConfig) -> Self {
        let limit = |found: u64, limit: u64, factor: f64| {
            let base = if limit == 0 { found } else { limit.min(found) };
            (base as f64 * factor) as u64
        };
        let mut storage = BTreeMap::new();
        storage.insert(
            DISK.to_string(),
            limit(disk, cap.storage_bytes, cap.storage_overcommit),
        );
        Inventory {
            total: ResourceAmounts {
                cpu_millis: limit(cpu_millis, cap.cpu_millis, cap.cpu_overcommit),
                memory_bytes: limit(memory, cap.memory_bytes, cap.memory_overcommit),
                storage_bytes: storage,
                gpus: BTreeMap::new(),
                networks: 0,
            },
            devices: Vec::new(),
        }
    }

    /// The same capacity with this many lease networks (the address pool's subnets).
    pub fn with_networks(mut self, networks: u64) -> Self {
        self.total.networks = networks;
        self
    }

    /// The same capacity with these GPUs.
    pub fn with_gpus(mut self, devices: Vec<kumo_gpu::GpuDevice>) -> Self {
        self.total.gpus = crate::gpus::count_by_kind(&devices);
        self.devices = devices;
        self
    }

    /// Total, held and free, given what leases and bids hold.
    pub fn view<'a>(&self, held: impl IntoIterator<Item = &'a ResourceAmounts>) -> InventoryView {
        let mut sum = ResourceAmounts::default();
        for h in held {
            add(&mut sum, h);
        }
        let free = ResourceAmounts {
            cpu_millis: self.total.cpu_millis.saturating_sub(sum.cpu_millis),
            memory_bytes: self.total.memory_bytes.saturating_sub(sum.memory_bytes),
            storage_bytes: self
                .total
                .storage_bytes
                .iter()
                .map(|(k, v)| {
                    let used = sum.storage_bytes.get(k).copied().unwrap_or(0);
                    (k.clone(), v.saturating_sub(used))
                })
                .collect(),
            gpus: self
                .total
                .gpus
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.saturating_sub(sum.gpus.get(k).copied().unwrap_or(0)),
                    )
                })
                .collect(),
            networks: self.total.networks.saturating_sub(sum.networks),
        };
        InventoryView {
            total: self.total.clone(),
            held: sum,
            free,
        }
    }
}

/// Adds `b` to `a`.
pub fn add(a: &mut ResourceAmounts, b: &ResourceAmounts) {
    a.cpu_millis += b.cpu_millis;
    a.memory_bytes += b.memory_bytes;
    for (k, v) in &b.storage_bytes {
        *a.storage_bytes.entry(k.clone()).or_default() += v;
    }
    for (k, v) in &b.gpus {
        *a.gpus.entry(k.clone()).or_default() += v;
    }
    a.networks += b.networks;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_overcommit_shape_what_is_offered_and_holds_reduce_it() {
        let cap = CapacityConfig {
            cpu_millis: 2000,
            memory_bytes: 0,
            storage_bytes: 0,
            cpu_overcommit: 2.0,
            memory_overcommit: 1.0,
            storage_overcommit: 0.5,
        };
        let inv = Inventory::from_discovered(8000, 1 << 30, 1000, &cap);
        assert_eq!(inv.total.cpu_millis, 4000);
        assert_eq!(inv.total.memory_bytes, 1 << 30);
        assert_eq!(inv.total.storage_bytes[DISK], 500);
        let lease = ResourceAmounts {
            cpu_millis: 3000,
            ..Default::default()
        };
        let v = inv.view([&lease]);
        assert_eq!(v.free.cpu_millis, 1000);
        let need = ResourceAmounts {
            cpu_millis: 1500,
            ..Default::default()
        };
        assert!(need.fits_in(&v.free).unwrap_err().contains("mCPU"));
    }

    #[test]
    fn every_lease_and_bid_holds_a_network_and_an_exhausted_pool_refuses_the_next() {
        let cap = CapacityConfig::default();
        let inv = Inventory::from_discovered(8000, 1 << 30, 1 << 30, &cap).with_networks(2);
        let group = kumo_types::GroupSpec {
            name: "dc".into(),
            requirements: Default::default(),
            resources: Vec::new(),
        };
        let need = ResourceAmounts::of_group(&group);
        assert_eq!(need.networks, 1);
        let one = inv.view([&need]);
        assert_eq!((one.held.networks, one.free.networks), (1, 1));
        assert_eq!(need.fits_in(&one.free), Ok(()));
        let full = inv.view([&need, &need]);
        assert_eq!(full.free.networks, 0);
        let e = need.fits_in(&full.free).unwrap_err();
        assert!(e.contains("lease_pool"), "{e}");
    }
}
