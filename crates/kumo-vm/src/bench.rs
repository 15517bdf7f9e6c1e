//! Lease-to-SSH time: how long from deploying a VM until its tenant can log in, measured with
//! the real OpenSSH client. `kumo bench vm -o json` reports it as
//! `{"lease_to_ssh_seconds": 41.7, "accel": "tcg", "accel_reason": "KVM does not run a guest…"}`.
//!
//! The benchmark's VM lives in a scratch directory named `kumo-bench-vm-<pid>-…` in the
//! temporary directory. Interrupted (SIGINT, SIGTERM) it stops its VM before exiting; killed
//! outright (SIGKILL), its daemonized QEMU outlives it, and the next `kumo bench vm` stops
//! that QEMU and removes the directory.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use kumo_sdl::manifest::ManifestGroup;
use kumo_types::LeaseId;
use kumo_workload::{Backend, DeployOptions, WorkloadError};
use serde::{Deserialize, Serialize};
use tokio::process::Command;

use crate::{Accel, VmBackend};

/// How to log into a VM with OpenSSH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    /// Host (the provider's address).
    pub host: String,
    /// The forwarded port.
    pub port: u16,
    /// The login user.
    pub user: String,
    /// The private key file.
    pub key: PathBuf,
}

impl SshTarget {
    /// The `ssh` command that runs `command` in the VM: batch mode (no password prompts), no
    /// host key checks (each VM makes a new host key at first boot).
    pub fn command(&self, command: &str) -> Command {
        let mut ssh = Command::new("ssh");
        ssh.args([
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "ServerAliveInterval=5",
            "-o",
            "ServerAliveCountMax=3",
            "-o",
            "IdentitiesOnly=yes",
            "-i",
        ])
        .arg(&self.key)
        .args(["-p", &self.port.to_string()])
        .arg(format!("{}@{}", self.user, self.host))
        .arg(command)
        .stdin(Stdio::null())
        .kill_on_drop(true);
        ssh
    }

    /// Runs `command` in the VM; its exit code and output.
    pub async fn run(&self, command: &str) -> std::io::Result<SshOutput> {
        let out = self.command(command).output().await?;
        Ok(SshOutput {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// Tries `ssh … true` until it succeeds or `timeout` has passed; the time it took.
    pub async fn wait(&self, timeout: Duration) -> Result<Duration, String> {
        let start = Instant::now();
        let mut last = String::new();
        while start.elapsed() < timeout {
            // One attempt may hang on a guest that is half up (the port forward accepts at
            // once, sshd answers later): give each its own limit.
            match tokio::time::timeout(Duration::from_secs(20), self.run("true")).await {
                Ok(Ok(out)) if out.code == Some(0) => return Ok(start.elapsed()),
                Ok(Ok(out)) => last = out.stderr.trim().to_string(),
                Ok(Err(e)) => return Err(format!("cannot run ssh: {e}; install openssh-client")),
                Err(_) => last = "ssh hung for 20 s".into(),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        Err(format!(
            "no SSH login on port {} within {timeout:?}; last error: {last}",
            self.port
        ))
    }
}

/// What one `ssh` run gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshOutput {
    /// Exit code (`None` when killed by a signal); 255 is ssh's own failure (refused key, …).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// The result `kumo bench vm -o json` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmBench {
    /// Seconds from the deploy call until `ssh … true` first succeeds.
    pub lease_to_ssh_seconds: f64,
    /// The accelerator the VM ran with.
    pub accel: Accel,
    /// Why not KVM, when it is TCG (the KVM probe's finding); `null` with KVM.
    pub accel_reason: Option<String>,
}

/// Deploys `group` for `lease`, waits for an SSH login as `user` with `key` on the forwarded
/// port of guest port 22, and reports the time. The lease is torn down afterwards.
pub async fn lease_to_ssh(
    backend: &VmBackend,
    lease: &LeaseId,
    group: &ManifestGroup,
    opts: &DeployOptions,
    key: &Path,
    timeout: Duration,
) -> Result<VmBench, WorkloadError> {
    let start = Instant::now();
    let result = async {
        backend.deploy(lease, group, opts).await?;
        let info = backend.vm_info(lease).await?;
        let vm = info.first().ok_or_else(|| WorkloadError::LeaseNotFound {
            lease: lease.to_string(),
        })?;
        let port = vm.ssh_port().ok_or_else(|| WorkloadError::InvalidService {
            service: vm.service.clone(),
            reason: "port 22 is not exposed".into(),
        })?;
        let target = SshTarget {
            host: "127.0.0.1".into(),
            port,
            user: vm.user.clone(),
            key: key.to_path_buf(),
        };
        target
            .wait(timeout)
            .await
            .map_err(|reason| WorkloadError::NotRunning {
                service: vm.service.clone(),
                replica: vm.replica,
                state: reason,
            })?;
        Ok(VmBench {
            lease_to_ssh_seconds: (start.elapsed().as_secs_f64() * 10.0).round() / 10.0,
            accel: vm.accel,
            accel_reason: vm.warning.clone(),
        })
    }
    .await;
    backend.teardown(lease).await?;
    result
}

/// Why `kumo bench vm` could not measure.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Preparing the run failed (temporary directory, key, image file).
    #[error("preparing the VM benchmark: {0}")]
    Setup(String),
    /// The backend failed.
    #[error(transparent)]
    Vm(#[from] crate::VmError),
    /// Deploying, logging in or tearing down failed.
    #[error(transparent)]
    Workload(#[from] WorkloadError),
    /// A signal came: the VM was stopped and its files removed.
    #[error("interrupted by {0}: the benchmark's VM was stopped")]
    Interrupted(&'static str),
}

/// The scratch directories' name prefix (then the owner's pid and `-`).
const SCRATCH_PREFIX: &str = "kumo-bench-vm-";

/// Stops the QEMUs of scratch directories in `tmp` whose benchmark process is gone (killed
/// with SIGKILL, or a machine that lost power mid-run) and removes the directories; the pids
/// stopped. A directory whose owner's pid runs (itself, or a process that reused the pid) is
/// left alone.
pub fn sweep_abandoned(tmp: &Path) -> Vec<u32> {
    let mut stopped = Vec::new();
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return stopped;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(owner) = name
            .to_str()
            .and_then(|n| n.strip_prefix(SCRATCH_PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{owner}")).exists() {
            continue;
        }
        stopped.extend(crate::instance::kill_qemus_under(&entry.path()));
        if let Some(cgroups) = crate::cgroup::for_data_dir(&entry.path().join("vm")) {
            cgroups.remove_all_blocking();
        }
        if let Err(e) = std::fs::remove_dir_all(entry.path()) {
            tracing::warn!(dir = %entry.path().display(), "removing an abandoned benchmark directory: {e}");
        }
    }
    stopped
}

/// Resolves with the name of the first SIGINT or SIGTERM.
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        // No handler could be installed: the default action (exit) stays, nothing to await.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}

/// Where `scripts/vm-test-image.sh` caches the test guest: `$KUMO_VM_IMAGE_DIR`, else
/// `/var/cache/kumo/vm-images`.
pub fn test_image_dir() -> PathBuf {
    std::env::var_os("KUMO_VM_IMAGE_DIR")
        .map_or_else(|| PathBuf::from("/var/cache/kumo/vm-images"), PathBuf::from)
}

/// The newest test guest in `dir` (`kumo-test-debian-*.qcow2`, as `scripts/vm-test-image.sh`
/// names it); none if it holds none.
pub fn cached_test_image(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("kumo-test-debian-") && name.ends_with(".qcow2")
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .max()
        .map(|(_, path)| path)
}

/// `kumo bench vm`: boots the local disk image `image` (a cloud image with cloud-init, or the
/// guest of `scripts/vm-test-image.sh`) as a one-VM lease (2 vCPUs, 512 MiB, a disk of the
/// image's size rounded up to a GiB, port 22 forwarded) in a temporary directory, with a fresh
/// SSH key, and measures lease-to-SSH. `progress` gets a line per step.
pub async fn run_local(
    image: &Path,
    timeout: Duration,
    progress: &dyn Fn(&str),
) -> Result<VmBench, BenchError> {
    use kumo_workload::HostPort;
    use sha2::{Digest, Sha256};

    let setup = |what: &str, e: &dyn std::fmt::Display| BenchError::Setup(format!("{what}: {e}"));
    let image =
        std::fs::canonicalize(image).map_err(|e| setup(&image.display().to_string(), &e))?;
    let stopped = sweep_abandoned(&std::env::temp_dir());
    if !stopped.is_empty() {
        progress(&format!(
            "stopped QEMU {stopped:?}, left by a kumo bench vm that was killed"
        ));
    }
    let tmp = tempfile::Builder::new()
        .prefix(&format!("{SCRATCH_PREFIX}{}-", std::process::id()))
        .tempdir()
        .map_err(|e| setup("temporary directory", &e))?;
    // Signals are caught from here on, so that none leaves a QEMU behind.
    let signal = interrupted();
    tokio::pin!(signal);
    progress("hashing the image");
    let bytes = tokio::fs::read(&image)
        .await
        .map_err(|e| setup(&image.display().to_string(), &e))?;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    drop(bytes);
    let key = tmp.path().join("id_ed25519");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .await
        .map_err(|e| setup("ssh-keygen (install openssh-client)", &e))?;
    if !status.success() {
        return Err(BenchError::Setup("ssh-keygen failed".into()));
    }
    let public = std::fs::read_to_string(key.with_extension("pub"))
        .map_err(|e| setup("the public key", &e))?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| setup("a free port", &e))?
        .port();

    let mut config = crate::VmConfig::new(tmp.path().join("vm"));
    config.allow_file_urls = true;
    config.forward_address = std::net::IpAddr::from([127, 0, 0, 1]);
    progress("probing KVM");
    let backend = tokio::select! {
        backend = VmBackend::new(config) => backend?,
        sig = &mut signal => return Err(BenchError::Interrupted(sig)),
    };
    let format = crate::image::ImageFormat::detect(&image)
        .await
        .map_err(|e| setup("reading the image", &e))?;
    let size =
        crate::instance::virtual_size(&backend.config().qemu_img, &image, format.as_str()).await?;
    let disk_gib = size.div_ceil(1 << 30).max(1);
    let sdl = format!(
        "version: \"2.0\"\nservices:\n  box:\n    runtime: vm\n    vm:\n      image:\n        url: https://bench.invalid/image\n        sha256: {sha256}\n      ssh_keys:\n        - {}\n    expose:\n      - port: 22\n        to:\n          - global: true\nprofiles:\n  compute:\n    box:\n      resources:\n        cpu: {{units: 2}}\n        memory: {{size: 512Mi}}\n        storage: {{size: {disk_gib}Gi}}\n  placement:\n    dc:\n      pricing:\n        box: {{denom: uakt, amount: 1}}\ndeployment:\n  box:\n    dc: {{profile: box, count: 1}}\n",
        public.trim()
    );
    let sdl = kumo_sdl::parse(&sdl).map_err(|e| setup("the benchmark's SDL", &e))?;
    let mut group = sdl.manifest().groups[0].clone();
    let url = format!("file://{}", image.display());
    group.services[0].image = url.clone();
    if let Some(vm) = group.services[0].vm.as_mut() {
        vm.image.url = url;
    }
    let opts = DeployOptions {
        host_ports: vec![HostPort {
            service: "box".into(),
            replica: 0,
            port: 22,
            proto: kumo_sdl::manifest::Proto::Tcp,
            host_port: port,
        }],
        ..Default::default()
    };
    let lease = LeaseId {
        owner: kumo_types::Address([1; 20]),
        dseq: 1,
        gseq: 1,
        oseq: 1,
        provider: kumo_types::Address([2; 20]),
    };
    progress(&format!(
        "booting the VM ({}) and waiting for SSH on port {port}",
        backend.accel().accel
    ));
    let sig = tokio::select! {
        result = lease_to_ssh(&backend, &lease, &group, &opts, &key, timeout) => {
            // The teardown removed the VM's cgroup; the backend's own directory goes too.
            backend.cgroups().remove_all_blocking();
            return Ok(result?);
        }
        sig = &mut signal => sig,
    };
    progress(&format!("{sig}: stopping the VM"));
    // The deploy may have been cut off between QEMU's start and its pid file: after the
    // teardown, anything still running under the scratch directory is killed too (twice, a
    // moment apart, for a QEMU that was still daemonizing).
    if let Err(e) = backend.teardown(&lease).await {
        tracing::warn!("tearing the benchmark's VM down: {e}");
    }
    for _ in 0..2 {
        crate::instance::kill_qemus_under(tmp.path());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    backend.cgroups().remove_all_blocking();
    Err(BenchError::Interrupted(sig))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_cached_test_guest_is_the_default_image() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(cached_test_image(dir.path()), None);
        assert_eq!(cached_test_image(&dir.path().join("missing")), None);
        let old = dir.path().join("kumo-test-debian-aaaa.qcow2");
        let new = dir.path().join("kumo-test-debian-bbbb.qcow2");
        std::fs::write(&old, b"old").unwrap();
        std::fs::write(dir.path().join("other.qcow2"), b"not ours").unwrap();
        std::fs::create_dir(dir.path().join("build.XYZ")).unwrap();
        assert_eq!(cached_test_image(dir.path()), Some(old.clone()));
        std::fs::write(&new, b"new").unwrap();
        let earlier = std::time::SystemTime::now() - Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(earlier)
            .unwrap();
        assert_eq!(cached_test_image(dir.path()), Some(new));
    }
}
