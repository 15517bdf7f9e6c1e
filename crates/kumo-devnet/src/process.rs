//! The devnet's background processes (`kumo node run`, `kumo provider run`): started in
//! their own process group (a Ctrl-C in the terminal reaches `kumo devnet up`, which then
//! stops them in order), their output appended to a log file, their pid in `DIR/<name>.pid`
//! so that `kumo devnet down` finds them from another shell.

use std::{
    fs::OpenOptions,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use rustix::process::{Pid, Signal, kill_process, test_kill_process};

use crate::DevnetError;

/// One background process of the devnet.
#[derive(Debug)]
pub struct Daemon {
    /// `node`, `provider`, `provider2`, …
    pub name: String,
    /// Where its output goes.
    pub log: PathBuf,
    pid_file: PathBuf,
    child: Option<Child>,
}

impl Daemon {
    /// Starts `exe args…` with its output appended to `log` and its pid written to
    /// `dir/<name>.pid`.
    pub fn start(
        dir: &Path,
        name: &str,
        exe: &Path,
        args: &[&std::ffi::OsStr],
        log: PathBuf,
    ) -> Result<Daemon, DevnetError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |error| DevnetError::Io { path, error }
        };
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(io(&log))?;
        let err = out.try_clone().map_err(io(&log))?;
        let child = Command::new(exe)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|error| DevnetError::Spawn {
                exe: exe.to_path_buf(),
                error,
            })?;
        let pid_file = pid_file(dir, name);
        std::fs::write(&pid_file, format!("{}\n", child.id())).map_err(io(&pid_file))?;
        Ok(Daemon {
            name: name.to_string(),
            log,
            pid_file,
            child: Some(child),
        })
    }

    /// Its process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether it still runs; `false` once it exited (its exit is collected).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }

    /// Leaves it running after this program exits (`--detach`).
    pub fn detach(mut self) {
        self.child = None;
    }

    /// SIGTERM, up to `grace` to exit, then SIGKILL; removes the pid file.
    pub fn stop(&mut self, grace: Duration) {
        if let Some(mut child) = self.child.take() {
            stop_pid(child.id(), grace);
            let _ = child.wait();
            let _ = std::fs::remove_file(&self.pid_file);
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // An interrupted `up` (an error, a panic) leaves nothing running.
        self.stop(Duration::from_secs(5));
    }
}

/// `DIR/<name>.pid`.
pub fn pid_file(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.pid"))
}

/// The pid in `DIR/<name>.pid` if that process still runs and is a `kumo` process of this
/// devnet (its command line names the devnet directory), so a reused pid is never signalled.
pub fn running(dir: &Path, name: &str) -> Option<u32> {
    let text = std::fs::read_to_string(pid_file(dir, name)).ok()?;
    let pid: u32 = text.trim().parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let alive = Pid::from_raw(pid as i32).is_some_and(|p| test_kill_process(p).is_ok());
    (alive && cmdline.contains(&*dir.to_string_lossy())).then_some(pid)
}

/// Stops the process recorded in `DIR/<name>.pid` (if it runs) and removes the file. Returns
/// the pid it stopped.
pub fn stop_recorded(dir: &Path, name: &str, grace: Duration) -> Option<u32> {
    let pid = running(dir, name);
    if let Some(pid) = pid {
        stop_pid(pid, grace);
    }
    let _ = std::fs::remove_file(pid_file(dir, name));
    pid
}

/// SIGTERM, then waits up to `grace` for the process to go, then SIGKILL.
fn stop_pid(pid: u32, grace: Duration) {
    let Some(p) = Pid::from_raw(pid as i32) else {
        return;
    };
    if kill_process(p, Signal::TERM).is_err() {
        return;
    }
    let started = Instant::now();
    while started.elapsed() < grace {
        if !alive(pid) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = kill_process(p, Signal::KILL);
}

/// Whether the process exists and is not a zombie waiting to be collected.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses: `123 (kumo) S …`.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// The last `lines` lines of a log file.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
