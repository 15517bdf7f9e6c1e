//! GPUs declared by hand in the provider's config, for hosts where NVML cannot see them (no
//! driver in the provider's namespace, a test devnet):
//!
//! ```toml
//! [[gpu.devices]]
//! model = "h100"
//! ram = "80Gi"
//! interface = "sxm"
//! count = 2
//! # pci_bus_ids = ["0000:3b:00.0", "0000:3c:00.0"]   # for VFIO passthrough to VMs
//! # uuids = ["GPU-…", "GPU-…"]                        # what Docker's device request names
//! ```

use serde::{Deserialize, Serialize};

use crate::{
    device::{GpuDevice, Interface},
    normalize::parse_ram,
};

/// One `[[gpu.devices]]` entry: `count` GPUs of one kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeclaredGpus {
    /// Akash's model name, `h100`.
    pub model: String,
    /// Memory, `80Gi`.
    pub ram: String,
    /// `pcie` or `sxm`.
    #[serde(default = "default_interface")]
    pub interface: String,
    /// How many.
    #[serde(default = "one")]
    pub count: u32,
    /// The vendor.
    #[serde(default = "nvidia")]
    pub vendor: String,
    /// Their UUIDs, in order (default `declared-<n>`); Docker's device request names them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uuids: Vec<String>,
    /// Their PCI addresses, in order, for VFIO passthrough to VMs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pci_bus_ids: Vec<String>,
}

fn default_interface() -> String {
    "pcie".into()
}
fn one() -> u32 {
    1
}
fn nvidia() -> String {
    "nvidia".into()
}

/// The devices the entries declare, indexed in order; an entry that makes no sense is an
/// error naming it.
pub fn devices(entries: &[DeclaredGpus]) -> Result<Vec<GpuDevice>, String> {
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let at = |m: String| format!("gpu.devices[{i}]: {m}");
        let model = e.model.trim().to_ascii_lowercase();
        if model.is_empty()
            || !model
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            return Err(at(format!(
                "model {:?} must be an Akash model name such as h100",
                e.model
            )));
        }
        let memory_bytes = parse_ram(&e.ram).map_err(at)?;
        let interface: Interface = e.interface.parse().map_err(at)?;
        if e.count == 0 || e.count > 64 {
            return Err(at("count must be 1 to 64".into()));
        }
        for (what, list) in [("uuids", &e.uuids), ("pci_bus_ids", &e.pci_bus_ids)] {
            if !list.is_empty() && list.len() != e.count as usize {
                return Err(at(format!(
                    "{what} lists {} for count {}",
                    list.len(),
                    e.count
                )));
            }
        }
        for n in 0..e.count as usize {
            let index = out.len() as u32;
            out.push(GpuDevice {
                index,
                uuid: e
                    .uuids
                    .get(n)
                    .cloned()
                    .unwrap_or_else(|| format!("declared-{index}")),
                vendor: e.vendor.to_ascii_lowercase(),
                model: model.clone(),
                memory_bytes,
                interface,
                pci_bus_id: e.pci_bus_ids.get(n).map(|s| s.to_ascii_lowercase()),
            });
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for d in &out {
        if !seen.insert(&d.uuid) {
            return Err(format!("gpu.devices: uuid {:?} is declared twice", d.uuid));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(model: &str, count: u32) -> DeclaredGpus {
        DeclaredGpus {
            model: model.into(),
            ram: "80Gi".into(),
            interface: "sxm".into(),
            count,
            vendor: "nvidia".into(),
            uuids: vec![],
            pci_bus_ids: vec![],
        }
    }

    #[test]
    fn entries_expand_to_indexed_devices_with_distinct_ids() {
        let d = devices(&[entry("H100", 2), entry("a100", 1)]).unwrap();
        assert_eq!(d.len(), 3);
        assert_eq!(d[0].model, "h100");
        assert_eq!(d[0].ram(), "80Gi");
        assert_eq!(d[1].uuid, "declared-1");
        assert_eq!(d[2].index, 2);
        assert_eq!(d[2].model, "a100");
        let mut bad = entry("h100", 2);
        bad.uuids = vec!["GPU-1".into()];
        assert!(
            devices(&[bad])
                .unwrap_err()
                .contains("uuids lists 1 for count 2")
        );
        let mut bad = entry("h100", 1);
        bad.interface = "nvlink".into();
        assert!(devices(&[bad]).unwrap_err().contains("gpu.devices[0]"));
        let mut dup = entry("h100", 1);
        dup.uuids = vec!["GPU-1".into()];
        assert!(devices(&[dup.clone(), dup]).unwrap_err().contains("twice"));
    }
}
