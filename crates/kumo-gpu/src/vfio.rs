//! Whether the host can pass a GPU through to a VM (VFIO), checked in sysfs before QEMU starts,
//! so a lease gets "this host has no IOMMU" rather than a QEMU crash.
//!
//! A PCI function `0000:3b:00.0` can be passed through when:
//! 1. the IOMMU is on: `/sys/kernel/iommu_groups` has groups (kernel `intel_iommu=on` or
//!    `amd_iommu=on`, VT-d/AMD-Vi in the firmware);
//! 2. the device exists (`/sys/bus/pci/devices/<bdf>`) and has a group (`iommu_group` link);
//! 3. its group is isolated: every other device in it is bound to `vfio-pci` too (the GPU's
//!    own audio function, say) or is a PCI bridge; anything else would go to the VM with it;
//! 4. it is bound to `vfio-pci` (`driver` link), not `nvidia` or `nouveau`.
//!
//! [`check`] reads a sysfs tree under any root, so tests build one in a temporary directory.

use std::path::{Path, PathBuf};

/// Why a GPU cannot be passed through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VfioError {
    /// No IOMMU groups at all.
    #[error(
        "this host has no IOMMU ({0} is empty or missing): enable VT-d/AMD-Vi in the firmware and boot with intel_iommu=on or amd_iommu=on to pass GPUs through to VMs"
    )]
    NoIommu(String),
    /// The device is not in sysfs.
    #[error("PCI device {0} does not exist on this host (check gpu.devices pci_bus_ids)")]
    NoDevice(String),
    /// The device has no IOMMU group.
    #[error("PCI device {0} has no IOMMU group: the IOMMU does not cover it")]
    NoGroup(String),
    /// Other devices share its group.
    #[error(
        "PCI device {device} shares IOMMU group {group} with {others:?}, which are not bound to vfio-pci: the group is not isolated (bind them to vfio-pci too, or move the GPU to another slot)"
    )]
    NotIsolated {
        /// The GPU.
        device: String,
        /// Its group.
        group: String,
        /// The devices in the way.
        others: Vec<String>,
    },
    /// The device is bound to another driver (or none).
    #[error(
        "PCI device {device} is bound to {driver}, not vfio-pci: bind it to vfio-pci (e.g. driverctl set-override {device} vfio-pci) to pass it through"
    )]
    NotVfio {
        /// The GPU.
        device: String,
        /// Its current driver, or `no driver`.
        driver: String,
    },
}

/// A device ready for passthrough.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passthrough {
    /// `0000:3b:00.0`.
    pub bus_id: String,
    /// Its IOMMU group number.
    pub group: String,
}

impl Passthrough {
    /// QEMU's arguments for it.
    pub fn qemu_args(&self) -> [String; 2] {
        ["-device".into(), format!("vfio-pci,host={}", self.bus_id)]
    }
}

fn link_name(p: &Path) -> Option<String> {
    std::fs::read_link(p)
        .ok()
        .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
}

/// Checks that `bus_id` can be passed through, reading sysfs under `sysfs` (`/sys` on a host).
pub fn check(sysfs: &Path, bus_id: &str) -> Result<Passthrough, VfioError> {
    let groups = sysfs.join("kernel/iommu_groups");
    let any_group = std::fs::read_dir(&groups)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false);
    if !any_group {
        return Err(VfioError::NoIommu(groups.display().to_string()));
    }
    let dev: PathBuf = sysfs.join("bus/pci/devices").join(bus_id);
    if !dev.exists() {
        return Err(VfioError::NoDevice(bus_id.into()));
    }
    let group = link_name(&dev.join("iommu_group")).ok_or(VfioError::NoGroup(bus_id.into()))?;
    let mut others = Vec::new();
    if let Ok(members) = std::fs::read_dir(groups.join(&group).join("devices")) {
        for m in members.flatten() {
            let name = m.file_name().to_string_lossy().into_owned();
            if name == bus_id {
                continue;
            }
            let other = sysfs.join("bus/pci/devices").join(&name);
            let bridge = std::fs::read_to_string(other.join("class"))
                .is_ok_and(|c| c.trim().starts_with("0x0604"));
            let vfio = link_name(&other.join("driver")).as_deref() == Some("vfio-pci");
            if !(bridge || vfio) {
                others.push(name);
            }
        }
    }
    if !others.is_empty() {
        others.sort();
        return Err(VfioError::NotIsolated {
            device: bus_id.into(),
            group,
            others,
        });
    }
    match link_name(&dev.join("driver")) {
        Some(d) if d == "vfio-pci" => Ok(Passthrough {
            bus_id: bus_id.into(),
            group,
        }),
        other => Err(VfioError::NotVfio {
            device: bus_id.into(),
            driver: other.unwrap_or_else(|| "no driver".into()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    const GPU: &str = "0000:3b:00.0";
    const AUDIO: &str = "0000:3b:00.1";

    /// A sysfs tree: drivers, devices and IOMMU groups laid out (and linked) as the kernel does.
    struct Sysfs(tempfile::TempDir);

    impl Sysfs {
        fn new() -> Sysfs {
            let s = Sysfs(tempfile::tempdir().unwrap());
            std::fs::create_dir_all(s.root().join("kernel/iommu_groups")).unwrap();
            std::fs::create_dir_all(s.root().join("bus/pci/devices")).unwrap();
            for d in ["vfio-pci", "nvidia", "snd_hda_intel"] {
                std::fs::create_dir_all(s.root().join("bus/pci/drivers").join(d)).unwrap();
            }
            s
        }
        fn root(&self) -> &Path {
            self.0.path()
        }
        fn device(&self, bdf: &str, group: u32, driver: Option<&str>, class: &str) {
            let r = self.root();
            let g = r.join(format!("kernel/iommu_groups/{group}/devices"));
            std::fs::create_dir_all(&g).unwrap();
            let dev = r.join("devices/pci0000:00").join(bdf);
            std::fs::create_dir_all(&dev).unwrap();
            std::fs::write(dev.join("class"), format!("{class}\n")).unwrap();
            symlink(
                r.join(format!("kernel/iommu_groups/{group}")),
                dev.join("iommu_group"),
            )
            .unwrap();
            if let Some(d) = driver {
                symlink(r.join("bus/pci/drivers").join(d), dev.join("driver")).unwrap();
            }
            symlink(&dev, r.join("bus/pci/devices").join(bdf)).unwrap();
            symlink(&dev, g.join(bdf)).unwrap();
        }
    }

    #[test]
    fn no_iommu_groups_means_no_passthrough() {
        let s = Sysfs::new();
        assert!(matches!(check(s.root(), GPU), Err(VfioError::NoIommu(_))));
        let e = check(Path::new("/nonexistent-sysfs"), GPU).unwrap_err();
        assert!(e.to_string().contains("intel_iommu=on"), "{e}");
    }

    #[test]
    fn a_gpu_bound_to_vfio_alone_in_its_group_passes() {
        let s = Sysfs::new();
        s.device(GPU, 17, Some("vfio-pci"), "0x030200");
        let p = check(s.root(), GPU).unwrap();
        assert_eq!(p.group, "17");
        assert_eq!(p.qemu_args()[1], "vfio-pci,host=0000:3b:00.0");
        assert!(matches!(
            check(s.root(), "0000:99:00.0"),
            Err(VfioError::NoDevice(_))
        ));
    }

    #[test]
    fn a_gpu_on_the_nvidia_driver_is_refused() {
        let s = Sysfs::new();
        s.device(GPU, 17, Some("nvidia"), "0x030200");
        let e = check(s.root(), GPU).unwrap_err();
        assert_eq!(
            e,
            VfioError::NotVfio {
                device: GPU.into(),
                driver: "nvidia".into()
            }
        );
        let s = Sysfs::new();
        s.device(GPU, 17, None, "0x030200");
        assert!(
            check(s.root(), GPU)
                .unwrap_err()
                .to_string()
                .contains("no driver")
        );
    }

    #[test]
    fn a_shared_group_is_isolated_only_when_the_others_are_on_vfio_or_bridges() {
        let s = Sysfs::new();
        s.device(GPU, 5, Some("vfio-pci"), "0x030200");
        s.device(AUDIO, 5, Some("snd_hda_intel"), "0x040300");
        s.device("0000:00:01.0", 5, Some("pcieport"), "0x060400");
        let e = check(s.root(), GPU).unwrap_err();
        assert_eq!(
            e,
            VfioError::NotIsolated {
                device: GPU.into(),
                group: "5".into(),
                others: vec![AUDIO.into()],
            }
        );
        // Bind the audio function to vfio-pci as well: the group is isolated.
        let s = Sysfs::new();
        s.device(GPU, 5, Some("vfio-pci"), "0x030200");
        s.device(AUDIO, 5, Some("vfio-pci"), "0x040300");
        s.device("0000:00:01.0", 5, Some("pcieport"), "0x060400");
        assert!(check(s.root(), GPU).is_ok());
    }
}
