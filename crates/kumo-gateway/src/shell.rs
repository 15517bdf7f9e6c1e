//! The framing of a shell session (`GET /lease/…/shell`, a WebSocket): every message is a
//! binary frame whose first byte says what it carries. The codes are Akash's
//! (`lease shell` in akash-network/provider), so its clients read our frames:
//!
//! | tag | direction | payload |
//! | --- | --- | --- |
//! | 100 | server → client | stdout bytes (all output of a TTY session) |
//! | 101 | server → client | stderr bytes |
//! | 102 | server → client | the result, JSON `{"exit_code":N}`; the last frame |
//! | 103 | server → client | a failure (UTF-8 text); the last frame |
//! | 104 | client → server | stdin bytes; an empty payload closes stdin (end-of-file) |
//! | 105 | client → server | terminal resize: columns, rows as two big-endian u16 |
//!
//! ```
//! use kumo_gateway::shell::Frame;
//! let frame = Frame::Resize { columns: 80, rows: 24 };
//! assert_eq!(frame.encode(), [105, 0, 80, 0, 24]);
//! assert_eq!(Frame::decode(&frame.encode()).unwrap(), frame);
//! ```

use serde::{Deserialize, Serialize};

/// Tag of a stdout frame.
pub const STDOUT: u8 = 100;
/// Tag of a stderr frame.
pub const STDERR: u8 = 101;
/// Tag of the result frame.
pub const RESULT: u8 = 102;
/// Tag of a failure frame.
pub const FAILURE: u8 = 103;
/// Tag of a stdin frame.
pub const STDIN: u8 = 104;
/// Tag of a resize frame.
pub const RESIZE: u8 = 105;

/// One message of a shell session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Output on stdout.
    Stdout(Vec<u8>),
    /// Output on stderr.
    Stderr(Vec<u8>),
    /// The command ended with this exit code.
    Exit(i64),
    /// The session failed (the engine went away, …); no exit code will come.
    Failure(String),
    /// Input; empty means end-of-file.
    Stdin(Vec<u8>),
    /// The client's terminal has a new size.
    Resize {
        /// Width in characters.
        columns: u16,
        /// Height in lines.
        rows: u16,
    },
}

#[derive(Serialize, Deserialize)]
struct ExitPayload {
    exit_code: i64,
}

/// A frame that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// An empty message.
    #[error("empty shell frame")]
    Empty,
    /// A tag this version does not know.
    #[error("unknown shell frame tag {0}")]
    UnknownTag(u8),
    /// The payload does not fit the tag.
    #[error("bad payload for shell frame tag {tag}: {reason}")]
    BadPayload {
        /// The tag.
        tag: u8,
        /// What is wrong.
        reason: String,
    },
}

impl Frame {
    /// The frame as a WebSocket binary message.
    pub fn encode(&self) -> Vec<u8> {
        let (tag, payload): (u8, Vec<u8>) = match self {
            Frame::Stdout(b) => (STDOUT, b.clone()),
            Frame::Stderr(b) => (STDERR, b.clone()),
            Frame::Exit(code) => (
                RESULT,
                serde_json::to_vec(&ExitPayload { exit_code: *code }).expect("serializes"),
            ),
            Frame::Failure(m) => (FAILURE, m.as_bytes().to_vec()),
            Frame::Stdin(b) => (STDIN, b.clone()),
            Frame::Resize { columns, rows } => {
                let mut p = columns.to_be_bytes().to_vec();
                p.extend_from_slice(&rows.to_be_bytes());
                (RESIZE, p)
            }
        };
        let mut out = Vec::with_capacity(1 + payload.len());
        out.push(tag);
        out.extend_from_slice(&payload);
        out
    }

    /// Reads a frame from a WebSocket binary message.
    pub fn decode(message: &[u8]) -> Result<Frame, FrameError> {
        let (&tag, payload) = message.split_first().ok_or(FrameError::Empty)?;
        let bad = |reason: &str| FrameError::BadPayload {
            tag,
            reason: reason.into(),
        };
        Ok(match tag {
            STDOUT => Frame::Stdout(payload.to_vec()),
            STDERR => Frame::Stderr(payload.to_vec()),
            RESULT => {
                let p: ExitPayload = serde_json::from_slice(payload)
                    .map_err(|e| bad(&format!("expected {{\"exit_code\":N}}: {e}")))?;
                Frame::Exit(p.exit_code)
            }
            FAILURE => Frame::Failure(String::from_utf8_lossy(payload).into_owned()),
            STDIN => Frame::Stdin(payload.to_vec()),
            RESIZE => match payload {
                [c0, c1, r0, r1] => Frame::Resize {
                    columns: u16::from_be_bytes([*c0, *c1]),
                    rows: u16::from_be_bytes([*r0, *r1]),
                },
                _ => return Err(bad("expected 4 bytes (columns, rows)")),
            },
            other => return Err(FrameError::UnknownTag(other)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_bad_ones_are_named() {
        for frame in [
            Frame::Stdout(b"hi\n".to_vec()),
            Frame::Stderr(vec![]),
            Frame::Exit(-1),
            Frame::Exit(3),
            Frame::Failure("engine gone".into()),
            Frame::Stdin(vec![0, 255]),
            Frame::Resize {
                columns: 300,
                rows: 2,
            },
        ] {
            assert_eq!(Frame::decode(&frame.encode()).unwrap(), frame);
        }
        assert_eq!(Frame::Exit(3).encode(), b"\x66{\"exit_code\":3}");
        assert_eq!(Frame::decode(&[]), Err(FrameError::Empty));
        assert_eq!(Frame::decode(&[7, 1]), Err(FrameError::UnknownTag(7)));
        assert!(matches!(
            Frame::decode(&[RESIZE, 1, 2, 3]),
            Err(FrameError::BadPayload { tag: RESIZE, .. })
        ));
        assert!(Frame::decode(&[RESULT, b'x']).is_err());
    }
}
