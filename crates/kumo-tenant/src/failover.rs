//! Failover: `kumo lease watch` (and `kumo deploy --failover`), a long-running watcher that
//! moves a deployment's group to another provider when its lease closes for the provider's
//! reason.
//!
//! ```text
//! LeaseClosed (provider_unresponsive, unstable, decommission, performance, manifest_timeout,
//!              or the provider's CloseBid)
//!   └▶ StartGroup: the paused group gets a new order
//!   └▶ bids and declines, as `kumo deploy` gathers them, the failed provider left out
//!   └▶ CreateLease (cheapest) ─▶ the same manifest to the new provider ─▶ its services run
//! LeaseClosed (owner, insufficient_funds) or DeploymentClosed ─▶ the watcher ends
//! ```
//!
//! Every step is a [`WatchEvent`]. A group that was already paused for a provider's reason when
//! the watcher starts (it closed while nobody watched) fails over at once.
//!
//! **Persistent data does not follow.** A lease's volumes live on its provider's disks; the new
//! lease starts with empty volumes, from the manifest's images. Keep what matters elsewhere (an
//! object store, a database with its own replicas).

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use kumo_chain::{events::Event, state::GroupState};
use kumo_client::types::LeaseState;
use kumo_types::{Address, DeploymentId, GroupId, LeaseCloseReason, LeaseId, Msg, OrderId};
use serde::Serialize;

use crate::{
    Tenant, TenantError,
    deploy::{
        DeployOptions, Market, Progress, gather_bids, report_for, send_manifest, wait_running,
    },
    report::LeaseReport,
};

/// One step of [`watch`], for the caller to show.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum WatchEvent {
    /// Watching these active leases.
    Watching {
        /// The deployment.
        dseq: u64,
        /// Its active leases.
        leases: Vec<LeaseId>,
    },
    /// A lease closed for the provider's reason: failing over.
    LeaseLost {
        /// The lease.
        lease: LeaseId,
        /// Why, on chain.
        reason: LeaseCloseReason,
        /// The height it closed at.
        height: u64,
    },
    /// The group has a new order.
    Reopened {
        /// The order.
        order: OrderId,
    },
    /// A step of getting the new lease running (bids, the lease, the manifest, replicas).
    Step {
        /// The step.
        step: Progress,
    },
    /// The group serves again from a new lease.
    ServingAgain {
        /// The new lease.
        lease: LeaseId,
        /// Seconds from noticing the loss to the services running.
        seconds: f64,
        /// Its report.
        report: Box<LeaseReport>,
    },
    /// Failing over did not work; the watcher keeps watching the other groups.
    FailoverFailed {
        /// The group.
        group: GroupId,
        /// Why.
        error: String,
    },
    /// The deployment closed (by its owner, or its escrow ran dry): nothing left to watch.
    Ended {
        /// The deployment.
        dseq: u64,
        /// Why, in words.
        reason: String,
    },
}

/// Whether a lease closed this way should move to another provider: every close but the
/// tenant's own and the escrow running dry.
pub fn fails_over(reason: LeaseCloseReason) -> bool {
    !matches!(
        reason,
        LeaseCloseReason::Owner | LeaseCloseReason::InsufficientFunds
    )
}

/// Watches deployment `dseq` of the tenant until it closes, failing each lost group over to
/// another provider with the manifest of `sdl_text` (which must be the deployment's: its hash
/// is checked against the chain's). `opts` sets the bid and readiness waits.
pub async fn watch(
    tenant: &Tenant,
    dseq: u64,
    sdl_text: &str,
    opts: &DeployOptions,
    on: &mut (dyn FnMut(WatchEvent) + Send),
) -> Result<(), TenantError> {
    let node = tenant.node();
    let id = DeploymentId {
        owner: tenant.address(),
        dseq,
    };
    let sdl = kumo_sdl::parse(sdl_text)?;
    let at = node.deployment(&id).await?;
    let dep = at.value;
    if dep.deployment.hash != sdl.manifest_hash() {
        return Err(TenantError::Invalid(format!(
            "this SDL is not deployment {dseq}'s: its manifest hash differs from the one on chain (pass the file you deployed, or `kumo update {dseq} FILE` first)"
        )));
    }
    if dep.deployment.state != kumo_chain::state::DeploymentState::Active {
        on(WatchEvent::Ended {
            dseq,
            reason: "the deployment is closed".into(),
        });
        return Ok(());
    }
    let mut events = node.event_stream(at.height + 1);
    let leases = match crate::lease::leases_of(tenant, dseq).await {
        Ok(leases) => leases,
        Err(TenantError::NotFound(_)) => Vec::new(),
        Err(e) => return Err(e),
    };
    on(WatchEvent::Watching {
        dseq,
        leases: leases
            .iter()
            .filter(|l| l.state == LeaseState::Active)
            .map(|l| l.id)
            .collect(),
    });
    // Groups lost while nobody watched.
    for g in dep.groups.iter().filter(|g| g.state == GroupState::Paused) {
        let last = leases
            .iter()
            .filter(|l| l.id.gseq == g.id.gseq)
            .max_by_key(|l| l.id.oseq);
        if let Some(l) = last
            && let Some(reason) = l.close_reason
            && fails_over(reason)
        {
            on(WatchEvent::LeaseLost {
                lease: l.id,
                reason,
                height: l.closed_at.unwrap_or(at.height),
            });
            fail_over(tenant, &sdl, opts, l.id, on).await;
        }
    }
    while let Some(item) = events.next().await {
        let ev = match item {
            Ok(ev) => ev,
            Err(e) => {
                tracing::debug!("event stream: {e}");
                continue;
            }
        };
        match ev.event {
            Event::LeaseClosed { id: lease, reason } if lease.deployment() == id => {
                if !fails_over(reason) {
                    continue;
                }
                on(WatchEvent::LeaseLost {
                    lease,
                    reason,
                    height: ev.height,
                });
                fail_over(tenant, &sdl, opts, lease, on).await;
            }
            Event::DeploymentClosed { id: d } if d == id => {
                on(WatchEvent::Ended {
                    dseq,
                    reason: "the deployment closed".into(),
                });
                return Ok(());
            }
            _ => {}
        }
    }
    Err(TenantError::Invalid(
        "the node's event stream ended; run `kumo lease watch` again".into(),
    ))
}

/// Moves the group of `lost` to another provider; a failure is reported, not returned, so the
/// watcher goes on.
async fn fail_over(
    tenant: &Tenant,
    sdl: &kumo_sdl::Sdl,
    opts: &DeployOptions,
    lost: LeaseId,
    on: &mut (dyn FnMut(WatchEvent) + Send),
) {
    let began = Instant::now();
    if let Err(e) = try_fail_over(tenant, sdl, opts, lost, began, on).await {
        on(WatchEvent::FailoverFailed {
            group: lost.group(),
            error: e.to_string(),
        });
    }
}

async fn try_fail_over(
    tenant: &Tenant,
    sdl: &kumo_sdl::Sdl,
    opts: &DeployOptions,
    lost: LeaseId,
    began: Instant,
    on: &mut (dyn FnMut(WatchEvent) + Send),
) -> Result<(), TenantError> {
    let node = tenant.node();
    let group_id = lost.group();
    let spec = sdl
        .groups()
        .get(group_id.gseq as usize - 1)
        .cloned()
        .ok_or_else(|| TenantError::Invalid(format!("the SDL has no group {}", group_id.gseq)))?;
    let mut market = Market::read(tenant).await?;
    market.live.retain(|p| *p != lost.provider);
    let height = node.status().await?.height;
    let mut events = node.event_stream(height);
    tenant
        .signer()
        .submit(vec![Msg::StartGroup { id: group_id }])
        .await?;
    let dep = node.deployment(&lost.deployment()).await?.value;
    let group = dep
        .groups
        .iter()
        .find(|g| g.id == group_id)
        .ok_or_else(|| TenantError::NotFound(format!("group {group_id} is gone")))?;
    let order = group_id.order(group.oseq);
    on(WatchEvent::Reopened { order });
    let mut step = |p: Progress| on(WatchEvent::Step { step: p });
    let offers = gather_bids(
        node,
        &mut events,
        &market,
        &[order],
        std::slice::from_ref(&spec),
        opts,
        &mut step,
    )
    .await?;
    drop(events);
    let Some(best) = offers[0]
        .iter()
        .filter(|o| o.provider != lost.provider)
        .min_by(|a, b| a.price.amount.cmp(&b.price.amount))
        .cloned()
    else {
        let declines = node.declines(&order).await?.value;
        let why: Vec<String> = declines
            .iter()
            .map(|d| format!("{} ({}): {}", d.provider, d.reason, d.detail))
            .collect();
        return Err(TenantError::Invalid(format!(
            "no other provider bid on order {order} within {} s{}; the order stays open for late bids until it expires",
            opts.bid_wait.as_secs(),
            if why.is_empty() {
                String::new()
            } else {
                format!(": {}", why.join("; "))
            }
        )));
    };
    step(Progress::BidSelected(best.clone()));
    tenant
        .signer()
        .submit(vec![Msg::CreateLease { bid: best.bid }])
        .await?;
    step(Progress::LeaseCreated { lease: best.bid });
    let provider: Address = best.provider;
    let p = market
        .providers
        .get(&provider)
        .ok_or_else(|| TenantError::NotFound(format!("provider {provider} is not registered")))?;
    let gw = tenant.gateway_of(p)?;
    let mut retrying = |e: &kumo_gateway::client::ClientError, failing: Duration| {
        step(Progress::GatewayUnreachable {
            provider,
            error: e.to_string(),
            failing_secs: failing.as_secs(),
        })
    };
    send_manifest(&gw, lost.dseq, sdl.manifest(), &mut retrying)
        .await
        .map_err(|source| TenantError::Gateway { provider, source })?;
    step(Progress::ManifestSent { provider });
    let statuses = wait_running(&[(best.bid, &gw)], opts.wait, &mut step)
        .await
        .map_err(|_| {
            TenantError::Invalid(format!(
                "the new lease {} did not run within {} s (it stays open; see `kumo lease status {}`)",
                best.bid,
                opts.wait.as_secs(),
                lost.dseq
            ))
        })?;
    let report = report_for(tenant, statuses[0].clone(), None).await?;
    on(WatchEvent::ServingAgain {
        lease: best.bid,
        seconds: began.elapsed().as_secs_f64(),
        report: Box::new(report),
    });
    Ok(())
}
