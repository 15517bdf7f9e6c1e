//! What the API needs from a node: [`NodeBackend`]. The node (`kumo-node`) implements it over
//! consensus; `crate::testing` over a timer that makes blocks.

use std::{future::Future, time::Duration};

use kumo_blockstore::{BlockStore, BlockStoreError, Hash32, TxRecord};
use kumo_chain::{Store, TxRejected};
use kumo_mempool::MempoolError;
use tokio::sync::watch;

use crate::types::MempoolStats;

/// Why a transaction was not admitted.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The mempool refused it (the chain's check, a duplicate, a nonce problem, bounds).
    #[error(transparent)]
    Mempool(#[from] MempoolError<TxRejected>),
    /// The node cannot take transactions now (starting, shutting down, catching up).
    #[error("the node cannot take transactions now: {0}")]
    Unavailable(String),
}

/// How waiting for a transaction ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Waited {
    /// It is in the block at this height.
    Committed(u64, Box<TxRecord>),
    /// It is neither in a block nor in the mempool any more: a block made it invalid (another
    /// transaction used its nonce, or it can no longer pay its fee) and the mempool dropped it.
    Dropped,
    /// Still pending when the time was up (or the node is shutting down).
    TimedOut,
}

/// The node behind the API. Reads come from the block store and the committed state; writes go
/// to the mempool.
///
/// Contract: [`NodeBackend::committed`] announces a height only after its block is in
/// [`NodeBackend::blocks`] and its state is what [`NodeBackend::with_state`] reads, so a reader
/// woken by it finds everything up to that height.
pub trait NodeBackend: Send + Sync + 'static {
    /// The chain id.
    fn chain_id(&self) -> String;

    /// Admits a signed transaction to the mempool; returns its hash.
    fn submit(&self, tx: Vec<u8>) -> Result<Hash32, SubmitError>;

    /// Admits several signed transactions, each on its own (one refused does not stop the
    /// others); one result per transaction, in order. The default submits them one by one; a
    /// node verifies their signatures in one batch.
    fn submit_batch(&self, txs: Vec<Vec<u8>>) -> Vec<Result<Hash32, SubmitError>> {
        txs.into_iter().map(|tx| self.submit(tx)).collect()
    }

    /// Finalized blocks, transactions and events.
    fn blocks(&self) -> &BlockStore;

    /// Runs `f` on the state as of the last committed block. `f` should be quick: the node may
    /// hold a lock meanwhile.
    fn with_state<R>(&self, f: impl FnOnce(&dyn Store) -> R) -> R;

    /// The height of the last committed block (0 before the first), updated after each block.
    fn committed(&self) -> watch::Receiver<u64>;

    /// Size of the mempool.
    fn mempool_stats(&self) -> MempoolStats;

    /// Whether a transaction with this hash is waiting in the mempool.
    fn mempool_contains(&self, hash: &Hash32) -> bool;

    /// Transactions included in blocks since the node started (for `/metrics`).
    fn txs_committed(&self) -> u64;

    /// The node's own measurements (block interval, finality latency, ...), appended to
    /// `GET /metrics` as Prometheus text (each with its `# HELP` and `# TYPE` lines). None by
    /// default.
    fn write_node_metrics(&self, out: &mut String) {
        let _ = out;
    }

    /// Waits until the transaction `hash` is in a committed block, leaves the mempool without
    /// being committed, or `timeout` passes. The mempool admitted it when `since` was the last
    /// committed height (see [`BlockStore::tx_since`]). The default watches
    /// [`NodeBackend::committed`] and looks the hash up after each block; it relies on the node
    /// storing a block before it drops the block's transactions from the mempool.
    fn wait_committed(
        &self,
        hash: Hash32,
        since: u64,
        timeout: Duration,
    ) -> impl Future<Output = Result<Waited, BlockStoreError>> + Send {
        async move {
            let mut heights = self.committed();
            let deadline = tokio::time::Instant::now() + timeout;
            loop {
                // Mark the current height seen before looking, so a block committed between the
                // lookup and the wait still wakes us.
                heights.borrow_and_update();
                if let Some((h, tx)) = self.blocks().tx_since(&hash, since)? {
                    return Ok(Waited::Committed(h, Box::new(tx)));
                }
                if !self.mempool_contains(&hash) {
                    // It may have been committed between the two looks.
                    return Ok(match self.blocks().tx_since(&hash, since)? {
                        Some((h, tx)) => Waited::Committed(h, Box::new(tx)),
                        None => Waited::Dropped,
                    });
                }
                match tokio::time::timeout_at(deadline, heights.changed()).await {
                    Ok(Ok(())) => continue,
                    // Timed out, or the node is shutting down.
                    Ok(Err(_)) | Err(_) => return Ok(Waited::TimedOut),
                }
            }
        }
    }
}
