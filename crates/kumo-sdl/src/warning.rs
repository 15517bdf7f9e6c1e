//! Warnings: parts of an accepted file that have no effect, each with its field and line.
//!
//! Akash's Go parser decodes most sections of an SDL file without strict field checks, so a
//! key it does not know (`environment` for `env`, a typo such as `servcie`) is dropped without
//! a word, and the service starts without what the tenant meant. Kumo accepts the same files
//! (so that every file Akash deploys deploys here, with the same manifest hash) but says what
//! it ignores and, where a known field is close, which one was probably meant. `--strict` in
//! the CLI turns these warnings into errors.

use std::fmt;

use crate::error::{SdlError, join};

/// Something in an accepted file that is ignored, or accepted but has no effect.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SdlWarning {
    /// Dotted path of the field, e.g. `services.web.environment`.
    pub path: String,
    /// 1-based line of the field in the file, when known.
    pub line: Option<usize>,
    /// What is ignored and why, and what was probably meant.
    pub message: String,
}

impl SdlWarning {
    pub(crate) fn new(path: impl Into<String>, line: usize, message: impl Into<String>) -> Self {
        SdlWarning {
            path: path.into(),
            line: (line > 0).then_some(line),
            message: message.into(),
        }
    }

    /// The same finding as an error, for callers that refuse what Akash would ignore
    /// (`kumo sdl check --strict`, `kumo deploy --strict`).
    pub fn to_error(&self) -> SdlError {
        SdlError {
            path: self.path.clone(),
            line: self.line,
            message: format!("{} [refused: strict mode]", self.message),
        }
    }
}

impl fmt::Display for SdlWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)?;
        } else {
            write!(f, "{}: {}", self.path, self.message)?;
        }
        if let Some(line) = self.line {
            write!(f, " (line {line})")?;
        }
        Ok(())
    }
}

/// Keys docker-compose users write under a service, which have no SDL equivalent.
const COMPOSE_ONLY: &[(&str, &str)] = &[
    (
        "depends_on",
        "docker-compose's `depends_on` has no SDL equivalent; services start together and reach each other by name",
    ),
    (
        "depends-on",
        "ignored like `depends_on`, docker-compose's key, which has no SDL equivalent; services start together and reach each other by name",
    ),
    (
        "restart",
        "docker-compose's `restart` has no SDL equivalent; the provider always restarts a service that exits",
    ),
    (
        "container_name",
        "docker-compose's `container_name` has no SDL equivalent; services are reached by their name under `services`",
    ),
];

/// Keys that mean a known field under another name: (written, meant, hint). The hint applies
/// only where `meant` is a field of the section the key is in.
const ALIASES: &[(&str, &str, &str)] = &[
    (
        "environment",
        "env",
        "did you mean `env`? (a list of NAME=value)",
    ),
    ("envs", "env", "did you mean `env`? (a list of NAME=value)"),
    ("cmd", "command", "did you mean `command`?"),
    ("entrypoint", "command", "did you mean `command`?"),
    ("arguments", "args", "did you mean `args`?"),
    (
        "ports",
        "expose",
        "did you mean `expose`? (a list of `port:` entries)",
    ),
    ("protocol", "proto", "did you mean `proto`?"),
    (
        "volumes",
        "params",
        "did you mean `params.storage`? (declare the volume in the compute profile's `storage`, mount it with params.storage.<volume>.mount)",
    ),
    (
        "image_credentials",
        "credentials",
        "did you mean `credentials`?",
    ),
    ("signed_by", "signedBy", "did you mean `signedBy`?"),
    ("read_only", "readOnly", "did you mean `readOnly`?"),
    ("price", "pricing", "did you mean `pricing`?"),
    ("replicas", "count", "did you mean `count`?"),
    (
        "hosts",
        "accept",
        "did you mean `accept`? (the host names to serve)",
    ),
];

/// The warning for `key`, a key of the section at `parent` that Akash's parser drops without a
/// word; `fields` are the keys the section has.
pub(crate) fn ignored_key(parent: &str, key: &str, line: usize, fields: &[&str]) -> SdlWarning {
    let is_service = fields.contains(&"image");
    let reason = if let Some((_, why)) = COMPOSE_ONLY.iter().find(|(k, _)| is_service && *k == key)
    {
        format!("ignored (Akash ignores it too): {why}")
    } else {
        let hint = match suggestion(key, fields) {
            Some(hint) => hint,
            None => format!("the fields here are: {}", fields.join(", ")),
        };
        format!("not an SDL field here, ignored (Akash ignores it too); {hint}")
    };
    SdlWarning::new(join(parent, key), line, reason)
}

/// The error for `key` where Akash's parser refuses unknown keys (the top level, CPU, GPU and
/// storage attributes) and in Kumo's own `vm` block.
pub(crate) fn refused_key(parent: &str, key: &str, line: usize, fields: &[&str]) -> SdlError {
    let hint = suggestion(key, fields)
        .map(|h| format!("; {h}"))
        .unwrap_or_default();
    SdlError::new(
        join(parent, key),
        line,
        format!(
            "unknown field (expected one of: {}){hint}",
            fields.join(", ")
        ),
    )
}

/// "did you mean …?" for a key close to one of `fields`: a known alias, or a field within a
/// small edit distance (a typo: `servcie`, `max_body_sise`, `read-only`).
fn suggestion(key: &str, fields: &[&str]) -> Option<String> {
    if let Some((_, _, hint)) = ALIASES
        .iter()
        .find(|(k, meant, _)| *k == key && fields.contains(meant))
    {
        return Some((*hint).to_string());
    }
    let normal = |s: &str| s.to_ascii_lowercase().replace('-', "_");
    let written = normal(key);
    let (best, distance) = fields
        .iter()
        .map(|f| (*f, edit_distance(&written, &normal(f))))
        .min_by_key(|(_, d)| *d)?;
    let allowed = if best.len() <= 4 { 1 } else { 2 };
    (distance <= allowed).then(|| format!("did you mean `{best}`?"))
}

/// Optimal string alignment distance: insertions, deletions, substitutions and swaps of two
/// neighbouring characters each cost 1.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        let service = ["image", "command", "args", "env", "expose", "params"];
        assert_eq!(
            suggestion("environment", &service).as_deref(),
            Some("did you mean `env`? (a list of NAME=value)")
        );
        assert_eq!(
            suggestion("cmd", &service).as_deref(),
            Some("did you mean `command`?")
        );
        assert_eq!(
            suggestion("servcie", &["service", "global", "ip"]).as_deref(),
            Some("did you mean `service`?")
        );
        assert_eq!(
            suggestion("read-only", &["mount", "readOnly"]).as_deref(),
            Some("did you mean `readOnly`?")
        );
        // An alias applies only where its field exists.
        assert_eq!(suggestion("environment", &["port", "as"]), None);
        assert_eq!(
            suggestion("placement", &["attributes", "signedBy", "pricing"]),
            None
        );
        assert_eq!(edit_distance("servcie", "service"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn compose_keys_only_under_a_service() {
        let w = ignored_key("services.web", "depends-on", 7, &["image", "env"]);
        assert!(w.message.contains("like `depends_on`"), "{w}");
        let w = ignored_key("profiles", "restart", 3, &["compute", "placement"]);
        assert!(
            w.message
                .contains("the fields here are: compute, placement"),
            "{w}"
        );
    }
}
