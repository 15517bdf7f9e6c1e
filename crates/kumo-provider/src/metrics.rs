//! The provider's Prometheus metrics, served at `GET /metrics` on the gateway (text format
//! 0.0.4; `docs/provider.md` lists every series).
//!
//! Counters are atomics the parts bump as things happen (a bid sent, a manifest refused, a
//! reconcile finished): nothing else is shared, and a scrape never waits on a lock a bid or a
//! deploy holds. Gauges (leases by state, capacity and what is held) are read from the records
//! at scrape time, so they cannot drift from what the daemon believes.

use std::{
    fmt::Write as _,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use kumo_gateway::types::{InventoryView, ResourceAmounts};

/// What happened to an order the bid engine saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BidOutcome {
    /// `CreateBid` committed.
    Sent,
    /// No bid: the order does not fit (attributes, capacity, what is not served, price).
    Declined,
    /// The bid was wanted but reading the chain or sending `CreateBid` failed.
    Failed,
}

/// What happened to a manifest a tenant sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestOutcome {
    /// Checked and deployed.
    Deployed,
    /// Refused before anything started (hash, resources, ownership).
    Refused,
    /// Accepted, then the backend failed to deploy it.
    DeployFailed,
}

/// The counters, one per series and label value.
#[derive(Debug, Default)]
pub struct ProviderMetrics {
    bids_sent: AtomicU64,
    bids_declined: AtomicU64,
    bids_failed: AtomicU64,
    manifests_deployed: AtomicU64,
    manifests_refused: AtomicU64,
    deploy_failures: AtomicU64,
    leases_closed: AtomicU64,
    reconciles: AtomicU64,
    reconcile_micros_last: AtomicU64,
    reconcile_micros_sum: AtomicU64,
    orphans_removed: AtomicU64,
}

/// What a scrape reads from the records besides the counters.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Leases recorded here that have no manifest yet.
    pub leases_awaiting_manifest: u64,
    /// Leases recorded here with a manifest (deployed).
    pub leases_running: u64,
    /// Open bids (reservations).
    pub open_bids: u64,
    /// Total, held and free capacity.
    pub inventory: InventoryView,
}

impl ProviderMetrics {
    /// Counts one order's outcome.
    pub fn bid(&self, outcome: BidOutcome) {
        match outcome {
            BidOutcome::Sent => &self.bids_sent,
            BidOutcome::Declined => &self.bids_declined,
            BidOutcome::Failed => &self.bids_failed,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one manifest's outcome.
    pub fn manifest(&self, outcome: ManifestOutcome) {
        match outcome {
            ManifestOutcome::Deployed => &self.manifests_deployed,
            ManifestOutcome::Refused => &self.manifests_refused,
            ManifestOutcome::DeployFailed => &self.deploy_failures,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a lease torn down here.
    pub fn lease_closed(&self) {
        self.leases_closed.fetch_add(1, Ordering::Relaxed);
    }

    /// Records one reconciliation: how long it took and how many orphans it removed.
    pub fn reconciled(&self, took: Duration, orphans: u64) {
        let micros = took.as_micros().min(u128::from(u64::MAX)) as u64;
        self.reconciles.fetch_add(1, Ordering::Relaxed);
        self.reconcile_micros_last.store(micros, Ordering::Relaxed);
        self.reconcile_micros_sum
            .fetch_add(micros, Ordering::Relaxed);
        self.orphans_removed.fetch_add(orphans, Ordering::Relaxed);
    }

    /// The last reconciliation's duration.
    pub fn last_reconcile(&self) -> Duration {
        Duration::from_micros(self.reconcile_micros_last.load(Ordering::Relaxed))
    }

    /// The Prometheus text of every series.
    pub fn render(&self, s: &Snapshot) -> String {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, samples: &[(&str, f64)]| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, v) in samples {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        };
        family(
            "kumo_provider_bids_total",
            "counter",
            "Orders seen by the bid engine, by outcome.",
            &[
                ("{outcome=\"sent\"}", get(&self.bids_sent) as f64),
                ("{outcome=\"declined\"}", get(&self.bids_declined) as f64),
                ("{outcome=\"failed\"}", get(&self.bids_failed) as f64),
            ],
        );
        family(
            "kumo_provider_manifests_total",
            "counter",
            "Manifests received from tenants, by outcome.",
            &[
                (
                    "{outcome=\"deployed\"}",
                    get(&self.manifests_deployed) as f64,
                ),
                ("{outcome=\"refused\"}", get(&self.manifests_refused) as f64),
                (
                    "{outcome=\"deploy_failed\"}",
                    get(&self.deploy_failures) as f64,
                ),
            ],
        );
        family(
            "kumo_provider_deploy_failures_total",
            "counter",
            "Accepted manifests the workload backend failed to deploy.",
            &[("", get(&self.deploy_failures) as f64)],
        );
        family(
            "kumo_provider_leases_closed_total",
            "counter",
            "Leases torn down on this provider (any reason).",
            &[("", get(&self.leases_closed) as f64)],
        );
        family(
            "kumo_provider_leases",
            "gauge",
            "Leases recorded on this provider, by state.",
            &[
                (
                    "{state=\"awaiting_manifest\"}",
                    s.leases_awaiting_manifest as f64,
                ),
                ("{state=\"running\"}", s.leases_running as f64),
            ],
        );
        family(
            "kumo_provider_open_bids",
            "gauge",
            "Bids sent and not yet won, lost or closed (their resources are held).",
            &[("", s.open_bids as f64)],
        );
        family(
            "kumo_provider_reconciles_total",
            "counter",
            "Reconciliations of chain, records and running workloads.",
            &[("", get(&self.reconciles) as f64)],
        );
        family(
            "kumo_provider_reconcile_duration_seconds",
            "gauge",
            "How long the last reconciliation took.",
            &[("", get(&self.reconcile_micros_last) as f64 / 1e6)],
        );
        family(
            "kumo_provider_reconcile_seconds_total",
            "counter",
            "Time spent reconciling, in total.",
            &[("", get(&self.reconcile_micros_sum) as f64 / 1e6)],
        );
        family(
            "kumo_provider_orphans_removed_total",
            "counter",
            "Workloads reconciliation found running without a lease and removed.",
            &[("", get(&self.orphans_removed) as f64)],
        );
        for (name, help, amounts) in [
            (
                "kumo_provider_capacity",
                "What the provider offers in total (after limits and overcommit), by resource.",
                &s.inventory.total,
            ),
            (
                "kumo_provider_held",
                "What active leases and open bids hold, by resource.",
                &s.inventory.held,
            ),
        ] {
            let samples = resource_samples(amounts);
            let refs: Vec<(&str, f64)> = samples.iter().map(|(l, v)| (l.as_str(), *v)).collect();
            family(name, "gauge", help, &refs);
        }
        out
    }
}

/// `{resource="…"}` samples of an amount: CPU, memory, each storage pool, each GPU kind.
fn resource_samples(a: &ResourceAmounts) -> Vec<(String, f64)> {
    let mut out = vec![
        ("{resource=\"cpu_millis\"}".to_string(), a.cpu_millis as f64),
        (
            "{resource=\"memory_bytes\"}".to_string(),
            a.memory_bytes as f64,
        ),
    ];
    for (class, bytes) in &a.storage_bytes {
        out.push((
            format!("{{resource=\"storage_bytes\",class=\"{}\"}}", escape(class)),
            *bytes as f64,
        ));
    }
    for (kind, n) in &a.gpus {
        out.push((
            format!("{{resource=\"gpus\",model=\"{}\"}}", escape(kind)),
            f64::from(*n),
        ));
    }
    out
}

/// A label value with `\`, `"` and newlines escaped, as the text format wants.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_gauges_render_as_prometheus_text() {
        let m = ProviderMetrics::default();
        m.bid(BidOutcome::Sent);
        m.bid(BidOutcome::Sent);
        m.bid(BidOutcome::Declined);
        m.manifest(ManifestOutcome::DeployFailed);
        m.reconciled(Duration::from_millis(250), 3);
        let mut snap = Snapshot {
            leases_running: 4,
            ..Snapshot::default()
        };
        snap.inventory.total.cpu_millis = 2000;
        snap.inventory
            .total
            .storage_bytes
            .insert("disk".into(), 1 << 30);
        let text = m.render(&snap);
        for line in [
            "kumo_provider_bids_total{outcome=\"sent\"} 2",
            "kumo_provider_bids_total{outcome=\"declined\"} 1",
            "kumo_provider_deploy_failures_total 1",
            "kumo_provider_leases{state=\"running\"} 4",
            "kumo_provider_reconcile_duration_seconds 0.25",
            "kumo_provider_orphans_removed_total 3",
            "kumo_provider_capacity{resource=\"cpu_millis\"} 2000",
            "kumo_provider_capacity{resource=\"storage_bytes\",class=\"disk\"} 1073741824",
            "# TYPE kumo_provider_held gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
        }
    }
}
