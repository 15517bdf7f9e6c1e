//! `kumo node init|run`: create a node's home, run the node (over [`kumo_node::home`] and
//! [`kumo_node::service`]).

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use commonware_cryptography::Signer as _;
use kumo_node::home::{self, Home, InitOptions, NodeGenesis};
use serde_json::json;

use crate::{
    home::HomeArgs,
    output::{OutputFormat, print_json},
};

/// Node commands.
#[derive(Debug, Subcommand)]
pub(crate) enum NodeCommand {
    /// Create a node's home: config.toml, node_key.json (0600) and, unless --genesis is given,
    /// a genesis.json with this node as the only validator.
    Init(InitArgs),
    /// Run the node until SIGINT or SIGTERM: consensus, mempool, block store and JSON API.
    Run(RunArgs),
}

/// `kumo node init`.
#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    #[command(flatten)]
    pub(crate) home: HomeArgs,
    /// Chain id of the new genesis (ignored with --genesis).
    #[arg(long, default_value = home::DEFAULT_CHAIN_ID)]
    pub(crate) chain_id: String,
    /// A name for this node (logs).
    #[arg(long, default_value = "node0")]
    pub(crate) moniker: String,
    /// Where to listen for the other validators.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:26656")]
    pub(crate) p2p: SocketAddr,
    /// Where the JSON API listens.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:26657")]
    pub(crate) api: SocketAddr,
    /// Time between blocks (e.g. 250ms, 1s).
    #[arg(long, value_parser = home::parse_duration, default_value = "1s")]
    pub(crate) block_time: Duration,
    /// Join the chain of this genesis.json instead of starting a new one.
    #[arg(long, value_name = "FILE")]
    pub(crate) genesis: Option<PathBuf>,
    /// Overwrite an existing home; deletes its data directory.
    #[arg(long)]
    pub(crate) force: bool,
}

/// `kumo node run`.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    pub(crate) home: HomeArgs,
}

impl NodeCommand {
    pub(crate) fn run(&self, format: OutputFormat) -> anyhow::Result<ExitCode> {
        match self {
            NodeCommand::Init(a) => init(a, format),
            NodeCommand::Run(a) => run(a, format),
        }
    }
}

fn init(a: &InitArgs, format: OutputFormat) -> anyhow::Result<ExitCode> {
    let dir = a.home.dir()?;
    let genesis = match &a.genesis {
        Some(path) => Some(NodeGenesis::load(path)?),
        None => None,
    };
    let home = Home::init(
        &dir,
        InitOptions {
            moniker: a.moniker.clone(),
            chain_id: a.chain_id.clone(),
            p2p: a.p2p,
            api: a.api,
            block_time: a.block_time,
            genesis,
            force: a.force,
        },
    )?;
    let public_key = home::key_to_hex(&home.key.public_key());
    // A joined genesis may not list this new key, or other validators without addresses yet:
    // `node run` would refuse, so say what to do now.
    let todo = home.peers().err().map(|e| e.to_string());
    match format {
        OutputFormat::Json => print_json(&json!({
            "home": dir,
            "moniker": home.config.moniker,
            "chain_id": home.genesis.chain.chain_id,
            "public_key": public_key,
            "p2p": home.config.p2p.listen,
            "api": format!("http://{}", home.config.api.listen),
            "before_run": todo,
        }))?,
        OutputFormat::Text => {
            println!(
                "initialized node {:?} in {}",
                home.config.moniker,
                dir.display()
            );
            println!("chain id:   {}", home.genesis.chain.chain_id);
            println!("public key: {public_key}");
            println!("p2p:        {}", home.config.p2p.listen);
            println!("api:        http://{}", home.config.api.listen);
            if a.genesis.is_none() {
                println!(
                    "genesis.json makes this node the only validator and funds nobody: add \
                     balances to its \"chain\" before the first run if you need them"
                );
            }
            match &todo {
                Some(todo) => println!("before running it: {todo}"),
                None => println!("run it with: kumo node run --home {}", dir.display()),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn run(a: &RunArgs, format: OutputFormat) -> anyhow::Result<ExitCode> {
    let dir = a.home.dir()?;
    let home = Home::load(&dir)?;
    let config = home.service_config()?;
    tracing::info!(
        moniker = %home.config.moniker,
        chain_id = %home.genesis.chain.chain_id,
        p2p = %home.config.p2p.listen,
        validators = home.genesis.validators.len(),
        "starting node"
    );
    let moniker = home.config.moniker.clone();
    kumo_node::service::run(
        config,
        kumo_node::service::shutdown_signal(),
        move |ready| {
            let url = format!("http://{}", ready.api);
            match format {
                OutputFormat::Json => println!(
                    "{}",
                    json!({ "moniker": moniker, "api": url, "height": ready.height })
                ),
                OutputFormat::Text => {
                    println!(
                        "node {moniker}: API listening on {url} (height {})",
                        ready.height
                    )
                }
            }
        },
    )
    .with_context(|| format!("node {} stopped", dir.display()))?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    #[test]
    fn parses_node_init_with_defaults_and_flags() {
        let cli = Cli::try_parse_from(["kumo", "node", "init", "--home", "/tmp/n"]).unwrap();
        let Command::Node(NodeCommand::Init(a)) = cli.command else {
            panic!("not node init");
        };
        assert_eq!(a.block_time, Duration::from_secs(1));
        assert_eq!(a.api, "127.0.0.1:26657".parse().unwrap());
        assert_eq!(a.chain_id, home::DEFAULT_CHAIN_ID);
        let cli = Cli::try_parse_from([
            "kumo",
            "node",
            "init",
            "--block-time",
            "250ms",
            "--p2p",
            "0.0.0.0:1",
            "--force",
        ])
        .unwrap();
        let Command::Node(NodeCommand::Init(a)) = cli.command else {
            panic!("not node init");
        };
        assert_eq!(a.block_time, Duration::from_millis(250));
        assert!(a.force);
        assert!(Cli::try_parse_from(["kumo", "node", "init", "--block-time", "soon"]).is_err());
        assert!(Cli::try_parse_from(["kumo", "node", "run", "--home", "/tmp/n"]).is_ok());
    }
}
