//! Each VM's QEMU in a cgroup of its own, limited to what its lease pays for, as Docker limits
//! a container (`NanoCpus`, `Memory`, `PidsLimit`):
//!
//! - **CPU**: a CFS quota of the lease's CPU millis per [`CPU_PERIOD_US`] (1000 millis = one
//!   host core's time), while the guest sees `ceil(millis / 1000)` vCPUs (`-smp`): a VM that
//!   pays for 0.5 CPU gets one vCPU running at most half of the time.
//! - **Memory**: the guest's `-m` plus [`QEMU_OVERHEAD_MIB`] for QEMU itself (its own heap,
//!   device emulation, slirp, the firmware, page cache of the disk image it reads), plus
//!   [`crate::accel::TCG_TB_MIB`] under TCG (the translation cache, capped at that size on
//!   QEMU's command line); no swap on top where the host accounts swap. A VM above it is
//!   reclaimed, and killed by the kernel's OOM killer if that is not enough: as a container.
//! - **Pids**: [`PIDS_BASE`] plus one per vCPU. QEMU runs a thread per vCPU, a main loop, an
//!   RCU thread and a pool of I/O workers of up to 64 threads (QEMU aborts when it cannot
//!   start one), so the base leaves room for a full pool.
//!
//! Measured (`tests/qemu.rs`, QEMU 7.2 under TCG, 2 vCPUs, `-m 384M`, the Debian test guest
//! booted to SSH): QEMU's RSS peaked at 562 MiB (the group's memory at 555 MiB), 178 MiB
//! above `-m` with the translation cache it used included, against a limit of 896 MiB; 8
//! threads after boot, 11 after a reboot, against 130 pids.
//!
//! Where the groups are (`<tag>`: 8 hex digits of the backend's data directory, as its
//! network namespaces have, [`crate::netns::tag`]; `<vm>`: the VM's name, the replica's id):
//!
//! ```text
//! cgroup v1  /sys/fs/cgroup/{cpu,memory,pids}/<provider's own group>/kumo-vm/<tag>/<vm>/
//!            cpu.cfs_period_us, cpu.cfs_quota_us, memory.limit_in_bytes
//!            (memory.memsw.limit_in_bytes when there), pids.max, cgroup.procs
//! cgroup v2  /sys/fs/cgroup/kumo-vm/<tag>/<vm>/
//!            cpu.max, memory.max (memory.swap.max = 0), pids.max, cgroup.procs
//! ```
//!
//! On v1 the groups sit beneath the provider's own group of each controller, so whatever the
//! provider itself runs under covers its VMs too. On v2 they sit beneath the root of the
//! unified hierarchy: v2 gives a group's children controllers only when the group holds no
//! processes, and the provider's own group holds the provider; `+cpu +memory +pids` are
//! enabled in `cgroup.subtree_control` of the root, `kumo-vm` and `kumo-vm/<tag>`.
//!
//! QEMU is put in its group before it runs anything: it is started through
//! `sh -c 'echo $$ > <group>/cgroup.procs … && exec nsenter … qemu-system-x86_64 …'`, so the
//! shell, the `nsenter` and the QEMU it becomes, and the daemonized QEMU it forks all belong
//! to the group ([`crate::instance::Launch`]). The group is removed after QEMU has exited
//! (teardown, a replica removed); a backend that starts removes the empty groups under its
//! `kumo-vm/<tag>` (a teardown that was interrupted), leaving those of running VMs alone.
//! There is no switch to run VMs without: a host where the groups cannot be made (no
//! cgroupfs, not root) has the backend refuse to start, with [`CgroupError::Unavailable`].

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::accel::{Accel, TCG_TB_MIB};

/// Where cgroupfs is mounted.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// The CFS period: the quota is the lease's CPU millis × 100 µs per 100 ms.
pub const CPU_PERIOD_US: u64 = 100_000;
/// The smallest quota the kernel takes (1 ms).
pub const CPU_MIN_QUOTA_US: u64 = 1_000;
/// What QEMU may use beyond the guest's memory, in MiB (see the module docs).
pub const QEMU_OVERHEAD_MIB: u64 = 256;
/// The pids (threads) of a VM's group beyond one per vCPU (see the module docs).
pub const PIDS_BASE: u64 = 128;

const MIB: u64 = 1 << 20;
/// The controllers a VM's group is limited by.
const CONTROLLERS: [&str; 3] = ["cpu", "memory", "pids"];

/// Why a VM's cgroup could not be made, filled or removed.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// The host offers no cgroup hierarchy the backend can put VMs in.
    #[error(
        "no usable cgroup for VMs ({reason}): every VM's QEMU runs in a cgroup of its own (CPU quota, memory and pids limits), which needs cgroupfs mounted at {root} (v1 with the cpu, memory and pids controllers, or v2) and a provider running as root"
    )]
    Unavailable {
        /// Where cgroupfs was looked for.
        root: String,
        /// What was missing or refused.
        reason: String,
    },
    /// A file or directory of a VM's group could not be read, written or removed.
    #[error("cgroup {path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The system's error.
        source: io::Error,
    },
}

impl CgroupError {
    fn io(path: &Path, source: io::Error) -> CgroupError {
        CgroupError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// The limits of one VM's group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// CPU time per period, in µs (`u64::MAX`: none).
    pub cpu_quota_us: u64,
    /// The period, in µs.
    pub cpu_period_us: u64,
    /// Memory, in bytes (`u64::MAX`: none).
    pub memory_bytes: u64,
    /// Processes and threads (`u64::MAX`: none).
    pub pids: u64,
}

impl Limits {
    /// What a VM paying for `cpu_millis` of CPU, with `vcpus` vCPUs and `memory_mib` of guest
    /// memory, runs under with `accel` (see the module docs).
    pub fn for_vm(cpu_millis: u64, vcpus: u32, memory_mib: u64, accel: Accel) -> Limits {
        let tb = match accel {
            Accel::Tcg => TCG_TB_MIB,
            Accel::Kvm => 0,
        };
        Limits {
            cpu_quota_us: cpu_quota_us(cpu_millis),
            cpu_period_us: CPU_PERIOD_US,
            memory_bytes: memory_mib
                .saturating_add(QEMU_OVERHEAD_MIB + tb)
                .saturating_mul(MIB),
            pids: PIDS_BASE + u64::from(vcpus),
        }
    }
}

/// The CFS quota (µs per [`CPU_PERIOD_US`]) for `millis` of CPU: 1000 millis are a whole
/// period, one core's time; never below the kernel's 1 ms.
pub fn cpu_quota_us(millis: u64) -> u64 {
    millis
        .saturating_mul(CPU_PERIOD_US / 1000)
        .max(CPU_MIN_QUOTA_US)
}

/// Which cgroup version, with the backend's base directories.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Layout {
    /// Separate hierarchies: `kumo-vm/<tag>` of the cpu, memory and pids controllers.
    V1 {
        cpu: PathBuf,
        memory: PathBuf,
        pids: PathBuf,
    },
    /// The unified hierarchy: its root and `<root>/kumo-vm/<tag>`.
    V2 { root: PathBuf, base: PathBuf },
}

/// A backend's VM cgroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroups {
    layout: Layout,
}

impl Cgroups {
    /// Finds the hierarchy under `root` (cgroupfs; `/sys/fs/cgroup` on a host), v2 when `root`
    /// has `cgroup.controllers`, else v1's `cpu`, `memory` and `pids`. `own` is the
    /// provider's `/proc/self/cgroup` (on v1 the groups go beneath its group of each
    /// controller, where that exists under `root`); `tag` names the backend. Makes nothing.
    pub fn detect(root: &Path, own: &str, tag: &str) -> Result<Cgroups, CgroupError> {
        let unavailable = |reason: String| CgroupError::Unavailable {
            root: root.display().to_string(),
            reason,
        };
        let v2_controllers = root.join("cgroup.controllers");
        if v2_controllers.exists() {
            let have = std::fs::read_to_string(&v2_controllers)
                .map_err(|e| unavailable(format!("{}: {e}", v2_controllers.display())))?;
            let missing: Vec<&str> = CONTROLLERS
                .into_iter()
                .filter(|c| !have.split_whitespace().any(|h| h == *c))
                .collect();
            if !missing.is_empty() {
                return Err(unavailable(format!(
                    "cgroup v2 without the {} controller(s)",
                    missing.join(", ")
                )));
            }
            return Ok(Cgroups {
                layout: Layout::V2 {
                    root: root.to_path_buf(),
                    base: root.join("kumo-vm").join(tag),
                },
            });
        }
        let base = |controller: &str| -> Result<PathBuf, CgroupError> {
            // `cpu` may only be there as `cpu,cpuacct` (usually both are, one a link).
            let mount = [controller.to_string(), format!("{controller},cpuacct")]
                .into_iter()
                .map(|name| root.join(name))
                .find(|dir| dir.join("cgroup.procs").exists())
                .ok_or_else(|| {
                    unavailable(format!(
                        "neither cgroup v2 nor v1's {controller} controller is mounted"
                    ))
                })?;
            let own_group = own
                .lines()
                .filter_map(|line| {
                    let mut fields = line.splitn(3, ':');
                    let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
                    controllers
                        .split(',')
                        .any(|c| c == controller)
                        .then_some(path)
                })
                .next()
                .map(|path| mount.join(path.trim_start_matches('/')))
                .filter(|dir| dir.join("cgroup.procs").exists())
                .unwrap_or_else(|| mount.clone());
            Ok(own_group.join("kumo-vm").join(tag))
        };
        Ok(Cgroups {
            layout: Layout::V1 {
                cpu: base("cpu")?,
                memory: base("memory")?,
                pids: base("pids")?,
            },
        })
    }

    /// The host's: [`Cgroups::detect`] on [`CGROUP_ROOT`] and `/proc/self/cgroup`, then
    /// [`Cgroups::setup`]. Fails with [`CgroupError::Unavailable`] where VMs cannot be
    /// limited.
    pub fn host(tag: &str) -> Result<Cgroups, CgroupError> {
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let cgroups = Cgroups::detect(Path::new(CGROUP_ROOT), &own, tag)?;
        cgroups.setup()?;
        Ok(cgroups)
    }

    /// Makes the backend's base directories (and on v2 enables the controllers down to them),
    /// which proves the hierarchy writable.
    pub fn setup(&self) -> Result<(), CgroupError> {
        let unavailable = |path: &Path, e: io::Error| CgroupError::Unavailable {
            root: CGROUP_ROOT.into(),
            reason: format!("{}: {e}", path.display()),
        };
        match &self.layout {
            Layout::V1 { cpu, memory, pids } => {
                for base in [cpu, memory, pids] {
                    std::fs::create_dir_all(base).map_err(|e| unavailable(base, e))?;
                }
            }
            Layout::V2 { root, base } => {
                // The root, `kumo-vm` and `kumo-vm/<tag>` pass the controllers on.
                let kumo = base.parent().unwrap_or(root.as_path());
                for dir in [root.as_path(), kumo, base.as_path()] {
                    std::fs::create_dir_all(dir).map_err(|e| unavailable(dir, e))?;
                    let control = dir.join("cgroup.subtree_control");
                    let enabled = std::fs::read_to_string(&control).unwrap_or_default();
                    let missing: Vec<String> = CONTROLLERS
                        .into_iter()
                        .filter(|c| !enabled.split_whitespace().any(|e| e == *c))
                        .map(|c| format!("+{c}"))
                        .collect();
                    if !missing.is_empty() {
                        std::fs::write(&control, missing.join(" "))
                            .map_err(|e| unavailable(&control, e))?;
                    }
                }
            }
        }
        Ok(())
    }

    /// `1` or `2`.
    pub fn version(&self) -> u8 {
        match self.layout {
            Layout::V1 { .. } => 1,
            Layout::V2 { .. } => 2,
        }
    }

    /// The backend's base directories (`kumo-vm/<tag>`: one per controller on v1).
    fn bases(&self) -> Vec<&Path> {
        match &self.layout {
            Layout::V1 { cpu, memory, pids } => vec![cpu.as_path(), memory, pids],
            Layout::V2 { base, .. } => vec![base.as_path()],
        }
    }

    /// The group directories of VM `vm` (cpu, memory, pids on v1; one on v2).
    pub fn dirs(&self, vm: &str) -> Vec<PathBuf> {
        self.bases().into_iter().map(|b| b.join(vm)).collect()
    }

    /// The files a pid is written to to put a process in `vm`'s group (all of its threads).
    pub fn procs_files(&self, vm: &str) -> Vec<PathBuf> {
        self.dirs(vm)
            .into_iter()
            .map(|d| d.join("cgroup.procs"))
            .collect()
    }

    /// The limit files of `vm`'s group and what goes in them, in the order they are written
    /// (on v1 the memory limit before memory+swap, which may not be below it). `optional`:
    /// written only where the file exists (swap accounting is not always on).
    fn limit_files(&self, vm: &str, limits: &Limits) -> Vec<(PathBuf, String, bool)> {
        match &self.layout {
            Layout::V1 { cpu, memory, pids } => {
                let (cpu, memory, pids) = (cpu.join(vm), memory.join(vm), pids.join(vm));
                vec![
                    (
                        cpu.join("cpu.cfs_period_us"),
                        limits.cpu_period_us.to_string(),
                        false,
                    ),
                    (
                        cpu.join("cpu.cfs_quota_us"),
                        limits.cpu_quota_us.to_string(),
                        false,
                    ),
                    (
                        memory.join("memory.limit_in_bytes"),
                        limits.memory_bytes.to_string(),
                        false,
                    ),
                    (
                        memory.join("memory.memsw.limit_in_bytes"),
                        limits.memory_bytes.to_string(),
                        true,
                    ),
                    (pids.join("pids.max"), limits.pids.to_string(), false),
                ]
            }
            Layout::V2 { base, .. } => {
                let dir = base.join(vm);
                vec![
                    (
                        dir.join("cpu.max"),
                        format!("{} {}", limits.cpu_quota_us, limits.cpu_period_us),
                        false,
                    ),
                    (
                        dir.join("memory.max"),
                        limits.memory_bytes.to_string(),
                        false,
                    ),
                    (dir.join("memory.swap.max"), "0".into(), true),
                    (dir.join("pids.max"), limits.pids.to_string(), false),
                ]
            }
        }
    }

    /// Makes `vm`'s group afresh with `limits` (an old one, empty since its QEMU is not
    /// running, is removed first). QEMU is put in it by [`crate::instance::Launch`].
    pub async fn create(&self, vm: &str, limits: &Limits) -> Result<(), CgroupError> {
        self.remove(vm).await?;
        self.write(vm, limits)?;
        tracing::debug!(vm, ?limits, version = self.version(), "VM cgroup made");
        Ok(())
    }

    /// Makes `vm`'s group if it is missing and writes `limits` into it.
    fn write(&self, vm: &str, limits: &Limits) -> Result<(), CgroupError> {
        for dir in self.dirs(vm) {
            std::fs::create_dir_all(&dir).map_err(|e| CgroupError::io(&dir, e))?;
        }
        for (file, value, optional) in self.limit_files(vm, limits) {
            if optional && !file.exists() {
                continue;
            }
            std::fs::write(&file, &value).map_err(|e| CgroupError::io(&file, e))?;
        }
        Ok(())
    }

    /// Puts the running QEMU `pid` in `vm`'s group with `limits`, made if missing (a VM
    /// started before VMs had groups), the limits written again (a lease whose CPU changed
    /// without anything that relaunches the VM).
    pub fn adopt(&self, vm: &str, limits: &Limits, pid: u32) -> Result<(), CgroupError> {
        self.write(vm, limits)?;
        if !self.contains(vm, pid) {
            for file in self.procs_files(vm) {
                std::fs::write(&file, pid.to_string()).map_err(|e| CgroupError::io(&file, e))?;
            }
            tracing::info!(vm, pid, "running QEMU moved into its cgroup");
        }
        Ok(())
    }

    /// Whether process `pid` is in every directory of `vm`'s group.
    pub fn contains(&self, vm: &str, pid: u32) -> bool {
        self.procs_files(vm).iter().all(|file| {
            std::fs::read_to_string(file)
                .is_ok_and(|procs| procs.lines().any(|l| l.trim() == pid.to_string()))
        })
    }

    /// The limits `vm`'s group has.
    pub fn limits(&self, vm: &str) -> Result<Limits, CgroupError> {
        let read = |path: PathBuf| -> Result<String, CgroupError> {
            std::fs::read_to_string(&path)
                .map(|s| s.trim().to_string())
                .map_err(|e| CgroupError::io(&path, e))
        };
        let files = self.limit_files(vm, &Limits::for_vm(0, 0, 0, Accel::Kvm));
        let value = |i: usize| read(files[i].0.clone());
        Ok(match &self.layout {
            Layout::V1 { .. } => Limits {
                cpu_period_us: parse_limit(&value(0)?),
                cpu_quota_us: parse_limit(&value(1)?),
                memory_bytes: parse_limit(&value(2)?),
                pids: parse_limit(&value(4)?),
            },
            Layout::V2 { .. } => {
                let cpu = value(0)?;
                let mut cpu = cpu.split_whitespace();
                Limits {
                    cpu_quota_us: parse_limit(cpu.next().unwrap_or("max")),
                    cpu_period_us: parse_limit(cpu.next().unwrap_or("max")),
                    memory_bytes: parse_limit(&value(1)?),
                    pids: parse_limit(&value(3)?),
                }
            }
        })
    }

    /// Removes `vm`'s group, once its processes are gone (the kernel may take a moment after
    /// QEMU's exit to let go of it). Nothing there is not an error.
    pub async fn remove(&self, vm: &str) -> Result<(), CgroupError> {
        for dir in self.dirs(vm) {
            let mut tries = 0;
            loop {
                match std::fs::remove_dir(&dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(e) if e.raw_os_error() == Some(16) && tries < 50 => {
                        // EBUSY: a process is still leaving.
                        tries += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(e) => return Err(CgroupError::io(&dir, e)),
                }
            }
        }
        Ok(())
    }

    /// Removes the backend's groups that hold no process (their VMs are not running) and
    /// returns their directories; groups of running VMs stay (the kernel refuses to remove
    /// them). At the backend's start only: a group being made for a VM that starts is empty
    /// for a moment too.
    pub fn remove_unused(&self) -> Vec<PathBuf> {
        let mut removed = Vec::new();
        for base in self.bases() {
            let Ok(entries) = std::fs::read_dir(base) else {
                continue;
            };
            for entry in entries.flatten() {
                let dir = entry.path();
                if dir.is_dir() && std::fs::remove_dir(&dir).is_ok() {
                    removed.push(dir);
                }
            }
        }
        removed
    }

    /// Removes every group of the backend and its `kumo-vm/<tag>` directories, waiting a
    /// moment for groups whose processes are leaving; returns the groups removed. Blocking
    /// (plain `std`), so a `Drop` can call it: for scratch backends (tests, the benchmark)
    /// after their QEMUs were killed.
    pub fn remove_all_blocking(&self) -> Vec<PathBuf> {
        let mut removed = Vec::new();
        for base in self.bases() {
            if let Ok(entries) = std::fs::read_dir(base) {
                for entry in entries.flatten() {
                    let dir = entry.path();
                    for _ in 0..20 {
                        if std::fs::remove_dir(&dir).is_ok() {
                            removed.push(dir.clone());
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            }
            let _ = std::fs::remove_dir(base);
        }
        removed
    }
}

/// The groups of the backend whose data directory is `data_dir` on this host, if the host
/// has a hierarchy (for [`Cgroups::remove_all_blocking`] from a scratch backend's `Drop`).
pub fn for_data_dir(data_dir: &Path) -> Option<Cgroups> {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    Cgroups::detect(Path::new(CGROUP_ROOT), &own, &crate::netns::tag(data_dir)).ok()
}

/// A limit as the kernel writes it: a number, `max` or v1's `-1` (no limit: `u64::MAX`).
fn parse_limit(text: &str) -> u64 {
    text.trim().parse::<u64>().unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quota_is_what_the_lease_pays_for() {
        assert_eq!(cpu_quota_us(1000), CPU_PERIOD_US);
        assert_eq!(cpu_quota_us(500), 50_000);
        assert_eq!(cpu_quota_us(2500), 250_000);
        assert_eq!(cpu_quota_us(1), CPU_MIN_QUOTA_US, "never below 1 ms");
        let kvm = Limits::for_vm(500, 1, 512, Accel::Kvm);
        assert_eq!(
            kvm,
            Limits {
                cpu_quota_us: 50_000,
                cpu_period_us: 100_000,
                memory_bytes: (512 + QEMU_OVERHEAD_MIB) * MIB,
                pids: PIDS_BASE + 1,
            }
        );
        let tcg = Limits::for_vm(2000, 2, 384, Accel::Tcg);
        assert_eq!(tcg.cpu_quota_us, 200_000);
        assert_eq!(
            tcg.memory_bytes,
            (384 + QEMU_OVERHEAD_MIB + TCG_TB_MIB) * MIB
        );
        assert_eq!(tcg.pids, PIDS_BASE + 2);
    }

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "").unwrap();
    }

    fn read(path: PathBuf) -> String {
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .trim()
            .to_string()
    }

    #[tokio::test]
    async fn v1_groups_under_the_providers_own_groups() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        for c in ["cpu", "memory", "pids"] {
            touch(&root.join(c).join("cgroup.procs"));
        }
        // The provider is in a memory group of its own; its cpu and pids groups are the roots.
        touch(&root.join("memory/svc/kumo/cgroup.procs"));
        let own = "12:pids:/\n4:memory:/svc/kumo\n2:cpu,cpuacct:/\n0::/\n";
        let cgroups = Cgroups::detect(root, own, "0a1b2c3d").unwrap();
        assert_eq!(cgroups.version(), 1);
        cgroups.setup().unwrap();
        let vm = "kumo-00ff-box-0";
        assert_eq!(
            cgroups.dirs(vm),
            vec![
                root.join("cpu/kumo-vm/0a1b2c3d").join(vm),
                root.join("memory/svc/kumo/kumo-vm/0a1b2c3d").join(vm),
                root.join("pids/kumo-vm/0a1b2c3d").join(vm),
            ]
        );
        let limits = Limits::for_vm(500, 1, 512, Accel::Kvm);
        cgroups.create(vm, &limits).await.unwrap();
        let [cpu, memory, pids] = <[PathBuf; 3]>::try_from(cgroups.dirs(vm)).unwrap();
        assert_eq!(read(cpu.join("cpu.cfs_period_us")), "100000");
        assert_eq!(read(cpu.join("cpu.cfs_quota_us")), "50000");
        assert_eq!(
            read(memory.join("memory.limit_in_bytes")),
            ((512 + QEMU_OVERHEAD_MIB) * MIB).to_string()
        );
        assert_eq!(read(pids.join("pids.max")), (PIDS_BASE + 1).to_string());
        assert_eq!(cgroups.limits(vm).unwrap(), limits);
        assert_eq!(
            cgroups.procs_files(vm),
            vec![
                cpu.join("cgroup.procs"),
                memory.join("cgroup.procs"),
                pids.join("cgroup.procs")
            ]
        );
        // Swap accounting on: memory+swap is limited too (only where the kernel has it).
        let memsw = memory.join("memory.memsw.limit_in_bytes");
        assert!(!memsw.exists());
        touch(&memsw);
        cgroups.write(vm, &limits).unwrap();
        assert_eq!(read(memsw), ((512 + QEMU_OVERHEAD_MIB) * MIB).to_string());
        for file in cgroups.procs_files(vm) {
            std::fs::write(file, "41\n42\n").unwrap();
        }
        assert!(cgroups.contains(vm, 42));
        assert!(!cgroups.contains(vm, 4));
    }

    #[tokio::test]
    async fn v2_one_group_with_controllers_enabled_above_it() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::write(
            root.join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        std::fs::write(root.join("cgroup.subtree_control"), "cpu memory\n").unwrap();
        let cgroups = Cgroups::detect(root, "0::/system.slice/kumo.service\n", "0a1b2c3d").unwrap();
        assert_eq!(cgroups.version(), 2);
        cgroups.setup().unwrap();
        // Only what is missing is enabled (a real file adds, it does not replace).
        assert_eq!(read(root.join("cgroup.subtree_control")), "+pids");
        assert_eq!(
            read(root.join("kumo-vm/cgroup.subtree_control")),
            "+cpu +memory +pids"
        );
        assert_eq!(
            read(root.join("kumo-vm/0a1b2c3d/cgroup.subtree_control")),
            "+cpu +memory +pids"
        );
        let vm = "kumo-00ff-box-0";
        let dir = root.join("kumo-vm/0a1b2c3d").join(vm);
        assert_eq!(cgroups.dirs(vm), vec![dir.clone()]);
        assert_eq!(cgroups.procs_files(vm), vec![dir.join("cgroup.procs")]);
        let limits = Limits::for_vm(250, 1, 1024, Accel::Kvm);
        cgroups.create(vm, &limits).await.unwrap();
        assert_eq!(read(dir.join("cpu.max")), "25000 100000");
        assert_eq!(
            read(dir.join("memory.max")),
            ((1024 + QEMU_OVERHEAD_MIB) * MIB).to_string()
        );
        assert_eq!(read(dir.join("pids.max")), (PIDS_BASE + 1).to_string());
        assert!(!dir.join("memory.swap.max").exists());
        assert_eq!(cgroups.limits(vm).unwrap(), limits);
        // Groups without processes are removed at start; here a plain directory stands for
        // one the kernel would keep (a file in it makes rmdir fail).
        let busy = root.join("kumo-vm/0a1b2c3d/kumo-00ff-box-1");
        touch(&busy.join("cgroup.procs"));
        for f in std::fs::read_dir(&dir).unwrap() {
            std::fs::remove_file(f.unwrap().path()).unwrap();
        }
        assert_eq!(cgroups.remove_unused(), vec![dir.clone()]);
        assert!(busy.exists());
    }

    #[test]
    fn no_hierarchy_is_a_clear_refusal() {
        let tmp = tempfile::tempdir().unwrap();
        let e = Cgroups::detect(tmp.path(), "", "0a1b2c3d")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no usable cgroup") && e.contains("cpu"), "{e}");
        std::fs::write(tmp.path().join("cgroup.controllers"), "cpu io\n").unwrap();
        let e = Cgroups::detect(tmp.path(), "", "0a1b2c3d")
            .unwrap_err()
            .to_string();
        assert!(e.contains("memory, pids"), "{e}");
    }
}
