//! The node-facing API: genesis from JSON, reloading a store, block sequencing, mempool checks,
//! query filters.

use kumo_chain::{
    App, BlockError, Genesis, MemStore, TxRejected,
    genesis::GenesisError,
    query::{BidFilter, DeploymentFilter, LeaseFilter, OrderFilter, Queries},
    state::{BidState, DeploymentState, OrderState},
    testkit::{Actor, CHAIN_ID, FEE, Harness, group, provider_fields},
};
use kumo_types::{Coin, DecCoin, DeploymentId, Msg};

#[test]
fn genesis_from_json_with_partial_params() {
    let a = Actor::from_seed(1);
    let text = format!(
        r#"{{
          "chain_id": "{CHAIN_ID}",
          "params": {{ "order_ttl": 42 }},
          "balances": [ {{ "address": "{}", "coins": [ {{ "denom": "ukumo", "amount": "1000000" }} ] }} ]
        }}"#,
        a.addr
    );
    let g = Genesis::from_json(&text).unwrap();
    assert_eq!(g.params.order_ttl, 42);
    assert_eq!(
        g.params.fee_denom, "ukumo",
        "other params keep their defaults"
    );
    let app = App::init_genesis(MemStore::new(), &g).unwrap();
    let q = Queries::new(app.store());
    assert_eq!(
        q.account(&a.addr).value.balances.amount_of("ukumo"),
        1_000_000
    );
    assert_eq!(q.supply().value.amount_of("ukumo"), 1_000_000);
    assert_eq!(q.params().value.order_ttl, 42);
    assert_eq!(q.status().value.chain_id, CHAIN_ID);
    // Round trip.
    assert_eq!(Genesis::from_json(&g.to_json()).unwrap(), g);
    // Mistakes are named.
    let typo = text.replace("order_ttl", "order_tll");
    assert!(
        matches!(Genesis::from_json(&typo), Err(GenesisError::Json(e)) if e.contains("order_tll"))
    );
    let bad_chain = text.replace(CHAIN_ID, "has space");
    assert!(matches!(
        Genesis::from_json(&bad_chain),
        Err(GenesisError::ChainId(_))
    ));
    let dup = Genesis {
        balances: vec![g.balances[0].clone(), g.balances[0].clone()],
        ..g.clone()
    };
    assert!(matches!(dup.validate(), Err(GenesisError::Duplicate(_))));
    // Genesis twice on one store is refused.
    assert!(matches!(
        App::init_genesis(app.into_store(), &g),
        Err(GenesisError::NotEmpty)
    ));
}

#[test]
fn blocks_follow_each_other_and_state_reloads() {
    let mut a = Actor::from_seed(1);
    let mut h = Harness::new(&[a.addr], "1000000000ukumo");
    h.ok(
        &mut a,
        vec![Msg::Send {
            to: Actor::from_seed(2).addr,
            amount: "5ukumo".parse().unwrap(),
        }],
    );
    assert_eq!(
        h.app.begin_block(5),
        Err(BlockError::Height { last: 1, got: 5 })
    );
    h.app.begin_block(2).unwrap();
    assert_eq!(h.app.begin_block(3), Err(BlockError::Open(2)));
    h.app.end_block().unwrap();
    assert_eq!(h.app.end_block(), Err(BlockError::NotOpen));
    let root = h.app.root();
    let mut reloaded = App::load(h.app.into_store()).unwrap();
    assert_eq!(reloaded.height(), 2);
    assert_eq!(reloaded.chain_id(), CHAIN_ID);
    assert_eq!(reloaded.root(), root);
    // A tx outside a block is refused.
    let tx = a.sign(FEE, vec![Msg::DeleteProvider]);
    assert_eq!(reloaded.deliver_tx(&tx).unwrap_err(), TxRejected::NoBlock);
    assert!(App::load(MemStore::new()).is_err());
}

#[test]
fn check_tx_admits_future_nonces_but_not_past_ones() {
    let mut a = Actor::from_seed(1);
    let mut h = Harness::new(&[a.addr], "1000000000ukumo");
    let send = || Msg::Send {
        to: Actor::from_seed(2).addr,
        amount: "5ukumo".parse().unwrap(),
    };
    let tx0 = a.sign(FEE, vec![send()]);
    let tx1 = a.sign(FEE, vec![send()]);
    assert!(h.app.check_tx(&tx0).is_ok());
    assert!(h.app.check_tx(&tx1).is_ok(), "a pending nonce may be ahead");
    h.block(std::slice::from_ref(&tx0));
    assert!(matches!(
        h.app.check_tx(&tx0),
        Err(TxRejected::Nonce { want: 1, got: 0 })
    ));
    let poor = Actor::from_seed(9);
    let mut poor2 = poor.clone();
    let tx = poor2.sign(FEE, vec![send()]);
    assert!(matches!(
        h.app.check_tx(&tx),
        Err(TxRejected::CannotPayFee(_))
    ));
    let mut big = a.clone();
    let huge = big.sign(
        FEE,
        vec![
            Msg::Send {
                to: poor.addr,
                amount: "1ukumo".parse().unwrap()
            };
            40
        ],
    );
    assert!(matches!(
        h.app.check_tx(&huge),
        Err(TxRejected::TooManyMsgs { n: 40, .. })
    ));
}

#[test]
fn query_filters() {
    let mut t1 = Actor::from_seed(1);
    let mut t2 = Actor::from_seed(2);
    let mut p = Actor::from_seed(3);
    let mut h = Harness::new(&[t1.addr, t2.addr, p.addr], "1000000000000ukumo");
    h.ok(&mut p, vec![Msg::CreateProvider(provider_fields(&[]))]);
    for (which, dseq) in [(1, 1u64), (1, 2), (2, 1)] {
        let t = if which == 1 { &mut t1 } else { &mut t2 };
        let id = DeploymentId {
            owner: t.addr,
            dseq,
        };
        h.ok(
            t,
            vec![Msg::CreateDeployment {
                id,
                groups: vec![group("web", &[], "100ukumo")],
                hash: [0; 32],
                deposit: Coin::new("ukumo", 1_000_000),
            }],
        );
    }
    let d = |owner: &Actor, dseq| DeploymentId {
        owner: owner.addr,
        dseq,
    };
    for id in [d(&t1, 1), d(&t1, 2), d(&t2, 1)] {
        h.ok(
            &mut p,
            vec![Msg::CreateBid {
                order: id.group(1).order(1),
                price: DecCoin::new("ukumo", "50".parse().unwrap()),
                deposit: Coin::new("ukumo", 500_000),
                gpus: vec![],
            }],
        );
    }
    let (lease, gone) = (d(&t1, 1).group(1).order(1).bid(p.addr), d(&t2, 1));
    h.ok(&mut t1, vec![Msg::CreateLease { bid: lease }]);
    h.ok(&mut t2, vec![Msg::CloseDeployment { id: gone }]);
    let q = h.query();
    let mine = q.deployments(&DeploymentFilter {
        owner: Some(t1.addr),
        state: None,
    });
    assert_eq!(mine.value.len(), 2);
    let closed = q.deployments(&DeploymentFilter {
        owner: None,
        state: Some(DeploymentState::Closed),
    });
    assert_eq!(closed.value.len(), 1);
    assert_eq!(closed.value[0].deployment.id, d(&t2, 1));
    let open = q.orders(&OrderFilter {
        owner: None,
        state: Some(OrderState::Open),
    });
    assert_eq!(
        open.value.iter().map(|o| o.id).collect::<Vec<_>>(),
        vec![d(&t1, 2).group(1).order(1)]
    );
    let by_provider = q.bids(&BidFilter {
        provider: Some(p.addr),
        state: Some(BidState::Open),
        order: None,
    });
    assert_eq!(by_provider.value.len(), 1);
    let all_bids = q.bids(&BidFilter {
        provider: Some(p.addr),
        ..Default::default()
    });
    assert_eq!(all_bids.value.len(), 3);
    let leases = q.leases(&LeaseFilter {
        owner: Some(t1.addr),
        ..Default::default()
    });
    assert_eq!(leases.value.len(), 1);
    assert!(
        q.leases(&LeaseFilter {
            owner: Some(t2.addr),
            ..Default::default()
        })
        .value
        .is_empty()
    );
    let escrow = q.escrow(&d(&t1, 1)).value.unwrap();
    assert_eq!(escrow.payments.len(), 1);
    // JSON shapes the API will serve.
    let json = serde_json::to_value(q.deployment(&d(&t1, 1))).unwrap();
    assert_eq!(json["height"], h.app.height());
    assert_eq!(json["value"]["deployment"]["state"], "active");
}
