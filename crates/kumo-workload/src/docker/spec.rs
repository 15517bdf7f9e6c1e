//! From a manifest service to the engine's container definition: resource limits, mounts,
//! environment, network alias, labels. Pure functions, so the mapping is tested without an
//! engine.
//!
//! Choices:
//! - **Restart policy `unless-stopped`.** Akash runs services as Kubernetes Deployments, whose
//!   pods restart whenever their process exits, with code 0 or not; `unless-stopped` is
//!   Docker's equivalent (`on-failure` would leave a service that exits 0 down for good). It
//!   also brings replicas back after the engine restarts, and unlike `always` it leaves a
//!   replica the provider stopped on purpose alone.
//! - **CPU** as `nano_cpus` (a hard quota: 1000 millis = one core), **memory** as a hard limit
//!   without swap, **pids** from the provider's config (profiles have no pids field).
//! - **Storage:** a mount of a `ram` volume is a tmpfs of the volume's size (full: `ENOSPC`);
//!   of a persistent volume, a named volume per replica that outlives the container, backed by
//!   a file system of the volume's size (see [`crate::storage`]; full: `ENOSPC`); of any other
//!   volume, an anonymous volume removed with the container. The writable layer and those
//!   anonymous volumes cannot be size-limited on overlay2 (only on XFS with project quotas):
//!   their sum, the replica's ephemeral storage, is carried in the `kumo.ephemeral` label and
//!   measured, and a replica above it is evicted (`docker::evict`).
//! - **Lease variables:** `AKASH_OWNER`, `AKASH_DEPLOYMENT_SEQUENCE`, `AKASH_GROUP_SEQUENCE`,
//!   `AKASH_ORDER_SEQUENCE`, `AKASH_PROVIDER`, as Akash sets them (images written for Akash
//!   read them), then the provider's extra variables, then the manifest's own.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, DeviceRequest, EndpointSettings, HostConfig, HostConfigLogConfig, Mount,
    MountTmpfsOptions, MountType, MountVolumeOptions, NetworkingConfig, RestartPolicy,
    RestartPolicyNameEnum,
};
use kumo_sdl::manifest::{ManifestService, Proto};
use kumo_types::LeaseId;
use sha2::{Digest, Sha256};

use super::labels::{self, Names};
use crate::WorkloadError;
use crate::backend::{DeployOptions, ServicePort};

/// Bump when the mapping below changes in a way that should recreate running containers.
/// 2: containers carry their ephemeral storage limit (`kumo.ephemeral`), which eviction reads.
const SPEC_VERSION: u32 = 2;

/// Provider settings that shape every container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) pids_limit: i64,
    pub(crate) log_max_size: String,
    pub(crate) log_max_files: u32,
}

/// One persistent volume a replica needs before it can be created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VolumePlan {
    /// The engine's name for it.
    pub(crate) name: String,
    /// The storage name in the compute profile.
    pub(crate) storage: String,
    /// Its size: the tenant's file system gets at least this much.
    pub(crate) bytes: u64,
}

/// The disk a replica may use outside its persistent volumes: every storage volume of its
/// profile that is neither `ram` (memory) nor persistent, the first (the root file system's
/// `ephemeral` size in the SDL) included.
pub(crate) fn ephemeral_bytes(service: &ManifestService) -> u64 {
    service
        .resources
        .storage
        .iter()
        .filter(|s| s.class() != Some("ram") && !s.is_persistent())
        .map(|s| s.bytes)
        .fold(0, u64::saturating_add)
}

/// Everything needed to create one replica.
#[derive(Debug, Clone)]
pub(crate) struct ReplicaPlan {
    pub(crate) service: String,
    pub(crate) replica: u32,
    pub(crate) container: String,
    pub(crate) spec_hash: String,
    pub(crate) volumes: Vec<VolumePlan>,
    pub(crate) body: ContainerCreateBody,
}

/// The smallest memory limit the Docker engine accepts (`linuxMinMemory`, 6 MiB).
pub const ENGINE_MIN_MEMORY: u64 = 6 << 20;

/// The checks that must pass before anything of a group is created.
pub(crate) fn check(service: &ManifestService, opts: &DeployOptions) -> Result<(), WorkloadError> {
    if service.is_vm() {
        return Err(WorkloadError::Unsupported {
            service: service.name.clone(),
            reason: "it asks for `runtime: vm`, which the Docker backend cannot run: deploy it on the VM backend (kumo-vm)".into(),
        });
    }
    let units = service.resources.gpu.units as usize;
    if units > 0 {
        for replica in 0..service.count {
            let given = gpus_of(opts, &service.name, replica).len();
            if given != units {
                return Err(WorkloadError::Unsupported {
                    service: service.name.clone(),
                    reason: format!(
                        "replica {replica} needs {units} GPU(s) but the provider assigned {given}: nothing was started"
                    ),
                });
            }
        }
    }
    if service.resources.memory.bytes > i64::MAX as u64 {
        return Err(invalid(service, "memory limit is too large"));
    }
    // Docker reads 0 as "no limit": a service without CPU or memory would get the whole host.
    if service.resources.cpu.millis == 0 {
        return Err(invalid(
            service,
            "asks for no CPU: a container without a CPU limit is never started",
        ));
    }
    if service.resources.memory.bytes < ENGINE_MIN_MEMORY {
        return Err(invalid(
            service,
            format!(
                "asks for {} bytes of memory; the engine's smallest memory limit is {ENGINE_MIN_MEMORY} bytes",
                service.resources.memory.bytes
            ),
        ));
    }
    for mount in service
        .params
        .iter()
        .flat_map(|p| p.storage.iter().flatten())
    {
        if !mount.mount.starts_with('/') {
            return Err(invalid(
                service,
                format!(
                    "volume {} is mounted at {:?}: the mount point must be an absolute path",
                    mount.name, mount.mount
                ),
            ));
        }
        if !service
            .resources
            .storage
            .iter()
            .any(|s| s.name == mount.name)
        {
            return Err(invalid(
                service,
                format!(
                    "mounts volume {:?}, which its compute profile does not define",
                    mount.name
                ),
            ));
        }
    }
    for e in &service.expose {
        if e.port == 0 || e.port > u32::from(u16::MAX) {
            return Err(invalid(service, format!("port {} is out of range", e.port)));
        }
    }
    Ok(())
}

fn invalid(service: &ManifestService, reason: impl Into<String>) -> WorkloadError {
    WorkloadError::InvalidService {
        service: service.name.clone(),
        reason: reason.into(),
    }
}

/// The container ports a service exposes, deduplicated and sorted.
pub(crate) fn ports(service: &ManifestService) -> Vec<ServicePort> {
    let mut ports: Vec<ServicePort> = service
        .expose
        .iter()
        .filter_map(|e| {
            Some(ServicePort {
                port: u16::try_from(e.port).ok()?,
                proto: e.proto,
            })
        })
        .collect();
    ports.sort();
    ports.dedup();
    ports
}

/// `80/tcp,53/udp`: the value of the [`labels::PORTS`] label.
pub(crate) fn ports_label(ports: &[ServicePort]) -> String {
    ports
        .iter()
        .map(|p| {
            let proto = match p.proto {
                Proto::Tcp => "tcp",
                Proto::Udp => "udp",
            };
            format!("{}/{proto}", p.port)
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Reads a [`labels::PORTS`] label back.
pub(crate) fn parse_ports_label(label: &str) -> Vec<ServicePort> {
    label
        .split(',')
        .filter_map(|p| {
            let (port, proto) = p.split_once('/')?;
            let proto = match proto {
                "tcp" => Proto::Tcp,
                "udp" => Proto::Udp,
                _ => return None,
            };
            Some(ServicePort {
                port: port.parse().ok()?,
                proto,
            })
        })
        .collect()
}

/// The GPU device ids assigned to one replica.
fn gpus_of<'a>(opts: &'a DeployOptions, service: &str, replica: u32) -> &'a [String] {
    opts.gpus
        .iter()
        .find(|g| g.service == service && g.replica == replica)
        .map_or(&[], |g| g.device_ids.as_slice())
}

/// The device request that gives a container these GPUs: what `docker run --gpus
/// device=GPU-…,GPU-…` sends. Starting it needs the NVIDIA container runtime on the engine.
pub(crate) fn gpu_device_request(device_ids: &[String]) -> DeviceRequest {
    DeviceRequest {
        driver: Some("nvidia".into()),
        count: None,
        device_ids: Some(device_ids.to_vec()),
        capabilities: Some(vec![vec!["gpu".into()]]),
        options: None,
    }
}

/// A hash of everything that shapes the service's containers. The replica count is in it too:
/// every replica carries the count in a label (status reports it), and labels cannot change,
/// so a new count recreates the service's replicas. (A lease's count is fixed on chain; only a
/// manifest that differs from what was deployed by mistake changes it.)
pub(crate) fn spec_hash(
    service: &ManifestService,
    opts: &DeployOptions,
    limits: &Limits,
) -> String {
    // `json!` keeps insertion order and the manifest types hold no hash maps, so the bytes
    // (and the hash) are the same in every process: a restarted provider recreates nothing.
    let doc = serde_json::json!({
        "version": SPEC_VERSION,
        "service": service,
        "env": opts.env,
        "gpus": opts.gpus.iter().filter(|g| g.service == service.name).collect::<Vec<_>>(),
        "pids_limit": limits.pids_limit,
        "log": [limits.log_max_size, limits.log_max_files],
    });
    hex::encode(Sha256::digest(doc.to_string().as_bytes()))
}

/// The plan for replica `replica` of `service` (which passed [`check`]).
pub(crate) fn replica_plan(
    instance: &str,
    lease: &LeaseId,
    names: &Names,
    service: &ManifestService,
    replica: u32,
    opts: &DeployOptions,
    limits: &Limits,
) -> ReplicaPlan {
    let container = names.container(&service.name, replica);
    let spec_hash = spec_hash(service, opts, limits);
    let lease_labels = labels::lease_labels(instance, lease);
    let mut object_labels = lease_labels.clone();
    object_labels.insert(labels::SERVICE.into(), service.name.clone());
    object_labels.insert(labels::REPLICA.into(), replica.to_string());

    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    for m in service
        .params
        .iter()
        .flat_map(|p| p.storage.iter().flatten())
    {
        let Some(storage) = service.resources.storage.iter().find(|s| s.name == m.name) else {
            continue; // `check` refuses this
        };
        let mut mount = Mount {
            target: Some(m.mount.clone()),
            read_only: Some(m.read_only),
            ..Default::default()
        };
        if storage.class() == Some("ram") {
            mount.typ = Some(MountType::TMPFS);
            mount.tmpfs_options = Some(MountTmpfsOptions {
                size_bytes: Some(i64::try_from(storage.bytes).unwrap_or(i64::MAX)),
                ..Default::default()
            });
        } else {
            let mut volume_labels = object_labels.clone();
            volume_labels.insert(labels::VOLUME.into(), storage.name.clone());
            mount.typ = Some(MountType::VOLUME);
            if storage.is_persistent() {
                let name = names.volume(&service.name, replica, &storage.name);
                volumes.push(VolumePlan {
                    name: name.clone(),
                    storage: storage.name.clone(),
                    bytes: storage.bytes,
                });
                mount.source = Some(name);
            } else {
                // Anonymous: the engine creates it with these labels and removes it with the
                // container.
                mount.volume_options = Some(MountVolumeOptions {
                    labels: Some(volume_labels),
                    ..Default::default()
                });
            }
        }
        mounts.push(mount);
    }

    let mut env = vec![
        format!("AKASH_OWNER={}", lease.owner),
        format!("AKASH_DEPLOYMENT_SEQUENCE={}", lease.dseq),
        format!("AKASH_GROUP_SEQUENCE={}", lease.gseq),
        format!("AKASH_ORDER_SEQUENCE={}", lease.oseq),
        format!("AKASH_PROVIDER={}", lease.provider),
    ];
    env.extend(opts.env.iter().cloned());
    env.extend(service.env.iter().flatten().cloned());

    let ports = ports(service);
    let mut container_labels = object_labels;
    container_labels.insert(labels::SPEC.into(), spec_hash.clone());
    container_labels.insert(labels::COUNT.into(), service.count.to_string());
    container_labels.insert(labels::PORTS.into(), ports_label(&ports));
    container_labels.insert(
        labels::EPHEMERAL.into(),
        ephemeral_bytes(service).to_string(),
    );

    let network = names.network();
    let memory = i64::try_from(service.resources.memory.bytes).unwrap_or(i64::MAX);
    let host_config = HostConfig {
        nano_cpus: Some(
            i64::try_from(service.resources.cpu.millis.saturating_mul(1_000_000))
                .unwrap_or(i64::MAX),
        ),
        memory: Some(memory),
        // Equal to `memory`: no swap on top of the limit.
        memory_swap: Some(memory),
        pids_limit: Some(limits.pids_limit),
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
            maximum_retry_count: None,
        }),
        network_mode: Some(network.clone()),
        mounts: Some(mounts),
        // A process cannot gain privileges (setuid binaries) beyond what it started with.
        security_opt: Some(vec!["no-new-privileges".into()]),
        log_config: Some(HostConfigLogConfig {
            typ: Some("json-file".into()),
            config: Some(HashMap::from([
                ("max-size".to_string(), limits.log_max_size.clone()),
                ("max-file".to_string(), limits.log_max_files.to_string()),
            ])),
        }),
        device_requests: {
            let ids = gpus_of(opts, &service.name, replica);
            (!ids.is_empty()).then(|| vec![gpu_device_request(ids)])
        },
        ..Default::default()
    };
    let endpoint = EndpointSettings {
        // Other services of the lease reach every replica of this one by the service's name.
        aliases: Some(vec![service.name.clone()]),
        ..Default::default()
    };
    let mut hostname = format!("{}-{replica}", service.name);
    hostname.truncate(63);
    let body = ContainerCreateBody {
        image: Some(service.image.clone()),
        hostname: Some(hostname),
        entrypoint: service.command.clone(),
        cmd: service.args.clone(),
        env: Some(env),
        labels: Some(container_labels),
        host_config: Some(host_config),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(network, endpoint)])),
        }),
        ..Default::default()
    };
    ReplicaPlan {
        service: service.name.clone(),
        replica,
        container,
        spec_hash,
        volumes,
        body,
    }
}

/// An image reference split the way the pull rule needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImageRef<'a> {
    /// Repository, with its registry host if any.
    pub(crate) repository: &'a str,
    /// The tag, if one is written.
    pub(crate) tag: Option<&'a str>,
    /// The digest (`sha256:…`), if one is written.
    pub(crate) digest: Option<&'a str>,
}

impl<'a> ImageRef<'a> {
    /// Splits `image` (`[host[:port]/]path[:tag][@digest]`).
    pub(crate) fn parse(image: &'a str) -> Self {
        let (name, digest) = match image.split_once('@') {
            Some((n, d)) => (n, Some(d)),
            None => (image, None),
        };
        // A ':' after the last '/' starts the tag; one before it is a registry port.
        let last_slash = name.rfind('/').map_or(0, |i| i + 1);
        match name[last_slash..].rfind(':') {
            Some(i) => ImageRef {
                repository: &name[..last_slash + i],
                tag: Some(&name[last_slash + i + 1..]),
                digest,
            },
            None => ImageRef {
                repository: name,
                tag: None,
                digest,
            },
        }
    }

    /// Kubernetes' IfNotPresent rule: an image named by digest or by a tag other than
    /// `latest` never changes, so a copy in the engine is used as it is; `latest` (written or
    /// implied) may have moved and is pulled every time.
    pub(crate) fn pull_even_if_present(&self) -> bool {
        self.digest.is_none() && matches!(self.tag, None | Some("latest"))
    }

    /// The reference to pull: with `:latest` when no tag or digest is written (the engine
    /// would otherwise pull every tag of the repository).
    pub(crate) fn pull_reference(&self) -> String {
        match (self.tag, self.digest) {
            (Some(t), Some(d)) => format!("{}:{t}@{d}", self.repository),
            (None, Some(d)) => format!("{}@{d}", self.repository),
            (Some(t), None) => format!("{}:{t}", self.repository),
            (None, None) => format!("{}:latest", self.repository),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kumo_sdl::manifest::{ServiceParams, StorageMount};
    use kumo_types::{Address, Attribute, Cpu, Memory, Resources, Storage};

    fn lease() -> LeaseId {
        LeaseId {
            owner: Address([1; 20]),
            dseq: 7,
            gseq: 1,
            oseq: 1,
            provider: Address([2; 20]),
        }
    }

    fn limits() -> Limits {
        Limits {
            pids_limit: 512,
            log_max_size: "10m".into(),
            log_max_files: 3,
        }
    }

    fn storage(name: &str, bytes: u64, attrs: &[(&str, &str)]) -> Storage {
        Storage {
            name: name.into(),
            bytes,
            attributes: attrs
                .iter()
                .map(|(k, v)| Attribute {
                    key: (*k).into(),
                    value: (*v).into(),
                })
                .collect(),
        }
    }

    fn service() -> ManifestService {
        ManifestService {
            name: "db".into(),
            image: "postgres:16".into(),
            command: Some(vec!["/entry".into()]),
            args: Some(vec!["serve".into()]),
            env: Some(vec!["A=1".into()]),
            resources: Resources {
                id: 1,
                cpu: Cpu {
                    millis: 1500,
                    attributes: vec![],
                },
                memory: Memory {
                    bytes: 256 << 20,
                    attributes: vec![],
                },
                storage: vec![
                    storage("default", 1 << 30, &[]),
                    storage(
                        "data",
                        2 << 30,
                        &[("class", "beta2"), ("persistent", "true")],
                    ),
                    storage("cache", 64 << 20, &[("class", "ram")]),
                    storage("scratch", 1 << 20, &[]),
                ],
                ..Default::default()
            },
            count: 2,
            expose: vec![],
            params: Some(ServiceParams {
                storage: Some(vec![
                    StorageMount {
                        name: "data".into(),
                        mount: "/var/lib/data".into(),
                        read_only: false,
                    },
                    StorageMount {
                        name: "cache".into(),
                        mount: "/cache".into(),
                        read_only: false,
                    },
                    StorageMount {
                        name: "scratch".into(),
                        mount: "/scratch".into(),
                        read_only: true,
                    },
                ]),
                permissions: None,
                tee: None,
            }),
            credentials: None,
            vm: None,
        }
    }

    fn plan(s: &ManifestService, replica: u32) -> ReplicaPlan {
        let l = lease();
        replica_plan(
            "p1",
            &l,
            &Names::new("p1", &l),
            s,
            replica,
            &DeployOptions {
                env: vec!["HOST=x".into()],
                ..Default::default()
            },
            &limits(),
        )
    }

    #[test]
    fn limits_come_from_the_profile() {
        let p = plan(&service(), 0);
        let hc = p.body.host_config.unwrap();
        assert_eq!(hc.nano_cpus, Some(1_500_000_000));
        assert_eq!(hc.memory, Some(256 << 20));
        assert_eq!(hc.memory_swap, Some(256 << 20));
        assert_eq!(hc.pids_limit, Some(512));
        assert_eq!(
            hc.restart_policy.unwrap().name,
            Some(RestartPolicyNameEnum::UNLESS_STOPPED)
        );
    }

    #[test]
    fn command_is_the_entrypoint_and_args_the_cmd() {
        let p = plan(&service(), 0);
        assert_eq!(p.body.entrypoint, Some(vec!["/entry".to_string()]));
        assert_eq!(p.body.cmd, Some(vec!["serve".to_string()]));
        let env = p.body.env.unwrap();
        let pos = |v: &str| env.iter().position(|e| e == v).unwrap();
        assert!(pos("AKASH_DEPLOYMENT_SEQUENCE=7") < pos("HOST=x"));
        assert!(pos("HOST=x") < pos("A=1"), "the manifest's env comes last");
    }

    #[test]
    fn each_storage_class_gets_its_kind_of_mount() {
        let p0 = plan(&service(), 0);
        let p1 = plan(&service(), 1);
        let mounts = p0.body.host_config.unwrap().mounts.unwrap();
        let by_target = |t: &str| {
            mounts
                .iter()
                .find(|m| m.target.as_deref() == Some(t))
                .unwrap()
        };

        let data = by_target("/var/lib/data");
        assert_eq!(data.typ, Some(MountType::VOLUME));
        assert_eq!(data.source.as_deref(), Some(p0.volumes[0].name.as_str()));
        assert_eq!(p0.volumes.len(), 1, "only persistent volumes are named");
        assert_ne!(p0.volumes[0].name, p1.volumes[0].name, "one per replica");

        let cache = by_target("/cache");
        assert_eq!(cache.typ, Some(MountType::TMPFS));
        assert_eq!(
            cache.tmpfs_options.as_ref().unwrap().size_bytes,
            Some(64 << 20)
        );

        let scratch = by_target("/scratch");
        assert_eq!(scratch.typ, Some(MountType::VOLUME));
        assert_eq!(
            scratch.source, None,
            "anonymous, removed with the container"
        );
        assert_eq!(scratch.read_only, Some(true));
    }

    #[test]
    fn the_ephemeral_limit_is_every_volume_that_is_neither_ram_nor_persistent() {
        // default 1 GiB + scratch 1 MiB; data (persistent) and cache (ram) are not in it.
        let p = plan(&service(), 0);
        let labels = p.body.labels.unwrap();
        assert_eq!(
            labels[labels::EPHEMERAL],
            ((1u64 << 30) + (1 << 20)).to_string()
        );
        assert_eq!(p.volumes[0].bytes, 2 << 30);
    }

    #[test]
    fn spec_hash_is_stable_and_sees_every_change() {
        let opts = DeployOptions::default();
        let s = service();
        let h = spec_hash(&s, &opts, &limits());
        assert_eq!(h, spec_hash(&s, &opts, &limits()));
        let mut more = s.clone();
        more.count = 5;
        assert_ne!(h, spec_hash(&more, &opts, &limits()));
        let mut other = s.clone();
        other.env = Some(vec!["A=2".into()]);
        assert_ne!(h, spec_hash(&other, &opts, &limits()));
        let extra = DeployOptions {
            env: vec!["X=1".into()],
            ..Default::default()
        };
        assert_ne!(h, spec_hash(&s, &extra, &limits()));
    }

    #[test]
    fn each_gpu_replica_gets_a_device_request_for_its_own_gpus() {
        let mut s = service();
        s.resources.gpu.units = 1;
        let opts = DeployOptions {
            gpus: (0..2)
                .map(|r| crate::GpuAssignment {
                    service: "db".into(),
                    replica: r,
                    device_ids: vec![format!("GPU-{r}")],
                    pci_bus_ids: vec![],
                })
                .collect(),
            ..Default::default()
        };
        assert!(check(&s, &opts).is_ok());
        for r in 0..2 {
            let p = replica_plan(
                "p1",
                &lease(),
                &Names::new("p1", &lease()),
                &s,
                r,
                &opts,
                &limits(),
            );
            let req = p.body.host_config.unwrap().device_requests.unwrap();
            assert_eq!(req.len(), 1);
            assert_eq!(req[0].driver.as_deref(), Some("nvidia"));
            assert_eq!(req[0].device_ids, Some(vec![format!("GPU-{r}")]));
            assert_eq!(req[0].capabilities, Some(vec![vec!["gpu".to_string()]]));
        }
        // Another assignment is another spec: the containers are recreated with the new GPUs.
        let mut moved = opts.clone();
        moved.gpus[0].device_ids = vec!["GPU-7".into()];
        assert_ne!(
            spec_hash(&s, &opts, &limits()),
            spec_hash(&s, &moved, &limits())
        );
        // A service without GPUs gets no device request.
        let plain = plan(&service(), 0);
        assert!(plain.body.host_config.unwrap().device_requests.is_none());
    }

    #[test]
    fn check_refuses_what_cannot_run() {
        let mut s = service();
        s.resources.gpu.units = 1;
        let none = DeployOptions::default();
        let err = check(&s, &none).unwrap_err().to_string();
        assert!(
            err.contains("needs 1 GPU(s) but the provider assigned 0"),
            "{err}"
        );
        let mut s = service();
        s.vm = Some(kumo_sdl::manifest::VmSpec {
            image: kumo_sdl::manifest::VmImage {
                url: "https://example.com/disk.qcow2".into(),
                sha256: "0".repeat(64),
            },
            ssh_keys: vec![],
            user: "kumo".into(),
            user_data: None,
        });
        let err = check(&s, &DeployOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("runtime: vm"), "{err}");
        let mut s = service();
        s.params.as_mut().unwrap().storage.as_mut().unwrap()[0].name = "nope".into();
        let err = check(&s, &DeployOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"nope\""), "{err}");
        assert!(check(&service(), &DeployOptions::default()).is_ok());
    }

    #[test]
    fn ports_label_round_trips() {
        let ports = vec![
            ServicePort {
                port: 53,
                proto: Proto::Udp,
            },
            ServicePort {
                port: 80,
                proto: Proto::Tcp,
            },
        ];
        assert_eq!(ports_label(&ports), "53/udp,80/tcp");
        assert_eq!(parse_ports_label(&ports_label(&ports)), ports);
        assert_eq!(parse_ports_label(""), vec![]);
    }

    #[test]
    fn image_references_split_like_the_engine_reads_them() {
        let r = ImageRef::parse("nginx");
        assert_eq!((r.repository, r.tag, r.digest), ("nginx", None, None));
        assert!(r.pull_even_if_present());
        assert_eq!(r.pull_reference(), "nginx:latest");

        let r = ImageRef::parse("127.0.0.1:5000/kumo-test/busybox:1");
        assert_eq!(r.repository, "127.0.0.1:5000/kumo-test/busybox");
        assert_eq!(r.tag, Some("1"));
        assert!(!r.pull_even_if_present());

        let r = ImageRef::parse("127.0.0.1:5000/kumo-test/busybox");
        assert_eq!(r.repository, "127.0.0.1:5000/kumo-test/busybox");
        assert_eq!(r.tag, None);
        assert_eq!(
            r.pull_reference(),
            "127.0.0.1:5000/kumo-test/busybox:latest"
        );

        assert!(ImageRef::parse("ghcr.io/a/b:latest").pull_even_if_present());

        let r = ImageRef::parse("busybox@sha256:abcd");
        assert_eq!(r.digest, Some("sha256:abcd"));
        assert!(!r.pull_even_if_present());
        assert_eq!(r.pull_reference(), "busybox@sha256:abcd");
    }
}
