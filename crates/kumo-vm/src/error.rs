//! [`VmError`]: what can go wrong running a VM, worded for the provider's operator. The
//! [`kumo_workload::Backend`] methods turn it into a [`WorkloadError`].

use std::path::Path;

use kumo_workload::WorkloadError;

use crate::cgroup::CgroupError;
use crate::image::ImageError;
use crate::qmp::QmpError;

/// Why a VM operation failed.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// QEMU refused to start the VM, or is not installed.
    #[error("starting VM {vm}: {reason}")]
    Qemu {
        /// The VM's name.
        vm: String,
        /// QEMU's words.
        reason: String,
    },
    /// `qemu-img` failed (creating or inspecting a disk).
    #[error("qemu-img: {0}")]
    QemuImg(String),
    /// Talking to a running VM failed.
    #[error(transparent)]
    Qmp(#[from] QmpError),
    /// The image could not be fetched or verified.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// A file of the backend's data directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The system's error.
        source: std::io::Error,
    },
    /// A QEMU process survived SIGKILL.
    #[error("QEMU process {pid} does not exit even after SIGKILL (stuck in the kernel?)")]
    Stuck {
        /// Its pid.
        pid: u32,
    },
    /// A VM's network namespace (or its veth pair) could not be made or removed.
    #[error(
        "network namespace {netns}: {reason}; VMs on lease networks need root (CAP_NET_ADMIN, CAP_SYS_ADMIN) and iproute2"
    )]
    Network {
        /// The namespace.
        netns: String,
        /// What `ip` said.
        reason: String,
    },
    /// A VM's host port could not be bound for its relay.
    #[error(
        "VM {vm}: cannot listen on host port {addr}: {source}; another process holds it (the provider hands VM host ports out of ingress.port_range_*: keep other services out of that range)"
    )]
    HostPort {
        /// The VM's name.
        vm: String,
        /// The address and port.
        addr: std::net::SocketAddr,
        /// The system's error.
        source: std::io::Error,
    },
    /// The lease's network could not be had for a VM.
    #[error("the lease network for the VM: {0}")]
    LeaseNetwork(String),
    /// A VM's cgroup (its CPU, memory and pids limits) could not be had.
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    /// The operator asked for KVM and it is not usable.
    #[error("KVM was required (accel = kvm) but {0}")]
    NoKvm(String),
}

impl VmError {
    /// An [`VmError::Io`] for `path`.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> VmError {
        VmError::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }

    /// This error as a [`WorkloadError`], with `action` saying what was being done.
    pub fn into_workload(self, action: impl Into<String>) -> WorkloadError {
        WorkloadError::engine(action, self)
    }
}
