//! Simulated clients: each issues put, get (through ReadIndex) and
//! compare-and-set operations on a few registers, one at a time, to the node
//! it believes leads, and records every operation with its invocation and
//! completion for the linearizability check.

use std::collections::BTreeMap;

use raft::{Entry, EntryPayload, Input, LogIndex, NodeId, RequestError, RequestId};

use crate::linearizability::{check_history, KvInput, KvOutput, Operation, Verdict};
use crate::simulator::cluster::{position_of, Cluster, Event};
use crate::simulator::invariants::Violation;
use crate::simulator::kv::Command;
use crate::simulator::random::uniform;
use crate::simulator::scenario::TICK_US;

/// The most states the linearizability search may visit per key.
const MAX_STATES_PER_KEY: usize = 2_000_000;

/// A client's request in flight.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Waiting {
    request_id: RequestId,
    slot: usize,
    deadline_us: u64,
}

/// One simulated client.
#[derive(Clone, Debug)]
pub(crate) struct SimClient {
    waiting: Option<Waiting>,
    /// Where to send the next request.
    leader_guess: Option<NodeId>,
    /// The last value this client saw per register, to aim its CAS at.
    last_seen: BTreeMap<u64, Option<u64>>,
    /// Identifies the client's one live wake-up; older ones are ignored.
    wake_token: u64,
}

impl SimClient {
    pub(crate) fn new() -> SimClient {
        SimClient {
            waiting: None,
            leader_guess: None,
            last_seen: BTreeMap::new(),
            wake_token: 0,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotState {
    Pending,
    Done,
    /// Refused with no effect: left out of the check.
    Discarded,
}

/// Every operation the clients invoked, on a logical clock that advances at
/// each invocation and completion, so that "A completed before B started"
/// is exact.
#[derive(Clone, Debug, Default)]
pub(crate) struct History {
    operations: Vec<Operation>,
    states: Vec<SlotState>,
    clock: u64,
}

impl History {
    fn invoke(&mut self, client: usize, key: u64, input: KvInput) -> usize {
        self.clock += 1;
        self.operations.push(Operation {
            client: client as u64,
            key,
            input,
            call_time: self.clock,
            completion: None,
        });
        self.states.push(SlotState::Pending);
        self.operations.len() - 1
    }

    fn complete(&mut self, slot: usize, output: KvOutput) {
        self.clock += 1;
        self.operations[slot].completion = Some((self.clock, output));
        self.states[slot] = SlotState::Done;
    }

    fn discard(&mut self, slot: usize) {
        self.states[slot] = SlotState::Discarded;
    }

    /// Completed operations, plus writes whose outcome is unknown (reads
    /// that never answered constrain nothing and are left out).
    pub(crate) fn checkable(&self) -> Vec<Operation> {
        self.operations
            .iter()
            .zip(&self.states)
            .filter(|(operation, state)| match state {
                SlotState::Done => true,
                SlotState::Pending => !matches!(operation.input, KvInput::Get),
                SlotState::Discarded => false,
            })
            .map(|(operation, _)| operation.clone())
            .collect()
    }
}

impl Cluster {
    /// Schedules the client's next wake-up, replacing any earlier one.
    pub(crate) fn schedule_client_wake(&mut self, client: usize, delay_us: u64) {
        let state = &mut self.clients[client];
        state.wake_token += 1;
        let token = state.wake_token;
        self.schedule(delay_us, Event::ClientWake { client, token });
    }

    pub(crate) fn wake_client(&mut self, client: usize, token: u64) {
        if token != self.clients[client].wake_token {
            return;
        }
        if let Some(waiting) = self.clients[client].waiting {
            if self.now_us < waiting.deadline_us {
                return;
            }
            // Gave up: a write may still happen; a read had no effect.
            let is_read = matches!(self.history.operations[waiting.slot].input, KvInput::Get);
            if is_read {
                self.history.discard(waiting.slot);
            } else {
                self.stats.operations_indeterminate += 1;
            }
            let state = &mut self.clients[client];
            state.waiting = None;
            state.leader_guess = None;
        }
        if self.clients_active {
            self.issue_operation(client);
        }
    }

    fn issue_operation(&mut self, client: usize) {
        let key = uniform(&mut self.rng, 0, self.scenario.keys);
        let roll = uniform(&mut self.rng, 0, 10);
        let node = match self.clients[client].leader_guess {
            Some(node) => node,
            None => NodeId(uniform(&mut self.rng, 1, self.scenario.nodes as u64 + 1)),
        };
        if !self.is_alive(node) {
            // Connection refused: no effect; try elsewhere soon.
            self.stats.operations_refused += 1;
            self.clients[client].leader_guess = None;
            self.schedule_client_wake(client, TICK_US);
            return;
        }
        self.next_request_id += 1;
        let request_id = RequestId(self.next_request_id);
        // Values double as unique write identities.
        let value = request_id.0;
        let (input, command) = match roll {
            0..=3 => (KvInput::Put { value }, Some(Command::Put { key, value })),
            4..=7 => (KvInput::Get, None),
            _ => {
                let expected = self.clients[client].last_seen.get(&key).copied().flatten();
                (
                    KvInput::Cas {
                        expected,
                        new: value,
                    },
                    Some(Command::Cas {
                        key,
                        expected,
                        new: value,
                    }),
                )
            }
        };
        let slot = self.history.invoke(client, key, input);
        let deadline_us = self.now_us + self.scenario.client_timeout_ticks * TICK_US;
        self.clients[client].waiting = Some(Waiting {
            request_id,
            slot,
            deadline_us,
        });
        self.nodes[position_of(node)]
            .requests
            .insert(request_id, client);
        self.schedule_client_wake(client, deadline_us - self.now_us);
        self.trace_line(format!(
            "client {client} -> {node}: {request_id} {input:?} on key {key}"
        ));
        let input = match command {
            Some(command) => Input::Propose {
                request_id,
                command: command.encode(),
            },
            None => Input::Read { request_id },
        };
        self.step_node(node, input);
    }

    /// The client waiting for `request_id`, if it still waits. Forgets the
    /// request at the node either way.
    fn take_request(&mut self, node: NodeId, request_id: RequestId) -> Option<(usize, Waiting)> {
        let client = self.nodes[position_of(node)].requests.remove(&request_id)?;
        let waiting = self.clients[client].waiting?;
        (waiting.request_id == request_id).then_some((client, waiting))
    }

    fn finish_request(&mut self, client: usize, node: Option<NodeId>) {
        let state = &mut self.clients[client];
        state.waiting = None;
        state.leader_guess = node;
        // With no leader to try, back off like a real client would.
        let think = match node {
            Some(_) => uniform(&mut self.rng, 0, 2 * TICK_US),
            None => uniform(&mut self.rng, 2 * TICK_US, 6 * TICK_US),
        };
        self.schedule_client_wake(client, think);
    }

    pub(crate) fn apply_entry(&mut self, node: NodeId, entry: Entry) {
        let position = position_of(node);
        let output = match &entry.payload {
            EntryPayload::Command(bytes) => {
                let command = Command::decode(bytes).expect("simulator commands decode");
                Some(self.nodes[position].kv.apply(command))
            }
            EntryPayload::Noop => None,
            EntryPayload::Configuration(_) => None,
        };
        let Some((request_id, term)) = self.nodes[position].accepted.remove(&entry.index) else {
            return;
        };
        let Some((client, waiting)) = self.take_request(node, request_id) else {
            return;
        };
        match output {
            Some(output) if term == entry.term => {
                self.trace_line(format!(
                    "client {client} <- {node}: {request_id} {output:?}"
                ));
                if let KvInput::Put { value } | KvInput::Cas { new: value, .. } =
                    self.history.operations[waiting.slot].input
                {
                    let key = self.history.operations[waiting.slot].key;
                    let succeeded = output != KvOutput::Cas { succeeded: false };
                    if succeeded {
                        self.clients[client].last_seen.insert(key, Some(value));
                    }
                }
                self.history.complete(waiting.slot, output);
                self.stats.operations_ok += 1;
                self.finish_request(client, Some(node));
            }
            _ => {
                // Another entry took this index: the proposal was lost.
                self.history.discard(waiting.slot);
                self.stats.operations_refused += 1;
                self.finish_request(client, None);
            }
        }
    }

    pub(crate) fn answer_read(
        &mut self,
        node: NodeId,
        request_id: RequestId,
        read_index: LogIndex,
    ) {
        let Some((client, waiting)) = self.take_request(node, request_id) else {
            return;
        };
        let key = self.history.operations[waiting.slot].key;
        let value = self.nodes[position_of(node)].kv.get(key);
        self.trace_line(format!(
            "client {client} <- {node}: {request_id} read {value:?} at {read_index}"
        ));
        self.clients[client].last_seen.insert(key, value);
        self.history.complete(waiting.slot, KvOutput::Get(value));
        self.stats.operations_ok += 1;
        self.finish_request(client, Some(node));
    }

    pub(crate) fn answer_failure(
        &mut self,
        node: NodeId,
        request_id: RequestId,
        error: RequestError,
    ) {
        self.nodes[position_of(node)]
            .accepted
            .retain(|_, (accepted, _)| *accepted != request_id);
        let Some((client, waiting)) = self.take_request(node, request_id) else {
            return;
        };
        self.trace_line(format!(
            "client {client} <- {node}: {request_id} failed: {error}"
        ));
        let is_read = matches!(self.history.operations[waiting.slot].input, KvInput::Get);
        match error {
            RequestError::NotLeader { leader_hint } => {
                self.history.discard(waiting.slot);
                self.stats.operations_refused += 1;
                self.finish_request(client, leader_hint);
            }
            // Refused before anything was appended: no effect, like
            // NotLeader (the checker would catch it if that were false).
            RequestError::MembershipChangeRefused(_) => {
                self.history.discard(waiting.slot);
                self.stats.operations_refused += 1;
                self.finish_request(client, None);
            }
            RequestError::TransferringLeadership { target } => {
                self.history.discard(waiting.slot);
                self.stats.operations_refused += 1;
                self.finish_request(client, Some(target));
            }
            RequestError::LeadershipLost { leader_hint } => {
                if is_read {
                    self.history.discard(waiting.slot);
                } else {
                    self.stats.operations_indeterminate += 1;
                }
                self.finish_request(client, leader_hint);
            }
        }
    }

    pub(crate) fn check_history(&mut self) -> Result<(), Violation> {
        match check_history(&self.history.checkable(), MAX_STATES_PER_KEY) {
            Verdict::Linearizable => Ok(()),
            Verdict::Unknown { .. } => {
                // Reported in the totals: an undecided history proves nothing.
                self.stats.linearizability_undecided += 1;
                Ok(())
            }
            Verdict::NotLinearizable { key, explanation } => Err(Violation {
                property: "Linearizability",
                detail: format!("history of key {key} is not linearizable: {explanation}"),
            }),
        }
    }
}
