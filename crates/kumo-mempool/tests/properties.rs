//! Properties of the mempool under random traffic: bounds always hold, reaping yields each
//! account's nonces in order from its next nonce without gaps or repeats, and eviction only
//! ever takes cheaper transactions nothing else depends on.
//!
//! Transactions here are synthetic (`sender ‖ nonce ‖ fee ‖ padding`) and the "chain" is a map
//! of next nonces, so thousands of cases run in a second; `tests/chain.rs` uses real signed
//! transactions and the real state machine.

use std::collections::{BTreeMap, HashSet};

use kumo_mempool::{Admission, Config, Mempool, MempoolError};
use kumo_types::Address;
use proptest::prelude::*;

/// The model chain: each account's next nonce.
#[derive(Default, Clone)]
struct Chain {
    nonces: BTreeMap<u8, u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum Refused {
    #[error("stale nonce")]
    Stale,
}

fn tx(sender: u8, nonce: u64, fee: u64, pad: usize, salt: u8) -> Vec<u8> {
    let mut b = vec![sender];
    b.extend_from_slice(&nonce.to_le_bytes());
    b.extend_from_slice(&fee.to_le_bytes());
    b.push(salt);
    b.resize(18 + pad, 0xAB);
    b
}

fn parse(b: &[u8]) -> (u8, u64, u64) {
    (
        b[0],
        u64::from_le_bytes(b[1..9].try_into().unwrap()),
        u64::from_le_bytes(b[9..17].try_into().unwrap()),
    )
}

impl Chain {
    fn next(&self, s: u8) -> u64 {
        self.nonces.get(&s).copied().unwrap_or(0)
    }

    /// The admission check: refuses stale nonces, as `App::check_tx` does.
    fn check(&self, b: &[u8]) -> Result<Admission, Refused> {
        let (s, nonce, fee) = parse(b);
        let account_nonce = self.next(s);
        if nonce < account_nonce {
            return Err(Refused::Stale);
        }
        Ok(Admission {
            sender: Address([s; 20]),
            nonce,
            fee: u128::from(fee),
            account_nonce,
        })
    }

    /// The cheap re-check: only the nonce can have changed.
    fn readmit(&self, a: &Admission) -> Result<Admission, Refused> {
        let account_nonce = self.next(a.sender.0[0]);
        if a.nonce < account_nonce {
            return Err(Refused::Stale);
        }
        Ok(Admission {
            account_nonce,
            ..a.clone()
        })
    }

    /// Executes a block as the chain would: each tx must carry its sender's next nonce.
    fn execute(&mut self, block: &[Vec<u8>]) {
        for t in block {
            let (s, nonce, _) = parse(t);
            assert_eq!(nonce, self.next(s), "reaped out of order for sender {s}");
            self.nonces.insert(s, nonce + 1);
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Insert {
        sender: u8,
        ahead: u64,
        fee: u64,
        pad: usize,
        salt: u8,
    },
    Block {
        max_txs: usize,
        max_bytes: usize,
        /// Recheck from the stored admissions instead of the bytes.
        cheap: bool,
    },
    /// Another node's block advances an account past what we hold.
    External { sender: u8, by: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..6, 0u64..6, 1u64..1000, 0usize..200, 0u8..3).prop_map(
            |(sender, ahead, fee, pad, salt)| Op::Insert { sender, ahead, fee, pad, salt }
        ),
        2 => (0usize..8, 0usize..1500, any::<bool>())
            .prop_map(|(max_txs, max_bytes, cheap)| Op::Block { max_txs, max_bytes, cheap }),
        1 => (0u8..6, 1u64..3).prop_map(|(sender, by)| Op::External { sender, by }),
    ]
}

fn config() -> impl Strategy<Value = Config> {
    (1usize..12, 200usize..2000, 1usize..6, 0u64..3).prop_map(
        |(max_txs, max_bytes, max_per_account, max_nonce_gap)| Config {
            max_txs,
            max_bytes,
            max_per_account,
            max_nonce_gap,
        },
    )
}

/// Checks a reap against the pool's rules; returns nothing, panics on a violation.
fn check_reap(chain: &Chain, out: &[Vec<u8>], max_txs: usize, max_bytes: usize) {
    assert!(out.len() <= max_txs);
    assert!(out.iter().map(Vec::len).sum::<usize>() <= max_bytes);
    let distinct: HashSet<&Vec<u8>> = out.iter().collect();
    assert_eq!(distinct.len(), out.len(), "a transaction reaped twice");
    let mut expect: BTreeMap<u8, u64> = BTreeMap::new();
    for t in out {
        let (s, nonce, _) = parse(t);
        let e = expect.entry(s).or_insert_with(|| chain.next(s));
        assert_eq!(nonce, *e, "sender {s}: nonce {nonce} where {e} was due");
        *e += 1;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn bounds_order_and_eviction_hold(cfg in config(), ops in prop::collection::vec(op(), 1..60)) {
        let mut pool = Mempool::new(cfg.clone());
        let mut chain = Chain::default();
        // What the pool holds, by our own account: hash → (sender, nonce, fee, len).
        let mut held: BTreeMap<[u8; 32], (u8, u64, u64, usize)> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Insert { sender, ahead, fee, pad, salt } => {
                    let nonce = chain.next(sender) + ahead;
                    let bytes = tx(sender, nonce, fee, pad, salt);
                    let before = held.clone();
                    let r = pool.insert(bytes.clone(), |b| chain.check(b));
                    let hash = kumo_types::tx::tx_hash(&bytes);
                    match r {
                        Ok(h) => {
                            prop_assert_eq!(h, hash);
                            held.insert(h, (sender, nonce, fee, bytes.len()));
                            // Whatever left made room: cheaper per byte, another account's,
                            // and nothing of its account above it remains.
                            let evicted: Vec<_> = before.iter().filter(|(h, _)| !pool.contains(h)).collect();
                            for (h, (s, n, f, len)) in &evicted {
                                prop_assert!(*s != sender, "evicted the newcomer's own account");
                                prop_assert!((u128::from(*f) * bytes.len() as u128) < (u128::from(fee) * *len as u128),
                                    "evicted a tx paying at least as much per byte");
                                prop_assert!(!held.iter().any(|(h2, (s2, n2, _, _))| h2 != *h && s2 == s && n2 > n && pool.contains(h2)),
                                    "evicted a tx a later one depends on");
                                held.remove(*h);
                            }
                        }
                        Err(MempoolError::AlreadyInMempool(h)) => prop_assert!(held.contains_key(&h)),
                        Err(_) => prop_assert_eq!(&held, &before, "a refused insert changed the pool"),
                    }
                }
                Op::Block { max_txs, max_bytes, cheap } => {
                    let out = pool.reap(max_txs, max_bytes);
                    check_reap(&chain, &out, max_txs, max_bytes);
                    chain.execute(&out);
                    let hashes: Vec<[u8; 32]> = out.iter().map(|t| kumo_types::tx::tx_hash(t)).collect();
                    pool.remove_committed(&hashes);
                    for h in &hashes { held.remove(h); }
                    let dropped = if cheap {
                        pool.recheck_admitted(|a| chain.readmit(a))
                    } else {
                        pool.recheck(|b| chain.check(b))
                    };
                    for (h, why) in dropped {
                        let (s, n, _, _) = held.remove(&h).expect("dropped something it held");
                        if matches!(why, MempoolError::Rejected(Refused::Stale) | MempoolError::StaleNonce { .. }) {
                            prop_assert!(n < chain.next(s));
                        }
                    }
                }
                Op::External { sender, by } => {
                    let n = chain.next(sender) + by;
                    chain.nonces.insert(sender, n);
                    for (h, _) in pool.recheck(|b| chain.check(b)) {
                        held.remove(&h);
                    }
                }
            }
            // Bounds, and agreement with our own account of what it holds.
            prop_assert!(pool.len() <= cfg.max_txs);
            prop_assert!(pool.bytes() <= cfg.max_bytes);
            prop_assert_eq!(pool.len(), held.len());
            prop_assert_eq!(pool.bytes(), held.values().map(|v| v.3).sum::<usize>());
            for s in 0..6u8 {
                prop_assert!(held.values().filter(|v| v.0 == s).count() <= cfg.max_per_account);
            }
            prop_assert!(held.keys().all(|h| pool.contains(h)));
            // A full reap is always a valid block.
            let all = pool.reap(usize::MAX, usize::MAX);
            check_reap(&chain, &all, usize::MAX, usize::MAX);
        }
    }
}

#[test]
fn a_full_pool_evicts_the_cheapest_independent_tail_or_refuses() {
    let cfg = Config {
        max_txs: 3,
        max_bytes: 1 << 20,
        max_per_account: 8,
        max_nonce_gap: 0,
    };
    let chain = Chain::default();
    let mut pool = Mempool::new(cfg);
    let ins = |pool: &mut Mempool, s, n, fee| pool.insert(tx(s, n, fee, 10, 0), |b| chain.check(b));
    // Account 1: a cheap nonce 0 that an expensive nonce 1 depends on. Account 2: medium.
    ins(&mut pool, 1, 0, 10).unwrap();
    ins(&mut pool, 1, 1, 900).unwrap();
    let medium = ins(&mut pool, 2, 0, 300).unwrap();
    // 400 beats account 2's 300 (a tail) but not account 1's tail (900); account 1's cheap
    // nonce 0 is not evictable: nonce 1 needs it.
    let newcomer = ins(&mut pool, 3, 0, 400).unwrap();
    assert!(!pool.contains(&medium));
    assert!(pool.contains(&newcomer));
    // 350 beats nothing evictable now (tails: 900 and 400).
    let err = ins(&mut pool, 4, 0, 350).unwrap_err();
    assert!(matches!(err, MempoolError::Full { txs: 3, .. }), "{err}");
    assert!(err.to_string().contains("raise the fee"));
    assert_eq!(pool.len(), 3);
}

#[test]
fn gaps_are_bounded_and_filled() {
    let cfg = Config {
        max_nonce_gap: 1,
        ..Config::default()
    };
    let chain = Chain::default();
    let mut pool = Mempool::new(cfg);
    let ins = |pool: &mut Mempool, n| pool.insert(tx(1, n, 100, 0, 0), |b| chain.check(b));
    let err = ins(&mut pool, 2).unwrap_err();
    assert!(
        matches!(
            err,
            MempoolError::NonceGap {
                missing: 2,
                max: 1,
                ..
            }
        ),
        "{err}"
    );
    ins(&mut pool, 1).unwrap();
    assert!(pool.reap(10, 1 << 20).is_empty(), "nonce 0 is missing");
    ins(&mut pool, 2).unwrap();
    let err = ins(&mut pool, 1).unwrap_err();
    assert!(matches!(err, MempoolError::AlreadyInMempool(_)));
    let err = pool
        .insert(tx(1, 1, 100, 0, 9), |b| chain.check(b))
        .unwrap_err();
    assert!(
        matches!(err, MempoolError::NonceTaken { nonce: 1, .. }),
        "{err}"
    );
    ins(&mut pool, 0).unwrap();
    let out: Vec<u64> = pool.reap(10, 1 << 20).iter().map(|t| parse(t).1).collect();
    assert_eq!(out, [0, 1, 2]);
}

#[test]
fn reap_prefers_higher_fee_per_byte_across_accounts() {
    let chain = Chain::default();
    let mut pool = Mempool::new(Config::default());
    pool.insert(tx(1, 0, 100, 0, 0), |b| chain.check(b))
        .unwrap();
    pool.insert(tx(2, 0, 500, 0, 0), |b| chain.check(b))
        .unwrap();
    pool.insert(tx(2, 1, 50, 0, 0), |b| chain.check(b)).unwrap();
    pool.insert(tx(3, 0, 500, 200, 0), |b| chain.check(b))
        .unwrap();
    let order: Vec<(u8, u64)> = pool
        .reap(10, 1 << 20)
        .iter()
        .map(|t| {
            let (s, n, _) = parse(t);
            (s, n)
        })
        .collect();
    // Per byte: 2/0 pays 500/18, 1/0 100/18, 2/1 50/18 (once 2/0 is out), 3/0 500/218.
    assert_eq!(order, [(2, 0), (1, 0), (2, 1), (3, 0)]);
    // One transaction only: the best.
    assert_eq!(pool.reap(1, 1 << 20).len(), 1);
    // Too few bytes for anything: nothing.
    assert!(pool.reap(10, 10).is_empty());
}
