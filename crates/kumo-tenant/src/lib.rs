//! The tenant's path through Kumo as a library: deploy an SDL file and operate its leases.
//! `kumo deploy`, `kumo lease …`, `kumo deposit` and `kumo update` are thin shells over it.
//!
//! - [`deploy::deploy`]: validate → `CreateDeployment` → bids → selection → `CreateLease` →
//!   manifest → running, each step reported as a [`deploy::Progress`] event, each failure a
//!   [`TenantError`] saying why and what was closed or refunded.
//! - [`lease`]: list, status ([`report::LeaseReport`]), logs, shell, close, deposit, update.
//!
//! ```no_run
//! # async fn demo(key: kumo_types::SecretKey, sdl: &str) -> Result<(), kumo_tenant::TenantError> {
//! use kumo_tenant::{Tenant, deploy::{DeployOptions, deploy}};
//! let node = kumo_client::NodeClient::new("http://127.0.0.1:26657")?;
//! let tenant = Tenant::connect(node, key).await?;
//! let reports = deploy(&tenant, sdl, DeployOptions::default(), &mut |p| println!("{p:?}")).await?;
//! println!("{}", reports[0].status.services[0].uris[0]);
//! # Ok(()) }
//! ```

pub mod deploy;
mod error;
pub mod failover;
pub mod fit;
pub mod lease;
pub mod report;
#[cfg(test)]
mod test_sdl;

use kumo_client::{NodeClient, signer::Signer};
use kumo_gateway::client::GatewayClient;
use kumo_types::{Address, SecretKey};

pub use error::{NotReadyService, TenantError};

/// A tenant: one account key, a node, and a signer for its transactions.
#[derive(Debug)]
pub struct Tenant {
    node: NodeClient,
    signer: Signer,
    key: SecretKey,
}

impl Tenant {
    /// A tenant signing with `key` on the node behind `node` (reads the chain id and params).
    pub async fn connect(node: NodeClient, key: SecretKey) -> Result<Tenant, TenantError> {
        let signer = Signer::connect(node.clone(), key.clone()).await?;
        Ok(Tenant { node, signer, key })
    }

    /// The tenant's account.
    pub fn address(&self) -> Address {
        self.signer.address()
    }

    /// The node client.
    pub fn node(&self) -> &NodeClient {
        &self.node
    }

    /// The signer of the tenant's transactions.
    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    /// The chain parameters read at connect time.
    pub fn params(&self) -> &kumo_chain::Params {
        self.signer.params()
    }

    /// A client of `provider`'s gateway, pinned to the certificate in its chain record.
    pub async fn gateway(&self, provider: &Address) -> Result<GatewayClient, TenantError> {
        let view = self.node.provider(provider).await?.value;
        self.gateway_of(&view.provider)
    }

    /// As [`Tenant::gateway`], from a provider record already read.
    pub fn gateway_of(
        &self,
        provider: &kumo_client::types::Provider,
    ) -> Result<GatewayClient, TenantError> {
        GatewayClient::new(
            &provider.fields.host_uri,
            provider.fields.tls_cert_sha256,
            self.key.clone(),
            provider.owner,
        )
        .map_err(|e| TenantError::BadProvider {
            provider: provider.owner,
            reason: e.to_string(),
        })
    }
}
