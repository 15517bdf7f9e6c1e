//! `kumo deploy`: an SDL file to running services, as steps a caller renders.
//!
//! 1. **Validate** (nothing sent yet): the SDL parses; the chain's own group checks pass
//!    (limits, payment denomination); the deposit is in the SDL's denomination, at least the
//!    chain's `deployment_min_deposit`, and covers [`DeployOptions::min_lease_blocks`] blocks at
//!    the SDL's maximum price (any bid is at most that, so the chosen one is covered too).
//! 2. **CreateDeployment** with `dseq` = the chain height (the next free one for this owner).
//! 3. **Bids and declines**, from the node's event stream (no polling): for each group, until
//!    the provider named by `--select` bid, or every live provider (one that proved it is alive
//!    within the chain's `liveness_window`) bid or declined (`DeclineOrder`), or every provider
//!    whose attributes fit bid, or [`DeployOptions::bid_settle`] after the first bid, or
//!    [`DeployOptions::bid_wait`] passed. None → `CloseDeployment` (refund), with each
//!    provider's own reason when it declined, and [`crate::fit::explain`]'s local guess for
//!    those that said nothing.
//! 4. **Select** (cheapest, a named provider, or a caller's pick) and **CreateLease** (one
//!    transaction for every group).
//! 5. **Manifest** to each provider's gateway (retried while the provider has not seen the
//!    lease yet); refused → `CloseDeployment` and the provider's reason.
//! 6. **Wait** until every service has its replicas (status polled every
//!    [`STATUS_POLL`]); not in [`DeployOptions::wait`] → which service, its last log lines;
//!    the lease stays open unless [`DeployOptions::close_on_failure`].

use std::{
    collections::{BTreeMap, HashMap},
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use kumo_chain::events::Event;
use kumo_client::types::{BidState, BidsQuery, LeasesQuery, OrderIdParam};
use kumo_gateway::{
    client::{ClientError as GatewayError, GatewayClient},
    types::{LeaseState as WorkloadState, LeaseStatusView},
};
use kumo_types::{
    Address, Attribute, BidId, Coin, Dec, DecCoin, DeploymentId, GroupSpec, LeaseId, Msg, OrderId,
    matching::attributes_subset_of,
};
use serde::Serialize;

use crate::{
    NotReadyService, Tenant, TenantError,
    report::{LeaseReport, chain_lease, measured_block_ms, per_hour},
};

/// How often the provider's lease status is read while waiting for the services.
pub const STATUS_POLL: Duration = Duration::from_millis(100);
/// How often a manifest is sent again while the provider has not seen the lease yet.
const MANIFEST_RETRY: Duration = Duration::from_millis(50);
/// How long the provider may take to see a new lease.
const MANIFEST_DEADLINE: Duration = Duration::from_secs(30);
/// How long the manifest is sent again while the provider's gateway cannot be reached (a
/// restart, a blip of its network), with backoff from [`OUTAGE_RETRY_FIRST`] to
/// [`OUTAGE_RETRY_MAX`]: well within the provider's manifest timeout (5 min by default).
const GATEWAY_OUTAGE: Duration = Duration::from_secs(60);
/// The first wait after an unreachable gateway.
const OUTAGE_RETRY_FIRST: Duration = Duration::from_millis(250);
/// The longest wait between two tries.
const OUTAGE_RETRY_MAX: Duration = Duration::from_secs(4);
/// Log lines shown for a service that is not ready.
const NOT_READY_LOG_LINES: u64 = 20;

/// A caller's pick among one group's offers: an index into them, or `None` to give up.
pub type Picker = Box<dyn FnMut(&GroupSpec, &[BidOffer]) -> Option<usize> + Send + Sync>;

/// How a bid is chosen.
pub enum Selection {
    /// The lowest price (ties: the earliest bid).
    Cheapest,
    /// This provider's bid; no other.
    Provider(Address),
    /// The caller picks from the offers of one group (an index into them), or `None` to give
    /// up (the deployment is closed).
    Ask(Picker),
}

impl std::fmt::Debug for Selection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Selection::Cheapest => f.write_str("Cheapest"),
            Selection::Provider(p) => write!(f, "Provider({p})"),
            Selection::Ask(_) => f.write_str("Ask"),
        }
    }
}

/// The knobs of [`deploy`].
#[derive(Debug)]
pub struct DeployOptions {
    /// The escrow deposit; default: the chain's minimum, raised to cover `min_lease_blocks`
    /// blocks at the SDL's maximum price.
    pub deposit: Option<Coin>,
    /// How the bid is chosen.
    pub select: Selection,
    /// How long to wait for a first acceptable bid (default 30 s).
    pub bid_wait: Duration,
    /// How long to wait for more bids once one arrived, unless every provider that fits has
    /// bid (default 1 s).
    pub bid_settle: Duration,
    /// How long to wait for the services to run once the manifest was accepted (default
    /// 120 s: a first image pull can be slow).
    pub wait: Duration,
    /// Close the deployment when the services do not become ready in time.
    pub close_on_failure: bool,
    /// The deposit must pay for at least this many blocks at the maximum price (default 100).
    pub min_lease_blocks: u64,
    /// Refuse an SDL with warnings (parts Akash would ignore) before anything is sent.
    pub strict: bool,
}

impl Default for DeployOptions {
    fn default() -> Self {
        DeployOptions {
            deposit: None,
            select: Selection::Cheapest,
            bid_wait: Duration::from_secs(30),
            bid_settle: Duration::from_secs(1),
            wait: Duration::from_secs(120),
            close_on_failure: false,
            min_lease_blocks: 100,
            strict: false,
        }
    }
}

/// A bid as the tenant chooses among them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BidOffer {
    /// The bid (= the lease's id if accepted).
    pub bid: BidId,
    /// The provider.
    pub provider: Address,
    /// Price per block for the group.
    pub price: DecCoin,
    /// Price per hour at the chain's block time.
    pub price_per_hour: f64,
    /// The provider's attributes (region, tier, capabilities).
    pub attributes: Vec<Attribute>,
    /// The provider's gateway.
    pub host_uri: String,
    /// The GPUs the bid offers (`1× h100 80Gi sxm`); `None` without GPUs.
    pub gpu: Option<String>,
}

/// Replicas of one service while waiting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceProgress {
    /// The service.
    pub name: String,
    /// Replicas running.
    pub available: u32,
    /// Replicas wanted.
    pub replicas: u32,
}

/// One step of [`deploy`], for the caller to show.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Progress {
    /// The SDL and deposit passed every check.
    Validated {
        /// Placement groups (one order, one lease each).
        groups: usize,
        /// The manifest hash that goes on chain, hex.
        manifest_hash: String,
        /// The deposit that will be made.
        deposit: Coin,
        /// The SDL's maximum price per block, per group.
        max_price: Vec<DecCoin>,
        /// Parts of the SDL that are ignored (keys Akash ignores too), to show before anything
        /// is sent.
        warnings: Vec<kumo_sdl::SdlWarning>,
    },
    /// `CreateDeployment` is committed.
    DeploymentCreated {
        /// Deployment sequence.
        dseq: u64,
        /// Its escrow deposit.
        deposit: Coin,
        /// Block height.
        height: u64,
    },
    /// A provider bid.
    BidArrived(BidOffer),
    /// A provider declined (it will not bid on the group's order).
    Declined {
        /// The provider.
        provider: Address,
        /// Its reason code.
        reason: kumo_types::DeclineReason,
    },
    /// A bid was chosen.
    BidSelected(BidOffer),
    /// `CreateLease` is committed.
    LeaseCreated {
        /// The lease.
        lease: LeaseId,
    },
    /// The provider's gateway could not be reached to take the manifest: sending again.
    GatewayUnreachable {
        /// The provider.
        provider: Address,
        /// Why, as the last try failed.
        error: String,
        /// Seconds it has been failing.
        failing_secs: u64,
    },
    /// A provider accepted the manifest.
    ManifestSent {
        /// The provider.
        provider: Address,
    },
    /// Replicas available so far (sent when it changes).
    Waiting {
        /// Per service.
        services: Vec<ServiceProgress>,
    },
    /// A lease runs.
    Running(Box<LeaseReport>),
}

/// The block time assumed when the chain is too young to measure it.
const DEFAULT_BLOCK_MS: f64 = 1000.0;

/// Deploys `sdl_text` for `tenant`: see the module documentation. Returns one report per lease
/// (one per placement group), every service running.
pub async fn deploy(
    tenant: &Tenant,
    sdl_text: &str,
    mut opts: DeployOptions,
    on: &mut (dyn FnMut(Progress) + Send),
) -> Result<Vec<LeaseReport>, TenantError> {
    let node = tenant.node();
    let sdl = match opts.strict {
        true => kumo_sdl::parse_strict(sdl_text)?,
        false => kumo_sdl::parse(sdl_text)?,
    };
    let groups = sdl.groups().to_vec();
    let deposit = check_deposit(tenant.params(), &groups, &opts)?;
    on(Progress::Validated {
        groups: groups.len(),
        manifest_hash: hex(&sdl.manifest_hash()),
        deposit: deposit.clone(),
        max_price: groups.iter().filter_map(GroupSpec::price).collect(),
        warnings: sdl.warnings().to_vec(),
    });

    let market = Market::read(tenant).await?;

    let start_height = node.status().await?.height;
    let id = free_dseq(tenant, start_height.max(1)).await?;
    // Events from before the deployment's block on: no bid can be missed.
    let mut events = node.event_stream(start_height);
    let created = tenant
        .signer()
        .submit(vec![Msg::CreateDeployment {
            id,
            groups: groups.clone(),
            hash: sdl.manifest_hash(),
            deposit: deposit.clone(),
        }])
        .await?;
    on(Progress::DeploymentCreated {
        dseq: id.dseq,
        deposit: deposit.clone(),
        height: created.height,
    });

    // Bids.
    let orders: Vec<OrderId> = (1..=groups.len() as u32)
        .map(|g| id.group(g).order(1))
        .collect();
    let began = Instant::now();
    let offers = gather_bids(node, &mut events, &market, &orders, &groups, &opts, on).await?;
    drop(events);

    // Selection.
    let mut chosen: Vec<BidOffer> = Vec::new();
    for (i, g) in groups.iter().enumerate() {
        let pick = match &mut opts.select {
            Selection::Cheapest => offers[i]
                .iter()
                .enumerate()
                .min_by(|a, b| a.1.price.amount.cmp(&b.1.price.amount))
                .map(|(k, _)| k),
            Selection::Provider(want) => offers[i].iter().position(|o| o.provider == *want),
            Selection::Ask(ask) if !offers[i].is_empty() => ask(g, &offers[i]),
            Selection::Ask(_) => None,
        };
        match pick.and_then(|k| offers[i].get(k)) {
            Some(o) => {
                on(Progress::BidSelected(o.clone()));
                chosen.push(o.clone());
            }
            None => {
                let selected = match &opts.select {
                    Selection::Provider(p) => Some(*p),
                    _ => None,
                };
                let gave_up = matches!(opts.select, Selection::Ask(_)) && !offers[i].is_empty();
                // The providers' own reasons are kept while the order is open: read them first.
                let declines = node.declines(&orders[i]).await?.value;
                let refund = close_deployment(tenant, id).await?;
                if gave_up {
                    return Err(TenantError::Cancelled {
                        dseq: id.dseq,
                        refund,
                    });
                }
                let mut providers = crate::fit::explain(tenant, std::slice::from_ref(g)).await?;
                providers.retain(|p| !declines.iter().any(|d| d.provider == p.provider));
                return Err(TenantError::NoBids {
                    dseq: id.dseq,
                    waited_ms: began.elapsed().as_millis() as u64,
                    refund,
                    why: Box::new(crate::error::NoBidReasons {
                        declines: declines
                            .into_iter()
                            .map(|d| crate::error::DeclineView {
                                provider: d.provider,
                                reason: d.reason,
                                detail: d.detail,
                            })
                            .collect(),
                        providers,
                    }),
                    selected,
                });
            }
        }
    }
    tenant
        .signer()
        .submit(
            chosen
                .iter()
                .map(|o| Msg::CreateLease { bid: o.bid })
                .collect(),
        )
        .await?;
    for o in &chosen {
        on(Progress::LeaseCreated { lease: o.bid });
    }

    // Manifest, once per provider (it deploys every group it leases).
    let mut gateways: BTreeMap<Address, GatewayClient> = BTreeMap::new();
    for o in &chosen {
        if gateways.contains_key(&o.provider) {
            continue;
        }
        let p = market.providers.get(&o.provider).ok_or_else(|| {
            TenantError::NotFound(format!("provider {} is not registered", o.provider))
        })?;
        let gw = tenant.gateway_of(p)?;
        let mut retrying = |e: &GatewayError, failing: Duration| {
            on(Progress::GatewayUnreachable {
                provider: o.provider,
                error: e.to_string(),
                failing_secs: failing.as_secs(),
            })
        };
        if let Err(e) = send_manifest(&gw, id.dseq, sdl.manifest(), &mut retrying).await {
            if is_outage(&e) {
                // The lease stands and the provider may come back: closing would throw away
                // the tenant's place for a network blip.
                return Err(TenantError::GatewayUnreachable {
                    dseq: id.dseq,
                    provider: o.provider,
                    waited_secs: GATEWAY_OUTAGE.as_secs(),
                    cause: e.to_string(),
                });
            }
            let refund = close_deployment(tenant, id).await?;
            return Err(TenantError::ManifestRefused {
                dseq: id.dseq,
                provider: o.provider,
                reason: e.to_string(),
                refund,
            });
        }
        on(Progress::ManifestSent {
            provider: o.provider,
        });
        gateways.insert(o.provider, gw);
    }

    // Readiness.
    let wait_began = Instant::now();
    let leases: Vec<(LeaseId, &GatewayClient)> = chosen
        .iter()
        .map(|o| (o.bid, &gateways[&o.provider]))
        .collect();
    let statuses = match wait_running(&leases, opts.wait, on).await {
        Ok(statuses) => statuses,
        Err(statuses) => {
            let mut services = Vec::new();
            for ((lease, gw), s) in leases.iter().zip(&statuses) {
                for svc in s.services.iter().filter(|v| v.available < v.replicas) {
                    services.push(NotReadyService {
                        name: svc.name.clone(),
                        available: svc.available,
                        replicas: svc.replicas,
                        logs: last_logs(gw, lease, &svc.name).await,
                    });
                }
            }
            if opts.close_on_failure {
                close_deployment(tenant, id).await?;
            }
            return Err(TenantError::NotReady {
                dseq: id.dseq,
                waited_secs: wait_began.elapsed().as_secs(),
                services,
                closed: opts.close_on_failure,
            });
        }
    };
    let mut reports = Vec::new();
    for status in statuses {
        let report = report_for(tenant, status, None).await?;
        on(Progress::Running(Box::new(report.clone())));
        reports.push(report);
    }
    Ok(reports)
}

/// Adds the chain's record to a provider's status (with a low-funds warning under
/// `warn_below`: a threshold and the block time in ms).
pub(crate) async fn report_for(
    tenant: &Tenant,
    status: LeaseStatusView,
    warn_below: Option<(Duration, f64)>,
) -> Result<LeaseReport, TenantError> {
    let lease = tenant
        .node()
        .leases(&LeasesQuery {
            owner: Some(status.owner),
            provider: Some(status.provider),
            state: None,
        })
        .await?
        .value
        .into_iter()
        .find(|l| l.id.dseq == status.dseq && l.id.gseq == status.gseq && l.id.oseq == status.oseq)
        .ok_or_else(|| TenantError::NotFound(format!("no lease {} on chain", status.dseq)))?;
    let chain = chain_lease(tenant.node(), &lease, warn_below).await?;
    Ok(LeaseReport { status, chain })
}

/// Polls each lease's status at its provider until every one runs (`Ok`), or `wait` passed
/// (`Err` with the last statuses read), telling `on` each change in available replicas.
pub(crate) async fn wait_running(
    leases: &[(LeaseId, &GatewayClient)],
    wait: Duration,
    on: &mut (dyn FnMut(Progress) + Send),
) -> Result<Vec<LeaseStatusView>, Vec<LeaseStatusView>> {
    let began = Instant::now();
    let mut last: Vec<ServiceProgress> = Vec::new();
    loop {
        let mut statuses = Vec::new();
        for (lease, gw) in leases {
            match gw.lease_status(lease.dseq, lease.gseq, lease.oseq).await {
                Ok(s) => statuses.push(s),
                Err(e) => tracing::debug!("lease status: {e}"),
            }
        }
        let now: Vec<ServiceProgress> = statuses
            .iter()
            .flat_map(|s| &s.services)
            .map(|s| ServiceProgress {
                name: s.name.clone(),
                available: s.available,
                replicas: s.replicas,
            })
            .collect();
        if now != last && !now.is_empty() {
            on(Progress::Waiting {
                services: now.clone(),
            });
            last = now;
        }
        if statuses.len() == leases.len()
            && statuses.iter().all(|s| s.state == WorkloadState::Running)
        {
            return Ok(statuses);
        }
        if began.elapsed() >= wait {
            return Err(statuses);
        }
        tokio::time::sleep(STATUS_POLL).await;
    }
}

/// The providers as a deployment's bid phase sees them.
pub(crate) struct Market {
    /// Every registered provider.
    pub(crate) providers: HashMap<Address, kumo_client::types::Provider>,
    /// Those that proved they are alive within the chain's `liveness_window`: each will bid on
    /// an order or decline it.
    pub(crate) live: Vec<Address>,
    /// The chain's block time, for prices per hour.
    pub(crate) block_ms: f64,
}

impl Market {
    pub(crate) async fn read(tenant: &Tenant) -> Result<Market, TenantError> {
        let node = tenant.node();
        let at = node.providers().await?;
        let window = tenant.params().liveness_window;
        let live = at
            .value
            .iter()
            .filter(|p| p.last_seen.saturating_add(window) >= at.height)
            .map(|p| p.owner)
            .collect();
        Ok(Market {
            providers: at.value.into_iter().map(|p| (p.owner, p)).collect(),
            live,
            block_ms: measured_block_ms(node).await.unwrap_or(DEFAULT_BLOCK_MS),
        })
    }

    fn offer(&self, bid: BidId, price: DecCoin, gpus: &[kumo_types::gpu::GpuOffer]) -> BidOffer {
        let p = self.providers.get(&bid.provider);
        BidOffer {
            bid,
            provider: bid.provider,
            price_per_hour: per_hour(&price.amount, self.block_ms),
            price,
            attributes: p.map(|p| p.fields.attributes.clone()).unwrap_or_default(),
            host_uri: p.map(|p| p.fields.host_uri.clone()).unwrap_or_default(),
            gpu: (!gpus.is_empty()).then(|| kumo_types::gpu::summary(gpus)),
        }
    }
}

/// Collects the bids on `orders` (one per group of `groups`) from `events`, a stream opened
/// before the orders were, until every group is complete (see the module docs) or
/// `opts.bid_wait` passed; then asks the node once for bids the stream may have missed.
pub(crate) async fn gather_bids(
    node: &kumo_client::NodeClient,
    events: &mut kumo_client::EventStream,
    market: &Market,
    orders: &[OrderId],
    groups: &[GroupSpec],
    opts: &DeployOptions,
    on: &mut (dyn FnMut(Progress) + Send),
) -> Result<Vec<Vec<BidOffer>>, TenantError> {
    let live = &market.live;
    // Providers whose attributes fit, for knowing when every bid is in without declines.
    let expected: Vec<usize> = groups
        .iter()
        .map(|g| {
            market
                .providers
                .values()
                .filter(|p| {
                    attributes_subset_of(&g.requirements.attributes, &p.fields.attributes).is_ok()
                })
                .count()
        })
        .collect();
    let wants_gpus: Vec<bool> = groups
        .iter()
        .map(|g| g.resources.iter().any(|u| u.resources.gpu.units > 0))
        .collect();
    let mut offers: Vec<Vec<BidOffer>> = vec![Vec::new(); groups.len()];
    let mut declined: Vec<Vec<Address>> = vec![Vec::new(); groups.len()];
    let mut first_at: Vec<Option<Instant>> = vec![None; groups.len()];
    let deadline = Instant::now() + opts.bid_wait;
    // Every live provider has answered the group's order, with a bid or a decline.
    let all_answered = |offers: &[BidOffer], declined: &[Address]| {
        !live.is_empty()
            && live
                .iter()
                .all(|p| declined.contains(p) || offers.iter().any(|o| o.provider == *p))
    };
    let complete = |offers: &[BidOffer],
                    declined: &[Address],
                    first: Option<Instant>,
                    expected: usize,
                    now: Instant| match &opts.select {
        Selection::Provider(want) => {
            offers.iter().any(|o| o.provider == *want) || declined.contains(want)
        }
        _ => {
            all_answered(offers, declined)
                || (!offers.is_empty()
                    && (offers.len() >= expected
                        || first.is_some_and(|t| now >= t + opts.bid_settle)))
        }
    };
    loop {
        let now = Instant::now();
        let all = (0..groups.len())
            .all(|i| complete(&offers[i], &declined[i], first_at[i], expected[i], now));
        if all || now >= deadline {
            break;
        }
        // Wake at the deadline or when a settle window ends.
        let mut wake = deadline;
        for t in first_at.iter().flatten() {
            let end = *t + opts.bid_settle;
            if end > now && end < wake {
                wake = end;
            }
        }
        let next = tokio::time::timeout(wake - now, events.next()).await;
        let Ok(Some(item)) = next else { continue };
        let ev = match item {
            Ok(ev) => ev,
            Err(e) => {
                tracing::debug!("event stream: {e}");
                continue;
            }
        };
        if let Event::OrderDeclined {
            order,
            provider,
            reason,
        } = ev.event
        {
            if let Some(i) = orders.iter().position(|o| *o == order)
                && !declined[i].contains(&provider)
            {
                declined[i].push(provider);
                on(Progress::Declined { provider, reason });
            }
            continue;
        }
        if let Event::BidCreated { id: bid, price, .. } = ev.event {
            let Some(i) = orders.iter().position(|o| *o == bid_order(&bid)) else {
                continue;
            };
            if offers[i].iter().any(|o| o.bid == bid) {
                continue;
            }
            // The event has no GPU offer: a GPU group's bid is read once for its table row.
            let gpus = if wants_gpus[i] {
                node.bids(&BidsQuery {
                    order: Some(OrderIdParam(orders[i])),
                    provider: Some(bid.provider),
                    state: None,
                })
                .await
                .ok()
                .and_then(|b| b.value.into_iter().find(|b| b.id == bid))
                .map(|b| b.gpus)
                .unwrap_or_default()
            } else {
                Vec::new()
            };
            let offer = market.offer(bid, price, &gpus);
            on(Progress::BidArrived(offer.clone()));
            offers[i].push(offer);
            first_at[i].get_or_insert_with(Instant::now);
        }
    }
    // Bids the stream may have missed (a dropped connection): ask the node once.
    for (i, order) in orders.iter().enumerate() {
        let open = node
            .bids(&BidsQuery {
                order: Some(OrderIdParam(*order)),
                provider: None,
                state: Some(BidState::Open),
            })
            .await?
            .value;
        for b in open {
            if !offers[i].iter().any(|o| o.bid == b.id) {
                let offer = market.offer(b.id, b.price, &b.gpus);
                on(Progress::BidArrived(offer.clone()));
                offers[i].push(offer);
            }
        }
    }

    Ok(offers)
}

/// The deposit to make, or why the given one cannot pay (nothing is sent before this).
pub fn check_deposit(
    params: &kumo_chain::Params,
    groups: &[GroupSpec],
    opts: &DeployOptions,
) -> Result<Coin, TenantError> {
    let denom = kumo_chain::deployment::check_groups(params, groups)
        .map_err(|e| TenantError::Refused(e.to_string()))?;
    let mut max = Dec::ZERO;
    for g in groups {
        let p = g.price().ok_or_else(|| {
            TenantError::Refused(format!("group {:?} mixes price denominations", g.name))
        })?;
        max = max
            .checked_add(p.amount)
            .ok_or_else(|| TenantError::Refused("the total price overflows".into()))?;
    }
    let min_param = params.min_deposit(&denom).max(1);
    let cover = max
        .checked_mul_int(opts.min_lease_blocks)
        .map_or(u128::MAX, |d| d.ceil());
    let needed = Coin::new(denom.clone(), min_param.max(cover));
    let Some(deposit) = &opts.deposit else {
        return Ok(needed);
    };
    if deposit.denom != denom {
        return Err(TenantError::DepositTooSmall {
            deposit: deposit.clone(),
            needed,
            why: format!("the SDL prices in {denom}, so the escrow must be in {denom}"),
        });
    }
    if deposit.amount < min_param {
        return Err(TenantError::DepositTooSmall {
            deposit: deposit.clone(),
            needed,
            why: format!(
                "the chain's minimum deployment deposit (parameter deployment_min_deposit) is {min_param}{denom}"
            ),
        });
    }
    if deposit.amount < cover {
        return Err(TenantError::DepositTooSmall {
            deposit: deposit.clone(),
            needed,
            why: format!(
                "at the SDL's maximum price of {max}{denom} per block it pays for fewer than {} blocks",
                opts.min_lease_blocks
            ),
        });
    }
    Ok(deposit.clone())
}

/// The first `dseq` at or above `from` this owner has not used.
async fn free_dseq(tenant: &Tenant, from: u64) -> Result<DeploymentId, TenantError> {
    let mut id = DeploymentId {
        owner: tenant.address(),
        dseq: from,
    };
    loop {
        match tenant.node().deployment(&id).await {
            Err(e) if e.is_not_found() => return Ok(id),
            Err(e) => return Err(e.into()),
            Ok(_) => id.dseq += 1,
        }
    }
}

/// `CloseDeployment`; returns the escrow's refund.
pub(crate) async fn close_deployment(
    tenant: &Tenant,
    id: DeploymentId,
) -> Result<Option<Coin>, TenantError> {
    let done = tenant
        .signer()
        .submit(vec![Msg::CloseDeployment { id }])
        .await?;
    Ok(done.tx.result.events.iter().find_map(|e| match &e.event {
        Event::EscrowClosed { id: d, refund, .. } if *d == id => Some(refund.clone()),
        _ => None,
    }))
}

/// Whether a gateway error says nothing about the manifest, only that the gateway could not
/// answer (no connection, or a proxy in front of it saying 503/504): worth sending again, never
/// a reason to close the deployment. A 502 is the provider's own answer that it could not run
/// the manifest (an image it cannot pull, say): a refusal.
pub(crate) fn is_outage(e: &GatewayError) -> bool {
    matches!(e, GatewayError::Connect { .. })
        || matches!(e, GatewayError::Status { status, .. } if *status == 503 || *status == 504)
}

/// Sends the manifest: again while the provider has not yet seen the lease (404), and with
/// backoff for up to [`GATEWAY_OUTAGE`] while its gateway cannot be reached ([`is_outage`]),
/// telling `retrying` each time (the error, and how long it has been failing).
pub(crate) async fn send_manifest(
    gw: &GatewayClient,
    dseq: u64,
    manifest: &kumo_sdl::manifest::Manifest,
    retrying: &mut (dyn FnMut(&GatewayError, Duration) + Send),
) -> Result<(), GatewayError> {
    let start = Instant::now();
    let mut outage: Option<(Instant, Duration)> = None;
    loop {
        match gw.put_manifest(dseq, manifest).await {
            Err(GatewayError::NotFound(_)) if start.elapsed() < MANIFEST_DEADLINE => {
                tokio::time::sleep(MANIFEST_RETRY).await;
            }
            Err(e) if is_outage(&e) => {
                let (since, wait) = outage.unwrap_or((Instant::now(), OUTAGE_RETRY_FIRST));
                if since.elapsed() >= GATEWAY_OUTAGE {
                    return Err(e);
                }
                retrying(&e, since.elapsed());
                tokio::time::sleep(wait).await;
                outage = Some((since, (wait * 2).min(OUTAGE_RETRY_MAX)));
            }
            other => return other,
        }
    }
}

/// The last log lines of a service, `[replica] line`; empty when they cannot be read.
pub(crate) async fn last_logs(gw: &GatewayClient, lease: &LeaseId, service: &str) -> Vec<String> {
    let opts = kumo_workload::LogOptions {
        service: Some(service.to_string()),
        tail: Some(NOT_READY_LOG_LINES),
        follow: false,
    };
    let read = async {
        let mut out = Vec::new();
        if let Ok(mut s) = gw.logs(lease.dseq, lease.gseq, lease.oseq, &opts).await {
            while let Some(Ok(l)) = s.next().await {
                out.push(format!("[{}] {}", l.replica, l.line));
            }
        }
        out
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .unwrap_or_default()
}

fn bid_order(b: &BidId) -> OrderId {
    OrderId {
        owner: b.owner,
        dseq: b.dseq,
        gseq: b.gseq,
        oseq: b.oseq,
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups(price: u64) -> Vec<GroupSpec> {
        crate::test_sdl::WebSdl {
            price,
            count: 2,
            ..Default::default()
        }
        .groups()
    }

    fn with_deposit(d: &str) -> DeployOptions {
        DeployOptions {
            deposit: Some(d.parse().unwrap()),
            ..Default::default()
        }
    }

    #[test]
    fn default_deposit_is_the_larger_of_the_minimum_and_the_cover() {
        let params = kumo_chain::Params::default();
        // 2 replicas × 10 = 20 per block × 100 blocks = 2,000 < the 500,000 minimum.
        let d = check_deposit(&params, &groups(10), &DeployOptions::default()).unwrap();
        assert_eq!(d, Coin::new("ukumo", 500_000));
        // 2 × 10,000 × 100 = 2,000,000.
        let d = check_deposit(&params, &groups(10_000), &DeployOptions::default()).unwrap();
        assert_eq!(d, Coin::new("ukumo", 2_000_000));
    }

    #[test]
    fn too_small_deposits_are_refused_with_the_rule_they_break() {
        let params = kumo_chain::Params::default();
        let e = check_deposit(&params, &groups(10), &with_deposit("1ukumo")).unwrap_err();
        let m = e.to_string();
        assert!(
            m.contains("deployment_min_deposit") && m.contains("500000ukumo"),
            "{m}"
        );
        let e = check_deposit(&params, &groups(10_000), &with_deposit("600000ukumo")).unwrap_err();
        let m = e.to_string();
        assert!(
            m.contains("fewer than 100 blocks") && m.contains("2000000ukumo"),
            "{m}"
        );
        let e = check_deposit(&params, &groups(10), &with_deposit("900000uusd")).unwrap_err();
        assert!(e.to_string().contains("must be in ukumo"), "{e}");
        assert_eq!(
            check_deposit(&params, &groups(10), &with_deposit("700000ukumo")).unwrap(),
            Coin::new("ukumo", 700_000)
        );
    }
}
