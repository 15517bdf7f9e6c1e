//! Removing a lease: containers first (killed, not stopped: the lease is over), then its
//! network (which the containers held) and its firewall rules, then its volumes (which they
//! mounted): each persistent volume's disk (unmounted, loop device released, image deleted)
//! before the engine's record of it, so an interrupted teardown leaves the record that the next
//! one finds the disk by; then its eviction record. Objects already gone are skipped, so a
//! teardown that was interrupted is finished by running it again.

use std::path::Path;
use std::time::Duration;

use bollard::query_parameters::{
    ListNetworksOptionsBuilder, ListVolumesOptionsBuilder, RemoveContainerOptionsBuilder,
    RemoveVolumeOptionsBuilder,
};
use kumo_types::LeaseId;

use super::{DockerBackend, is_not_found, labels};
use crate::WorkloadError;
use crate::backend::TeardownReport;
use crate::storage::VolumeDisk;

/// How often removing a network or volume is tried while the engine still sees it in use
/// (it releases endpoints and mounts a moment after a container is removed).
const ATTEMPTS: u32 = 20;
const PAUSE: Duration = Duration::from_millis(100);

impl DockerBackend {
    pub(super) async fn teardown_unlocked(
        &self,
        lease: &LeaseId,
    ) -> Result<TeardownReport, WorkloadError> {
        let mut report = TeardownReport::default();
        let filter = labels::filter(&self.config.instance, Some(lease));

        for c in self.containers(lease).await? {
            let Some(id) = c.id else { continue };
            let opts = RemoveContainerOptionsBuilder::new()
                .force(true)
                .v(true)
                .build();
            match self.docker.remove_container(&id, Some(opts)).await {
                Ok(()) => report.replicas += 1,
                Err(e) if is_not_found(&e) => {}
                Err(e) => {
                    return Err(WorkloadError::engine(format!("removing container {id}"), e));
                }
            }
        }

        let networks = self
            .docker
            .list_networks(Some(
                ListNetworksOptionsBuilder::new().filters(&filter).build(),
            ))
            .await
            .map_err(|e| {
                WorkloadError::engine(format!("listing the networks of lease {lease}"), e)
            })?;
        for n in networks {
            let Some(id) = n.id else { continue };
            if retry(
                || self.docker.remove_network(&id),
                &format!("removing network {id}"),
            )
            .await?
            {
                report.networks += 1;
            }
        }

        if report.networks > 0 {
            // The firewall forgets the network's bridge (a later lease may get its name).
            let _one_at_a_time = self.network_lock.lock().await;
            self.sync_firewall_locked().await?;
        }

        let volumes = self
            .docker
            .list_volumes(Some(
                ListVolumesOptionsBuilder::new().filters(&filter).build(),
            ))
            .await
            .map_err(|e| {
                WorkloadError::engine(format!("listing the volumes of lease {lease}"), e)
            })?;
        for v in volumes.volumes.unwrap_or_default() {
            if let Some(image) = v.labels.get(labels::DISK) {
                VolumeDisk::from_image(Path::new(image)).remove().await?;
            }
            let name = v.name;
            let remove = || {
                let opts = RemoveVolumeOptionsBuilder::new().force(false).build();
                self.docker.remove_volume(&name, Some(opts))
            };
            if retry(remove, &format!("removing volume {name}")).await? {
                report.volumes += 1;
            }
        }

        self.forget_evictions(lease)?;

        tracing::info!(%lease, ?report, "lease torn down");
        Ok(report)
    }
}

/// Runs `op` until it succeeds (true), finds the object gone (false), or fails for a reason
/// other than "in use" or keeps failing.
async fn retry<F, Fut>(mut op: F, action: &str) -> Result<bool, WorkloadError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), bollard::errors::Error>>,
{
    let mut attempt = 1;
    loop {
        match op().await {
            Ok(()) => return Ok(true),
            Err(e) if is_not_found(&e) => return Ok(false),
            Err(e) if attempt < ATTEMPTS && in_use(&e) => {
                attempt += 1;
                tokio::time::sleep(PAUSE).await;
            }
            Err(e) => return Err(WorkloadError::engine(action, e)),
        }
    }
}

/// "has active endpoints" (network) or "volume is in use" (volume): 403 or 409 by engine
/// version.
fn in_use(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 403 | 409,
            ..
        }
    )
}
