//! Free loopback ports for nodes started later, by another process.
//!
//! Asking the system for a free port (binding port 0) hands out a port of the kernel's
//! ephemeral range, the range it also takes from for every outgoing connection. Between the
//! moment the port is chosen and the moment the node binds it, any `connect` on the machine
//! (the nodes already started dialing their peers, an HTTP client) may be given that port, and
//! the node then fails with "address in use". So [`free_port`] picks, at random, a port below
//! the ephemeral range (`/proc/sys/net/ipv4/ip_local_port_range`), which outgoing connections
//! never take, and checks that it can be bound now. The ports it returns are remembered, so one
//! process never gets the same port twice.

use std::{
    collections::HashSet,
    hash::{BuildHasher, Hasher},
    net::{Ipv4Addr, TcpListener},
    sync::Mutex,
};

/// The lowest port handed out: below it are well-known services' ports.
const LOWEST: u16 = 10_000;

/// Tries at random before falling back to a port the system chooses.
const TRIES: usize = 200;

/// Ports this process has handed out.
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// The first port of the kernel's ephemeral range (32768 where it cannot be read).
fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// A random number: the standard library's randomly seeded hasher over a counter.
fn random() -> u64 {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    h.write_u32(std::process::id());
    h.finish()
}

/// Whether `port` can be bound on loopback now.
fn bindable(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// A loopback port that was free a moment ago and that outgoing connections will not take
/// (see the module docs); never the same one twice in a process.
pub fn free_port() -> std::io::Result<u16> {
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
    let handed_out = handed_out.get_or_insert_with(HashSet::new);
    let end = ephemeral_start();
    if end > LOWEST {
        let span = u64::from(end - LOWEST);
        for _ in 0..TRIES {
            let port = LOWEST + (random() % span) as u16;
            if !handed_out.contains(&port) && bindable(port) {
                handed_out.insert(port);
                return Ok(port);
            }
        }
    }
    // No room below the ephemeral range (an unusual kernel setting): the system's choice.
    loop {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port();
        if handed_out.insert(port) {
            return Ok(port);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_bindable_and_outside_the_ephemeral_range() {
        let end = ephemeral_start();
        let ports: Vec<u16> = (0..50).map(|_| free_port().unwrap()).collect();
        let distinct: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len());
        for p in ports {
            assert!((LOWEST..end).contains(&p), "{p} outside {LOWEST}..{end}");
            assert!(bindable(p), "{p} cannot be bound");
        }
    }
}
