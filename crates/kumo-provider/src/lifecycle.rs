//! One owner per lease: everything that changes a lease's workload goes through that lease's
//! actor, one message at a time, in the order the messages came.
//!
//! ```text
//!                       ┌──────────────┐  Manifest / Overdue / Refresh / Close
//!  Lifecycle (handle) ─▶│  supervisor  │──────────────────────────────────────▶ lease actor (one per lease)
//!   adopt, manifest,    │ owns the map │   spawns an actor on first use;          handles its mailbox in order;
//!   overdue, close,     │ lease→mailbox│   Close removes it from the map          Close tears down and ends it
//!   refresh             └──────────────┘   first, so nothing reaches it after
//! ```
//!
//! Why: before, a 2-second refresh task and the chain's `LeaseClosed` handler both acted on a
//! lease. A refresh that read the records just before a close could deploy the lease again
//! after its teardown, leaving a workload that served traffic with no lease until the next
//! restart. Now a refresh is a message in the lease's mailbox: if it comes before the close it
//! runs before the teardown, if after, the actor is gone and nothing runs.
//!
//! The supervisor does no slow work itself, except the one engine listing of a refresh
//! ([`kumo_workload::Backend::statuses`]); deploys and teardowns run in the actors, so one
//! slow lease does not hold up the others. Nothing here talks to the chain: the daemon
//! ([`crate::daemon`]) turns chain events and queries into these messages, and a test drives
//! them with a fake backend.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use kumo_gateway::GatewayError;
use kumo_sdl::manifest::ManifestGroup;
use kumo_types::LeaseId;
use kumo_workload::DeploymentStatus;
use serde::Serialize;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tracing::warn;

use crate::{daemon::LeaseHost, lease::now_ms, state::lease_key};

/// What one lease's refresh did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refreshed {
    /// Nothing to do: no manifest yet.
    Waiting,
    /// Every replica was there; routes set from the engine's addresses.
    Routed,
    /// Replicas were missing: deployed again (converging), then routed.
    Redeployed,
    /// The engine or the records could not be read, or the deploy failed (logged).
    Failed,
}

/// What a refresh of every lease did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RefreshReport {
    /// Leases with a manifest whose routes were set.
    pub routed: usize,
    /// Of those, leases deployed again because replicas were missing.
    pub redeployed: usize,
    /// Leases whose refresh failed.
    pub failed: usize,
}

enum Command {
    Adopt(LeaseId),
    Manifest {
        lease: LeaseId,
        group: ManifestGroup,
        reply: oneshot::Sender<Result<(), GatewayError>>,
    },
    Overdue {
        lease: LeaseId,
        timeout_ms: u64,
        reply: oneshot::Sender<bool>,
    },
    Close {
        lease: LeaseId,
        why: String,
        done: oneshot::Sender<()>,
    },
    Refresh {
        start_stopped: bool,
        done: oneshot::Sender<RefreshReport>,
    },
    Owned {
        reply: oneshot::Sender<Vec<LeaseId>>,
    },
}

enum LeaseCommand {
    Manifest {
        group: ManifestGroup,
        reply: oneshot::Sender<Result<(), GatewayError>>,
    },
    Overdue {
        timeout_ms: u64,
        reply: oneshot::Sender<bool>,
    },
    Refresh {
        status: Option<DeploymentStatus>,
        /// When the engine listing `status` comes from began.
        listed_at: Instant,
        start_stopped: bool,
        done: oneshot::Sender<Refreshed>,
    },
    Close {
        why: String,
        done: oneshot::Sender<()>,
    },
}

/// The handle every part of the daemon sends lease work through (cheap to clone).
#[derive(Debug, Clone)]
pub struct Lifecycle {
    mailbox: mpsc::UnboundedSender<Command>,
}

fn stopped() -> GatewayError {
    GatewayError::Unavailable("the provider is shutting down".into())
}

impl Lifecycle {
    /// Starts the supervisor on the current runtime. It runs until every handle is dropped.
    pub fn start(host: Arc<LeaseHost>) -> Lifecycle {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(
            Supervisor {
                host,
                owners: HashMap::new(),
                actors: JoinSet::new(),
            }
            .run(rx),
        );
        Lifecycle { mailbox: tx }
    }

    /// Gives a recorded lease its owner (nothing happens if it has one).
    pub fn adopt(&self, lease: LeaseId) {
        let _ = self.mailbox.send(Command::Adopt(lease));
    }

    /// Deploys an accepted manifest group for the lease (after the lease's earlier messages).
    pub async fn manifest(&self, lease: LeaseId, group: ManifestGroup) -> Result<(), GatewayError> {
        let (reply, answer) = oneshot::channel();
        self.mailbox
            .send(Command::Manifest {
                lease,
                group,
                reply,
            })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Whether the lease is past its manifest deadline; if so its owner refuses manifests from
    /// now on, so a manifest cannot start a workload that the coming close would orphan.
    pub async fn overdue(&self, lease: LeaseId, timeout_ms: u64) -> bool {
        let (reply, answer) = oneshot::channel();
        if self
            .mailbox
            .send(Command::Overdue {
                lease,
                timeout_ms,
                reply,
            })
            .is_err()
        {
            return false;
        }
        answer.await.unwrap_or(false)
    }

    /// Closes the lease here: routes removed, its last logs kept ([`crate::closed_logs`]),
    /// workload and record removed, after whatever its owner was doing. Returns when that is done. Closing a lease with no owner (an orphan found in
    /// the engine) gives it one just for the teardown.
    pub async fn close(&self, lease: LeaseId, why: impl Into<String>) {
        let (done, finished) = oneshot::channel();
        if self
            .mailbox
            .send(Command::Close {
                lease,
                why: why.into(),
                done,
            })
            .is_ok()
        {
            let _ = finished.await;
        }
    }

    /// Starts closing the lease (as [`Lifecycle::close`]) without waiting for the teardown:
    /// the chain's `LeaseClosed` events go on while owners tear their leases down side by
    /// side. A teardown lost to a crash is found by the next reconcile.
    pub fn close_soon(&self, lease: LeaseId, why: impl Into<String>) {
        let (done, _) = oneshot::channel();
        let _ = self.mailbox.send(Command::Close {
            lease,
            why: why.into(),
            done,
        });
    }

    /// Refreshes every lease from one engine listing: routes set from the replicas' addresses,
    /// missing replicas deployed again, and with `start_stopped` (reconcile) also the leases
    /// with a replica that stopped and is not being restarted (after a host reboot, say: the
    /// deploy mounts its volumes and starts it). Returns when every lease has done its part.
    pub async fn refresh(&self, start_stopped: bool) -> RefreshReport {
        let (done, finished) = oneshot::channel();
        if self
            .mailbox
            .send(Command::Refresh {
                start_stopped,
                done,
            })
            .is_err()
        {
            return RefreshReport::default();
        }
        finished.await.unwrap_or_default()
    }

    /// The leases that have an owner now, sorted.
    pub async fn owned(&self) -> Vec<LeaseId> {
        let (reply, answer) = oneshot::channel();
        if self.mailbox.send(Command::Owned { reply }).is_err() {
            return Vec::new();
        }
        answer.await.unwrap_or_default()
    }
}

struct Supervisor {
    host: Arc<LeaseHost>,
    owners: HashMap<LeaseId, mpsc::UnboundedSender<LeaseCommand>>,
    actors: JoinSet<()>,
}

impl Supervisor {
    async fn run(mut self, mut mailbox: mpsc::UnboundedReceiver<Command>) {
        loop {
            tokio::select! {
                command = mailbox.recv() => match command {
                    Some(command) => self.handle(command).await,
                    None => break,
                },
                // Reap finished actors so the set does not grow with every closed lease.
                Some(_) = self.actors.join_next(), if !self.actors.is_empty() => {}
            }
        }
        // The daemon is stopping: let the actors finish what they are doing.
        drop(self.owners);
        while self.actors.join_next().await.is_some() {}
    }

    fn owner(&mut self, lease: LeaseId) -> &mpsc::UnboundedSender<LeaseCommand> {
        let host = &self.host;
        let actors = &mut self.actors;
        self.owners.entry(lease).or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            actors.spawn(
                LeaseActor {
                    host: host.clone(),
                    lease,
                    closing: false,
                    deployed_at: None,
                }
                .run(rx),
            );
            tx
        })
    }

    async fn handle(&mut self, command: Command) {
        match command {
            Command::Adopt(lease) => {
                self.owner(lease);
            }
            Command::Manifest {
                lease,
                group,
                reply,
            } => {
                // Only a recorded lease gets an owner here (its adoption may still be on the
                // way): a manifest for anything else is refused without creating an actor.
                let recorded = matches!(self.host.state.lease(&lease), Ok(Some(_)));
                if !self.owners.contains_key(&lease) && recorded {
                    self.owner(lease);
                }
                let Some(owner) = self.owners.get(&lease) else {
                    let _ = reply.send(Err(GatewayError::NotFound(format!(
                        "lease {} is not (or no longer) with this provider",
                        lease_key(&lease)
                    ))));
                    return;
                };
                let _ = owner.send(LeaseCommand::Manifest { group, reply });
            }
            Command::Overdue {
                lease,
                timeout_ms,
                reply,
            } => {
                let owner = self.owner(lease);
                let _ = owner.send(LeaseCommand::Overdue { timeout_ms, reply });
            }
            Command::Close { lease, why, done } => {
                // Out of the map first: no later message can reach this lease's actor, which
                // ends after the teardown.
                let owner = self.owner(lease).clone();
                self.owners.remove(&lease);
                let _ = owner.send(LeaseCommand::Close { why, done });
            }
            Command::Refresh {
                start_stopped,
                done,
            } => self.refresh(start_stopped, done).await,
            Command::Owned { reply } => {
                let mut all: Vec<LeaseId> = self.owners.keys().copied().collect();
                all.sort();
                let _ = reply.send(all);
            }
        }
    }

    async fn refresh(&mut self, start_stopped: bool, done: oneshot::Sender<RefreshReport>) {
        let listed_at = Instant::now();
        let mut statuses: BTreeMap<LeaseId, DeploymentStatus> =
            match self.host.backend.statuses().await {
                Ok(all) => all.into_iter().map(|s| (s.lease, s)).collect(),
                Err(e) => {
                    warn!("refresh: listing the engine: {e}");
                    let _ = done.send(RefreshReport::default());
                    return;
                }
            };
        let mut answers = Vec::with_capacity(self.owners.len());
        for (lease, owner) in &self.owners {
            let (tx, rx) = oneshot::channel();
            let status = statuses.remove(lease);
            if owner
                .send(LeaseCommand::Refresh {
                    status,
                    listed_at,
                    start_stopped,
                    done: tx,
                })
                .is_ok()
            {
                answers.push(rx);
            }
        }
        // The answers are collected off the supervisor, which goes on with its mailbox.
        tokio::spawn(async move {
            let mut report = RefreshReport::default();
            for answer in answers {
                match answer.await {
                    Ok(Refreshed::Routed) => report.routed += 1,
                    Ok(Refreshed::Redeployed) => {
                        report.routed += 1;
                        report.redeployed += 1;
                    }
                    Ok(Refreshed::Failed) => report.failed += 1,
                    Ok(Refreshed::Waiting) | Err(_) => {}
                }
            }
            let _ = done.send(report);
        });
    }
}

/// The one owner of a lease's workload.
struct LeaseActor {
    host: Arc<LeaseHost>,
    lease: LeaseId,
    /// Past its manifest deadline and being closed: manifests are refused.
    closing: bool,
    /// When its last deploy finished (a manifest, or a refresh that deployed again).
    deployed_at: Option<Instant>,
}

impl LeaseActor {
    async fn run(mut self, mut mailbox: mpsc::UnboundedReceiver<LeaseCommand>) {
        while let Some(command) = mailbox.recv().await {
            match command {
                LeaseCommand::Manifest { group, reply } => {
                    let result = if self.closing {
                        Err(GatewayError::Conflict(
                            "the lease is being closed: its manifest did not come in time".into(),
                        ))
                    } else {
                        self.host.deploy_manifest(&self.lease, group).await
                    };
                    self.deployed_at = Some(Instant::now());
                    let _ = reply.send(result);
                }
                LeaseCommand::Overdue { timeout_ms, reply } => {
                    if !self.closing {
                        self.closing = match self.host.state.lease(&self.lease) {
                            Ok(Some(rec)) => {
                                rec.manifest.is_none()
                                    && now_ms().saturating_sub(rec.created_ms) >= timeout_ms
                            }
                            _ => false,
                        };
                    }
                    let _ = reply.send(self.closing);
                }
                LeaseCommand::Refresh {
                    status,
                    listed_at,
                    start_stopped,
                    done,
                } => {
                    // A listing that began before this lease's last deploy finished may show
                    // it half made (containers created, no address yet): the deploy's own
                    // status set the routes since, and the next refresh brings news.
                    if self.deployed_at.is_some_and(|at| listed_at < at) {
                        let _ = done.send(Refreshed::Routed);
                        continue;
                    }
                    let refreshed = self
                        .host
                        .refresh_lease(&self.lease, status, start_stopped)
                        .await;
                    if refreshed == Refreshed::Redeployed {
                        self.deployed_at = Some(Instant::now());
                    }
                    let _ = done.send(refreshed);
                }
                LeaseCommand::Close { why, done } => {
                    self.host.lease_closed(&self.lease, &why).await;
                    let _ = done.send(());
                    return;
                }
            }
        }
    }
}
