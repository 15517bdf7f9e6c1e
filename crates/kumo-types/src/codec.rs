//! Borsh encodings of the shared data types that predate the binary format.
//!
//! Transactions and chain state are encoded with Borsh (<https://borsh.io>): integers
//! little-endian, strings and lists prefixed by a `u32` length, enums by a `u8` tag, structs as
//! their fields in order. The types in [`crate::attributes`], [`crate::decimal`] and
//! [`crate::resources`] get their encodings here, field by field in declaration order:
//!
//! - [`Dec`]: `u128` count of 10^-18 units (16 bytes, little-endian).
//! - [`EndpointKind`]: `u8` Akash number (0 shared HTTP, 1 random port, 2 leased IP).
//! - every struct: its fields in the order they are declared.
//!
//! `docs/tx-format.md` at the workspace root spells the whole layout out.

use std::io::{Error, ErrorKind, Read, Result, Write};

use borsh::{BorshDeserialize, BorshSerialize};

use crate::{
    Attribute, Cpu, Dec, DecCoin, Endpoint, EndpointKind, Gpu, GroupSpec, Memory,
    PlacementRequirements, ResourceUnit, Resources, SignedBy, Storage,
};

macro_rules! borsh_struct {
    ($t:ident { $($f:ident),* $(,)? }) => {
        impl BorshSerialize for $t {
            fn serialize<W: Write>(&self, w: &mut W) -> Result<()> {
                $( BorshSerialize::serialize(&self.$f, w)?; )*
                Ok(())
            }
        }
        impl BorshDeserialize for $t {
            fn deserialize_reader<R: Read>(r: &mut R) -> Result<Self> {
                Ok($t { $( $f: BorshDeserialize::deserialize_reader(r)?, )* })
            }
        }
    };
}

borsh_struct!(Attribute { key, value });
borsh_struct!(SignedBy { all_of, any_of });
borsh_struct!(PlacementRequirements {
    signed_by,
    attributes
});
borsh_struct!(DecCoin { denom, amount });
borsh_struct!(Cpu { millis, attributes });
borsh_struct!(Memory { bytes, attributes });
borsh_struct!(Storage {
    name,
    bytes,
    attributes
});
borsh_struct!(Gpu { units, attributes });
borsh_struct!(Endpoint {
    kind,
    sequence_number
});
borsh_struct!(Resources {
    id,
    cpu,
    memory,
    storage,
    gpu,
    endpoints
});
borsh_struct!(ResourceUnit {
    resources,
    count,
    price
});
borsh_struct!(GroupSpec {
    name,
    requirements,
    resources
});

impl BorshSerialize for Dec {
    fn serialize<W: Write>(&self, w: &mut W) -> Result<()> {
        self.atto().serialize(w)
    }
}

impl BorshDeserialize for Dec {
    fn deserialize_reader<R: Read>(r: &mut R) -> Result<Self> {
        Ok(Dec::from_atto(u128::deserialize_reader(r)?))
    }
}

impl BorshSerialize for EndpointKind {
    fn serialize<W: Write>(&self, w: &mut W) -> Result<()> {
        (self.akash_number() as u8).serialize(w)
    }
}

impl BorshDeserialize for EndpointKind {
    fn deserialize_reader<R: Read>(r: &mut R) -> Result<Self> {
        match u8::deserialize_reader(r)? {
            0 => Ok(EndpointKind::SharedHttp),
            1 => Ok(EndpointKind::RandomPort),
            2 => Ok(EndpointKind::LeasedIp),
            n => Err(Error::new(
                ErrorKind::InvalidData,
                format!("unknown endpoint kind {n}"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_spec_round_trips() {
        let g = GroupSpec {
            name: "dcloud".into(),
            requirements: PlacementRequirements {
                signed_by: SignedBy {
                    all_of: vec!["a".into()],
                    any_of: vec![],
                },
                attributes: vec![Attribute::new("region", "us")],
            },
            resources: vec![ResourceUnit {
                resources: Resources {
                    id: 1,
                    cpu: Cpu {
                        millis: 500,
                        attributes: vec![],
                    },
                    memory: Memory {
                        bytes: 1 << 20,
                        attributes: vec![],
                    },
                    storage: vec![Storage {
                        name: "default".into(),
                        bytes: 1 << 30,
                        attributes: vec![],
                    }],
                    gpu: Gpu::default(),
                    endpoints: vec![Endpoint {
                        kind: EndpointKind::RandomPort,
                        sequence_number: 0,
                    }],
                },
                count: 2,
                price: DecCoin::new("uusd", "0.5".parse().unwrap()),
            }],
        };
        let bytes = borsh::to_vec(&g).unwrap();
        assert_eq!(borsh::from_slice::<GroupSpec>(&bytes).unwrap(), g);
        // Dec is 16 little-endian bytes of atto units.
        assert_eq!(
            borsh::to_vec(&Dec::from_atto(1)).unwrap(),
            [[1u8].as_slice(), &[0; 15]].concat()
        );
    }
}
