//! `kumo bench failover`: how long a tenant's service is down when its provider freezes, on a
//! fresh devnet with two providers (a temporary directory, removed afterwards).
//!
//! A web service is deployed on the cheaper provider with the library call of `kumo deploy`,
//! and watched with the one of `kumo lease watch`. The provider is then stopped with SIGSTOP
//! (it keeps its sockets and answers nothing, as a hung host does). Measured from that instant:
//! `detect_seconds`, until the watcher hears the lease closed `provider_unresponsive` (the
//! chain's liveness window at work), and `serving_again_seconds`, until the service's new URL
//! answers HTTP 200 through the other provider's ingress (polled every 20 ms).

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use kumo_keystore::{Backend, Keystore};
use kumo_tenant::{
    deploy::{DeployOptions, Selection},
    failover::WatchEvent,
};
use serde::Serialize;

use crate::bench_deploy::{BenchDevnet, first_ok, web_sdl};

/// How long detection and failover may take together.
const TIMEOUT: Duration = Duration::from_secs(180);

/// The result (`-o json`).
#[derive(Debug, Serialize)]
pub(crate) struct FailoverBench {
    /// SIGSTOP to the watcher hearing the lease closed `provider_unresponsive`.
    pub(crate) detect_seconds: f64,
    /// SIGSTOP to the first HTTP 200 from the other provider.
    pub(crate) serving_again_seconds: f64,
    /// The devnet's block time.
    pub(crate) block_time_ms: u64,
    /// The chain's liveness window, in blocks.
    pub(crate) liveness_window_blocks: u64,
}

/// Runs the benchmark.
pub(crate) fn run(
    image: &str,
    block_time: Duration,
    progress: &dyn Fn(&str),
) -> anyhow::Result<FailoverBench> {
    let bench = BenchDevnet::new(image, block_time, 2)?;
    let devnet = bench.up(progress)?;
    let result = measure(
        &bench.rt,
        &bench.dir,
        &devnet.info,
        image,
        block_time,
        progress,
    );
    // A stopped process handles SIGTERM only once it runs again.
    if let Some(pid) = kumo_devnet::process::running(&bench.dir, "provider") {
        let _ = Command::new("kill")
            .args(["-CONT", &pid.to_string()])
            .status();
    }
    devnet.stop();
    bench.down();
    result
}

fn measure(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    info: &kumo_devnet::layout::DevnetInfo,
    image: &str,
    block_time: Duration,
    progress: &dyn Fn(&str),
) -> anyhow::Result<FailoverBench> {
    let key = Keystore::open(dir.join("keys"), Backend::Test)?
        .secret_key("tenant")
        .context("the devnet's tenant key")?;
    let text = web_sdl(image, "0.1", "32Mi", 1000);
    let (first, second) = match info.providers.as_slice() {
        [a, b, ..] => (a.clone(), b.clone()),
        _ => bail!("the devnet has fewer than two providers"),
    };
    progress("deploying to the first provider");
    let node = kumo_client::NodeClient::new(&info.node)?;
    let tenant = rt.block_on(kumo_tenant::Tenant::connect(node, key))?;
    let window = tenant.params().liveness_window;
    let reports = rt.block_on(kumo_tenant::deploy::deploy(
        &tenant,
        &text,
        DeployOptions {
            select: Selection::Provider(first.address),
            ..DeployOptions::default()
        },
        &mut |_| {},
    ))?;
    let dseq = reports.first().map(|r| r.status.dseq).context("no lease")?;

    progress("watching it, then stopping the first provider (SIGSTOP)");
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel::<WatchEvent>();
    let watcher = rt.spawn(async move {
        let opts = DeployOptions::default();
        let mut send = |e: WatchEvent| {
            let _ = tx.send(e);
        };
        kumo_tenant::failover::watch(&tenant, dseq, &text, &opts, &mut send).await
    });
    rt.block_on(async {
        while let Some(e) = events.recv().await {
            if matches!(e, WatchEvent::Watching { .. }) {
                return Ok(());
            }
        }
        bail!("the watcher ended before it started watching")
    })?;
    let pid = kumo_devnet::process::running(dir, "provider").context("the first provider")?;
    let stopped = Instant::now();
    let status = Command::new("kill")
        .args(["-STOP", &pid.to_string()])
        .status()?;
    if !status.success() {
        bail!("kill -STOP {pid} failed");
    }
    let (detected, uri) = rt.block_on(async {
        let mut detected = None;
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let e = tokio::time::timeout_at(deadline, events.recv())
                .await
                .context("no failover within the timeout")?
                .context("the watcher ended")?;
            match e {
                WatchEvent::LeaseLost { .. } => detected = Some(stopped.elapsed()),
                WatchEvent::FailoverFailed { error, .. } => bail!("failover failed: {error}"),
                WatchEvent::ServingAgain { report, .. } => {
                    let uri = report
                        .status
                        .services
                        .first()
                        .and_then(|s| s.uris.first())
                        .cloned()
                        .context("the new lease has no URL")?;
                    return anyhow::Ok((detected.context("serving before the loss?")?, uri));
                }
                _ => {}
            }
        }
    })?;
    let host = uri
        .trim_start_matches("http://")
        .split([':', '/'])
        .next()
        .unwrap_or_default()
        .to_string();
    let answered = first_ok(second.ingress, &host)?;
    watcher.abort();
    Ok(FailoverBench {
        detect_seconds: detected.as_secs_f64(),
        serving_again_seconds: (answered - stopped).as_secs_f64(),
        block_time_ms: block_time.as_millis() as u64,
        liveness_window_blocks: window,
    })
}
