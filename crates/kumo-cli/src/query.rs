//! `kumo query status|account|providers`: read a node's state (over [`kumo_client`]).

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
    /// Registered providers, optionally only those with a GPU model.
    Providers(ProvidersArgs),
}

/// `kumo query providers`.
#[derive(Debug, Args)]
pub(crate) struct ProvidersArgs {
    /// Only providers offering this GPU model (Akash's name: `h100`, `a100`, `rtx4090`), as
    /// their `capabilities/gpu/vendor/<vendor>/model/<model>` attributes say.
    #[arg(long)]
    pub(crate) gpu_model: Option<String>,
    #[command(flatten)]
    pub(crate) node: NodeArgs,
}

/// The GPU models a provider's attributes offer (`h100`, ...), sorted, without duplicates.
pub(crate) fn gpu_models(attrs: &[kumo_types::Attribute]) -> Vec<String> {
    let mut out: Vec<String> = attrs
        .iter()
        .filter(|a| a.value == "true")
        .filter_map(|a| {
            let rest = a.key.strip_prefix("capabilities/gpu/vendor/")?;
            let (_vendor, rest) = rest.split_once("/model/")?;
            Some(rest.split('/').next()?.to_string())
        })
        .collect();
    out.sort();
    out.dedup();
    out
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
            QueryCommand::Providers(a) => {
                let client = a.node.client()?;
                let all = block_on(client.providers())??;
                let wanted = a.gpu_model.as_deref().map(str::to_ascii_lowercase);
                let shown: Vec<_> = all
                    .value
                    .into_iter()
                    .filter(|p| {
                        wanted
                            .as_ref()
                            .is_none_or(|m| gpu_models(&p.fields.attributes).contains(m))
                    })
                    .collect();
                match format {
                    OutputFormat::Json => print_json(&shown)?,
                    OutputFormat::Text => {
                        if shown.is_empty() {
                            println!("no providers");
                        }
                        for p in &shown {
                            let gpus = gpu_models(&p.fields.attributes);
                            println!(
                                "{}  {}  leases {}  gpus {}",
                                p.owner,
                                p.fields.host_uri,
                                p.active_leases,
                                if gpus.is_empty() {
                                    "-".to_string()
                                } else {
                                    gpus.join(",")
                                }
                            );
                        }
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
        let cli =
            Cli::try_parse_from(["kumo", "query", "providers", "--gpu-model", "h100"]).unwrap();
        let Command::Query(QueryCommand::Providers(a)) = cli.command else {
            panic!("not query providers");
        };
        assert_eq!(a.gpu_model.as_deref(), Some("h100"));
    }

    #[test]
    fn gpu_models_come_from_the_capabilities_attributes() {
        let attrs = kumo_gpu::attributes::provider_attributes(
            &kumo_gpu::declared::devices(&[kumo_gpu::DeclaredGpus {
                model: "h100".into(),
                ram: "80Gi".into(),
                interface: "sxm".into(),
                count: 1,
                vendor: "nvidia".into(),
                uuids: vec![],
                pci_bus_ids: vec![],
            }])
            .unwrap(),
        );
        let mut all = attrs.clone();
        all.push(kumo_types::Attribute::new("region", "eu"));
        all.push(kumo_types::Attribute::new(
            "capabilities/gpu/vendor/nvidia/model/a100",
            "false",
        ));
        assert_eq!(gpu_models(&all), ["h100"]);
        assert!(gpu_models(&[]).is_empty());
    }
}
