//! Fixed-point decimals with 18 fractional digits, and coins whose amount is such a decimal.
//!
//! Prices in Kumo are per block and often fractional (`0.5uakt` a block), so they are kept as
//! [`Dec`]: an unsigned integer count of 10^-18 units, exactly as Cosmos' `LegacyDec` does, which
//! keeps Akash's rendering (`"150.000000000000000000"`) and arithmetic without floating point.
//!
//! ```
//! use kumo_types::Dec;
//! let d: Dec = "0.25".parse().unwrap();
//! assert_eq!(d.to_string(), "0.25");
//! assert_eq!(d.to_fixed_string(), "0.250000000000000000");
//! ```

use std::{fmt, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Number of fractional digits a [`Dec`] keeps.
pub const DEC_PLACES: u32 = 18;
const SCALE: u128 = 10u128.pow(DEC_PLACES);

/// Why a decimal could not be parsed or computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    /// The text is not a plain decimal number such as `12`, `0.5` or `1.25`.
    #[error(
        "{0:?} is not a decimal number (expected digits, optionally with a fraction, e.g. 0.5)"
    )]
    Malformed(String),
    /// The text is negative.
    #[error("{0:?} is negative; amounts must be zero or more")]
    Negative(String),
    /// More fractional digits than [`DEC_PLACES`].
    #[error("{0:?} has more than 18 decimal places")]
    TooPrecise(String),
    /// The value does not fit.
    #[error("{0:?} is too large")]
    Overflow(String),
}

/// A non-negative decimal with 18 fractional digits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dec(u128);

impl Dec {
    /// Zero.
    pub const ZERO: Dec = Dec(0);

    /// The decimal `n`.
    pub fn from_int(n: u64) -> Dec {
        Dec(u128::from(n) * SCALE)
    }

    /// The decimal whose raw count of 10^-18 units is `atto`.
    pub fn from_atto(atto: u128) -> Dec {
        Dec(atto)
    }

    /// The raw count of 10^-18 units.
    pub fn atto(self) -> u128 {
        self.0
    }

    /// Whether this is zero.
    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// `self + rhs`, or `None` on overflow.
    pub fn checked_add(self, rhs: Dec) -> Option<Dec> {
        self.0.checked_add(rhs.0).map(Dec)
    }

    /// `self - rhs`, or `None` if it would go negative.
    pub fn checked_sub(self, rhs: Dec) -> Option<Dec> {
        self.0.checked_sub(rhs.0).map(Dec)
    }

    /// `self * n`, or `None` on overflow.
    pub fn checked_mul_int(self, n: u64) -> Option<Dec> {
        self.0.checked_mul(u128::from(n)).map(Dec)
    }

    /// The integer part (rounded down).
    pub fn floor(self) -> u128 {
        self.0 / SCALE
    }

    /// The integer part, rounded up.
    pub fn ceil(self) -> u128 {
        self.0.div_ceil(SCALE)
    }

    /// Always 18 fractional digits, as Cosmos renders `LegacyDec` (`"150.000000000000000000"`).
    pub fn to_fixed_string(self) -> String {
        format!("{}.{:018}", self.0 / SCALE, self.0 % SCALE)
    }
}

impl fmt::Display for Dec {
    /// The shortest exact form: `150`, `0.5`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let int = self.0 / SCALE;
        let frac = self.0 % SCALE;
        if frac == 0 {
            write!(f, "{int}")
        } else {
            let digits = format!("{frac:018}");
            write!(f, "{int}.{}", digits.trim_end_matches('0'))
        }
    }
}

impl FromStr for Dec {
    type Err = DecimalError;

    fn from_str(s: &str) -> Result<Dec, DecimalError> {
        let malformed = || DecimalError::Malformed(s.to_string());
        if s.starts_with('-') {
            return Err(DecimalError::Negative(s.to_string()));
        }
        let (int, frac) = match s.split_once('.') {
            Some((i, f)) => (i, f),
            None => (s, ""),
        };
        if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
            return Err(malformed());
        }
        if s.contains('.') && (frac.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit())) {
            return Err(malformed());
        }
        if frac.len() > DEC_PLACES as usize {
            return Err(DecimalError::TooPrecise(s.to_string()));
        }
        let overflow = || DecimalError::Overflow(s.to_string());
        let int: u128 = int.parse().map_err(|_| overflow())?;
        let frac_val: u128 = if frac.is_empty() {
            0
        } else {
            let padded = format!("{frac:0<18}");
            padded.parse().map_err(|_| malformed())?
        };
        int.checked_mul(SCALE)
            .and_then(|v| v.checked_add(frac_val))
            .map(Dec)
            .ok_or_else(overflow)
    }
}

impl Serialize for Dec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Dec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Dec, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An amount of one denomination, possibly fractional: a price per block.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DecCoin {
    /// The denomination, e.g. `ukumo`, `uakt` or `ibc/…`.
    pub denom: String,
    /// The amount.
    pub amount: Dec,
}

impl DecCoin {
    /// A coin of `amount` `denom`.
    pub fn new(denom: impl Into<String>, amount: Dec) -> DecCoin {
        DecCoin {
            denom: denom.into(),
            amount,
        }
    }
}

impl fmt::Display for DecCoin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.amount, self.denom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_renders() {
        let d: Dec = "150".parse().unwrap();
        assert_eq!(d.to_fixed_string(), "150.000000000000000000");
        assert_eq!("0.000000000000000001".parse::<Dec>().unwrap().atto(), 1);
        assert_eq!("1.50".parse::<Dec>().unwrap().to_string(), "1.5");
    }

    #[test]
    fn rejects_bad_text() {
        for bad in ["", ".5", "5.", "1e3", "abc", "1.2.3", " 1"] {
            assert!(
                matches!(bad.parse::<Dec>(), Err(DecimalError::Malformed(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            "-1".parse::<Dec>(),
            Err(DecimalError::Negative(_))
        ));
        assert!(matches!(
            "0.0000000000000000001".parse::<Dec>(),
            Err(DecimalError::TooPrecise(_))
        ));
        assert!(matches!(
            "999999999999999999999999999".parse::<Dec>(),
            Err(DecimalError::Overflow(_))
        ));
    }

    proptest! {
        #[test]
        fn display_round_trips(atto in any::<u128>()) {
            let d = Dec::from_atto(atto);
            prop_assert_eq!(d.to_string().parse::<Dec>().unwrap(), d);
            prop_assert_eq!(d.to_fixed_string().parse::<Dec>().unwrap(), d);
        }
    }
}
