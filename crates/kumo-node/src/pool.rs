//! Where proposals take their transactions from: the [`TxPool`] trait and a small in-memory
//! [`FifoPool`] for tests (a running node uses [`crate::mempool::ChainPool`]).
//!
//! The node only needs three things of a pool: add an admitted transaction, take a batch for a
//! proposal, and forget transactions once a finalized block carries them. Admission checks
//! (signature, fee, nonce against the finalized state) happen before [`TxPool::insert`], in
//! [`crate::Node::submit`] and for gossiped transactions. The full mempool (per-account nonce
//! order, eviction, bounds per account) lives in `kumo-mempool` and plugs in through this trait
//! as [`crate::mempool::ChainPool`].

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use kumo_types::tx::tx_hash;

/// A transaction's hash (SHA-256 of its bytes).
pub type TxHash = [u8; 32];

/// Why a pool refused a transaction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// Already held.
    #[error("transaction is already in the pool")]
    Duplicate,
    /// The pool is full.
    #[error("the pool is full ({0} transactions): retry once blocks have drained it")]
    Full(usize),
    /// The node is still starting: nothing is admitted before it can read its state.
    #[error("the node is starting: retry in a moment")]
    Starting,
    /// The mempool's own rules refused it (nonce order, bounds per account, eviction).
    #[error(transparent)]
    Mempool(#[from] kumo_mempool::MempoolError<kumo_chain::TxRejected>),
}

/// The transactions waiting for a block.
pub trait TxPool: Send + Sync + 'static {
    /// Adds an admitted transaction. Returns its hash.
    fn insert(&self, tx: Vec<u8>) -> Result<TxHash, PoolError>;
    /// [`TxPool::insert`] for a transaction whose hash (`tx_hash(&tx)`) and admission facts the
    /// caller already has (from verifying it and checking it against the finalized state), so
    /// that the pool need not hash, parse it or read the state again. By default the same as
    /// [`TxPool::insert`].
    fn insert_admitted(
        &self,
        tx: Vec<u8>,
        hash: TxHash,
        admission: kumo_mempool::Admission,
    ) -> Result<TxHash, PoolError> {
        let _ = (hash, admission);
        self.insert(tx)
    }
    /// Up to `max_txs` transactions of at most `max_bytes` together, in the order they should
    /// run. They stay in the pool until [`TxPool::remove`].
    fn reap(&self, max_txs: usize, max_bytes: usize) -> Vec<Vec<u8>>;
    /// Forgets these transactions (committed in a finalized block, or unable to ever commit).
    fn remove(&self, hashes: &[TxHash]);
    /// A block was finalized and the state reads it: forgets the transactions it committed,
    /// and returns how many others a pool that rechecks what it holds against the new state
    /// dropped (none by default).
    fn after_block(&self, committed: &[TxHash]) -> usize {
        self.remove(committed);
        0
    }
    /// Number of transactions held.
    fn len(&self) -> usize;
    /// Whether the pool is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A bounded first-in first-out pool, deduplicated by hash: enough for tests and a devnet.
#[derive(Debug)]
pub struct FifoPool {
    capacity: usize,
    inner: Mutex<Fifo>,
}

#[derive(Debug, Default)]
struct Fifo {
    order: VecDeque<TxHash>,
    txs: HashMap<TxHash, Vec<u8>>,
}

impl FifoPool {
    /// A pool that holds at most `capacity` transactions.
    pub fn new(capacity: usize) -> FifoPool {
        FifoPool {
            capacity,
            inner: Mutex::new(Fifo::default()),
        }
    }
}

impl Default for FifoPool {
    fn default() -> Self {
        FifoPool::new(10_000)
    }
}

impl TxPool for FifoPool {
    fn insert(&self, tx: Vec<u8>) -> Result<TxHash, PoolError> {
        let hash = tx_hash(&tx);
        let mut inner = self.inner.lock().expect("pool lock");
        if inner.txs.contains_key(&hash) {
            return Err(PoolError::Duplicate);
        }
        if inner.txs.len() >= self.capacity {
            return Err(PoolError::Full(self.capacity));
        }
        inner.order.push_back(hash);
        inner.txs.insert(hash, tx);
        Ok(hash)
    }

    fn reap(&self, max_txs: usize, max_bytes: usize) -> Vec<Vec<u8>> {
        let inner = self.inner.lock().expect("pool lock");
        let mut out = Vec::new();
        let mut bytes = 0;
        for hash in &inner.order {
            if out.len() >= max_txs {
                break;
            }
            let tx = &inner.txs[hash];
            if bytes + tx.len() > max_bytes {
                continue;
            }
            bytes += tx.len();
            out.push(tx.clone());
        }
        out
    }

    fn remove(&self, hashes: &[TxHash]) {
        let mut inner = self.inner.lock().expect("pool lock");
        let mut removed = false;
        for h in hashes {
            removed |= inner.txs.remove(h).is_some();
        }
        if removed {
            let Fifo { order, txs } = &mut *inner;
            order.retain(|h| txs.contains_key(h));
        }
    }

    fn len(&self) -> usize {
        self.inner.lock().expect("pool lock").txs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_arrival_order_bounds_and_dedups() {
        let pool = FifoPool::new(3);
        let a = pool.insert(b"a".to_vec()).unwrap();
        pool.insert(b"bbbb".to_vec()).unwrap();
        pool.insert(b"c".to_vec()).unwrap();
        assert_eq!(pool.insert(b"a".to_vec()), Err(PoolError::Duplicate));
        assert_eq!(pool.insert(b"d".to_vec()), Err(PoolError::Full(3)));
        assert_eq!(pool.reap(10, 3), vec![b"a".to_vec(), b"c".to_vec()]);
        assert_eq!(pool.reap(1, 100), vec![b"a".to_vec()]);
        pool.remove(&[a]);
        assert_eq!(pool.len(), 2);
        assert_eq!(pool.reap(10, 100), vec![b"bbbb".to_vec(), b"c".to_vec()]);
    }
}
