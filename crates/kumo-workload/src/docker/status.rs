//! Reading the engine back: a lease's status, the leases this provider has, and the replicas'
//! events.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use bollard::models::{ContainerStateStatusEnum, ContainerSummaryStateEnum, EventMessage};
use bollard::query_parameters::{
    EventsOptions, ListContainersOptionsBuilder, ListNetworksOptionsBuilder,
    ListVolumesOptionsBuilder,
};
use futures::StreamExt;
use kumo_types::LeaseId;

use super::labels::{self, Names};
use super::spec::parse_ports_label;
use super::{DockerBackend, is_not_found, label};
use crate::WorkloadError;
use crate::backend::{
    DeploymentStatus, EventKind, EventStream, ReplicaState, ReplicaStatus, ServiceStatus,
    WorkloadEvent,
};

impl DockerBackend {
    pub(super) async fn status_unlocked(
        &self,
        lease: &LeaseId,
    ) -> Result<DeploymentStatus, WorkloadError> {
        let containers = self.containers(lease).await?;
        if containers.is_empty() && !self.exists(lease).await? {
            return Err(WorkloadError::LeaseNotFound {
                lease: lease.to_string(),
            });
        }
        let network = Names::new(&self.config.instance, lease).network();
        let mut services: BTreeMap<String, ServiceStatus> = BTreeMap::new();
        for summary in containers {
            let Some(id) = summary.id else { continue };
            let inspect = match self.docker.inspect_container(&id, None).await {
                Ok(i) => i,
                Err(e) if is_not_found(&e) => continue, // removed meanwhile
                Err(e) => {
                    return Err(WorkloadError::engine(
                        format!("inspecting container {id}"),
                        e,
                    ));
                }
            };
            let labels = &summary.labels;
            let name = label(labels, labels::SERVICE).to_string();
            let service = services
                .entry(name.clone())
                .or_insert_with(|| ServiceStatus {
                    name,
                    // As the manifest names it (the listing shows an image id once the tag moved).
                    image: inspect
                        .config
                        .as_ref()
                        .and_then(|c| c.image.clone())
                        .unwrap_or_default(),
                    replicas: label(labels, labels::COUNT).parse().unwrap_or(0),
                    running: 0,
                    ports: parse_ports_label(label(labels, labels::PORTS)),
                    instances: Vec::new(),
                });
            let state = inspect.state.unwrap_or_default();
            let replica_state = match state.status {
                Some(ContainerStateStatusEnum::CREATED) => ReplicaState::Created,
                Some(ContainerStateStatusEnum::RUNNING) => ReplicaState::Running,
                Some(ContainerStateStatusEnum::RESTARTING) => ReplicaState::Restarting,
                Some(ContainerStateStatusEnum::PAUSED) => ReplicaState::Paused,
                Some(ContainerStateStatusEnum::EXITED) => ReplicaState::Exited,
                Some(ContainerStateStatusEnum::REMOVING) => ReplicaState::Removing,
                Some(ContainerStateStatusEnum::DEAD) => ReplicaState::Dead,
                _ => ReplicaState::Unknown,
            };
            if replica_state == ReplicaState::Running {
                service.running += 1;
            }
            let ip = inspect
                .network_settings
                .and_then(|n| n.networks)
                .and_then(|mut n| n.remove(&network))
                .and_then(|e| e.ip_address)
                .and_then(|ip| ip.parse::<IpAddr>().ok());
            // The engine writes the zero time ("0001-01-01…") until the container first exits,
            // and resets the exit code when it starts again.
            let exited = replica_state != ReplicaState::Running
                && state
                    .finished_at
                    .as_deref()
                    .is_some_and(|t| !t.is_empty() && !t.starts_with("0001"));
            service.instances.push(ReplicaStatus {
                replica: label(labels, labels::REPLICA).parse().unwrap_or(0),
                id,
                state: replica_state,
                ip,
                restarts: u32::try_from(inspect.restart_count.unwrap_or(0)).unwrap_or(u32::MAX),
                exit_code: exited.then_some(state.exit_code).flatten(),
                oom_killed: state.oom_killed.unwrap_or(false),
            });
        }
        let services = services
            .into_values()
            .map(|mut s| {
                s.instances.sort_by_key(|r| r.replica);
                s
            })
            .collect();
        Ok(DeploymentStatus {
            lease: *lease,
            services,
        })
    }

    /// Every lease's replicas from one container listing (no inspection: see
    /// [`crate::Backend::statuses`] for what that leaves out).
    pub(super) async fn all_statuses(&self) -> Result<Vec<DeploymentStatus>, WorkloadError> {
        let containers = self
            .docker
            .list_containers(Some(
                ListContainersOptionsBuilder::new()
                    .all(true)
                    .filters(&labels::filter(&self.config.instance, None))
                    .build(),
            ))
            .await
            .map_err(|e| WorkloadError::engine("listing containers", e))?;
        let mut leases: BTreeMap<LeaseId, BTreeMap<String, ServiceStatus>> = BTreeMap::new();
        for summary in containers {
            let Some(lease) = summary.labels.as_ref().and_then(labels::parse_lease) else {
                continue;
            };
            let Some(id) = summary.id else { continue };
            let labels = &summary.labels;
            let name = label(labels, labels::SERVICE).to_string();
            let service = leases
                .entry(lease)
                .or_default()
                .entry(name.clone())
                .or_insert_with(|| ServiceStatus {
                    name,
                    image: summary.image.clone().unwrap_or_default(),
                    replicas: label(labels, labels::COUNT).parse().unwrap_or(0),
                    running: 0,
                    ports: parse_ports_label(label(labels, labels::PORTS)),
                    instances: Vec::new(),
                });
            let state = match summary.state {
                Some(ContainerSummaryStateEnum::CREATED) => ReplicaState::Created,
                Some(ContainerSummaryStateEnum::RUNNING) => ReplicaState::Running,
                Some(ContainerSummaryStateEnum::RESTARTING) => ReplicaState::Restarting,
                Some(ContainerSummaryStateEnum::PAUSED) => ReplicaState::Paused,
                Some(ContainerSummaryStateEnum::EXITED) => ReplicaState::Exited,
                Some(ContainerSummaryStateEnum::REMOVING) => ReplicaState::Removing,
                Some(ContainerSummaryStateEnum::DEAD) => ReplicaState::Dead,
                _ => ReplicaState::Unknown,
            };
            if state == ReplicaState::Running {
                service.running += 1;
            }
            let network = Names::new(&self.config.instance, &lease).network();
            let ip = summary
                .network_settings
                .and_then(|n| n.networks)
                .and_then(|mut n| n.remove(&network))
                .and_then(|e| e.ip_address)
                .and_then(|ip| ip.parse::<IpAddr>().ok());
            service.instances.push(ReplicaStatus {
                replica: label(labels, labels::REPLICA).parse().unwrap_or(0),
                id,
                state,
                ip,
                restarts: 0,
                exit_code: None,
                oom_killed: false,
            });
        }
        Ok(leases
            .into_iter()
            .map(|(lease, services)| DeploymentStatus {
                lease,
                services: services
                    .into_values()
                    .map(|mut s| {
                        s.instances.sort_by_key(|r| r.replica);
                        s
                    })
                    .collect(),
            })
            .collect())
    }

    /// Every lease with a container, network or volume of this instance (a teardown that was
    /// interrupted leaves only some of them).
    pub(super) async fn all_leases(&self) -> Result<Vec<LeaseId>, WorkloadError> {
        let filter = labels::filter(&self.config.instance, None);
        let mut leases = BTreeSet::new();
        let containers = self
            .docker
            .list_containers(Some(
                ListContainersOptionsBuilder::new()
                    .all(true)
                    .filters(&filter)
                    .build(),
            ))
            .await
            .map_err(|e| WorkloadError::engine("listing containers", e))?;
        leases.extend(
            containers
                .into_iter()
                .filter_map(|c| labels::parse_lease(c.labels.as_ref()?)),
        );
        let networks = self
            .docker
            .list_networks(Some(
                ListNetworksOptionsBuilder::new().filters(&filter).build(),
            ))
            .await
            .map_err(|e| WorkloadError::engine("listing networks", e))?;
        leases.extend(
            networks
                .into_iter()
                .filter_map(|n| labels::parse_lease(n.labels.as_ref()?)),
        );
        let volumes = self
            .docker
            .list_volumes(Some(
                ListVolumesOptionsBuilder::new().filters(&filter).build(),
            ))
            .await
            .map_err(|e| WorkloadError::engine("listing volumes", e))?;
        leases.extend(
            volumes
                .volumes
                .unwrap_or_default()
                .into_iter()
                .filter_map(|v| labels::parse_lease(&v.labels)),
        );
        Ok(leases.into_iter().collect())
    }

    pub(super) fn event_stream(&self, lease: &LeaseId) -> EventStream {
        let mut filters = labels::filter(&self.config.instance, Some(lease));
        filters.insert("type".into(), vec!["container".into()]);
        filters.insert(
            "event".into(),
            [
                "create", "start", "die", "oom", "kill", "stop", "restart", "destroy",
            ]
            .map(String::from)
            .to_vec(),
        );
        let opts = EventsOptions {
            filters: Some(filters),
            ..Default::default()
        };
        self.docker
            .events(Some(opts))
            .filter_map(|event| async move {
                match event {
                    Ok(e) => workload_event(e).map(Ok),
                    Err(e) => Some(Err(WorkloadError::engine("reading engine events", e))),
                }
            })
            .boxed()
    }
}

fn workload_event(e: EventMessage) -> Option<WorkloadEvent> {
    let attributes = e.actor?.attributes.unwrap_or_default();
    let kind = match e.action.as_deref()? {
        "create" => EventKind::Created,
        "start" => EventKind::Started,
        "die" => EventKind::Exited {
            exit_code: attributes.get("exitCode").and_then(|c| c.parse().ok()),
        },
        "oom" => EventKind::OutOfMemory,
        "kill" => EventKind::Killed,
        "stop" => EventKind::Stopped,
        "restart" => EventKind::Restarted,
        "destroy" => EventKind::Removed,
        _ => return None,
    };
    Some(WorkloadEvent {
        service: attributes.get(labels::SERVICE)?.clone(),
        replica: attributes.get(labels::REPLICA)?.parse().ok()?,
        kind,
        time: e.time.unwrap_or(0),
    })
}
