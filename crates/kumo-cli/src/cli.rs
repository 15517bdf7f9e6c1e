//! The command line: one `clap` struct per concern, doc comments as help text.

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::output::OutputFormat;

/// Kumo: an open marketplace for cloud compute.
///
/// Tenants deploy SDL files (Akash-compatible); providers bid and run them; the chain handles
/// escrow and settlement.
#[derive(Debug, Parser)]
#[command(name = "kumo", version, propagate_version = true)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub(crate) struct GlobalArgs {
    /// Output format: `text` for people, `json` for scripts.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = OutputFormat::Text)]
    pub(crate) output: OutputFormat,
    /// More log output (-v: debug, -vv: trace). `RUST_LOG` works too.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Check and convert deployment files (SDL, Akash-compatible).
    #[command(subcommand)]
    Sdl(crate::sdl::SdlCommand),
    /// Manage account keys: add, list, show, import, export, delete.
    #[command(subcommand)]
    Keys(crate::keys::KeysCommand),
    /// Measure the speed goals of the state machine and of a node network (run a release
    /// build).
    #[command(subcommand)]
    Bench(crate::bench::BenchCommand),
    /// Create a node's home and run the node.
    #[command(subcommand)]
    Node(crate::node::NodeCommand),
    /// Create a local network of validators.
    #[command(subcommand)]
    Testnet(crate::testnet::TestnetCommand),
    /// Read a node's state.
    #[command(subcommand)]
    Query(crate::query::QueryCommand),
    /// Sign and submit transactions.
    #[command(subcommand)]
    Tx(crate::tx::TxCommand),
    /// Run a provider: config, on-chain registration, the daemon, its status.
    #[command(subcommand)]
    Provider(crate::provider::ProviderCommand),
    /// Deploy an SDL file: deployment, bids, lease, manifest, then its URLs once it runs.
    Deploy(crate::deploy::DeployArgs),
    /// Your leases: list, status, logs, shell, close.
    #[command(subcommand)]
    Lease(crate::lease::LeaseCommand),
    /// Add funds to a deployment's escrow.
    Deposit(crate::lease::DepositArgs),
    /// Let the chain top up a deployment's escrow from your account when it runs low.
    #[command(subcommand)]
    TopUp(crate::top_up::TopUpCommand),
    /// Send a new manifest (same groups) to a deployment's providers.
    Update(crate::lease::UpdateArgs),
    /// A local devnet (a validator and a provider on this machine) to deploy to.
    #[command(subcommand)]
    Devnet(crate::devnet::DevnetCommand),
}

impl Cli {
    /// Runs the chosen command.
    pub(crate) fn run(&self) -> anyhow::Result<ExitCode> {
        match &self.command {
            Command::Sdl(cmd) => cmd.run(self.global.output),
            Command::Bench(cmd) => cmd.run(self.global.output),
            Command::Keys(cmd) => cmd.run(self.global.output),
            Command::Node(cmd) => cmd.run(self.global.output),
            Command::Testnet(cmd) => cmd.run(self.global.output),
            Command::Query(cmd) => cmd.run(self.global.output),
            Command::Tx(cmd) => cmd.run(self.global.output),
            Command::Provider(cmd) => cmd.run(self.global.output),
            Command::Deploy(cmd) => cmd.run(self.global.output),
            Command::Lease(cmd) => cmd.run(self.global.output),
            Command::Deposit(cmd) => crate::lease::deposit(cmd, self.global.output),
            Command::TopUp(cmd) => cmd.run(self.global.output),
            Command::Update(cmd) => crate::lease::update(cmd, self.global.output),
            Command::Devnet(cmd) => cmd.run(self.global.output),
        }
    }

    /// The log level without `-v`: a running node tells what it does; other commands only warn.
    pub(crate) fn default_log_level(&self) -> &'static str {
        match self.command {
            Command::Node(crate::node::NodeCommand::Run(_)) => "info",
            Command::Provider(crate::provider::ProviderCommand::Run(_)) => "info",
            _ => "warn",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_sdl_commands_and_global_output() {
        let cli = Cli::try_parse_from(["kumo", "sdl", "groups", "f.yaml", "--akash", "-o", "json"])
            .unwrap();
        assert_eq!(cli.global.output, OutputFormat::Json);
        assert!(matches!(cli.command, Command::Sdl(_)));
        assert!(Cli::try_parse_from(["kumo", "sdl", "check"]).is_err());
    }
}
