//! market: orders, bids and leases.
//!
//! A deployment's group gets an order; registered providers whose attributes, attestations and
//! capabilities satisfy the group bid on it with a price ≤ the order's and a deposit; the tenant
//! accepts one bid, which becomes the lease (the others are lost and refunded) and opens an
//! escrow payment at the bid's price. An order without a lease after `order_ttl` blocks closes
//! at the end of its expiry block and refunds every bid (unlike Akash, where it stays open).
//! Bid deposits sit in the `market` module account while the bid is open or active.
//!
//! A provider that will not bid says so with `DeclineOrder` (a reason code and a sentence),
//! kept while the order is open, so a tenant learns "no" in a block or two instead of waiting
//! out the order. A provider whose leases' silence deadline passes (see [`crate::provider`])
//! has them closed at the end of that block ([`close_silent`]).

use kumo_types::{
    Address, BidId, Coin, DecCoin, DeclineReason, LeaseCloseReason, LeaseId, OrderId,
    matching::MatchError,
};

use crate::{
    Ctx, MsgError, Params,
    bank::{self, MARKET},
    escrow,
    events::{Event, OrderCloseReason},
    provider::{self, ProviderError},
    state::{
        self, Bid, BidState, Decline, DeploymentState, Group, GroupState, Lease, LeaseState, Order,
        OrderState, keys,
    },
    store::Store,
};

/// Why a market message failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MarketError {
    /// No such order.
    #[error("order {0} does not exist")]
    OrderNotFound(OrderId),
    /// Order not open.
    #[error("order {0} is not open for bids (already leased, closed or expired)")]
    OrderNotOpen(OrderId),
    /// Bid already placed.
    #[error("provider already bid on order {0}: close that bid first to bid again")]
    BidExists(OrderId),
    /// Too many bids.
    #[error("order {0} already has the maximum number of open bids")]
    TooManyBids(OrderId),
    /// No such bid.
    #[error("bid {0} does not exist")]
    BidNotFound(BidId),
    /// Bid not open.
    #[error("bid {0} is not open (it was accepted, lost or closed)")]
    BidNotOpen(BidId),
    /// No such lease.
    #[error("lease {0} does not exist")]
    LeaseNotFound(LeaseId),
    /// A `WithdrawLeases` list that is empty, too long or names a lease twice.
    #[error("withdraw list: {0}")]
    WithdrawList(String),
    /// Lease not active.
    #[error("lease {0} is not active")]
    LeaseNotActive(LeaseId),
    /// Sender is not the order's owner.
    #[error("only the deployment's owner {owner} may do this; the tx was signed by {sender}")]
    NotOwner {
        /// The owner.
        owner: Address,
        /// The signer.
        sender: Address,
    },
    /// Sender is not the bid's provider.
    #[error("only provider {provider} may do this; the tx was signed by {sender}")]
    NotProvider {
        /// The provider.
        provider: Address,
        /// The signer.
        sender: Address,
    },
    /// Bid price in another denomination.
    #[error("bid price is in {got} but the order pays in {want}: bid in {want}")]
    PriceDenom {
        /// The order's denomination.
        want: String,
        /// The bid's.
        got: String,
    },
    /// Bid price above the order's.
    #[error("bid price {bid} is above the order's maximum {max}: bid at most {max}")]
    PriceTooHigh {
        /// Bid price.
        bid: DecCoin,
        /// Order price.
        max: DecCoin,
    },
    /// Zero price.
    #[error("bid price is zero: bid a positive price")]
    ZeroPrice,
    /// The bid's GPU offer is malformed or does not count the group's GPUs.
    #[error("bid's GPU offer: {0}")]
    GpuOffer(String),
    /// Deposit in the wrong denomination or too small.
    #[error("bid deposit {got} is below the minimum {min}: deposit at least {min}")]
    DepositTooSmall {
        /// Minimum.
        min: Coin,
        /// Offered.
        got: Coin,
    },
    /// Provider does not match the group.
    #[error("provider does not satisfy the group: {0}")]
    Mismatch(#[from] MatchError),
    /// `insufficient_funds` and `provider_unresponsive` are the chain's to set.
    #[error("close reason {} is set by the chain only: pick another reason", .0.as_str())]
    ReservedReason(LeaseCloseReason),
    /// A decline of an order the provider bid on.
    #[error("provider has an open bid on order {0}: close the bid (CloseBid) instead of declining")]
    DeclineWithBid(OrderId),
    /// A decline whose detail is too long.
    #[error("decline detail is {len} bytes, more than the limit of {max}: shorten it")]
    DeclineDetail {
        /// Its length.
        len: usize,
        /// The limit.
        max: u32,
    },
    /// The deployment or group is not accepting leases.
    #[error("the order's group is not open: start the group or create a new deployment")]
    GroupNotOpen,
}

/// An order by id.
pub fn order(s: &dyn Store, id: &OrderId) -> Option<Order> {
    state::get(s, &keys::order(id))
}

/// A bid by id.
pub fn bid(s: &dyn Store, id: &BidId) -> Option<Bid> {
    state::get(s, &keys::bid(id))
}

/// A lease by id.
pub fn lease(s: &dyn Store, id: &LeaseId) -> Option<Lease> {
    state::get(s, &keys::lease(id))
}

/// Opens order `group.oseq` for `group`.
pub(crate) fn create_order(ctx: &mut Ctx<'_>, group: &Group) -> Result<(), MsgError> {
    let id = group.id.order(group.oseq);
    let price = group
        .spec
        .price()
        .expect("group prices were checked at creation");
    let expires_at = ctx.height.saturating_add(ctx.params.order_ttl);
    let o = Order {
        id,
        state: OrderState::Open,
        price: price.clone(),
        created_at: ctx.height,
        expires_at,
        leased_to: None,
    };
    state::put(ctx.store, &keys::order(&id), &o);
    ctx.store.put(&keys::open_order(&id), Vec::new());
    ctx.store
        .put(&keys::order_expiry(expires_at, &id), Vec::new());
    ctx.events.push(Event::OrderCreated {
        id,
        price,
        expires_at,
    });
    Ok(())
}

/// Marks a bid `state`, refunds its deposit and drops it from the provider's open bids.
fn finish_bid(ctx: &mut Ctx<'_>, mut b: Bid, new_state: BidState) -> Result<(), MsgError> {
    bank::transfer(
        ctx,
        &bank::module_address(MARKET),
        &b.id.provider,
        &b.deposit,
    )?;
    if b.state == BidState::Open {
        ctx.store.delete(&keys::provider_bid(&b.id));
    }
    b.state = new_state;
    state::put(ctx.store, &keys::bid(&b.id), &b);
    ctx.events.push(match new_state {
        BidState::Lost => Event::BidLost { id: b.id },
        _ => Event::BidClosed { id: b.id },
    });
    Ok(())
}

/// Closes an open order: every open bid closes and is refunded.
pub(crate) fn close_open_order(
    ctx: &mut Ctx<'_>,
    mut o: Order,
    reason: OrderCloseReason,
) -> Result<(), MsgError> {
    debug_assert_eq!(o.state, OrderState::Open);
    for b in state::scan::<Bid>(ctx.store, &keys::bids_of(&o.id)) {
        if b.state == BidState::Open {
            finish_bid(ctx, b, BidState::Closed)?;
        }
    }
    ctx.store.delete(&keys::open_order(&o.id));
    ctx.store.delete(&keys::order_expiry(o.expires_at, &o.id));
    drop_declines(ctx, &o.id);
    o.state = OrderState::Closed;
    state::put(ctx.store, &keys::order(&o.id), &o);
    ctx.events.push(Event::OrderClosed { id: o.id, reason });
    Ok(())
}

/// Drops an order's declines once it stops taking bids (they only explain an open order).
fn drop_declines(ctx: &mut Ctx<'_>, order: &OrderId) {
    for (k, _) in ctx.store.scan_prefix(&keys::declines_of(order)) {
        ctx.store.delete(&k);
    }
}

/// An open order's declines, by provider address.
pub fn declines(s: &dyn Store, order: &OrderId) -> Vec<Decline> {
    state::scan(s, &keys::declines_of(order))
}

/// `DeclineOrder`: a registered provider says it will not bid on an open order, and why.
pub(crate) fn decline_order(
    ctx: &mut Ctx<'_>,
    sender: &Address,
    order_id: &OrderId,
    reason: DeclineReason,
    detail: &str,
) -> Result<(), MsgError> {
    let max = ctx.params.max_string_bytes;
    if detail.len() > max as usize {
        return Err(MarketError::DeclineDetail {
            len: detail.len(),
            max,
        }
        .into());
    }
    let o = order(ctx.store, order_id).ok_or(MarketError::OrderNotFound(*order_id))?;
    if o.state != OrderState::Open {
        return Err(MarketError::OrderNotOpen(*order_id).into());
    }
    if provider::get(ctx.store, sender).is_none() {
        return Err(ProviderError::Unknown(*sender).into());
    }
    if bid(ctx.store, &order_id.bid(*sender)).is_some_and(|b| b.state == BidState::Open) {
        return Err(MarketError::DeclineWithBid(*order_id).into());
    }
    provider::seen(ctx, sender);
    let d = Decline {
        order: *order_id,
        provider: *sender,
        reason,
        detail: detail.to_string(),
        height: ctx.height,
    };
    state::put(ctx.store, &keys::decline(order_id, sender), &d);
    ctx.events.push(Event::OrderDeclined {
        order: *order_id,
        provider: *sender,
        reason,
    });
    Ok(())
}

/// Closes an active lease: pays out and stops its payment, refunds the winning bid's deposit,
/// closes its order. The caller decides what happens to the group.
pub(crate) fn close_lease(
    ctx: &mut Ctx<'_>,
    id: &LeaseId,
    reason: LeaseCloseReason,
) -> Result<(), MsgError> {
    let mut l = lease(ctx.store, id).ok_or(MarketError::LeaseNotFound(*id))?;
    if l.state != LeaseState::Active {
        return Err(MarketError::LeaseNotActive(*id).into());
    }
    let refund_blocks = if reason == LeaseCloseReason::ProviderUnresponsive {
        let last_seen = provider::get(ctx.store, &id.provider).map_or(0, |p| p.last_seen);
        ctx.height.saturating_sub(last_seen.max(l.created_at))
    } else {
        0
    };
    escrow::close_payment(ctx, id, refund_blocks)?;
    l.state = if reason == LeaseCloseReason::InsufficientFunds {
        LeaseState::InsufficientFunds
    } else {
        LeaseState::Closed
    };
    l.closed_at = Some(ctx.height);
    l.close_reason = Some(reason);
    state::put(ctx.store, &keys::lease(id), &l);
    count_active_lease(ctx, &id.provider, false);
    let b = bid(ctx.store, id).expect("a lease has its bid");
    finish_bid(ctx, b, BidState::Closed)?;
    let mut o = order(ctx.store, &id.order()).expect("a lease has its order");
    o.state = OrderState::Closed;
    state::put(ctx.store, &keys::order(&o.id), &o);
    ctx.events.push(Event::LeaseClosed { id: *id, reason });
    ctx.events.push(Event::OrderClosed {
        id: o.id,
        reason: OrderCloseReason::LeaseClosed,
    });
    Ok(())
}

/// Counts a lease opening (`true`) or closing in its provider's record, and keeps its silence
/// deadline: a new lease gives the provider `liveness_window` blocks from now to prove it is
/// alive; without leases it has no deadline.
///
/// A provider with open bids or active leases cannot be deleted, so it is registered.
fn count_active_lease(ctx: &mut Ctx<'_>, addr: &Address, opens: bool) {
    let mut p = provider::get(ctx.store, addr).expect("a bidding provider exists");
    p.active_leases = match opens {
        true => p.active_leases + 1,
        false => p
            .active_leases
            .checked_sub(1)
            .expect("a closing lease was counted"),
    };
    let deadline = match (opens, p.active_leases) {
        (_, 0) => None,
        (true, _) => {
            let new = ctx.height.saturating_add(ctx.params.liveness_window);
            Some(p.silence_deadline.map_or(new, |d| d.max(new)))
        }
        (false, _) => p.silence_deadline,
    };
    provider::set_deadline(ctx, &mut p, deadline);
    state::put(ctx.store, &keys::provider(addr), &p);
}

/// End of block: closes every active lease of a provider whose silence deadline is this block,
/// `provider_unresponsive`, refunding the silent blocks; their groups pause, so the tenant can
/// reopen them elsewhere (`StartGroup`).
pub(crate) fn close_silent(ctx: &mut Ctx<'_>, addr: &Address) -> Result<(), MsgError> {
    let Some(p) = provider::get(ctx.store, addr) else {
        return Ok(());
    };
    if p.silence_deadline != Some(ctx.height) {
        return Ok(());
    }
    ctx.events.push(Event::ProviderSilent {
        provider: *addr,
        last_seen: p.last_seen,
    });
    let leases: Vec<Lease> = ctx
        .store
        .scan_prefix(&keys::provider_leases(addr))
        .into_iter()
        .filter_map(|(k, _)| lease(ctx.store, &crate::query::bid_id_from_index(&k, 1)))
        .filter(|l| l.state == LeaseState::Active)
        .collect();
    for l in leases {
        close_lease(ctx, &l.id, LeaseCloseReason::ProviderUnresponsive)?;
        crate::deployment::set_group_state(ctx, &l.id.group(), GroupState::Paused)?;
    }
    Ok(())
}

/// Ends whatever the group's current order is doing: closes the open order (refunding bids)
/// or the active lease (with `reason`).
pub(crate) fn wind_down_group(
    ctx: &mut Ctx<'_>,
    group: &Group,
    reason: LeaseCloseReason,
) -> Result<(), MsgError> {
    let Some(o) = order(ctx.store, &group.id.order(group.oseq)) else {
        return Ok(());
    };
    match o.state {
        OrderState::Open => close_open_order(ctx, o, OrderCloseReason::GroupClosed),
        OrderState::Active => {
            let provider = o.leased_to.expect("an active order has a lease");
            close_lease(ctx, &o.id.bid(provider), reason)
        }
        OrderState::Closed => Ok(()),
    }
}

fn open_group_of(ctx: &Ctx<'_>, id: &OrderId) -> Result<Group, MsgError> {
    let d: state::Deployment = state::get(ctx.store, &keys::deployment(&id.deployment()))
        .ok_or(MarketError::OrderNotFound(*id))?;
    let g: Group =
        state::get(ctx.store, &keys::group(&id.group())).ok_or(MarketError::OrderNotFound(*id))?;
    if d.state != DeploymentState::Active || g.state != GroupState::Open {
        return Err(MarketError::GroupNotOpen.into());
    }
    Ok(g)
}

/// `CreateBid`.
pub(crate) fn create_bid(
    ctx: &mut Ctx<'_>,
    sender: &Address,
    order_id: &OrderId,
    price: &DecCoin,
    deposit: &Coin,
    gpus: &[kumo_types::GpuOffer],
) -> Result<(), MsgError> {
    kumo_types::gpu::validate_offers(gpus).map_err(|e| MarketError::GpuOffer(e.to_string()))?;
    let o = order(ctx.store, order_id).ok_or(MarketError::OrderNotFound(*order_id))?;
    if o.state != OrderState::Open {
        return Err(MarketError::OrderNotOpen(*order_id).into());
    }
    let p = provider::get(ctx.store, sender).ok_or(ProviderError::Unknown(*sender))?;
    let id = order_id.bid(*sender);
    if bid(ctx.store, &id).is_some() {
        return Err(MarketError::BidExists(*order_id).into());
    }
    if price.denom != o.price.denom {
        return Err(MarketError::PriceDenom {
            want: o.price.denom.clone(),
            got: price.denom.clone(),
        }
        .into());
    }
    if price.amount.is_zero() {
        return Err(MarketError::ZeroPrice.into());
    }
    if price.amount > o.price.amount {
        return Err(MarketError::PriceTooHigh {
            bid: price.clone(),
            max: o.price.clone(),
        }
        .into());
    }
    let min = &ctx.params.bid_min_deposit;
    if deposit.denom != min.denom || deposit.amount < min.amount {
        return Err(MarketError::DepositTooSmall {
            min: min.clone(),
            got: deposit.clone(),
        }
        .into());
    }
    let group = open_group_of(ctx, order_id)?;
    let attestations = crate::audit::attestations_for_matching(ctx.store, sender);
    kumo_types::matching::match_group_within(
        &group.spec,
        &p.fields.attributes,
        &attestations,
        &kumo_types::matching::Meter::new(ctx.params.max_match_work),
    )
    .map_err(MarketError::from)?;
    if !gpus.is_empty() {
        // An offer names exactly the GPUs the group asks for, no more and no fewer.
        let wanted: u64 = group
            .spec
            .resources
            .iter()
            .map(|u| u.resources.gpu.units.saturating_mul(u64::from(u.count)))
            .sum();
        let offered: u64 = gpus.iter().map(|g| u64::from(g.count)).sum();
        if offered != wanted {
            return Err(MarketError::GpuOffer(format!(
                "it offers {offered} GPUs, the group asks for {wanted}"
            ))
            .into());
        }
    }
    let open = state::scan::<Bid>(ctx.store, &keys::bids_of(order_id))
        .iter()
        .filter(|b| b.state == BidState::Open)
        .count();
    if open >= ctx.params.max_bids_per_order as usize {
        return Err(MarketError::TooManyBids(*order_id).into());
    }
    bank::transfer(ctx, sender, &bank::module_address(MARKET), deposit)?;
    ctx.store.delete(&keys::decline(order_id, sender));
    provider::seen(ctx, sender);
    let b = Bid {
        id,
        state: BidState::Open,
        price: price.clone(),
        deposit: deposit.clone(),
        created_at: ctx.height,
        gpus: gpus.to_vec(),
    };
    state::put(ctx.store, &keys::bid(&id), &b);
    ctx.store.put(&keys::provider_bid(&id), Vec::new());
    ctx.events.push(Event::BidCreated {
        id,
        price: price.clone(),
        deposit: deposit.clone(),
    });
    Ok(())
}

/// `CloseBid`: withdraws an open bid, or ends the lease of an active one (the group pauses).
pub(crate) fn close_bid(ctx: &mut Ctx<'_>, sender: &Address, id: &BidId) -> Result<(), MsgError> {
    if *sender != id.provider {
        return Err(MarketError::NotProvider {
            provider: id.provider,
            sender: *sender,
        }
        .into());
    }
    let b = bid(ctx.store, id).ok_or(MarketError::BidNotFound(*id))?;
    match b.state {
        BidState::Open => finish_bid(ctx, b, BidState::Closed),
        BidState::Active => {
            close_lease(ctx, id, LeaseCloseReason::Unspecified)?;
            crate::deployment::set_group_state(ctx, &id.group(), GroupState::Paused)
        }
        _ => Err(MarketError::BidNotOpen(*id).into()),
    }
}

/// `CreateLease`: the owner accepts an open bid.
pub(crate) fn create_lease(
    ctx: &mut Ctx<'_>,
    sender: &Address,
    id: &BidId,
) -> Result<(), MsgError> {
    if *sender != id.owner {
        return Err(MarketError::NotOwner {
            owner: id.owner,
            sender: *sender,
        }
        .into());
    }
    let mut b = bid(ctx.store, id).ok_or(MarketError::BidNotFound(*id))?;
    if b.state != BidState::Open {
        return Err(MarketError::BidNotOpen(*id).into());
    }
    let mut o = order(ctx.store, &id.order()).ok_or(MarketError::OrderNotFound(id.order()))?;
    if o.state != OrderState::Open {
        return Err(MarketError::OrderNotOpen(o.id).into());
    }
    open_group_of(ctx, &o.id)?;
    for other in state::scan::<Bid>(ctx.store, &keys::bids_of(&o.id)) {
        if other.id != *id && other.state == BidState::Open {
            finish_bid(ctx, other, BidState::Lost)?;
        }
    }
    b.state = BidState::Active;
    state::put(ctx.store, &keys::bid(id), &b);
    ctx.store.delete(&keys::provider_bid(id));
    count_active_lease(ctx, &id.provider, true);
    ctx.store.delete(&keys::open_order(&o.id));
    ctx.store.delete(&keys::order_expiry(o.expires_at, &o.id));
    drop_declines(ctx, &o.id);
    o.state = OrderState::Active;
    o.leased_to = Some(id.provider);
    state::put(ctx.store, &keys::order(&o.id), &o);
    let l = Lease {
        id: *id,
        state: LeaseState::Active,
        price: b.price.clone(),
        created_at: ctx.height,
        closed_at: None,
        close_reason: None,
    };
    state::put(ctx.store, &keys::lease(id), &l);
    ctx.store.put(&keys::provider_lease(id), Vec::new());
    escrow::open_payment(ctx, id, b.price.amount)?;
    ctx.events.push(Event::LeaseCreated {
        id: *id,
        price: b.price,
    });
    Ok(())
}

/// `CloseLease`: by the owner (the group closes) or the provider (the group pauses).
pub(crate) fn close_lease_msg(
    ctx: &mut Ctx<'_>,
    sender: &Address,
    id: &LeaseId,
    reason: LeaseCloseReason,
) -> Result<(), MsgError> {
    if reason.is_chain_only() {
        return Err(MarketError::ReservedReason(reason).into());
    }
    let next = if *sender == id.owner {
        GroupState::Closed
    } else if *sender == id.provider {
        GroupState::Paused
    } else {
        return Err(MarketError::NotOwner {
            owner: id.owner,
            sender: *sender,
        }
        .into());
    };
    close_lease(ctx, id, reason)?;
    crate::deployment::set_group_state(ctx, &id.group(), next)
}

/// `WithdrawLease`: the provider collects earnings.
pub(crate) fn withdraw_lease(
    ctx: &mut Ctx<'_>,
    sender: &Address,
    id: &LeaseId,
) -> Result<(), MsgError> {
    if *sender != id.provider {
        return Err(MarketError::NotProvider {
            provider: id.provider,
            sender: *sender,
        }
        .into());
    }
    let l = lease(ctx.store, id).ok_or(MarketError::LeaseNotFound(*id))?;
    if l.state != LeaseState::Active {
        return Err(MarketError::LeaseNotActive(*id).into());
    }
    provider::seen(ctx, sender);
    escrow::withdraw(ctx, id)
}

/// The stateless checks of a `WithdrawLeases` list: 1 to `max_leases_per_withdraw` leases, none
/// twice.
pub(crate) fn check_withdraw_list(params: &Params, ids: &[LeaseId]) -> Result<(), MarketError> {
    if ids.is_empty() {
        return Err(MarketError::WithdrawList(
            "names no lease: name at least one".into(),
        ));
    }
    let max = params.max_leases_per_withdraw as usize;
    if ids.len() > max {
        return Err(MarketError::WithdrawList(format!(
            "names {} leases, more than the limit of {max}: split it",
            ids.len()
        )));
    }
    let mut seen = std::collections::BTreeSet::new();
    for id in ids {
        if !seen.insert(id) {
            return Err(MarketError::WithdrawList(format!("names lease {id} twice")));
        }
    }
    Ok(())
}

/// `WithdrawLeases`: the provider collects the earnings of many leases in one message. Every
/// lease must be the sender's (else nothing is withdrawn); leases that closed or no longer exist
/// are skipped, since a provider cannot know that a lease closed in the block its withdrawal
/// lands in, and one closed lease must not void the rest.
pub(crate) fn withdraw_leases(
    ctx: &mut Ctx<'_>,
    sender: &Address,
    ids: &[LeaseId],
) -> Result<(), MsgError> {
    check_withdraw_list(ctx.params, ids)?;
    if let Some(id) = ids.iter().find(|id| id.provider != *sender) {
        return Err(MarketError::NotProvider {
            provider: id.provider,
            sender: *sender,
        }
        .into());
    }
    provider::seen(ctx, sender);
    for id in ids {
        if lease(ctx.store, id).is_some_and(|l| l.state == LeaseState::Active) {
            escrow::withdraw(ctx, id)?;
        }
    }
    Ok(())
}

/// The orders expiring at the end of `height`.
pub(crate) fn expiring_at(s: &dyn Store, height: u64) -> Vec<OrderId> {
    let prefix = keys::order_expiries_at(height);
    s.scan_prefix(&prefix)
        .into_iter()
        .map(|(k, _)| order_id_from_key(&k[prefix.len()..]))
        .collect()
}

fn order_id_from_key(k: &[u8]) -> OrderId {
    let mut owner = [0u8; 20];
    owner.copy_from_slice(&k[..20]);
    OrderId {
        owner: Address(owner),
        dseq: u64::from_be_bytes(k[20..28].try_into().expect("8 bytes")),
        gseq: u32::from_be_bytes(k[28..32].try_into().expect("4 bytes")),
        oseq: u32::from_be_bytes(k[32..36].try_into().expect("4 bytes")),
    }
}
