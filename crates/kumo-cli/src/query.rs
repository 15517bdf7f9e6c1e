//! `kumo query status|account`: read a node's state (over [`kumo_client`]).

use std::process::ExitCode;

use clap::{Args, Subcommand};
use kumo_types::Address;

use crate::{
    client::{NodeArgs, block_on},
    output::{OutputFormat, print_json},
};

/// Read-only queries.
#[derive(Debug, Subcommand)]
pub(crate) enum QueryCommand {
    /// The node's chain, height, latest block and mempool.
    Status(StatusArgs),
    /// An account's balances and next nonce.
    Account(AccountArgs),
}

/// `kumo query status`.
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    pub(crate) node: NodeArgs,
}

/// `kumo query account`.
#[derive(Debug, Args)]
pub(crate) struct AccountArgs {
    /// The account's address (`kumo1…`).
    pub(crate) address: Address,
    #[command(flatten)]
    pub(crate) node: NodeArgs,
}

impl QueryCommand {
    pub(crate) fn run(&self, format: OutputFormat) -> anyhow::Result<ExitCode> {
        match self {
            QueryCommand::Status(a) => {
                let client = a.node.client()?;
                let s = block_on(client.status())??;
                match format {
                    OutputFormat::Json => print_json(&s)?,
                    OutputFormat::Text => {
                        println!("chain id:  {}", s.chain_id);
                        println!("height:    {}", s.height);
                        if let Some(h) = s.latest_block_hash {
                            println!("block:     {}", hex::encode(h));
                        }
                        println!(
                            "mempool:   {} txs, {} bytes",
                            s.mempool.txs, s.mempool.bytes
                        );
                        println!("version:   {}", s.node_version);
                    }
                }
            }
            QueryCommand::Account(a) => {
                let client = a.node.client()?;
                let acc = block_on(client.account(&a.address))??;
                match format {
                    OutputFormat::Json => print_json(&acc)?,
                    OutputFormat::Text => {
                        println!("address:   {}", acc.value.address);
                        println!("nonce:     {}", acc.value.nonce);
                        let balances = acc.value.balances.to_string();
                        println!(
                            "balances:  {}",
                            if balances.is_empty() {
                                "none"
                            } else {
                                &balances
                            }
                        );
                        println!("(at height {})", acc.height);
                    }
                }
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
    fn parses_queries() {
        let cli = Cli::try_parse_from(["kumo", "query", "status", "--node", "http://h:1"]).unwrap();
        let Command::Query(QueryCommand::Status(a)) = cli.command else {
            panic!("not query status");
        };
        assert_eq!(a.node.node, "http://h:1");
        assert!(Cli::try_parse_from(["kumo", "query", "account", "not-an-address"]).is_err());
    }
}
