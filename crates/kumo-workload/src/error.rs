//! Why a workload operation failed, worded so that the provider's operator or the tenant knows
//! what to do next.

use std::error::Error as StdError;

/// Everything a [`crate::Backend`] call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    /// The engine does not answer at all.
    #[error(
        "cannot reach the container engine at {endpoint}: {cause}; is dockerd running, and may this user open its socket (docker group or root)?"
    )]
    EngineUnreachable {
        /// Where we tried (`unix:///var/run/docker.sock`, `tcp://…`).
        endpoint: String,
        /// What the connection attempt said.
        cause: Box<dyn StdError + Send + Sync>,
    },
    /// The engine refused or failed one request.
    #[error("{action}: {cause}")]
    Engine {
        /// What we asked for, e.g. `creating container kumo-…-web-0`.
        action: String,
        /// The engine's answer.
        cause: Box<dyn StdError + Send + Sync>,
    },
    /// An image could not be pulled and is not in the engine either.
    #[error("image {image}: pull failed: {reason}")]
    ImagePull {
        /// The image reference as the manifest names it.
        image: String,
        /// The registry's or engine's words (an authentication failure, an unknown tag, …).
        reason: String,
    },
    /// The manifest asks for something this backend cannot run; nothing was started.
    #[error("service {service}: {reason}")]
    Unsupported {
        /// The service's name.
        service: String,
        /// What is not possible and, where there is one, the way around it.
        reason: String,
    },
    /// The manifest contradicts itself (e.g. a mount of a volume the profile does not define).
    #[error("service {service}: {reason}")]
    InvalidService {
        /// The service's name.
        service: String,
        /// What is wrong.
        reason: String,
    },
    /// Nothing of this lease runs here.
    #[error("lease {lease} has no workload on this provider: send its manifest first")]
    LeaseNotFound {
        /// The lease, as `owner/dseq/gseq/oseq/provider`.
        lease: String,
    },
    /// The lease has no service of that name.
    #[error("lease {lease} has no service named {service:?} (it has: {known})")]
    UnknownService {
        /// The lease.
        lease: String,
        /// The name asked for.
        service: String,
        /// The services it does have, comma-separated.
        known: String,
    },
    /// The service has no replica with that index.
    #[error("service {service} has no replica {replica}: replicas are numbered 0..{count}")]
    UnknownReplica {
        /// The service's name.
        service: String,
        /// The index asked for.
        replica: u32,
        /// How many replicas it has.
        count: u32,
    },
    /// A volume's disk could not be created, mounted or removed on the provider's host.
    #[error("volume {volume}: {reason}")]
    Storage {
        /// The volume's image file.
        volume: String,
        /// What failed, in the words of the tool that failed.
        reason: String,
    },
    /// The replica exists but is not running, so a command cannot run in it.
    #[error("service {service} replica {replica} is {state}, not running: see its logs and status")]
    NotRunning {
        /// The service's name.
        service: String,
        /// The replica's index.
        replica: u32,
        /// Its current state.
        state: String,
    },
    /// The lease firewall could not be installed or changed.
    #[error(
        "lease firewall (nftables): {reason}; the provider needs nft and CAP_NET_ADMIN on the engine's host, or [network] firewall = false where leases are contained some other way"
    )]
    Firewall {
        /// What nft (or running it) said.
        reason: String,
    },
    /// Every subnet of the lease network pool is taken (by lease networks, other engine
    /// networks or the host's routes).
    #[error(
        "no free /{subnet_prefix} subnet left in the lease network pool {pool}: a provider that bids only on what its pool holds never gets here; widen [network] lease_pool"
    )]
    PoolExhausted {
        /// The pool.
        pool: String,
        /// The size of each lease network.
        subnet_prefix: u8,
    },
    /// A lease's network cannot be joined (by a VM), or a VM cannot be attached to it.
    #[error("lease {lease}: network: {reason}")]
    Network {
        /// The lease.
        lease: String,
        /// What is wrong, and what to do.
        reason: String,
    },
}

impl WorkloadError {
    /// An [`WorkloadError::Engine`] error for `action`.
    pub fn engine(action: impl Into<String>, cause: impl StdError + Send + Sync + 'static) -> Self {
        WorkloadError::Engine {
            action: action.into(),
            cause: Box::new(cause),
        }
    }
}
