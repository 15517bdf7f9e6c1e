//! Shared by the API tests: a test node on a loopback socket and a small JSON HTTP client.

#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use kumo_api::testing::{TestNode, TestNodeConfig, genesis};
use kumo_chain::testkit::{Actor, FEE};
use kumo_types::{Address, Msg};
use serde_json::Value;

pub const FUNDS: &str = "1000000000000ukumo,1000000000000uusd";

/// A test node serving on loopback, and a client for it.
pub struct Node {
    pub node: TestNode,
    pub base: String,
    pub http: reqwest::Client,
}

impl Node {
    /// A node with blocks every `interval` funding `accounts`.
    pub async fn start(accounts: &[Address], interval: Duration) -> Node {
        let mut cfg = TestNodeConfig::new(genesis(accounts, FUNDS));
        cfg.block_interval = interval;
        Node::start_with(cfg).await
    }

    /// A node with this configuration.
    pub async fn start_with(cfg: TestNodeConfig) -> Node {
        let node = TestNode::start(cfg);
        let base = node.serve().await.unwrap();
        Node {
            node,
            base,
            http: reqwest::Client::new(),
        }
    }

    /// GET `path`: status and JSON body (Null when the body is not JSON).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// GET `path`, expecting 200.
    pub async fn ok(&self, path: &str) -> Value {
        let (s, v) = self.get(path).await;
        assert_eq!(s, 200, "GET {path}: {v}");
        v
    }

    /// POST a transaction as JSON hex.
    pub async fn submit(&self, tx: &[u8], query: &str) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/v1/txs{query}", self.base))
            .json(&serde_json::json!({ "tx": hex::encode(tx) }))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// POST raw bytes with a content type.
    pub async fn post(&self, path: &str, content_type: &str, body: Vec<u8>) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Signs `msgs` as `actor`, submits with `wait=commit`, and expects every message applied.
    pub async fn commit(&self, actor: &mut Actor, msgs: Vec<Msg>) -> Value {
        let tx = actor.sign(FEE, msgs);
        let (s, v) = self.submit(&tx, "?wait=commit").await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["status"], "committed", "{v}");
        assert_eq!(v["tx"]["result"]["code"], "ok", "{v}");
        v
    }
}

/// Asserts the body is `{"error": {"code": code, "message": non-empty}}`.
pub fn assert_error(v: &Value, code: &str) {
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(
        v["error"]["message"].as_str().is_some_and(|m| m.len() > 10),
        "{v}"
    );
}
