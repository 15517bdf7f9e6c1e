//! A lease's life on this provider. [`LeaseHost`] does the work on the engine, the records
//! and the routes, and only a lease's owner ([`crate::lifecycle`]) calls the methods that
//! change a workload; [`Provider`] adds what needs the chain (the group of a new lease, the
//! manifest's hash, closes, withdrawals, reconciliation) and sends the rest to the owners.
//!
//! ```text
//! LeaseCreated ──▶ record (awaiting manifest), owner started ──put_manifest (hash = chain's,
//!     exactly the group's units) ──▶ the owner: host names + host ports (redb; a VM gets one
//!     per exposed port and replica) ──▶ Backend::deploy (containers on Docker, VMs under
//!     QEMU) ──▶ routes from the replicas' addresses (a VM's HTTP port: 127.0.0.1:<host port>)
//! no manifest within manifest_timeout ──▶ the owner refuses manifests ──▶ CloseLease(manifest_timeout)
//! LeaseClosed (any reason) ──▶ the owner: routes removed, last logs kept (closed_logs),
//!     Backend::teardown, record removed; it ends
//! every 2 s: one engine listing (Backend::statuses), each owner its lease's part: routes set
//!     (replica addresses change on restarts); missing replicas deployed again (converges)
//! every storage_check_interval: Backend::enforce_storage (a replica past its ephemeral storage
//!     is removed; its reason shows in the lease status until the lease closes; the next
//!     refresh deploys it again, empty)
//! every withdraw_period: WithdrawLeases for all leases (200 to a message)
//! at start and every reconcile_interval: reconcile(chain's active leases, redb, Backend::leases())
//! ```

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use kumo_gateway::{
    GatewayError,
    routes::{HttpRoute, LeaseRoutes, PortRoute},
    types::{ForwardedPort, LeaseState, LeaseStatusView, ResourceAmounts, ServiceView, SshAccess},
};
use kumo_sdl::manifest::{Manifest, ManifestGroup, Proto};
use kumo_types::{Address, DeploymentId, GroupSpec, LeaseCloseReason, LeaseId, Msg};
use kumo_vm::Accel;
use kumo_workload::{DeployOptions, DeploymentStatus, HostPort, ReplicaState};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::{
    ProviderError,
    daemon::{LeaseHost, Provider},
    inventory::{DISK, RAM},
    lifecycle::Refreshed,
    manifest_check::check_manifest_group,
    metrics::ManifestOutcome,
    state::{HostName, LeaseRecord, lease_key},
};

/// Now, Unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// What [`Provider::reconcile`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReconcileReport {
    /// Active leases on chain for this provider.
    pub chain_leases: usize,
    /// Workloads removed because no active lease owns them.
    pub orphans_removed: usize,
    /// Records dropped because their lease closed while the daemon was away.
    pub records_dropped: usize,
    /// Leases found on chain that the daemon had no record of.
    pub records_added: usize,
    /// Leases with a manifest deployed again (converged; nothing duplicated).
    pub redeployed: usize,
}

/// The running replicas of a container service that accept connections on every port the
/// ingress proxies to them. A replica whose process has not opened its port yet is not
/// available: the ingress would answer 502, and "running" is meant to say the URLs work.
async fn ready_replicas(st: &kumo_workload::ServiceStatus, ports: &[u16]) -> u32 {
    let mut ready = 0;
    for replica in st
        .instances
        .iter()
        .filter(|i| i.state == kumo_workload::ReplicaState::Running)
    {
        let Some(ip) = replica.ip else { continue };
        let mut all = true;
        for port in ports {
            let connect = tokio::net::TcpStream::connect(SocketAddr::new(ip, *port));
            all &= matches!(
                tokio::time::timeout(Duration::from_millis(300), connect).await,
                Ok(Ok(_))
            );
        }
        ready += u32::from(all);
    }
    ready
}

/// Leases per `WithdrawLeases` message: well under the chain's default
/// `max_leases_per_withdraw` (500) and its transaction size limit (56 bytes per lease).
pub const WITHDRAW_BATCH: usize = 200;

/// The generated host name of a lease's service: a hash, so it says nothing about the tenant.
pub fn generated_host(lease: &LeaseId, service: &str, domain: &str) -> String {
    let mut h = Sha256::new();
    h.update(lease_key(lease).as_bytes());
    h.update([0]);
    h.update(service.as_bytes());
    let digest = h.finalize();
    format!(
        "{}.{}",
        &hex::encode(digest)[..20],
        domain.to_ascii_lowercase()
    )
}

/// What a manifest group would hold, counted like a group spec.
fn manifest_needs(group: &ManifestGroup) -> ResourceAmounts {
    let mut out = ResourceAmounts::default();
    for s in &group.services {
        let n = u64::from(s.count);
        out.cpu_millis += s.resources.cpu.millis * n;
        out.memory_bytes += s.resources.memory.bytes * n;
        for v in &s.resources.storage {
            if v.attribute("class") == Some(RAM) {
                out.memory_bytes += v.bytes * n;
            } else {
                *out.storage_bytes.entry(DISK.to_string()).or_default() += v.bytes * n;
            }
        }
    }
    out
}

impl Provider {
    /// `LeaseCreated` for one of our bids (or an active lease found without a record): its
    /// group read from the chain, the lease recorded and given its owner; the manifest timeout
    /// starts now.
    pub async fn lease_created(&self, id: LeaseId) -> Result<(), ProviderError> {
        if self.state.lease(&id)?.is_none() {
            let dep = self.client.deployment(&id.deployment()).await?.value;
            let spec = dep
                .groups
                .iter()
                .find(|g| g.id.gseq == id.gseq)
                .ok_or_else(|| {
                    ProviderError::Other(format!("lease {} has no group", lease_key(&id)))
                })?
                .spec
                .clone();
            self.host.record_lease(id, spec).await?;
        }
        self.leases.adopt(id);
        Ok(())
    }
}

impl LeaseHost {
    /// Records a new lease of `spec` (awaiting its manifest), with the GPUs its bid reserved
    /// (or free ones, for a lease found at reconciliation). A lease already recorded is left
    /// as it is.
    pub async fn record_lease(&self, id: LeaseId, spec: GroupSpec) -> Result<(), ProviderError> {
        if self.state.lease(&id)?.is_some() {
            return Ok(());
        }
        let mut held = ResourceAmounts::of_group(&spec);
        let key = lease_key(&id);
        let mut gpus = self.state.gpus_of(&key)?;
        let wanted: u64 = spec
            .resources
            .iter()
            .map(|u| u.resources.gpu.units * u64::from(u.count))
            .sum();
        if (gpus.len() as u64) < wanted {
            // A lease without its bid's reservation here (found at reconciliation): take free
            // GPUs now, under the same lock the bid engine reserves with.
            let _one_at_a_time = self.reserve_lock.lock().await;
            let holders = self.state.gpu_holders()?;
            match crate::gpus::select(&self.inventory.devices, &holders, &spec) {
                Ok(found) => {
                    let uuids: Vec<String> = found.iter().map(|d| d.uuid.clone()).collect();
                    self.state.take_gpus(&id, &uuids)?;
                    gpus = uuids;
                }
                Err(e) => warn!(lease = %key, "the lease's GPUs: {e}"),
            }
        }
        held.gpus = crate::gpus::count_by_kind(
            self.inventory
                .devices
                .iter()
                .filter(|d| gpus.contains(&d.uuid)),
        );
        let rec = LeaseRecord {
            id,
            held,
            spec,
            created_ms: now_ms(),
            manifest: None,
            manifest_ms: None,
            hosts: Vec::new(),
            ports: Vec::new(),
        };
        self.state.lease_started(&rec)?;
        info!(lease = %lease_key(&id), "lease created: waiting for the manifest");
        Ok(())
    }

    /// The lease closed on chain (or must go): routes removed, its last logs kept
    /// ([`crate::closed_logs`]: bounded in time, and read before the teardown because the
    /// teardown removes them), workload and record removed. Only the lease's owner calls this
    /// ([`crate::lifecycle`]).
    pub async fn lease_closed(&self, id: &LeaseId, why: &str) {
        self.metrics.lease_closed();
        self.routes.remove_lease(id);
        self.keep_closed_logs(id, why).await;
        match self.backend.teardown(id).await {
            Ok(r) => info!(
                lease = %lease_key(id),
                replicas = r.replicas, networks = r.networks, volumes = r.volumes,
                "lease closed ({why}): workload removed"
            ),
            Err(e) => {
                warn!(lease = %lease_key(id), "teardown failed: {e} (the next reconcile retries)")
            }
        }
        if let Err(e) = self.state.remove_lease(id) {
            warn!(lease = %lease_key(id), "dropping its record: {e}");
        }
    }

    /// The tenant's lease `dseq/gseq/oseq`, with ownership answered as the gateway expects:
    /// a lease that runs here, or one that closed here and whose logs are still kept
    /// ([`crate::closed_logs`]). The same numbers with another owner are `Forbidden`, live or
    /// closed, and nothing is said about that lease.
    pub fn find_lease(
        &self,
        tenant: &Address,
        dseq: u64,
        gseq: u32,
        oseq: u32,
    ) -> Result<LeaseId, GatewayError> {
        let same = |o: &LeaseId| o.dseq == dseq && o.gseq == gseq && o.oseq == oseq;
        let live: Vec<LeaseId> = self
            .state
            .leases()
            .map_err(unavailable)?
            .into_iter()
            .map(|r| r.id)
            .filter(same)
            .collect();
        if let Some(id) = live.iter().find(|id| id.owner == *tenant) {
            return Ok(*id);
        }
        if let Some(closed) = self.kept_closed_lease(&format!("{tenant}/{dseq}/{gseq}/{oseq}"))? {
            return Ok(closed.id);
        }
        let retention = self.config.closed_logs_retention;
        let now = now_ms();
        let closed_elsewhere = self
            .state
            .closed_leases()
            .map_err(unavailable)?
            .iter()
            .any(|c| same(&c.id) && c.is_kept(now, retention));
        if live.is_empty() && !closed_elsewhere {
            Err(GatewayError::NotFound(format!(
                "no lease {dseq}/{gseq}/{oseq} with this provider"
            )))
        } else {
            Err(GatewayError::Forbidden(format!(
                "lease {dseq}/{gseq}/{oseq} belongs to another tenant"
            )))
        }
    }
}

impl Provider {
    /// A tenant's manifest: checked against the chain, then deployed for each of its leases here.
    pub async fn accept_manifest(
        &self,
        tenant: &Address,
        dseq: u64,
        manifest: Manifest,
    ) -> Result<(), GatewayError> {
        let plan = match self.plan_manifest(tenant, dseq, manifest).await {
            Ok(plan) => plan,
            Err(e) => {
                self.metrics.manifest(ManifestOutcome::Refused);
                return Err(e);
            }
        };
        for (rec, group) in plan {
            if let Err(e) = self.leases.manifest(rec.id, group).await {
                self.metrics.manifest(ManifestOutcome::DeployFailed);
                return Err(e);
            }
        }
        self.metrics.manifest(ManifestOutcome::Deployed);
        Ok(())
    }

    /// The checks of a manifest before anything starts: the tenant's leases here, the hash on
    /// chain, each group exactly its lease's units. Returns each lease with its group.
    async fn plan_manifest(
        &self,
        tenant: &Address,
        dseq: u64,
        manifest: Manifest,
    ) -> Result<Vec<(LeaseRecord, ManifestGroup)>, GatewayError> {
        let all = self.state.leases().map_err(unavailable)?;
        let mine: Vec<LeaseRecord> = all
            .iter()
            .filter(|r| r.id.dseq == dseq && r.id.owner == *tenant)
            .cloned()
            .collect();
        if mine.is_empty() {
            // Still NotFound for a deployment whose lease closed here: the tenant retries a
            // manifest on 404 while a new lease of it may be on its way to this provider.
            let retention = self.config.closed_logs_retention;
            let now = now_ms();
            let closed = self.state.closed_leases().map_err(unavailable)?;
            let closed_here = closed
                .iter()
                .find(|c| c.id.dseq == dseq && c.id.owner == *tenant && c.is_kept(now, retention));
            return Err(if all.iter().any(|r| r.id.dseq == dseq) {
                GatewayError::Forbidden(format!("deployment {dseq} belongs to another tenant"))
            } else if let Some(c) = closed_here {
                GatewayError::NotFound(format!(
                    "no open lease of deployment {dseq} with this provider: lease {dseq}/{}/{} closed here at {} ({}); only its logs are kept, until {}",
                    c.id.gseq,
                    c.id.oseq,
                    crate::closed_logs::utc_text(c.closed_ms),
                    c.why,
                    crate::closed_logs::utc_text(c.kept_until(retention))
                ))
            } else {
                GatewayError::NotFound(format!(
                    "no lease of deployment {dseq} with this provider (was the bid accepted?)"
                ))
            });
        }
        let dep = self
            .client
            .deployment(&DeploymentId {
                owner: *tenant,
                dseq,
            })
            .await
            .map_err(|e| GatewayError::Unavailable(format!("reading the deployment: {e}")))?
            .value;
        let got = manifest.hash();
        if got != dep.deployment.hash {
            return Err(GatewayError::Invalid(format!(
                "manifest hash {} differs from the deployment's on-chain hash {}: nothing was started (send the manifest of the SDL you deployed, or update the deployment first)",
                hex::encode(got),
                hex::encode(dep.deployment.hash)
            )));
        }
        // Check every group before anything starts.
        let mut plan = Vec::new();
        for rec in mine {
            let group = manifest
                .groups
                .iter()
                .find(|g| g.name == rec.spec.name)
                .ok_or_else(|| {
                    GatewayError::Invalid(format!(
                        "the manifest has no group {:?}, which the lease is for",
                        rec.spec.name
                    ))
                })?
                .clone();
            check_manifest_group(&group, &rec.spec)
                .map_err(|e| GatewayError::Invalid(format!("{e}: nothing was started")))?;
            manifest_needs(&group).fits_in(&rec.held).map_err(|e| {
                GatewayError::Invalid(format!(
                    "group {:?} asks for more than its lease: {e}",
                    group.name
                ))
            })?;
            plan.push((rec, group));
        }
        Ok(plan)
    }
}

impl LeaseHost {
    /// Deploys an accepted manifest group: host names and ports recorded, the workload
    /// started, routes set. Only the lease's owner calls this ([`crate::lifecycle`]).
    pub async fn deploy_manifest(
        &self,
        id: &LeaseId,
        group: ManifestGroup,
    ) -> Result<(), GatewayError> {
        let domain = &self.config.ingress.domain;
        let mut hosts = Vec::new();
        let mut wanted = Vec::new();
        for s in &group.services {
            // A VM has no lease network and no ingress-side forwarder: QEMU forwards a host
            // port to every port it exposes, one set per replica (HTTP ones included, which the
            // ingress then proxies to on 127.0.0.1).
            if s.vm.is_some() {
                for replica in 0..s.count {
                    for e in &s.expose {
                        let w = (s.name.clone(), replica, e.port as u16, e.proto);
                        if !wanted.contains(&w) {
                            wanted.push(w);
                        }
                    }
                }
            }
            for e in s.expose.iter().filter(|e| e.global) {
                if e.is_ingress() {
                    hosts.push(HostName {
                        service: s.name.clone(),
                        port: e.port as u16,
                        host: generated_host(id, &s.name, domain),
                    });
                    for h in e.hosts.iter().flatten() {
                        hosts.push(HostName {
                            service: s.name.clone(),
                            port: e.port as u16,
                            host: h.to_ascii_lowercase(),
                        });
                    }
                } else if s.vm.is_none() {
                    let w = (s.name.clone(), 0, e.port as u16, e.proto);
                    if !wanted.contains(&w) {
                        wanted.push(w);
                    }
                }
            }
        }
        // An accept host another lease already serves is refused rather than hijacked.
        for h in &hosts {
            let taken = self
                .state
                .leases()
                .map_err(unavailable)?
                .into_iter()
                .any(|r| r.id != *id && r.hosts.iter().any(|o| o.host == h.host));
            if taken {
                return Err(GatewayError::Invalid(format!(
                    "host {} is already served for another lease: pick another accept host",
                    h.host
                )));
            }
        }
        let range = (
            self.config.ingress.port_range_start,
            self.config.ingress.port_range_end,
        );
        let rec = self
            .state
            .accept_manifest(id, group.clone(), hosts, &wanted, range, now_ms())
            .map_err(|e| GatewayError::Unavailable(e.to_string()))?;
        let status = self
            .backend
            .deploy(id, &group, &self.deploy_options(&rec, &group))
            .await?;
        self.set_routes(&rec, &status);
        info!(lease = %lease_key(id), "manifest accepted and deployed");
        Ok(())
    }

    fn deploy_options(&self, rec: &LeaseRecord, group: &ManifestGroup) -> DeployOptions {
        let held = self.state.gpus_of(&lease_key(&rec.id)).unwrap_or_default();
        let devices: Vec<kumo_gpu::GpuDevice> = self
            .inventory
            .devices
            .iter()
            .filter(|d| held.contains(&d.uuid))
            .cloned()
            .collect();
        DeployOptions {
            env: vec![format!("AKASH_INGRESS_HOST={}", self.config.ingress.domain)],
            // VM services take their forwarded ports from here; containers use the ingress's
            // port forwarder instead.
            host_ports: rec
                .ports
                .iter()
                .filter(|p| is_vm(rec, &p.service))
                .map(|p| HostPort {
                    service: p.service.clone(),
                    replica: p.replica,
                    port: p.port,
                    proto: p.proto,
                    host_port: p.external_port,
                })
                .collect(),
            gpus: crate::gpus::replica_assignments(group, &devices),
        }
    }

    /// Points the lease's routes at its replicas' current addresses (a VM's HTTP port: its
    /// forwarded host port on 127.0.0.1). A VM's forwarded ports are QEMU's, so the ingress does
    /// not listen on them.
    pub fn set_routes(&self, rec: &LeaseRecord, status: &DeploymentStatus) {
        let targets = |service: &str, port: u16| -> Vec<SocketAddr> {
            if is_vm(rec, service) {
                return rec
                    .ports
                    .iter()
                    // HTTP is TCP: a UDP port of the same number is not a target.
                    .filter(|p| p.service == service && p.port == port && p.proto == Proto::Tcp)
                    .map(|p| SocketAddr::from(([127, 0, 0, 1], p.external_port)))
                    .collect();
            }
            status
                .service(service)
                .map(|s| {
                    s.instances
                        .iter()
                        .filter(|i| i.state == kumo_workload::ReplicaState::Running)
                        .filter_map(|i| i.ip.map(|ip| SocketAddr::new(ip, port)))
                        .collect()
                })
                .unwrap_or_default()
        };
        let routes = LeaseRoutes {
            http: rec
                .hosts
                .iter()
                .map(|h| HttpRoute {
                    host: h.host.clone(),
                    service: h.service.clone(),
                    targets: targets(&h.service, h.port),
                })
                .collect(),
            ports: rec
                .ports
                .iter()
                .filter(|p| !is_vm(rec, &p.service))
                .map(|p| PortRoute {
                    external_port: p.external_port,
                    proto: p.proto,
                    service: p.service.clone(),
                    targets: targets(&p.service, p.port),
                })
                .collect(),
        };
        self.routes.set_lease(rec.id, routes);
    }

    /// One lease's refresh, with what the engine runs for it (`None`: nothing): routes set
    /// from the replicas' addresses; a lease missing replicas (removed behind the daemon's
    /// back, or evicted) is deployed again, which converges without duplicates; with
    /// `start_stopped`, so is a lease with a replica that stopped and that the engine does not
    /// restart (created, exited or dead: after a host reboot its volumes must be mounted
    /// again). Only the lease's owner calls this ([`crate::lifecycle`]).
    pub async fn refresh_lease(
        &self,
        id: &LeaseId,
        status: Option<DeploymentStatus>,
        start_stopped: bool,
    ) -> Refreshed {
        let rec = match self.state.lease(id) {
            Ok(Some(rec)) => rec,
            Ok(None) => return Refreshed::Waiting,
            Err(e) => {
                warn!(lease = %lease_key(id), "refresh: reading the record: {e}");
                return Refreshed::Failed;
            }
        };
        let Some(group) = &rec.manifest else {
            return Refreshed::Waiting;
        };
        let status = status.unwrap_or_else(|| DeploymentStatus {
            lease: *id,
            services: Vec::new(),
        });
        let missing = group.services.iter().any(|s| {
            status
                .service(&s.name)
                .is_none_or(|st| (st.instances.len() as u32) < s.count)
        });
        let stopped = start_stopped
            && status.services.iter().any(|s| {
                s.instances.iter().any(|r| {
                    matches!(
                        r.state,
                        ReplicaState::Created | ReplicaState::Exited | ReplicaState::Dead
                    )
                })
            });
        if !missing && !stopped {
            self.set_routes(&rec, &status);
            return Refreshed::Routed;
        }
        if missing {
            warn!(lease = %lease_key(id), "replicas missing: deploying again");
        } else {
            info!(lease = %lease_key(id), "replicas stopped: deploying again");
        }
        match self
            .backend
            .deploy(id, group, &self.deploy_options(&rec, group))
            .await
        {
            Ok(status) => {
                self.set_routes(&rec, &status);
                Refreshed::Redeployed
            }
            Err(e) => {
                warn!(lease = %lease_key(id), "deploy: {e}");
                Refreshed::Failed
            }
        }
    }

    /// Measures every replica's ephemeral storage and evicts those above their profile's
    /// size ([`kumo_workload::Backend::enforce_storage`]). The lease stays open: the next
    /// [`Provider::refresh`] deploys the evicted replica again, empty, and the reason shows in
    /// the lease's status until the lease closes.
    pub async fn enforce_storage(&self) {
        match self.backend.enforce_storage().await {
            Ok(evicted) => {
                for e in evicted {
                    warn!(lease = %lease_key(&e.lease), service = e.service, replica = e.replica,
                        used = e.used_bytes, limit = e.limit_bytes, "replica evicted for its ephemeral storage");
                }
            }
            Err(e) => warn!("measuring ephemeral storage: {e}"),
        }
    }
}

impl Provider {
    /// Closes leases whose manifest did not come within `manifest_timeout`.
    pub async fn close_overdue(&self) {
        let Ok(records) = self.state.leases() else {
            return;
        };
        let timeout = self.config.manifest_timeout.as_millis() as u64;
        for rec in records {
            if rec.manifest.is_some() || now_ms().saturating_sub(rec.created_ms) < timeout {
                continue;
            }
            // The owner decides (a manifest may be on its way in its mailbox) and, once it
            // says overdue, refuses manifests until the close.
            if !self.leases.overdue(rec.id, timeout).await {
                continue;
            }
            let msg = Msg::CloseLease {
                id: rec.id,
                reason: LeaseCloseReason::ManifestTimeout,
            };
            match self.signer.submit(vec![msg]).await {
                Ok(_) => {
                    info!(lease = %lease_key(&rec.id), "no manifest in time: lease closed");
                    self.leases.close(rec.id, "manifest timeout").await;
                }
                Err(e) => warn!(lease = %lease_key(&rec.id), "closing for manifest timeout: {e}"),
            }
        }
    }

    /// Withdraws the earnings of every lease: one `WithdrawLeases` message per
    /// [`WITHDRAW_BATCH`] leases, so N leases cost N / 200 transactions, not N blocks.
    pub async fn withdraw_all(&self) {
        let Ok(records) = self.state.leases() else {
            return;
        };
        let ids: Vec<LeaseId> = records.iter().map(|r| r.id).collect();
        for batch in ids.chunks(WITHDRAW_BATCH) {
            match self
                .signer
                .submit(vec![Msg::WithdrawLeases {
                    ids: batch.to_vec(),
                }])
                .await
            {
                Ok(_) => info!(leases = batch.len(), "withdrew earnings"),
                Err(e) => warn!(leases = batch.len(), "withdraw: {e}"),
            }
        }
    }

    /// Makes the chain, the records and the engine agree: nothing runs without an active
    /// lease, every active lease has its record and owner, and every lease with a manifest
    /// runs it. At start and every `reconcile_interval`, as a controller resyncs.
    ///
    /// Its cost grows little with what runs: one query for the chain's active leases, one
    /// listing of the engine's leases and one of their replicas
    /// ([`crate::lifecycle::Lifecycle::refresh`]); only leases that differ are acted on.
    pub async fn reconcile(&self) -> Result<ReconcileReport, ProviderError> {
        let started = std::time::Instant::now();
        let mut report = ReconcileReport::default();
        let active = self.active_leases(None).await?;
        report.chain_leases = active.len();
        let records: BTreeSet<LeaseId> = self.state.leases()?.iter().map(|r| r.id).collect();
        let engine: BTreeSet<LeaseId> = self.backend.leases().await?.into_iter().collect();
        // A lease created on chain after the query above is recorded by its event meanwhile:
        // when some lease was not listed, the chain is asked once more (one query, however
        // many) before anything goes.
        let mut closes = Vec::new();
        let candidates: Vec<LeaseId> = records
            .union(&engine)
            .filter(|id| !active.contains(id))
            .copied()
            .collect();
        let still_active = if candidates.is_empty() {
            BTreeSet::new()
        } else {
            self.active_leases(None).await?
        };
        for id in candidates.iter().filter(|id| !still_active.contains(id)) {
            let why = if records.contains(id) {
                report.records_dropped += 1;
                "closed on chain (found by reconcile)"
            } else {
                report.orphans_removed += 1;
                "no active lease owns it"
            };
            closes.push(self.leases.close(*id, why));
        }
        // Each owner tears its lease down; many closes (a burst the event stream has not
        // delivered yet) run side by side rather than one after another.
        futures::future::join_all(closes).await;
        for id in active.difference(&records) {
            self.lease_created(*id).await?;
            report.records_added += 1;
        }
        for id in &active {
            self.leases.adopt(*id);
        }
        report.redeployed = self.leases.refresh(true).await.redeployed;
        let open: BTreeSet<_> = self
            .client
            .bids(&kumo_client::types::BidsQuery {
                order: None,
                provider: Some(self.address),
                state: Some(kumo_client::types::BidState::Open),
            })
            .await?
            .value
            .into_iter()
            .map(|b| b.id.order())
            .collect();
        for r in self.state.reservations()? {
            if !open.contains(&r.order) {
                self.state.remove_reservation(&r.order)?;
            }
        }
        let pruned = self.state.prune_gpus()?;
        if pruned > 0 {
            info!(gpus = pruned, "GPUs held by nothing any more: freed");
        }
        self.metrics
            .reconciled(started.elapsed(), report.orphans_removed as u64);
        info!(
            ?report,
            took_ms = started.elapsed().as_millis() as u64,
            "reconciled chain, records and engine"
        );
        Ok(report)
    }

    /// The provider's active leases on chain (of one tenant, or all).
    async fn active_leases(
        &self,
        owner: Option<Address>,
    ) -> Result<BTreeSet<LeaseId>, ProviderError> {
        Ok(self
            .client
            .leases(&kumo_client::types::LeasesQuery {
                owner,
                provider: Some(self.address),
                state: Some(kumo_client::types::LeaseState::Active),
            })
            .await?
            .value
            .into_iter()
            .map(|l| l.id)
            .collect())
    }
}

impl LeaseHost {
    /// The tenant-facing status of a lease.
    pub async fn status_view(&self, id: &LeaseId) -> Result<LeaseStatusView, GatewayError> {
        let rec = self
            .state
            .lease(id)
            .map_err(unavailable)?
            .ok_or_else(|| GatewayError::NotFound("no such lease with this provider".into()))?;
        let mut view = LeaseStatusView {
            dseq: id.dseq,
            gseq: id.gseq,
            oseq: id.oseq,
            owner: id.owner,
            provider: id.provider,
            state: LeaseState::AwaitingManifest,
            services: Vec::new(),
            warnings: Vec::new(),
        };
        let Some(group) = &rec.manifest else {
            return Ok(view);
        };
        let status = self.backend.status(id).await?;
        let http_port = self.config.ingress.http_listen.port();
        let mut all_ready = true;
        let mut any = false;
        for s in &group.services {
            let mut http_ports: Vec<u16> = rec
                .hosts
                .iter()
                .filter(|h| h.service == s.name)
                .map(|h| h.port)
                .collect();
            http_ports.dedup();
            let available = match status.service(&s.name) {
                None => 0,
                // QEMU's forwarded port accepts before the guest listens: nothing to probe.
                Some(st) if http_ports.is_empty() || is_vm(&rec, &s.name) => st.running,
                Some(st) => ready_replicas(st, &http_ports).await,
            };
            all_ready &= available >= s.count;
            any |= available > 0;
            let uris = rec
                .hosts
                .iter()
                .filter(|h| h.service == s.name)
                .map(|h| {
                    if http_port == 80 {
                        format!("http://{}/", h.host)
                    } else {
                        format!("http://{}:{http_port}/", h.host)
                    }
                })
                .collect();
            // A VM's HTTP ports are reached through the ingress like a container's.
            let forwarded_ports = rec
                .ports
                .iter()
                .filter(|p| p.service == s.name)
                // Host names serve TCP only: a UDP port of the same number is still listed.
                .filter(|p| {
                    p.proto == Proto::Udp
                        || !rec
                            .hosts
                            .iter()
                            .any(|h| h.service == p.service && h.port == p.port)
                })
                .map(|p| ForwardedPort {
                    port: p.port,
                    host: self.config.ingress.public_host.clone(),
                    external_port: p.external_port,
                    proto: p.proto,
                })
                .collect();
            let ssh = s.vm.as_ref().and_then(|vm| {
                rec.ports
                    .iter()
                    .find(|p| {
                        p.service == s.name
                            && p.replica == 0
                            && p.port == 22
                            && p.proto == Proto::Tcp
                    })
                    .map(|p| SshAccess {
                        user: vm.user.clone(),
                        host: self.config.ingress.public_host.clone(),
                        port: p.external_port,
                    })
            });
            view.services.push(ServiceView {
                name: s.name.clone(),
                replicas: s.count,
                available,
                uris,
                forwarded_ports,
                ssh,
            });
        }
        // Evictions stay in the status until the lease closes: the tenant learns why a
        // replica restarted empty.
        match self.backend.evictions(id).await {
            Ok(evictions) => view.warnings.extend(evictions.into_iter().map(|e| {
                let ago = (now_ms() / 1000).saturating_sub(u64::try_from(e.time).unwrap_or(0));
                format!("{} ({})", e.reason, ago_text(ago))
            })),
            Err(e) => warn!(lease = %lease_key(id), "reading evictions: {e}"),
        }
        if group.services.iter().any(|s| s.vm.is_some())
            && let Some(vm) = &self.vm
            && vm.accel().accel == Accel::Tcg
        {
            view.warnings.push(format!(
                "VMs run without KVM, under TCG software emulation (several times slower): {}",
                vm.accel()
                    .warning
                    .as_deref()
                    .unwrap_or("no reason recorded")
            ));
        }
        let young = rec
            .manifest_ms
            .is_some_and(|t| now_ms().saturating_sub(t) < 60_000);
        view.state = if all_ready {
            LeaseState::Running
        } else if young || !any {
            LeaseState::Starting
        } else {
            LeaseState::Degraded
        };
        Ok(view)
    }
}

/// `42 s ago`, `5 min ago`, `3 h ago`, `2 d ago`.
fn ago_text(secs: u64) -> String {
    match secs {
        0..120 => format!("{secs} s ago"),
        120..7200 => format!("{} min ago", secs / 60),
        7200..172_800 => format!("{} h ago", secs / 3600),
        _ => format!("{} d ago", secs / 86_400),
    }
}

/// Whether the lease's manifest runs `service` as a VM.
fn is_vm(rec: &LeaseRecord, service: &str) -> bool {
    rec.manifest
        .as_ref()
        .and_then(|g| g.services.iter().find(|s| s.name == service))
        .is_some_and(|s| s.vm.is_some())
}

fn unavailable(e: ProviderError) -> GatewayError {
    GatewayError::Unavailable(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::ago_text;

    #[test]
    fn eviction_ages_read_in_the_largest_whole_unit() {
        assert_eq!(ago_text(5), "5 s ago");
        assert_eq!(ago_text(600), "10 min ago");
        assert_eq!(ago_text(3 * 3600), "3 h ago");
        assert_eq!(ago_text(3 * 86_400), "3 d ago");
    }
}
