//! The devnet directory: what `kumo devnet up` writes the first time and reads afterwards.
//!
//! ```text
//! DIR/devnet.json        what was built: ports, URLs, addresses (DevnetInfo)
//! DIR/devnet.env         `source` it: KUMO_HOME, KUMO_NODE, KUMO_FROM=tenant, ...
//! DIR/keys/              the keyring (`test` backend: devnets only): `tenant`, `provider`
//! DIR/node0/             the validator's home (config.toml, genesis, data, node.log)
//! DIR/provider/          provider.toml, the daemon's data, provider.log
//! DIR/*.pid              the running processes (see `process`)
//! ```
//!
//! Ports, from `--base-port N`: p2p N, node API N+1, provider gateway N+2, HTTP ingress N+3,
//! forwarded ports N+10 to N+59. The default N = 26656 puts the API on 26657, the default of
//! every `kumo` command. `0` picks free ports (tests, several devnets side by side).

use std::{
    net::{Ipv4Addr, SocketAddr, TcpListener},
    path::{Path, PathBuf},
    time::Duration,
};

use kumo_provider::ProviderConfig;
use kumo_testnet::{TestnetSpec, init::KEYS_DIR};
use kumo_types::{Address, Attribute, Coins};
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
/// The provider's directory, relative to the devnet directory.
pub const PROVIDER_DIR: &str = "provider";
/// The chain id of every devnet.
pub const CHAIN_ID: &str = "kumo-devnet-1";
/// The default first port.
pub const DEFAULT_BASE_PORT: u16 = 26656;
/// What `tenant` and `provider` get in genesis.
pub const GENESIS_COINS: &str = "1000000000000000ukumo,1000000000000000uusd";
/// How many forwarded ports the provider gets.
const FORWARDED_PORTS: u16 = 50;

/// What to build.
#[derive(Debug, Clone)]
pub struct DevnetSpec {
    /// The devnet directory.
    pub dir: PathBuf,
    /// Block time.
    pub block_time: Duration,
    /// First port (see the module docs); 0: free ports chosen by the system.
    pub base_port: u16,
    /// Whether the provider runs VMs (`runtime: vm` services), and how.
    pub vm: VmMode,
}

/// Whether and how the devnet's provider runs VMs.
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
        }
    }
}

/// `devnet.json`: what was built, for the commands that come after `up`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevnetInfo {
    /// The chain id.
    pub chain_id: String,
    /// Block time in milliseconds.
    pub block_time_ms: u64,
    /// The node's API URL.
    pub node: String,
    /// The provider's gateway URL.
    pub gateway: String,
    /// The HTTP ingress's address (service URLs are `http://<host>.<domain>:<port>/`).
    pub ingress: SocketAddr,
    /// The domain generated host names end with.
    pub ingress_domain: String,
    /// The forwarded ports' range (inclusive).
    pub forwarded_ports: (u16, u16),
    /// The tenant's address (key `tenant`).
    pub tenant: Address,
    /// The provider's address (key `provider`).
    pub provider: Address,
    /// The provider's Docker label instance: its containers, networks and volumes.
    pub instance: String,
    /// The provider's VM accelerator choice (`auto`, `kvm`, `tcg`); `None`: no VMs.
    #[serde(default)]
    pub vm: Option<AccelChoice>,
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
        serde_json::from_str(&text).map_err(|e| DevnetError::Corrupt {
            path,
            problem: e.to_string(),
        })
    }

    /// The text of `devnet.env`.
    pub fn env_file(&self, dir: &Path) -> String {
        let dir = dir.display();
        format!(
            "# Source this file to talk to the devnet: . {dir}/{ENV_FILE}\n\
             export KUMO_HOME={dir}\n\
             export KUMO_DEVNET_HOME={dir}\n\
             export KUMO_NODE={node}\n\
             export KUMO_FROM=tenant\n\
             export KUMO_KEYRING_BACKEND=test\n\
             export KUMO_PROVIDER_CONFIG={dir}/{PROVIDER_DIR}/provider.toml\n",
            node = self.node,
        )
    }
}

/// The provider config of a devnet.
pub fn provider_config_path(dir: &Path) -> PathBuf {
    dir.join(PROVIDER_DIR).join("provider.toml")
}

/// Creates the devnet directory (keys, genesis, node home, provider config, `devnet.json`,
/// `devnet.env`). Fails if `spec.dir` already holds a devnet.
pub fn create(spec: &DevnetSpec) -> Result<DevnetInfo, DevnetError> {
    let dir = &spec.dir;
    if dir.join(INFO_FILE).exists() {
        return Err(DevnetError::Exists(dir.clone()));
    }
    let ports = Ports::pick(spec.base_port)?;
    let coins: Coins = GENESIS_COINS.parse().expect("valid coins");
    let mut t = TestnetSpec::new(1, dir.clone());
    t.block_time = spec.block_time;
    t.base_port = ports.p2p;
    t.chain_id = CHAIN_ID.into();
    t.fund = vec![("tenant".into(), coins.clone()), ("provider".into(), coins)];
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
    // One label instance per directory: two devnets on one engine never touch each other's
    // containers, and `down` removes exactly this one's.
    let instance = format!(
        "kumo-devnet-{}",
        &hex::encode(Sha256::digest(dir.display().to_string().as_bytes()))[..8]
    );
    let info = DevnetInfo {
        chain_id: CHAIN_ID.into(),
        block_time_ms: spec.block_time.as_millis() as u64,
        node: testnet.nodes[0].api.clone(),
        gateway: format!("https://127.0.0.1:{}", ports.gateway),
        ingress: SocketAddr::from((Ipv4Addr::LOCALHOST, ports.ingress)),
        ingress_domain: "localhost".into(),
        forwarded_ports: (ports.forwarded, ports.forwarded + FORWARDED_PORTS - 1),
        tenant: address("tenant"),
        provider: address("provider"),
        instance,
        vm: spec.vm.provider_settings(),
    };
    let provider_dir = dir.join(PROVIDER_DIR);
    std::fs::create_dir_all(&provider_dir).map_err(|error| DevnetError::Io {
        path: provider_dir.clone(),
        error,
    })?;
    write(
        &provider_config_path(dir),
        &provider_config(dir, &info).to_toml(),
    )?;
    write(&dir.join(ENV_FILE), &info.env_file(dir))?;
    // Last: devnet.json marks a complete directory.
    let json = serde_json::to_string_pretty(&info).expect("serializable");
    write(&dir.join(INFO_FILE), &(json + "\n"))?;
    Ok(info)
}

/// The devnet provider's config: the `provider` key, loopback listeners, host names under
/// `localhost` (which browsers and curl resolve to loopback without DNS), the Docker backend.
fn provider_config(dir: &Path, info: &DevnetInfo) -> ProviderConfig {
    let mut c = ProviderConfig {
        node: info.node.clone(),
        data_dir: dir.join(PROVIDER_DIR).join("data"),
        ..Default::default()
    };
    c.key.name = "provider".into();
    c.key.keyring_dir = dir.join(KEYS_DIR);
    c.key.backend = "test".into();
    c.gateway.listen = info
        .gateway
        .trim_start_matches("https://")
        .parse()
        .expect("an address written above");
    c.gateway.host_uri = info.gateway.clone();
    c.attributes = vec![
        Attribute::new("region", "local"),
        Attribute::new("host", "kumo-devnet"),
        Attribute::new("capabilities/storage/1/class", "beta2"),
        Attribute::new("capabilities/storage/1/persistent", "true"),
    ];
    c.backend.instance = info.instance.clone();
    c.ingress.domain = info.ingress_domain.clone();
    c.ingress.http_listen = info.ingress;
    c.ingress.public_host = "127.0.0.1".into();
    c.ingress.port_range_start = info.forwarded_ports.0;
    c.ingress.port_range_end = info.forwarded_ports.1;
    if let Some(accel) = info.vm {
        c.vm.enabled = true;
        c.vm.accel = accel;
        c.vm.data_dir = dir.join(PROVIDER_DIR).join("vm");
        c.vm.image_dir = dir.join(PROVIDER_DIR).join("vm-images");
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
    gateway: u16,
    ingress: u16,
    forwarded: u16,
}

impl Ports {
    fn pick(base: u16) -> Result<Ports, DevnetError> {
        if base == 0 {
            return Ok(Ports {
                p2p: 0,
                gateway: free_port()?,
                ingress: free_port()?,
                forwarded: free_port()?.min(u16::MAX - FORWARDED_PORTS),
            });
        }
        if u32::from(base) + 10 + u32::from(FORWARDED_PORTS) > u32::from(u16::MAX) {
            return Err(DevnetError::Spec(format!(
                "--base-port {base}: the devnet needs {} ports from there, past 65535",
                10 + FORWARDED_PORTS
            )));
        }
        Ok(Ports {
            p2p: base,
            gateway: base + 2,
            ingress: base + 3,
            forwarded: base + 10,
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

/// Fails with a clear message when one of the devnet's listening ports is taken (by another
/// program, or a devnet started elsewhere), before any process is started.
pub fn check_ports_free(info: &DevnetInfo) -> Result<(), DevnetError> {
    let node: SocketAddr = info
        .node
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .map_err(|_| DevnetError::Spec(format!("devnet.json: node URL {:?}", info.node)))?;
    let gateway: SocketAddr = info
        .gateway
        .trim_start_matches("https://")
        .parse()
        .map_err(|_| DevnetError::Spec(format!("devnet.json: gateway URL {:?}", info.gateway)))?;
    for (what, addr) in [
        ("the node API", node),
        ("the provider gateway", gateway),
        ("the HTTP ingress", info.ingress),
    ] {
        if TcpListener::bind(addr).is_err() {
            return Err(DevnetError::PortTaken {
                what,
                port: addr.port(),
            });
        }
    }
    Ok(())
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
        assert!(config.vm.enabled);
        assert_eq!(config.vm.accel, AccelChoice::Tcg);
        assert!(spec.dir.join(NODE_HOME).join("config.toml").exists());
        // A second create refuses instead of replacing keys and genesis.
        assert!(matches!(create(&spec), Err(DevnetError::Exists(_))));
    }

    #[test]
    fn default_ports_put_the_api_where_kumo_commands_look() {
        let p = Ports::pick(DEFAULT_BASE_PORT).unwrap();
        assert_eq!(p.p2p + 1, 26657);
        assert!(Ports::pick(65500).is_err());
    }
}
