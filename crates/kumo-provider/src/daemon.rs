//! [`run`]: the daemon. A [`LeaseHost`] holds what runs leases (config, records, workload
//! backend, route table, inventory) and knows nothing of the chain; the [`Provider`] adds the
//! chain account (signer, node client) and the handle of the lease owners
//! ([`crate::lifecycle`]), through which every change to a lease's workload goes. Tasks around
//! it:
//!
//! - the event follower: the node's event stream from the last processed height (stored in
//!   redb): `OrderCreated` → the bid engine (a task per order), `BidLost`/`BidClosed`/
//!   `OrderClosed` → reservation released, `LeaseCreated` → lease recorded and given its
//!   owner, `LeaseClosed` → its owner keeps its last logs and tears it down (after
//!   whatever it was doing);
//! - every second: leases whose manifest is overdue are closed; every 2 s: every lease
//!   refreshed from one engine listing (routes set, missing or evicted replicas deployed
//!   again); every `reconcile_interval` (30 s): [`Provider::reconcile`], as a controller
//!   does; every `storage_check_interval`: ephemeral storage measured, replicas above their
//!   size evicted; every `withdraw_period`: earnings withdrawn; every `liveness_interval`
//!   blocks (a chain parameter): `ProviderHeartbeat`, without which the chain closes this
//!   provider's leases `provider_unresponsive` after `liveness_window` blocks; every minute
//!   (and at start): closed leases' logs past `closed_logs_retention` removed;
//! - the HTTPS gateway and the ingress (HTTP by host name, forwarded TCP and UDP ports).
//!
//! At start, before any of that, [`Provider::reconcile`] makes chain, records and engine agree.
//! SIGTERM/SIGINT stop the servers and tasks; nothing needs flushing (redb commits each change,
//! the workloads keep running and are found again at the next start).

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use kumo_chain::events::Event;
use kumo_client::{NodeClient, signer::Signer};
use kumo_gateway::{routes::RouteTable, types::InventoryView};
use kumo_keystore::{Backend as KeyBackend, Keystore};
use kumo_types::{Address, Msg, SecretKey};
use kumo_vm::VmBackend;
use kumo_workload::{Backend, DockerBackend, DockerConfig};
use tokio::sync::{Mutex, watch};
use tracing::{info, warn};

use crate::{
    ProviderConfig, ProviderError,
    backends::Backends,
    bidengine,
    inventory::Inventory,
    lifecycle::Lifecycle,
    metrics::{ProviderMetrics, Snapshot},
    serve,
    state::State,
};

/// The part of the daemon that runs leases: its records, the workload backends, the routes,
/// the inventory. It never talks to the chain, so the lease lifecycle ([`crate::lifecycle`])
/// runs on it alone, and tests drive it with a fake backend and no node.
pub struct LeaseHost {
    /// The configuration.
    pub config: ProviderConfig,
    /// Its records.
    pub state: State,
    /// Where workloads run: containers on Docker, VMs under QEMU ([`crate::backends`]).
    pub backend: Arc<dyn Backend>,
    /// The VM backend itself when `[vm]` is enabled (its accelerator goes into statuses).
    pub vm: Option<Arc<VmBackend>>,
    /// Where the ingress sends traffic.
    pub routes: RouteTable,
    /// Total capacity.
    pub inventory: Inventory,
    /// Held while checking capacity and reserving, so two bids cannot take the same room.
    pub reserve_lock: Mutex<()>,
    /// Counters for `GET /metrics`.
    pub metrics: ProviderMetrics,
}

impl std::fmt::Debug for LeaseHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseHost")
            .field("data_dir", &self.config.data_dir)
            .finish_non_exhaustive()
    }
}

impl LeaseHost {
    /// Total, held (leases and open bids) and free capacity.
    pub fn inventory_view(&self) -> Result<InventoryView, ProviderError> {
        let leases = self.state.leases()?;
        let bids = self.state.reservations()?;
        Ok(self.inventory.view(
            leases
                .iter()
                .map(|l| &l.held)
                .chain(bids.iter().map(|b| &b.held)),
        ))
    }

    /// The Prometheus text of the counters and of what the records say now.
    pub fn metrics_text(&self) -> Result<String, ProviderError> {
        let leases = self.state.leases()?;
        let running = leases.iter().filter(|l| l.manifest.is_some()).count() as u64;
        let snapshot = Snapshot {
            leases_awaiting_manifest: leases.len() as u64 - running,
            leases_running: running,
            open_bids: self.state.reservations()?.len() as u64,
            inventory: self.inventory_view()?,
        };
        Ok(self.metrics.render(&snapshot))
    }
}

/// The daemon: a [`LeaseHost`] with a chain account. It derefs to its host, so `p.state`,
/// `p.backend`, `p.config` read as before; what needs the chain (bids, lease records from
/// chain events, manifests checked against the on-chain hash, closes, withdrawals,
/// reconciliation) is here.
pub struct Provider {
    /// What runs the leases.
    pub host: Arc<LeaseHost>,
    /// The provider's account.
    pub address: Address,
    /// Signs and submits its transactions.
    pub signer: Signer,
    /// The node.
    pub client: NodeClient,
    /// The owners of the leases: every change to a lease's workload goes through here.
    pub leases: Lifecycle,
}

impl std::ops::Deref for Provider {
    type Target = LeaseHost;

    fn deref(&self) -> &LeaseHost {
        &self.host
    }
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

/// Loads the provider's key from its keyring.
pub fn load_key(config: &ProviderConfig) -> Result<SecretKey, ProviderError> {
    let err = |reason: String| ProviderError::Key {
        name: config.key.name.clone(),
        dir: config.key.keyring_dir.clone(),
        reason,
    };
    let backend = if config.key.backend == "test" {
        KeyBackend::Test
    } else {
        let pass = std::env::var("KUMO_KEYRING_PASSPHRASE").map_err(|_| {
            err("the file backend needs its passphrase in KUMO_KEYRING_PASSPHRASE".into())
        })?;
        KeyBackend::file(pass)
    };
    Keystore::open(&config.key.keyring_dir, backend)
        .and_then(|k| k.secret_key(&config.key.name))
        .map_err(|e| err(e.to_string()))
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(config: ProviderConfig) -> Result<(), ProviderError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        ProviderError::Other(format!("cannot create {}: {e}", config.data_dir.display()))
    })?;
    let key = load_key(&config)?;
    let client = NodeClient::new(&config.node)?;
    let signer = Signer::connect(client.clone(), key).await?;
    let address = signer.address();
    let state = State::open(&config.data_dir.join("provider.redb"))?;
    let mut docker_cfg = DockerConfig::new(config.backend.instance.clone());
    if !config.backend.docker_endpoint.is_empty() {
        docker_cfg.endpoint = Some(config.backend.docker_endpoint.clone());
    }
    docker_cfg.network = config
        .network
        .workload_config()
        .map_err(ProviderError::Other)?;
    let pool = docker_cfg.network.pool;
    docker_cfg.storage_dir = config.backend.storage_dir(&config.data_dir);
    // Connecting installs the lease firewall for the leases that run (or fails if it cannot).
    let docker = Arc::new(DockerBackend::connect(docker_cfg).await?);
    let devices = crate::gpus::discover(&config.gpu).map_err(ProviderError::Other)?;
    let inventory = Inventory::discover(docker.docker(), &config.data_dir, &config.capacity)
        .await?
        .with_gpus(devices)
        .with_networks(pool.capacity());
    let vm = if config.vm.enabled {
        let mut vm_config = config.vm.backend_config();
        // GPU passthrough checks read the same sysfs as the GPU inventory.
        vm_config.sysfs = config.gpu.sysfs.clone();
        // VMs sit on their leases' Docker networks, inside the lease firewall.
        let vm = VmBackend::new(vm_config)
            .await
            .map_err(|e| ProviderError::Other(format!("[vm]: {e}")))?
            .with_networks(docker.clone())
            .await
            .map_err(|e| ProviderError::Other(format!("[vm]: {e}")))?;
        info!(accel = %vm.accel().accel, "VMs enabled");
        Some(Arc::new(vm))
    } else {
        None
    };
    let backend = Backends::new(docker, vm.clone().map(|v| v as Arc<dyn Backend>));
    info!(provider = %address, total = ?inventory.total, "starting");
    let gateway_cert = serve::gateway_cert(&config)?;
    let host = Arc::new(LeaseHost {
        config,
        state,
        backend: Arc::new(backend),
        vm,
        routes: RouteTable::new(),
        inventory,
        reserve_lock: Mutex::new(()),
        metrics: ProviderMetrics::default(),
    });
    let leases = Lifecycle::start(host.clone());
    for rec in host.state.leases()? {
        leases.adopt(rec.id);
    }
    let p = Arc::new(Provider {
        host,
        address,
        signer,
        client,
        leases,
    });
    // Closed leases' logs past their retention go now, and then every PRUNE_INTERVAL (a
    // reader never sees them anyway: it checks the retention itself).
    p.prune_closed_logs();
    let from = match p.state.last_height()? {
        Some(h) => h,
        None => p.client.status().await?.height + 1,
    };
    p.reconcile().await?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(follow_events(p.clone(), from, stop_rx.clone()));
    tasks.spawn(every(Duration::from_secs(1), stop_rx.clone(), {
        let p = p.clone();
        move || {
            let p = p.clone();
            async move { p.close_overdue().await }
        }
    }));
    tasks.spawn(every(Duration::from_secs(2), stop_rx.clone(), {
        let p = p.clone();
        move || {
            let p = p.clone();
            async move {
                p.leases.refresh(false).await;
            }
        }
    }));
    tasks.spawn(every(p.config.reconcile_interval, stop_rx.clone(), {
        let p = p.clone();
        move || {
            let p = p.clone();
            async move {
                if let Err(e) = p.reconcile().await {
                    warn!("reconcile: {e}");
                }
            }
        }
    }));
    tasks.spawn(every(
        p.config.backend.storage_check_interval,
        stop_rx.clone(),
        {
            let p = p.clone();
            move || {
                let p = p.clone();
                async move { p.enforce_storage().await }
            }
        },
    ));
    tasks.spawn(every(
        crate::closed_logs::PRUNE_INTERVAL,
        stop_rx.clone(),
        {
            let p = p.clone();
            move || {
                let p = p.clone();
                async move {
                    p.prune_closed_logs();
                }
            }
        },
    ));
    tasks.spawn(prove_alive(p.clone(), stop_rx.clone()));
    let period = p.config.withdraw_period;
    tasks.spawn(every(period, stop_rx.clone(), {
        let p = p.clone();
        move || {
            let p = p.clone();
            async move { p.withdraw_all().await }
        }
    }));
    serve::spawn_servers(&mut tasks, p.clone(), gateway_cert, stop_rx.clone()).await?;
    info!("provider running");

    shutdown_signal().await;
    info!("stopping");
    let _ = stop_tx.send(true);
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(10), drain)
        .await
        .is_err()
    {
        warn!("some tasks did not stop within 10 s");
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Waits until `stop` turns true.
pub async fn stopped(mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

async fn every<F, Fut>(period: Duration, stop: watch::Receiver<bool>, mut f: F)
where
    F: FnMut() -> Fut + Send,
    Fut: std::future::Future<Output = ()> + Send,
{
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let stopped = stopped(stop);
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            _ = tick.tick() => f().await,
        }
    }
}

/// Sends `ProviderHeartbeat` every `liveness_interval` blocks (a chain parameter), so the chain
/// keeps this provider's leases open and tenants count it among the live providers. Checked
/// every second against the chain's height; a failed heartbeat is retried on the next check.
async fn prove_alive(p: Arc<Provider>, stop: watch::Receiver<bool>) {
    let interval = p.signer.params().liveness_interval.max(1);
    let mut last_proof: Option<u64> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stopped = stopped(stop);
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            _ = tick.tick() => {}
        }
        let height = match p.client.status().await {
            Ok(s) => s.height,
            Err(e) => {
                warn!("liveness: cannot read the chain's height: {e}");
                continue;
            }
        };
        if last_proof.is_some_and(|h| height < h + interval) {
            continue;
        }
        match p.signer.submit(vec![Msg::ProviderHeartbeat]).await {
            Ok(c) => last_proof = Some(c.height),
            Err(e) => {
                // Not before the next interval: an unregistered provider must not spam fees.
                warn!("liveness: ProviderHeartbeat failed: {e}");
                last_proof = Some(height);
            }
        }
    }
}

async fn follow_events(p: Arc<Provider>, from: u64, stop: watch::Receiver<bool>) {
    info!(from_height = from, "following chain events");
    let mut stream = p.client.event_stream(from);
    let stopped = stopped(stop);
    tokio::pin!(stopped);
    loop {
        let next = tokio::select! {
            _ = &mut stopped => return,
            n = stream.next() => n,
        };
        let ev = match next {
            Some(Ok(ev)) => ev,
            Some(Err(e)) => {
                warn!("event stream: {e} (reconnecting)");
                continue;
            }
            None => return,
        };
        handle_event(&p, ev.event).await;
        if let Err(e) = p.state.set_last_height(ev.height) {
            warn!("recording the processed height: {e}");
        }
    }
}

async fn handle_event(p: &Arc<Provider>, event: Event) {
    let me = p.address;
    match event {
        Event::OrderCreated { id, price, .. } => {
            tokio::spawn(bidengine::on_order_created(p.clone(), id, price));
        }
        Event::BidLost { id } if id.provider == me => {
            bidengine::release(p, &id.order(), "bid lost");
        }
        Event::BidClosed { id } if id.provider == me => {
            bidengine::release(p, &id.order(), "bid closed");
        }
        Event::OrderClosed { id, .. } => bidengine::release(p, &id, "order closed"),
        Event::LeaseCreated { id, .. } if id.provider == me => {
            if let Err(e) = p.lease_created(id).await {
                warn!("recording a new lease: {e}");
            }
        }
        Event::LeaseClosed { id, reason } if id.provider == me => {
            // The tenant reads this with the logs kept at the close.
            p.leases
                .close_soon(id, format!("closed on chain: {}", reason.as_str()));
        }
        _ => {}
    }
}
