//! The API's request and response bodies and query strings: one definition that the server
//! (`crate::router`) writes and the client (`kumo-client`) reads. No server dependencies.
//!
//! Chain state comes as `kumo_chain`'s own types wrapped in [`AtHeight`] (`{"height": h,
//! "value": …}`: the height of the state the answer was read from); blocks, transactions and
//! events as `kumo_blockstore`'s records. Hashes and transaction bytes are lowercase hex,
//! addresses bech32 (`kumo1…`), amounts decimal strings.

use std::{fmt, str::FromStr};

use kumo_blockstore::{EventCursor, StoredEvent, TxRecord};
use kumo_types::{Address, OrderId};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use kumo_blockstore::{BlockRecord, TxCode, TxOutcome, TxSummary};
pub use kumo_chain::query::{
    AccountView, AtHeight, ChainStatus, DeploymentView, EscrowView, ProviderView,
};
pub use kumo_chain::state::{
    Bid, BidState, Decline, Deployment, DeploymentState, Lease, LeaseState, Order, OrderState,
    Provider,
};

/// Every error: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Machine-readable.
    pub code: ErrorCode,
    /// For people: what is wrong and how to fix it.
    pub message: String,
    /// For `tx_rejected`: the chain's reason (`nonce`, `wrong_chain`, `bad_signature`,
    /// `fee_too_low`, ...; see `kumo_chain::TxRejected::code`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The `code` of an error. Unknown codes (from a newer node) read as [`ErrorCode::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: a path or query parameter is malformed.
    BadRequest,
    /// 400: the body is not the JSON expected.
    InvalidJson,
    /// 400: the chain refuses the transaction (see `reason`).
    TxRejected,
    /// 400: the nonce is too far ahead of the account's next one.
    NonceGap,
    /// 409: the same transaction is already pending.
    AlreadyInMempool,
    /// 409: another pending transaction of the account has this nonce.
    NonceTaken,
    /// 409: while waited for, the transaction left the mempool without being committed (its
    /// nonce was used by another transaction, or it can no longer pay its fee).
    Dropped,
    /// 429: the account has as many pending transactions as allowed.
    AccountFull,
    /// 503: the mempool is full and the fee does not displace others.
    MempoolFull,
    /// 404: no such route or object.
    NotFound,
    /// 405: the route exists with other methods.
    MethodNotAllowed,
    /// 413: the body is larger than the node accepts.
    PayloadTooLarge,
    /// 415: the body is neither JSON nor `application/octet-stream`.
    UnsupportedMediaType,
    /// 503: the node cannot answer now (storage failure, shutting down).
    Unavailable,
    /// 500: a bug in the node.
    Internal,
    /// A code this version does not know.
    #[serde(other)]
    Other,
}

impl ErrorCode {
    /// The HTTP status the node answers with.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::BadRequest
            | ErrorCode::InvalidJson
            | ErrorCode::TxRejected
            | ErrorCode::NonceGap => 400,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::AlreadyInMempool | ErrorCode::NonceTaken | ErrorCode::Dropped => 409,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::AccountFull => 429,
            ErrorCode::Internal | ErrorCode::Other => 500,
            ErrorCode::MempoolFull | ErrorCode::Unavailable => 503,
        }
    }

    /// The code as it appears in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::TxRejected => "tx_rejected",
            ErrorCode::NonceGap => "nonce_gap",
            ErrorCode::AlreadyInMempool => "already_in_mempool",
            ErrorCode::NonceTaken => "nonce_taken",
            ErrorCode::Dropped => "dropped",
            ErrorCode::AccountFull => "account_full",
            ErrorCode::MempoolFull => "mempool_full",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
            ErrorCode::Other => "other",
        }
    }

    /// Every code, for documentation.
    pub const ALL: [ErrorCode; 15] = [
        ErrorCode::BadRequest,
        ErrorCode::InvalidJson,
        ErrorCode::TxRejected,
        ErrorCode::NonceGap,
        ErrorCode::AlreadyInMempool,
        ErrorCode::NonceTaken,
        ErrorCode::Dropped,
        ErrorCode::AccountFull,
        ErrorCode::MempoolFull,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
    ];
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `POST /v1/txs` with `Content-Type: application/json`: the signed transaction bytes in hex.
/// (Or send the raw bytes with `Content-Type: application/octet-stream`.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitTx {
    /// The signed transaction (`docs/tx-format.md`), lowercase or uppercase hex.
    #[serde(with = "kumo_blockstore::record::hex_bytes")]
    pub tx: Vec<u8>,
}

/// `POST /v1/txs` query string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitQuery {
    /// `commit`: answer once the transaction is in a block (or the timeout passed, or it left
    /// the mempool without being committed: error `dropped`).
    pub wait: Option<WaitFor>,
    /// How long to wait for `wait=commit`, in milliseconds (default 10,000, at most 60,000).
    pub timeout_ms: Option<u64>,
}

/// What `POST /v1/txs?wait=` waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitFor {
    /// Inclusion in a committed block.
    Commit,
}

/// Whether a submitted transaction is in a block yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxStatus {
    /// Admitted to the mempool, not yet in a block.
    Pending,
    /// In a committed block: see `tx.result`.
    Committed,
}

/// `POST /v1/txs`: 202 with `status: pending`, or 200 with `status: committed` and the result
/// when `?wait=commit` saw it included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitResponse {
    /// sha256 of the transaction bytes.
    #[serde(with = "kumo_blockstore::record::hex32")]
    pub hash: [u8; 32],
    /// Pending or committed.
    pub status: TxStatus,
    /// When committed: the block height.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u64>,
    /// When committed: the transaction and its outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx: Option<TxRecord>,
}

/// `POST /v1/txs/batch` body: several signed transactions, each admitted (or refused) on its
/// own, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitBatch {
    /// The signed transactions, hex (at most [`MAX_BATCH_TXS`]).
    pub txs: Vec<HexTx>,
}

/// The most transactions one `POST /v1/txs/batch` may carry.
pub const MAX_BATCH_TXS: usize = 1000;

/// A signed transaction as hex in JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct HexTx(#[serde(with = "kumo_blockstore::record::hex_bytes")] pub Vec<u8>);

/// `POST /v1/txs/batch` answer: one item per submitted transaction, in the same order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitBatchResponse {
    /// The items.
    pub results: Vec<BatchItem>,
}

/// What became of one transaction of a batch: as `POST /v1/txs` would answer it, the error
/// inline instead of as the HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchItem {
    /// sha256 of the transaction bytes.
    #[serde(with = "kumo_blockstore::record::hex32")]
    pub hash: [u8; 32],
    /// Pending, committed, or error.
    pub status: BatchItemStatus,
    /// When committed: the block height.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u64>,
    /// When committed: its place in the block and its outcome (`GET /v1/txs/{hash}` has its
    /// events too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<TxSummary>,
    /// When an error: why (the code and message `POST /v1/txs` would answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}

/// The state of one transaction of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchItemStatus {
    /// Admitted to the mempool, not yet in a block.
    Pending,
    /// In a committed block: see `tx.result`.
    Committed,
    /// Not admitted, or dropped while waited for: see `error`.
    Error,
}

/// `GET /v1/txs/{hash}`: a committed transaction and its block height.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxView {
    /// Block height.
    pub height: u64,
    /// The transaction and its outcome.
    pub tx: TxRecord,
}

/// `GET /v1/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The chain id transactions must carry.
    pub chain_id: String,
    /// Height of the last committed block (0 before the first).
    pub height: u64,
    /// Its hash.
    #[serde(with = "kumo_blockstore::record::opt_hex32")]
    pub latest_block_hash: Option<[u8; 32]>,
    /// Its timestamp, ms since the Unix epoch.
    pub latest_block_time_ms: Option<u64>,
    /// Pending transactions.
    pub mempool: MempoolStats,
    /// The node software's version.
    pub node_version: String,
}

/// Size of the mempool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MempoolStats {
    /// Transactions.
    pub txs: usize,
    /// Bytes.
    pub bytes: usize,
}

/// `GET /v1/events` query string. Without `from_height`: from the first stored event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// First height.
    pub from_height: Option<u64>,
    /// First position within `from_height` (default 0): resume with a page's `next`.
    pub from_index: Option<u32>,
    /// Most events (default 100, at most 1,000).
    pub limit: Option<usize>,
}

/// `GET /v1/events`: a page of events and where the next page starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventsPage {
    /// Events in chain order.
    pub events: Vec<StoredEvent>,
    /// Pass as `from_height`/`from_index` for the next page.
    pub next: EventCursor,
}

/// `GET /v1/events/stream` query string. Without `from_height`: only events of blocks committed
/// from now on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    /// First height to send.
    pub from_height: Option<u64>,
}

/// `GET /v1/deployments` query string.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentsQuery {
    /// Only this owner's.
    pub owner: Option<Address>,
    /// Only in this state (`active`, `closed`).
    pub state: Option<DeploymentState>,
}

/// `GET /v1/orders` query string.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrdersQuery {
    /// Only this owner's.
    pub owner: Option<Address>,
    /// Only in this state (`open`, `active`, `closed`).
    pub state: Option<OrderState>,
}

/// `GET /v1/bids` query string.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BidsQuery {
    /// Only on this order: `owner/dseq/gseq/oseq`.
    pub order: Option<OrderIdParam>,
    /// Only this provider's.
    pub provider: Option<Address>,
    /// Only in this state (`open`, `active`, `lost`, `closed`).
    pub state: Option<BidState>,
}

/// `GET /v1/declines` query string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeclinesQuery {
    /// The order: `owner/dseq/gseq/oseq`.
    pub order: OrderIdParam,
}

/// `GET /v1/leases` query string.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeasesQuery {
    /// Only this owner's.
    pub owner: Option<Address>,
    /// Only this provider's.
    pub provider: Option<Address>,
    /// Only in this state (`active`, `insufficient_funds`, `closed`).
    pub state: Option<LeaseState>,
}

/// An order id in its text form, `owner/dseq/gseq/oseq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderIdParam(pub OrderId);

impl FromStr for OrderIdParam {
    type Err = String;

    fn from_str(s: &str) -> Result<OrderIdParam, String> {
        let parts: Vec<&str> = s.split('/').collect();
        let [owner, dseq, gseq, oseq] = parts[..] else {
            return Err(format!(
                "order {s:?} is not owner/dseq/gseq/oseq (e.g. kumo1…/42/1/1)"
            ));
        };
        let num = |what: &str, v: &str| format!("order {s:?}: {what} {v:?} is not a number");
        Ok(OrderIdParam(OrderId {
            owner: owner
                .parse()
                .map_err(|e| format!("order {s:?}: owner: {e}"))?,
            dseq: dseq.parse().map_err(|_| num("dseq", dseq))?,
            gseq: gseq.parse().map_err(|_| num("gseq", gseq))?,
            oseq: oseq.parse().map_err(|_| num("oseq", oseq))?,
        }))
    }
}

impl fmt::Display for OrderIdParam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for OrderIdParam {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for OrderIdParam {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<OrderIdParam, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
