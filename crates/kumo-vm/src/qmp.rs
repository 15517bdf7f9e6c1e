//! A small client for QEMU's machine protocol (QMP) over the VM's unix socket.
//!
//! QMP is line-delimited JSON. On connect QEMU sends a greeting (`{"QMP": {...}}`); the client
//! must send `qmp_capabilities` before any other command. Each command gets one answer,
//! `{"return": ...}` or `{"error": {"class", "desc"}}`; asynchronous events (`{"event": ...}`)
//! may arrive in between and are skipped here.
//!
//! ```text
//! <- {"QMP": {"version": {...}, "capabilities": []}}
//! -> {"execute": "qmp_capabilities"}
//! <- {"return": {}}
//! -> {"execute": "query-status"}
//! <- {"event": "RESUME", ...}                 (skipped)
//! <- {"return": {"status": "running", "running": true}}
//! ```
//!
//! A connection is opened per operation: QEMU serves one QMP client at a time on a socket, and
//! a provider that restarted must be able to connect again.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

/// Why a QMP exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// The socket could not be opened (QEMU is not running, or not yet listening).
    #[error("cannot connect to QMP socket {path}: {source}")]
    Connect {
        /// The socket's path.
        path: String,
        /// What the connect call said.
        source: std::io::Error,
    },
    /// Reading or writing the socket failed, or QEMU closed it.
    #[error("QMP connection: {0}")]
    Io(#[from] std::io::Error),
    /// QEMU sent something that is not QMP.
    #[error("QMP: unexpected message {0}")]
    Protocol(String),
    /// QEMU refused a command.
    #[error("QMP command {command} failed: {class}: {desc}")]
    Command {
        /// The command sent.
        command: String,
        /// QEMU's error class, e.g. `GenericError`.
        class: String,
        /// QEMU's explanation.
        desc: String,
    },
    /// QEMU did not answer in time.
    #[error("QMP: no answer within {0:?}")]
    Timeout(Duration),
}

/// What `query-status` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmRunState {
    /// QEMU's run state: `running`, `paused`, `shutdown` (the guest powered off and QEMU was
    /// told to wait), `prelaunch`, `internal-error`, …
    pub status: String,
    /// Whether the guest's CPUs are running.
    pub running: bool,
}

/// A QMP session on one VM's socket.
#[derive(Debug)]
pub struct Qmp {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    timeout: Duration,
}

impl Qmp {
    /// Connects to `socket`, reads the greeting and enters command mode; every step, and every
    /// later command, must finish within `timeout`.
    pub async fn connect(socket: &Path, timeout: Duration) -> Result<Qmp, QmpError> {
        let stream = tokio::time::timeout(timeout, UnixStream::connect(socket))
            .await
            .map_err(|_| QmpError::Timeout(timeout))?
            .map_err(|source| QmpError::Connect {
                path: socket.display().to_string(),
                source,
            })?;
        let (read, writer) = stream.into_split();
        let mut qmp = Qmp {
            reader: BufReader::new(read),
            writer,
            timeout,
        };
        let greeting = qmp.read_message().await?;
        if greeting.get("QMP").is_none() {
            return Err(QmpError::Protocol(greeting.to_string()));
        }
        qmp.execute("qmp_capabilities", None).await?;
        Ok(qmp)
    }

    /// Sends `command` (with `arguments`, if any) and returns its `return` value.
    pub async fn execute(
        &mut self,
        command: &str,
        arguments: Option<Value>,
    ) -> Result<Value, QmpError> {
        let mut request = json!({ "execute": command });
        if let Some(arguments) = arguments {
            request["arguments"] = arguments;
        }
        let mut line = request.to_string();
        line.push('\n');
        tokio::time::timeout(self.timeout, self.writer.write_all(line.as_bytes()))
            .await
            .map_err(|_| QmpError::Timeout(self.timeout))??;
        loop {
            let message = self.read_message().await?;
            if message.get("event").is_some() {
                continue;
            }
            if let Some(ret) = message.get("return") {
                return Ok(ret.clone());
            }
            if let Some(error) = message.get("error") {
                let field = |k: &str| {
                    error
                        .get(k)
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string()
                };
                return Err(QmpError::Command {
                    command: command.to_string(),
                    class: field("class"),
                    desc: field("desc"),
                });
            }
            return Err(QmpError::Protocol(message.to_string()));
        }
    }

    /// `query-status`: whether the guest runs.
    pub async fn query_status(&mut self) -> Result<VmRunState, QmpError> {
        let ret = self.execute("query-status", None).await?;
        Ok(VmRunState {
            status: ret
                .get("status")
                .and_then(Value::as_str)
                .unwrap_or("unknown")
                .to_string(),
            running: ret.get("running").and_then(Value::as_bool).unwrap_or(false),
        })
    }

    /// `system_powerdown`: presses the ACPI power button (the guest shuts down if it listens).
    pub async fn system_powerdown(&mut self) -> Result<(), QmpError> {
        self.execute("system_powerdown", None).await.map(drop)
    }

    /// `system_reset`: a hard reset, like the reset button; disks are kept.
    pub async fn system_reset(&mut self) -> Result<(), QmpError> {
        self.execute("system_reset", None).await.map(drop)
    }

    /// `cont`: resumes a stopped guest (after a shutdown and reset).
    pub async fn cont(&mut self) -> Result<(), QmpError> {
        self.execute("cont", None).await.map(drop)
    }

    /// `quit`: QEMU exits at once (the guest is not asked).
    pub async fn quit(&mut self) -> Result<(), QmpError> {
        match self.execute("quit", None).await {
            Ok(_) => Ok(()),
            // QEMU may close the socket before its answer arrives.
            Err(QmpError::Io(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn read_message(&mut self) -> Result<Value, QmpError> {
        let mut line = String::new();
        let n = tokio::time::timeout(self.timeout, self.reader.read_line(&mut line))
            .await
            .map_err(|_| QmpError::Timeout(self.timeout))??;
        if n == 0 {
            return Err(QmpError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "QEMU closed the QMP socket",
            )));
        }
        serde_json::from_str(&line).map_err(|_| QmpError::Protocol(line.trim().to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::UnixListener;

    /// A QMP server speaking the protocol as QEMU does, for the parts QEMU is not needed for
    /// (the real exchange is covered by the tests under `tests/`).
    async fn serve(listener: UnixListener, answers: Vec<&'static str>) {
        let (stream, _) = listener.accept().await.unwrap();
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        write
            .write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\n")
            .await
            .unwrap();
        for answer in answers {
            lines.next_line().await.unwrap().unwrap();
            write.write_all(answer.as_bytes()).await.unwrap();
        }
    }

    #[tokio::test]
    async fn skips_events_and_reports_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let server = tokio::spawn(serve(
            listener,
            vec![
                "{\"return\": {}}\n",
                "{\"event\": \"RESUME\"}\n{\"return\": {\"status\": \"running\", \"running\": true}}\n",
                "{\"error\": {\"class\": \"GenericError\", \"desc\": \"nope\"}}\n",
            ],
        ));
        let mut qmp = Qmp::connect(&path, Duration::from_secs(5)).await.unwrap();
        let state = qmp.query_status().await.unwrap();
        assert_eq!(state.status, "running");
        assert!(state.running);
        let err = qmp.system_reset().await.unwrap_err().to_string();
        assert!(
            err.contains("system_reset") && err.contains("nope"),
            "{err}"
        );
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let _listener = UnixListener::bind(&path).unwrap();
        let err = Qmp::connect(&path, Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(matches!(err, QmpError::Timeout(_)), "{err}");
    }
}
