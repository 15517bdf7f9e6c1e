//! Host ports of a VM on its lease network: a small TCP and UDP relay in the provider's process
//! from `<forward address>:<host port>` to `<VM address>:<port>`.
//!
//! A VM in its own network namespace ([`crate::netns`]) answers on its lease-network address,
//! like a container replica; QEMU can no longer bind the host's ports. The provider still hands
//! each exposed VM port a host port ([`kumo_workload::DeployOptions::host_ports`]) and routes
//! HTTP to `127.0.0.1:<host port>`, and tenants reach SSH at `<provider>:<host port>`: this
//! relay keeps both working. It lives as long as the backend (a restarted provider starts it
//! again for the VMs it finds), so while the provider is down a VM runs but its host ports do
//! not answer.
//!
//! TCP: one task per connection, bytes copied both ways. UDP: one upstream socket per client
//! address, dropped after [`UDP_IDLE`] without traffic.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use kumo_sdl::manifest::Proto;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

use crate::VmError;
use crate::instance::Forward;

/// How long a UDP client's upstream socket is kept without traffic.
pub const UDP_IDLE: Duration = Duration::from_secs(120);

/// How long binding a host port is retried while it is in use (a relay of the same VM that is
/// being replaced releases it a moment later).
const BIND_PATIENCE: Duration = Duration::from_secs(3);

/// The relays of one VM; dropping it stops them and frees their host ports.
#[derive(Debug)]
pub struct Relays {
    /// What it relays, to tell whether a relaunched VM needs new ones.
    pub key: (IpAddr, Vec<Forward>),
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Relays {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Relays {
    /// Binds `listen:<host port>` for each forward and relays to `<target>:<guest port>`.
    pub async fn start(
        vm: &str,
        listen: IpAddr,
        target: IpAddr,
        forwards: &[Forward],
    ) -> Result<Relays, VmError> {
        let mut tasks = Vec::new();
        let stop = |tasks: &mut Vec<JoinHandle<()>>| tasks.iter().for_each(JoinHandle::abort);
        for f in forwards {
            let from = SocketAddr::new(listen, f.host_port);
            let to = SocketAddr::new(target, f.guest_port);
            let task = match f.proto {
                Proto::Tcp => bind_tcp(vm, from).await.map(|l| tokio::spawn(tcp(l, to))),
                Proto::Udp => bind_udp(vm, from)
                    .await
                    .map(|s| tokio::spawn(udp(Arc::new(s), to))),
            };
            match task {
                Ok(t) => tasks.push(t),
                Err(e) => {
                    stop(&mut tasks);
                    return Err(e);
                }
            }
        }
        Ok(Relays {
            key: (target, forwards.to_vec()),
            tasks,
        })
    }
}

fn in_use(vm: &str, from: SocketAddr, e: std::io::Error) -> VmError {
    VmError::HostPort {
        vm: vm.to_string(),
        addr: from,
        source: e,
    }
}

async fn bind_tcp(vm: &str, from: SocketAddr) -> Result<TcpListener, VmError> {
    let deadline = tokio::time::Instant::now() + BIND_PATIENCE;
    loop {
        match TcpListener::bind(from).await {
            Ok(l) => return Ok(l),
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(in_use(vm, from, e)),
        }
    }
}

async fn bind_udp(vm: &str, from: SocketAddr) -> Result<UdpSocket, VmError> {
    let deadline = tokio::time::Instant::now() + BIND_PATIENCE;
    loop {
        match UdpSocket::bind(from).await {
            Ok(s) => return Ok(s),
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(in_use(vm, from, e)),
        }
    }
}

async fn tcp(listener: TcpListener, to: SocketAddr) {
    loop {
        let Ok((mut client, _)) = listener.accept().await else {
            // Out of file descriptors and the like: wait rather than spin.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        tokio::spawn(async move {
            let Ok(mut upstream) =
                tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(to))
                    .await
                    .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
            else {
                // The VM does not answer (booting, stopped): the client sees the connection
                // closed, as it would see a refused port.
                return;
            };
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        });
    }
}

async fn udp(socket: Arc<UdpSocket>, to: SocketAddr) {
    let mut upstreams: HashMap<SocketAddr, (Arc<UdpSocket>, JoinHandle<()>)> = HashMap::new();
    let mut buf = vec![0u8; 65_536];
    loop {
        let Ok((n, client)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        upstreams.retain(|_, (_, task)| !task.is_finished());
        let up = match upstreams.entry(client) {
            std::collections::hash_map::Entry::Occupied(e) => e.get().0.clone(),
            std::collections::hash_map::Entry::Vacant(slot) => {
                let local: SocketAddr = match to {
                    SocketAddr::V4(_) => "0.0.0.0:0".parse().expect("an address"),
                    SocketAddr::V6(_) => "[::]:0".parse().expect("an address"),
                };
                let Ok(up) = UdpSocket::bind(local).await else {
                    continue;
                };
                if up.connect(to).await.is_err() {
                    continue;
                }
                let up = Arc::new(up);
                // Replies go back to the client from the host port it wrote to.
                let task = tokio::spawn({
                    let (up, socket) = (up.clone(), socket.clone());
                    async move {
                        let mut buf = vec![0u8; 65_536];
                        while let Ok(Ok(n)) =
                            tokio::time::timeout(UDP_IDLE, up.recv(&mut buf)).await
                        {
                            let _ = socket.send_to(&buf[..n], client).await;
                        }
                    }
                });
                slot.insert((up.clone(), task));
                up
            }
        };
        let _ = up.send(&buf[..n]).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn tcp_and_udp_reach_the_target_and_stop_when_dropped() {
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let echo_port = echo.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    let n = s.read(&mut buf).await.unwrap();
                    s.write_all(&buf[..n]).await.unwrap();
                });
            }
        });
        let udp_echo = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let udp_port = udp_echo.local_addr().unwrap().port();
        tokio::spawn(async move {
            let mut buf = [0u8; 64];
            while let Ok((n, from)) = udp_echo.recv_from(&mut buf).await {
                udp_echo.send_to(&buf[..n], from).await.unwrap();
            }
        });
        let free = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        };
        let (tcp_host, udp_host) = (free(), free());
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let relays = Relays::start(
            "test",
            local,
            local,
            &[
                Forward {
                    guest_port: echo_port,
                    proto: Proto::Tcp,
                    host_port: tcp_host,
                },
                Forward {
                    guest_port: udp_port,
                    proto: Proto::Udp,
                    host_port: udp_host,
                },
            ],
        )
        .await
        .unwrap();

        let mut s = TcpStream::connect(("127.0.0.1", tcp_host)).await.unwrap();
        s.write_all(b"hello").await.unwrap();
        let mut got = [0u8; 5];
        s.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello");

        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client
            .send_to(b"ping", ("127.0.0.1", udp_host))
            .await
            .unwrap();
        let mut buf = [0u8; 16];
        let (n, from) = tokio::time::timeout(Duration::from_secs(5), client.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..n], b"ping");
        assert_eq!(from.port(), udp_host, "the reply comes from the host port");

        // Dropped: the host port is free again (bound by someone else at once).
        drop(relays);
        bind_tcp("test", SocketAddr::new(local, tcp_host))
            .await
            .unwrap();
    }
}
