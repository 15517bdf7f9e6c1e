//! The mempool channel's message: several signed transactions in one p2p message.
//!
//! Gossip sends what has queued up together, so that a busy node pays the p2p costs (framing,
//! encryption, one send per peer, the per-peer message quota) once per batch instead of once
//! per transaction; the receiver verifies the batch's signatures together.
//!
//! Format: for each transaction, its length (u32, little endian) and its bytes. A message that
//! does not decode is dropped whole.

/// The most bytes of transactions one message carries (a batch is cut before it grows past
/// this; a single transaction is never cut).
pub(crate) const MAX_BATCH_BYTES: usize = 256 * 1024;

/// The most transactions one message carries.
pub(crate) const MAX_BATCH_TXS: usize = 1024;

/// Appends `tx` to a message being built.
pub(crate) fn push(message: &mut Vec<u8>, tx: &[u8]) {
    let len = u32::try_from(tx.len()).expect("a transaction is shorter than 4 GiB");
    message.extend_from_slice(&len.to_le_bytes());
    message.extend_from_slice(tx);
}

/// Whether a message of `message_len` bytes holding `count` transactions is full.
pub(crate) fn is_full(message_len: usize, count: usize) -> bool {
    message_len >= MAX_BATCH_BYTES || count >= MAX_BATCH_TXS
}

/// The transactions of a message; none if it is malformed (a length past its end, more than
/// [`MAX_BATCH_TXS`] transactions, or one longer than `max_tx_bytes`).
pub(crate) fn decode(message: &[u8], max_tx_bytes: usize) -> Option<Vec<&[u8]>> {
    let mut txs = Vec::new();
    let mut rest = message;
    while !rest.is_empty() {
        let (len, tail) = rest.split_first_chunk::<4>()?;
        let len = u32::from_le_bytes(*len) as usize;
        if len > max_tx_bytes || len > tail.len() || txs.len() == MAX_BATCH_TXS {
            return None;
        }
        let (tx, tail) = tail.split_at(len);
        txs.push(tx);
        rest = tail;
    }
    Some(txs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_round_trip_and_malformed_ones_are_refused() {
        let txs: Vec<Vec<u8>> = vec![vec![1, 2, 3], vec![], vec![9; 1000]];
        let mut m = Vec::new();
        for t in &txs {
            push(&mut m, t);
        }
        let back = decode(&m, 1000).unwrap();
        assert_eq!(back, txs.iter().map(Vec::as_slice).collect::<Vec<_>>());
        assert_eq!(decode(&[], 1000).unwrap(), Vec::<&[u8]>::new());
        // Too long a transaction, a length past the end, a truncated length.
        assert!(decode(&m, 999).is_none());
        assert!(decode(&m[..m.len() - 1], 1000).is_none());
        assert!(decode(&m[..2], 1000).is_none());
        // Too many transactions.
        let mut many = Vec::new();
        for _ in 0..=MAX_BATCH_TXS {
            push(&mut many, &[]);
        }
        assert!(decode(&many, 10).is_none());
        assert!(is_full(MAX_BATCH_BYTES, 1) && is_full(0, MAX_BATCH_TXS) && !is_full(10, 10));
    }
}
