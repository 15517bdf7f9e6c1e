//! provider: the registry of providers (host URI, attributes, contact, TLS fingerprint).
//!
//! A provider must be registered to bid. `DeleteProvider` is refused while it has open or
//! active bids, so no lease ever points at a missing provider.
//!
//! **Liveness.** A provider proves it is alive with any of its heartbeats, bids, declines or
//! withdrawals ([`prove_alive`]: `last_seen` = this height). While it has leases its record
//! holds a silence deadline, `max(last_seen, newest lease's height) + liveness_window`, indexed
//! under `34 ‖ deadline ‖ provider`; a proof moves it (two writes, whatever the number of
//! leases). At the end of the deadline's block ([`silent_at`]) the market closes its leases
//! `provider_unresponsive` and refunds the silent blocks.

use kumo_types::{Address, Attribute, ProviderFields};

use crate::{
    Ctx, MsgError, Params,
    events::Event,
    state::{self, Provider, keys},
};

/// Why a provider message failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// Already registered.
    #[error("provider {0} is already registered: use UpdateProvider to change it")]
    Exists(Address),
    /// Not registered.
    #[error("{0} is not a registered provider: send CreateProvider first")]
    Unknown(Address),
    /// Bids or leases still open.
    #[error(
        "provider {0} still has open bids or active leases: close them (CloseBid) before deleting"
    )]
    Busy(Address),
    /// Bad host URI.
    #[error("host_uri {0:?} must be an https:// URL")]
    HostUri(String),
    /// Bad attributes.
    #[error("{0}")]
    Attributes(#[from] AttributeError),
}

/// Why a list of attributes was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttributeError {
    /// Too many.
    #[error("{what}: {n} attributes, more than the limit of {max}")]
    TooMany {
        /// Which list.
        what: &'static str,
        /// Count.
        n: usize,
        /// Limit.
        max: u32,
    },
    /// Empty or too long key/value.
    #[error("{what}: attribute {key:?} has an empty or over-long key or value (limit {max} bytes)")]
    BadAttribute {
        /// Which list.
        what: &'static str,
        /// The key.
        key: String,
        /// Limit.
        max: u32,
    },
    /// Same key twice.
    #[error("{what}: key {key:?} appears twice: keep one")]
    Duplicate {
        /// Which list.
        what: &'static str,
        /// The key.
        key: String,
    },
}

/// Checks an attribute list: size, lengths, distinct keys.
pub(crate) fn check_attributes(
    params: &Params,
    what: &'static str,
    attrs: &[Attribute],
) -> Result<(), AttributeError> {
    if attrs.len() > params.max_attributes as usize {
        return Err(AttributeError::TooMany {
            what,
            n: attrs.len(),
            max: params.max_attributes,
        });
    }
    let max = params.max_string_bytes as usize;
    for (i, a) in attrs.iter().enumerate() {
        if a.key.is_empty() || a.key.len() > max || a.value.is_empty() || a.value.len() > max {
            return Err(AttributeError::BadAttribute {
                what,
                key: a.key.clone(),
                max: params.max_string_bytes,
            });
        }
        if attrs[..i].iter().any(|b| b.key == a.key) {
            return Err(AttributeError::Duplicate {
                what,
                key: a.key.clone(),
            });
        }
    }
    Ok(())
}

fn check_fields(params: &Params, f: &ProviderFields) -> Result<(), ProviderError> {
    let max = params.max_string_bytes as usize;
    let host_ok = f.host_uri.len() <= max
        && f.host_uri
            .strip_prefix("https://")
            .is_some_and(|h| !h.is_empty() && !h.contains(char::is_whitespace));
    if !host_ok {
        return Err(ProviderError::HostUri(f.host_uri.clone()));
    }
    if f.info.email.len() > max || f.info.website.len() > max {
        return Err(ProviderError::HostUri(format!(
            "info longer than {max} bytes"
        )));
    }
    check_attributes(params, "provider attributes", &f.attributes)?;
    Ok(())
}

/// The provider record of `addr`.
pub fn get(s: &dyn crate::Store, addr: &Address) -> Option<Provider> {
    state::get(s, &keys::provider(addr))
}

pub(crate) fn create(
    ctx: &mut Ctx<'_>,
    sender: &Address,
    fields: &ProviderFields,
) -> Result<(), MsgError> {
    if get(ctx.store, sender).is_some() {
        return Err(ProviderError::Exists(*sender).into());
    }
    check_fields(ctx.params, fields)?;
    let mut fields = fields.clone();
    fields.attributes.sort();
    let p = Provider {
        owner: *sender,
        fields,
        created_at: ctx.height,
        active_leases: 0,
        last_seen: ctx.height,
        silence_deadline: None,
    };
    state::put(ctx.store, &keys::provider(sender), &p);
    ctx.events.push(Event::ProviderCreated { owner: *sender });
    Ok(())
}

pub(crate) fn update(
    ctx: &mut Ctx<'_>,
    sender: &Address,
    fields: &ProviderFields,
) -> Result<(), MsgError> {
    let mut p = get(ctx.store, sender).ok_or(ProviderError::Unknown(*sender))?;
    check_fields(ctx.params, fields)?;
    p.fields = fields.clone();
    p.fields.attributes.sort();
    state::put(ctx.store, &keys::provider(sender), &p);
    ctx.events.push(Event::ProviderUpdated { owner: *sender });
    Ok(())
}

pub(crate) fn delete(ctx: &mut Ctx<'_>, sender: &Address) -> Result<(), MsgError> {
    let p = get(ctx.store, sender).ok_or(ProviderError::Unknown(*sender))?;
    if p.active_leases > 0
        || !ctx
            .store
            .scan_prefix(&keys::provider_bids(sender))
            .is_empty()
    {
        return Err(ProviderError::Busy(*sender).into());
    }
    ctx.store.delete(&keys::provider(sender));
    ctx.events.push(Event::ProviderDeleted { owner: *sender });
    Ok(())
}

/// Records that `p` is alive at this height, moving its silence deadline if it has leases.
pub(crate) fn prove_alive(ctx: &mut Ctx<'_>, p: &mut Provider) {
    p.last_seen = ctx.height;
    if p.active_leases > 0 {
        set_deadline(
            ctx,
            p,
            ctx.height.saturating_add(ctx.params.liveness_window),
        );
    }
}

/// Moves `p`'s silence deadline (and its index entry) to `deadline`, or drops it.
pub(crate) fn set_deadline(ctx: &mut Ctx<'_>, p: &mut Provider, deadline: impl Into<Option<u64>>) {
    let deadline = deadline.into();
    if p.silence_deadline == deadline {
        return;
    }
    if let Some(h) = p.silence_deadline {
        ctx.store.delete(&keys::silence_deadline(h, &p.owner));
    }
    if let Some(h) = deadline {
        ctx.store
            .put(&keys::silence_deadline(h, &p.owner), Vec::new());
    }
    p.silence_deadline = deadline;
}

/// `ProviderHeartbeat`.
pub(crate) fn heartbeat(ctx: &mut Ctx<'_>, sender: &Address) -> Result<(), MsgError> {
    let mut p = get(ctx.store, sender).ok_or(ProviderError::Unknown(*sender))?;
    prove_alive(ctx, &mut p);
    state::put(ctx.store, &keys::provider(sender), &p);
    Ok(())
}

/// Records a proof of life of the registered provider `addr` (bids, declines, withdrawals).
pub(crate) fn seen(ctx: &mut Ctx<'_>, addr: &Address) {
    if let Some(mut p) = get(ctx.store, addr) {
        prove_alive(ctx, &mut p);
        state::put(ctx.store, &keys::provider(addr), &p);
    }
}

/// The providers whose silence deadline is `height`.
pub fn silent_at(s: &dyn crate::Store, height: u64) -> Vec<Address> {
    let prefix = keys::silence_deadlines_at(height);
    s.scan_prefix(&prefix)
        .into_iter()
        .map(|(k, _)| Address(k[prefix.len()..].try_into().expect("20 bytes")))
        .collect()
}
