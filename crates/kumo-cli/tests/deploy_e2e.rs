//! The tenant's path end to end (issue 6's acceptance), through the real `kumo` binary only:
//! `kumo devnet up --detach` (a validator and a provider with the Docker backend), then
//! `kumo deploy` of a web service on the local test image, HTTP 200 through the printed URL,
//! `-o json` of deploy and `lease status` in the same shape, `lease list`, `lease logs`,
//! `lease shell` (output and exit code), `deposit`, `update` (a changed env reaches the
//! container), `lease close` (no container left, refund, and `lease logs` still shows the lines
//! the provider kept at the close); and the failure paths: no bid (an attribute no provider
//! has), a refused manifest (an image the registry does not have), a deposit too small (nothing
//! on chain).
//!
//! Skipped without a Docker engine and the test images of `scripts/test-images.sh`, unless
//! `KUMO_REQUIRE_DOCKER=1`.

use std::{
    process::{Command, Output},
    time::{Duration, Instant},
};

use serde_json::Value;

#[path = "support/devnet.rs"]
mod devnet;

use devnet::{Devnet, docker_ready, text};

const IMAGE: &str = "kumo-test/busybox:1";

/// `kumo ARGS` on the test's devnet.
struct Kumo<'a>(&'a Devnet);

impl Kumo<'_> {
    fn run(&self, args: &[&str]) -> Output {
        self.0.kumo(args)
    }

    /// Runs and expects success; stdout as JSON.
    fn json(&self, args: &[&str]) -> Value {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kumo {args:?} failed:\n{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("kumo {args:?}: not JSON ({e}): {}", text(&out.stdout)))
    }
}

fn web_sdl(image: &str, greeting: &str, region: Option<&str>) -> String {
    let placement = match region {
        Some(r) => format!("      attributes:\n        region: {r}\n"),
        None => String::new(),
    };
    format!(
        r#"version: "2.0"
services:
  web:
    image: {image}
    command: ["sh", "-c"]
    args: ["echo hello-from-web; exec httpd -f -p 80 -h /www"]
    env:
      - GREETING={greeting}
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
{placement}      pricing:
        web:
          denom: ukumo
          amount: 1000
deployment:
  web:
    dc:
      profile: web
      count: 1
"#
    )
}

/// GET `url` with its host in the `Host` header, through 127.0.0.1 (`*.localhost` does not
/// resolve through every libc); the status code, or 0 when nothing answered.
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
            "-H",
            &format!("Host: {host}"),
            &format!("http://127.0.0.1:{port}/"),
        ])
        .output()
        .expect("curl");
    text(&out.stdout).trim().parse().unwrap_or(0)
}

/// Containers of the devnet's provider (by its Docker label instance).
fn containers(instance: &str) -> usize {
    let out = Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=kumo.instance={instance}"),
        ])
        .output()
        .unwrap();
    text(&out.stdout).lines().count()
}

/// The JSON keys of a value, recursively (array items by their first element): its shape.
fn shape(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
        Value::Array(a) => Value::Array(a.first().map(shape).into_iter().collect()),
        _ => Value::Null,
    }
}

#[test]
fn tenant_path_end_to_end() {
    if !docker_ready(IMAGE, "the deploy end-to-end test") {
        return;
    }
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let devnet = Devnet::up(&tmp.path().join("devnet"));
    let info = &devnet.info;
    let instance = devnet.info("instance");
    let kumo = Kumo(&devnet);
    let sdl_dir = tmp.path();
    let write = |name: &str, body: String| {
        let p = sdl_dir.join(name);
        std::fs::write(&p, body).unwrap();
        p.display().to_string()
    };

    // Deposit too small: a clear error, nothing on chain.
    let web = write("web.yaml", web_sdl(IMAGE, "one", None));
    let out = kumo.run(&["deploy", &web, "--deposit", "1ukumo"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("deposit 1ukumo is too small") && err.contains("nothing was sent"),
        "{err}"
    );
    let all = kumo.json(&["lease", "list", "--all", "-o", "json"]);
    assert_eq!(all, serde_json::json!([]), "nothing on chain");
    let deployments = Command::new("curl")
        .args([
            "-sf",
            &format!(
                "{}/v1/deployments?owner={}",
                info["info"]["node"].as_str().unwrap(),
                info["info"]["tenant"].as_str().unwrap()
            ),
        ])
        .output()
        .unwrap();
    let deployments: Value = serde_json::from_slice(&deployments.stdout).unwrap();
    assert_eq!(deployments["value"], serde_json::json!([]), "no deployment");

    // The whole path.
    let out = kumo.run(&["deploy", &web, "--wait", "60s", "-o", "json"]);
    assert!(out.status.success(), "deploy: {}", text(&out.stderr));
    let progress = text(&out.stderr);
    for step in [
        "validated",
        "deployment",
        "bids:",
        "bid selected",
        "lease",
        "manifest sent",
        "running",
    ] {
        assert!(progress.contains(step), "no {step:?} step in:\n{progress}");
    }
    let deployed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let dseq = deployed["dseq"].as_u64().unwrap().to_string();
    assert_eq!(deployed["state"], "running");
    assert_eq!(deployed["provider"], info["info"]["provider"]);
    let url = deployed["services"][0]["uris"][0]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        url.starts_with("http://") && url.contains(".localhost:"),
        "{url}"
    );
    assert_eq!(http_status(&url), 200, "GET {url}");
    let status = kumo.json(&["lease", "status", &dseq, "-o", "json"]);
    assert_eq!(
        shape(&status),
        shape(&deployed),
        "deploy and lease status print one shape"
    );
    assert_eq!(status["services"], deployed["services"]);

    let list = kumo.json(&["lease", "list", "-o", "json"]);
    let row = list
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["dseq"].as_u64().map(|d| d.to_string()).as_deref() == Some(dseq.as_str()))
        .expect("the lease is listed");
    assert_eq!(row["state"], "active");
    assert_eq!(row["provider"], deployed["provider"]);

    let logs = kumo.run(&["lease", "logs", &dseq, "--tail", "10"]);
    assert!(logs.status.success(), "{}", text(&logs.stderr));
    assert!(
        text(&logs.stdout).contains("hello-from-web"),
        "{}",
        text(&logs.stdout)
    );

    let sh = kumo.run(&["lease", "shell", &dseq, "--", "sh", "-c", "echo hi; exit 3"]);
    assert_eq!(text(&sh.stdout).trim(), "hi");
    assert_eq!(sh.status.code(), Some(3), "{}", text(&sh.stderr));

    let before: f64 = status["chain"]["escrow_balance"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let dep = kumo.json(&["deposit", &dseq, "1000000ukumo", "-o", "json"]);
    let after: f64 = dep["escrow_balance"].as_str().unwrap().parse().unwrap();
    assert!(after > before + 900_000.0, "escrow {before} → {after}");

    // Mistakes the CLI can see are refused before anything is sent: no fee, no nonce used.
    let tenant = info["info"]["tenant"].as_str().unwrap().to_string();
    let provider = info["info"]["provider"].as_str().unwrap().to_string();
    let account =
        |addr: &str| kumo.json(&["query", "account", addr, "-o", "json"])["value"].clone();
    let before = account(&tenant);
    let everything = "1000000000000000ukumo"; // the genesis balance, some of it spent since
    let huge = "1000000000000000000000000000000ukumo";
    for (args, says) in [
        (vec!["deposit", &dseq, "0ukumo"], "adds nothing"),
        (vec!["deposit", &dseq, everything], "needs more"),
        (vec!["deposit", &dseq, huge], "needs more"),
        (
            vec!["deposit", &dseq, "5uusd"],
            "is paid in ukumo, not uusd",
        ),
        (vec!["deposit", "999999", "5ukumo"], "no deployment 999999"),
        (
            vec!["tx", "send", "--from", "tenant", &provider, everything],
            "needs more",
        ),
        (
            vec!["tx", "send", "--from", "tenant", &provider, huge],
            "needs more",
        ),
        (
            vec!["tx", "send", "--from", "tenant", &provider, "5uatom"],
            "holds 0uatom",
        ),
    ] {
        let out = kumo.run(&args);
        let err = text(&out.stderr);
        assert!(!out.status.success(), "kumo {args:?} succeeded");
        assert!(
            err.contains(says) && err.contains("nothing was sent"),
            "kumo {args:?}: {err}"
        );
    }
    assert_eq!(account(&tenant), before, "no fee paid, no nonce used");
    // Anyone may fund a deployment: the provider's key tops up the tenant's.
    let topped = kumo.json(&[
        "deposit",
        &dseq,
        "1000ukumo",
        "--from",
        "provider",
        "--owner",
        &tenant,
        "-o",
        "json",
    ]);
    let more: f64 = topped["escrow_balance"].as_str().unwrap().parse().unwrap();
    assert!(more > after, "escrow {after} → {more}");

    // Update: a changed env reaches the container.
    let changed = write("web2.yaml", web_sdl(IMAGE, "two", None));
    let upd = kumo.json(&["update", &dseq, &changed, "-o", "json"]);
    assert_eq!(upd["hash_changed"], true);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let sh = kumo.run(&["lease", "shell", &dseq, "--", "sh", "-c", "echo $GREETING"]);
        if text(&sh.stdout).trim() == "two" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new env never arrived: {}",
            text(&sh.stdout)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    // A resource change is refused.
    let bigger = write(
        "web3.yaml",
        web_sdl(IMAGE, "two", None)
            .replace("size: 32Mi\n        storage", "size: 64Mi\n        storage"),
    );
    let out = kumo.run(&["update", &dseq, &bigger]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("resources changed"),
        "{}",
        text(&out.stderr)
    );

    let closed = kumo.json(&["lease", "close", &dseq, "-o", "json"]);
    assert!(
        closed["refund"]["amount"]
            .as_str()
            .unwrap()
            .parse::<u128>()
            .unwrap()
            > 0,
        "{closed}"
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while containers(&instance) != 0 {
        assert!(Instant::now() < deadline, "containers left after close");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_ne!(http_status(&url), 200, "the URL no longer serves");
    // Its containers are gone, but the provider kept their last lines for the owner.
    let kept = kumo.run(&["lease", "logs", &dseq]);
    assert!(kept.status.success(), "{}", text(&kept.stderr));
    assert!(
        text(&kept.stdout).contains("[web-0] hello-from-web"),
        "{}",
        text(&kept.stdout)
    );
    assert!(
        text(&kept.stderr).contains("closed at height")
            && text(&kept.stderr).contains("(owner); showing the logs the provider kept"),
        "{}",
        text(&kept.stderr)
    );
    let out = kumo.run(&["deposit", &dseq, "5ukumo"]);
    assert!(
        text(&out.stderr).contains("is closed") && text(&out.stderr).contains("nothing was sent"),
        "{}",
        text(&out.stderr)
    );

    // No bid: an attribute no provider has.
    let nowhere = write("nowhere.yaml", web_sdl(IMAGE, "one", Some("mars")));
    let out = kumo.run(&["deploy", &nowhere, "--bid-wait", "3s"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("no bid on deployment"), "{err}");
    assert!(
        err.contains("region=mars"),
        "the reason names the attribute: {err}"
    );
    assert!(err.contains("closed") && err.contains("refunded"), "{err}");
    let all = kumo.json(&["lease", "list", "--all", "-o", "json"]);
    assert_eq!(all.as_array().unwrap().len(), 1, "no new lease: {all}");
    // The closed lease says who closed it and why.
    assert_eq!(all[0]["state"], "closed", "{all}");
    assert_eq!(all[0]["closed"]["by"], "tenant", "{all}");
    assert_eq!(all[0]["closed"]["reason"], "owner", "{all}");
    assert!(all[0]["closed"]["height"].as_u64().unwrap() > 0, "{all}");
    let listed = text(&kumo.run(&["lease", "list", "--all"]).stdout);
    assert!(listed.contains("closed by the tenant at"), "{listed}");
    let status = kumo.json(&["lease", "status", &dseq, "-o", "json"]);
    assert_eq!(status["chain"]["closed"]["by"], "tenant", "{status}");
    let shown = text(&kumo.run(&["lease", "status", &dseq]).stdout);
    assert!(shown.contains("closed by the tenant at"), "{shown}");

    // Manifest refused: an image the local registry does not have.
    let nope = write(
        "nope.yaml",
        web_sdl("127.0.0.1:5000/kumo-test/nope:1", "one", None),
    );
    let out = kumo.run(&["deploy", &nope, "--wait", "30s"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("refused the manifest"), "{err}");
    assert!(
        err.contains("nope"),
        "the provider's reason is printed: {err}"
    );
    assert!(err.contains("deployment was closed"), "{err}");
    let active = kumo.json(&["lease", "list", "-o", "json"]);
    assert_eq!(
        active,
        serde_json::json!([]),
        "the refused lease was closed"
    );
    assert_eq!(containers(&instance), 0);

    eprintln!("deploy e2e took {:.1} s", started.elapsed().as_secs_f64());
}
