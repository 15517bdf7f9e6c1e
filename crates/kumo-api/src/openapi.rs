//! `GET /openapi.json`: an OpenAPI 3.1 document of every route, written by hand next to the
//! types it describes. Tests check that it lists exactly the router's routes and that real
//! answers carry the properties its schemas require.

use serde_json::{Value, json};

use crate::types::ErrorCode;

fn schema(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// A JSON 200 answer of this schema.
fn ok(description: &str, s: Value) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": s } } })
}

/// The error answers a route can give, by status.
fn errors(statuses: &[u16]) -> serde_json::Map<String, Value> {
    statuses
        .iter()
        .map(|s| {
            let codes: Vec<&str> = ErrorCode::ALL
                .iter()
                .filter(|c| c.status() == *s)
                .map(|c| c.as_str())
                .collect();
            (
                s.to_string(),
                json!({
                    "description": format!("error; code one of: {}", codes.join(", ")),
                    "content": { "application/json": { "schema": schema("Error") } }
                }),
            )
        })
        .collect()
}

fn responses(ok_status: u16, ok_body: Value, error_statuses: &[u16]) -> Value {
    let mut m = errors(error_statuses);
    m.insert(ok_status.to_string(), ok_body);
    Value::Object(m)
}

fn path_param(name: &str, description: &str) -> Value {
    json!({ "name": name, "in": "path", "required": true, "description": description,
            "schema": { "type": "string" } })
}

fn query_param(name: &str, description: &str, s: Value) -> Value {
    json!({ "name": name, "in": "query", "required": false, "description": description,
            "schema": s })
}

/// `{"height", "value"}` around `value`.
fn at_height(value: Value) -> Value {
    json!({
        "type": "object",
        "description": "An answer read from the state as of `height`.",
        "required": ["height", "value"],
        "properties": { "height": { "type": "integer", "minimum": 0 }, "value": value }
    })
}

fn list(item: Value) -> Value {
    json!({ "type": "array", "items": item })
}

fn get(summary: &str, params: Vec<Value>, resp: Value) -> Value {
    json!({ "get": { "summary": summary, "parameters": params, "responses": resp } })
}

fn string_enum(values: &[&str]) -> Value {
    json!({ "type": "string", "enum": values })
}

/// The document.
pub fn document() -> Value {
    let addr = |name: &str, what: &str| path_param(name, &format!("{what} (bech32, kumo1…)"));
    let owner_q = query_param(
        "owner",
        "only this owner's (kumo1…)",
        json!({"type": "string"}),
    );
    let provider_q = query_param(
        "provider",
        "only this provider's (kumo1…)",
        json!({"type": "string"}),
    );
    let common = [400u16, 404, 405, 500, 503];
    let mut submit_responses = responses(
        202,
        ok("admitted, not yet in a block", schema("SubmitResponse")),
        &[400, 409, 413, 415, 429, 500, 503],
    );
    submit_responses["200"] = ok("committed (with wait=commit)", schema("SubmitResponse"));
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Kumo node API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "JSON over HTTP. Hashes and transaction bytes are lowercase hex, addresses bech32 (kumo1…), amounts decimal strings. State queries answer {\"height\", \"value\"}: the height of the committed state they read. Every error is {\"error\": {\"code\", \"message\"}} with the HTTP status of its code. See docs/node-api.md."
        },
        "paths": {
            "/v1/txs": {
                "post": {
                    "summary": "Submit a signed transaction to the mempool",
                    "parameters": [
                        query_param("wait", "`commit`: answer when the transaction is in a block (or the timeout passed)", string_enum(&["commit"])),
                        query_param("timeout_ms", "how long `wait=commit` waits (default 10000, at most 60000)", json!({"type": "integer", "minimum": 0}))
                    ],
                    "requestBody": {
                        "required": true,
                        "description": "The signed transaction (docs/tx-format.md): hex in JSON, or the raw bytes. At most 2 × max_tx_bytes + 1024 bytes.",
                        "content": {
                            "application/json": { "schema": schema("SubmitTx") },
                            "application/octet-stream": { "schema": { "type": "string", "format": "binary" } }
                        }
                    },
                    "responses": submit_responses
                }
            },
            "/v1/txs/batch": {
                "post": {
                    "summary": "Submit several signed transactions: each admitted or refused on its own, one item per transaction in the answer",
                    "parameters": [
                        query_param("wait", "`commit`: answer when every admitted transaction is in a block (or dropped, or the timeout passed)", string_enum(&["commit"])),
                        query_param("timeout_ms", "how long `wait=commit` waits (default 10000, at most 60000)", json!({"type": "integer", "minimum": 0}))
                    ],
                    "requestBody": {
                        "required": true,
                        "description": "1 to 1000 signed transactions, hex. At most 8 MiB.",
                        "content": { "application/json": { "schema": schema("SubmitBatch") } }
                    },
                    "responses": responses(200, ok("one item per transaction, in order; an item's error does not fail the request", schema("SubmitBatchResponse")), &[400, 413, 415, 500, 503])
                }
            },
            "/v1/txs/{hash}": get("A committed transaction and its outcome",
                vec![path_param("hash", "sha256 of the transaction bytes, 64 hex characters")],
                responses(200, ok("the transaction", schema("TxView")), &common)),
            "/v1/blocks/{height}": get("A committed block with its transactions and events",
                vec![path_param("height", "a height, or `latest`")],
                responses(200, ok("the block", schema("Block")), &common)),
            "/v1/status": get("Chain id, latest block, mempool size", vec![],
                responses(200, ok("status", schema("Status")), &[500, 503])),
            "/v1/accounts/{addr}": get("An account's nonce, public key and balances",
                vec![addr("addr", "the account")],
                responses(200, ok("the account (an unknown address has nonce 0 and no balances)", at_height(schema("Account"))), &common)),
            "/v1/deployments": get("Deployments with their groups and escrow",
                vec![owner_q.clone(), query_param("state", "only in this state", string_enum(&["active", "closed"]))],
                responses(200, ok("deployments", at_height(list(schema("DeploymentView")))), &common)),
            "/v1/deployments/{owner}/{dseq}": get("One deployment with its groups and escrow",
                vec![addr("owner", "the deployment's owner"), path_param("dseq", "deployment sequence number")],
                responses(200, ok("the deployment", at_height(schema("DeploymentView"))), &common)),
            "/v1/orders": get("Orders",
                vec![owner_q.clone(), query_param("state", "only in this state", string_enum(&["open", "active", "closed"]))],
                responses(200, ok("orders", at_height(list(schema("ChainObject")))), &common)),
            "/v1/bids": get("Bids",
                vec![
                    query_param("order", "only on this order: owner/dseq/gseq/oseq", json!({"type": "string"})),
                    provider_q.clone(),
                    query_param("state", "only in this state", string_enum(&["open", "active", "lost", "closed"]))
                ],
                responses(200, ok("bids", at_height(list(schema("ChainObject")))), &common)),
            "/v1/declines": get("Providers' declines of an open order, with their reasons (kept while the order is open)",
                vec![json!({"name": "order", "in": "query", "required": true, "description": "the order: owner/dseq/gseq/oseq", "schema": {"type": "string"}})],
                responses(200, ok("declines", at_height(list(schema("ChainObject")))), &common)),
            "/v1/leases": get("Leases",
                vec![owner_q, provider_q, query_param("state", "only in this state", string_enum(&["active", "closed", "insufficient_funds"]))],
                responses(200, ok("leases", at_height(list(schema("ChainObject")))), &common)),
            "/v1/providers": get("Every registered provider", vec![],
                responses(200, ok("providers", at_height(list(schema("ChainObject")))), &common)),
            "/v1/providers/{addr}": get("One provider with its auditors' attestations",
                vec![addr("addr", "the provider")],
                responses(200, ok("the provider", at_height(schema("ProviderView"))), &common)),
            "/v1/escrow/{owner}/{dseq}": get("A deployment's escrow account and payments, settled to the query height",
                vec![addr("owner", "the deployment's owner"), path_param("dseq", "deployment sequence number")],
                responses(200, ok("the escrow account", at_height(schema("EscrowView"))), &common)),
            "/v1/params": get("Chain parameters", vec![],
                responses(200, ok("parameters", at_height(schema("ChainObject"))), &[500, 503])),
            "/v1/events": get("A page of events in chain order",
                vec![
                    query_param("from_height", "first height (default: the first stored)", json!({"type": "integer", "minimum": 0})),
                    query_param("from_index", "first position within from_height (default 0); resume with the page's `next`", json!({"type": "integer", "minimum": 0})),
                    query_param("limit", "most events (default 100, 1 to 1000)", json!({"type": "integer", "minimum": 1, "maximum": 1000}))
                ],
                responses(200, ok("events", schema("EventsPage")), &common)),
            "/v1/events/stream": {
                "get": {
                    "summary": "WebSocket: events from a height on, stored then live, without gap or repeat",
                    "description": "Upgrade to a WebSocket. Each text message is one Event. Without from_height: only blocks committed from now on. On a storage failure the node sends one Error message and closes.",
                    "parameters": [query_param("from_height", "first height to send", json!({"type": "integer", "minimum": 0}))],
                    "responses": responses(101, json!({
                        "description": "switching to the WebSocket protocol; messages are Event objects",
                        "content": { "application/json": { "schema": schema("Event") } }
                    }), &[400, 500])
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics: height, transactions committed, mempool size, API request counts and latencies",
                    "responses": {
                        "200": { "description": "Prometheus text format 0.0.4",
                                 "content": { "text/plain": { "schema": { "type": "string" } } } }
                    }
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": { "200": { "description": "OpenAPI 3.1", "content": { "application/json": { "schema": { "type": "object" } } } } }
                }
            }
        },
        "components": { "schemas": schemas() }
    })
}

fn schemas() -> Value {
    let hex32 = json!({ "type": "string", "pattern": "^[0-9a-f]{64}$" });
    let coin = json!({ "type": "object", "required": ["denom", "amount"],
        "properties": { "denom": { "type": "string" }, "amount": { "type": "string", "description": "decimal integer" } } });
    json!({
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": { "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": string_enum(&ErrorCode::ALL.map(ErrorCode::as_str)),
                    "message": { "type": "string", "description": "what is wrong and how to fix it" },
                    "reason": { "type": "string", "description": "for tx_rejected: the chain's reason (nonce, wrong_chain, bad_signature, fee_too_low, ...)" }
                }
            } }
        },
        "SubmitTx": {
            "type": "object", "required": ["tx"], "additionalProperties": false,
            "properties": { "tx": { "type": "string", "pattern": "^([0-9a-fA-F]{2})+$", "description": "the signed transaction bytes in hex" } }
        },
        "SubmitBatch": {
            "type": "object", "required": ["txs"], "additionalProperties": false,
            "properties": { "txs": { "type": "array", "minItems": 1, "maxItems": 1000,
                                     "items": { "type": "string", "pattern": "^([0-9a-fA-F]{2})+$" } } }
        },
        "SubmitBatchResponse": {
            "type": "object", "required": ["results"],
            "properties": { "results": list(schema("BatchItem")) }
        },
        "BatchItem": {
            "type": "object", "required": ["hash", "status"],
            "properties": {
                "hash": hex32,
                "status": string_enum(&["pending", "committed", "error"]),
                "height": { "type": "integer", "description": "when committed" },
                "result": schema("TxSummary"),
                "error": { "type": "object", "required": ["code", "message"], "description": "when error: what POST /v1/txs would have answered",
                           "properties": { "code": { "type": "string" }, "message": { "type": "string" }, "reason": { "type": "string" } } }
            }
        },
        "SubmitResponse": {
            "type": "object", "required": ["hash", "status"],
            "properties": {
                "hash": hex32,
                "status": string_enum(&["pending", "committed"]),
                "height": { "type": "integer", "description": "when committed" },
                "tx": schema("TxRecord")
            }
        },
        "TxView": {
            "type": "object", "required": ["height", "tx"],
            "properties": { "height": { "type": "integer" }, "tx": schema("TxRecord") }
        },
        "TxRecord": {
            "type": "object", "required": ["hash", "index", "bytes", "result"],
            "properties": {
                "hash": hex32, "index": { "type": "integer" },
                "bytes": { "type": "string", "description": "hex" },
                "result": schema("TxOutcome")
            }
        },
        "TxSummary": {
            "type": "object", "required": ["index", "code"],
            "description": "when committed: its place in the block and what happened (GET /v1/txs/{hash} has its events too)",
            "properties": {
                "index": { "type": "integer" },
                "code": string_enum(&["ok", "failed", "rejected"]),
                "error": { "type": "object", "required": ["kind", "message"],
                    "properties": {
                        "kind": { "type": "string", "description": "msg_failed, or the rejection reason" },
                        "message": { "type": "string" },
                        "msg_index": { "type": ["integer", "null"] },
                        "msg": { "type": ["string", "null"] }
                    } }
            }
        },
        "TxOutcome": {
            "type": "object", "required": ["code", "error", "sender", "fee", "events"],
            "properties": {
                "code": string_enum(&["ok", "failed", "rejected"]),
                "error": { "type": ["object", "null"], "required": ["kind", "message"],
                    "properties": {
                        "kind": { "type": "string", "description": "msg_failed, or the rejection reason" },
                        "message": { "type": "string" },
                        "msg_index": { "type": ["integer", "null"] },
                        "msg": { "type": ["string", "null"] }
                    } },
                "sender": { "type": ["string", "null"] },
                "fee": { "oneOf": [coin, { "type": "null" }] },
                "events": list(schema("EventRecord"))
            }
        },
        "Block": {
            "type": "object",
            "required": ["height", "hash", "parent", "time_ms", "proposer", "state_root", "txs", "end_events"],
            "properties": {
                "height": { "type": "integer" }, "hash": hex32, "parent": hex32,
                "time_ms": { "type": "integer", "description": "ms since the Unix epoch" },
                "proposer": hex32, "state_root": hex32,
                "txs": list(schema("TxRecord")),
                "end_events": list(schema("EventRecord"))
            }
        },
        "EventRecord": {
            "type": "object", "required": ["height", "tx_hash", "event"],
            "properties": { "height": { "type": "integer" }, "tx_hash": { "type": ["string", "null"] },
                            "event": schema("EventBody") }
        },
        "Event": {
            "type": "object", "required": ["height", "index", "tx_hash", "event"],
            "properties": {
                "height": { "type": "integer" },
                "index": { "type": "integer", "description": "position among the block's events" },
                "tx_hash": { "type": ["string", "null"], "description": "null for end-of-block events" },
                "event": schema("EventBody")
            }
        },
        "EventBody": {
            "type": "object", "required": ["type"],
            "description": "A state change; `type` names it (Transfer, FeePaid, OrderCreated, BidCreated, LeaseCreated, LeaseClosed, ...) and the other fields depend on it (kumo_chain::Event).",
            "properties": { "type": { "type": "string" } }
        },
        "EventsPage": {
            "type": "object", "required": ["events", "next"],
            "properties": {
                "events": list(schema("Event")),
                "next": { "type": "object", "required": ["height", "index"],
                          "properties": { "height": { "type": "integer" }, "index": { "type": "integer" } } }
            }
        },
        "Status": {
            "type": "object",
            "required": ["chain_id", "height", "latest_block_hash", "latest_block_time_ms", "mempool", "node_version"],
            "properties": {
                "chain_id": { "type": "string" }, "height": { "type": "integer" },
                "latest_block_hash": { "type": ["string", "null"] },
                "latest_block_time_ms": { "type": ["integer", "null"] },
                "mempool": { "type": "object", "required": ["txs", "bytes"],
                             "properties": { "txs": { "type": "integer" }, "bytes": { "type": "integer" } } },
                "node_version": { "type": "string" }
            }
        },
        "Account": {
            "type": "object", "required": ["address", "nonce", "public_key", "balances"],
            "properties": {
                "address": { "type": "string" },
                "nonce": { "type": "integer", "description": "the nonce its next transaction must carry" },
                "public_key": { "type": ["string", "null"] },
                "balances": list(coin)
            }
        },
        "DeploymentView": {
            "type": "object", "required": ["deployment", "groups", "escrow"],
            "properties": {
                "deployment": schema("ChainObject"),
                "groups": list(schema("ChainObject")),
                "escrow": { "oneOf": [schema("EscrowView"), { "type": "null" }] }
            }
        },
        "EscrowView": {
            "type": "object", "required": ["account", "payments"],
            "properties": { "account": schema("ChainObject"), "payments": list(schema("ChainObject")) }
        },
        "ProviderView": {
            "type": "object", "required": ["provider", "attestations"],
            "properties": { "provider": schema("ChainObject"), "attestations": list(schema("ChainObject")) }
        },
        "ChainObject": {
            "type": "object",
            "description": "A chain record (Order, Bid, Lease, Provider, Deployment, Group, EscrowAccount, Payment, Params) in its serde form: see kumo_chain::state and docs/node-api.md."
        }
    })
}
