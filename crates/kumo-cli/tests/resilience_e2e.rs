//! A tenant's work does not vanish without a reason (issue 23), through the real binaries on a
//! devnet with several providers:
//!
//! - a provider stopped with SIGSTOP under a live lease: the chain closes the lease
//!   `provider_unresponsive` at the end of its liveness window and refunds the silent blocks;
//!   `kumo lease watch` moves the deployment to the other provider, whose ingress serves it,
//!   and `kumo lease status` shows the new lease;
//! - three providers that cannot fit an order decline it on chain, and `kumo deploy` fails at
//!   once (not after `--bid-wait`), naming each provider's own reason;
//! - a top-up allowance through `kumo top-up grant`: mistakes refused before anything is sent,
//!   the allowance shown by `kumo lease status`, with its low-funds warning.
//!
//! Skipped without a Docker engine and the test images, unless `KUMO_REQUIRE_DOCKER=1`.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

// Uses `Devnet`, `docker_ready` and `text`.
#[allow(dead_code)]
#[path = "support/devnet.rs"]
mod devnet;

use devnet::{Devnet, docker_ready, text};
use serde_json::Value;

const IMAGE: &str = "kumo-test/busybox:1";

const WEB: &str = r#"version: "2.0"
services:
  web:
    image: kumo-test/busybox:1
    command: ["sh", "-c"]
    args: ["mkdir -p /www && echo served > /www/index.html && exec httpd -f -p 80 -h /www"]
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
        web: {denom: ukumo, amount: 1000}
deployment:
  web:
    dc: {profile: web, count: 1}
"#;

fn json(out: &std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "kumo failed: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

fn get(url: &str) -> Value {
    let out = Command::new("curl")
        .args(["-sf", "--max-time", "5", url])
        .output()
        .expect("curl");
    assert!(out.status.success(), "GET {url}: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON from the node")
}

/// The body at `uri`, when it answers within 3 s.
fn body(uri: &str) -> Option<String> {
    let out = Command::new("curl")
        .args(["-sf", "--max-time", "3", uri])
        .output()
        .ok()?;
    out.status.success().then(|| text(&out.stdout))
}

/// Every event of the chain from `from` to `to` (inclusive), as the node serves them.
fn events(node: &str, from: u64, to: u64) -> Vec<Value> {
    let mut out = Vec::new();
    let mut at = from;
    loop {
        let page = get(&format!("{node}/v1/events?from_height={at}&limit=1000"));
        let events = page["events"].as_array().unwrap();
        out.extend(
            events
                .iter()
                .filter(|e| e["height"].as_u64().unwrap() <= to)
                .cloned(),
        );
        let next = page["next"]["height"].as_u64().unwrap();
        if events.is_empty() || next > to || next <= at {
            return out;
        }
        at = next;
    }
}

#[test]
fn a_stopped_provider_loses_its_lease_with_a_refund_and_the_watcher_moves_it() {
    if !docker_ready(IMAGE, "the failover test") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let devnet = Devnet::up_with_providers(&tmp.path().join("devnet"), 2);
    let node = devnet.info("node");
    let providers = devnet.info["info"]["providers"].as_array().unwrap().clone();
    let (a, b) = (
        providers[0]["address"].as_str().unwrap().to_string(),
        providers[1]["address"].as_str().unwrap().to_string(),
    );
    let sdl = tmp.path().join("web.yaml");
    std::fs::write(&sdl, WEB).unwrap();
    let sdl = sdl.display().to_string();

    // `kumo deploy --failover`: the cheaper provider, A, wins; then the command stays and
    // watches, one line per step on stdout.
    let mut watch = Command::new(env!("CARGO_BIN_EXE_kumo"))
        .args(["deploy", &sdl, "--select", "cheapest", "--failover"])
        .envs(devnet.env())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, lines) = mpsc::channel::<String>();
    let stdout = watch.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    let mut next_line = |starting: &str, within: Duration| -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = lines.recv_timeout(left).unwrap_or_else(|_| {
                panic!("no line starting {starting:?} within {within:?}: {seen:#?}")
            });
            seen.push(line.clone());
            assert!(!line.starts_with("failover of group"), "{line}");
            if line.trim_start().starts_with(starting) {
                return line;
            }
        }
    };
    let leased = next_line("lease ", Duration::from_secs(60));
    assert!(leased.contains(&format!("provider {a}")), "{leased}");
    let watching = next_line("watching deployment", Duration::from_secs(20));
    let dseq = watching
        .split_whitespace()
        .nth(2)
        .unwrap()
        .trim_end_matches(':')
        .to_string();

    // A freezes: it keeps its sockets but answers nothing and proves nothing.
    let pid = kumo_devnet::process::running(&devnet.dir, "provider").expect("A runs");
    let stopped_at = Instant::now();
    assert!(
        Command::new("kill")
            .args(["-STOP", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let lost = next_line("lease ", Duration::from_secs(60));
    let detected = stopped_at.elapsed();
    assert!(
        lost.contains("(provider_unresponsive): failing over"),
        "{lost}"
    );
    let serving = next_line("serving again", Duration::from_secs(60));
    let took = stopped_at.elapsed();
    eprintln!(
        "from SIGSTOP: lease closed after {:.1} s, serving again after {:.1} s",
        detected.as_secs_f64(),
        took.as_secs_f64()
    );
    assert!(
        took < Duration::from_secs(60),
        "serving again {took:?} after the provider stopped"
    );
    assert!(serving.contains("http://"), "{serving}");
    let _ = Command::new("kill")
        .args(["-CONT", &pid.to_string()])
        .status();

    // The service answers from B, and `kumo lease status` follows it there.
    let status = json(&devnet.kumo(&["lease", "status", &dseq, "-o", "json"]));
    assert_eq!(status["provider"], b.as_str(), "{status}");
    assert_eq!(status["state"], "running", "{status}");
    let uri = status["services"][0]["uris"][0]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(body(&uri).as_deref().map(str::trim), Some("served"));

    // On chain: closed at A's deadline, its silent blocks refunded to the deployment.
    let leases = get(&format!(
        "{node}/v1/leases?owner={}",
        status["owner"].as_str().unwrap()
    ));
    let old = leases["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| {
            l["id"]["provider"] == a.as_str() && l["id"]["dseq"].as_u64() == dseq.parse().ok()
        })
        .unwrap_or_else(|| panic!("A's lease: {leases}"))
        .clone();
    assert_eq!(old["close_reason"], "provider_unresponsive", "{old}");
    let closed_at = old["closed_at"].as_u64().unwrap();
    let created_at = old["created_at"].as_u64().unwrap();
    let window = get(&format!("{node}/v1/params"))["value"]["liveness_window"]
        .as_u64()
        .unwrap();
    let at_close = events(&node, closed_at, closed_at);
    let silent_event = at_close
        .iter()
        .find(|e| e["event"]["type"] == "ProviderSilent" && e["event"]["provider"] == a.as_str())
        .unwrap_or_else(|| panic!("no ProviderSilent event for A at {closed_at}: {at_close:?}"));
    let last_seen = silent_event["event"]["last_seen"].as_u64().unwrap();
    assert_eq!(
        closed_at,
        last_seen.max(created_at) + window,
        "closed at the end of A's window"
    );
    let refunds: Vec<Value> = at_close
        .into_iter()
        .filter(|e| e["event"]["type"] == "SilentBlocksRefunded")
        .collect();
    assert_eq!(refunds.len(), 1, "{refunds:?}");
    let silent = closed_at - last_seen.max(created_at);
    assert_eq!(refunds[0]["event"]["blocks"], silent);
    let price: f64 = old["price"]["amount"].as_str().unwrap().parse().unwrap();
    let refunded: f64 = refunds[0]["event"]["amount"]["amount"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(refunded, price * silent as f64, "{:?}", refunds[0]);
    // And A was paid for the blocks before its last proof, no more: what its withdrawals of
    // this lease moved (its share and the community pool's) is that, less the fractions.
    let paid: Vec<f64> = events(&node, created_at, closed_at)
        .into_iter()
        .filter(|e| e["event"]["type"] == "LeaseWithdrawn" && e["event"]["id"] == old["id"])
        .map(|e| {
            let n = |k: &str| {
                e["event"][k]["amount"].as_u64().map_or_else(
                    || {
                        e["event"][k]["amount"]
                            .as_str()
                            .unwrap()
                            .parse::<f64>()
                            .unwrap()
                    },
                    |v| v as f64,
                )
            };
            n("amount") + n("take")
        })
        .collect();
    let earned = price * (last_seen.max(created_at) - created_at) as f64;
    let total: f64 = paid.iter().sum();
    assert!(
        total <= earned && total > earned - paid.len() as f64 - 1.0,
        "A was paid {total} for {earned} earned before its last proof ({paid:?})"
    );

    let _ = watch.kill();
    let _ = watch.wait();
}

#[test]
fn providers_that_cannot_fit_decline_and_deploy_fails_at_once_naming_their_reasons() {
    if !docker_ready(IMAGE, "the decline test") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let devnet = Devnet::up_with_providers(&tmp.path().join("devnet"), 3);
    let providers = devnet.info["info"]["providers"].as_array().unwrap().clone();
    // 64 CPUs: more than this machine has, so every provider declines for capacity.
    let sdl = tmp.path().join("huge.yaml");
    std::fs::write(&sdl, WEB.replace("cpu: {units: 0.1}", "cpu: {units: 64}")).unwrap();
    let began = Instant::now();
    let out = devnet.kumo(&["deploy", &sdl.display().to_string(), "--bid-wait", "30s"]);
    let took = began.elapsed();
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    eprintln!("kumo deploy failed after {:.2} s", took.as_secs_f64());
    assert!(
        took < Duration::from_secs(15),
        "deploy should stop once every provider declined, not wait out --bid-wait: {took:?}\n{err}"
    );
    assert!(err.contains("declined, in their words"), "{err}");
    for p in &providers {
        let addr = p["address"].as_str().unwrap();
        let line = err
            .lines()
            .find(|l| l.contains(&format!("{addr} (capacity): ")))
            .unwrap_or_else(|| panic!("no reason from {addr}: {err}"));
        assert!(line.contains("CPU") || line.contains("cpu"), "{line}");
    }
    assert!(err.contains("deployment was closed"), "{err}");
}

/// The provider's price per global endpoint, set so that the minimum deposit (500,000ukumo)
/// pays for about 40 blocks of the test's lease.
const EXPENSIVE_ENDPOINT: &str = "12500";

#[test]
fn an_allowance_keeps_a_40_block_deployment_running_200_blocks_then_it_runs_dry() {
    if !docker_ready(IMAGE, "the top-up test") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let devnet = Devnet::up(&tmp.path().join("devnet"));
    let node = devnet.info("node");
    let tenant = devnet.info("tenant");
    // The provider, made expensive: stopped, its price raised, started again by `devnet up`.
    let pid = kumo_devnet::process::running(&devnet.dir, "provider").expect("provider runs");
    kumo_devnet::process::stop_recorded(&devnet.dir, "provider", Duration::from_secs(10));
    assert!(
        kumo_devnet::process::running(&devnet.dir, "provider").is_none(),
        "{pid} stopped"
    );
    let config = devnet.dir.join("provider").join("provider.toml");
    let toml = std::fs::read_to_string(&config).unwrap();
    let toml: String = toml
        .lines()
        .map(|l| match l.starts_with("endpoint = ") {
            true => format!("endpoint = \"{EXPENSIVE_ENDPOINT}\""),
            false => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&config, toml).unwrap();
    let up = devnet.kumo(&[
        "devnet",
        "up",
        "--detach",
        "--home",
        devnet.dir.to_str().unwrap(),
    ]);
    assert!(up.status.success(), "{}", text(&up.stderr));

    let sdl = tmp.path().join("web.yaml");
    std::fs::write(&sdl, WEB.replace("amount: 1000}", "amount: 20000}")).unwrap();
    let deployed = json(&devnet.kumo(&[
        "deploy",
        &sdl.display().to_string(),
        "--min-blocks",
        "1",
        "-o",
        "json",
    ]));
    let dseq = deployed["dseq"].as_u64().unwrap().to_string();
    let price: f64 = deployed["chain"]["price"]["amount"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let left = deployed["chain"]["blocks_left"].as_u64().unwrap();
    assert!(
        (30..=45).contains(&left),
        "funded for about 40 blocks: {deployed}"
    );
    let start = deployed["chain"]["height"].as_u64().unwrap();
    let balance = || -> Value { get(&format!("{node}/v1/accounts/{tenant}"))["value"].clone() };
    let before = balance();

    // Mistakes: refused with a reason, nothing sent (no fee, no nonce).
    for (args, says) in [
        (vec!["--limit", "0ukumo"], "allows nothing"),
        (vec!["--limit", "100uusd"], "paid in ukumo"),
        (
            vec!["--limit", "100ukumo", "--below-blocks", "0"],
            "out of range",
        ),
    ] {
        let mut cmd = vec!["top-up", "grant", dseq.as_str()];
        cmd.extend(args);
        let out = devnet.kumo(&cmd);
        assert!(!out.status.success(), "{cmd:?} was accepted");
        let err = text(&out.stderr);
        assert!(
            err.contains(says) && err.contains("nothing was sent"),
            "{cmd:?}: {err}"
        );
    }
    let out = devnet.kumo(&["top-up", "grant", "999999", "--limit", "100ukumo"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("no deployment 999999"));
    assert_eq!(balance(), before, "no fee was charged");

    // An allowance of 180 blocks, 10 blocks' worth at a time.
    let limit = format!("{}ukumo", (price * 180.0) as u64);
    let set = json(&devnet.kumo(&[
        "top-up",
        "grant",
        &dseq,
        "--limit",
        &limit,
        "--below-blocks",
        "10",
        "-o",
        "json",
    ]));
    assert_eq!(set["top_up"]["below_blocks"], 10, "{set}");
    // It shows, with a warning: the funds last about a minute, less than an hour.
    let out = devnet.kumo(&["lease", "status", &dseq, "-o", "json"]);
    let status = json(&out);
    let with = status["chain"]["blocks_left_with_top_up"].as_u64().unwrap();
    assert!(with > 150, "the allowance adds blocks: {status}");
    assert!(
        status["chain"]["low_funds"]["seconds_left"]
            .as_u64()
            .is_some(),
        "{status}"
    );
    let warned = text(&out.stderr);
    assert!(
        warned.contains("warning: deployment") && warned.contains("funds last about"),
        "{warned}"
    );
    let out = devnet.kumo(&["lease", "status", &dseq, "--warn-below", "5s"]);
    assert!(out.status.success());
    assert!(
        !text(&out.stderr).contains("warning"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("top-up:"),
        "{}",
        text(&out.stdout)
    );

    // 200 blocks, five times what the deposit paid for: the lease stays active.
    let lease_state = || -> (String, Value) {
        let s = json(&devnet.kumo(&["lease", "status", &dseq, "-o", "json"]));
        (s["chain"]["state"].as_str().unwrap().to_string(), s)
    };
    loop {
        let (state, s) = lease_state();
        assert_eq!(state, "active", "{s}");
        if s["chain"]["height"].as_u64().unwrap() >= start + 200 {
            break;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    // Then the allowance is spent, and the deployment runs dry as it would have without one.
    let deadline = Instant::now() + Duration::from_secs(90);
    let closed = loop {
        let (state, s) = lease_state();
        if state != "active" {
            break s;
        }
        assert!(Instant::now() < deadline, "still active: {s}");
        std::thread::sleep(Duration::from_secs(1));
    };
    assert_eq!(closed["chain"]["state"], "insufficient_funds", "{closed}");
    assert_eq!(
        closed["chain"]["closed"]["reason"], "insufficient_funds",
        "{closed}"
    );
    let closed_at = closed["chain"]["closed"]["height"].as_u64().unwrap();
    assert!(closed_at > start + 200, "{closed}");
    let ended: Vec<Value> = events(&node, start, closed_at)
        .into_iter()
        .filter(|e| e["event"]["type"] == "TopUpEnded")
        .collect();
    assert!(
        ended.iter().any(|e| e["event"]["reason"] == "spent"),
        "the allowance was spent: {ended:?}"
    );
}
