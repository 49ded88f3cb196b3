//! The simulated driver of each node: it takes the core's outputs, checks
//! what the core decided as it decides it, and carries the outputs out
//! through the node's own ordering rule, [`raft::OutputGate`], exactly as
//! the real event loop does. A hard state is written in the background and
//! holds back everything after it until its flush; a crash before then
//! loses the hard state and everything it held.
//!
//! Two moments, kept apart:
//! - *Emitted*: the core has decided. Its log (the node's [`LogView`]) takes
//!   an append or a received snapshot now, and the append rules, the
//!   committed-prefix checks and the refusal of garbled messages are judged
//!   against it, whatever the gate still holds.
//! - *Carried out*: the gate let the output through. Only now do writes
//!   reach the disk, messages the network and entries the state machine.
//!
//! [`LogView`]: crate::simulator::log_view::LogView

use raft::{Entries, HardState, NodeId, Output, RaftCore, Role, SnapshotMetadata};

use crate::simulator::cluster::{catch_core_panic, position_of, Cluster, Event};
use crate::simulator::invariants::Violation;
use crate::simulator::log_view::LogView;
use crate::simulator::random::uniform;

impl Cluster {
    /// Takes the core's outputs and carries out what the gate lets
    /// through, until the core has nothing more or the gate holds the rest.
    pub(crate) fn carry_out_outputs(&mut self, node: NodeId) {
        let position = position_of(node);
        loop {
            let Some(core) = self.nodes[position].core.as_mut() else {
                return;
            };
            let outputs = match catch_core_panic(|| core.take_outputs()) {
                Ok(outputs) => outputs,
                Err(panic) => {
                    self.core_panicked(node, panic);
                    return;
                }
            };
            self.emitted(node, &outputs);
            self.nodes[position].gate.admit(outputs);
            let mut carried = false;
            while let Some(output) = self.nodes[position].gate.next() {
                if self.violation.is_some() {
                    return;
                }
                self.carry_out(node, output);
                carried = true;
            }
            if !carried {
                return;
            }
        }
    }

    /// What the core decided in one batch of outputs, judged as it is
    /// decided.
    fn emitted(&mut self, node: NodeId, outputs: &[Output]) {
        for output in outputs {
            if self.violation.is_some() {
                return;
            }
            match output {
                Output::AppendLog { entries } => self.record_append(node, entries),
                Output::RestoreSnapshot { metadata } => self.record_restore(node, metadata),
                Output::MessageRefused { from, refusal } => {
                    // Only a message the network garbled may be refused:
                    // any other refusal means a correct core sent a message
                    // its peers call malformed.
                    if self.refusal_expected == Some(node) {
                        self.refusal_expected = None;
                    } else {
                        self.violation = Some(Violation {
                            property: "Protocol validity",
                            detail: format!("{node} refused a message from {from}: {refusal}"),
                        });
                    }
                }
                _ => {}
            }
        }
    }

    /// The core appended `entries` to its log: the append rules are checked
    /// and the node's log view takes them.
    fn record_append(&mut self, node: NodeId, entries: &Entries) {
        let position = position_of(node);
        let role = self.nodes[position]
            .core
            .as_ref()
            .map_or(Role::Follower, RaftCore::role);
        let sim_node = &mut self.nodes[position];
        if let Some(reason) = sim_node.log.append_shape_error(entries) {
            self.violation = Some(Violation {
                property: "Internal invariant",
                detail: format!("{node} asked for a malformed append: {reason}"),
            });
            return;
        }
        let result = self
            .checker
            .check_append(node, role, &sim_node.log, entries)
            .and_then(|()| {
                sim_node.log.append(entries);
                self.checker.check_appended(node, &sim_node.log, entries)
            });
        if let Err(violation) = result {
            self.violation = Some(violation);
            return;
        }
        self.trace_line(format!(
            "{node} append {}..={} (terms {}..={})",
            entries[0].index,
            entries[entries.len() - 1].index,
            entries[0].term,
            entries[entries.len() - 1].term
        ));
    }

    /// The core took the received snapshot: its log is now the snapshot's,
    /// which must agree with the committed prefix.
    fn record_restore(&mut self, node: NodeId, metadata: &SnapshotMetadata) {
        let position = position_of(node);
        let snapshot = self.nodes[position]
            .disk
            .incoming_snapshot(metadata)
            .expect("the driver stored the snapshot before the core saw it");
        let view = LogView::from_snapshot(snapshot.terms.clone(), snapshot.chains.clone());
        self.nodes[position].log = view;
        let committed = self.checker.committed();
        let common = metadata.index.min(committed.len());
        if self.nodes[position].log.chain_at(common) != committed.chain_at(common) {
            self.violation = Some(Violation {
                property: "State Machine Safety",
                detail: format!(
                    "{node} installed a snapshot at {} whose entries differ from the committed ones",
                    metadata.index
                ),
            });
        }
    }

    /// Starts writing the term and vote; the gate holds every later output
    /// until the write is flushed.
    pub(crate) fn save_hard_state(&mut self, node: NodeId, hard_state: HardState) {
        let sim_node = &mut self.nodes[position_of(node)];
        let sequence = sim_node.disk.write_hard_state(hard_state);
        sim_node.gate.written_pending(sequence);
        let (low, high) = self.scenario.disk_latency_us;
        let latency = uniform(&mut self.rng, low, high);
        self.schedule(latency, Event::Flush { node, sequence });
        self.maybe_crash_before_hard_state_durable(node, latency);
    }

    /// Starts writing appended entries to the disk; they become durable at
    /// their flush.
    pub(crate) fn write_append(&mut self, node: NodeId, entries: Entries) {
        let first_index = entries[0].index;
        let sequence = self.nodes[position_of(node)].disk.write(entries);
        let (low, high) = self.scenario.disk_latency_us;
        let latency = uniform(&mut self.rng, low, high);
        self.schedule(latency, Event::Flush { node, sequence });
        self.maybe_crash_mid_write(node, first_index, latency);
    }
}
