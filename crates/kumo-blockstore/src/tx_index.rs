//! The `tx_hashes` index, written in batches rather than with every block.
//!
//! Transaction hashes are random keys: each insert into redb's B-tree lands on its own leaf, so
//! indexing a block of 2,000 transactions copied, checksummed and wrote about 2,000 pages, two
//! thirds of the cost of storing the block. Inserted together, the hashes of several blocks
//! share those pages.
//!
//! So a stored block's hashes first go to [`Pending`], in memory, and reads look there before
//! the table. Once [`INDEX_BATCH`] have gathered, the next block's write transaction also
//! writes them all to `tx_hashes`, and records that every block up to its own height is indexed
//! (`meta`: [`INDEXED_THROUGH`]). After a crash, the hashes of blocks past that mark are read
//! back from the `tx_rows` table at open ([`Pending`] is rebuilt), so nothing is lost.
//!
//! When the same bytes are included more than once (a replay, rejected), the index keeps the
//! inclusion that took effect, else the first one. At most one inclusion of the same bytes can
//! take effect (the nonce), which is what lets a read decide from the pending entry alone in
//! every case but one: a rejected pending entry defers to an older one in the table.

use std::collections::HashMap;

use crate::Hash32;

/// How many pending hashes trigger a flush by default: about 8 blocks of 2,000 transactions,
/// ~1 MiB of memory, and the most rows a restart reads back.
pub const INDEX_BATCH: usize = 16_384;

/// The `meta` key of the last height whose hashes are all in `tx_hashes`.
pub(crate) const INDEXED_THROUGH: &str = "tx_hashes_indexed_through";

/// Where a transaction was included, and whether it was rejected there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Inclusion {
    pub(crate) height: u64,
    pub(crate) index: u32,
    pub(crate) rejected: bool,
}

impl Inclusion {
    /// The table's value.
    pub(crate) fn at(&self) -> (u64, u32) {
        (self.height, self.index)
    }
}

/// Whether a later inclusion `new` of the same bytes replaces an earlier one that was
/// `old_rejected` in the index: only a rejected one, by one that took effect.
pub(crate) fn replaces(old_rejected: bool, new: &Inclusion) -> bool {
    old_rejected && !new.rejected
}

/// Hashes of stored blocks not yet in `tx_hashes`.
#[derive(Debug, Default, Clone)]
pub(crate) struct Pending {
    /// Keyed by sha256 output: a seeded fast hash spreads them as well as SipHash, for less.
    entries: HashMap<Hash32, Inclusion, foldhash::fast::RandomState>,
}

impl Pending {
    /// Records an inclusion, in chain order.
    pub(crate) fn add(&mut self, hash: Hash32, new: Inclusion) {
        match self.entries.get_mut(&hash) {
            Some(old) => {
                if replaces(old.rejected, &new) {
                    *old = new;
                }
            }
            None => {
                self.entries.insert(hash, new);
            }
        }
    }

    /// The pending inclusion of `hash`.
    pub(crate) fn get(&self, hash: &Hash32) -> Option<Inclusion> {
        self.entries.get(hash).copied()
    }

    /// How many hashes are pending.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The pending entries, sorted by hash (neighbouring keys share the table's pages).
    pub(crate) fn sorted(&self) -> Vec<(Hash32, Inclusion)> {
        let mut v: Vec<(Hash32, Inclusion)> = self.entries.iter().map(|(h, i)| (*h, *i)).collect();
        v.sort_unstable_by_key(|a| a.0);
        v
    }

    /// Adds `later`'s inclusions, which come after these in chain order.
    pub(crate) fn merge(&mut self, later: Pending) {
        for (hash, new) in later.entries {
            self.add(hash, new);
        }
    }

    /// Forgets everything (after a flush).
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(height: u64, rejected: bool) -> Inclusion {
        Inclusion {
            height,
            index: 0,
            rejected,
        }
    }

    #[test]
    fn the_inclusion_that_took_effect_wins_else_the_first() {
        let mut p = Pending::default();
        p.add([1; 32], at(5, true));
        p.add([1; 32], at(6, true));
        assert_eq!(
            p.get(&[1; 32]),
            Some(at(5, true)),
            "the first of two rejections"
        );
        p.add([1; 32], at(7, false));
        assert_eq!(
            p.get(&[1; 32]),
            Some(at(7, false)),
            "the one that took effect"
        );
        p.add([1; 32], at(8, true));
        assert_eq!(
            p.get(&[1; 32]),
            Some(at(7, false)),
            "a later replay changes nothing"
        );
        p.add([0; 32], at(9, false));
        let sorted: Vec<Hash32> = p.sorted().into_iter().map(|(h, _)| h).collect();
        assert_eq!(sorted, vec![[0; 32], [1; 32]]);
        p.clear();
        assert_eq!(p.len(), 0);
    }
}
