//! Events: pages that add up to the chain's event sequence, and a WebSocket stream that joins
//! stored and live events without a gap or a repeat.

mod common;

use std::time::Duration;

use common::Node;
use futures_util::StreamExt;
use kumo_chain::testkit::{Actor, FEE};
use kumo_types::{Coins, Msg};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

fn send(from: &mut Actor, to: &Actor) -> Vec<u8> {
    from.sign(
        FEE,
        vec![Msg::Send {
            to: to.addr,
            amount: "3ukumo".parse::<Coins>().unwrap(),
        }],
    )
}

/// Every stored event, by paging `limit` at a time.
async fn all_events(n: &Node, limit: usize) -> Vec<Value> {
    let mut out = Vec::new();
    let (mut h, mut i) = (0, 0);
    loop {
        let page = n
            .ok(&format!(
                "/v1/events?from_height={h}&from_index={i}&limit={limit}"
            ))
            .await;
        let events = page["events"].as_array().unwrap();
        assert!(events.len() <= limit);
        if events.is_empty() {
            return out;
        }
        out.extend(events.iter().cloned());
        h = page["next"]["height"].as_u64().unwrap();
        i = page["next"]["index"].as_u64().unwrap();
    }
}

fn key(e: &Value) -> (u64, u64) {
    (e["height"].as_u64().unwrap(), e["index"].as_u64().unwrap())
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(n: &Node, query: &str) -> Ws {
    let url = format!(
        "{}/v1/events/stream{query}",
        n.base.replace("http://", "ws://")
    );
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

/// Reads events until `until` holds for the last one (or panics after 5 s).
async fn read_until(ws: &mut Ws, mut until: impl FnMut(&Value) -> bool) -> Vec<Value> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("events arrive in time")
            .expect("the stream stays open")
            .unwrap();
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(&t).unwrap();
            assert!(v.get("error").is_none(), "{v}");
            let done = until(&v);
            got.push(v);
            if done {
                return got;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_and_stream_agree_without_gaps_or_repeats() {
    let mut alice = Actor::from_seed(1);
    let mut bob = Actor::from_seed(2);
    let n = Node::start(&[alice.addr, bob.addr], Duration::from_millis(15)).await;

    // Some history: several blocks with transactions.
    let mut hashes = Vec::new();
    for i in 0..4 {
        let tx = if i % 2 == 0 {
            send(&mut alice, &bob)
        } else {
            send(&mut bob, &alice)
        };
        let (s, v) = n.submit(&tx, "?wait=commit").await;
        assert_eq!(s, 200, "{v}");
        hashes.push(v["hash"].as_str().unwrap().to_string());
    }
    let stored = all_events(&n, 1000).await;
    assert!(stored.len() >= 8, "fee and transfer events of 4 txs");
    for limit in [1, 3, 7] {
        assert_eq!(all_events(&n, limit).await, stored, "limit {limit}");
    }
    // Strictly increasing positions: no repeats, and each tx's events carry its hash.
    assert!(stored.windows(2).all(|w| key(&w[0]) < key(&w[1])));
    for h in &hashes {
        assert!(stored.iter().any(|e| e["tx_hash"] == h.as_str()));
    }

    // The stream from height 1 replays the history, then follows new blocks.
    let mut ws = connect(&n, "?from_height=1").await;
    let last_stored = key(stored.last().unwrap());
    let replay = read_until(&mut ws, |e| key(e) == last_stored).await;
    assert_eq!(replay, stored);
    let tx = send(&mut alice, &bob);
    let new_hash = hex::encode(kumo_types::tx::tx_hash(&tx));
    let (s, _) = n.submit(&tx, "").await;
    assert_eq!(s, 202);
    let live = read_until(&mut ws, |e| {
        e["tx_hash"] == new_hash.as_str() && e["event"]["type"] == "Transfer"
    })
    .await;
    assert!(live.iter().all(|e| key(e) > last_stored));
    let everything = all_events(&n, 1000).await;
    let mut streamed = replay.clone();
    streamed.extend(live.iter().cloned());
    assert_eq!(streamed, everything[..streamed.len()].to_vec());

    // Resuming from the middle: from that height, skipping what was already seen.
    let mid = key(&stored[stored.len() / 2]);
    let mut again = connect(&n, &format!("?from_height={}", mid.0)).await;
    let until = key(streamed.last().unwrap());
    let resumed = read_until(&mut again, |e| key(e) == until).await;
    let expected: Vec<Value> = streamed
        .iter()
        .filter(|e| key(e).0 >= mid.0)
        .cloned()
        .collect();
    assert_eq!(resumed, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_without_from_height_sends_only_new_events() {
    let mut alice = Actor::from_seed(1);
    let bob = Actor::from_seed(2);
    let n = Node::start(&[alice.addr], Duration::from_millis(15)).await;
    let old = send(&mut alice, &bob);
    assert_eq!(n.submit(&old, "?wait=commit").await.0, 200);
    let mut ws = connect(&n, "").await;
    // Let the connection settle past the block that held `old`.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let tx = send(&mut alice, &bob);
    let hash = hex::encode(kumo_types::tx::tx_hash(&tx));
    assert_eq!(n.submit(&tx, "").await.0, 202);
    let got = read_until(&mut ws, |e| {
        e["tx_hash"] == hash.as_str() && e["event"]["type"] == "Transfer"
    })
    .await;
    let old_hash = hex::encode(kumo_types::tx::tx_hash(&old));
    assert!(got.iter().all(|e| e["tx_hash"] != old_hash.as_str()));
}
