//! [`Backends`]: one [`Backend`] over the Docker backend and, when `[vm]` is enabled, the VM
//! backend. Each service of a group goes to the backend its runtime names (`ManifestService.vm`
//! set → VM); what comes back (statuses, leases, logs, events) is merged by service, and
//! teardown and restart reach both. The rest of the daemon sees one backend and never asks
//! whether a service is a VM.
//!
//! A lease with VMs always has its Docker network, containers or not: the VM backend attaches
//! each VM to it (`kumo_vm::netns`), so the lease firewall contains VMs like containers.
//!
//! The Docker backend answers `LeaseNotFound` for a lease it has nothing of, the VM backend an
//! empty status: both mean "nothing here", and only when neither has anything is the lease
//! unknown.

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use kumo_sdl::manifest::ManifestGroup;
use kumo_types::LeaseId;
use kumo_workload::{
    Backend, DeployOptions, DeploymentStatus, EventStream, Eviction, ExecRequest, ExecSession,
    LogOptions, LogStream, TeardownReport, WorkloadError,
};

/// Routes each service to the Docker or the VM backend.
pub struct Backends {
    docker: Arc<dyn Backend>,
    vm: Option<Arc<dyn Backend>>,
}

impl std::fmt::Debug for Backends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backends")
            .field("vm", &self.vm.is_some())
            .finish_non_exhaustive()
    }
}

/// A group's services split by runtime: (containers, VMs), each keeping the group's name.
pub fn split(group: &ManifestGroup) -> (ManifestGroup, ManifestGroup) {
    let (vms, containers) = group.services.iter().cloned().partition(|s| s.vm.is_some());
    (
        ManifestGroup {
            name: group.name.clone(),
            services: containers,
        },
        ManifestGroup {
            name: group.name.clone(),
            services: vms,
        },
    )
}

/// A lease the backend has nothing of counts as an empty status.
fn or_empty(
    lease: &LeaseId,
    r: Result<DeploymentStatus, WorkloadError>,
) -> Result<DeploymentStatus, WorkloadError> {
    match r {
        Err(WorkloadError::LeaseNotFound { .. }) => Ok(DeploymentStatus {
            lease: *lease,
            services: Vec::new(),
        }),
        other => other,
    }
}

fn merge(lease: &LeaseId, a: DeploymentStatus, b: DeploymentStatus) -> DeploymentStatus {
    let mut services = a.services;
    services.extend(b.services);
    services.sort_by(|x, y| x.name.cmp(&y.name));
    DeploymentStatus {
        lease: *lease,
        services,
    }
}

fn not_found(lease: &LeaseId) -> WorkloadError {
    WorkloadError::LeaseNotFound {
        lease: lease.to_string(),
    }
}

impl Backends {
    /// Docker only (`[vm]` disabled), or Docker and VMs.
    pub fn new(docker: Arc<dyn Backend>, vm: Option<Arc<dyn Backend>>) -> Backends {
        Backends { docker, vm }
    }

    /// The lease's status on each backend (empty where it has nothing).
    async fn both(
        &self,
        lease: &LeaseId,
    ) -> Result<(DeploymentStatus, DeploymentStatus), WorkloadError> {
        let docker = or_empty(lease, self.docker.status(lease).await)?;
        let vm = match &self.vm {
            Some(vm) => or_empty(lease, vm.status(lease).await)?,
            None => DeploymentStatus {
                lease: *lease,
                services: Vec::new(),
            },
        };
        Ok((docker, vm))
    }

    /// The VM backend when `service` is one of the lease's VMs, else the Docker backend.
    async fn owner_of(
        &self,
        lease: &LeaseId,
        service: &str,
    ) -> Result<&Arc<dyn Backend>, WorkloadError> {
        if let Some(vm) = &self.vm
            && or_empty(lease, vm.status(lease).await)?
                .service(service)
                .is_some()
        {
            return Ok(vm);
        }
        Ok(&self.docker)
    }

    async fn apply(
        &self,
        lease: &LeaseId,
        group: &ManifestGroup,
        opts: &DeployOptions,
    ) -> Result<DeploymentStatus, WorkloadError> {
        let (containers, vms) = split(group);
        if let Some(s) = vms.services.first()
            && self.vm.is_none()
        {
            return Err(WorkloadError::Unsupported {
                service: s.name.clone(),
                reason:
                    "it is a VM (runtime: vm) and this provider runs no VMs ([vm] enabled = false)"
                        .into(),
            });
        }
        // A backend with no service of the group left loses what it ran for the lease (a
        // service that changed runtime moves from one to the other). The Docker side of a
        // VM-only group is an empty container group: its containers go, the lease's network
        // stays, because the VMs sit on it (their network namespaces are attached to its
        // bridge, inside the lease firewall).
        let docker = if containers.services.is_empty() && vms.services.is_empty() {
            self.docker.teardown(lease).await?;
            DeploymentStatus {
                lease: *lease,
                services: Vec::new(),
            }
        } else {
            self.docker.deploy(lease, &containers, opts).await?
        };
        let vm = match &self.vm {
            Some(vm) if vms.services.is_empty() => {
                vm.teardown(lease).await?;
                DeploymentStatus {
                    lease: *lease,
                    services: Vec::new(),
                }
            }
            Some(vm) => vm.deploy(lease, &vms, opts).await?,
            None => DeploymentStatus {
                lease: *lease,
                services: Vec::new(),
            },
        };
        Ok(merge(lease, docker, vm))
    }
}

#[async_trait]
impl Backend for Backends {
    async fn deploy(
        &self,
        lease: &LeaseId,
        group: &ManifestGroup,
        opts: &DeployOptions,
    ) -> Result<DeploymentStatus, WorkloadError> {
        self.apply(lease, group, opts).await
    }

    async fn update(
        &self,
        lease: &LeaseId,
        group: &ManifestGroup,
        opts: &DeployOptions,
    ) -> Result<DeploymentStatus, WorkloadError> {
        // Known to either backend is enough: the update may move a service to the other one.
        self.status(lease).await?;
        self.apply(lease, group, opts).await
    }

    async fn teardown(&self, lease: &LeaseId) -> Result<TeardownReport, WorkloadError> {
        // VMs first: their veths hang on the lease network's bridge, which the Docker side
        // removes.
        let mut report = TeardownReport::default();
        if let Some(vm) = &self.vm {
            report = vm.teardown(lease).await?;
        }
        let r = self.docker.teardown(lease).await?;
        report.replicas += r.replicas;
        report.networks += r.networks;
        report.volumes += r.volumes;
        Ok(report)
    }

    async fn status(&self, lease: &LeaseId) -> Result<DeploymentStatus, WorkloadError> {
        let docker = self.docker.status(lease).await;
        let docker_has = !matches!(docker, Err(WorkloadError::LeaseNotFound { .. }));
        let docker = or_empty(lease, docker)?;
        let vm = match &self.vm {
            Some(vm) => or_empty(lease, vm.status(lease).await)?,
            None => DeploymentStatus {
                lease: *lease,
                services: Vec::new(),
            },
        };
        if !docker_has && vm.services.is_empty() {
            return Err(not_found(lease));
        }
        Ok(merge(lease, docker, vm))
    }

    async fn logs(&self, lease: &LeaseId, opts: &LogOptions) -> Result<LogStream, WorkloadError> {
        if let Some(service) = &opts.service {
            return self.owner_of(lease, service).await?.logs(lease, opts).await;
        }
        let (docker, vm) = self.both(lease).await?;
        let mut streams = Vec::new();
        if !docker.services.is_empty() {
            streams.push(self.docker.logs(lease, opts).await?);
        }
        if let Some(backend) = &self.vm
            && !vm.services.is_empty()
        {
            streams.push(backend.logs(lease, opts).await?);
        }
        if streams.is_empty() {
            // Whatever the Docker backend says about a lease it does not have.
            return self.docker.logs(lease, opts).await;
        }
        Ok(futures::stream::select_all(streams).boxed())
    }

    async fn exec(&self, lease: &LeaseId, req: &ExecRequest) -> Result<ExecSession, WorkloadError> {
        self.owner_of(lease, &req.service)
            .await?
            .exec(lease, req)
            .await
    }

    async fn leases(&self) -> Result<Vec<LeaseId>, WorkloadError> {
        let mut all = self.docker.leases().await?;
        if let Some(vm) = &self.vm {
            all.extend(vm.leases().await?);
        }
        all.sort();
        all.dedup();
        Ok(all)
    }

    async fn statuses(&self) -> Result<Vec<DeploymentStatus>, WorkloadError> {
        let mut all: std::collections::BTreeMap<LeaseId, DeploymentStatus> = self
            .docker
            .statuses()
            .await?
            .into_iter()
            .map(|s| (s.lease, s))
            .collect();
        if let Some(vm) = &self.vm {
            for s in vm.statuses().await? {
                let lease = s.lease;
                let merged = match all.remove(&lease) {
                    Some(docker) => merge(&lease, docker, s),
                    None => s,
                };
                all.insert(lease, merged);
            }
        }
        Ok(all.into_values().collect())
    }

    async fn enforce_storage(&self) -> Result<Vec<Eviction>, WorkloadError> {
        // A VM's disk is a qcow2 overlay of a fixed virtual size: nothing to measure there.
        self.docker.enforce_storage().await
    }

    async fn evictions(&self, lease: &LeaseId) -> Result<Vec<Eviction>, WorkloadError> {
        self.docker.evictions(lease).await
    }

    async fn events(&self, lease: &LeaseId) -> Result<EventStream, WorkloadError> {
        let docker = self.docker.events(lease).await?;
        match &self.vm {
            Some(vm) => Ok(futures::stream::select(docker, vm.events(lease).await?).boxed()),
            None => Ok(docker),
        }
    }

    async fn restart(
        &self,
        lease: &LeaseId,
        service: Option<&str>,
    ) -> Result<DeploymentStatus, WorkloadError> {
        if let Some(service) = service {
            self.owner_of(lease, service)
                .await?
                .restart(lease, Some(service))
                .await?;
            return self.status(lease).await;
        }
        let (docker, vm) = self.both(lease).await?;
        if docker.services.is_empty() && vm.services.is_empty() {
            return Err(not_found(lease));
        }
        if !docker.services.is_empty() {
            self.docker.restart(lease, None).await?;
        }
        if let Some(backend) = &self.vm
            && !vm.services.is_empty()
        {
            backend.restart(lease, None).await?;
        }
        self.status(lease).await
    }
}

#[cfg(test)]
mod tests {
    use kumo_sdl::manifest::Manifest;

    use super::*;

    #[test]
    fn a_mixed_group_splits_by_runtime_and_keeps_its_name() {
        let yaml = r#"version: "2.0"
services:
  web:
    image: nginx
    expose:
      - port: 80
        to: [{global: true}]
  box:
    runtime: vm
    vm:
      image:
        url: https://images.example.com/debian-12.qcow2
        sha256: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
      ssh_keys:
        - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMCMUAs1v18OYNlX6m9oRk/LcZmFwmSV7lOq4vegNCW9 t@l
    expose:
      - port: 22
        to: [{global: true}]
profiles:
  compute:
    p:
      resources: {cpu: {units: 1}, memory: {size: 1Gi}, storage: {size: 4Gi}}
  placement:
    dc:
      pricing:
        p: {denom: uakt, amount: 1}
deployment:
  web:
    dc: {profile: p, count: 1}
  box:
    dc: {profile: p, count: 1}
"#;
        let sdl = kumo_sdl::parse(yaml).unwrap();
        let manifest: &Manifest = sdl.manifest();
        let (containers, vms) = split(&manifest.groups[0]);
        assert_eq!(containers.name, "dc");
        assert_eq!(vms.name, "dc");
        let names = |g: &ManifestGroup| {
            g.services
                .iter()
                .map(|s| s.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&containers), ["web"]);
        assert_eq!(names(&vms), ["box"]);
    }
}
