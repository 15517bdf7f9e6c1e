//! Akash's own JSON shapes for group specs and manifests, and the canonical JSON that the
//! manifest hash is taken over.
//!
//! Akash renders resource quantities as `{"val": "<decimal string>"}`, prices with 18
//! decimals, endpoint kinds as protobuf numbers (omitted when 0), and empty lists as `null`
//! in some places and `[]` in others. This module reproduces that byte for byte where it
//! matters (`kumo sdl groups --akash`, `kumo sdl manifest --akash`, and the hash).

use kumo_types::{Attribute, GroupSpec, Resources};
use serde_json::{Map, Value, json};

use crate::manifest::{Manifest, ServiceExpose};

fn opt_list(items: &Option<Vec<String>>) -> Value {
    match items {
        None => Value::Null,
        Some(v) => json!(v),
    }
}

/// Attributes as Akash renders them; `key`/`value` are omitted when empty.
fn attributes(attrs: &[Attribute]) -> Value {
    Value::Array(
        attrs
            .iter()
            .map(|a| {
                let mut m = Map::new();
                if !a.key.is_empty() {
                    m.insert("key".into(), json!(a.key));
                }
                if !a.value.is_empty() {
                    m.insert("value".into(), json!(a.value));
                }
                Value::Object(m)
            })
            .collect(),
    )
}

/// Akash lists that are `null` when empty.
fn list_or_null(items: &[String]) -> Value {
    if items.is_empty() {
        Value::Null
    } else {
        json!(items)
    }
}

fn quantity(v: u64) -> Value {
    json!({ "val": v.to_string() })
}

fn with_attributes(mut m: Map<String, Value>, attrs: &[Attribute]) -> Value {
    if !attrs.is_empty() {
        m.insert("attributes".into(), attributes(attrs));
    }
    Value::Object(m)
}

/// A `Resources` value in Akash's shape.
pub fn resources_json(r: &Resources) -> Value {
    let mut cpu = Map::new();
    cpu.insert("units".into(), quantity(r.cpu.millis));
    let mut memory = Map::new();
    memory.insert("size".into(), quantity(r.memory.bytes));
    let mut gpu = Map::new();
    gpu.insert("units".into(), quantity(r.gpu.units));
    let storage: Vec<Value> = r
        .storage
        .iter()
        .map(|s| {
            let mut m = Map::new();
            m.insert("name".into(), json!(s.name));
            m.insert("size".into(), quantity(s.bytes));
            with_attributes(m, &s.attributes)
        })
        .collect();
    let endpoints: Vec<Value> = r
        .endpoints
        .iter()
        .map(|e| {
            let mut m = Map::new();
            let kind = e.kind.akash_number();
            if kind != 0 {
                m.insert("kind".into(), json!(kind));
            }
            m.insert("sequence_number".into(), json!(e.sequence_number));
            Value::Object(m)
        })
        .collect();
    let mut m = Map::new();
    m.insert("id".into(), json!(r.id));
    m.insert("cpu".into(), with_attributes(cpu, &r.cpu.attributes));
    m.insert(
        "memory".into(),
        with_attributes(memory, &r.memory.attributes),
    );
    if !storage.is_empty() {
        m.insert("storage".into(), Value::Array(storage));
    }
    m.insert("gpu".into(), with_attributes(gpu, &r.gpu.attributes));
    m.insert("endpoints".into(), Value::Array(endpoints));
    Value::Object(m)
}

/// Group specs in Akash's shape (`group-specs.json` of the conformance suite).
pub fn groups_json(groups: &[GroupSpec]) -> Value {
    Value::Array(
        groups
            .iter()
            .map(|g| {
                let attrs = if g.requirements.attributes.is_empty() {
                    Value::Null
                } else {
                    attributes(&g.requirements.attributes)
                };
                json!({
                    "name": g.name,
                    "requirements": {
                        "signed_by": {
                            "all_of": list_or_null(&g.requirements.signed_by.all_of),
                            "any_of": list_or_null(&g.requirements.signed_by.any_of),
                        },
                        "attributes": attrs,
                    },
                    "resources": g.resources.iter().map(|u| json!({
                        "resource": resources_json(&u.resources),
                        "count": u.count,
                        "price": {
                            "denom": u.price.denom,
                            "amount": u.price.amount.to_fixed_string(),
                        },
                    })).collect::<Vec<_>>(),
                })
            })
            .collect(),
    )
}

fn expose_json(e: &ServiceExpose) -> Value {
    let h = &e.http_options;
    let mut http = Map::new();
    http.insert("maxBodySize".into(), json!(h.max_body_size));
    http.insert("readTimeout".into(), json!(h.read_timeout));
    http.insert("sendTimeout".into(), json!(h.send_timeout));
    http.insert("nextTries".into(), json!(h.next_tries));
    http.insert("nextTimeout".into(), json!(h.next_timeout));
    if !h.next_cases.is_empty() {
        http.insert("nextCases".into(), json!(h.next_cases));
    }
    if h.proxy_buffer_size != 0 {
        http.insert("proxyBufferSize".into(), json!(h.proxy_buffer_size));
    }
    json!({
        "port": e.port,
        "externalPort": e.external_port,
        "proto": e.proto.as_str(),
        "service": e.service,
        "global": e.global,
        "hosts": opt_list(&e.hosts),
        "httpOptions": Value::Object(http),
        "ip": e.ip,
        "endpointSequenceNumber": e.endpoint_sequence_number,
    })
}

/// The manifest in Akash's shape (`manifest.json` of the conformance suite).
pub fn manifest_json(m: &Manifest) -> Value {
    Value::Array(
        m.groups
            .iter()
            .map(|g| {
                let services: Vec<Value> = g
                    .services
                    .iter()
                    .map(|s| {
                        let mut o = Map::new();
                        o.insert("name".into(), json!(s.name));
                        o.insert("image".into(), json!(s.image));
                        o.insert("command".into(), opt_list(&s.command));
                        o.insert("args".into(), opt_list(&s.args));
                        o.insert("env".into(), opt_list(&s.env));
                        o.insert("resources".into(), resources_json(&s.resources));
                        o.insert("count".into(), json!(s.count));
                        o.insert(
                            "expose".into(),
                            Value::Array(s.expose.iter().map(expose_json).collect()),
                        );
                        if let Some(p) = &s.params {
                            let mut params = Map::new();
                            params.insert(
                                "storage".into(),
                                match &p.storage {
                                    None => Value::Null,
                                    Some(v) => Value::Array(
                                        v.iter()
                                            .map(|m| {
                                                json!({"name": m.name, "mount": m.mount, "readOnly": m.read_only})
                                            })
                                            .collect(),
                                    ),
                                },
                            );
                            if let Some(perm) = &p.permissions {
                                let mut pm = Map::new();
                                if let Some(read) = perm.read.as_ref().filter(|r| !r.is_empty()) {
                                    pm.insert("read".into(), json!(read));
                                }
                                params.insert("permissions".into(), Value::Object(pm));
                            }
                            if let Some(tee) = &p.tee {
                                params.insert(
                                    "tee".into(),
                                    json!({"type": tee.kind, "attestation": tee.attestation}),
                                );
                            }
                            o.insert("params".into(), Value::Object(params));
                        }
                        o.insert(
                            "credentials".into(),
                            match &s.credentials {
                                None => Value::Null,
                                Some(c) => json!({
                                    "host": c.host, "email": c.email,
                                    "username": c.username, "password": c.password,
                                }),
                            },
                        );
                        // Kumo's VM extension: only VM services carry the key, so an Akash
                        // file renders (and hashes) exactly as on Akash.
                        if let Some(vm) = &s.vm {
                            o.insert(
                                "vm".into(),
                                json!({
                                    "image": {"url": vm.image.url, "sha256": vm.image.sha256},
                                    "sshKeys": vm.ssh_keys,
                                    "user": vm.user,
                                    "userData": vm.user_data,
                                }),
                            );
                        }
                        Value::Object(o)
                    })
                    .collect();
                json!({ "name": g.name, "services": services })
            })
            .collect(),
    )
}

/// Compact JSON with object keys sorted, strings escaped as Go's `encoding/json` does
/// (`<`, `>`, `&`, U+2028 and U+2029 as `\u` escapes): the bytes Akash hashes.
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_go_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_go_string(key, out);
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
    }
}

fn write_go_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_sorts_keys_and_escapes_like_go() {
        let v = json!({"b": 1, "a": ["x<y>&z", null, true], "c": {"z": "\u{1}", "y": "é"}});
        assert_eq!(
            canonical_json(&v),
            r#"{"a":["x\u003cy\u003e\u0026z",null,true],"b":1,"c":{"y":"é","z":"\u0001"}}"#
        );
    }
}
