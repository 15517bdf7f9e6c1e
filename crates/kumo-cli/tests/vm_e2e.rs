//! VMs through the provider daemon (issue 7, provider side): a real single-validator node
//! (`kumo node run`), a real `kumo provider run` with `[vm]` enabled (TCG here) beside a
//! Docker-only one, the Debian test guest of `scripts/vm-test-image.sh` served over HTTP to the
//! provider (a tenant's image URL must be http(s)), and the real OpenSSH client. The tenant signs
//! with `kumo_client::signer` and talks to the gateway with `GatewayClient`.
//!
//! One VM boots for the whole test (about a minute under TCG, up to several on a loaded
//! machine); in order: the order is bid on by the VM provider only; lease and manifest; the status
//! carries the SSH login, a TCG warning, and the provider's `/status` its accelerator; `ssh … uname
//! -a` with the tenant's key, a stranger's key refused; `nproc` and MemTotal match the profile;
//! the console is the lease's log; a `kill -9`ed provider comes back and finds the same QEMU; a
//! file written before a gateway restart is there after it; closing the lease leaves no QEMU
//! process, no disk and no listening port.
//!
//! Skipped with a notice without QEMU, OpenSSH or Docker; `KUMO_REQUIRE_QEMU=1` makes that a
//! failure. Progress: `cargo test -p kumo-cli --test vm_e2e -- --nocapture`.

use std::{
    io::{BufRead, BufReader, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use futures::StreamExt;
use kumo_client::{
    NodeClient,
    signer::Signer,
    types::{BidState, BidsQuery, OrderIdParam},
};
use kumo_gateway::{client::GatewayClient, types::LeaseState};
use kumo_keystore::{Backend as KeyBackend, Keystore};
use kumo_testnet::{NodeProcess, Testnet};
use kumo_types::{Address, Coin, DeploymentId, LeaseCloseReason, Msg, OrderId, SecretKey};
use kumo_vm::bench::SshTarget;
use kumo_workload::LogOptions;

const MIB: u64 = 1 << 20;

fn progress(what: &str) {
    eprintln!("[vm e2e] {what}");
}

fn kumo(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kumo"))
        .args(args)
        .env_remove("KUMO_HOME")
        .env_remove("KUMO_NODE")
        .output()
        .expect("run kumo")
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Whether the test can run here; says why not (or fails when it is required).
fn ready() -> bool {
    let required = std::env::var("KUMO_REQUIRE_QEMU").is_ok_and(|v| v == "1");
    let mut missing: Vec<&str> = ["qemu-system-x86_64", "qemu-img", "ssh", "ssh-keygen"]
        .into_iter()
        .filter(|t| !have(t))
        .collect();
    let docker = Command::new("docker")
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !docker {
        missing.push("a Docker engine");
    }
    if missing.is_empty() {
        return true;
    }
    let why = format!("missing {}", missing.join(", "));
    assert!(!required, "KUMO_REQUIRE_QEMU=1 but {why}");
    eprintln!("SKIPPED: the VM end-to-end test needs {why}");
    false
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The cached test image (`scripts/vm-test-image.sh` builds it once).
fn test_image() -> Option<PathBuf> {
    let out = Command::new("bash")
        .arg(repo_root().join("scripts/vm-test-image.sh"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run bash");
    if !out.status.success() {
        let required = std::env::var("KUMO_REQUIRE_QEMU").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "KUMO_REQUIRE_QEMU=1 but the test image did not build"
        );
        eprintln!("SKIPPED: the test image did not build (it needs root once)");
        return None;
    }
    let stdout = String::from_utf8(out.stdout).unwrap();
    Some(PathBuf::from(stdout.lines().last().expect("a path")))
}

fn sha256_file(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

/// Serves `file` to every GET on an ephemeral port of 127.0.0.1 (the provider's image download).
fn serve_file(file: PathBuf) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let file = file.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let mut f = std::fs::File::open(&file).unwrap();
                let len = f.metadata().unwrap().len();
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
                );
                let _ = std::io::copy(&mut f, &mut conn);
            });
        }
    });
    port
}

fn keypair(dir: &Path, name: &str) -> (PathBuf, String) {
    let key = dir.join(name);
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(status.success());
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    (key, public.trim().to_string())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn is_listening(port: u16) -> bool {
    TcpStream::connect_timeout(
        &format!("127.0.0.1:{port}").parse().unwrap(),
        Duration::from_secs(1),
    )
    .is_ok()
}

/// A `kumo provider run` child, killed on drop.
struct ProviderProcess {
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl ProviderProcess {
    fn start(config: &Path) -> ProviderProcess {
        let mut p = ProviderProcess {
            config: config.to_path_buf(),
            log: config.with_extension("log"),
            child: None,
        };
        p.spawn();
        p
    }

    fn spawn(&mut self) {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let err = out.try_clone().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_kumo"))
            .args(["provider", "run", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start kumo provider run");
        self.child = Some(child);
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ProviderProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

struct Ports {
    gateway: u16,
    ingress: u16,
    range: (u16, u16),
}

fn write_config(dir: &Path, name: &str, testnet: &Testnet, ports: &Ports, vm: bool) -> PathBuf {
    let mut c = kumo_provider::ProviderConfig {
        node: testnet.nodes[0].api.clone(),
        data_dir: dir.join(format!("{name}-data")),
        manifest_timeout: Duration::from_secs(600),
        withdraw_period: Duration::from_secs(30),
        ..Default::default()
    };
    c.key.name = name.into();
    c.key.keyring_dir = dir.join(&testnet.keyring_dir);
    c.key.backend = "test".into();
    c.gateway.listen = format!("127.0.0.1:{}", ports.gateway).parse().unwrap();
    c.gateway.host_uri = format!("https://127.0.0.1:{}", ports.gateway);
    c.attributes = vec![kumo_types::Attribute::new("region", "test")];
    c.pricing.cpu_per_core = "1".parse().unwrap();
    c.pricing.memory_per_gib = "1".parse().unwrap();
    c.pricing.storage_default_per_gib = "1".parse().unwrap();
    c.pricing.endpoint = "0".parse().unwrap();
    c.backend.instance = format!("vme2e-{name}-{}", std::process::id());
    c.ingress.domain = "ingress.test".into();
    c.ingress.http_listen = format!("127.0.0.1:{}", ports.ingress).parse().unwrap();
    c.ingress.public_host = "127.0.0.1".into();
    c.ingress.port_range_start = ports.range.0;
    c.ingress.port_range_end = ports.range.1;
    c.capacity.memory_bytes = 4 << 30;
    c.vm.enabled = vm;
    c.vm.data_dir = dir.join(format!("{name}-vm"));
    c.vm.image_dir = dir.join(format!("{name}-vm-images"));
    // TCG without probing: the probe's answer here is TCG anyway, and KVM where it exists
    // would make this test measure something else than it does on CI.
    c.vm.accel = kumo_vm::AccelChoice::Tcg;
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, c.to_toml()).unwrap();
    path
}

fn register(config: &Path) -> [u8; 32] {
    let out = kumo(&[
        "provider",
        "register",
        "--config",
        config.to_str().unwrap(),
        "-o",
        "json",
    ]);
    assert!(
        out.status.success(),
        "register: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let registered: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut fp = [0u8; 32];
    hex::decode_to_slice(registered["tls_cert_sha256"].as_str().unwrap(), &mut fp).unwrap();
    fp
}

fn key(dir: &Path, testnet: &Testnet, name: &str) -> SecretKey {
    Keystore::open(dir.join(&testnet.keyring_dir), KeyBackend::Test)
        .unwrap()
        .secret_key(name)
        .unwrap()
}

async fn wait_for<F, Fut>(what: &str, secs: u64, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !f().await {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out after {secs} s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn open_bid(
    node: &NodeClient,
    order: OrderId,
    provider: Address,
) -> Option<kumo_types::BidId> {
    node.bids(&BidsQuery {
        order: Some(OrderIdParam(order)),
        provider: Some(provider),
        state: Some(BidState::Open),
    })
    .await
    .unwrap()
    .value
    .into_iter()
    .next()
    .map(|b| b.id)
}

/// The QEMU pid files under a VM data directory (one per VM that exists).
fn qemu_pids(vm_dir: &Path) -> Vec<u32> {
    let mut pids = Vec::new();
    let Ok(leases) = std::fs::read_dir(vm_dir.join("vms")) else {
        return pids;
    };
    for lease in leases.flatten() {
        for vm in std::fs::read_dir(lease.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Ok(text) = std::fs::read_to_string(vm.path().join("qemu.pid")) {
                pids.push(text.trim().parse().unwrap());
            }
        }
    }
    pids
}

/// Files named `disk.qcow2` under `dir`.
fn disks(dir: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == "disk.qcow2") {
                n += 1;
            }
        }
    }
    n
}

fn alive(pid: u32) -> bool {
    // A zombie is gone for our purposes (QEMU is daemonized: its parent is init, which reaps).
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

fn vm_sdl(image_url: &str, sha256: &str, key: &str) -> String {
    format!(
        r#"version: "2.0"
services:
  box:
    runtime: vm
    vm:
      image:
        url: {image_url}
        sha256: {sha256}
      ssh_keys:
        - {key}
      user: researcher
    expose:
      - port: 22
        to:
          - global: true
profiles:
  compute:
    box:
      resources:
        cpu: {{units: 2}}
        memory: {{size: 512Mi}}
        storage: {{size: 3Gi}}
  placement:
    dc:
      attributes:
        region: test
      pricing:
        box: {{denom: ukumo, amount: 1000}}
deployment:
  box:
    dc: {{profile: box, count: 1}}
"#
    )
}

#[test]
fn a_vm_lease_through_the_provider_daemon() {
    if !ready() {
        return;
    }
    let Some(image) = test_image() else {
        return;
    };
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let net_dir = dir.join("net");
    let net_s = net_dir.display().to_string();
    let out = kumo(&[
        "testnet",
        "init",
        "--validators",
        "1",
        "--base-port",
        "0",
        "--block-time",
        "250ms",
        "-o",
        "json",
        "--fund",
        "tenant=100000000000ukumo",
        "--fund",
        "vmprovider=100000000000ukumo",
        "--fund",
        "dockerprovider=100000000000ukumo",
        "--dir",
        &net_s,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let testnet = Testnet::load(&net_dir).unwrap();
    let mut node = NodeProcess::start(
        Path::new(env!("CARGO_BIN_EXE_kumo")),
        &net_dir.join(&testnet.nodes[0].home),
        &testnet.nodes[0].api,
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(node.wait_serving(Duration::from_secs(60)))
        .unwrap();
    progress("node serving");

    let vm_ports = Ports {
        gateway: free_port(),
        ingress: free_port(),
        range: (42100, 42199),
    };
    let docker_ports = Ports {
        gateway: free_port(),
        ingress: free_port(),
        range: (42200, 42299),
    };
    let vm_config = write_config(&net_dir, "vmprovider", &testnet, &vm_ports, true);
    let docker_config = write_config(&net_dir, "dockerprovider", &testnet, &docker_ports, false);
    let fingerprint = register(&vm_config);
    register(&docker_config);
    let mut vm_provider = ProviderProcess::start(&vm_config);
    let docker_provider = ProviderProcess::start(&docker_config);
    let vm_data = net_dir.join("vmprovider-vm");

    let image_port = serve_file(image.clone());
    let image_url = format!("http://127.0.0.1:{image_port}/kumo-test-debian.qcow2");
    let sha256 = sha256_file(&image);
    let (tenant_ssh, tenant_pub) = keypair(dir, "tenant-ssh");
    let (stranger_ssh, _) = keypair(dir, "stranger-ssh");

    rt.block_on(async {
        let node_client = node.client();
        let tenant_key = key(&net_dir, &testnet, "tenant");
        let tenant = Signer::connect(node_client.clone(), tenant_key.clone())
            .await
            .unwrap();
        let vm_addr = Address::from_public_key(&key(&net_dir, &testnet, "vmprovider").public_key());
        let docker_addr =
            Address::from_public_key(&key(&net_dir, &testnet, "dockerprovider").public_key());
        let gw = GatewayClient::new(
            &format!("https://127.0.0.1:{}", vm_ports.gateway),
            fingerprint,
            tenant_key.clone(),
            vm_addr,
        )
        .unwrap();
        wait_for("the VM provider's gateway", 60, || async {
            gw.provider_status().await.is_ok()
        })
        .await;
        // The provider says how it runs VMs.
        let status = gw.provider_status().await.unwrap();
        let vm = status.vm.expect("a VM provider says so in /status");
        assert_eq!(vm.accel, "tcg");
        assert!(vm.warning.is_some(), "TCG comes with a warning");
        // Both are on chain; only the VM provider advertises VMs.
        let rec = node_client.provider(&vm_addr).await.unwrap().value;
        assert!(
            rec.provider
                .fields
                .attributes
                .iter()
                .any(|a| a.key == "capabilities/vm" && a.value == "true")
        );
        let rec = node_client.provider(&docker_addr).await.unwrap().value;
        assert!(
            !rec.provider
                .fields
                .attributes
                .iter()
                .any(|a| a.key == "capabilities/vm")
        );
        // Let the Docker-only provider get going too, so its silence below means something.
        tokio::time::sleep(Duration::from_secs(3)).await;

        // Deployment → bid → lease.
        let sdl = kumo_sdl::parse(&vm_sdl(&image_url, &sha256, &tenant_pub)).expect("valid SDL");
        let dep = DeploymentId {
            owner: tenant.address(),
            dseq: 7,
        };
        tenant
            .submit(vec![Msg::CreateDeployment {
                id: dep,
                groups: sdl.groups().to_vec(),
                hash: sdl.manifest_hash(),
                deposit: Coin::new("ukumo", 50_000_000),
            }])
            .await
            .expect("CreateDeployment");
        let order = dep.group(1).order(1);
        let wait = Instant::now();
        let bid = loop {
            if let Some(b) = open_bid(&node_client, order, vm_addr).await {
                break b;
            }
            assert!(
                wait.elapsed() < Duration::from_secs(60),
                "no bid from the VM provider:\n{}",
                vm_provider.log()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        progress("the VM provider bid");
        assert!(
            open_bid(&node_client, order, docker_addr).await.is_none(),
            "the Docker-only provider must not bid on a VM order"
        );
        wait_for(
            "the Docker-only provider to log its refusal",
            30,
            || async { docker_provider.log().contains("runs no VMs") },
        )
        .await;
        let lease_started = Instant::now();
        let lease = bid;
        tenant
            .submit(vec![Msg::CreateLease { bid: lease }])
            .await
            .expect("CreateLease");
        wait_for("the provider to know the lease", 30, || async {
            gw.lease_status(dep.dseq, 1, 1).await.is_ok()
        })
        .await;
        progress("lease created: sending the manifest (the provider fetches the image)");
        gw.put_manifest(dep.dseq, sdl.manifest())
            .await
            .expect("manifest accepted");
        let status = gw.lease_status(dep.dseq, 1, 1).await.unwrap();
        assert_eq!(status.state, LeaseState::Running, "{status:?}");
        let svc = &status.services[0];
        let ssh = svc.ssh.clone().expect("the status says how to log in");
        assert_eq!(ssh.user, "researcher");
        assert_eq!(ssh.host, "127.0.0.1");
        assert!((42100..=42199).contains(&ssh.port), "{ssh:?}");
        assert_eq!(svc.forwarded_ports.len(), 1, "{svc:?}");
        assert_eq!(svc.forwarded_ports[0].port, 22);
        assert_eq!(svc.forwarded_ports[0].external_port, ssh.port);
        assert!(
            status.warnings.iter().any(|w| w.contains("TCG")),
            "{:?}",
            status.warnings
        );
        let pids = qemu_pids(&vm_data);
        assert_eq!(pids.len(), 1, "one QEMU for the lease");
        let pid = pids[0];
        assert!(alive(pid));

        // Log in as the tenant.
        let target = SshTarget {
            host: ssh.host.clone(),
            port: ssh.port,
            user: ssh.user.clone(),
            key: tenant_ssh.clone(),
        };
        progress(&format!(
            "waiting for SSH on port {} (TCG boot: a minute or more)",
            ssh.port
        ));
        let took = target
            .wait(Duration::from_secs(900))
            .await
            .unwrap_or_else(|e| panic!("{e}\n--- provider log ---\n{}", vm_provider.log()));
        progress(&format!(
            "SSH up {took:.0?} after the manifest, {:.0?} after the lease",
            lease_started.elapsed()
        ));
        let run = |cmd: &'static str| {
            let target = target.clone();
            async move {
                let out = target.run(cmd).await.unwrap();
                assert_eq!(out.code, Some(0), "ssh {cmd}: {out:?}");
                out.stdout.trim().to_string()
            }
        };
        let uname = run("uname -a").await;
        assert!(uname.starts_with("Linux "), "{uname}");
        let stranger = SshTarget {
            key: stranger_ssh.clone(),
            ..target.clone()
        };
        let refused = stranger.run("true").await.unwrap();
        assert_eq!(refused.code, Some(255), "{refused:?}");
        assert!(refused.stderr.contains("Permission denied"), "{refused:?}");

        // The profile's CPUs and memory.
        assert_eq!(run("nproc").await, "2");
        let mem_kib: u64 = run("awk '/^MemTotal/ {print $2}' /proc/meminfo")
            .await
            .parse()
            .unwrap();
        let mem = mem_kib * 1024;
        assert!(
            mem <= 512 * MIB && mem > 400 * MIB,
            "MemTotal {mem_kib} kB for a 512 MiB profile"
        );

        // The serial console is the lease's log.
        let lines: Vec<String> = gw
            .logs(
                dep.dseq,
                1,
                1,
                &LogOptions {
                    service: Some("box".into()),
                    tail: Some(200),
                    follow: false,
                },
            )
            .await
            .unwrap()
            .filter_map(|l| async move { l.ok().map(|l| l.line) })
            .collect()
            .await;
        assert!(
            lines
                .iter()
                .any(|l| l.contains("Linux version") || l.contains("login")),
            "console lines: {lines:?}"
        );

        // A provider killed and started again finds the VM: same QEMU, nothing duplicated.
        vm_provider.kill9();
        vm_provider.spawn();
        wait_for("the restarted provider's gateway", 60, || async {
            gw.lease_status(dep.dseq, 1, 1)
                .await
                .is_ok_and(|s| s.state == LeaseState::Running)
        })
        .await;
        assert_eq!(qemu_pids(&vm_data), [pid], "the same VM, not a second one");
        assert!(alive(pid));
        assert_eq!(run("echo still-here").await, "still-here");
        progress("provider restarted: the VM kept running");

        // A file written before a restart is there after it.
        run("echo kept-across-reboot > ~/marker && sync").await;
        let boot_before = run("cat /proc/sys/kernel/random/boot_id").await;
        let after = gw
            .restart(dep.dseq, 1, 1, Some("box"))
            .await
            .expect("restart");
        assert_eq!(
            after.services[0].ssh,
            Some(ssh.clone()),
            "same login after a restart"
        );
        let took = target
            .wait(Duration::from_secs(900))
            .await
            .unwrap_or_else(|e| panic!("after restart: {e}\n{}", vm_provider.log()));
        progress(&format!("SSH up {took:.0?} after the restart"));
        assert_ne!(
            run("cat /proc/sys/kernel/random/boot_id").await,
            boot_before,
            "the guest rebooted"
        );
        assert_eq!(run("cat ~/marker").await, "kept-across-reboot");
        let new_pids = qemu_pids(&vm_data);
        assert_eq!(new_pids.len(), 1);

        // Closing the lease: no QEMU, no disk, no port.
        tenant
            .submit(vec![Msg::CloseLease {
                id: lease,
                reason: LeaseCloseReason::Owner,
            }])
            .await
            .unwrap();
        wait_for("the VM to be gone", 60, || async {
            !alive(new_pids[0]) && disks(&vm_data) == 0 && !is_listening(ssh.port)
        })
        .await;
        assert!(qemu_pids(&vm_data).is_empty());
        progress(&format!(
            "lease closed, VM gone; whole test {:.0?}",
            started.elapsed()
        ));
    });
    drop(docker_provider);
    drop(node);
}
