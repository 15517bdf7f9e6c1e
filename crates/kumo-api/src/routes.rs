//! The router and its handlers. Handlers only parse and answer: reads go to the backend's block
//! store and state (on the blocking pool, so a long scan never stalls the server), writes to its
//! mempool.

use std::{sync::Arc, time::Duration};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{
        DefaultBodyLimit, Path, Query, State,
        rejection::{BytesRejection, PathRejection, QueryRejection},
    },
    http::{HeaderMap, Method, StatusCode, header::CONTENT_TYPE},
    middleware,
    response::{IntoResponse, Response},
    routing::{MethodRouter, get, post},
};
use kumo_blockstore::{BlockRecord, EventCursor, Hash32};
use kumo_chain::{
    Params,
    query::{
        AccountView, AtHeight, BidFilter, DeploymentFilter, DeploymentView, EscrowView,
        LeaseFilter, OrderFilter, ProviderView, Queries,
    },
    state::{Bid, Decline, Lease, Order, Provider},
};
use kumo_types::{Address, DeploymentId};

use crate::{
    backend::{NodeBackend, Waited},
    error::ApiError,
    metrics::{self, Metrics},
    openapi, stream,
    types::{
        BatchItem, BatchItemStatus, BidsQuery, DeclinesQuery, DeploymentsQuery, ErrorCode,
        EventsPage, EventsQuery, LeasesQuery, MAX_BATCH_TXS, NodeStatus, OrdersQuery, SubmitBatch,
        SubmitBatchResponse, SubmitQuery, SubmitResponse, SubmitTx, TxStatus, TxView, WaitFor,
    },
};

/// How long `?wait=commit` waits without `timeout_ms`.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(10);
/// The longest `timeout_ms` honoured.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// Events per page of `GET /v1/events` without `limit`, and the most with it.
pub const EVENTS_DEFAULT_LIMIT: usize = 100;
/// The most events one page may hold.
pub const EVENTS_MAX_LIMIT: usize = 1000;

/// What every handler gets.
pub(crate) struct Api<B> {
    pub(crate) backend: Arc<B>,
    pub(crate) metrics: Metrics,
}

pub(crate) type ApiState<B> = State<Arc<Api<B>>>;

/// The router, and the (method, path) of each route in it: `/openapi.json` must list them all.
struct Routes<B> {
    router: Router<Arc<Api<B>>>,
    table: Vec<(Method, &'static str)>,
}

impl<B: NodeBackend> Routes<B> {
    fn add(mut self, method: Method, path: &'static str, route: MethodRouter<Arc<Api<B>>>) -> Self {
        self.table.push((method, path));
        self.router = self.router.route(path, route);
        self
    }
}

fn routes<B: NodeBackend>() -> Routes<B> {
    Routes {
        router: Router::new(),
        table: Vec::new(),
    }
    .add(Method::POST, "/v1/txs", post(submit::<B>))
    .add(
        Method::POST,
        "/v1/txs/batch",
        post(submit_batch::<B>).layer(DefaultBodyLimit::max(BATCH_BODY_LIMIT)),
    )
    .add(Method::GET, "/v1/txs/{hash}", get(tx::<B>))
    .add(Method::GET, "/v1/blocks/{height}", get(block::<B>))
    .add(Method::GET, "/v1/status", get(status::<B>))
    .add(Method::GET, "/v1/accounts/{addr}", get(account::<B>))
    .add(Method::GET, "/v1/deployments", get(deployments::<B>))
    .add(
        Method::GET,
        "/v1/deployments/{owner}/{dseq}",
        get(deployment::<B>),
    )
    .add(Method::GET, "/v1/orders", get(orders::<B>))
    .add(Method::GET, "/v1/bids", get(bids::<B>))
    .add(Method::GET, "/v1/declines", get(declines::<B>))
    .add(Method::GET, "/v1/leases", get(leases::<B>))
    .add(Method::GET, "/v1/providers", get(providers::<B>))
    .add(Method::GET, "/v1/providers/{addr}", get(provider::<B>))
    .add(Method::GET, "/v1/escrow/{owner}/{dseq}", get(escrow::<B>))
    .add(Method::GET, "/v1/params", get(params::<B>))
    .add(Method::GET, "/v1/events", get(events::<B>))
    .add(
        Method::GET,
        "/v1/events/stream",
        get(stream::events_stream::<B>),
    )
    .add(Method::GET, "/metrics", get(metrics::<B>))
    .add(Method::GET, "/openapi.json", get(openapi_json))
}

/// Every route the router serves, as (method, path template).
pub fn route_table<B: NodeBackend>() -> Vec<(Method, &'static str)> {
    routes::<B>().table
}

/// The largest body `POST /v1/txs/batch` accepts (8 MiB: [`MAX_BATCH_TXS`] transactions of a
/// few kilobytes, hex).
pub const BATCH_BODY_LIMIT: usize = 8 << 20;

/// The largest body accepted: a transaction of the chain's `max_tx_bytes`, hex-encoded in its
/// JSON envelope.
pub fn body_limit(max_tx_bytes: usize) -> usize {
    2 * max_tx_bytes + 1024
}

/// The node API over `backend`: every route, JSON errors for unknown routes and methods, a body
/// limit from the chain's `max_tx_bytes`, request metrics, tracing, and panics turned into 500s.
pub fn router<B: NodeBackend>(backend: Arc<B>) -> Router {
    let max_tx_bytes = backend.with_state(|s| Queries::new(s).params().value.max_tx_bytes);
    let api = Arc::new(Api {
        backend,
        metrics: Metrics::default(),
    });
    routes::<B>()
        .router
        .fallback(unknown_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit(max_tx_bytes as usize)))
        .layer(middleware::from_fn_with_state(
            api.clone(),
            metrics::track::<B>,
        ))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send>| {
                ApiError::new(
                    ErrorCode::Internal,
                    "the node hit a bug answering this request: see its log",
                )
                .into_response()
            },
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(api)
}

async fn unknown_route(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!(
        "no route {method} {}: see GET /openapi.json for the routes this node serves",
        uri.path()
    ))
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        format!(
            "{} does not take {method}: see GET /openapi.json",
            uri.path()
        ),
    )
}

/// Runs a query on the committed state, on the blocking pool.
async fn read<B: NodeBackend, T: Send + 'static>(
    api: &Api<B>,
    f: impl FnOnce(Queries<'_>) -> T + Send + 'static,
) -> Result<T, ApiError> {
    let backend = api.backend.clone();
    Ok(tokio::task::spawn_blocking(move || backend.with_state(|s| f(Queries::new(s)))).await?)
}

/// Runs a block store read on the blocking pool.
async fn blocks<B: NodeBackend, T: Send + 'static>(
    api: &Api<B>,
    f: impl FnOnce(&kumo_blockstore::BlockStore) -> Result<T, kumo_blockstore::BlockStoreError>
    + Send
    + 'static,
) -> Result<T, ApiError> {
    let backend = api.backend.clone();
    Ok(tokio::task::spawn_blocking(move || f(backend.blocks())).await??)
}

fn parse_hash(what: &str, s: &str) -> Result<Hash32, ApiError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).map_err(|e| {
        ApiError::bad_request(format!("{what} {s:?} is not 64 hex characters ({e})"))
    })?;
    Ok(out)
}

fn parse_addr(what: &str, s: &str) -> Result<Address, ApiError> {
    s.parse()
        .map_err(|e| ApiError::bad_request(format!("{what} {s:?} is not an address: {e}")))
}

fn parse_deployment(owner: &str, dseq: &str) -> Result<DeploymentId, ApiError> {
    Ok(DeploymentId {
        owner: parse_addr("owner", owner)?,
        dseq: dseq
            .parse()
            .map_err(|_| ApiError::bad_request(format!("dseq {dseq:?} is not a whole number")))?,
    })
}

/// `Some(v)` as 200, `None` as 404 with `what` named.
fn found<T>(
    at: AtHeight<Option<T>>,
    what: impl FnOnce() -> String,
) -> Result<Json<AtHeight<T>>, ApiError> {
    match at.value {
        Some(value) => Ok(Json(AtHeight {
            height: at.height,
            value,
        })),
        None => Err(ApiError::not_found(format!(
            "{} does not exist at height {}",
            what(),
            at.height
        ))),
    }
}

async fn submit<B: NodeBackend>(
    State(api): ApiState<B>,
    query: Result<Query<SubmitQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query?;
    let body = body?;
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    let tx = match content_type.as_deref() {
        Some("application/json") => {
            serde_json::from_slice::<SubmitTx>(&body)
                .map_err(|e| {
                    ApiError::new(
                        ErrorCode::InvalidJson,
                        format!(
                            "the body is not {{\"tx\": \"<hex of the signed transaction>\"}}: {e}"
                        ),
                    )
                })?
                .tx
        }
        Some("application/octet-stream") => body.to_vec(),
        other => {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                format!(
                    "Content-Type {}: send application/json ({{\"tx\": \"<hex>\"}}) or application/octet-stream (the raw bytes)",
                    other.unwrap_or("(none)")
                ),
            ));
        }
    };
    // Read before admission: an admitted transaction is in no block up to this height.
    let since = *api.backend.committed().borrow();
    let backend = api.backend.clone();
    let hash = tokio::task::spawn_blocking(move || backend.submit(tx)).await??;
    let pending = || {
        (
            StatusCode::ACCEPTED,
            Json(SubmitResponse {
                hash,
                status: TxStatus::Pending,
                height: None,
                tx: None,
            }),
        )
            .into_response()
    };
    if q.wait != Some(WaitFor::Commit) {
        return Ok(pending());
    }
    let timeout = q
        .timeout_ms
        .map_or(DEFAULT_WAIT, Duration::from_millis)
        .min(MAX_WAIT);
    match api.backend.wait_committed(hash, since, timeout).await? {
        Waited::Committed(height, tx) => Ok(Json(SubmitResponse {
            hash,
            status: TxStatus::Committed,
            height: Some(height),
            tx: Some(*tx),
        })
        .into_response()),
        Waited::Dropped => Err(ApiError::new(ErrorCode::Dropped, dropped_message(&hash))),
        Waited::TimedOut => Ok(pending()),
    }
}

/// `POST /v1/txs/batch`: each transaction admitted or refused on its own (one batch signature
/// check for all), then with `wait=commit` one wait for all of them; errors per item.
async fn submit_batch<B: NodeBackend>(
    State(api): ApiState<B>,
    query: Result<Query<SubmitQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<SubmitBatchResponse>, ApiError> {
    let Query(q) = query?;
    let body = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "the batch is larger than {BATCH_BODY_LIMIT} bytes: send fewer transactions per request"
                ),
            )
        } else {
            ApiError::from(r)
        }
    })?;
    let json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "send Content-Type application/json: {\"txs\": [\"<hex>\", …]}",
        ));
    }
    let batch: SubmitBatch = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidJson,
            format!("the body is not {{\"txs\": [\"<hex of a signed transaction>\", …]}}: {e}"),
        )
    })?;
    if batch.txs.is_empty() || batch.txs.len() > MAX_BATCH_TXS {
        return Err(ApiError::bad_request(format!(
            "a batch holds 1 to {MAX_BATCH_TXS} transactions, not {}",
            batch.txs.len()
        )));
    }
    let txs: Vec<Vec<u8>> = batch.txs.into_iter().map(|t| t.0).collect();
    let hashes: Vec<Hash32> = txs.iter().map(|t| kumo_types::tx::tx_hash(t)).collect();
    // Read before admission: an admitted transaction is in no block up to this height.
    let since = *api.backend.committed().borrow();
    let backend = api.backend.clone();
    let admitted = tokio::task::spawn_blocking(move || backend.submit_batch(txs)).await?;
    let mut items: Vec<BatchItem> = hashes
        .into_iter()
        .zip(admitted)
        .map(|(hash, r)| match r {
            Ok(_) => BatchItem {
                hash,
                status: BatchItemStatus::Pending,
                height: None,
                result: None,
                error: None,
            },
            Err(e) => BatchItem {
                hash,
                status: BatchItemStatus::Error,
                height: None,
                result: None,
                error: Some(ApiError::from(e).body().error),
            },
        })
        .collect();
    if q.wait == Some(WaitFor::Commit) {
        let timeout = q
            .timeout_ms
            .map_or(DEFAULT_WAIT, Duration::from_millis)
            .min(MAX_WAIT);
        wait_all_committed(&api, &mut items, since, timeout).await?;
    }
    Ok(Json(SubmitBatchResponse { results: items }))
}

/// Waits until every pending item is committed or dropped, or `timeout` passes: one block
/// store read for all of them after each committed block. The items were admitted when `since`
/// was the last committed height, so the look-ups skip the index of older blocks.
async fn wait_all_committed<B: NodeBackend>(
    api: &Api<B>,
    items: &mut [BatchItem],
    since: u64,
    timeout: Duration,
) -> Result<(), ApiError> {
    let mut heights = api.backend.committed();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        heights.borrow_and_update();
        let pending: Vec<usize> = (0..items.len())
            .filter(|i| items[*i].status == BatchItemStatus::Pending)
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        let hashes: Vec<Hash32> = pending.iter().map(|i| items[*i].hash).collect();
        let found = blocks(api, move |b| b.tx_summaries_since(&hashes, since)).await?;
        let mut left = Vec::new();
        for (i, found) in pending.into_iter().zip(found) {
            match found {
                Some((height, tx)) => {
                    items[i].status = BatchItemStatus::Committed;
                    items[i].height = Some(height);
                    items[i].result = Some(tx);
                }
                None => left.push(i),
            }
        }
        // Those neither committed nor pending any more were dropped (looked up once more: a
        // block may have taken them between the two looks).
        let gone: Vec<usize> = left
            .into_iter()
            .filter(|i| !api.backend.mempool_contains(&items[*i].hash))
            .collect();
        if !gone.is_empty() {
            let hashes: Vec<Hash32> = gone.iter().map(|i| items[*i].hash).collect();
            let found = blocks(api, move |b| b.tx_summaries_since(&hashes, since)).await?;
            for (i, found) in gone.into_iter().zip(found) {
                let item = &mut items[i];
                match found {
                    Some((height, tx)) => {
                        item.status = BatchItemStatus::Committed;
                        item.height = Some(height);
                        item.result = Some(tx);
                    }
                    None => {
                        item.status = BatchItemStatus::Error;
                        item.error = Some(
                            ApiError::new(ErrorCode::Dropped, dropped_message(&item.hash))
                                .body()
                                .error,
                        );
                    }
                }
            }
        }
        // Answer as soon as nothing is pending, not at the next block.
        if items.iter().all(|i| i.status != BatchItemStatus::Pending) {
            return Ok(());
        }
        match tokio::time::timeout_at(deadline, heights.changed()).await {
            Ok(Ok(())) => {}
            // Timed out, or the node is shutting down: the rest stay pending.
            Ok(Err(_)) | Err(_) => return Ok(()),
        }
    }
}

fn dropped_message(hash: &Hash32) -> String {
    format!(
        "transaction {} left the mempool without being committed: a block made it invalid (another transaction used its nonce, or it can no longer pay its fee); query the account and re-sign",
        hex::encode(hash)
    )
}

async fn tx<B: NodeBackend>(
    State(api): ApiState<B>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<TxView>, ApiError> {
    let Path(s) = path?;
    let hash = parse_hash("transaction hash", &s)?;
    match blocks(&api, move |b| b.tx(&hash)).await? {
        Some((height, tx)) => Ok(Json(TxView { height, tx })),
        None => {
            let pending = api.backend.mempool_contains(&hash);
            Err(ApiError::not_found(if pending {
                format!("transaction {s} is in the mempool, not yet in a block: retry shortly")
            } else {
                format!("no committed transaction has hash {s}")
            }))
        }
    }
}

async fn block<B: NodeBackend>(
    State(api): ApiState<B>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<BlockRecord>, ApiError> {
    let Path(s) = path?;
    let height = if s == "latest" {
        *api.backend.committed().borrow()
    } else {
        s.parse().map_err(|_| {
            ApiError::bad_request(format!("block {s:?} is neither a height nor \"latest\""))
        })?
    };
    blocks(&api, move |b| b.block(height))
        .await?
        .map(Json)
        .ok_or_else(|| {
            ApiError::not_found(format!("block {height} is not stored (not yet committed?)"))
        })
}

async fn status<B: NodeBackend>(State(api): ApiState<B>) -> Result<Json<NodeStatus>, ApiError> {
    let height = *api.backend.committed().borrow();
    let latest = blocks(&api, move |b| b.header(height)).await?;
    Ok(Json(NodeStatus {
        chain_id: api.backend.chain_id(),
        height,
        latest_block_hash: latest.as_ref().map(|b| b.hash),
        latest_block_time_ms: latest.as_ref().map(|b| b.time_ms),
        mempool: api.backend.mempool_stats(),
        node_version: env!("CARGO_PKG_VERSION").into(),
    }))
}

async fn account<B: NodeBackend>(
    State(api): ApiState<B>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<AtHeight<AccountView>>, ApiError> {
    let Path(s) = path?;
    let addr = parse_addr("address", &s)?;
    Ok(Json(read(&api, move |q| q.account(&addr)).await?))
}

async fn deployments<B: NodeBackend>(
    State(api): ApiState<B>,
    query: Result<Query<DeploymentsQuery>, QueryRejection>,
) -> Result<Json<AtHeight<Vec<DeploymentView>>>, ApiError> {
    let Query(f) = query?;
    let filter = DeploymentFilter {
        owner: f.owner,
        state: f.state,
    };
    Ok(Json(read(&api, move |q| q.deployments(&filter)).await?))
}

async fn deployment<B: NodeBackend>(
    State(api): ApiState<B>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<AtHeight<DeploymentView>>, ApiError> {
    let Path((owner, dseq)) = path?;
    let id = parse_deployment(&owner, &dseq)?;
    found(read(&api, move |q| q.deployment(&id)).await?, || {
        format!("deployment {id}")
    })
}

async fn orders<B: NodeBackend>(
    State(api): ApiState<B>,
    query: Result<Query<OrdersQuery>, QueryRejection>,
) -> Result<Json<AtHeight<Vec<Order>>>, ApiError> {
    let Query(f) = query?;
    let filter = OrderFilter {
        owner: f.owner,
        state: f.state,
    };
    Ok(Json(read(&api, move |q| q.orders(&filter)).await?))
}

async fn bids<B: NodeBackend>(
    State(api): ApiState<B>,
    query: Result<Query<BidsQuery>, QueryRejection>,
) -> Result<Json<AtHeight<Vec<Bid>>>, ApiError> {
    let Query(f) = query?;
    let filter = BidFilter {
        order: f.order.map(|o| o.0),
        provider: f.provider,
        state: f.state,
    };
    Ok(Json(read(&api, move |q| q.bids(&filter)).await?))
}

async fn declines<B: NodeBackend>(
    State(api): ApiState<B>,
    query: Result<Query<DeclinesQuery>, QueryRejection>,
) -> Result<Json<AtHeight<Vec<Decline>>>, ApiError> {
    let Query(f) = query?;
    Ok(Json(read(&api, move |q| q.declines(&f.order.0)).await?))
}

async fn leases<B: NodeBackend>(
    State(api): ApiState<B>,
    query: Result<Query<LeasesQuery>, QueryRejection>,
) -> Result<Json<AtHeight<Vec<Lease>>>, ApiError> {
    let Query(f) = query?;
    let filter = LeaseFilter {
        owner: f.owner,
        provider: f.provider,
        state: f.state,
    };
    Ok(Json(read(&api, move |q| q.leases(&filter)).await?))
}

async fn providers<B: NodeBackend>(
    State(api): ApiState<B>,
) -> Result<Json<AtHeight<Vec<Provider>>>, ApiError> {
    Ok(Json(read(&api, |q| q.providers()).await?))
}

async fn provider<B: NodeBackend>(
    State(api): ApiState<B>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<AtHeight<ProviderView>>, ApiError> {
    let Path(s) = path?;
    let addr = parse_addr("provider address", &s)?;
    found(read(&api, move |q| q.provider(&addr)).await?, || {
        format!("provider {addr}")
    })
}

async fn escrow<B: NodeBackend>(
    State(api): ApiState<B>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<AtHeight<EscrowView>>, ApiError> {
    let Path((owner, dseq)) = path?;
    let id = parse_deployment(&owner, &dseq)?;
    found(read(&api, move |q| q.escrow(&id)).await?, || {
        format!("the escrow account of deployment {id}")
    })
}

async fn params<B: NodeBackend>(
    State(api): ApiState<B>,
) -> Result<Json<AtHeight<Params>>, ApiError> {
    Ok(Json(read(&api, |q| q.params()).await?))
}

async fn events<B: NodeBackend>(
    State(api): ApiState<B>,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Json<EventsPage>, ApiError> {
    let Query(q) = query?;
    let limit = q.limit.unwrap_or(EVENTS_DEFAULT_LIMIT);
    if limit == 0 || limit > EVENTS_MAX_LIMIT {
        return Err(ApiError::bad_request(format!(
            "limit {limit} is out of range: 1 to {EVENTS_MAX_LIMIT}"
        )));
    }
    let from = EventCursor {
        height: q.from_height.unwrap_or(0),
        index: q.from_index.unwrap_or(0),
    };
    let events = blocks(&api, move |b| b.events(from, limit)).await?;
    let next = events.last().map_or(from, |e| e.next_cursor());
    Ok(Json(EventsPage { events, next }))
}

async fn metrics<B: NodeBackend>(State(api): ApiState<B>) -> Response {
    let text = api.metrics.render(&*api.backend);
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        text,
    )
        .into_response()
}

async fn openapi_json() -> Json<serde_json::Value> {
    Json(openapi::document())
}
