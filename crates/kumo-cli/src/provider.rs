//! `kumo provider init|register|run|status`: the provider daemon's commands (over
//! [`kumo_provider`]).

use std::{path::PathBuf, process::ExitCode};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use kumo_client::{NodeClient, signer::Signer};
use kumo_gateway::client::GatewayClient;
use kumo_provider::{ProviderConfig, daemon, register, serve};
use kumo_types::SecretKey;

use crate::{
    home::HomeArgs,
    output::{OutputFormat, print_json},
};

/// The provider daemon.
#[derive(Debug, Subcommand)]
pub(crate) enum ProviderCommand {
    /// Write a provider config with every default spelled out (`<home>/provider.toml`).
    Init(InitArgs),
    /// Put the provider on chain (or update its record) from its config.
    Register(ConfigArgs),
    /// Run the daemon: bid, run leases, serve the gateway and the ingress.
    Run(ConfigArgs),
    /// The provider's public status, from its gateway.
    Status(ConfigArgs),
}

/// `kumo provider init`.
#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    #[command(flatten)]
    pub(crate) home: HomeArgs,
    /// Overwrite an existing file.
    #[arg(long)]
    pub(crate) force: bool,
}

/// The config file.
#[derive(Debug, Args)]
pub(crate) struct ConfigArgs {
    /// The provider's config file.
    #[arg(long, env = "KUMO_PROVIDER_CONFIG", value_name = "FILE")]
    pub(crate) config: PathBuf,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

impl ProviderCommand {
    pub(crate) fn run(&self, format: OutputFormat) -> anyhow::Result<ExitCode> {
        match self {
            ProviderCommand::Init(a) => {
                let dir = a.home.dir()?;
                let path = dir.join("provider.toml");
                if path.exists() && !a.force {
                    bail!("{} exists: pass --force to overwrite it", path.display());
                }
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                std::fs::write(&path, ProviderConfig::default().to_toml())
                    .with_context(|| format!("writing {}", path.display()))?;
                match format {
                    OutputFormat::Json => {
                        print_json(&serde_json::json!({ "config": path.display().to_string() }))?
                    }
                    OutputFormat::Text => println!(
                        "wrote {}: set key, node, gateway.host_uri, ingress.domain and attributes, then `kumo provider register --config {}`",
                        path.display(),
                        path.display()
                    ),
                }
                Ok(ExitCode::SUCCESS)
            }
            ProviderCommand::Register(a) => {
                let config = ProviderConfig::load(&a.config)?;
                let key = daemon::load_key(&config)?;
                let cert = serve::gateway_cert(&config)?;
                let done = runtime()?.block_on(async {
                    let signer = Signer::connect(NodeClient::new(&config.node)?, key).await?;
                    register::register(&config, &signer, cert.fingerprint()).await
                })?;
                match format {
                    OutputFormat::Json => print_json(&done)?,
                    OutputFormat::Text => println!(
                        "{} {} at height {}; certificate fingerprint {}",
                        done.action, done.provider, done.height, done.tls_cert_sha256
                    ),
                }
                Ok(ExitCode::SUCCESS)
            }
            ProviderCommand::Run(a) => {
                let config = ProviderConfig::load(&a.config)?;
                runtime()?.block_on(daemon::run(config))?;
                Ok(ExitCode::SUCCESS)
            }
            ProviderCommand::Status(a) => {
                let config = ProviderConfig::load(&a.config)?;
                let key = daemon::load_key(&config)?;
                let provider = kumo_types::Address::from_public_key(&key.public_key());
                let cert = serve::gateway_cert(&config)?;
                // /status needs no token: any key will do for the client.
                let client = GatewayClient::new(
                    &config.gateway.host_uri,
                    cert.fingerprint(),
                    SecretKey::generate(),
                    provider,
                )?;
                let status = runtime()?.block_on(client.provider_status())?;
                match format {
                    OutputFormat::Json => print_json(&status)?,
                    OutputFormat::Text => {
                        let i = &status.inventory;
                        println!("provider {}", status.provider);
                        println!("leases {}  open bids {}", status.leases, status.bids);
                        println!(
                            "cpu     {} of {} mCPU free",
                            i.free.cpu_millis, i.total.cpu_millis
                        );
                        println!(
                            "memory  {} of {} bytes free",
                            i.free.memory_bytes, i.total.memory_bytes
                        );
                        for (class, total) in &i.total.storage_bytes {
                            let free = i.free.storage_bytes.get(class).copied().unwrap_or(0);
                            println!("storage {class}: {free} of {total} bytes free");
                        }
                        let exhausted = if i.total.networks > 0 && i.free.networks == 0 {
                            "  (pool exhausted: no bids until a lease ends)"
                        } else {
                            ""
                        };
                        println!(
                            "networks {} of {} lease networks used{exhausted}",
                            i.held.networks, i.total.networks
                        );
                        // Keys are GPU kinds: `h100 80Gi sxm`.
                        for (kind, total) in &i.total.gpus {
                            let free = i.free.gpus.get(kind).copied().unwrap_or(0);
                            println!("gpu     {kind}: {free} of {total} free");
                        }
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    #[test]
    fn parses_provider_commands() {
        let cli = Cli::try_parse_from(["kumo", "provider", "run", "--config", "p.toml"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Provider(ProviderCommand::Run(ConfigArgs { ref config })) if config == &PathBuf::from("p.toml")
        ));
        let cli = Cli::try_parse_from(["kumo", "provider", "init", "--home", "/tmp/x"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Provider(ProviderCommand::Init(_))
        ));
    }
}
