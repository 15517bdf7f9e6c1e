//! audit: auditors vouch for providers' attributes; `signedBy` in an SDL names whose vouching
//! a group requires.
//!
//! Anyone can act as an auditor; what gives an attestation weight is a tenant naming the
//! auditor. Signing again merges: attributes with the same key are replaced.

use kumo_types::{Address, Attribute, matching::Attestation};

use crate::{
    Ctx, MsgError,
    events::Event,
    provider::{self, ProviderError, check_attributes},
    state::{self, AuditedAttributes, keys},
    store::Store,
};

/// Why an audit message failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    /// Nothing to sign.
    #[error("no attributes to sign: list at least one")]
    Empty,
    /// No attestation to delete.
    #[error("auditor {auditor} has signed no attributes for provider {provider}")]
    NotFound {
        /// Provider.
        provider: Address,
        /// Auditor.
        auditor: Address,
    },
    /// A key to delete was not signed.
    #[error(
        "auditor has not signed key {0:?} for this provider: list only signed keys, or none to delete all"
    )]
    KeyNotFound(String),
}

/// Every attestation of `provider`, in auditor order.
pub fn attestations(s: &dyn Store, provider: &Address) -> Vec<AuditedAttributes> {
    state::scan(s, &keys::audits_of(provider))
}

/// The attestations of `provider` in the form [`kumo_types::matching`] reads.
pub fn attestations_for_matching(s: &dyn Store, provider: &Address) -> Vec<Attestation> {
    attestations(s, provider)
        .into_iter()
        .map(|a| Attestation {
            auditor: a.auditor.to_string(),
            attributes: a.attributes,
        })
        .collect()
}

pub(crate) fn sign(
    ctx: &mut Ctx<'_>,
    auditor: &Address,
    provider: &Address,
    attrs: &[Attribute],
) -> Result<(), MsgError> {
    if attrs.is_empty() {
        return Err(AuditError::Empty.into());
    }
    provider::get(ctx.store, provider).ok_or(ProviderError::Unknown(*provider))?;
    check_attributes(ctx.params, "signed attributes", attrs)?;
    let key = keys::audit(provider, auditor);
    let mut rec = state::get::<AuditedAttributes>(ctx.store, &key).unwrap_or(AuditedAttributes {
        provider: *provider,
        auditor: *auditor,
        attributes: Vec::new(),
    });
    for a in attrs {
        rec.attributes.retain(|b| b.key != a.key);
        rec.attributes.push(a.clone());
    }
    rec.attributes.sort();
    check_attributes(ctx.params, "signed attributes", &rec.attributes)?;
    state::put(ctx.store, &key, &rec);
    ctx.events.push(Event::ProviderAttributesSigned {
        provider: *provider,
        auditor: *auditor,
    });
    Ok(())
}

pub(crate) fn delete(
    ctx: &mut Ctx<'_>,
    auditor: &Address,
    provider: &Address,
    del: &[String],
) -> Result<(), MsgError> {
    let key = keys::audit(provider, auditor);
    let mut rec = state::get::<AuditedAttributes>(ctx.store, &key).ok_or(AuditError::NotFound {
        provider: *provider,
        auditor: *auditor,
    })?;
    for k in del {
        if !rec.attributes.iter().any(|a| &a.key == k) {
            return Err(AuditError::KeyNotFound(k.clone()).into());
        }
        rec.attributes.retain(|a| &a.key != k);
    }
    if del.is_empty() || rec.attributes.is_empty() {
        ctx.store.delete(&key);
    } else {
        state::put(ctx.store, &key, &rec);
    }
    ctx.events.push(Event::ProviderAttributesDeleted {
        provider: *provider,
        auditor: *auditor,
    });
    Ok(())
}
