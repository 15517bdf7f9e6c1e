//! `kumo bench chain|escrow`: the state machine's speed goals, measured on this machine.
//!
//! Thin wrappers over [`kumo_chain::bench`]: they pick the sizes, report progress on stderr and
//! print the result (JSON with `-o json`, the keys scripts rely on and nothing else).

use std::process::ExitCode;

use clap::{Args, Subcommand};
use kumo_chain::bench::{ChainConfig, EscrowConfig};

use crate::output::{OutputFormat, print_json};

/// Benchmarks. Build in release mode (`cargo run --release -p kumo-cli -- bench …`): a debug
/// build is many times slower and says nothing about the goals.
#[derive(Debug, Subcommand)]
pub(crate) enum BenchCommand {
    /// Signed marketplace transactions executed per second, beside ed25519 verifications per
    /// second measured in the same run.
    ///
    /// Runs blocks of a realistic mix (sends, deployments, bids, leases, withdrawals), signature
    /// checks included (each block's in one batch, as a node does), state root excluded. Then
    /// verifies each of the same signatures one by one. Goal: ratio (txs / verifications) ≥ 0.5.
    /// Takes a few seconds.
    Chain(ChainArgs),
    /// Time of the end of a block with 100 and with 100,000 active leases.
    ///
    /// Builds each chain (one lease per deployment), then times `end_block` over consecutive
    /// blocks in each of which the same number of accounts run dry (their leases close with
    /// insufficient funds); reports the median. Goal: ratio (100,000 / 100) ≤ 2, i.e. the cost of
    /// a block does not grow with the number of leases. Takes about half a minute, mostly
    /// building the large chain.
    Escrow(EscrowArgs),
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
                            "{:.0} signed txs/s executed end to end; {:.0} single ed25519 verifications/s",
                            r.txs_per_sec, r.sig_verifications_per_sec
                        );
                        println!("ratio {:.2} (goal ≥ 0.5: {})", r.ratio, met(r.ratio >= 0.5));
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
        assert!(Cli::try_parse_from(["kumo", "bench", "deploy"]).is_err());
    }

    use super::ChainArgs;
}
