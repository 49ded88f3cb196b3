//! A simulated cluster: N Raft cores in one process, driven by one seeded
//! event queue over a simulated clock, network and disks. After every event
//! the safety checks run; at the end the client history is checked for
//! linearizability and the cluster for liveness.

use std::collections::{BTreeMap, BTreeSet};

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

use raft::{
    Config, Entries, Input, LogIndex, Membership, Message, MessageBody, NodeId, Output, OutputGate,
    RaftCore, RequestId, RestoredState, Role, Term,
};

use crate::simulator::corruption::Corruption;
use crate::simulator::disk::{Disk, StoredSnapshot};
use crate::simulator::invariants::{NodeView, SafetyChecker, Violation};
use crate::simulator::kv::KvStore;
use crate::simulator::log_view::LogView;
use crate::simulator::network::Network;
use crate::simulator::random::{chance, uniform};
use crate::simulator::scenario::{InjectedBug, Scenario, TICK_US};
use crate::simulator::trace::describe;
use crate::simulator::workload::{History, SimClient};

/// What to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunOptions {
    /// Every choice of the run derives from this.
    pub seed: u64,
    /// Cluster size.
    pub nodes: usize,
    /// A deliberately unsafe variant to run instead of the real algorithm.
    pub bug: Option<InjectedBug>,
    /// Record a readable trace of every event.
    pub trace: bool,
    /// Let the network garble messages in the seeds that draw it (see
    /// [`crate::simulator::corruption`]).
    pub garble_messages: bool,
}

/// Counts of what happened in a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Events processed.
    pub events: u64,
    /// Messages handed to the network.
    pub messages_sent: u64,
    /// Node crashes.
    pub crashes: u64,
    /// Network changes by the nemesis.
    pub partitions: u64,
    /// Leadership transfers the nemesis asked a leader for.
    pub leadership_transfers: u64,
    /// Configuration changes the nemesis asked a leader for.
    pub membership_changes: u64,
    /// Of those, the ones the leader accepted (appended).
    pub membership_changes_accepted: u64,
    /// Distinct terms that had a leader.
    pub leaders_elected: u64,
    /// Client operations that completed.
    pub operations_ok: u64,
    /// Client operations whose outcome is unknown.
    pub operations_indeterminate: u64,
    /// Client operations refused with no effect.
    pub operations_refused: u64,
    /// Highest committed index.
    pub committed: u64,
    /// Keys whose history was too large to decide within the search budget.
    pub linearizability_undecided: u64,
    /// Snapshots nodes took of their state machines.
    pub snapshots_taken: u64,
    /// Snapshots followers installed from a leader.
    pub snapshots_installed: u64,
    /// Messages the network garbled (each refused by its receiver).
    pub messages_garbled: u64,
    /// Crashes aimed at a moment when the node had log entries in flight.
    pub crashes_aimed_mid_write: u64,
    /// Crashes aimed at a moment when the node had a hard state in flight.
    pub crashes_aimed_at_hard_states: u64,
    /// Hard states in flight that a crash lost, with the outputs the gate
    /// held behind them.
    pub hard_states_lost: u64,
    /// Writes replacing a durable suffix that a crash cut short.
    pub replacements_cut_short: u64,
    /// Crashes that kept some but not all of the log entries in flight.
    pub torn_writes: u64,
    /// Log entries in flight, never reported persisted, that a crash kept.
    pub unacknowledged_entries_kept: u64,
    /// Disks that had a bit flipped before their log's tail.
    pub disks_corrupted: u64,
    /// Nodes that found their disk corrupt at a restart and refused to start.
    pub corrupt_disks_refused: u64,
}

/// The result of one run.
#[derive(Clone, Debug)]
pub struct RunOutcome {
    /// The options it ran with.
    pub options: RunOptions,
    /// The first violated property, if any.
    pub violation: Option<Violation>,
    /// What happened.
    pub stats: RunStats,
    /// The readable event trace (empty unless requested).
    pub trace: Vec<String>,
}

/// Things that happen at a simulated time.
#[derive(Clone, Debug)]
pub(crate) enum Event {
    Tick(NodeId),
    Deliver(Message),
    /// A snapshot message, with the snapshot streamed beside it.
    DeliverSnapshot(Message, Box<StoredSnapshot>),
    Flush {
        node: NodeId,
        sequence: u64,
    },
    ClientWake {
        client: usize,
        token: u64,
    },
    Nemesis,
    /// A crash aimed at a moment when the node has a log write in flight.
    CrashMidWrite(NodeId),
    Restart(NodeId),
    Reconnect(NodeId),
    Heal,
    StopClients,
}

/// One simulated node: its core (absent while crashed), its disk, the log
/// its core holds, its state machine and the client requests it holds.
pub(crate) struct SimNode {
    pub(crate) id: NodeId,
    pub(crate) core: Option<RaftCore>,
    pub(crate) disk: Disk,
    pub(crate) log: LogView,
    pub(crate) kv: KvStore,
    /// Requests handed to the core and not yet answered: the client waiting.
    pub(crate) requests: BTreeMap<RequestId, usize>,
    /// Proposals the core accepted: where their entries sit.
    pub(crate) accepted: BTreeMap<LogIndex, (RequestId, Term)>,
    pub(crate) restarts: u64,
    /// Found its disk corrupt at a restart: down for the rest of the run.
    pub(crate) refused_to_start: bool,
    /// Holds the core's outputs behind a hard state not yet durable: the
    /// node's own ordering rule ([`raft::OutputGate`]).
    pub(crate) gate: OutputGate,
}

/// The whole simulated world.
pub struct Cluster {
    pub(crate) options: RunOptions,
    pub(crate) scenario: Scenario,
    pub(crate) rng: ChaCha8Rng,
    pub(crate) now_us: u64,
    queue: BTreeMap<(u64, u64), Event>,
    next_event_sequence: u64,
    pub(crate) nodes: Vec<SimNode>,
    pub(crate) network: Network,
    pub(crate) clients: Vec<SimClient>,
    pub(crate) history: History,
    pub(crate) checker: SafetyChecker,
    pub(crate) stats: RunStats,
    leader_terms: BTreeSet<Term>,
    pub(crate) next_request_id: u64,
    /// Configuration changes asked so far (their request ids count down
    /// from the top, apart from the clients').
    pub(crate) next_membership_request: u64,
    pub(crate) faults_active: bool,
    pub(crate) clients_active: bool,
    pub(crate) trace: Vec<String>,
    pub(crate) violation: Option<Violation>,
    /// Append rejections each node sent, for backtracking bounds in tests.
    pub(crate) append_rejections: BTreeMap<NodeId, u64>,
    /// Garbles messages now and then, as a buggy network would.
    pub(crate) corruption: Corruption,
    /// The node stepping a garbled message, which must refuse it.
    pub(crate) refusal_expected: Option<NodeId>,
}

impl Cluster {
    /// Builds the cluster of a run; nothing happens until [`Cluster::run`].
    pub fn new(options: RunOptions) -> Cluster {
        let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
        let scenario = Scenario::generate(&mut rng, options.nodes);
        let corruption = if options.garble_messages {
            Corruption::for_seed(options.seed)
        } else {
            Corruption::none()
        };
        let mut cluster = Cluster::with_scenario(options, scenario, rng);
        cluster.corruption = corruption;
        for client in 0..cluster.scenario.clients {
            cluster.clients.push(SimClient::new());
            let delay = uniform(&mut cluster.rng, 0, 5 * TICK_US);
            cluster.schedule_client_wake(client, delay);
        }
        let first_nemesis = cluster.nemesis_delay();
        cluster.schedule(first_nemesis, Event::Nemesis);
        let fault_end = cluster.scenario.fault_ticks * TICK_US;
        cluster.schedule(fault_end, Event::Heal);
        // Clients stop well before the end so that their requests settle
        // and lagging followers catch up.
        let stop = fault_end + cluster.scenario.heal_ticks * TICK_US / 5;
        cluster.schedule(stop, Event::StopClients);
        cluster
    }

    /// A cluster of fresh nodes that tick; no clients, no nemesis.
    pub(crate) fn with_scenario(
        options: RunOptions,
        scenario: Scenario,
        rng: ChaCha8Rng,
    ) -> Cluster {
        let network = Network::new(scenario.network.clone());
        let mut cluster = Cluster {
            options,
            scenario,
            rng,
            now_us: 0,
            queue: BTreeMap::new(),
            next_event_sequence: 0,
            nodes: Vec::new(),
            network,
            clients: Vec::new(),
            history: History::default(),
            checker: SafetyChecker::default(),
            stats: RunStats::default(),
            leader_terms: BTreeSet::new(),
            next_request_id: 0,
            next_membership_request: 0,
            faults_active: true,
            clients_active: true,
            trace: Vec::new(),
            violation: None,
            append_rejections: BTreeMap::new(),
            corruption: Corruption::none(),
            refusal_expected: None,
        };
        for position in 0..cluster.options.nodes {
            let id = NodeId(position as u64 + 1);
            cluster.nodes.push(SimNode {
                id,
                core: None,
                disk: Disk::default(),
                log: LogView::default(),
                kv: KvStore::default(),
                requests: BTreeMap::new(),
                accepted: BTreeMap::new(),
                restarts: 0,
                refused_to_start: false,
                gate: OutputGate::new(),
            });
            cluster.start_node(id);
            // Nodes tick at different phases, like real clocks.
            let phase = uniform(&mut cluster.rng, 0, TICK_US);
            cluster.schedule(phase, Event::Tick(id));
        }
        cluster
    }

    /// Processes events up to `end_us` or the first violation.
    pub(crate) fn run_until(&mut self, end_us: u64) {
        while let Some((&(time, sequence), _)) = self.queue.first_key_value() {
            if time > end_us || self.violation.is_some() {
                break;
            }
            let event = self.queue.remove(&(time, sequence)).expect("key exists");
            self.now_us = time;
            self.stats.events += 1;
            self.handle_event(event);
            if self.violation.is_none() {
                if let Err(violation) = self.check_safety() {
                    self.violation = Some(violation);
                }
            }
        }
        self.now_us = self.now_us.max(end_us);
    }

    /// Runs to the end (or the first violation) and reports.
    ///
    /// A member far behind catches up only as fast as the scenario's
    /// replication limits let it (one entry per message, two in flight,
    /// slow and reordering links): when the cluster has not converged at
    /// the end of the calm phase but some member's applied index still
    /// moved in its last fifth, the calm phase goes on, up to
    /// [`CATCH_UP_EXTENSIONS`] more times. A cluster that stopped moving
    /// fails at once.
    pub fn run(mut self) -> RunOutcome {
        let heal_us = self.scenario.heal_ticks * TICK_US;
        let window_us = heal_us / 5;
        let mut end_us = self.scenario.fault_ticks * TICK_US + heal_us;
        let mut calm_ticks = self.scenario.heal_ticks;
        let mut extensions_left = CATCH_UP_EXTENSIONS;
        self.run_until(end_us - window_us);
        loop {
            let before = self.applied_indexes();
            self.run_until(end_us);
            if self.violation.is_some() {
                break;
            }
            let liveness = self.check_liveness(calm_ticks);
            let catching_up = self.applied_indexes() != before;
            if liveness.is_ok() || !catching_up || extensions_left == 0 {
                self.violation = liveness.err();
                break;
            }
            extensions_left -= 1;
            end_us += heal_us;
            calm_ticks += self.scenario.heal_ticks;
            self.trace_line(format!(
                "CALM PHASE extended to {calm_ticks} ticks: members are still catching up"
            ));
            self.run_until(end_us - window_us);
        }
        if self.violation.is_none() {
            self.violation = self.check_history().err();
        }
        self.stats.committed = self.checker.committed().len().0;
        self.stats.leaders_elected = self.leader_terms.len() as u64;
        if let Some(violation) = &self.violation {
            self.trace_line(format!("VIOLATION {violation}"));
        }
        RunOutcome {
            options: self.options,
            violation: self.violation,
            stats: self.stats,
            trace: self.trace,
        }
    }

    pub(crate) fn schedule(&mut self, delay_us: u64, event: Event) {
        self.next_event_sequence += 1;
        self.queue
            .insert((self.now_us + delay_us, self.next_event_sequence), event);
    }

    pub(crate) fn trace_line(&mut self, line: String) {
        if self.options.trace {
            let millis = self.now_us / 1_000;
            let micros = self.now_us % 1_000;
            self.trace.push(format!("{millis:>6}.{micros:03}ms {line}"));
        }
    }

    fn handle_event(&mut self, event: Event) {
        match event {
            Event::Tick(node) => {
                self.schedule(TICK_US, Event::Tick(node));
                self.step_node(node, Input::Tick);
            }
            Event::Deliver(mut message) => {
                let to = message.to;
                if !self.network.is_connected(message.from, to) || !self.is_alive(to) {
                    return;
                }
                let garbled = if self.faults_active {
                    self.corruption.maybe_garble(&mut message)
                } else {
                    None
                };
                if self.options.trace {
                    let line = format!("{} <- {}: {}", to, message.from, describe(&message));
                    self.trace_line(line);
                    if let Some(what) = garbled {
                        self.trace_line(format!("  (garbled by the network: {what})"));
                    }
                }
                if garbled.is_some() {
                    self.stats.messages_garbled += 1;
                    self.refusal_expected = Some(to);
                }
                self.step_node(to, Input::Message(message));
                if let (Some(what), Some(node)) = (garbled, self.refusal_expected.take()) {
                    if self.violation.is_none() {
                        self.violation = Some(Violation {
                            property: "Protocol validity",
                            detail: format!(
                                "{node} took a garbled message ({what}) without refusing it"
                            ),
                        });
                    }
                }
            }
            Event::DeliverSnapshot(message, snapshot) => self.deliver_snapshot(message, *snapshot),
            Event::Flush { node, sequence } => {
                let position = position_of(node);
                let persisted = self.nodes[position].disk.flush(sequence);
                if self.is_alive(node) {
                    self.nodes[position].gate.durable(sequence);
                    match persisted {
                        Some((index, term)) => {
                            self.step_node(node, Input::LogPersisted { index, term })
                        }
                        None => self.carry_out_outputs(node),
                    }
                }
            }
            Event::ClientWake { client, token } => self.wake_client(client, token),
            Event::Nemesis => self.nemesis(),
            Event::CrashMidWrite(node) => self.crash(node, "in the middle of a log write"),
            Event::Restart(node) => self.restart_node(node),
            Event::Reconnect(node) => self.network.reconnect(node),
            Event::Heal => self.heal(),
            Event::StopClients => self.clients_active = false,
        }
    }

    pub(crate) fn is_alive(&self, node: NodeId) -> bool {
        self.nodes[position_of(node)].core.is_some()
    }

    /// Builds a core from what the node's disk holds.
    pub(crate) fn start_node(&mut self, id: NodeId) {
        let seed = self.rng.next_u64();
        let scenario = &self.scenario;
        let mut config = Config::new(id);
        config.pre_vote = scenario.pre_vote;
        config.check_quorum = scenario.check_quorum;
        config.max_inflight_messages = scenario.max_inflight_messages;
        config.max_entries_per_message = scenario.max_entries_per_message;
        match self.options.bug {
            Some(InjectedBug::VoteWithoutLogCheck) => {
                config.bug_injection.vote_without_log_check = true
            }
            Some(InjectedBug::CommitPreviousTermByCounting) => {
                config.bug_injection.commit_previous_term_by_counting = true
            }
            Some(InjectedBug::ReadWithoutLeadershipCheck) => {
                config.bug_injection.read_without_leadership_check = true
            }
            Some(InjectedBug::ConcurrentMembershipChanges) => {
                config.bug_injection.concurrent_membership_changes = true
            }
            Some(InjectedBug::SkipMessageValidation) => {
                config.bug_injection.skip_message_validation = true
            }
            Some(InjectedBug::ActBeforeHardStateDurable) | None => {}
        }
        let voters = (1..=self.options.nodes as u64).map(NodeId);
        let node = &mut self.nodes[position_of(id)];
        // A restart begins with nothing held: what was held died with the
        // process.
        node.gate = match self.options.bug {
            Some(InjectedBug::ActBeforeHardStateDurable) => OutputGate::ignoring_durability(),
            _ => OutputGate::new(),
        };
        config.snapshot_trailing_entries = scenario.snapshot_trailing_entries;
        let restored = RestoredState {
            hard_state: node.disk.hard_state,
            entries: node.disk.log.entries().to_vec(),
            applied: node
                .disk
                .snapshot
                .as_ref()
                .map_or(LogIndex(0), |snapshot| snapshot.metadata.index),
            snapshot: node
                .disk
                .snapshot
                .as_ref()
                .map(|snapshot| snapshot.metadata.clone()),
            // The configuration as of the snapshot; configuration entries in
            // the log after it override it.
            membership: node.disk.snapshot.as_ref().map_or_else(
                || RestoredState::new_cluster(voters).membership,
                |snapshot| Membership::clone(&snapshot.metadata.membership),
            ),
        };
        let core = RaftCore::new(config, restored, seed).expect("simulated state is valid");
        node.core = Some(core);
        node.log = node.disk.log.clone();
        // The state machine restarts from the snapshot, or empty.
        node.kv = node
            .disk
            .snapshot
            .as_ref()
            .map(|snapshot| snapshot.kv.clone())
            .unwrap_or_default();
        node.disk.drop_incoming_snapshots();
        node.requests.clear();
        node.accepted.clear();
    }

    /// Feeds one input to a live node and carries out its outputs. A new
    /// leader may be cut off the moment it is elected, or crash right after
    /// its first commit: the delicate moments of a leader's life.
    pub(crate) fn step_node(&mut self, node: NodeId, input: Input) {
        let position = position_of(node);
        let sim_node = &mut self.nodes[position];
        let Some(core) = sim_node.core.as_mut() else {
            return;
        };
        // A new leader that has not yet committed an entry of its own term:
        // its first commit, before it can tell the others, is where
        // commit-rule bugs show.
        let watched_commit = (self.faults_active
            && self.scenario.first_commit_crash_probability > 0.0
            && core.role() == Role::Leader
            && sim_node.log.term_at(core.commit_index()) != Some(core.term()))
        .then(|| core.commit_index());
        let was_leader = core.role() == Role::Leader;
        if let Err(panic) = catch_core_panic(|| core.step(input)) {
            self.core_panicked(node, panic);
            return;
        }
        if self.faults_active
            && !was_leader
            && core.role() == Role::Leader
            && chance(&mut self.rng, self.scenario.election_isolation_probability)
        {
            // Cut the new leader off before anything it sends leaves: it
            // writes its no-op but cannot replicate it, so logs diverge.
            self.network.disconnect(node);
            let ticks = uniform(&mut self.rng, 5, 60);
            self.schedule(ticks * TICK_US, Event::Reconnect(node));
            self.trace_line(format!(
                "NEMESIS isolate {node} the moment it became leader"
            ));
        }
        self.carry_out_outputs(node);
        if let Some(before) = watched_commit {
            let after = self.nodes[position]
                .core
                .as_ref()
                .map(RaftCore::commit_index);
            if after.is_some_and(|after| after > before)
                && chance(&mut self.rng, self.scenario.first_commit_crash_probability)
            {
                self.crash(node, "right after its first commit as leader");
            }
        }
    }

    /// A core's panic is one of its internal invariants broken: the run
    /// stops there, as at any other violation, with its seed and trace.
    pub(crate) fn core_panicked(&mut self, node: NodeId, message: String) {
        self.violation = Some(Violation {
            property: "Internal invariant",
            detail: format!("{node} panicked: {message}"),
        });
    }

    /// Carries out one output the gate let through.
    pub(crate) fn carry_out(&mut self, node: NodeId, output: Output) {
        let position = position_of(node);
        match output {
            Output::SaveHardState(hard_state) => self.save_hard_state(node, hard_state),
            Output::AppendLog { entries } => self.write_append(node, entries),
            Output::Send(message) => {
                self.stats.messages_sent += 1;
                if let MessageBody::AppendEntriesResponse(response) = &message.body {
                    if !response.success {
                        *self.append_rejections.entry(node).or_default() += 1;
                    }
                }
                let delays = if self.faults_active {
                    self.network.delivery_delays(&mut self.rng)
                } else {
                    vec![uniform(&mut self.rng, 100, 600)]
                };
                let snapshot = self.snapshot_for(node, &message);
                for delay in delays {
                    let event = match &snapshot {
                        Some(snapshot) => Event::DeliverSnapshot(message.clone(), snapshot.clone()),
                        None => Event::Deliver(message.clone()),
                    };
                    self.schedule(delay, event);
                }
            }
            Output::CompactLog { up_to } => {
                let sim_node = &mut self.nodes[position];
                sim_node.disk.log.compact(up_to);
                sim_node.log.compact(up_to);
            }
            Output::RestoreSnapshot { metadata } => {
                // Installed durably at once: what the gate held may follow.
                self.install_snapshot(node, metadata);
                self.nodes[position].gate.written_durably();
            }
            Output::Apply { entries } => self.apply(node, entries),
            Output::ProposalAccepted {
                request_id,
                index,
                term,
            } => {
                if is_membership_request(request_id) {
                    self.stats.membership_changes_accepted += 1;
                }
                self.nodes[position]
                    .accepted
                    .insert(index, (request_id, term));
            }
            Output::ReadReady {
                request_id,
                read_index,
            } => self.answer_read(node, request_id, read_index),
            // Judged as the core produced it (`judge_refusals`): the gate
            // may hold it behind a hard state well after the step.
            Output::MessageRefused { .. } => {}
            Output::RequestFailed { request_id, error } => {
                self.answer_failure(node, request_id, error)
            }
        }
    }

    fn apply(&mut self, node: NodeId, entries: Entries) {
        let position = position_of(node);
        if let Err(violation) = self
            .checker
            .check_apply(node, &self.nodes[position].log, &entries)
        {
            self.violation = Some(violation);
            return;
        }
        let last = entries.last().expect("apply is never empty").index;
        for entry in entries.iter().cloned() {
            self.apply_entry(node, entry);
        }
        self.step_node(node, Input::Applied { index: last });
        self.maybe_take_snapshot(node, last);
    }

    fn check_safety(&mut self) -> Result<(), Violation> {
        let views: Vec<NodeView<'_>> = self
            .nodes
            .iter()
            .map(|node| {
                let (role, term, commit_index) = match &node.core {
                    Some(core) => (core.role(), core.term(), core.commit_index()),
                    None => (Role::Follower, node.disk.hard_state.term, LogIndex(0)),
                };
                NodeView {
                    id: node.id,
                    alive: node.core.is_some(),
                    role,
                    term,
                    commit_index,
                    log: &node.log,
                    durable: &node.disk.log,
                    committed_membership: node
                        .core
                        .as_ref()
                        .map(|core| core.membership_at(commit_index)),
                }
            })
            .collect();
        let new_leaders: Vec<(NodeId, Term)> = views
            .iter()
            .filter(|view| view.alive && view.role == Role::Leader)
            .filter(|view| !self.leader_terms.contains(&view.term))
            .map(|view| (view.id, view.term))
            .collect();
        let result = self.checker.check_step(&views);
        for (leader, term) in new_leaders {
            self.leader_terms.insert(term);
            self.trace_line(format!("{leader} became leader of {term}"));
        }
        result
    }

    /// Each member's applied index (none while it is down).
    fn applied_indexes(&self) -> Vec<Option<LogIndex>> {
        self.nodes
            .iter()
            .map(|node| node.core.as_ref().map(|core| core.status().applied_index))
            .collect()
    }

    /// After `calm_ticks` of calm: one leader that everyone follows, every
    /// live node caught up, and no request left unanswered.
    fn check_liveness(&self, calm_ticks: u64) -> Result<(), Violation> {
        let failure = |detail: String| Violation {
            property: "Liveness",
            detail,
        };
        let leaders: Vec<&SimNode> = self
            .nodes
            .iter()
            .filter(|node| {
                node.core
                    .as_ref()
                    .is_some_and(|core| core.role() == Role::Leader)
            })
            .collect();
        let [leader] = leaders.as_slice() else {
            return Err(failure(format!(
                "{} leaders after {} calm ticks",
                leaders.len(),
                calm_ticks
            )));
        };
        let leader_core = leader.core.as_ref().expect("leader is alive");
        let status = leader_core.status();
        if status.commit_index < status.last_index {
            return Err(failure(format!(
                "leader {} has committed only {} of {} after {} calm ticks",
                leader.id, status.commit_index, status.last_index, calm_ticks
            )));
        }
        for node in &self.nodes {
            if !status.membership.contains(node.id) {
                // Removed: it follows no one and no one needs it. A proposal
                // it accepted as an old leader may stay unresolved there:
                // no leader replicates to it any more (its clients time out
                // and count the request as indeterminate).
                continue;
            }
            if node.disk.recover().is_err() {
                // Down for good; the others hold a quorum without it.
                if node.core.is_some() {
                    return Err(failure(format!("{} started on a corrupt disk", node.id)));
                }
                continue;
            }
            let Some(core) = &node.core else {
                return Err(failure(format!("{} is still down", node.id)));
            };
            let node_status = core.status();
            if node_status.leader != Some(leader.id)
                || node_status.applied_index != status.commit_index
            {
                return Err(failure(format!(
                    "{} follows {:?} and applied {} but leader {} committed {} after {} calm ticks",
                    node.id,
                    node_status.leader,
                    node_status.applied_index,
                    leader.id,
                    status.commit_index,
                    calm_ticks
                )));
            }
            if let Some((request_id, client)) = node.requests.first_key_value() {
                return Err(failure(format!(
                    "{request_id} of client {client} is still unanswered at {}",
                    node.id
                )));
            }
        }
        Ok(())
    }
}

/// Whether `request_id` is one of the nemesis's configuration changes
/// (their ids count down from the top; the clients' count up from 1).
pub(crate) fn is_membership_request(request_id: raft::RequestId) -> bool {
    request_id.0 > u64::MAX / 2
}

/// How many more calm phases a run gets while its members are still
/// catching up (see [`Cluster::run`]).
pub const CATCH_UP_EXTENSIONS: u64 = 4;

/// Node ids are 1..=N; their position in the node list is id - 1.
pub(crate) fn position_of(node: NodeId) -> usize {
    node.0 as usize - 1
}

impl Cluster {
    /// The scenario the seed produced.
    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }
}

/// Runs `call` on a core, turning a panic into its message.
pub(crate) fn catch_core_panic<T>(call: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)).map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|message| message.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::catch_core_panic;

    #[test]
    fn a_core_panic_becomes_its_message() {
        assert_eq!(catch_core_panic(|| 7), Ok(7));
        assert_eq!(
            catch_core_panic(|| -> u32 { panic!("an invariant is broken") }),
            Err("an invariant is broken".to_string())
        );
        let index = 3;
        assert_eq!(
            catch_core_panic(|| -> u32 { panic!("no entry at {index}") }),
            Err("no entry at 3".to_string())
        );
    }
}
