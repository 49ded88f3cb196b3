//! Free loopback ports for the nodes.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};

/// `count` distinct free addresses on 127.0.0.1: every port is bound at
/// once (so the kernel hands out distinct ones), then released for a node
/// to take. Another process could take one in between; the node that loses
/// the race fails to listen and says so in its log.
pub fn free_loopback_addresses(count: usize) -> io::Result<Vec<SocketAddr>> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .collect::<io::Result<Vec<_>>>()?;
    listeners.iter().map(TcpListener::local_addr).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn addresses_are_distinct_loopback_ports() {
        let addresses = free_loopback_addresses(5).unwrap();
        let ports: BTreeSet<u16> = addresses.iter().map(SocketAddr::port).collect();
        assert_eq!(ports.len(), 5);
        assert!(addresses.iter().all(|address| address.ip().is_loopback()));
    }
}
