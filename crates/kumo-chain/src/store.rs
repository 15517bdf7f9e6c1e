//! The key-value interface the state machine runs over, and an in-memory implementation.
//!
//! The chain needs four operations ([`Store`]): get, put, delete and ascending iteration over
//! the keys that start with a prefix. The node implements them over QMDB (whose Merkle root is
//! the block's state root); tests and benchmarks use [`MemStore`], a `BTreeMap` whose
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

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

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

/// An in-memory store over a `BTreeMap`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemStore {
    map: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> MemStore {
        MemStore::default()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// All entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&Vec<u8>, &Vec<u8>)> {
        self.map.iter()
    }
}

impl Store for MemStore {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.map.get(key).cloned()
    }

    fn put(&mut self, key: &[u8], value: Vec<u8>) {
        self.map.insert(key.to_vec(), value);
    }

    fn delete(&mut self, key: &[u8]) {
        self.map.remove(key);
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.map
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

impl StateRoot for MemStore {
    fn root(&mut self) -> [u8; 32] {
        let mut h = Sha256::new();
        for (k, v) in &self.map {
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
    }
}
