//! `kumo node run` child processes: start, wait until they serve, `kill -9`, stop gracefully,
//! restart. A [`NodeProcess`] kills its child when dropped, so a failing test or an interrupted
//! benchmark leaves no node running.
//!
//! Each node's standard output and error are appended to `HOME/node.log`.

use std::{
    fs::OpenOptions,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use kumo_client::NodeClient;

/// The log file's name in a node's home.
pub const LOG_FILE: &str = "node.log";

/// Why a node process misbehaved.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// It could not be started.
    #[error("cannot start {exe} for {home}: {error}")]
    Spawn {
        /// The binary.
        exe: PathBuf,
        /// The node's home.
        home: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// It exited, or did not serve in time.
    #[error("node {home} {problem}; the end of its log:\n{log}")]
    NotServing {
        /// The node's home.
        home: PathBuf,
        /// What happened.
        problem: String,
        /// The last lines of `node.log`.
        log: String,
    },
}

/// A `kumo node run --home HOME` child process.
#[derive(Debug)]
pub struct NodeProcess {
    exe: PathBuf,
    home: PathBuf,
    api: String,
    child: Option<Child>,
}

impl NodeProcess {
    /// Starts `exe node run --home home`; `api` is the URL its config serves the API on.
    pub fn start(exe: &Path, home: &Path, api: &str) -> Result<NodeProcess, ProcessError> {
        let mut p = NodeProcess {
            exe: exe.to_path_buf(),
            home: home.to_path_buf(),
            api: api.to_string(),
            child: None,
        };
        p.spawn()?;
        Ok(p)
    }

    fn spawn(&mut self) -> Result<(), ProcessError> {
        let err = |error| ProcessError::Spawn {
            exe: self.exe.clone(),
            home: self.home.clone(),
            error,
        };
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.home.join(LOG_FILE))
            .map_err(err)?;
        let log2 = log.try_clone().map_err(err)?;
        let child = Command::new(&self.exe)
            .arg("node")
            .arg("run")
            .arg("--home")
            .arg(&self.home)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(err)?;
        self.child = Some(child);
        Ok(())
    }

    /// The node's home.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// The node's API URL.
    pub fn api(&self) -> &str {
        &self.api
    }

    /// A client of its API.
    pub fn client(&self) -> NodeClient {
        NodeClient::new(&self.api).expect("the testnet's API URLs are valid")
    }

    /// The child's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the child is still running.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.home.join(LOG_FILE)).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn not_serving(&self, problem: String) -> ProcessError {
        ProcessError::NotServing {
            home: self.home.clone(),
            problem,
            log: self.log_tail(30),
        }
    }

    /// Waits until its API answers `GET /v1/status`, or fails if it exits or `timeout` passes.
    pub async fn wait_serving(&mut self, timeout: Duration) -> Result<(), ProcessError> {
        let client = self.client();
        let started = Instant::now();
        loop {
            if !self.is_running() {
                return Err(self.not_serving("exited".into()));
            }
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(2), client.status()).await {
                return Ok(());
            }
            if started.elapsed() > timeout {
                return Err(self.not_serving(format!("did not serve within {timeout:?}")));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `kill -9`: the process dies at once, wherever it was.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits up to `timeout` for it to exit (SIGKILL after). Returns whether it
    /// exited by itself, successfully.
    pub fn terminate(&mut self, timeout: Duration) -> bool {
        let Some(mut c) = self.child.take() else {
            return false;
        };
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status()
            .is_ok_and(|s| s.success());
        let started = Instant::now();
        while sent && started.elapsed() < timeout {
            if let Ok(Some(status)) = c.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
        false
    }

    /// Starts it again (after [`NodeProcess::kill`] or [`NodeProcess::terminate`]).
    pub fn restart(&mut self) -> Result<(), ProcessError> {
        self.kill();
        self.spawn()
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
