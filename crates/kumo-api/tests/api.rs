//! The API over a real test node on a loopback socket: submit and read back, marketplace
//! queries, bad input, metrics.

mod common;

use std::time::Duration;

use common::{Node, assert_error};
use kumo_chain::testkit::{Actor, FEE, group, provider_fields};
use kumo_types::{Coin, Coins, DecCoin, DeploymentId, Msg, TxBody, tx::sign_tx};
use serde_json::Value;

fn send(from: &mut Actor, to: &Actor, amount: &str) -> Vec<u8> {
    from.sign(
        FEE,
        vec![Msg::Send {
            to: to.addr,
            amount: amount.parse::<Coins>().unwrap(),
        }],
    )
}

fn balance(account: &Value, denom: &str) -> u128 {
    account["value"]["balances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["denom"] == denom)
        .map_or(0, |c| c["amount"].as_str().unwrap().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_wait_for_commit_and_read_it_back() {
    let mut alice = Actor::from_seed(1);
    let bob = Actor::from_seed(2);
    let n = Node::start(&[alice.addr, bob.addr], Duration::from_millis(20)).await;
    let before = balance(&n.ok(&format!("/v1/accounts/{}", bob.addr)).await, "ukumo");

    let tx = send(&mut alice, &bob, "1234ukumo");
    let (s, v) = n.submit(&tx, "?wait=commit").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "committed");
    assert_eq!(v["hash"], hex::encode(kumo_types::tx::tx_hash(&tx)));
    assert_eq!(v["tx"]["result"]["code"], "ok");
    assert_eq!(v["tx"]["bytes"], hex::encode(&tx));
    let height = v["height"].as_u64().unwrap();

    // The transaction, its block, and the balance it moved.
    let t = n
        .ok(&format!("/v1/txs/{}", v["hash"].as_str().unwrap()))
        .await;
    assert_eq!(t["height"], height);
    assert_eq!(t["tx"]["result"]["sender"], alice.addr.to_string());
    let b = n.ok(&format!("/v1/blocks/{height}")).await;
    assert!(
        b["txs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["hash"] == v["hash"])
    );
    let acct = n.ok(&format!("/v1/accounts/{}", bob.addr)).await;
    assert_eq!(balance(&acct, "ukumo"), before + 1234);
    assert!(acct["height"].as_u64().unwrap() >= height);
    let a = n.ok(&format!("/v1/accounts/{}", alice.addr)).await;
    assert_eq!(a["value"]["nonce"], 1);

    // Raw bytes, without waiting: 202 pending, then committed a few blocks later.
    let tx2 = send(&mut alice, &bob, "1ukumo");
    let (s, v2) = n
        .post("/v1/txs", "application/octet-stream", tx2.clone())
        .await;
    assert_eq!(s, 202, "{v2}");
    assert_eq!(v2["status"], "pending");
    let hash2 = v2["hash"].as_str().unwrap().to_string();
    let mut found = None;
    for _ in 0..100 {
        let (s, v) = n.get(&format!("/v1/txs/{hash2}")).await;
        if s == 200 {
            found = Some(v);
            break;
        }
        assert_error(&v, "not_found");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(found.expect("committed")["tx"]["result"]["code"], "ok");

    let status = n.ok("/v1/status").await;
    assert_eq!(status["chain_id"], kumo_chain::testkit::CHAIN_ID);
    assert!(status["height"].as_u64().unwrap() >= height);
    let latest = n.ok("/v1/blocks/latest").await;
    assert!(latest["height"].as_u64().unwrap() >= height);
    let params = n.ok("/v1/params").await;
    assert_eq!(params["value"]["fee_denom"], "ukumo");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_commit_times_out_as_pending() {
    let mut alice = Actor::from_seed(1);
    let bob = Actor::from_seed(2);
    // Blocks only when the test makes them.
    let n = Node::start(&[alice.addr], Duration::from_secs(3600)).await;
    let tx = send(&mut alice, &bob, "5ukumo");
    let (s, v) = n.submit(&tx, "?wait=commit&timeout_ms=100").await;
    assert_eq!((s, v["status"].as_str()), (202, Some("pending")), "{v}");
    let m = n.ok("/v1/status").await;
    assert_eq!(m["mempool"]["txs"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_a_transaction_a_block_made_invalid_says_dropped() {
    let mut alice = Actor::from_seed(1);
    let bob = Actor::from_seed(2);
    let mut cfg = kumo_api::testing::TestNodeConfig::new(kumo_api::testing::genesis(
        &[alice.addr],
        &format!("{}ukumo", 3 * FEE),
    ));
    cfg.block_interval = Duration::from_secs(3600);
    cfg.max_block_txs = 1;
    let n = std::sync::Arc::new(Node::start_with(cfg).await);
    // Nonce 0 spends so much that nonce 1 can no longer pay its fee once 0 is in a block.
    let big = send(&mut alice, &bob, &format!("{}ukumo", FEE + 1));
    let doomed = send(&mut alice, &bob, "1ukumo");
    assert_eq!(n.submit(&big, "").await.0, 202);
    let waiter = {
        let n = n.clone();
        tokio::spawn(async move { n.submit(&doomed, "?wait=commit&timeout_ms=10000").await })
    };
    while n.ok("/v1/status").await["mempool"]["txs"] != 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let b = n.node.backend().clone();
    tokio::task::spawn_blocking(move || b.make_block())
        .await
        .unwrap();
    let (s, v) = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("the waiter answers before its timeout")
        .unwrap();
    assert_eq!(s, 409, "{v}");
    assert_error(&v, "dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marketplace_queries_answer_from_committed_state() {
    let mut tenant = Actor::from_seed(1);
    let mut provider = Actor::from_seed(2);
    let n = Node::start(&[tenant.addr, provider.addr], Duration::from_millis(20)).await;

    n.commit(
        &mut provider,
        vec![Msg::CreateProvider(provider_fields(&[("region", "eu")]))],
    )
    .await;
    let id = DeploymentId {
        owner: tenant.addr,
        dseq: 7,
    };
    n.commit(
        &mut tenant,
        vec![Msg::CreateDeployment {
            id,
            groups: vec![group("web", &[("region", "eu")], "10ukumo")],
            hash: [1; 32],
            deposit: Coin::new("ukumo", 5_000_000),
        }],
    )
    .await;
    let order = id.group(1).order(1);
    n.commit(
        &mut provider,
        vec![Msg::CreateBid {
            order,
            price: DecCoin::new("ukumo", "8".parse().unwrap()),
            deposit: Coin::new("ukumo", 500_000),
            gpus: vec![],
        }],
    )
    .await;
    let open = n.ok("/v1/orders?state=open").await;
    assert_eq!(open["value"].as_array().unwrap().len(), 1);
    assert_eq!(open["value"][0]["id"]["dseq"], 7);
    let bids = n.ok(&format!("/v1/bids?order={order}")).await;
    assert_eq!(bids["value"].as_array().unwrap().len(), 1);
    assert_eq!(bids["value"][0]["state"], "open");
    let by_provider = n
        .ok(&format!("/v1/bids?provider={}&state=open", provider.addr))
        .await;
    assert_eq!(by_provider["value"], bids["value"]);

    n.commit(
        &mut tenant,
        vec![Msg::CreateLease {
            bid: order.bid(provider.addr),
        }],
    )
    .await;
    let leases = n
        .ok(&format!("/v1/leases?owner={}&state=active", tenant.addr))
        .await;
    assert_eq!(leases["value"].as_array().unwrap().len(), 1);
    let leases_p = n
        .ok(&format!("/v1/leases?provider={}", provider.addr))
        .await;
    assert_eq!(leases_p["value"], leases["value"]);
    assert_eq!(
        n.ok("/v1/orders?state=open").await["value"],
        serde_json::json!([])
    );

    let providers = n.ok("/v1/providers").await;
    assert_eq!(providers["value"][0]["owner"], provider.addr.to_string());
    let p = n.ok(&format!("/v1/providers/{}", provider.addr)).await;
    assert_eq!(p["value"]["provider"]["owner"], provider.addr.to_string());
    let deps = n
        .ok(&format!(
            "/v1/deployments?owner={}&state=active",
            tenant.addr
        ))
        .await;
    assert_eq!(deps["value"].as_array().unwrap().len(), 1);
    let d = n.ok(&format!("/v1/deployments/{}/7", tenant.addr)).await;
    assert_eq!(d["value"]["deployment"]["id"]["dseq"], 7);
    assert_eq!(d["value"]["groups"].as_array().unwrap().len(), 1);
    let e = n.ok(&format!("/v1/escrow/{}/7", tenant.addr)).await;
    assert_eq!(e["value"]["payments"].as_array().unwrap().len(), 1, "{e}");
    // Escrow is settled to the height it was read at: it only goes down as blocks pass.
    let later = n.ok(&format!("/v1/escrow/{}/7", tenant.addr)).await;
    assert!(later["height"].as_u64() >= e["height"].as_u64());
    let closed = n
        .ok(&format!(
            "/v1/deployments?owner={}&state=closed",
            tenant.addr
        ))
        .await;
    assert_eq!(closed["value"], serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_json_error_and_the_server_keeps_serving() {
    let mut alice = Actor::from_seed(1);
    let bob = Actor::from_seed(2);
    let n = Node::start(&[alice.addr, bob.addr], Duration::from_secs(3600)).await;
    let backend = n.node.backend().clone();
    let make_block = || {
        let b = backend.clone();
        async move {
            tokio::task::spawn_blocking(move || b.make_block())
                .await
                .unwrap()
        }
    };

    // One valid transaction, committed, so a replay of it is stale.
    let committed = send(&mut alice, &bob, "1ukumo");
    assert_eq!(n.submit(&committed, "").await.0, 202);
    make_block().await;
    let pending = send(&mut alice, &bob, "1ukumo");
    assert_eq!(n.submit(&pending, "").await.0, 202);

    let mut forged = send(&mut alice.clone(), &bob, "1ukumo");
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let other_chain = sign_tx(
        &alice.key,
        &TxBody {
            chain_id: "another-chain".into(),
            nonce: 1,
            fee: Coin::new("ukumo", FEE),
            memo: String::new(),
            msgs: vec![Msg::DeleteProvider],
        },
    );
    let max_tx = kumo_chain::Params::default().max_tx_bytes as usize;
    let too_big_for_chain = vec![1u8; max_tx + 1];
    let too_big_for_body = vec![b'a'; 2 * max_tx + 4096];

    type Case = (&'static str, u16, &'static str, Option<&'static str>);
    let mut results: Vec<(Case, (u16, Value))> = Vec::new();
    let json = "application/json";
    let raw = "application/octet-stream";
    macro_rules! case {
        ($name:expr, $status:expr, $code:expr, $reason:expr, $req:expr) => {{
            let got = $req;
            results.push((($name, $status, $code, $reason), got));
            // After every bad request, a good one still works.
            let (s, _) = n.get("/v1/status").await;
            assert_eq!(s, 200, "the server stopped serving after {}", $name);
        }};
    }
    case!(
        "malformed JSON",
        400,
        "invalid_json",
        None,
        n.post("/v1/txs", json, b"{\"tx\": ".to_vec()).await
    );
    case!(
        "not hex",
        400,
        "invalid_json",
        None,
        n.post("/v1/txs", json, br#"{"tx": "zz"}"#.to_vec()).await
    );
    case!(
        "unknown field",
        400,
        "invalid_json",
        None,
        n.post("/v1/txs", json, br#"{"tx": "00", "fee": 1}"#.to_vec())
            .await
    );
    case!(
        "no content type",
        415,
        "unsupported_media_type",
        None,
        n.post("/v1/txs", "text/plain", b"hello".to_vec()).await
    );
    case!(
        "bad signature",
        400,
        "tx_rejected",
        Some("bad_signature"),
        n.submit(&forged, "").await
    );
    case!(
        "wrong chain",
        400,
        "tx_rejected",
        Some("wrong_chain"),
        n.submit(&other_chain, "").await
    );
    case!(
        "stale nonce",
        400,
        "tx_rejected",
        Some("nonce"),
        n.submit(&committed, "").await
    );
    case!(
        "truncated tx",
        400,
        "tx_rejected",
        Some("tx_too_short"),
        n.post("/v1/txs", raw, vec![1, 2, 3]).await
    );
    case!(
        "duplicate",
        409,
        "already_in_mempool",
        None,
        n.submit(&pending, "").await
    );
    case!(
        "over max_tx_bytes",
        400,
        "tx_rejected",
        Some("tx_too_large"),
        n.post("/v1/txs", raw, too_big_for_chain).await
    );
    case!(
        "oversized body",
        413,
        "payload_too_large",
        None,
        n.post("/v1/txs", json, too_big_for_body).await
    );
    case!(
        "bad wait",
        400,
        "bad_request",
        None,
        n.submit(&pending, "?wait=forever").await
    );
    case!(
        "unknown route",
        404,
        "not_found",
        None,
        n.get("/v1/nothing/here").await
    );
    case!(
        "wrong method",
        405,
        "method_not_allowed",
        None,
        n.post("/v1/status", json, b"{}".to_vec()).await
    );
    case!(
        "bad tx hash",
        400,
        "bad_request",
        None,
        n.get("/v1/txs/xyz").await
    );
    case!(
        "unknown tx",
        404,
        "not_found",
        None,
        n.get(&format!("/v1/txs/{}", "0".repeat(64))).await
    );
    case!(
        "bad height",
        400,
        "bad_request",
        None,
        n.get("/v1/blocks/tall").await
    );
    case!(
        "future block",
        404,
        "not_found",
        None,
        n.get("/v1/blocks/999999").await
    );
    case!(
        "bad address",
        400,
        "bad_request",
        None,
        n.get("/v1/accounts/kumo1nope").await
    );
    case!(
        "bad dseq",
        400,
        "bad_request",
        None,
        n.get(&format!("/v1/deployments/{}/seven", alice.addr))
            .await
    );
    case!(
        "unknown deployment",
        404,
        "not_found",
        None,
        n.get(&format!("/v1/deployments/{}/7", alice.addr)).await
    );
    case!(
        "unknown escrow",
        404,
        "not_found",
        None,
        n.get(&format!("/v1/escrow/{}/7", alice.addr)).await
    );
    case!(
        "unknown provider",
        404,
        "not_found",
        None,
        n.get(&format!("/v1/providers/{}", bob.addr)).await
    );
    case!(
        "bad state filter",
        400,
        "bad_request",
        None,
        n.get("/v1/deployments?state=sleeping").await
    );
    case!(
        "bad owner filter",
        400,
        "bad_request",
        None,
        n.get("/v1/leases?owner=bob").await
    );
    case!(
        "bad order filter",
        400,
        "bad_request",
        None,
        n.get("/v1/bids?order=1/2/3").await
    );
    case!(
        "unknown filter",
        400,
        "bad_request",
        None,
        n.get("/v1/orders?colour=red").await
    );
    case!(
        "zero limit",
        400,
        "bad_request",
        None,
        n.get("/v1/events?limit=0").await
    );
    case!(
        "stream without upgrade",
        400,
        "bad_request",
        None,
        n.get("/v1/events/stream").await
    );

    for ((name, status, code, reason), (got_status, body)) in &results {
        assert_eq!(got_status, status, "{name}: {body}");
        assert_error(body, code);
        match reason {
            Some(r) => assert_eq!(body["error"]["reason"], *r, "{name}: {body}"),
            None => assert!(body["error"].get("reason").is_none(), "{name}: {body}"),
        }
    }
    // The messages say what to do.
    let msg = |name: &str| {
        results
            .iter()
            .find(|(c, _)| c.0 == name)
            .map(|(_, (_, b))| b["error"]["message"].as_str().unwrap().to_string())
            .unwrap()
    };
    assert!(msg("duplicate").contains("already in the mempool"));
    assert!(msg("stale nonce").contains("next nonce is 1"));
    assert!(msg("unknown route").contains("/openapi.json"));
    assert!(msg("oversized body").contains("max_tx_bytes"));

    // And the pending transaction still commits.
    let h = make_block().await;
    let t = n
        .ok(&format!(
            "/v1/txs/{}",
            hex::encode(kumo_types::tx::tx_hash(&pending))
        ))
        .await;
    assert_eq!(t["height"], h);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_blocks_transactions_and_requests() {
    let mut alice = Actor::from_seed(1);
    let bob = Actor::from_seed(2);
    let n = Node::start(&[alice.addr], Duration::from_millis(20)).await;
    for _ in 0..3 {
        n.ok("/v1/status").await;
    }
    n.get("/no/such/route").await;
    let tx = send(&mut alice, &bob, "1ukumo");
    assert_eq!(n.submit(&tx, "?wait=commit").await.0, 200);

    let r = n
        .http
        .get(format!("{}/metrics", n.base))
        .send()
        .await
        .unwrap();
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = r.text().await.unwrap();
    let value = |series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
    };
    assert!(value("kumo_height") >= 1.0);
    assert_eq!(value("kumo_txs_committed_total"), 1.0);
    assert_eq!(value("kumo_mempool_txs"), 0.0);
    assert_eq!(
        value("kumo_api_requests_total{method=\"GET\",route=\"/v1/status\",status=\"200\"}"),
        3.0
    );
    assert_eq!(
        value("kumo_api_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"}"),
        1.0
    );
    assert_eq!(
        value("kumo_api_requests_total{method=\"POST\",route=\"/v1/txs\",status=\"200\"}"),
        1.0
    );
    assert_eq!(
        value("kumo_api_request_duration_seconds_count{method=\"GET\",route=\"/v1/status\"}"),
        3.0
    );
    assert_eq!(
        value(
            "kumo_api_request_duration_seconds_bucket{method=\"GET\",route=\"/v1/status\",le=\"+Inf\"}"
        ),
        3.0
    );
}

/// `POST /v1/txs/batch`: each transaction admitted or refused on its own, with `wait=commit`
/// one answer once the admitted ones are committed; a malformed request as a whole gets the
/// usual error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_submit_answers_per_transaction() {
    let mut alice = Actor::from_seed(1);
    let mut carol = Actor::from_seed(3);
    let bob = Actor::from_seed(2);
    let n = Node::start(
        &[alice.addr, bob.addr, carol.addr],
        Duration::from_millis(20),
    )
    .await;
    let batch = |txs: &[&Vec<u8>]| {
        serde_json::to_vec(&serde_json::json!({
            "txs": txs.iter().map(hex::encode).collect::<Vec<_>>()
        }))
        .unwrap()
    };

    let a0 = send(&mut alice, &bob, "1ukumo");
    let a1 = send(&mut alice, &bob, "2ukumo");
    let c0 = send(&mut carol, &bob, "3ukumo");
    let mut forged = send(&mut carol, &bob, "4ukumo");
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let (s, v) = n
        .post(
            "/v1/txs/batch?wait=commit",
            "application/json",
            batch(&[&a0, &a1, &forged, &a0, &c0]),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let items = v["results"].as_array().unwrap();
    assert_eq!(items.len(), 5);
    for (i, tx) in [(0, &a0), (1, &a1), (4, &c0)] {
        assert_eq!(items[i]["status"], "committed", "{v}");
        assert_eq!(items[i]["hash"], hex::encode(kumo_types::tx::tx_hash(tx)));
        assert_eq!(items[i]["result"]["code"], "ok", "{v}");
        assert!(
            items[i].get("tx").is_none(),
            "no bytes or events echoed: {v}"
        );
        let h = items[i]["height"].as_u64().unwrap();
        let view = n
            .ok(&format!("/v1/txs/{}", items[i]["hash"].as_str().unwrap()))
            .await;
        assert_eq!(view["height"], h);
        assert_eq!(view["tx"]["index"], items[i]["result"]["index"], "{v}");
    }
    assert_eq!(items[2]["status"], "error");
    assert_error(
        &serde_json::json!({"error": items[2]["error"]}),
        "tx_rejected",
    );
    assert_eq!(items[2]["error"]["reason"], "bad_signature", "{v}");
    assert_eq!(items[3]["status"], "error");
    assert_error(
        &serde_json::json!({"error": items[3]["error"]}),
        "already_in_mempool",
    );

    // Without a wait: pending; the nonce already used is refused in its item.
    let a2 = send(&mut alice, &bob, "5ukumo");
    let (s, v) = n
        .post("/v1/txs/batch", "application/json", batch(&[&a2, &a1]))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["results"][0]["status"], "pending", "{v}");
    assert_eq!(v["results"][1]["error"]["code"], "tx_rejected", "{v}");
    assert_eq!(v["results"][1]["error"]["reason"], "nonce", "{v}");

    // Malformed requests.
    let (s, v) = n
        .post("/v1/txs/batch", "application/json", batch(&[]))
        .await;
    assert_eq!(s, 400);
    assert_error(&v, "bad_request");
    let (s, v) = n
        .post(
            "/v1/txs/batch",
            "application/json",
            b"{\"txs\": [1]}".to_vec(),
        )
        .await;
    assert_eq!(s, 400);
    assert_error(&v, "invalid_json");
    let (s, v) = n
        .post("/v1/txs/batch", "application/octet-stream", a2.clone())
        .await;
    assert_eq!(s, 415);
    assert_error(&v, "unsupported_media_type");
    let too_many: Vec<&Vec<u8>> = std::iter::repeat_n(&a2, 1001).collect();
    let (s, v) = n
        .post("/v1/txs/batch", "application/json", batch(&too_many))
        .await;
    assert_eq!(s, 400);
    assert_error(&v, "bad_request");
    let (s, v) = n
        .post("/v1/txs/batch", "application/json", vec![b' '; 9 << 20])
        .await;
    assert_eq!(s, 413);
    assert_error(&v, "payload_too_large");
}

/// A batch that waits for commit is answered with the block that commits its last pending
/// transaction, not when the next block comes (the load generator of `kumo bench node` lost a
/// whole block per round to that).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_wait_is_answered_by_the_block_that_commits_it() {
    use kumo_api::NodeBackend as _;
    let mut alice = Actor::from_seed(1);
    let bob = Actor::from_seed(2);
    // No block but those the test makes.
    let n = Node::start(&[alice.addr, bob.addr], Duration::from_secs(3600)).await;
    let a0 = send(&mut alice, &bob, "1ukumo");
    let hash = kumo_types::tx::tx_hash(&a0);
    let body = serde_json::to_vec(&serde_json::json!({ "txs": [hex::encode(&a0)] })).unwrap();
    let submit = n.post(
        "/v1/txs/batch?wait=commit&timeout_ms=30000",
        "application/json",
        body,
    );
    let one_block = async {
        while !n.node.backend().mempool_contains(&hash) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        n.node.backend().make_block()
    };
    let ((s, v), height) = tokio::time::timeout(Duration::from_secs(10), async {
        tokio::join!(submit, one_block)
    })
    .await
    .expect("the batch is answered once its block is committed, without another block");
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["results"][0]["status"], "committed", "{v}");
    assert_eq!(v["results"][0]["height"], height, "{v}");
}
