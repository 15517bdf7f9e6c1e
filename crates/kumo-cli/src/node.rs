//! `kumo node init|run`: create a node's home, run the node (over [`kumo_node::home`] and
//! [`kumo_node::service`]).

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use commonware_cryptography::{Signer as _, ed25519};
use kumo_node::home::{self, Home, InitOptions, NodeGenesis, NodeRole, PeerEntry};
use serde_json::json;

use crate::{
    home::HomeArgs,
    output::{OutputFormat, print_json},
};

/// Node commands.
#[derive(Debug, Subcommand)]
pub(crate) enum NodeCommand {
    /// Create a node's home: config.toml, node_key.json (0600) and, unless --genesis is given,
    /// a genesis.json with this node as the only validator. With --follower --genesis FILE
    /// --peer KEY@ADDR…: a full node that follows that chain without voting.
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
    /// Where to listen for peers.
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
    /// A follower: a full node that follows the chain of --genesis without voting (serves the
    /// API, forwards transactions). Every validator must list it as a peer with
    /// role = "follower" to let it connect.
    #[arg(long, requires = "genesis")]
    pub(crate) follower: bool,
    /// Another node: its public key (64 hex digits) and p2p address. A key of a genesis
    /// validator is a validator peer, any other a follower. Repeat for each validator.
    #[arg(long, value_name = "KEY@ADDR", value_parser = parse_peer)]
    pub(crate) peer: Vec<(ed25519::PublicKey, SocketAddr)>,
    /// Overwrite an existing home; deletes its data directory.
    #[arg(long)]
    pub(crate) force: bool,
}

fn parse_peer(s: &str) -> Result<(ed25519::PublicKey, SocketAddr), String> {
    let (key, addr) = s
        .split_once('@')
        .ok_or_else(|| format!("{s:?}: write KEY@ADDR, e.g. 5c0f…(64 hex)@10.0.0.2:26656"))?;
    let key = home::key_from_hex(key).map_err(|e| format!("{s:?}: the key: {e}"))?;
    let addr = addr
        .parse()
        .map_err(|e| format!("{s:?}: the address {addr:?}: {e}"))?;
    Ok((key, addr))
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
    // A peer's role and name come from the genesis validator set.
    let peers = a
        .peer
        .iter()
        .map(|(key, address)| {
            let validator = genesis
                .as_ref()
                .and_then(|g| g.validators.iter().find(|v| &v.public_key == key));
            PeerEntry {
                moniker: validator.map(|v| v.moniker.clone()).unwrap_or_default(),
                public_key: key.clone(),
                address: *address,
                role: match validator {
                    Some(_) => NodeRole::Validator,
                    None => NodeRole::Follower,
                },
            }
        })
        .collect();
    let role = if a.follower {
        NodeRole::Follower
    } else {
        NodeRole::Validator
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
            role,
            peers,
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
            "role": home.config.role,
            "chain_id": home.genesis.chain.chain_id,
            "public_key": public_key,
            "p2p": home.config.p2p.listen,
            "api": format!("http://{}", home.config.api.listen),
            "before_run": todo,
        }))?,
        OutputFormat::Text => {
            println!(
                "initialized {} {:?} in {}",
                home.config.role,
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
            if home.config.role == NodeRole::Follower {
                println!(
                    "every validator must let this follower in: add to its config.toml\n  \
                     [[p2p.peers]]\n  moniker = {:?}\n  public_key = \"{public_key}\"\n  \
                     address = \"{}\"\n  role = \"follower\"",
                    home.config.moniker, home.config.p2p.listen
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
        role = %home.config.role,
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
        // A follower needs the chain's genesis; peers are KEY@ADDR.
        assert!(Cli::try_parse_from(["kumo", "node", "init", "--follower"]).is_err());
        let key = home::key_to_hex(&home::generate_key().public_key());
        let peer = format!("{key}@127.0.0.1:30000");
        let cli = Cli::try_parse_from([
            "kumo",
            "node",
            "init",
            "--follower",
            "--genesis",
            "g.json",
            "--peer",
            &peer,
        ])
        .unwrap();
        let Command::Node(NodeCommand::Init(a)) = cli.command else {
            panic!("not node init");
        };
        assert!(a.follower);
        assert_eq!(a.peer[0].1, "127.0.0.1:30000".parse().unwrap());
        assert_eq!(home::key_to_hex(&a.peer[0].0), key);
        for bad in [
            key.clone(),
            format!("{key}@nowhere"),
            "abc@127.0.0.1:1".into(),
        ] {
            assert!(
                Cli::try_parse_from(["kumo", "node", "init", "--peer", &bad]).is_err(),
                "{bad}"
            );
        }
        assert!(Cli::try_parse_from(["kumo", "node", "run", "--home", "/tmp/n"]).is_ok());
    }
}
