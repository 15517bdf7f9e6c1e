//! [`RouteTable`]: where the ingress sends traffic. The provider daemon fills it (from each
//! lease's manifest, host names and allocated host ports, and the replicas' addresses) and the
//! ingress proxies read it for every connection, so a change takes effect at once.
//!
//! Every change bumps a generation number that [`RouteTable::changes`] watches: the port
//! forwarder (`ingress::PortForwarder`) opens and closes its listeners when it moves, so the
//! daemon only edits the table.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, RwLock},
};

use kumo_sdl::manifest::Proto;
use kumo_types::LeaseId;
use tokio::sync::watch;

/// An HTTP host name served by the ingress's reverse proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRoute {
    /// The `Host` header it answers (lower case, no port).
    pub host: String,
    /// The service it belongs to.
    pub service: String,
    /// Replica addresses (`ip:container port`); requests are spread over them.
    pub targets: Vec<SocketAddr>,
}

/// A port of the provider's host forwarded to a service port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRoute {
    /// The host port (from the configured range).
    pub external_port: u16,
    /// TCP or UDP.
    pub proto: Proto,
    /// The service it belongs to.
    pub service: String,
    /// Replica addresses (`ip:container port`).
    pub targets: Vec<SocketAddr>,
}

/// Every lease's routes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseRoutes {
    /// Host-name routes.
    pub http: Vec<HttpRoute>,
    /// Forwarded ports.
    pub ports: Vec<PortRoute>,
}

/// The ingress's routing table, shared between the daemon (writer) and the proxies (readers).
#[derive(Debug, Clone)]
pub struct RouteTable {
    inner: Arc<RwLock<BTreeMap<LeaseId, LeaseRoutes>>>,
    generation: Arc<watch::Sender<u64>>,
}

impl Default for RouteTable {
    fn default() -> Self {
        RouteTable {
            inner: Arc::default(),
            generation: Arc::new(watch::Sender::new(0)),
        }
    }
}

impl RouteTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the routes of `lease`. Setting the routes a lease already has changes
    /// nothing and wakes no one: the provider sets every lease's routes every few seconds,
    /// and with hundreds of leases the port forwarder would otherwise re-read the whole
    /// table hundreds of times a refresh.
    pub fn set_lease(&self, lease: LeaseId, routes: LeaseRoutes) {
        let mut table = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if table.get(&lease) == Some(&routes) {
            return;
        }
        table.insert(lease, routes);
        drop(table);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Removes every route of `lease` (new connections to it are refused at once; the port
    /// forwarder also closes the lease's open connections).
    pub fn remove_lease(&self, lease: &LeaseId) {
        let removed = self
            .inner
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(lease);
        if removed.is_some() {
            self.generation.send_modify(|g| *g += 1);
        }
    }

    /// A receiver that sees a new generation number after every change.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Every forwarded port of every lease, sorted by external port.
    pub fn port_routes(&self) -> Vec<PortRoute> {
        let table = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let mut ports: Vec<PortRoute> = table.values().flat_map(|r| r.ports.clone()).collect();
        ports.sort_by_key(|p| p.external_port);
        ports
    }

    /// The targets for an HTTP `Host` (case-insensitive, port ignored).
    pub fn http_targets(&self, host: &str) -> Option<Vec<SocketAddr>> {
        let host = host.split(':').next().unwrap_or(host).to_ascii_lowercase();
        let table = self.inner.read().unwrap_or_else(|e| e.into_inner());
        table
            .values()
            .flat_map(|r| r.http.iter())
            .find(|r| r.host == host)
            .map(|r| r.targets.clone())
    }

    /// The targets for a forwarded host port.
    pub fn port_targets(&self, external_port: u16, proto: Proto) -> Option<Vec<SocketAddr>> {
        let table = self.inner.read().unwrap_or_else(|e| e.into_inner());
        table
            .values()
            .flat_map(|r| r.ports.iter())
            .find(|r| r.external_port == external_port && r.proto == proto)
            .map(|r| r.targets.clone())
    }

    /// The routes of `lease`, if it has any.
    pub fn lease(&self, lease: &LeaseId) -> Option<LeaseRoutes> {
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(lease)
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use kumo_types::Address;

    use super::*;

    fn routes(target: &str) -> LeaseRoutes {
        LeaseRoutes {
            http: vec![HttpRoute {
                host: "a.example".into(),
                service: "web".into(),
                targets: vec![target.parse().unwrap()],
            }],
            ports: Vec::new(),
        }
    }

    #[test]
    fn only_a_change_wakes_the_watchers() {
        let table = RouteTable::new();
        let changes = table.changes();
        let lease = LeaseId {
            owner: Address([1; 20]),
            dseq: 1,
            gseq: 1,
            oseq: 1,
            provider: Address([2; 20]),
        };
        table.set_lease(lease, routes("10.0.0.2:80"));
        assert_eq!(*changes.borrow(), 1);
        table.set_lease(lease, routes("10.0.0.2:80"));
        assert_eq!(*changes.borrow(), 1, "the same routes again change nothing");
        table.set_lease(lease, routes("10.0.0.3:80"));
        assert_eq!(*changes.borrow(), 2);
        assert_eq!(
            table.http_targets("A.example:8080"),
            Some(vec!["10.0.0.3:80".parse().unwrap()])
        );
        table.remove_lease(&lease);
        table.remove_lease(&lease);
        assert_eq!(*changes.borrow(), 3);
    }
}
