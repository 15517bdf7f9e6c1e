//! Why no provider bid: each registered provider checked against the deployment's groups, as
//! far as the chain (attributes, auditor attestations) and the provider's public `/status`
//! (free capacity) let a tenant tell. A provider's prices are not public, so a provider that
//! passes every check may still price above the order's maximum (or be down).

use std::time::Duration;

use kumo_gateway::types::ResourceAmounts;
use kumo_types::{
    GroupSpec,
    matching::{Attestation, match_group},
};
use serde::Serialize;

use crate::{Tenant, TenantError};

/// How long a provider's public status may take to answer.
const STATUS_TIMEOUT: Duration = Duration::from_secs(3);

/// One provider and why it did not fit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProviderFit {
    /// The provider's account.
    pub provider: kumo_types::Address,
    /// Its gateway.
    pub host_uri: String,
    /// The reasons, most specific first; never empty.
    pub reasons: Vec<String>,
}

/// Checks every registered provider against `groups`.
pub async fn explain(
    tenant: &Tenant,
    groups: &[GroupSpec],
) -> Result<Vec<ProviderFit>, TenantError> {
    let providers = tenant.node().providers().await?.value;
    let mut out = Vec::new();
    for p in providers {
        let view = tenant.node().provider(&p.owner).await?.value;
        let attestations: Vec<Attestation> = view
            .attestations
            .iter()
            .map(|a| Attestation {
                auditor: a.auditor.to_string(),
                attributes: a.attributes.clone(),
            })
            .collect();
        let mut reasons = Vec::new();
        for g in groups {
            if let Err(e) = match_group(g, &p.fields.attributes, &attestations) {
                reasons.push(format!("group {:?}: {e}", g.name));
            }
        }
        let status = match tenant.gateway_of(&p) {
            Ok(gw) => tokio::time::timeout(STATUS_TIMEOUT, gw.provider_status())
                .await
                .map_err(|_| "timed out".to_string())
                .and_then(|r| r.map_err(|e| e.to_string())),
            Err(e) => Err(e.to_string()),
        };
        match status {
            Ok(s) => {
                for g in groups {
                    if let Err(e) = ResourceAmounts::of_group(g).fits_in(&s.inventory.free) {
                        reasons.push(format!("group {:?}: not enough free capacity: {e}", g.name));
                    }
                }
            }
            Err(e) => reasons.push(format!(
                "its gateway at {} does not answer ({e}): the provider may be down",
                p.fields.host_uri
            )),
        }
        if reasons.is_empty() {
            let max: Vec<String> = groups
                .iter()
                .filter_map(|g| g.price().map(|p| format!("{p}")))
                .collect();
            reasons.push(format!(
                "matches the attributes and auditors and has the capacity: its price is probably above your maximum ({} per block; raise `pricing` in the SDL), or its daemon is not bidding (check with its operator)",
                max.join(", ")
            ));
        }
        out.push(ProviderFit {
            provider: p.owner,
            host_uri: p.fields.host_uri.clone(),
            reasons,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(yaml_memory: &str) -> GroupSpec {
        crate::test_sdl::WebSdl {
            memory: yaml_memory,
            storage: "\n          - size: 1Gi\n          - name: scratch\n            size: 64Mi\n            attributes:\n              class: ram",
            count: 2,
            ..Default::default()
        }
        .groups()[0]
            .clone()
    }

    #[test]
    fn needs_count_replicas_and_ram_volumes_as_memory() {
        let n = ResourceAmounts::of_group(&group("128Mi"));
        assert_eq!(n.cpu_millis, 1000);
        assert_eq!(n.memory_bytes, (2 * (128 + 64)) << 20);
        assert_eq!(n.storage_bytes["disk"], 2 << 30);
    }

    #[test]
    fn fits_names_the_resource_short() {
        let need = ResourceAmounts::of_group(&group("1Gi"));
        // A group also holds one lease network of the provider's pool.
        let mut free = ResourceAmounts {
            cpu_millis: 4000,
            memory_bytes: 1 << 30,
            networks: 1,
            ..Default::default()
        };
        free.storage_bytes.insert("disk".into(), 10 << 30);
        let e = need.fits_in(&free).unwrap_err();
        assert!(e.contains("memory") && e.contains("2176 MiB"), "{e}");
        free.memory_bytes = 4 << 30;
        assert_eq!(need.fits_in(&free), Ok(()));
        free.networks = 0;
        assert!(need.fits_in(&free).unwrap_err().contains("lease_pool"));
        free.networks = 1;
        free.cpu_millis = 999;
        assert!(need.fits_in(&free).unwrap_err().contains("mCPU"));
    }
}
