//! The Docker backend: each lease's services as containers on one Docker engine, through its
//! HTTP API ([`bollard`], over the unix socket or `DOCKER_HOST`).
//!
//! What a lease becomes (see [`labels`] for the labels and names, `spec` for the container
//! definition):
//!
//! ```text
//! lease ──▶ network kumo-<key>  (a user-defined bridge: the lease's services reach each other by
//!    │                           service name; a subnet of the provider's address pool, bridge
//!    │                           interface k<instance tag><subnet index>, contained by the
//!    │                           lease firewall: see `network` and `crate::firewall`)
//!    ├──▶ container kumo-<key>-<service>-<replica>   × count, per service
//!    └──▶ volume    kumo-<key>-<service>-<replica>-<volume>   per persistent mount and replica:
//!                     a bind of <storage_dir>/<volume>/data, an ext4 file system of the volume's
//!                     size in <storage_dir>/<volume>.img (see [`crate::storage`])
//! ```
//!
//! Disk limits: persistent volumes are file systems of their size; `ram` volumes tmpfs of
//! theirs; what a replica writes elsewhere (its writable layer, scratch volumes) is measured
//! every few seconds by [`DockerBackend::enforce_storage`] and a replica above its ephemeral
//! storage is evicted (removed, recorded with its reason, started again empty by the provider).
//! Both need the backend on the engine's host, as root (loop mounts, reading the engine's
//! overlay directories).
//!
//! The engine is the only state: nothing is cached in the backend, so a restarted provider
//! sees exactly what runs. Calls for one lease are serialized (a per-lease lock), calls for
//! different leases run in parallel.
//!
//! Lease networks do not use the engine's default address pools (about 30 networks): each gets
//! a subnet of [`crate::network::AddressPool`], picked by this backend.

mod converge;
mod evict;
mod exec;
mod image;
pub mod labels;
mod logs;
mod network;
mod spec;

pub use spec::ENGINE_MIN_MEMORY;
mod status;
mod teardown;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::ContainerSummary;
use bollard::query_parameters::ListContainersOptionsBuilder;
use kumo_sdl::manifest::ManifestGroup;
use kumo_types::LeaseId;

use crate::WorkloadError;
use crate::backend::{
    Backend, DeployOptions, DeploymentStatus, EventStream, Eviction, ExecRequest, ExecSession,
    LogOptions, LogStream, TeardownReport,
};
use crate::firewall::Firewall;
use crate::network::NetworkConfig;

/// How the Docker backend connects and what it imposes on every container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerConfig {
    /// This provider's name on the engine (the `kumo.instance` label); the provider daemon
    /// uses its account address. Two providers sharing one engine must use different names:
    /// each sees only its own objects.
    pub instance: String,
    /// The engine's address (`unix:///var/run/docker.sock`, `tcp://host:2375`); `None` reads
    /// `DOCKER_HOST` and falls back to the local socket.
    pub endpoint: Option<String>,
    /// Most processes (threads included) one container may have: a fork bomb stops there.
    pub pids_limit: i64,
    /// Size at which a container's log file is rotated (engine syntax: `10m`).
    pub log_max_size: String,
    /// How many rotated log files are kept per container.
    pub log_max_files: u32,
    /// Seconds a replica gets to exit after SIGTERM when it is replaced by an update
    /// (teardown kills at once).
    pub stop_timeout_secs: u32,
    /// Where lease networks' subnets come from and what they may reach.
    pub network: NetworkConfig,
    /// Where persistent volumes' image files and mount points live, and the record of
    /// evictions: on the engine's host, on a disk with room for every volume sold (the images
    /// are preallocated).
    pub storage_dir: PathBuf,
}

impl DockerConfig {
    /// The defaults, for the provider instance `instance`.
    pub fn new(instance: impl Into<String>) -> Self {
        DockerConfig {
            instance: instance.into(),
            endpoint: None,
            pids_limit: 1024,
            log_max_size: "10m".into(),
            log_max_files: 3,
            stop_timeout_secs: 10,
            network: NetworkConfig::default(),
            storage_dir: "/var/lib/kumo/volumes".into(),
        }
    }

    fn limits(&self) -> spec::Limits {
        spec::Limits {
            pids_limit: self.pids_limit,
            log_max_size: self.log_max_size.clone(),
            log_max_files: self.log_max_files,
        }
    }
}

/// Runs leases on a Docker engine. Cheap to share: clone it or put it in an `Arc`.
#[derive(Debug, Clone)]
pub struct DockerBackend {
    docker: Docker,
    config: Arc<DockerConfig>,
    /// One lock per lease, so that a deploy and a teardown of the same lease never interleave.
    locks: Arc<Mutex<HashMap<LeaseId, Arc<tokio::sync::Mutex<()>>>>>,
    /// Held while a subnet is picked and while the firewall is rewritten (taken after a
    /// lease's lock, never before).
    network_lock: Arc<tokio::sync::Mutex<()>>,
    /// The lease firewall, unless the configuration has none.
    firewall: Option<Arc<Firewall>>,
    /// Whether the engine runs on this host (a unix socket): then the host's routes are kept
    /// out of lease subnets.
    local_engine: bool,
}

impl DockerBackend {
    /// Connects to the engine and agrees on an API version with it, then installs the lease
    /// firewall for the lease networks that exist (see [`DockerBackend::sync_firewall`]).
    /// Fails with [`WorkloadError::EngineUnreachable`] when the engine does not answer, and
    /// with [`WorkloadError::Firewall`] when the rules cannot be installed: a provider never
    /// runs leases uncontained by accident.
    pub async fn connect(config: DockerConfig) -> Result<Self, WorkloadError> {
        let endpoint = config
            .endpoint
            .clone()
            .or_else(|| std::env::var("DOCKER_HOST").ok())
            .unwrap_or_else(|| "unix:///var/run/docker.sock".to_string());
        let unreachable = |cause: DockerError| WorkloadError::EngineUnreachable {
            endpoint: endpoint.clone(),
            cause: Box::new(cause),
        };
        let docker = Docker::connect_with_host(&endpoint).map_err(unreachable)?;
        // The engine may speak an older API than bollard's default (Debian 12's 20.10: 1.41).
        let docker = docker.negotiate_version().await.map_err(unreachable)?;
        let firewall = config
            .network
            .firewall
            .clone()
            .map(|f| Arc::new(Firewall::new(&config.instance, f)));
        let backend = DockerBackend {
            docker,
            config: Arc::new(config),
            locks: Arc::default(),
            network_lock: Arc::default(),
            firewall,
            local_engine: endpoint.starts_with("unix://"),
        };
        backend.sync_firewall().await?;
        Ok(backend)
    }

    /// The engine client, for what the [`Backend`] trait does not cover (the provider's
    /// inventory reads `info()`).
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// The configuration this backend runs with.
    pub fn config(&self) -> &DockerConfig {
        &self.config
    }

    async fn lock(&self, lease: &LeaseId) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(*lease).or_default().clone()
        };
        lock.lock_owned().await
    }

    /// Every container of `lease` (running or not).
    async fn containers(&self, lease: &LeaseId) -> Result<Vec<ContainerSummary>, WorkloadError> {
        let opts = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&labels::filter(&self.config.instance, Some(lease)))
            .build();
        self.docker.list_containers(Some(opts)).await.map_err(|e| {
            WorkloadError::engine(format!("listing the containers of lease {lease}"), e)
        })
    }
}

/// Whether the engine answered 404 (the object is gone).
fn is_not_found(e: &DockerError) -> bool {
    matches!(
        e,
        DockerError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// Whether the engine answered 409 (a conflict: in use, already being removed, …).
fn is_conflict(e: &DockerError) -> bool {
    matches!(
        e,
        DockerError::DockerResponseServerError {
            status_code: 409,
            ..
        }
    )
}

/// A label of a listed object, or "".
fn label<'a>(labels: &'a Option<HashMap<String, String>>, key: &str) -> &'a str {
    labels
        .as_ref()
        .and_then(|l| l.get(key))
        .map_or("", String::as_str)
}

#[async_trait]
impl Backend for DockerBackend {
    async fn deploy(
        &self,
        lease: &LeaseId,
        group: &ManifestGroup,
        opts: &DeployOptions,
    ) -> Result<DeploymentStatus, WorkloadError> {
        let _guard = self.lock(lease).await;
        self.converge(lease, group, opts).await?;
        self.status_unlocked(lease).await
    }

    async fn update(
        &self,
        lease: &LeaseId,
        group: &ManifestGroup,
        opts: &DeployOptions,
    ) -> Result<DeploymentStatus, WorkloadError> {
        let _guard = self.lock(lease).await;
        if !self.exists(lease).await? {
            return Err(WorkloadError::LeaseNotFound {
                lease: lease.to_string(),
            });
        }
        self.converge(lease, group, opts).await?;
        self.status_unlocked(lease).await
    }

    async fn teardown(&self, lease: &LeaseId) -> Result<TeardownReport, WorkloadError> {
        let _guard = self.lock(lease).await;
        self.teardown_unlocked(lease).await
    }

    async fn status(&self, lease: &LeaseId) -> Result<DeploymentStatus, WorkloadError> {
        self.status_unlocked(lease).await
    }

    async fn statuses(&self) -> Result<Vec<DeploymentStatus>, WorkloadError> {
        self.all_statuses().await
    }

    async fn logs(&self, lease: &LeaseId, opts: &LogOptions) -> Result<LogStream, WorkloadError> {
        self.logs_stream(lease, opts).await
    }

    async fn exec(&self, lease: &LeaseId, req: &ExecRequest) -> Result<ExecSession, WorkloadError> {
        self.exec_session(lease, req).await
    }

    async fn leases(&self) -> Result<Vec<LeaseId>, WorkloadError> {
        self.all_leases().await
    }

    async fn events(&self, lease: &LeaseId) -> Result<EventStream, WorkloadError> {
        Ok(self.event_stream(lease))
    }

    async fn enforce_storage(&self) -> Result<Vec<Eviction>, WorkloadError> {
        self.enforce_ephemeral_storage().await
    }

    async fn evictions(&self, lease: &LeaseId) -> Result<Vec<Eviction>, WorkloadError> {
        self.recorded_evictions(lease)
    }

    async fn restart(
        &self,
        lease: &LeaseId,
        service: Option<&str>,
    ) -> Result<DeploymentStatus, WorkloadError> {
        let _guard = self.lock(lease).await;
        let containers = self.containers(lease).await?;
        if containers.is_empty() {
            return Err(WorkloadError::LeaseNotFound {
                lease: lease.to_string(),
            });
        }
        let mut known: Vec<&str> = containers
            .iter()
            .map(|c| label(&c.labels, labels::SERVICE))
            .collect();
        known.sort_unstable();
        known.dedup();
        if let Some(wanted) = service
            && !known.contains(&wanted)
        {
            return Err(WorkloadError::UnknownService {
                lease: lease.to_string(),
                service: wanted.to_string(),
                known: known.join(", "),
            });
        }
        for c in &containers {
            if service.is_some_and(|s| s != label(&c.labels, labels::SERVICE)) {
                continue;
            }
            let id = c.id.as_deref().unwrap_or_default();
            self.docker
                .restart_container(
                    id,
                    None::<bollard::query_parameters::RestartContainerOptions>,
                )
                .await
                .map_err(|e| WorkloadError::engine(format!("restarting container {id}"), e))?;
        }
        self.status_unlocked(lease).await
    }
}
