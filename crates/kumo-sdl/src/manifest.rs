//! The manifest: what the provider runs, sent by the tenant straight to the provider.
//!
//! Only its hash goes on chain ([`Manifest::hash`]); the provider refuses a manifest whose hash
//! differs from the deployment's. The hash is Akash's deployment "version": SHA-256 over the
//! manifest rendered in Akash's JSON shape with keys sorted (see [`crate::akash`]), so a plain
//! Akash SDL file hashes to the same value on Kumo as on Akash.

use kumo_types::Resources;
use serde::{Deserialize, Serialize};

/// Every group of a deployment, in name order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// One entry per placement group.
    pub groups: Vec<ManifestGroup>,
}

/// The services of one placement group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestGroup {
    /// The placement profile's name (matches the group spec's).
    pub name: String,
    /// Services, in name order.
    pub services: Vec<ManifestService>,
}

/// One service: an image, how to run it and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestService {
    /// Service name; other services of the lease reach it by this name.
    pub name: String,
    /// Container image reference.
    pub image: String,
    /// Entrypoint override, if given.
    pub command: Option<Vec<String>>,
    /// Arguments, if given.
    pub args: Option<Vec<String>>,
    /// Environment as `NAME=value`, if given.
    pub env: Option<Vec<String>>,
    /// Resources of one instance (the `id` ties it to a group spec resource unit).
    pub resources: Resources,
    /// Number of instances.
    pub count: u32,
    /// Ports and where they are exposed, in Akash's order.
    pub expose: Vec<ServiceExpose>,
    /// Mounts, permissions and TEE settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<ServiceParams>,
    /// Registry credentials for a private image.
    pub credentials: Option<ImageCredentials>,
    /// Run as a virtual machine (Kumo's `runtime: vm`, see `docs/sdl-extensions.md`); absent
    /// for a container, and then left out of the JSON so Akash manifests keep their bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm: Option<VmSpec>,
}

impl ManifestService {
    /// Whether this service runs as a virtual machine rather than a container.
    pub fn is_vm(&self) -> bool {
        self.vm.is_some()
    }
}

/// The login user a VM gets when its `vm:` block names none.
pub const DEFAULT_VM_USER: &str = "kumo";

/// How a VM service boots and who may log in (`services.<name>.vm`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmSpec {
    /// The cloud image the VM's disk starts from.
    pub image: VmImage,
    /// OpenSSH public keys (`authorized_keys` lines) installed for [`VmSpec::user`].
    pub ssh_keys: Vec<String>,
    /// The login user cloud-init creates ([`DEFAULT_VM_USER`] unless the file names one).
    pub user: String,
    /// The tenant's own cloud-init user-data, passed to the guest next to Kumo's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
}

/// A disk image by URL and content hash (`vm.image`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmImage {
    /// `http://` or `https://` URL of a qcow2 or raw image.
    pub url: String,
    /// Its SHA-256, 64 lowercase hex digits: the provider refuses an image that differs.
    pub sha256: String,
}

/// Transport protocol of an exposed port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Proto {
    /// TCP (the default).
    #[serde(rename = "TCP")]
    Tcp,
    /// UDP.
    #[serde(rename = "UDP")]
    Udp,
}

impl Proto {
    /// `TCP` or `UDP`, as Akash writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "TCP",
            Proto::Udp => "UDP",
        }
    }
}

/// One port of a service and one place it is exposed to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceExpose {
    /// Port inside the container.
    pub port: u32,
    /// Port outside (`as`); 0 means the same as `port`.
    pub external_port: u32,
    /// Protocol.
    pub proto: Proto,
    /// Another service of the deployment allowed to reach this port ("" when none).
    pub service: String,
    /// Whether the port is reachable from the internet.
    pub global: bool,
    /// Extra host names routed to this port (`accept`).
    pub hosts: Option<Vec<String>>,
    /// HTTP proxy settings.
    pub http_options: HttpOptions,
    /// Name of the leased IP endpoint, "" when none.
    pub ip: String,
    /// Sequence number of that IP endpoint.
    pub endpoint_sequence_number: u32,
}

impl ServiceExpose {
    /// The port seen from outside.
    pub fn effective_external_port(&self) -> u32 {
        if self.external_port == 0 {
            self.port
        } else {
            self.external_port
        }
    }

    /// Whether the provider's HTTP ingress serves this port (global TCP port 80).
    pub fn is_ingress(&self) -> bool {
        self.proto == Proto::Tcp && self.global && self.effective_external_port() == 80
    }
}

/// Proxy settings of an exposed HTTP port, defaults applied.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HttpOptions {
    /// Largest request body, in bytes.
    pub max_body_size: u32,
    /// Upstream response header buffer, in bytes; 0 means the provider's default.
    pub proxy_buffer_size: u32,
    /// Read timeout, in milliseconds.
    pub read_timeout: u32,
    /// Send timeout, in milliseconds.
    pub send_timeout: u32,
    /// How many upstreams to try.
    pub next_tries: u32,
    /// Time budget for trying the next upstream, in milliseconds (0 = none).
    pub next_timeout: u32,
    /// When to try the next upstream.
    pub next_cases: Vec<String>,
}

/// `params` of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceParams {
    /// Where volumes are mounted, by volume name.
    pub storage: Option<Vec<StorageMount>>,
    /// What the service may read about its own deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Permissions>,
    /// Confidential computing settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tee: Option<TeeParams>,
}

/// Where one volume is mounted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageMount {
    /// Volume name in the compute profile.
    pub name: String,
    /// Absolute path in the container.
    pub mount: String,
    /// Whether it is mounted read-only.
    pub read_only: bool,
}

/// What a service may read about its own deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permissions {
    /// Any of `deployment`, `logs`, `events`.
    pub read: Option<Vec<String>>,
}

/// Confidential computing settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeeParams {
    /// `cpu` or `cpu-gpu`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Whether attestation is required (always true today).
    pub attestation: bool,
}

/// Registry credentials for a private image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageCredentials {
    /// Registry host, e.g. `ghcr.io`.
    pub host: String,
    /// E-mail (optional; "" when not given).
    pub email: String,
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: String,
}

impl Manifest {
    /// The manifest hash that goes on chain: SHA-256 of the canonical Akash JSON rendering.
    pub fn hash(&self) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let json = crate::akash::manifest_json(self);
        Sha256::digest(crate::akash::canonical_json(&json).as_bytes()).into()
    }

    /// Every service of every group, with its group's name.
    pub fn services(&self) -> impl Iterator<Item = (&str, &ManifestService)> {
        self.groups
            .iter()
            .flat_map(|g| g.services.iter().map(move |s| (g.name.as_str(), s)))
    }
}
