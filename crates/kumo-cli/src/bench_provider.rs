//! `kumo bench provider`: how one provider host carries many leases (issue 28's goals).
//!
//! On a fresh devnet (a temporary directory, removed afterwards), N small web leases are
//! deployed one after another with the same library call as `kumo deploy` (cheapest bid), each
//! timed from the call to its first HTTP 200 through the ingress. Then: the provider's resident
//! memory; a restart of the devnet (its workloads keep running), whose reconcile of N leases
//! the provider times and logs; every lease asked again through the ingress (reconcile must
//! have routed them all); every lease closed; and what is left of the provider (containers,
//! networks and volumes with its label, lease bridges in its firewall table, QEMU processes),
//! which must be nothing.
//!
//! Each lease asks for Akash's smallest CPU (10m) and 8 MiB: on a 2-core host N = 500 needs
//! 5 cores, so the provider's `capacity.cpu_overcommit` is raised to fit N (the only change to
//! the devnet's defaults, printed as a step). The first and last deploy figures are medians of
//! the first and last [`WINDOW`] deploys: one deploy can land on a slow block.

use std::{path::Path, process::Command, time::Instant};

use anyhow::{Context, bail};
use kumo_keystore::{Backend, Keystore};
use kumo_tenant::deploy::{DeployOptions, Selection};
use serde::Serialize;

use crate::bench_deploy::{BenchDevnet, first_ok, web_sdl};

/// How many deploys the first and last figures are the median of.
pub(crate) const WINDOW: usize = 5;

/// The result (`-o json`).
#[derive(Debug, Serialize)]
pub(crate) struct ProviderBench {
    /// Leases deployed (and answering) at once.
    pub(crate) leases: usize,
    /// Median seconds from deploy to first HTTP 200 of the first [`WINDOW`] leases.
    pub(crate) deploy_seconds_first: f64,
    /// The same of the last [`WINDOW`] leases (with N − 1 others running).
    pub(crate) deploy_seconds_last: f64,
    /// The provider's resident memory with N leases, in MiB.
    pub(crate) provider_rss_mb: f64,
    /// The provider's reconcile at start with N leases (chain, records, engine), in ms.
    pub(crate) reconcile_ms: f64,
    /// Leases that answered HTTP 200 through the ingress after the restart (all N, or the
    /// reconcile lost some).
    pub(crate) answering_after_restart: usize,
    /// What the provider left once every lease closed: containers, networks and volumes with
    /// its label, lease bridges in its firewall table, QEMU processes of the devnet.
    pub(crate) left_after_close: usize,
    /// Seconds from the last close to nothing left (or to giving up after a minute and a
    /// second a lease).
    pub(crate) teardown_lag_seconds: f64,
    /// The devnet's block time.
    pub(crate) block_time_ms: u64,
}

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs the benchmark with `leases` leases.
pub(crate) fn run(
    image: &str,
    leases: usize,
    block_time: std::time::Duration,
    progress: &dyn Fn(&str),
) -> anyhow::Result<ProviderBench> {
    if leases == 0 {
        bail!("--leases must be at least 1");
    }
    let bench = BenchDevnet::new(image, block_time, 1)?;
    // A first start writes the devnet; its provider then gets the capacity for N leases.
    bench.up(progress)?.stop();
    let overcommit = raise_cpu_overcommit(&bench.dir, leases)?;
    progress(&format!(
        "provider capacity.cpu_overcommit = {overcommit} (room for {leases} leases of 10m CPU)"
    ));
    let devnet = bench.up(progress)?;
    let result = measure(
        &bench.rt,
        &bench.spec,
        &bench.exe,
        devnet,
        image,
        leases,
        progress,
    );
    bench.down();
    let mut r = result?;
    r.block_time_ms = block_time.as_millis() as u64;
    Ok(r)
}

/// Sets the devnet provider's `cpu_overcommit` so that `leases` × 10m fit with room to spare.
fn raise_cpu_overcommit(dir: &Path, leases: usize) -> anyhow::Result<f64> {
    let path = kumo_devnet::layout::provider_config_path(dir);
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let needed = (leases as f64 * 10.0 * 1.2) / (cores * 1000.0);
    let overcommit = needed.max(1.0).ceil();
    let mut found = false;
    let edited: Vec<String> = text
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("cpu_overcommit") {
                found = true;
                format!("cpu_overcommit = {overcommit:?}")
            } else {
                l.to_string()
            }
        })
        .collect();
    if !found {
        bail!("{} has no cpu_overcommit line", path.display());
    }
    std::fs::write(&path, edited.join("\n") + "\n")?;
    Ok(overcommit)
}

fn measure(
    rt: &tokio::runtime::Runtime,
    spec: &kumo_devnet::DevnetSpec,
    exe: &Path,
    devnet: kumo_devnet::run::Devnet,
    image: &str,
    leases: usize,
    progress: &dyn Fn(&str),
) -> anyhow::Result<ProviderBench> {
    let dir = devnet.dir.clone();
    let info = devnet.info.clone();
    let key = Keystore::open(dir.join("keys"), Backend::Test)?
        .secret_key("tenant")
        .context("the devnet's tenant key")?;
    let text = web_sdl(image, "0.01", "8Mi", 100);
    let node = kumo_client::NodeClient::new(&info.node)?;
    let tenant = rt.block_on(kumo_tenant::Tenant::connect(node, key))?;
    let mut seconds = Vec::with_capacity(leases);
    let mut dseqs = Vec::with_capacity(leases);
    let mut hosts = Vec::with_capacity(leases);
    for i in 0..leases {
        let start = Instant::now();
        let reports = rt.block_on(async {
            let opts = DeployOptions {
                select: Selection::Cheapest,
                ..DeployOptions::default()
            };
            kumo_tenant::deploy::deploy(&tenant, &text, opts, &mut |_| {}).await
        })?;
        let report = reports.first().context("deploy returned no lease")?;
        let uri = report
            .status
            .services
            .first()
            .and_then(|s| s.uris.first())
            .context("the deployment has no URL")?;
        let host = uri
            .trim_start_matches("http://")
            .split([':', '/'])
            .next()
            .unwrap_or_default()
            .to_string();
        let answered = first_ok(info.ingress, &host)?;
        seconds.push((answered - start).as_secs_f64());
        dseqs.push(report.status.dseq);
        hosts.push(host);
        if (i + 1) % 25 == 0 || i + 1 == leases {
            progress(&format!(
                "{} leases deployed (last {:.2} s)",
                i + 1,
                seconds[i]
            ));
        }
    }
    let window = WINDOW.min(leases);
    let deploy_seconds_first = median(&seconds[..window]);
    let deploy_seconds_last = median(&seconds[leases - window..]);
    let provider_rss_mb = provider_rss_mb(&dir)?;

    progress("restarting the devnet: the provider reconciles every lease");
    devnet.stop();
    let log = dir
        .join(kumo_devnet::layout::PROVIDER_DIR)
        .join("provider.log");
    let before = std::fs::read_to_string(&log).unwrap_or_default().len();
    let devnet = rt.block_on(kumo_devnet::run::up(spec, exe, &mut |s| progress(s)))?;
    let reconcile_ms = reconcile_ms(&log, before)?;
    let answering_after_restart = hosts
        .iter()
        .filter(|h| first_ok(info.ingress, h).is_ok())
        .count();
    progress(&format!(
        "{answering_after_restart} of {leases} leases answer after the restart"
    ));

    progress("closing every lease");
    for dseq in &dseqs {
        rt.block_on(kumo_tenant::lease::close(&tenant, *dseq))?;
    }
    // Teardown follows each close's event and may lag the closes: wait for it (a minute, and
    // a second a lease), timing from the last close to nothing left.
    let closed = Instant::now();
    let deadline = closed + std::time::Duration::from_secs(60 + leases as u64);
    let mut left_after_close = left_behind(&info.instance, &dir);
    while left_after_close > 0 && Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(250));
        left_after_close = left_behind(&info.instance, &dir);
    }
    let teardown_lag_seconds = closed.elapsed().as_secs_f64();
    progress(&format!(
        "{left_after_close} objects left {teardown_lag_seconds:.1} s after the last close"
    ));
    devnet.stop();
    Ok(ProviderBench {
        leases,
        deploy_seconds_first,
        deploy_seconds_last,
        provider_rss_mb,
        reconcile_ms,
        answering_after_restart,
        left_after_close,
        teardown_lag_seconds,
        block_time_ms: 0,
    })
}

/// `VmRSS` of the devnet's provider process, in MiB.
fn provider_rss_mb(dir: &Path) -> anyhow::Result<f64> {
    let pid =
        kumo_devnet::process::running(dir, "provider").context("the provider is not running")?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS in /proc/<pid>/status")?;
    Ok(kib / 1024.0)
}

/// The `took_ms` of the first "reconciled" line the provider logged after byte `from`.
fn reconcile_ms(log: &Path, from: usize) -> anyhow::Result<f64> {
    let text = std::fs::read_to_string(log)?;
    let line = text
        .get(from..)
        .unwrap_or_default()
        .lines()
        .find(|l| l.contains("reconciled chain, records and engine"))
        .context("the restarted provider logged no reconcile")?;
    let took = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("took_ms="))
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no took_ms in {line:?}"))?;
    Ok(took)
}

/// What the provider left: containers, networks and volumes labelled with its instance, lease
/// bridges still in its firewall table, QEMU processes started for the devnet.
fn left_behind(instance: &str, devnet: &Path) -> usize {
    let filter = format!("label=kumo.instance={instance}");
    let engine: usize = [
        vec!["ps", "-aq", "--filter", filter.as_str()],
        vec!["network", "ls", "-q", "--filter", filter.as_str()],
        vec!["volume", "ls", "-q", "--filter", filter.as_str()],
    ]
    .iter()
    .map(|args| {
        Command::new("docker")
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).lines().count())
            .unwrap_or(0)
    })
    .sum();
    // The set `intra` holds one "<bridge>" . "<bridge>" element per lease network.
    let table = format!("kumo_{}", kumo_workload::network::instance_tag(instance));
    let rules = Command::new("nft")
        .args(["list", "set", "inet", &table, "intra"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .matches("\" . \"")
                .count()
        })
        .unwrap_or(0);
    let qemu = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            std::fs::read(e.path().join("cmdline")).is_ok_and(|c| {
                let c = String::from_utf8_lossy(&c);
                c.contains("qemu-system") && c.contains(&*devnet.to_string_lossy())
            })
        })
        .count();
    engine + rules + qemu
}
