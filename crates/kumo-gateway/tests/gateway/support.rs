//! A gateway on 127.0.0.1 over a small in-test [`GatewayBackend`]: it keeps which tenant owns
//! which lease and hands workload calls to a real `DockerBackend` (the provider daemon's real
//! backend is another crate's).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use kumo_gateway::client::GatewayClient;
use kumo_gateway::server::{self, GatewayConfig};
use kumo_gateway::tls::GatewayCert;
use kumo_gateway::types::{
    InventoryView, LeaseState, LeaseStatusView, ProviderStatusView, ServiceView,
};
use kumo_gateway::{GatewayBackend, GatewayError};
use kumo_sdl::manifest::{
    HttpOptions, Manifest, ManifestGroup, ManifestService, Proto, ServiceExpose,
};
use kumo_types::{Address, Cpu, LeaseId, Memory, Resources, SecretKey, Storage};
use kumo_workload::{
    Backend, DeployOptions, DockerBackend, DockerConfig, EventStream, ExecRequest, ExecSession,
    LogOptions, LogStream,
};
use rand_core::{OsRng, RngCore};

/// Built by `scripts/test-images.sh`: busybox; `/www` holds "kumo test page".
pub(crate) const IMAGE: &str = "kumo-test/busybox:1";

/// The in-test backend: an ownership map and, when an engine answers, Docker.
pub(crate) struct TestBackend {
    pub(crate) provider: Address,
    pub(crate) docker: Option<DockerBackend>,
    instance: String,
    leases: Mutex<Vec<LeaseId>>,
}

#[path = "../../../../tests/skip.rs"]
mod skip;

impl TestBackend {
    fn find(&self, dseq: u64, gseq: Option<u32>, oseq: Option<u32>) -> Option<LeaseId> {
        self.leases.lock().unwrap().iter().copied().find(|l| {
            l.dseq == dseq && gseq.is_none_or(|g| l.gseq == g) && oseq.is_none_or(|o| l.oseq == o)
        })
    }

    fn docker(&self) -> Result<&DockerBackend, GatewayError> {
        self.docker
            .as_ref()
            .ok_or_else(|| GatewayError::Unavailable("no Docker engine in this test".into()))
    }

    fn owned(&self, tenant: &Address, lease: Option<LeaseId>) -> Result<LeaseId, GatewayError> {
        match lease {
            None => Err(GatewayError::NotFound("no such lease here".into())),
            Some(l) if l.owner != *tenant => Err(GatewayError::Forbidden(format!(
                "lease {} is not yours",
                l.dseq
            ))),
            Some(l) => Ok(l),
        }
    }
}

#[async_trait]
impl GatewayBackend for TestBackend {
    fn provider(&self) -> Address {
        self.provider
    }

    async fn lease(
        &self,
        tenant: &Address,
        dseq: u64,
        gseq: u32,
        oseq: u32,
    ) -> Result<LeaseId, GatewayError> {
        self.owned(tenant, self.find(dseq, Some(gseq), Some(oseq)))
    }

    async fn put_manifest(
        &self,
        tenant: &Address,
        dseq: u64,
        manifest: Manifest,
    ) -> Result<(), GatewayError> {
        let lease = self.owned(tenant, self.find(dseq, None, None))?;
        let group = manifest
            .groups
            .first()
            .ok_or_else(|| GatewayError::Invalid("the manifest has no group".into()))?;
        self.docker()?
            .deploy(&lease, group, &DeployOptions::default())
            .await?;
        Ok(())
    }

    async fn lease_status(&self, lease: &LeaseId) -> Result<LeaseStatusView, GatewayError> {
        let services = match &self.docker {
            Some(docker) => docker.status(lease).await?.services,
            None => vec![],
        };
        Ok(LeaseStatusView {
            dseq: lease.dseq,
            gseq: lease.gseq,
            oseq: lease.oseq,
            owner: lease.owner,
            provider: lease.provider,
            state: LeaseState::AwaitingManifest,
            services: services
                .iter()
                .map(|s| ServiceView {
                    name: s.name.clone(),
                    replicas: s.replicas,
                    available: s.running,
                    uris: vec![],
                    forwarded_ports: vec![],
                    ssh: None,
                })
                .collect(),
            warnings: vec![],
        })
    }

    async fn logs(&self, lease: &LeaseId, opts: &LogOptions) -> Result<LogStream, GatewayError> {
        Ok(self.docker()?.logs(lease, opts).await?)
    }

    async fn exec(&self, lease: &LeaseId, req: &ExecRequest) -> Result<ExecSession, GatewayError> {
        Ok(self.docker()?.exec(lease, req).await?)
    }

    async fn events(&self, lease: &LeaseId) -> Result<EventStream, GatewayError> {
        Ok(self.docker()?.events(lease).await?)
    }

    async fn restart(
        &self,
        lease: &LeaseId,
        service: Option<&str>,
    ) -> Result<LeaseStatusView, GatewayError> {
        self.docker()?.restart(lease, service).await?;
        self.lease_status(lease).await
    }

    async fn provider_status(&self) -> Result<ProviderStatusView, GatewayError> {
        Ok(ProviderStatusView {
            provider: self.provider,
            leases: self.leases.lock().unwrap().len() as u32,
            bids: 0,
            inventory: InventoryView::default(),
            vm: None,
        })
    }
}

/// A running gateway and what a test needs to talk to it.
pub(crate) struct Gateway {
    pub(crate) addr: SocketAddr,
    pub(crate) fingerprint: [u8; 32],
    pub(crate) provider: Address,
    pub(crate) backend: Arc<TestBackend>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Gateway {
    /// A gateway with no engine behind it.
    pub(crate) async fn start() -> Gateway {
        Self::start_with(None).await
    }

    /// A gateway over `engine` (a Docker backend and its provider instance name).
    pub(crate) async fn start_with(engine: Option<(DockerBackend, String)>) -> Gateway {
        let provider = random_address();
        let (docker, instance) = match engine {
            Some((docker, instance)) => (Some(docker), instance),
            None => (None, String::new()),
        };
        let backend = Arc::new(TestBackend {
            provider,
            docker,
            instance,
            leases: Mutex::new(vec![]),
        });
        let cert = GatewayCert::generate("localhost").unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = server::app(
            backend.clone(),
            GatewayConfig {
                max_manifest_bytes: 64 << 10,
            },
        );
        let tls = cert.server_config().unwrap();
        let server = tokio::spawn(server::serve(listener, tls, app, std::future::pending()));
        Gateway {
            addr,
            fingerprint: cert.fingerprint(),
            provider,
            backend,
            server,
        }
    }

    /// A lease of `tenant` with this provider (dseq random, gseq = oseq = 1).
    pub(crate) fn lease(&self, tenant: &SecretKey) -> LeaseId {
        let lease = LeaseId {
            owner: Address::from_public_key(&tenant.public_key()),
            dseq: OsRng.next_u64() >> 1,
            gseq: 1,
            oseq: 1,
            provider: self.provider,
        };
        self.backend.leases.lock().unwrap().push(lease);
        lease
    }

    pub(crate) fn uri(&self) -> String {
        format!("https://127.0.0.1:{}", self.addr.port())
    }

    /// The client of `tenant`, pinning the right certificate.
    pub(crate) fn client(&self, tenant: &SecretKey) -> GatewayClient {
        GatewayClient::new(&self.uri(), self.fingerprint, tenant.clone(), self.provider).unwrap()
    }

    /// A plain reqwest client that pins the gateway's certificate (for hand-made tokens).
    pub(crate) fn http(&self) -> reqwest::Client {
        let tls = kumo_gateway::tls::pinned_client_config(self.fingerprint);
        reqwest::Client::builder()
            .tls_backend_preconfigured((*tls).clone())
            .build()
            .unwrap()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.server.abort();
        let Some(docker) = &self.backend.docker else {
            return;
        };
        let leases = std::mem::take(&mut *self.backend.leases.lock().unwrap());
        let _ = docker;
        let instance = self.backend.instance.clone();
        // Drop cannot await: tear the leases down on a thread with its own runtime.
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let backend = DockerBackend::connect(DockerConfig::new(instance)).await?;
                for lease in leases {
                    backend.teardown(&lease).await?;
                }
                Ok::<_, kumo_workload::WorkloadError>(())
            })
        });
        if let Ok(Err(e)) = cleanup.join() {
            eprintln!("cleanup failed: {e}");
        }
    }
}

/// A Docker backend under a provider instance of its own, or `None` when no engine answers and
/// `KUMO_REQUIRE_DOCKER` is not `1` (the test then returns).
pub(crate) async fn engine() -> Option<(DockerBackend, String)> {
    let instance = format!("gw-test-{:x}", OsRng.next_u64());
    let config = DockerConfig {
        pids_limit: 256,
        stop_timeout_secs: 1,
        ..DockerConfig::new(instance.clone())
    };
    let backend = match DockerBackend::connect(config).await {
        Ok(b) => b,
        Err(e) => return unavailable(&e.to_string()),
    };
    if backend.docker().inspect_image(IMAGE).await.is_err() {
        return unavailable(&format!(
            "the test image {IMAGE} is missing: run scripts/test-images.sh"
        ));
    }
    Some((backend, instance))
}

fn unavailable<T>(why: &str) -> Option<T> {
    if std::env::var("KUMO_REQUIRE_DOCKER").as_deref() == Ok("1") {
        panic!("KUMO_REQUIRE_DOCKER=1 but the Docker tests cannot run: {why}");
    }
    skip::report(
        "a gateway Docker test",
        &format!("{why} (set KUMO_REQUIRE_DOCKER=1 to make this a failure)"),
    );
    None
}

pub(crate) fn random_address() -> Address {
    let mut a = [0u8; 20];
    OsRng.fill_bytes(&mut a);
    Address(a)
}

pub(crate) fn random_key() -> SecretKey {
    let mut seed = [0u8; 32];
    OsRng.fill_bytes(&mut seed);
    SecretKey::from_seed(seed)
}

/// A one-group manifest with these services (busybox image, small profile).
pub(crate) fn manifest(services: Vec<ManifestService>) -> Manifest {
    let mut services = services;
    services.sort_by(|a, b| a.name.cmp(&b.name));
    Manifest {
        groups: vec![ManifestGroup {
            name: "dcloud".into(),
            services,
        }],
    }
}

/// A service running `args` in the test image.
pub(crate) fn service(name: &str, args: &[&str]) -> ManifestService {
    ManifestService {
        name: name.into(),
        image: IMAGE.into(),
        command: None,
        args: Some(args.iter().map(|s| s.to_string()).collect()),
        env: None,
        resources: Resources {
            id: 1,
            cpu: Cpu {
                millis: 250,
                attributes: vec![],
            },
            memory: Memory {
                bytes: 64 << 20,
                attributes: vec![],
            },
            storage: vec![Storage {
                name: "default".into(),
                bytes: 512 << 20,
                attributes: vec![],
            }],
            ..Default::default()
        },
        count: 1,
        expose: vec![],
        params: None,
        credentials: None,
        vm: None,
    }
}

/// busybox httpd serving `/www` on port 80, exposed globally.
pub(crate) fn web(name: &str) -> ManifestService {
    let mut s = service(name, &["httpd", "-f", "-p", "80", "-h", "/www"]);
    s.expose.push(ServiceExpose {
        port: 80,
        external_port: 0,
        proto: Proto::Tcp,
        service: String::new(),
        global: true,
        hosts: None,
        http_options: HttpOptions {
            max_body_size: 1_048_576,
            proxy_buffer_size: 0,
            read_timeout: 60_000,
            send_timeout: 60_000,
            next_tries: 3,
            next_timeout: 0,
            next_cases: vec!["error".into()],
        },
        ip: String::new(),
        endpoint_sequence_number: 0,
    });
    s
}

/// Polls `probe` until it returns `Some`, for at most `secs` seconds.
pub(crate) async fn eventually<T, F, Fut>(secs: u64, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
