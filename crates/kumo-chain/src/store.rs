//! The key-value interface the state machine runs over, and an in-memory implementation.
//!
//! The chain needs four operations ([`Store`]): get, put, delete and ascending iteration over
//! the keys that start with a prefix. The node implements them over QMDB (whose Merkle root is
//! the block's state root); tests and benchmarks use [`MemStore`] (a hash map plus an ordered key set), whose
//! [`StateRoot::root`] is
//!
//! ```text
//! sha256( for each (key, value) in ascending key order:
//!           u32_le(len(key)) ‖ key ‖ u32_le(len(value)) ‖ value )
//! ```
//!
//! which is deterministic but O(state size): fine for tests, not for production.
//!
//! A transaction's messages run against an [`Overlay`] that buffers writes, so a failed
//! message leaves the underlying store untouched.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use sha2::{Digest, Sha256};
use smallvec::SmallVec;

/// An ordered key-value store.
pub trait Store {
    /// The value at `key`.
    fn get(&self, key: &[u8]) -> Option<Vec<u8>>;
    /// Sets `key` to `value`.
    fn put(&mut self, key: &[u8], value: Vec<u8>);
    /// Removes `key` (no-op if absent).
    fn delete(&mut self, key: &[u8]);
    /// Every entry whose key starts with `prefix`, in ascending key order.
    fn scan_prefix(&self, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)>;
}

/// A store that can commit to its content with a 32-byte root.
pub trait StateRoot {
    /// The root of the current content.
    fn root(&mut self) -> [u8; 32];
}

/// An in-memory store: a hash map for point reads and writes, beside ordered key sets for
/// prefix scans and the root.
///
/// The hash map is only ever looked up by key, never iterated, so its (randomized) order cannot
/// leak into state: every ordered walk goes through the `BTreeSet`s. Point reads cost O(1)
/// whatever the size, which keeps end-of-block work independent of how many leases exist.
///
/// The ordered keys are split by their first byte (the chain's table prefix), like a store's
/// column families: walking one table never touches the nodes of the others, so a small index
/// stays small in the cache however large the rest of the state grows. Keys up to 80 bytes (all
/// of the chain's but balances of very long denominations) are stored inline, so a walk compares
/// bytes in place instead of chasing a pointer per comparison.
#[derive(Debug, Clone)]
pub struct MemStore {
    values: HashMap<Key, Vec<u8>>,
    tables: Vec<BTreeSet<Key>>,
}

type Key = SmallVec<[u8; 80]>;

fn table(key: &[u8]) -> usize {
    key.first().map_or(0, |b| usize::from(*b))
}

impl Default for MemStore {
    fn default() -> MemStore {
        MemStore {
            values: HashMap::new(),
            tables: vec![BTreeSet::new(); 256],
        }
    }
}

impl PartialEq for MemStore {
    fn eq(&self, other: &MemStore) -> bool {
        self.tables == other.tables && self.iter().all(|(k, v)| other.values.get(k) == Some(v))
    }
}

impl Eq for MemStore {}

impl MemStore {
    /// An empty store.
    pub fn new() -> MemStore {
        MemStore::default()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// All entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &Vec<u8>)> {
        self.tables
            .iter()
            .flatten()
            .map(|k| (k.as_slice(), &self.values[k]))
    }
}

impl Store for MemStore {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.values.get(key).cloned()
    }

    fn put(&mut self, key: &[u8], value: Vec<u8>) {
        match self.values.get_mut(key) {
            Some(v) => *v = value,
            None => {
                self.values.insert(Key::from_slice(key), value);
                self.tables[table(key)].insert(Key::from_slice(key));
            }
        }
    }

    fn delete(&mut self, key: &[u8]) {
        if self.values.remove(key).is_some() {
            self.tables[table(key)].remove(key);
        }
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        if prefix.is_empty() {
            return self.iter().map(|(k, v)| (k.to_vec(), v.clone())).collect();
        }
        self.tables[table(prefix)]
            .range::<[u8], _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|k| k.starts_with(prefix))
            .map(|k| (k.to_vec(), self.values[k].clone()))
            .collect()
    }
}

impl StateRoot for MemStore {
    fn root(&mut self) -> [u8; 32] {
        let mut h = Sha256::new();
        for (k, v) in self.iter() {
            h.update((k.len() as u32).to_le_bytes());
            h.update(k);
            h.update((v.len() as u32).to_le_bytes());
            h.update(v);
        }
        h.finalize().into()
    }
}

/// Buffered writes over a read-only base store; dropped to discard, [`Overlay::into_writes`] to
/// keep.
pub struct Overlay<'a> {
    base: &'a dyn Store,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

/// Writes buffered by an [`Overlay`]: `None` deletes.
pub type Writes = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

impl<'a> Overlay<'a> {
    /// An overlay with no writes yet.
    pub fn new(base: &'a dyn Store) -> Overlay<'a> {
        Overlay {
            base,
            writes: BTreeMap::new(),
        }
    }

    /// The buffered writes, to apply with [`apply_writes`].
    pub fn into_writes(self) -> Writes {
        self.writes
    }
}

/// Applies buffered writes to a store, in key order.
pub fn apply_writes(store: &mut dyn Store, writes: Writes) {
    for (k, v) in writes {
        match v {
            Some(v) => store.put(&k, v),
            None => store.delete(&k),
        }
    }
}

impl Store for Overlay<'_> {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        match self.writes.get(key) {
            Some(v) => v.clone(),
            None => self.base.get(key),
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
        for (k, v) in self
            .writes
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
        {
            match v {
                Some(v) => merged.insert(k.clone(), v.clone()),
                None => merged.remove(k),
            };
        }
        merged.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_reads_its_writes_and_scans_merged() {
        let mut base = MemStore::new();
        base.put(b"a1", b"x".to_vec());
        base.put(b"a2", b"y".to_vec());
        base.put(b"b1", b"z".to_vec());
        let mut ov = Overlay::new(&base);
        ov.delete(b"a1");
        ov.put(b"a3", b"w".to_vec());
        assert_eq!(ov.get(b"a1"), None);
        let keys: Vec<Vec<u8>> = ov.scan_prefix(b"a").into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, vec![b"a2".to_vec(), b"a3".to_vec()]);
        let w = ov.into_writes();
        let before = base.clone().root();
        apply_writes(&mut base, w);
        assert_ne!(base.root(), before);
        assert_eq!(base.get(b"a3"), Some(b"w".to_vec()));
        assert_eq!(base.len(), 3);
        let all: Vec<Vec<u8>> = base.scan_prefix(b"").into_iter().map(|(k, _)| k).collect();
        assert_eq!(all, vec![b"a2".to_vec(), b"a3".to_vec(), b"b1".to_vec()]);
    }
}
