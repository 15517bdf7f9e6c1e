//! The messages a transaction carries, one per action, named as Akash's.
//!
//! Every message acts for the transaction's signer (the *sender*): where a message names an
//! owner (a deployment id) or a provider (a bid id), the chain checks it is the sender. The
//! Borsh tag of each [`Msg`] variant is its position in the enum, from 0 (`Send`); the layout of
//! each is in `docs/tx-format.md`.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::{
    Address, Attribute, BidId, Coin, Coins, DecCoin, DeploymentId, GpuOffer, GroupId, GroupSpec,
    LeaseId, OrderId,
};

/// 32 bytes as 64 hex digits in JSON.
pub mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes as hex.
    pub fn serialize<S: Serializer>(b: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(b))
    }

    /// Parses 64 hex digits.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(&s, &mut out)
            .map_err(|_| serde::de::Error::custom(format!("{s:?} is not 64 hex digits")))?;
        Ok(out)
    }
}

/// Contact details a provider publishes.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize,
)]
pub struct ProviderInfo {
    /// Where to reach the operator.
    pub email: String,
    /// The operator's website.
    pub website: String,
}

/// A provider record's fields, as sent in `CreateProvider` and `UpdateProvider`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct ProviderFields {
    /// The gateway's public URL, `https://host:port`.
    pub host_uri: String,
    /// Attributes the provider advertises (`region`, `capabilities/storage/1/class`, ...).
    pub attributes: Vec<Attribute>,
    /// Contact details.
    pub info: ProviderInfo,
    /// SHA-256 fingerprint of the gateway's TLS certificate, which clients pin.
    #[serde(with = "hex32")]
    pub tls_cert_sha256: [u8; 32],
}

/// Why a lease was closed.
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
#[serde(rename_all = "snake_case")]
pub enum LeaseCloseReason {
    /// No reason given.
    Unspecified,
    /// The tenant closed it (directly, or by closing or pausing its group or deployment).
    Owner,
    /// The provider: the workload was unstable.
    Unstable,
    /// The provider is decommissioning the capacity.
    Decommission,
    /// The provider got no manifest in time.
    ManifestTimeout,
    /// The provider: performance problems.
    Performance,
    /// The deployment's escrow ran dry (set by the chain only).
    InsufficientFunds,
    /// The provider sent no liveness proof for `liveness_window` blocks (set by the chain
    /// only); the silent blocks were refunded to the deployment.
    ProviderUnresponsive,
}

impl LeaseCloseReason {
    /// Its name, as in JSON (`provider_unresponsive`).
    pub fn as_str(self) -> &'static str {
        match self {
            LeaseCloseReason::Unspecified => "unspecified",
            LeaseCloseReason::Owner => "owner",
            LeaseCloseReason::Unstable => "unstable",
            LeaseCloseReason::Decommission => "decommission",
            LeaseCloseReason::ManifestTimeout => "manifest_timeout",
            LeaseCloseReason::Performance => "performance",
            LeaseCloseReason::InsufficientFunds => "insufficient_funds",
            LeaseCloseReason::ProviderUnresponsive => "provider_unresponsive",
        }
    }

    /// Whether only the chain may set this reason (a `CloseLease` naming it is refused).
    pub fn is_chain_only(self) -> bool {
        matches!(
            self,
            LeaseCloseReason::InsufficientFunds | LeaseCloseReason::ProviderUnresponsive
        )
    }
}

/// Why a provider declined an order (`DeclineOrder`), as a code a tenant's tool can act on.
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
#[serde(rename_all = "snake_case")]
pub enum DeclineReason {
    /// Its attributes or audited attributes do not satisfy the group's requirements.
    Attributes,
    /// Not enough free CPU, memory, storage or GPUs now.
    Capacity,
    /// Something it never serves (VMs off, leased IPs, a unit below its minimum, too many
    /// replicas for a lease network).
    Unsupported,
    /// Its price is above the order's maximum.
    Price,
    /// Anything else (the detail says what).
    Other,
}

impl std::fmt::Display for DeclineReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DeclineReason::Attributes => "attributes",
            DeclineReason::Capacity => "capacity",
            DeclineReason::Unsupported => "unsupported",
            DeclineReason::Price => "price",
            DeclineReason::Other => "other",
        })
    }
}

/// One action in a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Msg {
    /// bank: move coins from the sender to `to`.
    Send {
        /// Recipient.
        to: Address,
        /// Coins to move.
        amount: Coins,
    },
    /// provider: register the sender as a provider.
    CreateProvider(ProviderFields),
    /// provider: replace the sender's provider record.
    UpdateProvider(ProviderFields),
    /// provider: remove the sender's provider record (refused while it has bids or leases).
    DeleteProvider,
    /// audit: the sender, as auditor, vouches for `attributes` of `provider` (merged with what
    /// it signed before: same keys replaced).
    SignProviderAttributes {
        /// The audited provider.
        provider: Address,
        /// Attributes vouched for.
        attributes: Vec<Attribute>,
    },
    /// audit: withdraw the sender's attestation of `keys` (all of them when empty).
    DeleteProviderAttributes {
        /// The audited provider.
        provider: Address,
        /// Keys to withdraw; empty for all.
        keys: Vec<String>,
    },
    /// deployment: create a deployment with one order per group, funded by `deposit`.
    CreateDeployment {
        /// The new deployment's id (owner = sender).
        id: DeploymentId,
        /// Placement groups (from the SDL).
        groups: Vec<GroupSpec>,
        /// SHA-256 of the manifest.
        #[serde(with = "hex32")]
        hash: [u8; 32],
        /// Initial escrow deposit, in the groups' price denomination.
        deposit: Coin,
    },
    /// deployment: replace the manifest hash.
    UpdateDeployment {
        /// The deployment.
        id: DeploymentId,
        /// New manifest hash.
        #[serde(with = "hex32")]
        hash: [u8; 32],
    },
    /// deployment: add funds to a deployment's escrow (anyone may; refunds go to the owner).
    DepositDeployment {
        /// The deployment.
        id: DeploymentId,
        /// Amount, in the escrow's denomination.
        amount: Coin,
    },
    /// deployment: close a deployment, its groups, orders, bids and leases; refund the escrow.
    CloseDeployment {
        /// The deployment.
        id: DeploymentId,
    },
    /// deployment: close one group for good.
    CloseGroup {
        /// The group.
        id: GroupId,
    },
    /// deployment: pause a group (its lease or order closes); `StartGroup` reopens it.
    PauseGroup {
        /// The group.
        id: GroupId,
    },
    /// deployment: reopen a paused group with a new order.
    StartGroup {
        /// The group.
        id: GroupId,
    },
    /// market: the sender, a provider, bids on an order.
    CreateBid {
        /// The order.
        order: OrderId,
        /// Price per block for the whole group.
        price: DecCoin,
        /// Deposit held until the bid closes (refunded then).
        deposit: Coin,
        /// The GPUs the provider reserved for the order (empty when the group needs none);
        /// checked by [`crate::gpu::validate_offers`] and stored with the bid.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        gpus: Vec<GpuOffer>,
    },
    /// market: the provider withdraws its bid (closing its lease, if any).
    CloseBid {
        /// The bid.
        id: BidId,
    },
    /// market: the tenant accepts a bid; the other bids on the order are lost.
    CreateLease {
        /// The accepted bid.
        bid: BidId,
    },
    /// market: the tenant or the provider closes a lease.
    CloseLease {
        /// The lease.
        id: LeaseId,
        /// Why (not `insufficient_funds`, which only the chain sets).
        reason: LeaseCloseReason,
    },
    /// market: the provider collects what the lease has earned so far.
    WithdrawLease {
        /// The lease.
        id: LeaseId,
    },
    /// market: the provider collects what each of many leases has earned, in one message (at
    /// most the `max_leases_per_withdraw` parameter, none twice). Every lease must be the
    /// sender's; leases no longer active are skipped.
    WithdrawLeases {
        /// The leases.
        ids: Vec<LeaseId>,
    },
    /// provider: the sender, a provider, proves it is alive (for every lease it holds).
    /// `WithdrawLeases`, `CreateBid` and `DeclineOrder` prove it too.
    ProviderHeartbeat,
    /// market: the sender, a provider, will not bid on an open order, and says why; the tenant
    /// reads it (`GET /v1/declines`) instead of waiting out the order.
    DeclineOrder {
        /// The order.
        order: OrderId,
        /// Why, as a code.
        reason: DeclineReason,
        /// Why, in words (at most `max_string_bytes`).
        detail: String,
    },
    /// escrow: the sender allows the chain to move up to `limit` from its account into the
    /// deployment's escrow, `below_blocks` blocks' worth at a time, whenever fewer than
    /// `below_blocks` blocks of funds remain (replaces the deployment's allowance, if any).
    GrantTopUp {
        /// The deployment.
        id: DeploymentId,
        /// The most moved in all, in the escrow's denomination.
        limit: Coin,
        /// The threshold, and the size of each top-up, in blocks of the current rate.
        below_blocks: u64,
    },
    /// escrow: ends the deployment's allowance (its granter or the deployment's owner).
    RevokeTopUp {
        /// The deployment.
        id: DeploymentId,
    },
}

impl Msg {
    /// The message's name, as in events and errors (`create_bid`).
    pub fn name(&self) -> &'static str {
        match self {
            Msg::Send { .. } => "send",
            Msg::CreateProvider(_) => "create_provider",
            Msg::UpdateProvider(_) => "update_provider",
            Msg::DeleteProvider => "delete_provider",
            Msg::SignProviderAttributes { .. } => "sign_provider_attributes",
            Msg::DeleteProviderAttributes { .. } => "delete_provider_attributes",
            Msg::CreateDeployment { .. } => "create_deployment",
            Msg::UpdateDeployment { .. } => "update_deployment",
            Msg::DepositDeployment { .. } => "deposit_deployment",
            Msg::CloseDeployment { .. } => "close_deployment",
            Msg::CloseGroup { .. } => "close_group",
            Msg::PauseGroup { .. } => "pause_group",
            Msg::StartGroup { .. } => "start_group",
            Msg::CreateBid { .. } => "create_bid",
            Msg::CloseBid { .. } => "close_bid",
            Msg::CreateLease { .. } => "create_lease",
            Msg::CloseLease { .. } => "close_lease",
            Msg::WithdrawLease { .. } => "withdraw_lease",
            Msg::WithdrawLeases { .. } => "withdraw_leases",
            Msg::ProviderHeartbeat => "provider_heartbeat",
            Msg::DeclineOrder { .. } => "decline_order",
            Msg::GrantTopUp { .. } => "grant_top_up",
            Msg::RevokeTopUp { .. } => "revoke_top_up",
        }
    }
}
