//! [`GpuDevice`]: one GPU of the host, with its model already in Akash's names.

use std::fmt;

use kumo_types::GpuOffer;
use serde::{Deserialize, Serialize};

/// How the GPU is attached: a PCIe card or an SXM module (NVLink baseboard).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interface {
    /// A PCIe card.
    Pcie,
    /// An SXM module.
    Sxm,
}

impl Interface {
    /// `pcie` or `sxm`, as in attributes and SDL.
    pub fn as_str(self) -> &'static str {
        match self {
            Interface::Pcie => "pcie",
            Interface::Sxm => "sxm",
        }
    }
}

impl fmt::Display for Interface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Interface {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "pcie" => Ok(Interface::Pcie),
            "sxm" => Ok(Interface::Sxm),
            other => Err(format!("GPU interface {other:?} is not pcie or sxm")),
        }
    }
}

/// One GPU the provider can hand to a lease.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct GpuDevice {
    /// NVML's index (or the position among declared devices).
    pub index: u32,
    /// NVML's `GPU-…` UUID, or `declared-<n>` for a device declared by hand: what a lease's
    /// assignment is keyed by, and what Docker's device request names.
    pub uuid: String,
    /// The vendor, `nvidia`.
    pub vendor: String,
    /// The model in Akash's names: `h100`, `a100`, `rtx4090`.
    pub model: String,
    /// Its memory in bytes, as read (declared devices: the declared size).
    pub memory_bytes: u64,
    /// PCIe card or SXM module.
    pub interface: Interface,
    /// `0000:3b:00.0`, when known: what VFIO passes through to a VM.
    pub pci_bus_id: Option<String>,
}

impl GpuDevice {
    /// The memory in Akash's form, `80Gi` (see [`crate::normalize::ram_label`]).
    pub fn ram(&self) -> String {
        crate::normalize::ram_label(self.memory_bytes)
    }

    /// `h100 80Gi sxm`: what tells two kinds of GPU apart for matching and pricing.
    pub fn kind(&self) -> GpuKind {
        GpuKind {
            vendor: self.vendor.clone(),
            model: self.model.clone(),
            ram: self.ram(),
            interface: self.interface,
        }
    }
}

/// A kind of GPU: vendor, model, memory, interface.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct GpuKind {
    /// `nvidia`.
    pub vendor: String,
    /// `h100`.
    pub model: String,
    /// `80Gi`.
    pub ram: String,
    /// `sxm`.
    pub interface: Interface,
}

impl GpuKind {
    /// The bid offer line for `count` of these.
    pub fn offer(&self, count: u32) -> GpuOffer {
        GpuOffer {
            vendor: self.vendor.clone(),
            model: self.model.clone(),
            ram: self.ram.clone(),
            interface: self.interface.as_str().to_string(),
            count,
        }
    }
}

impl fmt::Display for GpuKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.model, self.ram, self.interface)
    }
}

/// The offer lines for a set of devices: one per kind, with its count.
pub fn offers<'a>(devices: impl IntoIterator<Item = &'a GpuDevice>) -> Vec<GpuOffer> {
    let mut counts = std::collections::BTreeMap::<GpuKind, u32>::new();
    for d in devices {
        *counts.entry(d.kind()).or_default() += 1;
    }
    counts.into_iter().map(|(k, n)| k.offer(n)).collect()
}
