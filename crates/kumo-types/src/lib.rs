//! Kumo's shared vocabulary: the types every other crate speaks.
//!
//! - [`decimal`]: fixed-point decimals with 18 fractional digits and decimal coins (prices).
//! - [`coin`]: integer coins (balances, deposits, fees) and sorted sets of them.
//! - [`attributes`]: key/value attributes, placement requirements and `signedBy` rules.
//! - [`gpu`]: the GPUs a bid offers (model, memory, interface, count).
//! - [`matching`]: whether a provider's attributes and attestations satisfy a group, as Akash.
//! - [`resources`]: CPU, memory, storage, GPU and endpoints of one unit of compute, and the
//!   group specs a deployment puts on chain.
//! - [`keys`], [`address`]: ed25519 keys and bech32 `kumo1…` addresses.
//! - [`ids`]: deployment, group, order, bid and lease identifiers.
//! - [`msg`], [`tx`]: chain messages and the signed transaction format.
//! - [`codec`]: the Borsh encodings of the types above.
//!
//! Everything here is plain data with `serde` support and no I/O.

pub mod address;
pub mod attributes;
pub mod codec;
pub mod coin;
pub mod decimal;
pub mod gpu;
pub mod ids;
pub mod key_cache;
pub mod keys;
pub mod limits;
pub mod matching;
pub mod msg;
pub mod resources;
pub mod tx;

pub use address::{Address, AddressError};
pub use attributes::{Attribute, PlacementRequirements, SignedBy};
pub use coin::{Coin, CoinError, Coins};
pub use decimal::{Dec, DecCoin, DecimalError};
pub use gpu::GpuOffer;
pub use ids::{BidId, DeploymentId, GroupId, LeaseId, OrderId};
pub use keys::{PublicKey, SecretKey, Signature};
pub use limits::{LimitError, ResourceLimits};
pub use msg::{DeclineReason, LeaseCloseReason, Msg, ProviderFields, ProviderInfo};
pub use resources::{
    Cpu, Endpoint, EndpointKind, Gpu, GroupSpec, Memory, ResourceUnit, Resources, Storage,
};
pub use tx::{TxBody, TxEnvelope, TxError, VerifiedTx};
