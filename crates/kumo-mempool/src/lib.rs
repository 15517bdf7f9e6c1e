//! The mempool: transactions admitted but not yet in a block.
//!
//! A pure data structure: it holds bytes and the little it needs to order them (sender, nonce,
//! fee), and asks a caller-supplied `check` (the chain's `App::check_tx` and the account's next
//! nonce, in the node) whether a transaction is valid. It does no I/O and keeps no clock.
//!
//! **Admission** ([`Mempool::insert`]): a duplicate is refused before `check` runs (so replays
//! cost no signature verification); then `check` must pass; then the nonce must not be stale,
//! not already taken by another pending transaction of the account, and at most
//! [`Config::max_nonce_gap`] nonces may be missing before it (a future nonce waits for the
//! missing ones).
//!
//! **Bounds and eviction**: at most [`Config::max_txs`] transactions, [`Config::max_bytes`]
//! bytes and [`Config::max_per_account`] per account. When the pool is full, a newcomer may
//! evict transactions that pay a strictly lower fee per byte, cheapest first, but only the last
//! pending transaction of another account (nothing pending depends on it) — never one of its own
//! account's, never one a later transaction needs. If not enough can be evicted, the newcomer is
//! refused ([`MempoolError::Full`]) and nothing is evicted.
//!
//! **Reaping** ([`Mempool::reap`]) yields what a block can include, in an order the chain
//! accepts: each account's transactions in nonce order from its next nonce with no gap, accounts
//! interleaved by the fee per byte of their next transaction (highest first; ties by arrival).
//! Reaping removes nothing: after a block, [`Mempool::remove_committed`] drops what it included
//! and [`Mempool::recheck`] drops what the new state made invalid (stale nonces, fees that can
//! no longer be paid) and what then waits behind too many missing nonces.
//! [`Mempool::recheck_admitted`] with [`readmit`] does the same without verifying signatures
//! again (they cannot change), which keeps the work after a block small with a full pool.
//!
//! ```
//! use kumo_mempool::{Admission, Config, Mempool};
//! use kumo_types::Address;
//!
//! let mut pool = Mempool::new(Config::default());
//! let alice = Address([1; 20]);
//! let check = |nonce: u64| move |_: &[u8]| -> Result<Admission, String> {
//!     Ok(Admission { sender: alice, nonce, fee: 2_000, account_nonce: 0 })
//! };
//! pool.insert(b"second".to_vec(), check(1)).unwrap();   // waits for nonce 0
//! assert!(pool.reap(10, 1 << 20).is_empty());
//! pool.insert(b"first".to_vec(), check(0)).unwrap();
//! assert_eq!(pool.reap(10, 1 << 20), vec![b"first".to_vec(), b"second".to_vec()]);
//! assert!(pool.insert(b"first".to_vec(), check(0)).unwrap_err().to_string().contains("already in the mempool"));
//! ```

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet};

use kumo_types::Address;

pub use chain::{Readmit, admit, readmit};

mod chain {
    use kumo_chain::{App, Store, TxRejected, bank};
    use kumo_types::Address;

    use crate::Admission;

    /// The chain's admission check, as [`Mempool::insert`](crate::Mempool::insert) and
    /// [`Mempool::recheck`](crate::Mempool::recheck) want it: `App::check_tx` (size, signature,
    /// chain id, fee, nonce not stale, fee payable) and the sender's next nonce.
    pub fn admit<S: Store>(app: &App<S>, bytes: &[u8]) -> Result<Admission, TxRejected> {
        let tx = app.check_tx(bytes)?;
        Ok(Admission {
            sender: tx.sender,
            nonce: tx.body.nonce,
            fee: tx.body.fee.amount,
            account_nonce: app.account_nonce(&tx.sender),
        })
    }

    /// The cheap check after a block, for [`Mempool::recheck_admitted`](crate::Mempool::recheck_admitted):
    /// a pending transaction's signature, chain id and size were checked at admission and cannot
    /// change, so only what a block can change is read again: the sender's next nonce (a stale
    /// nonce is refused) and whether it can still pay the fee.
    pub fn readmit<S: Store>(app: &App<S>, tx: &Admission) -> Result<Admission, TxRejected> {
        Readmit::new(app).check(tx)
    }

    /// [`readmit`] for many transactions: an account's next nonce and fee balance are read once
    /// for its run of pending transactions (a recheck visits each account's together), not once
    /// per transaction.
    pub struct Readmit<'a, S: Store> {
        app: &'a App<S>,
        /// The last sender read: its next nonce and fee-denomination balance.
        last: Option<(Address, u64, u128)>,
    }

    impl<'a, S: Store> Readmit<'a, S> {
        /// A checker reading `app`'s state.
        pub fn new(app: &'a App<S>) -> Self {
            Readmit { app, last: None }
        }

        /// As [`readmit`].
        pub fn check(&mut self, tx: &Admission) -> Result<Admission, TxRejected> {
            let denom = &self.app.params().fee_denom;
            let (account_nonce, have) = match self.last {
                Some((sender, nonce, have)) if sender == tx.sender => (nonce, have),
                _ => {
                    let nonce = self.app.account_nonce(&tx.sender);
                    let have = bank::balance(self.app.store(), &tx.sender, denom);
                    self.last = Some((tx.sender, nonce, have));
                    (nonce, have)
                }
            };
            if tx.nonce < account_nonce {
                return Err(TxRejected::Nonce {
                    want: account_nonce,
                    got: tx.nonce,
                });
            }
            if have < tx.fee {
                return Err(TxRejected::CannotPayFee(
                    bank::BankError::InsufficientFunds {
                        account: tx.sender,
                        denom: denom.clone(),
                        have,
                        need: tx.fee,
                    },
                ));
            }
            Ok(Admission {
                account_nonce,
                ..tx.clone()
            })
        }
    }
}

/// sha256 of a transaction's bytes.
pub type TxHash = [u8; 32];

/// Limits of the pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Most transactions held.
    pub max_txs: usize,
    /// Most bytes held (sum of transaction sizes).
    pub max_bytes: usize,
    /// Most transactions held per sender.
    pub max_per_account: usize,
    /// Most nonces that may be missing before a pending transaction (0: only the account's
    /// next nonce or the one after its last pending transaction).
    pub max_nonce_gap: u64,
}

impl Default for Config {
    /// 10,000 transactions, 32 MiB, 64 per account, 8 missing nonces.
    fn default() -> Config {
        Config {
            max_txs: 10_000,
            max_bytes: 32 << 20,
            max_per_account: 64,
            max_nonce_gap: 8,
        }
    }
}

/// What admission (`check`) learned about a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    /// The signer.
    pub sender: Address,
    /// The transaction's nonce.
    pub nonce: u64,
    /// Its fee, in the fee denomination's smallest unit.
    pub fee: u128,
    /// The sender's next nonce in the last committed state.
    pub account_nonce: u64,
}

/// Why a transaction was not admitted, or was dropped. `E` is the `check`'s error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MempoolError<E> {
    /// The same bytes are already pending.
    #[error("transaction {} is already in the mempool: wait for it to be committed", hex(.0))]
    AlreadyInMempool(TxHash),
    /// `check` refused it.
    #[error(transparent)]
    Rejected(E),
    /// The nonce was already used on chain.
    #[error(
        "nonce {nonce} was already used: the account's next nonce is {account_nonce} (query the account and re-sign)"
    )]
    StaleNonce {
        /// The transaction's.
        nonce: u64,
        /// The account's next.
        account_nonce: u64,
    },
    /// Another pending transaction of the account has this nonce.
    #[error(
        "another transaction of {sender} with nonce {nonce} is already in the mempool: wait for it to be committed, or sign with the next free nonce"
    )]
    NonceTaken {
        /// The sender.
        sender: Address,
        /// The nonce.
        nonce: u64,
    },
    /// Too many nonces are missing before this one.
    #[error(
        "nonce {nonce} is too far ahead: {missing} earlier nonces of the account (from {account_nonce}) are neither committed nor pending, at most {max} may be: send those first"
    )]
    NonceGap {
        /// The transaction's.
        nonce: u64,
        /// The account's next nonce on chain.
        account_nonce: u64,
        /// Missing nonces below it.
        missing: u64,
        /// The limit.
        max: u64,
    },
    /// The sender has as many pending transactions as allowed.
    #[error(
        "{sender} already has {max} transactions in the mempool, the most one account may: wait for some to be committed"
    )]
    AccountFull {
        /// The sender.
        sender: Address,
        /// The limit.
        max: usize,
    },
    /// The pool is full and the transaction pays too little to displace others.
    #[error(
        "the mempool is full ({txs} transactions, {bytes} bytes) and this transaction's fee per byte does not beat enough pending ones: raise the fee or retry later"
    )]
    Full {
        /// Transactions held.
        txs: usize,
        /// Bytes held.
        bytes: usize,
    },
}

fn hex(h: &TxHash) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

/// sha256 of the bytes (the chain's transaction hash).
fn tx_hash(bytes: &[u8]) -> TxHash {
    kumo_types::tx::tx_hash(bytes)
}

/// Fee per byte, compared exactly (`fee_a * len_b` against `fee_b * len_a`, in 192 bits).
#[derive(Debug, Clone, Copy)]
struct FeeRate {
    fee: u128,
    len: u32,
}

impl FeeRate {
    /// `fee * len` as (high 128 bits, low 64 bits).
    fn times(fee: u128, len: u32) -> (u128, u64) {
        let len = u128::from(len);
        let lo = (fee & u128::from(u64::MAX)) * len;
        let hi = (fee >> 64) * len + (lo >> 64);
        (hi, lo as u64)
    }
}

impl Ord for FeeRate {
    fn cmp(&self, other: &FeeRate) -> Ordering {
        FeeRate::times(self.fee, other.len).cmp(&FeeRate::times(other.fee, self.len))
    }
}

impl PartialOrd for FeeRate {
    fn partial_cmp(&self, other: &FeeRate) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for FeeRate {
    fn eq(&self, other: &FeeRate) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for FeeRate {}

/// A pending transaction.
#[derive(Debug, Clone)]
struct Pending {
    bytes: Vec<u8>,
    sender: Address,
    nonce: u64,
    rate: FeeRate,
    /// Arrival order: breaks fee ties, first come first served.
    seq: u64,
}

/// One sender's pending transactions.
#[derive(Debug, Default)]
struct Account {
    /// Its next nonce on chain, as the last `check` saw it.
    next_nonce: u64,
    /// Pending transactions by nonce.
    pending: BTreeMap<u64, TxHash>,
}

/// Nonces in `[next_nonce, nonce)` that nothing pending fills.
fn missing_below(pending: &BTreeMap<u64, TxHash>, next_nonce: u64, nonce: u64) -> u64 {
    if nonce <= next_nonce {
        return 0;
    }
    let filled = pending.range(next_nonce..nonce).count() as u64;
    nonce.saturating_sub(next_nonce) - filled
}

/// Eviction order: cheapest first, then the most recent arrival first.
type EvictKey = (FeeRate, std::cmp::Reverse<u64>, TxHash);

/// Pending transactions, bounded, ordered per account by nonce.
#[derive(Debug)]
pub struct Mempool {
    config: Config,
    /// Keyed by sha256 output: a seeded fast hash spreads them as well as SipHash, for less.
    txs: HashMap<TxHash, Pending, foldhash::fast::RandomState>,
    /// By sender. Nothing depends on the order accounts are visited in: reaping orders them by
    /// fee and arrival, and each account is rechecked on its own.
    accounts: HashMap<Address, Account, foldhash::fast::RandomState>,
    by_rate: BTreeSet<EvictKey>,
    bytes: usize,
    seq: u64,
}

impl Mempool {
    /// An empty pool with these limits.
    pub fn new(config: Config) -> Mempool {
        Mempool {
            config,
            txs: HashMap::default(),
            accounts: HashMap::default(),
            by_rate: BTreeSet::new(),
            bytes: 0,
            seq: 0,
        }
    }

    /// The limits.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Number of pending transactions.
    pub fn len(&self) -> usize {
        self.txs.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    /// Total bytes pending.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether a transaction with this hash is pending.
    pub fn contains(&self, hash: &TxHash) -> bool {
        self.txs.contains_key(hash)
    }

    /// The nonce the sender's next transaction should carry: its next nonce on chain, past the
    /// run of consecutive pending transactions that follows it. None if nothing is pending.
    pub fn next_nonce(&self, sender: &Address) -> Option<u64> {
        let a = self.accounts.get(sender)?;
        let mut n = a.next_nonce;
        while a.pending.contains_key(&n) {
            n += 1;
        }
        Some(n)
    }

    /// Admits a transaction: `check` validates it against the last committed state (signature,
    /// chain id, fee, nonce not stale) and says who sent it with which nonce and fee.
    pub fn insert<E>(
        &mut self,
        bytes: Vec<u8>,
        check: impl FnOnce(&[u8]) -> Result<Admission, E>,
    ) -> Result<TxHash, MempoolError<E>> {
        self.insert_hashed(tx_hash(&bytes), bytes, check)
    }

    /// [`Mempool::insert`] for a caller that has the transaction's hash already (`hash` must be
    /// `kumo_types::tx::tx_hash(&bytes)`: a node computes it while verifying the signature).
    pub fn insert_hashed<E>(
        &mut self,
        hash: TxHash,
        bytes: Vec<u8>,
        check: impl FnOnce(&[u8]) -> Result<Admission, E>,
    ) -> Result<TxHash, MempoolError<E>> {
        debug_assert_eq!(hash, tx_hash(&bytes), "the hash of these bytes");
        if self.txs.contains_key(&hash) {
            return Err(MempoolError::AlreadyInMempool(hash));
        }
        let adm = check(&bytes).map_err(MempoolError::Rejected)?;
        let empty = Account::default();
        let acct = self.accounts.get(&adm.sender).unwrap_or(&empty);
        // The check read the latest committed state; ours may be older (or newer, if the check
        // raced a block): nonces only grow, so the larger is right.
        let next_nonce = adm.account_nonce.max(acct.next_nonce);
        if adm.nonce < next_nonce {
            return Err(MempoolError::StaleNonce {
                nonce: adm.nonce,
                account_nonce: next_nonce,
            });
        }
        if acct.pending.contains_key(&adm.nonce) {
            return Err(MempoolError::NonceTaken {
                sender: adm.sender,
                nonce: adm.nonce,
            });
        }
        if acct.pending.len() >= self.config.max_per_account {
            return Err(MempoolError::AccountFull {
                sender: adm.sender,
                max: self.config.max_per_account,
            });
        }
        let missing = missing_below(&acct.pending, next_nonce, adm.nonce);
        if missing > self.config.max_nonce_gap {
            return Err(MempoolError::NonceGap {
                nonce: adm.nonce,
                account_nonce: next_nonce,
                missing,
                max: self.config.max_nonce_gap,
            });
        }
        let rate = FeeRate {
            fee: adm.fee,
            len: u32::try_from(bytes.len()).unwrap_or(u32::MAX),
        };
        let victims = self.make_room(&adm.sender, rate, bytes.len())?;
        for v in victims {
            self.remove(&v);
        }
        let seq = self.seq;
        self.seq += 1;
        self.bytes += bytes.len();
        self.by_rate.insert((rate, std::cmp::Reverse(seq), hash));
        let acct = self.accounts.entry(adm.sender).or_default();
        acct.next_nonce = next_nonce;
        acct.pending.insert(adm.nonce, hash);
        self.txs.insert(
            hash,
            Pending {
                bytes,
                sender: adm.sender,
                nonce: adm.nonce,
                rate,
                seq,
            },
        );
        Ok(hash)
    }

    /// What to evict so that one more transaction of `len` bytes fits; refuses if that takes
    /// evicting anything paying at least `rate`. Changes nothing.
    fn make_room<E>(
        &self,
        sender: &Address,
        rate: FeeRate,
        len: usize,
    ) -> Result<Vec<TxHash>, MempoolError<E>> {
        let full = || MempoolError::Full {
            txs: self.txs.len(),
            bytes: self.bytes,
        };
        if len > self.config.max_bytes {
            return Err(full());
        }
        let mut victims: HashSet<TxHash> = HashSet::new();
        let (mut count, mut bytes) = (self.txs.len(), self.bytes);
        while count + 1 > self.config.max_txs || bytes + len > self.config.max_bytes {
            // The cheapest transaction that is the last pending one of another account, once
            // the victims chosen so far are gone.
            let victim = self
                .by_rate
                .iter()
                .take_while(|(r, _, _)| *r < rate)
                .map(|(_, _, h)| h)
                .find(|h| {
                    let p = &self.txs[*h];
                    p.sender != *sender
                        && !victims.contains(*h)
                        && self.accounts[&p.sender]
                            .pending
                            .range(p.nonce + 1..)
                            .all(|(_, later)| victims.contains(later))
                })
                .ok_or_else(full)?;
            victims.insert(*victim);
            count -= 1;
            bytes -= self.txs[victim].bytes.len();
        }
        Ok(victims.into_iter().collect())
    }

    /// Removes one transaction; returns it.
    fn remove(&mut self, hash: &TxHash) -> Option<Pending> {
        let p = self.txs.remove(hash)?;
        self.bytes -= p.bytes.len();
        self.by_rate
            .remove(&(p.rate, std::cmp::Reverse(p.seq), *hash));
        if let Some(a) = self.accounts.get_mut(&p.sender) {
            a.pending.remove(&p.nonce);
            if a.pending.is_empty() {
                self.accounts.remove(&p.sender);
            }
        }
        Some(p)
    }

    /// Up to `max_txs` transactions of at most `max_bytes` in all, in an order the chain
    /// accepts (see the module docs). Removes nothing.
    pub fn reap(&self, max_txs: usize, max_bytes: usize) -> Vec<Vec<u8>> {
        /// An account's next transaction, ordered for a max-heap: best fee per byte, then
        /// earliest arrival.
        struct Head<'a> {
            p: &'a Pending,
        }
        impl Ord for Head<'_> {
            fn cmp(&self, o: &Self) -> Ordering {
                self.p
                    .rate
                    .cmp(&o.p.rate)
                    .then_with(|| o.p.seq.cmp(&self.p.seq))
            }
        }
        impl PartialOrd for Head<'_> {
            fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
                Some(self.cmp(o))
            }
        }
        impl PartialEq for Head<'_> {
            fn eq(&self, o: &Self) -> bool {
                self.cmp(o) == Ordering::Equal
            }
        }
        impl Eq for Head<'_> {}

        let head =
            |a: &Account, nonce: u64| a.pending.get(&nonce).map(|h| Head { p: &self.txs[h] });
        let mut heap: BinaryHeap<Head<'_>> = self
            .accounts
            .values()
            .filter_map(|a| head(a, a.next_nonce))
            .collect();
        let mut out = Vec::new();
        let mut left = max_bytes;
        while out.len() < max_txs {
            let Some(Head { p }) = heap.pop() else { break };
            if p.bytes.len() > left {
                // Its later transactions need it: the account is done for this block.
                continue;
            }
            left -= p.bytes.len();
            out.push(p.bytes.clone());
            if let Some(next) = head(&self.accounts[&p.sender], p.nonce + 1) {
                heap.push(next);
            }
        }
        out
    }

    /// Drops transactions a block included (whatever their outcome). Unknown hashes are ignored.
    pub fn remove_committed<'a>(&mut self, hashes: impl IntoIterator<Item = &'a TxHash>) {
        for h in hashes {
            self.remove(h);
        }
    }

    /// Checks every pending transaction against the new state, in each account's nonce order,
    /// and drops those that fail, have a stale nonce, or now wait behind more than
    /// [`Config::max_nonce_gap`] missing nonces. Returns what was dropped, and why.
    ///
    /// `check` sees the bytes, as at admission (a full check, signature included); see
    /// [`Mempool::recheck_admitted`] for the cheap variant.
    pub fn recheck<E>(
        &mut self,
        mut check: impl FnMut(&[u8]) -> Result<Admission, E>,
    ) -> Vec<(TxHash, MempoolError<E>)> {
        self.recheck_with(|p, _| check(&p.bytes))
    }

    /// As [`Mempool::recheck`], but `check` sees what admission learned (sender, nonce, fee,
    /// and the account nonce then) instead of the bytes: for a check that only reads what a
    /// block can change, without verifying signatures again (see [`readmit`]).
    pub fn recheck_admitted<E>(
        &mut self,
        mut check: impl FnMut(&Admission) -> Result<Admission, E>,
    ) -> Vec<(TxHash, MempoolError<E>)> {
        self.recheck_with(|p, next_nonce| {
            check(&Admission {
                sender: p.sender,
                nonce: p.nonce,
                fee: p.rate.fee,
                account_nonce: next_nonce,
            })
        })
    }

    /// Rechecks each account's pending transactions in nonce order; `check` also gets the
    /// account's next nonce as it was before the recheck.
    fn recheck_with<E>(
        &mut self,
        mut check: impl FnMut(&Pending, u64) -> Result<Admission, E>,
    ) -> Vec<(TxHash, MempoolError<E>)> {
        let mut dropped = Vec::new();
        let senders: Vec<Address> = self.accounts.keys().copied().collect();
        for sender in senders {
            let account = &self.accounts[&sender];
            let next_nonce = account.next_nonce;
            let pending: Vec<(u64, TxHash)> =
                account.pending.iter().map(|(n, h)| (*n, *h)).collect();
            for (nonce, hash) in pending {
                let verdict = match check(&self.txs[&hash], next_nonce) {
                    Err(e) => Err(MempoolError::Rejected(e)),
                    Ok(adm) => {
                        if let Some(a) = self.accounts.get_mut(&sender) {
                            a.next_nonce = a.next_nonce.max(adm.account_nonce);
                        }
                        Ok(())
                    }
                };
                let verdict = verdict.and_then(|()| {
                    let Some(a) = self.accounts.get(&sender) else {
                        return Ok(());
                    };
                    if nonce < a.next_nonce {
                        return Err(MempoolError::StaleNonce {
                            nonce,
                            account_nonce: a.next_nonce,
                        });
                    }
                    let missing = missing_below(&a.pending, a.next_nonce, nonce);
                    if missing > self.config.max_nonce_gap {
                        return Err(MempoolError::NonceGap {
                            nonce,
                            account_nonce: a.next_nonce,
                            missing,
                            max: self.config.max_nonce_gap,
                        });
                    }
                    Ok(())
                });
                if let Err(why) = verdict {
                    self.remove(&hash);
                    dropped.push((hash, why));
                }
            }
        }
        dropped
    }
}
