//! Which accelerator QEMU uses: KVM when it runs a guest, else TCG (software emulation, 10-50x
//! slower).
//!
//! `/dev/kvm` can exist and still be useless: absent permissions, a nested hypervisor that
//! refuses, an `open` or ioctl that never returns, or (seen on build machines) a KVM that QEMU
//! opens and reports enabled but that never gets a guest kernel running: SeaBIOS's real-mode
//! code runs, long mode never does. Asking QEMU whether KVM is enabled cannot tell; running a
//! guest can. So the probe boots a test guest under KVM with the machine and CPU model VMs
//! get: a 64 KiB firmware (`kvm_probe.S`, embedded here) that goes from the reset vector
//! through protected mode and paging into long mode, writes a marker to the serial port and
//! exits QEMU through `isa-debug-exit`. KVM is used only if the marker comes and QEMU exits
//! with the debug-exit status within the timeout (the guest needs about a millisecond; QEMU's
//! start most of the rest). Whatever goes wrong, the answer is TCG with the reason, which the
//! backend shows as a warning in every VM's status, the provider's `GET /status` and
//! `kumo bench vm`.
//!
//! Under TCG a VM's translation cache is capped at [`TCG_TB_MIB`] ([`vm_machine_args`]), so
//! that it fits the VM's memory limit ([`crate::cgroup`]).

use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
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

/// The machine type and CPU model VMs run with under `accel` (the probe uses the same: a host
/// may run one CPU model and not another).
pub fn machine_and_cpu(accel: Accel) -> (&'static str, &'static str) {
    match accel {
        Accel::Kvm => ("q35,accel=kvm", "host"),
        Accel::Tcg => ("q35,accel=tcg", "max"),
    }
}

/// QEMU's TCG translation cache, in MiB (`-accel tcg,tb-size=`). QEMU's own default is up to
/// 1 GiB (an eighth of the host's memory), which would have to be part of every TCG VM's
/// memory limit ([`crate::cgroup`]); a guest's working set of translated code fits in far
/// less, and a full cache is flushed and filled again.
pub const TCG_TB_MIB: u64 = 256;

/// The `-machine` (and under TCG `-accel`) arguments of a VM under `accel`: the machine of
/// [`machine_and_cpu`], with the translation cache capped at [`TCG_TB_MIB`] under TCG
/// (`-accel` and `-machine accel=` do not go together).
pub fn vm_machine_args(accel: Accel) -> Vec<String> {
    match accel {
        Accel::Kvm => vec!["-machine".into(), machine_and_cpu(accel).0.into()],
        Accel::Tcg => vec![
            "-machine".into(),
            "q35".into(),
            "-accel".into(),
            format!("tcg,tb-size={TCG_TB_MIB}"),
        ],
    }
}

/// The test guest's code, from `kvm_probe.S` (linked at offset 0 of the firmware).
const PROBE_CODE: [u8; 214] = [
    0xfa, 0x31, 0xc0, 0x8e, 0xd8, 0x8e, 0xc0, 0x8e, 0xd0, 0xbf, 0x00, 0x10, 0xb9, 0x00, 0x0c, 0x66,
    0x31, 0xc0, 0xfc, 0x66, 0xf3, 0xab, 0x66, 0xc7, 0x06, 0x00, 0x10, 0x03, 0x20, 0x00, 0x00, 0x66,
    0xc7, 0x06, 0x00, 0x20, 0x03, 0x30, 0x00, 0x00, 0x66, 0xc7, 0x06, 0x00, 0x30, 0x83, 0x00, 0x00,
    0x00, 0x2e, 0x66, 0x0f, 0x01, 0x16, 0xd0, 0x00, 0x0f, 0x20, 0xc0, 0x0c, 0x01, 0x0f, 0x22, 0xc0,
    0x66, 0xea, 0x48, 0x00, 0x0f, 0x00, 0x08, 0x00, 0x66, 0xb8, 0x10, 0x00, 0x8e, 0xd8, 0x8e, 0xc0,
    0x8e, 0xd0, 0x0f, 0x20, 0xe0, 0x83, 0xc8, 0x20, 0x0f, 0x22, 0xe0, 0xb8, 0x00, 0x10, 0x00, 0x00,
    0x0f, 0x22, 0xd8, 0xb9, 0x80, 0x00, 0x00, 0xc0, 0x0f, 0x32, 0x0d, 0x00, 0x01, 0x00, 0x00, 0x0f,
    0x30, 0x0f, 0x20, 0xc0, 0x0d, 0x00, 0x00, 0x00, 0x80, 0x0f, 0x22, 0xc0, 0xea, 0x83, 0x00, 0x0f,
    0x00, 0x18, 0x00, 0x66, 0xba, 0xf8, 0x03, 0x48, 0x8d, 0x35, 0x10, 0x00, 0x00, 0x00, 0xb9, 0x12,
    0x00, 0x00, 0x00, 0xac, 0xee, 0xe2, 0xfc, 0xb0, 0x31, 0xe6, 0xf4, 0xf4, 0xeb, 0xfd, 0x6b, 0x75,
    0x6d, 0x6f, 0x2d, 0x6b, 0x76, 0x6d, 0x2d, 0x70, 0x72, 0x6f, 0x62, 0x65, 0x2d, 0x6f, 0x6b, 0x0a,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0x00, 0x00, 0x00, 0x9a, 0xcf, 0x00,
    0xff, 0xff, 0x00, 0x00, 0x00, 0x92, 0xcf, 0x00, 0xff, 0xff, 0x00, 0x00, 0x00, 0x9a, 0xaf, 0x00,
    0x1f, 0x00, 0xb0, 0x00, 0x0f, 0x00,
];
/// The reset vector's far jump to `_start` (`ljmp $0xf000, $0`), at offset 0xfff0.
const PROBE_RESET: [u8; 5] = [0xea, 0x00, 0x00, 0x00, 0xf0];
/// What the test guest writes to the serial port once in long mode.
pub const PROBE_MARKER: &str = "kumo-kvm-probe-ok\n";
/// QEMU's exit status when the test guest writes 0x31 to `isa-debug-exit`: `(0x31 << 1) | 1`.
pub const PROBE_EXIT_STATUS: i32 = 99;

/// The test guest as a 64 KiB firmware image (QEMU's `-bios` wants a multiple of 64 KiB); the
/// rest is `hlt`.
pub fn probe_firmware() -> Vec<u8> {
    let mut image = vec![0xf4; 0x10000];
    image[..PROBE_CODE.len()].copy_from_slice(&PROBE_CODE);
    image[0xfff0..0xfff0 + PROBE_RESET.len()].copy_from_slice(&PROBE_RESET);
    image
}

/// Probes KVM with `qemu` (the `qemu-system-x86_64` binary): KVM if it runs the test guest
/// within `timeout`, else TCG with the reason.
pub async fn probe_kvm(qemu: &str, timeout: Duration) -> AccelProbe {
    if !std::path::Path::new("/dev/kvm").exists() {
        return tcg("there is no /dev/kvm (the kvm module is not loaded, or not passed into this container)".into());
    }
    match run_test_guest(qemu, Accel::Kvm, timeout).await {
        Ok(took) => {
            tracing::info!(?took, "KVM ran the test guest");
            AccelProbe {
                accel: Accel::Kvm,
                warning: None,
            }
        }
        Err(why) => tcg(format!("KVM does not run a guest on this host: {why}")),
    }
}

fn tcg(why: String) -> AccelProbe {
    AccelProbe {
        accel: Accel::Tcg,
        warning: Some(format!(
            "{why}; VMs run under TCG software emulation, many times slower; enable KVM on this host for full speed"
        )),
    }
}

/// Boots the test guest under `accel` with the machine and CPU model VMs get; how long QEMU
/// took, from start to exit, or why the guest did not finish. QEMU is killed if it is still
/// there after `timeout` (or when this future is dropped), even if it hangs in the kernel
/// (then it is reaped whenever the kernel lets it go).
pub async fn run_test_guest(
    qemu: &str,
    accel: Accel,
    timeout: Duration,
) -> Result<Duration, String> {
    let dir = tempfile::Builder::new()
        .prefix("kumo-kvm-probe-")
        .tempdir()
        .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
    let firmware = dir.path().join("probe.bin");
    tokio::fs::write(&firmware, probe_firmware())
        .await
        .map_err(|e| format!("cannot write {}: {e}", firmware.display()))?;
    let (machine, cpu) = machine_and_cpu(accel);
    let started = std::time::Instant::now();
    let child = Command::new(qemu)
        .args(["-machine", machine, "-cpu", cpu, "-m", "16", "-smp", "1"])
        .args(["-nodefaults", "-display", "none", "-no-reboot", "-bios"])
        .arg(&firmware)
        .args([
            "-serial",
            "stdio",
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=0x04",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {qemu}: {e}; install qemu-system-x86"))?;
    let output = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => return Err(format!("waiting for QEMU: {e}")),
        Err(_) => {
            return Err(format!(
                "QEMU starts with {accel} but the test guest did not finish within {timeout:?} (the guest never runs)"
            ));
        }
    };
    let took = started.elapsed();
    let serial = String::from_utf8_lossy(&output.stdout);
    if output.status.code() == Some(PROBE_EXIT_STATUS) && serial.contains(PROBE_MARKER) {
        return Ok(took);
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let said = lines
        .iter()
        .find(|l| l.to_ascii_lowercase().contains("error"))
        .or(lines.first());
    let exit = {
        use std::os::unix::process::ExitStatusExt;
        match (output.status.code(), output.status.signal()) {
            (Some(code), _) => format!("QEMU exited with status {code}"),
            (None, Some(signal)) => format!("QEMU was killed by signal {signal}"),
            (None, None) => "QEMU exited".to_string(),
        }
    };
    let ran = if serial.contains(PROBE_MARKER) {
        "the test guest reached long mode but"
    } else {
        "the test guest never reached long mode:"
    };
    Err(match said {
        Some(said) => format!("{ran} {exit}: {said}"),
        None => format!("{ran} {exit}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The embedded bytes are `kvm_probe.S` assembled (checked where binutils is installed, as
    /// it is wherever `.ci/run` ran).
    #[test]
    fn probe_bytes_match_the_source() {
        let tools = ["as", "ld"].iter().all(|t| {
            std::process::Command::new(t)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        });
        if !tools {
            eprintln!(
                "SKIPPED: binutils (as, ld) missing: the probe's bytes are not checked against kvm_probe.S"
            );
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/kvm_probe.S");
        let object = dir.path().join("probe.o");
        let binary = dir.path().join("probe.bin");
        let ok = std::process::Command::new("as")
            .args(["--64", "-o"])
            .arg(&object)
            .arg(&source)
            .status()
            .unwrap();
        assert!(ok.success());
        let ok = std::process::Command::new("ld")
            .args([
                "-m",
                "elf_x86_64",
                "-Ttext=0",
                "-e",
                "_start",
                "--oformat=binary",
                "-o",
            ])
            .arg(&binary)
            .arg(&object)
            .status()
            .unwrap();
        assert!(ok.success());
        let assembled = std::fs::read(&binary).unwrap();
        assert!(
            assembled == probe_firmware(),
            "PROBE_CODE/PROBE_RESET differ from kvm_probe.S assembled: update them"
        );
    }

    /// A stand-in for `qemu-system-x86_64`: a shell script (the real QEMU's failures cannot be
    /// had on demand).
    fn fake_qemu(dir: &std::path::Path, script: &str) -> String {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("qemu");
        std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path.display().to_string()
    }

    #[tokio::test]
    async fn a_guest_that_never_finishes_is_given_up_on_and_killed() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let qemu = fake_qemu(
            dir.path(),
            &format!("echo $$ > {}; exec sleep 60", pid_file.display()),
        );
        let started = std::time::Instant::now();
        let err = run_test_guest(&qemu, Accel::Kvm, Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(err.contains("did not finish within 2s"), "{err}");
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        // kill_on_drop: the stand-in is gone (or a zombie about to be reaped) soon after.
        let mut gone = false;
        for _ in 0..50 {
            let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()));
            if stat.map_or(true, |s| {
                s.rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z'))
            }) {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(gone, "the QEMU stand-in {pid} still runs");
    }

    #[tokio::test]
    async fn qemu_that_aborts_gives_its_error_as_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        // What QEMU 7.2 does on a host whose KVM refuses the `host` CPU's MSRs.
        let qemu = fake_qemu(
            dir.path(),
            "echo 'qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69' >&2\n\
             echo 'kvm.c:3183: kvm_buf_set_msrs: Assertion failed.' >&2\nkill -ABRT $$",
        );
        let err = run_test_guest(&qemu, Accel::Kvm, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(
            err.contains("never reached long mode")
                && err.contains("signal 6")
                && err.contains("failed to set MSR 0x10a"),
            "{err}"
        );
        // Exiting with the right status is not enough: the marker must have come.
        let qemu = fake_qemu(dir.path(), "exit 99");
        let err = run_test_guest(&qemu, Accel::Kvm, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(err.contains("status 99"), "{err}");
        let err = run_test_guest("/nonexistent/qemu", Accel::Kvm, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(err.contains("cannot run /nonexistent/qemu"), "{err}");
    }
}
