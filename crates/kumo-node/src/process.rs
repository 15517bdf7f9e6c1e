//! Running a node (validator or follower) as a real process: commonware's tokio runtime,
//! storage in a directory, and authenticated, encrypted p2p over TCP
//! (`commonware_p2p::authenticated::lookup`: every peer's key and address are known up front).
//!
//! The peer list names every node of the network, followers included, and says which of them
//! are validators: all of them may connect, only the validators vote. A node accepts connections
//! only from peers on its list, so a new follower must be added to the validators' lists.
//!
//! [`run`] blocks until the node stops; [`spawn_node`] starts one node inside an already running
//! runtime (several can share one runtime, each with its own port and storage prefix, as the
//! loopback test does).

use std::{net::SocketAddr, time::Duration};

use commonware_cryptography::{ChaCha20Poly1305, Signer as _, ed25519};
use commonware_p2p::{Address, AddressableManager as _, authenticated::lookup};
use commonware_runtime::{Handle, Quota, Spawner as _, Supervisor as _, tokio};
use commonware_stream::{
    cups::{self, Cups},
    sake::{self, Sake},
};
use commonware_utils::{NZU32, NZUsize, ordered::Map};

use crate::{
    Digest, Membership, Node, NodeConfig, Role,
    engine::{self, StartError, channel},
};

/// One node of the network, as the others know it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// Its p2p identity (a validator's is also its consensus key).
    pub key: ed25519::PublicKey,
    /// Where it listens.
    pub address: SocketAddr,
    /// Whether it votes.
    pub validator: bool,
}

/// A node process's configuration.
#[derive(Clone)]
pub struct ProcessConfig {
    /// Validator or follower, with this node's key.
    pub role: Role,
    /// Where to listen for peers.
    pub listen: SocketAddr,
    /// Every node of the network (this one may be listed too): the validators, which must
    /// include this node if it is one, and the followers allowed to connect.
    pub peers: Vec<Peer>,
    /// Allow peers on private and loopback addresses (devnets and tests).
    pub allow_private_ips: bool,
    /// Genesis, block time, pool, sink, storage partition prefix.
    pub node: NodeConfig,
}

/// Why a node process could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The consensus engine refused the configuration.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The genesis is invalid.
    #[error("genesis: {0}")]
    Genesis(#[from] kumo_chain::genesis::GenesisError),
    /// The peer list repeats a key.
    #[error("the peer list names a key twice: each node appears once")]
    DuplicatePeer,
    /// The p2p address cannot be listened on.
    #[error(
        "cannot listen for peers on {address}: {error} (another program, or another node, has this port: stop it or set a different p2p listen address)"
    )]
    Listen {
        /// The configured p2p address.
        address: SocketAddr,
        /// Why.
        error: std::io::Error,
    },
    /// The engine task ended abnormally.
    #[error("the node stopped: {0}")]
    Stopped(String),
}

/// Messages per second each peer may send on each channel.
const QUOTA: Quota = Quota::per_second(NZU32!(10_000));

/// Starts a node in a running tokio runtime. Returns its [`Node`] handle at once (queries and
/// submissions work once the node has loaded its state) and the task running it.
pub fn spawn_node(
    context: &tokio::Context,
    config: ProcessConfig,
) -> Result<(Node, Handle<Result<(), StartError>>), RunError> {
    // The p2p network binds its listener in a task of its own, where a taken port is a panic
    // with a backtrace: try it here first, so the common case is a clear error.
    std::net::TcpListener::bind(config.listen).map_err(|error| RunError::Listen {
        address: config.listen,
        error,
    })?;
    let key = config.role.key().clone();
    let peers: Map<ed25519::PublicKey, Address> = config
        .peers
        .iter()
        .map(|p| (p.key.clone(), Address::from(p.address)))
        .collect::<Vec<_>>()
        .try_into()
        .map_err(|_| RunError::DuplicatePeer)?;
    let validators: Vec<_> = config
        .peers
        .iter()
        .filter(|p| p.validator)
        .map(|p| p.key.clone())
        .collect();
    let genesis_block = engine::genesis_block::<tokio::Context>(&config.node.genesis, &validators);
    let genesis_digest: Digest = commonware_cryptography::Digestible::digest(&genesis_block);
    let node = Node::new(config.node.clone(), genesis_digest)?;
    let namespace = engine::namespace(&config.node.genesis.chain_id);
    let max_message = engine::max_message_size(&config.node.limits, validators.len());
    let membership = Membership {
        role: config.role.clone(),
        validators,
    };
    let handshake = Cups::<_, ChaCha20Poly1305>::new(
        Sake {
            signer: key.clone(),
            synchrony_bound: Duration::from_secs(5),
            max_handshake_age: Duration::from_secs(10),
            version: sake::Version::V1,
        },
        cups::Version::V1,
    );
    let make = if config.allow_private_ips {
        lookup::Config::local
    } else {
        lookup::Config::recommended
    };
    let p2p = make(
        handshake,
        &namespace,
        config.listen,
        NZUsize!(config.peers.len().max(1)),
        max_message,
        NZUsize!(1024),
    );
    let kind = if config.role.is_validator() {
        "validator"
    } else {
        "follower"
    };
    let name = format!("{kind}-{}", key.public_key());
    let handle = context.child(kind).spawn({
        let node = node.clone();
        move |ctx| async move {
            let (mut network, mut oracle) = lookup::Network::new(ctx.child("network"), p2p);
            // Every node may connect (the followers too); only `membership.validators` vote.
            oracle.track(0, peers);
            let channels = channel::ALL
                .iter()
                .map(|ch| network.register(*ch, QUOTA))
                .collect();
            network.start();
            tracing::info!(%name, "p2p started");
            let net = engine::Network::from_channels(oracle.clone(), oracle, channels);
            engine::run(ctx, node, membership, net).await
        }
    });
    Ok((node, handle))
}
