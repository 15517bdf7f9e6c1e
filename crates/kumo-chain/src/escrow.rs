//! escrow: one account per deployment, one payment per lease, settled lazily, with a depletion
//! index so the end of each block closes exactly the accounts that ran dry in it.
//!
//! **Settlement.** An account holds `balance` (a [`Dec`], as of `settled_at`) and pays `rate`
//! per block, the sum of its open payments' rates. Nothing is written between settlements: at
//! height `h` the account owes `rate × (h − settled_at)`, and settling moves each payment's
//! `rate × blocks` from the account's balance to the payment's. Accounts are settled only when
//! touched: a deposit, a lease opening or closing, a withdrawal, a query (in memory only).
//!
//! **Depletion.** An account with open payments can pay `floor(balance / rate)` more blocks,
//! so its last fully paid block is `D = settled_at + floor(balance / rate)`, which settling does
//! not change (both terms shift by the blocks settled). `D` is stored in the account and in the
//! index `32 ‖ D ‖ deployment`; [`due_at`] lists the accounts whose `D` is a height, in
//! O(log n + k). At the end of block `D` the chain settles the account through `D`, closes its
//! leases with `insufficient_funds` and refunds what is left (less than one block's worth) to
//! the owner. A deposit or a rate change moves the index entry.
//!
//! **Exactness.** Deposits and withdrawals are whole units; balances and rates are decimals.
//! For every account, `balance + Σ payments' balance = deposited − Σ withdrawn − refunded`
//! holds exactly,
//! so the module account always holds exactly what the accounts and payments hold. A withdrawal
//! takes the whole units of a payment's balance (the fraction stays); when the account closes,
//! the fractions left in its payments go back to the owner with the rest.
//!
//! **Top-up.** An account may carry one allowance ([`TopUpAllowance`]): some account's
//! permission to move up to `remaining` into it, `below_blocks` blocks' worth at a time
//! (`ceil(rate × below_blocks)`), whenever fewer than `below_blocks` blocks of funds remain.
//! Its first such block is `D − below_blocks + 1`, kept in the account (`top_up_at`) and in
//! the index `33 ‖ height ‖ deployment`, moved with `D`; the end of that block tops it up
//! ([`top_up`]) before it closes the accounts that ran dry. An allowance ends when spent, when
//! its granter cannot pay a top-up, when revoked, or when the account closes.
//!
//! **Silent providers.** A lease closed `provider_unresponsive` gives back to the account what
//! it earned in the blocks its provider was silent ([`close_payment`]'s `refund_blocks`).
//!
//! **Take rate.** Of each withdrawal of `w` units, `floor(w × take_rate(denom))` goes to the
//! community pool and the rest to the provider.

use borsh::{BorshDeserialize, BorshSerialize};
use kumo_types::{Address, Coin, Dec, DeploymentId, LeaseId};

use crate::{
    Ctx, MsgError,
    bank::{self, COMMUNITY_POOL, ESCROW},
    events::Event,
    state::{self, EscrowAccount, EscrowState, Payment, PaymentState, TopUpAllowance, keys},
    store::Store,
};

const SCALE: u128 = 1_000_000_000_000_000_000;

/// Why an escrow operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EscrowError {
    /// No account.
    #[error("deployment {0} has no escrow account")]
    NotFound(DeploymentId),
    /// Account closed.
    #[error("escrow of deployment {0} is closed: create a new deployment")]
    Closed(DeploymentId),
    /// Wrong denomination.
    #[error("escrow of this deployment is in {want}, not {got}: deposit {want}")]
    Denom {
        /// The account's denomination.
        want: String,
        /// What was sent.
        got: String,
    },
    /// Zero deposit.
    #[error("deposit of zero: deposit a positive amount")]
    ZeroDeposit,
    /// An amount too large for 18-decimal arithmetic.
    #[error("amount {0} is too large for escrow arithmetic")]
    Overflow(u128),
    /// No payment for the lease.
    #[error("lease {0} has no open payment")]
    NoPayment(LeaseId),
    /// A top-up allowance that cannot work.
    #[error("top-up allowance: {0}")]
    TopUp(String),
    /// Someone other than the owner or the granter touching an allowance.
    #[error(
        "only the deployment's owner {owner} or the allowance's granter {granter} may replace or revoke it; the tx was signed by {sender}"
    )]
    NotGranter {
        /// The deployment's owner.
        owner: Address,
        /// The allowance's granter.
        granter: Address,
        /// The signer.
        sender: Address,
    },
}

/// Why an allowance ended.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    BorshSerialize,
    BorshDeserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum TopUpEnd {
    /// It moved all it was allowed to.
    Spent,
    /// Its granter could not pay a top-up when one was due.
    GranterFunds,
    /// Its granter or the owner revoked it, or a new grant replaced it.
    Revoked,
    /// The account closed.
    AccountClosed,
}

/// Most blocks one allowance's threshold may name (about a year of 1-second blocks).
pub const MAX_TOP_UP_BLOCKS: u64 = 31_536_000;

/// The fraction `rate` of `amount`, rounded down, without overflow for `rate ≤ 1`.
pub fn take_of(amount: u128, rate: Dec) -> u128 {
    let t = rate.atto().min(SCALE);
    (amount / SCALE) * t + (amount % SCALE) * t / SCALE
}

fn to_dec(amount: u128) -> Result<Dec, EscrowError> {
    amount
        .checked_mul(SCALE)
        .map(Dec::from_atto)
        .ok_or(EscrowError::Overflow(amount))
}

/// What the escrow table holds under a deployment's key: the account and its payments in one
/// record, so closing an account reads and writes one record however many leases it pays.
#[derive(BorshSerialize, BorshDeserialize)]
struct Record {
    account: EscrowAccount,
    payments: Vec<Payment>,
}

fn record(s: &dyn Store, id: &DeploymentId) -> Option<Record> {
    state::get(s, &keys::escrow(id))
}

fn put_record(s: &mut dyn Store, account: &EscrowAccount, payments: &[Payment]) {
    // Encoded by hand to write the borrowed parts without cloning them into a `Record`.
    let mut bytes = borsh::to_vec(account).expect("encoding to a Vec cannot fail");
    payments
        .serialize(&mut bytes)
        .expect("encoding to a Vec cannot fail");
    s.put(&keys::escrow(&account.id), bytes);
}

/// The escrow account of a deployment, as last written (not settled).
pub fn account(s: &dyn Store, id: &DeploymentId) -> Option<EscrowAccount> {
    record(s, id).map(|r| r.account)
}

/// The payments of a deployment's account, as last written, oldest first.
pub fn payments(s: &dyn Store, id: &DeploymentId) -> Vec<Payment> {
    record(s, id).map_or_else(Vec::new, |r| r.payments)
}

/// Settles `acct` and its open `payments` in memory up to `height`. Returns whether the account
/// could not pay every block (it is then settled through its last fully paid block).
pub fn settle_in_memory(acct: &mut EscrowAccount, payments: &mut [Payment], height: u64) -> bool {
    if height <= acct.settled_at || acct.state != EscrowState::Open {
        return false;
    }
    if acct.rate.is_zero() {
        acct.settled_at = height;
        return false;
    }
    let blocks = height - acct.settled_at;
    let affordable = acct.balance.atto() / acct.rate.atto();
    let (paid, short) = if u128::from(blocks) <= affordable {
        (blocks, false)
    } else {
        (affordable as u64, true)
    };
    for p in payments
        .iter_mut()
        .filter(|p| p.state == PaymentState::Open)
    {
        let earned = p.rate.checked_mul_int(paid).expect("earnings ≤ balance");
        p.balance = p.balance.checked_add(earned).expect("payment ≤ deposits");
    }
    let owed = acct.rate.checked_mul_int(paid).expect("owed ≤ balance");
    acct.balance = acct.balance.checked_sub(owed).expect("owed ≤ balance");
    acct.settled_at = if short {
        acct.settled_at + paid
    } else {
        height
    };
    short
}

/// The height at which `acct` runs dry: its last fully paid block.
pub fn depletion_height(acct: &EscrowAccount) -> Option<u64> {
    if acct.state != EscrowState::Open || acct.rate.is_zero() {
        return None;
    }
    let blocks = acct.balance.atto() / acct.rate.atto();
    Some(
        acct.settled_at
            .saturating_add(u64::try_from(blocks).unwrap_or(u64::MAX)),
    )
}

/// The accounts that run dry at `height` (the depletion index).
pub fn due_at(s: &dyn Store, height: u64) -> Vec<DeploymentId> {
    let prefix = keys::depletions_at(height);
    s.scan_prefix(&prefix)
        .into_iter()
        .map(|(k, _)| {
            let rest = &k[prefix.len()..];
            let mut owner = [0u8; 20];
            owner.copy_from_slice(&rest[..20]);
            let mut dseq = [0u8; 8];
            dseq.copy_from_slice(&rest[20..28]);
            DeploymentId {
                owner: Address(owner),
                dseq: u64::from_be_bytes(dseq),
            }
        })
        .collect()
}

/// A loaded account with its payments, settled to the current height; [`Loaded::save`] writes
/// both back and moves the depletion index entry if needed.
struct Loaded {
    acct: EscrowAccount,
    payments: Vec<Payment>,
    indexed_at: Option<u64>,
    top_up_indexed_at: Option<u64>,
}

impl Loaded {
    fn load(ctx: &mut Ctx<'_>, id: &DeploymentId) -> Result<Loaded, EscrowError> {
        let Record {
            account: mut acct,
            mut payments,
        } = record(ctx.store, id).ok_or(EscrowError::NotFound(*id))?;
        if acct.state != EscrowState::Open {
            return Err(EscrowError::Closed(*id));
        }
        let indexed_at = acct.depletes_at;
        let top_up_indexed_at = acct.top_up_at;
        settle_in_memory(&mut acct, &mut payments, ctx.height);
        Ok(Loaded {
            acct,
            payments,
            indexed_at,
            top_up_indexed_at,
        })
    }

    fn save(mut self, ctx: &mut Ctx<'_>) {
        let id = self.acct.id;
        self.acct.depletes_at = depletion_height(&self.acct);
        if self.acct.depletes_at != self.indexed_at {
            if let Some(h) = self.indexed_at {
                ctx.store.delete(&keys::depletion(h, &id));
            }
            if let Some(h) = self.acct.depletes_at {
                ctx.store.put(&keys::depletion(h, &id), Vec::new());
            }
        }
        // The end of this block still tops up what a transaction made due; once the end of the
        // block has run its top-ups, the earliest is the next block's.
        let earliest = ctx.height + u64::from(ctx.end_of_block);
        self.acct.top_up_at = match (&self.acct.top_up, self.acct.depletes_at) {
            (Some(a), Some(d)) => Some((d + 1).saturating_sub(a.below_blocks).max(earliest)),
            _ => None,
        };
        if self.acct.top_up_at != self.top_up_indexed_at {
            if let Some(h) = self.top_up_indexed_at {
                ctx.store.delete(&keys::top_up(h, &id));
            }
            if let Some(h) = self.acct.top_up_at {
                ctx.store.put(&keys::top_up(h, &id), Vec::new());
            }
        }
        put_record(ctx.store, &self.acct, &self.payments);
    }

    fn payment_mut(&mut self, lease: &LeaseId) -> Result<&mut Payment, EscrowError> {
        self.payments
            .iter_mut()
            .find(|p| p.id == *lease && p.state == PaymentState::Open)
            .ok_or(EscrowError::NoPayment(*lease))
    }
}

/// Opens the account of a new deployment, funded by `owner`.
pub(crate) fn open_account(
    ctx: &mut Ctx<'_>,
    id: &DeploymentId,
    deposit: &Coin,
) -> Result<(), MsgError> {
    let balance = to_dec(deposit.amount)?;
    bank::transfer(ctx, &id.owner, &bank::module_address(ESCROW), deposit)?;
    let acct = EscrowAccount {
        id: *id,
        state: EscrowState::Open,
        denom: deposit.denom.clone(),
        balance,
        rate: Dec::ZERO,
        settled_at: ctx.height,
        deposited: deposit.amount,
        refunded: 0,
        depletes_at: None,
        top_up: None,
        top_up_at: None,
    };
    put_record(ctx.store, &acct, &[]);
    ctx.events.push(Event::EscrowDeposited {
        id: *id,
        depositor: id.owner,
        amount: deposit.clone(),
    });
    Ok(())
}

/// Adds `amount` from `from` to a deployment's account.
pub(crate) fn deposit(
    ctx: &mut Ctx<'_>,
    id: &DeploymentId,
    from: &Address,
    amount: &Coin,
) -> Result<(), MsgError> {
    if amount.amount == 0 {
        return Err(EscrowError::ZeroDeposit.into());
    }
    let mut l = Loaded::load(ctx, id)?;
    if l.acct.denom != amount.denom {
        return Err(EscrowError::Denom {
            want: l.acct.denom.clone(),
            got: amount.denom.clone(),
        }
        .into());
    }
    let added = to_dec(amount.amount)?;
    l.acct.balance = l
        .acct
        .balance
        .checked_add(added)
        .ok_or(EscrowError::Overflow(amount.amount))?;
    l.acct.deposited = l
        .acct
        .deposited
        .checked_add(amount.amount)
        .ok_or(EscrowError::Overflow(amount.amount))?;
    bank::transfer(ctx, from, &bank::module_address(ESCROW), amount)?;
    l.save(ctx);
    ctx.events.push(Event::EscrowDeposited {
        id: *id,
        depositor: *from,
        amount: amount.clone(),
    });
    Ok(())
}

/// Opens the payment of a new lease at `rate` per block, from the next block on.
pub(crate) fn open_payment(ctx: &mut Ctx<'_>, lease: &LeaseId, rate: Dec) -> Result<(), MsgError> {
    let mut l = Loaded::load(ctx, &lease.deployment())?;
    l.acct.rate = l
        .acct
        .rate
        .checked_add(rate)
        .ok_or(EscrowError::Overflow(rate.atto()))?;
    l.payments.push(Payment {
        id: *lease,
        state: PaymentState::Open,
        rate,
        balance: Dec::ZERO,
        withdrawn: 0,
    });
    l.save(ctx);
    Ok(())
}

/// Pays out the whole units of a payment's balance: the take to the community pool, the rest to
/// the provider.
fn pay_out(ctx: &mut Ctx<'_>, denom: &str, p: &mut Payment) -> Result<(Coin, Coin), MsgError> {
    let amount = p.balance.floor();
    let take = take_of(amount, ctx.params.take_rate(denom));
    p.balance = p
        .balance
        .checked_sub(to_dec(amount)?)
        .expect("floor ≤ balance");
    p.withdrawn += amount;
    let escrow = bank::module_address(ESCROW);
    let to_provider = Coin::new(denom, amount - take);
    let to_pool = Coin::new(denom, take);
    bank::transfer(ctx, &escrow, &p.id.provider, &to_provider)?;
    bank::transfer(
        ctx,
        &escrow,
        &bank::module_address(COMMUNITY_POOL),
        &to_pool,
    )?;
    Ok((to_provider, to_pool))
}

/// `WithdrawLease`: settles and pays the provider what the lease has earned.
pub(crate) fn withdraw(ctx: &mut Ctx<'_>, lease: &LeaseId) -> Result<(), MsgError> {
    let mut l = Loaded::load(ctx, &lease.deployment())?;
    let denom = l.acct.denom.clone();
    let mut p = l.payment_mut(lease)?.clone();
    let (amount, take) = pay_out(ctx, &denom, &mut p)?;
    *l.payment_mut(lease)? = p;
    l.save(ctx);
    ctx.events.push(Event::LeaseWithdrawn {
        id: *lease,
        amount,
        take,
    });
    Ok(())
}

/// Closes a lease's payment: settles, gives back to the account what the lease earned in its
/// last `refund_blocks` blocks (those its provider was silent; at most what the payment holds),
/// pays the provider the rest, stops the rate.
pub(crate) fn close_payment(
    ctx: &mut Ctx<'_>,
    lease: &LeaseId,
    refund_blocks: u64,
) -> Result<(), MsgError> {
    let mut l = Loaded::load(ctx, &lease.deployment())?;
    let denom = l.acct.denom.clone();
    let mut p = l.payment_mut(lease)?.clone();
    if refund_blocks > 0 {
        let back = p
            .rate
            .checked_mul_int(refund_blocks)
            .map_or(p.balance, |b| b.min(p.balance));
        p.balance = p.balance.checked_sub(back).expect("back ≤ balance");
        l.acct.balance = l
            .acct
            .balance
            .checked_add(back)
            .expect("balances ≤ deposits");
        if !back.is_zero() {
            ctx.events.push(Event::SilentBlocksRefunded {
                id: *lease,
                blocks: refund_blocks,
                amount: kumo_types::DecCoin::new(denom.clone(), back),
            });
        }
    }
    let (amount, take) = pay_out(ctx, &denom, &mut p)?;
    p.state = PaymentState::Closed;
    l.acct.rate = l
        .acct
        .rate
        .checked_sub(p.rate)
        .expect("rate is the sum of open payments");
    *l.payments
        .iter_mut()
        .find(|q| q.id == *lease)
        .expect("payment exists") = p;
    l.save(ctx);
    if amount.amount > 0 || take.amount > 0 {
        ctx.events.push(Event::LeaseWithdrawn {
            id: *lease,
            amount,
            take,
        });
    }
    Ok(())
}

/// Closes a deployment's account once its leases are closed, refunding the rest to the owner.
pub(crate) fn close_account(
    ctx: &mut Ctx<'_>,
    id: &DeploymentId,
    overdrawn: bool,
) -> Result<(), MsgError> {
    let l = Loaded::load(ctx, id)?;
    let Loaded {
        mut acct,
        mut payments,
        indexed_at,
        top_up_indexed_at,
    } = l;
    debug_assert!(
        payments.iter().all(|p| p.state == PaymentState::Closed),
        "leases close first"
    );
    let mut held = acct.balance;
    let mut withdrawn = 0u128;
    for p in &mut payments {
        held = held.checked_add(p.balance).expect("held ≤ deposited");
        withdrawn += p.withdrawn;
        p.balance = Dec::ZERO;
        p.state = PaymentState::Closed;
    }
    let refund = acct.deposited - withdrawn - acct.refunded;
    assert_eq!(
        held,
        to_dec(refund)?,
        "escrow accounting broken for {id}: balances {held} ≠ deposited − withdrawn {refund}"
    );
    let refund = Coin::new(acct.denom.clone(), refund);
    bank::transfer(ctx, &bank::module_address(ESCROW), &id.owner, &refund)?;
    acct.refunded += refund.amount;
    acct.balance = Dec::ZERO;
    acct.rate = Dec::ZERO;
    acct.state = if overdrawn {
        EscrowState::Overdrawn
    } else {
        EscrowState::Closed
    };
    acct.depletes_at = None;
    if let Some(h) = indexed_at {
        ctx.store.delete(&keys::depletion(h, id));
    }
    if let Some(h) = top_up_indexed_at {
        ctx.store.delete(&keys::top_up(h, id));
    }
    acct.top_up_at = None;
    if acct.top_up.take().is_some() {
        ctx.events.push(Event::TopUpEnded {
            id: *id,
            reason: TopUpEnd::AccountClosed,
        });
    }
    put_record(ctx.store, &acct, &payments);
    ctx.events.push(Event::EscrowClosed {
        id: *id,
        refund,
        overdrawn,
    });
    Ok(())
}

/// `GrantTopUp`: `granter` allows up to `limit` into the account, `below_blocks` blocks'
/// worth whenever fewer than that remain. Replaces the current allowance only when the sender is
/// its granter or the deployment's owner (a stranger cannot shrink someone's safety net).
pub(crate) fn grant_top_up(
    ctx: &mut Ctx<'_>,
    granter: &Address,
    id: &DeploymentId,
    limit: &Coin,
    below_blocks: u64,
) -> Result<(), MsgError> {
    let mut l = Loaded::load(ctx, id)?;
    if l.acct.denom != limit.denom {
        return Err(EscrowError::Denom {
            want: l.acct.denom.clone(),
            got: limit.denom.clone(),
        }
        .into());
    }
    if limit.amount == 0 {
        return Err(EscrowError::TopUp("limit of zero: allow a positive amount".into()).into());
    }
    to_dec(limit.amount)?;
    if below_blocks == 0 || below_blocks > MAX_TOP_UP_BLOCKS {
        return Err(EscrowError::TopUp(format!(
            "below_blocks {below_blocks} is out of range: pick 1 to {MAX_TOP_UP_BLOCKS}"
        ))
        .into());
    }
    if let Some(old) = &l.acct.top_up {
        if *granter != old.granter && *granter != id.owner {
            return Err(EscrowError::NotGranter {
                owner: id.owner,
                granter: old.granter,
                sender: *granter,
            }
            .into());
        }
        ctx.events.push(Event::TopUpEnded {
            id: *id,
            reason: TopUpEnd::Revoked,
        });
    }
    l.acct.top_up = Some(TopUpAllowance {
        granter: *granter,
        remaining: limit.amount,
        below_blocks,
        spent: 0,
    });
    l.save(ctx);
    ctx.events.push(Event::TopUpGranted {
        id: *id,
        granter: *granter,
        limit: limit.clone(),
        below_blocks,
    });
    Ok(())
}

/// `RevokeTopUp`: by the allowance's granter or the deployment's owner.
pub(crate) fn revoke_top_up(
    ctx: &mut Ctx<'_>,
    sender: &Address,
    id: &DeploymentId,
) -> Result<(), MsgError> {
    let mut l = Loaded::load(ctx, id)?;
    let Some(old) = &l.acct.top_up else {
        return Err(EscrowError::TopUp(format!("deployment {id} has no allowance")).into());
    };
    if *sender != old.granter && *sender != id.owner {
        return Err(EscrowError::NotGranter {
            owner: id.owner,
            granter: old.granter,
            sender: *sender,
        }
        .into());
    }
    l.acct.top_up = None;
    l.save(ctx);
    ctx.events.push(Event::TopUpEnded {
        id: *id,
        reason: TopUpEnd::Revoked,
    });
    Ok(())
}

/// The accounts due a top-up at the end of `height`.
pub fn top_ups_at(s: &dyn Store, height: u64) -> Vec<DeploymentId> {
    let prefix = keys::top_ups_at(height);
    s.scan_prefix(&prefix)
        .into_iter()
        .map(|(k, _)| deployment_id_from_key(&k[prefix.len()..]))
        .collect()
}

fn deployment_id_from_key(rest: &[u8]) -> DeploymentId {
    let mut owner = [0u8; 20];
    owner.copy_from_slice(&rest[..20]);
    DeploymentId {
        owner: Address(owner),
        dseq: u64::from_be_bytes(rest[20..28].try_into().expect("8 bytes")),
    }
}

/// End of block: moves one top-up into an account that is due one, from its allowance's
/// granter: `ceil(rate × below_blocks)`, at most what the allowance has left. When the granter
/// cannot pay it, nothing moves and the allowance ends (the account then runs dry as it would
/// without one, and closes `insufficient_funds`).
pub(crate) fn top_up(ctx: &mut Ctx<'_>, id: &DeploymentId) -> Result<(), MsgError> {
    let mut l = Loaded::load(ctx, id)?;
    let Some(mut a) = l.acct.top_up.clone() else {
        return Ok(());
    };
    let want = l
        .acct
        .rate
        .checked_mul_int(a.below_blocks)
        .map_or(u128::MAX, Dec::ceil);
    let amount = want.min(a.remaining);
    let coin = Coin::new(l.acct.denom.clone(), amount);
    let end = if amount == 0 {
        Some(TopUpEnd::Spent)
    } else if bank::balance(ctx.store, &a.granter, &coin.denom) < amount {
        Some(TopUpEnd::GranterFunds)
    } else {
        bank::transfer(ctx, &a.granter, &bank::module_address(ESCROW), &coin)?;
        l.acct.balance = l
            .acct
            .balance
            .checked_add(to_dec(amount)?)
            .ok_or(EscrowError::Overflow(amount))?;
        l.acct.deposited = l
            .acct
            .deposited
            .checked_add(amount)
            .ok_or(EscrowError::Overflow(amount))?;
        a.remaining -= amount;
        a.spent += amount;
        ctx.events.push(Event::EscrowToppedUp {
            id: *id,
            granter: a.granter,
            amount: coin,
            remaining: a.remaining,
        });
        (a.remaining == 0).then_some(TopUpEnd::Spent)
    };
    l.acct.top_up = match end {
        Some(reason) => {
            ctx.events.push(Event::TopUpEnded { id: *id, reason });
            None
        }
        None => Some(a),
    };
    l.save(ctx);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_is_exact_floor() {
        let two_pct = Dec::from_atto(SCALE / 50);
        assert_eq!(take_of(100, two_pct), 2);
        assert_eq!(take_of(149, two_pct), 2);
        assert_eq!(take_of(150, two_pct), 3);
        assert_eq!(take_of(u128::MAX, Dec::from_int(1)), u128::MAX);
        assert_eq!(take_of(u128::MAX, Dec::ZERO), 0);
    }

    #[test]
    fn depletion_height_is_invariant_under_settlement() {
        let id = DeploymentId {
            owner: Address([1; 20]),
            dseq: 1,
        };
        let lease = id.group(1).order(1).bid(Address([2; 20]));
        let mut acct = EscrowAccount {
            id,
            state: EscrowState::Open,
            denom: "ukumo".into(),
            balance: Dec::from_int(1000),
            rate: "3.5".parse().unwrap(),
            settled_at: 10,
            deposited: 1000,
            refunded: 0,
            depletes_at: None,
            top_up: None,
            top_up_at: None,
        };
        let mut ps = vec![Payment {
            id: lease,
            state: PaymentState::Open,
            rate: acct.rate,
            balance: Dec::ZERO,
            withdrawn: 0,
        }];
        let d = depletion_height(&acct).unwrap();
        assert_eq!(d, 10 + 285); // 1000 / 3.5 = 285.7
        assert!(!settle_in_memory(&mut acct, &mut ps, 100));
        assert_eq!(depletion_height(&acct), Some(d));
        assert!(!settle_in_memory(&mut acct, &mut ps, d));
        assert!(acct.balance < acct.rate);
        assert_eq!(
            acct.balance.checked_add(ps[0].balance).unwrap(),
            Dec::from_int(1000)
        );
        assert!(!settle_in_memory(&mut acct, &mut ps, d));
        assert!(settle_in_memory(&mut acct, &mut ps, d + 1));
    }
}
