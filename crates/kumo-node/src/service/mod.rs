//! A node as a service: one validator process (consensus, p2p) with the real mempool
//! ([`ChainPool`]), the block store (`kumo-blockstore`, fed by [`sink`]) and the JSON API
//! (`kumo-api`, served from [`NodeService`]). What `kumo node run` runs.
//!
//! ```text
//!  API ──POST /v1/txs──▶ Node::submit ─▶ check_tx ─▶ ChainPool ─▶ gossip to peers
//!                                                        │ reap
//!  consensus: propose / verify / finalize ◀──────────────┘
//!     │ capture: StoreSink::persist ─▶ BlockStore (durable before the state is)
//!     │ finalized: StoreSink::finalized ─▶ ChainPool::after_block ─▶ committed height ─▶ API waiters, event stream
//!  API reads: BlockStore (blocks, txs, events), Node::with_finalized_state (queries)
//! ```
//!
//! Storage: `data_dir/consensus/` (QMDB, marshal's archives, simplex's journal) and
//! `data_dir/blocks.redb`. The API listens once the node has loaded its state (at once on a new
//! node), so it never answers from a state older than its block store's.

mod backend;
mod metrics;
pub(crate) mod sink;

use std::{future::Future, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use commonware_runtime::{Runner as _, Spawner as _, tokio as cw_tokio};
use kumo_blockstore::{BlockStore, BlockStoreError};
use tokio::sync::watch;
use tracing::{error, info, warn};

pub use backend::NodeService;

use crate::{
    mempool::ChainPool,
    process::{ProcessConfig, RunError, spawn_node},
};
use sink::{Shared, StoreSink};

/// What a node service runs with.
pub struct ServiceConfig {
    /// The validator: key, p2p address and peers, genesis, block time and limits. Its pool and
    /// sink are replaced by the service's.
    pub process: ProcessConfig,
    /// Where the JSON API listens.
    pub api_listen: SocketAddr,
    /// Where the node keeps its data (`consensus/`, `blocks.redb`).
    pub data_dir: PathBuf,
    /// Mempool bounds.
    pub mempool: kumo_mempool::Config,
}

/// What a started node reports once it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ready {
    /// Where the API listens (the actual port when the config asked for port 0).
    pub api: SocketAddr,
    /// The committed height it starts from.
    pub height: u64,
}

/// Why the node could not run, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The data directory cannot be created.
    #[error("cannot create the data directory {path}: {error}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The block store does not open.
    #[error(
        "cannot open the block store {path}: {error} (is another node running with this home?)"
    )]
    BlockStore {
        /// The file.
        path: PathBuf,
        /// Why.
        error: BlockStoreError,
    },
    /// The API address cannot be bound.
    #[error("cannot listen for the API on {addr}: {error}: pick another [api] listen address")]
    ApiBind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        error: std::io::Error,
    },
    /// Consensus did not start or stopped on its own.
    #[error(transparent)]
    Run(#[from] RunError),
}

/// How long a graceful stop waits for open API requests (long polls, event streams) and for
/// the consensus actors.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Runs a node until `shutdown` resolves (then stops gracefully) or consensus stops. Calls
/// `on_ready` once the API serves.
pub fn run(
    config: ServiceConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_ready: impl FnOnce(Ready) + Send + 'static,
) -> Result<(), ServiceError> {
    let ServiceConfig {
        mut process,
        api_listen,
        data_dir,
        mempool,
    } = config;
    std::fs::create_dir_all(&data_dir).map_err(|error| ServiceError::DataDir {
        path: data_dir.clone(),
        error,
    })?;
    let store_path = data_dir.join("blocks.redb");
    let blocks = BlockStore::open(&store_path).map_err(|error| ServiceError::BlockStore {
        path: store_path.clone(),
        error,
    })?;
    let stored = blocks
        .latest_height()
        .map_err(|error| ServiceError::BlockStore {
            path: store_path,
            error,
        })?;
    let genesis_height = process.node.genesis.initial_height;
    let pool = Arc::new(ChainPool::new(mempool));
    let shared = Arc::new(Shared {
        blocks,
        pool: pool.clone(),
        committed: watch::Sender::new(genesis_height),
        metrics: Default::default(),
        first_height: genesis_height + 1,
    });
    process.node.pool = pool.clone();
    process.node.sink = Arc::new(StoreSink::new(shared.clone()));

    let runner = cw_tokio::Runner::new(
        cw_tokio::Config::new().with_storage_directory(data_dir.join("consensus")),
    );
    runner.start(|context| async move {
        // Bind first, so that a taken port fails before consensus starts.
        let listener = tokio::net::TcpListener::bind(api_listen)
            .await
            .map_err(|error| ServiceError::ApiBind {
                addr: api_listen,
                error,
            })?;
        let api = listener
            .local_addr()
            .map_err(|error| ServiceError::ApiBind {
                addr: api_listen,
                error,
            })?;
        let (node, mut engine) = spawn_node(&context, process)?;
        pool.attach(&node);
        let mut shutdown = Box::pin(shutdown);

        // A restarted node serves once its state is loaded: until then queries would read the
        // genesis state. (A new node has nothing to load.)
        if stored.is_some() {
            info!(
                stored,
                "loading the state; the API listens once it is loaded"
            );
            loop {
                if let Some(tip) = node.finalized_tip() {
                    shared.committed.send_if_modified(|h| {
                        let newer = tip.height > *h;
                        if newer {
                            *h = tip.height;
                        }
                        newer
                    });
                    break;
                }
                tokio::select! {
                    r = &mut engine => return Err(stopped(r)),
                    _ = &mut shutdown => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        }

        let backend = Arc::new(NodeService::new(node, shared.clone()));
        let (stop_api, api_stopped) = tokio::sync::oneshot::channel::<()>();
        let mut server = tokio::spawn(
            axum::serve(listener, kumo_api::router(backend))
                .with_graceful_shutdown(async {
                    let _ = api_stopped.await;
                })
                .into_future(),
        );
        let height = *shared.committed.borrow();
        info!(%api, height, "node API listening");
        on_ready(Ready { api, height });

        let result = tokio::select! {
            r = &mut engine => Err(stopped(r)),
            r = &mut server => {
                error!(result = ?r, "the API server stopped");
                Err(ServiceError::Run(RunError::Stopped("the API server stopped".into())))
            }
            _ = &mut shutdown => Ok(()),
        };
        info!("stopping");
        let _ = stop_api.send(());
        if tokio::time::timeout(STOP_GRACE, &mut server).await.is_err() {
            warn!("open API requests did not finish in time; closing them");
            server.abort();
        }
        if let Err(e) = context.stop(0, Some(STOP_GRACE)).await {
            warn!(error = %e, "consensus did not stop in time");
        }
        result
    })
}

fn stopped(r: Result<Result<(), crate::StartError>, commonware_runtime::Error>) -> ServiceError {
    match r {
        Ok(Ok(())) => RunError::Stopped("consensus stopped".into()).into(),
        Ok(Err(e)) => RunError::Start(e).into(),
        Err(e) => RunError::Stopped(e.to_string()).into(),
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM: pass it to [`run`] as its `shutdown`.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => info!("SIGINT received"),
                    _ = term.recv() => info!("SIGTERM received"),
                }
            }
            Err(e) => {
                warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops the node");
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
