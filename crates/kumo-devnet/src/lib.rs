//! A local Kumo devnet: one validator and 1 to 8 providers (Docker backend) on this machine,
//! with the keys `tenant`, `provider` (and `provider2`, … for the others) funded in genesis:
//! everything `kumo deploy` needs, and a market where the providers bid against each other
//! (each has its own zone attribute and prices).
//!
//! - [`layout`]: the devnet directory (`devnet.json`, `devnet.env`, keys, homes, ports).
//! - [`process`]: the node and provider processes (pid files, logs, stopping).
//! - [`run`]: `up` (create if needed, then start whatever is not running: the node, each
//!   provider's registration and daemon; what runs is left alone, workloads included),
//!   `down` (stop everything, remove every provider's workloads) and `status` (each part).

use std::path::PathBuf;

pub mod layout;
pub mod process;
pub mod run;

pub use layout::{DevnetInfo, DevnetPrice, DevnetProvider, DevnetSpec, VmMode};
pub use run::{
    Devnet, DevnetStatus, DownReport, NodePart, ProviderPart, Running, down, status, up,
};

/// Why a devnet command failed.
#[derive(Debug, thiserror::Error)]
pub enum DevnetError {
    /// Nonsense options.
    #[error("{0}")]
    Spec(String),
    /// No devnet in the directory.
    #[error("no devnet in {0} (no devnet.json): start one with `kumo devnet up --home {0}`")]
    NotFound(PathBuf),
    /// `create` found a devnet already.
    #[error("{0} already holds a devnet")]
    Exists(PathBuf),
    /// `devnet.json` is unreadable.
    #[error("{path}: {problem} (delete the directory to start afresh)")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// `--providers` differs from the number the devnet was created with.
    #[error(
        "the devnet in {} has {has} provider(s), not {asked}: the number is fixed when a devnet is created; start a new one with `kumo devnet up --reset --providers {asked}` (a new chain), or leave out --providers",
        dir.display()
    )]
    ProvidersFixed {
        /// The directory.
        dir: PathBuf,
        /// How many it has.
        has: usize,
        /// How many were asked for.
        asked: usize,
    },
    /// A port the devnet listens on is taken.
    #[error(
        "port {port} ({what}) is in use: another devnet or program listens there; stop it, or start this devnet in a new directory with another --base-port"
    )]
    PortTaken {
        /// What the port is for.
        what: String,
        /// The port.
        port: u16,
    },
    /// A file could not be read or written.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// A process could not be started.
    #[error("cannot start {}: {error}", exe.display())]
    Spawn {
        /// The binary.
        exe: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// A process exited while starting.
    #[error("the {what} exited while starting; the end of its log:\n{log}")]
    Exited {
        /// Which.
        what: String,
        /// The end of its log.
        log: String,
    },
    /// A process did not serve in time.
    #[error("the {what} did not answer within 60 s; the end of its log:\n{log}")]
    Timeout {
        /// Which.
        what: String,
        /// The end of its log.
        log: String,
    },
    /// The genesis, keys or node home could not be written.
    #[error(transparent)]
    Testnet(#[from] kumo_testnet::TestnetError),
    /// The node's API could not be reached.
    #[error(transparent)]
    Client(#[from] kumo_client::ClientError),
    /// The provider's config, key, certificate or registration failed.
    #[error("provider: {0}")]
    Provider(String),
    /// The Docker engine failed while removing workloads.
    #[error("Docker engine: {0} (is dockerd running?)")]
    Docker(String),
}
