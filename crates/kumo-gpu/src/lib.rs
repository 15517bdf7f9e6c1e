//! GPUs on a provider host, in Akash's vocabulary.
//!
//! - [`device`]: [`GpuDevice`] (index, UUID, model, memory, interface, PCI address) and
//!   [`GpuKind`], what tells two GPUs apart for matching, pricing and bid offers.
//! - [`normalize`]: NVML's product names (`NVIDIA H100 80GB HBM3`) to Akash's model, memory and
//!   interface (`h100`, `80Gi`, `sxm`).
//! - [`nvml`]: discovery through NVML, loaded at run time (no driver: no GPUs, no failure).
//! - [`declared`]: GPUs declared by hand in the provider config (`[[gpu.devices]]`).
//! - [`attributes`]: the `capabilities/gpu/...` attributes a provider publishes, and which
//!   devices fit a group's GPU request.
//! - [`vfio`]: whether a GPU can be passed through to a VM, checked in sysfs.

pub mod attributes;
pub mod declared;
pub mod device;
pub mod normalize;
pub mod nvml;
pub mod vfio;

pub use declared::DeclaredGpus;
pub use device::{GpuDevice, GpuKind, Interface};
