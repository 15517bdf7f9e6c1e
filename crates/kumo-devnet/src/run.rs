//! `up`, `down` and `status`: starting the devnet's node and provider in order, waiting until
//! each serves, registering the provider on chain, and stopping it all again (the provider's
//! workloads included).

use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use kumo_client::{NodeClient, signer::Signer};
use kumo_gateway::client::GatewayClient;
use kumo_provider::{ProviderConfig, daemon::load_key, register, serve::gateway_cert};
use kumo_types::SecretKey;
use kumo_workload::{Backend as _, DockerBackend, DockerConfig};
use serde::Serialize;

use crate::{
    DevnetError,
    layout::{self, DevnetInfo, DevnetSpec, NODE_HOME, PROVIDER_DIR},
    process::{self, Daemon},
};

/// How long the node and the provider get to come up.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long each gets to exit after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// A running devnet started by [`up`]: its processes stop when this is dropped, unless
/// [`Devnet::detach`]ed.
#[derive(Debug)]
pub struct Devnet {
    /// The devnet directory (absolute).
    pub dir: PathBuf,
    /// What it is.
    pub info: DevnetInfo,
    /// Whether `up` created the directory (a first start) or reused it.
    pub created: bool,
    node: Daemon,
    provider: Daemon,
}

impl Devnet {
    /// Leaves both processes running; `kumo devnet down` stops them.
    pub fn detach(self) {
        let Devnet { node, provider, .. } = self;
        node.detach();
        provider.detach();
    }

    /// The first process that exited, with the end of its log; `None` while both run.
    pub fn exited(&mut self) -> Option<(&'static str, String)> {
        for d in [&mut self.provider, &mut self.node] {
            if !d.is_running() {
                return Some((d.name, d.log_tail(20)));
            }
        }
        None
    }

    /// Stops the provider, then the node (the provider's workloads keep running, as after a
    /// provider restart; [`down`] removes them).
    pub fn stop(mut self) {
        self.provider.stop(STOP_GRACE);
        self.node.stop(STOP_GRACE);
    }
}

/// Starts the devnet in `spec.dir`, creating it first if it does not exist yet: the node,
/// then the provider's registration on chain, then the provider daemon. `exe` is the `kumo`
/// binary the processes run. `progress` hears each step.
pub async fn up(
    spec: &DevnetSpec,
    exe: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<Devnet, DevnetError> {
    std::fs::create_dir_all(&spec.dir).map_err(|error| DevnetError::Io {
        path: spec.dir.clone(),
        error,
    })?;
    // Absolute, so that the pid check in `process::running` recognises the command lines.
    let dir = std::fs::canonicalize(&spec.dir).map_err(|error| DevnetError::Io {
        path: spec.dir.clone(),
        error,
    })?;
    for name in ["node", "provider"] {
        if let Some(pid) = process::running(&dir, name) {
            return Err(DevnetError::AlreadyRunning {
                dir: dir.clone(),
                what: name,
                pid,
            });
        }
    }
    let (info, created) = match DevnetInfo::load(&dir) {
        Ok(info) => (info, false),
        Err(DevnetError::NotFound(_)) => {
            progress(&format!("creating a devnet in {}", dir.display()));
            let spec = DevnetSpec {
                dir: dir.clone(),
                ..spec.clone()
            };
            (layout::create(&spec)?, true)
        }
        Err(e) => return Err(e),
    };
    layout::check_ports_free(&info)?;

    let home = dir.join(NODE_HOME);
    progress(&format!("starting the node ({})", info.node));
    let mut node = Daemon::start(
        &dir,
        "node",
        exe,
        &[
            OsStr::new("node"),
            OsStr::new("run"),
            OsStr::new("--home"),
            home.as_os_str(),
        ],
        home.join("node.log"),
    )?;
    let client = NodeClient::new(&info.node)?;
    wait_for_blocks(&client, &mut node).await?;

    let config_path = layout::provider_config_path(&dir);
    let config =
        ProviderConfig::load(&config_path).map_err(|e| DevnetError::Provider(e.to_string()))?;
    let cert = gateway_cert(&config).map_err(|e| DevnetError::Provider(e.to_string()))?;
    let key = load_key(&config).map_err(|e| DevnetError::Provider(e.to_string()))?;
    progress("registering the provider on chain");
    let signer = Signer::connect(client.clone(), key)
        .await
        .map_err(|e| DevnetError::Provider(e.to_string()))?;
    register::register(&config, &signer, cert.fingerprint())
        .await
        .map_err(|e| DevnetError::Provider(e.to_string()))?;

    progress(&format!("starting the provider (gateway {})", info.gateway));
    let mut provider = Daemon::start(
        &dir,
        "provider",
        exe,
        &[
            OsStr::new("provider"),
            OsStr::new("run"),
            OsStr::new("--config"),
            config_path.as_os_str(),
        ],
        dir.join(PROVIDER_DIR).join("provider.log"),
    )?;
    let gateway = GatewayClient::new(
        &info.gateway,
        cert.fingerprint(),
        SecretKey::generate(),
        info.provider,
    )
    .map_err(|e| DevnetError::Provider(e.to_string()))?;
    let started = Instant::now();
    loop {
        if !provider.is_running() {
            return Err(DevnetError::Exited {
                what: "provider",
                log: provider.log_tail(30),
            });
        }
        if gateway.provider_status().await.is_ok() {
            break;
        }
        if started.elapsed() > START_TIMEOUT {
            return Err(DevnetError::Timeout {
                what: "provider gateway",
                log: provider.log_tail(30),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(Devnet {
        dir,
        info,
        created,
        node,
        provider,
    })
}

/// Waits until the node serves and has committed a block.
async fn wait_for_blocks(client: &NodeClient, node: &mut Daemon) -> Result<(), DevnetError> {
    let started = Instant::now();
    loop {
        if !node.is_running() {
            return Err(DevnetError::Exited {
                what: "node",
                log: node.log_tail(30),
            });
        }
        if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_secs(2), client.status()).await
            && s.height >= 1
        {
            return Ok(());
        }
        if started.elapsed() > START_TIMEOUT {
            return Err(DevnetError::Timeout {
                what: "node",
                log: node.log_tail(30),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What [`down`] did.
#[derive(Debug, Clone, Serialize)]
pub struct DownReport {
    /// The devnet directory.
    pub dir: PathBuf,
    /// The processes it stopped (`provider`, `node`).
    pub stopped: Vec<&'static str>,
    /// How many leases' workloads it removed from the Docker engine.
    pub workloads_removed: usize,
    /// Whether it deleted the directory (`--purge`).
    pub purged: bool,
}

/// Stops a devnet started with `up --detach` (or left by a crashed `up`): the provider, then
/// the node, then every workload of the devnet's provider on the Docker engine and its lease
/// firewall table (a later `up` redeploys the leases still active on chain). `purge` also deletes the directory.
pub async fn down(dir: &Path, purge: bool) -> Result<DownReport, DevnetError> {
    let info = DevnetInfo::load(dir)?;
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut stopped = Vec::new();
    for name in ["provider", "node"] {
        if process::stop_recorded(&dir, name, STOP_GRACE).is_some() {
            stopped.push(name);
        }
    }
    let docker = DockerBackend::connect(DockerConfig::new(info.instance.clone()))
        .await
        .map_err(|e| DevnetError::Docker(e.to_string()))?;
    let leases = docker
        .leases()
        .await
        .map_err(|e| DevnetError::Docker(e.to_string()))?;
    for lease in &leases {
        docker
            .teardown(lease)
            .await
            .map_err(|e| DevnetError::Docker(e.to_string()))?;
    }
    // The provider's lease firewall table goes with its last lease.
    docker
        .remove_firewall()
        .await
        .map_err(|e| DevnetError::Docker(e.to_string()))?;
    if purge {
        // The VM backend's cgroup directory (`kumo-vm/<tag>`, named from its data directory);
        // its VMs' groups went with their teardown, a running VM's stays.
        if let Some(cgroups) = kumo_vm::cgroup::for_data_dir(&dir.join(PROVIDER_DIR).join("vm")) {
            cgroups.remove_all_blocking();
        }
        std::fs::remove_dir_all(&dir).map_err(|error| DevnetError::Io {
            path: dir.clone(),
            error,
        })?;
    }
    Ok(DownReport {
        dir,
        stopped,
        workloads_removed: leases.len(),
        purged: purge,
    })
}

/// What [`status`] found.
#[derive(Debug, Clone, Serialize)]
pub struct DevnetStatus {
    /// The devnet directory.
    pub dir: PathBuf,
    /// What it is.
    pub info: DevnetInfo,
    /// The node's pid, if it runs.
    pub node_pid: Option<u32>,
    /// The provider's pid, if it runs.
    pub provider_pid: Option<u32>,
    /// The latest block height, if the node answers.
    pub height: Option<u64>,
}

/// Whether the devnet in `dir` runs, and its height.
pub async fn status(dir: &Path) -> Result<DevnetStatus, DevnetError> {
    let info = DevnetInfo::load(dir)?;
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let height = match NodeClient::new(&info.node) {
        Ok(c) => tokio::time::timeout(Duration::from_secs(2), c.status())
            .await
            .ok()
            .and_then(Result::ok)
            .map(|s| s.height),
        Err(_) => None,
    };
    Ok(DevnetStatus {
        node_pid: process::running(&dir, "node"),
        provider_pid: process::running(&dir, "provider"),
        dir,
        info,
        height,
    })
}
