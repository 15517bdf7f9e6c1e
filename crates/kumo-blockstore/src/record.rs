//! What the store keeps: finalized blocks, their transactions' outcomes and their events.
//!
//! These are also the JSON shapes the node API serves (`GET /v1/blocks/…`, `/v1/txs/…`,
//! `/v1/events`): hashes and transaction bytes are lowercase hex.
//!
//! ```json
//! {"height": 7, "hash": "ab…", "parent": "cd…", "time_ms": 1767225600000,
//!  "proposer": "ef…", "state_root": "01…",
//!  "txs": [{"hash": "…", "index": 0, "bytes": "01…",
//!           "result": {"code": "ok", "error": null, "sender": "kumo1…",
//!                      "fee": {"denom": "ukumo", "amount": "1200"}, "events": […]}}],
//!  "end_events": […]}
//! ```

use kumo_chain::{Event, EventRecord, TxFailure, TxReceipt, TxRejected};
use kumo_types::{Address, Coin};
use serde::{Deserialize, Serialize};

/// A 32-byte hash (sha256 of a transaction, a block hash, a state root).
pub type Hash32 = [u8; 32];

/// A finalized block as the node recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockRecord {
    /// Height (the chain's first block is genesis' `initial_height + 1`).
    pub height: u64,
    /// The block's hash, as consensus computed it.
    #[serde(with = "hex32")]
    pub hash: Hash32,
    /// The parent block's hash (zeros for the first block).
    #[serde(with = "hex32")]
    pub parent: Hash32,
    /// Proposer's timestamp, milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// The proposer's ed25519 public key.
    #[serde(with = "hex32")]
    pub proposer: Hash32,
    /// State root after the block.
    #[serde(with = "hex32")]
    pub state_root: Hash32,
    /// Its transactions, in order.
    pub txs: Vec<TxRecord>,
    /// Events of the end of the block (escrow depletion, order expiry).
    pub end_events: Vec<EventRecord>,
}

/// What consensus knows about a block besides its transactions' results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockMeta {
    /// Height.
    pub height: u64,
    /// The block's hash.
    pub hash: Hash32,
    /// The parent's hash.
    pub parent: Hash32,
    /// Proposer's timestamp, ms since the Unix epoch.
    pub time_ms: u64,
    /// The proposer's public key.
    pub proposer: Hash32,
    /// State root after the block.
    pub state_root: Hash32,
}

impl BlockRecord {
    /// The record of a block the state machine executed: `txs` are the block's transaction
    /// bytes and `results` what `App::execute_txs` (or `execute_block`) returned for them.
    pub fn from_execution(
        meta: BlockMeta,
        txs: &[Vec<u8>],
        results: &[Result<TxReceipt, TxRejected>],
        end_events: &[EventRecord],
    ) -> BlockRecord {
        let hashes: Vec<Hash32> = txs.iter().map(|t| kumo_types::tx::tx_hash(t)).collect();
        BlockRecord::from_execution_hashed(meta, txs, &hashes, results, end_events)
    }

    /// As [`BlockRecord::from_execution`], given `tx_hashes`, each transaction's `tx_hash` in
    /// the same order (a node has them from executing the block).
    pub fn from_execution_hashed(
        meta: BlockMeta,
        txs: &[Vec<u8>],
        tx_hashes: &[Hash32],
        results: &[Result<TxReceipt, TxRejected>],
        end_events: &[EventRecord],
    ) -> BlockRecord {
        assert_eq!(txs.len(), results.len(), "one result per transaction");
        assert_eq!(txs.len(), tx_hashes.len(), "one hash per transaction");
        BlockRecord {
            height: meta.height,
            hash: meta.hash,
            parent: meta.parent,
            time_ms: meta.time_ms,
            proposer: meta.proposer,
            state_root: meta.state_root,
            txs: txs
                .iter()
                .zip(results)
                .zip(tx_hashes)
                .enumerate()
                .map(|(i, ((bytes, r), hash))| TxRecord {
                    hash: *hash,
                    index: u32::try_from(i).expect("fewer than 2^32 transactions"),
                    bytes: bytes.clone(),
                    result: TxOutcome::from(r),
                })
                .collect(),
            end_events: end_events.to_vec(),
        }
    }

    /// Every event of the block in order (each transaction's, then the end of the block's), with
    /// its position in the block.
    pub fn events(&self) -> impl Iterator<Item = StoredEvent> + '_ {
        self.txs
            .iter()
            .flat_map(|t| t.result.events.iter())
            .chain(self.end_events.iter())
            .enumerate()
            .map(|(i, r)| StoredEvent {
                height: r.height,
                index: u32::try_from(i).expect("fewer than 2^32 events in a block"),
                tx_hash: r.tx_hash,
                event: r.event.clone(),
            })
    }
}

/// A transaction of a block and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxRecord {
    /// sha256 of its bytes.
    #[serde(with = "hex32")]
    pub hash: Hash32,
    /// Its position in the block.
    pub index: u32,
    /// The signed bytes, as sent.
    #[serde(with = "hex_bytes")]
    pub bytes: Vec<u8>,
    /// The outcome.
    pub result: TxOutcome,
}

/// A committed transaction's place and outcome without its bytes and events: what a batch
/// submission answers for each of its transactions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxSummary {
    /// Its position in the block.
    pub index: u32,
    /// What happened.
    pub code: TxCode,
    /// Why it failed or was rejected; none when ok.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<TxErrorRecord>,
}

/// The three things that can happen to a transaction in a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxCode {
    /// Every message applied.
    Ok,
    /// The fee was paid and the nonce advanced, but a message failed: nothing else changed.
    Failed,
    /// Refused outright (bad signature, wrong nonce, ...): no effect at all.
    Rejected,
}

/// Why a transaction failed or was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxErrorRecord {
    /// A stable name: a rejection's reason (`nonce`, `bad_signature`, ... see
    /// `TxRejected::code`), or `msg_failed`.
    pub kind: String,
    /// Human-readable explanation.
    pub message: String,
    /// For `msg_failed`: index of the failing message.
    pub msg_index: Option<u32>,
    /// For `msg_failed`: its name (`create_bid`).
    pub msg: Option<String>,
}

impl TxErrorRecord {
    /// The error of a transaction whose message `f.index` failed (it paid its fee).
    pub fn failed(f: &TxFailure) -> TxErrorRecord {
        TxErrorRecord {
            kind: "msg_failed".into(),
            message: format!("message {} ({}) failed: {}", f.index, f.msg, f.error),
            msg_index: Some(u32::try_from(f.index).expect("message index fits u32")),
            msg: Some(f.msg.into()),
        }
    }

    /// The error of a transaction the chain rejected (it changed nothing).
    pub fn rejected(r: &TxRejected) -> TxErrorRecord {
        TxErrorRecord {
            kind: r.code().into(),
            message: r.to_string(),
            msg_index: None,
            msg: None,
        }
    }
}

/// A transaction's result in storable form: a [`TxReceipt`] or a [`TxRejected`], flattened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxOutcome {
    /// What happened.
    pub code: TxCode,
    /// Why it failed or was rejected; none when ok.
    pub error: Option<TxErrorRecord>,
    /// The signer (none when rejected).
    pub sender: Option<Address>,
    /// The fee paid (none when rejected).
    pub fee: Option<Coin>,
    /// Its events, the fee's first (empty when rejected).
    pub events: Vec<EventRecord>,
}

impl From<&Result<TxReceipt, TxRejected>> for TxOutcome {
    fn from(r: &Result<TxReceipt, TxRejected>) -> TxOutcome {
        match r {
            Ok(receipt) => TxOutcome {
                code: if receipt.result.is_ok() {
                    TxCode::Ok
                } else {
                    TxCode::Failed
                },
                error: receipt.result.as_ref().err().map(TxErrorRecord::failed),
                sender: Some(receipt.sender),
                fee: Some(receipt.fee.clone()),
                events: receipt.events.clone(),
            },
            Err(rejected) => TxOutcome::rejected(rejected),
        }
    }
}

impl TxOutcome {
    /// The outcome of a rejected transaction.
    pub fn rejected(r: &TxRejected) -> TxOutcome {
        TxOutcome {
            code: TxCode::Rejected,
            error: Some(TxErrorRecord::rejected(r)),
            sender: None,
            fee: None,
            events: Vec::new(),
        }
    }
}

/// An event with its place: the block, its position among the block's events, and the
/// transaction that caused it (none for end-of-block events).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// Block height.
    pub height: u64,
    /// Position among the block's events, from 0.
    pub index: u32,
    /// The transaction's hash, if a transaction caused it.
    #[serde(with = "opt_hex32")]
    pub tx_hash: Option<Hash32>,
    /// The event.
    pub event: Event,
}

impl StoredEvent {
    /// Where the event after this one is.
    pub fn next_cursor(&self) -> EventCursor {
        EventCursor {
            height: self.height,
            index: self.index + 1,
        }
    }
}

/// A position in the chain's event sequence: events at `height` from `index` on, then all of the
/// later heights'.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
pub struct EventCursor {
    /// Block height.
    pub height: u64,
    /// Position among the block's events.
    pub index: u32,
}

impl EventCursor {
    /// The first event of `height`.
    pub fn at_height(height: u64) -> EventCursor {
        EventCursor { height, index: 0 }
    }
}

/// Serde for `[u8; 32]` as 64 hex characters.
pub mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes lowercase hex.
    pub fn serialize<S: Serializer>(b: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(b))
    }

    /// Reads 64 hex characters.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(s.as_bytes(), &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}

/// Serde for `Option<[u8; 32]>` as hex or null.
pub mod opt_hex32 {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes lowercase hex, or null.
    pub fn serialize<S: Serializer>(b: &Option<[u8; 32]>, s: S) -> Result<S::Ok, S::Error> {
        match b {
            Some(b) => s.serialize_some(&hex::encode(b)),
            None => s.serialize_none(),
        }
    }

    /// Reads 64 hex characters or null.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<[u8; 32]>, D::Error> {
        let Some(s) = Option::<String>::deserialize(d)? else {
            return Ok(None);
        };
        let mut out = [0u8; 32];
        hex::decode_to_slice(&s, &mut out).map_err(serde::de::Error::custom)?;
        Ok(Some(out))
    }
}

/// Serde for byte strings as hex.
pub mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes lowercase hex.
    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(b))
    }

    /// Reads hex.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        hex::decode(s.as_bytes()).map_err(serde::de::Error::custom)
    }
}
