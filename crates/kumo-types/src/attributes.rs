//! Attributes: the key/value labels providers advertise and deployments require.
//!
//! A deployment group's [`PlacementRequirements`] name the attributes a provider must have
//! (`region=us-west`) and, through [`SignedBy`], which auditors must have vouched for them.
//! Keys may end in `*` on the requiring side to match a family of keys, as Akash allows.

use serde::{Deserialize, Serialize};

/// One `key = value` label.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Attribute {
    /// The key, e.g. `region` or `capabilities/storage/1/class`.
    pub key: String,
    /// The value, e.g. `us-west`.
    pub value: String,
}

impl Attribute {
    /// The attribute `key = value`.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Attribute {
        Attribute {
            key: key.into(),
            value: value.into(),
        }
    }
}

/// Which auditors must have signed a provider's attributes for it to bid.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SignedBy {
    /// Every one of these auditors must have signed the required attributes.
    #[serde(default)]
    pub all_of: Vec<String>,
    /// At least one of these auditors must have signed the required attributes.
    #[serde(default)]
    pub any_of: Vec<String>,
}

impl SignedBy {
    /// Whether no auditor is required at all.
    pub fn is_empty(&self) -> bool {
        self.all_of.is_empty() && self.any_of.is_empty()
    }
}

/// What a provider must offer to bid on a group: attributes and auditor signatures.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PlacementRequirements {
    /// Auditors who must vouch for the attributes.
    #[serde(default)]
    pub signed_by: SignedBy,
    /// Required attributes, sorted by key.
    #[serde(default)]
    pub attributes: Vec<Attribute>,
}
