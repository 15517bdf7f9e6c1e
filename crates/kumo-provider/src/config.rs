//! The provider's configuration file (TOML): what `kumo provider init` writes and
//! `kumo provider run --config FILE` reads.
//!
//! Every field has a default; [`ProviderConfig::to_toml`] writes each of them out with a comment
//! saying what it does. Unknown fields are errors, so a typo does not pass silently. Relative
//! paths are relative to the file's directory. Durations are written `250ms`, `30s`, `5m`, `1h`.
//!
//! ```toml
//! node = "http://127.0.0.1:26657"
//! data_dir = "data"
//! manifest_timeout = "5m"
//! [key]
//! name = "provider"
//! [gateway]
//! listen = "0.0.0.0:8443"
//! host_uri = "https://provider.example.com:8443"
//! [ingress]
//! domain = "ingress.example.com"
//! ```

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use kumo_types::{Attribute, Coin, Dec};
use kumo_vm::AccelChoice;
use serde::{Deserialize, Serialize};

use crate::ProviderError;

/// The whole file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProviderConfig {
    /// The node's API URL.
    pub node: String,
    /// Where the daemon keeps its state (`provider.redb`) and the gateway's certificate.
    pub data_dir: PathBuf,
    /// How long a new lease waits for its manifest before the provider closes it.
    #[serde(with = "duration_text")]
    pub manifest_timeout: Duration,
    /// How often the earnings of every active lease are withdrawn.
    #[serde(with = "duration_text")]
    pub withdraw_period: Duration,
    /// How often chain, records and engine are reconciled while the daemon runs (it also runs
    /// at start): a lease closed while an event was missed is torn down, a workload without a
    /// lease removed, a lease without a record recorded.
    #[serde(with = "duration_text")]
    pub reconcile_interval: Duration,
    /// How many of the last log lines of each replica are kept when a lease closes, for its
    /// owner to read (at most [`crate::closed_logs::MAX_BYTES`] per lease); 0 keeps none.
    pub closed_logs_lines: u64,
    /// How long a closed lease's logs are kept.
    #[serde(with = "duration_text")]
    pub closed_logs_retention: Duration,
    /// Deposit held with each bid (at least the chain's `bid_min_deposit`), e.g. `500000ukumo`.
    #[serde(with = "coin_text")]
    pub bid_deposit: Coin,
    /// The account key.
    pub key: KeyConfig,
    /// The tenant-facing HTTPS gateway.
    pub gateway: GatewayConfig,
    /// Attributes published on chain (`region`, `capabilities/storage/1/class`, ...).
    pub attributes: Vec<Attribute>,
    /// Contact details published on chain.
    pub info: InfoConfig,
    /// How bids are priced.
    pub pricing: PricingConfig,
    /// Where workloads run.
    pub backend: BackendConfig,
    /// How traffic reaches the workloads.
    pub ingress: IngressConfig,
    /// What the provider offers.
    pub capacity: CapacityConfig,
    /// Virtual machines (`runtime: vm` services).
    pub vm: VmSection,
    /// Its GPUs: found through NVML, or declared by hand.
    pub gpu: GpuConfig,
    /// Lease networks: their address pool and the firewall that contains them.
    pub network: NetworkSection,
}

/// Lease networks (`[network]`, see `docs/provider.md`, "Lease networks"): each lease gets a
/// subnet of `lease_pool`, and the lease firewall lets it reach the internet and its own
/// network only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkSection {
    /// Install the lease firewall (an nftables table of this provider's own). Off only where
    /// leases are contained some other way (the engine runs on another host).
    pub firewall: bool,
    /// The IPv4 block lease networks' subnets come from.
    pub lease_pool: String,
    /// The prefix length of each lease network (26: 30 containers and 31 VMs).
    pub lease_subnet_prefix: u8,
    /// Private, link-local or CGNAT ranges (CIDR) leases may reach anyway; never the host or
    /// another lease.
    pub allowed_egress: Vec<String>,
    /// Let leases reach the host's DNS resolvers (`/etc/resolv.conf`) on port 53: the engine
    /// forwards containers' queries to them from inside the container.
    pub host_resolvers: bool,
    /// The `nft` program.
    pub nft: String,
}

impl Default for NetworkSection {
    fn default() -> Self {
        let pool = kumo_workload::AddressPool::default();
        NetworkSection {
            firewall: true,
            lease_pool: pool.block().to_string(),
            lease_subnet_prefix: pool.subnet_prefix(),
            allowed_egress: Vec::new(),
            host_resolvers: true,
            nft: "nft".into(),
        }
    }
}

impl NetworkSection {
    /// The address pool; a sentence naming the bad value when it is not one.
    pub fn pool(&self) -> Result<kumo_workload::AddressPool, String> {
        let block = self.lease_pool.parse().map_err(|_| {
            format!(
                "network.lease_pool {:?} is not an IPv4 block such as \"10.192.0.0/11\"",
                self.lease_pool
            )
        })?;
        kumo_workload::AddressPool::new(block, self.lease_subnet_prefix)
            .map_err(|e| format!("network.lease_pool / lease_subnet_prefix: {e}"))
    }

    /// What the Docker backend is given.
    pub fn workload_config(&self) -> Result<kumo_workload::NetworkConfig, String> {
        let pool = self.pool()?;
        let allowed_egress = self
            .allowed_egress
            .iter()
            .map(|r| {
                r.parse::<ipnet::IpNet>().map_err(|_| {
                    format!(
                        "network.allowed_egress {r:?} is not a range such as \"10.9.0.0/24\" or \"fd00::/64\""
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let firewall = self.firewall.then(|| kumo_workload::FirewallConfig {
            allowed_egress,
            dns_servers: if self.host_resolvers {
                kumo_workload::network::host_resolvers()
            } else {
                Vec::new()
            },
            nft: self.nft.clone(),
        });
        Ok(kumo_workload::NetworkConfig { pool, firewall })
    }
}

/// The VM backend (`[vm]`): off by default; when on, the daemon runs `runtime: vm` services
/// under QEMU beside its containers and publishes `capabilities/vm = true`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VmSection {
    /// Whether this provider runs VMs (and bids on VM groups).
    pub enabled: bool,
    /// The VMs' disks, seeds, sockets and console logs.
    pub data_dir: PathBuf,
    /// Downloaded, verified images, shared by every lease.
    pub image_dir: PathBuf,
    /// `auto` (KVM when it works, else TCG with a warning), `kvm` (refuse to start without it)
    /// or `tcg`.
    pub accel: AccelChoice,
    /// The `qemu-system-x86_64` binary.
    pub qemu: String,
    /// The `qemu-img` binary.
    pub qemu_img: String,
    /// Whether tenants' `file://` image URLs are read (an operator's own images, tests).
    pub allow_file_urls: bool,
}

impl Default for VmSection {
    fn default() -> Self {
        VmSection {
            enabled: false,
            data_dir: "vm".into(),
            image_dir: "vm-images".into(),
            accel: AccelChoice::Auto,
            qemu: "qemu-system-x86_64".into(),
            qemu_img: "qemu-img".into(),
            allow_file_urls: false,
        }
    }
}

impl VmSection {
    /// The VM backend's settings.
    pub fn backend_config(&self) -> kumo_vm::VmConfig {
        let mut c = kumo_vm::VmConfig::new(&self.data_dir);
        c.image_dir = self.image_dir.clone();
        c.accel = self.accel;
        c.qemu = self.qemu.clone();
        c.qemu_img = self.qemu_img.clone();
        c.allow_file_urls = self.allow_file_urls;
        c
    }
}

/// GPUs (see `docs/provider.md`, "GPUs").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GpuConfig {
    /// Look for NVIDIA GPUs through NVML when no devices are declared.
    pub nvml: bool,
    /// GPUs declared by hand; when any are, NVML is not asked.
    pub devices: Vec<kumo_gpu::DeclaredGpus>,
    /// Where sysfs is (VFIO passthrough checks read it).
    pub sysfs: PathBuf,
}

impl Default for GpuConfig {
    fn default() -> Self {
        GpuConfig {
            nvml: true,
            devices: Vec::new(),
            sysfs: "/sys".into(),
        }
    }
}

/// The account key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeyConfig {
    /// The key's name in the keyring.
    pub name: String,
    /// The keyring directory.
    pub keyring_dir: PathBuf,
    /// `file` (encrypted; passphrase from `KUMO_KEYRING_PASSPHRASE`) or `test` (unencrypted).
    pub backend: String,
}

/// The gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Address the HTTPS server listens on.
    pub listen: SocketAddr,
    /// The public URL tenants reach it at (goes on chain).
    pub host_uri: String,
}

/// Contact details.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InfoConfig {
    /// Operator e-mail.
    pub email: String,
    /// Operator website.
    pub website: String,
}

/// Pricing: `linear` (per resource) or `script` (an external command).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PricingConfig {
    /// `linear` or `script`.
    pub strategy: String,
    /// Linear: per CPU core per block.
    pub cpu_per_core: Dec,
    /// Linear: per GiB of memory per block.
    pub memory_per_gib: Dec,
    /// Linear: per GiB of storage per block, per class (`ephemeral`, `beta2`, `ram`, ...);
    /// a class not listed costs `storage_default_per_gib`.
    pub storage_per_gib: BTreeMap<String, Dec>,
    /// Linear: per GiB of storage of a class not in `storage_per_gib`.
    pub storage_default_per_gib: Dec,
    /// Linear: per global endpoint per block.
    pub endpoint: Dec,
    /// Linear: per GPU per block, by Akash model name (`h100`); the key `default` prices
    /// models not listed. A GPU order for a model with no price gets no bid.
    pub gpu_per_model: BTreeMap<String, Dec>,
    /// Script: the program and its arguments; gets the order as JSON on stdin, prints the
    /// price per block (a decimal number in the order's denomination) on stdout.
    pub script: Vec<String>,
    /// Script: how long it may take before the order gets no bid.
    #[serde(with = "duration_text")]
    pub script_timeout: Duration,
}

/// The workload backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackendConfig {
    /// `docker` (the only one today).
    pub kind: String,
    /// The Docker engine; empty: the local socket (`DOCKER_HOST` is honoured).
    pub docker_endpoint: String,
    /// Names this provider's objects in the engine (labels); two providers on one engine need
    /// different instances.
    pub instance: String,
    /// Persistent volumes' file system images (preallocated: room for every volume sold) and
    /// the record of evictions; empty: `<data_dir>/volumes`, on the disk whose free space the
    /// capacity counts. On the engine's host; the daemon runs as root to mount them.
    pub storage_dir: PathBuf,
    /// How often each replica's ephemeral storage (writable layer and scratch volumes) is
    /// measured; a replica above its profile's size is evicted. Each pass reads every
    /// replica's files: longer on hosts with many leases, shorter to let less through.
    #[serde(with = "duration_text")]
    pub storage_check_interval: Duration,
}

/// The ingress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngressConfig {
    /// Generated host names are `<hash>.<domain>`; point a wildcard DNS record here.
    pub domain: String,
    /// Address the HTTP reverse proxy listens on.
    pub http_listen: SocketAddr,
    /// The host name or address tenants connect to for forwarded ports.
    pub public_host: String,
    /// First host port for global non-HTTP service ports.
    pub port_range_start: u16,
    /// Last host port (inclusive).
    pub port_range_end: u16,
}

/// Capacity limits and overcommit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CapacityConfig {
    /// At most this many thousandths of a core (0: what the engine reports).
    pub cpu_millis: u64,
    /// At most this much memory (0: what the engine reports).
    pub memory_bytes: u64,
    /// At most this much disk for volumes (0: the free space of the data directory).
    pub storage_bytes: u64,
    /// CPU offered = limit × this.
    pub cpu_overcommit: f64,
    /// Memory offered = limit × this.
    pub memory_overcommit: f64,
    /// Disk offered = limit × this.
    pub storage_overcommit: f64,
}

impl Default for ProviderConfig {
    fn default() -> Self {
        ProviderConfig {
            node: "http://127.0.0.1:26657".into(),
            data_dir: "data".into(),
            manifest_timeout: Duration::from_secs(300),
            withdraw_period: Duration::from_secs(3600),
            reconcile_interval: Duration::from_secs(30),
            closed_logs_lines: 1000,
            closed_logs_retention: Duration::from_secs(24 * 3600),
            bid_deposit: Coin::new("ukumo", 500_000),
            key: KeyConfig::default(),
            gateway: GatewayConfig::default(),
            attributes: Vec::new(),
            info: InfoConfig::default(),
            pricing: PricingConfig::default(),
            backend: BackendConfig::default(),
            ingress: IngressConfig::default(),
            capacity: CapacityConfig::default(),
            vm: VmSection::default(),
            gpu: GpuConfig::default(),
            network: NetworkSection::default(),
        }
    }
}

impl Default for KeyConfig {
    fn default() -> Self {
        KeyConfig {
            name: "provider".into(),
            keyring_dir: "keys".into(),
            backend: "file".into(),
        }
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            listen: "0.0.0.0:8443".parse().expect("valid"),
            host_uri: "https://localhost:8443".into(),
        }
    }
}

impl Default for PricingConfig {
    fn default() -> Self {
        PricingConfig {
            strategy: "linear".into(),
            cpu_per_core: Dec::from_int(100),
            memory_per_gib: Dec::from_int(50),
            storage_per_gib: BTreeMap::new(),
            storage_default_per_gib: Dec::from_int(5),
            endpoint: Dec::from_int(1),
            gpu_per_model: BTreeMap::new(),
            script: Vec::new(),
            script_timeout: Duration::from_secs(5),
        }
    }
}

impl BackendConfig {
    /// Where persistent volumes live: `storage_dir`, or `<data_dir>/volumes` when it is empty.
    pub fn storage_dir(&self, data_dir: &Path) -> PathBuf {
        if self.storage_dir.as_os_str().is_empty() {
            data_dir.join("volumes")
        } else {
            self.storage_dir.clone()
        }
    }
}

impl Default for BackendConfig {
    fn default() -> Self {
        BackendConfig {
            kind: "docker".into(),
            docker_endpoint: String::new(),
            instance: "kumo".into(),
            storage_dir: PathBuf::new(),
            storage_check_interval: Duration::from_secs(10),
        }
    }
}

impl Default for IngressConfig {
    fn default() -> Self {
        IngressConfig {
            domain: "ingress.localhost".into(),
            http_listen: "0.0.0.0:80".parse().expect("valid"),
            public_host: "localhost".into(),
            port_range_start: 30000,
            port_range_end: 32767,
        }
    }
}

impl Default for CapacityConfig {
    fn default() -> Self {
        CapacityConfig {
            cpu_millis: 0,
            memory_bytes: 0,
            storage_bytes: 0,
            cpu_overcommit: 1.0,
            memory_overcommit: 1.0,
            storage_overcommit: 1.0,
        }
    }
}

impl ProviderConfig {
    /// Reads `path`; relative paths in it become relative to its directory.
    pub fn load(path: &Path) -> Result<ProviderConfig, ProviderError> {
        let text = std::fs::read_to_string(path).map_err(|e| ProviderError::Config {
            path: path.to_path_buf(),
            reason: format!("cannot read it: {e}"),
        })?;
        let mut c: ProviderConfig = toml::from_str(&text).map_err(|e| ProviderError::Config {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        c.data_dir = base.join(&c.data_dir);
        c.key.keyring_dir = base.join(&c.key.keyring_dir);
        c.vm.data_dir = base.join(&c.vm.data_dir);
        if !c.backend.storage_dir.as_os_str().is_empty() {
            c.backend.storage_dir = base.join(&c.backend.storage_dir);
        }
        c.vm.image_dir = base.join(&c.vm.image_dir);
        if c.pricing.strategy == "script"
            && let Some(first) = c.pricing.script.first_mut()
            && first.contains('/')
            && Path::new(first.as_str()).is_relative()
        {
            *first = base.join(&*first).display().to_string();
        }
        c.validate().map_err(|reason| ProviderError::Config {
            path: path.to_path_buf(),
            reason,
        })?;
        Ok(c)
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<(), String> {
        match self.pricing.strategy.as_str() {
            "linear" => {}
            "script" if self.pricing.script.is_empty() => {
                return Err("pricing.strategy = \"script\" needs pricing.script = [\"/path/to/program\", ...]".into());
            }
            "script" => {}
            other => {
                return Err(format!(
                    "pricing.strategy {other:?} is unknown: use \"linear\" or \"script\""
                ));
            }
        }
        if self.backend.kind != "docker" {
            return Err(format!(
                "backend.kind {:?} is unknown: only \"docker\" is supported",
                self.backend.kind
            ));
        }
        if self.reconcile_interval.is_zero() {
            return Err("reconcile_interval must be longer than 0s".into());
        }
        if self.closed_logs_lines > 0 && self.closed_logs_retention.is_zero() {
            return Err("closed_logs_retention must be longer than 0s, or set closed_logs_lines = 0 to keep no logs of closed leases".into());
        }
        if self.backend.storage_check_interval.is_zero() {
            return Err("backend.storage_check_interval must be longer than 0s".into());
        }
        if self.ingress.port_range_start > self.ingress.port_range_end {
            return Err("ingress.port_range_start is above ingress.port_range_end".into());
        }
        if !(self.key.backend == "file" || self.key.backend == "test") {
            return Err(format!(
                "key.backend {:?} is unknown: use \"file\" or \"test\"",
                self.key.backend
            ));
        }
        kumo_gpu::declared::devices(&self.gpu.devices)?;
        self.network.workload_config()?;
        let endpoint = &self.backend.docker_endpoint;
        if self.network.firewall && !(endpoint.is_empty() || endpoint.starts_with("unix://")) {
            return Err(format!(
                "the lease firewall is installed on this host, but the engine is at {endpoint:?}: contain leases on the engine's host and set network.firewall = false"
            ));
        }
        for (name, f) in [
            ("cpu_overcommit", self.capacity.cpu_overcommit),
            ("memory_overcommit", self.capacity.memory_overcommit),
            ("storage_overcommit", self.capacity.storage_overcommit),
        ] {
            if !(f.is_finite() && f > 0.0) {
                return Err(format!("capacity.{name} must be a positive number"));
            }
        }
        Ok(())
    }

    /// The file `kumo provider init` writes: every setting with its value and a comment.
    pub fn to_toml(&self) -> String {
        let q = |s: &str| toml::Value::String(s.to_string()).to_string();
        let d = |d: &Duration| q(&duration_text::format(d));
        let dec = |v: &Dec| q(&v.to_string());
        let map = |m: &BTreeMap<String, Dec>| {
            let items: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{} = {}", q(k), dec(v)))
                .collect();
            format!("{{ {} }}", items.join(", "))
        };
        let attrs: Vec<String> = self
            .attributes
            .iter()
            .map(|a| format!("  {{ key = {}, value = {} }},", q(&a.key), q(&a.value)))
            .collect();
        let script: Vec<String> = self.pricing.script.iter().map(|s| q(s)).collect();
        let p = &self.pricing;
        let c = &self.capacity;
        format!(
            r#"# Kumo provider configuration (kumo provider run --config FILE).
# Relative paths are relative to this file's directory. Durations: 250ms, 30s, 5m, 1h.

# The node's API URL: the daemon follows its events and sends its transactions there.
node = {node}
# The daemon's state (provider.redb) and the gateway's TLS certificate.
data_dir = {data_dir}
# A lease whose manifest does not arrive within this time is closed (reason manifest_timeout).
manifest_timeout = {manifest_timeout}
# How often the earnings of every active lease are withdrawn.
withdraw_period = {withdraw_period}
# How often chain, records and engine are reconciled (as at start): leases closed while an
# event was missed are torn down, workloads without an active lease removed.
reconcile_interval = {reconcile_interval}
# When a lease closes, the last lines of each replica's logs are kept for its owner
# (kumo lease logs DSEQ) for closed_logs_retention, at most 1 MiB per lease (oldest lines
# dropped first); 0 lines keeps none.
closed_logs_lines = {closed_logs_lines}
closed_logs_retention = {closed_logs_retention}
# Deposit held with each bid and refunded when it closes (at least the chain's bid_min_deposit).
bid_deposit = {bid_deposit}
# Attributes published on chain and matched against orders' placement requirements; offer a
# storage class with capabilities/storage/<n>/class and capabilities/storage/<n>/persistent.
attributes = [
{attrs}
]

[key]
# The provider's account key in the keyring (kumo keys add NAME).
name = {key_name}
keyring_dir = {keyring_dir}
# file: encrypted, passphrase from KUMO_KEYRING_PASSPHRASE; test: unencrypted (devnets only).
backend = {key_backend}

[gateway]
# The tenant-facing HTTPS server (manifests, status, logs, shell).
listen = "{gw_listen}"
# Its public URL, published on chain with the certificate's fingerprint.
host_uri = {host_uri}

[info]
email = {email}
website = {website}

[pricing]
# linear: the sum of the prices below; script: the output of an external command.
strategy = {strategy}
# Linear prices per block, in the order's denomination.
cpu_per_core = {cpu}
memory_per_gib = {mem}
storage_per_gib = {storage}
storage_default_per_gib = {storage_default}
endpoint = {endpoint}
# Per GPU per block, by model (h100, a100, rtx4090, ...); "default" prices other models.
# A GPU order for a model with no price gets no bid.
gpu_per_model = {gpu}
# Script: the order as JSON on stdin, the price per block on stdout. A crash, a timeout or
# anything but a number means no bid (and a warning in the log).
script = [{script}]
script_timeout = {script_timeout}

[backend]
# docker: a Docker engine (the only backend today).
kind = {kind}
# Empty: the local socket (DOCKER_HOST is honoured).
docker_endpoint = {endpoint_docker}
# Labels this provider's containers, networks and volumes; unique per engine.
instance = {instance}
# Persistent volumes: an ext4 image per volume, of its size, preallocated, loop-mounted
# (the daemon runs as root on the engine's host). Full volume: ENOSPC for the tenant.
# Empty: <data_dir>/volumes.
storage_dir = {storage_dir}
# How often writable layers and scratch volumes are measured; a replica above its
# ephemeral storage is evicted (reason in `kumo lease status`) and started again empty.
storage_check_interval = {storage_check_interval}

[ingress]
# Each global port-80 service gets <hash>.<domain>: point a wildcard DNS record at this host.
domain = {domain}
# The HTTP reverse proxy.
http_listen = "{http_listen}"
# What tenants connect to for forwarded (non-HTTP) ports.
public_host = {public_host}
# Host ports for global non-HTTP service ports.
port_range_start = {prs}
port_range_end = {pre}

[capacity]
# Limits (0: what the engine and the disk report).
cpu_millis = {cpu_millis}
memory_bytes = {memory_bytes}
storage_bytes = {storage_bytes}
# What is offered = limit x overcommit.
cpu_overcommit = {cpu_oc:?}
memory_overcommit = {mem_oc:?}
storage_overcommit = {sto_oc:?}

[vm]
# Run runtime: vm services as QEMU virtual machines beside the containers; publishes the
# attribute capabilities/vm = true on kumo provider register. Off: VM orders get no bid.
enabled = {vm_enabled}
# Each VM's overlay disk, cloud-init seed, QMP socket and serial console log.
data_dir = {vm_data}
# Cloud images, downloaded once and verified by their SHA-256.
image_dir = {vm_images}
# auto: KVM when it works, else TCG (software emulation, much slower; a warning in status);
# kvm: refuse to start without KVM; tcg: never probe KVM.
accel = {vm_accel}
qemu = {vm_qemu}
qemu_img = {vm_qemu_img}
# Read file:// image URLs (images on this host); off, only http(s) URLs are fetched.
allow_file_urls = {vm_files}

[gpu]
# Find NVIDIA GPUs through NVML (libnvidia-ml, loaded at start; none: no GPUs).
nvml = {nvml}
# Where sysfs is mounted (GPU passthrough to VMs is checked there).
sysfs = {sysfs}
# Or declare GPUs by hand (then NVML is not asked), one table per kind:
# [[gpu.devices]]
# model = "h100"          # Akash's model name
# ram = "80Gi"
# interface = "sxm"       # pcie or sxm
# count = 2
# uuids = ["GPU-...", "GPU-..."]               # optional: what Docker's --gpus device= names
# pci_bus_ids = ["0000:3b:00.0", "0000:3c:00.0"] # optional: for VFIO passthrough to VMs
{gpu_devices}
[network]
# The lease firewall: an nftables table (inet kumo_<tag>) that lets each lease reach the
# internet and its own network, and nothing else: not this host, not another lease, not
# private, link-local or CGNAT ranges. Off only if leases are contained some other way.
firewall = {net_firewall}
# Each lease network gets its own subnet of this IPv4 block (not Docker's default pools, which
# hold about 30 networks); the bid engine counts the subnets as capacity.
lease_pool = {net_pool}
# Prefix length of each lease network: 26 = 30 replicas per lease, 28 = 6, 24 = 126.
lease_subnet_prefix = {net_prefix}
# Private ranges leases may reach anyway, e.g. ["10.9.0.0/24"] for a mirror on the LAN.
allowed_egress = [{net_allowed}]
# Let leases ask this host's DNS resolvers (from /etc/resolv.conf) on port 53.
host_resolvers = {net_resolvers}
nft = {net_nft}
"#,
            node = q(&self.node),
            data_dir = q(&self.data_dir.display().to_string()),
            manifest_timeout = d(&self.manifest_timeout),
            withdraw_period = d(&self.withdraw_period),
            reconcile_interval = d(&self.reconcile_interval),
            closed_logs_lines = self.closed_logs_lines,
            closed_logs_retention = d(&self.closed_logs_retention),
            bid_deposit = q(&self.bid_deposit.to_string()),
            attrs = attrs.join("\n"),
            key_name = q(&self.key.name),
            keyring_dir = q(&self.key.keyring_dir.display().to_string()),
            key_backend = q(&self.key.backend),
            gw_listen = self.gateway.listen,
            host_uri = q(&self.gateway.host_uri),
            email = q(&self.info.email),
            website = q(&self.info.website),
            strategy = q(&p.strategy),
            cpu = dec(&p.cpu_per_core),
            mem = dec(&p.memory_per_gib),
            storage = map(&p.storage_per_gib),
            storage_default = dec(&p.storage_default_per_gib),
            endpoint = dec(&p.endpoint),
            gpu = map(&p.gpu_per_model),
            script = script.join(", "),
            script_timeout = d(&p.script_timeout),
            kind = q(&self.backend.kind),
            endpoint_docker = q(&self.backend.docker_endpoint),
            instance = q(&self.backend.instance),
            storage_dir = q(&self.backend.storage_dir.display().to_string()),
            storage_check_interval = d(&self.backend.storage_check_interval),
            domain = q(&self.ingress.domain),
            http_listen = self.ingress.http_listen,
            public_host = q(&self.ingress.public_host),
            prs = self.ingress.port_range_start,
            pre = self.ingress.port_range_end,
            cpu_millis = c.cpu_millis,
            memory_bytes = c.memory_bytes,
            storage_bytes = c.storage_bytes,
            cpu_oc = c.cpu_overcommit,
            mem_oc = c.memory_overcommit,
            sto_oc = c.storage_overcommit,
            vm_enabled = self.vm.enabled,
            vm_data = q(&self.vm.data_dir.display().to_string()),
            vm_images = q(&self.vm.image_dir.display().to_string()),
            vm_accel = q(match self.vm.accel {
                AccelChoice::Auto => "auto",
                AccelChoice::Kvm => "kvm",
                AccelChoice::Tcg => "tcg",
            }),
            vm_qemu = q(&self.vm.qemu),
            vm_qemu_img = q(&self.vm.qemu_img),
            vm_files = self.vm.allow_file_urls,
            net_firewall = self.network.firewall,
            net_pool = q(&self.network.lease_pool),
            net_prefix = self.network.lease_subnet_prefix,
            net_allowed = self
                .network
                .allowed_egress
                .iter()
                .map(|r| q(r))
                .collect::<Vec<_>>()
                .join(", "),
            net_resolvers = self.network.host_resolvers,
            net_nft = q(&self.network.nft),
            nvml = self.gpu.nvml,
            sysfs = q(&self.gpu.sysfs.display().to_string()),
            gpu_devices = self
                .gpu
                .devices
                .iter()
                .map(|d| {
                    let list = |v: &[String]| {
                        v.iter().map(|s| q(s)).collect::<Vec<_>>().join(", ")
                    };
                    format!(
                        "[[gpu.devices]]\nmodel = {}\nram = {}\ninterface = {}\ncount = {}\nvendor = {}\nuuids = [{}]\npci_bus_ids = [{}]\n",
                        q(&d.model),
                        q(&d.ram),
                        q(&d.interface),
                        d.count,
                        q(&d.vendor),
                        list(&d.uuids),
                        list(&d.pci_bus_ids)
                    )
                })
                .collect::<String>(),
        )
    }
}

/// Coins as text: `500000ukumo`.
mod coin_text {
    use kumo_types::Coin;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(c: &Coin, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&c.to_string())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Coin, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Durations as text: `250ms`, `30s`, `5m`, `1h`.
pub mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Parses `250ms`, `30s`, `5m`, `1h`.
    pub fn parse(s: &str) -> Result<Duration, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (n, unit) = s.split_at(split);
        let n: u64 = n
            .parse()
            .map_err(|_| format!("{s:?} is not a duration such as 250ms, 30s, 5m or 1h"))?;
        match unit {
            "ms" => Ok(Duration::from_millis(n)),
            "s" => Ok(Duration::from_secs(n)),
            "m" => Ok(Duration::from_secs(n * 60)),
            "h" => Ok(Duration::from_secs(n * 3600)),
            _ => Err(format!(
                "{s:?} has no known unit: write e.g. 250ms, 30s, 5m or 1h"
            )),
        }
    }

    /// The shortest exact text.
    pub fn format(d: &Duration) -> String {
        let ms = d.as_millis();
        if ms.is_multiple_of(3_600_000) && ms > 0 {
            format!("{}h", ms / 3_600_000)
        } else if ms.is_multiple_of(60_000) && ms > 0 {
            format!("{}m", ms / 60_000)
        } else if ms.is_multiple_of(1000) {
            format!("{}s", ms / 1000)
        } else {
            format!("{ms}ms")
        }
    }

    /// Serde: writes [`format`].
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(d))
    }

    /// Serde: reads [`parse`].
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_file_loads_back_to_the_same_config() {
        let mut c = ProviderConfig {
            attributes: vec![Attribute::new("region", "eu-west")],
            closed_logs_lines: 200,
            closed_logs_retention: Duration::from_secs(2 * 3600),
            ..ProviderConfig::default()
        };
        c.pricing
            .storage_per_gib
            .insert("beta2".into(), Dec::from_int(7));
        c.pricing
            .gpu_per_model
            .insert("h100".into(), Dec::from_int(900));
        c.gpu.devices.push(kumo_gpu::DeclaredGpus {
            model: "h100".into(),
            ram: "80Gi".into(),
            interface: "sxm".into(),
            count: 2,
            vendor: "nvidia".into(),
            uuids: vec!["GPU-a".into(), "GPU-b".into()],
            pci_bus_ids: vec![],
        });
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("provider.toml");
        std::fs::write(&path, c.to_toml()).unwrap();
        let loaded = ProviderConfig::load(&path).unwrap();
        c.data_dir = dir.path().join("data");
        c.key.keyring_dir = dir.path().join("keys");
        c.vm.data_dir = dir.path().join("vm");
        c.vm.image_dir = dir.path().join("vm-images");
        assert_eq!(loaded, c);
        assert_eq!(
            loaded.backend.storage_dir(&loaded.data_dir),
            dir.path().join("data/volumes"),
            "volumes beside the state, on the disk the capacity counts"
        );
        // The VM section loads back too, and an unknown accelerator is refused.
        c.vm.enabled = true;
        c.vm.accel = AccelChoice::Tcg;
        c.vm.allow_file_urls = true;
        std::fs::write(&path, c.to_toml()).unwrap();
        assert_eq!(ProviderConfig::load(&path).unwrap(), c);
        // And the network section.
        c.network.allowed_egress = vec!["10.9.0.0/24".into(), "fd00::/64".into()];
        c.network.lease_subnet_prefix = 28;
        c.network.host_resolvers = false;
        std::fs::write(&path, c.to_toml()).unwrap();
        assert_eq!(ProviderConfig::load(&path).unwrap(), c);
        std::fs::write(&path, "[vm]\naccel = \"hvf\"\n").unwrap();
        let e = ProviderConfig::load(&path).unwrap_err().to_string();
        assert!(e.contains("hvf"), "{e}");
    }

    #[test]
    fn unknown_fields_and_bad_values_are_refused_with_the_field_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(&path, "nodee = \"x\"\n").unwrap();
        let e = ProviderConfig::load(&path).unwrap_err().to_string();
        assert!(e.contains("nodee"), "{e}");
        std::fs::write(&path, "manifest_timeout = \"5 parsecs\"\n").unwrap();
        let e = ProviderConfig::load(&path).unwrap_err().to_string();
        assert!(e.contains("5 parsecs"), "{e}");
        std::fs::write(&path, "[pricing]\nstrategy = \"script\"\n").unwrap();
        let e = ProviderConfig::load(&path).unwrap_err().to_string();
        assert!(e.contains("pricing.script"), "{e}");
        std::fs::write(&path, "[backend]\nstorage_check_interval = \"0s\"\n").unwrap();
        let e = ProviderConfig::load(&path).unwrap_err().to_string();
        assert!(e.contains("storage_check_interval"), "{e}");
        std::fs::write(&path, "closed_logs_retention = \"0s\"\n").unwrap();
        let e = ProviderConfig::load(&path).unwrap_err().to_string();
        assert!(e.contains("closed_logs_lines = 0"), "{e}");
        std::fs::write(
            &path,
            "closed_logs_lines = 0\nclosed_logs_retention = \"0s\"\n",
        )
        .unwrap();
        assert_eq!(ProviderConfig::load(&path).unwrap().closed_logs_lines, 0);
    }

    #[test]
    fn bad_network_settings_are_refused_with_the_field_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        for (text, expected) in [
            (
                "[network]\nlease_pool = \"10.192.0.0\"\n",
                "network.lease_pool",
            ),
            (
                "[network]\nlease_pool = \"10.192.0.1/11\"\n",
                "10.192.0.0/11",
            ),
            ("[network]\nlease_subnet_prefix = 30\n", "/29"),
            (
                "[network]\nallowed_egress = [\"lan\"]\n",
                "network.allowed_egress \"lan\"",
            ),
            (
                "[backend]\ndocker_endpoint = \"tcp://10.0.0.5:2375\"\n",
                "network.firewall = false",
            ),
        ] {
            std::fs::write(&path, text).unwrap();
            let e = ProviderConfig::load(&path).unwrap_err().to_string();
            assert!(e.contains(expected), "{text}: {e}");
        }
        std::fs::write(
            &path,
            "[backend]\ndocker_endpoint = \"tcp://10.0.0.5:2375\"\n[network]\nfirewall = false\n",
        )
        .unwrap();
        let c = ProviderConfig::load(&path).unwrap();
        assert_eq!(c.network.workload_config().unwrap().firewall, None);
        assert_eq!(c.network.pool().unwrap().capacity(), 32_768);
    }

    #[test]
    fn durations_round_trip() {
        for s in ["250ms", "30s", "5m", "1h"] {
            assert_eq!(duration_text::format(&duration_text::parse(s).unwrap()), s);
        }
    }
}
