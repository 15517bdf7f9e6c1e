//! [`ProviderGateway`]: the daemon behind the gateway. Ownership comes from the daemon's lease
//! records (a lease here with these numbers but another owner is `Forbidden`, none is
//! `NotFound`); manifests go through [`Provider::accept_manifest`]; logs, shell, events and
//! restarts go straight to the workload backend.
//!
//! A lease that closed here within `closed_logs_retention` is still found for its owner
//! ([`crate::closed_logs`]): its logs are the lines kept at the close, and status, shell,
//! events and restart answer `Gone` rather than act on a workload that is no more.

use std::sync::Arc;

use async_trait::async_trait;
use kumo_gateway::{
    GatewayBackend, GatewayError,
    types::{LeaseStatusView, ProviderStatusView, VmSupportView},
};
use kumo_sdl::manifest::Manifest;
use kumo_types::{Address, LeaseId};
use kumo_workload::{EventStream, ExecRequest, ExecSession, LogOptions, LogStream};

use crate::daemon::Provider;

/// The [`GatewayBackend`] of a running daemon.
#[derive(Debug, Clone)]
pub struct ProviderGateway(pub Arc<Provider>);

#[async_trait]
impl GatewayBackend for ProviderGateway {
    fn provider(&self) -> Address {
        self.0.address
    }

    async fn lease(
        &self,
        tenant: &Address,
        dseq: u64,
        gseq: u32,
        oseq: u32,
    ) -> Result<LeaseId, GatewayError> {
        self.0.find_lease(tenant, dseq, gseq, oseq)
    }

    async fn put_manifest(
        &self,
        tenant: &Address,
        dseq: u64,
        manifest: Manifest,
    ) -> Result<(), GatewayError> {
        self.0.accept_manifest(tenant, dseq, manifest).await
    }

    async fn lease_status(&self, lease: &LeaseId) -> Result<LeaseStatusView, GatewayError> {
        self.0.refuse_closed(lease)?;
        self.0.status_view(lease).await
    }

    async fn logs(&self, lease: &LeaseId, opts: &LogOptions) -> Result<LogStream, GatewayError> {
        self.0.lease_logs(lease, opts).await
    }

    async fn exec(&self, lease: &LeaseId, req: &ExecRequest) -> Result<ExecSession, GatewayError> {
        self.0.refuse_closed(lease)?;
        Ok(self.0.backend.exec(lease, req).await?)
    }

    async fn events(&self, lease: &LeaseId) -> Result<EventStream, GatewayError> {
        self.0.refuse_closed(lease)?;
        Ok(self.0.backend.events(lease).await?)
    }

    async fn restart(
        &self,
        lease: &LeaseId,
        service: Option<&str>,
    ) -> Result<LeaseStatusView, GatewayError> {
        self.0.refuse_closed(lease)?;
        if self
            .0
            .state
            .lease(lease)
            .ok()
            .flatten()
            .and_then(|r| r.manifest)
            .is_none()
        {
            return Err(GatewayError::Conflict(
                "the lease has no manifest yet: nothing runs to restart".into(),
            ));
        }
        self.0.backend.restart(lease, service).await?;
        self.0.status_view(lease).await
    }

    async fn metrics(&self) -> Result<String, GatewayError> {
        self.0
            .metrics_text()
            .map_err(|e| GatewayError::Unavailable(e.to_string()))
    }

    async fn provider_status(&self) -> Result<ProviderStatusView, GatewayError> {
        let p = &self.0;
        let err = |e: crate::ProviderError| GatewayError::Unavailable(e.to_string());
        Ok(ProviderStatusView {
            provider: p.address,
            leases: p.state.leases().map_err(err)?.len() as u32,
            bids: p.state.reservations().map_err(err)?.len() as u32,
            inventory: p.inventory_view().map_err(err)?,
            vm: p.vm.as_ref().map(|vm| VmSupportView {
                accel: vm.accel().accel.to_string(),
                warning: vm.accel().warning.clone(),
            }),
        })
    }
}
