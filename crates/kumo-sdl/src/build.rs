//! From a checked [`Input`] to group specs and a manifest, with Akash's cross-reference rules.
//!
//! The steps follow Akash's Go parser in order, so that both accept and reject the same files
//! and produce the same output:
//! 1. [`cross_check`]: every name a deployment uses exists; IP endpoints, mounts, storage
//!    classes and endpoint usage are consistent.
//! 2. [`build_groups`]: one group per placement profile; one resource unit per service (v2.0)
//!    or per compute profile (v2.1, which merges services sharing a profile); endpoints;
//!    TEE requirements.
//! 3. [`check_limits`] and [`check_manifest`]: the limits the chain and providers enforce.

use std::collections::{BTreeMap, BTreeSet};

use kumo_types::{
    Attribute, Cpu, Dec, Endpoint, EndpointKind, Gpu, GroupSpec, Memory, PlacementRequirements,
    ResourceLimits, ResourceUnit, Resources, Storage,
};

use crate::SdlVersion;
use crate::error::{Loc, SdlError};
use crate::input::{ComputeProfile, Expose, Input, Service};
use crate::manifest::{
    ImageCredentials, Manifest, ManifestGroup, ManifestService, Permissions, ServiceExpose,
    ServiceParams, StorageMount, TeeParams,
};
use crate::warning::SdlWarning;

type Result<T> = std::result::Result<T, SdlError>;

/// The provider attribute a group with a `runtime: vm` service requires (value `"true"`).
pub const VM_CAPABILITY: &str = "capabilities/vm";

// Akash's limits, from the one definition the chain's `resource_limits` parameter defaults to:
// what the parser accepts, a chain with default parameters accepts too.
const LIMITS: ResourceLimits = ResourceLimits::AKASH;
const MIN_CPU_MILLIS: u64 = LIMITS.min_unit_cpu_millis;
const MAX_CPU_MILLIS: u64 = LIMITS.max_unit_cpu_millis;
const MAX_GPU_UNITS: u64 = LIMITS.max_unit_gpus;
const MIN_MEMORY: u64 = LIMITS.min_unit_memory_bytes;
const MAX_MEMORY: u64 = LIMITS.max_unit_memory_bytes;
const MIN_STORAGE: u64 = LIMITS.min_unit_storage_bytes;
const MAX_STORAGE: u64 = LIMITS.max_unit_storage_bytes;
/// The group totals are these many units at the unit maxima.
const MAX_UNIT_COUNT: u64 = LIMITS.max_group_cpu_millis / LIMITS.max_unit_cpu_millis;
const MAX_UNIT_PRICE: u64 = LIMITS.max_unit_price;

/// Runs every step and returns the group specs, the manifest, and warnings about what the
/// file asks for that has no effect.
pub(crate) fn build(input: &Input) -> Result<(Vec<GroupSpec>, Manifest, Vec<SdlWarning>)> {
    let warnings = cross_check(input)?;
    let (groups, manifest) = build_groups(input)?;
    check_limits(input, &groups)?;
    check_manifest(input, &manifest)?;
    Ok((groups, manifest, warnings))
}

fn deployment_loc(input: &Input, service: &str) -> Loc {
    input
        .deployment
        .get(service)
        .and_then(|p| p.values().next())
        .map(|d| {
            let path = d.loc.path.rsplit_once('.').map_or("", |(p, _)| p);
            Loc::new(path, d.loc.line)
        })
        .unwrap_or_default()
}

fn names<V>(map: &BTreeMap<String, V>) -> String {
    if map.is_empty() {
        "none".into()
    } else {
        map.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}

/// The cross-reference rules of Akash's `validate()`; warnings for persistent volumes that no
/// container mounts.
fn cross_check(input: &Input) -> Result<Vec<SdlWarning>> {
    let mut warnings: Vec<SdlWarning> = Vec::new();
    let mut endpoints_used = BTreeSet::new();
    let mut ports_used: BTreeMap<(String, u32, String), String> = BTreeMap::new();

    for (svc_name, placements) in &input.deployment {
        for (placement_name, deployment) in placements {
            let Some(compute) = input.compute.get(&deployment.profile) else {
                return Err(
                    Loc::new(deployment.loc.field("profile"), deployment.loc.line).err(format!(
                        "no compute profile named {:?} (profiles.compute has: {})",
                        deployment.profile,
                        names(&input.compute)
                    )),
                );
            };
            let Some(placement) = input.placement.get(placement_name) else {
                return Err(deployment.loc.err(format!(
                    "no placement profile named {placement_name:?} (profiles.placement has: {})",
                    names(&input.placement)
                )));
            };
            if !placement.pricing.contains_key(&deployment.profile) {
                return Err(placement.pricing_at.err(format!(
                    "no price for compute profile {:?}: add `{}: {{denom: uakt, amount: …}}`",
                    deployment.profile, deployment.profile
                )));
            }
            let Some(svc) = input.services.get(svc_name) else {
                return Err(deployment_loc(input, svc_name).err(format!(
                    "no service profile named {svc_name:?} under `services` (services has: {})",
                    names(&input.services)
                )));
            };

            for expose in &svc.expose {
                for to in &expose.to {
                    if to.ip.is_empty() {
                        continue;
                    }
                    let ip_loc = Loc::new(to.loc.field("ip"), to.loc.line);
                    if !to.global {
                        return Err(ip_loc
                            .err("an IP endpoint is only for global ports: add `global: true`"));
                    }
                    if !input.endpoints.contains_key(&to.ip) {
                        return Err(ip_loc.err(format!(
                            "no endpoint named {:?} (declare it under `endpoints` with `kind: ip`)",
                            to.ip
                        )));
                    }
                    endpoints_used.insert(to.ip.clone());
                    let key = (
                        to.ip.clone(),
                        expose.external_port,
                        expose.proto_written.clone(),
                    );
                    if let Some(other) = ports_used.get(&key) {
                        return Err(ip_loc.err(format!(
                            "IP endpoint {:?} port {} ({}) is already used by service {other:?}",
                            to.ip,
                            expose.port,
                            expose.proto.as_str()
                        )));
                    }
                    ports_used.insert(key, svc_name.clone());
                }
            }

            for w in check_mounts(input.version, svc_name, svc, compute)? {
                if !warnings.contains(&w) {
                    warnings.push(w);
                }
            }
        }
    }

    for (name, endpoint) in &input.endpoints {
        if !endpoints_used.contains(name) {
            return Err(endpoint
                .loc
                .err("declared but never used: reference it from an expose `to` with `ip`"));
        }
    }
    Ok(warnings)
}

/// Volumes named in `params.storage` exist and mount at distinct absolute paths; in v2.0 a
/// service with a persistent volume mounts at least one volume (Akash's rule, below). Returns a
/// warning for each persistent volume the service does not mount.
fn check_mounts(
    version: SdlVersion,
    svc_name: &str,
    svc: &Service,
    compute: &ComputeProfile,
) -> Result<Vec<SdlWarning>> {
    let mut mounts: BTreeMap<&str, &str> = BTreeMap::new();
    if let Some(params) = &svc.params {
        for (volume_name, p) in &params.storage {
            let Some(volume) = compute.storage.iter().find(|v| &v.name == volume_name) else {
                return Err(p.loc.err(format!(
                    "no volume named {volume_name:?} in compute profile {:?}",
                    compute.loc.path.rsplit('.').next().unwrap_or_default()
                )));
            };
            let mount_loc = Loc::new(p.loc.field("mount"), p.loc.line);
            if !p.mount.starts_with('/') {
                return Err(mount_loc.err(format!(
                    "invalid mount {:?}: expected absolute path, e.g. /data",
                    p.mount
                )));
            }
            if let Some(other) = mounts.insert(&p.mount, volume_name) {
                return Err(mount_loc.err(format!(
                    "mount {:?} already in use by volume {other:?}",
                    p.mount
                )));
            }
            if version == SdlVersion::V2_1
                && volume.attribute("class") == Some("ram")
                && p.read_only
            {
                return Err(Loc::new(p.loc.field("readOnly"), p.loc.line)
                    .err("a volume of class \"ram\" cannot be read-only"));
            }
        }
    }
    // Akash's v2.0 validator keeps one mount map for the whole service: the last mount it
    // reads from `params.storage` (each one absolute, so never empty) stands for every volume.
    // So it refuses a persistent volume only when the service mounts no volume at all; with
    // any mount, an unmounted persistent volume passes. Its v2.1 validator checks only the
    // volumes `params.storage` names, so it never refuses one. Both rules are followed
    // exactly, so that the same files pass; an unmounted persistent volume gets a warning.
    let mounts_any = svc.params.as_ref().is_some_and(|p| !p.storage.is_empty());
    let mut warnings = Vec::new();
    for volume in &compute.storage {
        if volume.attribute("persistent") != Some("true") {
            continue;
        }
        let mounted = svc
            .params
            .as_ref()
            .is_some_and(|p| p.storage.contains_key(&volume.name));
        if mounted {
            continue;
        }
        if version == SdlVersion::V2_0 && !mounts_any {
            return Err(volume.loc.err(format!(
                "volume {:?} has persistent=true which requires services.{svc_name}.params.storage.{} to have mount",
                volume.name, volume.name
            )));
        }
        warnings.push(SdlWarning::new(
            volume.loc.path.clone(),
            volume.loc.line,
            format!(
                "persistent volume {:?} is not mounted by service {svc_name:?}, so the service cannot reach it (Akash accepts this too); mount it with services.{svc_name}.params.storage.{}.mount",
                volume.name, volume.name
            ),
        ));
    }
    Ok(warnings)
}

/// Sequence numbers of IP endpoints, exactly as Akash assigns them (including its habit of
/// counting non-global destinations, which shifts the numbers).
fn endpoint_sequence_numbers(input: &Input) -> BTreeMap<String, u32> {
    let mut names = Vec::new();
    for svc_name in input.deployment.keys() {
        let Some(svc) = input.services.get(svc_name) else {
            continue;
        };
        for expose in &svc.expose {
            for to in &expose.to {
                if to.global && to.ip.is_empty() {
                    continue;
                }
                names.push(to.ip.clone());
            }
        }
    }
    names.sort();
    let mut numbers = BTreeMap::new();
    for (i, name) in names.into_iter().enumerate() {
        numbers.insert(name, i as u32 + 1);
    }
    numbers
}

/// The manifest form of a service's ports, in Akash's order.
fn manifest_exposes(exposes: &[Expose], seq: &BTreeMap<String, u32>) -> Vec<ServiceExpose> {
    let mut out = Vec::new();
    for expose in exposes {
        let base = ServiceExpose {
            port: expose.port,
            external_port: expose.external_port,
            proto: expose.proto,
            service: String::new(),
            global: false,
            hosts: expose.accept.clone(),
            http_options: expose.http_options.clone(),
            ip: String::new(),
            endpoint_sequence_number: 0,
        };
        if expose.to.is_empty() {
            out.push(base);
            continue;
        }
        for to in &expose.to {
            let mut e = base.clone();
            e.service = to.service.clone();
            e.global = to.global;
            e.ip = to.ip.clone();
            if to.global && !to.ip.is_empty() {
                e.endpoint_sequence_number = seq.get(&to.ip).copied().unwrap_or(0);
            }
            out.push(e);
        }
    }
    out.sort_by(|a, b| {
        a.service
            .cmp(&b.service)
            .then(a.port.cmp(&b.port))
            .then(a.proto.as_str().cmp(b.proto.as_str()))
            .then(b.global.cmp(&a.global))
    });
    out
}

/// Endpoints the exposes need: for each global port, a shared-HTTP or random-port endpoint,
/// plus a leased-IP endpoint when it names one.
fn endpoints_of(exposes: &[ServiceExpose]) -> Vec<Endpoint> {
    let mut out = Vec::new();
    for e in exposes.iter().filter(|e| e.global) {
        let kind = if e.is_ingress() {
            EndpointKind::SharedHttp
        } else {
            EndpointKind::RandomPort
        };
        out.push(Endpoint {
            kind,
            sequence_number: 0,
        });
        if !e.ip.is_empty() {
            out.push(Endpoint {
                kind: EndpointKind::LeasedIp,
                sequence_number: e.endpoint_sequence_number,
            });
        }
    }
    out
}

fn resources_of(compute: &ComputeProfile) -> Resources {
    Resources {
        id: 0,
        cpu: Cpu {
            millis: compute.cpu_millis,
            attributes: compute.cpu_attributes.clone(),
        },
        memory: Memory {
            bytes: compute.memory_bytes,
            attributes: Vec::new(),
        },
        storage: compute
            .storage
            .iter()
            .map(|v| Storage {
                name: v.name.clone(),
                bytes: v.bytes,
                attributes: v.attributes.clone(),
            })
            .collect(),
        gpu: Gpu {
            units: compute.gpu_units,
            attributes: compute.gpu_attributes.clone(),
        },
        endpoints: Vec::new(),
    }
}

struct GroupBuilder {
    spec: GroupSpec,
    services: Vec<ManifestService>,
    /// compute profile → index of its resource unit (v2.1 merges services sharing one).
    bound: BTreeMap<String, usize>,
    tee: Option<String>,
}

/// Akash's `buildGroups`, for both versions.
fn build_groups(input: &Input) -> Result<(Vec<GroupSpec>, Manifest)> {
    let seq = endpoint_sequence_numbers(input);
    let mut groups: BTreeMap<String, GroupBuilder> = BTreeMap::new();

    for (svc_name, placements) in &input.deployment {
        for (placement_name, deployment) in placements {
            // Existence was checked by cross_check.
            let compute = &input.compute[&deployment.profile];
            let svc = &input.services[svc_name];
            let placement = &input.placement[placement_name];
            let price = placement.pricing[&deployment.profile].coin.clone();

            let group = groups
                .entry(placement_name.clone())
                .or_insert_with(|| GroupBuilder {
                    spec: GroupSpec {
                        name: placement_name.clone(),
                        requirements: PlacementRequirements {
                            signed_by: placement.signed_by.clone(),
                            attributes: placement.attributes.clone(),
                        },
                        resources: Vec::new(),
                    },
                    services: Vec::new(),
                    bound: BTreeMap::new(),
                    tee: None,
                });

            if let Some(tee) = svc.params.as_ref().and_then(|p| p.tee.as_ref()) {
                let tee_loc = svc
                    .params
                    .as_ref()
                    .map(|p| Loc::new(p.loc.field("tee"), p.loc.line))
                    .unwrap_or_default();
                if tee == "cpu-gpu" && compute.gpu_units == 0 {
                    return Err(tee_loc.err(format!(
                        "tee type \"cpu-gpu\" requires gpu resources, but compute profile {:?} has none",
                        deployment.profile
                    )));
                }
                match &group.tee {
                    Some(existing) if existing != tee => {
                        return Err(tee_loc.err(format!(
                            "conflicting tee types in placement group {placement_name:?}: {existing:?} and {tee:?}"
                        )));
                    }
                    Some(_) => {}
                    None => {
                        group.tee = Some(tee.clone());
                        let attrs = &mut group.spec.requirements.attributes;
                        attrs.push(Attribute::new("tee/type", tee.clone()));
                        attrs.sort_by(|a, b| a.key.cmp(&b.key));
                    }
                }
            }

            // A VM group may only land on a provider that runs VMs: the requirement is implied
            // by `runtime: vm`, so the tenant need not write it (docs/sdl-extensions.md).
            if svc.vm.is_some() {
                let attrs = &mut group.spec.requirements.attributes;
                if !attrs.iter().any(|a| a.key == VM_CAPABILITY) {
                    attrs.push(Attribute::new(VM_CAPABILITY, "true"));
                    attrs.sort_by(|a, b| a.key.cmp(&b.key));
                }
            }

            let expose = manifest_exposes(&svc.expose, &seq);
            let endpoints = endpoints_of(&expose);
            let mut resources = resources_of(compute);
            resources.endpoints = endpoints.clone();

            let merge_into = match input.version {
                SdlVersion::V2_0 => None,
                SdlVersion::V2_1 => group.bound.get(&deployment.profile).copied(),
            };
            match merge_into {
                Some(index) => {
                    let unit = &mut group.spec.resources[index];
                    resources.id = unit.resources.id;
                    unit.count = unit.count.saturating_add(deployment.count);
                    unit.resources.endpoints.extend(endpoints);
                    unit.resources.endpoints.sort_by_key(|e| e.sequence_number);
                }
                None => {
                    resources.id = group.spec.resources.len() as u32 + 1;
                    group.spec.resources.push(ResourceUnit {
                        resources: resources.clone(),
                        count: deployment.count,
                        price,
                    });
                    group
                        .bound
                        .insert(deployment.profile.clone(), group.spec.resources.len() - 1);
                }
            }

            let params = svc.params.as_ref().map(|p| ServiceParams {
                storage: (!p.storage.is_empty()).then(|| {
                    p.storage
                        .iter()
                        .map(|(name, s)| StorageMount {
                            name: name.clone(),
                            mount: s.mount.clone(),
                            read_only: s.read_only,
                        })
                        .collect()
                }),
                permissions: p.permissions.clone().map(|read| Permissions { read }),
                tee: p.tee.clone().map(|kind| TeeParams {
                    kind,
                    attestation: true,
                }),
            });

            group.services.push(ManifestService {
                name: svc_name.clone(),
                image: svc.image.clone(),
                command: svc.command.clone(),
                args: svc.args.clone(),
                env: svc.env.clone(),
                resources,
                count: deployment.count,
                expose,
                params,
                credentials: svc.credentials.as_ref().map(|c| ImageCredentials {
                    host: c.host.clone(),
                    email: c.email.clone(),
                    username: c.username.clone(),
                    password: c.password.clone(),
                }),
                vm: svc.vm.clone(),
            });
        }
    }

    let mut specs = Vec::with_capacity(groups.len());
    let mut manifest = Manifest { groups: Vec::new() };
    for (name, mut group) in groups {
        group.services.sort_by(|a, b| a.name.cmp(&b.name));
        specs.push(group.spec);
        manifest.groups.push(ManifestGroup {
            name,
            services: group.services,
        });
    }
    Ok((specs, manifest))
}

/// Akash's attribute key rule: a letter, then 1-126 of `[A-Za-z0-9_/.-]`, then optionally one
/// of `[A-Za-z0-9_*]`.
pub(crate) fn valid_attribute_key(key: &str) -> bool {
    let b = key.as_bytes();
    let mid = |c: &u8| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'/' | b'.' | b'-');
    let last = |c: &u8| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'*');
    if b.is_empty() || !b[0].is_ascii_alphabetic() {
        return false;
    }
    let rest = &b[1..];
    let plain = (1..=126).contains(&rest.len()) && rest.iter().all(mid);
    let with_tail = (2..=127).contains(&rest.len())
        && rest[..rest.len() - 1].iter().all(mid)
        && last(&rest[rest.len() - 1]);
    plain || with_tail
}

fn check_attributes(attrs: &[Attribute], loc: &Loc, what: &str) -> Result<()> {
    let mut seen = BTreeSet::new();
    for a in attrs {
        if !valid_attribute_key(&a.key) {
            return Err(loc.err(format!(
                "invalid {what} attribute key {:?} (a letter, then letters, digits, '_', '/', '.', '-')",
                a.key
            )));
        }
        if !seen.insert(&a.key) {
            return Err(loc.err(format!("{what} attribute {:?} is given twice", a.key)));
        }
    }
    Ok(())
}

/// The per-unit and per-group limits, and one denomination for the whole deployment.
fn check_limits(input: &Input, groups: &[GroupSpec]) -> Result<()> {
    // Per compute profile actually deployed: the unit limits.
    let used: BTreeSet<&String> = input
        .deployment
        .values()
        .flat_map(|p| p.values().map(|d| &d.profile))
        .collect();
    for name in used {
        let c = &input.compute[name];
        let res = Loc::new(c.loc.field("resources"), c.loc.line);
        if !(MIN_CPU_MILLIS..=MAX_CPU_MILLIS).contains(&c.cpu_millis) {
            return Err(c
                .cpu_units_at
                .err(format!("{}m is outside 10m-384 CPUs", c.cpu_millis)));
        }
        check_attributes(
            &c.cpu_attributes,
            &Loc::new(res.sub("cpu.attributes"), c.loc.line),
            "CPU",
        )?;
        if c.gpu_units > MAX_GPU_UNITS {
            return Err(c
                .gpu_units_at
                .err(format!("{} is outside 0-{MAX_GPU_UNITS} GPUs", c.gpu_units)));
        }
        check_attributes(
            &c.gpu_attributes,
            &Loc::new(res.sub("gpu.attributes"), c.loc.line),
            "GPU",
        )?;
        if !(MIN_MEMORY..=MAX_MEMORY).contains(&c.memory_bytes) {
            return Err(c
                .memory_size_at
                .err(format!("{} bytes is outside 1Mi-2Ti", c.memory_bytes)));
        }
        if c.storage.is_empty() {
            return Err(Loc::new(res.field("storage"), c.loc.line)
                .err("needs at least one volume, e.g. `storage: {size: 1Gi}`"));
        }
        for v in &c.storage {
            if !(MIN_STORAGE..=MAX_STORAGE).contains(&v.bytes) {
                return Err(v.size_at.err(format!(
                    "volume {:?}: {} bytes is outside 5Mi-32Ti",
                    v.name, v.bytes
                )));
            }
        }
    }

    let mut denom: Option<(&str, &Loc)> = None;
    for group in groups {
        let placement = &input.placement[&group.name];
        let mut cpu: u128 = 0;
        let mut gpu: u128 = 0;
        let mut memory: u128 = 0;
        for unit in &group.resources {
            let count = u128::from(unit.count);
            cpu += u128::from(unit.resources.cpu.millis) * count;
            gpu += u128::from(unit.resources.gpu.units) * count;
            memory += u128::from(unit.resources.memory.bytes) * count;
        }
        for (profile, entry) in &placement.pricing {
            let price = &entry.coin;
            let deployed = input
                .deployment
                .values()
                .any(|p| p.get(&group.name).is_some_and(|d| &d.profile == profile));
            if !deployed {
                continue;
            }
            if price.amount > Dec::from_int(MAX_UNIT_PRICE) {
                return Err(entry.amount_at.err(format!(
                    "{} is above the highest unit price, {MAX_UNIT_PRICE}",
                    price.amount
                )));
            }
            match denom {
                None => denom = Some((&price.denom, &entry.denom_at)),
                Some((d, first)) if d != price.denom => {
                    return Err(entry.denom_at.err(format!(
                        "all prices of a deployment must use one denomination: {:?} here, {d:?} at {}",
                        price.denom, first.path
                    )));
                }
                Some(_) => {}
            }
        }
        let group_loc = Loc::new(placement.loc.path.clone(), placement.loc.line);
        if cpu == 0 || cpu > u128::from(MAX_CPU_MILLIS * MAX_UNIT_COUNT) {
            return Err(group_loc.err(format!(
                "group {:?} asks for {cpu}m CPU in total; allowed 1m-{}m",
                group.name,
                MAX_CPU_MILLIS * MAX_UNIT_COUNT
            )));
        }
        if gpu > u128::from(MAX_GPU_UNITS * MAX_UNIT_COUNT) {
            return Err(group_loc.err(format!(
                "group {:?} asks for {gpu} GPUs in total; allowed at most {}",
                group.name,
                MAX_GPU_UNITS * MAX_UNIT_COUNT
            )));
        }
        if memory == 0 || memory > u128::from(MAX_MEMORY) * u128::from(MAX_UNIT_COUNT) {
            return Err(group_loc.err(format!(
                "group {:?} asks for {memory} bytes of memory in total; allowed at most 100Ti",
                group.name
            )));
        }
        if group.price().is_none() {
            return Err(group_loc.err(format!(
                "group {:?}: its total price does not fit",
                group.name
            )));
        }
    }
    Ok(())
}

/// `^[a-z]([-a-z0-9]*[a-z0-9])?$`: a service name is a DNS label, since services reach each
/// other by name.
fn valid_service_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[b.len() - 1] != b'-'
}

/// Akash's manifest validation: service names, host names unique across the deployment, and
/// at least one service reachable from outside.
fn check_manifest(input: &Input, manifest: &Manifest) -> Result<()> {
    let mut hosts: BTreeSet<&str> = BTreeSet::new();
    let mut global = 0usize;
    for (_, svc) in manifest.services() {
        let loc = &input.services[&svc.name].loc;
        if !valid_service_name(&svc.name) {
            return Err(loc.err(
                "invalid service name: use lowercase letters, digits and '-', starting with a letter (it becomes a host name)",
            ));
        }
        let exposes = &input.services[&svc.name].expose;
        for e in &svc.expose {
            if e.global {
                global += 1;
            }
            for host in e.hosts.iter().flatten() {
                if !hosts.insert(host) {
                    let at = exposes
                        .iter()
                        .find(|x| x.accept.iter().flatten().any(|h| h == host))
                        .map_or(loc, |x| &x.loc);
                    return Err(Loc::new(at.field("accept"), at.line).err(format!(
                        "host name {host:?} is used more than once; each host may route to one port"
                    )));
                }
            }
        }
    }
    if global == 0 {
        return Err(SdlError::new(
            "services",
            0,
            "no service is exposed globally: add `to: [{global: true}]` to at least one expose",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_keys() {
        assert!(valid_attribute_key("region"));
        assert!(valid_attribute_key("vendor/nvidia/model/*"));
        assert!(valid_attribute_key("vendor/nvidia/model/a100/ram/80Gi"));
        assert!(!valid_attribute_key("r"));
        assert!(!valid_attribute_key("1abc"));
        assert!(!valid_attribute_key("vendor/nvidia/model/rtx 4090"));
        assert!(valid_service_name("web-1"));
        assert!(!valid_service_name("Web"));
        assert!(!valid_service_name("web-"));
    }
}
