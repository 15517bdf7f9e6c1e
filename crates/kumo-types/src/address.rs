//! Account addresses: bech32 with prefix `kumo` of the first 20 bytes of sha256(public key).
//!
//! Only the canonical lower-case form is accepted, so every address has exactly one spelling.
//! Module accounts (the escrow, the community pool, ...) have addresses derived from their name
//! instead of a key: nobody holds a key for them.
//!
//! ```
//! use kumo_types::{Address, keys::SecretKey};
//! let addr = Address::from_public_key(&SecretKey::from_seed([0; 32]).public_key());
//! assert!(addr.to_string().starts_with("kumo1"));
//! assert_eq!(addr.to_string().parse::<Address>().unwrap(), addr);
//! ```

use std::{fmt, str::FromStr};

use bech32::{Bech32, Hrp};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::keys::PublicKey;

/// The bech32 human-readable prefix of account addresses.
pub const ADDRESS_PREFIX: &str = "kumo";
const HRP: Hrp = Hrp::parse_unchecked(ADDRESS_PREFIX);

/// Why an address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// Not bech32 at all, or a bad checksum.
    #[error("{0:?} is not a bech32 address (check for typos: the checksum does not match)")]
    NotBech32(String),
    /// Another chain's prefix.
    #[error("{0:?} has prefix {1:?}; Kumo addresses start with \"kumo1\"")]
    WrongPrefix(String, String),
    /// Wrong payload length.
    #[error("{0:?} holds {1} bytes; Kumo addresses hold 20")]
    WrongLength(String, usize),
    /// Upper-case or otherwise non-canonical spelling.
    #[error("{0:?} is not in canonical form: write it in lower case")]
    NotCanonical(String),
}

/// A 20-byte account address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize)]
pub struct Address(pub [u8; 20]);

impl Address {
    /// The address of the account whose key is `pk`.
    pub fn from_public_key(pk: &PublicKey) -> Address {
        let h = Sha256::digest(pk.0);
        let mut a = [0u8; 20];
        a.copy_from_slice(&h[..20]);
        Address(a)
    }

    /// The address of a module account: the first 20 bytes of sha256("kumo/module/" + name).
    pub fn module(name: &str) -> Address {
        let mut h = Sha256::new();
        h.update(b"kumo/module/");
        h.update(name.as_bytes());
        let h = h.finalize();
        let mut a = [0u8; 20];
        a.copy_from_slice(&h[..20]);
        Address(a)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        bech32::encode_lower_to_fmt::<Bech32, _>(f, HRP, &self.0).map_err(|_| fmt::Error)
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({self})")
    }
}

impl FromStr for Address {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Address, AddressError> {
        let (hrp, data) = bech32::decode(s).map_err(|_| AddressError::NotBech32(s.to_string()))?;
        if hrp != HRP {
            return Err(AddressError::WrongPrefix(s.to_string(), hrp.to_string()));
        }
        let bytes: [u8; 20] = data
            .as_slice()
            .try_into()
            .map_err(|_| AddressError::WrongLength(s.to_string(), data.len()))?;
        let addr = Address(bytes);
        if addr.to_string() != s {
            return Err(AddressError::NotCanonical(s.to_string()));
        }
        Ok(addr)
    }
}

impl Serialize for Address {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Address, D::Error> {
        <String as Deserialize>::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_non_canonical() {
        let a = Address([9; 20]);
        let s = a.to_string();
        assert!(matches!(
            s.to_uppercase().parse::<Address>(),
            Err(AddressError::NotCanonical(_))
        ));
        let cosmos = bech32::encode::<Bech32>(Hrp::parse("cosmos").unwrap(), &[9; 20]).unwrap();
        assert!(matches!(
            cosmos.parse::<Address>(),
            Err(AddressError::WrongPrefix(..))
        ));
        let short = bech32::encode::<Bech32>(HRP, &[9; 19]).unwrap();
        assert!(matches!(
            short.parse::<Address>(),
            Err(AddressError::WrongLength(..))
        ));
        let mut typo = s.clone();
        typo.pop();
        typo.push(if s.ends_with('q') { 'p' } else { 'q' });
        assert!(matches!(
            typo.parse::<Address>(),
            Err(AddressError::NotBech32(_))
        ));
    }

    #[test]
    fn module_addresses_differ() {
        assert_ne!(Address::module("escrow"), Address::module("market"));
    }
}
