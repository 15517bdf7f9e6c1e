//! How engine objects are tied to leases: their labels and names.
//!
//! Every container, network and volume this backend creates carries
//!
//! ```text
//! kumo.instance = <provider instance>      who created it (two providers can share one engine)
//! kumo.lease    = <owner>/<dseq>/<gseq>/<oseq>
//! kumo.provider = <the lease's provider address>
//! ```
//!
//! and containers and volumes also `kumo.service` and `kumo.replica` (volumes: `kumo.volume`,
//! the storage name in the compute profile, and `kumo.disk`, the image file that holds a
//! persistent volume's data; containers: `kumo.ephemeral`, the disk the replica may use outside
//! its persistent volumes). The labels are the source of truth: status,
//! teardown and restart reconciliation find objects by label, never by name.
//!
//! Names only need to be unique and readable in `docker ps`:
//! `kumo-<key>` (network), `kumo-<key>-<service>-<replica>` (container),
//! `kumo-<key>-<service>-<replica>-<volume>` (volume), where `<key>` is 16 hex digits of
//! SHA-256 over the instance and the lease.

use std::collections::HashMap;

use kumo_types::{Address, LeaseId};
use sha2::{Digest, Sha256};

/// Label: the provider instance that owns the object.
pub const INSTANCE: &str = "kumo.instance";
/// Label: the lease, `owner/dseq/gseq/oseq`.
pub const LEASE: &str = "kumo.lease";
/// Label: the lease's provider address.
pub const PROVIDER: &str = "kumo.provider";
/// Label: the service name (containers and volumes).
pub const SERVICE: &str = "kumo.service";
/// Label: the replica index (containers and volumes).
pub const REPLICA: &str = "kumo.replica";
/// Label: the volume's storage name in the compute profile (volumes).
pub const VOLUME: &str = "kumo.volume";
/// Label: the image file of a persistent volume's file system (volumes; see
/// [`crate::storage::VolumeDisk`]). A volume without it was created by an older provider and
/// has no size limit.
pub const DISK: &str = "kumo.disk";
/// Label: bytes of disk the replica may use in its writable layer and non-persistent volumes
/// (containers); above it the replica is evicted.
pub const EPHEMERAL: &str = "kumo.ephemeral";
/// Label: hash of everything that shapes the container; a different hash means "recreate".
pub const SPEC: &str = "kumo.spec";
/// Label: how many replicas the service has (containers).
pub const COUNT: &str = "kumo.count";
/// Label: the exposed container ports, `80/tcp,53/udp` (containers).
pub const PORTS: &str = "kumo.ports";

/// `owner/dseq/gseq/oseq`: the value of the [`LEASE`] label.
pub fn lease_label(lease: &LeaseId) -> String {
    format!(
        "{}/{}/{}/{}",
        lease.owner, lease.dseq, lease.gseq, lease.oseq
    )
}

/// The lease named by an object's [`LEASE`] and [`PROVIDER`] labels, if they parse.
pub fn parse_lease(labels: &HashMap<String, String>) -> Option<LeaseId> {
    let mut parts = labels.get(LEASE)?.split('/');
    let owner: Address = parts.next()?.parse().ok()?;
    let dseq = parts.next()?.parse().ok()?;
    let gseq = parts.next()?.parse().ok()?;
    let oseq = parts.next()?.parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    let provider: Address = labels.get(PROVIDER)?.parse().ok()?;
    Some(LeaseId {
        owner,
        dseq,
        gseq,
        oseq,
        provider,
    })
}

/// The labels every object of `lease` carries.
pub fn lease_labels(instance: &str, lease: &LeaseId) -> HashMap<String, String> {
    HashMap::from([
        (INSTANCE.to_string(), instance.to_string()),
        (LEASE.to_string(), lease_label(lease)),
        (PROVIDER.to_string(), lease.provider.to_string()),
    ])
}

/// An engine `label` filter that matches the objects of `lease`, or of every lease of the
/// instance when `lease` is `None`.
pub fn filter(instance: &str, lease: Option<&LeaseId>) -> HashMap<String, Vec<String>> {
    let mut labels = vec![format!("{INSTANCE}={instance}")];
    if let Some(lease) = lease {
        labels.push(format!("{LEASE}={}", lease_label(lease)));
        labels.push(format!("{PROVIDER}={}", lease.provider));
    }
    HashMap::from([("label".to_string(), labels)])
}

/// Names of one lease's objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    key: String,
}

impl Names {
    /// The names of `lease`'s objects under `instance`.
    pub fn new(instance: &str, lease: &LeaseId) -> Self {
        let digest = Sha256::digest(format!("{instance}\n{lease}").as_bytes());
        Names {
            key: hex::encode(&digest[..8]),
        }
    }

    /// The lease's network.
    pub fn network(&self) -> String {
        format!("kumo-{}", self.key)
    }

    /// One replica's container.
    pub fn container(&self, service: &str, replica: u32) -> String {
        format!("kumo-{}-{}-{replica}", self.key, safe(service))
    }

    /// One replica's persistent volume named `volume` in the compute profile.
    pub fn volume(&self, service: &str, replica: u32, volume: &str) -> String {
        format!(
            "kumo-{}-{}-{replica}-{}",
            self.key,
            safe(service),
            safe(volume)
        )
    }
}

/// `s` restricted to the characters the engine allows in names (`[a-zA-Z0-9_.-]`); when
/// anything had to be replaced, a short hash of the original keeps distinct names distinct.
fn safe(s: &str) -> String {
    let clean: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    if clean == s && !s.is_empty() {
        clean
    } else {
        let digest = Sha256::digest(s.as_bytes());
        format!("{clean}-{}", hex::encode(&digest[..3]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(dseq: u64) -> LeaseId {
        LeaseId {
            owner: Address([1; 20]),
            dseq,
            gseq: 2,
            oseq: 3,
            provider: Address([9; 20]),
        }
    }

    #[test]
    fn lease_labels_parse_back() {
        let l = lease(42);
        let labels = lease_labels("p1", &l);
        assert_eq!(labels[LEASE], format!("{}/42/2/3", Address([1; 20])));
        assert_eq!(parse_lease(&labels), Some(l));
    }

    #[test]
    fn malformed_lease_labels_are_ignored() {
        let mut labels = lease_labels("p1", &lease(1));
        labels.insert(LEASE.into(), "nobody/1/2/3".into());
        assert_eq!(parse_lease(&labels), None);
        let mut labels = lease_labels("p1", &lease(1));
        labels.insert(LEASE.into(), format!("{}/1/2/3/4", Address([1; 20])));
        assert_eq!(parse_lease(&labels), None);
        let mut labels = lease_labels("p1", &lease(1));
        labels.remove(PROVIDER);
        assert_eq!(parse_lease(&labels), None);
    }

    #[test]
    fn names_differ_per_lease_and_per_instance() {
        let a = Names::new("p1", &lease(1));
        assert_ne!(a.network(), Names::new("p1", &lease(2)).network());
        assert_ne!(a.network(), Names::new("p2", &lease(1)).network());
        assert_eq!(a.network(), Names::new("p1", &lease(1)).network());
        assert!(a.container("web", 0).starts_with(&a.network()));
        assert!(a.container("web", 0).ends_with("-web-0"));
    }

    #[test]
    fn names_keep_only_engine_safe_characters() {
        let n = Names::new("p1", &lease(1));
        let v = n.volume("db", 0, "my data");
        assert!(
            v.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)),
            "{v}"
        );
        assert_ne!(v, n.volume("db", 0, "my-data"));
        assert!(n.volume("db", 0, "data").ends_with("-db-0-data"));
    }
}
