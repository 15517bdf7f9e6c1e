//! A tenant deploys straight from an SDL file parsed by `kumo-sdl`, and providers bid on it.

use kumo_chain::{
    MsgError, TxRejected,
    deployment::DeploymentError,
    market::MarketError,
    state::LeaseState,
    testkit::{Actor, Harness, provider_fields},
};
use kumo_types::{Attribute, Coin, DecCoin, DeploymentId, Msg, matching::MatchError};

fn sdl(auditor: &str, denom: &str) -> String {
    format!(
        r#"---
version: "2.0"
services:
  db:
    image: postgres:16.4
    expose:
      - port: 5432
        to:
          - global: true
    params:
      storage:
        data:
          mount: /var/lib/postgresql/data
profiles:
  compute:
    db:
      resources:
        cpu:
          units: 1
        memory:
          size: 1Gi
        storage:
          - size: 1Gi
          - name: data
            size: 10Gi
            attributes:
              persistent: true
              class: beta2
  placement:
    west:
      attributes:
        region: us-west
      signedBy:
        anyOf:
          - {auditor}
      pricing:
        db:
          denom: {denom}
          amount: 1000
deployment:
  db:
    west:
      profile: db
      count: 2
"#
    )
}

#[test]
fn deployment_from_sdl_gets_a_lease() {
    let mut tenant = Actor::from_seed(1);
    let mut p1 = Actor::from_seed(2);
    let mut p2 = Actor::from_seed(3);
    let mut auditor = Actor::from_seed(4);
    let mut h = Harness::new(
        &[tenant.addr, p1.addr, p2.addr, auditor.addr],
        "1000000000000ukumo,1000000000000uusd",
    );
    let beta2 = [
        ("region", "us-west"),
        ("capabilities/storage/1/class", "beta2"),
        ("capabilities/storage/1/persistent", "true"),
    ];
    h.ok(&mut p1, vec![Msg::CreateProvider(provider_fields(&beta2))]);
    // p2 is in the right region but offers no persistent beta2 storage.
    h.ok(
        &mut p2,
        vec![Msg::CreateProvider(provider_fields(&[(
            "region", "us-west",
        )]))],
    );
    for p in [&p1, &p2] {
        h.ok(
            &mut auditor,
            vec![Msg::SignProviderAttributes {
                provider: p.addr,
                attributes: vec![Attribute::new("region", "us-west")],
            }],
        );
    }

    let parsed = kumo_sdl::parse(&sdl(&auditor.addr.to_string(), "uusd")).expect("valid SDL");
    let id = DeploymentId {
        owner: tenant.addr,
        dseq: h.app.height(),
    };
    h.ok(
        &mut tenant,
        vec![Msg::CreateDeployment {
            id,
            groups: parsed.groups().to_vec(),
            hash: parsed.manifest_hash(),
            deposit: Coin::new("uusd", 5_000_000),
        }],
    );
    let view = h.query().deployment(&id).value.expect("created");
    assert_eq!(view.deployment.hash, parsed.manifest_hash());
    assert_eq!(view.groups[0].spec, parsed.groups()[0]);
    let order = h
        .query()
        .order(&id.group(1).order(1))
        .value
        .expect("one order per group");
    // 2 instances × 1000uusd.
    assert_eq!(
        order.price,
        DecCoin::new("uusd", kumo_types::Dec::from_int(2000))
    );

    let bid = |price: u64| Msg::CreateBid {
        order: order.id,
        price: DecCoin::new("uusd", kumo_types::Dec::from_int(price)),
        deposit: Coin::new("ukumo", 500_000),
        gpus: vec![],
    };
    let e = h.fails(&mut p2, vec![bid(1500)]);
    assert!(
        matches!(
            e,
            MsgError::Market(MarketError::Mismatch(MatchError::Storage { .. }))
        ),
        "{e}"
    );
    h.ok(&mut p1, vec![bid(1500)]);
    h.ok(
        &mut tenant,
        vec![Msg::CreateLease {
            bid: order.id.bid(p1.addr),
        }],
    );
    let lease = h.query().lease(&order.id.bid(p1.addr)).value.unwrap();
    assert_eq!(lease.state, LeaseState::Active);

    // The same SDL priced in a denomination the chain does not take is refused at deploy time,
    // before admission (no fee).
    let akt = kumo_sdl::parse(&sdl(&auditor.addr.to_string(), "uakt")).expect("valid SDL");
    let id = DeploymentId {
        owner: tenant.addr,
        dseq: 999,
    };
    let r = h.submit(
        &mut tenant,
        vec![Msg::CreateDeployment {
            id,
            groups: akt.groups().to_vec(),
            hash: akt.manifest_hash(),
            deposit: Coin::new("uakt", 5_000_000),
        }],
    );
    let Err(TxRejected::InvalidMsg { error: e, .. }) = r else {
        panic!("a uakt price must be rejected: {r:?}");
    };
    assert!(
        matches!(*e, MsgError::Deployment(DeploymentError::PriceDenom { .. })),
        "{e}"
    );
}
