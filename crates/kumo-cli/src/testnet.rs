//! `kumo testnet init`: the homes of a local multi-validator network (over
//! [`kumo_testnet::init`]).

use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use kumo_testnet::TestnetSpec;
use kumo_types::Coins;

use crate::output::{OutputFormat, print_json};

/// Testnet commands.
#[derive(Debug, Subcommand)]
pub(crate) enum TestnetCommand {
    /// Create DIR/node0..N-1 (one `kumo node run` home per validator, one genesis),
    /// DIR/follower0..M-1 (full nodes that follow without voting), funded accounts in a `test`
    /// keyring (DIR/keys) and DIR/testnet.json.
    Init(InitArgs),
}

/// `kumo testnet init`.
#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// Number of validators.
    #[arg(long, default_value_t = 4)]
    pub(crate) validators: usize,
    /// Number of followers: full nodes that follow the chain without voting (every
    /// validator's config lets them connect).
    #[arg(long, default_value_t = 0)]
    pub(crate) followers: usize,
    /// The testnet directory.
    #[arg(long, value_name = "DIR")]
    pub(crate) dir: PathBuf,
    /// Time between blocks (e.g. 250ms, 1s).
    #[arg(long, value_parser = kumo_node::home::parse_duration, default_value = "250ms")]
    pub(crate) block_time: Duration,
    /// Node i listens for peers on P+2i and serves its API on P+2i+1; 0 picks free ports.
    #[arg(long, value_name = "P", default_value_t = kumo_node::home::DEFAULT_P2P_PORT)]
    pub(crate) base_port: u16,
    /// The chain id.
    #[arg(long, default_value = kumo_testnet::init::DEFAULT_CHAIN_ID)]
    pub(crate) chain_id: String,
    /// A funded account: its key NAME (created in DIR/keys) and its COINS (e.g.
    /// `alice=1000000ukumo,500uusd`). Repeat for more. Default: a well funded `faucet`.
    #[arg(long, value_name = "NAME=COINS", value_parser = parse_fund)]
    pub(crate) fund: Vec<(String, Coins)>,
    /// Overwrite the files of an existing testnet in DIR (deletes the nodes' data).
    #[arg(long)]
    pub(crate) force: bool,
}

fn parse_fund(s: &str) -> Result<(String, Coins), String> {
    let (name, coins) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: write NAME=COINS, e.g. alice=1000000ukumo,500uusd"))?;
    let coins: Coins = coins
        .parse()
        .map_err(|e| format!("{s:?}: the coins do not parse: {e}"))?;
    Ok((name.to_string(), coins))
}

impl TestnetCommand {
    pub(crate) fn run(&self, format: OutputFormat) -> anyhow::Result<ExitCode> {
        let TestnetCommand::Init(a) = self;
        let mut spec = TestnetSpec::new(a.validators, a.dir.clone());
        spec.followers = a.followers;
        spec.block_time = a.block_time;
        spec.base_port = a.base_port;
        spec.chain_id = a.chain_id.clone();
        spec.force = a.force;
        if !a.fund.is_empty() {
            spec.fund = a.fund.clone();
        }
        let t = kumo_testnet::init::init(&spec)
            .with_context(|| format!("cannot create the testnet in {}", a.dir.display()))?;
        match format {
            OutputFormat::Json => print_json(&t)?,
            OutputFormat::Text => {
                println!(
                    "testnet {} in {}: {} validators, {} followers, {} blocks",
                    t.chain_id,
                    a.dir.display(),
                    a.validators,
                    a.followers,
                    t.block_time
                );
                for n in &t.nodes {
                    println!(
                        "  {:<10} {:<9} api {:<24} p2p {}",
                        n.moniker, n.role, n.api, n.p2p
                    );
                }
                for acc in &t.accounts {
                    println!("  account {:<10} {} ({})", acc.name, acc.address, acc.coins);
                }
                println!(
                    "start each node:   kumo node run --home {}/HOME (node0, …, follower0, …)",
                    a.dir.display()
                );
                println!(
                    "send from a key:   kumo tx send --home {} --keyring-backend test --from NAME --node {} TO COINS",
                    a.dir.display(),
                    t.nodes[0].api
                );
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    #[test]
    fn parses_testnet_init() {
        let cli = Cli::try_parse_from([
            "kumo",
            "testnet",
            "init",
            "--dir",
            "/tmp/t",
            "--fund",
            "alice=10ukumo,5uusd",
            "--fund",
            "bob=1ukumo",
        ])
        .unwrap();
        let Command::Testnet(TestnetCommand::Init(a)) = cli.command else {
            panic!("not testnet init");
        };
        assert_eq!(a.validators, 4);
        assert_eq!(a.block_time, Duration::from_millis(250));
        assert_eq!(a.fund.len(), 2);
        assert_eq!(a.fund[0].0, "alice");
        assert_eq!(a.fund[0].1.to_string(), "10ukumo,5uusd");
        let bad = Cli::try_parse_from(["kumo", "testnet", "init", "--dir", "d", "--fund", "x"]);
        assert!(bad.unwrap_err().to_string().contains("NAME=COINS"));
    }
}
