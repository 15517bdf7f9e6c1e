//! One VM on disk and as a process: its files, its saved state, and starting and stopping its
//! QEMU.
//!
//! ```text
//! <data>/vms/<lease key>/<service>-<replica>/
//!     vm.json       VmState: the lease, what it was launched with (for a restarted provider)
//!     disk.qcow2    copy-on-write overlay on the cached image, sized from the profile
//!     seed.iso      NoCloud seed (label cidata)
//!     qmp.sock      QMP socket
//!     qemu.pid      written by QEMU (-daemonize -pidfile)
//!     console.log   the serial console, appended across reboots: the replica's logs
//! ```
//!
//! A VM on a lease network runs in its own network namespace (see [`crate::netns`]; started
//! through `nsenter`), its forwarded ports on its lease address there. Every VM's QEMU runs
//! in a cgroup of its own (see [`crate::cgroup`]), entered by the shell that starts it.
//!
//! QEMU runs daemonized, so it outlives the provider process; a provider that starts again
//! reads `vm.json`, finds the process by its pid file and talks to it over `qmp.sock`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kumo_sdl::manifest::Proto;
use kumo_types::LeaseId;
use serde::{Deserialize, Serialize};
use tokio::process::Command;

use crate::VmError;
use crate::accel::Accel;
use crate::netns::VmNet;
use crate::qmp::Qmp;

/// A port forwarded from the host into the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Forward {
    /// Port inside the guest.
    pub guest_port: u16,
    /// TCP or UDP.
    pub proto: Proto,
    /// Port on the host.
    pub host_port: u16,
}

/// What a VM was launched with, saved as `vm.json` beside its disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmState {
    /// The lease it belongs to.
    pub lease: LeaseId,
    /// The service.
    pub service: String,
    /// The replica's index.
    pub replica: u32,
    /// The image URL (shown as the service's image).
    pub image: String,
    /// SHA-256 of the image its disk was made from: a different image means a new disk.
    pub image_sha256: String,
    /// Virtual size of the disk, in bytes.
    pub disk_bytes: u64,
    /// Guest CPUs: the lease's CPU rounded up to whole vCPUs.
    pub cpus: u32,
    /// The CPU the lease pays for, in millis: the CFS quota of its cgroup
    /// ([`crate::cgroup`]). `None` in the state of a VM launched before VMs had cgroups
    /// (then `cpus` whole CPUs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_millis: Option<u64>,
    /// Guest memory, in MiB.
    pub memory_mib: u64,
    /// The login user.
    pub user: String,
    /// Host ports forwarded into the guest.
    pub forwards: Vec<Forward>,
    /// The accelerator QEMU runs with.
    pub accel: Accel,
    /// PCI functions (`0000:3b:00.0`) of the GPUs passed through to it (VFIO), checked with
    /// `kumo_gpu::vfio::check` before QEMU starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub passthrough: Vec<String>,
    /// Its network namespace on the lease network ([`crate::netns`]); `None` for a VM on
    /// user-mode networking of the host (a backend without lease networks: tests, the
    /// benchmark).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net: Option<VmNet>,
    /// Hash of everything the QEMU command line and seed depend on: when a new manifest gives
    /// a different one, the VM is relaunched (its disk kept when the image is the same).
    pub launch_hash: String,
}

/// The files of one VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmDir {
    dir: PathBuf,
}

impl VmDir {
    /// The VM directory at `dir`.
    pub fn new(dir: PathBuf) -> VmDir {
        VmDir { dir }
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.dir
    }
    /// `vm.json`.
    pub fn state_file(&self) -> PathBuf {
        self.dir.join("vm.json")
    }
    /// `disk.qcow2`.
    pub fn disk(&self) -> PathBuf {
        self.dir.join("disk.qcow2")
    }
    /// `seed.iso`.
    pub fn seed(&self) -> PathBuf {
        self.dir.join("seed.iso")
    }
    /// `qmp.sock`.
    pub fn qmp(&self) -> PathBuf {
        self.dir.join("qmp.sock")
    }
    /// `qemu.pid`.
    pub fn pidfile(&self) -> PathBuf {
        self.dir.join("qemu.pid")
    }
    /// `console.log`.
    pub fn console(&self) -> PathBuf {
        self.dir.join("console.log")
    }

    /// The saved state, if this VM has been set up.
    pub async fn load(&self) -> Option<VmState> {
        let text = tokio::fs::read(self.state_file()).await.ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Saves `state` (written to a temporary file, then renamed, so a crash leaves the old or
    /// the new state, never half of one).
    pub async fn save(&self, state: &VmState) -> Result<(), VmError> {
        let tmp = self.dir.join("vm.json.tmp");
        let json = serde_json::to_vec_pretty(state).expect("state serializes");
        tokio::fs::write(&tmp, json)
            .await
            .map_err(|e| VmError::io(&tmp, e))?;
        tokio::fs::rename(&tmp, self.state_file())
            .await
            .map_err(|e| VmError::io(self.state_file(), e))
    }

    /// The pid of this VM's QEMU while it runs. The pid file alone is not trusted (the pid may
    /// have been reused since): the process's command line must name this VM's QMP socket.
    pub async fn pid(&self) -> Option<u32> {
        let text = tokio::fs::read_to_string(self.pidfile()).await.ok()?;
        let pid: u32 = text.trim().parse().ok()?;
        let cmdline = tokio::fs::read(format!("/proc/{pid}/cmdline")).await.ok()?;
        let needle = self.qmp().display().to_string();
        let cmdline = String::from_utf8_lossy(&cmdline);
        // A zombie has an empty command line: it is not running.
        cmdline.contains(&needle).then_some(pid)
    }

    /// Opens a QMP session with this VM's QEMU.
    pub async fn qmp_session(&self, timeout: Duration) -> Result<Qmp, VmError> {
        Qmp::connect(&self.qmp(), timeout)
            .await
            .map_err(VmError::Qmp)
    }

    /// Stops QEMU: `quit` over QMP, then SIGKILL if it is still there after `grace`.
    pub async fn kill(&self, grace: Duration) -> Result<(), VmError> {
        let Some(pid) = self.pid().await else {
            return Ok(());
        };
        if let Ok(mut qmp) = self.qmp_session(Duration::from_secs(2)).await {
            let _ = qmp.quit().await;
        }
        let deadline = tokio::time::Instant::now() + grace;
        while tokio::time::Instant::now() < deadline {
            if self.pid().await.is_none() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .await;
        for _ in 0..50 {
            if self.pid().await.is_none() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(VmError::Stuck { pid })
    }
}

/// Kills (SIGKILL) every QEMU of a VM under `dir` (any process whose QMP socket, `-qmp
/// unix:<path>`, lies under it) and returns their pids. For scratch directories whose owner
/// was interrupted or killed (the benchmark's, the tests'): their daemonized QEMUs outlive it
/// and nothing else would stop them. Blocking (plain `std`), so a `Drop` can call it.
pub fn kill_qemus_under(dir: &Path) -> Vec<u32> {
    let needle = format!("unix:{}/", dir.display());
    let mut killed = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return killed;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let ours = cmdline
            .split(|b| *b == 0)
            .any(|arg| arg.starts_with(needle.as_bytes()));
        if ours
            && std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        {
            killed.push(pid);
        }
    }
    killed
}

/// How to launch a VM's QEMU.
#[derive(Debug, Clone)]
pub struct Launch<'a> {
    /// The `qemu-system-x86_64` binary.
    pub qemu: &'a str,
    /// The VM's name (shown by `ps` and in QEMU's messages).
    pub name: &'a str,
    /// The saved state: CPUs, memory, forwards, accelerator.
    pub state: &'a VmState,
    /// The host address forwarded ports listen on (a VM without a network namespace; one
    /// with a namespace listens on its own address there).
    pub forward_address: IpAddr,
    /// The `cgroup.procs` files of the VM's cgroup ([`crate::cgroup::Cgroups::procs_files`]):
    /// the process that becomes QEMU writes its pid into each before it execs `nsenter` or
    /// QEMU, so QEMU and everything it starts belong to the group from the first
    /// instruction. Empty: QEMU runs in the provider's groups.
    pub cgroup_procs: Vec<PathBuf>,
}

/// The shell that puts itself in a VM's cgroup and becomes QEMU: `sh -c ENTER_CGROUP
/// kumo-vm-cgroup <procs file>… -- <command>…`.
const ENTER_CGROUP: &str = r#"while [ "$1" != -- ]; do { echo $$ > "$1" && grep -qx "$$" "$1"; } || { echo "cannot put the VM's QEMU in its cgroup ($1)" >&2; exit 125; }; shift; done; shift; exec "$@""#;

impl Launch<'_> {
    /// The QEMU arguments.
    pub fn args(&self, dir: &VmDir) -> Vec<String> {
        let s = self.state;
        let (_, cpu) = crate::accel::machine_and_cpu(s.accel);
        let mut netdev = "user,id=net0".to_string();
        for f in &s.forwards {
            let proto = match f.proto {
                Proto::Tcp => "tcp",
                Proto::Udp => "udp",
            };
            // In its namespace slirp listens on the VM's lease address, port for port, as a
            // container replica does; the host port is the relay's (`crate::forward`).
            let (address, port) = match &s.net {
                Some(net) => (IpAddr::V4(net.address), f.guest_port),
                None => (self.forward_address, f.host_port),
            };
            netdev.push_str(&format!(
                ",hostfwd={proto}:{address}:{port}-:{}",
                f.guest_port
            ));
        }
        let path = |p: PathBuf| p.display().to_string();
        [
            "-name".into(),
            self.name.to_string(),
            "-cpu".into(),
            cpu.into(),
            "-smp".into(),
            s.cpus.to_string(),
            "-m".into(),
            format!("{}M", s.memory_mib),
            "-nodefaults".into(),
            "-display".into(),
            "none".into(),
            "-drive".into(),
            format!(
                "file={},if=virtio,format=qcow2,discard=unmap",
                path(dir.disk())
            ),
            "-drive".into(),
            format!("file={},if=virtio,format=raw,readonly=on", path(dir.seed())),
            "-netdev".into(),
            netdev,
            "-device".into(),
            "virtio-net-pci,netdev=net0".into(),
            "-device".into(),
            "virtio-rng-pci".into(),
            "-chardev".into(),
            format!("file,id=console,path={},append=on", path(dir.console())),
            "-serial".into(),
            "chardev:console".into(),
            "-qmp".into(),
            format!("unix:{},server=on,wait=off", path(dir.qmp())),
            // A guest that powers off stays as a stopped VM (its disk and ports kept) until
            // the provider restarts or removes it.
            "-no-shutdown".into(),
            "-daemonize".into(),
            "-pidfile".into(),
            path(dir.pidfile()),
        ]
        .into_iter()
        .chain(crate::accel::vm_machine_args(s.accel))
        .chain(
            s.passthrough
                .iter()
                .flat_map(|bdf| ["-device".to_string(), format!("vfio-pci,host={bdf}")]),
        )
        .collect()
    }

    /// Starts QEMU in the background; returns once it runs (QEMU's parent process exits after
    /// setting the VM up, with its error on stderr if it could not).
    pub async fn start(&self, dir: &VmDir) -> Result<(), VmError> {
        let _ = tokio::fs::remove_file(dir.qmp()).await;
        // In its network namespace when it has one: nsenter enters it and execs QEMU (no fork,
        // so the pid file and the QMP socket are QEMU's as before).
        let mut argv: Vec<std::ffi::OsString> = Vec::new();
        if let Some(net) = &self.state.net {
            argv.push("nsenter".into());
            argv.push(format!("--net={}", crate::netns::path(&net.netns).display()).into());
            argv.push("--".into());
        }
        argv.push(self.qemu.into());
        argv.extend(self.args(dir).into_iter().map(Into::into));
        // In its cgroup when it has one: the shell enters it and execs the rest.
        let mut command = if self.cgroup_procs.is_empty() {
            let mut c = Command::new(&argv[0]);
            c.args(&argv[1..]);
            c
        } else {
            let mut c = Command::new("sh");
            c.arg("-c")
                .arg(ENTER_CGROUP)
                .arg("kumo-vm-cgroup")
                .args(&self.cgroup_procs)
                .arg("--")
                .args(&argv);
            c
        };
        let output = command
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(|e| VmError::Qemu {
                vm: self.name.to_string(),
                reason: format!(
                    "cannot run {}: {e}; install qemu-system-x86 (and util-linux's nsenter)",
                    self.qemu
                ),
            })?;
        if !output.status.success() {
            let mut reason = String::from_utf8_lossy(&output.stderr).trim().to_string();
            if output.status.code() == Some(127) {
                // The shell found no such command.
                reason.push_str(&format!(
                    "; cannot run {}: install qemu-system-x86 (and util-linux's nsenter)",
                    self.qemu
                ));
            }
            return Err(VmError::Qemu {
                vm: self.name.to_string(),
                reason,
            });
        }
        Ok(())
    }
}

/// Creates `disk` as a qcow2 overlay on `base` (in format `base_format`) of `bytes` bytes.
pub async fn create_overlay(
    qemu_img: &str,
    base: &Path,
    base_format: &str,
    disk: &Path,
    bytes: u64,
) -> Result<(), VmError> {
    let output = Command::new(qemu_img)
        .args(["create", "-q", "-f", "qcow2", "-F", base_format, "-b"])
        .arg(base)
        .arg(disk)
        .arg(bytes.to_string())
        .output()
        .await
        .map_err(|e| VmError::QemuImg(format!("cannot run {qemu_img}: {e}; install qemu-utils")))?;
    if !output.status.success() {
        return Err(VmError::QemuImg(
            String::from_utf8_lossy(&output.stderr).trim().to_string(),
        ));
    }
    Ok(())
}

/// The virtual size of the disk image at `path`, in bytes.
pub async fn virtual_size(qemu_img: &str, path: &Path, format: &str) -> Result<u64, VmError> {
    let output = Command::new(qemu_img)
        .args(["info", "--output=json", "-f", format])
        .arg(path)
        .output()
        .await
        .map_err(|e| VmError::QemuImg(format!("cannot run {qemu_img}: {e}; install qemu-utils")))?;
    if !output.status.success() {
        return Err(VmError::QemuImg(
            String::from_utf8_lossy(&output.stderr).trim().to_string(),
        ));
    }
    let info: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| VmError::QemuImg(format!("qemu-img info: {e}")))?;
    info["virtual-size"]
        .as_u64()
        .ok_or_else(|| VmError::QemuImg("qemu-img info gave no virtual-size".into()))
}
