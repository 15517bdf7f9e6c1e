//! A VM's place on its lease's network: a network namespace of its own, joined to the lease
//! network's bridge by a veth pair, in which its QEMU runs.
//!
//! ```text
//!  host                                     netns kumo-vm-<tag>-<key>
//!  lease bridge k<inst><idx> ── kv<key> ══ eth0 <VM address>/<prefix>, default via <gateway>
//!  (lease firewall: iifname k<inst>*)       lo   QEMU: -netdev user (slirp), hostfwd on eth0
//! ```
//!
//! QEMU keeps user-mode networking (slirp: no tap device, no guest configuration), but slirp's
//! sockets are the namespace's. What the guest reaches through NAT leaves from `eth0`, an
//! address of the lease subnet, crosses the lease bridge and meets the same firewall rules as
//! the lease's containers: the internet, its own network, the operator's `allowed_egress`, the
//! host's resolvers on port 53, nothing else. The guest's 10.0.2.2 (slirp's "host") is the
//! namespace's own loopback, where nothing listens, not the host's. Ports the VM exposes are
//! forwarded by slirp from `<VM address>:<port>` to the same guest port, as a container replica
//! answers on `<ip>:<port>`.
//!
//! Names: `<tag>` is 8 hex digits of the backend's data directory (two backends on one host do
//! not share namespaces), `<key>` 12 hex digits of the lease, service and replica. Everything
//! is made with `ip` (iproute2); deleting the namespace deletes the veth pair with it.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::process::Command;

use crate::VmError;

/// Where `ip netns add` puts the namespaces it names.
pub const NETNS_DIR: &str = "/run/netns";

/// A VM's network namespace and its address on the lease network, saved in its `vm.json`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VmNet {
    /// The namespace's name (under [`NETNS_DIR`]).
    pub netns: String,
    /// The host's end of the veth pair, a port of the lease bridge.
    pub veth: String,
    /// The lease network's bridge.
    pub bridge: String,
    /// The VM's address on the lease network (its `eth0` in the namespace).
    pub address: Ipv4Addr,
    /// The lease subnet's prefix length.
    pub prefix: u8,
    /// The host's address on the bridge: the namespace's default route.
    pub gateway: Ipv4Addr,
}

/// What a backend's namespaces are named from: `kumo-vm-<tag>-`, the tag from its data
/// directory.
pub fn prefix(data_dir: &Path) -> String {
    format!("kumo-vm-{}-", tag(data_dir))
}

/// A backend's tag: 8 hex digits of its data directory (its namespaces and cgroups are named
/// from it, so two backends on one host do not share them).
pub fn tag(data_dir: &Path) -> String {
    let digest = Sha256::digest(data_dir.display().to_string().as_bytes());
    hex::encode(&digest[..4])
}

/// The namespace and veth names of one VM (`vm` names it within the backend: lease key,
/// service, replica).
pub fn names(prefix: &str, vm: &str) -> (String, String) {
    let key = hex::encode(&Sha256::digest(format!("{prefix}{vm}").as_bytes())[..6]);
    // A veth name has at most 15 characters; `kv` + 12 never starts like a lease bridge
    // (`k` + hex digits), so the firewall's `k<tag>*` patterns never match it.
    (format!("{prefix}{key}"), format!("kv{key}"))
}

/// The namespace file `nsenter --net=` enters.
pub fn path(netns: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(netns)
}

/// Runs `ip` with `args`; its error output as the reason when it fails.
async fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run ip: {e}; install iproute2"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Makes the namespace of `net` afresh: whatever had its name is deleted first, so a VM that
/// moved (another address, another bridge) never keeps its old setup. Needs root
/// (CAP_NET_ADMIN, CAP_SYS_ADMIN).
pub async fn create(net: &VmNet) -> Result<(), VmError> {
    delete(net).await?;
    let fail = |reason: String| VmError::Network {
        netns: net.netns.clone(),
        reason,
    };
    // A temporary name for the namespace's end: `eth0` may exist on the host.
    let peer = format!("{}p", net.veth);
    let address = format!("{}/{}", net.address, net.prefix);
    let gateway = net.gateway.to_string();
    let n = net.netns.as_str();
    let steps: [&[&str]; 11] = [
        &["netns", "add", n],
        &[
            "link", "add", &net.veth, "type", "veth", "peer", "name", &peer,
        ],
        &["link", "set", &peer, "netns", n],
        &["-n", n, "link", "set", &peer, "name", "eth0"],
        &["-n", n, "addr", "add", &address, "dev", "eth0"],
        // No IPv6 link-local address: nothing hands the namespace a routed IPv6 address, so
        // none is made up before the link comes up.
        &["-n", n, "link", "set", "eth0", "addrgenmode", "none"],
        &["-n", n, "link", "set", "lo", "up"],
        &["-n", n, "link", "set", "eth0", "up"],
        &["-n", n, "route", "add", "default", "via", &gateway],
        &["link", "set", &net.veth, "master", &net.bridge],
        &["link", "set", &net.veth, "up"],
    ];
    for step in steps {
        if let Err(reason) = ip(step).await {
            let _ = delete(net).await;
            return Err(fail(reason));
        }
    }
    tracing::debug!(netns = n, veth = net.veth, bridge = net.bridge, %address, "VM network namespace made");
    Ok(())
}

/// Deletes the namespace (and with it the veth pair) and, in case the pair outlived it, the
/// host's end. Nothing there is not an error.
pub async fn delete(net: &VmNet) -> Result<(), VmError> {
    delete_named(&net.netns).await?;
    // The kernel removes the pair a moment after the namespace: wait for that before
    // deleting the host's end by hand (a pair that outlived its namespace).
    let host_end = format!("/sys/class/net/{}", net.veth);
    for _ in 0..20 {
        if !tokio::fs::try_exists(&host_end).await.unwrap_or(false) {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    match ip(&["link", "delete", &net.veth]).await {
        Ok(()) => Ok(()),
        Err(_) if !std::path::Path::new(&host_end).exists() => Ok(()),
        Err(reason) => Err(VmError::Network {
            netns: net.netns.clone(),
            reason,
        }),
    }
}

/// Deletes the namespace `netns` if it exists.
pub async fn delete_named(netns: &str) -> Result<(), VmError> {
    if !tokio::fs::try_exists(path(netns)).await.unwrap_or(false) {
        return Ok(());
    }
    ip(&["netns", "delete", netns])
        .await
        .map_err(|reason| VmError::Network {
            netns: netns.to_string(),
            reason,
        })
}

/// The namespaces whose names start with `prefix`.
pub async fn list(prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(mut entries) = tokio::fs::read_dir(NETNS_DIR).await else {
        return out;
    };
    while let Ok(Some(entry)) = entries.next_entry().await {
        if let Some(name) = entry.file_name().to_str()
            && name.starts_with(prefix)
        {
            out.push(name.to_string());
        }
    }
    out.sort();
    out
}

/// Deletes every namespace whose name starts with `prefix` and returns their names. Blocking
/// (plain `std`), so a `Drop` can call it: for scratch backends (tests, the benchmark) whose
/// owner stops without tearing down.
pub fn delete_all_blocking(prefix: &str) -> Vec<String> {
    let mut deleted = Vec::new();
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else {
        return deleted;
    };
    for entry in entries.flatten() {
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if name.starts_with(prefix)
            && std::process::Command::new("ip")
                .args(["netns", "delete", &name])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        {
            deleted.push(name);
        }
    }
    deleted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_linux_and_are_the_backends_own() {
        let a = prefix(Path::new("/var/lib/kumo/vm"));
        let b = prefix(Path::new("/tmp/other"));
        assert_ne!(a, b);
        let (netns, veth) = names(&a, "0123abcd-box-0");
        assert!(netns.starts_with(&a), "{netns}");
        assert!(veth.len() <= 14 && veth.starts_with("kv"), "{veth}");
        // The temporary peer name fits too.
        assert!(format!("{veth}p").len() <= 15);
        assert_ne!(names(&a, "0123abcd-box-1"), (netns.clone(), veth.clone()));
        assert_ne!(names(&b, "0123abcd-box-0").1, veth);
    }
}
