//! The simulated network: seeded delay, loss, duplication and reordering,
//! plus symmetric and asymmetric partitions.

use std::collections::BTreeSet;

use rand_chacha::ChaCha8Rng;

use crate::simulator::random::{chance, uniform};
use raft::NodeId;

/// How the network misbehaves in one run.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkFaults {
    /// Probability that a message is lost.
    pub drop_probability: f64,
    /// Probability that a message is delivered twice.
    pub duplicate_probability: f64,
    /// Shortest delivery delay, in simulated microseconds.
    pub delay_min_us: u64,
    /// Longest ordinary delivery delay, in simulated microseconds.
    pub delay_max_us: u64,
    /// Probability that a message is held ten times longer (reordering).
    pub long_delay_probability: f64,
}

impl NetworkFaults {
    /// A network that delivers everything promptly, once, in order.
    pub fn reliable() -> NetworkFaults {
        NetworkFaults {
            drop_probability: 0.0,
            duplicate_probability: 0.0,
            // One fixed delay keeps each link first-in first-out: with a
            // range, two messages sent together would swap half the time.
            delay_min_us: 300,
            delay_max_us: 300,
            long_delay_probability: 0.0,
        }
    }
}

/// Which links are cut and how the network behaves otherwise.
#[derive(Clone, Debug)]
pub struct Network {
    /// The current fault settings.
    pub faults: NetworkFaults,
    /// Cut links, as (from, to): messages from `from` to `to` are lost.
    blocked: BTreeSet<(NodeId, NodeId)>,
    /// Nodes cut off from everyone.
    disconnected: BTreeSet<NodeId>,
}

impl Network {
    /// A network with the given faults and no partition.
    pub fn new(faults: NetworkFaults) -> Network {
        Network {
            faults,
            blocked: BTreeSet::new(),
            disconnected: BTreeSet::new(),
        }
    }

    /// The delays after which copies of a message sent now arrive: none
    /// when it is lost, two when it is duplicated.
    pub fn delivery_delays(&self, rng: &mut ChaCha8Rng) -> Vec<u64> {
        if chance(rng, self.faults.drop_probability) {
            return Vec::new();
        }
        let copies = if chance(rng, self.faults.duplicate_probability) {
            2
        } else {
            1
        };
        (0..copies)
            .map(|_| {
                let delay = uniform(rng, self.faults.delay_min_us, self.faults.delay_max_us + 1);
                if chance(rng, self.faults.long_delay_probability) {
                    delay * 10
                } else {
                    delay
                }
            })
            .collect()
    }

    /// Whether a message from `from` to `to` gets through right now.
    pub fn is_connected(&self, from: NodeId, to: NodeId) -> bool {
        !self.blocked.contains(&(from, to))
            && !self.disconnected.contains(&from)
            && !self.disconnected.contains(&to)
    }

    /// Cuts `node` off from every other node until [`Network::reconnect`].
    pub fn disconnect(&mut self, node: NodeId) {
        self.disconnected.insert(node);
    }

    /// Whether `node` is cut off by [`Network::disconnect`].
    pub fn is_isolated(&self, node: NodeId) -> bool {
        self.disconnected.contains(&node)
    }

    /// Undoes [`Network::disconnect`]; other cuts stay.
    pub fn reconnect(&mut self, node: NodeId) {
        self.disconnected.remove(&node);
    }

    /// Cuts every link between the two groups, both ways.
    pub fn partition(&mut self, side_a: &[NodeId], side_b: &[NodeId]) {
        for &a in side_a {
            for &b in side_b {
                self.blocked.insert((a, b));
                self.blocked.insert((b, a));
            }
        }
    }

    /// Cuts the link from `from` to `to` only.
    pub fn cut_one_way(&mut self, from: NodeId, to: NodeId) {
        self.blocked.insert((from, to));
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        self.blocked.clear();
        self.disconnected.clear();
    }

    /// The cut links, for traces.
    pub fn blocked_links(&self) -> &BTreeSet<(NodeId, NodeId)> {
        &self.blocked
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::SeedableRng;

    #[test]
    fn partitions_cut_both_ways_and_heal() {
        let mut network = Network::new(NetworkFaults::reliable());
        network.partition(&[NodeId(1)], &[NodeId(2), NodeId(3)]);
        assert!(!network.is_connected(NodeId(1), NodeId(2)));
        assert!(!network.is_connected(NodeId(3), NodeId(1)));
        assert!(network.is_connected(NodeId(2), NodeId(3)));
        network.heal();
        assert!(network.is_connected(NodeId(1), NodeId(2)));
    }

    #[test]
    fn reconnecting_one_node_keeps_the_other_cut_off() {
        let mut network = Network::new(NetworkFaults::reliable());
        network.disconnect(NodeId(1));
        network.disconnect(NodeId(2));
        network.reconnect(NodeId(1));
        assert!(network.is_connected(NodeId(1), NodeId(3)));
        assert!(!network.is_connected(NodeId(1), NodeId(2)));
    }

    #[test]
    fn reliable_network_delivers_once() {
        let network = Network::new(NetworkFaults::reliable());
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..100 {
            let delays = network.delivery_delays(&mut rng);
            assert_eq!(delays.len(), 1);
            assert!((100..=500).contains(&delays[0]));
        }
    }
}
