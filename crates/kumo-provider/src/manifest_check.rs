//! Does a tenant's manifest ask for exactly what its lease pays for?
//!
//! The manifest's hash is checked against the chain, but the chain only stores the hash: a
//! tenant could deploy groups of small units and send a manifest (whose hash it put on chain)
//! with huge ones, or none at all. So before anything starts, every service of the manifest
//! group must carry the resources of a unit of the lease's group spec, and the services of each
//! unit must add up to its count and endpoints. Any difference refuses the manifest (Akash's
//! provider does the same with `ValidateManifestGroup`).

use std::collections::BTreeMap;

use kumo_sdl::manifest::ManifestGroup;
use kumo_types::{Endpoint, GroupSpec, Resources};

/// The resources of one instance without its endpoints and id, which are compared per unit.
fn sized(r: &Resources) -> Resources {
    Resources {
        id: 0,
        endpoints: Vec::new(),
        ..r.clone()
    }
}

fn endpoint_key(e: &Endpoint) -> (u32, u32) {
    (e.kind.akash_number(), e.sequence_number)
}

/// `Ok` when `group`'s services ask, unit by unit, for exactly what `spec` (the lease's group on
/// chain) holds; otherwise the first difference, in words a tenant can act on.
pub fn check_manifest_group(group: &ManifestGroup, spec: &GroupSpec) -> Result<(), String> {
    if group.name != spec.name {
        return Err(format!(
            "the manifest group is {:?} but the lease is for group {:?}",
            group.name, spec.name
        ));
    }
    // Per unit id: instances and endpoints the services add up to.
    let mut counts: BTreeMap<u32, u64> = BTreeMap::new();
    let mut endpoints: BTreeMap<u32, Vec<(u32, u32)>> = BTreeMap::new();
    for s in &group.services {
        let id = s.resources.id;
        let unit = spec
            .resources
            .iter()
            .find(|u| u.resources.id == id)
            .ok_or_else(|| {
                format!(
                    "service {:?} names resource unit {id}, which the lease's group does not have",
                    s.name
                )
            })?;
        if sized(&s.resources) != sized(&unit.resources) {
            return Err(format!(
                "service {:?} asks for {} but its lease's unit {id} is {}: the manifest must match the deployment on chain",
                s.name,
                describe(&s.resources),
                describe(&unit.resources)
            ));
        }
        *counts.entry(id).or_default() += u64::from(s.count);
        endpoints
            .entry(id)
            .or_default()
            .extend(s.resources.endpoints.iter().map(endpoint_key));
    }
    for unit in &spec.resources {
        let id = unit.resources.id;
        let got = counts.get(&id).copied().unwrap_or(0);
        if got != u64::from(unit.count) {
            return Err(format!(
                "the manifest runs {got} instance(s) of resource unit {id} but the lease pays for {}",
                unit.count
            ));
        }
        let mut want: Vec<(u32, u32)> = unit.resources.endpoints.iter().map(endpoint_key).collect();
        let mut have = endpoints.remove(&id).unwrap_or_default();
        want.sort_unstable();
        have.sort_unstable();
        if want != have {
            return Err(format!(
                "the manifest's endpoints for resource unit {id} differ from the lease's ({} against {})",
                have.len(),
                want.len()
            ));
        }
    }
    Ok(())
}

fn describe(r: &Resources) -> String {
    let storage: Vec<String> = r
        .storage
        .iter()
        .map(|v| format!("{} {} bytes", v.name, v.bytes))
        .collect();
    format!(
        "{}m CPU, {} bytes memory, {} GPU(s), storage [{}]",
        r.cpu.millis,
        r.memory.bytes,
        r.gpu.units,
        storage.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SDL: &str = r#"
version: "2.0"
services:
  web:
    image: nginx
    expose:
      - port: 80
        to: [{global: true}]
  db:
    image: postgres
profiles:
  compute:
    small:
      resources:
        cpu: {units: 0.5}
        memory: {size: 256Mi}
        storage: {size: 512Mi}
  placement:
    dc:
      pricing:
        small: {denom: ukumo, amount: 100}
deployment:
  web:
    dc: {profile: small, count: 2}
  db:
    dc: {profile: small, count: 1}
"#;

    fn parsed() -> (ManifestGroup, GroupSpec) {
        let d = kumo_sdl::parse(SDL).expect("valid SDL");
        (d.manifest().groups[0].clone(), d.groups()[0].clone())
    }

    #[test]
    fn the_manifest_of_the_deployed_sdl_passes() {
        let (group, spec) = parsed();
        check_manifest_group(&group, &spec).unwrap();
    }

    #[test]
    fn more_memory_than_the_lease_is_refused() {
        let (mut group, spec) = parsed();
        group.services[0].resources.memory.bytes *= 4;
        let e = check_manifest_group(&group, &spec).unwrap_err();
        assert!(e.contains("asks for") && e.contains("unit 1"), "{e}");
    }

    #[test]
    fn zero_resources_are_refused() {
        let (mut group, spec) = parsed();
        group.services[0].resources.cpu.millis = 0;
        group.services[0].resources.memory.bytes = 0;
        assert!(check_manifest_group(&group, &spec).is_err());
    }

    #[test]
    fn more_instances_than_the_lease_are_refused() {
        let (mut group, spec) = parsed();
        group.services[0].count += 1;
        let e = check_manifest_group(&group, &spec).unwrap_err();
        assert!(e.contains("instance(s)"), "{e}");
    }

    #[test]
    fn an_unknown_unit_or_extra_endpoint_is_refused() {
        let (mut group, spec) = parsed();
        group.services[1].resources.id = 9;
        assert!(check_manifest_group(&group, &spec).is_err());
        let (mut group, spec) = parsed();
        let web = group
            .services
            .iter_mut()
            .find(|s| s.name == "web")
            .expect("web service");
        let extra = web.resources.endpoints[0];
        web.resources.endpoints.push(extra);
        let e = check_manifest_group(&group, &spec).unwrap_err();
        assert!(e.contains("endpoints"), "{e}");
    }
}
