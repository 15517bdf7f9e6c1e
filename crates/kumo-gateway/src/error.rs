//! [`GatewayError`]: what can go wrong behind the gateway, each variant with the HTTP status
//! the server answers with.

/// An error a [`crate::GatewayBackend`] call returns.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No such lease or deployment with this provider (404).
    #[error("not found: {0}")]
    NotFound(String),
    /// The lease or deployment exists but belongs to someone else (403).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The request cannot be carried out as sent, e.g. a manifest whose hash differs from the
    /// deployment's on-chain hash, or one that does not fit the lease's resources (400).
    #[error("{0}")]
    Invalid(String),
    /// The lease is in a state that does not allow this, e.g. no manifest yet (409).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The lease closed: nothing of it runs any more (410). Its logs may still be kept.
    #[error("gone: {0}")]
    Gone(String),
    /// The chain or the workload engine failed or could not be reached (502/503).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The workload layer failed.
    #[error(transparent)]
    Workload(#[from] kumo_workload::WorkloadError),
}
