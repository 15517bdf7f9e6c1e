//! Events: a typed record of every state change, with the height and the transaction that
//! caused it.
//!
//! Events are outputs, not state: the node keeps them with its blocks and serves them at
//! `/v1/events`. Those from `begin_block`/`end_block` have no transaction hash.

use borsh::{BorshDeserialize, BorshSerialize};
use kumo_types::{
    Address, BidId, Coin, DecCoin, DeploymentId, GroupId, LeaseCloseReason, LeaseId, OrderId,
};
use serde::{Deserialize, Serialize};

/// Why an order closed.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum OrderCloseReason {
    /// No lease within `order_ttl` blocks.
    Expired,
    /// Its group was closed or paused.
    GroupClosed,
    /// Its lease closed.
    LeaseClosed,
}

/// One state change. (Borsh: the block store's encoding; append new variants at the end.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
#[serde(tag = "type")]
pub enum Event {
    /// Coins moved between accounts (module accounts included).
    Transfer {
        /// Payer.
        from: Address,
        /// Payee.
        to: Address,
        /// Amount.
        amount: Coin,
    },
    /// A transaction's fee was paid.
    FeePaid {
        /// Payer.
        payer: Address,
        /// Fee.
        fee: Coin,
    },
    /// A provider registered.
    ProviderCreated {
        /// Provider.
        owner: Address,
    },
    /// A provider changed its record.
    ProviderUpdated {
        /// Provider.
        owner: Address,
    },
    /// A provider deregistered.
    ProviderDeleted {
        /// Provider.
        owner: Address,
    },
    /// An auditor signed attributes of a provider.
    ProviderAttributesSigned {
        /// Provider.
        provider: Address,
        /// Auditor.
        auditor: Address,
    },
    /// An auditor withdrew attributes of a provider.
    ProviderAttributesDeleted {
        /// Provider.
        provider: Address,
        /// Auditor.
        auditor: Address,
    },
    /// A deployment was created.
    DeploymentCreated {
        /// Deployment.
        id: DeploymentId,
    },
    /// A deployment's manifest hash changed.
    DeploymentUpdated {
        /// Deployment.
        id: DeploymentId,
    },
    /// A deployment closed.
    DeploymentClosed {
        /// Deployment.
        id: DeploymentId,
    },
    /// A group was paused.
    GroupPaused {
        /// Group.
        id: GroupId,
    },
    /// A paused group was started again.
    GroupStarted {
        /// Group.
        id: GroupId,
    },
    /// A group closed.
    GroupClosed {
        /// Group.
        id: GroupId,
    },
    /// An order opened for bids.
    OrderCreated {
        /// Order.
        id: OrderId,
        /// Highest price per block.
        price: DecCoin,
        /// Height at whose end it expires if not leased.
        expires_at: u64,
    },
    /// An order closed.
    OrderClosed {
        /// Order.
        id: OrderId,
        /// Why.
        reason: OrderCloseReason,
    },
    /// A provider bid.
    BidCreated {
        /// Bid.
        id: BidId,
        /// Price per block.
        price: DecCoin,
        /// Deposit held.
        deposit: Coin,
    },
    /// A bid closed (withdrawn, expired or its lease closed); its deposit refunded.
    BidClosed {
        /// Bid.
        id: BidId,
    },
    /// A bid lost to another; its deposit refunded.
    BidLost {
        /// Bid.
        id: BidId,
    },
    /// A lease started.
    LeaseCreated {
        /// Lease.
        id: LeaseId,
        /// Price per block.
        price: DecCoin,
    },
    /// A lease closed.
    LeaseClosed {
        /// Lease.
        id: LeaseId,
        /// Why.
        reason: LeaseCloseReason,
    },
    /// A provider collected a lease's earnings.
    LeaseWithdrawn {
        /// Lease.
        id: LeaseId,
        /// Paid to the provider.
        amount: Coin,
        /// Paid to the community pool.
        take: Coin,
    },
    /// Funds were added to a deployment's escrow.
    EscrowDeposited {
        /// Deployment.
        id: DeploymentId,
        /// Who paid.
        depositor: Address,
        /// Amount.
        amount: Coin,
    },
    /// An escrow account closed and refunded its rest to the owner.
    EscrowClosed {
        /// Deployment.
        id: DeploymentId,
        /// Refunded to the owner.
        refund: Coin,
        /// Whether it ran dry.
        overdrawn: bool,
    },
    /// A lease closed `provider_unresponsive` gave back what it earned while its provider was
    /// silent.
    SilentBlocksRefunded {
        /// Lease.
        id: LeaseId,
        /// The silent blocks.
        blocks: u64,
        /// What went back to the deployment's escrow.
        amount: DecCoin,
    },
    /// A provider with leases sent no proof of life for `liveness_window` blocks: its leases
    /// close `provider_unresponsive` in the same block.
    ProviderSilent {
        /// The provider.
        provider: Address,
        /// Height of its last proof of life.
        last_seen: u64,
    },
    /// A provider declined an order.
    OrderDeclined {
        /// Order.
        order: OrderId,
        /// Provider.
        provider: Address,
        /// Why.
        reason: kumo_types::DeclineReason,
    },
    /// An account allowed automatic top-ups of a deployment's escrow.
    TopUpGranted {
        /// Deployment.
        id: DeploymentId,
        /// Whose funds.
        granter: Address,
        /// The most moved in all.
        limit: Coin,
        /// Threshold and size of each top-up, in blocks.
        below_blocks: u64,
    },
    /// The end of a block moved funds from an allowance's granter into an escrow.
    EscrowToppedUp {
        /// Deployment.
        id: DeploymentId,
        /// Who paid.
        granter: Address,
        /// Amount.
        amount: Coin,
        /// What the allowance has left.
        remaining: u128,
    },
    /// An allowance ended.
    TopUpEnded {
        /// Deployment.
        id: DeploymentId,
        /// Why.
        reason: crate::escrow::TopUpEnd,
    },
}

/// An event with where it happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    /// Block height.
    pub height: u64,
    /// Hash of the transaction (hex in JSON), or none for begin/end block.
    #[serde(with = "opt_hex32")]
    pub tx_hash: Option<[u8; 32]>,
    /// The event.
    pub event: Event,
}

mod opt_hex32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(b: &Option<[u8; 32]>, s: S) -> Result<S::Ok, S::Error> {
        match b {
            Some(b) => s.serialize_some(&hex::encode(b)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<[u8; 32]>, D::Error> {
        let Some(s) = Option::<String>::deserialize(d)? else {
            return Ok(None);
        };
        let mut out = [0u8; 32];
        hex::decode_to_slice(&s, &mut out).map_err(serde::de::Error::custom)?;
        Ok(Some(out))
    }
}
