//! `kumo provider register`: puts the provider's record on chain from its config
//! (`CreateProvider`, or `UpdateProvider` when it exists): host URI, attributes (with
//! `capabilities/vm = true` added when `[vm]` is enabled), contact details and the gateway
//! certificate's SHA-256 fingerprint, which tenants pin. The GPU attributes
//! (`capabilities/gpu/vendor/nvidia/model/<model>[/ram/<size>][/interface/<iface>]`) come from
//! the GPUs found (NVML or `[[gpu.devices]]`), replacing any written by hand.

use kumo_client::signer::Signer;
use kumo_sdl::VM_CAPABILITY;
use kumo_types::{Attribute, Msg, ProviderFields, ProviderInfo};
use serde::Serialize;

use crate::{ProviderConfig, ProviderError};

/// What `register` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Registered {
    /// The provider's address.
    pub provider: String,
    /// `create_provider` or `update_provider`.
    pub action: &'static str,
    /// The committed transaction's height.
    pub height: u64,
    /// The certificate fingerprint published (hex).
    pub tls_cert_sha256: String,
}

/// The fields the chain record gets, for a host with these GPUs.
pub fn fields(
    config: &ProviderConfig,
    gpus: &[kumo_gpu::GpuDevice],
    fingerprint: [u8; 32],
) -> ProviderFields {
    ProviderFields {
        host_uri: config.gateway.host_uri.clone(),
        attributes: kumo_gpu::attributes::with_gpu_attributes(&attributes(config), gpus),
        info: ProviderInfo {
            email: config.info.email.clone(),
            website: config.info.website.clone(),
        },
        tls_cert_sha256: fingerprint,
    }
}

/// The configured attributes, plus `capabilities/vm = true` when `[vm]` is enabled (the
/// requirement of every group with a VM service, see `kumo_sdl::VM_CAPABILITY`).
pub fn attributes(config: &ProviderConfig) -> Vec<Attribute> {
    let mut attrs = config.attributes.clone();
    if config.vm.enabled && !attrs.iter().any(|a| a.key == VM_CAPABILITY) {
        attrs.push(Attribute::new(VM_CAPABILITY, "true"));
    }
    attrs
}

/// Creates or updates the provider's record.
pub async fn register(
    config: &ProviderConfig,
    signer: &Signer,
    fingerprint: [u8; 32],
) -> Result<Registered, ProviderError> {
    let gpus = crate::gpus::discover(&config.gpu).map_err(ProviderError::Other)?;
    let f = fields(config, &gpus, fingerprint);
    let exists = match signer.client().provider(&signer.address()).await {
        Ok(_) => true,
        Err(e) if e.is_not_found() => false,
        Err(e) => return Err(e.into()),
    };
    let (msg, action) = if exists {
        (Msg::UpdateProvider(f), "update_provider")
    } else {
        (Msg::CreateProvider(f), "create_provider")
    };
    let done = signer.submit(vec![msg]).await?;
    Ok(Registered {
        provider: signer.address().to_string(),
        action,
        height: done.height,
        tls_cert_sha256: hex::encode(fingerprint),
    })
}
