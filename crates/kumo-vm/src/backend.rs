//! [`VmBackend`]: the [`Backend`] that runs each replica of a `runtime: vm` service as a QEMU
//! virtual machine.
//!
//! A deploy fetches and verifies the images first (nothing running is touched if one fails),
//! then converges each replica: a VM whose launch settings are unchanged and that runs is left
//! alone; otherwise its QEMU is stopped and started again with the new settings, keeping its
//! disk unless the image changed. Replicas and services no longer in the manifest are removed.
//! All state lives in the data directory (see [`crate::instance`]), so a restarted provider
//! finds its VMs with [`Backend::leases`] and [`Backend::status`], and a deploy of the same
//! manifest brings back any VM that is not running.
//!
//! **Networking.** With lease networks attached ([`VmBackend::with_networks`], as the provider
//! always does), each VM runs in a network namespace of its own on its lease's network
//! ([`crate::netns`]): an address from the upper half of the lease subnet (the engine hands
//! the lower half to containers), kept across relaunches and recorded in `vm.json`, and the
//! lease firewall around it. Its host ports are relayed by [`crate::forward`] to
//! `<address>:<port>`; [`ReplicaStatus::ip`] is the address. Without lease networks (tests,
//! `kumo bench vm`) QEMU uses user-mode networking on the host, whose guest reaches the host's
//! loopback through 10.0.2.2: never for tenants.
//!
//! **Limits.** Every VM's QEMU runs in a cgroup of its own ([`crate::cgroup`]), made afresh at
//! each launch and entered before QEMU starts: a CPU quota of the lease's CPU millis (the
//! guest gets them rounded up to whole vCPUs), the guest's memory plus QEMU's overhead, a pids
//! limit. It is removed after QEMU exits; at start the backend removes its empty groups, and a
//! running VM found without one (started before VMs had groups) is moved into its own at the
//! next deploy. A host without usable cgroups fails [`VmBackend::new`].

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use kumo_sdl::manifest::{ManifestGroup, ManifestService, Proto};
use kumo_types::LeaseId;
use kumo_workload::network::{LeaseNetwork, LeaseNetworks, vm_addresses};
use kumo_workload::{
    Backend, DeployOptions, DeploymentStatus, EventKind, EventStream, ExecRequest, ExecSession,
    LogLine, LogOptions, LogStream, ReplicaState, ReplicaStatus, ServicePort, ServiceStatus,
    StdStream, TeardownReport, WorkloadError, WorkloadEvent,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::VmError;
use crate::accel::{Accel, AccelChoice, AccelProbe, probe_kvm};
use crate::cgroup::{Cgroups, Limits};
use crate::forward::Relays;
use crate::image::{ImageCache, ImageFormat};
use crate::instance::{self, Forward, Launch, VmDir, VmState};
use crate::netns::{self, VmNet};
use crate::seed::Seed;

/// Where the VM backend keeps its files and how it runs QEMU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmConfig {
    /// The backend's own directory: one subdirectory per VM under `vms/`.
    pub data_dir: PathBuf,
    /// Where verified images are kept (shared by all leases).
    pub image_dir: PathBuf,
    /// The `qemu-system-x86_64` binary.
    pub qemu: String,
    /// The `qemu-img` binary.
    pub qemu_img: String,
    /// KVM, TCG, or probe.
    pub accel: AccelChoice,
    /// How long the KVM probe may take before the backend settles for TCG.
    pub kvm_probe_timeout: Duration,
    /// The host address forwarded ports listen on (all addresses by default: the ports are
    /// what tenants connect to).
    pub forward_address: IpAddr,
    /// Whether `file://` image URLs are fetched (tests, operators' own images).
    pub allow_file_urls: bool,
    /// How long a restart waits for the guest to shut down cleanly before resetting it.
    pub powerdown_timeout: Duration,
    /// Where sysfs is: GPU passthrough (VFIO) is checked there before QEMU starts.
    pub sysfs: PathBuf,
}

impl VmConfig {
    /// Defaults with everything under `data_dir` (images in `data_dir/images`).
    pub fn new(data_dir: impl Into<PathBuf>) -> VmConfig {
        let data_dir = data_dir.into();
        VmConfig {
            image_dir: data_dir.join("images"),
            data_dir,
            qemu: "qemu-system-x86_64".into(),
            qemu_img: "qemu-img".into(),
            accel: AccelChoice::Auto,
            kvm_probe_timeout: Duration::from_secs(10),
            forward_address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            allow_file_urls: false,
            powerdown_timeout: Duration::from_secs(60),
            sysfs: "/sys".into(),
        }
    }
}

/// What the provider (and `kumo lease ssh`) needs to know about one VM beyond
/// [`ReplicaStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmInfo {
    /// The service.
    pub service: String,
    /// The replica's index.
    pub replica: u32,
    /// What it is doing.
    pub state: ReplicaState,
    /// The accelerator it runs with.
    pub accel: Accel,
    /// Why it runs slower than it could (TCG), if it does.
    pub warning: Option<String>,
    /// The login user.
    pub user: String,
    /// Host ports forwarded into it.
    pub forwards: Vec<Forward>,
    /// Its QEMU process, while it runs.
    pub pid: Option<u32>,
    /// Its address on the lease network, when it has one (its forwarded ports answer there
    /// on their own numbers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<IpAddr>,
}

impl VmInfo {
    /// The host port that reaches the guest's SSH server (guest TCP port 22), if forwarded.
    pub fn ssh_port(&self) -> Option<u16> {
        self.forwards
            .iter()
            .find(|f| f.guest_port == 22 && f.proto == Proto::Tcp)
            .map(|f| f.host_port)
    }
}

/// Runs VM services under QEMU. Cheap to share (`Arc<dyn Backend>`).
#[derive(Debug)]
pub struct VmBackend {
    config: VmConfig,
    accel: AccelProbe,
    images: ImageCache,
    locks: Mutex<HashMap<LeaseId, Arc<tokio::sync::Mutex<()>>>>,
    /// Where lease networks come from; `None`: host user-mode networking.
    networks: Option<Arc<dyn LeaseNetworks>>,
    /// The host-port relays of the VMs on lease networks, by VM directory.
    relays: Mutex<HashMap<PathBuf, Relays>>,
    /// What this backend's network namespaces are named from ([`netns::prefix`]).
    netns_prefix: String,
    /// Where each VM's cgroup is ([`crate::cgroup`]).
    cgroups: Cgroups,
}

/// Everything one replica is launched from, prepared before anything is changed.
struct Plan {
    state: VmState,
    image_path: PathBuf,
    image_format: ImageFormat,
    seed: Seed,
}

impl VmBackend {
    /// Sets the backend up: creates its directories and chooses the accelerator (probing KVM
    /// with a timeout unless the configuration says which).
    pub async fn new(config: VmConfig) -> Result<VmBackend, VmError> {
        tokio::fs::create_dir_all(config.data_dir.join("vms"))
            .await
            .map_err(|e| VmError::io(&config.data_dir, e))?;
        let accel = match config.accel {
            AccelChoice::Tcg => AccelProbe {
                accel: Accel::Tcg,
                warning: Some("configured for TCG software emulation (accel = tcg)".into()),
            },
            AccelChoice::Auto => probe_kvm(&config.qemu, config.kvm_probe_timeout).await,
            AccelChoice::Kvm => {
                let probe = probe_kvm(&config.qemu, config.kvm_probe_timeout).await;
                if probe.accel != Accel::Kvm {
                    return Err(VmError::NoKvm(probe.warning.unwrap_or_default()));
                }
                probe
            }
        };
        if let Some(warning) = &accel.warning {
            tracing::warn!("{warning}");
        }
        // No VM runs without its limits: a host without usable cgroups is refused here.
        let cgroups = Cgroups::host(&netns::tag(&config.data_dir))?;
        for dir in cgroups.remove_unused() {
            tracing::info!(cgroup = %dir.display(), "removed the cgroup of a VM that is not running");
        }
        tracing::debug!(version = cgroups.version(), "VMs run in cgroups");
        Ok(VmBackend {
            cgroups,
            images: ImageCache::new(config.image_dir.clone(), config.allow_file_urls),
            netns_prefix: netns::prefix(&config.data_dir),
            config,
            accel,
            locks: Mutex::default(),
            networks: None,
            relays: Mutex::default(),
        })
    }

    /// Puts VMs on their leases' networks (see the module docs): each VM deployed from now on
    /// gets a network namespace on the network `networks` gives. Also removes namespaces of
    /// this backend that no VM owns any more (a teardown that was interrupted) and starts the
    /// host-port relays of the VMs that run.
    pub async fn with_networks(
        mut self,
        networks: Arc<dyn LeaseNetworks>,
    ) -> Result<VmBackend, VmError> {
        self.networks = Some(networks);
        self.remove_orphan_namespaces().await?;
        for (dir, state) in self.all_vms().await {
            if dir.pid().await.is_some() {
                self.ensure_relays(&dir, &state).await?;
            }
        }
        Ok(self)
    }

    /// What this backend's network namespaces are named from (`kumo-vm-<tag>-`).
    pub fn netns_prefix(&self) -> &str {
        &self.netns_prefix
    }

    /// Every VM of every lease that has saved state.
    async fn all_vms(&self) -> Vec<(VmDir, VmState)> {
        let mut out = Vec::new();
        let Ok(mut leases) = tokio::fs::read_dir(self.config.data_dir.join("vms")).await else {
            return out;
        };
        while let Ok(Some(lease_dir)) = leases.next_entry().await {
            let Ok(mut vms) = tokio::fs::read_dir(lease_dir.path()).await else {
                continue;
            };
            while let Ok(Some(vm)) = vms.next_entry().await {
                let dir = VmDir::new(vm.path());
                if let Some(state) = dir.load().await {
                    out.push((dir, state));
                }
            }
        }
        out
    }

    /// Deletes this backend's namespaces that no saved VM names.
    async fn remove_orphan_namespaces(&self) -> Result<(), VmError> {
        let owned: std::collections::HashSet<String> = self
            .all_vms()
            .await
            .into_iter()
            .filter_map(|(_, s)| s.net.map(|n| n.netns))
            .collect();
        for name in netns::list(&self.netns_prefix).await {
            if !owned.contains(&name) {
                tracing::info!(netns = name, "removing a VM network namespace no VM owns");
                netns::delete_named(&name).await?;
            }
        }
        Ok(())
    }

    /// Starts the host-port relays of a VM on a lease network, unless the same ones run.
    async fn ensure_relays(&self, dir: &VmDir, state: &VmState) -> Result<(), VmError> {
        let Some(net) = &state.net else {
            return Ok(());
        };
        let key = (IpAddr::V4(net.address), state.forwards.clone());
        let old = {
            let mut relays = self.relays.lock().unwrap_or_else(|p| p.into_inner());
            match relays.get(dir.path()) {
                Some(r) if r.key == key => return Ok(()),
                _ => relays.remove(dir.path()),
            }
        };
        drop(old);
        let name = self.vm_name(&state.lease, &state.service, state.replica);
        let relays = Relays::start(
            &name,
            self.config.forward_address,
            IpAddr::V4(net.address),
            &state.forwards,
        )
        .await?;
        self.relays
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(dir.path().to_path_buf(), relays);
        Ok(())
    }

    /// Stops a VM's relays (its host ports are free again).
    fn stop_relays(&self, dir: &VmDir) {
        let old = self
            .relays
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(dir.path());
        drop(old);
    }

    /// The VM's place on `network`: the address it had if that is still its to have, else the
    /// highest free one of the VM half of the subnet (free: no container has it, no other VM
    /// of the lease records it).
    async fn place(
        &self,
        state: &VmState,
        old: Option<&VmState>,
        network: &LeaseNetwork,
    ) -> Result<VmNet, VmError> {
        let mut used: std::collections::HashSet<Ipv4Addr> = network.taken.iter().copied().collect();
        used.insert(network.gateway);
        for (_, other) in self.vms_of(&state.lease).await {
            if (other.service.as_str(), other.replica) != (state.service.as_str(), state.replica)
                && let Some(n) = other.net
            {
                used.insert(n.address);
            }
        }
        let candidates: Vec<Ipv4Addr> = vm_addresses(network.subnet).collect();
        let kept = old
            .and_then(|o| o.net.as_ref())
            .map(|n| n.address)
            .filter(|a| candidates.contains(a) && !used.contains(a));
        let address = kept
            .or_else(|| candidates.iter().copied().find(|a| !used.contains(a)))
            .ok_or_else(|| {
                VmError::LeaseNetwork(format!(
                    "no address left for a VM in {} ({} VM addresses, all taken): the lease has more VMs than its network holds; the provider's [network] lease_subnet_prefix sets the size",
                    network.subnet,
                    candidates.len()
                ))
            })?;
        if !network.split {
            tracing::warn!(
                subnet = %network.subnet,
                %address,
                "this lease network was created before VMs joined lease networks: the engine may hand a later container the VM's address; deploy the lease again after closing it to get a network with separate ranges"
            );
        }
        let key = format!(
            "{}-{}-{}",
            self.lease_dir(&state.lease)
                .file_name()
                .map(|k| k.to_string_lossy().into_owned())
                .unwrap_or_default(),
            state.service,
            state.replica
        );
        let (netns, veth) = netns::names(&self.netns_prefix, &key);
        Ok(VmNet {
            netns,
            veth,
            bridge: network.bridge.clone(),
            address,
            prefix: network.subnet.prefix_len(),
            gateway: network.gateway,
        })
    }

    /// The accelerator VMs run with, and the warning when it is TCG.
    pub fn accel(&self) -> &AccelProbe {
        &self.accel
    }

    /// The configuration.
    pub fn config(&self) -> &VmConfig {
        &self.config
    }

    /// The VMs' cgroups; a VM's group is named by its replica id ([`ReplicaStatus::id`]).
    pub fn cgroups(&self) -> &Cgroups {
        &self.cgroups
    }

    /// Each VM of the lease with its accelerator, forwarded ports and login user.
    pub async fn vm_info(&self, lease: &LeaseId) -> Result<Vec<VmInfo>, WorkloadError> {
        let mut out = Vec::new();
        for (dir, state) in self.vms_of(lease).await {
            let pid = dir.pid().await;
            out.push(VmInfo {
                state: run_state(&dir, pid).await,
                service: state.service,
                replica: state.replica,
                accel: state.accel,
                warning: match state.accel {
                    Accel::Tcg => self.accel.warning.clone(),
                    Accel::Kvm => None,
                },
                user: state.user,
                forwards: state.forwards,
                pid,
                address: state.net.map(|n| IpAddr::V4(n.address)),
            });
        }
        Ok(out)
    }

    /// Where the lease's VMs live.
    fn lease_dir(&self, lease: &LeaseId) -> PathBuf {
        let key = hex::encode(&Sha256::digest(lease.to_string().as_bytes())[..8]);
        self.config.data_dir.join("vms").join(key)
    }

    fn vm_dir(&self, lease: &LeaseId, service: &str, replica: u32) -> VmDir {
        VmDir::new(self.lease_dir(lease).join(format!("{service}-{replica}")))
    }

    fn vm_name(&self, lease: &LeaseId, service: &str, replica: u32) -> String {
        let key = self
            .lease_dir(lease)
            .file_name()
            .map(|k| k.to_string_lossy().into_owned())
            .unwrap_or_default();
        format!("kumo-{key}-{service}-{replica}")
    }

    async fn lock(&self, lease: &LeaseId) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(*lease).or_default().clone()
        };
        lock.lock_owned().await
    }

    /// The lease's VMs that have saved state, by service and replica.
    async fn vms_of(&self, lease: &LeaseId) -> Vec<(VmDir, VmState)> {
        let mut out = Vec::new();
        let Ok(mut entries) = tokio::fs::read_dir(self.lease_dir(lease)).await else {
            return out;
        };
        while let Ok(Some(entry)) = entries.next_entry().await {
            let dir = VmDir::new(entry.path());
            if let Some(state) = dir.load().await
                && state.lease == *lease
            {
                out.push((dir, state));
            }
        }
        out.sort_by(|a, b| (&a.1.service, a.1.replica).cmp(&(&b.1.service, b.1.replica)));
        out
    }

    /// Checks a service and works out what each of its replicas is launched with.
    async fn plan(
        &self,
        lease: &LeaseId,
        service: &ManifestService,
        opts: &DeployOptions,
    ) -> Result<Vec<Plan>, WorkloadError> {
        let invalid = |reason: String| WorkloadError::InvalidService {
            service: service.name.clone(),
            reason,
        };
        let Some(vm) = &service.vm else {
            return Err(WorkloadError::Unsupported {
                service: service.name.clone(),
                reason: "it is a container service: the VM backend runs only `runtime: vm` services (deploy it on the Docker backend)".into(),
            });
        };
        let replica_gpus = passthrough_plan(&self.config.sysfs, service, opts)?;
        let cpus = u32::try_from(service.resources.cpu.millis.div_ceil(1000).max(1))
            .map_err(|_| invalid("too many CPUs".into()))?;
        let memory_mib = service.resources.memory.bytes.div_ceil(1 << 20).max(64);

        let mut guest_ports: Vec<(u16, Proto)> = Vec::new();
        for expose in &service.expose {
            let port = u16::try_from(expose.port)
                .map_err(|_| invalid(format!("port {} is not a port", expose.port)))?;
            if !guest_ports.contains(&(port, expose.proto)) {
                guest_ports.push((port, expose.proto));
            }
        }
        // Cheap checks first: a missing host port fails before any download.
        let mut replica_forwards = Vec::new();
        for replica in 0..service.count {
            let mut forwards = Vec::new();
            for &(port, proto) in &guest_ports {
                let host = opts
                    .host_ports
                    .iter()
                    .find(|h| {
                        h.service == service.name
                            && h.replica == replica
                            && h.port == port
                            && h.proto == proto
                    })
                    .ok_or_else(|| {
                        invalid(format!(
                            "no host port for port {port}/{} of replica {replica}: the provider must allocate one (DeployOptions::host_ports)",
                            proto.as_str()
                        ))
                    })?;
                forwards.push(Forward {
                    guest_port: port,
                    proto,
                    host_port: host.host_port,
                });
            }
            replica_forwards.push(forwards);
        }
        let image_path = self
            .images
            .get(&vm.image.url, &vm.image.sha256)
            .await
            .map_err(|e| WorkloadError::ImagePull {
                image: vm.image.url.clone(),
                reason: e.to_string(),
            })?;
        let image_format = ImageFormat::detect(&image_path)
            .await
            .map_err(|e| VmError::io(&image_path, e).into_workload("reading the VM image"))?;
        let image_bytes =
            instance::virtual_size(&self.config.qemu_img, &image_path, image_format.as_str())
                .await
                .map_err(|e| e.into_workload(format!("inspecting image {}", vm.image.url)))?;
        let storage = service.resources.storage.first().map_or(0, |s| s.bytes);
        if storage < image_bytes {
            return Err(invalid(format!(
                "the profile's storage ({storage} bytes) is smaller than the image's disk ({image_bytes} bytes): ask for at least that much storage"
            )));
        }
        let mut plans = Vec::new();
        for ((replica, forwards), passthrough) in
            (0..service.count).zip(replica_forwards).zip(replica_gpus)
        {
            let seed = Seed::new(vm, &format!("{}-{replica}", service.name));
            let mut state = VmState {
                lease: *lease,
                service: service.name.clone(),
                replica,
                image: vm.image.url.clone(),
                image_sha256: vm.image.sha256.to_ascii_lowercase(),
                disk_bytes: storage,
                cpus,
                cpu_millis: Some(service.resources.cpu.millis),
                memory_mib,
                user: vm.user.clone(),
                forwards,
                accel: self.accel.accel,
                passthrough,
                net: None,
                launch_hash: String::new(),
            };
            state.launch_hash = launch_hash(&state, &seed, self.config.forward_address);
            plans.push(Plan {
                state,
                image_path: image_path.clone(),
                image_format,
                seed,
            });
        }
        Ok(plans)
    }

    /// Makes one replica run as planned (see the module docs).
    async fn converge(&self, plan: &Plan) -> Result<(), VmError> {
        let mut s = plan.state.clone();
        let dir = self.vm_dir(&s.lease, &s.service, s.replica);
        tokio::fs::create_dir_all(dir.path())
            .await
            .map_err(|e| VmError::io(dir.path(), e))?;
        let old = dir.load().await;
        if let Some(networks) = &self.networks {
            let network = networks
                .ensure_lease_network(&s.lease)
                .await
                .map_err(|e| VmError::LeaseNetwork(e.to_string()))?;
            s.net = Some(self.place(&s, old.as_ref(), &network).await?);
            s.launch_hash = launch_hash(&s, &plan.seed, self.config.forward_address);
        }
        let s = &s;
        let pid = dir.pid().await;
        let running = pid.is_some();
        if let (Some(pid), Some(o)) = (pid, &old)
            && o.launch_hash == s.launch_hash
        {
            // Unchanged; a restarted provider's relays may still be missing. The CPU quota is
            // not part of the launch (only the vCPUs are): a new one is written to the running
            // VM's group, and a VM started before VMs had groups is moved into its own.
            let name = self.vm_name(&s.lease, &s.service, s.replica);
            self.cgroups.adopt(&name, &limits(s), pid)?;
            if o.cpu_millis != s.cpu_millis {
                dir.save(s).await?;
            }
            return self.ensure_relays(&dir, s).await;
        }
        if running {
            tracing::info!(vm = %dir.path().display(), "relaunching VM with new settings");
            dir.kill(Duration::from_secs(10)).await?;
        }
        let disk = dir.disk();
        let disk_exists = tokio::fs::try_exists(&disk).await.unwrap_or(false);
        match &old {
            Some(o) if disk_exists && o.image_sha256 == s.image_sha256 => {
                if s.disk_bytes > o.disk_bytes {
                    resize(&self.config.qemu_img, &disk, s.disk_bytes).await?;
                } else if s.disk_bytes < o.disk_bytes {
                    return Err(VmError::QemuImg(format!(
                        "the disk of {} replica {} cannot shrink from {} to {} bytes: keep the storage size, or close the lease and deploy again",
                        s.service, s.replica, o.disk_bytes, s.disk_bytes
                    )));
                }
            }
            _ => {
                if disk_exists {
                    tokio::fs::remove_file(&disk)
                        .await
                        .map_err(|e| VmError::io(&disk, e))?;
                }
                instance::create_overlay(
                    &self.config.qemu_img,
                    &plan.image_path,
                    plan.image_format.as_str(),
                    &disk,
                    s.disk_bytes,
                )
                .await?;
            }
        }
        tokio::fs::write(dir.seed(), plan.seed.to_iso())
            .await
            .map_err(|e| VmError::io(dir.seed(), e))?;
        dir.save(s).await?;
        self.launch(&dir, s).await
    }

    async fn launch(&self, dir: &VmDir, state: &VmState) -> Result<(), VmError> {
        let name = self.vm_name(&state.lease, &state.service, state.replica);
        // A fresh namespace each launch (QEMU is not running): what the state says, whatever
        // was there before.
        if let Some(net) = &state.net {
            netns::create(net).await?;
        }
        // A fresh group each launch too, with the lease's limits; QEMU enters it before it
        // starts (see `Launch::cgroup_procs`).
        self.cgroups.create(&name, &limits(state)).await?;
        let started = Launch {
            qemu: &self.config.qemu,
            name: &name,
            state,
            forward_address: self.config.forward_address,
            cgroup_procs: self.cgroups.procs_files(&name),
        }
        .start(dir)
        .await;
        if let Err(e) = started {
            if let Err(gone) = self.cgroups.remove(&name).await {
                tracing::warn!(
                    vm = name,
                    "removing the cgroup of a VM that did not start: {gone}"
                );
            }
            return Err(e);
        }
        self.ensure_relays(dir, state).await
    }

    /// Stops a VM's QEMU and deletes its relays, network namespace and files (disk included).
    async fn destroy(&self, dir: &VmDir) -> Result<(), VmError> {
        dir.kill(Duration::from_secs(5)).await?;
        self.stop_relays(dir);
        let state = dir.load().await;
        if let Some(s) = &state {
            // QEMU has exited: its group can go.
            self.cgroups
                .remove(&self.vm_name(&s.lease, &s.service, s.replica))
                .await?;
        }
        if let Some(net) = state.and_then(|s| s.net) {
            netns::delete(&net).await?;
        }
        match tokio::fs::remove_dir_all(dir.path()).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(VmError::io(dir.path(), e)),
        }
    }

    async fn apply(
        &self,
        lease: &LeaseId,
        group: &ManifestGroup,
        opts: &DeployOptions,
    ) -> Result<DeploymentStatus, WorkloadError> {
        // Everything is checked and every image fetched before any VM is touched.
        let mut plans = Vec::new();
        for service in &group.services {
            plans.extend(self.plan(lease, service, opts).await?);
        }
        for plan in &plans {
            let s = &plan.state;
            self.converge(plan).await.map_err(|e| {
                e.into_workload(format!("starting VM {} replica {}", s.service, s.replica))
            })?;
        }
        for (dir, state) in self.vms_of(lease).await {
            let wanted = plans
                .iter()
                .any(|p| p.state.service == state.service && p.state.replica == state.replica);
            if !wanted {
                self.destroy(&dir).await.map_err(|e| {
                    e.into_workload(format!(
                        "removing VM {} replica {}",
                        state.service, state.replica
                    ))
                })?;
            }
        }
        self.status(lease).await
    }

    async fn restart_vm(&self, dir: &VmDir, state: &VmState) -> Result<(), VmError> {
        if dir.pid().await.is_some() {
            let timeout = Duration::from_secs(5);
            let mut qmp = dir.qmp_session(timeout).await?;
            // A clean shutdown first (the guest flushes its disks); a guest that ignores the
            // power button within the timeout is stopped as it is.
            qmp.system_powerdown().await?;
            let deadline = tokio::time::Instant::now() + self.config.powerdown_timeout;
            let mut clean = false;
            while tokio::time::Instant::now() < deadline {
                if qmp.query_status().await?.status == "shutdown" {
                    clean = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            if !clean {
                tracing::warn!(vm = %dir.path().display(), "guest ignored the power button: stopping it");
            }
            drop(qmp);
            dir.kill(Duration::from_secs(5)).await?;
        }
        // A fresh QEMU rather than `system_reset`: under TCG a reset guest kernel was seen to
        // stall for minutes before its console came up, a new process boots as fast as the
        // first time. The disk (and so everything written to it) is the same file.
        self.launch(dir, state).await
    }
}

/// The cgroup limits of a VM launched as `state` says ([`crate::cgroup`]).
fn limits(state: &VmState) -> Limits {
    let millis = state
        .cpu_millis
        .unwrap_or(u64::from(state.cpus).saturating_mul(1000));
    Limits::for_vm(millis, state.cpus, state.memory_mib, state.accel)
}

/// The PCI functions each replica passes through: its assigned GPUs', each checked in sysfs
/// (IOMMU on, group isolated, bound to vfio-pci) so a host that cannot pass a GPU through
/// fails here, with the reason, before any QEMU starts.
fn passthrough_plan(
    sysfs: &Path,
    service: &ManifestService,
    opts: &DeployOptions,
) -> Result<Vec<Vec<String>>, WorkloadError> {
    let units = service.resources.gpu.units as usize;
    let unsupported = |reason: String| WorkloadError::Unsupported {
        service: service.name.clone(),
        reason,
    };
    let mut out = Vec::new();
    for replica in 0..service.count {
        if units == 0 {
            out.push(Vec::new());
            continue;
        }
        let ids: Vec<String> = opts
            .gpus
            .iter()
            .find(|g| g.service == service.name && g.replica == replica)
            .map(|g| g.pci_bus_ids.clone())
            .unwrap_or_default();
        if ids.len() != units {
            return Err(unsupported(format!(
                "replica {replica} needs {units} GPU(s) passed through but {} have a known PCI address: the provider must assign GPUs with pci_bus_ids",
                ids.len()
            )));
        }
        for id in &ids {
            kumo_gpu::vfio::check(sysfs, id)
                .map_err(|e| unsupported(format!("GPU passthrough: {e}")))?;
        }
        out.push(ids);
    }
    Ok(out)
}

/// Hash of what a VM is launched with (not its CPU quota, [`VmState::cpu_millis`]: that is
/// changed on the running VM).
fn launch_hash(state: &VmState, seed: &Seed, address: IpAddr) -> String {
    let mut json = serde_json::json!({
        "image": state.image_sha256,
        "disk": state.disk_bytes,
        "cpus": state.cpus,
        "memory": state.memory_mib,
        "forwards": state.forwards,
        "accel": state.accel,
        "passthrough": state.passthrough,
        "address": address,
        "meta": seed.meta_data,
        "user": seed.user_data,
    });
    // Only when there is one: a VM launched before namespaces keeps its hash (and runs on)
    // until something else changes.
    if let Some(net) = &state.net {
        json["net"] = serde_json::json!(net);
    }
    hex::encode(Sha256::digest(json.to_string().as_bytes()))
}

async fn resize(qemu_img: &str, disk: &Path, bytes: u64) -> Result<(), VmError> {
    let out = tokio::process::Command::new(qemu_img)
        .arg("resize")
        .arg(disk)
        .arg(bytes.to_string())
        .output()
        .await
        .map_err(|e| VmError::QemuImg(e.to_string()))?;
    if !out.status.success() {
        return Err(VmError::QemuImg(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(())
}

/// What a VM is doing, from its process and QEMU's run state.
async fn run_state(dir: &VmDir, pid: Option<u32>) -> ReplicaState {
    if pid.is_none() {
        return ReplicaState::Exited;
    }
    match dir.qmp_session(Duration::from_secs(5)).await {
        Ok(mut qmp) => match qmp.query_status().await {
            Ok(s) => match s.status.as_str() {
                "running" => ReplicaState::Running,
                "paused" | "prelaunch" | "inmigrate" | "suspended" => ReplicaState::Paused,
                "shutdown" => ReplicaState::Exited,
                "internal-error" | "guest-panicked" | "io-error" => ReplicaState::Dead,
                _ => ReplicaState::Unknown,
            },
            Err(_) => ReplicaState::Unknown,
        },
        Err(_) => ReplicaState::Unknown,
    }
}

/// A console line as text: colour and cursor escape sequences and carriage returns removed.
fn clean_line(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                if chars.peek() == Some(&'[') {
                    chars.next();
                    // CSI: parameters until a final byte in @..~.
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
            }
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// Complete lines of `bytes` and the length they cover.
fn split_lines(bytes: &[u8]) -> (Vec<String>, usize) {
    let mut lines = Vec::new();
    let mut start = 0;
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'\n' {
            lines.push(clean_line(&bytes[start..i]));
            start = i + 1;
        }
    }
    (lines, start)
}

#[async_trait]
impl Backend for VmBackend {
    async fn deploy(
        &self,
        lease: &LeaseId,
        group: &ManifestGroup,
        opts: &DeployOptions,
    ) -> Result<DeploymentStatus, WorkloadError> {
        let _guard = self.lock(lease).await;
        self.apply(lease, group, opts).await
    }

    async fn update(
        &self,
        lease: &LeaseId,
        group: &ManifestGroup,
        opts: &DeployOptions,
    ) -> Result<DeploymentStatus, WorkloadError> {
        let _guard = self.lock(lease).await;
        if self.vms_of(lease).await.is_empty() {
            return Err(WorkloadError::LeaseNotFound {
                lease: lease.to_string(),
            });
        }
        self.apply(lease, group, opts).await
    }

    async fn teardown(&self, lease: &LeaseId) -> Result<TeardownReport, WorkloadError> {
        let _guard = self.lock(lease).await;
        let mut report = TeardownReport::default();
        for (dir, state) in self.vms_of(lease).await {
            self.destroy(&dir).await.map_err(|e| {
                e.into_workload(format!(
                    "removing VM {} replica {}",
                    state.service, state.replica
                ))
            })?;
            report.replicas += 1;
            report.volumes += 1;
        }
        let lease_dir = self.lease_dir(lease);
        match tokio::fs::remove_dir_all(&lease_dir).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(VmError::io(&lease_dir, e).into_workload("removing the lease's VMs"));
            }
        }
        // A namespace whose VM directory went before it (an interrupted teardown) goes now.
        if self.networks.is_some() {
            self.remove_orphan_namespaces()
                .await
                .map_err(|e| e.into_workload("removing leftover VM network namespaces"))?;
        }
        Ok(report)
    }

    async fn status(&self, lease: &LeaseId) -> Result<DeploymentStatus, WorkloadError> {
        let mut services: BTreeMap<String, ServiceStatus> = BTreeMap::new();
        for (dir, state) in self.vms_of(lease).await {
            let pid = dir.pid().await;
            let replica_state = run_state(&dir, pid).await;
            let svc = services
                .entry(state.service.clone())
                .or_insert_with(|| ServiceStatus {
                    name: state.service.clone(),
                    image: state.image.clone(),
                    replicas: 0,
                    running: 0,
                    ports: state
                        .forwards
                        .iter()
                        .map(|f| ServicePort {
                            port: f.guest_port,
                            proto: f.proto,
                        })
                        .collect(),
                    instances: Vec::new(),
                });
            svc.replicas += 1;
            if replica_state == ReplicaState::Running {
                svc.running += 1;
            }
            svc.instances.push(ReplicaStatus {
                replica: state.replica,
                id: self.vm_name(lease, &state.service, state.replica),
                state: replica_state,
                ip: state.net.as_ref().map(|n| IpAddr::V4(n.address)),
                restarts: 0,
                exit_code: None,
                oom_killed: false,
            });
        }
        Ok(DeploymentStatus {
            lease: *lease,
            services: services.into_values().collect(),
        })
    }

    async fn logs(&self, lease: &LeaseId, opts: &LogOptions) -> Result<LogStream, WorkloadError> {
        let vms = self.vms_of(lease).await;
        if let Some(wanted) = &opts.service
            && !vms.iter().any(|(_, s)| &s.service == wanted)
        {
            let mut known: Vec<_> = vms.iter().map(|(_, s)| s.service.clone()).collect();
            known.dedup();
            return Err(WorkloadError::UnknownService {
                lease: lease.to_string(),
                service: wanted.clone(),
                known: known.join(", "),
            });
        }
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<LogLine, WorkloadError>>(256);
        for (dir, state) in vms {
            if opts.service.as_ref().is_some_and(|s| s != &state.service) {
                continue;
            }
            let tx = tx.clone();
            let (tail, follow) = (opts.tail, opts.follow);
            tokio::spawn(async move {
                let path = dir.console();
                let line = |text: String| LogLine {
                    service: state.service.clone(),
                    replica: state.replica,
                    stream: StdStream::Stdout,
                    line: text,
                };
                let bytes = tokio::fs::read(&path).await.unwrap_or_default();
                let (lines, mut offset) = split_lines(&bytes);
                let skip = tail.map_or(0, |t| lines.len().saturating_sub(t as usize));
                for text in lines.into_iter().skip(skip) {
                    if tx.send(Ok(line(text))).await.is_err() {
                        return;
                    }
                }
                // Follow: read what is appended until the VM is removed or nobody listens.
                while follow && !tx.is_closed() {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    let Ok(bytes) = tokio::fs::read(&path).await else {
                        return;
                    };
                    if bytes.len() < offset {
                        offset = 0;
                    }
                    let (lines, used) = split_lines(&bytes[offset..]);
                    offset += used;
                    for text in lines {
                        if tx.send(Ok(line(text))).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
        Ok(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })
        .boxed())
    }

    async fn exec(
        &self,
        _lease: &LeaseId,
        req: &ExecRequest,
    ) -> Result<ExecSession, WorkloadError> {
        Err(WorkloadError::Unsupported {
            service: req.service.clone(),
            reason: "commands cannot be run in a VM from outside: log in with ssh (kumo lease ssh) instead".into(),
        })
    }

    async fn leases(&self) -> Result<Vec<LeaseId>, WorkloadError> {
        let root = self.config.data_dir.join("vms");
        let mut leases = Vec::new();
        let Ok(mut entries) = tokio::fs::read_dir(&root).await else {
            return Ok(leases);
        };
        while let Ok(Some(lease_dir)) = entries.next_entry().await {
            let Ok(mut vms) = tokio::fs::read_dir(lease_dir.path()).await else {
                continue;
            };
            while let Ok(Some(vm)) = vms.next_entry().await {
                if let Some(state) = VmDir::new(vm.path()).load().await {
                    leases.push(state.lease);
                    break;
                }
            }
        }
        leases.sort();
        leases.dedup();
        Ok(leases)
    }

    async fn events(&self, lease: &LeaseId) -> Result<EventStream, WorkloadError> {
        // QEMU's own events need a QMP connection per VM held open; polling the run state every
        // second says the same (started, stopped, removed) with no connection kept.
        let backend_dirs = self.lease_dir(lease);
        let lease = *lease;
        let poll = move |dir: PathBuf| async move {
            let mut states = BTreeMap::new();
            if let Ok(mut entries) = tokio::fs::read_dir(&dir).await {
                while let Ok(Some(entry)) = entries.next_entry().await {
                    let vm = VmDir::new(entry.path());
                    if let Some(s) = vm.load().await
                        && s.lease == lease
                    {
                        let pid = vm.pid().await;
                        states.insert((s.service, s.replica), run_state(&vm, pid).await);
                    }
                }
            }
            states
        };
        let initial = poll(backend_dirs.clone()).await;
        let stream = futures::stream::unfold(
            (initial, std::collections::VecDeque::<WorkloadEvent>::new()),
            move |(mut last, mut queue)| {
                let dir = backend_dirs.clone();
                async move {
                    loop {
                        if let Some(event) = queue.pop_front() {
                            return Some((Ok(event), (last, queue)));
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        let now = poll(dir.clone()).await;
                        let time = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| d.as_secs() as i64);
                        for ((service, replica), state) in &now {
                            let before = last.get(&(service.clone(), *replica));
                            let kind = match (before, state) {
                                (None, _) => Some(EventKind::Created),
                                (Some(b), ReplicaState::Running) if *b != ReplicaState::Running => {
                                    Some(EventKind::Started)
                                }
                                (Some(ReplicaState::Running), ReplicaState::Exited) => {
                                    Some(EventKind::Stopped)
                                }
                                _ => None,
                            };
                            if let Some(kind) = kind {
                                queue.push_back(WorkloadEvent {
                                    service: service.clone(),
                                    replica: *replica,
                                    kind,
                                    time,
                                });
                            }
                        }
                        for (service, replica) in last.keys() {
                            if !now.contains_key(&(service.clone(), *replica)) {
                                queue.push_back(WorkloadEvent {
                                    service: service.clone(),
                                    replica: *replica,
                                    kind: EventKind::Removed,
                                    time,
                                });
                            }
                        }
                        last = now;
                    }
                }
            },
        );
        Ok(stream.boxed())
    }

    async fn restart(
        &self,
        lease: &LeaseId,
        service: Option<&str>,
    ) -> Result<DeploymentStatus, WorkloadError> {
        let _guard = self.lock(lease).await;
        let vms = self.vms_of(lease).await;
        if vms.is_empty() {
            return Err(WorkloadError::LeaseNotFound {
                lease: lease.to_string(),
            });
        }
        if let Some(wanted) = service
            && !vms.iter().any(|(_, s)| s.service == wanted)
        {
            let mut known: Vec<_> = vms.iter().map(|(_, s)| s.service.clone()).collect();
            known.dedup();
            return Err(WorkloadError::UnknownService {
                lease: lease.to_string(),
                service: wanted.to_string(),
                known: known.join(", "),
            });
        }
        for (dir, state) in &vms {
            if service.is_some_and(|s| s != state.service) {
                continue;
            }
            self.restart_vm(dir, state).await.map_err(|e| {
                e.into_workload(format!(
                    "rebooting VM {} replica {}",
                    state.service, state.replica
                ))
            })?;
        }
        self.status(lease).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu_vm(units: u64) -> ManifestService {
        serde_json::from_value(serde_json::json!({
            "name": "train", "image": "", "count": 1, "expose": [],
            "resources": {"id": 1, "cpu": {"millis": 1000}, "memory": {"bytes": 1073741824},
                          "storage": [], "gpu": {"units": units}, "endpoints": []},
            "vm": {"image": {"url": "https://example.com/d.qcow2", "sha256": "00"},
                   "ssh_keys": [], "user": "kumo"}
        }))
        .unwrap()
    }

    #[test]
    fn gpu_passthrough_is_checked_in_sysfs_before_qemu() {
        let sysfs = tempfile::tempdir().unwrap();
        let opts = DeployOptions {
            gpus: vec![kumo_workload::GpuAssignment {
                service: "train".into(),
                replica: 0,
                device_ids: vec!["GPU-0".into()],
                pci_bus_ids: vec!["0000:3b:00.0".into()],
            }],
            ..Default::default()
        };
        // No IOMMU groups in this sysfs: refused with the reason and the fix.
        let e = passthrough_plan(sysfs.path(), &gpu_vm(1), &opts)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no IOMMU") && e.contains("intel_iommu=on"),
            "{e}"
        );
        // No PCI address for the GPU: refused too.
        let e = passthrough_plan(sysfs.path(), &gpu_vm(1), &DeployOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("pci_bus_ids"), "{e}");
        // A GPU bound to vfio-pci, alone in its group: passed through.
        let root = sysfs.path();
        let dev = root.join("devices/0000:3b:00.0");
        std::fs::create_dir_all(root.join("kernel/iommu_groups/7/devices")).unwrap();
        std::fs::create_dir_all(root.join("bus/pci/devices")).unwrap();
        std::fs::create_dir_all(root.join("bus/pci/drivers/vfio-pci")).unwrap();
        std::fs::create_dir_all(&dev).unwrap();
        std::os::unix::fs::symlink(root.join("kernel/iommu_groups/7"), dev.join("iommu_group"))
            .unwrap();
        std::os::unix::fs::symlink(root.join("bus/pci/drivers/vfio-pci"), dev.join("driver"))
            .unwrap();
        std::os::unix::fs::symlink(&dev, root.join("bus/pci/devices/0000:3b:00.0")).unwrap();
        std::os::unix::fs::symlink(
            &dev,
            root.join("kernel/iommu_groups/7/devices/0000:3b:00.0"),
        )
        .unwrap();
        let plan = passthrough_plan(root, &gpu_vm(1), &opts).unwrap();
        assert_eq!(plan, vec![vec!["0000:3b:00.0".to_string()]]);
        // A service without GPUs passes nothing through.
        assert_eq!(
            passthrough_plan(root, &gpu_vm(0), &DeployOptions::default()).unwrap(),
            vec![Vec::<String>::new()]
        );
    }

    #[test]
    fn console_lines_lose_colours_and_carriage_returns() {
        let raw = b"[\x1b[0;32m  OK  \x1b[0m] Started ssh.service\r\nhalf";
        let (lines, used) = split_lines(raw);
        assert_eq!(lines, ["[  OK  ] Started ssh.service"]);
        assert_eq!(&raw[used..], b"half");
    }
}
