//! A lease's network in the engine: a bridge with a subnet of the provider's address pool, a
//! bridge interface named after the subnet's index, and the firewall rules that contain it.
//!
//! Picking a subnet and installing the rules happen under one backend-wide lock, so two leases
//! deployed at once never pick the same subnet, and the firewall table is always rewritten from
//! a fresh list of this instance's networks. Another process that creates a network at the same
//! moment (a second provider on the engine) makes the engine refuse the overlapping subnet; the
//! pick is then retried.

use std::collections::HashSet;

use bollard::errors::Error as DockerError;
use bollard::models::{Ipam, IpamConfig, Network, NetworkCreateRequest};
use bollard::query_parameters::ListNetworksOptionsBuilder;
use ipnet::Ipv4Net;
use kumo_types::LeaseId;

use super::DockerBackend;
use super::labels::{self, Names};
use crate::WorkloadError;
use crate::firewall::Firewall;
use crate::network::{
    LeaseNetwork, LeaseNetworks, bridge_name, container_range, gateway, host_resolvers, host_routes,
};

/// The engine's option that names a bridge network's Linux interface.
pub(super) const BRIDGE_NAME_OPTION: &str = "com.docker.network.bridge.name";

/// How often a subnet is picked again after the engine found it taken meanwhile.
const ATTEMPTS: u32 = 20;

impl DockerBackend {
    /// The id of the lease's network, if it has one.
    pub(super) async fn network_of(
        &self,
        lease: &LeaseId,
    ) -> Result<Option<String>, WorkloadError> {
        Ok(self.lease_network(lease).await?.and_then(|n| n.id))
    }

    async fn lease_network(&self, lease: &LeaseId) -> Result<Option<Network>, WorkloadError> {
        let opts = ListNetworksOptionsBuilder::new()
            .filters(&labels::filter(&self.config.instance, Some(lease)))
            .build();
        let networks = self.docker.list_networks(Some(opts)).await.map_err(|e| {
            WorkloadError::engine(format!("listing the networks of lease {lease}"), e)
        })?;
        Ok(networks.into_iter().next())
    }

    /// The Linux bridge of the lease's network (where a VM's tap device joins it), if the
    /// lease has a network.
    pub async fn lease_bridge(&self, lease: &LeaseId) -> Result<Option<String>, WorkloadError> {
        Ok(self
            .lease_network(lease)
            .await?
            .and_then(|n| bridge_of(&n).map(str::to_string)))
    }

    /// Creates the lease's network unless it exists (whether or not the lease has containers:
    /// a VM joins it), makes the firewall cover it, and says what a VM joining it needs to
    /// know. The network goes with the lease's teardown.
    pub async fn ensure_lease_network(
        &self,
        lease: &LeaseId,
    ) -> Result<LeaseNetwork, WorkloadError> {
        let _guard = self.lock(lease).await;
        let names = Names::new(&self.config.instance, lease);
        self.ensure_network(lease, &names).await?;
        let missing = |what: &str| WorkloadError::Network {
            lease: lease.to_string(),
            reason: format!("the lease network has no {what}: close the lease and deploy again"),
        };
        let network = self
            .lease_network(lease)
            .await?
            .ok_or_else(|| missing("record in the engine"))?;
        let id = network.id.clone().ok_or_else(|| missing("id"))?;
        let bridge = bridge_of(&network).ok_or_else(|| missing("bridge name"))?;
        let subnet = *subnets_of(&network)
            .first()
            .ok_or_else(|| missing("IPv4 subnet"))?;
        let split = network
            .ipam
            .iter()
            .flat_map(|i| i.config.iter().flatten())
            .filter_map(|c| c.ip_range.as_deref()?.parse::<ipnet::Ipv4Net>().ok())
            .any(|r| r == container_range(subnet));
        // The listing leaves out the containers; the inspection has them.
        let inspect = self
            .docker
            .inspect_network(&id, None)
            .await
            .map_err(|e| WorkloadError::engine(format!("inspecting network {id}"), e))?;
        let taken = inspect
            .containers
            .unwrap_or_default()
            .into_values()
            .filter_map(|c| c.ipv4_address?.parse::<ipnet::Ipv4Net>().ok())
            .map(|a| a.addr())
            .collect();
        Ok(LeaseNetwork {
            bridge: bridge.to_string(),
            subnet,
            gateway: gateway(subnet),
            split,
            taken,
        })
    }

    /// Creates the lease's network unless it exists, and makes the firewall cover it.
    pub(super) async fn ensure_network(
        &self,
        lease: &LeaseId,
        names: &Names,
    ) -> Result<(), WorkloadError> {
        let _one_at_a_time = self.network_lock.lock().await;
        if self.network_of(lease).await?.is_none() {
            self.create_network(lease, names).await?;
        }
        self.sync_firewall_locked().await
    }

    async fn create_network(&self, lease: &LeaseId, names: &Names) -> Result<(), WorkloadError> {
        let name = names.network();
        let instance = &self.config.instance;
        let pool = self.config.network.pool;
        let mut attempt = 1;
        loop {
            let all = self
                .docker
                .list_networks(None::<bollard::query_parameters::ListNetworksOptions>)
                .await
                .map_err(|e| WorkloadError::engine("listing the engine's networks", e))?;
            let mut used: Vec<Ipv4Net> = all.iter().flat_map(subnets_of).collect();
            if self.local_engine {
                // The host's routes, and its resolvers (often reached over the default route,
                // so not among the routes): a lease subnet over either would cut the host off.
                used.extend(host_routes());
                used.extend(host_resolvers().into_iter().filter_map(|a| match a {
                    std::net::IpAddr::V4(v4) => Some(Ipv4Net::from(v4)),
                    std::net::IpAddr::V6(_) => None,
                }));
            }
            let bridges: HashSet<&str> = all.iter().filter_map(bridge_of).collect();
            let taken = |i| bridges.contains(bridge_name(instance, i).as_str());
            // The first free subnet keeps the pool compact; after losing a race for it to
            // another process, a random start keeps the two from colliding again.
            let start = if attempt == 1 {
                0
            } else {
                random_start(lease, attempt)
            };
            let (index, subnet) = pool.free_from(&used, taken, start).ok_or_else(|| {
                WorkloadError::PoolExhausted {
                    pool: pool.block().to_string(),
                    subnet_prefix: pool.subnet_prefix(),
                }
            })?;
            let bridge = bridge_name(instance, index);
            let request = NetworkCreateRequest {
                name: name.clone(),
                driver: Some("bridge".into()),
                labels: Some(labels::lease_labels(instance, lease)),
                options: Some(
                    [(BRIDGE_NAME_OPTION.to_string(), bridge.clone())]
                        .into_iter()
                        .collect(),
                ),
                ipam: Some(Ipam {
                    driver: Some("default".into()),
                    config: Some(vec![IpamConfig {
                        subnet: Some(subnet.to_string()),
                        // Containers in the lower half; VMs take the upper half themselves.
                        ip_range: Some(container_range(subnet).to_string()),
                        gateway: Some(gateway(subnet).to_string()),
                        ..Default::default()
                    }]),
                    options: None,
                }),
                ..Default::default()
            };
            match self.docker.create_network(request).await {
                Ok(_) => {
                    tracing::info!(%lease, network = name, %subnet, bridge, "network created");
                    return Ok(());
                }
                Err(e) if attempt < ATTEMPTS && is_taken(&e) => {
                    tracing::debug!(%lease, %subnet, error = %e, "subnet taken meanwhile; picking again");
                    attempt += 1;
                }
                Err(e) => {
                    return Err(WorkloadError::engine(
                        format!("creating network {name} ({subnet}, bridge {bridge})"),
                        e,
                    ));
                }
            }
        }
    }

    /// Makes the firewall hold exactly the rules of this instance's lease networks: installs
    /// missing ones (a restarted provider, a host rebooted under running containers) and
    /// removes those of networks that are gone. Does nothing without a firewall.
    pub async fn sync_firewall(&self) -> Result<(), WorkloadError> {
        let _one_at_a_time = self.network_lock.lock().await;
        self.sync_firewall_locked().await
    }

    pub(super) async fn sync_firewall_locked(&self) -> Result<(), WorkloadError> {
        let Some(firewall) = &self.firewall else {
            return Ok(());
        };
        let opts = ListNetworksOptionsBuilder::new()
            .filters(&labels::filter(&self.config.instance, None))
            .build();
        let networks = self.docker.list_networks(Some(opts)).await.map_err(|e| {
            WorkloadError::engine("listing the networks of this provider's leases", e)
        })?;
        let mut bridges = Vec::new();
        for n in &networks {
            match bridge_of(n) {
                Some(b) if b.starts_with(firewall.bridge_prefix()) => bridges.push(b.to_string()),
                _ => tracing::warn!(
                    network = n.name.as_deref().unwrap_or_default(),
                    "this lease network was created before the lease firewall (its bridge is not named {}…): the firewall does not contain it; close the lease or tear it down and deploy it again",
                    firewall.bridge_prefix()
                ),
            }
        }
        bridges.sort();
        firewall.apply(&bridges).await
    }

    /// The firewall this backend keeps, if it keeps one.
    pub fn firewall(&self) -> Option<&Firewall> {
        self.firewall.as_deref()
    }

    /// Removes this instance's firewall table (for a provider that is uninstalled, or a test
    /// that ends): leases that still run are then uncontained. Nothing without a firewall.
    pub async fn remove_firewall(&self) -> Result<(), WorkloadError> {
        let _one_at_a_time = self.network_lock.lock().await;
        match &self.firewall {
            Some(f) => f.remove().await,
            None => Ok(()),
        }
    }
}

#[async_trait::async_trait]
impl LeaseNetworks for DockerBackend {
    async fn ensure_lease_network(&self, lease: &LeaseId) -> Result<LeaseNetwork, WorkloadError> {
        DockerBackend::ensure_lease_network(self, lease).await
    }
}

/// A pseudo-random pool index to search from: a hash of the lease, the attempt and the time.
fn random_start(lease: &LeaseId, attempt: u32) -> u64 {
    use sha2::{Digest, Sha256};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let digest = Sha256::digest(format!("{lease}\n{attempt}\n{now}").as_bytes());
    u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// A network's bridge interface, when the engine was told its name.
fn bridge_of(n: &Network) -> Option<&str> {
    n.options
        .as_ref()
        .and_then(|o| o.get(BRIDGE_NAME_OPTION))
        .map(String::as_str)
}

/// A network's IPv4 subnets.
fn subnets_of(n: &Network) -> Vec<Ipv4Net> {
    n.ipam
        .iter()
        .flat_map(|i| i.config.iter().flatten())
        .filter_map(|c| c.subnet.as_deref()?.parse::<ipnet::IpNet>().ok())
        .filter_map(|net| match net {
            ipnet::IpNet::V4(v4) => Some(v4.trunc()),
            ipnet::IpNet::V6(_) => None,
        })
        .collect()
}

/// Whether the engine refused a network because its subnet (or bridge) is taken: "Pool
/// overlaps with other one on this address space" (403), a conflict (409), or "failed to
/// allocate gateway (…): Address already in use" (500): with an `ip_range` the engine's IPAM
/// lets a second network share the subnet's pool and fails only on the gateway, which every
/// network of a subnet takes.
fn is_taken(e: &DockerError) -> bool {
    match e {
        DockerError::DockerResponseServerError {
            status_code,
            message,
        } => {
            *status_code == 403
                || *status_code == 409
                || message.contains("overlaps")
                || (message.contains("gateway") && message.contains("already in use"))
        }
        _ => false,
    }
}
