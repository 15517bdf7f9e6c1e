//! What the QEMU tests (`qemu.rs`, `containment.rs`) share: the test guest, an SSH key pair, a
//! VM service parsed from SDL as a tenant's file would be, free ports, and whether a process
//! still runs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use kumo_sdl::manifest::ManifestService;
use sha2::{Digest, Sha256};

/// The test guest built (once, then cached) by `scripts/vm-test-image.sh`, or why it is not
/// there (the script needs root the first time).
pub(crate) fn test_image() -> Result<PathBuf, String> {
    let out = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/vm-test-image.sh"))
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run bash: {e}"))?;
    if !out.status.success() {
        return Err(
            "the test image (scripts/vm-test-image.sh did not build it; it needs root once)".into(),
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let path = stdout.lines().last().ok_or("the script printed no path")?;
    Ok(PathBuf::from(path))
}

/// A fresh ed25519 key pair `dir/name`: the private key's path and the public key's line.
pub(crate) fn keypair(dir: &Path, name: &str) -> (PathBuf, String) {
    let key = dir.join(name);
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(status.success());
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    (key, public.trim().to_string())
}

/// A VM service like `examples/vm-ssh.yaml`'s: `cpus` CPUs, 384 MiB, a 3 GiB disk, port 22,
/// logged into with `key`. Parsed from SDL, as a tenant's file would be; only the image URL is
/// swapped for the local file (a tenant's must be http(s); the test backends allow file://).
pub(crate) fn vm_service(image: &Path, key: &str, cpus: u32) -> ManifestService {
    let sha = hex::encode(Sha256::digest(std::fs::read(image).unwrap()));
    let sdl = format!(
        r#"version: "2.0"
services:
  box:
    runtime: vm
    vm:
      image:
        url: https://images.invalid/test.qcow2
        sha256: {sha}
      ssh_keys:
        - {key}
    expose:
      - port: 22
        to:
          - global: true
profiles:
  compute:
    box:
      resources:
        cpu: {{units: {cpus}}}
        memory: {{size: 384Mi}}
        storage: {{size: 3Gi}}
  placement:
    dc:
      pricing:
        box: {{denom: uakt, amount: 1}}
deployment:
  box:
    dc: {{profile: box, count: 1}}
"#
    );
    let parsed = kumo_sdl::parse(&sdl).expect("the test SDL parses");
    let mut service = parsed.manifest().groups[0].services[0].clone();
    service.vm.as_mut().unwrap().image.url = format!("file://{}", image.display());
    service.image = format!("file://{}", image.display());
    service
}

/// A port nothing listens on now (on 127.0.0.1).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether something accepts connections on 127.0.0.1:`port`.
pub(crate) fn is_listening(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &format!("127.0.0.1:{port}").parse().unwrap(),
        Duration::from_secs(1),
    )
    .is_ok()
}

/// Whether process `pid` exists and is not a zombie.
pub(crate) fn process_runs(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
    })
}
