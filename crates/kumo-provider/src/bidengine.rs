//! The bid engine: for each `OrderCreated`, decide whether and at what price to bid.
//!
//! Steps: fetch the order's group from the chain; match attributes, signedBy (the auditors'
//! attestations of this provider) and storage/GPU capabilities (`kumo_types::matching`); refuse
//! VM groups while `[vm]` is disabled, what cannot be served at all ([`servable`]: leased IP
//! endpoints, units below the engine's minimum memory) and groups with more replicas than a
//! lease network holds; check the group fits the free inventory (a lease network of the pool
//! included), pick specific
//! free GPUs of the requested model ([`crate::gpus::select`]) and reserve both (under one lock,
//! so two orders cannot both take the last core or the last GPU); price it (GPUs by model);
//! send `CreateBid` with the GPUs offered. Any "no" releases the reservation (and its GPUs), is
//! logged with its reason and, when it is a decision rather than a failure, is sent to the chain
//! as `DeclineOrder` with a reason code and the same sentence, so the tenant learns it in a block
//! or two instead of waiting out the order. Each order runs in a task of its own, so a
//! slow price script never holds up other orders or lease events.
//!
//! Reservations are released on `BidLost`, `BidClosed` and `OrderClosed` (which covers expiry),
//! and turn into the lease's hold on `LeaseCreated`.

use std::sync::Arc;

use kumo_gateway::types::ResourceAmounts;
use kumo_types::{DecCoin, DeclineReason, EndpointKind, GroupSpec, Msg, OrderId, matching};
use kumo_workload::ENGINE_MIN_MEMORY;
use tracing::{info, warn};

use crate::{daemon::Provider, metrics::BidOutcome, pricing, state::Reservation};

/// Handles one `OrderCreated` event; never fails (a "no" is logged).
pub async fn on_order_created(p: Arc<Provider>, order: OrderId, max: DecCoin) {
    match bid(&p, &order, &max).await {
        Ok(Some(price)) => {
            p.metrics.bid(BidOutcome::Sent);
            info!(order = %order_label(&order), %price, "bid sent");
        }
        Ok(None) => {}
        Err(no) => {
            if let Err(e) = p.state.remove_reservation(&order) {
                warn!("dropping the reservation of {}: {e}", order_label(&order));
            }
            match no {
                NoBid::Declined(code, reason) => {
                    p.metrics.bid(BidOutcome::Declined);
                    warn!(order = %order_label(&order), "no bid ({code}): {reason}");
                    decline(&p, &order, code, reason).await;
                }
                NoBid::Failed(reason) => {
                    p.metrics.bid(BidOutcome::Failed);
                    warn!(order = %order_label(&order), "bid failed: {reason}");
                }
            }
        }
    }
}

/// Tells the chain this provider will not bid, and why. The sentence is cut to what the chain
/// keeps (`max_string_bytes`); a failure is only logged (the order may have closed meanwhile).
async fn decline(p: &Provider, order: &OrderId, reason: DeclineReason, detail: String) {
    let max = p.signer.params().max_string_bytes as usize;
    let mut detail = detail;
    if detail.len() > max {
        let mut cut = max.saturating_sub(3);
        while !detail.is_char_boundary(cut) {
            cut -= 1;
        }
        detail.truncate(cut);
        detail.push_str("...");
    }
    let msg = Msg::DeclineOrder {
        order: *order,
        reason,
        detail,
    };
    if let Err(e) = p.signer.submit(vec![msg]).await {
        warn!(order = %order_label(order), "DeclineOrder failed: {e}");
    }
}

/// Why an order got no bid: it does not fit (a decision, with its code), or something failed
/// on the way.
#[derive(Debug)]
enum NoBid {
    Declined(DeclineReason, String),
    Failed(String),
}

impl NoBid {
    fn unsupported(reason: impl Into<String>) -> NoBid {
        NoBid::Declined(DeclineReason::Unsupported, reason.into())
    }
}

/// `owner/dseq/gseq/oseq`.
pub fn order_label(o: &OrderId) -> String {
    crate::state::order_key(o)
}

async fn bid(p: &Provider, order: &OrderId, max: &DecCoin) -> Result<Option<DecCoin>, NoBid> {
    let failed = |e: &dyn std::fmt::Display| NoBid::Failed(e.to_string());
    if p.state.has_reservation(order).map_err(|e| failed(&e))? {
        // Seen before (events are replayed after a restart): the bid was handled then.
        return Ok(None);
    }
    let dep = p
        .client
        .deployment(&order.group().deployment())
        .await
        .map_err(|e| NoBid::Failed(format!("cannot read the deployment: {e}")))?
        .value;
    let group = dep
        .groups
        .iter()
        .find(|g| g.id.gseq == order.gseq)
        .ok_or_else(|| NoBid::Failed("the order's group is not in its deployment".into()))?
        .spec
        .clone();
    let me = p
        .client
        .provider(&p.address)
        .await
        .map_err(|e| {
            NoBid::Failed(format!(
                "cannot read this provider's record (is it registered?): {e}"
            ))
        })?
        .value;
    let attestations: Vec<matching::Attestation> = me
        .attestations
        .iter()
        .map(|a| matching::Attestation {
            auditor: a.auditor.to_string(),
            attributes: a.attributes.clone(),
        })
        .collect();
    let wants_vm = group
        .requirements
        .attributes
        .iter()
        .any(|a| a.key == kumo_sdl::VM_CAPABILITY && a.value == "true");
    if wants_vm && !p.config.vm.enabled {
        return Err(NoBid::unsupported(
            "the group has VM services (capabilities/vm) and this provider runs no VMs ([vm] enabled = false)",
        ));
    }
    servable(&group, wants_vm).map_err(NoBid::unsupported)?;
    matching::match_group(&group, &me.provider.fields.attributes, &attestations)
        .map_err(|e| NoBid::Declined(DeclineReason::Attributes, e.to_string()))?;
    let pool = p
        .config
        .network
        .pool()
        .map_err(|e| NoBid::Failed(e.to_string()))?;
    let replicas: u64 = group.resources.iter().map(|u| u64::from(u.count)).sum();
    // Containers take the lower half of a lease subnet, VMs the upper: a group that fits the
    // smaller half fits whatever its mix.
    if replicas > u64::from(pool.containers_per_network()) {
        return Err(NoBid::unsupported(format!(
            "the group has {replicas} replicas and a lease network here holds {} ([network] lease_subnet_prefix = {})",
            pool.containers_per_network(),
            pool.subnet_prefix()
        )));
    }
    let mut need = ResourceAmounts::of_group(&group);
    let gpus = {
        let _one_at_a_time = p.reserve_lock.lock().await;
        let view = p.inventory_view().map_err(|e| failed(&e))?;
        need.fits_in(&view.free)
            .map_err(|e| NoBid::Declined(DeclineReason::Capacity, format!("capacity: {e}")))?;
        let held = p.state.gpu_holders().map_err(|e| failed(&e))?;
        let gpus = crate::gpus::select(&p.inventory.devices, &held, &group)
            .map_err(|e| NoBid::Declined(DeclineReason::Capacity, format!("GPUs: {e}")))?;
        need.gpus = crate::gpus::count_by_kind(&gpus);
        let uuids: Vec<String> = gpus.iter().map(|d| d.uuid.clone()).collect();
        p.state
            .reserve(
                &Reservation {
                    order: *order,
                    held: need,
                    bid_sent: false,
                },
                &uuids,
            )
            .map_err(|e| failed(&e))?;
        gpus
    };
    let price = pricing::price(&p.config.pricing, order, &group, &gpus, max)
        .await
        .map_err(|e| NoBid::Declined(DeclineReason::Other, format!("pricing: {e}")))?;
    if price.amount > max.amount {
        return Err(NoBid::Declined(
            DeclineReason::Price,
            format!("price {price} is above the order's maximum {max}"),
        ));
    }
    p.signer
        .submit(vec![Msg::CreateBid {
            order: *order,
            price: price.clone(),
            deposit: p.config.bid_deposit.clone(),
            gpus: kumo_gpu::device::offers(&gpus),
        }])
        .await
        .map_err(|e| NoBid::Failed(format!("CreateBid failed: {e}")))?;
    Ok(Some(price))
}

/// The smallest memory a VM gets (the VM backend's floor): a VM unit paying for less is not bid
/// on, rather than given more than it paid for.
pub const VM_MIN_MEMORY: u64 = 64 << 20;

/// What this provider cannot serve whatever its free capacity: leased IP endpoints (`ip:` in the
/// SDL; no IP leases here yet) and units smaller than the engine runs. Checked before anything
/// is reserved, so such an order is never bid on (`docs/provider.md`, "What is not served").
pub fn servable(group: &GroupSpec, wants_vm: bool) -> Result<(), String> {
    for unit in &group.resources {
        let r = &unit.resources;
        if r.endpoints.iter().any(|e| e.kind == EndpointKind::LeasedIp) {
            return Err(format!(
                "unit {} asks for a leased IP endpoint (`ip:` in the SDL), which this provider does not offer",
                r.id
            ));
        }
        // Below the engine's minimum a container unit would be bid on, then fail at manifest time.
        let min = if wants_vm {
            VM_MIN_MEMORY
        } else {
            ENGINE_MIN_MEMORY
        };
        if r.memory.bytes < min {
            return Err(format!(
                "unit {} asks for {} bytes of memory; the smallest this provider runs is {min} bytes",
                r.id, r.memory.bytes
            ));
        }
        if r.cpu.millis == 0 {
            return Err(format!("unit {} asks for no CPU", r.id));
        }
    }
    Ok(())
}

/// Releases what an order's bid held (bid lost or closed, order closed or expired).
pub fn release(p: &Provider, order: &OrderId, why: &str) {
    match p.state.remove_reservation(order) {
        Ok(true) => info!(order = %order_label(order), "reservation released: {why}"),
        Ok(false) => {}
        Err(e) => warn!("releasing the reservation of {}: {e}", order_label(order)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(sdl: &str) -> GroupSpec {
        kumo_sdl::parse(sdl).expect("valid SDL").groups()[0].clone()
    }

    fn sdl(memory: &str, expose_to: &str) -> String {
        format!(
            r#"
version: "2.0"
services:
  web:
    image: nginx
    expose:
      - port: 80
        to: [{expose_to}]
profiles:
  compute:
    small:
      resources:
        cpu: {{units: 0.1}}
        memory: {{size: {memory}}}
        storage: {{size: 512Mi}}
  placement:
    dc:
      pricing:
        small: {{denom: ukumo, amount: 100}}
deployment:
  web:
    dc: {{profile: small, count: 1}}
"#
        )
    }

    #[test]
    fn a_normal_unit_is_servable() {
        servable(&group(&sdl("64Mi", "{global: true}")), false).unwrap();
    }

    #[test]
    fn memory_below_the_engine_minimum_gets_no_bid() {
        let e = servable(&group(&sdl("1Mi", "{global: true}")), false).unwrap_err();
        assert!(e.contains("smallest this provider runs"), "{e}");
        let e = servable(&group(&sdl("32Mi", "{global: true}")), true).unwrap_err();
        assert!(e.contains("smallest"), "{e}");
    }

    #[test]
    fn a_leased_ip_endpoint_gets_no_bid() {
        let text = sdl("64Mi", "{global: true, ip: myip}")
            .replace("profiles:", "endpoints:\n  myip:\n    kind: ip\nprofiles:");
        let e = servable(&group(&text), false).unwrap_err();
        assert!(e.contains("leased IP"), "{e}");
    }
}
