//! The resource and price limits a deployment's groups must respect.
//!
//! One definition for both sides: the SDL parser checks a file against
//! [`ResourceLimits::default`] (Akash's own values, so every Akash file that deploys there passes
//! here), and the chain checks every `CreateDeployment` against the `resource_limits` chain
//! parameter, which defaults to the same values. The chain's check is the one that counts: a
//! hand-signed transaction that skips the parser meets it in `check_tx` and in delivery.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::{Dec, GroupSpec, ResourceUnit};

/// Bounds on what one resource unit and one group may ask for, and on prices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResourceLimits {
    /// Least CPU of one instance, in thousandths of a core.
    pub min_unit_cpu_millis: u64,
    /// Most CPU of one instance, in thousandths of a core.
    pub max_unit_cpu_millis: u64,
    /// Least memory of one instance, in bytes.
    pub min_unit_memory_bytes: u64,
    /// Most memory of one instance, in bytes.
    pub max_unit_memory_bytes: u64,
    /// Least size of one storage volume, in bytes.
    pub min_unit_storage_bytes: u64,
    /// Most size of one storage volume, in bytes.
    pub max_unit_storage_bytes: u64,
    /// Most GPUs of one instance.
    pub max_unit_gpus: u64,
    /// Most storage volumes of one instance.
    pub max_unit_volumes: u32,
    /// Most endpoints of one resource unit.
    pub max_unit_endpoints: u32,
    /// Most CPU of a whole group (Σ CPU × count), in thousandths of a core.
    pub max_group_cpu_millis: u64,
    /// Most memory of a whole group (Σ memory × count), in bytes.
    pub max_group_memory_bytes: u128,
    /// Most GPUs of a whole group (Σ GPUs × count).
    pub max_group_gpus: u64,
    /// Highest price per block of one instance, in the smallest unit of its denomination.
    pub max_unit_price: u64,
}

impl ResourceLimits {
    /// Akash's limits (its SDL parser and deployment module): the chain's default, and what
    /// `kumo-sdl` checks a file against.
    pub const AKASH: ResourceLimits = ResourceLimits {
        min_unit_cpu_millis: 10,
        max_unit_cpu_millis: 384_000,
        min_unit_memory_bytes: 1 << 20,
        max_unit_memory_bytes: 2 << 40,
        min_unit_storage_bytes: 5 << 20,
        max_unit_storage_bytes: 32 << 40,
        max_unit_gpus: 24,
        max_unit_volumes: 64,
        max_unit_endpoints: 64,
        max_group_cpu_millis: 384_000 * 50,
        max_group_memory_bytes: (2u128 << 40) * 50,
        max_group_gpus: 24 * 50,
        max_unit_price: 10_000_000,
    };
}

impl Default for ResourceLimits {
    /// [`ResourceLimits::AKASH`].
    fn default() -> ResourceLimits {
        ResourceLimits::AKASH
    }
}

/// Why a group or one of its units is outside the limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// One resource unit asks for too little or too much.
    #[error("group {group:?} unit {unit}: {problem}")]
    Unit {
        /// The group's name.
        group: String,
        /// The unit's id within the group (1-based).
        unit: u32,
        /// What is out of range, and the range.
        problem: String,
    },
    /// The group as a whole asks for too much.
    #[error("group {group:?}: {problem}")]
    Group {
        /// The group's name.
        group: String,
        /// What is out of range, and the range.
        problem: String,
    },
}

fn range(what: &str, got: u64, min: u64, max: u64, unit: &str) -> Result<(), String> {
    if got < min || got > max {
        return Err(format!(
            "{what} {got}{unit} is outside {min}{unit}-{max}{unit}"
        ));
    }
    Ok(())
}

impl ResourceLimits {
    /// Checks one resource unit's resources and price.
    pub fn check_unit(&self, group: &str, unit: &ResourceUnit) -> Result<(), LimitError> {
        let err = |problem: String| LimitError::Unit {
            group: group.to_string(),
            unit: unit.resources.id,
            problem,
        };
        let r = &unit.resources;
        range(
            "cpu",
            r.cpu.millis,
            self.min_unit_cpu_millis,
            self.max_unit_cpu_millis,
            "m",
        )
        .map_err(err)?;
        range(
            "memory",
            r.memory.bytes,
            self.min_unit_memory_bytes,
            self.max_unit_memory_bytes,
            " bytes",
        )
        .map_err(err)?;
        if r.storage.is_empty() {
            return Err(err(
                "has no storage volume: every instance needs its root volume".into(),
            ));
        }
        if r.storage.len() > self.max_unit_volumes as usize {
            return Err(err(format!(
                "{} storage volumes are more than the limit of {}",
                r.storage.len(),
                self.max_unit_volumes
            )));
        }
        for v in &r.storage {
            range(
                &format!("storage volume {:?}", v.name),
                v.bytes,
                self.min_unit_storage_bytes,
                self.max_unit_storage_bytes,
                " bytes",
            )
            .map_err(err)?;
        }
        if r.gpu.units > self.max_unit_gpus {
            return Err(err(format!(
                "{} GPUs are more than the limit of {}",
                r.gpu.units, self.max_unit_gpus
            )));
        }
        if r.endpoints.len() > self.max_unit_endpoints as usize {
            return Err(err(format!(
                "{} endpoints are more than the limit of {}",
                r.endpoints.len(),
                self.max_unit_endpoints
            )));
        }
        if unit.price.amount > Dec::from_int(self.max_unit_price) {
            return Err(err(format!(
                "price {}{} per block is above the highest unit price, {}{}",
                unit.price.amount, unit.price.denom, self.max_unit_price, unit.price.denom
            )));
        }
        Ok(())
    }

    /// Checks every unit of a group, then the group's totals (Σ over units of amount × count).
    pub fn check_group(&self, group: &GroupSpec) -> Result<(), LimitError> {
        let (mut cpu, mut memory, mut gpus) = (0u128, 0u128, 0u128);
        for unit in &group.resources {
            self.check_unit(&group.name, unit)?;
            let n = u128::from(unit.count);
            cpu += u128::from(unit.resources.cpu.millis) * n;
            memory += u128::from(unit.resources.memory.bytes) * n;
            gpus += u128::from(unit.resources.gpu.units) * n;
        }
        let err = |problem: String| LimitError::Group {
            group: group.name.clone(),
            problem,
        };
        if cpu > u128::from(self.max_group_cpu_millis) {
            return Err(err(format!(
                "asks for {cpu}m CPU in total, more than the limit of {}m",
                self.max_group_cpu_millis
            )));
        }
        if memory > self.max_group_memory_bytes {
            return Err(err(format!(
                "asks for {memory} bytes of memory in total, more than the limit of {}",
                self.max_group_memory_bytes
            )));
        }
        if gpus > u128::from(self.max_group_gpus) {
            return Err(err(format!(
                "asks for {gpus} GPUs in total, more than the limit of {}",
                self.max_group_gpus
            )));
        }
        Ok(())
    }

    /// Checks that the limits make sense together (what genesis validation runs).
    pub fn validate(&self) -> Result<(), String> {
        if self.min_unit_cpu_millis == 0
            || self.min_unit_memory_bytes == 0
            || self.min_unit_storage_bytes == 0
        {
            return Err(
                "the minimum CPU, memory and storage must be above 0: a unit with none of a resource runs unlimited"
                    .into(),
            );
        }
        if self.min_unit_cpu_millis > self.max_unit_cpu_millis
            || self.min_unit_memory_bytes > self.max_unit_memory_bytes
            || self.min_unit_storage_bytes > self.max_unit_storage_bytes
        {
            return Err("a minimum is above its maximum".into());
        }
        if self.max_unit_price == 0 {
            return Err("max_unit_price is 0: no unit could have a price".into());
        }
        if self.max_unit_volumes == 0 {
            return Err("max_unit_volumes is 0: every unit needs a root volume".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Cpu, DecCoin, Memory, PlacementRequirements, Resources, Storage};

    fn unit(cpu: u64, memory: u64, storage: u64, price: u64) -> ResourceUnit {
        ResourceUnit {
            resources: Resources {
                id: 1,
                cpu: Cpu {
                    millis: cpu,
                    attributes: vec![],
                },
                memory: Memory {
                    bytes: memory,
                    attributes: vec![],
                },
                storage: vec![Storage {
                    name: "default".into(),
                    bytes: storage,
                    attributes: vec![],
                }],
                ..Resources::default()
            },
            count: 1,
            price: DecCoin {
                denom: "ukumo".into(),
                amount: Dec::from_int(price),
            },
        }
    }

    fn group(units: Vec<ResourceUnit>) -> GroupSpec {
        GroupSpec {
            name: "web".into(),
            requirements: PlacementRequirements::default(),
            resources: units,
        }
    }

    #[test]
    fn a_small_unit_passes_and_zero_of_anything_is_refused() {
        let l = ResourceLimits::default();
        l.check_group(&group(vec![unit(100, 64 << 20, 512 << 20, 100)]))
            .unwrap();
        for (u, what) in [
            (unit(0, 64 << 20, 512 << 20, 100), "cpu 0m"),
            (unit(100, 0, 512 << 20, 100), "memory 0 bytes"),
            (
                unit(100, 64 << 20, 0, 100),
                "storage volume \"default\" 0 bytes",
            ),
            (
                unit(u64::MAX, 64 << 20, 512 << 20, 100),
                "cpu 18446744073709551615m",
            ),
        ] {
            let e = l.check_group(&group(vec![u])).unwrap_err().to_string();
            assert!(e.starts_with("group \"web\" unit 1: "), "{e}");
            assert!(e.contains(what), "{e} should name {what}");
        }
    }

    #[test]
    fn a_price_above_the_cap_is_refused() {
        let l = ResourceLimits::default();
        let mut u = unit(100, 64 << 20, 512 << 20, 1);
        u.price.amount = Dec::from_atto(10u128.pow(38));
        let e = l.check_group(&group(vec![u])).unwrap_err();
        assert!(
            e.to_string().contains("above the highest unit price"),
            "{e}"
        );
    }

    #[test]
    fn group_totals_are_bounded() {
        let l = ResourceLimits::default();
        let mut u = unit(384_000, 64 << 20, 512 << 20, 1);
        u.count = 51;
        let e = l.check_group(&group(vec![u])).unwrap_err();
        assert!(
            matches!(e, LimitError::Group { .. }) && e.to_string().contains("CPU in total"),
            "{e}"
        );
    }

    #[test]
    fn validate_refuses_zero_minimums() {
        let l = ResourceLimits {
            min_unit_memory_bytes: 0,
            ..ResourceLimits::default()
        };
        assert!(l.validate().is_err());
        ResourceLimits::default().validate().unwrap();
    }
}
