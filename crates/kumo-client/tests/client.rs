//! The client against a real test node (`kumo_api::testing`) on a loopback socket.

use std::{sync::Arc, time::Duration};

use futures_util::StreamExt;
use kumo_api::testing::{TestNode, TestNodeConfig, genesis};
use kumo_api::types::{
    BidsQuery, DeploymentsQuery, ErrorCode, LeasesQuery, OrdersQuery, TxCode, TxStatus,
};
use kumo_blockstore::{EventCursor, StoredEvent};
use kumo_chain::{
    Event,
    testkit::{Actor, FEE},
};
use kumo_client::{ClientError, NodeClient, Wait};
use kumo_types::{Address, Coins, DeploymentId, Msg};
use tokio::{net::TcpListener, sync::Mutex, task::JoinHandle};

const FUNDS: &str = "1000000000000ukumo";

async fn node(accounts: &[Address], interval: Duration) -> (TestNode, NodeClient) {
    let mut cfg = TestNodeConfig::new(genesis(accounts, FUNDS));
    cfg.block_interval = interval;
    let node = TestNode::start(cfg);
    let url = node.serve().await.unwrap();
    let client = NodeClient::new(&url).unwrap();
    (node, client)
}

fn send(from: &mut Actor, to: Address, amount: &str) -> Vec<u8> {
    from.sign(
        FEE,
        vec![Msg::Send {
            to,
            amount: amount.parse::<Coins>().unwrap(),
        }],
    )
}

fn ukumo(c: &Coins) -> u128 {
    c.as_slice()
        .iter()
        .find(|c| c.denom == "ukumo")
        .map_or(0, |c| c.amount)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_wait_and_read_the_balance_change() {
    let mut alice = Actor::from_seed(1);
    let bob = Actor::from_seed(2);
    let (_node, c) = node(&[alice.addr], Duration::from_millis(20)).await;

    let status = c.status().await.unwrap();
    assert_eq!(status.chain_id, kumo_chain::testkit::CHAIN_ID);
    let before = c.account(&bob.addr).await.unwrap();
    assert_eq!(before.value.nonce, 0);
    assert_eq!(ukumo(&before.value.balances), 0);

    let tx = send(&mut alice, bob.addr, "4321ukumo");
    let r = c.submit(&tx, Wait::Commit).await.unwrap();
    assert_eq!(r.status, TxStatus::Committed);
    assert_eq!(r.hash, kumo_types::tx::tx_hash(&tx));
    let height = r.height.unwrap();
    let rec = r.tx.unwrap();
    assert_eq!(rec.result.code, TxCode::Ok);
    assert_eq!(rec.result.sender, Some(alice.addr));

    let after = c.account(&bob.addr).await.unwrap();
    assert!(after.height >= height);
    assert_eq!(ukumo(&after.value.balances), 4321);
    let a = c.account(&alice.addr).await.unwrap();
    assert_eq!(a.value.nonce, 1);
    assert_eq!(ukumo(&a.value.balances), 1_000_000_000_000 - 4321 - FEE);

    // The same transaction from the other reads.
    assert_eq!(c.tx(&r.hash).await.unwrap().height, height);
    let block = c.block(height).await.unwrap();
    assert!(block.txs.iter().any(|t| t.hash == r.hash));
    assert!(c.latest_block().await.unwrap().height >= height);
    let page = c.events(EventCursor::at_height(height), 100).await.unwrap();
    assert!(page.events.iter().any(|e| e.tx_hash == Some(r.hash)));
    assert_eq!(c.params().await.unwrap().value.fee_denom, "ukumo");

    // Without waiting: pending, then committed.
    let tx2 = send(&mut alice, bob.addr, "1ukumo");
    let r2 = c.submit(&tx2, Wait::No).await.unwrap();
    assert_eq!((r2.status, r2.height), (TxStatus::Pending, None));
    let mut committed = None;
    for _ in 0..200 {
        match c.tx(&r2.hash).await {
            Ok(v) => {
                committed = Some(v);
                break;
            }
            Err(e) => {
                assert!(e.is_not_found(), "{e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    assert_eq!(committed.unwrap().tx.result.code, TxCode::Ok);

    let metrics = c.metrics().await.unwrap();
    assert!(metrics.contains("kumo_txs_committed_total 2"), "{metrics}");
    let doc = c.openapi().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marketplace_reads_are_typed() {
    let mut tenant = Actor::from_seed(1);
    let mut provider = Actor::from_seed(2);
    let (_node, c) = node(&[tenant.addr, provider.addr], Duration::from_millis(20)).await;
    let commit = |tx: Vec<u8>| {
        let c = c.clone();
        async move {
            let r = c.submit(&tx, Wait::Commit).await.unwrap();
            assert_eq!(r.tx.unwrap().result.code, TxCode::Ok);
        }
    };
    commit(provider.sign(
        FEE,
        vec![Msg::CreateProvider(kumo_chain::testkit::provider_fields(
            &[],
        ))],
    ))
    .await;
    let id = DeploymentId {
        owner: tenant.addr,
        dseq: 3,
    };
    commit(tenant.sign(
        FEE,
        vec![Msg::CreateDeployment {
            id,
            groups: vec![kumo_chain::testkit::group("g", &[], "10ukumo")],
            hash: [2; 32],
            deposit: kumo_types::Coin::new("ukumo", 1_000_000),
        }],
    ))
    .await;
    let order = id.group(1).order(1);
    commit(provider.sign(
        FEE,
        vec![Msg::CreateBid {
            order,
            price: kumo_types::DecCoin::new("ukumo", "9".parse().unwrap()),
            deposit: kumo_types::Coin::new("ukumo", 500_000),
            gpus: vec![],
        }],
    ))
    .await;

    let orders = c
        .orders(&OrdersQuery {
            owner: Some(tenant.addr),
            state: Some(kumo_api::types::OrderState::Open),
        })
        .await
        .unwrap();
    assert_eq!(orders.value.len(), 1);
    assert_eq!(orders.value[0].id, order);
    let bids = c
        .bids(&BidsQuery {
            order: Some(kumo_api::types::OrderIdParam(order)),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(bids.value[0].id, order.bid(provider.addr));
    commit(tenant.sign(
        FEE,
        vec![Msg::CreateLease {
            bid: order.bid(provider.addr),
        }],
    ))
    .await;
    let leases = c
        .leases(&LeasesQuery {
            provider: Some(provider.addr),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(leases.value.len(), 1);
    let deps = c
        .deployments(&DeploymentsQuery {
            owner: Some(tenant.addr),
            state: None,
        })
        .await
        .unwrap();
    assert_eq!(deps.value[0].deployment.id, id);
    assert_eq!(c.deployment(&id).await.unwrap().value.groups.len(), 1);
    assert_eq!(c.escrow(&id).await.unwrap().value.payments.len(), 1);
    assert_eq!(c.providers().await.unwrap().value.len(), 1);
    assert_eq!(
        c.provider(&provider.addr)
            .await
            .unwrap()
            .value
            .provider
            .owner,
        provider.addr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_typed() {
    let mut alice = Actor::from_seed(1);
    let bob = Actor::from_seed(2);
    // No blocks unless the test makes one.
    let (node, c) = node(&[alice.addr], Duration::from_secs(3600)).await;

    let e = c.tx(&[7; 32]).await.unwrap_err();
    assert!(e.is_not_found(), "{e}");
    let e = c.block(99).await.unwrap_err();
    assert!(matches!(e, ClientError::Api { status: 404, .. }), "{e}");
    let e = c.provider(&bob.addr).await.unwrap_err();
    assert!(e.is_not_found());

    let tx = send(&mut alice, bob.addr, "1ukumo");
    c.submit(&tx, Wait::No).await.unwrap();
    let e = c.submit(&tx, Wait::No).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::AlreadyInMempool));
    assert!(e.to_string().contains("already in the mempool"), "{e}");
    // Waiting with a short timeout and no block: still pending.
    let tx2 = send(&mut alice, bob.addr, "1ukumo");
    let r = c
        .submit(&tx2, Wait::CommitWithin(Duration::from_millis(50)))
        .await
        .unwrap();
    assert_eq!(r.status, TxStatus::Pending);

    let b = node.backend().clone();
    tokio::task::spawn_blocking(move || b.make_block())
        .await
        .unwrap();
    let e = c.submit(&tx, Wait::No).await.unwrap_err();
    match &e {
        ClientError::Api {
            status,
            code,
            reason,
            ..
        } => {
            assert_eq!(*status, 400);
            assert_eq!(*code, ErrorCode::TxRejected);
            assert_eq!(reason.as_deref(), Some("nonce"));
        }
        other => panic!("expected a rejection, got {other}"),
    }

    assert!(matches!(
        NodeClient::new("ftp://example").unwrap_err(),
        ClientError::Url { .. }
    ));
    // Nothing listens on a port we just freed.
    let free = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = free.local_addr().unwrap();
    drop(free);
    let dead = NodeClient::new(&format!("http://{addr}")).unwrap();
    let e = dead.status().await.unwrap_err();
    assert!(matches!(e, ClientError::Transport { .. }), "{e}");
    assert!(e.to_string().contains("cannot reach the node"));
}

/// A TCP relay whose connections can be cut, as a network failure would.
struct Relay {
    url: String,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    _accept: JoinHandle<()>,
}

impl Relay {
    async fn start(target: &str) -> Relay {
        let target = target.trim_start_matches("http://").to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = {
            let conns = conns.clone();
            tokio::spawn(async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    let target = target.clone();
                    conns.lock().await.push(tokio::spawn(async move {
                        if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    }));
                }
            })
        };
        Relay {
            url,
            conns,
            _accept: accept,
        }
    }

    /// Drops every open connection.
    async fn cut(&self) {
        for c in self.conns.lock().await.drain(..) {
            c.abort();
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self._accept.abort();
    }
}

async fn next_event(s: &mut kumo_client::EventStream, errors: &mut usize) -> StoredEvent {
    loop {
        let item = tokio::time::timeout(Duration::from_secs(10), s.next())
            .await
            .expect("an event within 10 s")
            .expect("the stream does not end");
        match item {
            Ok(e) => return e,
            Err(ClientError::Stream(_)) => *errors += 1,
            Err(e) => panic!("unexpected stream error: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_follows_from_height_1_and_survives_a_dropped_connection() {
    let mut alice = Actor::from_seed(1);
    let bob = Actor::from_seed(2);
    let (_node, direct) = node(&[alice.addr], Duration::from_millis(15)).await;
    let relay = Relay::start(direct.url()).await;
    let c = NodeClient::new(&relay.url).unwrap();

    let first = send(&mut alice, bob.addr, "10ukumo");
    let first_hash = direct.submit(&first, Wait::Commit).await.unwrap().hash;

    let mut stream = c.event_stream(1);
    let mut errors = 0;
    let mut seen: Vec<StoredEvent> = Vec::new();
    // The stored history arrives first: the first transaction's fee and transfer.
    while !seen
        .iter()
        .any(|e| e.tx_hash == Some(first_hash) && matches!(e.event, Event::Transfer { .. }))
    {
        seen.push(next_event(&mut stream, &mut errors).await);
    }
    let transfer = seen.last().unwrap();
    assert!(
        matches!(&transfer.event, Event::Transfer { to, .. } if *to == bob.addr),
        "{transfer:?}"
    );

    // The connection drops; meanwhile more blocks commit.
    relay.cut().await;
    let mut hashes = Vec::new();
    for _ in 0..3 {
        let tx = send(&mut alice, bob.addr, "1ukumo");
        hashes.push(direct.submit(&tx, Wait::Commit).await.unwrap().hash);
    }
    let last = *hashes.last().unwrap();
    while !seen
        .iter()
        .any(|e| e.tx_hash == Some(last) && matches!(e.event, Event::Transfer { .. }))
    {
        seen.push(next_event(&mut stream, &mut errors).await);
    }
    assert!(errors >= 1, "the drop was noticed");

    // Exactly the stored sequence: nothing lost across the reconnect, nothing repeated.
    let mut stored = Vec::new();
    let mut cursor = EventCursor::at_height(1);
    loop {
        let page = direct.events(cursor, 1000).await.unwrap();
        if page.events.is_empty() {
            break;
        }
        cursor = page.next;
        stored.extend(page.events);
    }
    assert_eq!(seen, stored[..seen.len()].to_vec());
    for h in hashes {
        assert!(seen.iter().any(|e| e.tx_hash == Some(h)));
    }
}

/// A node that cannot be reached for a moment (a restart, a network blip) costs a read a short
/// wait, not a failure: the client asks again with backoff, and answers once the node is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_wait_out_a_node_that_is_briefly_unreachable() {
    let (node, _) = node(&[], Duration::from_millis(20)).await;
    let target = node.serve().await.unwrap();
    let target = target.trim_start_matches("http://").to_string();
    // A port nothing listens on yet; the relay to the node opens there 1.5 s later.
    let free = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = free.local_addr().unwrap();
    drop(free);
    let late = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let listener = TcpListener::bind(addr).await.unwrap();
        while let Ok((mut inbound, _)) = listener.accept().await {
            let target = target.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    let c = NodeClient::new(&format!("http://{addr}")).unwrap();
    let start = std::time::Instant::now();
    let status = c.status().await.expect("answered once the node was back");
    assert_eq!(status.chain_id, kumo_chain::testkit::CHAIN_ID);
    assert!(start.elapsed() >= Duration::from_millis(1400));
    late.abort();
}
