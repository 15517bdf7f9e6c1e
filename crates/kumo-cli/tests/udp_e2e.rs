//! A forwarded UDP port end to end (issue 28: a bid is only made for what is served), through
//! the real `kumo` binary: `kumo devnet up --detach` (a validator and a provider with the Docker
//! backend), `kumo deploy` of a service exposing a global UDP port (a UDP echo server), the
//! port in `kumo lease status` (JSON and text) with its protocol, datagrams from two clients
//! through it and back, and nothing answering once the lease is closed.
//!
//! Skipped without a Docker engine and the image kumo-test/udp-echo:1 of
//! `scripts/test-images.sh`, unless `KUMO_REQUIRE_DOCKER=1`.

use std::{
    net::{SocketAddr, UdpSocket},
    process::Output,
    time::{Duration, Instant},
};

use serde_json::Value;

#[path = "support/devnet.rs"]
mod devnet;

use devnet::{Devnet, docker_ready, text};

const IMAGE: &str = "kumo-test/udp-echo:1";

const ECHO_SDL: &str = r#"version: "2.0"
services:
  echo:
    image: kumo-test/udp-echo:1
    command: ["udp-echo"]
    args: ["7000"]
    expose:
      - port: 7000
        proto: udp
        to:
          - global: true
profiles:
  compute:
    echo:
      resources:
        cpu:
          units: 0.1
        memory:
          size: 32Mi
        storage:
          size: 32Mi
  placement:
    dc:
      pricing:
        echo:
          denom: ukumo
          amount: 1000
deployment:
  echo:
    dc:
      profile: echo
      count: 1
"#;

/// Sends `message` to `to` and waits up to 1 s for an answer: the answer and who sent it.
fn ask(socket: &UdpSocket, to: SocketAddr, message: &[u8]) -> Option<(Vec<u8>, SocketAddr)> {
    socket.send_to(message, to).ok()?;
    let mut buf = vec![0u8; 65_536];
    let (len, from) = socket.recv_from(&mut buf).ok()?;
    buf.truncate(len);
    Some((buf, from))
}

/// `kumo ARGS` on `devnet`, expected to succeed.
fn kumo_ok(devnet: &Devnet, args: &[&str]) -> Output {
    let out = devnet.kumo(args);
    assert!(
        out.status.success(),
        "kumo {args:?} failed:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

#[test]
fn udp_round_trip_through_a_forwarded_port() {
    if !docker_ready(IMAGE, "the UDP end-to-end test") {
        return;
    }
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let devnet = Devnet::up(&tmp.path().join("devnet"));
    let sdl = tmp.path().join("echo.yaml");
    std::fs::write(&sdl, ECHO_SDL).unwrap();
    let sdl = sdl.display().to_string();

    let out = kumo_ok(&devnet, &["deploy", &sdl, "--wait", "60s", "-o", "json"]);
    let deployed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let dseq = deployed["dseq"].as_u64().unwrap().to_string();
    assert_eq!(deployed["state"], "running", "{deployed}");

    // The status names the UDP port with its protocol, in JSON and to people.
    let status: Value =
        serde_json::from_slice(&kumo_ok(&devnet, &["lease", "status", &dseq, "-o", "json"]).stdout)
            .unwrap();
    let ports = &status["services"][0]["forwarded_ports"];
    assert_eq!(ports.as_array().map(Vec::len), Some(1), "{status}");
    assert_eq!(ports[0]["port"], 7000, "{status}");
    assert_eq!(ports[0]["proto"], "UDP", "{status}");
    let host = ports[0]["host"].as_str().unwrap();
    let external_port = ports[0]["external_port"].as_u64().unwrap();
    let forwarded: SocketAddr = format!("{host}:{external_port}").parse().unwrap();
    let human = text(&kumo_ok(&devnet, &["lease", "status", &dseq]).stdout);
    assert!(
        human.contains(&format!("port 7000 → {forwarded} (UDP)")),
        "{human}"
    );

    // Datagrams from two clients cross and come back, each to its sender, from the port.
    let first = UdpSocket::bind("127.0.0.1:0").unwrap();
    let second = UdpSocket::bind("127.0.0.1:0").unwrap();
    for s in [&first, &second] {
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    }
    // The replica may still be starting: ask until it answers.
    let deadline = Instant::now() + Duration::from_secs(20);
    let answer = loop {
        if let Some(answer) = ask(&first, forwarded, b"ping from first") {
            break answer;
        }
        assert!(
            Instant::now() < deadline,
            "no UDP answer through {forwarded} within 20 s"
        );
    };
    assert_eq!(answer, (b"ping from first".to_vec(), forwarded));
    let answer = ask(&second, forwarded, b"ping from second").expect("an answer to the second");
    assert_eq!(answer, (b"ping from second".to_vec(), forwarded));
    let big = vec![b'u'; 8_000];
    let answer = ask(&first, forwarded, &big).expect("an answer to a large datagram");
    assert_eq!(answer.0, big);

    // Closed: the port no longer answers.
    kumo_ok(&devnet, &["lease", "close", &dseq, "-o", "json"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while ask(&first, forwarded, b"still there?").is_some() {
        assert!(
            Instant::now() < deadline,
            "{forwarded} still answers after the lease closed"
        );
    }
    let left = std::process::Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=kumo.instance={}", devnet.info("instance")),
        ])
        .output()
        .unwrap();
    assert_eq!(
        text(&left.stdout).trim(),
        "",
        "no container left after close"
    );
    eprintln!("udp e2e took {:.1} s", started.elapsed().as_secs_f64());
}
