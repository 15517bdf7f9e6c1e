//! The node's durable record of finalized blocks: what `GET /v1/blocks`, `/v1/txs` and
//! `/v1/events` read.
//!
//! The node writes each finalized block with [`BlockStore::put_executed`] (its execution's
//! output, borrowed: `source.rs`; [`BlockStore::put_block`] takes a [`BlockRecord`] and stores
//! the same), in height order, one redb transaction per block, so a crash leaves either the
//! whole block or none of it. Writing a height again (a node replaying its last block after a
//! restart) is a no-op when the block is identical, and an error when it differs: a finalized
//! block never changes.
//!
//! Tables (redb, one file):
//!
//! | table | key | value |
//! | --- | --- | --- |
//! | `headers` | height | the block without its transactions and events |
//! | `tx_rows` | (height, index / 64) | 64 transactions, their outcomes, where their events are (`chunk.rs`) |
//! | `block_hashes` | block hash | height |
//! | `tx_hash_runs`, `tx_hash_run_<id>` | run id; tx hash | the runs; (height, index, rejected), written in sorted runs merged eight at a time (`tx_index.rs`) |
//! | `event_rows` | (height, index / 64) | 64 events and their transactions' hashes |
//! | `meta` | name | the layout ([`LAYOUT`]); the last height the runs hold every hash of |
//!
//! Values are a version byte and Borsh (`encoding.rs`), each event stored once; the JSON shapes
//! the API serves are built when read. (Before version 1 values were JSON, each event stored
//! twice: about three times the bytes, and the node's costliest write. Before layout 2 each
//! transaction and event was a row of its own.)
//!
//! ```
//! use kumo_blockstore::{BlockRecord, BlockStore, Put};
//! let dir = tempfile::tempdir().unwrap();
//! let store = BlockStore::open(dir.path().join("blocks.redb")).unwrap();
//! let block = BlockRecord {
//!     height: 1, hash: [1; 32], parent: [0; 32], time_ms: 0, proposer: [2; 32],
//!     state_root: [3; 32], txs: vec![], end_events: vec![],
//! };
//! assert_eq!(store.put_block(&block).unwrap(), Put::Written);
//! assert_eq!(store.put_block(&block).unwrap(), Put::AlreadyStored);
//! assert_eq!(store.latest_height().unwrap(), Some(1));
//! ```

mod chunk;
mod encoding;
pub mod record;
mod source;
mod tx_index;

use std::{path::Path, sync::Mutex};

use chunk::{CHUNK, Row, RowBuilder};
use encoding::{StoredEventRef, StoredEventValue, StoredHeader, StoredTx, StoredTxRef};
use kumo_chain::EventRecord;
use redb::{Database, ReadOnlyTable, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use source::BlockSource;
use tx_index::{INDEXED_THROUGH, Inclusion, Pending, RUNS, Runs};

pub use source::ExecutedBlock;
pub use tx_index::{FAN_IN, INDEX_BATCH};

/// What the transaction-hash index holds ([`BlockStore::index_stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexStats {
    /// Sorted runs written (see `tx_index.rs`).
    pub runs: usize,
    /// Entries in them: a hash included again (a replay) is in each run that holds an
    /// inclusion of it, until those runs merge.
    pub indexed: u64,
    /// Hashes of stored blocks still only in memory.
    pub pending: usize,
}

pub use record::{
    BlockMeta, BlockRecord, EventCursor, Hash32, StoredEvent, TxCode, TxErrorRecord, TxOutcome,
    TxRecord, TxSummary,
};

const HEADERS: TableDefinition<u64, &[u8]> = TableDefinition::new("headers");
const TXS: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("tx_rows");
const BLOCK_HASHES: TableDefinition<Hash32, u64> = TableDefinition::new("block_hashes");
const EVENTS: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("event_rows");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// The table layout this version writes and reads (the `meta` key `layout`): 2 is rows of
/// [`chunk::CHUNK`] transactions or events, 3 the transaction-hash index in sorted runs. Stores
/// of older layouts (1: one row each, no `layout` key; 2: one `tx_hashes` B-tree) are refused
/// at open.
pub const LAYOUT: u64 = 3;
const LAYOUT_KEY: &str = "layout";

/// Why the store refused or failed an operation.
#[derive(Debug, thiserror::Error)]
pub enum BlockStoreError {
    /// A height was skipped.
    #[error(
        "block {got} does not follow the last stored block {last}: write block {} first",
        last + 1
    )]
    Gap {
        /// Last stored height.
        last: u64,
        /// The height written.
        got: u64,
    },
    /// A stored height was written again with different content.
    #[error(
        "block {height} is already stored with different content: a finalized block cannot change (is this the right chain's data directory?)"
    )]
    Conflict {
        /// The height.
        height: u64,
    },
    /// The block contradicts itself.
    #[error("block {height} is malformed: {problem}")]
    Invalid {
        /// The height.
        height: u64,
        /// What is wrong.
        problem: String,
    },
    /// The database failed (disk full, I/O error, file locked by another process, ...).
    #[error("block store: {0}")]
    Db(#[from] redb::Error),
    /// The file was written with another table layout (by another version of Kumo).
    #[error(
        "block store: the file has table layout {found}, this version of Kumo reads layout {LAYOUT} (no migration yet): start the node from a fresh home"
    )]
    Layout {
        /// The file's layout (1: before layouts were recorded).
        found: u64,
    },
    /// A stored value does not decode: the file is damaged or from an incompatible version.
    #[error(
        "block store: stored {what} does not decode ({error}): the file is damaged or from an incompatible version"
    )]
    Corrupt {
        /// What was read.
        what: String,
        /// The decoder's complaint.
        error: String,
    },
}

fn db_err(e: impl Into<redb::Error>) -> BlockStoreError {
    BlockStoreError::Db(e.into())
}

/// What [`BlockStore::put_block`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    /// The block is new and now stored.
    Written,
    /// The identical block was already stored; nothing changed.
    AlreadyStored,
}

/// A block's header: what [`BlockStore::header`] reads without its transactions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockHeader {
    /// Height.
    #[serde(skip)]
    pub height: u64,
    /// The block's hash.
    #[serde(with = "record::hex32")]
    pub hash: Hash32,
    /// The parent's hash.
    #[serde(with = "record::hex32")]
    pub parent: Hash32,
    /// Proposer's timestamp, ms since the Unix epoch.
    pub time_ms: u64,
    /// The proposer's public key.
    #[serde(with = "record::hex32")]
    pub proposer: Hash32,
    /// State root after the block.
    #[serde(with = "record::hex32")]
    pub state_root: Hash32,
    /// Number of transactions.
    pub tx_count: u32,
}

/// Finalized blocks, transactions and events in a redb file.
pub struct BlockStore {
    db: Database,
    /// Hashes of stored blocks not yet in the index's runs (see `tx_index.rs`).
    pending: Mutex<Pending>,
    /// Held through [`BlockStore::put_block`], so that a block's pending hashes are recorded
    /// before the next block decides what to flush.
    writer: Mutex<()>,
    /// How many pending hashes trigger a flush.
    index_batch: usize,
}

impl std::fmt::Debug for BlockStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockStore").finish_non_exhaustive()
    }
}

fn decode<T: borsh::BorshDeserialize>(
    bytes: &[u8],
    what: impl FnOnce() -> String,
) -> Result<T, BlockStoreError> {
    encoding::decode(bytes).map_err(|error| BlockStoreError::Corrupt {
        what: what(),
        error,
    })
}

/// The `tx_rows` and `event_rows` tables of a read transaction.
type Tables = (
    ReadOnlyTable<(u64, u32), &'static [u8]>,
    ReadOnlyTable<(u64, u32), &'static [u8]>,
);

/// Reads a stored row's frame.
fn parse_row<'a>(raw: &'a [u8], what: impl FnOnce() -> String) -> Result<Row<'a>, BlockStoreError> {
    Row::parse(raw).map_err(|error| BlockStoreError::Corrupt {
        what: what(),
        error,
    })
}

/// The events `(height, from..from + count)` (`count` none: to the block's end).
fn read_events(
    events: &ReadOnlyTable<(u64, u32), &'static [u8]>,
    height: u64,
    from: u32,
    count: Option<u32>,
) -> Result<Vec<EventRecord>, BlockStoreError> {
    if count == Some(0) {
        return Ok(Vec::new());
    }
    let to = count.map_or(u32::MAX, |c| from.saturating_add(c - 1));
    let ((_, first_row), skip) = chunk::locate(height, from);
    let ((_, last_row), _) = chunk::locate(height, to);
    let mut out = Vec::new();
    for entry in events
        .range((height, first_row)..=(height, last_row))
        .map_err(db_err)?
    {
        let (k, v) = entry.map_err(db_err)?;
        let r = k.value().1;
        let row = parse_row(v.value(), || format!("events of block {height}, row {r}"))?;
        let skip = if r == first_row { skip } else { 0 };
        for (pos, item) in (skip..).zip(row.items_from(skip)) {
            let index = r * CHUNK + pos as u32;
            if index > to {
                break;
            }
            let e: StoredEventValue = decode(item, || format!("event ({height}, {index})"))?;
            out.push(EventRecord {
                height,
                tx_hash: e.tx_hash,
                event: e.event,
            });
        }
    }
    if let Some(c) = count
        && out.len() != c as usize
    {
        return Err(BlockStoreError::Corrupt {
            what: format!("events of block {height} from {from}"),
            error: format!("{} of {c} are stored", out.len()),
        });
    }
    Ok(out)
}

/// A stored transaction with its events joined back.
fn tx_record(
    (_, events): &Tables,
    height: u64,
    index: u32,
    raw: &[u8],
) -> Result<TxRecord, BlockStoreError> {
    let t: StoredTx = decode(raw, || format!("tx ({height}, {index})"))?;
    let events = read_events(events, height, t.first_event, Some(t.event_count))?;
    Ok(joined(t, index, events))
}

/// A stored transaction and its events, as the API serves them.
fn joined(t: StoredTx, index: u32, events: Vec<EventRecord>) -> TxRecord {
    TxRecord {
        hash: t.hash,
        index,
        bytes: t.bytes,
        result: TxOutcome {
            code: t.code.into(),
            error: t.error.map(Into::into),
            sender: t.sender,
            fee: t.fee,
            events,
        },
    }
}

impl BlockStore {
    /// Opens the store at `path`, creating the file if it does not exist, with a
    /// [`BlockStore::DEFAULT_CACHE`] page cache.
    pub fn open(path: impl AsRef<Path>) -> Result<BlockStore, BlockStoreError> {
        BlockStore::open_with_cache(path, BlockStore::DEFAULT_CACHE)
    }

    /// redb's page cache for [`BlockStore::open`]: 64 MiB. Readers mostly want recent blocks,
    /// and redb's own default (1 GiB) lets a busy node's memory grow by a gigabyte of pages
    /// it will not read again.
    pub const DEFAULT_CACHE: usize = 64 << 20;

    /// As [`BlockStore::open`], with a page cache of `cache_bytes`.
    pub fn open_with_cache(
        path: impl AsRef<Path>,
        cache_bytes: usize,
    ) -> Result<BlockStore, BlockStoreError> {
        let db = redb::Builder::new()
            .set_cache_size(cache_bytes)
            .create(path)
            .map_err(db_err)?;
        let w = db.begin_write().map_err(db_err)?;
        {
            w.open_table(HEADERS).map_err(db_err)?;
            w.open_table(TXS).map_err(db_err)?;
            w.open_table(BLOCK_HASHES).map_err(db_err)?;
            w.open_table(RUNS).map_err(db_err)?;
            w.open_table(EVENTS).map_err(db_err)?;
            let mut meta = w.open_table(META).map_err(db_err)?;
            let stored = headers_last(&w.open_table(HEADERS).map_err(db_err)?)?;
            let layout = meta.get(LAYOUT_KEY).map_err(db_err)?.map(|v| v.value());
            match layout {
                Some(LAYOUT) => {}
                Some(found) => return Err(BlockStoreError::Layout { found }),
                None if stored.is_some() => return Err(BlockStoreError::Layout { found: 1 }),
                None => {
                    meta.insert(LAYOUT_KEY, LAYOUT).map_err(db_err)?;
                }
            }
            if meta.get(INDEXED_THROUGH).map_err(db_err)?.is_none() {
                // A new store, or one written before the index was batched: every stored
                // block is indexed.
                let latest = headers_last(&w.open_table(HEADERS).map_err(db_err)?)?;
                meta.insert(INDEXED_THROUGH, latest.unwrap_or(0))
                    .map_err(db_err)?;
            }
        }
        w.commit().map_err(db_err)?;
        let pending = Mutex::new(BlockStore::unindexed(&db)?);
        Ok(BlockStore {
            db,
            pending,
            writer: Mutex::new(()),
            index_batch: INDEX_BATCH,
        })
    }

    /// Writes the transaction-hash index once `entries` hashes have gathered instead of
    /// [`INDEX_BATCH`] (1: with every block). For tests and tuning: reads and crash safety are
    /// the same at any size.
    pub fn with_index_batch(mut self, entries: usize) -> BlockStore {
        self.index_batch = entries.max(1);
        self
    }

    /// The hashes of the blocks past the index's mark, read back from `txs` (after a restart).
    fn unindexed(db: &Database) -> Result<Pending, BlockStoreError> {
        let r = db.begin_read().map_err(db_err)?;
        let through = r
            .open_table(META)
            .map_err(db_err)?
            .get(INDEXED_THROUGH)
            .map_err(db_err)?
            .map_or(0, |v| v.value());
        let mut pending = Pending::default();
        let txs = r.open_table(TXS).map_err(db_err)?;
        for entry in txs
            .range((through.saturating_add(1), 0)..)
            .map_err(db_err)?
        {
            let (k, v) = entry.map_err(db_err)?;
            let (height, r) = k.value();
            let row = parse_row(v.value(), || format!("txs of block {height}, row {r}"))?;
            for (pos, item) in row.items_from(0).enumerate() {
                let index = r * CHUNK + pos as u32;
                let t: StoredTx = decode(item, || format!("tx ({height}, {index})"))?;
                pending.add(
                    t.hash,
                    Inclusion {
                        height,
                        index,
                        rejected: TxCode::from(t.code) == TxCode::Rejected,
                    },
                );
            }
        }
        Ok(pending)
    }

    /// How many runs the transaction-hash index has and what they and memory hold.
    pub fn index_stats(&self) -> Result<IndexStats, BlockStoreError> {
        let pending = self.pending.lock().unwrap_or_else(|p| p.into_inner()).len();
        let r = self.db.begin_read().map_err(db_err)?;
        let (runs, indexed) = tx_index::stats(&r).map_err(db_err)?;
        Ok(IndexStats {
            runs,
            indexed,
            pending,
        })
    }

    /// The highest stored height; none while the store is empty.
    pub fn latest_height(&self) -> Result<Option<u64>, BlockStoreError> {
        let r = self.db.begin_read().map_err(db_err)?;
        headers_last(&r.open_table(HEADERS).map_err(db_err)?)
    }

    /// Stores a finalized block. The first block may have any height; every later one must be
    /// the last stored height + 1, or an already stored height with identical content (a no-op).
    pub fn put_block(&self, block: &BlockRecord) -> Result<Put, BlockStoreError> {
        // A record carries each transaction's index; the store keeps only its position.
        if let Some((i, tx)) = block
            .txs
            .iter()
            .enumerate()
            .find(|(i, tx)| tx.index as usize != *i)
        {
            return Err(BlockStoreError::Invalid {
                height: block.height,
                problem: format!("transaction at position {i} says index {}", tx.index),
            });
        }
        self.put(block)
    }

    /// [`BlockStore::put_block`] for a block as the state machine's execution left it (the
    /// node's path): stored without building its [`BlockRecord`], which would copy every
    /// transaction and event. Stores exactly what `put_block(&block.to_record())` stores.
    pub fn put_executed(&self, block: &ExecutedBlock<'_>) -> Result<Put, BlockStoreError> {
        self.put(block)
    }

    fn put(&self, block: &impl BlockSource) -> Result<Put, BlockStoreError> {
        let meta = block.meta();
        let txs = block.txs();
        check_consistent(&meta, &txs, block.end_events())?;
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let h = meta.height;
        match self.latest_height()? {
            Some(last) if h <= last => {
                return match self.block(h)? {
                    Some(stored) if block.is(&stored) => Ok(Put::AlreadyStored),
                    _ => Err(BlockStoreError::Conflict { height: h }),
                };
            }
            Some(last) if h != last + 1 => return Err(BlockStoreError::Gap { last, got: h }),
            _ => {}
        }
        let too_many = |what: &str| BlockStoreError::Invalid {
            height: h,
            problem: format!("more than 2^32 {what}"),
        };
        let tx_events: usize = txs.iter().map(|t| t.events.len()).sum();
        let header = StoredHeader {
            hash: meta.hash,
            parent: meta.parent,
            time_ms: meta.time_ms,
            proposer: meta.proposer,
            state_root: meta.state_root,
            tx_count: u32::try_from(txs.len()).map_err(|_| too_many("transactions"))?,
            end_events_from: u32::try_from(tx_events).map_err(|_| too_many("events"))?,
        };
        // This block's hashes; with the pending ones, flushed, when it is time.
        let new_hashes: Vec<(Hash32, Inclusion)> = txs
            .iter()
            .enumerate()
            .map(|(index, tx)| {
                let inclusion = Inclusion {
                    height: h,
                    // Fits: the header's count did.
                    index: index as u32,
                    rejected: tx.code == TxCode::Rejected,
                };
                (*tx.hash, inclusion)
            })
            .collect();
        let flushed = {
            let pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            (pending.len() + txs.len() >= self.index_batch).then(|| {
                let mut all = pending.clone();
                for (hash, inclusion) in &new_hashes {
                    all.add(*hash, *inclusion);
                }
                all
            })
        };
        let w = self.db.begin_write().map_err(db_err)?;
        {
            let mut headers = w.open_table(HEADERS).map_err(db_err)?;
            // Another writer may have raced us between the check above and this transaction.
            if let Some((k, _)) = headers.last().map_err(db_err)?
                && k.value() + 1 != h
            {
                return Err(BlockStoreError::Gap {
                    last: k.value(),
                    got: h,
                });
            }
            headers
                .insert(h, encoding::encode(&header).as_slice())
                .map_err(db_err)?;
            w.open_table(BLOCK_HASHES)
                .map_err(db_err)?
                .insert(meta.hash, h)
                .map_err(db_err)?;
            let mut tx_rows = w.open_table(TXS).map_err(db_err)?;
            let mut first_event = 0u32;
            let stored = txs.iter().map(|tx| {
                // Fits: the events of all transactions fit a u32 (checked above).
                let event_count = tx.events.len() as u32;
                first_event += event_count;
                StoredTxRef {
                    hash: tx.hash,
                    bytes: tx.bytes,
                    code: tx.code.into(),
                    error: tx.error.as_ref(),
                    sender: tx.sender,
                    fee: tx.fee,
                    first_event: first_event - event_count,
                    event_count,
                }
            });
            put_rows(&mut tx_rows, h, stored)?;
            if let Some(all) = &flushed {
                tx_index::flush(&w, all, self.index_batch).map_err(db_err)?;
                w.open_table(META)
                    .map_err(db_err)?
                    .insert(INDEXED_THROUGH, h)
                    .map_err(db_err)?;
            }
            let mut events = w.open_table(EVENTS).map_err(db_err)?;
            let block_events = txs.iter().flat_map(|t| t.events);
            let stored = block_events
                .chain(block.end_events())
                .map(|e| StoredEventRef {
                    tx_hash: &e.tx_hash,
                    event: &e.event,
                });
            put_rows(&mut events, h, stored)?;
        }
        w.commit().map_err(db_err)?;
        // Only now: a reader that finds a hash here reads a committed transaction.
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if flushed.is_some() {
            pending.clear();
        } else {
            for (hash, inclusion) in new_hashes {
                pending.add(hash, inclusion);
            }
        }
        Ok(Put::Written)
    }

    /// The block at `height`.
    pub fn block(&self, height: u64) -> Result<Option<BlockRecord>, BlockStoreError> {
        let r = self.db.begin_read().map_err(db_err)?;
        let headers = r.open_table(HEADERS).map_err(db_err)?;
        let Some(raw) = headers.get(height).map_err(db_err)? else {
            return Ok(None);
        };
        let header: StoredHeader = decode(raw.value(), || format!("block {height}"))?;
        let tables = (
            r.open_table(TXS).map_err(db_err)?,
            r.open_table(EVENTS).map_err(db_err)?,
        );
        let mut events = read_events(&tables.1, height, 0, None)?.into_iter();
        let mut txs = Vec::with_capacity(header.tx_count as usize);
        for entry in tables
            .0
            .range((height, 0)..=(height, u32::MAX))
            .map_err(db_err)?
        {
            let (k, v) = entry.map_err(db_err)?;
            let r = k.value().1;
            let row = parse_row(v.value(), || format!("txs of block {height}, row {r}"))?;
            for (pos, item) in row.items_from(0).enumerate() {
                let index = r * CHUNK + pos as u32;
                let t: StoredTx = decode(item, || format!("tx ({height}, {index})"))?;
                let own: Vec<EventRecord> = events.by_ref().take(t.event_count as usize).collect();
                if own.len() != t.event_count as usize {
                    return Err(BlockStoreError::Corrupt {
                        what: format!("events of tx ({height}, {index})"),
                        error: format!("{} of {} are stored", own.len(), t.event_count),
                    });
                }
                txs.push(joined(t, index, own));
            }
        }
        if txs.len() != header.tx_count as usize {
            return Err(BlockStoreError::Corrupt {
                what: format!("block {height}"),
                error: format!(
                    "{} of its {} transactions are stored",
                    txs.len(),
                    header.tx_count
                ),
            });
        }
        Ok(Some(BlockRecord {
            height,
            hash: header.hash,
            parent: header.parent,
            time_ms: header.time_ms,
            proposer: header.proposer,
            state_root: header.state_root,
            txs,
            end_events: events.collect(),
        }))
    }

    /// The header of the block at `height`, without reading its transactions.
    pub fn header(&self, height: u64) -> Result<Option<BlockHeader>, BlockStoreError> {
        let r = self.db.begin_read().map_err(db_err)?;
        let headers = r.open_table(HEADERS).map_err(db_err)?;
        let Some(raw) = headers.get(height).map_err(db_err)? else {
            return Ok(None);
        };
        let h: StoredHeader = decode(raw.value(), || format!("block {height}"))?;
        Ok(Some(BlockHeader {
            height,
            hash: h.hash,
            parent: h.parent,
            time_ms: h.time_ms,
            proposer: h.proposer,
            state_root: h.state_root,
            tx_count: h.tx_count,
        }))
    }

    /// The block with this hash.
    pub fn block_by_hash(&self, hash: &Hash32) -> Result<Option<BlockRecord>, BlockStoreError> {
        let height = {
            let r = self.db.begin_read().map_err(db_err)?;
            let t = r.open_table(BLOCK_HASHES).map_err(db_err)?;
            t.get(hash).map_err(db_err)?.map(|v| v.value())
        };
        match height {
            Some(h) => self.block(h),
            None => Ok(None),
        }
    }

    /// The transaction with this hash and the height of its block. If the same bytes were
    /// included more than once, the inclusion that took effect (ok or failed) is the answer.
    pub fn tx(&self, hash: &Hash32) -> Result<Option<(u64, TxRecord)>, BlockStoreError> {
        self.tx_since(hash, 0)
    }

    /// [`BlockStore::tx`] of a transaction that cannot be in a block below `since`: one the
    /// mempool admitted when `since` was the last committed height (a transaction already
    /// included fails admission on its nonce). A miss then skips the part of the index flushed
    /// before `since`, which is what keeps waiting for a commit cheap.
    pub fn tx_since(
        &self,
        hash: &Hash32,
        since: u64,
    ) -> Result<Option<(u64, TxRecord)>, BlockStoreError> {
        Ok(self
            .look_up(std::slice::from_ref(hash), since, tx_record)?
            .pop()
            .flatten())
    }

    /// [`BlockStore::tx`] for each of `hashes`, in one read transaction.
    pub fn txs(&self, hashes: &[Hash32]) -> Result<Vec<Option<(u64, TxRecord)>>, BlockStoreError> {
        self.look_up(hashes, 0, tx_record)
    }

    /// As [`BlockStore::txs`], only where each transaction is and what became of it: no bytes,
    /// no events (cheaper to read and to send).
    pub fn tx_summaries(
        &self,
        hashes: &[Hash32],
    ) -> Result<Vec<Option<(u64, TxSummary)>>, BlockStoreError> {
        self.tx_summaries_since(hashes, 0)
    }

    /// [`BlockStore::tx_summaries`] of transactions that cannot be in a block below `since`
    /// (see [`BlockStore::tx_since`]).
    pub fn tx_summaries_since(
        &self,
        hashes: &[Hash32],
        since: u64,
    ) -> Result<Vec<Option<(u64, TxSummary)>>, BlockStoreError> {
        self.look_up(hashes, since, |_, height, index, raw| {
            let t: StoredTx = decode(raw, || format!("tx ({height}, {index})"))?;
            Ok(TxSummary {
                index,
                code: t.code.into(),
                error: t.error.map(Into::into),
            })
        })
    }

    /// Finds each of `hashes` (the inclusion that took effect, see [`BlockStore::tx`]) and reads
    /// it with `read`, in one read transaction. The index's runs are searched only if they may
    /// hold a block at `since` or above.
    fn look_up<T>(
        &self,
        hashes: &[Hash32],
        since: u64,
        read: impl Fn(&Tables, u64, u32, &[u8]) -> Result<T, BlockStoreError>,
    ) -> Result<Vec<Option<(u64, T)>>, BlockStoreError> {
        // The pending hashes before the read transaction: a hash a flush took from them after
        // this look is in the table that transaction reads.
        let pending: Vec<Option<Inclusion>> = {
            let p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            hashes.iter().map(|h| p.get(h)).collect()
        };
        let r = self.db.begin_read().map_err(db_err)?;
        let runs = Runs::open(&r).map_err(db_err)?;
        // The runs hold the blocks up to the mark, the pending hashes those after it.
        let search_runs = since == 0
            || r.open_table(META)
                .map_err(db_err)?
                .get(INDEXED_THROUGH)
                .map_err(db_err)?
                .is_some_and(|through| through.value() >= since);
        let tables = (
            r.open_table(TXS).map_err(db_err)?,
            r.open_table(EVENTS).map_err(db_err)?,
        );
        hashes
            .iter()
            .zip(pending)
            .map(|(hash, pending)| {
                let indexed = || -> Result<Option<(u64, u32)>, BlockStoreError> {
                    if !search_runs {
                        return Ok(None);
                    }
                    Ok(runs.get(hash).map_err(db_err)?.map(|i| i.at()))
                };
                let found = match pending {
                    // Took effect: no other inclusion of these bytes did.
                    Some(p) if !p.rejected => Some(p.at()),
                    // A rejected replay defers to an earlier inclusion.
                    Some(p) => Some(indexed()?.unwrap_or(p.at())),
                    None => indexed()?,
                };
                let Some((h, i)) = found else {
                    return Ok(None);
                };
                let not_there = || BlockStoreError::Corrupt {
                    what: format!("tx {}", hex::encode(hash)),
                    error: format!("indexed at ({h}, {i}) but not stored there"),
                };
                let (key, pos) = chunk::locate(h, i);
                let raw = tables.0.get(key).map_err(db_err)?.ok_or_else(not_there)?;
                let row = parse_row(raw.value(), || format!("txs of block {h}, row {}", key.1))?;
                let item = row.get(pos).ok_or_else(not_there)?;
                Ok(Some((h, read(&tables, h, i, item)?)))
            })
            .collect()
    }

    /// Up to `limit` events from `from` on, in chain order.
    pub fn events(
        &self,
        from: EventCursor,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, BlockStoreError> {
        let r = self.db.begin_read().map_err(db_err)?;
        let t = r.open_table(EVENTS).map_err(db_err)?;
        let mut out = Vec::new();
        let (first, skip) = chunk::locate(from.height, from.index);
        if limit == 0 {
            return Ok(out);
        }
        for entry in t.range(first..).map_err(db_err)? {
            let (k, v) = entry.map_err(db_err)?;
            let (height, r) = k.value();
            let row = parse_row(v.value(), || format!("events of block {height}, row {r}"))?;
            let skip = if (height, r) == first { skip } else { 0 };
            for (pos, item) in (skip..).zip(row.items_from(skip)) {
                let index = r * CHUNK + pos as u32;
                let e: StoredEventValue = decode(item, || format!("event {:?}", (height, index)))?;
                out.push(StoredEvent {
                    height,
                    index,
                    tx_hash: e.tx_hash,
                    event: e.event,
                });
                if out.len() == limit {
                    return Ok(out);
                }
            }
        }
        Ok(out)
    }
}

/// Writes `items` as block `h`'s rows of [`CHUNK`] (`chunk.rs`), each encoded straight into its
/// row.
fn put_rows<T: borsh::BorshSerialize>(
    table: &mut redb::Table<'_, (u64, u32), &'static [u8]>,
    h: u64,
    items: impl IntoIterator<Item = T>,
) -> Result<(), BlockStoreError> {
    let mut row = RowBuilder::default();
    let mut key = chunk::locate(h, 0).0;
    for item in items {
        row.push_with(|bytes| encoding::encode_into(bytes, &item));
        if row.is_full() {
            table.insert(key, row.finish().as_slice()).map_err(db_err)?;
            key.1 += 1;
        }
    }
    if !row.is_empty() {
        table.insert(key, row.finish().as_slice()).map_err(db_err)?;
    }
    Ok(())
}

/// The highest height in a `headers` table.
fn headers_last(
    headers: &impl ReadableTable<u64, &'static [u8]>,
) -> Result<Option<u64>, BlockStoreError> {
    Ok(headers.last().map_err(db_err)?.map(|(k, _)| k.value()))
}

/// Refuses blocks whose parts disagree on where they are.
fn check_consistent(
    meta: &BlockMeta,
    txs: &[source::TxSource<'_>],
    end_events: &[EventRecord],
) -> Result<(), BlockStoreError> {
    let bad = |problem: String| {
        Err(BlockStoreError::Invalid {
            height: meta.height,
            problem,
        })
    };
    for (i, tx) in txs.iter().enumerate() {
        if let Some(e) = tx.events.iter().find(|e| e.height != meta.height) {
            return bad(format!("an event of tx {i} is at height {}", e.height));
        }
    }
    if let Some(e) = end_events.iter().find(|e| e.height != meta.height) {
        return bad(format!("an end-of-block event is at height {}", e.height));
    }
    Ok(())
}
