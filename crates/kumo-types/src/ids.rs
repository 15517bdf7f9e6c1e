//! The marketplace identifiers, nested as Akash's:
//! [`DeploymentId`] (owner, dseq) → [`GroupId`] (+gseq) → [`OrderId`] (+oseq) →
//! [`BidId`] (+provider) = [`LeaseId`].
//!
//! Their text form joins the parts with `/`: `kumo1…/42/1/1/kumo1…`. Their key form
//! ([`DeploymentId::key_bytes`] etc.) is fixed-width big-endian, so that sorting keys sorts ids:
//! a deployment's groups, orders, bids and leases are contiguous in a key-value store.

use std::fmt;

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::Address;

/// A deployment: its owner and a sequence number unique per owner.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    BorshSerialize,
    BorshDeserialize,
)]
pub struct DeploymentId {
    /// The tenant who owns it.
    pub owner: Address,
    /// Deployment sequence: by default the block height the client saw when creating it.
    pub dseq: u64,
}

/// One placement group of a deployment.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    BorshSerialize,
    BorshDeserialize,
)]
pub struct GroupId {
    /// The tenant who owns it.
    pub owner: Address,
    /// Deployment sequence.
    pub dseq: u64,
    /// Group sequence within the deployment, from 1.
    pub gseq: u32,
}

/// One order for a group (a group gets a new order each time it is (re)started).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    BorshSerialize,
    BorshDeserialize,
)]
pub struct OrderId {
    /// The tenant who owns it.
    pub owner: Address,
    /// Deployment sequence.
    pub dseq: u64,
    /// Group sequence.
    pub gseq: u32,
    /// Order sequence within the group, from 1.
    pub oseq: u32,
}

/// One provider's bid on an order; also the id of the lease it becomes.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    BorshSerialize,
    BorshDeserialize,
)]
pub struct BidId {
    /// The tenant who owns the order.
    pub owner: Address,
    /// Deployment sequence.
    pub dseq: u64,
    /// Group sequence.
    pub gseq: u32,
    /// Order sequence.
    pub oseq: u32,
    /// The bidding provider.
    pub provider: Address,
}

/// A lease has the id of the bid it was made from.
pub type LeaseId = BidId;

impl DeploymentId {
    /// Group `gseq` of this deployment.
    pub fn group(self, gseq: u32) -> GroupId {
        GroupId {
            owner: self.owner,
            dseq: self.dseq,
            gseq,
        }
    }

    /// 28 bytes: owner, dseq big-endian.
    pub fn key_bytes(&self) -> [u8; 28] {
        let mut k = [0u8; 28];
        k[..20].copy_from_slice(&self.owner.0);
        k[20..].copy_from_slice(&self.dseq.to_be_bytes());
        k
    }
}

impl GroupId {
    /// The deployment this group belongs to.
    pub fn deployment(self) -> DeploymentId {
        DeploymentId {
            owner: self.owner,
            dseq: self.dseq,
        }
    }

    /// Order `oseq` of this group.
    pub fn order(self, oseq: u32) -> OrderId {
        OrderId {
            owner: self.owner,
            dseq: self.dseq,
            gseq: self.gseq,
            oseq,
        }
    }

    /// 32 bytes: deployment key, gseq big-endian.
    pub fn key_bytes(&self) -> [u8; 32] {
        let mut k = [0u8; 32];
        k[..28].copy_from_slice(&self.deployment().key_bytes());
        k[28..].copy_from_slice(&self.gseq.to_be_bytes());
        k
    }
}

impl OrderId {
    /// The group this order is for.
    pub fn group(self) -> GroupId {
        GroupId {
            owner: self.owner,
            dseq: self.dseq,
            gseq: self.gseq,
        }
    }

    /// The deployment this order is for.
    pub fn deployment(self) -> DeploymentId {
        self.group().deployment()
    }

    /// `provider`'s bid on this order.
    pub fn bid(self, provider: Address) -> BidId {
        BidId {
            owner: self.owner,
            dseq: self.dseq,
            gseq: self.gseq,
            oseq: self.oseq,
            provider,
        }
    }

    /// 36 bytes: group key, oseq big-endian.
    pub fn key_bytes(&self) -> [u8; 36] {
        let mut k = [0u8; 36];
        k[..32].copy_from_slice(&self.group().key_bytes());
        k[32..].copy_from_slice(&self.oseq.to_be_bytes());
        k
    }
}

impl BidId {
    /// The order this bid is on.
    pub fn order(self) -> OrderId {
        OrderId {
            owner: self.owner,
            dseq: self.dseq,
            gseq: self.gseq,
            oseq: self.oseq,
        }
    }

    /// The group this bid is for.
    pub fn group(self) -> GroupId {
        self.order().group()
    }

    /// The deployment this bid is for.
    pub fn deployment(self) -> DeploymentId {
        self.order().deployment()
    }

    /// 56 bytes: order key, provider.
    pub fn key_bytes(&self) -> [u8; 56] {
        let mut k = [0u8; 56];
        k[..36].copy_from_slice(&self.order().key_bytes());
        k[36..].copy_from_slice(&self.provider.0);
        k
    }
}

impl fmt::Display for DeploymentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.dseq)
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.deployment(), self.gseq)
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.group(), self.oseq)
    }
}

impl fmt::Display for BidId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.order(), self.provider)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_like_ids() {
        let a = DeploymentId {
            owner: Address([1; 20]),
            dseq: 2,
        };
        let b = DeploymentId {
            owner: Address([1; 20]),
            dseq: 256,
        };
        assert!(a < b && a.key_bytes() < b.key_bytes());
        let bid = a.group(3).order(4).bid(Address([5; 20]));
        assert_eq!(bid.order().group().deployment(), a);
        assert!(bid.key_bytes().starts_with(&a.group(3).key_bytes()));
        assert_eq!(bid.to_string().matches('/').count(), 4);
    }
}
