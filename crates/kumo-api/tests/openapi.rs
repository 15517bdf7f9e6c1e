//! `/openapi.json` describes exactly the routes the router serves, and real answers carry the
//! properties its schemas require.

mod common;

use std::{collections::BTreeSet, time::Duration};

use common::Node;
use kumo_api::{openapi, route_table, testing::TestBackend};
use kumo_chain::testkit::{Actor, FEE};
use kumo_types::{Coins, Msg};
use serde_json::Value;

#[test]
fn the_document_lists_exactly_the_routers_routes() {
    let doc = openapi::document();
    let table: BTreeSet<(String, String)> = route_table::<TestBackend>()
        .into_iter()
        .map(|(m, p)| (m.as_str().to_ascii_lowercase(), p.to_string()))
        .collect();
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.clone(), path.clone()))
        })
        .collect();
    assert_eq!(table, documented);
    assert!(table.len() >= 18);
    // Every $ref resolves.
    let text = doc.to_string();
    for r in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = &r[..r.find('"').unwrap()];
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "dangling $ref {name}"
        );
    }
    // Path parameters named in the template are declared, and vice versa.
    for (path, ops) in doc["paths"].as_object().unwrap() {
        let in_template: BTreeSet<&str> = path
            .split('{')
            .skip(1)
            .map(|s| &s[..s.find('}').unwrap()])
            .collect();
        for op in ops.as_object().unwrap().values() {
            let declared: BTreeSet<&str> = op["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .filter(|p| p["in"] == "path")
                        .map(|p| p["name"].as_str().unwrap())
                        .collect()
                })
                .unwrap_or_default();
            assert_eq!(in_template, declared, "{path}");
        }
    }
}

/// Resolves a `$ref` or returns the schema.
fn resolve<'a>(doc: &'a Value, s: &'a Value) -> &'a Value {
    match s["$ref"].as_str() {
        Some(r) => &doc["components"]["schemas"][r.trim_start_matches("#/components/schemas/")],
        None => s,
    }
}

/// Checks `v` against the schema's `required` properties, recursively through objects,
/// arrays and `oneOf` (a light check: presence and JSON type of objects and arrays).
fn conforms(doc: &Value, schema: &Value, v: &Value, at: &str) {
    let s = resolve(doc, schema);
    if let Some(options) = s["oneOf"].as_array() {
        if v.is_null() {
            return;
        }
        return conforms(doc, &options[0], v, at);
    }
    let types: Vec<&str> = match &s["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    if v.is_null() && types.contains(&"null") {
        return;
    }
    if types.contains(&"object") {
        let o = v
            .as_object()
            .unwrap_or_else(|| panic!("{at}: expected an object, got {v}"));
        for r in s["required"].as_array().into_iter().flatten() {
            let k = r.as_str().unwrap();
            assert!(o.contains_key(k), "{at}: missing required {k} in {v}");
        }
        for (k, sub) in s["properties"].as_object().into_iter().flatten() {
            if let Some(child) = o.get(k) {
                conforms(doc, sub, child, &format!("{at}.{k}"));
            }
        }
    } else if types.contains(&"array") {
        for (i, item) in v
            .as_array()
            .unwrap_or_else(|| panic!("{at}: expected an array, got {v}"))
            .iter()
            .enumerate()
        {
            conforms(doc, &s["items"], item, &format!("{at}[{i}]"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_answers_match_the_documented_schemas() {
    let mut alice = Actor::from_seed(1);
    let bob = Actor::from_seed(2);
    let n = Node::start(&[alice.addr, bob.addr], Duration::from_millis(15)).await;
    let doc = n.ok("/openapi.json").await;
    assert_eq!(doc, openapi::document());

    let tx = alice.sign(
        FEE,
        vec![Msg::Send {
            to: bob.addr,
            amount: "9ukumo".parse::<Coins>().unwrap(),
        }],
    );
    let (s, submitted) = n.submit(&tx, "?wait=commit").await;
    assert_eq!(s, 200);
    let op = |path: &str, method: &str, status: &str| {
        doc["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]
            .clone()
    };
    conforms(&doc, &op("/v1/txs", "post", "200"), &submitted, "submit");
    let height = submitted["height"].as_u64().unwrap();
    let hash = submitted["hash"].as_str().unwrap();
    let gets = [
        ("/v1/txs/{hash}", format!("/v1/txs/{hash}")),
        ("/v1/blocks/{height}", format!("/v1/blocks/{height}")),
        ("/v1/status", "/v1/status".to_string()),
        (
            "/v1/accounts/{addr}",
            format!("/v1/accounts/{}", alice.addr),
        ),
        ("/v1/deployments", "/v1/deployments".to_string()),
        ("/v1/orders", "/v1/orders".to_string()),
        ("/v1/bids", "/v1/bids".to_string()),
        ("/v1/leases", "/v1/leases".to_string()),
        ("/v1/providers", "/v1/providers".to_string()),
        ("/v1/params", "/v1/params".to_string()),
        ("/v1/events", "/v1/events?from_height=1".to_string()),
    ];
    for (template, path) in gets {
        let v = n.ok(&path).await;
        conforms(&doc, &op(template, "get", "200"), &v, &path);
    }
    // Errors, too.
    let (s, v) = n.get("/v1/txs/zz").await;
    assert_eq!(s, 400);
    conforms(&doc, &op("/v1/txs/{hash}", "get", "400"), &v, "error");
}
