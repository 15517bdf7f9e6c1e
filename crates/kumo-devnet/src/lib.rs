//! A local Kumo devnet: one validator and one provider (Docker backend) on this machine, with
//! the keys `tenant` and `provider` funded in genesis: everything `kumo deploy` needs.
//!
//! - [`layout`]: the devnet directory (`devnet.json`, `devnet.env`, keys, homes, ports).
//! - [`process`]: the node and provider processes (pid files, logs, stopping).
//! - [`run`]: `up` (create if needed, start, register the provider, wait until serving),
//!   `down` (stop, remove the provider's workloads) and `status`.

use std::path::PathBuf;

pub mod layout;
pub mod process;
pub mod run;

pub use layout::{DevnetInfo, DevnetSpec, VmMode};
pub use run::{Devnet, DevnetStatus, DownReport, down, status, up};

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
    /// The devnet already runs.
    #[error(
        "the devnet in {} already runs ({what}, pid {pid}): stop it with `kumo devnet down --home {}`",
        dir.display(),
        dir.display()
    )]
    AlreadyRunning {
        /// The directory.
        dir: PathBuf,
        /// Which process.
        what: &'static str,
        /// Its pid.
        pid: u32,
    },
    /// A port the devnet listens on is taken.
    #[error(
        "port {port} ({what}) is in use: another devnet or program listens there; stop it, or start this devnet in a new directory with another --base-port"
    )]
    PortTaken {
        /// What the port is for.
        what: &'static str,
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
        what: &'static str,
        /// The end of its log.
        log: String,
    },
    /// A process did not serve in time.
    #[error("the {what} did not answer within 60 s; the end of its log:\n{log}")]
    Timeout {
        /// Which.
        what: &'static str,
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
