//! `up`, `down` and `status`: starting the devnet's node and providers in order, waiting until
//! each serves, registering each provider on chain, and stopping it all again (the providers'
//! workloads included).
//!
//! `up` means "make the devnet run": it starts only the parts that are down (a node that died,
//! a provider killed with SIGKILL) and leaves the parts that run alone. It never touches a
//! workload: a provider started again adopts the containers of its leases through the
//! reconcile it runs at start (`kumo_provider::daemon`), so a lease's container keeps running,
//! unrestarted, through its provider's outage. When everything runs already, `up` starts
//! nothing and says so ([`Devnet::started`] is empty).

use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use kumo_client::{
    NodeClient,
    signer::Signer,
    types::{LeaseState, LeasesQuery},
};
use kumo_gateway::client::GatewayClient;
use kumo_provider::{ProviderConfig, daemon::load_key, register, serve::gateway_cert};
use kumo_types::{Address, SecretKey};
use kumo_workload::{Backend as _, DockerBackend, DockerConfig};
use serde::Serialize;

use crate::{
    DevnetError,
    layout::{self, DevnetInfo, DevnetProvider, DevnetSpec, NODE, NODE_HOME},
    process::{self, Daemon},
};

/// How long the node and the providers get to come up.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long each gets to exit after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long `status` waits for one answer (the node's, a gateway's).
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);

/// A part of the devnet that was running already when [`up`] came, left as it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Running {
    /// `node`, `provider`, `provider2`, …
    pub name: String,
    /// Its process id.
    pub pid: u32,
}

/// A devnet brought up by [`up`]: the processes it started stop when this is dropped, unless
/// [`Devnet::detach`]ed. Parts that were running already are not its to stop.
#[derive(Debug)]
pub struct Devnet {
    /// The devnet directory (absolute).
    pub dir: PathBuf,
    /// What it is.
    pub info: DevnetInfo,
    /// Whether `up` created the directory (a first start) or reused it.
    pub created: bool,
    /// The parts that were running already, untouched.
    pub already_running: Vec<Running>,
    node: Option<Daemon>,
    providers: Vec<Daemon>,
}

impl Devnet {
    /// The parts this `up` started (`node`, `provider`, `provider2`, …), in the order it
    /// started them; empty when everything was running already.
    pub fn started(&self) -> Vec<String> {
        self.node
            .iter()
            .chain(&self.providers)
            .map(|d| d.name.clone())
            .collect()
    }

    /// The started processes' ids, by name.
    pub fn started_pids(&self) -> Vec<Running> {
        self.node
            .iter()
            .chain(&self.providers)
            .filter_map(|d| {
                Some(Running {
                    name: d.name.clone(),
                    pid: d.pid()?,
                })
            })
            .collect()
    }

    /// Leaves the started processes running; `kumo devnet down` stops them.
    pub fn detach(self) {
        let Devnet {
            node, providers, ..
        } = self;
        node.into_iter().chain(providers).for_each(Daemon::detach);
    }

    /// The first started process that exited, with the end of its log; `None` while all run.
    pub fn exited(&mut self) -> Option<(String, String)> {
        for d in self.providers.iter_mut().chain(self.node.as_mut()) {
            if !d.is_running() {
                return Some((d.name.clone(), d.log_tail(20)));
            }
        }
        None
    }

    /// Stops the started providers, then the node if it was started (the providers'
    /// workloads keep running, as after a provider restart; [`down`] removes them).
    pub fn stop(mut self) {
        stop_all(self.providers.iter_mut());
        if let Some(node) = &mut self.node {
            node.stop(STOP_GRACE);
        }
    }
}

/// SIGTERM to each, side by side: each gets [`STOP_GRACE`], not one after another.
fn stop_all<'a>(daemons: impl Iterator<Item = &'a mut Daemon>) {
    std::thread::scope(|s| {
        for d in daemons {
            s.spawn(move || d.stop(STOP_GRACE));
        }
    });
}

/// Brings up the devnet in `spec.dir`, creating it first if it does not exist yet: of the
/// node and the providers, starts those that do not run (the node first, then each provider's
/// registration on chain, then the provider daemons, waited for together) and leaves the
/// others alone. `exe` is the `kumo` binary the processes run. `progress` hears each step.
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
    if let Some(asked) = spec.providers
        && asked != info.providers.len()
    {
        return Err(DevnetError::ProvidersFixed {
            dir,
            has: info.providers.len(),
            asked,
        });
    }

    let mut already_running = Vec::new();
    let node_pid = process::running(&dir, NODE);
    if let Some(pid) = node_pid {
        already_running.push(Running {
            name: NODE.into(),
            pid,
        });
    }
    let mut down = Vec::new();
    for p in &info.providers {
        match process::running(&dir, &p.name) {
            Some(pid) => already_running.push(Running {
                name: p.name.clone(),
                pid,
            }),
            None => down.push(p.clone()),
        }
    }
    let mut devnet = Devnet {
        dir: dir.clone(),
        info: info.clone(),
        created,
        already_running,
        node: None,
        providers: Vec::new(),
    };
    if node_pid.is_some() && down.is_empty() {
        return Ok(devnet);
    }
    // Every port of what will start, before anything starts.
    if node_pid.is_none() {
        layout::check_node_ports_free(&info)?;
    }
    for p in &down {
        layout::check_provider_ports_free(p)?;
    }

    let client = NodeClient::new(&info.node)?;
    let home = dir.join(NODE_HOME);
    let node_log = home.join("node.log");
    match node_pid {
        None => {
            progress(&format!("starting the node ({})", info.node));
            let node = devnet.node.insert(Daemon::start(
                &dir,
                NODE,
                exe,
                &[
                    OsStr::new("node"),
                    OsStr::new("run"),
                    OsStr::new("--home"),
                    home.as_os_str(),
                ],
                node_log.clone(),
            )?);
            wait_for_blocks(&client, &mut || node.is_running(), &node_log).await?;
        }
        Some(pid) => {
            progress(&format!("the node runs already (pid {pid})"));
            wait_for_blocks(
                &client,
                &mut || process::running(&dir, NODE).is_some(),
                &node_log,
            )
            .await?;
        }
    }

    let mut pending = Vec::new();
    for p in &down {
        let config = ProviderConfig::load(&p.config_path())
            .map_err(|e| DevnetError::Provider(e.to_string()))?;
        let cert = gateway_cert(&config).map_err(|e| DevnetError::Provider(e.to_string()))?;
        let key = load_key(&config).map_err(|e| DevnetError::Provider(e.to_string()))?;
        // Registered each time it starts (an update when the record exists): the record must
        // carry the certificate and attributes this daemon runs with.
        progress(&format!("registering {} on chain ({})", p.name, p.address));
        let signer = Signer::connect(client.clone(), key)
            .await
            .map_err(|e| DevnetError::Provider(e.to_string()))?;
        register::register(&config, &signer, cert.fingerprint())
            .await
            .map_err(|e| DevnetError::Provider(e.to_string()))?;
        progress(&format!("starting {} (gateway {})", p.name, p.gateway));
        let config_path = p.config_path();
        devnet.providers.push(Daemon::start(
            &dir,
            &p.name,
            exe,
            &[
                OsStr::new("provider"),
                OsStr::new("run"),
                OsStr::new("--config"),
                config_path.as_os_str(),
            ],
            p.log_path(),
        )?);
        let gateway = GatewayClient::new(
            &p.gateway,
            cert.fingerprint(),
            SecretKey::generate(),
            p.address,
        )
        .map_err(|e| DevnetError::Provider(e.to_string()))?;
        pending.push((devnet.providers.len() - 1, gateway));
    }
    // The daemons come up side by side; each is waited for until its gateway answers.
    let started = Instant::now();
    while !pending.is_empty() {
        let mut still = Vec::new();
        for (i, gateway) in pending {
            let daemon = &mut devnet.providers[i];
            if !daemon.is_running() {
                return Err(DevnetError::Exited {
                    what: daemon.name.clone(),
                    log: daemon.log_tail(30),
                });
            }
            if let Ok(Ok(_)) = tokio::time::timeout(STATUS_TIMEOUT, gateway.provider_status()).await
            {
                progress(&format!("{} serves", daemon.name));
            } else if started.elapsed() > START_TIMEOUT {
                return Err(DevnetError::Timeout {
                    what: format!("gateway of {}", daemon.name),
                    log: daemon.log_tail(30),
                });
            } else {
                still.push((i, gateway));
            }
        }
        pending = still;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(devnet)
}

/// Waits until the node serves and has committed a block; fails when `alive` says it is gone.
async fn wait_for_blocks(
    client: &NodeClient,
    alive: &mut dyn FnMut() -> bool,
    log: &Path,
) -> Result<(), DevnetError> {
    let started = Instant::now();
    loop {
        if !alive() {
            return Err(DevnetError::Exited {
                what: NODE.into(),
                log: process::log_tail(log, 30),
            });
        }
        if let Ok(Ok(s)) = tokio::time::timeout(STATUS_TIMEOUT, client.status()).await
            && s.height >= 1
        {
            return Ok(());
        }
        if started.elapsed() > START_TIMEOUT {
            return Err(DevnetError::Timeout {
                what: NODE.into(),
                log: process::log_tail(log, 30),
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
    /// The processes it stopped (`provider`, `provider2`, …, then `node`).
    pub stopped: Vec<String>,
    /// How many leases' workloads it removed from the Docker engine, all providers together.
    pub workloads_removed: usize,
    /// Whether it deleted the directory (`--purge`).
    pub purged: bool,
}

/// Stops a devnet started with `up --detach` (or left by a crashed `up`): every provider
/// (side by side), then the node, then every workload of each provider's label instance on
/// the Docker engine and its lease firewall table (a later `up` redeploys the leases still
/// active on chain). `purge` also deletes the directory.
pub async fn down(dir: &Path, purge: bool) -> Result<DownReport, DevnetError> {
    let info = DevnetInfo::load(dir)?;
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut stopped: Vec<String> = std::thread::scope(|s| {
        let stops: Vec<_> = info
            .providers
            .iter()
            .map(|p| {
                let dir = &dir;
                s.spawn(move || {
                    process::stop_recorded(dir, &p.name, STOP_GRACE).map(|_| p.name.clone())
                })
            })
            .collect();
        stops
            .into_iter()
            .filter_map(|h| h.join().ok().flatten())
            .collect()
    });
    if process::stop_recorded(&dir, NODE, STOP_GRACE).is_some() {
        stopped.push(NODE.into());
    }
    let mut workloads_removed = 0;
    for p in &info.providers {
        workloads_removed += remove_workloads(p).await?;
    }
    if purge {
        for p in &info.providers {
            // The VM backend's cgroup directory (`kumo-vm/<tag>`, named from its data
            // directory); its VMs' groups went with their teardown, a running VM's stays.
            if let Some(cgroups) = kumo_vm::cgroup::for_data_dir(&p.dir.join("vm")) {
                cgroups.remove_all_blocking();
            }
        }
        std::fs::remove_dir_all(&dir).map_err(|error| DevnetError::Io {
            path: dir.clone(),
            error,
        })?;
    }
    Ok(DownReport {
        dir,
        stopped,
        workloads_removed,
        purged: purge,
    })
}

/// Tears down every lease of the provider's label instance, then its firewall table; how
/// many leases it tore down.
async fn remove_workloads(p: &DevnetProvider) -> Result<usize, DevnetError> {
    let docker_error = |e: kumo_workload::WorkloadError| DevnetError::Docker(e.to_string());
    let docker = DockerBackend::connect(DockerConfig::new(p.instance.clone()))
        .await
        .map_err(docker_error)?;
    let leases = docker.leases().await.map_err(docker_error)?;
    for lease in &leases {
        docker.teardown(lease).await.map_err(docker_error)?;
    }
    // The provider's lease firewall table goes with its last lease.
    docker.remove_firewall().await.map_err(docker_error)?;
    Ok(leases.len())
}

/// The node, as [`status`] found it.
#[derive(Debug, Clone, Serialize)]
pub struct NodePart {
    /// Its API URL.
    pub api: String,
    /// Its pid, if it runs.
    pub pid: Option<u32>,
    /// The latest block height, if it answers.
    pub height: Option<u64>,
}

/// One provider, as [`status`] found it.
#[derive(Debug, Clone, Serialize)]
pub struct ProviderPart {
    /// Its name (key, process): `provider`, `provider2`, …
    pub name: String,
    /// Its address.
    pub address: Address,
    /// Its gateway URL.
    pub gateway: String,
    /// Its pid, if it runs.
    pub pid: Option<u32>,
    /// Whether its gateway answered `GET /status` (with the certificate it pins).
    pub gateway_answers: bool,
    /// Whether the chain has its record; `None` when the node does not answer.
    pub registered: Option<bool>,
    /// Its active leases on chain; `None` when the node does not answer.
    pub active_leases: Option<usize>,
}

/// What [`status`] found.
#[derive(Debug, Clone, Serialize)]
pub struct DevnetStatus {
    /// The devnet directory.
    pub dir: PathBuf,
    /// What it is.
    pub info: DevnetInfo,
    /// The node.
    pub node: NodePart,
    /// Each provider, the first one first.
    pub providers: Vec<ProviderPart>,
    /// The node's pid, if it runs (`node.pid`; kept for readers of the one-provider shape).
    pub node_pid: Option<u32>,
    /// The first provider's pid, if it runs (kept likewise).
    pub provider_pid: Option<u32>,
    /// The latest block height, if the node answers (kept likewise).
    pub height: Option<u64>,
}

impl DevnetStatus {
    /// Whether the node and every provider run.
    pub fn all_running(&self) -> bool {
        self.node.pid.is_some() && self.providers.iter().all(|p| p.pid.is_some())
    }
}

/// Each part of the devnet in `dir`: whether it runs, the node's height, whether each
/// provider's gateway answers, is registered and how many leases it has.
pub async fn status(dir: &Path) -> Result<DevnetStatus, DevnetError> {
    let info = DevnetInfo::load(dir)?;
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let client = NodeClient::new(&info.node).ok();
    let height = match &client {
        Some(c) => tokio::time::timeout(STATUS_TIMEOUT, c.status())
            .await
            .ok()
            .and_then(Result::ok)
            .map(|s| s.height),
        None => None,
    };
    // One query for every provider's record; only when the node answered at all.
    let registered: Option<Vec<Address>> = match (&client, height) {
        (Some(c), Some(_)) => tokio::time::timeout(STATUS_TIMEOUT, c.providers())
            .await
            .ok()
            .and_then(Result::ok)
            .map(|r| r.value.into_iter().map(|p| p.owner).collect()),
        _ => None,
    };
    let mut providers = Vec::new();
    for p in &info.providers {
        let active_leases = match (&client, height) {
            (Some(c), Some(_)) => {
                let q = LeasesQuery {
                    provider: Some(p.address),
                    state: Some(LeaseState::Active),
                    owner: None,
                };
                tokio::time::timeout(STATUS_TIMEOUT, c.leases(&q))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .map(|r| r.value.len())
            }
            _ => None,
        };
        providers.push(ProviderPart {
            name: p.name.clone(),
            address: p.address,
            gateway: p.gateway.clone(),
            pid: process::running(&dir, &p.name),
            gateway_answers: gateway_answers(p).await,
            registered: registered.as_ref().map(|r| r.contains(&p.address)),
            active_leases,
        });
    }
    let node_pid = process::running(&dir, NODE);
    Ok(DevnetStatus {
        node: NodePart {
            api: info.node.clone(),
            pid: node_pid,
            height,
        },
        node_pid,
        provider_pid: providers.first().and_then(|p| p.pid),
        height,
        providers,
        dir,
        info,
    })
}

/// Whether the provider's gateway answers `GET /status`, pinned to the certificate in its
/// data directory (a provider that never started has none: it does not answer).
async fn gateway_answers(p: &DevnetProvider) -> bool {
    let Ok(config) = ProviderConfig::load(&p.config_path()) else {
        return false;
    };
    // `gateway_cert` would create a certificate where none is; status writes nothing.
    if !config.data_dir.join("gateway.crt").exists() {
        return false;
    }
    let Ok(cert) = gateway_cert(&config) else {
        return false;
    };
    let Ok(gateway) = GatewayClient::new(
        &p.gateway,
        cert.fingerprint(),
        SecretKey::generate(),
        p.address,
    ) else {
        return false;
    };
    matches!(
        tokio::time::timeout(STATUS_TIMEOUT, gateway.provider_status()).await,
        Ok(Ok(_))
    )
}
