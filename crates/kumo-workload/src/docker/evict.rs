//! Ephemeral storage: measured, and a replica above its limit evicted.
//!
//! A container's writable layer cannot be size-limited on overlay2 over ext4 (the engine's
//! `--storage-opt size` needs XFS with project quotas), nor can the anonymous volumes that
//! non-persistent storage is mounted as. So, as kubelet does for ephemeral storage, each pass
//! of [`DockerBackend::enforce_ephemeral_storage`] counts the disk blocks under each replica's
//! overlay upper directory and anonymous volumes ([`disk_usage`], which stops counting once the
//! limit is passed) and compares them with the replica's `kumo.ephemeral` label. A replica
//! above it is removed with its anonymous volumes (freeing the disk at once), and the eviction
//! is recorded with its reason in `<storage_dir>/<network>.evictions.json`, which
//! [`Backend::evictions`](crate::Backend::evictions) reads and teardown deletes. The provider
//! deploys the missing replica again, empty.
//!
//! Between two passes a replica can write past its limit for as long as the interval lasts;
//! persistent volumes and `ram` volumes have hard limits and are not measured here.

use std::path::PathBuf;

use bollard::query_parameters::{
    InspectContainerOptions, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
};
use kumo_types::LeaseId;

use super::labels::{self, Names};
use super::{DockerBackend, is_not_found, label};
use crate::WorkloadError;
use crate::backend::Eviction;
use crate::storage::disk_usage;

/// Evictions kept per lease (the oldest are dropped).
const KEPT: usize = 20;

impl DockerBackend {
    pub(super) async fn enforce_ephemeral_storage(&self) -> Result<Vec<Eviction>, WorkloadError> {
        let mut filters = labels::filter(&self.config.instance, None);
        if let Some(l) = filters.get_mut("label") {
            l.push(labels::EPHEMERAL.to_string());
        }
        let opts = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let containers = self
            .docker
            .list_containers(Some(opts))
            .await
            .map_err(|e| WorkloadError::engine("listing containers", e))?;
        let mut evicted = Vec::new();
        for c in containers {
            let Some(id) = c.id else { continue };
            let Some(lease) = c.labels.as_ref().and_then(labels::parse_lease) else {
                continue;
            };
            let limit: u64 = label(&c.labels, labels::EPHEMERAL).parse().unwrap_or(0);
            if limit == 0 {
                continue; // a profile without ephemeral storage: nothing to hold it to
            }
            let Some(roots) = self.ephemeral_roots(&id).await? else {
                continue;
            };
            let used = tokio::task::spawn_blocking(move || disk_usage(&roots, limit))
                .await
                .map_err(|e| WorkloadError::engine("measuring a writable layer", e))?;
            let used = match used {
                Ok(u) => u,
                Err(e) => {
                    tracing::warn!(container = id, error = %e, "cannot measure the writable layer (the provider must run as root on the engine's host)");
                    continue;
                }
            };
            if used <= limit {
                continue;
            }
            let service = label(&c.labels, labels::SERVICE).to_string();
            let replica = label(&c.labels, labels::REPLICA).parse().unwrap_or(0);
            if let Some(e) = self
                .evict(&lease, &id, service, replica, used, limit)
                .await?
            {
                evicted.push(e);
            }
        }
        Ok(evicted)
    }

    /// The directories a container's ephemeral storage is in: the overlay upper directory and
    /// its anonymous volumes. `None` when the container is gone or its storage driver keeps no
    /// upper directory (then it is not measured).
    async fn ephemeral_roots(&self, id: &str) -> Result<Option<Vec<PathBuf>>, WorkloadError> {
        let inspect = match self
            .docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
        {
            Ok(i) => i,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => {
                return Err(WorkloadError::engine(
                    format!("inspecting container {id}"),
                    e,
                ));
            }
        };
        let Some(upper) = inspect
            .graph_driver
            .as_ref()
            .and_then(|g| g.data.get("UpperDir"))
        else {
            tracing::debug!(
                container = id,
                "no overlay upper directory: writable layer not measured"
            );
            return Ok(None);
        };
        let mut roots = vec![PathBuf::from(upper)];
        for m in inspect.mounts.into_iter().flatten() {
            // Persistent volumes (named `kumo-…`) have their own size limit.
            let anonymous = m.typ.as_deref() == Some("volume")
                && !m.name.as_deref().unwrap_or("kumo-").starts_with("kumo-");
            if let (true, Some(source)) = (anonymous, m.source) {
                roots.push(PathBuf::from(source));
            }
        }
        Ok(Some(roots))
    }

    async fn evict(
        &self,
        lease: &LeaseId,
        id: &str,
        service: String,
        replica: u32,
        used: u64,
        limit: u64,
    ) -> Result<Option<Eviction>, WorkloadError> {
        // Not while a deploy or teardown of the lease runs.
        let _guard = self.lock(lease).await;
        let remove = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        match self.docker.remove_container(id, Some(remove)).await {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(WorkloadError::engine(format!("evicting container {id}"), e)),
        }
        let eviction = Eviction {
            lease: *lease,
            reason: format!(
                "replica {replica} of service {service} was evicted: it wrote {} to its root file system and scratch volumes, more than the {} of ephemeral storage its profile has (use a persistent volume for data that grows); it starts again with empty ephemeral storage",
                human(used),
                human(limit)
            ),
            service,
            replica,
            time: now_secs(),
            used_bytes: used,
            limit_bytes: limit,
        };
        tracing::warn!(%lease, reason = eviction.reason, "evicted");
        self.record_eviction(&eviction)?;
        Ok(Some(eviction))
    }

    fn evictions_file(&self, lease: &LeaseId) -> PathBuf {
        let network = Names::new(&self.config.instance, lease).network();
        self.config
            .storage_dir
            .join(format!("{network}.evictions.json"))
    }

    pub(super) fn recorded_evictions(
        &self,
        lease: &LeaseId,
    ) -> Result<Vec<Eviction>, WorkloadError> {
        let path = self.evictions_file(lease);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(storage_error(&path, e.to_string())),
        };
        serde_json::from_slice(&text).map_err(|e| storage_error(&path, e.to_string()))
    }

    fn record_eviction(&self, eviction: &Eviction) -> Result<(), WorkloadError> {
        let path = self.evictions_file(&eviction.lease);
        let mut all = self.recorded_evictions(&eviction.lease)?;
        all.push(eviction.clone());
        let drop = all.len().saturating_sub(KEPT);
        all.drain(..drop);
        let text =
            serde_json::to_vec_pretty(&all).map_err(|e| storage_error(&path, e.to_string()))?;
        std::fs::create_dir_all(&self.config.storage_dir)
            .map_err(|e| storage_error(&path, e.to_string()))?;
        // Written beside, then renamed: a crash leaves the old record or the new one.
        let staging = path.with_extension("json.new");
        std::fs::write(&staging, text)
            .and_then(|()| std::fs::rename(&staging, &path))
            .map_err(|e| storage_error(&path, e.to_string()))
    }

    pub(super) fn forget_evictions(&self, lease: &LeaseId) -> Result<(), WorkloadError> {
        let path = self.evictions_file(lease);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(storage_error(&path, e.to_string())),
        }
    }
}

fn storage_error(path: &std::path::Path, reason: String) -> WorkloadError {
    WorkloadError::Storage {
        volume: path.display().to_string(),
        reason,
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `412 MiB`, `1.5 GiB`: sizes as the tenant wrote them in the SDL.
pub(crate) fn human(bytes: u64) -> String {
    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;
    if bytes >= GIB {
        format!("{:.1} GiB", bytes as f64 / GIB as f64)
    } else {
        format!("{} MiB", bytes.div_ceil(MIB))
    }
}

#[cfg(test)]
mod tests {
    use super::human;

    #[test]
    fn sizes_read_like_the_sdl() {
        assert_eq!(human(256 << 20), "256 MiB");
        assert_eq!(human((256 << 20) + 1), "257 MiB");
        assert_eq!(human(3 << 29), "1.5 GiB");
    }
}
