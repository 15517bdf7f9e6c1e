//! What the tenant commands print: [`LeaseReport`] (`kumo deploy -o json` and `kumo lease status
//! -o json` print the same type) and [`LeaseSummary`] (`kumo lease list`), plus the price
//! arithmetic they share (per block → per hour at the chain's block time).
//!
//! A report is the provider's [`LeaseStatusView`] (its fields at the top level: `dseq`,
//! `provider`, `state`, `services` with `uris` and `forwarded_ports`, …) and a `chain` object:
//!
//! ```json
//! {"dseq": 42, "gseq": 1, "oseq": 1, "owner": "kumo1…", "provider": "kumo1…", "state": "running",
//!  "services": [{"name": "web", "replicas": 1, "available": 1,
//!                "uris": ["http://3f…e1.ingress.localhost:8080/"], "forwarded_ports": []}],
//!  "chain": {"state": "active", "price": "100ukumo", "escrow_balance": "499900",
//!            "blocks_left": 4999, "height": 120}}
//! ```

use kumo_client::{
    NodeClient,
    types::{Lease, LeaseState},
};
use kumo_gateway::types::LeaseStatusView;
use kumo_types::{Address, Dec, DecCoin, DeploymentId, LeaseCloseReason};
use serde::{Deserialize, Serialize};

use crate::TenantError;

/// One lease as the tenant sees it: the provider's status and the chain's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseReport {
    /// The provider's view (workload state, services, URIs, ports).
    #[serde(flatten)]
    pub status: LeaseStatusView,
    /// The chain's view (lease state, price, escrow).
    pub chain: ChainLease,
}

/// A lease's record on chain, with its deployment's escrow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChainLease {
    /// `active`, `closed` or `insufficient_funds`.
    pub state: kumo_client::types::LeaseState,
    /// Price per block.
    pub price: DecCoin,
    /// What is left in the deployment's escrow, in the price's denomination.
    pub escrow_balance: Dec,
    /// Blocks the escrow still pays for at the deployment's current rate (none when nothing is
    /// paid from it).
    pub blocks_left: Option<u64>,
    /// The height the chain state was read at.
    pub height: u64,
    /// When, by whom and why it closed (absent while it is active).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed: Option<CloseRecord>,
    /// The deployment's automatic top-up allowance, while it lasts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_up: Option<kumo_chain::state::TopUpAllowance>,
    /// Blocks the escrow and what its allowance may still add pay for, at the current rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocks_left_with_top_up: Option<u64>,
    /// Set when the funds (allowance included) last less than the caller's threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low_funds: Option<LowFunds>,
}

/// A warning that a deployment is about to run dry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LowFunds {
    /// About how long the funds last, in seconds (at the measured block time).
    pub seconds_left: u64,
    /// The threshold it is under, in seconds.
    pub threshold_seconds: u64,
}

impl std::fmt::Display for LowFunds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "funds last about {} (less than {}): add funds with `kumo deposit DSEQ AMOUNT`, or let the chain do it with `kumo top-up grant DSEQ --limit AMOUNT`",
            human_secs(self.seconds_left),
            human_secs(self.threshold_seconds)
        )
    }
}

/// `90` → `1 min 30 s`, `7200` → `2 h`.
pub fn human_secs(s: u64) -> String {
    match s {
        0..60 => format!("{s} s"),
        60..3600 if s.is_multiple_of(60) => format!("{} min", s / 60),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ if s.is_multiple_of(3600) => format!("{} h", s / 3600),
        _ => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

/// One line of `kumo lease list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseSummary {
    /// Deployment sequence.
    pub dseq: u64,
    /// Group sequence.
    pub gseq: u32,
    /// Order sequence.
    pub oseq: u32,
    /// The provider.
    pub provider: Address,
    /// The lease's state on chain.
    pub state: kumo_client::types::LeaseState,
    /// Price per block.
    pub price: DecCoin,
    /// Price per hour at the chain's block time.
    pub price_per_hour: f64,
    /// The deployment's escrow balance.
    pub escrow_balance: Dec,
    /// Blocks the escrow still pays for.
    pub blocks_left: Option<u64>,
    /// When, by whom and why it closed (absent while it is active).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed: Option<CloseRecord>,
}

/// When, by whom and why a lease closed, from its record on chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloseRecord {
    /// The height it closed at.
    pub height: u64,
    /// Who closed it.
    pub by: ClosedBy,
    /// The reason code on chain.
    pub reason: LeaseCloseReason,
}

/// Who closed a lease, as its reason code says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClosedBy {
    /// The tenant (the lease, its group or its deployment).
    Tenant,
    /// The provider, with its reason.
    Provider,
    /// The chain: the escrow ran dry, or the provider was silent past the liveness window.
    Chain,
    /// No reason was recorded.
    Unknown,
}

impl CloseRecord {
    /// The close of `lease`, if it closed.
    pub fn of(lease: &Lease) -> Option<CloseRecord> {
        let height = lease.closed_at?;
        let reason = lease.close_reason.unwrap_or(LeaseCloseReason::Unspecified);
        let by = match reason {
            LeaseCloseReason::Owner => ClosedBy::Tenant,
            LeaseCloseReason::Unstable
            | LeaseCloseReason::Decommission
            | LeaseCloseReason::ManifestTimeout
            | LeaseCloseReason::Performance => ClosedBy::Provider,
            LeaseCloseReason::InsufficientFunds | LeaseCloseReason::ProviderUnresponsive => {
                ClosedBy::Chain
            }
            LeaseCloseReason::Unspecified => ClosedBy::Unknown,
        };
        Some(CloseRecord { height, by, reason })
    }
}

impl std::fmt::Display for CloseRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let reason = self.reason.as_str();
        match self.by {
            ClosedBy::Tenant => write!(f, "closed by the tenant at {}", self.height),
            ClosedBy::Provider => {
                write!(f, "closed by the provider ({reason}) at {}", self.height)
            }
            ClosedBy::Chain => write!(f, "closed by the chain ({reason}) at {}", self.height),
            ClosedBy::Unknown => write!(f, "closed at {}", self.height),
        }
    }
}

/// The blocks an escrow account still pays for at its current rate; `None` when it is closed
/// or pays nothing.
pub(crate) fn blocks_left(a: &kumo_chain::state::EscrowAccount) -> Option<u64> {
    let open = a.state == kumo_chain::state::EscrowState::Open;
    (open && !a.rate.is_zero()).then(|| (a.balance.atto() / a.rate.atto()) as u64)
}

/// The escrow of a deployment: its balance and the blocks it still pays for.
pub(crate) async fn escrow_of(
    node: &NodeClient,
    id: &DeploymentId,
) -> Result<(Dec, Option<u64>, u64), TenantError> {
    let e = node.escrow(id).await?;
    let a = &e.value.account;
    Ok((a.balance, blocks_left(a), e.height))
}

/// The chain half of a report; `warn_below` (with the chain's block time in ms) sets
/// [`ChainLease::low_funds`] when an active lease's funds, allowance included, last less.
pub(crate) async fn chain_lease(
    node: &NodeClient,
    lease: &Lease,
    warn_below: Option<(std::time::Duration, f64)>,
) -> Result<ChainLease, TenantError> {
    let id = DeploymentId {
        owner: lease.id.owner,
        dseq: lease.id.dseq,
    };
    let e = node.escrow(&id).await?;
    let a = &e.value.account;
    let blocks_left = blocks_left(a);
    let top_up = a
        .top_up
        .clone()
        .filter(|_| a.state == kumo_chain::state::EscrowState::Open);
    let blocks_left_with_top_up = blocks_left.map(|b| {
        let extra = top_up.as_ref().map_or(0, |t| {
            (t.remaining.saturating_mul(1_000_000_000_000_000_000) / a.rate.atto()) as u64
        });
        b.saturating_add(extra)
    });
    let low_funds = match (warn_below, blocks_left_with_top_up) {
        (Some((below, block_ms)), Some(blocks)) if lease.state == LeaseState::Active => {
            let seconds_left = (blocks as f64 * block_ms / 1000.0) as u64;
            (seconds_left < below.as_secs()).then_some(LowFunds {
                seconds_left,
                threshold_seconds: below.as_secs(),
            })
        }
        _ => None,
    };
    Ok(ChainLease {
        state: lease.state,
        price: lease.price.clone(),
        escrow_balance: a.balance,
        blocks_left,
        height: e.height,
        closed: CloseRecord::of(lease),
        top_up,
        blocks_left_with_top_up,
        low_funds,
    })
}

/// The chain's block time in milliseconds, measured over its last (up to) 20 blocks; `None`
/// on a chain too young to tell.
pub async fn measured_block_ms(node: &NodeClient) -> Option<f64> {
    let latest = node.latest_block().await.ok()?;
    let back = latest.height.saturating_sub(20).max(1);
    if back >= latest.height {
        return None;
    }
    let old = node.block(back).await.ok()?;
    let blocks = (latest.height - back) as f64;
    Some((latest.time_ms.saturating_sub(old.time_ms)) as f64 / blocks).filter(|ms| *ms > 0.0)
}

/// A price per block as a price per hour, at `block_ms` per block.
pub fn per_hour(price: &Dec, block_ms: f64) -> f64 {
    let per_block = price.atto() as f64 / 1e18;
    per_block * 3_600_000.0 / block_ms
}
