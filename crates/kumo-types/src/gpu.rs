//! What GPUs a bid offers: model, memory and interface in Akash's names, and how many.
//!
//! A provider fills [`GpuOffer`]s into `CreateBid` from the specific devices it reserved for the
//! order, so a tenant choosing among bids sees `1× h100 80Gi sxm` rather than just a price.
//! The chain checks the offer's size with [`validate_offers`] and stores it with the bid.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

/// At most this many offer lines per bid (one per distinct model/ram/interface).
pub const MAX_GPU_OFFERS: usize = 16;
/// At most this many characters in a model, ram or interface name.
pub const MAX_GPU_NAME: usize = 32;

/// One kind of GPU a bid offers, and how many of it.
#[derive(
    Debug,
    Clone,
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
pub struct GpuOffer {
    /// The vendor (`nvidia`).
    pub vendor: String,
    /// The model in Akash's names (`h100`, `a100`, `rtx4090`).
    pub model: String,
    /// Its memory, `80Gi`.
    pub ram: String,
    /// `pcie` or `sxm`.
    pub interface: String,
    /// How many of these GPUs.
    pub count: u32,
}

impl GpuOffer {
    /// `1× h100 80Gi sxm`.
    pub fn summary(&self) -> String {
        format!(
            "{}× {} {} {}",
            self.count, self.model, self.ram, self.interface
        )
    }
}

/// `2× h100 80Gi sxm, 1× a100 40Gi pcie`; empty when nothing is offered.
pub fn summary(offers: &[GpuOffer]) -> String {
    offers
        .iter()
        .map(GpuOffer::summary)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why an offer is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GpuOfferError {
    /// Too many lines.
    #[error("a bid offers at most {MAX_GPU_OFFERS} kinds of GPU, got {0}")]
    TooMany(usize),
    /// A name is empty, too long or not lower-case letters, digits, `.` and `-`.
    #[error(
        "GPU offer field {field} {value:?} must be 1-{MAX_GPU_NAME} characters of a-z, 0-9, A-Z, '.' or '-'"
    )]
    BadName {
        /// Which field.
        field: &'static str,
        /// Its value (cut to 40 characters).
        value: String,
    },
    /// An interface other than `pcie` or `sxm`.
    #[error("GPU interface {0:?} is not pcie or sxm")]
    BadInterface(String),
    /// A count of zero.
    #[error("a GPU offer must count at least one GPU")]
    ZeroCount,
}

/// Checks a bid's offer: bounded in size, plain names, a known interface, counts above zero.
pub fn validate_offers(offers: &[GpuOffer]) -> Result<(), GpuOfferError> {
    if offers.len() > MAX_GPU_OFFERS {
        return Err(GpuOfferError::TooMany(offers.len()));
    }
    for o in offers {
        for (field, value) in [("vendor", &o.vendor), ("model", &o.model), ("ram", &o.ram)] {
            let ok = !value.is_empty()
                && value.len() <= MAX_GPU_NAME
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
            if !ok {
                return Err(GpuOfferError::BadName {
                    field,
                    value: value.chars().take(40).collect(),
                });
            }
        }
        if !matches!(o.interface.as_str(), "pcie" | "sxm") {
            return Err(GpuOfferError::BadInterface(
                o.interface.chars().take(40).collect(),
            ));
        }
        if o.count == 0 {
            return Err(GpuOfferError::ZeroCount);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h100(count: u32) -> GpuOffer {
        GpuOffer {
            vendor: "nvidia".into(),
            model: "h100".into(),
            ram: "80Gi".into(),
            interface: "sxm".into(),
            count,
        }
    }

    #[test]
    fn summary_reads_like_the_bid_table() {
        assert_eq!(h100(1).summary(), "1× h100 80Gi sxm");
        let mut a = h100(2);
        a.model = "a100".into();
        a.interface = "pcie".into();
        assert_eq!(
            summary(&[h100(1), a]),
            "1× h100 80Gi sxm, 2× a100 80Gi pcie"
        );
        assert_eq!(summary(&[]), "");
    }

    #[test]
    fn offers_are_bounded_and_plain() {
        assert!(validate_offers(&[h100(8)]).is_ok());
        assert_eq!(
            validate_offers(&vec![h100(1); MAX_GPU_OFFERS + 1]),
            Err(GpuOfferError::TooMany(MAX_GPU_OFFERS + 1))
        );
        assert_eq!(validate_offers(&[h100(0)]), Err(GpuOfferError::ZeroCount));
        let mut bad = h100(1);
        bad.interface = "nvlink".into();
        assert!(matches!(
            validate_offers(&[bad]),
            Err(GpuOfferError::BadInterface(_))
        ));
        let mut bad = h100(1);
        bad.model = "h100 <script>".into();
        assert!(matches!(
            validate_offers(&[bad]),
            Err(GpuOfferError::BadName { field: "model", .. })
        ));
        let mut bad = h100(1);
        bad.ram = "x".repeat(MAX_GPU_NAME + 1);
        assert!(validate_offers(&[bad]).is_err());
    }
}
