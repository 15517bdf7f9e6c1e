//! `kumo lease list|status|logs|shell|close`, `kumo deposit`, `kumo update` (over
//! [`kumo_tenant::lease`]). A deployment is named by its `DSEQ` (what `kumo deploy` printed).

use std::{
    io::{IsTerminal, Read, Write},
    path::PathBuf,
    process::ExitCode,
};

use anyhow::Context;
use clap::{Args, Subcommand};
use futures::StreamExt;
use kumo_gateway::client::ShellEvent;
use kumo_tenant::lease;
use kumo_types::{Address, Coin};

use crate::{
    client::block_on,
    deploy::{TenantArgs, json_name, print_reports},
    output::{OutputFormat, print_json},
};

/// The tenant's leases.
#[derive(Debug, Subcommand)]
pub(crate) enum LeaseCommand {
    /// Your leases: state, provider, price, escrow balance, blocks left.
    List(ListArgs),
    /// A deployment's leases: the provider's view (services, URLs, ports) and the chain's.
    #[command(
        after_help = "Examples:\n  kumo lease status 42\n  kumo lease status 42 -o json   # the shape `kumo deploy -o json` prints\n  kumo lease status 42 --warn-below 1d\n\nA warning goes to stderr (and `chain.low_funds` to JSON) when the escrow and its top-up\nallowance last less than --warn-below at the chain's measured block time."
    )]
    Status(StatusArgs),
    /// A deployment's log lines.
    #[command(
        after_help = "Examples:\n  kumo lease logs 42 --tail 20\n  kumo lease logs 42 --service web -f\n\nAfter the lease closes, its provider keeps the last lines of each replica for a while (24 h by\ndefault): with no active lease, these are shown, with a line on stderr saying when it closed."
    )]
    Logs(LogsArgs),
    /// Run a command in a service's first replica (an interactive shell by default).
    #[command(
        after_help = "Examples:\n  kumo lease shell 42                       # sh on a terminal\n  kumo lease shell 42 --service db -- psql -U app\n  kumo lease shell 42 -- sh -c 'echo hi; exit 3'   # exit code 3"
    )]
    Shell(ShellArgs),
    /// Log into a VM service with your OpenSSH client (`ssh`), at the port the provider
    /// forwards, as the SDL's `vm.user`.
    #[command(
        after_help = "Examples:\n  kumo lease ssh 42                          # an interactive login\n  kumo lease ssh 42 -i ~/.ssh/id_ed25519 -- uname -a\n  kumo lease ssh 42 --print                  # only print the ssh command\n\nThe key is yours: the private half of one of the SDL's vm.ssh_keys (ssh's defaults, or -i).\nHost keys are remembered per deployment in <home>/ssh/, trusted on first use."
    )]
    Ssh(SshArgs),
    /// Restart a service (a VM reboots and keeps its disk; a container restarts with its
    /// volumes), or every service of the deployment's lease.
    #[command(
        after_help = "Examples:\n  kumo lease restart 42\n  kumo lease restart 42 --service box"
    )]
    Restart(ServiceArgs),
    /// Close a deployment: its leases end, the provider removes the workload, the rest of the
    /// escrow is refunded.
    Close(DseqArgs),
    /// Watch a deployment and move a lost lease to another provider (runs until the
    /// deployment closes, or Ctrl-C).
    #[command(
        after_help = "Example:\n  kumo lease watch 42 --file web.yaml\n\nWhen a lease closes for the provider's reason (provider_unresponsive, unstable,\ndecommission, performance, manifest_timeout, or the provider's own close), the watcher reopens\nthe group (a new order), takes the cheapest bid of another provider, sends it the same manifest\nand waits until the services run. Each event is a line on stdout (-o json: one JSON object per\nline), the steps of the new lease on stderr as `kumo deploy` shows them.\nA group already lost when the watcher starts fails over at once. `kumo lease status DSEQ` shows\nthe new lease.\n\nPersistent data does not follow: volumes live on the lost provider's disks, and the new lease\nstarts with empty ones. The tenant's own close and an escrow that runs dry end the watch."
    )]
    Watch(WatchArgs),
}

/// `kumo lease watch`.
#[derive(Debug, Args)]
pub(crate) struct WatchArgs {
    /// The deployment's sequence number.
    pub(crate) dseq: u64,
    /// The SDL file it was deployed (or last updated) with: its manifest goes to the new
    /// provider.
    #[arg(long)]
    pub(crate) file: PathBuf,
    /// How long to wait for another provider's bid.
    #[arg(long, value_name = "DUR", value_parser = kumo_node::home::parse_duration, default_value = "30s")]
    pub(crate) bid_wait: std::time::Duration,
    /// How long the new lease's services get to run.
    #[arg(long, value_name = "DUR", value_parser = kumo_node::home::parse_duration, default_value = "120s")]
    pub(crate) wait: std::time::Duration,
    #[command(flatten)]
    pub(crate) tenant: TenantArgs,
}

/// Runs [`kumo_tenant::failover::watch`], printing each event as a line (text, or one JSON
/// object per line).
pub(crate) async fn watch_until_closed(
    tenant: &kumo_tenant::Tenant,
    dseq: u64,
    sdl_text: &str,
    opts: &kumo_tenant::deploy::DeployOptions,
    format: OutputFormat,
) -> anyhow::Result<()> {
    use kumo_tenant::failover::WatchEvent;
    let mut steps = crate::deploy::ProgressView::new();
    let mut show = |e: WatchEvent| {
        if format == OutputFormat::Json {
            if let Ok(line) = serde_json::to_string(&e) {
                println!("{line}");
            }
            return;
        }
        let line = match &e {
            WatchEvent::Watching { dseq, leases } => format!(
                "watching deployment {dseq}: {} active lease(s)",
                leases.len()
            ),
            WatchEvent::LeaseLost {
                lease,
                reason,
                height,
            } => format!(
                "lease {lease} closed at {height} ({}): failing over",
                reason.as_str()
            ),
            WatchEvent::Reopened { order } => format!("group reopened: order {order}"),
            WatchEvent::Step { step } => {
                // The steps of getting the new lease running, as `kumo deploy` shows them.
                steps.show(step);
                return;
            }
            WatchEvent::ServingAgain {
                lease,
                seconds,
                report,
            } => {
                let uris: Vec<&str> = report
                    .status
                    .services
                    .iter()
                    .flat_map(|s| s.uris.iter().map(String::as_str))
                    .collect();
                format!(
                    "serving again from lease {lease} after {seconds:.1} s {}",
                    uris.join(" ")
                )
            }
            WatchEvent::FailoverFailed { group, error } => {
                format!("failover of group {group} failed: {error}")
            }
            WatchEvent::Ended { dseq, reason } => {
                format!("deployment {dseq}: {reason}; watch ends")
            }
        };
        println!("{line}");
    };
    kumo_tenant::failover::watch(tenant, dseq, sdl_text, opts, &mut show).await?;
    Ok(())
}

/// `kumo lease ssh`.
#[derive(Debug, Args)]
pub(crate) struct SshArgs {
    /// The deployment's sequence number.
    pub(crate) dseq: u64,
    /// The VM service [default: the first VM service].
    #[arg(long)]
    pub(crate) service: Option<String>,
    /// Your private key file (ssh -i) [default: ssh's own choice].
    #[arg(short = 'i', long, value_name = "FILE")]
    pub(crate) identity: Option<PathBuf>,
    /// Print the ssh command instead of running it.
    #[arg(long)]
    pub(crate) print: bool,
    /// A command to run instead of a login shell, after `--`.
    #[arg(last = true)]
    pub(crate) cmd: Vec<String>,
    #[command(flatten)]
    pub(crate) tenant: TenantArgs,
}

/// A deployment and optionally one of its services.
#[derive(Debug, Args)]
pub(crate) struct ServiceArgs {
    /// The deployment's sequence number.
    pub(crate) dseq: u64,
    /// Only this service [default: every service of the lease].
    #[arg(long)]
    pub(crate) service: Option<String>,
    #[command(flatten)]
    pub(crate) tenant: TenantArgs,
}

/// `kumo lease list`.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Closed leases too.
    #[arg(long)]
    pub(crate) all: bool,
    #[command(flatten)]
    pub(crate) tenant: TenantArgs,
}

/// A deployment.
#[derive(Debug, Args)]
pub(crate) struct DseqArgs {
    /// The deployment's sequence number.
    pub(crate) dseq: u64,
    #[command(flatten)]
    pub(crate) tenant: TenantArgs,
}

/// `kumo lease status`.
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// The deployment's sequence number.
    pub(crate) dseq: u64,
    /// Warn when the funds (allowance included) last less than this (`90s`, `30m`, `2h`, `1d`).
    #[arg(long, value_parser = parse_span, default_value = "1h")]
    pub(crate) warn_below: std::time::Duration,
    #[command(flatten)]
    pub(crate) tenant: TenantArgs,
}

/// A span of time as people write it: `90s`, `30m`, `2h`, `1d` (whole numbers).
pub(crate) fn parse_span(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a span of time: write e.g. 90s, 30m, 2h or 1d"))?;
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{s:?} has no unit: write e.g. 90s, 30m, 2h or 1d")),
    };
    Ok(std::time::Duration::from_secs(n.saturating_mul(unit_secs)))
}

/// `kumo lease logs`.
#[derive(Debug, Args)]
pub(crate) struct LogsArgs {
    /// The deployment's sequence number.
    pub(crate) dseq: u64,
    /// Only this service [default: every service].
    #[arg(long)]
    pub(crate) service: Option<String>,
    /// Keep printing new lines until interrupted.
    #[arg(short, long)]
    pub(crate) follow: bool,
    /// Start with the last N lines of each replica.
    #[arg(long, value_name = "N")]
    pub(crate) tail: Option<u64>,
    #[command(flatten)]
    pub(crate) tenant: TenantArgs,
}

/// `kumo lease shell`.
#[derive(Debug, Args)]
pub(crate) struct ShellArgs {
    /// The deployment's sequence number.
    pub(crate) dseq: u64,
    /// The service [default: the first].
    #[arg(long)]
    pub(crate) service: Option<String>,
    /// The command and its arguments, after `--` [default: sh].
    #[arg(last = true)]
    pub(crate) cmd: Vec<String>,
    #[command(flatten)]
    pub(crate) tenant: TenantArgs,
}

/// `kumo deposit`.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  kumo deposit 42 1000000ukumo")]
pub(crate) struct DepositArgs {
    /// The deployment's sequence number.
    pub(crate) dseq: u64,
    /// What to add to its escrow, in its denomination.
    pub(crate) amount: Coin,
    /// The deployment's owner, to fund someone else's deployment (anyone may); default: the
    /// `--from` key's own.
    #[arg(long, value_name = "ADDRESS")]
    pub(crate) owner: Option<Address>,
    #[command(flatten)]
    pub(crate) tenant: TenantArgs,
}

/// `kumo update`.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  kumo update 42 web.yaml   # e.g. a new image tag or env value\n\nOnly the manifest may change (images, commands, env, ports); the groups' resources,\nplacement and prices must stay as deployed."
)]
pub(crate) struct UpdateArgs {
    /// The deployment's sequence number.
    pub(crate) dseq: u64,
    /// The new SDL file.
    pub(crate) file: PathBuf,
    /// Refuse the file if it has keys Akash ignores (the warnings become errors); nothing is
    /// sent.
    #[arg(long)]
    pub(crate) strict: bool,
    #[command(flatten)]
    pub(crate) tenant: TenantArgs,
}

impl LeaseCommand {
    pub(crate) fn run(&self, format: OutputFormat) -> anyhow::Result<ExitCode> {
        match self {
            LeaseCommand::List(a) => list(a, format),
            LeaseCommand::Status(a) => {
                let reports = block_on(async {
                    let t = a.tenant.connect().await?;
                    anyhow::Ok(lease::status(&t, a.dseq, Some(a.warn_below)).await?)
                })??;
                for r in &reports {
                    if let Some(low) = &r.chain.low_funds {
                        eprintln!("warning: deployment {}: {low}", r.status.dseq);
                    }
                }
                print_reports(format, &reports)?;
                Ok(ExitCode::SUCCESS)
            }
            LeaseCommand::Logs(a) => logs(a, format),
            LeaseCommand::Watch(a) => {
                let text = std::fs::read_to_string(&a.file)
                    .with_context(|| format!("reading {}", a.file.display()))?;
                let opts = kumo_tenant::deploy::DeployOptions {
                    bid_wait: a.bid_wait,
                    wait: a.wait,
                    ..kumo_tenant::deploy::DeployOptions::default()
                };
                block_on(async {
                    let t = a.tenant.connect().await?;
                    watch_until_closed(&t, a.dseq, &text, &opts, format).await
                })??;
                Ok(ExitCode::SUCCESS)
            }
            LeaseCommand::Shell(a) => shell(a),
            LeaseCommand::Ssh(a) => ssh(a, format),
            LeaseCommand::Restart(a) => {
                let report = block_on(async {
                    let t = a.tenant.connect().await?;
                    anyhow::Ok(lease::restart(&t, a.dseq, a.service.as_deref()).await?)
                })??;
                if format == OutputFormat::Text {
                    println!(
                        "restarted {} of deployment {}",
                        a.service.as_deref().unwrap_or("every service"),
                        a.dseq
                    );
                }
                print_reports(format, std::slice::from_ref(&report))?;
                Ok(ExitCode::SUCCESS)
            }
            LeaseCommand::Close(a) => {
                let closed = block_on(async {
                    let t = a.tenant.connect().await?;
                    anyhow::Ok(lease::close(&t, a.dseq).await?)
                })??;
                match format {
                    OutputFormat::Json => print_json(&closed)?,
                    OutputFormat::Text => {
                        println!(
                            "deployment {} closed ({} lease(s) ended)",
                            closed.dseq,
                            closed.leases.len()
                        );
                        if let Some(r) = &closed.refund {
                            println!("refunded: {r}");
                        }
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}

fn list(a: &ListArgs, format: OutputFormat) -> anyhow::Result<ExitCode> {
    let leases = block_on(async {
        let t = a.tenant.connect().await?;
        anyhow::Ok(lease::list(&t, a.all).await?)
    })??;
    match format {
        OutputFormat::Json => print_json(&leases)?,
        OutputFormat::Text if leases.is_empty() => {
            println!("no {}leases", if a.all { "" } else { "active " })
        }
        OutputFormat::Text => {
            println!(
                "{:>8}  {:>5}  {:<44}  {:<18}  {:>14}  {:>14}  {:>14}  {:>11}",
                "DSEQ",
                "G/O",
                "PROVIDER",
                "STATE",
                "PRICE/BLOCK",
                "PRICE/HOUR",
                "ESCROW",
                "BLOCKS LEFT"
            );
            for l in &leases {
                let closed = l
                    .closed
                    .as_ref()
                    .map(|c| format!("  {c}"))
                    .unwrap_or_default();
                println!(
                    "{:>8}  {:>5}  {:<44}  {:<18}  {:>14}  {:>14}  {:>14}  {:>11}{}",
                    l.dseq,
                    format!("{}/{}", l.gseq, l.oseq),
                    l.provider.to_string(),
                    json_name(&l.state),
                    l.price.to_string(),
                    format!("{:.2}", l.price_per_hour),
                    l.escrow_balance.to_string(),
                    l.blocks_left.map(|b| b.to_string()).unwrap_or("-".into()),
                    closed
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn logs(a: &LogsArgs, format: OutputFormat) -> anyhow::Result<ExitCode> {
    block_on(async {
        let t = a.tenant.connect().await?;
        let logs = lease::logs(&t, a.dseq, a.service.as_deref(), a.tail, a.follow).await?;
        if let Some((id, close)) = &logs.closed {
            eprintln!(
                "lease {}/{}/{} closed at height {} ({}); showing the logs the provider kept at its close",
                id.dseq,
                id.gseq,
                id.oseq,
                close.height,
                close.reason.as_str()
            );
        }
        let mut stream = logs.lines;
        let mut out = std::io::stdout().lock();
        while let Some(line) = stream.next().await {
            let line = line?;
            match format {
                OutputFormat::Json => writeln!(out, "{}", serde_json::to_string(&line)?)?,
                OutputFormat::Text => {
                    writeln!(out, "[{}-{}] {}", line.service, line.replica, line.line)?
                }
            }
            out.flush()?;
        }
        anyhow::Ok(())
    })??;
    Ok(ExitCode::SUCCESS)
}

/// Runs the command; on a terminal with raw mode, else piping stdin and stdout. The exit code
/// is the command's.
fn shell(a: &ShellArgs) -> anyhow::Result<ExitCode> {
    let tty = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let cmd = if a.cmd.is_empty() {
        vec!["sh".to_string()]
    } else {
        a.cmd.clone()
    };
    let code = block_on(async {
        let t = a.tenant.connect().await?;
        let session = lease::shell(&t, a.dseq, a.service.as_deref(), cmd, tty).await?;
        let mut input = session.input;
        let mut output = session.output;
        let _raw = if tty { Some(RawMode::enter()?) } else { None };
        if tty && let Some((cols, rows)) = terminal_size() {
            input.resize(cols, rows).await?;
        }
        // stdin is read on a plain thread: a blocked read must not keep the runtime alive.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
        std::thread::spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut buf = [0u8; 4096];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx.blocking_send(buf[..n].to_vec()).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        let mut stdin_open = true;
        let mut stdout = std::io::stdout();
        let mut stderr = std::io::stderr();
        loop {
            tokio::select! {
                chunk = rx.recv(), if stdin_open => match chunk {
                    Some(bytes) => input.write(&bytes).await?,
                    None => {
                        stdin_open = false;
                        input.close_stdin().await?;
                    }
                },
                event = output.next() => match event {
                    Some(Ok(ShellEvent::Stdout(b))) => {
                        stdout.write_all(&b)?;
                        stdout.flush()?;
                    }
                    Some(Ok(ShellEvent::Stderr(b))) => {
                        stderr.write_all(&b)?;
                        stderr.flush()?;
                    }
                    Some(Ok(ShellEvent::Exit(code))) => break anyhow::Ok(code),
                    Some(Err(e)) => return Err(e.into()),
                    None => anyhow::bail!("the provider closed the session without an exit code"),
                },
            }
        }
    })??;
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

/// Runs (or prints) the user's `ssh` at the VM's forwarded port; its exit code is ssh's.
fn ssh(a: &SshArgs, format: OutputFormat) -> anyhow::Result<ExitCode> {
    let (service, access) = block_on(async {
        let t = a.tenant.connect().await?;
        anyhow::Ok(lease::ssh_access(&t, a.dseq, a.service.as_deref()).await?)
    })??;
    // Each deployment's VM has its own host key and ports are reused across leases: a known
    // hosts file per deployment and service keeps ssh from crying "host key changed".
    let known_hosts = a
        .tenant
        .store
        .home
        .dir()?
        .join("ssh")
        .join(format!("{}-{service}.known_hosts", a.dseq));
    let mut args: Vec<String> = vec![
        "-p".into(),
        access.port.to_string(),
        "-o".into(),
        format!("UserKnownHostsFile={}", known_hosts.display()),
        "-o".into(),
        "StrictHostKeyChecking=accept-new".into(),
    ];
    if !std::io::stdin().is_terminal() {
        // Scripted use: fail instead of prompting for a password or passphrase, and give up on
        // a host that does not answer.
        args.extend([
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            "ConnectTimeout=30".into(),
        ]);
    }
    if let Some(key) = &a.identity {
        args.extend([
            "-i".into(),
            key.display().to_string(),
            "-o".into(),
            "IdentitiesOnly=yes".into(),
        ]);
    }
    args.push(format!("{}@{}", access.user, access.host));
    if !a.cmd.is_empty() {
        args.push("--".into());
        args.extend(a.cmd.iter().cloned());
    }
    if a.print {
        match format {
            OutputFormat::Json => print_json(&serde_json::json!({
                "service": service,
                "user": access.user,
                "host": access.host,
                "port": access.port,
                "argv": std::iter::once("ssh".to_string()).chain(args).collect::<Vec<_>>(),
            }))?,
            OutputFormat::Text => println!("ssh {}", shell_words(&args)),
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(dir) = known_hosts.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let status = std::process::Command::new("ssh")
        .args(&args)
        .status()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => anyhow::anyhow!(
                "ssh is not installed: install OpenSSH's client (Debian: apt-get install openssh-client)"
            ),
            _ => anyhow::anyhow!("running ssh: {e}"),
        })?;
    Ok(ExitCode::from(
        status
            .code()
            .and_then(|c| u8::try_from(c).ok())
            .unwrap_or(255),
    ))
}

/// `args` as one line a shell reads back the same (single quotes where needed).
fn shell_words(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:@,+%".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The terminal's columns and rows.
fn terminal_size() -> Option<(u16, u16)> {
    let ws = rustix::termios::tcgetwinsize(std::io::stdout()).ok()?;
    Some((ws.ws_col, ws.ws_row))
}

/// The terminal in raw mode (keys go to the remote shell as typed); restored on drop.
struct RawMode {
    saved: rustix::termios::Termios,
}

impl RawMode {
    fn enter() -> anyhow::Result<RawMode> {
        let stdin = std::io::stdin();
        let saved = rustix::termios::tcgetattr(&stdin).context("reading the terminal's mode")?;
        let mut raw = saved.clone();
        raw.make_raw();
        rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &raw)
            .context("putting the terminal in raw mode")?;
        Ok(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = rustix::termios::tcsetattr(
            std::io::stdin(),
            rustix::termios::OptionalActions::Now,
            &self.saved,
        );
    }
}

/// `kumo deposit`.
pub(crate) fn deposit(a: &DepositArgs, format: OutputFormat) -> anyhow::Result<ExitCode> {
    let d = block_on(async {
        let t = a.tenant.connect().await?;
        anyhow::Ok(lease::deposit(&t, a.owner, a.dseq, a.amount.clone()).await?)
    })??;
    match format {
        OutputFormat::Json => print_json(&d)?,
        OutputFormat::Text => println!(
            "deposited {} into deployment {}: escrow {}{}",
            d.amount,
            d.dseq,
            d.escrow_balance,
            d.blocks_left
                .map(|b| format!(", {b} blocks left"))
                .unwrap_or_default()
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// `kumo update`.
pub(crate) fn update(a: &UpdateArgs, format: OutputFormat) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&a.file)
        .with_context(|| format!("reading {}", a.file.display()))?;
    crate::deploy::check_sdl(&a.file, &text, a.strict)?;
    let u = block_on(async {
        let t = a.tenant.connect().await?;
        anyhow::Ok(lease::update(&t, a.dseq, &text).await?)
    })??;
    match format {
        OutputFormat::Json => print_json(&u)?,
        OutputFormat::Text => {
            if u.hash_changed {
                println!(
                    "deployment {} updated: manifest hash {}",
                    u.dseq, u.manifest_hash
                );
            } else {
                println!(
                    "deployment {}: the manifest is unchanged ({}); sent again",
                    u.dseq, u.manifest_hash
                );
            }
            for p in &u.providers {
                println!("  accepted by {p}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    #[test]
    fn parses_lease_commands() {
        let cli = Cli::try_parse_from([
            "kumo",
            "lease",
            "shell",
            "42",
            "--service",
            "web",
            "--",
            "sh",
            "-c",
            "exit 3",
        ])
        .unwrap();
        let Command::Lease(LeaseCommand::Shell(a)) = cli.command else {
            panic!("not lease shell")
        };
        assert_eq!(a.dseq, 42);
        assert_eq!(a.service.as_deref(), Some("web"));
        assert_eq!(a.cmd, ["sh", "-c", "exit 3"]);
        let cli = Cli::try_parse_from(["kumo", "lease", "logs", "7", "-f", "--tail", "5"]).unwrap();
        let Command::Lease(LeaseCommand::Logs(a)) = cli.command else {
            panic!("not lease logs")
        };
        assert!(a.follow);
        assert_eq!(a.tail, Some(5));
        let cli = Cli::try_parse_from(["kumo", "deposit", "7", "10ukumo"]).unwrap();
        assert!(matches!(cli.command, Command::Deposit(_)));
        assert!(Cli::try_parse_from(["kumo", "deposit", "7", "ten"]).is_err());
        let cli = Cli::try_parse_from(["kumo", "update", "7", "web.yaml"]).unwrap();
        assert!(matches!(cli.command, Command::Update(_)));
    }
}
