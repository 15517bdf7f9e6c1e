//! The ingress (feature `server`): how tenants' users reach the services of a lease.
//!
//! - [`serve_http`]: a plain-HTTP reverse proxy. It reads the `Host` header of each request,
//!   looks it up in the [`RouteTable`] (`http_targets`), and forwards the request to one of the
//!   service's replicas, round-robin, streaming bodies both ways. `Upgrade` requests (WebSocket)
//!   are passed through: after the replica answers 101 the two connections are joined. An
//!   unknown host gets 404, a replica that refuses the connection gets the next one and, when
//!   none accepts, the client gets 502.
//! - [`PortForwarder`]: a socket on the provider's host for every `PortRoute` (global
//!   non-HTTP ports). A TCP port pipes each connection to a replica (round-robin); a UDP port
//!   relays datagrams through a session per client address (see [`udp`] for how sessions are
//!   made, ended and bounded). It follows the table by itself: [`PortForwarder::start`] watches
//!   [`RouteTable::changes`], so the daemon only edits the table; [`PortForwarder::sync`] does
//!   one round by hand and reports bind errors. When a route goes, its socket closes and its
//!   open connections and sessions are cut.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use kumo_sdl::manifest::Proto;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};

use crate::routes::RouteTable;

pub mod udp;

pub use udp::UdpLimits;

/// How long to wait for a replica to accept a connection before trying the next.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the ingress could not start listening.
#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    /// A port could not be bound.
    #[error(
        "cannot listen on {addr}: {source}; is another program using it? Pick a free port range in the provider's config"
    )]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// What the operating system said.
        source: std::io::Error,
    },
}

type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// Serves the HTTP reverse proxy on `listener` until `shutdown` completes.
pub async fn serve_http(
    listener: TcpListener,
    table: RouteTable,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let next = Arc::new(AtomicUsize::new(0));
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!("ingress accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => return Ok(()),
        };
        let table = table.clone();
        let next = next.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let (table, next) = (table.clone(), next.clone());
                async move { Ok::<_, Infallible>(proxy(req, &table, &next, peer).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .with_upgrades();
            if let Err(e) = conn.await {
                tracing::debug!(%peer, "ingress connection ended: {e}");
            }
        });
    }
}

fn text(status: StatusCode, message: String) -> Response<ProxyBody> {
    let mut response = Response::new(
        Full::new(Bytes::from(message))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Connects to one of `targets`, starting at the round-robin position and trying each once.
async fn connect_any(targets: &[SocketAddr], next: &AtomicUsize) -> Result<TcpStream, String> {
    let start = next.fetch_add(1, Ordering::Relaxed);
    let mut failures = Vec::new();
    for i in 0..targets.len() {
        let target = targets[(start + i) % targets.len()];
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => failures.push(format!("{target}: {e}")),
            Err(_) => failures.push(format!("{target}: no answer within {CONNECT_TIMEOUT:?}")),
        }
    }
    Err(if failures.is_empty() {
        "the service has no running replica".into()
    } else {
        failures.join("; ")
    })
}

/// Headers that belong to one connection, not to the request (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 7] = [
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
];

fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // Headers the Connection header names are hop-by-hop too.
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !(s.is_empty() || (keep_upgrade && s == "upgrade")))
        .collect();
    for name in named.iter().map(String::as_str).chain(HOP_BY_HOP) {
        headers.remove(name);
    }
    if !keep_upgrade {
        headers.remove(header::CONNECTION);
        headers.remove(header::UPGRADE);
    }
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
}

async fn proxy(
    mut req: Request<Incoming>,
    table: &RouteTable,
    next: &AtomicUsize,
    peer: SocketAddr,
) -> Response<ProxyBody> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let Some(targets) = table.http_targets(&host) else {
        return text(
            StatusCode::NOT_FOUND,
            format!("no service is served at host {host:?} on this provider\n"),
        );
    };
    let upstream = match connect_any(&targets, next).await {
        Ok(stream) => stream,
        Err(why) => {
            tracing::info!(%host, "ingress: no replica accepted: {why}");
            return text(
                StatusCode::BAD_GATEWAY,
                format!("the service at {host} did not accept the connection: {why}\n"),
            );
        }
    };
    let (mut sender, conn) =
        match hyper::client::conn::http1::handshake(TokioIo::new(upstream)).await {
            Ok(pair) => pair,
            Err(e) => {
                return text(
                    StatusCode::BAD_GATEWAY,
                    format!("the service at {host}: {e}\n"),
                );
            }
        };
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!("ingress upstream connection ended: {e}");
        }
    });

    let upgrade = is_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    strip_hop_by_hop(req.headers_mut(), upgrade);
    let headers = req.headers_mut();
    let forwarded_for = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(earlier) => format!("{earlier}, {}", peer.ip()),
        None => peer.ip().to_string(),
    };
    if let Ok(value) = HeaderValue::from_str(&forwarded_for) {
        headers.insert("x-forwarded-for", value);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    // An HTTP/1 client connection sends origin-form targets.
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    *req.uri_mut() = path.parse().expect("a path is a valid URI");

    let mut response = match sender.send_request(req).await {
        Ok(response) => response,
        Err(e) => {
            return text(
                StatusCode::BAD_GATEWAY,
                format!("the service at {host} failed to answer: {e}\n"),
            );
        }
    };
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client_upgrade) = client_upgrade {
            let upstream_upgrade = hyper::upgrade::on(&mut response);
            tokio::spawn(async move {
                let (Ok(client), Ok(upstream)) = tokio::join!(client_upgrade, upstream_upgrade)
                else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(
                    &mut TokioIo::new(client),
                    &mut TokioIo::new(upstream),
                )
                .await;
            });
        }
    } else {
        strip_hop_by_hop(response.headers_mut(), false);
    }
    response.map(|body| body.boxed())
}

/// Forwards the provider's host ports to replicas, following the [`RouteTable`].
#[derive(Clone)]
pub struct PortForwarder {
    inner: Arc<Forwarder>,
}

struct Forwarder {
    table: RouteTable,
    bind: IpAddr,
    next: Arc<AtomicUsize>,
    udp_limits: UdpLimits,
    /// The forwarder-wide bound on UDP sessions, shared by every UDP port.
    udp_slots: Arc<Semaphore>,
    /// External port → its protocol and task (TCP: the accept loop; UDP: the relay). Aborting
    /// the task closes the socket and cuts its connections or sessions.
    listeners: tokio::sync::Mutex<BTreeMap<u16, (Proto, JoinHandle<()>)>>,
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        for (_, task) in self.listeners.get_mut().values() {
            task.abort();
        }
    }
}

impl PortForwarder {
    /// A forwarder for `table` that will listen on `bind` (usually `0.0.0.0`). Nothing listens
    /// until [`PortForwarder::sync`] or [`PortForwarder::start`].
    pub fn new(table: RouteTable, bind: IpAddr) -> PortForwarder {
        PortForwarder::with_udp_limits(table, bind, UdpLimits::default())
    }

    /// [`PortForwarder::new`] with other bounds on UDP sessions than the defaults.
    pub fn with_udp_limits(
        table: RouteTable,
        bind: IpAddr,
        udp_limits: UdpLimits,
    ) -> PortForwarder {
        PortForwarder {
            inner: Arc::new(Forwarder {
                table,
                bind,
                next: Arc::default(),
                udp_limits,
                udp_slots: Arc::new(Semaphore::new(udp_limits.sessions_total)),
                listeners: tokio::sync::Mutex::new(BTreeMap::new()),
            }),
        }
    }

    /// Makes the sockets match the table once: binds the ports of new routes (TCP or UDP),
    /// closes those whose route is gone. A port that cannot be bound is reported (the others
    /// are still opened) and tried again at the next sync.
    pub async fn sync(&self) -> Result<(), Vec<IngressError>> {
        let wanted: BTreeMap<u16, Proto> = self
            .inner
            .table
            .port_routes()
            .into_iter()
            .map(|r| (r.external_port, r.proto))
            .collect();
        let mut listeners = self.inner.listeners.lock().await;
        listeners.retain(|port, (proto, task)| {
            let keep = wanted.get(port) == Some(proto) && !task.is_finished();
            if !keep {
                task.abort();
                tracing::info!(port, proto = proto.as_str(), "port forward closed");
            }
            keep
        });
        let mut errors = Vec::new();
        for (&port, &proto) in &wanted {
            if listeners.contains_key(&port) {
                continue;
            }
            let addr = SocketAddr::new(self.inner.bind, port);
            let table = self.inner.table.clone();
            let task = match proto {
                Proto::Tcp => TcpListener::bind(addr).await.map(|listener| {
                    tokio::spawn(accept_loop(listener, port, table, self.inner.next.clone()))
                }),
                Proto::Udp => UdpSocket::bind(addr).await.map(|socket| {
                    let (limits, slots) = (self.inner.udp_limits, self.inner.udp_slots.clone());
                    tokio::spawn(udp::relay_port(socket, port, table, limits, slots))
                }),
            };
            match task {
                Ok(task) => {
                    tracing::info!(%addr, proto = proto.as_str(), "port forward open");
                    listeners.insert(port, (proto, task));
                }
                Err(source) => errors.push(IngressError::Bind { addr, source }),
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// Syncs now and after every change of the table, in a task of its own (bind errors are
    /// logged). To stop: abort the returned handle, then [`PortForwarder::close`] (or drop
    /// every clone of the forwarder).
    pub fn start(&self) -> JoinHandle<()> {
        let me = self.clone();
        let mut changes = self.inner.table.changes();
        tokio::spawn(async move {
            loop {
                changes.borrow_and_update();
                if let Err(errors) = me.sync().await {
                    for e in errors {
                        tracing::warn!("{e}");
                    }
                }
                if changes.changed().await.is_err() {
                    return;
                }
            }
        })
    }

    /// The ports forwarded now (TCP and UDP), sorted.
    pub async fn listening(&self) -> Vec<u16> {
        self.inner.listeners.lock().await.keys().copied().collect()
    }

    /// The ports forwarded now with their protocol, sorted by port.
    pub async fn forwarding(&self) -> Vec<(u16, Proto)> {
        let listeners = self.inner.listeners.lock().await;
        listeners
            .iter()
            .map(|(&port, &(proto, _))| (port, proto))
            .collect()
    }

    /// Closes every socket and its connections and sessions (until the next sync).
    pub async fn close(&self) {
        for (_, (_, task)) in std::mem::take(&mut *self.inner.listeners.lock().await) {
            task.abort();
        }
    }
}

async fn accept_loop(listener: TcpListener, port: u16, table: RouteTable, next: Arc<AtomicUsize>) {
    // Owned here, so aborting this task cuts every connection of the port too.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((inbound, peer)) => {
                    let (table, next) = (table.clone(), next.clone());
                    connections.spawn(async move { pipe(inbound, peer, port, &table, &next).await });
                }
                Err(e) => {
                    tracing::warn!(port, "port forward accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn pipe(
    mut inbound: TcpStream,
    peer: SocketAddr,
    port: u16,
    table: &RouteTable,
    next: &AtomicUsize,
) {
    let Some(targets) = table.port_targets(port, Proto::Tcp) else {
        return;
    };
    match connect_any(&targets, next).await {
        Ok(mut upstream) => {
            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut upstream).await;
        }
        Err(why) => tracing::info!(port, %peer, "port forward: no replica accepted: {why}"),
    }
}

impl std::fmt::Debug for PortForwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortForwarder")
            .field("bind", &self.inner.bind)
            .finish_non_exhaustive()
    }
}
