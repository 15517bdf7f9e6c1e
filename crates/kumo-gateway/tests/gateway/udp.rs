//! Forwarded UDP ports as a user meets them: real sockets on 127.0.0.1, echo servers as the
//! replicas (each tags its answers, so a test sees which replica answered), datagrams through
//! the [`PortForwarder`] while the route exists.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use kumo_gateway::ingress::{PortForwarder, UdpLimits};
use kumo_gateway::routes::{LeaseRoutes, PortRoute, RouteTable};
use kumo_sdl::manifest::Proto;
use kumo_types::LeaseId;
use tokio::net::UdpSocket;

use crate::support::{eventually, random_address};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A UDP echo replica on 127.0.0.1 that answers `<tag>:<datagram>`.
async fn echo(tag: &'static str) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let socket = UdpSocket::bind((LOCALHOST, 0)).await.unwrap();
    let addr = socket.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        while let Ok((len, from)) = socket.recv_from(&mut buf).await {
            let mut answer = format!("{tag}:").into_bytes();
            answer.extend_from_slice(&buf[..len]);
            let _ = socket.send_to(&answer, from).await;
        }
    });
    (addr, task)
}

/// A free UDP port on 127.0.0.1 (bound, then released).
async fn free_udp_port() -> u16 {
    let socket = UdpSocket::bind((LOCALHOST, 0)).await.unwrap();
    socket.local_addr().unwrap().port()
}

/// A user's socket.
async fn client() -> UdpSocket {
    UdpSocket::bind((LOCALHOST, 0)).await.unwrap()
}

/// Sends `message` to `to` from `client`; the answer and who sent it, if one comes within
/// `wait`.
async fn ask(
    client: &UdpSocket,
    to: SocketAddr,
    message: &[u8],
    wait: Duration,
) -> Option<(String, SocketAddr)> {
    client.send_to(message, to).await.ok()?;
    let mut buf = vec![0u8; 65_536];
    let (len, from) = tokio::time::timeout(wait, client.recv_from(&mut buf))
        .await
        .ok()?
        .ok()?;
    Some((String::from_utf8_lossy(&buf[..len]).into_owned(), from))
}

/// Waits until `forwarder` has bound its ports (it does in a task of its own).
async fn bound(forwarder: &PortForwarder, ports: usize) {
    eventually(10, "the forwarded UDP ports to be bound", || async {
        (forwarder.forwarding().await.len() == ports).then_some(())
    })
    .await;
}

/// Asks until an answer comes.
async fn ask_until_answered(client: &UdpSocket, to: SocketAddr, message: &str) -> String {
    let (answer, from) = eventually(10, "an answer through the forwarded UDP port", || async {
        ask(client, to, message.as_bytes(), Duration::from_millis(300)).await
    })
    .await;
    assert_eq!(from, to, "the answer must come from the forwarded port");
    answer
}

fn lease() -> LeaseId {
    LeaseId {
        owner: random_address(),
        dseq: 7,
        gseq: 1,
        oseq: 1,
        provider: random_address(),
    }
}

fn udp_route(external_port: u16, targets: Vec<SocketAddr>) -> LeaseRoutes {
    LeaseRoutes {
        http: vec![],
        ports: vec![PortRoute {
            external_port,
            proto: Proto::Udp,
            service: "echo".into(),
            targets,
        }],
    }
}

#[tokio::test]
async fn udp_datagrams_round_trip_through_the_forwarded_port_while_the_route_exists() {
    let (a, _a) = echo("a").await;
    let (b, _b) = echo("b").await;
    let table = RouteTable::new();
    let lease = lease();
    let external_port = free_udp_port().await;
    table.set_lease(lease, udp_route(external_port, vec![a, b]));
    let forwarder = PortForwarder::new(table.clone(), LOCALHOST);
    let follower = forwarder.start();
    let forwarded = SocketAddr::new(LOCALHOST, external_port);

    bound(&forwarder, 1).await;
    assert_eq!(forwarder.forwarding().await, [(external_port, Proto::Udp)]);

    // The first client's session goes to the first replica, and stays there. Every datagram
    // of these counts: the first of a session is not lost while the session opens.
    let first = client().await;
    let hello = ask(&first, forwarded, b"hello", Duration::from_secs(2)).await;
    assert_eq!(hello, Some(("a:hello".to_string(), forwarded)));
    let again = ask(&first, forwarded, b"again", Duration::from_secs(2)).await;
    assert_eq!(again.unwrap().0, "a:again");

    // A second client gets a session of its own (the next replica) and its own answers.
    let second = client().await;
    let answer = ask(&second, forwarded, b"other", Duration::from_secs(2)).await;
    assert_eq!(answer.unwrap().0, "b:other");
    let mine = ask(&first, forwarded, b"mine", Duration::from_secs(2)).await;
    assert_eq!(mine.unwrap().0, "a:mine");

    // A large datagram crosses whole.
    let big = "x".repeat(60_000);
    let answer = ask(&first, forwarded, big.as_bytes(), Duration::from_secs(2)).await;
    assert_eq!(answer.unwrap().0, format!("a:{big}"));

    // A replica that leaves the route loses its sessions: the client moves to what is left.
    table.set_lease(lease, udp_route(external_port, vec![b]));
    let moved = eventually(10, "the session to leave the removed replica", || async {
        ask(&first, forwarded, b"moved", Duration::from_millis(300))
            .await
            .filter(|(answer, _)| answer.starts_with("b:"))
    })
    .await;
    assert_eq!(moved.0, "b:moved");

    // The route goes: nothing answers on the port any more, and it is closed.
    table.remove_lease(&lease);
    eventually(10, "the forwarded UDP port to close", || async {
        forwarder.listening().await.is_empty().then_some(())
    })
    .await;
    assert!(
        ask(&first, forwarded, b"gone", Duration::from_millis(500))
            .await
            .is_none()
    );
    assert!(
        ask(
            &client().await,
            forwarded,
            b"new",
            Duration::from_millis(500)
        )
        .await
        .is_none()
    );
    // The port is free again: the forwarder no longer holds it.
    eventually(10, "the forwarded UDP port to be free", || async {
        UdpSocket::bind(forwarded).await.ok()
    })
    .await;
    follower.abort();
}

#[tokio::test]
async fn a_replica_that_refuses_does_not_hold_a_udp_client() {
    let dead = SocketAddr::new(LOCALHOST, free_udp_port().await);
    let (b, _b) = echo("b").await;
    let table = RouteTable::new();
    let external_port = free_udp_port().await;
    table.set_lease(lease(), udp_route(external_port, vec![dead, b]));
    let forwarder = PortForwarder::new(table.clone(), LOCALHOST);
    let follower = forwarder.start();
    let forwarded = SocketAddr::new(LOCALHOST, external_port);

    // The session to the dead replica ends on its refusal; a later datagram reaches `b`.
    let user = client().await;
    assert_eq!(ask_until_answered(&user, forwarded, "hi").await, "b:hi");
    follower.abort();
}

#[tokio::test]
async fn udp_sessions_are_bounded_and_expire_when_idle() {
    let (a, _a) = echo("a").await;
    let (b, _b) = echo("b").await;
    let table = RouteTable::new();
    let (port1, port2) = (free_udp_port().await, free_udp_port().await);
    table.set_lease(lease(), udp_route(port1, vec![a, b]));
    table.set_lease(lease(), udp_route(port2, vec![a]));
    let limits = UdpLimits {
        idle: Duration::from_millis(1_500),
        sessions_per_port: 1,
        sessions_total: 1,
    };
    let forwarder = PortForwarder::with_udp_limits(table.clone(), LOCALHOST, limits);
    let follower = forwarder.start();
    let (forwarded1, forwarded2) = (
        SocketAddr::new(LOCALHOST, port1),
        SocketAddr::new(LOCALHOST, port2),
    );

    bound(&forwarder, 2).await;
    let first = client().await;
    let one = ask(&first, forwarded1, b"one", Duration::from_secs(2)).await;
    assert_eq!(one.unwrap().0, "a:one");
    // Beyond the bound (of the port, and of the forwarder on another port): dropped.
    let second = client().await;
    let wait = Duration::from_millis(400);
    assert!(ask(&second, forwarded1, b"two", wait).await.is_none());
    assert!(ask(&second, forwarded2, b"two", wait).await.is_none());
    // The session holder is still served.
    let still = ask(&first, forwarded1, b"still", Duration::from_secs(2)).await;
    assert_eq!(still.unwrap().0, "a:still");

    // Once the first client falls silent, its session expires and the second is served.
    tokio::time::sleep(limits.idle + Duration::from_millis(700)).await;
    let answer = ask(&second, forwarded1, b"two", Duration::from_secs(2)).await;
    assert_eq!(answer.unwrap().0, "b:two");
    follower.abort();
}
