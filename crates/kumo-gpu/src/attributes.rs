//! GPUs as Akash attributes, and which devices a group's GPU request can use.
//!
//! A provider publishes, for each kind of GPU it has, the four keys Akash providers publish
//! (value `true`):
//!
//! ```text
//! capabilities/gpu/vendor/nvidia/model/h100
//! capabilities/gpu/vendor/nvidia/model/h100/ram/80Gi
//! capabilities/gpu/vendor/nvidia/model/h100/ram/80Gi/interface/sxm
//! capabilities/gpu/vendor/nvidia/model/h100/interface/sxm
//! ```
//!
//! An SDL request becomes one key (`vendor/nvidia/model/h100`, or with `/ram/80Gi` and/or
//! `/interface/sxm`, or `vendor/nvidia/model/*` for any model) that must equal (or, with `*`,
//! glob-match) one of them: a request without ram or interface takes any memory and interface
//! of the model; with them, only that memory and interface. The chain's check
//! (`kumo_types::matching`) asks "does the provider have such a GPU at all"; [`device_matches`]
//! asks the same of one device, so the bid engine reserves devices that really fit.

use kumo_types::{Attribute, matching::glob_match};

use crate::device::{GpuDevice, GpuKind};

/// The unit-relative keys (`vendor/nvidia/model/h100/...`) a device of this kind answers to.
pub fn kind_keys(k: &GpuKind) -> [String; 4] {
    let model = format!("vendor/{}/model/{}", k.vendor, k.model);
    [
        model.clone(),
        format!("{model}/ram/{}", k.ram),
        format!("{model}/ram/{}/interface/{}", k.ram, k.interface),
        format!("{model}/interface/{}", k.interface),
    ]
}

/// The provider attributes for its devices, sorted, without duplicates.
pub fn provider_attributes<'a>(devices: impl IntoIterator<Item = &'a GpuDevice>) -> Vec<Attribute> {
    let mut keys = std::collections::BTreeSet::new();
    for d in devices {
        for k in kind_keys(&d.kind()) {
            keys.insert(format!("capabilities/gpu/{k}"));
        }
    }
    keys.into_iter()
        .map(|k| Attribute::new(k, "true"))
        .collect()
}

/// Whether a device satisfies a resource unit's GPU attributes (none: any GPU does).
pub fn device_matches(device: &GpuDevice, wanted: &[Attribute]) -> bool {
    if wanted.is_empty() {
        return true;
    }
    let keys = kind_keys(&device.kind());
    wanted
        .iter()
        .any(|w| w.value == "true" && keys.iter().any(|k| glob_match(&w.key, k)))
}

/// The configured attributes with every `capabilities/gpu/...` replaced by the devices' own:
/// what `kumo provider register` publishes, so the chain never advertises a GPU the host lacks.
pub fn with_gpu_attributes(configured: &[Attribute], devices: &[GpuDevice]) -> Vec<Attribute> {
    let mut out: Vec<Attribute> = configured
        .iter()
        .filter(|a| !a.key.starts_with("capabilities/gpu/"))
        .cloned()
        .collect();
    out.extend(provider_attributes(devices));
    out
}

#[cfg(test)]
mod tests {
    use kumo_types::{
        Gpu, GroupSpec, PlacementRequirements, ResourceUnit, Resources,
        matching::{MatchError, match_group},
    };

    use super::*;
    use crate::device::Interface;

    fn dev(model: &str, gib: u64, interface: Interface) -> GpuDevice {
        GpuDevice {
            index: 0,
            uuid: "GPU-0".into(),
            vendor: "nvidia".into(),
            model: model.into(),
            memory_bytes: gib << 30,
            interface,
            pci_bus_id: None,
        }
    }

    fn want(key: &str) -> Vec<Attribute> {
        vec![Attribute::new(key, "true")]
    }

    fn group(wanted: Vec<Attribute>) -> GroupSpec {
        GroupSpec {
            name: "g".into(),
            requirements: PlacementRequirements::default(),
            resources: vec![ResourceUnit {
                resources: Resources {
                    gpu: Gpu {
                        units: 1,
                        attributes: wanted,
                    },
                    ..Resources::default()
                },
                count: 1,
                price: kumo_types::DecCoin::new("ukumo", kumo_types::Dec::from_int(1)),
            }],
        }
    }

    #[test]
    fn publishes_the_four_akash_keys_per_kind() {
        let attrs = provider_attributes(&[
            dev("h100", 80, Interface::Sxm),
            dev("h100", 80, Interface::Sxm),
        ]);
        let keys: Vec<&str> = attrs.iter().map(|a| a.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "capabilities/gpu/vendor/nvidia/model/h100",
                "capabilities/gpu/vendor/nvidia/model/h100/interface/sxm",
                "capabilities/gpu/vendor/nvidia/model/h100/ram/80Gi",
                "capabilities/gpu/vendor/nvidia/model/h100/ram/80Gi/interface/sxm",
            ]
        );
        assert!(attrs.iter().all(|a| a.value == "true"));
    }

    #[test]
    fn without_ram_or_interface_any_matches_with_them_only_exact() {
        let h100_sxm = dev("h100", 80, Interface::Sxm);
        let h100_pcie = dev("h100", 80, Interface::Pcie);
        let a100_40 = dev("a100", 40, Interface::Sxm);
        let cases: &[(&str, &GpuDevice, bool)] = &[
            ("vendor/nvidia/model/h100", &h100_sxm, true),
            ("vendor/nvidia/model/h100", &h100_pcie, true),
            ("vendor/nvidia/model/h100", &a100_40, false),
            ("vendor/nvidia/model/h100/ram/80Gi", &h100_pcie, true),
            ("vendor/nvidia/model/h100/ram/94Gi", &h100_pcie, false),
            ("vendor/nvidia/model/h100/interface/sxm", &h100_sxm, true),
            ("vendor/nvidia/model/h100/interface/sxm", &h100_pcie, false),
            (
                "vendor/nvidia/model/h100/ram/80Gi/interface/sxm",
                &h100_sxm,
                true,
            ),
            (
                "vendor/nvidia/model/h100/ram/80Gi/interface/pcie",
                &h100_sxm,
                false,
            ),
            ("vendor/nvidia/model/a100/ram/80Gi", &a100_40, false),
            ("vendor/nvidia/model/*", &a100_40, true),
        ];
        for (key, d, ok) in cases {
            assert_eq!(device_matches(d, &want(key)), *ok, "{key} vs {}", d.kind());
            // The chain's check on the published attributes agrees with the device check.
            let provider = provider_attributes([*d]);
            let chain = match_group(&group(want(key)), &provider, &[]);
            assert_eq!(
                chain.is_ok(),
                *ok,
                "chain: {key} vs {}: {chain:?}",
                d.kind()
            );
            if !ok {
                assert!(matches!(chain, Err(MatchError::Gpu(_))));
            }
        }
        // No attributes at all: any GPU.
        assert!(device_matches(&a100_40, &[]));
        // One of several acceptable models is enough.
        let either = vec![
            Attribute::new("vendor/nvidia/model/h100", "true"),
            Attribute::new("vendor/nvidia/model/a100", "true"),
        ];
        assert!(device_matches(&a100_40, &either));
    }

    #[test]
    fn registered_attributes_follow_the_devices() {
        let configured = vec![
            Attribute::new("region", "eu"),
            Attribute::new("capabilities/gpu/vendor/nvidia/model/t4", "true"),
        ];
        let out = with_gpu_attributes(&configured, &[dev("a100", 40, Interface::Pcie)]);
        assert_eq!(out[0], Attribute::new("region", "eu"));
        assert!(out.iter().all(|a| !a.key.contains("/t4")));
        assert_eq!(out.len(), 5);
    }
}
