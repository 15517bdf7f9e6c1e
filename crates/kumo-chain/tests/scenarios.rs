//! Scenario tests: the marketplace lifecycle end to end, through signed transactions.

use kumo_chain::{
    Event, MsgError, TxRejected,
    bank::{self, BankError},
    deployment::DeploymentError,
    events::OrderCloseReason,
    market::MarketError,
    provider::ProviderError,
    query::{BidFilter, LeaseFilter, OrderFilter},
    state::{BidState, DeploymentState, EscrowState, GroupState, LeaseState, OrderState},
    testkit::{Actor, CHAIN_ID, FEE, Harness, group, provider_fields},
};
use kumo_types::{
    Attribute, BidId, Coin, Dec, DecCoin, DeploymentId, GroupSpec, LeaseCloseReason, Msg, OrderId,
    SignedBy, matching::MatchError,
};

const FUNDS: &str = "1000000000000ukumo,1000000000000uusd";

fn dec(s: &str) -> Dec {
    s.parse().unwrap()
}

fn deploy(
    h: &mut Harness,
    tenant: &mut Actor,
    dseq: u64,
    groups: Vec<GroupSpec>,
    deposit: Coin,
) -> DeploymentId {
    let id = DeploymentId {
        owner: tenant.addr,
        dseq,
    };
    h.ok(
        tenant,
        vec![Msg::CreateDeployment {
            id,
            groups,
            hash: [1; 32],
            deposit,
        }],
    );
    id
}

fn bid(order: OrderId, price: &str, denom: &str) -> Msg {
    Msg::CreateBid {
        order,
        price: DecCoin::new(denom, dec(price)),
        deposit: Coin::new("ukumo", 500_000),
        gpus: vec![],
    }
}

fn market_err(e: MsgError) -> MarketError {
    match e {
        MsgError::Market(m) => m,
        other => panic!("expected a market error, got {other}"),
    }
}

struct World {
    h: Harness,
    tenant: Actor,
    p1: Actor,
    p2: Actor,
    p3: Actor,
    auditor: Actor,
    auditor2: Actor,
}

/// p1 and p3 are in us-west with beta2 storage and signed by `auditor` (p1 also by `auditor2`);
/// p2 is in eu.
fn world() -> World {
    let tenant = Actor::from_seed(1);
    let mut p1 = Actor::from_seed(2);
    let mut p2 = Actor::from_seed(3);
    let mut p3 = Actor::from_seed(4);
    let mut auditor = Actor::from_seed(5);
    let mut auditor2 = Actor::from_seed(6);
    let mut h = Harness::new(
        &[
            tenant.addr,
            p1.addr,
            p2.addr,
            p3.addr,
            auditor.addr,
            auditor2.addr,
        ],
        FUNDS,
    );
    let west = [
        ("region", "us-west"),
        ("capabilities/storage/1/class", "beta2"),
        ("capabilities/storage/1/persistent", "true"),
    ];
    h.ok(&mut p1, vec![Msg::CreateProvider(provider_fields(&west))]);
    h.ok(
        &mut p2,
        vec![Msg::CreateProvider(provider_fields(&[("region", "eu")]))],
    );
    h.ok(&mut p3, vec![Msg::CreateProvider(provider_fields(&west))]);
    let sign = |p: &Actor| Msg::SignProviderAttributes {
        provider: p.addr,
        attributes: vec![
            Attribute::new("region", "us-west"),
            Attribute::new("tier", "1"),
        ],
    };
    h.ok(&mut auditor, vec![sign(&p1), sign(&p3)]);
    h.ok(&mut auditor2, vec![sign(&p1)]);
    World {
        h,
        tenant,
        p1,
        p2,
        p3,
        auditor,
        auditor2,
    }
}

fn west_group(price: &str, signed_by: SignedBy) -> GroupSpec {
    let mut g = group("web", &[("region", "us-west")], price);
    g.requirements.signed_by = signed_by;
    g
}

#[test]
fn provider_registers_and_auditor_signs() {
    let mut w = world();
    let q = w.h.query();
    let p = q.provider(&w.p1.addr).value.expect("registered");
    assert_eq!(p.provider.fields.host_uri, "https://provider.example:8443");
    assert_eq!(p.attestations.len(), 2);
    assert_eq!(q.providers().value.len(), 3);
    // Registering twice is refused with a hint.
    let e =
        w.h.fails(&mut w.p1, vec![Msg::CreateProvider(provider_fields(&[]))]);
    assert!(
        matches!(e, MsgError::Provider(ProviderError::Exists(_))),
        "{e}"
    );
    // Deleting part of an attestation, then all of it.
    w.h.ok(
        &mut w.auditor2,
        vec![Msg::DeleteProviderAttributes {
            provider: w.p1.addr,
            keys: vec!["tier".into()],
        }],
    );
    let att = w.h.query().provider(&w.p1.addr).value.unwrap().attestations;
    assert_eq!(att[1].attributes.len() + att[0].attributes.len(), 3);
    w.h.ok(
        &mut w.auditor2,
        vec![Msg::DeleteProviderAttributes {
            provider: w.p1.addr,
            keys: vec![],
        }],
    );
    assert_eq!(
        w.h.query()
            .provider(&w.p1.addr)
            .value
            .unwrap()
            .attestations
            .len(),
        1
    );
    // Signing for an unknown provider fails.
    let stranger = Actor::from_seed(99);
    let e = w.h.fails(
        &mut w.auditor,
        vec![Msg::SignProviderAttributes {
            provider: stranger.addr,
            attributes: vec![Attribute::new("a", "b")],
        }],
    );
    assert!(matches!(e, MsgError::Provider(ProviderError::Unknown(_))));
}

#[test]
fn bids_that_must_fail_and_ones_that_match() {
    let mut w = world();
    let any = SignedBy {
        all_of: vec![],
        any_of: vec![w.auditor.addr.to_string()],
    };
    let id = deploy(
        &mut w.h,
        &mut w.tenant,
        10,
        vec![west_group("100ukumo", any)],
        Coin::new("ukumo", 1_000_000),
    );
    let order = id.group(1).order(1);
    assert_eq!(
        w.h.query()
            .orders(&OrderFilter {
                state: Some(OrderState::Open),
                ..Default::default()
            })
            .value
            .len(),
        1
    );
    // Wrong region.
    let e = market_err(w.h.fails(&mut w.p2, vec![bid(order, "50", "ukumo")]));
    assert!(
        matches!(
            e,
            MarketError::Mismatch(MatchError::MissingAttribute { .. })
        ),
        "{e}"
    );
    // Price above the order's.
    let e = market_err(w.h.fails(&mut w.p1, vec![bid(order, "100.000001", "ukumo")]));
    assert!(matches!(e, MarketError::PriceTooHigh { .. }), "{e}");
    // Wrong denomination.
    let e = market_err(w.h.fails(&mut w.p1, vec![bid(order, "50", "uusd")]));
    assert!(matches!(e, MarketError::PriceDenom { .. }), "{e}");
    // Deposit too small.
    let e = market_err(w.h.fails(
        &mut w.p1,
        vec![Msg::CreateBid {
            order,
            price: DecCoin::new("ukumo", dec("50")),
            deposit: Coin::new("ukumo", 499_999),
            gpus: vec![],
        }],
    ));
    assert!(matches!(e, MarketError::DepositTooSmall { .. }), "{e}");
    // A GPU offer for a group without GPUs, and one too large to store.
    let h100 = kumo_types::GpuOffer {
        vendor: "nvidia".into(),
        model: "h100".into(),
        ram: "80Gi".into(),
        interface: "sxm".into(),
        count: 1,
    };
    for (gpus, says) in [
        (vec![h100.clone()], "offers 1 GPUs, the group asks for 0"),
        (vec![h100; 17], "at most 16"),
    ] {
        let e = market_err(w.h.fails(
            &mut w.p1,
            vec![Msg::CreateBid {
                order,
                price: DecCoin::new("ukumo", dec("50")),
                deposit: Coin::new("ukumo", 500_000),
                gpus,
            }],
        ));
        assert!(
            matches!(e, MarketError::GpuOffer(ref m) if m.contains(says)),
            "{e}"
        );
    }
    // Unknown provider.
    let mut nobody = Actor::from_seed(50);
    w.h.ok(
        &mut w.tenant,
        vec![Msg::Send {
            to: nobody.addr,
            amount: "10000000ukumo".parse().unwrap(),
        }],
    );
    let e = w.h.fails(&mut nobody, vec![bid(order, "50", "ukumo")]);
    assert!(
        matches!(e, MsgError::Provider(ProviderError::Unknown(_))),
        "{e}"
    );
    // Matching bids.
    w.h.ok(&mut w.p1, vec![bid(order, "80", "ukumo")]);
    w.h.ok(&mut w.p3, vec![bid(order, "90.5", "ukumo")]);
    // A second bid from the same provider.
    let e = market_err(w.h.fails(&mut w.p1, vec![bid(order, "70", "ukumo")]));
    assert!(matches!(e, MarketError::BidExists(_)));
    let bids = w.h.query().bids(&BidFilter {
        order: Some(order),
        ..Default::default()
    });
    assert_eq!(bids.value.len(), 2);

    // signedBy any_of with an auditor that signed nothing for p3.
    let any_other = SignedBy {
        all_of: vec![],
        any_of: vec![w.auditor2.addr.to_string()],
    };
    let id2 = deploy(
        &mut w.h,
        &mut w.tenant,
        11,
        vec![west_group("100ukumo", any_other)],
        Coin::new("ukumo", 1_000_000),
    );
    let o2 = id2.group(1).order(1);
    let e = market_err(w.h.fails(&mut w.p3, vec![bid(o2, "50", "ukumo")]));
    assert!(
        matches!(e, MarketError::Mismatch(MatchError::AnyOf(_))),
        "{e}"
    );
    w.h.ok(&mut w.p1, vec![bid(o2, "50", "ukumo")]);

    // signedBy all_of: p1 has both auditors, p3 only one.
    let all = SignedBy {
        all_of: vec![w.auditor.addr.to_string(), w.auditor2.addr.to_string()],
        any_of: vec![],
    };
    let id3 = deploy(
        &mut w.h,
        &mut w.tenant,
        12,
        vec![west_group("100ukumo", all)],
        Coin::new("ukumo", 1_000_000),
    );
    let o3 = id3.group(1).order(1);
    let e = market_err(w.h.fails(&mut w.p3, vec![bid(o3, "50", "ukumo")]));
    assert_eq!(
        e,
        MarketError::Mismatch(MatchError::AllOf(w.auditor2.addr.to_string()))
    );
    w.h.ok(&mut w.p1, vec![bid(o3, "50", "ukumo")]);

    // Storage class the provider does not offer.
    let mut g = group("db", &[], "10ukumo");
    g.resources[0].resources.storage[0].attributes = vec![
        Attribute::new("class", "beta3"),
        Attribute::new("persistent", "true"),
    ];
    let id4 = deploy(
        &mut w.h,
        &mut w.tenant,
        13,
        vec![g],
        Coin::new("ukumo", 1_000_000),
    );
    let e = market_err(w.h.fails(&mut w.p1, vec![bid(id4.group(1).order(1), "5", "ukumo")]));
    assert!(
        matches!(e, MarketError::Mismatch(MatchError::Storage { .. })),
        "{e}"
    );
}

#[test]
fn lease_creation_marks_other_bids_lost_and_refunds_them() {
    let mut w = world();
    let id = deploy(
        &mut w.h,
        &mut w.tenant,
        1,
        vec![west_group("100ukumo", SignedBy::default())],
        Coin::new("ukumo", 10_000_000),
    );
    let order = id.group(1).order(1);
    w.h.ok(&mut w.p1, vec![bid(order, "80", "ukumo")]);
    w.h.ok(&mut w.p3, vec![bid(order, "90", "ukumo")]);
    let p3_before = w.h.balance(&w.p3.addr, "ukumo");
    let market = bank::module_address(bank::MARKET);
    assert_eq!(w.h.balance(&market, "ukumo"), 1_000_000);
    let r = w.h.ok(
        &mut w.tenant,
        vec![Msg::CreateLease {
            bid: order.bid(w.p1.addr),
        }],
    );
    assert!(
        r.events
            .iter()
            .any(|e| matches!(&e.event, Event::LeaseCreated { .. }))
    );
    assert!(r.events.iter().any(|e| e.event
        == Event::BidLost {
            id: order.bid(w.p3.addr)
        }));
    assert!(
        r.events
            .iter()
            .all(|e| e.tx_hash == Some(r.hash) && e.height == r.height)
    );
    assert_eq!(w.h.balance(&w.p3.addr, "ukumo"), p3_before + 500_000);
    assert_eq!(
        w.h.balance(&market, "ukumo"),
        500_000,
        "the winner's deposit stays"
    );
    let q = w.h.query();
    assert_eq!(
        q.bid(&order.bid(w.p3.addr)).value.unwrap().state,
        BidState::Lost
    );
    assert_eq!(
        q.bid(&order.bid(w.p1.addr)).value.unwrap().state,
        BidState::Active
    );
    assert_eq!(q.order(&order).value.unwrap().state, OrderState::Active);
    let leases = q.leases(&LeaseFilter {
        provider: Some(w.p1.addr),
        state: Some(LeaseState::Active),
        ..Default::default()
    });
    assert_eq!(leases.value.len(), 1);
    assert_eq!(leases.height, w.h.app.height());
    // A provider with an active lease cannot leave.
    let e = w.h.fails(&mut w.p1, vec![Msg::DeleteProvider]);
    assert!(matches!(e, MsgError::Provider(ProviderError::Busy(_))));
    // Only the owner may accept a bid.
    let id2 = deploy(
        &mut w.h,
        &mut w.tenant,
        2,
        vec![west_group("100ukumo", SignedBy::default())],
        Coin::new("ukumo", 1_000_000),
    );
    w.h.ok(&mut w.p3, vec![bid(id2.group(1).order(1), "80", "ukumo")]);
    let e = market_err(w.h.fails(
        &mut w.p1,
        vec![Msg::CreateLease {
            bid: id2.group(1).order(1).bid(w.p3.addr),
        }],
    ));
    assert!(matches!(e, MarketError::NotOwner { .. }));
}

/// Tenant deploys at `price` per block with `deposit`; p1 bids `bid_price` and gets the lease.
fn leased(w: &mut World, dseq: u64, price: &str, bid_price: &str, deposit: Coin) -> (BidId, u64) {
    let denom = deposit.denom.clone();
    let id = deploy(
        &mut w.h,
        &mut w.tenant,
        dseq,
        vec![group("web", &[], &format!("{price}{denom}"))],
        deposit,
    );
    let order = id.group(1).order(1);
    w.h.ok(&mut w.p1, vec![bid(order, bid_price, &denom)]);
    let r = w.h.ok(
        &mut w.tenant,
        vec![Msg::CreateLease {
            bid: order.bid(w.p1.addr),
        }],
    );
    (order.bid(w.p1.addr), r.height)
}

#[test]
fn withdraw_pays_provider_minus_take_rate() {
    let mut w = world();
    let (lease, start) = leased(&mut w, 1, "1000", "800", Coin::new("ukumo", 10_000_000));
    w.h.advance_to(start + 9);
    let p1_before = w.h.balance(&w.p1.addr, "ukumo");
    let pool = bank::module_address(bank::COMMUNITY_POOL);
    let r = w.h.ok(&mut w.p1, vec![Msg::WithdrawLease { id: lease }]);
    assert_eq!(r.height, start + 10);
    // 10 blocks × 800 = 8000; 2% take = 160.
    assert_eq!(
        w.h.balance(&w.p1.addr, "ukumo"),
        p1_before - FEE + 8000 - 160
    );
    assert_eq!(w.h.balance(&pool, "ukumo"), 160);
    assert!(r.events.iter().any(|e| e.event
        == Event::LeaseWithdrawn {
            id: lease,
            amount: Coin::new("ukumo", 7840),
            take: Coin::new("ukumo", 160),
        }));
    // uusd takes 20%.
    let (lease2, start2) = leased(&mut w, 2, "1000", "500", Coin::new("uusd", 10_000_000));
    w.h.advance_to(start2 + 3);
    let before = w.h.balance(&w.p1.addr, "uusd");
    w.h.ok(&mut w.p1, vec![Msg::WithdrawLease { id: lease2 }]);
    assert_eq!(w.h.balance(&w.p1.addr, "uusd"), before + 1600);
    assert_eq!(w.h.balance(&pool, "uusd"), 400);
    // Only the provider withdraws.
    let e = market_err(w.h.fails(&mut w.tenant, vec![Msg::WithdrawLease { id: lease2 }]));
    assert!(matches!(e, MarketError::NotProvider { .. }));
}

#[test]
fn one_withdraw_leases_message_pays_many_leases_and_skips_closed_ones() {
    let mut w = world();
    let (a, start) = leased(&mut w, 1, "1000", "800", Coin::new("ukumo", 10_000_000));
    let (b, _) = leased(&mut w, 2, "1000", "500", Coin::new("ukumo", 10_000_000));
    let (c, _) = leased(&mut w, 3, "1000", "300", Coin::new("ukumo", 10_000_000));
    w.h.ok(
        &mut w.tenant,
        vec![Msg::CloseLease {
            id: c,
            reason: LeaseCloseReason::Owner,
        }],
    );
    w.h.advance_to(start + 20);
    let r =
        w.h.ok(&mut w.p1, vec![Msg::WithdrawLeases { ids: vec![a, b, c] }]);
    let paid: Vec<_> = r
        .events
        .iter()
        .filter_map(|e| match &e.event {
            Event::LeaseWithdrawn { id, .. } => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(
        paid,
        vec![a, b],
        "both open leases paid, the closed one skipped"
    );
    // Another provider's lease in the list: nothing is withdrawn.
    let mut theirs = a;
    theirs.provider = w.p2.addr;
    let e = market_err(w.h.fails(
        &mut w.p1,
        vec![Msg::WithdrawLeases {
            ids: vec![b, theirs],
        }],
    ));
    assert!(matches!(e, MarketError::NotProvider { .. }), "{e}");
    // Empty and repeating lists are refused before any fee.
    let fee_before = w.h.balance(&w.p1.addr, "ukumo");
    for ids in [vec![], vec![a, a]] {
        let r = w.h.submit(&mut w.p1, vec![Msg::WithdrawLeases { ids }]);
        assert!(matches!(r, Err(TxRejected::InvalidMsg { .. })), "{r:?}");
    }
    assert_eq!(w.h.balance(&w.p1.addr, "ukumo"), fee_before);
}

#[test]
fn deployments_outside_the_resource_limits_are_rejected_without_a_fee() {
    let mut w = world();
    let before = w.h.balance(&w.tenant.addr, "ukumo");
    let base = kumo_chain::testkit::group("g", &[], "10ukumo");
    let mut cases: Vec<(GroupSpec, &str)> = Vec::new();
    let mut g = base.clone();
    g.resources[0].resources.cpu.millis = 0;
    cases.push((g, "group \"g\" unit 1: cpu 0m is outside 10m-384000m"));
    let mut g = base.clone();
    g.resources[0].resources.memory.bytes = 0;
    cases.push((g, "unit 1: memory 0 bytes is outside"));
    let mut g = base.clone();
    g.resources[0].resources.storage.clear();
    cases.push((g, "unit 1: has no storage volume"));
    let mut g = base.clone();
    g.resources[0].resources.cpu.millis = u64::MAX;
    cases.push((g, "unit 1: cpu 18446744073709551615m"));
    let mut g = base.clone();
    g.resources[0].price.amount = Dec::from_atto(u128::MAX);
    cases.push((g, "above the highest unit price"));
    let mut g = base.clone();
    g.resources[0].count = 51;
    cases.push((g, "unit 1 count: 51 is over the limit of 50"));
    let owner = w.tenant.addr;
    for (i, (group, want)) in cases.into_iter().enumerate() {
        let r = w.h.submit(
            &mut w.tenant,
            vec![Msg::CreateDeployment {
                id: DeploymentId {
                    owner,
                    dseq: 100 + i as u64,
                },
                groups: vec![group],
                hash: [1; 32],
                deposit: Coin::new("ukumo", 1_000_000),
            }],
        );
        let e = r.expect_err(want);
        assert_eq!(e.code(), "invalid_msg");
        assert!(e.to_string().contains(want), "{e} should say {want}");
    }
    assert_eq!(w.h.balance(&w.tenant.addr, "ukumo"), before, "no fee taken");
}

#[test]
fn escrow_runs_dry_in_the_computed_block_and_deposit_extends_it() {
    let mut w = world();
    // 2,000,000 at 80,000 a block: 25 blocks.
    let (lease, start) = leased(&mut w, 1, "100000", "80000", Coin::new("ukumo", 2_000_000));
    let id = lease.deployment();
    let acct = w.h.query().escrow(&id).value.unwrap().account;
    assert_eq!(acct.depletes_at, Some(start + 25));
    // Deposit 400,000 more at start+2: 5 more blocks.
    let r = w.h.ok(
        &mut w.tenant,
        vec![Msg::DepositDeployment {
            id,
            amount: Coin::new("ukumo", 400_000),
        }],
    );
    assert_eq!(r.height, start + 1);
    let dry = start + 30;
    assert_eq!(
        w.h.query().escrow(&id).value.unwrap().account.depletes_at,
        Some(dry)
    );
    // A deposit in the wrong denomination is refused.
    let e = w.h.fails(
        &mut w.tenant,
        vec![Msg::DepositDeployment {
            id,
            amount: Coin::new("uusd", 400_000),
        }],
    );
    assert!(matches!(e, MsgError::Escrow(_)), "{e}");
    w.h.advance_to(dry - 1);
    assert_eq!(
        w.h.query().lease(&lease).value.unwrap().state,
        LeaseState::Active
    );
    let owner_before = w.h.balance(&w.tenant.addr, "ukumo");
    let p1_before = w.h.balance(&w.p1.addr, "ukumo");
    let r = w.h.block(&[]);
    assert_eq!(r.height, dry);
    assert!(r.end_events.iter().any(|e| e.event
        == Event::LeaseClosed {
            id: lease,
            reason: LeaseCloseReason::InsufficientFunds
        }
        && e.tx_hash.is_none()
        && e.height == dry));
    let q = w.h.query();
    let l = q.lease(&lease).value.unwrap();
    assert_eq!(
        (l.state, l.closed_at),
        (LeaseState::InsufficientFunds, Some(dry))
    );
    let d = q.deployment(&id).value.unwrap();
    assert_eq!(d.deployment.state, DeploymentState::Closed);
    assert_eq!(d.groups[0].state, GroupState::InsufficientFunds);
    assert_eq!(d.escrow.unwrap().account.state, EscrowState::Overdrawn);
    // All 2,400,000 went to the provider (less the take, plus its bid deposit back).
    let earned = 2_400_000u128;
    assert_eq!(
        w.h.balance(&w.p1.addr, "ukumo"),
        p1_before + earned - earned / 50 + 500_000
    );
    assert_eq!(w.h.balance(&w.tenant.addr, "ukumo"), owner_before);
    assert_eq!(w.h.balance(&bank::module_address(bank::ESCROW), "ukumo"), 0);
}

#[test]
fn fractional_rates_settle_exactly_and_only_dry_accounts_close() {
    let mut w = world();
    // 1,000,000 at 33,333.3333 a block: 30 full blocks, 0.001 left.
    let (lease_a, start_a) = leased(
        &mut w,
        1,
        "40000",
        "33333.3333",
        Coin::new("uusd", 1_000_000),
    );
    let (lease_b, _) = leased(&mut w, 2, "40000", "1000", Coin::new("uusd", 1_000_000));
    let dry = start_a + 30;
    assert_eq!(
        w.h.query()
            .escrow(&lease_a.deployment())
            .value
            .unwrap()
            .account
            .depletes_at,
        Some(dry)
    );
    let tenant_before = w.h.balance(&w.tenant.addr, "uusd");
    let p1_before = w.h.balance(&w.p1.addr, "uusd");
    w.h.advance_to(dry);
    let q = w.h.query();
    assert_eq!(
        q.lease(&lease_a).value.unwrap().state,
        LeaseState::InsufficientFunds
    );
    assert_eq!(q.lease(&lease_b).value.unwrap().state, LeaseState::Active);
    // Provider: floor(999,999.999) = 999,999, 20% take = 199,999.8 → 199,999.
    assert_eq!(
        w.h.balance(&w.p1.addr, "uusd"),
        p1_before + 999_999 - 199_999
    );
    // Owner: the 0.001 left in the account plus the 0.999 fraction left in the payment.
    assert_eq!(w.h.balance(&w.tenant.addr, "uusd"), tenant_before + 1);
    let supply = w.h.query().supply().value;
    assert_eq!(supply.amount_of("uusd"), 6 * 1_000_000_000_000);
}

#[test]
fn close_by_tenant_and_by_provider() {
    let mut w = world();
    let (lease, start) = leased(&mut w, 1, "1000", "1000", Coin::new("ukumo", 10_000_000));
    w.h.advance_to(start + 4);
    let p1_before = w.h.balance(&w.p1.addr, "ukumo");
    // The provider closes: paid 5 blocks (less 2%), deposit back, group paused.
    let r = w.h.ok(
        &mut w.p1,
        vec![Msg::CloseLease {
            id: lease,
            reason: LeaseCloseReason::Unstable,
        }],
    );
    assert!(r.events.iter().any(|e| e.event
        == Event::LeaseClosed {
            id: lease,
            reason: LeaseCloseReason::Unstable
        }));
    assert_eq!(
        w.h.balance(&w.p1.addr, "ukumo"),
        p1_before - FEE + 5000 - 100 + 500_000
    );
    let g = lease.group();
    assert_eq!(
        w.h.query()
            .deployment(&g.deployment())
            .value
            .unwrap()
            .groups[0]
            .state,
        GroupState::Paused
    );
    // The chain's reason is reserved.
    let e = market_err(w.h.fails(
        &mut w.p1,
        vec![Msg::CloseLease {
            id: lease,
            reason: LeaseCloseReason::InsufficientFunds,
        }],
    ));
    assert_eq!(
        e,
        MarketError::ReservedReason(LeaseCloseReason::InsufficientFunds)
    );
    let e = market_err(w.h.fails(
        &mut w.p1,
        vec![Msg::CloseLease {
            id: lease,
            reason: LeaseCloseReason::ProviderUnresponsive,
        }],
    ));
    assert_eq!(
        e,
        MarketError::ReservedReason(LeaseCloseReason::ProviderUnresponsive)
    );
    // The tenant restarts the group: a new order, a new lease, then closes it itself.
    w.h.ok(&mut w.tenant, vec![Msg::StartGroup { id: g }]);
    let order2 = g.order(2);
    assert_eq!(
        w.h.query().order(&order2).value.unwrap().state,
        OrderState::Open
    );
    w.h.ok(&mut w.p1, vec![bid(order2, "500", "ukumo")]);
    w.h.ok(
        &mut w.tenant,
        vec![Msg::CreateLease {
            bid: order2.bid(w.p1.addr),
        }],
    );
    w.h.ok(
        &mut w.tenant,
        vec![Msg::CloseLease {
            id: order2.bid(w.p1.addr),
            reason: LeaseCloseReason::Owner,
        }],
    );
    let q = w.h.query();
    assert_eq!(
        q.deployment(&g.deployment()).value.unwrap().groups[0].state,
        GroupState::Closed
    );
    assert_eq!(
        q.lease(&order2.bid(w.p1.addr)).value.unwrap().state,
        LeaseState::Closed
    );
    // Closing the deployment refunds the rest of the escrow.
    let tenant_before = w.h.balance(&w.tenant.addr, "ukumo");
    w.h.ok(
        &mut w.tenant,
        vec![Msg::CloseDeployment { id: g.deployment() }],
    );
    let paid = 5 * 1000 + 500;
    assert_eq!(
        w.h.balance(&w.tenant.addr, "ukumo"),
        tenant_before - FEE + 10_000_000 - paid
    );
    // The provider may leave now.
    w.h.ok(&mut w.p1, vec![Msg::DeleteProvider]);
}

#[test]
fn pause_and_close_group_with_open_order_refund_bids() {
    let mut w = world();
    let id = deploy(
        &mut w.h,
        &mut w.tenant,
        1,
        vec![group("a", &[], "100ukumo"), group("b", &[], "100ukumo")],
        Coin::new("ukumo", 1_000_000),
    );
    w.h.ok(
        &mut w.p1,
        vec![
            bid(id.group(1).order(1), "50", "ukumo"),
            bid(id.group(2).order(1), "50", "ukumo"),
        ],
    );
    let before = w.h.balance(&w.p1.addr, "ukumo");
    w.h.ok(
        &mut w.tenant,
        vec![
            Msg::PauseGroup { id: id.group(1) },
            Msg::CloseGroup { id: id.group(2) },
        ],
    );
    assert_eq!(w.h.balance(&w.p1.addr, "ukumo"), before + 1_000_000);
    let e =
        w.h.fails(&mut w.tenant, vec![Msg::StartGroup { id: id.group(2) }]);
    assert!(matches!(
        e,
        MsgError::Deployment(DeploymentError::GroupState { .. })
    ));
    w.h.ok(
        &mut w.tenant,
        vec![Msg::UpdateDeployment { id, hash: [9; 32] }],
    );
    assert_eq!(
        w.h.query().deployment(&id).value.unwrap().deployment.hash,
        [9; 32]
    );
}

#[test]
fn order_ttl_expiry_closes_the_order_and_refunds_bids() {
    let mut tenant = Actor::from_seed(1);
    let mut p1 = Actor::from_seed(2);
    let mut g = kumo_chain::Genesis {
        chain_id: CHAIN_ID.into(),
        initial_height: 0,
        params: Default::default(),
        balances: vec![],
    };
    g.params.order_ttl = 5;
    for a in [&tenant, &p1] {
        g.balances.push(kumo_chain::genesis::GenesisBalance {
            address: a.addr,
            coins: FUNDS.parse().unwrap(),
        });
    }
    let mut h = Harness::with_genesis(g);
    h.ok(&mut p1, vec![Msg::CreateProvider(provider_fields(&[]))]);
    let id = deploy(
        &mut h,
        &mut tenant,
        1,
        vec![group("web", &[], "100ukumo")],
        Coin::new("ukumo", 1_000_000),
    );
    let created = h.app.height();
    let order = id.group(1).order(1);
    assert_eq!(
        h.query().order(&order).value.unwrap().expires_at,
        created + 5
    );
    h.ok(&mut p1, vec![bid(order, "50", "ukumo")]);
    let before = h.balance(&p1.addr, "ukumo");
    h.advance_to(created + 4);
    assert_eq!(
        h.query().bid(&order.bid(p1.addr)).value.unwrap().state,
        BidState::Open
    );
    let r = h.block(&[]);
    assert!(r.end_events.iter().any(|e| e.event
        == Event::OrderClosed {
            id: order,
            reason: OrderCloseReason::Expired
        }));
    assert_eq!(
        h.query().bid(&order.bid(p1.addr)).value.unwrap().state,
        BidState::Closed
    );
    assert_eq!(h.balance(&p1.addr, "ukumo"), before + 500_000);
    assert_eq!(
        h.query().deployment(&id).value.unwrap().groups[0].state,
        GroupState::Paused
    );
    // Leasing the expired order fails.
    let e = market_err(h.fails(
        &mut tenant,
        vec![Msg::CreateLease {
            bid: order.bid(p1.addr),
        }],
    ));
    assert!(matches!(e, MarketError::BidNotOpen(_)));
}

#[test]
fn replayed_reordered_and_foreign_txs_are_rejected_without_effect() {
    let mut a = Actor::from_seed(1);
    let b = Actor::from_seed(2);
    let mut h = Harness::new(&[a.addr], FUNDS);
    let send = || Msg::Send {
        to: b.addr,
        amount: "5ukumo".parse().unwrap(),
    };
    let tx0 = a.sign(FEE, vec![send()]);
    let tx1 = a.sign(FEE, vec![send()]);
    let root = h.app.root();
    let r = h.block(std::slice::from_ref(&tx1));
    assert_eq!(
        r.txs[0].clone().unwrap_err(),
        TxRejected::Nonce { want: 0, got: 1 }
    );
    assert_ne!(r.root, root);
    let root_before = h.app.root();
    let r = h.block(&[tx0.clone(), tx0.clone(), tx1.clone(), tx1.clone()]);
    assert!(r.txs[0].is_ok() && r.txs[2].is_ok());
    assert!(matches!(
        r.txs[1],
        Err(TxRejected::Nonce { want: 1, got: 0 })
    ));
    assert!(matches!(
        r.txs[3],
        Err(TxRejected::Nonce { want: 2, got: 1 })
    ));
    assert_ne!(r.root, root_before);
    assert_eq!(h.balance(&b.addr, "ukumo"), 10);
    // Another chain's tx, a bad signature, a fee too low, a wrong fee denom: all rejected,
    // and the state is as an empty block leaves it.
    let mut other = a.clone();
    let foreign = kumo_types::tx::sign_tx(
        &other.key,
        &kumo_types::TxBody {
            chain_id: "other-chain".into(),
            nonce: other.nonce,
            fee: Coin::new("ukumo", FEE),
            memo: String::new(),
            msgs: vec![send()],
        },
    );
    let mut forged = other.sign(FEE, vec![send()]);
    let n = forged.len();
    forged[n - 10] ^= 1;
    let cheap = other.clone().sign(1, vec![send()]);
    let before = h.app.store().clone();
    let r = h.block(&[foreign, forged, cheap]);
    assert!(matches!(r.txs[0], Err(TxRejected::WrongChain { .. })));
    assert!(matches!(
        r.txs[1],
        Err(TxRejected::Envelope(kumo_types::TxError::BadSignature))
    ));
    assert!(matches!(r.txs[2], Err(TxRejected::FeeTooLow { .. })));
    let changed: Vec<_> = h
        .app
        .store()
        .iter()
        .filter(|(k, v)| kumo_chain::Store::get(&before, k).as_deref() != Some(*v))
        .map(|(k, _)| k.to_vec())
        .collect();
    assert_eq!(
        changed,
        vec![kumo_chain::state::keys::height()],
        "only the height moved"
    );
}

#[test]
fn a_failed_message_undoes_the_whole_tx_but_the_fee_and_nonce() {
    let mut a = Actor::from_seed(1);
    let b = Actor::from_seed(2);
    let mut h = Harness::new(&[a.addr], "1000000ukumo");
    let before = h.app.store().clone();
    let r = h
        .submit(
            &mut a,
            vec![
                Msg::Send {
                    to: b.addr,
                    amount: "5ukumo".parse().unwrap(),
                },
                Msg::Send {
                    to: b.addr,
                    amount: "5000000ukumo".parse().unwrap(),
                },
            ],
        )
        .unwrap();
    let f = r.result.unwrap_err();
    assert_eq!(f.index, 1);
    assert!(matches!(
        f.error,
        MsgError::Bank(BankError::InsufficientFunds { .. })
    ));
    assert_eq!(h.balance(&b.addr, "ukumo"), 0);
    assert_eq!(h.balance(&a.addr, "ukumo"), 1_000_000 - FEE);
    assert_eq!(h.query().account(&a.addr).value.nonce, 1);
    assert_eq!(r.events.len(), 1, "only FeePaid");
    let changed: Vec<Vec<u8>> = h
        .app
        .store()
        .iter()
        .filter(|(k, v)| kumo_chain::Store::get(&before, k).as_deref() != Some(*v))
        .map(|(k, _)| k.to_vec())
        .collect();
    use kumo_chain::state::keys;
    let mut want = vec![
        keys::height(),
        keys::account(&a.addr),
        keys::balance(&a.addr, "ukumo"),
        keys::balance(&bank::module_address(bank::FEE_COLLECTOR), "ukumo"),
    ];
    want.sort();
    assert_eq!(changed, want);
}

#[test]
fn prices_in_unknown_denoms_are_rejected_at_deploy_time() {
    let mut w = world();
    let tenant = w.tenant.addr;
    // A price denomination is checked before admission: refused, no fee.
    let r = w.h.submit(
        &mut w.tenant,
        vec![Msg::CreateDeployment {
            id: DeploymentId {
                owner: tenant,
                dseq: 1,
            },
            groups: vec![group("web", &[], "10uatom")],
            hash: [0; 32],
            deposit: Coin::new("uatom", 1_000_000),
        }],
    );
    let Err(TxRejected::InvalidMsg { error: e, .. }) = r else {
        panic!("an unknown price denomination must be rejected: {r:?}");
    };
    assert!(
        matches!(*e, MsgError::Deployment(DeploymentError::PriceDenom { .. })),
        "{e}"
    );
    assert!(e.to_string().contains("ukumo, uusd"), "{e}");
    let e = w.h.fails(
        &mut w.tenant,
        vec![Msg::CreateDeployment {
            id: DeploymentId {
                owner: tenant,
                dseq: 1,
            },
            groups: vec![group("web", &[], "10ukumo")],
            hash: [0; 32],
            deposit: Coin::new("ukumo", 1),
        }],
    );
    assert!(
        matches!(
            e,
            MsgError::Deployment(DeploymentError::DepositTooSmall { .. })
        ),
        "{e}"
    );
    // Someone else's id.
    let e = w.h.fails(
        &mut w.p1,
        vec![Msg::CreateDeployment {
            id: DeploymentId {
                owner: tenant,
                dseq: 1,
            },
            groups: vec![group("web", &[], "10ukumo")],
            hash: [0; 32],
            deposit: Coin::new("ukumo", 1_000_000),
        }],
    );
    assert!(
        matches!(e, MsgError::Deployment(DeploymentError::NotOwner { .. })),
        "{e}"
    );
}

#[test]
fn adversarial_attribute_patterns_cost_a_bounded_amount_of_work() {
    let mut w = world();
    // A provider with 64 long keys, and a group with 64 wildcard requirements that each nearly
    // match every key and truly match only the last: unmetered, over 100M steps per bid;
    // metered, refused after max_match_work.
    let long: Vec<(String, String)> = (0..64)
        .map(|i| (format!("{}{i:02}", "a".repeat(240)), "v".to_string()))
        .collect();
    let attrs: Vec<(&str, &str)> = long.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut spammer = Actor::from_seed(77);
    w.h.ok(
        &mut w.tenant,
        vec![Msg::Send {
            to: spammer.addr,
            amount: "100000000ukumo".parse().unwrap(),
        }],
    );
    w.h.ok(
        &mut spammer,
        vec![Msg::CreateProvider(provider_fields(&attrs))],
    );
    let patterns: Vec<(String, String)> = (0..64)
        .map(|i| (format!("*{}63", "a".repeat(150 + i)), "v".to_string()))
        .collect();
    let req: Vec<(&str, &str)> = patterns
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let id = deploy(
        &mut w.h,
        &mut w.tenant,
        1,
        vec![group("g", &req, "100ukumo")],
        Coin::new("ukumo", 1_000_000),
    );
    let start = std::time::Instant::now();
    let e = market_err(w.h.fails(&mut spammer, vec![bid(id.group(1).order(1), "50", "ukumo")]));
    assert_eq!(e, MarketError::Mismatch(MatchError::TooComplex));
    assert!(
        start.elapsed() < std::time::Duration::from_secs(2),
        "took {:?}",
        start.elapsed()
    );
}
