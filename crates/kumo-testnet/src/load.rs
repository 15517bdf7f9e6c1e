//! A load of signed transactions against a network's APIs, as clients would send it.
//!
//! Each sender is one account with its transactions signed in advance (nonces in order). Its
//! transactions go to one node (sender `i` to node `i mod n`), up to `window` of them in flight
//! at once, each with `?wait=commit`: the node answers when the block holding it is committed,
//! which is when the load counts it and how it measures its latency (first submission →
//! answer). A node that cannot be reached (killed) is left for the next one, and the
//! transaction is sent again; whether a transaction the answer was lost for got committed is
//! asked of the tx endpoint.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use kumo_client::{
    ClientError, NodeClient, Wait,
    types::{BatchItemStatus, ErrorCode, TxStatus},
};
use kumo_types::{
    Address, Coin, Msg, SecretKey,
    tx::{TxBody, sign_tx, tx_hash},
};
use tokio::sync::Semaphore;

/// A transaction signed in advance.
#[derive(Debug, Clone)]
pub struct SignedTx {
    /// Its hash.
    pub hash: [u8; 32],
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// One account's transactions, nonces `0..n` in order.
#[derive(Debug, Clone)]
pub struct Sender {
    /// The account.
    pub address: Address,
    /// Its transactions.
    pub txs: Vec<SignedTx>,
}

impl Sender {
    /// `count` sends of `1 ukumo` from `key` to `to`, nonces from `first_nonce`, paying `fee`
    /// ukumo each.
    pub fn sends(
        key: &SecretKey,
        chain_id: &str,
        to: Address,
        first_nonce: u64,
        count: usize,
        fee: u128,
    ) -> Sender {
        let txs = (0..count as u64)
            .map(|i| {
                let bytes = sign_tx(
                    key,
                    &TxBody {
                        chain_id: chain_id.into(),
                        nonce: first_nonce + i,
                        fee: Coin::new("ukumo", fee),
                        memo: String::new(),
                        msgs: vec![Msg::Send {
                            to,
                            amount: "1ukumo".parse().expect("valid coins"),
                        }],
                    },
                );
                SignedTx {
                    hash: tx_hash(&bytes),
                    bytes,
                }
            })
            .collect();
        Sender {
            address: Address::from_public_key(&key.public_key()),
            txs,
        }
    }
}

/// How the load runs.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Most transactions of one sender in flight at once (at most the mempool's nonce gap + 1).
    pub window: usize,
    /// How long one `?wait=commit` request waits before the load asks again.
    pub wait: Duration,
    /// Start no new transaction after this instant.
    pub stop_at: Option<Instant>,
    /// Give a transaction up after this long.
    pub give_up_after: Duration,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            window: 4,
            wait: Duration::from_secs(10),
            stop_at: None,
            give_up_after: Duration::from_secs(60),
        }
    }
}

/// A transaction the network reported committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// Its hash.
    pub hash: [u8; 32],
    /// Its block.
    pub height: u64,
    /// When it was first submitted.
    pub submitted: Instant,
    /// First submission → the node reported it committed.
    pub latency: Duration,
    /// Which node reported it.
    pub node: usize,
}

/// What happened to the load.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Transactions submitted (at least once).
    pub submitted: usize,
    /// Those reported committed, in the order the reports came.
    pub committed: Vec<Committed>,
    /// Those given up on, and why.
    pub failed: Vec<([u8; 32], String)>,
}

#[derive(Default)]
struct Shared {
    report: Mutex<LoadReport>,
}

/// Runs the load until every sender's transactions are committed or given up (or `stop_at`).
pub async fn run(senders: Vec<Sender>, nodes: Vec<NodeClient>, config: LoadConfig) -> LoadReport {
    assert!(!nodes.is_empty(), "a load needs at least one node");
    let shared = Arc::new(Shared::default());
    let nodes = Arc::new(nodes);
    let mut tasks = Vec::new();
    for (i, sender) in senders.into_iter().enumerate() {
        let shared = shared.clone();
        let nodes = nodes.clone();
        let config = config.clone();
        tasks.push(tokio::spawn(async move {
            send_all(sender, i % nodes.len(), nodes, config, shared).await;
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    Arc::try_unwrap(shared)
        .ok()
        .map(|s| s.report.into_inner().unwrap_or_else(|p| p.into_inner()))
        .unwrap_or_default()
}

async fn send_all(
    sender: Sender,
    node: usize,
    nodes: Arc<Vec<NodeClient>>,
    config: LoadConfig,
    shared: Arc<Shared>,
) {
    let window = Arc::new(Semaphore::new(config.window.max(1)));
    let mut inflight = Vec::new();
    for tx in sender.txs {
        if config.stop_at.is_some_and(|t| Instant::now() >= t) {
            break;
        }
        let permit = window
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let nodes = nodes.clone();
        let config = config.clone();
        let shared = shared.clone();
        inflight.push(tokio::spawn(async move {
            let outcome = submit_until_done(&tx, node, &nodes, &config).await;
            let mut r = shared.report.lock().unwrap_or_else(|p| p.into_inner());
            r.submitted += 1;
            match outcome {
                Ok(c) => r.committed.push(c),
                Err(why) => r.failed.push((tx.hash, why)),
            }
            drop(permit);
        }));
        // Let this submission reach the node before the next nonce is sent.
        tokio::task::yield_now().await;
    }
    for t in inflight {
        let _ = t.await;
    }
}

/// Asks every node, from `node` on, whether `hash` is committed.
async fn find_committed(
    hash: &[u8; 32],
    node: usize,
    nodes: &[NodeClient],
) -> Option<(u64, usize)> {
    for k in 0..nodes.len() {
        let n = (node + k) % nodes.len();
        if let Ok(view) = nodes[n].tx(hash).await {
            return Some((view.height, n));
        }
    }
    None
}

async fn submit_until_done(
    tx: &SignedTx,
    mut node: usize,
    nodes: &[NodeClient],
    config: &LoadConfig,
) -> Result<Committed, String> {
    let submitted = Instant::now();
    let done = |height: u64, node: usize| Committed {
        hash: tx.hash,
        height,
        submitted,
        latency: submitted.elapsed(),
        node,
    };
    loop {
        if submitted.elapsed() > config.give_up_after {
            return Err(format!("not committed within {:?}", config.give_up_after));
        }
        let answer = nodes[node]
            .submit(&tx.bytes, Wait::CommitWithin(config.wait))
            .await;
        match answer {
            Ok(r) if r.status == TxStatus::Committed => {
                return Ok(done(r.height.unwrap_or_default(), node));
            }
            // Still pending after the wait: ask again (it answers "already in the mempool").
            Ok(_) => {}
            Err(ClientError::Api {
                code,
                reason,
                message,
                ..
            }) => match code {
                // Sent before (a lost answer, or the wait above): find out where it is.
                ErrorCode::AlreadyInMempool | ErrorCode::NonceTaken => {
                    if let Some((h, n)) = find_committed(&tx.hash, node, nodes).await {
                        return Ok(done(h, n));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                // Its nonce is used: by this very transaction, or it can never commit.
                ErrorCode::TxRejected if reason.as_deref() == Some("nonce") => {
                    return match find_committed(&tx.hash, node, nodes).await {
                        Some((h, n)) => Ok(done(h, n)),
                        None => Err(message),
                    };
                }
                ErrorCode::MempoolFull
                | ErrorCode::AccountFull
                | ErrorCode::NonceGap
                | ErrorCode::Unavailable
                | ErrorCode::Dropped => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                _ => return Err(message),
            },
            // The node is down (or restarting): the next one.
            Err(_) => {
                node = (node + 1) % nodes.len();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// As [`run`], but each node's clients send their transactions in batches
/// (`POST /v1/txs/batch?wait=commit`): the senders of node `i` (sender `s` goes to node
/// `s mod n`) are split among `window` batching clients, and each client sends its senders' next
/// `window` transactions as one batch, the next batch once the node answers that this one is
/// committed, as a client with a queue of its own transactions would. So each sender still has
/// at most `window` transactions in flight, as with [`run`], and a transaction's latency is its
/// batch's (first submission → the answer).
/// A node that does not answer is asked again (no failover: this load is for benchmarks).
pub async fn run_batched(
    senders: Vec<Sender>,
    nodes: Vec<NodeClient>,
    config: LoadConfig,
) -> LoadReport {
    assert!(!nodes.is_empty(), "a load needs at least one node");
    let window = config.window.max(1);
    let count = nodes.len();
    let shared = Arc::new(Shared::default());
    let senders = Arc::new(senders);
    let mut tasks = Vec::new();
    for (n, client) in nodes.into_iter().enumerate() {
        for slot in 0..window {
            let mine: Vec<usize> = (0..senders.len())
                .filter(|s| s % count == n && (s / count) % window == slot)
                .collect();
            let (senders, shared, config, client) = (
                senders.clone(),
                shared.clone(),
                config.clone(),
                client.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut round = 0;
                loop {
                    if config.stop_at.is_some_and(|t| Instant::now() >= t) {
                        break;
                    }
                    let batch: Vec<&SignedTx> = mine
                        .iter()
                        .flat_map(|s| senders[*s].txs.iter().skip(round * window).take(window))
                        .collect();
                    if batch.is_empty() {
                        break;
                    }
                    for chunk in batch.chunks(kumo_client::types::MAX_BATCH_TXS) {
                        let outcome = submit_batch_until_done(chunk, n, &client, &config).await;
                        let mut r = shared.report.lock().unwrap_or_else(|p| p.into_inner());
                        r.submitted += chunk.len();
                        r.committed.extend(outcome.0);
                        r.failed.extend(outcome.1);
                    }
                    round += 1;
                }
            }));
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    Arc::try_unwrap(shared)
        .ok()
        .map(|s| s.report.into_inner().unwrap_or_else(|p| p.into_inner()))
        .unwrap_or_default()
}

/// Sends `batch` to `client` until every transaction is committed or given up: returns those
/// committed and those given up (with why).
async fn submit_batch_until_done(
    batch: &[&SignedTx],
    node: usize,
    client: &NodeClient,
    config: &LoadConfig,
) -> (Vec<Committed>, Vec<([u8; 32], String)>) {
    let submitted = Instant::now();
    let mut committed = Vec::new();
    let mut failed = Vec::new();
    let mut todo: Vec<&SignedTx> = batch.to_vec();
    while !todo.is_empty() {
        if submitted.elapsed() > config.give_up_after {
            let why = format!("not committed within {:?}", config.give_up_after);
            failed.extend(todo.iter().map(|t| (t.hash, why.clone())));
            break;
        }
        let bytes: Vec<&[u8]> = todo.iter().map(|t| t.bytes.as_slice()).collect();
        let Ok(answer) = client
            .submit_batch(&bytes, Wait::CommitWithin(config.wait))
            .await
        else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let mut again = Vec::new();
        let mut look_up = Vec::new();
        for (tx, item) in todo.iter().zip(answer.results) {
            match (item.status, item.error) {
                (BatchItemStatus::Committed, _) => committed.push(Committed {
                    hash: tx.hash,
                    height: item.height.unwrap_or_default(),
                    submitted,
                    latency: submitted.elapsed(),
                    node,
                }),
                // Still pending after the wait, or sent before (a lost answer): find out.
                (BatchItemStatus::Pending, _) => look_up.push(*tx),
                (BatchItemStatus::Error, Some(e)) => match e.code {
                    ErrorCode::AlreadyInMempool | ErrorCode::NonceTaken => look_up.push(*tx),
                    ErrorCode::TxRejected if e.reason.as_deref() == Some("nonce") => {
                        look_up.push(*tx)
                    }
                    ErrorCode::MempoolFull
                    | ErrorCode::AccountFull
                    | ErrorCode::NonceGap
                    | ErrorCode::Unavailable
                    | ErrorCode::Dropped => again.push(*tx),
                    _ => failed.push((tx.hash, e.message)),
                },
                (BatchItemStatus::Error, None) => failed.push((tx.hash, "no error given".into())),
            }
        }
        for tx in look_up {
            match client.tx(&tx.hash).await {
                Ok(view) => committed.push(Committed {
                    hash: tx.hash,
                    height: view.height,
                    submitted,
                    latency: submitted.elapsed(),
                    node,
                }),
                Err(_) => again.push(tx),
            }
        }
        if !again.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        todo = again;
    }
    (committed, failed)
}
