//! A scripted cluster for scenario tests: the same simulated nodes, network
//! and disks as a random run, with the safety checks running after every
//! step, but driven by the test (crash this node, cut that link, propose
//! here, run so many ticks) instead of by a nemesis. It offers the verbs of
//! the MIT 6.5840 Raft lab harness, in simulated time.

use bytes::Bytes;
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;

use raft::{EntryPayload, Input, LogIndex, NodeId, RequestId, Role, Status, Term};

use crate::simulator::cluster::{position_of, Cluster, RunOptions};
use crate::simulator::invariants::Violation;
use crate::simulator::kv::Command;
use crate::simulator::network::NetworkFaults;
use crate::simulator::scenario::{Scenario, TICK_US};

/// The key every scripted proposal writes; values identify proposals.
const SCRIPTED_KEY: u64 = 0;

impl Scenario {
    /// A scenario with the default core settings and the given network, for
    /// scripted tests.
    pub fn scripted(nodes: usize, network: NetworkFaults) -> Scenario {
        Scenario {
            nodes,
            network,
            pre_vote: true,
            check_quorum: true,
            max_inflight_messages: 256,
            max_entries_per_message: 64,
            disk_latency_us: (50, 500),
            torn_write_probability: 0.0,
            mid_write_crash_probability: 0.0,
            mid_write_crashes_max: 0,
            corrupt_disk: None,
            fault_ticks: 0,
            heal_ticks: 0,
            nemesis_interval_ticks: 0,
            crash_weight: 0.0,
            leader_bias: 0.0,
            transfer_weight: 0.0,
            membership_change_weight: 0.0,
            downtime_ticks: (0, 0),
            first_commit_crash_probability: 0.0,
            election_isolation_probability: 0.0,
            snapshot_interval_entries: 0,
            snapshot_trailing_entries: 0,
            clients: 0,
            keys: 1,
            client_timeout_ticks: 0,
        }
    }
}

impl Cluster {
    /// A cluster of `nodes` fresh nodes on a reliable network, driven by the
    /// caller.
    pub fn scripted(nodes: usize, seed: u64) -> Cluster {
        Cluster::scripted_with(Scenario::scripted(nodes, NetworkFaults::reliable()), seed)
    }

    /// A scripted cluster with explicit settings.
    pub fn scripted_with(scenario: Scenario, seed: u64) -> Cluster {
        let options = RunOptions {
            seed,
            nodes: scenario.nodes,
            bug: None,
            trace: false,
            // A script says what the network does.
            garble_messages: false,
        };
        let mut cluster =
            Cluster::with_scenario(options, scenario, ChaCha8Rng::seed_from_u64(seed));
        cluster.faults_active = true;
        cluster
    }

    /// Advances simulated time by `ticks`, checking safety after every step.
    pub fn run_ticks(&mut self, ticks: u64) -> Result<(), Violation> {
        let end = self.now_us + ticks * TICK_US;
        self.run_until(end);
        match &self.violation {
            Some(violation) => Err(violation.clone()),
            None => Ok(()),
        }
    }

    /// Makes the network lossy and reordering (`true`) or reliable.
    pub fn set_unreliable(&mut self, unreliable: bool) {
        self.network.faults = if unreliable {
            NetworkFaults {
                drop_probability: 0.1,
                duplicate_probability: 0.02,
                delay_min_us: 100,
                delay_max_us: 2_000,
                long_delay_probability: 0.1,
            }
        } else {
            NetworkFaults::reliable()
        };
    }

    /// Cuts `node` off from all others.
    pub fn disconnect(&mut self, node: NodeId) {
        self.network.disconnect(node);
    }

    /// Reconnects `node` (links cut by other calls stay cut).
    pub fn reconnect(&mut self, node: NodeId) {
        self.network.reconnect(node);
    }

    /// Crashes `node`: it loses everything not yet durable, and stays down
    /// until [`Cluster::restart`].
    pub fn crash_node(&mut self, node: NodeId) {
        self.take_down(node, "by the test");
    }

    /// Restarts a crashed `node` from its disk.
    pub fn restart(&mut self, node: NodeId) {
        self.restart_node(node);
    }

    /// Flips a bit in the record of a durable entry of the crashed `node`
    /// that is not its log's last (chosen by the seed): at its next restart
    /// it finds the damage and refuses to start, for good. Returns the
    /// entry; `None` when its log holds fewer than two entries.
    pub fn corrupt_disk(&mut self, node: NodeId) -> Option<LogIndex> {
        self.flip_random_bit(node)
    }

    /// Whether `node` found its disk corrupt at a restart and refused to
    /// start.
    pub fn refused_to_start(&self, node: NodeId) -> bool {
        self.nodes[position_of(node)].refused_to_start
    }

    /// Whether `node` is running.
    pub fn is_up(&self, node: NodeId) -> bool {
        self.is_alive(node)
    }

    /// Every node id.
    pub fn node_ids(&self) -> Vec<NodeId> {
        self.nodes.iter().map(|node| node.id).collect()
    }

    /// The status of a running node.
    pub fn status(&self, node: NodeId) -> Option<Status> {
        self.nodes[position_of(node)]
            .core
            .as_ref()
            .map(|core| core.status())
    }

    /// Running nodes that believe they lead, with their terms.
    pub fn leaders(&self) -> Vec<(NodeId, Term)> {
        self.nodes
            .iter()
            .filter_map(|node| node.core.as_ref())
            .filter(|core| core.role() == Role::Leader)
            .map(|core| (core.id(), core.term()))
            .collect()
    }

    /// Runs until the running, connected nodes have exactly one leader of
    /// the highest term, at most `max_ticks`; returns it.
    pub fn wait_for_leader(&mut self, max_ticks: u64) -> Result<Option<NodeId>, Violation> {
        for _ in 0..max_ticks {
            self.run_ticks(1)?;
            let mut leaders: Vec<(NodeId, Term)> = self
                .leaders()
                .into_iter()
                .filter(|(node, _)| !self.network.is_isolated(*node))
                .collect();
            leaders.sort_by_key(|(_, term)| *term);
            if let Some((leader, term)) = leaders.last() {
                if leaders.iter().filter(|(_, other)| other == term).count() == 1 {
                    return Ok(Some(*leader));
                }
            }
        }
        Ok(None)
    }

    /// Offers `value` to `node` as a proposal. Returns where the node put it
    /// when it accepted (it leads), `None` otherwise.
    pub fn propose(&mut self, node: NodeId, value: u64) -> Option<LogIndex> {
        if !self.is_alive(node) {
            return None;
        }
        self.next_request_id += 1;
        let request_id = RequestId(self.next_request_id);
        let command = Command::Put {
            key: SCRIPTED_KEY,
            value,
        };
        self.step_node(
            node,
            Input::Propose {
                request_id,
                command: command.encode(),
            },
        );
        self.nodes[position_of(node)]
            .accepted
            .iter()
            .find(|(_, (accepted, _))| *accepted == request_id)
            .map(|(index, _)| *index)
    }

    /// Asks `leader` to hand leadership to `target` (ignored unless
    /// `leader` is up and leads).
    pub fn transfer_leadership(&mut self, leader: NodeId, target: NodeId) {
        self.trace_line(format!("SCRIPT transfer leadership {leader} -> {target}"));
        self.step_node(leader, Input::TransferLeadership { target });
    }

    /// How many nodes have applied `index`, and the value there (MIT's
    /// `nCommitted`). Panics if two nodes applied different values, which
    /// the safety checks would have reported first.
    pub fn applied_count(&self, index: LogIndex) -> (usize, Option<u64>) {
        let mut count = 0;
        let mut value = None;
        for node in &self.nodes {
            let Some(core) = &node.core else { continue };
            if core.status().applied_index < index {
                continue;
            }
            let Some(entry) = node.log.entry_at(index) else {
                continue;
            };
            let here = match &entry.payload {
                EntryPayload::Command(bytes) => match Command::decode(bytes) {
                    Some(Command::Put { value, .. }) => Some(value),
                    _ => None,
                },
                EntryPayload::Noop => None,
                EntryPayload::Configuration(_) => None,
            };
            if count > 0 && here != value {
                panic!(
                    "{} applied {here:?} at {index} but others applied {value:?}",
                    node.id
                );
            }
            value = here;
            count += 1;
        }
        (count, value)
    }

    /// MIT's `one()`: proposes `value` at whichever node accepts it, and
    /// waits until at least `expected_nodes` have applied it; retries with
    /// other nodes for up to `max_ticks`. Returns its index.
    pub fn commit_one(
        &mut self,
        value: u64,
        expected_nodes: usize,
        max_ticks: u64,
    ) -> Result<Option<LogIndex>, Violation> {
        let start = self.now_us;
        let mut next_candidate = 0;
        while self.now_us < start + max_ticks * TICK_US {
            let nodes = self.node_ids();
            let mut placed = None;
            for _ in 0..nodes.len() {
                let node = nodes[next_candidate % nodes.len()];
                next_candidate += 1;
                if let Some(index) = self.propose(node, value) {
                    placed = Some(index);
                    break;
                }
            }
            let Some(index) = placed else {
                self.run_ticks(5)?;
                continue;
            };
            // Give it a while to commit before proposing again.
            for _ in 0..100 {
                self.run_ticks(1)?;
                let (count, applied_value) = self.applied_count(index);
                if count >= expected_nodes && applied_value == Some(value) {
                    return Ok(Some(index));
                }
            }
        }
        Ok(None)
    }

    /// Messages handed to the network so far.
    pub fn messages_sent(&self) -> u64 {
        self.stats.messages_sent
    }

    /// Append rejections `node` has sent so far.
    pub fn append_rejections_sent(&self, node: NodeId) -> u64 {
        self.append_rejections
            .get(&node)
            .copied()
            .unwrap_or_default()
    }

    /// The term of every entry in `node`'s log, in index order (its disk's
    /// log while it is down), for tests that reason about conflicts.
    pub fn log_terms(&self, node: NodeId) -> Vec<Term> {
        self.nodes[position_of(node)].log.terms().to_vec()
    }

    /// The command bytes of a scripted proposal of `value` (for tests that
    /// inspect logs).
    pub fn scripted_command(value: u64) -> Bytes {
        Command::Put {
            key: SCRIPTED_KEY,
            value,
        }
        .encode()
    }
}
