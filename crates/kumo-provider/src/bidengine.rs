//! The bid engine: for each `OrderCreated`, decide whether and at what price to bid.
//!
//! Steps: fetch the order's group from the chain; match attributes, signedBy (the auditors'
//! attestations of this provider) and storage/GPU capabilities (`kumo_types::matching`); refuse
//! VM groups while `[vm]` is disabled and groups with more replicas than a lease network holds;
//! check the group fits the free inventory (a lease network of the pool included), pick specific
//! free GPUs of the requested model ([`crate::gpus::select`]) and reserve both (under one lock,
//! so two orders cannot both take the last core or the last GPU); price it (GPUs by model);
//! send `CreateBid` with the GPUs offered. Any "no" releases the reservation (and its GPUs) and
//! is logged with its reason. Each order runs in a task of its own, so a
//! slow price script never holds up other orders or lease events.
//!
//! Reservations are released on `BidLost`, `BidClosed` and `OrderClosed` (which covers expiry),
//! and turn into the lease's hold on `LeaseCreated`.

use std::sync::Arc;

use kumo_types::{DecCoin, Msg, OrderId, matching};
use tracing::{info, warn};

use crate::{
    daemon::Provider,
    inventory::{self, fits},
    pricing,
    state::Reservation,
};

/// Handles one `OrderCreated` event; never fails (a "no" is logged).
pub async fn on_order_created(p: Arc<Provider>, order: OrderId, max: DecCoin) {
    match bid(&p, &order, &max).await {
        Ok(Some(price)) => info!(order = %order_label(&order), %price, "bid sent"),
        Ok(None) => {}
        Err(reason) => {
            if let Err(e) = p.state.remove_reservation(&order) {
                warn!("dropping the reservation of {}: {e}", order_label(&order));
            }
            warn!(order = %order_label(&order), "no bid: {reason}");
        }
    }
}

/// `owner/dseq/gseq/oseq`.
pub fn order_label(o: &OrderId) -> String {
    crate::state::order_key(o)
}

async fn bid(p: &Provider, order: &OrderId, max: &DecCoin) -> Result<Option<DecCoin>, String> {
    if p.state.has_reservation(order).map_err(|e| e.to_string())? {
        // Seen before (events are replayed after a restart): the bid was handled then.
        return Ok(None);
    }
    let dep = p
        .client
        .deployment(&order.group().deployment())
        .await
        .map_err(|e| format!("cannot read the deployment: {e}"))?
        .value;
    let group = dep
        .groups
        .iter()
        .find(|g| g.id.gseq == order.gseq)
        .ok_or("the order's group is not in its deployment")?
        .spec
        .clone();
    let me = p
        .client
        .provider(&p.address)
        .await
        .map_err(|e| format!("cannot read this provider's record (is it registered?): {e}"))?
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
        return Err(
            "the group has VM services (capabilities/vm) and this provider runs no VMs ([vm] enabled = false)"
                .into(),
        );
    }
    matching::match_group(&group, &me.provider.fields.attributes, &attestations)
        .map_err(|e| e.to_string())?;
    let pool = p.config.network.pool()?;
    let replicas: u64 = group.resources.iter().map(|u| u64::from(u.count)).sum();
    if replicas > u64::from(pool.replicas_per_network()) {
        return Err(format!(
            "the group has {replicas} replicas and a lease network here holds {} ([network] lease_subnet_prefix = {})",
            pool.replicas_per_network(),
            pool.subnet_prefix()
        ));
    }
    let mut need = inventory::group_needs(&group);
    let gpus = {
        let _one_at_a_time = p.reserve_lock.lock().await;
        let view = p.inventory_view().map_err(|e| e.to_string())?;
        fits(&need, &view.free).map_err(|e| format!("capacity: {e}"))?;
        let held = p.state.gpu_holders().map_err(|e| e.to_string())?;
        let gpus = crate::gpus::select(&p.inventory.devices, &held, &group)
            .map_err(|e| format!("GPUs: {e}"))?;
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
            .map_err(|e| e.to_string())?;
        gpus
    };
    let price = pricing::price(&p.config.pricing, order, &group, &gpus, max)
        .await
        .map_err(|e| e.to_string())?;
    if price.amount > max.amount {
        return Err(format!("price {price} is above the order's maximum {max}"));
    }
    p.signer
        .submit(vec![Msg::CreateBid {
            order: *order,
            price: price.clone(),
            deposit: p.config.bid_deposit.clone(),
            gpus: kumo_gpu::device::offers(&gpus),
        }])
        .await
        .map_err(|e| format!("CreateBid failed: {e}"))?;
    Ok(Some(price))
}

/// Releases what an order's bid held (bid lost or closed, order closed or expired).
pub fn release(p: &Provider, order: &OrderId, why: &str) {
    match p.state.remove_reservation(order) {
        Ok(true) => info!(order = %order_label(order), "reservation released: {why}"),
        Ok(false) => {}
        Err(e) => warn!("releasing the reservation of {}: {e}", order_label(order)),
    }
}
