//! The node's durable record of finalized blocks: what `GET /v1/blocks`, `/v1/txs` and
//! `/v1/events` read.
//!
//! The node writes each finalized block with [`BlockStore::put_block`], in height order, one
//! redb transaction per block, so a crash leaves either the whole block or none of it. Writing a
//! height again (a node replaying its last block after a restart) is a no-op when the block is
//! identical, and an error when it differs: a finalized block never changes.
//!
//! Tables (redb, one file):
//!
//! | table | key | value |
//! | --- | --- | --- |
//! | `headers` | height | JSON of the block without its transactions |
//! | `txs` | (height, index) | JSON [`TxRecord`] |
//! | `block_hashes` | block hash | height |
//! | `tx_hashes` | tx hash | (height, index) |
//! | `events` | (height, index) | JSON [`StoredEvent`] |
//!
//! Values are JSON so that a store written by one version reads in the next even as event
//! types grow; the cost is about twice the size of a binary encoding.
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

pub mod record;

use std::path::Path;

use kumo_chain::EventRecord;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

pub use record::{
    BlockMeta, BlockRecord, EventCursor, Hash32, StoredEvent, TxCode, TxErrorRecord, TxOutcome,
    TxRecord,
};

const HEADERS: TableDefinition<u64, &[u8]> = TableDefinition::new("headers");
const TXS: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("txs");
const BLOCK_HASHES: TableDefinition<Hash32, u64> = TableDefinition::new("block_hashes");
const TX_HASHES: TableDefinition<Hash32, (u64, u32)> = TableDefinition::new("tx_hashes");
const EVENTS: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("events");

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

/// A block without its transactions: the `headers` table's value.
#[derive(Serialize, Deserialize, PartialEq)]
struct Header {
    #[serde(with = "record::hex32")]
    hash: Hash32,
    #[serde(with = "record::hex32")]
    parent: Hash32,
    time_ms: u64,
    #[serde(with = "record::hex32")]
    proposer: Hash32,
    #[serde(with = "record::hex32")]
    state_root: Hash32,
    tx_count: u32,
    end_events: Vec<EventRecord>,
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
}

impl std::fmt::Debug for BlockStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockStore").finish_non_exhaustive()
    }
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("records serialize")
}

fn decode<T: DeserializeOwned>(
    bytes: &[u8],
    what: impl FnOnce() -> String,
) -> Result<T, BlockStoreError> {
    serde_json::from_slice(bytes).map_err(|e| BlockStoreError::Corrupt {
        what: what(),
        error: e.to_string(),
    })
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
            w.open_table(TX_HASHES).map_err(db_err)?;
            w.open_table(EVENTS).map_err(db_err)?;
        }
        w.commit().map_err(db_err)?;
        Ok(BlockStore { db })
    }

    /// The highest stored height; none while the store is empty.
    pub fn latest_height(&self) -> Result<Option<u64>, BlockStoreError> {
        let r = self.db.begin_read().map_err(db_err)?;
        let t = r.open_table(HEADERS).map_err(db_err)?;
        Ok(t.last().map_err(db_err)?.map(|(k, _)| k.value()))
    }

    /// Stores a finalized block. The first block may have any height; every later one must be
    /// the last stored height + 1, or an already stored height with identical content (a no-op).
    pub fn put_block(&self, block: &BlockRecord) -> Result<Put, BlockStoreError> {
        check_consistent(block)?;
        let h = block.height;
        match self.latest_height()? {
            Some(last) if h <= last => {
                return match self.block(h)? {
                    Some(stored) if stored == *block => Ok(Put::AlreadyStored),
                    _ => Err(BlockStoreError::Conflict { height: h }),
                };
            }
            Some(last) if h != last + 1 => return Err(BlockStoreError::Gap { last, got: h }),
            _ => {}
        }
        let header = Header {
            hash: block.hash,
            parent: block.parent,
            time_ms: block.time_ms,
            proposer: block.proposer,
            state_root: block.state_root,
            tx_count: u32::try_from(block.txs.len()).map_err(|_| BlockStoreError::Invalid {
                height: h,
                problem: "more than 2^32 transactions".into(),
            })?,
            end_events: block.end_events.clone(),
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
                .insert(h, encode(&header).as_slice())
                .map_err(db_err)?;
            w.open_table(BLOCK_HASHES)
                .map_err(db_err)?
                .insert(block.hash, h)
                .map_err(db_err)?;
            let mut txs = w.open_table(TXS).map_err(db_err)?;
            let mut tx_hashes = w.open_table(TX_HASHES).map_err(db_err)?;
            for tx in &block.txs {
                txs.insert((h, tx.index), encode(tx).as_slice())
                    .map_err(db_err)?;
                // A hash may appear more than once on chain (a replay included and rejected).
                // Its lookup keeps the first inclusion that took effect, else the first one.
                let keep_old = match tx_hashes.get(tx.hash).map_err(db_err)? {
                    None => false,
                    Some(at) => {
                        let at = at.value();
                        let old = txs.get(at).map_err(db_err)?.map(|v| v.value().to_vec());
                        let old: Option<TxRecord> = match old {
                            Some(bytes) => Some(decode(&bytes, || format!("tx {at:?}"))?),
                            None => None,
                        };
                        old.is_some_and(|o| o.result.code != TxCode::Rejected)
                            || tx.result.code == TxCode::Rejected
                    }
                };
                if !keep_old {
                    tx_hashes.insert(tx.hash, (h, tx.index)).map_err(db_err)?;
                }
            }
            let mut events = w.open_table(EVENTS).map_err(db_err)?;
            for e in block.events() {
                events
                    .insert((h, e.index), encode(&e).as_slice())
                    .map_err(db_err)?;
            }
        }
        w.commit().map_err(db_err)?;
        Ok(Put::Written)
    }

    /// The block at `height`.
    pub fn block(&self, height: u64) -> Result<Option<BlockRecord>, BlockStoreError> {
        let r = self.db.begin_read().map_err(db_err)?;
        let headers = r.open_table(HEADERS).map_err(db_err)?;
        let Some(raw) = headers.get(height).map_err(db_err)? else {
            return Ok(None);
        };
        let header: Header = decode(raw.value(), || format!("block {height}"))?;
        let t = r.open_table(TXS).map_err(db_err)?;
        let mut txs = Vec::with_capacity(header.tx_count as usize);
        for entry in t.range((height, 0)..=(height, u32::MAX)).map_err(db_err)? {
            let (k, v) = entry.map_err(db_err)?;
            txs.push(decode(v.value(), || format!("tx {:?}", k.value()))?);
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
            end_events: header.end_events,
        }))
    }

    /// The header of the block at `height`, without reading its transactions.
    pub fn header(&self, height: u64) -> Result<Option<BlockHeader>, BlockStoreError> {
        let r = self.db.begin_read().map_err(db_err)?;
        let headers = r.open_table(HEADERS).map_err(db_err)?;
        let Some(raw) = headers.get(height).map_err(db_err)? else {
            return Ok(None);
        };
        let mut h: BlockHeader = decode(raw.value(), || format!("block {height}"))?;
        h.height = height;
        Ok(Some(h))
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
        let r = self.db.begin_read().map_err(db_err)?;
        let at = r.open_table(TX_HASHES).map_err(db_err)?;
        let Some((h, i)) = at.get(hash).map_err(db_err)?.map(|v| v.value()) else {
            return Ok(None);
        };
        let txs = r.open_table(TXS).map_err(db_err)?;
        let raw = txs
            .get((h, i))
            .map_err(db_err)?
            .ok_or_else(|| BlockStoreError::Corrupt {
                what: format!("tx {}", hex::encode(hash)),
                error: format!("indexed at ({h}, {i}) but not stored there"),
            })?;
        Ok(Some((h, decode(raw.value(), || format!("tx ({h}, {i})"))?)))
    }

    /// [`BlockStore::tx`] for each of `hashes`, in one read transaction.
    pub fn txs(&self, hashes: &[Hash32]) -> Result<Vec<Option<(u64, TxRecord)>>, BlockStoreError> {
        let r = self.db.begin_read().map_err(db_err)?;
        let at = r.open_table(TX_HASHES).map_err(db_err)?;
        let txs = r.open_table(TXS).map_err(db_err)?;
        hashes
            .iter()
            .map(|hash| {
                let Some((h, i)) = at.get(hash).map_err(db_err)?.map(|v| v.value()) else {
                    return Ok(None);
                };
                let raw =
                    txs.get((h, i))
                        .map_err(db_err)?
                        .ok_or_else(|| BlockStoreError::Corrupt {
                            what: format!("tx {}", hex::encode(hash)),
                            error: format!("indexed at ({h}, {i}) but not stored there"),
                        })?;
                Ok(Some((h, decode(raw.value(), || format!("tx ({h}, {i})"))?)))
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
        for entry in t
            .range((from.height, from.index)..)
            .map_err(db_err)?
            .take(limit)
        {
            let (k, v) = entry.map_err(db_err)?;
            out.push(decode(v.value(), || format!("event {:?}", k.value()))?);
        }
        Ok(out)
    }
}

/// Refuses blocks whose parts disagree on where they are.
fn check_consistent(b: &BlockRecord) -> Result<(), BlockStoreError> {
    let bad = |problem: String| {
        Err(BlockStoreError::Invalid {
            height: b.height,
            problem,
        })
    };
    for (i, tx) in b.txs.iter().enumerate() {
        if tx.index as usize != i {
            return bad(format!(
                "transaction at position {i} says index {}",
                tx.index
            ));
        }
        if let Some(e) = tx.result.events.iter().find(|e| e.height != b.height) {
            return bad(format!("an event of tx {i} is at height {}", e.height));
        }
    }
    if let Some(e) = b.end_events.iter().find(|e| e.height != b.height) {
        return bad(format!("an end-of-block event is at height {}", e.height));
    }
    Ok(())
}
