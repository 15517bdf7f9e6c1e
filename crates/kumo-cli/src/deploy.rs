//! `kumo deploy FILE`: an SDL file to running services (over [`kumo_tenant::deploy`]), and
//! [`TenantArgs`], the key + node options every tenant command shares.
//!
//! Progress goes to stderr, one line per step with the seconds since the start; the bids as a
//! table; the result (URLs, ports) to stdout, or with `-o json` the same [`LeaseReport`] JSON
//! that `kumo lease status DSEQ -o json` prints.

use std::{
    io::{BufRead, IsTerminal, Write},
    path::PathBuf,
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::Context;
use clap::Args;
use kumo_tenant::{
    Tenant,
    deploy::{BidOffer, DeployOptions, Progress, Selection},
    report::LeaseReport,
};
use kumo_types::{Address, Coin, GroupSpec};

use crate::{
    client::{NodeArgs, block_on},
    keys::{Purpose, StoreArgs},
    output::{OutputFormat, print_json},
};

/// The tenant's key and node.
#[derive(Debug, Args)]
pub(crate) struct TenantArgs {
    /// The tenant's key (name in the keyring).
    #[arg(long, env = "KUMO_FROM", value_name = "KEY", default_value = "tenant")]
    pub(crate) from: String,
    #[command(flatten)]
    pub(crate) node: NodeArgs,
    #[command(flatten)]
    pub(crate) store: StoreArgs,
}

impl TenantArgs {
    /// Reads the key and connects to the node.
    pub(crate) async fn connect(&self) -> anyhow::Result<Tenant> {
        let keystore = self.store.open(Some(Purpose::Unlock))?;
        let key = keystore
            .secret_key(&self.from)
            .with_context(|| format!("the tenant key {:?} (--from / KUMO_FROM)", self.from))?;
        Ok(Tenant::connect(self.node.client()?, key).await?)
    }
}

/// How `--select` chooses a bid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SelectArg {
    /// The lowest price.
    Cheapest,
    /// This provider's bid.
    Provider(Address),
}

fn parse_select(s: &str) -> Result<SelectArg, String> {
    if s == "cheapest" {
        return Ok(SelectArg::Cheapest);
    }
    s.parse::<Address>()
        .map(SelectArg::Provider)
        .map_err(|e| format!("expected `cheapest` or a provider address (kumo1…): {e}"))
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    kumo_node::home::parse_duration(s)
}

/// `kumo deploy`.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  kumo deploy examples/hello-web.yaml                     # cheapest bid, default deposit
  kumo deploy web.yaml --deposit 5000000ukumo --select kumo1provider…
  kumo deploy web.yaml --bid-wait 10s --wait 60s -o json  # prints what `kumo lease status` prints

The file is checked before anything else: an invalid file, or with --strict a file with warnings
(keys Akash ignores, such as `environment` for `env`), is refused before any key is read or
anything is sent. Warnings are printed first either way.

Steps (stderr): validated → deployment created → bids → bid selected → lease created →
manifest sent → waiting → running; then the URLs on stdout.

When it fails:
  no bid                    as soon as every live provider declined (or after --bid-wait) the
                            deployment is closed (deposit refunded); each provider that declined
                            is listed with its own reason, the others with why they do not fit as
                            far as can be told here (attributes, auditors, capacity, price)
  manifest refused          the provider's reason (e.g. the image cannot be pulled); the
                            deployment is closed and refunded
  deposit too small         nothing is sent; the smallest deposit that would do is printed
  not ready in --wait       which service and its last log lines; the lease stays open (close it
                            with `kumo lease close DSEQ`) unless --close-on-failure

With --failover, `kumo deploy` goes on as `kumo lease watch DSEQ --file FILE` once the services
run: when a lease closes for the provider's reason, the group moves to another provider (same
manifest; persistent volumes do not follow, they start empty).")]
pub(crate) struct DeployArgs {
    /// The SDL file (Akash SDL v2.0/v2.1).
    pub(crate) file: PathBuf,
    /// Escrow deposit, e.g. `5000000ukumo` [default: the chain's minimum, or enough for
    /// --min-blocks blocks at the SDL's maximum price if more].
    #[arg(long, value_name = "COIN")]
    pub(crate) deposit: Option<Coin>,
    /// `cheapest`, or a provider's address [default: cheapest without a terminal; a numbered
    /// pick on a terminal].
    #[arg(long, value_name = "cheapest|PROVIDER", value_parser = parse_select)]
    pub(crate) select: Option<SelectArg>,
    /// How long to wait for bids.
    #[arg(long, value_name = "DUR", value_parser = parse_duration, default_value = "30s")]
    pub(crate) bid_wait: Duration,
    /// How long to wait for the services to run once the manifest is accepted.
    #[arg(long, value_name = "DUR", value_parser = parse_duration, default_value = "120s")]
    pub(crate) wait: Duration,
    /// Close the deployment if the services are not running within --wait.
    #[arg(long)]
    pub(crate) close_on_failure: bool,
    /// The deposit must pay for this many blocks at the SDL's maximum price.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub(crate) min_blocks: u64,
    /// Refuse the file if anything in it would be ignored (`kumo sdl check` lists the warnings).
    #[arg(long)]
    pub(crate) strict: bool,
    /// Stay and watch the deployment, moving a lost lease to another provider (see
    /// `kumo lease watch`); stop with Ctrl-C, which leaves the deployment running.
    #[arg(long)]
    pub(crate) failover: bool,
    #[command(flatten)]
    pub(crate) tenant: TenantArgs,
}

impl DeployArgs {
    pub(crate) fn run(&self, format: OutputFormat) -> anyhow::Result<ExitCode> {
        let text = std::fs::read_to_string(&self.file)
            .with_context(|| format!("reading {}", self.file.display()))?;
        check_sdl(&self.file, &text, self.strict)?;
        let select = match &self.select {
            Some(SelectArg::Cheapest) => Selection::Cheapest,
            Some(SelectArg::Provider(p)) => Selection::Provider(*p),
            None if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() => {
                Selection::Ask(Box::new(ask))
            }
            None => Selection::Cheapest,
        };
        let opts = DeployOptions {
            deposit: self.deposit.clone(),
            select,
            bid_wait: self.bid_wait,
            wait: self.wait,
            close_on_failure: self.close_on_failure,
            min_lease_blocks: self.min_blocks,
            strict: self.strict,
            ..DeployOptions::default()
        };
        let failover = self.failover;
        block_on(async {
            let tenant = self.tenant.connect().await?;
            let mut view = ProgressView::new();
            let reports =
                kumo_tenant::deploy::deploy(&tenant, &text, opts, &mut |p| view.show(&p)).await?;
            print_reports(format, &reports)?;
            if failover {
                let dseq = reports[0].status.dseq;
                let opts = DeployOptions {
                    bid_wait: self.bid_wait,
                    wait: self.wait,
                    ..DeployOptions::default()
                };
                crate::lease::watch_until_closed(&tenant, dseq, &text, &opts, format).await?;
            }
            anyhow::Ok(())
        })??;
        Ok(ExitCode::SUCCESS)
    }
}

/// Checks the SDL before any key is read or anything is sent (`kumo deploy`, `kumo update`):
/// prints its warnings on stderr,
/// and refuses an invalid file, or with `strict` a file with warnings.
pub(crate) fn check_sdl(file: &std::path::Path, text: &str, strict: bool) -> anyhow::Result<()> {
    let name = file.display();
    let sdl = kumo_sdl::parse(text).map_err(kumo_tenant::TenantError::Sdl)?;
    if strict && !sdl.warnings().is_empty() {
        for warning in sdl.warnings() {
            eprintln!("error: {name}: {}", warning.to_error());
        }
        anyhow::bail!(
            "{name}: refused by --strict, nothing was sent: {} part(s) of the file would be ignored",
            sdl.warnings().len()
        );
    }
    for warning in sdl.warnings() {
        eprintln!("warning: {name}: {warning}");
    }
    Ok(())
}

/// Prints lease reports: one JSON object for one lease (an array for several), or text.
pub(crate) fn print_reports(format: OutputFormat, reports: &[LeaseReport]) -> anyhow::Result<()> {
    match format {
        OutputFormat::Json if reports.len() == 1 => print_json(&reports[0]),
        OutputFormat::Json => print_json(reports),
        OutputFormat::Text => {
            for r in reports {
                print_report_text(r);
            }
            Ok(())
        }
    }
}

/// A report for people.
pub(crate) fn print_report_text(r: &LeaseReport) {
    let s = &r.status;
    let c = &r.chain;
    println!(
        "lease {}/{}/{}  provider {}",
        s.dseq, s.gseq, s.oseq, s.provider
    );
    println!(
        "  state: {} (chain: {})",
        json_name(&s.state),
        json_name(&c.state)
    );
    if let Some(closed) = &c.closed {
        println!("  {closed}");
    }
    println!(
        "  price: {} per block; escrow {}{}{}",
        c.price,
        c.escrow_balance,
        c.price.denom,
        c.blocks_left
            .map(|b| format!(", {b} blocks left"))
            .unwrap_or_default()
    );
    if let Some(t) = &c.top_up {
        println!(
            "  top-up: {} more{} from {}, {} blocks' worth whenever fewer remain{}",
            t.remaining,
            c.price.denom,
            t.granter,
            t.below_blocks,
            c.blocks_left_with_top_up
                .map(|b| format!(" (about {b} blocks with it)"))
                .unwrap_or_default()
        );
    }
    for svc in &s.services {
        println!(
            "  service {}: {}/{} replicas available",
            svc.name, svc.available, svc.replicas
        );
        for u in &svc.uris {
            println!("    {u}");
        }
        for p in &svc.forwarded_ports {
            println!(
                "    port {} → {}:{} ({})",
                p.port,
                p.host,
                p.external_port,
                json_name(&p.proto)
            );
        }
    }
    for w in &s.warnings {
        println!("  warning: {w}");
    }
}

/// A value's JSON string form (`running`, `active`, `tcp`), for enums printed to people.
pub(crate) fn json_name<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "?".into(),
    }
}

/// Renders progress on stderr (`kumo deploy`, and the steps of `kumo lease watch`).
pub(crate) struct ProgressView {
    start: Instant,
    table_header: bool,
}

impl ProgressView {
    pub(crate) fn new() -> Self {
        ProgressView {
            start: Instant::now(),
            table_header: false,
        }
    }

    fn line(&self, what: &str) {
        eprintln!("[{:5.1}s] {what}", self.start.elapsed().as_secs_f64());
    }

    pub(crate) fn show(&mut self, p: &Progress) {
        match p {
            Progress::Validated {
                groups,
                deposit,
                max_price,
                ..
            } => self.line(&format!(
                "validated: {groups} group(s), max price {} per block, deposit {deposit}",
                max_price
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Progress::DeploymentCreated {
                dseq,
                deposit,
                height,
            } => self.line(&format!(
                "deployment {dseq} created at height {height} (deposit {deposit}); waiting for bids"
            )),
            Progress::BidArrived(o) => {
                if !self.table_header {
                    self.table_header = true;
                    self.line("bids:");
                    eprintln!("{}", bid_header());
                }
                eprintln!("{}", bid_row(None, o));
            }
            Progress::Declined { provider, reason } => {
                self.line(&format!("provider {provider} declined ({reason})"))
            }
            Progress::BidSelected(o) => self.line(&format!(
                "bid selected: {} at {} per block",
                o.provider, o.price
            )),
            Progress::LeaseCreated { lease } => self.line(&format!(
                "lease {}/{}/{} created with {}",
                lease.dseq, lease.gseq, lease.oseq, lease.provider
            )),
            Progress::GatewayUnreachable {
                provider,
                error,
                failing_secs,
            } => self.line(&format!(
                "provider {provider}'s gateway unreachable for {failing_secs} s, sending the manifest again: {error}"
            )),
            Progress::ManifestSent { provider } => {
                self.line(&format!("manifest sent to {provider}"))
            }
            Progress::Waiting { services } => self.line(&format!(
                "waiting: {}",
                services
                    .iter()
                    .map(|s| format!("{} {}/{}", s.name, s.available, s.replicas))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Progress::Running(r) => self.line(&format!(
                "running: lease {}/{}/{}",
                r.status.dseq, r.status.gseq, r.status.oseq
            )),
        }
    }
}

/// The bid table's header. GPU: what a bid offers (count, model, memory, interface).
fn bid_header() -> String {
    format!(
        "  {:>3}  {:<44}  {:>16}  {:>14}  {:<6}  {}",
        "#", "PROVIDER", "PRICE/BLOCK", "PRICE/HOUR", "GPU", "ATTRIBUTES"
    )
}

fn bid_row(n: Option<usize>, o: &BidOffer) -> String {
    let attrs = o
        .attributes
        .iter()
        .filter(|a| !a.key.starts_with("capabilities/"))
        .map(|a| format!("{}={}", a.key, a.value))
        .collect::<Vec<_>>()
        .join(",");
    format!(
        "  {:>3}  {:<44}  {:>16}  {:>14}  {:<6}  {}",
        n.map(|n| n.to_string()).unwrap_or_default(),
        o.provider.to_string(),
        o.price.to_string(),
        format!("{:.4}{}", o.price_per_hour, o.price.denom),
        o.gpu.as_deref().unwrap_or("-"),
        attrs
    )
}

/// The interactive pick: a numbered table on stderr, a number read from stdin.
fn ask(group: &GroupSpec, offers: &[BidOffer]) -> Option<usize> {
    eprintln!("bids for group {:?}:", group.name);
    eprintln!("{}", bid_header());
    for (i, o) in offers.iter().enumerate() {
        eprintln!("{}", bid_row(Some(i + 1), o));
    }
    let stdin = std::io::stdin();
    loop {
        eprint!("pick a bid [1-{}, empty = 1, q = cancel]: ", offers.len());
        let _ = std::io::stderr().flush();
        let mut line = String::new();
        if stdin.lock().read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim();
        if line == "q" {
            return None;
        }
        if line.is_empty() {
            return Some(0);
        }
        match line.parse::<usize>() {
            Ok(n) if (1..=offers.len()).contains(&n) => return Some(n - 1),
            _ => eprintln!("type a number from 1 to {}", offers.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    #[test]
    fn parses_deploy() {
        let cli = Cli::try_parse_from([
            "kumo",
            "deploy",
            "web.yaml",
            "--deposit",
            "5000000ukumo",
            "--select",
            "cheapest",
            "--bid-wait",
            "5s",
            "--wait",
            "1m",
            "--from",
            "alice",
        ])
        .unwrap();
        let Command::Deploy(a) = cli.command else {
            panic!("not deploy")
        };
        assert_eq!(a.deposit, Some(Coin::new("ukumo", 5_000_000)));
        assert_eq!(a.select, Some(SelectArg::Cheapest));
        assert_eq!(a.bid_wait, Duration::from_secs(5));
        assert_eq!(a.wait, Duration::from_secs(60));
        assert_eq!(a.tenant.from, "alice");
        assert!(Cli::try_parse_from(["kumo", "deploy", "f", "--select", "nobody"]).is_err());
    }
}
