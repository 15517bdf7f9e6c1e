//! [`GatewayBackend`]: the seam between the gateway (HTTP, tokens, TLS, ingress) and the
//! provider daemon (chain, bookkeeping, workloads).
//!
//! The gateway authenticates a request (its token names the tenant) and then asks the backend.
//! Authorization is split on purpose: the gateway checks scopes and expiry; the backend says who
//! owns what, so "tenant B asks for tenant A's lease" is answered by
//! [`GatewayError::Forbidden`], not by a silent 404.

use async_trait::async_trait;
use kumo_sdl::manifest::Manifest;
use kumo_types::{Address, LeaseId};
use kumo_workload::{EventStream, ExecRequest, ExecSession, LogOptions, LogStream};

use crate::{
    GatewayError,
    types::{LeaseStatusView, ProviderStatusView},
};

/// What the gateway needs from the provider daemon. Shared between tasks.
#[async_trait]
pub trait GatewayBackend: Send + Sync + 'static {
    /// The provider's account address (the `aud` every token must name).
    fn provider(&self) -> Address;

    /// The lease `dseq/gseq/oseq` of `tenant` with this provider. Errors: `NotFound` when no
    /// such lease exists here; `Forbidden` when one exists with these numbers but another owner.
    async fn lease(
        &self,
        tenant: &Address,
        dseq: u64,
        gseq: u32,
        oseq: u32,
    ) -> Result<LeaseId, GatewayError>;

    /// Accepts the manifest of `tenant`'s deployment `dseq`: checks its hash against the
    /// deployment's on-chain hash (`Invalid` when it differs: nothing starts), then deploys the
    /// groups this provider leases. Errors as [`GatewayBackend::lease`] for ownership.
    async fn put_manifest(
        &self,
        tenant: &Address,
        dseq: u64,
        manifest: Manifest,
    ) -> Result<(), GatewayError>;

    /// The lease's status with its URIs and forwarded ports.
    async fn lease_status(&self, lease: &LeaseId) -> Result<LeaseStatusView, GatewayError>;

    /// The lease's log lines.
    async fn logs(&self, lease: &LeaseId, opts: &LogOptions) -> Result<LogStream, GatewayError>;

    /// Starts a command in a replica of the lease.
    async fn exec(&self, lease: &LeaseId, req: &ExecRequest) -> Result<ExecSession, GatewayError>;

    /// What happens to the lease's replicas from now on.
    async fn events(&self, lease: &LeaseId) -> Result<EventStream, GatewayError>;

    /// Restarts the lease's replicas of one service (`Some`) or of all of them: containers are
    /// restarted, VMs rebooted; disks and volumes are kept. Returns the status afterwards.
    async fn restart(
        &self,
        lease: &LeaseId,
        service: Option<&str>,
    ) -> Result<LeaseStatusView, GatewayError>;

    /// The public status (`GET /status`).
    async fn provider_status(&self) -> Result<ProviderStatusView, GatewayError>;

    /// The provider's metrics in Prometheus text format (`GET /metrics`, public like
    /// `/status`: aggregate counts only). None by default.
    async fn metrics(&self) -> Result<String, GatewayError> {
        Ok(String::new())
    }
}
