//! The state machine's entry points: genesis, blocks and transactions.
//!
//! A block is `begin_block(h)`, then `deliver_tx` for each transaction in order, then
//! `end_block()`, after which the store's root is the block's state root
//! ([`App::execute_block`] does all of it, verifying the block's signatures in one batch).
//!
//! A transaction is first checked without writing anything (size, signature, chain id, nonce,
//! fee, limits): if any check fails it is **rejected** ([`TxRejected`]) and changes nothing. If
//! they pass, the fee is paid and the nonce advances; then the messages run, all or nothing, in
//! a write buffer: if one fails, the tx is included as **failed** ([`TxReceipt::result`]) and
//! only the fee and nonce changes remain.

use kumo_types::{
    Address, Coin, Msg,
    tx::{TxEnvelope, TxError, VerifiedTx},
};
use serde::{Serialize, Serializer};

use crate::{
    Ctx, MsgError, Params, audit, bank, deployment, escrow,
    events::{Event, EventRecord, OrderCloseReason},
    genesis::{Genesis, GenesisError},
    market, provider,
    state::{self, Account, OrderState, keys},
    store::{Overlay, StateRoot, Store, apply_writes},
};

/// Why a transaction was rejected without any effect.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxRejected {
    /// Malformed, oversized or badly signed.
    #[error(transparent)]
    Envelope(#[from] TxError),
    /// For another chain.
    #[error("transaction is for chain {got:?}, this is {want:?}: set the chain id")]
    WrongChain {
        /// This chain.
        want: String,
        /// The tx's.
        got: String,
    },
    /// Replayed, reordered or skipped.
    #[error(
        "nonce {got} is wrong: the account's next nonce is {want} (query the account and re-sign)"
    )]
    Nonce {
        /// Expected.
        want: u64,
        /// Given.
        got: u64,
    },
    /// No messages.
    #[error("transaction has no messages")]
    NoMsgs,
    /// Too many messages.
    #[error("transaction has {n} messages, more than the limit of {max}: split it")]
    TooManyMsgs {
        /// Count.
        n: usize,
        /// Limit.
        max: u32,
    },
    /// Memo too long.
    #[error("memo is {n} bytes, more than the limit of {max}")]
    MemoTooLong {
        /// Length.
        n: usize,
        /// Limit.
        max: u32,
    },
    /// Fee in the wrong denomination.
    #[error("fee is in {got} but fees are paid in {want}")]
    FeeDenom {
        /// Fee denomination.
        want: String,
        /// Given.
        got: String,
    },
    /// Fee too low.
    #[error(
        "fee {got} is below the minimum {min} for this transaction's size and messages: raise it"
    )]
    FeeTooLow {
        /// Minimum.
        min: Coin,
        /// Given.
        got: Coin,
    },
    /// The fee cannot be paid.
    #[error("cannot pay the fee: {0}")]
    CannotPayFee(bank::BankError),
    /// A message that is invalid whatever the state (a deployment outside the resource
    /// limits, an empty or oversized withdrawal list): refused before any fee is taken.
    #[error("message {index} ({msg}) is invalid: {error}")]
    InvalidMsg {
        /// Index of the message in the transaction.
        index: usize,
        /// Its name.
        msg: &'static str,
        /// Why (boxed: a `MsgError` is large and rejections are rare).
        error: Box<MsgError>,
    },
    /// Outside `begin_block`/`end_block`.
    #[error("no block is open: call begin_block first")]
    NoBlock,
}

impl TxRejected {
    /// A stable machine-readable name for the reason (`nonce`, `wrong_chain`, `bad_signature`,
    /// ...): what API error codes and stored transaction outcomes carry.
    pub fn code(&self) -> &'static str {
        match self {
            TxRejected::Envelope(e) => match e {
                TxError::TooShort(_) => "tx_too_short",
                TxError::TooLarge(..) => "tx_too_large",
                TxError::Version(_) => "tx_version",
                TxError::BadKey => "bad_public_key",
                TxError::BadSignature => "bad_signature",
                TxError::Body(_) => "bad_body",
            },
            TxRejected::WrongChain { .. } => "wrong_chain",
            TxRejected::Nonce { .. } => "nonce",
            TxRejected::NoMsgs => "no_msgs",
            TxRejected::TooManyMsgs { .. } => "too_many_msgs",
            TxRejected::MemoTooLong { .. } => "memo_too_long",
            TxRejected::FeeDenom { .. } => "fee_denom",
            TxRejected::FeeTooLow { .. } => "fee_too_low",
            TxRejected::CannotPayFee(_) => "cannot_pay_fee",
            TxRejected::InvalidMsg { .. } => "invalid_msg",
            TxRejected::NoBlock => "no_block",
        }
    }
}

/// A message that failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TxFailure {
    /// Index of the failing message.
    pub index: usize,
    /// Its name.
    pub msg: &'static str,
    /// Why.
    #[serde(serialize_with = "display")]
    pub error: MsgError,
}

fn display<S: Serializer>(e: &MsgError, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(e)
}

/// What happened to an included transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TxReceipt {
    /// Its hash (hex in JSON).
    #[serde(serialize_with = "hex_ser")]
    pub hash: [u8; 32],
    /// Block height.
    pub height: u64,
    /// The signer.
    pub sender: Address,
    /// Fee paid.
    pub fee: Coin,
    /// `Ok` if every message applied; else the first failure (only the fee and nonce changed).
    pub result: Result<(), TxFailure>,
    /// Events, the fee's first.
    pub events: Vec<EventRecord>,
}

fn hex_ser<S: Serializer>(b: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(b))
}

/// Why a store could not be opened as a chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// No genesis was run on it.
    #[error("the store holds no chain: run genesis first")]
    NoChain,
}

/// Why a block could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    /// Heights must follow each other.
    #[error("block {got} does not follow {last}: the next block is {}", last + 1)]
    Height {
        /// Last committed height.
        last: u64,
        /// Requested.
        got: u64,
    },
    /// A block is already open.
    #[error("block {0} is still open: call end_block first")]
    Open(u64),
    /// No block is open.
    #[error("no block is open: call begin_block first")]
    NotOpen,
}

/// Outcome of [`App::execute_block`].
#[derive(Debug, Clone)]
pub struct BlockResult {
    /// Height.
    pub height: u64,
    /// One entry per transaction, in order.
    pub txs: Vec<Result<TxReceipt, TxRejected>>,
    /// Events of `end_block` (escrow depletion, order expiry).
    pub end_events: Vec<EventRecord>,
    /// State root after the block.
    pub root: [u8; 32],
}

/// The marketplace state machine over a store.
pub struct App<S> {
    store: S,
    params: Params,
    chain_id: String,
    height: u64,
    open_block: Option<u64>,
}

impl<S: Store> App<S> {
    /// Writes genesis into an empty store.
    pub fn init_genesis(mut store: S, g: &Genesis) -> Result<App<S>, GenesisError> {
        g.validate()?;
        if store.get(&keys::chain_id()).is_some() {
            return Err(GenesisError::NotEmpty);
        }
        let mut supply = std::collections::BTreeMap::<String, u128>::new();
        for b in &g.balances {
            for c in b.coins.as_slice() {
                let s = supply.entry(c.denom.clone()).or_default();
                *s = s
                    .checked_add(c.amount)
                    .ok_or_else(|| GenesisError::Overflow(c.denom.clone()))?;
                bank::set_balance(&mut store, &b.address, &c.denom, c.amount);
            }
        }
        for (denom, amount) in supply {
            state::put(&mut store, &keys::supply(&denom), &amount);
        }
        state::put(&mut store, &keys::chain_id(), &g.chain_id);
        state::put(&mut store, &keys::params(), &g.params);
        state::put(&mut store, &keys::height(), &g.initial_height);
        Ok(App {
            store,
            params: g.params.clone(),
            chain_id: g.chain_id.clone(),
            height: g.initial_height,
            open_block: None,
        })
    }

    /// Opens a store that already holds a chain.
    pub fn load(store: S) -> Result<App<S>, LoadError> {
        let chain_id = state::get::<String>(&store, &keys::chain_id()).ok_or(LoadError::NoChain)?;
        let params = state::get::<Params>(&store, &keys::params()).ok_or(LoadError::NoChain)?;
        let height = state::get::<u64>(&store, &keys::height()).ok_or(LoadError::NoChain)?;
        Ok(App {
            store,
            params,
            chain_id,
            height,
            open_block: None,
        })
    }

    /// The store (for queries: see [`crate::query`]).
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Gives the store back.
    pub fn into_store(self) -> S {
        self.store
    }

    /// The parameters.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The chain id.
    pub fn chain_id(&self) -> &str {
        &self.chain_id
    }

    /// The last committed height (the one being built while a block is open is one more).
    pub fn height(&self) -> u64 {
        self.height
    }

    /// Starts block `height`, which must be the last committed height + 1.
    pub fn begin_block(&mut self, height: u64) -> Result<Vec<EventRecord>, BlockError> {
        if let Some(h) = self.open_block {
            return Err(BlockError::Open(h));
        }
        if height != self.height + 1 {
            return Err(BlockError::Height {
                last: self.height,
                got: height,
            });
        }
        self.open_block = Some(height);
        Ok(Vec::new())
    }

    /// Parses, verifies and applies one transaction.
    pub fn deliver_tx(&mut self, bytes: &[u8]) -> Result<TxReceipt, TxRejected> {
        let tx = TxEnvelope::parse(bytes, self.params.max_tx_bytes as usize)?.verify()?;
        self.deliver_verified(&tx)
    }

    /// Checks everything but the signature, without writing: what the fee-and-nonce step
    /// would refuse. Returns the account as it is now.
    fn ante_check(&self, tx: &VerifiedTx, exact_nonce: bool) -> Result<Account, TxRejected> {
        let b = &tx.body;
        if tx.len > self.params.max_tx_bytes as usize {
            return Err(TxError::TooLarge(tx.len, self.params.max_tx_bytes as usize).into());
        }
        if b.chain_id != self.chain_id {
            return Err(TxRejected::WrongChain {
                want: self.chain_id.clone(),
                got: b.chain_id.clone(),
            });
        }
        if b.msgs.is_empty() {
            return Err(TxRejected::NoMsgs);
        }
        if b.msgs.len() > self.params.max_msgs_per_tx as usize {
            return Err(TxRejected::TooManyMsgs {
                n: b.msgs.len(),
                max: self.params.max_msgs_per_tx,
            });
        }
        if b.memo.len() > self.params.max_memo_bytes as usize {
            return Err(TxRejected::MemoTooLong {
                n: b.memo.len(),
                max: self.params.max_memo_bytes,
            });
        }
        for (index, msg) in b.msgs.iter().enumerate() {
            check_msg(&self.params, msg).map_err(|error| TxRejected::InvalidMsg {
                index,
                msg: msg.name(),
                error: Box::new(error),
            })?;
        }
        if b.fee.denom != self.params.fee_denom {
            return Err(TxRejected::FeeDenom {
                want: self.params.fee_denom.clone(),
                got: b.fee.denom.clone(),
            });
        }
        let min = self.params.min_fee(tx.len, b.msgs.len());
        if b.fee.amount < min {
            return Err(TxRejected::FeeTooLow {
                min: Coin::new(self.params.fee_denom.clone(), min),
                got: b.fee.clone(),
            });
        }
        let acct =
            state::get::<Account>(&self.store, &keys::account(&tx.sender)).unwrap_or_default();
        if b.nonce != acct.nonce && (exact_nonce || b.nonce < acct.nonce) {
            return Err(TxRejected::Nonce {
                want: acct.nonce,
                got: b.nonce,
            });
        }
        let have = bank::balance(&self.store, &tx.sender, &b.fee.denom);
        if have < b.fee.amount {
            return Err(TxRejected::CannotPayFee(
                bank::BankError::InsufficientFunds {
                    account: tx.sender,
                    denom: b.fee.denom.clone(),
                    have,
                    need: b.fee.amount,
                },
            ));
        }
        Ok(acct)
    }

    /// Mempool admission: verifies the signature and the checks that do not depend on other
    /// pending transactions (a nonce ahead of the account's is allowed). Writes nothing.
    pub fn check_tx(&self, bytes: &[u8]) -> Result<VerifiedTx, TxRejected> {
        let tx = TxEnvelope::parse(bytes, self.params.max_tx_bytes as usize)?.verify()?;
        self.ante_check(&tx, false)?;
        Ok(tx)
    }

    /// [`App::check_tx`] without the signature, for a transaction verified beforehand (a node
    /// verifies outside the lock that guards its state). Writes nothing.
    pub fn check_verified(&self, tx: &VerifiedTx) -> Result<(), TxRejected> {
        self.ante_check(tx, false).map(|_| ())
    }

    /// The nonce `address`'s next transaction must carry, as of the last committed block.
    pub fn account_nonce(&self, address: &Address) -> u64 {
        state::get::<Account>(&self.store, &keys::account(address))
            .unwrap_or_default()
            .nonce
    }

    /// Applies a transaction whose signature is already verified (e.g. in a batch).
    pub fn deliver_verified(&mut self, tx: &VerifiedTx) -> Result<TxReceipt, TxRejected> {
        let height = self.open_block.ok_or(TxRejected::NoBlock)?;
        let mut acct = self.ante_check(tx, true)?;
        acct.nonce += 1;
        acct.public_key = Some(tx.signer);
        state::put(&mut self.store, &keys::account(&tx.sender), &acct);
        bank::move_coin(
            &mut self.store,
            &tx.sender,
            &bank::module_address(bank::FEE_COLLECTOR),
            &tx.body.fee,
        )
        .expect("ante_check saw the balance");
        let record = |event| EventRecord {
            height,
            tx_hash: Some(tx.hash),
            event,
        };
        let mut events = vec![record(Event::FeePaid {
            payer: tx.sender,
            fee: tx.body.fee.clone(),
        })];
        let mut overlay = Overlay::new(&self.store);
        let mut ctx = Ctx {
            store: &mut overlay,
            params: &self.params,
            height,
            events: Vec::new(),
            end_of_block: false,
        };
        let mut result = Ok(());
        for (index, msg) in tx.body.msgs.iter().enumerate() {
            if let Err(error) = dispatch(&mut ctx, &tx.sender, msg) {
                result = Err(TxFailure {
                    index,
                    msg: msg.name(),
                    error,
                });
                break;
            }
        }
        let msg_events = std::mem::take(&mut ctx.events);
        if result.is_ok() {
            let writes = overlay.into_writes();
            apply_writes(&mut self.store, writes);
            events.extend(msg_events.into_iter().map(record));
        }
        Ok(TxReceipt {
            hash: tx.hash,
            height,
            sender: tx.sender,
            fee: tx.body.fee.clone(),
            result,
            events,
        })
    }

    /// Ends the open block: tops up the escrow accounts whose allowance is due, closes those
    /// that run dry at this height (their leases close `insufficient_funds`), closes the leases
    /// of providers silent past the liveness window (`provider_unresponsive`), then the orders
    /// whose TTL ends here. Returns their events.
    pub fn end_block(&mut self) -> Result<Vec<EventRecord>, BlockError> {
        let height = self.open_block.ok_or(BlockError::NotOpen)?;
        let mut ctx = Ctx {
            store: &mut self.store,
            params: &self.params,
            height,
            events: Vec::new(),
            end_of_block: true,
        };
        for id in escrow::top_ups_at(ctx.store, height) {
            escrow::top_up(&mut ctx, &id)
                .unwrap_or_else(|e| panic!("topping up {id} failed: {e}; state is inconsistent"));
        }
        let due = escrow::due_at(ctx.store, height);
        deployment::prefetch_close(ctx.store, &due);
        for id in due {
            deployment::close_internal(&mut ctx, &id, true).unwrap_or_else(|e| {
                panic!("closing dry escrow {id} failed: {e}; state is inconsistent")
            });
        }
        for provider in provider::silent_at(ctx.store, height) {
            market::close_silent(&mut ctx, &provider).unwrap_or_else(|e| {
                panic!("closing the leases of silent provider {provider} failed: {e}; state is inconsistent")
            });
        }
        for id in market::expiring_at(ctx.store, height) {
            let o = market::order(ctx.store, &id).expect("indexed orders exist");
            debug_assert_eq!(o.state, OrderState::Open, "only open orders are indexed");
            market::close_open_order(&mut ctx, o, OrderCloseReason::Expired)
                .and_then(|()| {
                    deployment::set_group_state(&mut ctx, &id.group(), state::GroupState::Paused)
                })
                .unwrap_or_else(|e| {
                    panic!("expiring order {id} failed: {e}; state is inconsistent")
                });
        }
        let events = ctx
            .events
            .into_iter()
            .map(|event| EventRecord {
                height,
                tx_hash: None,
                event,
            })
            .collect();
        state::put(&mut self.store, &keys::height(), &height);
        self.height = height;
        self.open_block = None;
        Ok(events)
    }
}

impl<S: Store + StateRoot> App<S> {
    /// The state root now.
    pub fn root(&mut self) -> [u8; 32] {
        self.store.root()
    }

    /// Runs a whole block: verifies every signature in one batch, applies the transactions in
    /// order, ends the block and computes the root.
    pub fn execute_block(
        &mut self,
        height: u64,
        txs: &[Vec<u8>],
    ) -> Result<BlockResult, BlockError> {
        let (txs, end_events) = self.execute_txs(height, txs)?;
        Ok(BlockResult {
            height,
            txs,
            end_events,
            root: self.root(),
        })
    }
}

/// Transaction results and end-of-block events of a block.
pub type BlockOutput = (Vec<Result<TxReceipt, TxRejected>>, Vec<EventRecord>);

impl<S: Store> App<S> {
    /// [`App::execute_block`] without the root: begin, batch-verify, deliver, end.
    pub fn execute_txs(&mut self, height: u64, txs: &[Vec<u8>]) -> Result<BlockOutput, BlockError> {
        self.execute_txs_trusting(height, txs, |_| false)
    }

    /// As [`App::execute_txs`], without checking again the signatures of transactions whose
    /// hash `verified_before` says were verified already (by this node, at admission). The
    /// results are the same as long as it only says so of transactions that verified.
    pub fn execute_txs_trusting(
        &mut self,
        height: u64,
        txs: &[Vec<u8>],
        verified_before: impl Fn(&[u8; 32]) -> bool,
    ) -> Result<BlockOutput, BlockError> {
        let hashes: Vec<[u8; 32]> = txs.iter().map(|t| kumo_types::tx::tx_hash(t)).collect();
        self.execute_txs_hashed(height, txs, &hashes, verified_before)
    }

    /// As [`App::execute_txs_trusting`], given each transaction's hash (`hashes[i]` is
    /// `tx_hash(&txs[i])`): a node computes them once per block and uses them again (block
    /// store, mempool).
    pub fn execute_txs_hashed(
        &mut self,
        height: u64,
        txs: &[Vec<u8>],
        hashes: &[[u8; 32]],
        verified_before: impl Fn(&[u8; 32]) -> bool,
    ) -> Result<BlockOutput, BlockError> {
        assert_eq!(txs.len(), hashes.len(), "one hash per transaction");
        self.begin_block(height)?;
        let max = self.params.max_tx_bytes as usize;
        let parsed: Vec<Result<TxEnvelope<'_>, TxError>> =
            txs.iter().map(|t| TxEnvelope::parse(t, max)).collect();
        let (good, good_hashes): (Vec<TxEnvelope<'_>>, Vec<[u8; 32]>) = parsed
            .iter()
            .zip(hashes)
            .filter_map(|(p, h)| p.as_ref().ok().map(|e| (*e, *h)))
            .unzip();
        let mut verified =
            kumo_types::tx::verify_batch_trusting_hashed(&good, &good_hashes, verified_before)
                .into_iter();
        let mut out = Vec::with_capacity(txs.len());
        for p in parsed {
            let r = match p {
                Err(e) => Err(TxRejected::from(e)),
                Ok(_) => match verified.next().expect("one result per envelope") {
                    Err(e) => Err(TxRejected::from(e)),
                    Ok(tx) => self.deliver_verified(&tx),
                },
            };
            out.push(r);
        }
        let end_events = self.end_block()?;
        Ok((out, end_events))
    }
}

/// The checks of a message that need no state, run before a transaction is admitted or
/// delivered (Cosmos' `ValidateBasic`): a hand-signed transaction meets them as one built by the
/// CLI does, and a refused one costs no fee.
fn check_msg(params: &Params, msg: &Msg) -> Result<(), MsgError> {
    match msg {
        Msg::CreateDeployment { groups, .. } => {
            deployment::check_groups(params, groups)?;
        }
        Msg::WithdrawLeases { ids } => market::check_withdraw_list(params, ids)?,
        _ => {}
    }
    Ok(())
}

/// Routes a message to its module.
fn dispatch(ctx: &mut Ctx<'_>, sender: &Address, msg: &Msg) -> Result<(), MsgError> {
    match msg {
        Msg::Send { to, amount } => bank::send(ctx, sender, to, amount),
        Msg::CreateProvider(f) => provider::create(ctx, sender, f),
        Msg::UpdateProvider(f) => provider::update(ctx, sender, f),
        Msg::DeleteProvider => provider::delete(ctx, sender),
        Msg::SignProviderAttributes {
            provider,
            attributes,
        } => audit::sign(ctx, sender, provider, attributes),
        Msg::DeleteProviderAttributes { provider, keys } => {
            audit::delete(ctx, sender, provider, keys)
        }
        Msg::CreateDeployment {
            id,
            groups,
            hash,
            deposit,
        } => deployment::create(ctx, sender, id, groups, *hash, deposit),
        Msg::UpdateDeployment { id, hash } => deployment::update(ctx, sender, id, *hash),
        Msg::DepositDeployment { id, amount } => deployment::deposit(ctx, sender, id, amount),
        Msg::CloseDeployment { id } => deployment::close(ctx, sender, id),
        Msg::CloseGroup { id } => deployment::close_group(ctx, sender, id),
        Msg::PauseGroup { id } => deployment::pause_group(ctx, sender, id),
        Msg::StartGroup { id } => deployment::start_group(ctx, sender, id),
        Msg::CreateBid {
            order,
            price,
            deposit,
            gpus,
        } => market::create_bid(ctx, sender, order, price, deposit, gpus),
        Msg::CloseBid { id } => market::close_bid(ctx, sender, id),
        Msg::CreateLease { bid } => market::create_lease(ctx, sender, bid),
        Msg::CloseLease { id, reason } => market::close_lease_msg(ctx, sender, id, *reason),
        Msg::WithdrawLease { id } => market::withdraw_lease(ctx, sender, id),
        Msg::WithdrawLeases { ids } => market::withdraw_leases(ctx, sender, ids),
        Msg::ProviderHeartbeat => provider::heartbeat(ctx, sender),
        Msg::DeclineOrder {
            order,
            reason,
            detail,
        } => market::decline_order(ctx, sender, order, *reason, detail),
        Msg::GrantTopUp {
            id,
            limit,
            below_blocks,
        } => escrow::grant_top_up(ctx, sender, id, limit, *below_blocks),
        Msg::RevokeTopUp { id } => escrow::revoke_top_up(ctx, sender, id),
    }
}
