//! `kumo top-up grant|revoke`: an allowance the chain itself spends to keep a deployment funded
//! (end of block, no bot): from the `--from` account, up to `--limit` in all, `--below-blocks`
//! blocks' worth each time fewer than that many blocks of funds remain.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use kumo_tenant::lease::{self, TopUpSet};
use kumo_types::{Address, Coin};

use crate::{
    client::block_on,
    deploy::TenantArgs,
    output::{OutputFormat, print_json},
};

/// Automatic top-ups of a deployment's escrow, run by the chain.
#[derive(Debug, Subcommand)]
pub(crate) enum TopUpCommand {
    /// Allow the chain to move funds from your account into a deployment when it runs low
    /// (replaces the deployment's allowance, if you granted it or own the deployment).
    #[command(
        after_help = "Examples:\n  kumo top-up grant 42 --limit 50000000ukumo --below-blocks 600\n  kumo top-up grant 42 --owner kumo1... --limit 1000000uusd   # someone else's deployment\n\nEach time fewer than --below-blocks blocks of funds remain, the end of that block moves\n--below-blocks blocks' worth (at the deployment's current rate) from your account, until\n--limit is spent or your account cannot pay; then the deployment runs dry as usual and\ncloses insufficient_funds. `kumo lease status` shows the allowance and warns when funds\nrun low."
    )]
    Grant(GrantArgs),
    /// End a deployment's allowance (its granter or the deployment's owner).
    #[command(after_help = "Example:\n  kumo top-up revoke 42")]
    Revoke(RevokeArgs),
}

/// `kumo top-up grant`.
#[derive(Debug, Args)]
pub(crate) struct GrantArgs {
    /// The deployment's sequence number.
    pub(crate) dseq: u64,
    /// The most the chain may move in all, in the deployment's denomination.
    #[arg(long)]
    pub(crate) limit: Coin,
    /// Top up when fewer than this many blocks of funds remain, by this many blocks' worth.
    #[arg(long, default_value_t = 600)]
    pub(crate) below_blocks: u64,
    /// The deployment's owner, to back someone else's deployment; default: the `--from` key's.
    #[arg(long, value_name = "ADDRESS")]
    pub(crate) owner: Option<Address>,
    #[command(flatten)]
    pub(crate) tenant: TenantArgs,
}

/// `kumo top-up revoke`.
#[derive(Debug, Args)]
pub(crate) struct RevokeArgs {
    /// The deployment's sequence number.
    pub(crate) dseq: u64,
    /// The deployment's owner; default: the `--from` key's.
    #[arg(long, value_name = "ADDRESS")]
    pub(crate) owner: Option<Address>,
    #[command(flatten)]
    pub(crate) tenant: TenantArgs,
}

impl TopUpCommand {
    pub(crate) fn run(&self, format: OutputFormat) -> anyhow::Result<ExitCode> {
        let set = match self {
            TopUpCommand::Grant(a) => block_on(async {
                let t = a.tenant.connect().await?;
                anyhow::Ok(
                    lease::grant_top_up(&t, a.owner, a.dseq, a.limit.clone(), a.below_blocks)
                        .await?,
                )
            })??,
            TopUpCommand::Revoke(a) => block_on(async {
                let t = a.tenant.connect().await?;
                anyhow::Ok(lease::revoke_top_up(&t, a.owner, a.dseq).await?)
            })??,
        };
        match format {
            OutputFormat::Json => print_json(&set)?,
            OutputFormat::Text => println!("{}", describe(&set)),
        }
        Ok(ExitCode::SUCCESS)
    }
}

fn describe(s: &TopUpSet) -> String {
    let left = s
        .blocks_left
        .map(|b| format!("; the escrow pays {b} more blocks by itself"))
        .unwrap_or_default();
    match &s.top_up {
        Some(a) => format!(
            "deployment {}: {} may top it up by {} blocks' worth when fewer remain, {} left to move{left}",
            s.dseq, a.granter, a.below_blocks, a.remaining
        ),
        None => format!("deployment {}: no allowance{left}", s.dseq),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};

    #[test]
    fn parses_top_up_commands() {
        let cli = Cli::try_parse_from([
            "kumo",
            "top-up",
            "grant",
            "42",
            "--limit",
            "5000000ukumo",
            "--below-blocks",
            "50",
        ])
        .unwrap();
        let Command::TopUp(super::TopUpCommand::Grant(a)) = cli.command else {
            panic!("grant")
        };
        assert_eq!((a.dseq, a.below_blocks), (42, 50));
        assert_eq!(a.limit.to_string(), "5000000ukumo");
        assert!(Cli::try_parse_from(["kumo", "top-up", "grant", "42"]).is_err());
        assert!(Cli::try_parse_from(["kumo", "top-up", "revoke", "42"]).is_ok());
    }
}
