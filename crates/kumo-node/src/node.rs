//! [`Node`]: the handle the rest of the program holds on a running node. Submit transactions,
//! read the finalized state, and receive finalized blocks through a [`BlockSink`].

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use commonware_utils::channel::mpsc;
use kumo_chain::{
    App, EventRecord, Genesis, MemStore, Store, TxReceipt, TxRejected, store::Overlay,
};
use kumo_mempool::Admission;
use kumo_types::{
    key_cache::KeyCache,
    tx::{TxEnvelope, VerifiedTx, tx_hash},
};

use crate::{
    block::{BlockLimits, Digest},
    pacing::BlockTimes,
    pool::{PoolError, TxHash, TxPool},
    state::{ChainState, Execution},
};

/// A finalized block as the rest of the node sees it: header, transactions and what they did.
///
/// Handed to the [`BlockSink`] once per block, in height order, for every block this process
/// finalizes. After a restart, blocks above the last durable state are executed and handed over
/// again, so a sink must accept a block it has already seen (and ignore it).
#[derive(Clone, Debug)]
pub struct FinalizedBlock {
    /// The chain's height (genesis `initial_height` + consensus height).
    pub height: u64,
    /// Block digest.
    pub digest: [u8; 32],
    /// Parent block digest.
    pub parent: [u8; 32],
    /// Proposer's clock when it built the block, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// The proposer's ed25519 public key.
    pub proposer: [u8; 32],
    /// The state root after the block (QMDB operations root).
    pub state_root: [u8; 32],
    /// The signed transactions, in execution order (the block's own, shared).
    pub txs: Arc<Vec<Vec<u8>>>,
    /// What executing them did: one result per transaction (`Ok` = included; the receipt says
    /// if its messages failed), the end of the block's events, and each transaction's hash.
    /// Shared with the node's state, not copied.
    pub execution: Arc<Execution>,
}

impl FinalizedBlock {
    /// One result per transaction.
    pub fn results(&self) -> &[Result<TxReceipt, TxRejected>] {
        &self.execution.results
    }

    /// Events of the end of the block.
    pub fn end_events(&self) -> &[EventRecord] {
        &self.execution.end_events
    }

    /// Each transaction's hash, in block order.
    pub fn tx_hashes(&self) -> &[[u8; 32]] {
        &self.execution.tx_hashes
    }
}

/// Receives every finalized block (see [`FinalizedBlock`] for the delivery guarantee).
///
/// Called on the consensus path: keep it quick (write to a channel or a local store). The node
/// acknowledges the block to consensus after [`BlockSink::finalized`] returns.
///
/// Each block comes twice: [`BlockSink::persist`] before the block's state is applied, then
/// [`BlockSink::finalized`] once queries read it. The state may become durable any time after
/// `persist` returns, and a block whose state is durable is never delivered again, so a sink that
/// must never fall behind the state (the block store) writes in `persist`.
pub trait BlockSink: Send + Sync + 'static {
    /// A block is finalized; its state is about to be applied (and made durable). What the
    /// sink must not lose, it writes durably before returning. Nothing by default.
    fn persist(&self, block: &FinalizedBlock) {
        let _ = block;
    }

    /// A block was finalized, [`persist`](Self::persist) has returned, the node's in-memory
    /// state (what the API reads) has moved to it, and the pool has dropped what it committed
    /// and `dropped` others its recheck refused ([`TxPool::after_block`]). QMDB may not have
    /// it yet.
    fn finalized(&self, block: &FinalizedBlock, dropped: usize);
}

/// A sink that drops every block.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoSink;

impl BlockSink for NoSink {
    fn finalized(&self, _: &FinalizedBlock, _: usize) {}
}

/// A sink that forwards every block into an unbounded channel.
impl BlockSink for mpsc::UnboundedSender<FinalizedBlock> {
    fn finalized(&self, block: &FinalizedBlock, _: usize) {
        let _ = self.send(block.clone());
    }
}

/// Why a submitted transaction was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// The chain would reject it.
    #[error(transparent)]
    Rejected(#[from] TxRejected),
    /// The pool refused it.
    #[error(transparent)]
    Pool(#[from] PoolError),
}

/// What a node is configured with, whatever runtime and network it runs on.
#[derive(Clone)]
pub struct NodeConfig {
    /// The chain's genesis.
    pub genesis: Genesis,
    /// Time from a block's timestamp until its child is proposed (devnet 250 ms, default 1 s).
    pub block_time: Duration,
    /// Block size limits.
    pub limits: BlockLimits,
    /// Prefix of every storage partition this node writes (one node per prefix).
    pub partition_prefix: String,
    /// Where proposals take transactions from.
    pub pool: Arc<dyn TxPool>,
    /// Where finalized blocks go.
    pub sink: Arc<dyn BlockSink>,
}

impl NodeConfig {
    /// A config with default block time (1 s) and limits, a [`crate::FifoPool`] and no sink.
    pub fn new(genesis: Genesis, partition_prefix: impl Into<String>) -> NodeConfig {
        NodeConfig {
            genesis,
            block_time: Duration::from_secs(1),
            limits: BlockLimits::default(),
            partition_prefix: partition_prefix.into(),
            pool: Arc::new(crate::FifoPool::default()),
            sink: Arc::new(NoSink),
        }
    }
}

/// The latest finalized block's identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FinalizedTip {
    /// Chain height.
    pub height: u64,
    /// Block digest.
    pub digest: Digest,
    /// State root after it.
    pub state_root: Digest,
}

pub(crate) struct Inner {
    pub(crate) config: NodeConfig,
    pub(crate) state: Mutex<ChainState>,
    /// The genesis state, served to queries until the first block is finalized.
    genesis_store: MemStore,
    pub(crate) tip: Mutex<Option<FinalizedTip>>,
    pub(crate) gossip: Mutex<Option<mpsc::Sender<Vec<u8>>>>,
    /// Timestamps of recent blocks, for pacing proposals ([`crate::pacing`]).
    pub(crate) block_times: BlockTimes,
    /// Decompressed public keys of the accounts whose transactions this node verified: the
    /// same accounts send batch after batch (`kumo_types::key_cache`).
    pub(crate) key_cache: KeyCache,
}

/// A handle on a node: cheap to clone, shared by the consensus application and its users.
#[derive(Clone)]
pub struct Node {
    pub(crate) inner: Arc<Inner>,
}

impl Node {
    /// A node that has not started yet. Its state is loaded from storage when it starts.
    pub fn new(
        config: NodeConfig,
        genesis_digest: Digest,
    ) -> Result<Node, kumo_chain::genesis::GenesisError> {
        let genesis_store = App::init_genesis(MemStore::new(), &config.genesis)?.into_store();
        let state = ChainState::new(config.genesis.clone(), MemStore::new(), 0, genesis_digest);
        Ok(Node {
            inner: Arc::new(Inner {
                config,
                state: Mutex::new(state),
                genesis_store,
                tip: Mutex::new(None),
                gossip: Mutex::new(None),
                block_times: BlockTimes::default(),
                key_cache: KeyCache::default(),
            }),
        })
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, ChainState> {
        self.inner.state.lock().expect("state lock")
    }

    /// The configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.inner.config
    }

    /// The transaction pool.
    pub fn pool(&self) -> &Arc<dyn TxPool> {
        &self.inner.config.pool
    }

    /// Runs `f` on the latest finalized state and its chain height (the genesis state at
    /// `initial_height` before the first block). `kumo_chain::query::Queries::new(store)` reads
    /// it. Blocks finalization while it runs: keep `f` short.
    pub fn with_finalized_state<R>(&self, f: impl FnOnce(&dyn Store, u64) -> R) -> R {
        let state = self.state();
        if state.finalized_height() == 0 {
            f(
                &self.inner.genesis_store,
                self.inner.config.genesis.initial_height,
            )
        } else {
            f(state.finalized(), state.finalized_chain_height())
        }
    }

    /// The latest finalized block, once there is one.
    pub fn finalized_tip(&self) -> Option<FinalizedTip> {
        *self.inner.tip.lock().expect("tip lock")
    }

    /// Mempool admission against the latest finalized state: signature, chain id, fee, and a
    /// nonce not below the account's. Writes nothing.
    pub fn check_tx(&self, bytes: &[u8]) -> Result<VerifiedTx, TxRejected> {
        // The signature first, outside the state lock: it is most of the cost, and the lock
        // also guards block execution.
        let tx = TxEnvelope::parse(bytes, self.inner.config.limits.max_tx_bytes)?.verify()?;
        self.state().signature_verified(tx.hash);
        self.with_finalized_state(|store, _| {
            let app = App::load(Overlay::new(store)).expect("the finalized state holds a chain");
            app.check_verified(&tx)
        })?;
        Ok(tx)
    }

    /// Checks a transaction, adds it to the pool and sends it to the validators. A validator's
    /// own proposals take it from the pool; a follower keeps it there only to send it again
    /// until a finalized block carries it.
    pub fn submit(&self, tx: Vec<u8>) -> Result<TxHash, SubmitError> {
        self.check_tx(&tx)?;
        let hash = self.pool().insert(tx.clone())?;
        if let Some(gossip) = self.inner.gossip.lock().expect("gossip lock").as_ref() {
            // A full gossip queue only delays propagation: the tx is in our pool, and our own
            // proposals (a validator) or the next resend (a follower) carry it.
            let _ = gossip.try_send(tx);
        }
        Ok(hash)
    }

    /// [`Node::submit`] for several transactions, their signatures verified in one batch; one
    /// result per transaction, in order.
    pub fn submit_batch(&self, txs: Vec<Vec<u8>>) -> Vec<Result<TxHash, SubmitError>> {
        let max = self.inner.config.limits.max_tx_bytes;
        let envelopes: Vec<Result<TxEnvelope<'_>, TxRejected>> = txs
            .iter()
            .map(|t| TxEnvelope::parse(t, max).map_err(TxRejected::from))
            .collect();
        let parsed: Vec<TxEnvelope<'_>> = envelopes
            .iter()
            .filter_map(|e| e.as_ref().ok().copied())
            .collect();
        let mut verified =
            kumo_types::tx::verify_batch_cached(&parsed, &self.inner.key_cache).into_iter();
        let checked: Vec<Result<VerifiedTx, TxRejected>> = envelopes
            .into_iter()
            .map(|e| {
                e.and_then(|_| {
                    verified
                        .next()
                        .expect("one result per parsed envelope")
                        .map_err(TxRejected::from)
                })
            })
            .collect();
        {
            let mut state = self.state();
            for v in checked.iter().flatten() {
                state.signature_verified(v.hash);
            }
        }
        let checked: Vec<Result<(TxHash, Admission), TxRejected>> =
            self.with_finalized_state(|store, _| {
                let app =
                    App::load(Overlay::new(store)).expect("the finalized state holds a chain");
                checked
                    .into_iter()
                    .map(|c| c.and_then(|v| Ok((v.hash, admission(&app, &v)?))))
                    .collect()
            });
        let gossip = self.inner.gossip.lock().expect("gossip lock").clone();
        txs.into_iter()
            .zip(checked)
            .map(|(tx, checked)| {
                let (hash, admission) = checked?;
                let hash = self.pool().insert_admitted(tx.clone(), hash, admission)?;
                if let Some(gossip) = &gossip {
                    let _ = gossip.try_send(tx);
                }
                Ok(hash)
            })
            .collect()
    }

    /// The pooled transactions the chain would still accept, in pool order; the others leave
    /// the pool. A follower sends these to the validators again.
    pub(crate) fn still_pending(&self) -> Vec<Vec<u8>> {
        let mut dead = Vec::new();
        let live = self
            .pool()
            .reap(usize::MAX, usize::MAX)
            .into_iter()
            .filter(|tx| {
                let ok = self.check_tx(tx).is_ok();
                if !ok {
                    dead.push(tx_hash(tx));
                }
                ok
            })
            .collect();
        self.pool().remove(&dead);
        live
    }

    /// Adds transactions received from peers (no gossip back), checked as [`Node::check_tx`]
    /// does but with their signatures verified in one batch: gossip is most of what a node
    /// verifies, and a batch costs about half as much per signature.
    pub(crate) fn admit_from_peers(&self, txs: &[&[u8]]) {
        let max = self.inner.config.limits.max_tx_bytes;
        let parsed: Vec<(&[u8], TxEnvelope<'_>)> = txs
            .iter()
            .filter_map(|t| TxEnvelope::parse(t, max).ok().map(|e| (*t, e)))
            .collect();
        let envelopes: Vec<TxEnvelope<'_>> = parsed.iter().map(|(_, e)| *e).collect();
        let verified: Vec<(&[u8], VerifiedTx)> = parsed
            .iter()
            .zip(kumo_types::tx::verify_batch_cached(
                &envelopes,
                &self.inner.key_cache,
            ))
            .filter_map(|((bytes, _), v)| v.ok().map(|v| (*bytes, v)))
            .collect();
        {
            let mut state = self.state();
            for (_, v) in &verified {
                state.signature_verified(v.hash);
            }
        }
        let admitted: Vec<(&[u8], TxHash, Admission)> = self.with_finalized_state(|store, _| {
            let app = App::load(Overlay::new(store)).expect("the finalized state holds a chain");
            verified
                .iter()
                .filter_map(|(bytes, v)| admission(&app, v).ok().map(|a| (*bytes, v.hash, a)))
                .collect()
        });
        for (tx, hash, admission) in admitted {
            let _ = self.pool().insert_admitted(tx.to_vec(), hash, admission);
        }
    }
}

/// Checks a verified transaction against the finalized state (chain id, fee, nonce not below
/// the account's) and returns what the pool admits it by.
fn admission<S: Store>(app: &App<S>, tx: &VerifiedTx) -> Result<Admission, TxRejected> {
    app.check_verified(tx)?;
    Ok(Admission {
        sender: tx.sender,
        nonce: tx.body.nonce,
        fee: tx.body.fee.amount,
        account_nonce: app.account_nonce(&tx.sender),
    })
}
