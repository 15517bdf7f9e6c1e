//! Which of the host's GPUs an order or lease gets.
//!
//! The devices come from NVML or the config's `[[gpu.devices]]` ([`discover`]). A bid reserves
//! specific devices ([`select`], under the daemon's reserve lock, written with the reservation
//! in one redb transaction, see [`crate::state`]); the lease keeps them; closing the lease or
//! losing the bid frees them. At deploy time the lease's devices are spread over its GPU
//! services' replicas ([`replica_assignments`]).

use std::collections::BTreeMap;

use kumo_gpu::{GpuDevice, attributes::device_matches};
use kumo_sdl::manifest::ManifestGroup;
use kumo_types::GroupSpec;
use kumo_workload::GpuAssignment;
use tracing::info;

use crate::config::GpuConfig;

/// The host's GPUs: the declared ones when any are, else NVML's (when enabled).
pub fn discover(cfg: &GpuConfig) -> Result<Vec<GpuDevice>, String> {
    let declared = kumo_gpu::declared::devices(&cfg.devices)?;
    let devices = if !declared.is_empty() {
        declared
    } else if cfg.nvml {
        kumo_gpu::nvml::discover()
    } else {
        Vec::new()
    };
    for d in &devices {
        info!(index = d.index, uuid = %d.uuid, kind = %d.kind(), "GPU");
    }
    Ok(devices)
}

/// Free devices (not in `held`) for every GPU a group asks for, or why not. Units with fewer
/// acceptable devices choose first, so a unit that takes any GPU does not take the only one a
/// pickier unit could use.
pub fn select(
    devices: &[GpuDevice],
    held: &BTreeMap<String, String>,
    group: &GroupSpec,
) -> Result<Vec<GpuDevice>, String> {
    let mut free: Vec<&GpuDevice> = devices
        .iter()
        .filter(|d| !held.contains_key(&d.uuid))
        .collect();
    let mut units: Vec<_> = group
        .resources
        .iter()
        .filter(|u| u.resources.gpu.units > 0)
        .collect();
    units.sort_by_key(|u| {
        devices
            .iter()
            .filter(|d| device_matches(d, &u.resources.gpu.attributes))
            .count()
    });
    let mut chosen = Vec::new();
    for u in units {
        let want = (u.resources.gpu.units * u64::from(u.count)) as usize;
        let fit: Vec<usize> = free
            .iter()
            .enumerate()
            .filter(|(_, d)| device_matches(d, &u.resources.gpu.attributes))
            .map(|(i, _)| i)
            .take(want)
            .collect();
        if fit.len() < want {
            let total = devices
                .iter()
                .filter(|d| device_matches(d, &u.resources.gpu.attributes))
                .count();
            return Err(if total < want {
                format!("needs {want} GPUs of the requested model, this host has {total}")
            } else {
                format!(
                    "needs {want} GPUs of the requested model, {} free (the others are held by leases or open bids)",
                    fit.len()
                )
            });
        }
        for i in fit.into_iter().rev() {
            chosen.push(free.remove(i).clone());
        }
    }
    chosen.sort();
    Ok(chosen)
}

/// GPU counts by kind (`h100 80Gi sxm` → 2), as inventories show them.
pub fn count_by_kind<'a>(
    devices: impl IntoIterator<Item = &'a GpuDevice>,
) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    for d in devices {
        *out.entry(d.kind().to_string()).or_default() += 1;
    }
    out
}

/// Spreads a lease's devices over the replicas of its GPU services, in order: each replica
/// gets its service's `units` devices, preferring ones that match the service's request.
pub fn replica_assignments(group: &ManifestGroup, devices: &[GpuDevice]) -> Vec<GpuAssignment> {
    let mut left: Vec<&GpuDevice> = devices.iter().collect();
    let mut out = Vec::new();
    for s in &group.services {
        let units = s.resources.gpu.units as usize;
        if units == 0 {
            continue;
        }
        for replica in 0..s.count {
            let mut mine = Vec::new();
            while mine.len() < units && !left.is_empty() {
                let i = left
                    .iter()
                    .position(|d| device_matches(d, &s.resources.gpu.attributes))
                    .unwrap_or(0);
                mine.push(left.remove(i));
            }
            out.push(GpuAssignment {
                service: s.name.clone(),
                replica,
                device_ids: mine.iter().map(|d| d.uuid.clone()).collect(),
                pci_bus_ids: mine.iter().filter_map(|d| d.pci_bus_id.clone()).collect(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use kumo_gpu::Interface;
    use kumo_types::{
        Attribute, Dec, DecCoin, Gpu, PlacementRequirements, ResourceUnit, Resources,
    };

    use super::*;

    fn dev(i: u32, model: &str) -> GpuDevice {
        GpuDevice {
            index: i,
            uuid: format!("GPU-{i}"),
            vendor: "nvidia".into(),
            model: model.into(),
            memory_bytes: 80 << 30,
            interface: Interface::Sxm,
            pci_bus_id: None,
        }
    }

    fn unit(units: u64, count: u32, model: Option<&str>) -> ResourceUnit {
        ResourceUnit {
            resources: Resources {
                gpu: Gpu {
                    units,
                    attributes: model
                        .map(|m| vec![Attribute::new(format!("vendor/nvidia/model/{m}"), "true")])
                        .unwrap_or_default(),
                },
                ..Resources::default()
            },
            count,
            price: DecCoin::new("ukumo", Dec::from_int(1)),
        }
    }

    fn group(units: Vec<ResourceUnit>) -> GroupSpec {
        GroupSpec {
            name: "g".into(),
            requirements: PlacementRequirements::default(),
            resources: units,
        }
    }

    #[test]
    fn picks_free_devices_of_the_model_and_says_why_not() {
        let devs = vec![dev(0, "a100"), dev(1, "h100"), dev(2, "h100")];
        let mut held = BTreeMap::new();
        let got = select(&devs, &held, &group(vec![unit(1, 2, Some("h100"))])).unwrap();
        assert_eq!(got.iter().map(|d| d.index).collect::<Vec<_>>(), [1, 2]);
        held.insert("GPU-1".to_string(), "someone".to_string());
        let e = select(&devs, &held, &group(vec![unit(2, 1, Some("h100"))])).unwrap_err();
        assert!(e.contains("1 free"), "{e}");
        let e = select(&devs, &held, &group(vec![unit(3, 1, Some("h100"))])).unwrap_err();
        assert!(e.contains("this host has 2"), "{e}");
        // Any-model and h100-only units: the picky one chooses first, so both fit.
        let held = BTreeMap::new();
        let got = select(
            &devs[..2],
            &held,
            &group(vec![unit(1, 1, None), unit(1, 1, Some("h100"))]),
        )
        .unwrap();
        assert_eq!(got.len(), 2);
    }
}
