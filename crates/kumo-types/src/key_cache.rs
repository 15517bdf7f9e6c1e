//! Batch verification for a node, with its accounts' public keys kept decompressed.
//!
//! [`crate::keys::verify_batch`] (`ed25519-consensus`) decompresses every distinct public key of
//! a batch, each time: a square root in the field, about as costly as a fifth of a signature's
//! share of the batch. A node verifies the same accounts' transactions batch after batch, so
//! [`verify_batch_cached`] keeps the points in a [`KeyCache`] and decompresses a key once.
//!
//! The check is `ed25519-consensus`'s batch equation, term for term (ZIP-215: keys and `R` may
//! be non-canonical encodings, `s` must be canonical, the equation is multiplied by the
//! cofactor): one `A` term per distinct key with the sum of its signatures' `z·k`, one `R` term
//! per signature, and `-Σ z·s` on the base point, for 128-bit random `z`. A key's point is the
//! one decompressing its bytes gives, cached or not, so the answer is the same as
//! [`crate::keys::verify_batch`]'s on every input; the tests compare the two on valid, forged,
//! malformed and small-order inputs.

use std::{collections::HashMap, iter::once, sync::Mutex};

use curve25519_dalek_ng::{
    constants::ED25519_BASEPOINT_POINT,
    edwards::{CompressedEdwardsY, EdwardsPoint},
    scalar::Scalar,
    traits::{IsIdentity, VartimeMultiscalarMul},
};
use rand_core::RngCore;
use sha2::{Digest, Sha512};

use crate::keys::{BatchRng, PublicKey, Signature};

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Decompressed public keys by their bytes, at most `capacity` of them (emptied when full: a
/// busy chain's active accounts fill it again within a few blocks).
pub struct KeyCache {
    points: Mutex<FastMap<[u8; 32], EdwardsPoint>>,
    capacity: usize,
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl Default for KeyCache {
    /// Room for 65,536 keys (about 10 MiB).
    fn default() -> Self {
        KeyCache::new(1 << 16)
    }
}

impl KeyCache {
    /// An empty cache that holds at most `capacity` keys.
    pub fn new(capacity: usize) -> KeyCache {
        KeyCache {
            points: Mutex::new(FastMap::default()),
            capacity: capacity.max(1),
        }
    }

    /// How many keys it holds.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FastMap<[u8; 32], EdwardsPoint>> {
        self.points.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The points of `keys`, in order; none if one of them is not a curve point.
    fn points(&self, keys: &[[u8; 32]]) -> Option<Vec<EdwardsPoint>> {
        let mut cached = self.lock();
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let point = match cached.get(key) {
                Some(p) => *p,
                None => {
                    let p = CompressedEdwardsY(*key).decompress()?;
                    if cached.len() >= self.capacity {
                        cached.clear();
                    }
                    cached.insert(*key, p);
                    p
                }
            };
            out.push(point);
        }
        Some(out)
    }
}

/// `SHA-512(R ‖ A ‖ message)` reduced modulo the group order: the signature's challenge.
fn challenge(r: &[u8], key: &[u8; 32], msg: &[u8]) -> Scalar {
    let hash = Sha512::new()
        .chain_update(r)
        .chain_update(key)
        .chain_update(msg)
        .finalize();
    let mut wide = [0u8; 64];
    wide.copy_from_slice(&hash);
    Scalar::from_bytes_mod_order_wide(&wide)
}

/// [`crate::keys::verify_batch`] with the keys' points from (and into) `cache`: `true` only if
/// every signature verifies, with the same answer on every input.
#[allow(non_snake_case)]
pub fn verify_batch_cached<'a>(
    items: impl IntoIterator<Item = (&'a PublicKey, &'a [u8], &'a Signature)>,
    cache: &KeyCache,
) -> bool {
    // Distinct keys in first-seen order, and each signature's key, challenge, R and s.
    let mut keys: Vec<[u8; 32]> = Vec::new();
    let mut key_index: FastMap<[u8; 32], usize> = FastMap::default();
    let mut sigs: Vec<(usize, Scalar, [u8; 32], [u8; 32])> = Vec::new();
    for (pk, msg, sig) in items {
        let key = *key_index.entry(pk.0).or_insert_with(|| {
            keys.push(pk.0);
            keys.len() - 1
        });
        let (r, s) = sig.0.split_at(32);
        let k = challenge(r, &pk.0, msg);
        sigs.push((
            key,
            k,
            r.try_into().expect("32 bytes"),
            s.try_into().expect("32 bytes"),
        ));
    }
    let Some(As) = cache.points(&keys) else {
        return false;
    };
    let mut rng = BatchRng::new();
    let mut A_coeffs = vec![Scalar::zero(); keys.len()];
    let mut Rs = Vec::with_capacity(sigs.len());
    let mut R_coeffs = Vec::with_capacity(sigs.len());
    let mut B_coeff = Scalar::zero();
    for (key, k, r, s) in sigs {
        let Some(R) = CompressedEdwardsY(r).decompress() else {
            return false;
        };
        let Some(s) = Scalar::from_canonical_bytes(s) else {
            return false;
        };
        let mut z = [0u8; 16];
        rng.fill_bytes(&mut z);
        let z = Scalar::from(u128::from_le_bytes(z));
        B_coeff -= z * s;
        Rs.push(R);
        R_coeffs.push(z);
        A_coeffs[key] += z * k;
    }
    let check = EdwardsPoint::vartime_multiscalar_mul(
        once(&B_coeff).chain(A_coeffs.iter()).chain(R_coeffs.iter()),
        once(&ED25519_BASEPOINT_POINT)
            .chain(As.iter())
            .chain(Rs.iter()),
    );
    check.mul_by_cofactor().is_identity()
}

#[cfg(test)]
mod tests {
    use curve25519_dalek_ng::constants::EIGHT_TORSION;

    use super::*;
    use crate::keys::{SecretKey, verify_batch};

    /// Both verifiers, the cached one with a cold and then a warm cache: they must agree.
    fn both(items: &[(PublicKey, Vec<u8>, Signature)], cache: &KeyCache) -> bool {
        let it = || items.iter().map(|(k, m, s)| (k, m.as_slice(), s));
        let reference = verify_batch(it());
        assert_eq!(verify_batch_cached(it(), &KeyCache::new(4)), reference);
        assert_eq!(verify_batch_cached(it(), cache), reference);
        assert_eq!(verify_batch_cached(it(), cache), reference);
        reference
    }

    fn signed(n: usize, keys: usize) -> Vec<(PublicKey, Vec<u8>, Signature)> {
        (0..n)
            .map(|i| {
                let sk = SecretKey::from_seed([(i % keys) as u8 + 1; 32]);
                let msg = format!("message {i}").into_bytes();
                (sk.public_key(), msg.clone(), sk.sign(&msg))
            })
            .collect()
    }

    #[test]
    fn agrees_on_valid_and_forged_batches() {
        let cache = KeyCache::default();
        assert!(both(&[], &cache));
        for (n, keys) in [(1, 1), (5, 1), (20, 3), (64, 64), (100, 7)] {
            let good = signed(n, keys);
            assert!(both(&good, &cache), "{n} signatures by {keys} keys");
            // One signature of the batch broken, in each part it has.
            for spoil in 0..4 {
                let mut bad = good.clone();
                let i = n / 2;
                match spoil {
                    0 => bad[i].1.push(b'!'),
                    1 => bad[i].2.0[0] ^= 1,
                    2 => bad[i].2.0[40] ^= 1,
                    _ => bad[i].0 = SecretKey::from_seed([99; 32]).public_key(),
                }
                assert!(!both(&bad, &cache), "{n} by {keys}, spoiled {spoil}");
            }
        }
        assert!(cache.len() <= 64 + 1);
    }

    #[test]
    fn agrees_on_malformed_keys_signatures_and_scalars() {
        let cache = KeyCache::default();
        let good = signed(4, 2);
        // A key that is not a curve point (no square root for its x).
        let not_a_point = (0u8..=255)
            .map(|b| [b; 32])
            .find(|k| CompressedEdwardsY(*k).decompress().is_none())
            .expect("some bytes are not a point");
        let mut bad = good.clone();
        bad[1].0 = PublicKey(not_a_point);
        assert!(!both(&bad, &cache));
        // An R that is not a point.
        let mut bad = good.clone();
        bad[2].2.0[..32].copy_from_slice(&not_a_point);
        assert!(!both(&bad, &cache));
        // s not below the group order: s + ℓ verifies the same equation but is refused.
        let mut bad = good.clone();
        let s = Scalar::from_canonical_bytes(bad[0].2.0[32..].try_into().unwrap()).unwrap();
        let ell_plus_s = add_group_order(s.to_bytes()).expect("s + ℓ < 2^254");
        bad[0].2.0[32..].copy_from_slice(&ell_plus_s);
        assert!(!both(&bad, &cache));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Random bytes for a key, R or s among valid signatures: the two verifiers agree.
        #[test]
        fn agrees_on_random_corruptions(
            n in 1usize..12,
            keys in 1usize..4,
            at in 0usize..12,
            part in 0usize..3,
            noise in proptest::array::uniform32(proptest::prelude::any::<u8>()),
        ) {
            let cache = KeyCache::default();
            let mut items = signed(n, keys);
            let i = at % n;
            match part {
                0 => items[i].0 = PublicKey(noise),
                1 => items[i].2.0[..32].copy_from_slice(&noise),
                _ => items[i].2.0[32..].copy_from_slice(&noise),
            }
            both(&items, &cache);
        }
    }

    /// `s + ℓ` as 32 little-endian bytes, if it fits in 256 bits.
    fn add_group_order(s: [u8; 32]) -> Option<[u8; 32]> {
        let ell = curve25519_dalek_ng::constants::BASEPOINT_ORDER.to_bytes();
        let mut out = [0u8; 32];
        let mut carry = 0u16;
        for i in 0..32 {
            let v = u16::from(s[i]) + u16::from(ell[i]) + carry;
            out[i] = v as u8;
            carry = v >> 8;
        }
        (carry == 0).then_some(out)
    }

    /// Signatures only ZIP-215's cofactored equation accepts: keys with a small-order component,
    /// and a non-canonical encoding of the identity as a key. Both verifiers accept them.
    #[test]
    fn agrees_on_small_order_and_non_canonical_keys() {
        let cache = KeyCache::default();
        let mut items = Vec::new();
        for (i, torsion) in EIGHT_TORSION.iter().enumerate() {
            let a = Scalar::from(1000 + i as u64);
            let r = Scalar::from(77 + i as u64);
            let point_a = a * ED25519_BASEPOINT_POINT + torsion;
            let point_r = (r * ED25519_BASEPOINT_POINT).compress();
            let key = PublicKey(point_a.compress().to_bytes());
            let msg = format!("torsion {i}").into_bytes();
            let k = challenge(point_r.as_bytes(), &key.0, &msg);
            let s = r + k * a;
            let mut sig = [0u8; 64];
            sig[..32].copy_from_slice(point_r.as_bytes());
            sig[32..].copy_from_slice(s.as_bytes());
            items.push((key, msg, Signature(sig)));
        }
        // The identity (y = 1) encoded as y = p + 1: any s·B = R verifies for it.
        let mut identity = [0xffu8; 32];
        identity[0] = 0xee;
        identity[31] = 0x7f;
        let r = Scalar::from(5u64);
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice((r * ED25519_BASEPOINT_POINT).compress().as_bytes());
        sig[32..].copy_from_slice(r.as_bytes());
        items.push((PublicKey(identity), b"anything".to_vec(), Signature(sig)));
        assert!(both(&items, &cache));
        for (key, msg, sig) in &items {
            assert!(key.verify(msg, sig).is_ok());
        }
        items.extend(signed(10, 3));
        assert!(both(&items, &cache));
    }

    #[test]
    fn a_full_cache_starts_over() {
        let cache = KeyCache::new(3);
        let items = signed(5, 5);
        assert!(verify_batch_cached(
            items.iter().map(|(k, m, s)| (k, m.as_slice(), s)),
            &cache
        ));
        assert!(cache.len() <= 3 && !cache.is_empty());
    }
}
