//! The transaction-hash index: which (height, index) carried each transaction's bytes.
//!
//! Transaction hashes are random keys. Inserted into one B-tree, each lands on its own leaf:
//! once the index outgrows a leaf per batch, every hash copies, checksums and writes a page,
//! and that cost grows with the chain. So the index is log-structured:
//!
//! 1. A stored block's hashes first go to [`Pending`], in memory; reads look there first.
//! 2. Once [`INDEX_BATCH`] have gathered, the next block's write transaction writes them, sorted,
//!    as a new **run**: a table of its own (`tx_hash_run_<id>`), filled in key order with rows
//!    of 64 entries (keyed by each row's first hash), so its pages are written once, full, and
//!    one insert writes 64 hashes. It records that every block up to its own height is indexed
//!    (`meta`: [`INDEXED_THROUGH`]). After a crash, the hashes of blocks past that mark are read
//!    back from the `tx_rows` table at open ([`Pending`] is rebuilt), so nothing is lost.
//! 3. When the newest [`FAN_IN`] runs are of one size class, the same transaction merges them
//!    into one (a k-way merge, again written in key order) and deletes them. A hash is rewritten
//!    once per size class, about log₈ of the chain's transactions over [`INDEX_BATCH`] times, and
//!    there are at most `FAN_IN - 1` runs per class to look in. `tx_hash_runs` lists the runs.
//!
//! A lookup reads the runs newest first. When the same bytes are included more than once (a
//! replay, rejected), the index answers with the inclusion that took effect, else the first
//! one: at most one inclusion of the same bytes can take effect (the nonce), so a lookup stops
//! at the first effective entry, and merges keep the same one.

use std::collections::HashMap;

use redb::{ReadOnlyTable, ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};

use crate::Hash32;

/// How many pending hashes trigger a flush by default: about 8 blocks of 2,000 transactions,
/// ~1 MiB of memory, and the most rows a restart reads back.
pub const INDEX_BATCH: usize = 16_384;

/// How many runs of one size class are merged into one.
pub const FAN_IN: usize = 8;

/// The runs: id (chain order: a higher id holds later inclusions) → how many hashes it holds.
pub(crate) const RUNS: TableDefinition<u64, u64> = TableDefinition::new("tx_hash_runs");

/// One entry of a run: hash ‖ height (u64 LE) ‖ index (u32 LE) ‖ rejected (0/1).
const ENTRY: usize = 32 + 8 + 4 + 1;

/// Entries per row of a run: one redb insert writes this many (an insert rebuilds its B-tree
/// leaf, so one per hash would cost a leaf copy per hash).
const PER_ROW: usize = 64;

/// The table of run `id`.
fn run_name(id: u64) -> String {
    format!("tx_hash_run_{id:020}")
}

/// A run's rows: the first hash of the row → up to [`PER_ROW`] entries, sorted by hash.
fn run_table(name: &str) -> TableDefinition<'_, Hash32, &'static [u8]> {
    TableDefinition::new(name)
}

fn encode_entry(out: &mut Vec<u8>, hash: &Hash32, i: &Inclusion) {
    out.extend_from_slice(hash);
    out.extend_from_slice(&i.height.to_le_bytes());
    out.extend_from_slice(&i.index.to_le_bytes());
    out.push(u8::from(i.rejected));
}

fn decode_entry(e: &[u8]) -> (Hash32, Inclusion) {
    let hash: Hash32 = e[..32].try_into().expect("32 bytes");
    let height = u64::from_le_bytes(e[32..40].try_into().expect("8 bytes"));
    let index = u32::from_le_bytes(e[40..44].try_into().expect("4 bytes"));
    (
        hash,
        Inclusion {
            height,
            index,
            rejected: e[44] != 0,
        },
    )
}

/// A row's entries; a row whose length is not a whole number of entries is damaged.
fn row_entries(row: &[u8]) -> Result<std::slice::ChunksExact<'_, u8>, redb::Error> {
    if row.is_empty() || !row.len().is_multiple_of(ENTRY) {
        return Err(redb::Error::Corrupted(format!(
            "a tx-hash index row of {} bytes (entries are {ENTRY})",
            row.len()
        )));
    }
    Ok(row.chunks_exact(ENTRY))
}

/// Writes a run's entries, in hash order, [`PER_ROW`] to a row.
struct RunWriter<'t> {
    table: redb::Table<'t, Hash32, &'static [u8]>,
    row: Vec<u8>,
    first: Hash32,
    count: u64,
}

impl<'t> RunWriter<'t> {
    fn new(table: redb::Table<'t, Hash32, &'static [u8]>) -> Self {
        RunWriter {
            table,
            row: Vec::with_capacity(PER_ROW * ENTRY),
            first: [0; 32],
            count: 0,
        }
    }

    fn push(&mut self, hash: &Hash32, i: &Inclusion) -> Result<(), redb::Error> {
        if self.row.is_empty() {
            self.first = *hash;
        }
        encode_entry(&mut self.row, hash, i);
        self.count += 1;
        if self.row.len() == PER_ROW * ENTRY {
            self.write_row()?;
        }
        Ok(())
    }

    fn write_row(&mut self) -> Result<(), redb::Error> {
        if !self.row.is_empty() {
            self.table.insert(self.first, self.row.as_slice())?;
            self.row.clear();
        }
        Ok(())
    }

    /// Writes the last row; returns how many entries the run holds.
    fn finish(mut self) -> Result<u64, redb::Error> {
        self.write_row()?;
        Ok(self.count)
    }
}

/// Reads a run's entries in hash order.
struct RunReader<'a> {
    rows: redb::Range<'a, Hash32, &'static [u8]>,
    row: Vec<u8>,
    at: usize,
}

impl<'a> RunReader<'a> {
    fn next(&mut self) -> Result<Option<(Hash32, Inclusion)>, redb::Error> {
        while self.at >= self.row.len() {
            let Some(row) = self.rows.next() else {
                return Ok(None);
            };
            let (_, v) = row?;
            // Only checked here: a damaged row is refused before any of it is merged.
            let _ = row_entries(v.value())?;
            self.row = v.value().to_vec();
            self.at = 0;
        }
        let e = decode_entry(&self.row[self.at..self.at + ENTRY]);
        self.at += ENTRY;
        Ok(Some(e))
    }
}

/// The `meta` key of the last height whose hashes are all in the runs.
pub(crate) const INDEXED_THROUGH: &str = "tx_hashes_indexed_through";

/// Where a transaction was included, and whether it was rejected there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Inclusion {
    pub(crate) height: u64,
    pub(crate) index: u32,
    pub(crate) rejected: bool,
}

impl Inclusion {
    /// Where: (height, index).
    pub(crate) fn at(&self) -> (u64, u32) {
        (self.height, self.index)
    }
}

/// Whether a later inclusion `new` of the same bytes replaces an earlier one that was
/// `old_rejected` in the index: only a rejected one, by one that took effect.
pub(crate) fn replaces(old_rejected: bool, new: &Inclusion) -> bool {
    old_rejected && !new.rejected
}

/// Hashes of stored blocks not yet in a run.
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

    /// Forgets everything (after a flush).
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
    }
}

/// The size class of a run of `len` hashes: 0 below `batch × FAN_IN`, then one more per factor
/// of [`FAN_IN`].
fn size_class(len: u64, batch: usize) -> u32 {
    let fan = FAN_IN as u64;
    let mut cap = (batch as u64).max(1).saturating_mul(fan);
    let mut class = 0;
    while len >= cap {
        class += 1;
        cap = cap.saturating_mul(fan);
    }
    class
}

/// Writes `pending` as a new run, then merges the newest runs while [`FAN_IN`] of them share a
/// size class (`batch`: the flush size). Part of the caller's write transaction.
pub(crate) fn flush(
    w: &WriteTransaction,
    pending: &Pending,
    batch: usize,
) -> Result<(), redb::Error> {
    let mut runs: Vec<(u64, u64)> = {
        let t = w.open_table(RUNS)?;
        t.iter()?
            .map(|e| e.map(|(k, v)| (k.value(), v.value())))
            .collect::<Result<_, _>>()?
    };
    let id = runs.last().map_or(0, |r| r.0 + 1);
    let len = {
        let name = run_name(id);
        let mut run = RunWriter::new(w.open_table(run_table(&name))?);
        for (hash, inclusion) in pending.sorted() {
            run.push(&hash, &inclusion)?;
        }
        run.finish()?
    };
    w.open_table(RUNS)?.insert(id, len)?;
    runs.push((id, len));
    while runs.len() >= FAN_IN {
        let tail = &runs[runs.len() - FAN_IN..];
        let class = size_class(tail[0].1, batch);
        if tail.iter().any(|r| size_class(r.1, batch) != class) {
            break;
        }
        let merged = merge(w, tail)?;
        runs.truncate(runs.len() - FAN_IN);
        runs.push(merged);
    }
    Ok(())
}

/// Merges runs `tail` (oldest first) into a new run and deletes them; returns the new run.
fn merge(w: &WriteTransaction, tail: &[(u64, u64)]) -> Result<(u64, u64), redb::Error> {
    let id = tail.last().map_or(0, |r| r.0 + 1);
    let names: Vec<String> = tail.iter().map(|r| run_name(r.0)).collect();
    let out_name = run_name(id);
    let count = {
        let sources = names
            .iter()
            .map(|n| w.open_table(run_table(n)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut readers = sources
            .iter()
            .map(|t| {
                t.iter().map(|rows| RunReader {
                    rows,
                    row: Vec::new(),
                    at: 0,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut heads = readers
            .iter_mut()
            .map(RunReader::next)
            .collect::<Result<Vec<_>, _>>()?;
        let mut out = RunWriter::new(w.open_table(run_table(&out_name))?);
        while let Some(min) = heads.iter().flatten().map(|(h, _)| *h).min() {
            // Older runs first: the same bytes' inclusions in chain order.
            let mut chosen: Option<Inclusion> = None;
            for (reader, head) in readers.iter_mut().zip(heads.iter_mut()) {
                if let Some((h, new)) = *head
                    && h == min
                {
                    chosen = Some(match chosen {
                        Some(old) if !replaces(old.rejected, &new) => old,
                        _ => new,
                    });
                    *head = reader.next()?;
                }
            }
            out.push(&min, &chosen.expect("the smallest head is some run's"))?;
        }
        out.finish()?
    };
    for n in &names {
        w.delete_table(run_table(n))?;
    }
    let mut runs = w.open_table(RUNS)?;
    for r in tail {
        runs.remove(r.0)?;
    }
    runs.insert(id, count)?;
    Ok((id, count))
}

/// The runs as one read transaction sees them, newest first.
pub(crate) struct Runs {
    tables: Vec<ReadOnlyTable<Hash32, &'static [u8]>>,
}

impl Runs {
    /// Opens every run.
    pub(crate) fn open(r: &ReadTransaction) -> Result<Runs, redb::Error> {
        let ids: Vec<u64> = r
            .open_table(RUNS)?
            .iter()?
            .map(|e| e.map(|(k, _)| k.value()))
            .collect::<Result<_, _>>()?;
        let tables = ids
            .iter()
            .rev()
            .map(|id| r.open_table(run_table(&run_name(*id))))
            .collect::<Result<_, _>>()?;
        Ok(Runs { tables })
    }

    /// The inclusion of `hash` that took effect, else the first one; none if not indexed.
    pub(crate) fn get(&self, hash: &Hash32) -> Result<Option<Inclusion>, redb::Error> {
        let mut first = None;
        for t in &self.tables {
            if let Some(found) = Self::find(t, hash)? {
                if !found.rejected {
                    return Ok(Some(found));
                }
                first = Some(found);
            }
        }
        Ok(first)
    }

    /// `hash` in one run: in the last row starting at or before it.
    fn find(
        t: &ReadOnlyTable<Hash32, &'static [u8]>,
        hash: &Hash32,
    ) -> Result<Option<Inclusion>, redb::Error> {
        let Some(row) = t.range(..=*hash)?.next_back() else {
            return Ok(None);
        };
        let (_, v) = row?;
        let entries: Vec<&[u8]> = row_entries(v.value())?.collect();
        Ok(entries
            .binary_search_by(|e| e[..32].cmp(hash.as_slice()))
            .ok()
            .map(|i| decode_entry(entries[i]).1))
    }
}

/// How many runs there are, and how many entries they hold (as `tx_hash_runs` records).
pub(crate) fn stats(r: &ReadTransaction) -> Result<(usize, u64), redb::Error> {
    let mut runs = 0;
    let mut entries = 0;
    for run in r.open_table(RUNS)?.iter()? {
        runs += 1;
        entries += run?.1.value();
    }
    Ok((runs, entries))
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
