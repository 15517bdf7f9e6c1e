//! Deploy and update: make the engine hold exactly what a manifest group asks for.
//!
//! The steps, each safe to repeat, so a deploy that was interrupted (provider killed, engine
//! error) is finished by deploying again:
//!
//! 1. check every service (nothing is created for a group that cannot run);
//! 2. get the images (a pull that fails leaves nothing behind on a first deploy);
//! 3. the lease's network, with a subnet of the pool and its firewall rules (`network`);
//! 4. remove replicas the group no longer has, or whose definition changed (their `kumo.spec`
//!    label differs), stopping them gracefully;
//! 5. every persistent volume: its engine record, then its file system (created, or mounted
//!    again after a host reboot);
//! 6. per replica: its container; start it unless it runs;
//! 7. remove persistent volumes that no replica of the group mounts any more.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use bollard::models::{ContainerSummaryStateEnum, VolumeCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListVolumesOptionsBuilder, RemoveContainerOptionsBuilder,
    RemoveVolumeOptionsBuilder, StopContainerOptionsBuilder,
};
use kumo_sdl::manifest::ManifestGroup;
use kumo_types::LeaseId;

use super::labels::{self, Names};
use super::spec::{self, ReplicaPlan, VolumePlan};
use super::{DockerBackend, is_conflict, is_not_found, label};
use crate::WorkloadError;
use crate::backend::DeployOptions;
use crate::storage::VolumeDisk;

impl DockerBackend {
    pub(super) async fn converge(
        &self,
        lease: &LeaseId,
        group: &ManifestGroup,
        opts: &DeployOptions,
    ) -> Result<(), WorkloadError> {
        let instance = &self.config.instance;
        let names = Names::new(instance, lease);
        let limits = self.config.limits();
        let mut seen = HashSet::new();
        for service in &group.services {
            spec::check(service, opts)?;
            if !seen.insert(service.name.as_str()) {
                return Err(WorkloadError::InvalidService {
                    service: service.name.clone(),
                    reason: "the group names this service twice".into(),
                });
            }
        }
        let replicas: u64 = group.services.iter().map(|s| u64::from(s.count)).sum();
        // Containers get the lower half of the subnet (VMs the upper: `network::container_range`).
        let room = self.config.network.pool.containers_per_network();
        if replicas > u64::from(room)
            && let Some(first) = group.services.first()
        {
            return Err(WorkloadError::Unsupported {
                service: first.name.clone(),
                reason: format!(
                    "the group has {replicas} replicas and a lease network here holds at most {room} (the provider's [network] lease_subnet_prefix is /{})",
                    self.config.network.pool.subnet_prefix()
                ),
            });
        }
        let plans: Vec<ReplicaPlan> = group
            .services
            .iter()
            .flat_map(|s| {
                (0..s.count)
                    .map(|r| spec::replica_plan(instance, lease, &names, s, r, opts, &limits))
            })
            .collect();

        let mut images = HashSet::new();
        for service in &group.services {
            if images.insert(service.image.as_str()) {
                self.ensure_image(&service.image, service.credentials.as_ref())
                    .await?;
            }
        }

        self.ensure_network(lease, &names).await?;

        // Which replicas already run the wanted definition, and in which state.
        let wanted: HashMap<(&str, u32), &ReplicaPlan> = plans
            .iter()
            .map(|p| ((p.service.as_str(), p.replica), p))
            .collect();
        let mut kept: HashMap<(&str, u32), (String, Option<ContainerSummaryStateEnum>)> =
            HashMap::new();
        for c in self.containers(lease).await? {
            let id = c.id.clone().unwrap_or_default();
            let service = label(&c.labels, labels::SERVICE);
            let replica = label(&c.labels, labels::REPLICA).parse::<u32>().ok();
            let plan = replica.and_then(|r| wanted.get(&(service, r)));
            let keep = plan.is_some_and(|p| {
                label(&c.labels, labels::SPEC) == p.spec_hash
                    && c.state != Some(ContainerSummaryStateEnum::DEAD)
            });
            match plan {
                Some(p) if keep => {
                    kept.insert((p.service.as_str(), p.replica), (id, c.state));
                }
                _ => self.replace(&id, service).await?,
            }
        }

        for plan in &plans {
            for volume in &plan.volumes {
                self.ensure_volume(lease, plan, volume).await?;
            }
        }

        for plan in &plans {
            match kept.get(&(plan.service.as_str(), plan.replica)) {
                Some((id, state)) => {
                    let stopped = matches!(
                        state,
                        Some(
                            ContainerSummaryStateEnum::CREATED | ContainerSummaryStateEnum::EXITED
                        )
                    );
                    if stopped {
                        self.start(id, &plan.container).await?;
                    }
                }
                None => self.create(lease, plan).await?,
            }
        }

        self.remove_unused_volumes(lease, &plans).await
    }

    /// Whether anything of the lease exists in the engine.
    pub(super) async fn exists(&self, lease: &LeaseId) -> Result<bool, WorkloadError> {
        Ok(!self.containers(lease).await?.is_empty() || self.network_of(lease).await?.is_some())
    }

    /// A persistent volume: the engine's record of it (a local volume that binds the data
    /// directory of its file system), then the file system itself. The record comes first and
    /// names the image in its `kumo.disk` label, so an image never exists without a record
    /// that teardown finds it by.
    async fn ensure_volume(
        &self,
        lease: &LeaseId,
        plan: &ReplicaPlan,
        volume: &VolumePlan,
    ) -> Result<(), WorkloadError> {
        let disk = match self.docker.inspect_volume(&volume.name).await {
            Ok(existing) => match existing.labels.get(labels::DISK) {
                Some(image) => VolumeDisk::from_image(Path::new(image)),
                None => {
                    // Made by a provider without size limits: its data stays, unlimited,
                    // until the lease closes.
                    tracing::warn!(%lease, volume = volume.name, "volume has no size limit (created by an older provider)");
                    return Ok(());
                }
            },
            Err(e) if is_not_found(&e) => {
                let disk = VolumeDisk::new(&self.config.storage_dir, &volume.name);
                let mut volume_labels = labels::lease_labels(&self.config.instance, lease);
                volume_labels.insert(labels::SERVICE.into(), plan.service.clone());
                volume_labels.insert(labels::REPLICA.into(), plan.replica.to_string());
                volume_labels.insert(labels::VOLUME.into(), volume.storage.clone());
                volume_labels.insert(labels::DISK.into(), disk.image.display().to_string());
                let options = HashMap::from([
                    ("type".to_string(), "none".to_string()),
                    ("o".to_string(), "bind".to_string()),
                    ("device".to_string(), disk.data_dir().display().to_string()),
                ]);
                self.docker
                    .create_volume(VolumeCreateRequest {
                        name: Some(volume.name.clone()),
                        driver: Some("local".into()),
                        driver_opts: Some(options),
                        labels: Some(volume_labels),
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| {
                        WorkloadError::engine(format!("creating volume {}", volume.name), e)
                    })?;
                disk
            }
            Err(e) => {
                return Err(WorkloadError::engine(
                    format!("inspecting volume {}", volume.name),
                    e,
                ));
            }
        };
        disk.ensure(volume.bytes).await
    }

    async fn create(&self, lease: &LeaseId, plan: &ReplicaPlan) -> Result<(), WorkloadError> {
        let opts = CreateContainerOptionsBuilder::new()
            .name(&plan.container)
            .build();
        let created = self
            .docker
            .create_container(Some(opts), plan.body.clone())
            .await
            .map_err(|e| {
                WorkloadError::engine(format!("creating container {}", plan.container), e)
            })?;
        tracing::info!(%lease, container = plan.container, "container created");
        self.start(&created.id, &plan.container).await
    }

    async fn start(&self, id: &str, name: &str) -> Result<(), WorkloadError> {
        self.docker
            .start_container(id, None)
            .await
            .map_err(|e| {
                // Docker's words for a GPU device request on an engine without the NVIDIA
                // runtime ("could not select device driver \"nvidia\" ...") say nothing of
                // the fix.
                let action = if e.to_string().contains("could not select device driver") {
                    format!(
                        "starting GPU container {name} (this Docker engine has no NVIDIA container runtime: the provider's operator must install the NVIDIA Container Toolkit)"
                    )
                } else {
                    format!("starting container {name}")
                };
                WorkloadError::engine(action, e)
            })
    }

    /// Stops a replica gracefully and removes it (with its anonymous volumes).
    async fn replace(&self, id: &str, service: &str) -> Result<(), WorkloadError> {
        let timeout = i32::try_from(self.config.stop_timeout_secs).unwrap_or(i32::MAX);
        let stop = StopContainerOptionsBuilder::new().t(timeout).build();
        match self.docker.stop_container(id, Some(stop)).await {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => return Ok(()),
            // Already stopped (304 is not an error in bollard) or on its way out: remove anyway.
            Err(e) => tracing::debug!(id, error = %e, "stopping before removal"),
        }
        let remove = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        match self.docker.remove_container(id, Some(remove)).await {
            Ok(()) => {
                tracing::info!(
                    id,
                    service,
                    "container removed (no longer wanted or changed)"
                );
                Ok(())
            }
            Err(e) if is_not_found(&e) || is_conflict(&e) => Ok(()),
            Err(e) => Err(WorkloadError::engine(format!("removing container {id}"), e)),
        }
    }

    async fn remove_unused_volumes(
        &self,
        lease: &LeaseId,
        plans: &[ReplicaPlan],
    ) -> Result<(), WorkloadError> {
        let used: HashSet<&str> = plans
            .iter()
            .flat_map(|p| p.volumes.iter().map(|v| v.name.as_str()))
            .collect();
        let opts = ListVolumesOptionsBuilder::new()
            .filters(&labels::filter(&self.config.instance, Some(lease)))
            .build();
        let listed = self.docker.list_volumes(Some(opts)).await.map_err(|e| {
            WorkloadError::engine(format!("listing the volumes of lease {lease}"), e)
        })?;
        for volume in listed.volumes.unwrap_or_default() {
            // Anonymous volumes carry the lease's labels too; the engine removes those with
            // their containers. Only named (persistent) ones that no plan mounts go here.
            let persistent = volume.name.starts_with("kumo-");
            if !persistent || used.contains(volume.name.as_str()) {
                continue;
            }
            // The engine refuses to remove a volume a container still mounts: only then is its
            // disk removed too.
            let opts = RemoveVolumeOptionsBuilder::new().force(false).build();
            match self.docker.remove_volume(&volume.name, Some(opts)).await {
                Ok(()) => tracing::info!(%lease, volume = volume.name, "unused volume removed"),
                Err(e) if is_not_found(&e) => {}
                Err(e) => {
                    tracing::warn!(%lease, volume = volume.name, error = %e, "unused volume not removed");
                    continue;
                }
            }
            if let Some(image) = volume.labels.get(labels::DISK)
                && let Err(e) = VolumeDisk::from_image(Path::new(image)).remove().await
            {
                tracing::warn!(%lease, volume = volume.name, error = %e, "unused volume's disk not removed");
            }
        }
        Ok(())
    }
}
