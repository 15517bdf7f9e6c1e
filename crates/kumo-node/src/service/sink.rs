//! [`StoreSink`]: where finalized blocks go in a running node.
//!
//! For each block, in this order (the API's contract, see `kumo_api::NodeBackend`):
//!
//! 1. [`BlockSink::persist`] (before consensus applies the block's state): the block, its
//!    transactions' outcomes and its events go into the block store, one redb transaction. So
//!    the block store is never behind the durable state: after `kill -9` it is at or ahead of
//!    it, and the blocks replayed at startup are found identical and skipped.
//! 2. [`BlockSink::finalized`] (the state now reads the block, and the mempool has dropped
//!    what the block included and rechecked the rest): metrics; then the committed height is
//!    announced, which wakes `?wait=commit` and the event stream.
//!
//! A block the store refuses (a disk failure, or a store that is behind the state: a gap) stops
//! the node: running on would leave the API serving a chain with holes.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use kumo_blockstore::{BlockMeta, BlockStore, ExecutedBlock, Put};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::metrics::NodeMetrics;
use crate::{
    mempool::ChainPool,
    node::{BlockSink, FinalizedBlock},
};

/// What the sink and the API share.
pub(crate) struct Shared {
    /// Finalized blocks, outcomes, events.
    pub(crate) blocks: BlockStore,
    /// Pending transactions.
    pub(crate) pool: Arc<ChainPool>,
    /// The last height whose block is stored and whose state queries read.
    pub(crate) committed: watch::Sender<u64>,
    /// Block interval, finality, counters.
    pub(crate) metrics: NodeMetrics,
    /// The chain's first block height (genesis `initial_height + 1`).
    pub(crate) first_height: u64,
}

/// The running node's [`BlockSink`]: block store, metrics, committed height.
pub(crate) struct StoreSink {
    shared: Arc<Shared>,
    /// Whether a block has been persisted since the process started (the first one is checked
    /// against what the store already holds).
    started: AtomicBool,
}

impl StoreSink {
    pub(crate) fn new(shared: Arc<Shared>) -> StoreSink {
        StoreSink {
            shared,
            started: AtomicBool::new(false),
        }
    }
}

/// The block store's header of a finalized block.
fn meta(block: &FinalizedBlock, first_height: u64) -> BlockMeta {
    BlockMeta {
        height: block.height,
        hash: block.digest,
        // The store's convention: the first block's parent is all zeros (consensus' genesis
        // block is not a chain block).
        parent: if block.height == first_height {
            [0; 32]
        } else {
            block.parent
        },
        time_ms: block.timestamp_ms,
        proposer: block.proposer,
        state_root: block.state_root,
    }
}

impl BlockSink for StoreSink {
    fn persist(&self, block: &FinalizedBlock) {
        let blocks = &self.shared.blocks;
        if !self.started.swap(true, Ordering::Relaxed) {
            match blocks.latest_height() {
                Ok(None) if block.height != self.shared.first_height => warn!(
                    height = block.height,
                    "the block store is empty but the state is past genesis: blocks before {} \
                     will not be served (was data/blocks.redb deleted?)",
                    block.height
                ),
                Ok(Some(last)) if last >= block.height => info!(
                    stored = last,
                    replaying = block.height,
                    "the block store is ahead of the durable state after a restart: replayed \
                     blocks are checked against it"
                ),
                _ => {}
            }
        }
        let meta = meta(block, self.shared.first_height);
        let executed = ExecutedBlock {
            meta: &meta,
            txs: &block.txs,
            tx_hashes: block.tx_hashes(),
            results: block.results(),
            end_events: block.end_events(),
        };
        match blocks.put_executed(&executed) {
            Ok(Put::Written) => debug!(height = block.height, "stored block"),
            Ok(Put::AlreadyStored) => debug!(height = block.height, "block already stored"),
            // Going on would let the state run ahead of what the API can serve: stop the node.
            Err(e) => panic!(
                "cannot store finalized block {}: {e}. The node stops so that its block store \
                 and state stay in agreement",
                block.height
            ),
        }
    }

    fn finalized(&self, block: &FinalizedBlock, dropped: usize) {
        let hashes = block.tx_hashes();
        self.shared
            .metrics
            .block(block.timestamp_ms, hashes, dropped);
        self.shared.committed.send_if_modified(|h| {
            let newer = block.height > *h;
            if newer {
                *h = block.height;
            }
            newer
        });
    }
}
