//! Same transactions, same order → same state root, on every run and machine.
//!
//! The root below was computed once and pinned: a change to the encoding of any state value,
//! to the key layout, or to the order or arithmetic of any state transition changes it. Such a
//! change is a consensus-breaking change; update the pin only on purpose, and say so.

use kumo_chain::testkit::{Actor, Harness, group, provider_fields};
use kumo_types::{Coin, DecCoin, DeploymentId, LeaseCloseReason, Msg};

/// Runs a block and checks every transaction in it applied.
fn all_ok(h: &mut Harness, txs: &[Vec<u8>]) {
    for r in h.block(txs).txs {
        let r = r.expect("accepted");
        assert!(r.result.is_ok(), "{:?}", r.result);
    }
}

fn script() -> Harness {
    let mut tenant = Actor::from_seed(1);
    let mut p1 = Actor::from_seed(2);
    let mut p2 = Actor::from_seed(3);
    let mut h = Harness::new(
        &[tenant.addr, p1.addr, p2.addr],
        "100000000000ukumo,100000000000uusd",
    );
    h.ok(
        &mut p1,
        vec![Msg::CreateProvider(provider_fields(&[(
            "region", "us-west",
        )]))],
    );
    h.ok(
        &mut p2,
        vec![Msg::CreateProvider(provider_fields(&[(
            "region", "us-west",
        )]))],
    );
    let mut txs = Vec::new();
    for dseq in 1..=3u64 {
        let id = DeploymentId {
            owner: tenant.addr,
            dseq,
        };
        txs.push(tenant.sign(
            200_000,
            vec![Msg::CreateDeployment {
                id,
                groups: vec![group("web", &[("region", "us-west")], "100000.5uusd")],
                hash: [dseq as u8; 32],
                deposit: Coin::new("uusd", 500_000 * u128::from(dseq)),
            }],
        ));
    }
    all_ok(&mut h, &txs);
    let mut txs = Vec::new();
    for dseq in 1..=3u64 {
        let order = DeploymentId {
            owner: tenant.addr,
            dseq,
        }
        .group(1)
        .order(1);
        for (p, price) in [(&mut p1, "70000.25"), (&mut p2, "65000")] {
            txs.push(p.sign(
                200_000,
                vec![Msg::CreateBid {
                    order,
                    price: DecCoin::new("uusd", price.parse().unwrap()),
                    deposit: Coin::new("ukumo", 500_000),
                    gpus: vec![],
                }],
            ));
        }
        txs.push(tenant.sign(
            200_000,
            vec![Msg::CreateLease {
                bid: order.bid(p1.addr),
            }],
        ));
    }
    all_ok(&mut h, &txs);
    h.advance_to(h.app.height() + 7);
    let lease = DeploymentId {
        owner: tenant.addr,
        dseq: 3,
    }
    .group(1)
    .order(1)
    .bid(p1.addr);
    let close = DeploymentId {
        owner: tenant.addr,
        dseq: 2,
    }
    .group(1)
    .order(1)
    .bid(p1.addr);
    let txs = vec![
        p1.sign(200_000, vec![Msg::WithdrawLease { id: lease }]),
        tenant.sign(
            200_000,
            vec![Msg::CloseLease {
                id: close,
                reason: LeaseCloseReason::Owner,
            }],
        ),
    ];
    all_ok(&mut h, &txs);
    h.advance_to(h.app.height() + 40);
    h
}

#[test]
fn same_txs_same_root() {
    let mut a = script();
    let mut b = script();
    assert_eq!(a.app.root(), b.app.root());
    assert_eq!(a.events, b.events);
    // The script reached depletion (deployment 1 ran dry) on the way.
    assert!(a.events.iter().any(|e| matches!(
        e.event,
        kumo_chain::Event::LeaseClosed {
            reason: LeaseCloseReason::InsufficientFunds,
            ..
        }
    )));
}

#[test]
fn pinned_state_root() {
    let mut h = script();
    // Re-pinned on purpose for issue 23: providers record their liveness (`last_seen`,
    // `silence_deadline`), escrow accounts their top-up allowance, and the parameters gained
    // `liveness_interval` and `liveness_window`.
    // Before, for issue 28: the stored parameters gained `resource_limits` and
    // `max_leases_per_withdraw`, and `max_unit_count` is 50 (Akash's) instead of 1,000.
    // (Before that, issue 8: `Bid` stores the GPUs it offers.)
    assert_eq!(
        hex::encode(h.app.root()),
        "5f215b587ca3ca21592e19b7da1e4b4b5c6b1cceeff994ee4743ce499899f7a5",
        "the state root changed: a consensus-breaking change (see the module docs)"
    );
}
