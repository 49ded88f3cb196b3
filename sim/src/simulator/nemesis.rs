//! The nemesis: crashes and restarts nodes, cuts the network and moves
//! leadership, on a schedule drawn from the run's seed, until the calm phase
//! heals everything.

use raft::{Input, MembershipChange, NodeId, RequestId, Role};

use crate::simulator::cluster::{position_of, Cluster, Event};
use crate::simulator::network::NetworkFaults;
use crate::simulator::random::{chance, pick, uniform};
use crate::simulator::scenario::TICK_US;

impl Cluster {
    pub(crate) fn nemesis_delay(&mut self) -> u64 {
        let interval = self.scenario.nemesis_interval_ticks;
        uniform(&mut self.rng, interval / 2, interval * 3 / 2 + 1) * TICK_US
    }

    pub(crate) fn nemesis(&mut self) {
        if !self.faults_active {
            return;
        }
        let delay = self.nemesis_delay();
        self.schedule(delay, Event::Nemesis);
        if chance(&mut self.rng, self.scenario.transfer_weight) {
            self.move_leadership();
        } else if chance(&mut self.rng, self.scenario.membership_change_weight) {
            self.change_membership();
        } else if chance(&mut self.rng, self.scenario.crash_weight) {
            self.crash_someone();
        } else {
            self.disturb_network();
        }
    }

    fn current_leader(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .filter(|node| {
                node.core
                    .as_ref()
                    .is_some_and(|core| core.role() == Role::Leader)
            })
            .map(|node| node.id)
            .max_by_key(|id| {
                self.nodes[position_of(*id)]
                    .core
                    .as_ref()
                    .map(|core| core.term())
            })
    }

    fn all_nodes(&self) -> Vec<NodeId> {
        self.nodes.iter().map(|node| node.id).collect()
    }

    /// A victim, the leader half of the time: losing the leader is the
    /// interesting case.
    fn pick_victim(&mut self) -> NodeId {
        match self.current_leader() {
            Some(leader) if chance(&mut self.rng, self.scenario.leader_bias) => leader,
            _ => {
                let nodes = self.all_nodes();
                pick(&mut self.rng, &nodes)
            }
        }
    }

    fn crash_someone(&mut self) {
        let victim = self.pick_victim();
        self.crash(victim, "");
    }

    /// Crashes `victim` (if up) and schedules its restart.
    pub(crate) fn crash(&mut self, victim: NodeId, reason: &str) {
        if !self.take_down(victim, reason) {
            return;
        }
        let (shortest, longest) = self.scenario.downtime_ticks;
        let downtime = uniform(&mut self.rng, shortest, longest + 1) * TICK_US;
        self.schedule(downtime, Event::Restart(victim));
    }

    /// Crashes `victim` if it is up, without scheduling a restart (scripted
    /// tests restart nodes themselves). Returns whether it was up.
    pub(crate) fn take_down(&mut self, victim: NodeId, reason: &str) -> bool {
        let node = &mut self.nodes[position_of(victim)];
        if node.core.is_none() {
            return false;
        }
        node.core = None;
        // The outputs held behind a write in flight die with the process.
        node.gate.clear();
        self.stats.crashes += 1;
        self.trace_line(format!("NEMESIS crash {victim} {reason}"));
        self.crash_disk(victim);
        true
    }

    pub(crate) fn restart_node(&mut self, node: NodeId) {
        if self.is_alive(node) || !self.disk_allows_start(node) {
            return;
        }
        self.nodes[position_of(node)].restarts += 1;
        self.trace_line(format!("NEMESIS restart {node}"));
        self.start_node(node);
    }

    /// Asks the leader to hand leadership to another node (which may be
    /// down, cut off or lagging: the transfer must then be abandoned
    /// safely).
    fn move_leadership(&mut self) {
        let Some(leader) = self.current_leader() else {
            return;
        };
        let others: Vec<NodeId> = self
            .all_nodes()
            .into_iter()
            .filter(|node| *node != leader)
            .collect();
        if others.is_empty() {
            return;
        }
        let target = pick(&mut self.rng, &others);
        self.stats.leadership_transfers += 1;
        self.trace_line(format!("NEMESIS transfer leadership {leader} -> {target}"));
        self.step_node(leader, Input::TransferLeadership { target });
    }

    /// Asks the leader to add, promote or remove one server, at random
    /// (it may refuse: a change in progress, a lagging learner). Only with
    /// CheckQuorum on: without its lease a removed server that missed its
    /// removal keeps raising the others' term (dissertation §4.2.3), a
    /// liveness problem the calm phase would report. With a disk that
    /// fails for good, at least three voters remain, so the rest still
    /// form a quorum.
    fn change_membership(&mut self) {
        if !self.scenario.check_quorum {
            return;
        }
        let Some(leader) = self.current_leader() else {
            return;
        };
        let membership = self.nodes[position_of(leader)]
            .core
            .as_ref()
            .expect("the leader is up")
            .membership()
            .clone();
        let outsiders: Vec<NodeId> = self
            .all_nodes()
            .into_iter()
            .filter(|node| !membership.contains(*node))
            .collect();
        let learners: Vec<NodeId> = membership.learners.iter().copied().collect();
        let min_voters = if self.scenario.corrupt_disk.is_some() {
            3
        } else {
            1
        };
        let removable: Vec<NodeId> = membership
            .members()
            .filter(|node| !membership.is_voter(*node) || membership.voters.len() > min_voters)
            .collect();
        // Addresses ride along (the core carries them, never reads them):
        // checking that they change only through the log costs nothing.
        let address = |node: NodeId, generation: u64| format!("node-{}:{generation}", node.get());
        let generation = self.next_membership_request;
        let members: Vec<NodeId> = membership.members().collect();
        let change = match uniform(&mut self.rng, 0, 5) {
            0 if !outsiders.is_empty() => {
                let node = pick(&mut self.rng, &outsiders);
                MembershipChange::AddLearner(node, Some(address(node, generation)))
            }
            1 if !outsiders.is_empty() => {
                MembershipChange::AddVoter(pick(&mut self.rng, &outsiders), None)
            }
            2 if !learners.is_empty() => {
                MembershipChange::PromoteLearner(pick(&mut self.rng, &learners))
            }
            3 if !members.is_empty() => {
                let node = pick(&mut self.rng, &members);
                MembershipChange::UpdateAddress(node, address(node, generation))
            }
            _ if !removable.is_empty() => MembershipChange::Remove(pick(&mut self.rng, &removable)),
            _ => return,
        };
        self.stats.membership_changes += 1;
        self.next_membership_request += 1;
        let request_id = RequestId(u64::MAX - self.next_membership_request);
        self.trace_line(format!("NEMESIS ask {leader} for {change:?}"));
        self.step_node(leader, Input::ChangeMembership { request_id, change });
    }

    fn disturb_network(&mut self) {
        self.stats.partitions += 1;
        let mut nodes = self.all_nodes();
        match uniform(&mut self.rng, 0, 5) {
            0 => {
                // A random split into two sides.
                for position in (1..nodes.len()).rev() {
                    let other = uniform(&mut self.rng, 0, position as u64 + 1) as usize;
                    nodes.swap(position, other);
                }
                let split = uniform(&mut self.rng, 1, nodes.len() as u64) as usize;
                let (side_a, side_b) = nodes.split_at(split);
                self.network.heal();
                self.network.partition(side_a, side_b);
            }
            1 => {
                let victim = self.pick_victim();
                let others: Vec<NodeId> = nodes.into_iter().filter(|n| *n != victim).collect();
                self.network.heal();
                self.network.partition(&[victim], &others);
            }
            2 => {
                // Asymmetric: some links work one way only.
                for _ in 0..uniform(&mut self.rng, 1, 4) {
                    let from = pick(&mut self.rng, &nodes);
                    let to = pick(&mut self.rng, &nodes);
                    if from != to {
                        self.network.cut_one_way(from, to);
                    }
                }
            }
            _ => self.network.heal(),
        }
        let cut: Vec<String> = self
            .network
            .blocked_links()
            .iter()
            .map(|(from, to)| format!("{from}->{to}"))
            .collect();
        self.trace_line(format!("NEMESIS network cut: [{}]", cut.join(" ")));
    }

    /// The calm phase: every link restored, the network reliable, every
    /// crashed node back.
    pub(crate) fn heal(&mut self) {
        self.faults_active = false;
        self.network.heal();
        self.network.faults = NetworkFaults::reliable();
        self.trace_line("NEMESIS heal: calm phase begins".to_string());
        for node in self.all_nodes() {
            self.restart_node(node);
        }
    }
}
