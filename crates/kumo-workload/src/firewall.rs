//! The lease firewall: nftables rules that let a lease reach the internet and its own network,
//! and nothing else on or behind the provider's host.
//!
//! One table per provider instance, `inet kumo_<tag>` (the tag is 8 hex digits of SHA-256 of
//! the instance, see [`crate::network::instance_tag`]); every rule keys on the lease bridges'
//! interface names, which all start with `k<tag>` ([`crate::network::bridge_prefix`]):
//!
//! ```text
//! table inet kumo_<tag> {
//!   set intra     { type ifname . ifname }      "<bridge>" . "<bridge>", one per lease network
//!   set allowed4/6 { flags interval }           the operator's allowed_egress
//!   set dns4/6                                  resolvers, reachable on port 53 only
//!   set blocked4/6 { flags interval }           private, CGNAT, link-local, loopback, multicast
//!   chain input   { hook input priority -5 }    from a lease bridge: replies to connections
//!                                               the host opened pass, anything else is dropped
//!   chain forward { hook forward priority -5 }  same bridge in and out (one lease): accept;
//!                                               from a lease bridge: jump egress; to a lease
//!                                               bridge: replies pass, anything else is dropped
//!   chain egress                                to another lease bridge: drop; DNS to a
//!                                               resolver: accept; allowed: accept; blocked:
//!                                               drop; else (the internet): accept
//! }
//! ```
//!
//! The chains run before Docker's (priority -5 < 0); Docker's own rules still apply after them
//! (its isolation between bridges and its masquerading). Each change rewrites the whole table
//! in one nft transaction (`add table; delete table; table … { … }`), so applying is
//! idempotent, never leaves a half-written table, and removes the rules of lease networks that
//! are gone: the table is always derived from the lease networks that exist in the engine.

use std::process::Stdio;

use ipnet::IpNet;
use tokio::io::AsyncWriteExt;

use crate::WorkloadError;
use crate::network::{BLOCKED_EGRESS, FirewallConfig, bridge_prefix, instance_tag};

/// The firewall of one provider instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firewall {
    instance: String,
    table: String,
    prefix: String,
    config: FirewallConfig,
}

impl Firewall {
    /// The firewall of `instance` with `config`.
    pub fn new(instance: &str, config: FirewallConfig) -> Self {
        Firewall {
            instance: instance.to_string(),
            table: format!("kumo_{}", instance_tag(instance)),
            prefix: bridge_prefix(instance),
            config,
        }
    }

    /// The table's name in the `inet` family.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// What every lease bridge of the instance is named from.
    pub fn bridge_prefix(&self) -> &str {
        &self.prefix
    }

    /// The nft script that makes the table hold exactly the rules for `bridges` (the lease
    /// networks' bridge interfaces).
    pub fn script(&self, bridges: &[String]) -> String {
        let table = &self.table;
        let prefix = &self.prefix;
        let quoted = |s: &str| format!("\"{s}\"");
        let intra: Vec<String> = bridges
            .iter()
            .filter(|b| is_ifname(b))
            .map(|b| format!("{} . {}", quoted(b), quoted(b)))
            .collect();
        let (allowed4, allowed6) = split_families(self.config.allowed_egress.iter().copied());
        let (dns4, dns6) = split_families(self.config.dns_servers.iter().map(|&a| IpNet::from(a)));
        let (blocked4, blocked6) = split_families(
            BLOCKED_EGRESS
                .iter()
                .map(|r| r.parse::<IpNet>().expect("BLOCKED_EGRESS is valid")),
        );
        let elements = |items: &[String]| {
            if items.is_empty() {
                String::new()
            } else {
                format!(" elements = {{ {} }};", items.join(", "))
            }
        };
        // Only characters that need no escaping in an nft string.
        let instance: String = self
            .instance
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-/:@".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!(
            r#"add table inet {table}
delete table inet {table}
table inet {table} {{
  comment "kumo provider instance {instance}: lease network containment (bridges {prefix}*)"
  set intra {{ type ifname . ifname;{intra} }}
  set allowed4 {{ type ipv4_addr; flags interval; auto-merge;{allowed4} }}
  set allowed6 {{ type ipv6_addr; flags interval; auto-merge;{allowed6} }}
  set dns4 {{ type ipv4_addr;{dns4} }}
  set dns6 {{ type ipv6_addr;{dns6} }}
  set blocked4 {{ type ipv4_addr; flags interval;{blocked4} }}
  set blocked6 {{ type ipv6_addr; flags interval;{blocked6} }}
  chain input {{
    type filter hook input priority filter - 5; policy accept;
    iifname "{prefix}*" ct state established,related accept
    iifname "{prefix}*" drop
  }}
  chain forward {{
    type filter hook forward priority filter - 5; policy accept;
    iifname . oifname @intra accept
    iifname "{prefix}*" jump egress
    oifname "{prefix}*" ct state established,related accept
    oifname "{prefix}*" drop
  }}
  chain egress {{
    oifname "{prefix}*" drop
    ip daddr @dns4 meta l4proto {{ tcp, udp }} th dport 53 accept
    ip6 daddr @dns6 meta l4proto {{ tcp, udp }} th dport 53 accept
    ip daddr @allowed4 accept
    ip6 daddr @allowed6 accept
    ip daddr @blocked4 drop
    ip6 daddr @blocked6 drop
  }}
}}
"#,
            intra = elements(&intra),
            allowed4 = elements(&allowed4),
            allowed6 = elements(&allowed6),
            dns4 = elements(&dedup(dns4)),
            dns6 = elements(&dedup(dns6)),
            blocked4 = elements(&blocked4),
            blocked6 = elements(&blocked6),
        )
    }

    /// Installs the table for exactly `bridges`, replacing what was there.
    pub async fn apply(&self, bridges: &[String]) -> Result<(), WorkloadError> {
        let script = self.script(bridges);
        self.nft(&["-f", "-"], Some(&script)).await?;
        tracing::debug!(
            table = self.table,
            bridges = bridges.len(),
            "lease firewall applied"
        );
        Ok(())
    }

    /// Removes the table (nothing of this instance is left in nftables). Removing a table that
    /// is not there is not an error.
    pub async fn remove(&self) -> Result<(), WorkloadError> {
        let table = &self.table;
        let script = format!("add table inet {table}\ndelete table inet {table}\n");
        self.nft(&["-f", "-"], Some(&script)).await?;
        tracing::info!(table, "lease firewall removed");
        Ok(())
    }

    /// The bridges the installed table lets talk among themselves (one per lease network it
    /// contains), sorted; `None` when the table is not installed.
    pub async fn installed_bridges(&self) -> Result<Option<Vec<String>>, WorkloadError> {
        let tables = self.nft(&["-j", "list", "tables", "inet"], None).await?;
        let listed: serde_json::Value = serde_json::from_str(&tables).map_err(|e| {
            firewall_error(format!("nft -j list tables printed something else: {e}"))
        })?;
        let present = listed["nftables"].as_array().is_some_and(|items| {
            items
                .iter()
                .any(|i| i["table"]["name"].as_str() == Some(self.table.as_str()))
        });
        if !present {
            return Ok(None);
        }
        let out = self
            .nft(&["-j", "list", "set", "inet", &self.table, "intra"], None)
            .await?;
        let set: serde_json::Value = serde_json::from_str(&out)
            .map_err(|e| firewall_error(format!("nft -j list set printed something else: {e}")))?;
        let mut bridges: Vec<String> = set["nftables"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i["set"]["elem"].as_array())
            .flatten()
            .filter_map(|e| e["concat"][0].as_str().map(str::to_string))
            .collect();
        bridges.sort();
        Ok(Some(bridges))
    }

    /// Runs nft with `args`, feeding it `stdin`; its standard output.
    async fn nft(&self, args: &[&str], stdin: Option<&str>) -> Result<String, WorkloadError> {
        let mut child = tokio::process::Command::new(&self.config.nft)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                firewall_error(format!(
                    "cannot run {:?}: {e} (Debian: apt-get install nftables)",
                    self.config.nft
                ))
            })?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes())
                .await
                .map_err(|e| firewall_error(format!("writing to nft: {e}")))?;
            drop(pipe);
        }
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| firewall_error(format!("waiting for nft: {e}")))?;
        if !out.status.success() {
            return Err(firewall_error(format!(
                "nft {} failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

fn firewall_error(reason: String) -> WorkloadError {
    WorkloadError::Firewall { reason }
}

/// Whether `name` is a Linux interface name that needs no quoting in nft.
fn is_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

/// `items` without repeats (a set without `interval` refuses duplicates), order kept.
fn dedup(items: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    items
        .into_iter()
        .filter(|i| seen.insert(i.clone()))
        .collect()
}

/// IPv4 and IPv6 ranges as nft set elements (single addresses without their /32 or /128).
fn split_families(nets: impl Iterator<Item = IpNet>) -> (Vec<String>, Vec<String>) {
    let (v4, v6): (Vec<IpNet>, Vec<IpNet>) = nets
        .map(|n| n.trunc())
        .partition(|n| matches!(n, IpNet::V4(_)));
    let text = |v: Vec<IpNet>| {
        v.into_iter()
            .map(|n| {
                if n.prefix_len() == n.max_prefix_len() {
                    n.addr().to_string()
                } else {
                    n.to_string()
                }
            })
            .collect()
    };
    (text(v4), text(v6))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn firewall(allowed: &[&str]) -> Firewall {
        Firewall::new(
            "kumo1provider",
            FirewallConfig {
                allowed_egress: allowed.iter().map(|a| a.parse().unwrap()).collect(),
                dns_servers: vec![
                    "10.255.255.53".parse().unwrap(),
                    "10.255.255.53".parse().unwrap(),
                ],
                nft: "nft".into(),
            },
        )
    }

    #[test]
    fn the_script_names_the_instance_bridges_and_ranges() {
        let f = firewall(&["10.9.0.0/24", "fd12::/16"]);
        let prefix = f.bridge_prefix().to_string();
        let bridge = format!("{prefix}000001");
        let s = f.script(std::slice::from_ref(&bridge));
        assert!(s.starts_with(&format!(
            "add table inet {t}\ndelete table inet {t}\n",
            t = f.table()
        )));
        assert!(s.contains(&format!("\"{bridge}\" . \"{bridge}\"")), "{s}");
        assert!(s.contains(&format!("iifname \"{prefix}*\" drop")), "{s}");
        assert!(s.contains("elements = { 10.9.0.0/24 }"), "{s}");
        assert!(s.contains("elements = { fd12::/16 }"), "{s}");
        assert!(
            s.contains("169.254.0.0/16") && s.contains("fe80::/10"),
            "{s}"
        );
        assert!(
            s.contains("set dns4 { type ipv4_addr; elements = { 10.255.255.53 }; }"),
            "{s}"
        );
        assert!(
            s.contains("@dns4 meta l4proto { tcp, udp } th dport 53 accept"),
            "{s}"
        );
        // The other lease drop comes before the operator's allowed ranges.
        assert!(s.find("oifname \"k").unwrap() < s.find("@allowed4 accept").unwrap());
    }

    #[test]
    fn no_bridges_and_no_allowed_ranges_leave_the_sets_empty() {
        let s = firewall(&[]).script(&[]);
        assert!(s.contains("set intra { type ifname . ifname; }"), "{s}");
        assert!(s.contains("set dns6 { type ipv6_addr; }"), "{s}");
        assert!(s.contains("auto-merge; }"), "{s}");
    }

    #[test]
    fn names_that_could_inject_into_the_script_are_left_out() {
        let f = Firewall::new("evil\" }\nflush ruleset", FirewallConfig::new());
        let s = f.script(&["x\" . \"y".into()]);
        assert!(!s.contains("flush ruleset"), "{s}");
        assert!(!s.contains("x\" . \"y"), "{s}");
    }
}
