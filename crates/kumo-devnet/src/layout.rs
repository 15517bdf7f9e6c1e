//! The devnet directory: what `kumo devnet up` writes the first time and reads afterwards.
//!
//! ```text
//! DIR/devnet.json        what was built: ports, URLs, addresses, each provider (DevnetInfo)
//! DIR/devnet.env         `source` it: KUMO_HOME, KUMO_NODE, KUMO_FROM=tenant, ...
//! DIR/keys/              the keyring (`test` backend: devnets only): `tenant`, `provider`,
//!                        `provider2` … (one key per provider)
//! DIR/node0/             the validator's home (config.toml, genesis, data, node.log)
//! DIR/provider/          the first provider: provider.toml, the daemon's data, provider.log
//! DIR/provider2/ …       the others, alike (`--providers N`, at most 8)
//! DIR/*.pid              the running processes: node.pid, provider.pid, provider2.pid …
//! ```
//!
//! Ports, from `--base-port N`: p2p N, node API N+1; provider 1 takes gateway N+2, HTTP ingress
//! N+3 and forwarded ports N+10 to N+59 (the layout of a one-provider devnet, unchanged);
//! provider k takes the same offsets in the block of 60 ports above the previous one, from
//! B = N + 60·(k−1): gateway B+2, ingress B+3, forwarded B+10 to B+59 (B and B+1 stay unused).
//! The default N = 26656 puts the API on 26657, the default of every `kumo` command, and
//! provider 2's gateway on 26718. `0` picks free ports (tests, several devnets side by side).
//!
//! The providers differ so that they compete: each has its own key, Docker label instance
//! (`kumo-devnet-<hash>`, then `…-2`, `…-3`: no provider sees another's containers, networks,
//! volumes or firewall table), attribute `zone=devnet-a`, `devnet-b` … (beside the shared
//! `region=local`, `host=kumo-devnet`) and linear prices: provider k charges
//! 100 + 25·(k−1) % of the default rates, so an order every provider fits gets a bid from
//! each, the first provider's the cheapest.

use std::{
    net::{Ipv4Addr, SocketAddr, TcpListener},
    path::{Path, PathBuf},
    time::Duration,
};

use kumo_provider::{ProviderConfig, config::PricingConfig};
use kumo_testnet::{TestnetSpec, init::KEYS_DIR};
use kumo_types::{Address, Attribute, Coins, Dec};
use kumo_vm::AccelChoice;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::DevnetError;

/// The description's file name in a devnet directory.
pub const INFO_FILE: &str = "devnet.json";
/// The environment file's name.
pub const ENV_FILE: &str = "devnet.env";
/// The validator's home, relative to the devnet directory.
pub const NODE_HOME: &str = "node0";
/// The first provider's directory, relative to the devnet directory (also its key's and its
/// pid file's name).
pub const PROVIDER_DIR: &str = "provider";
/// The node's name among the devnet's processes (`node.pid`).
pub const NODE: &str = "node";
/// The chain id of every devnet.
pub const CHAIN_ID: &str = "kumo-devnet-1";
/// The default first port.
pub const DEFAULT_BASE_PORT: u16 = 26656;
/// What `tenant` and each provider's key get in genesis.
pub const GENESIS_COINS: &str = "1000000000000000ukumo,1000000000000000uusd";
/// The most providers one devnet runs: each is a daemon of its own on this machine, and the
/// port blocks above `--base-port` must stay below 65535.
pub const MAX_PROVIDERS: usize = 8;
/// How many forwarded ports each provider gets.
const FORWARDED_PORTS: u16 = 50;
/// The ports each provider's block spans (see the module docs).
const PORTS_PER_PROVIDER: u16 = 60;

/// What to build.
#[derive(Debug, Clone)]
pub struct DevnetSpec {
    /// The devnet directory.
    pub dir: PathBuf,
    /// Block time.
    pub block_time: Duration,
    /// First port (see the module docs); 0: free ports chosen by the system.
    pub base_port: u16,
    /// Whether the providers run VMs (`runtime: vm` services), and how.
    pub vm: VmMode,
    /// How many providers (1 to [`MAX_PROVIDERS`]); `None`: one for a new devnet, as many as
    /// it was created with for an existing one. Fixed when the devnet is created: asking an
    /// existing devnet for another number is an error.
    pub providers: Option<usize>,
}

/// Whether and how the devnet's providers run VMs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VmMode {
    /// When `qemu-system-x86_64` is installed, with KVM if it works (the provider probes it at
    /// start, up to 10 s where `/dev/kvm` hangs), else TCG.
    #[default]
    Auto,
    /// KVM only: the provider refuses to start without it.
    Kvm,
    /// TCG (emulation) without probing KVM.
    Tcg,
    /// No VMs: the provider runs containers only.
    Off,
}

impl VmMode {
    /// The provider's `[vm]` enabled and accel settings for this mode on this machine.
    fn provider_settings(self) -> Option<AccelChoice> {
        match self {
            VmMode::Off => None,
            VmMode::Auto => on_path("qemu-system-x86_64").then_some(AccelChoice::Auto),
            VmMode::Kvm => Some(AccelChoice::Kvm),
            VmMode::Tcg => Some(AccelChoice::Tcg),
        }
    }
}

fn on_path(binary: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(binary).is_file()))
}

impl DevnetSpec {
    /// A devnet in `dir` with 250 ms blocks on the default ports.
    pub fn new(dir: impl Into<PathBuf>) -> DevnetSpec {
        DevnetSpec {
            dir: dir.into(),
            block_time: Duration::from_millis(250),
            base_port: DEFAULT_BASE_PORT,
            vm: VmMode::Auto,
            providers: None,
        }
    }
}

/// `devnet.json`: what was built, for the commands that come after `up`.
///
/// The fields `gateway`, `ingress`, `forwarded_ports`, `provider` and `instance` describe the
/// first provider, as they did before a devnet could have several; `providers` lists all of
/// them (a `devnet.json` written before it existed is read as one provider).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevnetInfo {
    /// The chain id.
    pub chain_id: String,
    /// Block time in milliseconds.
    pub block_time_ms: u64,
    /// The node's API URL.
    pub node: String,
    /// The first provider's gateway URL.
    pub gateway: String,
    /// The first provider's HTTP ingress (service URLs are `http://<host>.<domain>:<port>/`).
    pub ingress: SocketAddr,
    /// The domain generated host names end with.
    pub ingress_domain: String,
    /// The first provider's forwarded ports' range (inclusive).
    pub forwarded_ports: (u16, u16),
    /// The tenant's address (key `tenant`).
    pub tenant: Address,
    /// The first provider's address (key `provider`).
    pub provider: Address,
    /// The first provider's Docker label instance: its containers, networks and volumes.
    pub instance: String,
    /// The providers' VM accelerator choice (`auto`, `kvm`, `tcg`); `None`: no VMs.
    #[serde(default)]
    pub vm: Option<AccelChoice>,
    /// Every provider, the first one first.
    #[serde(default)]
    pub providers: Vec<DevnetProvider>,
}

/// One provider of the devnet, as `devnet.json` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevnetProvider {
    /// Its key's name in the keyring, and its process's name (`DIR/<name>.pid`): `provider`,
    /// `provider2`, …
    pub name: String,
    /// Its account address.
    pub address: Address,
    /// Its gateway URL.
    pub gateway: String,
    /// Its HTTP ingress.
    pub ingress: SocketAddr,
    /// Its forwarded ports' range (inclusive).
    pub forwarded_ports: (u16, u16),
    /// Its Docker label instance.
    pub instance: String,
    /// Its directory (`provider.toml`, `data/`, `provider.log`).
    pub dir: PathBuf,
    /// The attributes it publishes on chain.
    pub attributes: Vec<Attribute>,
    /// Its linear prices per block.
    pub price: DevnetPrice,
}

impl DevnetProvider {
    /// Its config file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("provider.toml")
    }

    /// Its log.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("provider.log")
    }

    /// Its gateway's listening address.
    pub fn gateway_addr(&self) -> Result<SocketAddr, DevnetError> {
        self.gateway
            .trim_start_matches("https://")
            .parse()
            .map_err(|_| DevnetError::Spec(format!("devnet.json: gateway URL {:?}", self.gateway)))
    }
}

/// A devnet provider's linear prices per block, in the order's denomination (see
/// `kumo_provider::config::PricingConfig`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevnetPrice {
    /// Per CPU core.
    pub cpu_per_core: Dec,
    /// Per GiB of memory.
    pub memory_per_gib: Dec,
    /// Per GiB of storage (every class).
    pub storage_per_gib: Dec,
    /// Per global endpoint.
    pub endpoint: Dec,
}

impl DevnetPrice {
    /// `percent` % of the provider daemon's default rates.
    fn percent_of_default(percent: u32) -> DevnetPrice {
        let d = PricingConfig::default();
        let scale = |v: Dec| Dec::from_atto(v.atto() * u128::from(percent) / 100);
        DevnetPrice {
            cpu_per_core: scale(d.cpu_per_core),
            memory_per_gib: scale(d.memory_per_gib),
            storage_per_gib: scale(d.storage_default_per_gib),
            endpoint: scale(d.endpoint),
        }
    }

    /// The price of a provider config (a devnet created before `providers` was recorded).
    fn of(p: &PricingConfig) -> DevnetPrice {
        DevnetPrice {
            cpu_per_core: p.cpu_per_core,
            memory_per_gib: p.memory_per_gib,
            storage_per_gib: p.storage_default_per_gib,
            endpoint: p.endpoint,
        }
    }
}

/// The name (key, process, directory) of the provider at `index` (0-based): `provider`, then
/// `provider2`, `provider3`, …
pub fn provider_name(index: usize) -> String {
    match index {
        0 => PROVIDER_DIR.to_string(),
        i => format!("{PROVIDER_DIR}{}", i + 1),
    }
}

impl DevnetInfo {
    /// Reads `DIR/devnet.json`.
    pub fn load(dir: &Path) -> Result<DevnetInfo, DevnetError> {
        let path = dir.join(INFO_FILE);
        let text = std::fs::read_to_string(&path).map_err(|error| {
            if error.kind() == std::io::ErrorKind::NotFound {
                DevnetError::NotFound(dir.to_path_buf())
            } else {
                DevnetError::Io {
                    path: path.clone(),
                    error,
                }
            }
        })?;
        let mut info: DevnetInfo =
            serde_json::from_str(&text).map_err(|e| DevnetError::Corrupt {
                path,
                problem: e.to_string(),
            })?;
        if info.providers.is_empty() {
            info.providers = vec![info.single_provider(dir)];
        }
        Ok(info)
    }

    /// The one provider of a devnet written before `providers` existed, from the fields that
    /// describe it and its config file.
    fn single_provider(&self, dir: &Path) -> DevnetProvider {
        let provider_dir = dir.join(PROVIDER_DIR);
        let config = ProviderConfig::load(&provider_dir.join("provider.toml")).ok();
        DevnetProvider {
            name: PROVIDER_DIR.into(),
            address: self.provider,
            gateway: self.gateway.clone(),
            ingress: self.ingress,
            forwarded_ports: self.forwarded_ports,
            instance: self.instance.clone(),
            attributes: config
                .as_ref()
                .map(|c| c.attributes.clone())
                .unwrap_or_default(),
            price: config.as_ref().map_or_else(
                || DevnetPrice::of(&PricingConfig::default()),
                |c| DevnetPrice::of(&c.pricing),
            ),
            dir: provider_dir,
        }
    }

    /// The text of `devnet.env`.
    pub fn env_file(&self, dir: &Path) -> String {
        let dir = dir.display();
        let mut text = format!(
            "# Source this file to talk to the devnet: . {dir}/{ENV_FILE}\n\
             export KUMO_HOME={dir}\n\
             export KUMO_DEVNET_HOME={dir}\n\
             export KUMO_NODE={node}\n\
             export KUMO_FROM=tenant\n\
             export KUMO_KEYRING_BACKEND=test\n\
             export KUMO_PROVIDER_CONFIG={dir}/{PROVIDER_DIR}/provider.toml\n",
            node = self.node,
        );
        for p in self.providers.iter().skip(1) {
            text += &format!(
                "# {name}: kumo provider … --config {config}\n",
                name = p.name,
                config = p.config_path().display()
            );
        }
        text
    }
}

/// The first provider's config of a devnet.
pub fn provider_config_path(dir: &Path) -> PathBuf {
    dir.join(PROVIDER_DIR).join("provider.toml")
}

/// Creates the devnet directory (keys, genesis, node home, provider configs, `devnet.json`,
/// `devnet.env`). Fails if `spec.dir` already holds a devnet.
pub fn create(spec: &DevnetSpec) -> Result<DevnetInfo, DevnetError> {
    let dir = &spec.dir;
    if dir.join(INFO_FILE).exists() {
        return Err(DevnetError::Exists(dir.clone()));
    }
    let count = spec.providers.unwrap_or(1);
    if !(1..=MAX_PROVIDERS).contains(&count) {
        return Err(DevnetError::Spec(format!(
            "--providers {count}: a devnet runs 1 to {MAX_PROVIDERS} providers"
        )));
    }
    let ports = Ports::pick(spec.base_port, count)?;
    let coins: Coins = GENESIS_COINS.parse().expect("valid coins");
    let names: Vec<String> = (0..count).map(provider_name).collect();
    let mut t = TestnetSpec::new(1, dir.clone());
    t.block_time = spec.block_time;
    t.base_port = ports.p2p;
    t.chain_id = CHAIN_ID.into();
    t.fund = std::iter::once("tenant".to_string())
        .chain(names.iter().cloned())
        .map(|name| (name, coins.clone()))
        .collect();
    // A directory left by an interrupted `up` (no devnet.json) is rebuilt.
    t.force = true;
    let testnet = kumo_testnet::init::init(&t)?;
    let address = |name: &str| {
        testnet
            .accounts
            .iter()
            .find(|a| a.name == name)
            .map(|a| a.address)
            .expect("funded above")
    };
    // One label instance per directory and provider: two devnets on one engine, or two
    // providers of one devnet, never touch each other's containers, and `down` removes
    // exactly this devnet's.
    let instance = format!(
        "kumo-devnet-{}",
        &hex::encode(Sha256::digest(dir.display().to_string().as_bytes()))[..8]
    );
    let providers: Vec<DevnetProvider> = names
        .iter()
        .zip(&ports.providers)
        .enumerate()
        .map(|(i, (name, ports))| DevnetProvider {
            name: name.clone(),
            address: address(name),
            gateway: format!("https://127.0.0.1:{}", ports.gateway),
            ingress: SocketAddr::from((Ipv4Addr::LOCALHOST, ports.ingress)),
            forwarded_ports: (ports.forwarded, ports.forwarded + FORWARDED_PORTS - 1),
            instance: match i {
                0 => instance.clone(),
                i => format!("{instance}-{}", i + 1),
            },
            dir: dir.join(name),
            attributes: provider_attributes(i),
            price: DevnetPrice::percent_of_default(100 + 25 * i as u32),
        })
        .collect();
    let first = &providers[0];
    let info = DevnetInfo {
        chain_id: CHAIN_ID.into(),
        block_time_ms: spec.block_time.as_millis() as u64,
        node: testnet.nodes[0].api.clone(),
        gateway: first.gateway.clone(),
        ingress: first.ingress,
        ingress_domain: "localhost".into(),
        forwarded_ports: first.forwarded_ports,
        tenant: address("tenant"),
        provider: first.address,
        instance: first.instance.clone(),
        vm: spec.vm.provider_settings(),
        providers,
    };
    for p in &info.providers {
        std::fs::create_dir_all(&p.dir).map_err(|error| DevnetError::Io {
            path: p.dir.clone(),
            error,
        })?;
        write(&p.config_path(), &provider_config(dir, &info, p).to_toml())?;
    }
    write(&dir.join(ENV_FILE), &info.env_file(dir))?;
    // Last: devnet.json marks a complete directory.
    let json = serde_json::to_string_pretty(&info).expect("serializable");
    write(&dir.join(INFO_FILE), &(json + "\n"))?;
    Ok(info)
}

/// The attributes of the provider at `index`: the same region and host for all (an SDL that
/// asks for `region: local` fits every one), a `zone` of its own (`devnet-a`, `devnet-b`, …)
/// to place a deployment on one of them, and the storage classes.
fn provider_attributes(index: usize) -> Vec<Attribute> {
    let zone = char::from(b'a' + index as u8);
    vec![
        Attribute::new("region", "local"),
        Attribute::new("host", "kumo-devnet"),
        Attribute::new("zone", format!("devnet-{zone}")),
        Attribute::new("capabilities/storage/1/class", "beta2"),
        Attribute::new("capabilities/storage/1/persistent", "true"),
    ]
}

/// A devnet provider's config: its key, loopback listeners, host names under `localhost`
/// (which browsers and curl resolve to loopback without DNS), the Docker backend under its
/// own label instance, its attributes and prices.
fn provider_config(dir: &Path, info: &DevnetInfo, p: &DevnetProvider) -> ProviderConfig {
    let mut c = ProviderConfig {
        node: info.node.clone(),
        data_dir: p.dir.join("data"),
        ..Default::default()
    };
    c.key.name = p.name.clone();
    c.key.keyring_dir = dir.join(KEYS_DIR);
    c.key.backend = "test".into();
    c.gateway.listen = p.gateway_addr().expect("an address written above");
    c.gateway.host_uri = p.gateway.clone();
    c.attributes = p.attributes.clone();
    c.pricing.cpu_per_core = p.price.cpu_per_core;
    c.pricing.memory_per_gib = p.price.memory_per_gib;
    c.pricing.storage_default_per_gib = p.price.storage_per_gib;
    c.pricing.endpoint = p.price.endpoint;
    c.backend.instance = p.instance.clone();
    c.ingress.domain = info.ingress_domain.clone();
    c.ingress.http_listen = p.ingress;
    c.ingress.public_host = "127.0.0.1".into();
    c.ingress.port_range_start = p.forwarded_ports.0;
    c.ingress.port_range_end = p.forwarded_ports.1;
    if let Some(accel) = info.vm {
        c.vm.enabled = true;
        c.vm.accel = accel;
        c.vm.data_dir = p.dir.join("vm");
        c.vm.image_dir = p.dir.join("vm-images");
    }
    c
}

fn write(path: &Path, text: &str) -> Result<(), DevnetError> {
    std::fs::write(path, text).map_err(|error| DevnetError::Io {
        path: path.to_path_buf(),
        error,
    })
}

/// The ports a devnet listens on.
struct Ports {
    p2p: u16,
    providers: Vec<ProviderPorts>,
}

/// The ports of one provider.
struct ProviderPorts {
    gateway: u16,
    ingress: u16,
    /// The first of [`FORWARDED_PORTS`].
    forwarded: u16,
}

impl Ports {
    /// The ports of a devnet with `providers` providers from `base` (see the module docs), or
    /// free ones for `base` 0.
    fn pick(base: u16, providers: usize) -> Result<Ports, DevnetError> {
        if base == 0 {
            return Self::free(providers);
        }
        let span = u32::from(PORTS_PER_PROVIDER) * providers as u32;
        if u32::from(base) + span > u32::from(u16::MAX) {
            return Err(DevnetError::Spec(format!(
                "--base-port {base}: a devnet with {providers} provider(s) needs {span} ports from there, past 65535: pick a lower one"
            )));
        }
        Ok(Ports {
            p2p: base,
            providers: (0..providers as u16)
                .map(|i| {
                    let block = base + PORTS_PER_PROVIDER * i;
                    ProviderPorts {
                        gateway: block + 2,
                        ingress: block + 3,
                        forwarded: block + 10,
                    }
                })
                .collect(),
        })
    }

    /// Free ports: each provider's gateway, ingress and a range of forwarded ports that
    /// overlaps no port picked before it.
    fn free(providers: usize) -> Result<Ports, DevnetError> {
        let mut taken: Vec<(u16, u16)> = Vec::new();
        let mut out = Vec::new();
        for _ in 0..providers {
            let gateway = free_port()?;
            let ingress = free_port()?;
            taken.extend([(gateway, gateway), (ingress, ingress)]);
            let forwarded = loop {
                let first = free_port()?.min(u16::MAX - FORWARDED_PORTS);
                let last = first + FORWARDED_PORTS - 1;
                if !taken.iter().any(|&(a, b)| first <= b && a <= last) {
                    break first;
                }
            };
            taken.push((forwarded, forwarded + FORWARDED_PORTS - 1));
            out.push(ProviderPorts {
                gateway,
                ingress,
                forwarded,
            });
        }
        // The ports picked so far are free of one another; the node's p2p and API ports
        // (picked by `kumo_testnet` from the same process-wide list) are never among them.
        Ok(Ports {
            p2p: 0,
            providers: out,
        })
    }
}

/// A free loopback port (see `kumo_testnet::ports`).
fn free_port() -> Result<u16, DevnetError> {
    kumo_testnet::ports::free_port().map_err(|error| DevnetError::Io {
        path: PathBuf::from("127.0.0.1:0"),
        error,
    })
}

/// Fails with a clear message when the node's API port is taken (by another program, or a
/// devnet started elsewhere), before the node is started.
pub fn check_node_ports_free(info: &DevnetInfo) -> Result<(), DevnetError> {
    let node: SocketAddr = info
        .node
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .map_err(|_| DevnetError::Spec(format!("devnet.json: node URL {:?}", info.node)))?;
    check_free("the node API".into(), node)
}

/// Fails with a clear message when the gateway or ingress port of provider `p` is taken,
/// before it is started.
pub fn check_provider_ports_free(p: &DevnetProvider) -> Result<(), DevnetError> {
    check_free(format!("the gateway of {}", p.name), p.gateway_addr()?)?;
    check_free(format!("the HTTP ingress of {}", p.name), p.ingress)
}

fn check_free(what: String, addr: SocketAddr) -> Result<(), DevnetError> {
    match TcpListener::bind(addr) {
        Ok(_) => Ok(()),
        Err(_) => Err(DevnetError::PortTaken {
            what,
            port: addr.port(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_writes_a_complete_devnet_directory_once() {
        let tmp = tempfile::tempdir().unwrap();
        let mut spec = DevnetSpec::new(tmp.path().join("dn"));
        spec.base_port = 0;
        spec.vm = VmMode::Tcg;
        let info = create(&spec).unwrap();
        assert_eq!(DevnetInfo::load(&spec.dir).unwrap(), info);
        assert_ne!(info.tenant, info.provider);
        assert_eq!(info.providers.len(), 1);
        let env = std::fs::read_to_string(spec.dir.join(ENV_FILE)).unwrap();
        assert!(
            env.contains(&format!("export KUMO_NODE={}", info.node)),
            "{env}"
        );
        assert!(env.contains("export KUMO_FROM=tenant"));
        let config = ProviderConfig::load(&provider_config_path(&spec.dir)).unwrap();
        assert_eq!(config.node, info.node);
        assert_eq!(config.backend.instance, info.instance);
        assert_eq!(config.ingress.domain, "localhost");
        assert_eq!(config.key.name, "provider");
        assert_eq!(config.pricing, PricingConfig::default());
        assert!(config.vm.enabled);
        assert_eq!(config.vm.accel, AccelChoice::Tcg);
        assert!(spec.dir.join(NODE_HOME).join("config.toml").exists());
        // A second create refuses instead of replacing keys and genesis.
        assert!(matches!(create(&spec), Err(DevnetError::Exists(_))));
    }

    #[test]
    fn several_providers_get_their_own_key_ports_instance_zone_and_price() {
        let tmp = tempfile::tempdir().unwrap();
        let mut spec = DevnetSpec::new(tmp.path().join("dn"));
        spec.base_port = 0;
        spec.vm = VmMode::Off;
        spec.providers = Some(3);
        let info = create(&spec).unwrap();
        let ps = &info.providers;
        assert_eq!(
            ps.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["provider", "provider2", "provider3"]
        );
        // The fields older readers use describe the first provider.
        assert_eq!(
            (&info.gateway, info.ingress, info.provider, &info.instance),
            (
                &ps[0].gateway,
                ps[0].ingress,
                ps[0].address,
                &ps[0].instance
            )
        );
        for (i, a) in ps.iter().enumerate() {
            let config = ProviderConfig::load(&a.config_path()).unwrap();
            assert_eq!(config.key.name, a.name);
            assert_eq!(config.backend.instance, a.instance);
            assert_eq!(config.attributes, a.attributes);
            assert_eq!(config.pricing.cpu_per_core, a.price.cpu_per_core);
            assert_eq!(config.data_dir, a.dir.join("data"));
            for b in &ps[i + 1..] {
                assert_ne!(a.address, b.address);
                assert_ne!(a.instance, b.instance);
                assert_ne!(a.attributes, b.attributes);
                assert!(
                    a.price.cpu_per_core < b.price.cpu_per_core,
                    "cheapest first"
                );
                let ports = |p: &DevnetProvider| {
                    let mut v = vec![p.ingress.port(), p.gateway_addr().unwrap().port()];
                    v.extend(p.forwarded_ports.0..=p.forwarded_ports.1);
                    v
                };
                let theirs = ports(b);
                assert!(
                    ports(a).iter().all(|port| !theirs.contains(port)),
                    "{a:?} and {b:?} share a port"
                );
            }
        }
        assert_eq!(
            ps[1].price.memory_per_gib,
            "62.5".parse::<Dec>().unwrap(),
            "125 % of 50"
        );
        let env = std::fs::read_to_string(spec.dir.join(ENV_FILE)).unwrap();
        assert!(env.contains("# provider3: "), "{env}");

        spec.dir = tmp.path().join("nine");
        spec.providers = Some(MAX_PROVIDERS + 1);
        let e = create(&spec).unwrap_err().to_string();
        assert!(e.contains("1 to 8 providers"), "{e}");
    }

    #[test]
    fn an_older_devnet_json_reads_as_one_provider() {
        let tmp = tempfile::tempdir().unwrap();
        let mut spec = DevnetSpec::new(tmp.path().join("dn"));
        spec.base_port = 0;
        spec.vm = VmMode::Off;
        let info = create(&spec).unwrap();
        let mut old = serde_json::to_value(&info).unwrap();
        old.as_object_mut().unwrap().remove("providers");
        std::fs::write(spec.dir.join(INFO_FILE), old.to_string()).unwrap();
        let loaded = DevnetInfo::load(&spec.dir).unwrap();
        assert_eq!(loaded.providers, info.providers);
    }

    #[test]
    fn default_ports_keep_the_first_provider_where_it_was() {
        let p = Ports::pick(DEFAULT_BASE_PORT, 3).unwrap();
        assert_eq!(p.p2p + 1, 26657, "the API where kumo commands look");
        let one = &p.providers[0];
        assert_eq!(
            (one.gateway, one.ingress, one.forwarded),
            (26658, 26659, 26666)
        );
        let two = &p.providers[1];
        assert_eq!(
            (two.gateway, two.ingress, two.forwarded),
            (26718, 26719, 26726)
        );
        assert_eq!(p.providers[2].gateway, 26778);
        assert!(Ports::pick(65500, 1).is_err());
        assert!(Ports::pick(65400, 1).is_ok());
        assert!(Ports::pick(65400, 3).is_err());
    }
}
