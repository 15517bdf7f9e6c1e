//! Drives `kumo bench …` through the real binary, at small (hidden) sizes: the JSON that
//! scripts read has exactly the documented keys, with positive numbers. Timing goals are not
//! asserted here: a test machine's speed says nothing about them.

use std::process::{Command, Output};

fn kumo(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kumo"))
        .args(args)
        .output()
        .expect("run kumo")
}

/// The JSON object printed on stdout, after checking the command succeeded.
fn json_object(out: &Output) -> serde_json::Map<String, serde_json::Value> {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    match serde_json::from_slice(&out.stdout).expect("stdout is JSON") {
        serde_json::Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

fn assert_positive_keys(obj: &serde_json::Map<String, serde_json::Value>, keys: &[&str]) {
    let mut got: Vec<&str> = obj.keys().map(String::as_str).collect();
    got.sort_unstable();
    let mut want = keys.to_vec();
    want.sort_unstable();
    assert_eq!(got, want);
    for k in keys {
        let v = obj[*k]
            .as_f64()
            .unwrap_or_else(|| panic!("{k} is not a number"));
        assert!(v.is_finite() && v > 0.0, "{k} = {v}");
    }
}

#[test]
fn bench_chain_prints_throughput_json() {
    let small = ["--tenants", "4", "--providers", "2", "--rounds", "2"];
    let out = kumo(&[&["bench", "chain", "-o", "json"][..], &small].concat());
    let obj = json_object(&out);
    assert_positive_keys(
        &obj,
        &[
            "txs_per_sec",
            "sig_verifications_per_sec",
            "batch_verifications_per_sec",
            "ratio",
        ],
    );
    let ratio =
        obj["txs_per_sec"].as_f64().unwrap() / obj["batch_verifications_per_sec"].as_f64().unwrap();
    assert!((obj["ratio"].as_f64().unwrap() - ratio).abs() < 1e-9 * ratio);
    // Progress goes to stderr, so stdout stays one JSON document.
    assert!(String::from_utf8_lossy(&out.stderr).contains("executing"));

    let out = kumo(&[&["bench", "chain", "--no-batch"][..], &small].concat());
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("txs/s") && text.contains("goal ≥ 0.5"),
        "{text}"
    );
}

#[test]
fn bench_escrow_prints_end_block_json() {
    let small = [
        "--small",
        "6",
        "--large",
        "60",
        "--blocks",
        "3",
        "--dry-per-block",
        "2",
    ];
    let obj = json_object(&kumo(
        &[&["bench", "escrow", "-o", "json"][..], &small].concat(),
    ));
    assert_positive_keys(&obj, &["end_block_ms_100", "end_block_ms_100000", "ratio"]);

    let out = kumo(&[&["bench", "escrow"][..], &small].concat());
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("60 leases") && text.contains("goal ≤ 2"),
        "{text}"
    );
}

#[test]
fn bench_escrow_refuses_sizes_it_cannot_run() {
    // 5 blocks × 3 accounts running dry need 15 leases in the small chain.
    let out = kumo(&[
        "bench",
        "escrow",
        "--small",
        "10",
        "--large",
        "60",
        "--blocks",
        "5",
        "--dry-per-block",
        "3",
        "-o",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("blocks × dry-per-block"),
        "{v}"
    );
}

/// A 4-validator network of real `kumo node run` processes for a few seconds: the JSON has the
/// documented keys, each a positive number.
#[test]
fn bench_node_prints_network_json() {
    let out = kumo(&[
        "bench",
        "node",
        "--duration",
        "6s",
        "--accounts",
        "8",
        "--window",
        "2",
        "--chain-tenants",
        "4",
        "-o",
        "json",
    ]);
    let mut obj = json_object(&out);
    // On failure the bench's stderr says which node stopped committing, with its log.
    assert_eq!(
        obj.remove("failed_txs"),
        Some(serde_json::json!(0)),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_positive_keys(
        &obj,
        &[
            "committed_txs_per_sec",
            "finality_ms_p50",
            "finality_ms_p99",
            "block_time_ms",
            "chain_txs_per_sec",
            "ratio",
            "committed_txs",
            "blocks",
            "block_time_target_ms",
            "validators",
            "in_flight",
        ],
    );
}

// Only its `docker_ready` is used here.
#[allow(dead_code)]
#[path = "support/devnet.rs"]
mod devnet;

/// Issue 28's many-leases scenario at CI size (the benchmark runs 500): 100 small leases on one
/// provider, each deployed and answering through the ingress; the provider restarted, and
/// every lease answering again (its reconcile routed them all); all closed, and nothing of
/// them left: containers, networks, volumes, firewall entries, QEMU processes.
#[test]
fn a_provider_carries_100_leases_and_leaves_nothing_once_they_close() {
    if !devnet::docker_ready("kumo-test/busybox:1", "the provider benchmark's test") {
        return;
    }
    let out = kumo(&["bench", "provider", "--leases", "100", "-o", "json"]);
    let obj = json_object(&out);
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "answering_after_restart",
            "block_time_ms",
            "deploy_seconds_first",
            "deploy_seconds_last",
            "leases",
            "left_after_close",
            "provider_rss_mb",
            "reconcile_ms",
            "teardown_lag_seconds",
        ]
    );
    assert_eq!(obj["leases"], 100);
    assert_eq!(
        obj["answering_after_restart"], 100,
        "every lease routed again"
    );
    assert_eq!(obj["left_after_close"], 0, "every lease's objects removed");
    for k in [
        "deploy_seconds_first",
        "deploy_seconds_last",
        "provider_rss_mb",
        "reconcile_ms",
    ] {
        let v = obj[k].as_f64().unwrap();
        assert!(v.is_finite() && v > 0.0, "{k} = {v}");
    }
}

/// `kumo bench failover`: a frozen provider's lease is closed by the chain, and the service
/// answers from the other provider; both times are reported, detection first.
#[test]
fn bench_failover_prints_detect_and_serving_again_json() {
    if !devnet::docker_ready("kumo-test/busybox:1", "the failover benchmark's test") {
        return;
    }
    let out = kumo(&["bench", "failover", "-o", "json"]);
    let obj = json_object(&out);
    assert_positive_keys(
        &obj,
        &[
            "detect_seconds",
            "serving_again_seconds",
            "block_time_ms",
            "liveness_window_blocks",
        ],
    );
    let detect = obj["detect_seconds"].as_f64().unwrap();
    let serving = obj["serving_again_seconds"].as_f64().unwrap();
    assert!(detect < serving, "{obj:?}");
    // Not before the chain's liveness window has passed: the provider was given its time.
    let window_s = obj["liveness_window_blocks"].as_f64().unwrap()
        * obj["block_time_ms"].as_f64().unwrap()
        / 1000.0;
    assert!(detect >= window_s * 0.8, "{obj:?}");
}
