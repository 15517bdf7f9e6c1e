//! A node's home directory: what `kumo node init` writes and `kumo node run` reads.
//!
//! ```text
//! DIR/config.toml     settings, every default written out with a comment (NodeFileConfig)
//! DIR/node_key.json   the node's ed25519 key (a validator's consensus key; a follower's p2p
//!                     identity), readable by its owner only (0600)
//! DIR/genesis.json    the chain's genesis and its validator set (NodeGenesis)
//! DIR/data/           consensus storage (consensus/) and the block store (blocks.redb)
//! ```
//!
//! **`genesis.json`** wraps `kumo-chain`'s genesis (`chain`, exactly the format
//! `kumo_chain::Genesis` reads) with the validator set: one ed25519 public key (64 hex digits)
//! per validator, named by a moniker. Every node of a network has the same file.
//!
//! ```json
//! {
//!   "validators": [
//!     { "moniker": "node0", "public_key": "5c0f…64 hex digits…" }
//!   ],
//!   "chain": {
//!     "chain_id": "kumo-devnet-1",
//!     "initial_height": 0,
//!     "params": { … },
//!     "balances": [ { "address": "kumo1…", "coins": [ { "denom": "ukumo", "amount": "1000" } ] } ]
//!   }
//! }
//! ```
//!
//! The genesis block commits to `chain` (its hash); the validator set is checked at startup:
//! a validator's key must be in it, a follower's must not (`role = "follower"` in
//! `config.toml`: a full node that follows the chain without voting), and `[p2p] peers` must
//! give an address to every other validator. Followers a node lets connect are peers with
//! `role = "follower"`: with `lookup` p2p every validator lists every follower.
//!
//! **`node_key.json`**: `{"type": "ed25519", "public_key": "<64 hex>", "secret_key": "<64 hex>"}`,
//! the secret being the 32-byte ed25519 seed. Anyone holding it can vote as this validator.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use commonware_codec::{DecodeExt as _, Encode as _};
use commonware_cryptography::{Signer as _, ed25519};
use kumo_chain::Genesis;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{
    Role,
    block::BlockLimits,
    node::{NoSink, NodeConfig},
    pool::FifoPool,
    process::{Peer, ProcessConfig},
    service::ServiceConfig,
};

/// The settings file's name in a home.
pub const CONFIG_FILE: &str = "config.toml";
/// The validator key file's name in a home.
pub const KEY_FILE: &str = "node_key.json";
/// The genesis file's name in a home.
pub const GENESIS_FILE: &str = "genesis.json";
/// The data directory's name in a home.
pub const DATA_DIR: &str = "data";

/// Default p2p port (as Tendermint/CometBFT's).
pub const DEFAULT_P2P_PORT: u16 = 26656;
/// Default API port.
pub const DEFAULT_API_PORT: u16 = 26657;
/// Default chain id of `kumo node init`.
pub const DEFAULT_CHAIN_ID: &str = "kumo-devnet-1";

/// Why a home could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    /// `init` would overwrite an existing home.
    #[error(
        "{0} already exists: pick another directory, or pass --force to overwrite the home (its data directory is deleted)"
    )]
    Exists(PathBuf),
    /// A file could not be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// `config.toml` does not parse or is inconsistent.
    #[error("{path}: {problem}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where.
        problem: String,
    },
    /// `node_key.json` is unreadable or inconsistent.
    #[error("{path}: {problem}")]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// `genesis.json` is invalid.
    #[error("{path}: {problem}")]
    Genesis {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> HomeError + '_ {
    move |error| HomeError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// A validator's public key, written as 64 hex digits.
pub fn key_to_hex(key: &ed25519::PublicKey) -> String {
    hex::encode(key.encode())
}

/// Parses 64 hex digits as an ed25519 public key.
pub fn key_from_hex(s: &str) -> Result<ed25519::PublicKey, String> {
    let bytes = hex::decode(s).map_err(|e| format!("{s:?} is not hex: {e}"))?;
    if bytes.len() != 32 {
        return Err(format!(
            "{s:?} is {} bytes: an ed25519 public key is 32 (64 hex digits)",
            bytes.len()
        ));
    }
    ed25519::PublicKey::decode(bytes)
        .map_err(|e| format!("{s:?} is not an ed25519 public key: {e}"))
}

mod hex_key {
    use super::*;

    pub(super) fn serialize<S: Serializer>(
        k: &ed25519::PublicKey,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(&key_to_hex(k))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<ed25519::PublicKey, D::Error> {
        let s = String::deserialize(d)?;
        key_from_hex(&s).map_err(serde::de::Error::custom)
    }
}

/// Parses `250ms`, `1s`, `1.5s` or `2m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map_or((s, ""), |i| s.split_at(i));
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration: write e.g. 250ms, 1s or 1.5s"))?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => {
            return Err(format!("{s:?} has no unit: write e.g. 250ms, 1s or 1.5s"));
        }
    };
    if !seconds.is_finite() || seconds <= 0.0 || seconds > 3600.0 {
        return Err(format!("{s:?} is out of range: between 1ms and 1 hour"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Writes a duration as `parse_duration` reads it: whole seconds as `Ns`, else milliseconds.
pub fn format_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

mod duration_str {
    use super::*;

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(*d))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

/// A validator in `genesis.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisValidator {
    /// A name for people (logs, `testnet.json`).
    pub moniker: String,
    /// Its consensus key.
    #[serde(with = "hex_key")]
    pub public_key: ed25519::PublicKey,
}

/// `genesis.json`: the chain's genesis and who validates it (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeGenesis {
    /// The validator set, fixed for the chain's life (for now).
    pub validators: Vec<GenesisValidator>,
    /// The chain's initial state, as `kumo_chain::Genesis` reads it.
    pub chain: Genesis,
}

impl NodeGenesis {
    /// Parses and checks the file's text.
    pub fn from_json(text: &str) -> Result<NodeGenesis, String> {
        let g: NodeGenesis = serde_json::from_str(text).map_err(|e| e.to_string())?;
        g.validate()?;
        Ok(g)
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("genesis serializes")
    }

    /// At least one validator, no key twice, and a valid chain genesis.
    pub fn validate(&self) -> Result<(), String> {
        if self.validators.is_empty() {
            return Err("\"validators\" is empty: a chain needs at least one validator".into());
        }
        for (i, v) in self.validators.iter().enumerate() {
            if self.validators[..i]
                .iter()
                .any(|w| w.public_key == v.public_key)
            {
                return Err(format!(
                    "validator {} ({}) is listed twice",
                    v.moniker,
                    key_to_hex(&v.public_key)
                ));
            }
        }
        self.chain.validate().map_err(|e| format!("chain: {e}"))
    }

    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<NodeGenesis, HomeError> {
        let text = std::fs::read_to_string(path).map_err(io(path))?;
        NodeGenesis::from_json(&text).map_err(|problem| HomeError::Genesis {
            path: path.to_path_buf(),
            problem,
        })
    }
}

/// `node_key.json`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: String,
    public_key: String,
    secret_key: String,
}

/// A new random validator key.
pub fn generate_key() -> ed25519::PrivateKey {
    let seed = kumo_types::SecretKey::generate().to_seed();
    ed25519::PrivateKey::decode(seed.to_vec()).expect("32 bytes are an ed25519 seed")
}

/// Reads a validator key file.
pub fn load_key(path: &Path) -> Result<ed25519::PrivateKey, HomeError> {
    let bad = |problem: String| HomeError::Key {
        path: path.to_path_buf(),
        problem,
    };
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let file: KeyFile = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    if file.kind != "ed25519" {
        return Err(bad(format!(
            "key type {:?}: only \"ed25519\" is supported",
            file.kind
        )));
    }
    let seed = zeroize_hex(&file.secret_key)
        .ok_or_else(|| bad("secret_key must be 64 hex digits (an ed25519 seed)".into()))?;
    let key =
        ed25519::PrivateKey::decode(seed.to_vec()).map_err(|e| bad(format!("secret_key: {e}")))?;
    if key_to_hex(&key.public_key()) != file.public_key.to_ascii_lowercase() {
        return Err(bad(
            "public_key does not belong to secret_key: the file was edited or mixed up with another".into(),
        ));
    }
    Ok(key)
}

fn zeroize_hex(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

/// Writes a validator key file readable by its owner only.
pub fn write_key(path: &Path, key: &ed25519::PrivateKey) -> Result<(), HomeError> {
    let file = KeyFile {
        kind: "ed25519".into(),
        public_key: key_to_hex(&key.public_key()),
        secret_key: hex::encode(key.encode()),
    };
    let text = serde_json::to_string_pretty(&file).expect("key file serializes") + "\n";
    write_private(path, text.as_bytes())
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), HomeError> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        options.mode(0o600);
        // An existing file keeps its mode through open(): set it.
        if path.exists() {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(io(path))?;
        }
    }
    let mut f = options.open(path).map_err(io(path))?;
    f.write_all(bytes).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

/// `[api]` in `config.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    /// Where the JSON API listens.
    pub listen: SocketAddr,
}

impl Default for ApiSection {
    fn default() -> Self {
        ApiSection {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), DEFAULT_API_PORT),
        }
    }
}

/// Whether a node votes: `role` in `config.toml` and in `[[p2p.peers]]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    /// A member of the genesis validator set: proposes and votes.
    #[default]
    Validator,
    /// A full node that follows the finalized chain without voting (serves the API, forwards
    /// transactions to the validators); its key is not a validator's.
    Follower,
}

impl NodeRole {
    /// `"validator"` or `"follower"`, as in the files.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeRole::Validator => "validator",
            NodeRole::Follower => "follower",
        }
    }
}

impl std::fmt::Display for NodeRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A peer in `[[p2p.peers]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerEntry {
    /// A name for people.
    #[serde(default)]
    pub moniker: String,
    /// Its key (a validator's consensus key, a follower's p2p identity).
    #[serde(with = "hex_key")]
    pub public_key: ed25519::PublicKey,
    /// Where it listens for peers.
    pub address: SocketAddr,
    /// A validator of genesis.json (the default) or a follower allowed to connect.
    #[serde(default)]
    pub role: NodeRole,
}

/// `[p2p]` in `config.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct P2pSection {
    /// Where this node listens for peers.
    pub listen: SocketAddr,
    /// Accept peers on private and loopback addresses (devnets; false on public networks).
    #[serde(default = "yes")]
    pub allow_private_ips: bool,
    /// The other nodes and where they listen: every validator, and the followers allowed to
    /// connect. This node is implied.
    #[serde(default)]
    pub peers: Vec<PeerEntry>,
}

fn yes() -> bool {
    true
}

impl Default for P2pSection {
    fn default() -> Self {
        P2pSection {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), DEFAULT_P2P_PORT),
            allow_private_ips: true,
            peers: Vec::new(),
        }
    }
}

/// `[consensus]` in `config.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsensusSection {
    /// Time from a block's timestamp until its child is proposed (devnet 250ms, default 1s).
    /// Every validator should use the same.
    #[serde(with = "duration_str", default = "default_block_time")]
    pub block_time: Duration,
    /// Most transactions a proposed block carries.
    #[serde(default = "default_max_block_txs")]
    pub max_block_txs: usize,
    /// Most bytes of transactions a proposed block carries.
    #[serde(default = "default_max_block_bytes")]
    pub max_block_bytes: usize,
}

fn default_block_time() -> Duration {
    Duration::from_secs(1)
}
fn default_max_block_txs() -> usize {
    BlockLimits::default().max_txs
}
fn default_max_block_bytes() -> usize {
    BlockLimits::default().max_block_bytes
}

impl Default for ConsensusSection {
    fn default() -> Self {
        ConsensusSection {
            block_time: default_block_time(),
            max_block_txs: default_max_block_txs(),
            max_block_bytes: default_max_block_bytes(),
        }
    }
}

/// `[mempool]` in `config.toml` (see `kumo_mempool::Config`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MempoolSection {
    /// Most transactions held.
    pub max_txs: usize,
    /// Most bytes held.
    pub max_bytes: usize,
    /// Most transactions held per sender.
    pub max_per_account: usize,
    /// Most nonces that may be missing before a pending transaction.
    pub max_nonce_gap: u64,
}

impl Default for MempoolSection {
    fn default() -> Self {
        let c = kumo_mempool::Config::default();
        MempoolSection {
            max_txs: c.max_txs,
            max_bytes: c.max_bytes,
            max_per_account: c.max_per_account,
            max_nonce_gap: c.max_nonce_gap,
        }
    }
}

/// `config.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeFileConfig {
    /// A name for people (logs).
    pub moniker: String,
    /// Validator (votes) or follower (follows without voting).
    #[serde(default)]
    pub role: NodeRole,
    /// The JSON API.
    #[serde(default)]
    pub api: ApiSection,
    /// Peer-to-peer networking.
    #[serde(default)]
    pub p2p: P2pSection,
    /// Block production.
    #[serde(default)]
    pub consensus: ConsensusSection,
    /// Pending transactions.
    #[serde(default)]
    pub mempool: MempoolSection,
}

impl NodeFileConfig {
    /// Defaults, named `moniker`.
    pub fn new(moniker: impl Into<String>) -> NodeFileConfig {
        NodeFileConfig {
            moniker: moniker.into(),
            role: NodeRole::Validator,
            api: ApiSection::default(),
            p2p: P2pSection::default(),
            consensus: ConsensusSection::default(),
            mempool: MempoolSection::default(),
        }
    }

    /// Parses the file's text.
    pub fn from_toml(text: &str) -> Result<NodeFileConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// The file's text: every setting, with a comment saying what it does.
    pub fn to_toml(&self) -> String {
        let q = |s: &str| toml::Value::String(s.to_string()).to_string();
        let mut out = format!(
            "# Kumo node configuration (read by `kumo node run --home DIR`).\n\
             # Files beside it: node_key.json (this node's key), genesis.json (the chain and its\n\
             # validators), data/ (consensus storage and the block store).\n\
             \n\
             # A name for people: logs and testnet.json.\n\
             moniker = {moniker}\n\
             # \"validator\": this node's key is in genesis.json and it votes. \"follower\": a full node\n\
             # that follows the finalized chain without voting (its key is not a validator's).\n\
             role = {role}\n\
             \n\
             [api]\n\
             # Where the JSON API (docs/node-api.md) listens. Use 0.0.0.0:PORT to serve other hosts.\n\
             listen = {api}\n\
             \n\
             [p2p]\n\
             # Where this node listens for its peers (authenticated, encrypted TCP).\n\
             listen = {p2p}\n\
             # Accept peers on private and loopback addresses: true for devnets, false on public networks.\n\
             allow_private_ips = {private}\n\
             # The other nodes: their key and where they listen. Every validator of genesis.json but\n\
             # this one needs an entry; followers allowed to connect have role = \"follower\" (a node\n\
             # accepts connections only from the peers listed here).\n",
            moniker = q(&self.moniker),
            role = q(self.role.as_str()),
            api = q(&self.api.listen.to_string()),
            p2p = q(&self.p2p.listen.to_string()),
            private = self.p2p.allow_private_ips,
        );
        for p in &self.p2p.peers {
            out.push_str(&format!(
                "\n[[p2p.peers]]\nmoniker = {}\npublic_key = {}\naddress = {}\nrole = {}\n",
                q(&p.moniker),
                q(&key_to_hex(&p.public_key)),
                q(&p.address.to_string()),
                q(p.role.as_str())
            ));
        }
        out.push_str(&format!(
            "\n[consensus]\n\
             # Time from a block's timestamp until its child is proposed: 250ms on a devnet, 1s by\n\
             # default. Every validator should use the same.\n\
             block_time = {block_time}\n\
             # Most transactions, and most bytes of transactions, one proposed block carries.\n\
             max_block_txs = {max_txs}\n\
             max_block_bytes = {max_bytes}\n\
             \n\
             [mempool]\n\
             # Most transactions and bytes waiting for a block; a full pool admits a newcomer only\n\
             # if it pays more per byte than what it evicts.\n\
             max_txs = {m_txs}\n\
             max_bytes = {m_bytes}\n\
             # Most pending transactions of one account.\n\
             max_per_account = {m_acct}\n\
             # Most nonces that may be missing below a pending transaction.\n\
             max_nonce_gap = {m_gap}\n",
            block_time = q(&format_duration(self.consensus.block_time)),
            max_txs = self.consensus.max_block_txs,
            max_bytes = self.consensus.max_block_bytes,
            m_txs = self.mempool.max_txs,
            m_bytes = self.mempool.max_bytes,
            m_acct = self.mempool.max_per_account,
            m_gap = self.mempool.max_nonce_gap,
        ));
        out
    }

    /// Reads `path`.
    pub fn load(path: &Path) -> Result<NodeFileConfig, HomeError> {
        let text = std::fs::read_to_string(path).map_err(io(path))?;
        NodeFileConfig::from_toml(&text).map_err(|problem| HomeError::Config {
            path: path.to_path_buf(),
            problem,
        })
    }
}

/// A node's home: its directory and the three files in it.
pub struct Home {
    /// The directory.
    pub dir: PathBuf,
    /// `config.toml`.
    pub config: NodeFileConfig,
    /// `node_key.json`.
    pub key: ed25519::PrivateKey,
    /// `genesis.json`.
    pub genesis: NodeGenesis,
}

impl std::fmt::Debug for Home {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Home")
            .field("dir", &self.dir)
            .field("moniker", &self.config.moniker)
            .field("public_key", &key_to_hex(&self.key.public_key()))
            .finish_non_exhaustive()
    }
}

/// What `kumo node init` is given.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// The node's name.
    pub moniker: String,
    /// The chain id of a new single-validator genesis (ignored with `genesis`).
    pub chain_id: String,
    /// p2p listen address.
    pub p2p: SocketAddr,
    /// API listen address.
    pub api: SocketAddr,
    /// Block time.
    pub block_time: Duration,
    /// An existing genesis to join; none: a new chain with this node as its only validator.
    pub genesis: Option<NodeGenesis>,
    /// Validator or follower (a follower needs `genesis`).
    pub role: NodeRole,
    /// `[[p2p.peers]]`: the other validators (and followers to let in).
    pub peers: Vec<PeerEntry>,
    /// Overwrite an existing home (deleting its data).
    pub force: bool,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            moniker: "node0".into(),
            chain_id: DEFAULT_CHAIN_ID.into(),
            p2p: P2pSection::default().listen,
            api: ApiSection::default().listen,
            block_time: default_block_time(),
            genesis: None,
            role: NodeRole::Validator,
            peers: Vec::new(),
            force: false,
        }
    }
}

impl Home {
    /// The path of a file of this home.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A new home in `dir` (see [`InitOptions`]); writes it.
    pub fn init(dir: &Path, options: InitOptions) -> Result<Home, HomeError> {
        let key = generate_key();
        let genesis = match options.genesis {
            Some(g) => g,
            None if options.role == NodeRole::Follower => {
                return Err(HomeError::Genesis {
                    path: dir.join(GENESIS_FILE),
                    problem: "a follower follows an existing chain: give its genesis.json \
                              (--genesis FILE) and its validators' addresses (--peer KEY@ADDR)"
                        .into(),
                });
            }
            None => NodeGenesis {
                validators: vec![GenesisValidator {
                    moniker: options.moniker.clone(),
                    public_key: key.public_key(),
                }],
                chain: Genesis {
                    chain_id: options.chain_id.clone(),
                    initial_height: 0,
                    params: Default::default(),
                    balances: Vec::new(),
                },
            },
        };
        genesis.validate().map_err(|problem| HomeError::Genesis {
            path: dir.join(GENESIS_FILE),
            problem,
        })?;
        let mut config = NodeFileConfig::new(options.moniker);
        config.role = options.role;
        config.p2p.peers = options.peers;
        config.api.listen = options.api;
        config.p2p.listen = options.p2p;
        config.consensus.block_time = options.block_time;
        let home = Home {
            dir: dir.to_path_buf(),
            config,
            key,
            genesis,
        };
        home.write(options.force)?;
        Ok(home)
    }

    /// Writes the three files (and creates the directory). Refuses to overwrite any of them, or
    /// to leave an existing data directory beside a new genesis, unless `force`, which deletes
    /// the data directory.
    pub fn write(&self, force: bool) -> Result<(), HomeError> {
        let existing = [CONFIG_FILE, KEY_FILE, GENESIS_FILE, DATA_DIR]
            .iter()
            .map(|f| self.path(f))
            .find(|p| p.exists());
        if let Some(p) = existing {
            if !force {
                return Err(HomeError::Exists(p));
            }
            let data = self.path(DATA_DIR);
            if data.exists() {
                std::fs::remove_dir_all(&data).map_err(io(&data))?;
            }
        }
        std::fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        let config = self.path(CONFIG_FILE);
        std::fs::write(&config, self.config.to_toml()).map_err(io(&config))?;
        write_key(&self.path(KEY_FILE), &self.key)?;
        let genesis = self.path(GENESIS_FILE);
        std::fs::write(&genesis, self.genesis.to_json() + "\n").map_err(io(&genesis))?;
        Ok(())
    }

    /// Reads the home in `dir` and checks that its files agree with each other.
    pub fn load(dir: &Path) -> Result<Home, HomeError> {
        let config_path = dir.join(CONFIG_FILE);
        if !config_path.exists() {
            return Err(HomeError::Config {
                path: config_path,
                problem: "not found: create the home with `kumo node init --home DIR`".into(),
            });
        }
        let home = Home {
            dir: dir.to_path_buf(),
            config: NodeFileConfig::load(&config_path)?,
            key: load_key(&dir.join(KEY_FILE))?,
            genesis: NodeGenesis::load(&dir.join(GENESIS_FILE))?,
        };
        home.peers()?;
        Ok(home)
    }

    /// Every node this one talks to, with its p2p address: every validator (this node's address
    /// is `[p2p] listen`) and the followers of `[[p2p.peers]]` (and this node, if it is one),
    /// checked against the genesis validator set and this node's role.
    pub fn peers(&self) -> Result<Vec<Peer>, HomeError> {
        let me = self.key.public_key();
        let config_err = |problem: String| HomeError::Config {
            path: self.path(CONFIG_FILE),
            problem,
        };
        let is_validator =
            |key: &ed25519::PublicKey| self.genesis.validators.iter().any(|v| &v.public_key == key);
        match self.config.role {
            NodeRole::Validator if !is_validator(&me) => {
                return Err(HomeError::Genesis {
                    path: self.path(GENESIS_FILE),
                    problem: format!(
                        "this node's key {} (node_key.json) is not among the validators: add it, use a validator's key, or set role = \"follower\" in config.toml",
                        key_to_hex(&me)
                    ),
                });
            }
            NodeRole::Follower if is_validator(&me) => {
                return Err(HomeError::Key {
                    path: self.path(KEY_FILE),
                    problem: format!(
                        "this follower's key {} is a validator's in genesis.json: a follower needs a key of its own (`kumo node init --follower` makes one)",
                        key_to_hex(&me)
                    ),
                });
            }
            _ => {}
        }
        for p in &self.config.p2p.peers {
            match p.role {
                NodeRole::Validator if !is_validator(&p.public_key) => {
                    return Err(config_err(format!(
                        "peer {} ({}) is not a validator in genesis.json: if it is a follower, set role = \"follower\" in its [[p2p.peers]] entry",
                        p.moniker,
                        key_to_hex(&p.public_key)
                    )));
                }
                NodeRole::Follower if is_validator(&p.public_key) => {
                    return Err(config_err(format!(
                        "peer {} ({}) is a validator in genesis.json but has role = \"follower\": remove the role line",
                        p.moniker,
                        key_to_hex(&p.public_key)
                    )));
                }
                _ => {}
            }
            if p.public_key == me {
                return Err(config_err(format!(
                    "peer {} ({}) is this node itself: remove the entry ([p2p] listen is this node's address)",
                    p.moniker,
                    key_to_hex(&p.public_key)
                )));
            }
        }
        let mut peers = self
            .genesis
            .validators
            .iter()
            .map(|v| {
                if v.public_key == me {
                    return Ok(Peer {
                        key: me.clone(),
                        address: self.config.p2p.listen,
                        validator: true,
                    });
                }
                self.config
                    .p2p
                    .peers
                    .iter()
                    .find(|p| p.public_key == v.public_key)
                    .map(|p| Peer {
                        key: v.public_key.clone(),
                        address: p.address,
                        validator: true,
                    })
                    .ok_or_else(|| {
                        config_err(format!(
                            "validator {} ({}) has no [[p2p.peers]] entry: add its address",
                            v.moniker,
                            key_to_hex(&v.public_key)
                        ))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if self.config.role == NodeRole::Follower {
            peers.push(Peer {
                key: me.clone(),
                address: self.config.p2p.listen,
                validator: false,
            });
        }
        for p in &self.config.p2p.peers {
            if p.role == NodeRole::Follower {
                if peers.iter().any(|q| q.key == p.public_key) {
                    return Err(config_err(format!(
                        "peer {} ({}) is listed twice",
                        p.moniker,
                        key_to_hex(&p.public_key)
                    )));
                }
                peers.push(Peer {
                    key: p.public_key.clone(),
                    address: p.address,
                    validator: false,
                });
            }
        }
        Ok(peers)
    }

    /// What [`crate::service::run`] needs to run this home's node.
    pub fn service_config(&self) -> Result<ServiceConfig, HomeError> {
        let chain = &self.genesis.chain;
        let limits = BlockLimits {
            max_txs: self.config.consensus.max_block_txs,
            max_tx_bytes: chain.params.max_tx_bytes as usize,
            max_block_bytes: self.config.consensus.max_block_bytes,
        };
        let node = NodeConfig {
            genesis: chain.clone(),
            block_time: self.config.consensus.block_time,
            limits,
            partition_prefix: "kumo".into(),
            // The service puts in the real mempool and the block store.
            pool: Arc::new(FifoPool::default()),
            sink: Arc::new(NoSink),
        };
        let m = &self.config.mempool;
        Ok(ServiceConfig {
            process: ProcessConfig {
                role: match self.config.role {
                    NodeRole::Validator => Role::Validator(self.key.clone()),
                    NodeRole::Follower => Role::Follower(self.key.clone()),
                },
                listen: self.config.p2p.listen,
                peers: self.peers()?,
                allow_private_ips: self.config.p2p.allow_private_ips,
                node,
            },
            api_listen: self.config.api.listen,
            data_dir: self.path(DATA_DIR),
            mempool: kumo_mempool::Config {
                max_txs: m.max_txs,
                max_bytes: m.max_bytes,
                max_per_account: m.max_per_account,
                max_nonce_gap: m.max_nonce_gap,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_and_write() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1s").unwrap(), Duration::from_secs(1));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("250").unwrap_err().contains("no unit"));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("0s").is_err());
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::from_secs(2)), "2s");
    }

    #[test]
    fn written_config_reads_back_the_same() {
        let mut c = NodeFileConfig::new("val \"1\"");
        c.consensus.block_time = Duration::from_millis(250);
        c.p2p.peers.push(PeerEntry {
            moniker: "node1".into(),
            public_key: generate_key().public_key(),
            address: "127.0.0.1:30001".parse().unwrap(),
            role: NodeRole::Validator,
        });
        c.p2p.peers.push(PeerEntry {
            moniker: "watcher".into(),
            public_key: generate_key().public_key(),
            address: "127.0.0.1:30003".parse().unwrap(),
            role: NodeRole::Follower,
        });
        let text = c.to_toml();
        assert_eq!(NodeFileConfig::from_toml(&text).unwrap(), c);
        // Every default is written out, with its comment.
        assert!(text.contains("max_nonce_gap = 8"));
        assert!(text.contains("# Time from a block's timestamp"));
    }

    /// A config.toml as this version's `kumo node init` first wrote it must keep loading.
    #[test]
    fn loads_a_version_1_config_and_fills_defaults() {
        let v1 = r#"
moniker = "node0"
[api]
listen = "127.0.0.1:26657"
[p2p]
listen = "127.0.0.1:26656"
allow_private_ips = true
[consensus]
block_time = "1s"
max_block_txs = 2000
max_block_bytes = 2097152
[mempool]
max_txs = 10000
max_bytes = 33554432
max_per_account = 64
max_nonce_gap = 8
"#;
        assert_eq!(
            NodeFileConfig::from_toml(v1).unwrap(),
            NodeFileConfig::new("node0")
        );
        let minimal = NodeFileConfig::from_toml("moniker = \"x\"\n").unwrap();
        assert_eq!(minimal.consensus.block_time, Duration::from_secs(1));
        let typo = NodeFileConfig::from_toml("moniker = \"x\"\n[consensus]\nblock_tme = \"1s\"\n")
            .unwrap_err();
        assert!(typo.contains("block_tme"), "{typo}");
    }

    #[test]
    fn init_writes_a_home_that_loads_and_refuses_to_overwrite_it() {
        let dir = tempfile::tempdir().unwrap();
        let home_dir = dir.path().join("home");
        let home = Home::init(&home_dir, InitOptions::default()).unwrap();
        let loaded = Home::load(&home_dir).unwrap();
        assert_eq!(loaded.config, home.config);
        assert_eq!(loaded.genesis, home.genesis);
        assert_eq!(loaded.key.public_key(), home.key.public_key());
        assert_eq!(
            loaded.genesis.validators[0].public_key,
            home.key.public_key()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(home_dir.join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = Home::init(&home_dir, InitOptions::default()).unwrap_err();
        assert!(matches!(again, HomeError::Exists(_)), "{again}");
        std::fs::create_dir_all(home_dir.join(DATA_DIR).join("x")).unwrap();
        let forced = Home::init(
            &home_dir,
            InitOptions {
                force: true,
                ..InitOptions::default()
            },
        )
        .unwrap();
        assert_ne!(forced.key.public_key(), home.key.public_key());
        assert!(!home_dir.join(DATA_DIR).exists());
    }

    /// `kumo node init --follower --genesis FILE --peer …` beside a validator's home: the
    /// follower's home loads as a non-voting node with every validator as a peer; the validator
    /// must list the follower to let it in.
    #[test]
    fn follower_homes_join_a_validators_genesis() {
        let dir = tempfile::tempdir().unwrap();
        let validator = Home::init(&dir.path().join("v"), InitOptions::default()).unwrap();
        let peer_of = |home: &Home, role| PeerEntry {
            moniker: home.config.moniker.clone(),
            public_key: home.key.public_key(),
            address: home.config.p2p.listen,
            role,
        };
        // A follower needs a genesis to follow.
        let e = Home::init(
            &dir.path().join("f0"),
            InitOptions {
                role: NodeRole::Follower,
                ..InitOptions::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("--genesis"), "{e}");
        let follower = Home::init(
            &dir.path().join("f"),
            InitOptions {
                moniker: "watcher".into(),
                p2p: "127.0.0.1:30010".parse().unwrap(),
                role: NodeRole::Follower,
                genesis: Some(validator.genesis.clone()),
                peers: vec![peer_of(&validator, NodeRole::Validator)],
                ..InitOptions::default()
            },
        )
        .unwrap();
        let loaded = Home::load(&follower.dir).unwrap();
        assert_eq!(loaded.config.role, NodeRole::Follower);
        let peers = loaded.peers().unwrap();
        assert_eq!(peers.len(), 2);
        assert!(peers[0].validator && peers[0].key == validator.key.public_key());
        assert!(!peers[1].validator && peers[1].key == follower.key.public_key());
        assert!(matches!(
            loaded.service_config().unwrap().process.role,
            Role::Follower(_)
        ));
        let text = std::fs::read_to_string(follower.path(CONFIG_FILE)).unwrap();
        assert!(text.contains("role = \"follower\""), "{text}");

        // The validator lets the follower in once it lists it as a follower peer.
        let mut v = Home::load(&validator.dir).unwrap();
        v.config.p2p.peers = vec![peer_of(&follower, NodeRole::Follower)];
        let peers = v.peers().unwrap();
        assert_eq!(peers.len(), 2);
        assert!(peers[0].validator && !peers[1].validator);
        assert!(matches!(
            v.service_config().unwrap().process.role,
            Role::Validator(_)
        ));
        // Listed as a validator, the follower's key is refused: it is not in genesis.json.
        v.config.p2p.peers = vec![peer_of(&follower, NodeRole::Validator)];
        let e = v.peers().unwrap_err().to_string();
        assert!(e.contains("role = \"follower\""), "{e}");
        // A follower home holding a validator's key is refused.
        let mut f = Home::load(&follower.dir).unwrap();
        f.key = validator.key.clone();
        f.config.p2p.peers.clear();
        let e = f.peers().unwrap_err().to_string();
        assert!(e.contains("a key of its own"), "{e}");
        // A follower without its validators' addresses.
        let mut f = Home::load(&follower.dir).unwrap();
        f.config.p2p.peers.clear();
        let e = f.peers().unwrap_err().to_string();
        assert!(e.contains("[[p2p.peers]]"), "{e}");
    }

    #[test]
    fn load_names_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::init(dir.path(), InitOptions::default()).unwrap();
        // A key that is not a validator.
        write_key(&home.path(KEY_FILE), &generate_key()).unwrap();
        let e = Home::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("is not among the validators"), "{e}");
        // A validator without an address.
        write_key(&home.path(KEY_FILE), &home.key).unwrap();
        let mut g = home.genesis.clone();
        g.validators.push(GenesisValidator {
            moniker: "other".into(),
            public_key: generate_key().public_key(),
        });
        std::fs::write(home.path(GENESIS_FILE), g.to_json()).unwrap();
        let e = Home::load(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("validator other") && e.contains("[[p2p.peers]]"),
            "{e}"
        );
        // A damaged key file.
        std::fs::write(home.path(KEY_FILE), "{\"type\": \"ed25519\"}").unwrap();
        let e = Home::load(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("node_key.json") && e.contains("missing field"),
            "{e}"
        );
        // A genesis without validators.
        write_key(&home.path(KEY_FILE), &home.key).unwrap();
        g.validators.clear();
        std::fs::write(home.path(GENESIS_FILE), g.to_json()).unwrap();
        let e = Home::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("at least one validator"), "{e}");
        // A config that does not parse says where.
        std::fs::write(home.path(CONFIG_FILE), "moniker = \n").unwrap();
        let e = Home::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("config.toml") && e.contains("line 1"), "{e}");
    }
}
