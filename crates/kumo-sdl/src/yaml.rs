//! A YAML document as a tree of nodes that remember their line, so errors can point at it.
//!
//! `yaml-rust2` parses the text into events; this module folds them into [`Node`]s, resolving
//! anchors, aliases and `<<` merge keys (as Go's `yaml.v3`, which Akash uses, does) and
//! refusing duplicate keys. Limits on size, depth and alias expansion keep hostile input from
//! exhausting memory or the stack.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Largest SDL file accepted, in bytes.
pub const MAX_INPUT_BYTES: usize = 1 << 20;
/// Deepest nesting of sequences and mappings accepted.
const MAX_DEPTH: usize = 64;
/// Most nodes a document may expand to (aliases counted at each use).
const MAX_NODES: usize = 200_000;

/// One node of the document, with the 1-based line it starts on.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub(crate) line: usize,
    pub(crate) kind: Kind,
}

/// What a node holds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    /// A scalar; `plain` is false when it was quoted or a block scalar (so `"80"` stays text).
    Scalar { value: String, plain: bool },
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in document order.
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// Whether this is YAML null (`~`, `null`, or nothing at all).
    pub(crate) fn is_null(&self) -> bool {
        matches!(&self.kind, Kind::Scalar { value, plain: true }
            if matches!(value.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// A short name of the node's type, for error messages.
    pub(crate) fn type_name(&self) -> &'static str {
        match &self.kind {
            _ if self.is_null() => "null",
            Kind::Scalar { .. } => "a scalar",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        }
    }
}

/// Why the text is not a usable YAML document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct YamlError {
    /// Field path of the problem, when known (e.g. a duplicate key); else empty.
    pub(crate) path: String,
    pub(crate) line: usize,
    pub(crate) message: String,
}

/// Parses the first document of `text`.
pub(crate) fn parse(text: &str) -> Result<Node, YamlError> {
    if text.len() > MAX_INPUT_BYTES {
        return Err(YamlError {
            path: String::new(),
            line: 0,
            message: format!(
                "file is {} bytes; an SDL may be at most {MAX_INPUT_BYTES} bytes",
                text.len()
            ),
        });
    }
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    if let Err(e) = parser.load(&mut builder, false) {
        let message = if e.info().contains("recursion limit") {
            format!("nested deeper than the parser allows ({})", e.info())
        } else {
            format!("invalid YAML: {}", e.info())
        };
        return Err(YamlError {
            path: String::new(),
            line: e.marker().line(),
            message,
        });
    }
    if let Some(err) = builder.error {
        return Err(err);
    }
    builder.root.ok_or(YamlError {
        path: String::new(),
        line: 1,
        message: "the file is empty: an SDL needs at least `version`, `services`, `profiles` and `deployment`".into(),
    })
}

/// A container being filled, with the anchor it will be registered under.
enum Open {
    Seq {
        line: usize,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        line: usize,
        anchor: usize,
        entries: Vec<(Node, Node)>,
        pending_key: Option<Node>,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Open>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
    nodes: usize,
    error: Option<YamlError>,
}

impl Builder {
    fn fail(&mut self, line: usize, message: impl Into<String>) {
        if self.error.is_none() {
            self.error = Some(YamlError {
                path: String::new(),
                line,
                message: message.into(),
            });
        }
    }

    /// Dotted path of the containers being built (`services.web.expose[0]`).
    fn path_of(stack: &[Open]) -> String {
        let mut path = String::new();
        for open in stack {
            match open {
                Open::Seq { items, .. } => path.push_str(&format!("[{}]", items.len())),
                Open::Map {
                    pending_key: Some(key),
                    ..
                } => path = crate::error::join(&path, &scalar_text(key)),
                Open::Map { .. } => {}
            }
        }
        path
    }

    fn count(&mut self, n: usize, line: usize) {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > MAX_NODES {
            self.fail(
                line,
                format!("document expands to more than {MAX_NODES} nodes (alias bomb?)"),
            );
        }
    }

    /// Places a finished node into its parent, or makes it the root.
    fn push(&mut self, node: Node, anchor: usize) {
        let parent_path = Self::path_of(&self.stack[..self.stack.len().saturating_sub(1)]);
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some(Open::Seq { items, .. }) => items.push(node),
            Some(Open::Map {
                entries,
                pending_key,
                ..
            }) => match pending_key.take() {
                None => *pending_key = Some(node),
                Some(key) => {
                    let duplicate = entries.iter().any(|(k, _)| k.kind == key.kind);
                    let line = key.line;
                    let name = scalar_text(&key);
                    entries.push((key, node));
                    if duplicate && self.error.is_none() {
                        self.error = Some(YamlError {
                            path: crate::error::join(&parent_path, &name),
                            line,
                            message: format!("{name:?} is defined twice in this mapping"),
                        });
                    }
                }
            },
        }
    }
}

fn scalar_text(node: &Node) -> String {
    match &node.kind {
        Kind::Scalar { value, .. } => value.clone(),
        _ => node.type_name().to_string(),
    }
}

/// Number of nodes in a subtree, to charge alias expansion against [`MAX_NODES`].
fn size(node: &Node) -> usize {
    match &node.kind {
        Kind::Scalar { .. } => 1,
        Kind::Seq(items) => 1 + items.iter().map(size).sum::<usize>(),
        Kind::Map(entries) => {
            1 + entries
                .iter()
                .map(|(k, v)| size(k) + size(v))
                .sum::<usize>()
        }
    }
}

/// Applies `<<` merge keys: entries of the merged mapping(s) that the mapping does not set.
fn merge_keys(entries: Vec<(Node, Node)>) -> Result<Vec<(Node, Node)>, YamlError> {
    let is_merge =
        |k: &Node| matches!(&k.kind, Kind::Scalar { value, plain: true } if value == "<<");
    if !entries.iter().any(|(k, _)| is_merge(k)) {
        return Ok(entries);
    }
    let mut own = Vec::new();
    let mut merged = Vec::new();
    for (key, value) in entries {
        if !is_merge(&key) {
            own.push((key, value));
            continue;
        }
        let sources = match value.kind {
            Kind::Map(_) => vec![value],
            Kind::Seq(items) => items,
            _ => {
                return Err(YamlError {
                    path: String::new(),
                    line: key.line,
                    message: "`<<` must merge a mapping or a list of mappings".into(),
                });
            }
        };
        for source in sources {
            let Kind::Map(source_entries) = source.kind else {
                return Err(YamlError {
                    path: String::new(),
                    line: source.line,
                    message: "`<<` must merge a mapping or a list of mappings".into(),
                });
            };
            for (k, v) in source_entries {
                let known = own
                    .iter()
                    .chain(merged.iter())
                    .any(|(o, _): &(Node, Node)| o.kind == k.kind);
                if !known {
                    merged.push((k, v));
                }
            }
        }
    }
    // Keys set explicitly win over merged ones, wherever the `<<` stood.
    merged.retain(|(k, _)| !own.iter().any(|(o, _)| o.kind == k.kind));
    own.extend(merged);
    Ok(own)
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        let line = mark.line();
        match ev {
            Event::Scalar(value, style, anchor, tag) => {
                self.count(1, line);
                // A tag such as `!!str` makes the scalar text whatever it looks like.
                let plain = style == TScalarStyle::Plain && tag.is_none();
                self.push(
                    Node {
                        line,
                        kind: Kind::Scalar { value, plain },
                    },
                    anchor,
                );
            }
            Event::SequenceStart(anchor, _) => {
                self.count(1, line);
                if self.stack.len() >= MAX_DEPTH {
                    return self.fail(line, format!("nested deeper than {MAX_DEPTH} levels"));
                }
                self.stack.push(Open::Seq {
                    line,
                    anchor,
                    items: Vec::new(),
                });
            }
            Event::MappingStart(anchor, _) => {
                self.count(1, line);
                if self.stack.len() >= MAX_DEPTH {
                    return self.fail(line, format!("nested deeper than {MAX_DEPTH} levels"));
                }
                self.stack.push(Open::Map {
                    line,
                    anchor,
                    entries: Vec::new(),
                    pending_key: None,
                });
            }
            Event::SequenceEnd => {
                if let Some(Open::Seq {
                    line,
                    anchor,
                    items,
                }) = self.stack.pop()
                {
                    self.push(
                        Node {
                            line,
                            kind: Kind::Seq(items),
                        },
                        anchor,
                    );
                }
            }
            Event::MappingEnd => {
                if let Some(Open::Map {
                    line,
                    anchor,
                    entries,
                    ..
                }) = self.stack.pop()
                {
                    match merge_keys(entries) {
                        Ok(entries) => self.push(
                            Node {
                                line,
                                kind: Kind::Map(entries),
                            },
                            anchor,
                        ),
                        Err(e) => self.fail(e.line, e.message),
                    }
                }
            }
            Event::Alias(id) => match self.anchors.get(&id).cloned() {
                Some(node) => {
                    self.count(size(&node), line);
                    if self.error.is_none() {
                        self.push(node, 0);
                    }
                }
                None => self.fail(line, "alias to an unknown anchor"),
            },
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map_keys(node: &Node) -> Vec<String> {
        match &node.kind {
            Kind::Map(entries) => entries.iter().map(|(k, _)| scalar_text(k)).collect(),
            _ => panic!("not a map"),
        }
    }

    #[test]
    fn remembers_lines_and_quoting() {
        let node = parse("a: 1\nb:\n  - \"2\"\n").unwrap();
        let Kind::Map(entries) = &node.kind else {
            panic!()
        };
        assert_eq!(entries[1].0.line, 2);
        let Kind::Seq(items) = &entries[1].1.kind else {
            panic!()
        };
        assert_eq!(items[0].line, 3);
        assert_eq!(
            items[0].kind,
            Kind::Scalar {
                value: "2".into(),
                plain: false
            }
        );
    }

    #[test]
    fn resolves_aliases_and_merge_keys() {
        let node = parse("base: &b {x: 1, y: 2}\nc:\n  <<: *b\n  y: 3\n").unwrap();
        let Kind::Map(entries) = &node.kind else {
            panic!()
        };
        assert_eq!(map_keys(&entries[1].1), ["y", "x"]);
        let Kind::Map(c) = &entries[1].1.kind else {
            panic!()
        };
        assert_eq!(scalar_text(&c[0].1), "3");
    }

    #[test]
    fn refuses_duplicates_bombs_and_depth() {
        assert!(parse("a: 1\na: 2\n").unwrap_err().message.contains("twice"));
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 0..8 {
            bomb += &format!(
                "b{i}: &b{i} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n",
                p = if i == 0 {
                    "a".to_string()
                } else {
                    format!("b{}", i - 1)
                }
            );
        }
        assert!(parse(&bomb).unwrap_err().message.contains("alias bomb"));
        let deep = "[".repeat(100) + &"]".repeat(100);
        assert!(parse(&deep).unwrap_err().message.contains("nested deeper"));
        assert!(parse("").unwrap_err().message.contains("empty"));
    }
}
