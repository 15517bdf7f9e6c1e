//! The consensus application: `glue::stateful`'s [`Application`] over one QMDB database,
//! executing `kumo-chain` on the in-memory [`ChainState`].
//!
//! - **propose**: wait until `parent.timestamp + block_time`, take transactions from the pool,
//!   execute them on the parent's state, leave out the ones the chain rejects (they change
//!   nothing), write the diff into the QMDB batch and put its root in the block.
//! - **process** (verify a peer's block, or replay one): execute the block's transactions on the
//!   parent's state; a candidate block with a rejected transaction, a timestamp not above its
//!   parent's or more than [`MAX_CLOCK_AHEAD_MS`] ahead of this node's clock, or a state root
//!   that differs from ours is invalid (stateful compares the root). Finalized blocks replayed
//!   later are not held to the clock.
//! - **capture** (a finalized block, before its state is applied): hand the block and its
//!   results to [`crate::BlockSink::persist`], so the block store is never behind the state.
//! - **finalized**: fold the block's diff into the finalized state, hand the block to
//!   [`crate::BlockSink::finalized`], drop its transactions from the pool.
//!
//! Startup: `glue::stateful` opens QMDB at the last durable finalized block and hands it to its
//! state-sync resolver before it processes anything. [`StateLoader`] stands in that place: it
//! reads every live key-value pair out of QMDB into the in-memory base (replaying the operation
//! log from the inactivity floor, which holds every active key's latest operation) and learns
//! which block it is from the chain's stored height and marshal. Blocks above it are then
//! replayed by stateful through `process`, exactly as a fresh node replays from genesis.
//!
//! State sync from peers is not used: a node that is behind replays finalized blocks from
//! marshal (its own and its peers'), see `ARCHITECTURE.md`.

use std::{marker::PhantomData, num::NonZeroU64, sync::Arc};

use commonware_consensus::{
    Heightable as _,
    marshal::{
        Identifier, ancestry::Ancestry, core::Mailbox as MarshalMailbox, standard::Standard,
    },
    types::Height,
};
use commonware_cryptography::{Digestible as _, Sha256};
use commonware_glue::stateful::{
    Application, Finality, Input, Proposed,
    db::{AttachableResolver, DatabaseSet, ManagedDb, Merkleized as _, Shared, Unmerkleized as _},
};
use commonware_parallel::Sequential;
use commonware_runtime::{Clock, Metrics, Spawner};
use commonware_storage::{
    Context as StorageContext,
    mmr::{self, Location},
    qmdb::{
        any::{operation::Operation, unordered::variable},
        sync::{self, Target},
    },
    translator::EightCap,
};
use commonware_utils::{NZU64, non_empty_range};
use futures::StreamExt as _;
use kumo_chain::{App, MemStore, Store as _, TxRejected, store::Overlay, store::Writes};
use rand_core_010::Rng;
use tracing::{debug, error, info, warn};

use crate::{
    block::{Block, BlockContext, Digest},
    node::{FinalizedBlock, FinalizedTip, Node},
    pacing::{unix_ms, wait_before_proposing},
    state::{ChainState, Execution, Layer},
};

/// How far ahead of a validator's clock a candidate block's timestamp may be (a validity rule:
/// such a block gets no vote). Honest proposers stamp their own clock, so this only bounds
/// clock skew between validators plus a proposer pushing time ahead.
pub const MAX_CLOCK_AHEAD_MS: u64 = 5_000;

/// The validators' signing scheme: ed25519 signatures, certificates list each signer.
pub type Scheme = commonware_consensus::simplex::scheme::ed25519::Scheme;

/// The state database: an authenticated key-value log whose keys and values are the chain's
/// raw store keys and values.
pub type Qmdb<E> = variable::Db<mmr::Family, E, Vec<u8>, Vec<u8>, Sha256, EightCap, Sequential>;

/// The database set `glue::stateful` manages for the node: one QMDB.
pub type Databases<E> = Shared<Qmdb<E>>;

/// The marshal mailbox the node's pieces share.
pub type Marshal = MarshalMailbox<Scheme, Standard<Block>>;

/// What the runtime must offer the application.
pub trait Runtime:
    Spawner + Clock + Metrics + StorageContext + Rng + Send + Sync + 'static
{
}
impl<T: Spawner + Clock + Metrics + StorageContext + Rng + Send + Sync + 'static> Runtime for T {}

/// The state sync target a block commits to.
pub fn sync_target(block: &Block) -> Target<mmr::Family, Digest> {
    Target::new(block.state_root, block.state_range.clone())
}

/// The application `glue::stateful` drives.
pub struct KumoApp<E> {
    node: Node,
    genesis_block: Block,
    _runtime: PhantomData<fn() -> E>,
}

impl<E> Clone for KumoApp<E> {
    fn clone(&self) -> Self {
        KumoApp {
            node: self.node.clone(),
            genesis_block: self.genesis_block.clone(),
            _runtime: PhantomData,
        }
    }
}

impl<E: Runtime> KumoApp<E> {
    /// The application of `node`, whose chain starts at `genesis_block`.
    pub fn new(node: Node, genesis_block: Block) -> Self {
        KumoApp {
            node,
            genesis_block,
            _runtime: PhantomData,
        }
    }

    /// Writes a diff into a QMDB batch, in key order.
    fn write_diff(
        mut batch: <Databases<E> as DatabaseSet<E>>::Unmerkleized,
        writes: &Writes,
    ) -> <Databases<E> as DatabaseSet<E>>::Unmerkleized {
        for (k, v) in writes {
            batch = batch.write(k.clone(), v.clone());
        }
        batch
    }

    fn range_of(
        merkleized: &<Databases<E> as DatabaseSet<E>>::Merkleized,
    ) -> commonware_utils::range::NonEmptyRange<Location> {
        let bounds = merkleized.bounds();
        non_empty_range!(bounds.inactivity_floor, bounds.tip.size)
    }
}

impl<E: Runtime> Application<E> for KumoApp<E> {
    type SigningScheme = Scheme;
    type Context = BlockContext;
    type Block = Block;
    type Databases = Databases<E>;
    type Captured = ();
    type Provider = ();
    type Input = ();

    fn sync_targets(block: &Block) -> Target<mmr::Family, Digest> {
        sync_target(block)
    }

    async fn genesis(&mut self) -> Block {
        self.genesis_block.clone()
    }

    async fn propose(
        &mut self,
        (runtime, context): (E, BlockContext),
        ancestry: impl Ancestry<Block>,
        batches: <Databases<E> as DatabaseSet<E>>::Unmerkleized,
        _input: Input<(), ()>,
    ) -> Option<Proposed<Self, E>> {
        let mut ancestry = ancestry;
        let parent = ancestry.next().await?;
        let parent_ts = parent.inner().timestamp_ms;
        let parent_digest = parent.digest();
        let parent_height = parent.height().get();
        let config = self.node.config().clone();

        // Pace the chain: the child of a block is proposed `block_time` after the block.
        // `crate::pacing::Paced` has waited already, outside the actor, for a parent this node
        // executed; this wait covers the others (a parent replayed after a restart).
        let wait = wait_before_proposing(parent_ts, config.block_time, unix_ms(&runtime));
        if !wait.is_zero() {
            runtime.sleep(wait).await;
        }
        let timestamp_ms = unix_ms(&runtime).max(parent_ts + 1);

        let candidates = config
            .pool
            .reap(config.limits.max_txs, config.limits.max_block_bytes);
        let executed = self
            .node
            .state()
            .execute(parent_digest, parent_height, &candidates);
        let (writes, execution) = match executed {
            Ok(x) => x,
            Err(e) => {
                error!(error = %e, height = parent_height + 1, "cannot build a block");
                return None;
            }
        };

        // Rejected transactions changed nothing, so leaving them out keeps the same diff. Those
        // that can never commit leave the pool; a nonce ahead of the account's may commit later.
        let mut txs = Vec::with_capacity(candidates.len());
        let mut results = Vec::with_capacity(candidates.len());
        let mut tx_hashes = Vec::with_capacity(candidates.len());
        let mut dead = Vec::new();
        for ((tx, result), hash) in candidates
            .into_iter()
            .zip(execution.results)
            .zip(execution.tx_hashes)
        {
            match result {
                Ok(receipt) => {
                    txs.push(tx);
                    results.push(Ok(receipt));
                    tx_hashes.push(hash);
                }
                Err(TxRejected::Nonce { want, got }) if got > want => {}
                Err(e) => {
                    debug!(error = %e, "dropping a transaction the chain rejects");
                    dead.push(hash);
                }
            }
        }
        config.pool.remove(&dead);

        let merkleized = match Self::write_diff(batches, &writes).merkleize().await {
            Ok(m) => m,
            Err(e) => panic!("QMDB merkleize failed while proposing: {e:?}"),
        };
        let block = Block {
            context,
            parent: parent_digest,
            height: Height::new(parent_height + 1),
            timestamp_ms,
            state_root: merkleized.root(),
            state_range: Self::range_of(&merkleized),
            txs: Arc::new(txs),
        };
        let digest = block.digest();
        self.node.inner.block_times.record(digest, timestamp_ms);
        self.node.state().insert(
            digest,
            Layer {
                parent: parent_digest,
                height: parent_height + 1,
                writes,
                execution: Arc::new(Execution {
                    results,
                    end_events: execution.end_events,
                    tx_hashes,
                }),
            },
        );
        Some(Proposed { block, merkleized })
    }

    async fn process(
        &mut self,
        (runtime, _): (E, BlockContext),
        ancestry: impl Ancestry<Block>,
        batches: <Databases<E> as DatabaseSet<E>>::Unmerkleized,
        finality: Finality,
    ) -> Option<<Databases<E> as DatabaseSet<E>>::Merkleized> {
        let mut ancestry = ancestry;
        let digested = ancestry.next().await?;
        let parent = ancestry.next().await?;
        let block = digested.inner();
        let height = block.height().get();
        let candidate = finality == Finality::Candidate;
        if candidate && block.timestamp_ms <= parent.inner().timestamp_ms {
            warn!(height, "invalid block: timestamp not above its parent's");
            return None;
        }
        if candidate && block.timestamp_ms > unix_ms(&runtime) + MAX_CLOCK_AHEAD_MS {
            warn!(
                height,
                timestamp_ms = block.timestamp_ms,
                "invalid block: timestamp more than {MAX_CLOCK_AHEAD_MS} ms ahead of this node's clock"
            );
            return None;
        }
        let executed =
            self.node
                .state()
                .execute(parent.digest(), parent.height().get(), &block.txs);
        let (writes, execution) = match executed {
            Ok(x) => x,
            Err(e) => {
                error!(error = %e, height, "cannot execute block");
                return None;
            }
        };
        let rejected = execution
            .results
            .iter()
            .enumerate()
            .find(|(_, r)| r.is_err());
        if candidate && let Some((i, Err(e))) = rejected {
            warn!(height, tx = i, error = %e, "invalid block: it includes a rejected transaction");
            return None;
        }
        let merkleized = match Self::write_diff(batches, &writes).merkleize().await {
            Ok(m) => m,
            Err(e) => panic!("QMDB merkleize failed while verifying: {e:?}"),
        };
        if merkleized.root() != block.state_root {
            warn!(height, "block's state root differs from ours");
        }
        self.node
            .inner
            .block_times
            .record(digested.digest(), block.timestamp_ms);
        self.node.state().insert(
            digested.digest(),
            Layer {
                parent: parent.digest(),
                height,
                writes,
                execution: Arc::new(execution),
            },
        );
        Some(merkleized)
    }

    /// Called for each finalized block before stateful applies its state to QMDB. Everything a
    /// finalized block changes in this node happens here: the sink stores the block durably,
    /// then the in-memory state, the tip, the sink's readers and the pool move to it.
    ///
    /// Not in [`finalized`](Self::finalized): stateful calls that after applying the block to
    /// QMDB (10–60 ms for a block of thousands of transactions on a busy machine), and QMDB's
    /// state is not durable then either, so waiting for it would only delay the answers to
    /// clients waiting for their transactions to commit. A crash before QMDB is durable loses
    /// nothing: the in-memory state is rebuilt from QMDB at startup, and the blocks above it are
    /// processed and captured again (the sink skips those it stored).
    async fn capture(
        &mut self,
        _context: (E, BlockContext),
        block: &Block,
        _batches: &<Databases<E> as DatabaseSet<E>>::Merkleized,
        _readers: <Databases<E> as DatabaseSet<E>>::Readers,
    ) {
        let digest = block.digest();
        let height = block.height().get();
        let execution = Arc::clone(
            self.node
                .state()
                .execution(&digest)
                .unwrap_or_else(|| panic!("finalized block {height} was never executed here")),
        );
        let finalized = FinalizedBlock {
            height: self.node.config().genesis.initial_height + height,
            digest: digest.into(),
            parent: block.parent.into(),
            timestamp_ms: block.timestamp_ms,
            proposer: block
                .context
                .leader
                .as_ref()
                .try_into()
                .expect("32-byte key"),
            state_root: block.state_root.into(),
            txs: Arc::clone(&block.txs),
            execution,
        };
        self.node.config().sink.persist(&finalized);

        let chain_height = {
            let mut state = self.node.state();
            state
                .finalize(digest, height)
                .unwrap_or_else(|e| panic!("finalized block {height} cannot be applied: {e}"));
            state.finalized_chain_height()
        };
        *self.node.inner.tip.lock().expect("tip lock") = Some(FinalizedTip {
            height: chain_height,
            digest,
            state_root: block.state_root,
        });
        debug!(height = chain_height, txs = block.txs.len(), "finalized");
        // The block store has the block (`persist`), so its transactions may leave the pool.
        let dropped = self.node.pool().after_block(&finalized.execution.tx_hashes);
        self.node.config().sink.finalized(&finalized, dropped);
    }

    /// Nothing is left to do once QMDB has the block's state: see [`capture`](Self::capture).
    async fn finalized(
        &mut self,
        _context: (E, BlockContext),
        _block: &Block,
        _captured: (),
        _readers: <Databases<E> as DatabaseSet<E>>::Readers,
    ) {
    }
}

/// Stands where `glue::stateful` expects a state-sync resolver: when stateful hands over the
/// opened database at startup, it loads the in-memory state from it. It serves no state sync.
pub struct StateLoader<E> {
    node: Node,
    marshal: Marshal,
    genesis_digest: Digest,
    _runtime: PhantomData<fn() -> E>,
}

impl<E> Clone for StateLoader<E> {
    fn clone(&self) -> Self {
        StateLoader {
            node: self.node.clone(),
            marshal: self.marshal.clone(),
            genesis_digest: self.genesis_digest,
            _runtime: PhantomData,
        }
    }
}

impl<E: Runtime> StateLoader<E> {
    /// A loader for `node`, asking `marshal` which block the stored state belongs to.
    pub fn new(node: Node, marshal: Marshal, genesis_digest: Digest) -> Self {
        StateLoader {
            node,
            marshal,
            genesis_digest,
            _runtime: PhantomData,
        }
    }
}

/// Reads every live key-value pair out of QMDB: replays the operations from the inactivity
/// floor (every active key's latest operation is at or above it) to the end of the log.
pub async fn read_all<E: Runtime>(db: &Qmdb<E>) -> MemStore {
    const PAGE: NonZeroU64 = NZU64!(1024);
    let end = db.bounds().end;
    let mut loc = db.sync_boundary();
    let mut store = MemStore::new();
    while loc < end {
        let (_, ops) = db
            .proof(loc, PAGE)
            .await
            .unwrap_or_else(|e| panic!("reading QMDB operations at {loc}: {e:?}"));
        if ops.is_empty() {
            break;
        }
        loc = Location::new(*loc + ops.len() as u64);
        for op in ops {
            match op {
                Operation::Update(update) => store.put(&update.0, update.1),
                Operation::Delete(key) => store.delete(&key),
                Operation::CommitFloor(..) => {}
            }
        }
    }
    store
}

impl<E: Runtime> AttachableResolver<Qmdb<E>> for StateLoader<E> {
    async fn attach_database(&self, db: Shared<Qmdb<E>>) {
        let base = {
            let guard = db.read().await;
            read_all::<E>(&guard).await
        };
        let genesis = &self.node.config().genesis;
        let chain_height = App::load(Overlay::new(&base)).map(|a| a.height());
        let (height, digest) = match chain_height {
            Err(_) => (0, self.genesis_digest),
            Ok(h) => {
                let height = ChainState::consensus_height(genesis, h);
                let block = self
                    .marshal
                    .get_block(Identifier::Height(Height::new(height)))
                    .await
                    .unwrap_or_else(|| {
                        panic!("marshal has no block at height {height}, where the state is")
                    });
                *self.node.inner.tip.lock().expect("tip lock") = Some(FinalizedTip {
                    height: h,
                    digest: block.digest(),
                    state_root: block.inner().state_root,
                });
                (height, block.digest())
            }
        };
        info!(
            height,
            entries = base.len(),
            "loaded the finalized state from QMDB"
        );
        *self.node.state() = ChainState::new(genesis.clone(), base, height, digest);
    }
}

/// The error of the state-sync source that never serves.
#[derive(Debug, thiserror::Error)]
#[error("this node does not serve state sync")]
pub struct NoStateSync;

impl<E: Runtime> sync::Source for StateLoader<E> {
    type Family = mmr::Family;
    type Digest = Digest;
    type Op = <Qmdb<E> as sync::Database>::Op;
    type Error = NoStateSync;

    async fn serve(&self, _request: sync::Request<mmr::Family>) -> sync::source::Result<Self> {
        Err(NoStateSync)
    }
}

/// The empty database's sync target: what the genesis block commits to.
pub fn initial_target<E: Runtime>() -> Target<mmr::Family, Digest> {
    <Qmdb<E> as ManagedDb<E>>::initial_sync_target()
}
