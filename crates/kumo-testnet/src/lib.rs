//! Local multi-validator Kumo networks, for people, tests and benchmarks.
//!
//! - [`init`]: `kumo testnet init`: one node home per validator, a shared genesis, funded
//!   accounts in a `test` keyring, `testnet.json`.
//! - [`process`]: `kumo node run` child processes (start, wait until serving, `kill -9`,
//!   SIGTERM, restart; killed when dropped).
//! - [`load`]: signed transactions sent to the nodes' APIs the way clients send them.
//! - [`bench`]: `kumo bench node`: a real network under load, measured.
//! - [`ports`]: free loopback ports that no outgoing connection takes before a node binds them.

pub mod bench;
pub mod init;
pub mod load;
pub mod ports;
pub mod process;

pub use init::{Testnet, TestnetError, TestnetSpec};
pub use process::NodeProcess;
