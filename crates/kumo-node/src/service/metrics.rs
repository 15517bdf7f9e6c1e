//! The node's own measurements for `GET /metrics`, beside the gauges the API renders itself
//! (height, committed transactions, mempool size):
//!
//! ```text
//! kumo_block_interval_seconds_bucket{le="0.25"} 12     time between consecutive blocks' timestamps
//! kumo_tx_finality_seconds_bucket{le="0.5"} 40         submitted here → committed here
//! kumo_mempool_rechecked_out_total 3                   pending transactions a block made invalid
//! ```

use std::{
    collections::HashMap,
    fmt::Write as _,
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::pool::TxHash;

/// Upper bounds of the histograms' buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0,
];

/// Submissions remembered for the finality histogram. A transaction that never commits is
/// forgotten after [`FORGET_AFTER`] once this many are waiting.
const MAX_TRACKED: usize = 200_000;
const FORGET_AFTER: Duration = Duration::from_secs(120);

/// A Prometheus histogram over [`BUCKETS`].
#[derive(Debug, Default, Clone)]
struct Histogram {
    /// Count per bucket (not cumulative); the last is +Inf.
    buckets: [u64; BUCKETS.len() + 1],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        let i = BUCKETS
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(BUCKETS.len());
        self.buckets[i] += 1;
        self.sum += seconds;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            cumulative += n;
            let le = BUCKETS
                .get(i)
                .map_or_else(|| "+Inf".to_string(), |b| b.to_string());
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_sum {}\n{name}_count {}", self.sum, self.count);
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// When each transaction still pending was submitted to this node.
    submitted: HashMap<TxHash, Instant>,
    /// Timestamp of the last block seen (ms).
    last_block_ms: Option<u64>,
    block_interval: Histogram,
    finality: Histogram,
    txs_committed: u64,
    rechecked_out: u64,
}

/// Block interval, finality latency and counters, updated by the block sink and the API.
#[derive(Debug, Default)]
pub(crate) struct NodeMetrics {
    inner: Mutex<Inner>,
}

impl NodeMetrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A transaction was admitted through this node's API.
    pub(crate) fn submitted(&self, hash: TxHash) {
        let now = Instant::now();
        let mut m = self.lock();
        if m.submitted.len() >= MAX_TRACKED {
            m.submitted
                .retain(|_, at| now.duration_since(*at) < FORGET_AFTER);
        }
        if m.submitted.len() < MAX_TRACKED {
            m.submitted.insert(hash, now);
        }
    }

    /// A block was committed: its timestamp, the hashes it included, and how many pending
    /// transactions the recheck after it dropped.
    pub(crate) fn block(&self, time_ms: u64, txs: &[TxHash], rechecked_out: usize) {
        let now = Instant::now();
        let mut m = self.lock();
        if let Some(last) = m.last_block_ms.replace(time_ms) {
            m.block_interval
                .observe(time_ms.saturating_sub(last) as f64 / 1000.0);
        }
        for h in txs {
            if let Some(at) = m.submitted.remove(h) {
                m.finality.observe(now.duration_since(at).as_secs_f64());
            }
        }
        m.txs_committed += txs.len() as u64;
        m.rechecked_out += rechecked_out as u64;
    }

    /// Transactions committed since the node started.
    pub(crate) fn txs_committed(&self) -> u64 {
        self.lock().txs_committed
    }

    /// Appends the Prometheus text.
    pub(crate) fn render(&self, out: &mut String) {
        let m = self.lock();
        m.block_interval.render(
            out,
            "kumo_block_interval_seconds",
            "Time between consecutive committed blocks (their proposers' timestamps).",
        );
        m.finality.render(
            out,
            "kumo_tx_finality_seconds",
            "Time from a transaction's admission through this node's API to its block being committed here.",
        );
        let _ = writeln!(
            out,
            "# HELP kumo_mempool_rechecked_out_total Pending transactions dropped because a block made them invalid.\n# TYPE kumo_mempool_rechecked_out_total counter\nkumo_mempool_rechecked_out_total {}",
            m.rechecked_out
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_block_intervals_and_finality_of_submitted_txs() {
        let m = NodeMetrics::default();
        m.submitted([1; 32]);
        m.block(1_000, &[], 0);
        m.block(1_250, &[[1; 32], [2; 32]], 1);
        let mut out = String::new();
        m.render(&mut out);
        // One interval of 0.25 s; one tracked tx (the other was submitted elsewhere).
        assert!(out.contains("kumo_block_interval_seconds_bucket{le=\"0.1\"} 0"));
        assert!(out.contains("kumo_block_interval_seconds_bucket{le=\"0.25\"} 1"));
        assert!(out.contains("kumo_block_interval_seconds_sum 0.25"));
        assert!(out.contains("kumo_tx_finality_seconds_count 1"));
        assert!(out.contains("kumo_mempool_rechecked_out_total 1"));
        assert_eq!(m.txs_committed(), 2);
    }
}
