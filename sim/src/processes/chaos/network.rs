//! Where the chaos harness's nodes live and how their links are cut.
//!
//! With root on Linux every node is a test host of its own: a network
//! namespace `rrc-<harness pid>-n<id>` with one veth link to a switch, a
//! bridge in a namespace of its own (`rrc-<harness pid>-switch`, so that
//! the firewall of the machine, Docker's for one, never filters what
//! crosses it). The harness reaches the switch through the veth
//! `rrc<harness pid>h`. They share a private /24 in `10.213.0.0/16` (the
//! first one nothing on this machine uses): the harness holds `.1`, which
//! is where the clients come from, and node `id` holds `.(10 + id)`. A link between two nodes is cut with a
//! blackhole route to the other in each of the two namespaces, so neither
//! can send the other anything while both still reach the clients.
//!
//! Without root, or off Linux, every node listens on a loopback port and no
//! link can be cut: only process faults remain.
//!
//! Everything made here is removed when [`Hosts`] is dropped, and a later
//! run removes what a harness that died without cleaning up left behind.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;

use raft::NodeId;
use thiserror::Error;

use crate::processes::local_cluster::ports::free_loopback_addresses;

/// The port every node listens on inside its own namespace.
const NAMESPACE_PORT: u16 = 2380;

/// The second octet of the harness's networks: `10.213.<n>.0/24`.
const SUBNET_OCTET: u8 = 213;

/// Prefix of every namespace and interface the harness makes.
const NAME_PREFIX: &str = "rrc";

/// Why the hosts could not be set up or changed.
#[derive(Debug, Error)]
pub enum NetworkError {
    /// A command failed.
    #[error("`{command}` failed: {reason}")]
    Command {
        /// The command line.
        command: String,
        /// Its error output or why it could not run.
        reason: String,
    },
    /// Every private subnet the harness may use is taken.
    #[error("no free subnet in 10.{SUBNET_OCTET}.0.0/16 for the test hosts")]
    NoFreeSubnet,
    /// Loopback ports could not be found.
    #[error("cannot find free loopback ports: {0}")]
    Ports(std::io::Error),
}

/// How the nodes are placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetworkMode {
    /// One network namespace per node, links that can be cut.
    Namespaces,
    /// Loopback ports, no network faults.
    Loopback,
}

impl fmt::Display for NetworkMode {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            NetworkMode::Namespaces => "namespaces",
            NetworkMode::Loopback => "loopback",
        })
    }
}

/// Whether this process may make network namespaces (root on Linux with
/// the `ip` command).
pub fn namespaces_available() -> bool {
    cfg!(target_os = "linux")
        && rustix::process::geteuid().is_root()
        && Command::new("ip")
            .arg("-V")
            .output()
            .is_ok_and(|output| output.status.success())
}

/// The nodes' hosts.
pub struct Hosts {
    mode: NetworkMode,
    addresses: BTreeMap<NodeId, SocketAddr>,
    /// In namespace mode: the harness's end of its link to the switch,
    /// the switch's namespace and the nodes' namespaces.
    harness_link: Option<String>,
    switch: Option<String>,
    namespaces: BTreeMap<NodeId, String>,
    /// The node pairs whose link is cut now, smaller id first.
    cut: BTreeSet<(NodeId, NodeId)>,
}

impl Hosts {
    /// Makes hosts for `nodes` in `mode`.
    pub fn create(nodes: &[NodeId], mode: NetworkMode) -> Result<Hosts, NetworkError> {
        match mode {
            NetworkMode::Loopback => {
                let addresses =
                    free_loopback_addresses(nodes.len()).map_err(NetworkError::Ports)?;
                Ok(Hosts {
                    mode,
                    addresses: nodes.iter().copied().zip(addresses).collect(),
                    harness_link: None,
                    switch: None,
                    namespaces: BTreeMap::new(),
                    cut: BTreeSet::new(),
                })
            }
            NetworkMode::Namespaces => Hosts::create_namespaces(nodes),
        }
    }

    fn create_namespaces(nodes: &[NodeId]) -> Result<Hosts, NetworkError> {
        remove_abandoned();
        let subnet = free_subnet()?;
        let pid = std::process::id();
        // From here on, dropping `hosts` removes whatever was made.
        let mut hosts = Hosts {
            mode: NetworkMode::Namespaces,
            addresses: BTreeMap::new(),
            harness_link: None,
            switch: None,
            namespaces: BTreeMap::new(),
            cut: BTreeSet::new(),
        };
        let switch = format!("{NAME_PREFIX}-{pid}-switch");
        ip(&["netns", "add", &switch])?;
        hosts.switch = Some(switch.clone());
        ip(&["-n", &switch, "link", "add", "bridge0", "type", "bridge"])?;
        ip(&["-n", &switch, "link", "set", "bridge0", "up"])?;
        let harness_link = format!("{NAME_PREFIX}{pid}h");
        ip(&[
            "link",
            "add",
            &harness_link,
            "type",
            "veth",
            "peer",
            "name",
            "harness",
            "netns",
            &switch,
        ])?;
        hosts.harness_link = Some(harness_link.clone());
        ip(&[
            "-n", &switch, "link", "set", "harness", "master", "bridge0", "up",
        ])?;
        ip(&[
            "addr",
            "add",
            &format!("10.{SUBNET_OCTET}.{subnet}.1/24"),
            "dev",
            &harness_link,
        ])?;
        ip(&["link", "set", &harness_link, "up"])?;
        for &id in nodes {
            let namespace = format!("{NAME_PREFIX}-{pid}-n{}", id.get());
            let port = format!("node{}", id.get());
            let address = node_address(subnet, id);
            ip(&["netns", "add", &namespace])?;
            hosts.namespaces.insert(id, namespace.clone());
            ip(&["-n", &namespace, "link", "set", "lo", "up"])?;
            ip(&[
                "-n", &switch, "link", "add", &port, "type", "veth", "peer", "name", "eth0",
                "netns", &namespace,
            ])?;
            ip(&[
                "-n", &switch, "link", "set", &port, "master", "bridge0", "up",
            ])?;
            ip(&[
                "-n",
                &namespace,
                "addr",
                "add",
                &format!("{address}/24"),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &namespace, "link", "set", "eth0", "up"])?;
            hosts
                .addresses
                .insert(id, SocketAddr::new(IpAddr::V4(address), NAMESPACE_PORT));
        }
        Ok(hosts)
    }

    /// How the nodes are placed.
    pub fn mode(&self) -> NetworkMode {
        self.mode
    }

    /// Every node's address (where it listens and the others reach it).
    pub fn addresses(&self) -> &BTreeMap<NodeId, SocketAddr> {
        &self.addresses
    }

    /// The command that runs a program on node `id`'s host (empty: run it
    /// directly).
    pub fn launch_prefix(&self, id: NodeId) -> Vec<OsString> {
        match self.namespaces.get(&id) {
            Some(namespace) => ["ip", "netns", "exec", namespace.as_str()]
                .into_iter()
                .map(OsString::from)
                .collect(),
            None => Vec::new(),
        }
    }

    /// Cuts exactly the links in `pairs` (any order within a pair) and
    /// restores every other; nothing to do in loopback mode.
    pub fn set_cut_links(
        &mut self,
        pairs: &BTreeSet<(NodeId, NodeId)>,
    ) -> Result<(), NetworkError> {
        if self.mode == NetworkMode::Loopback {
            return Ok(());
        }
        let wanted: BTreeSet<(NodeId, NodeId)> =
            pairs.iter().map(|&(a, b)| (a.min(b), a.max(b))).collect();
        for &(a, b) in self.cut.clone().difference(&wanted) {
            self.route(a, b, "del")?;
            self.route(b, a, "del")?;
            self.cut.remove(&(a, b));
        }
        for &(a, b) in wanted.difference(&self.cut.clone()) {
            // Recorded first, so that a failure half way is undone on drop.
            self.cut.insert((a, b));
            self.route(a, b, "add")?;
            self.route(b, a, "add")?;
        }
        Ok(())
    }

    /// Adds or deletes, in `from`'s namespace, the blackhole route to `to`.
    fn route(&self, from: NodeId, to: NodeId, action: &str) -> Result<(), NetworkError> {
        let namespace = &self.namespaces[&from];
        let target = format!("{}/32", self.addresses[&to].ip());
        ip(&["-n", namespace, "route", action, "blackhole", &target])
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for namespace in self.namespaces.values() {
            if let Err(error) = ip(&["netns", "del", namespace]) {
                tracing::warn!(%error, "cannot remove a test host");
            }
        }
        if let Some(switch) = &self.switch {
            if let Err(error) = ip(&["netns", "del", switch]) {
                tracing::warn!(%error, "cannot remove the test hosts' switch");
            }
        }
        // Goes with the switch's namespace, once the kernel gets to it.
        if let Some(link) = &self.harness_link {
            let _ = ip(&["link", "del", link]);
        }
    }
}

/// Node `id`'s address on subnet `10.213.<subnet>.0/24`.
fn node_address(subnet: u8, id: NodeId) -> Ipv4Addr {
    let host = u8::try_from(10 + id.get()).expect("the harness runs at most 200 nodes");
    Ipv4Addr::new(10, SUBNET_OCTET, subnet, host)
}

/// Runs `ip <arguments>`.
fn ip(arguments: &[&str]) -> Result<(), NetworkError> {
    let command = || format!("ip {}", arguments.join(" "));
    let output = Command::new("ip")
        .args(arguments)
        .output()
        .map_err(|error| NetworkError::Command {
            command: command(),
            reason: error.to_string(),
        })?;
    if output.status.success() {
        return Ok(());
    }
    Err(NetworkError::Command {
        command: command(),
        reason: String::from_utf8_lossy(&output.stderr).trim().to_string(),
    })
}

/// Runs `ip <arguments>` and returns what it printed.
fn ip_output(arguments: &[&str]) -> String {
    Command::new("ip")
        .args(arguments)
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
        .unwrap_or_default()
}

/// The first `n` such that no address of this machine is in
/// `10.213.<n>.0/24`.
fn free_subnet() -> Result<u8, NetworkError> {
    let addresses = ip_output(&["-4", "-o", "addr", "show"]);
    let routes = ip_output(&["-4", "route", "show", "table", "all"]);
    (0..=254u8)
        .find(|subnet| {
            let prefix = format!("10.{SUBNET_OCTET}.{subnet}.");
            !addresses.contains(&prefix) && !routes.contains(&prefix)
        })
        .ok_or(NetworkError::NoFreeSubnet)
}

/// Removes the namespaces and bridges of harness runs whose process is
/// gone (killed before it could clean up).
fn remove_abandoned() {
    let is_gone = |pid: &str| {
        pid.parse::<u32>().is_ok() && !std::path::Path::new(&format!("/proc/{pid}")).exists()
    };
    for line in ip_output(&["netns", "list"]).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(rest) = name.strip_prefix(&format!("{NAME_PREFIX}-")) else {
            continue;
        };
        if rest.split('-').next().is_some_and(is_gone) {
            tracing::info!(
                namespace = name,
                "removing a test host left by an earlier run"
            );
            let _ = ip(&["netns", "del", name]);
        }
    }
    for line in ip_output(&["-o", "link", "show"]).lines() {
        let Some(name) = line.split(':').nth(1).map(|name| name.trim()) else {
            continue;
        };
        let name = name.split('@').next().unwrap_or(name);
        let Some(pid) = name
            .strip_prefix(NAME_PREFIX)
            .and_then(|rest| rest.strip_suffix('h'))
        else {
            continue;
        };
        if is_gone(pid) {
            tracing::info!(link = name, "removing a link left by an earlier run");
            let _ = ip(&["link", "del", name]);
        }
    }
}
