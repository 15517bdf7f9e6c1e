//! ed25519 keys and signatures for accounts.
//!
//! Verification follows ZIP-215 (the `ed25519-consensus` crate), whose rules are the same for
//! single and batch verification: every validator accepts exactly the same signatures whether
//! it checks them one by one or in a batch. That is what lets the chain verify a block's
//! signatures in one batch without risking a fork.
//!
//! ```
//! use kumo_types::keys::SecretKey;
//! let sk = SecretKey::from_seed([7; 32]);
//! let sig = sk.sign(b"hello");
//! assert!(sk.public_key().verify(b"hello", &sig).is_ok());
//! assert!(sk.public_key().verify(b"hellO", &sig).is_err());
//! ```

use std::{fmt, str::FromStr};

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a key or signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The bytes are not a valid public key.
    #[error("not a valid ed25519 public key: expected 32 bytes (64 hex digits) of a curve point")]
    BadPublicKey,
    /// The signature does not verify.
    #[error("signature does not verify: the bytes were changed or signed by another key")]
    BadSignature,
    /// Text that should be hex is not.
    #[error("{0:?} is not hex of the expected length ({1} bytes)")]
    BadHex(String, usize),
}

/// An ed25519 public key (32 bytes).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize)]
pub struct PublicKey(pub [u8; 32]);

/// An ed25519 signature (64 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize)]
pub struct Signature(pub [u8; 64]);

/// An ed25519 secret key. Its `Debug` output hides the key.
#[derive(Clone)]
pub struct SecretKey(ed25519_consensus::SigningKey);

impl SecretKey {
    /// A fresh random key from the operating system's generator.
    pub fn generate() -> SecretKey {
        SecretKey(ed25519_consensus::SigningKey::new(rand_core::OsRng))
    }

    /// The key whose 32-byte seed is `seed` (deterministic: for tests and imports).
    pub fn from_seed(seed: [u8; 32]) -> SecretKey {
        SecretKey(ed25519_consensus::SigningKey::from(seed))
    }

    /// The 32-byte seed; keep it secret.
    pub fn to_seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The public half.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verification_key().to_bytes())
    }

    /// Signs `msg`.
    pub fn sign(&self, msg: &[u8]) -> Signature {
        Signature(self.0.sign(msg).to_bytes())
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({})", self.public_key())
    }
}

impl PublicKey {
    /// Verifies `sig` over `msg` (ZIP-215 rules).
    pub fn verify(&self, msg: &[u8], sig: &Signature) -> Result<(), KeyError> {
        let vk = ed25519_consensus::VerificationKey::try_from(self.0)
            .map_err(|_| KeyError::BadPublicKey)?;
        vk.verify(&ed25519_consensus::Signature::from(sig.0), msg)
            .map_err(|_| KeyError::BadSignature)
    }

    /// Whether the bytes are a valid curve point.
    pub fn is_valid(&self) -> bool {
        ed25519_consensus::VerificationKey::try_from(self.0).is_ok()
    }
}

/// Verifies many signatures at once; `true` only if every one verifies.
///
/// On `false`, check them one by one with [`PublicKey::verify`] to find the bad ones: the two
/// agree on every input (ZIP-215).
pub fn verify_batch<'a>(
    items: impl IntoIterator<Item = (&'a PublicKey, &'a [u8], &'a Signature)>,
) -> bool {
    let mut v = ed25519_consensus::batch::Verifier::new();
    for (pk, msg, sig) in items {
        v.queue((
            ed25519_consensus::VerificationKeyBytes::from(pk.0),
            ed25519_consensus::Signature::from(sig.0),
            msg,
        ));
    }
    v.verify(BatchRng::new()).is_ok()
}

/// The batch check's random coefficients (128 bits per signature): a ChaCha12 stream keyed
/// from the operating system once per batch, as `rand`'s thread generator is. Drawing them
/// from `OsRng` directly costs a `getrandom` system call per signature.
pub(crate) struct BatchRng(rand_chacha::ChaCha12Rng);

impl BatchRng {
    pub(crate) fn new() -> BatchRng {
        use rand_chacha::rand_core::SeedableRng;
        let mut seed = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut seed);
        BatchRng(rand_chacha::ChaCha12Rng::from_seed(seed))
    }
}

impl rand_core::RngCore for BatchRng {
    fn next_u32(&mut self) -> u32 {
        rand_chacha::rand_core::RngCore::next_u32(&mut self.0)
    }

    fn next_u64(&mut self) -> u64 {
        rand_chacha::rand_core::RngCore::next_u64(&mut self.0)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        rand_chacha::rand_core::RngCore::fill_bytes(&mut self.0, dest)
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

/// A ChaCha12 stream keyed from the OS is a cryptographic generator.
impl rand_core::CryptoRng for BatchRng {}

fn parse_hex<const N: usize>(s: &str) -> Result<[u8; N], KeyError> {
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).map_err(|_| KeyError::BadHex(s.to_string(), N))?;
    Ok(out)
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<PublicKey, KeyError> {
        let pk = PublicKey(parse_hex(s)?);
        if pk.is_valid() {
            Ok(pk)
        } else {
            Err(KeyError::BadPublicKey)
        }
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({self})")
    }
}

impl FromStr for Signature {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Signature, KeyError> {
        Ok(Signature(parse_hex(s)?))
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<PublicKey, D::Error> {
        <String as Deserialize>::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_agrees_with_single() {
        let keys: Vec<SecretKey> = (0..8u8).map(|i| SecretKey::from_seed([i; 32])).collect();
        let msgs: Vec<Vec<u8>> = (0..8u8).map(|i| vec![i; 10]).collect();
        let pks: Vec<PublicKey> = keys.iter().map(SecretKey::public_key).collect();
        let mut sigs: Vec<Signature> = keys.iter().zip(&msgs).map(|(k, m)| k.sign(m)).collect();
        let check = |sigs: &[Signature]| {
            verify_batch(
                pks.iter()
                    .zip(msgs.iter().map(Vec::as_slice))
                    .zip(sigs.iter())
                    .map(|((p, m), s)| (p, m, s)),
            )
        };
        assert!(check(&sigs));
        sigs[3].0[0] ^= 1;
        assert!(!check(&sigs));
        assert!(pks[3].verify(&msgs[3], &sigs[3]).is_err());
        assert!(pks[2].verify(&msgs[2], &sigs[2]).is_ok());
    }

    #[test]
    fn each_batch_draws_fresh_coefficients() {
        // Coefficients a signer could predict would let a forged signature pass in a batch.
        use rand_core::RngCore;
        let (mut a, mut b) = (BatchRng::new(), BatchRng::new());
        let draw = |r: &mut BatchRng| [r.next_u64(), r.next_u64()];
        let first = draw(&mut a);
        assert_ne!(first, draw(&mut b));
        assert_ne!(first, draw(&mut a));
    }

    #[test]
    fn hex_round_trips() {
        let pk = SecretKey::from_seed([1; 32]).public_key();
        assert_eq!(pk.to_string().parse::<PublicKey>().unwrap(), pk);
        assert!("00".parse::<PublicKey>().is_err());
    }
}
