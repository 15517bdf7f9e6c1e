//! Which accelerator QEMU uses: KVM when it works, else TCG (software emulation, 10-50x slower).
//!
//! `/dev/kvm` can exist and still be useless: absent permissions, a nested hypervisor that
//! refuses, or (seen on a build machine) an `open` or ioctl that never returns. So the probe
//! starts a throwaway QEMU with KVM and the machine and CPU model VMs get (paused, `-S`), asks
//! it over QMP on stdin/stdout whether KVM is enabled, and gives up after a timeout, killing it. Whatever goes wrong, the
//! answer is TCG with the reason, which the backend shows as a warning in every VM's status.

use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

/// A QEMU accelerator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// Hardware virtualization through `/dev/kvm`.
    Kvm,
    /// QEMU's software emulation: always available, much slower.
    Tcg,
}

impl Accel {
    /// `kvm` or `tcg`, as QEMU and `kumo bench vm` write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

impl std::fmt::Display for Accel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the operator asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccelChoice {
    /// Probe KVM; fall back to TCG with a warning.
    #[default]
    Auto,
    /// KVM or nothing: the backend refuses to start without it.
    Kvm,
    /// TCG without probing (e.g. where the probe is known to hang).
    Tcg,
}

/// The accelerator chosen, and why not KVM when it is TCG.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccelProbe {
    /// What VMs will use.
    pub accel: Accel,
    /// Why KVM is not used (`None` with KVM, or when the operator chose TCG).
    pub warning: Option<String>,
}

/// Probes KVM with `qemu` (the `qemu-system-x86_64` binary), giving up after `timeout`.
pub async fn probe_kvm(qemu: &str, timeout: Duration) -> AccelProbe {
    match tokio::time::timeout(timeout, ask_qemu(qemu)).await {
        Ok(Ok(())) => AccelProbe {
            accel: Accel::Kvm,
            warning: None,
        },
        Ok(Err(why)) => tcg(format!("KVM is not usable ({why})")),
        Err(_) => tcg(format!(
            "KVM did not answer within {timeout:?} (/dev/kvm exists but hangs)"
        )),
    }
}

fn tcg(why: String) -> AccelProbe {
    AccelProbe {
        accel: Accel::Tcg,
        warning: Some(format!(
            "{why}: VMs run under TCG software emulation, many times slower; enable KVM on this host for full speed"
        )),
    }
}

/// Starts QEMU with KVM and no machine, and asks it over QMP whether KVM is enabled. The
/// child is killed when this future is dropped (the timeout), even if it hangs in the kernel
/// (then it is reaped whenever the kernel lets it go).
async fn ask_qemu(qemu: &str) -> Result<(), String> {
    let mut child = Command::new(qemu)
        // The machine and CPU model VMs use, created but not run (-S): some hosts accept
        // KVM for `-machine none` and fail only when a vCPU's registers are set.
        .args([
            "-machine",
            "q35,accel=kvm",
            "-cpu",
            "host",
            "-S",
            "-m",
            "64",
            "-nodefaults",
            "-display",
            "none",
            "-qmp",
            "stdio",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {qemu}: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    stdin
        .write_all(
            b"{\"execute\":\"qmp_capabilities\"}\n{\"execute\":\"query-kvm\"}\n{\"execute\":\"quit\"}\n",
        )
        .await
        .map_err(|e| e.to_string())?;
    while let Some(line) = lines.next_line().await.map_err(|e| e.to_string())? {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if let Some(ret) = msg.get("return")
            && ret.get("enabled").is_some()
        {
            let _ = child.wait().await;
            return if ret["enabled"] == true {
                Ok(())
            } else {
                Err("QEMU reports KVM disabled".into())
            };
        }
    }
    // QEMU exited before answering: it printed why on stderr.
    let output = child.wait_with_output().await.map_err(|e| e.to_string())?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    Err(stderr
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("QEMU exited without an answer")
        .trim()
        .to_string())
}
