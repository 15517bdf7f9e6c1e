//! Kumo's node core: commonware `simplex` consensus with ed25519 validator keys, `marshal` for
//! block delivery and catch-up, `glue::stateful` over QMDB for the state (its root in every
//! block), and a mempool gossiped over the p2p network.
//!
//! - [`block`]: the block and its encoding.
//! - [`state`]: the chain state in memory (finalized base + one diff per pending block), which
//!   `kumo-chain` executes on synchronously.
//! - [`app`]: the `glue::stateful` application (propose, verify, finalize) and the startup load
//!   of the state out of QMDB.
//! - [`engine`]: wires one node (a validator, or a follower that never votes) on any
//!   commonware runtime and p2p network.
//! - `follow`: how a follower takes the validators' finalizations (verified) into marshal.
//! - [`pacing`]: the block time, waited for before a proposal reaches stateful's actor.
//! - [`node`]: the [`Node`] handle: submit transactions, read the finalized state, receive
//!   finalized blocks through a [`BlockSink`].
//! - [`pool`]: the [`TxPool`] seam and a simple FIFO pool; [`mempool`]: the real mempool
//!   (`kumo-mempool`) behind it.
//! - [`process`]: running a node as a process (tokio runtime, authenticated TCP p2p).
//! - [`service`]: a node with the mempool, the block store and the JSON API: what
//!   `kumo node run` runs.
//! - [`home`]: a node's home directory (`config.toml`, `node_key.json`, `genesis.json`,
//!   `data/`): what `kumo node init` writes and `kumo node run` reads.
//!
//! Tests run whole networks of nodes on commonware's deterministic runtime and simulated
//! network (`tests/`), reproducible by seed.

pub mod app;
pub mod block;
pub mod engine;
mod follow;
mod gossip;
pub mod home;
pub mod mempool;
pub mod node;
pub mod pacing;
pub mod pool;
pub mod process;
pub mod service;
pub mod state;

pub use block::{Block, BlockLimits, Digest};
pub use engine::{Membership, Network, Role, StartError};
pub use node::{BlockSink, FinalizedBlock, FinalizedTip, NoSink, Node, NodeConfig, SubmitError};
pub use pool::{FifoPool, PoolError, TxHash, TxPool};
