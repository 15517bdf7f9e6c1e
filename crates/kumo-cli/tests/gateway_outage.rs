//! A provider whose gateway goes away for 8 s while `kumo deploy` sends it the manifest (issue
//! 23): the deploy tells the user it is sending again, and completes once the provider is back,
//! instead of calling a connection error a refusal and closing the deployment.
//!
//! On a real devnet: the provider is killed (`SIGKILL`) the moment the deploy prints "bid
//! selected", and started again 8 s later with the same command line; it catches up on the
//! chain's events from its last processed height and takes the manifest.
//!
//! Skipped without a Docker engine and the test images, unless `KUMO_REQUIRE_DOCKER=1`.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

// Uses `Devnet::up`, its directory and `docker_ready`.
#[allow(dead_code)]
#[path = "support/devnet.rs"]
mod devnet;

use devnet::{Devnet, docker_ready, text};

const IMAGE: &str = "kumo-test/busybox:1";

const WEB: &str = r#"version: "2.0"
services:
  web:
    image: kumo-test/busybox:1
    command: ["sh", "-c"]
    args: ["exec httpd -f -p 80 -h /www"]
    expose:
      - port: 80
        to: [{global: true}]
profiles:
  compute:
    web:
      resources: {cpu: {units: 0.1}, memory: {size: 32Mi}, storage: {size: 64Mi}}
  placement:
    dc:
      pricing:
        web: {denom: ukumo, amount: 100}
deployment:
  web:
    dc: {profile: web, count: 1}
"#;

#[test]
fn a_deploy_outlasts_the_providers_gateway_being_down_for_8_s() {
    if !docker_ready(IMAGE, "the gateway outage test") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let devnet = Devnet::up(&tmp.path().join("devnet"));
    let sdl = tmp.path().join("web.yaml");
    std::fs::write(&sdl, WEB).unwrap();

    let provider = kumo_devnet::process::running(&devnet.dir, "provider").expect("provider runs");
    let cmdline: Vec<String> = std::fs::read(format!("/proc/{provider}/cmdline"))
        .unwrap()
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();

    let mut deploy = Command::new(env!("CARGO_BIN_EXE_kumo"))
        .args([
            "deploy",
            &sdl.display().to_string(),
            "--wait",
            "90s",
            "-o",
            "json",
        ])
        .envs(devnet.env())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines_tx, lines) = mpsc::channel();
    let stderr = deploy.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });

    let mut progress = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("no \"bid selected\" from the deploy: {progress:?}"));
        progress.push(line.clone());
        if line.contains("bid selected") {
            break;
        }
    }
    // The gateway goes away: connections to it are refused.
    let killed = Command::new("kill")
        .args(["-KILL", &provider.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    std::thread::sleep(Duration::from_secs(8));

    // Back, as its operator would start it again (and recorded, so `devnet down` stops it).
    let log = std::fs::OpenOptions::new()
        .append(true)
        .open(devnet.dir.join("provider").join("provider.log"))
        .unwrap();
    let mut restarted = Command::new(&cmdline[0])
        .args(&cmdline[1..])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    std::fs::write(
        kumo_devnet::process::pid_file(&devnet.dir, "provider"),
        format!("{}\n", restarted.id()),
    )
    .unwrap();

    let out = deploy.wait_with_output().unwrap();
    progress.extend(lines.try_iter());
    let progress = progress.join("\n");
    assert!(
        out.status.success(),
        "the deploy failed: {progress}\n{}",
        text(&out.stdout)
    );
    assert!(
        progress.contains("gateway unreachable") && progress.contains("sending the manifest again"),
        "the user was told about the outage: {progress}"
    );
    let deployed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(deployed["state"], "running", "{deployed}");
    // `devnet down` stops the restarted provider (its pid is recorded); then reap it.
    drop(devnet);
    let _ = restarted.wait();
}
