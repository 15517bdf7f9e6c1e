//! [`NodeService`]: the API's [`NodeBackend`] over a running node. Submissions go through
//! [`Node::submit`] (check, mempool, gossip); reads come from the block store and the
//! finalized state.

use std::sync::Arc;

use kumo_api::{NodeBackend, SubmitError as ApiSubmitError, types::MempoolStats};
use kumo_blockstore::{BlockStore, Hash32};
use kumo_chain::Store;
use kumo_mempool::MempoolError;
use tokio::sync::watch;

use super::sink::Shared;
use crate::{
    node::{Node, SubmitError},
    pool::{PoolError, TxPool as _},
};

/// A running node as the API sees it.
#[derive(Clone)]
pub struct NodeService {
    node: Node,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for NodeService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeService")
            .field("committed", &*self.shared.committed.borrow())
            .finish_non_exhaustive()
    }
}

impl NodeService {
    pub(crate) fn new(node: Node, shared: Arc<Shared>) -> NodeService {
        NodeService { node, shared }
    }

    /// The consensus node.
    pub fn node(&self) -> &Node {
        &self.node
    }
}

/// The API's error for a refused submission: the mempool's own variants where there is one.
fn api_error(e: SubmitError, hash: Hash32) -> ApiSubmitError {
    match e {
        SubmitError::Rejected(r) => MempoolError::Rejected(r).into(),
        SubmitError::Pool(PoolError::Mempool(m)) => m.into(),
        SubmitError::Pool(PoolError::Duplicate) => MempoolError::AlreadyInMempool(hash).into(),
        SubmitError::Pool(PoolError::Full(_)) => {
            ApiSubmitError::Unavailable("the transaction pool is full".into())
        }
        SubmitError::Pool(PoolError::Starting) => {
            ApiSubmitError::Unavailable("the node is starting: retry in a moment".into())
        }
    }
}

impl NodeBackend for NodeService {
    fn chain_id(&self) -> String {
        self.node.config().genesis.chain_id.clone()
    }

    fn submit(&self, tx: Vec<u8>) -> Result<Hash32, ApiSubmitError> {
        let hash = kumo_types::tx::tx_hash(&tx);
        self.node.submit(tx).map_err(|e| api_error(e, hash))?;
        self.shared.metrics.submitted(hash);
        Ok(hash)
    }

    fn submit_batch(&self, txs: Vec<Vec<u8>>) -> Vec<Result<Hash32, ApiSubmitError>> {
        let hashes: Vec<Hash32> = txs.iter().map(|t| kumo_types::tx::tx_hash(t)).collect();
        self.node
            .submit_batch(txs)
            .into_iter()
            .zip(hashes)
            .map(|(r, hash)| {
                r.map_err(|e| api_error(e, hash))?;
                self.shared.metrics.submitted(hash);
                Ok(hash)
            })
            .collect()
    }

    fn blocks(&self) -> &BlockStore {
        &self.shared.blocks
    }

    fn with_state<R>(&self, f: impl FnOnce(&dyn Store) -> R) -> R {
        self.node.with_finalized_state(|store, _| f(store))
    }

    fn committed(&self) -> watch::Receiver<u64> {
        self.shared.committed.subscribe()
    }

    fn mempool_stats(&self) -> MempoolStats {
        MempoolStats {
            txs: self.shared.pool.len(),
            bytes: self.shared.pool.bytes(),
        }
    }

    fn mempool_contains(&self, hash: &Hash32) -> bool {
        self.shared.pool.contains(hash)
    }

    fn txs_committed(&self) -> u64 {
        self.shared.metrics.txs_committed()
    }

    fn write_node_metrics(&self, out: &mut String) {
        self.shared.metrics.render(out);
    }
}
