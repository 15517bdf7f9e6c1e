//! Integer coins: whole amounts of one denomination, and sorted sets of them.
//!
//! Balances, deposits and fees are [`Coin`]s with `u128` amounts of the smallest unit
//! (`1000000ukumo` is one KUMO). Prices per block are fractional and live in
//! [`DecCoin`](crate::DecCoin) instead. [`Coins`] is a set of coins with distinct denominations,
//! sorted by denomination, with no zero amounts: one canonical form per value, so it hashes and
//! encodes the same on every machine.
//!
//! ```
//! use kumo_types::{Coin, Coins};
//! let c: Coin = "1500ukumo".parse().unwrap();
//! assert_eq!(c.amount, 1500);
//! let cs: Coins = "5uusd,10ukumo".parse().unwrap();
//! assert_eq!(cs.to_string(), "10ukumo,5uusd");
//! ```

use std::{fmt, str::FromStr};

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a coin or denomination was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoinError {
    /// The denomination does not follow the Cosmos rules.
    #[error(
        "{0:?} is not a valid denomination: use 3 to 128 characters, a letter first, then letters, digits, '/', ':', '.', '_' or '-'"
    )]
    BadDenom(String),
    /// The text is not `<amount><denom>`.
    #[error(
        "{0:?} is not a coin: write an integer amount followed by a denomination, e.g. 1000ukumo"
    )]
    Malformed(String),
    /// The amount does not fit in 128 bits.
    #[error("{0:?} is too large: amounts must be below 2^128")]
    Overflow(String),
    /// The same denomination appears twice in a set of coins.
    #[error("denomination {0} appears twice: merge the amounts into one coin")]
    Duplicate(String),
    /// A zero amount in a set of coins.
    #[error("zero amount of {0}: leave the coin out instead")]
    Zero(String),
    /// A set of coins is not sorted by denomination.
    #[error("coins are not sorted by denomination (found {0} out of order): sort them")]
    Unsorted(String),
}

/// Checks a denomination against the Cosmos rule `[a-zA-Z][a-zA-Z0-9/:._-]{2,127}`.
pub fn validate_denom(denom: &str) -> Result<(), CoinError> {
    let bytes = denom.as_bytes();
    let ok = (3..=128).contains(&bytes.len())
        && bytes[0].is_ascii_alphabetic()
        && bytes[1..]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b':' | b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(CoinError::BadDenom(denom.to_string()))
    }
}

/// A whole amount of one denomination.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize)]
pub struct Coin {
    /// The denomination, e.g. `ukumo`.
    pub denom: String,
    /// The amount, in the denomination's smallest unit.
    pub amount: u128,
}

impl Coin {
    /// `amount` of `denom`.
    pub fn new(denom: impl Into<String>, amount: u128) -> Coin {
        Coin {
            denom: denom.into(),
            amount,
        }
    }

    /// Checks the denomination.
    pub fn validate(&self) -> Result<(), CoinError> {
        validate_denom(&self.denom)
    }
}

impl fmt::Display for Coin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.amount, self.denom)
    }
}

impl FromStr for Coin {
    type Err = CoinError;

    fn from_str(s: &str) -> Result<Coin, CoinError> {
        let split = s
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| CoinError::Malformed(s.to_string()))?;
        let (amount, denom) = s.split_at(split);
        if amount.is_empty() {
            return Err(CoinError::Malformed(s.to_string()));
        }
        let amount: u128 = amount
            .parse()
            .map_err(|_| CoinError::Overflow(s.to_string()))?;
        validate_denom(denom)?;
        Ok(Coin::new(denom, amount))
    }
}

/// JSON form: `{"denom": "ukumo", "amount": "1000"}` (the amount as a string, as Cosmos does,
/// because JSON numbers lose precision past 2^53).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CoinJson {
    denom: String,
    amount: String,
}

impl Serialize for Coin {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        CoinJson {
            denom: self.denom.clone(),
            amount: self.amount.to_string(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Coin {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Coin, D::Error> {
        let j = CoinJson::deserialize(d)?;
        validate_denom(&j.denom).map_err(serde::de::Error::custom)?;
        let amount = j.amount.parse().map_err(|_| {
            serde::de::Error::custom(format!("{:?} is not an integer amount", j.amount))
        })?;
        Ok(Coin::new(j.denom, amount))
    }
}

/// A set of coins: distinct denominations, sorted, no zero amounts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, BorshSerialize)]
pub struct Coins(Vec<Coin>);

impl Coins {
    /// The empty set.
    pub fn new() -> Coins {
        Coins(Vec::new())
    }

    /// Builds a set from coins in any order, merging equal denominations and dropping zeros.
    pub fn from_unsorted(coins: impl IntoIterator<Item = Coin>) -> Result<Coins, CoinError> {
        let mut out = Coins::new();
        for c in coins {
            c.validate()?;
            out.add(&c)
                .ok_or_else(|| CoinError::Overflow(c.to_string()))?;
        }
        Ok(out)
    }

    /// Checks an already-ordered list: valid denominations, sorted, distinct, non-zero.
    pub fn from_sorted(coins: Vec<Coin>) -> Result<Coins, CoinError> {
        for (i, c) in coins.iter().enumerate() {
            c.validate()?;
            if c.amount == 0 {
                return Err(CoinError::Zero(c.denom.clone()));
            }
            if i > 0 {
                let prev = &coins[i - 1].denom;
                if *prev == c.denom {
                    return Err(CoinError::Duplicate(c.denom.clone()));
                }
                if *prev > c.denom {
                    return Err(CoinError::Unsorted(c.denom.clone()));
                }
            }
        }
        Ok(Coins(coins))
    }

    /// The coins, sorted by denomination.
    pub fn as_slice(&self) -> &[Coin] {
        &self.0
    }

    /// Whether there are no coins.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The amount of `denom` (zero if absent).
    pub fn amount_of(&self, denom: &str) -> u128 {
        self.0
            .binary_search_by(|c| c.denom.as_str().cmp(denom))
            .map(|i| self.0[i].amount)
            .unwrap_or(0)
    }

    /// Adds a coin; `None` on overflow (the set is then unchanged).
    pub fn add(&mut self, coin: &Coin) -> Option<()> {
        if coin.amount == 0 {
            return Some(());
        }
        match self
            .0
            .binary_search_by(|c| c.denom.as_str().cmp(&coin.denom))
        {
            Ok(i) => self.0[i].amount = self.0[i].amount.checked_add(coin.amount)?,
            Err(i) => self.0.insert(i, coin.clone()),
        }
        Some(())
    }
}

impl IntoIterator for Coins {
    type Item = Coin;
    type IntoIter = std::vec::IntoIter<Coin>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl BorshDeserialize for Coins {
    fn deserialize_reader<R: std::io::Read>(r: &mut R) -> std::io::Result<Coins> {
        let v = Vec::<Coin>::deserialize_reader(r)?;
        Coins::from_sorted(v)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))
    }
}

impl fmt::Display for Coins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

impl FromStr for Coins {
    type Err = CoinError;

    fn from_str(s: &str) -> Result<Coins, CoinError> {
        if s.is_empty() {
            return Ok(Coins::new());
        }
        let coins = s
            .split(',')
            .map(|p| p.trim().parse())
            .collect::<Result<Vec<Coin>, _>>()?;
        let mut seen = std::collections::BTreeSet::new();
        for c in &coins {
            if !seen.insert(c.denom.clone()) {
                return Err(CoinError::Duplicate(c.denom.clone()));
            }
        }
        Coins::from_unsorted(coins)
    }
}

impl Serialize for Coins {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Serialize::serialize(&self.0, s)
    }
}

impl<'de> Deserialize<'de> for Coins {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Coins, D::Error> {
        let v = <Vec<Coin> as Deserialize>::deserialize(d)?;
        Coins::from_sorted(v).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_coins() {
        assert_eq!("7ukumo".parse::<Coin>().unwrap(), Coin::new("ukumo", 7));
        for bad in ["ukumo", "7", "7u", "-7ukumo", "7 ukumo", "1.5ukumo"] {
            assert!(bad.parse::<Coin>().is_err(), "{bad}");
        }
        assert!(matches!(
            "1ukumo,2ukumo".parse::<Coins>(),
            Err(CoinError::Duplicate(_))
        ));
    }

    #[test]
    fn sets_stay_canonical() {
        let mut cs = Coins::new();
        cs.add(&Coin::new("uusd", 5)).unwrap();
        cs.add(&Coin::new("ukumo", 0)).unwrap();
        cs.add(&Coin::new("ukumo", 3)).unwrap();
        cs.add(&Coin::new("uusd", 1)).unwrap();
        assert_eq!(cs.to_string(), "3ukumo,6uusd");
        assert_eq!(cs.amount_of("uusd"), 6);
        assert!(cs.add(&Coin::new("uusd", u128::MAX)).is_none());
        assert_eq!(cs.amount_of("uusd"), 6);
        let bytes = borsh::to_vec(&cs).unwrap();
        assert_eq!(borsh::from_slice::<Coins>(&bytes).unwrap(), cs);
        let unsorted = borsh::to_vec(&vec![Coin::new("uusd", 1), Coin::new("ukumo", 1)]).unwrap();
        assert!(borsh::from_slice::<Coins>(&unsorted).is_err());
        let json = serde_json::to_string(&cs).unwrap();
        assert_eq!(
            json,
            r#"[{"denom":"ukumo","amount":"3"},{"denom":"uusd","amount":"6"}]"#
        );
        assert_eq!(serde_json::from_str::<Coins>(&json).unwrap(), cs);
    }
}
