//! [`ProviderError`]: what can stop the daemon or one of its commands, each saying how to fix it.

use std::path::PathBuf;

/// An error of the provider daemon.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The configuration file is unreadable or wrong.
    #[error("config {path}: {reason}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// The key could not be loaded.
    #[error("key {name:?} in {dir}: {reason}")]
    Key {
        /// Key name.
        name: String,
        /// Keyring directory.
        dir: PathBuf,
        /// What failed.
        reason: String,
    },
    /// The local state database failed.
    #[error("state database: {0} (is another provider running on the same data_dir?)")]
    State(String),
    /// The node refused or could not be reached.
    #[error(transparent)]
    Client(#[from] kumo_client::ClientError),
    /// A transaction failed.
    #[error(transparent)]
    Signer(#[from] kumo_client::signer::SignerError),
    /// The workload engine failed.
    #[error(transparent)]
    Workload(#[from] kumo_workload::WorkloadError),
    /// Anything else, explained.
    #[error("{0}")]
    Other(String),
}
