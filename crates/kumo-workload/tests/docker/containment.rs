//! The lease firewall and the address pool against real traffic: from inside a lease, the
//! internet-style address, the operator's allowed range and the lease's own services answer;
//! the host, another lease, and private, link-local and CGNAT addresses do not. Lease networks
//! come from the pool, as many as it holds, and their rules go with them.
//!
//! The "outside world" is a network namespace the test creates: a veth pair to the host, a
//! busybox httpd in the namespace listening on every address the test gives it (10.x,
//! 192.168.x, 100.64.x, 169.254.169.254 and a 198.18.x link address standing for the
//! internet; a second one on TCP port 53 stands for a DNS resolver), and a routing table that
//! only traffic from lease subnets uses, so the host's own routes (its metadata service, its
//! LAN) are never touched. Needs root, `ip`, `nsenter`, `busybox` and `nft`; without them the
//! tests skip like the other Docker tests.

use std::net::{IpAddr, Ipv4Addr};
use std::process::{Child, Command, Stdio};

use ipnet::Ipv4Net;
use kumo_workload::network::{AddressPool, gateway};
use kumo_workload::{Backend, DeployOptions, DockerBackend, WorkloadError};
use rand_core::{OsRng, RngCore};
use tokio::io::AsyncWriteExt;

use crate::support::{
    Engine, engine, engine_with, eventually, group, http_get, idle, random_hex, web,
};

/// What every probe writes before the answer: a line that says whether nc got through.
const GET: &str = "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2";
/// What the namespace's httpd serves.
const OUTSIDE_PAGE: &str = "kumo outside listener";
/// What the host's listener writes.
const HOST_GREETING: &str = "kumo host listener";

/// A network namespace standing for everything outside the provider's host, removed on drop.
struct Outside {
    ns: String,
    veth: String,
    table: u32,
    rule_priority: u32,
    rule_from: Ipv4Net,
    httpd: Vec<Child>,
    dir: std::path::PathBuf,
    /// The host's end of the veth pair (a host address).
    host_ip: Ipv4Addr,
    /// The namespace's end: an address outside every blocked range, like the internet.
    internet: Ipv4Addr,
    /// Where the httpd listens, on every address.
    port: u16,
    /// The namespace's other addresses, reached through the routing table for lease traffic.
    allowed: Ipv4Addr,
    private10: Ipv4Addr,
    private192: Ipv4Addr,
    cgnat: Ipv4Addr,
    metadata: Ipv4Addr,
}

/// Runs a command; its failure, in words.
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

impl Outside {
    /// Builds the namespace; lease traffic from `lease_pool` is routed into it.
    fn new(lease_pool: Ipv4Net) -> Result<Outside, String> {
        let tag = random_hex(3);
        let mut bytes = [0u8; 4];
        OsRng.fill_bytes(&mut bytes);
        let r = 60 + bytes[0] % 40; // 10.60–10.99: outside the default pool and the test pools
        let s = bytes[1] & 0xfe;
        let link = u32::from(Ipv4Addr::new(198, 18, bytes[2], bytes[3] & 0xfc));
        let mut outside = Outside {
            ns: format!("kumo-t{tag}"),
            veth: format!("kt{tag}h"),
            table: 20_000 + (u32::from(bytes[0]) << 8 | u32::from(bytes[1])) % 10_000,
            rule_priority: 1000 + u32::from(bytes[2]) % 1000,
            rule_from: lease_pool,
            httpd: Vec::new(),
            dir: std::env::temp_dir().join(format!("kumo-outside-{tag}")),
            host_ip: Ipv4Addr::from(link + 1),
            internet: Ipv4Addr::from(link + 2),
            port: 18_000 + u16::from(bytes[3]) % 1000,
            allowed: Ipv4Addr::new(10, r, s, 7),
            private10: Ipv4Addr::new(10, r, s + 1, 7),
            private192: Ipv4Addr::new(192, 168, r, 7),
            cgnat: Ipv4Addr::new(100, 64, r, 7),
            metadata: Ipv4Addr::new(169, 254, 169, 254),
        };
        outside.build()?;
        Ok(outside)
    }

    /// The range the test lets leases reach.
    fn allowed_range(&self) -> ipnet::IpNet {
        Ipv4Net::new(self.allowed, 24).unwrap().trunc().into()
    }

    fn build(&mut self) -> Result<(), String> {
        let netns = format!("/var/run/netns/{}", self.ns);
        // nsenter takes the namespace file as `--net=FILE` (a separate argument is not read).
        let net_arg = format!("--net={netns}");
        let peer = format!("{}n", &self.veth[..self.veth.len() - 1]);
        let inside = |args: &[&str]| {
            let mut all = vec![net_arg.as_str()];
            all.extend_from_slice(args);
            run("nsenter", &all)
        };
        run("ip", &["netns", "add", &self.ns])?;
        run(
            "ip",
            &[
                "link", "add", &self.veth, "type", "veth", "peer", "name", &peer,
            ],
        )?;
        run("ip", &["link", "set", &peer, "netns", &netns])?;
        run(
            "ip",
            &[
                "addr",
                "add",
                &format!("{}/30", self.host_ip),
                "dev",
                &self.veth,
            ],
        )?;
        run("ip", &["link", "set", &self.veth, "up"])?;
        inside(&["ip", "link", "set", "lo", "up"])?;
        inside(&["ip", "link", "set", &peer, "up"])?;
        inside(&[
            "ip",
            "addr",
            "add",
            &format!("{}/30", self.internet),
            "dev",
            &peer,
        ])?;
        let table = self.table.to_string();
        for addr in [
            self.allowed,
            self.private10,
            self.private192,
            self.cgnat,
            self.metadata,
        ] {
            inside(&["ip", "addr", "add", &format!("{addr}/32"), "dev", &peer])?;
            run(
                "ip",
                &[
                    "route",
                    "add",
                    &format!("{addr}/32"),
                    "via",
                    &self.internet.to_string(),
                    "dev",
                    &self.veth,
                    "table",
                    &table,
                ],
            )?;
        }
        run(
            "ip",
            &[
                "rule",
                "add",
                "from",
                &self.rule_from.to_string(),
                "lookup",
                &table,
                "priority",
                &self.rule_priority.to_string(),
            ],
        )?;
        std::fs::create_dir_all(&self.dir).map_err(|e| e.to_string())?;
        std::fs::write(self.dir.join("index.html"), OUTSIDE_PAGE).map_err(|e| e.to_string())?;
        // One on the test port, one on the DNS port (TCP 53 stands for a resolver).
        for port in [self.port, 53] {
            let httpd = Command::new("nsenter")
                .args([net_arg.as_str(), "busybox", "httpd", "-f", "-p"])
                .arg(format!("0.0.0.0:{port}"))
                .arg("-h")
                .arg(&self.dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("cannot start busybox httpd in the namespace: {e}"))?;
            self.httpd.push(httpd);
        }
        Ok(())
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        for mut httpd in self.httpd.drain(..) {
            let _ = httpd.kill();
            let _ = httpd.wait();
        }
        let table = self.table.to_string();
        let _ = run(
            "ip",
            &[
                "rule",
                "del",
                "from",
                &self.rule_from.to_string(),
                "lookup",
                &table,
                "priority",
                &self.rule_priority.to_string(),
            ],
        );
        let _ = run("ip", &["route", "flush", "table", &table]);
        // Deleting one end of the pair deletes the other.
        let _ = run("ip", &["link", "del", &self.veth]);
        let _ = run("ip", &["netns", "del", &self.ns]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether the tools the namespace needs are here; prints why not (or fails under
/// `KUMO_REQUIRE_DOCKER=1`, where CI runs as root with them installed).
fn outside_tools() -> bool {
    let missing: Vec<&str> = ["ip", "nsenter", "busybox"]
        .into_iter()
        .filter(|p| {
            Command::new(p)
                .arg("--help")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_err()
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    let why = format!("the containment tests need {}", missing.join(", "));
    if std::env::var("KUMO_REQUIRE_DOCKER").as_deref() == Ok("1") {
        panic!("KUMO_REQUIRE_DOCKER=1 but {why}");
    }
    crate::skip::report(
        "a Docker containment test",
        &format!("{why} (set KUMO_REQUIRE_DOCKER=1 to make this a failure)"),
    );
    false
}

/// A TCP listener on every host address that greets whoever connects; stops with the test.
async fn host_listener() -> u16 {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0))
        .await
        .expect("bind a host listener");
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = stream.write_all(HOST_GREETING.as_bytes()).await;
        }
    });
    port
}

/// Connects from the lease's `client` to each target at once; whether each answered with the
/// text it should.
async fn probe(
    engine: &Engine,
    lease: &kumo_types::LeaseId,
    targets: &[(String, u16, &str)],
) -> Vec<bool> {
    let runs = targets.iter().map(|(host, port, expected)| async move {
        let out = engine
            .sh(lease, "client", &format!("{GET} {host} {port}"))
            .await;
        out.stdout.contains(expected)
    });
    futures::future::join_all(runs).await
}

/// `targets` with the answers as a readable table, for assertion messages.
fn table(targets: &[(String, u16, &str)], got: &[bool]) -> String {
    targets
        .iter()
        .zip(got)
        .map(|((h, p, _), ok)| format!("{h}:{p} {}", if *ok { "REACHED" } else { "blocked" }))
        .collect::<Vec<_>>()
        .join(", ")
}

#[tokio::test]
async fn a_lease_reaches_the_internet_its_own_services_and_what_is_allowed_and_nothing_else() {
    if !outside_tools() {
        return;
    }
    let pool = AddressPool::default().block();
    let outside = match Outside::new(pool) {
        Ok(o) => o,
        Err(e) => {
            assert!(
                std::env::var("KUMO_REQUIRE_DOCKER").as_deref() != Ok("1"),
                "the test namespace cannot be built: {e}"
            );
            crate::skip::report(
                "a Docker containment test",
                &format!("the test namespace cannot be built: {e}"),
            );
            return;
        }
    };
    let allowed = outside.allowed_range();
    let resolver = IpAddr::V4(outside.private10);
    let Some(engine) = engine_with(|c| {
        let firewall = c
            .network
            .firewall
            .as_mut()
            .expect("the firewall is on by default");
        firewall.allowed_egress = vec![allowed];
        // A resolver at a private address: reachable on port 53, and on no other port.
        firewall.dns_servers = vec![resolver];
    })
    .await
    else {
        return;
    };
    let a = engine.lease();
    let b = engine.lease();
    let opts = DeployOptions::default();
    let status_a = engine
        .backend
        .deploy(&a, &group(vec![web("web"), idle("client")]), &opts)
        .await
        .expect("deploy a");
    let status_b = engine
        .backend
        .deploy(&b, &group(vec![web("web")]), &opts)
        .await
        .expect("deploy b");
    let ip_of = |s: &kumo_workload::DeploymentStatus| s.service("web").unwrap().instances[0].ip;
    let (Some(IpAddr::V4(web_a)), Some(IpAddr::V4(web_b))) = (ip_of(&status_a), ip_of(&status_b))
    else {
        panic!("both webs have IPv4 addresses: {status_a:?} {status_b:?}");
    };
    let prefix = AddressPool::default().subnet_prefix();
    let gateway_a = gateway(Ipv4Net::new(web_a, prefix).unwrap().trunc());
    let gateway_b = gateway(Ipv4Net::new(web_b, prefix).unwrap().trunc());
    assert!(
        pool.contains(&web_a) && pool.contains(&web_b),
        "{web_a} {web_b}"
    );
    let host_port = host_listener().await;

    // The host reaches a lease's service (what the ingress proxy and port forwarder do), and
    // the outside world's listener answers the host.
    let page = eventually(10, "web A to answer the host", || async {
        http_get(IpAddr::V4(web_a), 80).await.ok()
    })
    .await;
    assert!(page.contains("kumo test page"), "{page}");
    let page = eventually(10, "the outside listener to answer the host", || async {
        http_get(IpAddr::V4(outside.internet), outside.port)
            .await
            .ok()
    })
    .await;
    assert!(page.contains(OUTSIDE_PAGE), "{page}");

    let o = outside.port;
    let must_answer: Vec<(String, u16, &str)> = vec![
        ("web".into(), 80, "kumo test page"),
        (web_a.to_string(), 80, "kumo test page"),
        (outside.internet.to_string(), o, OUTSIDE_PAGE),
        (outside.allowed.to_string(), o, OUTSIDE_PAGE),
        (outside.private10.to_string(), 53, OUTSIDE_PAGE),
    ];
    // What the firewall alone stops (Docker lets each of these through), and another lease,
    // which it stops too (as does Docker's own isolation).
    let firewalled: Vec<(String, u16, &str)> = vec![
        (gateway_a.to_string(), host_port, HOST_GREETING),
        (gateway_b.to_string(), host_port, HOST_GREETING),
        (outside.host_ip.to_string(), host_port, HOST_GREETING),
        (outside.private10.to_string(), o, OUTSIDE_PAGE),
        (outside.private192.to_string(), o, OUTSIDE_PAGE),
        (outside.cgnat.to_string(), o, OUTSIDE_PAGE),
        (outside.metadata.to_string(), o, OUTSIDE_PAGE),
    ];
    let other_lease: Vec<(String, u16, &str)> = vec![(web_b.to_string(), 80, "kumo test page")];

    // The services start in the background: give them a moment, then say what did not answer.
    let mut got = Vec::new();
    for _ in 0..15 {
        got = probe(&engine, &a, &must_answer).await;
        if got.iter().all(|&ok| ok) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert!(
        got.iter().all(|&ok| ok),
        "lease A must reach these: {}",
        table(&must_answer, &got)
    );
    let got = probe(&engine, &a, &firewalled).await;
    assert!(
        got.iter().all(|&ok| !ok),
        "lease A reached what it must not: {}",
        table(&firewalled, &got)
    );
    let got = probe(&engine, &a, &other_lease).await;
    assert!(!got[0], "lease A reached lease B's web at {web_b}");

    // Without the firewall table every one of those answers: the probes above fail because of
    // the rules, not because a listener or a route is missing.
    engine.backend.remove_firewall().await.expect("remove");
    let got = probe(&engine, &a, &firewalled).await;
    assert!(
        got.iter().all(|&ok| ok),
        "without the firewall these should all answer: {}",
        table(&firewalled, &got)
    );

    // A restarted provider (a new backend on the same instance) installs the rules again for
    // the leases that run.
    let restarted = DockerBackend::connect(engine.config().clone())
        .await
        .expect("reconnect");
    assert!(
        restarted
            .firewall()
            .expect("firewall on")
            .installed_bridges()
            .await
            .unwrap()
            .is_some_and(|b| b.len() == 2),
        "both lease bridges are contained again"
    );
    let got = probe(&engine, &a, &firewalled).await;
    assert!(
        got.iter().all(|&ok| !ok),
        "after the restart lease A reached what it must not: {}",
        table(&firewalled, &got)
    );
    let got = probe(&engine, &a, &must_answer).await;
    assert!(
        got.iter().all(|&ok| ok),
        "after the restart: {}",
        table(&must_answer, &got)
    );
    drop(outside);
}

/// The interface names the kernel has.
fn interfaces() -> Vec<String> {
    std::fs::read_dir("/sys/class/net")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn tearing_a_lease_down_removes_its_bridge_and_its_rules() {
    let Some(engine) = engine().await else { return };
    let firewall = engine
        .backend
        .firewall()
        .expect("the firewall is on")
        .clone();
    let a = engine.lease();
    let b = engine.lease();
    let opts = DeployOptions::default();
    for lease in [&a, &b] {
        engine
            .backend
            .deploy(lease, &group(vec![idle("client")]), &opts)
            .await
            .expect("deploy");
    }
    let bridge_a = engine
        .backend
        .lease_bridge(&a)
        .await
        .unwrap()
        .expect("a bridge");
    let bridge_b = engine
        .backend
        .lease_bridge(&b)
        .await
        .unwrap()
        .expect("b bridge");
    assert!(bridge_a.starts_with(firewall.bridge_prefix()), "{bridge_a}");
    let mut both = vec![bridge_a.clone(), bridge_b.clone()];
    both.sort();
    assert_eq!(firewall.installed_bridges().await.unwrap(), Some(both));
    assert!(interfaces().contains(&bridge_a));

    let report = engine.backend.teardown(&a).await.expect("teardown");
    assert_eq!((report.replicas, report.networks), (1, 1));
    assert_eq!(
        firewall.installed_bridges().await.unwrap(),
        Some(vec![bridge_b.clone()])
    );
    assert!(
        !interfaces().contains(&bridge_a),
        "{bridge_a} is still there"
    );

    // Removing the firewall leaves no table behind.
    engine.backend.teardown(&b).await.expect("teardown b");
    assert_eq!(firewall.installed_bridges().await.unwrap(), Some(vec![]));
    engine.backend.remove_firewall().await.unwrap();
    assert_eq!(firewall.installed_bridges().await.unwrap(), None);
}

#[tokio::test]
async fn forty_lease_networks_come_from_the_pool_beyond_dockers_thirty() {
    let Some(engine) = engine().await else { return };
    let pool = engine.config().network.pool;
    let leases: Vec<_> = (0..40).map(|_| engine.lease()).collect();
    // Networks only (no services): what the pool and the engine's bridges are tested on.
    for (i, lease) in leases.iter().enumerate() {
        engine
            .backend
            .deploy(lease, &group(vec![]), &DeployOptions::default())
            .await
            .unwrap_or_else(|e| panic!("lease network {}: {e}", i + 1));
    }
    let mut bridges = Vec::new();
    for lease in &leases {
        bridges.push(
            engine
                .backend
                .lease_bridge(lease)
                .await
                .unwrap()
                .expect("bridge"),
        );
    }
    bridges.sort();
    bridges.dedup();
    assert_eq!(bridges.len(), 40);
    let installed = engine
        .backend
        .firewall()
        .unwrap()
        .installed_bridges()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(installed, bridges);

    // A service on the last one runs and answers by name.
    let last = leases[39];
    engine
        .backend
        .deploy(
            &last,
            &group(vec![web("web"), idle("client")]),
            &DeployOptions::default(),
        )
        .await
        .expect("deploy on the 40th network");
    let status = engine.backend.status(&last).await.unwrap();
    let ip = status.service("web").unwrap().instances[0].ip.expect("ip");
    assert!(
        pool.block().contains(&ip_v4(ip)),
        "{ip} is outside the pool"
    );
    let out = eventually(10, "web to answer by name", || async {
        let out = engine.sh(&last, "client", &format!("{GET} web 80")).await;
        out.stdout.contains("kumo test page").then_some(out)
    })
    .await;
    assert_eq!(out.code, 0, "{out:?}");
}

fn ip_v4(ip: IpAddr) -> Ipv4Addr {
    match ip {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(v6) => panic!("{v6} is not IPv4"),
    }
}

#[tokio::test]
async fn an_exhausted_pool_is_refused_with_its_name_and_leaves_nothing() {
    // A pool of two /29 networks that no other test uses.
    let mut b = [0u8; 2];
    OsRng.fill_bytes(&mut b);
    let block = Ipv4Net::new(Ipv4Addr::new(10, 100 + b[0] % 20, b[1], 0), 28).unwrap();
    let Some(engine) = engine_with(|c| {
        c.network.pool = AddressPool::new(block, 29).unwrap();
    })
    .await
    else {
        return;
    };
    let opts = DeployOptions::default();
    for _ in 0..2 {
        let lease = engine.lease();
        engine
            .backend
            .deploy(&lease, &group(vec![]), &opts)
            .await
            .expect("deploy within the pool");
    }
    let third = engine.lease();
    let e = engine
        .backend
        .deploy(&third, &group(vec![idle("client")]), &opts)
        .await
        .unwrap_err();
    assert!(
        matches!(e, WorkloadError::PoolExhausted { .. })
            && e.to_string().contains(&block.to_string()),
        "{e}"
    );
    assert!(matches!(
        engine.backend.status(&third).await,
        Err(WorkloadError::LeaseNotFound { .. })
    ));

    // A group with more containers than a /29 network holds (2: the lower half; VMs get the
    // upper) is refused before anything is created.
    let big = engine.lease();
    let mut client = idle("client");
    client.count = 3;
    let e = engine
        .backend
        .deploy(&big, &group(vec![client]), &opts)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("holds at most 2"), "{e}");
    assert!(matches!(
        engine.backend.status(&big).await,
        Err(WorkloadError::LeaseNotFound { .. })
    ));
}
