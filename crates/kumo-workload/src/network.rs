//! Lease networks: where their addresses come from and what they may reach.
//!
//! Each lease gets one bridge network whose subnet the backend picks itself from an
//! [`AddressPool`] (a large private block split into equal small subnets), instead of Docker's
//! default address pools, which hold about 30 networks. The subnet's index in the pool also
//! names the bridge interface (see [`bridge_name`]), so the firewall (`crate::firewall`) can
//! key its rules on interface names: a rule on the bridge covers every container on it and any
//! VM whose tap device is attached to it later.
//!
//! Nothing here is stored: the subnets in use are read back from the engine (and the host's
//! routing table) each time one is picked, so a restarted provider never hands out a subnet
//! twice.

use std::net::{IpAddr, Ipv4Addr};

use async_trait::async_trait;
use ipnet::{IpNet, Ipv4Net};
use kumo_types::LeaseId;
use sha2::{Digest, Sha256};

use crate::WorkloadError;

/// A lease's network as seen by something that joins it from outside the engine (a VM's
/// network namespace, through a veth pair on the bridge).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseNetwork {
    /// The bridge interface (the firewall's rules key on it).
    pub bridge: String,
    /// The lease's subnet.
    pub subnet: Ipv4Net,
    /// The host's address on the bridge: the default route of whatever joins it.
    pub gateway: Ipv4Addr,
    /// Whether the engine hands out only [`container_range`] (networks created since VMs
    /// joined lease networks); `false` for an older network, whose containers may take any
    /// address of the subnet.
    pub split: bool,
    /// The addresses the engine has handed to containers right now.
    pub taken: Vec<Ipv4Addr>,
}

/// Where a VM backend gets its lease's network: the Docker backend creates (or finds) it, with
/// its subnet, bridge and firewall rules, whether or not the lease has containers.
#[async_trait]
pub trait LeaseNetworks: Send + Sync + std::fmt::Debug {
    /// The lease's network, created (and covered by the firewall) if it does not exist.
    async fn ensure_lease_network(&self, lease: &LeaseId) -> Result<LeaseNetwork, WorkloadError>;
}

/// How lease networks are addressed and contained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    /// Where each lease network's subnet comes from.
    pub pool: AddressPool,
    /// The containment rules the backend installs; `None`: none (the engine is on another
    /// host, or the operator contains leases some other way).
    pub firewall: Option<FirewallConfig>,
}

impl Default for NetworkConfig {
    /// The default pool, and a firewall that lets leases ask the host's resolvers.
    fn default() -> Self {
        NetworkConfig {
            pool: AddressPool::default(),
            firewall: Some(FirewallConfig::new()),
        }
    }
}

/// What the firewall lets a lease reach besides the internet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FirewallConfig {
    /// Ranges a lease may reach although they are private, link-local or CGNAT (a package
    /// mirror on the operator's LAN). Never the host itself or another lease.
    pub allowed_egress: Vec<IpNet>,
    /// DNS servers a lease may reach on port 53 (TCP and UDP) only, wherever they are: the
    /// engine's embedded resolver forwards a container's queries to the host's resolvers
    /// from inside the container, so a resolver on the LAN (or at 169.254.169.254, as in
    /// some clouds) must be let through for names outside the lease to resolve.
    pub dns_servers: Vec<IpAddr>,
    /// The `nft` program (a name looked up in `PATH`, or a path).
    pub nft: String,
}

impl FirewallConfig {
    /// No allowed ranges, the host's resolvers ([`host_resolvers`]), `nft` from `PATH`.
    pub fn new() -> Self {
        FirewallConfig {
            allowed_egress: Vec::new(),
            dns_servers: host_resolvers(),
            nft: "nft".into(),
        }
    }
}

/// The resolvers the engine forwards containers' queries to: the nameservers of
/// `/etc/resolv.conf`, or, when those are all loopback addresses (systemd-resolved's stub),
/// of `/run/systemd/resolve/resolv.conf`, as the engine itself does.
pub fn host_resolvers() -> Vec<IpAddr> {
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .map(|t| parse_nameservers(&t))
            .unwrap_or_default()
    };
    let found = read("/etc/resolv.conf");
    if found.iter().all(|a| a.is_loopback()) {
        let upstream = read("/run/systemd/resolve/resolv.conf");
        if !upstream.is_empty() {
            return upstream;
        }
    }
    found.into_iter().filter(|a| !a.is_loopback()).collect()
}

/// The `nameserver` addresses of a resolv.conf text.
fn parse_nameservers(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next()? == "nameserver")
                .then(|| words.next()?.split('%').next()?.parse().ok())
                .flatten()
        })
        .collect()
}

/// The smallest subnet a lease network may have: /29 holds 5 replicas.
pub const MAX_SUBNET_PREFIX: u8 = 29;
/// At most this many subnets in a pool: the index is 6 hex digits of the bridge name.
pub const MAX_SUBNETS: u64 = 1 << 24;

/// A block of IPv4 addresses split into equal subnets, one per lease network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressPool {
    block: Ipv4Net,
    subnet_prefix: u8,
}

impl Default for AddressPool {
    /// `10.192.0.0/11` (10.192.0.0–10.223.255.255) in /26 subnets: 32,768 lease networks of
    /// 61 addresses each (30 containers, 31 VMs). Inside 10/8, away from the blocks home and office networks usually
    /// take (10.0–10.20), from the top of 10/8 where some hosting networks put their resolvers
    /// (10.255.255.x), and from Docker's own default pools (172.17–172.31, 192.168).
    fn default() -> Self {
        AddressPool {
            block: Ipv4Net::new_assert(Ipv4Addr::new(10, 192, 0, 0), 11),
            subnet_prefix: 26,
        }
    }
}

impl AddressPool {
    /// `block` split into subnets of `/subnet_prefix`. Fails with a sentence when the block is
    /// not a network address, the subnets are larger than the block or smaller than /29, or
    /// there would be more than 2^24 of them.
    pub fn new(block: Ipv4Net, subnet_prefix: u8) -> Result<Self, String> {
        if block.trunc() != block {
            return Err(format!(
                "{block} is not a network address: write {}",
                block.trunc()
            ));
        }
        if subnet_prefix < block.prefix_len() {
            return Err(format!(
                "subnets of /{subnet_prefix} do not fit in the pool {block}"
            ));
        }
        if subnet_prefix > MAX_SUBNET_PREFIX {
            return Err(format!(
                "/{subnet_prefix} subnets are too small: /{MAX_SUBNET_PREFIX} (5 replicas) is the smallest"
            ));
        }
        let pool = AddressPool {
            block,
            subnet_prefix,
        };
        if pool.capacity() > MAX_SUBNETS {
            return Err(format!(
                "{block} holds {} subnets of /{subnet_prefix}; at most {MAX_SUBNETS} are supported: use a smaller pool or larger subnets",
                pool.capacity()
            ));
        }
        Ok(pool)
    }

    /// The whole block.
    pub fn block(&self) -> Ipv4Net {
        self.block
    }

    /// The prefix length of each lease network.
    pub fn subnet_prefix(&self) -> u8 {
        self.subnet_prefix
    }

    /// How many lease networks the pool holds.
    pub fn capacity(&self) -> u64 {
        1u64 << (self.subnet_prefix - self.block.prefix_len())
    }

    /// How many replicas one lease network holds: its addresses less the network address,
    /// the gateway (the host's end of the bridge) and the broadcast address.
    pub fn replicas_per_network(&self) -> u32 {
        (1u32 << (32 - self.subnet_prefix)) - 3
    }

    /// How many containers one lease network holds: the lower half of its subnet
    /// ([`container_range`]) less the network address and the gateway.
    pub fn containers_per_network(&self) -> u32 {
        (1u32 << (31 - self.subnet_prefix)) - 2
    }

    /// How many VMs one lease network holds: the upper half less the broadcast address
    /// ([`vm_addresses`]).
    pub fn vms_per_network(&self) -> u32 {
        (1u32 << (31 - self.subnet_prefix)) - 1
    }

    /// The subnet at `index` (0-based), if the pool has it.
    pub fn subnet(&self, index: u32) -> Option<Ipv4Net> {
        if u64::from(index) >= self.capacity() {
            return None;
        }
        let size = 1u32 << (32 - self.subnet_prefix);
        let first = u32::from(self.block.network()) + index * size;
        Ipv4Net::new(Ipv4Addr::from(first), self.subnet_prefix).ok()
    }

    /// The index of `subnet` in the pool, when it is one of the pool's subnets.
    pub fn index_of(&self, subnet: Ipv4Net) -> Option<u32> {
        if subnet.prefix_len() != self.subnet_prefix || !self.block.contains(&subnet) {
            return None;
        }
        let offset = u32::from(subnet.network()) - u32::from(self.block.network());
        Some(offset >> (32 - self.subnet_prefix))
    }

    /// The first subnet (and its index) that overlaps none of `used` and whose index `skip`
    /// does not refuse (a bridge name already taken); `None` when the pool is exhausted.
    pub fn first_free(
        &self,
        used: &[Ipv4Net],
        skip: impl Fn(u32) -> bool,
    ) -> Option<(u32, Ipv4Net)> {
        self.free_from(used, skip, 0)
    }

    /// Like [`AddressPool::first_free`], but searching from index `start` (modulo the pool's
    /// size) and wrapping around: a process that lost a race for a subnet starts elsewhere.
    pub fn free_from(
        &self,
        used: &[Ipv4Net],
        skip: impl Fn(u32) -> bool,
        start: u64,
    ) -> Option<(u32, Ipv4Net)> {
        let start = start % self.capacity();
        self.search(used, &skip, start, self.capacity())
            .or_else(|| self.search(used, &skip, 0, start))
    }

    /// The first free subnet with an index in `from..to`.
    fn search(
        &self,
        used: &[Ipv4Net],
        skip: &impl Fn(u32) -> bool,
        from: u64,
        to: u64,
    ) -> Option<(u32, Ipv4Net)> {
        // Address ranges taken inside the block, sorted, so the walk below jumps past each.
        let (lo, hi) = (
            u32::from(self.block.network()),
            u32::from(self.block.broadcast()),
        );
        let mut taken: Vec<(u32, u32)> = used
            .iter()
            .map(|n| (u32::from(n.network()), u32::from(n.broadcast())))
            .filter(|&(start, end)| end >= lo && start <= hi)
            .collect();
        taken.sort_unstable();
        let size = 1u64 << (32 - self.subnet_prefix);
        let mut index = from;
        let mut ranges = taken.iter().peekable();
        while index < to {
            let start = u64::from(lo) + index * size;
            let end = start + size - 1;
            // Ranges that end before this candidate no longer matter.
            while ranges.peek().is_some_and(|&&(_, e)| u64::from(e) < start) {
                ranges.next();
            }
            let overlap = ranges
                .clone()
                .take_while(|&&(s, _)| u64::from(s) <= end)
                .map(|&(_, e)| u64::from(e))
                .filter(|&e| e >= start)
                .max();
            match overlap {
                // Jump to the first subnet past the overlapping range.
                Some(e) => index = (e + 1 - u64::from(lo)).div_ceil(size),
                None => {
                    let i = u32::try_from(index).ok()?;
                    if !skip(i) {
                        return Some((i, self.subnet(i)?));
                    }
                    index += 1;
                }
            }
        }
        None
    }
}

/// The gateway of a lease subnet: its first address, which the host's end of the bridge takes.
pub fn gateway(subnet: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet.network()) + 1)
}

/// The part of a lease subnet the engine hands to containers (its IPAM `ip_range`): the lower
/// half. The upper half is left to VMs, which take their addresses themselves
/// ([`vm_addresses`]), so the two never collide.
pub fn container_range(subnet: Ipv4Net) -> Ipv4Net {
    let subnet = subnet.trunc();
    let prefix = (subnet.prefix_len() + 1).min(32);
    Ipv4Net::new(subnet.network(), prefix).expect("a prefix of at most 32")
}

/// The addresses a VM of the lease may take, from the top of the subnet downward: the upper
/// half less the broadcast address. A network created before the split (no `ip_range`) may
/// have containers anywhere; counting from the top keeps VMs away from the low addresses the
/// engine hands out first.
pub fn vm_addresses(subnet: Ipv4Net) -> impl Iterator<Item = Ipv4Addr> {
    let subnet = subnet.trunc();
    let half = container_range(subnet).broadcast();
    let top = u32::from(subnet.broadcast());
    let low = u32::from(half) + 1;
    (low..top).rev().map(Ipv4Addr::from)
}

/// 8 hex digits naming a provider instance in interface and table names.
pub fn instance_tag(instance: &str) -> String {
    let digest = Sha256::digest(instance.as_bytes());
    hex::encode(&digest[..4])
}

/// The prefix every lease bridge of `instance` starts with: `k` and the instance's tag.
pub fn bridge_prefix(instance: &str) -> String {
    format!("k{}", instance_tag(instance))
}

/// The bridge interface of the lease network at pool index `index`: `k<instance tag><index as
/// 6 hex digits>`, 15 characters, the longest name Linux allows.
pub fn bridge_name(instance: &str, index: u32) -> String {
    format!("{}{index:06x}", bridge_prefix(instance))
}

/// The IPv4 routes of this host that are not default routes (its LANs, VPNs, bridges), read
/// from `/proc/net/route`; empty where that file cannot be read. A lease subnet must overlap
/// none of them, or the host could no longer reach what the route leads to.
pub fn host_routes() -> Vec<Ipv4Net> {
    std::fs::read_to_string("/proc/net/route")
        .map(|text| parse_routes(&text))
        .unwrap_or_default()
}

/// The routes of a `/proc/net/route` text, default routes left out.
fn parse_routes(text: &str) -> Vec<Ipv4Net> {
    // Columns: Iface Destination Gateway Flags RefCnt Use Metric Mask ...; addresses are
    // little-endian hex.
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let dest = u32::from_str_radix(cols.get(1)?, 16).ok()?;
            let mask = u32::from_str_radix(cols.get(7)?, 16).ok()?;
            let dest = Ipv4Addr::from(dest.swap_bytes());
            let mask = Ipv4Addr::from(mask.swap_bytes());
            let net = Ipv4Net::with_netmask(dest, mask).ok()?;
            (net.prefix_len() > 0).then_some(net.trunc())
        })
        .collect()
}

/// The ranges a lease may not reach unless the operator allows them: private (RFC 1918),
/// CGNAT, link-local (cloud metadata services live at 169.254.169.254), loopback, "this
/// network", multicast and reserved; IPv6 unique-local, link-local, loopback/unspecified and
/// multicast.
pub const BLOCKED_EGRESS: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "224.0.0.0/3",
    "::/127",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
];

/// Whether `addr` lies in one of the [`BLOCKED_EGRESS`] ranges.
pub fn is_blocked(addr: IpAddr) -> bool {
    BLOCKED_EGRESS
        .iter()
        .filter_map(|r| r.parse::<IpNet>().ok())
        .any(|r| r.contains(&addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn the_default_pool_holds_thousands_of_networks_outside_dockers_own() {
        let pool = AddressPool::default();
        assert_eq!(pool.capacity(), 32_768);
        assert_eq!(pool.replicas_per_network(), 61);
        assert_eq!(pool.containers_per_network(), 30);
        assert_eq!(pool.vms_per_network(), 31);
        assert_eq!(pool.subnet(0), Some(net("10.192.0.0/26")));
        assert_eq!(pool.subnet(1), Some(net("10.192.0.64/26")));
        assert_eq!(pool.subnet(32_767), Some(net("10.223.255.192/26")));
        assert_eq!(pool.subnet(32_768), None);
        for docker in ["172.17.0.0/16", "172.18.0.0/16", "192.168.0.0/20"] {
            assert!(!pool.block().contains(&net(docker)));
        }
        // Every lease subnet is in a blocked range: leases reach each other only on a bridge.
        assert!(is_blocked(IpAddr::V4(pool.block().network())));
    }

    #[test]
    fn subnets_and_indexes_map_both_ways() {
        let pool = AddressPool::new(net("10.9.0.0/16"), 28).unwrap();
        for i in [0, 1, 17, 4095] {
            assert_eq!(pool.index_of(pool.subnet(i).unwrap()), Some(i));
        }
        assert_eq!(pool.index_of(net("10.8.0.0/28")), None);
        assert_eq!(pool.index_of(net("10.9.0.0/27")), None);
        assert_eq!(gateway(net("10.9.0.16/28")), Ipv4Addr::new(10, 9, 0, 17));
    }

    #[test]
    fn bad_pools_are_refused_with_a_reason() {
        let e = AddressPool::new(net("10.9.0.1/16"), 26).unwrap_err();
        assert!(e.contains("10.9.0.0/16"), "{e}");
        let e = AddressPool::new(net("10.9.0.0/16"), 12).unwrap_err();
        assert!(e.contains("do not fit"), "{e}");
        let e = AddressPool::new(net("10.9.0.0/16"), 30).unwrap_err();
        assert!(e.contains("/29"), "{e}");
        let e = AddressPool::new(net("16.0.0.0/4"), 29).unwrap_err();
        assert!(e.contains("at most"), "{e}");
        assert!(AddressPool::new(net("10.0.0.0/8"), 28).is_ok());
    }

    #[test]
    fn the_first_free_subnet_skips_every_overlap() {
        let pool = AddressPool::new(net("10.9.0.0/24"), 26).unwrap();
        assert_eq!(
            pool.first_free(&[], |_| false),
            Some((0, net("10.9.0.0/26")))
        );
        // Smaller networks in each of the first three subnets, one outside the pool.
        let used = [
            net("10.9.0.8/29"),
            net("10.9.0.64/26"),
            net("10.9.0.128/27"),
            net("192.168.1.0/24"),
        ];
        assert_eq!(
            pool.first_free(&used, |_| false),
            Some((3, net("10.9.0.192/26")))
        );
        // A taken bridge name is skipped like an overlap.
        assert_eq!(pool.first_free(&used, |i| i == 3), None);
        // A route over the whole pool exhausts it.
        assert_eq!(pool.first_free(&[net("10.0.0.0/8")], |_| false), None);
        // Searching from an index wraps around the pool.
        assert_eq!(
            pool.free_from(&[net("10.9.0.128/26")], |_| false, 2),
            Some((3, net("10.9.0.192/26")))
        );
        assert_eq!(
            pool.free_from(&[net("10.9.0.192/26")], |_| false, 7),
            Some((0, net("10.9.0.0/26")))
        );
        // Unsorted input, ranges that nest.
        let used = [net("10.9.0.128/26"), net("10.9.0.0/25"), net("10.9.0.0/26")];
        assert_eq!(
            pool.first_free(&used, |_| false),
            Some((3, net("10.9.0.192/26")))
        );
    }

    #[test]
    fn containers_take_the_lower_half_of_a_subnet_and_vms_the_upper_from_the_top() {
        let subnet = net("10.192.0.64/26");
        assert_eq!(container_range(subnet), net("10.192.0.64/27"));
        let vms: Vec<Ipv4Addr> = vm_addresses(subnet).collect();
        assert_eq!(vms.len() as u32, AddressPool::default().vms_per_network());
        assert_eq!(vms[0], Ipv4Addr::new(10, 192, 0, 126));
        assert_eq!(*vms.last().unwrap(), Ipv4Addr::new(10, 192, 0, 96));
        // The smallest subnet: 2 containers (.2, .3), 3 VMs (.6, .5, .4).
        let small = net("10.192.0.8/29");
        assert_eq!(container_range(small), net("10.192.0.8/30"));
        assert_eq!(
            vm_addresses(small).collect::<Vec<_>>(),
            ["10.192.0.14", "10.192.0.13", "10.192.0.12"].map(|a| a.parse::<Ipv4Addr>().unwrap())
        );
        let pool = AddressPool::new(net("10.192.0.0/16"), 29).unwrap();
        assert_eq!(pool.containers_per_network(), 2);
        assert_eq!(pool.vms_per_network(), 3);
    }

    #[test]
    fn bridge_names_fit_linux_and_share_their_instance_prefix() {
        let name = bridge_name("kumo1provider", 0xabcdef);
        assert_eq!(name.len(), 15);
        assert!(name.starts_with(&bridge_prefix("kumo1provider")));
        assert!(name.ends_with("abcdef"));
        assert_ne!(bridge_prefix("a"), bridge_prefix("b"));
    }

    #[test]
    fn routes_are_read_from_proc_and_default_routes_left_out() {
        let text = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                    eth0\t00000000\t0101A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                    eth0\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                    docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";
        assert_eq!(
            parse_routes(text),
            vec![net("192.168.1.0/24"), net("172.17.0.0/16")]
        );
    }

    #[test]
    fn nameservers_are_read_from_resolv_conf() {
        let text = "# generated\nsearch example.com\nnameserver 10.255.255.53\nnameserver fe80::1%eth0\nnameserver bogus\noptions ndots:1\n";
        assert_eq!(
            parse_nameservers(text),
            vec![
                "10.255.255.53".parse::<IpAddr>().unwrap(),
                "fe80::1".parse().unwrap()
            ]
        );
    }

    #[test]
    fn blocked_ranges_are_the_private_link_local_and_cgnat_ones() {
        for a in [
            "10.1.2.3",
            "172.20.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "127.0.0.1",
            "fd00::1",
            "fe80::1",
            "::1",
        ] {
            assert!(is_blocked(a.parse().unwrap()), "{a}");
        }
        for a in ["1.1.1.1", "172.32.0.1", "100.128.0.1", "2001:db8::1"] {
            assert!(!is_blocked(a.parse().unwrap()), "{a}");
        }
    }
}
