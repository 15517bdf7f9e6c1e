//! The daemon's own records, in one redb file (`<data_dir>/provider.redb`).
//!
//! Tables (values are JSON, so a record can grow a field without a migration):
//! - `leases`: key `owner/dseq/gseq/oseq` → [`LeaseRecord`] (the group spec, the manifest once
//!   accepted, allocated host names and host ports).
//! - `reservations`: key `owner/dseq/gseq/oseq` of the order → [`Reservation`] (what an open
//!   bid holds).
//! - `meta`: `last_height` → the height of the last processed chain event.
//! - `closed_leases` and `closed_logs`: key `owner/dseq/gseq/oseq` of a closed lease →
//!   [`ClosedLease`] and its last log lines, kept for `closed_logs_retention`
//!   ([`crate::closed_logs`]).
//!
//! Every change is one redb transaction, so a `kill -9` leaves either the old or the new record.
//! Host-port allocation reads every lease's ports and writes the new lease in the same
//! transaction, so two leases never get one port.

use std::path::Path;

use kumo_gateway::types::ResourceAmounts;
use kumo_sdl::manifest::{ManifestGroup, Proto};
use kumo_types::{GroupSpec, LeaseId, OrderId};
use kumo_workload::LogLine;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::{ProviderError, closed_logs::ClosedLease};

const LEASES: TableDefinition<&str, &[u8]> = TableDefinition::new("leases");
const RESERVATIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("reservations");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const GPUS: TableDefinition<&str, &str> = TableDefinition::new("gpus");
const CLOSED_LEASES: TableDefinition<&str, &[u8]> = TableDefinition::new("closed_leases");
const CLOSED_LOGS: TableDefinition<&str, &[u8]> = TableDefinition::new("closed_logs");
const LAST_HEIGHT: &str = "last_height";

/// A lease this provider runs (or waits for the manifest of).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// The lease.
    pub id: LeaseId,
    /// Its group as on chain.
    pub spec: GroupSpec,
    /// What it holds of the inventory.
    pub held: ResourceAmounts,
    /// When the daemon learned of it (Unix ms): the manifest timeout counts from here.
    pub created_ms: u64,
    /// The manifest's group, once accepted.
    pub manifest: Option<ManifestGroup>,
    /// When the manifest was accepted (Unix ms).
    pub manifest_ms: Option<u64>,
    /// HTTP host names of its global port-80 services.
    pub hosts: Vec<HostName>,
    /// Host ports of its other global ports, and of every exposed port of each VM replica.
    pub ports: Vec<PortAllocation>,
}

/// A host name routed to a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostName {
    /// The service.
    pub service: String,
    /// Its container port.
    pub port: u16,
    /// The host name (lower case).
    pub host: String,
}

/// A host port forwarded to a service port: for containers, by the ingress to every replica;
/// for VMs, by QEMU to one replica (each replica of a VM service has its own host ports).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortAllocation {
    /// The service.
    pub service: String,
    /// The replica (VM services; 0 for containers).
    #[serde(default)]
    pub replica: u32,
    /// Its container port.
    pub port: u16,
    /// TCP or UDP.
    pub proto: Proto,
    /// The host port.
    pub external_port: u16,
}

/// What an open bid holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    /// The order bid on.
    pub order: OrderId,
    /// The resources held.
    pub held: ResourceAmounts,
    /// Whether the bid was sent (false while pricing/bidding is in progress).
    pub bid_sent: bool,
}

/// The key of a lease or order: `owner/dseq/gseq/oseq`.
pub fn order_key(o: &OrderId) -> String {
    format!("{}/{}/{}/{}", o.owner, o.dseq, o.gseq, o.oseq)
}

/// The key of a lease.
pub fn lease_key(l: &LeaseId) -> String {
    order_key(&l.order())
}

/// The redb store.
#[derive(Debug)]
pub struct State {
    db: Database,
}

fn db_err(e: impl std::fmt::Display) -> ProviderError {
    ProviderError::State(e.to_string())
}

fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T, ProviderError> {
    serde_json::from_slice(b).map_err(db_err)
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("records serialize")
}

/// Drops every GPU row held by `key`, inside `w`.
fn drop_gpus_of(w: &redb::WriteTransaction, key: &str) -> Result<(), ProviderError> {
    let mut t = w.open_table(GPUS).map_err(db_err)?;
    let mine: Vec<String> = t
        .iter()
        .map_err(db_err)?
        .filter_map(|e| e.ok())
        .filter(|(_, v)| v.value() == key)
        .map(|(k, _)| k.value().to_string())
        .collect();
    for k in mine {
        t.remove(k.as_str()).map_err(db_err)?;
    }
    Ok(())
}

impl State {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<State, ProviderError> {
        let db = Database::create(path)
            .map_err(|e| ProviderError::State(format!("cannot open {}: {e}", path.display())))?;
        let w = db.begin_write().map_err(db_err)?;
        {
            w.open_table(LEASES).map_err(db_err)?;
            w.open_table(RESERVATIONS).map_err(db_err)?;
            w.open_table(META).map_err(db_err)?;
            w.open_table(GPUS).map_err(db_err)?;
            w.open_table(CLOSED_LEASES).map_err(db_err)?;
            w.open_table(CLOSED_LOGS).map_err(db_err)?;
        }
        w.commit().map_err(db_err)?;
        Ok(State { db })
    }

    /// The height of the last processed event.
    pub fn last_height(&self) -> Result<Option<u64>, ProviderError> {
        let r = self.db.begin_read().map_err(db_err)?;
        let t = r.open_table(META).map_err(db_err)?;
        Ok(t.get(LAST_HEIGHT).map_err(db_err)?.map(|v| v.value()))
    }

    /// Records the height of the last processed event.
    pub fn set_last_height(&self, h: u64) -> Result<(), ProviderError> {
        let w = self.db.begin_write().map_err(db_err)?;
        w.open_table(META)
            .map_err(db_err)?
            .insert(LAST_HEIGHT, h)
            .map_err(db_err)?;
        w.commit().map_err(db_err)
    }

    /// Every lease record.
    pub fn leases(&self) -> Result<Vec<LeaseRecord>, ProviderError> {
        self.all(LEASES)
    }

    /// One lease record.
    pub fn lease(&self, id: &LeaseId) -> Result<Option<LeaseRecord>, ProviderError> {
        let r = self.db.begin_read().map_err(db_err)?;
        let t = r.open_table(LEASES).map_err(db_err)?;
        t.get(lease_key(id).as_str())
            .map_err(db_err)?
            .map(|v| decode(v.value()))
            .transpose()
    }

    /// Writes a lease record.
    pub fn put_lease(&self, rec: &LeaseRecord) -> Result<(), ProviderError> {
        let w = self.db.begin_write().map_err(db_err)?;
        w.open_table(LEASES)
            .map_err(db_err)?
            .insert(lease_key(&rec.id).as_str(), encode(rec).as_slice())
            .map_err(db_err)?;
        w.commit().map_err(db_err)
    }

    /// A new lease: its record written and its bid's reservation dropped, together.
    pub fn lease_started(&self, rec: &LeaseRecord) -> Result<(), ProviderError> {
        let w = self.db.begin_write().map_err(db_err)?;
        {
            w.open_table(LEASES)
                .map_err(db_err)?
                .insert(lease_key(&rec.id).as_str(), encode(rec).as_slice())
                .map_err(db_err)?;
            w.open_table(RESERVATIONS)
                .map_err(db_err)?
                .remove(lease_key(&rec.id).as_str())
                .map_err(db_err)?;
        }
        w.commit().map_err(db_err)
    }

    /// Removes a lease record (its host names and ports are free again).
    pub fn remove_lease(&self, id: &LeaseId) -> Result<Option<LeaseRecord>, ProviderError> {
        let w = self.db.begin_write().map_err(db_err)?;
        let old = {
            let mut t = w.open_table(LEASES).map_err(db_err)?;
            let v = t.remove(lease_key(id).as_str()).map_err(db_err)?;
            v.map(|v| decode(v.value())).transpose()?
        };
        drop_gpus_of(&w, &lease_key(id))?;
        w.commit().map_err(db_err)?;
        Ok(old)
    }

    /// Stores an accepted manifest with its host names, allocating host ports for `wanted`
    /// (service, replica, service port, proto) from `range`, skipping ports other leases hold.
    /// Ports the lease already has for the same replica's port are kept.
    pub fn accept_manifest(
        &self,
        id: &LeaseId,
        manifest: ManifestGroup,
        hosts: Vec<HostName>,
        wanted: &[(String, u32, u16, Proto)],
        range: (u16, u16),
        now_ms: u64,
    ) -> Result<LeaseRecord, ProviderError> {
        let w = self.db.begin_write().map_err(db_err)?;
        let rec = {
            let mut t = w.open_table(LEASES).map_err(db_err)?;
            let key = lease_key(id);
            let mut rec: LeaseRecord = match t.get(key.as_str()).map_err(db_err)? {
                Some(v) => decode(v.value())?,
                None => return Err(ProviderError::Other(format!("lease {key} is not here"))),
            };
            let mut used = std::collections::BTreeSet::new();
            for entry in t.iter().map_err(db_err)? {
                let (k, v) = entry.map_err(db_err)?;
                if k.value() == key {
                    continue;
                }
                let other: LeaseRecord = decode(v.value())?;
                used.extend(other.ports.iter().map(|p| p.external_port));
            }
            let mut ports = Vec::new();
            for (service, replica, port, proto) in wanted {
                let kept = rec.ports.iter().find(|p| {
                    &p.service == service
                        && p.replica == *replica
                        && p.port == *port
                        && p.proto == *proto
                });
                let external_port = match kept {
                    Some(p) => p.external_port,
                    None => (range.0..=range.1)
                        .find(|p| !used.contains(p))
                        .ok_or_else(|| {
                            ProviderError::Other(format!(
                                "no free host port in {}-{}: widen ingress.port_range_*",
                                range.0, range.1
                            ))
                        })?,
                };
                used.insert(external_port);
                ports.push(PortAllocation {
                    service: service.clone(),
                    replica: *replica,
                    port: *port,
                    proto: *proto,
                    external_port,
                });
            }
            rec.manifest = Some(manifest);
            rec.manifest_ms = Some(now_ms);
            rec.hosts = hosts;
            rec.ports = ports;
            t.insert(key.as_str(), encode(&rec).as_slice())
                .map_err(db_err)?;
            rec
        };
        w.commit().map_err(db_err)?;
        Ok(rec)
    }

    /// Every reservation.
    pub fn reservations(&self) -> Result<Vec<Reservation>, ProviderError> {
        self.all(RESERVATIONS)
    }

    /// Whether the order has a reservation.
    pub fn has_reservation(&self, order: &OrderId) -> Result<bool, ProviderError> {
        let r = self.db.begin_read().map_err(db_err)?;
        let t = r.open_table(RESERVATIONS).map_err(db_err)?;
        Ok(t.get(order_key(order).as_str()).map_err(db_err)?.is_some())
    }

    /// Drops an order's reservation, and the GPUs it held unless a lease for the order holds
    /// them now; whether there was one.
    pub fn remove_reservation(&self, order: &OrderId) -> Result<bool, ProviderError> {
        let key = order_key(order);
        let w = self.db.begin_write().map_err(db_err)?;
        let had = w
            .open_table(RESERVATIONS)
            .map_err(db_err)?
            .remove(key.as_str())
            .map_err(db_err)?
            .is_some();
        let leased = w
            .open_table(LEASES)
            .map_err(db_err)?
            .get(key.as_str())
            .map_err(db_err)?
            .is_some();
        if !leased {
            drop_gpus_of(&w, &key)?;
        }
        w.commit().map_err(db_err)?;
        Ok(had)
    }

    /// Writes a reservation and takes the GPUs `gpus` (UUIDs) for its order, together; fails,
    /// writing nothing, when another order or lease holds one of them.
    pub fn reserve(&self, r: &Reservation, gpus: &[String]) -> Result<(), ProviderError> {
        let key = order_key(&r.order);
        let w = self.db.begin_write().map_err(db_err)?;
        {
            let mut t = w.open_table(GPUS).map_err(db_err)?;
            for uuid in gpus {
                if let Some(holder) = t.get(uuid.as_str()).map_err(db_err)? {
                    let holder = holder.value().to_string();
                    if holder != key {
                        return Err(ProviderError::Other(format!(
                            "GPU {uuid} is already held by {holder}"
                        )));
                    }
                }
                t.insert(uuid.as_str(), key.as_str()).map_err(db_err)?;
            }
            w.open_table(RESERVATIONS)
                .map_err(db_err)?
                .insert(key.as_str(), encode(r).as_slice())
                .map_err(db_err)?;
        }
        w.commit().map_err(db_err)
    }

    /// Takes GPUs for a lease that has none (one found on chain without a reservation here);
    /// fails, writing nothing, when one is held by another order or lease.
    pub fn take_gpus(&self, lease: &LeaseId, gpus: &[String]) -> Result<(), ProviderError> {
        let key = lease_key(lease);
        let w = self.db.begin_write().map_err(db_err)?;
        {
            let mut t = w.open_table(GPUS).map_err(db_err)?;
            for uuid in gpus {
                if let Some(holder) = t.get(uuid.as_str()).map_err(db_err)?
                    && holder.value() != key
                {
                    return Err(ProviderError::Other(format!(
                        "GPU {uuid} is already held by {}",
                        holder.value()
                    )));
                }
                t.insert(uuid.as_str(), key.as_str()).map_err(db_err)?;
            }
        }
        w.commit().map_err(db_err)
    }

    /// Every held GPU: UUID → the key of the order or lease holding it.
    pub fn gpu_holders(&self) -> Result<std::collections::BTreeMap<String, String>, ProviderError> {
        let r = self.db.begin_read().map_err(db_err)?;
        let t = r.open_table(GPUS).map_err(db_err)?;
        let mut out = std::collections::BTreeMap::new();
        for entry in t.iter().map_err(db_err)? {
            let (k, v) = entry.map_err(db_err)?;
            out.insert(k.value().to_string(), v.value().to_string());
        }
        Ok(out)
    }

    /// The GPUs (UUIDs) a lease or order holds, sorted.
    pub fn gpus_of(&self, key: &str) -> Result<Vec<String>, ProviderError> {
        Ok(self
            .gpu_holders()?
            .into_iter()
            .filter(|(_, k)| k == key)
            .map(|(u, _)| u)
            .collect())
    }

    /// Drops GPU rows whose holder is neither a lease nor a reservation any more (a crash
    /// between two steps); how many.
    pub fn prune_gpus(&self) -> Result<usize, ProviderError> {
        let w = self.db.begin_write().map_err(db_err)?;
        let n = {
            let leases = w.open_table(LEASES).map_err(db_err)?;
            let bids = w.open_table(RESERVATIONS).map_err(db_err)?;
            let mut t = w.open_table(GPUS).map_err(db_err)?;
            let mut stale = Vec::new();
            for entry in t.iter().map_err(db_err)? {
                let (k, v) = entry.map_err(db_err)?;
                let holder = v.value();
                if leases.get(holder).map_err(db_err)?.is_none()
                    && bids.get(holder).map_err(db_err)?.is_none()
                {
                    stale.push(k.value().to_string());
                }
            }
            for k in &stale {
                t.remove(k.as_str()).map_err(db_err)?;
            }
            stale.len()
        };
        w.commit().map_err(db_err)?;
        Ok(n)
    }

    /// Keeps a closed lease's record and its last log lines, together (replacing any).
    pub fn keep_closed(
        &self,
        closed: &ClosedLease,
        lines: &[LogLine],
    ) -> Result<(), ProviderError> {
        let key = lease_key(&closed.id);
        let w = self.db.begin_write().map_err(db_err)?;
        {
            w.open_table(CLOSED_LEASES)
                .map_err(db_err)?
                .insert(key.as_str(), encode(closed).as_slice())
                .map_err(db_err)?;
            w.open_table(CLOSED_LOGS)
                .map_err(db_err)?
                .insert(key.as_str(), encode(&lines).as_slice())
                .map_err(db_err)?;
        }
        w.commit().map_err(db_err)
    }

    /// The closed lease `key` (`owner/dseq/gseq/oseq`), if its logs are kept (expired or not).
    pub fn closed_lease(&self, key: &str) -> Result<Option<ClosedLease>, ProviderError> {
        let r = self.db.begin_read().map_err(db_err)?;
        let t = r.open_table(CLOSED_LEASES).map_err(db_err)?;
        t.get(key)
            .map_err(db_err)?
            .map(|v| decode(v.value()))
            .transpose()
    }

    /// Every closed lease whose logs are kept (the records only, not the lines).
    pub fn closed_leases(&self) -> Result<Vec<ClosedLease>, ProviderError> {
        self.all(CLOSED_LEASES)
    }

    /// The kept log lines of the closed lease `key` (none when nothing is kept).
    pub fn closed_logs(&self, key: &str) -> Result<Vec<LogLine>, ProviderError> {
        let r = self.db.begin_read().map_err(db_err)?;
        let t = r.open_table(CLOSED_LOGS).map_err(db_err)?;
        Ok(t.get(key)
            .map_err(db_err)?
            .map(|v| decode(v.value()))
            .transpose()?
            .unwrap_or_default())
    }

    /// Removes the closed leases whose logs are past `retention` at `now_ms`, in one
    /// transaction; how many. Reads the records only.
    pub fn prune_closed(
        &self,
        now_ms: u64,
        retention: std::time::Duration,
    ) -> Result<usize, ProviderError> {
        let w = self.db.begin_write().map_err(db_err)?;
        let n = {
            let mut leases = w.open_table(CLOSED_LEASES).map_err(db_err)?;
            let mut expired = Vec::new();
            for entry in leases.iter().map_err(db_err)? {
                let (k, v) = entry.map_err(db_err)?;
                let closed: ClosedLease = decode(v.value())?;
                if !closed.is_kept(now_ms, retention) {
                    expired.push(k.value().to_string());
                }
            }
            let mut logs = w.open_table(CLOSED_LOGS).map_err(db_err)?;
            for k in &expired {
                leases.remove(k.as_str()).map_err(db_err)?;
                logs.remove(k.as_str()).map_err(db_err)?;
            }
            expired.len()
        };
        w.commit().map_err(db_err)?;
        Ok(n)
    }

    fn all<T: DeserializeOwned>(
        &self,
        table: TableDefinition<&str, &[u8]>,
    ) -> Result<Vec<T>, ProviderError> {
        let r = self.db.begin_read().map_err(db_err)?;
        let t = r.open_table(table).map_err(db_err)?;
        let mut out = Vec::new();
        for entry in t.iter().map_err(db_err)? {
            let (_, v) = entry.map_err(db_err)?;
            out.push(decode(v.value())?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use kumo_types::{Address, PlacementRequirements};

    use super::*;

    fn lease(n: u8) -> LeaseId {
        LeaseId {
            owner: Address([n; 20]),
            dseq: n as u64,
            gseq: 1,
            oseq: 1,
            provider: Address([9; 20]),
        }
    }

    fn record(id: LeaseId) -> LeaseRecord {
        LeaseRecord {
            id,
            spec: GroupSpec {
                name: "g".into(),
                requirements: PlacementRequirements::default(),
                resources: vec![],
            },
            held: ResourceAmounts::default(),
            created_ms: 1,
            manifest: None,
            manifest_ms: None,
            hosts: vec![],
            ports: vec![],
        }
    }

    fn reservation(n: u8) -> Reservation {
        Reservation {
            order: lease(n).order(),
            held: ResourceAmounts::default(),
            bid_sent: false,
        }
    }

    #[test]
    fn a_gpu_is_held_once_through_bid_lease_and_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.redb");
        let gpus = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        {
            let s = State::open(&path).unwrap();
            s.reserve(&reservation(1), &gpus(&["GPU-a"])).unwrap();
            // Another order cannot take GPU-a, and nothing of that attempt is written.
            let e = s
                .reserve(&reservation(2), &gpus(&["GPU-b", "GPU-a"]))
                .unwrap_err();
            assert!(e.to_string().contains("already held"), "{e}");
            assert!(!s.has_reservation(&lease(2).order()).unwrap());
            assert_eq!(s.gpu_holders().unwrap().len(), 1);
            // The bid wins: the lease keeps the GPU even when the bid's events come after.
            s.lease_started(&record(lease(1))).unwrap();
            s.remove_reservation(&lease(1).order()).unwrap();
            assert_eq!(s.gpus_of(&lease_key(&lease(1))).unwrap(), gpus(&["GPU-a"]));
        }
        let s = State::open(&path).unwrap();
        assert_eq!(s.gpus_of(&lease_key(&lease(1))).unwrap(), gpus(&["GPU-a"]));
        assert!(s.take_gpus(&lease(3), &gpus(&["GPU-a"])).is_err());
        // The lease closes: its GPU is free again.
        s.remove_lease(&lease(1)).unwrap();
        assert!(s.gpu_holders().unwrap().is_empty());
        s.take_gpus(&lease(3), &gpus(&["GPU-a"])).unwrap();
        // A row whose holder has no lease or reservation (lease 3 has no record) is pruned.
        assert_eq!(s.prune_gpus().unwrap(), 1);
    }

    #[test]
    fn host_ports_are_unique_across_leases_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.redb");
        let group = ManifestGroup {
            name: "g".into(),
            services: vec![],
        };
        let want = vec![("db".to_string(), 0, 5432, Proto::Tcp)];
        {
            let s = State::open(&path).unwrap();
            s.put_lease(&record(lease(1))).unwrap();
            s.put_lease(&record(lease(2))).unwrap();
            let a = s
                .accept_manifest(&lease(1), group.clone(), vec![], &want, (30000, 30001), 5)
                .unwrap();
            let b = s
                .accept_manifest(&lease(2), group.clone(), vec![], &want, (30000, 30001), 5)
                .unwrap();
            assert_eq!(a.ports[0].external_port, 30000);
            assert_eq!(b.ports[0].external_port, 30001);
            s.set_last_height(42).unwrap();
        }
        let s = State::open(&path).unwrap();
        assert_eq!(s.last_height().unwrap(), Some(42));
        // The same manifest again keeps the port; a third lease finds the range full.
        let again = s
            .accept_manifest(&lease(1), group.clone(), vec![], &want, (30000, 30001), 6)
            .unwrap();
        assert_eq!(again.ports[0].external_port, 30000);
        s.put_lease(&record(lease(3))).unwrap();
        let full = s.accept_manifest(&lease(3), group, vec![], &want, (30000, 30001), 6);
        assert!(full.unwrap_err().to_string().contains("no free host port"));
        s.remove_lease(&lease(1)).unwrap();
        assert_eq!(s.leases().unwrap().len(), 2);
    }
}
