//! provider: the registry of providers (host URI, attributes, contact, TLS fingerprint).
//!
//! A provider must be registered to bid. `DeleteProvider` is refused while it has open or
//! active bids, so no lease ever points at a missing provider.

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
