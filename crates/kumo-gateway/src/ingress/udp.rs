//! The UDP half of the port forwarder: one task per forwarded UDP port ([`relay_port`]).
//!
//! UDP has no connections, so the forwarder makes sessions: the first datagram from a client
//! address (ip:port) opens a socket of the provider's connected to one replica (round-robin over
//! the route's targets), and every later datagram of that client goes through it; a replica's
//! answers come back on that socket and are sent to the client from the forwarded port, so the
//! client sees one peer. A session ends when:
//! - nothing crossed it either way for [`UdpLimits::idle`] (UDP has no close: silence is the end);
//! - its replica's port refused (an ICMP port-unreachable reaches the connected socket), so the
//!   client's next datagram opens a session to the next replica;
//! - its replica left the route (the table moved; the task watches [`RouteTable::changes`]);
//! - the route went: the forwarder aborts the port's task, which owns every session.
//!
//! Each session holds a file descriptor, and a client address costs a sender nothing to forge,
//! so sessions are bounded per port and across the forwarder ([`UdpLimits`]): a datagram from a
//! new client beyond a bound is dropped (clients with a session are still served) until a
//! session ends.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kumo_sdl::manifest::Proto;
use tokio::net::UdpSocket;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::{AbortHandle, JoinSet};

use crate::routes::RouteTable;

/// How long a UDP session lives with no datagram either way. Longer than the keepalives UDP
/// protocols send to hold a NAT mapping open (WireGuard 25 s, QUIC's usual 15–30 s), and
/// shorter than a socket left behind by every client that ever sent one datagram would cost.
pub const UDP_SESSION_IDLE: Duration = Duration::from_secs(60);

/// Most UDP sessions one forwarded port holds at once (one file descriptor each).
pub const UDP_SESSIONS_PER_PORT: usize = 256;

/// Most UDP sessions the whole forwarder holds at once. Kept under the common default limit of
/// 1024 open files per process, so a flood over many ports cannot starve the daemon's own
/// sockets (gateway, engine, chain).
pub const UDP_SESSIONS_TOTAL: usize = 512;

/// Room for the largest UDP payload (65,507 bytes over IPv4).
const DATAGRAM_BUFFER: usize = 65_536;

/// Bounds of the UDP forwarder; [`Default`] is the constants above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpLimits {
    /// A session with no datagram either way for this long is closed.
    pub idle: Duration,
    /// Most sessions (distinct client addresses) one port holds at once.
    pub sessions_per_port: usize,
    /// Most sessions all UDP ports of one forwarder hold at once.
    pub sessions_total: usize,
}

impl Default for UdpLimits {
    fn default() -> Self {
        UdpLimits {
            idle: UDP_SESSION_IDLE,
            sessions_per_port: UDP_SESSIONS_PER_PORT,
            sessions_total: UDP_SESSIONS_TOTAL,
        }
    }
}

/// One client's session.
struct Session {
    /// Tells this session's relay apart from an earlier one of the same client.
    id: u64,
    /// The replica it reaches.
    target: SocketAddr,
    /// Connected to `target`: only that replica's datagrams arrive on it.
    upstream: Arc<UdpSocket>,
    /// Milliseconds since the port task started, at the last datagram either way.
    last_active: Arc<AtomicU64>,
    /// The task relaying the replica's answers to the client.
    relay: AbortHandle,
    /// This session's place in the forwarder-wide bound, given back when it is dropped.
    _slot: OwnedSemaphorePermit,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.relay.abort();
    }
}

/// Relays the datagrams of forwarded UDP `port` (bound as `socket`) to the route's replicas
/// until the task is aborted. `slots` is the forwarder-wide session bound, shared by its ports.
pub(super) async fn relay_port(
    socket: UdpSocket,
    port: u16,
    table: RouteTable,
    limits: UdpLimits,
    slots: Arc<Semaphore>,
) {
    let socket = Arc::new(socket);
    let epoch = Instant::now();
    let now_ms = move || u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
    let idle_ms = u64::try_from(limits.idle.as_millis()).unwrap_or(u64::MAX);
    let mut changes = table.changes();
    changes.borrow_and_update();
    let mut targets = table.port_targets(port, Proto::Udp).unwrap_or_default();
    let mut sessions: HashMap<SocketAddr, Session> = HashMap::new();
    // Owned here: when the task is aborted, dropping the set aborts every relay.
    let mut relays: JoinSet<(SocketAddr, u64)> = JoinSet::new();
    let mut next_target = 0usize;
    let mut next_id = 0u64;
    let mut sweep = tokio::time::interval((limits.idle / 4).max(Duration::from_millis(10)));
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut buf = vec![0u8; DATAGRAM_BUFFER];
    loop {
        tokio::select! {
            received = socket.recv_from(&mut buf) => {
                let (len, client) = match received {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::debug!(port, "udp forward: receive failed: {e}");
                        continue;
                    }
                };
                if !sessions.contains_key(&client) {
                    if targets.is_empty() {
                        tracing::debug!(port, %client, "udp forward: no running replica; datagram dropped");
                        continue;
                    }
                    if sessions.len() >= limits.sessions_per_port {
                        tracing::debug!(port, %client, "udp forward: port at its session bound; datagram dropped");
                        continue;
                    }
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        tracing::debug!(port, %client, "udp forward: forwarder at its session bound; datagram dropped");
                        continue;
                    };
                    let target = targets[next_target % targets.len()];
                    next_target = next_target.wrapping_add(1);
                    let upstream = match connect(target).await {
                        Ok(s) => Arc::new(s),
                        Err(e) => {
                            tracing::warn!(port, %target, "udp forward: cannot open a socket to the replica: {e}");
                            continue;
                        }
                    };
                    next_id += 1;
                    let last_active = Arc::new(AtomicU64::new(now_ms()));
                    let relay = relays.spawn(relay_answers(
                        socket.clone(),
                        upstream.clone(),
                        client,
                        last_active.clone(),
                        now_ms,
                        next_id,
                    ));
                    tracing::debug!(port, %client, %target, "udp forward: session open");
                    sessions.insert(client, Session {
                        id: next_id,
                        target,
                        upstream,
                        last_active,
                        relay,
                        _slot: slot,
                    });
                }
                let Some(session) = sessions.get(&client) else { continue };
                session.last_active.store(now_ms(), Ordering::Relaxed);
                match session.upstream.try_send(&buf[..len]) {
                    Ok(_) => {}
                    // The socket's send queue is full: dropped, as a full queue drops UDP.
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    // Most likely an earlier datagram was refused (ICMP): the client's next
                    // datagram opens a session to the next replica.
                    Err(e) => {
                        tracing::debug!(port, %client, target = %session.target, "udp forward: session closed: {e}");
                        sessions.remove(&client);
                    }
                }
            }
            Some(done) = relays.join_next(), if !relays.is_empty() => {
                // A relay ends by itself when its replica refused; an aborted one was removed
                // already (and its client may have a newer session, which must stay).
                if let Ok((client, id)) = done
                    && sessions.get(&client).is_some_and(|s| s.id == id)
                {
                    sessions.remove(&client);
                }
            }
            _ = sweep.tick() => {
                let now = now_ms();
                sessions.retain(|_, s| {
                    now.saturating_sub(s.last_active.load(Ordering::Relaxed)) < idle_ms
                        && !s.relay.is_finished()
                });
            }
            changed = changes.changed() => {
                if changed.is_err() {
                    // The table is gone, so is every route.
                    return;
                }
                targets = table.port_targets(port, Proto::Udp).unwrap_or_default();
                sessions.retain(|_, s| targets.contains(&s.target));
            }
        }
    }
}

/// A UDP socket of the provider's, connected to `target`, ready to send.
async fn connect(target: SocketAddr) -> std::io::Result<UdpSocket> {
    let any = match target.ip() {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let socket = UdpSocket::bind(SocketAddr::new(any, 0)).await?;
    socket.connect(target).await?;
    // Tokio learns that a new socket is writable from the reactor: until then `try_send`
    // answers WouldBlock without trying, which would drop the session's first datagram.
    socket.writable().await?;
    Ok(socket)
}

/// Sends the replica's datagrams to `client` from the forwarded port, until the replica's port
/// refuses or the task is aborted. Returns the session it served.
async fn relay_answers(
    listener: Arc<UdpSocket>,
    upstream: Arc<UdpSocket>,
    client: SocketAddr,
    last_active: Arc<AtomicU64>,
    now_ms: impl Fn() -> u64,
    id: u64,
) -> (SocketAddr, u64) {
    loop {
        if let Err(e) = upstream.readable().await {
            tracing::debug!(%client, "udp forward: replica socket failed: {e}");
            return (client, id);
        }
        // Allocated per datagram rather than held: an idle session then costs a socket, not
        // 64 KiB, and there may be thousands.
        let mut buf = vec![0u8; DATAGRAM_BUFFER];
        match upstream.try_recv(&mut buf) {
            Ok(len) => {
                last_active.store(now_ms(), Ordering::Relaxed);
                if let Err(e) = listener.send_to(&buf[..len], client).await {
                    tracing::debug!(%client, "udp forward: answer not sent: {e}");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => {
                tracing::debug!(%client, "udp forward: replica refused: {e}");
                return (client, id);
            }
        }
    }
}
