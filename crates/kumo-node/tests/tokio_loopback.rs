//! Four validators and a follower in one process on the tokio runtime, talking authenticated,
//! encrypted p2p over loopback TCP: they finalize blocks at a 250 ms block time, and a
//! transaction submitted to the follower (before it is even connected) gets committed.

use std::{
    collections::BTreeMap,
    net::{SocketAddr, TcpListener},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use commonware_cryptography::{Signer as _, ed25519};
use commonware_runtime::{Clock as _, Runner as _, tokio};
use kumo_chain::{
    Genesis,
    genesis::GenesisBalance,
    testkit::{Actor, CHAIN_ID, FEE},
};
use kumo_node::{
    BlockSink, FinalizedBlock, NodeConfig, Role,
    process::{Peer, ProcessConfig, spawn_node},
};
use kumo_types::Msg;

/// A finalized block's digest and the hashes of the transactions it committed.
type Seen = ([u8; 32], Vec<[u8; 32]>);

#[derive(Default)]
struct Blocks(Mutex<BTreeMap<u64, Seen>>);

impl BlockSink for Blocks {
    fn finalized(&self, b: &FinalizedBlock, _: usize) {
        let committed = b.results().iter().flatten().map(|r| r.hash).collect();
        self.0
            .lock()
            .unwrap()
            .insert(b.height, (b.digest, committed));
    }
}

fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

#[test]
fn validators_and_a_follower_over_loopback_tcp_finalize_blocks() {
    let dir = std::env::temp_dir().join(format!("kumo-node-loopback-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let runner = tokio::Runner::new(tokio::Config::new().with_storage_directory(dir.clone()));
    runner.start(|ctx| async move {
        // Nodes 0..4 are validators, node 4 follows.
        const NODES: usize = 5;
        const FOLLOWER: usize = 4;
        let keys: Vec<_> = (0..NODES as u64)
            .map(|i| ed25519::PrivateKey::from_seed(100 + i))
            .collect();
        let addrs: Vec<_> = (0..NODES).map(|_| free_port()).collect();
        let peers: Vec<_> = (0..NODES)
            .map(|i| Peer {
                key: keys[i].public_key(),
                address: addrs[i],
                validator: i != FOLLOWER,
            })
            .collect();
        let mut alice = Actor::from_seed(1);
        let bob = Actor::from_seed(2);
        let genesis = Genesis {
            chain_id: CHAIN_ID.into(),
            initial_height: 0,
            params: Default::default(),
            balances: vec![GenesisBalance {
                address: alice.addr,
                coins: "1000000000ukumo".parse().unwrap(),
            }],
        };
        let sinks: Vec<_> = (0..NODES).map(|_| Arc::new(Blocks::default())).collect();
        let mut nodes = Vec::new();
        let mut handles = Vec::new();
        for i in 0..NODES {
            let mut node = NodeConfig::new(genesis.clone(), format!("loopback-{i}"));
            node.block_time = Duration::from_millis(250);
            node.sink = sinks[i].clone();
            let role = if i == FOLLOWER {
                Role::Follower(keys[i].clone())
            } else {
                Role::Validator(keys[i].clone())
            };
            let (n, h) = spawn_node(
                &ctx,
                ProcessConfig {
                    role,
                    listen: addrs[i],
                    peers: peers.clone(),
                    allow_private_ips: true,
                    node,
                },
            )
            .unwrap();
            nodes.push(n);
            handles.push(h);
        }

        // Submitted at once, before any connection: the follower keeps it and sends it to the
        // validators again until a finalized block carries it.
        let tx = alice.sign(
            FEE,
            vec![Msg::Send {
                to: bob.addr,
                amount: "42ukumo".parse().unwrap(),
            }],
        );
        let hash = nodes[FOLLOWER].submit(tx).unwrap();
        let started = Instant::now();
        let height = |i: usize| {
            sinks[i]
                .0
                .lock()
                .unwrap()
                .keys()
                .last()
                .copied()
                .unwrap_or(0)
        };
        let committed = |i: usize| {
            sinks[i]
                .0
                .lock()
                .unwrap()
                .values()
                .any(|(_, c)| c.contains(&hash))
        };
        while (0..NODES).any(|i| !committed(i) || height(i) < 6) {
            assert!(
                started.elapsed() < Duration::from_secs(90),
                "tx not committed over TCP: heights {:?}, committed {:?}",
                (0..NODES).map(height).collect::<Vec<_>>(),
                (0..NODES).map(committed).collect::<Vec<_>>(),
            );
            ctx.sleep(Duration::from_millis(100)).await;
        }
        let first = sinks[0].0.lock().unwrap().clone();
        for s in &sinks[1..] {
            let other = s.0.lock().unwrap();
            for h in 1..=6 {
                assert_eq!(first[&h].0, other[&h].0, "nodes disagree at height {h}");
            }
        }
        for h in handles {
            h.abort();
        }
    });
    let _ = std::fs::remove_dir_all(&dir);
}
