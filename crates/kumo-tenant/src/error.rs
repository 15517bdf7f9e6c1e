//! [`TenantError`]: every way a tenant command can fail, each saying what happened on chain
//! (what was closed, what was refunded) and what to do next.

use kumo_types::{Address, Coin};

use crate::fit::ProviderFit;

/// Why a tenant operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    /// The SDL file does not parse or is not valid.
    #[error("the SDL is invalid: {0}")]
    Sdl(#[from] kumo_sdl::SdlError),
    /// The SDL is valid but the chain would refuse the deployment (limits, denomination).
    #[error("the chain would refuse this deployment: {0} (nothing was sent)")]
    Refused(String),
    /// The deposit cannot pay for the deployment; nothing was sent.
    #[error(
        "deposit {deposit} is too small: {why}; pass at least --deposit {needed} (nothing was sent)"
    )]
    DepositTooSmall {
        /// What was offered.
        deposit: Coin,
        /// What would do.
        needed: Coin,
        /// The rule it breaks.
        why: String,
    },
    /// No (acceptable) bid arrived in time; the deployment was closed and refunded.
    #[error("{}", no_bids_message(.dseq, .waited_ms, .refund, &.why.declines, &.why.providers, .selected))]
    NoBids {
        /// The deployment.
        dseq: u64,
        /// Milliseconds waited.
        waited_ms: u64,
        /// What the closed escrow refunded.
        refund: Option<Coin>,
        /// Why: the providers' declines, and the local guess for the others.
        why: Box<NoBidReasons>,
        /// The provider `--select` asked for, when that was the condition.
        selected: Option<Address>,
    },
    /// The caller chose none of the bids; the deployment was closed.
    #[error("no bid chosen: deployment {dseq} was closed{}", refund_note(.refund))]
    Cancelled {
        /// The deployment.
        dseq: u64,
        /// What the closed escrow refunded.
        refund: Option<Coin>,
    },
    /// The provider refused the manifest; the deployment (and its lease) was closed.
    #[error(
        "provider {provider} refused the manifest of deployment {dseq}: {reason}\n  the deployment was closed{}",
        refund_note(.refund)
    )]
    ManifestRefused {
        /// The deployment.
        dseq: u64,
        /// The provider.
        provider: Address,
        /// Its explanation, as the gateway gave it.
        reason: String,
        /// What the closed escrow refunded.
        refund: Option<Coin>,
    },
    /// The services did not all become available in time.
    #[error("{}", not_ready_message(.dseq, .waited_secs, .services, .closed))]
    NotReady {
        /// The deployment.
        dseq: u64,
        /// Seconds waited.
        waited_secs: u64,
        /// The services that are not ready: name, available, wanted, last log lines.
        services: Vec<NotReadyService>,
        /// Whether the deployment was closed (`--close-on-failure`).
        closed: bool,
    },
    /// The provider's gateway could not be reached for the manifest, however long it was
    /// tried; the deployment and its lease stay open (the provider closes the lease if no
    /// manifest comes within its manifest timeout).
    #[error(
        "provider {provider}'s gateway could not be reached for {waited_secs} s to take the manifest of deployment {dseq}: {cause}\n  the deployment and its lease are still open: send the manifest again with `kumo update {dseq} FILE`, or close it with `kumo lease close {dseq}`"
    )]
    GatewayUnreachable {
        /// The deployment.
        dseq: u64,
        /// The provider.
        provider: Address,
        /// How long it was tried.
        waited_secs: u64,
        /// The last error.
        cause: String,
    },
    /// A deployment update would change what the groups ask for.
    #[error(
        "deployment {dseq} cannot be updated with this SDL: {what}. An update may change the manifest (images, commands, env, ports), not the groups' resources, placement or prices; close the deployment and deploy again for that"
    )]
    GroupsChanged {
        /// The deployment.
        dseq: u64,
        /// What differs.
        what: String,
    },
    /// A request the chain would refuse (or that would do nothing), caught before anything was
    /// sent: no fee was paid.
    #[error("{0} (nothing was sent)")]
    Invalid(String),
    /// No such deployment or lease for this tenant.
    #[error("{0}")]
    NotFound(String),
    /// The node refused or could not be reached.
    #[error(transparent)]
    Node(#[from] kumo_client::ClientError),
    /// A transaction failed.
    #[error(transparent)]
    Tx(#[from] kumo_client::signer::SignerError),
    /// A provider's gateway failed.
    #[error("provider {provider}: {source}")]
    Gateway {
        /// The provider.
        provider: Address,
        /// What the gateway said.
        #[source]
        source: kumo_gateway::client::ClientError,
    },
    /// The chain's record of a provider is unusable (e.g. its host URI).
    #[error("provider {provider}: {reason}")]
    BadProvider {
        /// The provider.
        provider: Address,
        /// What is wrong.
        reason: String,
    },
}

/// A service that did not become available.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NotReadyService {
    /// Its name.
    pub name: String,
    /// Replicas running.
    pub available: u32,
    /// Replicas wanted.
    pub replicas: u32,
    /// Its last log lines (`[replica] line`).
    pub logs: Vec<String>,
}

fn refund_note(refund: &Option<Coin>) -> String {
    refund
        .as_ref()
        .map_or(String::new(), |c| format!(" and {c} refunded"))
}

/// Why no provider bid on an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoBidReasons {
    /// The providers that declined the order, each with its own reason.
    pub declines: Vec<DeclineView>,
    /// Each other registered provider and why it did not fit (as far as can be told here).
    pub providers: Vec<ProviderFit>,
}

/// A provider's decline of an order, as the tenant is told it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeclineView {
    /// The provider.
    pub provider: Address,
    /// Its reason code.
    pub reason: kumo_types::DeclineReason,
    /// Its reason, in its words.
    pub detail: String,
}

fn no_bids_message(
    dseq: &u64,
    waited_ms: &u64,
    refund: &Option<Coin>,
    declines: &[DeclineView],
    providers: &[ProviderFit],
    selected: &Option<Address>,
) -> String {
    let waited = format!("{:.1} s", *waited_ms as f64 / 1000.0);
    let mut m = match selected {
        Some(p) => format!("no bid from provider {p} on deployment {dseq} within {waited}"),
        None => format!("no bid on deployment {dseq} within {waited}"),
    };
    m.push_str(&format!(
        "; the deployment was closed{}",
        refund_note(refund)
    ));
    if declines.is_empty() && providers.is_empty() {
        m.push_str("\n  no provider is registered on this chain");
    }
    if !declines.is_empty() {
        m.push_str("\n  the providers that declined, in their words:");
        for d in declines {
            m.push_str(&format!(
                "\n  - {} ({}): {}",
                d.provider, d.reason, d.detail
            ));
        }
    }
    if !providers.is_empty() {
        m.push_str(match declines.is_empty() {
            true => "\n  why the registered providers did not fit:",
            false => {
                "\n  the others said nothing; why they do not fit, as far as can be told here:"
            }
        });
        for p in providers {
            m.push_str(&format!("\n  - {}: {}", p.provider, p.reasons.join("; ")));
        }
    }
    m
}

fn not_ready_message(
    dseq: &u64,
    waited: &u64,
    services: &[NotReadyService],
    closed: &bool,
) -> String {
    let mut m = format!("deployment {dseq} is not ready after {waited} s:");
    for s in services {
        m.push_str(&format!(
            "\n  service {:?}: {}/{} replicas available",
            s.name, s.available, s.replicas
        ));
        if s.logs.is_empty() {
            m.push_str(" (no log output)");
        } else {
            m.push_str(", last log lines:");
            for l in &s.logs {
                m.push_str(&format!("\n    {l}"));
            }
        }
    }
    if *closed {
        m.push_str("\n  the deployment was closed (--close-on-failure)");
    } else {
        m.push_str(&format!(
            "\n  the lease stays open and is paid for: watch it with `kumo lease status {dseq}`, or close it with `kumo lease close {dseq}`"
        ));
    }
    m
}
