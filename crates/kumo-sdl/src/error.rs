//! The one error type of the SDL parser: what is wrong, at which field, on which line.
//!
//! Rendered as `services.web.expose[1].port: 70000 is outside 1-65535 (line 12)`, so a tenant
//! can go straight to the mistake.

use std::fmt;

/// Why an SDL file was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SdlError {
    /// Dotted path of the offending field, e.g. `services.web.expose[1].port` (empty when the
    /// problem is the file as a whole).
    pub path: String,
    /// 1-based line of the field in the file, when known.
    pub line: Option<usize>,
    /// What is wrong and, where it helps, how to fix it.
    pub message: String,
}

impl SdlError {
    pub(crate) fn new(path: impl Into<String>, line: usize, message: impl Into<String>) -> Self {
        SdlError {
            path: path.into(),
            line: (line > 0).then_some(line),
            message: message.into(),
        }
    }
}

impl fmt::Display for SdlError {
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

/// Where something was found: its field path and line, kept for errors found later.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Loc {
    pub(crate) path: String,
    pub(crate) line: usize,
}

impl Loc {
    pub(crate) fn new(path: impl Into<String>, line: usize) -> Loc {
        Loc {
            path: path.into(),
            line,
        }
    }

    /// An error at this place.
    pub(crate) fn err(&self, message: impl Into<String>) -> SdlError {
        SdlError::new(self.path.clone(), self.line, message)
    }

    /// The path of a dotted chain of fields below this one (`resources.cpu.units`).
    pub(crate) fn sub(&self, rel: &str) -> String {
        if self.path.is_empty() {
            rel.to_string()
        } else {
            format!("{}.{rel}", self.path)
        }
    }

    /// The path of a field below this one.
    pub(crate) fn field(&self, key: &str) -> String {
        join(&self.path, key)
    }
}

/// `parent.key`, quoting keys that would read ambiguously.
pub(crate) fn join(parent: &str, key: &str) -> String {
    let needs_quotes = key.is_empty() || key.contains(['.', '[', ']', ' ', '"']);
    let key = if needs_quotes {
        format!("{key:?}")
    } else {
        key.to_string()
    };
    if parent.is_empty() {
        key
    } else {
        format!("{parent}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_path_message_and_line() {
        let e = SdlError::new(
            "services.web.expose[1].port",
            12,
            "70000 is outside 1-65535",
        );
        assert_eq!(
            e.to_string(),
            "services.web.expose[1].port: 70000 is outside 1-65535 (line 12)"
        );
        assert_eq!(join("a", "b.c"), "a.\"b.c\"");
    }
}
