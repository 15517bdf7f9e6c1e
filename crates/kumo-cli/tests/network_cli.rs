//! A real network: `kumo testnet init --validators 4 --followers 1`, five `kumo node run`
//! processes on loopback (four validators and a follower that does not vote), signed transfers
//! from several accounts sent to every node, the follower included. A validator and the
//! follower are killed with `kill -9` in the middle of the load and restarted. The others keep
//! committing; the restarted ones catch up; all five agree on every block (hash and state
//! root); every transaction a node reported committed is on every node afterwards; a
//! transaction sent to the follower with `kumo tx send` is committed. Bad requests to a real
//! node's API get 4xx JSON errors and the node keeps serving.
//!
//! The node processes are killed when the test ends, passing or failing ([`NodeProcess`]'s
//! `Drop`).

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use kumo_client::NodeClient;
use kumo_keystore::{Backend, Keystore};
use kumo_testnet::{
    NodeProcess, Testnet,
    load::{self, LoadConfig, Sender},
};
use kumo_types::{
    Coin, Msg, SecretKey,
    tx::{TxBody, sign_tx},
};

const ACCOUNTS: usize = 8;
const TXS_PER_ACCOUNT: usize = 50;
const FEE: u128 = 5_000;

fn kumo(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kumo"))
        .args(args)
        .env_remove("KUMO_HOME")
        .env_remove("KUMO_NODE")
        .output()
        .expect("run kumo")
}

fn init_testnet(dir: &Path) -> Testnet {
    let mut args = vec![
        "testnet".to_string(),
        "init".into(),
        "--validators".into(),
        "4".into(),
        "--followers".into(),
        "1".into(),
        "--dir".into(),
        dir.display().to_string(),
        "--base-port".into(),
        "0".into(),
        "--block-time".into(),
        "250ms".into(),
        "-o".into(),
        "json".into(),
    ];
    for i in 0..ACCOUNTS {
        args.push("--fund".into());
        args.push(format!("sender{i}=1000000000ukumo"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = kumo(&args);
    assert!(
        out.status.success(),
        "testnet init: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Testnet = serde_json::from_slice(&out.stdout).expect("testnet init -o json");
    assert_eq!(printed, Testnet::load(dir).unwrap());
    printed
}

async fn height(c: &NodeClient) -> u64 {
    c.status().await.map_or(0, |s| s.height)
}

/// `kumo_txs_committed_total` of a node's `/metrics`.
async fn committed_total(c: &NodeClient) -> u64 {
    let text = c.metrics().await.unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("kumo_txs_committed_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn wait_until<F: std::future::Future<Output = bool>>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> F,
) {
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < timeout, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Asserts a JSON error with this status and code.
async fn expect_error(resp: reqwest::Response, status: u16, code: &str) {
    assert_eq!(resp.status().as_u16(), status, "expected {status} {code}");
    let body: serde_json::Value = resp.json().await.expect("a JSON error body");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
}

/// Bad requests to a real node: each gets its 4xx JSON error, and the node keeps serving.
async fn bad_input_is_refused(api: &str, chain_id: &str, key: &SecretKey) {
    let http = reqwest::Client::new();
    let txs = format!("{api}/v1/txs");
    let raw = |bytes: Vec<u8>| {
        http.post(&txs)
            .header("content-type", "application/octet-stream")
            .body(bytes)
            .send()
    };
    let body = |chain: &str, nonce: u64| TxBody {
        chain_id: chain.into(),
        nonce,
        fee: Coin::new("ukumo", FEE),
        memo: String::new(),
        msgs: vec![Msg::Send {
            to: kumo_types::Address([9; 20]),
            amount: "1ukumo".parse().unwrap(),
        }],
    };

    let r = http
        .post(&txs)
        .header("content-type", "application/json")
        .body("{\"tx\": ")
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "invalid_json").await;

    let mut forged = sign_tx(key, &body(chain_id, 1_000));
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let r = raw(forged).await.unwrap();
    expect_error(r, 400, "tx_rejected").await;

    let r = raw(sign_tx(key, &body("another-chain", 1_000)))
        .await
        .unwrap();
    expect_error(r, 400, "tx_rejected").await;

    // Nonce 0 was used by the load.
    let r = raw(sign_tx(key, &body(chain_id, 0))).await.unwrap();
    expect_error(r, 400, "tx_rejected").await;

    // Over the limit (2 × max_tx_bytes + 1 KiB), on its own connection: the node answers
    // before reading it all and closes the connection.
    let r = reqwest::Client::new()
        .post(&txs)
        .header("content-type", "application/octet-stream")
        .body(vec![1; 200 * 1024])
        .send()
        .await
        .unwrap();
    expect_error(r, 413, "payload_too_large").await;

    let r = http.get(format!("{api}/v1/nope")).send().await.unwrap();
    expect_error(r, 404, "not_found").await;

    let status = http.get(format!("{api}/v1/status")).send().await.unwrap();
    assert_eq!(status.status().as_u16(), 200, "the node stopped serving");
}

/// The killed validator.
const KILLED: usize = 2;
/// The follower (after the 4 validators in testnet.json).
const FOLLOWER: usize = 4;

#[test]
fn four_validators_and_a_follower_keep_committing_through_kill_9_and_agree_after() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let testnet = init_testnet(dir.path());
    let keystore = Keystore::open(dir.path().join(&testnet.keyring_dir), Backend::Test).unwrap();
    let keys: Vec<SecretKey> = (0..ACCOUNTS)
        .map(|i| keystore.secret_key(&format!("sender{i}")).unwrap())
        .collect();
    let exe = Path::new(env!("CARGO_BIN_EXE_kumo"));
    let mut nodes: Vec<NodeProcess> = testnet
        .nodes
        .iter()
        .map(|n| NodeProcess::start(exe, &dir.path().join(&n.home), &n.api).unwrap())
        .collect();
    let clients: Vec<NodeClient> = nodes.iter().map(NodeProcess::client).collect();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for n in &mut nodes {
            n.wait_serving(Duration::from_secs(60)).await.unwrap();
        }
        wait_until("the first blocks", Duration::from_secs(60), || async {
            height(&clients[0]).await >= 2
        })
        .await;

        assert_eq!(
            testnet.nodes[FOLLOWER].role,
            kumo_node::home::NodeRole::Follower
        );
        // The load: every account sends from nonce 0, to every node (account i to node i % 5,
        // so account 4 sends to the follower).
        let senders: Vec<Sender> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let to =
                    kumo_types::Address::from_public_key(&keys[(i + 1) % ACCOUNTS].public_key());
                Sender::sends(k, &testnet.chain_id, to, 0, TXS_PER_ACCOUNT, FEE)
            })
            .collect();
        let load = tokio::spawn(load::run(
            senders,
            clients.clone(),
            LoadConfig {
                window: 4,
                wait: Duration::from_secs(5),
                stop_at: None,
                give_up_after: Duration::from_secs(45),
            },
        ));

        // Mid-load: kill -9 a validator and the follower.
        wait_until(
            "30 committed transactions, some through the follower",
            Duration::from_secs(30),
            || async {
                committed_total(&clients[0]).await >= 30
                    && clients[FOLLOWER]
                        .account(&kumo_types::Address::from_public_key(
                            &keys[FOLLOWER].public_key(),
                        ))
                        .await
                        .is_ok_and(|a| a.value.nonce > 0)
            },
        )
        .await;
        nodes[KILLED].kill();
        nodes[FOLLOWER].kill();
        let at_kill = height(&clients[0]).await;
        let committed_at_kill = committed_total(&clients[0]).await;

        // The other three validators keep finalizing blocks and committing transactions.
        // (It timed out once in CI, never again in reruns: on a timeout, say where each node
        // was and what it logged.)
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (h0, h3) = (height(&clients[0]).await, height(&clients[3]).await);
            let c1 = committed_total(&clients[1]).await;
            if h0 >= at_kill + 8 && h3 >= at_kill + 8 && c1 > committed_at_kill {
                break;
            }
            if Instant::now() > deadline {
                let logs: Vec<String> = [0, 1, 3]
                    .iter()
                    .map(|&i| format!("--- node {i}'s log:\n{}", nodes[i].log_tail(25)))
                    .collect();
                panic!(
                    "timed out: blocks without node 2 (killed at height {at_kill}, {committed_at_kill} committed; now nodes 0 and 3 at {h0} and {h3}, node 1 committed {c1})\n{}",
                    logs.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            committed_total(&clients[0]).await > committed_at_kill,
            "no transaction committed while node 2 was down"
        );

        // Restart them: they load their state, catch up and serve.
        let before_restart = (
            height(&clients[0]).await,
            committed_total(&clients[0]).await,
        );
        for n in [KILLED, FOLLOWER] {
            nodes[n].restart().unwrap();
        }
        for n in [KILLED, FOLLOWER] {
            nodes[n]
                .wait_serving(Duration::from_secs(60))
                .await
                .unwrap();
        }
        eprintln!(
            "killed node 2 and the follower at height {at_kill} ({committed_at_kill} txs \
             committed); restarted them at height {} ({} txs committed); they serve from \
             heights {} and {}",
            before_restart.0,
            before_restart.1,
            height(&clients[KILLED]).await,
            height(&clients[FOLLOWER]).await
        );

        let report = load.await.unwrap();
        assert!(report.failed.is_empty(), "failed: {:?}", report.failed);
        assert_eq!(report.committed.len(), ACCOUNTS * TXS_PER_ACCOUNT);

        // A transfer sent to the follower with the CLI is committed (the follower forwards it
        // to the validators), and the validators have it.
        let sent = kumo(&[
            "tx",
            "send",
            "--home",
            &dir.path().display().to_string(),
            "--keyring-backend",
            "test",
            "--from",
            "sender0",
            "--node",
            &testnet.nodes[FOLLOWER].api,
            "sender1",
            "7ukumo",
            "--wait",
            "-o",
            "json",
        ]);
        assert!(
            sent.status.success(),
            "tx send to the follower: {}",
            String::from_utf8_lossy(&sent.stderr)
        );
        let sent: serde_json::Value = serde_json::from_slice(&sent.stdout).unwrap();
        assert_eq!(sent["status"], "committed", "{sent}");
        let sent_hash: [u8; 32] = hex::decode(sent["hash"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let sent_height = sent["height"].as_u64().unwrap();

        // Every node (not only the restarted ones: a validator may lag node 0 by a block) must
        // have stored the block with the transaction before it is asked for it.
        let target = height(&clients[0]).await.max(sent_height);
        wait_until(
            "every node (node 2 and the follower included) reaching the transaction's block",
            Duration::from_secs(30),
            || async {
                for c in &clients {
                    if height(c).await < target {
                        return false;
                    }
                }
                true
            },
        )
        .await;

        for (i, node) in clients.iter().enumerate() {
            let view = node.tx(&sent_hash).await.unwrap();
            assert_eq!(view.height, sent_height, "node {i}");
        }

        // Every node has every block up to the common tip, identical, state roots included.
        let mut tip = u64::MAX;
        for c in &clients {
            tip = tip.min(height(c).await);
        }
        for h in 1..=tip {
            let first = clients[0].block(h).await.unwrap();
            for (i, c) in clients.iter().enumerate().skip(1) {
                let b = c.block(h).await.unwrap();
                assert_eq!(b.hash, first.hash, "node {i} differs at height {h}");
                assert_eq!(
                    b.state_root, first.state_root,
                    "node {i}'s state root at {h}"
                );
                assert_eq!(b, first, "node {i}'s block {h}");
            }
        }

        // Every transaction reported committed is on every node, in the block it was reported in.
        for c in &report.committed {
            for (i, node) in clients.iter().enumerate() {
                let view = node
                    .tx(&c.hash)
                    .await
                    .unwrap_or_else(|e| panic!("node {i} lacks a committed tx: {e}"));
                assert_eq!(view.height, c.height, "node {i} puts the tx elsewhere");
            }
        }
        // The restarted nodes' state agrees with the others: the senders' nonces.
        for (i, k) in keys.iter().enumerate() {
            let addr = kumo_types::Address::from_public_key(&k.public_key());
            let a0 = clients[0].account(&addr).await.unwrap();
            let extra = u64::from(i == 0); // the CLI's transfer
            assert_eq!(a0.value.nonce, TXS_PER_ACCOUNT as u64 + extra);
            for n in [KILLED, FOLLOWER] {
                let a = clients[n].account(&addr).await.unwrap();
                if a.height == a0.height {
                    assert_eq!(a.value, a0.value, "node {n}");
                }
            }
        }

        bad_input_is_refused(&testnet.nodes[2].api, &testnet.chain_id, &keys[0]).await;
        bad_input_is_refused(&testnet.nodes[FOLLOWER].api, &testnet.chain_id, &keys[2]).await;
        bad_input_is_refused(&testnet.nodes[0].api, &testnet.chain_id, &keys[1]).await;
    });

    // A graceful stop: SIGTERM, exit 0.
    for n in &mut nodes {
        assert!(n.terminate(Duration::from_secs(15)), "{}", n.log_tail(20));
    }
    eprintln!("network test took {:?}", started.elapsed());
}

/// A node whose p2p port another program holds stops at once with an error that names the
/// address, instead of serving its API without ever joining the network.
#[test]
fn a_node_whose_p2p_port_is_taken_exits_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = kumo(&[
        "testnet",
        "init",
        "--validators",
        "1",
        "--dir",
        &dir.path().display().to_string(),
        "--base-port",
        "0",
        "-o",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let testnet: Testnet = serde_json::from_slice(&out.stdout).unwrap();
    let node = &testnet.nodes[0];
    let _taken = std::net::TcpListener::bind(node.p2p).unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_kumo"))
        .args(["node", "run", "--home"])
        .arg(dir.path().join(&node.home))
        .output()
        .unwrap();
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains(&format!("cannot listen for peers on {}", node.p2p)),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
