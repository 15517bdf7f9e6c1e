//! The gateway's HTTPS API (feature `server`): axum routes over rustls, paths as Akash's.
//!
//! | route | scope | answer |
//! | --- | --- | --- |
//! | `PUT /deployment/{dseq}/manifest` | `send-manifest` | 204; body: a `Manifest` as JSON, at most [`GatewayConfig::max_manifest_bytes`] |
//! | `GET /lease/{dseq}/{gseq}/{oseq}/status` | `status` | `LeaseStatusView` |
//! | `GET /lease/{dseq}/{gseq}/{oseq}/logs?follow=&tail=&service=` | `logs` | `LogLine`s: WebSocket text messages when upgraded, else NDJSON |
//! | `GET /lease/{dseq}/{gseq}/{oseq}/shell?service=&replica=&tty=&stdin=&cmd=…` | `shell` | WebSocket, framed as [`crate::shell`] |
//! | `GET /lease/{dseq}/{gseq}/{oseq}/events` | `events` | `WorkloadEvent`s, WebSocket or NDJSON |
//! | `POST /lease/{dseq}/{gseq}/{oseq}/restart?service=` | `restart` | `LeaseStatusView` after the restart (VMs rebooted, containers restarted; disks kept) |
//! | `GET /status` | none | `ProviderStatusView` |
//!
//! Every request but `/status` carries `Authorization: Bearer <token>` ([`crate::auth`]). The
//! handlers only parse and authorize: a token names the tenant, [`GatewayBackend::lease`] says
//! whether the tenant owns the lease, the backend does the work. Errors are JSON
//! `{"error":{"code":"…","message":"…"}}` (see [`ApiError`]). Each request is logged with
//! its method, path (never the query or headers, so no token or command line) and status.
//!
//! ```no_run
//! # async fn run(backend: std::sync::Arc<dyn kumo_gateway::GatewayBackend>) -> std::io::Result<()> {
//! use kumo_gateway::{server, tls::GatewayCert};
//! let cert = GatewayCert::generate("provider.example.com").unwrap();
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:8443").await?;
//! let app = server::app(backend, server::GatewayConfig::default());
//! server::serve(listener, cert.server_config().unwrap(), app, std::future::pending()).await
//! # }
//! ```

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::ws::{
    Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection,
};
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use futures_util::stream::BoxStream;
use futures_util::{SinkExt, StreamExt};
use kumo_sdl::manifest::Manifest;
use kumo_types::{Address, LeaseId};
use kumo_workload::{ExecRequest, ExecSession, LogOptions, StdStream, WorkloadError};
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use crate::auth::{self, AuthError, Scope};
use crate::shell::Frame;
use crate::{GatewayBackend, GatewayError};

/// Settings of the API.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The largest manifest body accepted (413 above it).
    pub max_manifest_bytes: usize,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            max_manifest_bytes: 4 << 20,
        }
    }
}

#[derive(Clone)]
struct AppState {
    backend: Arc<dyn GatewayBackend>,
    config: GatewayConfig,
}

/// The router with every route; [`serve`] runs it over TLS (tests may call it directly).
pub fn app(backend: Arc<dyn GatewayBackend>, config: GatewayConfig) -> Router {
    Router::new()
        .route("/status", get(provider_status))
        .route("/metrics", get(metrics))
        .route("/deployment/{dseq}/manifest", put(put_manifest))
        .route("/lease/{dseq}/{gseq}/{oseq}/status", get(lease_status))
        .route("/lease/{dseq}/{gseq}/{oseq}/logs", get(logs))
        .route("/lease/{dseq}/{gseq}/{oseq}/shell", get(shell))
        .route("/lease/{dseq}/{gseq}/{oseq}/events", get(events))
        .route("/lease/{dseq}/{gseq}/{oseq}/restart", post(restart))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such route: see docs/gateway.md",
            )
        })
        .layer(middleware::from_fn(trace_request))
        .with_state(AppState { backend, config })
}

/// Accepts connections on `listener`, does the TLS handshake with `tls` and serves `app` over
/// HTTP/1.1 (with upgrades, for WebSockets), until `shutdown` completes. Connections already
/// open when it does are left to finish on their own.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!("gateway accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => return Ok(()),
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let tls =
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, "gateway TLS handshake failed: {e}");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "gateway TLS handshake timed out");
                        return;
                    }
                };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .with_upgrades();
            if let Err(e) = conn.await {
                tracing::debug!(%peer, "gateway connection ended: {e}");
            }
        });
    }
}

async fn trace_request(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let started = Instant::now();
    let response = next.run(req).await;
    tracing::info!(
        %method,
        %path,
        status = response.status().as_u16(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "gateway request"
    );
    response
}

/// An error answer: `{"error":{"code":"…","message":"…"}}` with its HTTP status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
}

/// The JSON body of an error answer.
#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: &self.message,
            },
        };
        (self.status, axum::Json(body)).into_response()
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> ApiError {
        if e.http_status() == 403 {
            ApiError::new(StatusCode::FORBIDDEN, "forbidden", e.to_string())
        } else {
            ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", e.to_string())
        }
    }
}

impl From<GatewayError> for ApiError {
    fn from(e: GatewayError) -> ApiError {
        let (status, code) = match &e {
            GatewayError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            GatewayError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            GatewayError::Invalid(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            GatewayError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            GatewayError::Gone(_) => (StatusCode::GONE, "gone"),
            GatewayError::Unavailable(_) => (StatusCode::BAD_GATEWAY, "unavailable"),
            GatewayError::Workload(w) => match w {
                WorkloadError::LeaseNotFound { .. }
                | WorkloadError::UnknownService { .. }
                | WorkloadError::UnknownReplica { .. } => (StatusCode::NOT_FOUND, "not_found"),
                WorkloadError::NotRunning { .. } => (StatusCode::CONFLICT, "conflict"),
                WorkloadError::Unsupported { .. } | WorkloadError::InvalidService { .. } => {
                    (StatusCode::BAD_REQUEST, "bad_request")
                }
                _ => (StatusCode::BAD_GATEWAY, "unavailable"),
            },
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> ApiError {
        ApiError::bad_request(format!(
            "{}: dseq, gseq and oseq are unsigned integers",
            e.body_text()
        ))
    }
}

/// The tenant a request's token speaks for, once it allows `scope`.
fn authorize(state: &AppState, headers: &HeaderMap, scope: Scope) -> Result<Address, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or(AuthError::Missing)?;
    let claims = auth::verify(token, &state.backend.provider(), auth::now_secs())?;
    claims.require(scope)?;
    Ok(claims.iss)
}

type LeasePath = Result<Path<(u64, u32, u32)>, PathRejection>;

/// The lease a request names, once its token allows `scope` and its tenant owns the lease.
async fn authorize_lease(
    state: &AppState,
    headers: &HeaderMap,
    scope: Scope,
    path: LeasePath,
) -> Result<LeaseId, ApiError> {
    let tenant = authorize(state, headers, scope)?;
    let Path((dseq, gseq, oseq)) = path?;
    Ok(state.backend.lease(&tenant, dseq, gseq, oseq).await?)
}

async fn provider_status(State(state): State<AppState>) -> Result<Response, ApiError> {
    Ok(axum::Json(state.backend.provider_status().await?).into_response())
}

async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let text = state.backend.metrics().await?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

async fn put_manifest(
    State(state): State<AppState>,
    path: Result<Path<u64>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let tenant = authorize(&state, &headers, Scope::SendManifest)?;
    let Path(dseq) = path?;
    let limit = state.config.max_manifest_bytes;
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|e| {
        if e.into_inner()
            .downcast_ref::<http_body_util::LengthLimitError>()
            .is_some()
        {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the manifest is larger than {limit} bytes"),
            )
        } else {
            ApiError::bad_request("the manifest body could not be read")
        }
    })?;
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("the body is not a manifest: {e}")))?;
    state.backend.put_manifest(&tenant, dseq, manifest).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn lease_status(
    State(state): State<AppState>,
    path: LeasePath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let lease = authorize_lease(&state, &headers, Scope::Status, path).await?;
    Ok(axum::Json(state.backend.lease_status(&lease).await?).into_response())
}

type Upgrade = Result<WebSocketUpgrade, WebSocketUpgradeRejection>;

async fn logs(
    State(state): State<AppState>,
    path: LeasePath,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    ws: Upgrade,
) -> Result<Response, ApiError> {
    let lease = authorize_lease(&state, &headers, Scope::Logs, path).await?;
    let mut opts = LogOptions::default();
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match &*key {
            "follow" => opts.follow = parse_bool("follow", &value)?,
            "tail" => {
                opts.tail = Some(value.parse().map_err(|_| {
                    ApiError::bad_request(format!("tail={value:?} is not a line count"))
                })?)
            }
            "service" if !value.is_empty() => opts.service = Some(value.into_owned()),
            "service" => {}
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown parameter {other:?}"
                )));
            }
        }
    }
    let stream = state.backend.logs(&lease, &opts).await?;
    Ok(json_stream(stream, ws))
}

async fn events(
    State(state): State<AppState>,
    path: LeasePath,
    headers: HeaderMap,
    ws: Upgrade,
) -> Result<Response, ApiError> {
    let lease = authorize_lease(&state, &headers, Scope::Events, path).await?;
    let stream = state.backend.events(&lease).await?;
    Ok(json_stream(stream, ws))
}

async fn restart(
    State(state): State<AppState>,
    path: LeasePath,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let lease = authorize_lease(&state, &headers, Scope::Restart, path).await?;
    let mut service = None;
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match &*key {
            "service" if !value.is_empty() => service = Some(value.into_owned()),
            "service" => {}
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown parameter {other:?}"
                )));
            }
        }
    }
    tracing::info!(lease = %lease, service = service.as_deref().unwrap_or("*"), "restart");
    let status = state.backend.restart(&lease, service.as_deref()).await?;
    Ok(axum::Json(status).into_response())
}

/// Sends a stream of JSON values as WebSocket text messages (when the request asked for an
/// upgrade) or as NDJSON. An error item becomes a last `{"error":{…}}` value.
fn json_stream<T: Serialize + Send + 'static>(
    stream: BoxStream<'static, Result<T, WorkloadError>>,
    ws: Upgrade,
) -> Response {
    let lines = stream.map(|item| match item {
        Ok(value) => serde_json::to_string(&value).expect("serializes"),
        Err(e) => {
            let api = ApiError::from(GatewayError::from(e));
            serde_json::to_string(&ErrorBody {
                error: ErrorDetail {
                    code: api.code,
                    message: &api.message,
                },
            })
            .expect("serializes")
        }
    });
    match ws {
        Ok(ws) => ws.on_upgrade(move |socket| async move {
            let (mut tx, mut rx) = socket.split();
            // Read (and drop) what the client sends, so its close is seen while we wait for
            // the next line of a quiet stream.
            let closed = async move { while let Some(Ok(_)) = rx.next().await {} };
            let send = async move {
                let mut lines = lines;
                while let Some(line) = lines.next().await {
                    if tx.send(Message::Text(line.into())).await.is_err() {
                        return;
                    }
                }
                let _ = tx.send(Message::Close(None)).await;
            };
            tokio::select! {
                () = send => {}
                () = closed => {}
            }
        }),
        Err(_) => {
            let body = Body::from_stream(lines.map(|mut line| {
                line.push('\n');
                Ok::<_, std::convert::Infallible>(Bytes::from(line))
            }));
            ([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response()
        }
    }
}

fn parse_bool(name: &str, value: &str) -> Result<bool, ApiError> {
    match value {
        "" | "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(ApiError::bad_request(format!(
            "{name}={value:?}: expected true or false"
        ))),
    }
}

/// `service=web&replica=0&tty=false&stdin=true&cmd=sh&cmd=-c&cmd=…` (each `cmd` one argument).
fn parse_shell_query(query: &str) -> Result<ExecRequest, ApiError> {
    let mut req = ExecRequest {
        service: String::new(),
        replica: 0,
        cmd: vec![],
        tty: false,
        stdin: true,
        env: vec![],
    };
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match &*key {
            "service" => req.service = value.into_owned(),
            "replica" => {
                req.replica = value.parse().map_err(|_| {
                    ApiError::bad_request(format!("replica={value:?} is not a replica index"))
                })?
            }
            "tty" => req.tty = parse_bool("tty", &value)?,
            "stdin" => req.stdin = parse_bool("stdin", &value)?,
            "cmd" => req.cmd.push(value.into_owned()),
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown parameter {other:?}"
                )));
            }
        }
    }
    if req.service.is_empty() {
        return Err(ApiError::bad_request("service= is required"));
    }
    if req.cmd.is_empty() {
        return Err(ApiError::bad_request(
            "cmd= is required (once per argument, e.g. cmd=sh&cmd=-c&cmd=ls)",
        ));
    }
    Ok(req)
}

async fn shell(
    State(state): State<AppState>,
    path: LeasePath,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    ws: Upgrade,
) -> Result<Response, ApiError> {
    let lease = authorize_lease(&state, &headers, Scope::Shell, path).await?;
    let req = parse_shell_query(&query.unwrap_or_default())?;
    let ws = ws.map_err(|_| {
        ApiError::bad_request("the shell is a WebSocket: send an Upgrade: websocket request")
    })?;
    // Started before the upgrade, so an unknown service or a stopped replica is an HTTP error.
    let session = state.backend.exec(&lease, &req).await?;
    tracing::info!(lease = %lease, service = %req.service, replica = req.replica, "shell session");
    Ok(ws.on_upgrade(move |socket| pump_shell(socket, session)))
}

/// Moves a shell session's bytes between the WebSocket and the command until the command ends,
/// then sends its exit code.
async fn pump_shell(socket: WebSocket, session: ExecSession) {
    let ExecSession {
        mut stdin,
        mut output,
        control,
    } = session;
    let (mut tx, mut rx) = socket.split();
    let resize = control.clone();
    let input = tokio::spawn(async move {
        while let Some(Ok(message)) = rx.next().await {
            let bytes = match message {
                Message::Binary(bytes) => bytes,
                Message::Close(_) => break,
                _ => continue,
            };
            match Frame::decode(&bytes) {
                Ok(Frame::Stdin(data)) if data.is_empty() => {
                    let _ = stdin.shutdown().await;
                }
                Ok(Frame::Stdin(data)) => {
                    // A command that closed its input just does not get the rest.
                    if stdin.write_all(&data).await.is_ok() {
                        let _ = stdin.flush().await;
                    }
                }
                Ok(Frame::Resize { columns, rows }) => {
                    if let Err(e) = resize.resize(columns, rows).await {
                        tracing::debug!("shell resize failed: {e}");
                    }
                }
                Ok(other) => tracing::debug!("ignoring a {other:?} frame from a shell client"),
                Err(e) => tracing::debug!("ignoring a shell frame: {e}"),
            }
        }
        // The client went away: end the command's input so that a shell exits.
        let _ = stdin.shutdown().await;
    });
    while let Some(chunk) = output.next().await {
        let frame = match chunk {
            Ok(out) => match out.stream {
                StdStream::Stdout => Frame::Stdout(out.bytes.to_vec()),
                StdStream::Stderr => Frame::Stderr(out.bytes.to_vec()),
            },
            Err(e) => {
                let _ = tx.send(binary(Frame::Failure(e.to_string()))).await;
                let _ = tx.send(Message::Close(None)).await;
                input.abort();
                return;
            }
        };
        if tx.send(binary(frame)).await.is_err() {
            input.abort();
            return;
        }
    }
    let last = match control.exit_code().await {
        Ok(code) => Frame::Exit(code),
        Err(e) => Frame::Failure(e.to_string()),
    };
    let _ = tx.send(binary(last)).await;
    let _ = tx.send(Message::Close(None)).await;
    input.abort();
}

fn binary(frame: Frame) -> Message {
    Message::Binary(frame.encode().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_queries_need_a_service_and_a_command() {
        let req = parse_shell_query("service=web&replica=1&tty=true&cmd=sh&cmd=-c&cmd=echo%20hi")
            .unwrap();
        assert_eq!(req.service, "web");
        assert_eq!(req.replica, 1);
        assert!(req.tty && req.stdin);
        assert_eq!(req.cmd, ["sh", "-c", "echo hi"]);
        assert!(parse_shell_query("cmd=ls").is_err());
        assert!(parse_shell_query("service=web").is_err());
        assert!(parse_shell_query("service=web&cmd=ls&replica=x").is_err());
        assert!(parse_shell_query("service=web&cmd=ls&bogus=1").is_err());
    }
}
