//! `GET /metrics`: the node's gauges and the API's request counts and latencies, in
//! Prometheus' text format (version 0.0.4).
//!
//! ```text
//! kumo_height 42
//! kumo_txs_committed_total 17
//! kumo_mempool_txs 3
//! kumo_mempool_bytes 1290
//! kumo_api_requests_total{method="GET",route="/v1/status",status="200"} 5
//! kumo_api_request_duration_seconds_bucket{method="GET",route="/v1/status",le="0.005"} 5
//! ```
//!
//! Routes are labelled by their template (`/v1/txs/{hash}`), and requests to no route as
//! `unmatched`, so the number of series stays bounded whatever clients send.

use std::{
    collections::BTreeMap,
    fmt::Write,
    sync::{Arc, Mutex},
    time::Instant,
};

use axum::{
    extract::{MatchedPath, Request, State},
    middleware::Next,
    response::Response,
};

use crate::{backend::NodeBackend, routes::Api};

/// Upper bounds of the latency histogram's buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Default)]
struct RouteStats {
    by_status: BTreeMap<u16, u64>,
    /// Count per bucket (not cumulative); the last is +Inf.
    buckets: [u64; BUCKETS.len() + 1],
    sum_seconds: f64,
    count: u64,
}

/// Request counters and latency histograms per (route, method).
#[derive(Default)]
pub(crate) struct Metrics {
    routes: Mutex<BTreeMap<(String, String), RouteStats>>,
}

impl Metrics {
    fn record(&self, route: &str, method: &str, status: u16, seconds: f64) {
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        let s = routes
            .entry((route.to_string(), method.to_string()))
            .or_default();
        *s.by_status.entry(status).or_default() += 1;
        let bucket = BUCKETS
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(BUCKETS.len());
        s.buckets[bucket] += 1;
        s.sum_seconds += seconds;
        s.count += 1;
    }

    /// The exposition text.
    pub(crate) fn render(&self, node: &impl NodeBackend) -> String {
        let mut out = String::new();
        let mut gauge = |name: &str, kind: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        };
        gauge(
            "kumo_height",
            "gauge",
            "Height of the last committed block.",
            *node.committed().borrow(),
        );
        gauge(
            "kumo_txs_committed_total",
            "counter",
            "Transactions included in blocks since the node started.",
            node.txs_committed(),
        );
        let m = node.mempool_stats();
        gauge(
            "kumo_mempool_txs",
            "gauge",
            "Transactions waiting in the mempool.",
            m.txs as u64,
        );
        gauge(
            "kumo_mempool_bytes",
            "gauge",
            "Bytes of the transactions waiting in the mempool.",
            m.bytes as u64,
        );
        node.write_node_metrics(&mut out);
        let routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        out.push_str("# HELP kumo_api_requests_total API requests answered, by route, method and status.\n# TYPE kumo_api_requests_total counter\n");
        for ((route, method), s) in routes.iter() {
            for (status, n) in &s.by_status {
                let _ = writeln!(
                    out,
                    "kumo_api_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
        }
        out.push_str("# HELP kumo_api_request_duration_seconds Time to answer API requests.\n# TYPE kumo_api_request_duration_seconds histogram\n");
        for ((route, method), s) in routes.iter() {
            let labels = format!("method=\"{method}\",route=\"{route}\"");
            let mut cumulative = 0;
            for (i, n) in s.buckets.iter().enumerate() {
                cumulative += n;
                let le = BUCKETS
                    .get(i)
                    .map_or_else(|| "+Inf".to_string(), |b| b.to_string());
                let _ = writeln!(
                    out,
                    "kumo_api_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "kumo_api_request_duration_seconds_sum{{{labels}}} {}\nkumo_api_request_duration_seconds_count{{{labels}}} {}",
                s.sum_seconds, s.count
            );
        }
        out
    }
}

/// Middleware: times each request and counts its answer.
pub(crate) async fn track<B: NodeBackend>(
    State(api): State<Arc<Api<B>>>,
    req: Request,
    next: Next,
) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = req.method().as_str().to_string();
    let start = Instant::now();
    let resp = next.run(req).await;
    api.metrics.record(
        &route,
        &method,
        resp.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    resp
}
