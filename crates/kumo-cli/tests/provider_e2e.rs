//! The provider end to end (issue 5's acceptance): a real single-validator node (`kumo node
//! run`, 250 ms blocks), a real `kumo provider run` process, the real Docker engine and the test
//! images of `scripts/test-images.sh`. The tenant signs with `kumo_client::signer` and talks to
//! the gateway with `kumo_gateway::client`.
//!
//! One node and one provider serve every phase (each phase uses its own deployments), in order:
//! lifecycle (bid → lease → manifest → HTTP through the ingress → logs → shell → close → nothing
//! left), isolation and tokens, a tampered manifest, escrow running dry, orders that must get no
//! bid, GPUs (the provider declares 2× h100: it bids on h100 orders and not on a100 ones, two
//! leases get distinct GPUs and a third order no bid, across a `kill -9` and restart), a
//! persistent volume across a container restart and an eviction for writing past the
//! ephemeral storage (the reason in the lease status), `kill -9` of the provider with 3 active
//! leases and a restart, then the price script (honoured; crashing or slow → no bid).
//!
//! Skipped without a Docker engine and the test images, unless `KUMO_REQUIRE_DOCKER=1`.

mod support;

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};
use support::ProviderProcess;

use futures::StreamExt;
use kumo_client::{
    NodeClient,
    signer::Signer,
    types::{BidState, BidsQuery, OrderIdParam},
};
use kumo_gateway::{
    auth::{self, Scope},
    client::{GatewayClient, ShellRequest},
    types::LeaseState,
};
use kumo_keystore::{Backend as KeyBackend, Keystore};
use kumo_testnet::{NodeProcess, Testnet};
use kumo_types::{Address, Coin, DeploymentId, LeaseCloseReason, LeaseId, Msg, OrderId, SecretKey};
use kumo_workload::LogOptions;

#[path = "../../../tests/skip.rs"]
mod skip;

const IMAGE: &str = "kumo-test/busybox:1";
/// The declared GPUs' UUIDs.
const GPU_UUIDS: [&str; 2] = ["GPU-e2e-0", "GPU-e2e-1"];

fn kumo(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kumo"))
        .args(args)
        .env_remove("KUMO_HOME")
        .env_remove("KUMO_NODE")
        .output()
        .expect("run kumo")
}

fn docker_ready() -> bool {
    let ok = Command::new("docker")
        .args(["image", "inspect", IMAGE])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        if std::env::var("KUMO_REQUIRE_DOCKER").as_deref() == Ok("1") {
            panic!(
                "KUMO_REQUIRE_DOCKER=1 but Docker or {IMAGE} is missing: run scripts/test-images.sh"
            );
        }
        skip::report(
            "the provider end-to-end test",
            &format!(
                "no Docker engine or no {IMAGE} (run scripts/test-images.sh; KUMO_REQUIRE_DOCKER=1 makes this a failure)"
            ),
        );
    }
    ok
}

/// A port for a process started later (`kumo_testnet::ports`: one no outgoing connection takes
/// meanwhile).
fn free_port() -> u16 {
    kumo_testnet::ports::free_port().unwrap()
}

/// Counts the engine's objects labelled with this provider instance.
fn docker_objects(instance: &str, extra: &str) -> (usize, usize, usize) {
    let filter = format!("label=kumo.instance={instance}");
    let mut filters = vec!["--filter".to_string(), filter];
    if !extra.is_empty() {
        filters.push("--filter".into());
        filters.push(format!("label={extra}"));
    }
    let count = |args: &[&str]| {
        let mut c = Command::new("docker");
        c.args(args).args(&filters);
        let out = c.output().expect("docker");
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    (
        count(&["ps", "-aq"]),
        count(&["network", "ls", "-q"]),
        count(&["volume", "ls", "-q"]),
    )
}

struct World {
    node: NodeClient,
    tenant: Signer,
    tenant_key: SecretKey,
    tenant_b: Signer,
    tenant_b_key: SecretKey,
    auditor: Signer,
    provider: Address,
    host_uri: String,
    fingerprint: [u8; 32],
    ingress_port: u16,
    instance: String,
    next_dseq: std::sync::atomic::AtomicU64,
}

impl World {
    fn gateway(&self, key: &SecretKey) -> GatewayClient {
        GatewayClient::new(&self.host_uri, self.fingerprint, key.clone(), self.provider).unwrap()
    }

    fn dseq(&self) -> u64 {
        self.next_dseq
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    }

    /// Creates a deployment of `sdl` for `tenant`; returns its id and manifest.
    async fn deploy(
        &self,
        tenant: &Signer,
        sdl: &str,
        deposit: u128,
    ) -> (DeploymentId, kumo_sdl::manifest::Manifest) {
        let sdl = kumo_sdl::parse(sdl).expect("valid SDL");
        let id = DeploymentId {
            owner: tenant.address(),
            dseq: self.dseq(),
        };
        tenant
            .submit(vec![Msg::CreateDeployment {
                id,
                groups: sdl.groups().to_vec(),
                hash: sdl.manifest_hash(),
                deposit: Coin::new("ukumo", deposit),
            }])
            .await
            .expect("CreateDeployment");
        (id, sdl.manifest().clone())
    }

    /// The provider's open bid on `order`, waiting up to `wait`.
    async fn bid(&self, order: OrderId, wait: Duration) -> Option<kumo_client::types::Bid> {
        let start = Instant::now();
        loop {
            let bids = self
                .node
                .bids(&BidsQuery {
                    order: Some(OrderIdParam(order)),
                    provider: Some(self.provider),
                    state: Some(BidState::Open),
                })
                .await
                .unwrap()
                .value;
            if let Some(b) = bids.into_iter().next() {
                return Some(b);
            }
            if start.elapsed() > wait {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Deploys, waits for the bid, accepts it, sends the manifest and waits until it runs.
    async fn lease_running(
        &self,
        tenant: &Signer,
        key: &SecretKey,
        sdl: &str,
        deposit: u128,
    ) -> LeaseId {
        let (dep, manifest) = self.deploy(tenant, sdl, deposit).await;
        let order = dep.group(1).order(1);
        let bid = self
            .bid(order, Duration::from_secs(30))
            .await
            .expect("the provider bids");
        tenant
            .submit(vec![Msg::CreateLease { bid: bid.id }])
            .await
            .expect("CreateLease");
        let gw = self.gateway(key);
        wait_for("the provider to know the lease", 20, || async {
            gw.lease_status(dep.dseq, 1, 1).await.is_ok()
        })
        .await;
        gw.put_manifest(dep.dseq, &manifest)
            .await
            .expect("manifest accepted");
        wait_for("the lease to run", 60, || async {
            gw.lease_status(dep.dseq, 1, 1)
                .await
                .is_ok_and(|s| s.state == LeaseState::Running)
        })
        .await;
        bid.id
    }

    /// GET through the ingress with `host`.
    async fn http(&self, host: &str) -> Option<String> {
        let r = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{}/", self.ingress_port))
            .header("host", host)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        if !r.status().is_success() {
            return None;
        }
        r.text().await.ok()
    }

    async fn host_of(&self, key: &SecretKey, lease: &LeaseId) -> String {
        let s = self
            .gateway(key)
            .lease_status(lease.dseq, lease.gseq, lease.oseq)
            .await
            .unwrap();
        let uri = &s.services[0].uris[0];
        uri.trim_start_matches("http://")
            .split([':', '/'])
            .next()
            .unwrap()
            .to_string()
    }

    async fn height(&self) -> u64 {
        self.node.status().await.unwrap().height
    }
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
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A web service answering on port 80, with a persistent volume at /data.
fn web_sdl(placement: &str, memory: &str, max_price: u64, region: &str) -> String {
    format!(
        r#"version: "2.0"
services:
  web:
    image: {IMAGE}
    command: ["sh", "-c"]
    args: ["echo hello-from-web; exec httpd -f -p 80 -h /www"]
    expose:
      - port: 80
        as: 80
        to:
          - global: true
    params:
      storage:
        data:
          mount: /data
profiles:
  compute:
    web:
      resources:
        cpu:
          units: 0.1
        memory:
          size: {memory}
        storage:
          - size: 32Mi
          - name: data
            size: 32Mi
            attributes:
              persistent: true
              class: beta2
  placement:
    {placement}:
      attributes:
        region: {region}
      pricing:
        web:
          denom: ukumo
          amount: {max_price}
deployment:
  web:
    {placement}:
      profile: web
      count: 1
"#
    )
}

fn write_config(dir: &Path, testnet: &Testnet, w: &WorldPorts, script: Option<&Path>) -> PathBuf {
    let mut c = kumo_provider::ProviderConfig {
        node: testnet.nodes[0].api.clone(),
        data_dir: dir.join("provider-data"),
        manifest_timeout: Duration::from_secs(120),
        withdraw_period: Duration::from_secs(5),
        ..Default::default()
    };
    c.key.name = "provider".into();
    c.key.keyring_dir = dir.join(&testnet.keyring_dir);
    c.key.backend = "test".into();
    c.gateway.listen = format!("127.0.0.1:{}", w.gateway).parse().unwrap();
    c.gateway.host_uri = format!("https://127.0.0.1:{}", w.gateway);
    c.attributes = vec![
        kumo_types::Attribute::new("region", "test"),
        kumo_types::Attribute::new("capabilities/storage/1/class", "beta2"),
        kumo_types::Attribute::new("capabilities/storage/1/persistent", "true"),
    ];
    c.pricing.cpu_per_core = "0".parse().unwrap();
    c.pricing.memory_per_gib = "200000".parse().unwrap();
    c.pricing.storage_default_per_gib = "0".parse().unwrap();
    c.pricing.endpoint = "0".parse().unwrap();
    if let Some(script) = script {
        c.pricing.strategy = "script".into();
        c.pricing.script = vec![script.display().to_string()];
        c.pricing.script_timeout = Duration::from_secs(2);
    }
    c.backend.instance = w.instance.clone();
    // The eviction phase waits for one check.
    c.backend.storage_check_interval = Duration::from_secs(1);
    c.ingress.domain = "ingress.test".into();
    c.ingress.http_listen = format!("127.0.0.1:{}", w.ingress).parse().unwrap();
    c.ingress.public_host = "127.0.0.1".into();
    c.ingress.port_range_start = 41000;
    c.ingress.port_range_end = 41100;
    // 1 GiB of memory offered, whatever the machine has: the capacity case asks for more.
    c.capacity.memory_bytes = 1 << 30;
    // Two GPUs declared by hand (this machine has none): `register` publishes them.
    c.gpu.devices = vec![kumo_gpu::DeclaredGpus {
        model: "h100".into(),
        ram: "80Gi".into(),
        interface: "sxm".into(),
        count: 2,
        vendor: "nvidia".into(),
        uuids: GPU_UUIDS.iter().map(|s| s.to_string()).collect(),
        pci_bus_ids: vec![],
    }];
    c.pricing
        .gpu_per_model
        .insert("h100".into(), "1000".parse().unwrap());
    let path = dir.join("provider.toml");
    std::fs::write(&path, c.to_toml()).unwrap();
    path
}

struct WorldPorts {
    gateway: u16,
    ingress: u16,
    instance: String,
}

fn key(dir: &Path, testnet: &Testnet, name: &str) -> SecretKey {
    Keystore::open(dir.join(&testnet.keyring_dir), KeyBackend::Test)
        .unwrap()
        .secret_key(name)
        .unwrap()
}

#[test]
fn provider_end_to_end() {
    if !docker_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let mut args = vec![
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
        "tenantb=100000000000ukumo",
        "--fund",
        "provider=100000000000ukumo",
        "--fund",
        "auditor=100000000ukumo",
        "--dir",
    ];
    let dir_s = dir.join("net").display().to_string();
    args.push(&dir_s);
    let out = kumo(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let net_dir = dir.join("net");
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

    let ports = WorldPorts {
        gateway: free_port(),
        ingress: free_port(),
        instance: format!("e2e-{}", std::process::id()),
    };
    let config = write_config(&net_dir, &testnet, &ports, None);
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
    assert_eq!(registered["action"], "create_provider");
    let mut provider = ProviderProcess::start(&config);

    rt.block_on(async {
        let node_client = node.client();
        let fingerprint: [u8; 32] = {
            let hexfp = registered["tls_cert_sha256"].as_str().unwrap();
            let mut out = [0u8; 32];
            hex::decode_to_slice(hexfp, &mut out).unwrap();
            out
        };
        let signer = |name: &str| {
            let k = key(&net_dir, &testnet, name);
            let c = node_client.clone();
            async move { (Signer::connect(c, k.clone()).await.unwrap(), k) }
        };
        let (tenant, tenant_key) = signer("tenant").await;
        let (tenant_b, tenant_b_key) = signer("tenantb").await;
        let (auditor, _) = signer("auditor").await;
        let provider_addr =
            Address::from_public_key(&key(&net_dir, &testnet, "provider").public_key());
        let w = World {
            node: node_client.clone(),
            tenant,
            tenant_key,
            tenant_b,
            tenant_b_key,
            auditor,
            provider: provider_addr,
            host_uri: format!("https://127.0.0.1:{}", ports.gateway),
            fingerprint,
            ingress_port: ports.ingress,
            instance: ports.instance.clone(),
            next_dseq: std::sync::atomic::AtomicU64::new(1000),
        };
        wait_for("the provider's gateway", 60, || async {
            w.gateway(&w.tenant_key).provider_status().await.is_ok()
        })
        .await;
        lifecycle(&w).await;
        isolation(&w).await;
        escrow_runs_dry(&w).await;
        no_bid_when_unfit(&w, &provider).await;
        gpus(&w, &mut provider).await;
        let survivors = volume_survives_restart_and_three_leases(&w).await;
        // kill -9 with 3 active leases, restart with the price script.
        provider.kill9();
        let script = write_price_script(&net_dir);
        write_config(&net_dir, &testnet, &ports, Some(&script));
        provider.spawn();
        after_restart(&w, &survivors).await;
        price_script(&w, &provider).await;
        for l in &survivors {
            w.tenant
                .submit(vec![Msg::CloseLease {
                    id: *l,
                    reason: LeaseCloseReason::Owner,
                }])
                .await
                .unwrap();
        }
        wait_for("every object of the instance to go", 20, || async {
            docker_objects(&w.instance, "") == (0, 0, 0)
        })
        .await;
    });
}

async fn lifecycle(w: &World) {
    let lease = w
        .lease_running(
            &w.tenant,
            &w.tenant_key,
            &web_sdl("dc", "32Mi", 100_000, "test"),
            50_000_000,
        )
        .await;
    let gw = w.gateway(&w.tenant_key);
    let host = w.host_of(&w.tenant_key, &lease).await;
    assert!(host.ends_with(".ingress.test"), "{host}");
    wait_for("HTTP through the ingress", 20, || async {
        w.http(&host)
            .await
            .is_some_and(|b| b.contains("kumo test page"))
    })
    .await;
    // Logs hold the service's output.
    let lines: Vec<_> = gw
        .logs(
            lease.dseq,
            1,
            1,
            &LogOptions {
                service: None,
                tail: None,
                follow: false,
            },
        )
        .await
        .unwrap()
        .collect()
        .await;
    assert!(
        lines
            .iter()
            .flatten()
            .any(|l| l.line.contains("hello-from-web")),
        "{lines:?}"
    );
    // A shell round trip with an exit code.
    let out = gw
        .shell(
            lease.dseq,
            1,
            1,
            &ShellRequest::new("web", ["sh", "-c", "echo round-trip; exit 7"]),
        )
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "round-trip");
    assert_eq!(out.code, 7);
    // The tenant closes: every container, network and volume of the lease goes.
    let lease_label = format!("kumo.lease={}", lease_label(&lease));
    assert_ne!(
        docker_objects(&w.instance, &lease_label).0,
        0,
        "label filter finds the lease"
    );
    w.tenant
        .submit(vec![Msg::CloseLease {
            id: lease,
            reason: LeaseCloseReason::Owner,
        }])
        .await
        .unwrap();
    wait_for("the lease's objects to go", 10, || async {
        docker_objects(&w.instance, &lease_label) == (0, 0, 0)
    })
    .await;
    assert!(
        w.http(&host).await.is_none(),
        "the host is no longer routed"
    );
}

/// The `kumo.lease` label value of a lease (as kumo-workload writes it).
fn lease_label(l: &LeaseId) -> String {
    kumo_workload::docker::labels::lease_label(l)
}

async fn isolation(w: &World) {
    let a = w
        .lease_running(
            &w.tenant,
            &w.tenant_key,
            &web_sdl("dc", "32Mi", 100_000, "test"),
            50_000_000,
        )
        .await;
    let b = w
        .lease_running(
            &w.tenant_b,
            &w.tenant_b_key,
            &web_sdl("dc", "32Mi", 100_000, "test"),
            50_000_000,
        )
        .await;
    // Tenant B's token on A's lease: 403 for status, logs, shell and manifest.
    let gb = w.gateway(&w.tenant_b_key);
    let (da, _) = (a.dseq, b.dseq);
    assert_eq!(
        gb.lease_status(da, 1, 1).await.unwrap_err().status(),
        Some(403)
    );
    assert_eq!(
        gb.logs(da, 1, 1, &LogOptions::default())
            .await
            .err()
            .and_then(|e| e.status()),
        Some(403)
    );
    assert_eq!(
        gb.shell(da, 1, 1, &ShellRequest::new("web", ["true"]))
            .await
            .err()
            .and_then(|e| e.status()),
        Some(403)
    );
    let manifest = kumo_sdl::parse(&web_sdl("dc", "32Mi", 100_000, "test"))
        .unwrap()
        .manifest()
        .clone();
    assert_eq!(
        gb.put_manifest(da, &manifest).await.unwrap_err().status(),
        Some(403)
    );
    // Expired and forged tokens: 401.
    let status_url = format!("{}/lease/{da}/1/1/status", w.host_uri);
    let http = reqwest::Client::builder()
        .use_preconfigured_tls((*kumo_gateway::tls::pinned_client_config(w.fingerprint)).clone())
        .build()
        .unwrap();
    let expired = auth::mint(
        &w.tenant_key,
        w.provider,
        &[Scope::Status],
        auth::now_secs() - 3600,
        60,
    );
    // The tenant's claims with the signature of another key.
    let forged = auth::mint(
        &SecretKey::generate(),
        w.provider,
        &[Scope::Status],
        auth::now_secs(),
        60,
    );
    let mut forged_parts: Vec<String> = auth::mint(
        &w.tenant_key,
        w.provider,
        &[Scope::Status],
        auth::now_secs(),
        60,
    )
    .split('.')
    .map(String::from)
    .collect();
    forged_parts[2] = forged.split('.').nth(2).unwrap().to_string();
    for token in [expired, forged_parts.join(".")] {
        let r = http
            .get(&status_url)
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401);
    }
    // A's container cannot reach B's service by address or by name.
    let b_ip = {
        let out = w
            .gateway(&w.tenant_b_key)
            .shell(b.dseq, 1, 1, &ShellRequest::new("web", ["hostname", "-i"]))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let ga = w.gateway(&w.tenant_key);
    for target in [b_ip.as_str(), "web"] {
        let script = format!("wget -q -T 2 -O - http://{target}/ 2>&1 | head -c 200; true");
        let out = ga
            .shell(da, 1, 1, &ShellRequest::new("web", ["sh", "-c", &script]))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        if target == "web" {
            // "web" inside A is A's own service, never B's: both serve the same page, so check
            // it resolves to A's own address, not B's.
            let own = ga
                .shell(
                    da,
                    1,
                    1,
                    &ShellRequest::new(
                        "web",
                        ["sh", "-c", "nslookup web 2>/dev/null | tail -n +3"],
                    ),
                )
                .await
                .unwrap()
                .collect()
                .await
                .unwrap();
            assert!(
                !String::from_utf8_lossy(&own.stdout).contains(&b_ip),
                "name resolves into B"
            );
        } else {
            assert!(
                !text.contains("kumo test page"),
                "A reached B at {target}: {text}"
            );
        }
    }
    // A tampered manifest is refused and nothing starts.
    let (dep, mut manifest) = w
        .deploy(
            &w.tenant,
            &web_sdl("dc", "32Mi", 100_000, "test"),
            50_000_000,
        )
        .await;
    let bid = w
        .bid(dep.group(1).order(1), Duration::from_secs(30))
        .await
        .unwrap();
    w.tenant
        .submit(vec![Msg::CreateLease { bid: bid.id }])
        .await
        .unwrap();
    wait_for("the lease at the provider", 20, || async {
        ga.lease_status(dep.dseq, 1, 1).await.is_ok()
    })
    .await;
    manifest.groups[0].services[0].image = "kumo-test/busybox:2".into();
    let e = ga.put_manifest(dep.dseq, &manifest).await.unwrap_err();
    assert_eq!(e.status(), Some(400), "{e}");
    assert!(e.to_string().contains("hash"), "{e}");
    let label = format!("kumo.lease={}", lease_label(&bid.id));
    assert_eq!(
        docker_objects(&w.instance, &label),
        (0, 0, 0),
        "nothing started"
    );
    assert_eq!(
        ga.lease_status(dep.dseq, 1, 1).await.unwrap().state,
        LeaseState::AwaitingManifest
    );
    for (t, l) in [(&w.tenant, a), (&w.tenant_b, b), (&w.tenant, bid.id)] {
        t.submit(vec![Msg::CloseLease {
            id: l,
            reason: LeaseCloseReason::Owner,
        }])
        .await
        .unwrap();
    }
}

async fn escrow_runs_dry(w: &World) {
    // 128 MiB at 200000/GiB = 25000 per block; the minimum deposit lasts 20 blocks.
    let lease = w
        .lease_running(
            &w.tenant,
            &w.tenant_key,
            &web_sdl("dc", "128Mi", 100_000, "test"),
            500_000,
        )
        .await;
    let label = format!("kumo.lease={}", lease_label(&lease));
    let closed_at = loop {
        let l = w
            .node
            .leases(&kumo_client::types::LeasesQuery {
                owner: Some(lease.owner),
                provider: Some(w.provider),
                state: None,
            })
            .await
            .unwrap()
            .value
            .into_iter()
            .find(|l| l.id == lease)
            .unwrap();
        if let Some(h) = l.closed_at {
            assert_eq!(l.close_reason, Some(LeaseCloseReason::InsufficientFunds));
            break h;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Poll the engine until the workload is gone; the chain must not have moved 2 blocks on.
    loop {
        let gone = docker_objects(&w.instance, &label).0 == 0;
        let h = w.height().await;
        if gone {
            assert!(
                h <= closed_at + 2,
                "workload gone only at height {h}, lease closed at {closed_at}"
            );
            break;
        }
        assert!(
            h <= closed_at + 2,
            "workload still there at height {h}, lease closed at {closed_at}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn no_bid_when_unfit(w: &World, provider: &ProviderProcess) {
    // Attributes: a region the provider does not have.
    let (d1, _) = w
        .deploy(
            &w.tenant,
            &web_sdl("dc", "32Mi", 100_000, "elsewhere"),
            50_000_000,
        )
        .await;
    // Storage class: one the provider does not offer.
    let sdl = web_sdl("dc", "32Mi", 100_000, "test").replace("class: beta2", "class: beta3");
    let (d2, _) = w.deploy(&w.tenant, &sdl, 50_000_000).await;
    // Capacity: more memory than the provider offers (1 GiB).
    let (d3, _) = w
        .deploy(
            &w.tenant,
            &web_sdl("dc", "2Gi", 10_000_000, "test"),
            50_000_000,
        )
        .await;
    // signedBy: an auditor who has not signed.
    let signed = web_sdl("dc", "32Mi", 100_000, "test").replace(
        "      attributes:\n        region: test\n",
        &format!("      attributes:\n        region: test\n      signedBy:\n        anyOf:\n          - {}\n", w.auditor.address()),
    );
    let (d4, _) = w.deploy(&w.tenant, &signed, 50_000_000).await;
    for d in [d1, d2, d3, d4] {
        assert!(
            w.bid(d.group(1).order(1), Duration::from_secs(3))
                .await
                .is_none(),
            "bid on {d:?}"
        );
    }
    let log = provider.log();
    for reason in ["region", "beta3", "capacity", "auditor"] {
        assert!(log.contains(reason), "no logged reason with {reason:?}");
    }
    // Once the auditor signs, the same requirements get a bid.
    w.auditor
        .submit(vec![Msg::SignProviderAttributes {
            provider: w.provider,
            attributes: vec![kumo_types::Attribute::new("region", "test")],
        }])
        .await
        .unwrap();
    let (d5, _) = w.deploy(&w.tenant, &signed, 50_000_000).await;
    assert!(
        w.bid(d5.group(1).order(1), Duration::from_secs(20))
            .await
            .is_some()
    );
}

/// A persistent volume keeps its data across a container restart; leaves 3 leases running.
async fn volume_survives_restart_and_three_leases(w: &World) -> Vec<LeaseId> {
    let mut leases = Vec::new();
    for _ in 0..3 {
        leases.push(
            w.lease_running(
                &w.tenant,
                &w.tenant_key,
                &web_sdl("dc", "32Mi", 100_000, "test"),
                50_000_000,
            )
            .await,
        );
    }
    let l = leases[0];
    let gw = w.gateway(&w.tenant_key);
    let sh = |cmd: &'static str| {
        let gw = gw.clone();
        async move {
            gw.shell(l.dseq, 1, 1, &ShellRequest::new("web", ["sh", "-c", cmd]))
                .await
                .unwrap()
                .collect()
                .await
                .unwrap()
        }
    };
    sh("echo kept > /data/file; echo lost > /tmp/file").await;
    let label = format!("kumo.lease={}", lease_label(&l));
    let ids = Command::new("docker")
        .args(["ps", "-q", "--filter", &format!("label={label}")])
        .output()
        .unwrap();
    let id = String::from_utf8_lossy(&ids.stdout).trim().to_string();
    let out = Command::new("docker")
        .args(["restart", "-t", "1", &id])
        .output()
        .unwrap();
    assert!(out.status.success());
    wait_for("the restarted container", 20, || async {
        gw.lease_status(l.dseq, 1, 1)
            .await
            .is_ok_and(|s| s.state == LeaseState::Running)
    })
    .await;
    let out = sh("cat /data/file; cat /tmp/file 2>/dev/null || echo tmp-gone").await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("kept"), "{text}");

    // Past its 32 Mi of ephemeral storage (the root file system has no hard limit on
    // overlay2/ext4), the replica is evicted within a check interval (1 s here): the tenant's
    // status says why, and the replica comes back empty with its persistent volume kept.
    let out = sh("dd if=/dev/zero of=/tmp/fill bs=1M count=48 2>&1; echo written").await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("written"), "{text}");
    wait_for("the eviction to show in the lease status", 20, || async {
        gw.lease_status(l.dseq, 1, 1).await.is_ok_and(|s| {
            s.warnings
                .iter()
                .any(|w| w.contains("evicted") && w.contains("32 MiB of ephemeral storage"))
        })
    })
    .await;
    wait_for("the evicted replica to run again", 30, || async {
        gw.lease_status(l.dseq, 1, 1)
            .await
            .is_ok_and(|s| s.state == LeaseState::Running)
    })
    .await;
    let out = sh("cat /data/file; ls /tmp/fill 2>/dev/null || echo fill-gone").await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("kept") && text.contains("fill-gone"),
        "{text}"
    );
    leases
}

async fn after_restart(w: &World, leases: &[LeaseId]) {
    wait_for("the restarted provider's gateway", 60, || async {
        w.gateway(&w.tenant_key).provider_status().await.is_ok()
    })
    .await;
    let status = w.gateway(&w.tenant_key).provider_status().await.unwrap();
    // The 3 leases plus the signedBy one that was bid on (open bid or not) are accounted.
    assert_eq!(status.leases, 3, "{status:?}");
    for l in leases {
        let s = w
            .gateway(&w.tenant_key)
            .lease_status(l.dseq, 1, 1)
            .await
            .unwrap();
        assert_eq!(s.state, LeaseState::Running, "{s:?}");
        let host = w.host_of(&w.tenant_key, l).await;
        wait_for("the service to answer after the restart", 20, || async {
            w.http(&host).await.is_some()
        })
        .await;
        let label = format!("kumo.lease={}", lease_label(l));
        assert_eq!(
            docker_objects(&w.instance, &label),
            (1, 1, 1),
            "one of each, no duplicate"
        );
    }
    assert_eq!(docker_objects(&w.instance, "").0, 3, "nothing orphaned");
}

fn write_price_script(dir: &Path) -> PathBuf {
    let path = dir.join("price.sh");
    std::fs::write(
        &path,
        "#!/bin/sh\ninput=$(cat)\ncase \"$input\" in\n  *'\"name\":\"crash\"'*) echo boom >&2; exit 3;;\n  *'\"name\":\"slow\"'*) sleep 30; echo 1;;\n  *) echo 4321;;\nesac\n",
    )
    .unwrap();
    let mut perm = std::fs::metadata(&path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(&path, perm).unwrap();
    path
}

async fn price_script(w: &World, provider: &ProviderProcess) {
    let (slow, _) = w
        .deploy(
            &w.tenant,
            &web_sdl("slow", "32Mi", 100_000, "test"),
            50_000_000,
        )
        .await;
    let (crash, _) = w
        .deploy(
            &w.tenant,
            &web_sdl("crash", "32Mi", 100_000, "test"),
            50_000_000,
        )
        .await;
    let (ok, _) = w
        .deploy(
            &w.tenant,
            &web_sdl("dc", "32Mi", 100_000, "test"),
            50_000_000,
        )
        .await;
    // The slow script for the first order does not hold up the third.
    let bid = w
        .bid(ok.group(1).order(1), Duration::from_secs(10))
        .await
        .expect("bid");
    assert_eq!(bid.price.amount, "4321".parse().unwrap());
    for d in [slow, crash] {
        assert!(
            w.bid(d.group(1).order(1), Duration::from_secs(4))
                .await
                .is_none()
        );
    }
    let log = provider.log();
    assert!(
        log.contains("price script ran longer"),
        "timeout not logged"
    );
    assert!(log.contains("price script failed"), "crash not logged");
}

/// One service asking for one GPU of `model`.
fn gpu_sdl(model: &str) -> String {
    format!(
        r#"version: "2.0"
services:
  train:
    image: {IMAGE}
    command: ["sh", "-c", "sleep 3600"]
    expose:
      - port: 80
        as: 80
        to:
          - global: true
profiles:
  compute:
    train:
      resources:
        cpu:
          units: 0.1
        memory:
          size: 32Mi
        storage:
          - size: 32Mi
        gpu:
          units: 1
          attributes:
            vendor:
              nvidia:
                - model: {model}
  placement:
    dc:
      attributes:
        region: test
      pricing:
        train:
          denom: ukumo
          amount: 100000
deployment:
  train:
    dc:
      profile: train
      count: 1
"#
    )
}

/// The provider's free and total count of its `h100 80Gi sxm` GPUs.
async fn h100s(w: &World) -> (u32, u32) {
    let s = w.gateway(&w.tenant_key).provider_status().await.unwrap();
    let kind = "h100 80Gi sxm";
    (
        s.inventory.free.gpus.get(kind).copied().unwrap_or(0),
        s.inventory.total.gpus.get(kind).copied().unwrap_or(0),
    )
}

/// The GPU device ids of the lease's containers' device requests, as the engine reports them.
fn device_request_ids(w: &World, lease: &LeaseId) -> Vec<String> {
    let filter = format!("label=kumo.lease={}", lease_label(lease));
    let out = Command::new("docker")
        .args(["ps", "-aq", "--filter", &filter])
        .output()
        .unwrap();
    let ids = String::from_utf8_lossy(&out.stdout).to_string();
    let mut found = Vec::new();
    for id in ids.lines() {
        let out = Command::new("docker")
            .args([
                "inspect",
                "--format",
                "{{json .HostConfig.DeviceRequests}}",
                id,
            ])
            .output()
            .unwrap();
        let reqs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        for r in reqs.as_array().into_iter().flatten() {
            assert_eq!(r["Driver"], "nvidia", "{r}");
            assert_eq!(r["Capabilities"], serde_json::json!([["gpu"]]), "{r}");
            for d in r["DeviceIDs"].as_array().into_iter().flatten() {
                found.push(d.as_str().unwrap().to_string());
            }
        }
    }
    let _ = &w.instance;
    found
}

/// GPUs: matching by model, distinct devices per lease, none doubled across a `kill -9`.
async fn gpus(w: &World, provider: &mut ProviderProcess) {
    let me = w.node.provider(&w.provider).await.unwrap().value;
    let attrs: Vec<&str> = me
        .provider
        .fields
        .attributes
        .iter()
        .map(|a| a.key.as_str())
        .collect();
    assert!(
        attrs.contains(&"capabilities/gpu/vendor/nvidia/model/h100/ram/80Gi/interface/sxm"),
        "{attrs:?}"
    );
    assert_eq!(h100s(w).await, (2, 2));

    // Another model: no bid.
    let (a100, _) = w.deploy(&w.tenant, &gpu_sdl("a100"), 50_000_000).await;
    // Two h100 orders: a bid each, offering one h100; both accepted.
    let mut leases = Vec::new();
    let mut manifests = Vec::new();
    for _ in 0..2 {
        let (dep, manifest) = w.deploy(&w.tenant, &gpu_sdl("h100"), 50_000_000).await;
        let bid = w
            .bid(dep.group(1).order(1), Duration::from_secs(30))
            .await
            .expect("a bid on an h100 order");
        assert_eq!(kumo_types::gpu::summary(&bid.gpus), "1× h100 80Gi sxm");
        w.tenant
            .submit(vec![Msg::CreateLease { bid: bid.id }])
            .await
            .unwrap();
        leases.push(bid.id);
        manifests.push(manifest);
    }
    // The third h100 order finds both GPUs held: no bid.
    let (third, _) = w.deploy(&w.tenant, &gpu_sdl("h100"), 50_000_000).await;
    for d in [a100, third] {
        assert!(
            w.bid(d.group(1).order(1), Duration::from_secs(3))
                .await
                .is_none(),
            "bid on {d:?}"
        );
    }
    let log = provider.log();
    assert!(
        log.contains("provider offers none of the GPUs requested"),
        "a100 reason"
    );
    assert!(
        log.contains("GPUs: needs 1 GPUs of the requested model, 0 free"),
        "h100 reason"
    );
    wait_for("both GPUs held by the leases", 20, || async {
        h100s(w).await == (0, 2)
    })
    .await;

    // A manifest for the first lease: the container is created with a device request for its
    // GPU, and starting it fails with a clear error (no NVIDIA runtime on this engine).
    let err = w
        .gateway(&w.tenant_key)
        .put_manifest(leases[0].dseq, &manifests[0])
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("NVIDIA container runtime"), "{err}");
    let before = device_request_ids(w, &leases[0]);
    assert_eq!(before.len(), 1, "{before:?}");
    assert!(GPU_UUIDS.contains(&before[0].as_str()), "{before:?}");

    // kill -9 and restart: the assignments are the same, nothing doubled.
    provider.kill9();
    provider.spawn();
    wait_for("the restarted provider's gateway", 60, || async {
        w.gateway(&w.tenant_key).provider_status().await.is_ok()
    })
    .await;
    assert_eq!(h100s(w).await, (0, 2));
    let (fourth, _) = w.deploy(&w.tenant, &gpu_sdl("h100"), 50_000_000).await;
    assert!(
        w.bid(fourth.group(1).order(1), Duration::from_secs(3))
            .await
            .is_none(),
        "a bid with both GPUs leased"
    );
    wait_for("the GPU container to be there again", 20, || async {
        !device_request_ids(w, &leases[0]).is_empty()
    })
    .await;
    assert_eq!(
        device_request_ids(w, &leases[0]),
        before,
        "same GPU after restart"
    );

    // The first lease closes: its GPU is free, and a new h100 order gets it.
    w.tenant
        .submit(vec![Msg::CloseLease {
            id: leases[0],
            reason: LeaseCloseReason::Owner,
        }])
        .await
        .unwrap();
    wait_for("the closed lease's GPU to be free", 20, || async {
        h100s(w).await == (1, 2)
    })
    .await;
    let (fifth, _) = w.deploy(&w.tenant, &gpu_sdl("h100"), 50_000_000).await;
    let bid = w
        .bid(fifth.group(1).order(1), Duration::from_secs(30))
        .await
        .expect("a bid once a GPU is free");
    assert_eq!(kumo_types::gpu::summary(&bid.gpus), "1× h100 80Gi sxm");

    // Clean up: every GPU deployment closed, every GPU free again.
    for d in [
        a100,
        third,
        fourth,
        fifth,
        leases[0].deployment(),
        leases[1].deployment(),
    ] {
        let _ = w.tenant.submit(vec![Msg::CloseDeployment { id: d }]).await;
    }
    wait_for("every GPU free again", 20, || async {
        h100s(w).await == (2, 2)
    })
    .await;
}
