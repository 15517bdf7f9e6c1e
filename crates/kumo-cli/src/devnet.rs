//! `kumo devnet up|down|status`: a local devnet (one validator, 1 to 8 providers with the
//! Docker backend, bidding against each other) for trying deployments on this machine (over
//! [`kumo_devnet`]).

use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use kumo_devnet::{DevnetSpec, VmMode, layout::ENV_FILE};

use crate::output::{OutputFormat, print_json};

/// A local devnet.
#[derive(Debug, Subcommand)]
pub(crate) enum DevnetCommand {
    /// Start a devnet (creating it the first time): a validator, providers, funded keys; on
    /// an existing devnet, start whatever part is down.
    #[command(after_help = "\
Examples:
  kumo devnet up --detach          # start in the background, print what to source
  . ~/.kumo/devnet/devnet.env      # KUMO_NODE, KUMO_HOME, KUMO_FROM=tenant, ...
  kumo deploy examples/hello-web.yaml
  kumo devnet down                 # stop it and remove its workloads

  kumo devnet up --detach --providers 3   # three providers bid on every order (a new devnet)

Providers: `provider` (key and directory), then `provider2`, `provider3`, ... Each has its own
label instance on the Docker engine, attribute zone=devnet-a, devnet-b, ... (all have
region=local) and prices: provider k charges 100 + 25*(k-1) % of the default rates, so a
deployment any of them fits gets one bid from each and goes to the cheapest that fits.

On an existing devnet `up` starts only what is down (the node, a killed provider) and leaves
what runs alone, workloads included: a restarted provider adopts its leases' containers.
When everything runs it says so and exits 0.

Without --detach it runs until Ctrl-C, which stops what this command started. Service URLs are
http://<name>.localhost:<port>/, which curl and browsers resolve to this machine without DNS
or /etc/hosts.")]
    Up(UpArgs),
    /// Stop every process of the devnet and remove every provider's workloads.
    Down(DownArgs),
    /// Each part of the devnet: the node (pid, height) and each provider (pid, gateway,
    /// registration, active leases); exits 1 unless everything runs.
    Status(DirArgs),
}

/// Where the devnet lives.
#[derive(Debug, Args)]
pub(crate) struct DirArgs {
    /// The devnet's directory [default: ~/.kumo/devnet]
    #[arg(long, env = "KUMO_DEVNET_HOME", value_name = "DIR")]
    pub(crate) home: Option<PathBuf>,
}

impl DirArgs {
    fn dir(&self) -> anyhow::Result<PathBuf> {
        match &self.home {
            Some(d) => Ok(d.clone()),
            None => std::env::home_dir()
                .map(|h| h.join(".kumo").join("devnet"))
                .context("cannot find your home directory: pass --home"),
        }
    }
}

/// `kumo devnet up`.
#[derive(Debug, Args)]
pub(crate) struct UpArgs {
    #[command(flatten)]
    pub(crate) dir: DirArgs,
    /// Time between blocks (a new devnet only; e.g. 250ms, 1s).
    #[arg(long, value_parser = kumo_node::home::parse_duration, default_value = "250ms")]
    pub(crate) block_time: Duration,
    /// Ports from P (a new devnet only): p2p P, node API P+1; provider 1: gateway P+2,
    /// ingress P+3, forwarded ports P+10 to P+59; provider k: the same offsets from
    /// P + 60*(k-1). 0 picks free ports.
    #[arg(long, value_name = "P", default_value_t = kumo_devnet::layout::DEFAULT_BASE_PORT)]
    pub(crate) base_port: u16,
    /// How many providers, 1 to 8 (a new devnet; default 1): each with its own key, ports,
    /// zone and prices. Fixed at creation: another number for an existing devnet is refused
    /// (--reset makes a new one).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=kumo_devnet::layout::MAX_PROVIDERS as i64))]
    pub(crate) providers: Option<u8>,
    /// Return once it serves and leave it running in the background.
    #[arg(long)]
    pub(crate) detach: bool,
    /// Delete an existing devnet in the directory first (a new chain, new keys).
    #[arg(long)]
    pub(crate) reset: bool,
    /// VMs (`runtime: vm` services), a new devnet only: `auto` when QEMU is installed (KVM if
    /// it works, else TCG), `kvm`, `tcg`, or `off` (containers only).
    #[arg(long, value_enum, default_value_t = VmArg::Auto)]
    pub(crate) vm: VmArg,
}

/// `--vm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum VmArg {
    /// When QEMU is installed; KVM if it works (probed at start, up to 10 s), else TCG.
    Auto,
    /// KVM only.
    Kvm,
    /// TCG emulation, without probing KVM.
    Tcg,
    /// No VMs.
    Off,
}

impl From<VmArg> for VmMode {
    fn from(v: VmArg) -> VmMode {
        match v {
            VmArg::Auto => VmMode::Auto,
            VmArg::Kvm => VmMode::Kvm,
            VmArg::Tcg => VmMode::Tcg,
            VmArg::Off => VmMode::Off,
        }
    }
}

/// `kumo devnet down`.
#[derive(Debug, Args)]
pub(crate) struct DownArgs {
    #[command(flatten)]
    pub(crate) dir: DirArgs,
    /// Delete the devnet's directory too (chain, keys, logs).
    #[arg(long)]
    pub(crate) purge: bool,
}

impl DevnetCommand {
    pub(crate) fn run(&self, format: OutputFormat) -> anyhow::Result<ExitCode> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        match self {
            DevnetCommand::Up(a) => rt.block_on(up(a, format)),
            DevnetCommand::Down(a) => {
                let report = rt.block_on(kumo_devnet::down(&a.dir.dir()?, a.purge))?;
                match format {
                    OutputFormat::Json => print_json(&report)?,
                    OutputFormat::Text => {
                        if report.stopped.is_empty() {
                            println!("nothing was running in {}", report.dir.display());
                        } else {
                            println!("stopped {}", report.stopped.join(", "));
                        }
                        println!(
                            "removed the workloads of {} lease(s)",
                            report.workloads_removed
                        );
                        if report.purged {
                            println!("deleted {}", report.dir.display());
                        }
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
            DevnetCommand::Status(a) => {
                let s = rt.block_on(kumo_devnet::status(&a.dir()?))?;
                match format {
                    OutputFormat::Json => print_json(&s)?,
                    OutputFormat::Text => print_status(&s),
                }
                Ok(if s.all_running() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                })
            }
        }
    }
}

/// `running (pid N)` or `down`.
fn pid_text(pid: Option<u32>) -> String {
    pid.map_or("down".to_string(), |p| format!("running (pid {p})"))
}

fn print_status(s: &kumo_devnet::DevnetStatus) {
    println!("devnet    {}", s.dir.display());
    let height = match s.node.height {
        Some(h) => format!("height {h}"),
        None => "not answering".to_string(),
    };
    println!(
        "node      {}  {}  {height}",
        s.node.api,
        pid_text(s.node.pid)
    );
    for p in &s.providers {
        let gateway = if p.gateway_answers {
            "answering"
        } else {
            "not answering"
        };
        let chain = match (p.registered, p.active_leases) {
            (Some(true), Some(n)) => format!("registered, {n} active lease(s)"),
            (Some(false), _) => "not registered".to_string(),
            _ => "chain unknown".to_string(),
        };
        println!(
            "{:<9} {}  {}  gateway {} {gateway}  {chain}",
            p.name,
            p.address,
            pid_text(p.pid),
            p.gateway
        );
    }
}

async fn up(a: &UpArgs, format: OutputFormat) -> anyhow::Result<ExitCode> {
    let dir = a.dir.dir()?;
    if a.reset && dir.join(kumo_devnet::layout::INFO_FILE).exists() {
        kumo_devnet::down(&dir, true).await?;
    }
    let spec = DevnetSpec {
        dir,
        block_time: a.block_time,
        base_port: a.base_port,
        vm: a.vm.into(),
        providers: a.providers.map(usize::from),
    };
    let exe = std::env::current_exe().context("finding the kumo binary")?;
    let started = std::time::Instant::now();
    let mut progress = |step: &str| {
        eprintln!("[{:5.1}s] {step}", started.elapsed().as_secs_f64());
    };
    let mut devnet = kumo_devnet::up(&spec, &exe, &mut progress).await?;
    let env = devnet.dir.join(ENV_FILE);
    let nothing_started = devnet.started().is_empty();
    match format {
        OutputFormat::Json => print_json(&serde_json::json!({
            "dir": devnet.dir,
            "env_file": env,
            "created": devnet.created,
            "started": devnet.started_pids(),
            "already_running": devnet.already_running,
            "info": devnet.info,
        }))?,
        OutputFormat::Text if nothing_started => {
            let parts: Vec<String> = devnet
                .already_running
                .iter()
                .map(|r| format!("{} (pid {})", r.name, r.pid))
                .collect();
            println!(
                "the devnet in {} already runs: {}; nothing to start",
                devnet.dir.display(),
                parts.join(", ")
            );
            println!("(`kumo devnet status` shows each part; `kumo devnet down` stops it)");
        }
        OutputFormat::Text => {
            let i = &devnet.info;
            eprintln!(
                "[{:5.1}s] the devnet is up",
                started.elapsed().as_secs_f64()
            );
            println!(
                "node      {}  (chain {}, {} ms blocks)",
                i.node, i.chain_id, i.block_time_ms
            );
            for p in &i.providers {
                let zone = p
                    .attributes
                    .iter()
                    .find(|a| a.key == "zone")
                    .map_or("", |a| a.value.as_str());
                println!(
                    "{:<9} {}  gateway {}  zone {zone}  {} per CPU core",
                    p.name, p.address, p.gateway, p.price.cpu_per_core
                );
                println!(
                    "          ingress http://<host>.{}:{}/  forwarded ports {}-{}",
                    i.ingress_domain,
                    p.ingress.port(),
                    p.forwarded_ports.0,
                    p.forwarded_ports.1
                );
            }
            println!("tenant    {}  (key `tenant`)", i.tenant);
            match i.vm {
                Some(accel) => println!(
                    "vms       on (accel {})",
                    serde_json::to_value(accel)?.as_str().unwrap_or("?")
                ),
                None => println!("vms       off (containers only)"),
            }
            println!(
                "logs      {}/node0/node.log, {}/<provider>/provider.log",
                devnet.dir.display(),
                devnet.dir.display()
            );
            if !devnet.already_running.is_empty() {
                let parts: Vec<String> = devnet
                    .already_running
                    .iter()
                    .map(|r| format!("{} (pid {})", r.name, r.pid))
                    .collect();
                println!("untouched {} (running already)", parts.join(", "));
            }
            println!();
            println!("Next:  . {}", env.display());
            println!("       kumo deploy examples/hello-web.yaml");
        }
    }
    if a.detach || nothing_started {
        devnet.detach();
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("running; Ctrl-C stops what this command started");
    let code = loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break ExitCode::SUCCESS,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                if let Some((what, log)) = devnet.exited() {
                    eprintln!("error: {what} exited; the end of its log:\n{log}");
                    break ExitCode::FAILURE;
                }
            }
        }
    };
    eprintln!("stopping {}", devnet.started().join(", "));
    devnet.stop();
    Ok(code)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    #[test]
    fn parses_devnet_commands() {
        let cli = Cli::try_parse_from([
            "kumo",
            "devnet",
            "up",
            "--home",
            "/tmp/d",
            "--detach",
            "--block-time",
            "1s",
        ])
        .unwrap();
        let Command::Devnet(DevnetCommand::Up(a)) = cli.command else {
            panic!("not devnet up");
        };
        assert!(a.detach);
        assert_eq!(a.block_time, Duration::from_secs(1));
        assert_eq!(a.dir.home, Some(PathBuf::from("/tmp/d")));
        assert_eq!(a.providers, None, "an existing devnet keeps its number");
        assert!(Cli::try_parse_from(["kumo", "devnet", "down", "--purge"]).is_ok());
        let cli = Cli::try_parse_from(["kumo", "devnet", "up", "--providers", "3"]).unwrap();
        let Command::Devnet(DevnetCommand::Up(a)) = cli.command else {
            panic!("not devnet up");
        };
        assert_eq!(a.providers, Some(3));
        for bad in ["0", "9"] {
            let e = Cli::try_parse_from(["kumo", "devnet", "up", "--providers", bad])
                .unwrap_err()
                .to_string();
            assert!(e.contains("1..=8"), "{e}");
        }
    }
}
