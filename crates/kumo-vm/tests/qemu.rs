//! The VM backend against real QEMU (KVM where the probe's test guest runs under it, else TCG)
//! and the Debian test guest built by `scripts/vm-test-image.sh`, logged into with the real
//! OpenSSH client. No test leaves a QEMU running, even when it fails ([`StopQemus`]).
//!
//! Booting under TCG takes about a minute, so one VM is shared by the checks of
//! [`a_vm_lease_from_deploy_to_teardown`], in the order a tenant would meet them. Skipped with a
//! notice when QEMU (or root, to build the image) is missing, unless `KUMO_REQUIRE_QEMU=1`.
//!
//! Run alone with progress: `cargo test -p kumo-vm --test qemu -- --nocapture`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kumo_sdl::manifest::{ManifestGroup, ManifestService, Proto};
use kumo_types::{Address, LeaseId};
use kumo_vm::bench::SshTarget;
use kumo_vm::{Accel, AccelChoice, VmBackend, VmConfig};
use kumo_workload::{Backend, DeployOptions, HostPort, LogOptions, ReplicaState, WorkloadError};
use sha2::{Digest, Sha256};

#[path = "../../../tests/skip.rs"]
mod skip;

mod support;
use support::{free_port, is_listening, keypair, process_runs};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// Whether the tests can run here; prints why not (or panics when they are required).
fn qemu_available() -> bool {
    let required = std::env::var("KUMO_REQUIRE_QEMU").is_ok_and(|v| v == "1");
    let missing: Vec<&str> = ["qemu-system-x86_64", "qemu-img", "ssh", "ssh-keygen"]
        .into_iter()
        .filter(|tool| {
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .map_or(true, |o| !o.status.success())
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    let why = format!(
        "missing {}: apt-get install qemu-system-x86 qemu-utils openssh-client",
        missing.join(", ")
    );
    assert!(!required, "KUMO_REQUIRE_QEMU=1 but {why}");
    skip::report("the QEMU tests", &why);
    false
}

/// The test image, or `None` with a notice (a failure when QEMU tests are required).
fn test_image() -> Option<PathBuf> {
    let started = Instant::now();
    eprintln!("[vm] building (or finding) the test image with scripts/vm-test-image.sh");
    match support::test_image() {
        Ok(path) => {
            eprintln!("[vm] image {} ({:.0?})", path.display(), started.elapsed());
            Some(path)
        }
        Err(why) => {
            let required = std::env::var("KUMO_REQUIRE_QEMU").is_ok_and(|v| v == "1");
            assert!(!required, "KUMO_REQUIRE_QEMU=1 but {why}");
            skip::report("the QEMU tests", &why);
            None
        }
    }
}

fn sha256_file(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

fn lease() -> LeaseId {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    LeaseId {
        owner: Address([7; 20]),
        dseq: (nanos as u64) >> 1,
        gseq: 1,
        oseq: 1,
        provider: Address([9; 20]),
    }
}

/// The VM service of `examples/vm-ssh.yaml`, with 2 CPUs.
fn vm_service(image: &Path, key: &str) -> ManifestService {
    let service = support::vm_service(image, key, 2);
    assert_eq!(service.resources.memory.bytes, 384 * MIB);
    service
}

fn group(service: ManifestService) -> ManifestGroup {
    ManifestGroup {
        name: "dc".into(),
        services: vec![service],
    }
}

fn config(data: &Path) -> VmConfig {
    let mut config = VmConfig::new(data);
    config.allow_file_urls = true;
    config.forward_address = "127.0.0.1".parse().unwrap();
    config.kvm_probe_timeout = Duration::from_secs(5);
    // KUMO_VM_ACCEL (auto, kvm or tcg) overrides the probe, e.g. kvm to insist on it; unset,
    // the probe decides, as a provider's does. Parsed as the provider's config parses
    // `vm.accel`.
    if let Ok(accel) = std::env::var("KUMO_VM_ACCEL") {
        config.accel = serde_json::from_value(serde_json::Value::String(accel.clone()))
            .unwrap_or_else(|_| panic!("KUMO_VM_ACCEL={accel}: expected auto, kvm or tcg"));
    }
    config.powerdown_timeout = Duration::from_secs(90);
    config
}

async fn ssh_ok(target: &SshTarget, command: &str) -> String {
    let out = target.run(command).await.unwrap();
    assert_eq!(out.code, Some(0), "ssh {command}: {out:?}");
    out.stdout.trim().to_string()
}

async fn wait_ssh(target: &SshTarget, what: &str) -> Duration {
    eprintln!("[vm] waiting for SSH ({what}) on port {}", target.port);
    let took = target
        .wait(Duration::from_secs(300))
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    eprintln!("[vm] SSH up after {took:.1?} ({what})");
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_lease_from_deploy_to_teardown() {
    if !qemu_available() {
        return;
    }
    let Some(image) = test_image() else { return };
    let sha = sha256_file(&image);
    let tmp = tempfile::tempdir().unwrap();
    let (key, public) = keypair(tmp.path(), "tenant");
    let (wrong_key, _) = keypair(tmp.path(), "stranger");
    let data = tmp.path().join("vm");
    let _stop = StopQemus(data.clone());
    let ssh_port = free_port();

    let backend = VmBackend::new(config(&data)).await.unwrap();
    let probe = backend.accel().clone();
    eprintln!("[vm] accel {} ({:?})", probe.accel, probe.warning);
    if probe.accel == Accel::Tcg {
        assert!(
            probe.warning.as_deref().is_some_and(|w| w.contains("TCG")),
            "{probe:?}"
        );
    }

    let lease = lease();
    let service = vm_service(&image, &public);
    let group = group(service);
    let opts = DeployOptions {
        host_ports: vec![HostPort {
            service: "box".into(),
            replica: 0,
            port: 22,
            proto: Proto::Tcp,
            host_port: ssh_port,
        }],
        ..Default::default()
    };

    // Deploy, then log in with the tenant's key.
    let started = Instant::now();
    let status = backend.deploy(&lease, &group, &opts).await.unwrap();
    assert_eq!(status.services.len(), 1);
    assert_eq!(status.services[0].instances[0].state, ReplicaState::Running);
    let target = SshTarget {
        host: "127.0.0.1".into(),
        port: ssh_port,
        user: "kumo".into(),
        key: key.clone(),
    };
    wait_ssh(&target, "first boot").await;
    let bench = kumo_vm::bench::VmBench {
        lease_to_ssh_seconds: (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        accel: probe.accel,
        accel_reason: probe.warning.clone(),
    };
    eprintln!("[vm] bench {}", serde_json::to_string(&bench).unwrap());
    let uname = ssh_ok(&target, "uname -a").await;
    assert!(uname.starts_with("Linux box-0 "), "{uname}");

    // A key that is not in the manifest is refused.
    let stranger = SshTarget {
        key: wrong_key.clone(),
        ..target.clone()
    };
    let refused = stranger.run("true").await.unwrap();
    assert_eq!(refused.code, Some(255), "{refused:?}");
    assert!(refused.stderr.contains("Permission denied"), "{refused:?}");

    // The guest has the profile's CPUs and memory.
    assert_eq!(ssh_ok(&target, "nproc").await, "2");
    let mem_kib: u64 = ssh_ok(&target, "awk '/^MemTotal/ {print $2}' /proc/meminfo")
        .await
        .parse()
        .unwrap();
    let mem = mem_kib * 1024;
    assert!(
        mem <= 384 * MIB && mem > 300 * MIB,
        "MemTotal {mem_kib} kB for a 384 MiB profile"
    );
    let disk: u64 = ssh_ok(&target, "cat /sys/block/vda/size")
        .await
        .parse()
        .unwrap();
    assert_eq!(disk * 512, 3 * GIB, "the disk is the profile's storage");

    // Status, info and logs (the serial console).
    let info = backend.vm_info(&lease).await.unwrap();
    assert_eq!(info[0].ssh_port(), Some(ssh_port));
    assert_eq!(info[0].accel, probe.accel);
    let pid = info[0].pid.expect("QEMU runs");

    // QEMU runs in the VM's cgroup, limited to what the lease pays for: 2 CPUs' time, the
    // guest's 384 MiB plus QEMU's overhead (and the translation cache under TCG), a pids limit
    // of the base plus one per vCPU.
    let vm_id = status.services[0].instances[0].id.clone();
    let cgroups = backend.cgroups().clone();
    let groups = cgroups.dirs(&vm_id);
    assert!(
        cgroups.contains(&vm_id, pid),
        "QEMU {pid} is not in its cgroup {groups:?}: {}",
        std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default()
    );
    let tb = match probe.accel {
        Accel::Tcg => kumo_vm::accel::TCG_TB_MIB,
        Accel::Kvm => 0,
    };
    assert_eq!(
        cgroups.limits(&vm_id).unwrap(),
        kumo_vm::cgroup::Limits {
            cpu_quota_us: 200_000,
            cpu_period_us: 100_000,
            memory_bytes: (384 + kumo_vm::cgroup::QEMU_OVERHEAD_MIB + tb) * MIB,
            pids: kumo_vm::cgroup::PIDS_BASE + 2,
        }
    );
    report_usage(pid, &groups, "after the first boot");
    let mut logs = backend.logs(&lease, &LogOptions::default()).await.unwrap();
    let mut console = Vec::new();
    while let Some(line) = futures::StreamExt::next(&mut logs).await {
        console.push(line.unwrap().line);
    }
    assert!(
        console
            .iter()
            .any(|l| l.contains("kumo-nocloud: user kumo")),
        "the console shows the seed applied: {:?}",
        &console[console.len().saturating_sub(20)..]
    );
    let err = backend
        .exec(
            &lease,
            &kumo_workload::ExecRequest {
                service: "box".into(),
                replica: 0,
                cmd: vec!["true".into()],
                tty: false,
                stdin: false,
                env: vec![],
            },
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("ssh"), "{err}");

    // Deploying the same manifest again changes nothing.
    backend.deploy(&lease, &group, &opts).await.unwrap();
    assert_eq!(backend.vm_info(&lease).await.unwrap()[0].pid, Some(pid));

    // A file written before a restart is there after it.
    let boot_id = ssh_ok(&target, "cat /proc/sys/kernel/random/boot_id").await;
    ssh_ok(&target, "echo still-here > ~/marker && sync").await;
    eprintln!("[vm] restarting");
    let restarted = Instant::now();
    backend.restart(&lease, Some("box")).await.unwrap();
    eprintln!(
        "[vm] restart call returned after {:.1?}",
        restarted.elapsed()
    );
    wait_ssh(&target, "after restart").await;
    eprintln!("[vm] restart to ssh: {:.1?}", restarted.elapsed());
    assert_ne!(
        ssh_ok(&target, "cat /proc/sys/kernel/random/boot_id").await,
        boot_id,
        "the guest rebooted"
    );
    assert_eq!(ssh_ok(&target, "cat ~/marker").await, "still-here");
    let pid = backend.vm_info(&lease).await.unwrap()[0]
        .pid
        .expect("QEMU runs after the restart");
    assert!(
        cgroups.contains(&vm_id, pid),
        "the new QEMU is in the group"
    );
    report_usage(pid, &groups, "after the restart");
    assert!(matches!(
        backend.restart(&lease, Some("nope")).await,
        Err(WorkloadError::UnknownService { .. })
    ));

    // A provider that restarts finds the VM again.
    drop(backend);
    let backend = VmBackend::new(config(&data)).await.unwrap();
    assert_eq!(backend.leases().await.unwrap(), vec![lease]);
    let status = backend.status(&lease).await.unwrap();
    assert_eq!(status.services[0].running, 1);
    assert_eq!(backend.vm_info(&lease).await.unwrap()[0].pid, Some(pid));
    assert!(
        cgroups.contains(&vm_id, pid),
        "a running VM's group outlives the provider"
    );

    // Teardown leaves no QEMU, no disk, no forwarded port and no cgroup.
    let report = backend.teardown(&lease).await.unwrap();
    assert_eq!(report.replicas, 1);
    assert!(!process_runs(pid), "QEMU {pid} still runs");
    let leftovers: Vec<_> = walk(&data.join("vms"));
    assert!(leftovers.is_empty(), "files left: {leftovers:?}");
    assert!(!is_listening(ssh_port), "port {ssh_port} still forwarded");
    for group in &groups {
        assert!(!group.exists(), "cgroup {} is left", group.display());
    }
    assert!(backend.leases().await.unwrap().is_empty());
    // The image stays cached for the next lease.
    assert!(data.join("images").join(format!("sha256-{sha}")).exists());
}

/// Prints what QEMU uses next to its limits (RSS and threads from `/proc`, the group's memory
/// and pids counters), for the overhead and pids limits' documentation.
fn report_usage(pid: u32, groups: &[PathBuf], when: &str) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .map(|l| l[name.len()..].trim().to_string())
            .unwrap_or_default()
    };
    let mut counters = Vec::new();
    for group in groups {
        for file in [
            "memory.usage_in_bytes",
            "memory.max_usage_in_bytes",
            "memory.current",
            "memory.peak",
            "pids.current",
        ] {
            if let Ok(v) = std::fs::read_to_string(group.join(file)) {
                counters.push(format!("{file}={}", v.trim()));
            }
        }
        if let Ok(stat) = std::fs::read_to_string(group.join("memory.stat")) {
            for line in stat.lines().filter(|l| {
                l.starts_with("rss ")
                    || l.starts_with("cache ")
                    || l.starts_with("anon ")
                    || l.starts_with("file ")
            }) {
                counters.push(line.replace(' ', "="));
            }
        }
    }
    eprintln!(
        "[vm] QEMU {pid} {when}: VmRSS {} VmHWM {} Threads {}; cgroup {}",
        field("VmRSS:"),
        field("VmHWM:"),
        field("Threads:"),
        counters.join(" ")
    );
}

/// Kills the QEMUs under its directory when dropped: a failed assertion unwinds past the
/// test's teardown, and a daemonized QEMU would outlive the test (and its deleted files).
/// Declared after the temporary directory, so it runs before that is removed.
struct StopQemus(PathBuf);

impl Drop for StopQemus {
    fn drop(&mut self) {
        let killed = kumo_vm::instance::kill_qemus_under(&self.0);
        if !killed.is_empty() {
            eprintln!("[vm] killed QEMU {killed:?}, left running by the test");
        }
        // The backend's cgroups (a VM's group outlives a test that fails before teardown).
        if let Some(cgroups) = kumo_vm::cgroup::for_data_dir(&self.0) {
            let gone = cgroups.remove_all_blocking();
            if !gone.is_empty() {
                eprintln!("[vm] removed cgroups {gone:?}, left by the test");
            }
        }
    }
}

/// The probe's test guest reaches long mode and exits as it should (shown under TCG, which runs
/// wherever QEMU does), and the probe's answer on this host is KVM, or TCG with the reason.
#[tokio::test]
async fn the_kvm_probe_boots_its_test_guest() {
    if !qemu_available() {
        return;
    }
    let qemu = "qemu-system-x86_64";
    let took = kumo_vm::accel::run_test_guest(qemu, Accel::Tcg, Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("the test guest under TCG: {e}"));
    eprintln!("[vm] the test guest ran under TCG in {took:.1?}");
    let probe = kumo_vm::accel::probe_kvm(qemu, Duration::from_secs(10)).await;
    eprintln!("[vm] KVM probe on this host: {probe:?}");
    match probe.accel {
        Accel::Kvm => assert_eq!(probe.warning, None),
        Accel::Tcg => {
            let warning = probe.warning.unwrap_or_default();
            assert!(
                warning.contains("TCG")
                    && (warning.contains("/dev/kvm") || warning.contains("does not run a guest")),
                "{warning}"
            );
        }
    }
}

/// A `kumo bench vm` killed with SIGKILL leaves its daemonized QEMU running in its scratch
/// directory; the next run stops it and removes the directory, and leaves a running
/// benchmark's alone.
#[tokio::test]
async fn a_killed_benchmarks_qemu_is_stopped_by_the_next_run() {
    if !qemu_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // A pid that has just exited stands for the killed benchmark.
    let mut gone = Command::new("true").spawn().unwrap();
    let dead = gone.id();
    gone.wait().unwrap();
    let abandoned = tmp.path().join(format!("kumo-bench-vm-{dead}-abc"));
    let live = tmp
        .path()
        .join(format!("kumo-bench-vm-{}-def", std::process::id()));
    let _stop = (StopQemus(abandoned.clone()), StopQemus(live.clone()));
    let mut pids = Vec::new();
    for scratch in [&abandoned, &live] {
        let vm = scratch.join("vm/vms/k/box-0");
        std::fs::create_dir_all(&vm).unwrap();
        // A VM as the backend starts one (daemonized, QMP socket in its directory), paused.
        let status = Command::new("qemu-system-x86_64")
            .args(["-machine", "q35,accel=tcg", "-S", "-m", "16", "-nodefaults"])
            .args(["-display", "none", "-daemonize", "-pidfile"])
            .arg(vm.join("qemu.pid"))
            .arg("-qmp")
            .arg(format!(
                "unix:{},server=on,wait=off",
                vm.join("qmp.sock").display()
            ))
            .status()
            .unwrap();
        assert!(status.success());
        let pid: u32 = std::fs::read_to_string(vm.join("qemu.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(process_runs(pid));
        pids.push(pid);
    }
    let stopped = kumo_vm::bench::sweep_abandoned(tmp.path());
    assert_eq!(stopped, vec![pids[0]]);
    for _ in 0..50 {
        if !process_runs(pids[0]) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !process_runs(pids[0]),
        "the abandoned QEMU {} still runs",
        pids[0]
    );
    assert!(!abandoned.exists(), "the abandoned directory is removed");
    assert!(
        process_runs(pids[1]),
        "a running benchmark's QEMU is left alone"
    );
    assert!(live.exists());
}

/// Whether `pid` is a live process (an exited one waiting to be reaped by init is not).
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            out.push(e.path());
            out.extend(walk(&e.path()));
        }
    }
    out
}

/// Checks that need no VM to boot: they run wherever QEMU is installed.
#[tokio::test]
async fn refusals_before_anything_starts() {
    if !qemu_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // Nothing boots, but the backend makes its cgroup directory.
    let _stop = StopQemus(tmp.path().join("vm"));
    let mut config = config(&tmp.path().join("vm"));
    config.accel = AccelChoice::Tcg;
    let backend = VmBackend::new(config).await.unwrap();
    assert_eq!(backend.accel().accel, Accel::Tcg);
    let lease = lease();
    let image = tmp.path().join("disk.raw");
    std::fs::write(&image, vec![0u8; 1 << 20]).unwrap();
    let sha = sha256_file(&image);
    let (_, public) = keypair(tmp.path(), "tenant");
    let service = vm_service(&image, &public);

    // No host port for port 22: refused, and nothing was created.
    let err = backend
        .deploy(&lease, &group(service.clone()), &DeployOptions::default())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("no host port for port 22/TCP"),
        "{err}"
    );
    assert!(backend.leases().await.unwrap().is_empty());

    // A container service belongs on the Docker backend.
    let mut container = service.clone();
    container.vm = None;
    container.image = "nginx".into();
    let err = backend
        .deploy(&lease, &group(container), &DeployOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, WorkloadError::Unsupported { .. }), "{err}");

    // An image whose bytes do not match the manifest's hash is not used.
    let mut wrong = service.clone();
    wrong.vm.as_mut().unwrap().image.sha256 = "ab".repeat(32);
    let opts = DeployOptions {
        host_ports: vec![HostPort {
            service: "box".into(),
            replica: 0,
            port: 22,
            proto: Proto::Tcp,
            host_port: free_port(),
        }],
        ..Default::default()
    };
    let err = backend
        .deploy(&lease, &group(wrong), &opts)
        .await
        .unwrap_err();
    assert!(matches!(err, WorkloadError::ImagePull { .. }), "{err}");
    assert!(err.to_string().contains(&sha), "{err}");

    // Unknown lease.
    assert!(matches!(
        backend.update(&lease, &group(service), &opts).await,
        Err(WorkloadError::LeaseNotFound { .. })
    ));
}
