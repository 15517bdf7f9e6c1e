//! Typed queries: everything the node API serves, each answer tagged with the height it was
//! read at.
//!
//! [`Queries`] reads a store as of its last committed block. The node keeps one store version
//! per height it serves (QMDB), so "at height `h`" is `Queries::new(&store_at_h)`. Escrow
//! answers are settled lazily in memory to that height, so balances are current without a
//! write. Filters that have an index use it (open orders, a provider's bids and leases, an
//! owner's deployments and leases); the others scan their table.

use kumo_types::{Address, BidId, Coins, DeploymentId, LeaseId, OrderId, PublicKey};
use serde::{Deserialize, Serialize};

use crate::{
    Params, audit, bank, deployment, escrow, market, provider,
    state::{
        self, Account, AuditedAttributes, Bid, BidState, Deployment, DeploymentState,
        EscrowAccount, Group, Lease, LeaseState, Order, OrderState, Payment, Provider, keys,
    },
    store::Store,
};

/// An answer and the height it was read at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AtHeight<T> {
    /// The last committed height of the state read.
    pub height: u64,
    /// The answer.
    pub value: T,
}

/// `GET /v1/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainStatus {
    /// Chain id.
    pub chain_id: String,
    /// Last committed height.
    pub height: u64,
}

/// `GET /v1/accounts/{addr}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountView {
    /// Address.
    pub address: Address,
    /// The nonce its next transaction must carry.
    pub nonce: u64,
    /// Its key, once it has sent a transaction.
    pub public_key: Option<PublicKey>,
    /// Balances.
    pub balances: Coins,
}

/// `GET /v1/providers/{addr}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderView {
    /// The record.
    pub provider: Provider,
    /// Auditors' attestations.
    pub attestations: Vec<AuditedAttributes>,
}

/// An escrow account settled to the query height, with its payments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscrowView {
    /// The account.
    pub account: EscrowAccount,
    /// Its payments.
    pub payments: Vec<Payment>,
}

/// `GET /v1/deployments/{owner}/{dseq}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentView {
    /// The deployment.
    pub deployment: Deployment,
    /// Its groups.
    pub groups: Vec<Group>,
    /// Its escrow.
    pub escrow: Option<EscrowView>,
}

/// Filters of `GET /v1/deployments`.
#[derive(Debug, Clone, Default)]
pub struct DeploymentFilter {
    /// Only this owner's.
    pub owner: Option<Address>,
    /// Only in this state.
    pub state: Option<DeploymentState>,
}

/// Filters of `GET /v1/orders`.
#[derive(Debug, Clone, Default)]
pub struct OrderFilter {
    /// Only this owner's.
    pub owner: Option<Address>,
    /// Only in this state.
    pub state: Option<OrderState>,
}

/// Filters of `GET /v1/bids`.
#[derive(Debug, Clone, Default)]
pub struct BidFilter {
    /// Only on this order.
    pub order: Option<OrderId>,
    /// Only this provider's.
    pub provider: Option<Address>,
    /// Only in this state.
    pub state: Option<BidState>,
}

/// Filters of `GET /v1/leases`.
#[derive(Debug, Clone, Default)]
pub struct LeaseFilter {
    /// Only this owner's.
    pub owner: Option<Address>,
    /// Only this provider's.
    pub provider: Option<Address>,
    /// Only in this state.
    pub state: Option<LeaseState>,
}

/// Reads a store as of its last committed height.
pub struct Queries<'a> {
    store: &'a dyn Store,
    height: u64,
}

/// The bid (or lease) id of a provider index key (`25`/`26` ‖ provider ‖ order key).
pub(crate) fn bid_id_from_index(k: &[u8], prefix_len: usize) -> BidId {
    // index key: prefix ‖ provider(20) ‖ order key(36)
    let k = &k[prefix_len..];
    let addr = |b: &[u8]| Address(b.try_into().expect("20 bytes"));
    BidId {
        provider: addr(&k[..20]),
        owner: addr(&k[20..40]),
        dseq: u64::from_be_bytes(k[40..48].try_into().expect("8 bytes")),
        gseq: u32::from_be_bytes(k[48..52].try_into().expect("4 bytes")),
        oseq: u32::from_be_bytes(k[52..56].try_into().expect("4 bytes")),
    }
}

impl<'a> Queries<'a> {
    /// Queries over `store`.
    pub fn new(store: &'a dyn Store) -> Queries<'a> {
        let height = state::get::<u64>(store, &keys::height()).unwrap_or(0);
        Queries { store, height }
    }

    fn at<T>(&self, value: T) -> AtHeight<T> {
        AtHeight {
            height: self.height,
            value,
        }
    }

    /// Chain id and height.
    pub fn status(&self) -> AtHeight<ChainStatus> {
        let chain_id = state::get::<String>(self.store, &keys::chain_id()).unwrap_or_default();
        self.at(ChainStatus {
            chain_id,
            height: self.height,
        })
    }

    /// Parameters.
    pub fn params(&self) -> AtHeight<Params> {
        self.at(state::get(self.store, &keys::params()).unwrap_or_default())
    }

    /// An account's nonce, key and balances (an unknown address has nonce 0 and nothing).
    pub fn account(&self, address: &Address) -> AtHeight<AccountView> {
        let a = state::get::<Account>(self.store, &keys::account(address)).unwrap_or_default();
        self.at(AccountView {
            address: *address,
            nonce: a.nonce,
            public_key: a.public_key,
            balances: bank::balances(self.store, address),
        })
    }

    /// Total supply per denomination.
    pub fn supply(&self) -> AtHeight<Coins> {
        self.at(bank::supply(self.store))
    }

    /// One provider with its attestations.
    pub fn provider(&self, address: &Address) -> AtHeight<Option<ProviderView>> {
        self.at(provider::get(self.store, address).map(|p| ProviderView {
            attestations: audit::attestations(self.store, address),
            provider: p,
        }))
    }

    /// Every provider.
    pub fn providers(&self) -> AtHeight<Vec<Provider>> {
        self.at(state::scan(self.store, &keys::all_providers()))
    }

    fn escrow_view(&self, id: &DeploymentId) -> Option<EscrowView> {
        let mut account = escrow::account(self.store, id)?;
        let mut payments = escrow::payments(self.store, id);
        escrow::settle_in_memory(&mut account, &mut payments, self.height);
        Some(EscrowView { account, payments })
    }

    /// The escrow account of a deployment, settled to the query height.
    pub fn escrow(&self, id: &DeploymentId) -> AtHeight<Option<EscrowView>> {
        self.at(self.escrow_view(id))
    }

    fn deployment_view(&self, d: Deployment) -> DeploymentView {
        DeploymentView {
            groups: deployment::groups(self.store, &d.id),
            escrow: self.escrow_view(&d.id),
            deployment: d,
        }
    }

    /// One deployment with groups and escrow.
    pub fn deployment(&self, id: &DeploymentId) -> AtHeight<Option<DeploymentView>> {
        self.at(deployment::get(self.store, id).map(|d| self.deployment_view(d)))
    }

    /// Deployments, by owner and state.
    pub fn deployments(&self, f: &DeploymentFilter) -> AtHeight<Vec<DeploymentView>> {
        let all: Vec<Deployment> = state::scan(self.store, &keys::deployments_of(f.owner.as_ref()));
        self.at(all
            .into_iter()
            .filter(|d| f.state.is_none_or(|s| d.state == s))
            .map(|d| self.deployment_view(d))
            .collect())
    }

    /// One order.
    pub fn order(&self, id: &OrderId) -> AtHeight<Option<Order>> {
        self.at(market::order(self.store, id))
    }

    /// Orders, by owner and state (open orders come from their index).
    pub fn orders(&self, f: &OrderFilter) -> AtHeight<Vec<Order>> {
        let orders: Vec<Order> = if f.state == Some(OrderState::Open) {
            let prefix = keys::open_orders();
            self.store
                .scan_prefix(&prefix)
                .into_iter()
                .filter(|(k, _)| f.owner.is_none_or(|o| k[1..21] == o.0))
                .filter_map(|(k, _)| {
                    let mut ok = keys::orders_of(None);
                    ok.extend_from_slice(&k[1..]);
                    state::get(self.store, &ok)
                })
                .collect()
        } else {
            state::scan::<Order>(self.store, &keys::orders_of(f.owner.as_ref()))
                .into_iter()
                .filter(|o| f.state.is_none_or(|s| o.state == s))
                .collect()
        };
        self.at(orders)
    }

    /// One bid.
    pub fn bid(&self, id: &BidId) -> AtHeight<Option<Bid>> {
        self.at(market::bid(self.store, id))
    }

    /// Bids, by order, provider and state.
    pub fn bids(&self, f: &BidFilter) -> AtHeight<Vec<Bid>> {
        let candidates: Vec<Bid> = match (&f.order, &f.provider, f.state) {
            (Some(o), _, _) => state::scan(self.store, &keys::bids_of(o)),
            (None, Some(p), Some(state @ (BidState::Open | BidState::Active))) => {
                // Open bids have their own index; active ones are the bids of leases.
                let prefix = match state {
                    BidState::Open => keys::provider_bids(p),
                    _ => keys::provider_leases(p),
                };
                self.store
                    .scan_prefix(&prefix)
                    .into_iter()
                    .filter_map(|(k, _)| market::bid(self.store, &bid_id_from_index(&k, 1)))
                    .collect()
            }
            _ => state::scan(self.store, &keys::all_bids()),
        };
        self.at(candidates
            .into_iter()
            .filter(|b| f.provider.is_none_or(|p| b.id.provider == p))
            .filter(|b| f.state.is_none_or(|s| b.state == s))
            .collect())
    }

    /// The providers' declines of an order (while it is open).
    pub fn declines(&self, order: &OrderId) -> AtHeight<Vec<state::Decline>> {
        self.at(market::declines(self.store, order))
    }

    /// One lease.
    pub fn lease(&self, id: &LeaseId) -> AtHeight<Option<Lease>> {
        self.at(market::lease(self.store, id))
    }

    /// Leases, by owner, provider and state.
    pub fn leases(&self, f: &LeaseFilter) -> AtHeight<Vec<Lease>> {
        let candidates: Vec<Lease> = match (&f.owner, &f.provider) {
            (None, Some(p)) => self
                .store
                .scan_prefix(&keys::provider_leases(p))
                .into_iter()
                .filter_map(|(k, _)| market::lease(self.store, &bid_id_from_index(&k, 1)))
                .collect(),
            (owner, _) => state::scan(self.store, &keys::leases_of(owner.as_ref())),
        };
        self.at(candidates
            .into_iter()
            .filter(|l| f.provider.is_none_or(|p| l.id.provider == p))
            .filter(|l| f.state.is_none_or(|s| l.state == s))
            .collect())
    }
}
