//! The transaction format, version 1: what clients sign and nodes accept.
//!
//! ```text
//! tx = version:u8 (=1) ‖ signer:[u8;32] ‖ body:Borsh(TxBody) ‖ signature:[u8;64]
//! signature = ed25519(signer's key, every byte before the signature)
//! hash = sha256(tx)
//! ```
//!
//! The signed bytes are exactly the bytes sent. A node parses only the fixed-size frame
//! ([`TxEnvelope::parse`]), verifies the signature, and decodes the body only after that
//! ([`TxEnvelope::verify`], or [`verify_batch`] for a block). The body holds the chain id, the
//! signer's nonce (its account sequence, which rejects replays and reorderings), the fee and the
//! messages. Borsh decoding is strict (no trailing bytes, booleans 0/1, valid UTF-8), so every
//! body has one encoding. `docs/tx-format.md` documents it byte by byte with a test vector.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{
    Address, Coin, Msg,
    keys::{PublicKey, SecretKey, Signature},
};

/// The only version this code reads and writes.
pub const TX_VERSION: u8 = 1;
/// Hard upper bound on a transaction's size; the chain's `max_tx_bytes` parameter may be lower.
pub const MAX_TX_BYTES: usize = 256 * 1024;
/// Bytes of the frame around the body: version, signer, signature.
pub const FRAME_BYTES: usize = 1 + 32 + 64;

/// Why a transaction could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    /// Too short to hold even the frame.
    #[error("transaction is {0} bytes, shorter than the {FRAME_BYTES}-byte frame: it is truncated")]
    TooShort(usize),
    /// Larger than the limit.
    #[error(
        "transaction is {0} bytes, over the limit of {1}: split its messages over several transactions"
    )]
    TooLarge(usize, usize),
    /// Unknown version byte.
    #[error(
        "transaction version {0} is not supported (this node reads version {TX_VERSION}): upgrade the client or node"
    )]
    Version(u8),
    /// The signer key is not a curve point.
    #[error("the signer's public key is invalid")]
    BadKey,
    /// The signature does not match.
    #[error(
        "signature does not verify: sign the exact bytes you send, with the key whose public half is in the tx"
    )]
    BadSignature,
    /// The body does not decode.
    #[error("transaction body does not decode ({0}): encode it as docs/tx-format.md describes")]
    Body(String),
}

/// What the signer signs, besides the frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct TxBody {
    /// The chain this tx is for (`kumo-devnet-1`): a tx for one chain is void on another.
    pub chain_id: String,
    /// The signer's account sequence: its number of earlier accepted transactions.
    pub nonce: u64,
    /// Fee, paid whether or not the messages succeed.
    pub fee: Coin,
    /// Free text, at most the chain's `max_memo_bytes`.
    pub memo: String,
    /// The actions, applied in order, all or nothing.
    pub msgs: Vec<Msg>,
}

/// Encodes and signs a body: the bytes to send.
pub fn sign_tx(key: &SecretKey, body: &TxBody) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.push(TX_VERSION);
    out.extend_from_slice(&key.public_key().0);
    BorshSerialize::serialize(body, &mut out).expect("writing to a Vec cannot fail");
    let sig = key.sign(&out);
    out.extend_from_slice(&sig.0);
    out
}

/// sha256 of the transaction bytes.
pub fn tx_hash(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// A framed but not yet verified transaction.
#[derive(Debug, Clone, Copy)]
pub struct TxEnvelope<'a> {
    bytes: &'a [u8],
    signer: PublicKey,
    signature: Signature,
}

/// A transaction whose signature verified and whose body decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedTx {
    /// sha256 of the bytes.
    pub hash: [u8; 32],
    /// Length in bytes.
    pub len: usize,
    /// The signer's key.
    pub signer: PublicKey,
    /// The signer's address: the sender of every message.
    pub sender: Address,
    /// The decoded body.
    pub body: TxBody,
}

impl<'a> TxEnvelope<'a> {
    /// Checks size and version and splits off signer and signature; decodes nothing else.
    pub fn parse(bytes: &'a [u8], max_len: usize) -> Result<TxEnvelope<'a>, TxError> {
        if bytes.len() > max_len.min(MAX_TX_BYTES) {
            return Err(TxError::TooLarge(bytes.len(), max_len.min(MAX_TX_BYTES)));
        }
        if bytes.len() < FRAME_BYTES {
            return Err(TxError::TooShort(bytes.len()));
        }
        if bytes[0] != TX_VERSION {
            return Err(TxError::Version(bytes[0]));
        }
        let mut signer = [0u8; 32];
        signer.copy_from_slice(&bytes[1..33]);
        let mut sig = [0u8; 64];
        sig.copy_from_slice(&bytes[bytes.len() - 64..]);
        Ok(TxEnvelope {
            bytes,
            signer: PublicKey(signer),
            signature: Signature(sig),
        })
    }

    /// The bytes the signature covers.
    pub fn signed_bytes(&self) -> &'a [u8] {
        &self.bytes[..self.bytes.len() - 64]
    }

    /// The claimed signer.
    pub fn signer(&self) -> &PublicKey {
        &self.signer
    }

    /// The claimed signature.
    pub fn signature(&self) -> Signature {
        self.signature
    }

    /// Verifies the signature, then decodes the body.
    pub fn verify(self) -> Result<VerifiedTx, TxError> {
        self.signer
            .verify(self.signed_bytes(), &self.signature)
            .map_err(|e| match e {
                crate::keys::KeyError::BadPublicKey => TxError::BadKey,
                _ => TxError::BadSignature,
            })?;
        self.decode_verified()
    }

    /// Decodes the body **without checking the signature**: only for bytes whose signature the
    /// caller has already verified (a mempool indexing a transaction its node just checked), or
    /// for display. Never act on an unverified body.
    pub fn body_unverified(&self) -> Result<TxBody, TxError> {
        borsh::from_slice::<TxBody>(&self.bytes[33..self.bytes.len() - 64])
            .map_err(|e| TxError::Body(e.to_string()))
    }

    /// Decodes the body; only called once the signature is known good.
    fn decode_verified(self) -> Result<VerifiedTx, TxError> {
        self.decode_verified_hashed(tx_hash(self.bytes))
    }

    /// [`TxEnvelope::decode_verified`] with the bytes' hash already computed.
    fn decode_verified_hashed(self, hash: [u8; 32]) -> Result<VerifiedTx, TxError> {
        let body = self.body_unverified()?;
        Ok(VerifiedTx {
            hash,
            len: self.bytes.len(),
            signer: self.signer,
            sender: Address::from_public_key(&self.signer),
            body,
        })
    }
}

/// Verifies many transactions' signatures in one batch (falling back to one by one if the batch
/// fails), then decodes the bodies of those that verified. Same results as calling
/// [`TxEnvelope::verify`] on each.
pub fn verify_batch(envelopes: &[TxEnvelope<'_>]) -> Vec<Result<VerifiedTx, TxError>> {
    let all_good = crate::keys::verify_batch(
        envelopes
            .iter()
            .map(|e| (&e.signer, e.signed_bytes(), &e.signature)),
    );
    after_batch(envelopes, all_good)
}

/// As [`verify_batch`], with the signers' decompressed keys from (and into) `cache`
/// ([`crate::key_cache`]): for a node, which verifies the same accounts batch after batch.
pub fn verify_batch_cached(
    envelopes: &[TxEnvelope<'_>],
    cache: &crate::key_cache::KeyCache,
) -> Vec<Result<VerifiedTx, TxError>> {
    let all_good = crate::key_cache::verify_batch_cached(
        envelopes
            .iter()
            .map(|e| (&e.signer, e.signed_bytes(), &e.signature)),
        cache,
    );
    after_batch(envelopes, all_good)
}

/// Each envelope's result once the batch check said whether all signatures verify: decoded,
/// or (the batch failed) verified alone to find the bad ones.
fn after_batch(envelopes: &[TxEnvelope<'_>], all_good: bool) -> Vec<Result<VerifiedTx, TxError>> {
    envelopes
        .iter()
        .map(|e| {
            if all_good {
                e.decode_verified()
            } else {
                e.verify()
            }
        })
        .collect()
}

/// As [`verify_batch`], but the signature of an envelope for which `verified_before` says yes is
/// not checked again: for a node that verified those exact bytes (their hash) at admission.
/// Same results as [`verify_batch`] as long as `verified_before` only says yes for bytes whose
/// signature verified.
pub fn verify_batch_trusting(
    envelopes: &[TxEnvelope<'_>],
    verified_before: impl Fn(&[u8; 32]) -> bool,
) -> Vec<Result<VerifiedTx, TxError>> {
    let hashes: Vec<[u8; 32]> = envelopes.iter().map(|e| tx_hash(e.bytes)).collect();
    verify_batch_trusting_hashed(envelopes, &hashes, verified_before)
}

/// As [`verify_batch_trusting`], given each envelope's [`tx_hash`] (`hashes[i]` of
/// `envelopes[i]`): for a caller that needs the hashes anyway and computed them once.
pub fn verify_batch_trusting_hashed(
    envelopes: &[TxEnvelope<'_>],
    hashes: &[[u8; 32]],
    verified_before: impl Fn(&[u8; 32]) -> bool,
) -> Vec<Result<VerifiedTx, TxError>> {
    assert_eq!(envelopes.len(), hashes.len(), "one hash per envelope");
    let trusted: Vec<bool> = hashes.iter().map(&verified_before).collect();
    let all_good = crate::keys::verify_batch(
        envelopes
            .iter()
            .zip(&trusted)
            .filter(|(_, t)| !**t)
            .map(|(e, _)| (&e.signer, e.signed_bytes(), &e.signature)),
    );
    envelopes
        .iter()
        .zip(&trusted)
        .zip(hashes)
        .map(|((e, trusted), hash)| {
            if all_good || *trusted {
                e.decode_verified_hashed(*hash)
            } else {
                e.verify()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Coins;

    fn body() -> TxBody {
        TxBody {
            chain_id: "kumo-test".into(),
            nonce: 3,
            fee: Coin::new("ukumo", 5000),
            memo: String::new(),
            msgs: vec![Msg::Send {
                to: Address([2; 20]),
                amount: "10ukumo".parse::<Coins>().unwrap(),
            }],
        }
    }

    #[test]
    fn signs_and_verifies() {
        let sk = SecretKey::from_seed([1; 32]);
        let tx = sign_tx(&sk, &body());
        let v = TxEnvelope::parse(&tx, MAX_TX_BYTES)
            .unwrap()
            .verify()
            .unwrap();
        assert_eq!(v.body, body());
        assert_eq!(v.sender, Address::from_public_key(&sk.public_key()));
        assert_eq!(v.hash, tx_hash(&tx));
    }

    #[test]
    fn every_flipped_bit_is_caught() {
        let sk = SecretKey::from_seed([1; 32]);
        let tx = sign_tx(&sk, &body());
        for i in 0..tx.len() {
            let mut bad = tx.clone();
            bad[i] ^= 0x10;
            let r = TxEnvelope::parse(&bad, MAX_TX_BYTES).and_then(TxEnvelope::verify);
            assert!(r.is_err(), "flip at byte {i} accepted");
        }
    }

    #[test]
    fn limits_and_frame() {
        assert_eq!(
            TxEnvelope::parse(&[1; 10], 1000).unwrap_err(),
            TxError::TooShort(10)
        );
        assert_eq!(
            TxEnvelope::parse(&[1; 2000], 1000).unwrap_err(),
            TxError::TooLarge(2000, 1000)
        );
        let mut tx = sign_tx(&SecretKey::from_seed([1; 32]), &body());
        tx[0] = 2;
        assert_eq!(
            TxEnvelope::parse(&tx, MAX_TX_BYTES).unwrap_err(),
            TxError::Version(2)
        );
    }

    #[test]
    fn batch_matches_single() {
        let keys: Vec<SecretKey> = (0..5u8).map(|i| SecretKey::from_seed([i; 32])).collect();
        let mut txs: Vec<Vec<u8>> = keys.iter().map(|k| sign_tx(k, &body())).collect();
        let n = txs[2].len();
        txs[2][n - 1] ^= 1;
        let envs: Vec<TxEnvelope> = txs
            .iter()
            .map(|t| TxEnvelope::parse(t, MAX_TX_BYTES).unwrap())
            .collect();
        let out = verify_batch(&envs);
        for (i, r) in out.iter().enumerate() {
            assert_eq!(r.is_ok(), i != 2);
            assert_eq!(r.clone().map(|v| v.hash), envs[i].verify().map(|v| v.hash));
        }
        // The cached verifier, cold and warm, and on the good ones alone.
        let cache = crate::key_cache::KeyCache::default();
        for _ in 0..2 {
            assert_eq!(verify_batch_cached(&envs, &cache), out);
        }
        let good: Vec<TxEnvelope> = [0, 1, 3, 4].iter().map(|i| envs[*i]).collect();
        assert!(verify_batch_cached(&good, &cache).iter().all(Result::is_ok));
    }

    #[test]
    fn trusting_skips_only_the_signatures_it_is_told_were_verified() {
        let keys: Vec<SecretKey> = (0..4u8).map(|i| SecretKey::from_seed([i; 32])).collect();
        let mut txs: Vec<Vec<u8>> = keys.iter().map(|k| sign_tx(k, &body())).collect();
        let n = txs[1].len();
        txs[1][n - 1] ^= 1;
        txs[3][n - 1] ^= 1;
        let envs: Vec<TxEnvelope> = txs
            .iter()
            .map(|t| TxEnvelope::parse(t, MAX_TX_BYTES).unwrap())
            .collect();
        // Honest trust (tx 0 and 2 verified before): the same results as verifying everything.
        let good = [tx_hash(&txs[0]), tx_hash(&txs[2])];
        let trusting = verify_batch_trusting(&envs, |h| good.contains(h));
        let plain = verify_batch(&envs);
        assert_eq!(trusting, plain);
        assert!(trusting[0].is_ok() && trusting[1].is_err() && trusting[3].is_err());
        // What is trusted is not checked: a forged tx said to be verified passes, the
        // untrusted forgery does not.
        let forged = tx_hash(&txs[1]);
        let lied_to = verify_batch_trusting(&envs, |h| *h == forged);
        assert!(lied_to[1].is_ok());
        assert!(lied_to[3].is_err());
    }
}
