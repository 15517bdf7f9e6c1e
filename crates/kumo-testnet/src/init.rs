//! `kumo testnet init`: the homes of a local network of validators and followers.
//!
//! ```text
//! DIR/node0 … DIR/node{N-1}   one `kumo node run` home per validator (config.toml lists every
//!                             peer, followers as `role = "follower"`)
//! DIR/follower0 …             one home per follower (role = "follower"; not in the genesis
//!                             validator set; lists every validator)
//! DIR/keys/                   funded accounts' keys, `test` keyring backend (unencrypted)
//! DIR/testnet.json            the network: chain id, each node's API URL, p2p address and key,
//!                             the funded accounts
//! ```
//!
//! Every home has the same `genesis.json`. Ports: node `i` (validators first, then followers)
//! listens for peers on `base_port + 2i` and serves the API on `base_port + 2i + 1`; base port
//! 0 asks the system for free ports instead (tests and benchmarks).
//!
//! `testnet.json`:
//!
//! ```json
//! {
//!   "chain_id": "kumo-testnet-1",
//!   "block_time": "250ms",
//!   "nodes": [{ "moniker": "node0", "home": "node0", "role": "validator",
//!               "api": "http://127.0.0.1:26657", "p2p": "127.0.0.1:26656", "public_key": "…" }],
//!   "accounts": [{ "name": "faucet", "address": "kumo1…", "coins": "1000000000000ukumo,1000000000000uusd" }],
//!   "keyring_dir": "keys"
//! }
//! ```

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use commonware_cryptography::Signer as _;
use kumo_chain::{Genesis, genesis::GenesisBalance};
use kumo_keystore::{Backend, Keystore};
use kumo_node::home::{
    self, GenesisValidator, Home, HomeError, NodeFileConfig, NodeGenesis, NodeRole, PeerEntry,
};
use kumo_types::{Address, Coins};
use serde::{Deserialize, Serialize};

/// The manifest's file name in a testnet directory.
pub const MANIFEST_FILE: &str = "testnet.json";
/// The keyring directory's name in a testnet directory.
pub const KEYS_DIR: &str = "keys";
/// Default chain id of a testnet.
pub const DEFAULT_CHAIN_ID: &str = "kumo-testnet-1";
/// What the `faucet` account gets when no `--fund` is given.
pub const DEFAULT_FAUCET_COINS: &str = "1000000000000000ukumo,1000000000000000uusd";

/// What to build.
#[derive(Debug, Clone)]
pub struct TestnetSpec {
    /// Number of validators (at least 1).
    pub validators: usize,
    /// Number of followers (full nodes that do not vote).
    pub followers: usize,
    /// The testnet directory.
    pub dir: PathBuf,
    /// Block time of every node.
    pub block_time: Duration,
    /// Most transactions and most bytes of transactions in a proposed block (`[consensus]`
    /// `max_block_txs`, `max_block_bytes`).
    pub max_block_txs: usize,
    /// See `max_block_txs`.
    pub max_block_bytes: usize,
    /// First port (see the module docs); 0: free ports chosen by the system.
    pub base_port: u16,
    /// The chain id.
    pub chain_id: String,
    /// Accounts to create in the keyring and fund: (key name, coins).
    pub fund: Vec<(String, Coins)>,
    /// Further funded addresses, without keys in the keyring (benchmarks sign in memory).
    pub balances: Vec<GenesisBalance>,
    /// Overwrite an existing testnet directory's files.
    pub force: bool,
}

impl TestnetSpec {
    /// `validators` nodes in `dir`, 250 ms blocks, ports from 26656, a funded `faucet`.
    pub fn new(validators: usize, dir: impl Into<PathBuf>) -> TestnetSpec {
        TestnetSpec {
            validators,
            followers: 0,
            dir: dir.into(),
            block_time: Duration::from_millis(250),
            max_block_txs: home::ConsensusSection::default().max_block_txs,
            max_block_bytes: home::ConsensusSection::default().max_block_bytes,
            base_port: home::DEFAULT_P2P_PORT,
            chain_id: DEFAULT_CHAIN_ID.into(),
            fund: vec![(
                "faucet".into(),
                DEFAULT_FAUCET_COINS.parse().expect("valid coins"),
            )],
            balances: Vec::new(),
            force: false,
        }
    }
}

/// How often a provider proves it is alive on a local network, and how long it may be silent
/// before its leases close: short, so failover can be tried on one machine in seconds.
pub const LOCAL_HEARTBEAT: Duration = Duration::from_millis(2500);
/// See [`LOCAL_HEARTBEAT`].
pub const LOCAL_SILENCE: Duration = Duration::from_secs(20);

/// The chain parameters of a local network with this block time: the defaults, with the
/// liveness interval and window of [`LOCAL_HEARTBEAT`] and [`LOCAL_SILENCE`] in blocks.
pub fn local_params(block_time: Duration) -> kumo_chain::Params {
    let blocks = |d: Duration| (d.as_millis() / block_time.as_millis().max(1)).max(1) as u64;
    let liveness_interval = blocks(LOCAL_HEARTBEAT);
    kumo_chain::Params {
        liveness_interval,
        liveness_window: blocks(LOCAL_SILENCE).max(2 * liveness_interval),
        ..Default::default()
    }
}

/// One node in `testnet.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestnetNode {
    /// Its name.
    pub moniker: String,
    /// Its home, relative to the testnet directory.
    pub home: PathBuf,
    /// Validator or follower.
    #[serde(default)]
    pub role: NodeRole,
    /// Its API base URL.
    pub api: String,
    /// Where it listens for peers.
    pub p2p: SocketAddr,
    /// Its key (64 hex digits): a validator's consensus key, a follower's p2p identity.
    pub public_key: String,
}

/// A funded account in `testnet.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestnetAccount {
    /// Its key's name in the keyring.
    pub name: String,
    /// Its address.
    pub address: Address,
    /// Its genesis balance.
    pub coins: String,
}

/// `testnet.json`: what was built.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Testnet {
    /// The chain id.
    pub chain_id: String,
    /// Block time of every node.
    pub block_time: String,
    /// The nodes.
    pub nodes: Vec<TestnetNode>,
    /// Accounts with keys in the keyring.
    pub accounts: Vec<TestnetAccount>,
    /// The keyring (`test` backend), relative to the testnet directory.
    pub keyring_dir: PathBuf,
}

impl Testnet {
    /// Reads `DIR/testnet.json`.
    pub fn load(dir: &Path) -> Result<Testnet, TestnetError> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(|error| TestnetError::Io {
            path: path.clone(),
            error,
        })?;
        serde_json::from_str(&text).map_err(|e| TestnetError::Manifest {
            path,
            problem: e.to_string(),
        })
    }
}

/// Why a testnet could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TestnetError {
    /// Nonsense sizes or ports.
    #[error("{0}")]
    Spec(String),
    /// The directory already holds a testnet.
    #[error("{0} already exists: pick another --dir, or pass --force to overwrite it")]
    Exists(PathBuf),
    /// A file could not be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// `testnet.json` is unreadable.
    #[error("{path}: {problem}")]
    Manifest {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A home could not be written.
    #[error(transparent)]
    Home(#[from] HomeError),
    /// A key could not be stored.
    #[error(transparent)]
    Keystore(#[from] kumo_keystore::KeystoreError),
}

/// A free loopback port for a node (see [`crate::ports`]).
fn free_port() -> Result<u16, TestnetError> {
    crate::ports::free_port().map_err(|error| TestnetError::Io {
        path: PathBuf::from("127.0.0.1:0"),
        error,
    })
}

/// Builds the testnet (see the module docs) and writes `testnet.json`.
pub fn init(spec: &TestnetSpec) -> Result<Testnet, TestnetError> {
    let v = spec.validators;
    if v == 0 || v > 100 {
        return Err(TestnetError::Spec(format!(
            "--validators {v}: a testnet has 1 to 100 validators"
        )));
    }
    if spec.followers > 100 {
        return Err(TestnetError::Spec(format!(
            "--followers {}: a testnet has at most 100 followers",
            spec.followers
        )));
    }
    // Every node, validators first.
    let n = v + spec.followers;
    if spec.base_port != 0 && usize::from(spec.base_port) + 2 * n > usize::from(u16::MAX) {
        return Err(TestnetError::Spec(format!(
            "--base-port {}: {n} nodes need ports up to {}, past 65535",
            spec.base_port,
            usize::from(spec.base_port) + 2 * n - 1
        )));
    }
    let manifest = spec.dir.join(MANIFEST_FILE);
    if manifest.exists() && !spec.force {
        return Err(TestnetError::Exists(manifest));
    }
    let keys_dir = spec.dir.join(KEYS_DIR);
    if spec.force && keys_dir.exists() {
        std::fs::remove_dir_all(&keys_dir).map_err(|error| TestnetError::Io {
            path: keys_dir.clone(),
            error,
        })?;
    }

    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut ports = Vec::with_capacity(n);
    for i in 0..n {
        ports.push(if spec.base_port == 0 {
            (free_port()?, free_port()?)
        } else {
            let p2p = spec.base_port + 2 * i as u16;
            (p2p, p2p + 1)
        });
    }
    let keys: Vec<_> = (0..n).map(|_| home::generate_key()).collect();
    let role = |i: usize| {
        if i < v {
            NodeRole::Validator
        } else {
            NodeRole::Follower
        }
    };
    let monikers: Vec<String> = (0..n)
        .map(|i| match role(i) {
            NodeRole::Validator => format!("node{i}"),
            NodeRole::Follower => format!("follower{}", i - v),
        })
        .collect();

    let keystore = Keystore::open(&keys_dir, Backend::Test)?;
    let mut accounts = Vec::new();
    let mut balances = Vec::new();
    for (name, coins) in &spec.fund {
        let info = keystore.add(name)?;
        accounts.push(TestnetAccount {
            name: name.clone(),
            address: info.address,
            coins: coins.to_string(),
        });
        balances.push(GenesisBalance {
            address: info.address,
            coins: coins.clone(),
        });
    }
    balances.extend(spec.balances.iter().cloned());
    let genesis = NodeGenesis {
        validators: keys[..v]
            .iter()
            .zip(&monikers)
            .map(|(k, m)| GenesisValidator {
                moniker: m.clone(),
                public_key: k.public_key(),
            })
            .collect(),
        chain: Genesis {
            chain_id: spec.chain_id.clone(),
            initial_height: 0,
            params: local_params(spec.block_time),
            balances,
        },
    };
    genesis.validate().map_err(|problem| HomeError::Genesis {
        path: spec.dir.join("node0").join(home::GENESIS_FILE),
        problem,
    })?;

    let mut nodes = Vec::with_capacity(n);
    for i in 0..n {
        let mut config = NodeFileConfig::new(monikers[i].clone());
        config.role = role(i);
        config.api.listen = SocketAddr::new(localhost, ports[i].1);
        config.p2p.listen = SocketAddr::new(localhost, ports[i].0);
        config.p2p.allow_private_ips = true;
        config.consensus.block_time = spec.block_time;
        config.consensus.max_block_txs = spec.max_block_txs;
        config.consensus.max_block_bytes = spec.max_block_bytes;
        // A validator lists every other node (followers may connect only if listed); a
        // follower lists the validators (followers do not talk to each other).
        config.p2p.peers = (0..n)
            .filter(|j| {
                *j != i && (role(i) == NodeRole::Validator || role(*j) == NodeRole::Validator)
            })
            .map(|j| PeerEntry {
                moniker: monikers[j].clone(),
                public_key: keys[j].public_key(),
                address: SocketAddr::new(localhost, ports[j].0),
                role: role(j),
            })
            .collect();
        let rel = PathBuf::from(&monikers[i]);
        Home {
            dir: spec.dir.join(&rel),
            config,
            key: keys[i].clone(),
            genesis: genesis.clone(),
        }
        .write(spec.force)?;
        nodes.push(TestnetNode {
            moniker: monikers[i].clone(),
            home: rel,
            role: role(i),
            api: format!("http://{}", SocketAddr::new(localhost, ports[i].1)),
            p2p: SocketAddr::new(localhost, ports[i].0),
            public_key: home::key_to_hex(&keys[i].public_key()),
        });
    }
    let testnet = Testnet {
        chain_id: spec.chain_id.clone(),
        block_time: home::format_duration(spec.block_time),
        nodes,
        accounts,
        keyring_dir: PathBuf::from(KEYS_DIR),
    };
    let text = serde_json::to_string_pretty(&testnet).expect("manifest serializes") + "\n";
    std::fs::write(&manifest, text).map_err(|error| TestnetError::Io {
        path: manifest,
        error,
    })?;
    Ok(testnet)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_homes_that_load_and_name_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = TestnetSpec::new(3, dir.path());
        spec.base_port = 31000;
        let t = init(&spec).unwrap();
        assert_eq!(t.nodes.len(), 3);
        assert_eq!(t.nodes[2].api, "http://127.0.0.1:31005");
        let homes: Vec<Home> = t
            .nodes
            .iter()
            .map(|n| Home::load(&dir.path().join(&n.home)).unwrap())
            .collect();
        for h in &homes {
            assert_eq!(h.genesis, homes[0].genesis);
            assert_eq!(h.peers().unwrap().len(), 3);
            assert_eq!(h.config.consensus.block_time, Duration::from_millis(250));
        }
        // The faucet's key is in the keyring and funded in genesis.
        let ks = Keystore::open(dir.path().join(KEYS_DIR), Backend::Test).unwrap();
        let faucet = ks.show("faucet").unwrap();
        assert_eq!(t.accounts[0].address, faucet.address);
        assert!(
            homes[0]
                .genesis
                .chain
                .balances
                .iter()
                .any(|b| b.address == faucet.address)
        );
        assert_eq!(Testnet::load(dir.path()).unwrap(), t);
        // Not twice without --force.
        assert!(matches!(init(&spec), Err(TestnetError::Exists(_))));
        spec.force = true;
        init(&spec).unwrap();
    }

    /// Followers: listed in testnet.json with their role, not validators in genesis, on every
    /// validator's peer list as followers (what `lookup` p2p needs to let them connect), and
    /// their homes load as followers of every validator.
    #[test]
    fn followers_are_listed_and_let_in_by_every_validator() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = TestnetSpec::new(3, dir.path());
        spec.followers = 2;
        spec.base_port = 32000;
        let t = init(&spec).unwrap();
        let roles: Vec<NodeRole> = t.nodes.iter().map(|n| n.role).collect();
        use NodeRole::{Follower as F, Validator as V};
        assert_eq!(roles, [V, V, V, F, F]);
        assert_eq!(t.nodes[4].moniker, "follower1");
        assert_eq!(t.nodes[4].api, "http://127.0.0.1:32009");
        let manifest = std::fs::read_to_string(dir.path().join(MANIFEST_FILE)).unwrap();
        assert!(manifest.contains("\"role\": \"follower\""), "{manifest}");
        let homes: Vec<Home> = t
            .nodes
            .iter()
            .map(|n| Home::load(&dir.path().join(&n.home)).unwrap())
            .collect();
        assert_eq!(homes[0].genesis.validators.len(), 3);
        for (h, node) in homes.iter().zip(&t.nodes) {
            assert_eq!(h.config.role, node.role);
            let peers = h.peers().unwrap();
            assert_eq!(peers.iter().filter(|p| p.validator).count(), 3);
            let followers: Vec<String> = peers
                .iter()
                .filter(|p| !p.validator)
                .map(|p| home::key_to_hex(&p.key))
                .collect();
            match node.role {
                // Every follower, as a non-validator peer.
                V => assert_eq!(
                    followers,
                    [&*t.nodes[3].public_key, &*t.nodes[4].public_key]
                ),
                // Itself only.
                F => assert_eq!(followers, [&*node.public_key]),
            }
        }
    }

    #[test]
    fn refuses_nonsense() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = TestnetSpec::new(0, dir.path());
        assert!(init(&spec).unwrap_err().to_string().contains("1 to 100"));
        spec.validators = 1;
        spec.followers = 101;
        assert!(init(&spec).unwrap_err().to_string().contains("at most 100"));
        spec.followers = 0;
        spec.validators = 4;
        spec.base_port = 65530;
        assert!(init(&spec).unwrap_err().to_string().contains("past 65535"));
    }
}
