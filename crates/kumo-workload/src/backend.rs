//! The [`Backend`] trait: what the provider asks of whatever runs its tenants' services (a
//! Docker engine today, virtual machines later), and the plain data it gets back.
//!
//! Every call names a lease by its [`LeaseId`] (owner, dseq, gseq, oseq, provider). A backend
//! keeps no state of its own beyond what the engine holds, so a provider that restarts finds its
//! workloads again with [`Backend::leases`] and [`Backend::status`].

use std::fmt;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use kumo_sdl::manifest::{ManifestGroup, Proto};
use kumo_types::LeaseId;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWrite;

use crate::WorkloadError;

/// Runs the services of leases. Implementations are shared between tasks (`Arc<dyn Backend>`).
#[async_trait]
pub trait Backend: Send + Sync {
    /// Makes `group` run for `lease`. Idempotent: deploying the same group again changes
    /// nothing; deploying a changed group replaces only the replicas whose definition changed
    /// (persistent volumes are kept). Returns the status after the replicas were started (they
    /// may still be starting up: poll [`Backend::status`]).
    async fn deploy(
        &self,
        lease: &LeaseId,
        group: &ManifestGroup,
        opts: &DeployOptions,
    ) -> Result<DeploymentStatus, WorkloadError>;

    /// A new manifest for a lease that already runs: like [`Backend::deploy`], but fails with
    /// [`WorkloadError::LeaseNotFound`] when nothing of the lease is here.
    async fn update(
        &self,
        lease: &LeaseId,
        group: &ManifestGroup,
        opts: &DeployOptions,
    ) -> Result<DeploymentStatus, WorkloadError>;

    /// Removes everything of the lease: replicas, then its network, then its volumes
    /// (persistent data included). Idempotent: tearing down a lease that is gone is not an error.
    async fn teardown(&self, lease: &LeaseId) -> Result<TeardownReport, WorkloadError>;

    /// What runs for the lease right now, per service and replica.
    async fn status(&self, lease: &LeaseId) -> Result<DeploymentStatus, WorkloadError>;

    /// The output of the lease's services, one line at a time. Without `follow` the stream ends
    /// after the lines already written; with it, it goes on until the replicas stop or the
    /// stream is dropped.
    async fn logs(&self, lease: &LeaseId, opts: &LogOptions) -> Result<LogStream, WorkloadError>;

    /// Starts a command in one replica of a service.
    async fn exec(&self, lease: &LeaseId, req: &ExecRequest) -> Result<ExecSession, WorkloadError>;

    /// Every lease that has anything (replica, network or volume) in the engine under this
    /// provider, sorted: what a restarted provider reconciles against the chain.
    async fn leases(&self) -> Result<Vec<LeaseId>, WorkloadError>;

    /// Every lease's replicas at once, in lease order: what each service runs, in which state,
    /// at which address. Built from one listing of the engine where it can be (a provider with
    /// 500 leases refreshes and reconciles from this, not from 500 calls to
    /// [`Backend::status`]), so the per-replica details that need a closer look are left at
    /// their defaults: `restarts` 0, no `exit_code`, `oom_killed` false. A lease with nothing
    /// but a network or volumes here is absent.
    async fn statuses(&self) -> Result<Vec<DeploymentStatus>, WorkloadError> {
        let mut all = Vec::new();
        for lease in self.leases().await? {
            match self.status(&lease).await {
                Ok(s) if !s.services.is_empty() => all.push(s),
                Ok(_) | Err(WorkloadError::LeaseNotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(all)
    }

    /// What happens to the lease's replicas from now on (starts, exits, restarts, OOM kills).
    async fn events(&self, lease: &LeaseId) -> Result<EventStream, WorkloadError>;

    /// Measures the disk each replica uses where its size cannot be enforced by a limit (a
    /// container's writable layer and non-persistent volumes) and evicts the replicas above
    /// what their lease pays for: each is removed (its disk freed), the eviction is recorded
    /// with its reason ([`Backend::evictions`]), and the provider deploys the replica again
    /// with empty ephemeral storage. Returns the evictions made now. Backends whose every
    /// disk has a hard limit have nothing to do.
    async fn enforce_storage(&self) -> Result<Vec<Eviction>, WorkloadError> {
        Ok(Vec::new())
    }

    /// The evictions recorded for the lease, oldest first (the most recent few are kept);
    /// they go with the lease's teardown.
    async fn evictions(&self, lease: &LeaseId) -> Result<Vec<Eviction>, WorkloadError> {
        let _ = lease;
        Ok(Vec::new())
    }

    /// Restarts the replicas of one service (`Some`) or of every service of the lease: a
    /// container is restarted, a VM rebooted; disks and volumes are kept. Returns the status
    /// afterwards (replicas may still be booting). Backends that cannot restart say so.
    async fn restart(
        &self,
        lease: &LeaseId,
        service: Option<&str>,
    ) -> Result<DeploymentStatus, WorkloadError> {
        let _ = lease;
        Err(WorkloadError::Unsupported {
            service: service.unwrap_or("*").to_string(),
            reason: "this backend cannot restart replicas".into(),
        })
    }
}

/// What the provider adds to a manifest when it deploys it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployOptions {
    /// Extra environment for every container, as `NAME=value`, e.g. the provider's public host
    /// name. The manifest's own variables come after these, so a tenant's value wins.
    pub env: Vec<String>,
    /// Host ports the provider chose (from its port range) for the exposed ports of VM
    /// services: the VM backend forwards each to its replica's guest port. The Docker backend
    /// does not read it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_ports: Vec<HostPort>,
    /// The specific GPUs each replica of a GPU service gets (the provider assigned them to the
    /// lease). Docker: a device request for their UUIDs (`--gpus device=…`); VMs: VFIO
    /// passthrough of their PCI functions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<GpuAssignment>,
}

/// The GPUs one replica of a service gets.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct GpuAssignment {
    /// The service.
    pub service: String,
    /// The replica's index.
    pub replica: u32,
    /// The devices' ids as the NVIDIA container runtime knows them (NVML UUIDs `GPU-…`).
    pub device_ids: Vec<String>,
    /// Their PCI addresses (`0000:3b:00.0`) where known, for VFIO passthrough.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pci_bus_ids: Vec<String>,
}

/// One host port forwarded to a port of one replica (VM services).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct HostPort {
    /// The service.
    pub service: String,
    /// The replica's index.
    pub replica: u32,
    /// The port inside the guest (the manifest's `port`).
    pub port: u16,
    /// TCP or UDP.
    pub proto: Proto,
    /// The port on the provider's host.
    pub host_port: u16,
}

/// The state of a lease's workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentStatus {
    /// The lease.
    pub lease: LeaseId,
    /// Its services, in name order.
    pub services: Vec<ServiceStatus>,
}

impl DeploymentStatus {
    /// The service named `name`, if the lease has it.
    pub fn service(&self, name: &str) -> Option<&ServiceStatus> {
        self.services.iter().find(|s| s.name == name)
    }
}

/// The state of one service of a lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {
    /// Service name (its host name inside the lease's network).
    pub name: String,
    /// The image reference it runs.
    pub image: String,
    /// How many replicas the manifest asks for.
    pub replicas: u32,
    /// How many of them are running now.
    pub running: u32,
    /// The container ports the manifest exposes: where the ingress proxies to, on each
    /// replica's address.
    pub ports: Vec<ServicePort>,
    /// Each replica that exists in the engine, by index.
    pub instances: Vec<ReplicaStatus>,
}

impl ServiceStatus {
    /// Whether every replica the manifest asks for is running.
    pub fn is_ready(&self) -> bool {
        self.running == self.replicas
    }
}

/// One exposed container port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ServicePort {
    /// Port inside the container.
    pub port: u16,
    /// TCP or UDP.
    pub proto: Proto,
}

/// One replica (container or VM) of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaStatus {
    /// Index, from 0.
    pub replica: u32,
    /// The engine's id for it (a container id).
    pub id: String,
    /// What it is doing.
    pub state: ReplicaState,
    /// Its address on the lease's private network, while it has one.
    pub ip: Option<IpAddr>,
    /// How often the engine restarted it after it exited.
    pub restarts: u32,
    /// Exit code of its last run, while it is not running (exited, or waiting for a restart).
    pub exit_code: Option<i64>,
    /// Whether its last run was killed for using more memory than its profile allows.
    pub oom_killed: bool,
}

/// What a replica is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicaState {
    /// Created, never started.
    Created,
    /// Running.
    Running,
    /// Exited and waiting to be restarted.
    Restarting,
    /// Frozen.
    Paused,
    /// Exited and not restarted.
    Exited,
    /// Being removed.
    Removing,
    /// Failed in a way the engine could not recover from.
    Dead,
    /// The engine reported something this crate does not know.
    Unknown,
}

impl fmt::Display for ReplicaState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReplicaState::Created => "created",
            ReplicaState::Running => "running",
            ReplicaState::Restarting => "restarting",
            ReplicaState::Paused => "paused",
            ReplicaState::Exited => "exited",
            ReplicaState::Removing => "removing",
            ReplicaState::Dead => "dead",
            ReplicaState::Unknown => "unknown",
        })
    }
}

/// A replica removed for using more disk than its lease pays for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Eviction {
    /// The lease.
    pub lease: LeaseId,
    /// The service.
    pub service: String,
    /// The replica's index.
    pub replica: u32,
    /// When, in seconds since the Unix epoch.
    pub time: i64,
    /// Bytes the replica used outside its persistent volumes.
    pub used_bytes: u64,
    /// Bytes of ephemeral storage its profile has.
    pub limit_bytes: u64,
    /// What the tenant is told.
    pub reason: String,
}

/// What [`Backend::teardown`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeardownReport {
    /// Containers (or VMs) removed.
    pub replicas: u32,
    /// Networks removed.
    pub networks: u32,
    /// Volumes removed.
    pub volumes: u32,
}

/// Which output a service's logs should come from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogOptions {
    /// One service, or every service of the lease.
    pub service: Option<String>,
    /// Only the last this many lines of each replica (all lines when `None`).
    pub tail: Option<u64>,
    /// Keep the stream open and send new lines as they are written.
    pub follow: bool,
}

/// Which standard stream a piece of output was written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StdStream {
    /// Standard output (also everything a TTY session writes).
    Stdout,
    /// Standard error.
    Stderr,
}

/// One line a replica wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// The service.
    pub service: String,
    /// The replica's index.
    pub replica: u32,
    /// Stdout or stderr.
    pub stream: StdStream,
    /// The line, without its line break (bytes that are not UTF-8 are replaced).
    pub line: String,
}

/// A stream of log lines; an `Err` item ends it.
pub type LogStream = BoxStream<'static, Result<LogLine, WorkloadError>>;

/// A command to run in one replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRequest {
    /// The service.
    pub service: String,
    /// The replica's index (0 for a service with one replica).
    pub replica: u32,
    /// The program and its arguments.
    pub cmd: Vec<String>,
    /// Run it on a pseudo-terminal (an interactive shell): output comes as one stream, and the
    /// session can be resized.
    pub tty: bool,
    /// Give the command a standard input ([`ExecSession::stdin`]); without it the command reads
    /// end-of-file.
    pub stdin: bool,
    /// Extra environment, as `NAME=value`.
    pub env: Vec<String>,
}

/// A chunk of a command's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// Stdout or stderr (always stdout on a TTY).
    pub stream: StdStream,
    /// The bytes, as written.
    pub bytes: Bytes,
}

/// Controls a running command: what an [`ExecSession`] needs from its backend.
#[async_trait]
pub trait ExecControl: Send + Sync {
    /// Tells the command's terminal its new size (TTY sessions only).
    async fn resize(&self, columns: u16, rows: u16) -> Result<(), WorkloadError>;
    /// Waits until the command has ended and returns its exit code.
    async fn exit_code(&self) -> Result<i64, WorkloadError>;
}

/// A command running in a replica: write to its input, read its output, then ask for its exit
/// code. The parts are public so that a gateway can move them to different tasks
/// (`let ExecSession { stdin, output, control } = session;`).
pub struct ExecSession {
    /// The command's standard input (a sink that discards everything when the request asked for
    /// none). Shut it down to send end-of-file.
    pub stdin: Pin<Box<dyn AsyncWrite + Send>>,
    /// Its output; ends when the command ends.
    pub output: BoxStream<'static, Result<ExecOutput, WorkloadError>>,
    /// Resize and exit code.
    pub control: Arc<dyn ExecControl>,
}

impl ExecSession {
    /// Puts a session together (used by backends).
    pub fn new(
        stdin: Pin<Box<dyn AsyncWrite + Send>>,
        output: BoxStream<'static, Result<ExecOutput, WorkloadError>>,
        control: Arc<dyn ExecControl>,
    ) -> Self {
        ExecSession {
            stdin,
            output,
            control,
        }
    }

    /// Tells the command's terminal its new size (TTY sessions only).
    pub async fn resize(&self, columns: u16, rows: u16) -> Result<(), WorkloadError> {
        self.control.resize(columns, rows).await
    }

    /// Waits until the command has ended and returns its exit code.
    pub async fn exit_code(&self) -> Result<i64, WorkloadError> {
        self.control.exit_code().await
    }
}

impl fmt::Debug for ExecSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ExecSession")
    }
}

/// Something that happened to a replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadEvent {
    /// The service.
    pub service: String,
    /// The replica's index.
    pub replica: u32,
    /// What happened.
    pub kind: EventKind,
    /// When, in seconds since the Unix epoch.
    pub time: i64,
}

/// What happened to a replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// Created.
    Created,
    /// Started (also after a restart).
    Started,
    /// Its process exited.
    Exited {
        /// The exit code, when the engine reported it.
        exit_code: Option<i64>,
    },
    /// Killed for using more memory than its profile allows.
    OutOfMemory,
    /// Sent a signal (usually on the way to being stopped).
    Killed,
    /// Stopped on purpose.
    Stopped,
    /// Restarted on purpose.
    Restarted,
    /// Removed.
    Removed,
}

/// A stream of workload events; an `Err` item ends it.
pub type EventStream = BoxStream<'static, Result<WorkloadEvent, WorkloadError>>;
