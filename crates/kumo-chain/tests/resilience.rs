//! What keeps a tenant's work from vanishing without a reason, through signed transactions:
//! provider liveness (silent providers' leases close `provider_unresponsive`, the silent blocks
//! refunded), automatic top-ups from an allowance, and providers' declines of orders.

use kumo_chain::{
    Event, Genesis, MsgError, Params,
    bank::{self, ESCROW},
    escrow::{EscrowError, TopUpEnd},
    genesis::GenesisBalance,
    market::MarketError,
    provider::ProviderError,
    state::{EscrowState, GroupState, LeaseState},
    testkit::{Actor, CHAIN_ID, Harness, group, provider_fields},
};
use kumo_types::{
    BidId, Coin, Dec, DecCoin, DeclineReason, DeploymentId, LeaseCloseReason, Msg, OrderId,
};

const FUNDS: &str = "1000000000000ukumo,1000000000000uusd";
/// The liveness window of these tests, in blocks.
const WINDOW: u64 = 20;

struct World {
    h: Harness,
    tenant: Actor,
    p1: Actor,
    p2: Actor,
    granter: Actor,
}

fn world() -> World {
    let tenant = Actor::from_seed(1);
    let mut p1 = Actor::from_seed(2);
    let mut p2 = Actor::from_seed(3);
    let granter = Actor::from_seed(4);
    let params = Params {
        liveness_interval: 5,
        liveness_window: WINDOW,
        ..Params::default()
    };
    let mut h = Harness::with_genesis(Genesis {
        chain_id: CHAIN_ID.into(),
        initial_height: 0,
        params,
        balances: [tenant.addr, p1.addr, p2.addr, granter.addr]
            .iter()
            .map(|a| GenesisBalance {
                address: *a,
                coins: FUNDS.parse().unwrap(),
            })
            .collect(),
    });
    h.ok(&mut p1, vec![Msg::CreateProvider(provider_fields(&[]))]);
    h.ok(&mut p2, vec![Msg::CreateProvider(provider_fields(&[]))]);
    World {
        h,
        tenant,
        p1,
        p2,
        granter,
    }
}

fn bid(order: OrderId, price: u64) -> Msg {
    Msg::CreateBid {
        order,
        price: DecCoin::new("ukumo", Dec::from_int(price)),
        deposit: Coin::new("ukumo", 500_000),
        gpus: vec![],
    }
}

/// A deployment `dseq` leased to `provider` at `price` a block, funded with `deposit`; returns
/// the lease and the height it started at.
fn leased(w: &mut World, dseq: u64, on_p2: bool, price: u64, deposit: u128) -> (BidId, u64) {
    let id = DeploymentId {
        owner: w.tenant.addr,
        dseq,
    };
    w.h.ok(
        &mut w.tenant,
        vec![Msg::CreateDeployment {
            id,
            groups: vec![group("web", &[], "1000000ukumo")],
            hash: [1; 32],
            deposit: Coin::new("ukumo", deposit),
        }],
    );
    let order = id.group(1).order(1);
    let p = if on_p2 { &mut w.p2 } else { &mut w.p1 };
    let addr = p.addr;
    w.h.ok(p, vec![bid(order, price)]);
    let r = w.h.ok(
        &mut w.tenant,
        vec![Msg::CreateLease {
            bid: order.bid(addr),
        }],
    );
    (order.bid(addr), r.height)
}

fn escrow_balance(w: &World, id: &DeploymentId) -> Dec {
    w.h.query().escrow(id).value.unwrap().account.balance
}

#[test]
fn a_silent_provider_loses_its_leases_at_the_window_and_the_silent_blocks_are_refunded() {
    let mut w = world();
    // p1 never speaks again after its lease starts; p2 proves it is alive every 5 blocks.
    let (silent, start) = leased(&mut w, 1, false, 1000, 5_000_000);
    let (alive, _) = leased(&mut w, 2, true, 1000, 5_000_000);
    let deadline = start + WINDOW;
    let p1_before = w.h.balance(&w.p1.addr, "ukumo");
    let provider = w.h.query().provider(&w.p1.addr).value.unwrap().provider;
    assert_eq!(provider.silence_deadline, Some(deadline));
    while w.h.next_height() < deadline {
        if w.h.next_height().is_multiple_of(5) {
            w.h.ok(&mut w.p2, vec![Msg::ProviderHeartbeat]);
        } else {
            w.h.block(&[]);
        }
    }
    assert_eq!(
        w.h.query().lease(&silent).value.unwrap().state,
        LeaseState::Active,
        "open until the end of the deadline's block"
    );
    let r = w.h.block(&[]);
    assert_eq!(r.height, deadline);
    assert!(r.end_events.iter().any(|e| e.event
        == Event::LeaseClosed {
            id: silent,
            reason: LeaseCloseReason::ProviderUnresponsive
        }));
    let l = w.h.query().lease(&silent).value.unwrap();
    assert_eq!(
        (l.state, l.close_reason, l.closed_at),
        (
            LeaseState::Closed,
            Some(LeaseCloseReason::ProviderUnresponsive),
            Some(deadline)
        )
    );
    // Every block since the lease started was silent: all of it is back in the escrow, the
    // provider got its bid deposit back and nothing else, and the group waits to be reopened.
    let d = w.h.query().deployment(&silent.deployment()).value.unwrap();
    assert_eq!(d.groups[0].state, GroupState::Paused);
    let e = d.escrow.unwrap();
    assert_eq!(e.account.state, EscrowState::Open);
    assert_eq!(e.account.balance, Dec::from_int(5_000_000));
    assert_eq!(w.h.balance(&w.p1.addr, "ukumo"), p1_before + 500_000);
    // The provider that proved it was alive keeps its lease.
    assert_eq!(
        w.h.query().lease(&alive).value.unwrap().state,
        LeaseState::Active
    );
    let p1 = w.h.query().provider(&w.p1.addr).value.unwrap().provider;
    assert_eq!((p1.active_leases, p1.silence_deadline), (0, None));
}

#[test]
fn a_provider_that_goes_silent_later_is_paid_up_to_its_last_proof() {
    let mut w = world();
    let (lease, start) = leased(&mut w, 1, false, 1000, 5_000_000);
    // Alive 7 blocks into the lease (a batched withdrawal proves it), then silent.
    w.h.advance_to(start + 6);
    let r =
        w.h.ok(&mut w.p1, vec![Msg::WithdrawLeases { ids: vec![lease] }]);
    let seen = r.height;
    assert_eq!(seen, start + 7);
    let p1_after_withdraw = w.h.balance(&w.p1.addr, "ukumo");
    let deadline = seen + WINDOW;
    w.h.advance_to(deadline - 1);
    assert_eq!(
        w.h.query().lease(&lease).value.unwrap().state,
        LeaseState::Active
    );
    let r = w.h.block(&[]);
    assert!(r.end_events.iter().any(|e| e.event
        == Event::SilentBlocksRefunded {
            id: lease,
            blocks: WINDOW,
            amount: DecCoin::new("ukumo", Dec::from_int(1000 * WINDOW)),
        }));
    // Paid 7 blocks (withdrawn at the proof), nothing for the silent ones; the escrow holds
    // the rest, exactly.
    assert_eq!(
        w.h.balance(&w.p1.addr, "ukumo"),
        p1_after_withdraw + 500_000
    );
    assert_eq!(
        escrow_balance(&w, &lease.deployment()),
        Dec::from_int(5_000_000 - 7 * 1000)
    );
    // The tenant reopens the group elsewhere: a new order that p2 can win.
    let g = lease.group();
    w.h.ok(&mut w.tenant, vec![Msg::StartGroup { id: g }]);
    let order = g.order(2);
    w.h.ok(&mut w.p2, vec![bid(order, 900)]);
    w.h.ok(
        &mut w.tenant,
        vec![Msg::CreateLease {
            bid: order.bid(w.p2.addr),
        }],
    );
    assert_eq!(
        w.h.query()
            .lease(&order.bid(w.p2.addr))
            .value
            .unwrap()
            .state,
        LeaseState::Active
    );
}

#[test]
fn only_registered_providers_prove_liveness_and_nobody_claims_the_chains_reasons() {
    let mut w = world();
    let e = w.h.fails(&mut w.tenant, vec![Msg::ProviderHeartbeat]);
    assert_eq!(e, MsgError::Provider(ProviderError::Unknown(w.tenant.addr)));
    let (lease, _) = leased(&mut w, 1, false, 1000, 5_000_000);
    for who in [&mut w.tenant, &mut w.p1] {
        let e = w.h.fails(
            who,
            vec![Msg::CloseLease {
                id: lease,
                reason: LeaseCloseReason::ProviderUnresponsive,
            }],
        );
        assert_eq!(
            e,
            MsgError::Market(MarketError::ReservedReason(
                LeaseCloseReason::ProviderUnresponsive
            ))
        );
    }
}

#[test]
fn an_allowance_keeps_a_short_funded_deployment_running_until_it_is_spent() {
    let mut w = world();
    // 50 blocks of funds at 10,000 a block.
    let (lease, start) = leased(&mut w, 1, true, 10_000, 500_000);
    let id = lease.deployment();
    // p2 stays alive throughout: its heartbeats ride in the blocks below.
    let heartbeat = |w: &mut World| {
        w.h.ok(&mut w.p2, vec![Msg::ProviderHeartbeat]);
    };
    // A stranger's allowance: 4,600,000 (460 blocks), 20 blocks' worth at a time.
    let granter_before = w.h.balance(&w.granter.addr, "ukumo");
    w.h.ok(
        &mut w.granter,
        vec![Msg::GrantTopUp {
            id,
            limit: Coin::new("ukumo", 4_600_000),
            below_blocks: 20,
        }],
    );
    // Someone else cannot replace or revoke it.
    let e = w.h.fails(
        &mut w.p1,
        vec![Msg::GrantTopUp {
            id,
            limit: Coin::new("ukumo", 1),
            below_blocks: 1,
        }],
    );
    assert!(
        matches!(e, MsgError::Escrow(EscrowError::NotGranter { .. })),
        "{e}"
    );
    let e = w.h.fails(&mut w.p1, vec![Msg::RevokeTopUp { id }]);
    assert!(
        matches!(e, MsgError::Escrow(EscrowError::NotGranter { .. })),
        "{e}"
    );
    // Nonsense grants are refused.
    for (limit, below) in [
        (Coin::new("ukumo", 0), 20),
        (Coin::new("uusd", 100), 20),
        (Coin::new("ukumo", 100), 0),
    ] {
        let e = w.h.fails(
            &mut w.granter,
            vec![Msg::GrantTopUp {
                id,
                limit,
                below_blocks: below,
            }],
        );
        assert!(matches!(e, MsgError::Escrow(_)), "{e}");
    }
    // 500 blocks: the lease never closes, and never has fewer than a block of funds.
    while w.h.next_height() < start + 500 {
        heartbeat(&mut w);
        let a = w.h.query().escrow(&id).value.unwrap().account;
        assert_eq!(a.state, EscrowState::Open, "at {}", w.h.app.height());
        assert!(
            a.depletes_at.unwrap() > w.h.app.height(),
            "funds remain at {}",
            w.h.app.height()
        );
    }
    assert_eq!(
        w.h.query().lease(&lease).value.unwrap().state,
        LeaseState::Active
    );
    let topped: u128 =
        w.h.events
            .iter()
            .filter_map(|e| match &e.event {
                Event::EscrowToppedUp {
                    id: i,
                    granter,
                    amount,
                    ..
                } if *i == id && *granter == w.granter.addr => Some(amount.amount),
                _ => None,
            })
            .sum();
    assert!(topped >= 4_000_000, "topped up {topped}");
    // The grant and the three refused grants each paid a fee; nothing else left but top-ups.
    let fees = 4 * kumo_chain::testkit::FEE;
    assert_eq!(
        w.h.balance(&w.granter.addr, "ukumo"),
        granter_before - topped - fees
    );
    // Spent: the allowance ends, and the lease closes insufficient_funds when the rest runs out.
    loop {
        heartbeat(&mut w);
        let l = w.h.query().lease(&lease).value.unwrap();
        if l.state != LeaseState::Active {
            assert_eq!(l.close_reason, Some(LeaseCloseReason::InsufficientFunds));
            break;
        }
        assert!(
            w.h.app.height() < start + 600,
            "the allowance should be spent by now"
        );
    }
    assert!(w.h.events.iter().any(|e| e.event
        == Event::TopUpEnded {
            id,
            reason: TopUpEnd::Spent
        }));
    assert_eq!(
        w.h.balance(&w.granter.addr, "ukumo"),
        granter_before - 4_600_000 - fees
    );
    assert_eq!(w.h.balance(&bank::module_address(ESCROW), "ukumo"), 0);
}

#[test]
fn an_allowance_whose_granter_is_broke_ends_and_the_owner_can_revoke_one() {
    let mut w = world();
    let (lease, _) = leased(&mut w, 1, true, 10_000, 500_000);
    let id = lease.deployment();
    // A granter with nothing: the first top-up fails, the allowance ends, nothing moves.
    let mut broke = Actor::from_seed(9);
    w.h.ok(
        &mut w.granter,
        vec![Msg::Send {
            to: broke.addr,
            amount: "300000ukumo".parse().unwrap(),
        }],
    );
    w.h.ok(
        &mut broke,
        vec![Msg::GrantTopUp {
            id,
            limit: Coin::new("ukumo", 1_000_000),
            below_blocks: 100,
        }],
    );
    w.h.block(&[]);
    assert!(w.h.events.iter().any(|e| e.event
        == Event::TopUpEnded {
            id,
            reason: TopUpEnd::GranterFunds
        }));
    let a = w.h.query().escrow(&id).value.unwrap().account;
    assert_eq!((a.top_up, a.top_up_at), (None, None));
    // The owner grants one of its own and revokes it.
    w.h.ok(
        &mut w.tenant,
        vec![Msg::GrantTopUp {
            id,
            limit: Coin::new("ukumo", 1_000_000),
            below_blocks: 5,
        }],
    );
    assert!(
        w.h.query()
            .escrow(&id)
            .value
            .unwrap()
            .account
            .top_up
            .is_some()
    );
    w.h.ok(&mut w.tenant, vec![Msg::RevokeTopUp { id }]);
    let a = w.h.query().escrow(&id).value.unwrap().account;
    assert_eq!((a.top_up, a.top_up_at), (None, None));
    let e = w.h.fails(&mut w.tenant, vec![Msg::RevokeTopUp { id }]);
    assert!(matches!(e, MsgError::Escrow(EscrowError::TopUp(_))), "{e}");
}

#[test]
fn declines_are_kept_while_the_order_is_open_and_only_providers_decline() {
    let mut w = world();
    let id = DeploymentId {
        owner: w.tenant.addr,
        dseq: 1,
    };
    w.h.ok(
        &mut w.tenant,
        vec![Msg::CreateDeployment {
            id,
            groups: vec![group("web", &[], "1000000ukumo")],
            hash: [1; 32],
            deposit: Coin::new("ukumo", 5_000_000),
        }],
    );
    let order = id.group(1).order(1);
    let decline = |reason, detail: &str| Msg::DeclineOrder {
        order,
        reason,
        detail: detail.into(),
    };
    w.h.ok(
        &mut w.p1,
        vec![decline(
            DeclineReason::Capacity,
            "capacity: needs 4 CPU, 1 free",
        )],
    );
    let r = w.h.ok(
        &mut w.p2,
        vec![decline(DeclineReason::Attributes, "region: wants eu")],
    );
    let declines = w.h.query().declines(&order).value;
    assert_eq!(declines.len(), 2);
    let p2 = declines.iter().find(|d| d.provider == w.p2.addr).unwrap();
    assert_eq!(
        (p2.reason, p2.detail.as_str(), p2.height),
        (DeclineReason::Attributes, "region: wants eu", r.height)
    );
    assert_eq!(
        w.h.query()
            .provider(&w.p2.addr)
            .value
            .unwrap()
            .provider
            .last_seen,
        r.height,
        "a decline proves the provider alive"
    );
    // A tenant is no provider; details are bounded.
    let e =
        w.h.fails(&mut w.tenant, vec![decline(DeclineReason::Other, "")]);
    assert_eq!(e, MsgError::Provider(ProviderError::Unknown(w.tenant.addr)));
    let e = w.h.fails(
        &mut w.p1,
        vec![decline(DeclineReason::Other, &"x".repeat(300))],
    );
    assert!(
        matches!(e, MsgError::Market(MarketError::DeclineDetail { .. })),
        "{e}"
    );
    // p1 changes its mind and bids: its decline goes; then it cannot decline its own bid.
    w.h.ok(&mut w.p1, vec![bid(order, 1000)]);
    assert_eq!(w.h.query().declines(&order).value.len(), 1);
    let e =
        w.h.fails(&mut w.p1, vec![decline(DeclineReason::Price, "")]);
    assert_eq!(e, MsgError::Market(MarketError::DeclineWithBid(order)));
    // Once leased the order takes no declines, and keeps none.
    w.h.ok(
        &mut w.tenant,
        vec![Msg::CreateLease {
            bid: order.bid(w.p1.addr),
        }],
    );
    assert!(w.h.query().declines(&order).value.is_empty());
    let e =
        w.h.fails(&mut w.p2, vec![decline(DeclineReason::Other, "")]);
    assert_eq!(e, MsgError::Market(MarketError::OrderNotOpen(order)));
}
