//! bank: balances, transfers and total supply.
//!
//! Balances are `u128` per (address, denom); a zero balance is deleted, so state has one form.
//! Supply per denom is set at genesis and never changes: no message mints or burns. Module
//! accounts ([`ESCROW`], [`MARKET`], [`COMMUNITY_POOL`], [`FEE_COLLECTOR`]) hold what the
//! modules hold on behalf of others; nobody has their keys.

use kumo_types::{Address, Coin, Coins};

use crate::{
    Ctx, MsgError,
    events::Event,
    state::{self, keys},
    store::Store,
};

/// Name of the module account holding escrow deposits.
pub const ESCROW: &str = "escrow";
/// Name of the module account holding bid deposits.
pub const MARKET: &str = "market";
/// Name of the community pool, which receives the take rate.
pub const COMMUNITY_POOL: &str = "community_pool";
/// Name of the module account receiving fees.
pub const FEE_COLLECTOR: &str = "fee_collector";

/// The address of a module account.
pub fn module_address(name: &str) -> Address {
    Address::module(name)
}

/// Why a bank operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BankError {
    /// Not enough funds.
    #[error(
        "{account} has {have}{denom} but needs {need}{denom}: fund it first (e.g. with a send)"
    )]
    InsufficientFunds {
        /// The payer.
        account: Address,
        /// Denomination.
        denom: String,
        /// Balance.
        have: u128,
        /// Amount needed.
        need: u128,
    },
    /// Nothing to send.
    #[error("send of no coins: give at least one non-zero coin")]
    EmptySend,
    /// A balance would overflow (cannot happen with a sane supply).
    #[error("balance overflow for {0}")]
    Overflow(String),
}

/// The balance of `addr` in `denom`.
pub fn balance(s: &dyn Store, addr: &Address, denom: &str) -> u128 {
    state::get::<u128>(s, &keys::balance(addr, denom)).unwrap_or(0)
}

/// Every balance of `addr`.
pub fn balances(s: &dyn Store, addr: &Address) -> Coins {
    let prefix = keys::balances(addr);
    let coins = s.scan_prefix(&prefix).into_iter().map(|(k, v)| {
        let denom = String::from_utf8(k[prefix.len()..].to_vec()).expect("denoms are UTF-8");
        Coin::new(denom, borsh::from_slice(&v).expect("balances decode"))
    });
    Coins::from_sorted(coins.collect()).expect("balances are stored sorted and non-zero")
}

pub(crate) fn set_balance(s: &mut dyn Store, addr: &Address, denom: &str, amount: u128) {
    let k = keys::balance(addr, denom);
    if amount == 0 {
        s.delete(&k);
    } else {
        state::put(s, &k, &amount);
    }
}

/// Moves `coin` from `from` to `to` without an event.
pub(crate) fn move_coin(
    s: &mut dyn Store,
    from: &Address,
    to: &Address,
    coin: &Coin,
) -> Result<(), BankError> {
    if coin.amount == 0 || from == to {
        return Ok(());
    }
    let have = balance(s, from, &coin.denom);
    if have < coin.amount {
        return Err(BankError::InsufficientFunds {
            account: *from,
            denom: coin.denom.clone(),
            have,
            need: coin.amount,
        });
    }
    let theirs = balance(s, to, &coin.denom)
        .checked_add(coin.amount)
        .ok_or_else(|| BankError::Overflow(coin.denom.clone()))?;
    set_balance(s, from, &coin.denom, have - coin.amount);
    set_balance(s, to, &coin.denom, theirs);
    Ok(())
}

/// Moves `coin` and records a [`Event::Transfer`].
pub(crate) fn transfer(
    ctx: &mut Ctx<'_>,
    from: &Address,
    to: &Address,
    coin: &Coin,
) -> Result<(), MsgError> {
    if coin.amount == 0 {
        return Ok(());
    }
    move_coin(ctx.store, from, to, coin)?;
    ctx.events.push(Event::Transfer {
        from: *from,
        to: *to,
        amount: coin.clone(),
    });
    Ok(())
}

/// `Send`.
pub(crate) fn send(
    ctx: &mut Ctx<'_>,
    sender: &Address,
    to: &Address,
    amount: &Coins,
) -> Result<(), MsgError> {
    if amount.is_empty() {
        return Err(BankError::EmptySend.into());
    }
    for c in amount.as_slice() {
        transfer(ctx, sender, to, c)?;
    }
    Ok(())
}

/// Total supply of every denom.
pub fn supply(s: &dyn Store) -> Coins {
    let prefix = keys::all_supply();
    let coins = s.scan_prefix(&prefix).into_iter().map(|(k, v)| {
        let denom = String::from_utf8(k[prefix.len()..].to_vec()).expect("denoms are UTF-8");
        Coin::new(denom, borsh::from_slice(&v).expect("supply decodes"))
    });
    Coins::from_sorted(coins.collect()).expect("supply is stored sorted and non-zero")
}
