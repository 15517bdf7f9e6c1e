//! Through the gateway and the ingress to real containers: shell, logs, HTTP by host name and
//! forwarded TCP ports.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use futures_util::StreamExt;
use kumo_gateway::client::{ShellEvent, ShellRequest};
use kumo_gateway::ingress::{self, PortForwarder};
use kumo_gateway::routes::{HttpRoute, LeaseRoutes, PortRoute, RouteTable};
use kumo_sdl::manifest::Proto;
use kumo_workload::{Backend, LogOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{Gateway, engine, eventually, manifest, random_key, service, web};

const CHATTY: &str =
    "echo started; while [ ! -e /tmp/go ]; do sleep 0.1; done; echo after-go; sleep 3600";

#[tokio::test]
async fn shell_and_logs_reach_the_tenants_containers() {
    let Some(engine) = engine().await else { return };
    let gateway = Gateway::start_with(Some(engine)).await;
    let tenant = random_key();
    let lease = gateway.lease(&tenant);
    let client = gateway.client(&tenant);
    client
        .put_manifest(
            lease.dseq,
            &manifest(vec![service("app", &["sh", "-c", CHATTY])]),
        )
        .await
        .expect("the owner's manifest is deployed");

    let hi = client
        .shell(lease.dseq, 1, 1, &ShellRequest::new("app", ["echo", "hi"]))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!((hi.stdout.as_slice(), hi.code), (&b"hi\n"[..], 0));
    let three = client
        .shell(
            lease.dseq,
            1,
            1,
            &ShellRequest::new("app", ["sh", "-c", "echo bad >&2; exit 3"]),
        )
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!((three.stderr.as_slice(), three.code), (&b"bad\n"[..], 3));

    // Stdin goes in, the output comes back, before stdin closes.
    let mut cat = client
        .shell(lease.dseq, 1, 1, &ShellRequest::new("app", ["cat"]))
        .await
        .unwrap();
    cat.input.write(b"ping\n").await.unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(10), cat.output.next())
        .await
        .expect("cat answers")
        .unwrap()
        .unwrap();
    assert_eq!(echoed, ShellEvent::Stdout(b"ping\n".to_vec()));
    let done = cat.collect().await.unwrap();
    assert_eq!(done.code, 0);

    // An unknown service is an HTTP answer, not a broken session.
    let err = client
        .shell(lease.dseq, 1, 1, &ShellRequest::new("nope", ["true"]))
        .await
        .err()
        .unwrap();
    assert_eq!(err.status(), Some(404), "{err}");

    // Logs hold the output; follow gets what is written later.
    let lines = eventually(10, "the service's first line", || async {
        let stream = client
            .logs(lease.dseq, 1, 1, &LogOptions::default())
            .await
            .ok()?;
        let lines: Vec<String> = stream
            .filter_map(|l| async { l.ok().map(|l| l.line) })
            .collect()
            .await;
        lines.contains(&"started".to_string()).then_some(lines)
    })
    .await;
    assert_eq!(lines, ["started"]);
    let mut follow = client
        .logs(
            lease.dseq,
            1,
            1,
            &LogOptions {
                service: Some("app".into()),
                tail: Some(1),
                follow: true,
            },
        )
        .await
        .unwrap();
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(10), follow.next())
            .await
            .expect("a line within 10s")
            .expect("stream open")
            .expect("a log line")
    };
    assert_eq!(next().await.line, "started");
    let go = client
        .shell(
            lease.dseq,
            1,
            1,
            &ShellRequest::new("app", ["touch", "/tmp/go"]),
        )
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(go.code, 0);
    let line = next().await;
    assert_eq!(
        (line.service.as_str(), line.line.as_str()),
        ("app", "after-go")
    );

    // NDJSON when not upgraded (what curl gets).
    let token = kumo_gateway::auth::mint(
        &tenant,
        gateway.provider,
        &[kumo_gateway::auth::Scope::Logs],
        kumo_gateway::auth::now_secs(),
        60,
    );
    let body = gateway
        .http()
        .get(format!(
            "{}/lease/{}/1/1/logs?service=app",
            gateway.uri(),
            lease.dseq
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lines: Vec<serde_json::Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{body}");
    assert_eq!(lines[1]["line"], "after-go");
    assert_eq!(lines[1]["stream"], "stdout");
}

/// A free TCP port on 127.0.0.1 (bound, then released).
async fn free_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

/// `GET /` with `Host: host` to `addr`; the whole answer.
async fn get(addr: SocketAddr, host: &str) -> std::io::Result<String> {
    let mut stream =
        tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| std::io::Error::other("connect timed out"))??;
    stream
        .write_all(
            format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut answer))
        .await
        .map_err(|_| std::io::Error::other("read timed out"))??;
    Ok(answer)
}

#[tokio::test]
async fn the_ingress_routes_by_host_and_forwards_ports_while_the_route_exists() {
    let Some(engine) = engine().await else { return };
    let gateway = Gateway::start_with(Some(engine)).await;
    let tenant = random_key();
    let lease = gateway.lease(&tenant);
    gateway
        .client(&tenant)
        .put_manifest(lease.dseq, &manifest(vec![web("web")]))
        .await
        .unwrap();
    let docker = gateway.backend.docker.as_ref().unwrap();
    let ip = eventually(10, "the web replica's address", || async {
        let status = docker.status(&lease).await.ok()?;
        status.service("web")?.instances.first()?.ip
    })
    .await;

    let table = RouteTable::new();
    let external_port = free_port().await;
    table.set_lease(
        lease,
        LeaseRoutes {
            http: vec![HttpRoute {
                host: "web.ingress.test".into(),
                service: "web".into(),
                targets: vec![SocketAddr::new(ip, 80)],
            }],
            ports: vec![PortRoute {
                external_port,
                proto: Proto::Tcp,
                service: "web".into(),
                targets: vec![SocketAddr::new(ip, 80)],
            }],
        },
    );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_addr = listener.local_addr().unwrap();
    let proxy = tokio::spawn(ingress::serve_http(
        listener,
        table.clone(),
        std::future::pending(),
    ));
    let page = eventually(10, "the page through the proxy", || async {
        get(proxy_addr, "WEB.ingress.test:80")
            .await
            .ok()
            .filter(|p| p.contains("kumo test page"))
    })
    .await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    let unknown = get(proxy_addr, "other.ingress.test").await.unwrap();
    assert!(unknown.starts_with("HTTP/1.1 404"), "{unknown}");
    assert!(unknown.contains("other.ingress.test"), "{unknown}");

    // A host whose replica refuses: 502.
    let refused_port = free_port().await;
    let mut other = lease;
    other.dseq += 1;
    table.set_lease(
        other,
        LeaseRoutes {
            http: vec![HttpRoute {
                host: "down.ingress.test".into(),
                service: "web".into(),
                targets: vec![SocketAddr::new(
                    IpAddr::V4(Ipv4Addr::LOCALHOST),
                    refused_port,
                )],
            }],
            ports: vec![],
        },
    );
    let down = get(proxy_addr, "down.ingress.test").await.unwrap();
    assert!(down.starts_with("HTTP/1.1 502"), "{down}");

    // The forwarded port answers while the route exists, and stops when it goes.
    let forwarder = PortForwarder::new(table.clone(), IpAddr::V4(Ipv4Addr::LOCALHOST));
    let follower = forwarder.start();
    let forwarded = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), external_port);
    let page = eventually(10, "the page through the forwarded port", || async {
        get(forwarded, "anything")
            .await
            .ok()
            .filter(|p| p.contains("kumo test page"))
    })
    .await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert_eq!(forwarder.listening().await, [external_port]);

    table.remove_lease(&lease);
    eventually(10, "the forwarded port to close", || async {
        tokio::net::TcpStream::connect(forwarded)
            .await
            .is_err()
            .then_some(())
    })
    .await;
    assert!(forwarder.listening().await.is_empty());
    let gone = get(proxy_addr, "web.ingress.test").await.unwrap();
    assert!(gone.starts_with("HTTP/1.1 404"), "{gone}");

    follower.abort();
    proxy.abort();
}
