//! VMs on a devnet through the real `kumo` binary (issue 7): `kumo devnet up --vm tcg`, a
//! second, Docker-only provider registered beside the devnet's, the Debian test guest of
//! `scripts/vm-test-image.sh` served over HTTP (a tenant's image URL must be http(s)), and the
//! real OpenSSH client behind `kumo lease ssh`.
//!
//! One VM boots for the whole test (about a minute under TCG, several on a loaded machine); in
//! order: `kumo deploy` of the VM SDL gets a bid from the VM provider only; `kumo lease status`
//! carries the SSH login, the forwarded port 22 and a TCG warning, `kumo provider status` the
//! accelerator; `kumo lease ssh … -- uname -a` with the tenant's key, a stranger's key refused;
//! `nproc` and MemTotal match the profile; `kumo lease logs` is the serial console; a `kill -9`ed
//! provider comes back and finds the same QEMU; a file written before `kumo lease restart` is
//! there after the reboot; `kumo lease close` leaves no QEMU process, no disk and no listening
//! port.
//!
//! Skipped with a notice without QEMU, OpenSSH or Docker; `KUMO_REQUIRE_QEMU=1` makes that a
//! failure. Progress: `cargo test -p kumo-cli --test vm_e2e -- --nocapture`.

mod support;

use std::{
    io::{BufRead, BufReader, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};
use support::ProviderProcess;

use kumo_vm::bench::SshTarget;

#[path = "../../../tests/skip.rs"]
mod skip;

const MIB: u64 = 1 << 20;

fn progress(what: &str) {
    eprintln!("[vm e2e] {what}");
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Whether the test can run here; says why not (or fails when it is required).
fn ready() -> bool {
    let required = std::env::var("KUMO_REQUIRE_QEMU").is_ok_and(|v| v == "1");
    let mut missing: Vec<&str> = ["qemu-system-x86_64", "qemu-img", "ssh", "ssh-keygen"]
        .into_iter()
        .filter(|t| !have(t))
        .collect();
    let docker = Command::new("docker")
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !docker {
        missing.push("a Docker engine");
    }
    if missing.is_empty() {
        return true;
    }
    let why = format!("missing {}", missing.join(", "));
    assert!(!required, "KUMO_REQUIRE_QEMU=1 but {why}");
    skip::report("the VM end-to-end test", &why);
    false
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The cached test image (`scripts/vm-test-image.sh` builds it once).
fn test_image() -> Option<PathBuf> {
    let out = Command::new("bash")
        .arg(repo_root().join("scripts/vm-test-image.sh"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run bash");
    if !out.status.success() {
        let required = std::env::var("KUMO_REQUIRE_QEMU").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "KUMO_REQUIRE_QEMU=1 but the test image did not build"
        );
        skip::report(
            "the VM end-to-end test",
            "the test image did not build (it needs root once)",
        );
        return None;
    }
    let stdout = String::from_utf8(out.stdout).unwrap();
    Some(PathBuf::from(stdout.lines().last().expect("a path")))
}

fn sha256_file(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

/// Serves `file` to every GET on an ephemeral port of 127.0.0.1 (the provider's image download).
fn serve_file(file: PathBuf) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let file = file.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let mut f = std::fs::File::open(&file).unwrap();
                let len = f.metadata().unwrap().len();
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
                );
                let _ = std::io::copy(&mut f, &mut conn);
            });
        }
    });
    port
}

fn keypair(dir: &Path, name: &str) -> (PathBuf, String) {
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

fn is_listening(port: u16) -> bool {
    TcpStream::connect_timeout(
        &format!("127.0.0.1:{port}").parse().unwrap(),
        Duration::from_secs(1),
    )
    .is_ok()
}

/// The QEMU pid files under a VM data directory (one per VM that exists).
fn qemu_pids(vm_dir: &Path) -> Vec<u32> {
    let mut pids = Vec::new();
    let Ok(leases) = std::fs::read_dir(vm_dir.join("vms")) else {
        return pids;
    };
    for lease in leases.flatten() {
        for vm in std::fs::read_dir(lease.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Ok(text) = std::fs::read_to_string(vm.path().join("qemu.pid")) {
                pids.push(text.trim().parse().unwrap());
            }
        }
    }
    pids
}

/// Files named `disk.qcow2` under `dir`.
fn disks(dir: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == "disk.qcow2") {
                n += 1;
            }
        }
    }
    n
}

fn alive(pid: u32) -> bool {
    // A zombie is gone for our purposes (QEMU is daemonized: its parent is init, which reaps).
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

fn vm_sdl(image_url: &str, sha256: &str, key: &str) -> String {
    format!(
        r#"version: "2.0"
services:
  box:
    runtime: vm
    vm:
      image:
        url: {image_url}
        sha256: {sha256}
      ssh_keys:
        - {key}
      user: researcher
    expose:
      - port: 22
        to:
          - global: true
profiles:
  compute:
    box:
      resources:
        cpu: {{units: 2}}
        memory: {{size: 512Mi}}
        storage: {{size: 3Gi}}
  placement:
    dc:
      attributes:
        region: local
      pricing:
        box: {{denom: ukumo, amount: 1000}}
deployment:
  box:
    dc: {{profile: box, count: 1}}
"#
    )
}

/// `kumo` as the devnet's tenant (what sourcing `devnet.env` does).
struct Tenant {
    home: PathBuf,
    node: String,
}

impl Tenant {
    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_kumo"))
            .args(args)
            .env("KUMO_HOME", &self.home)
            .env("KUMO_NODE", &self.node)
            .env("KUMO_FROM", "tenant")
            .env("KUMO_KEYRING_BACKEND", "test")
            .stdin(Stdio::null())
            .output()
            .expect("run kumo")
    }

    /// Runs `kumo args… -o json`, which must succeed.
    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let out = self.run(&all);
        assert!(
            out.status.success(),
            "kumo {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("kumo {args:?}: not JSON ({e})"))
    }

    /// `kumo lease ssh DSEQ -i KEY -- CMD`: its exit code, stdout and stderr.
    fn ssh(&self, dseq: &str, key: &Path, cmd: &str) -> (Option<i32>, String, String) {
        let out = self.run(&["lease", "ssh", dseq, "-i", key.to_str().unwrap(), "--", cmd]);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The output of `cmd` in the VM, which must succeed.
    fn ssh_ok(&self, dseq: &str, key: &Path, cmd: &str) -> String {
        let (code, out, err) = self.ssh(dseq, key, cmd);
        assert_eq!(code, Some(0), "kumo lease ssh -- {cmd}: {out}{err}");
        out
    }
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out after {secs} s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A second provider on the devnet's chain with `[vm]` off: key funded by the tenant,
/// registered and started through the CLI.
fn docker_only_provider(t: &Tenant, devnet: &Path, node: &str) -> (ProviderProcess, String) {
    let key = t.json(&["keys", "add", "dockeronly"]);
    let address = key["address"].as_str().expect("an address").to_string();
    t.json(&["tx", "send", &address, "100000000000ukumo", "--wait"]);
    let port = |_: ()| kumo_testnet::ports::free_port().unwrap();
    let mut c = kumo_provider::ProviderConfig {
        node: node.to_string(),
        data_dir: devnet.join("dockeronly-data"),
        ..Default::default()
    };
    c.key.name = "dockeronly".into();
    c.key.keyring_dir = devnet.join("keys");
    c.key.backend = "test".into();
    let gateway = port(());
    c.gateway.listen = format!("127.0.0.1:{gateway}").parse().unwrap();
    c.gateway.host_uri = format!("https://127.0.0.1:{gateway}");
    c.attributes = vec![kumo_types::Attribute::new("region", "local")];
    c.backend.instance = format!("vme2e-dockeronly-{}", std::process::id());
    c.ingress.http_listen = format!("127.0.0.1:{}", port(())).parse().unwrap();
    c.ingress.port_range_start = 42200;
    c.ingress.port_range_end = 42299;
    let config = devnet.join("dockeronly.toml");
    std::fs::write(&config, c.to_toml()).unwrap();
    t.json(&["provider", "register", "--config", config.to_str().unwrap()]);
    (ProviderProcess::start(&config), address)
}

#[test]
fn a_vm_on_a_devnet_from_deploy_to_close() {
    if !ready() {
        return;
    }
    let Some(image) = test_image() else {
        return;
    };
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("devnet");
    let home = dir.to_str().unwrap().to_string();
    let up = Command::new(env!("CARGO_BIN_EXE_kumo"))
        .args([
            "devnet",
            "up",
            "--base-port",
            "0",
            "--vm",
            "tcg",
            "--detach",
            "-o",
            "json",
        ])
        .args(["--home", &home])
        .env_remove("KUMO_HOME")
        .env_remove("KUMO_NODE")
        .output()
        .unwrap();
    assert!(
        up.status.success(),
        "devnet up: {}",
        String::from_utf8_lossy(&up.stderr)
    );
    let up: serde_json::Value = serde_json::from_slice(&up.stdout).unwrap();
    let info = &up["info"];
    assert_eq!(info["vm"], "tcg", "{info}");
    let t = Tenant {
        home: dir.clone(),
        node: info["node"].as_str().unwrap().to_string(),
    };
    // Stops the devnet (and its workloads) however the test ends.
    struct Down(PathBuf);
    impl Drop for Down {
        fn drop(&mut self) {
            let _ = Command::new(env!("CARGO_BIN_EXE_kumo"))
                .args(["devnet", "down", "--purge", "--home"])
                .arg(&self.0)
                .output();
        }
    }
    let _down = Down(dir.clone());
    let vm_provider = info["provider"].as_str().unwrap().to_string();
    let provider_config = dir.join("provider/provider.toml");
    let vm_data = dir.join("provider/vm");
    progress("devnet up (VMs under TCG)");

    // The provider says how it runs VMs; only the VM provider advertises them on chain.
    let status = t.json(&[
        "provider",
        "status",
        "--config",
        provider_config.to_str().unwrap(),
    ]);
    assert_eq!(status["vm"]["accel"], "tcg", "{status}");
    assert!(
        status["vm"]["warning"].is_string(),
        "TCG comes with a warning: {status}"
    );
    let (docker_only, docker_addr) = docker_only_provider(&t, &dir, &t.node);
    let record = |addr: &str| {
        let out = Command::new("curl")
            .args(["-sf", &format!("{}/v1/providers/{addr}", t.node)])
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(record(&vm_provider).contains("capabilities/vm"));
    wait_for("the Docker-only provider on chain", 30, || {
        record(&docker_addr).contains("dockeronly") || record(&docker_addr).contains("region")
    });
    assert!(!record(&docker_addr).contains("capabilities/vm"));
    // Let the Docker-only provider get going, so that its silence below means something.
    std::thread::sleep(Duration::from_secs(3));

    let image_port = serve_file(image.clone());
    let image_url = format!("http://127.0.0.1:{image_port}/kumo-test-debian.qcow2");
    let (tenant_ssh, tenant_pub) = keypair(tmp.path(), "tenant-ssh");
    let (stranger_ssh, _) = keypair(tmp.path(), "stranger-ssh");
    let sdl = tmp.path().join("vm.yaml");
    std::fs::write(&sdl, vm_sdl(&image_url, &sha256_file(&image), &tenant_pub)).unwrap();

    // kumo deploy: bid, lease, manifest (the provider fetches and verifies the image).
    let lease_started = Instant::now();
    let deployed = t.json(&[
        "deploy",
        sdl.to_str().unwrap(),
        "--deposit",
        "50000000ukumo",
    ]);
    let report = if deployed.is_array() {
        deployed[0].clone()
    } else {
        deployed
    };
    let dseq = report["dseq"].to_string();
    assert_eq!(report["provider"], vm_provider.as_str(), "{report}");
    progress(&format!("deployment {dseq} leased by the VM provider"));
    // Every bid on the order, in any state: the VM provider's only.
    let tenant_addr = t.json(&["keys", "show", "tenant"])["address"]
        .as_str()
        .unwrap()
        .to_string();
    let bids = Command::new("curl")
        .args([
            "-sf",
            &format!("{}/v1/bids?order={tenant_addr}/{dseq}/1/1", t.node),
        ])
        .output()
        .expect("curl");
    let bids = String::from_utf8_lossy(&bids.stdout);
    assert!(bids.contains(&vm_provider), "{bids}");
    assert!(
        !bids.contains(&docker_addr),
        "the Docker-only provider must not bid on a VM order: {bids}\n{}",
        docker_only.log()
    );

    // The lease status says how to log in.
    let status = t.json(&["lease", "status", &dseq]);
    let status = if status.is_array() {
        status[0].clone()
    } else {
        status
    };
    let svc = &status["services"][0];
    let ssh = &svc["ssh"];
    assert_eq!(ssh["user"], "researcher", "{status}");
    assert_eq!(ssh["host"], "127.0.0.1");
    let port = ssh["port"].as_u64().expect("an ssh port") as u16;
    assert_eq!(svc["forwarded_ports"][0]["port"], 22, "{svc}");
    assert_eq!(svc["forwarded_ports"][0]["external_port"], port);
    assert!(status["warnings"].to_string().contains("TCG"), "{status}");
    let pids = qemu_pids(&vm_data);
    assert_eq!(pids.len(), 1, "one QEMU for the lease");
    let pid = pids[0];

    // Wait for the guest's sshd with the plain client (a TCG boot takes a while), then use
    // `kumo lease ssh` for everything the tenant does.
    let target = SshTarget {
        host: "127.0.0.1".into(),
        port,
        user: "researcher".into(),
        key: tenant_ssh.clone(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    progress(&format!(
        "waiting for SSH on port {port} (TCG boot: a minute or more)"
    ));
    let took = rt
        .block_on(target.wait(Duration::from_secs(900)))
        .unwrap_or_else(|e| panic!("{e}"));
    progress(&format!(
        "SSH up {took:.0?} after the manifest, {:.0?} after kumo deploy started",
        lease_started.elapsed()
    ));
    let uname = t.ssh_ok(&dseq, &tenant_ssh, "uname -a");
    assert!(uname.starts_with("Linux "), "{uname}");
    let (code, _, err) = t.ssh(&dseq, &stranger_ssh, "true");
    assert_eq!(code, Some(255), "a stranger's key: {err}");
    assert!(err.contains("Permission denied"), "{err}");

    // The profile's CPUs and memory.
    assert_eq!(t.ssh_ok(&dseq, &tenant_ssh, "nproc"), "2");
    let mem_kib: u64 = t
        .ssh_ok(
            &dseq,
            &tenant_ssh,
            "awk '/^MemTotal/ {print $2}' /proc/meminfo",
        )
        .parse()
        .unwrap();
    let mem = mem_kib * 1024;
    assert!(
        mem <= 512 * MIB && mem > 400 * MIB,
        "MemTotal {mem_kib} kB for a 512 MiB profile"
    );

    // The serial console is the lease's log.
    let logs = t.run(&["lease", "logs", &dseq, "--service", "box", "--tail", "300"]);
    let logs = String::from_utf8_lossy(&logs.stdout);
    assert!(
        logs.contains("Linux version") || logs.contains("login"),
        "console: {logs}"
    );

    // A provider killed and started again finds the VM: the same QEMU, nothing duplicated.
    let devnet_status = t.json(&["devnet", "status", "--home", &home]);
    let provider_pid = devnet_status["provider_pid"]
        .as_u64()
        .expect("provider runs");
    Command::new("kill")
        .args(["-9", &provider_pid.to_string()])
        .status()
        .unwrap();
    let _restarted = ProviderProcess::start(&provider_config);
    wait_for(
        "the restarted provider to report the lease running",
        120,
        || {
            let out = t.run(&["lease", "status", &dseq, "-o", "json"]);
            String::from_utf8_lossy(&out.stdout).contains("\"running\"")
        },
    );
    assert_eq!(qemu_pids(&vm_data), [pid], "the same VM, not a second one");
    assert!(alive(pid));
    assert_eq!(
        t.ssh_ok(&dseq, &tenant_ssh, "echo still-here"),
        "still-here"
    );
    progress("provider restarted: the VM kept running");

    // A file written before `kumo lease restart` is there after the reboot.
    t.ssh_ok(
        &dseq,
        &tenant_ssh,
        "echo kept-across-reboot > ~/marker && sync",
    );
    let boot_before = t.ssh_ok(&dseq, &tenant_ssh, "cat /proc/sys/kernel/random/boot_id");
    let restarted = t.json(&["lease", "restart", &dseq, "--service", "box"]);
    assert!(
        restarted.to_string().contains(&format!("\"port\":{port}")),
        "same login after a restart: {restarted}"
    );
    let took = rt
        .block_on(target.wait(Duration::from_secs(900)))
        .unwrap_or_else(|e| panic!("after the restart: {e}"));
    progress(&format!("SSH up {took:.0?} after kumo lease restart"));
    assert_ne!(
        t.ssh_ok(&dseq, &tenant_ssh, "cat /proc/sys/kernel/random/boot_id"),
        boot_before,
        "the guest rebooted"
    );
    assert_eq!(
        t.ssh_ok(&dseq, &tenant_ssh, "cat ~/marker"),
        "kept-across-reboot"
    );
    let new_pids = qemu_pids(&vm_data);
    assert_eq!(new_pids.len(), 1);

    // kumo lease close: no QEMU, no disk, no port.
    t.json(&["lease", "close", &dseq]);
    wait_for("the VM to be gone", 60, || {
        !alive(new_pids[0]) && disks(&vm_data) == 0 && !is_listening(port)
    });
    assert!(qemu_pids(&vm_data).is_empty());
    progress(&format!(
        "lease closed, VM gone; whole test {:.0?}",
        started.elapsed()
    ));
}
