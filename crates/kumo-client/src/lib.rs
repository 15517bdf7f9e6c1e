//! A typed client for the Kumo node API (`docs/node-api.md`), for the CLI and the provider.
//!
//! [`NodeClient`] has one method per route, returning the same types the node serialises
//! (`kumo_api::types`, re-exported as [`types`]), and [`NodeClient::event_stream`], a
//! WebSocket stream of events that reconnects and resumes where it left off. Errors are
//! [`ClientError`]: the node's own (`{"error": {"code", "message"}}`) keep their
//! [`ErrorCode`], so callers can tell "not found" from "nonce" from "node down".
//!
//! ```no_run
//! # async fn demo(signed_tx: Vec<u8>) -> Result<(), kumo_client::ClientError> {
//! use kumo_client::{NodeClient, Wait};
//! let node = NodeClient::new("http://127.0.0.1:26657")?;
//! let status = node.status().await?;
//! let done = node.submit(&signed_tx, Wait::Commit).await?;
//! println!("height {} committed {:?}", status.height, done.height);
//! # Ok(()) }
//! ```

mod events;
pub mod signer;

use std::time::Duration;

use kumo_blockstore::{EventCursor, Hash32};
use kumo_chain::Params;
use kumo_types::{Address, DeploymentId, OrderId};
use reqwest::{Method, RequestBuilder, header::CONTENT_TYPE};
use serde::{Serialize, de::DeserializeOwned};

pub use events::EventStream;
pub use kumo_api::types;
use kumo_api::types::{
    AccountView, AtHeight, Bid, BidsQuery, BlockRecord, Decline, DeclinesQuery, DeploymentView,
    DeploymentsQuery, ErrorBody, ErrorCode, EscrowView, EventsPage, HexTx, Lease, LeasesQuery,
    NodeStatus, Order, OrderIdParam, OrdersQuery, Provider, ProviderView, SubmitBatch,
    SubmitBatchResponse, SubmitResponse, TxView,
};

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The node URL is unusable.
    #[error("node URL {url:?} is invalid: {reason} (expected e.g. http://127.0.0.1:26657)")]
    Url {
        /// As given.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The node could not be reached, or the connection broke.
    #[error("cannot reach the node at {url}: {source} (is it running? is KUMO_NODE right?)")]
    Transport {
        /// The request's URL.
        url: String,
        /// The HTTP client's error.
        #[source]
        source: reqwest::Error,
    },
    /// The node answered with an error.
    #[error("the node refused: {message} ({code})")]
    Api {
        /// HTTP status.
        status: u16,
        /// Its code.
        code: ErrorCode,
        /// Its explanation.
        message: String,
        /// For `tx_rejected`: the chain's reason (`nonce`, `wrong_chain`, ...).
        reason: Option<String>,
    },
    /// The answer is not what this client expects.
    #[error(
        "the node at {url} answered something this client cannot read ({error}): is it a Kumo node of a compatible version?"
    )]
    Decode {
        /// The request's URL.
        url: String,
        /// The decoder's complaint.
        error: String,
    },
    /// The event stream's connection failed or closed; the stream reconnects by itself.
    #[error("event stream: {0}")]
    Stream(String),
}

impl ClientError {
    /// The node's error code, if the node answered with an error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Api { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether the node said the object does not exist.
    pub fn is_not_found(&self) -> bool {
        self.code() == Some(ErrorCode::NotFound)
    }

    /// Whether the request never got an answer from the node (no connection, a broken one, a
    /// timeout) or a proxy in front of it said it is unavailable (502, 503, 504): worth asking
    /// again, as nothing was decided.
    pub fn is_unreachable(&self) -> bool {
        match self {
            ClientError::Transport { source, .. } => {
                source.is_connect() || source.is_timeout() || source.is_request()
            }
            ClientError::Decode { error, .. } => {
                error.starts_with("HTTP 502")
                    || error.starts_with("HTTP 503")
                    || error.starts_with("HTTP 504")
            }
            _ => false,
        }
    }
}

/// How long reads ([`NodeClient`]'s GETs) and submissions ([`signer::Signer`]) keep asking an
/// unreachable node again, with backoff from [`RETRY_FIRST`] to [`RETRY_MAX`]: a node that
/// restarts, or a blip of the network, costs a few seconds instead of a failed command.
pub const UNREACHABLE_RETRY: Duration = Duration::from_secs(8);
/// The first wait before asking an unreachable node again.
pub const RETRY_FIRST: Duration = Duration::from_millis(100);
/// The longest wait between two tries.
pub const RETRY_MAX: Duration = Duration::from_secs(2);

/// Runs `call` until it returns anything but an unreachable node, or [`UNREACHABLE_RETRY`]
/// passed, with backoff. Only for requests that decide nothing twice (reads, or a submission of
/// the same signed bytes, which the chain admits at most once).
pub async fn retry_unreachable<T, F, Fut>(mut call: F) -> Result<T, ClientError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    let start = std::time::Instant::now();
    let mut wait = RETRY_FIRST;
    loop {
        match call().await {
            Err(e) if e.is_unreachable() && start.elapsed() + wait < UNREACHABLE_RETRY => {
                tracing::debug!("node unreachable ({e}): asking again in {wait:?}");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(RETRY_MAX);
            }
            other => return other,
        }
    }
}

/// Whether [`NodeClient::submit`] waits for the transaction to be in a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Return once the mempool admitted it (`status: pending`).
    No,
    /// Return once it is committed, or after the node's default timeout (10 s) with
    /// `status: pending`.
    Commit,
    /// As `Commit`, with this timeout (the node caps it at 60 s).
    CommitWithin(Duration),
}

/// A client of one node.
#[derive(Debug, Clone)]
pub struct NodeClient {
    base: String,
    http: reqwest::Client,
}

impl NodeClient {
    /// A client of the node at `url` (`http://host:port` or `https://…`, optionally with a path
    /// prefix).
    pub fn new(url: &str) -> Result<NodeClient, ClientError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ClientError::Url {
                url: url.into(),
                reason: e.to_string(),
            })?;
        NodeClient::with_http(url, http)
    }

    /// As [`NodeClient::new`], with a configured HTTP client (timeouts, proxies, roots).
    pub fn with_http(url: &str, http: reqwest::Client) -> Result<NodeClient, ClientError> {
        let parsed = reqwest::Url::parse(url).map_err(|e| ClientError::Url {
            url: url.into(),
            reason: e.to_string(),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
            return Err(ClientError::Url {
                url: url.into(),
                reason: "it must be an http:// or https:// URL with a host".into(),
            });
        }
        Ok(NodeClient {
            base: url.trim_end_matches('/').to_string(),
            http,
        })
    }

    /// The node's base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    fn url_of(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request and decodes a JSON answer (or the node's JSON error).
    async fn send<T: DeserializeOwned>(
        &self,
        req: RequestBuilder,
        url: String,
    ) -> Result<T, ClientError> {
        let resp = req.send().await.map_err(|source| ClientError::Transport {
            url: url.clone(),
            source,
        })?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|source| ClientError::Transport {
                url: url.clone(),
                source,
            })?;
        if !status.is_success() {
            return Err(match serde_json::from_slice::<ErrorBody>(&body) {
                Ok(e) => ClientError::Api {
                    status: status.as_u16(),
                    code: e.error.code,
                    message: e.error.message,
                    reason: e.error.reason,
                },
                Err(_) => ClientError::Decode {
                    url,
                    error: format!(
                        "HTTP {status} with a body that is not a Kumo error: {}",
                        String::from_utf8_lossy(&body[..body.len().min(200)])
                    ),
                },
            });
        }
        serde_json::from_slice(&body).map_err(|e| ClientError::Decode {
            url,
            error: e.to_string(),
        })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = self.url_of(path);
        retry_unreachable(|| self.send(self.http.request(Method::GET, &url), url.clone())).await
    }

    async fn get_query<T: DeserializeOwned, Q: Serialize>(
        &self,
        path: &str,
        query: &Q,
    ) -> Result<T, ClientError> {
        let url = self.url_of(path);
        retry_unreachable(|| {
            let req = self.http.request(Method::GET, &url).query(query);
            self.send(req, url.clone())
        })
        .await
    }

    /// `POST /v1/txs`: submits signed transaction bytes (sent raw, `application/octet-stream`).
    pub async fn submit(&self, tx: &[u8], wait: Wait) -> Result<SubmitResponse, ClientError> {
        let url = self.url_of("/v1/txs");
        let mut req = self
            .http
            .post(&url)
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(tx.to_vec());
        match wait {
            Wait::No => {}
            Wait::Commit => req = req.query(&[("wait", "commit")]),
            Wait::CommitWithin(t) => {
                req = req
                    .query(&[("wait", "commit")])
                    .query(&[("timeout_ms", t.as_millis().to_string())])
                    // The HTTP request itself must outlive the wait.
                    .timeout(t + Duration::from_secs(30));
            }
        }
        self.send(req, url).await
    }

    /// `POST /v1/txs/batch`: submits up to [`types::MAX_BATCH_TXS`] signed transactions in one
    /// request, each admitted or refused on its own; one item per transaction, in order (an
    /// item's error is in the item, not the result). With a wait, one wait for all of them.
    pub async fn submit_batch(
        &self,
        txs: &[&[u8]],
        wait: Wait,
    ) -> Result<SubmitBatchResponse, ClientError> {
        let url = self.url_of("/v1/txs/batch");
        let body = SubmitBatch {
            txs: txs.iter().map(|t| HexTx(t.to_vec())).collect(),
        };
        let mut req = self.http.post(&url).json(&body);
        match wait {
            Wait::No => {}
            Wait::Commit => req = req.query(&[("wait", "commit")]),
            Wait::CommitWithin(t) => {
                req = req
                    .query(&[("wait", "commit")])
                    .query(&[("timeout_ms", t.as_millis().to_string())])
                    .timeout(t + Duration::from_secs(30));
            }
        }
        self.send(req, url).await
    }

    /// `GET /v1/txs/{hash}`: a committed transaction.
    pub async fn tx(&self, hash: &Hash32) -> Result<TxView, ClientError> {
        self.get(&format!("/v1/txs/{}", hex::encode(hash))).await
    }

    /// `GET /v1/blocks/{height}`.
    pub async fn block(&self, height: u64) -> Result<BlockRecord, ClientError> {
        self.get(&format!("/v1/blocks/{height}")).await
    }

    /// `GET /v1/blocks/latest`.
    pub async fn latest_block(&self) -> Result<BlockRecord, ClientError> {
        self.get("/v1/blocks/latest").await
    }

    /// `GET /v1/status`.
    pub async fn status(&self) -> Result<NodeStatus, ClientError> {
        self.get("/v1/status").await
    }

    /// `GET /v1/accounts/{addr}`: nonce, key and balances (an unknown address has nonce 0).
    pub async fn account(&self, addr: &Address) -> Result<AtHeight<AccountView>, ClientError> {
        self.get(&format!("/v1/accounts/{addr}")).await
    }

    /// `GET /v1/deployments`.
    pub async fn deployments(
        &self,
        filter: &DeploymentsQuery,
    ) -> Result<AtHeight<Vec<DeploymentView>>, ClientError> {
        self.get_query("/v1/deployments", filter).await
    }

    /// `GET /v1/deployments/{owner}/{dseq}`.
    pub async fn deployment(
        &self,
        id: &DeploymentId,
    ) -> Result<AtHeight<DeploymentView>, ClientError> {
        self.get(&format!("/v1/deployments/{}/{}", id.owner, id.dseq))
            .await
    }

    /// `GET /v1/orders`.
    pub async fn orders(&self, filter: &OrdersQuery) -> Result<AtHeight<Vec<Order>>, ClientError> {
        self.get_query("/v1/orders", filter).await
    }

    /// `GET /v1/bids`.
    pub async fn bids(&self, filter: &BidsQuery) -> Result<AtHeight<Vec<Bid>>, ClientError> {
        self.get_query("/v1/bids", filter).await
    }

    /// `GET /v1/declines`: the providers' declines of an open order.
    pub async fn declines(&self, order: &OrderId) -> Result<AtHeight<Vec<Decline>>, ClientError> {
        self.get_query(
            "/v1/declines",
            &DeclinesQuery {
                order: OrderIdParam(*order),
            },
        )
        .await
    }

    /// `GET /v1/leases`.
    pub async fn leases(&self, filter: &LeasesQuery) -> Result<AtHeight<Vec<Lease>>, ClientError> {
        self.get_query("/v1/leases", filter).await
    }

    /// `GET /v1/providers`.
    pub async fn providers(&self) -> Result<AtHeight<Vec<Provider>>, ClientError> {
        self.get("/v1/providers").await
    }

    /// `GET /v1/providers/{addr}`.
    pub async fn provider(&self, addr: &Address) -> Result<AtHeight<ProviderView>, ClientError> {
        self.get(&format!("/v1/providers/{addr}")).await
    }

    /// `GET /v1/escrow/{owner}/{dseq}`.
    pub async fn escrow(&self, id: &DeploymentId) -> Result<AtHeight<EscrowView>, ClientError> {
        self.get(&format!("/v1/escrow/{}/{}", id.owner, id.dseq))
            .await
    }

    /// `GET /v1/params`.
    pub async fn params(&self) -> Result<AtHeight<Params>, ClientError> {
        self.get("/v1/params").await
    }

    /// `GET /v1/events`: up to `limit` events from `from` on; continue from the page's `next`.
    pub async fn events(&self, from: EventCursor, limit: usize) -> Result<EventsPage, ClientError> {
        self.get_query(
            "/v1/events",
            &kumo_api::types::EventsQuery {
                from_height: Some(from.height),
                from_index: Some(from.index),
                limit: Some(limit),
            },
        )
        .await
    }

    /// `GET /v1/events/stream`: events from `from_height` on, stored then live, over a
    /// WebSocket that reconnects (with backoff) and resumes after the last event it delivered.
    /// Connection failures come out as `Err` items and the stream goes on; drop it to stop.
    pub fn event_stream(&self, from_height: u64) -> EventStream {
        events::stream(&self.base, from_height)
    }

    /// `GET /metrics`: the Prometheus text.
    pub async fn metrics(&self) -> Result<String, ClientError> {
        let url = self.url_of("/metrics");
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|source| ClientError::Transport {
                url: url.clone(),
                source,
            })?;
        resp.text()
            .await
            .map_err(|source| ClientError::Transport { url, source })
    }

    /// `GET /openapi.json`.
    pub async fn openapi(&self) -> Result<serde_json::Value, ClientError> {
        self.get("/openapi.json").await
    }
}
