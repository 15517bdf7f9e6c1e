//! Model-name normalization against a table of real NVML readings (`fixtures/nvml_names.tsv`):
//! each product name, memory and PCI device id must come out as Akash's model, ram and
//! interface. The readings are a fixture, so no GPU is needed to run this.

use kumo_gpu::nvml::{NvmlReading, short_bus_id};

fn table() -> Vec<(NvmlReading, String, String, String)> {
    let text = include_str!("fixtures/nvml_names.tsv");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 6, "fixture line {l:?}");
            let reading = NvmlReading {
                index: i as u32,
                uuid: format!("GPU-fixture-{i}"),
                name: f[0].into(),
                memory_bytes: f[1].parse::<u64>().unwrap() << 20,
                pci_device_id: Some(u16::from_str_radix(f[2], 16).unwrap()),
                pci_bus_id: Some("00000000:3B:00.0".into()),
            };
            (reading, f[3].into(), f[4].into(), f[5].into())
        })
        .collect()
}

#[test]
fn real_nvml_names_normalize_to_akash_names() {
    let rows = table();
    assert!(rows.len() >= 20);
    for (reading, model, ram, interface) in rows {
        let d = reading.to_device();
        assert_eq!(
            (d.model.as_str(), d.ram().as_str(), d.interface.as_str()),
            (model.as_str(), ram.as_str(), interface.as_str()),
            "{:?}",
            reading.name
        );
        assert_eq!(d.vendor, "nvidia");
        assert_eq!(d.pci_bus_id.as_deref(), Some("0000:3b:00.0"));
    }
}

#[test]
fn the_name_alone_gives_the_interface_when_the_device_id_is_unknown() {
    // Without the PCI device id (an id Akash's database lacks), the name still tells SXM parts.
    for (reading, model, ram, interface) in table() {
        let mut r = reading.clone();
        r.pci_device_id = None;
        let d = r.to_device();
        assert_eq!(d.model, model, "{}", r.name);
        assert_eq!(d.ram(), ram, "{}", r.name);
        assert_eq!(d.interface.as_str(), interface, "{}", r.name);
    }
    assert_eq!(short_bus_id("00000000:3B:00.0"), "0000:3b:00.0");
    assert_eq!(short_bus_id("0000:3b:00.0"), "0000:3b:00.0");
}

#[test]
fn discovery_without_nvidia_libraries_finds_nothing_and_does_not_fail() {
    // On a host with the NVIDIA driver this lists its GPUs; on one without (CI), none.
    let found = kumo_gpu::nvml::discover();
    if std::path::Path::new("/dev/nvidiactl").exists() {
        assert!(!found.is_empty());
    } else {
        assert!(found.is_empty());
    }
}
