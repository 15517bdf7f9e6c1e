//! [`GatewayClient`] (feature `client`): the tenant's side of a provider's gateway.
//!
//! The client pins the gateway's certificate by the fingerprint in the provider's chain record
//! ([`crate::tls::pinned_client_config`]) and signs a fresh token for every call, with only the
//! scope that call needs and a lifetime of [`TOKEN_LIFETIME_SECS`], so a token that leaks is
//! worth little. Streams (logs, events, shell) use WebSockets; the HTTP answers of the gateway
//! become typed [`ClientError`]s that say which status came back and the gateway's message.
//!
//! ```no_run
//! # async fn run(fp: [u8; 32], key: kumo_types::SecretKey, provider: kumo_types::Address)
//! #     -> Result<(), kumo_gateway::client::ClientError> {
//! use kumo_gateway::client::{GatewayClient, ShellRequest};
//! let gateway = GatewayClient::new("https://provider.example.com:8443", fp, key, provider)?;
//! let status = gateway.lease_status(42, 1, 1).await?;
//! let done = gateway
//!     .shell(42, 1, 1, &ShellRequest::new("web", ["echo", "hi"]))
//!     .await?
//!     .collect()
//!     .await?;
//! assert_eq!(done.code, 0);
//! # Ok(()) }
//! ```

use std::sync::Arc;

use futures_util::stream::{BoxStream, SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use kumo_sdl::manifest::Manifest;
use kumo_types::{Address, SecretKey};
use kumo_workload::{LogLine, LogOptions, WorkloadEvent};
use reqwest::Url;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use crate::auth::{self, Scope};
use crate::shell::Frame;
use crate::tls::pinned_client_config;
use crate::types::{LeaseStatusView, ProviderStatusView};

/// How long each token the client mints is valid.
pub const TOKEN_LIFETIME_SECS: u64 = 120;

/// What a gateway call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The host URI is not an `https://` URL.
    #[error("bad gateway URI {0:?}: expected https://host:port")]
    BadUri(String),
    /// No connection (refused, DNS, or TLS: e.g. the certificate does not match the pin).
    #[error("cannot reach the gateway at {uri}: {cause}")]
    Connect {
        /// The URL called.
        uri: String,
        /// Why, with every cause in the chain.
        cause: String,
    },
    /// 400: the request is wrong (e.g. the manifest's hash differs from the chain's).
    #[error("the gateway refused the request (400): {0}")]
    BadRequest(String),
    /// 401: the token was refused (expired, forged, for another provider).
    #[error("the gateway did not accept the token (401): {0}")]
    Unauthorized(String),
    /// 403: a valid token, but not the lease's owner, or without the scope.
    #[error("forbidden (403): {0}")]
    Forbidden(String),
    /// 404: no such lease, service or replica with this provider.
    #[error("not found (404): {0}")]
    NotFound(String),
    /// 409: the lease's state does not allow this.
    #[error("conflict (409): {0}")]
    Conflict(String),
    /// 410: the lease closed; only its logs may still be read.
    #[error("gone (410): {0}")]
    Gone(String),
    /// 413: the manifest is too large.
    #[error("too large (413): {0}")]
    PayloadTooLarge(String),
    /// 502: the provider's engine or chain connection failed.
    #[error("the provider could not do it (502): {0}")]
    BadGateway(String),
    /// Any other status.
    #[error("the gateway answered {status}: {message}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The gateway's message.
        message: String,
    },
    /// A shell session failed before its command ended.
    #[error("the shell session failed: {0}")]
    ShellFailed(String),
    /// An answer this client does not understand.
    #[error("unexpected answer from the gateway: {0}")]
    Protocol(String),
}

impl ClientError {
    /// The HTTP status the gateway answered with, when that is what failed.
    pub fn status(&self) -> Option<u16> {
        Some(match self {
            ClientError::BadRequest(_) => 400,
            ClientError::Unauthorized(_) => 401,
            ClientError::Forbidden(_) => 403,
            ClientError::NotFound(_) => 404,
            ClientError::Conflict(_) => 409,
            ClientError::Gone(_) => 410,
            ClientError::PayloadTooLarge(_) => 413,
            ClientError::BadGateway(_) => 502,
            ClientError::Status { status, .. } => *status,
            _ => return None,
        })
    }

    /// The error for an HTTP error answer (`body` is the gateway's JSON error, or anything).
    fn from_answer(status: u16, body: &[u8]) -> ClientError {
        let message = match serde_json::from_slice::<ErrorBody>(body) {
            Ok(e) => e.error.message,
            Err(_) => String::from_utf8_lossy(body).trim().to_owned(),
        };
        match status {
            400 => ClientError::BadRequest(message),
            401 => ClientError::Unauthorized(message),
            403 => ClientError::Forbidden(message),
            404 => ClientError::NotFound(message),
            409 => ClientError::Conflict(message),
            410 => ClientError::Gone(message),
            413 => ClientError::PayloadTooLarge(message),
            502 => ClientError::BadGateway(message),
            status => ClientError::Status { status, message },
        }
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
}

/// `error: cause: cause…`, so that the reason of a TLS failure is not lost.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A client of one provider's gateway, acting for one tenant.
#[derive(Clone)]
pub struct GatewayClient {
    base: Url,
    http: reqwest::Client,
    tls: Arc<rustls::ClientConfig>,
    key: SecretKey,
    provider: Address,
}

impl std::fmt::Debug for GatewayClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayClient")
            .field("base", &self.base.as_str())
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}

/// A command to run in a replica (`GET /lease/…/shell`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellRequest {
    /// The service.
    pub service: String,
    /// The replica's index.
    pub replica: u32,
    /// The program and its arguments.
    pub cmd: Vec<String>,
    /// Run it on a terminal (output comes as stdout only; resize works).
    pub tty: bool,
    /// Give it a standard input.
    pub stdin: bool,
}

impl ShellRequest {
    /// `cmd` in replica 0 of `service`, without a terminal, with stdin.
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(service: &str, cmd: I) -> Self {
        ShellRequest {
            service: service.into(),
            replica: 0,
            cmd: cmd.into_iter().map(Into::into).collect(),
            tty: false,
            stdin: true,
        }
    }
}

impl GatewayClient {
    /// A client for the gateway at `host_uri` (the provider's `https://…` URI from its chain
    /// record) whose certificate has SHA-256 `fingerprint`, signing as `key` for `provider`.
    pub fn new(
        host_uri: &str,
        fingerprint: [u8; 32],
        key: SecretKey,
        provider: Address,
    ) -> Result<GatewayClient, ClientError> {
        let base = Url::parse(host_uri).map_err(|_| ClientError::BadUri(host_uri.into()))?;
        if base.scheme() != "https" || base.host().is_none() {
            return Err(ClientError::BadUri(host_uri.into()));
        }
        let tls = pinned_client_config(fingerprint);
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured((*tls).clone())
            .http1_only()
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| ClientError::Connect {
                uri: host_uri.into(),
                cause: chain(&e),
            })?;
        Ok(GatewayClient {
            base,
            http,
            tls,
            key,
            provider,
        })
    }

    /// The tenant this client acts for.
    pub fn tenant(&self) -> Address {
        Address::from_public_key(&self.key.public_key())
    }

    fn token(&self, scope: Scope) -> String {
        auth::mint(
            &self.key,
            self.provider,
            &[scope],
            auth::now_secs(),
            TOKEN_LIFETIME_SECS,
        )
    }

    fn url(&self, path: &str) -> Url {
        self.base.join(path).expect("gateway paths are valid")
    }

    fn lease_url(&self, dseq: u64, gseq: u32, oseq: u32, what: &str) -> Url {
        self.url(&format!("/lease/{dseq}/{gseq}/{oseq}/{what}"))
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        let response = request.send().await.map_err(|e| ClientError::Connect {
            uri: e.url().map(|u| u.to_string()).unwrap_or_default(),
            cause: chain(&e),
        })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let body = response.bytes().await.unwrap_or_default();
        Err(ClientError::from_answer(status, &body))
    }

    async fn get_json<T: DeserializeOwned>(
        &self,
        url: Url,
        scope: Option<Scope>,
    ) -> Result<T, ClientError> {
        let mut request = self.http.get(url);
        if let Some(scope) = scope {
            request = request.bearer_auth(self.token(scope));
        }
        self.send(request)
            .await?
            .json()
            .await
            .map_err(|e| ClientError::Protocol(chain(&e)))
    }

    /// Sends the manifest of deployment `dseq` (`PUT /deployment/{dseq}/manifest`).
    pub async fn put_manifest(&self, dseq: u64, manifest: &Manifest) -> Result<(), ClientError> {
        let request = self
            .http
            .put(self.url(&format!("/deployment/{dseq}/manifest")))
            .bearer_auth(self.token(Scope::SendManifest))
            .json(manifest);
        self.send(request).await.map(drop)
    }

    /// The lease's status, URIs and forwarded ports.
    pub async fn lease_status(
        &self,
        dseq: u64,
        gseq: u32,
        oseq: u32,
    ) -> Result<LeaseStatusView, ClientError> {
        self.get_json(
            self.lease_url(dseq, gseq, oseq, "status"),
            Some(Scope::Status),
        )
        .await
    }

    /// Restarts the lease's replicas of `service`, or of every service when `None`
    /// (`POST /lease/…/restart`): VMs are rebooted with their disks kept, containers restarted.
    /// Returns the status right after (replicas may still be booting).
    pub async fn restart(
        &self,
        dseq: u64,
        gseq: u32,
        oseq: u32,
        service: Option<&str>,
    ) -> Result<LeaseStatusView, ClientError> {
        let mut url = self.lease_url(dseq, gseq, oseq, "restart");
        if let Some(service) = service {
            url.query_pairs_mut().append_pair("service", service);
        }
        let request = self.http.post(url).bearer_auth(self.token(Scope::Restart));
        self.send(request)
            .await?
            .json()
            .await
            .map_err(|e| ClientError::Protocol(chain(&e)))
    }

    /// The provider's public status (no token).
    pub async fn provider_status(&self) -> Result<ProviderStatusView, ClientError> {
        self.get_json(self.url("/status"), None).await
    }

    /// Opens a WebSocket to `url` with a token for `scope`; an HTTP error answer becomes its
    /// [`ClientError`].
    async fn websocket(&self, mut url: Url, scope: Scope) -> Result<Ws, ClientError> {
        url.set_scheme("wss").expect("https becomes wss");
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| ClientError::BadUri(format!("{url}: {e}")))?;
        let bearer = format!("Bearer {}", self.token(scope));
        request.headers_mut().insert(
            "authorization",
            bearer.parse().expect("a token is a valid header value"),
        );
        let connector = Connector::Rustls(self.tls.clone());
        match tokio_tungstenite::connect_async_tls_with_config(request, None, true, Some(connector))
            .await
        {
            Ok((ws, _)) => Ok(ws),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                let status = response.status().as_u16();
                Err(ClientError::from_answer(
                    status,
                    response.body().as_deref().unwrap_or_default(),
                ))
            }
            Err(e) => Err(ClientError::Connect {
                uri: url.to_string(),
                cause: chain(&e),
            }),
        }
    }

    /// JSON values sent as WebSocket text messages, until the gateway closes.
    async fn json_stream<T: DeserializeOwned + Send + 'static>(
        &self,
        url: Url,
        scope: Scope,
    ) -> Result<BoxStream<'static, Result<T, ClientError>>, ClientError> {
        let ws = self.websocket(url, scope).await?;
        Ok(ws
            .take_while(|m| std::future::ready(!matches!(m, Ok(Message::Close(_)))))
            .filter_map(|m| async move {
                match m {
                    Ok(Message::Text(text)) => Some(decode_item(text.as_bytes())),
                    Ok(_) => None,
                    Err(e) => Some(Err(ClientError::Protocol(chain(&e)))),
                }
            })
            .boxed())
    }

    /// The lease's log lines; with `opts.follow` the stream goes on with new lines until it is
    /// dropped.
    pub async fn logs(
        &self,
        dseq: u64,
        gseq: u32,
        oseq: u32,
        opts: &LogOptions,
    ) -> Result<BoxStream<'static, Result<LogLine, ClientError>>, ClientError> {
        let mut url = self.lease_url(dseq, gseq, oseq, "logs");
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("follow", if opts.follow { "true" } else { "false" });
            if let Some(tail) = opts.tail {
                query.append_pair("tail", &tail.to_string());
            }
            if let Some(service) = &opts.service {
                query.append_pair("service", service);
            }
        }
        self.json_stream(url, Scope::Logs).await
    }

    /// What happens to the lease's replicas from now on.
    pub async fn events(
        &self,
        dseq: u64,
        gseq: u32,
        oseq: u32,
    ) -> Result<BoxStream<'static, Result<WorkloadEvent, ClientError>>, ClientError> {
        self.json_stream(self.lease_url(dseq, gseq, oseq, "events"), Scope::Events)
            .await
    }

    /// Starts a command in a replica of the lease.
    pub async fn shell(
        &self,
        dseq: u64,
        gseq: u32,
        oseq: u32,
        req: &ShellRequest,
    ) -> Result<ShellSession, ClientError> {
        let mut url = self.lease_url(dseq, gseq, oseq, "shell");
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("service", &req.service)
                .append_pair("replica", &req.replica.to_string())
                .append_pair("tty", if req.tty { "true" } else { "false" })
                .append_pair("stdin", if req.stdin { "true" } else { "false" });
            for arg in &req.cmd {
                query.append_pair("cmd", arg);
            }
        }
        let (sink, stream) = self.websocket(url, Scope::Shell).await?.split();
        Ok(ShellSession {
            input: ShellInput { sink },
            output: ShellOutput { stream },
        })
    }
}

fn decode_item<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ClientError> {
    serde_json::from_slice(bytes).map_err(|e| match serde_json::from_slice::<ErrorBody>(bytes) {
        Ok(err) => match err.error.code.as_str() {
            "not_found" => ClientError::NotFound(err.error.message),
            "bad_request" => ClientError::BadRequest(err.error.message),
            "conflict" => ClientError::Conflict(err.error.message),
            "gone" => ClientError::Gone(err.error.message),
            _ => ClientError::BadGateway(err.error.message),
        },
        Err(_) => ClientError::Protocol(format!("{e}: {}", String::from_utf8_lossy(bytes))),
    })
}

/// A running command: write to [`ShellSession::input`], read [`ShellSession::output`] (they
/// can move to different tasks).
pub struct ShellSession {
    /// Stdin and terminal size.
    pub input: ShellInput,
    /// Output, then the exit code.
    pub output: ShellOutput,
}

impl std::fmt::Debug for ShellSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ShellSession")
    }
}

/// What a finished command wrote and its exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellResult {
    /// Everything on stdout.
    pub stdout: Vec<u8>,
    /// Everything on stderr.
    pub stderr: Vec<u8>,
    /// The exit code.
    pub code: i64,
}

impl ShellSession {
    /// Closes stdin, then reads everything until the exit code.
    pub async fn collect(mut self) -> Result<ShellResult, ClientError> {
        self.input.close_stdin().await?;
        let mut result = ShellResult {
            stdout: vec![],
            stderr: vec![],
            code: 0,
        };
        while let Some(event) = self.output.next().await {
            match event? {
                ShellEvent::Stdout(b) => result.stdout.extend(b),
                ShellEvent::Stderr(b) => result.stderr.extend(b),
                ShellEvent::Exit(code) => {
                    result.code = code;
                    return Ok(result);
                }
            }
        }
        Err(ClientError::ShellFailed(
            "the gateway closed the session before the exit code".into(),
        ))
    }
}

/// The writing half of a shell session.
pub struct ShellInput {
    sink: SplitSink<Ws, Message>,
}

impl ShellInput {
    async fn send(&mut self, frame: Frame) -> Result<(), ClientError> {
        self.sink
            .send(Message::Binary(frame.encode().into()))
            .await
            .map_err(|e| ClientError::ShellFailed(chain(&e)))
    }

    /// Sends bytes to the command's stdin.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        if bytes.is_empty() {
            return Ok(()); // an empty stdin frame means end-of-file
        }
        self.send(Frame::Stdin(bytes.to_vec())).await
    }

    /// Closes the command's stdin (end-of-file).
    pub async fn close_stdin(&mut self) -> Result<(), ClientError> {
        self.send(Frame::Stdin(vec![])).await
    }

    /// Tells the command's terminal its new size.
    pub async fn resize(&mut self, columns: u16, rows: u16) -> Result<(), ClientError> {
        self.send(Frame::Resize { columns, rows }).await
    }
}

/// What a shell session's command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShellEvent {
    /// Bytes on stdout.
    Stdout(Vec<u8>),
    /// Bytes on stderr.
    Stderr(Vec<u8>),
    /// The command ended with this code; nothing follows.
    Exit(i64),
}

/// The reading half of a shell session.
pub struct ShellOutput {
    stream: SplitStream<Ws>,
}

impl ShellOutput {
    /// The next output or the exit code; `None` after the gateway closed the session.
    pub async fn next(&mut self) -> Option<Result<ShellEvent, ClientError>> {
        loop {
            let message = match self.stream.next().await? {
                Ok(Message::Binary(bytes)) => bytes,
                Ok(Message::Close(_)) => return None,
                Ok(_) => continue,
                Err(e) => return Some(Err(ClientError::ShellFailed(chain(&e)))),
            };
            return Some(match Frame::decode(&message) {
                Ok(Frame::Stdout(b)) => Ok(ShellEvent::Stdout(b)),
                Ok(Frame::Stderr(b)) => Ok(ShellEvent::Stderr(b)),
                Ok(Frame::Exit(code)) => Ok(ShellEvent::Exit(code)),
                Ok(Frame::Failure(why)) => Err(ClientError::ShellFailed(why)),
                Ok(other) => Err(ClientError::Protocol(format!(
                    "a {other:?} frame from the gateway"
                ))),
                Err(e) => Err(ClientError::Protocol(e.to_string())),
            });
        }
    }
}
