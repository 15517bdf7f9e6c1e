//! A node for tests: **a test harness, not a consensus engine.**
//!
//! [`TestNode`] puts the real parts together — the chain's [`App`] over a [`MemStore`], a
//! [`Mempool`] admitting through `App::check_tx`, a [`BlockStore`] in a temporary directory —
//! and replaces consensus with a timer: every `block_interval` it reaps the mempool, executes a
//! block, stores it, cleans the mempool and announces the height. Single process, no
//! validators, no signatures on blocks; block hashes are sha256 of the height, parent, state
//! root and transaction hashes. It implements [`NodeBackend`] so the real router serves it.
//!
//! ```no_run
//! # async fn demo() {
//! use kumo_api::testing::TestNode;
//! use kumo_chain::testkit::Actor;
//!
//! let alice = Actor::from_seed(1);
//! let node = TestNode::with_funded(&[alice.addr], "1000000000ukumo");
//! let url = node.serve().await.unwrap();  // http://127.0.0.1:PORT
//! # }
//! ```

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use kumo_blockstore::{BlockMeta, BlockRecord, BlockStore, Hash32};
use kumo_chain::{App, Genesis, MemStore, Store, genesis::GenesisBalance, testkit::CHAIN_ID};
use kumo_mempool::{Mempool, admit, readmit};
use kumo_types::Address;
use sha2::{Digest, Sha256};
use tokio::{sync::watch, task::JoinHandle};

use crate::{
    backend::{NodeBackend, SubmitError},
    types::MempoolStats,
};

/// How a [`TestNode`] runs.
#[derive(Debug, Clone)]
pub struct TestNodeConfig {
    /// The chain's genesis.
    pub genesis: Genesis,
    /// Time between blocks (empty blocks too, as a real chain).
    pub block_interval: Duration,
    /// Mempool bounds.
    pub mempool: kumo_mempool::Config,
    /// Most transactions per block.
    pub max_block_txs: usize,
    /// Most transaction bytes per block.
    pub max_block_bytes: usize,
}

impl TestNodeConfig {
    /// Defaults around `genesis`: 50 ms blocks, default mempool, 1,000 txs or 4 MiB per block.
    pub fn new(genesis: Genesis) -> TestNodeConfig {
        TestNodeConfig {
            genesis,
            block_interval: Duration::from_millis(50),
            mempool: kumo_mempool::Config::default(),
            max_block_txs: 1000,
            max_block_bytes: 4 << 20,
        }
    }
}

/// A genesis with chain id `kumo_chain::testkit::CHAIN_ID`, default parameters, and `coins` for
/// each of `accounts`.
pub fn genesis(accounts: &[Address], coins: &str) -> Genesis {
    Genesis {
        chain_id: CHAIN_ID.into(),
        initial_height: 0,
        params: Default::default(),
        balances: accounts
            .iter()
            .map(|a| GenesisBalance {
                address: *a,
                coins: coins.parse().expect("valid coins"),
            })
            .collect(),
    }
}

/// The node's parts, shared by the block timer and the API.
pub struct TestBackend {
    chain_id: String,
    app: RwLock<App<MemStore>>,
    mempool: Mutex<Mempool>,
    blocks: BlockStore,
    height: watch::Sender<u64>,
    txs_committed: AtomicU64,
    parent: Mutex<Hash32>,
    max_block_txs: usize,
    max_block_bytes: usize,
}

impl std::fmt::Debug for TestBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestBackend")
            .field("chain_id", &self.chain_id)
            .field("height", &*self.height.borrow())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl TestBackend {
    /// Makes one block from the mempool, as the timer does; returns its height.
    pub fn make_block(&self) -> u64 {
        let txs = lock(&self.mempool).reap(self.max_block_txs, self.max_block_bytes);
        let mut app = self.app.write().unwrap_or_else(|p| p.into_inner());
        let height = app.height() + 1;
        let result = app
            .execute_block(height, &txs)
            .expect("the timer makes blocks in height order");
        let mut parent = lock(&self.parent);
        let mut h = Sha256::new();
        h.update(height.to_be_bytes());
        h.update(*parent);
        h.update(result.root);
        for t in &txs {
            h.update(kumo_types::tx::tx_hash(t));
        }
        let hash: Hash32 = h.finalize().into();
        let time_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let record = BlockRecord::from_execution(
            BlockMeta {
                height,
                hash,
                parent: *parent,
                time_ms,
                proposer: [0; 32],
                state_root: result.root,
            },
            &txs,
            &result.txs,
            &result.end_events,
        );
        self.blocks
            .put_block(&record)
            .expect("the test node's block store accepts its blocks");
        *parent = hash;
        {
            let mut pool = lock(&self.mempool);
            let hashes: Vec<Hash32> = record.txs.iter().map(|t| t.hash).collect();
            pool.remove_committed(&hashes);
            pool.recheck_admitted(|a| readmit(&app, a));
        }
        drop(app);
        self.txs_committed
            .fetch_add(txs.len() as u64, Ordering::Relaxed);
        self.height.send_replace(height);
        height
    }
}

impl NodeBackend for TestBackend {
    fn chain_id(&self) -> String {
        self.chain_id.clone()
    }

    fn submit(&self, tx: Vec<u8>) -> Result<Hash32, SubmitError> {
        let app = self.app.read().unwrap_or_else(|p| p.into_inner());
        Ok(lock(&self.mempool).insert(tx, |b| admit(&app, b))?)
    }

    fn blocks(&self) -> &BlockStore {
        &self.blocks
    }

    fn with_state<R>(&self, f: impl FnOnce(&dyn Store) -> R) -> R {
        let app = self.app.read().unwrap_or_else(|p| p.into_inner());
        f(app.store())
    }

    fn committed(&self) -> watch::Receiver<u64> {
        self.height.subscribe()
    }

    fn mempool_stats(&self) -> MempoolStats {
        let pool = lock(&self.mempool);
        MempoolStats {
            txs: pool.len(),
            bytes: pool.bytes(),
        }
    }

    fn mempool_contains(&self, hash: &Hash32) -> bool {
        lock(&self.mempool).contains(hash)
    }

    fn txs_committed(&self) -> u64 {
        self.txs_committed.load(Ordering::Relaxed)
    }
}

/// A running test node: the block timer, and the API servers started with
/// [`TestNode::serve`]. Dropping it stops them.
pub struct TestNode {
    backend: Arc<TestBackend>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    // Last: the block store's file lives here.
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for TestNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestNode")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl TestNode {
    /// Starts a node (within a tokio runtime): genesis, then a block every `block_interval`.
    pub fn start(config: TestNodeConfig) -> TestNode {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let blocks =
            BlockStore::open(dir.path().join("blocks.redb")).expect("a fresh block store opens");
        let app = App::init_genesis(MemStore::new(), &config.genesis).expect("a valid genesis");
        let backend = Arc::new(TestBackend {
            chain_id: config.genesis.chain_id.clone(),
            height: watch::Sender::new(app.height()),
            app: RwLock::new(app),
            mempool: Mutex::new(Mempool::new(config.mempool)),
            blocks,
            txs_committed: AtomicU64::new(0),
            parent: Mutex::new([0; 32]),
            max_block_txs: config.max_block_txs,
            max_block_bytes: config.max_block_bytes,
        });
        let timer = {
            let backend = backend.clone();
            let every = config.block_interval;
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let b = backend.clone();
                    if tokio::task::spawn_blocking(move || b.make_block())
                        .await
                        .is_err()
                    {
                        tracing::error!("the test node's block timer failed; no more blocks");
                        return;
                    }
                }
            })
        };
        TestNode {
            backend,
            tasks: Mutex::new(vec![timer]),
            _dir: dir,
        }
    }

    /// A node whose genesis (see [`genesis`]) gives `coins` to each of `accounts`, with 50 ms
    /// blocks.
    pub fn with_funded(accounts: &[Address], coins: &str) -> TestNode {
        TestNode::start(TestNodeConfig::new(genesis(accounts, coins)))
    }

    /// The backend (to read state or make blocks directly).
    pub fn backend(&self) -> &Arc<TestBackend> {
        &self.backend
    }

    /// The API router over this node.
    pub fn router(&self) -> axum::Router {
        crate::router(self.backend.clone())
    }

    /// Serves the API on a free loopback port; returns its base URL (`http://127.0.0.1:PORT`).
    pub async fn serve(&self) -> std::io::Result<String> {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let router = self.router();
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!(error = %e, "test node's API server stopped");
            }
        });
        lock(&self.tasks).push(server);
        Ok(format!("http://{addr}"))
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        for t in lock(&self.tasks).drain(..) {
            t.abort();
        }
    }
}
