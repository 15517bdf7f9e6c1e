//! A network of kumo validators (and followers) on commonware's deterministic runtime and
//! simulated p2p network: start, crash, restart, partition and heal nodes, submit transactions,
//! and read what every node finalized. Everything is reproducible from the runtime's seed.

#![allow(dead_code)]

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use commonware_cryptography::{Signer as _, ed25519};
use commonware_p2p::{
    Manager as _, Recipients,
    simulated::{self, Link, Oracle, SplitOrigin, SplitTarget},
};
use commonware_runtime::IoBuf;
use commonware_runtime::{Clock as _, Handle, Quota, Spawner as _, Supervisor as _, deterministic};
use commonware_utils::{NZU32, NZUsize, TryCollect as _, ordered::Set};
use kumo_chain::{
    Genesis,
    genesis::GenesisBalance,
    testkit::{Actor, CHAIN_ID, FEE},
};
use kumo_node::{
    BlockSink, FinalizedBlock, Membership, Node, NodeConfig, Role,
    engine::{self, Network, channel},
};
use kumo_types::Msg;
use std::sync::atomic::{AtomicUsize, Ordering};

/// What one node finalized, by chain height: digest, state root, tx count.
#[derive(Default)]
pub(crate) struct Recorder {
    pub(crate) blocks: Mutex<BTreeMap<u64, FinalizedBlock>>,
}

impl BlockSink for Recorder {
    fn finalized(&self, block: &FinalizedBlock, _: usize) {
        let mut blocks = self.blocks.lock().unwrap();
        if let Some(seen) = blocks.get(&block.height) {
            // A restart may hand a block over again: it must be the same block.
            assert_eq!(
                seen.digest, block.digest,
                "a node finalized two blocks at height {}",
                block.height
            );
            assert_eq!(seen.state_root, block.state_root);
            return;
        }
        if let Some((h, _)) = blocks.last_key_value() {
            assert_eq!(*h + 1, block.height, "blocks must arrive in height order");
        }
        blocks.insert(block.height, block.clone());
    }
}

impl Recorder {
    pub(crate) fn height(&self) -> u64 {
        self.blocks
            .lock()
            .unwrap()
            .last_key_value()
            .map_or(0, |(h, _)| *h)
    }

    pub(crate) fn at(&self, height: u64) -> Option<([u8; 32], [u8; 32])> {
        self.blocks
            .lock()
            .unwrap()
            .get(&height)
            .map(|b| (b.digest, b.state_root))
    }

    /// Hashes of the transactions committed (included with `Ok`) so far.
    pub(crate) fn committed(&self) -> Vec<[u8; 32]> {
        self.blocks
            .lock()
            .unwrap()
            .values()
            .flat_map(|b| {
                b.results()
                    .iter()
                    .filter_map(|r| r.as_ref().ok().map(|r| r.hash))
            })
            .collect()
    }
}

pub(crate) struct Running {
    pub(crate) node: Node,
    pub(crate) handle: Handle<Result<(), engine::StartError>>,
}

/// A simulated network of validators and followers. Node `i` is a validator if
/// `i < validators`, a follower otherwise; every node links to every other.
pub(crate) struct Cluster {
    pub(crate) ctx: deterministic::Context,
    pub(crate) oracle: Oracle<ed25519::PublicKey, deterministic::Context>,
    /// Every node's key, validators first.
    pub(crate) keys: Vec<ed25519::PrivateKey>,
    /// How many of `keys` are validators.
    pub(crate) validators: usize,
    pub(crate) genesis: Genesis,
    pub(crate) block_time: Duration,
    pub(crate) link: Link,
    pub(crate) recorders: Vec<Arc<Recorder>>,
    pub(crate) running: Vec<Option<Running>>,
    restarts: Vec<u32>,
    /// Byzantine twins (see [`Cluster::start_twins`]): node, recorder, blocks it broadcast.
    pub(crate) twins: Vec<Twin>,
}

/// One of the two nodes of a Byzantine validator: its node, recorder, how many blocks it
/// broadcast, and its task.
pub(crate) type Twin = (
    Node,
    Arc<Recorder>,
    Arc<AtomicUsize>,
    Handle<Result<(), engine::StartError>>,
);

/// Sends a twin's messages only to its half of the network (and counts its block broadcasts).
fn forwarder(
    primary: Vec<ed25519::PublicKey>,
    secondary: Vec<ed25519::PublicKey>,
    counts: Option<(Arc<AtomicUsize>, Arc<AtomicUsize>)>,
) -> impl Fn(
    SplitOrigin,
    &Recipients<ed25519::PublicKey>,
    &IoBuf,
) -> Option<Recipients<ed25519::PublicKey>>
+ Send
+ Sync
+ Clone
+ 'static {
    move |origin, recipients, _| {
        let half = match origin {
            SplitOrigin::Primary => &primary,
            SplitOrigin::Secondary => &secondary,
        };
        if let Some((p, s)) = &counts {
            match origin {
                SplitOrigin::Primary => p.fetch_add(1, Ordering::Relaxed),
                SplitOrigin::Secondary => s.fetch_add(1, Ordering::Relaxed),
            };
        }
        let to: Vec<_> = match recipients {
            Recipients::All => half.clone(),
            Recipients::One(p) => half.iter().filter(|h| *h == p).cloned().collect(),
            Recipients::Some(ps) => half.iter().filter(|h| ps.contains(h)).cloned().collect(),
        };
        (!to.is_empty()).then_some(Recipients::Some(to))
    }
}

pub(crate) const QUOTA: Quota = Quota::per_second(NZU32!(10_000));

/// Accounts funded at genesis: seeds 1..=accounts.
pub(crate) fn genesis(accounts: u8) -> Genesis {
    Genesis {
        chain_id: CHAIN_ID.into(),
        initial_height: 0,
        params: Default::default(),
        balances: (1..=accounts)
            .map(|s| GenesisBalance {
                address: Actor::from_seed(s).addr,
                coins: "1000000000ukumo".parse().unwrap(),
            })
            .collect(),
    }
}

/// A link; `success_pct` of the messages arrive.
pub(crate) fn link(latency_ms: u64, jitter_ms: u64, success_pct: u64) -> Link {
    Link {
        latency: Duration::from_millis(latency_ms),
        jitter: Duration::from_millis(jitter_ms),
        success_rate: commonware_utils::probability!(success_pct, 100),
    }
}

/// A signed `Send` of `amount` ukumo.
pub(crate) fn send(from: &mut Actor, to: &Actor, amount: u128) -> Vec<u8> {
    from.sign(
        FEE,
        vec![Msg::Send {
            to: to.addr,
            amount: format!("{amount}ukumo").parse().unwrap(),
        }],
    )
}

impl Cluster {
    /// `n` validators with keys from seeds 0..n, fully linked with `link`; none started.
    pub(crate) async fn new(
        ctx: &deterministic::Context,
        n: usize,
        link: Link,
        block_time: Duration,
    ) -> Cluster {
        Cluster::with_followers(ctx, n, 0, link, block_time).await
    }

    /// `validators` validators (seeds 0..validators) and `followers` followers (the next
    /// seeds), all in the p2p peer set and fully linked with `link`; none started.
    pub(crate) async fn with_followers(
        ctx: &deterministic::Context,
        validators: usize,
        followers: usize,
        link: Link,
        block_time: Duration,
    ) -> Cluster {
        let n = validators + followers;
        let keys: Vec<_> = (0..n as u64).map(ed25519::PrivateKey::from_seed).collect();
        let genesis = genesis(4);
        let ctx = ctx.child("cluster");
        let (network, oracle) = simulated::Network::new(
            ctx.child("network"),
            simulated::Config {
                max_size: engine::max_message_size(&Default::default(), validators),
                max_peers_per_set: NZUsize!(n),
                disconnect_on_block: true,
                tracked_peer_sets: NZUsize!(1),
            },
        );
        network.start();
        let set: Set<ed25519::PublicKey> =
            keys.iter().map(|k| k.public_key()).try_collect().unwrap();
        let _ = oracle.manager().track(0, set);
        let cluster = Cluster {
            ctx,
            oracle,
            keys,
            validators,
            genesis,
            block_time,
            link,
            recorders: (0..n).map(|_| Arc::new(Recorder::default())).collect(),
            running: (0..n).map(|_| None).collect(),
            restarts: vec![0; n],
            twins: Vec::new(),
        };
        for i in 0..n {
            for j in 0..n {
                if i != j {
                    cluster.connect(i, j).await;
                }
            }
        }
        cluster
    }

    pub(crate) fn pk(&self, i: usize) -> ed25519::PublicKey {
        self.keys[i].public_key()
    }

    async fn connect(&self, i: usize, j: usize) {
        self.oracle
            .add_link(self.pk(i), self.pk(j), self.link.clone())
            .await
            .unwrap();
    }

    /// Starts (or restarts, on the same storage) node `i`, validator or follower.
    pub(crate) async fn start(&mut self, i: usize) {
        let pk = self.pk(i);
        let control = self.oracle.control(pk.clone());
        let mut channels = Vec::new();
        for ch in channel::ALL {
            channels.push(control.register(ch, QUOTA).await.unwrap());
        }
        let network = Network::from_channels(self.oracle.manager(), control, channels);
        let kind = if i < self.validators {
            "validator"
        } else {
            "follower"
        };
        let node = self.make_node(&format!("{kind}-{i}"), self.recorders[i].clone());
        let membership = self.membership(i);
        let restart = self.restarts[i];
        self.restarts[i] += 1;
        let handle = self
            .ctx
            .child(kind)
            .with_attribute("index", i)
            .with_attribute("restart", restart)
            .spawn({
                let node = node.clone();
                move |ctx| engine::run(ctx, node, membership, network)
            });
        self.running[i] = Some(Running { node, handle });
    }

    /// Starts validator `i` as two full nodes sharing its key (a Byzantine validator that
    /// equivocates whenever it leads): the primary twin talks only to `primary`, the secondary
    /// only to `secondary`. Each proposes its own blocks and votes for what its half sees.
    pub(crate) async fn start_twins(&mut self, i: usize, primary: &[usize], secondary: &[usize]) {
        let pk = self.pk(i);
        let p: Vec<_> = primary.iter().map(|&j| self.pk(j)).collect();
        let s: Vec<_> = secondary.iter().map(|&j| self.pk(j)).collect();
        let control = self.oracle.control(pk.clone());
        let (mut halves_p, mut halves_s) = (Vec::new(), Vec::new());
        let counts = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        for ch in channel::ALL {
            let (sender, receiver) = control.register(ch, QUOTA).await.unwrap();
            let count = (ch == channel::BLOCKS).then(|| counts.clone());
            let (sp, ss) = sender.split_with(forwarder(p.clone(), s.clone(), count));
            let router = {
                let (p, s) = (p.clone(), s.clone());
                move |(from, _): &(ed25519::PublicKey, IoBuf)| {
                    if p.contains(from) {
                        SplitTarget::Primary
                    } else if s.contains(from) {
                        SplitTarget::Secondary
                    } else {
                        SplitTarget::None
                    }
                }
            };
            let (rp, rs) = receiver.split_with(
                self.ctx.child("split").with_attribute("channel", ch),
                router,
            );
            halves_p.push((sp, rp));
            halves_s.push((ss, rs));
        }
        for (side, channels, count) in [
            ("primary", halves_p, counts.0),
            ("secondary", halves_s, counts.1),
        ] {
            let network = Network::from_channels(self.oracle.manager(), control.clone(), channels);
            let recorder = Arc::new(Recorder::default());
            let node = self.make_node(&format!("validator-{i}-{side}"), recorder.clone());
            let membership = self.membership(i);
            let handle = self.ctx.child("twin").with_attribute("side", side).spawn({
                let node = node.clone();
                move |ctx| engine::run(ctx, node, membership, network)
            });
            self.twins.push((node, recorder, count, handle));
        }
    }

    fn make_node(&self, prefix: &str, recorder: Arc<Recorder>) -> Node {
        let mut config = NodeConfig::new(self.genesis.clone(), prefix);
        config.block_time = self.block_time;
        config.sink = recorder;
        let genesis_digest = {
            use commonware_cryptography::Digestible as _;
            engine::genesis_block::<deterministic::Context>(
                &self.genesis,
                &self.membership(0).validators,
            )
            .digest()
        };
        Node::new(config, genesis_digest).unwrap()
    }

    /// Node `i`'s role, and the validator set (the first `validators` keys).
    pub(crate) fn membership(&self, i: usize) -> Membership {
        let key = self.keys[i].clone();
        Membership {
            role: if i < self.validators {
                Role::Validator(key)
            } else {
                Role::Follower(key)
            },
            validators: self.keys[..self.validators]
                .iter()
                .map(|k| k.public_key())
                .collect(),
        }
    }

    pub(crate) async fn start_all(&mut self) {
        for i in 0..self.keys.len() {
            self.start(i).await;
        }
    }

    /// Stops node `i` at once, as a crash would (its storage stays).
    pub(crate) fn crash(&mut self, i: usize) {
        if let Some(r) = self.running[i].take() {
            r.handle.abort();
        }
    }

    pub(crate) fn node(&self, i: usize) -> &Node {
        &self.running[i].as_ref().expect("node is running").node
    }

    /// Cuts every link to and from node `i`.
    pub(crate) async fn isolate(&self, i: usize) {
        for j in 0..self.keys.len() {
            if i != j {
                let _ = self.oracle.remove_link(self.pk(i), self.pk(j)).await;
                let _ = self.oracle.remove_link(self.pk(j), self.pk(i)).await;
            }
        }
    }

    /// Restores the links of node `i`.
    pub(crate) async fn heal(&self, i: usize) {
        for j in 0..self.keys.len() {
            if i != j {
                self.connect(i, j).await;
                self.connect(j, i).await;
            }
        }
    }

    /// Finalized chain height of node `i`, as its sink saw it.
    pub(crate) fn height(&self, i: usize) -> u64 {
        self.recorders[i].height()
    }

    /// Waits (in simulated time) until `done` holds, panicking after `limit`.
    pub(crate) async fn wait_until(
        &self,
        limit: Duration,
        what: &str,
        mut done: impl FnMut(&Cluster) -> bool,
    ) {
        let start = self.ctx.current();
        while !done(self) {
            let waited = self.ctx.current().duration_since(start).unwrap();
            assert!(
                waited < limit,
                "{what}: not reached after {limit:?}; heights {:?}",
                (0..self.keys.len())
                    .map(|i| self.height(i))
                    .collect::<Vec<_>>()
            );
            self.ctx.sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every height that `nodes` all finalized has the same digest and state root on each.
    /// Returns the highest such height.
    pub(crate) fn assert_agree(&self, nodes: &[usize]) -> u64 {
        let common = nodes.iter().map(|&i| self.height(i)).min().unwrap();
        assert!(common > 0, "no block finalized by all of {nodes:?}");
        for h in 1..=common {
            let first = self.recorders[nodes[0]].at(h).unwrap();
            for &i in &nodes[1..] {
                assert_eq!(
                    self.recorders[i].at(h).unwrap(),
                    first,
                    "nodes {} and {i} disagree at height {h}",
                    nodes[0]
                );
            }
        }
        common
    }

    /// `who`'s ukumo balance in node `i`'s finalized state.
    pub(crate) fn balance(&self, i: usize, who: &Actor) -> u128 {
        self.node(i).with_finalized_state(|store, _| {
            let q = kumo_chain::query::Queries::new(store);
            q.account(&who.addr)
                .value
                .balances
                .as_slice()
                .iter()
                .find(|c| c.denom == "ukumo")
                .map_or(0, |c| c.amount)
        })
    }
}
