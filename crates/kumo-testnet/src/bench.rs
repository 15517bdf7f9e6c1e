//! `kumo bench node`: a real network under load, measured as its clients see it.
//!
//! 1. Runs `kumo_chain::bench::chain` first (the state machine alone, nothing else running),
//!    5 times, for the ratio: the median.
//! 2. Builds a testnet in a temporary directory ([`crate::init`]): `validators` validators on
//!    loopback, free ports, `block_time` blocks, `accounts` funded accounts.
//! 3. Starts one `kumo node run` process per validator ([`crate::process`]).
//! 4. Runs the load ([`crate::load`]): every account sends 1 ukumo at a time, signed in
//!    advance, `window` transactions in flight per account, spread over the nodes, for
//!    `duration`: by default each node's clients send batches (`POST /v1/txs/batch?wait=commit`,
//!    [`crate::load::run_batched`]), else one request per transaction ([`crate::load::run`]).
//!    The testnet's blocks may hold `max_block_txs` transactions (10,000 by default: at 2,000,
//!    the node default, 250 ms blocks cap a chain at 8,000 txs/s).
//! 5. Measures over the load after `warmup`: transactions reported committed per second,
//!    finality latency (first submission → the node's commit answer; p50, p99) of those
//!    submitted in that window, and the mean interval between the blocks of that window (read
//!    from node 0 after the load).
//!
//! Goals (printed with the result): finality p50 ≤ 2 × block time; committed txs/s ≥ 25 % of
//! `kumo bench chain`'s txs/s.

use std::{
    path::Path,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use kumo_chain::genesis::GenesisBalance;
use kumo_types::{Address, SecretKey};
use serde::Serialize;

use crate::{
    init::{TestnetSpec, init},
    load::{LoadConfig, Sender, run, run_batched},
    process::NodeProcess,
};

/// What to run.
#[derive(Debug, Clone)]
pub struct NodeBenchConfig {
    /// How long the load runs.
    pub duration: Duration,
    /// The start of the load not measured (connections, first blocks).
    pub warmup: Duration,
    /// Validators (processes).
    pub validators: usize,
    /// Block time.
    pub block_time: Duration,
    /// Sending accounts.
    pub accounts: usize,
    /// Transactions in flight per account.
    pub window: usize,
    /// Send each node's transactions in batches (`POST /v1/txs/batch`, [`crate::load::run_batched`])
    /// rather than one request per transaction ([`crate::load::run`]).
    pub batch: bool,
    /// Most transactions in a block.
    pub max_block_txs: usize,
    /// `kumo bench chain`'s sizes for the ratio (none: skip it).
    pub chain: Option<kumo_chain::bench::ChainConfig>,
}

impl Default for NodeBenchConfig {
    fn default() -> Self {
        NodeBenchConfig {
            duration: Duration::from_secs(20),
            warmup: Duration::from_secs(3),
            validators: 4,
            block_time: Duration::from_millis(250),
            // 8,000 in flight. The clients are closed loops, so committed txs/s is at most what
            // is in flight per finality: with 1,600 or 4,000 in flight (400 or 1,000 accounts)
            // the bench measured its own load (~6k and ~16k txs/s on a 2-core machine, one
            // block's finality), not the network. At 8,000 the 4 validators are busy, and
            // finality p50 (the other goal) stays ~1.4 block times there (2026-12-03).
            accounts: 2000,
            window: 4,
            batch: true,
            max_block_txs: 10_000,
            chain: Some(Default::default()),
        }
    }
}

/// The result (`-o json` prints it).
#[derive(Debug, Clone, Serialize)]
pub struct NodeBenchReport {
    /// Transactions reported committed per second, over the measured window.
    pub committed_txs_per_sec: f64,
    /// Median finality latency, milliseconds.
    pub finality_ms_p50: f64,
    /// 99th percentile finality latency, milliseconds.
    pub finality_ms_p99: f64,
    /// Mean interval between blocks in the measured window, milliseconds.
    pub block_time_ms: f64,
    /// `kumo bench chain`'s signed txs executed per second, measured in the same run (the
    /// median of 5 runs).
    pub chain_txs_per_sec: f64,
    /// `committed_txs_per_sec / chain_txs_per_sec` (goal ≥ 0.25).
    pub ratio: f64,
    /// Transactions committed in the measured window.
    pub committed_txs: usize,
    /// Blocks in the measured window.
    pub blocks: usize,
    /// Transactions the load gave up on.
    pub failed_txs: usize,
    /// The configured block time, milliseconds.
    pub block_time_target_ms: f64,
    /// Validators.
    pub validators: usize,
    /// Sending accounts × transactions in flight per account.
    pub in_flight: usize,
}

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The testnet could not be built.
    #[error(transparent)]
    Testnet(#[from] crate::init::TestnetError),
    /// A node did not start or serve.
    #[error(transparent)]
    Process(#[from] crate::process::ProcessError),
    /// Something else (temporary directory, runtime, sizes).
    #[error("{0}")]
    Other(String),
}

/// How many times [`node`] runs `kumo bench chain` for the ratio's denominator (the median).
const CHAIN_RUNS: usize = 5;

fn percentile(sorted_ms: &[f64], p: f64) -> f64 {
    if sorted_ms.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted_ms.len() as f64 - 1.0) * p).round() as usize;
    sorted_ms[i.min(sorted_ms.len() - 1)]
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One node's state after a load that gave transactions up: whether it runs, what it answers,
/// the end of its log.
async fn node_report(i: usize, p: &mut NodeProcess) -> String {
    let running = if p.is_running() { "running" } else { "exited" };
    let client = p.client();
    let status = match tokio::time::timeout(Duration::from_secs(5), client.status()).await {
        Ok(Ok(s)) => format!(
            "height {}, {} transactions pending",
            s.height, s.mempool.txs
        ),
        Ok(Err(e)) => format!("status failed: {e}"),
        Err(_) => "status did not answer within 5 s".into(),
    };
    format!(
        "node{i} ({running}, {status}); the end of {}:\n{}",
        p.home().join(crate::process::LOG_FILE).display(),
        p.log_tail(40)
    )
}

/// Runs the benchmark with `exe` as the `kumo` binary (`std::env::current_exe()` from the CLI).
pub fn node(
    exe: &Path,
    config: &NodeBenchConfig,
    progress: &dyn Fn(&str),
) -> Result<NodeBenchReport, BenchError> {
    if config.accounts == 0 || config.window == 0 || config.validators == 0 {
        return Err(BenchError::Other(
            "--accounts, --window and --validators must be at least 1".into(),
        ));
    }
    if config.warmup >= config.duration {
        return Err(BenchError::Other(
            "the warm-up must be shorter than the duration".into(),
        ));
    }
    let chain_txs_per_sec = match &config.chain {
        Some(chain) => {
            // Its timed part is under half a second, so a hiccup of the machine moves one run
            // by a quarter: the median of several.
            progress(&format!(
                "measuring the state machine alone (kumo bench chain, median of {CHAIN_RUNS} runs)"
            ));
            let mut runs: Vec<f64> = (0..CHAIN_RUNS)
                .map(|_| kumo_chain::bench::chain(chain).txs_per_sec)
                .collect();
            runs.sort_by(f64::total_cmp);
            runs[CHAIN_RUNS / 2]
        }
        None => f64::NAN,
    };

    let dir = tempfile::Builder::new()
        .prefix("kumo-bench-node-")
        .tempdir()
        .map_err(|e| BenchError::Other(format!("temporary directory: {e}")))?;
    let keys: Vec<SecretKey> = (0..config.accounts)
        .map(|i| {
            let mut seed = [7u8; 32];
            seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
            SecretKey::from_seed(seed)
        })
        .collect();
    let addresses: Vec<Address> = keys
        .iter()
        .map(|k| Address::from_public_key(&k.public_key()))
        .collect();
    let mut spec = TestnetSpec::new(config.validators, dir.path());
    spec.base_port = 0;
    spec.block_time = config.block_time;
    spec.max_block_txs = config.max_block_txs;
    // Transfers are ~200 bytes: room for max_block_txs of them.
    spec.max_block_bytes = spec.max_block_bytes.max(config.max_block_txs * 512);
    spec.chain_id = "kumo-bench-1".into();
    spec.balances = addresses
        .iter()
        .map(|a| GenesisBalance {
            address: *a,
            coins: "1000000000000ukumo".parse().expect("valid coins"),
        })
        .collect();
    progress(&format!(
        "building a {}-validator testnet in {}",
        config.validators,
        dir.path().display()
    ));
    let testnet = init(&spec)?;

    // Enough signed transactions that no account runs dry before the end, even if every
    // transaction took a single block.
    let blocks = config.duration.as_secs_f64() / config.block_time.as_secs_f64();
    let per_account = (config.window as f64 * (blocks + 4.0)).ceil() as usize;
    progress(&format!(
        "signing {} transactions ({} accounts × {per_account})",
        config.accounts * per_account,
        config.accounts
    ));
    let senders: Vec<Sender> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let to = addresses[(i + 1) % addresses.len()];
            Sender::sends(k, &testnet.chain_id, to, 0, per_account, 5_000)
        })
        .collect();

    progress(&format!("starting {} nodes", config.validators));
    let mut procs: Vec<NodeProcess> = testnet
        .nodes
        .iter()
        .map(|n| NodeProcess::start(exe, &dir.path().join(&n.home), &n.api))
        .collect::<Result<_, _>>()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| BenchError::Other(format!("tokio runtime: {e}")))?;
    let result = runtime.block_on(async {
        for p in &mut procs {
            p.wait_serving(Duration::from_secs(60)).await?;
        }
        // Wait for the first blocks on every node, so the warm-up is not spent on startup and
        // a node that failed after its API came up (its p2p port taken, say) fails the bench
        // here, not as transactions given up a minute later.
        let first = Instant::now();
        for (i, p) in procs.iter_mut().enumerate() {
            let client = p.client();
            while client.status().await.map_or(0, |s| s.height) < 2 {
                if !p.is_running() || first.elapsed() > Duration::from_secs(60) {
                    return Err(BenchError::Other(format!(
                        "node{i} did not reach height 2: {}",
                        node_report(i, p).await
                    )));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let client = procs[0].client();
        progress(&format!(
            "load: {} accounts × {} in flight for {:?}",
            config.accounts, config.window, config.duration
        ));
        let start = Instant::now();
        let start_wall = SystemTime::now();
        let load = LoadConfig {
            window: config.window,
            wait: Duration::from_secs(30),
            stop_at: Some(start + config.duration),
            give_up_after: Duration::from_secs(60),
        };
        let clients = procs.iter().map(NodeProcess::client).collect();
        let report = if config.batch {
            run_batched(senders, clients, load).await
        } else {
            run(senders, clients, load).await
        };
        if !report.failed.is_empty() {
            let mut why: std::collections::BTreeMap<&str, usize> = Default::default();
            for (_, reason) in &report.failed {
                *why.entry(reason.as_str()).or_default() += 1;
            }
            let why: Vec<String> = why.iter().map(|(r, n)| format!("{n} × {r}")).collect();
            progress(&format!(
                "{} transactions were not committed: {}",
                report.failed.len(),
                why.join("; ")
            ));
            // What the nodes were doing: which one stopped, or stopped committing, and why.
            for (i, p) in procs.iter_mut().enumerate() {
                progress(&node_report(i, p).await);
            }
        }
        let from = start + config.warmup;
        let to = start + config.duration;
        let from_ms = unix_ms(start_wall + config.warmup);
        let to_ms = unix_ms(start_wall + config.duration);

        let committed_in_window = report
            .committed
            .iter()
            .filter(|c| {
                let at = c.submitted + c.latency;
                at >= from && at < to
            })
            .count();
        let mut latencies: Vec<f64> = report
            .committed
            .iter()
            .filter(|c| c.submitted >= from && c.submitted < to)
            .map(|c| c.latency.as_secs_f64() * 1000.0)
            .collect();
        latencies.sort_by(f64::total_cmp);

        progress("reading the blocks of the measured window");
        let tip = client
            .status()
            .await
            .map_err(|e| BenchError::Other(e.to_string()))?
            .height;
        let mut times = Vec::new();
        for h in (1..=tip).rev() {
            let b = client
                .block(h)
                .await
                .map_err(|e| BenchError::Other(e.to_string()))?;
            if b.time_ms < from_ms {
                break;
            }
            if b.time_ms < to_ms {
                times.push(b.time_ms);
            }
        }
        times.reverse();
        let block_time_ms = match (times.first(), times.last()) {
            (Some(a), Some(b)) if times.len() > 1 => (b - a) as f64 / (times.len() - 1) as f64,
            _ => f64::NAN,
        };
        let seconds = (to - from).as_secs_f64();
        let committed_txs_per_sec = committed_in_window as f64 / seconds;
        Ok(NodeBenchReport {
            committed_txs_per_sec,
            finality_ms_p50: percentile(&latencies, 0.50),
            finality_ms_p99: percentile(&latencies, 0.99),
            block_time_ms,
            chain_txs_per_sec,
            ratio: committed_txs_per_sec / chain_txs_per_sec,
            committed_txs: committed_in_window,
            blocks: times.len(),
            failed_txs: report.failed.len(),
            block_time_target_ms: config.block_time.as_secs_f64() * 1000.0,
            validators: config.validators,
            in_flight: config.accounts * config.window,
        })
    });
    progress("stopping the nodes");
    for p in &mut procs {
        p.terminate(Duration::from_secs(10));
    }
    result
}
