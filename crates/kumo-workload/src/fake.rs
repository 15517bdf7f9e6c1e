//! [`FakeBackend`]: a [`Backend`] that keeps its "workloads" in memory, for fast tests of what
//! drives a backend (the provider's lease lifecycle) on machines without a container engine.
//! Built with the `fake` feature; nothing in a provider binary uses it.
//!
//! It keeps the contract that matters to its callers: `deploy` converges (replicas that exist
//! are kept, missing ones created, surplus ones removed) and recreates a lease that was torn
//! down; `teardown` is idempotent; `status` of a lease with nothing here is
//! [`WorkloadError::LeaseNotFound`]. A deploy first creates the replicas (no address yet), then,
//! after its delay, starts them: each gets an address of its own in 10.250.0.0/16. Logs are
//! the lines a test wrote with [`FakeBackend::write_log`], served as the Docker backend serves
//! them without `follow` (one replica after the other, `tail` per replica, an unknown service
//! refused) and removed with the lease. What it does not do: exec and events answer
//! [`WorkloadError::Unsupported`].
//!
//! Hooks open the windows a real engine has: [`FakeBackend::with_deploy_delay`] makes every
//! deploy wait before it writes (as a real one waits on the engine), so a test can race a
//! teardown against it; [`FakeBackend::remove_replica`] removes a replica behind the caller's
//! back (as `docker rm` would); [`FakeBackend::stop_replica`] leaves one exited (as a host
//! reboot does).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use kumo_sdl::manifest::ManifestGroup;
use kumo_types::LeaseId;

use crate::WorkloadError;
use crate::backend::{
    Backend, DeployOptions, DeploymentStatus, EventStream, ExecRequest, ExecSession, LogLine,
    LogOptions, LogStream, ReplicaState, ReplicaStatus, ServicePort, ServiceStatus, StdStream,
    TeardownReport,
};

/// An in-memory [`Backend`] (see the module docs).
#[derive(Debug, Default)]
pub struct FakeBackend {
    deploy_delay: Duration,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    leases: BTreeMap<LeaseId, DeploymentStatus>,
    /// What each lease's replicas wrote, in order.
    logs: BTreeMap<LeaseId, Vec<LogLine>>,
    deploys: u64,
    teardowns: u64,
    next_replica: u32,
    next_address: u32,
}

impl FakeBackend {
    /// An empty backend whose deploys finish at once.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every deploy waits this long before it writes anything.
    pub fn with_deploy_delay(mut self, delay: Duration) -> Self {
        self.deploy_delay = delay;
        self
    }

    /// Removes one replica, as if someone had removed its container behind the provider's back.
    /// Returns whether it existed.
    pub fn remove_replica(&self, lease: &LeaseId, service: &str, replica: u32) -> bool {
        let mut inner = self.lock();
        let Some(status) = inner.leases.get_mut(lease) else {
            return false;
        };
        let Some(s) = status.services.iter_mut().find(|s| s.name == service) else {
            return false;
        };
        let before = s.instances.len();
        s.instances.retain(|r| r.replica != replica);
        s.running = s.instances.len() as u32;
        before != s.instances.len()
    }

    /// Stops one replica (its process exited and the engine does not restart it, as after a
    /// host reboot). A deploy starts it again. Returns whether it existed.
    pub fn stop_replica(&self, lease: &LeaseId, service: &str, replica: u32) -> bool {
        let mut inner = self.lock();
        let Some(s) = inner
            .leases
            .get_mut(lease)
            .and_then(|st| st.services.iter_mut().find(|s| s.name == service))
        else {
            return false;
        };
        let Some(r) = s.instances.iter_mut().find(|r| r.replica == replica) else {
            return false;
        };
        r.state = ReplicaState::Exited;
        r.exit_code = Some(0);
        s.running = s
            .instances
            .iter()
            .filter(|r| r.state == ReplicaState::Running)
            .count() as u32;
        true
    }

    /// Appends `line` to what replica `replica` of `service` wrote on stdout, as if the
    /// workload had printed it. Returns whether the lease runs here (nothing is written if not).
    pub fn write_log(&self, lease: &LeaseId, service: &str, replica: u32, line: &str) -> bool {
        let mut inner = self.lock();
        if !inner.leases.contains_key(lease) {
            return false;
        }
        inner.logs.entry(*lease).or_default().push(LogLine {
            service: service.into(),
            replica,
            stream: StdStream::Stdout,
            line: line.into(),
        });
        true
    }

    /// How many deploys (and updates) have written so far.
    pub fn deploys(&self) -> u64 {
        self.lock().deploys
    }

    /// How many teardowns found something to remove.
    pub fn teardowns(&self) -> u64 {
        self.lock().teardowns
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A test that panicked while holding the lock has failed already; go on with its data.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes the lease's replicas for `group`: created and without an address while not
    /// `started` (as `docker create` leaves them), running with an address once `started`.
    fn write(&self, lease: &LeaseId, group: &ManifestGroup, started: bool) -> DeploymentStatus {
        let mut inner = self.lock();
        if started {
            inner.deploys += 1;
        }
        let old = inner.leases.remove(lease);
        let mut services = Vec::new();
        for s in &group.services {
            let mut kept: Vec<ReplicaStatus> = old
                .as_ref()
                .and_then(|o| o.service(&s.name))
                .map(|o| {
                    o.instances
                        .iter()
                        .filter(|r| r.replica < s.count)
                        .cloned()
                        // A deploy starts what stopped, as the Docker backend's converge does.
                        .map(|mut r| {
                            if started {
                                r.state = ReplicaState::Running;
                                r.exit_code = None;
                            }
                            r
                        })
                        .collect()
                })
                .unwrap_or_default();
            for replica in 0..s.count {
                if kept.iter().any(|r| r.replica == replica) {
                    continue;
                }
                inner.next_replica += 1;
                let n = inner.next_replica;
                kept.push(ReplicaStatus {
                    replica,
                    id: format!("fake-{n}"),
                    state: ReplicaState::Created,
                    ip: None,
                    restarts: 0,
                    exit_code: None,
                    oom_killed: false,
                });
            }
            if started {
                for r in &mut kept {
                    r.state = ReplicaState::Running;
                    if r.ip.is_none() {
                        inner.next_address += 1;
                        let n = inner.next_address;
                        r.ip = Some(IpAddr::V4(Ipv4Addr::new(10, 250, (n >> 8) as u8, n as u8)));
                    }
                }
            }
            kept.sort_by_key(|r| r.replica);
            let running = kept
                .iter()
                .filter(|r| r.state == ReplicaState::Running)
                .count() as u32;
            services.push(ServiceStatus {
                name: s.name.clone(),
                image: s.image.clone(),
                replicas: s.count,
                running,
                ports: s
                    .expose
                    .iter()
                    .map(|e| ServicePort {
                        port: e.port as u16,
                        proto: e.proto,
                    })
                    .collect(),
                instances: kept,
            });
        }
        services.sort_by(|a, b| a.name.cmp(&b.name));
        let status = DeploymentStatus {
            lease: *lease,
            services,
        };
        inner.leases.insert(*lease, status.clone());
        status
    }
}

fn unsupported(what: &str) -> WorkloadError {
    WorkloadError::Unsupported {
        service: "*".into(),
        reason: format!("the fake backend has no {what}"),
    }
}

#[async_trait]
impl Backend for FakeBackend {
    async fn deploy(
        &self,
        lease: &LeaseId,
        group: &ManifestGroup,
        _opts: &DeployOptions,
    ) -> Result<DeploymentStatus, WorkloadError> {
        // Created first, started after the delay: a listing in between sees replicas
        // without addresses, as one during a real deploy can.
        self.write(lease, group, false);
        tokio::time::sleep(self.deploy_delay).await;
        Ok(self.write(lease, group, true))
    }

    async fn update(
        &self,
        lease: &LeaseId,
        group: &ManifestGroup,
        opts: &DeployOptions,
    ) -> Result<DeploymentStatus, WorkloadError> {
        self.status(lease).await?;
        self.deploy(lease, group, opts).await
    }

    async fn teardown(&self, lease: &LeaseId) -> Result<TeardownReport, WorkloadError> {
        let mut inner = self.lock();
        // The containers' logs go with them.
        inner.logs.remove(lease);
        let Some(gone) = inner.leases.remove(lease) else {
            return Ok(TeardownReport::default());
        };
        inner.teardowns += 1;
        Ok(TeardownReport {
            replicas: gone.services.iter().map(|s| s.instances.len() as u32).sum(),
            networks: 1,
            volumes: 0,
        })
    }

    async fn status(&self, lease: &LeaseId) -> Result<DeploymentStatus, WorkloadError> {
        self.lock()
            .leases
            .get(lease)
            .cloned()
            .ok_or_else(|| WorkloadError::LeaseNotFound {
                lease: lease.to_string(),
            })
    }

    async fn statuses(&self) -> Result<Vec<DeploymentStatus>, WorkloadError> {
        Ok(self.lock().leases.values().cloned().collect())
    }

    async fn logs(&self, lease: &LeaseId, opts: &LogOptions) -> Result<LogStream, WorkloadError> {
        let inner = self.lock();
        let status = inner
            .leases
            .get(lease)
            .ok_or_else(|| WorkloadError::LeaseNotFound {
                lease: lease.to_string(),
            })?;
        if let Some(wanted) = &opts.service
            && status.service(wanted).is_none()
        {
            let known: Vec<&str> = status.services.iter().map(|s| s.name.as_str()).collect();
            return Err(WorkloadError::UnknownService {
                lease: lease.to_string(),
                service: wanted.clone(),
                known: known.join(", "),
            });
        }
        let mut by_replica: BTreeMap<(String, u32), Vec<LogLine>> = BTreeMap::new();
        for line in inner.logs.get(lease).into_iter().flatten() {
            if opts.service.as_ref().is_none_or(|s| *s == line.service) {
                by_replica
                    .entry((line.service.clone(), line.replica))
                    .or_default()
                    .push(line.clone());
            }
        }
        let mut out = Vec::new();
        for (_, mut lines) in by_replica {
            if let Some(n) = opts.tail {
                let skip = lines
                    .len()
                    .saturating_sub(usize::try_from(n).unwrap_or(usize::MAX));
                lines.drain(..skip);
            }
            out.extend(lines.into_iter().map(Ok));
        }
        Ok(Box::pin(futures::stream::iter(out)))
    }

    async fn exec(
        &self,
        _lease: &LeaseId,
        _req: &ExecRequest,
    ) -> Result<ExecSession, WorkloadError> {
        Err(unsupported("exec"))
    }

    async fn leases(&self) -> Result<Vec<LeaseId>, WorkloadError> {
        Ok(self.lock().leases.keys().copied().collect())
    }

    async fn events(&self, _lease: &LeaseId) -> Result<EventStream, WorkloadError> {
        Err(unsupported("events"))
    }
}
