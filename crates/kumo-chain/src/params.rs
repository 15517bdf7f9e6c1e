//! Chain parameters: every number the state machine uses, set in genesis.
//!
//! Defaults ([`Params::default`]) suit a devnet with 1-second blocks. Amounts are in the
//! smallest unit (`1_000_000ukumo` = 1 KUMO).

use borsh::{BorshDeserialize, BorshSerialize};
use kumo_types::{Coin, Dec, ResourceLimits, coin::validate_denom};
use serde::{Deserialize, Serialize};

/// Why parameters were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    /// A denomination is malformed.
    #[error("params: {0}")]
    Denom(#[from] kumo_types::CoinError),
    /// A value is out of range.
    #[error("params: {field} {problem}")]
    Invalid {
        /// The parameter.
        field: &'static str,
        /// What is wrong with it, and what would do.
        problem: String,
    },
}

/// Share of each withdrawal that goes to the community pool, per denomination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct TakeRate {
    /// Denomination.
    pub denom: String,
    /// Fraction in [0, 1], e.g. `0.02`.
    pub rate: Dec,
}

/// Every chain parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// The only denomination fees are paid in.
    pub fee_denom: String,
    /// Minimum fee of any transaction.
    pub fee_base: u64,
    /// Minimum fee added per message.
    pub fee_per_msg: u64,
    /// Minimum fee added per byte of the transaction.
    pub fee_per_byte: u64,
    /// Largest transaction accepted, in bytes.
    pub max_tx_bytes: u32,
    /// Most messages in one transaction.
    pub max_msgs_per_tx: u32,
    /// Longest memo, in bytes.
    pub max_memo_bytes: u32,
    /// Denominations lease prices and escrow may use.
    pub payment_denoms: Vec<String>,
    /// Smallest initial deposit of a deployment, per payment denomination.
    pub deployment_min_deposit: Vec<Coin>,
    /// Smallest bid deposit (its denomination is the one bid deposits use).
    pub bid_min_deposit: Coin,
    /// Blocks an order stays open without a lease before it closes and refunds its bids.
    pub order_ttl: u64,
    /// Community pool's share of withdrawals, per denomination (absent: zero).
    pub take_rates: Vec<TakeRate>,
    /// Most groups in one deployment.
    pub max_groups: u32,
    /// Most resource units in one group.
    pub max_units_per_group: u32,
    /// Largest `count` of one resource unit.
    pub max_unit_count: u32,
    /// Most attributes in one list (provider, requirement, attestation, resource).
    pub max_attributes: u32,
    /// Longest string field (names, keys, values, URIs), in bytes.
    pub max_string_bytes: u32,
    /// Most open bids on one order.
    pub max_bids_per_order: u32,
    /// Most attribute-matching work one bid may cost (pattern characters processed; see
    /// `kumo_types::matching::Meter`). Bounds a bid's checks however adversarial the attributes.
    pub max_match_work: u64,
    /// Per-unit and per-group bounds on resources and prices (Akash's values by default): what
    /// the SDL parser checks, enforced here for every `CreateDeployment`, however it was built.
    pub resource_limits: ResourceLimits,
    /// Most leases one `WithdrawLeases` message may name.
    pub max_leases_per_withdraw: u32,
    /// How often, in blocks, a provider proves it is alive (`ProviderHeartbeat`, or any bid,
    /// decline or withdrawal). Advice the provider daemon follows; the chain enforces
    /// `liveness_window`.
    pub liveness_interval: u64,
    /// Blocks a provider with leases may stay silent: at the end of block `last proof +
    /// liveness_window` its leases close `provider_unresponsive`, and the blocks since its last
    /// proof are refunded to their deployments rather than paid.
    pub liveness_window: u64,
}

impl Default for Params {
    fn default() -> Params {
        Params {
            fee_denom: "ukumo".into(),
            fee_base: 1_000,
            fee_per_msg: 1_000,
            fee_per_byte: 1,
            max_tx_bytes: 64 * 1024,
            max_msgs_per_tx: 32,
            max_memo_bytes: 256,
            payment_denoms: vec!["ukumo".into(), "uusd".into()],
            deployment_min_deposit: vec![Coin::new("ukumo", 500_000), Coin::new("uusd", 500_000)],
            bid_min_deposit: Coin::new("ukumo", 500_000),
            order_ttl: 600,
            take_rates: vec![
                TakeRate {
                    denom: "ukumo".into(),
                    rate: Dec::from_atto(20_000_000_000_000_000),
                },
                TakeRate {
                    denom: "uusd".into(),
                    rate: Dec::from_atto(200_000_000_000_000_000),
                },
            ],
            max_groups: 20,
            max_units_per_group: 20,
            max_unit_count: 50,
            max_attributes: 64,
            max_string_bytes: 256,
            max_bids_per_order: 64,
            max_match_work: 4_000_000,
            resource_limits: ResourceLimits::default(),
            max_leases_per_withdraw: 500,
            liveness_interval: 20,
            liveness_window: 120,
        }
    }
}

impl Params {
    /// Checks that the parameters make sense together.
    pub fn validate(&self) -> Result<(), ParamsError> {
        let bad = |field, problem: &str| ParamsError::Invalid {
            field,
            problem: problem.to_string(),
        };
        validate_denom(&self.fee_denom)?;
        validate_denom(&self.bid_min_deposit.denom)?;
        if self.payment_denoms.is_empty() {
            return Err(bad(
                "payment_denoms",
                "is empty: list at least one denomination",
            ));
        }
        for (i, d) in self.payment_denoms.iter().enumerate() {
            validate_denom(d)?;
            if self.payment_denoms[..i].contains(d) {
                return Err(bad("payment_denoms", "lists a denomination twice"));
            }
        }
        for c in &self.deployment_min_deposit {
            if !self.payment_denoms.contains(&c.denom) {
                return Err(bad(
                    "deployment_min_deposit",
                    "names a denomination not in payment_denoms",
                ));
            }
        }
        for t in &self.take_rates {
            if t.rate > Dec::from_int(1) {
                return Err(bad("take_rates", "has a rate above 1"));
            }
        }
        if self.order_ttl == 0 {
            return Err(bad(
                "order_ttl",
                "is 0: orders need at least one block to get bids",
            ));
        }
        if (self.max_tx_bytes as usize) < kumo_types::tx::FRAME_BYTES
            || self.max_tx_bytes as usize > kumo_types::tx::MAX_TX_BYTES
        {
            return Err(bad("max_tx_bytes", "must be between 97 and 262144"));
        }
        if self.max_msgs_per_tx == 0
            || self.max_groups == 0
            || self.max_units_per_group == 0
            || self.max_unit_count == 0
            || self.max_leases_per_withdraw == 0
        {
            return Err(bad("max_*", "limits must be at least 1"));
        }
        if self.liveness_interval == 0 || self.liveness_window < 2 * self.liveness_interval {
            return Err(bad(
                "liveness_window",
                "must be at least twice liveness_interval, which must be at least 1 (one late proof must not close leases)",
            ));
        }
        self.resource_limits
            .validate()
            .map_err(|problem| bad("resource_limits", &problem))?;
        Ok(())
    }

    /// The take rate of `denom` (zero if none is set).
    pub fn take_rate(&self, denom: &str) -> Dec {
        self.take_rates
            .iter()
            .find(|t| t.denom == denom)
            .map_or(Dec::ZERO, |t| t.rate)
    }

    /// The smallest deployment deposit in `denom` (zero if none is set).
    pub fn min_deposit(&self, denom: &str) -> u128 {
        self.deployment_min_deposit
            .iter()
            .find(|c| c.denom == denom)
            .map_or(0, |c| c.amount)
    }

    /// The smallest fee of a transaction of `len` bytes with `msgs` messages.
    pub fn min_fee(&self, len: usize, msgs: usize) -> u128 {
        u128::from(self.fee_base)
            + u128::from(self.fee_per_msg) * msgs as u128
            + u128::from(self.fee_per_byte) * len as u128
    }
}
