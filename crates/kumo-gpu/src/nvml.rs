//! Discovery through NVML (`nvml-wrapper`), which opens `libnvidia-ml.so.1` at run time: a host
//! without the NVIDIA driver has no GPUs, with one info log, and never fails to start.

use nvml_wrapper::Nvml;
use tracing::{info, warn};

use crate::{device::GpuDevice, normalize::normalize};

/// NVML's reading of one device, before normalization (also what the test fixtures record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvmlReading {
    /// `nvmlDeviceGetIndex`.
    pub index: u32,
    /// `nvmlDeviceGetUUID`: `GPU-…`.
    pub uuid: String,
    /// `nvmlDeviceGetName`: `NVIDIA H100 80GB HBM3`.
    pub name: String,
    /// `nvmlDeviceGetMemoryInfo().total` in bytes.
    pub memory_bytes: u64,
    /// The PCI device id (upper 16 bits of `pciDeviceId`).
    pub pci_device_id: Option<u16>,
    /// `0000:3B:00.0` as NVML writes it.
    pub pci_bus_id: Option<String>,
}

impl NvmlReading {
    /// The device, with its model, memory and interface in Akash's names.
    pub fn to_device(&self) -> GpuDevice {
        let n = normalize(&self.name, self.memory_bytes, self.pci_device_id);
        GpuDevice {
            index: self.index,
            uuid: self.uuid.clone(),
            vendor: "nvidia".into(),
            model: n.model,
            memory_bytes: n.memory_bytes,
            interface: n.interface,
            pci_bus_id: self.pci_bus_id.as_deref().map(short_bus_id),
        }
    }
}

/// NVML writes an 8-digit domain (`00000000:3B:00.0`); sysfs and QEMU use 4 and lower case.
pub fn short_bus_id(id: &str) -> String {
    let lower = id.to_ascii_lowercase();
    match lower.split_once(':') {
        Some((domain, rest)) if domain.len() > 4 => {
            format!("{}:{rest}", &domain[domain.len() - 4..])
        }
        _ => lower,
    }
}

/// Reads every device NVML sees. No driver (or no NVML library): an empty list and one info
/// log. A device that cannot be read is skipped with a warning.
pub fn read() -> Vec<NvmlReading> {
    let nvml = match Nvml::init() {
        Ok(n) => n,
        Err(e) => {
            info!("no NVIDIA GPUs: NVML is not available on this host ({e})");
            return Vec::new();
        }
    };
    let count = match nvml.device_count() {
        Ok(n) => n,
        Err(e) => {
            warn!("NVML could not count the GPUs: {e}");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for index in 0..count {
        let reading = nvml.device_by_index(index).and_then(|d| {
            let pci = d.pci_info().ok();
            Ok(NvmlReading {
                index,
                uuid: d.uuid()?,
                name: d.name()?,
                memory_bytes: d.memory_info()?.total,
                pci_device_id: pci.as_ref().map(|p| (p.pci_device_id >> 16) as u16),
                pci_bus_id: pci.map(|p| p.bus_id),
            })
        });
        match reading {
            Ok(r) => out.push(r),
            Err(e) => warn!("NVML could not read GPU {index}: {e} (skipped)"),
        }
    }
    out
}

/// The devices NVML sees, normalized.
pub fn discover() -> Vec<GpuDevice> {
    read().iter().map(NvmlReading::to_device).collect()
}
