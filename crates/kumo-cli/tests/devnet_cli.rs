//! `kumo devnet up|status|down` through the real binary.
//!
//! - One provider: a detached devnet serves blocks and its provider, a second `up` says it
//!   runs already (exit 0), `down` stops both processes, and a later `up` resumes the same
//!   chain.
//! - Two providers (`--providers 2`): both run and are registered on chain; a deployment gets
//!   a bid from each at different prices and the lease goes to the cheaper one; after a
//!   SIGKILL of that provider, `status` shows it down and the other up, and `up` starts only
//!   it again: the node's and the other provider's pids stay, the lease's container is the
//!   same one, never restarted, and the service answers through the ingress again; `down`
//!   leaves no container or network of either provider's instance.
//!
//! Needs a Docker engine (the providers' backend), and for the second test the image of
//! `scripts/test-images.sh`: skipped without them unless `KUMO_REQUIRE_DOCKER=1`.

use std::{
    path::Path,
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

/// The image the two-provider test deploys (`scripts/test-images.sh` builds it).
#[path = "../../../tests/skip.rs"]
mod skip;

const IMAGE: &str = "kumo-test/busybox:1";

fn kumo(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kumo"))
        .args(args)
        .env_remove("KUMO_HOME")
        .env_remove("KUMO_NODE")
        .env_remove("KUMO_DEVNET_HOME")
        .stdin(Stdio::null())
        .output()
        .expect("run kumo")
}

/// `kumo ARGS` with the environment `devnet.env` sets (node, keyring, `tenant`).
fn kumo_in(dir: &Path, args: &[&str]) -> Output {
    let env: Vec<(String, String)> = std::fs::read_to_string(dir.join("devnet.env"))
        .expect("devnet.env")
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

/// Whether the Docker engine answers and has `image` (when given); prints why `test` is
/// skipped when not, or panics under `KUMO_REQUIRE_DOCKER=1`.
fn docker_ready(image: Option<&str>, test: &str) -> bool {
    let engine = Command::new("docker")
        .arg("info")
        .output()
        .is_ok_and(|o| o.status.success());
    let has_image = |image: &str| {
        Command::new("docker")
            .args(["image", "inspect", image])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let ok = engine && image.is_none_or(has_image);
    if !ok {
        let missing = if engine {
            format!(
                "no {} (run scripts/test-images.sh)",
                image.unwrap_or("image")
            )
        } else {
            "no Docker engine".to_string()
        };
        if std::env::var("KUMO_REQUIRE_DOCKER").as_deref() == Ok("1") {
            panic!("KUMO_REQUIRE_DOCKER=1 but {test} cannot run: {missing}");
        }
        skip::report(
            test,
            &format!("{missing} (KUMO_REQUIRE_DOCKER=1 makes this a failure)"),
        );
    }
    ok
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "kumo failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

fn pid_alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, r)| !r.trim_start().starts_with('Z'))
    })
}

#[test]
fn devnet_up_status_down_and_up_again() {
    if !docker_ready(None, "the one-provider devnet test") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("devnet");
    let home = dir.to_str().unwrap();

    let up = json(&kumo(&[
        "devnet",
        "up",
        "--home",
        home,
        "--base-port",
        "0",
        "--vm",
        "off",
        "--detach",
        "-o",
        "json",
    ]));
    assert_eq!(up["created"], true);
    let env = std::fs::read_to_string(dir.join("devnet.env")).unwrap();
    let node = up["info"]["node"].as_str().unwrap();
    assert!(env.contains(&format!("KUMO_NODE={node}")), "{env}");
    assert!(env.contains("KUMO_FROM=tenant"), "{env}");

    // The keys the env file points at are there and funded.
    let keys = json(&kumo(&[
        "keys",
        "list",
        "--home",
        home,
        "--keyring-backend",
        "test",
        "-o",
        "json",
    ]));
    let names: Vec<&str> = keys
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"tenant") && names.contains(&"provider"),
        "{keys}"
    );

    let status = json(&kumo(&["devnet", "status", "--home", home, "-o", "json"]));
    let node_pid = status["node_pid"].as_u64().expect("node runs");
    let provider_pid = status["provider_pid"].as_u64().expect("provider runs");
    assert!(status["height"].as_u64().unwrap() >= 1, "{status}");

    // The provider registered itself: the chain lists it.
    let provider = up["info"]["provider"].as_str().unwrap();
    let record = Command::new("curl")
        .args(["-sf", &format!("{node}/v1/providers/{provider}")])
        .output()
        .expect("curl");
    let record = String::from_utf8_lossy(&record.stdout);
    assert!(
        record.contains(up["info"]["gateway"].as_str().unwrap()),
        "{record}"
    );

    // A second `up` finds everything running: it says so, starts nothing, and succeeds.
    let again = kumo(&["devnet", "up", "--home", home, "--detach"]);
    let said = text(&again.stdout);
    assert!(again.status.success(), "{said}{}", text(&again.stderr));
    assert!(said.contains("already runs"), "{said}");
    let again = json(&kumo(&["devnet", "up", "--home", home, "-o", "json"]));
    assert_eq!(again["started"], serde_json::json!([]), "{again}");
    // An existing devnet keeps the number of providers it was created with.
    let more = kumo(&["devnet", "up", "--home", home, "--providers", "2"]);
    assert!(!more.status.success());
    let err = text(&more.stderr);
    assert!(err.contains("has 1 provider(s), not 2"), "{err}");

    let down = json(&kumo(&["devnet", "down", "--home", home, "-o", "json"]));
    assert_eq!(down["stopped"], serde_json::json!(["provider", "node"]));
    assert!(!pid_alive(node_pid) && !pid_alive(provider_pid));
    let stopped = kumo(&["devnet", "status", "--home", home]);
    assert!(
        !stopped.status.success(),
        "status of a stopped devnet must fail"
    );

    // Up again: the same chain goes on from where it stopped.
    let height = status["height"].as_u64().unwrap();
    let up2 = json(&kumo(&[
        "devnet", "up", "--home", home, "--detach", "-o", "json",
    ]));
    assert_eq!(up2["created"], false);
    assert_eq!(up2["info"], up["info"]);
    let status2 = json(&kumo(&["devnet", "status", "--home", home, "-o", "json"]));
    assert!(status2["height"].as_u64().unwrap() >= height, "{status2}");
    json(&kumo(&[
        "devnet", "down", "--home", home, "--purge", "-o", "json",
    ]));
    assert!(!dir.exists());
}

/// `kumo devnet down` of a directory when dropped: a failing test leaves no process or
/// container behind.
struct DownOnDrop<'a>(&'a Path);

impl Drop for DownOnDrop<'_> {
    fn drop(&mut self) {
        let _ = Command::new(env!("CARGO_BIN_EXE_kumo"))
            .args(["devnet", "down", "--home"])
            .arg(self.0)
            .output();
    }
}

/// A small web service on the test image, for any provider.
const WEB: &str = r#"version: "2.0"
services:
  web:
    image: kumo-test/busybox:1
    command: ["sh", "-c"]
    args: ["exec httpd -f -p 80 -h /www"]
    expose:
      - port: 80
        as: 80
        to:
          - global: true
profiles:
  compute:
    web:
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
        web:
          denom: ukumo
          amount: 1000
deployment:
  web:
    dc:
      profile: web
      count: 1
"#;

/// The HTTP status of `url` (`http://<host>.localhost:<port>/`) through 127.0.0.1 with its
/// host in the `Host` header (`*.localhost` does not resolve through every libc); 0 when
/// nothing answered.
fn http_status(url: &str) -> u16 {
    let rest = url.strip_prefix("http://").unwrap();
    let (hostport, _) = rest.split_once('/').unwrap_or((rest, ""));
    let (host, port) = hostport.rsplit_once(':').unwrap();
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
        ])
        .args(["-H", &format!("Host: {host}")])
        .arg(format!("http://127.0.0.1:{port}/"))
        .output()
        .expect("curl");
    text(&out.stdout).trim().parse().unwrap_or(0)
}

/// `docker ps -aq` / `docker network ls -q` of one label instance.
fn objects(kind: &[&str], instance: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args(kind)
        .args(["-q", "--filter", &format!("label=kumo.instance={instance}")])
        .output()
        .expect("docker");
    text(&out.stdout).lines().map(str::to_string).collect()
}

/// `docker inspect` of a container: its id, start time and restart count.
fn container_state(id: &str) -> String {
    let out = Command::new("docker")
        .args([
            "inspect",
            "-f",
            "{{.Id}} {{.State.StartedAt}} {{.RestartCount}}",
            id,
        ])
        .output()
        .expect("docker inspect");
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).trim().to_string()
}

/// `status.providers[i].pid`, by name.
fn provider_pid(status: &Value, name: &str) -> Option<u64> {
    status["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {status}"))["pid"]
        .as_u64()
}

#[test]
fn two_providers_compete_and_up_restarts_only_the_killed_one() {
    if !docker_ready(Some(IMAGE), "the two-provider devnet test") {
        return;
    }
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("devnet");
    let home = dir.to_str().unwrap();
    let _down = DownOnDrop(&dir);

    let up = json(&kumo(&[
        "devnet",
        "up",
        "--home",
        home,
        "--providers",
        "2",
        "--base-port",
        "0",
        "--vm",
        "off",
        "--detach",
        "-o",
        "json",
    ]));
    let names = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&up["started"]), ["node", "provider", "provider2"]);
    let providers = up["info"]["providers"].as_array().unwrap().clone();
    assert_eq!(providers.len(), 2, "{up}");
    let (one, two) = (&providers[0], &providers[1]);
    assert_eq!(
        one["address"], up["info"]["provider"],
        "the old fields: provider 1"
    );
    assert_ne!(one["instance"], two["instance"]);

    // Both run, answer and are registered; the chain lists both with their own zone.
    let status = json(&kumo(&["devnet", "status", "--home", home, "-o", "json"]));
    for p in status["providers"].as_array().unwrap() {
        assert!(p["pid"].is_u64(), "{status}");
        assert_eq!(p["gateway_answers"], true, "{status}");
        assert_eq!(p["registered"], true, "{status}");
    }
    let node_pid = status["node"]["pid"].as_u64().expect("the node runs");
    let on_chain = json(&kumo_in(&dir, &["query", "providers", "-o", "json"]));
    for (p, zone) in [(one, "devnet-a"), (two, "devnet-b")] {
        let record = on_chain
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["owner"] == p["address"])
            .unwrap_or_else(|| panic!("{} is not on chain: {on_chain}", p["name"]));
        assert_eq!(record["host_uri"], p["gateway"]);
        assert!(
            record["attributes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["key"] == "zone" && a["value"] == zone),
            "{record}"
        );
    }

    // A deployment both fit: one bid from each, at different prices; the cheaper wins.
    let sdl = tmp.path().join("web.yaml");
    std::fs::write(&sdl, WEB).unwrap();
    let out = kumo_in(
        &dir,
        &[
            "deploy",
            sdl.to_str().unwrap(),
            "--wait",
            "60s",
            "-o",
            "json",
        ],
    );
    let progress = text(&out.stderr);
    assert!(out.status.success(), "deploy: {progress}");
    for p in [one, two] {
        assert!(
            progress.contains(p["address"].as_str().unwrap()),
            "no bid of {} in:\n{progress}",
            p["name"]
        );
    }
    let deployed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let node = up["info"]["node"].as_str().unwrap();
    let order = format!(
        "{}/{}/{}/{}",
        deployed["owner"].as_str().unwrap(),
        deployed["dseq"],
        deployed["gseq"],
        deployed["oseq"]
    );
    let bids = Command::new("curl")
        .args(["-sf", &format!("{node}/v1/bids?order={order}")])
        .output()
        .expect("curl");
    let bids: Value = serde_json::from_slice(&bids.stdout).expect("bids as JSON");
    let bids = bids["value"].as_array().unwrap();
    assert_eq!(bids.len(), 2, "one bid from each provider: {bids:?}");
    let price = |p: &Value| -> f64 {
        let bid = bids
            .iter()
            .find(|b| b["id"]["provider"] == p["address"])
            .unwrap_or_else(|| panic!("no bid of {}: {bids:?}", p["name"]));
        bid["price"]["amount"].as_str().unwrap().parse().unwrap()
    };
    let (cheap, dear) = (price(one), price(two));
    assert!(cheap < dear, "provider 1 is the cheaper: {cheap} vs {dear}");
    assert_eq!(deployed["provider"], one["address"], "the cheaper bid won");
    let url = deployed["services"][0]["uris"][0]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(http_status(&url), 200, "GET {url}");
    let winner = one["instance"].as_str().unwrap();
    let loser = two["instance"].as_str().unwrap();
    let containers = objects(&["ps", "-a"], winner);
    assert_eq!(containers.len(), 1, "{containers:?}");
    assert!(
        objects(&["ps", "-a"], loser).is_empty(),
        "the loser runs nothing"
    );
    let before = container_state(&containers[0]);

    // SIGKILL the lease's provider: status shows it down, the other up.
    let killed = provider_pid(&status, "provider").unwrap();
    let other = provider_pid(&status, "provider2").unwrap();
    assert!(
        Command::new("kill")
            .args(["-KILL", &killed.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while pid_alive(killed) {
        assert!(Instant::now() < deadline, "pid {killed} outlived SIGKILL");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = kumo(&["devnet", "status", "--home", home, "-o", "json"]);
    assert!(!out.status.success(), "status exits 1 with a part down");
    let down: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(provider_pid(&down, "provider"), None, "{down}");
    assert_eq!(down["providers"][0]["gateway_answers"], false, "{down}");
    assert_eq!(down["providers"][0]["active_leases"], 1, "{down}");
    assert_eq!(provider_pid(&down, "provider2"), Some(other), "{down}");
    assert_eq!(down["node"]["pid"].as_u64(), Some(node_pid), "{down}");
    let said = text(&kumo(&["devnet", "status", "--home", home]).stdout);
    assert!(
        said.lines()
            .any(|l| l.starts_with("provider ") && l.contains("down")),
        "{said}"
    );

    // `up` starts only the killed provider; nothing else is touched.
    let again = json(&kumo(&[
        "devnet", "up", "--home", home, "--detach", "-o", "json",
    ]));
    assert_eq!(names(&again["started"]), ["provider"], "{again}");
    assert_eq!(names(&again["already_running"]), ["node", "provider2"]);
    let status = json(&kumo(&["devnet", "status", "--home", home, "-o", "json"]));
    assert_eq!(status["node"]["pid"].as_u64(), Some(node_pid));
    assert_eq!(provider_pid(&status, "provider2"), Some(other));
    let restarted = provider_pid(&status, "provider").expect("provider runs again");
    assert_ne!(restarted, killed);
    // The lease's container is the same one, never restarted, and answers again once the
    // restarted provider's ingress has its route back (from its reconcile at start).
    assert_eq!(objects(&["ps", "-a"], winner), containers);
    assert_eq!(container_state(&containers[0]), before);
    let deadline = Instant::now() + Duration::from_secs(20);
    while http_status(&url) != 200 {
        assert!(
            Instant::now() < deadline,
            "{url} does not answer after the provider's restart"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(container_state(&containers[0]), before);

    let down = json(&kumo(&["devnet", "down", "--home", home, "-o", "json"]));
    let mut stopped: Vec<&str> = down["stopped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    stopped.sort();
    assert_eq!(stopped, ["node", "provider", "provider2"]);
    for instance in [winner, loser] {
        assert!(objects(&["ps", "-a"], instance).is_empty(), "{instance}");
        assert!(
            objects(&["network", "ls"], instance).is_empty(),
            "{instance}"
        );
    }
    assert!(!pid_alive(node_pid) && !pid_alive(restarted) && !pid_alive(other));
    eprintln!(
        "two-provider devnet test: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
