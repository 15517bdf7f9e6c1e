//! Units of compute and the group specs that ask for them.
//!
//! A [`GroupSpec`] is what a deployment puts on chain for each placement group: requirements
//! on the provider, and a list of [`ResourceUnit`]s (resources × count at a price per block).
//! The SDL parser (`kumo-sdl`) builds them; the chain stores them; providers bid on them.

use serde::{Deserialize, Serialize};

use crate::{Attribute, DecCoin, PlacementRequirements};

/// CPU, in thousandths of a core (`500` = half a core).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Cpu {
    /// Thousandths of a CPU core.
    pub millis: u64,
    /// Requirements on the CPU, e.g. `arch = amd64`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<Attribute>,
}

/// Memory, in bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Memory {
    /// Bytes of RAM.
    pub bytes: u64,
    /// Requirements on the memory (rarely used).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<Attribute>,
}

/// One storage volume, in bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Storage {
    /// The volume's name within its profile (`default` when unnamed).
    pub name: String,
    /// Bytes of storage.
    pub bytes: u64,
    /// `persistent` and `class` (e.g. `beta2`, `ram`), sorted by key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<Attribute>,
}

impl Storage {
    /// The value of one of this volume's attributes.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|a| a.key == key)
            .map(|a| a.value.as_str())
    }

    /// Whether the volume outlives its container (`persistent: true`).
    pub fn is_persistent(&self) -> bool {
        self.attribute("persistent") == Some("true")
    }

    /// The storage class, if any (`default`, `beta1`..`beta3`, `ram`).
    pub fn class(&self) -> Option<&str> {
        self.attribute("class")
    }
}

/// GPUs: a count, and which models are acceptable.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Gpu {
    /// Number of GPUs.
    pub units: u64,
    /// Acceptable models as attributes, e.g. `vendor/nvidia/model/a100/ram/80Gi = true`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<Attribute>,
}

/// How a service is reached from outside its lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndpointKind {
    /// Global port 80 over TCP: served by the provider's shared HTTP ingress.
    SharedHttp,
    /// Any other global port: mapped to a port the provider picks.
    RandomPort,
    /// A dedicated IP address leased from the provider.
    LeasedIp,
}

impl EndpointKind {
    /// Akash's protobuf number for this kind.
    pub fn akash_number(self) -> u32 {
        match self {
            EndpointKind::SharedHttp => 0,
            EndpointKind::RandomPort => 1,
            EndpointKind::LeasedIp => 2,
        }
    }
}

/// One endpoint a resource unit needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Endpoint {
    /// What kind of endpoint.
    pub kind: EndpointKind,
    /// For leased IPs, which of the deployment's IP endpoints (1-based); else 0.
    pub sequence_number: u32,
}

/// The resources of one instance of a service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Resources {
    /// Identifies this unit within its group (1-based).
    pub id: u32,
    /// CPU.
    pub cpu: Cpu,
    /// Memory.
    pub memory: Memory,
    /// Storage volumes, the ephemeral root volume first.
    pub storage: Vec<Storage>,
    /// GPUs (zero units when none).
    pub gpu: Gpu,
    /// Endpoints the instances need.
    pub endpoints: Vec<Endpoint>,
}

/// `count` instances of some resources, at a price per block for each.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ResourceUnit {
    /// The resources of one instance.
    pub resources: Resources,
    /// Number of instances.
    pub count: u32,
    /// Highest price per block per instance the tenant will pay.
    pub price: DecCoin,
}

/// One placement group of a deployment, as it goes on chain.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GroupSpec {
    /// The placement profile's name.
    pub name: String,
    /// What a provider must offer.
    pub requirements: PlacementRequirements,
    /// The units the group needs.
    pub resources: Vec<ResourceUnit>,
}

impl GroupSpec {
    /// Highest total price per block for the whole group (Σ price × count), if all units share
    /// one denomination and the sum does not overflow.
    pub fn price(&self) -> Option<DecCoin> {
        let first = self.resources.first()?;
        let mut total = crate::Dec::ZERO;
        for unit in &self.resources {
            if unit.price.denom != first.price.denom {
                return None;
            }
            total = total.checked_add(unit.price.amount.checked_mul_int(u64::from(unit.count))?)?;
        }
        Some(DecCoin::new(first.price.denom.clone(), total))
    }
}
