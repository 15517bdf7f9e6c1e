//! A VM on its lease's network, against real QEMU, Docker and nftables: from inside the guest
//! (over SSH, through the host-port relay the provider's routes use), the host's loopback
//! (the old user-mode 10.0.2.2 hole), the host's address on the lease bridge, another lease's
//! network and private addresses do not answer; an address the operator allows and an
//! internet-style address do. Teardown leaves no QEMU, network namespace, veth or host port.
//!
//! The "outside world" is a network namespace the test creates (as in kumo-workload's
//! `tests/docker/containment.rs`): a veth pair to the host, a busybox httpd listening on every
//! address the test gives it, and a routing table that only traffic from the lease pool uses.
//! One VM is booted (minutes under TCG) and every check runs against it.
//!
//! Needs root, QEMU, the test guest (`scripts/vm-test-image.sh`), Docker, `ip`, `nsenter`,
//! `busybox` and `nft`; skipped with a notice without them unless `KUMO_REQUIRE_QEMU=1` or
//! `KUMO_REQUIRE_DOCKER=1`. Run alone with progress:
//! `cargo test -p kumo-vm --test containment -- --nocapture`.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kumo_sdl::manifest::{ManifestGroup, Proto};
use kumo_types::{Address, LeaseId};
use kumo_vm::bench::SshTarget;
use kumo_vm::netns::VmNet;
use kumo_vm::{AccelChoice, VmBackend, VmConfig};
use kumo_workload::network::AddressPool;
use kumo_workload::{Backend, DeployOptions, DockerBackend, DockerConfig, HostPort};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

#[path = "../../../tests/skip.rs"]
mod skip;

mod support;
use support::{free_port, is_listening, keypair, process_runs};

/// What the namespace's httpd serves.
const OUTSIDE_PAGE: &str = "kumo outside listener";
/// What the host's listener writes.
const HOST_GREETING: &str = "kumo host listener";

fn required() -> bool {
    ["KUMO_REQUIRE_QEMU", "KUMO_REQUIRE_DOCKER"]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|v| v == "1"))
}

fn skip(why: &str) {
    assert!(!required(), "required but {why}");
    skip::report("the VM containment test", why);
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn random() -> [u8; 8] {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let d = Sha256::digest(format!("{nanos}-{}", std::process::id()).as_bytes());
    d[..8].try_into().unwrap()
}

fn lease(n: u8) -> LeaseId {
    let r = random();
    LeaseId {
        owner: Address([7; 20]),
        dseq: u64::from_le_bytes(r) >> 1,
        gseq: 1,
        oseq: u32::from(n),
        provider: Address([9; 20]),
    }
}

/// A busybox httpd serving [`OUTSIDE_PAGE`] on every address of the namespace `ns`.
fn httpd(ns: &str, port: u16, dir: &Path) -> Result<Child, String> {
    Command::new("nsenter")
        .arg(format!("--net=/run/netns/{ns}"))
        .args(["busybox", "httpd", "-f", "-p"])
        .arg(format!("0.0.0.0:{port}"))
        .arg("-h")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start busybox httpd: {e}"))
}

/// Everything outside the provider's host: the internet, an allowed range, private networks.
struct Outside {
    ns: String,
    veth: String,
    table: String,
    priority: String,
    from: String,
    httpd: Vec<Child>,
    dir: PathBuf,
    internet: Ipv4Addr,
    allowed: Ipv4Addr,
    private10: Ipv4Addr,
    private192: Ipv4Addr,
    port: u16,
}

impl Outside {
    fn new(lease_pool: &str) -> Result<Outside, String> {
        let b = random();
        let tag = hex::encode(&b[..3]);
        let r = 60 + b[0] % 40;
        let s = b[1] & 0xfe;
        let link = u32::from(Ipv4Addr::new(198, 18, b[2], b[3] & 0xfc));
        let mut o = Outside {
            ns: format!("kumo-t{tag}"),
            veth: format!("kt{tag}h"),
            table: (20_000 + (u32::from(b[4]) << 8 | u32::from(b[5])) % 10_000).to_string(),
            priority: (1000 + u32::from(b[6]) % 1000).to_string(),
            from: lease_pool.to_string(),
            httpd: Vec::new(),
            dir: std::env::temp_dir().join(format!("kumo-vm-outside-{tag}")),
            internet: Ipv4Addr::from(link + 2),
            allowed: Ipv4Addr::new(10, r, s, 7),
            private10: Ipv4Addr::new(10, r, s + 1, 7),
            private192: Ipv4Addr::new(192, 168, r, 7),
            port: 18_000 + u16::from(b[7]) % 1000,
        };
        let host_ip = Ipv4Addr::from(link + 1);
        let peer = format!("kt{tag}n");
        let net = format!("--net=/run/netns/{}", o.ns);
        let inside = |args: &[&str]| {
            let mut all = vec![net.as_str()];
            all.extend_from_slice(args);
            run("nsenter", &all)
        };
        run("ip", &["netns", "add", &o.ns])?;
        run(
            "ip",
            &[
                "link", "add", &o.veth, "type", "veth", "peer", "name", &peer,
            ],
        )?;
        run("ip", &["link", "set", &peer, "netns", &o.ns])?;
        run(
            "ip",
            &["addr", "add", &format!("{host_ip}/30"), "dev", &o.veth],
        )?;
        run("ip", &["link", "set", &o.veth, "up"])?;
        inside(&["ip", "link", "set", "lo", "up"])?;
        inside(&["ip", "link", "set", &peer, "up"])?;
        inside(&[
            "ip",
            "addr",
            "add",
            &format!("{}/30", o.internet),
            "dev",
            &peer,
        ])?;
        for addr in [o.allowed, o.private10, o.private192] {
            inside(&["ip", "addr", "add", &format!("{addr}/32"), "dev", &peer])?;
            run(
                "ip",
                &[
                    "route",
                    "add",
                    &format!("{addr}/32"),
                    "via",
                    &o.internet.to_string(),
                    "dev",
                    &o.veth,
                    "table",
                    &o.table,
                ],
            )?;
        }
        run(
            "ip",
            &[
                "rule",
                "add",
                "from",
                &o.from,
                "lookup",
                &o.table,
                "priority",
                &o.priority,
            ],
        )?;
        std::fs::create_dir_all(&o.dir).map_err(|e| e.to_string())?;
        std::fs::write(o.dir.join("index.html"), OUTSIDE_PAGE).map_err(|e| e.to_string())?;
        o.httpd.push(httpd(&o.ns, o.port, &o.dir)?);
        Ok(o)
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        for mut h in self.httpd.drain(..) {
            let _ = h.kill();
            let _ = h.wait();
        }
        let _ = run(
            "ip",
            &[
                "rule",
                "del",
                "from",
                &self.from,
                "lookup",
                &self.table,
                "priority",
                &self.priority,
            ],
        );
        let _ = run("ip", &["route", "flush", "table", &self.table]);
        let _ = run("ip", &["link", "del", &self.veth]);
        let _ = run("ip", &["netns", "del", &self.ns]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Stops what the test started even when it fails: QEMUs under the data directory, the
/// backend's network namespaces, the test instance's Docker networks and firewall table.
struct Cleanup {
    data: PathBuf,
    netns_prefix: String,
    instance: String,
    table: String,
    others: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let killed = kumo_vm::instance::kill_qemus_under(&self.data);
        if !killed.is_empty() {
            eprintln!("[vm] killed QEMU {killed:?}, left running by the test");
        }
        let gone = kumo_vm::netns::delete_all_blocking(&self.netns_prefix);
        if !gone.is_empty() {
            eprintln!("[vm] deleted network namespaces {gone:?}, left by the test");
        }
        if let Some(cgroups) = kumo_vm::cgroup::for_data_dir(&self.data) {
            let gone = cgroups.remove_all_blocking();
            if !gone.is_empty() {
                eprintln!("[vm] removed cgroups {gone:?}, left by the test");
            }
        }
        for ns in &self.others {
            let _ = run("ip", &["netns", "del", ns]);
        }
        if let Ok(out) = Command::new("docker")
            .args([
                "network",
                "ls",
                "-q",
                "--filter",
                &format!("label=kumo.instance={}", self.instance),
            ])
            .output()
        {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = run("docker", &["network", "rm", id]);
            }
        }
        let _ = run("nft", &["delete", "table", "inet", &self.table]);
    }
}

fn test_image() -> Option<PathBuf> {
    support::test_image().map_err(|why| skip(&why)).ok()
}

/// The first file named `name` under `dir`.
fn walk_for(dir: &Path, name: &str) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = walk_for(&path, name) {
                return Some(found);
            }
        } else if path.file_name().is_some_and(|n| n == name) {
            return Some(path);
        }
    }
    None
}

/// Connects from the guest to each target at once (bash's /dev/tcp, 8 s at most); whether each
/// answered with the text it should.
async fn probe(vm: &SshTarget, targets: &[(String, u16, &str)]) -> Vec<bool> {
    let runs = targets.iter().map(|(host, port, expected)| async move {
        let script = format!(
            "timeout 8 bash -c 'exec 3<>/dev/tcp/{host}/{port} && printf \"GET / HTTP/1.0\\r\\n\\r\\n\" >&3 && cat <&3' 2>&1; true"
        );
        let out = vm.run(&script).await.unwrap();
        assert_eq!(out.code, Some(0), "ssh failed: {out:?}");
        out.stdout.contains(expected)
    });
    futures::future::join_all(runs).await
}

fn table(targets: &[(String, u16, &str)], got: &[bool]) -> String {
    targets
        .iter()
        .zip(got)
        .map(|((h, p, _), ok)| format!("{h}:{p} {}", if *ok { "REACHED" } else { "blocked" }))
        .collect::<Vec<_>>()
        .join(", ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_reaches_what_the_lease_firewall_allows_and_not_the_host_or_other_leases() {
    let missing: Vec<&str> = [
        "qemu-system-x86_64",
        "qemu-img",
        "ssh",
        "ssh-keygen",
        "ip",
        "nsenter",
        "busybox",
        "nft",
        "docker",
    ]
    .into_iter()
    .filter(|tool| {
        Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map_or(true, |o| !o.status.success())
    })
    .collect();
    if !missing.is_empty() {
        return skip(&missing.join(", "));
    }
    let Some(image) = test_image() else { return };
    let pool = AddressPool::default().block().to_string();
    let outside = match Outside::new(&pool) {
        Ok(o) => o,
        Err(e) => return skip(&format!("the test namespace (root): {e}")),
    };

    // The Docker side: a provider instance of the test's own, the outside's allowed range
    // in its allowed_egress.
    let instance = format!("test-vm-{}", hex::encode(&random()[..3]));
    let mut docker_config = DockerConfig::new(&instance);
    let firewall = docker_config
        .network
        .firewall
        .as_mut()
        .expect("the firewall is on by default");
    firewall.allowed_egress = vec![format!("{}/32", outside.allowed).parse().unwrap()];
    let docker = match DockerBackend::connect(docker_config).await {
        Ok(d) => d,
        Err(e) => return skip(&format!("Docker: {e}")),
    };
    let table_name = docker.firewall().expect("a firewall").table().to_string();

    let tmp = tempfile::tempdir().unwrap();
    let (key, public) = keypair(tmp.path(), "tenant");
    let data = tmp.path().join("vm");
    let mut config = VmConfig::new(&data);
    config.allow_file_urls = true;
    config.forward_address = "127.0.0.1".parse().unwrap();
    config.accel = AccelChoice::Tcg;
    let backend = VmBackend::new(config)
        .await
        .unwrap()
        .with_networks(Arc::new(docker.clone()))
        .await
        .unwrap();
    let mut cleanup = Cleanup {
        data: data.clone(),
        netns_prefix: backend.netns_prefix().to_string(),
        instance: instance.clone(),
        table: table_name.clone(),
        others: Vec::new(),
    };

    // Another lease's network with a listener on it (standing for its containers or VMs).
    let other = lease(2);
    let other_net = docker.ensure_lease_network(&other).await.unwrap();
    let other_addr = kumo_workload::network::vm_addresses(other_net.subnet)
        .next()
        .unwrap();
    let other_ns = VmNet {
        netns: format!("kumo-tvm{}", hex::encode(&random()[..3])),
        veth: format!("kw{}", hex::encode(&random()[..4])),
        bridge: other_net.bridge.clone(),
        address: other_addr,
        prefix: other_net.subnet.prefix_len(),
        gateway: other_net.gateway,
    };
    cleanup.others.push(other_ns.netns.clone());
    kumo_vm::netns::create(&other_ns).await.unwrap();
    let mut other_httpd = httpd(&other_ns.netns, outside.port, &outside.dir).unwrap();

    // A listener on every host address (its loopback and its end of each lease bridge).
    let host_listener = tokio::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0))
        .await
        .unwrap();
    let host_port = host_listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = host_listener.accept().await {
            let _ = s.write_all(HOST_GREETING.as_bytes()).await;
        }
    });

    // The VM, reached for SSH through its host port as the provider routes it.
    let lease = lease(1);
    let ssh_port = free_port();
    let group = ManifestGroup {
        name: "dc".into(),
        services: vec![support::vm_service(&image, &public, 1)],
    };
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
    let started = Instant::now();
    let status = backend.deploy(&lease, &group, &opts).await.unwrap();
    let net = docker.ensure_lease_network(&lease).await.unwrap();
    let ip = status.services[0].instances[0]
        .ip
        .expect("the VM has an address");
    let IpAddr::V4(ip4) = ip else { panic!("{ip}") };
    assert!(
        net.subnet.contains(&ip4)
            && !kumo_workload::network::container_range(net.subnet).contains(&ip4),
        "{ip} in the VM half of {}",
        net.subnet
    );
    assert!(
        net.split,
        "a new lease network keeps containers in its lower half"
    );
    let info = backend.vm_info(&lease).await.unwrap();
    let vm_net_ns = info[0].pid.expect("QEMU runs");
    assert!(
        std::fs::read_link(format!("/proc/{vm_net_ns}/ns/net")).unwrap()
            != std::fs::read_link("/proc/self/ns/net").unwrap(),
        "QEMU runs in a network namespace of its own"
    );
    // And, started through nsenter, in its cgroup (the limits are checked in tests/qemu.rs).
    let vm_id = status.services[0].instances[0].id.clone();
    assert!(
        backend.cgroups().contains(&vm_id, vm_net_ns),
        "QEMU is in its cgroup {:?}",
        backend.cgroups().dirs(&vm_id)
    );
    // The firewall contains the VM-only lease's bridge.
    let installed = docker
        .firewall()
        .unwrap()
        .installed_bridges()
        .await
        .unwrap()
        .unwrap();
    assert!(
        installed.contains(&net.bridge),
        "{installed:?} lacks {}",
        net.bridge
    );

    let via_host_port = SshTarget {
        host: "127.0.0.1".into(),
        port: ssh_port,
        user: "kumo".into(),
        key: key.clone(),
    };
    let took = via_host_port
        .wait(Duration::from_secs(420))
        .await
        .unwrap_or_else(|e| panic!("SSH through the host port: {e}"));
    eprintln!(
        "[vm] SSH up through host port {ssh_port} after {took:.1?} ({:.1?} since deploy)",
        started.elapsed()
    );
    // And at its lease address, port for port, like a container replica.
    let direct = SshTarget {
        host: ip.to_string(),
        port: 22,
        ..via_host_port.clone()
    };
    let out = direct.run("uname -n").await.unwrap();
    assert_eq!(out.stdout.trim(), "box-0", "{out:?}");

    let gateway = net.gateway.to_string();
    let blocked: Vec<(String, u16, &str)> = vec![
        // The old user-mode hole: slirp's host alias, now the namespace's own loopback.
        ("10.0.2.2".into(), host_port, HOST_GREETING),
        // The host's address on the lease bridge.
        (gateway, host_port, HOST_GREETING),
        // Another lease.
        (other_addr.to_string(), outside.port, OUTSIDE_PAGE),
        // Private addresses behind the host.
        (outside.private10.to_string(), outside.port, OUTSIDE_PAGE),
        (outside.private192.to_string(), outside.port, OUTSIDE_PAGE),
    ];
    let allowed: Vec<(String, u16, &str)> = vec![
        (outside.allowed.to_string(), outside.port, OUTSIDE_PAGE),
        (outside.internet.to_string(), outside.port, OUTSIDE_PAGE),
    ];
    // The other lease's listener answers the host (through its bridge): a blocked probe is the
    // firewall's doing, not a listener that is not there.
    let mut answered = false;
    for _ in 0..20 {
        if let Ok(Ok(mut s)) = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::TcpStream::connect((other_addr, outside.port)),
        )
        .await
        {
            let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n").await;
            let mut page = String::new();
            let _ = tokio::io::AsyncReadExt::read_to_string(&mut s, &mut page).await;
            answered = page.contains(OUTSIDE_PAGE);
            if answered {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        answered,
        "the other lease's listener does not answer the host"
    );
    let got = probe(&via_host_port, &allowed).await;
    eprintln!("[vm] allowed: {}", table(&allowed, &got));
    assert!(got.iter().all(|ok| *ok), "{}", table(&allowed, &got));
    let got = probe(&via_host_port, &blocked).await;
    eprintln!("[vm] blocked: {}", table(&blocked, &got));
    assert!(got.iter().all(|ok| !*ok), "{}", table(&blocked, &got));

    // Teardown leaves no QEMU, namespace, veth or host port; the lease network goes with the
    // Docker side's teardown.
    let state = walk_for(&data.join("vms"), "vm.json").expect("the VM's vm.json");
    let state: serde_json::Value = serde_json::from_slice(&std::fs::read(state).unwrap()).unwrap();
    let veth = state["net"]["veth"].as_str().expect("a veth").to_string();
    assert!(
        Path::new("/sys/class/net").join(&veth).exists(),
        "{veth} is there while the VM runs"
    );
    backend.teardown(&lease).await.unwrap();
    assert!(!process_runs(vm_net_ns), "QEMU still runs");
    assert_eq!(
        kumo_vm::netns::list(backend.netns_prefix()).await,
        Vec::<String>::new(),
        "network namespaces left"
    );
    assert!(
        !Path::new("/sys/class/net").join(&veth).exists(),
        "veth {veth} left"
    );
    assert!(
        !is_listening(ssh_port),
        "host port {ssh_port} still listens"
    );
    assert!(backend.leases().await.unwrap().is_empty());
    docker.teardown(&lease).await.unwrap();

    let _ = other_httpd.kill();
    let _ = other_httpd.wait();
    kumo_vm::netns::delete(&other_ns).await.unwrap();
    docker.teardown(&other).await.unwrap();
    docker.remove_firewall().await.unwrap();
    drop(cleanup);
    drop(outside);
}
