//! What [`crate::BlockStore`] writes a block from: a [`BlockRecord`] (tests, tools, anything
//! that has one), or an [`ExecutedBlock`], the state machine's output borrowed as the node has
//! it after executing a block.
//!
//! Both are read through [`BlockSource`], so one write path serves both. The node stores every
//! finalized block from an [`ExecutedBlock`]: building a [`BlockRecord`] first would copy every
//! transaction's bytes and events only to encode them and drop the copies.

use kumo_chain::{EventRecord, TxReceipt, TxRejected};
use kumo_types::{Address, Coin};

use crate::{
    encoding::StoredError,
    record::{BlockMeta, BlockRecord, Hash32, TxCode, TxErrorRecord},
};

/// A block the state machine executed, borrowed: its header, its transactions with their hashes
/// and results, and its end-of-block events, as [`BlockRecord::from_execution_hashed`] takes
/// them (and, with the same content, stored the same way).
#[derive(Debug, Clone, Copy)]
pub struct ExecutedBlock<'a> {
    /// Height, hashes, time, proposer, state root.
    pub meta: &'a BlockMeta,
    /// The transactions' bytes, in order.
    pub txs: &'a [Vec<u8>],
    /// Each transaction's `tx_hash`, in the same order.
    pub tx_hashes: &'a [Hash32],
    /// What executing each transaction returned, in the same order.
    pub results: &'a [Result<TxReceipt, TxRejected>],
    /// Events of the end of the block.
    pub end_events: &'a [EventRecord],
}

impl ExecutedBlock<'_> {
    /// The same block as an owned record (what [`crate::BlockStore::block`] reads back).
    pub fn to_record(&self) -> BlockRecord {
        BlockRecord::from_execution_hashed(
            self.meta.clone(),
            self.txs,
            self.tx_hashes,
            self.results,
            self.end_events,
        )
    }
}

/// One transaction as the store writes it.
pub(crate) struct TxSource<'a> {
    pub(crate) hash: &'a Hash32,
    pub(crate) bytes: &'a [u8],
    pub(crate) code: TxCode,
    pub(crate) error: Option<StoredError>,
    pub(crate) sender: Option<&'a Address>,
    pub(crate) fee: Option<&'a Coin>,
    pub(crate) events: &'a [EventRecord],
}

/// A block as the store writes it.
pub(crate) trait BlockSource {
    /// The header.
    fn meta(&self) -> BlockMeta;
    /// Its transactions, in order.
    fn txs(&self) -> Vec<TxSource<'_>>;
    /// Events of the end of the block.
    fn end_events(&self) -> &[EventRecord];
    /// Whether `stored` (read back at this height) is this block.
    fn is(&self, stored: &BlockRecord) -> bool;
}

impl BlockSource for BlockRecord {
    fn meta(&self) -> BlockMeta {
        BlockMeta {
            height: self.height,
            hash: self.hash,
            parent: self.parent,
            time_ms: self.time_ms,
            proposer: self.proposer,
            state_root: self.state_root,
        }
    }

    fn txs(&self) -> Vec<TxSource<'_>> {
        self.txs
            .iter()
            .map(|tx| TxSource {
                hash: &tx.hash,
                bytes: &tx.bytes,
                code: tx.result.code,
                error: tx.result.error.as_ref().map(StoredError::from),
                sender: tx.result.sender.as_ref(),
                fee: tx.result.fee.as_ref(),
                events: &tx.result.events,
            })
            .collect()
    }

    fn end_events(&self) -> &[EventRecord] {
        &self.end_events
    }

    fn is(&self, stored: &BlockRecord) -> bool {
        self == stored
    }
}

impl BlockSource for ExecutedBlock<'_> {
    fn meta(&self) -> BlockMeta {
        self.meta.clone()
    }

    fn txs(&self) -> Vec<TxSource<'_>> {
        assert_eq!(
            self.txs.len(),
            self.results.len(),
            "one result per transaction"
        );
        assert_eq!(
            self.txs.len(),
            self.tx_hashes.len(),
            "one hash per transaction"
        );
        self.txs
            .iter()
            .zip(self.tx_hashes)
            .zip(self.results)
            .map(|((bytes, hash), result)| match result {
                Ok(receipt) => TxSource {
                    hash,
                    bytes,
                    code: if receipt.result.is_ok() {
                        TxCode::Ok
                    } else {
                        TxCode::Failed
                    },
                    error: receipt
                        .result
                        .as_ref()
                        .err()
                        .map(|f| StoredError::from(&TxErrorRecord::failed(f))),
                    sender: Some(&receipt.sender),
                    fee: Some(&receipt.fee),
                    events: &receipt.events,
                },
                Err(rejected) => TxSource {
                    hash,
                    bytes,
                    code: TxCode::Rejected,
                    error: Some(StoredError::from(&TxErrorRecord::rejected(rejected))),
                    sender: None,
                    fee: None,
                    events: &[],
                },
            })
            .collect()
    }

    fn end_events(&self) -> &[EventRecord] {
        self.end_events
    }

    fn is(&self, stored: &BlockRecord) -> bool {
        self.to_record() == *stored
    }
}
