//! Operating a tenant's leases: list, status, logs, shell, close, deposit, update.
//!
//! A deployment is named by its `dseq`; its leases (one per placement group) are found on
//! chain, and each lease's provider is reached through its gateway (pinned by the certificate
//! fingerprint in its chain record). Logs outlive a lease for a while: with no active lease,
//! [`logs`] reads what the provider kept at the close of the most recent one.

use kumo_client::types::{Lease, LeaseState, LeasesQuery};
use kumo_gateway::{
    client::{GatewayClient, ShellRequest, ShellSession},
    types::{LeaseState as WorkloadState, LeaseStatusView, SshAccess},
};
use kumo_types::{Address, Coin, Dec, DeploymentId, LeaseCloseReason, Msg};
use kumo_workload::{LogLine, LogOptions};
use serde::Serialize;

use crate::{
    Tenant, TenantError,
    deploy::{close_deployment, report_for, send_manifest},
    report::{
        CloseRecord, LeaseReport, LeaseSummary, chain_lease, escrow_of, measured_block_ms, per_hour,
    },
};

/// The tenant's leases, newest first; only active ones unless `all`.
pub async fn list(tenant: &Tenant, all: bool) -> Result<Vec<LeaseSummary>, TenantError> {
    let leases = tenant
        .node()
        .leases(&LeasesQuery {
            owner: Some(tenant.address()),
            provider: None,
            state: (!all).then_some(LeaseState::Active),
        })
        .await?
        .value;
    let block_ms = measured_block_ms(tenant.node()).await.unwrap_or(1000.0);
    let mut out = Vec::new();
    for l in leases {
        let id = DeploymentId {
            owner: l.id.owner,
            dseq: l.id.dseq,
        };
        let (escrow_balance, blocks_left, _) = escrow_of(tenant.node(), &id).await?;
        out.push(LeaseSummary {
            closed: CloseRecord::of(&l),
            dseq: l.id.dseq,
            gseq: l.id.gseq,
            oseq: l.id.oseq,
            provider: l.id.provider,
            state: l.state,
            price_per_hour: per_hour(&l.price.amount, block_ms),
            price: l.price,
            escrow_balance,
            blocks_left,
        });
    }
    out.sort_by(|a, b| (b.dseq, a.gseq, a.oseq).cmp(&(a.dseq, b.gseq, b.oseq)));
    Ok(out)
}

/// The leases of deployment `dseq` (the latest order of each group first), active ones first.
pub async fn leases_of(tenant: &Tenant, dseq: u64) -> Result<Vec<Lease>, TenantError> {
    let mut leases: Vec<Lease> = tenant
        .node()
        .leases(&LeasesQuery {
            owner: Some(tenant.address()),
            provider: None,
            state: None,
        })
        .await?
        .value
        .into_iter()
        .filter(|l| l.id.dseq == dseq)
        .collect();
    if leases.is_empty() {
        return Err(TenantError::NotFound(format!(
            "deployment {dseq} of {} has no lease (see `kumo lease list --all`)",
            tenant.address()
        )));
    }
    leases.sort_by_key(|l| {
        (
            l.state != LeaseState::Active,
            l.id.gseq,
            std::cmp::Reverse(l.id.oseq),
        )
    });
    Ok(leases)
}

/// The status of each lease of `dseq`: the provider's view and the chain's. A closed lease
/// the provider no longer knows is reported `closed` with no services. An active lease whose
/// funds (allowance included) last less than `warn_below` carries a low-funds warning.
pub async fn status(
    tenant: &Tenant,
    dseq: u64,
    warn_below: Option<std::time::Duration>,
) -> Result<Vec<LeaseReport>, TenantError> {
    let warn_below = match warn_below {
        Some(d) => Some((
            d,
            crate::report::measured_block_ms(tenant.node())
                .await
                .unwrap_or(1000.0),
        )),
        None => None,
    };
    let mut out = Vec::new();
    for l in leases_of(tenant, dseq).await? {
        if l.state != LeaseState::Active {
            if out.iter().any(|r: &LeaseReport| r.status.gseq == l.id.gseq) {
                continue;
            }
            let status = LeaseStatusView {
                dseq,
                gseq: l.id.gseq,
                oseq: l.id.oseq,
                owner: l.id.owner,
                provider: l.id.provider,
                state: WorkloadState::Closed,
                services: vec![],
                warnings: vec![],
            };
            let chain = chain_lease(tenant.node(), &l, None).await?;
            out.push(LeaseReport { status, chain });
            continue;
        }
        let gw = tenant.gateway(&l.id.provider).await?;
        let status = gw
            .lease_status(dseq, l.id.gseq, l.id.oseq)
            .await
            .map_err(|source| TenantError::Gateway {
                provider: l.id.provider,
                source,
            })?;
        out.push(report_for(tenant, status, warn_below).await?);
    }
    Ok(out)
}

/// The active lease of `dseq` that runs `service` (any service when `None`), its gateway, and
/// the service's name.
async fn lease_with_service(
    tenant: &Tenant,
    dseq: u64,
    service: Option<&str>,
) -> Result<(Lease, GatewayClient, String), TenantError> {
    let mut names = Vec::new();
    for l in leases_of(tenant, dseq).await? {
        if l.state != LeaseState::Active {
            continue;
        }
        let gw = tenant.gateway(&l.id.provider).await?;
        let status = gw
            .lease_status(dseq, l.id.gseq, l.id.oseq)
            .await
            .map_err(|source| TenantError::Gateway {
                provider: l.id.provider,
                source,
            })?;
        let found = match service {
            Some(s) => status.services.iter().find(|v| v.name == s),
            None => status.services.first(),
        };
        if let Some(v) = found {
            let name = v.name.clone();
            return Ok((l, gw, name));
        }
        names.extend(status.services.into_iter().map(|v| v.name));
    }
    Err(TenantError::NotFound(match service {
        Some(s) => format!(
            "deployment {dseq} has no running service {s:?} (its services: {})",
            names.join(", ")
        ),
        None => format!("deployment {dseq} has no active lease with a service"),
    }))
}

/// Log lines, from a running lease or from what a provider kept of a closed one.
pub struct Logs {
    /// The lines.
    pub lines: futures_util::stream::BoxStream<
        'static,
        Result<LogLine, kumo_gateway::client::ClientError>,
    >,
    /// When no lease of the deployment is active: the closed lease the lines come from and
    /// its close. The provider serves the last lines it kept at the close, for its
    /// `closed_logs_retention`.
    pub closed: Option<(kumo_types::LeaseId, CloseRecord)>,
}

/// Log lines of deployment `dseq`: one service, or every service of its first active lease.
/// With no active lease, those its provider kept of its most recently closed lease (the
/// next most recent when a provider kept none).
pub async fn logs(
    tenant: &Tenant,
    dseq: u64,
    service: Option<&str>,
    tail: Option<u64>,
    follow: bool,
) -> Result<Logs, TenantError> {
    let leases = leases_of(tenant, dseq).await?;
    if leases.iter().all(|l| l.state != LeaseState::Active) {
        return closed_logs(tenant, dseq, leases, service, tail).await;
    }
    let (lease, gw, name) = lease_with_service(tenant, dseq, service).await?;
    let opts = LogOptions {
        service: service.map(|_| name),
        tail,
        follow,
    };
    let lines = gw
        .logs(dseq, lease.id.gseq, lease.id.oseq, &opts)
        .await
        .map_err(|source| TenantError::Gateway {
            provider: lease.id.provider,
            source,
        })?;
    Ok(Logs {
        lines,
        closed: None,
    })
}

/// The logs a provider kept of the deployment's closed leases, newest close first: a
/// provider that kept none (404: retention over, or `closed_logs_lines = 0`) sends us to the
/// one before; any other error is returned at once.
async fn closed_logs(
    tenant: &Tenant,
    dseq: u64,
    mut leases: Vec<Lease>,
    service: Option<&str>,
    tail: Option<u64>,
) -> Result<Logs, TenantError> {
    leases.sort_by_key(|l| std::cmp::Reverse((l.closed_at, l.id.oseq)));
    let opts = LogOptions {
        service: service.map(str::to_string),
        tail,
        // Nothing runs: the kept lines are all there is.
        follow: false,
    };
    let mut first_miss = None;
    for l in leases {
        let Some(close) = CloseRecord::of(&l) else {
            continue;
        };
        let gw = tenant.gateway(&l.id.provider).await?;
        match gw.logs(dseq, l.id.gseq, l.id.oseq, &opts).await {
            Ok(lines) => {
                return Ok(Logs {
                    lines,
                    closed: Some((l.id, close)),
                });
            }
            Err(kumo_gateway::client::ClientError::NotFound(said)) => {
                first_miss.get_or_insert(format!(
                    "deployment {dseq} has no active lease, and provider {} keeps no logs of its lease {dseq}/{}/{} ({close}): past the provider's retention, or it keeps none ({said})",
                    l.id.provider, l.id.gseq, l.id.oseq
                ));
            }
            Err(source) => {
                return Err(TenantError::Gateway {
                    provider: l.id.provider,
                    source,
                });
            }
        }
    }
    Err(TenantError::NotFound(first_miss.unwrap_or_else(|| {
        format!("deployment {dseq} has no active or closed lease")
    })))
}

/// Starts `cmd` in replica 0 of `service` (the first service when `None`).
pub async fn shell(
    tenant: &Tenant,
    dseq: u64,
    service: Option<&str>,
    cmd: Vec<String>,
    tty: bool,
) -> Result<ShellSession, TenantError> {
    let (lease, gw, name) = lease_with_service(tenant, dseq, service).await?;
    let mut req = ShellRequest::new(&name, cmd);
    req.tty = tty;
    gw.shell(dseq, lease.id.gseq, lease.id.oseq, &req)
        .await
        .map_err(|source| TenantError::Gateway {
            provider: lease.id.provider,
            source,
        })
}

/// Restarts `service` of deployment `dseq` (every service of the lease when `None`): a VM
/// reboots on the same disk, a container restarts with its volumes. Returns the lease's
/// status right after.
pub async fn restart(
    tenant: &Tenant,
    dseq: u64,
    service: Option<&str>,
) -> Result<LeaseReport, TenantError> {
    let (lease, gw, name) = lease_with_service(tenant, dseq, service).await?;
    let status = gw
        .restart(
            dseq,
            lease.id.gseq,
            lease.id.oseq,
            service.map(|_| name.as_str()),
        )
        .await
        .map_err(|source| TenantError::Gateway {
            provider: lease.id.provider,
            source,
        })?;
    report_for(tenant, status, None).await
}

/// Where to log into a VM service of deployment `dseq` with SSH: `service`, or the first VM
/// service when `None`.
pub async fn ssh_access(
    tenant: &Tenant,
    dseq: u64,
    service: Option<&str>,
) -> Result<(String, SshAccess), TenantError> {
    let mut containers = Vec::new();
    for report in status(tenant, dseq, None).await? {
        for v in report.status.services {
            if service.is_some_and(|s| s != v.name) {
                continue;
            }
            match v.ssh {
                Some(ssh) => return Ok((v.name, ssh)),
                None => containers.push(v.name),
            }
        }
    }
    Err(TenantError::NotFound(
        match (service, containers.is_empty()) {
            (_, false) => format!(
                "deployment {dseq}: {} {} a container, not a VM: use `kumo lease shell {dseq}`",
                containers.join(", "),
                if containers.len() == 1 { "is" } else { "are" }
            ),
            (Some(s), true) => format!("deployment {dseq} has no running service {s:?}"),
            (None, true) => format!("deployment {dseq} has no running VM service"),
        },
    ))
}

/// What closing a deployment did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Closed {
    /// The deployment.
    pub dseq: u64,
    /// The leases that were active and are now closed.
    pub leases: Vec<kumo_types::LeaseId>,
    /// What the escrow refunded to the tenant.
    pub refund: Option<Coin>,
}

/// Closes deployment `dseq`: its leases (the providers tear the workloads down) and escrow
/// (the rest is refunded).
pub async fn close(tenant: &Tenant, dseq: u64) -> Result<Closed, TenantError> {
    let id = DeploymentId {
        owner: tenant.address(),
        dseq,
    };
    let dep = match tenant.node().deployment(&id).await {
        Ok(d) => d.value,
        Err(e) if e.is_not_found() => {
            return Err(TenantError::NotFound(format!(
                "no deployment {dseq} of {}",
                tenant.address()
            )));
        }
        Err(e) => return Err(e.into()),
    };
    if dep.deployment.state != kumo_client::types::DeploymentState::Active {
        return Err(TenantError::NotFound(format!(
            "deployment {dseq} is already closed"
        )));
    }
    let leases = tenant
        .node()
        .leases(&LeasesQuery {
            owner: Some(id.owner),
            provider: None,
            state: Some(LeaseState::Active),
        })
        .await?
        .value
        .into_iter()
        .filter(|l| l.id.dseq == dseq)
        .map(|l| l.id)
        .collect();
    let refund = close_deployment(tenant, id).await?;
    Ok(Closed {
        dseq,
        leases,
        refund,
    })
}

/// Closes one lease only (the deployment and its escrow stay).
pub async fn close_lease(tenant: &Tenant, lease: kumo_types::LeaseId) -> Result<(), TenantError> {
    tenant
        .signer()
        .submit(vec![Msg::CloseLease {
            id: lease,
            reason: LeaseCloseReason::Owner,
        }])
        .await?;
    Ok(())
}

/// What a deposit did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Deposited {
    /// The deployment.
    pub dseq: u64,
    /// What was added.
    pub amount: Coin,
    /// The escrow's balance afterwards.
    pub escrow_balance: Dec,
    /// Blocks it now pays for at the current rate.
    pub blocks_left: Option<u64>,
}

/// Adds `amount` to the escrow of deployment `dseq` of `owner` (the tenant's own when `None`:
/// anyone may fund any active deployment). What the chain would refuse is refused here first,
/// so a mistake costs no fee: a zero amount, a deployment that does not exist or is closed, a
/// denomination its escrow does not hold, more than the sender has (with the fee, when it is
/// paid in the same denomination).
pub async fn deposit(
    tenant: &Tenant,
    owner: Option<Address>,
    dseq: u64,
    amount: Coin,
) -> Result<Deposited, TenantError> {
    let id = DeploymentId {
        owner: owner.unwrap_or(tenant.address()),
        dseq,
    };
    check_deposit(tenant, &id, &amount).await?;
    tenant
        .signer()
        .submit(vec![Msg::DepositDeployment {
            id,
            amount: amount.clone(),
        }])
        .await?;
    let (escrow_balance, blocks_left, _) = escrow_of(tenant.node(), &id).await?;
    Ok(Deposited {
        dseq,
        amount,
        escrow_balance,
        blocks_left,
    })
}

/// The checks of [`deposit`], against the node's current state.
async fn check_deposit(
    tenant: &Tenant,
    id: &DeploymentId,
    amount: &Coin,
) -> Result<(), TenantError> {
    let invalid = |why: String| Err(TenantError::Invalid(why));
    if amount.amount == 0 {
        return invalid(format!("a deposit of {amount} adds nothing"));
    }
    let whose = if id.owner == tenant.address() {
        String::new()
    } else {
        format!(" of {}", id.owner)
    };
    let dep = match tenant.node().deployment(id).await {
        Ok(d) => d.value,
        Err(e) if e.is_not_found() => {
            return Err(TenantError::NotFound(format!(
                "no deployment {}{whose} (nothing was sent)",
                id.dseq
            )));
        }
        Err(e) => return Err(e.into()),
    };
    if dep.deployment.state != kumo_chain::state::DeploymentState::Active {
        return invalid(format!(
            "deployment {}{whose} is closed: a deposit cannot reopen it",
            id.dseq
        ));
    }
    if let Some(escrow) = &dep.escrow
        && escrow.account.denom != amount.denom
    {
        return invalid(format!(
            "deployment {}{whose} is paid in {}, not {}: deposit {}",
            id.dseq, escrow.account.denom, amount.denom, escrow.account.denom
        ));
    }
    let balances = tenant
        .node()
        .account(&tenant.address())
        .await?
        .value
        .balances;
    let params = tenant.signer().params();
    // A deposit transaction is about 200 bytes; the fee the signer pays is the chain's minimum.
    let fee = if params.fee_denom == amount.denom {
        params.min_fee(200, 1)
    } else {
        0
    };
    let held = balances.amount_of(&amount.denom);
    if held < amount.amount.saturating_add(fee) {
        return invalid(format!(
            "{} holds {held}{denom}; depositing {amount}{} needs more",
            tenant.address(),
            if fee > 0 {
                format!(" with its fee of about {fee}{}", params.fee_denom)
            } else {
                String::new()
            },
            denom = amount.denom,
        ));
    }
    Ok(())
}

/// What [`grant_top_up`] or [`revoke_top_up`] left.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopUpSet {
    /// The deployment.
    pub dseq: u64,
    /// Its owner.
    pub owner: Address,
    /// The allowance now (`None`: revoked).
    pub top_up: Option<kumo_chain::state::TopUpAllowance>,
    /// Blocks the escrow pays for now, without the allowance.
    pub blocks_left: Option<u64>,
}

/// Lets the chain move up to `limit` from the tenant's account into deployment `dseq` of
/// `owner` (the tenant's own when `None`), `below_blocks` blocks' worth at a time, whenever
/// fewer than `below_blocks` blocks of funds remain. Refused here first, at no fee: a zero
/// limit, a threshold out of range, a closed or missing deployment, another denomination,
/// someone else's allowance on someone else's deployment.
pub async fn grant_top_up(
    tenant: &Tenant,
    owner: Option<Address>,
    dseq: u64,
    limit: Coin,
    below_blocks: u64,
) -> Result<TopUpSet, TenantError> {
    let id = DeploymentId {
        owner: owner.unwrap_or(tenant.address()),
        dseq,
    };
    let invalid = |why: String| Err(TenantError::Invalid(format!("{why} (nothing was sent)")));
    if limit.amount == 0 {
        return invalid(format!("an allowance of {limit} allows nothing"));
    }
    if below_blocks == 0 || below_blocks > kumo_chain::escrow::MAX_TOP_UP_BLOCKS {
        return invalid(format!(
            "--below-blocks {below_blocks} is out of range: pick 1 to {}",
            kumo_chain::escrow::MAX_TOP_UP_BLOCKS
        ));
    }
    let escrow = open_escrow(tenant, &id).await?;
    if escrow.denom != limit.denom {
        return invalid(format!(
            "deployment {dseq} is paid in {}, not {}: allow {}",
            escrow.denom, limit.denom, escrow.denom
        ));
    }
    if let Some(old) = &escrow.top_up
        && old.granter != tenant.address()
        && id.owner != tenant.address()
    {
        return invalid(format!(
            "deployment {dseq} already has an allowance from {}; only it or the owner {} may replace it",
            old.granter, id.owner
        ));
    }
    tenant
        .signer()
        .submit(vec![Msg::GrantTopUp {
            id,
            limit,
            below_blocks,
        }])
        .await?;
    top_up_set(tenant, id).await
}

/// Ends the allowance of deployment `dseq` of `owner` (the tenant's own when `None`); only its
/// granter or the deployment's owner may, which is checked here first.
pub async fn revoke_top_up(
    tenant: &Tenant,
    owner: Option<Address>,
    dseq: u64,
) -> Result<TopUpSet, TenantError> {
    let id = DeploymentId {
        owner: owner.unwrap_or(tenant.address()),
        dseq,
    };
    let escrow = open_escrow(tenant, &id).await?;
    let Some(old) = &escrow.top_up else {
        return Err(TenantError::Invalid(format!(
            "deployment {dseq} has no allowance (nothing was sent)"
        )));
    };
    if old.granter != tenant.address() && id.owner != tenant.address() {
        return Err(TenantError::Invalid(format!(
            "only the allowance's granter {} or the owner {} may revoke it (nothing was sent)",
            old.granter, id.owner
        )));
    }
    tenant
        .signer()
        .submit(vec![Msg::RevokeTopUp { id }])
        .await?;
    top_up_set(tenant, id).await
}

/// The open escrow account of `id`, or why there is none.
async fn open_escrow(
    tenant: &Tenant,
    id: &DeploymentId,
) -> Result<kumo_chain::state::EscrowAccount, TenantError> {
    let escrow = match tenant.node().escrow(id).await {
        Ok(e) => e.value.account,
        Err(e) if e.is_not_found() => {
            return Err(TenantError::NotFound(format!(
                "no deployment {} of {} (nothing was sent)",
                id.dseq, id.owner
            )));
        }
        Err(e) => return Err(e.into()),
    };
    if escrow.state != kumo_chain::state::EscrowState::Open {
        return Err(TenantError::Invalid(format!(
            "deployment {} is closed (nothing was sent)",
            id.dseq
        )));
    }
    Ok(escrow)
}

async fn top_up_set(tenant: &Tenant, id: DeploymentId) -> Result<TopUpSet, TenantError> {
    let a = tenant.node().escrow(&id).await?.value.account;
    Ok(TopUpSet {
        dseq: id.dseq,
        owner: id.owner,
        blocks_left: crate::report::blocks_left(&a),
        top_up: a.top_up,
    })
}

/// What an update did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Updated {
    /// The deployment.
    pub dseq: u64,
    /// The new manifest hash, hex.
    pub manifest_hash: String,
    /// Whether the hash changed on chain (`false`: the same manifest was sent again).
    pub hash_changed: bool,
    /// The providers that accepted the new manifest.
    pub providers: Vec<Address>,
}

/// Updates deployment `dseq` to the SDL `sdl_text`: the new manifest hash on chain
/// (`UpdateDeployment`), then the manifest to every provider with an active lease. Refused when
/// the groups differ (resources, placement, prices): only the manifest may change.
pub async fn update(tenant: &Tenant, dseq: u64, sdl_text: &str) -> Result<Updated, TenantError> {
    let sdl = kumo_sdl::parse(sdl_text)?;
    let id = DeploymentId {
        owner: tenant.address(),
        dseq,
    };
    let view = match tenant.node().deployment(&id).await {
        Ok(d) => d.value,
        Err(e) if e.is_not_found() => {
            return Err(TenantError::NotFound(format!(
                "no deployment {dseq} of {}",
                tenant.address()
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let old: Vec<&kumo_types::GroupSpec> = view.groups.iter().map(|g| &g.spec).collect();
    if let Some(what) = groups_differ(&old, sdl.groups()) {
        return Err(TenantError::GroupsChanged { dseq, what });
    }
    let hash = sdl.manifest_hash();
    let hash_changed = hash != view.deployment.hash;
    if hash_changed {
        tenant
            .signer()
            .submit(vec![Msg::UpdateDeployment { id, hash }])
            .await?;
    }
    let mut providers: Vec<Address> = Vec::new();
    for l in leases_of(tenant, dseq).await? {
        if l.state != LeaseState::Active || providers.contains(&l.id.provider) {
            continue;
        }
        let gw = tenant.gateway(&l.id.provider).await?;
        let mut retrying = |e: &kumo_gateway::client::ClientError, failing: std::time::Duration| {
            tracing::warn!(provider = %l.id.provider, failing_s = failing.as_secs(), "gateway unreachable, sending again: {e}");
        };
        send_manifest(&gw, dseq, sdl.manifest(), &mut retrying)
            .await
            .map_err(|source| TenantError::Gateway {
                provider: l.id.provider,
                source,
            })?;
        providers.push(l.id.provider);
    }
    Ok(Updated {
        dseq,
        manifest_hash: sdl
            .manifest_hash()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
        hash_changed,
        providers,
    })
}

/// What differs between the groups on chain and the new SDL's, in words; `None` if nothing.
pub fn groups_differ(
    old: &[&kumo_types::GroupSpec],
    new: &[kumo_types::GroupSpec],
) -> Option<String> {
    if old.len() != new.len() {
        return Some(format!(
            "it has {} placement groups, the deployment {}",
            new.len(),
            old.len()
        ));
    }
    for (o, n) in old.iter().zip(new) {
        if o.name != n.name {
            return Some(format!("group {:?} is now named {:?}", o.name, n.name));
        }
        if o.requirements != n.requirements {
            return Some(format!(
                "group {:?}'s placement requirements (attributes, signedBy) changed",
                o.name
            ));
        }
        if o.resources.len() != n.resources.len() {
            return Some(format!("group {:?}'s resource units changed", o.name));
        }
        for (a, b) in o.resources.iter().zip(&n.resources) {
            if a.resources != b.resources || a.count != b.count {
                return Some(format!(
                    "group {:?}'s resources changed (cpu, memory, storage, gpu, endpoints or count)",
                    o.name
                ));
            }
            if a.price != b.price {
                return Some(format!(
                    "group {:?}'s price changed ({} → {})",
                    o.name, a.price, b.price
                ));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sdl(env: &str, memory: &str) -> Vec<kumo_types::GroupSpec> {
        crate::test_sdl::WebSdl {
            memory,
            env: Some(env),
            ..Default::default()
        }
        .groups()
    }

    #[test]
    fn an_env_change_keeps_the_groups_a_resource_change_does_not() {
        let a = sdl("A=1", "64Mi");
        let old: Vec<_> = a.iter().collect();
        assert_eq!(groups_differ(&old, &sdl("A=2", "64Mi")), None);
        let what = groups_differ(&old, &sdl("A=1", "128Mi")).unwrap();
        assert!(what.contains("resources changed"), "{what}");
    }
}
