//! `kumo bench deploy`: seconds from the start of a deploy (the same library call as
//! `kumo deploy`) to the first HTTP 200 through the provider's ingress, beside a plain
//! `docker run -p` of the same local image to its first HTTP 200, in one run on a fresh devnet
//! (a temporary directory, removed afterwards). Both are polled every [`POLL`].

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use kumo_keystore::{Backend, Keystore};
use kumo_tenant::deploy::{DeployOptions, Selection};
use serde::Serialize;

/// How often both services are asked for their page.
const POLL: Duration = Duration::from_millis(20);
/// How long either may take.
const TIMEOUT: Duration = Duration::from_secs(120);

/// The result (`-o json`).
#[derive(Debug, Serialize)]
pub(crate) struct DeployBench {
    /// `kumo deploy` (library call) to the first HTTP 200 through the ingress.
    pub(crate) deploy_seconds: f64,
    /// `docker run -d -p` to the first HTTP 200.
    pub(crate) docker_run_seconds: f64,
    /// The devnet's block time.
    pub(crate) block_time_ms: u64,
}

/// A web service of `image` (busybox `httpd` on port 80, global) with `cpu` cores, `size` of
/// memory and of storage, at `price` ukumo per block: the lease both deploy benchmarks use.
pub(crate) fn web_sdl(image: &str, cpu: &str, size: &str, price: u32) -> String {
    format!(
        r#"version: "2.0"
services:
  web:
    image: {image}
    command: ["sh", "-c"]
    args: ["exec httpd -f -p 80 -h /www"]
    expose:
      - port: 80
        as: 80
        to:
          - global: true
profiles:
  compute:
    web:
      resources:
        cpu:
          units: {cpu}
        memory:
          size: {size}
        storage:
          size: {size}
  placement:
    dc:
      pricing:
        web:
          denom: ukumo
          amount: {price}
deployment:
  web:
    dc:
      profile: web
      count: 1
"#
    )
}

/// Whether `GET /` with `Host: host` at `addr` answers 200.
fn http_ok(addr: SocketAddr, host: &str) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if write!(s, "GET / HTTP/1.0\r\nHost: {host}\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
}

/// Polls until 200; the instant it came.
pub(crate) fn first_ok(addr: SocketAddr, host: &str) -> anyhow::Result<Instant> {
    let start = Instant::now();
    loop {
        if http_ok(addr, host) {
            return Ok(Instant::now());
        }
        if start.elapsed() > TIMEOUT {
            bail!("no HTTP 200 from {addr} (Host {host}) within {TIMEOUT:?}");
        }
        std::thread::sleep(POLL);
    }
}

/// What a devnet benchmark runs on: the image checked, a temporary devnet directory (removed
/// when this is dropped), a runtime, and the devnet's spec (free ports, containers only: no KVM
/// probe in a measured start).
pub(crate) struct BenchDevnet {
    _tmp: tempfile::TempDir,
    /// The devnet directory.
    pub(crate) dir: std::path::PathBuf,
    /// The runtime the library calls run on.
    pub(crate) rt: tokio::runtime::Runtime,
    /// The `kumo` binary the devnet's processes run.
    pub(crate) exe: std::path::PathBuf,
    /// What `up` builds.
    pub(crate) spec: kumo_devnet::DevnetSpec,
}

impl BenchDevnet {
    /// Checks that `image` is on the engine and prepares a devnet of `providers` providers.
    pub(crate) fn new(
        image: &str,
        block_time: Duration,
        providers: usize,
    ) -> anyhow::Result<BenchDevnet> {
        let ok = Command::new("docker")
            .args(["image", "inspect", image])
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            bail!(
                "image {image} is not on the Docker engine: run scripts/test-images.sh (or pass --image)"
            );
        }
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().join("devnet");
        let spec = kumo_devnet::DevnetSpec {
            block_time,
            base_port: 0,
            vm: kumo_devnet::VmMode::Off,
            providers: Some(providers),
            ..kumo_devnet::DevnetSpec::new(&dir)
        };
        Ok(BenchDevnet {
            _tmp: tmp,
            dir,
            rt: tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?,
            exe: std::env::current_exe()?,
            spec,
        })
    }

    /// Starts the devnet (creating it the first time).
    pub(crate) fn up(&self, progress: &dyn Fn(&str)) -> anyhow::Result<kumo_devnet::run::Devnet> {
        Ok(self
            .rt
            .block_on(kumo_devnet::run::up(&self.spec, &self.exe, &mut |s| {
                progress(s)
            }))?)
    }

    /// Stops everything and removes every workload.
    pub(crate) fn down(&self) {
        let _ = self.rt.block_on(kumo_devnet::run::down(&self.dir, true));
    }
}

/// Runs the benchmark.
pub(crate) fn run(
    image: &str,
    block_time: Duration,
    progress: &dyn Fn(&str),
) -> anyhow::Result<DeployBench> {
    let bench = BenchDevnet::new(image, block_time, 1)?;
    let devnet = bench.up(progress)?;
    let result = measure(&bench.rt, &bench.dir, &devnet.info, image, progress);
    devnet.stop();
    bench.down();
    let (deploy_seconds, docker_run_seconds) = result?;
    Ok(DeployBench {
        deploy_seconds,
        docker_run_seconds,
        block_time_ms: block_time.as_millis() as u64,
    })
}

fn measure(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    info: &kumo_devnet::layout::DevnetInfo,
    image: &str,
    progress: &dyn Fn(&str),
) -> anyhow::Result<(f64, f64)> {
    let key = Keystore::open(dir.join("keys"), Backend::Test)?
        .secret_key("tenant")
        .context("the devnet's tenant key")?;
    let text = web_sdl(image, "0.1", "32Mi", 1000);
    progress("deploying through the devnet");
    let start = Instant::now();
    let reports = rt.block_on(async {
        let node = kumo_client::NodeClient::new(&info.node)?;
        let tenant = kumo_tenant::Tenant::connect(node, key).await?;
        let opts = DeployOptions {
            select: Selection::Cheapest,
            ..DeployOptions::default()
        };
        anyhow::Ok(kumo_tenant::deploy::deploy(&tenant, &text, opts, &mut |_| {}).await?)
    })?;
    let uri = reports
        .first()
        .and_then(|r| r.status.services.first())
        .and_then(|s| s.uris.first())
        .context("the deployment has no URL")?;
    let host = uri
        .trim_start_matches("http://")
        .split([':', '/'])
        .next()
        .unwrap_or_default()
        .to_string();
    let deployed = first_ok(info.ingress, &host)?;
    let deploy_seconds = (deployed - start).as_secs_f64();

    progress("docker run of the same image");
    let port = kumo_testnet::ports::free_port()?;
    let name = format!("kumo-bench-deploy-{}", std::process::id());
    let start = Instant::now();
    let out = Command::new("docker")
        .args(["run", "-d", "--rm", "--name", &name, "-p"])
        .arg(format!("127.0.0.1:{port}:80"))
        .args([image, "sh", "-c", "exec httpd -f -p 80 -h /www"])
        .output()?;
    if !out.status.success() {
        bail!(
            "docker run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let answered = first_ok(SocketAddr::from(([127, 0, 0, 1], port)), "localhost");
    let docker_run_seconds = answered.map(|t| (t - start).as_secs_f64());
    let _ = Command::new("docker").args(["rm", "-f", &name]).output();
    Ok((deploy_seconds, docker_run_seconds?))
}
