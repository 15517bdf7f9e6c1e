//! deployment: a tenant's deployments and their placement groups.
//!
//! `CreateDeployment` stores the groups (from the SDL), opens one order per group and funds the
//! escrow account. Every group's price must be in one payment denomination (a chain parameter;
//! genesis: `ukumo`, `uusd`), which is the escrow's; the deposit must be in it too and at least
//! `deployment_min_deposit`. Group states: open (order or lease), paused (restart with
//! `StartGroup`), closed, insufficient_funds.

use kumo_types::{Address, Coin, Dec, DeploymentId, GroupId, GroupSpec, LeaseCloseReason};

use crate::{
    Ctx, MsgError, Params, escrow,
    events::Event,
    market,
    provider::check_attributes,
    state::{self, Deployment, DeploymentState, Group, GroupState, keys},
    store::Store,
};

/// Why a deployment message failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeploymentError {
    /// The id is taken.
    #[error("deployment {0} already exists: pick another dseq (e.g. the current height)")]
    Exists(DeploymentId),
    /// Not found.
    #[error("deployment {0} does not exist")]
    NotFound(DeploymentId),
    /// Group not found.
    #[error("group {0} does not exist")]
    GroupNotFound(GroupId),
    /// Sender is not the owner.
    #[error("only the owner {owner} may do this; the tx was signed by {sender}")]
    NotOwner {
        /// The owner.
        owner: Address,
        /// The signer.
        sender: Address,
    },
    /// Already closed.
    #[error("deployment {0} is closed")]
    Closed(DeploymentId),
    /// dseq 0.
    #[error("dseq must be positive: use the current block height")]
    ZeroDseq,
    /// No groups.
    #[error("a deployment needs at least one group")]
    NoGroups,
    /// Limit exceeded.
    #[error("{what}: {n} is over the limit of {max}")]
    Limit {
        /// What.
        what: String,
        /// Count.
        n: u64,
        /// Limit.
        max: u64,
    },
    /// A unit or group asks for too little or too much (the `resource_limits` parameter).
    #[error("{0}")]
    Resources(#[from] kumo_types::LimitError),
    /// A group or resource is malformed.
    #[error("group {group:?}: {problem}")]
    BadGroup {
        /// Group name.
        group: String,
        /// What is wrong and how to fix it.
        problem: String,
    },
    /// A price in a denomination that cannot pay for leases.
    #[error(
        "group {group:?} is priced in {denom:?}, which is not a payment denomination: use one of {allowed}"
    )]
    PriceDenom {
        /// Group name.
        group: String,
        /// The denomination.
        denom: String,
        /// The allowed ones.
        allowed: String,
    },
    /// Groups priced in different denominations.
    #[error("groups are priced in {0} and {1}: one deployment pays in one denomination")]
    MixedDenoms(String, String),
    /// Deposit in the wrong denomination.
    #[error("deposit is in {got} but the deployment is priced in {want}: deposit {want}")]
    DepositDenom {
        /// Wanted.
        want: String,
        /// Given.
        got: String,
    },
    /// Deposit too small.
    #[error("deposit {got} is below the minimum {min}")]
    DepositTooSmall {
        /// Minimum.
        min: Coin,
        /// Given.
        got: Coin,
    },
    /// Group in the wrong state.
    #[error("group {id} is {state:?}; this needs it {wanted}")]
    GroupState {
        /// Group.
        id: GroupId,
        /// Its state.
        state: GroupState,
        /// What it must be.
        wanted: &'static str,
    },
}

fn limit(what: impl Into<String>, n: usize, max: u32) -> Result<(), DeploymentError> {
    if n > max as usize {
        return Err(DeploymentError::Limit {
            what: what.into(),
            n: n as u64,
            max: u64::from(max),
        });
    }
    Ok(())
}

/// Checks groups against the parameters; returns their common price denomination.
pub fn check_groups(params: &Params, groups: &[GroupSpec]) -> Result<String, DeploymentError> {
    if groups.is_empty() {
        return Err(DeploymentError::NoGroups);
    }
    limit("groups", groups.len(), params.max_groups)?;
    let max_str = params.max_string_bytes as usize;
    let mut denom: Option<String> = None;
    for (i, g) in groups.iter().enumerate() {
        let bad = |problem: &str| DeploymentError::BadGroup {
            group: g.name.clone(),
            problem: problem.to_string(),
        };
        if g.name.is_empty() || g.name.len() > max_str {
            return Err(bad("name is empty or too long"));
        }
        if groups[..i].iter().any(|h| h.name == g.name) {
            return Err(bad("name is used by two groups"));
        }
        if g.resources.is_empty() {
            return Err(bad("has no resources"));
        }
        limit(
            format!("group {:?} resource units", g.name),
            g.resources.len(),
            params.max_units_per_group,
        )?;
        check_attributes(params, "placement attributes", &g.requirements.attributes)
            .map_err(|e| bad(&e.to_string()))?;
        let sb = &g.requirements.signed_by;
        limit(
            format!("group {:?} signedBy auditors", g.name),
            sb.all_of.len() + sb.any_of.len(),
            params.max_attributes,
        )?;
        let signers = sb.all_of.iter().chain(&sb.any_of);
        for a in signers {
            if a.parse::<Address>().is_err() {
                return Err(bad(&format!(
                    "signedBy names {a:?}, which is not a kumo1… address"
                )));
            }
        }
        for u in &g.resources {
            if u.count == 0 {
                return Err(bad("a resource unit has count 0"));
            }
            limit(
                format!("group {:?} unit {} count", g.name, u.resources.id),
                u.count as usize,
                params.max_unit_count,
            )?;
            let r = &u.resources;
            limit(
                format!("group {:?} storage volumes", g.name),
                r.storage.len(),
                params.max_attributes,
            )?;
            limit(
                format!("group {:?} endpoints", g.name),
                r.endpoints.len(),
                params.max_attributes,
            )?;
            for attrs in [&r.cpu.attributes, &r.memory.attributes, &r.gpu.attributes] {
                check_attributes(params, "resource attributes", attrs)
                    .map_err(|e| bad(&e.to_string()))?;
            }
            for s in &r.storage {
                check_attributes(params, "storage attributes", &s.attributes)
                    .map_err(|e| bad(&e.to_string()))?;
            }
            if !params.payment_denoms.contains(&u.price.denom) {
                return Err(DeploymentError::PriceDenom {
                    group: g.name.clone(),
                    denom: u.price.denom.clone(),
                    allowed: params.payment_denoms.join(", "),
                });
            }
        }
        params.resource_limits.check_group(g)?;
        let price = g.price().ok_or_else(|| match denom_pair(g) {
            Some((a, b)) => DeploymentError::MixedDenoms(a, b),
            None => bad("total price overflows"),
        })?;
        if price.amount == Dec::ZERO {
            return Err(bad("total price is zero: set a price per block"));
        }
        match &denom {
            None => denom = Some(price.denom),
            Some(d) if *d != price.denom => {
                return Err(DeploymentError::MixedDenoms(d.clone(), price.denom));
            }
            Some(_) => {}
        }
    }
    Ok(denom.expect("at least one group"))
}

fn denom_pair(g: &GroupSpec) -> Option<(String, String)> {
    let first = &g.resources.first()?.price.denom;
    let other = g.resources.iter().find(|u| u.price.denom != *first)?;
    Some((first.clone(), other.price.denom.clone()))
}

/// A deployment by id.
pub fn get(s: &dyn Store, id: &DeploymentId) -> Option<Deployment> {
    state::get(s, &keys::deployment(id))
}

/// The groups of a deployment, in gseq order (read by key, not by a scan).
pub fn groups(s: &dyn Store, id: &DeploymentId) -> Vec<Group> {
    let n = get(s, id).map_or(0, |d| d.groups);
    (1..=n)
        .map(|gseq| {
            state::get(s, &keys::group(&id.group(gseq))).expect("a deployment's groups exist")
        })
        .collect()
}

fn owned_active(
    ctx: &Ctx<'_>,
    sender: &Address,
    id: &DeploymentId,
) -> Result<Deployment, MsgError> {
    let d = get(ctx.store, id).ok_or(DeploymentError::NotFound(*id))?;
    if d.id.owner != *sender {
        return Err(DeploymentError::NotOwner {
            owner: d.id.owner,
            sender: *sender,
        }
        .into());
    }
    if d.state != DeploymentState::Active {
        return Err(DeploymentError::Closed(*id).into());
    }
    Ok(d)
}

/// `CreateDeployment`.
pub(crate) fn create(
    ctx: &mut Ctx<'_>,
    sender: &Address,
    id: &DeploymentId,
    specs: &[GroupSpec],
    hash: [u8; 32],
    deposit: &Coin,
) -> Result<(), MsgError> {
    if id.owner != *sender {
        return Err(DeploymentError::NotOwner {
            owner: id.owner,
            sender: *sender,
        }
        .into());
    }
    if id.dseq == 0 {
        return Err(DeploymentError::ZeroDseq.into());
    }
    if get(ctx.store, id).is_some() {
        return Err(DeploymentError::Exists(*id).into());
    }
    let denom = check_groups(ctx.params, specs)?;
    if deposit.denom != denom {
        return Err(DeploymentError::DepositDenom {
            want: denom,
            got: deposit.denom.clone(),
        }
        .into());
    }
    let min = ctx.params.min_deposit(&denom);
    if deposit.amount < min || deposit.amount == 0 {
        return Err(DeploymentError::DepositTooSmall {
            min: Coin::new(denom, min.max(1)),
            got: deposit.clone(),
        }
        .into());
    }
    let d = Deployment {
        id: *id,
        state: DeploymentState::Active,
        hash,
        denom,
        groups: specs.len() as u32,
        created_at: ctx.height,
    };
    state::put(ctx.store, &keys::deployment(id), &d);
    ctx.events.push(Event::DeploymentCreated { id: *id });
    escrow::open_account(ctx, id, deposit)?;
    for (i, spec) in specs.iter().enumerate() {
        let g = Group {
            id: id.group(i as u32 + 1),
            state: GroupState::Open,
            spec: spec.clone(),
            oseq: 1,
            created_at: ctx.height,
        };
        state::put(ctx.store, &keys::group(&g.id), &g);
        market::create_order(ctx, &g)?;
    }
    Ok(())
}

/// `UpdateDeployment`.
pub(crate) fn update(
    ctx: &mut Ctx<'_>,
    sender: &Address,
    id: &DeploymentId,
    hash: [u8; 32],
) -> Result<(), MsgError> {
    let mut d = owned_active(ctx, sender, id)?;
    d.hash = hash;
    state::put(ctx.store, &keys::deployment(id), &d);
    ctx.events.push(Event::DeploymentUpdated { id: *id });
    Ok(())
}

/// `DepositDeployment`: anyone may fund an active deployment.
pub(crate) fn deposit(
    ctx: &mut Ctx<'_>,
    sender: &Address,
    id: &DeploymentId,
    amount: &Coin,
) -> Result<(), MsgError> {
    let d = get(ctx.store, id).ok_or(DeploymentError::NotFound(*id))?;
    if d.state != DeploymentState::Active {
        return Err(DeploymentError::Closed(*id).into());
    }
    escrow::deposit(ctx, id, sender, amount)
}

/// Tells the store which records closing these deployments will read, in two batches (what the
/// ids name, then what their escrow records name), so that with a large state their cold reads
/// overlap instead of queueing one after another.
pub(crate) fn prefetch_close(s: &dyn Store, ids: &[DeploymentId]) {
    if ids.is_empty() {
        return;
    }
    let first: Vec<Vec<u8>> = ids
        .iter()
        .flat_map(|id| [keys::deployment(id), keys::escrow(id)])
        .collect();
    s.prefetch(&first);
    let mut second = Vec::new();
    for id in ids {
        let Some(acct) = escrow::account(s, id) else {
            continue;
        };
        second.push(keys::balance(&id.owner, &acct.denom));
        for p in escrow::payments(s, id) {
            second.extend([
                keys::provider(&p.id.provider),
                keys::group(&p.id.group()),
                keys::order(&p.id.order()),
                keys::bid(&p.id),
                keys::lease(&p.id),
            ]);
        }
    }
    s.prefetch(&second);
}

/// Closes a deployment: every group, lease and order, then the escrow account.
pub(crate) fn close_internal(
    ctx: &mut Ctx<'_>,
    id: &DeploymentId,
    overdrawn: bool,
) -> Result<(), MsgError> {
    let mut d = get(ctx.store, id).ok_or(DeploymentError::NotFound(*id))?;
    let (reason, group_state) = if overdrawn {
        (
            LeaseCloseReason::InsufficientFunds,
            GroupState::InsufficientFunds,
        )
    } else {
        (LeaseCloseReason::Owner, GroupState::Closed)
    };
    for mut g in groups(ctx.store, id) {
        if matches!(g.state, GroupState::Closed | GroupState::InsufficientFunds) {
            continue;
        }
        market::wind_down_group(ctx, &g, reason)?;
        g.state = group_state;
        state::put(ctx.store, &keys::group(&g.id), &g);
        ctx.events.push(Event::GroupClosed { id: g.id });
    }
    escrow::close_account(ctx, id, overdrawn)?;
    d.state = DeploymentState::Closed;
    state::put(ctx.store, &keys::deployment(id), &d);
    ctx.events.push(Event::DeploymentClosed { id: *id });
    Ok(())
}

/// `CloseDeployment`.
pub(crate) fn close(
    ctx: &mut Ctx<'_>,
    sender: &Address,
    id: &DeploymentId,
) -> Result<(), MsgError> {
    owned_active(ctx, sender, id)?;
    close_internal(ctx, id, false)
}

fn owned_group(ctx: &Ctx<'_>, sender: &Address, id: &GroupId) -> Result<Group, MsgError> {
    owned_active(ctx, sender, &id.deployment())?;
    Ok(state::get(ctx.store, &keys::group(id)).ok_or(DeploymentError::GroupNotFound(*id))?)
}

/// Sets a group's state after its lease or order ended, with the matching event.
pub(crate) fn set_group_state(
    ctx: &mut Ctx<'_>,
    id: &GroupId,
    next: GroupState,
) -> Result<(), MsgError> {
    let mut g: Group =
        state::get(ctx.store, &keys::group(id)).ok_or(DeploymentError::GroupNotFound(*id))?;
    g.state = next;
    state::put(ctx.store, &keys::group(id), &g);
    ctx.events.push(match next {
        GroupState::Paused => Event::GroupPaused { id: *id },
        GroupState::Open => Event::GroupStarted { id: *id },
        _ => Event::GroupClosed { id: *id },
    });
    Ok(())
}

/// `CloseGroup`.
pub(crate) fn close_group(
    ctx: &mut Ctx<'_>,
    sender: &Address,
    id: &GroupId,
) -> Result<(), MsgError> {
    let g = owned_group(ctx, sender, id)?;
    if !matches!(g.state, GroupState::Open | GroupState::Paused) {
        return Err(DeploymentError::GroupState {
            id: *id,
            state: g.state,
            wanted: "open or paused",
        }
        .into());
    }
    market::wind_down_group(ctx, &g, LeaseCloseReason::Owner)?;
    set_group_state(ctx, id, GroupState::Closed)
}

/// `PauseGroup`.
pub(crate) fn pause_group(
    ctx: &mut Ctx<'_>,
    sender: &Address,
    id: &GroupId,
) -> Result<(), MsgError> {
    let g = owned_group(ctx, sender, id)?;
    if g.state != GroupState::Open {
        return Err(DeploymentError::GroupState {
            id: *id,
            state: g.state,
            wanted: "open",
        }
        .into());
    }
    market::wind_down_group(ctx, &g, LeaseCloseReason::Owner)?;
    set_group_state(ctx, id, GroupState::Paused)
}

/// `StartGroup`: a paused group gets a new order.
pub(crate) fn start_group(
    ctx: &mut Ctx<'_>,
    sender: &Address,
    id: &GroupId,
) -> Result<(), MsgError> {
    let mut g = owned_group(ctx, sender, id)?;
    if g.state != GroupState::Paused {
        return Err(DeploymentError::GroupState {
            id: *id,
            state: g.state,
            wanted: "paused",
        }
        .into());
    }
    g.state = GroupState::Open;
    g.oseq = g
        .oseq
        .checked_add(1)
        .ok_or_else(|| DeploymentError::Limit {
            what: format!("orders of group {id}"),
            n: u64::from(u32::MAX) + 1,
            max: u64::from(u32::MAX),
        })?;
    state::put(ctx.store, &keys::group(id), &g);
    ctx.events.push(Event::GroupStarted { id: *id });
    market::create_order(ctx, &g)
}
