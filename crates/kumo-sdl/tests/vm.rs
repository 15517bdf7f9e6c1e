//! Kumo's `runtime: vm` extension (docs/sdl-extensions.md): what a VM service accepts, the
//! mistakes it refuses (with the field path and line a tenant must fix), and that it leaves the
//! meaning of Akash files alone.

use kumo_sdl::manifest::DEFAULT_VM_USER;

const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMCMUAs1v18OYNlX6m9oRk/LcZmFwmSV7lOq4vegNCW9 tenant@laptop";

/// A valid VM file; each case below changes one thing in it. Line numbers: `runtime` is line 4,
/// `vm` 5, `image` 6, `url` 7, `sha256` 8, `ssh_keys` 9, the key 10.
fn base() -> String {
    format!(
        r#"version: "2.0"
services:
  box:
    runtime: vm
    vm:
      image:
        url: https://images.example.com/debian-12.qcow2
        sha256: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
      ssh_keys:
        - {KEY}
    expose:
      - port: 22
        to:
          - global: true
profiles:
  compute:
    box:
      resources:
        cpu: {{units: 2}}
        memory: {{size: 1Gi}}
        storage: {{size: 8Gi}}
  placement:
    dc:
      pricing:
        box: {{denom: uakt, amount: 100}}
deployment:
  box:
    dc: {{profile: box, count: 1}}
"#
    )
}

/// `base()` with `from` replaced by `to` (which must be there).
fn edit(from: &str, to: &str) -> String {
    let base = base();
    assert!(
        base.contains(from),
        "test bug: {from:?} is not in the base file"
    );
    base.replacen(from, to, 1)
}

fn expect_error(yaml: &str, path: &str, line: usize, words: &str) {
    let err = match kumo_sdl::parse(yaml) {
        Ok(_) => panic!("accepted, but should fail at {path}:\n{yaml}"),
        Err(e) => e,
    };
    assert_eq!(
        (err.path.as_str(), err.line),
        (path, Some(line)),
        "error was: {err}"
    );
    assert!(err.message.contains(words), "{err} does not say {words:?}");
}

#[test]
fn a_vm_service_is_accepted_with_defaults() {
    let sdl = kumo_sdl::parse(&base()).unwrap();
    let (_, svc) = sdl.manifest().services().next().unwrap();
    let vm = svc.vm.as_ref().unwrap();
    assert!(svc.is_vm());
    assert_eq!(vm.user, DEFAULT_VM_USER);
    assert_eq!(vm.ssh_keys, [KEY]);
    assert_eq!(vm.user_data, None);
    assert_eq!(svc.image, "https://images.example.com/debian-12.qcow2");
    // Resources count like a container's: the group spec asks for 2 CPUs, 1 GiB, 8 GiB.
    let unit = &sdl.groups()[0].resources[0];
    assert_eq!(unit.resources.cpu.millis, 2000);
    assert_eq!(unit.resources.memory.bytes, 1 << 30);
    // The group asks for a provider that runs VMs, without the tenant writing it.
    let attrs = &sdl.groups()[0].requirements.attributes;
    assert_eq!(attrs.len(), 1, "{attrs:?}");
    assert_eq!(attrs[0].key, kumo_sdl::VM_CAPABILITY);
    assert_eq!(attrs[0].value, "true");
}

#[test]
fn the_vm_requirement_is_added_once_and_kept_sorted() {
    // Written by the tenant too: not duplicated.
    let explicit = edit(
        "    dc:\n      pricing:",
        "    dc:\n      attributes:\n        capabilities/vm: \"true\"\n        region: eu\n      pricing:",
    );
    let sdl = kumo_sdl::parse(&explicit).unwrap();
    let keys: Vec<_> = sdl.groups()[0]
        .requirements
        .attributes
        .iter()
        .map(|a| a.key.as_str())
        .collect();
    assert_eq!(keys, [kumo_sdl::VM_CAPABILITY, "region"]);
    // A container group of the same file asks for nothing more than its placement says.
    let yaml = r#"version: "2.0"
services:
  web:
    image: nginx
    expose:
      - port: 80
        to: [{global: true}]
profiles:
  compute:
    web:
      resources: {cpu: {units: 1}, memory: {size: 1Gi}, storage: {size: 1Gi}}
  placement:
    dc:
      attributes: {region: eu}
      pricing:
        web: {denom: uakt, amount: 1}
deployment:
  web:
    dc: {profile: web, count: 1}
"#;
    let plain = kumo_sdl::parse(yaml).unwrap();
    let keys: Vec<_> = plain.groups()[0]
        .requirements
        .attributes
        .iter()
        .map(|a| a.key.as_str())
        .collect();
    assert_eq!(keys, ["region"]);
}

#[test]
fn user_and_user_data_are_carried() {
    let yaml = edit(
        "      ssh_keys:",
        "      user: alice\n      user_data: |\n        #cloud-config\n        packages: [tmux]\n      ssh_keys:",
    );
    let sdl = kumo_sdl::parse(&yaml).unwrap();
    let (_, svc) = sdl.manifest().services().next().unwrap();
    let vm = svc.vm.as_ref().unwrap();
    assert_eq!(vm.user, "alice");
    assert_eq!(
        vm.user_data.as_deref(),
        Some("#cloud-config\npackages: [tmux]\n")
    );
    // The manifest sent to the provider carries them, and the on-chain hash covers them.
    let plain = kumo_sdl::parse(&base()).unwrap();
    assert_ne!(sdl.manifest_hash(), plain.manifest_hash());
    let changed = kumo_sdl::parse(&yaml.replace("tmux", "htop")).unwrap();
    assert_ne!(sdl.manifest_hash(), changed.manifest_hash());
    let image = kumo_sdl::parse(&edit("debian-12", "debian-13")).unwrap();
    assert_ne!(plain.manifest_hash(), image.manifest_hash());
}

#[test]
fn runtime_container_is_the_default() {
    let yaml = r#"version: "2.0"
services:
  web:
    runtime: container
    image: nginx
    expose:
      - port: 80
        to: [{global: true}]
profiles:
  compute:
    web:
      resources: {cpu: {units: 1}, memory: {size: 1Gi}, storage: {size: 1Gi}}
  placement:
    dc:
      pricing:
        web: {denom: uakt, amount: 1}
deployment:
  web:
    dc: {profile: web, count: 1}
"#;
    let explicit = kumo_sdl::parse(yaml).unwrap();
    let implicit = kumo_sdl::parse(&yaml.replace("    runtime: container\n", "")).unwrap();
    assert_eq!(explicit.manifest(), implicit.manifest());
    assert_eq!(explicit.manifest_hash(), implicit.manifest_hash());
    let json = serde_json::to_string(explicit.manifest()).unwrap();
    assert!(!json.contains("\"vm\""), "{json}");
}

#[test]
fn bad_sha256() {
    expect_error(
        &edit("sha256: 0123", "sha256: 0x0123"),
        "services.box.vm.image.sha256",
        8,
        "64 hex digits",
    );
    expect_error(
        &edit("456789abcdef\n", "456789abcde\n"),
        "services.box.vm.image.sha256",
        8,
        "not a SHA-256",
    );
}

#[test]
fn missing_sha256() {
    expect_error(
        &edit(
            "        sha256: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n",
            "",
        ),
        "services.box.vm.image.sha256",
        7,
        "is required",
    );
}

#[test]
fn bad_url_scheme() {
    expect_error(
        &edit("url: https://", "url: ftp://"),
        "services.box.vm.image.url",
        7,
        "http:// or https://",
    );
    expect_error(
        &edit(
            "url: https://images.example.com/debian-12.qcow2",
            "url: /srv/debian.qcow2",
        ),
        "services.box.vm.image.url",
        7,
        "http:// or https://",
    );
}

#[test]
fn no_keys() {
    expect_error(
        &edit(
            &format!("      ssh_keys:\n        - {KEY}\n"),
            "      ssh_keys: []\n",
        ),
        "services.box.vm.ssh_keys",
        9,
        "at least one",
    );
    expect_error(
        &edit(&format!("      ssh_keys:\n        - {KEY}\n"), ""),
        "services.box.vm.ssh_keys",
        6,
        "is required",
    );
}

#[test]
fn damaged_or_private_keys() {
    // A key with a character cut out of its base64.
    expect_error(
        &edit("AAAAIMCMUAs1", "AAAAIMCMUAs"),
        "services.box.vm.ssh_keys[0]",
        10,
        "damaged",
    );
    // A blob of another type pasted after `ssh-ed25519`.
    expect_error(
        &edit(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5",
            "ssh-rsa AAAAC3NzaC1lZDI1NTE5",
        ),
        "services.box.vm.ssh_keys[0]",
        10,
        "damaged",
    );
    expect_error(
        &edit(KEY, "-----BEGIN OPENSSH PRIVATE KEY-----"),
        "services.box.vm.ssh_keys[0]",
        10,
        "private key",
    );
}

#[test]
fn runtime_vm_without_vm_block() {
    let block = format!(
        "    vm:\n      image:\n        url: https://images.example.com/debian-12.qcow2\n        sha256: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n      ssh_keys:\n        - {KEY}\n"
    );
    expect_error(
        &edit(&block, ""),
        "services.box.vm",
        4,
        "is required for `runtime: vm`",
    );
}

#[test]
fn vm_block_without_runtime() {
    expect_error(
        &edit("    runtime: vm\n", "    image: debian\n"),
        "services.box.vm",
        5,
        "only read for `runtime: vm`",
    );
}

#[test]
fn unknown_runtime() {
    expect_error(
        &edit("runtime: vm", "runtime: kvm"),
        "services.box.runtime",
        4,
        "`container` or `vm`",
    );
}

#[test]
fn container_fields_on_a_vm() {
    expect_error(
        &edit(
            "    runtime: vm\n",
            "    runtime: vm\n    image: debian:12\n",
        ),
        "services.box.image",
        5,
        "does not apply to `runtime: vm`",
    );
    expect_error(
        &edit(
            "    runtime: vm\n",
            "    runtime: vm\n    env:\n      - A=1\n",
        ),
        "services.box.env",
        5,
        "vm.user_data",
    );
}

#[test]
fn bad_user() {
    for user in ["root", "Alice", "9lives", "a b"] {
        expect_error(
            &edit(
                "      ssh_keys:",
                &format!("      user: \"{user}\"\n      ssh_keys:"),
            ),
            "services.box.vm.user",
            9,
            "login name",
        );
    }
}

#[test]
fn unknown_vm_field() {
    expect_error(
        &edit("      ssh_keys:", "      cpus: 4\n      ssh_keys:"),
        "services.box.vm.cpus",
        9,
        "unknown field",
    );
}

#[test]
fn oversized_user_data() {
    let big = "x".repeat(70 * 1024);
    expect_error(
        &edit(
            "      ssh_keys:",
            &format!("      user_data: \"{big}\"\n      ssh_keys:"),
        ),
        "services.box.vm.user_data",
        9,
        "at most",
    );
}

#[test]
fn the_example_file_parses() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/vm-ssh.yaml");
    let sdl = kumo_sdl::parse(&std::fs::read_to_string(path).unwrap()).unwrap();
    let (_, svc) = sdl.manifest().services().next().unwrap();
    let vm = svc.vm.as_ref().unwrap();
    assert_eq!(vm.user, "researcher");
    assert!(
        vm.user_data
            .as_deref()
            .unwrap()
            .starts_with("#cloud-config")
    );
}
