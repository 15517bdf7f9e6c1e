//! How the store's values are written: one version byte, then Borsh.
//!
//! Each event is stored once, in the `event_rows` table; a transaction's value says which of the
//! block's events are its own (`first_event`, `event_count`) and a header where the end-of-block
//! events start, so reading a transaction or a block joins them back. Heights, indexes and
//! hashes that are a value's key are not repeated in it.
//!
//! Version 1 is the only version. A store written with JSON values (before it) cannot be read:
//! its reads fail with a `Corrupt` error naming the version (no migration yet).

use borsh::{BorshDeserialize, BorshSerialize};
use kumo_chain::Event;
use kumo_types::{Address, Coin};

use crate::{Hash32, TxCode, TxErrorRecord};

/// The version byte every value starts with.
pub(crate) const VERSION: u8 = 1;

/// `headers` value: a block without its transactions and events.
#[derive(BorshSerialize, BorshDeserialize, PartialEq)]
pub(crate) struct StoredHeader {
    pub(crate) hash: Hash32,
    pub(crate) parent: Hash32,
    pub(crate) time_ms: u64,
    pub(crate) proposer: Hash32,
    pub(crate) state_root: Hash32,
    pub(crate) tx_count: u32,
    /// Index of the block's first end-of-block event in `events`.
    pub(crate) end_events_from: u32,
}

/// `txs` value: a transaction, its outcome, and where its events are.
#[derive(BorshSerialize, BorshDeserialize)]
pub(crate) struct StoredTx {
    pub(crate) hash: Hash32,
    pub(crate) bytes: Vec<u8>,
    pub(crate) code: StoredCode,
    pub(crate) error: Option<StoredError>,
    pub(crate) sender: Option<Address>,
    pub(crate) fee: Option<Coin>,
    /// Index of its first event in the block's `events`.
    pub(crate) first_event: u32,
    /// How many events it has.
    pub(crate) event_count: u32,
}

/// [`StoredTx`] borrowed, for writing (the same bytes).
#[derive(BorshSerialize)]
pub(crate) struct StoredTxRef<'a> {
    pub(crate) hash: &'a Hash32,
    pub(crate) bytes: &'a [u8],
    pub(crate) code: StoredCode,
    pub(crate) error: Option<&'a StoredError>,
    pub(crate) sender: Option<&'a Address>,
    pub(crate) fee: Option<&'a Coin>,
    pub(crate) first_event: u32,
    pub(crate) event_count: u32,
}

/// [`TxCode`] in Borsh.
#[derive(BorshSerialize, BorshDeserialize, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoredCode {
    Ok,
    Failed,
    Rejected,
}

impl From<TxCode> for StoredCode {
    fn from(c: TxCode) -> StoredCode {
        match c {
            TxCode::Ok => StoredCode::Ok,
            TxCode::Failed => StoredCode::Failed,
            TxCode::Rejected => StoredCode::Rejected,
        }
    }
}

impl From<StoredCode> for TxCode {
    fn from(c: StoredCode) -> TxCode {
        match c {
            StoredCode::Ok => TxCode::Ok,
            StoredCode::Failed => TxCode::Failed,
            StoredCode::Rejected => TxCode::Rejected,
        }
    }
}

/// [`TxErrorRecord`] in Borsh.
#[derive(BorshSerialize, BorshDeserialize)]
pub(crate) struct StoredError {
    pub(crate) kind: String,
    pub(crate) message: String,
    pub(crate) msg_index: Option<u32>,
    pub(crate) msg: Option<String>,
}

impl From<&TxErrorRecord> for StoredError {
    fn from(e: &TxErrorRecord) -> StoredError {
        StoredError {
            kind: e.kind.clone(),
            message: e.message.clone(),
            msg_index: e.msg_index,
            msg: e.msg.clone(),
        }
    }
}

impl From<StoredError> for TxErrorRecord {
    fn from(e: StoredError) -> TxErrorRecord {
        TxErrorRecord {
            kind: e.kind,
            message: e.message,
            msg_index: e.msg_index,
            msg: e.msg,
        }
    }
}

/// `events` value (the height and index are its key).
#[derive(BorshSerialize, BorshDeserialize)]
pub(crate) struct StoredEventValue {
    pub(crate) tx_hash: Option<Hash32>,
    pub(crate) event: Event,
}

/// [`StoredEventValue`] borrowed, for writing (the same bytes).
#[derive(BorshSerialize)]
pub(crate) struct StoredEventRef<'a> {
    pub(crate) tx_hash: &'a Option<Hash32>,
    pub(crate) event: &'a Event,
}

/// The version byte and the Borsh bytes of `v`.
pub(crate) fn encode<T: BorshSerialize>(v: &T) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(&mut out, v);
    out
}

/// [`encode`], appended to `out`.
pub(crate) fn encode_into<T: BorshSerialize>(out: &mut Vec<u8>, v: &T) {
    out.push(VERSION);
    v.serialize(out).expect("writing to a Vec cannot fail");
}

/// Reads a value written by [`encode`]; the error says what is wrong.
pub(crate) fn decode<T: BorshDeserialize>(bytes: &[u8]) -> Result<T, String> {
    match bytes.split_first() {
        Some((&VERSION, rest)) => borsh::from_slice(rest).map_err(|e| e.to_string()),
        Some((v, _)) => Err(format!(
            "value version {v}, this node reads version {VERSION}: the store was written by another version of Kumo"
        )),
        None => Err("an empty value".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_carry_their_version_and_other_versions_are_named() {
        let v = StoredEventValue {
            tx_hash: Some([7; 32]),
            event: Event::FeePaid {
                payer: Address([1; 20]),
                fee: Coin::new("ukumo", 5),
            },
        };
        let bytes = encode(&v);
        assert_eq!(bytes[0], VERSION);
        let back: StoredEventValue = decode(&bytes).unwrap();
        assert_eq!((back.tx_hash, back.event), (v.tx_hash, v.event));
        // A value of the JSON store (version 0) starts with `{`.
        let e = decode::<StoredEventValue>(b"{\"height\": 1}")
            .err()
            .unwrap();
        assert!(
            e.contains("version 123") && e.contains("another version"),
            "{e}"
        );
        assert!(decode::<StoredEventValue>(&[]).is_err());
        assert!(decode::<StoredEventValue>(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn a_borrowed_tx_is_written_as_the_owned_one_reads() {
        let failed = StoredTx {
            hash: [3; 32],
            bytes: vec![1, 2, 3, 4, 5],
            code: StoredCode::Failed,
            error: Some(StoredError {
                kind: "msg_failed".into(),
                message: "message 0 (send) failed".into(),
                msg_index: Some(0),
                msg: Some("send".into()),
            }),
            sender: Some(Address([9; 20])),
            fee: Some(Coin::new("ukumo", 7)),
            first_event: 4,
            event_count: 2,
        };
        let rejected = StoredTx {
            hash: [4; 32],
            bytes: vec![6, 7],
            code: StoredCode::Rejected,
            error: Some(StoredError {
                kind: "nonce".into(),
                message: "nonce 3 is stale".into(),
                msg_index: None,
                msg: None,
            }),
            sender: None,
            fee: None,
            first_event: 6,
            event_count: 0,
        };
        for tx in [failed, rejected] {
            let borrowed = StoredTxRef {
                hash: &tx.hash,
                bytes: &tx.bytes,
                code: tx.code,
                error: tx.error.as_ref(),
                sender: tx.sender.as_ref(),
                fee: tx.fee.as_ref(),
                first_event: tx.first_event,
                event_count: tx.event_count,
            };
            assert_eq!(encode(&borrowed), encode(&tx));
            let back: StoredTx = decode(&encode(&borrowed)).unwrap();
            assert_eq!((back.bytes, back.fee), (tx.bytes, tx.fee));
        }
    }
}
