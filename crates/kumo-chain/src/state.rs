//! What the chain stores, and under which keys.
//!
//! Values are Borsh-encoded (the same canonical encoding as transactions). Keys start with one
//! byte naming the table, followed by fixed-width big-endian parts, so that a prefix scan lists
//! a deployment's groups, orders, bids and leases together and an index scans in height order:
//!
//! | prefix | key after the prefix              | value                  |
//! |--------|-----------------------------------|------------------------|
//! | `00`   | `"height"` / `"chain_id"` / `"params"` | `u64` / `String` / [`Params`](crate::Params) |
//! | `01`   | address                           | [`Account`]            |
//! | `02`   | address ‖ denom                   | `u128` balance         |
//! | `03`   | denom                             | `u128` total supply    |
//! | `10`   | provider address                  | [`Provider`]           |
//! | `11`   | provider ‖ auditor                | [`AuditedAttributes`]  |
//! | `20`   | deployment key (owner ‖ dseq)     | [`Deployment`]         |
//! | `21`   | group key (+ gseq)                | [`Group`]              |
//! | `22`   | order key (+ oseq)                | [`Order`]              |
//! | `23`   | bid key (+ provider)              | [`Bid`]                |
//! | `24`   | lease key (= bid key)             | [`Lease`]              |
//! | `25`   | provider ‖ order key              | `()`: the provider's open bids |
//! | `26`   | provider ‖ order key              | `()`: every lease of the provider |
//! | `27`   | order key                         | `()`: open orders      |
//! | `28`   | expiry height ‖ order key         | `()`: order TTL index  |
//! | `30`   | deployment key                    | [`EscrowAccount`] ‖ `Vec<`[`Payment`]`>` (one record) |
//! | `32`   | dry height ‖ deployment key       | `()`: depletion index  |
//! | `33`   | top-up height ‖ deployment key    | `()`: top-up index (accounts with an allowance) |
//! | `34`   | silence deadline ‖ provider       | `()`: liveness index (providers with leases) |
//! | `35`   | order key ‖ provider              | [`Decline`]            |

use borsh::{BorshDeserialize, BorshSerialize};
use kumo_types::{
    Address, Attribute, BidId, Coin, Dec, DecCoin, DeploymentId, GroupId, GroupSpec,
    LeaseCloseReason, LeaseId, OrderId, ProviderFields, PublicKey,
};
use serde::{Deserialize, Serialize};

use crate::store::Store;

/// Key builders, one per table (see the module docs).
pub mod keys {
    use kumo_types::{Address, BidId, DeploymentId, GroupId, OrderId};

    fn cat(prefix: u8, parts: &[&[u8]]) -> Vec<u8> {
        let mut k = Vec::with_capacity(1 + parts.iter().map(|p| p.len()).sum::<usize>());
        k.push(prefix);
        for p in parts {
            k.extend_from_slice(p);
        }
        k
    }

    /// Last committed height.
    pub fn height() -> Vec<u8> {
        cat(0x00, &[b"height"])
    }
    /// The chain id.
    pub fn chain_id() -> Vec<u8> {
        cat(0x00, &[b"chain_id"])
    }
    /// The parameters.
    pub fn params() -> Vec<u8> {
        cat(0x00, &[b"params"])
    }
    /// An account's nonce and key.
    pub fn account(a: &Address) -> Vec<u8> {
        cat(0x01, &[&a.0])
    }
    /// Prefix of every balance of `a`.
    pub fn balances(a: &Address) -> Vec<u8> {
        cat(0x02, &[&a.0])
    }
    /// Prefix of every balance.
    pub fn all_balances() -> Vec<u8> {
        vec![0x02]
    }
    /// One balance.
    pub fn balance(a: &Address, denom: &str) -> Vec<u8> {
        cat(0x02, &[&a.0, denom.as_bytes()])
    }
    /// Total supply of a denom.
    pub fn supply(denom: &str) -> Vec<u8> {
        cat(0x03, &[denom.as_bytes()])
    }
    /// Prefix of all supplies.
    pub fn all_supply() -> Vec<u8> {
        vec![0x03]
    }
    /// A provider record.
    pub fn provider(p: &Address) -> Vec<u8> {
        cat(0x10, &[&p.0])
    }
    /// Prefix of all providers.
    pub fn all_providers() -> Vec<u8> {
        vec![0x10]
    }
    /// One auditor's attestation of one provider.
    pub fn audit(p: &Address, auditor: &Address) -> Vec<u8> {
        cat(0x11, &[&p.0, &auditor.0])
    }
    /// Prefix of a provider's attestations.
    pub fn audits_of(p: &Address) -> Vec<u8> {
        cat(0x11, &[&p.0])
    }
    /// A deployment.
    pub fn deployment(id: &DeploymentId) -> Vec<u8> {
        cat(0x20, &[&id.key_bytes()])
    }
    /// Prefix of an owner's deployments (or all with `None`).
    pub fn deployments_of(owner: Option<&Address>) -> Vec<u8> {
        match owner {
            Some(o) => cat(0x20, &[&o.0]),
            None => vec![0x20],
        }
    }
    /// A group.
    pub fn group(id: &GroupId) -> Vec<u8> {
        cat(0x21, &[&id.key_bytes()])
    }
    /// An order.
    pub fn order(id: &OrderId) -> Vec<u8> {
        cat(0x22, &[&id.key_bytes()])
    }
    /// Prefix of all orders (or an owner's).
    pub fn orders_of(owner: Option<&Address>) -> Vec<u8> {
        match owner {
            Some(o) => cat(0x22, &[&o.0]),
            None => vec![0x22],
        }
    }
    /// A bid.
    pub fn bid(id: &BidId) -> Vec<u8> {
        cat(0x23, &[&id.key_bytes()])
    }
    /// Prefix of an order's bids.
    pub fn bids_of(id: &OrderId) -> Vec<u8> {
        cat(0x23, &[&id.key_bytes()])
    }
    /// Prefix of all bids.
    pub fn all_bids() -> Vec<u8> {
        vec![0x23]
    }
    /// A lease.
    pub fn lease(id: &BidId) -> Vec<u8> {
        cat(0x24, &[&id.key_bytes()])
    }
    /// Prefix of all leases (or an owner's).
    pub fn leases_of(owner: Option<&Address>) -> Vec<u8> {
        match owner {
            Some(o) => cat(0x24, &[&o.0]),
            None => vec![0x24],
        }
    }
    /// Index entry: an open bid of a provider (the bid key's provider comes first instead of
    /// last, so the key is no longer than the bid's).
    pub fn provider_bid(id: &BidId) -> Vec<u8> {
        cat(0x25, &[&id.provider.0, &id.order().key_bytes()])
    }
    /// Prefix of a provider's open bids.
    pub fn provider_bids(p: &Address) -> Vec<u8> {
        cat(0x25, &[&p.0])
    }
    /// Index entry: a lease of a provider (provider ‖ order key, like [`provider_bid`]).
    pub fn provider_lease(id: &BidId) -> Vec<u8> {
        cat(0x26, &[&id.provider.0, &id.order().key_bytes()])
    }
    /// Prefix of a provider's leases.
    pub fn provider_leases(p: &Address) -> Vec<u8> {
        cat(0x26, &[&p.0])
    }
    /// Index entry: an open order.
    pub fn open_order(id: &OrderId) -> Vec<u8> {
        cat(0x27, &[&id.key_bytes()])
    }
    /// Prefix of open orders.
    pub fn open_orders() -> Vec<u8> {
        vec![0x27]
    }
    /// Index entry: an order expiring at `height`.
    pub fn order_expiry(height: u64, id: &OrderId) -> Vec<u8> {
        cat(0x28, &[&height.to_be_bytes(), &id.key_bytes()])
    }
    /// Prefix of the orders expiring at `height`.
    pub fn order_expiries_at(height: u64) -> Vec<u8> {
        cat(0x28, &[&height.to_be_bytes()])
    }
    /// An escrow account.
    pub fn escrow(id: &DeploymentId) -> Vec<u8> {
        cat(0x30, &[&id.key_bytes()])
    }
    /// Prefix of all escrow accounts.
    pub fn all_escrows() -> Vec<u8> {
        vec![0x30]
    }
    /// Index entry: an escrow account that runs dry at `height`.
    pub fn depletion(height: u64, id: &DeploymentId) -> Vec<u8> {
        cat(0x32, &[&height.to_be_bytes(), &id.key_bytes()])
    }
    /// Prefix of the accounts running dry at `height`.
    pub fn depletions_at(height: u64) -> Vec<u8> {
        cat(0x32, &[&height.to_be_bytes()])
    }
    /// Index entry: an account whose allowance tops it up at the end of `height`.
    pub fn top_up(height: u64, id: &DeploymentId) -> Vec<u8> {
        cat(0x33, &[&height.to_be_bytes(), &id.key_bytes()])
    }
    /// Prefix of the accounts topped up at the end of `height`.
    pub fn top_ups_at(height: u64) -> Vec<u8> {
        cat(0x33, &[&height.to_be_bytes()])
    }
    /// Index entry: a provider whose leases close at the end of `height` unless it proves it
    /// is alive before.
    pub fn silence_deadline(height: u64, p: &Address) -> Vec<u8> {
        cat(0x34, &[&height.to_be_bytes(), &p.0])
    }
    /// Prefix of the providers whose silence deadline is `height`.
    pub fn silence_deadlines_at(height: u64) -> Vec<u8> {
        cat(0x34, &[&height.to_be_bytes()])
    }
    /// A provider's decline of an order.
    pub fn decline(order: &OrderId, p: &Address) -> Vec<u8> {
        cat(0x35, &[&order.key_bytes(), &p.0])
    }
    /// Prefix of an order's declines.
    pub fn declines_of(order: &OrderId) -> Vec<u8> {
        cat(0x35, &[&order.key_bytes()])
    }
}

/// Reads and decodes a value. A value that does not decode means corrupt state: the node must
/// stop rather than diverge, so this panics.
pub(crate) fn get<T: BorshDeserialize>(s: &dyn Store, key: &[u8]) -> Option<T> {
    s.get(key).map(|v| {
        borsh::from_slice(&v)
            .unwrap_or_else(|e| panic!("corrupt state at key {}: {e}", hex::encode(key)))
    })
}

/// Encodes and writes a value.
pub(crate) fn put<T: BorshSerialize>(s: &mut dyn Store, key: &[u8], v: &T) {
    s.put(
        key,
        borsh::to_vec(v).expect("encoding to a Vec cannot fail"),
    );
}

/// Decodes every value under a prefix.
pub(crate) fn scan<T: BorshDeserialize>(s: &dyn Store, prefix: &[u8]) -> Vec<T> {
    s.scan_prefix(prefix)
        .into_iter()
        .map(|(k, v)| {
            borsh::from_slice(&v)
                .unwrap_or_else(|e| panic!("corrupt state at key {}: {e}", hex::encode(k)))
        })
        .collect()
}

/// An account's sequence and key (known once it has sent a transaction).
#[derive(
    Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize,
)]
pub struct Account {
    /// Number of transactions accepted from this account: the nonce its next one must carry.
    pub nonce: u64,
    /// Its public key, recorded with its first transaction.
    pub public_key: Option<PublicKey>,
}

/// A registered provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct Provider {
    /// The provider's account.
    pub owner: Address,
    /// Host URI, attributes, contact and certificate fingerprint.
    #[serde(flatten)]
    pub fields: ProviderFields,
    /// Height of registration.
    pub created_at: u64,
    /// Leases now active. Counted here rather than indexed so that closing a lease (as the end
    /// of a block does for every account that ran dry) updates one record by key instead of
    /// removing an entry from an ordered index as large as all leases.
    pub active_leases: u64,
    /// Height of its last proof of life (registration, heartbeat, bid, decline, withdrawal).
    pub last_seen: u64,
    /// While it has leases: the end of which block closes them `provider_unresponsive` unless
    /// it proves it is alive first (`max(last_seen, newest lease) + liveness_window`).
    pub silence_deadline: Option<u64>,
}

/// A provider's answer "no bid" to an order, with its reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct Decline {
    /// The order.
    pub order: OrderId,
    /// The provider.
    pub provider: Address,
    /// Why, as a code.
    pub reason: kumo_types::DeclineReason,
    /// Why, in words.
    pub detail: String,
    /// Height it was recorded at.
    pub height: u64,
}

/// The attributes one auditor signed for one provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct AuditedAttributes {
    /// The provider.
    pub provider: Address,
    /// The auditor.
    pub auditor: Address,
    /// What it vouches for, sorted by key.
    pub attributes: Vec<Attribute>,
}

/// Lifecycle of a deployment.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentState {
    /// Running or waiting for leases.
    Active,
    /// Closed by its owner or because its escrow ran dry.
    Closed,
}

/// A tenant's deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct Deployment {
    /// Its id.
    pub id: DeploymentId,
    /// State.
    pub state: DeploymentState,
    /// Manifest hash.
    #[serde(with = "kumo_types::msg::hex32")]
    pub hash: [u8; 32],
    /// The denomination of its prices and escrow.
    pub denom: String,
    /// Number of groups.
    pub groups: u32,
    /// Height of creation.
    pub created_at: u64,
}

/// Lifecycle of a group.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum GroupState {
    /// Has an open order or an active lease.
    Open,
    /// Paused by its owner, its provider, or an expired order: `StartGroup` reopens it.
    Paused,
    /// Closed because the escrow ran dry.
    InsufficientFunds,
    /// Closed for good.
    Closed,
}

/// One placement group of a deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct Group {
    /// Its id.
    pub id: GroupId,
    /// State.
    pub state: GroupState,
    /// The spec from the SDL.
    pub spec: GroupSpec,
    /// Sequence of its latest order.
    pub oseq: u32,
    /// Height of creation.
    pub created_at: u64,
}

/// Lifecycle of an order.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum OrderState {
    /// Taking bids.
    Open,
    /// A lease was made from one of its bids.
    Active,
    /// Over.
    Closed,
}

/// One round of bidding for a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct Order {
    /// Its id.
    pub id: OrderId,
    /// State.
    pub state: OrderState,
    /// Highest price per block the tenant accepts (the group's total price).
    pub price: DecCoin,
    /// Height of creation.
    pub created_at: u64,
    /// Height at whose end it closes if still open (`created_at + order_ttl`).
    pub expires_at: u64,
    /// The provider whose bid became the lease, once leased.
    pub leased_to: Option<Address>,
}

/// Lifecycle of a bid.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum BidState {
    /// Waiting for the tenant.
    Open,
    /// Accepted: a lease runs.
    Active,
    /// Another bid was accepted.
    Lost,
    /// Withdrawn, expired, or its lease closed.
    Closed,
}

/// A provider's offer on an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct Bid {
    /// Its id.
    pub id: BidId,
    /// State.
    pub state: BidState,
    /// Price per block for the whole group.
    pub price: DecCoin,
    /// Deposit held while open or active.
    pub deposit: Coin,
    /// Height of creation.
    pub created_at: u64,
    /// The GPUs the bid offers (model, memory, interface, count); empty for groups without.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<kumo_types::GpuOffer>,
}

/// Lifecycle of a lease.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum LeaseState {
    /// Running and paid.
    Active,
    /// Closed by tenant or provider.
    Closed,
    /// Closed because the escrow ran dry.
    InsufficientFunds,
}

/// A running agreement between a tenant and a provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct Lease {
    /// Its id (= the bid's).
    pub id: LeaseId,
    /// State.
    pub state: LeaseState,
    /// Price per block.
    pub price: DecCoin,
    /// Height of creation.
    pub created_at: u64,
    /// Height it closed at.
    pub closed_at: Option<u64>,
    /// Why it closed.
    pub close_reason: Option<LeaseCloseReason>,
}

/// Lifecycle of an escrow account.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum EscrowState {
    /// Funding its payments.
    Open,
    /// Closed with its deployment; the rest refunded.
    Closed,
    /// Ran dry; its leases closed.
    Overdrawn,
}

/// A deployment's escrow: funds that pay its leases block by block, settled lazily.
///
/// Between settlements nothing is written: what the account owes at height `h` is
/// `rate × (h − settled_at)`. The account runs dry at height
/// `settled_at + floor(balance / rate)`, the last block it can pay in full; that height is
/// `depletes_at`, indexed so the end of that block closes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct EscrowAccount {
    /// The deployment it funds.
    pub id: DeploymentId,
    /// State.
    pub state: EscrowState,
    /// Denomination.
    pub denom: String,
    /// Funds not yet paid out to payments, as of `settled_at`.
    pub balance: Dec,
    /// Σ rates of its open payments, per block.
    pub rate: Dec,
    /// Height up to which payments are settled.
    pub settled_at: u64,
    /// Total ever deposited.
    pub deposited: u128,
    /// Refunded to the owner when the account closed.
    pub refunded: u128,
    /// Height it runs dry at, when it has open payments.
    pub depletes_at: Option<u64>,
    /// The automatic top-up allowed by some account (`GrantTopUp`), while it lasts.
    pub top_up: Option<TopUpAllowance>,
    /// The end of which block tops it up next (indexed), while it has an allowance and a rate.
    pub top_up_at: Option<u64>,
}

/// An allowance to move funds from `granter` into a deployment's escrow when it runs low.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct TopUpAllowance {
    /// Whose funds.
    pub granter: Address,
    /// What may still be moved, in the escrow's denomination.
    pub remaining: u128,
    /// Top up when fewer than this many blocks of funds remain, by this many blocks' worth.
    pub below_blocks: u64,
    /// Moved so far.
    pub spent: u128,
}

/// Lifecycle of a payment.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum PaymentState {
    /// Accruing.
    Open,
    /// Its lease closed.
    Closed,
}

/// The stream of funds from an escrow account to one lease's provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct Payment {
    /// The lease.
    pub id: LeaseId,
    /// State.
    pub state: PaymentState,
    /// Per block.
    pub rate: Dec,
    /// Earned and not yet withdrawn (withdrawals take whole units; the fraction stays).
    pub balance: Dec,
    /// Withdrawn so far, before the take rate.
    pub withdrawn: u128,
}
