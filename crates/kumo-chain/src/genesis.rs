//! Genesis: the chain's initial state, read from a JSON file.
//!
//! ```json
//! {
//!   "chain_id": "kumo-devnet-1",
//!   "params": { "order_ttl": 600 },
//!   "balances": [
//!     { "address": "kumo1…", "coins": [{ "denom": "ukumo", "amount": "1000000000" }] }
//!   ]
//! }
//! ```
//!
//! `params` may name only the parameters that differ from [`Params::default`]; unknown fields
//! are refused. Coins must be sorted by denomination. The total supply of each denomination is
//! the sum of its genesis balances and never changes after.

use kumo_types::{Address, Coins};
use serde::{Deserialize, Serialize};

use crate::{Params, params::ParamsError};

/// Why a genesis was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenesisError {
    /// Not valid JSON for a genesis.
    #[error("genesis JSON: {0}")]
    Json(String),
    /// Bad chain id.
    #[error("chain_id {0:?} must be 1 to 64 characters of letters, digits, '-', '_' or '.'")]
    ChainId(String),
    /// Bad params.
    #[error("genesis {0}")]
    Params(#[from] ParamsError),
    /// An address listed twice.
    #[error("address {0} has two genesis balances: merge them")]
    Duplicate(Address),
    /// Supply overflow.
    #[error("total supply of {0} overflows 128 bits")]
    Overflow(String),
    /// The store already holds a chain.
    #[error("the store already holds state: genesis needs an empty store")]
    NotEmpty,
}

/// One funded account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisBalance {
    /// The account.
    pub address: Address,
    /// Its coins.
    pub coins: Coins,
}

/// The initial state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    /// The chain id every transaction must carry.
    pub chain_id: String,
    /// Height of the state genesis creates; the first block is `initial_height + 1`.
    #[serde(default)]
    pub initial_height: u64,
    /// Parameters.
    #[serde(default)]
    pub params: Params,
    /// Funded accounts.
    #[serde(default)]
    pub balances: Vec<GenesisBalance>,
}

impl Genesis {
    /// Parses and validates genesis JSON.
    pub fn from_json(text: &str) -> Result<Genesis, GenesisError> {
        let g: Genesis =
            serde_json::from_str(text).map_err(|e| GenesisError::Json(e.to_string()))?;
        g.validate()?;
        Ok(g)
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("genesis serializes")
    }

    /// Checks chain id, params and balances.
    pub fn validate(&self) -> Result<(), GenesisError> {
        let ok = (1..=64).contains(&self.chain_id.len())
            && self
                .chain_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !ok {
            return Err(GenesisError::ChainId(self.chain_id.clone()));
        }
        self.params.validate()?;
        for (i, b) in self.balances.iter().enumerate() {
            if self.balances[..i].iter().any(|c| c.address == b.address) {
                return Err(GenesisError::Duplicate(b.address));
            }
        }
        Ok(())
    }
}
