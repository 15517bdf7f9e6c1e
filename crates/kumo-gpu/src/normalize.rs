//! NVML's product names to Akash's model names, memory and interface.
//!
//! Akash names a GPU by a short lower-case model (`h100`, `a100`, `rtx4090`, `rtxa6000`, `t4`:
//! the names of its provider GPU database, keyed by PCI device id), its memory in whole GiB of
//! the marketed size (`80Gi`) and its interface (`pcie` or `sxm`). NVML reports a product name
//! (`NVIDIA H100 80GB HBM3`, `Tesla V100-SXM2-16GB`), the usable memory (a little below the
//! marketed size: a T4 reads 15 GiB) and the PCI device id. [`normalize`] maps the three to
//! Akash's triple; the known device ids (from Akash's database) win where they say more than
//! the name does (an `H100 80GB HBM3` is the SXM5 part).

use crate::device::Interface;

/// What NVML's reading normalizes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalized {
    /// `h100`.
    pub model: String,
    /// The marketed memory in bytes (a whole number of GiB).
    pub memory_bytes: u64,
    /// `pcie` or `sxm`.
    pub interface: Interface,
}

const GIB: u64 = 1 << 30;

/// Marketed GPU memory sizes in GiB: a reading is rounded up to the nearest of these.
const MARKETED_GIB: &[u64] = &[
    1, 2, 3, 4, 5, 6, 8, 10, 11, 12, 16, 20, 24, 32, 40, 48, 64, 80, 94, 96, 128, 141, 144, 180,
    192, 288,
];

/// PCI device ids (vendor 0x10de) whose interface Akash's GPU database records as SXM.
const SXM_DEVICE_IDS: &[u16] = &[
    0x1db1, 0x1db5, 0x1db8, // V100 SXM2/SXM3
    0x20b0, 0x20b2, 0x20b3, // A100 SXM4 40/80/64 GB
    0x20f3, // A800 SXM4
    0x2330, // H100 SXM5
    0x2335, // H200 SXM
];

/// Words in a product name that say nothing about the model.
const NOISE: &[&str] = &["nvidia", "tesla", "geforce", "quadro", "generation"];

/// Normalizes NVML's product name, total memory and PCI device id (the upper 16 bits of NVML's
/// `pciDeviceId`, when known).
pub fn normalize(name: &str, memory_bytes: u64, pci_device_id: Option<u16>) -> Normalized {
    let lower = name.to_ascii_lowercase();
    // `A100-SXM4-40GB`, `V100-SXM2-16GB`, `P100-PCIE-16GB`: the model is before the first dash.
    let mut words: Vec<&str> = Vec::new();
    for (i, part) in lower.split('-').enumerate() {
        if i > 0 {
            break;
        }
        words.extend(part.split_whitespace());
    }
    let model: String = words
        .iter()
        .filter(|w| !NOISE.contains(w))
        .filter(|w| !is_memory_word(w))
        .filter(|w| !matches!(**w, "hbm3" | "hbm3e" | "hbm2" | "hbm2e" | "pcie" | "nvl"))
        .filter(|w| !w.starts_with("sxm"))
        .copied()
        .collect::<Vec<_>>()
        .concat();
    let sxm_by_id = pci_device_id.is_some_and(|id| SXM_DEVICE_IDS.contains(&id));
    let sxm_by_name = lower.contains("sxm")
        || (model == "h100" && lower.contains("hbm3"))
        || (matches!(model.as_str(), "h200" | "gh200" | "b200" | "gb200")
            && !lower.contains("nvl")
            && !lower.contains("pcie"));
    Normalized {
        model,
        memory_bytes: marketed_memory(memory_bytes),
        interface: if sxm_by_id || sxm_by_name {
            Interface::Sxm
        } else {
            Interface::Pcie
        },
    }
}

/// `80gb`, `16gb`.
fn is_memory_word(w: &str) -> bool {
    w.strip_suffix("gb")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The marketed size of a memory reading: the smallest marketed size at or above 99% of it,
/// since NVML reports what is usable (ECC and firmware take some). Readings above every
/// marketed size round to whole GiB.
pub fn marketed_memory(bytes: u64) -> u64 {
    let gib = bytes as f64 / GIB as f64;
    let floor = gib * 0.99;
    MARKETED_GIB
        .iter()
        .find(|&&m| m as f64 >= floor)
        .map(|m| m * GIB)
        .unwrap_or_else(|| (gib.round() as u64) * GIB)
}

/// Memory as Akash writes it in attributes: whole GiB, `80Gi`.
pub fn ram_label(bytes: u64) -> String {
    format!("{}Gi", bytes / GIB)
}

/// Parses `80Gi` (also `80G`, `80GB`, `80`) to bytes, for declared devices.
pub fn parse_ram(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t
        .strip_suffix("Gi")
        .or_else(|| t.strip_suffix("GiB"))
        .or_else(|| t.strip_suffix("GB"))
        .or_else(|| t.strip_suffix("G"))
        .unwrap_or(t);
    digits
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0 && *n < 1 << 20)
        .map(|n| n * GIB)
        .ok_or_else(|| format!("GPU ram {s:?} is not a size such as 80Gi"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_round_to_what_is_marketed() {
        assert_eq!(ram_label(marketed_memory(15360 << 20)), "16Gi"); // T4
        assert_eq!(ram_label(marketed_memory(81559 << 20)), "80Gi"); // H100
        assert_eq!(ram_label(marketed_memory(40960 << 20)), "40Gi");
        assert_eq!(ram_label(marketed_memory(1000 * GIB)), "1000Gi");
        assert_eq!(parse_ram("80Gi"), Ok(80 * GIB));
        assert_eq!(parse_ram("24GB"), Ok(24 * GIB));
        assert!(parse_ram("lots").is_err());
        assert!(parse_ram("0Gi").is_err());
    }
}
