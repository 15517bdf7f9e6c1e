//! Kumo's shared vocabulary: the types every other crate speaks.
//!
//! - [`decimal`]: fixed-point decimals with 18 fractional digits and decimal coins (prices).
//! - [`attributes`]: key/value attributes, placement requirements and `signedBy` rules.
//! - [`resources`]: CPU, memory, storage, GPU and endpoints of one unit of compute, and the
//!   group specs a deployment puts on chain.
//!
//! Everything here is plain data with `serde` support and no I/O.

pub mod attributes;
pub mod decimal;
pub mod resources;

pub use attributes::{Attribute, PlacementRequirements, SignedBy};
pub use decimal::{Dec, DecCoin, DecimalError};
pub use resources::{
    Cpu, Endpoint, EndpointKind, Gpu, GroupSpec, Memory, ResourceUnit, Resources, Storage,
};
