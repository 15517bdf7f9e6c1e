//! A hostile tenant against a real devnet (`kumo devnet up`: the real node and provider
//! binaries, the real Docker engine): what it tries skips the CLI, with transactions and
//! manifests the test builds and signs itself.
//!
//! - Deployments with zero resources, resources over the limits, a zero or overflowing price,
//!   or too many units are refused by the chain (`check_tx`), with errors naming group and
//!   unit, and cost no fee.
//! - A deployment whose on-chain groups are small but whose hash is that of a manifest with
//!   big units gets a lease; the provider then refuses that manifest and starts nothing.
//! - Every container a lease runs has CPU, memory and pids limits (`docker inspect`).
//!
//! Skipped without a Docker engine and the test images of `scripts/test-images.sh`, unless
//! `KUMO_REQUIRE_DOCKER=1`.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use kumo_client::{
    NodeClient, Wait,
    types::{BidsQuery, OrderIdParam},
};
use kumo_gateway::client::GatewayClient;
use kumo_keystore::{Backend, Keystore};
use kumo_types::{
    Address, BidId, Coin, DeploymentId, GroupSpec, Msg, OrderId, SecretKey, TxBody, tx::sign_tx,
};

#[path = "support/devnet.rs"]
mod devnet;

use devnet::{Devnet, docker_ready, text};

const IMAGE: &str = "kumo-test/busybox:1";

fn sdl(cpu: &str, memory: &str, count: u32) -> String {
    format!(
        r#"version: "2.0"
services:
  web:
    image: {IMAGE}
    command: ["sh", "-c"]
    args: ["exec httpd -f -p 80 -h /www"]
    expose:
      - port: 80
        as: 80
        to:
          - global: true
profiles:
  compute:
    web:
      resources:
        cpu:
          units: {cpu}
        memory:
          size: {memory}
        storage:
          size: 32Mi
  placement:
    dc:
      pricing:
        web:
          denom: ukumo
          amount: 1000
deployment:
  web:
    dc:
      profile: web
      count: {count}
"#
    )
}

/// The tenant, signing its own transactions (no CLI, no `Signer`).
struct Tenant {
    key: SecretKey,
    address: Address,
    node: NodeClient,
    chain_id: String,
}

impl Tenant {
    async fn balance(&self) -> u128 {
        let a = self.node.account(&self.address).await.unwrap().value;
        a.balances.amount_of("ukumo")
    }

    /// Signs `msgs` with the account's next nonce and the minimum fee, and submits them,
    /// waiting for the block.
    async fn send(&self, msgs: Vec<Msg>) -> Result<(), String> {
        let nonce = self.node.account(&self.address).await.unwrap().value.nonce;
        let params = self.node.params().await.unwrap().value;
        let body = |fee: u128| TxBody {
            chain_id: self.chain_id.clone(),
            nonce,
            fee: Coin::new("ukumo", fee),
            memo: String::new(),
            msgs: msgs.clone(),
        };
        let fee = params.min_fee(sign_tx(&self.key, &body(0)).len(), msgs.len());
        let tx = sign_tx(&self.key, &body(fee));
        match self.node.submit(&tx, Wait::Commit).await {
            Ok(r) => match r.tx.and_then(|t| t.result.error) {
                None => Ok(()),
                Some(e) => Err(format!("failed in the block: {}", e.message)),
            },
            Err(e) => Err(e.to_string()),
        }
    }

    async fn next_dseq(&self) -> u64 {
        self.node.status().await.unwrap().height + 1000
    }
}

fn groups_of(text: &str) -> Vec<GroupSpec> {
    kumo_sdl::parse(text)
        .expect("the test's SDL is valid")
        .groups()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_tenant_gets_what_it_paid_for_and_nothing_else() {
    if !docker_ready(IMAGE, "the hostile-tenant test") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let devnet = Devnet::up(&tmp.path().join("devnet"));
    let dir = devnet.dir.clone();
    let instance = devnet.info("instance");
    let node = NodeClient::new(&devnet.info("node")).unwrap();
    let keys = Keystore::open(dir.join("keys"), Backend::Test).unwrap();
    let key = keys.secret_key("tenant").unwrap();
    let tenant = Tenant {
        address: Address::from_public_key(&key.public_key()),
        key,
        chain_id: node.status().await.unwrap().chain_id,
        node,
    };
    let provider: Address = devnet.info("provider").parse().unwrap();

    // 1. Deployments the SDL parser would refuse, hand-signed: the chain refuses each, by
    //    group and unit, before any fee.
    let good = groups_of(&sdl("0.1", "32Mi", 1));
    let mut cases: Vec<(&str, Vec<GroupSpec>, &str)> = Vec::new();
    let mut zero = good.clone();
    zero[0].resources[0].resources.cpu.millis = 0;
    zero[0].resources[0].resources.memory.bytes = 0;
    zero[0].resources[0].resources.storage[0].bytes = 0;
    cases.push(("zero resources", zero, "unit 1: cpu 0m is outside"));
    let mut huge = good.clone();
    huge[0].resources[0].resources.cpu.millis = u64::MAX;
    cases.push(("cpu = u64::MAX", huge, "unit 1: cpu 18446744073709551615m"));
    let mut no_memory = good.clone();
    no_memory[0].resources[0].resources.memory.bytes = 0;
    cases.push(("no memory", no_memory, "unit 1: memory 0 bytes"));
    let mut free = good.clone();
    free[0].resources[0].price.amount = kumo_types::Dec::ZERO;
    cases.push(("zero price", free, "total price is zero"));
    let mut dear = good.clone();
    dear[0].resources[0].price.amount = kumo_types::Dec::from_atto(10u128.pow(38));
    cases.push(("price 10^20", dear, "above the highest unit price"));
    let mut many = good.clone();
    many[0].resources[0].count = 1000;
    cases.push((
        "count 1000",
        many,
        "unit 1 count: 1000 is over the limit of 50",
    ));
    let mut wide = good.clone();
    let unit = wide[0].resources[0].clone();
    wide[0].resources = (1..=21)
        .map(|id| {
            let mut u = unit.clone();
            u.resources.id = id;
            u
        })
        .collect();
    cases.push((
        "21 units",
        wide,
        "resource units: 21 is over the limit of 20",
    ));

    let before = tenant.balance().await;
    for (what, groups, want) in cases {
        let id = DeploymentId {
            owner: tenant.address,
            dseq: tenant.next_dseq().await,
        };
        let err = tenant
            .send(vec![Msg::CreateDeployment {
                id,
                groups,
                hash: [7; 32],
                deposit: Coin::new("ukumo", 5_000_000),
            }])
            .await
            .expect_err(what);
        assert!(
            err.contains(want) && err.contains("invalid"),
            "{what}: the chain's error {err:?} should say {want:?}"
        );
        assert!(
            node_has_no_deployment(&tenant, &id).await,
            "{what}: nothing on chain"
        );
    }
    assert_eq!(
        tenant.balance().await,
        before,
        "refused transactions cost no fee"
    );

    // 2. Small units on chain, the hash of a manifest with big units: the provider bids on the
    //    small group, then refuses the big manifest and starts nothing.
    let small = sdl("0.1", "32Mi", 1);
    let big = kumo_sdl::parse(&sdl("2", "4Gi", 3)).unwrap();
    let id = DeploymentId {
        owner: tenant.address,
        dseq: tenant.next_dseq().await,
    };
    tenant
        .send(vec![Msg::CreateDeployment {
            id,
            groups: groups_of(&small),
            hash: big.manifest_hash(),
            deposit: Coin::new("ukumo", 5_000_000),
        }])
        .await
        .expect("a valid deployment is accepted");
    let order = OrderId {
        owner: id.owner,
        dseq: id.dseq,
        gseq: 1,
        oseq: 1,
    };
    let bid = wait_for_bid(&tenant.node, &order, &provider).await;
    tenant
        .send(vec![Msg::CreateLease { bid }])
        .await
        .expect("lease created");
    let record = tenant.node.provider(&provider).await.unwrap().value;
    let gateway = GatewayClient::new(
        &record.provider.fields.host_uri,
        record.provider.fields.tls_cert_sha256,
        tenant.key.clone(),
        provider,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let refused = loop {
        match gateway.put_manifest(id.dseq, big.manifest()).await {
            // The provider may not have seen the lease yet.
            Err(e) if e.status() == Some(404) && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => break other,
        }
    };
    let err = refused.expect_err("a manifest bigger than the lease must be refused");
    assert_eq!(err.status(), Some(400), "{err}");
    assert!(
        err.to_string().contains("asks for") && err.to_string().contains("nothing was started"),
        "{err}"
    );
    assert_eq!(containers(&instance).len(), 0, "nothing runs for it");

    // 3. A normal deployment through the CLI: every container has its limits.
    let web = tmp.path().join("web.yaml");
    std::fs::write(&web, sdl("0.25", "48Mi", 2)).unwrap();
    let out = devnet.kumo(&[
        "deploy",
        web.to_str().unwrap(),
        "--wait",
        "60s",
        "-o",
        "json",
    ]);
    assert!(out.status.success(), "deploy: {}", text(&out.stderr));
    let ids = containers(&instance);
    assert_eq!(ids.len(), 2, "two replicas");
    for c in ids {
        let out = Command::new("docker")
            .args([
                "inspect",
                "-f",
                "{{.HostConfig.NanoCpus}} {{.HostConfig.Memory}} {{.HostConfig.PidsLimit}}",
                &c,
            ])
            .output()
            .unwrap();
        let got = text(&out.stdout);
        let v: Vec<i64> = got.split_whitespace().map(|n| n.parse().unwrap()).collect();
        assert_eq!(v[0], 250_000_000, "CPU limit of {c}: {got}");
        assert_eq!(v[1], 48 << 20, "memory limit of {c}: {got}");
        assert!(v[2] > 0, "pids limit of {c}: {got}");
    }
}

async fn node_has_no_deployment(t: &Tenant, id: &DeploymentId) -> bool {
    t.node.deployment(id).await.is_err_and(|e| e.is_not_found())
}

async fn wait_for_bid(node: &NodeClient, order: &OrderId, provider: &Address) -> BidId {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let bids = node
            .bids(&BidsQuery {
                order: Some(OrderIdParam(*order)),
                provider: Some(*provider),
                state: None,
            })
            .await
            .unwrap()
            .value;
        if let Some(b) = bids.first() {
            return b.id;
        }
        assert!(Instant::now() < deadline, "no bid on {order} within 30 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Ids of the containers of the devnet's provider (by its Docker label instance).
fn containers(instance: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=kumo.instance={instance}"),
        ])
        .output()
        .unwrap();
    text(&out.stdout).lines().map(str::to_string).collect()
}
