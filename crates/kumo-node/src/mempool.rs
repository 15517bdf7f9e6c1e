//! [`ChainPool`]: `kumo-mempool`'s [`Mempool`] behind the node's [`TxPool`] seam, admitting
//! against the node's finalized state.
//!
//! Every transaction reaches [`TxPool::insert`] after [`crate::Node::check_tx`] verified it
//! (the API's submissions and peers' gossip alike), so insertion does not verify the signature
//! again: it reads the sender, nonce and fee out of the checked bytes and the sender's next
//! nonce out of the finalized state, or takes them from the check ([`TxPool::insert_admitted`],
//! the batch paths, which read them while checking). After each finalized block, [`ChainPool::after_block`]
//! drops what the block included and rechecks the rest against the new state (nonces, fees),
//! without verifying signatures again.
//!
//! ```text
//! submit / gossip ─▶ Node::check_tx (signature, chain id, fee) ─▶ ChainPool::insert ─▶ reap ─▶ block
//! finalized block ─▶ ChainPool::after_block (remove committed, recheck the rest)
//! ```

use std::sync::{Mutex, MutexGuard, OnceLock, Weak};

use kumo_chain::{App, TxRejected, store::Overlay};
use kumo_mempool::{Admission, Config, Mempool, MempoolError, Readmit};
use kumo_types::{Address, tx::TxEnvelope};

use crate::{
    node::{Inner, Node},
    pool::{PoolError, TxHash, TxPool},
};

/// The real mempool, as a [`TxPool`]. Build it, put it in [`crate::NodeConfig::pool`], and
/// [`ChainPool::attach`] the node once it exists (admission reads the node's state).
pub struct ChainPool {
    pool: Mutex<Mempool>,
    /// The node whose finalized state admission reads. Weak: the node holds the pool.
    node: OnceLock<Weak<Inner>>,
}

impl std::fmt::Debug for ChainPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainPool")
            .field("len", &self.lock().len())
            .finish_non_exhaustive()
    }
}

impl ChainPool {
    /// An empty pool with these bounds, not yet attached to a node.
    pub fn new(config: Config) -> ChainPool {
        ChainPool {
            pool: Mutex::new(Mempool::new(config)),
            node: OnceLock::new(),
        }
    }

    /// Connects the pool to the node whose state it admits against. Later calls do nothing.
    pub fn attach(&self, node: &Node) {
        let _ = self.node.set(std::sync::Arc::downgrade(&node.inner));
    }

    fn lock(&self) -> MutexGuard<'_, Mempool> {
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn node(&self) -> Option<Node> {
        let inner = self.node.get()?.upgrade()?;
        Some(Node { inner })
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.lock().bytes()
    }

    /// Whether a transaction with this hash is pending.
    pub fn contains(&self, hash: &TxHash) -> bool {
        self.lock().contains(hash)
    }

    /// After a finalized block (its state applied): drops the transactions it included, then
    /// rechecks every other pending one against the new state (stale nonces, fees that can no
    /// longer be paid, too many missing nonces). Returns how many the recheck dropped.
    pub fn after_block(&self, committed: &[TxHash]) -> usize {
        let mut pool = self.lock();
        pool.remove_committed(committed);
        let Some(node) = self.node() else {
            return 0;
        };
        node.with_finalized_state(|store, _| {
            let app = App::load(Overlay::new(store)).expect("the finalized state holds a chain");
            let mut readmit = Readmit::new(&app);
            pool.recheck_admitted(|a| readmit.check(a)).len()
        })
    }
}

/// What admission needs from bytes [`crate::Node::check_tx`] has verified: sender, nonce and
/// fee from the body, the sender's next nonce from the finalized state.
fn admission(node: &Node, bytes: &[u8]) -> Result<Admission, TxRejected> {
    let envelope = TxEnvelope::parse(bytes, kumo_types::tx::MAX_TX_BYTES)?;
    let body = envelope.body_unverified()?;
    let sender = Address::from_public_key(envelope.signer());
    let account_nonce = node.with_finalized_state(|store, _| {
        App::load(Overlay::new(store))
            .expect("the finalized state holds a chain")
            .account_nonce(&sender)
    });
    Ok(Admission {
        sender,
        nonce: body.nonce,
        fee: body.fee.amount,
        account_nonce,
    })
}

/// The mempool's answer in the [`TxPool`]'s terms.
fn pool_error(r: Result<TxHash, MempoolError<TxRejected>>) -> Result<TxHash, PoolError> {
    r.map_err(|e| match e {
        MempoolError::AlreadyInMempool(_) => PoolError::Duplicate,
        e => PoolError::Mempool(e),
    })
}

impl TxPool for ChainPool {
    fn insert(&self, tx: Vec<u8>) -> Result<TxHash, PoolError> {
        let node = self.node().ok_or(PoolError::Starting)?;
        pool_error(self.lock().insert(tx, |b| admission(&node, b)))
    }

    fn insert_admitted(
        &self,
        tx: Vec<u8>,
        hash: TxHash,
        admission: Admission,
    ) -> Result<TxHash, PoolError> {
        pool_error(self.lock().insert_hashed(hash, tx, |_| Ok(admission)))
    }

    fn reap(&self, max_txs: usize, max_bytes: usize) -> Vec<Vec<u8>> {
        self.lock().reap(max_txs, max_bytes)
    }

    fn remove(&self, hashes: &[TxHash]) {
        self.lock().remove_committed(hashes);
    }

    fn after_block(&self, committed: &[TxHash]) -> usize {
        ChainPool::after_block(self, committed)
    }

    fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use kumo_chain::{
        Genesis,
        genesis::GenesisBalance,
        testkit::{Actor, CHAIN_ID, FEE},
    };
    use kumo_types::Msg;

    use super::*;
    use crate::{NodeConfig, block::Digest};

    fn send(from: &mut Actor, to: &Actor) -> Vec<u8> {
        from.sign(
            FEE,
            vec![Msg::Send {
                to: to.addr,
                amount: "1ukumo".parse().unwrap(),
            }],
        )
    }

    /// A node that has not started: admission reads its genesis state.
    fn pool_of_node(funded: &[&Actor]) -> (Arc<ChainPool>, Node) {
        let genesis = Genesis {
            chain_id: CHAIN_ID.into(),
            initial_height: 0,
            params: Default::default(),
            balances: funded
                .iter()
                .map(|a| GenesisBalance {
                    address: a.addr,
                    coins: "1000000000ukumo".parse().unwrap(),
                })
                .collect(),
        };
        let pool = Arc::new(ChainPool::new(Config::default()));
        let mut config = NodeConfig::new(genesis, "test");
        config.pool = pool.clone();
        let node = Node::new(config, Digest::from([0; 32])).unwrap();
        (pool, node)
    }

    #[test]
    fn admits_in_nonce_order_refuses_what_the_mempool_refuses_and_forgets_committed() {
        let mut alice = Actor::from_seed(1);
        let bob = Actor::from_seed(2);
        let (pool, node) = pool_of_node(&[&alice]);
        let first = send(&mut alice, &bob);
        // Not attached to its node yet: nothing is admitted.
        assert_eq!(pool.insert(first.clone()), Err(PoolError::Starting));
        pool.attach(&node);

        let second = send(&mut alice, &bob);
        node.submit(second.clone()).unwrap();
        // Nonce 1 waits for nonce 0: nothing to reap yet.
        assert!(pool.reap(10, 1 << 20).is_empty());
        let h0 = node.submit(first.clone()).unwrap();
        assert_eq!(pool.reap(10, 1 << 20), vec![first.clone(), second.clone()]);
        assert!(pool.contains(&h0));

        // The same bytes again; another transaction with a pending nonce.
        assert!(matches!(
            node.submit(first.clone()),
            Err(crate::SubmitError::Pool(PoolError::Duplicate))
        ));
        alice.nonce = 0;
        let rival = alice.sign(
            FEE + 1,
            vec![Msg::Send {
                to: bob.addr,
                amount: "2ukumo".parse().unwrap(),
            }],
        );
        assert!(matches!(
            node.submit(rival),
            Err(crate::SubmitError::Pool(PoolError::Mempool(
                MempoolError::NonceTaken { .. }
            )))
        ));

        // A block included the first: it leaves, the second stays.
        pool.after_block(&[h0]);
        assert!(!pool.contains(&h0));
        assert_eq!(pool.len(), 1);
        assert_eq!(pool.bytes(), second.len());
    }
}
