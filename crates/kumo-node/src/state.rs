//! The chain state in memory: the finalized state, and one diff per block that is executed but
//! not yet finalized.
//!
//! `kumo-chain` runs over a synchronous [`Store`]; QMDB reads are asynchronous. So execution never
//! reads QMDB: it reads a [`LayeredStore`], which is
//!
//! ```text
//! finalized base (MemStore)  ◀─ diff of block h+1 ◀─ diff of block h+2 ◀─ … ◀─ writes of the block being executed
//! ```
//!
//! Each executed block leaves its diff as a [`Layer`] keyed by the block's digest, pointing at its
//! parent's digest, so sibling forks each have their own chain of layers. When a block is
//! finalized its layer is folded into the base and every layer that no longer descends from the
//! new base (abandoned forks) is dropped. The same diff is written into the QMDB batch that
//! `glue::stateful` hands to the application, so the QMDB root in every block commits to exactly
//! the state the chain executed against.
//!
//! On startup the base is rebuilt from QMDB (see [`crate::app`]); the chain's own height key says
//! which block it belongs to.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use kumo_chain::{
    App, EventRecord, Genesis, MemStore, Store, TxReceipt, TxRejected,
    store::{Writes, apply_writes},
};

use crate::block::Digest;

/// What executing a block produced besides its state diff.
#[derive(Clone, Debug)]
pub struct Execution {
    /// One result per transaction, in block order.
    pub results: Vec<Result<TxReceipt, TxRejected>>,
    /// Events of the end of the block (escrow depletion, order expiry).
    pub end_events: Vec<EventRecord>,
    /// Each transaction's hash, in block order: computed once here for the block store, the
    /// mempool and the API.
    pub tx_hashes: Vec<[u8; 32]>,
}

/// Why the state could not execute or finalize a block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The parent block's state is not held: it is neither the finalized block nor a block
    /// executed since.
    #[error(
        "no state for parent block {parent} at height {height}: it is not the finalized block or a descendant of it that this node executed"
    )]
    UnknownParent {
        /// The parent's digest.
        parent: Digest,
        /// The parent's consensus height.
        height: u64,
    },
    /// A block was finalized that this node never executed.
    #[error("block {0} was finalized but this node holds no execution of it")]
    NotExecuted(Digest),
    /// A finalized block does not extend the finalized chain.
    #[error(
        "finalized block at height {got} does not extend the finalized height {finalized}: blocks must be finalized in order"
    )]
    OutOfOrder {
        /// The finalized height.
        finalized: u64,
        /// The block's height.
        got: u64,
    },
    /// The stored state holds no chain and this is not the first block.
    #[error("the state holds no chain: {0}")]
    NoChain(String),
    /// The chain refused the block's height.
    #[error("the chain refused the block: {0}")]
    Block(String),
}

/// A block's state diff on top of its parent's state.
#[derive(Clone, Debug)]
pub struct Layer {
    /// The parent block.
    pub parent: Digest,
    /// Consensus height of the block.
    pub height: u64,
    /// Writes in key order (`None` deletes).
    pub writes: Writes,
    /// Transaction results and end-of-block events (shared with the finalized block handed to
    /// the sink, not copied).
    pub execution: Arc<Execution>,
}

/// A read view of the finalized base plus a chain of diffs, buffering its own writes.
pub struct LayeredStore<'a> {
    base: &'a MemStore,
    /// Oldest first.
    layers: Vec<&'a Writes>,
    writes: Writes,
}

impl<'a> LayeredStore<'a> {
    fn new(base: &'a MemStore, layers: Vec<&'a Writes>) -> Self {
        LayeredStore {
            base,
            layers,
            writes: Writes::new(),
        }
    }

    fn read_below(&self, key: &[u8]) -> Option<Vec<u8>> {
        for layer in self.layers.iter().rev() {
            if let Some(v) = layer.get(key) {
                return v.clone();
            }
        }
        self.base.get(key)
    }

    /// The writes that change something, in key order: a put of the value already there, or a
    /// delete of an absent key, is dropped, so equal states always give equal diffs.
    fn into_diff(self) -> Writes {
        let mut diff = Writes::new();
        for (k, v) in &self.writes {
            if self.read_below(k) != *v {
                diff.insert(k.clone(), v.clone());
            }
        }
        diff
    }
}

impl Store for LayeredStore<'_> {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        match self.writes.get(key) {
            Some(v) => v.clone(),
            None => self.read_below(key),
        }
    }

    fn put(&mut self, key: &[u8], value: Vec<u8>) {
        self.writes.insert(key.to_vec(), Some(value));
    }

    fn delete(&mut self, key: &[u8]) {
        self.writes.insert(key.to_vec(), None);
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> =
            self.base.scan_prefix(prefix).into_iter().collect();
        for layer in self
            .layers
            .iter()
            .copied()
            .chain(std::iter::once(&self.writes))
        {
            for (k, v) in layer
                .range(prefix.to_vec()..)
                .take_while(|(k, _)| k.starts_with(prefix))
            {
                match v {
                    Some(v) => merged.insert(k.clone(), v.clone()),
                    None => merged.remove(k),
                };
            }
        }
        merged.into_iter().collect()
    }
}

/// Hashes of transactions whose signatures this node has verified (at admission), so that
/// executing a block that carries them does not verify them again. First in, first out: an
/// entry that fell out only costs one more verification.
#[derive(Debug)]
struct VerifiedSignatures {
    /// Keyed by sha256 output: a seeded fast hash spreads them as well as SipHash, for less.
    set: HashSet<[u8; 32], foldhash::fast::RandomState>,
    order: VecDeque<[u8; 32]>,
}

impl VerifiedSignatures {
    /// About 10 MB; several times what the mempool holds.
    const CAPACITY: usize = 1 << 17;

    /// Sized for [`Self::CAPACITY`] from the start: a node under load fills it within seconds,
    /// and growing it on the way costs a rehash and fresh pages at every doubling.
    fn new() -> VerifiedSignatures {
        VerifiedSignatures {
            set: HashSet::with_capacity_and_hasher(Self::CAPACITY + 1, Default::default()),
            order: VecDeque::with_capacity(Self::CAPACITY + 1),
        }
    }

    fn insert(&mut self, hash: [u8; 32]) {
        if self.set.insert(hash) {
            self.order.push_back(hash);
            if self.order.len() > Self::CAPACITY
                && let Some(old) = self.order.pop_front()
            {
                self.set.remove(&old);
            }
        }
    }
}

/// The finalized state and the diffs of executed, not yet finalized blocks.
pub struct ChainState {
    genesis: Genesis,
    base: MemStore,
    /// Consensus height of the finalized base (0: genesis, nothing executed).
    base_height: u64,
    /// Digest of the finalized base's block.
    base_digest: Digest,
    layers: HashMap<Digest, Layer>,
    verified: VerifiedSignatures,
}

impl ChainState {
    /// The state at `height` (consensus height of block `digest`), holding `base`.
    pub fn new(genesis: Genesis, base: MemStore, height: u64, digest: Digest) -> ChainState {
        ChainState {
            genesis,
            base,
            base_height: height,
            base_digest: digest,
            layers: HashMap::new(),
            verified: VerifiedSignatures::new(),
        }
    }

    /// Remembers that the transaction with this hash has a valid signature (this node verified
    /// it): executing it in a block will not verify it again.
    pub fn signature_verified(&mut self, tx_hash: [u8; 32]) {
        self.verified.insert(tx_hash);
    }

    /// The consensus height that a store holding `chain_height` belongs to.
    pub fn consensus_height(genesis: &Genesis, chain_height: u64) -> u64 {
        chain_height.saturating_sub(genesis.initial_height)
    }

    /// The finalized state.
    pub fn finalized(&self) -> &MemStore {
        &self.base
    }

    /// Consensus height of the finalized state.
    pub fn finalized_height(&self) -> u64 {
        self.base_height
    }

    /// The chain's height of the finalized state (`initial_height` + consensus height).
    pub fn finalized_chain_height(&self) -> u64 {
        self.genesis.initial_height + self.base_height
    }

    /// Number of executed, not yet finalized blocks held.
    pub fn pending(&self) -> usize {
        self.layers.len()
    }

    /// The diffs from the base up to `parent` (oldest first).
    fn chain_to(&self, parent: Digest, parent_height: u64) -> Result<Vec<&Writes>, StateError> {
        let unknown = || StateError::UnknownParent {
            parent,
            height: parent_height,
        };
        let mut out = Vec::new();
        let mut at = parent;
        while at != self.base_digest {
            let layer = self.layers.get(&at).ok_or_else(unknown)?;
            if layer.height <= self.base_height {
                return Err(unknown());
            }
            out.push(&layer.writes);
            at = layer.parent;
        }
        out.reverse();
        Ok(out)
    }

    /// Executes `txs` as the child of `parent` (at consensus height `parent_height`) and returns
    /// the diff with the results. The first block (child of genesis) also writes the genesis
    /// state. Holds nothing: see [`ChainState::insert`].
    pub fn execute(
        &self,
        parent: Digest,
        parent_height: u64,
        txs: &[Vec<u8>],
    ) -> Result<(Writes, Execution), StateError> {
        let layers = self.chain_to(parent, parent_height)?;
        let view = LayeredStore::new(&self.base, layers);
        let mut app = if parent_height == 0 {
            App::init_genesis(view, &self.genesis)
                .map_err(|e| StateError::NoChain(e.to_string()))?
        } else {
            App::load(view).map_err(|e| StateError::NoChain(e.to_string()))?
        };
        let height = self.genesis.initial_height + parent_height + 1;
        let verified = &self.verified.set;
        let tx_hashes: Vec<[u8; 32]> = txs.iter().map(|t| kumo_types::tx::tx_hash(t)).collect();
        let (results, end_events) = app
            .execute_txs_hashed(height, txs, &tx_hashes, |h| verified.contains(h))
            .map_err(|e| StateError::Block(e.to_string()))?;
        Ok((
            app.into_store().into_diff(),
            Execution {
                results,
                end_events,
                tx_hashes,
            },
        ))
    }

    /// Holds the execution of block `digest` so that its children can execute on it.
    pub fn insert(&mut self, digest: Digest, layer: Layer) {
        if layer.height > self.base_height {
            self.layers.insert(digest, layer);
        }
    }

    /// What executing block `digest` produced, while it is held (executed, not yet finalized).
    pub fn execution(&self, digest: &Digest) -> Option<&Arc<Execution>> {
        self.layers.get(digest).map(|l| &l.execution)
    }

    /// Whether block `digest` has been executed and is held.
    pub fn holds(&self, digest: &Digest) -> bool {
        self.layers.contains_key(digest)
    }

    /// Folds finalized block `digest` (at consensus `height`) into the base and drops the diffs
    /// of blocks that no longer descend from it. Returns the block's execution.
    pub fn finalize(&mut self, digest: Digest, height: u64) -> Result<Layer, StateError> {
        if height != self.base_height + 1 {
            return Err(StateError::OutOfOrder {
                finalized: self.base_height,
                got: height,
            });
        }
        let mut layer = self
            .layers
            .remove(&digest)
            .ok_or(StateError::NotExecuted(digest))?;
        if layer.parent != self.base_digest {
            return Err(StateError::UnknownParent {
                parent: layer.parent,
                height: height - 1,
            });
        }
        // The base takes the writes; the returned layer keeps the rest.
        apply_writes(&mut self.base, std::mem::take(&mut layer.writes));
        self.base_height = height;
        self.base_digest = digest;
        self.prune();
        Ok(layer)
    }

    /// Drops every layer whose ancestry does not reach the base.
    fn prune(&mut self) {
        let mut keep: HashMap<Digest, bool> = HashMap::new();
        let digests: Vec<Digest> = self.layers.keys().copied().collect();
        for d in digests {
            let mut path = Vec::new();
            let mut at = d;
            let verdict = loop {
                if at == self.base_digest {
                    break true;
                }
                if let Some(v) = keep.get(&at) {
                    break *v;
                }
                match self.layers.get(&at) {
                    Some(l) if l.height > self.base_height => {
                        path.push(at);
                        at = l.parent;
                    }
                    _ => break false,
                }
            };
            for p in path {
                keep.insert(p, verdict);
            }
        }
        self.layers
            .retain(|d, _| keep.get(d).copied().unwrap_or(false));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use commonware_cryptography::{Hasher as _, Sha256};
    use kumo_chain::{
        StateRoot as _,
        genesis::GenesisBalance,
        testkit::{Actor, CHAIN_ID, FEE},
    };
    use kumo_types::Msg;

    fn d(n: u8) -> Digest {
        Sha256::hash(&[&[n]])
    }

    fn genesis(actors: &[&Actor]) -> Genesis {
        Genesis {
            chain_id: CHAIN_ID.into(),
            initial_height: 0,
            params: Default::default(),
            balances: actors
                .iter()
                .map(|a| GenesisBalance {
                    address: a.addr,
                    coins: "10000000ukumo".parse().unwrap(),
                })
                .collect(),
        }
    }

    fn send(from: &mut Actor, to: &Actor, amount: u128) -> Vec<u8> {
        from.sign(
            FEE,
            vec![Msg::Send {
                to: to.addr,
                amount: format!("{amount}ukumo").parse().unwrap(),
            }],
        )
    }

    fn run(state: &mut ChainState, parent: Digest, height: u64, me: Digest, txs: &[Vec<u8>]) {
        let (writes, execution) = state.execute(parent, height - 1, txs).unwrap();
        for r in &execution.results {
            assert!(r.is_ok(), "{r:?}");
        }
        state.insert(
            me,
            Layer {
                parent,
                height,
                writes,
                execution: Arc::new(execution),
            },
        );
    }

    /// The layered execution must reach exactly the state a plain in-memory chain reaches.
    #[test]
    fn layers_match_a_plain_chain_and_forks_are_dropped() {
        let mut alice = Actor::from_seed(1);
        let bob = Actor::from_seed(2);
        let g = genesis(&[&alice, &bob]);
        let mut plain = kumo_chain::testkit::Harness::with_genesis(g.clone());

        let mut state = ChainState::new(g, MemStore::new(), 0, d(0));
        let tx1 = send(&mut alice, &bob, 5);
        let tx2 = send(&mut alice, &bob, 7);
        run(&mut state, d(0), 1, d(1), std::slice::from_ref(&tx1));
        run(&mut state, d(1), 2, d(2), std::slice::from_ref(&tx2));
        // A sibling of block 2 that spends the same nonce differently.
        let mut alice_fork = alice.clone();
        alice_fork.nonce = 1;
        let fork = send(&mut alice_fork, &bob, 1_000);
        run(&mut state, d(1), 2, d(20), &[fork]);
        run(&mut state, d(20), 3, d(30), &[]);
        assert_eq!(state.pending(), 4);

        plain.block(&[tx1]);
        plain.block(&[tx2]);

        state.finalize(d(1), 1).unwrap();
        state.finalize(d(2), 2).unwrap();
        assert_eq!(state.pending(), 0, "the fork 20 ← 30 no longer descends");
        assert_eq!(state.finalized_height(), 2);
        let mut base = state.finalized().clone();
        assert_eq!(base.root(), plain.app.root());
    }

    #[test]
    fn refuses_unknown_parents_and_out_of_order_finality() {
        let alice = Actor::from_seed(1);
        let mut state = ChainState::new(genesis(&[&alice]), MemStore::new(), 0, d(0));
        assert!(matches!(
            state.execute(d(9), 1, &[]),
            Err(StateError::UnknownParent { .. })
        ));
        run(&mut state, d(0), 1, d(1), &[]);
        assert!(matches!(
            state.finalize(d(1), 2),
            Err(StateError::OutOfOrder { .. })
        ));
        assert!(matches!(
            state.finalize(d(5), 1),
            Err(StateError::NotExecuted(_))
        ));
        state.finalize(d(1), 1).unwrap();
    }

    #[test]
    fn diffs_leave_out_writes_that_change_nothing() {
        let base = MemStore::new();
        let mut view = LayeredStore::new(&base, vec![]);
        view.put(b"k", b"v".to_vec());
        view.delete(b"absent");
        let diff = view.into_diff();
        assert_eq!(diff.len(), 1);
        let mut layer = Writes::new();
        layer.insert(b"k".to_vec(), Some(b"v".to_vec()));
        let mut view = LayeredStore::new(&base, vec![&layer]);
        view.put(b"k", b"v".to_vec());
        assert!(view.into_diff().is_empty());
    }

    #[test]
    fn a_block_reads_its_own_writes_over_its_ancestors_in_key_order() {
        let mut base = MemStore::new();
        for k in ["p/a", "p/b", "p/c", "q/a"] {
            base.put(k.as_bytes(), b"base".to_vec());
        }
        let mut layer = Writes::new();
        layer.insert(b"p/b".to_vec(), None);
        layer.insert(b"p/d".to_vec(), Some(b"parent".to_vec()));
        let mut view = LayeredStore::new(&base, vec![&layer]);
        for i in (0..50u8).rev() {
            view.put(format!("p/z{i:02}").as_bytes(), vec![i]);
        }
        view.put(b"p/b", b"own".to_vec());
        view.delete(b"p/c");
        view.put(b"p/d", b"parent".to_vec());
        assert_eq!(view.get(b"p/b"), Some(b"own".to_vec()));
        assert_eq!(view.get(b"p/c"), None);
        assert_eq!(view.get(b"p/d"), Some(b"parent".to_vec()));
        let scanned: Vec<Vec<u8>> = view
            .scan_prefix(b"p/")
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        let mut want: Vec<Vec<u8>> = ["p/a", "p/b", "p/d"].map(|k| k.as_bytes().to_vec()).into();
        want.extend((0..50u8).map(|i| format!("p/z{i:02}").into_bytes()));
        assert_eq!(scanned, want);
        // The diff leaves out the write that changed nothing (p/d).
        let diff: Vec<Vec<u8>> = view.into_diff().into_keys().collect();
        let mut want: Vec<Vec<u8>> = ["p/b", "p/c"].map(|k| k.as_bytes().to_vec()).into();
        want.extend((0..50u8).map(|i| format!("p/z{i:02}").into_bytes()));
        assert_eq!(diff, want);
    }
}
