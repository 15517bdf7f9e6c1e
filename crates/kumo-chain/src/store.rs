//! The key-value interface the state machine runs over, and an in-memory implementation.
//!
//! The chain needs four operations ([`Store`]): get, put, delete and ascending iteration over
//! the keys that start with a prefix, plus an optional [`Store::prefetch`] hint. The node
//! implements them over QMDB (whose Merkle root is the block's state root); tests and
//! benchmarks use [`MemStore`] (per table, a hash table plus an ordered key set), whose
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

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{BuildHasher, RandomState};

use hashbrown::{HashTable, hash_table};

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
    /// A hint that `keys` are about to be read: a store may fetch them together, overlapping
    /// their cache (or disk) misses, instead of one after another as the reads come. Changes
    /// nothing; does nothing by default.
    fn prefetch(&self, keys: &[Vec<u8>]) {
        let _ = keys;
    }
}

/// A store that can commit to its content with a 32-byte root.
pub trait StateRoot {
    /// The root of the current content.
    fn root(&mut self) -> [u8; 32];
}

/// An in-memory store: per table (the key's first byte, like a store's column families), a hash
/// table for point reads and writes beside an ordered key set for prefix scans and the root.
///
/// The hash tables are only ever looked up by key, never iterated, so their (randomized) order
/// cannot leak into state: every ordered walk goes through the ordered sets. Point reads cost
/// O(1) whatever the size, which keeps end-of-block work independent of how many leases exist.
///
/// Laid out for few cache misses, since with a large state nearly every record end_block reads
/// is cold: each entry is one allocation holding its key and value side by side (a lookup
/// touches the hash table's control bytes, one 16-byte slot and that allocation), and the
/// ordered sets store keys inline without their table byte, so a walk compares bytes in place
/// instead of chasing a pointer per comparison. Walking one table never touches the others.
#[derive(Debug, Clone)]
pub struct MemStore {
    tables: Vec<Table>,
    hasher: RandomState,
    len: usize,
}

/// One table: the entries whose keys share a first byte.
#[derive(Debug, Clone, Default)]
struct Table {
    entries: HashTable<Entry>,
    /// Keys without their first byte, in order.
    order: BTreeSet<Tail>,
}

/// A key without its table byte, inline up to 64 bytes (every key of the chain but balances of
/// long denominations).
type Tail = SmallVec<[u8; 64]>;

/// One allocation: `u16_le(len(key)) ‖ key ‖ value`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry(Box<[u8]>);

impl Entry {
    fn new(key: &[u8], value: &[u8]) -> Entry {
        let len = u16::try_from(key.len()).expect("store keys are shorter than 64 KiB");
        let mut bytes = Vec::with_capacity(2 + key.len() + value.len());
        bytes.extend_from_slice(&len.to_le_bytes());
        bytes.extend_from_slice(key);
        bytes.extend_from_slice(value);
        Entry(bytes.into_boxed_slice())
    }

    /// Replaces the value, in place when its length is unchanged (most updates: a state, a
    /// balance, a height): no allocation, and no freeing of a block the cache has long lost.
    fn set_value(&mut self, key: &[u8], value: &[u8]) {
        let start = 2 + self.key_len();
        match self.0.len() - start == value.len() {
            true => self.0[start..].copy_from_slice(value),
            false => *self = Entry::new(key, value),
        }
    }

    fn key_len(&self) -> usize {
        usize::from(u16::from_le_bytes([self.0[0], self.0[1]]))
    }

    fn key(&self) -> &[u8] {
        &self.0[2..2 + self.key_len()]
    }

    fn value(&self) -> &[u8] {
        &self.0[2 + self.key_len()..]
    }
}

fn split(key: &[u8]) -> (usize, &[u8]) {
    match key.split_first() {
        Some((t, tail)) => (usize::from(*t), tail),
        None => (0, key),
    }
}

impl Default for MemStore {
    fn default() -> MemStore {
        MemStore {
            tables: vec![Table::default(); 256],
            hasher: RandomState::new(),
            len: 0,
        }
    }
}

impl PartialEq for MemStore {
    fn eq(&self, other: &MemStore) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
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
        self.len
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// All entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.tables.iter().enumerate().flat_map(move |(t, table)| {
            table.order.iter().map(move |tail| {
                let e = self.entry(t, tail).expect("ordered keys have entries");
                (e.key(), e.value())
            })
        })
    }

    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The entry of table `t` whose key is `t ‖ tail`.
    fn entry(&self, t: usize, tail: &[u8]) -> Option<&Entry> {
        let mut key: SmallVec<[u8; 80]> = SmallVec::with_capacity(1 + tail.len());
        key.push(t as u8);
        key.extend_from_slice(tail);
        self.find(&key)
    }

    fn find(&self, key: &[u8]) -> Option<&Entry> {
        let (t, _) = split(key);
        self.tables[t]
            .entries
            .find(self.hash(key), |e| e.key() == key)
    }

    fn scan(&self, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        if prefix.is_empty() {
            return self.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
        }
        let (t, tail) = split(prefix);
        self.tables[t]
            .order
            .range::<[u8], _>((std::ops::Bound::Included(tail), std::ops::Bound::Unbounded))
            .take_while(|k| k.starts_with(tail))
            .map(|k| {
                let e = self.entry(t, k).expect("ordered keys have entries");
                (e.key().to_vec(), e.value().to_vec())
            })
            .collect()
    }
}

impl Store for MemStore {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.find(key).map(|e| e.value().to_vec())
    }

    fn put(&mut self, key: &[u8], value: Vec<u8>) {
        let hash = self.hash(key);
        let (t, tail) = split(key);
        let table = &mut self.tables[t];
        let hasher = &self.hasher;
        match table
            .entries
            .entry(hash, |e| e.key() == key, |e| hasher.hash_one(e.key()))
        {
            hash_table::Entry::Occupied(mut o) => o.get_mut().set_value(key, &value),
            hash_table::Entry::Vacant(v) => {
                v.insert(Entry::new(key, &value));
                table.order.insert(Tail::from_slice(tail));
                self.len += 1;
            }
        }
    }

    fn delete(&mut self, key: &[u8]) {
        let hash = self.hash(key);
        let (t, tail) = split(key);
        let table = &mut self.tables[t];
        if let Ok(found) = table.entries.find_entry(hash, |e| e.key() == key) {
            found.remove();
            table.order.remove(tail);
            self.len -= 1;
        }
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.scan(prefix)
    }

    /// Hashes every key first, then looks them all up: with no dependency between the lookups
    /// the processor runs their memory accesses side by side.
    fn prefetch(&self, keys: &[Vec<u8>]) {
        let hashes: SmallVec<[u64; 32]> = keys.iter().map(|k| self.hash(k)).collect();
        let mut sum = 0u8;
        for (key, hash) in keys.iter().zip(hashes) {
            let (t, _) = split(key);
            if let Some(e) = self.tables[t].entries.find(hash, |e| e.key() == &key[..]) {
                sum ^= e.0[e.0.len() - 1];
            }
        }
        std::hint::black_box(sum);
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
