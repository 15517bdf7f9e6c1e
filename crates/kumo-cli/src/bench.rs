//! `kumo bench chain|escrow|node|vm`: the speed goals, measured on this machine.
//!
//! Thin wrappers over [`kumo_chain::bench`], [`kumo_testnet::bench`] and [`kumo_vm::bench`]: they pick the sizes,
//! report progress on stderr and print the result (JSON with `-o json`, the keys scripts rely on
//! and nothing else).

use std::process::ExitCode;

use clap::{Args, Subcommand};
use kumo_chain::bench::{ChainConfig, EscrowConfig};

use crate::output::{OutputFormat, print_json};

/// Benchmarks. Build in release mode (`cargo run --release -p kumo-cli -- bench …`): a debug
/// build is many times slower and says nothing about the goals.
#[derive(Debug, Subcommand)]
pub(crate) enum BenchCommand {
    /// Signed marketplace transactions executed per second, beside ed25519 verifications per
    /// second of the same signatures (one by one, and in one batch per block) in the same run.
    ///
    /// Runs blocks of a realistic mix (sends, deployments, bids, leases, withdrawals), signature
    /// checks included (each block's in one batch, as a node does), state root excluded. Then
    /// verifies the same signatures one by one, and in one batch per block. Goal: ratio (txs /
    /// batch verifications, the physical limit of such a block) ≥ 0.5. Takes a few seconds.
    Chain(ChainArgs),
    /// Time of the end of a block with 100 and with 100,000 active leases.
    ///
    /// Builds each chain (one lease per deployment), then times `end_block` over consecutive
    /// blocks in each of which the same number of accounts run dry (their leases close with
    /// insufficient funds); reports the median. Goal: ratio (100,000 / 100) ≤ 2, i.e. the cost of
    /// a block does not grow with the number of leases. Takes about half a minute, mostly
    /// building the large chain.
    Escrow(EscrowArgs),
    /// A real network: committed transactions per second and finality latency.
    ///
    /// Starts 4 validator processes (`kumo node run`) on loopback in a temporary directory,
    /// 250 ms blocks, then sends signed transfers from many accounts to all of them (several in
    /// flight per account; each node's clients send them in batches, `POST /v1/txs/batch`, each
    /// batch waiting for its commit; --one-per-request sends one request per transaction) for
    /// --duration. Reports committed txs/s,
    /// the latency from submission to the node's commit answer (p50, p99) and the mean block
    /// interval, measured after a warm-up. Runs `kumo bench chain` first (the median of 5
    /// runs) for the ratio. Goals: finality p50 ≤ 2 × block time; committed txs/s ≥ 25% of the
    /// chain's txs/s.
    Node(NodeArgs),
    /// Seconds from deploying a VM lease until its tenant logs in with SSH, and the
    /// accelerator (kvm, or tcg where KVM is missing or does not run a guest, with the reason
    /// as accel_reason).
    ///
    /// Boots --image (a local cloud image with cloud-init, or the test guest that
    /// `scripts/vm-test-image.sh` builds) with 2 vCPUs and 512 MiB through the VM backend, in a
    /// temporary directory, and retries `ssh … true` with a fresh key until it succeeds; then
    /// tears the VM down. Ctrl-C or SIGTERM stops the VM first; a QEMU left by a run killed
    /// outright is stopped by the next run. Needs qemu-system-x86, qemu-utils and
    /// openssh-client.
    Vm(VmArgs),
    /// Seconds from `kumo deploy` to the service's first HTTP 200 through the ingress, beside
    /// a plain `docker run -p` of the same image to its first HTTP 200, in the same run.
    ///
    /// Starts a devnet (a validator and a provider on the Docker engine) in a temporary
    /// directory, deploys a web service of --image with the same library call as `kumo
    /// deploy` (cheapest bid), polls its URL every 20 ms, then does the same with `docker run`;
    /// removes everything afterwards. Goal: deploy_seconds ≤ docker_run_seconds + 2.0 with
    /// 250 ms blocks. Needs the test images (`scripts/test-images.sh`).
    Deploy(DeployArgs),
    /// One provider host carrying many leases: seconds from deploy to first HTTP 200 of the
    /// first and the last leases, the provider's memory, its reconcile time with all of them,
    /// and what is left once they are closed.
    ///
    /// Starts a devnet in a temporary directory (its provider's capacity.cpu_overcommit raised
    /// so --leases leases of 10m CPU fit), deploys --leases small web services of --image one
    /// after another (the library call of `kumo deploy`, cheapest bid), reads the provider's
    /// RSS, restarts the devnet (workloads keep running) and reads the provider's reconcile
    /// time from its log, closes every lease and counts the provider's containers, networks
    /// and volumes left. Goals: the last deploys take at most 1.5× the first; reconcile of 500
    /// leases ≤ 2 s; nothing left. First and last are medians of 5 deploys.
    Provider(ProviderArgs),
    /// How long a service is down when its provider freezes: seconds from SIGSTOP of the
    /// provider to the chain closing its lease (`detect_seconds`), and to the service's first
    /// HTTP 200 from the other provider (`serving_again_seconds`).
    ///
    /// Starts a devnet with two providers in a temporary directory, deploys a web service of
    /// --image on the first (the library call of `kumo deploy`), watches it (the one of
    /// `kumo lease watch`), stops the provider with SIGSTOP, and polls the new URL every
    /// 20 ms; removes everything afterwards. Goal: serving again within 60 s at 250 ms blocks
    /// (the devnet's liveness window is 20 s). Needs the test images
    /// (`scripts/test-images.sh`).
    Failover(DeployArgs),
}

/// What `kumo bench provider` runs.
#[derive(Debug, Args)]
pub(crate) struct ProviderArgs {
    /// How many leases to deploy.
    #[arg(long, default_value_t = 500)]
    leases: usize,
    /// A local image whose `httpd` serves /www on port 80.
    #[arg(long, default_value = "kumo-test/busybox:1")]
    image: String,
    /// The devnet's block time.
    #[arg(long, value_parser = kumo_node::home::parse_duration, default_value = "250ms")]
    block_time: std::time::Duration,
}

/// What `kumo bench deploy` runs.
#[derive(Debug, Args)]
pub(crate) struct DeployArgs {
    /// A local image whose `httpd` serves /www on port 80.
    #[arg(long, default_value = "kumo-test/busybox:1")]
    image: String,
    /// The devnet's block time.
    #[arg(long, value_parser = kumo_node::home::parse_duration, default_value = "250ms")]
    block_time: std::time::Duration,
}

/// What `kumo bench vm` boots.
#[derive(Debug, Args)]
pub(crate) struct VmArgs {
    /// The disk image (qcow2 or raw). Default: the test guest `bash scripts/vm-test-image.sh`
    /// cached (the newest in $KUMO_VM_IMAGE_DIR, else /var/cache/kumo/vm-images).
    #[arg(long)]
    image: Option<std::path::PathBuf>,
    /// How long to wait for SSH.
    #[arg(long, value_parser = kumo_node::home::parse_duration, default_value = "600s")]
    timeout: std::time::Duration,
}

/// Sizes of `kumo bench node`.
#[derive(Debug, Args)]
pub(crate) struct NodeArgs {
    /// How long the load runs (e.g. 20s).
    #[arg(long, value_parser = kumo_node::home::parse_duration, default_value = "20s")]
    duration: std::time::Duration,
    /// Sending accounts.
    #[arg(long, default_value_t = kumo_testnet::bench::NodeBenchConfig::default().accounts)]
    accounts: usize,
    /// Transactions in flight per account (at most 9: the mempool's nonce gap + 1).
    #[arg(long, default_value_t = kumo_testnet::bench::NodeBenchConfig::default().window)]
    window: usize,
    /// One HTTP request per transaction (`POST /v1/txs`) instead of each node's clients sending
    /// batches (`POST /v1/txs/batch`).
    #[arg(long)]
    one_per_request: bool,
    /// Most transactions in a block.
    #[arg(long, default_value_t = kumo_testnet::bench::NodeBenchConfig::default().max_block_txs)]
    max_block_txs: usize,
    /// Validators.
    #[arg(long, default_value_t = 4, hide = true)]
    validators: usize,
    /// Block time.
    #[arg(long, value_parser = kumo_node::home::parse_duration, default_value = "250ms", hide = true)]
    block_time: std::time::Duration,
    /// Skip `kumo bench chain` (no ratio; for quick runs).
    #[arg(long, hide = true)]
    no_chain: bool,
    /// Tenants of the `kumo bench chain` run (for tests; the default is the benchmark).
    #[arg(long, default_value_t = ChainConfig::default().tenants, hide = true)]
    chain_tenants: u32,
}

/// Sizes of `kumo bench chain` (hidden: for tests; the defaults are the benchmark).
#[derive(Debug, Args)]
pub(crate) struct ChainArgs {
    /// Tenants; each sends, deploys and leases once per round.
    #[arg(long, default_value_t = ChainConfig::default().tenants, hide = true)]
    tenants: u32,
    /// Providers; two bid on each order.
    #[arg(long, default_value_t = ChainConfig::default().providers, hide = true)]
    providers: u32,
    /// Rounds of three blocks each.
    #[arg(long, default_value_t = ChainConfig::default().rounds, hide = true)]
    rounds: u32,
    /// Verify each transaction's signature on its own instead of in one batch per block.
    #[arg(long)]
    no_batch: bool,
}

/// Sizes of `kumo bench escrow` (hidden: for tests; the defaults are the benchmark).
#[derive(Debug, Args)]
pub(crate) struct EscrowArgs {
    /// Leases of the small chain.
    #[arg(long, default_value_t = EscrowConfig::default().small, hide = true)]
    small: u32,
    /// Leases of the large chain.
    #[arg(long, default_value_t = EscrowConfig::default().large, hide = true)]
    large: u32,
    /// Blocks timed on each chain.
    #[arg(long, default_value_t = EscrowConfig::default().blocks, hide = true)]
    blocks: u32,
    /// Accounts running dry in each timed block.
    #[arg(long, default_value_t = EscrowConfig::default().dry_per_block, hide = true)]
    dry_per_block: u32,
    /// Evict the CPU caches before each timed block, as a node's other work between blocks
    /// would (both chains alike).
    #[arg(long)]
    cold_cache: bool,
}

fn progress(msg: &str) {
    eprintln!("{msg}…");
}

impl BenchCommand {
    pub(crate) fn run(&self, format: OutputFormat) -> anyhow::Result<ExitCode> {
        match self {
            BenchCommand::Chain(a) => {
                let cfg = ChainConfig {
                    tenants: a.tenants,
                    providers: a.providers,
                    rounds: a.rounds,
                    batch_verify: !a.no_batch,
                };
                anyhow::ensure!(
                    cfg.tenants > 0 && cfg.providers > 0 && cfg.rounds > 0,
                    "--tenants, --providers and --rounds must be at least 1"
                );
                let r = kumo_chain::bench::chain_with_progress(&cfg, &progress);
                match format {
                    OutputFormat::Json => print_json(&r)?,
                    OutputFormat::Text => {
                        println!(
                            "{:.0} signed txs/s executed end to end; ed25519 verifications/s: {:.0} in batches, {:.0} one by one",
                            r.txs_per_sec,
                            r.batch_verifications_per_sec,
                            r.sig_verifications_per_sec
                        );
                        println!(
                            "ratio to batch verification {:.2} (goal ≥ 0.5: {})",
                            r.ratio,
                            met(r.ratio >= 0.5)
                        );
                    }
                }
            }
            BenchCommand::Escrow(a) => {
                let cfg = EscrowConfig {
                    small: a.small,
                    large: a.large,
                    blocks: a.blocks,
                    dry_per_block: a.dry_per_block,
                    cold_cache: a.cold_cache,
                };
                anyhow::ensure!(
                    cfg.blocks > 0 && cfg.dry_per_block > 0,
                    "--blocks and --dry-per-block must be at least 1"
                );
                anyhow::ensure!(
                    u64::from(cfg.blocks) * u64::from(cfg.dry_per_block) <= u64::from(cfg.small)
                        && cfg.small <= cfg.large,
                    "each chain needs at least blocks × dry-per-block leases ({} × {}), and the \
                     small one no more than the large one",
                    cfg.blocks,
                    cfg.dry_per_block
                );
                let r = kumo_chain::bench::escrow_with_progress(&cfg, &progress);
                match format {
                    OutputFormat::Json => print_json(&r)?,
                    OutputFormat::Text => {
                        println!(
                            "end_block, median of {} blocks with {} accounts running dry in each:",
                            cfg.blocks, cfg.dry_per_block
                        );
                        println!("  {:>7} leases: {:.4} ms", cfg.small, r.end_block_ms_100);
                        println!("  {:>7} leases: {:.4} ms", cfg.large, r.end_block_ms_100000);
                        println!("ratio {:.2} (goal ≤ 2: {})", r.ratio, met(r.ratio <= 2.0));
                    }
                }
            }
            BenchCommand::Deploy(a) => {
                let r = crate::bench_deploy::run(&a.image, a.block_time, &progress)?;
                match format {
                    OutputFormat::Json => print_json(&r)?,
                    OutputFormat::Text => {
                        println!(
                            "deploy to first HTTP 200: {:.2} s; docker run: {:.2} s ({} ms blocks)",
                            r.deploy_seconds, r.docker_run_seconds, r.block_time_ms
                        );
                        println!(
                            "goal deploy ≤ docker run + 2.0 s: {}",
                            met(r.deploy_seconds <= r.docker_run_seconds + 2.0)
                        );
                    }
                }
            }
            BenchCommand::Failover(a) => {
                let r = crate::bench_failover::run(&a.image, a.block_time, &progress)?;
                match format {
                    OutputFormat::Json => print_json(&r)?,
                    OutputFormat::Text => {
                        println!(
                            "provider stopped: lease closed after {:.1} s (window {} blocks of {} ms), serving again after {:.1} s",
                            r.detect_seconds,
                            r.liveness_window_blocks,
                            r.block_time_ms,
                            r.serving_again_seconds
                        );
                        println!(
                            "goal serving again ≤ 60 s: {}",
                            met(r.serving_again_seconds <= 60.0)
                        );
                    }
                }
            }
            BenchCommand::Provider(a) => {
                let r = crate::bench_provider::run(&a.image, a.leases, a.block_time, &progress)?;
                match format {
                    OutputFormat::Json => print_json(&r)?,
                    OutputFormat::Text => {
                        println!(
                            "{} leases ({} ms blocks): deploy {:.2} s first, {:.2} s last; provider RSS {:.0} MiB; reconcile {:.0} ms; {} answering after the restart; {} objects left {:.1} s after the last close",
                            r.leases,
                            r.block_time_ms,
                            r.deploy_seconds_first,
                            r.deploy_seconds_last,
                            r.provider_rss_mb,
                            r.reconcile_ms,
                            r.answering_after_restart,
                            r.left_after_close,
                            r.teardown_lag_seconds
                        );
                        println!(
                            "goal last ≤ 1.5 × first: {}",
                            met(r.deploy_seconds_last <= 1.5 * r.deploy_seconds_first)
                        );
                        println!("goal reconcile ≤ 2 s: {}", met(r.reconcile_ms <= 2000.0));
                        println!(
                            "goal all answering after the restart: {}",
                            met(r.answering_after_restart == r.leases)
                        );
                        println!("goal nothing left: {}", met(r.left_after_close == 0));
                    }
                }
            }
            BenchCommand::Vm(a) => {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .build()?;
                let image = match a.image.clone() {
                    Some(image) => image,
                    None => {
                        let dir = kumo_vm::bench::test_image_dir();
                        kumo_vm::bench::cached_test_image(&dir).ok_or_else(|| {
                            anyhow::anyhow!(
                                "no --image given and no test guest in {}: build it once with \
                                 `sudo bash scripts/vm-test-image.sh` (it prints the image's \
                                 path), or pass --image PATH",
                                dir.display()
                            )
                        })?
                    }
                };
                progress(&format!("image {}", image.display()));
                let r =
                    runtime.block_on(kumo_vm::bench::run_local(&image, a.timeout, &progress))?;
                match format {
                    OutputFormat::Json => print_json(&r)?,
                    OutputFormat::Text => {
                        println!(
                            "lease to SSH: {:.1} s (accel {})",
                            r.lease_to_ssh_seconds, r.accel
                        );
                        if let Some(reason) = &r.accel_reason {
                            println!("not KVM: {reason}");
                        }
                    }
                }
            }
            BenchCommand::Node(a) => {
                let cfg = kumo_testnet::bench::NodeBenchConfig {
                    duration: a.duration,
                    warmup: (a.duration / 6).min(std::time::Duration::from_secs(3)),
                    validators: a.validators,
                    block_time: a.block_time,
                    accounts: a.accounts,
                    window: a.window,
                    batch: !a.one_per_request,
                    max_block_txs: a.max_block_txs,
                    chain: (!a.no_chain).then(|| ChainConfig {
                        tenants: a.chain_tenants.max(1),
                        ..ChainConfig::default()
                    }),
                };
                anyhow::ensure!(
                    (1..=9).contains(&cfg.window),
                    "--window must be 1 to 9: the mempool holds at most 8 missing nonces below a                      pending transaction"
                );
                let exe = std::env::current_exe()?;
                let r = kumo_testnet::bench::node(&exe, &cfg, &progress)?;
                match format {
                    OutputFormat::Json => print_json(&r)?,
                    OutputFormat::Text => {
                        println!(
                            "{:.0} committed txs/s over {} blocks ({} validators, {} txs in flight)",
                            r.committed_txs_per_sec, r.blocks, r.validators, r.in_flight
                        );
                        println!(
                            "finality p50 {:.0} ms, p99 {:.0} ms; mean block interval {:.0} ms (target {:.0} ms)",
                            r.finality_ms_p50,
                            r.finality_ms_p99,
                            r.block_time_ms,
                            r.block_time_target_ms
                        );
                        let two_blocks = 2.0 * r.block_time_target_ms;
                        println!(
                            "goal finality p50 ≤ 2 × block time ({two_blocks:.0} ms): {}",
                            met(r.finality_ms_p50 <= two_blocks)
                        );
                        if r.chain_txs_per_sec.is_finite() {
                            println!(
                                "goal committed txs/s ≥ 25% of kumo bench chain's {:.0} txs/s: ratio {:.3}, {}",
                                r.chain_txs_per_sec,
                                r.ratio,
                                met(r.ratio >= 0.25)
                            );
                        }
                        if r.failed_txs > 0 {
                            println!("{} transactions were given up on", r.failed_txs);
                        }
                    }
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};

    #[test]
    fn parses_bench_commands_with_default_sizes() {
        let cli = Cli::try_parse_from(["kumo", "bench", "escrow", "-o", "json"]).unwrap();
        let Command::Bench(super::BenchCommand::Escrow(a)) = cli.command else {
            panic!("not bench escrow");
        };
        assert_eq!((a.small, a.large), (100, 100_000));
        assert!(!a.cold_cache);
        let cli = Cli::try_parse_from(["kumo", "bench", "chain", "--no-batch"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Bench(super::BenchCommand::Chain(ChainArgs { no_batch: true, .. }))
        ));
        let cli = Cli::try_parse_from(["kumo", "bench", "deploy", "-o", "json"]).unwrap();
        let Command::Bench(super::BenchCommand::Deploy(a)) = cli.command else {
            panic!("not bench deploy");
        };
        assert_eq!(a.block_time, std::time::Duration::from_millis(250));
        let cli = Cli::try_parse_from(["kumo", "bench", "vm", "--image", "/tmp/d.qcow2"]).unwrap();
        let Command::Bench(super::BenchCommand::Vm(a)) = cli.command else {
            panic!("not bench vm");
        };
        assert_eq!(a.timeout, std::time::Duration::from_secs(600));
        assert_eq!(a.image, Some("/tmp/d.qcow2".into()));
        let cli = Cli::try_parse_from(["kumo", "bench", "vm", "-o", "json"]).unwrap();
        let Command::Bench(super::BenchCommand::Vm(a)) = cli.command else {
            panic!("not bench vm");
        };
        assert_eq!(a.image, None, "the cached test guest is the default");
    }

    use super::ChainArgs;
}
