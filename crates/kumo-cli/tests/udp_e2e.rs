//! A forwarded UDP port end to end (issue 28: a bid is only made for what is served), through
//! the real `kumo` binary: `kumo devnet up --detach` (a validator and a provider with the Docker
//! backend), `kumo deploy` of a service exposing a global UDP port (a UDP echo server), the
//! port in `kumo lease status` (JSON and text) with its protocol, datagrams from two clients
//! through it and back, and nothing answering once the lease is closed.
//!
//! Skipped without a Docker engine and the image kumo-test/udp-echo:1 of
//! `scripts/test-images.sh`, unless `KUMO_REQUIRE_DOCKER=1`.

use std::{
    io::Write as _,
    net::{SocketAddr, UdpSocket},
    path::Path,
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

const IMAGE: &str = "kumo-test/udp-echo:1";

fn docker_ready() -> bool {
    let ok = Command::new("docker")
        .args(["image", "inspect", IMAGE])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        if std::env::var("KUMO_REQUIRE_DOCKER").as_deref() == Ok("1") {
            panic!(
                "KUMO_REQUIRE_DOCKER=1 but Docker or {IMAGE} is missing: run scripts/test-images.sh"
            );
        }
        let _ = writeln!(
            std::io::stderr(),
            "skipping the UDP end-to-end test: no Docker engine or no {IMAGE} (run scripts/test-images.sh; KUMO_REQUIRE_DOCKER=1 makes this a failure)"
        );
    }
    ok
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `kumo ARGS` with the devnet's environment (as `devnet.env` sets it).
fn kumo(env_file: &Path, args: &[&str]) -> Output {
    let env: Vec<(String, String)> = std::fs::read_to_string(env_file)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Command::new(env!("CARGO_BIN_EXE_kumo"))
        .args(args)
        .envs(env)
        .stdin(Stdio::null())
        .output()
        .expect("run kumo")
}

fn kumo_ok(env_file: &Path, args: &[&str]) -> Output {
    let out = kumo(env_file, args);
    assert!(
        out.status.success(),
        "kumo {args:?} failed:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

/// `kumo devnet down` when the test ends, however it ends.
struct DevnetGuard<'a>(&'a Path);

impl Drop for DevnetGuard<'_> {
    fn drop(&mut self) {
        let _ = Command::new(env!("CARGO_BIN_EXE_kumo"))
            .args(["devnet", "down", "--home"])
            .arg(self.0)
            .output();
    }
}

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

#[test]
fn udp_round_trip_through_a_forwarded_port() {
    if !docker_ready() {
        return;
    }
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("devnet");
    let up = Command::new(env!("CARGO_BIN_EXE_kumo"))
        .args([
            "devnet",
            "up",
            "--base-port",
            "0",
            "--vm",
            "off",
            "--detach",
            "-o",
            "json",
            "--home",
        ])
        .arg(&dir)
        .env_remove("KUMO_HOME")
        .env_remove("KUMO_NODE")
        .output()
        .unwrap();
    let _down = DevnetGuard(&dir);
    assert!(up.status.success(), "devnet up: {}", text(&up.stderr));
    let env_file = dir.join("devnet.env");
    let sdl = tmp.path().join("echo.yaml");
    std::fs::write(&sdl, ECHO_SDL).unwrap();
    let sdl = sdl.display().to_string();

    let out = kumo_ok(&env_file, &["deploy", &sdl, "--wait", "60s", "-o", "json"]);
    let deployed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let dseq = deployed["dseq"].as_u64().unwrap().to_string();
    assert_eq!(deployed["state"], "running", "{deployed}");

    // The status names the UDP port with its protocol, in JSON and to people.
    let status: Value = serde_json::from_slice(
        &kumo_ok(&env_file, &["lease", "status", &dseq, "-o", "json"]).stdout,
    )
    .unwrap();
    let ports = &status["services"][0]["forwarded_ports"];
    assert_eq!(ports.as_array().map(Vec::len), Some(1), "{status}");
    assert_eq!(ports[0]["port"], 7000, "{status}");
    assert_eq!(ports[0]["proto"], "UDP", "{status}");
    let host = ports[0]["host"].as_str().unwrap();
    let external_port = ports[0]["external_port"].as_u64().unwrap();
    let forwarded: SocketAddr = format!("{host}:{external_port}").parse().unwrap();
    let human = text(&kumo_ok(&env_file, &["lease", "status", &dseq]).stdout);
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
    kumo_ok(&env_file, &["lease", "close", &dseq, "-o", "json"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while ask(&first, forwarded, b"still there?").is_some() {
        assert!(
            Instant::now() < deadline,
            "{forwarded} still answers after the lease closed"
        );
    }
    eprintln!("udp e2e took {:.1} s", started.elapsed().as_secs_f64());
}
