//! Errors as the API answers them: a status and `{"error": {"code", "message"}}`, whatever
//! failed (a bad parameter, an extractor's rejection, the mempool, storage, a panic).

use axum::{
    Json,
    extract::rejection::{BytesRejection, PathRejection, QueryRejection},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use kumo_blockstore::BlockStoreError;
use kumo_mempool::MempoolError;

use crate::{
    backend::SubmitError,
    types::{ErrorBody, ErrorCode, ErrorDetail},
};

/// An error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// What kind (decides the HTTP status).
    pub code: ErrorCode,
    /// For people.
    pub message: String,
    /// For `tx_rejected`: the chain's reason.
    pub reason: Option<String>,
}

impl ApiError {
    /// An error of this kind.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            reason: None,
        }
    }

    /// 400 `bad_request`.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::BadRequest, message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::NotFound, message)
    }

    /// The JSON body.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message.clone(),
                reason: self.reason.clone(),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.body())).into_response()
    }
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> ApiError {
        let message = e.to_string();
        let code = match &e {
            SubmitError::Unavailable(_) => ErrorCode::Unavailable,
            SubmitError::Mempool(m) => match m {
                MempoolError::Rejected(r) => {
                    return ApiError {
                        code: ErrorCode::TxRejected,
                        message,
                        reason: Some(r.code().into()),
                    };
                }
                MempoolError::StaleNonce { .. } => {
                    return ApiError {
                        code: ErrorCode::TxRejected,
                        message,
                        reason: Some("nonce".into()),
                    };
                }
                MempoolError::AlreadyInMempool(_) => ErrorCode::AlreadyInMempool,
                MempoolError::NonceTaken { .. } => ErrorCode::NonceTaken,
                MempoolError::NonceGap { .. } => ErrorCode::NonceGap,
                MempoolError::AccountFull { .. } => ErrorCode::AccountFull,
                MempoolError::Full { .. } => ErrorCode::MempoolFull,
            },
        };
        ApiError::new(code, message)
    }
}

impl From<BlockStoreError> for ApiError {
    fn from(e: BlockStoreError) -> ApiError {
        tracing::error!(error = %e, "block store read failed");
        ApiError::new(ErrorCode::Unavailable, e.to_string())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> ApiError {
        ApiError::bad_request(r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> ApiError {
        ApiError::bad_request(r.body_text())
    }
}

impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> ApiError {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                ErrorCode::PayloadTooLarge,
                "the body is larger than this node accepts: a transaction may be at most the chain's max_tx_bytes (see GET /v1/params)",
            )
        } else {
            ApiError::bad_request(r.body_text())
        }
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> ApiError {
        tracing::error!(error = %e, "API task failed");
        ApiError::new(
            ErrorCode::Internal,
            "the request's task failed: see the node's log",
        )
    }
}
