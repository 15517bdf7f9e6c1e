//! What every Docker test needs: an engine (or a skip), unique leases that are torn down when
//! the test ends, manifest builders and small probes.
//!
//! Without an engine a test prints why and returns, unless `KUMO_REQUIRE_DOCKER=1` (set by
//! `.ci/run` and by `scripts/test.sh` when `docker info` works): then it fails, so CI can never
//! pass by skipping.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use futures::StreamExt;
use kumo_sdl::manifest::{
    HttpOptions, ManifestGroup, ManifestService, Proto, ServiceExpose, ServiceParams, StorageMount,
};
use kumo_types::{Address, Attribute, Cpu, LeaseId, Memory, Resources, Storage};
use kumo_workload::{Backend, DockerBackend, DockerConfig, ExecRequest, StdStream};
use rand_core::{OsRng, RngCore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Built by `scripts/test-images.sh`: busybox, `/etc/kumo-test-image` holds `1`.
pub(crate) const IMAGE: &str = "kumo-test/busybox:1";
/// The same with `/etc/kumo-test-image` holding `2`.
pub(crate) const IMAGE_2: &str = "kumo-test/busybox:2";
/// The registry without authentication.
pub(crate) const OPEN_REGISTRY: &str = "127.0.0.1:5000";
/// The registry with basic authentication.
pub(crate) const AUTH_REGISTRY: &str = "127.0.0.1:5001";
/// Its user and password.
pub(crate) const AUTH_USER: &str = "kumo";
pub(crate) const AUTH_PASSWORD: &str = "kumo-test-password";

/// A connected backend under a provider instance of its own, and the leases a test made with
/// it (torn down on drop, even when the test panics, and the instance's firewall table
/// removed).
pub(crate) struct Engine {
    pub(crate) backend: DockerBackend,
    pub(crate) instance: String,
    config: DockerConfig,
    leases: Mutex<Vec<LeaseId>>,
}

/// The engine, or `None` when it is unavailable and not required (the test then returns).
pub(crate) async fn engine() -> Option<Engine> {
    engine_with(|_| {}).await
}

/// The engine with the test configuration changed by `adjust` (network pool, firewall).
pub(crate) async fn engine_with(adjust: impl FnOnce(&mut DockerConfig)) -> Option<Engine> {
    let instance = format!("test-{}", random_hex(6));
    let mut config = config(&instance);
    adjust(&mut config);
    let backend = match DockerBackend::connect(config.clone()).await {
        Ok(b) => b,
        Err(e) => return unavailable(&e.to_string()),
    };
    if backend.docker().inspect_image(IMAGE).await.is_err() {
        return unavailable(&format!(
            "the test image {IMAGE} is missing: run scripts/test-images.sh"
        ));
    }
    Some(Engine {
        backend,
        instance,
        config,
        leases: Mutex::new(Vec::new()),
    })
}

/// The test configuration: small pids limit, quick replacement on update, volumes in a
/// directory of the instance's own ([`storage_dir`]).
pub(crate) fn config(instance: &str) -> DockerConfig {
    DockerConfig {
        pids_limit: 256,
        stop_timeout_secs: 1,
        storage_dir: storage_dir(instance),
        ..DockerConfig::new(instance)
    }
}

/// Where the instance's persistent volumes' images are mounted.
pub(crate) fn storage_dir(instance: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("kumo-volumes-{instance}"))
}

fn unavailable<T>(why: &str) -> Option<T> {
    if std::env::var("KUMO_REQUIRE_DOCKER").as_deref() == Ok("1") {
        panic!("KUMO_REQUIRE_DOCKER=1 but the Docker tests cannot run: {why}");
    }
    crate::skip::report(
        "a Docker workload test",
        &format!("{why} (set KUMO_REQUIRE_DOCKER=1 to make this a failure)"),
    );
    None
}

impl Engine {
    /// The configuration the backend was connected with.
    pub(crate) fn config(&self) -> &DockerConfig {
        &self.config
    }

    /// A lease no other test uses (random owner and provider), torn down when `self` drops.
    pub(crate) fn lease(&self) -> LeaseId {
        let lease = LeaseId {
            owner: random_address(),
            dseq: OsRng.next_u64() >> 1,
            gseq: 1,
            oseq: 1,
            provider: random_address(),
        };
        self.leases.lock().unwrap().push(lease);
        lease
    }

    /// Runs `sh -c script` in replica 0 of `service`.
    pub(crate) async fn sh(&self, lease: &LeaseId, service: &str, script: &str) -> Output {
        self.exec(lease, service, 0, &["sh", "-c", script]).await
    }

    /// Runs `cmd` in a replica and collects everything it writes.
    pub(crate) async fn exec(
        &self,
        lease: &LeaseId,
        service: &str,
        replica: u32,
        cmd: &[&str],
    ) -> Output {
        let req = ExecRequest {
            service: service.into(),
            replica,
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            tty: false,
            stdin: false,
            env: vec![],
        };
        let session = self.backend.exec(lease, &req).await.expect("exec starts");
        collect(session).await
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let leases = std::mem::take(&mut *self.leases.lock().unwrap_or_else(|p| p.into_inner()));
        let config = self.config.clone();
        // Drop cannot await, and the test's runtime may be the one dropping us: tear down on a
        // thread of our own, with a runtime and engine connection of its own.
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let backend = DockerBackend::connect(config).await?;
                for lease in leases {
                    backend.teardown(&lease).await?;
                }
                backend.remove_firewall().await?;
                Ok::<_, kumo_workload::WorkloadError>(())
            })
        });
        if let Ok(Err(e)) = cleanup.join() {
            eprintln!("cleanup of instance {} failed: {e}", self.instance);
        }
        // Empty once every lease is torn down; left (and seen) when something was not.
        let _ = std::fs::remove_dir(storage_dir(&self.instance));
    }
}

/// What a command wrote and how it ended.
#[derive(Debug)]
pub(crate) struct Output {
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    pub(crate) code: i64,
}

/// Reads a session to its end.
pub(crate) async fn collect(mut session: kumo_workload::ExecSession) -> Output {
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    while let Some(chunk) = session.output.next().await {
        let chunk = chunk.expect("output");
        match chunk.stream {
            StdStream::Stdout => stdout.extend_from_slice(&chunk.bytes),
            StdStream::Stderr => stderr.extend_from_slice(&chunk.bytes),
        }
    }
    let code = session.exit_code().await.expect("exit code");
    Output {
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        code,
    }
}

/// A service of the busybox test image running `args`, with a small profile.
pub(crate) fn service(name: &str, image: &str, args: &[&str]) -> ManifestService {
    ManifestService {
        name: name.into(),
        image: image.into(),
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
            storage: vec![storage("default", 512 << 20, &[])],
            ..Default::default()
        },
        count: 1,
        expose: vec![],
        params: None,
        credentials: None,
        vm: None,
    }
}

/// busybox httpd serving `/www` (which holds "kumo test page") on port 80.
pub(crate) fn web(name: &str) -> ManifestService {
    let mut s = service(name, IMAGE, &["httpd", "-f", "-p", "80", "-h", "/www"]);
    s.expose.push(expose(80));
    s
}

/// A service that only waits, to run commands in.
pub(crate) fn idle(name: &str) -> ManifestService {
    service(name, IMAGE, &["sleep", "3600"])
}

/// A storage volume of a compute profile.
pub(crate) fn storage(name: &str, bytes: u64, attributes: &[(&str, &str)]) -> Storage {
    Storage {
        name: name.into(),
        bytes,
        attributes: attributes
            .iter()
            .map(|(k, v)| Attribute {
                key: (*k).into(),
                value: (*v).into(),
            })
            .collect(),
    }
}

/// Adds a volume to `service`'s profile and mounts it at `path`.
pub(crate) fn mount(service: &mut ManifestService, volume: Storage, path: &str) {
    let params = service.params.get_or_insert(ServiceParams {
        storage: None,
        permissions: None,
        tee: None,
    });
    params.storage.get_or_insert_default().push(StorageMount {
        name: volume.name.clone(),
        mount: path.into(),
        read_only: false,
    });
    service.resources.storage.push(volume);
}

/// A global TCP port, as the SDL parser renders `expose: [{port, to: [{global: true}]}]`.
pub(crate) fn expose(port: u32) -> ServiceExpose {
    ServiceExpose {
        port,
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
            next_cases: vec!["error".into(), "timeout".into()],
        },
        ip: String::new(),
        endpoint_sequence_number: 0,
    }
}

/// A placement group with these services.
pub(crate) fn group(services: Vec<ManifestService>) -> ManifestGroup {
    let mut services = services;
    services.sort_by(|a, b| a.name.cmp(&b.name));
    ManifestGroup {
        name: "dcloud".into(),
        services,
    }
}

/// `GET /` over plain TCP from the test process.
pub(crate) async fn http_get(ip: IpAddr, port: u16) -> std::io::Result<String> {
    let connect = tokio::net::TcpStream::connect((ip, port));
    let mut stream = tokio::time::timeout(Duration::from_secs(2), connect)
        .await
        .map_err(|_| std::io::Error::other("connect timed out"))??;
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").await?;
    let mut page = String::new();
    tokio::time::timeout(Duration::from_secs(2), stream.read_to_string(&mut page))
        .await
        .map_err(|_| std::io::Error::other("read timed out"))??;
    Ok(page)
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

pub(crate) fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

fn random_address() -> Address {
    let mut a = [0u8; 20];
    OsRng.fill_bytes(&mut a);
    Address(a)
}
